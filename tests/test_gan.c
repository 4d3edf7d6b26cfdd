/* test_gan.c: the GAN family (genmod_gan.h).
 *
 *   - linear algebra under the Frechet distance: Jacobi eigendecomposition, PSD square root,
 *     Frechet distance against closed forms, label entropy, ring-mode counting;
 *   - the WGAN-GP and R1 penalties' parameter gradients (gradients of a gradient) against central
 *     finite differences with gm_gradcheck, through an MLP critic and a conv critic; R1 and the
 *     hinge loss against values by hand; the augmentation's input gradient, and its transformations
 *     (the same shift and cutout on two batches from the same stream); the moving average against
 *     its closed form;
 *   - spectral normalization: the power-iteration estimate within 1% of the true top singular value;
 *   - the losses on known logits; bad configs, labels and arguments give errors naming the field;
 *   - the model contract: G emitted into a caller's graph; save/load round trips of a GAN (MLP and
 *     conv, with the moving average, R1, augmentation and hinge loss) and a CycleGAN (with and
 *     without averages) after which training continues bit for bit; refused loads (another
 *     architecture, another model, a plain checkpoint, a missing file, a file without the moving
 *     average) leave the model untouched;
 *   - every variant learns the 8-Gaussians ring within seconds: covers >= 7 of 8 modes with most
 *     samples of high quality; the conditional GAN puts samples at their label's mode.
 * Small models and few steps: the whole file runs in seconds (and under ASan). */
#define GENMOD_IMPLEMENTATION
#define GENMOD_GAN_IMPLEMENTATION
#include "../genmod_gan.h"
#include "gm_test.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------------- */
/* Linear algebra                                                                                 */
/* ---------------------------------------------------------------------------------------------- */
/* a = B B^T + shift I: symmetric positive definite, n x n. */
static void random_spd(double *a, int n, unsigned seed, double shift) {
    gm_rng r;
    int i, j, k;
    double *b = (double *)malloc((size_t)n * n * sizeof(double));
    gm_rng_seed(&r, seed);
    for (i = 0; i < n * n; i++) b[i] = gm_rng_normal(&r);
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            double s = 0;
            for (k = 0; k < n; k++) s += b[i * n + k] * b[j * n + k];
            a[i * n + j] = s / n + (i == j ? shift : 0);
        }
    free(b);
}

GM_TEST(eigh_reconstructs) {
    const int n = 24;
    double *a = (double *)malloc(n * n * sizeof(double)), *V = (double *)malloc(n * n * sizeof(double)), w[24];
    double worst = 0, orth = 0;
    int i, j, k;
    random_spd(a, n, 3, -0.5);   /* indefinite: some eigenvalues negative */
    GM_CHECK(gm_eigh_sym(a, n, w, V) == 0, "%s", gm_last_error());
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            double s = 0, d = 0;
            for (k = 0; k < n; k++) { s += V[i * n + k] * w[k] * V[j * n + k]; d += V[k * n + i] * V[k * n + j]; }
            worst = fmax(worst, fabs(s - a[i * n + j]));
            orth = fmax(orth, fabs(d - (i == j)));
        }
    for (i = 1; i < n; i++) GM_CHECK(w[i - 1] <= w[i], "eigenvalues not ascending at %d", i);
    GM_CHECK(worst < 1e-10, "V diag(w) V^T differs from A by %g", worst);
    GM_CHECK(orth < 1e-10, "V^T V differs from I by %g", orth);
    GM_CHECK(w[0] < 0, "test matrix should be indefinite (smallest eigenvalue %g)", w[0]);
    free(a); free(V);
}

GM_TEST(sqrtm_squares_back) {
    static const int sizes[3] = {1, 7, 40};
    int t, i, j, k;
    for (t = 0; t < 3; t++) {
        int n = sizes[t];
        double *a = (double *)malloc((size_t)n * n * sizeof(double)), *s = (double *)malloc((size_t)n * n * sizeof(double));
        double worst = 0, asym = 0;
        random_spd(a, n, 10 + t, 0.1);
        GM_CHECK(gm_sqrtm_psd(a, n, s) == 0, "%s", gm_last_error());
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++) {
                double v = 0;
                for (k = 0; k < n; k++) v += s[i * n + k] * s[k * n + j];
                worst = fmax(worst, fabs(v - a[i * n + j]));
                asym = fmax(asym, fabs(s[i * n + j] - s[j * n + i]));
            }
        GM_CHECK(worst < 1e-10, "n=%d: S S differs from A by %g", n, worst);
        GM_CHECK(asym < 1e-12, "n=%d: S not symmetric (%g)", n, asym);
        free(a); free(s);
    }
    {   /* a known root: [[5,4],[4,5]] = [[2,1],[1,2]]^2 */
        double a2[4] = {5, 4, 4, 5}, s2[4];
        GM_CHECK(gm_sqrtm_psd(a2, 2, s2) == 0, "%s", gm_last_error());
        GM_CHECK_CLOSE(s2[0], 2.0, 1e-12);
        GM_CHECK_CLOSE(s2[1], 1.0, 1e-12);
    }
    {   /* bad input is an error, not a crash */
        double nan2[4] = {1, 0, 0, NAN}, out[4];
        GM_CHECK(gm_sqrtm_psd(nan2, 2, out) != 0, "NaN matrix accepted");
    }
}

GM_TEST(frechet_closed_forms) {
    const int d = 5;
    double mu1[5] = {0, 1, 2, 3, 4}, mu2[5] = {1, 1, 2, 3, 2}, c1[25], c2[25], fd, want = 0;
    int i;
    random_spd(c1, d, 5, 0.2);
    fd = gm_frechet_distance(mu1, c1, mu1, c1, d);                 /* identical: 0 */
    GM_CHECK(fabs(fd) < 1e-9, "FD(P, P) = %g", fd);
    fd = gm_frechet_distance(mu1, c1, mu2, c1, d);                 /* same covariance: |dmu|^2 = 1 + 4 */
    GM_CHECK_CLOSE(fd, 5.0, 1e-9);
    memset(c1, 0, sizeof c1); memset(c2, 0, sizeof c2);            /* diagonal: sum (sqrt a - sqrt b)^2 */
    for (i = 0; i < d; i++) {
        c1[i * d + i] = 1 + i;
        c2[i * d + i] = 4.0 / (1 + i);
        want += pow(sqrt(1.0 + i) - sqrt(4.0 / (1 + i)), 2);
    }
    fd = gm_frechet_distance(mu1, c1, mu1, c2, d);
    GM_CHECK_CLOSE(fd, want, 1e-9);
    {   /* non-commuting 2x2: Tr sqrt(S1 S2) by the 2x2 formula sqrt(tr + 2 sqrt(det)) */
        double a[4] = {2, 1, 1, 1}, b[4] = {1, -0.5, -0.5, 3}, z[2] = {0, 0};
        double p00 = a[0] * b[0] + a[1] * b[2], p11 = a[2] * b[1] + a[3] * b[3];
        double det = (a[0] * a[3] - a[1] * a[2]) * (b[0] * b[3] - b[1] * b[2]);
        double tr_sqrt = sqrt(p00 + p11 + 2 * sqrt(det));
        fd = gm_frechet_distance(z, a, z, b, 2);
        GM_CHECK_CLOSE(fd, a[0] + a[3] + b[0] + b[3] - 2 * tr_sqrt, 1e-9);
    }
}

GM_TEST(gaussian_fit_and_entropy) {
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};   /* 4 rows of 2 */
    double mu[2], cov[4];
    int uniform[100], same[50], i;
    GM_CHECK(gm_gaussian_fit(x, 4, 2, mu, cov) == 0, "%s", gm_last_error());
    GM_CHECK_CLOSE(mu[0], 4.0, 1e-12);
    GM_CHECK_CLOSE(cov[0], 20.0 / 3.0, 1e-12);   /* numpy.cov: divide by n - 1 */
    GM_CHECK_CLOSE(cov[1], 20.0 / 3.0, 1e-12);
    for (i = 0; i < 100; i++) uniform[i] = i % 10;
    for (i = 0; i < 50; i++) same[i] = 3;
    GM_CHECK_CLOSE(gm_label_entropy(uniform, 100, 10), log(10.0), 1e-12);
    GM_CHECK_CLOSE(gm_label_entropy(same, 50, 10), 0.0, 1e-12);
}

GM_TEST(ring_modes_counts) {
    enum { N = 2000 };
    static float xy[2 * N];
    int lab[N], covered, i, n4 = 0;
    float hq;
    GM_CHECK(gm_toy2d("8gaussians", N, 1, -1, xy, lab) == 0, "%s", gm_last_error());
    covered = gm_ring_modes(xy, N, 8, 2.0f, 0.02f, 20, &hq);
    GM_CHECK(covered == 8 && hq > 0.98f, "real data: %d modes, hq %.3f", covered, hq);
    for (i = 0; i < N; i++)                        /* keep modes 0..3 only */
        if (lab[i] < 4) { xy[2 * n4] = xy[2 * i]; xy[2 * n4 + 1] = xy[2 * i + 1]; n4++; }
    covered = gm_ring_modes(xy, n4, 8, 2.0f, 0.02f, 20, &hq);
    GM_CHECK(covered == 4, "half the modes: counted %d", covered);
    for (i = 0; i < 2 * n4; i++) xy[i] *= 0.5f;        /* collapsed onto radius 1: nothing of quality */
    covered = gm_ring_modes(xy, n4, 8, 2.0f, 0.02f, 20, &hq);
    GM_CHECK(covered == 0 && hq < 0.01f, "shrunk ring: %d modes, hq %.3f", covered, hq);
}

/* ---------------------------------------------------------------------------------------------- */
/* WGAN-GP penalty: parameter gradient of the double-backprop term vs finite differences          */
/* ---------------------------------------------------------------------------------------------- */
typedef struct gp_ctx {
    gm_tensor **w;          /* critic weights: gm_gradcheck's inputs */
    const float *real, *fake;
    int shape[4];
    int conv;
} gp_ctx;

/* MLP critic 6 -> 8 (tanh) -> 8 (leaky) -> 1, weights from the gradcheck inputs. */
static gm_tensor *mlp_critic(gm_graph *g, gm_tensor *x, void *vctx) {
    gp_ctx *c = (gp_ctx *)vctx;
    gm_tensor *h = gm_tanh(g, gm_bias_add(g, gm_matmul(g, x, c->w[0], 0, 1), c->w[1]));
    h = gm_leaky_relu(g, gm_bias_add(g, gm_matmul(g, h, c->w[2], 0, 1), c->w[3]), 0.2f);
    return gm_bias_add(g, gm_matmul(g, h, c->w[4], 0, 1), c->w[5]);
}

/* Conv critic (N,2,6,6) -> conv 3x3/2 pad 1 to 3 ch (N,3,3,3), tanh -> dense 27 -> 1. */
static gm_tensor *conv_critic(gm_graph *g, gm_tensor *x, void *vctx) {
    gp_ctx *c = (gp_ctx *)vctx;
    gm_tensor *h = gm_tanh(g, gm_bias_add(g, gm_conv2d(g, x, c->w[0], 2, 1), c->w[1]));
    return gm_bias_add(g, gm_matmul(g, gm_flatten(g, h), c->w[2], 0, 1), c->w[3]);
}

static gm_tensor *gp_fn(gm_graph *g, gm_tensor **inputs, void *vctx) {
    gp_ctx *c = (gp_ctx *)vctx;
    gm_tensor *real = gm_input(g, c->real, c->shape[0], c->shape[1], c->shape[2], c->shape[3]);
    gm_tensor *fake = gm_input(g, c->fake, c->shape[0], c->shape[1], c->shape[2], c->shape[3]);
    c->w = inputs;
    return gm_gan_gradient_penalty(g, c->conv ? conv_critic : mlp_critic, c, real, fake, 10.0f);
}

static double run_gp_check(int conv, const int (*shapes)[4], int nin, const int *xshape) {
    float *vals[8], real[4 * 72], fake[4 * 72];
    gp_ctx c;
    gm_rng r;
    int i, j, xs = xshape[0] * xshape[1] * (xshape[2] ? xshape[2] : 1) * (xshape[3] ? xshape[3] : 1);
    double err;
    gm_rng_seed(&r, 77 + conv);
    memset(&c, 0, sizeof c);
    for (i = 0; i < nin; i++) {
        int n = shapes[i][0] * (shapes[i][1] ? shapes[i][1] : 1) * (shapes[i][2] ? shapes[i][2] : 1) *
                (shapes[i][3] ? shapes[i][3] : 1);
        vals[i] = (float *)malloc((size_t)n * sizeof(float));
        for (j = 0; j < n; j++) vals[i][j] = 0.8f * gm_rng_normal(&r);
    }
    for (j = 0; j < xs; j++) { real[j] = gm_rng_normal(&r); fake[j] = gm_rng_normal(&r); }
    c.real = real; c.fake = fake; c.conv = conv;
    memcpy(c.shape, xshape, sizeof c.shape);
    err = gm_gradcheck(gp_fn, &c, nin, vals, shapes, 1e-2f);
    for (i = 0; i < nin; i++) free(vals[i]);
    return err;
}

