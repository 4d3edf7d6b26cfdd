/* test_core.c: forward values of the core ops against hand-computed numbers and naive loops, error
 * handling, the arena, optimizers and schedules, batch-norm statistics, learning and determinism.
 * Float comparisons use GM_CHECK_CLOSE (relative above 1, absolute below) with the tolerance
 * written at each check: 1e-6 for exact-by-construction values, 1e-5 for float sums vs double
 * references, 1e-4 for long dot products (convolutions). */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#include "gm_test.h"
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- */
/* Helpers                                                                                        */
/* ---------------------------------------------------------------------------------------------- */
static void fill(gm_rng *r, float *v, int n, float lo, float hi) {
    int i;
    for (i = 0; i < n; i++) v[i] = lo + (hi - lo) * gm_rng_uniform(r);
}

static gm_tensor *rnd(gm_graph *g, gm_rng *r, int d0, int d1, int d2, int d3) {
    gm_tensor *t = gm_zeros(g, d0, d1, d2, d3);
    if (t) fill(r, t->data, t->size, -1, 1);
    return t;
}

static double dot(const float *a, const float *b, int n) {
    double s = 0;
    int i;
    for (i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static int shape_is(const gm_tensor *t, int d0, int d1, int d2, int d3) {
    int d[4], k, n = 0;
    d[0] = d0; d[1] = d1; d[2] = d2; d[3] = d3;
    while (n < 4 && d[n]) n++;
    if (!t || t->ndim != n) return 0;
    for (k = 0; k < n; k++)
        if (t->shape[k] != d[k]) return 0;
    return 1;
}

/* ---------------------------------------------------------------------------------------------- */
/* Forward values                                                                                  */
/* ---------------------------------------------------------------------------------------------- */
GM_TEST(broadcast_add_values) {
    static const float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {10, 20, 30}, c[2] = {100, 200};
    static const float want[6] = {11, 22, 33, 14, 25, 36};
    gm_graph *g = gm_graph_new(1);
    gm_tensor *ta = gm_input(g, a, 2, 3, 0, 0), *tb = gm_input(g, b, 3, 0, 0, 0);
    gm_tensor *y = gm_add(g, ta, tb), *z, *w;
    int i;
    GM_CHECK(shape_is(y, 2, 3, 0, 0), "(2,3)+(3) shape");
    for (i = 0; y && i < 6; i++) GM_CHECK_CLOSE(y->data[i], want[i], 0);
    /* (2,1) * (3): outer product shape (2,3) */
    z = gm_mul(g, gm_input(g, c, 2, 1, 0, 0), tb);
    GM_CHECK(shape_is(z, 2, 3, 0, 0), "(2,1)*(3) shape");
    for (i = 0; z && i < 6; i++) GM_CHECK_CLOSE(z->data[i], c[i / 3] * b[i % 3], 0);
    /* (3) - (2,3) and (2,3) / (3) */
    w = gm_sub(g, tb, ta);
    for (i = 0; w && i < 6; i++) GM_CHECK_CLOSE(w->data[i], b[i % 3] - a[i], 0);
    w = gm_div(g, ta, tb);
    for (i = 0; w && i < 6; i++) GM_CHECK_CLOSE(w->data[i], a[i] / b[i % 3], 1e-7);
    gm_graph_free(g);
}

GM_TEST(unary_values) {
    static const float x[5] = {-2.0f, -0.5f, 0.25f, 1.0f, 3.0f};
    gm_graph *g = gm_graph_new(1);
    gm_tensor *t = gm_input(g, x, 5, 0, 0, 0);
    gm_tensor *ys[10];
    int i;
    ys[0] = gm_relu(g, t); ys[1] = gm_leaky_relu(g, t, 0.1f); ys[2] = gm_elu(g, t, 2.0f);
    ys[3] = gm_sigmoid(g, t); ys[4] = gm_tanh(g, t); ys[5] = gm_clamp(g, t, -1.0f, 0.5f);
    ys[6] = gm_abs(g, t); ys[7] = gm_pow(g, t, 3.0f); ys[8] = gm_affine(g, t, 2.0f, 1.0f); ys[9] = gm_log_sigmoid(g, t);
    for (i = 0; i < 5; i++) {
        double v = x[i];
        GM_CHECK_CLOSE(ys[0]->data[i], v > 0 ? v : 0, 1e-7);
        GM_CHECK_CLOSE(ys[1]->data[i], v > 0 ? v : 0.1 * v, 1e-7);
        GM_CHECK_CLOSE(ys[2]->data[i], v > 0 ? v : 2.0 * (exp(v) - 1), 1e-6);
        GM_CHECK_CLOSE(ys[3]->data[i], 1 / (1 + exp(-v)), 1e-6);
        GM_CHECK_CLOSE(ys[4]->data[i], tanh(v), 1e-6);
        GM_CHECK_CLOSE(ys[5]->data[i], v < -1 ? -1 : v > 0.5 ? 0.5 : v, 0);
        GM_CHECK_CLOSE(ys[6]->data[i], fabs(v), 0);
        GM_CHECK_CLOSE(ys[7]->data[i], v * v * v, 1e-6);
        GM_CHECK_CLOSE(ys[8]->data[i], 2 * v + 1, 1e-7);
        GM_CHECK_CLOSE(ys[9]->data[i], -log(1 + exp(-v)), 1e-6);
    }
    {   /* a NaN goes through the smooth activations as NaN (a NaN loss must stay visible) */
        float nan = (float)NAN;
        gm_tensor *n = gm_input(g, &nan, 1, 0, 0, 0);
        GM_CHECK(isnan(gm_elu(g, n, 1.0f)->data[0]) && isnan(gm_tanh(g, n)->data[0]) &&
                 isnan(gm_sigmoid(g, n)->data[0]) && isnan(gm_softplus(g, n)->data[0]) &&
                 isnan(gm_log_sigmoid(g, n)->data[0]) && isnan(gm_exp(g, n)->data[0]), "NaN through activations");
    }
    gm_graph_free(g);
}

GM_TEST(softplus_stable) {
    static const float x[6] = {-100, -20, -1, 1, 20, 100};
    gm_graph *g = gm_graph_new(1);
    gm_tensor *t = gm_input(g, x, 6, 0, 0, 0), *sp = gm_softplus(g, t), *ls = gm_log_sigmoid(g, t);
    int i;
    for (i = 0; i < 6; i++) {
        double v = x[i], want = v > 0 ? v + log1p(exp(-v)) : log1p(exp(v));
        GM_CHECK(isfinite(sp->data[i]) && isfinite(ls->data[i]), "softplus(%g) not finite", v);
        GM_CHECK_CLOSE(sp->data[i], want, 1e-6);
        GM_CHECK_CLOSE(ls->data[i], -(v < 0 ? -v + log1p(exp(v)) : log1p(exp(-v))), 1e-6);
    }
    GM_CHECK(sp->data[5] == 100.0f, "softplus(100) = %g", (double)sp->data[5]);
    GM_CHECK(sp->data[0] >= 0 && sp->data[0] < 1e-30f, "softplus(-100) = %g", (double)sp->data[0]);
    gm_graph_free(g);
}

GM_TEST(matmul_vs_naive) {
    gm_graph *g = gm_graph_new(1);
    gm_rng r;
    int ta, tb, M = 3, K = 5, N = 7, i, j, k;
    gm_rng_seed(&r, 11);
    for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++) {
            gm_tensor *a = ta ? rnd(g, &r, K, M, 0, 0) : rnd(g, &r, M, K, 0, 0);
            gm_tensor *b = tb ? rnd(g, &r, N, K, 0, 0) : rnd(g, &r, K, N, 0, 0);
            gm_tensor *y = gm_matmul(g, a, b, ta, tb);
            GM_CHECK(shape_is(y, M, N, 0, 0), "matmul ta=%d tb=%d shape", ta, tb);
            for (i = 0; y && i < M; i++)
                for (j = 0; j < N; j++) {
                    double s = 0;
                    for (k = 0; k < K; k++)
                        s += (double)(ta ? a->data[k * M + i] : a->data[i * K + k]) *
                             (tb ? b->data[j * K + k] : b->data[k * N + j]);
                    GM_CHECK_CLOSE(y->data[i * N + j], s, 1e-5);
                }
        }
    gm_graph_free(g);
}

GM_TEST(softmax_values) {
    static const float x[8] = {1000, 1001, 1002, 999, -3, 0, 2, 0.5f};
    gm_graph *g = gm_graph_new(1);
    gm_tensor *t = gm_input(g, x, 2, 4, 0, 0), *s = gm_softmax(g, t), *ls = gm_log_softmax(g, t);
    int r, i;
    for (r = 0; r < 2; r++) {
        double sum = 0, mx = -1e30, z = 0;
        for (i = 0; i < 4; i++) mx = x[r * 4 + i] > mx ? x[r * 4 + i] : mx;
        for (i = 0; i < 4; i++) z += exp(x[r * 4 + i] - mx);
        for (i = 0; i < 4; i++) {
            double want = exp(x[r * 4 + i] - mx) / z;
            GM_CHECK(isfinite(s->data[r * 4 + i]) && isfinite(ls->data[r * 4 + i]), "softmax not finite at 1000");
            GM_CHECK_CLOSE(s->data[r * 4 + i], want, 1e-6);
            GM_CHECK_CLOSE(ls->data[r * 4 + i], x[r * 4 + i] - mx - log(z), 1e-6);
            sum += s->data[r * 4 + i];
        }
        GM_CHECK_CLOSE(sum, 1.0, 1e-6);
    }
    /* 3-D: over the last axis only */
    {
        gm_rng rg;
        gm_tensor *x3, *s3;
        gm_rng_seed(&rg, 3);
        x3 = rnd(g, &rg, 2, 3, 5, 0);
        s3 = gm_softmax(g, x3);
        for (r = 0; r < 6; r++) {
            double sum = 0;
            for (i = 0; i < 5; i++) sum += s3->data[r * 5 + i];
            GM_CHECK_CLOSE(sum, 1.0, 1e-6);
        }
    }
    gm_graph_free(g);
}

/* Naive direct convolution: x (N,Ci,H,W), w (Co,Ci,k,k) -> (N,Co,Ho,Wo) */
static void naive_conv(const float *x, const float *w, float *y, int n, int ci, int h, int wd, int co, int k, int s,
                       int p, int ho, int wo) {
    int b, o, c, i, j, u, v;
    for (b = 0; b < n; b++)
        for (o = 0; o < co; o++)
            for (i = 0; i < ho; i++)
                for (j = 0; j < wo; j++) {
                    double acc = 0;
                    for (c = 0; c < ci; c++)
                        for (u = 0; u < k; u++)
                            for (v = 0; v < k; v++) {
                                int ih = i * s - p + u, iw = j * s - p + v;
                                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                                acc += (double)x[((b * ci + c) * h + ih) * wd + iw] * w[((o * ci + c) * k + u) * k + v];
                            }
                    y[((b * co + o) * ho + i) * wo + j] = (float)acc;
                }
}

GM_TEST(conv2d_vs_naive) {
    static const int cases[][8] = { /* n, ci, h, w, co, k, stride, pad */
        {2, 3, 7, 6, 4, 3, 1, 1}, {2, 3, 7, 6, 2, 3, 2, 0}, {1, 2, 8, 5, 3, 4, 2, 1}, {2, 1, 5, 4, 3, 3, 1, 2},
        {1, 4, 9, 9, 2, 4, 2, 2}, {3, 2, 4, 4, 2, 1, 1, 0}, {2, 2, 7, 8, 3, 2, 3, 2}, {1, 1, 3, 3, 2, 5, 1, 2}};
    gm_graph *g = gm_graph_new(1);
    gm_rng r;
    int c;
    gm_rng_seed(&r, 12);
    for (c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        const int *q = cases[c];
        int ho = (q[2] + 2 * q[7] - q[5]) / q[6] + 1, wo = (q[3] + 2 * q[7] - q[5]) / q[6] + 1, i;
        gm_tensor *x = rnd(g, &r, q[0], q[1], q[2], q[3]), *w = rnd(g, &r, q[4], q[1], q[5], q[5]);
        gm_tensor *y = gm_conv2d(g, x, w, q[6], q[7]);
        float *ref = (float *)malloc((size_t)q[0] * q[4] * ho * wo * sizeof(float));
        GM_CHECK(shape_is(y, q[0], q[4], ho, wo), "conv case %d: shape", c);
        naive_conv(x->data, w->data, ref, q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], ho, wo);
        for (i = 0; y && i < y->size; i++) GM_CHECK_CLOSE(y->data[i], ref[i], 1e-4);
        free(ref);
    }
    gm_graph_free(g);
}

