/* genmod_vae.h - v0.1 - autoencoders and variational autoencoders on top of genmod.h.
   Single-header C library (stb style): the declarations are always visible, the implementation
   is compiled where GENMOD_VAE_IMPLEMENTATION is defined.

   USAGE
     The core's implementation (GENMOD_IMPLEMENTATION) goes in exactly one C or C++ file, and this
     header's (GENMOD_VAE_IMPLEMENTATION) in exactly one file: the same one, or its own.
       One file:                              Or two files, linked together:
         #define GENMOD_IMPLEMENTATION          // genmod.c
         #include "genmod.h"                    #define GENMOD_IMPLEMENTATION
         #define GENMOD_VAE_IMPLEMENTATION      #include "genmod.h"
         #include "genmod_vae.h"                // genmod_vae.c
                                                #define GENMOD_VAE_IMPLEMENTATION
                                                #include "genmod_vae.h"
     Elsewhere just #include "genmod_vae.h". Build: cc -O2 prog.c -lm -lpthread, or
     cc -O2 prog.c genmod.c genmod_vae.c -lm -lpthread. If you define GENMOD_MALLOC, GENMOD_REALLOC
     and GENMOD_FREE, define the same three in both files.

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
     dense widths, hidden activation (the core's GM_ACT_*). Defaults follow the PyTorch reference's
     MLP autoencoder and VAE, PyTorch's default initialisation included.

   EACH MODEL HAS (the family contract of genmod's README)
     config      gm_ae_default_config() / gm_ae_conv_config(), gm_vae_default_config() /
                 gm_vae_conv_config(): plain structs, every field commented, the defaults the
                 reference recipe.
     init, free  gm_<m>_init(m, &cfg) validates the config (the message names the field) and builds
                 the model, its optimizer, its graph and its random stream (seeded from cfg.seed);
                 on failure m is left freed. gm_<m>_free(m) is safe on a zeroed model, and twice.
     train       gm_<m>_train_step(m, x, labels, n, &stats): one optimizer step on n examples of
                 plain floats; labels (n ints) for a conditional VAE, NULL otherwise (refused when
                 they do not fit the model); stats may be NULL; a NaN or infinite loss is refused
                 (-1) and the weights stay as they were.
     sample      gm_vae_sample(m, labels, n, out): z ~ N(0, I) decoded, any n (an autoencoder has no
                 prior to sample from).
     inference   encode, decode, reconstruct, evaluate, score, ...: plain arrays in and out, any n,
                 through the core's gm_run_chunks (eval mode, no tape).
     graph       gm_<m>_forward(g, m, x, ...) emits the model into your graph, for custom losses.
     checkpoints gm_<m>_save(m, path), gm_<m>_load(m, path): one safetensors file (weights,
                 optimizer state, step) through gm_model_save / gm_model_load, its metadata naming
                 the model ("ae", "vae") and its architecture (one line, e.g. "... act=elu latent=10
                 ..."). A file of another model or architecture is refused with a message naming
                 both, and the model is left untouched.
     errors      0 / -1 (NULL for tensors), the reason in gm_last_error().
     A model is used by one thread at a time (its kernels use the thread pool).

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
#define GM_VAE_LEAKY_SLOPE 0.2f   /* the negative slope of GM_ACT_LEAKY_RELU in these networks */

typedef struct gm_vae_arch {
    int in_c, in_h, in_w;               /* one example: c x h x w floats (dense nets see them flat) */
    int n_conv;                         /* stride-2 4x4 convs before the dense encoder (0: dense) */
    int conv_ch[GM_VAE_MAX_LAYERS];     /* their output channels; the decoder mirrors them */
    int n_enc, enc[GM_VAE_MAX_LAYERS];  /* dense encoder widths (an autoencoder's last one is its code) */
    int n_dec, dec[GM_VAE_MAX_LAYERS];  /* dense decoder hidden widths (before the output layer) */
    int act;                            /* hidden activation: GM_ACT_RELU, GM_ACT_ELU, ... */
} gm_vae_arch;

/* The encoder or the decoder: convolutions and dense layers with their activation. */
typedef struct gm_vae_net {
    int n_conv, n_linear;
    gm_conv conv[GM_VAE_MAX_LAYERS];
    gm_linear linear[GM_VAE_MAX_LAYERS];
    int act, last_act;                  /* GM_ACT_* of the hidden layers and of the last (decoders: identity) */
    int channels, height, width;        /* encoder: its input image; decoder: the image fed to the first deconv */
    int classes;                        /* one-hot label width joined to the input (0: none) */
} gm_vae_net;

/* ======================================================================================= */
/* Autoencoders: plain, denoising, sparse                                                  */
/* ======================================================================================= */
enum { GM_AE_SPARSE_NONE = 0, GM_AE_SPARSE_L1, GM_AE_SPARSE_KL };

typedef struct gm_ae_config {
    gm_vae_arch arch;        /* dense default: 784-784-256-128 ReLU, decoder 128-128-256-784 */
    int code_act;            /* GM_ACT_* of the code (the last encoder layer): ReLU as the reference */
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
    gm_params params;        /* every weight */
    gm_vae_net enc, dec;
    gm_optim opt;            /* change hyperparameters or the schedule after init if you like */
    gm_graph *graph;         /* used by every call of this model (one thread at a time) */
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

GMDEF gm_ae_config gm_ae_default_config(void);  /* dense reference autoencoder (the PyTorch reference's) */
GMDEF gm_ae_config gm_ae_conv_config(void);     /* convs 32, 64 -> code 128 -> deconvs; Adam 1e-3 */
GMDEF int  gm_ae_init(gm_ae *m, const gm_ae_config *cfg);   /* 0, or -1 (gm_last_error) */
GMDEF void gm_ae_free(gm_ae *m);
/* One optimizer step on x (n examples of in_dim floats): corrupts x (if denoising), reconstructs,
   MSE against the clean x plus the sparsity penalty. labels must be NULL (an autoencoder is not
   conditional). stats may be NULL. 0 or -1 (NaN loss: the weights are untouched; bad input). */
GMDEF int  gm_ae_train_step(gm_ae *m, const float *x, const int *labels, int n, gm_ae_stats *stats);
/* The model's corruption of x (what train_step feeds the encoder), into out (n * in_dim). */
GMDEF int  gm_ae_corrupt(gm_ae *m, const float *x, int n, float *out);
GMDEF int  gm_ae_encode(gm_ae *m, const float *x, int n, float *code);       /* code: n * code_dim */
GMDEF int  gm_ae_decode(gm_ae *m, const float *code, int n, float *out);     /* out: n * in_dim */
GMDEF int  gm_ae_reconstruct(gm_ae *m, const float *x, int n, float *out);
/* Test figures over n examples (no corruption): stats->mse is the mean squared error per value. */
GMDEF int  gm_ae_evaluate(gm_ae *m, const float *x, int n, gm_ae_stats *stats);
/* Anomaly score: the summed squared reconstruction error of each example, into scores (n). */
GMDEF int  gm_ae_score(gm_ae *m, const float *x, int n, float *scores);
/* Emits the model into g: x (N, in_dim) -> code (N, code_dim) and reconstruction (N, in_dim) in
   [0,1]. Either output may be NULL. 0 or -1. */
GMDEF int  gm_ae_forward(gm_graph *g, gm_ae *m, gm_tensor *x, gm_tensor **code, gm_tensor **recon);
GMDEF int  gm_ae_save(const gm_ae *m, const char *path);
GMDEF int  gm_ae_load(gm_ae *m, const char *path);   /* m: initialized with the same architecture */

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
    int kind;                /* GM_BETA_CONSTANT, GM_BETA_LINEAR, GM_BETA_CYCLICAL */
    float beta, start;       /* the weight reached, and where a schedule starts */
    long steps;              /* warm-up length, or cycle length */
    float ramp;              /* cyclical: the rising fraction of each cycle (0.5) */
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
    uint64_t seed;           /* weights, prior and importance samples, graph randomness */
} gm_vae_config;