GM_TEST(gp_gradcheck_mlp_critic) {
    static const int shapes[6][4] = {{8, 6, 0, 0}, {8, 0, 0, 0}, {8, 8, 0, 0}, {8, 0, 0, 0}, {1, 8, 0, 0}, {1, 0, 0, 0}};
    static const int xshape[4] = {4, 6, 0, 0};
    double err = run_gp_check(0, shapes, 6, xshape);
    GM_CHECK(err >= 0 && err < 1e-2, "penalty gradient vs finite differences: relative error %g (%s)", err,
             err < 0 ? gm_last_error() : "");
    printf("# gp_gradcheck_mlp_critic: relative error %.2e\n", err);
}

GM_TEST(gp_gradcheck_conv_critic) {
    static const int shapes[4][4] = {{3, 2, 3, 3}, {3, 0, 0, 0}, {1, 27, 0, 0}, {1, 0, 0, 0}};
    static const int xshape[4] = {3, 2, 6, 6};
    double err = run_gp_check(1, shapes, 4, xshape);
    GM_CHECK(err >= 0 && err < 1e-2, "penalty gradient vs finite differences: relative error %g (%s)", err,
             err < 0 ? gm_last_error() : "");
    printf("# gp_gradcheck_conv_critic: relative error %.2e\n", err);
}

/* The penalty is zero for a critic whose input gradient has unit norm everywhere: D(x) = u.x, |u| = 1. */
static gm_tensor *unit_critic(gm_graph *g, gm_tensor *x, void *ctx) {
    (void)ctx;
    return gm_scale(g, gm_sum_axes(g, x, GM_AXIS(1)), 0.5f);   /* u = (1/2)(1,1,1,1), |u| = 1 */
}

GM_TEST(gp_zero_for_unit_gradient) {
    gm_graph *g = gm_graph_new(3);
    gm_tensor *real = gm_randn(g, 5, 4, 0, 0), *fake = gm_randn(g, 5, 4, 0, 0);
    gm_tensor *gp = gm_gan_gradient_penalty(g, unit_critic, NULL, real, fake, 10.0f);
    GM_CHECK(gp && fabsf(gp->data[0]) < 1e-5f, "penalty %g for a 1-Lipschitz linear critic", gp ? gp->data[0] : -1.0f);
    gm_graph_free(g);
}

/* ---------------------------------------------------------------------------------------------- */
/* R1, hinge, augmentation, moving average                                                        */
/* ---------------------------------------------------------------------------------------------- */
static void fill_plain(float *x, int n, unsigned seed) {
    gm_rng r;
    int i;
    gm_rng_seed(&r, seed);
    for (i = 0; i < n; i++) x[i] = 2 * gm_rng_uniform(&r) - 1;
}

/* A fixed, uneven weight per element of t's shape. */
static gm_tensor *sin_weights(gm_graph *g, const gm_tensor *t) {
    gm_tensor *w = gm_zeros(g, t->shape[0], t->ndim > 1 ? t->shape[1] : 0, t->ndim > 2 ? t->shape[2] : 0,
                            t->ndim > 3 ? t->shape[3] : 0);
    int i;
    for (i = 0; w && i < w->size; i++) w->data[i] = sinf(0.37f * (float)i + 0.1f);
    return w;
}

/* R1 through the gp critics: real is the tracked leaf, the gradient of the penalty w.r.t. the
   critic's weights is second order. */
static gm_tensor *r1_fn(gm_graph *g, gm_tensor **inputs, void *vctx) {
    gp_ctx *c = (gp_ctx *)vctx;
    gm_tensor *real = gm_requires_grad(gm_input(g, c->real, c->shape[0], c->shape[1], c->shape[2], c->shape[3]));
    c->w = inputs;
    return gm_gan_r1_penalty(g, c->conv ? conv_critic(g, real, c) : mlp_critic(g, real, c), real, 10.0f);
}

static double run_r1_check(int conv, const int (*shapes)[4], int nin, const int *xshape) {
    float *vals[8], real[4 * 72];
    gp_ctx c;
    gm_rng r;
    int i, j, xs = xshape[0] * xshape[1] * (xshape[2] ? xshape[2] : 1) * (xshape[3] ? xshape[3] : 1);
    double err;
    gm_rng_seed(&r, 91 + conv);
    memset(&c, 0, sizeof c);
    for (i = 0; i < nin; i++) {
        int n = shapes[i][0] * (shapes[i][1] ? shapes[i][1] : 1) * (shapes[i][2] ? shapes[i][2] : 1) *
                (shapes[i][3] ? shapes[i][3] : 1);
        vals[i] = (float *)malloc((size_t)n * sizeof(float));
        for (j = 0; j < n; j++) vals[i][j] = 0.8f * gm_rng_normal(&r);
    }
    for (j = 0; j < xs; j++) real[j] = gm_rng_normal(&r);
    c.real = real; c.conv = conv;
    memcpy(c.shape, xshape, sizeof c.shape);
    err = gm_gradcheck(r1_fn, &c, nin, vals, shapes, 1e-2f);
    for (i = 0; i < nin; i++) free(vals[i]);
    return err;
}

GM_TEST(r1_gradcheck_mlp_critic) {
    static const int shapes[6][4] = {{8, 6, 0, 0}, {8, 0, 0, 0}, {8, 8, 0, 0}, {8, 0, 0, 0}, {1, 8, 0, 0}, {1, 0, 0, 0}};
    static const int xshape[4] = {4, 6, 0, 0};
    double err = run_r1_check(0, shapes, 6, xshape);
    GM_CHECK(err >= 0 && err < 1e-2, "R1 gradient vs finite differences: relative error %g (%s)", err,
             err < 0 ? gm_last_error() : "");
    printf("# r1_gradcheck_mlp_critic: relative error %.2e\n", err);
}

GM_TEST(r1_gradcheck_conv_critic) {
    static const int shapes[4][4] = {{3, 2, 3, 3}, {3, 0, 0, 0}, {1, 27, 0, 0}, {1, 0, 0, 0}};
    static const int xshape[4] = {3, 2, 6, 6};
    double err = run_r1_check(1, shapes, 4, xshape);
    GM_CHECK(err >= 0 && err < 1e-2, "R1 gradient vs finite differences: relative error %g (%s)", err,
             err < 0 ? gm_last_error() : "");
    printf("# r1_gradcheck_conv_critic: relative error %.2e\n", err);
}

/* D(x) = sum_j a_j x_j^2 / 2 has grad a*x: R1 = gamma/2 mean_i sum_j (a_j x_ij)^2, by hand. */
GM_TEST(r1_closed_form) {
    gm_graph *g = gm_graph_new(3);
    float x[3 * 4], a[4] = {0.5f, -1.0f, 2.0f, 0.25f};
    double want = 0;
    int i, j;
    gm_tensor *xt, *d, *r1;
    fill_plain(x, 12, 4);
    for (i = 0; i < 3; i++)
        for (j = 0; j < 4; j++) want += (double)(a[j] * x[i * 4 + j]) * (a[j] * x[i * 4 + j]);
    want = 3.0 / 2 * want / 3;
    xt = gm_requires_grad(gm_input(g, x, 3, 4, 0, 0));
    d = gm_scale(g, gm_sum_axes(g, gm_mul(g, gm_square(g, xt), gm_input(g, a, 1, 4, 0, 0)), GM_AXIS(1)), 0.5f);
    r1 = gm_gan_r1_penalty(g, d, xt, 3.0f);
    GM_CHECK(r1 && gm_test_close(r1->data[0], want, 1e-5), "R1 %g, by hand %g", r1 ? r1->data[0] : -1.0f, want);
    gm_graph_free(g);
}

/* Hinge losses w.r.t. D's outputs (values away from the kinks at +-1). */
static gm_tensor *hinge_fn(gm_graph *g, gm_tensor **in, void *ctx) {
    (void)ctx;
    return gm_add(g, gm_gan_d_loss(g, GM_GAN_HINGE, in[0], in[1]), gm_scale(g, gm_gan_g_loss(g, GM_GAN_HINGE, in[1]), 0.7f));
}

GM_TEST(hinge_gradcheck) {
    float r[4] = {0.3f, 1.6f, -0.5f, 0.8f}, f[4] = {-1.7f, 0.2f, -0.4f, 1.3f}, *vals[2];
    static const int shapes[2][4] = {{4, 1, 0, 0}, {4, 1, 0, 0}};
    gm_graph *g = gm_graph_new(1);
    double err;
    /* by hand: real relu(1 - r) = .7, 0, 1.5, .2 -> mean .6; fake relu(1 + f) = 0, 1.2, .6, 2.3 -> 1.025 */
    GM_CHECK_CLOSE(gm_gan_d_loss(g, GM_GAN_HINGE, gm_input(g, r, 4, 1, 0, 0), gm_input(g, f, 4, 1, 0, 0))->data[0],
                   0.6 + 1.025, 1e-6);
    GM_CHECK_CLOSE(gm_gan_g_loss(g, GM_GAN_HINGE, gm_input(g, f, 4, 1, 0, 0))->data[0], -(-1.7 + 0.2 - 0.4 + 1.3) / 4, 1e-6);
    GM_CHECK(gm_gan_loss_parse("hinge") == GM_GAN_HINGE, "hinge's name");
    vals[0] = r; vals[1] = f;
    err = gm_gradcheck(hinge_fn, NULL, 2, vals, shapes, 1e-3f);
    GM_CHECK(err >= 0 && err < 1e-2, "hinge gradient vs finite differences: relative error %g", err);
    gm_graph_free(g);
}

/* The augmentation w.r.t. its input: a weighted sum of the augmented images (the graph's stream is
   restarted for every evaluation, so the translation and cutout are the same each time). */
static gm_tensor *aug_fn(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = gm_gan_augment(g, in[0], 2, 9, 10, *(int *)ctx);
    return gm_sum(g, gm_mul(g, y, sin_weights(g, y)));
}

GM_TEST(augment_gradcheck) {
    static const int shapes[1][4] = {{3, 2, 9, 10}};
    float x[3 * 180], *vals[1];
    int policy, i;
    fill_plain(x, 540, 8);
    vals[0] = x;
    for (policy = 1; policy <= 3; policy++) {
        double err = gm_gradcheck(aug_fn, &policy, 1, vals, shapes, 1e-2f);
        GM_CHECK(err >= 0 && err < 1e-3, "augment policy %d: gradient vs finite differences: relative error %g", policy, err);
    }
    (void)i;
}

/* Minibatch standard deviation: forward against a hand computation (double), copies of one image
   give the floor sqrt(1e-8), and its input gradient (first and second order: R1 differentiates D's
   input gradient) against finite differences. */
static gm_tensor *mbstd_fn(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = gm_gan_minibatch_stddev(g, in[0]);
    (void)ctx;
    return gm_sum(g, gm_mul(g, y, sin_weights(g, y)));
}

static gm_tensor *mbstd_grad_fn(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *d = gm_grad(g, mbstd_fn(g, in, ctx), in[0], 1);     /* kept on the tape: differentiable */
    gm_tensor *u;
    int i;
    if (!d) return NULL;
    u = gm_zeros(g, d->shape[0], d->shape[1], d->shape[2], d->shape[3]);
    for (i = 0; i < u->size; i++) u->data[i] = cosf(0.61f * (float)i - 0.3f);
    return gm_sum(g, gm_mul(g, d, u));
}

