/* genmod_ebm.h - v0.1 - energy-based models on top of genmod.h: restricted Boltzmann machines
   (Bernoulli-Bernoulli and Gaussian-Bernoulli; CD-k, persistent CD; exact and AIS log Z) and deep
   energy-based models (an MLP energy trained with short-run Langevin dynamics and a replay buffer).
   Single-header C library (stb style): the declarations are always visible, the implementation
   is compiled where GENMOD_EBM_IMPLEMENTATION is defined.

   USAGE
     The core's implementation goes in exactly one file, and so does this header's: the same
     file, or each its own (this implementation uses only genmod.h's public API).
       One file:
         #define GENMOD_IMPLEMENTATION
         #include "genmod.h"
         #define GENMOD_EBM_IMPLEMENTATION
         #include "genmod_ebm.h"
       Or its own file, linked with the one that implements the core:
         ebm_impl.c:    #define GENMOD_EBM_IMPLEMENTATION
                        #include "genmod_ebm.h"
         genmod_impl.c: #define GENMOD_IMPLEMENTATION
                        #include "genmod.h"
     Elsewhere just #include "genmod_ebm.h". Build: cc -O2 prog.c [ebm_impl.c genmod_impl.c]
     -lm -lpthread. With GENMOD_STATIC (every function private to its file) both must be in the
     same file. GENMOD_MALLOC / GENMOD_REALLOC / GENMOD_FREE: as in genmod.h.

   THE SHORTEST PROGRAM (an RBM on binary images, its likelihood by AIS)

         gm_rbm_config cfg = gm_rbm_default_config(784, 500);   // CD-1, momentum, weight decay
         gm_rbm r;
         if (gm_rbm_init(&r, &cfg) != 0) { puts(gm_last_error()); return 1; }
         gm_rbm_init_visible_bias(&r, train_x, n_train);         // log-odds of the pixel means
         for (...) gm_rbm_train_step(&r, batch, NULL, 100, NULL); // binary images, 0 or 1
         gm_rbm_ais_result a;
         gm_rbm_ais(&r, train_x, n_train, NULL, &a);              // log Z and its standard error
         double ll;  gm_rbm_log_likelihood(&r, test_x, n_test, a.log_z, &ll);   // nats per image
         gm_rbm_save(&r, "rbm.safetensors");
         gm_rbm_free(&r);

   EACH MODEL HAS (gm_rbm and gm_ebm; the contract every genmod family follows)
     _default_config    a plain struct of the recipe; arguments only for the data shape
     _init(m, &cfg)     validates (the message names the field), builds; on failure m is freed
     _free(m)           safe on a zeroed or failed model, and twice
     _train_step(m, x, labels, n, &stats)
                        one update on n examples of plain floats; both models are unconditional,
                        so labels must be NULL; stats may be NULL; a NaN update is refused (-1)
                        and the weights stay as they were
     _sample(m, labels, n, out)
                        n samples (labels NULL), any n, from fresh chains; variants with more knobs
                        are named calls beside it (gm_rbm_gibbs, gm_ebm_langevin)
     inference          gm_rbm_free_energy, _reconstruct, _log_likelihood; gm_ebm_energy: plain
                        arrays, any n
     _forward(g, m, x)  gm_ebm_forward: the energy emitted into your own gm_graph. An RBM is an
                        exact algorithm on float32 GEMMs (gm_sgemm) rather than a graph, so it has
                        no _forward and no graph (gm_rbm_free_energy is its forward pass)
     _save / _load      one safetensors file (weights, momentum or Adam state, step, random
                        streams, the persistent chains or the replay buffer) through gm_model_save /
                        gm_model_load; model "rbm" or "ebm" and the architecture in its metadata;
                        another model's or architecture's file is refused and nothing is touched
     errors             0 / -1, the reason in gm_last_error()

   RESTRICTED BOLTZMANN MACHINE (gm_rbm)
     V visible units v, H binary hidden units h, weights W stored as [H, V] (row j = the weights of
     hidden unit j; the layout of the PyTorch reference), biases bv [V], bh [H]:
       Bernoulli visible:  E(v, h) = -bv'v - bh'h - h'Wv,            v in {0, 1}^V
       Gaussian visible:   E(v, h) = |v - bv|^2 / 2 - bh'h - h'Wv,   v real (unit variance: feed
                           standardized data, gm_standardize_fit / _apply)
     free energy F(v) = -bv'v (or |v - bv|^2 / 2) - sum_j softplus(bh_j + W_j v); log p(v) = -F(v) - log Z.
     Training (Hinton's practical guide): positive statistics v (x) p(h|v); CD-k runs a chain
     v -> h (sampled) -> v ... k times from the data, its last visible step the probabilities
     p(v|h) (the mean for Gaussian units), negative statistics vk (x) p(h|vk); persistent CD
     (Tieleman 2008) keeps cfg.chains binary chains across updates instead, their hidden state h
     persistent, k sweeps h -> v -> h per update. Update: SGD with momentum (momentum_init for
     momentum_steps updates, then momentum), weight decay on W only, lr optionally decaying
     linearly to 0 over lr_decay_steps; k optionally growing from 1 over k_ramp_steps.
     Partition function: gm_rbm_log_z_exact sums over the 2^H hidden states (H <= 30, in double,
     split over the thread pool; seconds at H = 20 with V = 784); gm_rbm_ais runs annealed
     importance sampling (Salakhutdinov and Murray 2008) from a base-rate model (the log-odds of
     the data's means) and reports log Z with its standard error sd(w) / (sqrt(R) mean(w)).

   DEEP ENERGY-BASED MODEL (gm_ebm)
     E(x) an MLP (dim -> hidden x depth -> 1, gm_ebm_default_config), or for images
     (gm_ebm_conv_config(c, h, w)) a conv net: four convolutions of stride 2 (5x5 with c channels,
     then 3x3 with 2c, 4c, 4c; SiLU) and the MLP on their flattened output. Training (Du and
     Mordatch 2019, Nijkamp et al. 2019): negatives start from the replay buffer (a fraction
     cfg.reinit from uniform noise in [-cfg.init_range, cfg.init_range]), run cfg.langevin_steps of
       x <- x - step_size * clamp(dE/dx, grad_clip) + noise * N(0, I)   (dE/dx by the core's gm_grad)
     each step clamped to [x_min, x_max] when that range is set (images: [-1, 1]), and the loss is
     mean E(x+) - mean E(x-) + alpha (mean E(x+)^2 + mean E(x-)^2), the last term keeping the
     energies near zero (Adam without first moment; cfg.clip_norm bounds the weight gradient).
     With noise = sqrt(2 step_size) and no clamps the dynamics is the unadjusted Langevin
     algorithm, whose samples follow exp(-E) as the step goes to 0; short-run training usually
     takes a smaller noise. gm_langevin runs the same dynamics on any energy you write.

   LICENSE: MIT, at the end of the file.
*/
#ifndef GENMOD_EBM_H
#define GENMOD_EBM_H

#include "genmod.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================= */
/* Restricted Boltzmann machine                                                            */
/* ======================================================================================= */
enum { GM_RBM_BERNOULLI = 0, GM_RBM_GAUSSIAN };   /* visible units */
enum { GM_RBM_CD = 0, GM_RBM_PCD };               /* training method */

typedef struct gm_rbm_config {
    int visible, hidden;       /* V and H */
    int visible_type;          /* GM_RBM_BERNOULLI (0/1 data) or GM_RBM_GAUSSIAN (standardized data) */
    int method;                /* GM_RBM_CD (contrastive divergence) or GM_RBM_PCD (persistent chains) */
    int k;                     /* Gibbs sweeps per update: CD-k, or PCD's sweeps (1) */
    long k_ramp_steps;         /* > 0: the sweeps grow linearly from 1 to k over this many updates, as
                                  in Salakhutdinov and Murray's CD-25 (0: k from the start) */
    int chains;                /* PCD: persistent chains (100) */
    float lr;                  /* 0.1 for CD; 0.01 for PCD (gm_rbm_pcd_config) */
    long lr_decay_steps;       /* > 0: lr decays linearly to 0 over this many updates (0: constant) */
    float momentum_init;       /* momentum for the first momentum_steps updates (0.5) */
    long momentum_steps;       /* 3000 (5 epochs of 60,000 images in batches of 100) */
    float momentum;            /* afterwards (0.9) */
    float weight_decay;        /* L2 cost on W only (2e-4) */
    float init_std;            /* W ~ N(0, init_std^2) (0.01); biases 0 (see gm_rbm_init_visible_bias) */
    int batch;                 /* minibatch the examples use (100) */
    int sample_steps;          /* Gibbs sweeps of gm_rbm_sample from random states (1000) */
    uint64_t seed;             /* weights, Gibbs sampling */
} gm_rbm_config;

typedef struct gm_rbm {
    gm_rbm_config cfg;
    gm_params params;          /* "W" [H, V], "bv" [V], "bh" [H]; PCD: "chains" [chains, H] (buffer) */
    int w, bv, bh, chains;     /* view indices (chains -1 for CD) */
    gm_optim opt;              /* SGD with momentum */
    gm_rng rng;
    long step;                 /* updates taken (saved in checkpoints) */
    float *buf;                /* scratch */
    size_t buf_cap;
} gm_rbm;

typedef struct gm_rbm_stats {
    float recon_error;         /* sum_i (v_i - p(v_i | h))^2 per example, h sampled from p(h | v) */
    float free_energy;         /* F(v) of the batch's first example: a cheap indicator (one row) */
    float lr, momentum;        /* the update's settings */
    int k;                     /* the update's Gibbs sweeps */
} gm_rbm_stats;

typedef struct gm_rbm_ais_config {
    int runs;                  /* independent AIS chains (100) */
    int steps[3];              /* betas: steps[0] equal steps over 0..0.5, [1] over 0.5..0.9, [2] over 0.9..1 */
    float base_clip;           /* base-rate pixel means clipped to [c, 1 - c] (1e-3) */
    uint64_t seed;
} gm_rbm_ais_config;
typedef struct gm_rbm_ais_result {
    double log_z;              /* log Z_A + log mean_r w_r */
    double log_z_se;           /* sd(w) / (sqrt(R) mean(w)): the standard error of log Z (delta method) */
    double log_z_lo, log_z_hi; /* the paper's interval log(Z -/+ 3 s), s = sd(w)/sqrt(R); lo -inf when empty */
    double log_z_base;         /* log Z_A, exact */
    double ess;                /* (sum w)^2 / sum w^2: how many runs carry the estimate */
} gm_rbm_ais_result;

