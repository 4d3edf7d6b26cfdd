/* pixelcnn: PixelCNN (masked convolutions: a 7x7 mask-A layer, residual blocks with 3x3 mask-B
 * convolutions, 1x1 output layers) or Gated PixelCNN (--model gated: vertical and horizontal
 * stacks without a blind spot, tanh x sigmoid gates; --conditional adds a learned bias per class
 * and layer, and the sample grid gets one row per digit) or PixelRNN's Row LSTM (--model rowlstm: a
 * 7x7 mask-A convolution, then LSTM layers that run down the image one row at a time; also
 * --conditional) on MNIST, one pixel at a time.
 * --levels 2: binary digits, a Bernoulli per pixel (the bundled data/ digits binarized once with a
 * fixed random stream; a --data directory whose pixels are already 0 or 1, a statically binarized
 * MNIST, is used as it is); --levels 256: the 8-bit digits, a 256-way softmax per pixel.
 * Writes a grid of samples and a completion panel (the top half of test digits given, three
 * completions each, the original beside them); prints the exact test -log p(x) in nats and
 * bits/dim. By default: the gated model, lr 2e-3, 10 minutes of training (--minutes; training ends
 * at the first of --minutes, --epochs or --steps).
 *
 *   cc -O2 -I. examples/pixelcnn.c -o pixelcnn -lm -lpthread
 *   ./pixelcnn                                          # gated, 10 minutes, bundled digits
 *   ./pixelcnn --lr 1e-3 --minutes 0 --steps 835        # the PyTorch reference's recipe
 *   ./pixelcnn --model pixelcnn --minutes 1             # the plain PixelCNN */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_AR_IMPLEMENTATION
#include "../genmod_ar.h"
#include "common.h"

#define BIN_SEED 20151   /* the fixed stream that binarizes the bundled digits */

static int fail(void) { fprintf(stderr, "pixelcnn: %s\n", gm_last_error()); return 1; }

/* Rows of: the given top half (bottom grey), three completions, the original. */
static int completion_panel(gm_pixelcnn *m, const ex_args *a, const float *test, const int *labels, int rows, float temperature) {
    enum { C = 5 };
    float *given = (float *)malloc(sizeof(float) * 784 * 3 * (size_t)rows), *done = (float *)malloc(sizeof(float) * 784 * 3 * (size_t)rows);
    float *cells = (float *)malloc(sizeof(float) * 784 * C * (size_t)rows);
    int r, k, p, rc = -1, lab[3 * 64];
    gm_image img;
    if (!given || !done || !cells || rows > 64) goto out;
    for (r = 0; labels && r < 3 * rows; r++) lab[r] = labels[r / 3];
    for (r = 0; r < rows; r++)
        for (k = 0; k < 3; k++) memcpy(given + ((size_t)r * 3 + k) * 784, test + (size_t)r * 784, 784 * sizeof(float));
    if (gm_pixelcnn_sample_ex(m, labels ? lab : NULL, NULL, 0, 3 * rows, temperature, given, 14, done) != 0) goto out;
    for (r = 0; r < rows; r++) {
        float *row = cells + (size_t)r * C * 784;
        for (p = 0; p < 784; p++) row[p] = p < 14 * 28 ? test[(size_t)r * 784 + p] : 0.5f;
        for (k = 0; k < 3; k++) memcpy(row + (size_t)(1 + k) * 784, done + ((size_t)r * 3 + k) * 784, 784 * sizeof(float));
        memcpy(row + 4 * 784, test + (size_t)r * 784, 784 * sizeof(float));
    }
    if (ex_digit_grid(&img, cells, rows * C, C, 0, 1) == 0) { rc = ex_save_png(a, "pixelcnn_completions.png", &img); gm_image_free(&img); }
out:
    free(given); free(done); free(cells);
    return rc;
}