/* Naive rectangular convolution with padding (top, left) and the output size given. */
static void naive_conv_ex(const float *x, const float *w, float *y, const int *q, int ho, int wo) {
    /* q: n, ci, h, w, co, kh, kw, stride, pt, pb, pl, pr */
    int b, o, c, i, j, u, v;
    for (b = 0; b < q[0]; b++)
        for (o = 0; o < q[4]; o++)
            for (i = 0; i < ho; i++)
                for (j = 0; j < wo; j++) {
                    double acc = 0;
                    for (c = 0; c < q[1]; c++)
                        for (u = 0; u < q[5]; u++)
                            for (v = 0; v < q[6]; v++) {
                                int ih = i * q[7] - q[8] + u, iw = j * q[7] - q[10] + v;
                                if (ih < 0 || ih >= q[2] || iw < 0 || iw >= q[3]) continue;
                                acc += (double)x[((b * q[1] + c) * q[2] + ih) * q[3] + iw] *
                                       w[((o * q[1] + c) * q[5] + u) * q[6] + v];
                            }
                    y[((b * q[4] + o) * ho + i) * wo + j] = (float)acc;
                }
}

GM_TEST(conv2d_ex_vs_naive) {
    static const int cases[][12] = { /* n, ci, h, w, co, kh, kw, stride, pad top, bottom, left, right */
        {2, 3, 7, 6, 4, 2, 3, 1, 1, 0, 1, 1}, {2, 3, 7, 6, 2, 1, 3, 1, 0, 0, 1, 1}, {1, 2, 8, 5, 3, 3, 1, 2, 2, 0, 0, 0},
        {2, 1, 5, 4, 3, 1, 4, 1, 0, 0, 3, 0}, {1, 4, 9, 9, 2, 4, 2, 2, 0, 3, 1, 0}, {3, 2, 4, 4, 2, 2, 2, 1, 1, 0, 1, 0},
        {2, 2, 7, 8, 3, 3, 3, 1, 1, 1, 1, 1}};
    gm_graph *g = gm_graph_new(1);
    gm_rng r;
    int c;
    gm_rng_seed(&r, 13);
    for (c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        const int *q = cases[c];
        int ho = (q[2] + q[8] + q[9] - q[5]) / q[7] + 1, wo = (q[3] + q[10] + q[11] - q[6]) / q[7] + 1, i;
        gm_tensor *x = rnd(g, &r, q[0], q[1], q[2], q[3]), *w = rnd(g, &r, q[4], q[1], q[5], q[6]);
        gm_tensor *y = gm_conv2d_ex(g, x, w, q[7], q[8], q[9], q[10], q[11]);
        float *ref = (float *)malloc((size_t)q[0] * q[4] * ho * wo * sizeof(float));
        GM_CHECK(shape_is(y, q[0], q[4], ho, wo), "conv_ex case %d: shape", c);
        naive_conv_ex(x->data, w->data, ref, q, ho, wo);
        for (i = 0; y && i < y->size; i++) GM_CHECK_CLOSE(y->data[i], ref[i], 1e-4);
        free(ref);
        if (q[5] == q[6] && q[8] == q[9] && q[9] == q[10] && q[10] == q[11]) { /* the square case is gm_conv2d's bits */
            gm_tensor *y2 = gm_conv2d(g, x, w, q[7], q[8]);
            GM_CHECK(y && y2 && memcmp(y->data, y2->data, (size_t)y->size * sizeof(float)) == 0, "conv_ex case %d vs gm_conv2d", c);
        }
    }
    GM_CHECK(gm_conv2d_ex(g, rnd(g, &r, 1, 1, 3, 3), rnd(g, &r, 1, 1, 2, 5), 1, 0, 0, 1, 0) == NULL, "2x5 kernel on 3+1 columns accepted");
    gm_graph_free(g);
}

GM_TEST(conv_transpose2d_adjoint) {
    static const int cases[][8] = { /* n, ci, h, w, co, k, stride, pad of the forward conv */
        {2, 3, 8, 8, 2, 4, 2, 1}, {2, 3, 7, 7, 2, 3, 2, 1}, {1, 2, 6, 5, 3, 3, 1, 1}, {2, 2, 9, 6, 3, 4, 2, 1}, {2, 2, 7, 8, 3, 2, 3, 2},
        {3, 2, 5, 5, 3, 1, 2, 0}, {5, 3, 9, 9, 4, 4, 2, 1}, {1, 2, 11, 11, 3, 5, 3, 2}};
    gm_graph *g = gm_graph_new(1);
    gm_rng r;
    int c;
    gm_rng_seed(&r, 13);
    for (c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        const int *q = cases[c];
        int ho = (q[2] + 2 * q[7] - q[5]) / q[6] + 1, wo = (q[3] + 2 * q[7] - q[5]) / q[6] + 1;
        int oph = (q[2] + 2 * q[7] - q[5]) % q[6], opw = (q[3] + 2 * q[7] - q[5]) % q[6];
        gm_tensor *x = rnd(g, &r, q[0], q[1], q[2], q[3]), *w = rnd(g, &r, q[4], q[1], q[5], q[5]);
        gm_tensor *y = rnd(g, &r, q[0], q[4], ho, wo);
        gm_tensor *cx = gm_conv2d(g, x, w, q[6], q[7]);
        gm_tensor *ty;
        if (oph != opw) continue; /* out_pad is one number for both axes */
        /* convT's weight is (Cin_t, Cout_t, k, k) = the conv's (Co, Ci, k, k) */
        ty = gm_conv_transpose2d(g, y, w, q[6], q[7], oph);
        GM_CHECK(shape_is(ty, q[0], q[1], q[2], q[3]), "convT case %d: shape", c);
        if (cx && ty) GM_CHECK_CLOSE(dot(cx->data, y->data, cx->size), dot(x->data, ty->data, x->size), 1e-5);
    }
    gm_graph_free(g);
}

/* The input gradient of a convolution (CONVT: stride 1 runs as a convolution with flipped weights,
   other strides write patches and add them back) against a direct loop of the adjoint, for each
   geometry: dx[ci, ih, iw] = sum over (co, ki, kj, oh, ow) with oh*s - pt + ki = ih, ow*s - pl + kj = iw
   of v[co, oh, ow] w[co, ci, ki, kj]; and the same bits at 1 and 2 threads (sizes that split). */
static float *conv_dx_eval(const int *q, int threads, int *count, float **ref) {
    gm_graph *g = gm_graph_new(1);
    gm_rng r;
    gm_tensor *x, *w, *y, *v, *dx;
    float *out = NULL;
    int ho, wo;
    gm_set_threads(threads);
    gm_rng_seed(&r, 21);
    ho = (q[2] + q[8] + q[9] - q[5]) / q[7] + 1;
    wo = (q[3] + q[10] + q[11] - q[6]) / q[7] + 1;
    x = gm_requires_grad(rnd(g, &r, q[0], q[1], q[2], q[3]));
    w = rnd(g, &r, q[4], q[1], q[5], q[6]);
    v = rnd(g, &r, q[0], q[4], ho, wo);
    y = gm_conv2d_ex(g, x, w, q[7], q[8], q[9], q[10], q[11]);
    dx = gm_grad(g, gm_sum(g, gm_mul(g, y, v)), x, 0);
    *count = x->size;
    if (dx && dx->size == x->size && (out = (float *)malloc((size_t)x->size * sizeof(float))))
        memcpy(out, dx->data, (size_t)x->size * sizeof(float));
    if (ref && (*ref = (float *)calloc((size_t)x->size, sizeof(float)))) {
        double *acc = (double *)calloc((size_t)x->size, sizeof(double));
        int b, o, c, i, j, u, t, k;
        for (b = 0; acc && b < q[0]; b++)
            for (o = 0; o < q[4]; o++)
                for (i = 0; i < ho; i++)
                    for (j = 0; j < wo; j++)
                        for (c = 0; c < q[1]; c++)
                            for (u = 0; u < q[5]; u++)
                                for (t = 0; t < q[6]; t++) {
                                    int ih = i * q[7] - q[8] + u, iw = j * q[7] - q[10] + t;
                                    if (ih < 0 || ih >= q[2] || iw < 0 || iw >= q[3]) continue;
                                    acc[((b * q[1] + c) * q[2] + ih) * q[3] + iw] +=
                                        (double)v->data[((b * q[4] + o) * ho + i) * wo + j] * w->data[((o * q[1] + c) * q[5] + u) * q[6] + t];
                                }
        for (k = 0; acc && k < x->size; k++) (*ref)[k] = (float)acc[k];
        free(acc);
    }
    gm_graph_free(g);
    return out;
}

GM_TEST(conv_input_grad_vs_naive) {
    static const int cases[][12] = { /* n, ci, h, w, co, kh, kw, stride, pad top, bottom, left, right */
        {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1}, {3, 2, 5, 5, 3, 1, 1, 1, 0, 0, 0, 0}, {2, 3, 6, 7, 2, 2, 3, 1, 1, 0, 2, 1},
        {1, 2, 5, 4, 3, 3, 3, 1, 3, 0, 0, 3}, {2, 2, 4, 6, 2, 4, 2, 1, 0, 3, 1, 0}, {2, 3, 7, 7, 2, 3, 3, 2, 1, 1, 1, 1},
        {9, 20, 13, 11, 24, 3, 3, 1, 1, 1, 1, 1}, {5, 12, 10, 9, 7, 1, 1, 1, 0, 0, 0, 0}};
    int c, old = gm_get_threads();
    for (c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        int n1 = 0, n2 = 0, i, bad = 0;
        float *ref = NULL, *a = conv_dx_eval(cases[c], 1, &n1, &ref), *b = conv_dx_eval(cases[c], 2, &n2, NULL);
        GM_CHECK(a && b && ref && n1 == n2, "conv dx case %d: evaluated", c);
        for (i = 0; a && ref && i < n1; i++) bad += fabsf(a[i] - ref[i]) > 1e-4f * (1.0f + fabsf(ref[i]));
        GM_CHECK(bad == 0, "conv dx case %d: %d of %d values off the direct loop", c, bad, n1);
        GM_CHECK(a && b && n1 == n2 && memcmp(a, b, (size_t)n1 * sizeof(float)) == 0, "conv dx case %d: 1 and 2 threads differ", c);
        free(a);
        free(b);
        free(ref);
    }
    gm_set_threads(old);
}

