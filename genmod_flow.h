/* genmod_flow.h - v0.1 - normalizing flows on top of genmod.h: NICE, RealNVP, Glow, FFJORD.
   Single-header C library (stb style): the declarations are always visible, the implementation
   is compiled where GENMOD_FLOW_IMPLEMENTATION is defined.

   USAGE
     The core's implementation goes in exactly one file, and so does this header's: the same
     file, or each its own (this implementation uses only genmod.h's public API).
       One file:
         #define GENMOD_IMPLEMENTATION
         #include "genmod.h"
         #define GENMOD_FLOW_IMPLEMENTATION
         #include "genmod_flow.h"
       Or its own file, linked with the one that implements the core:
         flow_impl.c:   #define GENMOD_FLOW_IMPLEMENTATION
                        #include "genmod_flow.h"
         genmod_impl.c: #define GENMOD_IMPLEMENTATION
                        #include "genmod.h"
     Elsewhere just #include "genmod_flow.h". Build: cc -O2 prog.c [flow_impl.c genmod_impl.c]
     -lm -lpthread. With GENMOD_STATIC (every function private to its file) both must be in the
     same file. GENMOD_MALLOC / GENMOD_REALLOC / GENMOD_FREE: as in genmod.h.

   THE SHORTEST PROGRAM (RealNVP on two moons, the Keras recipe)

         float xy[2 * 3000];
         gm_toy2d("moons", 3000, 1, -1, xy, NULL);
         gm_flow_config cfg = gm_flow_default_config(GM_FLOW_REALNVP, 2, 1, 1);  // 6 couplings, 2-256x4-2
         gm_flow f;
         if (gm_flow_init(&f, &cfg) != 0) { puts(gm_last_error()); return 1; }
         gm_batcher b;  const int *idx;  int k;  float xb[2 * 256];
         gm_batcher_init(&b, 3000, cfg.batch, 1, 0);
         for (int epoch = 0; epoch < 300; epoch++)
             while ((k = gm_batcher_next(&b, &idx)) > 0) {
                 for (int i = 0; i < k; i++) { xb[2*i] = xy[2*idx[i]]; xb[2*i+1] = xy[2*idx[i]+1]; }
                 if (gm_flow_train_step(&f, xb, NULL, k, NULL) != 0) { puts(gm_last_error()); return 1; }
             }
         double nll;  gm_flow_nll(&f, xy, 3000, 0, &nll, NULL);      // nats per point
         float s[2 * 100];  gm_flow_sample(&f, NULL, 100, s);         // 100 new points
         gm_flow_save(&f, "moons.safetensors");
         gm_flow_free(&f);

   EACH MODEL HAS (gm_flow and gm_ffjord; the contract every genmod family follows)
     _default_config    a plain struct of the recipe; arguments only for the data shape and kind
     _init(m, &cfg)     validates (the message names the field), builds; on failure m is freed
     _free(m)           safe on a zeroed or failed model, and twice
     _train_step(m, x, labels, n, &stats)
                        one Adam step on n examples of plain floats; flows are unconditional, so
                        labels must be NULL; stats may be NULL; a NaN loss is refused (-1)
     _sample(m, labels, n, out)
                        n samples (labels NULL), any n; variants with more knobs are named calls
                        beside it (gm_flow_sample_temperature, gm_ffjord_sample_trajectory)
     inference          _log_prob_batch, _nll, _encode, _decode, ...: plain arrays, any n, in
                        chunks (eval mode, no tape) through the core's gm_run_chunks
     _forward(g, m, x, &logdet)
                        the model emitted into your own gm_graph, for custom losses
     _save / _load      one safetensors file (weights, Adam state, step) through gm_model_save /
                        gm_model_load; its metadata names the model ("flow" or "ffjord") and its
                        architecture, so loading a file of another family or architecture is
                        refused with a message naming both, and the model is left untouched
     errors             0 / -1 (NULL for tensors), the reason in gm_last_error()

   DIRECTION
     "forward" is data -> latent (x -> z, the direction the likelihood is computed in), "inverse"
     is latent -> data (sampling). log p(x) = log N(z; 0, I) + log|det dz/dx|. An affine coupling
     maps x -> z as z2 = (x2 - t(x1)) exp(-s(x1)), so its inverse is the generative
     x2 = z2 exp(s(z1)) + t(z1) of the RealNVP paper, with s bounded by tanh.

   MODELS (gm_flow_config.model)
     GM_FLOW_NICE     additive couplings (log-det 0) with alternating partitions, then a diagonal
                      scaling layer. Images are flattened (dense couplings on all pixels).
     GM_FLOW_REALNVP  affine couplings. Vectors: alternating masks, separate s and t MLPs (ReLU, tanh
                      on s). Images: multi-scale: per scale 3 checkerboard couplings, squeeze (2x2
                      space-to-depth), 3 channel-wise couplings, factor out half the channels; the
                      last scale 4 checkerboard couplings. s/t nets are small ResNets.
     GM_FLOW_GLOW     steps of actnorm (data-dependent init) + invertible 1x1 convolution (LU
                      weight, log-det = H W sum log|diag U|) + affine coupling. Images: levels of
                      squeeze, K steps, split. Vectors: the same steps on dense tensors.
     gm_ffjord        a continuous flow dz/dt = f(z, t) (see its section below).
     Custom stacks: gm_flow_begin, then gm_flow_add(kind, mask, parity) per layer; their
     checkpoints' architecture text lists the layers.

   IMAGES
     Data in [0,1] holding k/255 values. Training dequantizes ((k + u)/256, u ~ U[0,1)), and with
     cfg.logit the flow starts with y = logit(a + (1 - 2a) x), its log-det counted, so log p(x) is a
     density on [0,1]^D and bits/dim = (-log p(x) + D log 256) / (D log 2).
     cfg.dequantize = GM_FLOW_DEQ_VARIATIONAL (Flow++, Ho et al. 2019) draws u from a learned
     q(u|x) = sigmoid(mu(x) + e^{ls(x)} eps), eps ~ N(0, I), mu and ls from a small ResNet on x
     (cfg.deq_filters), and trains the bound E_q[log p(y) - log q(u|x)] (gm_flow_elbo); gm_flow_nll
     then reports that bound (one u per image), an upper bound on the exact bits/dim.
     cfg.warmup: the learning rate rises linearly over the first cfg.warmup steps (images: 200).

   LICENSE: MIT, at the end of the file.
*/
#ifndef GENMOD_FLOW_H
#define GENMOD_FLOW_H

#include "genmod.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================= */
/* Configuration                                                                           */
/* ======================================================================================= */
#define GM_FLOW_MAX_LAYERS 96
#define GM_FLOW_MAX_DEPTH 8      /* hidden layers of a dense s/t net */
#define GM_FLOW_MAX_BLOCKS 8     /* residual blocks of a conv s/t net */

enum { GM_FLOW_NICE = 0, GM_FLOW_REALNVP, GM_FLOW_GLOW };
/* Dequantization (cfg.dequantize): none (continuous data), x + u with u ~ U[0,1)^D, or u drawn
   from a learned q(u|x) and the bound E_q[log p(x + u) - log q(u|x)] maximized (Flow++). */
enum { GM_FLOW_DEQ_NONE = 0, GM_FLOW_DEQ_UNIFORM, GM_FLOW_DEQ_VARIATIONAL };

/* Layer kinds */
enum {
    GM_FLOW_ADDITIVE = 0,   /* z2 = x2 - t(x1)                               (NICE coupling) */
    GM_FLOW_AFFINE,         /* z2 = (x2 - t(x1)) exp(-s(x1))                 (RealNVP/Glow coupling) */
    GM_FLOW_SCALE,          /* z = x exp(s), s learned per dimension         (NICE's last layer) */
    GM_FLOW_ACTNORM,        /* z = (x + b) exp(logs) per channel, data-dependent init */
    GM_FLOW_INVCONV,        /* z = W x per pixel, W = P L U (invertible 1x1 convolution) */
    GM_FLOW_SQUEEZE,        /* (C,H,W) -> (4C,H/2,W/2) */
    GM_FLOW_SPLIT,          /* factor out the second half of the channels to the prior */
    GM_FLOW_NKINDS
};
/* Coupling masks: which part conditions (passes through unchanged) */
enum {
    GM_FLOW_MASK_ALT = 0,   /* vectors: dims j with (j + parity) even condition */
    GM_FLOW_MASK_CHECKER,   /* images: pixels (i + j + parity) even condition */
    GM_FLOW_MASK_CHANNEL    /* images/vectors: first half of the channels (second if parity) condition */
};

typedef struct gm_flow_config {
    int model;               /* GM_FLOW_NICE, GM_FLOW_REALNVP, GM_FLOW_GLOW */
    int channels, height, width;  /* one example; vectors: channels = dimension, height = width = 1 */
    /* vectors (and NICE on images) */
    int n_couplings;         /* coupling layers (NICE 4, RealNVP 6) or Glow steps (6) */
    int hidden, depth;       /* dense s/t nets: width and number of hidden layers (256, 4) */
    int init;                /* dense kernels: GM_INIT_GLOROT_UNIFORM (Keras), biases zero */
    float l2;                /* L2 on every dense kernel added to the loss (0.01, Keras regularizer) */
    /* images */
    int n_scales;            /* RealNVP scales / Glow levels (2) */
    int steps;               /* Glow steps per level (4); RealNVP couplings per stage (3) */
    int filters, blocks;     /* conv s/t nets: channels and residual blocks (32, 1) */
    int logit;               /* 1: logit pre-transform of [0,1] data (images default 1) */
    float logit_alpha;       /* a in logit(a + (1-2a) x) (0.05) */
    int dequantize;          /* train_step's treatment of its [0,1] k/255 input: GM_FLOW_DEQ_NONE,
                                GM_FLOW_DEQ_UNIFORM (images default) or GM_FLOW_DEQ_VARIATIONAL */
    int deq_filters;         /* variational dequantizer: channels of q(u|x)'s conv net (16) */
    long warmup;             /* linear learning-rate warm-up over this many steps (images 200, vectors 0) */
    /* training */
    float lr;                /* Adam (1e-4 vectors, 1e-3 images) */
    int batch;               /* recommended batch (256 vectors, 64 images) */
    float clip_norm;         /* gradient clipping (0: none) */
    uint64_t seed;           /* weights, sampling noise and the dequantization noise */
} gm_flow_config;

/* One layer. Its parameters are views of the flow's params (indices; -1 where the kind has none). */
typedef struct gm_flow_layer {
    int kind, mask, parity;  /* GM_FLOW_ADDITIVE..., GM_FLOW_MASK_..., 0 or 1 */
    int channels, height, width;  /* input shape of one example (vectors: channels = dim, 1, 1) */
    int img;                 /* 1: tensors are (N,C,H,W) and nets are convolutional; 0: (N,D), MLPs */
    int nlin;                /* dense couplings: linears per net */
    gm_linear s_net[GM_FLOW_MAX_DEPTH + 1], t_net[GM_FLOW_MAX_DEPTH + 1];  /* log-scale and shift MLPs */
    int nconv;               /* conv couplings: in, 2 per block, out (its output holds s and t) */
    gm_conv conv[2 * GM_FLOW_MAX_BLOCKS + 2];
    int scale;               /* conv coupling: per-channel factor on tanh(s); NICE scaling layer: s */
    int bias, logs, inited;  /* actnorm: bias, log-scale, "initialized" flag (a buffer, so
                                checkpoints keep it); invconv: logs = log|diag U| */
    int lower, upper, perm, sign;  /* invconv: W = perm (lower + I) (upper + diag(sign e^logs));
                                      perm and sign are buffers */
} gm_flow_layer;

typedef struct gm_flow {
    gm_flow_config cfg;
    gm_params params;
    gm_optim opt;
    gm_graph *graph;         /* used by every call on this flow (one thread at a time) */
    gm_rng rng;              /* the flow's random stream: weights' init, dequantization, sampling noise */
    int nlayers;
    gm_flow_layer layers[GM_FLOW_MAX_LAYERS];
    int recipe_layers;       /* layers gm_flow_init built from cfg (0: a gm_flow_begin stack) */
    gm_flow_layer deq;       /* GM_FLOW_DEQ_VARIATIONAL: q(u|x)'s conv net (its params are "deq.*") */
    int dim;                 /* floats per example (channels * height * width) */
    int cur_c, cur_h, cur_w; /* shape after the last layer added (what the prior sees last) */
    long step;               /* optimizer steps taken (saved in checkpoints) */
    float *buf;              /* scratch of one batch */
    size_t buf_cap;
} gm_flow;

typedef struct gm_flow_stats {
    float loss;              /* objective minimized: nll + l2 term */
    float nll;               /* -mean log p(x), nats per example */
    float l2;                /* the L2 term */
    float grad_norm;
} gm_flow_stats;

/* ======================================================================================= */
/* Building and training                                                                   */
/* ======================================================================================= */
/* Defaults per model for data of shape c x h x w (vectors: h = w = 1): the recipes above. */
GMDEF gm_flow_config gm_flow_default_config(int model, int c, int h, int w);
GMDEF int  gm_flow_init(gm_flow *f, const gm_flow_config *cfg);   /* the model's recipe; 0 or -1 */
GMDEF int  gm_flow_begin(gm_flow *f, const gm_flow_config *cfg);  /* an empty flow to add layers to */
GMDEF int  gm_flow_add(gm_flow *f, int kind, int mask, int parity); /* one layer at the current shape */
GMDEF void gm_flow_free(gm_flow *f);
GMDEF const char *gm_flow_kind_name(int kind);
/* One Adam step on n examples (n x dim floats); labels must be NULL; stats may be NULL. A NaN loss
   is refused (-1, weights unchanged). */
GMDEF int  gm_flow_train_step(gm_flow *f, const float *x, const int *labels, int n, gm_flow_stats *stats);
/* Actnorm's data-dependent initialization from n examples (train_step does it on its first batch). */
GMDEF int  gm_flow_data_init(gm_flow *f, const float *x, int n);

