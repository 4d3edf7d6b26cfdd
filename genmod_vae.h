/* genmod_vae.h - v0.1 - autoencoders and variational autoencoders on top of genmod.h.
   Single-header C library (stb style): the declarations are always visible, the implementation
   is compiled where GENMOD_VAE_IMPLEMENTATION is defined.

   USAGE
     In exactly one C or C++ file, in this order:
         #define GENMOD_IMPLEMENTATION
         #include "genmod.h"
         #define GENMOD_VAE_IMPLEMENTATION
         #include "genmod_vae.h"
     Elsewhere just #include "genmod_vae.h". Build: cc -O2 prog.c -lm -lpthread
     (the implementation reports errors through genmod's gm_last_error(), so for now it must sit in
     the same file as genmod's implementation).

   THE SHORTEST PROGRAM (the reference MLP VAE on MNIST)

         gm_dataset train, test;
         gm_mnist_load(&train, &test, "data", 0, 0, 0.0f, 1.0f);     // pixels on [0,1]
         gm_vae_config cfg = gm_vae_default_config();                 // 784-784-256-128 ELU, z = 10
         gm_vae vae;
         if (gm_vae_init(&vae, &cfg) != 0) { puts(gm_last_error()); return 1; }
         gm_batcher b;  const int *idx;  int k;
         float *xb = malloc(sizeof(float) * 784 * cfg.batch);
         gm_batcher_init(&b, train.n, cfg.batch, 1, 0);
         for (int epoch = 0; epoch < 8; epoch++)
             while ((k = gm_batcher_next(&b, &idx)) > 0) {
                 gm_dataset_gather(&train, idx, k, xb, NULL);
                 if (gm_vae_train_step(&vae, xb, NULL, k, NULL) != 0) { puts(gm_last_error()); return 1; }
             }
         gm_vae_eval ev;
         gm_vae_evaluate(&vae, test.x, NULL, test.n, &ev);         // ev.neg_elbo in nats per image
         gm_vae_free(&vae);

   MODELS
     gm_ae    undercomplete autoencoder with an MSE loss on sigmoid outputs; dense or convolutional.
              Denoising (Gaussian and/or masking noise on the input, clean target) and sparse (an L1
              or a KL-to-target-mean penalty on the code) are switches of its config.
     gm_vae   Gaussian encoder q(z|x) (mean and log-variance heads), z = mu + sigma * eps, Bernoulli
              decoder (binary cross-entropy on [0,1] pixels) or Gaussian decoder (fixed or learned
              variance); beta and a beta schedule (constant, linear warm-up, cyclical) on the KL;
              conditional on a one-hot label (concatenated to the encoder input and to z);
              dense or convolutional (stride-2 convs, dense heads, transposed-conv decoder).
     Both share gm_vae_arch, the network shape: input c x h x w, optional stride-2 4x4 convolutions,
     dense widths, hidden activation. Defaults follow the PyTorch references in
     shared/baselines/quality (ae_mnist.py, vae_mnist.py), PyTorch's default initialisation included.

   EACH MODEL HAS
     _default_config / _conv_config, _init, _free, _train_step (one optimizer step on a batch of
     plain floats), inference calls on plain float arrays (any n: processed in chunks), _save/_load
     (a safetensors checkpoint with the config in its metadata and the optimizer state), and for
     custom losses _forward, which emits the model into your own gm_graph.

   LICENSE: MIT, at the end of the file.
*/
#ifndef GENMOD_VAE_H
#define GENMOD_VAE_H

#include "genmod.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================= */
/* Network shape shared by the autoencoders and the VAEs                                   */
/* ======================================================================================= */
#define GM_VAE_MAX_LAYERS 8

enum { GM_VAE_RELU = 0, GM_VAE_ELU, GM_VAE_LEAKY_RELU, GM_VAE_TANH, GM_VAE_SIGMOID, GM_VAE_IDENTITY };

typedef struct gm_vae_arch {
    int in_c, in_h, in_w;               /* one example: c x h x w floats (dense nets see them flat) */
    int n_conv;                         /* stride-2 4x4 convs before the dense encoder (0: dense) */
    int conv_ch[GM_VAE_MAX_LAYERS];     /* their output channels; the decoder mirrors them */
    int n_enc, enc[GM_VAE_MAX_LAYERS];  /* dense encoder widths (an autoencoder's last one is its code) */
    int n_dec, dec[GM_VAE_MAX_LAYERS];  /* dense decoder hidden widths (before the output layer) */
    int act;                            /* hidden activation, GM_VAE_RELU ... */
} gm_vae_arch;

/* The encoder or the decoder: convolutions and dense layers with their activation. */
typedef struct gm_vae_net {
    int nconv, nlin;
    gm_conv conv[GM_VAE_MAX_LAYERS];
    gm_linear lin[GM_VAE_MAX_LAYERS];
    int act, last_act;     /* hidden activation; activation of the last layer (decoders: none) */
    int c, h, w;           /* encoder: its input image; decoder: the image fed to the first deconv */
    int classes;           /* one-hot label width joined to the input (0: none) */
} gm_vae_net;

/* ======================================================================================= */
/* Autoencoders: plain, denoising, sparse                                                  */
/* ======================================================================================= */
enum { GM_AE_SPARSE_NONE = 0, GM_AE_SPARSE_L1, GM_AE_SPARSE_KL };

typedef struct gm_ae_config {
    gm_vae_arch arch;        /* dense default: 784-784-256-128 ReLU, decoder 128-128-256-784 */
    int code_act;            /* activation of the code (the last encoder layer): ReLU as the reference */
    float noise_sigma;       /* denoising: Gaussian noise of this std added to the input (0: off) */
    float mask_prob;         /* denoising: each input value set to 0 with this probability (0: off) */
    int sparsity;            /* GM_AE_SPARSE_NONE, _L1 (mean |code| sum), _KL (needs a sigmoid code) */
    float sparsity_weight;   /* weight of the penalty in the loss */
    float sparsity_target;   /* KL: the target mean activation rho of each code unit (0.05) */
    float zero_thresh;       /* a code value below this counts as "near zero" in the stats (0.01) */
    int optim;               /* GM_RMSPROP (reference: lr 1e-3, alpha 0.99), GM_ADAM, GM_ADAMW, GM_SGD */
    float lr;
    int batch;               /* the recommended batch size (256); train_step takes any */
    uint64_t seed;           /* weights, noise, graph randomness */
} gm_ae_config;

typedef struct gm_ae {
    gm_ae_config cfg;
    gm_params params;             /* every weight */
    gm_vae_net enc, dec;
    gm_optim opt;            /* change hyperparameters or the schedule after init if you like */
    gm_graph *g;             /* used by every call of this model (one thread at a time) */
    gm_rng rng;              /* corruption noise */
    long step;               /* train steps taken */
    int in_dim, code_dim;
    float *scratch;          /* corrupted inputs of one batch */
    size_t scratch_cap;
} gm_ae;

typedef struct gm_ae_stats {
    float loss;              /* mse + penalty */
    float mse;               /* mean squared error per value against the clean input */
    float penalty;           /* weighted sparsity penalty (0 without) */
    float code_mean;         /* mean code activation */
    float code_zero_frac;    /* fraction of code values below cfg.zero_thresh in magnitude */
} gm_ae_stats;

GMDEF gm_ae_config gm_ae_default_config(void);  /* dense reference autoencoder, as ae_mnist.py */
GMDEF gm_ae_config gm_ae_conv_config(void);     /* convs 32, 64 -> code 128 -> deconvs; Adam 1e-3 */
GMDEF int  gm_ae_init(gm_ae *m, const gm_ae_config *cfg);   /* 0, or -1 (gm_last_error) */
GMDEF void gm_ae_free(gm_ae *m);
/* One optimizer step on x (n examples of in_dim floats): corrupts x (if denoising), reconstructs,
   MSE against the clean x plus the sparsity penalty. st may be NULL. 0 or -1 (NaN loss, bad input). */
GMDEF int  gm_ae_train_step(gm_ae *m, const float *x, int n, gm_ae_stats *st);
/* The model's corruption of x (what train_step feeds the encoder), into out (n * in_dim). */
GMDEF int  gm_ae_corrupt(gm_ae *m, const float *x, int n, float *out);
GMDEF int  gm_ae_encode(gm_ae *m, const float *x, int n, float *code);       /* code: n * code_dim */
GMDEF int  gm_ae_decode(gm_ae *m, const float *code, int n, float *out);     /* out: n * in_dim */
GMDEF int  gm_ae_reconstruct(gm_ae *m, const float *x, int n, float *out);
/* Test figures over n examples (no corruption): st->mse is the mean squared error per value. */
GMDEF int  gm_ae_evaluate(gm_ae *m, const float *x, int n, gm_ae_stats *st);
/* Anomaly score: the summed squared reconstruction error of each example, into scores (n). */
GMDEF int  gm_ae_score(gm_ae *m, const float *x, int n, float *scores);
/* Emits the model into g: x (N, in_dim) -> code (N, code_dim) and reconstruction (N, in_dim) in
   [0,1]. Either output may be NULL. 0 or -1. */
