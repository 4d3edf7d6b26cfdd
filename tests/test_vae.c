/* test_vae.c: tests of genmod_vae.h (autoencoders, denoising, sparse, VAE, beta-VAE, conditional,
 * convolutional, inference calls, checkpoints, bad input).
 * Build: gcc -O2 -std=c99 -Wall -Wextra -Wpedantic -I. tests/test_vae.c -o /tmp/tv -lm -lpthread
 * Run from the repository root (finds data/) or from tests/ (finds ../data/).
 * The learning tests use small networks on 1000 bundled digits and a few hundred steps, so the
 * whole file stays fast (and under ASan); each states the bound and what an untrained model scores. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define GENMOD_IMPLEMENTATION
#include "genmod.h"
#define GENMOD_VAE_IMPLEMENTATION
#include "genmod_vae.h"
#include "gm_test.h"

#define NTRAIN 1000
#define NTEST 500
static gm_dataset train_, test_;
static int have_data_;

static int load_data(void) {
    if (gm_mnist_load(&train_, &test_, "data", NTRAIN, NTEST, 0.0f, 1.0f) == 0) return 1;
    if (gm_mnist_load(&train_, &test_, "../data", NTRAIN, NTEST, 0.0f, 1.0f) == 0) return 1;
    printf("# cannot load the bundled MNIST: %s\n", gm_last_error());
    return 0;
}

/* A small dense VAE: 784-256 ELU, z = latent, 256-784. */
static gm_vae_config small_vae(int latent) {
    gm_vae_config c = gm_vae_default_config();
    c.arch.n_enc = 1; c.arch.enc[0] = 256;
    c.arch.n_dec = 1; c.arch.dec[0] = 256;
    c.latent = latent;
    return c;
}

/* A small dense autoencoder: 784-256-32 ReLU code, 256-784. */
static gm_ae_config small_ae(void) {
    gm_ae_config c = gm_ae_default_config();
    c.arch.n_enc = 2; c.arch.enc[0] = 256; c.arch.enc[1] = 32;
    c.arch.n_dec = 1; c.arch.dec[0] = 256;
    c.batch = 64;
    return c;
}

/* steps minibatches of `batch` cycling through the training set (labels when conditional). */
static int train_vae(gm_vae *m, int steps, int batch) {
    int s;
    for (s = 0; s < steps; s++) {
        int off = (s * batch) % (NTRAIN - batch + 1);
        if (gm_vae_train_step(m, train_.x + (size_t)off * 784, m->cfg.nclasses ? train_.y + off : NULL, batch, NULL) != 0) {
            printf("# train step %d: %s\n", s, gm_last_error());
            return -1;
        }
    }
    return 0;
}

static int train_ae(gm_ae *m, int steps, int batch) {
    int s;
    for (s = 0; s < steps; s++) {
        int off = (s * batch) % (NTRAIN - batch + 1);
        if (gm_ae_train_step(m, train_.x + (size_t)off * 784, NULL, batch, NULL) != 0) {
            printf("# train step %d: %s\n", s, gm_last_error());
            return -1;
        }
    }
    return 0;
}

/* Mean squared error per pixel of predicting every test image by the training mean image: the
   best an autoencoder that ignores its input can do. */
static double mean_image_mse(void) {
    double mean[784] = {0}, s = 0;
    int i, j;
    for (i = 0; i < NTRAIN; i++)
        for (j = 0; j < 784; j++) mean[j] += train_.x[(size_t)i * 784 + j] / NTRAIN;
    for (i = 0; i < NTEST; i++)
        for (j = 0; j < 784; j++) {
            double d = test_.x[(size_t)i * 784 + j] - mean[j];
            s += d * d;
        }
    return s / (NTEST * 784.0);
}

/* ------------------------------------------------------------------------ autoencoders */
/* Untrained: test MSE ~0.23/pixel (sigmoid outputs near 0.5); predicting the mean image gives
   ~0.067. After 200 RMSProp steps of 64 the code must carry the digit: MSE below 0.04. */
