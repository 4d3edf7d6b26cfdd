/* hmm_signal: segmenting a noisy signal with a Gaussian hidden Markov model (genmod_hmm.h).
 *   cc -O2 -I. examples/hmm_signal.c -o hmm_signal -lm -lpthread && ./hmm_signal
 * The signal is synthetic, like an activity sensor's: a hidden regime (rest, walk, run) that
 * persists for a while and then switches, each regime giving readings around its own level with
 * its own noise. --seqs recordings of --len steps are drawn from that model. A Gaussian HMM with
 * --states states (each a mixture of --mixtures Gaussians) is fitted to them by Baum-Welch from
 * --restarts random starts, without seeing the regimes; Viterbi then labels every step, and the
 * labels are compared with the hidden regimes (each learned state counted as the regime it
 * overlaps most). Writes to out/:
 *   hmm_signal.png         the first recording coloured by the Viterbi states, and by the true regimes
 *   hmm_signal_loss.png    the training log-likelihood per step at every iteration
 * and ends with one JSON line: accuracy of the Viterbi and of the posterior labels, log-likelihood
 * per step of the fitted and of the true model on the recordings and on fresh held-out ones, and
 * the fitted levels. --epochs / --steps: Baum-Welch iterations per restart at most. */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_HMM_IMPLEMENTATION
#include "../genmod_hmm.h"
#include "common.h"

#define NTRUE 3
static const char *const regime_name[NTRUE] = {"rest", "walk", "run"};

typedef struct opts { int states, mixtures, restarts, seqs, len; } opts;

static void die(const ex_args *a, const char *what) {
    fprintf(stderr, "%s: %s: %s\n", a->name, what, gm_last_error());
    exit(1);
}

/* The regime model: sticky transitions, one Gaussian per regime. */
static void truth_model(gm_hmm *t, uint64_t seed, const ex_args *a) {
    const float start[NTRUE] = {0.6f, 0.3f, 0.1f};
    const float trans[NTRUE * NTRUE] = {0.985f, 0.012f, 0.003f, 0.010f, 0.980f, 0.010f, 0.004f, 0.016f, 0.980f};
    const float w[NTRUE] = {1, 1, 1}, mean[NTRUE] = {0.0f, 1.4f, 3.2f}, var[NTRUE] = {0.06f, 0.25f, 0.64f};
    gm_hmm_config c = gm_hmm_default_config(NTRUE, GM_HMM_GAUSSIAN, 1);
    c.seed = seed;
    if (gm_hmm_init(t, &c) != 0 || gm_hmm_set_chain(t, start, trans) != 0 || gm_hmm_set_gaussian(t, w, mean, var) != 0)
        die(a, "true model");
}

/* Fraction of steps whose label, mapped to the regime it overlaps most, is the true regime. */
static double accuracy(const int *label, const int *truth, long n, int S, int *map) {
    long *cnt = (long *)calloc((size_t)S * NTRUE, sizeof(long)), i, ok = 0;
    int s, r;
    if (!cnt) return 0;
    for (i = 0; i < n; i++) cnt[label[i] * NTRUE + truth[i]]++;
    for (s = 0; s < S; s++) {
        map[s] = 0;
        for (r = 1; r < NTRUE; r++) if (cnt[s * NTRUE + r] > cnt[s * NTRUE + map[s]]) map[s] = r;
    }
    for (i = 0; i < n; i++) ok += map[label[i]] == truth[i];
    free(cnt);
    return (double)ok / (double)n;
}

typedef struct fit_log { ex_run *run; } fit_log;

static int on_iter(void *ctx, int restart, int iter, const gm_hmm_stats *st) {
    fit_log *f = (fit_log *)ctx;
    float v[2];
    v[0] = (float)-st->per_obs;
    v[1] = (float)restart;
    (void)iter;
    ex_run_step(f->run, v);
    return ex_interrupted();
}

/* One recording as a scatter of (step, value) coloured by labels. */
static void signal_plot(const ex_args *a, gm_image *img, const float *x, const int *lab, int n, int nlab,
                        const char *const *names, const char *title) {
    float *xy = (float *)malloc(sizeof(float) * 2 * (size_t)n);
    gm_plot_opts o = gm_plot_defaults();
    int i;
    if (!xy) die(a, "out of memory");
    for (i = 0; i < n; i++) { xy[2 * i] = (float)i; xy[2 * i + 1] = x[i]; }
    o.w = 1100; o.h = 330;
    o.title = title;
    o.xlabel = "step";
    o.ylabel = "reading";
    o.point_size = 1.6f;
    if (gm_plot_scatter(img, &o, xy, n, lab, nlab, names) != 0) die(a, "plot");
    free(xy);
}