GMDEF int  gm_ae_forward(gm_graph *g, gm_ae *m, gm_tensor *x, gm_tensor **code, gm_tensor **recon);
GMDEF int  gm_ae_save(gm_ae *m, const char *path);
GMDEF int  gm_ae_load(gm_ae *m, const char *path);   /* m: initialized with the same config */

/* ======================================================================================= */
/* Variational autoencoders: VAE, beta-VAE, conditional, convolutional                     */
/* ======================================================================================= */
enum { GM_VAE_BERNOULLI = 0, GM_VAE_GAUSSIAN, GM_VAE_GAUSSIAN_LEARNED };
enum { GM_BETA_CONSTANT = 0, GM_BETA_LINEAR, GM_BETA_CYCLICAL };
enum { GM_VAE_SCORE_NELBO = 0, GM_VAE_SCORE_RECON };

/* The KL weight at each train step. CONSTANT: beta. LINEAR: from start to beta over `steps`, then
   beta (KL warm-up). CYCLICAL (Fu et al. 2019): cycles of `steps`; the first `ramp` fraction of
   each rises linearly from start to beta, the rest stays at beta. */
typedef struct gm_beta_schedule {
    int kind;
    float beta, start;
    long steps;
    float ramp;
} gm_beta_schedule;

typedef struct gm_vae_config {
    gm_vae_arch arch;        /* dense default: 784-784-256-128 ELU, decoder 256-384-512 ELU -> 784 */
    int latent;              /* z dimensions (10) */
    int nclasses;            /* > 0: conditional VAE, a one-hot label joins x and z (0) */
    int likelihood;          /* GM_VAE_BERNOULLI, GM_VAE_GAUSSIAN (fixed std), GM_VAE_GAUSSIAN_LEARNED */
    float gauss_sigma;       /* Gaussian decoder std (fixed), or its start value (learned); 0.1 */
    gm_beta_schedule beta;   /* constant 1: the plain ELBO */
    int optim;               /* GM_ADAM (reference: lr 1e-3, betas 0.9, 0.999), GM_RMSPROP, ... */
    float lr;
    int batch;               /* the recommended batch size (100); train_step takes any */
    uint64_t seed;
} gm_vae_config;

typedef struct gm_vae {
    gm_vae_config cfg;
    gm_params params;
    gm_vae_net enc, dec;
    gm_linear mu, logvar;    /* the heads */
    int out_logvar;          /* view of the learned decoder log-variance (GAUSSIAN_LEARNED), else -1 */
    gm_optim opt;
    gm_graph *g;
    gm_rng rng;              /* prior samples, importance samples */
    long step;               /* train steps taken (drives the beta schedule) */
    int in_dim;
    float *kl_dim;           /* (latent): mean KL of each dimension in the last train step / evaluation */
    float *scratch;
    size_t scratch_cap;
} gm_vae;

/* What gm_vae_forward emits into a graph. */
typedef struct gm_vae_out {
    gm_tensor *mu, *logvar;  /* (N, latent): q(z|x) */
    gm_tensor *z;            /* (N, latent): mu + exp(logvar/2) eps, or mu when not sampling */
    gm_tensor *logits;       /* (N, in_dim): decoder output before the sigmoid */
    gm_tensor *mean;         /* (N, in_dim): decoder mean, sigmoid(logits) */
    gm_tensor *recon;        /* (N): -log p(x|z) in nats */
    gm_tensor *kl;           /* (N): KL(q(z|x) || N(0, I)) in nats */
} gm_vae_out;

typedef struct gm_vae_stats {
    float loss;              /* mean of recon + beta * kl: what was minimized */
    float neg_elbo;          /* mean of recon + kl (nats per example) */
    float recon, kl, beta;
    const float *kl_dim;     /* latent values: mean KL per dimension (m->kl_dim) */
} gm_vae_stats;

typedef struct gm_vae_eval {
    double neg_elbo, recon, kl;   /* nats per example (single-sample estimate) */
    double neg_elbo_bpd;          /* bits per dimension: nats / (in_dim ln 2) */
    const float *kl_dim;          /* mean KL per latent dimension: ~0 marks a collapsed unit */
    int active;                   /* dimensions with a mean KL above 0.01 nats */
} gm_vae_eval;

GMDEF gm_vae_config gm_vae_default_config(void);   /* dense reference VAE, as vae_mnist.py */
GMDEF gm_vae_config gm_vae_conv_config(void);      /* convs 32, 64 (4x4, stride 2), fc 256, z 10 */
GMDEF float gm_vae_beta_at(const gm_beta_schedule *s, long step);
GMDEF int  gm_vae_init(gm_vae *m, const gm_vae_config *cfg);
GMDEF void gm_vae_free(gm_vae *m);
/* One optimizer step on x (n * in_dim floats); labels (n, in 0..nclasses-1) for a conditional
   model, else NULL. st may be NULL. 0, or -1 with gm_last_error() (NaN loss, bad labels...). */
GMDEF int  gm_vae_train_step(gm_vae *m, const float *x, const int *labels, int n, gm_vae_stats *st);
GMDEF int  gm_vae_encode(gm_vae *m, const float *x, const int *labels, int n, float *mu, float *logvar);
GMDEF int  gm_vae_decode(gm_vae *m, const float *z, const int *labels, int n, float *out);  /* means */
GMDEF int  gm_vae_sample(gm_vae *m, const int *labels, int n, float *out);  /* z ~ N(0, I), decoded */
GMDEF int  gm_vae_reconstruct(gm_vae *m, const float *x, const int *labels, int n, float *out); /* decode(mu) */
/* steps images (steps >= 2) decoded along the straight line from mu(xa) to mu(xb); labels: NULL,
   or the label of xa and of xb (the strip uses xa's label up to halfway, then xb's). */
GMDEF int  gm_vae_interpolate(gm_vae *m, const float *xa, const float *xb, const int *labels, int steps,
                              float *out);
/* Test negative ELBO (one z sample per example), split into reconstruction and KL. */
GMDEF int  gm_vae_evaluate(gm_vae *m, const float *x, const int *labels, int n, gm_vae_eval *ev);
/* Importance-weighted estimate of -log p(x) with k samples of q(z|x) (Burda et al.):
   -log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x). Mean nats and bits/dim over the n examples; per
   example into nll (n) unless NULL. */
GMDEF int  gm_vae_iw_nll(gm_vae *m, const float *x, const int *labels, int n, int k, double *nats,
                         double *bpd, float *nll);
/* Anomaly score of each example: GM_VAE_SCORE_NELBO (negative ELBO, one sample) or
   GM_VAE_SCORE_RECON (summed squared error of decode(mu)). */
GMDEF int  gm_vae_score(gm_vae *m, const float *x, const int *labels, int n, int kind, float *scores);
/* Emits the model into g for x (N, in_dim); sample 0 uses z = mu. 0 or -1. */
GMDEF int  gm_vae_forward(gm_graph *g, gm_vae *m, gm_tensor *x, const int *labels, int sample, gm_vae_out *o);
GMDEF gm_tensor *gm_vae_loss(gm_graph *g, const gm_vae_out *o, float beta);  /* mean(recon + beta kl) */
GMDEF int  gm_vae_save(gm_vae *m, const char *path);
GMDEF int  gm_vae_load(gm_vae *m, const char *path);   /* m: initialized with the same config */

#ifdef __cplusplus
}
#endif
#endif /* GENMOD_VAE_H */

/* ======================================================================================= */
/* Implementation                                                                          */
/* ======================================================================================= */
#ifdef GENMOD_VAE_IMPLEMENTATION
#ifndef GENMOD_VAE_IMPLEMENTATION_INCLUDED
#define GENMOD_VAE_IMPLEMENTATION_INCLUDED
#ifndef GENMOD_IMPLEMENTATION_INCLUDED
#error "genmod_vae.h: define GENMOD_IMPLEMENTATION and include genmod.h in this file first (errors go through its gm_last_error)"
#endif
#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>

#define GM__VAE_CHUNK 500       /* examples per graph in the inference calls */
#define GM__VAE_LN2 0.69314718055994531

/* ---------------------------------------------------------------------------------------- */
/* Shared helpers                                                                           */
/* ---------------------------------------------------------------------------------------- */
static gm_tensor *gm__vae_act(gm_graph *g, gm_tensor *x, int act) {
    switch (act) {
    case GM_VAE_RELU:       return gm_relu(g, x);
    case GM_VAE_ELU:        return gm_elu(g, x, 1.0f);
    case GM_VAE_LEAKY_RELU: return gm_leaky_relu(g, x, 0.2f);
    case GM_VAE_TANH:       return gm_tanh(g, x);
    case GM_VAE_SIGMOID:    return gm_sigmoid(g, x);
    default:                return x;
    }
}

