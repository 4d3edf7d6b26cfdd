/* genmod_diffusion.h - v0.1 - diffusion and score-based models on top of genmod.h: DDPM, DDIM,
   classifier-free guidance, EMA; denoising score matching with annealed Langevin sampling.
   Single-header C library (stb style): the declarations are always visible, the implementation
   is compiled where GENMOD_DIFFUSION_IMPLEMENTATION is defined.

   USAGE
     The core's implementation goes in exactly one file, and so does this header's: the same
     file, or each its own (this implementation uses only genmod.h's public API).
       One file:
         #define GENMOD_IMPLEMENTATION
         #include "genmod.h"
         #define GENMOD_DIFFUSION_IMPLEMENTATION
         #include "genmod_diffusion.h"
       Or its own file, linked with the one that implements the core:
         diffusion_impl.c: #define GENMOD_DIFFUSION_IMPLEMENTATION
                           #include "genmod_diffusion.h"
         genmod_impl.c:    #define GENMOD_IMPLEMENTATION
                           #include "genmod.h"
     Elsewhere just #include "genmod_diffusion.h". Build: cc -O2 prog.c [diffusion_impl.c
     genmod_impl.c] -lm -lpthread. With GENMOD_STATIC both must be in the same file.
     GENMOD_MALLOC / GENMOD_REALLOC / GENMOD_FREE: as in genmod.h.

   THE SHORTEST PROGRAM (DDPM on 8 Gaussians)

         float xy[2 * 4096], s[2 * 500];
         gm_toy2d("8gaussians", 4096, 1, -1, xy, NULL);
         gm_diffusion_config cfg = gm_diffusion_default_config(2, 1, 1);   // a time-conditioned MLP
         gm_diffusion d;
         if (gm_diffusion_init(&d, &cfg) != 0) { puts(gm_last_error()); return 1; }
         for (int step = 0; step < 3000; step++)
             gm_diffusion_train_step(&d, xy + 2 * (step % 16) * 256, NULL, 256, NULL);
         gm_diffusion_sample(&d, NULL, 500, s);        // DDIM, cfg.sample_steps steps, EMA weights
         gm_diffusion_save(&d, "ddpm.safetensors");
         gm_diffusion_free(&d);

   EACH MODEL HAS (gm_diffusion and gm_score; the contract every genmod family follows)
     _default_config    a plain struct of the recipe; arguments only for the data shape
     _init(m, &cfg)     validates (the message names the field), builds; on failure m is freed
     _free(m)           safe on a zeroed or failed model, and twice
     _train_step(m, x, labels, n, &stats)
                        one Adam step on n examples; labels (n ints in 0..classes-1) for a
                        class-conditional diffusion model, NULL otherwise; a NaN loss is refused
     _sample(m, labels, n, out)
                        n samples, any n; gm_diffusion_sample_with takes the sampler and the
                        guidance weight; gm_score_sample_with the Langevin settings
     _forward(g, m, ...)
                        the network emitted into your own gm_graph, for custom losses
     _save / _load      one safetensors file through gm_model_save / gm_model_load: the weights
                        with their Adam state (part "net") and, for gm_diffusion, the EMA weights
                        (part "ema"), the step and the random streams; its metadata names the
                        model ("diffusion" or "score") and the architecture
     errors             0 / -1 (NULL for tensors), the reason in gm_last_error()

   THE PROCESS (Ho et al. 2020; index t = 0..T-1 is the paper's t+1)
     beta_t: linear from beta_start to beta_end (1e-4 .. 0.02), or cosine (Nichol & Dhariwal,
     s = 0.008, beta clipped at 0.999); alpha_bar_t = prod_{s <= t} (1 - beta_s).
     q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)          gm_diffusion_q_sample
     The network predicts eps (or v = sqrt(ab) eps - sqrt(1 - ab) x_0, cfg.prediction); the loss is
     the mean square error over examples and coordinates with t uniform on 0..T-1.
     Samplers (gm_diffusion_sampler; each takes any eps predictor through gm_diffusion_eps_fn, so
     an exact score can stand in for the network):
       DDPM   ancestral over all T steps, sigma_t^2 = beta_t (Algorithm 2 of the paper)
       DDIM   timesteps round(linspace(0, T-1, S)), any S in 1..T, eta = 0 deterministic, eta = 1
              the DDPM-like noise; the last step returns the predicted x_0
       gm_diffusion_ddim_invert runs the deterministic DDIM backwards, x_0 -> x_T.
     Classifier-free guidance: eps = (1 + w) eps(x, y) - w eps(x, null), the null class being
     label `classes`, which training substitutes with probability cfg.p_uncond.
     EMA: ema = d ema + (1 - d) w after every step, d = min(ema_decay, (1 + n) / (ema_warmup + n))
     at the n-th update (ema_warmup 0: a flat decay). Sampling uses the EMA weights.

   NETWORKS (gm_diffusion_config.net)
     GM_DIFF_NET_MLP   vectors: sinusoidal time embedding -> Linear -> SiLU -> Linear = e; h = in(x);
                       per layer h = L_k(SiLU(h + P_k(SiLU(e)))); out(SiLU(h)).
     GM_DIFF_NET_UNET  images (1 x 28 x 28 or any H, W divisible by 4): the PyTorch reference's
                       U-Net: channels C, 2C, 2C at full, half and quarter size; residual blocks
                       of group norm, SiLU, 3x3 conv, with the time (and class) embedding added
                       per channel in every block; stride-2 convs down, nearest x2 + conv up,
                       skips concatenated; GroupNorm -> SiLU -> 3x3 conv out. Data in [-1, 1].
                       cfg.attn = 1: self-attention (one head) at the quarter size between the two
                       middle blocks: GroupNorm, 1x1 conv to q, k, v (2C each), softmax(q^T k /
                       sqrt(2C)) over the positions, 1x1 conv out, residual (gm_diffusion_attention).

   SCORE MODELS (gm_score)
     Denoising score matching over L noise levels sigma_1 > ... > sigma_L (geometric): the net
     n(x, i) gives the score s = n / sigma_i, and the loss mean |n(x + sigma_i z, i) + z|^2 is
     sigma_i^2 times the DSM objective, so every level weighs the same (Song & Ermon 2019).
     Annealed Langevin: per level K steps x += a/2 s + sqrt(a) z with a = eps sigma_i^2 / sigma_L^2,
     then one denoising step x += sigma_L^2 s(x, L) (Tweedie).

   LICENSE: MIT, at the end of the file.
*/
#ifndef GENMOD_DIFFUSION_H
#define GENMOD_DIFFUSION_H

#include "genmod.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================= */
/* Schedules and samplers (any eps predictor)                                              */
/* ======================================================================================= */
enum { GM_DIFF_LINEAR = 0, GM_DIFF_COSINE };          /* noise schedules */
enum { GM_DIFF_PRED_EPS = 0, GM_DIFF_PRED_V };        /* what the network predicts */
enum { GM_DIFF_NET_MLP = 0, GM_DIFF_NET_UNET };       /* networks */
enum { GM_DIFF_DDPM = 0, GM_DIFF_DDIM };              /* samplers */

typedef struct gm_diffusion_schedule {
    int T;                   /* steps */
    double *beta;            /* T values in (0, 1) */
    double *alpha_bar;       /* T values: prod_{s <= t} (1 - beta_s), decreasing */
} gm_diffusion_schedule;

/* kind GM_DIFF_LINEAR (beta_start..beta_end) or GM_DIFF_COSINE (ignores them). 0 or -1. */
GMDEF int  gm_diffusion_schedule_init(gm_diffusion_schedule *s, int kind, int T, double beta_start, double beta_end);
/* Any T betas, each in (0, 1). */
GMDEF int  gm_diffusion_schedule_from_betas(gm_diffusion_schedule *s, const double *beta, int T);
GMDEF void gm_diffusion_schedule_free(gm_diffusion_schedule *s);
/* x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps for n examples of dim floats, t[i] in 0..T-1. */
GMDEF int  gm_diffusion_q_sample(const gm_diffusion_schedule *s, const float *x0, const float *eps, const int *t,
                                 int n, int dim, float *xt);
/* One forward step x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps (n * dim floats, one t). */
GMDEF int  gm_diffusion_q_step(const gm_diffusion_schedule *s, const float *xprev, const float *eps, int t,
                               int n, int dim, float *xt);

/* An eps predictor: eps(x, t) for n examples at one timestep t; 0 or -1. */
typedef int (*gm_diffusion_eps_fn)(void *ctx, const float *x, int t, int n, float *eps);

typedef struct gm_diffusion_sampler {
    int kind;                /* GM_DIFF_DDPM (all T steps) or GM_DIFF_DDIM */
    int steps;               /* DDIM steps, 1..T */
    float eta;               /* DDIM noise: 0 deterministic, 1 DDPM-like */
    int clip_x0;             /* 1: clip the predicted x_0 to [-1, 1] at every step (images) */
    int frames;              /* > 0: record `frames` snapshots x_T ... x_0 into traj */
    float *traj;             /* frames * n * dim floats (frame-major), or NULL */
} gm_diffusion_sampler;
GMDEF gm_diffusion_sampler gm_diffusion_ddpm_sampler(void);
GMDEF gm_diffusion_sampler gm_diffusion_ddim_sampler(int steps, float eta);
/* x (n * dim) holds x_T on entry (the caller's noise) and the samples on return. rng: the noise
   of the stochastic steps (unused by deterministic DDIM, may then be NULL). */
GMDEF int  gm_diffusion_run_sampler(const gm_diffusion_schedule *s, const gm_diffusion_sampler *sp,
                                    gm_diffusion_eps_fn fn, void *ctx, gm_rng *rng, int n, int dim, float *x);
/* Deterministic DDIM backwards over `steps` steps: x holds x_0 on entry and x_T on return. */
GMDEF int  gm_diffusion_ddim_invert(const gm_diffusion_schedule *s, int steps, gm_diffusion_eps_fn fn, void *ctx,
                                    int n, int dim, float *x);
/* Sinusoidal embedding of n values (PyTorch reference: sin of v 10000^(-i/half), then cosines). */
GMDEF void gm_diffusion_timestep_embedding(const float *v, int n, int dim, float *out);

