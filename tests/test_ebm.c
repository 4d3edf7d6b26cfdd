/* Tests of genmod_ebm.h: RBM conditionals and partition functions against enumeration, AIS
   against exact log Z, Gibbs and Langevin against known distributions, learning on small real
   data, checkpoints and bad input. */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_EBM_IMPLEMENTATION
#include "../genmod_ebm.h"
#include "gm_test.h"
#include <string.h>
#include <stdlib.h>
#define PI_ 3.14159265358979323846

static gm_dataset train_, test_;
static int have_data_;

static int load_data(void) {
    if (have_data_) return 1;
    if (gm_mnist_load(&train_, &test_, "data", 2000, 500, 0.0f, 1.0f) == 0 ||
        gm_mnist_load(&train_, &test_, "../data", 2000, 500, 0.0f, 1.0f) == 0) {
        size_t i;   /* a fixed threshold: binary images for the Bernoulli RBM */
        for (i = 0; i < (size_t)train_.n * 784; i++) train_.x[i] = train_.x[i] > 0.5f ? 1.0f : 0.0f;
        for (i = 0; i < (size_t)test_.n * 784; i++) test_.x[i] = test_.x[i] > 0.5f ? 1.0f : 0.0f;
        have_data_ = 1;
    }
    return have_data_;
}

/* an RBM with random parameters: W ~ N(0, ws^2), biases ~ N(0, bs^2) */
static int random_rbm(gm_rbm *r, int V, int H, int type, float ws, float bs, uint64_t seed) {
    gm_rbm_config c = gm_rbm_default_config(V, H);
    gm_rng g;
    c.visible_type = type;
    c.seed = seed;
    if (gm_rbm_init(r, &c) != 0) return -1;
    gm_rng_seed(&g, seed + 1000);
    gm_init_normal(&g, gm_params_data(&r->params, r->w), (size_t)V * H, 0, ws);
    gm_init_normal(&g, gm_params_data(&r->params, r->bv), (size_t)V, 0, bs);
    gm_init_normal(&g, gm_params_data(&r->params, r->bh), (size_t)H, 0, bs);
    return 0;
}

static double joint_energy(gm_rbm *r, const float *v, const float *h) {
    int V = r->cfg.visible, H = r->cfg.hidden, i, j;
    const float *W = gm_params_data(&r->params, r->w), *bv = gm_params_data(&r->params, r->bv);
    const float *bh = gm_params_data(&r->params, r->bh);
    double e = 0;
    for (i = 0; i < V; i++)
        e += r->cfg.visible_type == GM_RBM_BERNOULLI ? -(double)bv[i] * v[i] : 0.5 * (v[i] - bv[i]) * (v[i] - bv[i]);
    for (j = 0; j < H; j++) {
        double s = bh[j];
        for (i = 0; i < V; i++) s += (double)W[j * V + i] * v[i];
        e -= s * h[j];
    }
    return e;
}

static void bits(float *x, int n, unsigned long code) {
    int i;
    for (i = 0; i < n; i++) x[i] = (float)((code >> i) & 1ul);
}

/* log Z by brute force over the joint states (Bernoulli) agrees with the hidden enumeration; so
   does the sum of exp(-F(v)) over all visible states. */
GM_TEST(test_rbm_exact_log_z_bernoulli) {
    gm_rbm r;
    int V = 10, H = 6;
    unsigned long a, b;
    double lz = 0, brute = -HUGE_VAL, byF = -HUGE_VAL;
    float v[10], h[6];
    double F[1024];
    static float all[1024 * 10];
    GM_CHECK(random_rbm(&r, V, H, GM_RBM_BERNOULLI, 1.0f, 0.5f, 3) == 0, "%s", gm_last_error());
    GM_CHECK(gm_rbm_log_z_exact(&r, &lz) == 0, "%s", gm_last_error());
    for (a = 0; a < (1ul << V); a++) {
        bits(v, V, a);
        memcpy(all + a * V, v, sizeof v);
        for (b = 0; b < (1ul << H); b++) {
            double e;
            bits(h, H, b);
            e = -joint_energy(&r, v, h);
            brute = brute > e ? brute + log1p(exp(e - brute)) : e + log1p(exp(brute - e));
        }
    }
    GM_CHECK(gm_rbm_free_energy(&r, all, 1 << V, F) == 0, "%s", gm_last_error());
    for (a = 0; a < (1ul << V); a++) {
        double e = -F[a];
        byF = byF > e ? byF + log1p(exp(e - byF)) : e + log1p(exp(byF - e));
    }
    GM_CHECK(fabs(lz - brute) < 1e-9 * fabs(brute) + 1e-9, "enumeration %.12f vs brute force %.12f", lz, brute);
    GM_CHECK(fabs(lz - byF) < 1e-6, "enumeration %.12f vs sum of exp(-F) %.12f", lz, byF);
    gm_rbm_free(&r);
}