static const char *gm__vae_act_name(int act) {
    static const char *names[] = {"relu", "elu", "leaky_relu", "tanh", "sigmoid", "identity"};
    return act >= 0 && act <= GM_VAE_IDENTITY ? names[act] : "?";
}

static int gm__vae_check_arch(const gm_vae_arch *a, const char *who) {
    int i, f = 1 << (a->n_conv > 0 ? a->n_conv : 0);
    if (a->in_c <= 0 || a->in_h <= 0 || a->in_w <= 0)
        return gm_fail("%s: input shape %dx%dx%d is not positive", who, a->in_c, a->in_h, a->in_w);
    if (a->n_conv < 0 || a->n_conv > GM_VAE_MAX_LAYERS || a->n_enc < 0 || a->n_enc > GM_VAE_MAX_LAYERS - 1 ||
        a->n_dec < 0 || a->n_dec > GM_VAE_MAX_LAYERS - 1)
        return gm_fail("%s: layer counts conv %d, enc %d, dec %d: each must be 0..%d", who, a->n_conv, a->n_enc,
                        a->n_dec, GM_VAE_MAX_LAYERS - 1);
    if (a->n_conv > 0 && (a->in_h % f || a->in_w % f))
        return gm_fail("%s: %d stride-2 convs need h and w divisible by %d, got %dx%d", who, a->n_conv, f, a->in_h,
                        a->in_w);
    for (i = 0; i < a->n_conv; i++)
        if (a->conv_ch[i] <= 0) return gm_fail("%s: conv_ch[%d] = %d is not positive", who, i, a->conv_ch[i]);
    for (i = 0; i < a->n_enc; i++)
        if (a->enc[i] <= 0) return gm_fail("%s: enc[%d] = %d is not positive", who, i, a->enc[i]);
    for (i = 0; i < a->n_dec; i++)
        if (a->dec[i] <= 0) return gm_fail("%s: dec[%d] = %d is not positive", who, i, a->dec[i]);
    if (a->act < 0 || a->act > GM_VAE_IDENTITY) return gm_fail("%s: unknown activation %d", who, a->act);
    return 0;
}

static char *gm__vae_ints(char *s, size_t cap, const int *v, int n) {
    size_t k = 0;
    int i;
    s[0] = 0;
    for (i = 0; i < n && k + 12 < cap; i++) k += (size_t)snprintf(s + k, cap - k, i ? ",%d" : "%d", v[i]);
    return s;
}

/* A one-line description of an architecture (stored in checkpoints to catch mismatches). */
static void gm__vae_arch_text(const gm_vae_arch *a, char *s, size_t cap) {
    char c[96], e[96], d[96];
    snprintf(s, cap, "in=%dx%dx%d conv=[%s] enc=[%s] dec=[%s] act=%s", a->in_c, a->in_h, a->in_w,
             gm__vae_ints(c, sizeof c, a->conv_ch, a->n_conv), gm__vae_ints(e, sizeof e, a->enc, a->n_enc),
             gm__vae_ints(d, sizeof d, a->dec, a->n_dec), gm__vae_act_name(a->act));
}

/* Encoder: [convs 4x4 stride 2] -> flatten -> dense widths; input (in_c + classes) channels. */
static int gm__vae_enc_init(gm_vae_net *n, gm_params *P, const gm_vae_arch *a, int classes, int nw, const int *w,
                            int last_act, gm_rng *r) {
    char name[32];
    int i, c = a->in_c + (a->n_conv ? classes : 0), h = a->in_h, wd = a->in_w, in;
    memset(n, 0, sizeof *n);
    n->nconv = a->n_conv; n->nlin = nw; n->act = a->act; n->last_act = last_act;
    n->c = a->in_c; n->h = a->in_h; n->w = a->in_w; n->classes = classes;
    for (i = 0; i < a->n_conv; i++, h /= 2, wd /= 2) {
        snprintf(name, sizeof name, "enc.conv%d", i);
        if (gm_conv_init(&n->conv[i], P, name, c, a->conv_ch[i], 4, 2, 1, GM_INIT_TORCH, r) != 0) return -1;
        c = a->conv_ch[i];
    }
    in = a->n_conv ? c * h * wd : c * h * wd + classes;
    for (i = 0; i < nw; i++) {
        snprintf(name, sizeof name, "enc.fc%d", i);
        if (gm_linear_init(&n->lin[i], P, name, in, w[i], GM_INIT_TORCH, r) != 0) return -1;
        in = w[i];
    }
    return 0;
}

/* Decoder: dense hidden widths -> (output, or the first deconv's input) -> deconvs mirroring the
   encoder's convs. Input: z joined with the label (zin = latent + classes). */
static int gm__vae_dec_init(gm_vae_net *n, gm_params *P, const gm_vae_arch *a, int zin, gm_rng *r) {
    char name[32];
    int i, in = zin, f = 1 << a->n_conv, out;
    memset(n, 0, sizeof *n);
    n->nconv = a->n_conv; n->nlin = a->n_dec + 1; n->act = a->act; n->last_act = GM_VAE_IDENTITY;
    n->c = a->n_conv ? a->conv_ch[a->n_conv - 1] : a->in_c;
    n->h = a->in_h / f; n->w = a->in_w / f;
    for (i = 0; i < n->nlin; i++) {
        out = i < a->n_dec ? a->dec[i] : n->c * n->h * n->w;
        snprintf(name, sizeof name, "dec.fc%d", i);
        if (gm_linear_init(&n->lin[i], P, name, in, out, GM_INIT_TORCH, r) != 0) return -1;
        in = out;
    }
    for (i = 0; i < a->n_conv; i++) {
        int cin = a->conv_ch[a->n_conv - 1 - i], cout = i + 1 < a->n_conv ? a->conv_ch[a->n_conv - 2 - i] : a->in_c;
        snprintf(name, sizeof name, "dec.deconv%d", i);
        if (gm_conv_transpose_init(&n->conv[i], P, name, cin, cout, 4, 2, 1, 0, GM_INIT_TORCH, r) != 0) return -1;
    }
    return 0;
}

/* Label planes for a conv encoder: y (N,K) -> (N,K,h,w), constant over each plane. */
static gm_tensor *gm__vae_label_planes(gm_graph *g, gm_tensor *y, int h, int w) {
    int n = y->shape[0], k = y->shape[1];
    return gm_expand(g, gm_reshape(g, y, n, k, 1, 1), n, k, h, w);
}

/* x (N, c*h*w), y (N, classes) one-hot or NULL -> (N, last width); activation after every layer. */
static gm_tensor *gm__vae_enc_forward(gm_graph *g, const gm_vae_net *n, gm_tensor *x, gm_tensor *y) {
    gm_tensor *h = x;
    int i, N;
    if (!x) return NULL;
    N = x->shape[0];
    if (n->nconv) {
        h = gm_reshape(g, x, N, n->c, n->h, n->w);
        if (y) h = gm_concat(g, h, gm__vae_label_planes(g, y, n->h, n->w), 1);
        for (i = 0; i < n->nconv; i++) h = gm__vae_act(g, gm_conv_forward(g, &n->conv[i], h), n->act);
        h = gm_flatten(g, h);
    } else if (y) {
        h = gm_concat(g, x, y, 1);
    }
    for (i = 0; i < n->nlin; i++)
        h = gm__vae_act(g, gm_linear_forward(g, &n->lin[i], h), i + 1 < n->nlin ? n->act : n->last_act);
    return h;
}

/* z (N, Z), y (N, classes) or NULL -> logits (N, in_dim): no activation after the last layer. */
static gm_tensor *gm__vae_dec_forward(gm_graph *g, const gm_vae_net *n, gm_tensor *z, gm_tensor *y) {
    gm_tensor *h = y ? gm_concat(g, z, y, 1) : z;
    int i, N;
    if (!h) return NULL;
    N = h->shape[0];
    for (i = 0; i < n->nlin; i++) {
        h = gm_linear_forward(g, &n->lin[i], h);
        if (i + 1 < n->nlin || n->nconv) h = gm__vae_act(g, h, n->act);
    }
    if (!n->nconv) return h;
    h = gm_reshape(g, h, N, n->c, n->h, n->w);
    for (i = 0; i < n->nconv; i++) {
        h = gm_conv_forward(g, &n->conv[i], h);
        if (i + 1 < n->nconv) h = gm__vae_act(g, h, n->act);
    }
    return gm_flatten(g, h);
}

static gm_optim gm__vae_optim(int kind, float lr) {
    switch (kind) {
    case GM_SGD:     return gm_sgd(lr, 0.9f);
    case GM_RMSPROP: return gm_rmsprop(lr, 0.99f);
    case GM_ADAMW:   return gm_adamw(lr, 0.9f, 0.999f, 0.01f);
    default:         return gm_adam(lr, 0.9f, 0.999f);
    }
}

static int gm__vae_reserve(float **buf, size_t *cap, size_t n) {
    float *p;
    if (n <= *cap) return 0;
    p = GM__CAST(float *, GENMOD_REALLOC(*buf, n * sizeof(float)));
    if (!p) return gm_fail("genmod_vae: out of memory (%lu floats)", (unsigned long)n);
    *buf = p;
    *cap = n;
    return 0;
}