int main(int argc, char **argv) {
    const char *model = "gated";
    int levels = 2, channels = 0, blocks = 5, layers = 0, conditional = 0, n_train = 60000, n_test = 10000, nsamples, k, gated, rowlstm, cached;
    int *slab = NULL, no_speedup = 0;
    float temperature = 1.0f;
    ex_opt extra[] = {
        {"model", EX_CHOICE, &model, "architecture", "pixelcnn|gated|rowlstm"},
        {"conditional", EX_BOOL, &conditional, "gated, rowlstm: condition on the digit's class", NULL},
        {"layers", EX_INT, &layers, "gated: gated layers, the first included; rowlstm: LSTM layers (0: 8 gated, 4 rowlstm)", "0..16"},
        {"levels", EX_INT, &levels, "2: binary digits (Bernoulli); 256: 8-bit digits (softmax)", "2..256"},
        {"channels", EX_INT, &channels, "channels (even; 0: 64 plain, 32 gated and rowlstm)", "0..1024"},
        {"blocks", EX_INT, &blocks, "pixelcnn: residual blocks", "0..16"},
        {"temperature", EX_FLOAT, &temperature, "sampling temperature", "0.01..10"},
        {"no-speedup", EX_BOOL, &no_speedup, "gated, rowlstm: skip timing naive against cached sampling on one image", NULL},
        {"n-train", EX_INT, &n_train, "training images (at most the file's)", "1..60000"},
        {"n-test", EX_INT, &n_test, "test images (at most the file's)", "1..10000"},
    };
    /* The default is the best model of the family in a 10-minute budget: the Gated PixelCNN at
       lr 2e-3 (the PyTorch reference's recipe, --lr 1e-3 --minutes 0 --steps 835, is a flag away). */
    ex_args a = ex_defaults("pixelcnn", 1000, 64, 2e-3f);
    ex_run run;
    ex_json j;
    gm_dataset train, test;
    gm_pixelcnn m;
    gm_pixelcnn_config cfg;
    gm_pixelcnn_eval ev;
    gm_batcher b;
    const int *idx;
    float *xb, *smp;
    int *yb;
    double t0, train_s = 0, eval_s, sample_s, speedup = 0;
    int same = 0;
    long steps_per_epoch;
    int binarized_here = 0;
    gm_image img;

    a.samples = 16;   /* naive sampling runs the whole network once per pixel */
    a.minutes = 10;
    ex_init(&a, argc, argv, "PixelCNN on MNIST digits: exact likelihood, samples, completions.",
            extra, (int)(sizeof extra / sizeof extra[0]));
    if (levels != 2 && levels != 256) { fprintf(stderr, "pixelcnn: --levels must be 2 or 256, got %d\n", levels); return 2; }
    gated = !strcmp(model, "gated");
    rowlstm = !strcmp(model, "rowlstm");
    cached = gated || rowlstm;   /* the models with a cached sampler */
    if (conditional && !cached) { fprintf(stderr, "pixelcnn: --conditional needs --model gated or rowlstm\n"); return 2; }
    ex_requires(&a, argc, argv, "blocks", !gated && !rowlstm, "with --model pixelcnn (the plain model's residual blocks)");
    ex_requires(&a, argc, argv, "layers", cached, "with --model gated or rowlstm (the plain model has --blocks)");
    if (channels % 2 != 0) { fprintf(stderr, "pixelcnn: --channels %d must be even (the gates split them in halves)\n", channels); return 2; }
    ex_requires(&a, argc, argv, "samples", !conditional, "without --conditional (which draws 4 of each digit)");
    nsamples = conditional ? 40 : a.samples;   /* conditional: 4 per digit */
    gm_flush_denormals();
    if (gm_mnist_load(&train, &test, a.data_dir, n_train, n_test, 0.0f, 1.0f) != 0) return fail();
    if (levels == 2)
        binarized_here = ex_binarize_digits(train.x, (size_t)train.n * 784, test.x, (size_t)test.n * 784, BIN_SEED);
    cfg = gated ? gm_pixelcnn_gated_config(28, 28, levels)
          : rowlstm ? gm_pixelcnn_rowlstm_config(28, 28, levels) : gm_pixelcnn_default_config(28, 28, levels);
    if (channels) cfg.channels = channels;
    if (layers) cfg.layers = layers;
    cfg.blocks = blocks; cfg.classes = conditional ? 10 : 0;
    cfg.lr = a.lr; cfg.batch = a.batch; cfg.seed = a.seed;
    if (gm_pixelcnn_init(&m, &cfg) != 0) return fail();
    if (a.load && gm_pixelcnn_load(&m, a.load) != 0) return fail();
    if (!a.quiet) {
        printf("pixelcnn: %s, %d levels, %d channels, %d %s, %zu parameters, %d train / %d test, %d threads\n", model, levels,
               cfg.channels, cached ? cfg.layers : blocks, cached ? "layers" : "blocks", gm_params_count(&m.params), train.n, test.n, gm_get_threads());
        if (levels == 2)
            printf("pixelcnn: %s\n", binarized_here ? "digits binarized here, each pixel drawn once from Bernoulli(intensity) with a fixed stream"
                                                    : "digits already binary: used as they are");
    }

    xb = (float *)malloc(sizeof(float) * 784 * (size_t)a.batch);
    yb = (int *)malloc(sizeof(int) * (size_t)a.batch);
    ex_check_batch(&a, train.n);   /* before the batcher, which would refuse it less clearly */
    gm_batcher_init(&b, train.n, a.batch, a.seed, 1);
    steps_per_epoch = train.n / a.batch > 0 ? train.n / a.batch : 1;
    ex_run_begin(&run, &a, ex_total_steps(&a, steps_per_epoch), a.batch, "nll,bpd");
    t0 = ex_now();
    while (run.step < run.total && !ex_interrupted()) {   /* steps, --minutes or Ctrl-C */
        while (run.step < run.total && !ex_interrupted() && (k = gm_batcher_next(&b, &idx)) > 0) {
            gm_pixelcnn_stats st;
            float mv[2];
            gm_dataset_gather(&train, idx, k, xb, yb);
            if (gm_pixelcnn_train_step(&m, xb, conditional ? yb : NULL, k, &st) != 0) return fail();
            mv[0] = st.loss; mv[1] = st.bits_per_dim;
            ex_run_step(&run, mv);
        }
    }
    train_s = ex_now() - t0;
    ex_run_end(&run);
    ex_run_plot(&run, "pixelcnn_loss.png", "PixelCNN: training -log p(x) (nats) and bits/dim", 1);
    if (a.save && gm_pixelcnn_save(&m, a.save) != 0) return fail();

    t0 = ex_now();
    if (gm_pixelcnn_evaluate(&m, test.x, conditional ? test.y : NULL, NULL, 0, test.n, &ev) != 0) return fail();
    eval_s = ex_now() - t0;
    if (!a.quiet) printf("test: %.2f nats, %.4f bits/dim (%d images, %.1f s)\n", ev.nats, ev.bits_per_dim, test.n, eval_s);

    t0 = ex_now();
    smp = (float *)malloc(sizeof(float) * 784 * (size_t)nsamples);
    slab = (int *)malloc(sizeof(int) * (size_t)nsamples);
    for (k = 0; slab && k < nsamples; k++) slab[k] = k / 4;   /* conditional: a row of 4 per digit */
    if (!smp || !slab || gm_pixelcnn_sample_ex(&m, conditional ? slab : NULL, NULL, 0, nsamples, temperature, NULL, 0, smp) != 0) return fail();
    if (ex_digit_grid(&img, smp, nsamples, conditional ? 4 : 8, 0, 1) == 0) { ex_save_png(&a, "pixelcnn_samples.png", &img); gm_image_free(&img); }
    ex_dump_samples(&a, smp, nsamples, 28, 28, 0, 1);
    if (completion_panel(&m, &a, test.x, conditional ? test.y : NULL, 4, temperature) != 0) return fail();
    sample_s = ex_now() - t0;
    if (!a.quiet) printf("sampling: %.1f s (%s)\n", sample_s, cached ? "cached" : "naive: the whole network per pixel");
    if (cached && !no_speedup) {   /* one image both ways from the same random state */
        gm_rng saved = m.rng;
        float one[2 * 784];
        double tn, tc;
        int lab0 = 0;
        m.cfg.naive_sampling = 1;
        t0 = ex_now();
        if (gm_pixelcnn_sample_ex(&m, conditional ? &lab0 : NULL, NULL, 0, 1, temperature, NULL, 0, one) != 0) return fail();
        tn = ex_now() - t0;
        m.rng = saved;
        m.cfg.naive_sampling = 0;
        t0 = ex_now();
        if (gm_pixelcnn_sample_ex(&m, conditional ? &lab0 : NULL, NULL, 0, 1, temperature, NULL, 0, one + 784) != 0) return fail();
        tc = ex_now() - t0;
        same = memcmp(one, one + 784, sizeof(float) * 784) == 0;
        speedup = tn / (tc > 1e-9 ? tc : 1e-9);
        if (!a.quiet) printf("one 28x28 image: naive %.2f s, cached %.3f s, %.1fx faster, %s image\n", tn, tc, speedup,
                             same ? "the same" : "NOT the same");
    }

    ex_json_init(&j);
    ex_json_str(&j, "model", model);
    ex_json_num(&j, "levels", levels);
    ex_json_num(&j, "conditional", conditional);
    ex_json_num(&j, "steps", (double)run.step);
    ex_json_num(&j, "batch", a.batch);
    ex_json_num(&j, "test_nll_nats", ev.nats);
    ex_json_num(&j, "test_bpd", ev.bits_per_dim);
    ex_json_num(&j, "n_test", test.n);
    ex_json_num(&j, "params", (double)gm_params_count(&m.params));
    ex_json_num(&j, "train_s", train_s);
    ex_json_num(&j, "eval_s", eval_s);
    ex_json_num(&j, "sampling_s", sample_s);
    if (speedup > 0) { ex_json_num(&j, "sampling_speedup", speedup); ex_json_num(&j, "cached_same_image", same); }
    if (levels == 2) ex_json_num(&j, "binarized_here", binarized_here);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&b);
    gm_pixelcnn_free(&m);
    gm_dataset_free(&train); gm_dataset_free(&test);
    free(xb); free(yb); free(smp); free(slab);
    return 0;
}
