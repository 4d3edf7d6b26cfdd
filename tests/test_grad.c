/* test_grad.c: every differentiable op of genmod, first and second order, checked against central
 * finite differences with gm_gradcheck.
 *
 *   step        H   = 1e-2 (central differences on float32 forward passes)
 *   tolerance   TOL = 1e-2, i.e. max|analytic - numeric| <= 1e-2 * max(1e-3, max|numeric|)
 *
 * Non-scalar outputs are reduced with sum(out * fixed random weights) so every element matters.
 * Inputs are kept at least 0.05 away from kinks (relu/abs/leaky at 0, clamp at lo/hi).
 * The tolerance is never widened to make something pass: a failure means a bug. */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#include "gm_test.h"
#include <stdlib.h>
#include <string.h>

#define H 1e-2f
#define TOL 1e-2

/* ---------------------------------------------------------------------------------------------- */
/* Helpers                                                                                        */
/* ---------------------------------------------------------------------------------------------- */
/* Fixed pseudo-random weights in [-1, 1) of t's shape; depend only on (shape, salt). */
static gm_tensor *wts(gm_graph *g, const gm_tensor *t, unsigned salt) {
    gm_tensor *w;
    gm_rng r;
    int i;
    if (!t) return NULL;
    w = gm_zeros(g, t->shape[0], t->ndim > 1 ? t->shape[1] : 0, t->ndim > 2 ? t->shape[2] : 0,
                 t->ndim > 3 ? t->shape[3] : 0);
    if (!w) return NULL;
    gm_rng_seed(&r, 7919u * salt + (unsigned)t->size);
    for (i = 0; i < w->size; i++) w->data[i] = 2.0f * gm_rng_uniform(&r) - 1.0f;
    return w;
}

/* sum(t * fixed weights): a scalar in which every element of t matters. */
static gm_tensor *wsum(gm_graph *g, gm_tensor *t, unsigned salt) { return gm_sum(g, gm_mul(g, t, wts(g, t, salt))); }

/* Gradcheck inputs: buffers of random values with their shapes. */
typedef struct gc_in {
    int n;
    float *v[16];
    int shp[16][4];
} gc_in;

static gm_rng gc_rng;

static int gc_size(const int *s) {
    int k, n = 1;
    for (k = 0; k < 4 && s[k]; k++) n *= s[k];
    return n;
}

/* Adds an input of shape (d0..d3) with values uniform in [lo, hi); returns its buffer. */
static float *gc_add(gc_in *c, int d0, int d1, int d2, int d3, float lo, float hi) {
    int i, n;
    float *v;
    c->shp[c->n][0] = d0; c->shp[c->n][1] = d1; c->shp[c->n][2] = d2; c->shp[c->n][3] = d3;
    n = gc_size(c->shp[c->n]);
    v = (float *)malloc((size_t)n * sizeof(float));
    for (i = 0; i < n; i++) v[i] = lo + (hi - lo) * gm_rng_uniform(&gc_rng);
    c->v[c->n++] = v;
    return v;
}

/* Moves every value of the last input that is within 0.06 of `kink` to at least 0.06 away. */
static void gc_avoid(gc_in *c, float kink) {
    int i, n = gc_size(c->shp[c->n - 1]);
    float *v = c->v[c->n - 1];
    for (i = 0; i < n; i++) {
        float d = v[i] - kink;
        if (fabsf(d) < 0.06f) v[i] = kink + (d >= 0 ? 0.06f + fabsf(d) : -0.06f - fabsf(d));
    }
}

/* Runs gm_gradcheck over the inputs and frees them. */
static double gc_run(gc_in *c, gm_fn fn, void *ctx) {
    int i;
    double e = gm_gradcheck(fn, ctx, c->n, c->v, (const int (*)[4])c->shp, H);
    if (e < 0) printf("  gradcheck error: %s\n", gm_last_error());
    for (i = 0; i < c->n; i++) free(c->v[i]);
    c->n = 0;
    return e;
}

#define GC_OK(c, fn, ctx, what)                                                                  \
    do {                                                                                         \
        double e_ = gc_run((c), (fn), (ctx));                                                    \
        GM_CHECK(e_ >= 0 && e_ < TOL, "%s: gradcheck relative error %g (tol %g)", (what), e_, TOL); \
    } while (0)

/* ---------------------------------------------------------------------------------------------- */
/* The gradcheck itself can fail                                                                   */
/* ---------------------------------------------------------------------------------------------- */
static gm_tensor *f_wrong(gm_graph *g, gm_tensor **in, void *ctx) {
    (void)ctx; /* x * detach(x): the analytic gradient misses half of 2x */
    return wsum(g, gm_mul(g, in[0], gm_detach(g, in[0])), 1);
}
static gm_tensor *f_right(gm_graph *g, gm_tensor **in, void *ctx) {
    (void)ctx;
    return wsum(g, gm_mul(g, in[0], in[0]), 1);
}
static gm_tensor *f_not_scalar(gm_graph *g, gm_tensor **in, void *ctx) {
    (void)ctx;
    return gm_exp(g, in[0]);
}