/* The graph failed: its first error, or gm_last_error's. */
static int gm__vae_graph_fail(gm_graph *g, const char *who) {
    const char *e = gm_graph_error(g);
    return gm_fail("%s: %s", who, e ? e : gm_last_error());
}

static int gm__vae_args(const void *m, const void *x, int n, const char *who) {
    if (!m) return gm_fail("%s: model is NULL", who);
    if (!x) return gm_fail("%s: input is NULL", who);
    if (n <= 0) return gm_fail("%s: n = %d, needs at least one example", who, n);
    return 0;
}

/* Start an inference pass: fresh graph, no tape, eval mode. */
static void gm__vae_infer_begin(gm_graph *g) {
    gm_graph_reset(g);
    gm_graph_set_grad(g, 0);
    gm_graph_set_training(g, 0);
}

static void gm__vae_copy_out(float *dst, const gm_tensor *t) {
    if (dst && t) memcpy(dst, t->data, (size_t)t->size * sizeof(float));
}

/* ---------------------------------------------------------------------------------------- */
/* Autoencoder                                                                              */
/* ---------------------------------------------------------------------------------------- */
GMDEF gm_ae_config gm_ae_default_config(void) {
    gm_ae_config c;
    memset(&c, 0, sizeof c);
    c.arch.in_c = 1; c.arch.in_h = 28; c.arch.in_w = 28;
    c.arch.n_enc = 3; c.arch.enc[0] = 784; c.arch.enc[1] = 256; c.arch.enc[2] = 128;
    c.arch.n_dec = 2; c.arch.dec[0] = 128; c.arch.dec[1] = 256;
    c.arch.act = GM_VAE_RELU;
    c.code_act = GM_VAE_RELU;
    c.sparsity_weight = 1e-4f;      /* L1; a KL penalty wants ~3e-3 */
    c.sparsity_target = 0.05f;
    c.zero_thresh = 0.01f;
    c.optim = GM_RMSPROP;
    c.lr = 1e-3f;
    c.batch = 256;
    c.seed = 1;
    return c;
}

GMDEF gm_ae_config gm_ae_conv_config(void) {
    gm_ae_config c = gm_ae_default_config();
    c.arch.n_conv = 2; c.arch.conv_ch[0] = 32; c.arch.conv_ch[1] = 64;
    c.arch.n_enc = 1; c.arch.enc[0] = 128;
    c.arch.n_dec = 0;
    c.optim = GM_ADAM;
    c.batch = 128;
    return c;
}

static int gm__ae_check(const gm_ae_config *c) {
    if (gm__vae_check_arch(&c->arch, "gm_ae_init") != 0) return -1;
    if (c->arch.n_enc < 1) return gm_fail("gm_ae_init: needs at least one dense encoder layer (the code)");
    if (c->code_act < 0 || c->code_act > GM_VAE_IDENTITY) return gm_fail("gm_ae_init: unknown code activation %d", c->code_act);
    if (!(c->noise_sigma >= 0) || !(c->mask_prob >= 0 && c->mask_prob < 1))
        return gm_fail("gm_ae_init: noise_sigma %g must be >= 0 and mask_prob %g in [0,1)", c->noise_sigma, c->mask_prob);
    if (c->sparsity < GM_AE_SPARSE_NONE || c->sparsity > GM_AE_SPARSE_KL)
        return gm_fail("gm_ae_init: unknown sparsity kind %d", c->sparsity);
    if (c->sparsity == GM_AE_SPARSE_KL && c->code_act != GM_VAE_SIGMOID)
        return gm_fail("gm_ae_init: the KL sparsity penalty needs code activations in (0,1): set code_act = GM_VAE_SIGMOID");
    if (c->sparsity == GM_AE_SPARSE_KL && !(c->sparsity_target > 0 && c->sparsity_target < 1))
        return gm_fail("gm_ae_init: sparsity_target %g must be in (0,1)", c->sparsity_target);
    if (!(c->lr > 0)) return gm_fail("gm_ae_init: learning rate %g must be positive", c->lr);
    return 0;
}

GMDEF int gm_ae_init(gm_ae *m, const gm_ae_config *cfg) {
    gm_rng r;
    const gm_vae_arch *a;
    if (!m || !cfg) return gm_fail("gm_ae_init: NULL argument");
    memset(m, 0, sizeof *m);
    if (gm__ae_check(cfg) != 0) return -1;
    m->cfg = *cfg;
    a = &m->cfg.arch;
    gm_rng_seed(&r, cfg->seed);
    m->in_dim = a->in_c * a->in_h * a->in_w;
    m->code_dim = a->enc[a->n_enc - 1];
    if (gm__vae_enc_init(&m->enc, &m->params, a, 0, a->n_enc, a->enc, cfg->code_act, &r) != 0 ||
        gm__vae_dec_init(&m->dec, &m->params, a, m->code_dim, &r) != 0) {
        gm_ae_free(m);
        return -1;
    }
    m->opt = gm__vae_optim(cfg->optim, cfg->lr);
    m->rng = gm_rng_split(&r);
    m->g = gm_graph_new(cfg->seed + 1);
    if (!m->g) { gm_ae_free(m); return gm_fail("gm_ae_init: out of memory"); }
    return 0;
}

GMDEF void gm_ae_free(gm_ae *m) {
    if (!m) return;
    gm_params_free(&m->params);
    gm_optim_free(&m->opt);
    gm_graph_free(m->g);
    GENMOD_FREE(m->scratch);
    memset(m, 0, sizeof *m);
}

/* x (N, in_dim) -> code (N, code_dim), reconstruction sigmoid(logits) (N, in_dim) */
GMDEF int gm_ae_forward(gm_graph *g, gm_ae *m, gm_tensor *x, gm_tensor **code, gm_tensor **recon) {
    gm_tensor *c;
    if (!g || !m || !x) return gm_fail("gm_ae_forward: NULL argument");
    if (x->ndim != 2 || x->shape[1] != m->in_dim)
        return gm_fail("gm_ae_forward: x must be (N,%d), got %d dims with %d columns", m->in_dim, x->ndim,
                        x->ndim > 1 ? x->shape[1] : x->shape[0]);
    c = gm__vae_enc_forward(g, &m->enc, x, NULL);
    if (code) *code = c;
    if (recon) *recon = gm_sigmoid(g, gm__vae_dec_forward(g, &m->dec, c, NULL));
    if (!c || (recon && !*recon)) return gm__vae_graph_fail(g, "gm_ae_forward");
    return 0;
}

GMDEF int gm_ae_corrupt(gm_ae *m, const float *x, int n, float *out) {
    size_t i, count;
    float s, p;
    if (gm__vae_args(m, x, n, "gm_ae_corrupt") != 0 || !out) return out ? -1 : gm_fail("gm_ae_corrupt: out is NULL");
    count = (size_t)n * (size_t)m->in_dim;
    s = m->cfg.noise_sigma; p = m->cfg.mask_prob;
    for (i = 0; i < count; i++) {
        float v = x[i];
        if (p > 0 && gm_rng_uniform(&m->rng) < p) v = 0.0f;   /* masking noise: the value is lost */
        if (s > 0) v += s * gm_rng_normal(&m->rng);
        out[i] = v;
    }
    return 0;
}

/* The sparsity penalty on a code (N, H), already weighted; NULL without one. */
static gm_tensor *gm__ae_penalty(gm_graph *g, const gm_ae_config *c, gm_tensor *code) {
    float rho = c->sparsity_target;
    gm_tensor *rh, *kl;
    if (c->sparsity == GM_AE_SPARSE_L1)   /* weight * mean over examples of sum |code| */
        return gm_scale(g, gm_sum(g, gm_abs(g, code)), c->sparsity_weight / (float)code->shape[0]);
    if (c->sparsity != GM_AE_SPARSE_KL) return NULL;
    /* KL(rho || rho_hat_j) summed over units, rho_hat the unit's mean activation over the batch:
       rho log(rho/rh) + (1-rho) log((1-rho)/(1-rh)) = const - rho log rh - (1-rho) log(1-rh) */
    rh = gm_clamp(g, gm_mean_axes(g, code, GM_AXIS(0)), 1e-6f, 1.0f - 1e-6f);
    kl = gm_add(g, gm_scale(g, gm_log(g, rh), -rho), gm_scale(g, gm_log(g, gm_affine(g, rh, -1.0f, 1.0f)), rho - 1.0f));
    kl = gm_affine(g, gm_sum(g, kl), 1.0f,
                   (float)code->shape[1] * (rho * logf(rho) + (1.0f - rho) * logf(1.0f - rho)));
    return gm_scale(g, kl, c->sparsity_weight);
}

static void gm__ae_code_stats(const gm_ae *m, const gm_tensor *code, double *sum, long *zeros) {
    int i;
    for (i = 0; i < code->size; i++) {
        *sum += code->data[i];
        *zeros += fabsf(code->data[i]) < m->cfg.zero_thresh;
    }
}

