/* test_flow.c: normalizing flows (genmod_flow.h): exactness of every layer and model (inverse,
   log-det against the autodiff Jacobian), that the models learn two moons, that a trained density
   integrates to 1, FFJORD's solvers and the unbiasedness of Hutchinson's trace estimator, and the
   family contract: checkpoints that resume bit for bit, refusals of other architectures and
   families that leave the model untouched, labels refused by these unconditional models. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#define GENMOD_IMPLEMENTATION
#include "genmod.h"
#define GENMOD_FLOW_IMPLEMENTATION
#include "genmod_flow.h"
#include "gm_test.h"

/* ---- helpers ---- */

/* Every trained float to N(0, sd): a freshly built flow is the identity in places (zero output
   convs, zero scales), which would make the checks below trivial. Actnorms count as initialized.
   prefix (or NULL: all) keeps it to the views whose names start with it, e.g. "deq." for the
   variational dequantizer alone (its last conv starts at zero). */
static void randomize(gm_flow *f, float sd, uint64_t seed, const char *prefix) {
    gm_rng r;
    int v;
    size_t i;
    gm_rng_seed(&r, seed);
    for (v = 0; v < f->params.nviews; v++) {
        float *d = gm_params_data(&f->params, v);
        if (prefix && strncmp(f->params.views[v].name, prefix, strlen(prefix)) != 0) continue;
        if (strstr(f->params.views[v].name, "inited")) { d[0] = 1.0f; continue; }
        if (f->params.views[v].buffer) continue;
        for (i = 0; i < f->params.views[v].size; i++) d[i] += sd * gm_rng_normal(&r);
    }
}

static float *rand_data(int n, uint64_t seed, float lo, float hi) {
    float *x = (float *)malloc(sizeof(float) * (size_t)n);
    gm_rng r;
    int i;
    gm_rng_seed(&r, seed);
    for (i = 0; i < n; i++) x[i] = lo + (hi - lo) * gm_rng_uniform(&r);
    return x;
}

/* max |inverse(forward(x)) - x| over n examples */
static double roundtrip_err(gm_flow *f, const float *x, int n) {
    float *z = (float *)malloc(sizeof(float) * (size_t)n * f->dim), *y = (float *)malloc(sizeof(float) * (size_t)n * f->dim);
    double e = 0;
    int i;
    if (gm_flow_encode(f, x, n, z) != 0 || gm_flow_decode(f, z, n, y) != 0) { printf("  %s\n", gm_last_error()); e = 1e9; }
    else for (i = 0; i < n * f->dim; i++) e = fmax(e, fabs((double)y[i] - x[i]));
    free(z); free(y);
    return e;
}

/* log|det| of an n x n matrix (double, partial pivoting) */
static double logabsdet(int n, double *a) {
    double s = 0;
    int i, j, k;
    for (k = 0; k < n; k++) {
        int p = k;
        for (i = k + 1; i < n; i++) if (fabs(a[i * n + k]) > fabs(a[p * n + k])) p = i;
        if (p != k) for (j = 0; j < n; j++) { double t = a[k * n + j]; a[k * n + j] = a[p * n + j]; a[p * n + j] = t; }
        s += log(fabs(a[k * n + k]));
        for (i = k + 1; i < n; i++) {
            double m = a[i * n + k] / a[k * n + k];
            for (j = k; j < n; j++) a[i * n + j] -= m * a[k * n + j];
        }
    }
    return s;
}

/* |flow log-det - log|det dz/dx|| for one example, the Jacobian row by row with gm_grad. */
static double logdet_err(gm_flow *f, const float *x1, double *ld_out) {
    gm_graph *g = gm_graph_new(3);
    int D = f->dim, i, j;
    double *J = (double *)malloc(sizeof(double) * (size_t)D * D), ref, err;
    gm_tensor *x = gm_requires_grad(gm_input(g, x1, 1, D, 0, 0)), *ld = NULL;
    gm_tensor *z = gm_flow_forward(g, f, x, &ld);
    if (!z || !ld) { printf("  forward failed: %s\n", gm_last_error()); free(J); gm_graph_free(g); return 1e9; }
    for (i = 0; i < D; i++) {
        gm_tensor *row = gm_grad(g, gm_slice(g, z, 1, i, 1), x, 0);
        if (!row) { printf("  gm_grad failed: %s\n", gm_last_error()); free(J); gm_graph_free(g); return 1e9; }
        for (j = 0; j < D; j++) J[i * D + j] = row->data[j];
    }
    ref = logabsdet(D, J);
    err = fabs(ref - ld->data[0]);
    if (ld_out) *ld_out = ld->data[0];
    if (err > 1e-3) printf("  logdet %.6f vs Jacobian %.6f\n", ld->data[0], ref);
    free(J);
    gm_graph_free(g);
    return err;
}

/* A flow holding one layer of a kind (after a squeeze when shape needs it). */
static int one_layer(gm_flow *f, int model, int c, int h, int w, int kind, int mask, int parity) {
    gm_flow_config cfg = gm_flow_default_config(model, c, h, w);
    cfg.hidden = 8; cfg.depth = 2; cfg.filters = 4; cfg.blocks = 1;
    cfg.logit = 0; cfg.dequantize = 0;
    if (gm_flow_begin(f, &cfg) != 0) return -1;
    return gm_flow_add(f, kind, mask, parity);
}

/* ---- exactness: every layer type ---- */