GM_TEST(minibatch_stddev) {
    enum { N = 3, C = 2, H = 2, W = 3, P = C * H * W };
    static const int shapes[1][4] = {{N, C, H, W}};
    float x[N * P], *vals[1];
    gm_graph *g = gm_graph_new(1);
    gm_tensor *y;
    double s = 0, err;
    int n, c, k, bad = 0;
    fill_plain(x, N * P, 21);
    for (k = 0; k < P; k++) {          /* by hand: population std over the batch, per position */
        double m = 0, v = 0;
        for (n = 0; n < N; n++) m += x[n * P + k] / (double)N;
        for (n = 0; n < N; n++) v += (x[n * P + k] - m) * (x[n * P + k] - m) / (double)N;
        s += sqrt(v + 1e-8) / P;
    }
    y = gm_gan_minibatch_stddev(g, gm_input(g, x, N, C, H, W));
    GM_CHECK(y && y->ndim == 4 && y->shape[0] == N && y->shape[1] == C + 1 && y->shape[2] == H && y->shape[3] == W,
             "shape (%d, %d+1, %d, %d) expected", N, C, H, W);
    for (n = 0; n < N; n++)
        for (c = 0; c <= C; c++)
            for (k = 0; k < H * W; k++) {
                double want = c < C ? x[n * P + c * H * W + k] : s, got = y->data[(n * (C + 1) + c) * H * W + k];
                if (fabs(got - want) > 1e-6) bad++;
            }
    GM_CHECK(bad == 0, "%d values off: the input channels copied, the extra one %.6f everywhere", bad, s);
    for (n = 1; n < N; n++) memcpy(x + n * P, x, P * sizeof(float));     /* a collapsed batch */
    y = gm_gan_minibatch_stddev(g, gm_input(g, x, N, C, H, W));
    GM_CHECK(y && fabsf(y->data[C * H * W] - 1e-4f) < 1e-6f, "copies of one image: %g, want sqrt(1e-8)", y ? y->data[C * H * W] : -1.0f);
    GM_CHECK(gm_gan_minibatch_stddev(g, gm_input(g, x, 1, C, H, W)) == NULL, "a batch of one refused");
    GM_CHECK(gm_gan_minibatch_stddev(g, gm_input(g, x, N, P, 0, 0)) == NULL, "a 2-D input refused");
    gm_graph_free(g);
    fill_plain(x, N * P, 22);
    vals[0] = x;
    err = gm_gradcheck(mbstd_fn, NULL, 1, vals, shapes, 1e-2f);
    GM_CHECK(err >= 0 && err < 1e-3, "first order: relative error %g", err);
    printf("# minibatch_stddev: first-order relative error %.2e\n", err);
    err = gm_gradcheck(mbstd_grad_fn, NULL, 1, vals, shapes, 1e-2f);
    GM_CHECK(err >= 0 && err < 1e-2, "second order: relative error %g (%s)", err, err < 0 ? gm_last_error() : "");
    printf("# minibatch_stddev: second-order relative error %.2e\n", err);
}

/* A DCGAN D with the channel: its dense layer sees one more plane, the checkpoint text names it,
   D's output on a batch depends on the other examples (it does without the channel only through
   batch norm, which eval mode turns off), and G or an MLP refuses it. */
GM_TEST(minibatch_stddev_in_d) {
    gm_gan_arch a = gm_gan_dcgan_d(0);
    gm_gan_net d;
    gm_rng r;
    gm_graph *g = gm_graph_new(1);
    float x[3 * 784];
    gm_tensor *o1, *o2;
    a.mbstd = 1;
    gm_rng_seed(&r, 5);
    GM_CHECK(gm_gan_net_init(&d, &a, &r) == 0, "%s", gm_last_error());
    GM_CHECK(d.layers[d.nlayers - 1].lin.in == (128 + 1) * 7 * 7, "dense input %d, want 129*49", d.layers[d.nlayers - 1].lin.in);
    fill_plain(x, 3 * 784, 4);
    gm_graph_set_training(g, 0);
    o1 = gm_gan_net_forward(g, &d, gm_input(g, x, 2, 1, 28, 28), NULL);
    o2 = gm_gan_net_forward(g, &d, gm_input(g, x, 3, 1, 28, 28), NULL);   /* the same first two, one more */
    GM_CHECK(o1 && o2 && o1->shape[0] == 2 && o2->shape[0] == 3, "outputs (2,1) and (3,1)");
    GM_CHECK(fabsf(o1->data[0] - o2->data[0]) > 1e-6f, "D(x0) should depend on the batch: %g vs %g", o1->data[0], o2->data[0]);
    gm_gan_net_free(&d);
    a = gm_gan_dcgan_g(100, 0); a.mbstd = 1;
    GM_CHECK(gm_gan_net_init(&d, &a, &r) != 0 && strstr(gm_last_error(), "mbstd"), "G with mbstd refused: %s", gm_last_error());
    a = gm_gan_mlp_d(784, 0); a.mbstd = 1;
    GM_CHECK(gm_gan_net_init(&d, &a, &r) != 0 && strstr(gm_last_error(), "mbstd"), "MLP D with mbstd refused: %s", gm_last_error());
    gm_graph_free(g);
}

/* The linear decay: lr (1 - done), done clamped to [0, 1]; NaN is the start. */
GM_TEST(lr_linear_values) {
    /* lr 0.75: the products below are exact in float */
    GM_CHECK(gm_gan_lr_linear(0.75f, 0.0) == 0.75f, "start: %g", gm_gan_lr_linear(0.75f, 0.0));
    GM_CHECK(gm_gan_lr_linear(0.75f, 0.25) == 0.5625f, "a quarter: %g", gm_gan_lr_linear(0.75f, 0.25));
    GM_CHECK(gm_gan_lr_linear(0.75f, 0.5) == 0.375f, "half-way: %g", gm_gan_lr_linear(0.75f, 0.5));
    GM_CHECK_CLOSE(gm_gan_lr_linear(2e-4f, 2999.0 / 3000.0), 2e-4 / 3000.0, 1e-12);
    GM_CHECK(gm_gan_lr_linear(0.75f, 1.0) == 0.0f && gm_gan_lr_linear(0.75f, 1.7) == 0.0f, "0 at and after the end");
    GM_CHECK(gm_gan_lr_linear(0.75f, -0.5) == 0.75f, "before the start: the full rate");
    GM_CHECK(gm_gan_lr_linear(0.75f, (double)NAN) == 0.75f, "NaN: the full rate");
}

/* The same stream gives the same transformation to two batches: translation is a shift of at most
   h/8 (rounded) with zero fill; cutout zeroes a rectangle of at most h/2 x w/2 (clipped) and keeps
   the rest; the flat (N, c*h*w) form is the image form. */
static int find_shift(const float *x, const float *y, int h, int w, int m) {
    int dy, dx, i, j;
    for (dy = -m; dy <= m; dy++)
        for (dx = -m; dx <= m; dx++) {
            int ok = 1;
            for (i = 0; i < h && ok; i++)
                for (j = 0; j < w && ok; j++) {
                    int si = i - dy, sj = j - dx;
                    float want = si >= 0 && si < h && sj >= 0 && sj < w ? x[si * w + sj] : 0.0f;
                    ok = y[i * w + j] == want;
                }
            if (ok) return (dy + m) * (2 * m + 1) + (dx + m);
        }
    return -1;
}

GM_TEST(augment_is_shift_and_cutout) {
    enum { N = 16, H = 28, W = 28 };
    static float a[N * H * W], b[N * H * W];
    gm_graph *g = gm_graph_new(1);
    gm_rng keep;
    gm_tensor *ya, *yb, *yf;
    int i, k, shifts_seen = 0, seen[81];
    memset(seen, 0, sizeof seen);
    for (i = 0; i < N * H * W; i++) { a[i] = 0.5f + (float)(i % 97) / 97; b[i] = 1.5f + (float)(i % 89) / 89; }
    keep = *gm_graph_rng(g);
    ya = gm_gan_augment(g, gm_input(g, a, N, 1, H, W), 1, H, W, GM_GAN_AUG_TRANSLATION);
    *gm_graph_rng(g) = keep;
    yb = gm_gan_augment(g, gm_input(g, b, N, 1, H, W), 1, H, W, GM_GAN_AUG_TRANSLATION);
    *gm_graph_rng(g) = keep;
    yf = gm_gan_augment(g, gm_input(g, a, N, H * W, 0, 0), 1, H, W, GM_GAN_AUG_TRANSLATION);
    GM_CHECK(ya && yb && yf && yf->ndim == 2 && yf->shape[1] == H * W, "augment failed or changed the shape: %s", gm_last_error());
    for (i = 0; ya && yb && i < N; i++) {
        int sa = find_shift(a + i * H * W, ya->data + i * H * W, H, W, 4);
        int sb = find_shift(b + i * H * W, yb->data + i * H * W, H, W, 4);
        GM_CHECK(sa >= 0 && sa == sb, "example %d: not the same shift of at most 4 pixels (%d, %d)", i, sa, sb);
        if (sa >= 0 && !seen[sa]++) shifts_seen++;
    }
    GM_CHECK(shifts_seen >= 8, "only %d different shifts in %d examples", shifts_seen, N);
    GM_CHECK(ya && yf && memcmp(ya->data, yf->data, sizeof a) == 0, "flat and image forms differ");
    *gm_graph_rng(g) = keep;
    ya = gm_gan_augment(g, gm_input(g, a, N, 1, H, W), 1, H, W, GM_GAN_AUG_CUTOUT);
    *gm_graph_rng(g) = keep;
    yb = gm_gan_augment(g, gm_input(g, b, N, 1, H, W), 1, H, W, GM_GAN_AUG_CUTOUT);
    for (i = 0; ya && yb && i < N; i++) {
        int y0 = H, y1 = -1, x0 = W, x1 = -1, zeros = 0, y, x, same = 1;
        for (y = 0; y < H; y++)
            for (x = 0; x < W; x++) {
                k = (i * H + y) * W + x;
                same &= (ya->data[k] == 0) == (yb->data[k] == 0);
                if (ya->data[k] != 0) { GM_CHECK(ya->data[k] == a[k], "cutout changed a kept pixel"); continue; }
                zeros++;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
            }
        GM_CHECK(same, "example %d: the two batches were cut at different places", i);
        GM_CHECK(zeros > 0 && zeros == (y1 - y0 + 1) * (x1 - x0 + 1) && y1 - y0 < 14 && x1 - x0 < 14,
                 "example %d: %d zeros are not one rectangle of at most 14x14", i, zeros);
    }
    GM_CHECK(gm_gan_augment(g, gm_input(g, a, N, 1, H, W), 1, H, W, 4) == NULL, "an unknown policy bit was accepted");
    gm_graph_free(g);
}

/* A constant target c: after k updates avg = c + (w0 - c) d^k for trained tensors; buffers are
   copied. The warm-up of the decay: min(d, (1 + t) / (10 + t)). */
GM_TEST(ema_closed_form) {
    gm_gan_arch arch = gm_gan_dcgan_g(4, 0);
    gm_gan_net net, avg;
    gm_rng r;
    float *w0;
    const float d = 0.9f;
    double worst = 0;
    int v, k;
    size_t j;
    arch.h = arch.w = 8; arch.hidden[0] = 6; arch.hidden[1] = 4;
    gm_rng_seed(&r, 3);
    GM_CHECK(gm_gan_net_init(&net, &arch, &r) == 0 && gm_gan_net_init(&avg, &arch, &r) == 0, "%s", gm_last_error());
    w0 = (float *)malloc(avg.params.count * sizeof(float));
    memcpy(w0, avg.params.data, avg.params.count * sizeof(float));
    for (j = 0; j < net.params.count; j++) net.params.data[j] = 0.25f + 0.001f * (float)(j % 13);
    for (k = 0; k < 7; k++) GM_CHECK(gm_gan_ema_update(&avg, &net, d) == 0, "%s", gm_last_error());
    for (v = 0; v < net.params.nviews; v++) {
        const gm_param_view *pv = &net.params.views[v];
        for (j = pv->offset; j < pv->offset + pv->size; j++) {
            double c = net.params.data[j], want = pv->buffer ? c : c + (w0[j] - c) * pow(d, 7);
            double e = fabs(avg.params.data[j] - want);
            if (e > worst) worst = e;
        }
    }
    GM_CHECK(worst < 1e-6, "average after 7 steps off the closed form by %g", worst);
    GM_CHECK_CLOSE(gm_gan_ema_decay(0.999f, 0), 0.1, 1e-7);
    GM_CHECK_CLOSE(gm_gan_ema_decay(0.999f, 10), 11.0 / 20, 1e-7);
    GM_CHECK_CLOSE(gm_gan_ema_decay(0.999f, 100000), 0.999, 1e-7);
    free(w0);
    gm_gan_net_free(&net);
    gm_gan_net_free(&avg);
}

/* ---------------------------------------------------------------------------------------------- */
/* Spectral normalization                                                                         */
/* ---------------------------------------------------------------------------------------------- */
static double top_singular(const float *w, int rows, int cols) {
    double *m = (double *)malloc((size_t)rows * rows * sizeof(double)), *V = (double *)malloc((size_t)rows * rows * sizeof(double));
    double *e = (double *)malloc((size_t)rows * sizeof(double)), s;
    int i, j, k;
    for (i = 0; i < rows; i++)                  /* W W^T */
        for (j = 0; j < rows; j++) {
            double t = 0;
            for (k = 0; k < cols; k++) t += (double)w[i * cols + k] * w[j * cols + k];
            m[i * rows + j] = t;
        }
    gm_eigh_sym(m, rows, e, V);
    s = sqrt(e[rows - 1]);
    free(m); free(V); free(e);
    return s;
}