/* ======================================================================================= */
/* The diffusion model                                                                     */
/* ======================================================================================= */
typedef struct gm_diffusion_config {
    int channels, height, width;  /* one example; vectors: channels = dimension, height = width = 1 */
    int net;                 /* GM_DIFF_NET_MLP (vectors default) or GM_DIFF_NET_UNET (images default) */
    int hidden, depth;       /* MLP: width and layers (128, 3) */
    int base;                /* U-Net: base channels C, a multiple of `groups` (32) */
    int groups;              /* U-Net: group-norm groups (8) */
    int attn;                /* U-Net: 1 = self-attention at the lowest resolution, between the middle blocks (0) */
    int temb;                /* sinusoidal embedding dimensions (MLP 32; U-Net: C) */
    int schedule;            /* GM_DIFF_LINEAR (default) or GM_DIFF_COSINE */
    int T;                   /* diffusion steps (1000) */
    float beta_start, beta_end;   /* linear schedule (1e-4, 0.02) */
    int prediction;          /* GM_DIFF_PRED_EPS (default) or GM_DIFF_PRED_V */
    int classes;             /* > 0: class-conditional with that many classes (0) */
    float p_uncond;          /* conditional: probability a training label becomes the null class (0.1) */
    float ema_decay;         /* EMA decay (0.999 images, 0.99 vectors) */
    float ema_warmup;        /* d_n = min(decay, (1 + n) / (warmup + n)); 0: flat decay (10) */
    int sample_steps;        /* gm_diffusion_sample: DDIM steps (50), eta 0 */
    int clip_x0;             /* sampling clips the predicted x_0 to [-1, 1] (0) */
    float lr;                /* Adam (2e-4 images, 3e-3 vectors) */
    int batch;               /* recommended batch (128 images, 256 vectors) */
    float clip_norm;         /* gradient clipping (0: none) */
    uint64_t seed;           /* weights, timesteps, noise and label dropout */
} gm_diffusion_config;

/* A residual block of the U-Net. */
typedef struct gm_diffusion_block {
    gm_groupnorm n1, n2;
    gm_conv c1, c2, skip;    /* skip.cout == 0: identity */
    gm_linear t;             /* time embedding -> per-channel shift */
} gm_diffusion_block;

/* One copy of the network's layers (the trained weights and the EMA weights have one each). */
typedef struct gm_diffusion_net {
    gm_params *p;
    gm_linear te1, te2;      /* time embedding MLP */
    int cemb;                /* class embedding view (classes + 1, width), -1 if unconditional */
    /* MLP */
    gm_linear in, out;
    gm_linear lin[8], tp[8];
    /* U-Net */
    gm_conv stem, down1, down2, up2, up1, outc;
    gm_diffusion_block d1, d2, d3, m1, m2, u3, u2, u1;
    gm_groupnorm outn;
    gm_groupnorm an;         /* self-attention (cfg.attn): norm, 1x1 to q, k, v, 1x1 out */
    gm_conv aqkv, aout;
} gm_diffusion_net;

typedef struct gm_diffusion {
    gm_diffusion_config cfg;
    gm_params params;        /* trained weights */
    gm_params ema;           /* their exponential moving average (same views), used for sampling */
    gm_optim opt;
    gm_graph *graph;
    gm_rng rng;              /* timesteps, noise, label dropout, sampling noise */
    gm_diffusion_schedule sched;
    gm_diffusion_net net, ema_net;
    int dim;                 /* floats per example */
    long step;               /* optimizer steps taken */
    long ema_updates;
    float *buf;              /* scratch */
    size_t buf_cap;
    int *ibuf;
    size_t ibuf_cap;
} gm_diffusion;

typedef struct gm_diffusion_stats {
    float loss;              /* mean squared error of the prediction */
    float grad_norm;
} gm_diffusion_stats;

/* Defaults for examples of shape c x h x w: vectors (h = w = 1) an MLP, images the U-Net. */
GMDEF gm_diffusion_config gm_diffusion_default_config(int c, int h, int w);
GMDEF int  gm_diffusion_init(gm_diffusion *m, const gm_diffusion_config *cfg);
GMDEF void gm_diffusion_free(gm_diffusion *m);
GMDEF int  gm_diffusion_train_step(gm_diffusion *m, const float *x, const int *labels, int n, gm_diffusion_stats *stats);
/* The network's output (N, dim) for x (N, dim), timesteps t (N) and labels (N, or NULL:
   unconditional model, or the null class for a conditional one); ema 1 uses the EMA weights. */
GMDEF gm_tensor *gm_diffusion_forward(gm_graph *g, gm_diffusion *m, gm_tensor *x, const int *t, const int *labels, int ema);
/* The U-Net's self-attention on tensors: x + o(V softmax(Q^T K / sqrt(C))^T) with [Q; K; V] =
   wqkv h + bqkv per position, h (N, C, H, W) the normalized x; wqkv (3C, C, 1, 1), bqkv (3C),
   wo (C, C, 1, 1), bo (C). One head over the H W positions of each example. */
GMDEF gm_tensor *gm_diffusion_attention(gm_graph *g, gm_tensor *x, gm_tensor *h, gm_tensor *wqkv, gm_tensor *bqkv,
                                        gm_tensor *wo, gm_tensor *bo);
/* n samples with the default sampler (DDIM cfg.sample_steps, eta 0, guidance 0). */
GMDEF int  gm_diffusion_sample(gm_diffusion *m, const int *labels, int n, float *out);
/* With a given sampler and guidance weight w (0: none; > 0 needs a conditional model and labels).
   noise: x_T (n * dim) or NULL to draw it. */
GMDEF int  gm_diffusion_sample_with(gm_diffusion *m, const int *labels, int n, const gm_diffusion_sampler *sp,
                                    float guidance, const float *noise, float *out);
/* x_0 -> x_T with deterministic DDIM (EMA weights). */
GMDEF int  gm_diffusion_invert(gm_diffusion *m, const int *labels, int n, int steps, const float *x0, float *xT);
/* The loss of the EMA (ema = 1) or trained weights on n examples, t_i = floor(i T / n), noise from seed. */
GMDEF int  gm_diffusion_test_loss(gm_diffusion *m, const float *x, const int *labels, int n, int ema, uint64_t seed,
                                  double *loss);
GMDEF int  gm_diffusion_save(const gm_diffusion *m, const char *path);
GMDEF int  gm_diffusion_load(gm_diffusion *m, const char *path);

/* ======================================================================================= */
/* Score model with annealed Langevin dynamics                                             */
/* ======================================================================================= */
typedef struct gm_score_config {
    int dim;                 /* vector dimension */
    int hidden, depth;       /* MLP (128, 3) */
    int temb;                /* embedding of the noise level (32) */
    int levels;              /* noise levels L (10) */
    float sigma_max, sigma_min;   /* geometric from sigma_max down to sigma_min (3, 0.01) */
    int langevin_steps;      /* K per level (100) */
    float step_eps;          /* Langevin step a = eps sigma_i^2 / sigma_L^2 (2e-5) */
    int denoise;             /* 1: a last Tweedie step at sigma_L (1) */
    float lr;                /* Adam (3e-3) */
    int batch;               /* recommended batch (256) */
    uint64_t seed;
} gm_score_config;

typedef struct gm_score {
    gm_score_config cfg;
    gm_params params;
    gm_optim opt;
    gm_graph *graph;
    gm_rng rng;
    gm_diffusion_net net;    /* the MLP, conditioned on the level instead of a timestep */
    float *sigmas;           /* levels values, decreasing */
    long step;
} gm_score;

typedef struct gm_score_stats { float loss; float grad_norm; } gm_score_stats;