typedef struct gm_vae {
    gm_vae_config cfg;
    gm_params params;        /* every weight */
    gm_vae_net enc, dec;
    gm_linear mu, logvar;    /* the heads of q(z|x) */
    int out_logvar;          /* view of the learned decoder log-variance (GAUSSIAN_LEARNED), else -1 */
    gm_optim opt;            /* change hyperparameters or the schedule after init if you like */
    gm_graph *graph;         /* used by every call of this model (one thread at a time) */
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
    float recon, kl, beta;   /* their means, and the KL weight of this step */
    const float *kl_dim;     /* latent values: mean KL per dimension (m->kl_dim) */
} gm_vae_stats;

typedef struct gm_vae_eval {
    double neg_elbo, recon, kl;   /* nats per example (single-sample estimate) */
    double neg_elbo_bpd;          /* bits per dimension: nats / (in_dim ln 2) */
    const float *kl_dim;          /* mean KL per latent dimension: ~0 marks a collapsed unit */
    int active;                   /* dimensions with a mean KL above 0.01 nats */
} gm_vae_eval;

GMDEF gm_vae_config gm_vae_default_config(void);   /* dense reference VAE (the PyTorch reference's) */
GMDEF gm_vae_config gm_vae_conv_config(void);      /* convs 32, 64 (4x4, stride 2), fc 256, z 10 */
GMDEF float gm_vae_beta_at(const gm_beta_schedule *s, long step);
GMDEF int  gm_vae_init(gm_vae *m, const gm_vae_config *cfg);
GMDEF void gm_vae_free(gm_vae *m);
/* Every call taking labels: n labels in 0..nclasses-1 for a conditional model, else NULL (labels
   given to an unconditional model are refused, as are missing ones for a conditional model). */
/* One optimizer step on x (n * in_dim floats). stats may be NULL. 0, or -1 with gm_last_error()
   (NaN loss: the weights are untouched; bad labels...). */
GMDEF int  gm_vae_train_step(gm_vae *m, const float *x, const int *labels, int n, gm_vae_stats *stats);
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
GMDEF int  gm_vae_forward(gm_graph *g, gm_vae *m, gm_tensor *x, const int *labels, int sample, gm_vae_out *out);
GMDEF gm_tensor *gm_vae_loss(gm_graph *g, const gm_vae_out *out, float beta);  /* mean(recon + beta kl) */
GMDEF int  gm_vae_save(const gm_vae *m, const char *path);
GMDEF int  gm_vae_load(gm_vae *m, const char *path);   /* m: initialized with the same architecture */

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
#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>

/* This implementation uses only genmod.h's public API, so it compiles in its own file as well as
   beside the core's; it brings the allocator fallbacks and the casts the core keeps private. */
#if defined(GENMOD_MALLOC) != defined(GENMOD_FREE) || defined(GENMOD_MALLOC) != defined(GENMOD_REALLOC)
#error "genmod_vae.h: define GENMOD_MALLOC, GENMOD_REALLOC and GENMOD_FREE together, or none of them"
#endif
#ifndef GENMOD_MALLOC
#define GENMOD_MALLOC(sz) malloc(sz)
#define GENMOD_REALLOC(p, sz) realloc(p, sz)
#define GENMOD_FREE(p) free(p)
#endif
#ifdef __cplusplus
#define GM__VAE_CAST(type, x) static_cast<type>(x)
#else
#define GM__VAE_CAST(type, x) ((type)(x))
#endif

#define GM__VAE_LN2 0.69314718055994531

/* ---------------------------------------------------------------------------------------- */
/* Shared helpers                                                                           */
/* ---------------------------------------------------------------------------------------- */
static int gm__vae_check_arch(const gm_vae_arch *a, const char *who) {
    int i, f;
    if (a->in_c <= 0 || a->in_h <= 0 || a->in_w <= 0)
        return gm_fail("%s: arch.in_c, in_h, in_w = %dx%dx%d must be positive", who, a->in_c, a->in_h, a->in_w);
    if (a->n_conv < 0 || a->n_conv > GM_VAE_MAX_LAYERS || a->n_enc < 0 || a->n_enc > GM_VAE_MAX_LAYERS - 1 ||
        a->n_dec < 0 || a->n_dec > GM_VAE_MAX_LAYERS - 1)
        return gm_fail("%s: arch.n_conv %d must be 0..%d, arch.n_enc %d and n_dec %d 0..%d", who, a->n_conv,
                        GM_VAE_MAX_LAYERS, a->n_enc, a->n_dec, GM_VAE_MAX_LAYERS - 1);
    f = 1 << a->n_conv;   /* each stride-2 conv halves the image */
    if (a->in_h % f || a->in_w % f)
        return gm_fail("%s: arch.n_conv = %d stride-2 convs need in_h and in_w divisible by %d, got %dx%d", who,
                        a->n_conv, f, a->in_h, a->in_w);
    for (i = 0; i < a->n_conv; i++)
        if (a->conv_ch[i] <= 0) return gm_fail("%s: arch.conv_ch[%d] = %d is not positive", who, i, a->conv_ch[i]);
    for (i = 0; i < a->n_enc; i++)
        if (a->enc[i] <= 0) return gm_fail("%s: arch.enc[%d] = %d is not positive", who, i, a->enc[i]);
    for (i = 0; i < a->n_dec; i++)
        if (a->dec[i] <= 0) return gm_fail("%s: arch.dec[%d] = %d is not positive", who, i, a->dec[i]);
    if (a->act < 0 || a->act >= GM_ACT_COUNT) return gm_fail("%s: arch.act %d is not a GM_ACT_* activation", who, a->act);
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
             gm__vae_ints(d, sizeof d, a->dec, a->n_dec), gm_act_name(a->act));
}