GM_TEST(test_ae_learns) {
    gm_ae_config c = small_ae();
    gm_ae m;
    gm_ae_stats before, after;
    GM_CHECK(gm_ae_init(&m, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ae_evaluate(&m, test_.x, NTEST, &before) == 0, "%s", gm_last_error());
    GM_CHECK(train_ae(&m, 200, 64) == 0, "training failed");
    GM_CHECK(gm_ae_evaluate(&m, test_.x, NTEST, &after) == 0, "%s", gm_last_error());
    printf("# ae: test mse/pixel untrained %.4f, mean image %.4f, trained %.4f (bound 0.04)\n", before.mse,
           mean_image_mse(), after.mse);
    GM_CHECK(before.mse > 0.1, "untrained mse %g", before.mse);
    GM_CHECK(after.mse < 0.04, "trained mse %g", after.mse);
    gm_ae_free(&m);
}

/* Convolutional autoencoder (convs 8, 16 -> code 32 -> deconvs, ELU, linear code): 200 Adam
   steps; bound 0.045 (the mean image scores ~0.065, where a conv AE sits for its first ~100 steps). */
GM_TEST(test_ae_conv_learns) {
    gm_ae_config c = gm_ae_conv_config();
    gm_ae m;
    gm_ae_stats after;
    float code[32 * 2], rec[784 * 2];
    c.arch.conv_ch[0] = 8; c.arch.conv_ch[1] = 16; c.arch.enc[0] = 32;
    c.arch.act = GM_ACT_ELU; c.code_act = GM_ACT_IDENTITY;
    GM_CHECK(gm_ae_init(&m, &c) == 0, "%s", gm_last_error());
    GM_CHECK(m.code_dim == 32, "code dim %d", m.code_dim);
    GM_CHECK(train_ae(&m, 200, 64) == 0, "training failed");
    GM_CHECK(gm_ae_evaluate(&m, test_.x, NTEST, &after) == 0, "%s", gm_last_error());
    printf("# conv ae: test mse/pixel trained %.4f (bound 0.045)\n", after.mse);
    GM_CHECK(after.mse < 0.045, "trained mse %g", after.mse);
    /* encode then decode is reconstruct */
    GM_CHECK(gm_ae_encode(&m, test_.x, 2, code) == 0 && gm_ae_decode(&m, code, 2, rec) == 0, "%s", gm_last_error());
    {
        float rec2[784 * 2];
        int i;
        double d = 0;
        GM_CHECK(gm_ae_reconstruct(&m, test_.x, 2, rec2) == 0, "%s", gm_last_error());
        for (i = 0; i < 784 * 2; i++) d += fabs(rec[i] - rec2[i]);
        GM_CHECK(d < 1e-3, "encode+decode differs from reconstruct by %g", d);
    }
    gm_ae_free(&m);
}

static double mse_between(const float *a, const float *b, size_t n) {
    double s = 0;
    size_t i;
    for (i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s / (double)n;
}

/* Denoising (Gaussian sigma 0.5 + 20% masking): the output of the trained model must be much
   closer to the clean image than its noisy input is (noisy ~0.28/pixel; bound: output < 0.06). */
GM_TEST(test_dae_denoises) {
    gm_ae_config c = small_ae();
    gm_ae m;
    float *noisy = (float *)malloc(sizeof(float) * 784 * NTEST), *out = (float *)malloc(sizeof(float) * 784 * NTEST);
    double noisy_mse, out_mse;
    c.noise_sigma = 0.5f;
    c.mask_prob = 0.2f;
    GM_CHECK(gm_ae_init(&m, &c) == 0, "%s", gm_last_error());
    GM_CHECK(train_ae(&m, 200, 64) == 0, "training failed");
    GM_CHECK(gm_ae_corrupt(&m, test_.x, NTEST, noisy) == 0, "%s", gm_last_error());
    GM_CHECK(gm_ae_reconstruct(&m, noisy, NTEST, out) == 0, "%s", gm_last_error());
    noisy_mse = mse_between(noisy, test_.x, (size_t)784 * NTEST);
    out_mse = mse_between(out, test_.x, (size_t)784 * NTEST);
    printf("# dae: mse to clean: noisy input %.4f, denoised output %.4f (bound 0.06)\n", noisy_mse, out_mse);
    GM_CHECK(noisy_mse > 0.2, "noise too weak: %g", noisy_mse);
    GM_CHECK(out_mse < 0.06, "denoised mse %g", out_mse);
    gm_ae_free(&m);
    free(noisy);
    free(out);
}

/* Sparse codes: an L1 penalty (1e-4) makes more code values exactly zero than no penalty (measured
   0.82 vs 0.58) and lowers the mean; a KL penalty (0.003) towards rho = 0.05 pulls the mean sigmoid
   activation from ~0.5 down to ~0.1 (bound < 0.12). Both still reconstruct: MSE below 0.06 (the
   mean image scores ~0.065). */
GM_TEST(test_sparse_penalties) {
    gm_ae_config c = small_ae();
    gm_ae plain, l1, kl;
    gm_ae_stats sp, sl, sk;
    GM_CHECK(gm_ae_init(&plain, &c) == 0, "%s", gm_last_error());
    c.sparsity = GM_AE_SPARSE_L1; c.sparsity_weight = 1e-4f;
    GM_CHECK(gm_ae_init(&l1, &c) == 0, "%s", gm_last_error());
    c.sparsity = GM_AE_SPARSE_KL; c.sparsity_weight = 0.003f; c.sparsity_target = 0.05f; c.code_act = GM_ACT_SIGMOID;
    GM_CHECK(gm_ae_init(&kl, &c) == 0, "%s", gm_last_error());
    GM_CHECK(train_ae(&plain, 150, 64) == 0 && train_ae(&l1, 150, 64) == 0 && train_ae(&kl, 150, 64) == 0, "training");
    GM_CHECK(gm_ae_evaluate(&plain, test_.x, NTEST, &sp) == 0 && gm_ae_evaluate(&l1, test_.x, NTEST, &sl) == 0 &&
             gm_ae_evaluate(&kl, test_.x, NTEST, &sk) == 0, "%s", gm_last_error());
    printf("# sparse: plain code mean %.3f zero %.2f mse %.4f | L1 mean %.3f zero %.2f mse %.4f | KL(0.05) mean %.3f mse %.4f\n",
           sp.code_mean, sp.code_zero_frac, sp.mse, sl.code_mean, sl.code_zero_frac, sl.mse, sk.code_mean, sk.mse);
    GM_CHECK(sl.code_zero_frac > sp.code_zero_frac + 0.1, "L1 zero fraction %g vs plain %g", sl.code_zero_frac, sp.code_zero_frac);
    GM_CHECK(sl.code_mean < sp.code_mean, "L1 code mean %g vs plain %g", sl.code_mean, sp.code_mean);
    GM_CHECK(sk.code_mean < 0.12, "KL code mean %g, target 0.05", sk.code_mean);
    GM_CHECK(sl.mse < 0.06 && sk.mse < 0.06, "sparse models should still beat the mean image: %g %g", sl.mse, sk.mse);
    gm_ae_free(&plain);
    gm_ae_free(&l1);
    gm_ae_free(&kl);
}

/* ------------------------------------------------------------------------ VAEs */
/* Untrained test -ELBO ~544 nats (every pixel at p = 0.5 costs 784 ln 2 = 543). A model that learns
   only the mean image scores ~206 nats (its BCE on the test set). After 300 Adam steps of 50 the
   bound is 175 nats; the IW-50 estimate of -log p(x) must not exceed the -ELBO. */
GM_TEST(test_vae_learns) {
    gm_vae_config c = small_vae(8);
    gm_vae m;
    gm_vae_eval before, after;
    double iw = 0, bpd = 0;
    float nll[50];
    GM_CHECK(gm_vae_init(&m, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_vae_evaluate(&m, test_.x, NULL, NTEST, &before) == 0, "%s", gm_last_error());
    GM_CHECK(train_vae(&m, 300, 50) == 0, "training failed");
    GM_CHECK(gm_vae_evaluate(&m, test_.x, NULL, NTEST, &after) == 0, "%s", gm_last_error());
    GM_CHECK(gm_vae_iw_nll(&m, test_.x, NULL, 50, 50, &iw, &bpd, nll) == 0, "%s", gm_last_error());
    printf("# vae: test -elbo untrained %.1f, trained %.1f (recon %.1f + kl %.1f; bound 175), %.4f bits/dim; "
           "IW-50 -log p(x) on 50 images %.1f\n", before.neg_elbo, after.neg_elbo, after.recon, after.kl,
           after.neg_elbo_bpd, iw);
    GM_CHECK(before.neg_elbo > 500, "untrained -elbo %g", before.neg_elbo);
    GM_CHECK(after.neg_elbo < 175, "trained -elbo %g", after.neg_elbo);
    GM_CHECK(iw < after.neg_elbo + 5 && iw > 0.5 * after.neg_elbo, "iw %g vs elbo %g", iw, after.neg_elbo);
    GM_CHECK_CLOSE(bpd, iw / (784 * log(2.0)), 1e-6);
    GM_CHECK(after.active >= 2, "only %d active latent dimensions", after.active);
    gm_vae_free(&m);
}

/* Gaussian decoders: fixed sigma and learned variance both train without NaN and lower the
   negative ELBO; the learned log-variance moves from its start. */
GM_TEST(test_vae_gaussian) {
    int kind;
    for (kind = GM_VAE_GAUSSIAN; kind <= GM_VAE_GAUSSIAN_LEARNED; kind++) {
        gm_vae_config c = small_vae(8);
        gm_vae m;
        gm_vae_eval before, after;
        c.likelihood = kind;
        c.gauss_sigma = 0.2f;
        GM_CHECK(gm_vae_init(&m, &c) == 0, "%s", gm_last_error());
        GM_CHECK(gm_vae_evaluate(&m, test_.x, NULL, NTEST, &before) == 0, "%s", gm_last_error());
        GM_CHECK(train_vae(&m, 100, 50) == 0, "training failed");
        GM_CHECK(gm_vae_evaluate(&m, test_.x, NULL, NTEST, &after) == 0, "%s", gm_last_error());
        printf("# vae %s: -elbo untrained %.1f trained %.1f\n", kind == GM_VAE_GAUSSIAN ? "gaussian" : "gaussian_learned",
               before.neg_elbo, after.neg_elbo);
        GM_CHECK(after.neg_elbo < before.neg_elbo - 100, "-elbo %g -> %g", before.neg_elbo, after.neg_elbo);
        if (kind == GM_VAE_GAUSSIAN_LEARNED) {
            float lv = gm_params_data(&m.params, m.out_logvar)[0];
            GM_CHECK(fabsf(lv - 2 * logf(0.2f)) > 0.02f, "learned log-variance did not move: %g", lv);
        }
        gm_vae_free(&m);
    }
}

/* Conditional VAE: samples drawn for label k should look like digit k. Each class's samples
   (z ~ N(0,I)) are assigned to the nearest training class-mean image; an unconditional model
   would score ~1/10; bound: at least 7 of 10 classes right. Same z, two labels: images differ. */
GM_TEST(test_cvae_label) {
    gm_vae_config c = small_vae(4);
    gm_vae m;
    static float mean[10][784], s[20 * 784];
    int cnt[10] = {0}, labels[20], i, j, k, right = 0;
    for (i = 0; i < NTRAIN; i++) {
        cnt[train_.y[i]]++;
        for (j = 0; j < 784; j++) mean[train_.y[i]][j] += train_.x[(size_t)i * 784 + j];
    }
    for (k = 0; k < 10; k++)
        for (j = 0; j < 784; j++) mean[k][j] /= cnt[k] ? cnt[k] : 1;
    c.nclasses = 10;
    GM_CHECK(gm_vae_init(&m, &c) == 0, "%s", gm_last_error());
    GM_CHECK(train_vae(&m, 300, 50) == 0, "training failed");
    for (k = 0; k < 10; k++) {
        int votes[10] = {0}, best = 0;
        for (i = 0; i < 20; i++) labels[i] = k;
        GM_CHECK(gm_vae_sample(&m, labels, 20, s) == 0, "%s", gm_last_error());
        for (i = 0; i < 20; i++) {
            int arg = 0;
            double bd = 1e30;
            for (j = 0; j < 10; j++) {
                double d = mse_between(s + (size_t)i * 784, mean[j], 784);
                if (d < bd) { bd = d; arg = j; }
            }
            votes[arg]++;
        }
        for (j = 1; j < 10; j++) best = votes[j] > votes[best] ? j : best;
        right += best == k;
    }
    printf("# cvae: %d of 10 labels give samples nearest their own class mean (bound 7)\n", right);
    GM_CHECK(right >= 7, "only %d of 10", right);
    {
        float z[4] = {0, 0, 0, 0}, a[784], b[784];
        int l0 = 0, l1 = 1;
        GM_CHECK(gm_vae_decode(&m, z, &l0, 1, a) == 0 && gm_vae_decode(&m, z, &l1, 1, b) == 0, "%s", gm_last_error());
        GM_CHECK(mse_between(a, b, 784) > 0.01, "label 0 and 1 decode alike: %g", mse_between(a, b, 784));
    }
    GM_CHECK(gm_vae_sample(&m, NULL, 2, s) != 0, "a conditional model without labels must fail");
    printf("# (expected) %s\n", gm_last_error());
    labels[0] = 10;
    GM_CHECK(gm_vae_sample(&m, labels, 1, s) != 0, "label 10 of 10 classes must fail");
    printf("# (expected) %s\n", gm_last_error());
    gm_vae_free(&m);
}

/* beta-VAE: beta = 20 drives latent dimensions to collapse; the per-dimension KL report shows
   it. Same model and budget at beta 1: every dimension carries > 0.05 nats (measured ~1.3 to
   2.6); at beta 20 the smallest is near zero (< 0.01 nats) and even the largest stays below
   beta 1's smallest. */
static void kl_range(gm_vae *m, float *lo, float *hi, int *active) {
    gm_vae_eval ev;
    int j;
    *lo = 1e30f; *hi = 0; *active = -1;
    if (gm_vae_evaluate(m, test_.x, NULL, NTEST, &ev) != 0) return;
    for (j = 0; j < m->cfg.latent; j++) {
        *lo = ev.kl_dim[j] < *lo ? ev.kl_dim[j] : *lo;
        *hi = ev.kl_dim[j] > *hi ? ev.kl_dim[j] : *hi;
    }
    *active = ev.active;
}

GM_TEST(test_kl_collapse) {
    gm_vae_config c = small_vae(8);
    gm_vae m1, m20;
    gm_vae_stats st;
    float lo1, hi1, lo20, hi20;
    int act1, act20;
    GM_CHECK(gm_vae_init(&m1, &c) == 0, "%s", gm_last_error());
    c.beta.beta = 20.0f;
    GM_CHECK(gm_vae_init(&m20, &c) == 0, "%s", gm_last_error());
    GM_CHECK(train_vae(&m1, 300, 50) == 0 && train_vae(&m20, 300, 50) == 0, "training failed");
    GM_CHECK(gm_vae_train_step(&m20, train_.x, NULL, 50, &st) == 0, "%s", gm_last_error());
    GM_CHECK(st.beta == 20.0f && st.kl_dim == m20.kl_dim, "stats beta %g", st.beta);
    kl_range(&m1, &lo1, &hi1, &act1);
    kl_range(&m20, &lo20, &hi20, &act20);
    printf("# KL per dim: beta 1 min %.3f max %.3f (%d of 8 > 0.01 nats); beta 20 min %.4f max %.3f (%d of 8)\n",
           lo1, hi1, act1, lo20, hi20, act20);
    GM_CHECK(lo1 > 0.05f, "beta 1: smallest per-dimension KL %g", lo1);
    GM_CHECK(lo20 < 0.01f, "beta 20: smallest per-dimension KL %g", lo20);
    GM_CHECK(hi20 < lo1, "beta 20's largest per-dimension KL %g should be below beta 1's smallest %g", hi20, lo1);
    gm_vae_free(&m1);
    gm_vae_free(&m20);
}

GM_TEST(test_beta_schedules) {
    gm_beta_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = GM_BETA_CONSTANT; s.beta = 2;
    GM_CHECK_CLOSE(gm_vae_beta_at(&s, 0), 2, 1e-6);
    GM_CHECK_CLOSE(gm_vae_beta_at(&s, 1000), 2, 1e-6);
    s.kind = GM_BETA_LINEAR; s.beta = 1; s.start = 0; s.steps = 100;
    GM_CHECK_CLOSE(gm_vae_beta_at(&s, 0), 0, 1e-6);
    GM_CHECK_CLOSE(gm_vae_beta_at(&s, 50), 0.5, 1e-6);
    GM_CHECK_CLOSE(gm_vae_beta_at(&s, 100), 1, 1e-6);
    GM_CHECK_CLOSE(gm_vae_beta_at(&s, 5000), 1, 1e-6);
    s.kind = GM_BETA_CYCLICAL; s.start = 0.1f; s.steps = 100; s.ramp = 0.5f;
    GM_CHECK_CLOSE(gm_vae_beta_at(&s, 0), 0.1, 1e-6);
    GM_CHECK_CLOSE(gm_vae_beta_at(&s, 25), 0.55, 1e-6);
    GM_CHECK_CLOSE(gm_vae_beta_at(&s, 60), 1, 1e-6);
    GM_CHECK_CLOSE(gm_vae_beta_at(&s, 100), 0.1, 1e-6);
    GM_CHECK_CLOSE(gm_vae_beta_at(&s, 125), 0.55, 1e-6);
}

/* The schedule reaches the train step: a linear warm-up from 0 reports beta 0 at the first step. */
GM_TEST(test_vae_warmup_in_step) {
    gm_vae_config c = small_vae(4);
    gm_vae m;
    gm_vae_stats st;
    c.beta.kind = GM_BETA_LINEAR; c.beta.start = 0; c.beta.beta = 1; c.beta.steps = 4;
    GM_CHECK(gm_vae_init(&m, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_vae_train_step(&m, train_.x, NULL, 10, &st) == 0, "%s", gm_last_error());
    GM_CHECK(st.beta == 0 && fabsf(st.loss - st.recon) < 1e-3f * st.recon, "beta %g loss %g recon %g", st.beta, st.loss, st.recon);
    GM_CHECK(gm_vae_train_step(&m, train_.x, NULL, 10, &st) == 0, "%s", gm_last_error());
    GM_CHECK_CLOSE(st.beta, 0.25, 1e-6);
    GM_CHECK_CLOSE(st.neg_elbo, st.recon + st.kl, 1e-5);
    gm_vae_free(&m);
}

/* Convolutional VAE (convs 8, 16, fc 64, z 8): 200 steps reach the same 175-nat bound. */
GM_TEST(test_conv_vae_learns) {
    gm_vae_config c = gm_vae_conv_config();
    gm_vae m;
    gm_vae_eval ev;
    c.arch.conv_ch[0] = 8; c.arch.conv_ch[1] = 16; c.arch.enc[0] = 64; c.arch.dec[0] = 64; c.latent = 8;
    GM_CHECK(gm_vae_init(&m, &c) == 0, "%s", gm_last_error());
    GM_CHECK(train_vae(&m, 200, 50) == 0, "training failed");
    GM_CHECK(gm_vae_evaluate(&m, test_.x, NULL, NTEST, &ev) == 0, "%s", gm_last_error());
    printf("# conv vae: test -elbo %.1f (bound 175)\n", ev.neg_elbo);
    GM_CHECK(ev.neg_elbo < 175, "-elbo %g", ev.neg_elbo);
    gm_vae_free(&m);
}

/* Conditional conv VAE: label planes join the image; one step runs and samples come out finite. */
GM_TEST(test_conv_cvae_runs) {
    gm_vae_config c = gm_vae_conv_config();
    gm_vae m;
    float s[2 * 784];
    int labels[2] = {3, 7}, i, finite = 1;
    c.arch.conv_ch[0] = 4; c.arch.conv_ch[1] = 8; c.arch.enc[0] = 32; c.arch.dec[0] = 32; c.latent = 4;
    c.nclasses = 10;
    GM_CHECK(gm_vae_init(&m, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_vae_train_step(&m, train_.x, train_.y, 20, NULL) == 0, "%s", gm_last_error());
    GM_CHECK(gm_vae_sample(&m, labels, 2, s) == 0, "%s", gm_last_error());
    for (i = 0; i < 2 * 784; i++) finite &= s[i] >= 0 && s[i] <= 1;
    GM_CHECK(finite, "samples outside [0,1]");
    gm_vae_free(&m);
}

/* Inference calls agree with each other: reconstruct = decode(encode mean); the interpolation's
   ends are the reconstructions of its two inputs; scores rank a noise image above digits. */
GM_TEST(test_vae_inference) {
    gm_vae_config c = small_vae(8);
    gm_vae m;
    float mu[2 * 8], lv[2 * 8], r1[2 * 784], r2[2 * 784], strip[5 * 784], sc[3], noise[784];
    static float three[3 * 784];
    int i;
    GM_CHECK(gm_vae_init(&m, &c) == 0, "%s", gm_last_error());
    GM_CHECK(train_vae(&m, 100, 50) == 0, "training failed");
    GM_CHECK(gm_vae_encode(&m, test_.x, NULL, 2, mu, lv) == 0, "%s", gm_last_error());
    GM_CHECK(gm_vae_decode(&m, mu, NULL, 2, r1) == 0 && gm_vae_reconstruct(&m, test_.x, NULL, 2, r2) == 0, "%s",
             gm_last_error());
    GM_CHECK(mse_between(r1, r2, 2 * 784) < 1e-10, "decode(mu) vs reconstruct %g", mse_between(r1, r2, 2 * 784));
    GM_CHECK(gm_vae_interpolate(&m, test_.x, test_.x + 784, NULL, 5, strip) == 0, "%s", gm_last_error());
    GM_CHECK(mse_between(strip, r2, 784) < 1e-10 && mse_between(strip + 4 * 784, r2 + 784, 784) < 1e-10, "strip ends");
    GM_CHECK(mse_between(strip + 2 * 784, r2, 784) > 1e-4, "the middle of the strip equals an end");
    for (i = 0; i < 784; i++) noise[i] = (float)((i * 7919) % 101) / 100.0f;
    memcpy(three, test_.x, sizeof(float) * 2 * 784);
    memcpy(three + 2 * 784, noise, sizeof noise);
    GM_CHECK(gm_vae_score(&m, three, NULL, 3, GM_VAE_SCORE_NELBO, sc) == 0, "%s", gm_last_error());
    GM_CHECK(sc[2] > sc[0] && sc[2] > sc[1], "nelbo scores %g %g noise %g", sc[0], sc[1], sc[2]);
    GM_CHECK(gm_vae_score(&m, three, NULL, 3, GM_VAE_SCORE_RECON, sc) == 0, "%s", gm_last_error());
    GM_CHECK(sc[2] > sc[0] && sc[2] > sc[1], "recon scores %g %g noise %g", sc[0], sc[1], sc[2]);
    gm_vae_free(&m);
}

/* Everything a load could change in a model: weights, optimizer moments and steps. */
typedef struct model_copy {
    float *params, *m, *v;
    size_t count, nopt;
    long step, opt_step;
} model_copy;

static void copy_take(model_copy *c, const gm_params *P, const gm_optim *o, long step) {
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
}

/* 1 when the model holds exactly what c took, bit for bit. */
static int copy_same(const model_copy *c, const gm_params *P, const gm_optim *o, long step) {
    if (P->count != c->count || step != c->step || o->step != c->opt_step || (o->m ? o->n : 0) != c->nopt) return 0;
    if (memcmp(c->params, P->data, sizeof(float) * c->count) != 0) return 0;
    return !c->nopt || (memcmp(c->m, o->m, sizeof(float) * c->nopt) == 0 && memcmp(c->v, o->v, sizeof(float) * c->nopt) == 0);
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

/* Checkpoints: save, load into a fresh model with the same config, same outputs and steps. */
GM_TEST(test_save_load) {
    const char *path = "/tmp/gm_test_vae_ckpt.safetensors";
    gm_vae_config c = small_vae(4);
    gm_vae a, b;
    gm_ae_config ac = small_ae();
    gm_ae ae, ae2;
    float ra[784], rb[784];
    GM_CHECK(gm_vae_init(&a, &c) == 0 && gm_vae_init(&b, &c) == 0, "%s", gm_last_error());
    GM_CHECK(train_vae(&a, 5, 50) == 0, "training failed");
    GM_CHECK(gm_vae_save(&a, path) == 0, "%s", gm_last_error());
    GM_CHECK(gm_vae_load(&b, path) == 0, "%s", gm_last_error());
    GM_CHECK(b.step == 5 && b.opt.step == 5, "steps %ld %ld", b.step, b.opt.step);
    GM_CHECK(gm_vae_reconstruct(&a, test_.x, NULL, 1, ra) == 0 && gm_vae_reconstruct(&b, test_.x, NULL, 1, rb) == 0, "x");
    GM_CHECK(memcmp(ra, rb, sizeof ra) == 0, "loaded model differs");
    GM_CHECK(gm_ae_init(&ae, &ac) == 0 && gm_ae_init(&ae2, &ac) == 0, "%s", gm_last_error());
    GM_CHECK(train_ae(&ae, 3, 64) == 0, "training failed");
    GM_CHECK(gm_ae_save(&ae, path) == 0 && gm_ae_load(&ae2, path) == 0, "%s", gm_last_error());
    GM_CHECK(ae2.step == 3 && memcmp(ae.params.data, ae2.params.data, sizeof(float) * ae.params.count) == 0,
             "loaded autoencoder differs (step %ld)", ae2.step);
    gm_vae_free(&a); gm_vae_free(&b);
    gm_ae_free(&ae); gm_ae_free(&ae2);
    remove(path);
}

/* A refused load: -1, a message holding every string of `want` (NULL-terminated), and the model
   exactly as it was (weights, optimizer moments, steps). The models have trained a few steps so
   their optimizer state exists and would show any overwrite. */
static void check_refused_vae(gm_vae *m, const char *path, const char *const *want, const char *what) {
    model_copy before;
    int i;
    copy_take(&before, &m->params, &m->opt, m->step);
    GM_CHECK(gm_vae_load(m, path) != 0, "%s: must be refused", what);
    printf("# (expected) %s\n", gm_last_error());
    for (i = 0; want[i]; i++) GM_CHECK(strstr(gm_last_error(), want[i]) != NULL, "%s: message lacks '%s'", what, want[i]);
    GM_CHECK(copy_same(&before, &m->params, &m->opt, m->step), "%s: the refused load changed the model", what);
    free(before.params);
}

static void check_refused_ae(gm_ae *m, const char *path, const char *const *want, const char *what) {
    model_copy before;
    int i;
    copy_take(&before, &m->params, &m->opt, m->step);
    GM_CHECK(gm_ae_load(m, path) != 0, "%s: must be refused", what);
    printf("# (expected) %s\n", gm_last_error());
    for (i = 0; want[i]; i++) GM_CHECK(strstr(gm_last_error(), want[i]) != NULL, "%s: message lacks '%s'", what, want[i]);
    GM_CHECK(copy_same(&before, &m->params, &m->opt, m->step), "%s: the refused load changed the model", what);
    free(before.params);
}

/* Files of another model, another architecture, or not genmod's at all are refused with a message
   naming both sides, and leave the model untouched. */
GM_TEST(test_load_refusals) {
    const char *path = "/tmp/gm_test_vae_refuse.safetensors", *foreign = "/tmp/gm_test_vae_foreign.safetensors";
    gm_vae_config c = small_vae(4), ct = small_vae(4), cc = gm_vae_conv_config();
    gm_ae_config ac = small_ae();
    gm_vae dense, tanh_vae, conv;
    gm_ae ae;
    const char *vae_in_ae[] = {"'vae'", "'ae'", NULL};
    const char *act[] = {"act=elu", "act=tanh", NULL};
    const char *shape[] = {"conv=[]", "conv=[4,8]", NULL};
    const char *want_vae[] = {"'vae'", NULL}, *want_ae[] = {"'ae'", NULL}, *any[] = {NULL};
    ct.arch.act = GM_ACT_TANH;   /* same shapes, other activation: only the metadata tells them apart */
    cc.arch.conv_ch[0] = 4; cc.arch.conv_ch[1] = 8; cc.arch.enc[0] = 32; cc.arch.dec[0] = 32; cc.latent = 4;
    GM_CHECK(gm_vae_init(&dense, &c) == 0 && gm_vae_init(&tanh_vae, &ct) == 0 && gm_vae_init(&conv, &cc) == 0 &&
             gm_ae_init(&ae, &ac) == 0, "%s", gm_last_error());
    GM_CHECK(train_vae(&dense, 2, 20) == 0 && train_vae(&tanh_vae, 2, 20) == 0 && train_vae(&conv, 2, 20) == 0 &&
             train_ae(&ae, 2, 20) == 0, "training failed");
    GM_CHECK(gm_vae_save(&dense, path) == 0, "%s", gm_last_error());
    check_refused_ae(&ae, path, vae_in_ae, "a VAE file into an autoencoder");
    check_refused_vae(&tanh_vae, path, act, "an ELU VAE file into a tanh VAE");
    check_refused_vae(&conv, path, shape, "a dense VAE file into a conv VAE");
    GM_CHECK(write_foreign_safetensors(foreign) == 0, "cannot write %s", foreign);
    check_refused_vae(&dense, foreign, want_vae, "a safetensors file genmod did not write, into a VAE");
    check_refused_ae(&ae, foreign, want_ae, "a safetensors file genmod did not write, into an autoencoder");
    check_refused_vae(&dense, "/nonexistent/ckpt.safetensors", any, "a missing file");
    gm_vae_free(&dense); gm_vae_free(&tanh_vae); gm_vae_free(&conv);
    gm_ae_free(&ae);
    remove(path);
    remove(foreign);
}

/* A NaN (or infinite) loss is refused and the step leaves the weights, the optimizer state and the
   step counts exactly as they were; a good step still works afterwards. */
GM_TEST(test_nan_loss_untouched) {
    gm_vae_config c = small_vae(4);
    gm_ae_config ac = small_ae();
    gm_vae m;
    gm_ae ae;
    model_copy before;
    static float x[10 * 784];
    int k;
    GM_CHECK(gm_vae_init(&m, &c) == 0 && gm_ae_init(&ae, &ac) == 0, "%s", gm_last_error());
    GM_CHECK(train_vae(&m, 3, 10) == 0 && train_ae(&ae, 3, 10) == 0, "training failed");
    memcpy(x, train_.x, sizeof x);
    for (k = 0; k < 2; k++) {
        x[3] = k ? INFINITY : NAN;
        copy_take(&before, &m.params, &m.opt, m.step);
        GM_CHECK(gm_vae_train_step(&m, x, NULL, 10, NULL) != 0, "VAE: a %s loss must be refused", k ? "infinite" : "NaN");
        printf("# (expected) %s\n", gm_last_error());
        GM_CHECK(strstr(gm_last_error(), "NaN") || strstr(gm_last_error(), "infinite"), "message: %s", gm_last_error());
        GM_CHECK(copy_same(&before, &m.params, &m.opt, m.step), "VAE: the refused step changed the model");
        free(before.params);
        copy_take(&before, &ae.params, &ae.opt, ae.step);
        GM_CHECK(gm_ae_train_step(&ae, x, NULL, 10, NULL) != 0, "AE: a %s loss must be refused", k ? "infinite" : "NaN");
        printf("# (expected) %s\n", gm_last_error());
        GM_CHECK(copy_same(&before, &ae.params, &ae.opt, ae.step), "AE: the refused step changed the model");
        free(before.params);
    }
    x[3] = 0;
    GM_CHECK(gm_vae_train_step(&m, x, NULL, 10, NULL) == 0 && m.step == 4, "a good VAE step after bad ones: %s",
             gm_last_error());
    GM_CHECK(gm_ae_train_step(&ae, x, NULL, 10, NULL) == 0 && ae.step == 4, "a good AE step after bad ones: %s",
             gm_last_error());
    gm_vae_free(&m);
    gm_ae_free(&ae);
}

/* Labels must fit the model: none for an autoencoder or an unconditional VAE; nothing changes. */
GM_TEST(test_labels_refused) {
    gm_vae_config c = small_vae(4);
    gm_ae_config ac = small_ae();
    gm_vae m;
    gm_ae ae;
    model_copy before;
    float out[784];
    GM_CHECK(gm_vae_init(&m, &c) == 0 && gm_ae_init(&ae, &ac) == 0, "%s", gm_last_error());
    copy_take(&before, &ae.params, &ae.opt, ae.step);
    GM_CHECK(gm_ae_train_step(&ae, train_.x, train_.y, 10, NULL) != 0, "an autoencoder must refuse labels");
    printf("# (expected) %s\n", gm_last_error());
    GM_CHECK(strstr(gm_last_error(), "labels") != NULL, "message: %s", gm_last_error());
    GM_CHECK(copy_same(&before, &ae.params, &ae.opt, ae.step), "the refused step changed the autoencoder");
    free(before.params);
    copy_take(&before, &m.params, &m.opt, m.step);
    GM_CHECK(gm_vae_train_step(&m, train_.x, train_.y, 10, NULL) != 0, "an unconditional VAE must refuse labels");
    printf("# (expected) %s\n", gm_last_error());
    GM_CHECK(copy_same(&before, &m.params, &m.opt, m.step), "the refused step changed the VAE");
    free(before.params);
    GM_CHECK(gm_vae_reconstruct(&m, train_.x, train_.y, 1, out) != 0, "reconstruct with labels on an unconditional VAE");
    GM_CHECK(gm_vae_train_step(&m, train_.x, NULL, 10, NULL) == 0 && gm_ae_train_step(&ae, train_.x, NULL, 10, NULL) == 0,
             "%s", gm_last_error());
    gm_vae_free(&m);
    gm_ae_free(&ae);
}

/* Bad input gives -1 and a message, never a crash. */
GM_TEST(test_bad_input) {
    gm_vae_config c = small_vae(4);
    gm_ae_config ac = small_ae();
    gm_vae m;
    gm_ae ae;
    static float x[10 * 784];
    float out[784];
    memset(&m, 0, sizeof m);   /* free is safe on a zeroed model, twice, and after a failed init */
    memset(&ae, 0, sizeof ae);
    gm_vae_free(&m); gm_vae_free(&m);
    gm_ae_free(&ae); gm_ae_free(&ae);
    c.latent = 0;
    GM_CHECK(gm_vae_init(&m, &c) != 0, "latent 0 must fail");
    gm_vae_free(&m);
    c = gm_vae_conv_config(); c.arch.in_h = 30;
    GM_CHECK(gm_vae_init(&m, &c) != 0, "30 rows with two stride-2 convs must fail");
    printf("# (expected) %s\n", gm_last_error());
    c = small_vae(4); c.beta.kind = GM_BETA_LINEAR; c.beta.steps = 0;
    GM_CHECK(gm_vae_init(&m, &c) != 0, "linear schedule without steps must fail");
    ac.sparsity = GM_AE_SPARSE_KL;
    GM_CHECK(gm_ae_init(&ae, &ac) != 0, "KL sparsity on a ReLU code must fail");
    printf("# (expected) %s\n", gm_last_error());
    c = small_vae(4);
    GM_CHECK(gm_vae_init(&m, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_vae_train_step(&m, x, NULL, 0, NULL) != 0, "n = 0 must fail");
    GM_CHECK(gm_vae_train_step(&m, NULL, NULL, 5, NULL) != 0, "NULL x must fail");
    GM_CHECK(gm_vae_iw_nll(&m, x, NULL, 1, 0, NULL, NULL, NULL) != 0, "k = 0 must fail");
    x[3] = NAN;
    GM_CHECK(gm_vae_train_step(&m, x, NULL, 10, NULL) != 0, "NaN input must fail");
    printf("# (expected) %s\n", gm_last_error());
    GM_CHECK(strstr(gm_last_error(), "NaN") != NULL, "message should say NaN: %s", gm_last_error());
    x[3] = 0;
    GM_CHECK(gm_vae_train_step(&m, x, NULL, 10, NULL) == 0, "a good step after a bad one: %s", gm_last_error());
    GM_CHECK(gm_vae_score(&m, x, NULL, 1, 7, out) != 0, "unknown score kind must fail");
    gm_vae_free(&m);
}

static const char *only_;   /* argv[1]: run only the tests whose name contains it */
#define RUN(t) do { if (!only_ || strstr(#t, only_)) GM_RUN(t); } while (0)

int main(int argc, char **argv) {
    only_ = argc > 1 ? argv[1] : NULL;
    if (!(have_data_ = load_data())) {
        printf("FAIL test_vae: no data\n");
        return 1;
    }
    RUN(test_beta_schedules);
    RUN(test_bad_input);
    RUN(test_vae_warmup_in_step);
    RUN(test_save_load);
    RUN(test_load_refusals);
    RUN(test_nan_loss_untouched);
    RUN(test_labels_refused);
    RUN(test_ae_learns);
    RUN(test_ae_conv_learns);
    RUN(test_dae_denoises);
    RUN(test_sparse_penalties);
    RUN(test_vae_learns);
    RUN(test_vae_gaussian);
    RUN(test_vae_inference);
    RUN(test_cvae_label);
    RUN(test_kl_collapse);
    RUN(test_conv_vae_learns);
    RUN(test_conv_cvae_runs);
    gm_dataset_free(&train_);
    gm_dataset_free(&test_);
    return gm_test_summary();
}