/* ======================================================================================= */
/* Graph level (for custom losses): emit the flow into your own graph                      */
/* ======================================================================================= */
/* x (N, dim) or (N,C,H,W) -> z (N, dim); *logdet (N) = log|det dz/dx| (with the logit). */
GMDEF gm_tensor *gm_flow_forward(gm_graph *g, gm_flow *f, gm_tensor *x, gm_tensor **logdet);
GMDEF gm_tensor *gm_flow_inverse(gm_graph *g, gm_flow *f, gm_tensor *z);   /* z (N, dim) -> x (N, dim) */
GMDEF gm_tensor *gm_flow_log_prob(gm_graph *g, gm_flow *f, gm_tensor *x);  /* (N) nats */
/* Variational dequantization (cfg.dequantize = GM_FLOW_DEQ_VARIATIONAL): x (N, dim) k/255 values,
   eps (N, dim) N(0,1) noise -> y = (255 x + u) / 256 with u = sigmoid(mu(x) + e^{ls(x)} eps) in
   (0,1)^D; *logq (N) = log q(u|x) (density of u). NULL (and the error) for another dequantizer. */
GMDEF gm_tensor *gm_flow_dequantize(gm_graph *g, gm_flow *f, gm_tensor *x, gm_tensor *eps, gm_tensor **logq);
/* The per-example objective of training: log p(y) - log q(u|x) (N), a lower bound on log P(x) - D
   log 256 (variational); log p(y) with y = x (uniform: the caller dequantized x; none). */
GMDEF gm_tensor *gm_flow_elbo(gm_graph *g, gm_flow *f, gm_tensor *x, gm_tensor *eps);
/* One layer: x in the layer's input shape -> its output; adds its log-det to *logdet (N) if
   logdet != NULL. A split layer returns the kept half (the factored-out half in *out2). */
GMDEF gm_tensor *gm_flow_layer_forward(gm_graph *g, gm_flow *f, int k, gm_tensor *x, gm_tensor **logdet,
                                       gm_tensor **out2);
GMDEF gm_tensor *gm_flow_layer_inverse(gm_graph *g, gm_flow *f, int k, gm_tensor *z, gm_tensor *z2);

/* ======================================================================================= */
/* Plain arrays (any n, processed in chunks)                                               */
/* ======================================================================================= */
GMDEF int gm_flow_log_prob_batch(gm_flow *f, const float *x, int n, float *logp);  /* n values, nats */
/* Mean -log p over n examples. Images (cfg.dequantize): dequantized with noise seed `seed`, and
   *bpd gets bits/dim; vectors: *bpd = nll / (dim log 2). Either output may be NULL. With
   variational dequantization it is the bound -E_q[log p(y) - log q(u|x)] (one draw of u per
   example), an upper bound on the exact figure. */
GMDEF int gm_flow_nll(gm_flow *f, const float *x, int n, uint64_t seed, double *nll, double *bpd);
GMDEF int gm_flow_encode(gm_flow *f, const float *x, int n, float *z);   /* x -> z, n x dim */
GMDEF int gm_flow_decode(gm_flow *f, const float *z, int n, float *x);   /* z -> x */
/* n samples, z ~ N(0, I) decoded; labels must be NULL. The variant draws z ~ N(0, T^2 I), T >= 0
   (T < 1 trades diversity for quality, as in Glow). */
GMDEF int gm_flow_sample(gm_flow *f, const int *labels, int n, float *x);
GMDEF int gm_flow_sample_temperature(gm_flow *f, const int *labels, int n, float temperature, float *x);
/* steps points on the line between the latents of a and b (both ends included), decoded. */
GMDEF int gm_flow_interpolate(gm_flow *f, const float *a, const float *b, int steps, float *x);
/* Checkpoints (weights, Adam state, step, the dequantization stream): model "flow" and a one-line
   architecture: model, shape, nets, logit, dequantize, then the recipe's counts or the layers
   added by gm_flow_add (e.g. "realnvp 2x4x4 resnet 4x1 logit 0.05 dequantize 1 layers: actnorm
   affine/checker0 squeeze affine/channel1"). Loading a file of another family or architecture is
   refused with a message naming both, and leaves f untouched. */
GMDEF int gm_flow_save(const gm_flow *f, const char *path);
GMDEF int gm_flow_load(gm_flow *f, const char *path);

/* ======================================================================================= */
/* FFJORD: continuous normalizing flow                                                     */
/* ======================================================================================= */
/* dz/dt = f(z, t), f an MLP whose every layer sees t (concat). x = z(0) is data, z(T) latent:
     log p(x) = log N(z(T)) + integral_0^T tr(df/dz) dt.
   Trace: exact (one vector-Jacobian product per dimension) or Hutchinson's e^T (df/dz) e with
   one probe e per solve (Gaussian or Rademacher). Training backpropagates through the solver. */
enum { GM_ODE_RK4 = 0, GM_ODE_DOPRI5 };
enum { GM_TRACE_EXACT = 0, GM_TRACE_HUTCH_GAUSS, GM_TRACE_HUTCH_RADEMACHER };

typedef struct gm_ffjord_config {
    int dim;                 /* data dimension */
    int hidden, depth;       /* f: hidden width and layers (64, 3) */
    int act;                 /* f's hidden activation: GM_ACT_TANH (default) or GM_ACT_SOFTPLUS */
    float t_end;             /* integration time T: data at t = 0, latent at t = T (1) */
    int solver;              /* GM_ODE_RK4 or GM_ODE_DOPRI5 */
    int rk4_steps;           /* fixed steps for RK4 (8) */
    float rtol, atol;        /* DOPRI5 tolerances (1e-5, 1e-5 for evaluation; training uses train_tol) */
    float train_tol;         /* DOPRI5 tolerance used while training (1e-3) */
    int max_steps;           /* DOPRI5 step limit per solve (500) */
    int trace;               /* training trace: GM_TRACE_* (exact for low dimensions) */
    float lr;                /* Adam (1e-3) */
    int batch;               /* 256 */
    uint64_t seed;           /* weights, Hutchinson probes, sampling noise */
} gm_ffjord_config;

typedef struct gm_ffjord {
    gm_ffjord_config cfg;
    gm_params params;
    gm_linear layers[GM_FLOW_MAX_DEPTH + 1];   /* f's linears, each fed [h, t] */
    int nlayers;
    gm_optim opt;
    gm_graph *graph;         /* used by every call on this model (one thread at a time) */
    gm_rng rng;
    long step;               /* optimizer steps taken (saved in checkpoints) */
    long nfe;                /* function evaluations of the last solve */
    long nfe_total;
    int last_steps;          /* solver steps of the last solve (accepted) */
    float *buf;              /* scratch: the noise of a sample call */
    size_t buf_cap;
} gm_ffjord;

typedef struct gm_ffjord_stats {
    float loss;              /* objective minimized: -mean log p(x), nats per example */
    float grad_norm;
    long nfe;                /* function evaluations of the step's solve */
    int solver_steps;        /* accepted solver steps */
} gm_ffjord_stats;

GMDEF gm_ffjord_config gm_ffjord_default_config(int dim);
GMDEF int  gm_ffjord_init(gm_ffjord *m, const gm_ffjord_config *cfg);
GMDEF void gm_ffjord_free(gm_ffjord *m);
/* One Adam step on n examples (n x dim floats) through the solver at cfg.train_tol with cfg.trace;
   labels must be NULL; stats may be NULL. */
GMDEF int  gm_ffjord_train_step(gm_ffjord *m, const float *x, const int *labels, int n, gm_ffjord_stats *stats);
/* Graph level. x (N, dim) -> z(T) (N, dim); *logdet (N, may be NULL) = integral of tr(df/dz), the
   log|det dz/dx| (cfg.trace, the training tolerance; the graph keeps the gradient's graph, so a
   loss on it trains). x must be tracked (gm_requires_grad on a leaf) when logdet is wanted. */
GMDEF gm_tensor *gm_ffjord_forward(gm_graph *g, gm_ffjord *m, gm_tensor *x, gm_tensor **logdet);
/* f(z, t) and its divergence tr(df/dz) (N) into *div (NULL: not computed). z must be tracked
   (a leaf marked with gm_requires_grad, or computed from one / from parameters). probe: NULL for
   the exact trace, or the (N, dim) noise e of Hutchinson's estimator. create_graph: 1 to train. */
GMDEF gm_tensor *gm_ffjord_dynamics(gm_graph *g, gm_ffjord *m, gm_tensor *z, float t, gm_tensor *probe,
                                    int create_graph, gm_tensor **div);
/* Plain arrays, any n. log p at the evaluation tolerances (rtol, atol) with the given trace. */
GMDEF int  gm_ffjord_log_prob_batch(gm_ffjord *m, const float *x, int n, int trace, float *logp);
GMDEF int  gm_ffjord_nll(gm_ffjord *m, const float *x, int n, double *nll);       /* exact trace */
GMDEF int  gm_ffjord_encode(gm_ffjord *m, const float *x, int n, float *z);        /* t: 0 -> T */
GMDEF int  gm_ffjord_decode(gm_ffjord *m, const float *z, int n, float *x);        /* t: T -> 0 */
/* decode, also writing traj (frames x n x dim floats, frames >= 2): the points at `frames` evenly
   spaced times from T down to 0 (frame 0 is z, the last is x). */