int main(int argc, char **argv) {
    opts o;
    ex_args a = ex_defaults("hmm_signal", 100, 1, 0.0f);
    ex_run run;
    ex_json j;
    gm_hmm truth, m;
    gm_hmm_config c;
    gm_hmm_stats st;
    fit_log flog;
    gm_seqs d, dt;
    double t0 = ex_now(), ll_fit, ll_true, ll_fit_te, ll_true_te, acc_v, acc_p;
    int *len, *states, *states_te, *path, *plab, *shown, map[64], order[64], s, i, k, total, iters;
    double level[64];
    float *x, *x_te, *post;
    char title[2][160], levels[512], names_buf[64][64];
    const char *names[64];
    size_t lv = 0;
    gm_image panels[2], both;
    ex_opt extra[] = {
        {"states", EX_INT, &o.states, "hidden states of the fitted model", "1..10"},
        {"mixtures", EX_INT, &o.mixtures, "Gaussians per state", "1..8"},
        {"restarts", EX_INT, &o.restarts, "Baum-Welch random starts (the best is kept)", "1..100"},
        {"seqs", EX_INT, &o.seqs, "recordings to fit", "1..1000"},
        {"len", EX_INT, &o.len, "steps per recording", "10..1000000"},
    };
    memset(&o, 0, sizeof o);
    o.states = 3; o.mixtures = 1; o.restarts = 4; o.seqs = 4; o.len = 1500;
    a.without = "samples dump-samples data batch lr";   /* synthetic signals, fitted by EM (no data, batch or rate) */
    ex_init(&a, argc, argv,
            "Segmenting a synthetic sensor signal with a Gaussian hidden Markov model (genmod_hmm.h).\n"
            "--epochs / --steps: Baum-Welch iterations per restart at most (0: no fitting; with --load, evaluate the model).",
            extra, (int)(sizeof extra / sizeof extra[0]));
    total = o.seqs * o.len;
    len = (int *)malloc(sizeof(int) * (size_t)o.seqs);
    x = (float *)malloc(sizeof(float) * (size_t)total);
    x_te = (float *)malloc(sizeof(float) * (size_t)total);
    states = (int *)malloc(sizeof(int) * (size_t)total);
    states_te = (int *)malloc(sizeof(int) * (size_t)total);
    path = (int *)malloc(sizeof(int) * (size_t)total);
    plab = (int *)malloc(sizeof(int) * (size_t)total);
    post = (float *)malloc(sizeof(float) * (size_t)total * (size_t)o.states);
    if (!len || !x || !x_te || !states || !states_te || !path || !plab || !post) die(&a, "out of memory");
    for (i = 0; i < o.seqs; i++) len[i] = o.len;
    truth_model(&truth, a.seed, &a);
    if (gm_hmm_sample(&truth, o.seqs, o.len, states, NULL, x) != 0 || gm_hmm_sample(&truth, o.seqs, o.len, states_te, NULL, x_te) != 0)
        die(&a, "sampling the signal");
    d = gm_seqs_vectors(x, len, o.seqs);
    dt = gm_seqs_vectors(x_te, len, o.seqs);

    c = gm_hmm_default_config(o.states, GM_HMM_GAUSSIAN, 1);
    c.mixtures = o.mixtures;
    c.restarts = a.load ? 0 : o.restarts;
    iters = (int)ex_total_steps(&a, 1);   /* an "epoch" is one Baum-Welch iteration */
    c.max_iters = iters > 0 ? iters : 1;
    c.seed = a.seed + 1;
    c.on_iter = on_iter;
    c.on_iter_ctx = &flog;
    flog.run = &run;
    if (gm_hmm_init(&m, &c) != 0) die(&a, "model");
    if (a.load && gm_hmm_load(&m, a.load) != 0) die(&a, "load");
    if (!a.quiet)
        printf("hmm_signal: %d recordings of %d steps from a %d-regime model; fitting %d states x %d Gaussians, %d restarts\n",
               o.seqs, o.len, NTRUE, o.states, o.mixtures, c.restarts);
    ex_run_begin(&run, &a, (long)iters * (c.restarts > 0 ? c.restarts : 1), total, "train_nats_per_step,restart");
    memset(&st, 0, sizeof st);
    if (iters > 0 && gm_hmm_fit(&m, &d, &st) != 0) die(&a, "baum-welch");   /* 0: the model as it is */
    ex_run_end(&run);
    if (a.save && gm_hmm_save(&m, a.save) != 0) die(&a, "save");

    /* labels: Viterbi, and the most probable state of each step's posterior */
    if (gm_hmm_viterbi(&m, &d, path, NULL) != 0 || gm_hmm_posterior(&m, &d, post, NULL) != 0) die(&a, "inference");
    for (i = 0; i < total; i++) {
        plab[i] = 0;
        for (s = 1; s < o.states; s++) if (post[(size_t)i * o.states + s] > post[(size_t)i * o.states + plab[i]]) plab[i] = s;
    }
    acc_p = accuracy(plab, states, total, o.states, map);
    acc_v = accuracy(path, states, total, o.states, map);
    if (gm_hmm_log_prob(&m, &d, NULL, &ll_fit) != 0 || gm_hmm_log_prob(&truth, &d, NULL, &ll_true) != 0 ||
        gm_hmm_log_prob(&m, &dt, NULL, &ll_fit_te) != 0 || gm_hmm_log_prob(&truth, &dt, NULL, &ll_true_te) != 0)
        die(&a, "log-likelihood");
    {
        const float *mu = gm_params_data(&m.params, m.v_mean), *var = gm_params_data(&m.params, m.v_var);
        const float *w = gm_params_data(&m.params, m.v_weight);
        for (s = 0; s < o.states; s++) {
            double mean = 0, v2 = 0;
            for (k = 0; k < o.mixtures; k++) { mean += w[s * o.mixtures + k] * mu[s * o.mixtures + k]; }
            for (k = 0; k < o.mixtures; k++) {
                const double dm = mu[s * o.mixtures + k] - mean;
                v2 += w[s * o.mixtures + k] * (var[s * o.mixtures + k] + dm * dm);
            }
            if (fabs(mean) < 0.005) mean = 0;   /* no "-0.00" */
            level[s] = mean;
            snprintf(names_buf[s], sizeof names_buf[s], "state %d (%s): level %.2f, sd %.2f", s, regime_name[map[s]], mean, sqrt(v2));
            lv += (size_t)snprintf(levels + lv, sizeof levels - lv, s ? ",%.3f" : "%.3f", mean);
            if (!a.quiet) printf("  %s\n", names_buf[s]);
        }
    }
    if (!a.quiet)
        printf("accuracy against the hidden regimes: Viterbi %.4f, posterior %.4f\n"
               "log-likelihood per step: fitted %.4f (true model %.4f); held-out recordings: fitted %.4f (true %.4f)\n",
               acc_v, acc_p, ll_fit / total, ll_true / total, ll_fit_te / total, ll_true_te / total);
    ex_run_plot(&run, "hmm_signal_loss.png", "Baum-Welch: negative log-likelihood per step (nats)", 0);
    /* the picture lists the fitted states by level, lowest first (as the regimes are), so that
       colours can be compared between the two panels; the state numbers are the model's own */
    for (s = 0; s < o.states; s++) order[s] = s;
    for (s = 1; s < o.states; s++)
        for (k = s; k > 0 && level[order[k]] < level[order[k - 1]]; k--) { i = order[k]; order[k] = order[k - 1]; order[k - 1] = i; }
    shown = plab;   /* reused: the Viterbi path in display order */
    for (s = 0; s < o.states; s++) { names[s] = names_buf[order[s]]; map[order[s]] = s; }
    for (i = 0; i < o.len; i++) shown[i] = map[path[i]];
    snprintf(title[0], sizeof title[0], "Viterbi states of the fitted HMM (%.1f%% agree with the regimes)", 100 * acc_v);
    snprintf(title[1], sizeof title[1], "the true hidden regimes");
    signal_plot(&a, &panels[0], x, shown, o.len, o.states, names, title[0]);
    {
        const char *tn[NTRUE];
        for (s = 0; s < NTRUE; s++) tn[s] = regime_name[s];
        signal_plot(&a, &panels[1], x, states, o.len, NTRUE, tn, title[1]);
    }
    if (gm_image_vstack(&both, panels, 2, NULL, 6) != 0) die(&a, "picture");
    gm_image_free(&panels[0]);
    gm_image_free(&panels[1]);
    ex_save_png(&a, "hmm_signal.png", &both);

    ex_json_init(&j);
    ex_json_str(&j, "model", "gaussian_hmm");
    ex_json_num(&j, "states", o.states);
    ex_json_num(&j, "mixtures", o.mixtures);
    ex_json_num(&j, "restarts", c.restarts);
    ex_json_num(&j, "steps", total);
    ex_json_num(&j, "iters", st.iters);
    ex_json_num(&j, "accuracy_viterbi", acc_v);
    ex_json_num(&j, "accuracy_posterior", acc_p);
    ex_json_num(&j, "train_loglik_per_step", ll_fit / total);
    ex_json_num(&j, "true_model_loglik_per_step", ll_true / total);
    ex_json_num(&j, "test_loglik_per_step", ll_fit_te / total);
    ex_json_num(&j, "true_model_test_loglik_per_step", ll_true_te / total);
    ex_json_str(&j, "levels", levels);
    ex_json_num(&j, "wall_s", ex_now() - t0);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_hmm_free(&m);
    gm_hmm_free(&truth);
    free(len); free(x); free(x_te); free(states); free(states_te); free(path); free(plab); free(post);
    return 0;
}