GMDEF gm_score_config gm_score_default_config(int dim);
GMDEF int  gm_score_init(gm_score *m, const gm_score_config *cfg);
GMDEF void gm_score_free(gm_score *m);
GMDEF int  gm_score_train_step(gm_score *m, const float *x, const int *labels, int n, gm_score_stats *stats);
/* The net's output (N, dim) at levels lv (N); the score is output / sigma_lv. */
GMDEF gm_tensor *gm_score_forward(gm_graph *g, gm_score *m, gm_tensor *x, const int *lv);
/* The score s(x, sigma_level) of n points (plain arrays). */
GMDEF int  gm_score_field(gm_score *m, const float *x, int n, int level, float *score);
GMDEF int  gm_score_sample(gm_score *m, const int *labels, int n, float *out);
/* Annealed Langevin from x (n * dim: the start, e.g. uniform noise) in place. */
GMDEF int  gm_score_langevin(gm_score *m, int n, int steps_per_level, float step_eps, float *x);
GMDEF int  gm_score_save(const gm_score *m, const char *path);
GMDEF int  gm_score_load(gm_score *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* GENMOD_DIFFUSION_H */

/* ======================================================================================= */
/* Implementation                                                                          */
/* ======================================================================================= */
#ifdef GENMOD_DIFFUSION_IMPLEMENTATION
#ifndef GENMOD_DIFFUSION_IMPLEMENTATION_INCLUDED
#define GENMOD_DIFFUSION_IMPLEMENTATION_INCLUDED

#if defined(GENMOD_STATIC) && !defined(GENMOD_IMPLEMENTATION_INCLUDED)
#error "genmod_diffusion.h: with GENMOD_STATIC, define GENMOD_IMPLEMENTATION and include genmod.h in this file first"
#endif

#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(GENMOD_MALLOC) != defined(GENMOD_FREE) || defined(GENMOD_MALLOC) != defined(GENMOD_REALLOC)
#error "genmod_diffusion.h: define GENMOD_MALLOC, GENMOD_REALLOC and GENMOD_FREE together, or none of them"
#endif
#ifndef GENMOD_MALLOC
#define GENMOD_MALLOC(sz) malloc(sz)
#define GENMOD_REALLOC(p, sz) realloc(p, sz)
#define GENMOD_FREE(p) free(p)
#endif
#ifdef __cplusplus
#define GM__DIFF_CAST(type, x) static_cast<type>(x)
#define GM__DIFF_UNCONST(type, x) const_cast<type>(x)
#else
#define GM__DIFF_CAST(type, x) ((type)(x))
#define GM__DIFF_UNCONST(type, x) ((type)(x))
#endif
#define GM__DIFF_PI 3.14159265358979323846
#define GM__DIFF_MIN(a, b) ((a) < (b) ? (a) : (b))
#define GM__DIFF_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---------------------------------------------------------------------------------------- */
/* Schedules                                                                                */
/* ---------------------------------------------------------------------------------------- */
GMDEF void gm_diffusion_schedule_free(gm_diffusion_schedule *s) {
    if (!s) return;
    GENMOD_FREE(s->beta);
    GENMOD_FREE(s->alpha_bar);
    s->beta = s->alpha_bar = NULL;
    s->T = 0;
}

GMDEF int gm_diffusion_schedule_from_betas(gm_diffusion_schedule *s, const double *beta, int T) {
    double ab = 1.0;
    int t;
    if (!s || !beta) return gm_fail("gm_diffusion_schedule: NULL argument");
    memset(s, 0, sizeof *s);
    if (T < 1) return gm_fail("gm_diffusion_schedule: T must be >= 1, is %d", T);
    for (t = 0; t < T; t++)
        if (!(beta[t] > 0 && beta[t] < 1))
            return gm_fail("gm_diffusion_schedule: beta[%d] = %g is outside (0, 1)", t, beta[t]);
    s->beta = GM__DIFF_CAST(double *, GENMOD_MALLOC(sizeof(double) * (size_t)T));
    s->alpha_bar = GM__DIFF_CAST(double *, GENMOD_MALLOC(sizeof(double) * (size_t)T));
    if (!s->beta || !s->alpha_bar) {
        gm_diffusion_schedule_free(s);
        return gm_fail("gm_diffusion_schedule: out of memory (T = %d)", T);
    }
    for (t = 0; t < T; t++) {
        ab *= 1.0 - beta[t];
        s->beta[t] = beta[t];
        s->alpha_bar[t] = ab;
    }
    s->T = T;
    return 0;
}

static double gm__diff_cosine_f(double t, int T) {
    double c = cos((t / T + 0.008) / 1.008 * GM__DIFF_PI / 2);
    return c * c;
}

GMDEF int gm_diffusion_schedule_init(gm_diffusion_schedule *s, int kind, int T, double beta_start, double beta_end) {
    double *b;
    int t, rc;
    if (!s) return gm_fail("gm_diffusion_schedule_init: NULL schedule");
    memset(s, 0, sizeof *s);
    if (T < 1) return gm_fail("gm_diffusion_schedule_init: T must be >= 1, is %d", T);
    if (kind != GM_DIFF_LINEAR && kind != GM_DIFF_COSINE)
        return gm_fail("gm_diffusion_schedule_init: unknown schedule %d (GM_DIFF_LINEAR or GM_DIFF_COSINE)", kind);
    if (kind == GM_DIFF_LINEAR && !(beta_start > 0 && beta_start < 1 && beta_end > 0 && beta_end < 1))
        return gm_fail("gm_diffusion_schedule_init: betas %g .. %g must lie in (0, 1)", beta_start, beta_end);
    b = GM__DIFF_CAST(double *, GENMOD_MALLOC(sizeof(double) * (size_t)T));
    if (!b) return gm_fail("gm_diffusion_schedule_init: out of memory (T = %d)", T);
    for (t = 0; t < T; t++) {
        if (kind == GM_DIFF_LINEAR) b[t] = T == 1 ? beta_start : beta_start + (beta_end - beta_start) * t / (T - 1);
        else b[t] = GM__DIFF_MIN(1.0 - gm__diff_cosine_f(t + 1, T) / gm__diff_cosine_f(t, T), 0.999);
    }
    rc = gm_diffusion_schedule_from_betas(s, b, T);
    GENMOD_FREE(b);
    return rc;
}

static int gm__diff_check_sched(const gm_diffusion_schedule *s, const char *who) {
    if (!s || s->T < 1 || !s->beta || !s->alpha_bar) return gm_fail("%s: schedule not initialized", who);
    return 0;
}

GMDEF int gm_diffusion_q_sample(const gm_diffusion_schedule *s, const float *x0, const float *eps, const int *t,
                                int n, int dim, float *xt) {
    int i, j;
    if (gm__diff_check_sched(s, "gm_diffusion_q_sample") != 0) return -1;
    if (!x0 || !eps || !t || !xt || n < 0 || dim < 1) return gm_fail("gm_diffusion_q_sample: bad arguments");
    for (i = 0; i < n; i++) {
        double a, b;
        if (t[i] < 0 || t[i] >= s->T) return gm_fail("gm_diffusion_q_sample: t[%d] = %d outside 0..%d", i, t[i], s->T - 1);
        a = sqrt(s->alpha_bar[t[i]]);
        b = sqrt(1.0 - s->alpha_bar[t[i]]);
        for (j = 0; j < dim; j++) {
            size_t k = (size_t)i * dim + j;
            xt[k] = (float)(a * x0[k] + b * eps[k]);
        }
    }
    return 0;
}

GMDEF int gm_diffusion_q_step(const gm_diffusion_schedule *s, const float *xprev, const float *eps, int t,
                              int n, int dim, float *xt) {
    size_t k, m = (size_t)n * dim;
    double a, b;
    if (gm__diff_check_sched(s, "gm_diffusion_q_step") != 0) return -1;
    if (!xprev || !eps || !xt || n < 0 || dim < 1 || t < 0 || t >= s->T)
        return gm_fail("gm_diffusion_q_step: bad arguments (t = %d, T = %d)", t, s->T);
    a = sqrt(1.0 - s->beta[t]);
    b = sqrt(s->beta[t]);
    for (k = 0; k < m; k++) xt[k] = (float)(a * xprev[k] + b * eps[k]);
    return 0;
}

GMDEF void gm_diffusion_timestep_embedding(const float *v, int n, int dim, float *out) {
    int i, k, half = dim / 2;
    for (i = 0; i < n; i++) {
        float *o = out + (size_t)i * dim;
        for (k = 0; k < half; k++) {
            double a = v[i] * exp(-log(10000.0) * k / half);
            o[k] = (float)sin(a);
            o[half + k] = (float)cos(a);
        }
        if (dim % 2) o[dim - 1] = 0;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Samplers                                                                                 */
/* ---------------------------------------------------------------------------------------- */
GMDEF gm_diffusion_sampler gm_diffusion_ddpm_sampler(void) {
    gm_diffusion_sampler sp;
    memset(&sp, 0, sizeof sp);
    sp.kind = GM_DIFF_DDPM;
    return sp;
}

GMDEF gm_diffusion_sampler gm_diffusion_ddim_sampler(int steps, float eta) {
    gm_diffusion_sampler sp;
    memset(&sp, 0, sizeof sp);
    sp.kind = GM_DIFF_DDIM;
    sp.steps = steps;
    sp.eta = eta;
    return sp;
}

/* DDIM's timesteps round(linspace(0, T-1, S)), ascending. */
static void gm__diff_ddim_times(int T, int S, int *ts) {
    int i;
    for (i = 0; i < S; i++) ts[i] = S == 1 ? T - 1 : (int)floor((double)(T - 1) * i / (S - 1) + 0.5);
}

/* Snapshot k of `frames` after step `done` of `total` (frame 0 is the start, the last the end). */
static void gm__diff_record(const gm_diffusion_sampler *sp, int done, int total, const float *x, size_t m) {
    int f;
    if (!sp->traj || sp->frames <= 0) return;
    for (f = 0; f < sp->frames; f++) {
        int at = sp->frames == 1 ? total : (int)((long)f * total / (sp->frames - 1));
        if (at == done) memcpy(sp->traj + (size_t)f * m, x, sizeof(float) * m);
    }
}

static float gm__diff_clip(float v, int clip) { return clip ? (v < -1 ? -1.0f : v > 1 ? 1.0f : v) : v; }

static int gm__diff_ddpm(const gm_diffusion_schedule *s, const gm_diffusion_sampler *sp, gm_diffusion_eps_fn fn,
                         void *ctx, gm_rng *rng, int n, int dim, float *x, float *e) {
    size_t k, m = (size_t)n * dim;
    int t;
    for (t = s->T - 1; t >= 0; t--) {
        double a = 1.0 - s->beta[t], ab = s->alpha_bar[t], abp = t > 0 ? s->alpha_bar[t - 1] : 1.0;
        double sd = sqrt(s->beta[t]);
        if (fn(ctx, x, t, n, e) != 0) return -1;
        for (k = 0; k < m; k++) {
            double v;
            if (sp->clip_x0) {   /* the same mean, through a clipped prediction of x_0 */
                float x0 = gm__diff_clip((float)((x[k] - sqrt(1 - ab) * e[k]) / sqrt(ab)), 1);
                v = (sqrt(abp) * s->beta[t] * x0 + sqrt(a) * (1 - abp) * x[k]) / (1 - ab);
            } else
                v = (x[k] - (1 - a) / sqrt(1 - ab) * e[k]) / sqrt(a);
            if (t > 0) v += sd * gm_rng_normal(rng);
            x[k] = (float)v;
        }
        gm__diff_record(sp, s->T - t, s->T, x, m);
    }
    return 0;
}

static int gm__diff_ddim(const gm_diffusion_schedule *s, const gm_diffusion_sampler *sp, gm_diffusion_eps_fn fn,
                         void *ctx, gm_rng *rng, int n, int dim, float *x, float *e, int *ts) {
    size_t k, m = (size_t)n * dim;
    int i, S = sp->steps;
    gm__diff_ddim_times(s->T, S, ts);
    for (i = S - 1; i >= 0; i--) {
        int t = ts[i];
        double ab = s->alpha_bar[t], abp = i > 0 ? s->alpha_bar[ts[i - 1]] : 1.0;
        double sig = i > 0 ? sp->eta * sqrt((1 - abp) / (1 - ab) * (1 - ab / abp)) : 0.0;
        double dir = sqrt(GM__DIFF_MAX(1 - abp - sig * sig, 0.0));
        if (fn(ctx, x, t, n, e) != 0) return -1;
        for (k = 0; k < m; k++) {
            double x0 = gm__diff_clip((float)((x[k] - sqrt(1 - ab) * e[k]) / sqrt(ab)), sp->clip_x0);
            double ek = sp->clip_x0 ? (x[k] - sqrt(ab) * x0) / sqrt(1 - ab) : e[k];
            double v = sqrt(abp) * x0 + dir * ek;
            if (sig > 0) v += sig * gm_rng_normal(rng);
            x[k] = (float)v;
        }
        gm__diff_record(sp, S - i, S, x, m);
    }
    return 0;
}

static int gm__diff_check_sampler(const gm_diffusion_schedule *s, const gm_diffusion_sampler *sp, gm_diffusion_eps_fn fn,
                                  gm_rng *rng, int n, int dim, const float *x, const char *who) {
    if (gm__diff_check_sched(s, who) != 0) return -1;
    if (!sp || !fn || !x || n < 0 || dim < 1) return gm_fail("%s: bad arguments", who);
    if (sp->kind != GM_DIFF_DDPM && sp->kind != GM_DIFF_DDIM) return gm_fail("%s: unknown sampler kind %d", who, sp->kind);
    if (sp->kind == GM_DIFF_DDIM && (sp->steps < 1 || sp->steps > s->T))
        return gm_fail("%s: DDIM steps must be in 1..T = %d, is %d", who, s->T, sp->steps);
    if (sp->kind == GM_DIFF_DDIM && !(sp->eta >= 0 && sp->eta <= 10))
        return gm_fail("%s: eta must be in [0, 10], is %g", who, (double)sp->eta);
    if (!rng && (sp->kind == GM_DIFF_DDPM || sp->eta > 0)) return gm_fail("%s: a stochastic sampler needs an rng", who);
    if (sp->frames > 0 && !sp->traj) return gm_fail("%s: frames %d but no traj buffer", who, sp->frames);
    return 0;
}

GMDEF int gm_diffusion_run_sampler(const gm_diffusion_schedule *s, const gm_diffusion_sampler *sp,
                                   gm_diffusion_eps_fn fn, void *ctx, gm_rng *rng, int n, int dim, float *x) {
    const char *who = "gm_diffusion_run_sampler";
    float *e;
    int *ts = NULL, rc;
    if (gm__diff_check_sampler(s, sp, fn, rng, n, dim, x, who) != 0) return -1;
    if (n == 0) return 0;
    e = GM__DIFF_CAST(float *, GENMOD_MALLOC(sizeof(float) * (size_t)n * dim));
    if (sp->kind == GM_DIFF_DDIM) ts = GM__DIFF_CAST(int *, GENMOD_MALLOC(sizeof(int) * (size_t)sp->steps));
    if (!e || (sp->kind == GM_DIFF_DDIM && !ts)) {
        GENMOD_FREE(e);
        GENMOD_FREE(ts);
        return gm_fail("%s: out of memory", who);
    }
    gm__diff_record(sp, 0, 1, x, (size_t)n * dim);
    rc = sp->kind == GM_DIFF_DDPM ? gm__diff_ddpm(s, sp, fn, ctx, rng, n, dim, x, e)
                                  : gm__diff_ddim(s, sp, fn, ctx, rng, n, dim, x, e, ts);
    GENMOD_FREE(e);
    GENMOD_FREE(ts);
    return rc;
}

GMDEF int gm_diffusion_ddim_invert(const gm_diffusion_schedule *s, int steps, gm_diffusion_eps_fn fn, void *ctx,
                                   int n, int dim, float *x) {
    const char *who = "gm_diffusion_ddim_invert";
    size_t k, m = (size_t)n * dim;
    float *e;
    int *ts, i, rc = 0;
    if (gm__diff_check_sched(s, who) != 0) return -1;
    if (!fn || !x || n < 0 || dim < 1) return gm_fail("%s: bad arguments", who);
    if (steps < 1 || steps > s->T) return gm_fail("%s: steps must be in 1..T = %d, is %d", who, s->T, steps);
    e = GM__DIFF_CAST(float *, GENMOD_MALLOC(sizeof(float) * (m ? m : 1)));
    ts = GM__DIFF_CAST(int *, GENMOD_MALLOC(sizeof(int) * (size_t)steps));
    if (!e || !ts) rc = gm_fail("%s: out of memory", who);
    if (rc == 0) gm__diff_ddim_times(s->T, steps, ts);
    /* step i goes from timestep ts[i-1] (x_0 for i = 0) to ts[i], with eps taken at the start, the
       mirror of the sampler's step from ts[i] down to ts[i-1] */
    for (i = 0; rc == 0 && i < steps && n > 0; i++) {
        int tin = ts[i > 0 ? i - 1 : 0];
        double ab = i > 0 ? s->alpha_bar[ts[i - 1]] : 1.0, abn = s->alpha_bar[ts[i]];
        if (fn(ctx, x, tin, n, e) != 0) { rc = -1; break; }
        for (k = 0; k < m; k++) {
            double x0 = (x[k] - sqrt(1 - ab) * e[k]) / sqrt(ab);
            x[k] = (float)(sqrt(abn) * x0 + sqrt(1 - abn) * e[k]);
        }
    }
    GENMOD_FREE(e);
    GENMOD_FREE(ts);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Networks                                                                                 */
/* ---------------------------------------------------------------------------------------- */
/* The time (or level) embedding MLP and the class embedding, shared by both networks. */
static int gm__diff_embed_init(gm_diffusion_net *N, gm_params *p, int temb, int width, int classes, gm_rng *r) {
    int shape[2];
    N->p = p;
    N->cemb = -1;
    if (gm_linear_init(&N->te1, p, "temb1", temb, width, GM_INIT_TORCH, r) != 0 ||
        gm_linear_init(&N->te2, p, "temb2", width, width, GM_INIT_TORCH, r) != 0) return -1;
    if (classes > 0) {
        shape[0] = classes + 1; shape[1] = width;
        if ((N->cemb = gm_params_add(p, "cemb", 2, shape)) < 0) return -1;
        gm_init_normal(r, gm_params_data(p, N->cemb), (size_t)(classes + 1) * width, 0.0f, 1.0f);
    }
    return 0;
}

/* e = te2(SiLU(te1(sinusoid(v)))) [+ cemb[label]]: (N, width). */
static gm_tensor *gm__diff_embed(gm_graph *g, const gm_diffusion_net *N, const float *v, int n, int temb,
                                 const int *labels, int classes) {
    gm_tensor *e;
    float *sn = GM__DIFF_CAST(float *, GENMOD_MALLOC(sizeof(float) * (size_t)n * temb));
    if (!sn) return NULL;
    gm_diffusion_timestep_embedding(v, n, temb, sn);
    e = gm_input(g, sn, n, temb, 0, 0);   /* a copy */
    GENMOD_FREE(sn);
    e = gm_linear_forward(g, &N->te2, gm_silu(g, gm_linear_forward(g, &N->te1, e)));
    if (N->cemb >= 0) {
        const int *lab = labels;
        int *nul = NULL, i;
        gm_tensor *oh;
        if (!lab) {   /* the null class */
            nul = GM__DIFF_CAST(int *, GENMOD_MALLOC(sizeof(int) * (size_t)n));
            if (!nul) return NULL;
            for (i = 0; i < n; i++) nul[i] = classes;
            lab = nul;
        }
        oh = gm_one_hot(g, lab, n, classes + 1);
        GENMOD_FREE(nul);
        e = gm_add(g, e, gm_matmul(g, oh, gm_param(g, N->p, N->cemb), 0, 0));
    }
    return e;
}

static int gm__diff_mlp_init(gm_diffusion_net *N, gm_params *p, int dim, int hidden, int depth, int temb, int classes,
                             gm_rng *r) {
    char name[32];
    int k;
    if (gm__diff_embed_init(N, p, temb, hidden, classes, r) != 0 ||
        gm_linear_init(&N->in, p, "in", dim, hidden, GM_INIT_TORCH, r) != 0) return -1;
    for (k = 0; k < depth; k++) {
        snprintf(name, sizeof name, "tp%d", k);
        if (gm_linear_init(&N->tp[k], p, name, hidden, hidden, GM_INIT_TORCH, r) != 0) return -1;
        snprintf(name, sizeof name, "lin%d", k);
        if (gm_linear_init(&N->lin[k], p, name, hidden, hidden, GM_INIT_TORCH, r) != 0) return -1;
    }
    return gm_linear_init(&N->out, p, "out", hidden, dim, GM_INIT_TORCH, r);
}

static gm_tensor *gm__diff_mlp_forward(gm_graph *g, const gm_diffusion_net *N, int depth, gm_tensor *x, gm_tensor *e) {
    gm_tensor *h = gm_linear_forward(g, &N->in, x), *se = gm_silu(g, e);
    int k;
    for (k = 0; k < depth; k++)
        h = gm_linear_forward(g, &N->lin[k], gm_silu(g, gm_add(g, h, gm_linear_forward(g, &N->tp[k], se))));
    return gm_linear_forward(g, &N->out, gm_silu(g, h));
}

static int gm__diff_block_init(gm_diffusion_block *B, gm_params *p, const char *name, int a, int b, int tdim, int groups,
                               gm_rng *r) {
    char nm[32];
    memset(B, 0, sizeof *B);
    snprintf(nm, sizeof nm, "%s.n1", name);
    if (gm_groupnorm_init(&B->n1, p, nm, a, groups) != 0) return -1;
    snprintf(nm, sizeof nm, "%s.c1", name);
    if (gm_conv_init(&B->c1, p, nm, a, b, 3, 1, 1, GM_INIT_TORCH, r) != 0) return -1;
    snprintf(nm, sizeof nm, "%s.t", name);
    if (gm_linear_init(&B->t, p, nm, tdim, b, GM_INIT_TORCH, r) != 0) return -1;
    snprintf(nm, sizeof nm, "%s.n2", name);
    if (gm_groupnorm_init(&B->n2, p, nm, b, groups) != 0) return -1;
    snprintf(nm, sizeof nm, "%s.c2", name);
    if (gm_conv_init(&B->c2, p, nm, b, b, 3, 1, 1, GM_INIT_TORCH, r) != 0) return -1;
    snprintf(nm, sizeof nm, "%s.skip", name);
    if (a != b && gm_conv_init(&B->skip, p, nm, a, b, 1, 1, 0, GM_INIT_TORCH, r) != 0) return -1;
    return 0;
}

/* h = c1(SiLU(n1(x))) + t(se) per channel; h = c2(SiLU(n2(h))); out = h + skip(x). */
static gm_tensor *gm__diff_block(gm_graph *g, const gm_diffusion_block *B, gm_tensor *x, gm_tensor *se) {
    gm_tensor *h = gm_conv_forward(g, &B->c1, gm_silu(g, gm_groupnorm_forward(g, &B->n1, x)));
    gm_tensor *tp = gm_linear_forward(g, &B->t, se);
    if (!h || !tp) return NULL;
    h = gm_add(g, h, gm_reshape(g, tp, tp->shape[0], tp->shape[1], 1, 1));
    h = gm_conv_forward(g, &B->c2, gm_silu(g, gm_groupnorm_forward(g, &B->n2, h)));
    return gm_add(g, h, B->skip.cout > 0 ? gm_conv_forward(g, &B->skip, x) : x);
}

GMDEF gm_tensor *gm_diffusion_attention(gm_graph *g, gm_tensor *x, gm_tensor *h, gm_tensor *wqkv, gm_tensor *bqkv,
                                        gm_tensor *wo, gm_tensor *bo) {
    gm_tensor *qkv, *q, *k, *v, *a;
    int n, C, H, W;
    if (!g || !x || !h || !wqkv || !bqkv || !wo || !bo || x->ndim != 4) return NULL;
    n = x->shape[0]; C = x->shape[1]; H = x->shape[2]; W = x->shape[3];
    qkv = gm_reshape(g, gm_bias_add(g, gm_conv2d(g, h, wqkv, 1, 0), bqkv), n, 3 * C, H * W, 0);
    q = gm_slice(g, qkv, 1, 0, C);
    k = gm_slice(g, qkv, 1, C, C);
    v = gm_slice(g, qkv, 1, 2 * C, C);
    a = gm_softmax(g, gm_scale(g, gm_bmm(g, q, k, 1, 0), 1.0f / sqrtf((float)C)));   /* (n, HW, HW) */
    a = gm_reshape(g, gm_bmm(g, v, a, 0, 1), n, C, H, W);                         /* (n, C, HW) */
    return gm_add(g, x, gm_bias_add(g, gm_conv2d(g, a, wo, 1, 0), bo));
}

static int gm__diff_attn_init(gm_diffusion_net *N, gm_params *p, int C, int groups, gm_rng *r) {
    if (gm_groupnorm_init(&N->an, p, "attn.n", C, groups) != 0 ||
        gm_conv_init(&N->aqkv, p, "attn.qkv", C, 3 * C, 1, 1, 0, GM_INIT_TORCH, r) != 0 ||
        gm_conv_init(&N->aout, p, "attn.o", C, C, 1, 1, 0, GM_INIT_TORCH, r) != 0) return -1;
    return 0;
}

static gm_tensor *gm__diff_attn(gm_graph *g, const gm_diffusion_net *N, gm_tensor *x) {
    gm_params *p = N->aqkv.p;
    return gm_diffusion_attention(g, x, gm_groupnorm_forward(g, &N->an, x), gm_param(g, p, N->aqkv.w),
                                  gm_param(g, p, N->aqkv.b), gm_param(g, p, N->aout.w), gm_param(g, p, N->aout.b));
}

static int gm__diff_unet_init(gm_diffusion_net *N, gm_params *p, const gm_diffusion_config *c, gm_rng *r) {
    int C = c->base, td = 4 * C, G = c->groups, ci = c->channels;
    if (gm__diff_embed_init(N, p, c->temb, td, c->classes, r) != 0) return -1;
    if (gm_conv_init(&N->stem, p, "stem", ci, C, 3, 1, 1, GM_INIT_TORCH, r) != 0 ||
        gm__diff_block_init(&N->d1, p, "d1", C, C, td, G, r) != 0 ||
        gm_conv_init(&N->down1, p, "down1", C, C, 3, 2, 1, GM_INIT_TORCH, r) != 0 ||
        gm__diff_block_init(&N->d2, p, "d2", C, 2 * C, td, G, r) != 0 ||
        gm_conv_init(&N->down2, p, "down2", 2 * C, 2 * C, 3, 2, 1, GM_INIT_TORCH, r) != 0 ||
        gm__diff_block_init(&N->d3, p, "d3", 2 * C, 2 * C, td, G, r) != 0 ||
        gm__diff_block_init(&N->m1, p, "m1", 2 * C, 2 * C, td, G, r) != 0 ||
        gm__diff_block_init(&N->m2, p, "m2", 2 * C, 2 * C, td, G, r) != 0 ||
        (c->attn && gm__diff_attn_init(N, p, 2 * C, G, r) != 0) ||
        gm__diff_block_init(&N->u3, p, "u3", 4 * C, 2 * C, td, G, r) != 0 ||
        gm_conv_init(&N->up2, p, "up2", 2 * C, 2 * C, 3, 1, 1, GM_INIT_TORCH, r) != 0 ||
        gm__diff_block_init(&N->u2, p, "u2", 4 * C, 2 * C, td, G, r) != 0 ||
        gm_conv_init(&N->up1, p, "up1", 2 * C, 2 * C, 3, 1, 1, GM_INIT_TORCH, r) != 0 ||
        gm__diff_block_init(&N->u1, p, "u1", 3 * C, C, td, G, r) != 0 ||
        gm_groupnorm_init(&N->outn, p, "outn", C, G) != 0 ||
        gm_conv_init(&N->outc, p, "out", C, ci, 3, 1, 1, GM_INIT_TORCH, r) != 0) return -1;
    return 0;
}

static gm_tensor *gm__diff_unet_forward(gm_graph *g, const gm_diffusion_net *N, int attn, gm_tensor *x, gm_tensor *e) {
    gm_tensor *se = gm_silu(g, e), *h1, *h2, *h3, *u;
    h1 = gm__diff_block(g, &N->d1, gm_conv_forward(g, &N->stem, x), se);
    h2 = gm__diff_block(g, &N->d2, gm_conv_forward(g, &N->down1, h1), se);
    h3 = gm__diff_block(g, &N->d3, gm_conv_forward(g, &N->down2, h2), se);
    u = gm__diff_block(g, &N->m1, h3, se);
    if (attn) u = gm__diff_attn(g, N, u);
    u = gm__diff_block(g, &N->m2, u, se);
    u = gm__diff_block(g, &N->u3, gm_concat(g, u, h3, 1), se);
    u = gm_conv_forward(g, &N->up2, gm_upsample_nearest(g, u, 2));
    u = gm__diff_block(g, &N->u2, gm_concat(g, u, h2, 1), se);
    u = gm_conv_forward(g, &N->up1, gm_upsample_nearest(g, u, 2));
    u = gm__diff_block(g, &N->u1, gm_concat(g, u, h1, 1), se);
    return gm_conv_forward(g, &N->outc, gm_silu(g, gm_groupnorm_forward(g, &N->outn, u)));
}

/* ---------------------------------------------------------------------------------------- */
/* The diffusion model: building                                                            */
/* ---------------------------------------------------------------------------------------- */
GMDEF gm_diffusion_config gm_diffusion_default_config(int c, int h, int w) {
    gm_diffusion_config cfg;
    int img = h > 1 || w > 1;
    memset(&cfg, 0, sizeof cfg);
    cfg.channels = c; cfg.height = h; cfg.width = w;
    cfg.net = img ? GM_DIFF_NET_UNET : GM_DIFF_NET_MLP;
    cfg.hidden = 128; cfg.depth = 3;
    cfg.base = 32; cfg.groups = 8;
    cfg.temb = img ? cfg.base : 32;
    cfg.schedule = GM_DIFF_LINEAR; cfg.T = 1000; cfg.beta_start = 1e-4f; cfg.beta_end = 0.02f;
    cfg.prediction = GM_DIFF_PRED_EPS;
    cfg.classes = 0; cfg.p_uncond = 0.1f;
    cfg.ema_decay = img ? 0.999f : 0.99f; cfg.ema_warmup = 10;
    cfg.sample_steps = 50;
    cfg.lr = img ? 2e-4f : 3e-3f;
    cfg.batch = img ? 128 : 256;
    cfg.seed = 1;
    return cfg;
}

static int gm__diff_check_config(const gm_diffusion_config *c) {
    const char *w = "diffusion config";
    if (c->channels < 1 || c->height < 1 || c->width < 1)
        return gm_fail("%s: cfg.channels, cfg.height, cfg.width must be >= 1 (have %d, %d, %d)", w, c->channels,
                       c->height, c->width);
    if (c->net != GM_DIFF_NET_MLP && c->net != GM_DIFF_NET_UNET) return gm_fail("%s: cfg.net %d unknown", w, c->net);
    if (c->net == GM_DIFF_NET_MLP && (c->hidden < 1 || c->depth < 1 || c->depth > 8))
        return gm_fail("%s: cfg.hidden >= 1 and cfg.depth in 1..8 (have %d, %d)", w, c->hidden, c->depth);
    if (c->net == GM_DIFF_NET_UNET && (c->height % 4 || c->width % 4))
        return gm_fail("%s: the U-Net needs cfg.height and cfg.width divisible by 4 (have %d x %d)", w, c->height, c->width);
    if (c->net == GM_DIFF_NET_UNET && (c->groups < 1 || c->base < 1 || c->base % c->groups))
        return gm_fail("%s: cfg.base (%d) must be a positive multiple of cfg.groups (%d)", w, c->base, c->groups);
    if (c->attn != 0 && (c->attn != 1 || c->net != GM_DIFF_NET_UNET))
        return gm_fail("%s: cfg.attn is 0 or 1 and needs the U-Net (have %d, net %d)", w, c->attn, c->net);
    if (c->temb < 2) return gm_fail("%s: cfg.temb must be >= 2, is %d", w, c->temb);
    if (c->T < 1) return gm_fail("%s: cfg.T must be >= 1, is %d", w, c->T);
    if (c->prediction != GM_DIFF_PRED_EPS && c->prediction != GM_DIFF_PRED_V)
        return gm_fail("%s: cfg.prediction %d unknown", w, c->prediction);
    if (c->classes < 0 || !(c->p_uncond >= 0 && c->p_uncond <= 1))
        return gm_fail("%s: cfg.classes >= 0 and cfg.p_uncond in [0, 1] (have %d, %g)", w, c->classes, (double)c->p_uncond);
    if (!(c->ema_decay >= 0 && c->ema_decay < 1) || !(c->ema_warmup >= 0))
        return gm_fail("%s: cfg.ema_decay in [0, 1) and cfg.ema_warmup >= 0 (have %g, %g)", w, (double)c->ema_decay,
                       (double)c->ema_warmup);
    if (c->sample_steps < 1 || c->sample_steps > c->T)
        return gm_fail("%s: cfg.sample_steps must be in 1..T = %d, is %d", w, c->T, c->sample_steps);
    if (!(c->lr > 0) || c->batch < 1 || !(c->clip_norm >= 0))
        return gm_fail("%s: cfg.lr > 0, cfg.batch >= 1, cfg.clip_norm >= 0 (have %g, %d, %g)", w, (double)c->lr,
                       c->batch, (double)c->clip_norm);
    return 0;
}

static int gm__diff_build(gm_diffusion_net *N, gm_params *p, const gm_diffusion_config *c, int dim, gm_rng *r) {
    memset(N, 0, sizeof *N);
    if (c->net == GM_DIFF_NET_MLP) return gm__diff_mlp_init(N, p, dim, c->hidden, c->depth, c->temb, c->classes, r);
    return gm__diff_unet_init(N, p, c, r);
}

GMDEF int gm_diffusion_init(gm_diffusion *m, const gm_diffusion_config *cfg) {
    gm_rng ema_rng;
    if (!m || !cfg) return gm_fail("gm_diffusion_init: NULL argument");
    memset(m, 0, sizeof *m);
    if (gm__diff_check_config(cfg) != 0) return -1;
    m->cfg = *cfg;
    m->dim = cfg->channels * cfg->height * cfg->width;
    gm_rng_seed(&m->rng, cfg->seed);
    ema_rng = m->rng;   /* the same draws: the EMA copy starts equal to the weights */
    if (gm_diffusion_schedule_init(&m->sched, cfg->schedule, cfg->T, cfg->beta_start, cfg->beta_end) != 0 ||
        gm__diff_build(&m->net, &m->params, cfg, m->dim, &m->rng) != 0 ||
        gm__diff_build(&m->ema_net, &m->ema, cfg, m->dim, &ema_rng) != 0 ||
        !(m->graph = gm_graph_new(cfg->seed ^ 0x9e3779b97f4a7c15ULL))) {
        if (!m->graph && gm_last_error()[0] == 0) gm_fail("gm_diffusion_init: out of memory");
        gm_diffusion_free(m);
        return -1;
    }
    m->ema.frozen = 1;
    m->opt = gm_adam(cfg->lr, 0.9f, 0.999f);
    m->opt.clip_norm = cfg->clip_norm;
    return 0;
}

GMDEF void gm_diffusion_free(gm_diffusion *m) {
    if (!m) return;
    gm_params_free(&m->params);
    gm_params_free(&m->ema);
    gm_optim_free(&m->opt);
    gm_graph_free(m->graph);
    gm_diffusion_schedule_free(&m->sched);
    GENMOD_FREE(m->buf);
    GENMOD_FREE(m->ibuf);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------------------------------- */
/* The diffusion model: forward and training                                                */
/* ---------------------------------------------------------------------------------------- */
GMDEF gm_tensor *gm_diffusion_forward(gm_graph *g, gm_diffusion *m, gm_tensor *x, const int *t, const int *labels, int ema) {
    const gm_diffusion_net *N = ema ? &m->ema_net : &m->net;
    const gm_diffusion_config *c = &m->cfg;
    float *tv;
    gm_tensor *e, *y;
    int n, i;
    if (!g || !m || !x || !t) return NULL;
    n = x->shape[0];
    if (labels && c->classes == 0) return NULL;
    tv = GM__DIFF_CAST(float *, GENMOD_MALLOC(sizeof(float) * (size_t)n));
    if (!tv) return NULL;
    for (i = 0; i < n; i++) tv[i] = (float)t[i];
    e = gm__diff_embed(g, N, tv, n, c->temb, labels, c->classes);
    GENMOD_FREE(tv);
    if (c->net == GM_DIFF_NET_MLP) return gm__diff_mlp_forward(g, N, c->depth, gm_reshape(g, x, n, m->dim, 0, 0), e);
    y = gm__diff_unet_forward(g, N, c->attn, gm_reshape(g, x, n, c->channels, c->height, c->width), e);
    return y ? gm_reshape(g, y, n, m->dim, 0, 0) : NULL;
}

static int gm__diff_ibuf(int **buf, size_t *cap, size_t n) {
    int *p;
    if (n <= *cap) return 0;
    p = GM__DIFF_CAST(int *, GENMOD_REALLOC(*buf, sizeof(int) * n));
    if (!p) return gm_fail("genmod_diffusion: out of memory (%lu ints)", (unsigned long)n);
    *buf = p;
    *cap = n;
    return 0;
}

static int gm__diff_check_labels(const gm_diffusion *m, const int *labels, int n, int allow_null, const char *who) {
    int i;
    if (!labels) return 0;
    if (m->cfg.classes == 0) return gm_fail("%s: labels given to an unconditional model (cfg.classes = 0)", who);
    for (i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] > m->cfg.classes - (allow_null ? 0 : 1))
            return gm_fail("%s: label[%d] = %d outside 0..%d", who, i, labels[i], m->cfg.classes - 1);
    return 0;
}

/* x_t and the target (eps or v) for n examples: buf = [xt | target | eps], ibuf = [t | labels]. */
static int gm__diff_make_batch(gm_diffusion *m, const float *x, const int *labels, int n, const int *fixed_t,
                               gm_rng *r, float **xt, float **target, int **t, int **lab) {
    size_t i, D = (size_t)m->dim, nd = (size_t)n * D;
    int k;
    if (gm_floats_reserve(&m->buf, &m->buf_cap, 3 * nd) != 0 || gm__diff_ibuf(&m->ibuf, &m->ibuf_cap, 2 * (size_t)n) != 0)
        return -1;
    *xt = m->buf; *target = m->buf + nd; *t = m->ibuf; *lab = labels ? m->ibuf + n : NULL;
    for (k = 0; k < n; k++) {
        (*t)[k] = fixed_t ? fixed_t[k] : gm_rng_int(r, m->cfg.T);
        if (labels) (*lab)[k] = fixed_t || gm_rng_uniform(r) >= m->cfg.p_uncond ? labels[k] : m->cfg.classes;
    }
    for (i = 0; i < nd; i++) m->buf[2 * nd + i] = gm_rng_normal(r);
    if (gm_diffusion_q_sample(&m->sched, x, m->buf + 2 * nd, *t, n, m->dim, *xt) != 0) return -1;
    for (k = 0; k < n; k++) {
        double ab = m->sched.alpha_bar[(*t)[k]];
        for (i = (size_t)k * D; i < (size_t)(k + 1) * D; i++)
            (*target)[i] = m->cfg.prediction == GM_DIFF_PRED_EPS
                               ? m->buf[2 * nd + i]
                               : (float)(sqrt(ab) * m->buf[2 * nd + i] - sqrt(1 - ab) * x[i]);
    }
    return 0;
}

static void gm__diff_ema_update(gm_diffusion *m) {
    double n = (double)m->ema_updates, d = m->cfg.ema_decay;
    size_t i;
    if (m->cfg.ema_warmup > 0) d = GM__DIFF_MIN(d, (1 + n) / (m->cfg.ema_warmup + n));
    for (i = 0; i < m->params.count; i++) m->ema.data[i] = (float)(d * m->ema.data[i] + (1 - d) * m->params.data[i]);
    m->ema_updates++;
}

static int gm__diff_check_x(const gm_diffusion *m, const float *x, int n, const char *who) {
    if (!m || !m->graph) return gm_fail("%s: model not initialized", who);
    if (!x || n <= 0) return gm_fail("%s: need x and n > 0 (n = %d)", who, n);
    return 0;
}

GMDEF int gm_diffusion_train_step(gm_diffusion *m, const float *x, const int *labels, int n, gm_diffusion_stats *stats) {
    const char *who = "gm_diffusion_train_step";
    float *xt, *target;
    int *t, *lab;
    gm_graph *g;
    gm_tensor *pred, *loss;
    char msg[64];
    if (gm__diff_check_x(m, x, n, who) != 0 || gm__diff_check_labels(m, labels, n, 0, who) != 0) return -1;
    if (m->cfg.classes > 0 && !labels) return gm_fail("%s: a conditional model (cfg.classes = %d) needs labels", who, m->cfg.classes);
    if (gm__diff_make_batch(m, x, labels, n, NULL, &m->rng, &xt, &target, &t, &lab) != 0) return -1;
    g = m->graph;
    gm_graph_reset(g);
    gm_graph_set_grad(g, 1);
    pred = gm_diffusion_forward(g, m, gm_input(g, xt, n, m->dim, 0, 0), t, lab, 0);
    loss = pred ? gm_mse(g, pred, gm_input(g, target, n, m->dim, 0, 0)) : NULL;
    if (!loss || gm_backward(g, loss) != 0) {
        snprintf(msg, sizeof msg, "%s: step %ld", who, m->step);
        return gm_graph_fail(g, msg);
    }
    if (stats) {
        stats->loss = loss->data[0];
        stats->grad_norm = gm_grad_norm(&m->params);
    }
    if (gm_optim_step(&m->opt, &m->params) != 0) return -1;
    gm__diff_ema_update(m);
    m->step++;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The diffusion model: sampling                                                            */
/* ---------------------------------------------------------------------------------------- */
typedef struct gm__diff_job {
    gm_diffusion *m;
    const int *labels;       /* NULL: unconditional (or the null class) */
    float guidance;
    const float *x;
    float *eps;
    int t;
} gm__diff_job;

/* eps of one chunk (EMA weights), with guidance and the v -> eps conversion. */
static int gm__diff_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__diff_job *j = GM__DIFF_CAST(gm__diff_job *, ctx);
    gm_diffusion *m = j->m;
    size_t D = (size_t)m->dim, k, nd = (size_t)count * D;
    const float *x = j->x + (size_t)start * D;
    float *out = j->eps + (size_t)start * D;
    double ab = m->sched.alpha_bar[j->t];
    int *ts = GM__DIFF_CAST(int *, GENMOD_MALLOC(sizeof(int) * (size_t)count)), i;
    gm_tensor *xin, *y, *yu = NULL;
    if (!ts) return gm_fail("gm_diffusion_sample: out of memory");
    for (i = 0; i < count; i++) ts[i] = j->t;
    xin = gm_input(g, x, count, m->dim, 0, 0);
    y = gm_diffusion_forward(g, m, xin, ts, j->labels ? j->labels + start : NULL, 1);
    if (j->guidance != 0) yu = gm_diffusion_forward(g, m, xin, ts, NULL, 1);
    GENMOD_FREE(ts);
    if (!y || (j->guidance != 0 && !yu)) return -1;
    for (k = 0; k < nd; k++) {
        double v = y->data[k];
        if (yu) v = (1 + j->guidance) * v - j->guidance * yu->data[k];
        if (m->cfg.prediction == GM_DIFF_PRED_V) v = sqrt(1 - ab) * x[k] + sqrt(ab) * v;
        out[k] = (float)v;
    }
    return 0;
}

/* Examples per gm_run_chunks call: the graph keeps every activation of a chunk's forward pass
   (about 6.6 MB an image for the base-32 U-Net, twice that with guidance), so U-Net chunks of
   GM_CHUNK = 500 grew the arena to 4 GB; blocks of 64 keep it under 1 GB. */
static int gm__diff_block_size(const gm_diffusion *m, int n) {
    return m->cfg.net == GM_DIFF_NET_UNET ? 64 : (n > 0 ? n : 1);
}

static int gm__diff_eps(void *ctx, const float *x, int t, int n, float *eps) {
    gm__diff_job *j = GM__DIFF_CAST(gm__diff_job *, ctx), sub = *j;
    size_t D = (size_t)j->m->dim;
    int s, b = gm__diff_block_size(j->m, n);
    for (s = 0; s < n; s += b) {
        sub.x = x + (size_t)s * D; sub.eps = eps + (size_t)s * D; sub.t = t;
        sub.labels = j->labels ? j->labels + s : NULL;
        if (gm_run_chunks(j->m->graph, GM__DIFF_MIN(b, n - s), gm__diff_chunk, &sub, "gm_diffusion_sample") != 0) return -1;
    }
    return 0;
}

GMDEF int gm_diffusion_sample_with(gm_diffusion *m, const int *labels, int n, const gm_diffusion_sampler *sp,
                                   float guidance, const float *noise, float *out) {
    const char *who = "gm_diffusion_sample";
    gm__diff_job j;
    gm_diffusion_sampler s2;
    size_t k, nd;
    if (!m || !m->graph || n <= 0 || !out || !sp) return gm_fail("%s: bad arguments (n = %d)", who, n);
    if (gm__diff_check_labels(m, labels, n, 0, who) != 0) return -1;
    if (!(guidance >= 0) || guidance > 1e4f) return gm_fail("%s: guidance weight must be >= 0, is %g", who, (double)guidance);
    if (guidance != 0 && (m->cfg.classes == 0 || !labels))
        return gm_fail("%s: guidance weight %g needs a conditional model and labels (cfg.classes = %d)", who,
                       (double)guidance, m->cfg.classes);
    nd = (size_t)n * m->dim;
    for (k = 0; k < nd; k++) out[k] = noise ? noise[k] : gm_rng_normal(&m->rng);
    j.m = m; j.labels = labels; j.guidance = guidance;
    s2 = *sp;
    if (m->cfg.clip_x0) s2.clip_x0 = 1;
    return gm_diffusion_run_sampler(&m->sched, &s2, gm__diff_eps, &j, &m->rng, n, m->dim, out);
}

GMDEF int gm_diffusion_sample(gm_diffusion *m, const int *labels, int n, float *out) {
    gm_diffusion_sampler sp = gm_diffusion_ddim_sampler(m ? m->cfg.sample_steps : 1, 0.0f);
    return gm_diffusion_sample_with(m, labels, n, &sp, 0.0f, NULL, out);
}

GMDEF int gm_diffusion_invert(gm_diffusion *m, const int *labels, int n, int steps, const float *x0, float *xT) {
    gm__diff_job j;
    if (!m || !m->graph || n <= 0 || !x0 || !xT) return gm_fail("gm_diffusion_invert: bad arguments (n = %d)", n);
    if (gm__diff_check_labels(m, labels, n, 0, "gm_diffusion_invert") != 0) return -1;
    memcpy(xT, x0, sizeof(float) * (size_t)n * m->dim);
    j.m = m; j.labels = labels; j.guidance = 0;
    return gm_diffusion_ddim_invert(&m->sched, steps, gm__diff_eps, &j, n, m->dim, xT);
}

typedef struct gm__diff_loss_job { gm_diffusion *m; const float *xt, *target; const int *t, *lab; int ema; double sum; } gm__diff_loss_job;

static int gm__diff_loss_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__diff_loss_job *j = GM__DIFF_CAST(gm__diff_loss_job *, ctx);
    size_t D = (size_t)j->m->dim, o = (size_t)start * D;
    gm_tensor *y = gm_diffusion_forward(g, j->m, gm_input(g, j->xt + o, count, j->m->dim, 0, 0), j->t + start,
                                        j->lab ? j->lab + start : NULL, j->ema);
    gm_tensor *l = y ? gm_mse(g, y, gm_input(g, j->target + o, count, j->m->dim, 0, 0)) : NULL;
    if (!l) return -1;
    j->sum += (double)l->data[0] * count;
    return 0;
}

GMDEF int gm_diffusion_test_loss(gm_diffusion *m, const float *x, const int *labels, int n, int ema, uint64_t seed,
                                 double *loss) {
    const char *who = "gm_diffusion_test_loss";
    gm__diff_loss_job j;
    gm_rng r;
    float *xt, *target;
    int *t, *lab, *fixed, i, rc, b;
    if (gm__diff_check_x(m, x, n, who) != 0 || gm__diff_check_labels(m, labels, n, 0, who) != 0) return -1;
    if (!loss) return gm_fail("%s: NULL loss", who);
    fixed = GM__DIFF_CAST(int *, GENMOD_MALLOC(sizeof(int) * (size_t)n));
    if (!fixed) return gm_fail("%s: out of memory", who);
    for (i = 0; i < n; i++) fixed[i] = (int)((long)i * m->cfg.T / n);
    gm_rng_seed(&r, seed);
    rc = gm__diff_make_batch(m, x, labels, n, fixed, &r, &xt, &target, &t, &lab);
    GENMOD_FREE(fixed);
    if (rc != 0) return -1;
    j.m = m; j.ema = ema; j.sum = 0;
    b = gm__diff_block_size(m, n);
    for (i = 0, rc = 0; i < n && rc == 0; i += b) {   /* blocks, as in sampling */
        size_t o = (size_t)i * m->dim;
        j.xt = xt + o; j.target = target + o; j.t = t + i; j.lab = lab ? lab + i : NULL;
        rc = gm_run_chunks(m->graph, GM__DIFF_MIN(b, n - i), gm__diff_loss_chunk, &j, who);
    }
    if (rc == 0) *loss = j.sum / n;
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* The diffusion model: checkpoints                                                         */
/* ---------------------------------------------------------------------------------------- */
static void gm__diff_arch(const gm_diffusion *m, char *out, size_t cap) {
    const gm_diffusion_config *c = &m->cfg;
    int len = snprintf(out, cap, "%dx%dx%d ", c->channels, c->height, c->width);
    if (len < 0 || (size_t)len >= cap) return;
    if (c->net == GM_DIFF_NET_MLP) len += snprintf(out + len, cap - len, "mlp %dx%d", c->hidden, c->depth);
    else len += snprintf(out + len, cap - len, "unet %d groups %d%s", c->base, c->groups, c->attn ? " attn" : "");
    if (len < 0 || (size_t)len >= cap) return;
    snprintf(out + len, cap - len, " temb %d T %d %s %g..%g %s classes %d", c->temb, c->T,
             c->schedule == GM_DIFF_LINEAR ? "linear" : "cosine", (double)c->beta_start, (double)c->beta_end,
             c->prediction == GM_DIFF_PRED_EPS ? "eps" : "v", c->classes);
}

static void gm__diff_parts(const gm_diffusion *m, gm_model_part *parts) {
    parts[0].name = "net";
    parts[0].params = GM__DIFF_UNCONST(gm_params *, &m->params);
    parts[0].opt = GM__DIFF_UNCONST(gm_optim *, &m->opt);
    parts[1].name = "ema";
    parts[1].params = GM__DIFF_UNCONST(gm_params *, &m->ema);
    parts[1].opt = NULL;
}

GMDEF int gm_diffusion_save(const gm_diffusion *m, const char *path) {
    char arch[GM_META_VALUE_MAX], num[32];
    gm_model_part parts[2];
    gm_meta extra;
    if (!m || !m->graph || !path) return gm_fail("gm_diffusion_save: NULL argument or model not initialized");
    gm__diff_arch(m, arch, sizeof arch);
    memset(&extra, 0, sizeof extra);
    snprintf(num, sizeof num, "%ld", m->ema_updates);
    if (gm_meta_set(&extra, "diffusion.ema_updates", num) != 0 || gm_meta_set_rng(&extra, "diffusion.rng", &m->rng) != 0 ||
        gm_meta_set_rng(&extra, "diffusion.graph_rng", gm_graph_rng(m->graph)) != 0)
        return -1;
    gm__diff_parts(m, parts);
    return gm_model_save(path, "diffusion", arch, m->step, parts, 2, &extra);
}

GMDEF int gm_diffusion_load(gm_diffusion *m, const char *path) {
    char arch[GM_META_VALUE_MAX];
    gm_model_part parts[2];
    gm_meta extra;
    const char *v;
    long step = 0;
    if (!m || !m->graph || !path) return gm_fail("gm_diffusion_load: NULL argument or model not initialized");
    gm__diff_arch(m, arch, sizeof arch);
    memset(&extra, 0, sizeof extra);
    gm__diff_parts(m, parts);
    if (gm_model_load(path, "diffusion", arch, &step, parts, 2, &extra) != 0) return -1;
    m->step = step;
    if ((v = gm_meta_get(&extra, "diffusion.ema_updates")) != NULL) m->ema_updates = strtol(v, NULL, 10);
    gm_meta_get_rng(&extra, "diffusion.rng", &m->rng);
    gm_meta_get_rng(&extra, "diffusion.graph_rng", gm_graph_rng(m->graph));
    return 0;
}

/* ======================================================================================= */
/* Score model                                                                             */
/* ======================================================================================= */
GMDEF gm_score_config gm_score_default_config(int dim) {
    gm_score_config c;
    memset(&c, 0, sizeof c);
    c.dim = dim; c.hidden = 128; c.depth = 3; c.temb = 32;
    c.levels = 10; c.sigma_max = 3.0f; c.sigma_min = 0.01f;
    c.langevin_steps = 100; c.step_eps = 2e-5f; c.denoise = 1;
    c.lr = 3e-3f; c.batch = 256; c.seed = 1;
    return c;
}

static int gm__score_check_config(const gm_score_config *c) {
    const char *w = "score config";
    if (c->dim < 1 || c->hidden < 1 || c->depth < 1 || c->depth > 8 || c->temb < 2)
        return gm_fail("%s: cfg.dim >= 1, cfg.hidden >= 1, cfg.depth in 1..8, cfg.temb >= 2 (have %d, %d, %d, %d)", w,
                       c->dim, c->hidden, c->depth, c->temb);
    if (c->levels < 1 || !(c->sigma_min > 0) || !(c->sigma_max >= c->sigma_min))
        return gm_fail("%s: cfg.levels >= 1 and 0 < cfg.sigma_min <= cfg.sigma_max (have %d, %g, %g)", w, c->levels,
                       (double)c->sigma_min, (double)c->sigma_max);
    if (c->langevin_steps < 1 || !(c->step_eps > 0))
        return gm_fail("%s: cfg.langevin_steps >= 1 and cfg.step_eps > 0 (have %d, %g)", w, c->langevin_steps,
                       (double)c->step_eps);
    if (!(c->lr > 0) || c->batch < 1) return gm_fail("%s: cfg.lr > 0 and cfg.batch >= 1", w);
    return 0;
}

GMDEF int gm_score_init(gm_score *m, const gm_score_config *cfg) {
    int i;
    if (!m || !cfg) return gm_fail("gm_score_init: NULL argument");
    memset(m, 0, sizeof *m);
    if (gm__score_check_config(cfg) != 0) return -1;
    m->cfg = *cfg;
    gm_rng_seed(&m->rng, cfg->seed);
    m->sigmas = GM__DIFF_CAST(float *, GENMOD_MALLOC(sizeof(float) * (size_t)cfg->levels));
    if (!m->sigmas) return gm_fail("gm_score_init: out of memory");
    for (i = 0; i < cfg->levels; i++)
        m->sigmas[i] = cfg->levels == 1 ? cfg->sigma_max
                                        : (float)(cfg->sigma_max * pow((double)cfg->sigma_min / cfg->sigma_max,
                                                                       (double)i / (cfg->levels - 1)));
    if (gm__diff_mlp_init(&m->net, &m->params, cfg->dim, cfg->hidden, cfg->depth, cfg->temb, 0, &m->rng) != 0 ||
        !(m->graph = gm_graph_new(cfg->seed ^ 0x9e3779b97f4a7c15ULL))) {
        if (!m->graph && gm_last_error()[0] == 0) gm_fail("gm_score_init: out of memory");
        gm_score_free(m);
        return -1;
    }
    m->opt = gm_adam(cfg->lr, 0.9f, 0.999f);
    return 0;
}

GMDEF void gm_score_free(gm_score *m) {
    if (!m) return;
    gm_params_free(&m->params);
    gm_optim_free(&m->opt);
    gm_graph_free(m->graph);
    GENMOD_FREE(m->sigmas);
    memset(m, 0, sizeof *m);
}

GMDEF gm_tensor *gm_score_forward(gm_graph *g, gm_score *m, gm_tensor *x, const int *lv) {
    float *v;
    gm_tensor *e;
    int n, i;
    if (!g || !m || !x || !lv) return NULL;
    n = x->shape[0];
    v = GM__DIFF_CAST(float *, GENMOD_MALLOC(sizeof(float) * (size_t)n));
    if (!v) return NULL;
    /* the level index spread over the timestep range the embedding's frequencies were made for */
    for (i = 0; i < n; i++) v[i] = (float)lv[i] * 1000.0f / (float)m->cfg.levels;
    e = gm__diff_embed(g, &m->net, v, n, m->cfg.temb, NULL, 0);
    GENMOD_FREE(v);
    return gm__diff_mlp_forward(g, &m->net, m->cfg.depth, x, e);
}

GMDEF int gm_score_train_step(gm_score *m, const float *x, const int *labels, int n, gm_score_stats *stats) {
    const char *who = "gm_score_train_step";
    size_t D, nd, i;
    int k, *lv;
    float *xs, *z;
    gm_graph *g;
    gm_tensor *out, *loss;
    if (!m || !m->graph) return gm_fail("%s: model not initialized", who);
    if (!x || n <= 0) return gm_fail("%s: need x and n > 0 (n = %d)", who, n);
    if (labels) return gm_fail("%s: score models are unconditional: labels must be NULL", who);
    D = (size_t)m->cfg.dim; nd = (size_t)n * D;
    xs = GM__DIFF_CAST(float *, GENMOD_MALLOC(sizeof(float) * 2 * nd));
    lv = GM__DIFF_CAST(int *, GENMOD_MALLOC(sizeof(int) * (size_t)n));
    if (!xs || !lv) {
        GENMOD_FREE(xs);
        GENMOD_FREE(lv);
        return gm_fail("%s: out of memory", who);
    }
    z = xs + nd;
    for (k = 0; k < n; k++) {
        lv[k] = gm_rng_int(&m->rng, m->cfg.levels);
        for (i = (size_t)k * D; i < (size_t)(k + 1) * D; i++) {
            z[i] = gm_rng_normal(&m->rng);
            xs[i] = x[i] + m->sigmas[lv[k]] * z[i];
        }
    }
    g = m->graph;
    gm_graph_reset(g);
    gm_graph_set_grad(g, 1);
    out = gm_score_forward(g, m, gm_input(g, xs, n, (int)D, 0, 0), lv);
    /* sigma^2-weighted DSM: |sigma s + z|^2 = |out + z|^2, summed over coordinates */
    loss = out ? gm_scale(g, gm_mse(g, out, gm_neg(g, gm_input(g, z, n, (int)D, 0, 0))), (float)D) : NULL;
    GENMOD_FREE(xs);
    GENMOD_FREE(lv);
    if (!loss || gm_backward(g, loss) != 0) return gm_graph_fail(g, who);
    if (stats) {
        stats->loss = loss->data[0];
        stats->grad_norm = gm_grad_norm(&m->params);
    }
    if (gm_optim_step(&m->opt, &m->params) != 0) return -1;
    m->step++;
    return 0;
}

typedef struct gm__score_job { gm_score *m; const float *x; float *s; int level; } gm__score_job;

static int gm__score_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__score_job *j = GM__DIFF_CAST(gm__score_job *, ctx);
    size_t D = (size_t)j->m->cfg.dim, k;
    int *lv = GM__DIFF_CAST(int *, GENMOD_MALLOC(sizeof(int) * (size_t)count)), i;
    gm_tensor *y;
    float inv = 1.0f / j->m->sigmas[j->level];
    if (!lv) return gm_fail("gm_score: out of memory");
    for (i = 0; i < count; i++) lv[i] = j->level;
    y = gm_score_forward(g, j->m, gm_input(g, j->x + (size_t)start * D, count, (int)D, 0, 0), lv);
    GENMOD_FREE(lv);
    if (!y) return -1;
    for (k = 0; k < (size_t)count * D; k++) j->s[(size_t)start * D + k] = y->data[k] * inv;
    return 0;
}

GMDEF int gm_score_field(gm_score *m, const float *x, int n, int level, float *score) {
    gm__score_job j;
    if (!m || !m->graph || !x || !score || n < 0) return gm_fail("gm_score_field: bad arguments");
    if (level < 0 || level >= m->cfg.levels) return gm_fail("gm_score_field: level %d outside 0..%d", level, m->cfg.levels - 1);
    j.m = m; j.x = x; j.s = score; j.level = level;
    return gm_run_chunks(m->graph, n, gm__score_chunk, &j, "gm_score_field");
}

GMDEF int gm_score_langevin(gm_score *m, int n, int steps_per_level, float step_eps, float *x) {
    size_t k, nd;
    float *s;
    int i, K, L, rc = 0;
    if (!m || !m->graph || !x || n <= 0) return gm_fail("gm_score_langevin: bad arguments (n = %d)", n);
    if (steps_per_level < 1 || !(step_eps > 0))
        return gm_fail("gm_score_langevin: steps_per_level >= 1 and step_eps > 0 (have %d, %g)", steps_per_level,
                       (double)step_eps);
    nd = (size_t)n * m->cfg.dim;
    L = m->cfg.levels;
    s = GM__DIFF_CAST(float *, GENMOD_MALLOC(sizeof(float) * nd));
    if (!s) return gm_fail("gm_score_langevin: out of memory");
    for (i = 0; i < L && rc == 0; i++) {
        double a = step_eps * (double)m->sigmas[i] * m->sigmas[i] / ((double)m->sigmas[L - 1] * m->sigmas[L - 1]);
        for (K = 0; K < steps_per_level && rc == 0; K++) {
            if ((rc = gm_score_field(m, x, n, i, s)) != 0) break;
            for (k = 0; k < nd; k++) x[k] += (float)(0.5 * a * s[k] + sqrt(a) * gm_rng_normal(&m->rng));
        }
    }
    if (rc == 0 && m->cfg.denoise && (rc = gm_score_field(m, x, n, L - 1, s)) == 0) {
        double v = (double)m->sigmas[L - 1] * m->sigmas[L - 1];
        for (k = 0; k < nd; k++) x[k] += (float)(v * s[k]);
    }
    GENMOD_FREE(s);
    return rc;
}

GMDEF int gm_score_sample(gm_score *m, const int *labels, int n, float *out) {
    size_t k;
    if (!m || !m->graph || !out || n <= 0) return gm_fail("gm_score_sample: bad arguments (n = %d)", n);
    if (labels) return gm_fail("gm_score_sample: score models are unconditional: labels must be NULL");
    /* the start: uniform over the box the largest noise level spans */
    for (k = 0; k < (size_t)n * m->cfg.dim; k++) out[k] = m->cfg.sigma_max * (2 * gm_rng_uniform(&m->rng) - 1);
    return gm_score_langevin(m, n, m->cfg.langevin_steps, m->cfg.step_eps, out);
}

static void gm__score_arch(const gm_score *m, char *out, size_t cap) {
    const gm_score_config *c = &m->cfg;
    snprintf(out, cap, "dim %d mlp %dx%d temb %d levels %d sigma %g..%g", c->dim, c->hidden, c->depth, c->temb,
             c->levels, (double)c->sigma_max, (double)c->sigma_min);
}

GMDEF int gm_score_save(const gm_score *m, const char *path) {
    char arch[GM_META_VALUE_MAX];
    gm_model_part part;
    gm_meta extra;
    if (!m || !m->graph || !path) return gm_fail("gm_score_save: NULL argument or model not initialized");
    gm__score_arch(m, arch, sizeof arch);
    memset(&extra, 0, sizeof extra);
    if (gm_meta_set_rng(&extra, "score.rng", &m->rng) != 0) return -1;
    part.name = "net";
    part.params = GM__DIFF_UNCONST(gm_params *, &m->params);
    part.opt = GM__DIFF_UNCONST(gm_optim *, &m->opt);
    return gm_model_save(path, "score", arch, m->step, &part, 1, &extra);
}

GMDEF int gm_score_load(gm_score *m, const char *path) {
    char arch[GM_META_VALUE_MAX];
    gm_model_part part;
    gm_meta extra;
    long step = 0;
    if (!m || !m->graph || !path) return gm_fail("gm_score_load: NULL argument or model not initialized");
    gm__score_arch(m, arch, sizeof arch);
    memset(&extra, 0, sizeof extra);
    part.name = "net"; part.params = &m->params; part.opt = &m->opt;
    if (gm_model_load(path, "score", arch, &step, &part, 1, &extra) != 0) return -1;
    m->step = step;
    gm_meta_get_rng(&extra, "score.rng", &m->rng);
    return 0;
}

#endif /* GENMOD_DIFFUSION_IMPLEMENTATION_INCLUDED */
#endif /* GENMOD_DIFFUSION_IMPLEMENTATION */

/*
MIT License

Copyright (c) 2026 the genmod authors

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
*/