GM_TEST(spectral_norm_estimate) {
    gm_params P;
    gm_rng r;
    gm_linear lin;
    gm_conv conv;
    gm_spectral sn, snc;
    gm_graph *g = gm_graph_new(1);
    double truth, truth_c, err = 1, err_c = 1;
    int step, at = -1;
    memset(&P, 0, sizeof P);
    gm_rng_seed(&r, 5);
    gm_linear_init(&lin, &P, "lin", 40, 24, GM_INIT_TORCH, &r);         /* (24, 40) */
    gm_conv_init(&conv, &P, "conv", 3, 8, 4, 2, 1, GM_INIT_TORCH, &r);  /* (8, 3, 4, 4) = 8 x 48 */
    GM_CHECK(gm_spectral_init(&sn, &P, lin.w, &r) == 0, "%s", gm_last_error());
    GM_CHECK(gm_spectral_init(&snc, &P, conv.w, &r) == 0, "%s", gm_last_error());
    GM_CHECK(gm_params_count(&P) == (size_t)(24 * 40 + 24 + 8 * 48 + 8), "u, v must be buffers, not trained (count %zu)",
             gm_params_count(&P));
    truth = top_singular(gm_params_data(&P, lin.w), 24, 40);
    truth_c = top_singular(gm_params_data(&P, conv.w), 8, 48);
    for (step = 1; step <= 200; step++) {     /* one power-iteration step per forward in training mode */
        gm_tensor *w, *wc;
        gm_graph_reset(g);
        w = gm_spectral_weight(g, &sn);
        wc = gm_spectral_weight(g, &snc);
        GM_CHECK(w && wc && w->ndim == 2 && wc->ndim == 4, "spectral weight shapes");
        err = fabs(gm_spectral_sigma(&sn) - truth) / truth;
        err_c = fabs(gm_spectral_sigma(&snc) - truth_c) / truth_c;
        if (at < 0 && err < 0.01) at = step;
    }
    GM_CHECK(err < 0.01, "estimate %g vs true sigma %g (%.3f%% off)", gm_spectral_sigma(&sn), truth, 100 * err);
    GM_CHECK(err_c < 0.01, "conv: estimate %g vs true sigma %g (%.3f%% off)", gm_spectral_sigma(&snc), truth_c, 100 * err_c);
    printf("# spectral_norm_estimate: true sigma %.5f, estimate %.5f after 200 steps (%.2e off; within 1%% from step %d); "
           "conv %.5f vs %.5f\n", truth, gm_spectral_sigma(&sn), err, at, truth_c, gm_spectral_sigma(&snc));
    {   /* the normalized weight's top singular value is 1 */
        gm_tensor *w;
        gm_graph_reset(g);
        w = gm_spectral_weight(g, &sn);
        GM_CHECK_CLOSE(top_singular(w->data, 24, 40), 1.0, 0.01);
    }
    gm_graph_free(g);
    gm_params_free(&P);
}

/* ---------------------------------------------------------------------------------------------- */
/* Losses                                                                                         */
/* ---------------------------------------------------------------------------------------------- */
GM_TEST(loss_values) {
    gm_graph *g = gm_graph_new(1);
    float r[2] = {0, 0}, f[2] = {0, 0}, r2[2] = {1, 3}, f2[2] = {-1, 1};
    gm_tensor *dr = gm_input(g, r, 2, 1, 0, 0), *df = gm_input(g, f, 2, 1, 0, 0);
    gm_tensor *dr2 = gm_input(g, r2, 2, 1, 0, 0), *df2 = gm_input(g, f2, 2, 1, 0, 0);
    GM_CHECK_CLOSE(gm_gan_d_loss(g, GM_GAN_NONSAT, dr, df)->data[0], 2 * log(2.0), 1e-6);
    GM_CHECK_CLOSE(gm_gan_g_loss(g, GM_GAN_NONSAT, df)->data[0], log(2.0), 1e-6);          /* -log D, D = 1/2 */
    GM_CHECK_CLOSE(gm_gan_g_loss(g, GM_GAN_MINIMAX, df)->data[0], -log(2.0), 1e-6);        /* log(1 - D) */
    GM_CHECK_CLOSE(gm_gan_d_loss(g, GM_GAN_LSGAN, dr2, df2)->data[0], 0.5 * (0 + 4) / 2 + 0.5 * (1 + 1) / 2, 1e-6);
    GM_CHECK_CLOSE(gm_gan_g_loss(g, GM_GAN_LSGAN, df2)->data[0], 0.5 * (4 + 0) / 2, 1e-6);
    GM_CHECK_CLOSE(gm_gan_d_loss(g, GM_GAN_WASSERSTEIN, dr2, df2)->data[0], 0 - 2, 1e-6);
    GM_CHECK_CLOSE(gm_gan_g_loss(g, GM_GAN_WASSERSTEIN, df2)->data[0], 0, 1e-6);
    GM_CHECK(gm_gan_loss_parse("lsgan") == GM_GAN_LSGAN && gm_gan_loss_parse("nope") == -1, "loss names");
    GM_CHECK(gm_gan_noise_std(0.5f, 0, 100) == 0.5f && gm_gan_noise_std(0.5f, 50, 100) == 0.25f &&
             gm_gan_noise_std(0.5f, 100, 100) == 0.0f, "instance noise schedule");
    gm_graph_free(g);
}