/* Encoder: [convs 4x4 stride 2] -> flatten -> dense widths; input (in_c + classes) channels. */
static int gm__vae_enc_init(gm_vae_net *n, gm_params *P, const gm_vae_arch *a, int classes, int nw, const int *w,
                            int last_act, gm_rng *r) {
    char name[32];
    int i, c = a->in_c + (a->n_conv ? classes : 0), h = a->in_h, wd = a->in_w, in;
    memset(n, 0, sizeof *n);
    n->n_conv = a->n_conv; n->n_linear = nw; n->act = a->act; n->last_act = last_act;
    n->channels = a->in_c; n->height = a->in_h; n->width = a->in_w; n->classes = classes;
    for (i = 0; i < a->n_conv; i++, h /= 2, wd /= 2) {
        snprintf(name, sizeof name, "enc.conv%d", i);
        if (gm_conv_init(&n->conv[i], P, name, c, a->conv_ch[i], 4, 2, 1, GM_INIT_TORCH, r) != 0) return -1;
        c = a->conv_ch[i];
    }
    in = a->n_conv ? c * h * wd : c * h * wd + classes;
    for (i = 0; i < nw; i++) {
        snprintf(name, sizeof name, "enc.fc%d", i);
        if (gm_linear_init(&n->linear[i], P, name, in, w[i], GM_INIT_TORCH, r) != 0) return -1;
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
    n->n_conv = a->n_conv; n->n_linear = a->n_dec + 1; n->act = a->act; n->last_act = GM_ACT_IDENTITY;
    n->channels = a->n_conv ? a->conv_ch[a->n_conv - 1] : a->in_c;
    n->height = a->in_h / f; n->width = a->in_w / f;
    for (i = 0; i < n->n_linear; i++) {
        out = i < a->n_dec ? a->dec[i] : n->channels * n->height * n->width;
        snprintf(name, sizeof name, "dec.fc%d", i);
        if (gm_linear_init(&n->linear[i], P, name, in, out, GM_INIT_TORCH, r) != 0) return -1;
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
    if (n->n_conv) {
        h = gm_reshape(g, x, N, n->channels, n->height, n->width);
        if (y) h = gm_concat(g, h, gm__vae_label_planes(g, y, n->height, n->width), 1);
        for (i = 0; i < n->n_conv; i++)
            h = gm_activation(g, gm_conv_forward(g, &n->conv[i], h), n->act, GM_VAE_LEAKY_SLOPE);
        h = gm_flatten(g, h);
    } else if (y) {
        h = gm_concat(g, x, y, 1);
    }
    for (i = 0; i < n->n_linear; i++)
        h = gm_activation(g, gm_linear_forward(g, &n->linear[i], h), i + 1 < n->n_linear ? n->act : n->last_act,
                          GM_VAE_LEAKY_SLOPE);
    return h;
}

/* z (N, Z), y (N, classes) or NULL -> logits (N, in_dim): no activation after the last layer. */
static gm_tensor *gm__vae_dec_forward(gm_graph *g, const gm_vae_net *n, gm_tensor *z, gm_tensor *y) {
    gm_tensor *h = y ? gm_concat(g, z, y, 1) : z;
    int i, N;
    if (!h) return NULL;
    N = h->shape[0];
    for (i = 0; i < n->n_linear; i++) {
        h = gm_linear_forward(g, &n->linear[i], h);
        if (i + 1 < n->n_linear || n->n_conv) h = gm_activation(g, h, n->act, GM_VAE_LEAKY_SLOPE);
    }
    if (!n->n_conv) return h;
    h = gm_reshape(g, h, N, n->channels, n->height, n->width);
    for (i = 0; i < n->n_conv; i++) {
        h = gm_conv_forward(g, &n->conv[i], h);
        if (i + 1 < n->n_conv) h = gm_activation(g, h, n->act, GM_VAE_LEAKY_SLOPE);
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

static int gm__vae_args(const void *m, const void *x, int n, const char *who) {
    if (!m) return gm_fail("%s: model is NULL", who);
    if (!x) return gm_fail("%s: input is NULL", who);
    if (n <= 0) return gm_fail("%s: n = %d, needs at least one example", who, n);
    return 0;
}

/* Start a training step: fresh graph, tape on, training mode. */
static void gm__vae_train_begin(gm_graph *g) {
    gm_graph_reset(g);
    gm_graph_set_grad(g, 1);
    gm_graph_set_training(g, 1);
}

static void gm__vae_copy_out(float *dst, const gm_tensor *t) {
    if (dst && t) memcpy(dst, t->data, (size_t)t->size * sizeof(float));
}

/* The metadata: model name, the architecture (checked on load), train step, the random streams
   (gm_model_save_single), and the training switches under "train", for the record (not checked: a
   model may go on with other ones). */
static int gm__vae_save(const char *path, const char *model, const char *arch, long step, const gm_params *p,
                        const gm_optim *opt, const gm_rng *rng, gm_graph *graph, const char *train, const char *who) {
    gm_meta extra;
    memset(&extra, 0, sizeof extra);
    if (gm_meta_set(&extra, "train", train) != 0) return gm_fail("%s: metadata too long", who);
    return gm_model_save_single(path, model, arch, step, p, opt, rng, graph, &extra);
}

static int gm__vae_load(const char *path, const char *model, const char *arch, long *step, gm_params *p,
                        gm_optim *opt, gm_rng *rng, gm_graph *graph) {
    return gm_model_load_single(path, model, arch, step, p, opt, rng, graph, NULL);
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
    c.arch.act = GM_ACT_RELU;
    c.code_act = GM_ACT_RELU;
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
    if (c->arch.n_enc < 1) return gm_fail("gm_ae_init: arch.n_enc: needs at least one dense encoder layer (the code)");
    if (c->code_act < 0 || c->code_act >= GM_ACT_COUNT)
        return gm_fail("gm_ae_init: code_act %d is not a GM_ACT_* activation", c->code_act);
    if (!(c->noise_sigma >= 0) || !(c->mask_prob >= 0 && c->mask_prob < 1))
        return gm_fail("gm_ae_init: noise_sigma %g must be >= 0 and mask_prob %g in [0,1)", c->noise_sigma, c->mask_prob);
    if (c->sparsity < GM_AE_SPARSE_NONE || c->sparsity > GM_AE_SPARSE_KL)
        return gm_fail("gm_ae_init: sparsity %d is not a GM_AE_SPARSE_* kind", c->sparsity);
    if (c->sparsity == GM_AE_SPARSE_KL && c->code_act != GM_ACT_SIGMOID)
        return gm_fail("gm_ae_init: the KL sparsity penalty needs code activations in (0,1): set code_act = GM_ACT_SIGMOID");
    if (c->sparsity == GM_AE_SPARSE_KL && !(c->sparsity_target > 0 && c->sparsity_target < 1))
        return gm_fail("gm_ae_init: sparsity_target %g must be in (0,1)", c->sparsity_target);
    if (!(c->lr > 0)) return gm_fail("gm_ae_init: learning rate lr %g must be positive", c->lr);
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
    m->graph = gm_graph_new(cfg->seed + 1);
    if (!m->graph) { gm_ae_free(m); return gm_fail("gm_ae_init: out of memory"); }
    return 0;
}

GMDEF void gm_ae_free(gm_ae *m) {
    if (!m) return;
    gm_params_free(&m->params);
    gm_optim_free(&m->opt);
    gm_graph_free(m->graph);
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
    if (!c || (recon && !*recon)) return gm_graph_fail(g, "gm_ae_forward");
    return 0;
}

GMDEF int gm_ae_corrupt(gm_ae *m, const float *x, int n, float *out) {
    size_t i, count;
    float s, p;
    if (gm__vae_args(m, x, n, "gm_ae_corrupt") != 0) return -1;
    if (!out) return gm_fail("gm_ae_corrupt: out is NULL");
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

GMDEF int gm_ae_train_step(gm_ae *m, const float *x, const int *labels, int n, gm_ae_stats *stats) {
    gm_graph *g;
    gm_tensor *xin, *clean, *code, *recon, *mse, *pen, *loss;
    const float *feed = x;
    double csum = 0;
    long zeros = 0;
    if (gm__vae_args(m, x, n, "gm_ae_train_step") != 0) return -1;
    if (labels) return gm_fail("gm_ae_train_step: an autoencoder is not conditional: labels must be NULL");
    g = m->graph;
    if (m->cfg.noise_sigma > 0 || m->cfg.mask_prob > 0) {
        if (gm_floats_reserve(&m->scratch, &m->scratch_cap, (size_t)n * m->in_dim) != 0) return -1;
        gm_ae_corrupt(m, x, n, m->scratch);
        feed = m->scratch;
    }
    gm__vae_train_begin(g);
    xin = gm_input(g, feed, n, m->in_dim, 0, 0);
    clean = feed == x ? xin : gm_input(g, x, n, m->in_dim, 0, 0);
    if (!xin || !clean || gm_ae_forward(g, m, xin, &code, &recon) != 0) return -1;
    mse = gm_mse(g, recon, clean);
    pen = gm__ae_penalty(g, &m->cfg, code);
    loss = pen ? gm_add(g, mse, pen) : mse;
    /* gm_backward refuses a NaN or infinite loss before any gradient exists: no step is taken */
    if (gm_backward(g, loss) != 0) return gm_graph_fail(g, "gm_ae_train_step");
    if (gm_optim_step(&m->opt, &m->params) != 0) return -1;
    m->step++;
    if (stats) {
        gm__ae_code_stats(m, code, &csum, &zeros);
        stats->loss = loss->data[0];
        stats->mse = mse->data[0];
        stats->penalty = pen ? pen->data[0] : 0.0f;
        stats->code_mean = (float)(csum / code->size);
        stats->code_zero_frac = (float)zeros / (float)code->size;
    }
    return 0;
}

/* One chunk of an inference call: what it hands back (pointers may be NULL) and accumulates. */
typedef struct gm__ae_job {
    gm_ae *m;
    const float *x;          /* examples, or codes for decode */
    float *code, *out, *scores;
    int stats;               /* accumulate sq, csum, zeros (evaluate) */
    double sq, csum;
    long zeros;
} gm__ae_job;

static int gm__ae_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__ae_job *j = GM__VAE_CAST(gm__ae_job *, ctx);
    gm_ae *m = j->m;
    int i, k, D = m->in_dim, want = j->out || j->scores || j->stats;
    gm_tensor *xt = gm_input(g, j->x + (size_t)start * D, count, D, 0, 0), *c = NULL, *r = NULL;
    if (!xt || gm_ae_forward(g, m, xt, &c, want ? &r : NULL) != 0) return -1;
    if (j->code) gm__vae_copy_out(j->code + (size_t)start * m->code_dim, c);
    if (j->out) gm__vae_copy_out(j->out + (size_t)start * D, r);
    if (j->stats) gm__ae_code_stats(m, c, &j->csum, &j->zeros);
    for (i = 0; (j->scores || j->stats) && i < count; i++) {
        double s = 0;
        for (k = 0; k < D; k++) {
            double d = (double)r->data[(size_t)i * D + k] - xt->data[(size_t)i * D + k];
            s += d * d;
        }
        if (j->scores) j->scores[start + i] = (float)s;
        j->sq += s;
    }
    return 0;
}

static int gm__ae_run(gm_ae *m, const float *x, int n, gm__ae_job *j, const char *who) {
    if (gm__vae_args(m, x, n, who) != 0) return -1;
    j->m = m;
    j->x = x;
    return gm_run_chunks(m->graph, n, gm__ae_chunk, j, who);
}

GMDEF int gm_ae_encode(gm_ae *m, const float *x, int n, float *code) {
    gm__ae_job j;
    memset(&j, 0, sizeof j);
    j.code = code;
    return gm__ae_run(m, x, n, &j, "gm_ae_encode");
}

GMDEF int gm_ae_reconstruct(gm_ae *m, const float *x, int n, float *out) {
    gm__ae_job j;
    memset(&j, 0, sizeof j);
    j.out = out;
    return gm__ae_run(m, x, n, &j, "gm_ae_reconstruct");
}

GMDEF int gm_ae_score(gm_ae *m, const float *x, int n, float *scores) {
    gm__ae_job j;
    if (!scores) return gm_fail("gm_ae_score: scores is NULL");
    memset(&j, 0, sizeof j);
    j.scores = scores;
    return gm__ae_run(m, x, n, &j, "gm_ae_score");
}

GMDEF int gm_ae_evaluate(gm_ae *m, const float *x, int n, gm_ae_stats *stats) {
    gm__ae_job j;
    if (!stats) return gm_fail("gm_ae_evaluate: stats is NULL");
    memset(&j, 0, sizeof j);
    j.stats = 1;
    if (gm__ae_run(m, x, n, &j, "gm_ae_evaluate") != 0) return -1;
    memset(stats, 0, sizeof *stats);
    stats->mse = (float)(j.sq / ((double)n * m->in_dim));
    stats->loss = stats->mse;
    stats->code_mean = (float)(j.csum / ((double)n * m->code_dim));
    stats->code_zero_frac = (float)((double)j.zeros / ((double)n * m->code_dim));
    return 0;
}

static int gm__ae_decode_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__ae_job *j = GM__VAE_CAST(gm__ae_job *, ctx);
    gm_ae *m = j->m;
    gm_tensor *c = gm_input(g, j->x + (size_t)start * m->code_dim, count, m->code_dim, 0, 0);
    gm_tensor *r = gm_sigmoid(g, gm__vae_dec_forward(g, &m->dec, c, NULL));
    if (!r) return -1;
    gm__vae_copy_out(j->out + (size_t)start * m->in_dim, r);
    return 0;
}

GMDEF int gm_ae_decode(gm_ae *m, const float *code, int n, float *out) {
    gm__ae_job j;
    if (gm__vae_args(m, code, n, "gm_ae_decode") != 0) return -1;
    if (!out) return gm_fail("gm_ae_decode: out is NULL");
    memset(&j, 0, sizeof j);
    j.m = m; j.x = code; j.out = out;
    return gm_run_chunks(m->graph, n, gm__ae_decode_chunk, &j, "gm_ae_decode");
}

static void gm__ae_config_text(const gm_ae_config *c, char *s, size_t cap) {
    char a[400];
    gm__vae_arch_text(&c->arch, a, sizeof a);
    snprintf(s, cap, "%s code_act=%s", a, gm_act_name(c->code_act));
}

GMDEF int gm_ae_save(const gm_ae *m, const char *path) {
    char arch[512], train[160];
    if (!m || !path) return gm_fail("gm_ae_save: NULL argument");
    gm__ae_config_text(&m->cfg, arch, sizeof arch);
    snprintf(train, sizeof train, "noise_sigma=%g mask_prob=%g sparsity=%d weight=%g target=%g", m->cfg.noise_sigma,
             m->cfg.mask_prob, m->cfg.sparsity, m->cfg.sparsity_weight, m->cfg.sparsity_target);
    return gm__vae_save(path, "ae", arch, m->step, &m->params, &m->opt, &m->rng, m->graph, train, "gm_ae_save");
}

GMDEF int gm_ae_load(gm_ae *m, const char *path) {
    char arch[512];
    if (!m || !path) return gm_fail("gm_ae_load: NULL argument");
    gm__ae_config_text(&m->cfg, arch, sizeof arch);
    return gm__vae_load(path, "ae", arch, &m->step, &m->params, &m->opt, &m->rng, m->graph);
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
    c.arch.act = GM_ACT_ELU;
    c.latent = 10;
    c.likelihood = GM_VAE_BERNOULLI;
    c.gauss_sigma = 0.1f;
    c.beta.kind = GM_BETA_CONSTANT;
    c.beta.beta = 1.0f;
    c.beta.ramp = 0.5f;
    c.optim = GM_ADAM;
    c.lr = 1e-3f;   /* the PyTorch reference's default (its source used 1e-4) */
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
    if (c->arch.n_enc < 1) return gm_fail("gm_vae_init: arch.n_enc: needs at least one dense encoder layer before the heads");
    if (c->latent <= 0) return gm_fail("gm_vae_init: latent = %d must be positive", c->latent);
    if (c->nclasses < 0) return gm_fail("gm_vae_init: nclasses = %d must be >= 0", c->nclasses);
    if (c->likelihood < GM_VAE_BERNOULLI || c->likelihood > GM_VAE_GAUSSIAN_LEARNED)
        return gm_fail("gm_vae_init: likelihood %d is not a GM_VAE_BERNOULLI / _GAUSSIAN / _GAUSSIAN_LEARNED", c->likelihood);
    if (c->likelihood != GM_VAE_BERNOULLI && !(c->gauss_sigma > 0))
        return gm_fail("gm_vae_init: gauss_sigma %g must be positive", c->gauss_sigma);
    if (c->beta.kind < GM_BETA_CONSTANT || c->beta.kind > GM_BETA_CYCLICAL)
        return gm_fail("gm_vae_init: beta.kind %d is not a GM_BETA_* schedule", c->beta.kind);
    if (!(c->beta.beta >= 0) || !(c->beta.start >= 0))
        return gm_fail("gm_vae_init: beta.beta %g and beta.start %g must be >= 0", c->beta.beta, c->beta.start);
    if (c->beta.kind != GM_BETA_CONSTANT && c->beta.steps <= 0)
        return gm_fail("gm_vae_init: a linear or cyclical beta schedule needs beta.steps > 0");
    if (c->beta.kind == GM_BETA_CYCLICAL && !(c->beta.ramp > 0 && c->beta.ramp <= 1))
        return gm_fail("gm_vae_init: cyclical beta.ramp %g must be in (0,1]", c->beta.ramp);
    if (!(c->lr > 0)) return gm_fail("gm_vae_init: learning rate lr %g must be positive", c->lr);
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
    m->kl_dim = GM__VAE_CAST(float *, GENMOD_MALLOC((size_t)cfg->latent * sizeof(float)));
    m->graph = gm_graph_new(cfg->seed + 1);
    if (!m->kl_dim || !m->graph) { gm_fail("gm_vae_init: out of memory"); goto fail; }
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
    gm_graph_free(m->graph);
    GENMOD_FREE(m->kl_dim);
    GENMOD_FREE(m->scratch);
    memset(m, 0, sizeof *m);
    m->out_logvar = -1;
}

/* ---------------------------------------------------------------------------------------- */
/* VAE: the model in a graph                                                                */
/* ---------------------------------------------------------------------------------------- */
/* Labels fit the model: n of them in 0..nclasses-1 for a conditional VAE, none otherwise. Checked
   on the host before any graph is built, so the message names the call that was made. */
static int gm__vae_check_labels(const gm_vae *m, const int *labels, int n, const char *who) {
    int i;
    if (m->cfg.nclasses <= 0)
        return labels ? gm_fail("%s: this VAE is not conditional (nclasses = 0): labels must be NULL", who) : 0;
    if (!labels) return gm_fail("%s: this conditional VAE needs labels (0..%d)", who, m->cfg.nclasses - 1);
    for (i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= m->cfg.nclasses)
            return gm_fail("%s: label %d of example %d is outside 0..%d", who, labels[i], i, m->cfg.nclasses - 1);
    return 0;
}

/* The arguments of a call on n examples x (or z) with labels. */
static int gm__vae_in(const gm_vae *m, const void *x, const int *labels, int n, const char *who) {
    if (gm__vae_args(m, x, n, who) != 0) return -1;
    return gm__vae_check_labels(m, labels, n, who);
}

/* The one-hot labels joined to the encoder input and to z; NULL for an unconditional model. */
static gm_tensor *gm__vae_onehot(gm_graph *g, const gm_vae *m, const int *labels, int n) {
    return m->cfg.nclasses > 0 ? gm_one_hot(g, labels, n, m->cfg.nclasses) : NULL;
}

/* -log p(x | decoder output) per example (N). */
static gm_tensor *gm__vae_nll(gm_graph *g, gm_vae *m, gm_tensor *x, gm_tensor *logits, gm_tensor *mean) {
    gm_tensor *lv;
    if (m->cfg.likelihood == GM_VAE_BERNOULLI) return gm_neg(g, gm_bernoulli_loglik(g, logits, x));
    lv = m->out_logvar >= 0 ? gm_param(g, &m->params, m->out_logvar)
                            : gm_full(g, 2.0f * logf(m->cfg.gauss_sigma), 1, 0, 0, 0);
    return gm_neg(g, gm_gaussian_loglik(g, x, mean, lv));
}

/* x (N, in_dim), labels (N) -> mu, logvar, z (N, latent); logits, mean (N, in_dim); recon, kl (N) */
GMDEF int gm_vae_forward(gm_graph *g, gm_vae *m, gm_tensor *x, const int *labels, int sample, gm_vae_out *out) {
    gm_tensor *y = NULL, *h;
    int n;
    if (!g || !m || !x || !out) return gm_fail("gm_vae_forward: NULL argument");
    memset(out, 0, sizeof *out);
    if (x->ndim != 2 || x->shape[1] != m->in_dim)
        return gm_fail("gm_vae_forward: x must be (N,%d), got %d dims with %d columns", m->in_dim, x->ndim,
                        x->ndim > 1 ? x->shape[1] : x->shape[0]);
    n = x->shape[0];
    if (gm__vae_check_labels(m, labels, n, "gm_vae_forward") != 0) return -1;
    if (m->cfg.nclasses > 0 && !(y = gm__vae_onehot(g, m, labels, n))) return gm_graph_fail(g, "gm_vae_forward");
    h = gm__vae_enc_forward(g, &m->enc, x, y);
    out->mu = gm_linear_forward(g, &m->mu, h);
    out->logvar = gm_linear_forward(g, &m->logvar, h);
    out->z = !sample ? out->mu
                     : gm_add(g, out->mu, gm_mul(g, gm_exp(g, gm_scale(g, out->logvar, 0.5f)), gm_randn_like(g, out->mu)));
    out->logits = gm__vae_dec_forward(g, &m->dec, out->z, y);
    out->mean = gm_sigmoid(g, out->logits);
    out->recon = gm__vae_nll(g, m, x, out->logits, out->mean);
    out->kl = gm_kl_std_normal(g, out->mu, out->logvar);
    if (!out->recon || !out->kl) return gm_graph_fail(g, "gm_vae_forward");
    return 0;
}

GMDEF gm_tensor *gm_vae_loss(gm_graph *g, const gm_vae_out *out, float beta) {
    if (!g || !out || !out->recon || !out->kl) return NULL;
    return gm_mean(g, gm_add(g, out->recon, gm_scale(g, out->kl, beta)));
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

GMDEF int gm_vae_train_step(gm_vae *m, const float *x, const int *labels, int n, gm_vae_stats *stats) {
    gm_graph *g;
    gm_vae_out o;
    gm_tensor *xt, *loss;
    float beta;
    double acc[256], *kd = acc;
    int j;
    if (gm__vae_in(m, x, labels, n, "gm_vae_train_step") != 0) return -1;
    g = m->graph;
    beta = gm_vae_beta_at(&m->cfg.beta, m->step);
    gm__vae_train_begin(g);
    xt = gm_input(g, x, n, m->in_dim, 0, 0);
    if (!xt || gm_vae_forward(g, m, xt, labels, 1, &o) != 0) return -1;
    loss = gm_vae_loss(g, &o, beta);
    /* gm_backward refuses a NaN or infinite loss before any gradient exists: no step is taken */
    if (gm_backward(g, loss) != 0) return gm_graph_fail(g, "gm_vae_train_step");
    if (gm_optim_step(&m->opt, &m->params) != 0) return -1;
    m->step++;
    if (m->cfg.latent > 256 && !(kd = GM__VAE_CAST(double *, GENMOD_MALLOC((size_t)m->cfg.latent * sizeof(double)))))
        return gm_fail("gm_vae_train_step: out of memory");
    memset(kd, 0, (size_t)m->cfg.latent * sizeof(double));
    gm__vae_kl_dims(o.mu, o.logvar, kd);
    for (j = 0; j < m->cfg.latent; j++) m->kl_dim[j] = (float)(kd[j] / n);
    if (kd != acc) GENMOD_FREE(kd);
    if (stats) {
        stats->loss = loss->data[0];
        stats->recon = (float)(gm_tensor_sum(o.recon) / n);
        stats->kl = (float)(gm_tensor_sum(o.kl) / n);
        stats->neg_elbo = stats->recon + stats->kl;
        stats->beta = beta;
        stats->kl_dim = m->kl_dim;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* VAE: inference                                                                           */
/* ---------------------------------------------------------------------------------------- */
/* One chunk of an inference call: what it hands back (pointers may be NULL) and accumulates. */
typedef struct gm__vae_job {
    gm_vae *m;
    const float *x;          /* examples (n * in_dim), or z (n * latent) for decode */
    const int *labels;       /* n labels, or NULL */
    int sample;              /* z = mu + sigma eps (1), or mu (0) */
    float *mu, *logvar, *mean;
    float *scores;           /* with score_kind */
    int score_kind;
    double *kl_dims;         /* evaluate: per-dimension KL sums, and recon / kl sums beside them */
    double recon, kl;
} gm__vae_job;

/* The anomaly score of each of count examples of a forward pass. */
static void gm__vae_scores(const gm_vae *m, const gm_vae_out *o, const float *x, int count, int kind, float *scores) {
    int i, j, D = m->in_dim;
    for (i = 0; i < count; i++) {
        double s = 0;
        if (kind == GM_VAE_SCORE_NELBO) s = (double)o->recon->data[i] + o->kl->data[i];
        else
            for (j = 0; j < D; j++) {
                double d = (double)o->mean->data[(size_t)i * D + j] - x[(size_t)i * D + j];
                s += d * d;
            }
        scores[i] = (float)s;
    }
}

static int gm__vae_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__vae_job *j = GM__VAE_CAST(gm__vae_job *, ctx);
    gm_vae *m = j->m;
    const float *x = j->x + (size_t)start * m->in_dim;
    size_t L = (size_t)m->cfg.latent;
    gm_vae_out o;
    gm_tensor *xt = gm_input(g, x, count, m->in_dim, 0, 0);
    if (!xt || gm_vae_forward(g, m, xt, j->labels ? j->labels + start : NULL, j->sample, &o) != 0) return -1;
    if (j->mu) gm__vae_copy_out(j->mu + start * L, o.mu);
    if (j->logvar) gm__vae_copy_out(j->logvar + start * L, o.logvar);
    if (j->mean) gm__vae_copy_out(j->mean + (size_t)start * m->in_dim, o.mean);
    if (j->scores) gm__vae_scores(m, &o, x, count, j->score_kind, j->scores + start);
    if (j->kl_dims) {
        j->recon += gm_tensor_sum(o.recon);
        j->kl += gm_tensor_sum(o.kl);
        gm__vae_kl_dims(o.mu, o.logvar, j->kl_dims);
    }
    return 0;
}

/* Runs the model over n examples in chunks (eval mode, no tape), as j asks. */
static int gm__vae_run(gm_vae *m, const float *x, const int *labels, int n, gm__vae_job *j, const char *who) {
    if (gm__vae_in(m, x, labels, n, who) != 0) return -1;
    j->m = m;
    j->x = x;
    j->labels = labels;
    return gm_run_chunks(m->graph, n, gm__vae_chunk, j, who);
}

GMDEF int gm_vae_encode(gm_vae *m, const float *x, const int *labels, int n, float *mu, float *logvar) {
    gm__vae_job j;
    memset(&j, 0, sizeof j);
    j.mu = mu; j.logvar = logvar;
    return gm__vae_run(m, x, labels, n, &j, "gm_vae_encode");
}

GMDEF int gm_vae_reconstruct(gm_vae *m, const float *x, const int *labels, int n, float *out) {
    gm__vae_job j;
    memset(&j, 0, sizeof j);
    j.mean = out;
    return gm__vae_run(m, x, labels, n, &j, "gm_vae_reconstruct");
}

static int gm__vae_decode_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__vae_job *j = GM__VAE_CAST(gm__vae_job *, ctx);
    gm_vae *m = j->m;
    int L = m->cfg.latent;
    gm_tensor *y = NULL, *r;
    if (m->cfg.nclasses > 0 && !(y = gm__vae_onehot(g, m, j->labels + start, count))) return -1;
    r = gm_sigmoid(g, gm__vae_dec_forward(g, &m->dec, gm_input(g, j->x + (size_t)start * L, count, L, 0, 0), y));
    if (!r) return -1;
    gm__vae_copy_out(j->mean + (size_t)start * m->in_dim, r);
    return 0;
}

GMDEF int gm_vae_decode(gm_vae *m, const float *z, const int *labels, int n, float *out) {
    gm__vae_job j;
    if (gm__vae_in(m, z, labels, n, "gm_vae_decode") != 0) return -1;
    if (!out) return gm_fail("gm_vae_decode: out is NULL");
    memset(&j, 0, sizeof j);
    j.m = m; j.x = z; j.labels = labels; j.mean = out;
    return gm_run_chunks(m->graph, n, gm__vae_decode_chunk, &j, "gm_vae_decode");
}

GMDEF int gm_vae_sample(gm_vae *m, const int *labels, int n, float *out) {
    size_t i, count;
    if (!m || n <= 0 || !out) return gm_fail("gm_vae_sample: needs a model, n > 0 and out");
    if (gm__vae_check_labels(m, labels, n, "gm_vae_sample") != 0) return -1;
    count = (size_t)n * m->cfg.latent;
    if (gm_floats_reserve(&m->scratch, &m->scratch_cap, count) != 0) return -1;
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
    if (gm__vae_check_labels(m, labels, 2, "gm_vae_interpolate") != 0) return -1;
    if (gm_vae_encode(m, xa, labels, 1, mu, NULL) != 0 || gm_vae_encode(m, xb, labels ? labels + 1 : NULL, 1, mu + L, NULL) != 0)
        return -1;
    if (gm_floats_reserve(&m->scratch, &m->scratch_cap, (size_t)steps * L + steps) != 0) return -1;
    z = m->scratch;
    if (labels) lab = GM__VAE_CAST(int *, GENMOD_MALLOC((size_t)steps * sizeof(int)));
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
    gm__vae_job job;
    int j, L;
    if (!ev) return gm_fail("gm_vae_evaluate: ev is NULL");
    if (gm__vae_in(m, x, labels, n, "gm_vae_evaluate") != 0) return -1;
    L = m->cfg.latent;
    memset(&job, 0, sizeof job);
    job.sample = 1;
    job.kl_dims = GM__VAE_CAST(double *, GENMOD_MALLOC((size_t)L * sizeof(double)));
    if (!job.kl_dims) return gm_fail("gm_vae_evaluate: out of memory");
    memset(job.kl_dims, 0, (size_t)L * sizeof(double));
    if (gm__vae_run(m, x, labels, n, &job, "gm_vae_evaluate") != 0) {
        GENMOD_FREE(job.kl_dims);
        return -1;
    }
    memset(ev, 0, sizeof *ev);
    for (j = 0; j < L; j++) {
        m->kl_dim[j] = (float)(job.kl_dims[j] / n);
        ev->active += m->kl_dim[j] > 0.01f;
    }
    GENMOD_FREE(job.kl_dims);
    ev->recon = job.recon / n;
    ev->kl = job.kl / n;
    ev->neg_elbo = ev->recon + ev->kl;
    ev->neg_elbo_bpd = ev->neg_elbo / (m->in_dim * GM__VAE_LN2);
    ev->kl_dim = m->kl_dim;
    return 0;
}

GMDEF int gm_vae_score(gm_vae *m, const float *x, const int *labels, int n, int kind, float *scores) {
    gm__vae_job j;
    if (!scores || (kind != GM_VAE_SCORE_NELBO && kind != GM_VAE_SCORE_RECON))
        return gm_fail("gm_vae_score: needs scores and a kind GM_VAE_SCORE_NELBO or _RECON (got %d)", kind);
    memset(&j, 0, sizeof j);
    j.sample = kind == GM_VAE_SCORE_NELBO;
    j.scores = scores;
    j.score_kind = kind;
    return gm__vae_run(m, x, labels, n, &j, "gm_vae_score");
}

/* Importance weighting: rows = examples x k samples, each row an example's copy and one z. */
typedef struct gm__vae_iw {
    gm_vae *m;
    const float *x, *z;      /* (rows, in_dim), (rows, latent) */
    const int *labels;       /* (rows) or NULL */
    int rows;
    double *lw;              /* (rows): log p(z) - log q(z|x) in, minus -log p(x|z) out */
} gm__vae_iw;

/* Every row of a block in one decoder pass: gm_run_chunks sees the block as a single item. A block
   is already sized to about 2000 rows, and one pass keeps the figures bit for bit as they were (a
   GEMM's rounding may depend on how many rows it is given). */
static int gm__vae_iw_block(gm_graph *g, int start, int count, void *ctx) {
    gm__vae_iw *w = GM__VAE_CAST(gm__vae_iw *, ctx);
    gm_vae *m = w->m;
    int D = m->in_dim, L = m->cfg.latent, i;
    gm_tensor *y = NULL, *xt, *logits, *nll;
    (void)start; (void)count;
    if (m->cfg.nclasses > 0 && !(y = gm__vae_onehot(g, m, w->labels, w->rows))) return -1;
    xt = gm_input(g, w->x, w->rows, D, 0, 0);
    logits = gm__vae_dec_forward(g, &m->dec, gm_input(g, w->z, w->rows, L, 0, 0), y);
    nll = gm__vae_nll(g, m, xt, logits, gm_sigmoid(g, logits));
    if (!nll) return -1;
    for (i = 0; i < w->rows; i++) w->lw[i] -= nll->data[i];
    return 0;
}

/* log-weights of k samples for each of b examples: lw[i*k + s] = log p(x|z) + log p(z) - log q(z|x) */
static int gm__vae_iw_chunk(gm_vae *m, const float *x, const int *labels, int b, int k, double *lw) {
    int L = m->cfg.latent, D = m->in_dim, i, s, j, rows = b * k, rc;
    float *mu, *lv, *z, *xr;
    int *lab = NULL;
    gm__vae_iw w;
    size_t need = (size_t)2 * b * L + (size_t)rows * L + (size_t)rows * D;
    if (gm_floats_reserve(&m->scratch, &m->scratch_cap, need) != 0) return -1;
    mu = m->scratch; lv = mu + (size_t)b * L; z = lv + (size_t)b * L; xr = z + (size_t)rows * L;
    if (gm_vae_encode(m, x, labels, b, mu, lv) != 0) return -1;
    if (labels && !(lab = GM__VAE_CAST(int *, GENMOD_MALLOC((size_t)rows * sizeof(int)))))
        return gm_fail("gm_vae_iw_nll: out of memory");
    for (i = 0; i < b; i++)
        for (s = 0; s < k; s++) {
            double wt = 0;   /* log p(z) - log q(z|x): the 2pi terms cancel */
            for (j = 0; j < L; j++) {
                double e = gm_rng_normal(&m->rng), l = lv[(size_t)i * L + j];
                double zz = mu[(size_t)i * L + j] + exp(0.5 * l) * e;
                z[((size_t)i * k + s) * L + j] = (float)zz;
                wt += -0.5 * zz * zz + 0.5 * e * e + 0.5 * l;
            }
            lw[(size_t)i * k + s] = wt;
            memcpy(xr + ((size_t)i * k + s) * D, x + (size_t)i * D, (size_t)D * sizeof(float));
            if (lab) lab[i * k + s] = labels[i];
        }
    w.m = m; w.x = xr; w.z = z; w.labels = lab; w.rows = rows; w.lw = lw;
    rc = gm_run_chunks(m->graph, 1, gm__vae_iw_block, &w, "gm_vae_iw_nll");
    GENMOD_FREE(lab);
    return rc;
}

GMDEF int gm_vae_iw_nll(gm_vae *m, const float *x, const int *labels, int n, int k, double *nats, double *bpd,
                        float *nll) {
    int i0, b, i, s;
    double total = 0, *lw;
    if (gm__vae_in(m, x, labels, n, "gm_vae_iw_nll") != 0) return -1;
    if (k < 1) return gm_fail("gm_vae_iw_nll: k = %d, needs at least one sample", k);
    b = 2000 / k > 0 ? 2000 / k : 1;   /* about 2000 decoder rows per block of examples */
    lw = GM__VAE_CAST(double *, GENMOD_MALLOC((size_t)b * k * sizeof(double)));
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

GMDEF int gm_vae_save(const gm_vae *m, const char *path) {
    char arch[512], train[160];
    if (!m || !path) return gm_fail("gm_vae_save: NULL argument");
    gm__vae_config_text(&m->cfg, arch, sizeof arch);
    snprintf(train, sizeof train, "beta_kind=%d beta=%g start=%g steps=%ld ramp=%g", m->cfg.beta.kind, m->cfg.beta.beta,
             m->cfg.beta.start, m->cfg.beta.steps, m->cfg.beta.ramp);
    return gm__vae_save(path, "vae", arch, m->step, &m->params, &m->opt, &m->rng, m->graph, train, "gm_vae_save");
}

GMDEF int gm_vae_load(gm_vae *m, const char *path) {
    char arch[512];
    if (!m || !path) return gm_fail("gm_vae_load: NULL argument");
    gm__vae_config_text(&m->cfg, arch, sizeof arch);
    return gm__vae_load(path, "vae", arch, &m->step, &m->params, &m->opt, &m->rng, m->graph);
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