GMDEF gm_rbm_config gm_rbm_default_config(int visible, int hidden);  /* Bernoulli, CD-1 */
GMDEF gm_rbm_config gm_rbm_pcd_config(int visible, int hidden);      /* persistent CD, lr 0.01 */
GMDEF int  gm_rbm_init(gm_rbm *r, const gm_rbm_config *cfg);
GMDEF void gm_rbm_free(gm_rbm *r);
/* bv = log-odds of the data's means clipped to [1e-3, 1 - 1e-3] (Bernoulli) or the means (Gaussian);
   PCD chains restart from these base rates. */
GMDEF int  gm_rbm_init_visible_bias(gm_rbm *r, const float *x, int n);
GMDEF int  gm_rbm_train_step(gm_rbm *r, const float *x, const int *labels, int n, gm_rbm_stats *stats);

/* Conditionals: ph = p(h = 1 | v) (n x H); pv = the mean of v given h (n x V). */
GMDEF int  gm_rbm_hidden_probs(gm_rbm *r, const float *v, int n, float *ph);
GMDEF int  gm_rbm_visible_mean(gm_rbm *r, const float *h, int n, float *pv);
/* steps block-Gibbs sweeps v -> h -> v on n chains, v (n x V) updated in place (binary for
   Bernoulli units); mean (NULL or n x V) gets E[v | h] of the last sweep (the usual picture). */
GMDEF int  gm_rbm_gibbs(gm_rbm *r, float *v, int n, int steps, float *mean);
/* n samples from random states after cfg.sample_steps sweeps (binary for Bernoulli units). */
GMDEF int  gm_rbm_sample(gm_rbm *r, const int *labels, int n, float *out);
GMDEF int  gm_rbm_reconstruct(gm_rbm *r, const float *x, int n, float *out);  /* E[v | p(h|x)] */
GMDEF int  gm_rbm_free_energy(gm_rbm *r, const float *x, int n, double *F);   /* n values */
/* Mean log p(x) = mean(-F(x)) - log_z over n examples, nats. */
GMDEF int  gm_rbm_log_likelihood(gm_rbm *r, const float *x, int n, double log_z, double *ll);
/* Exact log Z by summing over the 2^H hidden states (H <= 30). */
GMDEF int  gm_rbm_log_z_exact(gm_rbm *r, double *log_z);
/* AIS estimate of log Z. base_x (n_base examples; NULL: the base model takes bv) sets the base
   model's visible biases; cfg NULL: gm_rbm_ais_default_config(). */
GMDEF gm_rbm_ais_config gm_rbm_ais_default_config(void);  /* 100 runs, 500 + 4,000 + 10,000 betas */
GMDEF int  gm_rbm_ais(gm_rbm *r, const float *base_x, int n_base, const gm_rbm_ais_config *cfg,
                      gm_rbm_ais_result *res);
/* Checkpoints: model "rbm", architecture "visible V hidden H units bernoulli|gaussian method cd|pcd chains C". */
GMDEF int  gm_rbm_save(const gm_rbm *r, const char *path);
GMDEF int  gm_rbm_load(gm_rbm *r, const char *path);

/* ======================================================================================= */
/* Langevin dynamics on any energy                                                         */
/* ======================================================================================= */
/* fn emits the energies (N) of x (N, dim) into g. */
typedef gm_tensor *(*gm_energy_fn)(gm_graph *g, gm_tensor *x, void *ctx);
/* steps of x <- x - step_size * dE/dx + noise * N(0, I) on n points of dim floats, in place, with
   the noise from rng; the graph is reset before every step. step_size must be finite and > 0,
   noise finite and >= 0. grad_clip > 0 clamps every component of dE/dx to [-clip, clip]. */
GMDEF int gm_langevin(gm_graph *g, gm_energy_fn fn, void *ctx, float *x, int n, int dim, int steps,
                      float step_size, float noise, float grad_clip, gm_rng *rng);

/* ======================================================================================= */
/* Deep energy-based model                                                                 */
/* ======================================================================================= */
#define GM_EBM_MAX_DEPTH 8
#define GM_EBM_CONVS 4
typedef struct gm_ebm_config {
    int dim;                   /* data dimension (for images: image_c * image_h * image_w) */
    int image_c, image_h, image_w;  /* all > 0: the conv energy on images of this shape; 0: the MLP */
    int channels;              /* conv energy: widths c, 2c, 4c, 4c of its four convolutions (16) */
    int hidden, depth;         /* MLP width and hidden layers (128, 3) */
    int act;                   /* hidden activation, GM_ACT_* (GM_ACT_SILU: a smooth energy) */
    float lr, beta1, beta2;    /* Adam (3e-3, 0.0, 0.999: no first moment, as Du and Mordatch) */
    float clip_norm;           /* > 0: the weight gradient's global L2 norm is clipped to this (0) */
    float x_min, x_max;        /* x_min < x_max: every Langevin step clamps x to [x_min, x_max] (the
                                  data's range; 0, 0: no clamp) */
    float alpha;               /* weight of the energy-magnitude term (0.1) */
    int langevin_steps;        /* per training step (40) */
    float step_size;           /* Langevin step on dE/dx (0.01) */
    float noise;               /* Langevin noise std (0.005) */
    float grad_clip;           /* clamp dE/dx components (0: none) (0) */
    int buffer_size;           /* replay buffer, points (10000) */
    float reinit;              /* fraction of negatives started from noise (0.05) */
    float init_range;          /* noise starts uniform in [-r, r] per coordinate (4) */
    int sample_steps;          /* Langevin steps of gm_ebm_sample from noise (200) */
    int batch;                 /* minibatch the examples use (256) */
    uint64_t seed;
} gm_ebm_config;

typedef struct gm_ebm {
    gm_ebm_config cfg;
    gm_params params;          /* "l0.weight", ... the MLP (after "c0.weight", ... the convolutions
                                  of the conv energy); "buffer" [buffer_size, dim] (a buffer) */
    gm_linear layers[GM_EBM_MAX_DEPTH + 1];
    gm_conv convs[GM_EBM_CONVS];
    int nlayers, nconvs, buffer;  /* buffer: its view */
    long buffer_fill;          /* points pushed so far (the buffer holds min(fill, size)) */
    gm_optim opt;
    gm_graph *graph;           /* used by every call on this model (one thread at a time) */
    gm_rng rng;
    long step;
    float *buf;
    size_t buf_cap;
} gm_ebm;

typedef struct gm_ebm_stats {
    float loss;                /* the objective minimized */
    float e_pos, e_neg;        /* mean energies of the data and of the Langevin samples */
    float grad_norm;
} gm_ebm_stats;

GMDEF gm_ebm_config gm_ebm_default_config(int dim);                   /* the MLP energy */
/* The conv energy for images in [-1, 1] (28 x 28 digits: 16 channels, 60 Langevin steps of size 10
   with dE/dx clamped to 0.03 and noise 0.005, Adam 1e-4, a buffer of 8,192 images). */