GM_TEST(gradcheck_detects_wrong_gradient) {
    gc_in c;
    double e;
    c.n = 0;
    gc_add(&c, 3, 4, 0, 0, 0.5f, 1.5f);
    e = gc_run(&c, f_wrong, NULL);
    GM_CHECK(e > 0.3, "detached path: error %g should be large (~0.5)", e);
    gc_add(&c, 3, 4, 0, 0, 0.5f, 1.5f);
    e = gc_run(&c, f_right, NULL);
    GM_CHECK(e >= 0 && e < TOL, "x*x: error %g", e);
    gc_add(&c, 3, 0, 0, 0, 0.5f, 1.5f);
    e = gm_gradcheck(f_not_scalar, NULL, c.n, c.v, (const int (*)[4])c.shp, H);
    GM_CHECK(e == -1.0, "non-scalar fn must give -1, got %g", e);
    free(c.v[0]);
    { /* and gm_grad itself on a known case: d/dx sum(x^3) = 3x^2 */
        static const float xv[3] = {-1.5f, 0.5f, 2.0f};
        gm_graph *g = gm_graph_new(1);
        gm_tensor *x = gm_requires_grad(gm_input(g, xv, 3, 0, 0, 0));
        gm_tensor *d = gm_grad(g, gm_pow(g, x, 3.0f), x, 0);
        int i;
        GM_CHECK(d != NULL, "gm_grad: %s", gm_last_error());
        for (i = 0; d && i < 3; i++) GM_CHECK_CLOSE(d->data[i], 3.0f * xv[i] * xv[i], 1e-6);
        gm_graph_free(g);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Unary ops and activations                                                                       */
/* ---------------------------------------------------------------------------------------------- */
enum {
    U_AFFINE, U_SCALE, U_NEG, U_EXP, U_LOG, U_SQRT, U_SQUARE, U_ABS, U_POW, U_CLAMP, U_RELU, U_LEAKY, U_ELU,
    U_TANH, U_SIGMOID, U_SOFTPLUS, U_LOG_SIGMOID, U_SILU, U_SOFTMAX, U_LOG_SOFTMAX
};
typedef struct unary_case {
    const char *name;
    int op;
    float a, b;        /* op parameters */
    float lo, hi;      /* input range */
    int nkinks;
    float k0, k1;      /* kinks to stay away from */
} unary_case;

static const unary_case unary_cases[] = {
    {"affine", U_AFFINE, 1.7f, -0.3f, -2, 2, 0, 0, 0},
    {"scale", U_SCALE, -2.5f, 0, -2, 2, 0, 0, 0},
    {"neg", U_NEG, 0, 0, -2, 2, 0, 0, 0},
    {"exp", U_EXP, 0, 0, -2, 1.5f, 0, 0, 0},
    {"log", U_LOG, 0, 0, 0.3f, 3, 0, 0, 0},
    {"sqrt", U_SQRT, 0, 0, 0.3f, 3, 0, 0, 0},
    {"square", U_SQUARE, 0, 0, -2, 2, 0, 0, 0},
    {"abs", U_ABS, 0, 0, -2, 2, 1, 0, 0},
    {"pow 1.7 (x>0)", U_POW, 1.7f, 0, 0.3f, 2, 0, 0, 0},
    {"pow -0.5 (x>0)", U_POW, -0.5f, 0, 0.3f, 2, 0, 0, 0},
    {"pow 3 (any sign)", U_POW, 3.0f, 0, -1.5f, 1.5f, 0, 0, 0},
    {"pow 2 (any sign)", U_POW, 2.0f, 0, -1.5f, 1.5f, 0, 0, 0},
    {"pow -2 (any sign)", U_POW, -2.0f, 0, 0.4f, 1.5f, 0, 0, 0},  /* sign flipped below */
    {"clamp", U_CLAMP, -0.5f, 0.7f, -1.5f, 1.5f, 2, -0.5f, 0.7f},
    {"relu", U_RELU, 0, 0, -2, 2, 1, 0, 0},
    {"leaky_relu", U_LEAKY, 0.2f, 0, -2, 2, 1, 0, 0},
    {"elu", U_ELU, 1.3f, 0, -2, 2, 1, 0, 0},
    {"tanh", U_TANH, 0, 0, -2, 2, 0, 0, 0},
    {"sigmoid", U_SIGMOID, 0, 0, -3, 3, 0, 0, 0},
    {"softplus", U_SOFTPLUS, 0, 0, -3, 3, 0, 0, 0},
    {"log_sigmoid", U_LOG_SIGMOID, 0, 0, -3, 3, 0, 0, 0},
    {"silu", U_SILU, 0, 0, -4, 4, 0, 0, 0},
    {"softmax", U_SOFTMAX, 0, 0, -2, 2, 0, 0, 0},
    {"log_softmax", U_LOG_SOFTMAX, 0, 0, -2, 2, 0, 0, 0},
};
#define N_UNARY ((int)(sizeof unary_cases / sizeof unary_cases[0]))

static gm_tensor *apply_unary(gm_graph *g, const unary_case *u, gm_tensor *x) {
    switch (u->op) {
    case U_AFFINE: return gm_affine(g, x, u->a, u->b);
    case U_SCALE: return gm_scale(g, x, u->a);
    case U_NEG: return gm_neg(g, x);
    case U_EXP: return gm_exp(g, x);
    case U_LOG: return gm_log(g, x);
    case U_SQRT: return gm_sqrt(g, x);
    case U_SQUARE: return gm_square(g, x);
    case U_ABS: return gm_abs(g, x);
    case U_POW: return gm_pow(g, x, u->a);
    case U_CLAMP: return gm_clamp(g, x, u->a, u->b);
    case U_RELU: return gm_relu(g, x);
    case U_LEAKY: return gm_leaky_relu(g, x, u->a);
    case U_ELU: return gm_elu(g, x, u->a);
    case U_TANH: return gm_tanh(g, x);
    case U_SIGMOID: return gm_sigmoid(g, x);
    case U_SOFTPLUS: return gm_softplus(g, x);
    case U_LOG_SIGMOID: return gm_log_sigmoid(g, x);
    case U_SILU: return gm_silu(g, x);
    case U_SOFTMAX: return gm_softmax(g, x);
    default: return gm_log_softmax(g, x);
    }
}

static void unary_inputs(gc_in *c, const unary_case *u, int d0, int d1, int d2) {
    float *v = gc_add(c, d0, d1, d2, 0, u->lo, u->hi);
    if (u->nkinks > 0) gc_avoid(c, u->k0);
    if (u->nkinks > 1) gc_avoid(c, u->k1);
    if (u->op == U_POW && u->a == -2.0f) { /* integer power of negative inputs too */
        int i, n = gc_size(c->shp[c->n - 1]);
        for (i = 0; i < n; i += 2) v[i] = -v[i];
    }
}

static gm_tensor *f_unary(gm_graph *g, gm_tensor **in, void *ctx) {
    return wsum(g, apply_unary(g, (const unary_case *)ctx, in[0]), 1);
}

GM_TEST(grad_unary_ops) {
    gc_in c;
    int i;
    c.n = 0;
    for (i = 0; i < N_UNARY; i++) {
        unary_inputs(&c, &unary_cases[i], 3, 5, 0);
        GC_OK(&c, f_unary, (void *)&unary_cases[i], unary_cases[i].name);
        unary_inputs(&c, &unary_cases[i], 2, 3, 4);   /* 3-D (softmax over the last axis) */
        GC_OK(&c, f_unary, (void *)&unary_cases[i], unary_cases[i].name);
    }
}

/* Second order: d/dx sum(w2 * grad(sum(w1 * f(x)), x)). */
static gm_tensor *f_unary2(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = wsum(g, apply_unary(g, (const unary_case *)ctx, in[0]), 1);
    return wsum(g, gm_grad(g, y, in[0], 1), 2);
}

GM_TEST(grad2_unary_ops) {
    gc_in c;
    int i;
    c.n = 0;
    for (i = 0; i < N_UNARY; i++) {
        unary_inputs(&c, &unary_cases[i], 3, 5, 0);
        GC_OK(&c, f_unary2, (void *)&unary_cases[i], unary_cases[i].name);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Fused ops and their fused gradient ops                                                          */
/* ---------------------------------------------------------------------------------------------- */
/* silu inside tanh, so the upstream gradient of silu depends on x as well: the second order runs
   both halves of the rule of silu's fused gradient op (d/ddy and d/dx). */
static gm_tensor *f_silu_chain(gm_graph *g, gm_tensor **in, void *ctx) {
    (void)ctx;
    return wsum(g, gm_tanh(g, gm_silu(g, in[0])), 1);
}
static gm_tensor *f_silu_chain2(gm_graph *g, gm_tensor **in, void *ctx) {
    return wsum(g, gm_grad(g, f_silu_chain(g, in, ctx), in[0], 1), 2);
}

/* The gated unit inside tanh: its fused gradient op's rule in both inputs at second order. */
static gm_tensor *f_gate_chain(gm_graph *g, gm_tensor **in, void *ctx) {
    (void)ctx;
    return wsum(g, gm_tanh(g, gm_gate(g, in[0])), 1);
}
static gm_tensor *f_gate_chain2(gm_graph *g, gm_tensor **in, void *ctx) {
    return wsum(g, gm_grad(g, f_gate_chain(g, in, ctx), in[0], 1), 2);
}

GM_TEST(grad_fused_ops) {
    static const int gate_shapes[3][4] = {{2, 6, 3, 2}, {3, 4, 0, 0}, {2, 2, 5, 0}};
    gc_in c;
    int k, pass;
    c.n = 0;
    for (k = 0; k < 3; k++)
        for (pass = 0; pass < 2; pass++) {
            char what[64];
            gc_add(&c, gate_shapes[k][0], gate_shapes[k][1], gate_shapes[k][2], gate_shapes[k][3], -2, 2);
            snprintf(what, sizeof what, "tanh(gate(x)) shape %d, %s order", k, pass ? "second" : "first");
            GC_OK(&c, pass ? f_gate_chain2 : f_gate_chain, NULL, what);
        }
    gc_add(&c, 3, 5, 0, 0, -4, 4);
    GC_OK(&c, f_silu_chain, NULL, "tanh(silu(x))");
    gc_add(&c, 3, 5, 0, 0, -4, 4);
    GC_OK(&c, f_silu_chain2, NULL, "tanh(silu(x)), second order");
}

/* ---------------------------------------------------------------------------------------------- */
/* Binary ops with broadcasting                                                                    */
/* ---------------------------------------------------------------------------------------------- */
typedef struct bin_case { const char *name; int op; int a[4], b[4]; } bin_case;
static const bin_case bin_cases[] = {
    {"add same", 0, {3, 4, 0, 0}, {3, 4, 0, 0}},
    {"add (3,4)+(4)", 0, {3, 4, 0, 0}, {4, 0, 0, 0}},
    {"add (4)+(3,4)", 0, {4, 0, 0, 0}, {3, 4, 0, 0}},
    {"add (1)+(2,3)", 0, {1, 0, 0, 0}, {2, 3, 0, 0}},
    {"sub (3,1)-(1,4)", 1, {3, 1, 0, 0}, {1, 4, 0, 0}},
    {"sub (2,3,4)-(3,4)", 1, {2, 3, 4, 0}, {3, 4, 0, 0}},
    {"mul same", 2, {2, 5, 0, 0}, {2, 5, 0, 0}},
    {"mul (2,3,4)*(3,1)", 2, {2, 3, 4, 0}, {3, 1, 0, 0}},
    {"mul (2,1,3,1)*(1,4,1,5)", 2, {2, 1, 3, 1}, {1, 4, 1, 5}},
    {"div same", 3, {3, 4, 0, 0}, {3, 4, 0, 0}},
    {"div (2,1,3,1)/(1,4,1,5)", 3, {2, 1, 3, 1}, {1, 4, 1, 5}},
    {"div (4)/(3,4)", 3, {4, 0, 0, 0}, {3, 4, 0, 0}},
    {"div (2,3,4)/(2,1,4)", 3, {2, 3, 4, 0}, {2, 1, 4, 0}},
};

static gm_tensor *f_binary(gm_graph *g, gm_tensor **in, void *ctx) {
    const bin_case *b = (const bin_case *)ctx;
    gm_tensor *y;
    switch (b->op) {
    case 0: y = gm_add(g, in[0], in[1]); break;
    case 1: y = gm_sub(g, in[0], in[1]); break;
    case 2: y = gm_mul(g, in[0], in[1]); break;
    default: y = gm_div(g, in[0], in[1]); break;
    }
    return wsum(g, y, 1);
}

/* Second order: d/d(a,b) of sum(w2 * (grad_a + grad_b)) where grad_* = grad(sum(w1 * op(a,b)) ...). */
static gm_tensor *f_binary2(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = f_binary(g, in, ctx);
    return gm_add(g, wsum(g, gm_grad(g, y, in[0], 1), 2), wsum(g, gm_grad(g, y, in[1], 1), 3));
}

GM_TEST(grad_binary_broadcast) {
    gc_in c;
    int i, n = (int)(sizeof bin_cases / sizeof bin_cases[0]);
    c.n = 0;
    for (i = 0; i < n; i++) {
        const bin_case *b = &bin_cases[i];
        gc_add(&c, b->a[0], b->a[1], b->a[2], b->a[3], -2, 2);
        if (b->op == 3) gc_add(&c, b->b[0], b->b[1], b->b[2], b->b[3], 0.5f, 2);
        else gc_add(&c, b->b[0], b->b[1], b->b[2], b->b[3], -2, 2);
        GC_OK(&c, f_binary, (void *)b, b->name);
        gc_add(&c, b->a[0], b->a[1], b->a[2], b->a[3], -2, 2);
        if (b->op == 3) gc_add(&c, b->b[0], b->b[1], b->b[2], b->b[3], 0.5f, 2);
        else gc_add(&c, b->b[0], b->b[1], b->b[2], b->b[3], -2, 2);
        GC_OK(&c, f_binary2, (void *)b, b->name);
    }
}

static gm_tensor *f_same_input(gm_graph *g, gm_tensor **in, void *ctx) {
    (void)ctx; /* one input used by several ops: gradients must add up */
    gm_tensor *x = in[0];
    return wsum(g, gm_add(g, gm_mul(g, x, x), gm_div(g, gm_exp(g, x), gm_affine(g, x, 1.0f, 3.0f))), 1);
}

GM_TEST(grad_shared_input) {
    gc_in c;
    c.n = 0;
    gc_add(&c, 3, 4, 0, 0, -1, 1);
    GC_OK(&c, f_same_input, NULL, "x*x + e^x/(x+3)");
}

/* bias_add: 2-D and 4-D */
static gm_tensor *f_bias(gm_graph *g, gm_tensor **in, void *ctx) {
    (void)ctx;
    return wsum(g, gm_bias_add(g, in[0], in[1]), 1);
}

GM_TEST(grad_bias_add) {
    gc_in c;
    c.n = 0;
    gc_add(&c, 3, 4, 0, 0, -1, 1);
    gc_add(&c, 4, 0, 0, 0, -1, 1);
    GC_OK(&c, f_bias, NULL, "bias_add 2-D");
    gc_add(&c, 2, 3, 4, 5, -1, 1);
    gc_add(&c, 3, 0, 0, 0, -1, 1);
    GC_OK(&c, f_bias, NULL, "bias_add 4-D");
}

/* ---------------------------------------------------------------------------------------------- */
/* Reductions and shapes                                                                           */
/* ---------------------------------------------------------------------------------------------- */
typedef struct shape_case { const char *name; int op; int x[4]; int a[4]; } shape_case;
enum { S_SUM, S_MEAN, S_SUM_AXES, S_MEAN_AXES, S_SUM_ROWS, S_EXPAND, S_RESHAPE, S_FLATTEN, S_PERMUTE,
       S_TRANSPOSE, S_CONCAT, S_SLICE, S_GATHER, S_UPSAMPLE, S_AVGPOOL, S_DROPOUT };
static const int gather_labels[6] = {2, 0, 4, 1, 4, 3};

static const shape_case shape_cases[] = {
    {"sum", S_SUM, {2, 3, 4, 0}, {0, 0, 0, 0}},
    {"mean", S_MEAN, {2, 3, 4, 5}, {0, 0, 0, 0}},
    {"sum_axes 0", S_SUM_AXES, {2, 3, 4, 5}, {GM_AXIS(0), 0, 0, 0}},
    {"sum_axes 1|3", S_SUM_AXES, {2, 3, 4, 5}, {GM_AXIS(1) | GM_AXIS(3), 0, 0, 0}},
    {"sum_axes 0|2", S_SUM_AXES, {2, 3, 4, 5}, {GM_AXIS(0) | GM_AXIS(2), 0, 0, 0}},
    {"sum_axes all", S_SUM_AXES, {2, 3, 4, 5}, {15, 0, 0, 0}},
    {"sum_axes 3-D 1", S_SUM_AXES, {2, 3, 4, 0}, {GM_AXIS(1), 0, 0, 0}},
    {"sum_axes 2-D 1", S_SUM_AXES, {3, 4, 0, 0}, {GM_AXIS(1), 0, 0, 0}},
    {"mean_axes 0", S_MEAN_AXES, {2, 3, 4, 5}, {GM_AXIS(0), 0, 0, 0}},
    {"mean_axes 0|2|3", S_MEAN_AXES, {2, 3, 4, 5}, {GM_AXIS(0) | GM_AXIS(2) | GM_AXIS(3), 0, 0, 0}},
    {"mean_axes 2", S_MEAN_AXES, {2, 3, 4, 5}, {GM_AXIS(2), 0, 0, 0}},
    {"mean_axes 3-D 0|2", S_MEAN_AXES, {2, 3, 4, 0}, {GM_AXIS(0) | GM_AXIS(2), 0, 0, 0}},
    {"sum_rows 3-D", S_SUM_ROWS, {3, 4, 5, 0}, {0, 0, 0, 0}},
    {"sum_rows 2-D", S_SUM_ROWS, {3, 4, 0, 0}, {0, 0, 0, 0}},
    {"sum_rows 4-D", S_SUM_ROWS, {2, 3, 2, 2}, {0, 0, 0, 0}},
    {"expand (3,1)->(2,3,4)", S_EXPAND, {3, 1, 0, 0}, {2, 3, 4, 0}},
    {"expand (4)->(3,4)", S_EXPAND, {4, 0, 0, 0}, {3, 4, 0, 0}},
    {"expand (1,3,1,2)->(2,3,4,2)", S_EXPAND, {1, 3, 1, 2}, {2, 3, 4, 2}},
    {"reshape (2,3,4)->(6,4)", S_RESHAPE, {2, 3, 4, 0}, {6, 4, 0, 0}},
    {"reshape (2,3,4)->(4,-1,3)", S_RESHAPE, {2, 3, 4, 0}, {4, -1, 3, 0}},
    {"flatten", S_FLATTEN, {2, 3, 2, 2}, {0, 0, 0, 0}},
    {"permute 3-D (2,0,1)", S_PERMUTE, {2, 3, 4, 0}, {2, 0, 1, 0}},
    {"permute 3-D (1,2,0)", S_PERMUTE, {2, 3, 4, 0}, {1, 2, 0, 0}},
    {"permute 3-D (0,2,1)", S_PERMUTE, {2, 3, 4, 0}, {0, 2, 1, 0}},
    {"permute 4-D (0,2,3,1)", S_PERMUTE, {2, 3, 4, 5}, {0, 2, 3, 1}},
    {"permute 4-D (3,1,0,2)", S_PERMUTE, {2, 3, 4, 5}, {3, 1, 0, 2}},
    {"permute 4-D (1,0,3,2)", S_PERMUTE, {2, 3, 4, 5}, {1, 0, 3, 2}},
    {"permute 2-D (1,0)", S_PERMUTE, {3, 5, 0, 0}, {1, 0, 0, 0}},
    {"transpose", S_TRANSPOSE, {3, 5, 0, 0}, {0, 0, 0, 0}},
    {"concat 3-D axis 0", S_CONCAT, {2, 3, 4, 0}, {0, 0, 0, 0}},
    {"concat 3-D axis 1", S_CONCAT, {2, 3, 4, 0}, {1, 0, 0, 0}},
    {"concat 3-D axis 2", S_CONCAT, {2, 3, 4, 0}, {2, 0, 0, 0}},
    {"concat 4-D axis 3", S_CONCAT, {2, 3, 2, 3}, {3, 0, 0, 0}},
    {"concat 1-D axis 0", S_CONCAT, {5, 0, 0, 0}, {0, 0, 0, 0}},
    {"slice axis 0", S_SLICE, {3, 4, 5, 2}, {0, 1, 2, 0}},
    {"slice axis 1", S_SLICE, {3, 4, 5, 2}, {1, 1, 2, 0}},
    {"slice axis 2", S_SLICE, {3, 4, 5, 2}, {2, 2, 3, 0}},
    {"slice axis 3", S_SLICE, {3, 4, 5, 2}, {3, 1, 1, 0}},
    {"gather", S_GATHER, {6, 5, 0, 0}, {0, 0, 0, 0}},
    {"upsample_nearest 2", S_UPSAMPLE, {2, 2, 3, 4}, {2, 0, 0, 0}},
    {"upsample_nearest 3", S_UPSAMPLE, {1, 2, 2, 3}, {3, 0, 0, 0}},
    {"avg_pool 2", S_AVGPOOL, {2, 2, 4, 6}, {2, 0, 0, 0}},
    {"avg_pool 3", S_AVGPOOL, {1, 2, 6, 3}, {3, 0, 0, 0}},
};

static gm_tensor *apply_shape(gm_graph *g, const shape_case *s, gm_tensor **in) {
    gm_tensor *x = in[0];
    switch (s->op) {
    case S_SUM: return gm_sum(g, x);
    case S_MEAN: return gm_mean(g, x);
    case S_SUM_AXES: return gm_sum_axes(g, x, s->a[0]);
    case S_MEAN_AXES: return gm_mean_axes(g, x, s->a[0]);
    case S_SUM_ROWS: return gm_sum_rows(g, x);
    case S_EXPAND: return gm_expand(g, x, s->a[0], s->a[1], s->a[2], s->a[3]);
    case S_RESHAPE: return gm_reshape(g, x, s->a[0], s->a[1], s->a[2], s->a[3]);
    case S_FLATTEN: return gm_flatten(g, x);
    case S_PERMUTE: return gm_permute(g, x, s->a[0], s->a[1], s->a[2], s->a[3]);
    case S_TRANSPOSE: return gm_transpose(g, x);
    case S_CONCAT: return gm_concat(g, x, in[1], s->a[0]);
    case S_SLICE: return gm_slice(g, x, s->a[0], s->a[1], s->a[2]);
    case S_GATHER: return gm_gather(g, x, gather_labels);
    case S_UPSAMPLE: return gm_upsample_nearest(g, x, s->a[0]);
    case S_AVGPOOL: return gm_avg_pool(g, x, s->a[0]);
    default: return gm_dropout(g, x, 0.3f);
    }
}

/* A nonlinearity after the op so the second-order version is not trivially zero. */
static gm_tensor *f_shape(gm_graph *g, gm_tensor **in, void *ctx) {
    return wsum(g, apply_shape(g, (const shape_case *)ctx, in), 1);
}
static gm_tensor *f_shape2(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = wsum(g, gm_square(g, apply_shape(g, (const shape_case *)ctx, in)), 1);
    return wsum(g, gm_grad(g, y, in[0], 1), 2);
}

GM_TEST(grad_reductions_and_shapes) {
    gc_in c;
    int i, n = (int)(sizeof shape_cases / sizeof shape_cases[0]);
    c.n = 0;
    for (i = 0; i < n; i++) {
        const shape_case *s = &shape_cases[i];
        int pass;
        for (pass = 0; pass < 2; pass++) {
            gc_add(&c, s->x[0], s->x[1], s->x[2], s->x[3], -1, 1);
            if (s->op == S_CONCAT) { /* b: same shape, a different length along the axis */
                int b[4];
                memcpy(b, s->x, sizeof b);
                b[s->a[0]] += 1;
                gc_add(&c, b[0], b[1], b[2], b[3], -1, 1);
            }
            if (pass == 0) GC_OK(&c, f_shape, (void *)s, s->name);
            else GC_OK(&c, f_shape2, (void *)s, s->name);
        }
    }
}

GM_TEST(grad_dropout_training) {
    static const shape_case s = {"dropout", S_DROPOUT, {4, 6, 0, 0}, {0, 0, 0, 0}};
    gc_in c;
    c.n = 0;
    gc_add(&c, 4, 6, 0, 0, -1, 1);
    GC_OK(&c, f_shape, (void *)&s, "dropout p=0.3 (training)");
    gc_add(&c, 4, 6, 0, 0, -1, 1);
    GC_OK(&c, f_shape2, (void *)&s, "dropout second order");
}

/* Smallest |pre(inputs)| over the current inputs, with the library's forward ops (a forward-only
   check; the gradients are what is tested). Used to keep inputs of piecewise functions away from
   the kink: a perturbation of h = 0.01 moves these pre-activations by at most ~0.01. */
static float min_abs_pre(const gc_in *c, gm_tensor *(*pre)(gm_graph *, gm_tensor **)) {
    gm_graph *g = gm_graph_new(1);
    gm_tensor *t[16], *p;
    float m = 1e30f;
    int i;
    for (i = 0; i < c->n; i++) t[i] = gm_input(g, c->v[i], c->shp[i][0], c->shp[i][1], c->shp[i][2], c->shp[i][3]);
    p = pre(g, t);
    for (i = 0; p && i < p->size; i++)
        if (fabsf(p->data[i]) < m) m = fabsf(p->data[i]);
    gm_graph_free(g);
    return m;
}
static void gc_free(gc_in *c) {
    while (c->n > 0) free(c->v[--c->n]);
}
#define KINK_MARGIN 0.05f

/* ---------------------------------------------------------------------------------------------- */
/* Matmul, convolutions                                                                            */
/* ---------------------------------------------------------------------------------------------- */
typedef struct mm_case { int ta, tb; } mm_case;
static gm_tensor *f_matmul(gm_graph *g, gm_tensor **in, void *ctx) {
    const mm_case *m = (const mm_case *)ctx;
    return wsum(g, gm_matmul(g, in[0], in[1], m->ta, m->tb), 1);
}
static gm_tensor *f_matmul2(gm_graph *g, gm_tensor **in, void *ctx) {
    const mm_case *m = (const mm_case *)ctx;
    gm_tensor *y = wsum(g, gm_tanh(g, gm_matmul(g, in[0], in[1], m->ta, m->tb)), 1);
    return gm_add(g, wsum(g, gm_grad(g, y, in[0], 1), 2), wsum(g, gm_grad(g, y, in[1], 1), 3));
}

GM_TEST(grad_matmul) {
    gc_in c;
    mm_case m;
    int ta, tb;
    c.n = 0;
    for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++) {
            char name[64];
            m.ta = ta; m.tb = tb;
            snprintf(name, sizeof name, "matmul ta=%d tb=%d", ta, tb);
            /* op(A) (3,5), op(B) (5,7) */
            if (ta) gc_add(&c, 5, 3, 0, 0, -1, 1); else gc_add(&c, 3, 5, 0, 0, -1, 1);
            if (tb) gc_add(&c, 7, 5, 0, 0, -1, 1); else gc_add(&c, 5, 7, 0, 0, -1, 1);
            GC_OK(&c, f_matmul, &m, name);
            if (ta) gc_add(&c, 5, 3, 0, 0, -0.7f, 0.7f); else gc_add(&c, 3, 5, 0, 0, -0.7f, 0.7f);
            if (tb) gc_add(&c, 7, 5, 0, 0, -0.7f, 0.7f); else gc_add(&c, 5, 7, 0, 0, -0.7f, 0.7f);
            GC_OK(&c, f_matmul2, &m, name);
        }
}

static gm_tensor *f_bmm(gm_graph *g, gm_tensor **in, void *ctx) {
    const mm_case *m = (const mm_case *)ctx;
    return wsum(g, gm_bmm(g, in[0], in[1], m->ta, m->tb), 1);
}
static gm_tensor *f_bmm2(gm_graph *g, gm_tensor **in, void *ctx) {
    const mm_case *m = (const mm_case *)ctx;
    gm_tensor *y = wsum(g, gm_tanh(g, gm_bmm(g, in[0], in[1], m->ta, m->tb)), 1);
    return gm_add(g, wsum(g, gm_grad(g, y, in[0], 1), 2), wsum(g, gm_grad(g, y, in[1], 1), 3));
}

/* Batched: 3 entries of op(A) (3,5) times op(B) (5,4), every transpose, first and second order. */
GM_TEST(grad_bmm) {
    gc_in c;
    mm_case m;
    int ta, tb, pass;
    c.n = 0;
    for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++)
            for (pass = 0; pass < 2; pass++) {
                char name[64];
                const float r = pass ? 0.7f : 1.0f;
                m.ta = ta; m.tb = tb;
                snprintf(name, sizeof name, "bmm ta=%d tb=%d%s", ta, tb, pass ? ", second order" : "");
                if (ta) gc_add(&c, 3, 5, 3, 0, -r, r); else gc_add(&c, 3, 3, 5, 0, -r, r);
                if (tb) gc_add(&c, 3, 4, 5, 0, -r, r); else gc_add(&c, 3, 5, 4, 0, -r, r);
                GC_OK(&c, pass ? f_bmm2 : f_bmm, &m, name);
            }
}

typedef struct conv_case {
    const char *name;
    int n, cin, h, w, cout, k, stride, pad, out_pad, transposed;
} conv_case;
static const conv_case conv_cases[] = {
    {"conv k3 s1 p1 7x6", 2, 3, 7, 6, 4, 3, 1, 1, 0, 0},
    {"conv k3 s2 p0 7x6", 2, 3, 7, 6, 2, 3, 2, 0, 0, 0},
    {"conv k4 s2 p1 8x6", 2, 2, 8, 6, 3, 4, 2, 1, 0, 0},
    {"conv k3 s1 p2 5x4", 1, 2, 5, 4, 3, 3, 1, 2, 0, 0},
    {"conv k4 s1 p2 5x7", 2, 1, 5, 7, 2, 4, 1, 2, 0, 0},
    {"conv k3 s2 p1 6x5", 2, 3, 6, 5, 2, 3, 2, 1, 0, 0},
    {"convT k4 s2 p1 op0", 2, 3, 3, 4, 2, 4, 2, 1, 0, 1},
    {"convT k3 s2 p1 op1", 2, 3, 3, 4, 2, 3, 2, 1, 1, 1},
    {"convT k3 s1 p1", 1, 2, 4, 3, 3, 3, 1, 1, 0, 1},
    {"convT k4 s2 p1 op1", 1, 2, 3, 3, 2, 4, 2, 1, 1, 1},
};

static gm_tensor *conv_apply(gm_graph *g, const conv_case *c, gm_tensor *x, gm_tensor *w) {
    return c->transposed ? gm_conv_transpose2d(g, x, w, c->stride, c->pad, c->out_pad) : gm_conv2d(g, x, w, c->stride, c->pad);
}
static void conv_inputs(gc_in *in, const conv_case *c) {
    gc_add(in, c->n, c->cin, c->h, c->w, -1, 1);
    if (c->transposed) gc_add(in, c->cin, c->cout, c->k, c->k, -0.5f, 0.5f);
    else gc_add(in, c->cout, c->cin, c->k, c->k, -0.5f, 0.5f);
    gc_add(in, c->cout, 0, 0, 0, -0.5f, 0.5f);
}
static gm_tensor *f_conv(gm_graph *g, gm_tensor **in, void *ctx) {
    const conv_case *c = (const conv_case *)ctx;
    return wsum(g, gm_bias_add(g, conv_apply(g, c, in[0], in[1]), in[2]), 1);
}
/* Second order: the gradient penalty ||d/dx sum(w1 * tanh(conv(x, w) + b))||^2 w.r.t. x, w, b. */
static gm_tensor *f_conv2(gm_graph *g, gm_tensor **in, void *ctx) {
    const conv_case *c = (const conv_case *)ctx;
    gm_tensor *y = wsum(g, gm_tanh(g, gm_bias_add(g, conv_apply(g, c, in[0], in[1]), in[2])), 1);
    gm_tensor *dx = gm_grad(g, y, in[0], 1), *dw = gm_grad(g, y, in[1], 1);
    return gm_add(g, gm_sum(g, gm_square(g, dx)), wsum(g, dw, 3));
}

GM_TEST(grad_conv) {
    gc_in in;
    int i, n = (int)(sizeof conv_cases / sizeof conv_cases[0]);
    in.n = 0;
    for (i = 0; i < n; i++) {
        conv_inputs(&in, &conv_cases[i]);
        GC_OK(&in, f_conv, (void *)&conv_cases[i], conv_cases[i].name);
    }
}

/* Rectangular kernels, asymmetric padding: first and second order in x and w. */
typedef struct convex_case { const char *name; int n, cin, h, w, cout, kh, kw, stride, pt, pb, pl, pr; } convex_case;
static const convex_case convex_cases[] = {
    {"conv_ex 2x3 pad (1,0,1,1) 5x6", 2, 2, 5, 6, 3, 2, 3, 1, 1, 0, 1, 1},
    {"conv_ex 1x3 pad (0,0,2,0) 4x5", 2, 3, 4, 5, 2, 1, 3, 1, 0, 0, 2, 0},
    {"conv_ex 3x2 s2 pad (2,1,0,1) 7x5", 1, 2, 7, 5, 3, 3, 2, 2, 2, 1, 0, 1},
    {"conv_ex 4x1 s2 pad (0,3,0,0) 6x3", 2, 1, 6, 3, 2, 4, 1, 2, 0, 3, 0, 0},
};
static gm_tensor *f_convex(gm_graph *g, gm_tensor **in, void *ctx) {
    const convex_case *c = (const convex_case *)ctx;
    return wsum(g, gm_conv2d_ex(g, in[0], in[1], c->stride, c->pt, c->pb, c->pl, c->pr), 1);
}
static gm_tensor *f_convex2(gm_graph *g, gm_tensor **in, void *ctx) {
    const convex_case *c = (const convex_case *)ctx;
    gm_tensor *y = wsum(g, gm_tanh(g, gm_conv2d_ex(g, in[0], in[1], c->stride, c->pt, c->pb, c->pl, c->pr)), 1);
    return gm_add(g, gm_sum(g, gm_square(g, gm_grad(g, y, in[0], 1))), wsum(g, gm_grad(g, y, in[1], 1), 3));
}

GM_TEST(grad_conv_ex) {
    gc_in in;
    int i, pass, n = (int)(sizeof convex_cases / sizeof convex_cases[0]);
    in.n = 0;
    for (i = 0; i < n; i++)
        for (pass = 0; pass < 2; pass++) {
            const convex_case *c = &convex_cases[i];
            char what[96];
            gc_add(&in, c->n, c->cin, c->h, c->w, -1, 1);
            gc_add(&in, c->cout, c->cin, c->kh, c->kw, -0.5f, 0.5f);
            snprintf(what, sizeof what, "%s, %s order", c->name, pass ? "second" : "first");
            GC_OK(&in, pass ? f_convex2 : f_convex, (void *)c, what);
        }
}

GM_TEST(grad2_conv) {
    gc_in in;
    int i, n = (int)(sizeof conv_cases / sizeof conv_cases[0]);
    in.n = 0;
    for (i = 0; i < n; i++) {
        conv_inputs(&in, &conv_cases[i]);
        GC_OK(&in, f_conv2, (void *)&conv_cases[i], conv_cases[i].name);
    }
}

/* Small conv net: conv2d -> leaky_relu -> conv2d -> sum; penalty ||dD/dx||^2 w.r.t. x, w1, w2. */
static gm_tensor *f_convnet_gp(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *h, *d;
    (void)ctx;
    h = gm_leaky_relu(g, gm_conv2d(g, in[0], in[1], 1, 0), 0.2f);
    d = gm_sum(g, gm_conv2d(g, h, in[2], 2, 1));
    return gm_sum(g, gm_square(g, gm_grad(g, d, in[0], 1)));
}
/* conv_transpose2d -> tanh -> conv2d -> sum; penalty w.r.t. x and both weights. */
static gm_tensor *f_convtnet_gp(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *h, *d;
    (void)ctx;
    h = gm_tanh(g, gm_conv_transpose2d(g, in[0], in[1], 2, 1, 1));
    d = wsum(g, gm_conv2d(g, h, in[2], 1, 0), 1);
    return gm_sum(g, gm_square(g, gm_grad(g, d, in[0], 1)));
}

static gm_tensor *pre_convnet(gm_graph *g, gm_tensor **in) { return gm_conv2d(g, in[0], in[1], 1, 0); }

GM_TEST(grad2_conv_nets) {
    gc_in in;
    int tries = 0;
    in.n = 0;
    do { /* regenerate until every leaky_relu input is away from its kink */
        gc_free(&in);
        gc_add(&in, 1, 2, 5, 6, -1, 1);       /* -> conv k3 s1 p0 -> (1,3,3,4) */
        gc_add(&in, 3, 2, 3, 3, -0.5f, 0.5f);
        gc_add(&in, 1, 3, 3, 3, -0.5f, 0.5f);
    } while (min_abs_pre(&in, pre_convnet) < KINK_MARGIN && ++tries < 1000);
    GM_CHECK(tries < 1000, "no kink-free conv inputs found");
    GC_OK(&in, f_convnet_gp, NULL, "conv -> leaky -> conv gradient penalty");
    gc_add(&in, 1, 2, 3, 3, -1, 1);
    gc_add(&in, 2, 3, 3, 3, -0.5f, 0.5f);
    gc_add(&in, 2, 3, 3, 3, -0.5f, 0.5f);
    GC_OK(&in, f_convtnet_gp, NULL, "convT -> tanh -> conv gradient penalty");
}

/* ---------------------------------------------------------------------------------------------- */
/* MLP gradient penalties                                                                          */
/* ---------------------------------------------------------------------------------------------- */
enum { A_TANH, A_LEAKY, A_ELU, A_SOFTPLUS };
static gm_tensor *act(gm_graph *g, int a, gm_tensor *x) {
    switch (a) {
    case A_TANH: return gm_tanh(g, x);
    case A_LEAKY: return gm_leaky_relu(g, x, 0.2f);
    case A_ELU: return gm_elu(g, x, 1.0f);
    default: return gm_softplus(g, x);
    }
}
/* D(x) = act(x W1^T + b1) W2^T + b2, x (N,in): inputs x, W1, b1, W2, b2 */
static gm_tensor *mlp_D(gm_graph *g, int a, gm_tensor *x, gm_tensor **w) {
    gm_tensor *h = act(g, a, gm_bias_add(g, gm_matmul(g, x, w[0], 0, 1), w[1]));
    return gm_bias_add(g, gm_matmul(g, h, w[2], 0, 1), w[3]);
}
static gm_tensor *f_mlp_gp(gm_graph *g, gm_tensor **in, void *ctx) {
    int a = *(const int *)ctx;
    gm_tensor *d = mlp_D(g, a, in[0], in + 1);
    return gm_sum(g, gm_square(g, gm_grad(g, d, in[0], 1)));
}

static gm_tensor *pre_mlp(gm_graph *g, gm_tensor **in) {
    return gm_bias_add(g, gm_matmul(g, in[0], in[1], 0, 1), in[2]);
}

GM_TEST(grad2_mlp_gradient_penalty) {
    static const int acts[4] = {A_TANH, A_LEAKY, A_ELU, A_SOFTPLUS};
    static const char *names[4] = {"tanh", "leaky_relu", "elu", "softplus"};
    gc_in in;
    int i;
    in.n = 0;
    for (i = 0; i < 4; i++) {
        int tries = 0;
        do { /* leaky_relu has a kink, elu a jump in its second derivative, at 0: stay away */
            gc_free(&in);
            gc_add(&in, 4, 3, 0, 0, -1, 1);     /* x */
            gc_add(&in, 5, 3, 0, 0, -1, 1);     /* W1 */
            gc_add(&in, 5, 0, 0, 0, -0.5f, 0.5f); /* b1 */
            gc_add(&in, 2, 5, 0, 0, -1, 1);     /* W2 */
            gc_add(&in, 2, 0, 0, 0, -0.5f, 0.5f); /* b2 */
        } while (min_abs_pre(&in, pre_mlp) < KINK_MARGIN && ++tries < 1000);
        GM_CHECK(tries < 1000, "no kink-free MLP inputs found");
        GC_OK(&in, f_mlp_gp, (void *)&acts[i], names[i]);
    }
}

/* WGAN-GP: x_hat = e*x_real + (1-e)*x_fake; penalty = mean((||grad_x_hat D(x_hat)||_2 - 1)^2)
   inputs: x_real, x_fake, W1, b1, W2, b2 (e fixed). */
static gm_tensor *f_wgan_gp(gm_graph *g, gm_tensor **in, void *ctx) {
    static const float e[4] = {0.2f, 0.7f, 0.45f, 0.9f};
    gm_tensor *eps = gm_input(g, e, 4, 1, 0, 0), *xhat, *d, *gr, *norm;
    (void)ctx;
    xhat = gm_add(g, gm_mul(g, eps, in[0]), gm_mul(g, gm_affine(g, eps, -1.0f, 1.0f), in[1]));
    d = mlp_D(g, A_TANH, xhat, in + 2);
    gr = gm_grad(g, d, xhat, 1);
    norm = gm_sqrt(g, gm_affine(g, gm_sum_axes(g, gm_square(g, gr), GM_AXIS(1)), 1.0f, 1e-6f));
    return gm_mean(g, gm_square(g, gm_affine(g, norm, 1.0f, -1.0f)));
}

GM_TEST(grad2_wgan_gp) {
    gc_in in;
    in.n = 0;
    gc_add(&in, 4, 3, 0, 0, -1, 1);
    gc_add(&in, 4, 3, 0, 0, -1, 1);
    gc_add(&in, 6, 3, 0, 0, -1, 1);
    gc_add(&in, 6, 0, 0, 0, -0.5f, 0.5f);
    gc_add(&in, 1, 6, 0, 0, -1, 1);
    gc_add(&in, 1, 0, 0, 0, -0.5f, 0.5f);
    GC_OK(&in, f_wgan_gp, NULL, "WGAN-GP penalty");
}

/* ---------------------------------------------------------------------------------------------- */
/* Normalization layers                                                                            */
/* ---------------------------------------------------------------------------------------------- */
/* Batch norm written by hand with the layer's formula, with gamma and beta as gradcheck inputs. */
static gm_tensor *bn_manual(gm_graph *g, gm_tensor *x, gm_tensor *gamma, gm_tensor *beta) {
    int axes = x->ndim == 2 ? GM_AXIS(0) : GM_AXIS(0) | GM_AXIS(2) | GM_AXIS(3);
    gm_tensor *mean = gm_mean_axes(g, x, axes), *xc = gm_sub(g, x, mean);
    gm_tensor *var = gm_mean_axes(g, gm_square(g, xc), axes);
    gm_tensor *xhat = gm_div(g, xc, gm_sqrt(g, gm_affine(g, var, 1.0f, 1e-5f)));
    int c = x->shape[1], four = x->ndim == 4;
    return gm_add(g, gm_mul(g, xhat, gm_reshape(g, gamma, 1, c, four ? 1 : 0, four ? 1 : 0)),
                  gm_reshape(g, beta, 1, c, four ? 1 : 0, four ? 1 : 0));
}
static gm_tensor *f_bn_manual(gm_graph *g, gm_tensor **in, void *ctx) {
    (void)ctx;
    return wsum(g, gm_tanh(g, bn_manual(g, in[0], in[1], in[2])), 1);
}
static gm_tensor *f_bn_manual2(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = f_bn_manual(g, in, ctx);
    return gm_add(g, wsum(g, gm_grad(g, y, in[0], 1), 2), wsum(g, gm_grad(g, y, in[1], 1), 3));
}
/* The layer itself (its params live in a gm_params), input gradient only */
static gm_tensor *f_bn_layer(gm_graph *g, gm_tensor **in, void *ctx) {
    return wsum(g, gm_tanh(g, gm_batchnorm_forward(g, (const gm_batchnorm *)ctx, in[0])), 1);
}
static gm_tensor *f_bn_layer2(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = f_bn_layer(g, in, ctx);
    return wsum(g, gm_grad(g, y, in[0], 1), 2);
}
static gm_tensor *f_ln_layer(gm_graph *g, gm_tensor **in, void *ctx) {
    return wsum(g, gm_tanh(g, gm_layernorm_forward(g, (const gm_layernorm *)ctx, in[0])), 1);
}
static gm_tensor *f_gn_layer(gm_graph *g, gm_tensor **in, void *ctx) {
    return wsum(g, gm_tanh(g, gm_groupnorm_forward(g, (const gm_groupnorm *)ctx, in[0])), 1);
}
static gm_tensor *f_gn_layer2(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = f_gn_layer(g, in, ctx);
    return wsum(g, gm_grad(g, y, in[0], 1), 2);
}
static gm_tensor *f_ln_layer2(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = f_ln_layer(g, in, ctx);
    return wsum(g, gm_grad(g, y, in[0], 1), 2);
}

/* The fused op itself, x, gamma and beta all checked: first order, and second order through the
   gradients with respect to each (which runs the rules of the fused gradient ops). */
static gm_tensor *f_gn_op(gm_graph *g, gm_tensor **in, void *ctx) {
    return wsum(g, gm_tanh(g, gm_group_norm(g, in[0], in[1], in[2], *(const int *)ctx, 1e-5f)), 1);
}
static gm_tensor *f_gn_op2(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = f_gn_op(g, in, ctx);
    return gm_add(g, gm_add(g, wsum(g, gm_grad(g, y, in[0], 1), 2), wsum(g, gm_grad(g, y, in[1], 1), 3)),
                  wsum(g, gm_grad(g, y, in[2], 1), 4));
}
/* norm then silu in one op: first order runs the fused pass (nothing recorded), second order the
   recorded path (norm again as an op, silu's gradient op). */
static gm_tensor *f_gn_silu(gm_graph *g, gm_tensor **in, void *ctx) {
    return wsum(g, gm_tanh(g, gm_group_norm_act(g, in[0], in[1], in[2], *(const int *)ctx, 1e-5f, GM_ACT_SILU, 0)), 1);
}
static gm_tensor *f_gn_silu2(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = f_gn_silu(g, in, ctx);
    return gm_add(g, gm_add(g, wsum(g, gm_grad(g, y, in[0], 1), 2), wsum(g, gm_grad(g, y, in[1], 1), 3)),
                  wsum(g, gm_grad(g, y, in[2], 1), 4));
}
static gm_tensor *f_gn_plain(gm_graph *g, gm_tensor **in, void *ctx) {   /* no affine */
    return wsum(g, gm_tanh(g, gm_group_norm(g, in[0], NULL, NULL, *(const int *)ctx, 1e-5f)), 1);
}
static gm_tensor *f_gn_plain2(gm_graph *g, gm_tensor **in, void *ctx) {
    return wsum(g, gm_grad(g, f_gn_plain(g, in, ctx), in[0], 1), 2);
}

/* Finite differences on the gm_params data vs gm_backward, for the layer's trainable params.
   loss(x) = fn(g, &xt, ctx) with x a constant input. Returns the gradcheck-style relative error. */
static double param_fd_check(gm_params *P, gm_fn fn, void *ctx, const float *x, const int *shape) {
    gm_graph *g = gm_graph_new(3);
    gm_tensor *xt, *loss;
    float *analytic = (float *)malloc(P->count * sizeof(float));
    double worst_diff = 0, worst_num = 0;
    int v;
    size_t i;
    gm_params_zero_grad(P);
    xt = gm_input(g, x, shape[0], shape[1], shape[2], shape[3]);
    loss = fn(g, &xt, ctx);
    if (!loss || gm_backward(g, loss) != 0) { free(analytic); gm_graph_free(g); return -1; }
    memcpy(analytic, P->grad, P->count * sizeof(float));
    for (v = 0; v < P->nviews; v++) {
        if (P->views[v].buffer) continue;
        for (i = P->views[v].offset; i < P->views[v].offset + P->views[v].size; i++) {
            float keep = P->data[i];
            double plus, minus, num;
            P->data[i] = keep + H;
            gm_graph_reset(g);
            xt = gm_input(g, x, shape[0], shape[1], shape[2], shape[3]);
            plus = fn(g, &xt, ctx)->data[0];
            P->data[i] = keep - H;
            gm_graph_reset(g);
            xt = gm_input(g, x, shape[0], shape[1], shape[2], shape[3]);
            minus = fn(g, &xt, ctx)->data[0];
            P->data[i] = keep;
            num = (plus - minus) / (2.0 * H);
            if (fabs(num - analytic[i]) > worst_diff) worst_diff = fabs(num - analytic[i]);
            if (fabs(num) > worst_num) worst_num = fabs(num);
        }
    }
    free(analytic);
    gm_graph_free(g);
    return worst_diff / (worst_num > 1e-3 ? worst_num : 1e-3);
}

GM_TEST(grad_batchnorm) {
    gc_in in;
    int pass;
    in.n = 0;
    /* manual formula, all of x, gamma, beta; first and second order */
    for (pass = 0; pass < 2; pass++) {
        gm_fn fn = pass ? f_bn_manual2 : f_bn_manual;
        gc_add(&in, 6, 3, 0, 0, -1.5f, 1.5f);
        gc_add(&in, 3, 0, 0, 0, 0.5f, 1.5f);
        gc_add(&in, 3, 0, 0, 0, -0.5f, 0.5f);
        GC_OK(&in, fn, NULL, pass ? "batchnorm 2-D manual, second order" : "batchnorm 2-D manual");
        gc_add(&in, 3, 2, 3, 2, -1.5f, 1.5f);
        gc_add(&in, 2, 0, 0, 0, 0.5f, 1.5f);
        gc_add(&in, 2, 0, 0, 0, -0.5f, 0.5f);
        GC_OK(&in, fn, NULL, pass ? "batchnorm 4-D manual, second order" : "batchnorm 4-D manual");
    }
    /* the layer: input gradient via gradcheck, parameter gradient via finite differences */
    {
        gm_params P;
        gm_batchnorm bn2, bn4;
        gm_rng r;
        float x2[18], x4[36];
        int s2[4] = {6, 3, 0, 0}, s4[4] = {3, 2, 3, 2}, i;
        double e;
        memset(&P, 0, sizeof P);
        gm_rng_seed(&r, 5);
        gm_batchnorm_init(&bn2, &P, "bn2", 3);
        gm_batchnorm_init(&bn4, &P, "bn4", 2);
        gm_init_uniform(&r, gm_params_data(&P, bn2.gamma), 3, 0.5f, 1.5f);
        gm_init_uniform(&r, gm_params_data(&P, bn2.beta), 3, -0.5f, 0.5f);
        gm_init_uniform(&r, gm_params_data(&P, bn4.gamma), 2, 0.5f, 1.5f);
        gm_init_uniform(&r, gm_params_data(&P, bn4.beta), 2, -0.5f, 0.5f);
        for (i = 0; i < 18; i++) x2[i] = 3.0f * gm_rng_uniform(&r) - 1.5f;
        for (i = 0; i < 36; i++) x4[i] = 3.0f * gm_rng_uniform(&r) - 1.5f;

        gc_add(&in, 6, 3, 0, 0, -1.5f, 1.5f);
        GC_OK(&in, f_bn_layer, &bn2, "batchnorm layer 2-D input");
        gc_add(&in, 3, 2, 3, 2, -1.5f, 1.5f);
        GC_OK(&in, f_bn_layer, &bn4, "batchnorm layer 4-D input");
        gc_add(&in, 6, 3, 0, 0, -1.5f, 1.5f);
        GC_OK(&in, f_bn_layer2, &bn2, "batchnorm layer 2-D second order");
        gc_add(&in, 3, 2, 3, 2, -1.5f, 1.5f);
        GC_OK(&in, f_bn_layer2, &bn4, "batchnorm layer 4-D second order");

        e = param_fd_check(&P, f_bn_layer, &bn2, x2, s2);
        GM_CHECK(e >= 0 && e < TOL, "batchnorm 2-D params: relative error %g", e);
        e = param_fd_check(&P, f_bn_layer, &bn4, x4, s4);
        GM_CHECK(e >= 0 && e < TOL, "batchnorm 4-D params: relative error %g", e);
        gm_params_free(&P);
    }
}

GM_TEST(grad_layernorm) {
    gm_params P;
    gm_layernorm ln2, ln4;
    gm_rng r;
    gc_in in;
    float x2[24], x4[24];
    int s2[4] = {4, 6, 0, 0}, s4[4] = {2, 3, 2, 2}, i;
    double e;
    in.n = 0;
    memset(&P, 0, sizeof P);
    gm_rng_seed(&r, 6);
    gm_layernorm_init(&ln2, &P, "ln2", 6);
    gm_layernorm_init(&ln4, &P, "ln4", 12);
    gm_init_uniform(&r, gm_params_data(&P, ln2.gamma), 6, 0.5f, 1.5f);
    gm_init_uniform(&r, gm_params_data(&P, ln2.beta), 6, -0.5f, 0.5f);
    gm_init_uniform(&r, gm_params_data(&P, ln4.gamma), 12, 0.5f, 1.5f);
    gm_init_uniform(&r, gm_params_data(&P, ln4.beta), 12, -0.5f, 0.5f);
    for (i = 0; i < 24; i++) x2[i] = 3.0f * gm_rng_uniform(&r) - 1.5f;
    for (i = 0; i < 24; i++) x4[i] = 3.0f * gm_rng_uniform(&r) - 1.5f;
    gc_add(&in, 4, 6, 0, 0, -1.5f, 1.5f);
    GC_OK(&in, f_ln_layer, &ln2, "layernorm 2-D input");
    gc_add(&in, 2, 3, 2, 2, -1.5f, 1.5f);
    GC_OK(&in, f_ln_layer, &ln4, "layernorm 4-D input");
    gc_add(&in, 4, 6, 0, 0, -1.5f, 1.5f);
    GC_OK(&in, f_ln_layer2, &ln2, "layernorm 2-D second order");
    e = param_fd_check(&P, f_ln_layer, &ln2, x2, s2);
    GM_CHECK(e >= 0 && e < TOL, "layernorm 2-D params: relative error %g", e);
    e = param_fd_check(&P, f_ln_layer, &ln4, x4, s4);
    GM_CHECK(e >= 0 && e < TOL, "layernorm 4-D params: relative error %g", e);
    gm_params_free(&P);
}

/* Group norm: 2 groups of 2 channels over 3x2 pixels, and 1 group (layer norm over (C,H,W)) and
   one group per channel (instance norm); input, parameters, and the input's second order. */
GM_TEST(grad_groupnorm) {
    gm_params P;
    gm_groupnorm gn2, gn1, gn4;
    gm_rng r;
    gc_in in;
    float x[2 * 4 * 3 * 2];
    int s4[4] = {2, 4, 3, 2}, i;
    double e;
    in.n = 0;
    memset(&P, 0, sizeof P);
    gm_rng_seed(&r, 16);
    GM_CHECK(gm_groupnorm_init(&gn2, &P, "gn2", 4, 2) == 0 && gm_groupnorm_init(&gn1, &P, "gn1", 4, 1) == 0 &&
             gm_groupnorm_init(&gn4, &P, "gn4", 4, 4) == 0, "init: %s", gm_last_error());
    GM_CHECK(gm_groupnorm_init(&gn4, &P, "gn3", 4, 3) == -1, "3 groups of 4 channels accepted");
    gm_init_uniform(&r, P.data, P.count, 0.5f, 1.5f);
    for (i = 0; i < (int)(sizeof x / sizeof x[0]); i++) x[i] = 3.0f * gm_rng_uniform(&r) - 1.5f;
    gc_add(&in, 2, 4, 3, 2, -1.5f, 1.5f);
    GC_OK(&in, f_gn_layer, &gn2, "groupnorm 2 groups");
    gc_add(&in, 2, 4, 3, 2, -1.5f, 1.5f);
    GC_OK(&in, f_gn_layer, &gn1, "groupnorm 1 group");
    gc_add(&in, 2, 4, 3, 2, -1.5f, 1.5f);
    GC_OK(&in, f_gn_layer, &gn4, "groupnorm 4 groups");
    gc_add(&in, 3, 4, 0, 0, -1.5f, 1.5f);
    GC_OK(&in, f_gn_layer, &gn1, "groupnorm 2-D input");
    gc_add(&in, 2, 4, 3, 2, -1.5f, 1.5f);
    GC_OK(&in, f_gn_layer2, &gn2, "groupnorm second order");
    e = param_fd_check(&P, f_gn_layer, &gn2, x, s4);
    GM_CHECK(e >= 0 && e < TOL, "groupnorm params: relative error %g", e);
    gm_params_free(&P);
    { /* gm_group_norm: every input, first and second order; 4-D, 3-D and 2-D inputs. Groups hold
         at least 8 values: with 3 random values a group's spread can be so small that a central
         difference with h = 1e-2 misses (silu of the norm composed of ops fails the same way). */
        static const int shapes[3][4] = {{2, 4, 3, 2}, {3, 6, 5, 0}, {3, 16, 0, 0}};
        static const int groups[3] = {2, 3, 2};
        int k, pass;
        for (k = 0; k < 3; k++)
            for (pass = 0; pass < 2; pass++) {
                const int *sh = shapes[k];
                char what[96];
                gc_add(&in, sh[0], sh[1], sh[2], sh[3], -1.5f, 1.5f);
                gc_add(&in, sh[1], 0, 0, 0, 0.5f, 1.5f);
                gc_add(&in, sh[1], 0, 0, 0, -0.5f, 0.5f);
                snprintf(what, sizeof what, "gm_group_norm %d-D, %s order", k == 0 ? 4 : k == 1 ? 3 : 2, pass ? "second" : "first");
                GC_OK(&in, pass ? f_gn_op2 : f_gn_op, (void *)&groups[k], what);
                gc_add(&in, sh[0], sh[1], sh[2], sh[3], -1.5f, 1.5f);
                snprintf(what, sizeof what, "gm_group_norm %d-D without affine, %s order", k == 0 ? 4 : k == 1 ? 3 : 2,
                         pass ? "second" : "first");
                GC_OK(&in, pass ? f_gn_plain2 : f_gn_plain, (void *)&groups[k], what);
                gc_add(&in, sh[0], sh[1], sh[2], sh[3], -1.5f, 1.5f);
                gc_add(&in, sh[1], 0, 0, 0, 0.5f, 1.5f);
                gc_add(&in, sh[1], 0, 0, 0, -0.5f, 0.5f);
                snprintf(what, sizeof what, "gm_group_norm_act silu %d-D, %s order", k == 0 ? 4 : k == 1 ? 3 : 2,
                         pass ? "second" : "first");
                GC_OK(&in, pass ? f_gn_silu2 : f_gn_silu, (void *)&groups[k], what);
            }
    }
}

/* WGAN-GP as a training step writes it: D made of gm_linear layers in a gm_params, the penalty's
   parameter gradients taken by gm_backward (through the recorded backward ops), against finite
   differences on the gm_params data. */
typedef struct gp_ctx { gm_linear l1, l2; } gp_ctx;
static gm_tensor *f_gp_layers(gm_graph *g, gm_tensor **in, void *ctx) {
    const gp_ctx *c = (const gp_ctx *)ctx;
    gm_tensor *x = gm_requires_grad(in[0]), *d, *gr, *norm;
    d = gm_linear_forward(g, &c->l2, gm_softplus(g, gm_linear_forward(g, &c->l1, x)));
    gr = gm_grad(g, d, x, 1);
    norm = gm_sqrt(g, gm_affine(g, gm_sum_axes(g, gm_square(g, gr), GM_AXIS(1)), 1.0f, 1e-6f));
    /* the critic's own output is in the loss too, as in the real objective */
    return gm_add(g, gm_mean(g, d), gm_scale(g, gm_mean(g, gm_square(g, gm_affine(g, norm, 1.0f, -1.0f))), 10.0f));
}

GM_TEST(grad2_wgan_gp_params) {
    gm_params P;
    gp_ctx c;
    gm_rng r;
    float x[4 * 3];
    int shape[4] = {4, 3, 0, 0}, i;
    double e;
    memset(&P, 0, sizeof P);
    gm_rng_seed(&r, 8);
    gm_linear_init(&c.l1, &P, "d1", 3, 6, GM_INIT_TORCH, &r);
    gm_linear_init(&c.l2, &P, "d2", 6, 1, GM_INIT_TORCH, &r);
    /* larger weights than PyTorch's init so ||grad_x D|| is near 1: with a norm near 0 the sqrt makes
       the penalty so curved that h = 1e-2 differences are off by a few percent (the analytic values
       were confirmed with h = 1e-3 there). */
    gm_init_uniform(&r, gm_params_data(&P, c.l1.w), 18, -1.5f, 1.5f);
    gm_init_uniform(&r, gm_params_data(&P, c.l2.w), 6, -1.5f, 1.5f);
    for (i = 0; i < 12; i++) x[i] = 2.0f * gm_rng_uniform(&r) - 1.0f;
    e = param_fd_check(&P, f_gp_layers, &c, x, shape);
    GM_CHECK(e >= 0 && e < TOL, "WGAN-GP penalty parameter gradients via gm_backward: relative error %g", e);
    gm_params_free(&P);
}

/* ---------------------------------------------------------------------------------------------- */
/* Losses                                                                                          */
/* ---------------------------------------------------------------------------------------------- */
enum { L_MSE, L_BCE, L_XENT, L_GAUSS, L_GAUSS_SCALAR_LV, L_BERN, L_KL };
static const int xent_labels[5] = {3, 0, 2, 2, 1};
static gm_tensor *apply_loss(gm_graph *g, int op, gm_tensor **in) {
    switch (op) {
    case L_MSE: return gm_mse(g, in[0], in[1]);
    case L_BCE: return gm_bce_logits(g, in[0], in[1]);
    case L_XENT: return gm_softmax_xent(g, in[0], xent_labels);
    case L_GAUSS: case L_GAUSS_SCALAR_LV: return wsum(g, gm_gaussian_loglik(g, in[0], in[1], in[2]), 4);
    case L_BERN: return wsum(g, gm_bernoulli_loglik(g, in[0], in[1]), 4);
    default: return wsum(g, gm_kl_std_normal(g, in[0], in[1]), 4);
    }
}
static gm_tensor *f_loss(gm_graph *g, gm_tensor **in, void *ctx) { return apply_loss(g, *(const int *)ctx, in); }
/* second order: sum over inputs of wsum(grad(loss, input_k)) */
static gm_tensor *f_loss2(gm_graph *g, gm_tensor **in, void *ctx) {
    int op = *(const int *)ctx, k, n = op == L_XENT ? 1 : (op == L_GAUSS || op == L_GAUSS_SCALAR_LV) ? 3 : 2;
    gm_tensor *y = apply_loss(g, op, in), *s = NULL;
    for (k = 0; k < n; k++) {
        gm_tensor *t = wsum(g, gm_grad(g, y, in[k], 1), 10 + (unsigned)k);
        s = s ? gm_add(g, s, t) : t;
    }
    return s;
}

static void loss_inputs(gc_in *in, int op) {
    switch (op) {
    case L_MSE: gc_add(in, 3, 4, 0, 0, -1, 1); gc_add(in, 3, 4, 0, 0, -1, 1); break;
    case L_BCE: case L_BERN: gc_add(in, 3, 2, 2, 0, -3, 3); gc_add(in, 3, 2, 2, 0, 0, 1); break;
    case L_XENT: gc_add(in, 5, 4, 0, 0, -2, 2); break;
    case L_GAUSS: gc_add(in, 3, 4, 0, 0, -1, 1); gc_add(in, 3, 4, 0, 0, -1, 1); gc_add(in, 3, 4, 0, 0, -1, 1); break;
    case L_GAUSS_SCALAR_LV: gc_add(in, 3, 4, 0, 0, -1, 1); gc_add(in, 3, 4, 0, 0, -1, 1); gc_add(in, 1, 0, 0, 0, -1, 1); break;
    default: gc_add(in, 3, 5, 0, 0, -1, 1); gc_add(in, 3, 5, 0, 0, -1, 1); break;
    }
}

GM_TEST(grad_losses) {
    static const int ops[7] = {L_MSE, L_BCE, L_XENT, L_GAUSS, L_GAUSS_SCALAR_LV, L_BERN, L_KL};
    static const char *names[7] = {"mse", "bce_logits", "softmax_xent", "gaussian_loglik",
                                   "gaussian_loglik scalar logvar", "bernoulli_loglik", "kl_std_normal"};
    gc_in in;
    int i;
    in.n = 0;
    for (i = 0; i < 7; i++) {
        loss_inputs(&in, ops[i]);
        GC_OK(&in, f_loss, (void *)&ops[i], names[i]);
        loss_inputs(&in, ops[i]);
        GC_OK(&in, f_loss2, (void *)&ops[i], names[i]);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Composite: a 2-layer MLP loss w.r.t. every weight (the ordinary training path), and a gradient  */
/* of a gradient of a gradient (third order) for a unary chain                                     */
/* ---------------------------------------------------------------------------------------------- */
static gm_tensor *f_mlp_loss(gm_graph *g, gm_tensor **in, void *ctx) {
    (void)ctx;
    return gm_mse(g, mlp_D(g, A_TANH, in[0], in + 1), gm_affine(g, gm_slice(g, in[0], 1, 0, 2), 0.5f, 0.1f));
}
static gm_tensor *f_third(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = wsum(g, gm_tanh(g, gm_mul(g, in[0], in[0])), 1), *d1, *d2;
    (void)ctx;
    d1 = gm_grad(g, y, in[0], 1);
    d2 = gm_grad(g, wsum(g, d1, 2), in[0], 1);
    return wsum(g, d2, 3);
}

GM_TEST(grad_composites) {
    gc_in in;
    in.n = 0;
    gc_add(&in, 4, 3, 0, 0, -1, 1);
    gc_add(&in, 5, 3, 0, 0, -1, 1);
    gc_add(&in, 5, 0, 0, 0, -0.5f, 0.5f);
    gc_add(&in, 2, 5, 0, 0, -1, 1);
    gc_add(&in, 2, 0, 0, 0, -0.5f, 0.5f);
    GC_OK(&in, f_mlp_loss, NULL, "MLP mse loss");
    gc_add(&in, 3, 4, 0, 0, -1, 1);
    GC_OK(&in, f_third, NULL, "third order tanh(x^2)");
}

int main(void) {
    gm_rng_seed(&gc_rng, 2024);
    GM_RUN(gradcheck_detects_wrong_gradient);
    GM_RUN(grad_unary_ops);
    GM_RUN(grad2_unary_ops);
    GM_RUN(grad_binary_broadcast);
    GM_RUN(grad_shared_input);
    GM_RUN(grad_bias_add);
    GM_RUN(grad_reductions_and_shapes);
    GM_RUN(grad_dropout_training);
    GM_RUN(grad_matmul);
    GM_RUN(grad_bmm);
    GM_RUN(grad_conv);
    GM_RUN(grad2_conv);
    GM_RUN(grad_conv_ex);
    GM_RUN(grad2_conv_nets);
    GM_RUN(grad2_mlp_gradient_penalty);
    GM_RUN(grad2_wgan_gp);
    GM_RUN(grad_batchnorm);
    GM_RUN(grad_layernorm);
    GM_RUN(grad_groupnorm);
    GM_RUN(grad_fused_ops);
    GM_RUN(grad2_wgan_gp_params);
    GM_RUN(grad_losses);
    GM_RUN(grad_composites);
    return gm_test_summary();
}