typedef struct { const char *what; int model, c, h, w, kind, mask, parity; } layer_case;
static const layer_case CASES[] = {
    {"additive vec", GM_FLOW_NICE, 5, 1, 1, GM_FLOW_ADDITIVE, GM_FLOW_MASK_ALT, 0},
    {"additive vec p1", GM_FLOW_NICE, 5, 1, 1, GM_FLOW_ADDITIVE, GM_FLOW_MASK_ALT, 1},
    {"affine vec", GM_FLOW_REALNVP, 5, 1, 1, GM_FLOW_AFFINE, GM_FLOW_MASK_ALT, 0},
    {"affine vec p1", GM_FLOW_REALNVP, 4, 1, 1, GM_FLOW_AFFINE, GM_FLOW_MASK_ALT, 1},
    {"scale vec", GM_FLOW_NICE, 5, 1, 1, GM_FLOW_SCALE, 0, 0},
    {"actnorm vec", GM_FLOW_GLOW, 5, 1, 1, GM_FLOW_ACTNORM, 0, 0},
    {"invconv vec", GM_FLOW_GLOW, 5, 1, 1, GM_FLOW_INVCONV, 0, 0},
    {"affine checker", GM_FLOW_REALNVP, 2, 4, 4, GM_FLOW_AFFINE, GM_FLOW_MASK_CHECKER, 0},
    {"affine checker p1", GM_FLOW_REALNVP, 1, 4, 4, GM_FLOW_AFFINE, GM_FLOW_MASK_CHECKER, 1},
    {"additive checker", GM_FLOW_REALNVP, 2, 4, 4, GM_FLOW_ADDITIVE, GM_FLOW_MASK_CHECKER, 0},
    {"affine channel", GM_FLOW_REALNVP, 3, 4, 4, GM_FLOW_AFFINE, GM_FLOW_MASK_CHANNEL, 0},
    {"affine channel p1", GM_FLOW_REALNVP, 3, 4, 4, GM_FLOW_AFFINE, GM_FLOW_MASK_CHANNEL, 1},
    {"actnorm img", GM_FLOW_GLOW, 3, 4, 4, GM_FLOW_ACTNORM, 0, 0},
    {"invconv img", GM_FLOW_GLOW, 3, 4, 4, GM_FLOW_INVCONV, 0, 0},
    {"squeeze", GM_FLOW_REALNVP, 2, 4, 6, GM_FLOW_SQUEEZE, 0, 0},
    {"split", GM_FLOW_GLOW, 4, 2, 2, GM_FLOW_SPLIT, 0, 0},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

GM_TEST(test_layer_inverse) {
    int k;
    for (k = 0; k < NCASES; k++) {
        const layer_case *c = &CASES[k];
        gm_flow f;
        float *x;
        double e;
        GM_CHECK(one_layer(&f, c->model, c->c, c->h, c->w, c->kind, c->mask, c->parity) == 0, "%s: %s", c->what, gm_last_error());
        randomize(&f, 0.3f, 10 + k, NULL);
        x = rand_data(7 * f.dim, 100 + k, -2, 2);
        e = roundtrip_err(&f, x, 7);
        GM_CHECK(e < 1e-4, "%s: inverse(forward(x)) off by %g", c->what, e);
        printf("  %-18s max |x - f^-1(f(x))| = %.2g\n", c->what, e);
        free(x);
        gm_flow_free(&f);
    }
}

GM_TEST(test_layer_logdet) {
    int k;
    for (k = 0; k < NCASES; k++) {
        const layer_case *c = &CASES[k];
        gm_flow f;
        float *x;
        double e, ld = 0;
        GM_CHECK(one_layer(&f, c->model, c->c, c->h, c->w, c->kind, c->mask, c->parity) == 0, "%s: %s", c->what, gm_last_error());
        randomize(&f, 0.3f, 20 + k, NULL);
        x = rand_data(f.dim, 200 + k, -2, 2);
        e = logdet_err(&f, x, &ld);
        GM_CHECK(e < 1e-3, "%s: log-det off by %g", c->what, e);
        printf("  %-18s logdet %9.5f, |err| vs log|det J| = %.2g\n", c->what, ld, e);
        free(x);
        gm_flow_free(&f);
    }
}

/* The reverse pass of a layer must also be its exact inverse's log-det: log|det dx/dz| = -forward. */
GM_TEST(test_actnorm_data_init) {
    gm_flow f;
    float *x = rand_data(64 * 3, 5, 0, 1), *z = (float *)malloc(sizeof(float) * 64 * 3);
    int i, c;
    for (i = 0; i < 64 * 3; i++) x[i] = x[i] * (float)(1 + i % 3) + (float)(i % 3) * 5.0f;   /* channel c: scale 1+c, shift 5c */
    GM_CHECK(one_layer(&f, GM_FLOW_GLOW, 3, 1, 1, GM_FLOW_ACTNORM, 0, 0) == 0, "%s", gm_last_error());
    GM_CHECK(gm_flow_data_init(&f, x, 64) == 0, "%s", gm_last_error());
    GM_CHECK(gm_flow_encode(&f, x, 64, z) == 0, "%s", gm_last_error());
    for (c = 0; c < 3; c++) {
        double m = 0, v = 0;
        for (i = 0; i < 64; i++) m += z[i * 3 + c];
        m /= 64;
        for (i = 0; i < 64; i++) v += (z[i * 3 + c] - m) * (z[i * 3 + c] - m);
        v /= 64;
        GM_CHECK(fabs(m) < 1e-4 && fabs(v - 1) < 1e-3, "channel %d: mean %g var %g after data init", c, m, v);
    }
    free(x); free(z);
    gm_flow_free(&f);
}

/* ---- exactness: whole models ---- */

static gm_flow_config small_config(int model, int c, int h, int w) {
    gm_flow_config cfg = gm_flow_default_config(model, c, h, w);
    cfg.hidden = 8; cfg.depth = 2; cfg.filters = 4; cfg.blocks = 1; cfg.steps = 2;
    cfg.n_couplings = 4;
    return cfg;
}

GM_TEST(test_models_exact) {
    static const struct { const char *what; int model, c, h, w; } M[] = {
        {"nice 2-d", GM_FLOW_NICE, 2, 1, 1},      {"realnvp 2-d", GM_FLOW_REALNVP, 2, 1, 1},
        {"glow 2-d", GM_FLOW_GLOW, 2, 1, 1},      {"nice 1x4x4", GM_FLOW_NICE, 1, 4, 4},
        {"realnvp 1x4x4", GM_FLOW_REALNVP, 1, 4, 4}, {"glow 1x4x4", GM_FLOW_GLOW, 1, 4, 4},
        {"realnvp 2x4x4 3sc", GM_FLOW_REALNVP, 2, 4, 4},
    };
    int k;
    for (k = 0; k < (int)(sizeof M / sizeof M[0]); k++) {
        gm_flow_config cfg = small_config(M[k].model, M[k].c, M[k].h, M[k].w);
        gm_flow f;
        float *x;
        double e, el, ld = 0;
        if (k == 6) cfg.n_scales = 3;
        GM_CHECK(gm_flow_init(&f, &cfg) == 0, "%s: %s", M[k].what, gm_last_error());
        randomize(&f, 0.2f, 30 + k, NULL);
        /* images go through the logit: inputs in (0,1) */
        x = rand_data(5 * f.dim, 300 + k, cfg.logit ? 0.02f : -2.0f, cfg.logit ? 0.98f : 2.0f);
        e = roundtrip_err(&f, x, 5);
        el = logdet_err(&f, x, &ld);
        GM_CHECK(e < 1e-4, "%s: inverse(forward(x)) off by %g", M[k].what, e);
        GM_CHECK(el < 1e-3, "%s: log-det off by %g", M[k].what, el);
        printf("  %-18s %2d layers  roundtrip %.2g  logdet %9.4f (|err| %.2g)\n", M[k].what, f.nlayers, e, ld, el);
        free(x);
        gm_flow_free(&f);
    }
}

/* ---- learning: two moons ---- */

static void gauss_fit_nll(const float *tr, int n, const float *te, int m, double *nll) {
    double mu[2] = {0, 0}, S[4] = {0, 0, 0, 0}, det, inv[4], s = 0;
    int i;
    for (i = 0; i < n; i++) { mu[0] += tr[2 * i]; mu[1] += tr[2 * i + 1]; }
    mu[0] /= n; mu[1] /= n;
    for (i = 0; i < n; i++) {
        double a = tr[2 * i] - mu[0], b = tr[2 * i + 1] - mu[1];
        S[0] += a * a; S[1] += a * b; S[3] += b * b;
    }
    S[0] /= n; S[1] /= n; S[3] /= n; S[2] = S[1];
    det = S[0] * S[3] - S[1] * S[2];
    inv[0] = S[3] / det; inv[1] = -S[1] / det; inv[2] = inv[1]; inv[3] = S[0] / det;
    for (i = 0; i < m; i++) {
        double a = te[2 * i] - mu[0], b = te[2 * i + 1] - mu[1];
        s += 0.5 * (a * (inv[0] * a + inv[1] * b) + b * (inv[2] * a + inv[3] * b)) + 0.5 * log(det) + log(2 * 3.14159265358979);
    }
    *nll = s / m;
}

static float MOONS_TR[2 * 2000], MOONS_TE[2 * 2000];
static gm_flow TRAINED;          /* shared by the learning and the integration test */
static int TRAINED_OK;

static int train_moons(gm_flow *f, int model, int steps, double *test_nll, double *secs) {
    gm_flow_config cfg = gm_flow_default_config(model, 2, 1, 1);
    gm_batcher b;
    const int *idx;
    float xb[2 * 256];
    int s = 0, k, i;
    clock_t t0 = clock();
    cfg.hidden = 64; cfg.depth = 2; cfg.lr = 3e-3f; cfg.l2 = 0; cfg.batch = 256;
    if (model == GM_FLOW_GLOW) cfg.n_couplings = 4;
    if (gm_flow_init(f, &cfg) != 0) return -1;
    gm_batcher_init(&b, 2000, cfg.batch, 3, 0);
    while (s < steps) {
        while (s < steps && (k = gm_batcher_next(&b, &idx)) > 0) {
            for (i = 0; i < k; i++) { xb[2 * i] = MOONS_TR[2 * idx[i]]; xb[2 * i + 1] = MOONS_TR[2 * idx[i] + 1]; }
            if (gm_flow_train_step(f, xb, NULL, k, NULL) != 0) { gm_batcher_free(&b); return -1; }
            s++;
        }
    }
    gm_batcher_free(&b);
    *secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    return gm_flow_nll(f, MOONS_TE, 2000, 0, test_nll, NULL);
}

static void make_moons(void) {
    float mean[2], sd[2];
    gm_toy2d("moons", 2000, 11, -1, MOONS_TR, NULL);
    gm_toy2d("moons", 2000, 12, -1, MOONS_TE, NULL);
    gm_standardize_fit(MOONS_TR, 2000, 2, mean, sd);       /* the train statistics for both, as Keras */
    gm_standardize_apply(MOONS_TR, 2000, 2, mean, sd);
    gm_standardize_apply(MOONS_TE, 2000, 2, mean, sd);
}

/* RealNVP must beat the best Gaussian by a wide margin within a few seconds. */
GM_TEST(test_moons_realnvp_learns) {
    double nll = 99, gauss, secs = 0;
    gauss_fit_nll(MOONS_TR, 2000, MOONS_TE, 2000, &gauss);
    GM_CHECK(train_moons(&TRAINED, GM_FLOW_REALNVP, 400, &nll, &secs) == 0, "%s", gm_last_error());
    TRAINED_OK = nll < 2.7;
    printf("  realnvp 6x(2-64-64-2), 400 steps: test NLL %.4f nats (Gaussian fit on this data %.4f; reference "
           "full-cov Gaussian 2.7305), %.1f cpu s\n", nll, gauss, secs);
    GM_CHECK(nll < gauss - 0.5 && nll < 2.7305 - 0.5, "test NLL %.4f does not beat the Gaussian %.4f", nll, gauss);
}

GM_TEST(test_moons_nice_glow_learn) {
    int models[2] = {GM_FLOW_NICE, GM_FLOW_GLOW}, k;
    double gauss;
    gauss_fit_nll(MOONS_TR, 2000, MOONS_TE, 2000, &gauss);
    for (k = 0; k < 2; k++) {
        gm_flow f;
        double nll = 99, secs = 0;
        GM_CHECK(train_moons(&f, models[k], 300, &nll, &secs) == 0, "%s", gm_last_error());
        printf("  %s, 300 steps: test NLL %.4f nats (Gaussian %.4f), %.1f cpu s\n", k ? "glow" : "nice", nll, gauss, secs);
        GM_CHECK(nll < gauss - 0.2, "%s: test NLL %.4f does not beat the Gaussian %.4f", k ? "glow" : "nice", nll, gauss);
        gm_flow_free(&f);
    }
}

/* The trained density integrates to 1 (midpoint rule on [-5,5]^2, 240 x 240). */
GM_TEST(test_density_integrates) {
    int G = 240, i, j;
    float *xy = (float *)malloc(sizeof(float) * 2 * (size_t)G * G), *lp = (float *)malloc(sizeof(float) * (size_t)G * G);
    double lo = -5, hi = 5, cell = (hi - lo) / G, sum = 0;
    GM_CHECK(TRAINED_OK, "needs the trained model of test_moons_realnvp_learns");
    for (j = 0; j < G; j++) for (i = 0; i < G; i++) {
        xy[2 * (j * G + i)] = (float)(lo + (i + 0.5) * cell);
        xy[2 * (j * G + i) + 1] = (float)(lo + (j + 0.5) * cell);
    }
    if (TRAINED_OK) {
        GM_CHECK(gm_flow_log_prob_batch(&TRAINED, xy, G * G, lp) == 0, "%s", gm_last_error());
        for (i = 0; i < G * G; i++) sum += exp((double)lp[i]) * cell * cell;
        printf("  integral of p over [-5,5]^2 = %.4f\n", sum);
        GM_CHECK_CLOSE(sum, 1.0, 0.02);   /* within 2% */
    }
    free(xy); free(lp);
}

/* Sampling, interpolation and a checkpoint round trip on the trained model. */
GM_TEST(test_sample_interpolate_checkpoint) {
    float s[2 * 500], lp[500], path[2 * 5], a[2] = {-1, 0.5f}, b[2] = {1, -0.5f};
    float lp0[4], lp1[4];
    const char *file = "/tmp/genmod_test_flow.safetensors";
    gm_flow f2;
    gm_flow_config cfg;
    double mean = 0;
    int i;
    if (!TRAINED_OK) { GM_CHECK(0, "needs the trained model"); return; }
    GM_CHECK(gm_flow_sample(&TRAINED, NULL, 500, s) == 0, "%s", gm_last_error());
    GM_CHECK(gm_flow_log_prob_batch(&TRAINED, s, 500, lp) == 0, "%s", gm_last_error());
    for (i = 0; i < 500; i++) mean += lp[i] / 500.0;
    printf("  mean log p of 500 samples: %.3f\n", mean);
    GM_CHECK(mean > -2.5, "samples fall where the density is low (mean log p %.3f)", mean);
    GM_CHECK(gm_flow_interpolate(&TRAINED, a, b, 5, path) == 0, "%s", gm_last_error());
    GM_CHECK(fabs(path[0] - a[0]) < 1e-3 && fabs(path[9] - b[1]) < 1e-3, "interpolation ends are not a and b");
    GM_CHECK(gm_flow_sample_temperature(&TRAINED, NULL, 100, 0.0f, s) == 0 && fabs(s[0] - s[198]) < 1e-6, "T = 0 samples differ");
    GM_CHECK(gm_flow_save(&TRAINED, file) == 0, "%s", gm_last_error());
    cfg = TRAINED.cfg;
    cfg.seed = 99;
    GM_CHECK(gm_flow_init(&f2, &cfg) == 0 && gm_flow_load(&f2, file) == 0, "%s", gm_last_error());
    gm_flow_log_prob_batch(&TRAINED, MOONS_TE, 4, lp0);
    gm_flow_log_prob_batch(&f2, MOONS_TE, 4, lp1);
    for (i = 0; i < 4; i++) GM_CHECK(lp0[i] == lp1[i], "loaded model differs: %g vs %g", lp0[i], lp1[i]);
    gm_flow_free(&f2);
    remove(file);
}

GM_TEST(test_bad_input) {
    gm_flow f;
    gm_flow_config cfg = gm_flow_default_config(GM_FLOW_REALNVP, 2, 1, 1);
    float x[4] = {0, 0, 0, 0}, nan4[4];
    cfg.channels = 0;
    GM_CHECK(gm_flow_init(&f, &cfg) != 0 && strstr(gm_last_error(), "shape"), "bad shape accepted: %s", gm_last_error());
    cfg = gm_flow_default_config(GM_FLOW_REALNVP, 2, 1, 1);
    cfg.depth = 99;
    GM_CHECK(gm_flow_init(&f, &cfg) != 0, "depth 99 accepted");
    cfg = small_config(GM_FLOW_REALNVP, 1, 3, 3);
    GM_CHECK(gm_flow_begin(&f, &cfg) == 0 && gm_flow_add(&f, GM_FLOW_SQUEEZE, 0, 0) != 0, "squeeze of 3x3 accepted");
    gm_flow_free(&f);
    cfg = small_config(GM_FLOW_REALNVP, 2, 1, 1);
    GM_CHECK(gm_flow_init(&f, &cfg) == 0, "%s", gm_last_error());
    GM_CHECK(gm_flow_train_step(&f, x, NULL, 0, NULL) != 0, "n = 0 accepted");
    GM_CHECK(gm_flow_sample_temperature(&f, NULL, 3, -1.0f, x) != 0, "negative temperature accepted");
    nan4[0] = nan4[1] = nan4[2] = nan4[3] = (float)NAN;
    GM_CHECK(gm_flow_train_step(&f, nan4, NULL, 2, NULL) != 0 && strstr(gm_last_error(), "NaN"), "NaN loss trained on: %s",
             gm_last_error());
    gm_flow_free(&f);
}

/* ---- FFJORD ---- */

/* A small f with weights large enough that the dynamics (and the trace) are far from trivial. */
static void ffjord_small(gm_ffjord *m, int dim, int solver) {
    gm_ffjord_config c = gm_ffjord_default_config(dim);
    gm_rng r;
    size_t i;
    c.hidden = 16; c.depth = 2; c.solver = solver; c.rk4_steps = 8;
    gm_ffjord_init(m, &c);
    gm_rng_seed(&r, 77);
    for (i = 0; i < m->params.count; i++) m->params.data[i] += 0.4f * gm_rng_normal(&r);
}

/* Hutchinson: E[e^T J e] = tr J for Gaussian and Rademacher e, at fixed z. */
GM_TEST(test_ffjord_hutchinson_unbiased) {
    gm_ffjord m;
    gm_graph *g;
    int D = 4, K = 3000, kind, i, k;
    float z0[4] = {0.3f, -0.7f, 1.1f, 0.2f};
    ffjord_small(&m, D, GM_ODE_RK4);
    g = gm_graph_new(9);
    for (kind = GM_TRACE_HUTCH_GAUSS; kind <= GM_TRACE_HUTCH_RADEMACHER; kind++) {
        gm_tensor *z, *div = NULL, *probe;
        double exact, s = 0, s2 = 0, mean, se;
        float zr[4 * 3000];
        gm_graph_reset(g);
        z = gm_requires_grad(gm_input(g, z0, 1, D, 0, 0));
        gm_ffjord_dynamics(g, &m, z, 0.4f, NULL, 0, &div);
        GM_CHECK(div != NULL, "%s", gm_last_error());
        if (!div) break;
        exact = div->data[0];
        /* K probes at once: the same z repeated K times, one probe per row */
        for (k = 0; k < K; k++) for (i = 0; i < D; i++) zr[k * D + i] = z0[i];
        gm_graph_reset(g);
        z = gm_requires_grad(gm_input(g, zr, K, D, 0, 0));
        probe = gm_zeros(g, K, D, 0, 0);
        for (i = 0; i < K * D; i++)
            probe->data[i] = kind == GM_TRACE_HUTCH_GAUSS ? gm_rng_normal(&m.rng) : (gm_rng_u32(&m.rng) & 1 ? 1.0f : -1.0f);
        gm_ffjord_dynamics(g, &m, z, 0.4f, probe, 0, &div);
        for (k = 0; k < K; k++) { s += div->data[k]; s2 += (double)div->data[k] * div->data[k]; }
        mean = s / K;
        se = sqrt((s2 / K - mean * mean) / (K - 1));
        printf("  %s: exact trace %.5f, Hutchinson mean of %d = %.5f (SE %.5f, %.2f SE away)\n",
               kind == GM_TRACE_HUTCH_GAUSS ? "gaussian  " : "rademacher", exact, K, mean, se, fabs(mean - exact) / se);
        GM_CHECK(fabs(mean - exact) < 3 * se, "Hutchinson mean %.5f vs exact %.5f (SE %.5f)", mean, exact, se);
    }
    gm_graph_free(g);
    gm_ffjord_free(&m);
}

/* The ODE map is invertible, RK4 and DOPRI5 agree on log p, and NFE is counted. */
GM_TEST(test_ffjord_solvers) {
    gm_ffjord a, b;
    float x[2 * 16], z[2 * 16], y[2 * 16], la[16], lb[16];
    double e = 0, d = 0;
    int i;
    ffjord_small(&a, 2, GM_ODE_RK4);
    ffjord_small(&b, 2, GM_ODE_DOPRI5);
    for (i = 0; i < 32; i++) x[i] = (float)sin(i * 1.7) * 1.5f;
    a.cfg.rk4_steps = 32;
    GM_CHECK(gm_ffjord_encode(&b, x, 16, z) == 0 && gm_ffjord_decode(&b, z, 16, y) == 0, "%s", gm_last_error());
    for (i = 0; i < 32; i++) e = fmax(e, fabs(y[i] - x[i]));
    GM_CHECK(gm_ffjord_log_prob_batch(&a, x, 16, GM_TRACE_EXACT, la) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ffjord_log_prob_batch(&b, x, 16, GM_TRACE_EXACT, lb) == 0, "%s", gm_last_error());
    for (i = 0; i < 16; i++) d = fmax(d, fabs(la[i] - lb[i]));
    printf("  dopri5 roundtrip %.2g; |log p rk4(32) - dopri5| %.2g; dopri5 %d steps, %ld evaluations\n", e, d,
           b.last_steps, b.nfe);
    GM_CHECK(e < 1e-3, "DOPRI5 decode(encode(x)) off by %g", e);
    GM_CHECK(d < 1e-3, "RK4 and DOPRI5 log p differ by %g", d);
    GM_CHECK(b.nfe > 0 && a.nfe == 32 * 4, "NFE: dopri5 %ld, rk4 %ld (want 128)", b.nfe, a.nfe);
    gm_ffjord_free(&a);
    gm_ffjord_free(&b);
}

/* A continuous flow's log p of a fixed map equals the change of variables: compare with the
   log-det of the Jacobian of the whole ODE map (autodiff through the RK4 solver). */
GM_TEST(test_ffjord_learns) {
    gm_ffjord m;
    gm_ffjord_config c = gm_ffjord_default_config(2);
    double before = 0, after = 0;
    int s, i;
    float xb[2 * 128];
    c.hidden = 32; c.depth = 2; c.rk4_steps = 4; c.lr = 1e-2f;
    GM_CHECK(gm_ffjord_init(&m, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ffjord_nll(&m, MOONS_TE, 500, &before) == 0, "%s", gm_last_error());
    for (s = 0; s < 40; s++) {
        for (i = 0; i < 128; i++) { int r = gm_rng_int(&m.rng, 2000); xb[2 * i] = MOONS_TR[2 * r]; xb[2 * i + 1] = MOONS_TR[2 * r + 1]; }
        if (gm_ffjord_train_step(&m, xb, NULL, 128, NULL) != 0) { GM_CHECK(0, "%s", gm_last_error()); break; }
    }
    GM_CHECK(gm_ffjord_nll(&m, MOONS_TE, 500, &after) == 0, "%s", gm_last_error());
    printf("  ffjord 40 steps (rk4 x4, exact trace): test NLL %.4f -> %.4f\n", before, after);
    GM_CHECK(after < before - 0.2, "NLL did not fall: %.4f -> %.4f", before, after);
    gm_ffjord_free(&m);
}

/* The trajectory's frames are the points of the same ODE at the frame times: its last frame is
   the plain decode (both solved by DOPRI5 at tight tolerances), its first the latent. */
GM_TEST(test_ffjord_trajectory) {
    gm_ffjord m;
    float z[2 * 16], x[2 * 16], xt[2 * 16], traj[5 * 2 * 16];
    double e = 0;
    int i;
    ffjord_small(&m, 2, GM_ODE_DOPRI5);
    m.cfg.rtol = m.cfg.atol = 1e-7f;
    for (i = 0; i < 32; i++) z[i] = (float)cos(i * 0.9) * 1.2f;
    GM_CHECK(gm_ffjord_decode(&m, z, 16, x) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ffjord_decode_trajectory(&m, z, 16, xt, 5, traj) == 0, "%s", gm_last_error());
    GM_CHECK(memcmp(traj, z, sizeof z) == 0, "frame 0 is not the latent");
    GM_CHECK(memcmp(traj + 4 * 32, xt, sizeof xt) == 0, "the last frame is not the decoded x");
    for (i = 0; i < 32; i++) e = fmax(e, fabs(xt[i] - x[i]));
    printf("  decode in 4 solves vs 1: max |difference| %.2g\n", e);
    GM_CHECK(e < 1e-3, "the trajectory ends %g away from the plain decode", e);
    gm_ffjord_free(&m);
}

/* ---- the family contract: checkpoints, refusals, labels ---- */

/* Everything a load could change in a flow: weights, optimizer moments and steps, and the
   dequantization stream. */
typedef struct model_copy {
    float *params, *m, *v;
    size_t count, nopt;
    long step, opt_step;
    gm_rng deq;                  /* the flow's random stream */
} model_copy;

static void copy_take(model_copy *c, const gm_params *P, const gm_optim *o, long step, gm_rng deq) {
    c->count = P->count;
    c->nopt = o->m ? o->n : 0;
    c->params = (float *)malloc(sizeof(float) * (c->count + 2 * c->nopt + 1));
    c->m = c->params + c->count;
    c->v = c->m + c->nopt;
    memcpy(c->params, P->data, sizeof(float) * c->count);
    if (c->nopt) {
        memcpy(c->m, o->m, sizeof(float) * c->nopt);
        memcpy(c->v, o->v, sizeof(float) * c->nopt);
    }
    c->step = step;
    c->opt_step = o->step;
    c->deq = deq;
}

/* 1 when the model holds exactly what c took, bit for bit. */
static int copy_same(const model_copy *c, const gm_params *P, const gm_optim *o, long step, gm_rng deq) {
    if (P->count != c->count || step != c->step || o->step != c->opt_step || memcmp(&deq, &c->deq, sizeof deq) != 0) return 0;
    if ((o->m ? o->n : 0) != c->nopt || memcmp(c->params, P->data, sizeof(float) * c->count) != 0) return 0;
    return !c->nopt || (memcmp(c->m, o->m, sizeof(float) * c->nopt) == 0 && memcmp(c->v, o->v, sizeof(float) * c->nopt) == 0);
}

/* n examples: k/255 pixel values for images, N(0, 1) values for vectors. */
static float *flow_data(int n, int dim, int image, uint64_t seed) {
    float *x = (float *)malloc(sizeof(float) * (size_t)n * dim);
    gm_rng r;
    int i;
    gm_rng_seed(&r, seed);
    for (i = 0; i < n * dim; i++) x[i] = image ? (float)gm_rng_int(&r, 256) / 255.0f : gm_rng_normal(&r);
    return x;
}

/* A stack of gm_flow_add layers (its checkpoints list them): actnorm, checkerboard coupling,
   squeeze, channel-wise coupling with parity `p`. */
static int build_custom(gm_flow *f, const gm_flow_config *cfg, int p) {
    if (gm_flow_begin(f, cfg) != 0) return -1;
    if (gm_flow_add(f, GM_FLOW_ACTNORM, 0, 0) != 0 || gm_flow_add(f, GM_FLOW_AFFINE, GM_FLOW_MASK_CHECKER, 0) != 0 ||
        gm_flow_add(f, GM_FLOW_SQUEEZE, 0, 0) != 0 || gm_flow_add(f, GM_FLOW_AFFINE, GM_FLOW_MASK_CHANNEL, p) != 0) {
        gm_flow_free(f);
        return -1;
    }
    return 0;
}
static int build_custom0(gm_flow *f, const gm_flow_config *cfg) { return build_custom(f, cfg, 0); }
static int build_custom1(gm_flow *f, const gm_flow_config *cfg) { return build_custom(f, cfg, 1); }

/* a trains 3 steps and is saved; b (same architecture, another seed) loads the file: the same
   log p and step; then one more step on each with the same batch leaves them bit-identical
   (weights, Adam moments, steps, dequantization stream). */
static void check_flow_roundtrip(const char *what, int (*build)(gm_flow *, const gm_flow_config *),
                                 const gm_flow_config *cfg) {
    const char *path = "/tmp/gm_test_flow_roundtrip.safetensors";
    gm_flow_config cb = *cfg;
    gm_flow a, b;
    model_copy after_a;
    int n = 12, s, dim = cfg->channels * cfg->height * cfg->width;
    float *x = flow_data(4 * n, dim, cfg->logit, 40), la[12], lb[12];
    cb.seed = cfg->seed + 1000;
    GM_CHECK(build(&a, cfg) == 0 && build(&b, &cb) == 0, "%s: %s", what, gm_last_error());
    for (s = 0; s < 3; s++)
        GM_CHECK(gm_flow_train_step(&a, x + (size_t)s * n * dim, NULL, n, NULL) == 0, "%s: %s", what, gm_last_error());
    GM_CHECK(gm_flow_save(&a, path) == 0, "%s: %s", what, gm_last_error());
    GM_CHECK(gm_flow_load(&b, path) == 0, "%s: %s", what, gm_last_error());
    GM_CHECK(b.step == 3 && b.opt.step == 3 && memcmp(&b.rng, &a.rng, sizeof a.rng) == 0,
             "%s: steps %ld %ld or the noise stream differ after load", what, b.step, b.opt.step);
    GM_CHECK(gm_flow_log_prob_batch(&a, x, n, la) == 0 && gm_flow_log_prob_batch(&b, x, n, lb) == 0, "%s: %s", what,
             gm_last_error());
    GM_CHECK(memcmp(la, lb, sizeof la) == 0, "%s: log p after load %.9g vs %.9g", what, lb[0], la[0]);
    GM_CHECK(gm_flow_train_step(&a, x + (size_t)3 * n * dim, NULL, n, NULL) == 0 &&
             gm_flow_train_step(&b, x + (size_t)3 * n * dim, NULL, n, NULL) == 0, "%s: %s", what, gm_last_error());
    copy_take(&after_a, &a.params, &a.opt, a.step, a.rng);
    GM_CHECK(copy_same(&after_a, &b.params, &b.opt, b.step, b.rng), "%s: the step after the load differs", what);
    printf("  %-22s %2d layers, %6zu floats: log p and the next step identical after save/load\n", what, a.nlayers,
           a.params.count);
    free(after_a.params);
    free(x);
    gm_flow_free(&a);
    gm_flow_free(&b);
    remove(path);
}

GM_TEST(test_flow_checkpoint_roundtrip) {
    gm_flow_config vec = small_config(GM_FLOW_REALNVP, 3, 1, 1), img = small_config(GM_FLOW_REALNVP, 1, 4, 4);
    gm_flow_config glow = small_config(GM_FLOW_GLOW, 1, 4, 4), nice = small_config(GM_FLOW_NICE, 1, 4, 4);
    gm_flow_config glow_vec = small_config(GM_FLOW_GLOW, 3, 1, 1), custom = small_config(GM_FLOW_REALNVP, 2, 4, 4);
    check_flow_roundtrip("realnvp 3-d (l2)", gm_flow_init, &vec);
    check_flow_roundtrip("realnvp 1x4x4", gm_flow_init, &img);
    check_flow_roundtrip("glow 1x4x4", gm_flow_init, &glow);
    check_flow_roundtrip("glow 3-d", gm_flow_init, &glow_vec);
    check_flow_roundtrip("nice 1x4x4", gm_flow_init, &nice);
    check_flow_roundtrip("custom stack 2x4x4", build_custom0, &custom);
    img.dequantize = GM_FLOW_DEQ_VARIATIONAL; img.deq_filters = 4;
    check_flow_roundtrip("realnvp 1x4x4, variational dequantization", gm_flow_init, &img);
}

GM_TEST(test_ffjord_checkpoint_roundtrip) {
    const char *path = "/tmp/gm_test_ffjord_roundtrip.safetensors";
    gm_ffjord_config c = gm_ffjord_default_config(2);
    gm_ffjord a, b;
    model_copy after_a;
    float la[64], lb[64];
    int s;
    c.hidden = 16; c.depth = 2; c.rk4_steps = 4; c.act = GM_ACT_SOFTPLUS;
    GM_CHECK(gm_ffjord_init(&a, &c) == 0, "%s", gm_last_error());
    c.seed = 1234;
    GM_CHECK(gm_ffjord_init(&b, &c) == 0, "%s", gm_last_error());
    for (s = 0; s < 3; s++)
        GM_CHECK(gm_ffjord_train_step(&a, MOONS_TR + 2 * 64 * s, NULL, 64, NULL) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ffjord_save(&a, path) == 0 && gm_ffjord_load(&b, path) == 0, "%s", gm_last_error());
    GM_CHECK(b.step == 3 && b.opt.step == 3, "steps %ld %ld after load", b.step, b.opt.step);
    GM_CHECK(gm_ffjord_log_prob_batch(&a, MOONS_TE, 64, GM_TRACE_EXACT, la) == 0 &&
             gm_ffjord_log_prob_batch(&b, MOONS_TE, 64, GM_TRACE_EXACT, lb) == 0, "%s", gm_last_error());
    GM_CHECK(memcmp(la, lb, sizeof la) == 0, "log p after load %.9g vs %.9g", lb[0], la[0]);
    GM_CHECK(gm_ffjord_train_step(&a, MOONS_TR + 2 * 64 * 3, NULL, 64, NULL) == 0 &&
             gm_ffjord_train_step(&b, MOONS_TR + 2 * 64 * 3, NULL, 64, NULL) == 0, "%s", gm_last_error());
    copy_take(&after_a, &a.params, &a.opt, a.step, a.rng);
    GM_CHECK(copy_same(&after_a, &b.params, &b.opt, b.step, b.rng), "the step after the load differs");
    printf("  ffjord 2-16x2 softplus: log p and the next step identical after save/load\n");
    free(after_a.params);
    gm_ffjord_free(&a);
    gm_ffjord_free(&b);
    remove(path);
}

/* A refused load: -1, a message holding every string of `want` (NULL-terminated), and the model
   exactly as it was. */
static void check_refused_flow(gm_flow *f, const char *path, const char *const *want, const char *what) {
    model_copy before;
    int i;
    copy_take(&before, &f->params, &f->opt, f->step, f->rng);
    GM_CHECK(gm_flow_load(f, path) != 0, "%s: must be refused", what);
    printf("  (expected) %s\n", gm_last_error());
    for (i = 0; want[i]; i++) GM_CHECK(strstr(gm_last_error(), want[i]) != NULL, "%s: message lacks '%s'", what, want[i]);
    GM_CHECK(copy_same(&before, &f->params, &f->opt, f->step, f->rng), "%s: the refused load changed the flow", what);
    free(before.params);
}

static void check_refused_ffjord(gm_ffjord *m, const char *path, const char *const *want, const char *what) {
    model_copy before;
    int i;
    copy_take(&before, &m->params, &m->opt, m->step, m->rng);
    GM_CHECK(gm_ffjord_load(m, path) != 0, "%s: must be refused", what);
    printf("  (expected) %s\n", gm_last_error());
    for (i = 0; want[i]; i++) GM_CHECK(strstr(gm_last_error(), want[i]) != NULL, "%s: message lacks '%s'", what, want[i]);
    GM_CHECK(copy_same(&before, &m->params, &m->opt, m->step, m->rng), "%s: the refused load changed the model", what);
    free(before.params);
}

/* Trains a model 2 steps (so its optimizer state exists and would show an overwrite). */
static int flow_trained(gm_flow *f, int (*build)(gm_flow *, const gm_flow_config *), const gm_flow_config *cfg) {
    int dim = cfg->channels * cfg->height * cfg->width, s, rc;
    float *x = flow_data(16, dim, cfg->logit, 41);
    rc = build(f, cfg);
    for (s = 0; s < 2 && rc == 0; s++) rc = gm_flow_train_step(f, x + (size_t)s * 8 * dim, NULL, 8, NULL);
    free(x);
    return rc;
}

static int ffjord_trained(gm_ffjord *m, int hidden) {
    gm_ffjord_config c = gm_ffjord_default_config(2);
    c.hidden = hidden; c.depth = 2; c.rk4_steps = 2;
    if (gm_ffjord_init(m, &c) != 0) return -1;
    return gm_ffjord_train_step(m, MOONS_TR, NULL, 32, NULL);
}

/* A safetensors file genmod did not write: one F32 tensor "w" of 2 values, no metadata. */
static int write_foreign_safetensors(const char *path) {
    const char hdr[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}    ";
    unsigned char len[8] = {0};
    float w[2] = {1.0f, 2.0f};
    size_t n = sizeof hdr - 1;
    FILE *f = fopen(path, "wb");
    int i;
    if (!f) return -1;
    for (i = 0; i < 8; i++) len[i] = (unsigned char)((n >> (8 * i)) & 0xff);
    fwrite(len, 1, 8, f);
    fwrite(hdr, 1, n, f);
    fwrite(w, sizeof(float), 2, f);   /* little-endian hosts: the bytes safetensors wants */
    return fclose(f);
}

/* Files of another architecture, of the other model of this header, or not genmod's are refused
   with a message naming both sides, and leave the model untouched. */
GM_TEST(test_load_refusals) {
    const char *path = "/tmp/gm_test_flow_refuse.safetensors", *fpath = "/tmp/gm_test_flow_refuse_ffjord.safetensors";
    const char *foreign = "/tmp/gm_test_flow_foreign.safetensors";
    gm_flow_config c4 = small_config(GM_FLOW_REALNVP, 3, 1, 1), c6 = c4, wide = c4;
    gm_flow_config rimg = small_config(GM_FLOW_REALNVP, 1, 4, 4), gimg = small_config(GM_FLOW_GLOW, 1, 4, 4), noq = rimg;
    gm_flow_config cust = small_config(GM_FLOW_REALNVP, 2, 4, 4);
    gm_flow a, other;
    gm_ffjord fa, fb;
    const char *couplings[] = {"couplings 4", "couplings 6", NULL}, *hidden[] = {"mlp 8x2", "mlp 16x2", NULL};
    const char *model[] = {"glow 1x4x4", "realnvp 1x4x4", NULL}, *deq[] = {"dequantize 1", "dequantize 0", NULL};
    const char *vdeq[] = {"dequantize 2 deqnet 4x1", "dequantize 1", NULL};
    gm_flow_config vimg = rimg;
    const char *stack[] = {"affine/channel0", "affine/channel1", NULL}, *fam[] = {"ffjord", "flow", NULL};
    const char *ffj[] = {"hidden 8", "hidden 16", NULL}, *none[] = {NULL};
    c6.n_couplings = 6; wide.hidden = 16; noq.dequantize = 0;
    /* another flow architecture: couplings, width, model kind, dequantization, a custom stack */
    GM_CHECK(flow_trained(&a, gm_flow_init, &c4) == 0 && gm_flow_save(&a, path) == 0, "%s", gm_last_error());
    GM_CHECK(flow_trained(&other, gm_flow_init, &c6) == 0, "%s", gm_last_error());
    check_refused_flow(&other, path, couplings, "6 couplings loading 4");
    gm_flow_free(&other);
    GM_CHECK(flow_trained(&other, gm_flow_init, &wide) == 0, "%s", gm_last_error());
    check_refused_flow(&other, path, hidden, "hidden 16 loading 8");
    gm_flow_free(&other);
    gm_flow_free(&a);
    GM_CHECK(flow_trained(&a, gm_flow_init, &gimg) == 0 && gm_flow_save(&a, path) == 0, "%s", gm_last_error());
    GM_CHECK(flow_trained(&other, gm_flow_init, &rimg) == 0, "%s", gm_last_error());
    check_refused_flow(&other, path, model, "realnvp loading glow");
    gm_flow_free(&a);
    GM_CHECK(flow_trained(&a, gm_flow_init, &noq) == 0 && gm_flow_save(&a, path) == 0, "%s", gm_last_error());
    check_refused_flow(&other, path, deq, "dequantizing loading non-dequantizing");
    gm_flow_free(&a);
    vimg.dequantize = GM_FLOW_DEQ_VARIATIONAL; vimg.deq_filters = 4;
    GM_CHECK(flow_trained(&a, gm_flow_init, &vimg) == 0 && gm_flow_save(&a, path) == 0, "%s", gm_last_error());
    check_refused_flow(&other, path, vdeq, "uniform dequantization loading variational");
    gm_flow_free(&a);
    GM_CHECK(flow_trained(&a, build_custom0, &cust) == 0 && gm_flow_save(&a, path) == 0, "%s", gm_last_error());
    gm_flow_free(&other);
    GM_CHECK(flow_trained(&other, build_custom1, &cust) == 0, "%s", gm_last_error());
    check_refused_flow(&other, path, stack, "custom stacks differing in one parity");
    gm_flow_free(&other);
    /* the other model of this header, both ways, and a file genmod did not write */
    GM_CHECK(ffjord_trained(&fa, 8) == 0 && gm_ffjord_save(&fa, fpath) == 0, "%s", gm_last_error());
    check_refused_flow(&a, fpath, fam, "a flow loading an ffjord file");
    check_refused_ffjord(&fa, path, fam, "ffjord loading a flow file");
    GM_CHECK(ffjord_trained(&fb, 16) == 0, "%s", gm_last_error());
    check_refused_ffjord(&fb, fpath, ffj, "ffjord hidden 16 loading 8");
    GM_CHECK(write_foreign_safetensors(foreign) == 0, "cannot write %s", foreign);
    check_refused_flow(&a, foreign, none, "a flow loading a foreign file");
    check_refused_ffjord(&fb, foreign, none, "ffjord loading a foreign file");
    GM_CHECK(gm_flow_load(&a, "/tmp/gm_test_flow_no_such_file.safetensors") != 0, "a missing file was accepted");
    gm_flow_free(&a);
    gm_ffjord_free(&fa);
    gm_ffjord_free(&fb);
    remove(path); remove(fpath); remove(foreign);
}

/* These models are unconditional: labels are refused, not ignored, and nothing changes. */
GM_TEST(test_labels_refused) {
    gm_flow_config c = small_config(GM_FLOW_REALNVP, 2, 1, 1);
    gm_flow f;
    gm_ffjord m;
    model_copy before;
    int labels[4] = {0, 1, 2, 3};
    float out[8];
    GM_CHECK(flow_trained(&f, gm_flow_init, &c) == 0 && ffjord_trained(&m, 8) == 0, "%s", gm_last_error());
    copy_take(&before, &f.params, &f.opt, f.step, f.rng);
    GM_CHECK(gm_flow_train_step(&f, MOONS_TR, labels, 4, NULL) != 0 && strstr(gm_last_error(), "labels"),
             "flow train_step took labels: %s", gm_last_error());
    GM_CHECK(copy_same(&before, &f.params, &f.opt, f.step, f.rng), "a refused step changed the flow");
    GM_CHECK(gm_flow_sample(&f, labels, 4, out) != 0 && strstr(gm_last_error(), "labels"), "flow sample took labels");
    GM_CHECK(gm_flow_sample_temperature(&f, labels, 4, 0.5f, out) != 0, "flow sample_temperature took labels");
    free(before.params);
    copy_take(&before, &m.params, &m.opt, m.step, m.rng);
    GM_CHECK(gm_ffjord_train_step(&m, MOONS_TR, labels, 4, NULL) != 0 && strstr(gm_last_error(), "labels"),
             "ffjord train_step took labels: %s", gm_last_error());
    GM_CHECK(copy_same(&before, &m.params, &m.opt, m.step, m.rng), "a refused step changed the ffjord model");
    GM_CHECK(gm_ffjord_sample(&m, labels, 4, out) != 0 && strstr(gm_last_error(), "labels"), "ffjord sample took labels");
    free(before.params);
    gm_flow_free(&f);
    gm_ffjord_free(&m);
}

/* ---- variational dequantization and the learning-rate warm-up ---- */

static gm_flow_config vardeq_config(int c, int h, int w) {
    gm_flow_config cfg = small_config(GM_FLOW_REALNVP, c, h, w);
    cfg.dequantize = GM_FLOW_DEQ_VARIATIONAL; cfg.deq_filters = 4;
    return cfg;
}

/* y = (255 x + u)/256 and log q(u|x) of n examples; u = 256 y - 255 x (exact for x = 0). */
static int deq_eval(gm_flow *f, const float *x, const float *eps, int n, double *u, double *logq) {
    gm_graph *g = gm_graph_new(1);
    gm_tensor *lq = NULL, *y;
    int i;
    gm_graph_set_grad(g, 0);
    y = gm_flow_dequantize(g, f, gm_input(g, x, n, f->dim, 0, 0), gm_input(g, eps, n, f->dim, 0, 0), &lq);
    if (!y || !lq) { gm_graph_free(g); return -1; }
    for (i = 0; i < n * f->dim; i++) u[i] = 256.0 * y->data[i] - 255.0 * x[i];
    for (i = 0; i < n; i++) logq[i] = lq->data[i];
    gm_graph_free(g);
    return 0;
}

/* log q(u|x) against the change of variables done by hand: u_j depends on eps_j alone (checked:
   moving eps_j moves no other u), so log q = sum_j log N(eps_j) - log du_j/deps_j with the
   derivative by central differences. And y lands in its pixel's bin [k/256, (k+1)/256). */
GM_TEST(test_vardeq_density) {
    enum { N = 3 };
    gm_flow_config cfg = vardeq_config(2, 4, 4);
    gm_flow f;
    const float h = 3e-3f;
    float x[N * 32], eps[N * 32], e2[N * 32];
    double u[N * 32], up[N * 32], um[N * 32], lq[N], lq2[N], ref[N], worst = 0, leak = 0;
    int i, j, k;
    gm_rng r;
    GM_CHECK(gm_flow_init(&f, &cfg) == 0 && f.dim == 32, "%s", gm_last_error());
    randomize(&f, 0.3f, 5, "deq.");
    gm_rng_seed(&r, 9);
    for (i = 0; i < N * 32; i++) { x[i] = 0; eps[i] = gm_rng_normal(&r); }
    GM_CHECK(deq_eval(&f, x, eps, N, u, lq) == 0, "%s", gm_last_error());
    for (i = 0; i < N; i++) ref[i] = 0;
    for (k = 0; k < N * 32; k++) {
        memcpy(e2, eps, sizeof eps);
        e2[k] = eps[k] + h;
        GM_CHECK(deq_eval(&f, x, e2, N, up, lq2) == 0, "%s", gm_last_error());
        e2[k] = eps[k] - h;
        GM_CHECK(deq_eval(&f, x, e2, N, um, lq2) == 0, "%s", gm_last_error());
        for (j = 0; j < N * 32; j++) if (j != k) leak = fmax(leak, fabs(up[j] - u[j]) + fabs(um[j] - u[j]));
        ref[k / 32] += -0.5 * (double)eps[k] * eps[k] - 0.91893853320467274 - log((up[k] - um[k]) / (2.0 * h));
    }
    for (i = 0; i < N; i++) worst = fmax(worst, fabs(lq[i] - ref[i]));
    printf("  log q(u|x) %.4f %.4f %.4f vs change of variables: max |err| %.2g; other u moved by %.2g\n", lq[0], lq[1],
           lq[2], worst, leak);
    GM_CHECK(worst < 5e-3, "log q off the change of variables by %g", worst);
    GM_CHECK(leak == 0, "u_j depends on another eps (by %g)", leak);
    for (i = 0; i < N * 32; i++) GM_CHECK(u[i] > 0 && u[i] < 1, "u %g out of (0,1)", u[i]);
    /* real pixel values: each y in its bin, and q depends on x */
    for (i = 0; i < N * 32; i++) x[i] = (float)((i * 37) % 256) / 255.0f;
    GM_CHECK(deq_eval(&f, x, eps, N, up, lq2) == 0, "%s", gm_last_error());
    for (i = 0; i < N * 32; i++) GM_CHECK(up[i] > -1e-3 && up[i] < 1 + 1e-3, "y out of its pixel's bin: u = %g", up[i]);
    GM_CHECK(fabs(lq2[0] - lq[0]) > 1e-3, "q(u|x) does not depend on x");
    gm_flow_free(&f);
    cfg.dequantize = GM_FLOW_DEQ_UNIFORM;
    GM_CHECK(gm_flow_init(&f, &cfg) == 0, "%s", gm_last_error());
    GM_CHECK(deq_eval(&f, x, eps, N, up, lq2) != 0 && strstr(gm_last_error(), "variational"),
             "gm_flow_dequantize on a uniform dequantizer: %s", gm_last_error());
    gm_flow_free(&f);
    cfg = vardeq_config(1, 1, 1);
    GM_CHECK(gm_flow_init(&f, &cfg) != 0 && strstr(gm_last_error(), "images"), "variational on vectors accepted");
}

/* The bound's gradient: with respect to the noise (gm_gradcheck) and to the dequantizer's and the
   flow's weights (central differences on the first weight of each view; a small step, since ReLU
   kinks within the step spoil the difference). */
typedef struct { gm_flow *f; const float *x; } elbo_ctx;
static gm_tensor *elbo_sum(gm_graph *g, gm_tensor **in, void *ctx) {
    elbo_ctx *c = (elbo_ctx *)ctx;
    return gm_sum(g, gm_flow_elbo(g, c->f, gm_input(g, c->x, 2, c->f->dim, 0, 0), in[0]));
}
static double elbo_value(gm_flow *f, const float *x, const float *eps) {
    gm_graph *g = gm_graph_new(1);
    gm_tensor *t;
    double v;
    gm_graph_set_grad(g, 0);
    t = gm_sum(g, gm_flow_elbo(g, f, gm_input(g, x, 2, f->dim, 0, 0), gm_input(g, eps, 2, f->dim, 0, 0)));
    v = t ? t->data[0] : NAN;
    gm_graph_free(g);
    return v;
}

GM_TEST(test_vardeq_gradients) {
    gm_flow_config cfg = vardeq_config(1, 4, 4);
    gm_flow f;
    gm_graph *g;
    gm_tensor *t;
    float x[32], eps[32], *values[1];
    int shapes[1][4] = {{2, 16, 0, 0}}, v, checked = 0;
    double rel, worst = 0;
    elbo_ctx c;
    gm_rng r;
    GM_CHECK(gm_flow_init(&f, &cfg) == 0, "%s", gm_last_error());
    randomize(&f, 0.1f, 21, NULL);
    gm_rng_seed(&r, 4);
    for (v = 0; v < 32; v++) { x[v] = (float)((v * 53) % 256) / 255.0f; eps[v] = gm_rng_normal(&r); }
    c.f = &f; c.x = x; values[0] = eps;
    rel = gm_gradcheck(elbo_sum, &c, 1, values, (const int (*)[4])shapes, 1e-2f);
    printf("  d bound / d eps: gm_gradcheck rel. error %.2g\n", rel);
    GM_CHECK(rel >= 0 && rel < 2e-2, "gradient w.r.t. the noise off by %g", rel);
    g = gm_graph_new(1);
    gm_graph_set_grad(g, 1);
    gm_params_zero_grad(&f.params);
    t = gm_sum(g, gm_flow_elbo(g, &f, gm_input(g, x, 2, f.dim, 0, 0), gm_input(g, eps, 2, f.dim, 0, 0)));
    GM_CHECK(t && gm_backward(g, t) == 0, "%s", gm_last_error());
    for (v = 0; v < f.params.nviews; v++) {       /* the first weight of every dequantizer and coupling view */
        const char *name = f.params.views[v].name;
        float *w = gm_params_data(&f.params, v), keep = w[0];
        double a = gm_params_grad(&f.params, v)[0], hp, hm, num;
        if (f.params.views[v].buffer || strstr(name, "inited")) continue;
        w[0] = keep + 2e-3f; hp = elbo_value(&f, x, eps);
        w[0] = keep - 2e-3f; hm = elbo_value(&f, x, eps);
        w[0] = keep;
        num = (hp - hm) / (double)(keep + 2e-3f - (keep - 2e-3f));
        worst = fmax(worst, fabs(a - num) / fmax(1.0, fabs(num)));
        checked += strncmp(name, "deq.", 4) == 0;
    }
    printf("  d bound / d weights (%d dequantizer views among them): max rel. error %.2g\n", checked, worst);
    GM_CHECK(checked >= 4 && worst < 2e-2, "weight gradient off by %g (%d dequantizer views)", worst, checked);
    gm_graph_free(g);
    gm_flow_free(&f);
}

/* Digits pooled to 8x8 (3x3 means of the central 24x24, re-quantized to k/255). */
static int small_digits(float **out, int *n) {
    gm_dataset tr, te;
    int i, a, b, p, q;
    if (gm_mnist_load(&tr, &te, "data", 1200, 10, 0.0f, 1.0f) != 0 &&
        gm_mnist_load(&tr, &te, "../data", 1200, 10, 0.0f, 1.0f) != 0) return -1;
    *n = tr.n;
    *out = (float *)malloc(sizeof(float) * 64 * (size_t)tr.n);
    for (i = 0; i < tr.n; i++)
        for (a = 0; a < 8; a++)
            for (b = 0; b < 8; b++) {
                double m = 0;
                for (p = 0; p < 3; p++) for (q = 0; q < 3; q++) m += tr.x[(size_t)i * 784 + (2 + 3 * a + p) * 28 + 2 + 3 * b + q];
                (*out)[(size_t)i * 64 + a * 8 + b] = (float)(floor(255.0 * m / 9 + 0.5) / 255.0);
            }
    gm_dataset_free(&tr); gm_dataset_free(&te);
    return 0;
}

/* A RealNVP with variational dequantization learns 8x8 digits: the test bound falls well below the
   untrained one, and the trained q(u|x) beats q reset to its start (its last conv zeroed) under the
   same flow, so the dequantizer itself learned. */
GM_TEST(test_vardeq_learns) {
    gm_flow_config cfg = vardeq_config(1, 8, 8);
    gm_flow f;
    float *d = NULL;
    int n = 0, s;
    double b0, b1, breset, nll;
    if (small_digits(&d, &n) != 0 || n != 1200) { GM_CHECK(0, "no digits (%d): %s", n, gm_last_error()); free(d); return; }
    cfg.filters = 16; cfg.steps = 2; cfg.deq_filters = 8; cfg.warmup = 20; cfg.batch = 50;
    GM_CHECK(gm_flow_init(&f, &cfg) == 0, "%s", gm_last_error());
    GM_CHECK(gm_flow_data_init(&f, d, 200) == 0 && gm_flow_nll(&f, d + 1000 * 64, 200, 3, &nll, &b0) == 0, "%s",
             gm_last_error());
    for (s = 0; s < 300; s++)
        GM_CHECK(gm_flow_train_step(&f, d + (size_t)((s * 50) % 1000) * 64, NULL, 50, NULL) == 0, "step %d: %s", s,
                 gm_last_error());
    GM_CHECK(gm_flow_nll(&f, d + 1000 * 64, 200, 3, &nll, &b1) == 0, "%s", gm_last_error());
    {   int v;
        for (v = 0; v < f.params.nviews; v++)
            if (strncmp(f.params.views[v].name, "deq.out", 7) == 0)
                memset(gm_params_data(&f.params, v), 0, sizeof(float) * f.params.views[v].size);
    }
    GM_CHECK(gm_flow_nll(&f, d + 1000 * 64, 200, 3, &nll, &breset) == 0, "%s", gm_last_error());
    printf("  8x8 digits, 300 steps: test bound %.3f bits/dim (untrained %.3f; q reset to its start %.3f)\n", b1, b0,
           breset);
    GM_CHECK(b1 < b0 - 1.0, "bound %.3f not well below the untrained %.3f", b1, b0);
    GM_CHECK(b1 < breset - 0.02, "the trained q (%.3f) is no better than its start (%.3f)", b1, breset);
    gm_flow_free(&f);
    free(d);
}

/* The warm-up: Adam's first step moves a weight by lr x its factor (m/sqrt(v) = +-1), so the
   largest first move is lr / warmup with warm-up and lr without; the factor reaches 1 at step
   warmup. */
GM_TEST(test_lr_warmup) {
    gm_flow_config cfg = small_config(GM_FLOW_REALNVP, 1, 4, 4);
    float *x = flow_data(8, 16, 1, 3), *w0;
    double moved[2];
    int k;
    size_t i;
    for (k = 0; k < 2; k++) {
        gm_flow f;
        cfg.warmup = k == 0 ? 10 : 0;
        GM_CHECK(gm_flow_init(&f, &cfg) == 0, "%s", gm_last_error());
        GM_CHECK(gm_flow_data_init(&f, x, 8) == 0, "%s", gm_last_error());
        w0 = (float *)malloc(sizeof(float) * f.params.count);
        memcpy(w0, f.params.data, sizeof(float) * f.params.count);
        GM_CHECK(gm_flow_train_step(&f, x, NULL, 8, NULL) == 0, "%s", gm_last_error());
        moved[k] = 0;
        for (i = 0; i < f.params.count; i++) moved[k] = fmax(moved[k], fabs((double)f.params.data[i] - w0[i]));
        if (k == 0) {
            long s;
            for (s = 1; s < 12; s++) GM_CHECK(gm_flow_train_step(&f, x, NULL, 8, NULL) == 0, "%s", gm_last_error());
            GM_CHECK_CLOSE(gm_optim_lr(&f.opt), cfg.lr, 1e-6);
        }
        free(w0);
        gm_flow_free(&f);
    }
    printf("  first step's largest move: %.3g with warm-up 10, %.3g without (lr %g)\n", moved[0], moved[1], cfg.lr);
    GM_CHECK(fabs(moved[0] - cfg.lr / 10) < 0.05 * cfg.lr / 10, "with warm-up the first move is %g, want %g", moved[0],
             cfg.lr / 10);
    GM_CHECK(fabs(moved[1] - cfg.lr) < 0.05 * cfg.lr, "without warm-up the first move is %g, want %g", moved[1], cfg.lr);
    free(x);
}

int main(void) {
    make_moons();
    GM_RUN(test_layer_inverse);
    GM_RUN(test_layer_logdet);
    GM_RUN(test_actnorm_data_init);
    GM_RUN(test_models_exact);
    GM_RUN(test_moons_realnvp_learns);
    GM_RUN(test_density_integrates);
    GM_RUN(test_sample_interpolate_checkpoint);
    GM_RUN(test_moons_nice_glow_learn);
    GM_RUN(test_bad_input);
    GM_RUN(test_ffjord_hutchinson_unbiased);
    GM_RUN(test_ffjord_solvers);
    GM_RUN(test_ffjord_learns);
    GM_RUN(test_ffjord_trajectory);
    GM_RUN(test_flow_checkpoint_roundtrip);
    GM_RUN(test_ffjord_checkpoint_roundtrip);
    GM_RUN(test_load_refusals);
    GM_RUN(test_labels_refused);
    GM_RUN(test_vardeq_density);
    GM_RUN(test_vardeq_gradients);
    GM_RUN(test_vardeq_learns);
    GM_RUN(test_lr_warmup);
    if (TRAINED_OK) gm_flow_free(&TRAINED);
    return gm_test_summary();
}