GMDEF int gm_ae_train_step(gm_ae *m, const float *x, int n, gm_ae_stats *st) {
    gm_graph *g;
    gm_tensor *xin, *clean, *code, *recon, *mse, *pen, *loss;
    const float *feed = x;
    double csum = 0;
    long zeros = 0;
    if (gm__vae_args(m, x, n, "gm_ae_train_step") != 0) return -1;
    g = m->g;
    if (m->cfg.noise_sigma > 0 || m->cfg.mask_prob > 0) {
        if (gm__vae_reserve(&m->scratch, &m->scratch_cap, (size_t)n * m->in_dim) != 0) return -1;
        gm_ae_corrupt(m, x, n, m->scratch);
        feed = m->scratch;
    }
    gm_graph_reset(g);
    gm_graph_set_grad(g, 1);
    gm_graph_set_training(g, 1);
    xin = gm_input(g, feed, n, m->in_dim, 0, 0);
    clean = feed == x ? xin : gm_input(g, x, n, m->in_dim, 0, 0);
    if (!xin || !clean || gm_ae_forward(g, m, xin, &code, &recon) != 0) return -1;
    mse = gm_mse(g, recon, clean);
    pen = gm__ae_penalty(g, &m->cfg, code);
    loss = pen ? gm_add(g, mse, pen) : mse;
    if (gm_backward(g, loss) != 0) return gm__vae_graph_fail(g, "gm_ae_train_step");
    if (gm_optim_step(&m->opt, &m->params) != 0) return -1;
    m->step++;
    if (st) {
        gm__ae_code_stats(m, code, &csum, &zeros);
        st->loss = loss->data[0];
        st->mse = mse->data[0];
        st->penalty = pen ? pen->data[0] : 0.0f;
        st->code_mean = (float)(csum / code->size);
        st->code_zero_frac = (float)zeros / (float)code->size;
    }
    return 0;
}

/* Runs the model on x in chunks; code/out/scores (any may be NULL) get the chunk's results. */
static int gm__ae_run(gm_ae *m, const float *x, int n, float *code, float *out, float *scores, double *sq,
                      double *csum, long *zeros, const char *who) {
    int i0, b, i, j;
    if (gm__vae_args(m, x, n, who) != 0) return -1;
    for (i0 = 0; i0 < n; i0 += b) {
        gm_tensor *xt, *c, *r;
        b = n - i0 < GM__VAE_CHUNK ? n - i0 : GM__VAE_CHUNK;
        gm__vae_infer_begin(m->g);
        xt = gm_input(m->g, x + (size_t)i0 * m->in_dim, b, m->in_dim, 0, 0);
        if (!xt || gm_ae_forward(m->g, m, xt, &c, (out || scores || sq) ? &r : NULL) != 0) return -1;
        if (code) gm__vae_copy_out(code + (size_t)i0 * m->code_dim, c);
        if (out) gm__vae_copy_out(out + (size_t)i0 * m->in_dim, r);
        if (csum) gm__ae_code_stats(m, c, csum, zeros);
        for (i = 0; (scores || sq) && i < b; i++) {
            double s = 0;
            for (j = 0; j < m->in_dim; j++) {
                double d = (double)r->data[(size_t)i * m->in_dim + j] - xt->data[(size_t)i * m->in_dim + j];
                s += d * d;
            }
            if (scores) scores[i0 + i] = (float)s;
            if (sq) *sq += s;
        }
    }
    return 0;
}

GMDEF int gm_ae_encode(gm_ae *m, const float *x, int n, float *code) {
    return gm__ae_run(m, x, n, code, NULL, NULL, NULL, NULL, NULL, "gm_ae_encode");
}

GMDEF int gm_ae_reconstruct(gm_ae *m, const float *x, int n, float *out) {
    return gm__ae_run(m, x, n, NULL, out, NULL, NULL, NULL, NULL, "gm_ae_reconstruct");
}

GMDEF int gm_ae_score(gm_ae *m, const float *x, int n, float *scores) {
    return gm__ae_run(m, x, n, NULL, NULL, scores, NULL, NULL, NULL, "gm_ae_score");
}

GMDEF int gm_ae_evaluate(gm_ae *m, const float *x, int n, gm_ae_stats *st) {
    double sq = 0, csum = 0;
    long zeros = 0;
    if (!st) return gm_fail("gm_ae_evaluate: st is NULL");
    if (gm__ae_run(m, x, n, NULL, NULL, NULL, &sq, &csum, &zeros, "gm_ae_evaluate") != 0) return -1;
    memset(st, 0, sizeof *st);
    st->mse = (float)(sq / ((double)n * m->in_dim));
    st->loss = st->mse;
    st->code_mean = (float)(csum / ((double)n * m->code_dim));
    st->code_zero_frac = (float)((double)zeros / ((double)n * m->code_dim));
    return 0;
}

GMDEF int gm_ae_decode(gm_ae *m, const float *code, int n, float *out) {
    int i0, b;
    if (gm__vae_args(m, code, n, "gm_ae_decode") != 0) return -1;
    for (i0 = 0; i0 < n; i0 += b) {
        gm_tensor *r;
        b = n - i0 < GM__VAE_CHUNK ? n - i0 : GM__VAE_CHUNK;
        gm__vae_infer_begin(m->g);
        r = gm_sigmoid(m->g, gm__vae_dec_forward(m->g, &m->dec, gm_input(m->g, code + (size_t)i0 * m->code_dim, b,
                                                                      m->code_dim, 0, 0), NULL));
        if (!r) return gm__vae_graph_fail(m->g, "gm_ae_decode");
        gm__vae_copy_out(out + (size_t)i0 * m->in_dim, r);
    }
    return 0;
}

static void gm__ae_config_text(const gm_ae_config *c, char *s, size_t cap) {
    char a[400];
    gm__vae_arch_text(&c->arch, a, sizeof a);
    snprintf(s, cap, "%s code_act=%s", a, gm__vae_act_name(c->code_act));
}

/* Checkpoint metadata: model kind, the architecture (checked on load), train step, and the
   training switches for the record. */
static int gm__vae_save_common(const char *path, const gm_params *P, const gm_optim *o, const char *kind,
                               const char *arch, long step, const char *extra) {
    gm_meta meta;
    memset(&meta, 0, sizeof meta);
    if (gm_meta_set(&meta, "genmod.model", kind) != 0 || gm_meta_set(&meta, "genmod.arch", arch) != 0 ||
        gm_meta_setf(&meta, "genmod.step", "%ld", step) != 0 || gm_meta_set(&meta, "genmod.train", extra) != 0)
        return gm_fail("%s checkpoint: metadata too long", kind);
    return gm_checkpoint_save(path, P, o, &meta);
}

static int gm__vae_load_common(const char *path, gm_params *P, gm_optim *o, const char *kind, const char *arch,
                               long *step) {
    gm_meta meta;
    const char *k, *a, *s;
    memset(&meta, 0, sizeof meta);
    if (gm_checkpoint_load(path, P, o, &meta) != 0) return -1;
    k = gm_meta_get(&meta, "genmod.model");
    a = gm_meta_get(&meta, "genmod.arch");
    if (!k || strcmp(k, kind) != 0)
        return gm_fail("%s: holds a '%s' model, not a '%s'", path, k ? k : "(unknown)", kind);
    if (!a || strcmp(a, arch) != 0)
        return gm_fail("%s: saved with architecture '%s', this model is '%s'", path, a ? a : "?", arch);
    s = gm_meta_get(&meta, "genmod.step");
    *step = s ? atol(s) : 0;
    return 0;
}

GMDEF int gm_ae_save(gm_ae *m, const char *path) {
    char arch[512], extra[160];
    if (!m || !path) return gm_fail("gm_ae_save: NULL argument");
    gm__ae_config_text(&m->cfg, arch, sizeof arch);
    snprintf(extra, sizeof extra, "noise_sigma=%g mask_prob=%g sparsity=%d weight=%g target=%g", m->cfg.noise_sigma,
             m->cfg.mask_prob, m->cfg.sparsity, m->cfg.sparsity_weight, m->cfg.sparsity_target);
    return gm__vae_save_common(path, &m->params, &m->opt, "ae", arch, m->step, extra);
}

GMDEF int gm_ae_load(gm_ae *m, const char *path) {
    char arch[512];
    if (!m || !path) return gm_fail("gm_ae_load: NULL argument");
    gm__ae_config_text(&m->cfg, arch, sizeof arch);
    return gm__vae_load_common(path, &m->params, &m->opt, "ae", arch, &m->step);
}

