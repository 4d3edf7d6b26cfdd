/* rbm: a Bernoulli restricted Boltzmann machine on binarized MNIST digits, trained by CD-1, CD-K
 * or persistent CD, its test log-likelihood estimated by annealed importance sampling (AIS).
 * Writes Gibbs chains over time, the filters of the first 100 hidden units, and the loss curve.
 *
 * Data: images whose pixels are all 0 or 255 (a statically binarized MNIST, --data DIR) are used
 * bit for bit; other images (the bundled data/ digits by default) are binarized once, each pixel
 * drawn as 1 with probability its intensity from a fixed random stream. That is a static
 * binarization of our own, not the literature's published one, so its figures compare with
 * other runs on the same bits only.
 *
 * Defaults: 500 hidden units, batch 100, momentum 0.5 for 5 epochs then 0.9, weight decay 2e-4 on
 * W. PCD (the default): lr 0.01 decaying linearly to 0 over 200 epochs. CD-1: lr 0.1 for 5 epochs
 * (the regime of the published CD-1 figure; CD-1 gets worse when trained much longer); CD-K: 30
 * epochs, lr 0.01 decaying linearly to 0, the Gibbs sweeps growing from 1 to K over the first half
 * (Salakhutdinov and Murray's gradually increased K). AIS: 100 runs of 500 + 4,000 + 10,000 betas
 * from the base-rate model.
 *
 *   cc -O2 -I. examples/rbm.c -o rbm -lm -lpthread
 *   ./rbm                                 # persistent CD, 500 hidden units
 *   ./rbm --cd 1                          # CD-1
 *   ./rbm --cd 3 --data DIR               # CD-3 on a statically binarized MNIST in DIR */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_EBM_IMPLEMENTATION
#include "../genmod_ebm.h"
#include "common.h"

#define NCHAINS 10
#define NFRAMES 10

/* all 0/1 already: keep the bits; otherwise one fixed stochastic binarization */
static int binarize_static(gm_dataset *d, uint64_t seed) {
    size_t i, count = (size_t)d->n * d->h * d->w * d->c;
    gm_rng rng;
    for (i = 0; i < count; i++)
        if (d->x[i] != 0.0f && d->x[i] != 1.0f) break;
    if (i == count) return 0;
    gm_rng_seed(&rng, seed);
    gm_binarize(d->x, d->x, count, &rng);
    return 1;
}

static int save_grid(const ex_args *a, const char *file, const float *x, int n, int cols, float lo, float hi) {
    gm_image small, big;
    int rc = gm_image_grid(&small, x, n, 1, 28, 28, cols, 1, lo, hi);
    if (rc == 0) rc = gm_image_upscale(&big, &small, 2);
    if (rc == 0) { rc = ex_save_png(a, file, &big); gm_image_free(&big); }
    gm_image_free(&small);
    return rc;
}

/* NCHAINS chains from random bits; column t shows E[v | h] after sweeps[t] sweeps */
static int chains_picture(const ex_args *a, gm_rbm *r) {
    static const int sweeps[NFRAMES] = {1, 3, 10, 30, 100, 300, 1000, 3000, 5000, 10000};
    float *v = (float *)malloc(sizeof(float) * 784 * NCHAINS), *mean = (float *)malloc(sizeof(float) * 784 * NCHAINS);
    float *grid = (float *)malloc(sizeof(float) * 784 * NCHAINS * NFRAMES);
    int t, i, done = 0, rc = -1;
    if (!v || !mean || !grid) goto out;
    for (i = 0; i < 784 * NCHAINS; i++) v[i] = (float)(((unsigned)i * 2654435761u >> 7) & 1u);
    for (t = 0; t < NFRAMES; t++) {
        if (gm_rbm_gibbs(r, v, NCHAINS, sweeps[t] - done, mean) != 0) goto out;
        done = sweeps[t];
        for (i = 0; i < NCHAINS; i++) memcpy(grid + ((size_t)i * NFRAMES + t) * 784, mean + (size_t)i * 784, 784 * sizeof(float));
    }
    rc = save_grid(a, "rbm_chains.png", grid, NCHAINS * NFRAMES, NFRAMES, 0, 1);
out:
    free(v); free(mean); free(grid);
    return rc;
}