GMDEF int  gm_ffjord_decode_trajectory(gm_ffjord *m, const float *z, int n, float *x, int frames, float *traj);
/* n samples, z ~ N(0, I) decoded; labels must be NULL. The variant also writes the trajectory. */
GMDEF int  gm_ffjord_sample(gm_ffjord *m, const int *labels, int n, float *x);
GMDEF int  gm_ffjord_sample_trajectory(gm_ffjord *m, const int *labels, int n, float *x, int frames, float *traj);
/* Checkpoints: model "ffjord", architecture "dim D hidden H depth L act A t_end T". */
GMDEF int  gm_ffjord_save(const gm_ffjord *m, const char *path);
GMDEF int  gm_ffjord_load(gm_ffjord *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* GENMOD_FLOW_H */

/* ======================================================================================= */
/* Implementation                                                                          */
/* ======================================================================================= */
#ifdef GENMOD_FLOW_IMPLEMENTATION
#ifndef GENMOD_FLOW_IMPLEMENTATION_INCLUDED
#define GENMOD_FLOW_IMPLEMENTATION_INCLUDED

/* This implementation uses only genmod.h's public API, so it may sit in its own file; only
   GENMOD_STATIC (every core function private to its file) ties it to the core's. */
#if defined(GENMOD_STATIC) && !defined(GENMOD_IMPLEMENTATION_INCLUDED)
#error "genmod_flow.h: with GENMOD_STATIC, define GENMOD_IMPLEMENTATION and include genmod.h in this file first"
#endif

#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(GENMOD_MALLOC) != defined(GENMOD_FREE) || defined(GENMOD_MALLOC) != defined(GENMOD_REALLOC)
#error "genmod_flow.h: define GENMOD_MALLOC, GENMOD_REALLOC and GENMOD_FREE together, or none of them"
#endif
#ifndef GENMOD_MALLOC
#define GENMOD_MALLOC(sz) malloc(sz)
#define GENMOD_REALLOC(p, sz) realloc(p, sz)
#define GENMOD_FREE(p) free(p)
#endif
#ifdef __cplusplus
#define GM__FLOW_CAST(type, x) static_cast<type>(x)
#else
#define GM__FLOW_CAST(type, x) ((type)(x))
#endif

#define GM__FLOW_LOG2PI_HALF 0.91893853320467274f   /* 0.5 log(2 pi) */

/* ---------------------------------------------------------------------------------------- */
/* Small helpers                                                                            */
/* ---------------------------------------------------------------------------------------- */
static int gm__flow_spatial(const gm_flow_layer *L) { return L->img; }
/* Vector flows: 1-D data, and NICE on images (dense couplings on the flattened pixels). */
static int gm__flow_is_vector(const gm_flow *f) { return f->cfg.height * f->cfg.width == 1 || f->cfg.model == GM_FLOW_NICE; }

/* logdet += t, starting from nothing. t (N) or (1). */
static void gm__flow_ld_add(gm_graph *g, gm_tensor **logdet, gm_tensor *t) {
    if (!logdet) return;
    *logdet = *logdet ? gm_add(g, *logdet, t) : t;
}

/* A constant tensor filled from a host function of the index. */
static gm_tensor *gm__flow_mask(gm_graph *g, const gm_flow_layer *L, int complement) {
    gm_tensor *m;
    int i, j, D = L->channels;
    if (!gm__flow_spatial(L)) {   /* (1, D): dims with (j + parity) even condition */
        m = gm_zeros(g, 1, D, 0, 0);
        if (m) for (j = 0; j < D; j++) m->data[j] = (float)(((j + L->parity) % 2 == 0) != complement);
        return m;
    }
    m = gm_zeros(g, 1, 1, L->height, L->width);     /* (1,1,H,W) checkerboard */
    if (m) for (i = 0; i < L->height; i++) for (j = 0; j < L->width; j++)
        m->data[i * L->width + j] = (float)(((i + j + L->parity) % 2 == 0) != complement);
    return m;
}

/* Per-channel parameter vector (C) shaped to broadcast over x: (1,C) or (1,C,1,1). */
static gm_tensor *gm__flow_chan(gm_graph *g, gm_flow *f, const gm_flow_layer *L, int view) {
    gm_tensor *p = gm_param(g, &f->params, view);
    int C = f->params.views[view].shape[0];
    return gm__flow_spatial(L) ? gm_reshape(g, p, 1, C, 1, 1) : gm_reshape(g, p, 1, C, 0, 0);
}

static gm_tensor *gm__flow_mlp(gm_graph *g, const gm_linear *l, int n, gm_tensor *x) {
    int i;
    for (i = 0; i < n; i++) {
        x = gm_linear_forward(g, &l[i], x);
        if (i < n - 1) x = gm_relu(g, x);
    }
    return x;
}

/* Conv s/t net: 3x3 in, residual blocks (relu conv relu conv + skip), relu, 3x3 out (zero init). */
static gm_tensor *gm__flow_resnet(gm_graph *g, const gm_flow_layer *L, gm_tensor *x) {
    int b, nb = (L->nconv - 2) / 2;
    gm_tensor *h = gm_conv_forward(g, &L->conv[0], x);
    for (b = 0; b < nb; b++) {
        gm_tensor *r = gm_conv_forward(g, &L->conv[1 + 2 * b], gm_relu(g, h));
        h = gm_add(g, h, gm_conv_forward(g, &L->conv[2 + 2 * b], gm_relu(g, r)));
    }
    return gm_conv_forward(g, &L->conv[L->nconv - 1], gm_relu(g, h));
}

/* ---------------------------------------------------------------------------------------- */
/* Building                                                                                 */
/* ---------------------------------------------------------------------------------------- */
GMDEF const char *gm_flow_kind_name(int kind) {
    static const char *names[GM_FLOW_NKINDS] = {"additive", "affine", "scale", "actnorm", "invconv", "squeeze", "split"};
    return kind >= 0 && kind < GM_FLOW_NKINDS ? names[kind] : "?";
}

GMDEF gm_flow_config gm_flow_default_config(int model, int c, int h, int w) {
    gm_flow_config k;
    int image = h * w > 1;
    memset(&k, 0, sizeof k);
    k.model = model; k.channels = c; k.height = h; k.width = w;
    k.n_couplings = model == GM_FLOW_NICE ? 4 : 6;
    k.hidden = 256; k.depth = 4;
    k.init = GM_INIT_GLOROT_UNIFORM;
    k.l2 = image ? 0.0f : 0.01f;
    k.n_scales = 2;
    k.steps = model == GM_FLOW_GLOW ? 4 : 3;
    k.filters = 32; k.blocks = 1;
    k.logit = image; k.logit_alpha = 0.05f; k.dequantize = image ? GM_FLOW_DEQ_UNIFORM : GM_FLOW_DEQ_NONE;
    k.deq_filters = 16;
    k.warmup = image ? 200 : 0;     /* Adam at 1e-3 from the first step can blow up a deep image flow */
    k.lr = image ? 1e-3f : 1e-4f;
    k.batch = image ? 64 : 256;
    k.seed = 1;
    if (image && model == GM_FLOW_NICE) { k.hidden = 256; k.depth = 3; }
    return k;
}

/* Adds the dense s/t MLPs of a coupling: in -> hidden x depth -> out. */
static int gm__flow_add_mlps(gm_flow *f, gm_flow_layer *L, int k, int affine) {
    const gm_flow_config *c = &f->cfg;
    char name[48];
    int i, D = L->channels;
    L->nlin = c->depth + 1;
    for (i = 0; i < L->nlin; i++) {
        int in = i == 0 ? D : c->hidden, out = i == L->nlin - 1 ? D : c->hidden;
        snprintf(name, sizeof name, "f%d.t%d", k, i);
        if (gm_linear_init(&L->t_net[i], &f->params, name, in, out, c->init, &f->rng) != 0) return -1;
        if (!affine) continue;
        snprintf(name, sizeof name, "f%d.s%d", k, i);
        if (gm_linear_init(&L->s_net[i], &f->params, name, in, out, c->init, &f->rng) != 0) return -1;
    }
    return 0;
}

/* Adds a conv coupling's ResNet (cin -> 2 cout channels; the last conv starts at zero so the
   coupling starts as the identity) and its per-channel tanh scale (L->scale, init 1). */
static int gm__flow_add_resnet_named(gm_flow *f, gm_flow_layer *L, const char *pre, int cin, int cout, int F, int blocks) {
    char name[48];
    int b, shape[1];
    float *sc;
    L->nconv = 2 + 2 * blocks;
    snprintf(name, sizeof name, "%s.in", pre);
    if (gm_conv_init(&L->conv[0], &f->params, name, cin, F, 3, 1, 1, GM_INIT_TORCH, &f->rng) != 0) return -1;
    for (b = 0; b < 2 * blocks; b++) {
        snprintf(name, sizeof name, "%s.res%d", pre, b);
        if (gm_conv_init(&L->conv[1 + b], &f->params, name, F, F, 3, 1, 1, GM_INIT_TORCH, &f->rng) != 0) return -1;
    }
    snprintf(name, sizeof name, "%s.out", pre);
    if (gm_conv_init(&L->conv[L->nconv - 1], &f->params, name, F, 2 * cout, 3, 1, 1, GM_INIT_ZERO, &f->rng) != 0) return -1;
    snprintf(name, sizeof name, "%s.scale", pre);
    shape[0] = cout;
    if ((L->scale = gm_params_add(&f->params, name, 1, shape)) < 0) return -1;
    sc = gm_params_data(&f->params, L->scale);
    for (b = 0; b < cout; b++) sc[b] = 1.0f;
    return 0;
}

/* Coupling k's net: cfg.filters wide, cfg.blocks blocks, parameters "f<k>.*". */
static int gm__flow_add_resnet(gm_flow *f, gm_flow_layer *L, int k, int cin, int cout) {
    char pre[16];
    snprintf(pre, sizeof pre, "f%d", k);
    return gm__flow_add_resnet_named(f, L, pre, cin, cout, f->cfg.filters, f->cfg.blocks);
}

/* Plain-double LU with partial pivoting of an n x n row-major matrix: a = P^T L U in place
   (unit-lower L below the diagonal, U on and above); perm[i] = source row of row i. -1 if
   singular. Model-specific: the invertible 1x1 convolution's parametrization and inverse. */
static int gm__flow_lu(int n, double *a, int *perm) {
    int i, j, k;
    for (i = 0; i < n; i++) perm[i] = i;
    for (k = 0; k < n; k++) {
        int p = k;
        for (i = k + 1; i < n; i++) if (fabs(a[i * n + k]) > fabs(a[p * n + k])) p = i;
        if (fabs(a[p * n + k]) < 1e-300) return -1;
        if (p != k) {
            for (j = 0; j < n; j++) { double tmp = a[k * n + j]; a[k * n + j] = a[p * n + j]; a[p * n + j] = tmp; }
            i = perm[k]; perm[k] = perm[p]; perm[p] = i;
        }
        for (i = k + 1; i < n; i++) {
            a[i * n + k] /= a[k * n + k];
            for (j = k + 1; j < n; j++) a[i * n + j] -= a[i * n + k] * a[k * n + j];
        }
    }
    return 0;
}

/* Invertible 1x1 conv parameters from a random rotation: lower, upper, logs = log|s| (trained),
   perm the permutation matrix and sign = sign(s) (buffers). */
static int gm__flow_add_invconv(gm_flow *f, gm_flow_layer *L, int k) {
    int C = L->channels, i, j, shape[2], *perm;
    double *a = GM__FLOW_CAST(double *, GENMOD_MALLOC(sizeof(double) * (size_t)C * C));
    char name[48];
    float *lo, *up, *ls, *pm, *sg;
    perm = GM__FLOW_CAST(int *, GENMOD_MALLOC(sizeof(int) * (size_t)C));
    if (!a || !perm) { GENMOD_FREE(a); GENMOD_FREE(perm); return gm_fail("flow: out of memory"); }
    /* Gram-Schmidt on a Gaussian matrix: a random orthogonal W, as Glow initializes it */
    for (i = 0; i < C * C; i++) a[i] = gm_rng_normal(&f->rng);
    for (i = 0; i < C; i++) {
        double nrm = 0;
        for (j = 0; j < i; j++) {
            double d = 0; int q;
            for (q = 0; q < C; q++) d += a[i * C + q] * a[j * C + q];
            for (q = 0; q < C; q++) a[i * C + q] -= d * a[j * C + q];
        }
        for (j = 0; j < C; j++) nrm += a[i * C + j] * a[i * C + j];
        nrm = sqrt(nrm);
        for (j = 0; j < C; j++) a[i * C + j] /= nrm;
    }
    if (gm__flow_lu(C, a, perm) != 0) { GENMOD_FREE(a); GENMOD_FREE(perm); return gm_fail("flow: singular 1x1 init"); }
    shape[0] = C; shape[1] = C;
    snprintf(name, sizeof name, "f%d.lower", k);  L->lower = gm_params_add(&f->params, name, 2, shape);
    snprintf(name, sizeof name, "f%d.upper", k);  L->upper = gm_params_add(&f->params, name, 2, shape);
    snprintf(name, sizeof name, "f%d.logs", k);   L->logs = gm_params_add(&f->params, name, 1, shape);
    snprintf(name, sizeof name, "f%d.perm", k);   L->perm = gm_params_add(&f->params, name, 2, shape);
    snprintf(name, sizeof name, "f%d.sign", k);   L->sign = gm_params_add(&f->params, name, 1, shape);
    if (L->lower < 0 || L->upper < 0 || L->logs < 0 || L->perm < 0 || L->sign < 0) {
        GENMOD_FREE(a); GENMOD_FREE(perm); return -1;
    }
    gm_params_mark_buffer(&f->params, L->perm);
    gm_params_mark_buffer(&f->params, L->sign);
    lo = gm_params_data(&f->params, L->lower); up = gm_params_data(&f->params, L->upper); ls = gm_params_data(&f->params, L->logs);
    pm = gm_params_data(&f->params, L->perm); sg = gm_params_data(&f->params, L->sign);
    for (i = 0; i < C; i++) for (j = 0; j < C; j++) {
        lo[i * C + j] = i > j ? (float)a[i * C + j] : 0.0f;
        up[i * C + j] = i < j ? (float)a[i * C + j] : 0.0f;
        pm[i * C + j] = 0.0f;
    }
    for (i = 0; i < C; i++) {
        pm[perm[i] * C + i] = 1.0f;       /* W = P^T L U: row perm[i] of W is row i of L U */
        ls[i] = (float)log(fabs(a[i * C + i]));
        sg[i] = a[i * C + i] < 0 ? -1.0f : 1.0f;
    }
    GENMOD_FREE(a); GENMOD_FREE(perm);
    return 0;
}

/* Parameters per kind. Couplings: MLPs or a ResNet. SCALE: scale = s (D). ACTNORM: bias,
   logs (C), inited (a buffer, so checkpoints keep it). */
static int gm__flow_add_params(gm_flow *f, gm_flow_layer *L, int k) {
    char name[48];
    int shape[1], ca;
    shape[0] = L->channels;
    switch (L->kind) {
    case GM_FLOW_ADDITIVE: case GM_FLOW_AFFINE:
        if (!gm__flow_spatial(L)) return gm__flow_add_mlps(f, L, k, L->kind == GM_FLOW_AFFINE);
        if (L->mask == GM_FLOW_MASK_CHECKER) return gm__flow_add_resnet(f, L, k, L->channels, L->channels);
        ca = L->channels / 2;   /* channel-wise: the conditioning half in, the other half out */
        return gm__flow_add_resnet(f, L, k, L->parity ? L->channels - ca : ca, L->parity ? ca : L->channels - ca);
    case GM_FLOW_SCALE:
        snprintf(name, sizeof name, "f%d.s", k);
        return (L->scale = gm_params_add(&f->params, name, 1, shape)) < 0 ? -1 : 0;   /* zero: identity */
    case GM_FLOW_ACTNORM:
        snprintf(name, sizeof name, "f%d.bias", k);  L->bias = gm_params_add(&f->params, name, 1, shape);
        snprintf(name, sizeof name, "f%d.logs", k);  L->logs = gm_params_add(&f->params, name, 1, shape);
        shape[0] = 1;
        snprintf(name, sizeof name, "f%d.inited", k); L->inited = gm_params_add(&f->params, name, 1, shape);
        if (L->bias < 0 || L->logs < 0 || L->inited < 0) return -1;
        gm_params_mark_buffer(&f->params, L->inited);
        return 0;
    case GM_FLOW_INVCONV:
        return gm__flow_add_invconv(f, L, k);
    default:
        return 0;
    }
}

GMDEF int gm_flow_add(gm_flow *f, int kind, int mask, int parity) {
    gm_flow_layer *L;
    int C, H, W, img, coupling;
    if (!f || !f->graph) return gm_fail("gm_flow_add: flow not begun (call gm_flow_begin or gm_flow_init first)");
    if (kind < 0 || kind >= GM_FLOW_NKINDS) return gm_fail("gm_flow_add: unknown layer kind %d", kind);
    if (f->nlayers >= GM_FLOW_MAX_LAYERS) return gm_fail("gm_flow_add: more than %d layers", GM_FLOW_MAX_LAYERS);
    C = f->cur_c; H = f->cur_h; W = f->cur_w;
    img = !gm__flow_is_vector(f);
    coupling = kind == GM_FLOW_ADDITIVE || kind == GM_FLOW_AFFINE;
    if ((kind == GM_FLOW_SQUEEZE || kind == GM_FLOW_SPLIT) && !img)
        return gm_fail("gm_flow_add: %s works on images only", gm_flow_kind_name(kind));
    if (kind == GM_FLOW_SQUEEZE && (H % 2 || W % 2))
        return gm_fail("gm_flow_add: squeeze needs even height and width, have %dx%d", H, W);
    if (kind == GM_FLOW_SPLIT && C < 2)
        return gm_fail("gm_flow_add: split needs at least 2 channels, have %d", C);
    if (coupling && C * H * W < 2) return gm_fail("gm_flow_add: a coupling needs at least 2 dimensions");
    if (coupling && img && mask == GM_FLOW_MASK_ALT) mask = GM_FLOW_MASK_CHECKER;
    if (coupling && img && H * W == 1) mask = GM_FLOW_MASK_CHANNEL;   /* no checkerboard on 1 pixel */
    if (coupling && img && mask == GM_FLOW_MASK_CHANNEL && C < 2)
        return gm_fail("gm_flow_add: a channel-wise coupling needs at least 2 channels, have %d", C);
    if (coupling && !img) mask = GM_FLOW_MASK_ALT;
    L = &f->layers[f->nlayers];
    memset(L, 0, sizeof *L);
    L->kind = kind; L->mask = mask; L->parity = parity & 1;
    L->scale = L->bias = L->logs = L->inited = L->lower = L->upper = L->perm = L->sign = -1;
    L->channels = C; L->height = H; L->width = W; L->img = img;
    if (gm__flow_add_params(f, L, f->nlayers) != 0) return -1;
    if (kind == GM_FLOW_SQUEEZE) { f->cur_c = 4 * C; f->cur_h = H / 2; f->cur_w = W / 2; }
    if (kind == GM_FLOW_SPLIT) f->cur_c = C / 2;
    f->nlayers++;
    return 0;
}

/* The config's checks; the message names the field. */
static int gm__flow_check_config(const gm_flow_config *cfg) {
    if (cfg->model < GM_FLOW_NICE || cfg->model > GM_FLOW_GLOW)
        return gm_fail("flow config: unknown model %d (cfg.model: GM_FLOW_NICE, _REALNVP or _GLOW)", cfg->model);
    if (cfg->channels <= 0 || cfg->height <= 0 || cfg->width <= 0 || (double)cfg->channels * cfg->height * cfg->width > 1e7)
        return gm_fail("flow config: bad data shape %dx%dx%d (cfg.channels x cfg.height x cfg.width)", cfg->channels,
                       cfg->height, cfg->width);
    if (cfg->hidden <= 0 || cfg->depth < 1 || cfg->depth > GM_FLOW_MAX_DEPTH)
        return gm_fail("flow config: dense nets need cfg.hidden > 0 and cfg.depth in 1..%d (have %d, %d)",
                       GM_FLOW_MAX_DEPTH, cfg->hidden, cfg->depth);
    if (cfg->filters <= 0 || cfg->blocks < 0 || cfg->blocks > GM_FLOW_MAX_BLOCKS)
        return gm_fail("flow config: conv nets need cfg.filters > 0 and cfg.blocks in 0..%d (have %d, %d)",
                       GM_FLOW_MAX_BLOCKS, cfg->filters, cfg->blocks);
    if (cfg->logit && !(cfg->logit_alpha >= 0 && cfg->logit_alpha < 0.5f))
        return gm_fail("flow config: cfg.logit_alpha must be in [0, 0.5), is %g", (double)cfg->logit_alpha);
    if (!(cfg->lr > 0)) return gm_fail("flow config: cfg.lr must be > 0, is %g", (double)cfg->lr);
    if (cfg->batch <= 0) return gm_fail("flow config: cfg.batch must be > 0, is %d", cfg->batch);
    if (cfg->dequantize < GM_FLOW_DEQ_NONE || cfg->dequantize > GM_FLOW_DEQ_VARIATIONAL)
        return gm_fail("flow config: cfg.dequantize must be GM_FLOW_DEQ_NONE, _UNIFORM or _VARIATIONAL, is %d",
                       cfg->dequantize);
    if (cfg->dequantize == GM_FLOW_DEQ_VARIATIONAL && (cfg->height < 2 || cfg->width < 2 || cfg->deq_filters <= 0))
        return gm_fail("flow config: variational dequantization needs images (have %dx%dx%d) and cfg.deq_filters > 0 "
                       "(is %d)", cfg->channels, cfg->height, cfg->width, cfg->deq_filters);
    if (cfg->warmup < 0) return gm_fail("flow config: cfg.warmup must be >= 0, is %ld", cfg->warmup);
    return 0;
}

GMDEF int gm_flow_begin(gm_flow *f, const gm_flow_config *cfg) {
    if (f) memset(f, 0, sizeof *f);   /* first: a failed begin leaves a flow gm_flow_free accepts */
    if (!f || !cfg) return gm_fail("gm_flow_begin: NULL argument");
    if (gm__flow_check_config(cfg) != 0) return -1;
    f->cfg = *cfg;
    f->dim = cfg->channels * cfg->height * cfg->width;
    f->cur_c = cfg->channels; f->cur_h = cfg->height; f->cur_w = cfg->width;
    /* NICE on images: dense couplings on the flattened pixels */
    if (cfg->model == GM_FLOW_NICE) { f->cur_c = f->dim; f->cur_h = f->cur_w = 1; }
    gm_rng_seed(&f->rng, cfg->seed);
    f->opt = gm_adam(cfg->lr, 0.9f, 0.999f);
    f->opt.clip_norm = cfg->clip_norm;
    f->opt.sched.warmup = cfg->warmup;
    f->graph = gm_graph_new(cfg->seed + 11);
    if (!f->graph) { gm_optim_free(&f->opt); return gm_fail("flow: out of memory for the graph"); }
    if (cfg->dequantize == GM_FLOW_DEQ_VARIATIONAL) {    /* q(u|x): one small ResNet, mu and log-sigma */
        gm_flow_layer *L = &f->deq;
        L->img = 1; L->channels = cfg->channels; L->height = cfg->height; L->width = cfg->width;
        if (gm__flow_add_resnet_named(f, L, "deq", cfg->channels, cfg->channels, cfg->deq_filters, 1) != 0) return -1;
    }
    return 0;
}

static int gm__flow_recipe_vectors(gm_flow *f) {
    const gm_flow_config *c = &f->cfg;
    int k, rc = 0;
    for (k = 0; k < c->n_couplings && rc == 0; k++) {
        if (c->model == GM_FLOW_GLOW) {
            rc = gm_flow_add(f, GM_FLOW_ACTNORM, 0, 0);
            if (rc == 0) rc = gm_flow_add(f, GM_FLOW_INVCONV, 0, 0);
        }
        if (rc == 0) rc = gm_flow_add(f, c->model == GM_FLOW_NICE ? GM_FLOW_ADDITIVE : GM_FLOW_AFFINE, GM_FLOW_MASK_ALT, k);
    }
    if (rc == 0 && c->model == GM_FLOW_NICE) rc = gm_flow_add(f, GM_FLOW_SCALE, 0, 0);
    return rc;
}

/* RealNVP multi-scale (Dinh et al. 2017, section 3.6). */
static int gm__flow_recipe_realnvp(gm_flow *f) {
    const gm_flow_config *c = &f->cfg;
    int s, k, rc = 0;
    for (s = 0; s < c->n_scales && rc == 0; s++) {
        int last = s == c->n_scales - 1 || f->cur_h % 2 || f->cur_w % 2;
        for (k = 0; k < (last ? c->steps + 1 : c->steps) && rc == 0; k++)
            rc = gm_flow_add(f, GM_FLOW_AFFINE, GM_FLOW_MASK_CHECKER, k);
        if (last) break;
        if (rc == 0) rc = gm_flow_add(f, GM_FLOW_SQUEEZE, 0, 0);
        for (k = 0; k < c->steps && rc == 0; k++) rc = gm_flow_add(f, GM_FLOW_AFFINE, GM_FLOW_MASK_CHANNEL, k);
        if (rc == 0) rc = gm_flow_add(f, GM_FLOW_SPLIT, 0, 0);
    }
    return rc;
}

/* Glow (Kingma & Dhariwal 2018): per level squeeze, K x (actnorm, 1x1 conv, coupling), split. */
static int gm__flow_recipe_glow(gm_flow *f) {
    const gm_flow_config *c = &f->cfg;
    int s, k, rc = 0;
    for (s = 0; s < c->n_scales && rc == 0; s++) {
        if (f->cur_h % 2 == 0 && f->cur_w % 2 == 0) rc = gm_flow_add(f, GM_FLOW_SQUEEZE, 0, 0);
        for (k = 0; k < c->steps && rc == 0; k++) {
            rc = gm_flow_add(f, GM_FLOW_ACTNORM, 0, 0);
            if (rc == 0) rc = gm_flow_add(f, GM_FLOW_INVCONV, 0, 0);
            if (rc == 0) rc = gm_flow_add(f, GM_FLOW_AFFINE, f->cur_c >= 2 ? GM_FLOW_MASK_CHANNEL : GM_FLOW_MASK_CHECKER, k);
        }
        if (rc == 0 && s < c->n_scales - 1) rc = gm_flow_add(f, GM_FLOW_SPLIT, 0, 0);
    }
    return rc;
}

GMDEF int gm_flow_init(gm_flow *f, const gm_flow_config *cfg) {
    int rc;
    if (gm_flow_begin(f, cfg) != 0) { if (f) gm_flow_free(f); return -1; }
    if (gm__flow_is_vector(f)) rc = gm__flow_recipe_vectors(f);
    else if (cfg->model == GM_FLOW_REALNVP) rc = gm__flow_recipe_realnvp(f);
    else rc = gm__flow_recipe_glow(f);
    if (rc != 0) gm_flow_free(f);
    else f->recipe_layers = f->nlayers;
    return rc;
}

GMDEF void gm_flow_free(gm_flow *f) {
    if (!f) return;
    gm_graph_free(f->graph);
    gm_optim_free(&f->opt);
    gm_params_free(&f->params);
    GENMOD_FREE(f->buf);
    f->graph = NULL; f->buf = NULL; f->buf_cap = 0; f->nlayers = f->recipe_layers = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Layers: forward (x -> z) and inverse (z -> x)                                             */
/* ---------------------------------------------------------------------------------------- */
/* s (tanh-bounded) and t of a coupling from its conditioning input; both (N, like x2). */
static void gm__flow_st(gm_graph *g, gm_flow *f, const gm_flow_layer *L, gm_tensor *cond, int c2,
                        gm_tensor **s, gm_tensor **t) {
    if (!gm__flow_spatial(L)) {
        *t = gm__flow_mlp(g, L->t_net, L->nlin, cond);
        *s = L->kind == GM_FLOW_AFFINE ? gm_tanh(g, gm__flow_mlp(g, L->s_net, L->nlin, cond)) : NULL;
        return;
    } else {
        gm_tensor *h = gm__flow_resnet(g, L, cond);          /* (N, 2 c2, H, W) */
        *t = gm_slice(g, h, 1, c2, c2);
        *s = L->kind == GM_FLOW_AFFINE
                 ? gm_mul(g, gm_tanh(g, gm_slice(g, h, 1, 0, c2)), gm__flow_chan(g, f, L, L->scale)) : NULL;
    }
}

/* Masked coupling (alternating or checkerboard): z = xm + (1-m)(x - t) e^{-s}. */
static gm_tensor *gm__flow_coupling_mask(gm_graph *g, gm_flow *f, const gm_flow_layer *L, gm_tensor *x,
                                         gm_tensor **logdet, int inverse) {
    gm_tensor *m = gm__flow_mask(g, L, 0), *mc = gm__flow_mask(g, L, 1), *s, *t;
    gm_tensor *xm = gm_mul(g, x, m);
    gm__flow_st(g, f, L, xm, L->channels, &s, &t);
    t = gm_mul(g, t, mc);
    if (s) s = gm_mul(g, s, mc);
    if (!inverse) {
        gm_tensor *d = gm_sub(g, x, t);    /* t is 0 where m = 1, so xm passes */
        if (!s) return d;
        gm__flow_ld_add(g, logdet, gm_neg(g, gm_sum_rows(g, s)));
        return gm_add(g, xm, gm_mul(g, gm_mul(g, d, mc), gm_exp(g, gm_neg(g, s))));
    }
    if (!s) return gm_add(g, x, t);
    gm__flow_ld_add(g, logdet, gm_sum_rows(g, s));
    return gm_add(g, xm, gm_mul(g, gm_add(g, gm_mul(g, x, gm_exp(g, s)), t), mc));
}

/* Channel-wise coupling: one half of the channels conditions the other. */
static gm_tensor *gm__flow_coupling_chan(gm_graph *g, gm_flow *f, const gm_flow_layer *L, gm_tensor *x,
                                         gm_tensor **logdet, int inverse) {
    int ca = L->channels / 2, cb = L->channels - ca;
    gm_tensor *a = gm_slice(g, x, 1, 0, ca), *b = gm_slice(g, x, 1, ca, cb), *cond, *other, *s, *t, *y;
    cond = L->parity ? b : a;
    other = L->parity ? a : b;
    gm__flow_st(g, f, L, cond, other->shape[1], &s, &t);
    if (!inverse) {
        y = gm_sub(g, other, t);
        if (s) { y = gm_mul(g, y, gm_exp(g, gm_neg(g, s))); gm__flow_ld_add(g, logdet, gm_neg(g, gm_sum_rows(g, s))); }
    } else {
        y = other;
        if (s) { y = gm_mul(g, y, gm_exp(g, s)); gm__flow_ld_add(g, logdet, gm_sum_rows(g, s)); }
        y = gm_add(g, y, t);
    }
    return L->parity ? gm_concat(g, y, cond, 1) : gm_concat(g, cond, y, 1);
}

/* NICE scaling: z = x e^s, log-det = sum s. */
static gm_tensor *gm__flow_scale(gm_graph *g, gm_flow *f, const gm_flow_layer *L, gm_tensor *x, gm_tensor **logdet,
                                 int inverse) {
    gm_tensor *s = gm__flow_chan(g, f, L, L->scale);
    gm__flow_ld_add(g, logdet, inverse ? gm_neg(g, gm_sum(g, s)) : gm_sum(g, s));
    return gm_mul(g, x, gm_exp(g, inverse ? gm_neg(g, s) : s));
}

/* Actnorm's data-dependent init: per channel, bias = -mean, logs = -log(std) of this batch. */
static void gm__flow_actnorm_init(gm_flow *f, const gm_flow_layer *L, const gm_tensor *x) {
    int C = L->channels, HW = L->height * L->width, N = x->shape[0], n, c, q;
    float *b = gm_params_data(&f->params, L->bias), *ls = gm_params_data(&f->params, L->logs);
    for (c = 0; c < C; c++) {
        double s = 0, s2 = 0, cnt = (double)N * HW, mean, var;
        for (n = 0; n < N; n++) for (q = 0; q < HW; q++) {
            double v = x->data[((size_t)n * C + c) * HW + q];
            s += v; s2 += v * v;
        }
        mean = s / cnt;
        var = s2 / cnt - mean * mean;
        b[c] = (float)-mean;
        ls[c] = (float)(-0.5 * log(var > 1e-12 ? var + 1e-6 : 1.0));
    }
    gm_params_data(&f->params, L->inited)[0] = 1.0f;
}

static gm_tensor *gm__flow_actnorm(gm_graph *g, gm_flow *f, const gm_flow_layer *L, gm_tensor *x, gm_tensor **logdet,
                                   int inverse) {
    gm_tensor *b, *ls;
    if (!x) return NULL;
    if (!inverse && gm_params_data(&f->params, L->inited)[0] == 0.0f) gm__flow_actnorm_init(f, L, x);
    b = gm__flow_chan(g, f, L, L->bias);
    ls = gm__flow_chan(g, f, L, L->logs);
    gm__flow_ld_add(g, logdet, gm_scale(g, gm_sum(g, ls), (float)(inverse ? -L->height * L->width : L->height * L->width)));
    if (!inverse) return gm_mul(g, gm_add(g, x, b), gm_exp(g, ls));
    return gm_sub(g, gm_mul(g, x, gm_exp(g, gm_neg(g, ls))), b);
}

/* W = P (L + I) (U + diag(sign e^logs)) as ops, so gradients reach lower, upper and logs. */
static gm_tensor *gm__flow_invconv_weight(gm_graph *g, gm_flow *f, const gm_flow_layer *L) {
    int C = L->channels, i, j;
    gm_tensor *lm = gm_zeros(g, C, C, 0, 0), *um = gm_zeros(g, C, C, 0, 0), *eye = gm_zeros(g, C, C, 0, 0);
    gm_tensor *lo, *up, *d;
    if (!lm || !um || !eye) return NULL;
    for (i = 0; i < C; i++) for (j = 0; j < C; j++) {
        lm->data[i * C + j] = (float)(i > j);
        um->data[i * C + j] = (float)(i < j);
        eye->data[i * C + j] = (float)(i == j);
    }
    lo = gm_add(g, gm_mul(g, gm_param(g, &f->params, L->lower), lm), eye);
    d = gm_mul(g, gm_reshape(g, gm_param(g, &f->params, L->sign), 1, C, 0, 0),
               gm_exp(g, gm_reshape(g, gm_param(g, &f->params, L->logs), 1, C, 0, 0)));
    up = gm_add(g, gm_mul(g, gm_param(g, &f->params, L->upper), um), gm_mul(g, eye, d));   /* eye * row d: diag(d) */
    return gm_matmul(g, gm_param(g, &f->params, L->perm), gm_matmul(g, lo, up, 0, 0), 0, 0);
}

/* In-place inverse of an n x n double matrix by LU; -1 if singular. */
static int gm__flow_invert(int n, const double *a, double *inv) {
    double *lu = GM__FLOW_CAST(double *, GENMOD_MALLOC(sizeof(double) * (size_t)n * n));
    int *perm = GM__FLOW_CAST(int *, GENMOD_MALLOC(sizeof(int) * (size_t)n)), i, j, k, rc = -1;
    if (lu && perm) {
        memcpy(lu, a, sizeof(double) * (size_t)n * n);
        if (gm__flow_lu(n, lu, perm) == 0) {
            for (j = 0; j < n; j++) {             /* column j of the inverse: solve A x = e_j */
                double *x = inv;                  /* x is column j, strided by n */
                for (i = 0; i < n; i++) {         /* forward: L y = P e_j */
                    double s = perm[i] == j ? 1.0 : 0.0;
                    for (k = 0; k < i; k++) s -= lu[i * n + k] * x[k * n + j];
                    x[i * n + j] = s;
                }
                for (i = n - 1; i >= 0; i--) {    /* back: U x = y */
                    double s = x[i * n + j];
                    for (k = i + 1; k < n; k++) s -= lu[i * n + k] * x[k * n + j];
                    x[i * n + j] = s / lu[i * n + i];
                }
            }
            rc = 0;
        }
    }
    GENMOD_FREE(lu); GENMOD_FREE(perm);
    return rc;
}

static gm_tensor *gm__flow_invconv(gm_graph *g, gm_flow *f, const gm_flow_layer *L, gm_tensor *x, gm_tensor **logdet,
                                   int inverse) {
    int C = L->channels, i;
    gm_tensor *w = gm__flow_invconv_weight(g, f, L);
    gm__flow_ld_add(g, logdet, gm_scale(g, gm_sum(g, gm_param(g, &f->params, L->logs)),
                                        (float)(inverse ? -L->height * L->width : L->height * L->width)));
    if (!w || !x) return NULL;
    if (inverse) {   /* W^-1 from the current weights, in double; sampling needs no gradient */
        double *a = GM__FLOW_CAST(double *, GENMOD_MALLOC(sizeof(double) * 2 * (size_t)C * C));
        gm_tensor *wi = gm_zeros(g, C, C, 0, 0);
        int rc = a && wi ? 0 : -1;
        if (rc == 0) {
            for (i = 0; i < C * C; i++) a[i] = w->data[i];
            rc = gm__flow_invert(C, a, a + C * C);
            for (i = 0; rc == 0 && i < C * C; i++) wi->data[i] = (float)a[C * C + i];
        }
        GENMOD_FREE(a);
        if (rc != 0) { gm_fail("flow: 1x1 convolution %d is singular", (int)(L - f->layers)); return NULL; }
        w = wi;
    }
    if (!gm__flow_spatial(L)) return gm_matmul(g, x, w, 0, 1);     /* (N,C) W^T */
    return gm_conv2d(g, x, gm_reshape(g, w, C, C, 1, 1), 1, 0);
}

/* Space-to-depth: x[n, c, 2i+a, 2j+b] -> y[n, 4c + 2a + b, i, j], with 4-D reshapes only. */
static gm_tensor *gm__flow_squeeze(gm_graph *g, gm_tensor *x, int C, int H, int W) {
    int N = x ? x->shape[0] : 0, h = H / 2, w = W / 2;
    gm_tensor *y = gm_reshape(g, x, N * C * h, 2, w, 2);            /* [nci, a, j, b] */
    y = gm_permute(g, y, 0, 1, 3, 2);                                /* [nci, a, b, j] */
    y = gm_reshape(g, y, N * C, h, 4, w);                            /* [nc, i, ab, j] */
    y = gm_permute(g, y, 0, 2, 1, 3);                                /* [nc, ab, i, j] */
    return gm_reshape(g, y, N, 4 * C, h, w);
}

static gm_tensor *gm__flow_unsqueeze(gm_graph *g, gm_tensor *y, int C, int H, int W) {
    int N = y ? y->shape[0] : 0, h = H / 2, w = W / 2;
    gm_tensor *x = gm_reshape(g, y, N * C, 4, h, w);                 /* [nc, ab, i, j] */
    x = gm_permute(g, x, 0, 2, 1, 3);                                /* [nc, i, ab, j] */
    x = gm_reshape(g, x, N * C * h, 2, 2, w);                        /* [nci, a, b, j] */
    x = gm_permute(g, x, 0, 1, 3, 2);                                /* [nci, a, j, b] */
    return gm_reshape(g, x, N, C, H, W);
}

static gm_tensor *gm__flow_layer(gm_graph *g, gm_flow *f, int k, gm_tensor *x, gm_tensor **logdet, int inverse) {
    const gm_flow_layer *L = &f->layers[k];
    switch (L->kind) {
    case GM_FLOW_ADDITIVE: case GM_FLOW_AFFINE:
        if (gm__flow_spatial(L) && L->mask == GM_FLOW_MASK_CHANNEL) return gm__flow_coupling_chan(g, f, L, x, logdet, inverse);
        return gm__flow_coupling_mask(g, f, L, x, logdet, inverse);
    case GM_FLOW_SCALE:   return gm__flow_scale(g, f, L, x, logdet, inverse);
    case GM_FLOW_ACTNORM: return gm__flow_actnorm(g, f, L, x, logdet, inverse);
    case GM_FLOW_INVCONV: return gm__flow_invconv(g, f, L, x, logdet, inverse);
    case GM_FLOW_SQUEEZE:
        return inverse ? gm__flow_unsqueeze(g, x, L->channels, L->height, L->width)
                       : gm__flow_squeeze(g, x, L->channels, L->height, L->width);
    default: return x;
    }
}

static int gm__flow_check_layer(gm_graph *g, gm_flow *f, int k) {
    if (!f || k < 0 || k >= f->nlayers) {
        if (g) gm_fail("flow: no layer %d", k);
        return -1;
    }
    return 0;
}

GMDEF gm_tensor *gm_flow_layer_forward(gm_graph *g, gm_flow *f, int k, gm_tensor *x, gm_tensor **logdet,
                                       gm_tensor **out2) {
    const gm_flow_layer *L;
    if (!g || !x || gm__flow_check_layer(g, f, k) != 0) return NULL;
    L = &f->layers[k];
    if (L->kind == GM_FLOW_SPLIT) {
        if (out2) *out2 = gm_slice(g, x, 1, L->channels / 2, L->channels - L->channels / 2);
        return gm_slice(g, x, 1, 0, L->channels / 2);
    }
    return gm__flow_layer(g, f, k, x, logdet, 0);
}

GMDEF gm_tensor *gm_flow_layer_inverse(gm_graph *g, gm_flow *f, int k, gm_tensor *z, gm_tensor *z2) {
    if (!g || !z || gm__flow_check_layer(g, f, k) != 0) return NULL;
    if (f->layers[k].kind == GM_FLOW_SPLIT) return gm_concat(g, z, z2, 1);
    return gm__flow_layer(g, f, k, z, NULL, 1);
}

/* ---------------------------------------------------------------------------------------- */
/* The whole flow                                                                           */
/* ---------------------------------------------------------------------------------------- */
/* x in [0,1] -> logit(a + (1-2a) x); adds log|dy/dx| = sum log(1-2a) - log s - log(1-s). */
static gm_tensor *gm__flow_logit(gm_graph *g, gm_flow *f, gm_tensor *x, gm_tensor **logdet) {
    float a = f->cfg.logit_alpha;
    gm_tensor *s = gm_affine(g, x, 1.0f - 2.0f * a, a), *l1 = gm_log(g, s), *l2 = gm_log(g, gm_affine(g, s, -1.0f, 1.0f));
    gm__flow_ld_add(g, logdet, gm_affine(g, gm_neg(g, gm_sum_rows(g, gm_add(g, l1, l2))), 1.0f,
                                         (float)(f->dim * log(1.0 - 2.0 * a))));
    return gm_sub(g, l1, l2);
}

GMDEF gm_tensor *gm_flow_forward(gm_graph *g, gm_flow *f, gm_tensor *x, gm_tensor **logdet) {
    gm_tensor *h, *z = NULL, *ld = NULL;
    int k, N;
    if (!g || !f || !x) return NULL;
    if (f->nlayers == 0 || x->size != x->shape[0] * f->dim) {
        gm_fail("gm_flow_forward: want %d floats per example, got a tensor of %d with %d rows", f->dim, x->size,
                 x->shape[0]);
        return NULL;
    }
    N = x->shape[0];
    h = gm_reshape(g, x, N, f->dim, 0, 0);
    if (f->cfg.logit) h = gm__flow_logit(g, f, h, &ld);
    if (!gm__flow_is_vector(f)) h = gm_reshape(g, h, N, f->cfg.channels, f->cfg.height, f->cfg.width);
    for (k = 0; k < f->nlayers && h; k++) {
        gm_tensor *out = NULL;
        h = gm_flow_layer_forward(g, f, k, h, &ld, &out);
        if (out) { out = gm_flatten(g, out); z = z ? gm_concat(g, z, out, 1) : out; }
    }
    h = h && h->ndim > 2 ? gm_flatten(g, h) : h;
    z = z ? gm_concat(g, z, h, 1) : h;
    if (logdet) *logdet = ld ? ld : gm_zeros(g, N, 0, 0, 0);
    if (logdet && (*logdet)->size == 1 && N > 1) *logdet = gm_add(g, *logdet, gm_zeros(g, N, 0, 0, 0));
    return z;
}

GMDEF gm_tensor *gm_flow_log_prob(gm_graph *g, gm_flow *f, gm_tensor *x) {
    gm_tensor *ld = NULL, *z = gm_flow_forward(g, f, x, &ld);
    gm_tensor *lpz = gm_affine(g, gm_sum_rows(g, gm_square(g, z)), -0.5f, -GM__FLOW_LOG2PI_HALF * (float)f->dim);
    return gm_add(g, lpz, ld);
}

/* u = sigmoid(v), v = mu + e^ls eps with (mu, ls) from a ResNet on x (ls tanh-bounded, per-channel
   scale; the last conv starts at zero, so q starts as the logistic-normal sigmoid(N(0, 1))).
   log q(u|x) = log N(eps) - ls - log sigmoid'(v), and log sigmoid' = log_sigmoid(v) + log_sigmoid(-v). */
GMDEF gm_tensor *gm_flow_dequantize(gm_graph *g, gm_flow *f, gm_tensor *x, gm_tensor *eps, gm_tensor **logq) {
    const gm_flow_layer *L = &f->deq;
    gm_tensor *xi, *h, *mu, *ls, *e, *v, *u, *lq;
    int N, C, H, W;
    if (!g || !f || !x || !eps) { gm_fail("gm_flow_dequantize: NULL argument"); return NULL; }
    if (f->cfg.dequantize != GM_FLOW_DEQ_VARIATIONAL || L->nconv == 0) {
        gm_fail("gm_flow_dequantize: the flow's dequantizer is not variational (cfg.dequantize %d)", f->cfg.dequantize);
        return NULL;
    }
    N = x->shape[0]; C = L->channels; H = L->height; W = L->width;
    if (x->size != N * f->dim || eps->size != x->size) {
        gm_fail("gm_flow_dequantize: want %d floats per example in x and eps, got %d and %d with %d rows", f->dim,
                x->size, eps->size, N);
        return NULL;
    }
    xi = gm_reshape(g, x, N, C, H, W);
    h = gm__flow_resnet(g, L, gm_affine(g, xi, 2.0f, -1.0f));
    mu = gm_slice(g, h, 1, C, C);
    ls = gm_mul(g, gm_tanh(g, gm_slice(g, h, 1, 0, C)), gm__flow_chan(g, f, L, L->scale));
    e = gm_reshape(g, eps, N, C, H, W);
    v = gm_add(g, mu, gm_mul(g, gm_exp(g, ls), e));
    u = gm_sigmoid(g, v);
    lq = gm_add(g, gm_affine(g, gm_square(g, e), -0.5f, -GM__FLOW_LOG2PI_HALF), gm_neg(g, ls));
    lq = gm_sub(g, lq, gm_add(g, gm_log_sigmoid(g, v), gm_log_sigmoid(g, gm_neg(g, v))));
    if (logq) *logq = gm_sum_rows(g, lq);
    return gm_reshape(g, gm_add(g, gm_affine(g, xi, 255.0f / 256.0f, 0.0f), gm_scale(g, u, 1.0f / 256.0f)), N, f->dim, 0, 0);
}

GMDEF gm_tensor *gm_flow_elbo(gm_graph *g, gm_flow *f, gm_tensor *x, gm_tensor *eps) {
    gm_tensor *lq = NULL, *y;
    if (!g || !f || !x) return NULL;
    if (f->cfg.dequantize != GM_FLOW_DEQ_VARIATIONAL) return gm_flow_log_prob(g, f, x);
    y = gm_flow_dequantize(g, f, x, eps, &lq);
    return y ? gm_sub(g, gm_flow_log_prob(g, f, y), lq) : NULL;
}

GMDEF gm_tensor *gm_flow_inverse(gm_graph *g, gm_flow *f, gm_tensor *z) {
    int k, N, off, c, h, w, sizes[GM_FLOW_MAX_LAYERS];
    gm_tensor *x;
    if (!g || !f || !z) return NULL;
    if (f->nlayers == 0 || z->size != z->shape[0] * f->dim) {
        gm_fail("gm_flow_inverse: want %d floats per example, got %d with %d rows", f->dim, z->size, z->shape[0]);
        return NULL;
    }
    N = z->shape[0];
    z = gm_reshape(g, z, N, f->dim, 0, 0);
    /* z = [factored pieces in layer order..., final]: the final part is the last cur dims */
    off = f->dim - f->cur_c * f->cur_h * f->cur_w;
    x = gm_slice(g, z, 1, off, f->dim - off);
    if (!gm__flow_is_vector(f)) x = gm_reshape(g, x, N, f->cur_c, f->cur_h, f->cur_w);
    for (k = 0; k < f->nlayers; k++) {
        const gm_flow_layer *L = &f->layers[k];
        sizes[k] = L->kind == GM_FLOW_SPLIT ? (L->channels - L->channels / 2) * L->height * L->width : 0;
    }
    for (k = f->nlayers - 1; k >= 0 && x; k--) {
        const gm_flow_layer *L = &f->layers[k];
        gm_tensor *z2 = NULL;
        if (L->kind == GM_FLOW_SPLIT) {
            c = L->channels - L->channels / 2; h = L->height; w = L->width;
            off -= sizes[k];
            z2 = gm_reshape(g, gm_slice(g, z, 1, off, sizes[k]), N, c, h, w);
        }
        x = gm_flow_layer_inverse(g, f, k, x, z2);
    }
    x = x && x->ndim > 2 ? gm_flatten(g, x) : x;
    if (x && f->cfg.logit)
        x = gm_affine(g, gm_sigmoid(g, x), 1.0f / (1.0f - 2.0f * f->cfg.logit_alpha),
                      -f->cfg.logit_alpha / (1.0f - 2.0f * f->cfg.logit_alpha));
    return x;
}

/* ---------------------------------------------------------------------------------------- */
/* Training                                                                                 */
/* ---------------------------------------------------------------------------------------- */
/* sum of w^2 over n floats, adding c w to gr when gr is given. Eight independent partial sums
   keep the adder pipeline full (one running sum would wait on every add). */
static double gm__flow_sumsq_axpy(const float *w, float *gr, float c, size_t n) {
    double part[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tot = 0;
    size_t j = 0;
    int q;
    for (; j + 8 <= n; j += 8)
        for (q = 0; q < 8; q++) {
            part[q] += (double)w[j + q] * w[j + q];
            if (gr) gr[j + q] += c * w[j + q];
        }
    for (; j < n; j++) {
        part[0] += (double)w[j] * w[j];
        if (gr) gr[j] += c * w[j];
    }
    for (q = 0; q < 8; q++) tot += part[q];
    return tot;
}

/* Keras-style L2 on the dense kernels: adds 2 l2 W to their gradients, returns l2 sum W^2. */
static double gm__flow_l2(gm_flow *f, int apply) {
    double tot = 0;
    int k, i;
    for (k = 0; k < f->nlayers; k++) {
        gm_flow_layer *L = &f->layers[k];
        for (i = 0; i < L->nlin; i++) {
            int views[2], q;
            views[0] = L->t_net[i].w; views[1] = L->kind == GM_FLOW_AFFINE ? L->s_net[i].w : -1;
            for (q = 0; q < 2; q++) {
                if (views[q] < 0) continue;
                tot += gm__flow_sumsq_axpy(gm_params_data(&f->params, views[q]),
                                           apply ? gm_params_grad(&f->params, views[q]) : NULL, 2.0f * f->cfg.l2,
                                           (size_t)f->params.views[views[q]].size);
            }
        }
    }
    return f->cfg.l2 * tot;
}

static void gm__flow_normals(float *e, size_t n, gm_rng *r) {
    size_t i;
    for (i = 0; i < n; i++) e[i] = gm_rng_normal(r);
}

static int gm__flow_check_x(const gm_flow *f, const void *x, int n, const char *who) {
    if (!f || !f->graph) return gm_fail("%s: flow not initialized", who);
    if (!x || n <= 0) return gm_fail("%s: need data and n > 0 (n = %d)", who, n);
    return 0;
}

/* The flows here model p(x) alone: labels are refused rather than silently ignored. */
static int gm__flow_no_labels(const int *labels, const char *who) {
    return labels ? gm_fail("%s: labels given, but this model is unconditional (pass NULL)", who) : 0;
}

GMDEF int gm_flow_data_init(gm_flow *f, const float *x, int n) {
    gm_tensor *z;
    int saved;
    if (gm__flow_check_x(f, x, n, "gm_flow_data_init") != 0) return -1;
    gm_graph_reset(f->graph);
    saved = gm_graph_set_grad(f->graph, 0);
    /* one forward on all n examples (not chunked: the statistics are over the whole batch) */
    z = gm_flow_forward(f->graph, f, gm_input(f->graph, x, n, f->dim, 0, 0), NULL);
    gm_graph_set_grad(f->graph, saved);
    return z ? 0 : gm_graph_fail(f->graph, "gm_flow_data_init");
}

GMDEF int gm_flow_train_step(gm_flow *f, const float *x, const int *labels, int n, gm_flow_stats *stats) {
    gm_graph *g;
    gm_tensor *lp, *loss;
    size_t count;
    double l2;
    char who[64];
    if (gm__flow_check_x(f, x, n, "gm_flow_train_step") != 0 || gm__flow_no_labels(labels, "gm_flow_train_step") != 0)
        return -1;
    count = (size_t)n * f->dim;
    if (gm_floats_reserve(&f->buf, &f->buf_cap, 2 * count) != 0) return -1;
    memcpy(f->buf, x, sizeof(float) * count);
    if (f->cfg.dequantize == GM_FLOW_DEQ_UNIFORM) gm_dequantize(f->buf, count, &f->rng);
    if (f->cfg.dequantize == GM_FLOW_DEQ_VARIATIONAL) gm__flow_normals(f->buf + count, count, &f->rng);
    g = f->graph;
    gm_graph_reset(g);
    gm_graph_set_grad(g, 1);
    lp = gm_flow_elbo(g, f, gm_input(g, f->buf, n, f->dim, 0, 0), gm_input(g, f->buf + count, n, f->dim, 0, 0));
    loss = gm_neg(g, gm_mean(g, lp));
    if (!loss || gm_backward(g, loss) != 0) {
        snprintf(who, sizeof who, "gm_flow_train_step: step %ld", f->step);
        return gm_graph_fail(g, who);
    }
    l2 = f->cfg.l2 > 0 ? gm__flow_l2(f, 1) : 0.0;
    if (stats) {
        stats->nll = loss->data[0];
        stats->l2 = (float)l2;
        stats->loss = (float)(loss->data[0] + l2);
        stats->grad_norm = gm_grad_norm(&f->params);
    }
    if (gm_optim_step(&f->opt, &f->params) != 0) return -1;
    f->step++;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Inference on plain arrays                                                                */
/* ---------------------------------------------------------------------------------------- */
enum { GM__FLOW_LOGP = 0, GM__FLOW_ENCODE, GM__FLOW_DECODE, GM__FLOW_ELBO };
typedef struct gm__flow_job { gm_flow *f; const float *in, *eps; float *out; int what; } gm__flow_job;

/* One chunk of log p (1 float per example), x -> z or z -> x (dim floats). */
static int gm__flow_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__flow_job *j = GM__FLOW_CAST(gm__flow_job *, ctx);
    gm_flow *f = j->f;
    size_t width = j->what == GM__FLOW_LOGP || j->what == GM__FLOW_ELBO ? 1 : (size_t)f->dim;
    gm_tensor *t = gm_input(g, j->in + (size_t)start * f->dim, count, f->dim, 0, 0);
    if (j->what == GM__FLOW_LOGP) t = gm_flow_log_prob(g, f, t);
    else if (j->what == GM__FLOW_ELBO) t = gm_flow_elbo(g, f, t, gm_input(g, j->eps + (size_t)start * f->dim, count, f->dim, 0, 0));
    else t = j->what == GM__FLOW_DECODE ? gm_flow_inverse(g, f, t) : gm_flow_forward(g, f, t, NULL);
    if (!t) return -1;
    memcpy(j->out + (size_t)start * width, t->data, sizeof(float) * (size_t)count * width);
    return 0;
}

static int gm__flow_run(gm_flow *f, const float *in, int n, float *out, int what, const char *who) {
    gm__flow_job j;
    if (gm__flow_check_x(f, in, n, who) != 0) return -1;
    if (!out) return gm_fail("%s: NULL output", who);
    j.f = f; j.in = in; j.eps = NULL; j.out = out; j.what = what;
    return gm_run_chunks(f->graph, n, gm__flow_chunk, &j, who);
}

GMDEF int gm_flow_log_prob_batch(gm_flow *f, const float *x, int n, float *logp) {
    return gm__flow_run(f, x, n, logp, GM__FLOW_LOGP, "gm_flow_log_prob_batch");
}
GMDEF int gm_flow_encode(gm_flow *f, const float *x, int n, float *z) {
    return gm__flow_run(f, x, n, z, GM__FLOW_ENCODE, "gm_flow_encode");
}
GMDEF int gm_flow_decode(gm_flow *f, const float *z, int n, float *x) {
    return gm__flow_run(f, z, n, x, GM__FLOW_DECODE, "gm_flow_decode");
}

GMDEF int gm_flow_nll(gm_flow *f, const float *x, int n, uint64_t seed, double *nll, double *bpd) {
    float *xb, *lp;
    double s = 0;
    gm_rng r;
    int i;
    if (gm__flow_check_x(f, x, n, "gm_flow_nll") != 0) return -1;
    gm_rng_seed(&r, seed);
    xb = GM__FLOW_CAST(float *, GENMOD_MALLOC(sizeof(float) * ((size_t)n * f->dim + (size_t)n)));
    if (!xb) return gm_fail("gm_flow_nll: out of memory");
    lp = xb + (size_t)n * f->dim;
    memcpy(xb, x, sizeof(float) * (size_t)n * f->dim);
    if (f->cfg.dequantize == GM_FLOW_DEQ_UNIFORM) gm_dequantize(xb, (size_t)n * f->dim, &r);
    if (f->cfg.dequantize == GM_FLOW_DEQ_VARIATIONAL) {   /* one u ~ q(u|x) per example: the bound */
        gm__flow_job j;
        float *eps = GM__FLOW_CAST(float *, GENMOD_MALLOC(sizeof(float) * (size_t)n * f->dim));
        if (!eps) { GENMOD_FREE(xb); return gm_fail("gm_flow_nll: out of memory"); }
        gm__flow_normals(eps, (size_t)n * f->dim, &r);
        j.f = f; j.in = xb; j.eps = eps; j.out = lp; j.what = GM__FLOW_ELBO;
        i = gm_run_chunks(f->graph, n, gm__flow_chunk, &j, "gm_flow_nll");
        GENMOD_FREE(eps);
        if (i != 0) { GENMOD_FREE(xb); return -1; }
    } else if (gm_flow_log_prob_batch(f, xb, n, lp) != 0) { GENMOD_FREE(xb); return -1; }
    for (i = 0; i < n; i++) s -= lp[i];
    s /= n;
    GENMOD_FREE(xb);
    if (nll) *nll = s;
    if (bpd) *bpd = (s + (f->cfg.dequantize ? f->dim * log(256.0) : 0.0)) / (f->dim * log(2.0));
    return isfinite(s) ? 0 : gm_fail("gm_flow_nll: log-likelihood is not finite");
}

GMDEF int gm_flow_sample(gm_flow *f, const int *labels, int n, float *x) {
    return gm_flow_sample_temperature(f, labels, n, 1.0f, x);
}

GMDEF int gm_flow_sample_temperature(gm_flow *f, const int *labels, int n, float temperature, float *x) {
    size_t i, m;
    if (!f || !f->graph || n <= 0 || !x) return gm_fail("gm_flow_sample: bad arguments (n = %d)", n);
    if (gm__flow_no_labels(labels, "gm_flow_sample") != 0) return -1;
    if (!(temperature >= 0)) return gm_fail("gm_flow_sample: temperature must be >= 0, is %g", (double)temperature);
    m = (size_t)n * f->dim;
    if (gm_floats_reserve(&f->buf, &f->buf_cap, m) != 0) return -1;
    for (i = 0; i < m; i++) f->buf[i] = temperature * gm_rng_normal(&f->rng);
    return gm_flow_decode(f, f->buf, n, x);
}

GMDEF int gm_flow_interpolate(gm_flow *f, const float *a, const float *b, int steps, float *x) {
    float *z;
    int s, j, rc;
    if (!f || !a || !b || !x || steps < 2) return gm_fail("gm_flow_interpolate: bad arguments (steps = %d)", steps);
    z = GM__FLOW_CAST(float *, GENMOD_MALLOC(sizeof(float) * (size_t)(steps + 2) * f->dim));
    if (!z) return gm_fail("gm_flow_interpolate: out of memory");
    memcpy(z, a, sizeof(float) * f->dim);
    memcpy(z + f->dim, b, sizeof(float) * f->dim);
    rc = gm_flow_encode(f, z, 2, z + (size_t)2 * f->dim);   /* za, zb at rows 2 and 3 */
    if (rc == 0) {
        const float *za = z + (size_t)2 * f->dim, *zb = z + (size_t)3 * f->dim;
        for (s = 0; s < steps; s++) {
            float al = (float)s / (float)(steps - 1);
            for (j = 0; j < f->dim; j++) x[(size_t)s * f->dim + j] = (1 - al) * za[j] + al * zb[j];
        }
        rc = gm_flow_decode(f, x, steps, x);
    }
    GENMOD_FREE(z);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Checkpoints                                                                              */
/* ---------------------------------------------------------------------------------------- */
/* "affine/checker0", "actnorm", ...: a layer as the architecture text lists it. */
static void gm__flow_layer_token(const gm_flow_layer *L, char *s, size_t cap) {
    static const char *masks[3] = {"alt", "checker", "channel"};
    if (L->kind == GM_FLOW_ADDITIVE || L->kind == GM_FLOW_AFFINE)
        snprintf(s, cap, " %s/%s%d", gm_flow_kind_name(L->kind), masks[L->mask], L->parity);
    else snprintf(s, cap, " %s", gm_flow_kind_name(L->kind));
}

/* One line that changes whenever the parameter set or the function does: the model, the shape,
   the s/t nets in use, logit and dequantization, then the recipe's counts, then the layers added
   beyond the recipe (a gm_flow_begin stack: all of them). A list longer than the metadata allows
   is replaced by its count and a 64-bit FNV-1a hash. */
static void gm__flow_arch(const gm_flow *f, char *out, size_t cap) {
    static const char *models[3] = {"nice", "realnvp", "glow"};
    const gm_flow_config *c = &f->cfg;
    char list[GM_FLOW_MAX_LAYERS * 24], tok[32];
    size_t len = 0;
    int k, dense = 0, conv = 0, img = !gm__flow_is_vector(f);
    uint64_t h = 14695981039346656037ULL;
    for (k = 0; k < f->nlayers; k++) {
        const gm_flow_layer *L = &f->layers[k];
        dense |= L->nlin > 0;
        conv |= L->nconv > 0;
    }
    len = (size_t)snprintf(out, cap, "%s %dx%dx%d", models[c->model], c->channels, c->height, c->width);
    if (dense && len < cap) len += (size_t)snprintf(out + len, cap - len, " mlp %dx%d", c->hidden, c->depth);
    if (conv && len < cap) len += (size_t)snprintf(out + len, cap - len, " resnet %dx%d", c->filters, c->blocks);
    if (len < cap && c->logit) len += (size_t)snprintf(out + len, cap - len, " logit %g", (double)c->logit_alpha);
    if (len < cap) len += (size_t)snprintf(out + len, cap - len, " dequantize %d", c->dequantize);
    if (len < cap && c->dequantize == GM_FLOW_DEQ_VARIATIONAL)
        len += (size_t)snprintf(out + len, cap - len, " deqnet %dx1", c->deq_filters);
    if (f->recipe_layers > 0 && len < cap && img)
        len += (size_t)snprintf(out + len, cap - len, " %s %d steps %d", c->model == GM_FLOW_GLOW ? "levels" : "scales",
                                c->n_scales, c->steps);
    else if (f->recipe_layers > 0 && len < cap)
        len += (size_t)snprintf(out + len, cap - len, " couplings %d", c->n_couplings);
    if (f->nlayers == f->recipe_layers || len >= cap) return;
    list[0] = 0;
    for (k = f->recipe_layers; k < f->nlayers; k++) {
        const char *p;
        gm__flow_layer_token(&f->layers[k], tok, sizeof tok);
        strcat(list, tok);
        for (p = tok; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    }
    if (len + 8 + strlen(list) < cap) {   /* " layers:" and the list, whole */
        memcpy(out + len, " layers:", 8);
        memcpy(out + len + 8, list, strlen(list) + 1);
    } else snprintf(out + len, cap - len, " layers %d fnv %016llx", f->nlayers - f->recipe_layers, (unsigned long long)h);
}

GMDEF int gm_flow_save(const gm_flow *f, const char *path) {
    char arch[GM_META_VALUE_MAX];
    if (!f || !f->graph || !path) return gm_fail("gm_flow_save: NULL argument or flow not initialized");
    gm__flow_arch(f, arch, sizeof arch);
    return gm_model_save_single(path, "flow", arch, f->step, &f->params, &f->opt, &f->rng, f->graph, NULL);
}

GMDEF int gm_flow_load(gm_flow *f, const char *path) {
    char arch[GM_META_VALUE_MAX];
    if (!f || !f->graph || !path) return gm_fail("gm_flow_load: NULL argument or flow not initialized");
    gm__flow_arch(f, arch, sizeof arch);
    return gm_model_load_single(path, "flow", arch, &f->step, &f->params, &f->opt, &f->rng, f->graph, NULL);
}

/* ======================================================================================= */
/* FFJORD                                                                                  */
/* ======================================================================================= */
GMDEF gm_ffjord_config gm_ffjord_default_config(int dim) {
    gm_ffjord_config c;
    memset(&c, 0, sizeof c);
    c.dim = dim; c.hidden = 64; c.depth = 3; c.act = GM_ACT_TANH; c.t_end = 1.0f;
    c.solver = GM_ODE_RK4; c.rk4_steps = 8;
    c.rtol = 1e-5f; c.atol = 1e-5f; c.train_tol = 1e-3f; c.max_steps = 500;
    c.trace = GM_TRACE_EXACT;
    c.lr = 1e-3f; c.batch = 256; c.seed = 1;
    return c;
}

/* The config's checks; the message names the field. */
static int gm__ffjord_check_config(const gm_ffjord_config *c) {
    if (c->dim <= 0 || c->hidden <= 0 || c->depth < 1 || c->depth > GM_FLOW_MAX_DEPTH)
        return gm_fail("ffjord config: need cfg.dim > 0, cfg.hidden > 0, cfg.depth in 1..%d (have %d, %d, %d)",
                       GM_FLOW_MAX_DEPTH, c->dim, c->hidden, c->depth);
    /* smooth activations only: the trace's gradient goes through f's second derivative */
    if (c->act != GM_ACT_TANH && c->act != GM_ACT_SOFTPLUS)
        return gm_fail("ffjord config: cfg.act must be GM_ACT_TANH or GM_ACT_SOFTPLUS, is %d (%s)", c->act,
                       gm_act_name(c->act));
    if (!(c->t_end > 0)) return gm_fail("ffjord config: cfg.t_end must be > 0, is %g", (double)c->t_end);
    if (c->rk4_steps <= 0 || c->max_steps <= 0)
        return gm_fail("ffjord config: cfg.rk4_steps and cfg.max_steps must be > 0 (have %d, %d)", c->rk4_steps,
                       c->max_steps);
    if (!(c->rtol > 0) || !(c->atol > 0) || !(c->train_tol > 0))
        return gm_fail("ffjord config: cfg.rtol, cfg.atol and cfg.train_tol must be > 0");
    if (c->solver != GM_ODE_RK4 && c->solver != GM_ODE_DOPRI5)
        return gm_fail("ffjord config: unknown cfg.solver %d (GM_ODE_RK4 or GM_ODE_DOPRI5)", c->solver);
    if (c->trace < GM_TRACE_EXACT || c->trace > GM_TRACE_HUTCH_RADEMACHER)
        return gm_fail("ffjord config: unknown cfg.trace %d (GM_TRACE_...)", c->trace);
    if (!(c->lr > 0) || c->batch <= 0)
        return gm_fail("ffjord config: cfg.lr and cfg.batch must be > 0 (have %g, %d)", (double)c->lr, c->batch);
    return 0;
}

GMDEF int gm_ffjord_init(gm_ffjord *m, const gm_ffjord_config *cfg) {
    int i;
    char name[32];
    if (m) memset(m, 0, sizeof *m);
    if (!m || !cfg) return gm_fail("gm_ffjord_init: NULL argument");
    if (gm__ffjord_check_config(cfg) != 0) return -1;
    m->cfg = *cfg;
    gm_rng_seed(&m->rng, cfg->seed);
    m->nlayers = cfg->depth + 1;
    for (i = 0; i < m->nlayers; i++) {   /* every layer sees [h, t]: FFJORD's "concat" layers */
        int in = (i == 0 ? cfg->dim : cfg->hidden) + 1, out = i == m->nlayers - 1 ? cfg->dim : cfg->hidden;
        snprintf(name, sizeof name, "ode%d", i);
        if (gm_linear_init(&m->layers[i], &m->params, name, in, out, GM_INIT_TORCH, &m->rng) != 0) {
            gm_ffjord_free(m);
            return -1;
        }
    }
    m->opt = gm_adam(cfg->lr, 0.9f, 0.999f);
    m->graph = gm_graph_new(cfg->seed + 5);
    if (!m->graph) { gm_ffjord_free(m); return gm_fail("ffjord: out of memory"); }
    return 0;
}

GMDEF void gm_ffjord_free(gm_ffjord *m) {
    if (!m) return;
    gm_graph_free(m->graph);
    gm_optim_free(&m->opt);
    gm_params_free(&m->params);
    GENMOD_FREE(m->buf);
    m->graph = NULL; m->buf = NULL; m->buf_cap = 0;
}

GMDEF gm_tensor *gm_ffjord_dynamics(gm_graph *g, gm_ffjord *m, gm_tensor *z, float t, gm_tensor *probe,
                                    int create_graph, gm_tensor **div) {
    int i, N, D;
    gm_tensor *h = z, *tc, *fz;
    if (!g || !m || !z) return NULL;
    N = z->shape[0]; D = m->cfg.dim;
    tc = gm_full(g, t, N, 1, 0, 0);
    for (i = 0; i < m->nlayers; i++) {
        h = gm_linear_forward(g, &m->layers[i], gm_concat(g, h, tc, 1));
        if (i < m->nlayers - 1) h = gm_activation(g, h, m->cfg.act, 0.0f);
    }
    fz = h;
    m->nfe++;
    if (!div) return fz;
    if (probe) {   /* Hutchinson: e^T (df/dz) e, the vector-Jacobian product e^T df/dz by autodiff */
        gm_tensor *vjp = gm_grad(g, gm_mul(g, fz, probe), z, create_graph);
        *div = gm_sum_rows(g, gm_mul(g, vjp, probe));
    } else {       /* exact: d f_i / d z_i, one reverse pass per dimension */
        gm_tensor *tr = NULL;
        for (i = 0; i < D; i++) {
            gm_tensor *row = gm_grad(g, gm_slice(g, fz, 1, i, 1), z, create_graph);
            gm_tensor *d = gm_reshape(g, gm_slice(g, row, 1, i, 1), N, 0, 0, 0);
            tr = tr ? gm_add(g, tr, d) : d;
        }
        *div = tr;
    }
    return fz;
}

/* Probe noise for a whole solve (FFJORD keeps e fixed over the integration). */
static gm_tensor *gm__ffjord_probe(gm_graph *g, gm_ffjord *m, int N, int trace) {
    gm_tensor *e;
    int i;
    if (trace == GM_TRACE_EXACT) return NULL;
    e = gm_zeros(g, N, m->cfg.dim, 0, 0);
    if (!e) return NULL;
    for (i = 0; i < e->size; i++)
        e->data[i] = trace == GM_TRACE_HUTCH_GAUSS ? gm_rng_normal(&m->rng) : (gm_rng_u32(&m->rng) & 1 ? 1.0f : -1.0f);
    return e;
}

/* Dormand-Prince 5(4) tableau */
static const double gm__dp_c[7] = {0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1, 1};
static const double gm__dp_a[7][6] = {
    {0, 0, 0, 0, 0, 0},
    {1.0 / 5, 0, 0, 0, 0, 0},
    {3.0 / 40, 9.0 / 40, 0, 0, 0, 0},
    {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0, 0},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0, 0},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656, 0},
    {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84}};
static const double gm__dp_e[7] = {71.0 / 57600, 0, -71.0 / 16695, 71.0 / 1920, -17253.0 / 339200, 22.0 / 525, -1.0 / 40};

/* y + h * sum_j a_j k_j on the graph (a_j = 0 terms skipped). */
static gm_tensor *gm__ode_comb(gm_graph *g, gm_tensor *y, gm_tensor **k, const double *a, int n, double h) {
    int j;
    for (j = 0; j < n; j++)
        if (a[j] != 0 && k[j]) y = gm_add(g, y, gm_scale(g, k[j], (float)(h * a[j])));
    return y;
}

/* The augmented state (z, integral of the trace) on the graph; acc is NULL when the trace is not
   wanted. Moving backward in time (t1 < t0) the solver integrates z' = -f(z, t) in s = t0 - t. */
typedef struct gm__ode_state { gm_tensor *z, *acc; } gm__ode_state;

static gm__ode_state gm__ode_rhs(gm_graph *g, gm_ffjord *m, gm_tensor *z, double t, gm_tensor *probe, int cg,
                                 int want_div, double dir) {
    gm__ode_state d;
    gm_tensor *div = NULL;
    d.z = gm_ffjord_dynamics(g, m, z, (float)t, probe, cg, want_div ? &div : NULL);
    if (dir < 0) d.z = gm_neg(g, d.z);
    d.acc = div;
    return d;
}

/* One RK4 step of size h (dir: +1 forward in t, -1 backward: then t decreases). */
static gm__ode_state gm__rk4_step(gm_graph *g, gm_ffjord *m, gm__ode_state y, double t, double h, gm_tensor *probe,
                                  int cg, int want_div, double dir) {
    gm__ode_state k1, k2, k3, k4, out;
    k1 = gm__ode_rhs(g, m, y.z, t, probe, cg, want_div, dir);
    k2 = gm__ode_rhs(g, m, gm_add(g, y.z, gm_scale(g, k1.z, (float)(h / 2))), t + dir * h / 2, probe, cg, want_div, dir);
    k3 = gm__ode_rhs(g, m, gm_add(g, y.z, gm_scale(g, k2.z, (float)(h / 2))), t + dir * h / 2, probe, cg, want_div, dir);
    k4 = gm__ode_rhs(g, m, gm_add(g, y.z, gm_scale(g, k3.z, (float)h)), t + dir * h, probe, cg, want_div, dir);
    out.z = gm_add(g, y.z, gm_scale(g, gm_add(g, gm_add(g, k1.z, k4.z), gm_scale(g, gm_add(g, k2.z, k3.z), 2.0f)),
                                    (float)(h / 6)));
    out.acc = NULL;
    if (want_div)
        out.acc = gm_add(g, y.acc, gm_scale(g, gm_add(g, gm_add(g, k1.acc, k4.acc), gm_scale(g, gm_add(g, k2.acc, k3.acc), 2.0f)),
                                            (float)(h / 6)));
    return out;
}

/* RMS error norm of DOPRI5's embedded estimate over z (FFJORD's tolerances act on the state). */
static double gm__dp_error(const gm_tensor *y0, const gm_tensor *y1, gm_tensor **k, double h, double rtol, double atol) {
    double s = 0;
    int i, j;
    for (i = 0; i < y0->size; i++) {
        double e = 0, sc;
        for (j = 0; j < 7; j++) if (gm__dp_e[j] != 0) e += gm__dp_e[j] * k[j]->data[i];
        e *= h;
        sc = atol + rtol * (fabs(y0->data[i]) > fabs(y1->data[i]) ? fabs(y0->data[i]) : fabs(y1->data[i]));
        s += (e / sc) * (e / sc);
    }
    return sqrt(s / (y0->size > 0 ? y0->size : 1));
}

/* Integrates from t0 to t1 (either direction) on the graph with the config's solver; RK4 takes
   rk4_steps fixed steps. Returns the end state (z NULL on failure). */
static gm__ode_state gm__ode_solve(gm_graph *g, gm_ffjord *m, gm__ode_state y, gm_tensor *probe, int cg, int want_div,
                                   double t0, double t1, int rk4_steps, double rtol, double atol) {
    double span = fabs(t1 - t0), dir = t1 >= t0 ? 1.0 : -1.0, t = t0, done = 0, h;
    int steps = 0, j, q, have_k0 = 0;
    gm__ode_state k0;
    k0.z = k0.acc = NULL;
    m->nfe = 0;
    if (m->cfg.solver == GM_ODE_RK4) {
        h = span / rk4_steps;
        for (steps = 0; steps < rk4_steps && y.z; steps++, t += dir * h)
            y = gm__rk4_step(g, m, y, t, h, probe, cg, want_div, dir);
        m->last_steps = steps;
        return y;
    }
    h = span / 8;
    while (done < span - 1e-9 && y.z) {
        gm__ode_state k[7], y1;
        gm_tensor *kz[7];
        double err;
        if (h > span - done) h = span - done;
        /* first-same-as-last: after an accepted step, k0 is the previous step's k6 */
        k[0] = have_k0 ? k0 : gm__ode_rhs(g, m, y.z, t, probe, cg, want_div, dir);
        for (j = 1; j < 7; j++) {
            for (q = 0; q < j; q++) kz[q] = k[q].z;
            k[j] = gm__ode_rhs(g, m, gm__ode_comb(g, y.z, kz, gm__dp_a[j], j, h), t + dir * gm__dp_c[j] * h, probe, cg,
                               want_div, dir);
            if (!k[j].z) { y.z = NULL; return y; }
        }
        for (q = 0; q < 7; q++) kz[q] = k[q].z;
        y1.z = gm__ode_comb(g, y.z, kz, gm__dp_a[6], 6, h);   /* the 5th-order solution (FSAL row) */
        y1.acc = NULL;
        if (want_div) {
            for (q = 0; q < 7; q++) kz[q] = k[q].acc;
            y1.acc = gm__ode_comb(g, y.acc, kz, gm__dp_a[6], 6, h);
        }
        for (q = 0; q < 7; q++) kz[q] = k[q].z;
        err = y1.z ? gm__dp_error(y.z, y1.z, kz, h, rtol, atol) : 1e9;
        have_k0 = 0;
        if (err <= 1.0 || h < 1e-6) {
            y = y1; done += h; t += dir * h; steps++;
            k0 = k[6]; have_k0 = 1;
        } else {
            k0 = k[0]; have_k0 = 1;     /* rejected: same point, reuse its first stage */
        }
        h *= err > 0 ? fmin(10.0, fmax(0.2, 0.9 * pow(err, -0.2))) : 10.0;
        if (steps + 1 > m->cfg.max_steps) { gm_fail("ffjord: DOPRI5 needed more than %d steps", m->cfg.max_steps); y.z = NULL; break; }
    }
    m->last_steps = steps;
    return y;
}

/* x = z(0) -> z(T), and the trace integral into *logdet when logdet is given. */
static gm_tensor *gm__ffjord_flow(gm_graph *g, gm_ffjord *m, gm_tensor *x, int trace, int cg, double rtol, double atol,
                                  gm_tensor **logdet) {
    gm__ode_state y;
    gm_tensor *probe = logdet ? gm__ffjord_probe(g, m, x->shape[0], trace) : NULL;
    y.z = x;
    y.acc = logdet ? gm_zeros(g, x->shape[0], 0, 0, 0) : NULL;
    y = gm__ode_solve(g, m, y, probe, cg, logdet != NULL, 0.0, m->cfg.t_end, m->cfg.rk4_steps, rtol, atol);
    if (logdet) *logdet = y.z ? y.acc : NULL;
    return y.z;
}

static gm_tensor *gm__ffjord_logp(gm_graph *g, gm_ffjord *m, gm_tensor *x, int trace, int cg, double rtol, double atol) {
    gm_tensor *acc = NULL, *z = gm__ffjord_flow(g, m, x, trace, cg, rtol, atol, &acc), *lpz;
    if (!z || !acc) return NULL;
    lpz = gm_affine(g, gm_sum_rows(g, gm_square(g, z)), -0.5f, -GM__FLOW_LOG2PI_HALF * (float)m->cfg.dim);
    return gm_add(g, lpz, acc);
}

GMDEF gm_tensor *gm_ffjord_forward(gm_graph *g, gm_ffjord *m, gm_tensor *x, gm_tensor **logdet) {
    if (!g || !m || !x) return NULL;
    if (x->ndim != 2 || x->shape[1] != m->cfg.dim) {
        gm_fail("gm_ffjord_forward: want a (N, %d) tensor", m->cfg.dim);
        return NULL;
    }
    if (logdet && !x->requires_grad) {
        gm_fail("gm_ffjord_forward: x must be tracked for the trace (gm_requires_grad on the input)");
        return NULL;
    }
    return gm__ffjord_flow(g, m, x, m->cfg.trace, 1, m->cfg.train_tol, m->cfg.train_tol, logdet);
}

GMDEF int gm_ffjord_train_step(gm_ffjord *m, const float *x, const int *labels, int n, gm_ffjord_stats *stats) {
    gm_graph *g;
    gm_tensor *xin, *lp, *loss;
    char who[64];
    if (!m || !m->graph || !x || n <= 0) return gm_fail("gm_ffjord_train_step: bad arguments (n = %d)", n);
    if (gm__flow_no_labels(labels, "gm_ffjord_train_step") != 0) return -1;
    g = m->graph;
    gm_graph_reset(g);
    gm_graph_set_grad(g, 1);
    xin = gm_requires_grad(gm_input(g, x, n, m->cfg.dim, 0, 0));   /* the trace differentiates f w.r.t. z */
    lp = gm__ffjord_logp(g, m, xin, m->cfg.trace, 1, m->cfg.train_tol, m->cfg.train_tol);
    loss = gm_neg(g, gm_mean(g, lp));
    if (!loss || gm_backward(g, loss) != 0) {
        snprintf(who, sizeof who, "gm_ffjord_train_step: step %ld", m->step);
        return gm_graph_fail(g, who);
    }
    m->nfe_total += m->nfe;
    if (stats) {
        stats->loss = loss->data[0];
        stats->grad_norm = gm_grad_norm(&m->params);
        stats->nfe = m->nfe;
        stats->solver_steps = m->last_steps;
    }
    if (gm_optim_step(&m->opt, &m->params) != 0) return -1;
    m->step++;
    return 0;
}

/* ---- plain arrays, through gm_run_chunks ---- */
typedef struct gm__ffjord_job {
    gm_ffjord *m;
    const float *in;
    float *out;
    int n, trace;          /* all rows (the trajectory's frame stride), log p's trace */
    double dir;            /* map: +1 data -> latent, -1 latent -> data */
    int frames;            /* map: frames of the trajectory (traj NULL: one solve) */
    float *traj;
} gm__ffjord_job;

static int gm__ffjord_logp_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__ffjord_job *j = GM__FLOW_CAST(gm__ffjord_job *, ctx);
    gm_ffjord *m = j->m;
    gm_tensor *x, *lp;
    gm_graph_set_grad(g, 1);   /* the trace needs the tape (gm_run_chunks turned it off and restores it) */
    x = gm_requires_grad(gm_input(g, j->in + (size_t)start * m->cfg.dim, count, m->cfg.dim, 0, 0));
    lp = gm__ffjord_logp(g, m, x, j->trace, 0, m->cfg.rtol, m->cfg.atol);
    if (!lp) return -1;
    memcpy(j->out + start, lp->data, sizeof(float) * (size_t)count);
    return 0;
}

/* z(0) -> z(T) (dir +1) or back (dir -1) without gradients; with a trajectory, one solve per
   frame interval, each over its own stretch of time. */
static int gm__ffjord_map_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__ffjord_job *j = GM__FLOW_CAST(gm__ffjord_job *, ctx);
    gm_ffjord *m = j->m;
    int D = m->cfg.dim, fr, nf = j->traj ? j->frames - 1 : 1;
    double T = m->cfg.t_end;
    size_t bytes = sizeof(float) * (size_t)count * D;
    gm__ode_state y;
    y.z = gm_input(g, j->in + (size_t)start * D, count, D, 0, 0);
    y.acc = NULL;
    if (y.z && j->traj) memcpy(j->traj + (size_t)start * D, y.z->data, bytes);
    for (fr = 0; fr < nf && y.z; fr++) {
        double t0 = j->dir > 0 ? T * fr / nf : T * (nf - fr) / nf;          /* this frame interval's ends */
        double t1 = j->dir > 0 ? T * (fr + 1) / nf : T * (nf - fr - 1) / nf;
        int rk4 = (m->cfg.rk4_steps + nf - 1) / nf;   /* at least the config's steps in all */
        y = gm__ode_solve(g, m, y, NULL, 0, 0, t0, t1, rk4, m->cfg.rtol, m->cfg.atol);
        if (y.z && j->traj) memcpy(j->traj + ((size_t)(fr + 1) * j->n + start) * D, y.z->data, bytes);
    }
    if (!y.z) return -1;
    memcpy(j->out + (size_t)start * D, y.z->data, bytes);
    return 0;
}

static int gm__ffjord_run(gm_ffjord *m, const float *in, int n, float *out, gm__ffjord_job *j, gm_chunk_fn fn,
                          const char *who) {
    if (!m || !m->graph || !in || !out || n <= 0) return gm_fail("%s: bad arguments (n = %d)", who, n);
    j->m = m; j->in = in; j->out = out; j->n = n;
    return gm_run_chunks(m->graph, n, fn, j, who);
}

GMDEF int gm_ffjord_log_prob_batch(gm_ffjord *m, const float *x, int n, int trace, float *logp) {
    gm__ffjord_job j;
    memset(&j, 0, sizeof j);
    if (trace < GM_TRACE_EXACT || trace > GM_TRACE_HUTCH_RADEMACHER)
        return gm_fail("gm_ffjord_log_prob_batch: unknown trace %d", trace);
    j.trace = trace;
    return gm__ffjord_run(m, x, n, logp, &j, gm__ffjord_logp_chunk, "gm_ffjord_log_prob_batch");
}

GMDEF int gm_ffjord_nll(gm_ffjord *m, const float *x, int n, double *nll) {
    float *lp;
    double s = 0;
    int i;
    if (!m || !x || n <= 0) return gm_fail("gm_ffjord_nll: bad arguments");
    lp = GM__FLOW_CAST(float *, GENMOD_MALLOC(sizeof(float) * (size_t)n));
    if (!lp) return gm_fail("gm_ffjord_nll: out of memory");
    if (gm_ffjord_log_prob_batch(m, x, n, GM_TRACE_EXACT, lp) != 0) { GENMOD_FREE(lp); return -1; }
    for (i = 0; i < n; i++) s -= lp[i];
    GENMOD_FREE(lp);
    if (nll) *nll = s / n;
    return isfinite(s) ? 0 : gm_fail("gm_ffjord_nll: not finite");
}

GMDEF int gm_ffjord_encode(gm_ffjord *m, const float *x, int n, float *z) {
    gm__ffjord_job j;
    memset(&j, 0, sizeof j);
    j.dir = 1.0;
    return gm__ffjord_run(m, x, n, z, &j, gm__ffjord_map_chunk, "gm_ffjord_encode");
}

GMDEF int gm_ffjord_decode(gm_ffjord *m, const float *z, int n, float *x) {
    return gm_ffjord_decode_trajectory(m, z, n, x, 0, NULL);
}

/* frames < 2 or traj NULL: a plain decode. */
GMDEF int gm_ffjord_decode_trajectory(gm_ffjord *m, const float *z, int n, float *x, int frames, float *traj) {
    gm__ffjord_job j;
    memset(&j, 0, sizeof j);
    j.dir = -1.0;
    j.frames = frames;
    j.traj = frames > 1 ? traj : NULL;
    return gm__ffjord_run(m, z, n, x, &j, gm__ffjord_map_chunk, traj ? "gm_ffjord_decode_trajectory" : "gm_ffjord_decode");
}

GMDEF int gm_ffjord_sample(gm_ffjord *m, const int *labels, int n, float *x) {
    return gm_ffjord_sample_trajectory(m, labels, n, x, 0, NULL);
}

GMDEF int gm_ffjord_sample_trajectory(gm_ffjord *m, const int *labels, int n, float *x, int frames, float *traj) {
    size_t i, count;
    if (!m || !m->graph || !x || n <= 0) return gm_fail("gm_ffjord_sample: bad arguments (n = %d)", n);
    if (gm__flow_no_labels(labels, "gm_ffjord_sample") != 0) return -1;
    count = (size_t)n * m->cfg.dim;
    if (gm_floats_reserve(&m->buf, &m->buf_cap, count) != 0) return -1;
    for (i = 0; i < count; i++) m->buf[i] = gm_rng_normal(&m->rng);
    return gm_ffjord_decode_trajectory(m, m->buf, n, x, frames, traj);
}

/* Everything that changes the parameter set or the function f: the solver and its tolerances
   only approximate the same ODE, so a model trained with one may be evaluated with another. */
static void gm__ffjord_arch(const gm_ffjord *m, char *out, size_t cap) {
    snprintf(out, cap, "dim %d hidden %d depth %d act %s t_end %g", m->cfg.dim, m->cfg.hidden, m->cfg.depth,
             gm_act_name(m->cfg.act), (double)m->cfg.t_end);
}

GMDEF int gm_ffjord_save(const gm_ffjord *m, const char *path) {
    char arch[GM_META_VALUE_MAX];
    if (!m || !m->graph || !path) return gm_fail("gm_ffjord_save: NULL argument or model not initialized");
    gm__ffjord_arch(m, arch, sizeof arch);
    return gm_model_save_single(path, "ffjord", arch, m->step, &m->params, &m->opt, &m->rng, m->graph, NULL);
}

GMDEF int gm_ffjord_load(gm_ffjord *m, const char *path) {
    char arch[GM_META_VALUE_MAX];
    if (!m || !m->graph || !path) return gm_fail("gm_ffjord_load: NULL argument or model not initialized");
    gm__ffjord_arch(m, arch, sizeof arch);
    return gm_model_load_single(path, "ffjord", arch, &m->step, &m->params, &m->opt, &m->rng, m->graph, NULL);
}

#endif /* GENMOD_FLOW_IMPLEMENTATION_INCLUDED */
#endif /* GENMOD_FLOW_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
MIT License

Copyright (c) 2025 the genmod authors

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
------------------------------------------------------------------------------
*/