/* ---------------------------------------------------------------------------------------- */
/* VAE: configuration and schedule                                                          */
/* ---------------------------------------------------------------------------------------- */
GMDEF gm_vae_config gm_vae_default_config(void) {
    gm_vae_config c;
    memset(&c, 0, sizeof c);
    c.arch.in_c = 1; c.arch.in_h = 28; c.arch.in_w = 28;
    c.arch.n_enc = 3; c.arch.enc[0] = 784; c.arch.enc[1] = 256; c.arch.enc[2] = 128;
    c.arch.n_dec = 3; c.arch.dec[0] = 256; c.arch.dec[1] = 384; c.arch.dec[2] = 512;
    c.arch.act = GM_VAE_ELU;
    c.latent = 10;
    c.likelihood = GM_VAE_BERNOULLI;
    c.gauss_sigma = 0.1f;
    c.beta.kind = GM_BETA_CONSTANT;
    c.beta.beta = 1.0f;
    c.beta.ramp = 0.5f;
    c.optim = GM_ADAM;
    c.lr = 1e-3f;   /* vae_mnist.py's default (its source used 1e-4) */
    c.batch = 100;
    c.seed = 1;
    return c;
}

GMDEF gm_vae_config gm_vae_conv_config(void) {
    gm_vae_config c = gm_vae_default_config();
    c.arch.n_conv = 2; c.arch.conv_ch[0] = 32; c.arch.conv_ch[1] = 64;
    c.arch.n_enc = 1; c.arch.enc[0] = 256;
    c.arch.n_dec = 1; c.arch.dec[0] = 256;
    return c;
}

GMDEF float gm_vae_beta_at(const gm_beta_schedule *s, long step) {
    double t;
    if (!s) return 1.0f;
    switch (s->kind) {
    case GM_BETA_LINEAR:
        if (s->steps <= 0 || step >= s->steps) return s->beta;
        t = (double)step / (double)s->steps;
        return (float)(s->start + (s->beta - s->start) * t);
    case GM_BETA_CYCLICAL:
        if (s->steps <= 0 || s->ramp <= 0) return s->beta;
        t = (double)(step % s->steps) / (double)s->steps / s->ramp;
        return t >= 1 ? s->beta : (float)(s->start + (s->beta - s->start) * t);
    default:
        return s->beta;
    }
}

static int gm__vae_check(const gm_vae_config *c) {
    if (gm__vae_check_arch(&c->arch, "gm_vae_init") != 0) return -1;
    if (c->arch.n_enc < 1) return gm_fail("gm_vae_init: needs at least one dense encoder layer before the heads");
    if (c->latent <= 0) return gm_fail("gm_vae_init: latent = %d must be positive", c->latent);
    if (c->nclasses < 0) return gm_fail("gm_vae_init: nclasses = %d must be >= 0", c->nclasses);
    if (c->likelihood < GM_VAE_BERNOULLI || c->likelihood > GM_VAE_GAUSSIAN_LEARNED)
        return gm_fail("gm_vae_init: unknown likelihood %d", c->likelihood);
    if (c->likelihood != GM_VAE_BERNOULLI && !(c->gauss_sigma > 0))
        return gm_fail("gm_vae_init: gauss_sigma %g must be positive", c->gauss_sigma);
    if (c->beta.kind < GM_BETA_CONSTANT || c->beta.kind > GM_BETA_CYCLICAL)
        return gm_fail("gm_vae_init: unknown beta schedule %d", c->beta.kind);
    if (!(c->beta.beta >= 0) || !(c->beta.start >= 0))
        return gm_fail("gm_vae_init: beta %g and its start %g must be >= 0", c->beta.beta, c->beta.start);
    if (c->beta.kind != GM_BETA_CONSTANT && c->beta.steps <= 0)
        return gm_fail("gm_vae_init: a linear or cyclical beta schedule needs steps > 0");
    if (c->beta.kind == GM_BETA_CYCLICAL && !(c->beta.ramp > 0 && c->beta.ramp <= 1))
        return gm_fail("gm_vae_init: cyclical ramp %g must be in (0,1]", c->beta.ramp);
    if (!(c->lr > 0)) return gm_fail("gm_vae_init: learning rate %g must be positive", c->lr);
    return 0;
}

GMDEF int gm_vae_init(gm_vae *m, const gm_vae_config *cfg) {
    gm_rng r;
    const gm_vae_arch *a;
    int h, one = 1;
    if (!m || !cfg) return gm_fail("gm_vae_init: NULL argument");
    memset(m, 0, sizeof *m);
    m->out_logvar = -1;
    if (gm__vae_check(cfg) != 0) return -1;
    m->cfg = *cfg;
    a = &m->cfg.arch;
    gm_rng_seed(&r, cfg->seed);
    m->in_dim = a->in_c * a->in_h * a->in_w;
    h = a->enc[a->n_enc - 1];
    if (gm__vae_enc_init(&m->enc, &m->params, a, cfg->nclasses, a->n_enc, a->enc, a->act, &r) != 0 ||
        gm_linear_init(&m->mu, &m->params, "mu", h, cfg->latent, GM_INIT_TORCH, &r) != 0 ||
        gm_linear_init(&m->logvar, &m->params, "logvar", h, cfg->latent, GM_INIT_TORCH, &r) != 0 ||
        gm__vae_dec_init(&m->dec, &m->params, a, cfg->latent + cfg->nclasses, &r) != 0)
        goto fail;
    if (cfg->likelihood == GM_VAE_GAUSSIAN_LEARNED) {   /* one learned log-variance for every pixel */
        if ((m->out_logvar = gm_params_add(&m->params, "dec.logvar", 1, &one)) < 0) goto fail;
        gm_params_data(&m->params, m->out_logvar)[0] = 2.0f * logf(cfg->gauss_sigma);
    }
    m->kl_dim = GM__CAST(float *, GENMOD_MALLOC((size_t)cfg->latent * sizeof(float)));
    m->g = gm_graph_new(cfg->seed + 1);
    if (!m->kl_dim || !m->g) { gm_fail("gm_vae_init: out of memory"); goto fail; }
    memset(m->kl_dim, 0, (size_t)cfg->latent * sizeof(float));
    m->opt = gm__vae_optim(cfg->optim, cfg->lr);
    m->rng = gm_rng_split(&r);
    return 0;
fail:
    gm_vae_free(m);
    return -1;
}

GMDEF void gm_vae_free(gm_vae *m) {
    if (!m) return;
    gm_params_free(&m->params);
    gm_optim_free(&m->opt);
    gm_graph_free(m->g);
    GENMOD_FREE(m->kl_dim);
    GENMOD_FREE(m->scratch);
    memset(m, 0, sizeof *m);
    m->out_logvar = -1;
}

/* ---------------------------------------------------------------------------------------- */
/* VAE: the model in a graph                                                                */
/* ---------------------------------------------------------------------------------------- */
static gm_tensor *gm__vae_onehot(gm_graph *g, const gm_vae *m, const int *labels, int n, const char *who) {
    if (m->cfg.nclasses <= 0) return NULL;
    if (!labels) { gm_fail("%s: this conditional VAE needs labels (0..%d)", who, m->cfg.nclasses - 1); return NULL; }
    return gm_one_hot(g, labels, n, m->cfg.nclasses);
}

/* -log p(x | decoder output) per example (N). */
static gm_tensor *gm__vae_nll(gm_graph *g, gm_vae *m, gm_tensor *x, gm_tensor *logits, gm_tensor *mean) {
    gm_tensor *lv;
    if (m->cfg.likelihood == GM_VAE_BERNOULLI) return gm_neg(g, gm_bernoulli_loglik(g, logits, x));
    lv = m->out_logvar >= 0 ? gm_param(g, &m->params, m->out_logvar)
                            : gm_full(g, 2.0f * logf(m->cfg.gauss_sigma), 1, 0, 0, 0);
    return gm_neg(g, gm_gaussian_loglik(g, x, mean, lv));
}

/* z (N, latent) -> logits (N, in_dim) */
static gm_tensor *gm__vae_decode_t(gm_graph *g, gm_vae *m, gm_tensor *z, gm_tensor *y) {
    return gm__vae_dec_forward(g, &m->dec, z, y);
}

/* x (N, in_dim), labels (N) -> mu, logvar, z (N, latent); logits, mean (N, in_dim); recon, kl (N) */
GMDEF int gm_vae_forward(gm_graph *g, gm_vae *m, gm_tensor *x, const int *labels, int sample, gm_vae_out *o) {
    gm_tensor *y = NULL, *h;
    int n;
    if (!g || !m || !x || !o) return gm_fail("gm_vae_forward: NULL argument");
    memset(o, 0, sizeof *o);
    if (x->ndim != 2 || x->shape[1] != m->in_dim)
        return gm_fail("gm_vae_forward: x must be (N,%d), got %d dims with %d columns", m->in_dim, x->ndim,
                        x->ndim > 1 ? x->shape[1] : x->shape[0]);
    n = x->shape[0];
    if (m->cfg.nclasses > 0 && !(y = gm__vae_onehot(g, m, labels, n, "gm_vae_forward")))
        return gm_graph_error(g) ? gm__vae_graph_fail(g, "gm_vae_forward") : -1;
    h = gm__vae_enc_forward(g, &m->enc, x, y);
    o->mu = gm_linear_forward(g, &m->mu, h);
    o->logvar = gm_linear_forward(g, &m->logvar, h);
    o->z = !sample ? o->mu : gm_add(g, o->mu, gm_mul(g, gm_exp(g, gm_scale(g, o->logvar, 0.5f)), gm_randn_like(g, o->mu)));
    o->logits = gm__vae_decode_t(g, m, o->z, y);
    o->mean = gm_sigmoid(g, o->logits);
    o->recon = gm__vae_nll(g, m, x, o->logits, o->mean);
    o->kl = gm_kl_std_normal(g, o->mu, o->logvar);
    if (!o->recon || !o->kl) return gm__vae_graph_fail(g, "gm_vae_forward");
    return 0;
}