/* the first 100 hidden units' weights, each scaled to its own max |w| (grey 0) */
static int filters_picture(const ex_args *a, gm_rbm *r) {
    int n = r->cfg.hidden < 100 ? r->cfg.hidden : 100, j, i, rc;
    const float *W = gm_params_data(&r->params, r->w);
    float *f = (float *)malloc(sizeof(float) * 784 * (size_t)n);
    if (!f) return -1;
    for (j = 0; j < n; j++) {
        float m = 1e-12f;
        for (i = 0; i < 784; i++) m = fabsf(W[j * 784 + i]) > m ? fabsf(W[j * 784 + i]) : m;
        for (i = 0; i < 784; i++) f[j * 784 + i] = W[j * 784 + i] / m;
    }
    rc = save_grid(a, "rbm_filters.png", f, n, 10, -1, 1);
    free(f);
    return rc;
}

int main(int argc, char **argv) {
    const char *cd = "pcd";
    int hidden = 500, n_train = 60000, n_test = 10000, ais_runs = 100, ais_scale = 1, k;
    float mom_epochs = 5;
    ex_opt extra[] = {
        {"hidden", EX_INT, &hidden, "hidden units", "1..100000"},
        {"cd", EX_STRING, &cd, "training: 1 (CD-1), K (CD-K, e.g. 3 or 25) or pcd (persistent CD)", NULL},
        {"momentum-epochs", EX_FLOAT, &mom_epochs, "epochs at momentum 0.5 before 0.9", "0.."},
        {"n-train", EX_INT, &n_train, "training images (at most the file's)", "1..60000"},
        {"n-test", EX_INT, &n_test, "test images for the log-likelihood", "1..10000"},
        {"ais-runs", EX_INT, &ais_runs, "AIS chains", "2..100000"},
        {"ais-scale", EX_INT, &ais_scale, "multiply AIS's 500 + 4,000 + 10,000 betas by this", "1..100"},
    };
    ex_args a = ex_defaults("rbm", 0, 100, 0.0f);   /* epochs and lr 0: the method's */
    ex_run run;
    ex_json j;
    gm_dataset train, test;
    gm_rbm r;
    gm_rbm_config cfg;
    gm_rbm_ais_config ac;
    gm_rbm_ais_result res;
    gm_batcher b;
    const int *idx;
    float *xb;
    double t0, c0, train_s, train_cpu, ais_s, ll_test, ll_train;
    long steps_per_epoch, total;
    int pcd, cdk = 1, binarized;

    ex_init(&a, argc, argv, "Restricted Boltzmann machine on binarized MNIST: CD-1, CD-K or PCD; AIS test log-likelihood.",
            extra, (int)(sizeof extra / sizeof extra[0]));
    ex_requires(&a, argc, argv, "samples", a.dump_samples != NULL, "with --dump-samples (how many samples it writes)");
    gm_flush_denormals();
    pcd = !strcmp(cd, "pcd");
    if (!pcd) {
        long kk;
        if (ex_parse_long(cd, 1, 10000, &kk) != 0) {
            fprintf(stderr, "rbm: --cd %s: expected 1, a number of Gibbs steps K, or pcd\n", cd);
            return 2;
        }
        cdk = (int)kk;
    }
    if (gm_mnist_load(&train, &test, a.data_dir, n_train, n_test, 0.0f, 1.0f) != 0) {
        fprintf(stderr, "rbm: %s\n", gm_last_error());
        return 1;
    }
    if (train.h * train.w * train.c != 784) {
        fprintf(stderr, "rbm: %s holds %dx%dx%d images; the RBM's visible layer is 784 units\n", a.data_dir,
                train.c, train.h, train.w);
        return 1;
    }
    binarized = binarize_static(&train, 1234567) | binarize_static(&test, 7654321);
    steps_per_epoch = train.n / a.batch > 0 ? train.n / a.batch : 1;
    if (!ex_given(argc, argv, "epochs")) a.epochs = pcd ? 200 : cdk == 1 ? 5 : 30;   /* the default budgets (see the top) */
    total = ex_total_steps(&a, steps_per_epoch);
    cfg = pcd ? gm_rbm_pcd_config(784, hidden) : gm_rbm_default_config(784, hidden);
    cfg.k = cdk;
    cfg.chains = a.batch;
    cfg.batch = a.batch;
    cfg.seed = a.seed;
    if (!pcd && cdk > 1) {   /* CD-K: the schedule of the top */
        cfg.lr = 0.01f;
        cfg.lr_decay_steps = total > 0 ? total : 1;
        cfg.k_ramp_steps = total / 2;
    }
    if (a.lr > 0) cfg.lr = a.lr;
    if (pcd) cfg.lr_decay_steps = total > 0 ? total : 1;
    cfg.momentum_steps = (long)(mom_epochs * steps_per_epoch);
    if (gm_rbm_init(&r, &cfg) != 0 || gm_rbm_init_visible_bias(&r, train.x, train.n) != 0) {
        fprintf(stderr, "rbm: %s\n", gm_last_error());
        return 1;
    }
    if (a.load && gm_rbm_load(&r, a.load) != 0) { fprintf(stderr, "rbm: %s\n", gm_last_error()); return 1; }
    if (!a.quiet)
        printf("rbm: %d hidden, %s, %d train / %d test images (%s), %ld steps, %d threads\n", hidden,
               pcd ? "PCD" : cdk == 1 ? "CD-1" : "CD-K", train.n, test.n,
               binarized ? "binarized here with a fixed seed" : "binary as given", total, gm_get_threads());

    xb = (float *)malloc(sizeof(float) * 784 * (size_t)a.batch);
    ex_check_batch(&a, train.n);   /* before the batcher, which would refuse it less clearly */
    gm_batcher_init(&b, train.n, a.batch, a.seed, 1);
    ex_run_begin(&run, &a, total, a.batch, "recon_error,free_energy,k");
    t0 = ex_now();
    c0 = (double)clock() / CLOCKS_PER_SEC;
    while (run.step < run.total && !ex_interrupted()) {
        int n = gm_batcher_next(&b, &idx);
        gm_rbm_stats st;
        float m[3];
        if (n == 0) continue;
        gm_dataset_gather(&train, idx, n, xb, NULL);
        if (gm_rbm_train_step(&r, xb, NULL, n, &st) != 0) { fprintf(stderr, "rbm: %s\n", gm_last_error()); return 1; }
        m[0] = st.recon_error; m[1] = st.free_energy; m[2] = (float)st.k;
        ex_run_step(&run, m);
    }
    train_s = ex_now() - t0;
    train_cpu = (double)clock() / CLOCKS_PER_SEC - c0;
    ex_run_end(&run);
    ex_run_plot(&run, "rbm_loss.png", "RBM: reconstruction error per image", 0);
    if (a.save && gm_rbm_save(&r, a.save) != 0) { fprintf(stderr, "rbm: %s\n", gm_last_error()); return 1; }

    ac = gm_rbm_ais_default_config();
    ac.runs = ais_runs;
    for (k = 0; k < 3; k++) ac.steps[k] *= ais_scale;
    ac.seed = a.seed;
    t0 = ex_now();
    if (gm_rbm_ais(&r, train.x, train.n, &ac, &res) != 0) { fprintf(stderr, "rbm: %s\n", gm_last_error()); return 1; }
    ais_s = ex_now() - t0;
    if (gm_rbm_log_likelihood(&r, test.x, test.n, res.log_z, &ll_test) != 0 ||
        gm_rbm_log_likelihood(&r, train.x, train.n < 10000 ? train.n : 10000, res.log_z, &ll_train) != 0) {
        fprintf(stderr, "rbm: %s\n", gm_last_error());
        return 1;
    }
    if (!a.quiet)
        printf("rbm: AIS log Z %.3f (se %.3f, ess %.1f of %d runs, %.0f s); test LL %.2f nats, train LL %.2f\n",
               res.log_z, res.log_z_se, res.ess, ac.runs, ais_s, ll_test, ll_train);
    if (chains_picture(&a, &r) != 0 || filters_picture(&a, &r) != 0) fprintf(stderr, "rbm: pictures: %s\n", gm_last_error());
    if (a.dump_samples) {
        float *s = (float *)malloc(sizeof(float) * 784 * (size_t)a.samples);
        r.cfg.sample_steps = 1000;
        if (s && gm_rbm_sample(&r, NULL, a.samples, s) == 0) ex_dump_samples(&a, s, a.samples, 28, 28, 0, 1);
        free(s);
    }
    ex_json_init(&j);
    ex_json_str(&j, "method", pcd ? "pcd" : "cd");
    ex_json_num(&j, "k", cdk);
    ex_json_num(&j, "hidden", hidden);
    ex_json_num(&j, "steps", (double)run.step);
    ex_json_num(&j, "epochs", (double)run.step / steps_per_epoch);
    ex_json_num(&j, "test_ll_nats", ll_test);
    ex_json_num(&j, "test_ll_se", res.log_z_se);
    ex_json_num(&j, "train_ll_nats", ll_train);
    ex_json_num(&j, "log_z", res.log_z);
    ex_json_num(&j, "ais_ess", res.ess);
    ex_json_num(&j, "ais_runs", ac.runs);
    ex_json_num(&j, "n_test", test.n);
    ex_json_num(&j, "train_s", train_s);
    ex_json_num(&j, "train_cpu_s", train_cpu);
    ex_json_num(&j, "ais_s", ais_s);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&b);
    free(xb);
    gm_rbm_free(&r);
    gm_dataset_free(&train);
    gm_dataset_free(&test);
    return 0;
}
