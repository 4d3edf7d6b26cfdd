/* made: MADE, the masked autoencoder for distribution estimation, on binarized digits or a 2-D toy.
 * Digits: exact test -log p(x) in nats and bits/dim, a grid of samples drawn one pixel at a time,
 * and a completion panel (the top half of test digits given, three completions each, the original
 * beside them). The bundled data/ digits are binarized once with a fixed random stream (so every
 * run sees the same bits); a --data directory whose pixels are already 0 or 1 (a statically
 * binarized MNIST, the literature's benchmark) is used as it is. Toys (--dataset moons, ...): a
 * mixture-of-Gaussians MADE, the data, the learned density as a heatmap, and samples.
 * --minutes X stops training after X minutes of wall clock; --save / --load as in every example.
 *
 *   cc -O2 -I. examples/made.c -o made -lm -lpthread
 *   ./made --epochs 20 --masks 8 --ensemble 8
 *   ./made --dataset moons */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_AR_IMPLEMENTATION
#include "../genmod_ar.h"
#include "common.h"

#define BIN_SEED 20151   /* the fixed stream that binarizes the bundled digits */

static int fail(void) { fprintf(stderr, "made: %s\n", gm_last_error()); return 1; }

/* Rows of: the given top half (bottom grey), three completions, the original. */
static int completion_panel(gm_made *m, const ex_args *a, const float *test, int rows, float temperature) {
    enum { C = 5 };
    float *given = (float *)malloc(sizeof(float) * 784 * 3 * (size_t)rows), *done = given ? (float *)malloc(sizeof(float) * 784 * 3 * (size_t)rows) : NULL;
    float *cells = (float *)malloc(sizeof(float) * 784 * C * (size_t)rows);
    unsigned char *known = (unsigned char *)malloc(784 * 3 * (size_t)rows);
    int r, k, p, rc = -1;
    gm_image img;
    if (!given || !done || !cells || !known) goto out;
    for (r = 0; r < rows; r++)
        for (k = 0; k < 3; k++)
            for (p = 0; p < 784; p++) {
                given[((size_t)r * 3 + k) * 784 + p] = test[(size_t)r * 784 + p];
                known[((size_t)r * 3 + k) * 784 + p] = p < 14 * 28;   /* the top 14 rows */
            }
    if (gm_made_sample_ex(m, 3 * rows, temperature, 0, given, known, done) != 0) goto out;
    for (r = 0; r < rows; r++) {
        float *row = cells + (size_t)r * C * 784;
        for (p = 0; p < 784; p++) row[p] = p < 14 * 28 ? test[(size_t)r * 784 + p] : 0.5f;
        for (k = 0; k < 3; k++) memcpy(row + (size_t)(1 + k) * 784, done + ((size_t)r * 3 + k) * 784, 784 * sizeof(float));
        memcpy(row + 4 * 784, test + (size_t)r * 784, 784 * sizeof(float));
    }
    if (ex_digit_grid(&img, cells, rows * C, C, 0, 1) == 0) { rc = ex_save_png(a, "made_completions.png", &img); gm_image_free(&img); }
out:
    free(given); free(done); free(cells); free(known);
    return rc;
}

/* The toy's density exp(log p) on a G x G grid over [lo,hi]^2; *integral: its sum x cell area. */
static int density(gm_made *m, gm_image *img, float lo, float hi, double *integral) {
    int G = 160, i, j, rc;
    float *xy = (float *)malloc(sizeof(float) * 3 * (size_t)G * G), *p = xy ? xy + 2 * (size_t)G * G : NULL;
    double *lp = (double *)malloc(sizeof(double) * (size_t)G * G), cell = (hi - lo) / (double)G, s = 0;
    gm_plot_opts o = gm_plot_defaults();
    if (!xy || !lp) { free(xy); free(lp); return -1; }
    for (j = 0; j < G; j++) for (i = 0; i < G; i++) {
        xy[2 * (j * G + i)] = lo + (float)((i + 0.5) * cell);
        xy[2 * (j * G + i) + 1] = lo + (float)((j + 0.5) * cell);
    }
    rc = gm_made_log_prob(m, xy, G * G, lp);
    for (i = 0; rc == 0 && i < G * G; i++) { p[i] = (float)exp(lp[i]); s += p[i] * cell * cell; }
    *integral = s;
    o.w = 480; o.h = 420; o.title = "MADE density p(x)";
    if (rc == 0) rc = gm_plot_heatmap(img, &o, p, G, G, lo, hi, lo, hi);
    free(xy); free(lp);
    return rc;
}

