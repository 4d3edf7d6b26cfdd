/* ebm: a deep energy-based model E(x) trained by contrastive divergence with short-run Langevin
 * dynamics and a replay buffer, on MNIST digits (a conv energy, images in [-1, 1]) or on a 2-D
 * toy density (an MLP energy).
 *
 * MNIST (the default): Langevin samples from uniform noise and from the replay buffer, the
 * Langevin chain from noise as a grid over its steps (rows: chains, columns: steps), the loss
 * curve; the JSON line has the Frechet distance (FD) of the samples from noise to the test images
 * in the metric digit classifier's features and the entropy of its labels (ln 10 = 2.303 when
 * every class is equally common), the same for the buffer's samples.
 * 2-D toys (--dataset 8gaussians, moons, ...): the data next to the learned density exp(-E) and
 * Langevin samples from noise and from the buffer; the chain over its steps; for 8gaussians the
 * fraction of samples within 0.25 of a mode and the modes holding >= 2% of them.
 *
 *   cc -O2 -I. examples/ebm.c -o ebm -lm -lpthread
 *   ./ebm                          # conv EBM on the bundled digits
 *   ./ebm --dataset 8gaussians     # MLP EBM on a 2-D toy */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_EBM_IMPLEMENTATION
#include "../genmod_ebm.h"
#define GENMOD_GAN_IMPLEMENTATION
#include "../genmod_gan.h"   /* the metric digit classifier */
#include "common.h"

#define GRID 120
#define NFRAMES 4
#define NCHAINS 10
#define NCOLS 10
#define PI_ 3.14159265358979323846

typedef struct opts {
    const char *dataset;
    int hidden, depth, channels, lsteps, buffer, score, sample_steps;
    float step_size, noise, grad_clip, alpha, reinit, lim;
} opts;

/* --dataset decides the other defaults, so it is read before the flags are parsed */
static int is_mnist(int argc, char **argv) {
    int i;
    const char *v = "mnist";
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dataset") && i + 1 < argc) v = argv[i + 1];
        else if (!strncmp(argv[i], "--dataset=", 10)) v = argv[i] + 10;
    }
    return !strcmp(v, "mnist");
}

static void set_config(gm_ebm_config *c, const opts *o, const ex_args *a, int mnist) {
    *c = mnist ? gm_ebm_conv_config(1, 28, 28) : gm_ebm_default_config(2);
    if (mnist) c->channels = o->channels; else c->depth = o->depth;
    c->hidden = o->hidden;
    c->langevin_steps = o->lsteps; c->step_size = o->step_size; c->noise = o->noise; c->grad_clip = o->grad_clip;
    c->alpha = o->alpha; c->reinit = o->reinit; c->buffer_size = o->buffer; c->sample_steps = o->sample_steps;
    if (!mnist) c->init_range = o->lim;
    c->lr = a->lr; c->batch = a->batch; c->seed = a->seed;
}