GMDEF gm_tensor *gm_vae_loss(gm_graph *g, const gm_vae_out *o, float beta) {
    if (!g || !o || !o->recon || !o->kl) return NULL;
    return gm_mean(g, gm_add(g, o->recon, gm_scale(g, o->kl, beta)));
}

/* Adds each dimension's KL, -0.5 (1 + lv - mu^2 - e^lv), summed over the examples, into acc (latent). */
static void gm__vae_kl_dims(const gm_tensor *mu, const gm_tensor *lv, double *acc) {
    int i, j, n = mu->shape[0], d = mu->shape[1];
    for (i = 0; i < n; i++)
        for (j = 0; j < d; j++) {
            double a = mu->data[(size_t)i * d + j], l = lv->data[(size_t)i * d + j];
            acc[j] += -0.5 * (1.0 + l - a * a - exp(l));
        }
}

static double gm__vae_sum(const gm_tensor *t) {
    double s = 0;
    int i;
    for (i = 0; i < t->size; i++) s += t->data[i];
    return s;
}

GMDEF int gm_vae_train_step(gm_vae *m, const float *x, const int *labels, int n, gm_vae_stats *st) {
    gm_graph *g;
    gm_vae_out o;
    gm_tensor *xt, *loss;
    float beta;
    double acc[256], *kd = acc;
    int j;
    if (gm__vae_args(m, x, n, "gm_vae_train_step") != 0) return -1;
    g = m->g;
    beta = gm_vae_beta_at(&m->cfg.beta, m->step);
    gm_graph_reset(g);
    gm_graph_set_grad(g, 1);
    gm_graph_set_training(g, 1);
    xt = gm_input(g, x, n, m->in_dim, 0, 0);
    if (!xt || gm_vae_forward(g, m, xt, labels, 1, &o) != 0) return -1;
    loss = gm_vae_loss(g, &o, beta);
    if (gm_backward(g, loss) != 0) return gm__vae_graph_fail(g, "gm_vae_train_step");
    if (gm_optim_step(&m->opt, &m->params) != 0) return -1;
    m->step++;
    if (m->cfg.latent > 256 && !(kd = GM__CAST(double *, GENMOD_MALLOC((size_t)m->cfg.latent * sizeof(double)))))
        return gm_fail("gm_vae_train_step: out of memory");
    memset(kd, 0, (size_t)m->cfg.latent * sizeof(double));
    gm__vae_kl_dims(o.mu, o.logvar, kd);
    for (j = 0; j < m->cfg.latent; j++) m->kl_dim[j] = (float)(kd[j] / n);
    if (kd != acc) GENMOD_FREE(kd);
    if (st) {
        st->loss = loss->data[0];
        st->recon = (float)(gm__vae_sum(o.recon) / n);
        st->kl = (float)(gm__vae_sum(o.kl) / n);
        st->neg_elbo = st->recon + st->kl;
        st->beta = beta;
        st->kl_dim = m->kl_dim;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* VAE: inference                                                                           */
/* ---------------------------------------------------------------------------------------- */
/* One chunk's forward pass without a tape. */
static int gm__vae_chunk(gm_vae *m, const float *x, const int *labels, int b, int sample, gm_vae_out *o) {
    gm_tensor *xt;
    gm__vae_infer_begin(m->g);
    xt = gm_input(m->g, x, b, m->in_dim, 0, 0);
    if (!xt) return gm__vae_graph_fail(m->g, "genmod_vae");
    return gm_vae_forward(m->g, m, xt, labels, sample, o);
}

#define GM__VAE_CHUNKS(n, i0, b) for (i0 = 0; i0 < (n); i0 += b) if ((b = (n) - i0 < GM__VAE_CHUNK ? (n) - i0 : GM__VAE_CHUNK) > 0)

GMDEF int gm_vae_encode(gm_vae *m, const float *x, const int *labels, int n, float *mu, float *logvar) {
    int i0, b = 0, L;
    gm_vae_out o;
    if (gm__vae_args(m, x, n, "gm_vae_encode") != 0) return -1;
    L = m->cfg.latent;
    GM__VAE_CHUNKS(n, i0, b) {
        if (gm__vae_chunk(m, x + (size_t)i0 * m->in_dim, labels ? labels + i0 : NULL, b, 0, &o) != 0) return -1;
        if (mu) gm__vae_copy_out(mu + (size_t)i0 * L, o.mu);
        if (logvar) gm__vae_copy_out(logvar + (size_t)i0 * L, o.logvar);
    }
    return 0;
}

GMDEF int gm_vae_reconstruct(gm_vae *m, const float *x, const int *labels, int n, float *out) {
    int i0, b = 0;
    gm_vae_out o;
    if (gm__vae_args(m, x, n, "gm_vae_reconstruct") != 0) return -1;
    GM__VAE_CHUNKS(n, i0, b) {
        if (gm__vae_chunk(m, x + (size_t)i0 * m->in_dim, labels ? labels + i0 : NULL, b, 0, &o) != 0) return -1;
        gm__vae_copy_out(out + (size_t)i0 * m->in_dim, o.mean);
    }
    return 0;
}

GMDEF int gm_vae_decode(gm_vae *m, const float *z, const int *labels, int n, float *out) {
    int i0, b = 0;
    if (gm__vae_args(m, z, n, "gm_vae_decode") != 0) return -1;
    if (!out) return gm_fail("gm_vae_decode: out is NULL");
    GM__VAE_CHUNKS(n, i0, b) {
        gm_tensor *y = NULL, *r;
        gm__vae_infer_begin(m->g);
        if (m->cfg.nclasses > 0 && !(y = gm__vae_onehot(m->g, m, labels ? labels + i0 : NULL, b, "gm_vae_decode")))
            return gm_graph_error(m->g) ? gm__vae_graph_fail(m->g, "gm_vae_decode") : -1;
        r = gm_sigmoid(m->g, gm__vae_decode_t(m->g, m, gm_input(m->g, z + (size_t)i0 * m->cfg.latent, b,
                                                                 m->cfg.latent, 0, 0), y));
        if (!r) return gm__vae_graph_fail(m->g, "gm_vae_decode");
        gm__vae_copy_out(out + (size_t)i0 * m->in_dim, r);
    }
    return 0;
}

GMDEF int gm_vae_sample(gm_vae *m, const int *labels, int n, float *out) {
    size_t i, count;
    if (!m || n <= 0 || !out) return gm_fail("gm_vae_sample: needs a model, n > 0 and out");
    count = (size_t)n * m->cfg.latent;
    if (gm__vae_reserve(&m->scratch, &m->scratch_cap, count) != 0) return -1;
    for (i = 0; i < count; i++) m->scratch[i] = gm_rng_normal(&m->rng);
    return gm_vae_decode(m, m->scratch, labels, n, out);
}

GMDEF int gm_vae_interpolate(gm_vae *m, const float *xa, const float *xb, const int *labels, int steps, float *out) {
    float mu[2 * 1024];
    int *lab = NULL, s, j, L, rc;
    float *z;
    if (!m || !xa || !xb || !out || steps < 2) return gm_fail("gm_vae_interpolate: needs two inputs, out, steps >= 2");
    L = m->cfg.latent;
    if (L > 1024) return gm_fail("gm_vae_interpolate: latent %d is above 1024", L);
    if (gm_vae_encode(m, xa, labels, 1, mu, NULL) != 0 || gm_vae_encode(m, xb, labels ? labels + 1 : NULL, 1, mu + L, NULL) != 0)
        return -1;
    if (gm__vae_reserve(&m->scratch, &m->scratch_cap, (size_t)steps * L + steps) != 0) return -1;
    z = m->scratch;
    if (labels) lab = GM__CAST(int *, GENMOD_MALLOC((size_t)steps * sizeof(int)));
    if (labels && !lab) return gm_fail("gm_vae_interpolate: out of memory");
    for (s = 0; s < steps; s++) {
        float t = (float)s / (float)(steps - 1);
        for (j = 0; j < L; j++) z[(size_t)s * L + j] = (1 - t) * mu[j] + t * mu[L + j];
        if (lab) lab[s] = t <= 0.5f ? labels[0] : labels[1];
    }
    rc = gm_vae_decode(m, z, lab, steps, out);
    GENMOD_FREE(lab);
    return rc;
}

GMDEF int gm_vae_evaluate(gm_vae *m, const float *x, const int *labels, int n, gm_vae_eval *ev) {
    int i0, b = 0, j, L;
    double rec = 0, kl = 0, *kd;
    gm_vae_out o;
    if (gm__vae_args(m, x, n, "gm_vae_evaluate") != 0) return -1;
    if (!ev) return gm_fail("gm_vae_evaluate: ev is NULL");
    L = m->cfg.latent;
    kd = GM__CAST(double *, GENMOD_MALLOC((size_t)L * sizeof(double)));
    if (!kd) return gm_fail("gm_vae_evaluate: out of memory");
    memset(kd, 0, (size_t)L * sizeof(double));
    GM__VAE_CHUNKS(n, i0, b) {
        if (gm__vae_chunk(m, x + (size_t)i0 * m->in_dim, labels ? labels + i0 : NULL, b, 1, &o) != 0) {
            GENMOD_FREE(kd);
            return -1;
        }
        rec += gm__vae_sum(o.recon);
        kl += gm__vae_sum(o.kl);
        gm__vae_kl_dims(o.mu, o.logvar, kd);
    }
    memset(ev, 0, sizeof *ev);
    for (j = 0; j < L; j++) {
        m->kl_dim[j] = (float)(kd[j] / n);
        ev->active += m->kl_dim[j] > 0.01f;
    }
    GENMOD_FREE(kd);
    ev->recon = rec / n;
    ev->kl = kl / n;
    ev->neg_elbo = ev->recon + ev->kl;
    ev->neg_elbo_bpd = ev->neg_elbo / (m->in_dim * GM__VAE_LN2);
    ev->kl_dim = m->kl_dim;
    return 0;
}

GMDEF int gm_vae_score(gm_vae *m, const float *x, const int *labels, int n, int kind, float *scores) {
    int i0, b = 0, i, j;
    gm_vae_out o;
    if (gm__vae_args(m, x, n, "gm_vae_score") != 0) return -1;
    if (!scores || (kind != GM_VAE_SCORE_NELBO && kind != GM_VAE_SCORE_RECON))
        return gm_fail("gm_vae_score: needs scores and a kind GM_VAE_SCORE_NELBO or _RECON (got %d)", kind);
    GM__VAE_CHUNKS(n, i0, b) {
        const float *xc = x + (size_t)i0 * m->in_dim;
        if (gm__vae_chunk(m, xc, labels ? labels + i0 : NULL, b, kind == GM_VAE_SCORE_NELBO, &o) != 0) return -1;
        for (i = 0; i < b; i++) {
            double s = 0;
            if (kind == GM_VAE_SCORE_NELBO) s = (double)o.recon->data[i] + o.kl->data[i];
            else
                for (j = 0; j < m->in_dim; j++) {
                    double d = (double)o.mean->data[(size_t)i * m->in_dim + j] - xc[(size_t)i * m->in_dim + j];
                    s += d * d;
                }
            scores[i0 + i] = (float)s;
        }
    }
    return 0;
}

/* log-weights of k samples for each of b examples: lw[i*k + s] = log p(x|z) + log p(z) - log q(z|x) */
static int gm__vae_iw_chunk(gm_vae *m, const float *x, const int *labels, int b, int k, double *lw) {
    int L = m->cfg.latent, D = m->in_dim, i, s, j, rows = b * k;
    float *mu, *lv, *z, *xr;
    int *lab = NULL;
    gm_tensor *y = NULL, *nll;
    size_t need = (size_t)2 * b * L + (size_t)rows * L + (size_t)rows * D;
    if (gm__vae_reserve(&m->scratch, &m->scratch_cap, need) != 0) return -1;
    mu = m->scratch; lv = mu + (size_t)b * L; z = lv + (size_t)b * L; xr = z + (size_t)rows * L;
    if (gm_vae_encode(m, x, labels, b, mu, lv) != 0) return -1;
    if (labels && !(lab = GM__CAST(int *, GENMOD_MALLOC((size_t)rows * sizeof(int)))))
        return gm_fail("gm_vae_iw_nll: out of memory");
    for (i = 0; i < b; i++)
        for (s = 0; s < k; s++) {
            double w = 0;   /* log p(z) - log q(z|x): the 2pi terms cancel */
            for (j = 0; j < L; j++) {
                double e = gm_rng_normal(&m->rng), l = lv[(size_t)i * L + j];
                double zz = mu[(size_t)i * L + j] + exp(0.5 * l) * e;
                z[((size_t)i * k + s) * L + j] = (float)zz;
                w += -0.5 * zz * zz + 0.5 * e * e + 0.5 * l;
            }
            lw[(size_t)i * k + s] = w;
            memcpy(xr + ((size_t)i * k + s) * D, x + (size_t)i * D, (size_t)D * sizeof(float));
            if (lab) lab[i * k + s] = labels[i];
        }
    gm__vae_infer_begin(m->g);
    if (m->cfg.nclasses > 0) y = gm__vae_onehot(m->g, m, lab, rows, "gm_vae_iw_nll");
    {
        gm_tensor *xt = gm_input(m->g, xr, rows, D, 0, 0);
        gm_tensor *logits = gm__vae_decode_t(m->g, m, gm_input(m->g, z, rows, L, 0, 0), y);
        nll = gm__vae_nll(m->g, m, xt, logits, gm_sigmoid(m->g, logits));
    }
    GENMOD_FREE(lab);
    if (!nll) return gm__vae_graph_fail(m->g, "gm_vae_iw_nll");
    for (i = 0; i < rows; i++) lw[i] -= nll->data[i];
    return 0;
}

GMDEF int gm_vae_iw_nll(gm_vae *m, const float *x, const int *labels, int n, int k, double *nats, double *bpd,
                        float *nll) {
    int i0, b, i, s;
    double total = 0, *lw;
    if (gm__vae_args(m, x, n, "gm_vae_iw_nll") != 0) return -1;
    if (k < 1) return gm_fail("gm_vae_iw_nll: k = %d, needs at least one sample", k);
    b = 2000 / k > 0 ? 2000 / k : 1;   /* about 2000 decoder rows per graph */
    lw = GM__CAST(double *, GENMOD_MALLOC((size_t)b * k * sizeof(double)));
    if (!lw) return gm_fail("gm_vae_iw_nll: out of memory");
    for (i0 = 0; i0 < n; i0 += b) {
        int bb = n - i0 < b ? n - i0 : b;
        if (gm__vae_iw_chunk(m, x + (size_t)i0 * m->in_dim, labels ? labels + i0 : NULL, bb, k, lw) != 0) {
            GENMOD_FREE(lw);
            return -1;
        }
        for (i = 0; i < bb; i++) {   /* log mean exp, in double */
            double mx = lw[(size_t)i * k], sum = 0, lp;
            for (s = 1; s < k; s++) mx = lw[(size_t)i * k + s] > mx ? lw[(size_t)i * k + s] : mx;
            for (s = 0; s < k; s++) sum += exp(lw[(size_t)i * k + s] - mx);
            lp = mx + log(sum / k);
            total -= lp;
            if (nll) nll[i0 + i] = (float)-lp;
        }
    }
    GENMOD_FREE(lw);
    if (nats) *nats = total / n;
    if (bpd) *bpd = total / n / (m->in_dim * GM__VAE_LN2);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* VAE: checkpoints                                                                         */
/* ---------------------------------------------------------------------------------------- */
static void gm__vae_config_text(const gm_vae_config *c, char *s, size_t cap) {
    static const char *lik[] = {"bernoulli", "gaussian", "gaussian_learned"};
    char a[400];
    gm__vae_arch_text(&c->arch, a, sizeof a);
    snprintf(s, cap, "%s latent=%d classes=%d likelihood=%s sigma=%g", a, c->latent, c->nclasses, lik[c->likelihood],
             c->gauss_sigma);
}

GMDEF int gm_vae_save(gm_vae *m, const char *path) {
    char arch[512], extra[160];
    if (!m || !path) return gm_fail("gm_vae_save: NULL argument");
    gm__vae_config_text(&m->cfg, arch, sizeof arch);
    snprintf(extra, sizeof extra, "beta_kind=%d beta=%g start=%g steps=%ld ramp=%g", m->cfg.beta.kind, m->cfg.beta.beta,
             m->cfg.beta.start, m->cfg.beta.steps, m->cfg.beta.ramp);
    return gm__vae_save_common(path, &m->params, &m->opt, "vae", arch, m->step, extra);
}

GMDEF int gm_vae_load(gm_vae *m, const char *path) {
    char arch[512];
    if (!m || !path) return gm_fail("gm_vae_load: NULL argument");
    gm__vae_config_text(&m->cfg, arch, sizeof arch);
    return gm__vae_load_common(path, &m->params, &m->opt, "vae", arch, &m->step);
}

#endif /* GENMOD_VAE_IMPLEMENTATION_INCLUDED */
#endif /* GENMOD_VAE_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
MIT License

Copyright (c) 2025 the genmod authors

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