static int scatter(gm_image *img, const char *title, const float *xy, int n, float lo, float hi) {
    gm_plot_opts o = gm_plot_defaults();
    o.w = 420; o.h = 420; o.title = title;
    o.fixed_x = o.fixed_y = 1; o.x0 = o.y0 = lo; o.x1 = o.y1 = hi;
    o.point_size = 1.5f;
    return gm_plot_scatter(img, &o, xy, n, NULL, 0, NULL);
}

int main(int argc, char **argv) {
    const char *dataset = "mnist", *ordering = "natural";
    int hidden = 500, layers = 2, masks = 1, ensemble = 1, components = 5, n_train = 60000, n_test = 10000, dim, k;
    float temperature = 1.0f;
    ex_opt extra[] = {
        {"dataset", EX_CHOICE, &dataset, "data", "mnist|moons|circles|8gaussians|checkerboard|pinwheel|2spirals|swissroll"},
        {"hidden", EX_INT, &hidden, "units per hidden layer", "1..8192"},
        {"layers", EX_INT, &layers, "hidden layers", "1..6"},
        {"ordering", EX_CHOICE, &ordering, "input order of the mask sets", "natural|random"},
        {"masks", EX_INT, &masks, "mask sets cycled in training", "1..64"},
        {"ensemble", EX_INT, &ensemble, "mask sets averaged in the test likelihood", "1..64"},
        {"components", EX_INT, &components, "toys: Gaussians per dimension", "1..64"},
        {"temperature", EX_FLOAT, &temperature, "sampling temperature", "0.01..10"},
        {"n-train", EX_INT, &n_train, "digits: training images (at most the file's)", "1..60000"},
        {"n-test", EX_INT, &n_test, "digits: test images (at most the file's)", "1..10000"},
    };
    ex_args a = ex_defaults("made", 20, 100, 1e-3f);
    ex_run run;
    ex_json j;
    gm_dataset train, test;
    gm_made m;
    gm_made_config cfg;
    gm_made_eval ev;
    gm_batcher b;
    const int *idx;
    float *xb, *smp, *xtr, *xte, lo = -4, hi = 4;
    double t0, train_s = 0, integral = 0;
    long steps_per_epoch;
    int toy, ntr, nte, nsmp, binarized_here = 0;
    gm_image img, panels[3];

    ex_init(&a, argc, argv, "MADE on binarized MNIST digits or a 2-D toy: exact likelihood, samples, completions.",
            extra, (int)(sizeof extra / sizeof extra[0]));
    gm_flush_denormals();
    toy = strcmp(dataset, "mnist") != 0;
    if (!ex_given(argc, argv, "samples")) a.samples = toy ? 2000 : 64;   /* a scatter, or an 8-wide grid */
    ex_requires(&a, argc, argv, "components", toy, "on the 2-D toys (digits are Bernoulli)");
    if (ensemble > masks) { fprintf(stderr, "made: --ensemble %d: at most --masks (%d) mask sets to average\n", ensemble, masks); return 2; }
    memset(&train, 0, sizeof train); memset(&test, 0, sizeof test);
    if (toy) {
        ntr = n_train < 20000 ? n_train : 20000; nte = 5000; dim = 2;
        xtr = (float *)malloc(sizeof(float) * 2 * (size_t)ntr);
        xte = (float *)malloc(sizeof(float) * 2 * (size_t)nte);
        if (!xtr || !xte || gm_toy2d(dataset, ntr, a.seed, -1, xtr, NULL) != 0 ||
            gm_toy2d(dataset, nte, a.seed + 1000, -1, xte, NULL) != 0) return fail();
    } else {
        if (gm_mnist_load(&train, &test, a.data_dir, n_train, n_test, 0.0f, 1.0f) != 0) return fail();
        ntr = train.n; nte = test.n; dim = 784;
        xtr = train.x; xte = test.x;
        binarized_here = ex_binarize_digits(xtr, (size_t)ntr * 784, xte, (size_t)nte * 784, BIN_SEED);
    }
    cfg = gm_made_default_config(dim, toy ? GM_MADE_GAUSSIAN : GM_MADE_BERNOULLI);
    cfg.n_hidden = layers;
    for (k = 0; k < layers; k++) cfg.hidden[k] = hidden;
    cfg.ordering = !strcmp(ordering, "random") ? GM_MADE_RANDOM : GM_MADE_NATURAL;
    cfg.masks = masks; cfg.ensemble = ensemble; cfg.components = components;
    cfg.lr = a.lr; cfg.batch = a.batch; cfg.seed = a.seed;
    if (gm_made_init(&m, &cfg) != 0) return fail();
    if (a.load && gm_made_load(&m, a.load) != 0) return fail();
    if (!a.quiet) {
        printf("made: %s, %d x %d hidden, %s order, %d mask set(s), %zu parameters, %d train / %d test, %d threads\n",
               dataset, layers, hidden, ordering, masks, gm_params_count(&m.params), ntr, nte, gm_get_threads());
        if (!toy)
            printf("made: %s\n", binarized_here ? "digits binarized here, each pixel drawn once from Bernoulli(intensity) with a fixed stream"
                                                : "digits already binary: used as they are");
    }

    xb = (float *)malloc(sizeof(float) * (size_t)dim * (size_t)a.batch);
    ex_check_batch(&a, ntr);   /* before the batcher, which would refuse it less clearly */
    gm_batcher_init(&b, ntr, a.batch, a.seed, 1);
    steps_per_epoch = ntr / a.batch > 0 ? ntr / a.batch : 1;
    ex_run_begin(&run, &a, ex_total_steps(&a, steps_per_epoch), a.batch, "nll,bpd");
    t0 = ex_now();
    while (run.step < run.total && !ex_interrupted()) {   /* steps, --minutes or Ctrl-C */
        while (run.step < run.total && !ex_interrupted() && (k = gm_batcher_next(&b, &idx)) > 0) {
            gm_made_stats st;
            float mv[2];
            int i;
            for (i = 0; i < k; i++) memcpy(xb + (size_t)i * dim, xtr + (size_t)idx[i] * dim, sizeof(float) * (size_t)dim);
            if (gm_made_train_step(&m, xb, NULL, k, &st) != 0) return fail();
            mv[0] = st.loss; mv[1] = st.bits_per_dim;
            ex_run_step(&run, mv);
        }
    }
    train_s = ex_now() - t0;
    ex_run_end(&run);
    ex_run_plot(&run, "made_loss.png", "MADE: training -log p(x) (nats) and bits/dim", 1);
    if (a.save && gm_made_save(&m, a.save) != 0) return fail();

    t0 = ex_now();
    if (gm_made_evaluate(&m, xte, nte, &ev) != 0) return fail();
    if (!a.quiet) printf("test: %.2f nats, %.4f bits/dim (%d examples, ensemble of %d mask set(s), %.1f s)\n", ev.nats,
                         ev.bits_per_dim, nte, ensemble, ex_now() - t0);

    nsmp = a.samples > 0 ? a.samples : 1;
    smp = (float *)malloc(sizeof(float) * (size_t)dim * nsmp);
    t0 = ex_now();
    if (toy) {
        memset(panels, 0, sizeof panels);
        if (gm_made_sample_ex(&m, nsmp, temperature, 0, NULL, NULL, smp) != 0) return fail();
        if (scatter(&panels[0], "data", xte, nte < 2000 ? nte : 2000, lo, hi) != 0 ||
            density(&m, &panels[1], lo, hi, &integral) != 0 ||
            scatter(&panels[2], "MADE samples", smp, nsmp, lo, hi) != 0) return fail();
        if (gm_image_hstack(&img, panels, 3, NULL, 10) == 0) { ex_save_png(&a, "made_2d.png", &img); gm_image_free(&img); }
        for (k = 0; k < 3; k++) gm_image_free(&panels[k]);
        if (!a.quiet) printf("density on [%g,%g]^2 integrates to %.4f\n", lo, hi, integral);
    } else {
        if (gm_made_sample_ex(&m, nsmp, temperature, 0, NULL, NULL, smp) != 0) return fail();
        if (ex_digit_grid(&img, smp, nsmp, 8, 0, 1) == 0) { ex_save_png(&a, "made_samples.png", &img); gm_image_free(&img); }
        if (ex_dump_samples(&a, smp, nsmp, 28, 28, 0, 1) != 0) return fail();
        if (completion_panel(&m, &a, xte, 8, temperature) != 0) return fail();
    }
    if (!a.quiet) printf("sampling: %.1f s\n", ex_now() - t0);

    ex_json_init(&j);
    ex_json_str(&j, "dataset", dataset);
    ex_json_num(&j, "steps", (double)run.step);
    ex_json_num(&j, "batch", a.batch);
    ex_json_num(&j, "test_nll_nats", ev.nats);
    ex_json_num(&j, "test_bpd", ev.bits_per_dim);
    ex_json_num(&j, "n_test", nte);
    ex_json_num(&j, "masks", masks);
    ex_json_num(&j, "ensemble", ensemble);
    ex_json_num(&j, "params", (double)gm_params_count(&m.params));
    ex_json_num(&j, "train_s", train_s);
    if (toy) ex_json_num(&j, "density_integral", integral);
    else ex_json_num(&j, "binarized_here", binarized_here);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&b);
    gm_made_free(&m);
    if (toy) { free(xtr); free(xte); }
    gm_dataset_free(&train); gm_dataset_free(&test);
    free(xb); free(smp);
    return 0;
}
