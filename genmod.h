/* genmod.h - v0.1 - train deep generative models on a CPU. Single-header C library, no
   dependencies beyond libc, libm and (unless GENMOD_NO_THREADS) POSIX threads.

   USAGE
     In exactly one C or C++ file:
         #define GENMOD_IMPLEMENTATION
         #include "genmod.h"
     Everywhere else just #include "genmod.h". Build: cc -O2 prog.c -lm -lpthread
     A family header (genmod_vae.h, genmod_gan.h, genmod_flow.h) is used the same way. Its
     implementation uses only the public API, so it may sit in the same file as the core's:
         #define GENMOD_IMPLEMENTATION
         #define GENMOD_GAN_IMPLEMENTATION
         #include "genmod_gan.h"
     or in a file of its own (define only GENMOD_GAN_IMPLEMENTATION there), linked with the core's.

   THE SHORTEST PROGRAM (fits y = 2x - 1 with one linear layer)

         gm_params P = {0};  gm_rng rng;  gm_linear lin;  int step;
         gm_rng_seed(&rng, 1);
         gm_linear_init(&lin, &P, "lin", 1, 1, GM_INIT_TORCH, &rng);
         gm_optim opt = gm_adam(1e-1f, 0.9f, 0.999f);
         gm_graph *g = gm_graph_new(42);
         for (step = 0; step < 200; step++) {
             float xs[4] = {0, 1, 2, 3}, ys[4] = {-1, 1, 3, 5};
             gm_graph_reset(g);                                  // frees last step's tensors
             gm_tensor *x = gm_input(g, xs, 4, 1, 0, 0);         // (4,1)
             gm_tensor *y = gm_input(g, ys, 4, 1, 0, 0);
             gm_tensor *loss = gm_mse(g, gm_linear_forward(g, &lin, x), y);
             if (gm_backward(g, loss) != 0) { puts(gm_last_error()); break; }
             gm_optim_step(&opt, &P);                            // updates P, zeroes its grads
         }
         gm_graph_free(g); gm_optim_free(&opt); gm_params_free(&P);

   CONCEPTS
     gm_params  every trainable tensor of a model in one contiguous buffer, with gradients (and the
                optimizer's moments) mirroring it; a named view per tensor.
     gm_graph   an arena plus the tape of one training step. Ops run eagerly (the value exists as
                soon as the op returns) and append themselves to the tape. gm_graph_reset() drops
                everything at once: no malloc per op in the steady state.
     gm_tensor  float32, up to 4-D (N, C, H, W), row-major. `data` and `shape` are yours to read.
     Ops        gm_add, gm_matmul, gm_conv2d, ... return a new tensor, or NULL after an error (the
                message is in gm_last_error()). NULL inputs give NULL outputs, so a whole step can be
                written without checks and the loss tested once.
     Gradients  gm_backward(g, loss) adds d loss / d param to every parameter's gradient.
                gm_grad(g, y, x, 1) returns d y / d x as a tensor of the graph, so it can be used in
                a loss and differentiated again (WGAN-GP's gradient penalty, FFJORD's trace): every
                op's backward rule is written with the differentiable ops themselves.
     Shapes     functions that take a shape take four ints d0..d3; trailing zeros end the shape:
                gm_zeros(g, 64, 784, 0, 0) is a (64,784) matrix.

   OPTIONS (define before including the implementation)
     GENMOD_MALLOC(sz) / GENMOD_REALLOC(p,sz) / GENMOD_FREE(p)   allocator, all three or none
     GENMOD_ASSERT(x)      assertion for library-internal invariants (default: assert)
     GENMOD_NO_SIMD        scalar kernels only
     GENMOD_NO_THREADS     no thread pool (and no -lpthread needed)
     GENMOD_STATIC         make every function static to the including file

   LICENSE: MIT, at the end of the file.
*/

/* CONTENTS
   The declarations below and the implementation (after #ifdef GENMOD_IMPLEMENTATION) follow the
   same sections in the same order; search for a section's title to find either half.
      Errors                                   gm_last_error, gm_fail
      Kernels: SIMD paths, threads, GEMM       gm_simd_*, gm_set_threads, gm_parallel_for, gm_sgemm
      Random numbers                           gm_rng
      Parameters and initializers              gm_params, gm_init_*
      Graphs and tensors                       gm_graph, gm_tensor, leaves, gm_run_chunks
      Elementwise ops and activations          gm_add .. gm_clamp, gm_relu .. gm_log_sigmoid, gm_gate, gm_dropout
      Reductions and softmax                   gm_sum .. gm_expand, gm_softmax, gm_log_softmax
      Shape ops                                gm_reshape .. gm_one_hot
      Matrix multiply, convolutions, pooling   gm_matmul, gm_bmm, gm_conv2d(_ex), gm_conv_transpose2d, gm_avg_pool
      Losses and log-densities                 gm_mse, gm_bce_logits, gm_gaussian_loglik, ...
      Automatic differentiation                gm_backward, gm_grad, gm_gradcheck
      Layers                                   gm_linear, gm_conv, gm_batchnorm, gm_layernorm, gm_groupnorm, gm_group_norm(_act), gm_activation
      Optimizers                               gm_optim, gm_sgd, gm_rmsprop, gm_adam, gm_adamw
      Data                                     gm_dataset (IDX, MNIST), gm_toy2d, gm_batcher
      Checkpoints                              gm_checkpoint_save / _load, gm_meta, gm_model_save / _load
   The implementation starts with one block of includes and configuration (allocator, portability,
   SIMD and thread detection) that every section uses. */

#ifndef GENMOD_H
#define GENMOD_H

#include <stddef.h>
#include <stdint.h>

#ifndef GMDEF
#ifdef GENMOD_STATIC
#define GMDEF static
#else
#define GMDEF extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================= */
/* Errors                                                                                  */
/* ======================================================================================= */
/* Functions that can fail on user input return 0 on success and -1 on failure, and set a message
 * (per thread) readable with gm_last_error(). Code that builds on genmod (a family header, your
 * own model) fails the same way:
 *     return gm_fail("idx: %s: truncated: header says %d images, file holds %zu bytes", path, n, size);
 * (printf-style; it stores the message and returns -1). */
GMDEF const char *gm_last_error(void);
GMDEF int gm_fail(const char *fmt, ...);

/* ======================================================================================= */
/* Kernels: SIMD paths, threads, GEMM                                                      */
/* ======================================================================================= */
/* SIMD code paths. GM_PATH_SCALAR is always available; the others depend on the CPU and build. */
enum { GM_PATH_SCALAR = 0, GM_PATH_SSE2, GM_PATH_AVX2, GM_PATH_AVX512, GM_PATH_NEON, GM_PATH_COUNT };

GMDEF int  gm_simd_path(void);              /* the path in use (best supported by default) */
GMDEF int  gm_simd_force(int path);         /* use this path from now on; 0, or -1 if unsupported (nothing changes) */
GMDEF int  gm_simd_supported(int path);     /* 1 if this CPU + build can run it */
GMDEF const char *gm_simd_name(int path);   /* "scalar", "sse2", "avx2", "avx512", "neon" ("?" if out of range) */

GMDEF void gm_set_threads(int n);           /* kernel threads; n <= 0 means all cores; default all cores */
GMDEF int  gm_get_threads(void);
GMDEF void gm_flush_denormals(void);        /* FTZ+DAZ in the calling thread; pool threads do it themselves */
/* Runs fn(ctx, t) for every t in [0, ntasks) on the thread pool (the caller takes part) and returns
   when all are done; the order is unspecified, so tasks must write disjoint results. Nested calls
   run serially. For a family's own parallel loops (e.g. one task per sequence). */
GMDEF void gm_parallel_for(int ntasks, void (*fn)(void *ctx, int task), void *ctx);

/* C = alpha * op(A) * op(B) + beta * C, all row-major.
 * op(A) is (M,K): A is (M,K) with row stride lda, or (K,M) if ta.
 * op(B) is (K,N): B is (K,N) with row stride ldb, or (N,K) if tb.
 * C is (M,N) with row stride ldc. beta == 0 means C is not read (it may hold NaN).
 * The result is bit-identical for any thread count (work is split over output tiles only). */
GMDEF void gm_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);

/* ======================================================================================= */
/* Random numbers                                                                          */
/* ======================================================================================= */
/* xoshiro128** streams, uniform and Gaussian. */
typedef struct gm_rng {
    uint32_t s[4];
    int has_spare;          /* Box-Muller makes two normals; the second waits here */
    float spare;
} gm_rng;

GMDEF void     gm_rng_seed(gm_rng *r, uint64_t seed);
GMDEF gm_rng   gm_rng_split(gm_rng *r);        /* an independent stream (for another thread) */
GMDEF uint32_t gm_rng_u32(gm_rng *r);
GMDEF float    gm_rng_uniform(gm_rng *r);      /* [0, 1) */
GMDEF float    gm_rng_normal(gm_rng *r);       /* N(0, 1) */
GMDEF int      gm_rng_int(gm_rng *r, int n);   /* [0, n) without modulo bias */

/* ======================================================================================= */
/* Parameters and initializers                                                             */
/* ======================================================================================= */
/* Every trainable tensor of a model lives in one contiguous buffer `data`, with `grad` mirroring it.
 * A named view per tensor (name, shape, offset into the buffer). Views are added before training;
 * adding may realloc the buffers, so address a tensor by its view index, never a saved pointer. */
#define GM_MAX_DIMS 4
#define GM_NAME_MAX 64
typedef struct gm_param_view {
    char name[GM_NAME_MAX]; /* e.g. "enc1.weight"; unique within a gm_params */
    int ndim;
    int shape[GM_MAX_DIMS];
    size_t offset;          /* first float of this tensor in data/grad */
    size_t size;            /* number of floats */
    int buffer;             /* 1: state saved with the model but never trained (batch-norm statistics) */
} gm_param_view;

typedef struct gm_params {
    float *data;            /* all values, contiguous */
    float *grad;            /* gradients, same layout */
    size_t count;           /* floats in use */
    size_t capacity;        /* floats allocated */
    gm_param_view *views;
    int nviews, views_capacity;
    int frozen;             /* 1: no gradients are taken for these parameters (the default 0 trains them) */
} gm_params;

GMDEF int    gm_params_add(gm_params *p, const char *name, int ndim, const int *shape); /* view index, or -1 */
GMDEF int    gm_params_find(const gm_params *p, const char *name);                      /* view index, or -1 */
GMDEF float *gm_params_data(gm_params *p, int view);
GMDEF float *gm_params_grad(gm_params *p, int view);
GMDEF void   gm_params_zero_grad(gm_params *p);
GMDEF void   gm_params_mark_buffer(gm_params *p, int view);  /* saved with the model, never trained */
GMDEF size_t gm_params_count(const gm_params *p);          /* trainable floats */
GMDEF void   gm_params_free(gm_params *p);

enum {
    GM_INIT_TORCH = 0,      /* PyTorch's default for Linear/Conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    GM_INIT_GLOROT_UNIFORM, /* U(-a, a), a = sqrt(6 / (fan_in + fan_out)); biases zero */
    GM_INIT_GLOROT_NORMAL,  /* N(0, 2 / (fan_in + fan_out)); biases zero */
    GM_INIT_HE_NORMAL,      /* N(0, 2 / fan_in); biases zero */
    GM_INIT_HE_UNIFORM,     /* U(-a, a), a = sqrt(6 / fan_in); biases zero */
    GM_INIT_ZERO
};
GMDEF void gm_init_uniform(gm_rng *r, float *w, size_t n, float lo, float hi);
GMDEF void gm_init_normal(gm_rng *r, float *w, size_t n, float mean, float std);
GMDEF void gm_init_weights(gm_rng *r, float *w, size_t n, int init, int fan_in, int fan_out);

/* ======================================================================================= */
/* Graphs and tensors                                                                      */
/* ======================================================================================= */
typedef struct gm_graph gm_graph;
typedef struct gm_tensor gm_tensor;
/* Private to the autodiff: what an op keeps for its backward rule, one member per kind of op. */
typedef struct gm__conv_geom { int n, cin, h, w, cout, kh, kw, stride, pt, pl, ho, wo; } gm__conv_geom; /* pt, pl: top, left padding */
typedef union gm__op_state {
    float scalar[2];                    /* elementwise maps: affine's a, b; pow's p; clamp's lo, hi; slopes */
    struct { int ta, tb; } matmul;      /* which operands were transposed */
    gm__conv_geom conv;                 /* CONV, CONVT, WGRAD */
    struct { int axis, start; } slice;  /* SLICE, PAD; CONCAT's axis */
    int perm[GM_MAX_DIMS];              /* PERMUTE: output dim k is input dim perm[k] */
    int factor;                         /* UPSAMPLE, AVGPOOL */
    const int *labels;                  /* GATHER, SCATTER: the graph's copy of the labels */
    struct { int groups, which, act; float eps; float *stats; } norm; /* GROUPNORM and its gradient
                                           ops: stats = (mean, 1/std) per (example, group) of the input;
                                           act 1: silu applied in the same op */
} gm__op_state;
struct gm_tensor {
    int ndim;
    int shape[GM_MAX_DIMS];
    int size;               /* product of the shape */
    float *data;
    gm_tensor *grad;        /* filled by gm_backward / gm_grad for tensors on the tape */
    /* private to the autodiff */
    int op, id, requires_grad;
    int mark;               /* number of the backward pass whose path the tensor lies on */
    gm_tensor *src[3];
    gm__op_state state;
    float *param_grad;      /* parameter leaves: where their gradient is added */
};

GMDEF gm_graph *gm_graph_new(uint64_t seed);     /* NULL if out of memory; sets FTZ/DAZ in this thread */
GMDEF void      gm_graph_free(gm_graph *g);
GMDEF void      gm_graph_reset(gm_graph *g);     /* drop every tensor of the last step */
GMDEF void      gm_graph_set_training(gm_graph *g, int training); /* dropout, batch norm (default 1) */
GMDEF int       gm_graph_training(const gm_graph *g);
GMDEF int       gm_graph_set_grad(gm_graph *g, int enabled);  /* 0: record nothing (sampling); returns the old value */
GMDEF int       gm_graph_grad(const gm_graph *g);             /* 1 if ops are being recorded */
GMDEF gm_rng   *gm_graph_rng(gm_graph *g);
GMDEF size_t    gm_graph_memory(const gm_graph *g);    /* bytes the graph holds now (arena + tape) */
GMDEF size_t    gm_graph_peak(const gm_graph *g);      /* most arena bytes one step has used */
GMDEF double    gm_graph_flops(const gm_graph *g);     /* matmul/conv FLOPs run so far, forward and backward */
GMDEF const char *gm_graph_error(const gm_graph *g);   /* first error since the last reset, or NULL */
/* After an op returned NULL: fails (returns -1) with "who: " and the graph's first error, or
   gm_last_error() when the graph has none. The one way a model's call reports a failed graph. */
GMDEF int       gm_graph_fail(const gm_graph *g, const char *who);

/* Inference over n items in chunks of at most GM_CHUNK: for each chunk the graph is reset, put
   in eval mode (no dropout, batch-norm running statistics) with no tape, and fn(g, start, count,
   ctx) runs; fn returns 0, or -1 when an op failed. Modes are restored afterwards. Returns 0, or
   -1 with "who: " and the graph's error. Every family's plain-array inference calls go through it. */
#define GM_CHUNK 500
typedef int (*gm_chunk_fn)(gm_graph *g, int start, int count, void *ctx);
GMDEF int gm_run_chunks(gm_graph *g, int n, gm_chunk_fn fn, void *ctx, const char *who);

/* Makes *buf hold at least n floats (realloc; contents kept). 0, or -1 out of memory. */
GMDEF int gm_floats_reserve(float **buf, size_t *cap, size_t n);

/* Leaves. Shapes are d0..d3, trailing zeros end the shape. */
GMDEF gm_tensor *gm_input(gm_graph *g, const float *data, int d0, int d1, int d2, int d3);  /* a copy */
GMDEF gm_tensor *gm_zeros(gm_graph *g, int d0, int d1, int d2, int d3);
GMDEF gm_tensor *gm_full(gm_graph *g, float value, int d0, int d1, int d2, int d3);
GMDEF gm_tensor *gm_randn(gm_graph *g, int d0, int d1, int d2, int d3);   /* N(0,1) from the graph's rng */
GMDEF gm_tensor *gm_rand(gm_graph *g, int d0, int d1, int d2, int d3);    /* U[0,1) */
GMDEF gm_tensor *gm_randn_like(gm_graph *g, const gm_tensor *t);
GMDEF gm_tensor *gm_param(gm_graph *g, gm_params *p, int view);  /* the parameter itself (no copy) */
GMDEF gm_tensor *gm_requires_grad(gm_tensor *leaf);   /* mark a leaf for gm_grad(); before using it */
GMDEF gm_tensor *gm_detach(gm_graph *g, gm_tensor *t);  /* same values, no gradient flows back */

/* ======================================================================================= */
/* Elementwise ops and activations                                                         */
/* ======================================================================================= */
/* With NumPy broadcasting (shapes aligned at the right, size-1 dims stretch) */
GMDEF gm_tensor *gm_add(gm_graph *g, gm_tensor *a, gm_tensor *b);
GMDEF gm_tensor *gm_sub(gm_graph *g, gm_tensor *a, gm_tensor *b);
GMDEF gm_tensor *gm_mul(gm_graph *g, gm_tensor *a, gm_tensor *b);
GMDEF gm_tensor *gm_div(gm_graph *g, gm_tensor *a, gm_tensor *b);
GMDEF gm_tensor *gm_affine(gm_graph *g, gm_tensor *x, float a, float b); /* a*x + b */
GMDEF gm_tensor *gm_scale(gm_graph *g, gm_tensor *x, float a);
GMDEF gm_tensor *gm_neg(gm_graph *g, gm_tensor *x);
GMDEF gm_tensor *gm_exp(gm_graph *g, gm_tensor *x);
GMDEF gm_tensor *gm_log(gm_graph *g, gm_tensor *x);
GMDEF gm_tensor *gm_sqrt(gm_graph *g, gm_tensor *x);
GMDEF gm_tensor *gm_square(gm_graph *g, gm_tensor *x);
GMDEF gm_tensor *gm_abs(gm_graph *g, gm_tensor *x);
GMDEF gm_tensor *gm_pow(gm_graph *g, gm_tensor *x, float p);  /* x^p, x > 0 unless p is an integer */
GMDEF gm_tensor *gm_clamp(gm_graph *g, gm_tensor *x, float lo, float hi);
/* Activations */
GMDEF gm_tensor *gm_relu(gm_graph *g, gm_tensor *x);
GMDEF gm_tensor *gm_leaky_relu(gm_graph *g, gm_tensor *x, float slope);
GMDEF gm_tensor *gm_elu(gm_graph *g, gm_tensor *x, float alpha);
GMDEF gm_tensor *gm_tanh(gm_graph *g, gm_tensor *x);
GMDEF gm_tensor *gm_sigmoid(gm_graph *g, gm_tensor *x);
GMDEF gm_tensor *gm_softplus(gm_graph *g, gm_tensor *x);
GMDEF gm_tensor *gm_silu(gm_graph *g, gm_tensor *x);      /* x sigmoid(x) (swish) */
GMDEF gm_tensor *gm_log_sigmoid(gm_graph *g, gm_tensor *x);
/* Gated unit (Gated PixelCNN, WaveNet): x (N,2C,...) -> (N,C,...) tanh(x[:, :C]) * sigmoid(x[:, C:]),
   one pass forward and one backward, differentiable to any order. */
GMDEF gm_tensor *gm_gate(gm_graph *g, gm_tensor *x);
/* Built from the ops above */
GMDEF gm_tensor *gm_bias_add(gm_graph *g, gm_tensor *x, gm_tensor *b);  /* b (C) along dim 1 of x */
GMDEF gm_tensor *gm_dropout(gm_graph *g, gm_tensor *x, float p); /* identity when not training */

/* ======================================================================================= */
/* Reductions and softmax                                                                  */
/* ======================================================================================= */
/* Axis masks: GM_AXIS(0) | GM_AXIS(2) ...; reduced axes keep size 1. */
#define GM_AXIS(k) (1 << (k))
GMDEF gm_tensor *gm_sum(gm_graph *g, gm_tensor *x);                 /* all elements -> (1) */
GMDEF gm_tensor *gm_mean(gm_graph *g, gm_tensor *x);                /* all elements -> (1) */
GMDEF gm_tensor *gm_sum_axes(gm_graph *g, gm_tensor *x, int axes);
GMDEF gm_tensor *gm_mean_axes(gm_graph *g, gm_tensor *x, int axes);
GMDEF gm_tensor *gm_sum_rows(gm_graph *g, gm_tensor *x);   /* sum over all axes but 0 -> (N) */
GMDEF gm_tensor *gm_expand(gm_graph *g, gm_tensor *x, int d0, int d1, int d2, int d3); /* broadcast to */
GMDEF gm_tensor *gm_softmax(gm_graph *g, gm_tensor *x);      /* over the last axis */
GMDEF gm_tensor *gm_log_softmax(gm_graph *g, gm_tensor *x);  /* over the last axis */

/* ======================================================================================= */
/* Shape ops                                                                               */
/* ======================================================================================= */
GMDEF gm_tensor *gm_reshape(gm_graph *g, gm_tensor *x, int d0, int d1, int d2, int d3); /* one -1 allowed */
GMDEF gm_tensor *gm_flatten(gm_graph *g, gm_tensor *x);    /* (N, everything else) */
GMDEF gm_tensor *gm_permute(gm_graph *g, gm_tensor *x, int p0, int p1, int p2, int p3); /* out dim k = in dim pk */
GMDEF gm_tensor *gm_transpose(gm_graph *g, gm_tensor *x);  /* 2-D */
GMDEF gm_tensor *gm_concat(gm_graph *g, gm_tensor *a, gm_tensor *b, int axis);
GMDEF gm_tensor *gm_slice(gm_graph *g, gm_tensor *x, int axis, int start, int len);
GMDEF gm_tensor *gm_gather(gm_graph *g, gm_tensor *x, const int *labels); /* x (N,C) -> (N): x[i, labels[i]] */
GMDEF gm_tensor *gm_one_hot(gm_graph *g, const int *labels, int n, int classes);  /* (n, classes) constant */

/* ======================================================================================= */
/* Matrix multiply, convolutions, pooling                                                  */
/* ======================================================================================= */
GMDEF gm_tensor *gm_matmul(gm_graph *g, gm_tensor *a, gm_tensor *b, int ta, int tb); /* op(a) op(b), 2-D */
GMDEF gm_tensor *gm_bmm(gm_graph *g, gm_tensor *a, gm_tensor *b, int ta, int tb);
    /* batched: a (B,M,K) or (B,K,M) if ta, b (B,K,N) or (B,N,K) if tb -> (B,M,N), one GEMM per batch entry */
GMDEF gm_tensor *gm_conv2d(gm_graph *g, gm_tensor *x, gm_tensor *w, int stride, int pad);
    /* x (N,Cin,H,W), w (Cout,Cin,k,k) -> (N,Cout,(H+2pad-k)/stride+1, ...) */
GMDEF gm_tensor *gm_conv2d_ex(gm_graph *g, gm_tensor *x, gm_tensor *w, int stride, int pad_t, int pad_b, int pad_l, int pad_r);
    /* w (Cout,Cin,kh,kw), zero padding top/bottom/left/right -> (N,Cout,(H+pad_t+pad_b-kh)/stride+1,
       (W+pad_l+pad_r-kw)/stride+1); gm_conv2d is its square, symmetric case. Causal stacks: a 2x3
       kernel with padding (1,0,1,1) sees only its own row and the row above (PixelCNN's vertical stack) */
GMDEF gm_tensor *gm_conv_transpose2d(gm_graph *g, gm_tensor *x, gm_tensor *w, int stride, int pad, int out_pad);
    /* x (N,Cin,H,W), w (Cin,Cout,k,k) -> (N,Cout,(H-1)*stride-2pad+k+out_pad, ...); PyTorch's layout */
GMDEF gm_tensor *gm_upsample_nearest(gm_graph *g, gm_tensor *x, int factor);  /* (N,C,H,W) -> (N,C,fH,fW) */
GMDEF gm_tensor *gm_avg_pool(gm_graph *g, gm_tensor *x, int k);  /* k x k windows, stride k */

/* ======================================================================================= */
/* Losses and log-densities                                                                */
/* ======================================================================================= */
/* Scalars (mean over all elements, or over the batch for the cross-entropy) */
GMDEF gm_tensor *gm_mse(gm_graph *g, gm_tensor *pred, gm_tensor *target);
GMDEF gm_tensor *gm_l1(gm_graph *g, gm_tensor *pred, gm_tensor *target);   /* mean |pred - target| */
GMDEF gm_tensor *gm_bce_logits(gm_graph *g, gm_tensor *logits, gm_tensor *target);
GMDEF gm_tensor *gm_softmax_xent(gm_graph *g, gm_tensor *logits, const int *labels);
/* Per-example log-densities (N): summed over every axis but the first */
GMDEF gm_tensor *gm_gaussian_loglik(gm_graph *g, gm_tensor *x, gm_tensor *mu, gm_tensor *logvar);
GMDEF gm_tensor *gm_bernoulli_loglik(gm_graph *g, gm_tensor *logits, gm_tensor *x);
GMDEF gm_tensor *gm_kl_std_normal(gm_graph *g, gm_tensor *mu, gm_tensor *logvar);  /* KL(N(mu,e^lv) || N(0,I)) */

/* ======================================================================================= */
/* Automatic differentiation                                                               */
/* ======================================================================================= */
GMDEF int        gm_backward(gm_graph *g, gm_tensor *loss);  /* loss: one finite value; 0 or -1 */
GMDEF gm_tensor *gm_grad(gm_graph *g, gm_tensor *y, gm_tensor *x, int create_graph); /* d sum(y) / d x */

/* Gradient checking: compare gm_backward with central finite differences. fn builds a scalar from
   the inputs (each a leaf with requires_grad). Returns the largest |analytic - numeric| divided by
   max(1e-3, largest |numeric|) over all inputs and elements, or -1 after an error. */
typedef gm_tensor *(*gm_fn)(gm_graph *g, gm_tensor **inputs, void *ctx);
GMDEF double gm_gradcheck(gm_fn fn, void *ctx, int ninputs, float **values, const int (*shapes)[4], float h);

/* ======================================================================================= */
/* Layers                                                                                  */
/* ======================================================================================= */
/* Small structs of parameter views with a forward function. */
typedef struct gm_linear { gm_params *p; int w, b; int in, out; } gm_linear;   /* y = x W^T + b */
typedef struct gm_conv { gm_params *p; int w, b; int cin, cout, k, stride, pad, out_pad, transposed; } gm_conv;
typedef struct gm_batchnorm {
    gm_params *p; int gamma, beta, mean, var;  /* mean, var: running statistics (buffers) */
    int c; float momentum, eps;
} gm_batchnorm;
typedef struct gm_layernorm { gm_params *p; int gamma, beta; int n; float eps; } gm_layernorm;
/* Group norm: the channels in `groups` groups, each normalized over its channels and all pixels of
   one example, then a per-channel scale and shift (PyTorch's GroupNorm, eps 1e-5). */
typedef struct gm_groupnorm { gm_params *p; int gamma, beta; int channels, groups; float eps; } gm_groupnorm;

GMDEF int gm_linear_init(gm_linear *l, gm_params *p, const char *name, int in, int out, int init, gm_rng *r);
GMDEF gm_tensor *gm_linear_forward(gm_graph *g, const gm_linear *l, gm_tensor *x);  /* x (N,in) -> (N,out) */
GMDEF int gm_conv_init(gm_conv *c, gm_params *p, const char *name, int cin, int cout, int k, int stride,
                       int pad, int init, gm_rng *r);
GMDEF int gm_conv_transpose_init(gm_conv *c, gm_params *p, const char *name, int cin, int cout, int k,
                                 int stride, int pad, int out_pad, int init, gm_rng *r);
GMDEF gm_tensor *gm_conv_forward(gm_graph *g, const gm_conv *c, gm_tensor *x);
GMDEF int gm_batchnorm_init(gm_batchnorm *bn, gm_params *p, const char *name, int channels);
GMDEF gm_tensor *gm_batchnorm_forward(gm_graph *g, const gm_batchnorm *bn, gm_tensor *x); /* (N,C) or (N,C,H,W) */
GMDEF int gm_layernorm_init(gm_layernorm *ln, gm_params *p, const char *name, int features);
GMDEF gm_tensor *gm_layernorm_forward(gm_graph *g, const gm_layernorm *ln, gm_tensor *x); /* over all but dim 0 */
GMDEF int gm_groupnorm_init(gm_groupnorm *gn, gm_params *p, const char *name, int channels, int groups);
GMDEF gm_tensor *gm_groupnorm_forward(gm_graph *g, const gm_groupnorm *gn, gm_tensor *x); /* (N,C[,H,W]) */
/* The op under gm_groupnorm_forward: x (N,C,...) normalized over each example's groups of C/groups
   channels (all their pixels), then y = xhat * gamma[c] + beta[c]; gamma, beta (C) tensors, or
   NULL for 1 and 0. One pass forward, one fused pass backward (dx, dgamma, dbeta); differentiable
   to any order. */
GMDEF gm_tensor *gm_group_norm(gm_graph *g, gm_tensor *x, gm_tensor *gamma, gm_tensor *beta, int groups, float eps);
/* act(group norm) in one op when act is GM_ACT_SILU (the U-Net's norm-then-SiLU keeps one tensor
   instead of two, and its backward is one pass with no SiLU gradient tensor); other activations are
   applied after (gm_activation, with slope). */
GMDEF gm_tensor *gm_group_norm_act(gm_graph *g, gm_tensor *x, gm_tensor *gamma, gm_tensor *beta, int groups, float eps,
                                   int act, float slope);
GMDEF gm_tensor *gm_groupnorm_forward_act(gm_graph *g, const gm_groupnorm *gn, gm_tensor *x, int act, float slope);

/* Activations by name, for configs: one enum for every family. GM_ACT_LEAKY_RELU uses `slope`;
   the others ignore it. */
enum { GM_ACT_IDENTITY = 0, GM_ACT_RELU, GM_ACT_LEAKY_RELU, GM_ACT_ELU, GM_ACT_TANH, GM_ACT_SIGMOID,
       GM_ACT_SOFTPLUS, GM_ACT_SILU, GM_ACT_COUNT };
GMDEF gm_tensor  *gm_activation(gm_graph *g, gm_tensor *x, int act, float slope);
GMDEF const char *gm_act_name(int act);          /* "identity", "relu", "leaky_relu", ...; "?" if unknown */
GMDEF int         gm_act_parse(const char *name); /* the reverse; -1 if unknown */

/* Host-side reductions of a tensor's values (for stats), in double. */
GMDEF double gm_tensor_sum(const gm_tensor *t);
GMDEF double gm_tensor_mean(const gm_tensor *t);

/* ======================================================================================= */
/* Optimizers                                                                              */
/* ======================================================================================= */
/* State: the moments mirror the parameter buffer. */
enum { GM_SGD = 0, GM_RMSPROP, GM_ADAM, GM_ADAMW };
enum { GM_LR_CONSTANT = 0, GM_LR_STEP, GM_LR_COSINE };
typedef struct gm_schedule {
    int kind;               /* GM_LR_CONSTANT, GM_LR_STEP, GM_LR_COSINE */
    long warmup;            /* linear warm-up steps (0: none), applied before any kind */
    long step_size;         /* GM_LR_STEP: multiply by gamma every step_size steps */
    float gamma;
    long total;             /* GM_LR_COSINE: steps to decay over */
    float min_lr;           /* GM_LR_COSINE: floor */
} gm_schedule;

typedef struct gm_optim {
    int kind;               /* GM_SGD, GM_RMSPROP, GM_ADAM, GM_ADAMW */
    float lr, beta1, beta2, eps;
    float momentum;         /* SGD momentum; RMSProp momentum */
    float alpha;            /* RMSProp smoothing */
    float weight_decay;     /* L2 (added to the gradient) or, for AdamW, decoupled */
    float clip_norm;        /* > 0: scale gradients so their global L2 norm is at most this */
    float clip_value;       /* > 0: after the step clamp every weight to [-clip_value, clip_value] (WGAN) */
    gm_schedule sched;
    long step;              /* steps taken */
    size_t n;               /* floats in m and v (== params count once allocated) */
    float *m, *v;           /* first/second moments (or momentum buffer / square average) */
} gm_optim;

GMDEF gm_optim gm_sgd(float lr, float momentum);
GMDEF gm_optim gm_rmsprop(float lr, float alpha);          /* PyTorch's defaults: alpha 0.99, eps 1e-8 */
GMDEF gm_optim gm_adam(float lr, float beta1, float beta2); /* eps 1e-8 */
GMDEF gm_optim gm_adamw(float lr, float beta1, float beta2, float weight_decay);
GMDEF int   gm_optim_step(gm_optim *o, gm_params *p);      /* update, then zero p's gradients; 0 or -1 */
GMDEF float gm_optim_lr(const gm_optim *o);                /* learning rate of the next step */
GMDEF void  gm_optim_free(gm_optim *o);
GMDEF float gm_grad_norm(const gm_params *p);              /* global L2 norm of the gradients */

/* ======================================================================================= */
/* Data                                                                                    */
/* ======================================================================================= */
/* Every function that reads a file or user input returns 0 (or a count) on success and -1 on
 * failure with gm_last_error() naming the file and the problem. Nothing here keeps global state;
 * all randomness is seeded by the caller, so results do not depend on libc rand(). */

/* ---- datasets ---- */
typedef struct gm_dataset {
    int n, h, w, c;     /* items, height, width, channels (IDX images: c = 1) */
    float *x;           /* n*c*h*w floats, item-major, each item c*h*w (channel, row, column) */
    int *y;             /* n labels, or NULL when loaded without labels */
    int nclasses;       /* labels are in 0..nclasses-1 (0 when y is NULL) */
} gm_dataset;

/* IDX (MNIST format). Pixels 0..255 map linearly onto [lo, hi] (0,1 or -1,1 are the usual
 * choices); max_items > 0 keeps only the first max_items items. The whole file is still
 * validated (magic, dims, exact size, label range). labels_path may be NULL. */
GMDEF int  gm_idx_load(gm_dataset *d, const char *images_path, const char *labels_path,
                       int max_items, float lo, float hi);
/* Same with an explicit class count: every label must be < num_classes (gm_idx_load uses 10). */
GMDEF int  gm_idx_load_ex(gm_dataset *d, const char *images_path, const char *labels_path,
                          int max_items, float lo, float hi, int num_classes);
/* The same from IDX files already in memory (e.g. embedded); labels may be NULL. */
GMDEF int  gm_idx_load_mem(gm_dataset *d, const void *images, size_t images_len, const void *labels,
                           size_t labels_len, int max_items, float lo, float hi, int num_classes);
/* Loads dir/train-images-idx3-ubyte + train-labels-idx1-ubyte into train and
 * dir/t10k-images-idx3-ubyte + t10k-labels-idx1-ubyte into test (test may be NULL). */
GMDEF int  gm_mnist_load(gm_dataset *train, gm_dataset *test, const char *dir,
                         int max_train, int max_test, float lo, float hi);
/* Writes n images of h*w floats in [lo, hi] as uint8 IDX (rounded, clamped; NaN/inf is an
 * error). Written to a temporary file, synced, then renamed over path. */
GMDEF int  gm_idx_save_images(const char *path, const float *x, int n, int h, int w,
                              float lo, float hi);
GMDEF int  gm_idx_save_labels(const char *path, const int *y, int n); /* labels 0..255 */
GMDEF void gm_dataset_free(gm_dataset *d);

/* ---- 2-D toy densities ---- */
/* name: one of gm_toy2d_names(). noise < 0 selects the dataset's default (see DATA_NOTES.md).
 * Writes n points (x0,y0,x1,y1,...) and, if labels != NULL, a component index per point.
 * Deterministic for a given seed. Unknown name: -1 with the valid names in the message. */
GMDEF int         gm_toy2d(const char *name, int n, uint64_t seed, float noise, float *xy, int *labels);
GMDEF const char *gm_toy2d_names(void); /* "moons circles 8gaussians ..." for --help */

/* ---- dataset utilities ---- */
/* Per-feature mean and population std of x (n rows of d floats). A feature whose std is
 * below 1e-8 gets std 1 so that apply/undo stay finite. */
GMDEF void gm_standardize_fit(const float *x, int n, int d, float *mean, float *std);
GMDEF void gm_standardize_apply(float *x, int n, int d, const float *mean, const float *std);
GMDEF void gm_standardize_undo(float *x, int n, int d, const float *mean, const float *std);
/* Dynamic binarization: dst[i] = 1 with probability src[i] (clamped to [0,1]), else 0.
 * rng (seeded with gm_rng_seed) is advanced, so successive calls draw fresh samples. dst may
 * equal src. */
GMDEF void gm_binarize(float *dst, const float *src, size_t count, gm_rng *rng);
/* Uniform dequantization for flows on [0,1] data holding k/255 values:
 * x = (k + u) / 256 with u ~ U[0,1). Result is in [0,1). rng as for gm_binarize. */
GMDEF void gm_dequantize(float *x, size_t count, gm_rng *rng);

/* Minibatches over n items in a seeded random order, reshuffled every epoch.
 *   gm_batcher b; gm_batcher_init(&b, d.n, 64, seed, 1);
 *   for (epoch...) while ((k = gm_batcher_next(&b, &idx)) > 0) { gm_dataset_gather(&d, idx, k, xb, yb); ... }
 * gm_batcher_next returns the batch size (the last batch may be smaller unless drop_last),
 * or 0 once at the end of each epoch, after which the next call starts the next epoch. */
typedef struct gm_batcher {
    int n, batch, drop_last;
    int *perm;          /* current epoch's order */
    int pos;            /* next position in perm */
    long epoch;         /* epochs started so far - 1 (0 during the first) */
    gm_rng rng;         /* the order's random stream, seeded from gm_batcher_init's seed */
} gm_batcher;
GMDEF int  gm_batcher_init(gm_batcher *b, int n, int batch, uint64_t seed, int drop_last);
GMDEF int  gm_batcher_next(gm_batcher *b, const int **idx);
GMDEF void gm_batcher_free(gm_batcher *b);
/* Copies items idx[0..count-1] of d into x_out (count*c*h*w floats) and y_out (count ints;
 * NULL to skip, or d->y NULL). */
GMDEF void gm_dataset_gather(const gm_dataset *d, const int *idx, int count, float *x_out, int *y_out);

/* ======================================================================================= */
/* Checkpoints                                                                             */
/* ======================================================================================= */
/* ---- checkpoints (safetensors) ---- */
/* Every view of p is stored as an F32 tensor under its view name. With opt, the moments are
 * stored as "optim.m.<view>" and "optim.v.<view>" and kind/step/hyperparameters/schedule as
 * "optim.*" keys of __metadata__. meta holds the caller's key/value strings (model config);
 * keys starting with "optim." are reserved. Loading validates the whole file against p before
 * touching anything: on failure p, opt and meta are unchanged. Loading with opt restores its
 * hyperparameters too (override them after loading if you want different ones); opt->m / opt->v
 * that are NULL are allocated (p->count floats, GENMOD_MALLOC; the caller frees them). */
#define GM_META_MAX 32
#define GM_META_KEY_MAX 64      /* bytes including the terminating 0 */
#define GM_META_VALUE_MAX 256
typedef struct gm_meta {
    int n;
    char key[GM_META_MAX][GM_META_KEY_MAX];
    char value[GM_META_MAX][GM_META_VALUE_MAX];
} gm_meta;

GMDEF int gm_checkpoint_save(const char *path, const gm_params *p, const gm_optim *opt, const gm_meta *meta);
GMDEF int gm_checkpoint_load(const char *path, gm_params *p, gm_optim *opt, gm_meta *meta);
/* The same from a safetensors image in memory (e.g. embedded weights). */
GMDEF int gm_checkpoint_load_mem(const void *buf, size_t len, gm_params *p, gm_optim *opt, gm_meta *meta);

GMDEF const char *gm_meta_get(const gm_meta *m, const char *key);          /* NULL if absent */
GMDEF int gm_meta_set(gm_meta *m, const char *key, const char *value);      /* replaces; -1 if full/too long */
GMDEF int gm_meta_setf(gm_meta *m, const char *key, const char *fmt, ...);  /* printf-style value */
/* A random stream's whole state as a value (the same text on every platform), so a loaded model
   draws what the saved one would have drawn next. get: 0, or -1 if the key is absent or its value
   is not such a state (r unchanged). */
GMDEF int gm_meta_set_rng(gm_meta *m, const char *key, const gm_rng *r);
GMDEF int gm_meta_get_rng(const gm_meta *m, const char *key, gm_rng *r);
/* Every metadata entry of a checkpoint file (the optimizer's "optim.*" keys excepted), without
   loading any tensor: to see which model and architecture a file holds. 0, or -1 (meta unchanged). */
GMDEF int gm_checkpoint_read_meta(const char *path, gm_meta *meta);

/* ---- model checkpoints ---- */
/* A model is one or more parts, each a gm_params with its optimizer (opt may be NULL): a GAN has
 * "G" and "D". Part P's view V is stored as the tensor "P.V", its moments as "optim.m.P.V" and
 * "optim.v.P.V", its optimizer's hyperparameters, step and schedule as the metadata "optim.P.*", so
 * each part's optimizer comes back as it was. Part names are unique and hold no '.'; a single part
 * may be named "", which drops the "P." and makes the file a plain checkpoint (see above).
 * Metadata: "genmod.model" (e.g. "vae"), "genmod.arch" (one-line architecture text), "genmod.step",
 * then the caller's extra keys (at most GM_META_MAX - 3, none starting with "genmod." or "optim.").
 * gm_model_load reads the metadata first: another model's file or another architecture is refused
 * with a message naming the file, what was expected and what was found, and nothing is touched;
 * then every tensor of every part is validated before any is copied, so on any failure the
 * parameters, optimizers, *step and *extra are unchanged. Moments that are NULL are allocated as
 * in gm_checkpoint_load. step and extra may be NULL. Writes go to a temporary file, renamed. */
typedef struct gm_model_part { const char *name; gm_params *params; gm_optim *opt; } gm_model_part;
GMDEF int gm_model_save(const char *path, const char *model, const char *arch, long step,
                        const gm_model_part *parts, int nparts, const gm_meta *extra);
GMDEF int gm_model_load(const char *path, const char *model, const char *arch, long *step,
                        gm_model_part *parts, int nparts, gm_meta *extra);
/* The common case: one part (the weights under their own names, and the optimizer), the step, and
   the model's two random streams, its own and its graph's, as "<model>.rng" and "<model>.graph_rng",
   so training resumed from the file draws the same noise; extra (NULL: none) as above. Loading
   restores the streams when the file holds them and leaves them as they are otherwise. */
GMDEF int gm_model_save_single(const char *path, const char *model, const char *arch, long step,
                               const gm_params *params, const gm_optim *opt, const gm_rng *rng, gm_graph *graph,
                               const gm_meta *extra);
GMDEF int gm_model_load_single(const char *path, const char *model, const char *arch, long *step,
                               gm_params *params, gm_optim *opt, gm_rng *rng, gm_graph *graph, gm_meta *extra);

#ifdef __cplusplus
}
#endif
#endif /* GENMOD_H */

#ifdef GENMOD_IMPLEMENTATION
#ifndef GENMOD_IMPLEMENTATION_INCLUDED
#define GENMOD_IMPLEMENTATION_INCLUDED
/* ======================================================================================= */
/* Implementation: includes and configuration                                              */
/* ======================================================================================= */
/* One block for every section below: the C library, the platform's thread, file and SIMD
   headers, and the macros that adapt to them. */
#include <assert.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define GM__GNUC 1
#define GM__MAYBE_UNUSED __attribute__((unused)) /* gm__vexpm1: an entry point only the tests call */
#else
#define GM__MAYBE_UNUSED
#endif

#if defined(GENMOD_NO_THREADS) || defined(_WIN32)
/* No pool: every parallel_for runs serially in the caller. (A Windows pool is not implemented;
 * _WIN32 builds are correct but single-threaded.) */
#define GM__SERIAL 1
#else
#include <pthread.h>
#include <unistd.h>
#include <sched.h>
#endif

#if defined(__unix__) || defined(__APPLE__)
#define GM__POSIX_IO 1
#include <unistd.h>
#include <fcntl.h>
#elif defined(_WIN32)
#include <io.h>
#include <process.h>
#endif

#if (defined(__x86_64__) || defined(__i386__) || defined(_M_X64)) && !defined(GENMOD_NO_SIMD) && \
    defined(GM__GNUC)
#define GM__X86 1 /* SSE2/AVX2/AVX-512 compiled with target attributes, chosen at run time */
#include <immintrin.h>
#endif
#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(GENMOD_NO_SIMD)
#define GM__NEON 1
#include <arm_neon.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__SSE__)
#include <xmmintrin.h> /* MXCSR for gm_flush_denormals */
#define GM__HAVE_MXCSR 1
#endif

#if defined(GENMOD_MALLOC) != defined(GENMOD_FREE) || defined(GENMOD_MALLOC) != defined(GENMOD_REALLOC)
#error "genmod.h: define GENMOD_MALLOC, GENMOD_REALLOC and GENMOD_FREE together, or none of them"
#endif
#ifndef GENMOD_MALLOC
#define GENMOD_MALLOC(sz) malloc(sz)
#define GENMOD_REALLOC(p, sz) realloc(p, sz)
#define GENMOD_FREE(p) free(p)
#endif
#ifndef GENMOD_ASSERT
#define GENMOD_ASSERT(x) assert(x)
#endif

#ifdef __cplusplus
#define GM__CAST(type, x) static_cast<type>(x)
#else
#define GM__CAST(type, x) ((type)(x))
#endif
#define GM__MIN(a, b) ((a) < (b) ? (a) : (b))
#define GM__MAX(a, b) ((a) > (b) ? (a) : (b))
#define GM__PI 3.14159265358979323846

/* Thread-local storage: per-thread error messages and kernel scratch, so that two threads training
   two models never see each other's. */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define GM__TLS thread_local
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__STDC_NO_THREADS__)
#define GM__TLS _Thread_local
#elif defined(__GNUC__) || defined(__clang__)
#define GM__TLS __thread
#elif defined(_MSC_VER)
#define GM__TLS __declspec(thread)
#else
#define GM__TLS
#endif

#if defined(GM__GNUC)
#define GM__ALOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define GM__ASTORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define GM__ALOAD_SC(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define GM__ASTORE_SC(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define GM__AADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define GM__ACAS(p, expect, v) \
    __atomic_compare_exchange_n((p), (expect), (v), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
#else
/* Only reached in serial builds (MSVC takes the _WIN32 branch above): plain accesses suffice. */
#define GM__ALOAD(p) (*(p))
#define GM__ASTORE(p, v) (*(p) = (v))
#define GM__ALOAD_SC(p) (*(p))
#define GM__ASTORE_SC(p, v) (*(p) = (v))
#define GM__AADD(p, v) ((*(p) += (v)) - (v))
#define GM__ACAS(p, expect, v) (*(p) == *(expect) ? (*(p) = (v), 1) : (*(expect) = *(p), 0))
#endif

#if defined(GM__GNUC)
#define GM__PREFETCH(p) __builtin_prefetch((p), 1, 3)
#else
#define GM__PREFETCH(p) ((void)0)
#endif
#if defined(GM__GNUC)
#define GM__INLINE inline __attribute__((always_inline))
#else
#define GM__INLINE
#endif
#if defined(GM__GNUC) && (defined(__x86_64__) || defined(__i386__))
#define GM__RELAX() __builtin_ia32_pause()
#elif defined(GM__GNUC) && defined(__aarch64__)
#define GM__RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define GM__RELAX() ((void)0)
#endif

/* ======================================================================================= */
/* Errors                                                                                  */
/* ======================================================================================= */
static GM__TLS char gm__error_text[512];

GMDEF const char *gm_last_error(void) { return gm__error_text[0] ? gm__error_text : "no error"; }

static int gm__vfail(const char *fmt, va_list ap) {
    vsnprintf(gm__error_text, sizeof gm__error_text, fmt, ap);
    return -1;
}

GMDEF int gm_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    gm__vfail(fmt, ap);
    va_end(ap);
    return -1;
}

/* ======================================================================================= */
/* Kernels: SIMD paths, threads, GEMM                                                      */
/* ======================================================================================= */
/* Subsections:
 *   SIMD vocabulary per ISA (GM__V_* macros) and ONE template (GM__DEFINE_PATH) that writes the
 *      micro-kernel, B-panel packing and vector math on top of that vocabulary; instantiated for
 *      scalar, SSE2, AVX2, AVX-512 (x86, runtime dispatch) and NEON (aarch64)
 *   path selection
 *   thread pool (gm__parallel_for)
 *   sgemm driver (packing, cache blocking, tiling over threads)
 *   vector math entry points (gm__vexp, gm__vlog, gm__vtanh, gm__vsigmoid, gm__vexpm1, gm__vsoftplus)
 *
 * Vector math accuracy, measured against double-precision libm over a dense sweep of all float
 * bit patterns (every 61st pattern plus edge cases; denormal results measured in denormal ulps):
 *     max error in ulp       exp    log    tanh   sigmoid
 *     scalar / sse2 (no fma) 1.5    1.0    2.2    2.6
 *     avx2 / avx512 / neon   1.5    1.0    2.2    2.6
 * (see tests/test_kernels.c test_vmath_*, which checks exp,log <= 2 ulp and tanh,sigmoid <= 3 ulp).
 * Specials: NaN propagates; exp(+inf)=inf, exp(-inf)=0, exp overflows to inf above ~88.72 and
 * underflows through denormals to 0; log(0)=-inf, log(x<0)=NaN, log(inf)=inf; tanh(+-inf)=+-1;
 * sigmoid(-inf)=0, sigmoid(inf)=1. With FTZ/DAZ on (gm_flush_denormals) denormals read as 0. */

typedef uint32_t gm__u32;
typedef int32_t gm__i32;

/* Bit casts for the scalar path (memcpy is the defined way; compilers turn it into a move). */
static float gm__u2f(gm__u32 u) { float f; memcpy(&f, &u, sizeof f); return f; }
static gm__u32 gm__f2u(float f) { gm__u32 u; memcpy(&u, &f, sizeof u); return u; }

#define GM__MRMAX 16 /* largest micro-tile over all paths: sizes the edge-tile scratch */
#define GM__NRMAX 32
#define GM__VLMAX 16

/* ---- SIMD vocabulary and the one kernel template ---- */
/* A path defines: GM__VF (float vector), GM__VU (u32 vector), GM__VM (compare mask), GM__VLANES,
 * GM__V_{LOAD,STORE,SET1,ZERO,ADD,SUB,MUL,DIV,FMA,MIN,MAX,LT,GE,EQ,SEL}, integer ops
 * GM__V_{ASU,ASF,UADD,USUB,UAND,UOR,USHL,USHR,USET1,U2F}, the micro-tile shape GM__MR, GM__NV
 * (vectors per tile row; NR = NV*LANES) with their unrollers GM__ROWS/GM__COLS, and GM__TGT
 * (function attribute enabling the ISA). MIN/MAX must return the 2nd operand when either is NaN
 * (x86 semantics) or NaN itself (NEON); the exp clamp relies on that to propagate NaN. */

#define GM__CAT_(a, b) a##b
#define GM__CAT(a, b) GM__CAT_(a, b)
/* Unrollers: GM__Rn(X) -> X(0) .. X(n-1); GM__Cn(X, i) -> X(i,0) .. X(i,n-1). */
#define GM__R1(X) X(0)
#define GM__R2(X) GM__R1(X) X(1)
#define GM__R3(X) GM__R2(X) X(2)
#define GM__R4(X) GM__R3(X) X(3)
#define GM__R5(X) GM__R4(X) X(4)
#define GM__R6(X) GM__R5(X) X(5)
#define GM__R7(X) GM__R6(X) X(6)
#define GM__R8(X) GM__R7(X) X(7)
#define GM__R9(X) GM__R8(X) X(8)
#define GM__R10(X) GM__R9(X) X(9)
#define GM__R11(X) GM__R10(X) X(10)
#define GM__R12(X) GM__R11(X) X(11)
#define GM__R13(X) GM__R12(X) X(12)
#define GM__R14(X) GM__R13(X) X(13)
#define GM__R15(X) GM__R14(X) X(14)
#define GM__R16(X) GM__R15(X) X(15)
#define GM__C1(X, i) X(i, 0)
#define GM__C2(X, i) GM__C1(X, i) X(i, 1)
#define GM__C3(X, i) GM__C2(X, i) X(i, 2)
#define GM__C4(X, i) GM__C3(X, i) X(i, 3)

/* Micro-kernel pieces: accumulator c<i>_<j> holds tile row i, vector column j. */
#define GM__MK_ACC(i, j) GM__VF c##i##_##j = GM__V_ZERO();
/* the C tile is needed only after the k loop: start pulling its lines in now */
#define GM__MK_PFROW(i) GM__PREFETCH(c + (i) * ldc); GM__PREFETCH(c + (i) * ldc + GM__NV * GM__VLANES - 1);
#define GM__MK_ACCROW(i) GM__COLS(GM__MK_ACC, i)
#define GM__MK_BLOAD(i, j) const GM__VF b##j = GM__V_LOAD(b + (j) * GM__VLANES);
#define GM__MK_FMA(i, j) c##i##_##j = GM__V_FMA(a##i, b##j, c##i##_##j);
#define GM__MK_FMAROW(i) { const GM__VF a##i = GM__V_SET1(a[i]); GM__COLS(GM__MK_FMA, i) }
#define GM__MK_OUT0(i, j) GM__V_STORE(c + (i) * ldc + (j) * GM__VLANES, GM__V_MUL(va, c##i##_##j));
#define GM__MK_OUT1(i, j)                                                                   \
    GM__V_STORE(c + (i) * ldc + (j) * GM__VLANES,                                           \
                GM__V_FMA(vb, GM__V_LOAD(c + (i) * ldc + (j) * GM__VLANES), GM__V_MUL(va, c##i##_##j)));
#define GM__MK_OUT0ROW(i) GM__COLS(GM__MK_OUT0, i)
#define GM__MK_OUT1ROW(i) GM__COLS(GM__MK_OUT1, i)
#define GM__MK_PACK(i, j) GM__V_STORE(d + (j) * GM__VLANES, GM__V_LOAD(src + (j) * GM__VLANES));

/* Polynomial coefficients (Taylor series; derived by hand, not tuned minimax). */
#define GM__EXP_C2 0.5f
#define GM__EXP_C3 0.166666672f        /* 1/3! */
#define GM__EXP_C4 0.0416666679f       /* 1/4! */
#define GM__EXP_C5 0.00833333377f      /* 1/5! */
#define GM__EXP_C6 0.00138888892f      /* 1/6! */
#define GM__EXP_C7 0.000198412701f     /* 1/7! */

/* The elementwise operations of the path tables' vbinary and vunary. */
enum { GM__EW_ADD, GM__EW_SUB, GM__EW_MUL, GM__EW_DIV };
enum { GM__EW_AFFINE, GM__EW_SQUARE, GM__EW_RELU, GM__EW_LEAKY, GM__EW_ELU, GM__EW_MASK_POS, GM__EW_MASK_LEAKY };
/* The fused maps of vfused, y from up to three inputs a, b, c and four constants f:
   NORM       (a - f0) f1 + f2                       group norm forward (a = x)
   NORM_GRAD  f0 a + f1 (b - f2) + f3                group norm's dx (a = dy, b = x)
   SILU_GRAD  a s (1 + b (1 - s)), s = sigmoid(b)    silu's dx (a = dy, b = x)
   GATE       tanh(a) sigmoid(b)                     gated unit (a, b the two halves)
   GATE_DA    a sigmoid(c) (1 - tanh(b)^2)           its d/d first half (a = dy, b, c the halves)
   GATE_DB    a tanh(b) s (1 - s), s = sigmoid(c)    its d/d second half
   NORM_SILU  silu(z), z = (a - f0) f1 + f2          group norm then silu (a = x)
   NORM_SILU_GRAD  a s (1 + z (1 - s)), z = (b - f0) f1 + f2, s = sigmoid(z): dz (a = dy, b = x) */
enum { GM__FU_NORM, GM__FU_NORM_GRAD, GM__FU_SILU_GRAD, GM__FU_GATE, GM__FU_GATE_DA, GM__FU_GATE_DB, GM__FU_NORM_SILU,
       GM__FU_NORM_SILU_GRAD };

#define GM__DEFINE_PATH(SFX)                                                                         \
/* Micro-kernel. a: packed A micro-panel, (kc, MR) row-major (a[k*MR + i] = op(A)(i,k));          \
 * b: packed B micro-panel, (kc, NR) row-major; c: (MR, NR) tile with row stride ldc.            \
 * c = alpha * a^T b + beta * c; beta == 0 does not read c. Every element is one sequential      \
 * FMA chain over k, so results do not depend on where the tile sits. */                         \
static GM__TGT void gm__ukernel_##SFX(int kc, const float *a, const float *b, float *c, int ldc,  \
                                      float alpha, float beta) {                                  \
    int k;                                                                                        \
    GM__ROWS(GM__MK_PFROW)                                                                        \
    GM__ROWS(GM__MK_ACCROW)                                                                       \
    for (k = 0; k < kc; k++) {                                                                    \
        GM__COLS(GM__MK_BLOAD, 0)                                                                 \
        GM__ROWS(GM__MK_FMAROW)                                                                   \
        a += GM__MR;                                                                              \
        b += GM__NV * GM__VLANES;                                                                 \
    }                                                                                             \
    {                                                                                             \
        const GM__VF va = GM__V_SET1(alpha), vb = GM__V_SET1(beta);                               \
        if (beta == 0.0f) { GM__ROWS(GM__MK_OUT0ROW) }                                            \
        else { GM__ROWS(GM__MK_OUT1ROW) }                                                         \
        (void)vb;                                                                                 \
    }                                                                                             \
}                                                                                                 \
/* npan full-width B panels, not transposed: b is (kc, >= npan*NR) with row stride ldb; panel q  \
 * -> dst + q*kc*NR as (kc, NR). Row by row, so B is read sequentially (a panel at a time would   \
 * touch a new page per k when ldb is large). */                                                 \
static GM__TGT void gm__packbn_##SFX(int kc, const float *b, int ldb, int npan, float *dst) {     \
    const size_t ps = (size_t)kc * GM__NV * GM__VLANES;                                           \
    int k, q;                                                                                     \
    for (k = 0; k < kc; k++, b += ldb)                                                            \
        for (q = 0; q < npan; q++) {                                                              \
            const float *src = b + (size_t)q * GM__NV * GM__VLANES;                               \
            float *d = dst + q * ps + (size_t)k * GM__NV * GM__VLANES;                            \
            GM__COLS(GM__MK_PACK, 0)                                                              \
        }                                                                                         \
}                                                                                                 \
/* Transposed B panel: column c < cols of the panel is the row b + c*ldb (contiguous in k)      \
 * -> dst (kc, NR), columns >= cols zero. VLANES x VLANES blocks go through the in-register     \
 * transpose GM__V_TR; the k tail (kc % VLANES) is copied element by element. */                  \
static GM__TGT void gm__packbt_##SFX(int kc, const float *b, int ldb, int cols, float *dst) {     \
    const int nr = GM__NV * GM__VLANES;                                                           \
    int k = 0, c;                                                                                 \
    if (cols >= nr) /* (constant row count: the transpose inlines without its row checks) */     \
        for (; k + GM__VLANES <= kc; k += GM__VLANES)                                             \
            for (c = 0; c < nr; c += GM__VLANES)                                                  \
                GM__V_TR(b + (size_t)c * ldb + k, ldb, GM__VLANES, dst + (size_t)k * nr + c, nr); \
    for (; k + GM__VLANES <= kc; k += GM__VLANES)                                                 \
        for (c = 0; c < nr; c += GM__VLANES)                                                      \
            GM__V_TR(b + (size_t)c * ldb + k, ldb, cols - c, dst + (size_t)k * nr + c, nr);        \
    for (; k < kc; k++)                                                                           \
        for (c = 0; c < nr; c++) dst[(size_t)k * nr + c] = c < cols ? b[(size_t)c * ldb + k] : 0.0f; \
}                                                                                                 \
/* dst[j*dld + i] = src[i*sld + j] for a rows x cols block: VLANES x VLANES tiles through the    \
 * in-register transpose; the last rows (fewer than VLANES) through a scratch tile, since a tile  \
 * stores whole vectors; the last columns element by element (the layout moves around convs). */ \
static GM__TGT void gm__transpose_##SFX(const float *src, int sld, float *dst, int dld, int rows,  \
                                        int cols) {                                               \
    const int rf = rows - rows % GM__VLANES, cf = cols - cols % GM__VLANES;                       \
    float tile[GM__VLANES * GM__VLANES];                                                          \
    int i, j, c;                                                                                  \
    if (dld > sld) /* the far-apart rows are dst's: VLANES of them at a time, each written along */ \
        for (j = 0; j < cf; j += GM__VLANES)                                                      \
            for (i = 0; i < rf; i += GM__VLANES)                                                  \
                GM__V_TR(src + (size_t)i * sld + j, sld, GM__VLANES, dst + (size_t)j * dld + i, dld); \
    else                                                                                          \
        for (i = 0; i < rf; i += GM__VLANES)                                                      \
            for (j = 0; j < cf; j += GM__VLANES)                                                  \
                GM__V_TR(src + (size_t)i * sld + j, sld, GM__VLANES, dst + (size_t)j * dld + i, dld); \
    if (rf < rows)                                                                                \
        for (j = 0; j < cf; j += GM__VLANES) {                                                    \
            GM__V_TR(src + (size_t)rf * sld + j, sld, rows - rf, tile, GM__VLANES);               \
            for (c = 0; c < GM__VLANES; c++)                                                      \
                memcpy(dst + (size_t)(j + c) * dld + rf, tile + c * GM__VLANES, (size_t)(rows - rf) * sizeof(float)); \
        }                                                                                         \
    for (i = 0; i < rows; i++)                                                                    \
        for (j = cf; j < cols; j++) dst[(size_t)j * dld + i] = src[(size_t)i * sld + j];          \
}                                                                                                 \
/* Transposed A micro-panel: op(A)(i, k) = a[k*lda + i], i.e. a copy of MR contiguous floats   \
 * per k (fixed size, so the compiler emits vector moves) -> dst (kc, MR), rows >= rows zero. */ \
static GM__TGT void gm__packat_##SFX(int kc, const float *a, int lda, int rows, float *dst) {     \
    int k, i;                                                                                     \
    if (rows == GM__MR)                                                                           \
        for (k = 0; k < kc; k++, a += lda, dst += GM__MR) memcpy(dst, a, sizeof(float) * GM__MR); \
    else                                                                                          \
        for (k = 0; k < kc; k++, a += lda, dst += GM__MR)                                         \
            for (i = 0; i < GM__MR; i++) dst[i] = i < rows ? a[i] : 0.0f;                         \
}                                                                                                 \
/* Non-transposed A micro-panel: row i < rows of the panel is a + i*lda (contiguous in k)       \
 * -> dst (kc, MR), rows >= rows zero. Row groups of VLANES go through GM__V_TR with row stride  \
 * MR in dst; when MR is not a multiple of VLANES a block's stores run past its group into the   \
 * next k rows (or past the panel: the caller leaves VLANES floats of slack). Groups are done     \
 * last to first and k in increasing order, so every such spill is overwritten afterwards. */    \
static GM__TGT void gm__packa_##SFX(int kc, const float *a, int lda, int rows, float *dst) {      \
    int k = 0, g, i;                                                                              \
    if (rows >= GM__MR) /* (constant row counts: the transposes inline, zero rows fold away) */ \
        for (; k + GM__VLANES <= kc; k += GM__VLANES)                                             \
            for (g = ((GM__MR - 1) / GM__VLANES) * GM__VLANES; g >= 0; g -= GM__VLANES)           \
                GM__V_TR(a + (size_t)g * lda + k, lda, GM__MR - g, dst + (size_t)k * GM__MR + g, GM__MR); \
    for (; k + GM__VLANES <= kc; k += GM__VLANES)                                                 \
        for (g = ((GM__MR - 1) / GM__VLANES) * GM__VLANES; g >= 0; g -= GM__VLANES)               \
            GM__V_TR(a + (size_t)g * lda + k, lda, (rows < GM__MR ? rows : GM__MR) - g,            \
                     dst + (size_t)k * GM__MR + g, GM__MR);                                       \
    for (; k < kc; k++)                                                                           \
        for (i = 0; i < GM__MR; i++) dst[(size_t)k * GM__MR + i] = i < rows ? a[(size_t)i * lda + k] : 0.0f; \
}                                                                                                 \
/* exp: n = round(x/ln2), r = x - n*ln2 (Cody-Waite, ln2_hi has 9 bits so n*ln2_hi is exact),    \
 * e^r by degree-7 Taylor on |r| <= 0.35, times 2^n built in two halves so n in [-150,128]       \
 * never leaves the normal exponent range (gives correct overflow, denormals and underflow). */  \
static GM__TGT GM__VF gm__exp1_##SFX(GM__VF x) {                                                  \
    const GM__VF magic = GM__V_SET1(12582912.0f); /* 1.5*2^23: adding it rounds to integer */     \
    GM__VF t, n, r, p, t1, n2;                                                                    \
    GM__VU e1, e2;                                                                                \
    x = GM__V_MAX(GM__V_SET1(-104.0f), GM__V_MIN(GM__V_SET1(89.0f), x)); /* NaN stays NaN */      \
    t = GM__V_FMA(x, GM__V_SET1(1.44269504f), magic);                                             \
    n = GM__V_SUB(t, magic);                                                                      \
    r = GM__V_FMA(n, GM__V_SET1(-0.693359375f), x);                                               \
    r = GM__V_FMA(n, GM__V_SET1(2.12194440e-4f), r);                                              \
    p = GM__V_FMA(GM__V_SET1(GM__EXP_C7), r, GM__V_SET1(GM__EXP_C6));                             \
    p = GM__V_FMA(p, r, GM__V_SET1(GM__EXP_C5));                                                  \
    p = GM__V_FMA(p, r, GM__V_SET1(GM__EXP_C4));                                                  \
    p = GM__V_FMA(p, r, GM__V_SET1(GM__EXP_C3));                                                  \
    p = GM__V_FMA(p, r, GM__V_SET1(GM__EXP_C2));                                                  \
    p = GM__V_FMA(p, r, GM__V_SET1(1.0f));                                                        \
    p = GM__V_FMA(p, r, GM__V_SET1(1.0f));                                                        \
    t1 = GM__V_FMA(n, GM__V_SET1(0.5f), magic);            /* n1 = round(n/2), plus magic */      \
    n2 = GM__V_SUB(n, GM__V_SUB(t1, magic));               /* n2 = n - n1 */                      \
    /* low bits of (n + magic) are n itself: add the bias and shift into the exponent field */    \
    e1 = GM__V_USHL(GM__V_UADD(GM__V_ASU(t1), GM__V_USET1(127)), 23);                             \
    e2 = GM__V_USHL(GM__V_UADD(GM__V_ASU(GM__V_ADD(n2, magic)), GM__V_USET1(127)), 23);           \
    return GM__V_MUL(GM__V_MUL(p, GM__V_ASF(e1)), GM__V_ASF(e2));                                 \
}                                                                                                 \
/* log: x = m*2^e with m in [sqrt(.5), sqrt(2)); f = m-1, s = f/(2+f), log(m) = 2 atanh(s)        \
 * = f - s*(f - R(s^2)) so that the rounding of s only touches the small correction term. */     \
static GM__TGT GM__VF gm__log1_##SFX(GM__VF x) {                                                  \
    const GM__VM tiny = GM__V_LT(x, GM__V_SET1(1.17549435e-38f));                                 \
    const GM__VF xs = GM__V_SEL(tiny, GM__V_MUL(x, GM__V_SET1(8388608.0f)), x); /* denormals */   \
    const GM__VU u = GM__V_UADD(GM__V_ASU(xs), GM__V_USET1(0x3f800000u - 0x3f3504f3u));           \
    GM__VF e = GM__V_U2F(GM__V_USUB(GM__V_USHR(u, 23), GM__V_USET1(127)));                        \
    const GM__VF m = GM__V_ASF(GM__V_UADD(GM__V_UAND(u, GM__V_USET1(0x007fffffu)),                \
                                          GM__V_USET1(0x3f3504f3u)));                             \
    const GM__VF f = GM__V_SUB(m, GM__V_SET1(1.0f));                                              \
    const GM__VF s = GM__V_DIV(f, GM__V_ADD(f, GM__V_SET1(2.0f)));                                \
    const GM__VF z = GM__V_MUL(s, s);                                                             \
    GM__VF R, lm, res;                                                                            \
    R = GM__V_FMA(GM__V_SET1(0.181818187f), z, GM__V_SET1(0.222222224f)); /* 2/11, 2/9 */         \
    R = GM__V_FMA(R, z, GM__V_SET1(0.285714298f));                         /* 2/7 */              \
    R = GM__V_FMA(R, z, GM__V_SET1(0.400000006f));                         /* 2/5 */              \
    R = GM__V_FMA(R, z, GM__V_SET1(0.666666687f));                         /* 2/3 */              \
    R = GM__V_MUL(R, z);                                                                          \
    lm = GM__V_SUB(f, GM__V_MUL(s, GM__V_SUB(f, R)));                                             \
    e = GM__V_SUB(e, GM__V_SEL(tiny, GM__V_SET1(23.0f), GM__V_ZERO()));                           \
    res = GM__V_ADD(GM__V_MUL(e, GM__V_SET1(0.693359375f)),                                       \
                    GM__V_FMA(e, GM__V_SET1(-2.12194440e-4f), lm));                               \
    res = GM__V_SEL(GM__V_GE(x, GM__V_ZERO()), res, GM__V_ASF(GM__V_USET1(0x7fc00000u)));         \
    res = GM__V_SEL(GM__V_EQ(x, GM__V_ZERO()), GM__V_ASF(GM__V_USET1(0xff800000u)), res);         \
    return GM__V_SEL(GM__V_EQ(x, GM__V_ASF(GM__V_USET1(0x7f800000u))), x, res);                   \
}                                                                                                 \
/* tanh: odd Taylor series to x^17 for |x| < 0.55 (avoids cancellation near 0), else             \
 * 1 - 2/(e^{2|x|}+1) with the sign of x put back. */                                            \
static GM__TGT GM__VF gm__tanh1_##SFX(GM__VF x) {                                                 \
    const GM__VU sign = GM__V_UAND(GM__V_ASU(x), GM__V_USET1(0x80000000u));                       \
    const GM__VF ax = GM__V_ASF(GM__V_UAND(GM__V_ASU(x), GM__V_USET1(0x7fffffffu)));              \
    const GM__VF z = GM__V_MUL(x, x);                                                             \
    GM__VF p, small, big;                                                                         \
    p = GM__V_FMA(GM__V_SET1(5.90027440e-4f), z, GM__V_SET1(-1.45583438e-3f));                    \
    p = GM__V_FMA(p, z, GM__V_SET1(3.59212803e-3f));                                              \
    p = GM__V_FMA(p, z, GM__V_SET1(-8.86323552e-3f));                                             \
    p = GM__V_FMA(p, z, GM__V_SET1(2.18694885e-2f));                                              \
    p = GM__V_FMA(p, z, GM__V_SET1(-5.39682540e-2f));                                             \
    p = GM__V_FMA(p, z, GM__V_SET1(1.33333333e-1f));                                              \
    p = GM__V_FMA(p, z, GM__V_SET1(-3.33333333e-1f));                                             \
    small = GM__V_FMA(GM__V_MUL(p, z), ax, ax);                                                   \
    big = GM__V_ADD(gm__exp1_##SFX(GM__V_ADD(ax, ax)), GM__V_SET1(1.0f));                         \
    big = GM__V_SUB(GM__V_SET1(1.0f), GM__V_DIV(GM__V_SET1(2.0f), big));                          \
    big = GM__V_SEL(GM__V_LT(ax, GM__V_SET1(0.55f)), small, big); /* both >= 0 or NaN */          \
    return GM__V_ASF(GM__V_UOR(GM__V_ASU(big), sign));                                            \
}                                                                                                 \
/* sigmoid: t = e^{-|x|} never overflows; 1/(1+t) for x >= 0, t/(1+t) for x < 0 keeps the        \
 * relative accuracy of tiny results (down into denormals). */                                   \
static GM__TGT GM__VF gm__sigmoid1_##SFX(GM__VF x) {                                              \
    const GM__VF nax = GM__V_ASF(GM__V_UOR(GM__V_ASU(x), GM__V_USET1(0x80000000u)));              \
    const GM__VF t = gm__exp1_##SFX(nax);                                                         \
    const GM__VF r = GM__V_DIV(GM__V_SET1(1.0f), GM__V_ADD(GM__V_SET1(1.0f), t));                 \
    return GM__V_SEL(GM__V_GE(x, GM__V_ZERO()), r, GM__V_MUL(t, r));                              \
}                                                                                                 \
/* expm1: e^x - 1 without cancellation near 0 (Kahan: with u = e^x rounded, (u - 1) x / log u,   \
 * exact when u == 1); -1 once e^x < 2^-25 (where u loses its bits in denormals), inf for inf. */ \
static GM__TGT GM__VF gm__expm11_##SFX(GM__VF x) {                                                \
    const GM__VF u = gm__exp1_##SFX(x), um1 = GM__V_SUB(u, GM__V_SET1(1.0f));                     \
    GM__VF r = GM__V_MUL(um1, GM__V_DIV(x, gm__log1_##SFX(u)));                                   \
    r = GM__V_SEL(GM__V_EQ(um1, GM__V_ZERO()), x, r);                                             \
    r = GM__V_SEL(GM__V_LT(u, GM__V_SET1(2.98023224e-8f)), GM__V_SET1(-1.0f), r);                 \
    return GM__V_SEL(GM__V_EQ(u, GM__V_ASF(GM__V_USET1(0x7f800000u))), u, r);                     \
}                                                                                                 \
/* softplus: max(x, 0) + log1p(e^-|x|); e^-|x| never overflows, and log1p(e) = log(u) e / (u - 1) \
 * with u = 1 + e rounded (Goldberg) keeps tiny results accurate. */                             \
static GM__TGT GM__VF gm__softplus1_##SFX(GM__VF x) {                                             \
    const GM__VF nax = GM__V_ASF(GM__V_UOR(GM__V_ASU(x), GM__V_USET1(0x80000000u)));              \
    const GM__VF e = gm__exp1_##SFX(nax), u = GM__V_ADD(GM__V_SET1(1.0f), e);                     \
    const GM__VF um1 = GM__V_SUB(u, GM__V_SET1(1.0f));                                            \
    const GM__VF l1p = GM__V_SEL(GM__V_EQ(um1, GM__V_ZERO()), e,                                  \
                                 GM__V_MUL(gm__log1_##SFX(u), GM__V_DIV(e, um1)));                 \
    return GM__V_ADD(GM__V_MAX(x, GM__V_ZERO()), l1p);                                            \
}                                                                                                 \
/* Elementwise rows: y = a op b where a and b each step by 1 or stay (0: a broadcast scalar), and \
 * the cheap unary maps. Each element gets one correctly rounded operation (no FMA), so the tail's \
 * scalar code gives the same bits as the vector body. */                                         \
static GM__TGT void gm__vbinary_##SFX(int op, float *y, const float *a, long sa, const float *b,  \
                                      long sb, int n) {                                           \
    int i = 0;                                                                                    \
    if ((sa == 0 || sa == 1) && (sb == 0 || sb == 1))                                             \
        for (; i + GM__VLANES <= n; i += GM__VLANES) {                                            \
            const GM__VF u = sa ? GM__V_LOAD(a + i) : GM__V_SET1(a[0]);                           \
            const GM__VF v = sb ? GM__V_LOAD(b + i) : GM__V_SET1(b[0]);                           \
            GM__V_STORE(y + i, op == GM__EW_ADD ? GM__V_ADD(u, v) : op == GM__EW_SUB ? GM__V_SUB(u, v)\
                             : op == GM__EW_MUL ? GM__V_MUL(u, v) : GM__V_DIV(u, v));              \
        }                                                                                         \
    for (; i < n; i++) {                                                                          \
        const float u = a[i * sa], v = b[i * sb];                                                 \
        y[i] = op == GM__EW_ADD ? u + v : op == GM__EW_SUB ? u - v : op == GM__EW_MUL ? u * v : u / v;\
    }                                                                                             \
}                                                                                                 \
static GM__TGT GM__VF gm__unary1_##SFX(int op, GM__VF x, GM__VF f0, GM__VF f1) {                  \
    const GM__VM pos = GM__V_LT(GM__V_ZERO(), x);                                                 \
    switch (op) {                                                                                 \
    case GM__EW_AFFINE:    return GM__V_ADD(GM__V_MUL(f0, x), f1);                                \
    case GM__EW_SQUARE:    return GM__V_MUL(x, x);                                                \
    case GM__EW_RELU:      return GM__V_SEL(pos, x, GM__V_ZERO());                                \
    case GM__EW_LEAKY:     return GM__V_SEL(pos, x, GM__V_MUL(f0, x));                            \
    case GM__EW_ELU:       return GM__V_SEL(pos, x, GM__V_MUL(f0, gm__expm11_##SFX(x))); /* NaN stays */\
    case GM__EW_MASK_POS:  return GM__V_SEL(pos, GM__V_SET1(1.0f), GM__V_ZERO());                 \
    default:               return GM__V_SEL(pos, GM__V_SET1(1.0f), f0); /* GM__EW_MASK_LEAKY */   \
    }                                                                                             \
}                                                                                                 \
static GM__TGT void gm__vunary_##SFX(int op, float *y, const float *x, size_t n, float f0, float f1) {\
    const GM__VF v0 = GM__V_SET1(f0), v1 = GM__V_SET1(f1);                                        \
    size_t i = 0;                                                                                 \
    for (; i + GM__VLANES <= n; i += GM__VLANES)                                                  \
        GM__V_STORE(y + i, gm__unary1_##SFX(op, GM__V_LOAD(x + i), v0, v1));                      \
    if (i < n) {                                                                                  \
        float t[GM__VLMAX];                                                                       \
        size_t j;                                                                                 \
        for (j = 0; j < (size_t)GM__VLANES; j++) t[j] = i + j < n ? x[i + j] : 0.0f;              \
        GM__V_STORE(t, gm__unary1_##SFX(op, GM__V_LOAD(t), v0, v1));                              \
        for (j = 0; i + j < n; j++) y[i + j] = t[j];                                              \
    }                                                                                             \
}                                                                                                 \
static GM__TGT GM__VF gm__fused1_##SFX(int op, GM__VF a, GM__VF b, GM__VF c, const GM__VF *f) {    \
    const GM__VF one = GM__V_SET1(1.0f);                                                          \
    GM__VF s, t;                                                                                  \
    switch (op) {                                                                                 \
    case GM__FU_NORM:      return GM__V_ADD(GM__V_MUL(GM__V_SUB(a, f[0]), f[1]), f[2]);           \
    case GM__FU_NORM_GRAD:                                                                        \
        return GM__V_ADD(GM__V_ADD(GM__V_MUL(f[0], a), GM__V_MUL(f[1], GM__V_SUB(b, f[2]))), f[3]);\
    case GM__FU_SILU_GRAD:                                                                        \
        s = gm__sigmoid1_##SFX(b);                                                                \
        return GM__V_MUL(GM__V_MUL(a, s), GM__V_ADD(one, GM__V_MUL(b, GM__V_SUB(one, s))));       \
    case GM__FU_GATE:      return GM__V_MUL(gm__tanh1_##SFX(a), gm__sigmoid1_##SFX(b));           \
    case GM__FU_GATE_DA:                                                                          \
        t = gm__tanh1_##SFX(b);                                                                   \
        return GM__V_MUL(GM__V_MUL(a, gm__sigmoid1_##SFX(c)), GM__V_SUB(one, GM__V_MUL(t, t)));   \
    case GM__FU_NORM_SILU:                                                                        \
        t = GM__V_ADD(GM__V_MUL(GM__V_SUB(a, f[0]), f[1]), f[2]);                                 \
        return GM__V_MUL(t, gm__sigmoid1_##SFX(t));                                               \
    case GM__FU_NORM_SILU_GRAD:                                                                   \
        t = GM__V_ADD(GM__V_MUL(GM__V_SUB(b, f[0]), f[1]), f[2]);                                 \
        s = gm__sigmoid1_##SFX(t);                                                                \
        return GM__V_MUL(GM__V_MUL(a, s), GM__V_ADD(one, GM__V_MUL(t, GM__V_SUB(one, s))));       \
    default:               /* GM__FU_GATE_DB */                                                   \
        s = gm__sigmoid1_##SFX(c);                                                                \
        return GM__V_MUL(GM__V_MUL(a, gm__tanh1_##SFX(b)), GM__V_MUL(s, GM__V_SUB(one, s)));      \
    }                                                                                             \
}                                                                                                 \
/* y = fused(op) over n floats; b and c may be NULL when op does not read them. */                \
static GM__TGT void gm__vfused_##SFX(int op, float *y, const float *a, const float *b,            \
                                     const float *c, size_t n, const float *f) {                  \
    GM__VF v[4];                                                                                  \
    size_t i = 0, j;                                                                              \
    for (j = 0; j < 4; j++) v[j] = GM__V_SET1(f[j]);                                              \
    if (!b) b = a;                                                                                \
    if (!c) c = a;                                                                                \
    for (; i + GM__VLANES <= n; i += GM__VLANES)                                                  \
        GM__V_STORE(y + i, gm__fused1_##SFX(op, GM__V_LOAD(a + i), GM__V_LOAD(b + i), GM__V_LOAD(c + i), v));\
    if (i < n) {                                                                                  \
        float ta[GM__VLMAX], tb[GM__VLMAX], tc[GM__VLMAX];                                        \
        for (j = 0; j < (size_t)GM__VLANES; j++) {                                                \
            ta[j] = i + j < n ? a[i + j] : 0.0f;                                                  \
            tb[j] = i + j < n ? b[i + j] : 0.0f;                                                  \
            tc[j] = i + j < n ? c[i + j] : 0.0f;                                                  \
        }                                                                                         \
        GM__V_STORE(ta, gm__fused1_##SFX(op, GM__V_LOAD(ta), GM__V_LOAD(tb), GM__V_LOAD(tc), v)); \
        for (j = 0; i + j < n; j++) y[i + j] = ta[j];                                             \
    }                                                                                             \
}                                                                                                 \
/* Adam/AdamW on one vector of weights; c: see gm__optim_coef. */                                  \
static GM__TGT void gm__adam1_##SFX(float *w, const float *g, float *m, float *v, const float *c) {\
    const GM__VF gi = GM__V_FMA(GM__V_LOAD(g), GM__V_SET1(c[0]), GM__V_MUL(GM__V_SET1(c[1]), GM__V_LOAD(w)));\
    const GM__VF mi = GM__V_FMA(GM__V_LOAD(m), GM__V_SET1(c[3]), GM__V_MUL(gi, GM__V_SET1(c[4])));  \
    const GM__VF vi = GM__V_FMA(GM__V_LOAD(v), GM__V_SET1(c[5]), GM__V_MUL(GM__V_MUL(gi, gi), GM__V_SET1(c[6])));\
    const GM__VF den = GM__V_FMA(GM__V_SQRT(vi), GM__V_SET1(c[8]), GM__V_SET1(c[9]));           \
    const GM__VF wi = GM__V_SUB(GM__V_MUL(GM__V_LOAD(w), GM__V_SET1(c[2])),                      \
                                GM__V_DIV(GM__V_MUL(mi, GM__V_SET1(c[7])), den));                \
    GM__V_STORE(m, mi); GM__V_STORE(v, vi); GM__V_STORE(w, wi);                                   \
}                                                                                                 \
/* RMSProp (with optional momentum: c[6] = 0 makes m the plain step). */                          \
static GM__TGT void gm__rmsprop1_##SFX(float *w, const float *g, float *m, float *v, const float *c) {\
    const GM__VF gi = GM__V_FMA(GM__V_LOAD(g), GM__V_SET1(c[0]), GM__V_MUL(GM__V_SET1(c[1]), GM__V_LOAD(w)));\
    const GM__VF vi = GM__V_FMA(GM__V_LOAD(v), GM__V_SET1(c[2]), GM__V_MUL(GM__V_MUL(gi, gi), GM__V_SET1(c[3])));\
    const GM__VF q = GM__V_DIV(gi, GM__V_ADD(GM__V_SQRT(vi), GM__V_SET1(c[5])));                  \
    const GM__VF mi = GM__V_FMA(GM__V_LOAD(m), GM__V_SET1(c[6]), q);                              \
    GM__V_STORE(v, vi); GM__V_STORE(m, mi);                                                       \
    GM__V_STORE(w, GM__V_SUB(GM__V_LOAD(w), GM__V_MUL(mi, GM__V_SET1(c[4]))));                     \
}                                                                                                 \
GM__DEFINE_OPTIM(SFX, adam)                                                                       \
GM__DEFINE_OPTIM(SFX, rmsprop)                                                                    \
GM__DEFINE_VMAP(SFX, exp)                                                                         \
GM__DEFINE_VMAP(SFX, log)                                                                         \
GM__DEFINE_VMAP(SFX, tanh)                                                                        \
GM__DEFINE_VMAP(SFX, sigmoid)                                                                     \
GM__DEFINE_VMAP(SFX, expm1)                                                                       \
GM__DEFINE_VMAP(SFX, softplus)                                                                    \
static const gm__path_ops gm__ops_##SFX = {                                                       \
    GM__MR, GM__NV * GM__VLANES, gm__ukernel_##SFX, gm__packbn_##SFX, gm__packbt_##SFX,           \
    gm__packa_##SFX, gm__packat_##SFX, gm__transpose_##SFX,                                       \
    gm__vexp_##SFX, gm__vlog_##SFX, gm__vtanh_##SFX, gm__vsigmoid_##SFX,                          \
    gm__vexpm1_##SFX, gm__vsoftplus_##SFX, gm__vbinary_##SFX, gm__vunary_##SFX,                   \
    gm__vfused_##SFX, gm__adam_##SFX, gm__rmsprop_##SFX};

/* y[i] = f(x[i]); the tail goes through a padded vector so every element sees the same code. */
#define GM__DEFINE_VMAP(SFX, F)                                                                   \
static GM__TGT void gm__v##F##_##SFX(float *y, const float *x, size_t n) {                        \
    size_t i = 0;                                                                                 \
    for (; i + GM__VLANES <= n; i += GM__VLANES)                                                  \
        GM__V_STORE(y + i, gm__##F##1_##SFX(GM__V_LOAD(x + i)));                                  \
    if (i < n) {                                                                                  \
        float t[GM__VLMAX];                                                                       \
        size_t j;                                                                                 \
        for (j = 0; j < (size_t)GM__VLANES; j++) t[j] = i + j < n ? x[i + j] : 0.0f;              \
        GM__V_STORE(t, gm__##F##1_##SFX(GM__V_LOAD(t)));                                          \
        for (j = 0; i + j < n; j++) y[i + j] = t[j];                                              \
    }                                                                                             \
}

/* An optimizer update over n floats: the vector body, then the tail through padded copies so
 * every element sees the same arithmetic. */
#define GM__DEFINE_OPTIM(SFX, F)                                                                  \
static GM__TGT void gm__##F##_##SFX(float *w, const float *g, float *m, float *v, size_t n,       \
                                    const float *c) {                                             \
    size_t i = 0, j;                                                                              \
    for (; i + GM__VLANES <= n; i += GM__VLANES) gm__##F##1_##SFX(w + i, g + i, m + i, v + i, c); \
    if (i < n) {                                                                                  \
        float tw[GM__VLMAX], tg[GM__VLMAX], tm[GM__VLMAX], tv[GM__VLMAX];                         \
        for (j = 0; j < (size_t)GM__VLANES; j++) {                                                \
            int in = i + j < n;                                                                   \
            tw[j] = in ? w[i + j] : 0.0f; tg[j] = in ? g[i + j] : 0.0f;                           \
            tm[j] = in ? m[i + j] : 0.0f; tv[j] = in ? v[i + j] : 0.0f;                           \
        }                                                                                         \
        gm__##F##1_##SFX(tw, tg, tm, tv, c);                                                      \
        for (j = 0; i + j < n; j++) { w[i + j] = tw[j]; m[i + j] = tm[j]; v[i + j] = tv[j]; }     \
    }                                                                                             \
}

typedef void (*gm__optim_fn)(float *w, const float *g, float *m, float *v, size_t n, const float *c);
typedef void (*gm__ukernel_fn)(int kc, const float *a, const float *b, float *c, int ldc, float alpha,
                               float beta);
typedef void (*gm__packb_fn)(int kc, const float *b, int ldb, int npan, float *dst);
typedef void (*gm__packt_fn)(int kc, const float *src, int ld, int n, float *dst);
typedef void (*gm__transpose_fn)(const float *src, int sld, float *dst, int dld, int rows, int cols);
typedef void (*gm__vmap_fn)(float *y, const float *x, size_t n);
typedef void (*gm__vbinary_fn)(int op, float *y, const float *a, long sa, const float *b, long sb, int n);
typedef void (*gm__vunary_fn)(int op, float *y, const float *x, size_t n, float f0, float f1);
typedef void (*gm__vfused_fn)(int op, float *y, const float *a, const float *b, const float *c, size_t n, const float *f);
typedef struct {
    int mr, nr;                 /* micro-tile shape */
    gm__ukernel_fn ukernel;
    gm__packb_fn packbn;        /* full-width, non-transposed B panels */
    gm__packt_fn packbt;        /* transposed B panel (n = columns present, rest zero) */
    gm__packt_fn packa;         /* non-transposed A micro-panel (n = rows present, rest zero) */
    gm__packt_fn packat;        /* transposed A micro-panel (n = rows present, rest zero) */
    gm__transpose_fn transpose; /* a rows x cols block, any strides */
    gm__vmap_fn vexp, vlog, vtanh, vsigmoid, vexpm1, vsoftplus;
    gm__vbinary_fn vbinary;     /* elementwise rows, GM__EW_ADD..DIV */
    gm__vunary_fn vunary;       /* cheap unary maps, GM__EW_AFFINE..MASK_LEAKY */
    gm__vfused_fn vfused;       /* fused maps of up to three inputs, GM__FU_NORM..GATE_DB */
    gm__optim_fn adam, rmsprop; /* coefficient layouts: gm__optim_coef in the optimizer section */
} gm__path_ops;

/* ---- scalar path: plain C floats, the reference ---- */
#define GM__VF float
#define GM__VU gm__u32
#define GM__VM int
#define GM__VLANES 1
#define GM__V_LOAD(p) (*(p))
#define GM__V_STORE(p, v) (*(p) = (v))
#define GM__V_SET1(x) ((float)(x))
#define GM__V_ZERO() 0.0f
#define GM__V_ADD(a, b) ((a) + (b))
#define GM__V_SUB(a, b) ((a) - (b))
#define GM__V_MUL(a, b) ((a) * (b))
#define GM__V_DIV(a, b) ((a) / (b))
#define GM__V_SQRT(a) sqrtf(a)
#define GM__V_FMA(a, b, c) ((a) * (b) + (c))
#define GM__V_MIN(a, b) ((a) < (b) ? (a) : (b))
#define GM__V_MAX(a, b) ((a) > (b) ? (a) : (b))
#define GM__V_LT(a, b) ((a) < (b))
#define GM__V_GE(a, b) ((a) >= (b))
#define GM__V_EQ(a, b) ((a) == (b))
#define GM__V_SEL(m, a, b) ((m) ? (a) : (b))
#define GM__V_ASU(x) gm__f2u(x)
#define GM__V_ASF(u) gm__u2f(u)
#define GM__V_UADD(a, b) ((gm__u32)((a) + (b)))
#define GM__V_USUB(a, b) ((gm__u32)((a) - (b)))
#define GM__V_UAND(a, b) ((a) & (b))
#define GM__V_UOR(a, b) ((a) | (b))
#define GM__V_USHL(a, n) ((gm__u32)((a) << (n)))
#define GM__V_USHR(a, n) ((a) >> (n))
#define GM__V_USET1(x) ((gm__u32)(x))
#define GM__V_U2F(u) ((float)(gm__i32)(u))
#define GM__MR 4
#define GM__NV 4
#define GM__ROWS GM__R4
#define GM__COLS GM__C4
#define GM__TGT
/* GM__V_TR(s, ls, n, d, ld): d[c*ld + r] = r < n ? s[r*ls + c] : 0 for r, c < VLANES (rows >= n
 * are not read; all VLANES floats of each d row are written). */
static GM__INLINE void gm__tr_scalar(const float *s, int ls, int n, float *d, int ld) {
    (void)ls; (void)ld;
    d[0] = n > 0 ? s[0] : 0.0f;
}
#define GM__V_TR gm__tr_scalar
GM__DEFINE_PATH(scalar)
#undef GM__VF
#undef GM__VU
#undef GM__VM
#undef GM__VLANES
#undef GM__V_LOAD
#undef GM__V_STORE
#undef GM__V_SET1
#undef GM__V_ZERO
#undef GM__V_ADD
#undef GM__V_SUB
#undef GM__V_MUL
#undef GM__V_DIV
#undef GM__V_SQRT
#undef GM__V_FMA
#undef GM__V_MIN
#undef GM__V_MAX
#undef GM__V_LT
#undef GM__V_GE
#undef GM__V_EQ
#undef GM__V_SEL
#undef GM__V_ASU
#undef GM__V_ASF
#undef GM__V_UADD
#undef GM__V_USUB
#undef GM__V_UAND
#undef GM__V_UOR
#undef GM__V_USHL
#undef GM__V_USHR
#undef GM__V_USET1
#undef GM__V_U2F
#undef GM__MR
#undef GM__NV
#undef GM__ROWS
#undef GM__COLS
#undef GM__TGT
#undef GM__V_TR

#if defined(GM__X86)
/* ---- SSE2 path ---- */
/* 4 lanes, no FMA (the FMA macro is mul+add, two roundings), 6x8 tile = 12 of 16 xmm. */
#define GM__VF __m128
#define GM__VU __m128i
#define GM__VM __m128
#define GM__VLANES 4
#define GM__V_LOAD(p) _mm_loadu_ps(p)
#define GM__V_STORE(p, v) _mm_storeu_ps((p), (v))
#define GM__V_SET1(x) _mm_set1_ps(x)
#define GM__V_ZERO() _mm_setzero_ps()
#define GM__V_ADD(a, b) _mm_add_ps((a), (b))
#define GM__V_SUB(a, b) _mm_sub_ps((a), (b))
#define GM__V_MUL(a, b) _mm_mul_ps((a), (b))
#define GM__V_DIV(a, b) _mm_div_ps((a), (b))
#define GM__V_SQRT(a) _mm_sqrt_ps(a)
#define GM__V_FMA(a, b, c) _mm_add_ps(_mm_mul_ps((a), (b)), (c))
#define GM__V_MIN(a, b) _mm_min_ps((a), (b))
#define GM__V_MAX(a, b) _mm_max_ps((a), (b))
#define GM__V_LT(a, b) _mm_cmplt_ps((a), (b))
#define GM__V_GE(a, b) _mm_cmpge_ps((a), (b))
#define GM__V_EQ(a, b) _mm_cmpeq_ps((a), (b))
#define GM__V_SEL(m, a, b) _mm_or_ps(_mm_and_ps((m), (a)), _mm_andnot_ps((m), (b)))
#define GM__V_ASU(x) _mm_castps_si128(x)
#define GM__V_ASF(u) _mm_castsi128_ps(u)
#define GM__V_UADD(a, b) _mm_add_epi32((a), (b))
#define GM__V_USUB(a, b) _mm_sub_epi32((a), (b))
#define GM__V_UAND(a, b) _mm_and_si128((a), (b))
#define GM__V_UOR(a, b) _mm_or_si128((a), (b))
#define GM__V_USHL(a, n) _mm_slli_epi32((a), (n))
#define GM__V_USHR(a, n) _mm_srli_epi32((a), (n))
#define GM__V_USET1(x) _mm_set1_epi32((int)(gm__u32)(x))
#define GM__V_U2F(u) _mm_cvtepi32_ps(u)
#define GM__MR 6
#define GM__NV 2
#define GM__ROWS GM__R6
#define GM__COLS GM__C2
#define GM__TGT __attribute__((target("sse2")))
#define GM__TR_LD(x) const GM__VF r##x = (x) < n ? GM__V_LOAD(s + (size_t)(x) * ls) : GM__V_ZERO();
static GM__TGT GM__INLINE void gm__tr_sse2(const float *s, int ls, int n, float *d, int ld) {
    GM__R4(GM__TR_LD)
    const __m128 t0 = _mm_unpacklo_ps(r0, r1), t1 = _mm_unpackhi_ps(r0, r1);
    const __m128 t2 = _mm_unpacklo_ps(r2, r3), t3 = _mm_unpackhi_ps(r2, r3);
    _mm_storeu_ps(d, _mm_movelh_ps(t0, t2));
    _mm_storeu_ps(d + ld, _mm_movehl_ps(t2, t0));
    _mm_storeu_ps(d + 2 * ld, _mm_movelh_ps(t1, t3));
    _mm_storeu_ps(d + 3 * ld, _mm_movehl_ps(t3, t1));
}
#define GM__V_TR gm__tr_sse2
GM__DEFINE_PATH(sse2)
#undef GM__VF
#undef GM__VU
#undef GM__VM
#undef GM__VLANES
#undef GM__V_LOAD
#undef GM__V_STORE
#undef GM__V_SET1
#undef GM__V_ZERO
#undef GM__V_ADD
#undef GM__V_SUB
#undef GM__V_MUL
#undef GM__V_DIV
#undef GM__V_SQRT
#undef GM__V_FMA
#undef GM__V_MIN
#undef GM__V_MAX
#undef GM__V_LT
#undef GM__V_GE
#undef GM__V_EQ
#undef GM__V_SEL
#undef GM__V_ASU
#undef GM__V_ASF
#undef GM__V_UADD
#undef GM__V_USUB
#undef GM__V_UAND
#undef GM__V_UOR
#undef GM__V_USHL
#undef GM__V_USHR
#undef GM__V_USET1
#undef GM__V_U2F
#undef GM__MR
#undef GM__NV
#undef GM__ROWS
#undef GM__COLS
#undef GM__TGT
#undef GM__V_TR

/* ---- AVX2 path ---- */
/* 8 lanes with FMA, 6x16 tile = 12 of 16 ymm. */
#define GM__VF __m256
#define GM__VU __m256i
#define GM__VM __m256
#define GM__VLANES 8
#define GM__V_LOAD(p) _mm256_loadu_ps(p)
#define GM__V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define GM__V_SET1(x) _mm256_set1_ps(x)
#define GM__V_ZERO() _mm256_setzero_ps()
#define GM__V_ADD(a, b) _mm256_add_ps((a), (b))
#define GM__V_SUB(a, b) _mm256_sub_ps((a), (b))
#define GM__V_MUL(a, b) _mm256_mul_ps((a), (b))
#define GM__V_DIV(a, b) _mm256_div_ps((a), (b))
#define GM__V_SQRT(a) _mm256_sqrt_ps(a)
#define GM__V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define GM__V_MIN(a, b) _mm256_min_ps((a), (b))
#define GM__V_MAX(a, b) _mm256_max_ps((a), (b))
#define GM__V_LT(a, b) _mm256_cmp_ps((a), (b), _CMP_LT_OQ)
#define GM__V_GE(a, b) _mm256_cmp_ps((a), (b), _CMP_GE_OQ)
#define GM__V_EQ(a, b) _mm256_cmp_ps((a), (b), _CMP_EQ_OQ)
#define GM__V_SEL(m, a, b) _mm256_blendv_ps((b), (a), (m))
#define GM__V_ASU(x) _mm256_castps_si256(x)
#define GM__V_ASF(u) _mm256_castsi256_ps(u)
#define GM__V_UADD(a, b) _mm256_add_epi32((a), (b))
#define GM__V_USUB(a, b) _mm256_sub_epi32((a), (b))
#define GM__V_UAND(a, b) _mm256_and_si256((a), (b))
#define GM__V_UOR(a, b) _mm256_or_si256((a), (b))
#define GM__V_USHL(a, n) _mm256_slli_epi32((a), (n))
#define GM__V_USHR(a, n) _mm256_srli_epi32((a), (n))
#define GM__V_USET1(x) _mm256_set1_epi32((int)(gm__u32)(x))
#define GM__V_U2F(u) _mm256_cvtepi32_ps(u)
#define GM__MR 6
#define GM__NV 2
#define GM__ROWS GM__R6
#define GM__COLS GM__C2
#define GM__TGT __attribute__((target("avx2,fma")))
static GM__TGT GM__INLINE void gm__tr_avx2(const float *s, int ls, int n, float *d, int ld) {
    GM__R8(GM__TR_LD)
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d + ld, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d + 2 * ld, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d + 3 * ld, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d + 4 * ld, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d + 5 * ld, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d + 6 * ld, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d + 7 * ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#define GM__V_TR gm__tr_avx2
GM__DEFINE_PATH(avx2)
#undef GM__VF
#undef GM__VU
#undef GM__VM
#undef GM__VLANES
#undef GM__V_LOAD
#undef GM__V_STORE
#undef GM__V_SET1
#undef GM__V_ZERO
#undef GM__V_ADD
#undef GM__V_SUB
#undef GM__V_MUL
#undef GM__V_DIV
#undef GM__V_SQRT
#undef GM__V_FMA
#undef GM__V_MIN
#undef GM__V_MAX
#undef GM__V_LT
#undef GM__V_GE
#undef GM__V_EQ
#undef GM__V_SEL
#undef GM__V_ASU
#undef GM__V_ASF
#undef GM__V_UADD
#undef GM__V_USUB
#undef GM__V_UAND
#undef GM__V_UOR
#undef GM__V_USHL
#undef GM__V_USHR
#undef GM__V_USET1
#undef GM__V_U2F
#undef GM__MR
#undef GM__NV
#undef GM__ROWS
#undef GM__COLS
#undef GM__TGT
#undef GM__V_TR

/* ---- AVX-512 path ---- */
/* 16 lanes, 10x32 tile = 20 of 32 zmm accumulators (measured faster than 12 or 14 on this
   Zen-class core, and 100-row batches split into whole panels). */
#define GM__VF __m512
#define GM__VU __m512i
#define GM__VM __mmask16
#define GM__VLANES 16
#define GM__V_LOAD(p) _mm512_loadu_ps(p)
#define GM__V_STORE(p, v) _mm512_storeu_ps((p), (v))
#define GM__V_SET1(x) _mm512_set1_ps(x)
#define GM__V_ZERO() _mm512_setzero_ps()
#define GM__V_ADD(a, b) _mm512_add_ps((a), (b))
#define GM__V_SUB(a, b) _mm512_sub_ps((a), (b))
#define GM__V_MUL(a, b) _mm512_mul_ps((a), (b))
#define GM__V_DIV(a, b) _mm512_div_ps((a), (b))
#define GM__V_SQRT(a) _mm512_maskz_sqrt_ps((__mmask16)0xffff, (a))
#define GM__V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define GM__V_MIN(a, b) _mm512_maskz_min_ps((__mmask16)0xffff, (a), (b))
#define GM__V_MAX(a, b) _mm512_maskz_max_ps((__mmask16)0xffff, (a), (b))
#define GM__V_LT(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_LT_OQ)
#define GM__V_GE(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_GE_OQ)
#define GM__V_EQ(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_EQ_OQ)
#define GM__V_SEL(m, a, b) _mm512_mask_blend_ps((m), (b), (a))
#define GM__V_ASU(x) _mm512_castps_si512(x)
#define GM__V_ASF(u) _mm512_castsi512_ps(u)
#define GM__V_UADD(a, b) _mm512_add_epi32((a), (b))
#define GM__V_USUB(a, b) _mm512_sub_epi32((a), (b))
#define GM__V_UAND(a, b) _mm512_and_si512((a), (b))
#define GM__V_UOR(a, b) _mm512_or_si512((a), (b))
#define GM__V_USHL(a, n) _mm512_maskz_slli_epi32((__mmask16)0xffff, (a), (n))
#define GM__V_USHR(a, n) _mm512_maskz_srli_epi32((__mmask16)0xffff, (a), (n))
#define GM__V_USET1(x) _mm512_set1_epi32((int)(gm__u32)(x))
#define GM__V_U2F(u) _mm512_maskz_cvtepi32_ps((__mmask16)0xffff, (u))
/* (the maskz forms dodge a g++-12 -Wuninitialized false positive in the plain intrinsics) */
#ifndef GM__AVX512_MR
#define GM__AVX512_MR 10
#endif
#define GM__MR GM__AVX512_MR
#define GM__NV 2
#define GM__ROWS GM__CAT(GM__R, GM__AVX512_MR)
#define GM__COLS GM__C2
#define GM__TGT __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
/* 16x16: 4x4 transposes inside 128-bit lanes, then two rounds of 128-bit lane shuffles (maskz
 * forms: see the note on g++-12 above) */
#define GM__M16 ((__mmask16)0xffff)
#define GM__TR_L(a, b, imm) _mm512_maskz_shuffle_f32x4(GM__M16, (a), (b), (imm)) /* 128-bit lanes */
#define GM__TR_UNP(x, y) const __m512 t##x = _mm512_maskz_unpacklo_ps(GM__M16, r##x, r##y), \
                                      t##y = _mm512_maskz_unpackhi_ps(GM__M16, r##x, r##y);
static GM__TGT GM__INLINE void gm__tr_avx512(const float *s, int ls, int n, float *d, int ld) {
    GM__R16(GM__TR_LD)
    GM__TR_UNP(0, 1) GM__TR_UNP(2, 3) GM__TR_UNP(4, 5) GM__TR_UNP(6, 7)
    GM__TR_UNP(8, 9) GM__TR_UNP(10, 11) GM__TR_UNP(12, 13) GM__TR_UNP(14, 15)
    /* u(4q+m): column m of each 128-bit lane, rows 4q..4q+3 */
    const __m512 u0 = _mm512_shuffle_ps(t0, t2, 0x44), u1 = _mm512_shuffle_ps(t0, t2, 0xee);
    const __m512 u2 = _mm512_shuffle_ps(t1, t3, 0x44), u3 = _mm512_shuffle_ps(t1, t3, 0xee);
    const __m512 u4 = _mm512_shuffle_ps(t4, t6, 0x44), u5 = _mm512_shuffle_ps(t4, t6, 0xee);
    const __m512 u6 = _mm512_shuffle_ps(t5, t7, 0x44), u7 = _mm512_shuffle_ps(t5, t7, 0xee);
    const __m512 u8 = _mm512_shuffle_ps(t8, t10, 0x44), u9 = _mm512_shuffle_ps(t8, t10, 0xee);
    const __m512 u10 = _mm512_shuffle_ps(t9, t11, 0x44), u11 = _mm512_shuffle_ps(t9, t11, 0xee);
    const __m512 u12 = _mm512_shuffle_ps(t12, t14, 0x44), u13 = _mm512_shuffle_ps(t12, t14, 0xee);
    const __m512 u14 = _mm512_shuffle_ps(t13, t15, 0x44), u15 = _mm512_shuffle_ps(t13, t15, 0xee);
    /* v(m) = lanes 0,2 of u(m), u(4+m); v(4+m) = lanes 1,3; same for rows 8..15 in v(8..15) */
    const __m512 v0 = GM__TR_L(u0, u4, 0x88), v4 = GM__TR_L(u0, u4, 0xdd);
    const __m512 v1 = GM__TR_L(u1, u5, 0x88), v5 = GM__TR_L(u1, u5, 0xdd);
    const __m512 v2 = GM__TR_L(u2, u6, 0x88), v6 = GM__TR_L(u2, u6, 0xdd);
    const __m512 v3 = GM__TR_L(u3, u7, 0x88), v7 = GM__TR_L(u3, u7, 0xdd);
    const __m512 v8 = GM__TR_L(u8, u12, 0x88), v12 = GM__TR_L(u8, u12, 0xdd);
    const __m512 v9 = GM__TR_L(u9, u13, 0x88), v13 = GM__TR_L(u9, u13, 0xdd);
    const __m512 v10 = GM__TR_L(u10, u14, 0x88), v14 = GM__TR_L(u10, u14, 0xdd);
    const __m512 v11 = GM__TR_L(u11, u15, 0x88), v15 = GM__TR_L(u11, u15, 0xdd);
    _mm512_storeu_ps(d, GM__TR_L(v0, v8, 0x88));
    _mm512_storeu_ps(d + ld, GM__TR_L(v1, v9, 0x88));
    _mm512_storeu_ps(d + 2 * ld, GM__TR_L(v2, v10, 0x88));
    _mm512_storeu_ps(d + 3 * ld, GM__TR_L(v3, v11, 0x88));
    _mm512_storeu_ps(d + 4 * ld, GM__TR_L(v4, v12, 0x88));
    _mm512_storeu_ps(d + 5 * ld, GM__TR_L(v5, v13, 0x88));
    _mm512_storeu_ps(d + 6 * ld, GM__TR_L(v6, v14, 0x88));
    _mm512_storeu_ps(d + 7 * ld, GM__TR_L(v7, v15, 0x88));
    _mm512_storeu_ps(d + 8 * ld, GM__TR_L(v0, v8, 0xdd));
    _mm512_storeu_ps(d + 9 * ld, GM__TR_L(v1, v9, 0xdd));
    _mm512_storeu_ps(d + 10 * ld, GM__TR_L(v2, v10, 0xdd));
    _mm512_storeu_ps(d + 11 * ld, GM__TR_L(v3, v11, 0xdd));
    _mm512_storeu_ps(d + 12 * ld, GM__TR_L(v4, v12, 0xdd));
    _mm512_storeu_ps(d + 13 * ld, GM__TR_L(v5, v13, 0xdd));
    _mm512_storeu_ps(d + 14 * ld, GM__TR_L(v6, v14, 0xdd));
    _mm512_storeu_ps(d + 15 * ld, GM__TR_L(v7, v15, 0xdd));
}
#undef GM__TR_UNP
#undef GM__M16
#undef GM__TR_L
#define GM__V_TR gm__tr_avx512
GM__DEFINE_PATH(avx512)
#undef GM__VF
#undef GM__VU
#undef GM__VM
#undef GM__VLANES
#undef GM__V_LOAD
#undef GM__V_STORE
#undef GM__V_SET1
#undef GM__V_ZERO
#undef GM__V_ADD
#undef GM__V_SUB
#undef GM__V_MUL
#undef GM__V_DIV
#undef GM__V_SQRT
#undef GM__V_FMA
#undef GM__V_MIN
#undef GM__V_MAX
#undef GM__V_LT
#undef GM__V_GE
#undef GM__V_EQ
#undef GM__V_SEL
#undef GM__V_ASU
#undef GM__V_ASF
#undef GM__V_UADD
#undef GM__V_USUB
#undef GM__V_UAND
#undef GM__V_UOR
#undef GM__V_USHL
#undef GM__V_USHR
#undef GM__V_USET1
#undef GM__V_U2F
#undef GM__MR
#undef GM__NV
#undef GM__ROWS
#undef GM__COLS
#undef GM__TGT
#undef GM__V_TR
#undef GM__TR_LD
#endif /* GM__X86 */

#if defined(GM__NEON)
/* ---- NEON path (aarch64) ---- */
/* 4 lanes, fused FMA, 8x8 tile = 16 of 32 q registers. */
#define GM__VF float32x4_t
#define GM__VU uint32x4_t
#define GM__VM uint32x4_t
#define GM__VLANES 4
#define GM__V_LOAD(p) vld1q_f32(p)
#define GM__V_STORE(p, v) vst1q_f32((p), (v))
#define GM__V_SET1(x) vdupq_n_f32(x)
#define GM__V_ZERO() vdupq_n_f32(0.0f)
#define GM__V_ADD(a, b) vaddq_f32((a), (b))
#define GM__V_SUB(a, b) vsubq_f32((a), (b))
#define GM__V_MUL(a, b) vmulq_f32((a), (b))
#define GM__V_DIV(a, b) vdivq_f32((a), (b))
#define GM__V_SQRT(a) vsqrtq_f32(a)
#define GM__V_FMA(a, b, c) vfmaq_f32((c), (a), (b))
#define GM__V_MIN(a, b) vminq_f32((a), (b))
#define GM__V_MAX(a, b) vmaxq_f32((a), (b))
#define GM__V_LT(a, b) vcltq_f32((a), (b))
#define GM__V_GE(a, b) vcgeq_f32((a), (b))
#define GM__V_EQ(a, b) vceqq_f32((a), (b))
#define GM__V_SEL(m, a, b) vbslq_f32((m), (a), (b))
#define GM__V_ASU(x) vreinterpretq_u32_f32(x)
#define GM__V_ASF(u) vreinterpretq_f32_u32(u)
#define GM__V_UADD(a, b) vaddq_u32((a), (b))
#define GM__V_USUB(a, b) vsubq_u32((a), (b))
#define GM__V_UAND(a, b) vandq_u32((a), (b))
#define GM__V_UOR(a, b) vorrq_u32((a), (b))
#define GM__V_USHL(a, n) vshlq_n_u32((a), (n))
#define GM__V_USHR(a, n) vshrq_n_u32((a), (n))
#define GM__V_USET1(x) vdupq_n_u32((gm__u32)(x))
#define GM__V_U2F(u) vcvtq_f32_s32(vreinterpretq_s32_u32(u))
#define GM__MR 8
#define GM__NV 2
#define GM__ROWS GM__R8
#define GM__COLS GM__C2
#define GM__TGT
#define GM__TR_LD(x) const GM__VF r##x = (x) < n ? GM__V_LOAD(s + (size_t)(x) * ls) : GM__V_ZERO();
static GM__INLINE void gm__tr_neon(const float *s, int ls, int n, float *d, int ld) {
    GM__R4(GM__TR_LD)
    const float32x4x2_t p = vtrnq_f32(r0, r1), q = vtrnq_f32(r2, r3);
    vst1q_f32(d, vcombine_f32(vget_low_f32(p.val[0]), vget_low_f32(q.val[0])));
    vst1q_f32(d + ld, vcombine_f32(vget_low_f32(p.val[1]), vget_low_f32(q.val[1])));
    vst1q_f32(d + 2 * ld, vcombine_f32(vget_high_f32(p.val[0]), vget_high_f32(q.val[0])));
    vst1q_f32(d + 3 * ld, vcombine_f32(vget_high_f32(p.val[1]), vget_high_f32(q.val[1])));
}
#undef GM__TR_LD
#define GM__V_TR gm__tr_neon
GM__DEFINE_PATH(neon)
#undef GM__VF
#undef GM__VU
#undef GM__VM
#undef GM__VLANES
#undef GM__V_LOAD
#undef GM__V_STORE
#undef GM__V_SET1
#undef GM__V_ZERO
#undef GM__V_ADD
#undef GM__V_SUB
#undef GM__V_MUL
#undef GM__V_DIV
#undef GM__V_SQRT
#undef GM__V_FMA
#undef GM__V_MIN
#undef GM__V_MAX
#undef GM__V_LT
#undef GM__V_GE
#undef GM__V_EQ
#undef GM__V_SEL
#undef GM__V_ASU
#undef GM__V_ASF
#undef GM__V_UADD
#undef GM__V_USUB
#undef GM__V_UAND
#undef GM__V_UOR
#undef GM__V_USHL
#undef GM__V_USHR
#undef GM__V_USET1
#undef GM__V_U2F
#undef GM__MR
#undef GM__NV
#undef GM__ROWS
#undef GM__COLS
#undef GM__TGT
#undef GM__V_TR
#endif /* GM__NEON */

/* ---- path selection ---- */

static int gm__path_cur = -1; /* -1: not chosen yet; accessed atomically */

static const gm__path_ops *gm__path_table(int path) {
    switch (path) {
    case GM_PATH_SCALAR: return &gm__ops_scalar;
#if defined(GM__X86)
    case GM_PATH_SSE2: return &gm__ops_sse2;
    case GM_PATH_AVX2: return &gm__ops_avx2;
    case GM_PATH_AVX512: return &gm__ops_avx512;
#endif
#if defined(GM__NEON)
    case GM_PATH_NEON: return &gm__ops_neon;
#endif
    default: return NULL;
    }
}

GMDEF int gm_simd_supported(int path) {
    if (!gm__path_table(path)) return 0;
#if defined(GM__X86)
    __builtin_cpu_init();
    /* __builtin_cpu_supports also checks that the OS saves the wider registers (XGETBV). */
    if (path == GM_PATH_SSE2) return __builtin_cpu_supports("sse2") ? 1 : 0;
    if (path == GM_PATH_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (path == GM_PATH_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("fma");
#endif
    return 1; /* scalar, or NEON which every aarch64 CPU has */
}

GMDEF const char *gm_simd_name(int path) {
    static const char *const names[GM_PATH_COUNT] = {"scalar", "sse2", "avx2", "avx512", "neon"};
    return path >= 0 && path < GM_PATH_COUNT ? names[path] : "?";
}

GMDEF int gm_simd_path(void) {
    int p = GM__ALOAD(&gm__path_cur);
    if (p < 0) {
        for (p = GM_PATH_COUNT - 1; p > 0; p--)
            if (gm_simd_supported(p)) break;
        GM__ASTORE(&gm__path_cur, p); /* racing first calls all store the same value */
    }
    return p;
}

GMDEF int gm_simd_force(int path) {
    if (!gm_simd_supported(path)) return -1;
    GM__ASTORE(&gm__path_cur, path);
    return 0;
}

static const gm__path_ops *gm__ops(void) { return gm__path_table(gm_simd_path()); }

GMDEF void gm_flush_denormals(void) {
#if defined(GM__HAVE_MXCSR)
    _mm_setcsr(_mm_getcsr() | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
#elif defined(GM__GNUC) && defined(__aarch64__)
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    fpcr |= (uint64_t)1 << 24; /* FZ: flush denormal inputs and outputs */
    __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr));
#endif
}

/* ---- thread pool ---- */
/* One job at a time: the caller publishes (fn, ctx, ntasks), bumps each participating worker's
 * `go` word, runs tasks itself, then waits until every participant has written `done`. Tasks are
 * handed out by an atomic counter. Every participant checks in for every job, so a slow worker can
 * never pick up a stale job. Workers spin briefly (training issues thousands of small GEMMs per
 * second), then sleep on a condition variable. A job that starts while the pool is busy (another
 * user thread, or a task calling parallel_for) runs serially in its own thread. */

static int gm__nthreads_want = 0; /* 0 = all cores */

#if !defined(GM__SERIAL)
static int gm__ncores(void) {
    static int cached = 0; /* sysconf reads /sys on every call: far too slow per GEMM */
    int c = GM__ALOAD(&cached);
    if (c == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c = n < 1 ? 1 : (n > 64 ? 64 : (int)n);
        GM__ASTORE(&cached, c);
    }
    return c;
}
#endif

GMDEF void gm_set_threads(int n) { GM__ASTORE(&gm__nthreads_want, n <= 0 ? 0 : (n > 64 ? 64 : n)); }

GMDEF int gm_get_threads(void) {
#if defined(GM__SERIAL)
    return 1;
#else
    int n = GM__ALOAD(&gm__nthreads_want);
    return n > 0 ? n : gm__ncores();
#endif
}

/* Per-thread scratch (packed panels). Grow-only; freed when a worker exits or at pool shutdown
 * for the thread that runs it. 64-byte aligned. */
static GM__TLS void *gm__ws_raw;
static GM__TLS float *gm__ws;
static GM__TLS size_t gm__ws_cap;

static float *gm__scratch(size_t nfloats) {
    if (nfloats > gm__ws_cap) {
        GENMOD_FREE(gm__ws_raw);
        gm__ws_raw = GENMOD_MALLOC(nfloats * sizeof(float) + 64);
        GENMOD_ASSERT(gm__ws_raw != NULL);
        gm__ws = (float *)(((uintptr_t)gm__ws_raw + 63) & ~(uintptr_t)63);
        gm__ws_cap = nfloats;
    }
    return gm__ws;
}

#if defined(GM__SERIAL)

static void gm__parallel_for(int ntasks, void (*fn)(void *ctx, int task), void *ctx) {
    int t;
    for (t = 0; t < ntasks; t++) fn(ctx, t);
}

#else

static void gm__scratch_free(void) {
    GENMOD_FREE(gm__ws_raw);
    gm__ws_raw = NULL;
    gm__ws = NULL;
    gm__ws_cap = 0;
}

#define GM__MAXWORKERS 63
#define GM__SPIN_WORKER (1 << 15) /* spin iterations before a worker sleeps (~1 ms) */

typedef struct {
    int go, done; /* job generation posted to / finished by this worker */
    int start;    /* generation current when the worker was created: nothing pending before it */
    char pad[64 - 3 * sizeof(int)];
} gm__slot;

static struct {
    gm__slot slot[GM__MAXWORKERS];
    pthread_t tid[GM__MAXWORKERS];
    int nworkers;                /* started; only changed by the thread holding `busy` */
    int busy;                    /* 1 while a job owns the pool */
    int sleepers;                /* workers inside the condvar wait */
    int shutdown;
    int gen;                     /* job generation, owned by the `busy` holder */
    int atexit_done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*fn)(void *, int);     /* the job: written before `go`, read after it */
    void *ctx;
    int ntasks;
    int next;                    /* next task to hand out */
} gm__pool = {{{0, 0, 0, {0}}}, {0}, 0, 0, 0, 0, 0, 0, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
              NULL, NULL, 0, 0};

static GM__TLS int gm__in_task; /* nested parallel_for runs serially */

static void gm__run_tasks(void) {
    void (*fn)(void *, int) = gm__pool.fn;
    void *ctx = gm__pool.ctx;
    int n = gm__pool.ntasks, t;
    while ((t = GM__AADD(&gm__pool.next, 1)) < n) fn(ctx, t);
}

static void *gm__worker_main(void *arg) {
    int w = (int)(size_t)arg, i;
    int seen = gm__pool.slot[w].start, g = seen; /* written before pthread_create */
    gm_flush_denormals();
    gm__in_task = 1;
    for (;;) {
        for (i = 0; i < GM__SPIN_WORKER; i++) {
            g = GM__ALOAD(&gm__pool.slot[w].go);
            if (g != seen || GM__ALOAD(&gm__pool.shutdown)) break;
            /* Yield now and then: if the scheduler put us on the poster's CPU, pure spinning
             * would keep the poster (and the job) off the CPU for our whole spin budget. */
            if ((i & 63) == 63) sched_yield();
            else GM__RELAX();
        }
        if (g == seen && !GM__ALOAD(&gm__pool.shutdown)) {
            pthread_mutex_lock(&gm__pool.mu);
            GM__AADD(&gm__pool.sleepers, 1);
            /* seq_cst pairs with the poster's store of go then load of sleepers: one sees the other */
            while ((g = GM__ALOAD_SC(&gm__pool.slot[w].go)) == seen && !GM__ALOAD_SC(&gm__pool.shutdown))
                pthread_cond_wait(&gm__pool.cv, &gm__pool.mu);
            GM__AADD(&gm__pool.sleepers, -1);
            pthread_mutex_unlock(&gm__pool.mu);
        }
        if (GM__ALOAD(&gm__pool.shutdown)) break;
        seen = g;
        gm__run_tasks();
        GM__ASTORE(&gm__pool.slot[w].done, g);
    }
    gm__scratch_free();
    return NULL;
}

static void gm__pool_shutdown(void) {
    int i, expect = 0;
    /* wait for a running job to finish, then keep the pool locked for good */
    while (!GM__ACAS(&gm__pool.busy, &expect, 1)) { expect = 0; sched_yield(); }
    GM__ASTORE_SC(&gm__pool.shutdown, 1);
    pthread_mutex_lock(&gm__pool.mu);
    pthread_cond_broadcast(&gm__pool.cv);
    pthread_mutex_unlock(&gm__pool.mu);
    for (i = 0; i < gm__pool.nworkers; i++) pthread_join(gm__pool.tid[i], NULL);
    gm__pool.nworkers = 0;
    gm__scratch_free();
}

/* Start workers up to `want` (caller holds busy). Returns how many exist. */
static int gm__pool_grow(int want) {
    if (want > GM__MAXWORKERS) want = GM__MAXWORKERS;
    if (!gm__pool.atexit_done) {
        gm__pool.atexit_done = 1;
        atexit(gm__pool_shutdown);
    }
    while (gm__pool.nworkers < want) {
        int w = gm__pool.nworkers;
        gm__pool.slot[w].start = gm__pool.slot[w].done = gm__pool.gen; /* nothing pending */
        GM__ASTORE(&gm__pool.slot[w].go, gm__pool.gen);
        if (pthread_create(&gm__pool.tid[w], NULL, gm__worker_main, (void *)(size_t)w) != 0) break;
        gm__pool.nworkers++;
    }
    return gm__pool.nworkers;
}

/* Runs fn(ctx, t) for t in [0, ntasks) on the pool; the caller participates; returns when all
 * are done. Task order and placement are unspecified. */
static void gm__parallel_for(int ntasks, void (*fn)(void *ctx, int task), void *ctx) {
    int nw = gm_get_threads() - 1, expect = 0, w, g, t, spins;
    if (nw > ntasks - 1) nw = ntasks - 1;
    if (nw <= 0 || gm__in_task || GM__ALOAD(&gm__pool.shutdown) ||
        !GM__ACAS(&gm__pool.busy, &expect, 1)) {
        for (t = 0; t < ntasks; t++) fn(ctx, t);
        return;
    }
    nw = nw < gm__pool_grow(nw) ? nw : gm__pool.nworkers;
    g = ++gm__pool.gen;
    gm__pool.fn = fn;
    gm__pool.ctx = ctx;
    gm__pool.ntasks = ntasks;
    GM__ASTORE(&gm__pool.next, 0);
    for (w = 0; w < nw; w++) GM__ASTORE_SC(&gm__pool.slot[w].go, g);
    if (GM__ALOAD_SC(&gm__pool.sleepers) > 0) {
        pthread_mutex_lock(&gm__pool.mu);
        pthread_cond_broadcast(&gm__pool.cv);
        pthread_mutex_unlock(&gm__pool.mu);
    }
    gm__in_task = 1;
    gm__run_tasks();
    gm__in_task = 0;
    for (w = 0; w < nw; w++)
        for (spins = 0; GM__ALOAD(&gm__pool.slot[w].done) != g; spins++) {
            if ((spins & 63) == 63) sched_yield(); /* the worker may share our CPU: let it run */
            else GM__RELAX();
        }
    GM__ASTORE(&gm__pool.busy, 0);
}

#endif /* pool */

/* ---- sgemm ---- */
/* Blocking: for each K slice (K cut into equal slices of <= KC), pack the task's B columns (NC at a
 * time, in L2/L3) once; for each MC block of rows the task owns, pack A (MC x KC, in L2) and sweep
 * the micro-kernel over the NR column panels x MR row panels. Packing is per path (vector copies
 * and in-register transposes). Each thread task owns a rectangle of output tiles and packs its own
 * panels, so one fork/join covers the whole call. K is never split across threads and edge tiles
 * run the same micro-kernel on zero-padded panels into a scratch tile, so every C element is
 * computed by the same operations whatever the thread count. */

#ifndef GM__KC
#define GM__KC 400 /* most k per slice; K is cut into equal slices (rounded up to 16), so that
                      K=784 runs as 400+384 instead of 384+384+16 */
#endif
#ifndef GM__NC
#define GM__NC 1024 /* columns of B per packed block (rounded down to a multiple of NR) */
#endif
#ifndef GM__MC
#define GM__MC 384 /* rows of A per packed block (rounded down to a multiple of MR) */
#endif

typedef struct {
    const gm__path_ops *ops;
    int ta, tb, M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int mp, np; /* number of MR row panels, NR column panels */
    int kcs;    /* k per slice (depends on K only: every thread slices K the same way) */
    int pm, pn; /* task grid: pm x pn rectangles of tiles */
    /* A virtual B (implicit GEMM): bfill writes the op(B) block of rows [k0, k0+kc) and columns
       [c0, c0+cols) as one packed (kc, NR) panel, columns >= cols zero; B and tb are then unused.
       The convolutions pack their patches straight from the image this way. */
    void (*bfill)(const void *bctx, int k0, int kc, int c0, int cols, int nr, float *dst);
    const void *bctx;
} gm__gemm_job;

/* dst (kc, mr) row-major = op(A)(i0 .. i0+mr-1, k0 .. k0+kc-1)^T, rows >= rows are zero. */
static void gm__pack_a(const gm__gemm_job *j, int i0, int rows, int k0, int kc, float *dst) {
    if (j->ta) { /* op(A)(i,k) = A[k*lda + i]: each k is a contiguous run of rows */
        j->ops->packat(kc, j->A + (size_t)k0 * j->lda + i0, j->lda, rows, dst);
    } else { /* op(A)(i,k) = A[i*lda + k]: in-register transposes (may write VLANES floats past
                the panel: see gm__packa and the slack in gm__gemm_rect) */
        j->ops->packa(kc, j->A + (size_t)i0 * j->lda + k0, j->lda, rows, dst);
    }
}

/* Column panels [q0, q1) of op(B)(k0 .. k0+kc-1, :) -> dst, panel q at dst + (q-q0)*kc*nr as
 * (kc, nr) row-major; columns past N are zero. */
static void gm__pack_b(const gm__gemm_job *j, int q0, int q1, int k0, int kc, float *dst) {
    const int nr = j->ops->nr;
    const int nfull = (q1 * nr <= j->N ? q1 : j->N / nr) - q0; /* full-width panels */
    int c, k, q;
    if (j->bfill) {
        for (q = q0; q < q1; q++)
            j->bfill(j->bctx, k0, kc, q * nr, GM__MIN(nr, j->N - q * nr), nr, dst + (size_t)(q - q0) * kc * nr);
    } else if (!j->tb) { /* op(B)(k,c) = B[k*ldb + c] */
        if (nfull > 0) j->ops->packbn(kc, j->B + (size_t)k0 * j->ldb + (size_t)q0 * nr, j->ldb, nfull, dst);
        for (q = q0 + (nfull > 0 ? nfull : 0); q < q1; q++) { /* the edge panel */
            const int cols = j->N - q * nr;
            const float *src = j->B + (size_t)k0 * j->ldb + (size_t)q * nr;
            float *d = dst + (size_t)(q - q0) * kc * nr;
            for (k = 0; k < kc; k++, src += j->ldb, d += nr) {
                for (c = 0; c < cols; c++) d[c] = src[c];
                for (; c < nr; c++) d[c] = 0.0f;
            }
        }
    } else { /* op(B)(k,c) = B[c*ldb + k]: in-register VLANES x VLANES transposes */
        for (q = q0; q < q1; q++)
            j->ops->packbt(kc, j->B + (size_t)q * nr * j->ldb + k0, j->ldb, j->N - q * nr,
                           dst + (size_t)(q - q0) * kc * nr);
    }
}

/* One tile at (row, col): full tiles go straight to C; edge tiles through a scratch tile. */
static void gm__gemm_tile(const gm__gemm_job *j, int row, int col, int kc, const float *ap,
                          const float *bp, float beta, float *tmp) {
    const int mr = j->ops->mr, nr = j->ops->nr;
    const int rows = j->M - row < mr ? j->M - row : mr, cols = j->N - col < nr ? j->N - col : nr;
    float *c = j->C + (size_t)row * j->ldc + col;
    int i, q;
    if (rows == mr && cols == nr) {
        j->ops->ukernel(kc, ap, bp, c, j->ldc, j->alpha, beta);
        return;
    }
    if (beta != 0.0f)
        for (i = 0; i < rows; i++)
            for (q = 0; q < cols; q++) tmp[i * nr + q] = c[(size_t)i * j->ldc + q];
    j->ops->ukernel(kc, ap, bp, tmp, nr, j->alpha, beta);
    for (i = 0; i < rows; i++)
        for (q = 0; q < cols; q++) c[(size_t)i * j->ldc + q] = tmp[i * nr + q];
}

/* Tiles [p0,p1) x [q0,q1) (row panels x column panels). */
static void gm__gemm_rect(const gm__gemm_job *j, int p0, int p1, int q0, int q1) {
    const int mr = j->ops->mr, nr = j->ops->nr;
    const int mcp = GM__MC / mr > 0 ? GM__MC / mr : 1; /* row panels per packed A block */
    const int ncp = GM__NC / nr > 0 ? GM__NC / nr : 1; /* column panels per packed B block */
    const int nqb = q1 - q0 < ncp ? q1 - q0 : ncp;
    const int kcmax = j->kcs;
    /* abuf, GM__VLMAX floats of slack (gm__packa may write that far past a panel), bbuf, tmp */
    float *ws = gm__scratch((size_t)kcmax * (mcp * mr + nqb * nr) + GM__VLMAX + (size_t)mr * nr);
    float *abuf = ws, *bbuf = ws + (size_t)kcmax * mcp * mr + GM__VLMAX, *tmp = bbuf + (size_t)kcmax * nqb * nr;
    int pc, jb, ib, ip, q;
    for (pc = 0; pc < j->K; pc += j->kcs) {
        const int kc = j->K - pc < j->kcs ? j->K - pc : j->kcs;
        const float beta = pc == 0 ? j->beta : 1.0f; /* later K slices accumulate */
        for (jb = q0; jb < q1; jb += ncp) {
            const int je = jb + ncp < q1 ? jb + ncp : q1;
            gm__pack_b(j, jb, je, pc, kc, bbuf); /* once per slice, reused by every A block */
            for (ib = p0; ib < p1; ib += mcp) {
                const int ie = ib + mcp < p1 ? ib + mcp : p1;
                for (ip = ib; ip < ie; ip++) {
                    const int row = ip * mr, rows = j->M - row < mr ? j->M - row : mr;
                    gm__pack_a(j, row, rows, pc, kc, abuf + (size_t)(ip - ib) * kc * mr);
                }
                for (q = jb; q < je; q++)
                    for (ip = ib; ip < ie; ip++)
                        gm__gemm_tile(j, ip * mr, q * nr, kc, abuf + (size_t)(ip - ib) * kc * mr,
                                      bbuf + (size_t)(q - jb) * kc * nr, beta, tmp);
            }
        }
    }
}

static void gm__gemm_task(void *ctx, int t) {
    const gm__gemm_job *j = (const gm__gemm_job *)ctx;
    const int ti = t / j->pn, tj = t % j->pn;
    gm__gemm_rect(j, (int)((long long)ti * j->mp / j->pm), (int)((long long)(ti + 1) * j->mp / j->pm),
                  (int)((long long)tj * j->np / j->pn), (int)((long long)(tj + 1) * j->np / j->pn));
}

/* Choose a pm x pn grid (pm*pn <= nthreads) minimising the largest task: its tiles' FMAs plus a
 * rough charge for the panels it packs (one packed float ~ 8 FMAs of time). */
static void gm__gemm_grid(gm__gemm_job *j, int nthreads) {
    const double tile = (double)j->ops->mr * j->ops->nr;
    double best = -1.0;
    int t, a;
    j->pm = j->pn = 1;
    for (t = nthreads; t >= 1; t--)
        for (a = 1; a <= t; a++) {
            const int b = t / a;
            double rows, cols, cost;
            if (t % a || a > j->mp || b > j->np) continue;
            rows = (double)((j->mp + a - 1) / a);
            cols = (double)((j->np + b - 1) / b);
            cost = rows * cols * tile + 8.0 * (rows * j->ops->mr + cols * j->ops->nr);
            if (best < 0.0 || cost < best) { best = cost; j->pm = a; j->pn = b; }
        }
}

/* C = beta*C for the degenerate cases (K == 0 or alpha == 0). */
static void gm__gemm_scale(int M, int N, float beta, float *C, int ldc) {
    int i, q;
    for (i = 0; i < M; i++)
        for (q = 0; q < N; q++) C[(size_t)i * ldc + q] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + q];
}

/* Slices K, picks the thread grid and runs the job (its operands, alpha and beta set). */
static void gm__gemm_run(gm__gemm_job *j) {
    int nthreads;
    j->ops = gm__ops();
    j->mp = (j->M + j->ops->mr - 1) / j->ops->mr;
    j->np = (j->N + j->ops->nr - 1) / j->ops->nr;
    {
        const int nslices = (j->K + GM__KC - 1) / GM__KC;
        j->kcs = ((j->K + nslices - 1) / nslices + 15) & ~15;
        if (j->kcs > j->K) j->kcs = j->K;
    }
    /* below ~0.5 MFLOP a fork/join costs more than it saves */
    nthreads = (double)j->M * j->N * j->K < 262144.0 ? 1 : gm_get_threads();
    gm__gemm_grid(j, nthreads);
    if (j->pm * j->pn == 1) gm__gemm_task(j, 0);
    else gm__parallel_for(j->pm * j->pn, gm__gemm_task, j);
}

GMDEF void gm_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    gm__gemm_job j;
    GENMOD_ASSERT(M >= 0 && N >= 0 && K >= 0);
    GENMOD_ASSERT(ldc >= (N > 1 ? N : 1));
    GENMOD_ASSERT(lda >= ((ta ? M : K) > 1 ? (ta ? M : K) : 1));
    GENMOD_ASSERT(ldb >= ((tb ? K : N) > 1 ? (tb ? K : N) : 1));
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == 0.0f) {
        gm__gemm_scale(M, N, beta, C, ldc);
        return;
    }
    memset(&j, 0, sizeof j);
    j.ta = ta; j.tb = tb; j.M = M; j.N = N; j.K = K;
    j.lda = lda; j.ldb = ldb; j.ldc = ldc;
    j.alpha = alpha; j.beta = beta;
    j.A = A; j.B = B; j.C = C;
    gm__gemm_run(&j);
}

/* C (M, N) = A B with B virtual (see bfill in gm__gemm_job); M, N, K > 0. */
static void gm__sgemm_implicit(int M, int N, int K, const float *A, int lda,
                               void (*bfill)(const void *, int, int, int, int, int, float *), const void *bctx,
                               float *C, int ldc) {
    gm__gemm_job j;
    memset(&j, 0, sizeof j);
    j.M = M; j.N = N; j.K = K;
    j.lda = lda; j.ldb = N; j.ldc = ldc;
    j.alpha = 1.0f; j.beta = 0.0f;
    j.A = A; j.C = C;
    j.bfill = bfill; j.bctx = bctx;
    gm__gemm_run(&j);
}

/* ---- vector math ---- */

static void gm__vexp(float *y, const float *x, size_t n) { gm__ops()->vexp(y, x, n); }
static void gm__vlog(float *y, const float *x, size_t n) { gm__ops()->vlog(y, x, n); }
static void gm__vtanh(float *y, const float *x, size_t n) { gm__ops()->vtanh(y, x, n); }
static void gm__vsigmoid(float *y, const float *x, size_t n) { gm__ops()->vsigmoid(y, x, n); }
GM__MAYBE_UNUSED static void gm__vexpm1(float *y, const float *x, size_t n) { gm__ops()->vexpm1(y, x, n); }
static void gm__vsoftplus(float *y, const float *x, size_t n) { gm__ops()->vsoftplus(y, x, n); }
static void gm__vbinary(int op, float *y, const float *a, long sa, const float *b, long sb, int n) {
    gm__ops()->vbinary(op, y, a, sa, b, sb, n);
}
static void gm__vunary(int op, float *y, const float *x, size_t n, float f0, float f1) {
    gm__ops()->vunary(op, y, x, n, f0, f1);
}
static void gm__vfused(int op, float *y, const float *a, const float *b, const float *c, size_t n, const float *f) {
    gm__ops()->vfused(op, y, a, b, c, n, f);
}
static const gm__path_ops *gm__kernels(void) { return gm__ops(); }

GMDEF void gm_parallel_for(int ntasks, void (*fn)(void *ctx, int task), void *ctx) {
    if (fn && ntasks > 0) gm__parallel_for(ntasks, fn, ctx);
}

/* ======================================================================================= */
/* Random numbers                                                                          */
/* ======================================================================================= */
/* The library's one generator is xoshiro128** (gm_rng). splitmix64 only expands a 64-bit seed into
   its 128-bit state, so that any seed (0, 1, 2, ...) starts a well-mixed stream. */
static uint64_t gm__splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

GMDEF void gm_rng_seed(gm_rng *r, uint64_t seed) {
    uint64_t a = gm__splitmix64(&seed), b = gm__splitmix64(&seed);
    r->s[0] = (uint32_t)a; r->s[1] = (uint32_t)(a >> 32);
    r->s[2] = (uint32_t)b; r->s[3] = (uint32_t)(b >> 32);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1; /* the all-zero state is a fixed point */
    r->has_spare = 0;
    r->spare = 0;
}

static uint32_t gm__rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

GMDEF uint32_t gm_rng_u32(gm_rng *r) { /* xoshiro128** */
    uint32_t *s = r->s, result = gm__rotl(s[1] * 5, 7) * 9, t = s[1] << 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = gm__rotl(s[3], 11);
    return result;
}

GMDEF gm_rng gm_rng_split(gm_rng *r) {
    gm_rng child;
    uint64_t seed = ((uint64_t)gm_rng_u32(r) << 32) | gm_rng_u32(r);
    gm_rng_seed(&child, seed ^ 0xD1B54A32D192ED03ull);
    return child;
}

GMDEF float gm_rng_uniform(gm_rng *r) { return (float)(gm_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

GMDEF float gm_rng_normal(gm_rng *r) { /* Box-Muller; u1 in (0,1] so log is finite */
    float u1, u2, rad;
    if (r->has_spare) { r->has_spare = 0; return r->spare; }
    u1 = ((float)(gm_rng_u32(r) >> 8) + 1.0f) * (1.0f / 16777216.0f);
    u2 = gm_rng_uniform(r);
    rad = sqrtf(-2.0f * logf(u1));
    r->spare = rad * sinf(6.28318530718f * u2);
    r->has_spare = 1;
    return rad * cosf(6.28318530718f * u2);
}

GMDEF int gm_rng_int(gm_rng *r, int n) { /* Lemire's multiply-shift with rejection */
    uint64_t m;
    uint32_t lo, bound = (uint32_t)n;
    if (n <= 1) return 0;
    m = (uint64_t)gm_rng_u32(r) * bound;
    lo = (uint32_t)m;
    if (lo < bound) {
        uint32_t threshold = (0u - bound) % bound;
        while (lo < threshold) { m = (uint64_t)gm_rng_u32(r) * bound; lo = (uint32_t)m; }
    }
    return (int)(m >> 32);
}

/* ======================================================================================= */
/* Parameters and initializers                                                             */
/* ======================================================================================= */
static int gm__grow_floats(gm_params *p, size_t need) {
    size_t cap = p->capacity ? p->capacity : 1024;
    float *d, *gr;
    while (cap < need) cap *= 2;
    if (cap == p->capacity) return 0;
    d = GM__CAST(float *, GENMOD_REALLOC(p->data, cap * sizeof(float)));
    if (!d) return gm_fail("params: out of memory for %zu floats", cap);
    p->data = d;
    gr = GM__CAST(float *, GENMOD_REALLOC(p->grad, cap * sizeof(float)));
    if (!gr) return gm_fail("params: out of memory for %zu floats", cap);
    p->grad = gr;
    p->capacity = cap;
    return 0;
}

GMDEF int gm_params_add(gm_params *p, const char *name, int ndim, const int *shape) {
    gm_param_view *v;
    size_t size = 1;
    int k;
    if (!p || !name || !shape) return gm_fail("gm_params_add: NULL argument");
    if (ndim < 1 || ndim > GM_MAX_DIMS) return gm_fail("gm_params_add: '%s': %d dims (1..4 allowed)", name, ndim);
    if (strlen(name) >= GM_NAME_MAX) return gm_fail("gm_params_add: name '%s' longer than %d", name, GM_NAME_MAX - 1);
    if (gm_params_find(p, name) >= 0) return gm_fail("gm_params_add: '%s' exists already", name);
    for (k = 0; k < ndim; k++) {
        if (shape[k] <= 0 || size > (size_t)INT_MAX / (size_t)shape[k])
            return gm_fail("gm_params_add: '%s': bad dim %d = %d", name, k, shape[k]);
        size *= (size_t)shape[k];
    }
    if (p->nviews == p->views_capacity) {
        int cap = p->views_capacity ? p->views_capacity * 2 : 16;
        gm_param_view *nv = GM__CAST(gm_param_view *, GENMOD_REALLOC(p->views, (size_t)cap * sizeof *nv));
        if (!nv) return gm_fail("gm_params_add: out of memory");
        p->views = nv;
        p->views_capacity = cap;
    }
    /* Keep every tensor 16-float aligned so SIMD loads on a view start on a cache line. */
    if (gm__grow_floats(p, ((p->count + 15) & ~(size_t)15) + size) != 0) return -1;
    /* FIX(test_core): the alignment padding before the view was left uninitialized (realloc
       garbage) in data and grad, though it lies inside `count`; zero it like the view itself. */
    memset(p->data + p->count, 0, (((p->count + 15) & ~(size_t)15) - p->count) * sizeof(float));
    memset(p->grad + p->count, 0, (((p->count + 15) & ~(size_t)15) - p->count) * sizeof(float));
    p->count = (p->count + 15) & ~(size_t)15;
    v = &p->views[p->nviews];
    memset(v, 0, sizeof *v);
    strcpy(v->name, name);
    v->ndim = ndim;
    for (k = 0; k < ndim; k++) v->shape[k] = shape[k];
    v->offset = p->count;
    v->size = size;
    memset(p->data + p->count, 0, size * sizeof(float));
    memset(p->grad + p->count, 0, size * sizeof(float));
    p->count += size;
    return p->nviews++;
}

GMDEF int gm_params_find(const gm_params *p, const char *name) {
    int i;
    for (i = 0; p && name && i < p->nviews; i++)
        if (strcmp(p->views[i].name, name) == 0) return i;
    return -1;
}

GMDEF float *gm_params_data(gm_params *p, int view) {
    GENMOD_ASSERT(p && view >= 0 && view < p->nviews);
    return p->data + p->views[view].offset;
}

GMDEF float *gm_params_grad(gm_params *p, int view) {
    GENMOD_ASSERT(p && view >= 0 && view < p->nviews);
    return p->grad + p->views[view].offset;
}

GMDEF void gm_params_zero_grad(gm_params *p) {
    if (p && p->grad) memset(p->grad, 0, p->count * sizeof(float));
}

GMDEF void gm_params_mark_buffer(gm_params *p, int view) {
    GENMOD_ASSERT(p && view >= 0 && view < p->nviews);
    p->views[view].buffer = 1;
}

GMDEF size_t gm_params_count(const gm_params *p) {
    size_t n = 0;
    int i;
    for (i = 0; p && i < p->nviews; i++)
        if (!p->views[i].buffer) n += p->views[i].size;
    return n;
}

GMDEF void gm_params_free(gm_params *p) {
    if (!p) return;
    GENMOD_FREE(p->data);
    GENMOD_FREE(p->grad);
    GENMOD_FREE(p->views);
    memset(p, 0, sizeof *p);
}

GMDEF void gm_init_uniform(gm_rng *r, float *w, size_t n, float lo, float hi) {
    size_t i;
    for (i = 0; i < n; i++) w[i] = lo + (hi - lo) * gm_rng_uniform(r);
}

GMDEF void gm_init_normal(gm_rng *r, float *w, size_t n, float mean, float std) {
    size_t i;
    for (i = 0; i < n; i++) w[i] = mean + std * gm_rng_normal(r);
}

GMDEF void gm_init_weights(gm_rng *r, float *w, size_t n, int init, int fan_in, int fan_out) {
    float a;
    switch (init) {
    case GM_INIT_TORCH:          a = 1.0f / sqrtf((float)fan_in); gm_init_uniform(r, w, n, -a, a); break;
    case GM_INIT_GLOROT_UNIFORM: a = sqrtf(6.0f / (float)(fan_in + fan_out)); gm_init_uniform(r, w, n, -a, a); break;
    case GM_INIT_GLOROT_NORMAL:  gm_init_normal(r, w, n, 0.0f, sqrtf(2.0f / (float)(fan_in + fan_out))); break;
    case GM_INIT_HE_NORMAL:      gm_init_normal(r, w, n, 0.0f, sqrtf(2.0f / (float)fan_in)); break;
    case GM_INIT_HE_UNIFORM:     a = sqrtf(6.0f / (float)fan_in); gm_init_uniform(r, w, n, -a, a); break;
    default:                     memset(w, 0, n * sizeof(float)); break;
    }
}

/* ======================================================================================= */
/* Graphs and tensors                                                                      */
/* ======================================================================================= */
/* ---- the ops ---- */
/* An op lives in one place, in its own section: its forward (a public function, or a private
   gm__<name> for the ops only backward rules make), its state in y->state (a member of
   gm__op_state), and its backward rule gm__<name>_backward right after the forward. The rule
   reads y->grad and y->src and adds the sources' gradients, written with the differentiable ops
   themselves so that it differentiates again. This list names every op once; it makes the enum
   (GM__OP_<OP>), the rules' prototypes and the table of descriptors indexed by the op, so none of
   them can fall out of step with another. A new op: a line here, then its forward and rule. */
#define GM__OPS(X)                                                                                  \
    X(LEAF, leaf)                                                                                   \
    X(ADD, add) X(SUB, sub) X(MUL, mul) X(DIV, div)                                                 \
    X(AFFINE, affine) X(EXP, exp) X(LOG, log) X(SQRT, sqrt) X(SQUARE, square) X(ABS, abs)           \
    X(POW, pow) X(CLAMP, clamp) X(RELU, relu) X(LEAKY, leaky_relu) X(ELU, elu) X(TANH, tanh)        \
    X(SIGMOID, sigmoid) X(SOFTPLUS, softplus) X(LOG_SIGMOID, log_sigmoid) X(SILU, silu)            \
    X(SILU_GRAD, silu_grad) X(GATE, gate) X(GATE_GRAD, gate_grad)                                   \
    X(SOFTMAX, softmax) X(LOG_SOFTMAX, log_softmax) X(SUM_TO, sum_to) X(EXPAND, expand)             \
    X(RESHAPE, reshape) X(PERMUTE, permute) X(CONCAT, concat) X(SLICE, slice) X(PAD, pad)           \
    X(GATHER, gather) X(SCATTER, scatter) X(MATMUL, matmul) X(BMM, bmm)                             \
    X(CONV, conv) X(CONVT, conv_transpose) X(WGRAD, conv_wgrad)                                    \
    X(UPSAMPLE, upsample) X(AVGPOOL, avg_pool)                                                     \
    X(GROUPNORM, group_norm) X(GN_GRAD, group_norm_grad) X(GN_DPARAM, group_norm_dparam)

typedef void (*gm__backward_fn)(gm_graph *g, gm_tensor *y);
typedef struct gm__op_desc { const char *name; gm__backward_fn backward; } gm__op_desc;
#define GM__OP_ENUM(OP, name) GM__OP_##OP,
#define GM__OP_PROTO(OP, name) static void gm__##name##_backward(gm_graph *g, gm_tensor *y);
#define GM__OP_DESC(OP, name) {#name, gm__##name##_backward},
enum { GM__OPS(GM__OP_ENUM) GM__OP_COUNT };
GM__OPS(GM__OP_PROTO)
static const gm__op_desc gm__op_table[GM__OP_COUNT] = {GM__OPS(GM__OP_DESC)};

/* ---- arena and tape ---- */
typedef struct gm__chunk {
    struct gm__chunk *next;
    unsigned char *mem;   /* 64-byte aligned start inside this allocation */
    size_t size, used;
} gm__chunk;

struct gm_graph {
    gm__chunk *chunks;    /* in the order a step first used them */
    gm__chunk *cur;       /* the chunk allocations come from now */
    size_t used, peak;    /* arena bytes this step, most ever in one step */
    gm_tensor **tape;     /* tensors that need gradients, in creation (topological) order */
    int ntape, tape_capacity;
    int record, training;
    int pass;             /* number of the current backward pass (marks tape entries on its path) */
    gm_rng rng;
    double flops;
    float *scratch;       /* work space of one op at a time (convolutions), kept between steps */
    size_t scratch_cap;   /* floats */
    char error[512];
};

static void gm__graph_error(gm_graph *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    gm__vfail(fmt, ap);
    va_end(ap);
    if (g && !g->error[0]) memcpy(g->error, gm__error_text, sizeof g->error);
}

static gm__chunk *gm__chunk_new(size_t size) {
    gm__chunk *c = GM__CAST(gm__chunk *, GENMOD_MALLOC(sizeof(gm__chunk) + size + 64));
    uintptr_t base;
    if (!c) return NULL;
    base = (uintptr_t)(c + 1);
    c->mem = GM__CAST(unsigned char *, (void *)((base + 63) & ~(uintptr_t)63));
    c->size = size;
    c->used = 0;
    c->next = NULL;
    return c;
}

/* Bump allocation through the chunk list: when the current chunk is full the next one is used if
   the request fits it, else a new chunk (twice the size) goes in after the current one. A step
   that repeats the last one's allocations walks the same chunks and allocates nothing, and touches
   only memory it touched before (fresh pages cost a fault each, slow on some virtual machines). */
static void *gm__alloc(gm_graph *g, size_t bytes) {
    gm__chunk *c = g->cur;
    void *out;
    bytes = (bytes + 63) & ~(size_t)63;
    if (!c || c->used + bytes > c->size) {
        gm__chunk *next = c ? c->next : NULL;
        if (next && next->used == 0 && next->size >= bytes) {
            c = next;
        } else {
            size_t size = c ? c->size * 2 : ((size_t)1 << 20);
            if (size < bytes) size = bytes;
            next = gm__chunk_new(size);
            if (!next) { gm__graph_error(g, "graph: out of memory (%zu bytes)", bytes); return NULL; }
            if (c) { next->next = c->next; c->next = next; } else { next->next = g->chunks; g->chunks = next; }
            c = next;
        }
        g->cur = c;
    }
    out = c->mem + c->used;
    c->used += bytes;
    g->used += bytes;
    if (g->used > g->peak) g->peak = g->used;
    return out;
}

/* The graph's one scratch buffer, at least n floats; its contents are not kept when it grows. */
static float *gm__graph_scratch(gm_graph *g, size_t n) {
    if (n > g->scratch_cap) {
        GENMOD_FREE(g->scratch);
        g->scratch = GM__CAST(float *, GENMOD_MALLOC(n * sizeof(float)));
        g->scratch_cap = g->scratch ? n : 0;
        if (!g->scratch) { gm__graph_error(g, "graph: out of memory (%zu bytes of scratch)", n * sizeof(float)); return NULL; }
    }
    return g->scratch;
}

GMDEF gm_graph *gm_graph_new(uint64_t seed) {
    gm_graph *g = GM__CAST(gm_graph *, GENMOD_MALLOC(sizeof(gm_graph)));
    if (!g) { gm_fail("gm_graph_new: out of memory"); return NULL; }
    memset(g, 0, sizeof *g);
    g->record = 1;
    g->training = 1;
    gm_rng_seed(&g->rng, seed);
    /* Denormals slow training several-fold and the pool's threads flush them; the thread that
       builds graphs must do the same, or results would depend on which thread ran a kernel. */
    gm_flush_denormals();
    return g;
}

static void gm__free_chunks(gm__chunk *c) {
    while (c) { gm__chunk *next = c->next; GENMOD_FREE(c); c = next; }
}

GMDEF void gm_graph_free(gm_graph *g) {
    if (!g) return;
    gm__free_chunks(g->chunks);
    GENMOD_FREE(g->scratch);
    GENMOD_FREE(g->tape);
    GENMOD_FREE(g);
}

GMDEF void gm_graph_reset(gm_graph *g) {
    gm__chunk *c;
    if (!g) return;
    /* Every chunk is kept and reused in order (see gm__alloc): the next step touches the same
       memory as this one, so it neither allocates nor faults in new pages. */
    for (c = g->chunks; c; c = c->next) c->used = 0;
    g->cur = g->chunks;
    g->used = 0;
    g->ntape = 0;
    g->error[0] = 0;
}

GMDEF void gm_graph_set_training(gm_graph *g, int training) { if (g) g->training = training; }
GMDEF int gm_graph_training(const gm_graph *g) { return g ? g->training : 0; }
GMDEF int gm_graph_grad(const gm_graph *g) { return g ? g->record : 0; }
GMDEF int gm_graph_set_grad(gm_graph *g, int enabled) {
    int old = g ? g->record : 0;
    if (g) g->record = enabled;
    return old;
}
GMDEF gm_rng *gm_graph_rng(gm_graph *g) { return &g->rng; }
GMDEF double gm_graph_flops(const gm_graph *g) { return g ? g->flops : 0; }
GMDEF const char *gm_graph_error(const gm_graph *g) { return g && g->error[0] ? g->error : NULL; }

GMDEF int gm_graph_fail(const gm_graph *g, const char *who) {
    const char *e = gm_graph_error(g);
    return gm_fail("%s: %s", who, e ? e : gm_last_error());
}

GMDEF int gm_run_chunks(gm_graph *g, int n, gm_chunk_fn fn, void *ctx, const char *who) {
    int start, rc = 0, training, recording;
    if (!g || !fn || n < 0) return gm_fail("%s: bad arguments to gm_run_chunks", who);
    training = gm_graph_training(g);
    recording = gm_graph_set_grad(g, 0);
    gm_graph_set_training(g, 0);
    for (start = 0; start < n && rc == 0; start += GM_CHUNK) {
        gm_graph_reset(g);
        rc = fn(g, start, GM__MIN(GM_CHUNK, n - start), ctx);
    }
    gm_graph_set_training(g, training);
    gm_graph_set_grad(g, recording);
    return rc == 0 ? 0 : gm_graph_fail(g, who);
}

GMDEF int gm_floats_reserve(float **buf, size_t *cap, size_t n) {
    float *p;
    if (n <= *cap) return 0;
    p = GM__CAST(float *, GENMOD_REALLOC(*buf, n * sizeof(float)));
    if (!p) return gm_fail("out of memory (%zu floats)", n);
    *buf = p;
    *cap = n;
    return 0;
}
GMDEF size_t gm_graph_peak(const gm_graph *g) { return g ? g->peak : 0; }
GMDEF size_t gm_graph_memory(const gm_graph *g) {
    size_t total = 0;
    gm__chunk *c;
    if (!g) return 0;
    for (c = g->chunks; c; c = c->next) total += c->size;
    return total + g->scratch_cap * sizeof(float) + (size_t)g->tape_capacity * sizeof(gm_tensor *) + sizeof *g;
}

/* ---- tensors and leaves ---- */
static int gm__shape_size(int ndim, const int *shape) {
    int k;
    long long n = 1;
    for (k = 0; k < ndim; k++) n *= shape[k];
    return (int)n;
}

/* Reads the d0..d3 convention (trailing zeros end the shape); 0 on success. */
static int gm__shape4(gm_graph *g, const char *who, int d0, int d1, int d2, int d3, int *ndim, int *shape) {
    int d[4], k, n = 0;
    long long size = 1;
    d[0] = d0; d[1] = d1; d[2] = d2; d[3] = d3;
    for (k = 0; k < 4 && d[k] != 0; k++) n++;
    for (k = 0; k < 4; k++) {
        if ((k < n && d[k] < 0) || (k >= n && d[k] != 0) || n == 0) {
            gm__graph_error(g, "%s: bad shape (%d,%d,%d,%d): dims must be positive, trailing zeros end it",
                            who, d0, d1, d2, d3);
            return -1;
        }
        if (k < n) {
            size *= d[k];
            if (size > INT_MAX / 2) { gm__graph_error(g, "%s: shape (%d,%d,%d,%d) too large", who, d0, d1, d2, d3); return -1; }
            shape[k] = d[k];
        }
    }
    *ndim = n;
    return 0;
}

/* A fresh tensor with uninitialized data, not on the tape. */
static gm_tensor *gm__new(gm_graph *g, int ndim, const int *shape) {
    gm_tensor *t = GM__CAST(gm_tensor *, gm__alloc(g, sizeof(gm_tensor)));
    int k;
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (k = 0; k < ndim; k++) t->shape[k] = shape[k];
    t->size = gm__shape_size(ndim, shape);
    t->id = -1;
    t->data = GM__CAST(float *, gm__alloc(g, (size_t)t->size * sizeof(float)));
    return t->data ? t : NULL;
}

static gm_tensor *gm__new_like(gm_graph *g, const gm_tensor *x) { return gm__new(g, x->ndim, x->shape); }

static int gm__tape_push(gm_graph *g, gm_tensor *t) {
    if (g->ntape == g->tape_capacity) {
        int cap = g->tape_capacity ? g->tape_capacity * 2 : 256;
        gm_tensor **nt = GM__CAST(gm_tensor **, GENMOD_REALLOC(g->tape, (size_t)cap * sizeof *nt));
        if (!nt) { gm__graph_error(g, "graph: out of memory for the tape"); return -1; }
        g->tape = nt;
        g->tape_capacity = cap;
    }
    t->id = g->ntape;
    g->tape[g->ntape++] = t;
    return 0;
}

static int gm__ensure_on_tape(gm_graph *g, gm_tensor *t);

/* Records how t was made; it goes on the tape if any source needs a gradient. */
static gm_tensor *gm__record(gm_graph *g, gm_tensor *t, int op, gm_tensor *a, gm_tensor *b, gm_tensor *c) {
    if (!t) return NULL;
    if (gm__ensure_on_tape(g, a) || gm__ensure_on_tape(g, b) || gm__ensure_on_tape(g, c)) return NULL;
    t->op = op;
    t->src[0] = a; t->src[1] = b; t->src[2] = c;
    t->requires_grad = g->record && ((a && a->requires_grad) || (b && b->requires_grad) || (c && c->requires_grad));
    if (t->requires_grad && gm__tape_push(g, t) != 0) return NULL;
    return t;
}

GMDEF gm_tensor *gm_zeros(gm_graph *g, int d0, int d1, int d2, int d3) {
    return gm_full(g, 0.0f, d0, d1, d2, d3);
}

GMDEF gm_tensor *gm_full(gm_graph *g, float value, int d0, int d1, int d2, int d3) {
    int ndim, shape[4], i;
    gm_tensor *t;
    if (!g || gm__shape4(g, "gm_full", d0, d1, d2, d3, &ndim, shape) != 0) return NULL;
    t = gm__new(g, ndim, shape);
    if (t) for (i = 0; i < t->size; i++) t->data[i] = value;
    return t;
}

GMDEF gm_tensor *gm_input(gm_graph *g, const float *data, int d0, int d1, int d2, int d3) {
    int ndim, shape[4];
    gm_tensor *t;
    if (!g) return NULL;
    if (!data) { gm__graph_error(g, "gm_input: data is NULL"); return NULL; }
    if (gm__shape4(g, "gm_input", d0, d1, d2, d3, &ndim, shape) != 0) return NULL;
    t = gm__new(g, ndim, shape);
    if (t) memcpy(t->data, data, (size_t)t->size * sizeof(float));
    return t;
}

GMDEF gm_tensor *gm_randn(gm_graph *g, int d0, int d1, int d2, int d3) {
    gm_tensor *t = gm_zeros(g, d0, d1, d2, d3);
    if (t) gm_init_normal(&g->rng, t->data, (size_t)t->size, 0.0f, 1.0f);
    return t;
}

GMDEF gm_tensor *gm_rand(gm_graph *g, int d0, int d1, int d2, int d3) {
    gm_tensor *t = gm_zeros(g, d0, d1, d2, d3);
    if (t) gm_init_uniform(&g->rng, t->data, (size_t)t->size, 0.0f, 1.0f);
    return t;
}

GMDEF gm_tensor *gm_randn_like(gm_graph *g, const gm_tensor *x) {
    gm_tensor *t;
    if (!g || !x) return NULL;
    t = gm__new_like(g, x);
    if (t) gm_init_normal(&g->rng, t->data, (size_t)t->size, 0.0f, 1.0f);
    return t;
}

GMDEF gm_tensor *gm_param(gm_graph *g, gm_params *p, int view) {
    gm_tensor *t;
    const gm_param_view *v;
    if (!g) return NULL;
    if (!p || view < 0 || view >= p->nviews) {
        gm__graph_error(g, "gm_param: no view %d in these parameters", view);
        return NULL;
    }
    v = &p->views[view];
    t = GM__CAST(gm_tensor *, gm__alloc(g, sizeof(gm_tensor)));
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->ndim = v->ndim;
    memcpy(t->shape, v->shape, sizeof t->shape);
    t->size = (int)v->size;
    t->data = p->data + v->offset;   /* the parameter itself: the optimizer's updates are seen */
    t->id = -1;
    if (g->record && !p->frozen && !v->buffer) {
        t->requires_grad = 1;
        t->param_grad = p->grad + v->offset;
        if (gm__tape_push(g, t) != 0) return NULL;
    }
    return t;
}

/* A leaf was made by no op: nothing to pass back. */
static void gm__leaf_backward(gm_graph *g, gm_tensor *y) { (void)g; (void)y; }

GMDEF gm_tensor *gm_requires_grad(gm_tensor *t) {
    if (!t) return NULL;
    GENMOD_ASSERT(t->op == GM__OP_LEAF);
    t->requires_grad = 1;
    return t;
}

/* gm_requires_grad has no graph to put the leaf on the tape, so ops check their leaf sources here. */
static int gm__ensure_on_tape(gm_graph *g, gm_tensor *t) {
    if (t && t->requires_grad && t->id < 0 && g->record) return gm__tape_push(g, t);
    return 0;
}

GMDEF gm_tensor *gm_detach(gm_graph *g, gm_tensor *x) {
    gm_tensor *t;
    if (!g || !x) return NULL;
    t = GM__CAST(gm_tensor *, gm__alloc(g, sizeof(gm_tensor)));
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->ndim = x->ndim;
    memcpy(t->shape, x->shape, sizeof t->shape);
    t->size = x->size;
    t->data = x->data;   /* values are never written after creation, so sharing is safe */
    t->id = -1;
    return t;
}

static int gm__same_shape(const gm_tensor *a, const gm_tensor *b) {
    int k;
    if (a->ndim != b->ndim) return 0;
    for (k = 0; k < a->ndim; k++)
        if (a->shape[k] != b->shape[k]) return 0;
    return 1;
}

static const char *gm__shape_text(const gm_tensor *t, char *buf) {  /* buf: 64 chars */
    int k, n = 0;
    n += sprintf(buf + n, "(");
    for (k = 0; k < t->ndim; k++) n += sprintf(buf + n, k ? ",%d" : "%d", t->shape[k]);
    sprintf(buf + n, ")");
    return buf;
}

/* ---- what the backward rules share ---- */
/* Does t take part in this backward pass? (Its mark is the pass's number; see gm__backprop.) */
#define GM__WANT(t) ((t) && (t)->requires_grad && (t)->mark == g->pass)

static void gm__accumulate(gm_graph *g, gm_tensor *t, gm_tensor *dt) {
    if (!GM__WANT(t) || !dt) return;
    t->grad = t->grad ? gm_add(g, t->grad, dt) : dt;
}

static gm_tensor *gm__sum_to(gm_graph *g, gm_tensor *x, int ndim, const int *shape); /* "Reductions" */

/* Gradient of a broadcasting input: sum the output gradient back to the input's shape. */
static void gm__accumulate_to(gm_graph *g, gm_tensor *t, gm_tensor *dt) {
    if (GM__WANT(t) && dt) gm__accumulate(g, t, gm__sum_to(g, dt, t->ndim, t->shape));
}

/* ======================================================================================= */
/* Elementwise ops and activations                                                         */
/* ======================================================================================= */
/* Shapes padded on the left to 4 dims, and element strides with 0 where a dim is stretched. */
typedef struct gm__bcast { int n[4]; long sa[4], sb[4]; } gm__bcast;

static void gm__pad4(const gm_tensor *t, int *dims) {
    int k, off = 4 - t->ndim;
    for (k = 0; k < 4; k++) dims[k] = k < off ? 1 : t->shape[k - off];
}

static void gm__strides4(const int *dims, const int *out, long *st) {
    long s = 1;
    int k;
    for (k = 3; k >= 0; k--) { st[k] = dims[k] == 1 && out[k] != 1 ? 0 : s; s *= dims[k]; }
}

/* Output shape of broadcasting a with b; -1 (and an error naming both shapes) if incompatible. */
static int gm__broadcast(gm_graph *g, const char *who, const gm_tensor *a, const gm_tensor *b,
                         int *ndim, int *shape, gm__bcast *bc) {
    int da[4], db[4], k, nd = GM__MAX(a->ndim, b->ndim);
    char s1[64], s2[64];
    gm__pad4(a, da);
    gm__pad4(b, db);
    for (k = 0; k < 4; k++) {
        if (da[k] != db[k] && da[k] != 1 && db[k] != 1) {
            gm__graph_error(g, "%s: shapes %s and %s do not broadcast", who, gm__shape_text(a, s1), gm__shape_text(b, s2));
            return -1;
        }
        bc->n[k] = GM__MAX(da[k], db[k]);
    }
    gm__strides4(da, bc->n, bc->sa);
    gm__strides4(db, bc->n, bc->sb);
    *ndim = nd;
    for (k = 0; k < nd; k++) shape[k] = bc->n[4 - nd + k];
    return 0;
}

/* Big elementwise ops are split over the pool in blocks of a fixed size. Each output element is
   computed by the same instructions whoever runs its block, so results stay bit-identical at any
   thread count; small tensors stay on the calling thread, where a hand-off would cost more. */
#define GM__EW_BLOCK 16384
#define GM__EW_PARALLEL_MIN (2 * GM__EW_BLOCK)

/* fn(ctx, lo, hi) over [0, n) in blocks of `block` items; `elements` (the floats written) decides
   between the pool and a single call on this thread. */
typedef void (*gm__range_fn)(void *ctx, int lo, int hi);
typedef struct { gm__range_fn fn; void *ctx; int n, block; } gm__blocks_job;

static void gm__blocks_task(void *ctx, int t) {
    const gm__blocks_job *j = (const gm__blocks_job *)ctx;
    int lo = t * j->block;
    j->fn(j->ctx, lo, GM__MIN(j->n, lo + j->block));
}

static void gm__parallel_blocks(int n, int block, int elements, gm__range_fn fn, void *ctx) {
    gm__blocks_job job;
    if (elements < GM__EW_PARALLEL_MIN) { fn(ctx, 0, n); return; }
    job.fn = fn; job.ctx = ctx; job.n = n; job.block = block;
    gm__parallel_for((n + block - 1) / block, gm__blocks_task, &job);
}

/* Rows of y = a ew b (ew: GM__EW_ADD ...), each one call of the SIMD path's vbinary. */
typedef struct { int ew; const gm__bcast *bc; const float *a, *b; float *y; } gm__binary_job;

static void gm__binary_rows(void *ctx, int r0, int r1) {
    const gm__binary_job *j = (const gm__binary_job *)ctx;
    const gm__bcast *bc = j->bc;
    int r;
    for (r = r0; r < r1; r++) {
        int i2 = r % bc->n[2], i1 = (r / bc->n[2]) % bc->n[1], i0 = r / (bc->n[2] * bc->n[1]);
        const float *pa = j->a + i0 * bc->sa[0] + i1 * bc->sa[1] + i2 * bc->sa[2];
        const float *pb = j->b + i0 * bc->sb[0] + i1 * bc->sb[1] + i2 * bc->sb[2];
        gm__vbinary(j->ew, j->y + (size_t)r * bc->n[3], pa, bc->sa[3], pb, bc->sb[3], bc->n[3]);
    }
}

/* The same iteration with as few, as long rows as possible: drops dims of size 1 and folds a dim
   into the next inner one wherever both operands step through them as one (a per-channel
   broadcast over (N,C,H,W) becomes N*C rows of H*W, not N*C*H rows of W). */
static void gm__bcast_collapse(gm__bcast *bc) {
    gm__bcast out;
    int k, m = 4;   /* out dims filled from the right: [m, 4) */
    for (k = 3; k >= 0; k--) {
        if (bc->n[k] == 1) continue;
        if (m < 4 && bc->sa[k] == out.sa[m] * out.n[m] && bc->sb[k] == out.sb[m] * out.n[m]) {
            out.n[m] *= bc->n[k];
            continue;
        }
        m--;
        out.n[m] = bc->n[k]; out.sa[m] = bc->sa[k]; out.sb[m] = bc->sb[k];
    }
    for (k = 0; k < m; k++) { out.n[k] = 1; out.sa[k] = out.sb[k] = 0; }
    if (m == 4) { out.n[3] = 1; out.sa[3] = out.sb[3] = 0; }   /* a single element */
    *bc = out;
}

/* The op `op`: y = a ew b with broadcasting. */
static gm_tensor *gm__binary(gm_graph *g, int op, int ew, const char *who, gm_tensor *a, gm_tensor *b) {
    int ndim, shape[4];
    gm__bcast bc;
    gm__binary_job job;
    gm_tensor *y;
    if (!g || !a || !b) return NULL;
    if (gm__broadcast(g, who, a, b, &ndim, shape, &bc) != 0) return NULL;
    y = gm__new(g, ndim, shape);
    if (!y) return NULL;
    gm__bcast_collapse(&bc);
    job.ew = ew; job.bc = &bc; job.a = a->data; job.b = b->data; job.y = y->data;
    gm__parallel_blocks(bc.n[0] * bc.n[1] * bc.n[2], GM__MAX(1, GM__EW_BLOCK / bc.n[3]), y->size, gm__binary_rows, &job);
    return gm__record(g, y, op, a, b, NULL);
}

GMDEF gm_tensor *gm_add(gm_graph *g, gm_tensor *a, gm_tensor *b) { return gm__binary(g, GM__OP_ADD, GM__EW_ADD, "gm_add", a, b); }
static void gm__add_backward(gm_graph *g, gm_tensor *y) {
    gm__accumulate_to(g, y->src[0], y->grad);
    gm__accumulate_to(g, y->src[1], y->grad);
}

GMDEF gm_tensor *gm_sub(gm_graph *g, gm_tensor *a, gm_tensor *b) { return gm__binary(g, GM__OP_SUB, GM__EW_SUB, "gm_sub", a, b); }
static void gm__sub_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *b = y->src[1];
    gm__accumulate_to(g, y->src[0], y->grad);
    if (GM__WANT(b)) gm__accumulate_to(g, b, gm_neg(g, y->grad));
}

GMDEF gm_tensor *gm_mul(gm_graph *g, gm_tensor *a, gm_tensor *b) { return gm__binary(g, GM__OP_MUL, GM__EW_MUL, "gm_mul", a, b); }
static void gm__mul_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *a = y->src[0], *b = y->src[1];
    if (GM__WANT(a)) gm__accumulate_to(g, a, gm_mul(g, y->grad, b));
    if (GM__WANT(b)) gm__accumulate_to(g, b, gm_mul(g, y->grad, a));
}

GMDEF gm_tensor *gm_div(gm_graph *g, gm_tensor *a, gm_tensor *b) { return gm__binary(g, GM__OP_DIV, GM__EW_DIV, "gm_div", a, b); }
/* d/da = 1/b, d/db = -a/b^2 = -y/b */
static void gm__div_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *a = y->src[0], *b = y->src[1];
    if (GM__WANT(a)) gm__accumulate_to(g, a, gm_div(g, y->grad, b));
    if (GM__WANT(b)) gm__accumulate_to(g, b, gm_neg(g, gm_div(g, gm_mul(g, y->grad, y), b)));
}

/* Elementwise maps y = f(x): one map function per op fills a range of y; f is the op's
   parameters (y->state.scalar), so the forward and the backward rule read the same values. */
typedef void (*gm__map_fn)(float *y, const float *x, int n, const float *f);
typedef struct { gm__map_fn map; const float *f, *x; float *y; } gm__map_job;

static void gm__map_range(void *ctx, int lo, int hi) {
    const gm__map_job *j = (const gm__map_job *)ctx;
    j->map(j->y + lo, j->x + lo, hi - lo, j->f);
}

/* A fresh y = map(x) with parameters (f0, f1), in fixed blocks over the pool, not recorded: the
   constant masks of the backward rules (derivatives of piecewise maps, zero almost everywhere). */
static gm_tensor *gm__map(gm_graph *g, gm_tensor *x, gm__map_fn map, float f0, float f1) {
    gm_tensor *y;
    gm__map_job job;
    if (!g || !x) return NULL;
    y = gm__new_like(g, x);
    if (!y) return NULL;
    y->state.scalar[0] = f0;
    y->state.scalar[1] = f1;
    job.map = map; job.f = y->state.scalar; job.x = x->data; job.y = y->data;
    gm__parallel_blocks(x->size, GM__EW_BLOCK, x->size, gm__map_range, &job);
    return y;
}

/* The op y = map(x), recorded. */
static gm_tensor *gm__unary(gm_graph *g, int op, gm__map_fn map, gm_tensor *x, float f0, float f1) {
    return gm__record(g, gm__map(g, x, map, f0, f1), op, x, NULL, NULL);
}

/* A map's backward rule: dx = dy * f'(x), with dfdx = f'(x) a tensor of the graph. */
static void gm__map_backward(gm_graph *g, gm_tensor *y, gm_tensor *dfdx) {
    gm__accumulate(g, y->src[0], gm_mul(g, y->grad, dfdx));
}

static void gm__affine_map(float *y, const float *x, int n, const float *f) {
    gm__vunary(GM__EW_AFFINE, y, x, (size_t)n, f[0], f[1]);
}
GMDEF gm_tensor *gm_affine(gm_graph *g, gm_tensor *x, float a, float b) { return gm__unary(g, GM__OP_AFFINE, gm__affine_map, x, a, b); }
GMDEF gm_tensor *gm_scale(gm_graph *g, gm_tensor *x, float a) { return gm_affine(g, x, a, 0.0f); }
GMDEF gm_tensor *gm_neg(gm_graph *g, gm_tensor *x) { return gm_affine(g, x, -1.0f, 0.0f); }
static void gm__affine_backward(gm_graph *g, gm_tensor *y) {
    gm__accumulate(g, y->src[0], gm_scale(g, y->grad, y->state.scalar[0]));
}

static void gm__exp_map(float *y, const float *x, int n, const float *f) { (void)f; gm__vexp(y, x, (size_t)n); }
GMDEF gm_tensor *gm_exp(gm_graph *g, gm_tensor *x) { return gm__unary(g, GM__OP_EXP, gm__exp_map, x, 0, 0); }
static void gm__exp_backward(gm_graph *g, gm_tensor *y) { gm__map_backward(g, y, y); }

static void gm__log_map(float *y, const float *x, int n, const float *f) { (void)f; gm__vlog(y, x, (size_t)n); }
GMDEF gm_tensor *gm_log(gm_graph *g, gm_tensor *x) { return gm__unary(g, GM__OP_LOG, gm__log_map, x, 0, 0); }
static void gm__log_backward(gm_graph *g, gm_tensor *y) { gm__map_backward(g, y, gm_pow(g, y->src[0], -1.0f)); }

static void gm__sqrt_map(float *y, const float *x, int n, const float *f) {
    int i;
    (void)f;
    for (i = 0; i < n; i++) y[i] = sqrtf(x[i]);
}
GMDEF gm_tensor *gm_sqrt(gm_graph *g, gm_tensor *x) { return gm__unary(g, GM__OP_SQRT, gm__sqrt_map, x, 0, 0); }
static void gm__sqrt_backward(gm_graph *g, gm_tensor *y) { gm__map_backward(g, y, gm_pow(g, gm_scale(g, y, 2.0f), -1.0f)); }

static void gm__square_map(float *y, const float *x, int n, const float *f) {
    (void)f;
    gm__vunary(GM__EW_SQUARE, y, x, (size_t)n, 0, 0);
}
GMDEF gm_tensor *gm_square(gm_graph *g, gm_tensor *x) { return gm__unary(g, GM__OP_SQUARE, gm__square_map, x, 0, 0); }
static void gm__square_backward(gm_graph *g, gm_tensor *y) { gm__map_backward(g, y, gm_scale(g, y->src[0], 2.0f)); }

static void gm__abs_map(float *y, const float *x, int n, const float *f) {
    int i;
    (void)f;
    for (i = 0; i < n; i++) y[i] = fabsf(x[i]);
}
static void gm__sign_map(float *y, const float *x, int n, const float *f) {
    int i;
    (void)f;
    for (i = 0; i < n; i++) y[i] = x[i] > 0 ? 1.0f : x[i] < 0 ? -1.0f : 0.0f;
}
GMDEF gm_tensor *gm_abs(gm_graph *g, gm_tensor *x) { return gm__unary(g, GM__OP_ABS, gm__abs_map, x, 0, 0); }
static void gm__abs_backward(gm_graph *g, gm_tensor *y) { gm__map_backward(g, y, gm__map(g, y->src[0], gm__sign_map, 0, 0)); }

static void gm__pow_map(float *y, const float *x, int n, const float *f) {
    int i;
    for (i = 0; i < n; i++) y[i] = powf(x[i], f[0]);
}
GMDEF gm_tensor *gm_pow(gm_graph *g, gm_tensor *x, float p) { return gm__unary(g, GM__OP_POW, gm__pow_map, x, p, 0); }
static void gm__pow_backward(gm_graph *g, gm_tensor *y) {
    const float p = y->state.scalar[0];
    gm__map_backward(g, y, gm_scale(g, gm_pow(g, y->src[0], p - 1.0f), p));
}

static void gm__clamp_map(float *y, const float *x, int n, const float *f) {
    int i;
    for (i = 0; i < n; i++) y[i] = x[i] < f[0] ? f[0] : x[i] > f[1] ? f[1] : x[i];
}
static void gm__inside_map(float *y, const float *x, int n, const float *f) { /* 1 inside [f0, f1] */
    int i;
    for (i = 0; i < n; i++) y[i] = x[i] >= f[0] && x[i] <= f[1] ? 1.0f : 0.0f;
}
GMDEF gm_tensor *gm_clamp(gm_graph *g, gm_tensor *x, float lo, float hi) {
    if (g && lo > hi) { gm__graph_error(g, "gm_clamp: lo %g > hi %g", (double)lo, (double)hi); return NULL; }
    return gm__unary(g, GM__OP_CLAMP, gm__clamp_map, x, lo, hi);
}
static void gm__clamp_backward(gm_graph *g, gm_tensor *y) {
    gm__map_backward(g, y, gm__map(g, y->src[0], gm__inside_map, y->state.scalar[0], y->state.scalar[1]));
}

static void gm__relu_map(float *y, const float *x, int n, const float *f) { (void)f; gm__vunary(GM__EW_RELU, y, x, (size_t)n, 0, 0); }
static void gm__positive_map(float *y, const float *x, int n, const float *f) { /* 1 where x > 0 */
    (void)f;
    gm__vunary(GM__EW_MASK_POS, y, x, (size_t)n, 0, 0);
}
GMDEF gm_tensor *gm_relu(gm_graph *g, gm_tensor *x) { return gm__unary(g, GM__OP_RELU, gm__relu_map, x, 0, 0); }
static void gm__relu_backward(gm_graph *g, gm_tensor *y) { gm__map_backward(g, y, gm__map(g, y->src[0], gm__positive_map, 0, 0)); }

static void gm__leaky_map(float *y, const float *x, int n, const float *f) { gm__vunary(GM__EW_LEAKY, y, x, (size_t)n, f[0], 0); }
static void gm__leaky_slope_map(float *y, const float *x, int n, const float *f) { /* 1 where x > 0, else f0 */
    gm__vunary(GM__EW_MASK_LEAKY, y, x, (size_t)n, f[0], 0);
}
GMDEF gm_tensor *gm_leaky_relu(gm_graph *g, gm_tensor *x, float slope) { return gm__unary(g, GM__OP_LEAKY, gm__leaky_map, x, slope, 0); }
static void gm__leaky_relu_backward(gm_graph *g, gm_tensor *y) {
    gm__map_backward(g, y, gm__map(g, y->src[0], gm__leaky_slope_map, y->state.scalar[0], 0));
}

static void gm__elu_map(float *y, const float *x, int n, const float *f) { gm__vunary(GM__EW_ELU, y, x, (size_t)n, f[0], 0); }
GMDEF gm_tensor *gm_elu(gm_graph *g, gm_tensor *x, float alpha) { return gm__unary(g, GM__OP_ELU, gm__elu_map, x, alpha, 0); }
/* f'(x) is 1 where x > 0, else y + alpha (= alpha e^x) */
static void gm__elu_backward(gm_graph *g, gm_tensor *y) {
    const float alpha = y->state.scalar[0];
    gm_tensor *m;
    if (alpha == 1.0f) { /* y + 1 <= 1 iff x <= 0 */
        gm__map_backward(g, y, gm_clamp(g, gm_affine(g, y, 1.0f, 1.0f), -FLT_MAX, 1.0f));
        return;
    }
    m = gm__map(g, y->src[0], gm__positive_map, 0, 0);
    gm__map_backward(g, y, gm_add(g, m, gm_mul(g, gm_affine(g, m, -1.0f, 1.0f), gm_affine(g, y, 1.0f, alpha))));
}

static void gm__tanh_map(float *y, const float *x, int n, const float *f) { (void)f; gm__vtanh(y, x, (size_t)n); }
GMDEF gm_tensor *gm_tanh(gm_graph *g, gm_tensor *x) { return gm__unary(g, GM__OP_TANH, gm__tanh_map, x, 0, 0); }
static void gm__tanh_backward(gm_graph *g, gm_tensor *y) { gm__map_backward(g, y, gm_affine(g, gm_square(g, y), -1.0f, 1.0f)); }

static void gm__sigmoid_map(float *y, const float *x, int n, const float *f) { (void)f; gm__vsigmoid(y, x, (size_t)n); }
GMDEF gm_tensor *gm_sigmoid(gm_graph *g, gm_tensor *x) { return gm__unary(g, GM__OP_SIGMOID, gm__sigmoid_map, x, 0, 0); }
static void gm__sigmoid_backward(gm_graph *g, gm_tensor *y) { gm__map_backward(g, y, gm_mul(g, y, gm_affine(g, y, -1.0f, 1.0f))); }

static void gm__softplus_map(float *y, const float *x, int n, const float *f) { (void)f; gm__vsoftplus(y, x, (size_t)n); }
GMDEF gm_tensor *gm_softplus(gm_graph *g, gm_tensor *x) { return gm__unary(g, GM__OP_SOFTPLUS, gm__softplus_map, x, 0, 0); }
static void gm__softplus_backward(gm_graph *g, gm_tensor *y) { gm__map_backward(g, y, gm_sigmoid(g, y->src[0])); }

static void gm__log_sigmoid_map(float *y, const float *x, int n, const float *f) { /* -softplus(-x) */
    (void)f;
    gm__vunary(GM__EW_AFFINE, y, x, (size_t)n, -1.0f, 0.0f);
    gm__vsoftplus(y, y, (size_t)n);
    gm__vunary(GM__EW_AFFINE, y, y, (size_t)n, -1.0f, 0.0f);
}
GMDEF gm_tensor *gm_log_sigmoid(gm_graph *g, gm_tensor *x) { return gm__unary(g, GM__OP_LOG_SIGMOID, gm__log_sigmoid_map, x, 0, 0); }
static void gm__log_sigmoid_backward(gm_graph *g, gm_tensor *y) { gm__map_backward(g, y, gm_sigmoid(g, gm_neg(g, y->src[0]))); }

/* silu: x sigmoid(x), the sigmoid by the vector kernel, then one product per element. */
static void gm__silu_map(float *y, const float *x, int n, const float *f) {
    int i;
    (void)f;
    gm__vsigmoid(y, x, (size_t)n);
    for (i = 0; i < n; i++) y[i] *= x[i];
}
GMDEF gm_tensor *gm_silu(gm_graph *g, gm_tensor *x) { return gm__unary(g, GM__OP_SILU, gm__silu_map, x, 0, 0); }
static gm_tensor *gm__silu_grad(gm_graph *g, gm_tensor *dy, gm_tensor *x);
/* d/dx x s(x) = s (1 + x (1 - s)): one fused pass, the op SILU_GRAD. */
static void gm__silu_backward(gm_graph *g, gm_tensor *y) { gm__accumulate(g, y->src[0], gm__silu_grad(g, y->grad, y->src[0])); }

/* Fused elementwise ops of two or three same-shape inputs: y = vfused(op) in fixed blocks. */
typedef struct { int op; const float *a, *b, *c; float *y; const float *f; } gm__fused_job;

static void gm__fused_range(void *ctx, int lo, int hi) {
    const gm__fused_job *j = (const gm__fused_job *)ctx;
    gm__vfused(j->op, j->y + lo, j->a + lo, j->b ? j->b + lo : NULL, j->c ? j->c + lo : NULL, (size_t)(hi - lo), j->f);
}

static void gm__fused_run(int op, float *y, const float *a, const float *b, const float *c, int n) {
    static const float f[4] = {0, 0, 0, 0};
    gm__fused_job job;
    job.op = op; job.a = a; job.b = b; job.c = c; job.y = y; job.f = f;
    gm__parallel_blocks(n, GM__EW_BLOCK, n, gm__fused_range, &job);
}

/* dx = dy s (1 + x (1 - s)), s = sigmoid(x), in one pass (the vector sigmoid inside). */
static gm_tensor *gm__silu_grad(gm_graph *g, gm_tensor *dy, gm_tensor *x) {
    gm_tensor *dx;
    if (!g || !dy || !x) return NULL;
    dx = gm__new_like(g, x);
    if (!dx) return NULL;
    gm__fused_run(GM__FU_SILU_GRAD, dx->data, dy->data, x->data, NULL, x->size);
    return gm__record(g, dx, GM__OP_SILU_GRAD, dy, x, NULL);
}
/* d/ddy = v f'(x): the op again; d/dx = v dy f''(x), f'' = s (1 - s) (2 + x - 2 x s). */
static void gm__silu_grad_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *dy = y->src[0], *x = y->src[1], *v = y->grad;
    if (GM__WANT(dy)) gm__accumulate(g, dy, gm__silu_grad(g, v, x));
    if (GM__WANT(x)) {
        gm_tensor *s = gm_sigmoid(g, x);
        gm_tensor *f2 = gm_mul(g, gm_mul(g, s, gm_affine(g, s, -1.0f, 1.0f)),
                               gm_sub(g, gm_affine(g, x, 1.0f, 2.0f), gm_scale(g, gm_mul(g, x, s), 2.0f)));
        gm__accumulate(g, x, gm_mul(g, gm_mul(g, v, dy), f2));
    }
}

/* ---- the gated unit ---- */
/* y (N,C,...) from the halves of x (N,2C,...); fused maps over row segments: element i of y (or
   of either half of dx) is at row i / chw, offset i % chw, chw = C * pixels. */
typedef struct { int op; const float *dy, *x; float *y; int chw; } gm__gate_job;

static void gm__gate_range(void *ctx, int lo, int hi) {
    static const float f[4] = {0, 0, 0, 0};
    const gm__gate_job *j = (const gm__gate_job *)ctx;
    while (lo < hi) {
        const int n = lo / j->chw, off = lo % j->chw, len = GM__MIN(hi - lo, j->chw - off);
        const float *a = j->x + (size_t)n * 2 * j->chw + off, *b = a + j->chw;
        if (j->op == GM__FU_GATE) {
            gm__vfused(GM__FU_GATE, j->y + lo, a, b, NULL, (size_t)len, f);
        } else {   /* dx: row n's two halves */
            float *da = j->y + (size_t)n * 2 * j->chw + off;
            gm__vfused(GM__FU_GATE_DA, da, j->dy + lo, a, b, (size_t)len, f);
            gm__vfused(GM__FU_GATE_DB, da + j->chw, j->dy + lo, a, b, (size_t)len, f);
        }
        lo += len;
    }
}

static void gm__gate_run(int op, const float *dy, const float *x, float *y, int n, int chw) {
    gm__gate_job job;
    job.op = op; job.dy = dy; job.x = x; job.y = y; job.chw = chw;
    gm__parallel_blocks(n * chw, GM__EW_BLOCK, n * chw * (op == GM__FU_GATE ? 1 : 2), gm__gate_range, &job);
}

GMDEF gm_tensor *gm_gate(gm_graph *g, gm_tensor *x) {
    gm_tensor *y;
    int shape[4], k;
    char s1[64];
    if (!g || !x) return NULL;
    if (x->ndim < 2 || x->shape[1] % 2 != 0) {
        gm__graph_error(g, "gm_gate: input %s needs an even dim 1 (N,2C,...)", gm__shape_text(x, s1));
        return NULL;
    }
    for (k = 0; k < x->ndim; k++) shape[k] = x->shape[k];
    shape[1] /= 2;
    y = gm__new(g, x->ndim, shape);
    if (!y) return NULL;
    gm__gate_run(GM__FU_GATE, NULL, x->data, y->data, shape[0], y->size / shape[0]);
    return gm__record(g, y, GM__OP_GATE, x, NULL, NULL);
}

/* dx (N,2C,...): [dy s (1 - t^2), dy t s (1 - s)] with t = tanh(first half), s = sigmoid(second). */
static gm_tensor *gm__gate_grad(gm_graph *g, gm_tensor *dy, gm_tensor *x) {
    gm_tensor *dx;
    if (!dy || !x) return NULL;
    dx = gm__new_like(g, x);
    if (!dx) return NULL;
    gm__gate_run(GM__FU_GATE_DA, dy->data, x->data, dx->data, x->shape[0], dy->size / x->shape[0]);
    return gm__record(g, dx, GM__OP_GATE_GRAD, dy, x, NULL);
}
static void gm__gate_backward(gm_graph *g, gm_tensor *y) { gm__accumulate(g, y->src[0], gm__gate_grad(g, y->grad, y->src[0])); }

/* With v = (va, vb) the gradient of dx, t1 = 1 - t^2, s1 = s (1 - s):
   d/ddy = va s t1 + vb t s1;  d/da = dy t1 (vb s1 - 2 va s t);  d/db = dy s1 (va t1 + vb t (1 - 2s)). */
static void gm__gate_grad_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *dy = y->src[0], *x = y->src[1], *v = y->grad;
    const int c = x->shape[1] / 2;
    gm_tensor *t = gm_tanh(g, gm_slice(g, x, 1, 0, c)), *s = gm_sigmoid(g, gm_slice(g, x, 1, c, c));
    gm_tensor *va = gm_slice(g, v, 1, 0, c), *vb = gm_slice(g, v, 1, c, c);
    gm_tensor *t1 = gm_affine(g, gm_square(g, t), -1.0f, 1.0f), *s1 = gm_mul(g, s, gm_affine(g, s, -1.0f, 1.0f));
    if (GM__WANT(dy)) gm__accumulate(g, dy, gm_add(g, gm_mul(g, gm_mul(g, va, s), t1), gm_mul(g, gm_mul(g, vb, t), s1)));
    if (GM__WANT(x)) {
        gm_tensor *da = gm_mul(g, gm_mul(g, dy, t1), gm_sub(g, gm_mul(g, vb, s1), gm_scale(g, gm_mul(g, gm_mul(g, va, s), t), 2.0f)));
        gm_tensor *db = gm_mul(g, gm_mul(g, dy, s1),
                               gm_add(g, gm_mul(g, va, t1), gm_mul(g, gm_mul(g, vb, t), gm_affine(g, s, -2.0f, 1.0f))));
        gm__accumulate(g, x, gm_concat(g, da, db, 1));
    }
}

/* ---- built from the ops above ---- */
GMDEF gm_tensor *gm_bias_add(gm_graph *g, gm_tensor *x, gm_tensor *b) {
    char s1[64], s2[64];
    if (!g || !x || !b) return NULL;
    if (x->ndim < 2 || b->size != x->shape[1]) {
        gm__graph_error(g, "gm_bias_add: bias %s does not match dim 1 of %s", gm__shape_text(b, s1), gm__shape_text(x, s2));
        return NULL;
    }
    if (x->ndim == 2) return gm_add(g, x, b->ndim == 1 ? b : gm_reshape(g, b, b->size, 0, 0, 0));
    return gm_add(g, x, gm_reshape(g, b, b->size, 1, x->ndim == 4 ? 1 : 0, 0));
}

/* Dropout masks come from a counter-based hash of (a seed drawn per call, element index) rather
   than a sequential generator: blocks of the mask fill in parallel, and the mask is the same
   whatever the thread count. The hash is Wellons' "lowbias32" integer mixer. */
static uint32_t gm__hash32(uint32_t x) {
    x ^= x >> 16; x *= 0x7feb352du;
    x ^= x >> 15; x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

typedef struct { float *mask; uint32_t seed, threshold; float scale; } gm__dropout_job;

static void gm__dropout_range(void *ctx, int lo, int hi) {
    const gm__dropout_job *j = (const gm__dropout_job *)ctx;
    int i;
    for (i = lo; i < hi; i++)   /* keep with probability 1 - p: 24 random bits >= p * 2^24 */
        j->mask[i] = (gm__hash32(j->seed + (uint32_t)i * 0x9E3779B9u) >> 8) >= j->threshold ? j->scale : 0.0f;
}

GMDEF gm_tensor *gm_dropout(gm_graph *g, gm_tensor *x, float p) {
    gm__dropout_job job;
    gm_tensor *mask;
    if (!g || !x) return NULL;
    if (!(p >= 0.0f && p < 1.0f)) { gm__graph_error(g, "gm_dropout: p = %g must be in [0, 1)", (double)p); return NULL; }
    if (!g->training || p == 0.0f) return x;
    mask = gm__new_like(g, x);
    if (!mask) return NULL;
    job.mask = mask->data;
    job.seed = gm_rng_u32(&g->rng);
    job.threshold = (uint32_t)ceil((double)p * 16777216.0);
    job.scale = 1.0f / (1.0f - p);
    gm__parallel_blocks(x->size, GM__EW_BLOCK, x->size, gm__dropout_range, &job);
    return gm_mul(g, x, mask);
}

/* ======================================================================================= */
/* Reductions and softmax                                                                  */
/* ======================================================================================= */
/* Reductions, and broadcasting to a shape (their adjoint). */
/* Row iteration over a big tensor (a: contiguous) and a small one (b: 0 strides where broadcast),
   collapsed to long rows. */
static void gm__bcast_iter(const gm_tensor *big, const gm_tensor *small, gm__bcast *it) {
    int db[4], ds[4];
    gm__pad4(big, db);
    gm__pad4(small, ds);
    memcpy(it->n, db, sizeof db);
    gm__strides4(db, db, it->sa);
    gm__strides4(ds, db, it->sb);
    gm__bcast_collapse(it);
}

/* y = x summed down to y's shape (same ndim as x; reduced dims are 1). Serial and in a fixed order,
   so results never depend on the thread count. */
static void gm__sum_to_kernel(const gm_tensor *x, const gm_tensor *y) {
    gm__bcast it;   /* a: x, b: y */
    int i0, i1, i2, i3, q;
    const float *px = x->data;
    gm__bcast_iter(x, y, &it);
    memset(y->data, 0, (size_t)y->size * sizeof(float));
    for (i0 = 0; i0 < it.n[0]; i0++)
        for (i1 = 0; i1 < it.n[1]; i1++)
            for (i2 = 0; i2 < it.n[2]; i2++) {
                float *py = y->data + i0 * it.sb[0] + i1 * it.sb[1] + i2 * it.sb[2];
                if (it.sb[3] == 0) {   /* the row sums into one element: 8 partial sums, fixed order */
                    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sum = 0;
                    for (i3 = 0; i3 + 8 <= it.n[3]; i3 += 8)
                        for (q = 0; q < 8; q++) part[q] += px[i3 + q];
                    for (; i3 < it.n[3]; i3++) part[0] += px[i3];
                    for (q = 0; q < 8; q++) sum += part[q];
                    py[0] += sum;
                } else {
                    gm__vbinary(GM__EW_ADD, py, py, 1, px, 1, it.n[3]);
                }
                px += it.n[3];
            }
}

static gm_tensor *gm__sum_to(gm_graph *g, gm_tensor *x, int ndim, const int *shape) {
    gm_tensor *y;
    if (!g || !x) return NULL;
    if (ndim == x->ndim && memcmp(shape, x->shape, (size_t)ndim * sizeof(int)) == 0) return x;
    y = gm__new(g, ndim, shape);
    if (!y) return NULL;
    gm__sum_to_kernel(x, y);
    return gm__record(g, y, GM__OP_SUM_TO, x, NULL, NULL);
}

static void gm__expand_kernel(const gm_tensor *x, const gm_tensor *y) {
    gm__bcast it;   /* a: y, b: x */
    int i0, i1, i2, i3;
    float *py = y->data;
    gm__bcast_iter(y, x, &it);
    for (i0 = 0; i0 < it.n[0]; i0++)
        for (i1 = 0; i1 < it.n[1]; i1++)
            for (i2 = 0; i2 < it.n[2]; i2++) {
                const float *px = x->data + i0 * it.sb[0] + i1 * it.sb[1] + i2 * it.sb[2];
                if (it.sb[3] == 0) for (i3 = 0; i3 < it.n[3]; i3++) py[i3] = px[0];
                else memcpy(py, px, (size_t)it.n[3] * sizeof(float));
                py += it.n[3];
            }
}

static gm_tensor *gm__expand(gm_graph *g, gm_tensor *x, int ndim, const int *shape) {
    gm_tensor *y;
    int dx[4], k, off;
    if (!g || !x) return NULL;
    if (ndim == x->ndim && memcmp(shape, x->shape, (size_t)ndim * sizeof(int)) == 0) return x;
    gm__pad4(x, dx);
    off = 4 - ndim;
    for (k = 0; k < 4; k++) {
        int want = k < off ? 1 : shape[k - off];
        if (ndim < x->ndim || (dx[k] != 1 && dx[k] != want)) {
            char s1[64];
            gm__graph_error(g, "gm_expand: %s cannot be broadcast to %d dims (%d,%d,%d,%d)", gm__shape_text(x, s1), ndim,
                            shape[0], ndim > 1 ? shape[1] : 0, ndim > 2 ? shape[2] : 0, ndim > 3 ? shape[3] : 0);
            return NULL;
        }
    }
    y = gm__new(g, ndim, shape);
    if (!y) return NULL;
    gm__expand_kernel(x, y);
    return gm__record(g, y, GM__OP_EXPAND, x, NULL, NULL);
}

/* sum_to and expand are each other's adjoint. */
static void gm__sum_to_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *x = y->src[0];
    gm__accumulate(g, x, gm__expand(g, y->grad, x->ndim, x->shape));
}
static void gm__expand_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *x = y->src[0];
    gm__accumulate(g, x, gm__sum_to(g, y->grad, x->ndim, x->shape));
}

GMDEF gm_tensor *gm_expand(gm_graph *g, gm_tensor *x, int d0, int d1, int d2, int d3) {
    int ndim, shape[4];
    if (!g || !x || gm__shape4(g, "gm_expand", d0, d1, d2, d3, &ndim, shape) != 0) return NULL;
    return gm__expand(g, x, ndim, shape);
}

GMDEF gm_tensor *gm_sum_axes(gm_graph *g, gm_tensor *x, int axes) {
    int shape[4], k;
    if (!g || !x) return NULL;
    if (axes <= 0 || axes >= (1 << x->ndim)) {
        gm__graph_error(g, "gm_sum_axes: axis mask 0x%x does not fit a %d-D tensor", (unsigned)axes, x->ndim);
        return NULL;
    }
    for (k = 0; k < x->ndim; k++) shape[k] = (axes & (1 << k)) ? 1 : x->shape[k];
    return gm__sum_to(g, x, x->ndim, shape);
}

GMDEF gm_tensor *gm_mean_axes(gm_graph *g, gm_tensor *x, int axes) {
    gm_tensor *s = gm_sum_axes(g, x, axes);
    return s ? gm_scale(g, s, (float)s->size / (float)x->size) : NULL;
}

GMDEF gm_tensor *gm_sum(gm_graph *g, gm_tensor *x) {
    gm_tensor *s;
    if (!g || !x) return NULL;
    s = gm_sum_axes(g, x, (1 << x->ndim) - 1);
    return s ? gm_reshape(g, s, 1, 0, 0, 0) : NULL;
}

GMDEF gm_tensor *gm_mean(gm_graph *g, gm_tensor *x) {
    gm_tensor *s = gm_sum(g, x);
    return s ? gm_scale(g, s, 1.0f / (float)x->size) : NULL;
}

GMDEF gm_tensor *gm_sum_rows(gm_graph *g, gm_tensor *x) {
    gm_tensor *s;
    if (!g || !x) return NULL;
    if (x->ndim == 1) return x;
    s = gm_sum_axes(g, x, ((1 << x->ndim) - 1) & ~1);
    return s ? gm_reshape(g, s, x->shape[0], 0, 0, 0) : NULL;
}

/* Softmax family over the last axis, max-subtracted for stability. */
static gm_tensor *gm__softmax_op(gm_graph *g, gm_tensor *x, int log_form) {
    gm_tensor *y;
    int r, i, n, rows;
    if (!g || !x) return NULL;
    y = gm__new_like(g, x);
    if (!y) return NULL;
    n = x->shape[x->ndim - 1];
    rows = x->size / n;
    for (r = 0; r < rows; r++) {
        const float *xr = x->data + (size_t)r * n;
        float *yr = y->data + (size_t)r * n, mx = xr[0], s = 0;
        for (i = 1; i < n; i++) mx = xr[i] > mx ? xr[i] : mx;
        for (i = 0; i < n; i++) yr[i] = xr[i] - mx;
        if (log_form) {
            for (i = 0; i < n; i++) s += expf(yr[i]);
            s = logf(s);
            for (i = 0; i < n; i++) yr[i] -= s;
        } else {
            gm__vexp(yr, yr, (size_t)n);
            for (i = 0; i < n; i++) s += yr[i];
            for (i = 0; i < n; i++) yr[i] /= s;
        }
    }
    return gm__record(g, y, log_form ? GM__OP_LOG_SOFTMAX : GM__OP_SOFTMAX, x, NULL, NULL);
}

GMDEF gm_tensor *gm_softmax(gm_graph *g, gm_tensor *x) { return gm__softmax_op(g, x, 0); }
/* dx = y (dy - sum(dy y)) */
static void gm__softmax_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *dy = y->grad, *d = gm_sum_axes(g, gm_mul(g, dy, y), 1 << (y->ndim - 1));
    gm__accumulate(g, y->src[0], gm_mul(g, y, gm_sub(g, dy, d)));
}

GMDEF gm_tensor *gm_log_softmax(gm_graph *g, gm_tensor *x) { return gm__softmax_op(g, x, 1); }
/* dx = dy - softmax(x) sum(dy) */
static void gm__log_softmax_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *dy = y->grad, *d = gm_sum_axes(g, dy, 1 << (y->ndim - 1));
    gm__accumulate(g, y->src[0], gm_sub(g, dy, gm_mul(g, gm_exp(g, y), d)));
}

/* ======================================================================================= */
/* Shape ops                                                                               */
/* ======================================================================================= */
static gm_tensor *gm__reshape(gm_graph *g, gm_tensor *x, int ndim, const int *shape) {
    gm_tensor *y;
    int k;
    if (!g || !x) return NULL;
    y = GM__CAST(gm_tensor *, gm__alloc(g, sizeof(gm_tensor)));
    if (!y) return NULL;
    memset(y, 0, sizeof *y);
    y->ndim = ndim;
    for (k = 0; k < ndim; k++) y->shape[k] = shape[k];
    y->size = x->size;
    y->data = x->data;   /* a view: values are never written after creation */
    y->id = -1;
    return gm__record(g, y, GM__OP_RESHAPE, x, NULL, NULL);
}
static void gm__reshape_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *x = y->src[0];
    gm__accumulate(g, x, gm__reshape(g, y->grad, x->ndim, x->shape));
}

GMDEF gm_tensor *gm_reshape(gm_graph *g, gm_tensor *x, int d0, int d1, int d2, int d3) {
    int d[4], k, ndim = 0, infer = -1;
    long long known = 1;
    char s1[64];
    if (!g || !x) return NULL;
    d[0] = d0; d[1] = d1; d[2] = d2; d[3] = d3;
    for (k = 0; k < 4 && d[k] != 0; k++) {
        if (d[k] == -1 && infer < 0) infer = k;
        else if (d[k] <= 0) { ndim = -1; break; }
        else known *= d[k];
        ndim++;
    }
    /* FIX(test_core): a nonzero dim after the terminating zero, e.g. (6,0,1,0), was silently
       dropped; the d0..d3 convention (and gm__shape4) rejects such gaps. */
    for (k = ndim > 0 ? ndim : 4; k < 4; k++)
        if (d[k] != 0) ndim = -1;
    if (ndim > 0 && infer >= 0 && known > 0 && x->size % known == 0) d[infer] = (int)(x->size / known);
    else if (ndim > 0 && infer >= 0) ndim = -1;
    if (ndim <= 0 || gm__shape_size(ndim, d) != x->size) {
        gm__graph_error(g, "gm_reshape: cannot view %s as (%d,%d,%d,%d)", gm__shape_text(x, s1), d0, d1, d2, d3);
        return NULL;
    }
    return gm__reshape(g, x, ndim, d);
}

GMDEF gm_tensor *gm_flatten(gm_graph *g, gm_tensor *x) {
    if (!g || !x) return NULL;
    return gm_reshape(g, x, x->shape[0], x->size / x->shape[0], 0, 0);
}

static gm_tensor *gm__permute(gm_graph *g, gm_tensor *x, const int *perm) {
    int shape[4], dx[4], p4[4], k, i0, i1, i2, i3, off;
    long sx[4], s = 1, st[4];
    gm_tensor *y;
    float *py;
    if (!g || !x) return NULL;
    for (k = 0; k < x->ndim; k++) shape[k] = x->shape[perm[k]];
    y = gm__new(g, x->ndim, shape);
    if (!y) return NULL;
    for (k = x->ndim - 1; k >= 0; k--) { sx[k] = s; s *= x->shape[k]; }
    off = 4 - x->ndim;  /* pad to 4-D with leading unit dims */
    for (k = 0; k < 4; k++) {
        dx[k] = k < off ? 1 : shape[k - off];
        p4[k] = k < off ? -1 : perm[k - off];
        st[k] = p4[k] < 0 ? 0 : sx[p4[k]];
    }
    py = y->data;
    for (i0 = 0; i0 < dx[0]; i0++)
        for (i1 = 0; i1 < dx[1]; i1++)
            for (i2 = 0; i2 < dx[2]; i2++) {
                const float *px = x->data + i0 * st[0] + i1 * st[1] + i2 * st[2];
                for (i3 = 0; i3 < dx[3]; i3++) *py++ = px[i3 * st[3]];
            }
    for (k = 0; k < x->ndim; k++) y->state.perm[k] = perm[k];
    return gm__record(g, y, GM__OP_PERMUTE, x, NULL, NULL);
}
static void gm__permute_backward(gm_graph *g, gm_tensor *y) {
    int inv[4], k;
    for (k = 0; k < y->ndim; k++) inv[y->state.perm[k]] = k;
    gm__accumulate(g, y->src[0], gm__permute(g, y->grad, inv));
}

GMDEF gm_tensor *gm_permute(gm_graph *g, gm_tensor *x, int p0, int p1, int p2, int p3) {
    int perm[4], seen = 0, k;
    if (!g || !x) return NULL;
    perm[0] = p0; perm[1] = p1; perm[2] = p2; perm[3] = p3;
    for (k = 0; k < x->ndim; k++) {
        if (perm[k] < 0 || perm[k] >= x->ndim || (seen & (1 << perm[k]))) {
            gm__graph_error(g, "gm_permute: (%d,%d,%d,%d) is not a permutation of %d dims", p0, p1, p2, p3, x->ndim);
            return NULL;
        }
        seen |= 1 << perm[k];
    }
    return gm__permute(g, x, perm);
}

GMDEF gm_tensor *gm_transpose(gm_graph *g, gm_tensor *x) {
    if (g && x && x->ndim != 2) { gm__graph_error(g, "gm_transpose: needs a 2-D tensor, got %d-D", x->ndim); return NULL; }
    return gm_permute(g, x, 1, 0, 0, 0);
}

/* Copies `len` slices of axis from src (starting at src_start) into dst (starting at dst_start). */
static void gm__copy_axis(const gm_tensor *src, int src_start, const gm_tensor *dst, int dst_start, int axis, int len) {
    int k, o, outer = 1, inner = 1;
    for (k = 0; k < axis; k++) outer *= src->shape[k];
    for (k = axis + 1; k < src->ndim; k++) inner *= src->shape[k];
    for (o = 0; o < outer; o++)
        memcpy(dst->data + ((size_t)o * dst->shape[axis] + dst_start) * inner,
               src->data + ((size_t)o * src->shape[axis] + src_start) * inner, (size_t)len * inner * sizeof(float));
}

/* The adjoint of gm_slice: x placed at `start` of an axis of length `full`, zeros elsewhere. */
static gm_tensor *gm__pad(gm_graph *g, gm_tensor *x, int axis, int start, int full) {
    int shape[4];
    gm_tensor *y;
    if (!g || !x) return NULL;
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = full;
    y = gm__new(g, x->ndim, shape);
    if (!y) return NULL;
    memset(y->data, 0, (size_t)y->size * sizeof(float));
    gm__copy_axis(x, 0, y, start, axis, x->shape[axis]);
    y->state.slice.axis = axis; y->state.slice.start = start;
    return gm__record(g, y, GM__OP_PAD, x, NULL, NULL);
}
static void gm__pad_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *x = y->src[0];
    const int axis = y->state.slice.axis;
    gm__accumulate(g, x, gm_slice(g, y->grad, axis, y->state.slice.start, x->shape[axis]));
}

GMDEF gm_tensor *gm_slice(gm_graph *g, gm_tensor *x, int axis, int start, int len) {
    int shape[4];
    gm_tensor *y;
    char s1[64];
    if (!g || !x) return NULL;
    if (axis < 0 || axis >= x->ndim || start < 0 || len <= 0 || start + len > x->shape[axis]) {
        gm__graph_error(g, "gm_slice: [%d, %d) of axis %d is outside %s", start, start + len, axis, gm__shape_text(x, s1));
        return NULL;
    }
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = len;
    y = gm__new(g, x->ndim, shape);
    if (!y) return NULL;
    gm__copy_axis(x, start, y, 0, axis, len);
    y->state.slice.axis = axis; y->state.slice.start = start;
    return gm__record(g, y, GM__OP_SLICE, x, NULL, NULL);
}
static void gm__slice_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *x = y->src[0];
    const int axis = y->state.slice.axis;
    gm__accumulate(g, x, gm__pad(g, y->grad, axis, y->state.slice.start, x->shape[axis]));
}

GMDEF gm_tensor *gm_concat(gm_graph *g, gm_tensor *a, gm_tensor *b, int axis) {
    int shape[4], k;
    gm_tensor *y;
    char s1[64], s2[64];
    if (!g || !a || !b) return NULL;
    for (k = 0; k < a->ndim; k++)
        if (k != axis && (a->ndim != b->ndim || a->shape[k] != b->shape[k])) break;
    if (axis < 0 || axis >= a->ndim || a->ndim != b->ndim || k < a->ndim) {
        gm__graph_error(g, "gm_concat: %s and %s do not join along axis %d", gm__shape_text(a, s1), gm__shape_text(b, s2), axis);
        return NULL;
    }
    memcpy(shape, a->shape, sizeof shape);
    shape[axis] = a->shape[axis] + b->shape[axis];
    y = gm__new(g, a->ndim, shape);
    if (!y) return NULL;
    gm__copy_axis(a, 0, y, 0, axis, a->shape[axis]);
    gm__copy_axis(b, 0, y, a->shape[axis], axis, b->shape[axis]);
    y->state.slice.axis = axis;
    return gm__record(g, y, GM__OP_CONCAT, a, b, NULL);
}
static void gm__concat_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *a = y->src[0], *b = y->src[1];
    const int axis = y->state.slice.axis;
    if (GM__WANT(a)) gm__accumulate(g, a, gm_slice(g, y->grad, axis, 0, a->shape[axis]));
    if (GM__WANT(b)) gm__accumulate(g, b, gm_slice(g, y->grad, axis, a->shape[axis], b->shape[axis]));
}

static const int *gm__copy_labels(gm_graph *g, const int *labels, int n, int classes, const char *who) {
    int *copy, i;
    for (i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= classes) {
            gm__graph_error(g, "%s: label %d at index %d is outside 0..%d", who, labels[i], i, classes - 1);
            return NULL;
        }
    copy = GM__CAST(int *, gm__alloc(g, (size_t)n * sizeof(int)));
    if (copy) memcpy(copy, labels, (size_t)n * sizeof(int));
    return copy;
}

/* The adjoint of gm_gather: (N) -> (N,C) with x[i] at column labels[i]. */
static gm_tensor *gm__scatter(gm_graph *g, gm_tensor *x, const int *labels, int classes) {
    gm_tensor *y;
    int shape[2], i;
    if (!g || !x) return NULL;
    shape[0] = x->shape[0];
    shape[1] = classes;
    y = gm__new(g, 2, shape);
    if (!y) return NULL;
    memset(y->data, 0, (size_t)y->size * sizeof(float));
    for (i = 0; i < shape[0]; i++) y->data[(size_t)i * classes + labels[i]] = x->data[i];
    y->state.labels = labels;
    return gm__record(g, y, GM__OP_SCATTER, x, NULL, NULL);
}
static void gm__scatter_backward(gm_graph *g, gm_tensor *y) {
    gm__accumulate(g, y->src[0], gm_gather(g, y->grad, y->state.labels));
}

GMDEF gm_tensor *gm_gather(gm_graph *g, gm_tensor *x, const int *labels) {
    gm_tensor *y;
    int i, n, c;
    if (!g || !x) return NULL;
    if (!labels || x->ndim != 2) { gm__graph_error(g, "gm_gather: needs x (N,C) and labels"); return NULL; }
    n = x->shape[0];
    c = x->shape[1];
    y = gm__new(g, 1, &n);
    if (!y || !(y->state.labels = gm__copy_labels(g, labels, n, c, "gm_gather"))) return NULL;
    for (i = 0; i < n; i++) y->data[i] = x->data[(size_t)i * c + y->state.labels[i]];
    return gm__record(g, y, GM__OP_GATHER, x, NULL, NULL);
}
static void gm__gather_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *x = y->src[0];
    gm__accumulate(g, x, gm__scatter(g, y->grad, y->state.labels, x->shape[1]));
}

GMDEF gm_tensor *gm_one_hot(gm_graph *g, const int *labels, int n, int classes) {
    gm_tensor *y;
    int i;
    if (!g) return NULL;
    if (!labels || n <= 0 || classes <= 0) { gm__graph_error(g, "gm_one_hot: needs labels, n > 0, classes > 0"); return NULL; }
    y = gm_zeros(g, n, classes, 0, 0);
    if (!y || !gm__copy_labels(g, labels, n, classes, "gm_one_hot")) return NULL;
    for (i = 0; i < n; i++) y->data[(size_t)i * classes + labels[i]] = 1.0f;
    return y;
}

/* ======================================================================================= */
/* Matrix multiply, convolutions, pooling                                                  */
/* ======================================================================================= */
GMDEF gm_tensor *gm_matmul(gm_graph *g, gm_tensor *a, gm_tensor *b, int ta, int tb) {
    int m, k, k2, n, shape[2];
    gm_tensor *y;
    char s1[64], s2[64];
    if (!g || !a || !b) return NULL;
    if (a->ndim != 2 || b->ndim != 2) {
        gm__graph_error(g, "gm_matmul: needs 2-D operands, got %s and %s", gm__shape_text(a, s1), gm__shape_text(b, s2));
        return NULL;
    }
    m = ta ? a->shape[1] : a->shape[0];
    k = ta ? a->shape[0] : a->shape[1];
    k2 = tb ? b->shape[1] : b->shape[0];
    n = tb ? b->shape[0] : b->shape[1];
    if (k != k2) {
        gm__graph_error(g, "gm_matmul: inner dims differ: %s%s times %s%s", gm__shape_text(a, s1), ta ? "^T" : "",
                        gm__shape_text(b, s2), tb ? "^T" : "");
        return NULL;
    }
    shape[0] = m;
    shape[1] = n;
    y = gm__new(g, 2, shape);
    if (!y) return NULL;
    gm_sgemm(ta, tb, m, n, k, 1.0f, a->data, a->shape[1], b->data, b->shape[1], 0.0f, y->data, n);
    g->flops += 2.0 * m * n * k;
    y->state.matmul.ta = ta; y->state.matmul.tb = tb;
    return gm__record(g, y, GM__OP_MATMUL, a, b, NULL);
}
static void gm__matmul_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *a = y->src[0], *b = y->src[1], *dy = y->grad;
    const int ta = y->state.matmul.ta, tb = y->state.matmul.tb;
    if (GM__WANT(a))  /* dA = dY op(B)^T, transposed back if A was */
        gm__accumulate(g, a, ta ? gm_matmul(g, b, dy, tb, 1) : gm_matmul(g, dy, b, 0, !tb));
    if (GM__WANT(b))  /* dB = op(A)^T dY, transposed back if B was */
        gm__accumulate(g, b, tb ? gm_matmul(g, dy, a, 1, ta) : gm_matmul(g, a, dy, !ta, 0));
}

/* Batched matrix multiply: one GEMM per batch entry, the entries spread over the pool when there
   are at least as many as threads (each GEMM then runs whole on one thread; nested parallel loops
   run serially), else one after another with each GEMM threaded. Either way every entry is the
   bits gm_sgemm gives, whatever the thread count. */
typedef struct { int ta, tb, m, n, k; const float *a, *b; float *y; } gm__bmm_job;

static void gm__bmm_task(void *ctx, int t) {
    const gm__bmm_job *j = (const gm__bmm_job *)ctx;
    const size_t sa = (size_t)j->m * j->k, sb = (size_t)j->k * j->n, sy = (size_t)j->m * j->n;
    gm_sgemm(j->ta, j->tb, j->m, j->n, j->k, 1.0f, j->a + t * sa, j->ta ? j->m : j->k, j->b + t * sb, j->tb ? j->k : j->n,
             0.0f, j->y + t * sy, j->n);
}

GMDEF gm_tensor *gm_bmm(gm_graph *g, gm_tensor *a, gm_tensor *b, int ta, int tb) {
    gm__bmm_job j;
    int shape[3], t;
    gm_tensor *y;
    char s1[64], s2[64];
    if (!g || !a || !b) return NULL;
    if (a->ndim != 3 || b->ndim != 3 || a->shape[0] != b->shape[0] ||
        (ta ? a->shape[1] : a->shape[2]) != (tb ? b->shape[2] : b->shape[1])) {
        gm__graph_error(g, "gm_bmm: needs 3-D operands with the same batch and inner dims, got %s%s times %s%s",
                        gm__shape_text(a, s1), ta ? "^T" : "", gm__shape_text(b, s2), tb ? "^T" : "");
        return NULL;
    }
    j.ta = ta; j.tb = tb;
    j.m = ta ? a->shape[2] : a->shape[1];
    j.k = ta ? a->shape[1] : a->shape[2];
    j.n = tb ? b->shape[1] : b->shape[2];
    shape[0] = a->shape[0]; shape[1] = j.m; shape[2] = j.n;
    y = gm__new(g, 3, shape);
    if (!y) return NULL;
    j.a = a->data; j.b = b->data; j.y = y->data;
    if (shape[0] >= 2 && shape[0] >= gm_get_threads()) gm__parallel_for(shape[0], gm__bmm_task, &j);
    else for (t = 0; t < shape[0]; t++) gm__bmm_task(&j, t);
    g->flops += 2.0 * shape[0] * j.m * j.n * j.k;
    y->state.matmul.ta = ta; y->state.matmul.tb = tb;
    return gm__record(g, y, GM__OP_BMM, a, b, NULL);
}
/* As matmul's rule, entry by entry. */
static void gm__bmm_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *a = y->src[0], *b = y->src[1], *dy = y->grad;
    const int ta = y->state.matmul.ta, tb = y->state.matmul.tb;
    if (GM__WANT(a)) gm__accumulate(g, a, ta ? gm_bmm(g, b, dy, tb, 1) : gm_bmm(g, dy, b, 0, !tb));
    if (GM__WANT(b)) gm__accumulate(g, b, tb ? gm_bmm(g, dy, a, 1, ta) : gm_bmm(g, a, dy, !ta, 0));
}

/* Convolutions. The three ops below are one family: CONV (x, w) -> y is a convolution; CONVT
   (y, w) -> x is its adjoint in x (PyTorch's conv_transpose2d); WGRAD (x, y) -> w is its adjoint
   in w. Each one's derivatives are the other two, which gives every order of gradient. Each keeps
   the geometry (gm__conv_geom, in y->state.conv) for its backward rule. */

/* The output columns [ow0, ow1) whose input column ow*stride - pl + kj lies inside the image. */
static void gm__conv_inside(const gm__conv_geom *c, int kj, int *ow0, int *ow1) {
    int lo = c->pl - kj, hi = c->w - 1 + c->pl - kj;   /* need lo <= ow*stride <= hi */
    *ow0 = lo <= 0 ? 0 : (lo + c->stride - 1) / c->stride;
    *ow1 = hi < 0 ? 0 : GM__MIN(c->wo, hi / c->stride + 1);
    if (*ow1 < *ow0) *ow1 = *ow0;
}

/* Convolutions run batch-minor. The GEMM's columns are output positions major, images minor
   (column (oh*wo + ow)*n + img), and the image side is transposed to xt (cin, h, w, n), so every
   entry of a patch is a contiguous run of n floats, one per image: patches are packed and
   scatter-added as whole runs instead of short strided rows (at 7x7 outputs those rows are 7
   floats). The layouts:
     x  (n, cin, h, w)   <->  xt  (cin, h, w, n)
     col (cin*kh*kw, ho*wo*n)        row (ci*kh + ki)*kw + kj, column (oh*wo + ow)*n + img
     y  (n, cout, ho, wo) <-> ycn (cout, ho*wo, n) */

/* dst[j*dld + i] = src[i*sld + j] for a rows x cols block. */
static void gm__transpose(const float *src, size_t sld, float *dst, size_t dld, int rows, int cols) {
    gm__ops()->transpose(src, (int)sld, dst, (int)dld, rows, cols);
}

/* d[0..n) += s[0..n) in blocks of 8 that the compiler turns into vector adds (a run is one float
   per image: too short for a call through the path table to pay). */
static void gm__add_run(float *d, const float *s, int n) {
    int i, l;
    for (i = 0; i + 8 <= n; i += 8) {
        float u[8], v[8];
        memcpy(u, d + i, sizeof u);
        memcpy(v, s + i, sizeof v);
        for (l = 0; l < 8; l++) u[l] += v[l];
        memcpy(d + i, u, sizeof u);
    }
    for (; i < n; i++) d[i] += s[i];
}

/* The adjoint of im2col for input row t = ci*h + ih of xt: adds the patch entries that read it,
   from a chunk of col holding the output positions [p0, p1). The chunk starting at 0 first zeroes
   the row; given x, the last one also writes the finished row to x. Each element sums chunk by
   chunk, then in (ki, kj) order, whoever runs the row, so threads change no bit. */
static void gm__col2im_row(const gm__conv_geom *c, const float *col, float *xt, int t, int p0, int p1, float *x) {
    const int n = c->n, ci = t / c->h, ih = t % c->h;
    const size_t ncols = (size_t)(p1 - p0) * n;
    float *xrow = xt + (size_t)t * c->w * n;
    int ki, kj, ow, ow0, ow1;
    if (p0 == 0) memset(xrow, 0, (size_t)c->w * n * sizeof(float));
    for (ki = 0; ki < c->kh; ki++) {
        const int from = ih + c->pt - ki, oh = from / c->stride;   /* ih = oh*stride - pt + ki */
        if (from < 0 || from % c->stride != 0 || oh >= c->ho) continue;
        for (kj = 0; kj < c->kw; kj++) {
            /* col holds positions [p0, p1): column (oh*wo + ow - p0)*n + img */
            const float *in = col + ((size_t)(ci * c->kh + ki) * c->kw + kj) * ncols;
            gm__conv_inside(c, kj, &ow0, &ow1);
            ow0 = GM__MAX(ow0, p0 - oh * c->wo);
            ow1 = GM__MIN(ow1, p1 - oh * c->wo);
            for (ow = ow0; ow < ow1; ow++) {
                float *dst = xrow + (size_t)(ow * c->stride - c->pl + kj) * n;   /* input column of ow */
                gm__add_run(dst, in + (size_t)(oh * c->wo + ow - p0) * n, n);
            }
        }
    }
    if (x) /* the last chunk: the row is done, and still in cache; out to x (n, cin, h, w) */
        gm__transpose(xrow, (size_t)n, x + ((size_t)ci * c->h + ih) * c->w, (size_t)c->cin * c->h * c->w, c->w, n);
}

/* d[0..n) = s[0..n) in blocks of 8 that the compiler turns into vector moves. */
static void gm__copy_floats(float *d, const float *s, int n) {
    int i;
    for (i = 0; i + 8 <= n; i += 8) memcpy(d + i, s + i, 8 * sizeof(float));
    for (; i < n; i++) d[i] = s[i];
}

/* Implicit GEMM: CONV and WGRAD pack their patches straight from xt into the GEMM's B panels
   instead of writing col (cin*kh*kw x n*ho*wo floats: 12.8 MB for DCGAN's 128-channel layer, six
   times the L2) and reading it back to pack it. The panels hold the same floats, so the results
   are the same bits. A column range of col is cut into runs inside one output position: run r
   covers panel columns off..off+m, images img..img+m, at input row ihb + ki, column iwb + kj. */
typedef struct { const gm__conv_geom *c; const float *xt; } gm__patch_src;
typedef struct { int off, m, img, ihb, iwb; } gm__patch_run;
#define GM__MAXRUNS (GM__KC + 16) /* a K slice (WGRAD's column range) is at most this long */

static int gm__patch_runs(const gm__conv_geom *c, int c0, int cols, gm__patch_run *r) {
    int nrun = 0, j = c0;
    while (j < c0 + cols) {
        const int pos = j / c->n, img = j % c->n, m = GM__MIN(c0 + cols - j, c->n - img);
        r[nrun].off = j - c0; r[nrun].m = m; r[nrun].img = img;
        r[nrun].ihb = pos / c->wo * c->stride - c->pt;
        r[nrun].iwb = pos % c->wo * c->stride - c->pl;
        nrun++;
        j += m;
    }
    return nrun;
}

/* The patch entries of tap (ki, kj) of plane (xt of one channel) for run r -> d (m floats). A run
   is most often a whole panel row (NR floats: 32, 16 or 8) or WGRAD's tile row (16): those sizes
   are fixed-size copies the compiler inlines as a few vector moves instead of a call per run
   (these copies are 15-20% of a U-Net training step). */
static void gm__patch_copy(const gm__conv_geom *c, const float *plane, const gm__patch_run *r, int ki, int kj, float *d) {
    const int ih = r->ihb + ki, iw = r->iwb + kj;
    if (ih >= 0 && ih < c->h && iw >= 0 && iw < c->w) {
        const float *s = plane + ((size_t)ih * c->w + iw) * c->n + r->img;
        switch (r->m) {
        case 32: memcpy(d, s, 32 * sizeof(float)); break;
        case 16: memcpy(d, s, 16 * sizeof(float)); break;
        case 8: memcpy(d, s, 8 * sizeof(float)); break;
        default: gm__copy_floats(d, s, r->m); break;
        }
    } else
        memset(d, 0, (size_t)r->m * sizeof(float));
}

/* CONV's B = col: panel rows are taps k0.., columns c0.. */
static void gm__patch_fill(const void *ctx, int k0, int kc, int c0, int cols, int nr, float *dst) {
    const gm__patch_src *p = (const gm__patch_src *)ctx;
    const gm__conv_geom *c = p->c;
    gm__patch_run run[GM__NRMAX];
    const int nrun = gm__patch_runs(c, c0, cols, run);
    int k, r, ci = k0 / (c->kh * c->kw), ki = k0 / c->kw % c->kh, kj = k0 % c->kw;
    GENMOD_ASSERT(nr <= GM__NRMAX);
    for (k = 0; k < kc; k++, dst += nr) {
        const float *plane = p->xt + (size_t)ci * c->h * c->w * c->n;
        for (r = 0; r < nrun; r++) gm__patch_copy(c, plane, &run[r], ki, kj, dst + run[r].off);
        if (cols < nr) memset(dst + cols, 0, (size_t)(nr - cols) * sizeof(float));
        if (++kj == c->kw) { kj = 0; if (++ki == c->kh) { ki = 0; ci++; } }
    }
}

/* WGRAD's B = col^T: panel rows are columns k0.. of col, panel columns taps c0.. Each run is
   gathered tap by tap into a small tile, then transposed into the panel. */
static void gm__patch_fill_t(const void *ctx, int k0, int kc, int c0, int cols, int nr, float *dst) {
    enum { SPAN = 16 };
    const gm__patch_src *p = (const gm__patch_src *)ctx;
    const gm__conv_geom *c = p->c;
    gm__patch_run run[GM__MAXRUNS];
    const float *plane[GM__NRMAX];
    int tki[GM__NRMAX], tkj[GM__NRMAX], nrun, r, o, t, k;
    float tile[GM__NRMAX * SPAN];
    GENMOD_ASSERT(nr <= GM__NRMAX && kc <= GM__MAXRUNS);
    nrun = gm__patch_runs(c, k0, kc, run);
    for (t = 0; t < cols; t++) {
        const int tap = c0 + t;
        plane[t] = p->xt + (size_t)(tap / (c->kh * c->kw)) * c->h * c->w * c->n;
        tki[t] = tap / c->kw % c->kh;
        tkj[t] = tap % c->kw;
    }
    for (r = 0; r < nrun; r++)
        for (o = 0; o < run[r].m; o += SPAN) {
            gm__patch_run part = run[r];
            part.img += o;
            part.m = GM__MIN(SPAN, run[r].m - o);
            for (t = 0; t < cols; t++) gm__patch_copy(c, plane[t], &part, tki[t], tkj[t], tile + t * SPAN);
            gm__transpose(tile, SPAN, dst + (size_t)(run[r].off + o) * nr, (size_t)nr, cols, part.m);
        }
    if (cols < nr)
        for (k = 0; k < kc; k++) memset(dst + (size_t)k * nr + cols, 0, (size_t)(nr - cols) * sizeof(float));
}

/* The data movements around a convolution's GEMM, split into tasks on the pool. */
enum { GM__MOVE_COL2IM, GM__MOVE_TO_XT, GM__MOVE_NCHW_TO_CN, GM__MOVE_CN_TO_NCHW };
#define GM__MOVE_ROWS 64 /* rows of xt per transpose task */
typedef struct { int kind; const gm__conv_geom *c; const float *src, *bias; float *dst, *x; int ch, hw, p0, p1; } gm__conv_move;

static void gm__conv_move_task(void *ctx, int t) {
    const gm__conv_move *m = (const gm__conv_move *)ctx;
    const int n = m->c->n, f = m->ch * m->hw;   /* f: floats per image on the NCHW side */
    switch (m->kind) {
    case GM__MOVE_COL2IM: gm__col2im_row(m->c, m->src, m->dst, t, m->p0, m->p1, m->x); break;
    case GM__MOVE_TO_XT: {   /* rows [r0, r0 + GM__MOVE_ROWS) of xt */
        const int r0 = t * GM__MOVE_ROWS;
        gm__transpose(m->src + r0, (size_t)f, m->dst + (size_t)r0 * n, (size_t)n, n, GM__MIN(GM__MOVE_ROWS, f - r0));
        break;
    }
    case GM__MOVE_NCHW_TO_CN:   /* channel t */
        gm__transpose(m->src + (size_t)t * m->hw, (size_t)f, m->dst + (size_t)t * m->hw * n, (size_t)n, n, m->hw);
        break;
    default:   /* channel t, and its bias while the rows are in cache */
        gm__transpose(m->src + (size_t)t * m->hw * n, (size_t)n, m->dst + (size_t)t * m->hw, (size_t)f, m->hw, n);
        if (m->bias) {
            int img;
            for (img = 0; img < n; img++) {
                float *row = m->dst + (size_t)img * f + (size_t)t * m->hw;
                gm__vunary(GM__EW_AFFINE, row, row, (size_t)m->hw, 1.0f, m->bias[t]);
            }
        }
        break;
    }
}

static void gm__conv_move_go(gm__conv_move *m) {
    int ntasks;
    switch (m->kind) {
    case GM__MOVE_COL2IM: ntasks = m->c->cin * m->c->h; break;
    case GM__MOVE_TO_XT: ntasks = (m->ch * m->hw + GM__MOVE_ROWS - 1) / GM__MOVE_ROWS; break;
    default: ntasks = m->ch; break;
    }
    gm__parallel_for(ntasks, gm__conv_move_task, m);
}

/* A layout move of src into dst; ch, hw: the channels and positions per channel of the NCHW side. */
static void gm__conv_move_run(int kind, const gm__conv_geom *c, const float *src, float *dst, int ch, int hw) {
    gm__conv_move m;
    memset(&m, 0, sizeof m);
    m.kind = kind; m.c = c; m.src = src; m.dst = dst; m.ch = ch; m.hw = hw;
    gm__conv_move_go(&m);
}

/* col (a chunk: output positions [p0, p1)) added into xt; the last chunk passes x (see col2im_row). */
static void gm__col2im(const gm__conv_geom *c, const float *col, float *xt, int p0, int p1, float *x) {
    gm__conv_move m;
    memset(&m, 0, sizeof m);
    m.kind = GM__MOVE_COL2IM; m.c = c; m.src = col; m.dst = xt; m.x = x; m.p0 = p0; m.p1 = p1;
    gm__conv_move_go(&m);
}
static void gm__to_xt(const gm__conv_geom *c, const float *x, float *xt) {
    gm__conv_move_run(GM__MOVE_TO_XT, c, x, xt, c->cin, c->h * c->w);
}
static void gm__nchw_to_cn(const gm__conv_geom *c, const float *src, float *dst, int ch) {
    gm__conv_move_run(GM__MOVE_NCHW_TO_CN, c, src, dst, ch, c->ho * c->wo);
}
/* ... and adds bias[channel] (NULL: none) on the way. */
static void gm__cn_to_nchw(const gm__conv_geom *c, const float *src, float *dst, int ch, const float *bias) {
    gm__conv_move m;
    memset(&m, 0, sizeof m);
    m.kind = GM__MOVE_CN_TO_NCHW; m.c = c; m.src = src; m.dst = dst; m.ch = ch; m.hw = c->ho * c->wo; m.bias = bias;
    gm__conv_move_go(&m);
}

static double gm__conv_flops(const gm__conv_geom *c) {
    return 2.0 * c->n * c->cout * c->cin * c->kh * c->kw * c->ho * c->wo;
}

static void gm__conv_set(gm_tensor *t, const gm__conv_geom *c) { t->state.conv = *c; }

/* A CONVT of stride > 1 (stride 1 runs as a convolution, see gm__convt_geom) has its GEMM write
   its patches a chunk of output positions at a time (GM__NC columns, the
   GEMM's own column block: it packs W once per block anyway), and each chunk is added into xt while
   it is still in cache, instead of all n*ho*wo columns going out to memory and back. */
static int gm__convt_chunk(const gm__conv_geom *c) { return GM__MIN(c->ho * c->wo, GM__MAX(1, GM__NC / c->n)); }

/* The work buffers of a convolution (`col`: one CONVT chunk of patches, or a stride-1 CONVT's
   flipped weights; `ycn`: y channel-major;
   `xt`: x transposed) live only while the op runs, so they come from the graph's scratch space,
   reused by every conv op, not from the arena, where they would stay until the step ends. */
static int gm__conv_scratch(gm_graph *g, const gm__conv_geom *c, float **col, float **ycn, float **xt) {
    const size_t cols = (size_t)c->n * c->ho * c->wo, kk = (size_t)c->cin * c->kh * c->kw;
    /* col also holds the flipped weights of a stride-1 CONVT (gm__convt_flip) */
    const size_t ncol = (GM__MAX(kk * gm__convt_chunk(c) * c->n, kk * c->cout) + 15) & ~(size_t)15;
    const size_t nycn = ((size_t)c->cout * cols + 15) & ~(size_t)15;
    float *s = gm__graph_scratch(g, ncol + nycn + (size_t)c->n * c->cin * c->h * c->w);
    if (!s) return -1;
    *col = s;
    *ycn = s + ncol;
    *xt = s + ncol + nycn;
    return 0;
}

/* What a conv op may take from the scratch as the op before it in the same backward step left it
   (the two GEMMs of one backward share an operand): GM__HAVE_XT, its x transposed (xt); GM__HAVE_YCN,
   its y channel-major. */
enum { GM__HAVE_XT = 1, GM__HAVE_YCN = 2 };
/* A layer's bias in the conv op itself (gm_conv_forward), one add per element as gm_bias_add does
   (so the same bits) without a second full-size tensor: CONV adds it in its last layout move
   (gm__cn_to_nchw), CONVT in place on its fresh output here. */
typedef struct { float *y; const float *b; int c, hw; } gm__bias_job;
static void gm__bias_rows(void *ctx, int r0, int r1) {
    const gm__bias_job *j = (const gm__bias_job *)ctx;
    int r;
    for (r = r0; r < r1; r++)
        gm__vunary(GM__EW_AFFINE, j->y + (size_t)r * j->hw, j->y + (size_t)r * j->hw, (size_t)j->hw, 1.0f, j->b[r % j->c]);
}
static void gm__add_bias(gm_tensor *y, const gm_tensor *b) {
    gm__bias_job job;
    job.y = y->data; job.b = b->data; job.c = y->shape[1]; job.hw = y->shape[2] * y->shape[3];
    gm__parallel_blocks(y->shape[0] * job.c, GM__MAX(1, GM__EW_BLOCK / job.hw), y->size, gm__bias_rows, &job);
}
/* Its gradient: dy summed to (C,1,1), then to the bias's shape, as gm_bias_add's rule gives it. */
static void gm__bias_backward(gm_graph *g, gm_tensor *b, gm_tensor *dy) {
    const int cs[3] = {dy->shape[1], 1, 1};
    if (GM__WANT(b)) gm__accumulate(g, b, gm__reshape(g, gm__sum_to(g, dy, 3, cs), b->ndim, b->shape));
}

/* each conv op's backward rule runs the other two */
static gm_tensor *gm__convt_forward(gm_graph *g, gm_tensor *y, gm_tensor *w, const gm__conv_geom *c, int have, gm_tensor *bias);
static gm_tensor *gm__wgrad_forward(gm_graph *g, gm_tensor *x, gm_tensor *y, const gm__conv_geom *c, int have);

static gm_tensor *gm__conv_forward(gm_graph *g, gm_tensor *x, gm_tensor *w, const gm__conv_geom *c, int have, gm_tensor *bias) {
    int shape[4];
    size_t kk = (size_t)c->cin * c->kh * c->kw, cols = (size_t)c->n * c->ho * c->wo;
    float *col, *ycn, *xt;
    gm__patch_src src;
    gm_tensor *y;
    shape[0] = c->n; shape[1] = c->cout; shape[2] = c->ho; shape[3] = c->wo;
    y = gm__new(g, 4, shape);
    if (!y || gm__conv_scratch(g, c, &col, &ycn, &xt) != 0) return NULL;
    if (!(have & GM__HAVE_XT)) gm__to_xt(c, x->data, xt);
    src.c = c; src.xt = xt;
    gm__sgemm_implicit(c->cout, (int)cols, (int)kk, w->data, (int)kk, gm__patch_fill, &src, ycn, (int)cols);
    gm__cn_to_nchw(c, ycn, y->data, c->cout, bias ? bias->data : NULL);
    g->flops += gm__conv_flops(c);
    gm__conv_set(y, c);
    return gm__record(g, y, GM__OP_CONV, x, w, bias);
}
/* y = conv(x, w): dx = convT(dy, w), dw = wgrad(x, dy). The two GEMMs of a conv op's backward share
   an operand: CONV's both read dy channel-major (ycn), CONVT's both read dx transposed (xt). The
   second takes it from the scratch as the first left it (neither GEMM writes it). */
static void gm__conv_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *x = y->src[0], *w = y->src[1], *first = NULL;
    gm__bias_backward(g, y->src[2], y->grad);
    if (GM__WANT(x)) gm__accumulate(g, x, first = gm__convt_forward(g, y->grad, w, &y->state.conv, 0, NULL));
    if (GM__WANT(w)) gm__accumulate(g, w, gm__wgrad_forward(g, x, y->grad, &y->state.conv, first ? GM__HAVE_YCN : 0));
}

/* A stride-1 CONVT is itself a convolution: x[ih, iw] = sum over (co, a, b) of
   y[ih - pt' + a, iw - pl' + b] w[co, ci, kh-1-a, kw-1-b], with pt' = kh-1-pt, pl' = kw-1-pl (rows
   outside y read as zero). So it runs as CONV does -- an implicit GEMM packing patches of y's
   channel-major copy (ycn has xt's layout) -- instead of writing every patch (kh*kw times dx's
   size) and adding them back (col2im). The geometry of that convolution: y's side is its input. */
static void gm__convt_geom(const gm__conv_geom *c, gm__conv_geom *f) {
    f->n = c->n; f->cin = c->cout; f->h = c->ho; f->w = c->wo; f->cout = c->cin;
    f->kh = c->kh; f->kw = c->kw; f->stride = 1;
    f->pt = c->kh - 1 - c->pt; f->pl = c->kw - 1 - c->pl;
    f->ho = c->h; f->wo = c->w;
}
/* wf (cin, cout, kh, kw) = w (cout, cin, kh, kw) with the channels swapped and the taps flipped. */
static void gm__convt_flip(const gm__conv_geom *c, const float *w, float *wf) {
    const int taps = c->kh * c->kw;
    int co, ci, t;
    for (co = 0; co < c->cout; co++)
        for (ci = 0; ci < c->cin; ci++)
            for (t = 0; t < taps; t++)
                wf[((size_t)ci * c->cout + co) * taps + (taps - 1 - t)] = w[((size_t)co * c->cin + ci) * taps + t];
}

static gm_tensor *gm__convt_forward(gm_graph *g, gm_tensor *y, gm_tensor *w, const gm__conv_geom *c, int have, gm_tensor *bias) {
    const int chunk = gm__convt_chunk(c);
    int shape[4], p0;
    size_t kk = (size_t)c->cin * c->kh * c->kw, cols = (size_t)c->n * c->ho * c->wo;
    float *col, *ycn, *xt;
    gm_tensor *x;
    shape[0] = c->n; shape[1] = c->cin; shape[2] = c->h; shape[3] = c->w;
    x = gm__new(g, 4, shape);
    if (!x || gm__conv_scratch(g, c, &col, &ycn, &xt) != 0) return NULL;
    if (!(have & GM__HAVE_YCN)) gm__nchw_to_cn(c, y->data, ycn, c->cout);
    if (c->stride == 1) {
        /* as a convolution (above): flipped weights in col, the result channel-major in xt's place
           (ycn stays as it is: the WGRAD after a CONV's CONVT reads it) */
        gm__conv_geom f;
        gm__patch_src src;
        gm__convt_geom(c, &f);
        gm__convt_flip(c, w->data, col);
        src.c = &f; src.xt = ycn;
        gm__sgemm_implicit(c->cin, c->n * c->h * c->w, (int)(c->cout * c->kh * c->kw), col, c->cout * c->kh * c->kw,
                           gm__patch_fill, &src, xt, c->n * c->h * c->w);
        gm__cn_to_nchw(&f, xt, x->data, c->cin, bias ? bias->data : NULL);
    } else {
        for (p0 = 0; p0 < c->ho * c->wo; p0 += chunk) {
            const int p1 = GM__MIN(c->ho * c->wo, p0 + chunk), nc = (p1 - p0) * c->n;
            gm_sgemm(1, 0, (int)kk, nc, c->cout, 1.0f, w->data, (int)kk, ycn + (size_t)p0 * c->n, (int)cols, 0.0f, col, nc);
            gm__col2im(c, col, xt, p0, p1, p1 == c->ho * c->wo ? x->data : NULL);
        }
        if (bias) gm__add_bias(x, bias);
    }
    g->flops += gm__conv_flops(c);
    gm__conv_set(x, c);
    return gm__record(g, x, GM__OP_CONVT, y, w, bias);
}
/* x = convT(y, w): dy = conv(dx, w), dw = wgrad(dx, y), sharing dx transposed */
static void gm__conv_transpose_backward(gm_graph *g, gm_tensor *x) {
    gm_tensor *y = x->src[0], *w = x->src[1], *first = NULL;
    gm__bias_backward(g, x->src[2], x->grad);
    if (GM__WANT(y)) gm__accumulate(g, y, first = gm__conv_forward(g, x->grad, w, &x->state.conv, 0, NULL));
    if (GM__WANT(w)) gm__accumulate(g, w, gm__wgrad_forward(g, x->grad, y, &x->state.conv, first ? GM__HAVE_XT : 0));
}

static gm_tensor *gm__wgrad_forward(gm_graph *g, gm_tensor *x, gm_tensor *y, const gm__conv_geom *c, int have) {
    int shape[4];
    size_t kk = (size_t)c->cin * c->kh * c->kw, cols = (size_t)c->n * c->ho * c->wo;
    float *col, *ycn, *xt;
    gm__patch_src src;
    gm_tensor *w;
    shape[0] = c->cout; shape[1] = c->cin; shape[2] = c->kh; shape[3] = c->kw;
    w = gm__new(g, 4, shape);
    if (!w || gm__conv_scratch(g, c, &col, &ycn, &xt) != 0) return NULL;
    if (!(have & GM__HAVE_XT)) gm__to_xt(c, x->data, xt);
    if (!(have & GM__HAVE_YCN)) gm__nchw_to_cn(c, y->data, ycn, c->cout);
    src.c = c; src.xt = xt;
    gm__sgemm_implicit(c->cout, (int)kk, (int)cols, ycn, (int)cols, gm__patch_fill_t, &src, w->data, (int)kk);
    g->flops += gm__conv_flops(c);
    gm__conv_set(w, c);
    return gm__record(g, w, GM__OP_WGRAD, x, y, NULL);
}
/* w = wgrad(x, y): dx = convT(y, dw), dy = conv(x, dw) */
static void gm__conv_wgrad_backward(gm_graph *g, gm_tensor *w) {
    gm_tensor *x = w->src[0], *y = w->src[1];
    if (GM__WANT(x)) gm__accumulate(g, x, gm__convt_forward(g, y, w->grad, &w->state.conv, 0, NULL));
    if (GM__WANT(y)) gm__accumulate(g, y, gm__conv_forward(g, x, w->grad, &w->state.conv, 0, NULL));
}

/* Geometry from x-side dims (n,cin,h,w), y-side channels, a kh x kw kernel, stride, and padding
   (top, bottom, left, right): input row oh*stride - pt + ki, column ow*stride - pl + kj. */
static int gm__geom(gm_graph *g, const char *who, gm__conv_geom *c, int n, int cin, int h, int w, int cout, int kh,
                    int kw, int stride, int pt, int pb, int pl, int pr) {
    c->n = n; c->cin = cin; c->h = h; c->w = w; c->cout = cout; c->kh = kh; c->kw = kw; c->stride = stride;
    c->pt = pt; c->pl = pl;
    if (kh <= 0 || kw <= 0 || stride <= 0 || pt < 0 || pb < 0 || pl < 0 || pr < 0 || h + pt + pb < kh ||
        w + pl + pr < kw) {
        gm__graph_error(g, "%s: kernel %dx%d, stride %d, padding (top %d, bottom %d, left %d, right %d) do not fit a %dx%d input",
                        who, kh, kw, stride, pt, pb, pl, pr, h, w);
        return -1;
    }
    c->ho = (h + pt + pb - kh) / stride + 1;
    c->wo = (w + pl + pr - kw) / stride + 1;
    return 0;
}

/* bias: NULL, or (Cout) added inside the op (gm_conv_forward). */
static gm_tensor *gm__conv2d(gm_graph *g, gm_tensor *x, gm_tensor *w, int stride, int pad_t, int pad_b, int pad_l,
                             int pad_r, gm_tensor *bias) {
    gm__conv_geom c;
    char s1[64], s2[64];
    if (!g || !x || !w) return NULL;
    if (x->ndim != 4 || w->ndim != 4 || w->shape[1] != x->shape[1] || (bias && bias->size != w->shape[0])) {
        gm__graph_error(g, "gm_conv2d: input %s and weight %s%s: want (N,Cin,H,W) and (Cout,Cin,kh,kw)%s",
                        gm__shape_text(x, s1), gm__shape_text(w, s2), bias ? " with a bias" : "", bias ? " and Cout biases" : "");
        return NULL;
    }
    if (gm__geom(g, "gm_conv2d", &c, x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2],
                 w->shape[3], stride, pad_t, pad_b, pad_l, pad_r) != 0) return NULL;
    return gm__conv_forward(g, x, w, &c, 0, bias);
}

GMDEF gm_tensor *gm_conv2d_ex(gm_graph *g, gm_tensor *x, gm_tensor *w, int stride, int pad_t, int pad_b, int pad_l,
                              int pad_r) {
    return gm__conv2d(g, x, w, stride, pad_t, pad_b, pad_l, pad_r, NULL);
}

/* The square, symmetric case. */
GMDEF gm_tensor *gm_conv2d(gm_graph *g, gm_tensor *x, gm_tensor *w, int stride, int pad) {
    char s1[64];
    if (g && w && (w->ndim != 4 || w->shape[2] != w->shape[3])) {
        gm__graph_error(g, "gm_conv2d: weight %s is not (Cout,Cin,k,k) (gm_conv2d_ex takes kh x kw)", gm__shape_text(w, s1));
        return NULL;
    }
    return gm_conv2d_ex(g, x, w, stride, pad, pad, pad, pad);
}

static gm_tensor *gm__conv_transpose2d(gm_graph *g, gm_tensor *x, gm_tensor *w, int stride, int pad, int out_pad,
                                       gm_tensor *bias) {
    gm__conv_geom c;
    int h, wd;
    char s1[64], s2[64];
    if (!g || !x || !w) return NULL;
    if (x->ndim != 4 || w->ndim != 4 || w->shape[0] != x->shape[1] || w->shape[2] != w->shape[3] ||
        out_pad < 0 || out_pad >= GM__MAX(stride, 1) || (bias && bias->size != w->shape[1])) {
        gm__graph_error(g, "gm_conv_transpose2d: input %s, weight %s, out_pad %d: want (N,Cin,H,W), (Cin,Cout,k,k), "
                        "0 <= out_pad < stride", gm__shape_text(x, s1), gm__shape_text(w, s2), out_pad);
        return NULL;
    }
    h = (x->shape[2] - 1) * stride - 2 * pad + w->shape[2] + out_pad;
    wd = (x->shape[3] - 1) * stride - 2 * pad + w->shape[2] + out_pad;
    if (h <= 0 || wd <= 0 || gm__geom(g, "gm_conv_transpose2d", &c, x->shape[0], w->shape[1], h, wd, x->shape[1],
                                      w->shape[2], w->shape[2], stride, pad, pad, pad, pad) != 0) {
        if (h <= 0 || wd <= 0) gm__graph_error(g, "gm_conv_transpose2d: output would be %dx%d", h, wd);
        return NULL;
    }
    return gm__convt_forward(g, x, w, &c, 0, bias);
}

GMDEF gm_tensor *gm_conv_transpose2d(gm_graph *g, gm_tensor *x, gm_tensor *w, int stride, int pad, int out_pad) {
    return gm__conv_transpose2d(g, x, w, stride, pad, out_pad, NULL);
}

static gm_tensor *gm__pool_op(gm_graph *g, gm_tensor *x, int f, int up) {
    int shape[4], n, h, w, i, j;
    gm_tensor *y;
    char s1[64];
    if (!g || !x) return NULL;
    if (x->ndim != 4 || f <= 0 || (!up && (x->shape[2] % f || x->shape[3] % f))) {
        gm__graph_error(g, "%s: factor %d does not fit %s", up ? "gm_upsample_nearest" : "gm_avg_pool", f, gm__shape_text(x, s1));
        return NULL;
    }
    shape[0] = x->shape[0]; shape[1] = x->shape[1];
    shape[2] = up ? x->shape[2] * f : x->shape[2] / f;
    shape[3] = up ? x->shape[3] * f : x->shape[3] / f;
    y = gm__new(g, 4, shape);
    if (!y) return NULL;
    h = shape[2]; w = shape[3];
    for (n = 0; n < shape[0] * shape[1]; n++) {
        float *yp = y->data + (size_t)n * h * w;
        const float *xp = x->data + (size_t)n * x->shape[2] * x->shape[3];
        if (up) {
            for (i = 0; i < h; i++)
                for (j = 0; j < w; j++) yp[i * w + j] = xp[(i / f) * x->shape[3] + j / f];
        } else {
            memset(yp, 0, (size_t)h * w * sizeof(float));
            for (i = 0; i < x->shape[2]; i++)
                for (j = 0; j < x->shape[3]; j++) yp[(i / f) * w + j / f] += xp[i * x->shape[3] + j];
            for (i = 0; i < h * w; i++) yp[i] *= 1.0f / (float)(f * f);
        }
    }
    y->state.factor = f;
    return gm__record(g, y, up ? GM__OP_UPSAMPLE : GM__OP_AVGPOOL, x, NULL, NULL);
}

GMDEF gm_tensor *gm_upsample_nearest(gm_graph *g, gm_tensor *x, int factor) { return gm__pool_op(g, x, factor, 1); }
/* each input pixel was copied f*f times: sum them = f^2 * average */
static void gm__upsample_backward(gm_graph *g, gm_tensor *y) {
    const int f = y->state.factor;
    gm__accumulate(g, y->src[0], gm_scale(g, gm_avg_pool(g, y->grad, f), (float)(f * f)));
}

GMDEF gm_tensor *gm_avg_pool(gm_graph *g, gm_tensor *x, int k) { return gm__pool_op(g, x, k, 0); }
static void gm__avg_pool_backward(gm_graph *g, gm_tensor *y) {
    const int f = y->state.factor;
    gm__accumulate(g, y->src[0], gm_scale(g, gm_upsample_nearest(g, y->grad, f), 1.0f / (float)(f * f)));
}

/* ======================================================================================= */
/* Losses and log-densities                                                                */
/* ======================================================================================= */
/* Written with the ops above, so they differentiate to any order. */
static int gm__check_same(gm_graph *g, const char *who, const gm_tensor *a, const gm_tensor *b) {
    char s1[64], s2[64];
    if (gm__same_shape(a, b)) return 0;
    gm__graph_error(g, "%s: shapes %s and %s differ", who, gm__shape_text(a, s1), gm__shape_text(b, s2));
    return -1;
}

GMDEF gm_tensor *gm_l1(gm_graph *g, gm_tensor *pred, gm_tensor *target) {
    return gm_mean(g, gm_abs(g, gm_sub(g, pred, target)));
}

GMDEF gm_tensor *gm_mse(gm_graph *g, gm_tensor *pred, gm_tensor *target) {
    if (!g || !pred || !target || gm__check_same(g, "gm_mse", pred, target)) return NULL;
    return gm_mean(g, gm_square(g, gm_sub(g, pred, target)));
}

/* Elementwise softplus(z) - z*t: the binary cross-entropy of logit z against target t. */
static gm_tensor *gm__bce_terms(gm_graph *g, gm_tensor *z, gm_tensor *t) {
    return gm_sub(g, gm_softplus(g, z), gm_mul(g, z, t));
}

GMDEF gm_tensor *gm_bce_logits(gm_graph *g, gm_tensor *logits, gm_tensor *target) {
    if (!g || !logits || !target || gm__check_same(g, "gm_bce_logits", logits, target)) return NULL;
    return gm_mean(g, gm__bce_terms(g, logits, target));
}

GMDEF gm_tensor *gm_softmax_xent(gm_graph *g, gm_tensor *logits, const int *labels) {
    if (!g || !logits) return NULL;
    return gm_neg(g, gm_mean(g, gm_gather(g, gm_log_softmax(g, logits), labels)));
}

GMDEF gm_tensor *gm_bernoulli_loglik(gm_graph *g, gm_tensor *logits, gm_tensor *x) {
    if (!g || !logits || !x || gm__check_same(g, "gm_bernoulli_loglik", logits, x)) return NULL;
    return gm_neg(g, gm_sum_rows(g, gm__bce_terms(g, logits, x)));
}

GMDEF gm_tensor *gm_gaussian_loglik(gm_graph *g, gm_tensor *x, gm_tensor *mu, gm_tensor *logvar) {
    gm_tensor *sq, *terms;
    if (!g || !x || !mu || !logvar) return NULL;
    if (gm__check_same(g, "gm_gaussian_loglik", x, mu)) return NULL;
    /* log N(x; mu, e^lv) = -0.5 (log 2pi + lv + (x - mu)^2 e^-lv); logvar may broadcast (a learned scalar) */
    sq = gm_mul(g, gm_square(g, gm_sub(g, x, mu)), gm_exp(g, gm_neg(g, logvar)));
    terms = gm_affine(g, gm_add(g, sq, logvar), -0.5f, -0.91893853320467274f);
    return gm_sum_rows(g, terms);
}

GMDEF gm_tensor *gm_kl_std_normal(gm_graph *g, gm_tensor *mu, gm_tensor *logvar) {
    gm_tensor *inner;
    if (!g || !mu || !logvar || gm__check_same(g, "gm_kl_std_normal", mu, logvar)) return NULL;
    /* KL = -0.5 sum(1 + lv - mu^2 - e^lv) */
    inner = gm_sub(g, gm_sub(g, logvar, gm_square(g, mu)), gm_exp(g, logvar));
    return gm_sum_rows(g, gm_affine(g, inner, -0.5f, -0.5f));
}

/* ======================================================================================= */
/* Automatic differentiation                                                               */
/* ======================================================================================= */
/* Reverse pass from y (seeded with dy) over the tape: each op's backward rule, from the table of
   op descriptors (see "the ops" under "Graphs and tensors"). Marks which tape entries lie on a path
   from `from` (or from any leaf when from is NULL) to y, so nothing else is computed: a tensor is
   marked when its mark equals this pass's number, so entries older than `from` need no visit at all
   (FFJORD's exact trace takes one pass per dimension on a long tape). Backward ops are recorded only
   when create_graph is set, which is what makes gradients differentiable. */
static int gm__backprop(gm_graph *g, gm_tensor *y, gm_tensor *dy, gm_tensor *from, int create_graph) {
    int k, j, saved = g->record, top = y->id, bottom = from ? from->id : 0;
    g->pass++;
    for (k = bottom; k <= top; k++) {
        gm_tensor *t = g->tape[k];
        int on_path = !from || t == from;
        for (j = 0; j < 3 && !on_path; j++) on_path = t->src[j] && t->src[j]->id >= bottom && t->src[j]->mark == g->pass;
        t->grad = NULL;
        t->mark = on_path ? g->pass : 0;
    }
    if (y->mark != g->pass) return 0;   /* y does not depend on `from` */
    g->record = create_graph;
    y->grad = dy;
    for (k = top; k >= bottom; k--) {
        gm_tensor *t = g->tape[k];
        if (t->grad && t->mark == g->pass) gm__op_table[t->op].backward(g, t);
        if (g->error[0]) break;
    }
    g->record = saved;
    return g->error[0] ? -1 : 0;
}

static int gm__check_scalar_loss(gm_graph *g, gm_tensor *loss, const char *who) {
    if (!loss) {
        gm__graph_error(g, "%s: loss is NULL (an earlier op failed: %s)", who, g->error[0] ? g->error : gm_last_error());
        return -1;
    }
    if (loss->size != 1) { gm__graph_error(g, "%s: loss must be a single value, has %d", who, loss->size); return -1; }
    if (!isfinite(loss->data[0])) {
        gm__graph_error(g, "%s: loss is %s; not training on it (check the learning rate and the data)", who,
                        isnan(loss->data[0]) ? "NaN" : "infinite");
        return -1;
    }
    return 0;
}

/* y += x over n floats, on the SIMD path and, when big, split over the pool in fixed blocks. */
typedef struct { float *y; const float *x; } gm__add_job;

static void gm__add_range(void *ctx, int lo, int hi) {
    const gm__add_job *j = (const gm__add_job *)ctx;
    gm__vbinary(GM__EW_ADD, j->y + lo, j->y + lo, 1, j->x + lo, 1, hi - lo);
}

static void gm__add_into(float *y, const float *x, int n) {
    gm__add_job job;
    job.y = y; job.x = x;
    gm__parallel_blocks(n, GM__EW_BLOCK, n, gm__add_range, &job);
}

GMDEF int gm_backward(gm_graph *g, gm_tensor *loss) {
    gm_tensor *seed;
    int k;
    if (!g) return gm_fail("gm_backward: graph is NULL");
    if (gm__check_scalar_loss(g, loss, "gm_backward") != 0) return -1;
    if (!loss->requires_grad) return 0;   /* nothing trainable feeds it */
    seed = gm_full(g, 1.0f, 1, 0, 0, 0);
    if (!seed || gm__backprop(g, loss, gm__reshape(g, seed, loss->ndim, loss->shape), NULL, 0) != 0) return -1;
    for (k = 0; k <= loss->id; k++) {
        gm_tensor *t = g->tape[k];
        if (t->param_grad && t->grad) gm__add_into(t->param_grad, t->grad->data, t->size);
    }
    return 0;
}

static gm_tensor *gm__zeros_like(gm_graph *g, const gm_tensor *x) {
    gm_tensor *z = gm__new_like(g, x);
    if (z) memset(z->data, 0, (size_t)z->size * sizeof(float));
    return z;
}

GMDEF gm_tensor *gm_grad(gm_graph *g, gm_tensor *y, gm_tensor *x, int create_graph) {
    gm_tensor *seed;
    int k;
    if (!g || !y || !x) return NULL;
    if (!x->requires_grad) {
        gm__graph_error(g, "gm_grad: x is not tracked; call gm_requires_grad(x) before computing with it");
        return NULL;
    }
    if (x->id < 0) return gm__zeros_like(g, x);  /* a tracked leaf no op has used yet */
    seed = gm__new_like(g, y);
    if (!seed) return NULL;
    for (k = 0; k < seed->size; k++) seed->data[k] = 1.0f;
    x->grad = NULL;   /* may hold an earlier gm_grad's result; no pass below clears it if y ignores x */
    if (y->requires_grad && y->id >= x->id && gm__backprop(g, y, seed, x, create_graph) != 0) return NULL;
    return x->grad ? x->grad : gm__zeros_like(g, x);
}

/* Builds fn on fresh copies of the inputs, with the graph's random stream restarted, so every
   evaluation (analytic and each finite difference) sees the same dropout masks and noise. */
static gm_tensor *gm__gradcheck_eval(gm_graph *g, gm_fn fn, void *ctx, int n, float **values, const int (*shapes)[4],
                                     gm_tensor **inputs) {
    int i;
    gm_graph_reset(g);
    gm_rng_seed(&g->rng, 12345);
    for (i = 0; i < n; i++)
        inputs[i] = gm_requires_grad(gm_input(g, values[i], shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]));
    return fn(g, inputs, ctx);
}

GMDEF double gm_gradcheck(gm_fn fn, void *ctx, int n, float **values, const int (*shapes)[4], float h) {
    gm_graph *g = gm_graph_new(1);
    gm_tensor *inputs[16], *out;
    float *analytic[16];
    double worst_diff = 0, worst_num = 0;
    int i, j, ok = g != NULL && n > 0 && n <= 16;
    memset(analytic, 0, sizeof analytic);
    for (i = 0; ok && i < n; i++) {
        out = gm__gradcheck_eval(g, fn, ctx, n, values, shapes, inputs);
        ok = out && out->size == 1 && inputs[i];
        if (ok) {
            gm_tensor *d = gm_grad(g, out, inputs[i], 0);
            analytic[i] = GM__CAST(float *, GENMOD_MALLOC((size_t)inputs[i]->size * sizeof(float)));
            ok = d && analytic[i];
            if (ok) memcpy(analytic[i], d->data, (size_t)d->size * sizeof(float));
        }
    }
    for (i = 0; ok && i < n; i++)
        for (j = 0; ok && j < inputs[i]->size; j++) {
            float keep = values[i][j];
            double plus, minus, num;
            values[i][j] = keep + h;
            out = gm__gradcheck_eval(g, fn, ctx, n, values, shapes, inputs);
            plus = out ? out->data[0] : 0;
            values[i][j] = keep - h;
            ok = out != NULL && (out = gm__gradcheck_eval(g, fn, ctx, n, values, shapes, inputs)) != NULL;
            minus = out ? out->data[0] : 0;
            values[i][j] = keep;
            num = (plus - minus) / (2.0 * h);
            worst_diff = GM__MAX(worst_diff, fabs(num - analytic[i][j]));
            worst_num = GM__MAX(worst_num, fabs(num));
            if (!isfinite(num) || !isfinite(analytic[i][j])) worst_diff = INFINITY;
        }
    if (!ok) gm_fail("gm_gradcheck: %s", g && g->error[0] ? g->error : "fn must return a single value");
    for (i = 0; i < n; i++) GENMOD_FREE(analytic[i]);
    gm_graph_free(g);
    return ok ? worst_diff / GM__MAX(1e-3, worst_num) : -1.0;
}

/* ======================================================================================= */
/* Layers                                                                                  */
/* ======================================================================================= */
/* Adds "<prefix>.<suffix>" with the given shape; -1 on failure. */
static int gm__add_view(gm_params *p, const char *prefix, const char *suffix, int ndim, int d0, int d1, int d2, int d3) {
    char name[GM_NAME_MAX * 2];
    int shape[4];
    shape[0] = d0; shape[1] = d1; shape[2] = d2; shape[3] = d3;
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    if (strlen(name) >= GM_NAME_MAX) return gm_fail("layer name '%s' is too long", name);
    return gm_params_add(p, name, ndim, shape);
}

/* Weights get `init`; biases follow PyTorch (U(+-1/sqrt(fan_in))) for GM_INIT_TORCH, zero otherwise. */
static void gm__init_layer(gm_params *p, int w, int b, int init, int fan_in, int fan_out, gm_rng *r) {
    gm_init_weights(r, gm_params_data(p, w), p->views[w].size, init, fan_in, fan_out);
    if (b >= 0) gm_init_weights(r, gm_params_data(p, b), p->views[b].size, init == GM_INIT_TORCH ? init : GM_INIT_ZERO,
                                fan_in, fan_out);
}

GMDEF int gm_linear_init(gm_linear *l, gm_params *p, const char *name, int in, int out, int init, gm_rng *r) {
    if (!l || !p || !name || !r || in <= 0 || out <= 0) return gm_fail("gm_linear_init: bad arguments for '%s'", name ? name : "?");
    l->p = p; l->in = in; l->out = out;
    if ((l->w = gm__add_view(p, name, "weight", 2, out, in, 0, 0)) < 0) return -1;
    if ((l->b = gm__add_view(p, name, "bias", 1, out, 0, 0, 0)) < 0) return -1;
    gm__init_layer(p, l->w, l->b, init, in, out, r);
    return 0;
}

GMDEF gm_tensor *gm_linear_forward(gm_graph *g, const gm_linear *l, gm_tensor *x) {
    char s1[64];
    if (!g || !l || !x) return NULL;
    if (x->ndim != 2 || x->shape[1] != l->in) {
        gm__graph_error(g, "gm_linear_forward: '%s' wants (N,%d), got %s", l->p->views[l->w].name, l->in, gm__shape_text(x, s1));
        return NULL;
    }
    return gm_bias_add(g, gm_matmul(g, x, gm_param(g, l->p, l->w), 0, 1), gm_param(g, l->p, l->b));
}

static int gm__conv_layer_init(gm_conv *c, gm_params *p, const char *name, int cin, int cout, int k, int stride, int pad,
                               int out_pad, int transposed, int init, gm_rng *r) {
    int fan_in;
    if (!c || !p || !name || !r || cin <= 0 || cout <= 0 || k <= 0 || stride <= 0 || pad < 0)
        return gm_fail("conv layer '%s': bad arguments", name ? name : "?");
    memset(c, 0, sizeof *c);
    c->p = p; c->cin = cin; c->cout = cout; c->k = k; c->stride = stride; c->pad = pad;
    c->out_pad = out_pad; c->transposed = transposed;
    c->w = transposed ? gm__add_view(p, name, "weight", 4, cin, cout, k, k) : gm__add_view(p, name, "weight", 4, cout, cin, k, k);
    if (c->w < 0 || (c->b = gm__add_view(p, name, "bias", 1, cout, 0, 0, 0)) < 0) return -1;
    fan_in = (transposed ? cout : cin) * k * k;   /* PyTorch computes fan_in from weight dim 1 */
    gm__init_layer(p, c->w, c->b, init, fan_in, (transposed ? cin : cout) * k * k, r);
    return 0;
}

GMDEF int gm_conv_init(gm_conv *c, gm_params *p, const char *name, int cin, int cout, int k, int stride, int pad,
                       int init, gm_rng *r) {
    return gm__conv_layer_init(c, p, name, cin, cout, k, stride, pad, 0, 0, init, r);
}

GMDEF int gm_conv_transpose_init(gm_conv *c, gm_params *p, const char *name, int cin, int cout, int k, int stride,
                                 int pad, int out_pad, int init, gm_rng *r) {
    return gm__conv_layer_init(c, p, name, cin, cout, k, stride, pad, out_pad, 1, init, r);
}

GMDEF gm_tensor *gm_conv_forward(gm_graph *g, const gm_conv *c, gm_tensor *x) {
    gm_tensor *w, *b;
    if (!g || !c || !x) return NULL;
    w = gm_param(g, c->p, c->w);
    b = gm_param(g, c->p, c->b);
    if (!w || !b) return NULL;
    /* the bias is added inside the conv op: one full-size tensor per layer instead of two */
    return c->transposed ? gm__conv_transpose2d(g, x, w, c->stride, c->pad, c->out_pad, b)
                         : gm__conv2d(g, x, w, c->stride, c->pad, c->pad, c->pad, c->pad, b);
}

GMDEF int gm_batchnorm_init(gm_batchnorm *bn, gm_params *p, const char *name, int channels) {
    int i;
    float *var;
    if (!bn || !p || !name || channels <= 0) return gm_fail("gm_batchnorm_init: bad arguments");
    bn->p = p; bn->c = channels; bn->momentum = 0.1f; bn->eps = 1e-5f;
    if ((bn->gamma = gm__add_view(p, name, "weight", 1, channels, 0, 0, 0)) < 0 ||
        (bn->beta = gm__add_view(p, name, "bias", 1, channels, 0, 0, 0)) < 0 ||
        (bn->mean = gm__add_view(p, name, "running_mean", 1, channels, 0, 0, 0)) < 0 ||
        (bn->var = gm__add_view(p, name, "running_var", 1, channels, 0, 0, 0)) < 0) return -1;
    gm_params_mark_buffer(p, bn->mean);
    gm_params_mark_buffer(p, bn->var);
    for (i = 0, var = gm_params_data(p, bn->var); i < channels; i++) var[i] = 1.0f;
    for (i = 0, var = gm_params_data(p, bn->gamma); i < channels; i++) var[i] = 1.0f;
    return 0;
}

/* Reshapes a per-channel vector to broadcast along dim 1 of x. */
static gm_tensor *gm__per_channel(gm_graph *g, gm_tensor *v, const gm_tensor *x) {
    return gm_reshape(g, v, 1, v->size, x->ndim == 4 ? 1 : 0, x->ndim == 4 ? 1 : 0);
}

static void gm__update_running(const gm_batchnorm *bn, const gm_tensor *mean, const gm_tensor *var, int count) {
    float *rm = gm_params_data(bn->p, bn->mean), *rv = gm_params_data(bn->p, bn->var);
    float unbias = count > 1 ? (float)count / (float)(count - 1) : 1.0f;  /* PyTorch keeps the unbiased variance */
    int i;
    for (i = 0; i < bn->c; i++) {
        rm[i] = (1 - bn->momentum) * rm[i] + bn->momentum * mean->data[i];
        rv[i] = (1 - bn->momentum) * rv[i] + bn->momentum * var->data[i] * unbias;
    }
}

GMDEF gm_tensor *gm_batchnorm_forward(gm_graph *g, const gm_batchnorm *bn, gm_tensor *x) {
    gm_tensor *mean, *var, *gamma, *beta, *scale;
    int axes;
    char s1[64];
    if (!g || !bn || !x) return NULL;
    if ((x->ndim != 2 && x->ndim != 4) || x->shape[1] != bn->c) {
        gm__graph_error(g, "gm_batchnorm_forward: %d channels, input %s", bn->c, gm__shape_text(x, s1));
        return NULL;
    }
    /* y = (x - mean) * scale + beta with scale = gamma / sqrt(var + eps) per channel: the
       per-channel factors are folded first, so the full-size tensor sees as few passes as possible. */
    axes = x->ndim == 2 ? GM_AXIS(0) : GM_AXIS(0) | GM_AXIS(2) | GM_AXIS(3);
    gamma = gm__per_channel(g, gm_param(g, bn->p, bn->gamma), x);
    beta = gm__per_channel(g, gm_param(g, bn->p, bn->beta), x);
    if (g->training) {
        gm_tensor *xc;
        mean = gm_mean_axes(g, x, axes);
        xc = gm_sub(g, x, mean);
        var = gm_mean_axes(g, gm_square(g, xc), axes);
        if (!var) return NULL;
        gm__update_running(bn, mean, var, x->size / bn->c);
        scale = gm_mul(g, gamma, gm_pow(g, gm_affine(g, var, 1.0f, bn->eps), -0.5f));
        return gm_add(g, gm_mul(g, xc, scale), beta);
    }
    /* eval: y = x * scale + (beta - mean * scale), two passes over x */
    mean = gm__per_channel(g, gm_detach(g, gm_param(g, bn->p, bn->mean)), x);
    var = gm__per_channel(g, gm_detach(g, gm_param(g, bn->p, bn->var)), x);
    scale = gm_mul(g, gamma, gm_pow(g, gm_affine(g, var, 1.0f, bn->eps), -0.5f));
    return gm_add(g, gm_mul(g, x, scale), gm_sub(g, beta, gm_mul(g, mean, scale)));
}

GMDEF int gm_layernorm_init(gm_layernorm *ln, gm_params *p, const char *name, int features) {
    int i;
    float *gamma;
    if (!ln || !p || !name || features <= 0) return gm_fail("gm_layernorm_init: bad arguments");
    ln->p = p; ln->n = features; ln->eps = 1e-5f;
    if ((ln->gamma = gm__add_view(p, name, "weight", 1, features, 0, 0, 0)) < 0 ||
        (ln->beta = gm__add_view(p, name, "bias", 1, features, 0, 0, 0)) < 0) return -1;
    for (i = 0, gamma = gm_params_data(p, ln->gamma); i < features; i++) gamma[i] = 1.0f;
    return 0;
}

GMDEF gm_tensor *gm_layernorm_forward(gm_graph *g, const gm_layernorm *ln, gm_tensor *x) {
    gm_tensor *flat, *xc, *var, *y;
    char s1[64];
    if (!g || !ln || !x) return NULL;
    if (x->ndim < 2 || x->size / x->shape[0] != ln->n) {
        gm__graph_error(g, "gm_layernorm_forward: %d features, input %s", ln->n, gm__shape_text(x, s1));
        return NULL;
    }
    flat = gm_reshape(g, x, x->shape[0], ln->n, 0, 0);
    xc = gm_sub(g, flat, gm_mean_axes(g, flat, GM_AXIS(1)));
    var = gm_mean_axes(g, gm_square(g, xc), GM_AXIS(1));
    y = gm_mul(g, xc, gm_pow(g, gm_affine(g, var, 1.0f, ln->eps), -0.5f));
    y = gm_add(g, gm_mul(g, y, gm_param(g, ln->p, ln->gamma)), gm_param(g, ln->p, ln->beta));
    return y ? gm__reshape(g, y, x->ndim, x->shape) : NULL;
}

GMDEF int gm_groupnorm_init(gm_groupnorm *gn, gm_params *p, const char *name, int channels, int groups) {
    int i;
    float *gamma;
    if (!gn || !p || !name || channels <= 0 || groups <= 0 || channels % groups != 0)
        return gm_fail("gm_groupnorm_init: '%s': %d channels in %d groups (need groups > 0 dividing channels)",
                       name ? name : "(null)", channels, groups);
    gn->p = p; gn->channels = channels; gn->groups = groups; gn->eps = 1e-5f;
    if ((gn->gamma = gm__add_view(p, name, "weight", 1, channels, 0, 0, 0)) < 0 ||
        (gn->beta = gm__add_view(p, name, "bias", 1, channels, 0, 0, 0)) < 0) return -1;
    for (i = 0, gamma = gm_params_data(p, gn->gamma); i < channels; i++) gamma[i] = 1.0f;
    return 0;
}

/* ---- group norm ---- */
/* One op: the forward keeps (mean, 1/std) of each (example, group) and applies the per-channel
   affine in the same pass; its rule is one fused op too (GN_GRAD: dx, with dgamma and dbeta from
   the same pass as GN_DPARAM tensors). Each group of an example is a contiguous run of
   K = C/groups * pixels floats, worked on whole by one thread, so results do not depend on the
   thread count. Sums use 8 partial sums in a fixed order (vectorizable by the compiler). */
typedef struct {
    const float *x, *dy, *gamma, *beta;
    float *y, *dx, *stats, *psum, *pxsum;   /* psum, pxsum: per (example, channel) sums of dy, dy*xhat */
    int c, groups, hw, act;                 /* act: silu after the norm (dy is then silu's upstream) */
    float eps;
} gm__gn_job;

static float gm__gn_sum(const float *x, int n) {
    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0;
    int i, q;
    for (i = 0; i + 8 <= n; i += 8)
        for (q = 0; q < 8; q++) part[q] += x[i + q];
    for (; i < n; i++) part[0] += x[i];
    for (q = 0; q < 8; q++) s += part[q];
    return s;
}

/* sum (x - m)^2, or sum dy (x - m) when dy is given */
static float gm__gn_dev(const float *dy, const float *x, float m, int n) {
    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0;
    int i, q;
    if (dy) {
        for (i = 0; i + 8 <= n; i += 8)
            for (q = 0; q < 8; q++) part[q] += dy[i + q] * (x[i + q] - m);
        for (; i < n; i++) part[0] += dy[i] * (x[i] - m);
    } else {
        for (i = 0; i + 8 <= n; i += 8)
            for (q = 0; q < 8; q++) part[q] += (x[i + q] - m) * (x[i + q] - m);
        for (; i < n; i++) part[0] += (x[i] - m) * (x[i] - m);
    }
    for (q = 0; q < 8; q++) s += part[q];
    return s;
}

static void gm__gn_forward_blocks(void *ctx, int b0, int b1) {
    const gm__gn_job *j = (const gm__gn_job *)ctx;
    const int cg = j->c / j->groups, k = cg * j->hw;
    int b, c;
    for (b = b0; b < b1; b++) {
        const float *xb = j->x + (size_t)b * k;
        float *yb = j->y + (size_t)b * k;
        const float mean = gm__gn_sum(xb, k) / (float)k;
        const float rstd = 1.0f / sqrtf(gm__gn_dev(NULL, xb, mean, k) / (float)k + j->eps);
        j->stats[2 * b] = mean;
        j->stats[2 * b + 1] = rstd;
        for (c = 0; c < cg; c++) {
            const int ch = (b % j->groups) * cg + c;
            float f[4];
            f[0] = mean; f[1] = j->gamma ? rstd * j->gamma[ch] : rstd; f[2] = j->beta ? j->beta[ch] : 0.0f; f[3] = 0;
            gm__vfused(j->act ? GM__FU_NORM_SILU : GM__FU_NORM, yb + (size_t)c * j->hw, xb + (size_t)c * j->hw, NULL, NULL,
                       (size_t)j->hw, f);
        }
    }
}

/* dx = rstd (gamma dy - mean(gamma dy) - xhat mean(gamma dy xhat)) per group, and the channel sums
   of dy and dy xhat that dbeta and dgamma add up. With act, dy is silu's upstream gradient: the
   norm's own (dz) is written to dx first, from z recomputed, and dx then made from it in place. */
static void gm__gn_backward_blocks(void *ctx, int b0, int b1) {
    const gm__gn_job *j = (const gm__gn_job *)ctx;
    const int cg = j->c / j->groups, k = cg * j->hw;
    int b, c;
    for (b = b0; b < b1; b++) {
        const float *xb = j->x + (size_t)b * k, *db = j->dy + (size_t)b * k;
        const float mean = j->stats[2 * b], rstd = j->stats[2 * b + 1];
        const int n = b / j->groups, ch0 = (b % j->groups) * cg;
        float su = 0, sux = 0, m, ub;
        if (j->act) {
            for (c = 0; c < cg; c++) {
                float f[4];
                f[0] = mean; f[1] = j->gamma ? rstd * j->gamma[ch0 + c] : rstd; f[2] = j->beta ? j->beta[ch0 + c] : 0.0f; f[3] = 0;
                gm__vfused(GM__FU_NORM_SILU_GRAD, j->dx + (size_t)b * k + (size_t)c * j->hw, db + (size_t)c * j->hw,
                           xb + (size_t)c * j->hw, NULL, (size_t)j->hw, f);
            }
            db = j->dx + (size_t)b * k;
        }
        for (c = 0; c < cg; c++) {
            const float gc = j->gamma ? j->gamma[ch0 + c] : 1.0f;
            const float s = gm__gn_sum(db + (size_t)c * j->hw, j->hw);
            const float sx = gm__gn_dev(db + (size_t)c * j->hw, xb + (size_t)c * j->hw, mean, j->hw) * rstd;
            if (j->psum) { j->psum[n * j->c + ch0 + c] = s; j->pxsum[n * j->c + ch0 + c] = sx; }
            su += gc * s;
            sux += gc * sx;
        }
        if (!j->dx) continue;
        ub = su / (float)k;
        m = sux / (float)k;
        for (c = 0; c < cg; c++) {
            float f[4];
            f[0] = j->gamma ? rstd * j->gamma[ch0 + c] : rstd; f[1] = -rstd * rstd * m; f[2] = mean; f[3] = -rstd * ub;
            gm__vfused(GM__FU_NORM_GRAD, j->dx + (size_t)b * k + (size_t)c * j->hw, db + (size_t)c * j->hw,
                       xb + (size_t)c * j->hw, NULL, (size_t)j->hw, f);
        }
    }
}

static void gm__gn_run(gm__range_fn fn, gm__gn_job *j, int n) {
    const int k = j->c / j->groups * j->hw;
    gm__parallel_blocks(n * j->groups, GM__MAX(1, GM__EW_BLOCK / k), n * j->c * j->hw, fn, j);
}

/* Reshapes a (C) vector to broadcast along dim 1 of an ndim-D tensor: (C), (C,1) or (C,1,1). */
static gm_tensor *gm__along_dim1(gm_graph *g, gm_tensor *v, int ndim) {
    int shape[3] = {0, 1, 1};
    if (!v) return NULL;
    shape[0] = v->size;
    return gm__reshape(g, v, ndim - 1, shape);
}

/* The op: y = norm(x) * gamma + beta, then silu when act. */
static gm_tensor *gm__group_norm(gm_graph *g, gm_tensor *x, gm_tensor *gamma, gm_tensor *beta, int groups, float eps, int act) {
    gm__gn_job j;
    gm_tensor *y;
    char s1[64];
    if (!g || !x) return NULL;
    if (x->ndim < 2 || groups <= 0 || x->shape[1] % groups != 0 || (gamma && gamma->size != x->shape[1]) ||
        (beta && beta->size != x->shape[1]) || !(eps >= 0)) {
        gm__graph_error(g, "gm_group_norm: input %s in %d groups (need groups dividing dim 1, gamma and beta of its size, eps >= 0)",
                        gm__shape_text(x, s1), groups);
        return NULL;
    }
    y = gm__new_like(g, x);
    if (!y) return NULL;
    memset(&j, 0, sizeof j);
    j.stats = GM__CAST(float *, gm__alloc(g, (size_t)x->shape[0] * groups * 2 * sizeof(float)));
    if (!j.stats) return NULL;
    j.x = x->data; j.y = y->data; j.gamma = gamma ? gamma->data : NULL; j.beta = beta ? beta->data : NULL;
    j.c = x->shape[1]; j.groups = groups; j.hw = x->size / (x->shape[0] * x->shape[1]); j.eps = eps; j.act = act;
    gm__gn_run(gm__gn_forward_blocks, &j, x->shape[0]);
    y->state.norm.groups = groups;
    y->state.norm.act = act;
    y->state.norm.eps = eps;
    y->state.norm.stats = j.stats;
    return gm__record(g, y, GM__OP_GROUPNORM, x, gamma, beta);
}

GMDEF gm_tensor *gm_group_norm(gm_graph *g, gm_tensor *x, gm_tensor *gamma, gm_tensor *beta, int groups, float eps) {
    return gm__group_norm(g, x, gamma, beta, groups, eps, 0);
}

GMDEF gm_tensor *gm_group_norm_act(gm_graph *g, gm_tensor *x, gm_tensor *gamma, gm_tensor *beta, int groups, float eps,
                                   int act, float slope) {
    if (act == GM_ACT_SILU) return gm__group_norm(g, x, gamma, beta, groups, eps, 1);
    return gm_activation(g, gm__group_norm(g, x, gamma, beta, groups, eps, 0), act, slope);
}

/* The fused gradient pass: dx (when want_dx) as a GN_GRAD op of (dy, x, gamma), and, when dparams
   is given, dparams[0] = dgamma and dparams[1] = dbeta as GN_DPARAM ops. `st` is the state of the
   group norm op (or of one of its gradient ops): groups, eps and the statistics of x, reused. */
static gm_tensor *gm__group_norm_grad(gm_graph *g, const gm__op_state *st, gm_tensor *dy, gm_tensor *x, gm_tensor *gamma,
                                     gm_tensor *beta, int want_dx, gm_tensor **dparams) {
    gm__gn_job j;
    gm_tensor *dx = NULL;
    const int n = x->shape[0], c = x->shape[1];
    int i, k;
    if (!dy) return NULL;
    memset(&j, 0, sizeof j);
    j.x = x->data; j.dy = dy->data; j.gamma = gamma ? gamma->data : NULL; j.beta = beta ? beta->data : NULL;
    j.c = c; j.groups = st->norm.groups; j.hw = x->size / (n * c); j.eps = st->norm.eps; j.act = st->norm.act;
    j.stats = st->norm.stats;
    if ((want_dx || j.act) && !(dx = gm__new_like(g, x))) return NULL;   /* with act dx first holds dz */
    j.dx = dx ? dx->data : NULL;
    if (dparams) {
        j.psum = GM__CAST(float *, gm__alloc(g, (size_t)n * c * 2 * sizeof(float)));
        if (!j.psum) return NULL;
        j.pxsum = j.psum + (size_t)n * c;
    }
    gm__gn_run(gm__gn_backward_blocks, &j, n);
    if (dparams) {
        for (k = 0; k < 2; k++) {   /* dgamma from the dy xhat sums, dbeta from the dy sums; over n in order */
            const float *part = k == 0 ? j.pxsum : j.psum;
            gm_tensor *d = gm__new(g, 1, &c);
            if (!d) return NULL;
            for (i = 0; i < c; i++) d->data[i] = part[i];
            for (i = 1; i < n; i++) gm__vbinary(GM__EW_ADD, d->data, d->data, 1, part + (size_t)i * c, 1, c);
            d->state.norm = st->norm;
            d->state.norm.which = k;
            d->state.norm.act = 0;   /* with act these are never recorded (see gm__group_norm_backward) */
            dparams[k] = gm__record(g, d, GM__OP_GN_DPARAM, dy, k == 0 ? x : NULL, NULL);
        }
    }
    if (!dx || !want_dx) return NULL;
    dx->state.norm = st->norm;
    dx->state.norm.act = 0;
    return gm__record(g, dx, GM__OP_GN_GRAD, dy, x, gamma);
}

/* With act (silu after the norm): when this pass records nothing, one fused pass from silu's
   upstream gradient (the gradient tensors it returns are not ops of the graph, as nothing is then);
   when it records (create_graph), the norm's output is made again as an op and silu's fused
   gradient op gives the norm's upstream gradient, so every piece differentiates again. */
static void gm__group_norm_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *x = y->src[0], *gamma = y->src[1], *beta = y->src[2], *dp[2] = {NULL, NULL}, *dx, *dy = y->grad;
    const gm__op_state *st = &y->state;
    const int wparams = GM__WANT(gamma) || GM__WANT(beta);
    if (st->norm.act && g->record) {
        gm_tensor *z = gm__group_norm(g, x, gamma, beta, st->norm.groups, st->norm.eps, 0);
        if (!z) return;
        dy = gm__silu_grad(g, dy, z);
        st = &z->state;
    }
    dx = gm__group_norm_grad(g, st, dy, x, gamma, beta, GM__WANT(x), wparams ? dp : NULL);
    gm__accumulate(g, x, dx);
    if (GM__WANT(gamma)) gm__accumulate(g, gamma, gamma->ndim == 1 ? dp[0] : gm__reshape(g, dp[0], gamma->ndim, gamma->shape));
    if (GM__WANT(beta)) gm__accumulate(g, beta, beta->ndim == 1 ? dp[1] : gm__reshape(g, dp[1], beta->ndim, beta->shape));
}

/* dgamma = sum dy xhat, dbeta = sum dy (over examples and pixels). Their rules: dbeta spreads v
   over every pixel; dgamma gives dy v xhat (xhat from the group norm op without affine), and for
   x the fused gradient of xhat with v in gamma's place. */
static void gm__group_norm_dparam_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *dy = y->src[0], *x = y->src[1], *v = y->grad;
    if (y->state.norm.which == 1) {
        if (GM__WANT(dy)) gm__accumulate(g, dy, gm__expand(g, gm__along_dim1(g, v, dy->ndim), dy->ndim, dy->shape));
        return;
    }
    if (GM__WANT(dy)) {
        gm_tensor *xhat = gm_group_norm(g, x, NULL, NULL, y->state.norm.groups, y->state.norm.eps);
        gm__accumulate(g, dy, gm_mul(g, xhat, gm__along_dim1(g, v, x->ndim)));
    }
    if (GM__WANT(x)) gm__accumulate(g, x, gm__group_norm_grad(g, &y->state, dy, x, v, NULL, 1, NULL));
}

/* GN_GRAD computes dx = J (gamma dy) with J = d xhat / dx (symmetric), per group of K elements:
   J u = r (u - mean(u) - xhat mean(u xhat)), r = 1/std. Given v = d loss / d dx:
     d/du = J v (the fused op again, gamma = 1), so d/ddy = gamma J v, d/dgamma = sum dy J v;
     d/dx = r^2 (xhat (3 m q - p) - m (v - mean v) - q (u - mean u)), m = mean(u xhat),
            q = mean(v xhat), p = mean(v u) - mean(v) mean(u),
   written with differentiable ops on the (N, groups, C/groups, pixels) view. */
static void gm__group_norm_grad_backward(gm_graph *g, gm_tensor *y) {
    gm_tensor *dy = y->src[0], *x = y->src[1], *gamma = y->src[2], *v = y->grad;
    const int n = x->shape[0], c = x->shape[1], groups = y->state.norm.groups;
    const int s4[4] = {n, groups, c / groups, x->size / (n * c)}, sg[3] = {groups, c / groups, 1};
    const int ax = GM_AXIS(2) | GM_AXIS(3);
    gm_tensor *g4 = gamma ? gm__reshape(g, gamma, 3, sg) : NULL;
    if (GM__WANT(dy) || GM__WANT(gamma)) {
        gm_tensor *jv = gm__reshape(g, gm__group_norm_grad(g, &y->state, v, x, NULL, NULL, 1, NULL), 4, s4);
        if (GM__WANT(dy)) gm__accumulate(g, dy, gm__reshape(g, g4 ? gm_mul(g, jv, g4) : jv, dy->ndim, dy->shape));
        if (GM__WANT(gamma)) {
            const int sc[4] = {1, groups, c / groups, 1};
            gm_tensor *s = gm__sum_to(g, gm_mul(g, gm__reshape(g, dy, 4, s4), jv), 4, sc);
            gm__accumulate(g, gamma, gm__reshape(g, s, gamma->ndim, gamma->shape));
        }
    }
    if (GM__WANT(x)) {
        gm_tensor *x4 = gm__reshape(g, x, 4, s4), *v4 = gm__reshape(g, v, 4, s4), *u = gm__reshape(g, dy, 4, s4);
        gm_tensor *xc, *var, *r2, *xhat, *ub, *vb, *m, *q, *p, *t;
        if (g4) u = gm_mul(g, u, g4);
        xc = gm_sub(g, x4, gm_mean_axes(g, x4, ax));
        var = gm_affine(g, gm_mean_axes(g, gm_square(g, xc), ax), 1.0f, y->state.norm.eps);
        r2 = gm_pow(g, var, -1.0f);
        xhat = gm_mul(g, xc, gm_pow(g, var, -0.5f));
        ub = gm_mean_axes(g, u, ax);
        vb = gm_mean_axes(g, v4, ax);
        m = gm_mean_axes(g, gm_mul(g, u, xhat), ax);
        q = gm_mean_axes(g, gm_mul(g, v4, xhat), ax);
        p = gm_sub(g, gm_mean_axes(g, gm_mul(g, v4, u), ax), gm_mul(g, vb, ub));
        t = gm_mul(g, xhat, gm_sub(g, gm_scale(g, gm_mul(g, m, q), 3.0f), p));
        t = gm_sub(g, t, gm_mul(g, m, gm_sub(g, v4, vb)));
        t = gm_sub(g, t, gm_mul(g, q, gm_sub(g, u, ub)));
        gm__accumulate(g, x, gm__reshape(g, gm_mul(g, r2, t), x->ndim, x->shape));
    }
}

/* The layer: gm_group_norm with its parameters. */
GMDEF gm_tensor *gm_groupnorm_forward(gm_graph *g, const gm_groupnorm *gn, gm_tensor *x) {
    char s1[64];
    if (!g || !gn || !x) return NULL;
    if (x->ndim < 2 || x->shape[1] != gn->channels) {
        gm__graph_error(g, "gm_groupnorm_forward: %d channels, input %s", gn->channels, gm__shape_text(x, s1));
        return NULL;
    }
    return gm_group_norm(g, x, gm_param(g, gn->p, gn->gamma), gm_param(g, gn->p, gn->beta), gn->groups, gn->eps);
}

GMDEF gm_tensor *gm_groupnorm_forward_act(gm_graph *g, const gm_groupnorm *gn, gm_tensor *x, int act, float slope) {
    char s1[64];
    if (!g || !gn || !x) return NULL;
    if (x->ndim < 2 || x->shape[1] != gn->channels) {
        gm__graph_error(g, "gm_groupnorm_forward_act: %d channels, input %s", gn->channels, gm__shape_text(x, s1));
        return NULL;
    }
    return gm_group_norm_act(g, x, gm_param(g, gn->p, gn->gamma), gm_param(g, gn->p, gn->beta), gn->groups, gn->eps,
                             act, slope);
}

static const char *const gm__act_names[GM_ACT_COUNT] = {"identity", "relu", "leaky_relu", "elu", "tanh",
                                                        "sigmoid", "softplus", "silu"};

GMDEF gm_tensor *gm_activation(gm_graph *g, gm_tensor *x, int act, float slope) {
    switch (act) {
    case GM_ACT_IDENTITY:   return x;
    case GM_ACT_RELU:       return gm_relu(g, x);
    case GM_ACT_LEAKY_RELU: return gm_leaky_relu(g, x, slope);
    case GM_ACT_ELU:        return gm_elu(g, x, 1.0f);
    case GM_ACT_TANH:       return gm_tanh(g, x);
    case GM_ACT_SIGMOID:    return gm_sigmoid(g, x);
    case GM_ACT_SOFTPLUS:   return gm_softplus(g, x);
    case GM_ACT_SILU:       return gm_silu(g, x);
    default:
        if (g) gm__graph_error(g, "gm_activation: unknown activation %d", act);
        return NULL;
    }
}

GMDEF const char *gm_act_name(int act) { return act >= 0 && act < GM_ACT_COUNT ? gm__act_names[act] : "?"; }

GMDEF int gm_act_parse(const char *name) {
    int k;
    for (k = 0; name && k < GM_ACT_COUNT; k++)
        if (strcmp(name, gm__act_names[k]) == 0) return k;
    return -1;
}

GMDEF double gm_tensor_sum(const gm_tensor *t) {
    double s = 0;
    int i;
    for (i = 0; t && i < t->size; i++) s += t->data[i];
    return s;
}

GMDEF double gm_tensor_mean(const gm_tensor *t) { return t && t->size > 0 ? gm_tensor_sum(t) / t->size : 0.0; }

/* ======================================================================================= */
/* Optimizers                                                                              */
/* ======================================================================================= */
static gm_optim gm__optim(int kind, float lr) {
    gm_optim o;
    memset(&o, 0, sizeof o);
    o.kind = kind;
    o.lr = lr;
    o.eps = 1e-8f;
    return o;
}

GMDEF gm_optim gm_sgd(float lr, float momentum) { gm_optim o = gm__optim(GM_SGD, lr); o.momentum = momentum; return o; }
GMDEF gm_optim gm_rmsprop(float lr, float alpha) { gm_optim o = gm__optim(GM_RMSPROP, lr); o.alpha = alpha; return o; }
GMDEF gm_optim gm_adam(float lr, float beta1, float beta2) {
    gm_optim o = gm__optim(GM_ADAM, lr);
    o.beta1 = beta1;
    o.beta2 = beta2;
    return o;
}
GMDEF gm_optim gm_adamw(float lr, float beta1, float beta2, float weight_decay) {
    gm_optim o = gm_adam(lr, beta1, beta2);
    o.kind = GM_ADAMW;
    o.weight_decay = weight_decay;
    return o;
}

GMDEF void gm_optim_free(gm_optim *o) {
    if (!o) return;
    GENMOD_FREE(o->m);
    GENMOD_FREE(o->v);
    o->m = o->v = NULL;
    o->n = 0;
}

GMDEF float gm_optim_lr(const gm_optim *o) {
    const gm_schedule *s = &o->sched;
    double lr = o->lr, t = (double)o->step;
    if (s->kind == GM_LR_STEP && s->step_size > 0) lr *= pow((double)s->gamma, floor(t / (double)s->step_size));
    if (s->kind == GM_LR_COSINE && s->total > 0)
        lr = s->min_lr + (lr - s->min_lr) * 0.5 * (1.0 + cos(3.14159265358979 * GM__MIN(t, (double)s->total) / (double)s->total));
    if (s->warmup > 0 && o->step < s->warmup) lr *= (t + 1.0) / (double)s->warmup;
    return (float)lr;
}

GMDEF float gm_grad_norm(const gm_params *p) {
    double s = 0;
    int v;
    size_t i;
    for (v = 0; p && v < p->nviews; v++) {
        const float *gr = p->grad + p->views[v].offset;
        if (p->views[v].buffer) continue;
        for (i = 0; i < p->views[v].size; i++) s += (double)gr[i] * gr[i];
    }
    return (float)sqrt(s);
}

/* Moments mirror the parameter buffer; grown (zero-filled) if views were added since. */
static int gm__optim_reserve(gm_optim *o, size_t n) {
    float *m, *v;
    if (o->n >= n && o->m && o->v) return 0;
    m = GM__CAST(float *, GENMOD_REALLOC(o->m, n * sizeof(float)));
    if (m) o->m = m;
    v = GM__CAST(float *, GENMOD_REALLOC(o->v, n * sizeof(float)));
    if (v) o->v = v;
    if (!m || !v) return gm_fail("gm_optim_step: out of memory for %zu moments", n);
    memset(o->m + o->n, 0, (n - o->n) * sizeof(float));
    memset(o->v + o->n, 0, (n - o->n) * sizeof(float));
    o->n = n;
    return 0;
}

/* SGD, scalar: momentum buffer in m. */
static void gm__sgd_update(const gm_optim *o, float lr, float gscale, float *w, const float *gr, float *m, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        float gi = gr[i] * gscale + o->weight_decay * w[i];
        if (o->momentum != 0) { m[i] = o->momentum * m[i] + gi; gi = m[i]; }
        w[i] -= lr * gi;
    }
}

/* The coefficients the SIMD updates read (see gm__adam1_* / gm__rmsprop1_* in the kernels). */
static void gm__optim_coef(const gm_optim *o, float lr, float gscale, float *c) {
    double t = (double)o->step + 1.0;
    float wd = o->weight_decay;
    memset(c, 0, 10 * sizeof(float));
    c[0] = gscale;
    if (o->kind == GM_RMSPROP) {
        c[1] = wd; c[2] = o->alpha; c[3] = 1 - o->alpha; c[4] = lr; c[5] = o->eps; c[6] = o->momentum;
        return;
    }
    c[1] = o->kind == GM_ADAMW ? 0.0f : wd;                 /* Adam: L2 added to the gradient */
    c[2] = o->kind == GM_ADAMW ? 1.0f - lr * wd : 1.0f;     /* AdamW: decoupled decay */
    c[3] = o->beta1; c[4] = 1 - o->beta1; c[5] = o->beta2; c[6] = 1 - o->beta2;
    c[7] = lr / (float)(1.0 - pow((double)o->beta1, t));    /* bias corrections */
    c[8] = 1.0f / (float)sqrt(1.0 - pow((double)o->beta2, t));
    c[9] = o->eps;
}

/* The update runs on fixed chunks of the parameter buffer, the same whatever the thread count,
   so training is bit-identical at any number of threads. */
#define GM__OPTIM_CHUNK 8192
typedef struct gm__optim_job { const gm_optim *o; gm_params *p; float lr, gscale, c[10]; } gm__optim_job;

static void gm__optim_range(const gm__optim_job *j, size_t lo, size_t hi) {
    const gm_params *p = j->p;
    const gm_optim *o = j->o;
    int v;
    for (v = 0; v < p->nviews; v++) {
        size_t a = GM__MAX(lo, p->views[v].offset), b = GM__MIN(hi, p->views[v].offset + p->views[v].size);
        if (a >= b || p->views[v].buffer) continue;
        if (o->kind == GM_SGD) gm__sgd_update(o, j->lr, j->gscale, p->data + a, p->grad + a, o->m + a, b - a);
        else (o->kind == GM_RMSPROP ? gm__kernels()->rmsprop : gm__kernels()->adam)(p->data + a, p->grad + a, o->m + a,
                                                                                   o->v + a, b - a, j->c);
        if (o->clip_value > 0) {
            size_t i;
            float cv = o->clip_value, *w = p->data;
            for (i = a; i < b; i++) w[i] = w[i] < -cv ? -cv : w[i] > cv ? cv : w[i];
        }
    }
}

/* Updates one chunk, then zeroes its gradients (consumed), while they are still in cache. */
static void gm__optim_task(void *ctx, int task) {
    const gm__optim_job *j = GM__CAST(const gm__optim_job *, ctx);
    size_t lo = (size_t)task * GM__OPTIM_CHUNK, hi = GM__MIN(lo + GM__OPTIM_CHUNK, j->p->count);
    gm__optim_range(j, lo, hi);
    memset(j->p->grad + lo, 0, (hi - lo) * sizeof(float));
}

GMDEF int gm_optim_step(gm_optim *o, gm_params *p) {
    gm__optim_job job;
    int ntasks;
    if (!o || !p) return gm_fail("gm_optim_step: NULL argument");
    if (o->kind < GM_SGD || o->kind > GM_ADAMW) return gm_fail("gm_optim_step: unknown optimizer kind %d", o->kind);
    if (gm__optim_reserve(o, p->count) != 0) return -1;
    job.o = o;
    job.p = p;
    job.gscale = 1.0f;
    if (o->clip_norm > 0) {
        float norm = gm_grad_norm(p);
        if (!isfinite(norm)) return gm_fail("gm_optim_step: gradient norm is not finite");
        if (norm > o->clip_norm) job.gscale = o->clip_norm / norm;
    }
    job.lr = gm_optim_lr(o);
    gm__optim_coef(o, job.lr, job.gscale, job.c);
    ntasks = (int)((p->count + GM__OPTIM_CHUNK - 1) / GM__OPTIM_CHUNK);
    if (ntasks > 1) gm__parallel_for(ntasks, gm__optim_task, &job);
    else if (ntasks == 1) gm__optim_task(&job, 0);
    o->step++;
    return 0;
}

/* ======================================================================================= */
/* Data                                                                                    */
/* ======================================================================================= */
/* Every file format reader here treats its input as hostile: sizes read from a file are checked
 * for overflow before use and nothing is read outside the buffer that holds the file. */

/* ---- byte order ---- */
static int gm__host_is_le(void) {
    const uint32_t one = 1;
    unsigned char b[4];
    memcpy(b, &one, 4);
    return b[0] == 1;
}
static uint32_t gm__be32(const unsigned char *b) {
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}
static void gm__put_be32(unsigned char *b, uint32_t v) {
    b[0] = (unsigned char)(v >> 24); b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);  b[3] = (unsigned char)v;
}
static uint64_t gm__le64(const unsigned char *b) {
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}
static void gm__swap4(void *p, size_t n) { /* reverse the bytes of n 4-byte words */
    unsigned char *b = (unsigned char *)p, t;
    size_t i;
    for (i = 0; i < n; i++, b += 4) { t = b[0]; b[0] = b[3]; b[3] = t; t = b[1]; b[1] = b[2]; b[2] = t; }
}
/* a*b into *out; 0 if it would exceed UINT64_MAX */
static int gm__mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

/* ---- reading files ---- */
/* A byte source: an open file or a memory buffer (the fuzzers use memory). */
typedef struct gm__src {
    FILE *f;
    const unsigned char *mem;
    size_t pos;
    uint64_t size;          /* total bytes */
    const char *path;       /* for messages */
} gm__src;

static int gm__src_open(gm__src *s, const char *what, const char *path) {
    long end;
    memset(s, 0, sizeof *s);
    s->path = path;
    s->f = fopen(path, "rb");
    if (!s->f) return gm_fail("%s: %s: cannot open: %s", what, path, strerror(errno));
    if (fseek(s->f, 0, SEEK_END) != 0 || (end = ftell(s->f)) < 0 || fseek(s->f, 0, SEEK_SET) != 0) {
        fclose(s->f);
        s->f = NULL;
        return gm_fail("%s: %s: cannot determine the file size (not a regular file?)", what, path);
    }
    s->size = (uint64_t)end;
    if (fgetc(s->f) == EOF && ferror(s->f)) { /* e.g. a directory: fopen and ftell "work" on Linux */
        fclose(s->f);
        s->f = NULL;
        return gm_fail("%s: %s: cannot read (is it a directory?)", what, path);
    }
    if (fseek(s->f, 0, SEEK_SET) != 0) {
        fclose(s->f);
        s->f = NULL;
        return gm_fail("%s: %s: cannot seek", what, path);
    }
    return 0;
}
static void gm__src_mem(gm__src *s, const void *buf, size_t len, const char *name) {
    memset(s, 0, sizeof *s);
    s->mem = (const unsigned char *)buf;
    s->size = len;
    s->path = name;
}
/* Reads up to n bytes; returns the count read (short at end of data or on error). */
static size_t gm__src_read(gm__src *s, void *dst, size_t n) {
    if (s->f) return fread(dst, 1, n, s->f);
    if (n > s->size - s->pos) n = (size_t)(s->size - s->pos);
    memcpy(dst, s->mem + s->pos, n);
    s->pos += n;
    return n;
}
static void gm__src_close(gm__src *s) {
    if (s->f) fclose(s->f);
    s->f = NULL;
}

/* Reads a whole file into a fresh buffer (freed with GENMOD_FREE). */
static int gm__read_file(const char *what, const char *path, unsigned char **out, size_t *len) {
    gm__src s;
    unsigned char *buf;
    size_t n;
    if (gm__src_open(&s, what, path) != 0) return -1;
    if (s.size > (uint64_t)(SIZE_MAX - 1)) {
        gm__src_close(&s);
        return gm_fail("%s: %s: file too large for this platform", what, path);
    }
    n = (size_t)s.size;
    buf = (unsigned char *)GENMOD_MALLOC(n + 1); /* +1: malloc(0) may return NULL */
    if (!buf) { gm__src_close(&s); return gm_fail("%s: %s: out of memory reading %zu bytes", what, path, n); }
    if (gm__src_read(&s, buf, n) != n || ferror(s.f)) {
        GENMOD_FREE(buf);
        gm__src_close(&s);
        return gm_fail("%s: %s: read error (a directory, or the file changed while reading?)", what, path);
    }
    gm__src_close(&s);
    *out = buf;
    *len = n;
    return 0;
}

/* ---- writing files ---- */
/* Writes go to "<path>.tmp.<pid>", which is flushed, synced and renamed over path only when
 * complete: a crash or a full disk mid-write never destroys the previous good file. */
typedef struct gm__wfile {
    char *tmp;
    const char *path, *what;
#ifdef GM__POSIX_IO
    int fd;
#else
    FILE *f;
#endif
    int failed;             /* a write failed; errno saved in err */
    int err;
    size_t len;
    unsigned char buf[16384];
} gm__wfile;

static long gm__pid(void) {
#ifdef GM__POSIX_IO
    return (long)getpid();
#elif defined(_WIN32)
    return (long)_getpid();
#else
    return 0;
#endif
}

static int gm__wopen(gm__wfile *w, const char *what, const char *path) {
    size_t n = strlen(path) + 32;
    w->path = path; w->what = what; w->failed = 0; w->err = 0; w->len = 0;
    w->tmp = (char *)GENMOD_MALLOC(n);
    if (!w->tmp) return gm_fail("%s: %s: out of memory", what, path);
    snprintf(w->tmp, n, "%s.tmp.%ld", path, gm__pid());
#ifdef GM__POSIX_IO
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (w->fd < 0) {
#else
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
#endif
        int e = errno;
        gm_fail("%s: %s: cannot create temporary file %s: %s", what, path, w->tmp, strerror(e));
        GENMOD_FREE(w->tmp);
        w->tmp = NULL;
        return -1;
    }
    return 0;
}

static void gm__wflush(gm__wfile *w) {
    size_t off = 0;
    if (w->failed) { w->len = 0; return; }
#ifdef GM__POSIX_IO
    while (off < w->len) { /* write() may be partial or interrupted */
        ssize_t k = write(w->fd, w->buf + off, w->len - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) { w->failed = 1; w->err = k < 0 ? errno : EIO; break; }
        off += (size_t)k;
    }
#else
    if (fwrite(w->buf, 1, w->len, w->f) != w->len) { w->failed = 1; w->err = errno; }
    (void)off;
#endif
    w->len = 0;
}

static void gm__wput(gm__wfile *w, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    while (n > 0) {
        size_t k = sizeof w->buf - w->len;
        if (k > n) k = n;
        memcpy(w->buf + w->len, p, k);
        w->len += k; p += k; n -= k;
        if (w->len == sizeof w->buf) gm__wflush(w);
    }
}

/* floats as little-endian F32; x == NULL writes zeros (e.g. optimizer moments never allocated) */
static void gm__wput_f32le(gm__wfile *w, const float *x, size_t n) {
    float tmp[1024];
    int swap = !gm__host_is_le();
    while (n > 0) {
        size_t k = n < 1024 ? n : 1024;
        if (x) memcpy(tmp, x, k * sizeof(float)); else memset(tmp, 0, k * sizeof(float));
        if (swap) gm__swap4(tmp, k);
        gm__wput(w, tmp, k * sizeof(float));
        if (x) x += k;
        n -= k;
    }
}

#ifdef GM__POSIX_IO
/* Makes the rename itself durable by syncing the directory that holds path (best effort). */
static void gm__sync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    int fd;
    if (!slash) { dir[0] = '.'; dir[1] = 0; }
    else {
        size_t n = (size_t)(slash - path);
        if (n == 0) n = 1; /* "/file" lives in "/" */
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    fd = open(dir, O_RDONLY);
    if (fd >= 0) { (void)fsync(fd); close(fd); }
}
#endif

/* Flushes, syncs and renames the temporary file over the target; -1 (and no change to the
 * target) if anything failed. */
static int gm__wcommit(gm__wfile *w) {
    int rc = 0, e = 0;
    gm__wflush(w);
    if (w->failed) { e = w->err; rc = -1; }
#ifdef GM__POSIX_IO
    if (rc == 0 && fsync(w->fd) != 0) { e = errno; rc = -1; }
    if (close(w->fd) != 0 && rc == 0) { e = errno; rc = -1; }
#else
    if (rc == 0 && fflush(w->f) != 0) { e = errno; rc = -1; }
#if defined(_WIN32)
    if (rc == 0 && _commit(_fileno(w->f)) != 0) { e = errno; rc = -1; }
#endif
    if (fclose(w->f) != 0 && rc == 0) { e = errno; rc = -1; }
#endif
    if (rc == 0 && rename(w->tmp, w->path) != 0) {
#if defined(_WIN32)
        /* Windows' rename() refuses to replace: remove first (not atomic there). */
        if (remove(w->path) != 0 || rename(w->tmp, w->path) != 0)
#endif
        { e = errno; rc = -1; }
    }
    if (rc != 0) {
        remove(w->tmp);
        gm_fail("%s: %s: write failed: %s (the previous file, if any, is unchanged)", w->what, w->path,
                 strerror(e ? e : EIO));
    }
#ifdef GM__POSIX_IO
    else gm__sync_dir(w->path);
#endif
    GENMOD_FREE(w->tmp);
    w->tmp = NULL;
    return rc;
}

/* ---- IDX ---- */
typedef struct gm__idx_hdr {
    int ndim;
    uint32_t dims[3];
    uint64_t data_bytes;    /* product of dims */
} gm__idx_hdr;

static const char *gm__idx_type_name(int t) {
    switch (t) {
    case 0x08: return "uint8"; case 0x09: return "int8"; case 0x0B: return "int16";
    case 0x0C: return "int32"; case 0x0D: return "float32"; case 0x0E: return "float64";
    default: return "unknown";
    }
}

/* Validates the magic number against what the caller wants (3 dims: images, 1: labels). */
static int gm__idx_magic(const unsigned char *b, size_t got, uint64_t size, const char *path, int want_ndim) {
    const char *kind = want_ndim == 3 ? "image" : "label";
    if (size == 0) return gm_fail("idx: %s: file is empty", path);
    if (got >= 2 && b[0] == 0x1f && b[1] == 0x8b)
        return gm_fail("idx: %s: is gzip-compressed; decompress it first (gunzip)", path);
    if (got < 4) return gm_fail("idx: %s: truncated: %d bytes is too short for an IDX header", path, (int)got);
    if (b[0] != 0 || b[1] != 0)
        return gm_fail("idx: %s: bad magic 0x%02x%02x%02x%02x: not an IDX file", path, b[0], b[1], b[2], b[3]);
    if (b[2] != 0x08)
        return gm_fail("idx: %s: data type 0x%02x (%s) is not supported, only uint8 (0x08)", path, b[2],
                        gm__idx_type_name(b[2]));
    if (b[3] != want_ndim)
        return gm_fail("idx: %s: bad magic 0x%08x: has %d dimensions; an IDX %s file has magic 0x%08x "
                        "(%d dimensions)%s", path, (unsigned)gm__be32(b), b[3], kind, 0x800u + (unsigned)want_ndim,
                        want_ndim, (b[3] == 1 || b[3] == 3) ? "; images and labels swapped?" : "");
    return 0;
}

/* Parses and checks an IDX header: magic, positive dims, no overflow, exact file size. */
static int gm__idx_header(gm__src *s, int want_ndim, gm__idx_hdr *h) {
    unsigned char b[16];
    size_t need = 4 + 4 * (size_t)want_ndim, got = gm__src_read(s, b, need);
    uint64_t total;
    int i;
    if (s->f && ferror(s->f)) return gm_fail("idx: %s: read error (is it a directory?)", s->path);
    if (gm__idx_magic(b, got, s->size, s->path, want_ndim) != 0) return -1;
    if (got < need)
        return gm_fail("idx: %s: truncated: file has %d bytes, the header alone needs %d", s->path, (int)got, (int)need);
    h->ndim = want_ndim;
    h->data_bytes = 1;
    for (i = 0; i < want_ndim; i++) {
        h->dims[i] = gm__be32(b + 4 + 4 * i);
        if (h->dims[i] == 0 || h->dims[i] > (uint32_t)INT_MAX)
            return gm_fail("idx: %s: dimension %d is %lu (must be 1..%d)", s->path, i, (unsigned long)h->dims[i], INT_MAX);
        if (!gm__mul_u64(h->data_bytes, h->dims[i], &h->data_bytes))
            return gm_fail("idx: %s: dimensions overflow (corrupt header)", s->path);
    }
    if (h->data_bytes > UINT64_MAX - need) return gm_fail("idx: %s: dimensions overflow (corrupt header)", s->path);
    total = need + h->data_bytes;
    if (s->size < total)
        return gm_fail("idx: %s: truncated: header says %lu items (%llu bytes in all) but the file has %llu bytes",
                        s->path, (unsigned long)h->dims[0], (unsigned long long)total, (unsigned long long)s->size);
    if (s->size > total)
        return gm_fail("idx: %s: %llu trailing bytes after the %lu items the header announces (corrupt or wrong header)",
                        s->path, (unsigned long long)(s->size - total), (unsigned long)h->dims[0]);
    return 0;
}

/* Reads `count` uint8 pixels and maps them through a 256-entry table onto [lo, hi]. */
static int gm__idx_read_pixels(gm__src *s, float *x, size_t count, float lo, float hi) {
    float table[256];
    unsigned char buf[8192];
    int k;
    for (k = 0; k < 256; k++) table[k] = (float)((double)lo + ((double)hi - (double)lo) * k / 255.0);
    table[255] = hi; /* exact endpoints whatever the rounding */
    while (count > 0) {
        size_t i, n = count < sizeof buf ? count : sizeof buf;
        if (gm__src_read(s, buf, n) != n) return gm_fail("idx: %s: read error or file shrank while reading", s->path);
        for (i = 0; i < n; i++) x[i] = table[buf[i]];
        x += n;
        count -= n;
    }
    return 0;
}

/* Reads all n labels (every one is range-checked) and keeps the first `keep`. */
static int gm__idx_read_labels(gm__src *s, int *y, size_t n, size_t keep, int num_classes) {
    unsigned char buf[8192];
    size_t done = 0;
    while (done < n) {
        size_t i, k = n - done < sizeof buf ? n - done : sizeof buf;
        if (gm__src_read(s, buf, k) != k) return gm_fail("idx: %s: read error or file shrank while reading", s->path);
        for (i = 0; i < k; i++) {
            if (buf[i] >= num_classes)
                return gm_fail("idx: %s: label %d of item %lu is out of range 0..%d", s->path, buf[i],
                                (unsigned long)(done + i), num_classes - 1);
            if (done + i < keep) y[done + i] = buf[i];
        }
        done += k;
    }
    return 0;
}

/* Shared by the file and memory loaders: img and lbl are open sources (lbl may be NULL). */
static int gm__idx_load_src(gm_dataset *d, gm__src *img, gm__src *lbl, int max_items, float lo, float hi,
                            int num_classes) {
    gm__idx_hdr hi_, hl;
    gm_dataset t;
    size_t items, per, nfloat;
    memset(&t, 0, sizeof t);
    if (!isfinite(lo) || !isfinite(hi)) return gm_fail("idx: %s: range [%g, %g] is not finite", img->path, lo, hi);
    if (num_classes < 1 || num_classes > 256) return gm_fail("idx: num_classes %d must be 1..256", num_classes);
    if (gm__idx_header(img, 3, &hi_) != 0) return -1;
    if (lbl) {
        if (gm__idx_header(lbl, 1, &hl) != 0) return -1;
        if (hl.dims[0] != hi_.dims[0])
            return gm_fail("idx: count mismatch: %s has %lu images but %s has %lu labels", img->path,
                            (unsigned long)hi_.dims[0], lbl->path, (unsigned long)hl.dims[0]);
    }
    items = hi_.dims[0];
    if (max_items > 0 && (size_t)max_items < items) items = (size_t)max_items;
    if ((uint64_t)hi_.dims[1] * hi_.dims[2] > (uint64_t)INT_MAX)
        return gm_fail("idx: %s: images of %lux%lu are too large", img->path, (unsigned long)hi_.dims[1],
                        (unsigned long)hi_.dims[2]);
    per = (size_t)hi_.dims[1] * hi_.dims[2];
    if (items > SIZE_MAX / sizeof(float) / per)
        return gm_fail("idx: %s: %lu images of %lux%lu do not fit in memory", img->path, (unsigned long)items,
                        (unsigned long)hi_.dims[1], (unsigned long)hi_.dims[2]);
    nfloat = items * per;
    t.n = (int)items; t.h = (int)hi_.dims[1]; t.w = (int)hi_.dims[2]; t.c = 1;
    t.x = (float *)GENMOD_MALLOC(nfloat * sizeof(float));
    if (!t.x) return gm_fail("idx: %s: out of memory for %lu images", img->path, (unsigned long)items);
    if (lbl) {
        t.y = (int *)GENMOD_MALLOC(items * sizeof(int));
        t.nclasses = num_classes;
        if (!t.y) { gm_dataset_free(&t); return gm_fail("idx: %s: out of memory", lbl->path); }
        if (gm__idx_read_labels(lbl, t.y, hl.dims[0], items, num_classes) != 0) { gm_dataset_free(&t); return -1; }
    }
    if (gm__idx_read_pixels(img, t.x, nfloat, lo, hi) != 0) { gm_dataset_free(&t); return -1; }
    *d = t;
    return 0;
}

GMDEF int gm_idx_load_ex(gm_dataset *d, const char *images_path, const char *labels_path, int max_items,
                         float lo, float hi, int num_classes) {
    gm__src img, lbl;
    int rc;
    if (!d || !images_path) return gm_fail("idx: NULL dataset or path");
    if (gm__src_open(&img, "idx", images_path) != 0) return -1;
    if (labels_path && gm__src_open(&lbl, "idx", labels_path) != 0) { gm__src_close(&img); return -1; }
    rc = gm__idx_load_src(d, &img, labels_path ? &lbl : NULL, max_items, lo, hi, num_classes);
    gm__src_close(&img);
    if (labels_path) gm__src_close(&lbl);
    return rc;
}

GMDEF int gm_idx_load_mem(gm_dataset *d, const void *images, size_t images_len, const void *labels,
                          size_t labels_len, int max_items, float lo, float hi, int num_classes) {
    gm__src img, lbl;
    if (!d || !images) return gm_fail("idx: NULL dataset or image buffer");
    gm__src_mem(&img, images, images_len, "<images in memory>");
    gm__src_mem(&lbl, labels, labels_len, "<labels in memory>");
    return gm__idx_load_src(d, &img, labels ? &lbl : NULL, max_items, lo, hi, num_classes);
}

GMDEF int gm_idx_load(gm_dataset *d, const char *images_path, const char *labels_path, int max_items,
                      float lo, float hi) {
    return gm_idx_load_ex(d, images_path, labels_path, max_items, lo, hi, 10);
}

/* dir + "/" + name into buf; a missing file with a .gz sibling gets a hint. */
static int gm__mnist_path(char *buf, size_t cap, const char *dir, const char *name) {
    FILE *f;
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return gm_fail("mnist: directory name too long: %s", dir);
    f = fopen(buf, "rb");
    if (f) { fclose(f); return 0; }
    n = snprintf(buf, cap, "%s/%s.gz", dir, name);
    if (n > 0 && (size_t)n < cap && (f = fopen(buf, "rb")) != NULL) {
        fclose(f);
        return gm_fail("mnist: %s/%s is missing but %s exists; decompress it first (gunzip)", dir, name, buf);
    }
    snprintf(buf, cap, "%s/%s", dir, name);
    return 0; /* the loader reports the missing file with its errno */
}

GMDEF int gm_mnist_load(gm_dataset *train, gm_dataset *test, const char *dir, int max_train, int max_test,
                        float lo, float hi) {
    char ip[4096], lp[4096];
    gm_dataset a;
    if (!train || !dir) return gm_fail("mnist: NULL dataset or directory");
    if (gm__mnist_path(ip, sizeof ip, dir, "train-images-idx3-ubyte") != 0 ||
        gm__mnist_path(lp, sizeof lp, dir, "train-labels-idx1-ubyte") != 0 ||
        gm_idx_load(&a, ip, lp, max_train, lo, hi) != 0)
        return -1;
    if (test) {
        if (gm__mnist_path(ip, sizeof ip, dir, "t10k-images-idx3-ubyte") != 0 ||
            gm__mnist_path(lp, sizeof lp, dir, "t10k-labels-idx1-ubyte") != 0 ||
            gm_idx_load(test, ip, lp, max_test, lo, hi) != 0) {
            gm_dataset_free(&a);
            return -1;
        }
    }
    *train = a;
    return 0;
}

GMDEF void gm_dataset_free(gm_dataset *d) {
    if (!d) return;
    GENMOD_FREE(d->x);
    GENMOD_FREE(d->y);
    memset(d, 0, sizeof *d);
}

static void gm__idx_put_header(gm__wfile *w, int ndim, const uint32_t *dims) {
    unsigned char b[16];
    int i;
    gm__put_be32(b, 0x800u + (uint32_t)ndim);
    for (i = 0; i < ndim; i++) gm__put_be32(b + 4 + 4 * i, dims[i]);
    gm__wput(w, b, 4 + 4 * (size_t)ndim);
}

GMDEF int gm_idx_save_images(const char *path, const float *x, int n, int h, int w, float lo, float hi) {
    gm__wfile f;
    uint32_t dims[3];
    size_t i, count;
    unsigned char px[4096];
    size_t k = 0;
    if (!path || !x) return gm_fail("idx: NULL path or data");
    if (n < 1 || h < 1 || w < 1 || (size_t)h * (size_t)w > SIZE_MAX / (size_t)n)
        return gm_fail("idx: %s: bad image count/size %d x %d x %d", path, n, h, w);
    if (!isfinite(lo) || !isfinite(hi) || !(hi > lo)) return gm_fail("idx: %s: bad range [%g, %g]", path, lo, hi);
    count = (size_t)n * (size_t)h * (size_t)w;
    for (i = 0; i < count; i++) /* check first: never leave a half-written temp file for bad data */
        if (!isfinite(x[i]))
            return gm_fail("idx: %s: image %lu has a non-finite pixel (%g)", path, (unsigned long)(i / ((size_t)h * w)), x[i]);
    if (gm__wopen(&f, "idx", path) != 0) return -1;
    dims[0] = (uint32_t)n; dims[1] = (uint32_t)h; dims[2] = (uint32_t)w;
    gm__idx_put_header(&f, 3, dims);
    for (i = 0; i < count; i++) {
        double t = ((double)x[i] - lo) / ((double)hi - lo) * 255.0 + 0.5;
        px[k++] = (unsigned char)(t <= 0 ? 0 : t >= 255 ? 255 : (int)t);
        if (k == sizeof px) { gm__wput(&f, px, k); k = 0; }
    }
    gm__wput(&f, px, k);
    return gm__wcommit(&f);
}

GMDEF int gm_idx_save_labels(const char *path, const int *y, int n) {
    gm__wfile f;
    uint32_t dim;
    int i;
    if (!path || !y || n < 1) return gm_fail("idx: NULL path/labels or count %d < 1", n);
    for (i = 0; i < n; i++)
        if (y[i] < 0 || y[i] > 255) return gm_fail("idx: %s: label %d of item %d does not fit in a byte", path, y[i], i);
    if (gm__wopen(&f, "idx", path) != 0) return -1;
    dim = (uint32_t)n;
    gm__idx_put_header(&f, 1, &dim);
    for (i = 0; i < n; i++) {
        unsigned char b = (unsigned char)y[i];
        gm__wput(&f, &b, 1);
    }
    return gm__wcommit(&f);
}

/* ---- 2-D toy densities ---- */
/* Each generator writes n points into xy (row-major pairs) and a label per point into lab
 * (never NULL here: gm_toy2d supplies scratch), using noise >= 0 already defaulted. */
typedef void (*gm__toy_fn)(int n, gm_rng *r, double noise, float *xy, int *lab);

/* Fisher-Yates over rows, so that balanced recipes (first half one class) come out mixed. */
static void gm__toy_shuffle(int n, gm_rng *r, float *xy, int *lab) {
    int i;
    for (i = n - 1; i > 0; i--) {
        int j = gm_rng_int(r, i + 1), tl = lab[i];
        float tx = xy[2 * i], ty = xy[2 * i + 1];
        xy[2 * i] = xy[2 * j]; xy[2 * i + 1] = xy[2 * j + 1]; lab[i] = lab[j];
        xy[2 * j] = tx; xy[2 * j + 1] = ty; lab[j] = tl;
    }
}
static void gm__toy_noise(int n, gm_rng *r, double noise, float *xy) {
    int i;
    if (noise <= 0) return;
    for (i = 0; i < 2 * n; i++) xy[i] = (float)(xy[i] + noise * gm_rng_normal(r));
}
/* k-th of m evenly spaced values in [0, end] (both ends included, like numpy linspace) */
static double gm__linspace(int k, int m, double end) { return m > 1 ? end * k / (m - 1) : 0.0; }

/* sklearn make_moons: outer (cos t, sin t), inner (1 - cos t, 0.5 - sin t), t evenly in [0, pi]. */
static void gm__toy_moons(int n, gm_rng *r, double noise, float *xy, int *lab) {
    int i, n_out = n / 2, n_in = n - n_out;
    for (i = 0; i < n; i++) {
        int inner = i >= n_out;
        double t = inner ? gm__linspace(i - n_out, n_in, GM__PI) : gm__linspace(i, n_out, GM__PI);
        xy[2 * i] = (float)(inner ? 1.0 - cos(t) : cos(t));
        xy[2 * i + 1] = (float)(inner ? 0.5 - sin(t) : sin(t));
        lab[i] = inner;
    }
    gm__toy_shuffle(n, r, xy, lab);
    gm__toy_noise(n, r, noise, xy);
}
/* sklearn make_circles(factor=0.5): angles evenly in [0, 2 pi) without the end point. */
static void gm__toy_circles(int n, gm_rng *r, double noise, float *xy, int *lab) {
    int i, n_out = n / 2, n_in = n - n_out;
    for (i = 0; i < n; i++) {
        int inner = i >= n_out;
        double t = inner ? 2 * GM__PI * (i - n_out) / n_in : 2 * GM__PI * i / n_out, s = inner ? 0.5 : 1.0;
        xy[2 * i] = (float)(s * cos(t));
        xy[2 * i + 1] = (float)(s * sin(t));
        lab[i] = inner;
    }
    gm__toy_shuffle(n, r, xy, lab);
    gm__toy_noise(n, r, noise, xy);
}
/* GAN-literature ring: 8 modes on a circle of radius 2, isotropic std `noise` (0.02). */
static void gm__toy_8gauss(int n, gm_rng *r, double noise, float *xy, int *lab) {
    int i;
    for (i = 0; i < n; i++) {
        int k = gm_rng_int(r, 8);
        double a = 2 * GM__PI * k / 8;
        xy[2 * i] = (float)(2.0 * cos(a) + noise * gm_rng_normal(r));
        xy[2 * i + 1] = (float)(2.0 * sin(a) + noise * gm_rng_normal(r));
        lab[i] = k;
    }
}
/* FFJORD checkerboard on [-4,4]^2: 8 filled cells of side 2; label = filled cell 0..7. */
static void gm__toy_checker(int n, gm_rng *r, double noise, float *xy, int *lab) {
    int i;
    for (i = 0; i < n; i++) {
        double x1 = gm_rng_uniform(r) * 4 - 2;
        int row = gm_rng_int(r, 2), col = (int)floor(x1) + 2; /* col 0..3 */
        double x2 = gm_rng_uniform(r) - 2.0 * row + (col & 1);
        xy[2 * i] = (float)(2 * x1);
        xy[2 * i + 1] = (float)(2 * x2);
        lab[i] = col * 2 + row;
    }
    gm__toy_noise(n, r, noise, xy);
}
/* FFJORD pinwheel: 5 arms; radial std 3*noise, tangential std noise (0.1), twist rate 0.25. */
static void gm__toy_pinwheel(int n, gm_rng *r, double noise, float *xy, int *lab) {
    int i;
    for (i = 0; i < n; i++) {
        int k = gm_rng_int(r, 5);
        double rad = 1.0 + 3 * noise * gm_rng_normal(r), tan_ = noise * gm_rng_normal(r);
        double a = 2 * GM__PI * k / 5 + 0.25 * exp(rad);
        xy[2 * i] = (float)(2 * (rad * cos(a) - tan_ * sin(a)));
        xy[2 * i + 1] = (float)(2 * (rad * sin(a) + tan_ * cos(a)));
        lab[i] = k;
    }
}
/* FFJORD 2spirals: t = sqrt(u) * 3 pi, arm (-t cos t, t sin t) + U[0,0.5) jitter, mirrored, /3. */
static void gm__toy_spirals(int n, gm_rng *r, double noise, float *xy, int *lab) {
    int i;
    for (i = 0; i < n; i++) {
        double t = sqrt(gm_rng_uniform(r)) * 3 * GM__PI, s = (i & 1) ? -1.0 : 1.0;
        double x = -cos(t) * t + gm_rng_uniform(r) * 0.5, y = sin(t) * t + gm_rng_uniform(r) * 0.5;
        xy[2 * i] = (float)(s * x / 3);
        xy[2 * i + 1] = (float)(s * y / 3);
        lab[i] = i & 1;
    }
    gm__toy_noise(n, r, noise, xy);
}
/* sklearn swiss roll (x, z) scaled by 1/5 as in FFJORD: t = 1.5 pi (1 + 2u), noise before scaling
 * (default 1.0, so std 0.2 in the output); label = quarter of the roll 0..3 (for colouring). */
static void gm__toy_swissroll(int n, gm_rng *r, double noise, float *xy, int *lab) {
    int i;
    for (i = 0; i < n; i++) {
        double u = gm_rng_uniform(r), t = 1.5 * GM__PI * (1 + 2 * u);
        xy[2 * i] = (float)((t * cos(t) + noise * gm_rng_normal(r)) / 5);
        xy[2 * i + 1] = (float)((t * sin(t) + noise * gm_rng_normal(r)) / 5);
        lab[i] = (int)(u * 4);
    }
}

typedef struct gm__toy { const char *name; gm__toy_fn fn; double default_noise; } gm__toy;
static const gm__toy gm__toys[] = {
    {"moons", gm__toy_moons, 0.05},       {"circles", gm__toy_circles, 0.05},
    {"8gaussians", gm__toy_8gauss, 0.02}, {"checkerboard", gm__toy_checker, 0.0},
    {"pinwheel", gm__toy_pinwheel, 0.1},  {"2spirals", gm__toy_spirals, 0.1},
    {"swissroll", gm__toy_swissroll, 1.0},
};
#define GM__NTOYS ((int)(sizeof gm__toys / sizeof gm__toys[0]))

GMDEF const char *gm_toy2d_names(void) { return "moons circles 8gaussians checkerboard pinwheel 2spirals swissroll"; }

GMDEF int gm_toy2d(const char *name, int n, uint64_t seed, float noise, float *xy, int *labels) {
    int i, *lab = labels;
    gm_rng r;
    if (!name) return gm_fail("toy2d: NULL name (valid: %s)", gm_toy2d_names());
    for (i = 0; i < GM__NTOYS && strcmp(name, gm__toys[i].name) != 0; i++) {}
    if (i == GM__NTOYS) return gm_fail("toy2d: unknown dataset '%s' (valid: %s)", name, gm_toy2d_names());
    if (n < 1 || !xy) return gm_fail("toy2d: %s: need n >= 1 (got %d) and an output buffer", name, n);
    if (!isfinite(noise)) return gm_fail("toy2d: %s: noise is not finite", name);
    if (!lab && !(lab = (int *)GENMOD_MALLOC((size_t)n * sizeof(int))))
        return gm_fail("toy2d: %s: out of memory for %d points", name, n);
    gm_rng_seed(&r, seed);
    gm__toys[i].fn(n, &r, noise < 0 ? gm__toys[i].default_noise : (double)noise, xy, lab);
    if (lab != labels) GENMOD_FREE(lab);
    return 0;
}

/* ---- dataset utilities ---- */
GMDEF void gm_standardize_fit(const float *x, int n, int d, float *mean, float *std) {
    int i, j;
    for (j = 0; j < d; j++) { /* two passes in double: exact enough and no cancellation */
        double s = 0, ss = 0, mu;
        for (i = 0; i < n; i++) s += x[(size_t)i * d + j];
        mu = n > 0 ? s / n : 0;
        for (i = 0; i < n; i++) { double t = x[(size_t)i * d + j] - mu; ss += t * t; }
        mean[j] = (float)mu;
        std[j] = n > 0 ? (float)sqrt(ss / n) : 1.0f;
        if (!(std[j] >= 1e-8f)) std[j] = 1.0f; /* constant feature: leave it centred, not divided by 0 */
    }
}
GMDEF void gm_standardize_apply(float *x, int n, int d, const float *mean, const float *std) {
    size_t i, total = (size_t)(n > 0 ? n : 0) * (size_t)(d > 0 ? d : 0);
    for (i = 0; i < total; i++) x[i] = (x[i] - mean[i % (size_t)d]) / std[i % (size_t)d];
}
GMDEF void gm_standardize_undo(float *x, int n, int d, const float *mean, const float *std) {
    size_t i, total = (size_t)(n > 0 ? n : 0) * (size_t)(d > 0 ? d : 0);
    for (i = 0; i < total; i++) x[i] = x[i] * std[i % (size_t)d] + mean[i % (size_t)d];
}

GMDEF void gm_binarize(float *dst, const float *src, size_t count, gm_rng *rng) {
    size_t i;
    for (i = 0; i < count; i++) dst[i] = gm_rng_uniform(rng) < src[i] ? 1.0f : 0.0f; /* p<=0 never, p>=1 always */
}
GMDEF void gm_dequantize(float *x, size_t count, gm_rng *rng) {
    size_t i;
    for (i = 0; i < count; i++) {
        double k = floor((double)x[i] * 255.0 + 0.5); /* recover the integer level k from k/255 */
        float v;
        if (k < 0) k = 0;
        if (k > 255) k = 255;
        v = (float)((k + gm_rng_uniform(rng)) / 256.0);
        x[i] = v < 1.0f ? v : 0.99999994f; /* float rounding must not reach 1 */
    }
}

static void gm__batcher_shuffle(gm_batcher *b) {
    int i;
    for (i = b->n - 1; i > 0; i--) {
        int j = gm_rng_int(&b->rng, i + 1), t = b->perm[i];
        b->perm[i] = b->perm[j];
        b->perm[j] = t;
    }
}
GMDEF int gm_batcher_init(gm_batcher *b, int n, int batch, uint64_t seed, int drop_last) {
    int i;
    if (!b) return gm_fail("batcher: NULL");
    memset(b, 0, sizeof *b);
    if (n < 1 || batch < 1) return gm_fail("batcher: need n >= 1 and batch >= 1 (got n=%d batch=%d)", n, batch);
    if (drop_last && batch > n)
        return gm_fail("batcher: batch size %d exceeds the %d items and drop_last is set: no batch would ever come", batch, n);
    b->perm = (int *)GENMOD_MALLOC((size_t)n * sizeof(int));
    if (!b->perm) return gm_fail("batcher: out of memory for %d indices", n);
    for (i = 0; i < n; i++) b->perm[i] = i;
    b->n = n; b->batch = batch; b->drop_last = drop_last ? 1 : 0;
    gm_rng_seed(&b->rng, seed);
    gm__batcher_shuffle(b);
    return 0;
}
GMDEF int gm_batcher_next(gm_batcher *b, const int **idx) {
    int k;
    if (!b || !b->perm) return 0;
    k = b->n - b->pos;
    if (k > b->batch) k = b->batch;
    if (k == 0 || (b->drop_last && k < b->batch)) { /* epoch over: reshuffle for the next one */
        b->pos = 0;
        b->epoch++;
        gm__batcher_shuffle(b);
        return 0;
    }
    if (idx) *idx = b->perm + b->pos;
    b->pos += k;
    return k;
}
GMDEF void gm_batcher_free(gm_batcher *b) {
    if (!b) return;
    GENMOD_FREE(b->perm);
    memset(b, 0, sizeof *b);
}
GMDEF void gm_dataset_gather(const gm_dataset *d, const int *idx, int count, float *x_out, int *y_out) {
    size_t per = (size_t)d->c * d->h * d->w;
    int i;
    for (i = 0; i < count; i++) {
        if (x_out) memcpy(x_out + (size_t)i * per, d->x + (size_t)idx[i] * per, per * sizeof(float));
        if (y_out && d->y) y_out[i] = d->y[idx[i]];
    }
}

/* ======================================================================================= */
/* Checkpoints                                                                             */
/* ======================================================================================= */
/* Safetensors: an 8-byte header length, a JSON header, the raw tensors. */

/* ---- strict JSON ---- */
/* A small validating JSON parser into a flat token array (jsmn-like). It exists only to read
 * safetensors headers, which are attacker-controlled: depth is limited, every string is checked
 * for valid escapes and UTF-8, and numbers must follow the JSON grammar exactly. */
enum { GM__J_OBJ, GM__J_ARR, GM__J_STR, GM__J_NUM, GM__J_LIT };
#define GM__JSON_MAX_DEPTH 32

typedef struct gm__jtok {
    int type;
    size_t start, end;      /* raw span in the text (strings: between the quotes) */
    int count;              /* objects: key/value pairs; arrays: elements */
    int next;               /* index of the first token after this subtree */
} gm__jtok;

typedef struct gm__json {
    const char *s;
    size_t len, pos;
    gm__jtok *t;
    int nt, cap;
    const char *err;        /* static description of the first error */
} gm__json;

static int gm__jerr(gm__json *j, const char *msg) {
    if (!j->err) j->err = msg;
    return -1;
}
static void gm__jws(gm__json *j) {
    while (j->pos < j->len && (j->s[j->pos] == ' ' || j->s[j->pos] == '\t' || j->s[j->pos] == '\n' || j->s[j->pos] == '\r'))
        j->pos++;
}
static int gm__jnew(gm__json *j, int type) {
    if (j->nt == j->cap) {
        int cap = j->cap ? j->cap * 2 : 64;
        gm__jtok *t;
        if (cap > INT_MAX / 2 || (size_t)cap > SIZE_MAX / sizeof(gm__jtok)) return gm__jerr(j, "too many tokens");
        t = (gm__jtok *)GENMOD_REALLOC(j->t, (size_t)cap * sizeof(gm__jtok));
        if (!t) return gm__jerr(j, "out of memory");
        j->t = t;
        j->cap = cap;
    }
    memset(&j->t[j->nt], 0, sizeof(gm__jtok));
    j->t[j->nt].type = type;
    j->t[j->nt].start = j->pos;
    return j->nt++;
}
static int gm__jhex(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
/* 4 hex digits at s[0..3] (caller checked the length) */
static long gm__jhex4(const char *s) {
    long v = 0;
    int i, h;
    for (i = 0; i < 4; i++) {
        if ((h = gm__jhex((unsigned char)s[i])) < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}
/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid (overlong, surrogate, >U+10FFFF). */
static int gm__utf8_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    int n, i;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 0;
    if ((size_t)n > avail) return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}
static int gm__jstring(gm__json *j) {
    int k = gm__jnew(j, GM__J_STR);
    if (k < 0) return -1;
    j->pos++; /* opening quote */
    j->t[k].start = j->pos;
    while (j->pos < j->len) {
        unsigned char c = (unsigned char)j->s[j->pos];
        if (c == '"') { j->t[k].end = j->pos++; j->t[k].next = j->nt; return 0; }
        if (c < 0x20) return gm__jerr(j, "control character in string");
        if (c == '\\') {
            char e;
            if (j->pos + 1 >= j->len) break;
            e = j->s[j->pos + 1];
            if (e == 'u') {
                long u;
                if (j->pos + 6 > j->len || (u = gm__jhex4(j->s + j->pos + 2)) < 0) return gm__jerr(j, "bad \\u escape");
                j->pos += 6;
                if (u >= 0xDC00 && u <= 0xDFFF) return gm__jerr(j, "unpaired low surrogate in \\u escape");
                if (u >= 0xD800 && u <= 0xDBFF) { /* must be followed by a low surrogate */
                    long lo2;
                    if (j->pos + 6 > j->len || j->s[j->pos] != '\\' || j->s[j->pos + 1] != 'u' ||
                        (lo2 = gm__jhex4(j->s + j->pos + 2)) < 0xDC00 || lo2 > 0xDFFF)
                        return gm__jerr(j, "unpaired high surrogate in \\u escape");
                    j->pos += 6;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0) return gm__jerr(j, "bad escape in string");
            j->pos += 2;
            continue;
        }
        {
            int n = gm__utf8_len((const unsigned char *)j->s + j->pos, j->len - j->pos);
            if (n == 0) return gm__jerr(j, "invalid UTF-8 in string");
            j->pos += (size_t)n;
        }
    }
    return gm__jerr(j, "unterminated string");
}
static int gm__jdigits(gm__json *j) { /* one or more digits */
    size_t p0 = j->pos;
    while (j->pos < j->len && j->s[j->pos] >= '0' && j->s[j->pos] <= '9') j->pos++;
    return j->pos > p0 ? 0 : gm__jerr(j, "bad number");
}
static int gm__jnumber(gm__json *j) {
    int k = gm__jnew(j, GM__J_NUM);
    if (k < 0) return -1;
    if (j->s[j->pos] == '-') j->pos++;
    if (j->pos < j->len && j->s[j->pos] == '0') j->pos++; /* no leading zeros */
    else if (gm__jdigits(j) != 0) return -1;
    if (j->pos < j->len && j->s[j->pos] == '.') { j->pos++; if (gm__jdigits(j) != 0) return -1; }
    if (j->pos < j->len && (j->s[j->pos] == 'e' || j->s[j->pos] == 'E')) {
        j->pos++;
        if (j->pos < j->len && (j->s[j->pos] == '+' || j->s[j->pos] == '-')) j->pos++;
        if (gm__jdigits(j) != 0) return -1;
    }
    j->t[k].end = j->pos;
    j->t[k].next = j->nt;
    return 0;
}
static int gm__jliteral(gm__json *j) {
    static const char *const lits[3] = {"true", "false", "null"};
    int i, k;
    for (i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if (j->len - j->pos >= n && memcmp(j->s + j->pos, lits[i], n) == 0) {
            if ((k = gm__jnew(j, GM__J_LIT)) < 0) return -1;
            j->pos += n;
            j->t[k].end = j->pos;
            j->t[k].next = j->nt;
            return 0;
        }
    }
    return gm__jerr(j, "unexpected character");
}
static int gm__jvalue(gm__json *j, int depth);
/* object or array: elements separated by commas, objects with "key": before each value */
static int gm__jcontainer(gm__json *j, int depth, int is_obj) {
    int k = gm__jnew(j, is_obj ? GM__J_OBJ : GM__J_ARR);
    char close = is_obj ? '}' : ']';
    if (k < 0) return -1;
    if (depth >= GM__JSON_MAX_DEPTH) return gm__jerr(j, "nested too deeply");
    j->pos++;
    gm__jws(j);
    if (j->pos < j->len && j->s[j->pos] == close) { j->pos++; j->t[k].end = j->pos; j->t[k].next = j->nt; return 0; }
    for (;;) {
        if (is_obj) {
            gm__jws(j);
            if (j->pos >= j->len || j->s[j->pos] != '"') return gm__jerr(j, "expected a string key");
            if (gm__jstring(j) != 0) return -1;
            gm__jws(j);
            if (j->pos >= j->len || j->s[j->pos] != ':') return gm__jerr(j, "expected ':'");
            j->pos++;
        }
        if (gm__jvalue(j, depth + 1) != 0) return -1;
        if (j->t[k].count == INT_MAX) return gm__jerr(j, "too many elements");
        j->t[k].count++;
        gm__jws(j);
        if (j->pos >= j->len) return gm__jerr(j, "unexpected end of text");
        if (j->s[j->pos] == ',') { j->pos++; continue; }
        if (j->s[j->pos] == close) { j->pos++; break; }
        return gm__jerr(j, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    j->t[k].end = j->pos;
    j->t[k].next = j->nt;
    return 0;
}
static int gm__jvalue(gm__json *j, int depth) {
    char c;
    gm__jws(j);
    if (j->pos >= j->len) return gm__jerr(j, "unexpected end of text");
    c = j->s[j->pos];
    if (c == '{' || c == '[') return gm__jcontainer(j, depth, c == '{');
    if (c == '"') return gm__jstring(j);
    if (c == '-' || (c >= '0' && c <= '9')) return gm__jnumber(j);
    return gm__jliteral(j);
}
/* Parses the whole text as one value; tokens in j->t (freed by the caller). */
static int gm__jparse(gm__json *j, const char *s, size_t len) {
    memset(j, 0, sizeof *j);
    j->s = s;
    j->len = len;
    if (gm__jvalue(j, 0) != 0) return -1;
    gm__jws(j);
    if (j->pos != j->len) return gm__jerr(j, "trailing characters after the JSON value");
    return 0;
}
static void gm__jappend_utf8(char *out, size_t *n, uint32_t cp) {
    if (cp < 0x80) out[(*n)++] = (char)cp;
    else if (cp < 0x800) { out[(*n)++] = (char)(0xC0 | (cp >> 6)); out[(*n)++] = (char)(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | (cp >> 12)); out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | (cp >> 18)); out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}
/* Decodes a (validated) string token into out (NUL-terminated). -1 if it does not fit or holds
 * a NUL character (which would make two different names compare equal in C). */
static int gm__jstr(const gm__json *j, int k, char *out, size_t cap) {
    const char *s = j->s;
    size_t i = j->t[k].start, e = j->t[k].end, n = 0;
    while (i < e) {
        uint32_t cp;
        if (n + 5 > cap) return -1;
        if (s[i] != '\\') { out[n++] = s[i++]; continue; }
        switch (s[i + 1]) {
        case 'b': out[n++] = '\b'; break; case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break; case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break; case 'u': break;
        default: out[n++] = s[i + 1]; break;
        }
        if (s[i + 1] != 'u') { i += 2; continue; }
        cp = (uint32_t)gm__jhex4(s + i + 2);
        i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* the parser checked the low half follows */
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)gm__jhex4(s + i + 2) - 0xDC00);
            i += 6;
        }
        if (cp == 0) return -1;
        gm__jappend_utf8(out, &n, cp);
    }
    out[n] = 0;
    return 0;
}
/* A number token that is a plain non-negative integer (no sign, fraction or exponent). */
static int gm__juint(const gm__json *j, int k, uint64_t *out) {
    size_t i;
    uint64_t v = 0;
    if (j->t[k].type != GM__J_NUM) return -1;
    for (i = j->t[k].start; i < j->t[k].end; i++) {
        unsigned d = (unsigned)(j->s[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* ---- string builder ---- */
typedef struct gm__sb { char *s; size_t len, cap; int oom; } gm__sb;

static void gm__sb_put(gm__sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (n + 1 > b->cap - b->len || !b->s) {
        size_t cap = b->cap ? b->cap : 256;
        char *t;
        while (cap - b->len < n + 1) {
            if (cap > SIZE_MAX / 2) { b->oom = 1; return; }
            cap *= 2;
        }
        t = (char *)GENMOD_REALLOC(b->s, cap);
        if (!t) { b->oom = 1; return; }
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}
static void gm__sb_str(gm__sb *b, const char *s) { gm__sb_put(b, s, strlen(s)); }
static void gm__sb_u64(gm__sb *b, uint64_t v) {
    char t[32];
    snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    gm__sb_str(b, t);
}
/* s as a JSON string literal; control characters as \u00XX */
static void gm__sb_jstr(gm__sb *b, const char *s) {
    gm__sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { char e[2]; e[0] = '\\'; e[1] = (char)c; gm__sb_put(b, e, 2); }
        else if (c < 0x20) { char e[8]; snprintf(e, sizeof e, "\\u%04x", c); gm__sb_put(b, e, 6); }
        else gm__sb_put(b, (const char *)&c, 1);
    }
    gm__sb_put(b, "\"", 1);
}
static int gm__utf8_valid(const char *s) {
    size_t n = strlen(s), i = 0;
    while (i < n) {
        int k = gm__utf8_len((const unsigned char *)s + i, n - i);
        if (k == 0) return 0;
        i += (size_t)k;
    }
    return 1;
}

/* ---- metadata ---- */
GMDEF const char *gm_meta_get(const gm_meta *m, const char *key) {
    int i;
    if (!m || !key) return NULL;
    for (i = 0; i < m->n && i < GM_META_MAX; i++)
        if (strcmp(m->key[i], key) == 0) return m->value[i];
    return NULL;
}

GMDEF int gm_meta_set(gm_meta *m, const char *key, const char *value) {
    int i;
    if (!m || !key || !value) return gm_fail("meta: NULL argument");
    if (m->n < 0 || m->n > GM_META_MAX) return gm_fail("meta: corrupt count %d (zero-initialize a gm_meta)", m->n);
    if (strlen(key) >= GM_META_KEY_MAX) return gm_fail("meta: key '%.40s...' longer than %d bytes", key, GM_META_KEY_MAX - 1);
    if (strlen(value) >= GM_META_VALUE_MAX)
        return gm_fail("meta: value of '%s' longer than %d bytes", key, GM_META_VALUE_MAX - 1);
    if (strncmp(key, "optim.", 6) == 0) return gm_fail("meta: key '%s': the prefix 'optim.' is reserved", key);
    for (i = 0; i < m->n; i++)
        if (strcmp(m->key[i], key) == 0) break;
    if (i == GM_META_MAX) return gm_fail("meta: full (%d entries); cannot add '%s'", GM_META_MAX, key);
    if (i == m->n) { strcpy(m->key[i], key); m->n++; }
    strcpy(m->value[i], value);
    return 0;
}

GMDEF int gm_meta_setf(gm_meta *m, const char *key, const char *fmt, ...) {
    char v[GM_META_VALUE_MAX + 1];
    va_list ap;
    int n;
    if (!fmt) return gm_fail("meta: NULL format");
    va_start(ap, fmt);
    n = vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= GM_META_VALUE_MAX) return gm_fail("meta: value of '%s' longer than %d bytes", key ? key : "?", GM_META_VALUE_MAX - 1);
    return gm_meta_set(m, key, v);
}

GMDEF int gm_meta_set_rng(gm_meta *m, const char *key, const gm_rng *r) {
    uint32_t spare;
    if (!r) return gm_fail("meta: NULL random stream for '%s'", key ? key : "?");
    memcpy(&spare, &r->spare, sizeof spare);
    return gm_meta_setf(m, key, "xoshiro128 %08lx %08lx %08lx %08lx %d %08lx", (unsigned long)r->s[0],
                        (unsigned long)r->s[1], (unsigned long)r->s[2], (unsigned long)r->s[3], r->has_spare ? 1 : 0,
                        (unsigned long)spare);
}

GMDEF int gm_meta_get_rng(const gm_meta *m, const char *key, gm_rng *r) {
    const char *v = gm_meta_get(m, key);
    unsigned long w[5];
    int has_spare, used = 0;
    gm_rng t;
    if (!v || !r) return -1;
    if (sscanf(v, "xoshiro128 %8lx %8lx %8lx %8lx %d %8lx%n", &w[0], &w[1], &w[2], &w[3], &has_spare, &w[4], &used) != 6 ||
        v[used] != 0 || (has_spare != 0 && has_spare != 1) || !(w[0] | w[1] | w[2] | w[3]))
        return -1;   /* the all-zero state would never leave zero */
    t.s[0] = (uint32_t)w[0]; t.s[1] = (uint32_t)w[1]; t.s[2] = (uint32_t)w[2]; t.s[3] = (uint32_t)w[3];
    t.has_spare = has_spare;
    {
        uint32_t spare = (uint32_t)w[4];
        memcpy(&t.spare, &spare, sizeof spare);
    }
    *r = t;
    return 0;
}

/* Optimizer fields stored in __metadata__ as strings, described once for save and load. Field F
   of a part's optimizer is the key "optim.<part>.F" ("optim.F" for the part named ""). */
enum { GM__OF_FLOAT, GM__OF_LONG, GM__OF_KIND, GM__OF_SCHED };
typedef struct gm__optfield { const char *key; int type; size_t off; } gm__optfield;
#define GM__OFS(f) (offsetof(gm_optim, sched) + offsetof(gm_schedule, f))
static const gm__optfield gm__optfields[] = {
    {"kind", GM__OF_KIND, offsetof(gm_optim, kind)},
    {"step", GM__OF_LONG, offsetof(gm_optim, step)},
    {"lr", GM__OF_FLOAT, offsetof(gm_optim, lr)},
    {"beta1", GM__OF_FLOAT, offsetof(gm_optim, beta1)},
    {"beta2", GM__OF_FLOAT, offsetof(gm_optim, beta2)},
    {"eps", GM__OF_FLOAT, offsetof(gm_optim, eps)},
    {"momentum", GM__OF_FLOAT, offsetof(gm_optim, momentum)},
    {"alpha", GM__OF_FLOAT, offsetof(gm_optim, alpha)},
    {"weight_decay", GM__OF_FLOAT, offsetof(gm_optim, weight_decay)},
    {"clip_norm", GM__OF_FLOAT, offsetof(gm_optim, clip_norm)},
    {"clip_value", GM__OF_FLOAT, offsetof(gm_optim, clip_value)},
    {"sched.kind", GM__OF_SCHED, GM__OFS(kind)},
    {"sched.warmup", GM__OF_LONG, GM__OFS(warmup)},
    {"sched.step_size", GM__OF_LONG, GM__OFS(step_size)},
    {"sched.gamma", GM__OF_FLOAT, GM__OFS(gamma)},
    {"sched.total", GM__OF_LONG, GM__OFS(total)},
    {"sched.min_lr", GM__OF_FLOAT, GM__OFS(min_lr)},
};
#define GM__NOPTFIELDS ((int)(sizeof gm__optfields / sizeof gm__optfields[0]))
static const char *const gm__optim_kinds[] = {"sgd", "rmsprop", "adam", "adamw"};
static const char *const gm__sched_kinds[] = {"constant", "step", "cosine"};

/* The field's value as a string (floats with 9 digits: exact round trip). */
static int gm__optfield_format(const gm_optim *o, const gm__optfield *f, char *out, size_t cap) {
    const char *base = (const char *)o + f->off;
    int k;
    switch (f->type) {
    case GM__OF_FLOAT: { float v; memcpy(&v, base, sizeof v); snprintf(out, cap, "%.9g", (double)v); return 0; }
    case GM__OF_LONG: { long v; memcpy(&v, base, sizeof v); snprintf(out, cap, "%ld", v); return 0; }
    default:
        memcpy(&k, base, sizeof k);
        if (f->type == GM__OF_KIND && k >= 0 && k < 4) { snprintf(out, cap, "%s", gm__optim_kinds[k]); return 0; }
        if (f->type == GM__OF_SCHED && k >= 0 && k < 3) { snprintf(out, cap, "%s", gm__sched_kinds[k]); return 0; }
        return -1;
    }
}
/* Parses s into the field; -1 if it is not a complete, finite, in-range value. */
static int gm__optfield_parse(gm_optim *o, const gm__optfield *f, const char *s) {
    char *base = (char *)o + f->off, *end;
    int k;
    errno = 0;
    if (f->type == GM__OF_FLOAT) {
        double d = strtod(s, &end);
        float v = (float)d;
        if (end == s || *end || errno || !isfinite(d) || fabs(d) > 3.4e38) return -1;
        memcpy(base, &v, sizeof v);
        return 0;
    }
    if (f->type == GM__OF_LONG) {
        long v = strtol(s, &end, 10);
        if (end == s || *end || errno || v < 0) return -1;
        memcpy(base, &v, sizeof v);
        return 0;
    }
    for (k = 0; k < (f->type == GM__OF_KIND ? 4 : 3); k++)
        if (strcmp(s, f->type == GM__OF_KIND ? gm__optim_kinds[k] : gm__sched_kinds[k]) == 0) {
            memcpy(base, &k, sizeof k);
            return 0;
        }
    return -1;
}

/* ---- safetensors save ---- */
/* One layout for plain checkpoints and models. A model is one or more parts, each a gm_params with
   an optional optimizer. View V of part P is the tensor "P.V", its moments "optim.m.P.V" and
   "optim.v.P.V", and the optimizer's fields the metadata "optim.P.<field>". A part named "" (only
   ever alone) drops the "P." everywhere, so a plain checkpoint is the one-part case. Part names hold
   no '.', so every stored name splits into part and view one way only. */
#define GM__ST_NAME_MAX 160
#define GM__ST_MAX_DIMS 16
#define GM__PART_NAME_MAX 32
enum { GM__ST_WEIGHT, GM__ST_M, GM__ST_V, GM__ST_IGNORED };
static const char *const gm__st_roles[3] = {"", "optim.m.", "optim.v."}; /* name prefix per role */

/* prefix + part + "." + name, or prefix + name for the part "" */
static void gm__st_name(char *out, size_t cap, const char *prefix, const char *part, const char *name) {
    snprintf(out, cap, "%s%s%s%s", prefix, part, part[0] ? "." : "", name);
}

static int gm__st_reserved(const char *name) {
    return strcmp(name, "__metadata__") == 0 || strncmp(name, "optim.", 6) == 0;
}

/* The index of the part named by the len bytes at s, or -1. */
static int gm__st_find_part(const gm_model_part *parts, int nparts, const char *s, size_t len) {
    int k;
    for (k = 0; k < nparts; k++)
        if (strlen(parts[k].name) == len && strncmp(parts[k].name, s, len) == 0) return k;
    return -1;
}

/* Part names (for save and load): valid UTF-8 without '.', unique, "" only alone, not "optim". */
static int gm__st_check_parts(const char *path, const gm_model_part *parts, int nparts) {
    int k;
    if (!parts || nparts < 1) return gm_fail("checkpoint: %s: a model needs at least one part", path);
    for (k = 0; k < nparts; k++) {
        const char *nm = parts[k].name;
        if (!nm || !parts[k].params) return gm_fail("checkpoint: %s: part %d has no name or no parameters", path, k);
        if (strlen(nm) >= GM__PART_NAME_MAX || strchr(nm, '.') || !gm__utf8_valid(nm))
            return gm_fail("checkpoint: %s: part name '%.40s' must be valid UTF-8 of at most %d bytes without '.'",
                           path, nm, GM__PART_NAME_MAX - 1);
        if (!nm[0] && nparts > 1) return gm_fail("checkpoint: %s: a part named \"\" must be the only part", path);
        if (strcmp(nm, "optim") == 0) return gm_fail("checkpoint: %s: the part name 'optim' is reserved", path);
        if (gm__st_find_part(parts, k, nm, strlen(nm)) >= 0)
            return gm_fail("checkpoint: %s: part name '%s' is used twice", path, nm);
    }
    return 0;
}

/* Every view of a part must be stored under a name that reads back as the same view. */
static int gm__st_check_part_save(const char *path, const gm_model_part *pt) {
    const gm_params *p = pt->params;
    char nm[GM__ST_NAME_MAX];
    int i;
    for (i = 0; i < p->nviews; i++) {
        const char *vn = p->views[i].name;
        if (!memchr(vn, 0, GM_NAME_MAX)) return gm_fail("checkpoint: %s: view %d has an unterminated name", path, i);
        gm__st_name(nm, sizeof nm, "", pt->name, vn);
        if (gm__st_reserved(nm)) return gm_fail("checkpoint: %s: parameter name '%s' is reserved", path, nm);
        if (!gm__utf8_valid(vn)) return gm_fail("checkpoint: %s: parameter name of view %d is not valid UTF-8", path, i);
        if (gm_params_find(p, vn) != i) return gm_fail("checkpoint: %s: parameter name '%s' is used twice", path, nm);
        if (p->views[i].offset > p->count || p->views[i].size > p->count - p->views[i].offset)
            return gm_fail("checkpoint: %s: view '%s' lies outside the parameter buffer", path, nm);
    }
    if (pt->opt && (pt->opt->m || pt->opt->v) && pt->opt->n != p->count)
        return gm_fail("checkpoint: %s: optimizer holds %lu floats but the model has %lu", path,
                        (unsigned long)pt->opt->n, (unsigned long)p->count);
    for (i = 0; pt->opt && i < GM__NOPTFIELDS; i++) {
        char v[64];
        if (gm__optfield_format(pt->opt, &gm__optfields[i], v, sizeof v) != 0) {
            gm__st_name(nm, sizeof nm, "optim.", pt->name, gm__optfields[i].key);
            return gm_fail("checkpoint: %s: optimizer field %s has an invalid value", path, nm);
        }
    }
    return 0;
}

/* The caller's metadata: terminated, valid UTF-8, unique keys, none under a reserved prefix
   ("optim."; for a model's extra keys also "genmod.", which gm_model_save writes itself). */
static int gm__st_check_meta(const char *path, const gm_meta *meta, int extra) {
    int i, most = extra ? GM_META_MAX - 3 : GM_META_MAX;
    if (!meta) return 0;
    if (meta->n < 0 || meta->n > GM_META_MAX) return gm_fail("checkpoint: %s: corrupt metadata count %d", path, meta->n);
    if (meta->n > most) return gm_fail("checkpoint: %s: %d extra metadata entries (at most %d)", path, meta->n, most);
    for (i = 0; i < meta->n; i++) {
        if (!memchr(meta->key[i], 0, GM_META_KEY_MAX) || !memchr(meta->value[i], 0, GM_META_VALUE_MAX))
            return gm_fail("checkpoint: %s: metadata entry %d is not NUL-terminated", path, i);
        if (strncmp(meta->key[i], "optim.", 6) == 0 || (extra && strncmp(meta->key[i], "genmod.", 7) == 0))
            return gm_fail("checkpoint: %s: metadata key '%s' uses the reserved prefix '%s'", path, meta->key[i],
                           meta->key[i][0] == 'o' ? "optim." : "genmod.");
        if (!gm__utf8_valid(meta->key[i]) || !gm__utf8_valid(meta->value[i]))
            return gm_fail("checkpoint: %s: metadata entry '%s' is not valid UTF-8", path, meta->key[i]);
        if (gm_meta_get(meta, meta->key[i]) != meta->value[i])
            return gm_fail("checkpoint: %s: metadata key '%s' appears twice", path, meta->key[i]);
    }
    return 0;
}

static void gm__st_put_meta(gm__sb *b, const char *key, const char *value, int *first) {
    if (!*first) gm__sb_str(b, ",");
    *first = 0;
    gm__sb_jstr(b, key); gm__sb_str(b, ":"); gm__sb_jstr(b, value);
}

static void gm__st_put_tensor(gm__sb *b, int role, const char *part, const gm_param_view *v, uint64_t *off) {
    int d;
    char name[GM__ST_NAME_MAX];
    gm__st_name(name, sizeof name, gm__st_roles[role], part, v->name);
    gm__sb_str(b, ",");
    gm__sb_jstr(b, name);
    gm__sb_str(b, ":{\"dtype\":\"F32\",\"shape\":[");
    for (d = 0; d < v->ndim; d++) {
        if (d) gm__sb_str(b, ",");
        gm__sb_u64(b, (uint64_t)v->shape[d]);
    }
    gm__sb_str(b, "],\"data_offsets\":[");
    gm__sb_u64(b, *off);
    gm__sb_str(b, ",");
    *off += (uint64_t)v->size * 4;
    gm__sb_u64(b, *off);
    gm__sb_str(b, "]}");
}

/* The JSON header, padded with spaces to a multiple of 8 bytes: metadata (head, the caller's, then
   each optimizer's fields), then every part's weights, then the first moments, then the second. */
static int gm__st_header_build(gm__sb *b, const gm_model_part *parts, int nparts, const gm_meta *head,
                               const gm_meta *meta) {
    int i, k, role, first = 1;
    uint64_t off = 0;
    char key[GM__ST_NAME_MAX], v[64];
    gm__sb_str(b, "{\"__metadata__\":{");
    for (i = 0; head && i < head->n; i++) gm__st_put_meta(b, head->key[i], head->value[i], &first);
    for (i = 0; meta && i < meta->n; i++) gm__st_put_meta(b, meta->key[i], meta->value[i], &first);
    for (k = 0; k < nparts; k++)
        for (i = 0; parts[k].opt && i < GM__NOPTFIELDS; i++) {
            gm__st_name(key, sizeof key, "optim.", parts[k].name, gm__optfields[i].key);
            gm__optfield_format(parts[k].opt, &gm__optfields[i], v, sizeof v);
            gm__st_put_meta(b, key, v, &first);
        }
    gm__sb_str(b, "}");
    for (role = GM__ST_WEIGHT; role <= GM__ST_V; role++)
        for (k = 0; k < nparts; k++)
            for (i = 0; (role == GM__ST_WEIGHT || parts[k].opt) && i < parts[k].params->nviews; i++)
                gm__st_put_tensor(b, role, parts[k].name, &parts[k].params->views[i], &off);
    gm__sb_str(b, "}");
    while (b->len % 8) gm__sb_str(b, " ");
    return b->oom ? -1 : 0;
}

/* The tensors' bytes in the header's order; moments never allocated are written as zeros. */
static void gm__st_put_data(gm__wfile *w, const gm_model_part *parts, int nparts) {
    int i, k, role;
    for (role = GM__ST_WEIGHT; role <= GM__ST_V; role++)
        for (k = 0; k < nparts; k++) {
            const gm_params *p = parts[k].params;
            const gm_optim *o = parts[k].opt;
            const float *src = role == GM__ST_WEIGHT ? p->data : !o ? NULL : role == GM__ST_M ? o->m : o->v;
            for (i = 0; (role == GM__ST_WEIGHT || o) && i < p->nviews; i++)
                gm__wput_f32le(w, src ? src + p->views[i].offset : NULL, p->views[i].size);
        }
}

/* Checks the parts, then writes header and tensors to a temporary file renamed over path. The
   metadata (head, meta) has been checked by the caller. */
static int gm__st_save(const char *path, const gm_model_part *parts, int nparts, const gm_meta *head,
                       const gm_meta *meta) {
    gm__sb hdr;
    gm__wfile w;
    unsigned char len8[8];
    int i;
    if (gm__st_check_parts(path, parts, nparts) != 0) return -1;
    for (i = 0; i < nparts; i++)
        if (gm__st_check_part_save(path, &parts[i]) != 0) return -1;
    memset(&hdr, 0, sizeof hdr);
    if (gm__st_header_build(&hdr, parts, nparts, head, meta) != 0) {
        GENMOD_FREE(hdr.s);
        return gm_fail("checkpoint: %s: out of memory building the header", path);
    }
    if (gm__wopen(&w, "checkpoint", path) != 0) { GENMOD_FREE(hdr.s); return -1; }
    for (i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hdr.len >> (8 * i));
    gm__wput(&w, len8, 8);
    gm__wput(&w, hdr.s, hdr.len);
    GENMOD_FREE(hdr.s);
    gm__st_put_data(&w, parts, nparts);
    return gm__wcommit(&w);
}

GMDEF int gm_checkpoint_save(const char *path, const gm_params *p, const gm_optim *opt, const gm_meta *meta) {
    gm_model_part part;
    if (!path || !p) return gm_fail("checkpoint: NULL path or params");
    if (gm__st_check_meta(path, meta, 0) != 0) return -1;
    part.name = "";
    part.params = (gm_params *)p; /* only read */
    part.opt = (gm_optim *)opt;
    return gm__st_save(path, &part, 1, NULL, meta);
}

GMDEF int gm_model_save(const char *path, const char *model, const char *arch, long step,
                        const gm_model_part *parts, int nparts, const gm_meta *extra) {
    gm_meta head;
    if (!path || !model || !arch) return gm_fail("gm_model_save: NULL path, model or architecture");
    if (step < 0) return gm_fail("checkpoint: %s: negative step %ld", path, step);
    if (strlen(model) >= GM_META_VALUE_MAX || strlen(arch) >= GM_META_VALUE_MAX)
        return gm_fail("checkpoint: %s: model name or architecture longer than %d bytes", path, GM_META_VALUE_MAX - 1);
    if (gm__st_check_meta(path, extra, 1) != 0) return -1;
    memset(&head, 0, sizeof head);
    gm_meta_set(&head, "genmod.model", model); /* lengths checked above: cannot fail */
    gm_meta_set(&head, "genmod.arch", arch);
    gm_meta_setf(&head, "genmod.step", "%ld", step);
    if (gm__st_check_meta(path, &head, 0) != 0) return -1;
    return gm__st_save(path, parts, nparts, &head, extra);
}

/* ---- safetensors load ---- */
typedef struct gm__st_entry {
    char name[GM__ST_NAME_MAX];
    int ndim;
    uint64_t shape[GM__ST_MAX_DIMS];
    uint64_t begin, end;
    int part, view, role;   /* matching model part and view, and what it holds */
} gm__st_entry;

typedef struct gm__st {
    const char *path;
    gm__json j;
    gm__st_entry *e;
    int ne;
    int meta_tok;           /* token of the __metadata__ object, or -1 */
    const unsigned char *data;
    uint64_t dlen;          /* bytes in the data section */
} gm__st;
static void gm__shape_str(char *out, size_t cap, int ndim, const uint64_t *s64, const int *s32) {
    size_t n = 0;
    int d;
    n += (size_t)snprintf(out, cap, "[");
    for (d = 0; d < ndim && n < cap; d++)
        n += (size_t)snprintf(out + n, cap - n, "%s%llu", d ? "," : "",
                              (unsigned long long)(s64 ? s64[d] : (uint64_t)s32[d]));
    if (n < cap) snprintf(out + n, cap - n, "]");
}

/* Length prefix, JSON syntax and a top-level object. */
static int gm__st_header(gm__st *st, const unsigned char *buf, size_t len) {
    uint64_t n;
    if (len < 8) return gm_fail("checkpoint: %s: truncated: %lu bytes, too short for a safetensors file", st->path, (unsigned long)len);
    n = gm__le64(buf);
    if (n > (uint64_t)len - 8)
        return gm_fail("checkpoint: %s: header length %llu exceeds the file size (%lu bytes): truncated or not a "
                        "safetensors file", st->path, (unsigned long long)n, (unsigned long)len);
    if (n < 2) return gm_fail("checkpoint: %s: header length %llu is too small", st->path, (unsigned long long)n);
    if (gm__jparse(&st->j, (const char *)buf + 8, (size_t)n) != 0)
        return gm_fail("checkpoint: %s: bad JSON header: %s at byte %lu", st->path, st->j.err, (unsigned long)(8 + st->j.pos));
    if (st->j.t[0].type != GM__J_OBJ) return gm_fail("checkpoint: %s: header is not a JSON object", st->path);
    st->data = buf + 8 + n;
    st->dlen = (uint64_t)len - 8 - n;
    return 0;
}

/* The shape array: non-negative integers, product*4 bytes without overflow. */
static int gm__st_shape(gm__st *st, gm__st_entry *e, int k, uint64_t *bytes) {
    int i, c = st->j.t[k].count;
    if (st->j.t[k].type != GM__J_ARR) return gm_fail("checkpoint: %s: tensor '%s': shape is not an array", st->path, e->name);
    if (c > GM__ST_MAX_DIMS) return gm_fail("checkpoint: %s: tensor '%s': %d dimensions (max %d)", st->path, e->name, c, GM__ST_MAX_DIMS);
    e->ndim = c;
    *bytes = 4;
    for (i = 0, k++; i < c; i++, k = st->j.t[k].next) {
        if (gm__juint(&st->j, k, &e->shape[i]) != 0)
            return gm_fail("checkpoint: %s: tensor '%s': shape entry %d is not a non-negative integer", st->path, e->name, i);
        if (!gm__mul_u64(*bytes, e->shape[i], bytes))
            return gm_fail("checkpoint: %s: tensor '%s': shape size overflows", st->path, e->name);
    }
    return 0;
}

static int gm__st_offsets(gm__st *st, gm__st_entry *e, int k) {
    if (st->j.t[k].type != GM__J_ARR || st->j.t[k].count != 2 || gm__juint(&st->j, k + 1, &e->begin) != 0 ||
        gm__juint(&st->j, st->j.t[k + 1].next, &e->end) != 0)
        return gm_fail("checkpoint: %s: tensor '%s': data_offsets must be [begin, end] with non-negative integers",
                        st->path, e->name);
    return 0;
}

/* One tensor entry: exactly the keys dtype, shape, data_offsets, consistent with each other. */
static int gm__st_entry_parse(gm__st *st, gm__st_entry *e, int k) {
    int i, c, seen = 0;
    uint64_t bytes = 0;
    char key[32], dt[32];
    if (st->j.t[k].type != GM__J_OBJ) return gm_fail("checkpoint: %s: tensor '%s': entry is not an object", st->path, e->name);
    c = st->j.t[k].count;
    for (i = 0, k++; i < c; i++) {
        int v = st->j.t[k].next, bit;
        if (gm__jstr(&st->j, k, key, sizeof key) != 0) key[0] = 0;
        bit = strcmp(key, "dtype") == 0 ? 1 : strcmp(key, "shape") == 0 ? 2 : strcmp(key, "data_offsets") == 0 ? 4 : 0;
        if (!bit) return gm_fail("checkpoint: %s: tensor '%s': unknown field '%s'", st->path, e->name, key);
        if (seen & bit) return gm_fail("checkpoint: %s: tensor '%s': field '%s' appears twice", st->path, e->name, key);
        seen |= bit;
        if (bit == 1) {
            if (st->j.t[v].type != GM__J_STR || gm__jstr(&st->j, v, dt, sizeof dt) != 0)
                return gm_fail("checkpoint: %s: tensor '%s': dtype is not a short string", st->path, e->name);
            if (strcmp(dt, "F32") != 0)
                return gm_fail("checkpoint: %s: tensor '%s': dtype %s is not supported (only F32)", st->path, e->name, dt);
        } else if (bit == 2) {
            if (gm__st_shape(st, e, v, &bytes) != 0) return -1;
        } else if (gm__st_offsets(st, e, v) != 0) return -1;
        k = st->j.t[v].next;
    }
    if (seen != 7) return gm_fail("checkpoint: %s: tensor '%s': missing field '%s'", st->path, e->name,
                                   !(seen & 1) ? "dtype" : !(seen & 2) ? "shape" : "data_offsets");
    if (e->end < e->begin)
        return gm_fail("checkpoint: %s: tensor '%s': data_offsets [%llu,%llu] end before begin", st->path, e->name,
                        (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > st->dlen)
        return gm_fail("checkpoint: %s: tensor '%s': data_offsets [%llu,%llu] lie outside the data section (%llu bytes)",
                        st->path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)st->dlen);
    if (e->end - e->begin != bytes)
        return gm_fail("checkpoint: %s: tensor '%s': data_offsets span %llu bytes but its F32 shape needs %llu",
                        st->path, e->name, (unsigned long long)(e->end - e->begin), (unsigned long long)bytes);
    return 0;
}

/* All top-level entries into st->e; __metadata__ remembered for later. */
static int gm__st_collect(gm__st *st) {
    int i, k, c = st->j.t[0].count;
    st->meta_tok = -1;
    if ((size_t)c >= SIZE_MAX / sizeof(gm__st_entry)) return gm_fail("checkpoint: %s: too many header entries", st->path);
    st->e = (gm__st_entry *)GENMOD_MALLOC(((size_t)c + 1) * sizeof(gm__st_entry));
    if (!st->e) return gm_fail("checkpoint: %s: out of memory for %d header entries", st->path, c);
    for (i = 0, k = 1; i < c; i++) {
        int v = st->j.t[k].next;
        gm__st_entry *e = &st->e[st->ne];
        memset(e, 0, sizeof *e);
        if (gm__jstr(&st->j, k, e->name, sizeof e->name) != 0)
            return gm_fail("checkpoint: %s: a tensor name is longer than %d bytes or contains NUL", st->path, GM__ST_NAME_MAX - 1);
        if (strcmp(e->name, "__metadata__") == 0) {
            if (st->meta_tok >= 0) return gm_fail("checkpoint: %s: __metadata__ appears twice", st->path);
            if (st->j.t[v].type != GM__J_OBJ) return gm_fail("checkpoint: %s: __metadata__ is not an object", st->path);
            st->meta_tok = v;
        } else {
            if (gm__st_entry_parse(st, e, v) != 0) return -1;
            st->ne++;
        }
        k = st->j.t[v].next;
    }
    return 0;
}

static int gm__st_cmp_name(const void *a, const void *b) {
    return strcmp(((const gm__st_entry *)a)->name, ((const gm__st_entry *)b)->name);
}
static int gm__st_cmp_off(const void *a, const void *b) {
    const gm__st_entry *x = *(const gm__st_entry *const *)a, *y = *(const gm__st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end ? 1 : 0;
}

/* Unique names; ranges that tile the data section exactly (no overlap, gap or tail). */
static int gm__st_layout(gm__st *st) {
    const gm__st_entry **o;
    uint64_t at = 0;
    int i;
    if (st->ne > 1) qsort(st->e, (size_t)st->ne, sizeof(gm__st_entry), gm__st_cmp_name);
    for (i = 1; i < st->ne; i++)
        if (strcmp(st->e[i - 1].name, st->e[i].name) == 0)
            return gm_fail("checkpoint: %s: tensor '%s' appears twice", st->path, st->e[i].name);
    o = (const gm__st_entry **)GENMOD_MALLOC(((size_t)st->ne + 1) * sizeof *o);
    if (!o) return gm_fail("checkpoint: %s: out of memory", st->path);
    for (i = 0; i < st->ne; i++) o[i] = &st->e[i];
    if (st->ne > 1) qsort(o, (size_t)st->ne, sizeof *o, gm__st_cmp_off);
    for (i = 0; i < st->ne; i++) {
        if (o[i]->begin != at) {
            if (o[i]->begin < at)
                gm_fail("checkpoint: %s: tensors '%s' and '%s' have overlapping data_offsets", st->path,
                         o[i - 1]->name, o[i]->name);
            else
                gm_fail("checkpoint: %s: %llu unused bytes before tensor '%s' in the data section", st->path,
                         (unsigned long long)(o[i]->begin - at), o[i]->name);
            GENMOD_FREE(o);
            return -1;
        }
        at = o[i]->end;
    }
    GENMOD_FREE(o);
    if (at != st->dlen)
        return gm_fail("checkpoint: %s: %llu bytes after the last tensor in the data section (truncated header "
                        "or trailing garbage)", st->path, (unsigned long long)(st->dlen - at));
    return 0;
}

static int gm__st_shape_eq(const gm__st_entry *e, const gm_param_view *v) {
    int d;
    if (e->ndim != v->ndim) return 0;
    for (d = 0; d < v->ndim; d++)
        if (e->shape[d] != (uint64_t)v->shape[d]) return 0;
    return 1;
}

/* The part a stored name belongs to (moment prefix already removed from nm) and, in *view, the
   view's name within it; -1 for a name of no part of this model. */
static int gm__st_part_of(gm__st *st, const gm_model_part *parts, int nparts, const char *full, const char *nm,
                          const char **view) {
    const char *dot = strchr(nm, '.');
    int k;
    if (nparts == 1 && !parts[0].name[0]) { *view = nm; return 0; }
    k = dot ? gm__st_find_part(parts, nparts, nm, (size_t)(dot - nm)) : -1;
    if (k < 0)
        return gm_fail("checkpoint: %s: unexpected tensor '%s': the model has no part '%.*s'", st->path, full,
                       (int)(dot ? (size_t)(dot - nm) : strlen(nm)), nm);
    *view = dot + 1;
    return k;
}

/* Pairs each tensor with a part, view and role; counts in have[(base[part] + view) * 3 + role]. */
static int gm__st_match(gm__st *st, const gm_model_part *parts, int nparts, const int *base, int *have) {
    int i;
    for (i = 0; i < st->ne; i++) {
        gm__st_entry *e = &st->e[i];
        const char *nm = e->name, *vn = NULL;
        const gm_params *p;
        e->role = GM__ST_WEIGHT;
        if (strncmp(nm, "optim.m.", 8) == 0 || strncmp(nm, "optim.v.", 8) == 0) {
            e->role = nm[6] == 'm' ? GM__ST_M : GM__ST_V;
            nm += 8;
        }
        if ((e->part = gm__st_part_of(st, parts, nparts, e->name, nm, &vn)) < 0) return -1;
        if (e->role != GM__ST_WEIGHT && !parts[e->part].opt) { e->role = GM__ST_IGNORED; continue; }
        p = parts[e->part].params;
        e->view = gm_params_find(p, vn);
        if (e->view < 0)
            return gm_fail("checkpoint: %s: unexpected tensor '%s': the model has no parameter '%s'", st->path, e->name, nm);
        if (!gm__st_shape_eq(e, &p->views[e->view])) {
            char a[128], b[128];
            gm__shape_str(a, sizeof a, e->ndim, e->shape, NULL);
            gm__shape_str(b, sizeof b, p->views[e->view].ndim, NULL, p->views[e->view].shape);
            return gm_fail("checkpoint: %s: tensor '%s' has shape %s but the model expects %s", st->path, e->name, a, b);
        }
        have[(base[e->part] + e->view) * 3 + e->role]++;
    }
    return 0;
}

/* Every view of the part present, and both moments of each when it has an optimizer. */
static int gm__st_missing(gm__st *st, const gm_model_part *pt, const int *have) {
    const gm_params *p = pt->params;
    char nm[GM__ST_NAME_MAX];
    int i, any_opt = 0;
    for (i = 0; i < p->nviews; i++) {
        any_opt |= have[i * 3 + 1] | have[i * 3 + 2];
        gm__st_name(nm, sizeof nm, "", pt->name, p->views[i].name);
        if (!have[i * 3]) return gm_fail("checkpoint: %s: tensor '%s' is missing", st->path, nm);
    }
    if (pt->opt && !any_opt && p->nviews > 0)
        return gm_fail("checkpoint: %s: no optimizer state%s%s%s in this checkpoint (pass NULL as the optimizer to "
                       "load weights only)", st->path, pt->name[0] ? " for part '" : "", pt->name, pt->name[0] ? "'" : "");
    for (i = 0; pt->opt && i < p->nviews; i++)
        if (!have[i * 3 + 1] || !have[i * 3 + 2]) {
            gm__st_name(nm, sizeof nm, gm__st_roles[have[i * 3 + 1] ? GM__ST_V : GM__ST_M], pt->name, p->views[i].name);
            return gm_fail("checkpoint: %s: optimizer tensor '%s' is missing", st->path, nm);
        }
    return 0;
}

/* Matches every tensor, then checks that no part lacks one. base, then have, are in `counts`. */
static int gm__st_tensors(gm__st *st, const gm_model_part *parts, int nparts, int *counts) {
    int k, n = 0, *have = counts + nparts;
    for (k = 0; k < nparts; k++) { counts[k] = n; n += parts[k].params->nviews; }
    if (gm__st_match(st, parts, nparts, counts, have) != 0) return -1;
    for (k = 0; k < nparts; k++)
        if (gm__st_missing(st, &parts[k], have + (size_t)counts[k] * 3) != 0) return -1;
    return 0;
}

/* One "optim.*" key into its part's optimizer fields to[k] (ignored for a part loaded without one). */
static int gm__st_optkey(gm__st *st, const gm_model_part *parts, int nparts, const char *key, const char *val,
                         gm_optim *to, int *seen) {
    const char *field = key + 6;
    int k = 0, f;
    if (parts[0].name[0]) { /* "optim.<part>.<field>" */
        const char *dot = strchr(field, '.');
        k = dot ? gm__st_find_part(parts, nparts, field, (size_t)(dot - field)) : -1;
        if (k < 0) return gm_fail("checkpoint: %s: unknown optimizer metadata '%s'", st->path, key);
        field = dot + 1;
    }
    if (!parts[k].opt) return 0;
    for (f = 0; f < GM__NOPTFIELDS && strcmp(field, gm__optfields[f].key) != 0; f++) {}
    if (f == GM__NOPTFIELDS) return gm_fail("checkpoint: %s: unknown optimizer metadata '%s'", st->path, key);
    if (seen[k * GM__NOPTFIELDS + f]++) return gm_fail("checkpoint: %s: metadata key '%s' appears twice", st->path, key);
    if (gm__optfield_parse(&to[k], &gm__optfields[f], val) != 0)
        return gm_fail("checkpoint: %s: optimizer metadata '%s' has a bad value '%s'", st->path, key, val);
    return 0;
}

/* A non-optimizer key into *m. */
static int gm__st_metakey(gm__st *st, gm_meta *m, const char *key, const char *val) {
    if (strlen(key) >= GM_META_KEY_MAX)
        return gm_fail("checkpoint: %s: metadata key '%.40s...' is longer than %d bytes", st->path, key, GM_META_KEY_MAX - 1);
    if (gm_meta_get(m, key)) return gm_fail("checkpoint: %s: metadata key '%s' appears twice", st->path, key);
    if (m->n == GM_META_MAX) return gm_fail("checkpoint: %s: more than %d metadata entries", st->path, GM_META_MAX);
    strcpy(m->key[m->n], key); /* both fit: checked above and by the decode buffer size */
    strcpy(m->value[m->n], val);
    m->n++;
    return 0;
}

/* __metadata__: string values only. Other keys than "optim.*" go into *m (when m); "optim.*" keys
   fill to[k] for each of the nparts parts with an optimizer, which needs all its fields. */
static int gm__st_meta(gm__st *st, const gm_model_part *parts, int nparts, gm_optim *to, gm_meta *m) {
    int i, f, t, c, rc = -1, *seen;
    char key[GM__ST_NAME_MAX], val[GM_META_VALUE_MAX];
    seen = (int *)GENMOD_MALLOC(((size_t)nparts * GM__NOPTFIELDS + 1) * sizeof(int));
    if (!seen) return gm_fail("checkpoint: %s: out of memory", st->path);
    memset(seen, 0, ((size_t)nparts * GM__NOPTFIELDS + 1) * sizeof(int));
    c = st->meta_tok >= 0 ? st->j.t[st->meta_tok].count : 0;
    for (i = 0, t = st->meta_tok + 1; i < c; i++) {
        int v = st->j.t[t].next;
        if (gm__jstr(&st->j, t, key, sizeof key) != 0) {
            gm_fail("checkpoint: %s: a metadata key is longer than %d bytes or contains NUL", st->path, GM__ST_NAME_MAX - 1);
            goto done;
        }
        if (st->j.t[v].type != GM__J_STR) { gm_fail("checkpoint: %s: metadata '%s' is not a string", st->path, key); goto done; }
        if (gm__jstr(&st->j, v, val, sizeof val) != 0) {
            gm_fail("checkpoint: %s: metadata '%s': value longer than %d bytes or contains NUL", st->path, key, GM_META_VALUE_MAX - 1);
            goto done;
        }
        t = st->j.t[v].next;
        if (strncmp(key, "optim.", 6) != 0 ? m && gm__st_metakey(st, m, key, val) != 0
                                           : nparts > 0 && gm__st_optkey(st, parts, nparts, key, val, to, seen) != 0)
            goto done;
    }
    for (i = 0; i < nparts; i++)
        for (f = 0; parts[i].opt && f < GM__NOPTFIELDS; f++)
            if (!seen[i * GM__NOPTFIELDS + f]) {
                gm__st_name(key, sizeof key, "optim.", parts[i].name, gm__optfields[f].key);
                gm_fail("checkpoint: %s: optimizer metadata '%s' is missing", st->path, key);
                goto done;
            }
    rc = 0;
done:
    GENMOD_FREE(seen);
    return rc;
}

/* A model's file names the same model and architecture, and genmod.step (0 when absent) is a count. */
static int gm__st_identity(gm__st *st, const gm_meta *tm, const char *model, const char *arch, long *step) {
    const char *m = gm_meta_get(tm, "genmod.model"), *a = gm_meta_get(tm, "genmod.arch");
    const char *s = gm_meta_get(tm, "genmod.step");
    char *end;
    if (!m) return gm_fail("checkpoint: %s: holds no model name ('genmod.model'), expected a '%s' model", st->path, model);
    if (strcmp(m, model) != 0) return gm_fail("checkpoint: %s: holds a '%s' model, expected a '%s' model", st->path, m, model);
    if (!a || strcmp(a, arch) != 0)
        return gm_fail("checkpoint: %s: holds architecture '%s', expected '%s'", st->path, a ? a : "(none)", arch);
    *step = 0;
    if (!s) return 0;
    errno = 0;
    *step = strtol(s, &end, 10);
    if (end == s || *end || errno || *step < 0) return gm_fail("checkpoint: %s: bad genmod.step '%s'", st->path, s);
    return 0;
}

/* F32 little-endian bytes into floats in host order. */
static void gm__st_copy(float *dst, const unsigned char *src, size_t n) {
    memcpy(dst, src, n * sizeof(float));
    if (!gm__host_is_le()) gm__swap4(dst, n);
}

static float *gm__st_zeros(size_t n) {
    float *x = (float *)GENMOD_MALLOC(n * sizeof(float) + 1);
    if (x) memset(x, 0, n * sizeof(float)); /* the alignment gaps between views too: nothing undefined */
    return x;
}
/* Frees the moment buffers of parts 0..nparts-1 that gm__st_moments allocated. */
static void gm__st_moments_free(const gm_model_part *parts, int nparts, float **mv) {
    int k;
    for (k = 0; k < nparts; k++) {
        if (!parts[k].opt) continue;
        if (mv[2 * k] != parts[k].opt->m) GENMOD_FREE(mv[2 * k]);
        if (mv[2 * k + 1] != parts[k].opt->v) GENMOD_FREE(mv[2 * k + 1]);
    }
}
/* The moments of every part with an optimizer, mv[2k] and mv[2k+1]: its own buffers, or fresh zeroed
   ones. The only step of a load that can fail after validation, so it runs before any copy. */
static int gm__st_moments(gm__st *st, const gm_model_part *parts, int nparts, float **mv) {
    int k;
    for (k = 0; k < nparts; k++) {
        const gm_optim *o = parts[k].opt;
        if (o && (o->m || o->v) && o->n != parts[k].params->count)
            return gm_fail("checkpoint: %s: optimizer buffers hold %lu floats but the model has %lu", st->path,
                            (unsigned long)o->n, (unsigned long)parts[k].params->count);
    }
    for (k = 0; k < nparts; k++) {
        const gm_optim *o = parts[k].opt;
        mv[2 * k] = mv[2 * k + 1] = NULL;
        if (!o) continue;
        mv[2 * k] = o->m ? o->m : gm__st_zeros(parts[k].params->count);
        mv[2 * k + 1] = o->v ? o->v : gm__st_zeros(parts[k].params->count);
        if (!mv[2 * k] || !mv[2 * k + 1]) {
            gm__st_moments_free(parts, k + 1, mv);
            return gm_fail("checkpoint: %s: out of memory for optimizer state", st->path);
        }
    }
    return 0;
}

/* Everything validated and allocated: copy the tensors and each part's optimizer fields. */
static void gm__st_apply(gm__st *st, const gm_model_part *parts, int nparts, const gm_optim *to, float **mv) {
    int i, k;
    for (i = 0; i < st->ne; i++) {
        const gm__st_entry *e = &st->e[i];
        const gm_params *p = parts[e->part].params;
        float *dst;
        if (e->role == GM__ST_IGNORED) continue;
        dst = e->role == GM__ST_WEIGHT ? p->data : mv[2 * e->part + (e->role == GM__ST_V)];
        gm__st_copy(dst + p->views[e->view].offset, st->data + e->begin, p->views[e->view].size);
    }
    for (k = 0; k < nparts; k++) {
        gm_optim *o = parts[k].opt;
        if (!o) continue;
        for (i = 0; i < GM__NOPTFIELDS; i++) { /* field by field: leaves m, v, n and anything else alone */
            const gm__optfield *f = &gm__optfields[i];
            memcpy((char *)o + f->off, (const char *)&to[k] + f->off, f->type == GM__OF_FLOAT ? sizeof(float)
                   : f->type == GM__OF_LONG ? sizeof(long) : sizeof(int));
        }
        o->m = mv[2 * k];
        o->v = mv[2 * k + 1];
        o->n = parts[k].params->count;
    }
}

/* The metadata handed back: everything, or for a model its extra keys (not "genmod.*"). */
static void gm__st_meta_out(gm_meta *meta, const gm_meta *tm, int extra_only) {
    int i;
    memset(meta, 0, sizeof *meta);
    for (i = 0; i < tm->n; i++) {
        if (extra_only && strncmp(tm->key[i], "genmod.", 7) == 0) continue;
        strcpy(meta->key[meta->n], tm->key[i]);
        strcpy(meta->value[meta->n], tm->value[i]);
        meta->n++;
    }
}

/* Validates a whole safetensors image against the parts, then loads it; `path` names it in
   messages. With `model`, the metadata is read first and must name this model and architecture. */
static int gm__st_load(const unsigned char *buf, size_t len, const char *path, const gm_model_part *parts,
                       int nparts, const char *model, const char *arch, long *step, gm_meta *meta) {
    gm__st st;
    gm_meta *tm = NULL;
    gm_optim *to = NULL;
    float **mv = NULL;
    int rc = -1, k, nv = 0, *counts = NULL;
    long stp = 0;
    memset(&st, 0, sizeof st);
    st.path = path;
    if (gm__st_check_parts(path, parts, nparts) != 0) return -1;
    for (k = 0; k < nparts; k++) nv += parts[k].params->nviews;
    tm = (gm_meta *)GENMOD_MALLOC(sizeof(gm_meta));
    to = (gm_optim *)GENMOD_MALLOC((size_t)nparts * sizeof(gm_optim));
    mv = (float **)GENMOD_MALLOC((size_t)nparts * 2 * sizeof(float *));
    counts = (int *)GENMOD_MALLOC(((size_t)nparts + (size_t)nv * 3 + 1) * sizeof(int));
    if (!tm || !to || !mv || !counts) { gm_fail("checkpoint: %s: out of memory", path); goto done; }
    memset(tm, 0, sizeof *tm);
    memset(to, 0, (size_t)nparts * sizeof(gm_optim));
    memset(counts, 0, ((size_t)nparts + (size_t)nv * 3 + 1) * sizeof(int));
    if (gm__st_header(&st, buf, len) != 0 || gm__st_collect(&st) != 0 ||
        gm__st_meta(&st, NULL, 0, NULL, meta || model ? tm : NULL) != 0)
        goto done;
    if (model && gm__st_identity(&st, tm, model, arch, &stp) != 0) goto done;
    if (gm__st_layout(&st) != 0 || gm__st_tensors(&st, parts, nparts, counts) != 0 ||
        gm__st_meta(&st, parts, nparts, to, NULL) != 0 || gm__st_moments(&st, parts, nparts, mv) != 0)
        goto done;
    gm__st_apply(&st, parts, nparts, to, mv);
    if (step) *step = stp;
    if (meta) gm__st_meta_out(meta, tm, model != NULL);
    rc = 0;
done:
    GENMOD_FREE(counts);
    GENMOD_FREE(mv);
    GENMOD_FREE(to);
    GENMOD_FREE(tm);
    GENMOD_FREE(st.e);
    GENMOD_FREE(st.j.t);
    return rc;
}

GMDEF int gm_checkpoint_load_mem(const void *buf, size_t len, gm_params *p, gm_optim *opt, gm_meta *meta) {
    gm_model_part part;
    if (!buf || !p) return gm_fail("checkpoint: NULL buffer or params");
    part.name = "";
    part.params = p;
    part.opt = opt;
    return gm__st_load((const unsigned char *)buf, len, "<memory>", &part, 1, NULL, NULL, NULL, meta);
}

GMDEF int gm_checkpoint_load(const char *path, gm_params *p, gm_optim *opt, gm_meta *meta) {
    gm_model_part part;
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc;
    if (!path || !p) return gm_fail("checkpoint: NULL path or params");
    if (gm__read_file("checkpoint", path, &buf, &len) != 0) return -1;
    part.name = "";
    part.params = p;
    part.opt = opt;
    rc = gm__st_load(buf, len, path, &part, 1, NULL, NULL, NULL, meta);
    GENMOD_FREE(buf);
    return rc;
}

GMDEF int gm_model_load(const char *path, const char *model, const char *arch, long *step,
                        gm_model_part *parts, int nparts, gm_meta *extra) {
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc;
    if (!path || !model || !arch) return gm_fail("gm_model_load: NULL path, model or architecture");
    if (gm__read_file("checkpoint", path, &buf, &len) != 0) return -1;
    rc = gm__st_load(buf, len, path, parts, nparts, model, arch, step, extra);
    GENMOD_FREE(buf);
    return rc;
}

/* "<model>.rng" and "<model>.graph_rng" */
static void gm__stream_key(char *key, size_t cap, const char *model, int graph) {
    snprintf(key, cap, "%s.%s", model, graph ? "graph_rng" : "rng");
}

GMDEF int gm_model_save_single(const char *path, const char *model, const char *arch, long step,
                               const gm_params *params, const gm_optim *opt, const gm_rng *rng, gm_graph *graph,
                               const gm_meta *extra) {
    gm_model_part part;
    gm_meta *meta;
    char key[GM_META_KEY_MAX];
    int rc = -1;
    if (!model || !params || !rng || !graph) return gm_fail("gm_model_save_single: NULL model, parameters or stream");
    if (!(meta = GM__CAST(gm_meta *, GENMOD_MALLOC(sizeof(gm_meta))))) return gm_fail("checkpoint: out of memory");
    if (extra) *meta = *extra;
    else memset(meta, 0, sizeof *meta);
    gm__stream_key(key, sizeof key, model, 0);
    if (gm_meta_set_rng(meta, key, rng) == 0) {
        gm__stream_key(key, sizeof key, model, 1);
        if (gm_meta_set_rng(meta, key, gm_graph_rng(graph)) == 0) {
            part.name = "";
            part.params = (gm_params *)params;   /* only read */
            part.opt = (gm_optim *)opt;
            rc = gm_model_save(path, model, arch, step, &part, 1, meta);
        }
    }
    GENMOD_FREE(meta);
    return rc;
}

GMDEF int gm_model_load_single(const char *path, const char *model, const char *arch, long *step,
                               gm_params *params, gm_optim *opt, gm_rng *rng, gm_graph *graph, gm_meta *extra) {
    gm_model_part part;
    gm_meta *meta;
    char key[GM_META_KEY_MAX];
    int rc;
    if (!model || !params || !rng || !graph) return gm_fail("gm_model_load_single: NULL model, parameters or stream");
    if (!(meta = GM__CAST(gm_meta *, GENMOD_MALLOC(sizeof(gm_meta))))) return gm_fail("checkpoint: out of memory");
    memset(meta, 0, sizeof *meta);
    part.name = ""; part.params = params; part.opt = opt;
    rc = gm_model_load(path, model, arch, step, &part, 1, meta);
    if (rc == 0) {
        gm__stream_key(key, sizeof key, model, 0);
        gm_meta_get_rng(meta, key, rng);
        gm__stream_key(key, sizeof key, model, 1);
        gm_meta_get_rng(meta, key, gm_graph_rng(graph));
        if (extra) *extra = *meta;
    }
    GENMOD_FREE(meta);
    return rc;
}

GMDEF int gm_checkpoint_read_meta(const char *path, gm_meta *meta) {
    gm__st st;
    gm_meta *tm = NULL;
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = -1;
    if (!path || !meta) return gm_fail("checkpoint: NULL path or metadata");
    memset(&st, 0, sizeof st);
    st.path = path;
    if (gm__read_file("checkpoint", path, &buf, &len) != 0) return -1;
    if (!(tm = (gm_meta *)GENMOD_MALLOC(sizeof(gm_meta)))) { gm_fail("checkpoint: %s: out of memory", path); goto done; }
    memset(tm, 0, sizeof *tm);
    if (gm__st_header(&st, buf, len) == 0 && gm__st_collect(&st) == 0 && gm__st_meta(&st, NULL, 0, NULL, tm) == 0) {
        *meta = *tm;
        rc = 0;
    }
done:
    GENMOD_FREE(tm);
    GENMOD_FREE(buf);
    GENMOD_FREE(st.e);
    GENMOD_FREE(st.j.t);
    return rc;
}

#endif
#endif

/*
------------------------------------------------------------------------------
LICENSE (MIT)
Copyright (c) 2026 the genmod authors
Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions: the above copyright notice and this
permission notice shall be included in all copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