/* Gaussian visible units: log Z against a numerical integral over v in 2-D. */
GM_TEST(test_rbm_exact_log_z_gaussian) {
    gm_rbm r;
    int H = 3, ix, iy;
    unsigned long b;
    double lz = 0, s = 0, step = 0.01;
    float v[2], h[3];
    GM_CHECK(random_rbm(&r, 2, H, GM_RBM_GAUSSIAN, 1.0f, 0.5f, 5) == 0, "%s", gm_last_error());
    GM_CHECK(gm_rbm_log_z_exact(&r, &lz) == 0, "%s", gm_last_error());
    for (ix = 0; ix < 2400; ix++)
        for (iy = 0; iy < 2400; iy++) {
            v[0] = (float)(-12 + (ix + 0.5) * step); v[1] = (float)(-12 + (iy + 0.5) * step);
            for (b = 0; b < (1ul << H); b++) { bits(h, H, b); s += exp(-joint_energy(&r, v, h)); }
        }
    s = log(s * step * step);
    GM_CHECK(fabs(lz - s) < 1e-4, "enumeration %.8f vs integral %.8f", lz, s);
    gm_rbm_free(&r);
}

/* The all-zero RBM: log Z = (V + H) log 2, and AIS gets it exactly (every weight is 1). */
GM_TEST(test_rbm_zero_model) {
    gm_rbm r;
    gm_rbm_config c = gm_rbm_default_config(784, 500);
    gm_rbm_ais_config ac = gm_rbm_ais_default_config();
    gm_rbm_ais_result res;
    double want = (784 + 500) * log(2.0), lz = 0;
    c.init_std = 0;
    GM_CHECK(gm_rbm_init(&r, &c) == 0, "%s", gm_last_error());
    ac.steps[0] = 10; ac.steps[1] = 10; ac.steps[2] = 10;
    GM_CHECK(gm_rbm_ais(&r, NULL, 0, &ac, &res) == 0, "%s", gm_last_error());
    GM_CHECK(fabs(res.log_z - want) < 1e-9, "AIS %.12f vs exact %.12f", res.log_z, want);
    GM_CHECK(res.log_z_se == 0, "se %g", res.log_z_se);
    gm_rbm_free(&r);
    c = gm_rbm_default_config(784, 16);
    c.init_std = 0;
    GM_CHECK(gm_rbm_init(&r, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_rbm_log_z_exact(&r, &lz) == 0, "%s", gm_last_error());
    GM_CHECK(fabs(lz - 800 * log(2.0)) < 1e-9, "exact %.12f vs %.12f", lz, 800 * log(2.0));
    gm_rbm_free(&r);
}

/* AIS against exact log Z on RBMs of several sizes and random draws. Each estimate must be within 3 of its
   reported standard errors of the exact value (a 1-in-370 event per estimate for a correct
   estimator), at least half within one, and the errors must be small (se < 0.1). */
GM_TEST(test_rbm_ais_matches_exact) {
    static const int sizes[][3] = {{20, 8, 0}, {64, 10, 0}, {784, 12, 0}, {12, 10, 1}};
    static const float wscale[] = {0.5f, 0.3f, 0.05f, 0.3f};
    int si, seed, within1 = 0, total = 0;
    for (si = 0; si < 4; si++)
        for (seed = 1; seed <= 3; seed++) {
            gm_rbm r;
            gm_rbm_ais_config ac = gm_rbm_ais_default_config();
            gm_rbm_ais_result res;
            double lz = 0, d;
            int type = sizes[si][2] ? GM_RBM_GAUSSIAN : GM_RBM_BERNOULLI;
            GM_CHECK(random_rbm(&r, sizes[si][0], sizes[si][1], type, wscale[si], 0.5f, (uint64_t)(seed * 17 + si)) == 0, "%s", gm_last_error());
            ac.steps[0] = 50; ac.steps[1] = 200; ac.steps[2] = 500;
            ac.seed = (uint64_t)seed;
            GM_CHECK(gm_rbm_log_z_exact(&r, &lz) == 0, "%s", gm_last_error());
            GM_CHECK(gm_rbm_ais(&r, NULL, 0, &ac, &res) == 0, "%s", gm_last_error());
            d = res.log_z - lz;
            printf("  V %3d H %2d %s seed %d: exact %.5f  AIS %.5f  se %.5f  diff %+.5f\n", sizes[si][0], sizes[si][1],
                   type ? "gauss" : "bern ", seed, lz, res.log_z, res.log_z_se, d);
            GM_CHECK(fabs(d) <= 3 * res.log_z_se + 1e-9, "V %d H %d seed %d: |AIS - exact| = %g > 3 se = %g",
                     sizes[si][0], sizes[si][1], seed, fabs(d), 3 * res.log_z_se);
            GM_CHECK(res.log_z_se < 0.1, "se %g", res.log_z_se);
            within1 += fabs(d) <= res.log_z_se;
            total++;
            gm_rbm_free(&r);
        }
    GM_CHECK(2 * within1 >= total, "only %d of %d estimates within one standard error", within1, total);
}

/* A long Gibbs chain's empirical distribution against the exact p(v) of an RBM small enough to
   enumerate (V = 8: 256 states), 100,000 samples (200 chains x 500 sweeps after 100 of burn-in).
   Total variation must be below 0.03 (the sampling noise of independent draws is about 0.02);
   the same samples against an RBM whose visible biases moved by 0.3 must be above it, so the
   bound does tell distributions apart. */
static double tv_to(gm_rbm *r, const double *counts, double total) {
    static float all[256 * 8];
    double F[256], lz = 0, tv = 0;
    unsigned long a;
    for (a = 0; a < 256; a++) bits(all + a * 8, 8, a);
    if (gm_rbm_free_energy(r, all, 256, F) != 0 || gm_rbm_log_z_exact(r, &lz) != 0) return 1;
    for (a = 0; a < 256; a++) tv += fabs(exp(-F[a] - lz) - counts[a] / total);
    return 0.5 * tv;
}

GM_TEST(test_rbm_gibbs_matches_exact) {
    gm_rbm r;
    int C = 200, s, i, j;
    static float v[200 * 8];
    static double counts[256];
    double tv, tv_wrong;
    float *bv;
    GM_CHECK(random_rbm(&r, 8, 5, GM_RBM_BERNOULLI, 1.0f, 0.5f, 11) == 0, "%s", gm_last_error());
    for (i = 0; i < C * 8; i++) v[i] = (float)(i % 3 == 0);
    GM_CHECK(gm_rbm_gibbs(&r, v, C, 100, NULL) == 0, "%s", gm_last_error());
    for (s = 0; s < 500; s++) {
        GM_CHECK(gm_rbm_gibbs(&r, v, C, 1, NULL) == 0, "%s", gm_last_error());
        for (i = 0; i < C; i++) {
            unsigned long code = 0;
            for (j = 0; j < 8; j++) code |= (unsigned long)(v[i * 8 + j] > 0.5f) << j;
            counts[code] += 1;
        }
    }
    tv = tv_to(&r, counts, 500.0 * C);
    bv = gm_params_data(&r.params, r.bv);
    for (j = 0; j < 8; j++) bv[j] += 0.3f;
    tv_wrong = tv_to(&r, counts, 500.0 * C);
    printf("  TV to the exact distribution %.4f; to a perturbed RBM's %.4f\n", tv, tv_wrong);
    GM_CHECK(tv < 0.03, "TV %.4f >= 0.03", tv);
    GM_CHECK(tv_wrong > 0.03, "TV to the wrong model %.4f: the bound cannot tell them apart", tv_wrong);
    gm_rbm_free(&r);
}

/* CD-1 and PCD learn 2,000 binarized digits with 16 hidden units in a few seconds: the exact test
   log-likelihood (enumeration) must beat the base-rate model (the untrained RBM) by over 12 nats; AIS on the trained
   model agrees with the exact log Z (within 3 standard errors). */
static double train_small(int method, double *ll_base, double *ais_gap, double *ais_se) {
    gm_rbm r;
    gm_rbm_config c = method == GM_RBM_PCD ? gm_rbm_pcd_config(784, 16) : gm_rbm_default_config(784, 16);
    gm_rbm_ais_config ac = gm_rbm_ais_default_config();
    gm_rbm_ais_result res;
    gm_batcher b;
    const int *idx;
    static float xb[100 * 784];
    double lz = 0, ll = 0;
    int k, ep;
    c.momentum_steps = 100;
    if (method == GM_RBM_PCD) { c.lr = 0.1f; c.lr_decay_steps = 400; }
    if (gm_rbm_init(&r, &c) != 0 || gm_rbm_init_visible_bias(&r, train_.x, train_.n) != 0) return 0;
    if (gm_rbm_log_z_exact(&r, &lz) != 0 || gm_rbm_log_likelihood(&r, test_.x, test_.n, lz, ll_base) != 0) return 0;
    gm_batcher_init(&b, train_.n, 100, 7, 1);
    for (ep = 0; ep < 20; ep++)
        while ((k = gm_batcher_next(&b, &idx)) > 0) {
            gm_dataset_gather(&train_, idx, k, xb, NULL);
            if (gm_rbm_train_step(&r, xb, NULL, k, NULL) != 0) return 0;
        }
    gm_batcher_free(&b);
    if (gm_rbm_log_z_exact(&r, &lz) != 0 || gm_rbm_log_likelihood(&r, test_.x, test_.n, lz, &ll) != 0) return 0;
    ac.steps[0] = 100; ac.steps[1] = 400; ac.steps[2] = 1000;
    if (gm_rbm_ais(&r, train_.x, train_.n, &ac, &res) != 0) return 0;
    *ais_gap = res.log_z - lz;
    *ais_se = res.log_z_se;
    gm_rbm_free(&r);
    return ll;
}

GM_TEST(test_rbm_learns_digits) {
    int m;
    if (!load_data()) { printf("  (no data/ digits: skipped)\n"); return; }
    for (m = 0; m < 2; m++) {
        double base = 0, gap = 0, se = 0;
        double ll = train_small(m ? GM_RBM_PCD : GM_RBM_CD, &base, &gap, &se);
        printf("  %s, 16 hidden, 20 epochs of 2,000 digits: test LL %.2f nats (base rates %.2f); AIS - exact %+.4f (se %.4f)\n",
               m ? "PCD " : "CD-1", ll, base, gap, se);
        GM_CHECK(ll != 0, "%s", gm_last_error());
        GM_CHECK(ll > base + 12, "test LL %.2f not 12 nats above the base rates' %.2f", ll, base);
        GM_CHECK(fabs(gap) <= 3 * se + 1e-9, "AIS off the exact log Z by %g (se %g)", gap, se);
    }
}

/* Save, load into a fresh model: the same weights, the same next update; another architecture's
   file is refused and the model untouched. */
GM_TEST(test_rbm_save_load) {
    gm_rbm a, b, c;
    gm_rbm_config cfg = gm_rbm_pcd_config(20, 7), other = gm_rbm_default_config(20, 8);
    static float x[10 * 20];
    const char *path = "build/test_ebm_rbm.safetensors";
    int i;
    for (i = 0; i < 200; i++) x[i] = (float)((i * 7 + i / 20) % 3 == 0);
    GM_CHECK(gm_rbm_init(&a, &cfg) == 0 && gm_rbm_init(&c, &other) == 0, "%s", gm_last_error());
    cfg.seed = 99;
    GM_CHECK(gm_rbm_init(&b, &cfg) == 0, "%s", gm_last_error());
    for (i = 0; i < 3; i++) GM_CHECK(gm_rbm_train_step(&a, x, NULL, 10, NULL) == 0, "%s", gm_last_error());
    GM_CHECK(gm_rbm_save(&a, path) == 0, "%s", gm_last_error());
    GM_CHECK(gm_rbm_load(&b, path) == 0, "%s", gm_last_error());
    GM_CHECK(b.step == 3, "step %ld", b.step);
    GM_CHECK(memcmp(a.params.data, b.params.data, a.params.count * sizeof(float)) == 0, "weights differ after load");
    GM_CHECK(gm_rbm_train_step(&a, x, NULL, 10, NULL) == 0 && gm_rbm_train_step(&b, x, NULL, 10, NULL) == 0, "%s", gm_last_error());
    GM_CHECK(memcmp(a.params.data, b.params.data, a.params.count * sizeof(float)) == 0, "the next update differs after load");
    {
        float before = c.params.data[0];
        GM_CHECK(gm_rbm_load(&c, path) != 0, "another architecture was loaded");
        GM_CHECK(strstr(gm_last_error(), "hidden 8") && strstr(gm_last_error(), "hidden 7"), "message: %s", gm_last_error());
        GM_CHECK(c.params.data[0] == before, "refused load changed the model");
    }
    gm_rbm_free(&a); gm_rbm_free(&b); gm_rbm_free(&c);
    gm_rbm_free(&a);   /* twice is safe */
}

/* ---------------------------------------------------------------------------------------- */
/* Langevin and the deep EBM                                                                */
/* ---------------------------------------------------------------------------------------- */
/* E(x) = -log sum_k w_k N(x; mu_k, s^2 I), a 2-D mixture of 4 with unequal weights */
static const float mix_mu[4][2] = {{-1.2f, -1.2f}, {1.2f, -1.2f}, {-1.2f, 1.2f}, {1.2f, 1.2f}};
static const float mix_w[4] = {0.1f, 0.2f, 0.3f, 0.4f};
static const float mix_s = 0.6f;

static gm_tensor *mixture_energy(gm_graph *g, gm_tensor *x, void *ctx) {
    gm_tensor *all = NULL, *lse;
    int k;
    (void)ctx;
    for (k = 0; k < 4; k++) {
        gm_tensor *mu = gm_input(g, mix_mu[k], 1, 2, 0, 0);
        gm_tensor *d = gm_sum_axes(g, gm_square(g, gm_sub(g, x, mu)), GM_AXIS(1));      /* (N, 1) */
        gm_tensor *t = gm_affine(g, d, -0.5f / (mix_s * mix_s), logf(mix_w[k]));
        all = all ? gm_concat(g, all, t, 1) : t;
    }
    /* logsumexp_k = t_0 - log_softmax(t)_0 */
    lse = gm_sub(g, gm_slice(g, all, 1, 0, 1), gm_slice(g, gm_log_softmax(g, all), 1, 0, 1));
    return gm_reshape(g, gm_neg(g, lse), -1, 0, 0, 0);
}

static double mixture_density(double x, double y) {
    double p = 0;
    int k;
    for (k = 0; k < 4; k++) {
        double dx = x - mix_mu[k][0], dy = y - mix_mu[k][1];
        p += mix_w[k] * exp(-(dx * dx + dy * dy) / (2 * mix_s * mix_s)) / (2 * PI_ * mix_s * mix_s);
    }
    return p;
}

/* Langevin (noise sqrt(2 eps)) from uniform noise on a known mixture: binned counts over an 8 x 8
   grid on [-3.2, 3.2]^2 against the density's exact bin masses: total variation below 0.04 (the
   sampling noise of 40,000 correlated draws is about 0.01; the discretization bias of eps = 0.01
   about the same); without the noise the chains collapse onto the modes and the TV is far above. */
static double langevin_tv(float noise, double *mass_err) {
    gm_graph *g = gm_graph_new(1);
    gm_rng rng;
    int n = 2000, s, i, bx, by;
    static float x[2000 * 2];
    static double counts[64], exact[64];
    double total = 0, tv = 0;
    gm_rng_seed(&rng, 5);
    memset(counts, 0, sizeof counts);
    for (i = 0; i < 2 * n; i++) x[i] = -3 + 6 * gm_rng_uniform(&rng);
    if (gm_langevin(g, mixture_energy, NULL, x, n, 2, 600, 0.01f, noise, 0, &rng) != 0) return 1;
    for (s = 0; s < 20; s++) {
        if (gm_langevin(g, mixture_energy, NULL, x, n, 2, 20, 0.01f, noise, 0, &rng) != 0) return 1;
        for (i = 0; i < n; i++) {
            bx = (int)floor((x[2 * i] + 3.2) / 0.8); by = (int)floor((x[2 * i + 1] + 3.2) / 0.8);
            total += 1;
            if (bx >= 0 && bx < 8 && by >= 0 && by < 8) counts[by * 8 + bx] += 1;
        }
    }
    for (by = 0; by < 8; by++)   /* exact bin masses by a fine midpoint rule */
        for (bx = 0; bx < 8; bx++) {
            double m = 0;
            int u, w;
            for (u = 0; u < 40; u++)
                for (w = 0; w < 40; w++)
                    m += mixture_density(-3.2 + bx * 0.8 + (u + 0.5) * 0.02, -3.2 + by * 0.8 + (w + 0.5) * 0.02) * 0.0004;
            exact[by * 8 + bx] = m;
        }
    *mass_err = 0;
    for (i = 0; i < 64; i++) tv += fabs(counts[i] / total - exact[i]);
    {   /* the mass of each quadrant (one mode each) against the exact one */
        int q;
        for (q = 0; q < 4; q++) {
            double m = 0, want = 0;
            for (by = 0; by < 8; by++)
                for (bx = 0; bx < 8; bx++)
                    if ((bx >= 4) == (q & 1) && (by >= 4) == ((q >> 1) & 1)) {
                        m += counts[by * 8 + bx] / total;
                        want += exact[by * 8 + bx];
                    }
            if (fabs(m - want) > *mass_err) *mass_err = fabs(m - want);
        }
    }
    gm_graph_free(g);
    return 0.5 * tv;
}

GM_TEST(test_langevin_matches_mixture) {
    double err = 0, err0 = 0;
    double tv = langevin_tv((float)sqrt(2 * 0.01), &err);
    double tv0 = langevin_tv(0.0f, &err0);
    printf("  Langevin on a 4-Gaussian mixture: TV %.4f, worst mode mass off by %.4f; without noise TV %.4f\n", tv, err, tv0);
    GM_CHECK(tv < 0.04, "TV %.4f >= 0.04", tv);
    GM_CHECK(err < 0.02, "a mode's mass is off by %.4f", err);
    GM_CHECK(tv0 > 0.04, "TV without noise %.4f: the bound does not separate", tv0);
}

/* One noiseless Langevin step on E = |x|^2 / 2 is x (1 - eps); a step of 0 or NaN is refused. */
static gm_tensor *quadratic(gm_graph *g, gm_tensor *x, void *ctx) {
    (void)ctx;
    return gm_scale(g, gm_sum_rows(g, gm_square(g, x)), 0.5f);
}

GM_TEST(test_langevin_step_and_bad_input) {
    gm_graph *g = gm_graph_new(1);
    gm_rng rng;
    float x[6] = {1, -2, 3, 0.5f, 0, -1}, want[6];
    int i;
    gm_rng_seed(&rng, 1);
    for (i = 0; i < 6; i++) want[i] = x[i] * 0.9f;
    GM_CHECK(gm_langevin(g, quadratic, NULL, x, 3, 2, 1, 0.1f, 0, 0, &rng) == 0, "%s", gm_last_error());
    for (i = 0; i < 6; i++) GM_CHECK(fabsf(x[i] - want[i]) < 1e-6f, "x[%d] = %g, want %g", i, x[i], want[i]);
    GM_CHECK(gm_langevin(g, quadratic, NULL, x, 3, 2, 1, 0.0f, 0, 0, &rng) != 0, "step 0 accepted");
    GM_CHECK(strstr(gm_last_error(), "step size"), "message: %s", gm_last_error());
    GM_CHECK(gm_langevin(g, quadratic, NULL, x, 3, 2, 1, NAN, 0, 0, &rng) != 0, "step NaN accepted");
    GM_CHECK(gm_langevin(g, quadratic, NULL, x, 3, 2, 1, 0.1f, NAN, 0, &rng) != 0, "noise NaN accepted");
    gm_graph_free(g);
}

/* Mode coverage on 8 Gaussians (radius 2, std 0.02): the fraction of samples within 0.25 of a
   mode (a uniform ring of radius 2 puts 32% there), and the smallest share of the 8 modes among those. */
static void coverage(const float *x, int n, double *near, double *min_share) {
    int cnt[8] = {0}, i, k, hit = 0;
    for (i = 0; i < n; i++)
        for (k = 0; k < 8; k++) {
            double a = 2 * PI_ * k / 8, dx = x[2 * i] - 2 * cos(a), dy = x[2 * i + 1] - 2 * sin(a);
            if (dx * dx + dy * dy < 0.0625) { cnt[k]++; hit++; break; }
        }
    *near = (double)hit / n;
    *min_share = 1;
    for (k = 0; k < 8; k++) if (hit && (double)cnt[k] / hit < *min_share) *min_share = (double)cnt[k] / hit;
    if (!hit) *min_share = 0;
}

/* The deep EBM learns 8 Gaussians in seconds (1,000 steps, lr 0.01): Langevin samples from the
   replay buffer put over 60% of their mass within 0.25 of a mode (a model that learned only the
   ring would put 32%) and every mode gets over 5% of it (12.5% each when even); the untrained
   model's samples do neither. The outcome depends on the random streams: some runs stay longer in a phase
   where only the ring is learned (see EBM_NOTES.md); these streams reach 91%. */
GM_TEST(test_ebm_learns_8gaussians) {
    gm_ebm m;
    gm_ebm_config c = gm_ebm_default_config(2);
    static float data[20000 * 2], xb[256 * 2], s[1000 * 2];
    gm_batcher b;
    const int *idx;
    int k, i, step = 0;
    double near0, share0, near, share;
    c.hidden = 64; c.depth = 2; c.lr = 0.01f;
    GM_CHECK(gm_toy2d("8gaussians", 20000, 1, -1, data, NULL) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ebm_init(&m, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ebm_sample(&m, NULL, 1000, s) == 0, "%s", gm_last_error());
    coverage(s, 1000, &near0, &share0);
    gm_batcher_init(&b, 20000, 256, 1, 1);
    while (step < 1000) {
        if ((k = gm_batcher_next(&b, &idx)) == 0) continue;
        for (i = 0; i < k; i++) { xb[2 * i] = data[2 * idx[i]]; xb[2 * i + 1] = data[2 * idx[i] + 1]; }
        GM_CHECK(gm_ebm_train_step(&m, xb, NULL, k, NULL) == 0, "%s", gm_last_error());
        step++;
    }
    gm_batcher_free(&b);
    GM_CHECK(gm_ebm_sample_buffer(&m, 1000, s) == 0, "%s", gm_last_error());
    coverage(s, 1000, &near, &share);
    printf("  after 1000 steps: %.1f%% of samples near a mode, smallest mode share %.1f%% (untrained: %.1f%%, %.1f%%)\n",
           100 * near, 100 * share, 100 * near0, 100 * share0);
    GM_CHECK(near > 0.6, "only %.1f%% near a mode", 100 * near);
    GM_CHECK(share > 0.05, "a mode holds only %.1f%%", 100 * share);
    GM_CHECK(!(near0 > 0.6 && share0 > 0.05), "the untrained model passes the bound");
    gm_ebm_free(&m);
}

/* AUC of "E(digit) < E(other)": the fraction of (digit, other) pairs ordered so, ties half */
static double energy_auc(const float *ed, int nd, const float *eo, int no) {
    double s = 0;
    int i, k;
    for (i = 0; i < nd; i++)
        for (k = 0; k < no; k++) s += ed[i] < eo[k] ? 1.0 : ed[i] == eo[k] ? 0.5 : 0.0;
    return s / ((double)nd * no);
}

/* the held-out digits against the same digits with their pixels shuffled (the same intensities,
   no strokes) and against uniform noise: AUCs of the energy as a detector of real digits */
static void conv_aucs(gm_ebm *m, const float *digits, int n, double *auc_shuf, double *auc_noise) {
    static float other[200 * 784], ed[200], eo[200];
    gm_rng r;
    int i, k;
    gm_rng_seed(&r, 99);
    for (i = 0; i < n; i++) {
        float *o = other + (size_t)i * 784;
        memcpy(o, digits + (size_t)i * 784, 784 * sizeof(float));
        for (k = 783; k > 0; k--) { int j = gm_rng_int(&r, k + 1); float t = o[k]; o[k] = o[j]; o[j] = t; }
    }
    gm_ebm_energy(m, digits, n, ed);
    gm_ebm_energy(m, other, n, eo);
    *auc_shuf = energy_auc(ed, n, eo, n);
    for (i = 0; i < n * 784; i++) other[i] = -1 + 2 * gm_rng_uniform(&r);
    gm_ebm_energy(m, other, n, eo);
    *auc_noise = energy_auc(ed, n, eo, n);
}

/* The conv energy learns digits in seconds (2,000 bundled digits in [-1, 1], 8 channels, 10
   Langevin steps, 150 updates): it gives 200 held-out digits a lower energy than the same digits
   with their pixels shuffled, and than uniform noise, for over 95% of the pairs. The untrained net
   is checked to stay below that bound (its AUCs are printed). */
GM_TEST(test_ebm_conv_learns_digits) {
    gm_dataset tr, te;
    gm_ebm m;
    gm_ebm_config c = gm_ebm_conv_config(1, 28, 28);
    gm_batcher b;
    const int *idx;
    static float xb[32 * 784];
    int k, step = 0;
    double s0, n0, s1, n1;
    if (gm_mnist_load(&tr, &te, "data", 2000, 200, -1.0f, 1.0f) != 0 &&
        gm_mnist_load(&tr, &te, "../data", 2000, 200, -1.0f, 1.0f) != 0) {
        printf("  (skipped: no bundled data)\n");
        return;
    }
    c.channels = 8; c.hidden = 32; c.langevin_steps = 10; c.batch = 32; c.lr = 1e-3f; c.buffer_size = 1000;
    GM_CHECK(gm_ebm_init(&m, &c) == 0, "%s", gm_last_error());
    conv_aucs(&m, te.x, te.n, &s0, &n0);
    gm_batcher_init(&b, tr.n, 32, 1, 1);
    while (step < 150) {
        if ((k = gm_batcher_next(&b, &idx)) == 0) continue;
        gm_dataset_gather(&tr, idx, k, xb, NULL);
        GM_CHECK(gm_ebm_train_step(&m, xb, NULL, k, NULL) == 0, "%s", gm_last_error());
        step++;
    }
    gm_batcher_free(&b);
    conv_aucs(&m, te.x, te.n, &s1, &n1);
    printf("  AUC of E(digit) < E(shuffled): %.3f, < E(noise): %.3f (untrained %.3f, %.3f)\n", s1, n1, s0, n0);
    GM_CHECK(s1 > 0.95 && n1 > 0.95, "AUCs %.3f, %.3f", s1, n1);
    GM_CHECK(!(s0 > 0.95 && n0 > 0.95), "the untrained net passes the bound");
    gm_ebm_free(&m);
    gm_dataset_free(&tr);
    gm_dataset_free(&te);
}

GM_TEST(test_ebm_save_load_and_bad_input) {
    gm_ebm a, b, c;
    gm_ebm_config cfg = gm_ebm_default_config(2), other;
    static float x[64 * 2];
    float e1[4], e2[4];
    const char *path = "build/test_ebm_ebm.safetensors";
    int i;
    cfg.hidden = 16; cfg.depth = 2; cfg.buffer_size = 100; cfg.langevin_steps = 5;
    other = cfg; other.hidden = 17;
    gm_toy2d("moons", 64, 1, -1, x, NULL);
    GM_CHECK(gm_ebm_init(&a, &cfg) == 0 && gm_ebm_init(&c, &other) == 0, "%s", gm_last_error());
    cfg.seed = 5;
    GM_CHECK(gm_ebm_init(&b, &cfg) == 0, "%s", gm_last_error());
    for (i = 0; i < 3; i++) GM_CHECK(gm_ebm_train_step(&a, x, NULL, 64, NULL) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ebm_save(&a, path) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ebm_load(&b, path) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ebm_train_step(&a, x, NULL, 64, NULL) == 0 && gm_ebm_train_step(&b, x, NULL, 64, NULL) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ebm_energy(&a, x, 4, e1) == 0 && gm_ebm_energy(&b, x, 4, e2) == 0, "%s", gm_last_error());
    GM_CHECK(memcmp(e1, e2, sizeof e1) == 0, "the next step differs after load: %g vs %g", e1[0], e2[0]);
    GM_CHECK(gm_ebm_load(&c, path) != 0, "another architecture was loaded");
    x[3] = NAN;
    GM_CHECK(gm_ebm_train_step(&a, x, NULL, 64, NULL) != 0, "NaN data accepted");
    gm_ebm_free(&c);
    cfg.step_size = 0;
    GM_CHECK(gm_ebm_init(&c, &cfg) != 0 && strstr(gm_last_error(), "cfg.step_size"), "step size 0: %s", gm_last_error());
    cfg.step_size = NAN;
    GM_CHECK(gm_ebm_init(&c, &cfg) != 0 && strstr(gm_last_error(), "cfg.step_size"), "step size NaN: %s", gm_last_error());
    /* the conv energy: an image shape that is not the data's dimension, an empty clamp range, and
       the MLP's file refused by a conv model with the same dim (naming both) */
    cfg = gm_ebm_conv_config(1, 8, 8);
    cfg.dim = 63;
    GM_CHECK(gm_ebm_init(&c, &cfg) != 0 && strstr(gm_last_error(), "cfg.image_c"), "8x8 images of dim 63: %s", gm_last_error());
    cfg = gm_ebm_conv_config(1, 8, 8);
    cfg.x_min = 1; cfg.x_max = -1;
    GM_CHECK(gm_ebm_init(&c, &cfg) != 0 && strstr(gm_last_error(), "cfg.x_min"), "x_min > x_max: %s", gm_last_error());
    other = gm_ebm_default_config(64);
    other.hidden = 16; other.depth = 1; other.buffer_size = 10;
    cfg = gm_ebm_conv_config(1, 8, 8);
    cfg.channels = 2; cfg.hidden = 16; cfg.buffer_size = 10;
    GM_CHECK(gm_ebm_init(&c, &other) == 0 && gm_ebm_save(&c, path) == 0, "%s", gm_last_error());
    gm_ebm_free(&c);
    GM_CHECK(gm_ebm_init(&c, &cfg) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ebm_load(&c, path) != 0 && strstr(gm_last_error(), "conv 1x8x8"), "an MLP file loaded into the conv energy: %s",
             gm_last_error());
    {   /* the conv energy's checkpoint: the next update is the same after a round trip */
        static float img[16 * 64], ea[16], eb[16];
        gm_ebm d;
        for (i = 0; i < 16 * 64; i++) img[i] = (float)((i * 37 + i / 64) % 11) / 5.0f - 1.0f;
        GM_CHECK(gm_ebm_train_step(&c, img, NULL, 16, NULL) == 0 && gm_ebm_save(&c, path) == 0, "%s", gm_last_error());
        cfg.seed = 77;
        GM_CHECK(gm_ebm_init(&d, &cfg) == 0 && gm_ebm_load(&d, path) == 0, "%s", gm_last_error());
        GM_CHECK(gm_ebm_train_step(&c, img, NULL, 16, NULL) == 0 && gm_ebm_train_step(&d, img, NULL, 16, NULL) == 0, "%s",
                 gm_last_error());
        GM_CHECK(gm_ebm_energy(&c, img, 16, ea) == 0 && gm_ebm_energy(&d, img, 16, eb) == 0, "%s", gm_last_error());
        GM_CHECK(memcmp(ea, eb, sizeof ea) == 0, "the conv energy's next step differs after load: %g vs %g", ea[0], eb[0]);
        GM_CHECK(gm_ebm_sample(&d, NULL, 4, img) == 0, "%s", gm_last_error());
        for (i = 0; i < 4 * 64; i++) GM_CHECK(img[i] >= -1 && img[i] <= 1, "a Langevin sample left [-1, 1]: %g", img[i]);
        gm_ebm_free(&d);
    }
    gm_ebm_free(&a); gm_ebm_free(&b); gm_ebm_free(&c); gm_ebm_free(&c);
}

/* The CD-k ramp: k_ramp_steps = 8 with k = 5 takes 1, 1, 2, 2, 3, 3, 4, 4 sweeps, then 5; its first
   update is CD-1's exactly (same streams), and the next ones differ from it. */
GM_TEST(test_rbm_k_ramp) {
    gm_rbm a, b;
    gm_rbm_config c = gm_rbm_default_config(16, 6);
    static const int want[10] = {1, 1, 2, 2, 3, 3, 4, 4, 5, 5};
    float x[8 * 16];
    gm_rbm_stats st;
    int i, t;
    for (i = 0; i < 8 * 16; i++) x[i] = (float)((i * 7 + i / 16) % 3 == 0);
    c.k = 5; c.k_ramp_steps = 8;
    GM_CHECK(gm_rbm_init(&a, &c) == 0, "%s", gm_last_error());
    c.k = 1; c.k_ramp_steps = 0;
    GM_CHECK(gm_rbm_init(&b, &c) == 0, "%s", gm_last_error());
    for (t = 0; t < 10; t++) {
        GM_CHECK(gm_rbm_train_step(&a, x, NULL, 8, &st) == 0, "%s", gm_last_error());
        GM_CHECK(st.k == want[t], "update %d took %d sweeps, want %d", t, st.k, want[t]);
        GM_CHECK(gm_rbm_train_step(&b, x, NULL, 8, NULL) == 0, "%s", gm_last_error());
        if (t == 0) GM_CHECK(memcmp(a.params.data, b.params.data, a.params.count * sizeof(float)) == 0, "the first update is not CD-1's");
    }
    GM_CHECK(memcmp(a.params.data, b.params.data, a.params.count * sizeof(float)) != 0, "ten updates on the ramp equal CD-1's");
    c.k_ramp_steps = -1;
    gm_rbm_free(&b);
    GM_CHECK(gm_rbm_init(&b, &c) != 0 && strstr(gm_last_error(), "cfg.k_ramp_steps"), "k_ramp_steps -1: %s", gm_last_error());
    gm_rbm_free(&a); gm_rbm_free(&b);
}

GM_TEST(test_rbm_bad_input) {
    gm_rbm r;
    gm_rbm_config c = gm_rbm_default_config(4, 3);
    float x[8] = {0, 1, 1, 0, 0.5f, 1, 0, 0};
    GM_CHECK(gm_rbm_init(&r, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_rbm_train_step(&r, x, NULL, 2, NULL) != 0, "a non-binary image was accepted");
    GM_CHECK(strstr(gm_last_error(), "binary"), "message: %s", gm_last_error());
    GM_CHECK(r.step == 0, "the refused step counted");
    x[4] = 1;
    GM_CHECK(gm_rbm_train_step(&r, x, NULL, 2, NULL) == 0, "%s", gm_last_error());
    gm_rbm_free(&r);
    c.hidden = 0;
    GM_CHECK(gm_rbm_init(&r, &c) != 0 && strstr(gm_last_error(), "cfg.hidden"), "hidden 0: %s", gm_last_error());
    c = gm_rbm_default_config(4, 40);
    GM_CHECK(gm_rbm_init(&r, &c) == 0, "%s", gm_last_error());
    {
        double lz;
        GM_CHECK(gm_rbm_log_z_exact(&r, &lz) != 0, "2^40 states accepted");
    }
    gm_rbm_free(&r);
}

static const char *only_;
#define RUN(t) do { if (!only_ || strstr(#t, only_)) GM_RUN(t); } while (0)
int main(int argc, char **argv) {
    only_ = argc > 1 ? argv[1] : NULL;
    RUN(test_rbm_exact_log_z_bernoulli);
    RUN(test_rbm_exact_log_z_gaussian);
    RUN(test_rbm_zero_model);
    RUN(test_rbm_ais_matches_exact);
    RUN(test_rbm_gibbs_matches_exact);
    RUN(test_rbm_learns_digits);
    RUN(test_rbm_save_load);
    RUN(test_rbm_bad_input);
    RUN(test_rbm_k_ramp);
    RUN(test_langevin_step_and_bad_input);
    RUN(test_langevin_matches_mixture);
    RUN(test_ebm_learns_8gaussians);
    RUN(test_ebm_conv_learns_digits);
    RUN(test_ebm_save_load_and_bad_input);
    gm_dataset_free(&train_);
    gm_dataset_free(&test_);
    return gm_test_summary();
}