GM_TEST(pool_upsample_values) {
    static const float x[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    static const float pooled[4] = {3.5f, 5.5f, 11.5f, 13.5f};
    static const float small[4] = {1, 2, 3, 4};
    static const float up[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    gm_graph *g = gm_graph_new(1);
    gm_tensor *p = gm_avg_pool(g, gm_input(g, x, 1, 1, 4, 4), 2);
    gm_tensor *u = gm_upsample_nearest(g, gm_input(g, small, 1, 1, 2, 2), 2);
    gm_tensor *p2 = gm_avg_pool(g, gm_input(g, x, 1, 2, 2, 4), 2);  /* 2 channels of 2x4 */
    int i;
    GM_CHECK(shape_is(p, 1, 1, 2, 2) && shape_is(u, 1, 1, 4, 4) && shape_is(p2, 1, 2, 1, 2), "pool shapes");
    for (i = 0; p && i < 4; i++) GM_CHECK_CLOSE(p->data[i], pooled[i], 1e-7);
    for (i = 0; u && i < 16; i++) GM_CHECK_CLOSE(u->data[i], up[i], 0);
    if (p2) {
        GM_CHECK_CLOSE(p2->data[0], 3.5, 1e-7);
        GM_CHECK_CLOSE(p2->data[1], 5.5, 1e-7);
        GM_CHECK_CLOSE(p2->data[2], 11.5, 1e-7);
        GM_CHECK_CLOSE(p2->data[3], 13.5, 1e-7);
    }
    gm_graph_free(g);
}

GM_TEST(gather_one_hot) {
    static const float x[6] = {1, 2, 3, 4, 5, 6};
    static const int labels[2] = {2, 0};
    gm_graph *g = gm_graph_new(1);
    gm_tensor *y = gm_gather(g, gm_input(g, x, 2, 3, 0, 0), labels), *oh = gm_one_hot(g, labels, 2, 3);
    static const float want_oh[6] = {0, 0, 1, 1, 0, 0};
    int i;
    GM_CHECK(shape_is(y, 2, 0, 0, 0) && y->data[0] == 3 && y->data[1] == 4, "gather");
    GM_CHECK(shape_is(oh, 2, 3, 0, 0), "one_hot shape");
    for (i = 0; oh && i < 6; i++) GM_CHECK(oh->data[i] == want_oh[i], "one_hot[%d] = %g", i, (double)oh->data[i]);
    gm_graph_free(g);
}

GM_TEST(slice_concat_roundtrip) {
    gm_graph *g = gm_graph_new(1);
    gm_rng r;
    int axis;
    gm_rng_seed(&r, 14);
    for (axis = 0; axis < 4; axis++) {
        gm_tensor *x = rnd(g, &r, 3, 4, 5, 6);
        int len = x->shape[axis], cut = len / 2 + 1 > len - 1 ? 1 : len / 2 + 1;
        gm_tensor *a = gm_slice(g, x, axis, 0, cut), *b = gm_slice(g, x, axis, cut, len - cut);
        gm_tensor *y = gm_concat(g, a, b, axis);
        GM_CHECK(y && y->size == x->size && memcmp(y->data, x->data, (size_t)x->size * sizeof(float)) == 0 &&
                     shape_is(y, 3, 4, 5, 6), "slice/concat round trip on axis %d", axis);
    }
    { /* a known slice value */
        static const float v[6] = {0, 1, 2, 3, 4, 5};
        gm_tensor *s = gm_slice(g, gm_input(g, v, 2, 3, 0, 0), 1, 1, 2);
        GM_CHECK(shape_is(s, 2, 2, 0, 0) && s->data[0] == 1 && s->data[1] == 2 && s->data[2] == 4 && s->data[3] == 5,
                 "slice values");
    }
    gm_graph_free(g);
}

GM_TEST(permute_vs_naive) {
    static const int perms[][4] = {{0, 2, 3, 1}, {3, 1, 0, 2}, {1, 0, 3, 2}, {2, 3, 0, 1}, {0, 1, 2, 3}};
    gm_graph *g = gm_graph_new(1);
    gm_rng r;
    int p, i0, i1, i2, i3;
    gm_rng_seed(&r, 15);
    for (p = 0; p < 5; p++) {
        gm_tensor *x = rnd(g, &r, 2, 3, 4, 5);
        const int *pm = perms[p];
        gm_tensor *y = gm_permute(g, x, pm[0], pm[1], pm[2], pm[3]);
        int bad = 0;
        GM_CHECK(shape_is(y, x->shape[pm[0]], x->shape[pm[1]], x->shape[pm[2]], x->shape[pm[3]]), "permute shape");
        for (i0 = 0; y && i0 < 2; i0++)
            for (i1 = 0; i1 < 3; i1++)
                for (i2 = 0; i2 < 4; i2++)
                    for (i3 = 0; i3 < 5; i3++) {
                        int idx[4], o;
                        idx[0] = i0; idx[1] = i1; idx[2] = i2; idx[3] = i3;
                        /* out index k = in index pm[k] */
                        o = ((idx[pm[0]] * y->shape[1] + idx[pm[1]]) * y->shape[2] + idx[pm[2]]) * y->shape[3] + idx[pm[3]];
                        if (y->data[o] != x->data[((i0 * 3 + i1) * 4 + i2) * 5 + i3]) bad++;
                    }
        GM_CHECK(bad == 0, "permute (%d,%d,%d,%d): %d wrong elements", pm[0], pm[1], pm[2], pm[3], bad);
    }
    { /* 3-D and transpose */
        gm_tensor *x = rnd(g, &r, 2, 3, 4, 0), *y = gm_permute(g, x, 2, 0, 1, 0), *t;
        int bad = 0;
        for (i0 = 0; i0 < 2; i0++)
            for (i1 = 0; i1 < 3; i1++)
                for (i2 = 0; i2 < 4; i2++)
                    if (y->data[(i2 * 2 + i0) * 3 + i1] != x->data[(i0 * 3 + i1) * 4 + i2]) bad++;
        GM_CHECK(shape_is(y, 4, 2, 3, 0) && bad == 0, "3-D permute (2,0,1): %d wrong", bad);
        x = rnd(g, &r, 3, 5, 0, 0);
        t = gm_transpose(g, x);
        bad = 0;
        for (i0 = 0; i0 < 3; i0++)
            for (i1 = 0; i1 < 5; i1++)
                if (t->data[i1 * 3 + i0] != x->data[i0 * 5 + i1]) bad++;
        GM_CHECK(shape_is(t, 5, 3, 0, 0) && bad == 0, "transpose");
    }
    gm_graph_free(g);
}

GM_TEST(reductions_values) {
    static const float x[6] = {1, 2, 3, 4, 5, 6};
    gm_graph *g = gm_graph_new(1);
    gm_tensor *t = gm_input(g, x, 2, 3, 0, 0);
    gm_tensor *s = gm_sum(g, t), *m = gm_mean(g, t), *s0 = gm_sum_axes(g, t, GM_AXIS(0));
    gm_tensor *m1 = gm_mean_axes(g, t, GM_AXIS(1)), *sr = gm_sum_rows(g, t), *e = gm_expand(g, gm_input(g, x, 3, 0, 0, 0), 2, 3, 0, 0);
    gm_tensor *rs = gm_reshape(g, t, 3, -1, 0, 0), *fl = gm_flatten(g, gm_reshape(g, t, 2, 1, 3, 1));
    int i;
    GM_CHECK(shape_is(s, 1, 0, 0, 0) && s->data[0] == 21, "sum");
    GM_CHECK(shape_is(m, 1, 0, 0, 0) && m->data[0] == 3.5f, "mean");
    GM_CHECK(shape_is(s0, 1, 3, 0, 0) && s0->data[0] == 5 && s0->data[1] == 7 && s0->data[2] == 9, "sum_axes 0");
    GM_CHECK(shape_is(m1, 2, 1, 0, 0) && m1->data[0] == 2 && m1->data[1] == 5, "mean_axes 1");
    GM_CHECK(shape_is(sr, 2, 0, 0, 0) && sr->data[0] == 6 && sr->data[1] == 15, "sum_rows");
    GM_CHECK(shape_is(e, 2, 3, 0, 0), "expand shape");
    for (i = 0; e && i < 6; i++) GM_CHECK(e->data[i] == x[i % 3], "expand[%d]", i);
    GM_CHECK(shape_is(rs, 3, 2, 0, 0), "reshape -1");
    GM_CHECK(shape_is(fl, 2, 3, 0, 0), "flatten");
    gm_graph_free(g);
}

GM_TEST(losses_values) {
    static const float z[6] = {-3, -0.5f, 0, 0.7f, 2, 40}, t[6] = {0, 1, 0.3f, 1, 0, 1};
    static const float mu[4] = {0.5f, -1, 0.2f, 2}, lv[4] = {0.1f, -0.7f, 1.2f, 0};
    static const float xs[4] = {1, 0, -0.5f, 2.5f};
    static const int labels[2] = {2, 0};
    gm_graph *g = gm_graph_new(1);
    gm_tensor *tz = gm_input(g, z, 2, 3, 0, 0), *tt = gm_input(g, t, 2, 3, 0, 0);
    gm_tensor *bce = gm_bce_logits(g, tz, tt), *bl = gm_bernoulli_loglik(g, tz, tt);
    gm_tensor *tm = gm_input(g, mu, 2, 2, 0, 0), *tl = gm_input(g, lv, 2, 2, 0, 0), *tx = gm_input(g, xs, 2, 2, 0, 0);
    gm_tensor *kl = gm_kl_std_normal(g, tm, tl), *gl = gm_gaussian_loglik(g, tx, tm, tl);
    gm_tensor *xe = gm_softmax_xent(g, tz, labels), *mse = gm_mse(g, tz, tt);
    gm_tensor *zero = gm_zeros(g, 3, 2, 0, 0), *kl0 = gm_kl_std_normal(g, zero, zero);
    double sum = 0, rows[2] = {0, 0}, klr[2] = {0, 0}, glr[2] = {0, 0}, xer = 0, mser = 0;
    int i, r;
    for (i = 0; i < 6; i++) {
        double sg = 1 / (1 + exp(-(double)z[i]));
        double term = -(t[i] * log(sg) + (1 - t[i]) * (sg < 1 ? log(1 - sg) : -(double)z[i]));
        if (z[i] > 30) term = (1 - t[i]) * z[i] + log1p(exp(-(double)z[i])); /* 1 - sg underflows in double */
        sum += term;
        rows[i / 3] += term;
        mser += (z[i] - t[i]) * (z[i] - t[i]);
    }
    GM_CHECK_CLOSE(bce->data[0], sum / 6, 1e-5);
    GM_CHECK(shape_is(bl, 2, 0, 0, 0), "bernoulli_loglik shape (N)");
    GM_CHECK_CLOSE(bl->data[0], -rows[0], 1e-5);
    GM_CHECK_CLOSE(bl->data[1], -rows[1], 1e-5);
    GM_CHECK_CLOSE(mse->data[0], mser / 6, 1e-5);
    for (i = 0; i < 4; i++) {
        klr[i / 2] += -0.5 * (1 + lv[i] - mu[i] * mu[i] - exp(lv[i]));
        glr[i / 2] += -0.5 * (log(2 * 3.14159265358979) + lv[i] + (xs[i] - mu[i]) * (xs[i] - mu[i]) / exp(lv[i]));
    }
    for (r = 0; r < 2; r++) {
        GM_CHECK_CLOSE(kl->data[r], klr[r], 1e-5);
        GM_CHECK_CLOSE(gl->data[r], glr[r], 1e-5);
    }
    for (r = 0; r < 3; r++) GM_CHECK(kl0->data[r] == 0.0f, "kl(0, 0)[%d] = %g", r, (double)kl0->data[r]);
    for (r = 0; r < 2; r++) {
        double mx = -1e30, s = 0;
        for (i = 0; i < 3; i++) mx = z[r * 3 + i] > mx ? z[r * 3 + i] : mx;
        for (i = 0; i < 3; i++) s += exp(z[r * 3 + i] - mx);
        xer += -(z[r * 3 + labels[r]] - mx - log(s));
    }
    GM_CHECK_CLOSE(xe->data[0], xer / 2, 1e-5);
    gm_graph_free(g);
}

GM_TEST(dropout_behaviour) {
    gm_graph *g = gm_graph_new(5);
    gm_tensor *x = gm_full(g, 2.0f, 100, 100, 0, 0), *y = gm_dropout(g, x, 0.25f), *e;
    int i, zeros = 0, bad = 0;
    for (i = 0; y && i < y->size; i++) {
        if (y->data[i] == 0) zeros++;
        else if (fabsf(y->data[i] - 2.0f / 0.75f) > 1e-6f) bad++;
    }
    GM_CHECK(bad == 0 && zeros > 2300 && zeros < 2700, "dropout: %d zeros of 10000, %d bad values", zeros, bad);
    {   /* neighbours independent (both dropped: p^2 = 6.25% of 9999 pairs, sd ~24), a new mask per
           call, and the same mask from the same seed at any thread count */
        gm_graph *g1 = gm_graph_new(9), *g2 = gm_graph_new(9);
        gm_tensor *x1 = gm_full(g1, 1.0f, 300, 300, 0, 0), *x2 = gm_full(g2, 1.0f, 300, 300, 0, 0), *m1, *m2, *m3;
        int pairs = 0, saved = gm_get_threads();
        for (i = 0; y && i + 1 < y->size; i++) pairs += y->data[i] == 0 && y->data[i + 1] == 0;
        GM_CHECK(pairs > 525 && pairs < 725, "dropout: %d adjacent dropped pairs of 9999, want ~625", pairs);
        gm_set_threads(1);
        m1 = gm_dropout(g1, x1, 0.5f);
        gm_set_threads(2);
        m2 = gm_dropout(g2, x2, 0.5f);
        m3 = gm_dropout(g2, x2, 0.5f);
        gm_set_threads(saved);
        GM_CHECK(m1 && m2 && memcmp(m1->data, m2->data, (size_t)m1->size * sizeof(float)) == 0, "dropout mask depends on threads");
        GM_CHECK(m2 && m3 && memcmp(m2->data, m3->data, (size_t)m2->size * sizeof(float)) != 0, "dropout repeats its mask");
        gm_graph_free(g1);
        gm_graph_free(g2);
    }
    gm_graph_set_training(g, 0);
    e = gm_dropout(g, x, 0.25f);
    GM_CHECK(e && memcmp(e->data, x->data, (size_t)x->size * sizeof(float)) == 0, "dropout in eval is the identity");
    gm_graph_free(g);
}

/* ---------------------------------------------------------------------------------------------- */
/* Errors                                                                                          */
/* ---------------------------------------------------------------------------------------------- */
/* t must be NULL, and both the thread's and the graph's error must name s1 and s2. */
static void expect_error(gm_graph *g, gm_tensor *t, const char *what, const char *s1, const char *s2) {
    const char *ge = gm_graph_error(g), *le = gm_last_error();
    GM_CHECK(t == NULL, "%s: should fail", what);
    GM_CHECK(ge != NULL, "%s: no graph error", what);
    GM_CHECK(strstr(le, s1) && (!s2 || strstr(le, s2)), "%s: gm_last_error '%s' should name %s %s", what, le, s1, s2 ? s2 : "");
    GM_CHECK(ge && strstr(ge, s1) && (!s2 || strstr(ge, s2)), "%s: gm_graph_error '%s' should name %s %s", what,
             ge ? ge : "(null)", s1, s2 ? s2 : "");
    gm_graph_reset(g);
}

GM_TEST(shape_errors) {
    gm_graph *g = gm_graph_new(1);
    gm_tensor *a, *b;
    static const int lab[2] = {0, 7};
#define A23 gm_zeros(g, 2, 3, 0, 0)
#define B4 gm_zeros(g, 4, 0, 0, 0)
    expect_error(g, gm_add(g, A23, B4), "add", "(2,3)", "(4)");
    expect_error(g, gm_sub(g, A23, B4), "sub", "(2,3)", "(4)");
    expect_error(g, gm_mul(g, A23, B4), "mul", "(2,3)", "(4)");
    expect_error(g, gm_div(g, A23, B4), "div", "(2,3)", "(4)");
    expect_error(g, gm_add(g, gm_zeros(g, 2, 3, 4, 0), gm_zeros(g, 3, 3, 1, 0)), "add 3-D", "(2,3,4)", "(3,3,1)");
    expect_error(g, gm_matmul(g, A23, gm_zeros(g, 4, 5, 0, 0), 0, 0), "matmul", "(2,3)", "(4,5)");
    expect_error(g, gm_matmul(g, A23, gm_zeros(g, 3, 5, 0, 0), 1, 0), "matmul ta", "(2,3)", "(3,5)");
    expect_error(g, gm_matmul(g, A23, B4, 0, 0), "matmul 1-D", "(2,3)", "(4)");
    expect_error(g, gm_conv2d(g, gm_zeros(g, 1, 3, 5, 5), gm_zeros(g, 2, 4, 3, 3), 1, 0), "conv2d", "(1,3,5,5)", "(2,4,3,3)");
    expect_error(g, gm_conv2d(g, A23, gm_zeros(g, 2, 3, 3, 3), 1, 0), "conv2d 2-D input", "(2,3)", "(2,3,3,3)");
    expect_error(g, gm_conv_transpose2d(g, gm_zeros(g, 1, 3, 5, 5), gm_zeros(g, 2, 4, 3, 3), 2, 1, 0), "convT",
                 "(1,3,5,5)", "(2,4,3,3)");
    expect_error(g, gm_concat(g, A23, gm_zeros(g, 3, 3, 0, 0), 1), "concat", "(2,3)", "(3,3)");
    expect_error(g, gm_concat(g, A23, B4, 0), "concat ndim", "(2,3)", "(4)");
    expect_error(g, gm_mse(g, A23, gm_zeros(g, 3, 2, 0, 0)), "mse", "(2,3)", "(3,2)");
    expect_error(g, gm_bce_logits(g, A23, gm_zeros(g, 3, 2, 0, 0)), "bce", "(2,3)", "(3,2)");
    expect_error(g, gm_bernoulli_loglik(g, A23, gm_zeros(g, 3, 2, 0, 0)), "bernoulli", "(2,3)", "(3,2)");
    expect_error(g, gm_gaussian_loglik(g, A23, gm_zeros(g, 3, 2, 0, 0), A23), "gaussian", "(2,3)", "(3,2)");
    expect_error(g, gm_kl_std_normal(g, A23, gm_zeros(g, 3, 2, 0, 0)), "kl", "(2,3)", "(3,2)");
    expect_error(g, gm_bias_add(g, A23, B4), "bias_add", "(2,3)", "(4)");
    expect_error(g, gm_reshape(g, A23, 4, 2, 0, 0), "reshape", "(2,3)", "4,2");
    expect_error(g, gm_reshape(g, A23, -1, 4, 0, 0), "reshape -1", "(2,3)", NULL);
    expect_error(g, gm_reshape(g, A23, -1, -1, 0, 0), "reshape two -1", "(2,3)", NULL);
    expect_error(g, gm_reshape(g, A23, 6, 0, 1, 0), "reshape gap", "(2,3)", NULL);
    expect_error(g, gm_slice(g, A23, 1, 2, 2), "slice", "(2,3)", NULL);
    expect_error(g, gm_slice(g, A23, 2, 0, 1), "slice axis", "(2,3)", NULL);
    expect_error(g, gm_expand(g, A23, 2, 4, 0, 0), "expand", "(2,3)", NULL);
    expect_error(g, gm_avg_pool(g, gm_zeros(g, 1, 1, 5, 4), 2), "avg_pool", "(1,1,5,4)", NULL);
    expect_error(g, gm_upsample_nearest(g, A23, 2), "upsample 2-D", "(2,3)", NULL);
    expect_error(g, gm_permute(g, A23, 0, 0, 0, 0), "permute", "permutation", NULL);
    expect_error(g, gm_transpose(g, gm_zeros(g, 2, 3, 4, 0)), "transpose", "3-D", NULL);
    expect_error(g, gm_sum_axes(g, A23, GM_AXIS(2)), "sum_axes", "mask", NULL);
    expect_error(g, gm_gather(g, A23, lab), "gather label", "label 7", NULL);
    expect_error(g, gm_clamp(g, A23, 1.0f, -1.0f), "clamp", "lo", NULL);
    expect_error(g, gm_dropout(g, A23, 1.0f), "dropout p", "p = 1", NULL);
    /* bad shapes in leaves */
    expect_error(g, gm_zeros(g, 0, 0, 0, 0), "zeros ()", "bad shape", NULL);
    expect_error(g, gm_zeros(g, 2, -3, 0, 0), "zeros negative", "bad shape", NULL);
    expect_error(g, gm_zeros(g, 2, 0, 3, 0), "zeros gap", "bad shape", NULL);
    expect_error(g, gm_full(g, 1.0f, 100000, 100000, 0, 0), "zeros too large", "too large", NULL);
    expect_error(g, gm_input(g, NULL, 2, 0, 0, 0), "input NULL data", "NULL", NULL);
    /* after a reset the graph is clean and works */
    a = gm_zeros(g, 2, 3, 0, 0);
    b = gm_add(g, a, a);
    GM_CHECK(b != NULL && gm_graph_error(g) == NULL, "graph works after errors");
    /* only the first error is kept by the graph */
    gm_add(g, A23, B4);
    gm_matmul(g, A23, A23, 0, 0);
    GM_CHECK(gm_graph_error(g) && strstr(gm_graph_error(g), "gm_add"), "first error kept: %s", gm_graph_error(g));
#undef A23
#undef B4
    gm_graph_free(g);
}

GM_TEST(null_propagation) {
    gm_graph *g = gm_graph_new(1);
    gm_tensor *x = gm_zeros(g, 2, 3, 0, 0), *n = NULL, *x4 = gm_zeros(g, 1, 2, 4, 4), *w = gm_zeros(g, 2, 2, 3, 3);
    static const int lab[2] = {0, 1};
    gm_batchnorm bn;
    gm_layernorm ln;
    gm_linear lin;
    gm_conv cv;
    gm_params P;
    gm_rng r;
    int ok = 1;
    memset(&P, 0, sizeof P);
    gm_rng_seed(&r, 1);
    gm_batchnorm_init(&bn, &P, "bn", 3);
    gm_layernorm_init(&ln, &P, "ln", 3);
    gm_linear_init(&lin, &P, "lin", 3, 2, GM_INIT_TORCH, &r);
    gm_conv_init(&cv, &P, "cv", 2, 2, 3, 1, 1, GM_INIT_TORCH, &r);
#define NUL(e) do { if ((e) != NULL) { ok = 0; printf("  not NULL: %s\n", #e); } } while (0)
    NUL(gm_add(g, x, n)); NUL(gm_add(g, n, x)); NUL(gm_sub(g, n, x)); NUL(gm_mul(g, x, n)); NUL(gm_div(g, n, n));
    NUL(gm_bias_add(g, n, x)); NUL(gm_bias_add(g, x, n)); NUL(gm_affine(g, n, 1, 1)); NUL(gm_scale(g, n, 2));
    NUL(gm_neg(g, n)); NUL(gm_exp(g, n)); NUL(gm_log(g, n)); NUL(gm_sqrt(g, n)); NUL(gm_square(g, n));
    NUL(gm_abs(g, n)); NUL(gm_pow(g, n, 2)); NUL(gm_clamp(g, n, 0, 1)); NUL(gm_relu(g, n)); NUL(gm_leaky_relu(g, n, 0.1f));
    NUL(gm_elu(g, n, 1)); NUL(gm_tanh(g, n)); NUL(gm_sigmoid(g, n)); NUL(gm_softplus(g, n)); NUL(gm_log_sigmoid(g, n));
    NUL(gm_softmax(g, n)); NUL(gm_log_softmax(g, n)); NUL(gm_sum(g, n)); NUL(gm_mean(g, n));
    NUL(gm_sum_axes(g, n, 1)); NUL(gm_mean_axes(g, n, 1)); NUL(gm_sum_rows(g, n)); NUL(gm_expand(g, n, 2, 3, 0, 0));
    NUL(gm_reshape(g, n, 6, 0, 0, 0)); NUL(gm_flatten(g, n)); NUL(gm_permute(g, n, 1, 0, 0, 0)); NUL(gm_transpose(g, n));
    NUL(gm_concat(g, n, x, 0)); NUL(gm_concat(g, x, n, 0)); NUL(gm_slice(g, n, 0, 0, 1)); NUL(gm_gather(g, n, lab));
    NUL(gm_matmul(g, n, x, 0, 1)); NUL(gm_matmul(g, x, n, 0, 1)); NUL(gm_conv2d(g, n, w, 1, 1)); NUL(gm_conv2d(g, x4, n, 1, 1));
    NUL(gm_conv_transpose2d(g, n, w, 2, 1, 0)); NUL(gm_conv_transpose2d(g, x4, n, 2, 1, 0));
    NUL(gm_upsample_nearest(g, n, 2)); NUL(gm_avg_pool(g, n, 2)); NUL(gm_dropout(g, n, 0.5f));
    NUL(gm_mse(g, n, x)); NUL(gm_mse(g, x, n)); NUL(gm_bce_logits(g, n, x)); NUL(gm_softmax_xent(g, n, lab));
    NUL(gm_gaussian_loglik(g, n, x, x)); NUL(gm_gaussian_loglik(g, x, x, n)); NUL(gm_bernoulli_loglik(g, x, n));
    NUL(gm_kl_std_normal(g, n, x)); NUL(gm_detach(g, n)); NUL(gm_randn_like(g, n)); NUL(gm_requires_grad(n));
    NUL(gm_linear_forward(g, &lin, n)); NUL(gm_conv_forward(g, &cv, n)); NUL(gm_batchnorm_forward(g, &bn, n)); NUL(gm_layernorm_forward(g, &ln, n));
    NUL(gm_grad(g, n, x, 0)); NUL(gm_exp(NULL, x)); NUL(gm_zeros(NULL, 2, 0, 0, 0)); NUL(gm_add(NULL, x, x));
    /* a whole step with one failing op: the loss is NULL and gm_backward says why */
    {
        gm_tensor *loss = gm_mse(g, gm_linear_forward(g, &lin, gm_zeros(g, 4, 5, 0, 0)), gm_zeros(g, 4, 2, 0, 0));
        GM_CHECK(loss == NULL, "loss of a failed step is NULL");
        GM_CHECK(gm_backward(g, loss) == -1 && strstr(gm_last_error(), "(4,5)"), "backward(NULL): %s", gm_last_error());
    }
#undef NUL
    GM_CHECK(ok, "some op did not propagate NULL");
    gm_params_free(&P);
    gm_graph_free(g);
}

GM_TEST(backward_errors) {
    gm_graph *g = gm_graph_new(1);
    gm_params P;
    int v, shape[1] = {3};
    gm_tensor *w, *loss;
    memset(&P, 0, sizeof P);
    v = gm_params_add(&P, "w", 1, shape);
    gm_params_data(&P, v)[0] = -1.0f;
    w = gm_param(g, &P, v);
    loss = gm_sum(g, gm_sqrt(g, w));   /* sqrt(-1): NaN */
    GM_CHECK(gm_backward(g, loss) == -1, "NaN loss must fail");
    GM_CHECK(strstr(gm_last_error(), "NaN") != NULL, "message names NaN: %s", gm_last_error());
    GM_CHECK(gm_params_grad(&P, v)[1] == 0, "no gradient from a NaN loss");
    gm_graph_reset(g);
    w = gm_param(g, &P, v);
    GM_CHECK(gm_backward(g, gm_scale(g, w, 2)) == -1, "non-scalar loss must fail");
    GM_CHECK(strstr(gm_last_error(), "single value") != NULL, "non-scalar message: %s", gm_last_error());
    gm_graph_reset(g);
    gm_params_data(&P, v)[0] = 1e30f;
    w = gm_param(g, &P, v);
    GM_CHECK(gm_backward(g, gm_sum(g, gm_square(g, w))) == -1 && strstr(gm_last_error(), "infinite"), "inf loss: %s",
             gm_last_error());
    GM_CHECK(gm_backward(NULL, NULL) == -1, "NULL graph");
    gm_graph_reset(g);
    { /* gm_grad of an untracked x */
        gm_tensor *x = gm_zeros(g, 2, 0, 0, 0);
        GM_CHECK(gm_grad(g, gm_exp(g, x), x, 0) == NULL && strstr(gm_last_error(), "gm_requires_grad"), "untracked x");
    }
    gm_params_free(&P);
    gm_graph_free(g);
}

/* gm_grad after an earlier gm_grad on the same x, where y does not depend on x: zeros. */
GM_TEST(grad_independent_after_grad) {
    static const float xv[3] = {1, 2, 3};
    gm_graph *g = gm_graph_new(1);
    gm_tensor *x = gm_requires_grad(gm_input(g, xv, 3, 0, 0, 0));
    gm_tensor *d1 = gm_grad(g, gm_sum(g, gm_square(g, x)), x, 1), *c = gm_full(g, 2.0f, 3, 0, 0, 0), *d2;
    int i;
    GM_CHECK(d1 && d1->data[2] == 6.0f, "d/dx sum x^2");
    d2 = gm_grad(g, gm_sum(g, c), x, 0);
    for (i = 0; d2 && i < 3; i++) GM_CHECK(d2->data[i] == 0.0f, "d const/dx [%d] = %g", i, (double)d2->data[i]);
    GM_CHECK(d2 != NULL, "gm_grad of a constant");
    /* the gradient of a linear function is a constant: its derivative is zero */
    d1 = gm_grad(g, gm_sum(g, gm_scale(g, x, 3.0f)), x, 1);
    d2 = gm_grad(g, gm_sum(g, d1), x, 0);
    for (i = 0; d2 && i < 3; i++) GM_CHECK(d2->data[i] == 0.0f, "second derivative of 3x [%d] = %g", i, (double)d2->data[i]);
    gm_graph_free(g);
}

/* One parameter used twice in a step (weight sharing), and two backward passes in one graph (a GAN
   step: the critic's loss, then the generator's): gradients add up in the gm_params. */
GM_TEST(param_sharing_and_two_backwards) {
    gm_params P;
    gm_graph *g = gm_graph_new(1);
    int v, s[1] = {3}, i;
    gm_tensor *w1, *w2, *l1, *l2;
    memset(&P, 0, sizeof P);
    v = gm_params_add(&P, "w", 1, s);
    for (i = 0; i < 3; i++) gm_params_data(&P, v)[i] = (float)(i + 1);
    w1 = gm_param(g, &P, v);
    w2 = gm_param(g, &P, v);
    l1 = gm_sum(g, gm_mul(g, w1, w2));            /* d/dw = 2w */
    l2 = gm_sum(g, gm_scale(g, w1, 3.0f));        /* d/dw = 3, built before l1's backward */
    GM_CHECK(gm_backward(g, l1) == 0, "first backward");
    for (i = 0; i < 3; i++) GM_CHECK(gm_params_grad(&P, v)[i] == 2.0f * (float)(i + 1), "shared weight grad[%d]", i);
    GM_CHECK(gm_backward(g, l2) == 0, "second backward");
    for (i = 0; i < 3; i++) GM_CHECK(gm_params_grad(&P, v)[i] == 2.0f * (float)(i + 1) + 3.0f, "accumulated grad[%d]", i);
    gm_params_free(&P);
    gm_graph_free(g);
}

/* ---------------------------------------------------------------------------------------------- */
/* Arena                                                                                           */
/* ---------------------------------------------------------------------------------------------- */
GM_TEST(arena_steady_state) {
    gm_params P;
    gm_linear l1, l2;
    gm_rng r;
    gm_optim opt = gm_adam(1e-3f, 0.9f, 0.999f);
    gm_graph *g = gm_graph_new(1);
    float x[32 * 20], y[32 * 5];
    size_t mem[8];
    int step;
    memset(&P, 0, sizeof P);
    gm_rng_seed(&r, 21);
    gm_linear_init(&l1, &P, "l1", 20, 64, GM_INIT_TORCH, &r);
    gm_linear_init(&l2, &P, "l2", 64, 5, GM_INIT_TORCH, &r);
    fill(&r, x, 32 * 20, -1, 1);
    fill(&r, y, 32 * 5, -1, 1);
    for (step = 0; step < 8; step++) {
        gm_tensor *loss;
        gm_graph_reset(g);
        loss = gm_mse(g, gm_linear_forward(g, &l2, gm_relu(g, gm_linear_forward(g, &l1, gm_input(g, x, 32, 20, 0, 0)))),
                      gm_input(g, y, 32, 5, 0, 0));
        GM_CHECK(gm_backward(g, loss) == 0, "backward: %s", gm_last_error());
        gm_optim_step(&opt, &P);
        mem[step] = gm_graph_memory(g);
    }
    for (step = 3; step < 8; step++) GM_CHECK(mem[step] == mem[2], "memory grows: step %d %zu vs %zu", step, mem[step], mem[2]);
    GM_CHECK(gm_graph_peak(g) > 0 && gm_graph_peak(g) <= mem[7], "peak %zu, memory %zu", gm_graph_peak(g), mem[7]);
    GM_CHECK(gm_graph_flops(g) > 0, "flops counted");
    gm_optim_free(&opt);
    gm_params_free(&P);
    gm_graph_free(g);
}

/* ---------------------------------------------------------------------------------------------- */
/* Optimizers and schedules                                                                        */
/* ---------------------------------------------------------------------------------------------- */
#define NP 4
static const float w0[NP] = {0.5f, -1.0f, 2.0f, 0.1f};
/* gradient at step t (a fixed sequence, independent of the weights) */
static float grad_at(int t, int i) { return 0.3f * (float)(i + 1) * (t % 2 ? -1.0f : 1.0f) + 0.1f * (float)t - 0.2f; }

/* Runs 3 steps of opt on a fresh param vector; w gets the result. */
static void run_opt(gm_optim *o, float *w) {
    gm_params P;
    int v, s[1] = {NP}, t, i;
    memset(&P, 0, sizeof P);
    v = gm_params_add(&P, "w", 1, s);
    memcpy(gm_params_data(&P, v), w0, sizeof w0);
    for (t = 0; t < 3; t++) {
        for (i = 0; i < NP; i++) gm_params_grad(&P, v)[i] = grad_at(t, i);
        gm_optim_step(o, &P);
        for (i = 0; i < NP; i++) GM_CHECK(gm_params_grad(&P, v)[i] == 0, "step zeroes the gradient");
    }
    memcpy(w, gm_params_data(&P, v), sizeof w0);
    gm_params_free(&P);
}

GM_TEST(optimizers_match_pytorch) {
    double w[NP], m[NP], v[NP];
    float got[NP];
    int i, t, kind;
    for (kind = 0; kind < 6; kind++) {
        gm_optim o;
        const char *name;
        double lr = 0.1, mom = 0.9, alpha = 0.9, b1 = 0.9, b2 = 0.99, wd = 0.05, eps = 1e-8;
        switch (kind) {
        case 0: o = gm_sgd(0.1f, 0.0f); name = "sgd"; break;
        case 1: o = gm_sgd(0.1f, 0.9f); name = "sgd momentum"; break;
        case 2: o = gm_sgd(0.1f, 0.9f); o.weight_decay = 0.05f; name = "sgd momentum wd"; break;
        case 3: o = gm_rmsprop(0.1f, 0.9f); name = "rmsprop"; break;
        case 4: o = gm_adam(0.1f, 0.9f, 0.99f); name = "adam"; break;
        default: o = gm_adamw(0.1f, 0.9f, 0.99f, 0.05f); name = "adamw"; break;
        }
        for (i = 0; i < NP; i++) { w[i] = w0[i]; m[i] = 0; v[i] = 0; }
        for (t = 0; t < 3; t++)
            for (i = 0; i < NP; i++) {
                double gr = grad_at(t, i);
                switch (kind) {
                case 0: w[i] -= lr * gr; break;
                case 1: case 2:   /* torch.optim.SGD: g += wd w; buf = mom buf + g (buf = g at t=0); w -= lr buf */
                    if (kind == 2) gr += wd * w[i];
                    m[i] = t == 0 ? gr : mom * m[i] + gr;
                    w[i] -= lr * m[i];
                    break;
                case 3:           /* torch.optim.RMSprop: v = a v + (1-a) g^2; w -= lr g / (sqrt(v) + eps) */
                    v[i] = alpha * v[i] + (1 - alpha) * gr * gr;
                    w[i] -= lr * gr / (sqrt(v[i]) + eps);
                    break;
                default: {        /* torch.optim.Adam / AdamW */
                    double bc1 = 1 - pow(b1, t + 1), bc2 = 1 - pow(b2, t + 1);
                    if (kind == 5) w[i] *= 1 - lr * wd;
                    m[i] = b1 * m[i] + (1 - b1) * gr;
                    v[i] = b2 * v[i] + (1 - b2) * gr * gr;
                    w[i] -= (lr / bc1) * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
                    break;
                }
                }
            }
        run_opt(&o, got);
        for (i = 0; i < NP; i++) GM_CHECK(gm_test_close(got[i], w[i], 1e-5), "%s: w[%d] = %.8g, want %.8g", name, i, (double)got[i], w[i]);
        GM_CHECK(o.step == 3, "%s: step count %ld", name, o.step);
        gm_optim_free(&o);
    }
}

GM_TEST(clipping) {
    gm_params P;
    gm_optim o = gm_sgd(1.0f, 0.0f);
    int v, s[1] = {2};
    memset(&P, 0, sizeof P);
    v = gm_params_add(&P, "w", 1, s);
    gm_params_grad(&P, v)[0] = 3.0f;
    gm_params_grad(&P, v)[1] = 4.0f;      /* norm 5 */
    GM_CHECK_CLOSE(gm_grad_norm(&P), 5.0, 1e-7);
    o.clip_norm = 1.0f;
    gm_optim_step(&o, &P);
    GM_CHECK_CLOSE(gm_params_data(&P, v)[0], -0.6, 1e-6);
    GM_CHECK_CLOSE(gm_params_data(&P, v)[1], -0.8, 1e-6);
    /* below the threshold: unchanged gradient */
    gm_params_grad(&P, v)[0] = 0.3f;
    gm_params_grad(&P, v)[1] = 0.4f;
    gm_optim_step(&o, &P);
    GM_CHECK_CLOSE(gm_params_data(&P, v)[0], -0.9, 1e-6);
    GM_CHECK_CLOSE(gm_params_data(&P, v)[1], -1.2, 1e-6);
    /* clip_value clamps weights after the step */
    o.clip_norm = 0;
    o.clip_value = 0.01f;
    gm_params_grad(&P, v)[0] = -5.0f;     /* w0 -> 4.1 -> 0.01 */
    gm_params_grad(&P, v)[1] = 0.0f;      /* w1 = -1.2 -> -0.01 */
    gm_optim_step(&o, &P);
    GM_CHECK(gm_params_data(&P, v)[0] == 0.01f && gm_params_data(&P, v)[1] == -0.01f, "clip_value: %g %g",
             (double)gm_params_data(&P, v)[0], (double)gm_params_data(&P, v)[1]);
    gm_optim_free(&o);
    gm_params_free(&P);
}

GM_TEST(lr_schedules) {
    gm_optim o = gm_sgd(0.1f, 0.0f);
    long t;
    GM_CHECK_CLOSE(gm_optim_lr(&o), 0.1, 1e-7);
    o.sched.kind = GM_LR_STEP;
    o.sched.step_size = 10;
    o.sched.gamma = 0.5f;
    for (t = 0; t < 35; t++) {
        o.step = t;
        GM_CHECK_CLOSE(gm_optim_lr(&o), 0.1 * pow(0.5, (double)(t / 10)), 1e-6);
    }
    o.sched.kind = GM_LR_COSINE;
    o.sched.total = 100;
    o.sched.min_lr = 0.001f;
    for (t = 0; t <= 120; t += 5) {
        double tt = t < 100 ? (double)t : 100.0;
        o.step = t;
        GM_CHECK_CLOSE(gm_optim_lr(&o), 0.001 + (0.1 - 0.001) * 0.5 * (1 + cos(3.14159265358979 * tt / 100)), 1e-6);
    }
    o.step = 50;
    GM_CHECK_CLOSE(gm_optim_lr(&o), 0.001 + 0.099 * 0.5, 1e-6);
    /* warm-up: linear over the first 4 steps, then the schedule */
    o.sched.kind = GM_LR_CONSTANT;
    o.sched.warmup = 4;
    for (t = 0; t < 8; t++) {
        o.step = t;
        GM_CHECK_CLOSE(gm_optim_lr(&o), t < 4 ? 0.1 * (double)(t + 1) / 4.0 : 0.1, 1e-7);
    }
    /* the optimizer uses the scheduled rate: sgd with step decay, gradient 1 */
    {
        gm_params P;
        gm_optim s = gm_sgd(1.0f, 0.0f);
        int v, sh[1] = {1}, k;
        double want = 0;
        memset(&P, 0, sizeof P);
        v = gm_params_add(&P, "w", 1, sh);
        s.sched.kind = GM_LR_STEP;
        s.sched.step_size = 2;
        s.sched.gamma = 0.1f;
        for (k = 0; k < 5; k++) {
            gm_params_grad(&P, v)[0] = 1.0f;
            want -= pow(0.1, (double)(k / 2));
            gm_optim_step(&s, &P);
        }
        GM_CHECK_CLOSE(gm_params_data(&P, v)[0], want, 1e-6);
        gm_optim_free(&s);
        gm_params_free(&P);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Batch norm statistics, buffers, frozen params                                                   */
/* ---------------------------------------------------------------------------------------------- */
GM_TEST(batchnorm_running_stats) {
    gm_params P;
    gm_batchnorm bn, bn4;
    gm_graph *g = gm_graph_new(1);
    gm_rng r;
    float x[5 * 3], x4[2 * 2 * 3 * 3];
    double rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1};
    int step, c, i;
    memset(&P, 0, sizeof P);
    gm_rng_seed(&r, 31);
    gm_batchnorm_init(&bn, &P, "bn", 3);
    gm_batchnorm_init(&bn4, &P, "bn4", 2);
    GM_CHECK(gm_params_count(&P) == 3 * 2 + 2 * 2, "params count excludes buffers: %zu", gm_params_count(&P));
    for (step = 0; step < 3; step++) {
        gm_tensor *y;
        fill(&r, x, 15, -2, 3);
        gm_graph_reset(g);
        y = gm_batchnorm_forward(g, &bn, gm_input(g, x, 5, 3, 0, 0));
        for (c = 0; c < 3; c++) {
            double mean = 0, var = 0;
            for (i = 0; i < 5; i++) mean += x[i * 3 + c] / 5.0;
            for (i = 0; i < 5; i++) var += (x[i * 3 + c] - mean) * (x[i * 3 + c] - mean);
            for (i = 0; y && i < 5; i++) GM_CHECK_CLOSE(y->data[i * 3 + c], (x[i * 3 + c] - mean) / sqrt(var / 5 + 1e-5), 1e-5);
            rm[c] = 0.9 * rm[c] + 0.1 * mean;
            rv[c] = 0.9 * rv[c] + 0.1 * var / 4.0;   /* unbiased */
        }
    }
    for (c = 0; c < 3; c++) {
        GM_CHECK_CLOSE(gm_params_data(&P, bn.mean)[c], rm[c], 1e-5);
        GM_CHECK_CLOSE(gm_params_data(&P, bn.var)[c], rv[c], 1e-5);
    }
    /* eval mode: the running statistics, no update */
    gm_graph_reset(g);
    gm_graph_set_training(g, 0);
    gm_params_data(&P, bn.gamma)[1] = 2.0f;
    gm_params_data(&P, bn.beta)[2] = -0.5f;
    {
        gm_tensor *y = gm_batchnorm_forward(g, &bn, gm_input(g, x, 5, 3, 0, 0));
        for (i = 0; y && i < 15; i++) {
            c = i % 3;
            GM_CHECK_CLOSE(y->data[i], (x[i] - rm[c]) / sqrt(rv[c] + 1e-5) * (c == 1 ? 2.0 : 1.0) - (c == 2 ? 0.5 : 0), 1e-5);
        }
        for (c = 0; c < 3; c++) GM_CHECK_CLOSE(gm_params_data(&P, bn.mean)[c], rm[c], 1e-6);
    }
    /* 4-D: statistics over N, H, W; count 2*3*3 = 18 */
    gm_graph_set_training(g, 1);
    gm_graph_reset(g);
    fill(&r, x4, 36, -1, 2);
    gm_batchnorm_forward(g, &bn4, gm_input(g, x4, 2, 2, 3, 3));
    for (c = 0; c < 2; c++) {
        double mean = 0, var = 0;
        int n, k;
        for (n = 0; n < 2; n++)
            for (k = 0; k < 9; k++) mean += x4[(n * 2 + c) * 9 + k] / 18.0;
        for (n = 0; n < 2; n++)
            for (k = 0; k < 9; k++) var += pow(x4[(n * 2 + c) * 9 + k] - mean, 2);
        GM_CHECK_CLOSE(gm_params_data(&P, bn4.mean)[c], 0.1 * mean, 1e-6);
        GM_CHECK_CLOSE(gm_params_data(&P, bn4.var)[c], 0.9 + 0.1 * var / 17.0, 1e-6);
    }
    gm_params_free(&P);
    gm_graph_free(g);
}

GM_TEST(buffers_untouched_by_optimizer) {
    gm_params P;
    gm_batchnorm bn;
    gm_graph *g = gm_graph_new(1);
    float x[12], rm[3], rv[3];
    gm_rng r;
    int k;
    memset(&P, 0, sizeof P);
    gm_rng_seed(&r, 32);
    gm_batchnorm_init(&bn, &P, "bn", 3);
    fill(&r, x, 12, -1, 2);
    for (k = 0; k < 4; k++) {
        gm_optim o;
        gm_tensor *loss;
        switch (k) {
        case 0: o = gm_sgd(0.1f, 0.9f); o.weight_decay = 0.5f; break;
        case 1: o = gm_rmsprop(0.1f, 0.99f); o.weight_decay = 0.5f; break;
        case 2: o = gm_adam(0.1f, 0.9f, 0.999f); o.weight_decay = 0.5f; break;
        default: o = gm_adamw(0.1f, 0.9f, 0.999f, 0.5f); break;
        }
        gm_graph_reset(g);
        loss = gm_sum(g, gm_square(g, gm_batchnorm_forward(g, &bn, gm_input(g, x, 4, 3, 0, 0))));
        GM_CHECK(gm_backward(g, loss) == 0, "backward");
        memcpy(rm, gm_params_data(&P, bn.mean), sizeof rm);
        memcpy(rv, gm_params_data(&P, bn.var), sizeof rv);
        GM_CHECK(gm_params_grad(&P, bn.mean)[0] == 0 && gm_params_grad(&P, bn.var)[0] == 0, "no gradient into buffers");
        gm_optim_step(&o, &P);
        GM_CHECK(memcmp(rm, gm_params_data(&P, bn.mean), sizeof rm) == 0 &&
                     memcmp(rv, gm_params_data(&P, bn.var), sizeof rv) == 0, "optimizer %d changed the running stats", k);
        gm_optim_free(&o);
    }
    gm_params_free(&P);
    gm_graph_free(g);
}

GM_TEST(frozen_params) {
    gm_params A, B;
    gm_linear la, lb;
    gm_graph *g = gm_graph_new(1);
    gm_rng r;
    float x[8];
    size_t i;
    int nz = 0;
    gm_tensor *loss;
    memset(&A, 0, sizeof A);
    memset(&B, 0, sizeof B);
    gm_rng_seed(&r, 33);
    gm_linear_init(&la, &A, "a", 4, 3, GM_INIT_TORCH, &r);
    gm_linear_init(&lb, &B, "b", 3, 2, GM_INIT_TORCH, &r);
    fill(&r, x, 8, -1, 1);
    B.frozen = 1;
    loss = gm_sum(g, gm_square(g, gm_linear_forward(g, &lb, gm_tanh(g, gm_linear_forward(g, &la, gm_input(g, x, 2, 4, 0, 0))))));
    GM_CHECK(gm_backward(g, loss) == 0, "backward: %s", gm_last_error());
    for (i = 0; i < B.count; i++) GM_CHECK(B.grad[i] == 0, "frozen param got gradient %g", (double)B.grad[i]);
    for (i = 0; i < A.count; i++) nz += A.grad[i] != 0;
    GM_CHECK(nz > 0, "the trainable params before the frozen ones still get gradients");
    /* everything frozen: the loss does not need a gradient, backward is a no-op */
    A.frozen = 1;
    gm_params_zero_grad(&A);
    gm_graph_reset(g);
    loss = gm_sum(g, gm_linear_forward(g, &la, gm_input(g, x, 2, 4, 0, 0)));
    GM_CHECK(gm_backward(g, loss) == 0, "backward with all frozen");
    for (i = 0; i < A.count; i++) GM_CHECK(A.grad[i] == 0, "frozen A got gradient");
    gm_params_free(&A);
    gm_params_free(&B);
    gm_graph_free(g);
}

/* ---------------------------------------------------------------------------------------------- */
/* Learning and determinism                                                                        */
/* ---------------------------------------------------------------------------------------------- */
static void xor_run(float *losses, int steps) {
    static const float xs[8] = {0, 0, 0, 1, 1, 0, 1, 1}, ys[4] = {0, 1, 1, 0};
    gm_params P;
    gm_linear l1, l2;
    gm_rng r;
    gm_optim o = gm_adam(0.05f, 0.9f, 0.999f);
    gm_graph *g = gm_graph_new(7);
    int s;
    memset(&P, 0, sizeof P);
    gm_rng_seed(&r, 42);
    gm_linear_init(&l1, &P, "l1", 2, 8, GM_INIT_TORCH, &r);
    gm_linear_init(&l2, &P, "l2", 8, 1, GM_INIT_TORCH, &r);
    for (s = 0; s < steps; s++) {
        gm_tensor *loss;
        gm_graph_reset(g);
        loss = gm_bce_logits(g, gm_linear_forward(g, &l2, gm_tanh(g, gm_linear_forward(g, &l1, gm_input(g, xs, 4, 2, 0, 0)))),
                             gm_input(g, ys, 4, 1, 0, 0));
        losses[s] = loss ? loss->data[0] : NAN;
        if (gm_backward(g, loss) != 0) break;
        gm_optim_step(&o, &P);
    }
    gm_optim_free(&o);
    gm_params_free(&P);
    gm_graph_free(g);
}

GM_TEST(learns_xor_deterministically) {
    enum { STEPS = 2000 };
    float *a = (float *)malloc(STEPS * sizeof(float)), *b = (float *)malloc(STEPS * sizeof(float));
    int s, first = -1;
    xor_run(a, STEPS);
    xor_run(b, STEPS);
    for (s = 0; s < STEPS; s++)
        if (first < 0 && a[s] < 0.01f) first = s;
    GM_CHECK(first >= 0, "XOR loss %g after %d steps (want < 0.01)", (double)a[STEPS - 1], STEPS);
    GM_CHECK(a[STEPS - 1] < 0.01f, "final XOR loss %g", (double)a[STEPS - 1]);
    GM_CHECK(memcmp(a, b, STEPS * sizeof(float)) == 0, "two runs with the same seeds differ");
    free(a);
    free(b);
}

static void mlp_run(int threads, float *losses, int steps) {
    enum { N = 32, D = 64, HID = 128 };
    gm_params P;
    gm_linear l1, l2;
    gm_rng r;
    gm_optim o = gm_adam(1e-3f, 0.9f, 0.999f);
    gm_graph *g = gm_graph_new(9);
    float *x = (float *)malloc(N * D * sizeof(float)), *y = (float *)malloc(N * D * sizeof(float));
    int s;
    gm_set_threads(threads);
    memset(&P, 0, sizeof P);
    gm_rng_seed(&r, 77);
    gm_linear_init(&l1, &P, "l1", D, HID, GM_INIT_TORCH, &r);
    gm_linear_init(&l2, &P, "l2", HID, D, GM_INIT_TORCH, &r);
    fill(&r, x, N * D, -1, 1);
    fill(&r, y, N * D, -1, 1);
    for (s = 0; s < steps; s++) {
        gm_tensor *loss;
        gm_graph_reset(g);
        loss = gm_mse(g, gm_linear_forward(g, &l2, gm_elu(g, gm_linear_forward(g, &l1, gm_input(g, x, N, D, 0, 0)), 1.0f)),
                      gm_input(g, y, N, D, 0, 0));
        losses[s] = loss ? loss->data[0] : NAN;
        if (gm_backward(g, loss) != 0) break;
        gm_optim_step(&o, &P);
    }
    free(x);
    free(y);
    gm_optim_free(&o);
    gm_params_free(&P);
    gm_graph_free(g);
}

GM_TEST(deterministic_across_threads) {
    float a[20], b[20];
    int old = gm_get_threads();
    mlp_run(1, a, 20);
    mlp_run(2, b, 20);
    gm_set_threads(old);
    GM_CHECK(memcmp(a, b, sizeof a) == 0, "losses differ between 1 and 2 threads (first %g vs %g, last %g vs %g)",
             (double)a[0], (double)b[0], (double)a[19], (double)b[19]);
    GM_CHECK(a[19] < a[0], "the MLP learns: %g -> %g", (double)a[0], (double)a[19]);
}

/* ---------------------------------------------------------------------------------------------- */
/* Fused ops: against the same function composed of other ops, and bit-identical at 1 and 2 threads */
/* ---------------------------------------------------------------------------------------------- */
enum { FUSED_GROUPNORM, FUSED_SILU, FUSED_BMM, FUSED_GATE, FUSED_GN_SILU, FUSED_COUNT };
static const char *const fused_names[FUSED_COUNT] = {"group_norm", "silu", "bmm", "gate", "group_norm_act silu"};

/* Builds case `which` (fused, or composed of other ops) on inputs big enough to be split over
   threads, and returns the output followed by d sum(y * w) / d input for every input (malloc'd). */
static float *fused_eval(int which, int composed, int threads, int *count) {
    gm_graph *g = gm_graph_new(4);
    gm_rng r;
    gm_tensor *in[3] = {NULL, NULL, NULL}, *y = NULL, *loss;
    float *out = NULL;
    int nin = 0, k, total;
    gm_set_threads(threads);
    gm_rng_seed(&r, 11 + which);
    switch (which) {
    case FUSED_GN_SILU: {   /* against silu after the (already checked) group norm op */
        gm_tensor *x = rnd(g, &r, 4, 16, 24, 24), *gam = rnd(g, &r, 16, 0, 0, 0), *bet = rnd(g, &r, 16, 0, 0, 0);
        in[0] = gm_requires_grad(x); in[1] = gm_requires_grad(gam); in[2] = gm_requires_grad(bet); nin = 3;
        y = composed ? gm_silu(g, gm_group_norm(g, x, gam, bet, 4, 1e-5f)) : gm_group_norm_act(g, x, gam, bet, 4, 1e-5f, GM_ACT_SILU, 0);
        break;
    }
    case FUSED_GROUPNORM: {
        gm_tensor *x = rnd(g, &r, 4, 16, 24, 24), *gam = rnd(g, &r, 16, 0, 0, 0), *bet = rnd(g, &r, 16, 0, 0, 0);
        in[0] = gm_requires_grad(x); in[1] = gm_requires_grad(gam); in[2] = gm_requires_grad(bet); nin = 3;
        if (!composed) { y = gm_group_norm(g, x, gam, bet, 4, 1e-5f); break; }
        {
            gm_tensor *f = gm_reshape(g, x, 16, 4 * 576, 0, 0), *xc, *var;
            xc = gm_sub(g, f, gm_mean_axes(g, f, GM_AXIS(1)));
            var = gm_mean_axes(g, gm_square(g, xc), GM_AXIS(1));
            y = gm_reshape(g, gm_mul(g, xc, gm_pow(g, gm_affine(g, var, 1.0f, 1e-5f), -0.5f)), 4, 16, 576, 0);
            y = gm_add(g, gm_mul(g, y, gm_reshape(g, gam, 16, 1, 0, 0)), gm_reshape(g, bet, 16, 1, 0, 0));
            y = gm_reshape(g, y, 4, 16, 24, 24);
        }
        break;
    }
    case FUSED_SILU: {   /* odd size: the vector tails too */
        gm_tensor *x = rnd(g, &r, 5, 9, 29, 31);
        for (k = 0; k < x->size; k++) x->data[k] *= 5.0f;
        in[0] = gm_requires_grad(x); nin = 1;
        y = composed ? gm_mul(g, x, gm_sigmoid(g, x)) : gm_silu(g, x);
        break;
    }
    case FUSED_BMM: {   /* (6,37,20)^T (6,37,45) against a matmul per entry, concatenated */
        gm_tensor *a = rnd(g, &r, 6, 37, 20, 0), *b = rnd(g, &r, 6, 37, 45, 0);
        in[0] = gm_requires_grad(a); in[1] = gm_requires_grad(b); nin = 2;
        if (!composed) { y = gm_bmm(g, a, b, 1, 0); break; }
        for (k = 0; k < 6; k++) {
            gm_tensor *yk = gm_matmul(g, gm_reshape(g, gm_slice(g, a, 0, k, 1), 37, 20, 0, 0),
                                      gm_reshape(g, gm_slice(g, b, 0, k, 1), 37, 45, 0, 0), 1, 0);
            yk = gm_reshape(g, yk, 1, 20, 45, 0);
            y = k ? gm_concat(g, y, yk, 0) : yk;
        }
        break;
    }
    case FUSED_GATE: {   /* rows of 9 * 31 * 37 floats: segments across block edges */
        gm_tensor *x = rnd(g, &r, 4, 18, 31, 37);
        for (k = 0; k < x->size; k++) x->data[k] *= 3.0f;
        in[0] = gm_requires_grad(x); nin = 1;
        y = composed ? gm_mul(g, gm_tanh(g, gm_slice(g, x, 1, 0, 9)), gm_sigmoid(g, gm_slice(g, x, 1, 9, 9))) : gm_gate(g, x);
        break;
    }
    default: break;
    }
    loss = y ? gm_sum(g, gm_mul(g, y, rnd(g, &r, y->shape[0], y->shape[1], y->ndim > 2 ? y->shape[2] : 0,
                                            y->ndim > 3 ? y->shape[3] : 0))) : NULL;
    if (loss) {
        total = y->size;
        for (k = 0; k < nin; k++) total += in[k]->size;
        out = (float *)malloc((size_t)total * sizeof(float));
        memcpy(out, y->data, (size_t)y->size * sizeof(float));
        *count = y->size;
        for (k = 0; k < nin; k++) {
            gm_tensor *d = gm_grad(g, loss, in[k], 0);
            if (!d) { free(out); out = NULL; break; }
            memcpy(out + *count, d->data, (size_t)d->size * sizeof(float));
            *count += d->size;
        }
    }
    gm_graph_free(g);
    return out;
}

GM_TEST(fused_ops_vs_composed) {
    int which, old = gm_get_threads();
    for (which = 0; which < FUSED_COUNT; which++) {
        int n1 = 0, n2 = 0, nc = 0, i, bad = 0;
        float *a = fused_eval(which, 0, 1, &n1), *b = fused_eval(which, 0, 2, &n2), *c = fused_eval(which, 1, 1, &nc);
        GM_CHECK(a && b && c && n1 == n2 && n1 == nc, "%s: evaluation failed: %s", fused_names[which], gm_last_error());
        if (a && b && c && n1 == n2 && n1 == nc) {
            GM_CHECK(memcmp(a, b, (size_t)n1 * sizeof(float)) == 0, "%s: 1 and 2 threads differ", fused_names[which]);
            for (i = 0; i < n1 && bad < 3; i++)
                if (!gm_test_close(a[i], c[i], 1e-4)) {
                    GM_CHECK(0, "%s: value %d: fused %.9g vs composed %.9g", fused_names[which], i, (double)a[i], (double)c[i]);
                    bad++;
                }
        }
        free(a); free(b); free(c);
    }
    gm_set_threads(old);
}

/* Every op records its own kind, whose descriptor (gm__op_table) names it and holds its backward
   rule; the ops that only backward rules make (sum_to, pad, scatter, the conv family's adjoints)
   are reached through gm_grad. */
GM_TEST(op_descriptors) {
    gm_graph *g = gm_graph_new(1);
    gm_rng r;
    const int labels[4] = {1, 0, 3, 2};
    struct { const gm_tensor *t; const char *name; } want[56];
    gm_tensor *x, *w, *wt, *m, *v, *c2;
    int n = 0, i, j, named = 0;
    gm_rng_seed(&r, 3);
    x = gm_requires_grad(rnd(g, &r, 2, 2, 4, 4));
    w = gm_requires_grad(rnd(g, &r, 3, 2, 3, 3));
    wt = gm_requires_grad(rnd(g, &r, 2, 3, 3, 3));
    m = gm_requires_grad(rnd(g, &r, 4, 4, 0, 0));
    v = gm_requires_grad(rnd(g, &r, 4, 0, 0, 0));
    c2 = gm_requires_grad(rnd(g, &r, 2, 0, 0, 0));
#define WANT(expr, nm) (want[n].t = (expr), want[n].name = (nm), n++)
    WANT(x, "leaf");
    WANT(gm_add(g, m, v), "add"); WANT(gm_sub(g, m, v), "sub"); WANT(gm_mul(g, m, v), "mul"); WANT(gm_div(g, m, v), "div");
    WANT(gm_affine(g, m, 2, 1), "affine"); WANT(gm_exp(g, m), "exp"); WANT(gm_log(g, m), "log"); WANT(gm_sqrt(g, m), "sqrt");
    WANT(gm_square(g, m), "square"); WANT(gm_abs(g, m), "abs"); WANT(gm_pow(g, m, 2), "pow"); WANT(gm_clamp(g, m, 0, 1), "clamp");
    WANT(gm_relu(g, m), "relu"); WANT(gm_leaky_relu(g, m, 0.1f), "leaky_relu"); WANT(gm_elu(g, m, 1), "elu");
    WANT(gm_tanh(g, m), "tanh"); WANT(gm_sigmoid(g, m), "sigmoid"); WANT(gm_softplus(g, m), "softplus");
    WANT(gm_log_sigmoid(g, m), "log_sigmoid"); WANT(gm_silu(g, m), "silu"); WANT(gm_softmax(g, m), "softmax"); WANT(gm_log_softmax(g, m), "log_softmax");
    WANT(gm_sum_axes(g, m, GM_AXIS(0)), "sum_to"); WANT(gm_expand(g, v, 3, 4, 0, 0), "expand");
    WANT(gm_reshape(g, m, 2, 8, 0, 0), "reshape"); WANT(gm_transpose(g, m), "permute"); WANT(gm_concat(g, m, m, 1), "concat");
    WANT(gm_slice(g, m, 1, 1, 2), "slice"); WANT(gm_gather(g, m, labels), "gather"); WANT(gm_matmul(g, m, m, 0, 1), "matmul");
    WANT(gm_conv2d(g, x, w, 1, 1), "conv"); WANT(gm_conv_transpose2d(g, x, wt, 1, 1, 0), "conv_transpose");
    WANT(gm_upsample_nearest(g, x, 2), "upsample"); WANT(gm_avg_pool(g, x, 2), "avg_pool");
    WANT(gm_grad(g, gm_sum(g, gm_slice(g, m, 1, 1, 2)), m, 1), "pad");
    WANT(gm_grad(g, gm_sum(g, gm_gather(g, m, labels)), m, 1), "scatter");
    WANT(gm_grad(g, gm_sum(g, gm_conv2d(g, x, w, 1, 1)), w, 1), "conv_wgrad");
    WANT(gm_grad(g, gm_sum(g, gm_silu(g, m)), m, 1), "silu_grad");
    WANT(gm_gate(g, x), "gate"); WANT(gm_grad(g, gm_sum(g, gm_gate(g, x)), x, 1), "gate_grad");
    WANT(gm_bmm(g, gm_reshape(g, m, 2, 2, 4, 0), gm_reshape(g, m, 2, 2, 4, 0), 0, 1), "bmm");
    WANT(gm_group_norm(g, x, NULL, NULL, 2, 1e-5f), "group_norm");
    WANT(gm_grad(g, gm_sum(g, gm_group_norm(g, x, NULL, NULL, 2, 1e-5f)), x, 1), "group_norm_grad");
    WANT(gm_grad(g, gm_sum(g, gm_group_norm(g, x, c2, NULL, 2, 1e-5f)), c2, 1), "group_norm_dparam");
#undef WANT
    for (i = 0; i < n; i++) {
        const gm_tensor *t = want[i].t;
        GM_CHECK(t && t->op >= 0 && t->op < GM__OP_COUNT, "%s: no op recorded", want[i].name);
        if (!t || t->op < 0 || t->op >= GM__OP_COUNT) continue;
        GM_CHECK(strcmp(gm__op_table[t->op].name, want[i].name) == 0, "recorded '%s', expected '%s'",
                 gm__op_table[t->op].name, want[i].name);
        GM_CHECK(gm__op_table[t->op].backward != NULL, "%s has no backward rule", want[i].name);
    }
    for (i = 0; i < GM__OP_COUNT; i++) {
        for (j = 0; j < n; j++) named += strcmp(gm__op_table[i].name, want[j].name) == 0;
        for (j = 0; j < i; j++)
            GM_CHECK(strcmp(gm__op_table[i].name, gm__op_table[j].name) != 0, "two ops named %s", gm__op_table[i].name);
    }
    GM_CHECK(named == GM__OP_COUNT && n == GM__OP_COUNT, "%d ops in the table, %d reached here", GM__OP_COUNT, n);
    gm_graph_free(g);
}

int main(void) {
    GM_RUN(broadcast_add_values);
    GM_RUN(unary_values);
    GM_RUN(softplus_stable);
    GM_RUN(matmul_vs_naive);
    GM_RUN(softmax_values);
    GM_RUN(conv2d_vs_naive);
    GM_RUN(conv2d_ex_vs_naive);
    GM_RUN(conv_transpose2d_adjoint);
    GM_RUN(conv_input_grad_vs_naive);
    GM_RUN(pool_upsample_values);
    GM_RUN(gather_one_hot);
    GM_RUN(slice_concat_roundtrip);
    GM_RUN(permute_vs_naive);
    GM_RUN(reductions_values);
    GM_RUN(losses_values);
    GM_RUN(dropout_behaviour);
    GM_RUN(shape_errors);
    GM_RUN(null_propagation);
    GM_RUN(backward_errors);
    GM_RUN(grad_independent_after_grad);
    GM_RUN(param_sharing_and_two_backwards);
    GM_RUN(arena_steady_state);
    GM_RUN(optimizers_match_pytorch);
    GM_RUN(clipping);
    GM_RUN(lr_schedules);
    GM_RUN(batchnorm_running_stats);
    GM_RUN(buffers_untouched_by_optimizer);
    GM_RUN(frozen_params);
    GM_RUN(learns_xor_deterministically);
    GM_RUN(deterministic_across_threads);
    GM_RUN(fused_ops_vs_composed);
    GM_RUN(op_descriptors);
    return gm_test_summary();
}