/* training loop shared by both: batches of `dim` floats drawn from data (n rows) */
static int train(const ex_args *a, gm_ebm *m, const float *data, int n, int dim, ex_run *run) {
    gm_batcher b;
    const int *idx;
    float *xb;
    int k, i, rc = 0;
    ex_check_batch(a, n);   /* before a buffer of that size is asked for */
    xb = (float *)malloc(sizeof(float) * (size_t)dim * a->batch);
    if (!xb) return gm_fail("out of memory");
    gm_batcher_init(&b, n, a->batch, a->seed, 1);
    while (run->step < run->total && !ex_interrupted()) {
        gm_ebm_stats st;
        float mm[3];
        if ((k = gm_batcher_next(&b, &idx)) == 0) continue;
        for (i = 0; i < k; i++) memcpy(xb + (size_t)i * dim, data + (size_t)idx[i] * dim, sizeof(float) * (size_t)dim);
        if ((rc = gm_ebm_train_step(m, xb, NULL, k, &st)) != 0) break;
        mm[0] = st.loss; mm[1] = st.e_pos; mm[2] = st.e_neg;
        ex_run_step(run, mm);
    }
    gm_batcher_free(&b);
    free(xb);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* MNIST                                                                                     */
/* ---------------------------------------------------------------------------------------- */
/* NCHAINS chains from uniform noise; column t shows them after cols[t] Langevin steps */
static int chain_grid(const ex_args *a, gm_ebm *m) {
    int cols[NCOLS], t, i, done = 0, rc = -1, S = m->cfg.sample_steps;
    float *x = (float *)malloc(sizeof(float) * 784 * NCHAINS), *grid = (float *)malloc(sizeof(float) * 784 * NCHAINS * NCOLS);
    gm_rng rng;
    gm_image img;
    if (!x || !grid) goto out;
    for (t = 0; t < NCOLS; t++) cols[t] = (int)((double)S * t * t / ((NCOLS - 1) * (NCOLS - 1)) + 0.5);   /* denser early */
    gm_rng_seed(&rng, a->seed + 7);
    for (i = 0; i < 784 * NCHAINS; i++) x[i] = -1 + 2 * gm_rng_uniform(&rng);
    for (t = 0; t < NCOLS; t++) {
        if (cols[t] > done && gm_ebm_langevin(m, x, NCHAINS, cols[t] - done) != 0) goto out;
        done = cols[t];
        for (i = 0; i < NCHAINS; i++) memcpy(grid + ((size_t)i * NCOLS + t) * 784, x + (size_t)i * 784, 784 * sizeof(float));
    }
    if (ex_digit_grid(&img, grid, NCHAINS * NCOLS, NCOLS, -1, 1) == 0) rc = ex_save_png(a, "ebm_langevin.png", &img);
    if (rc == 0 && !a->quiet) {
        printf("ebm: ebm_langevin.png columns = Langevin steps");
        for (t = 0; t < NCOLS; t++) printf(" %d", cols[t]);
        printf("\n");
    }
out:
    free(x); free(grid);
    return rc;
}

/* FD and label entropy of n samples against the test images in the metric classifier */
static int score(gm_digit_classifier *c, const float *x, int n, const gm_dataset *te, gm_digit_scores *sc) {
    gm_graph *g = gm_graph_new(1);   /* the classifier draws no random numbers */
    int rc = g ? gm_digit_score(c, g, x, NULL, n, te->x, te->n, sc) : gm_fail("out of memory");
    gm_graph_free(g);
    return rc;
}

static int run_mnist(ex_args *a, opts *o) {
    gm_dataset tr, te;
    gm_ebm m;
    gm_ebm_config cfg;
    ex_run run;
    ex_json j;
    gm_image img;
    gm_digit_scores s_noise, s_buf;
    gm_digit_classifier metric;
    float *smp;
    double t0, c0, train_s, train_cpu, sample_s;
    int n = o->score > 64 ? o->score : 64;

    if (gm_mnist_load(&tr, &te, a->data_dir, 0, 0, -1.0f, 1.0f) != 0) { fprintf(stderr, "ebm: %s\n", gm_last_error()); return 1; }
    if (tr.c * tr.h * tr.w != 784) { fprintf(stderr, "ebm: %s: images are not 28x28 digits\n", a->data_dir); return 1; }
    ex_check_batch(a, tr.n);
    ex_metric_classifier(a, &te, &metric);   /* a run that cannot be scored stops now, not after training */
    set_config(&cfg, o, a, 1);
    if (gm_ebm_init(&m, &cfg) != 0) { fprintf(stderr, "ebm: %s\n", gm_last_error()); return 1; }
    if (a->load && gm_ebm_load(&m, a->load) != 0) { fprintf(stderr, "ebm: %s\n", gm_last_error()); return 1; }
    if (!a->quiet)
        printf("ebm: conv energy (%d channels) on %d digits, %d Langevin steps of %g (dE/dx clamp %g, noise %g), %d threads\n",
               cfg.channels, tr.n, cfg.langevin_steps, (double)cfg.step_size, (double)cfg.grad_clip, (double)cfg.noise,
               gm_get_threads());
    ex_run_begin(&run, a, ex_total_steps(a, tr.n / a->batch), a->batch, "loss,e_data,e_samples");
    t0 = ex_now();
    c0 = (double)clock() / CLOCKS_PER_SEC;
    if (train(a, &m, tr.x, tr.n, 784, &run) != 0) { fprintf(stderr, "ebm: %s\n", gm_last_error()); return 1; }
    train_s = ex_now() - t0;
    train_cpu = (double)clock() / CLOCKS_PER_SEC - c0;
    ex_run_end(&run);
    ex_run_plot(&run, "ebm_loss.png", "deep EBM: loss and mean energies", 0);
    if (a->save && gm_ebm_save(&m, a->save) != 0) { fprintf(stderr, "ebm: %s\n", gm_last_error()); return 1; }

    if (chain_grid(a, &m) != 0) { fprintf(stderr, "ebm: %s\n", gm_last_error()); return 1; }
    smp = (float *)malloc(sizeof(float) * 784 * (size_t)n * 2);
    if (!smp) { fprintf(stderr, "ebm: out of memory\n"); return 1; }
    t0 = ex_now();
    if (gm_ebm_sample(&m, NULL, n, smp) != 0 || gm_ebm_sample_buffer(&m, n, smp + (size_t)784 * n) != 0) {
        fprintf(stderr, "ebm: %s\n", gm_last_error());
        return 1;
    }
    sample_s = ex_now() - t0;
    if (ex_digit_grid(&img, smp, 64, 8, -1, 1) != 0 || ex_save_png(a, "ebm_samples.png", &img) != 0) return 1;
    if (ex_digit_grid(&img, smp + (size_t)784 * n, 64, 8, -1, 1) != 0 || ex_save_png(a, "ebm_buffer.png", &img) != 0) return 1;
    if (ex_dump_samples(a, smp, n < a->samples ? n : a->samples, 28, 28, -1, 1) != 0) return 1;
    if (score(&metric, smp, n, &te, &s_noise) != 0 || score(&metric, smp + (size_t)784 * n, n, &te, &s_buf) != 0) {
        fprintf(stderr, "ebm: scoring: %s\n", gm_last_error());
        return 1;
    }
    if (!a->quiet)
        printf("ebm: %d samples from noise (%d steps): FD %.2f, label entropy %.3f; from the buffer: FD %.2f, label entropy %.3f\n",
               n, cfg.sample_steps, s_noise.fd, s_noise.entropy, s_buf.fd, s_buf.entropy);
    ex_json_init(&j);
    ex_json_str(&j, "dataset", "mnist");
    ex_json_num(&j, "steps", (double)run.step);
    ex_json_num(&j, "fd", s_noise.fd);
    ex_json_num(&j, "label_entropy", s_noise.entropy);
    ex_json_num(&j, "fd_buffer", s_buf.fd);
    ex_json_num(&j, "label_entropy_buffer", s_buf.entropy);
    ex_json_num(&j, "n_scored", n);
    ex_json_num(&j, "train_s", train_s);
    ex_json_num(&j, "train_cpu_s", train_cpu);
    ex_json_num(&j, "sample_s", sample_s);
    ex_json_print(&j);
    ex_run_free(&run);
    free(smp);
    gm_ebm_free(&m);
    gm_digit_classifier_free(&metric);
    gm_dataset_free(&tr);
    gm_dataset_free(&te);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* 2-D toys                                                                                 */
/* ---------------------------------------------------------------------------------------- */
/* 8 Gaussians only: the fraction of samples within 0.25 of a mode (a uniform ring of radius 2
   would put 32% there) and the modes holding >= 2% */
static void coverage(const float *x, int n, double *near, int *modes) {
    int cnt[8] = {0}, i, k, hit = 0;
    for (i = 0; i < n; i++)
        for (k = 0; k < 8; k++) {
            double an = 2 * PI_ * k / 8, dx = x[2 * i] - 2 * cos(an), dy = x[2 * i + 1] - 2 * sin(an);
            if (dx * dx + dy * dy < 0.0625) { cnt[k]++; hit++; break; }
        }
    *near = (double)hit / n;
    *modes = 0;
    for (k = 0; k < 8; k++) *modes += cnt[k] >= 0.02 * n;
}

static int scatter(gm_image *img, const float *xy, int n, float lim) {
    gm_plot_opts o = gm_plot_defaults();
    o.w = 420; o.h = 420;
    o.fixed_x = o.fixed_y = 1; o.x0 = o.y0 = -lim; o.x1 = o.y1 = lim;
    return gm_plot_scatter(img, &o, xy, n, NULL, 0, NULL);
}

/* exp(-E) on a GRID x GRID lattice over [-lim, lim]^2, normalized to sum 1 */
static int density(gm_ebm *m, float lim, gm_image *img) {
    static float pts[GRID * GRID * 2], e[GRID * GRID];
    gm_plot_opts o = gm_plot_defaults();
    int i, j;
    double emin = 1e30;
    for (j = 0; j < GRID; j++)
        for (i = 0; i < GRID; i++) {
            pts[2 * (j * GRID + i)] = -lim + (i + 0.5f) * 2 * lim / GRID;
            pts[2 * (j * GRID + i) + 1] = -lim + (j + 0.5f) * 2 * lim / GRID;
        }
    if (gm_ebm_energy(m, pts, GRID * GRID, e) != 0) return -1;
    for (i = 0; i < GRID * GRID; i++) emin = e[i] < emin ? e[i] : emin;
    for (i = 0; i < GRID * GRID; i++) e[i] = (float)exp(-(e[i] - emin));
    o.w = 480; o.h = 420;   /* the panel's caption names it */
    return gm_plot_heatmap(img, &o, e, GRID, GRID, -lim, lim, -lim, lim);
}

/* the Langevin chain from uniform noise over its steps, one panel per frame */
static int toy_chain(const ex_args *a, gm_ebm *m, float *traj, int n, float lim) {
    static const int fsteps[NFRAMES] = {0, 20, 60, 200};
    gm_image frames[NFRAMES], img;
    char fcap[NFRAMES][32];
    const char *fcaps[NFRAMES];
    gm_rng rng;
    int i, k, done = 0, rc = 0;
    gm_rng_seed(&rng, a->seed + 1);
    for (i = 0; i < 2 * n; i++) traj[i] = -lim + 2 * lim * gm_rng_uniform(&rng);
    memset(frames, 0, sizeof frames);
    for (k = 0; k < NFRAMES && rc == 0; k++) {
        if (fsteps[k] > done) rc = gm_ebm_langevin(m, traj, n, fsteps[k] - done);
        done = fsteps[k];
        snprintf(fcap[k], sizeof fcap[k], "step %d", fsteps[k]);
        fcaps[k] = fcap[k];
        if (rc == 0) rc = scatter(&frames[k], traj, n, lim);
    }
    if (rc == 0 && (rc = gm_image_hstack(&img, frames, NFRAMES, fcaps, 10)) == 0) rc = ex_save_png(a, "ebm_langevin.png", &img);
    for (k = 0; k < NFRAMES; k++) gm_image_free(&frames[k]);
    return rc;
}

static int run_toy(ex_args *a, opts *o) {
    int n_data = 20000, n_samples = 2000, k, modes = 0, modes_buf = 0;
    gm_ebm m;
    gm_ebm_config cfg;
    ex_run run;
    ex_json j;
    gm_image panels[4], img;
    const char *caps[4] = {"data", "exp(-E)", "Langevin from noise", "Langevin from the buffer"};
    float *data = (float *)malloc(sizeof(float) * 2 * (size_t)n_data), *smp = (float *)malloc(sizeof(float) * 4 * (size_t)n_samples);
    double t0, train_s, near = 0, near_buf = 0;

    if (!data || !smp) { fprintf(stderr, "ebm: out of memory\n"); return 1; }
    if (gm_toy2d(o->dataset, n_data, a->seed, -1, data, NULL) != 0) { fprintf(stderr, "ebm: --dataset: %s\n", gm_last_error()); return 2; }
    set_config(&cfg, o, a, 0);
    if (gm_ebm_init(&m, &cfg) != 0) { fprintf(stderr, "ebm: %s\n", gm_last_error()); return 1; }
    if (a->load && gm_ebm_load(&m, a->load) != 0) { fprintf(stderr, "ebm: %s\n", gm_last_error()); return 1; }
    if (!a->quiet) printf("ebm: %s, MLP 2-%dx%d-1, %d Langevin steps of %g (noise %g)\n", o->dataset, cfg.hidden, cfg.depth,
                          cfg.langevin_steps, (double)cfg.step_size, (double)cfg.noise);
    ex_run_begin(&run, a, ex_total_steps(a, n_data / a->batch), a->batch, "loss,e_data,e_samples");
    t0 = ex_now();
    if (train(a, &m, data, n_data, 2, &run) != 0) { fprintf(stderr, "ebm: %s\n", gm_last_error()); return 1; }
    train_s = ex_now() - t0;
    ex_run_end(&run);
    ex_run_plot(&run, "ebm_loss.png", "deep EBM: loss and mean energies", 0);
    if (a->save && gm_ebm_save(&m, a->save) != 0) { fprintf(stderr, "ebm: %s\n", gm_last_error()); return 1; }
    if (toy_chain(a, &m, smp, n_samples, o->lim) != 0 || gm_ebm_sample(&m, NULL, n_samples, smp) != 0 ||
        gm_ebm_sample_buffer(&m, n_samples, smp + 2 * n_samples) != 0) {
        fprintf(stderr, "ebm: %s\n", gm_last_error());
        return 1;
    }
    memset(panels, 0, sizeof panels);
    if (scatter(&panels[0], data, n_samples, o->lim) != 0 || density(&m, o->lim, &panels[1]) != 0 ||
        scatter(&panels[2], smp, n_samples, o->lim) != 0 || scatter(&panels[3], smp + 2 * n_samples, n_samples, o->lim) != 0 ||
        gm_image_hstack(&img, panels, 4, caps, 10) != 0 || ex_save_png(a, "ebm_toy.png", &img) != 0) {
        fprintf(stderr, "ebm: pictures: %s\n", gm_last_error());
        return 1;
    }
    for (k = 0; k < 4; k++) gm_image_free(&panels[k]);
    ex_json_init(&j);
    ex_json_str(&j, "dataset", o->dataset);
    ex_json_num(&j, "steps", (double)run.step);
    if (!strcmp(o->dataset, "8gaussians")) {
        coverage(smp, n_samples, &near, &modes);
        coverage(smp + 2 * n_samples, n_samples, &near_buf, &modes_buf);
        ex_json_num(&j, "modes_noise", modes);
        ex_json_num(&j, "near_mode_noise", near);
        ex_json_num(&j, "modes_buffer", modes_buf);
        ex_json_num(&j, "near_mode_buffer", near_buf);
    }
    ex_json_num(&j, "train_s", train_s);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_ebm_free(&m);
    free(data); free(smp);
    return 0;
}

int main(int argc, char **argv) {
    int mnist = is_mnist(argc, argv);
    /* MNIST: the conv recipe of gm_ebm_conv_config with shorter chains (the replay buffer carries
       them on); toys: a small MLP with a gentle step */
    opts o = {"mnist", 64, 2, 16, 20, 8192, 1000, 256, 10.0f, 0.005f, 0.03f, 0.1f, 0.05f, 4.0f};
    ex_opt extra[] = {
        {"dataset", EX_STRING, &o.dataset, "mnist, or a 2-D toy (moons circles 8gaussians checkerboard pinwheel 2spirals swissroll)", NULL},
        {"hidden", EX_INT, &o.hidden, "width of the dense layer(s)", "1..4096"},
        {"depth", EX_INT, &o.depth, "2-D toys: MLP hidden layers", "1..8"},
        {"channels", EX_INT, &o.channels, "MNIST: conv widths c, 2c, 4c, 4c", "1..256"},
        {"langevin-steps", EX_INT, &o.lsteps, "Langevin steps per training step", "1..10000"},
        {"sample-steps", EX_INT, &o.sample_steps, "Langevin steps of the samples from noise", "1..100000"},
        {"step-size", EX_FLOAT, &o.step_size, "Langevin step on dE/dx", "0.."},
        {"noise", EX_FLOAT, &o.noise, "Langevin noise std", "0.."},
        {"grad-clip", EX_FLOAT, &o.grad_clip, "clamp each component of dE/dx to [-c, c] (0: none)", "0.."},
        {"alpha", EX_FLOAT, &o.alpha, "weight of the energy-magnitude term", "0.."},
        {"reinit", EX_FLOAT, &o.reinit, "fraction of negatives started from noise", "0..1"},
        {"buffer", EX_INT, &o.buffer, "replay buffer size", "1..10000000"},
        {"range", EX_FLOAT, &o.lim, "2-D toys: plots and noise starts cover [-range, range]^2", "0.1.."},
        {"score", EX_INT, &o.score, "MNIST: samples scored by the digit classifier (>= 64)", "64..100000"},
    };
    ex_args a = mnist ? ex_defaults("ebm", 0, 64, 2e-4f) : ex_defaults("ebm", 0, 256, 3e-3f);
    if (!mnist) { o.lsteps = 40; o.step_size = 0.01f; o.grad_clip = 0; o.buffer = 10000; o.sample_steps = 200; }
    ex_init(&a, argc, argv, "Deep energy-based model: a conv energy on MNIST or an MLP on a 2-D toy; Langevin dynamics with a replay buffer.",
            extra, (int)(sizeof extra / sizeof extra[0]));
    ex_requires(&a, argc, argv, "depth", !mnist, "on the 2-D toys (MNIST uses --channels)");
    ex_requires(&a, argc, argv, "range", !mnist, "on the 2-D toys");
    ex_requires(&a, argc, argv, "channels", mnist, "on MNIST (the toys use --depth)");
    ex_requires(&a, argc, argv, "score", mnist, "on MNIST");
    if (!(o.step_size > 0)) { fprintf(stderr, "ebm: --step-size %g: the Langevin step must be > 0\n", (double)o.step_size); return 2; }
    ex_requires(&a, argc, argv, "samples", a.dump_samples != NULL, "with --dump-samples (how many samples it writes; --score sets how many are drawn)");
    if (a.steps < 0 && !ex_given(argc, argv, "epochs")) a.steps = mnist ? 2000 : 2500;   /* the default budgets */
    gm_flush_denormals();
    return mnist ? run_mnist(&a, &o) : run_toy(&a, &o);
}