GM_TEST(bad_input_is_an_error) {
    gm_gan_config c = gm_gan_default_config(0);
    gm_cyclegan_config cc = gm_cyclegan_default_config(1, 28, 28);
    gm_gan gan;
    gm_cyclegan cg;
    gm_gan_net net;
    gm_gan_arch da;
    gm_rng r;
    float x[4] = {0, 0, 0, 0}, out[4];
    int labels[2] = {0, 3};
    memset(&gan, 0, sizeof gan);
    memset(&cg, 0, sizeof cg);
    gm_gan_free(&gan);                          /* zeroed models free safely, twice */
    gm_gan_free(&gan);
    gm_cyclegan_free(&cg);
    c.generator = gm_gan_mlp_g(2, 2, 0);
    c.discriminator = gm_gan_mlp_d(3, 0);
    GM_CHECK(gm_gan_init(&gan, &c) != 0, "G output 2 and D input 3 accepted");
    GM_CHECK(strstr(gm_last_error(), "generator makes") != NULL, "message: %s", gm_last_error());
    gm_gan_free(&gan);                          /* and failed ones */
    c.discriminator = gm_gan_mlp_d(2, 0);
    c.n_critic = 0;
    GM_CHECK(gm_gan_init(&gan, &c) != 0 && strstr(gm_last_error(), "n_critic"), "n_critic 0 accepted (%s)", gm_last_error());
    c.n_critic = 1;
    c.discriminator.dropout = 1.5f;
    GM_CHECK(gm_gan_init(&gan, &c) != 0 && strstr(gm_last_error(), "discriminator.dropout"), "dropout 1.5 accepted (%s)",
             gm_last_error());
    c.discriminator.dropout = 0;
    c.opt_d.lr = 0;
    GM_CHECK(gm_gan_init(&gan, &c) != 0 && strstr(gm_last_error(), "opt_d.lr"), "lr 0 accepted (%s)", gm_last_error());
    c.opt_d.lr = 1e-3f;
    c.generator.act = 99;
    GM_CHECK(gm_gan_init(&gan, &c) != 0 && strstr(gm_last_error(), "generator.act"), "act 99 accepted (%s)", gm_last_error());
    c.generator.act = GM_ACT_RELU;
    GM_CHECK(gm_gan_init(&gan, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_gan_train_step(&gan, x, labels, 2, NULL) != 0 && strstr(gm_last_error(), "unconditional"),
             "labels given to an unconditional GAN accepted (%s)", gm_last_error());
    GM_CHECK(gm_gan_sample(&gan, labels, 2, out) != 0, "labels given to an unconditional G accepted");
    GM_CHECK(gm_gan_train_step(&gan, x, NULL, 2, NULL) == 0, "%s", gm_last_error());
    gm_gan_free(&gan);
    gm_gan_free(&gan);
    c.generator.classes = c.discriminator.classes = 3;
    GM_CHECK(gm_gan_init(&gan, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_gan_train_step(&gan, x, NULL, 2, NULL) != 0 && strstr(gm_last_error(), "needs labels"),
             "conditional GAN without labels accepted (%s)", gm_last_error());
    GM_CHECK(gm_gan_sample(&gan, labels, 2, out) != 0 && strstr(gm_last_error(), "out of 0..2"),
             "label 3 of 3 classes accepted (%s)", gm_last_error());
    gm_gan_free(&gan);
    da = gm_gan_dcgan_d(0);
    da.h = 30;
    gm_rng_seed(&r, 1);
    GM_CHECK(gm_gan_net_init(&net, &da, &r) != 0, "30x28 image with 2 stride-2 stages accepted");
    cc.generator = gm_gan_mlp_g(2, 784, 0);
    GM_CHECK(gm_cyclegan_init(&cg, &cc) != 0 && strstr(gm_last_error(), "image-to-image"),
             "a CycleGAN with a noise generator accepted (%s)", gm_last_error());
    gm_cyclegan_free(&cg);
}

/* Shapes of the standard networks, conditional ones included. */
GM_TEST(network_shapes) {
    gm_gan_arch archs[6];
    int want[6][4] = {{3, 784, 0, 0}, {3, 1, 0, 0}, {3, 1, 28, 28}, {3, 1, 0, 0}, {3, 1, 28, 28}, {3, 1, 7, 7}};
    int labels[3] = {0, 4, 9}, i, k;
    gm_graph *g = gm_graph_new(1);
    gm_rng r;
    archs[0] = gm_gan_mlp_g(100, 784, 10); archs[1] = gm_gan_mlp_d(784, 10);
    archs[2] = gm_gan_dcgan_g(100, 10); archs[3] = gm_gan_dcgan_d(10); archs[3].spectral = 1;
    archs[4] = gm_cyclegan_g(1, 28, 28); archs[5] = gm_cyclegan_d(1, 28, 28);
    archs[4].classes = archs[5].classes = 0;
    gm_rng_seed(&r, 2);
    for (i = 0; i < 6; i++) {
        gm_gan_net net;
        gm_tensor *x, *y;
        GM_CHECK(gm_gan_net_init(&net, &archs[i], &r) == 0, "arch %d: %s", i, gm_last_error());
        gm_graph_reset(g);
        x = archs[i].generator && archs[i].kind != GM_GAN_IMG2IMG ? gm_randn(g, 3, 100, 0, 0) : gm_randn(g, 3, 1, 28, 28);
        y = gm_gan_net_forward(g, &net, x, archs[i].classes ? labels : NULL);
        GM_CHECK(y != NULL, "arch %d: %s", i, gm_last_error());
        for (k = 0; y && k < 4; k++)
            GM_CHECK(y->shape[k] == want[i][k] || (k >= y->ndim && want[i][k] == 0), "arch %d: dim %d is %d, want %d", i, k,
                     y->shape[k], want[i][k]);
        if (archs[i].classes) {   /* conditional without labels: an error, not a crash */
            gm_graph_reset(g);
            GM_CHECK(gm_gan_net_forward(g, &net, x, NULL) == NULL, "arch %d: missing labels accepted", i);
        }
        gm_gan_net_free(&net);
    }
    gm_graph_free(g);
}

/* ---------------------------------------------------------------------------------------------- */
/* The model contract: forward into a caller's graph, checkpoints                                 */
/* ---------------------------------------------------------------------------------------------- */
/* A small conditional GAN with every kind of saved state: batch norm in G (running statistics),
   spectral norm in D (power-iteration vectors), dropout and instance noise (the random stream),
   2 critic steps per G step (the step counters). conv: DCGAN networks on 8x8 images. */
static gm_gan_config small_gan(int conv) {
    gm_gan_config c = conv ? gm_gan_dcgan_config(3) : gm_gan_default_config(3);
    if (conv) {
        c.generator.z = 4; c.generator.h = c.generator.w = 8;
        c.generator.hidden[0] = 6; c.generator.hidden[1] = 4;
        c.discriminator.h = c.discriminator.w = 8;
        c.discriminator.hidden[0] = 4; c.discriminator.hidden[1] = 6;
        c.discriminator.dropout = 0.2f;
    } else {
        c.generator = gm_gan_mlp_g(4, 12, 3);
        c.generator.hidden[0] = 16; c.generator.hidden[1] = 8; c.generator.nhidden = 2;
        c.discriminator = gm_gan_mlp_d(12, 3);
        c.discriminator.hidden[0] = 8; c.discriminator.hidden[1] = 16; c.discriminator.nhidden = 2;
    }
    c.discriminator.spectral = 1;
    c.n_critic = 2; c.noise = 0.1f; c.noise_steps = 40;
    c.batch = 8; c.seed = 5;
    return c;
}

static int same_params(const gm_params *a, const gm_params *b) {
    return a->count == b->count && (a->count == 0 || memcmp(a->data, b->data, a->count * sizeof(float)) == 0);
}

static int same_optim(const gm_optim *a, const gm_optim *b, size_t n) {
    return a->kind == b->kind && a->step == b->step && a->lr == b->lr && !a->m == !b->m && !a->v == !b->v &&
           (!a->m || memcmp(a->m, b->m, n * sizeof(float)) == 0) && (!a->v || memcmp(a->v, b->v, n * sizeof(float)) == 0);
}

static int same_gan(const gm_gan *a, const gm_gan *b) {
    return same_params(&a->generator.params, &b->generator.params) &&
           same_params(&a->generator_ema.params, &b->generator_ema.params) &&
           same_params(&a->discriminator.params, &b->discriminator.params) &&
           same_optim(&a->opt_g, &b->opt_g, a->generator.params.count) &&
           same_optim(&a->opt_d, &b->opt_d, a->discriminator.params.count) && a->d_steps == b->d_steps &&
           a->g_steps == b->g_steps;
}

static void fill(float *x, int n, unsigned seed) {
    gm_rng r;
    int i;
    gm_rng_seed(&r, seed);
    for (i = 0; i < n; i++) x[i] = 2 * gm_rng_uniform(&r) - 1;
}

/* gm_gan_forward emits G into our graph: in eval mode it is gm_gan_sample_z, bit for bit. */
GM_TEST(forward_into_own_graph) {
    gm_gan_config c = small_gan(1);
    gm_gan gan;
    gm_graph *g = gm_graph_new(1);
    float z[5 * 4], want[5 * 64];
    int labels[5] = {0, 1, 2, 0, 1};
    gm_tensor *y;
    GM_CHECK(gm_gan_init(&gan, &c) == 0, "%s", gm_last_error());
    fill(z, 5 * 4, 3);
    GM_CHECK(gm_gan_sample_z(&gan, z, labels, 5, want) == 0, "%s", gm_last_error());
    gm_graph_set_training(g, 0);
    y = gm_gan_forward(g, &gan, gm_input(g, z, 5, 4, 0, 0), labels);
    GM_CHECK(y && y->ndim == 4 && y->shape[0] == 5 && y->shape[1] == 1 && y->shape[2] == 8 && y->shape[3] == 8,
             "G's output shape (%s)", y ? "wrong dims" : gm_last_error());
    GM_CHECK(y && memcmp(y->data, want, sizeof want) == 0, "gm_gan_forward differs from gm_gan_sample_z");
    gm_graph_free(g);
    gm_gan_free(&gan);
}

/* Save after some steps, load into a fresh model of the same config: the same samples, and the
   next step (noise, dropout masks, penalty, instance-noise level, critic phase) is bit-identical. */
static void gan_roundtrip(int conv, int modern) {
    const char *path = "/tmp/gm_test_gan_ckpt.safetensors";
    gm_gan_config c = small_gan(conv);
    gm_gan a, b;
    gm_gan_stats sa, sb;
    const int per = c.generator.c * c.generator.h * c.generator.w;
    float x[8 * 64], z[8 * 4], outa[8 * 64], outb[8 * 64];
    int labels[8], i, step;
    for (i = 0; i < 8; i++) labels[i] = i % 3;
    if (modern) {   /* the moving average, R1, augmentation, hinge loss */
        c.ema = 0.9f; c.r1 = 1.0f; c.augment = GM_GAN_AUG_TRANSLATION | GM_GAN_AUG_CUTOUT; c.loss = GM_GAN_HINGE;
    }
    GM_CHECK(gm_gan_init(&a, &c) == 0 && gm_gan_init(&b, &c) == 0, "%s", gm_last_error());
    for (step = 0; step < 5; step++) {       /* ends mid-cycle: the next call ends it with a G step */
        fill(x, 8 * per, 100 + step);
        GM_CHECK(gm_gan_train_step(&a, x, labels, 8, NULL) == 0, "step %d: %s", step, gm_last_error());
    }
    GM_CHECK(gm_gan_save(&a, path) == 0, "save: %s", gm_last_error());
    GM_CHECK(!same_gan(&a, &b), "the trained model should differ from a fresh one");
    GM_CHECK(gm_gan_load(&b, path) == 0, "load: %s", gm_last_error());
    GM_CHECK(same_gan(&a, &b), "weights, buffers, optimizer state or step counters differ after load");
    GM_CHECK(b.d_steps == 5 && b.g_steps == 2, "steps after load: D %ld, G %ld (want 5, 2)", b.d_steps, b.g_steps);
    fill(z, 8 * 4, 7);
    GM_CHECK(gm_gan_sample_z(&a, z, labels, 8, outa) == 0 && gm_gan_sample_z(&b, z, labels, 8, outb) == 0, "%s",
             gm_last_error());
    GM_CHECK(memcmp(outa, outb, (size_t)8 * per * sizeof(float)) == 0, "samples from given noise differ after load");
    GM_CHECK(gm_gan_sample(&a, labels, 8, outa) == 0 && gm_gan_sample(&b, labels, 8, outb) == 0, "%s", gm_last_error());
    GM_CHECK(memcmp(outa, outb, (size_t)8 * per * sizeof(float)) == 0, "the random stream was not restored");
    for (step = 0; step < 2; step++) {       /* a step with the G step, then a critic-only one */
        fill(x, 8 * per, 200 + step);
        GM_CHECK(gm_gan_train_step(&a, x, labels, 8, &sa) == 0 && gm_gan_train_step(&b, x, labels, 8, &sb) == 0,
                 "%s", gm_last_error());
        GM_CHECK(memcmp(&sa, &sb, sizeof sa) == 0, "step %d after load: stats differ (D loss %g vs %g)", step,
                 sa.d_loss, sb.d_loss);
        GM_CHECK(same_gan(&a, &b), "step %d after load differs from the step without save/load", step);
        GM_CHECK(sb.g_step == (step == 0), "step %d after load: g_step %d (the critic phase was not restored)", step,
                 sb.g_step);
    }
    gm_gan_free(&a);
    gm_gan_free(&b);
    remove(path);
}

GM_TEST(gan_save_load_mlp) { gan_roundtrip(0, 0); }
GM_TEST(gan_save_load_conv) { gan_roundtrip(1, 0); }
GM_TEST(gan_save_load_ema) { gan_roundtrip(1, 1); }

/* A file without the moving average into a model with one (and the reverse) is refused, naming
   both architectures, and leaves the model untouched: a silently fresh average would sample from
   G's random initial weights. */
GM_TEST(gan_load_refuses_ema_mismatch) {
    const char *p0 = "/tmp/gm_test_gan_noema.safetensors", *p1 = "/tmp/gm_test_gan_ema.safetensors";
    gm_gan_config c0 = small_gan(1), c1 = c0;
    gm_gan m0, m1;
    float keep[4096];
    c1.ema = 0.99f;
    GM_CHECK(gm_gan_init(&m0, &c0) == 0 && gm_gan_init(&m1, &c1) == 0, "%s", gm_last_error());
    GM_CHECK(m1.generator_ema.params.count <= 4096 && m1.use_ema == 1 && m0.use_ema == 0, "EMA fields after init");
    GM_CHECK(memcmp(m1.generator_ema.params.data, m1.generator.params.data, m1.generator.params.count * sizeof(float)) == 0,
             "the average does not start as G");
    GM_CHECK(gm_gan_save(&m0, p0) == 0 && gm_gan_save(&m1, p1) == 0, "%s", gm_last_error());
    memcpy(keep, m1.generator_ema.params.data, m1.generator_ema.params.count * sizeof(float));
    GM_CHECK(gm_gan_load(&m1, p0) != 0 && strstr(gm_last_error(), "ema") != NULL, "no-EMA file into an EMA model: %s",
             gm_last_error());
    printf("# refused a file without the average: %s\n", gm_last_error());
    GM_CHECK(memcmp(keep, m1.generator_ema.params.data, m1.generator_ema.params.count * sizeof(float)) == 0,
             "a refused load changed the average");
    GM_CHECK(gm_gan_load(&m0, p1) != 0, "an EMA file loaded into a model without the average");
    GM_CHECK(gm_gan_load(&m1, p1) == 0 && gm_gan_load(&m0, p0) == 0, "own files: %s", gm_last_error());
    gm_gan_free(&m0); gm_gan_free(&m1);
    remove(p0); remove(p1);
}

/* The average kept by training itself, on the sequence of weights G actually takes: after T G steps
   it must equal the closed form  w_0 prod_t d_t + sum_t (1 - d_t) w_{t+1} prod_{s>t} d_s  with the
   warmed-up decays d_t = min(ema, (1+t)/(10+t)), computed here in double from recorded snapshots.
   Batch-norm buffers are copied, not averaged. */
GM_TEST(ema_follows_training_sequence) {
    enum { T = 12 };
    gm_gan_config c = small_gan(1);
    gm_gan m;
    gm_gan_stats st;
    float x[8 * 64];
    double *want, worst = 0, moved = 0;
    int labels[8], i, t = 0, step;
    size_t j, n;
    for (i = 0; i < 8; i++) labels[i] = i % 3;
    c.ema = 0.8f; c.n_critic = 1; c.noise = 0;
    c.opt_g.lr = 0.05f;      /* large moves, so a wrong decay (even one step off) shows */
    GM_CHECK(gm_gan_init(&m, &c) == 0, "%s", gm_last_error());
    n = m.generator.params.count;
    want = (double *)malloc(n * sizeof(double));
    for (j = 0; j < n; j++) want[j] = m.generator.params.data[j];     /* w_0: the average starts as G */
    for (step = 0; step < T; step++) {
        fill(x, 8 * 64, 300 + step);
        GM_CHECK(gm_gan_train_step(&m, x, labels, 8, &st) == 0 && st.g_step, "step %d: %s", step, gm_last_error());
        {   const double d = gm_gan_ema_decay(c.ema, t++);
            for (j = 0; j < n; j++) want[j] = d * want[j] + (1 - d) * m.generator.params.data[j]; }
    }
    for (i = 0; i < m.generator.params.nviews; i++) {
        const gm_param_view *pv = &m.generator.params.views[i];
        for (j = pv->offset; j < pv->offset + pv->size; j++) {
            double w = pv->buffer ? m.generator.params.data[j] : want[j], e = fabs(m.generator_ema.params.data[j] - w);
            if (e > worst) worst = e;
            if (!pv->buffer) moved += fabs(m.generator_ema.params.data[j] - m.generator.params.data[j]);
        }
    }
    printf("# EMA after %d training steps: max abs error %.3g vs the closed form; mean |avg - G| %.3g\n", T, worst,
           moved / (double)n);
    GM_CHECK(worst < 1e-5, "the trained average is %g off the closed form", worst);
    GM_CHECK(moved > 1e-6 * (double)n, "the average equals G: nothing was averaged");
    free(want);
    gm_gan_free(&m);
}

/* Standing statistics of the average: recalibrating over B batches leaves each batch-norm running
   mean and variance at the plain average of the B batches' own (each measured alone by a
   one-batch recalibration from the same point of the stream); weights and momentum untouched. */
GM_TEST(ema_recalibrate_averages_batches) {
    enum { B = 5 };
    gm_gan_config c = small_gan(1);
    gm_gan m;
    gm_rng start;
    float *w0, *sum, *buf0;
    int b, k, nbuf = 0;
    size_t n, j;
    double worst = 0;
    c.ema = 0.9f;
    c.generator.batchnorm = 1;
    GM_CHECK(gm_gan_init(&m, &c) == 0, "%s", gm_last_error());
    n = m.generator_ema.params.count;
    w0 = (float *)malloc(n * sizeof(float)); sum = (float *)calloc(n, sizeof(float)); buf0 = (float *)malloc(n * sizeof(float));
    memcpy(w0, m.generator_ema.params.data, n * sizeof(float));
    start = *gm_graph_rng(m.graph);
    for (b = 0; b < B; b++) {                  /* each batch alone: momentum 1 */
        GM_CHECK(gm_gan_ema_recalibrate(&m, 1) == 0, "%s", gm_last_error());
        for (j = 0; j < n; j++) sum[j] += m.generator_ema.params.data[j] / B;
    }
    memcpy(m.generator_ema.params.data, w0, n * sizeof(float));
    *gm_graph_rng(m.graph) = start;
    GM_CHECK(gm_gan_ema_recalibrate(&m, B) == 0, "%s", gm_last_error());
    for (k = 0; k < m.generator_ema.params.nviews; k++) {
        const gm_param_view *pv = &m.generator_ema.params.views[k];
        for (j = pv->offset; j < pv->offset + pv->size; j++) {
            if (!pv->buffer) {
                GM_CHECK(m.generator_ema.params.data[j] == w0[j], "a weight changed");
                continue;
            }
            nbuf += m.generator_ema.params.data[j] != w0[j];
            worst = fmax(worst, fabs(m.generator_ema.params.data[j] - sum[j]) / fmax(1.0, fabs(sum[j])));
        }
    }
    for (k = 0; k < m.generator_ema.nlayers; k++)
        GM_CHECK(!m.generator_ema.layers[k].has_bn || m.generator_ema.layers[k].bn.momentum == 0.1f, "momentum not restored");
    printf("# recalibrated %d batch-norm values; off the average of %d one-batch measurements by %.2g\n", nbuf, B, worst);
    GM_CHECK(nbuf > 0 && worst < 1e-5, "%d values changed, %g off the average", nbuf, worst);
    memcpy(buf0, m.generator.params.data, n * sizeof(float));
    m.cfg.ema = 0;                              /* without an average: nothing to do */
    GM_CHECK(gm_gan_ema_recalibrate(&m, 3) == 0 && memcmp(buf0, m.generator.params.data, n * sizeof(float)) == 0,
             "recalibrate without an average changed G");
    m.cfg.ema = 0.9f;
    GM_CHECK(gm_gan_ema_recalibrate(&m, 0) != 0, "0 batches accepted");
    free(w0); free(sum); free(buf0);
    gm_gan_free(&m);
}

static gm_cyclegan_config small_cyclegan(void) {
    gm_cyclegan_config c = gm_cyclegan_default_config(1, 8, 8);
    c.generator.hidden[0] = 4; c.generator.hidden[1] = 6; c.generator.nhidden = 2;
    c.discriminator.hidden[0] = 4; c.discriminator.hidden[1] = 6;
    c.generator.batchnorm = 1;     /* running statistics to carry */
    c.identity = 5;
    c.seed = 3;
    return c;
}

static int same_cyclegan(const gm_cyclegan *a, const gm_cyclegan *b) {
    return same_params(&a->gen_ab.params, &b->gen_ab.params) && same_params(&a->gen_ba.params, &b->gen_ba.params) &&
           same_params(&a->gen_ab_ema.params, &b->gen_ab_ema.params) &&
           same_params(&a->gen_ba_ema.params, &b->gen_ba_ema.params) &&
           same_params(&a->disc_a.params, &b->disc_a.params) && same_params(&a->disc_b.params, &b->disc_b.params) &&
           same_optim(&a->opt_ab, &b->opt_ab, a->gen_ab.params.count) &&
           same_optim(&a->opt_db, &b->opt_db, a->disc_b.params.count) && a->step == b->step;
}

static void cyclegan_roundtrip(float ema) {
    const char *path = "/tmp/gm_test_cyclegan_ckpt.safetensors";
    gm_cyclegan_config c = small_cyclegan();
    gm_cyclegan a, b;
    gm_cyclegan_stats sa, sb;
    float xa[4 * 64], xb[4 * 64], oa[4 * 64], ob[4 * 64];
    int step;
    c.ema = ema;
    GM_CHECK(gm_cyclegan_init(&a, &c) == 0 && gm_cyclegan_init(&b, &c) == 0, "%s", gm_last_error());
    for (step = 0; step < 3; step++) {
        fill(xa, 4 * 64, 10 + step); fill(xb, 4 * 64, 20 + step);
        GM_CHECK(gm_cyclegan_train_step(&a, xa, xb, 4, NULL) == 0, "%s", gm_last_error());
    }
    GM_CHECK(gm_cyclegan_save(&a, path) == 0, "save: %s", gm_last_error());
    GM_CHECK(gm_cyclegan_load(&b, path) == 0, "load: %s", gm_last_error());
    GM_CHECK(same_cyclegan(&a, &b) && b.step == 3, "the four networks or their optimizers differ after load");
    GM_CHECK(gm_cyclegan_translate(&a, 1, xa, 4, oa) == 0 && gm_cyclegan_translate(&b, 1, xa, 4, ob) == 0, "%s",
             gm_last_error());
    GM_CHECK(memcmp(oa, ob, sizeof oa) == 0, "A -> B translations differ after load");
    GM_CHECK(gm_cyclegan_translate(&a, 0, xb, 4, oa) == 0 && gm_cyclegan_translate(&b, 0, xb, 4, ob) == 0, "%s",
             gm_last_error());
    GM_CHECK(memcmp(oa, ob, sizeof oa) == 0, "B -> A translations differ after load");
    fill(xa, 4 * 64, 30); fill(xb, 4 * 64, 31);
    GM_CHECK(gm_cyclegan_train_step(&a, xa, xb, 4, &sa) == 0 && gm_cyclegan_train_step(&b, xa, xb, 4, &sb) == 0, "%s",
             gm_last_error());
    GM_CHECK(memcmp(&sa, &sb, sizeof sa) == 0 && same_cyclegan(&a, &b), "the step after load differs");
    GM_CHECK(a.use_ema == (ema > 0) && (ema == 0 || memcmp(a.gen_ab_ema.params.data, a.gen_ab.params.data,
                                                          a.gen_ab.params.count * sizeof(float)) != 0),
             "the average should differ from the trained generator");
    gm_cyclegan_free(&a);
    gm_cyclegan_free(&b);
    remove(path);
}

GM_TEST(cyclegan_save_load) { cyclegan_roundtrip(0); }
GM_TEST(cyclegan_save_load_ema) { cyclegan_roundtrip(0.9f); }

/* Refused loads (another architecture, another model, a plain checkpoint, no file) leave the
   model as it was: weights, buffers, optimizers, counters, random stream. */
GM_TEST(gan_load_refuses_other_files) {
    const char *mlp_path = "/tmp/gm_test_gan_mlp.safetensors", *wide_path = "/tmp/gm_test_gan_wide.safetensors";
    const char *plain_path = "/tmp/gm_test_gan_plain.safetensors", *cyc_path = "/tmp/gm_test_gan_cyc.safetensors";
    gm_gan_config cm = gm_gan_default_config(0), cw = cm, cc = gm_gan_dcgan_config(0);
    gm_cyclegan_config ccyc = small_cyclegan();
    gm_gan mlp, wide, conv;
    gm_cyclegan cyc;
    float *x = (float *)malloc(64 * 784 * sizeof(float)), *keep_g, *keep_d, ref[2 * 784], got[2 * 784], z[2 * 100];
    size_t ng, nd;
    int i;
    fill(x, 64 * 784, 1);
    fill(z, 2 * 100, 2);
    cw.discriminator.hidden[1] = 384;        /* the same layers, another width */
    GM_CHECK(gm_gan_init(&mlp, &cm) == 0 && gm_gan_init(&wide, &cw) == 0 && gm_gan_init(&conv, &cc) == 0, "%s",
             gm_last_error());
    GM_CHECK(gm_cyclegan_init(&cyc, &ccyc) == 0, "%s", gm_last_error());
    GM_CHECK(gm_gan_train_step(&mlp, x, NULL, 64, NULL) == 0 && gm_gan_train_step(&conv, x, NULL, 64, NULL) == 0, "%s",
             gm_last_error());
    GM_CHECK(gm_gan_save(&mlp, mlp_path) == 0 && gm_gan_save(&wide, wide_path) == 0, "%s", gm_last_error());
    GM_CHECK(gm_cyclegan_save(&cyc, cyc_path) == 0, "%s", gm_last_error());
    GM_CHECK(gm_checkpoint_save(plain_path, &mlp.generator.params, NULL, NULL) == 0, "%s", gm_last_error());
    /* the conv model, trained one step, as it is before the refused loads */
    ng = conv.generator.params.count; nd = conv.discriminator.params.count;
    keep_g = (float *)malloc(ng * sizeof(float)); keep_d = (float *)malloc(nd * sizeof(float));
    memcpy(keep_g, conv.generator.params.data, ng * sizeof(float));
    memcpy(keep_d, conv.discriminator.params.data, nd * sizeof(float));
    {   gm_rng r0 = *gm_graph_rng(conv.graph);
        gm_optim og = conv.opt_g;
        struct { const char *path, *what, *says; } cases[4] = {
            {mlp_path, "an MLP GAN into a DCGAN", "mlp"},
            {cyc_path, "a CycleGAN into a GAN", "cyclegan"},
            {plain_path, "a plain checkpoint of G's weights", "gan"},
            {"/nonexistent/gm_test_gan.safetensors", "a missing file", "gm_test_gan"},
        };
        GM_CHECK(gm_gan_sample_z(&conv, z, NULL, 2, ref) == 0, "%s", gm_last_error());
        for (i = 0; i < 4; i++) {
            GM_CHECK(gm_gan_load(&conv, cases[i].path) != 0, "%s: load accepted", cases[i].what);
            GM_CHECK(strstr(gm_last_error(), cases[i].says) != NULL, "%s: message '%s' does not mention '%s'",
                     cases[i].what, gm_last_error(), cases[i].says);
            printf("# refused %s: %s\n", cases[i].what, gm_last_error());
        }
        GM_CHECK(memcmp(keep_g, conv.generator.params.data, ng * sizeof(float)) == 0 &&
                 memcmp(keep_d, conv.discriminator.params.data, nd * sizeof(float)) == 0, "a refused load changed weights");
        GM_CHECK(memcmp(&r0, gm_graph_rng(conv.graph), sizeof r0) == 0, "a refused load changed the random stream");
        GM_CHECK(conv.d_steps == 1 && conv.g_steps == 1 && conv.opt_g.step == og.step && conv.opt_g.m == og.m,
                 "a refused load changed the counters or the optimizer");
        GM_CHECK(gm_gan_sample_z(&conv, z, NULL, 2, got) == 0 && memcmp(ref, got, sizeof ref) == 0,
                 "samples changed after refused loads");
    }
    /* other widths, the other way round: the MLP GAN refuses the wider one's file, untouched */
    memcpy(got, mlp.generator.params.data, sizeof got);
    GM_CHECK(gm_gan_load(&mlp, wide_path) != 0, "a GAN with a 384-wide D layer loaded into a 512-wide one");
    GM_CHECK(strstr(gm_last_error(), "384") != NULL, "message '%s' does not name the other width", gm_last_error());
    printf("# refused other widths: %s\n", gm_last_error());
    GM_CHECK(memcmp(got, mlp.generator.params.data, sizeof got) == 0 && mlp.d_steps == 1, "a refused load changed the MLP GAN");
    GM_CHECK(gm_gan_load(&mlp, mlp_path) == 0, "its own file: %s", gm_last_error());
    free(x); free(keep_g); free(keep_d);
    gm_gan_free(&mlp); gm_gan_free(&wide); gm_gan_free(&conv);
    gm_cyclegan_free(&cyc);
    remove(mlp_path); remove(wide_path); remove(plain_path); remove(cyc_path);
}

/* ---------------------------------------------------------------------------------------------- */
/* Learning the 8-Gaussians ring                                                                  */
/* ---------------------------------------------------------------------------------------------- */
/* The benchmark ring: radius 2, per-mode std 0.02 (high quality = within 0.06 of a mode). Critics
   held to Lipschitz constant ~1 (WGAN, WGAN-GP, spectral norm) cannot draw peaks that narrow in a
   few thousand steps, so their variants train on std 0.05 (high quality = within 0.15); see
   docs/notes/GAN_NOTES.md for the numbers at both widths. */
#define RING_N 4096

typedef struct variant {
    const char *name;
    int loss, n_critic, spectral, classes, steps;
    float gp, clip, noise, std, hq_min, r1, ema;
} variant;

static double now_s(void) { return (double)clock() / CLOCKS_PER_SEC; }

/* Trains a small MLP GAN (G 2->64->64->2, D 2->64->64->1, LeakyReLU) on the ring with lr 2e-3
   decaying to 1e-4 (cosine); returns the number of covered modes. */
static int train_ring(const variant *v, float *hq_out, float *acc_out, double *secs) {
    static float data[2 * RING_N], batch[2 * 128], samples[2 * 2000];
    static int labels[RING_N], blab[128], slab[2000];
    const float lr = 2e-3f;
    gm_gan_config c = gm_gan_default_config(v->classes);
    gm_gan gan;
    gm_batcher b;
    const int *idx;
    int step = 0, k, covered = -1, i, hit = 0;
    double t0 = now_s();
    c.generator = gm_gan_mlp_g(2, 2, v->classes);
    c.discriminator = gm_gan_mlp_d(2, v->classes);
    c.generator.hidden[0] = c.generator.hidden[1] = 64; c.generator.nhidden = 2;
    c.generator.batchnorm = 0; c.generator.out_act = GM_ACT_IDENTITY;
    c.discriminator.hidden[0] = c.discriminator.hidden[1] = 64; c.discriminator.nhidden = 2;
    c.discriminator.dropout = 0; c.discriminator.spectral = v->spectral; c.discriminator.act = GM_ACT_LEAKY_RELU;
    c.loss = v->loss; c.n_critic = v->n_critic; c.gp = v->gp; c.r1 = v->r1; c.ema = v->ema;
    c.noise = v->noise; c.noise_steps = (long)v->steps * v->n_critic / 2;
    c.opt_g.lr = c.opt_d.lr = lr;
    if (v->clip > 0) {              /* WGAN with clipping: RMSProp, alpha 0.99 */
        c.opt_g.kind = c.opt_d.kind = GM_RMSPROP;
        c.opt_g.beta2 = c.opt_d.beta2 = 0.99f;
        c.opt_d.clip_value = v->clip;
    } else if (v->gp > 0) {
        c.opt_g.beta2 = c.opt_d.beta2 = 0.9f;
    }
    c.seed = 1;
    gm_toy2d("8gaussians", RING_N, 11, v->std, data, labels);
    if (gm_gan_init(&gan, &c) != 0) { printf("# %s: %s\n", v->name, gm_last_error()); return -1; }
    /* The weights come from seed 1 and the training noise from a stream seeded with 9: the runs
       measured in docs/notes/GAN_NOTES.md, kept bit for bit (the clipped WGAN is seed-sensitive). */
    gm_rng_seed(gm_graph_rng(gan.graph), 9);
    gan.opt_g.sched.kind = gan.opt_d.sched.kind = GM_LR_COSINE;     /* decay to 5%: sharpens the modes */
    gan.opt_g.sched.total = v->steps; gan.opt_d.sched.total = (long)v->steps * v->n_critic;
    gan.opt_g.sched.min_lr = gan.opt_d.sched.min_lr = lr * 0.05f;
    gm_batcher_init(&b, RING_N, 128, 5, 1);
    while (gan.g_steps < v->steps) {
        k = gm_batcher_next(&b, &idx);
        if (k == 0) continue;
        for (i = 0; i < k; i++) {
            batch[2 * i] = data[2 * idx[i]]; batch[2 * i + 1] = data[2 * idx[i] + 1];
            blab[i] = labels[idx[i]];
        }
        if (gm_gan_train_step(&gan, batch, v->classes ? blab : NULL, k, NULL) != 0) {
            printf("# %s: step %d: %s\n", v->name, step, gm_last_error());
            break;
        }
        step++;
    }
    for (i = 0; i < 2000; i++) slab[i] = i % 8;
    if (gm_gan_sample(&gan, v->classes ? slab : NULL, 2000, samples) == 0)
        covered = gm_ring_modes(samples, 2000, 8, 2.0f, v->std, 20, hq_out);
    for (i = 0; v->classes && i < 2000; i++) {   /* conditional: nearest mode == the label asked for */
        float a = atan2f(samples[2 * i + 1], samples[2 * i]);
        int mode = ((int)lrintf(a / (2 * 3.14159265f / 8)) + 8) % 8;
        hit += mode == slab[i];
    }
    if (acc_out) *acc_out = (float)hit / 2000;
    *secs = now_s() - t0;
    gm_batcher_free(&b);
    gm_gan_free(&gan);
    return covered;
}

static void ring_check(const variant *v) {
    float hq = 0, acc = 0;
    double secs;
    int covered = train_ring(v, &hq, &acc, &secs);
    GM_CHECK(covered >= 7, "%s: covers %d of 8 modes (hq %.3f)", v->name, covered, hq);
    GM_CHECK(hq >= v->hq_min, "%s: only %.1f%% of samples within 3 std of a mode (want %.0f%%)", v->name, 100 * hq,
             100 * v->hq_min);
    if (v->classes) GM_CHECK(acc > 0.5f, "%s: %.1f%% of samples at their label's mode (chance 12.5%%)", v->name, 100 * acc);
    printf("# %s: %d G steps, std %.2f: %d/8 modes, %.1f%% high quality", v->name, v->steps, v->std, covered, 100 * hq);
    if (v->classes) printf(", %.1f%% at their label's mode", 100 * acc);
    printf(" (%.1f s CPU)\n", secs);
}

/*                                  name                loss         n_c sn cls steps  gp    clip  noise std    hq_min r1  ema */
static const variant V_NONSAT  = {"ring_nonsat",       GM_GAN_NONSAT,  1, 0, 0, 2000, 0,    0,    0,    0.02f, 0.5f, 0,    0};
static const variant V_MINIMAX = {"ring_minimax",      GM_GAN_MINIMAX, 1, 0, 0, 2000, 0,    0,    0,    0.02f, 0.5f, 0,    0};
static const variant V_LSGAN   = {"ring_lsgan",        GM_GAN_LSGAN,   1, 0, 0, 2000, 0,    0,    0,    0.02f, 0.5f, 0,    0};
static const variant V_NOISE   = {"ring_nonsat_noise", GM_GAN_NONSAT,  1, 0, 0, 2000, 0,    0,    0.1f, 0.02f, 0.5f, 0,    0};
static const variant V_CGAN    = {"ring_cgan",         GM_GAN_NONSAT,  1, 0, 8, 2000, 0,    0,    0,    0.02f, 0.5f, 0,    0};
static const variant V_SN      = {"ring_lsgan_sn",     GM_GAN_LSGAN,   1, 1, 0, 2000, 0,    0,    0,    0.05f, 0.5f, 0,    0};
static const variant V_WGANGP  = {"ring_wgan_gp",      GM_GAN_WASSERSTEIN, 5, 0, 0, 1000, 0.1f, 0, 0,    0.05f, 0.5f, 0,    0};
static const variant V_WGAN    = {"ring_wgan_clip",    GM_GAN_WASSERSTEIN, 5, 0, 0, 1000, 0, 0.05f, 0,   0.05f, 0.15f, 0,    0};

static const variant V_HINGE   = {"ring_hinge_r1_ema", GM_GAN_HINGE,   1, 0, 0, 2000, 0,    0,    0,    0.02f, 0.5f, 0.1f, 0.99f};

GM_TEST(ring_nonsat) { ring_check(&V_NONSAT); }
GM_TEST(ring_hinge_r1_ema) { ring_check(&V_HINGE); }
GM_TEST(ring_minimax) { ring_check(&V_MINIMAX); }
GM_TEST(ring_lsgan) { ring_check(&V_LSGAN); }
GM_TEST(ring_instance_noise) { ring_check(&V_NOISE); }
GM_TEST(ring_conditional) { ring_check(&V_CGAN); }
GM_TEST(ring_spectral_norm) { ring_check(&V_SN); }
GM_TEST(ring_wgan_gp) { ring_check(&V_WGANGP); }
GM_TEST(ring_wgan_clip) { ring_check(&V_WGAN); }

/* PacGAN (arch.pack): D scores packs of consecutive examples joined along the channels. A packed D
   is the unpacked D of p*c channels (the same weights from the same stream) on the same memory;
   a pack's score depends on its own examples only; batches that do not divide are refused; the
   input gradient (first order) and R1's gradient (second order, R1 trains D through it) match
   finite differences; R1 averages over the packs (closed form); the model trains, discriminates
   and checkpoints with it, and refuses it where it does not apply. */
static gm_gan_arch pack_arch(int pack, int c, int bn) {
    gm_gan_arch a = gm_gan_dcgan_d(0);
    a.c = c; a.h = a.w = 8; a.hidden[0] = 3; a.hidden[1] = 4; a.batchnorm = bn; a.pack = pack;
    return a;
}

static gm_gan_net g_pack_net;

static gm_tensor *pack_fn(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *y = gm_gan_net_forward(g, &g_pack_net, in[0], NULL);
    (void)ctx;
    return y ? gm_sum(g, gm_mul(g, y, sin_weights(g, y))) : NULL;
}

static gm_tensor *pack_r1_fn(gm_graph *g, gm_tensor **in, void *ctx) {
    gm_tensor *x = gm_requires_grad(in[0]);
    (void)ctx;
    return gm_gan_r1_penalty(g, gm_gan_net_forward(g, &g_pack_net, x, NULL), x, 2.0f);
}

GM_TEST(pack_in_d) {
    enum { N = 4, C = 2, P = C * 64 };
    static const int shapes[1][4] = {{N, C, 8, 8}};
    gm_gan_arch a = pack_arch(2, C, 0), a2 = pack_arch(0, 2 * C, 0);
    gm_gan_net plain;
    a.act = a2.act = GM_ACT_TANH;       /* smooth: a piecewise-linear D has R1 gradient 0 almost everywhere */
    gm_rng r;
    gm_graph *g = gm_graph_new(1);
    float x[N * P], x2[N * P], *vals[1], out[N];
    gm_tensor *y, *y2, *y3;
    double err;
    gm_rng_seed(&r, 9);
    GM_CHECK(gm_gan_net_init(&g_pack_net, &a, &r) == 0, "%s", gm_last_error());
    gm_rng_seed(&r, 9);
    GM_CHECK(gm_gan_net_init(&plain, &a2, &r) == 0, "%s", gm_last_error());
    GM_CHECK(g_pack_net.layers[0].conv.cin == 2 * C, "first conv takes %d channels, want pack * c = %d",
             g_pack_net.layers[0].conv.cin, 2 * C);
    GM_CHECK(same_params(&g_pack_net.params, &plain.params), "packed D and a %d-channel D from one stream differ", 2 * C);
    fill_plain(x, N * P, 31);
    gm_graph_set_training(g, 0);
    y = gm_gan_net_forward(g, &g_pack_net, gm_input(g, x, N, C, 8, 8), NULL);
    y2 = gm_gan_net_forward(g, &plain, gm_input(g, x, N / 2, 2 * C, 8, 8), NULL);   /* examples 2p, 2p+1 -> pack p */
    GM_CHECK(y && y2 && y->shape[0] == N / 2 && y->shape[1] == 1, "packed D gives (N/2, 1)");
    GM_CHECK(y && y2 && memcmp(y->data, y2->data, (N / 2) * sizeof(float)) == 0, "packed D %g %g, by hand %g %g",
             y ? y->data[0] : -1.0f, y ? y->data[1] : -1.0f, y2 ? y2->data[0] : -1.0f, y2 ? y2->data[1] : -1.0f);
    memcpy(x2, x, sizeof x);
    x2[2 * P + 5] += 0.5f;                        /* example 2: in pack 1 only */
    y3 = gm_gan_net_forward(g, &g_pack_net, gm_input(g, x2, N, C, 8, 8), NULL);
    GM_CHECK(y && y3 && y3->data[0] == y->data[0] && y3->data[1] != y->data[1], "a change to example 2 moved pack 0 "
             "(%g -> %g) or not pack 1 (%g -> %g)", y ? y->data[0] : -1.0f, y3 ? y3->data[0] : -1.0f,
             y ? y->data[1] : -1.0f, y3 ? y3->data[1] : -1.0f);
    GM_CHECK(gm_gan_net_forward(g, &g_pack_net, gm_input(g, x, 3, C, 8, 8), NULL) == NULL &&
             strstr(gm_last_error(), "pack") != NULL, "a batch of 3 into packs of 2 refused: %s", gm_last_error());
    gm_graph_free(g);
    vals[0] = x;
    err = gm_gradcheck(pack_fn, NULL, 1, vals, shapes, 1e-2f);
    GM_CHECK(err >= 0 && err < 1e-3, "packed D, input gradient: relative error %g", err);
    printf("# pack_in_d: first-order relative error %.2e\n", err);
    err = gm_gradcheck(pack_r1_fn, NULL, 1, vals, shapes, 1e-2f);
    GM_CHECK(err >= 0 && err < 1e-2, "R1 through a packed D, its input gradient (second order): relative error %g (%s)",
             err, err < 0 ? gm_last_error() : "");
    printf("# pack_in_d: second-order (R1) relative error %.2e\n", err);
    gm_gan_net_free(&g_pack_net);
    gm_gan_net_free(&plain);
    /* an MLP D packs features */
    a = gm_gan_mlp_d(12, 0); a.pack = 3;
    gm_rng_seed(&r, 9);
    GM_CHECK(gm_gan_net_init(&plain, &a, &r) == 0 && plain.layers[0].lin.in == 36, "MLP D packing 3: dense input %d, want 36",
             plain.layers[0].lin.in);
    gm_gan_net_free(&plain);
    a = gm_gan_dcgan_g(100, 0); a.pack = 2;
    GM_CHECK(gm_gan_net_init(&plain, &a, &r) != 0 && strstr(gm_last_error(), "pack"), "G with pack: %s", gm_last_error());
    a = gm_gan_dcgan_d(10); a.pack = 2;
    GM_CHECK(gm_gan_net_init(&plain, &a, &r) != 0 && strstr(gm_last_error(), "pack"), "conditional D with pack: %s",
             gm_last_error());
    (void)out;
}

/* R1 with packs: D(pack) = sum_j a_j y_j^2 / 2 over the 8 values of a pack of two 4-value rows; the
   penalty is gamma/2 mean over the 2 packs of |grad|^2 (not over the 4 rows). */
GM_TEST(pack_r1_closed_form) {
    gm_graph *g = gm_graph_new(3);
    float x[4 * 4], a[8] = {0.5f, -1.0f, 2.0f, 0.25f, 1.5f, -0.75f, 0.3f, 1.0f};
    double want = 0;
    int i, j;
    gm_tensor *xt, *d, *r1;
    fill_plain(x, 16, 4);
    for (i = 0; i < 4; i++)
        for (j = 0; j < 4; j++) {
            double gr = a[(i % 2) * 4 + j] * x[i * 4 + j];
            want += gr * gr;
        }
    want = 3.0 / 2 * want / 2;
    xt = gm_requires_grad(gm_input(g, x, 4, 4, 0, 0));
    d = gm_reshape(g, xt, 2, 8, 0, 0);
    d = gm_scale(g, gm_sum_axes(g, gm_mul(g, gm_square(g, d), gm_input(g, a, 1, 8, 0, 0)), GM_AXIS(1)), 0.5f);
    r1 = gm_gan_r1_penalty(g, d, xt, 3.0f);
    GM_CHECK(r1 && gm_test_close(r1->data[0], want, 1e-5), "R1 over packs %g, by hand %g", r1 ? r1->data[0] : -1.0f, want);
    gm_graph_free(g);
}

GM_TEST(pack_in_training) {
    gm_gan_config c = small_gan(1);
    const char *path = "/tmp/gm_test_gan_pack.safetensors";
    gm_gan m, m1;
    gm_gan_stats st;
    float x[8 * 64], out[8], want[4];
    gm_graph *g;
    gm_tensor *y;
    int labels[8] = {0, 1, 2, 0, 1, 2, 0, 1}, bn;
    c.generator.classes = c.discriminator.classes = 0;
    c.discriminator.pack = 2; c.discriminator.spectral = 0; c.noise = 0; c.n_critic = 1; c.r1 = 1.0f;
    for (bn = 0; bn <= 1; bn++) {       /* without batch norm real and fake share one D pass */
        c.discriminator.batchnorm = bn;
        GM_CHECK(gm_gan_init(&m, &c) == 0, "%s", gm_last_error());
        fill(x, 8 * 64, 41);
        GM_CHECK(gm_gan_train_step(&m, x, NULL, 8, &st) == 0 && st.g_step && isfinite(st.d_loss) && isfinite(st.r1) &&
                 st.r1 > 0, "a step with packs of 2 (bn %d): %s", bn, gm_last_error());
        GM_CHECK(gm_gan_train_step(&m, x, NULL, 7, &st) != 0 && strstr(gm_last_error(), "pack"), "a batch of 7: %s",
                 gm_last_error());
        GM_CHECK(gm_gan_discriminate(&m, x, NULL, 8, out) == 0, "%s", gm_last_error());
        g = gm_graph_new(1);
        gm_graph_set_training(g, 0);
        y = gm_gan_net_forward(g, &m.discriminator, gm_input(g, x, 8, 1, 8, 8), NULL);
        GM_CHECK(y && y->size == 4, "4 packs of 2");
        if (y) memcpy(want, y->data, sizeof want);
        GM_CHECK(y && memcmp(out, want, sizeof want) == 0, "gm_gan_discriminate %g, forward %g", out[0], want[0]);
        gm_graph_free(g);
        GM_CHECK(gm_gan_discriminate(&m, x, NULL, 5, out) != 0 && strstr(gm_last_error(), "pack"), "n = 5: %s",
                 gm_last_error());
        gm_gan_free(&m);
    }
    GM_CHECK(gm_gan_init(&m, &c) == 0 && gm_gan_save(&m, path) == 0, "%s", gm_last_error());
    c.discriminator.pack = 0;
    GM_CHECK(gm_gan_init(&m1, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_gan_load(&m1, path) != 0 && strstr(gm_last_error(), "pack2"), "a packed file into an unpacked model: %s",
             gm_last_error());
    gm_gan_free(&m); gm_gan_free(&m1);
    remove(path);
    c.discriminator.pack = 2; c.gp = 10;
    GM_CHECK(gm_gan_init(&m, &c) != 0 && strstr(gm_last_error(), "pack"), "gp with packs: %s", gm_last_error());
    c = small_gan(1); c.discriminator.pack = 2;         /* conditional */
    GM_CHECK(gm_gan_init(&m, &c) != 0 && strstr(gm_last_error(), "pack"), "conditional D with packs: %s", gm_last_error());
    (void)labels;
}

/* One-sided label smoothing: the D loss by hand, its gradient against finite differences, the real
   logits' optimum moved from +inf to logit(1 - s), and a training step uses it: the first step's D
   loss differs from the unsmoothed one by s * mean D(real) (softplus(r) - softplus(-r) = r). */
static gm_tensor *smooth_fn(gm_graph *g, gm_tensor **in, void *ctx) {
    return gm_gan_d_loss_smooth(g, GM_GAN_NONSAT, in[0], in[1], *(float *)ctx);
}

static double softplus_d(double v) { return v > 0 ? v + log1p(exp(-v)) : log1p(exp(v)); }

GM_TEST(label_smoothing) {
    float r[3] = {0.3f, -1.2f, 2.5f}, f[3] = {0.5f, -0.4f, 1.1f}, s = 0.1f, *vals[2], opt = 0;
    static const int shapes[2][4] = {{3, 1, 0, 0}, {3, 1, 0, 0}};
    gm_graph *g = gm_graph_new(1);
    gm_tensor *rt, *loss, *dr;
    gm_gan_config c = small_gan(1);
    gm_gan m0, m1;
    gm_gan_stats s0, s1;
    float x[8 * 64];
    int labels[8] = {0, 1, 2, 0, 1, 2, 0, 1}, i;
    double want = 0, err;
    for (i = 0; i < 3; i++) want += (s * softplus_d(r[i]) + (1 - s) * softplus_d(-r[i]) + softplus_d(f[i])) / 3;
    loss = gm_gan_d_loss_smooth(g, GM_GAN_NONSAT, gm_input(g, r, 3, 1, 0, 0), gm_input(g, f, 3, 1, 0, 0), s);
    GM_CHECK(loss && gm_test_close(loss->data[0], want, 1e-6), "smoothed D loss %g, by hand %g", loss ? loss->data[0] : -1.0f,
             want);
    GM_CHECK(gm_gan_d_loss_smooth(g, GM_GAN_NONSAT, gm_input(g, r, 3, 1, 0, 0), gm_input(g, f, 3, 1, 0, 0), 0)->data[0] ==
             gm_gan_d_loss(g, GM_GAN_NONSAT, gm_input(g, r, 3, 1, 0, 0), gm_input(g, f, 3, 1, 0, 0))->data[0],
             "smooth 0 is the plain loss");
    opt = (float)log(0.9 / 0.1);                    /* logit(1 - s): where the real term's gradient vanishes */
    rt = gm_requires_grad(gm_input(g, &opt, 1, 1, 0, 0));
    loss = gm_gan_d_loss_smooth(g, GM_GAN_NONSAT, rt, gm_input(g, f, 1, 1, 0, 0), s);
    dr = loss ? gm_grad(g, loss, rt, 0) : NULL;
    GM_CHECK(dr && fabsf(dr->data[0]) < 1e-6f, "gradient at logit(0.9): %g (want 0)", dr ? dr->data[0] : -1.0f);
    GM_CHECK(gm_gan_d_loss_smooth(g, GM_GAN_HINGE, gm_input(g, r, 3, 1, 0, 0), gm_input(g, f, 3, 1, 0, 0), s) == NULL &&
             strstr(gm_last_error(), "smooth"), "hinge with smoothing refused: %s", gm_last_error());
    gm_graph_free(g);
    vals[0] = r; vals[1] = f;
    err = gm_gradcheck(smooth_fn, &s, 2, vals, shapes, 1e-3f);
    GM_CHECK(err >= 0 && err < 1e-2, "smoothed loss gradient vs finite differences: relative error %g", err);
    c.noise = 0; c.discriminator.dropout = 0;
    GM_CHECK(gm_gan_init(&m0, &c) == 0, "%s", gm_last_error());
    c.label_smooth = s;
    GM_CHECK(gm_gan_init(&m1, &c) == 0, "%s", gm_last_error());
    fill(x, 8 * 64, 43);
    GM_CHECK(gm_gan_train_step(&m0, x, labels, 8, &s0) == 0 && gm_gan_train_step(&m1, x, labels, 8, &s1) == 0, "%s",
             gm_last_error());
    GM_CHECK(s0.d_real == s1.d_real && gm_test_close(s1.d_loss - s0.d_loss, s * s0.d_real, 1e-5),
             "D loss %g vs %g: difference %g, want s * mean D(real) = %g", s1.d_loss, s0.d_loss, s1.d_loss - s0.d_loss,
             s * s0.d_real);
    gm_gan_free(&m0); gm_gan_free(&m1);
    c.loss = GM_GAN_HINGE;
    GM_CHECK(gm_gan_init(&m0, &c) != 0 && strstr(gm_last_error(), "label_smooth"), "hinge with label_smooth: %s",
             gm_last_error());
    c.loss = GM_GAN_NONSAT; c.label_smooth = 1.0f;
    GM_CHECK(gm_gan_init(&m0, &c) != 0 && strstr(gm_last_error(), "label_smooth"), "label_smooth 1: %s", gm_last_error());
}

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL;
#define RUN(t) do { if (!only || strstr(#t, only)) GM_RUN(t); } while (0)
    RUN(eigh_reconstructs);
    RUN(sqrtm_squares_back);
    RUN(frechet_closed_forms);
    RUN(gaussian_fit_and_entropy);
    RUN(ring_modes_counts);
    RUN(gp_gradcheck_mlp_critic);
    RUN(gp_gradcheck_conv_critic);
    RUN(gp_zero_for_unit_gradient);
    RUN(r1_gradcheck_mlp_critic);
    RUN(r1_gradcheck_conv_critic);
    RUN(r1_closed_form);
    RUN(hinge_gradcheck);
    RUN(augment_gradcheck);
    RUN(augment_is_shift_and_cutout);
    RUN(minibatch_stddev);
    RUN(minibatch_stddev_in_d);
    RUN(lr_linear_values);
    RUN(ema_closed_form);
    RUN(ema_follows_training_sequence);
    RUN(ema_recalibrate_averages_batches);
    RUN(spectral_norm_estimate);
    RUN(loss_values);
    RUN(bad_input_is_an_error);
    RUN(network_shapes);
    RUN(forward_into_own_graph);
    RUN(gan_save_load_mlp);
    RUN(gan_save_load_conv);
    RUN(gan_save_load_ema);
    RUN(gan_load_refuses_ema_mismatch);
    RUN(cyclegan_save_load);
    RUN(cyclegan_save_load_ema);
    RUN(gan_load_refuses_other_files);
    RUN(pack_in_d);
    RUN(pack_r1_closed_form);
    RUN(pack_in_training);
    RUN(label_smoothing);
    RUN(ring_nonsat);
    RUN(ring_minimax);
    RUN(ring_lsgan);
    RUN(ring_instance_noise);
    RUN(ring_conditional);
    RUN(ring_spectral_norm);
    RUN(ring_wgan_gp);
    RUN(ring_wgan_clip);
    RUN(ring_hinge_r1_ema);
    return gm_test_summary();
}