GMDEF gm_ebm_config gm_ebm_conv_config(int c, int h, int w);
GMDEF int  gm_ebm_init(gm_ebm *m, const gm_ebm_config *cfg);
GMDEF void gm_ebm_free(gm_ebm *m);
GMDEF int  gm_ebm_train_step(gm_ebm *m, const float *x, const int *labels, int n, gm_ebm_stats *stats);
GMDEF gm_tensor *gm_ebm_forward(gm_graph *g, gm_ebm *m, gm_tensor *x);      /* energies (N) */
GMDEF int  gm_ebm_energy(gm_ebm *m, const float *x, int n, float *e);      /* n values */
/* Langevin on the model's energy from x (in place) with the model's step size, noise, clip. */
GMDEF int  gm_ebm_langevin(gm_ebm *m, float *x, int n, int steps);
/* n samples: cfg.sample_steps of Langevin from uniform noise. */
GMDEF int  gm_ebm_sample(gm_ebm *m, const int *labels, int n, float *out);
/* n samples: cfg.langevin_steps of Langevin from random points of the replay buffer. */
GMDEF int  gm_ebm_sample_buffer(gm_ebm *m, int n, float *out);
/* Checkpoints: model "ebm", architecture "dim D [conv CxHxW channels K] hidden H depth L act A buffer B". */
GMDEF int  gm_ebm_save(const gm_ebm *m, const char *path);
GMDEF int  gm_ebm_load(gm_ebm *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* GENMOD_EBM_H */

/* ======================================================================================= */
/* Implementation                                                                          */
/* ======================================================================================= */
#ifdef GENMOD_EBM_IMPLEMENTATION
#ifndef GENMOD_EBM_IMPLEMENTATION_INCLUDED
#define GENMOD_EBM_IMPLEMENTATION_INCLUDED

#if defined(GENMOD_STATIC) && !defined(GENMOD_IMPLEMENTATION_INCLUDED)
#error "genmod_ebm.h: with GENMOD_STATIC, define GENMOD_IMPLEMENTATION and include genmod.h in this file first"
#endif

#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(GENMOD_MALLOC) != defined(GENMOD_FREE) || defined(GENMOD_MALLOC) != defined(GENMOD_REALLOC)
#error "genmod_ebm.h: define GENMOD_MALLOC, GENMOD_REALLOC and GENMOD_FREE together, or none of them"
#endif
#ifndef GENMOD_MALLOC
#define GENMOD_MALLOC(sz) malloc(sz)
#define GENMOD_REALLOC(p, sz) realloc(p, sz)
#define GENMOD_FREE(p) free(p)
#endif
#ifdef __cplusplus
#define GM__EBM_CAST(type, x) static_cast<type>(x)
#define GM__EBM_UNCONST(type, x) const_cast<type>(x)
#else
#define GM__EBM_CAST(type, x) ((type)(x))
#define GM__EBM_UNCONST(type, x) ((type)(x))
#endif
#define GM__EBM_LOG2PI 1.8378770664093453

/* ---------------------------------------------------------------------------------------- */
/* Small helpers                                                                            */
/* ---------------------------------------------------------------------------------------- */
static float gm__ebm_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
static double gm__ebm_softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static float gm__ebm_bern(gm_rng *r, float p) { return gm_rng_uniform(r) < p ? 1.0f : 0.0f; }

/* log(exp(a) + exp(b)) for running log-sum-exps that start at -inf */
static double gm__ebm_lse2(double a, double b) {
    double m = a > b ? a : b;
    if (m == -HUGE_VAL) return m;
    return m + log(exp(a - m) + exp(b - m));
}

/* ---------------------------------------------------------------------------------------- */
/* RBM: configuration and construction                                                      */
/* ---------------------------------------------------------------------------------------- */
GMDEF gm_rbm_config gm_rbm_default_config(int visible, int hidden) {
    gm_rbm_config c;
    memset(&c, 0, sizeof c);
    c.visible = visible; c.hidden = hidden;
    c.visible_type = GM_RBM_BERNOULLI;
    c.method = GM_RBM_CD;
    c.k = 1; c.chains = 100;
    c.lr = 0.1f; c.lr_decay_steps = 0;
    c.momentum_init = 0.5f; c.momentum_steps = 3000; c.momentum = 0.9f;
    c.weight_decay = 2e-4f; c.init_std = 0.01f;
    c.batch = 100; c.sample_steps = 1000; c.seed = 1;
    return c;
}

GMDEF gm_rbm_config gm_rbm_pcd_config(int visible, int hidden) {
    gm_rbm_config c = gm_rbm_default_config(visible, hidden);
    c.method = GM_RBM_PCD;
    c.lr = 0.01f;
    return c;
}

static int gm__rbm_check_config(const gm_rbm_config *c) {
    if (c->visible < 1) return gm_fail("gm_rbm_init: cfg.visible = %d (need >= 1)", c->visible);
    if (c->hidden < 1) return gm_fail("gm_rbm_init: cfg.hidden = %d (need >= 1)", c->hidden);
    if (c->visible_type != GM_RBM_BERNOULLI && c->visible_type != GM_RBM_GAUSSIAN)
        return gm_fail("gm_rbm_init: cfg.visible_type = %d (GM_RBM_BERNOULLI or GM_RBM_GAUSSIAN)", c->visible_type);
    if (c->method != GM_RBM_CD && c->method != GM_RBM_PCD)
        return gm_fail("gm_rbm_init: cfg.method = %d (GM_RBM_CD or GM_RBM_PCD)", c->method);
    if (c->k < 1) return gm_fail("gm_rbm_init: cfg.k = %d (need >= 1)", c->k);
    if (c->method == GM_RBM_PCD && c->chains < 1) return gm_fail("gm_rbm_init: cfg.chains = %d (need >= 1)", c->chains);
    if (!(c->lr > 0) || !isfinite(c->lr)) return gm_fail("gm_rbm_init: cfg.lr = %g (need > 0)", (double)c->lr);
    if (c->lr_decay_steps < 0) return gm_fail("gm_rbm_init: cfg.lr_decay_steps = %ld (need >= 0)", c->lr_decay_steps);
    if (c->k_ramp_steps < 0) return gm_fail("gm_rbm_init: cfg.k_ramp_steps = %ld (need >= 0)", c->k_ramp_steps);
    if (!(c->momentum >= 0 && c->momentum < 1) || !(c->momentum_init >= 0 && c->momentum_init < 1))
        return gm_fail("gm_rbm_init: cfg.momentum / cfg.momentum_init must be in [0, 1)");
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return gm_fail("gm_rbm_init: cfg.weight_decay = %g (need >= 0)", (double)c->weight_decay);
    if (!(c->init_std >= 0) || !isfinite(c->init_std)) return gm_fail("gm_rbm_init: cfg.init_std = %g (need >= 0)", (double)c->init_std);
    if (c->batch < 1) return gm_fail("gm_rbm_init: cfg.batch = %d (need >= 1)", c->batch);
    if (c->sample_steps < 1) return gm_fail("gm_rbm_init: cfg.sample_steps = %d (need >= 1)", c->sample_steps);
    return 0;
}

static float *gm__rbm_scratch(gm_rbm *r, size_t n) {
    if (gm_floats_reserve(&r->buf, &r->buf_cap, n) != 0) return NULL;
    return r->buf;
}

/* PCD chains: v from the visible biases' base rates (uniform for bv = 0), then h ~ p(h | v). */
static int gm__rbm_restart_chains(gm_rbm *r);

GMDEF int gm_rbm_init(gm_rbm *r, const gm_rbm_config *cfg) {
    int shape[2];
    if (!r || !cfg) return gm_fail("gm_rbm_init: NULL argument");
    memset(r, 0, sizeof *r);
    if (gm__rbm_check_config(cfg) != 0) return -1;
    r->cfg = *cfg;
    r->chains = -1;
    gm_rng_seed(&r->rng, cfg->seed);
    shape[0] = cfg->hidden; shape[1] = cfg->visible;
    if ((r->w = gm_params_add(&r->params, "W", 2, shape)) < 0) goto fail;
    if ((r->bv = gm_params_add(&r->params, "bv", 1, &cfg->visible)) < 0) goto fail;
    if ((r->bh = gm_params_add(&r->params, "bh", 1, &cfg->hidden)) < 0) goto fail;
    if (cfg->method == GM_RBM_PCD) {
        shape[0] = cfg->chains; shape[1] = cfg->hidden;
        if ((r->chains = gm_params_add(&r->params, "chains", 2, shape)) < 0) goto fail;
        gm_params_mark_buffer(&r->params, r->chains);
    }
    gm_init_normal(&r->rng, gm_params_data(&r->params, r->w), (size_t)cfg->hidden * cfg->visible, 0.0f, cfg->init_std);
    r->opt = gm_sgd(cfg->lr, cfg->momentum_init);
    if (cfg->method == GM_RBM_PCD && gm__rbm_restart_chains(r) != 0) goto fail;
    return 0;
fail:
    gm_rbm_free(r);
    return -1;
}

GMDEF void gm_rbm_free(gm_rbm *r) {
    if (!r) return;
    gm_params_free(&r->params);
    gm_optim_free(&r->opt);
    GENMOD_FREE(r->buf);
    memset(r, 0, sizeof *r);
}

static int gm__rbm_ready(const gm_rbm *r, const char *who) {
    if (!r || !r->params.data) return gm_fail("%s: RBM not initialized", who);
    return 0;
}

/* Data the model can take: finite values, and 0 or 1 for Bernoulli units (an image in [0,1]
   must be binarized first: gm_binarize, or a threshold). */
static int gm__rbm_check_x(const gm_rbm *r, const float *x, int n, const char *who) {
    size_t i, count;
    if (gm__rbm_ready(r, who) != 0) return -1;
    if (!x || n <= 0) return gm_fail("%s: need data and n > 0 (n = %d)", who, n);
    count = (size_t)n * r->cfg.visible;
    for (i = 0; i < count; i++) {
        if (!isfinite(x[i])) return gm_fail("%s: value %zu (example %zu) is not finite", who, i, i / r->cfg.visible);
        if (r->cfg.visible_type == GM_RBM_BERNOULLI && x[i] != 0.0f && x[i] != 1.0f)
            return gm_fail("%s: example %zu, unit %zu is %g: a Bernoulli RBM takes binary data (0 or 1); "
                           "binarize it first", who, i / r->cfg.visible, i % r->cfg.visible, (double)x[i]);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* RBM: conditionals (float32 GEMMs)                                                        */
/* ---------------------------------------------------------------------------------------- */
/* ph = sigmoid(beta (v W' + bh)), n x H */
static void gm__rbm_hid(gm_rbm *r, const float *v, int n, float beta, float *ph, int probs) {
    int V = r->cfg.visible, H = r->cfg.hidden, i, j;
    const float *W = gm_params_data(&r->params, r->w), *bh = gm_params_data(&r->params, r->bh);
    gm_sgemm(0, 1, n, H, V, 1.0f, v, V, W, V, 0.0f, ph, H);
    for (i = 0; i < n; i++)
        for (j = 0; j < H; j++) {
            float *p = ph + (size_t)i * H + j;
            *p += bh[j];
            if (probs) *p = gm__ebm_sigmoid(beta * *p);
        }
}

/* pv = E[v | h]: sigmoid(h W + bv) or h W + bv, n x V */
static void gm__rbm_vis(gm_rbm *r, const float *h, int n, float *pv) {
    int V = r->cfg.visible, H = r->cfg.hidden, i, j;
    const float *W = gm_params_data(&r->params, r->w), *bv = gm_params_data(&r->params, r->bv);
    gm_sgemm(0, 0, n, V, H, 1.0f, h, H, W, V, 0.0f, pv, V);
    for (i = 0; i < n; i++)
        for (j = 0; j < V; j++) {
            float *p = pv + (size_t)i * V + j;
            *p += bv[j];
            if (r->cfg.visible_type == GM_RBM_BERNOULLI) *p = gm__ebm_sigmoid(*p);
        }
}

static void gm__rbm_sample_bern(gm_rng *rng, const float *p, float *out, size_t count) {
    size_t i;
    for (i = 0; i < count; i++) out[i] = gm__ebm_bern(rng, p[i]);
}

/* a visible sample from its mean: Bernoulli draws, or unit-variance Gaussian noise */
static void gm__rbm_sample_vis(gm_rbm *r, const float *pv, float *v, size_t count) {
    size_t i;
    if (r->cfg.visible_type == GM_RBM_BERNOULLI) gm__rbm_sample_bern(&r->rng, pv, v, count);
    else for (i = 0; i < count; i++) v[i] = pv[i] + gm_rng_normal(&r->rng);
}

/* v drawn from the visible biases alone (uniform bits when bv = 0) */
static void gm__rbm_random_vis(gm_rbm *r, float *v, int n) {
    int V = r->cfg.visible, i, j;
    const float *bv = gm_params_data(&r->params, r->bv);
    for (i = 0; i < n; i++)
        for (j = 0; j < V; j++)
            v[(size_t)i * V + j] = r->cfg.visible_type == GM_RBM_BERNOULLI
                ? gm__ebm_bern(&r->rng, gm__ebm_sigmoid(bv[j])) : bv[j] + gm_rng_normal(&r->rng);
}

static int gm__rbm_restart_chains(gm_rbm *r) {
    int C = r->cfg.chains, V = r->cfg.visible, H = r->cfg.hidden;
    float *v, *ph;
    if (r->chains < 0) return 0;
    if (!(v = gm__rbm_scratch(r, (size_t)C * (V + H)))) return -1;
    ph = v + (size_t)C * V;
    gm__rbm_random_vis(r, v, C);
    gm__rbm_hid(r, v, C, 1.0f, ph, 1);
    gm__rbm_sample_bern(&r->rng, ph, gm_params_data(&r->params, r->chains), (size_t)C * H);
    return 0;
}

GMDEF int gm_rbm_init_visible_bias(gm_rbm *r, const float *x, int n) {
    int V, i, j;
    float *bv;
    if (gm__rbm_check_x(r, x, n, "gm_rbm_init_visible_bias") != 0) return -1;
    V = r->cfg.visible;
    bv = gm_params_data(&r->params, r->bv);
    for (j = 0; j < V; j++) {
        double s = 0;
        for (i = 0; i < n; i++) s += x[(size_t)i * V + j];
        s /= n;
        if (r->cfg.visible_type == GM_RBM_BERNOULLI) {
            if (s < 1e-3) s = 1e-3;
            if (s > 1 - 1e-3) s = 1 - 1e-3;
            s = log(s / (1 - s));
        }
        bv[j] = (float)s;
    }
    return gm__rbm_restart_chains(r);
}

GMDEF int gm_rbm_hidden_probs(gm_rbm *r, const float *v, int n, float *ph) {
    if (gm__rbm_check_x(r, v, n, "gm_rbm_hidden_probs") != 0) return -1;
    if (!ph) return gm_fail("gm_rbm_hidden_probs: out is NULL");
    gm__rbm_hid(r, v, n, 1.0f, ph, 1);
    return 0;
}

GMDEF int gm_rbm_visible_mean(gm_rbm *r, const float *h, int n, float *pv) {
    if (gm__rbm_ready(r, "gm_rbm_visible_mean") != 0) return -1;
    if (!h || !pv || n <= 0) return gm_fail("gm_rbm_visible_mean: need h, out and n > 0");
    gm__rbm_vis(r, h, n, pv);
    return 0;
}

GMDEF int gm_rbm_reconstruct(gm_rbm *r, const float *x, int n, float *out) {
    float *ph;
    if (gm__rbm_check_x(r, x, n, "gm_rbm_reconstruct") != 0) return -1;
    if (!out) return gm_fail("gm_rbm_reconstruct: out is NULL");
    if (!(ph = gm__rbm_scratch(r, (size_t)n * r->cfg.hidden))) return -1;
    gm__rbm_hid(r, x, n, 1.0f, ph, 1);
    gm__rbm_vis(r, ph, n, out);
    return 0;
}

GMDEF int gm_rbm_gibbs(gm_rbm *r, float *v, int n, int steps, float *mean) {
    int V, H, s;
    float *ph, *pv;
    if (gm__rbm_check_x(r, v, n, "gm_rbm_gibbs") != 0) return -1;
    if (steps < 1) return gm_fail("gm_rbm_gibbs: steps = %d (need >= 1)", steps);
    V = r->cfg.visible; H = r->cfg.hidden;
    if (!(ph = gm__rbm_scratch(r, (size_t)n * (H + V)))) return -1;
    pv = ph + (size_t)n * H;
    for (s = 0; s < steps; s++) {
        gm__rbm_hid(r, v, n, 1.0f, ph, 1);
        gm__rbm_sample_bern(&r->rng, ph, ph, (size_t)n * H);
        gm__rbm_vis(r, ph, n, pv);
        gm__rbm_sample_vis(r, pv, v, (size_t)n * V);
    }
    if (mean) memcpy(mean, pv, (size_t)n * V * sizeof(float));
    return 0;
}

GMDEF int gm_rbm_sample(gm_rbm *r, const int *labels, int n, float *out) {
    if (gm__rbm_ready(r, "gm_rbm_sample") != 0) return -1;
    if (labels) return gm_fail("gm_rbm_sample: an RBM is unconditional; labels must be NULL");
    if (!out || n <= 0) return gm_fail("gm_rbm_sample: need out and n > 0 (n = %d)", n);
    gm__rbm_random_vis(r, out, n);
    return gm_rbm_gibbs(r, out, n, r->cfg.sample_steps, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* RBM: training                                                                            */
/* ---------------------------------------------------------------------------------------- */
/* The gradient of the negative log-likelihood's estimate: -(<v h>_data - <v h>_model), with the
   statistics v0 (x) ph0 over n and vk (x) phk over m; weight decay on W. */
static void gm__rbm_grads(gm_rbm *r, const float *x, const float *ph0, int n, const float *vk,
                          const float *phk, int m) {
    int V = r->cfg.visible, H = r->cfg.hidden, i, j;
    float *gW = gm_params_grad(&r->params, r->w), *gbv = gm_params_grad(&r->params, r->bv);
    float *gbh = gm_params_grad(&r->params, r->bh);
    const float *W = gm_params_data(&r->params, r->w);
    size_t k;
    gm_sgemm(1, 0, H, V, n, -1.0f / n, ph0, H, x, V, 0.0f, gW, V);
    gm_sgemm(1, 0, H, V, m, 1.0f / m, phk, H, vk, V, 1.0f, gW, V);
    for (k = 0; k < (size_t)H * V; k++) gW[k] += r->cfg.weight_decay * W[k];
    for (j = 0; j < V; j++) {
        double s = 0, t = 0;
        for (i = 0; i < n; i++) s += x[(size_t)i * V + j];
        for (i = 0; i < m; i++) t += vk[(size_t)i * V + j];
        gbv[j] = (float)(t / m - s / n);
    }
    for (j = 0; j < H; j++) {
        double s = 0, t = 0;
        for (i = 0; i < n; i++) s += ph0[(size_t)i * H + j];
        for (i = 0; i < m; i++) t += phk[(size_t)i * H + j];
        gbh[j] = (float)(t / m - s / n);
    }
}

static double gm__rbm_sq_err(const float *x, const float *pv, size_t count) {
    double e = 0;
    size_t i;
    for (i = 0; i < count; i++) e += (double)(x[i] - pv[i]) * (x[i] - pv[i]);
    return e;
}

/* CD-k from the data or k persistent sweeps: leaves the negative statistics in vk (m x V) and
   phk (m x H) and the reconstruction error of the first half-step in *err. hs: m x H scratch
   (for PCD the chains' new hidden state, written back only once the update is accepted). */
static int gm__rbm_negative(gm_rbm *r, const float *x, const float *ph0, int n, int k, float *hs, float *vk,
                            float *phk, double *err) {
    int V = r->cfg.visible, H = r->cfg.hidden, s, m;
    int pcd = r->cfg.method == GM_RBM_PCD;
    m = pcd ? r->cfg.chains : n;
    /* the reconstruction error: v -> h (sampled) -> E[v | h] */
    gm__rbm_sample_bern(&r->rng, ph0, hs, (size_t)n * H);
    gm__rbm_vis(r, hs, n, vk);
    *err = gm__rbm_sq_err(x, vk, (size_t)n * V) / n;
    if (pcd) memcpy(hs, gm_params_data(&r->params, r->chains), (size_t)m * H * sizeof(float));
    for (s = 0; s < k; s++) {
        if (pcd || s > 0) gm__rbm_vis(r, hs, m, vk);
        if (pcd || s + 1 < k) gm__rbm_sample_vis(r, vk, vk, (size_t)m * V);
        gm__rbm_hid(r, vk, m, 1.0f, phk, 1);
        if (pcd || s + 1 < k) gm__rbm_sample_bern(&r->rng, phk, hs, (size_t)m * H);
    }
    return m;
}

static int gm__rbm_grads_finite(const gm_rbm *r) {
    size_t i;
    for (i = 0; i < r->params.count; i++)
        if (!isfinite(r->params.grad[i])) return 0;
    return 1;
}

/* the sweeps of this update: k, or on the ramp 1 + (k - 1) step / k_ramp_steps rounded down */
static int gm__rbm_sweeps(const gm_rbm *r) {
    const gm_rbm_config *c = &r->cfg;
    if (c->k_ramp_steps <= 0 || r->step >= c->k_ramp_steps) return c->k;
    return 1 + (int)((double)(c->k - 1) * r->step / c->k_ramp_steps);
}

GMDEF int gm_rbm_train_step(gm_rbm *r, const float *x, const int *labels, int n, gm_rbm_stats *stats) {
    int V, H, mx, m, k;
    float *ph0, *hs, *vk, *phk;
    double err;
    float lr;
    if (gm__rbm_check_x(r, x, n, "gm_rbm_train_step") != 0) return -1;
    if (labels) return gm_fail("gm_rbm_train_step: an RBM is unconditional; labels must be NULL");
    V = r->cfg.visible; H = r->cfg.hidden;
    mx = r->cfg.method == GM_RBM_PCD && r->cfg.chains > n ? r->cfg.chains : n;
    if (!(ph0 = gm__rbm_scratch(r, (size_t)n * H + (size_t)mx * (2 * H + V)))) return -1;
    hs = ph0 + (size_t)n * H; vk = hs + (size_t)mx * H; phk = vk + (size_t)mx * V;
    gm__rbm_hid(r, x, n, 1.0f, ph0, 1);
    k = gm__rbm_sweeps(r);
    m = gm__rbm_negative(r, x, ph0, n, k, hs, vk, phk, &err);
    gm__rbm_grads(r, x, ph0, n, vk, phk, m);
    if (!gm__rbm_grads_finite(r)) {
        gm_params_zero_grad(&r->params);
        return gm_fail("gm_rbm_train_step: the update is not finite (learning rate too large?); weights unchanged");
    }
    lr = r->cfg.lr;
    if (r->cfg.lr_decay_steps > 0)
        lr *= r->step >= r->cfg.lr_decay_steps ? 0.0f : 1.0f - (float)r->step / (float)r->cfg.lr_decay_steps;
    r->opt.lr = lr;
    r->opt.momentum = r->step < r->cfg.momentum_steps ? r->cfg.momentum_init : r->cfg.momentum;
    if (gm_optim_step(&r->opt, &r->params) != 0) return -1;
    if (r->chains >= 0) memcpy(gm_params_data(&r->params, r->chains), hs, (size_t)m * H * sizeof(float));
    r->step++;
    if (stats) {
        double F = 0;
        stats->recon_error = (float)err;
        stats->lr = lr;
        stats->momentum = r->opt.momentum;
        stats->k = k;
        stats->free_energy = 0;
        if (gm_rbm_free_energy(r, x, 1, &F) == 0) stats->free_energy = (float)F;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* RBM: free energy, likelihood, exact log Z                                                */
/* ---------------------------------------------------------------------------------------- */
GMDEF int gm_rbm_free_energy(gm_rbm *r, const float *x, int n, double *F) {
    int V, H, i, j, start, cnt;
    float *pre;
    const float *bv;
    if (gm__rbm_check_x(r, x, n, "gm_rbm_free_energy") != 0) return -1;
    if (!F) return gm_fail("gm_rbm_free_energy: out is NULL");
    V = r->cfg.visible; H = r->cfg.hidden;
    bv = gm_params_data(&r->params, r->bv);
    if (!(pre = gm__rbm_scratch(r, (size_t)GM_CHUNK * H))) return -1;
    for (start = 0; start < n; start += GM_CHUNK) {
        cnt = n - start < GM_CHUNK ? n - start : GM_CHUNK;
        gm__rbm_hid(r, x + (size_t)start * V, cnt, 1.0f, pre, 0);
        for (i = 0; i < cnt; i++) {
            const float *v = x + (size_t)(start + i) * V;
            double f = 0;
            for (j = 0; j < H; j++) f -= gm__ebm_softplus(pre[(size_t)i * H + j]);
            for (j = 0; j < V; j++)
                f += r->cfg.visible_type == GM_RBM_BERNOULLI ? -(double)bv[j] * v[j]
                                                            : 0.5 * ((double)v[j] - bv[j]) * ((double)v[j] - bv[j]);
            F[start + i] = f;
        }
    }
    return 0;
}

GMDEF int gm_rbm_log_likelihood(gm_rbm *r, const float *x, int n, double log_z, double *ll) {
    double *F, s = 0;
    int i;
    if (!ll) return gm_fail("gm_rbm_log_likelihood: out is NULL");
    if (gm__rbm_check_x(r, x, n, "gm_rbm_log_likelihood") != 0) return -1;
    F = GM__EBM_CAST(double *, GENMOD_MALLOC((size_t)n * sizeof(double)));
    if (!F) return gm_fail("gm_rbm_log_likelihood: out of memory");
    if (gm_rbm_free_energy(r, x, n, F) != 0) { GENMOD_FREE(F); return -1; }
    for (i = 0; i < n; i++) s -= F[i];
    GENMOD_FREE(F);
    *ll = s / n - log_z;
    return 0;
}

/* One task of the enumeration: the 2^low hidden states whose top bits are `task`, visited in
   Gray-code order so that each state costs one row update of a = W'h. */
typedef struct gm__rbm_enum {
    const gm_rbm *r;
    int low;
    double *part;      /* per task: its log-sum */
} gm__rbm_enum;

static double gm__rbm_enum_term(const gm_rbm *r, const double *a, double bhh) {
    int V = r->cfg.visible, i;
    const float *bv = r->params.data + r->params.views[r->bv].offset;
    double s = bhh;
    for (i = 0; i < V; i++)
        s += r->cfg.visible_type == GM_RBM_BERNOULLI ? gm__ebm_softplus(bv[i] + a[i])
                                                     : 0.5 * ((bv[i] + a[i]) * (bv[i] + a[i]) - (double)bv[i] * bv[i]);
    return s;
}

static void gm__rbm_enum_task(void *ctx, int task) {
    gm__rbm_enum *e = GM__EBM_CAST(gm__rbm_enum *, ctx);
    const gm_rbm *r = e->r;
    int V = r->cfg.visible, H = r->cfg.hidden, j, i;
    const float *W = r->params.data + r->params.views[r->w].offset;
    const float *bh = r->params.data + r->params.views[r->bh].offset;
    double *a = GM__EBM_CAST(double *, GENMOD_MALLOC((size_t)V * sizeof(double)));
    double bhh = 0, acc = -HUGE_VAL;
    unsigned long g = 0, c, count = 1ul << e->low;
    if (!a) { e->part[task] = NAN; return; }
    for (i = 0; i < V; i++) a[i] = 0;
    for (j = e->low; j < H; j++)      /* the fixed top bits */
        if ((task >> (j - e->low)) & 1) {
            bhh += bh[j];
            for (i = 0; i < V; i++) a[i] += W[(size_t)j * V + i];
        }
    acc = gm__rbm_enum_term(r, a, bhh);
    for (c = 1; c < count; c++) {
        unsigned long ng = c ^ (c >> 1), flip = ng ^ g;
        double sgn;
        j = 0;
        while (!((flip >> j) & 1ul)) j++;
        sgn = (ng >> j) & 1ul ? 1.0 : -1.0;
        bhh += sgn * bh[j];
        for (i = 0; i < V; i++) a[i] += sgn * W[(size_t)j * V + i];
        g = ng;
        acc = gm__ebm_lse2(acc, gm__rbm_enum_term(r, a, bhh));
    }
    e->part[task] = acc;
    GENMOD_FREE(a);
}

GMDEF int gm_rbm_log_z_exact(gm_rbm *r, double *log_z) {
    gm__rbm_enum e;
    int H, top, t;
    double s = -HUGE_VAL;
    if (gm__rbm_ready(r, "gm_rbm_log_z_exact") != 0) return -1;
    if (!log_z) return gm_fail("gm_rbm_log_z_exact: out is NULL");
    H = r->cfg.hidden;
    if (H > 30) return gm_fail("gm_rbm_log_z_exact: %d hidden units: 2^%d states are too many (at most 30; use gm_rbm_ais)", H, H);
    top = H < 6 ? H : 6;   /* 64 tasks: work for every thread, bit-identical for any count */
    e.r = r; e.low = H - top;
    e.part = GM__EBM_CAST(double *, GENMOD_MALLOC(((size_t)1 << top) * sizeof(double)));
    if (!e.part) return gm_fail("gm_rbm_log_z_exact: out of memory");
    gm_parallel_for(1 << top, gm__rbm_enum_task, &e);
    for (t = 0; t < (1 << top); t++) s = gm__ebm_lse2(s, e.part[t]);
    GENMOD_FREE(e.part);
    if (!isfinite(s)) return gm_fail("gm_rbm_log_z_exact: out of memory or a non-finite sum");
    if (r->cfg.visible_type == GM_RBM_GAUSSIAN) s += 0.5 * r->cfg.visible * GM__EBM_LOG2PI;
    *log_z = s;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* RBM: annealed importance sampling                                                        */
/* ---------------------------------------------------------------------------------------- */
GMDEF gm_rbm_ais_config gm_rbm_ais_default_config(void) {
    gm_rbm_ais_config c;
    c.runs = 100;
    c.steps[0] = 500; c.steps[1] = 4000; c.steps[2] = 10000;
    c.base_clip = 1e-3f;
    c.seed = 1;
    return c;
}

/* Intermediate model at beta: p*_beta(v) = exp((1 - beta) A(v) + beta B(v)) prod_j (1 + exp(beta x_j)),
   x = W v + bh, A and B the base and target models' visible terms; hidden units summed out. One
   task per run, each with its own random stream, so the result does not depend on the threads. */
typedef struct gm__rbm_ais {
    const gm_rbm *r;
    const double *bA;    /* base visible biases (means for Gaussian units) */
    float *v, *x;        /* runs x V states, runs x H pre-activations (then hidden samples) */
    double *logw;
    gm_rng *rngs;
    double b0, b1;       /* the step's betas: log w += log p*_b1(v) - log p*_b0(v), then T_b1 */
    double vis_const;    /* Gaussian: (|bv|^2 - |bA|^2) / 2 */
} gm__rbm_ais;

static void gm__rbm_ais_weight_task(void *ctx, int run) {
    gm__rbm_ais *a = GM__EBM_CAST(gm__rbm_ais *, ctx);
    const gm_rbm *r = a->r;
    int V = r->cfg.visible, H = r->cfg.hidden, i, j;
    const float *bv = r->params.data + r->params.views[r->bv].offset;
    const float *v = a->v + (size_t)run * V;
    float *x = a->x + (size_t)run * H;
    double d = 0, db = a->b1 - a->b0;
    for (i = 0; i < V; i++) d += (bv[i] - a->bA[i]) * (double)v[i];
    d = db * (d - a->vis_const);
    for (j = 0; j < H; j++) d += gm__ebm_softplus(a->b1 * x[j]) - gm__ebm_softplus(a->b0 * x[j]);
    a->logw[run] += d;
    for (j = 0; j < H; j++) x[j] = gm__ebm_bern(&a->rngs[run], gm__ebm_sigmoid((float)(a->b1 * x[j])));
}

/* v from the intermediate model at b1 given h: its pre-activation (W'h + bv) is in v on entry */
static void gm__rbm_ais_visible_task(void *ctx, int run) {
    gm__rbm_ais *a = GM__EBM_CAST(gm__rbm_ais *, ctx);
    const gm_rbm *r = a->r;
    int V = r->cfg.visible, i;
    float *v = a->v + (size_t)run * V;
    for (i = 0; i < V; i++) {
        double mean = (1 - a->b1) * a->bA[i] + a->b1 * v[i];
        v[i] = r->cfg.visible_type == GM_RBM_BERNOULLI
            ? gm__ebm_bern(&a->rngs[run], gm__ebm_sigmoid((float)mean))
            : (float)mean + gm_rng_normal(&a->rngs[run]);
    }
}

static int gm__rbm_ais_base(gm_rbm *r, const float *base_x, int n_base, float clip, double *bA) {
    int V = r->cfg.visible, i, j;
    const float *bv = gm_params_data(&r->params, r->bv);
    if (!base_x) {
        for (j = 0; j < V; j++) bA[j] = bv[j];
        return 0;
    }
    if (gm__rbm_check_x(r, base_x, n_base, "gm_rbm_ais") != 0) return -1;
    for (j = 0; j < V; j++) {
        double s = 0;
        for (i = 0; i < n_base; i++) s += base_x[(size_t)i * V + j];
        s /= n_base;
        if (r->cfg.visible_type == GM_RBM_BERNOULLI) {
            if (s < clip) s = clip;
            if (s > 1 - clip) s = 1 - clip;
            s = log(s / (1 - s));
        }
        bA[j] = s;
    }
    return 0;
}

static void gm__rbm_ais_summary(const double *logw, int R, double log_za, gm_rbm_ais_result *res) {
    double mx = -HUGE_VAL, s = 0, s2 = 0, mean, sd, se_z;
    int i;
    for (i = 0; i < R; i++) if (logw[i] > mx) mx = logw[i];
    for (i = 0; i < R; i++) { double w = exp(logw[i] - mx); s += w; s2 += w * w; }
    mean = s / R;
    sd = R > 1 ? sqrt(fmax(0.0, (s2 - s * s / R) / (R - 1))) : 0.0;
    se_z = sd / sqrt((double)R);
    res->log_z_base = log_za;
    res->log_z = log_za + mx + log(mean);
    res->log_z_se = sd / (sqrt((double)R) * mean);
    res->log_z_hi = log_za + mx + log(mean + 3 * se_z);
    res->log_z_lo = mean > 3 * se_z ? log_za + mx + log(mean - 3 * se_z) : -HUGE_VAL;
    res->ess = s * s / s2;
}

GMDEF int gm_rbm_ais(gm_rbm *r, const float *base_x, int n_base, const gm_rbm_ais_config *cfg,
                     gm_rbm_ais_result *res) {
    gm_rbm_ais_config c = cfg ? *cfg : gm_rbm_ais_default_config();
    gm__rbm_ais a;
    int V, H, R, K, k, i, seg;
    double *bA, log_za, prev = 0;
    static const double ends[3] = {0.5, 0.9, 1.0};
    if (gm__rbm_ready(r, "gm_rbm_ais") != 0) return -1;
    if (!res) return gm_fail("gm_rbm_ais: result is NULL");
    if (c.runs < 2) return gm_fail("gm_rbm_ais: cfg.runs = %d (need >= 2 for a standard error)", c.runs);
    if (c.steps[0] < 0 || c.steps[1] < 0 || c.steps[2] < 1)
        return gm_fail("gm_rbm_ais: cfg.steps = %d, %d, %d (need >= 0, >= 0, >= 1)", c.steps[0], c.steps[1], c.steps[2]);
    if (!(c.base_clip > 0 && c.base_clip < 0.5f)) return gm_fail("gm_rbm_ais: cfg.base_clip = %g (need in (0, 0.5))", (double)c.base_clip);
    V = r->cfg.visible; H = r->cfg.hidden; R = c.runs;
    memset(&a, 0, sizeof a);
    bA = GM__EBM_CAST(double *, GENMOD_MALLOC((size_t)V * sizeof(double)));
    a.logw = GM__EBM_CAST(double *, GENMOD_MALLOC((size_t)R * sizeof(double)));
    a.rngs = GM__EBM_CAST(gm_rng *, GENMOD_MALLOC((size_t)R * sizeof(gm_rng)));
    a.v = GM__EBM_CAST(float *, GENMOD_MALLOC((size_t)R * (V + H) * sizeof(float)));
    if (!bA || !a.logw || !a.rngs || !a.v) {
        GENMOD_FREE(bA); GENMOD_FREE(a.logw); GENMOD_FREE(a.rngs); GENMOD_FREE(a.v);
        return gm_fail("gm_rbm_ais: out of memory");
    }
    if (gm__rbm_ais_base(r, base_x, n_base, c.base_clip, bA) != 0) {
        GENMOD_FREE(bA); GENMOD_FREE(a.logw); GENMOD_FREE(a.rngs); GENMOD_FREE(a.v);
        return -1;
    }
    a.r = r; a.bA = bA; a.x = a.v + (size_t)R * V;
    {   /* log Z_A, exact: the base model's visible units are independent, its hidden ones free */
        const float *bv = gm_params_data(&r->params, r->bv);
        double nb = 0, na = 0;
        log_za = H * log(2.0);
        for (i = 0; i < V; i++) {
            log_za += r->cfg.visible_type == GM_RBM_BERNOULLI ? gm__ebm_softplus(bA[i]) : 0.5 * GM__EBM_LOG2PI;
            nb += (double)bv[i] * bv[i]; na += bA[i] * bA[i];
        }
        a.vis_const = r->cfg.visible_type == GM_RBM_GAUSSIAN ? 0.5 * (nb - na) : 0.0;
    }
    {
        gm_rng seeder;
        gm_rng_seed(&seeder, c.seed);
        for (i = 0; i < R; i++) { a.rngs[i] = gm_rng_split(&seeder); a.logw[i] = 0; }
    }
    /* v_1 ~ p_A exactly: the visible task at beta = 0 ignores v's contents */
    a.b0 = a.b1 = 0;
    memset(a.v, 0, (size_t)R * V * sizeof(float));
    gm_parallel_for(R, gm__rbm_ais_visible_task, &a);
    K = c.steps[0] + c.steps[1] + c.steps[2];
    k = 0;
    for (seg = 0; seg < 3; seg++) {
        int s;
        double start = prev;
        for (s = 1; s <= c.steps[seg]; s++, k++) {
            a.b0 = prev;
            a.b1 = s == c.steps[seg] ? ends[seg] : start + (ends[seg] - start) * s / c.steps[seg];
            gm__rbm_hid(r, a.v, R, 1.0f, a.x, 0);                          /* x = W v + bh */
            gm_parallel_for(R, gm__rbm_ais_weight_task, &a);               /* log w, then h */
            if (k + 1 < K) {
                const float *W = gm_params_data(&r->params, r->w), *bv = gm_params_data(&r->params, r->bv);
                int j;
                gm_sgemm(0, 0, R, V, H, 1.0f, a.x, H, W, V, 0.0f, a.v, V);
                for (i = 0; i < R; i++) for (j = 0; j < V; j++) a.v[(size_t)i * V + j] += bv[j];
                gm_parallel_for(R, gm__rbm_ais_visible_task, &a);
            }
            prev = a.b1;
        }
    }
    gm__rbm_ais_summary(a.logw, R, log_za, res);
    GENMOD_FREE(bA); GENMOD_FREE(a.logw); GENMOD_FREE(a.rngs); GENMOD_FREE(a.v);
    if (!isfinite(res->log_z)) return gm_fail("gm_rbm_ais: the estimate is not finite");
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* RBM: checkpoints                                                                         */
/* ---------------------------------------------------------------------------------------- */
static void gm__rbm_arch(const gm_rbm *r, char *out, size_t cap) {
    snprintf(out, cap, "visible %d hidden %d units %s method %s chains %d", r->cfg.visible, r->cfg.hidden,
             r->cfg.visible_type == GM_RBM_BERNOULLI ? "bernoulli" : "gaussian",
             r->cfg.method == GM_RBM_CD ? "cd" : "pcd", r->cfg.method == GM_RBM_PCD ? r->cfg.chains : 0);
}

GMDEF int gm_rbm_save(const gm_rbm *r, const char *path) {
    char arch[GM_META_VALUE_MAX];
    gm_model_part part;
    gm_meta extra;
    if (!r || !r->params.data || !path) return gm_fail("gm_rbm_save: NULL argument or RBM not initialized");
    gm__rbm_arch(r, arch, sizeof arch);
    memset(&extra, 0, sizeof extra);
    if (gm_meta_set_rng(&extra, "rbm.rng", &r->rng) != 0 ||
        gm_meta_setf(&extra, "rbm.k", "%d", r->cfg.k) != 0) return -1;
    part.name = "";
    part.params = GM__EBM_UNCONST(gm_params *, &r->params);   /* read only */
    part.opt = GM__EBM_UNCONST(gm_optim *, &r->opt);
    return gm_model_save(path, "rbm", arch, r->step, &part, 1, &extra);
}

GMDEF int gm_rbm_load(gm_rbm *r, const char *path) {
    char arch[GM_META_VALUE_MAX];
    gm_model_part part;
    gm_meta extra;
    long step = 0;
    if (!r || !r->params.data || !path) return gm_fail("gm_rbm_load: NULL argument or RBM not initialized");
    gm__rbm_arch(r, arch, sizeof arch);
    memset(&extra, 0, sizeof extra);
    part.name = ""; part.params = &r->params; part.opt = &r->opt;
    if (gm_model_load(path, "rbm", arch, &step, &part, 1, &extra) != 0) return -1;
    r->step = step;
    gm_meta_get_rng(&extra, "rbm.rng", &r->rng);   /* a file without it keeps the stream as it is */
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Langevin dynamics                                                                        */
/* ---------------------------------------------------------------------------------------- */
GMDEF int gm_langevin(gm_graph *g, gm_energy_fn fn, void *ctx, float *x, int n, int dim, int steps,
                      float step_size, float noise, float grad_clip, gm_rng *rng) {
    int s, old;
    size_t i, count;
    if (!g || !fn || !x || !rng) return gm_fail("gm_langevin: NULL argument");
    if (n <= 0 || dim <= 0 || steps < 0) return gm_fail("gm_langevin: n = %d, dim = %d, steps = %d (need n, dim > 0, steps >= 0)", n, dim, steps);
    if (!(step_size > 0) || !isfinite(step_size)) return gm_fail("gm_langevin: step size %g (need finite and > 0)", (double)step_size);
    if (!(noise >= 0) || !isfinite(noise)) return gm_fail("gm_langevin: noise %g (need finite and >= 0)", (double)noise);
    if (!(grad_clip >= 0) || !isfinite(grad_clip)) return gm_fail("gm_langevin: grad_clip %g (need finite and >= 0)", (double)grad_clip);
    count = (size_t)n * dim;
    old = gm_graph_set_grad(g, 1);
    for (s = 0; s < steps; s++) {
        gm_tensor *xt, *e, *gr;
        gm_graph_reset(g);
        xt = gm_requires_grad(gm_input(g, x, n, dim, 0, 0));
        e = xt ? fn(g, xt, ctx) : NULL;
        gr = e ? gm_grad(g, e, xt, 0) : NULL;
        if (!gr) { gm_graph_set_grad(g, old); return gm_graph_fail(g, "gm_langevin"); }
        for (i = 0; i < count; i++) {
            float d = gr->data[i];
            if (grad_clip > 0) d = d > grad_clip ? grad_clip : d < -grad_clip ? -grad_clip : d;
            x[i] += -step_size * d + noise * gm_rng_normal(rng);
        }
    }
    gm_graph_reset(g);
    gm_graph_set_grad(g, old);
    for (i = 0; i < count; i++)
        if (!isfinite(x[i])) return gm_fail("gm_langevin: a chain diverged (step size too large?)");
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Deep EBM                                                                                 */
/* ---------------------------------------------------------------------------------------- */
GMDEF gm_ebm_config gm_ebm_default_config(int dim) {
    gm_ebm_config c;
    memset(&c, 0, sizeof c);
    c.dim = dim;
    c.hidden = 128; c.depth = 3; c.act = GM_ACT_SILU;
    c.lr = 3e-3f; c.beta1 = 0.0f; c.beta2 = 0.999f;
    c.alpha = 0.1f;
    c.langevin_steps = 40; c.step_size = 0.01f; c.noise = 0.005f; c.grad_clip = 0;
    c.buffer_size = 10000; c.reinit = 0.05f; c.init_range = 4.0f;
    c.sample_steps = 200; c.batch = 256; c.seed = 1;
    return c;
}

GMDEF gm_ebm_config gm_ebm_conv_config(int c, int h, int w) {
    gm_ebm_config k = gm_ebm_default_config(c * h * w);
    k.image_c = c; k.image_h = h; k.image_w = w;
    k.channels = 16; k.hidden = 64; k.depth = 1;   /* the dense layer after the convolutions */
    k.lr = 1e-4f; k.clip_norm = 0.1f;
    k.langevin_steps = 60; k.step_size = 10.0f; k.noise = 0.005f; k.grad_clip = 0.03f;
    k.x_min = -1.0f; k.x_max = 1.0f; k.init_range = 1.0f;
    k.buffer_size = 8192; k.sample_steps = 256; k.batch = 128;
    return k;
}

static int gm__ebm_is_conv(const gm_ebm_config *c) { return c->image_c > 0 || c->image_h > 0 || c->image_w > 0; }

/* spatial size after the convolutions: 5x5 stride 2 pad 4, then 3x3 stride 2 pad 1 */
static int gm__ebm_conv_out(int size, int layer) { return layer == 0 ? (size + 8 - 5) / 2 + 1 : (size + 2 - 3) / 2 + 1; }

static int gm__ebm_check_config(const gm_ebm_config *c) {
    if (c->dim < 1) return gm_fail("gm_ebm_init: cfg.dim = %d (need >= 1)", c->dim);
    if (gm__ebm_is_conv(c)) {
        if (c->image_c < 1 || c->image_h < 1 || c->image_w < 1 || (long)c->image_c * c->image_h * c->image_w != c->dim)
            return gm_fail("gm_ebm_init: cfg.image_c x image_h x image_w = %d x %d x %d (need all >= 1, product cfg.dim = %d)",
                           c->image_c, c->image_h, c->image_w, c->dim);
        if (c->channels < 1) return gm_fail("gm_ebm_init: cfg.channels = %d (need >= 1)", c->channels);
    }
    if (!(c->clip_norm >= 0) || !isfinite(c->clip_norm)) return gm_fail("gm_ebm_init: cfg.clip_norm = %g (need >= 0)", (double)c->clip_norm);
    if (!isfinite(c->x_min) || !isfinite(c->x_max) || c->x_min > c->x_max)
        return gm_fail("gm_ebm_init: cfg.x_min, x_max = %g, %g (need finite, x_min <= x_max)", (double)c->x_min, (double)c->x_max);
    if (c->hidden < 1) return gm_fail("gm_ebm_init: cfg.hidden = %d (need >= 1)", c->hidden);
    if (c->depth < 1 || c->depth > GM_EBM_MAX_DEPTH) return gm_fail("gm_ebm_init: cfg.depth = %d (1..%d)", c->depth, GM_EBM_MAX_DEPTH);
    if (c->act < 0 || c->act >= GM_ACT_COUNT) return gm_fail("gm_ebm_init: cfg.act = %d (a GM_ACT_*)", c->act);
    if (!(c->lr > 0) || !isfinite(c->lr)) return gm_fail("gm_ebm_init: cfg.lr = %g (need > 0)", (double)c->lr);
    if (!(c->alpha >= 0) || !isfinite(c->alpha)) return gm_fail("gm_ebm_init: cfg.alpha = %g (need >= 0)", (double)c->alpha);
    if (c->langevin_steps < 1) return gm_fail("gm_ebm_init: cfg.langevin_steps = %d (need >= 1)", c->langevin_steps);
    if (!(c->step_size > 0) || !isfinite(c->step_size)) return gm_fail("gm_ebm_init: cfg.step_size = %g (need finite and > 0)", (double)c->step_size);
    if (!(c->noise >= 0) || !isfinite(c->noise)) return gm_fail("gm_ebm_init: cfg.noise = %g (need finite and >= 0)", (double)c->noise);
    if (!(c->grad_clip >= 0) || !isfinite(c->grad_clip)) return gm_fail("gm_ebm_init: cfg.grad_clip = %g (need >= 0)", (double)c->grad_clip);
    if (c->buffer_size < 1) return gm_fail("gm_ebm_init: cfg.buffer_size = %d (need >= 1)", c->buffer_size);
    if (!(c->reinit >= 0 && c->reinit <= 1)) return gm_fail("gm_ebm_init: cfg.reinit = %g (need in [0, 1])", (double)c->reinit);
    if (!(c->init_range > 0) || !isfinite(c->init_range)) return gm_fail("gm_ebm_init: cfg.init_range = %g (need > 0)", (double)c->init_range);
    if (c->sample_steps < 1) return gm_fail("gm_ebm_init: cfg.sample_steps = %d (need >= 1)", c->sample_steps);
    if (c->batch < 1) return gm_fail("gm_ebm_init: cfg.batch = %d (need >= 1)", c->batch);
    return 0;
}

static void gm__ebm_noise(gm_ebm *m, float *x, size_t count) {
    size_t i;
    float r = m->cfg.init_range;
    for (i = 0; i < count; i++) x[i] = -r + 2 * r * gm_rng_uniform(&m->rng);
}

/* the conv energy's convolutions (c, 2c, 4c, 4c channels, each halving the image); *flat gets the
   features they hand to the dense layers */
static int gm__ebm_init_convs(gm_ebm *m, int *flat) {
    const gm_ebm_config *c = &m->cfg;
    int k, cin = c->image_c, h = c->image_h, w = c->image_w;
    char name[32];
    for (k = 0; k < GM_EBM_CONVS; k++) {
        int cout = c->channels * (k == 0 ? 1 : k == 1 ? 2 : 4), ks = k == 0 ? 5 : 3, pad = k == 0 ? 4 : 1;
        snprintf(name, sizeof name, "c%d", k);
        if (gm_conv_init(&m->convs[k], &m->params, name, cin, cout, ks, 2, pad, GM_INIT_TORCH, &m->rng) != 0) return -1;
        cin = cout;
        h = gm__ebm_conv_out(h, k);
        w = gm__ebm_conv_out(w, k);
    }
    m->nconvs = GM_EBM_CONVS;
    *flat = cin * h * w;
    return 0;
}

GMDEF int gm_ebm_init(gm_ebm *m, const gm_ebm_config *cfg) {
    int k, in, shape[2];
    char name[32];
    if (!m || !cfg) return gm_fail("gm_ebm_init: NULL argument");
    memset(m, 0, sizeof *m);
    if (gm__ebm_check_config(cfg) != 0) return -1;
    m->cfg = *cfg;
    gm_rng_seed(&m->rng, cfg->seed);
    in = cfg->dim;
    if (gm__ebm_is_conv(cfg) && gm__ebm_init_convs(m, &in) != 0) goto fail;
    for (k = 0; k <= cfg->depth; k++) {
        int out = k == cfg->depth ? 1 : cfg->hidden;
        snprintf(name, sizeof name, "l%d", k);
        if (gm_linear_init(&m->layers[k], &m->params, name, in, out, GM_INIT_TORCH, &m->rng) != 0) goto fail;
        in = out;
    }
    m->nlayers = cfg->depth + 1;
    shape[0] = cfg->buffer_size; shape[1] = cfg->dim;
    if ((m->buffer = gm_params_add(&m->params, "buffer", 2, shape)) < 0) goto fail;
    gm_params_mark_buffer(&m->params, m->buffer);
    gm__ebm_noise(m, gm_params_data(&m->params, m->buffer), (size_t)cfg->buffer_size * cfg->dim);
    for (k = 0; k < m->nlayers; k++) m->layers[k].p = &m->params;   /* the views' owner, wherever it moved */
    for (k = 0; k < m->nconvs; k++) m->convs[k].p = &m->params;
    m->opt = gm_adam(cfg->lr, cfg->beta1, cfg->beta2);
    m->opt.clip_norm = cfg->clip_norm;
    if (!(m->graph = gm_graph_new(cfg->seed ^ 0x9E3779B97F4A7C15ull))) goto fail;
    return 0;
fail:
    gm_ebm_free(m);
    return -1;
}

GMDEF void gm_ebm_free(gm_ebm *m) {
    if (!m) return;
    gm_params_free(&m->params);
    gm_optim_free(&m->opt);
    gm_graph_free(m->graph);
    GENMOD_FREE(m->buf);
    memset(m, 0, sizeof *m);
}

GMDEF gm_tensor *gm_ebm_forward(gm_graph *g, gm_ebm *m, gm_tensor *x) {
    int k;
    gm_tensor *h = x;
    if (!g || !m || !x) return NULL;
    if (m->nconvs > 0) {
        h = gm_reshape(g, h, -1, m->cfg.image_c, m->cfg.image_h, m->cfg.image_w);
        for (k = 0; k < m->nconvs; k++) h = gm_activation(g, gm_conv_forward(g, &m->convs[k], h), m->cfg.act, 0.2f);
        h = gm_flatten(g, h);
    }
    for (k = 0; k < m->nlayers; k++) {
        h = gm_linear_forward(g, &m->layers[k], h);
        if (k + 1 < m->nlayers) h = gm_activation(g, h, m->cfg.act, 0.2f);
    }
    return h ? gm_reshape(g, h, -1, 0, 0, 0) : NULL;
}

static gm_tensor *gm__ebm_energy_fn(gm_graph *g, gm_tensor *x, void *ctx) {
    return gm_ebm_forward(g, GM__EBM_CAST(gm_ebm *, ctx), x);
}

static int gm__ebm_ready(const gm_ebm *m, const char *who) {
    if (!m || !m->graph) return gm_fail("%s: EBM not initialized", who);
    return 0;
}

static int gm__ebm_check_x(const gm_ebm *m, const float *x, int n, const char *who) {
    size_t i;
    if (gm__ebm_ready(m, who) != 0) return -1;
    if (!x || n <= 0) return gm_fail("%s: need data and n > 0 (n = %d)", who, n);
    for (i = 0; i < (size_t)n * m->cfg.dim; i++)
        if (!isfinite(x[i])) return gm_fail("%s: value %zu is not finite", who, i);
    return 0;
}

GMDEF int gm_ebm_langevin(gm_ebm *m, float *x, int n, int steps) {
    int rc, frozen, s;
    if (gm__ebm_check_x(m, x, n, "gm_ebm_langevin") != 0) return -1;
    frozen = m->params.frozen;
    m->params.frozen = 1;   /* dE/dx only: no weight gradients to compute */
    if (m->cfg.x_min < m->cfg.x_max) {   /* one step at a time, clamped to the data's range after each */
        size_t i, count = (size_t)n * m->cfg.dim;
        float lo = m->cfg.x_min, hi = m->cfg.x_max;
        for (rc = 0, s = 0; s < steps && rc == 0; s++) {
            rc = gm_langevin(m->graph, gm__ebm_energy_fn, m, x, n, m->cfg.dim, 1, m->cfg.step_size, m->cfg.noise,
                             m->cfg.grad_clip, &m->rng);
            for (i = 0; i < count; i++) x[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
        }
    } else {
        rc = gm_langevin(m->graph, gm__ebm_energy_fn, m, x, n, m->cfg.dim, steps, m->cfg.step_size, m->cfg.noise,
                         m->cfg.grad_clip, &m->rng);
    }
    m->params.frozen = frozen;
    return rc;
}

/* n negatives' starting points: replay-buffer points, a fraction reinit from noise */
static void gm__ebm_starts(gm_ebm *m, float *x, int n, float reinit) {
    int d = m->cfg.dim, i;
    long held = m->buffer_fill < m->cfg.buffer_size ? m->buffer_fill : m->cfg.buffer_size;
    const float *buf = gm_params_data(&m->params, m->buffer);
    for (i = 0; i < n; i++) {
        if (held == 0 || gm_rng_uniform(&m->rng) < reinit) gm__ebm_noise(m, x + (size_t)i * d, (size_t)d);
        else memcpy(x + (size_t)i * d, buf + (size_t)gm_rng_int(&m->rng, (int)held) * d, (size_t)d * sizeof(float));
    }
}

static void gm__ebm_push(gm_ebm *m, const float *x, int n) {
    int d = m->cfg.dim, i;
    float *buf = gm_params_data(&m->params, m->buffer);
    for (i = 0; i < n; i++, m->buffer_fill++)
        memcpy(buf + (size_t)(m->buffer_fill % m->cfg.buffer_size) * d, x + (size_t)i * d, (size_t)d * sizeof(float));
}

/* mean E(x+) - mean E(x-) + alpha (mean E(x+)^2 + mean E(x-)^2) */
static gm_tensor *gm__ebm_loss(gm_graph *g, gm_ebm *m, const float *x, const float *neg, int n, float *ep, float *en) {
    gm_tensor *xp = gm_input(g, x, n, m->cfg.dim, 0, 0), *xn = gm_input(g, neg, n, m->cfg.dim, 0, 0);
    gm_tensor *Ep = gm_ebm_forward(g, m, xp), *En = gm_ebm_forward(g, m, xn), *reg, *cd;
    if (!Ep || !En) return NULL;
    *ep = (float)gm_tensor_mean(Ep);
    *en = (float)gm_tensor_mean(En);
    cd = gm_sub(g, gm_mean(g, Ep), gm_mean(g, En));
    reg = gm_add(g, gm_mean(g, gm_square(g, Ep)), gm_mean(g, gm_square(g, En)));
    return gm_add(g, cd, gm_scale(g, reg, m->cfg.alpha));
}

GMDEF int gm_ebm_train_step(gm_ebm *m, const float *x, const int *labels, int n, gm_ebm_stats *stats) {
    gm_tensor *loss;
    float *neg, ep = 0, en = 0;
    if (gm__ebm_check_x(m, x, n, "gm_ebm_train_step") != 0) return -1;
    if (labels) return gm_fail("gm_ebm_train_step: the EBM is unconditional; labels must be NULL");
    if (gm_floats_reserve(&m->buf, &m->buf_cap, (size_t)n * m->cfg.dim) != 0) return -1;
    neg = m->buf;
    gm__ebm_starts(m, neg, n, m->cfg.reinit);
    if (gm_ebm_langevin(m, neg, n, m->cfg.langevin_steps) != 0) return -1;
    gm_graph_reset(m->graph);
    gm_graph_set_training(m->graph, 1);
    loss = gm__ebm_loss(m->graph, m, x, neg, n, &ep, &en);
    if (!loss) return gm_graph_fail(m->graph, "gm_ebm_train_step");
    if (gm_backward(m->graph, loss) != 0) { gm_params_zero_grad(&m->params); return -1; }
    if (stats) {
        stats->loss = loss->data[0];
        stats->e_pos = ep; stats->e_neg = en;
        stats->grad_norm = gm_grad_norm(&m->params);
    }
    if (gm_optim_step(&m->opt, &m->params) != 0) return -1;
    gm__ebm_push(m, neg, n);
    m->step++;
    return 0;
}

typedef struct gm__ebm_chunk { gm_ebm *m; const float *x; float *e; } gm__ebm_chunk;
static int gm__ebm_energy_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__ebm_chunk *c = GM__EBM_CAST(gm__ebm_chunk *, ctx);
    gm_tensor *e = gm_ebm_forward(g, c->m, gm_input(g, c->x + (size_t)start * c->m->cfg.dim, count, c->m->cfg.dim, 0, 0));
    if (!e) return -1;
    memcpy(c->e + start, e->data, (size_t)count * sizeof(float));
    return 0;
}

GMDEF int gm_ebm_energy(gm_ebm *m, const float *x, int n, float *e) {
    gm__ebm_chunk c;
    if (gm__ebm_check_x(m, x, n, "gm_ebm_energy") != 0) return -1;
    if (!e) return gm_fail("gm_ebm_energy: out is NULL");
    c.m = m; c.x = x; c.e = e;
    return gm_run_chunks(m->graph, n, gm__ebm_energy_chunk, &c, "gm_ebm_energy");
}

GMDEF int gm_ebm_sample(gm_ebm *m, const int *labels, int n, float *out) {
    if (gm__ebm_ready(m, "gm_ebm_sample") != 0) return -1;
    if (labels) return gm_fail("gm_ebm_sample: the EBM is unconditional; labels must be NULL");
    if (!out || n <= 0) return gm_fail("gm_ebm_sample: need out and n > 0 (n = %d)", n);
    gm__ebm_noise(m, out, (size_t)n * m->cfg.dim);
    return gm_ebm_langevin(m, out, n, m->cfg.sample_steps);
}

GMDEF int gm_ebm_sample_buffer(gm_ebm *m, int n, float *out) {
    if (gm__ebm_ready(m, "gm_ebm_sample_buffer") != 0) return -1;
    if (!out || n <= 0) return gm_fail("gm_ebm_sample_buffer: need out and n > 0 (n = %d)", n);
    gm__ebm_starts(m, out, n, 0.0f);
    return gm_ebm_langevin(m, out, n, m->cfg.langevin_steps);
}

static void gm__ebm_arch(const gm_ebm *m, char *out, size_t cap) {
    char conv[64] = "";
    if (m->nconvs > 0)
        snprintf(conv, sizeof conv, " conv %dx%dx%d channels %d", m->cfg.image_c, m->cfg.image_h, m->cfg.image_w, m->cfg.channels);
    snprintf(out, cap, "dim %d%s hidden %d depth %d act %s buffer %d", m->cfg.dim, conv, m->cfg.hidden, m->cfg.depth,
             gm_act_name(m->cfg.act), m->cfg.buffer_size);
}

GMDEF int gm_ebm_save(const gm_ebm *m, const char *path) {
    char arch[GM_META_VALUE_MAX];
    gm_model_part part;
    gm_meta extra;
    if (!m || !m->graph || !path) return gm_fail("gm_ebm_save: NULL argument or EBM not initialized");
    gm__ebm_arch(m, arch, sizeof arch);
    memset(&extra, 0, sizeof extra);
    if (gm_meta_set_rng(&extra, "ebm.rng", &m->rng) != 0 ||
        gm_meta_set_rng(&extra, "ebm.graph_rng", gm_graph_rng(m->graph)) != 0 ||
        gm_meta_setf(&extra, "ebm.buffer_fill", "%ld", m->buffer_fill) != 0) return -1;
    part.name = "";
    part.params = GM__EBM_UNCONST(gm_params *, &m->params);   /* read only */
    part.opt = GM__EBM_UNCONST(gm_optim *, &m->opt);
    return gm_model_save(path, "ebm", arch, m->step, &part, 1, &extra);
}

GMDEF int gm_ebm_load(gm_ebm *m, const char *path) {
    char arch[GM_META_VALUE_MAX];
    gm_model_part part;
    gm_meta extra;
    long step = 0;
    const char *fill;
    if (!m || !m->graph || !path) return gm_fail("gm_ebm_load: NULL argument or EBM not initialized");
    gm__ebm_arch(m, arch, sizeof arch);
    memset(&extra, 0, sizeof extra);
    part.name = ""; part.params = &m->params; part.opt = &m->opt;
    if (gm_model_load(path, "ebm", arch, &step, &part, 1, &extra) != 0) return -1;
    m->step = step;
    gm_meta_get_rng(&extra, "ebm.rng", &m->rng);
    gm_meta_get_rng(&extra, "ebm.graph_rng", gm_graph_rng(m->graph));
    fill = gm_meta_get(&extra, "ebm.buffer_fill");
    m->buffer_fill = fill ? strtol(fill, NULL, 10) : m->cfg.buffer_size;
    return 0;
}

#endif /* GENMOD_EBM_IMPLEMENTATION_INCLUDED */
#endif /* GENMOD_EBM_IMPLEMENTATION */
