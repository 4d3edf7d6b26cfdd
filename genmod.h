/* genmod.h - v0.1 - train deep generative models on a CPU. Single-header C library, no
   dependencies beyond libc, libm and (unless GENMOD_NO_THREADS) POSIX threads.

   USAGE
     In exactly one C or C++ file:
         #define GENMOD_IMPLEMENTATION
         #include "genmod.h"
     Everywhere else just #include "genmod.h". Build: cc -O2 prog.c -lm -lpthread
     A family header (genmod_vae.h, genmod_gan.h, genmod_flow.h) is used the same way, and its
     implementation goes in the same file as GENMOD_IMPLEMENTATION (it uses the core's internals):
         #define GENMOD_IMPLEMENTATION
         #define GENMOD_GAN_IMPLEMENTATION
         #include "genmod_gan.h"

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
             gm_tensor *loss = gm_mse(g, gm_linear_fwd(g, &lin, x), y);
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

#include "src/gm_shared_types.h"

/* ======================================================================================= */
/* Kernels: SIMD paths, threads, GEMM                                                      */
/* ======================================================================================= */
#include "src/gm_kernels_select_api.h"

/* ======================================================================================= */
/* Random numbers: xoshiro128** streams, uniform and Gaussian                               */
/* ======================================================================================= */
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
GMDEF void gm_params_mark_buffer(gm_params *p, int view);  /* saved with the model, never trained */
GMDEF size_t gm_params_count(const gm_params *p);          /* trainable floats */

/* ======================================================================================= */
/* Graphs and tensors                                                                      */
/* ======================================================================================= */
typedef struct gm_graph gm_graph;
typedef struct gm_tensor gm_tensor;
struct gm_tensor {
    int ndim;
    int shape[GM_MAX_DIMS];
    int size;               /* product of the shape */
    float *data;
    gm_tensor *grad;        /* filled by gm_backward / gm_grad for tensors on the tape */
    /* private to the autodiff */
    int op, id, requires_grad;
    gm_tensor *src[3];
    float f[4];
    int i[8];
    const int *labels;
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

/* Elementwise, with NumPy broadcasting (shapes aligned at the right, size-1 dims stretch) */
GMDEF gm_tensor *gm_add(gm_graph *g, gm_tensor *a, gm_tensor *b);
GMDEF gm_tensor *gm_sub(gm_graph *g, gm_tensor *a, gm_tensor *b);
GMDEF gm_tensor *gm_mul(gm_graph *g, gm_tensor *a, gm_tensor *b);
GMDEF gm_tensor *gm_div(gm_graph *g, gm_tensor *a, gm_tensor *b);
GMDEF gm_tensor *gm_bias_add(gm_graph *g, gm_tensor *x, gm_tensor *b);  /* b (C) along dim 1 of x */
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
GMDEF gm_tensor *gm_log_sigmoid(gm_graph *g, gm_tensor *x);
GMDEF gm_tensor *gm_softmax(gm_graph *g, gm_tensor *x);      /* over the last axis */
GMDEF gm_tensor *gm_log_softmax(gm_graph *g, gm_tensor *x);  /* over the last axis */
/* Reductions. Axis masks: GM_AXIS(0) | GM_AXIS(2) ...; reduced axes keep size 1. */
#define GM_AXIS(k) (1 << (k))
GMDEF gm_tensor *gm_sum(gm_graph *g, gm_tensor *x);                 /* all elements -> (1) */
GMDEF gm_tensor *gm_mean(gm_graph *g, gm_tensor *x);                /* all elements -> (1) */
GMDEF gm_tensor *gm_sum_axes(gm_graph *g, gm_tensor *x, int axes);
GMDEF gm_tensor *gm_mean_axes(gm_graph *g, gm_tensor *x, int axes);
GMDEF gm_tensor *gm_sum_rows(gm_graph *g, gm_tensor *x);   /* sum over all axes but 0 -> (N) */
GMDEF gm_tensor *gm_expand(gm_graph *g, gm_tensor *x, int d0, int d1, int d2, int d3); /* broadcast to */
/* Shapes */
GMDEF gm_tensor *gm_reshape(gm_graph *g, gm_tensor *x, int d0, int d1, int d2, int d3); /* one -1 allowed */
GMDEF gm_tensor *gm_flatten(gm_graph *g, gm_tensor *x);    /* (N, everything else) */
GMDEF gm_tensor *gm_permute(gm_graph *g, gm_tensor *x, int p0, int p1, int p2, int p3); /* out dim k = in dim pk */
GMDEF gm_tensor *gm_transpose(gm_graph *g, gm_tensor *x);  /* 2-D */
GMDEF gm_tensor *gm_concat(gm_graph *g, gm_tensor *a, gm_tensor *b, int axis);
GMDEF gm_tensor *gm_slice(gm_graph *g, gm_tensor *x, int axis, int start, int len);
GMDEF gm_tensor *gm_gather(gm_graph *g, gm_tensor *x, const int *labels); /* x (N,C) -> (N): x[i, labels[i]] */
GMDEF gm_tensor *gm_one_hot(gm_graph *g, const int *labels, int n, int classes);  /* (n, classes) constant */
/* Linear algebra and images */
GMDEF gm_tensor *gm_matmul(gm_graph *g, gm_tensor *a, gm_tensor *b, int ta, int tb); /* op(a) op(b), 2-D */
GMDEF gm_tensor *gm_conv2d(gm_graph *g, gm_tensor *x, gm_tensor *w, int stride, int pad);
    /* x (N,Cin,H,W), w (Cout,Cin,k,k) -> (N,Cout,(H+2pad-k)/stride+1, ...) */
GMDEF gm_tensor *gm_conv_transpose2d(gm_graph *g, gm_tensor *x, gm_tensor *w, int stride, int pad, int out_pad);
    /* x (N,Cin,H,W), w (Cin,Cout,k,k) -> (N,Cout,(H-1)*stride-2pad+k+out_pad, ...); PyTorch's layout */
GMDEF gm_tensor *gm_upsample_nearest(gm_graph *g, gm_tensor *x, int factor);  /* (N,C,H,W) -> (N,C,fH,fW) */
GMDEF gm_tensor *gm_avg_pool(gm_graph *g, gm_tensor *x, int k);  /* k x k windows, stride k */
GMDEF gm_tensor *gm_dropout(gm_graph *g, gm_tensor *x, float p); /* identity when not training */
/* Losses: scalars (mean over all elements, or over the batch for the cross-entropy) */
GMDEF gm_tensor *gm_mse(gm_graph *g, gm_tensor *pred, gm_tensor *target);
GMDEF gm_tensor *gm_bce_logits(gm_graph *g, gm_tensor *logits, gm_tensor *target);
GMDEF gm_tensor *gm_softmax_xent(gm_graph *g, gm_tensor *logits, const int *labels);
/* Per-example log-densities (N): summed over every axis but the first */
GMDEF gm_tensor *gm_gaussian_loglik(gm_graph *g, gm_tensor *x, gm_tensor *mu, gm_tensor *logvar);
GMDEF gm_tensor *gm_bernoulli_loglik(gm_graph *g, gm_tensor *logits, gm_tensor *x);
GMDEF gm_tensor *gm_kl_std_normal(gm_graph *g, gm_tensor *mu, gm_tensor *logvar);  /* KL(N(mu,e^lv) || N(0,I)) */

/* Automatic differentiation */
GMDEF int        gm_backward(gm_graph *g, gm_tensor *loss);  /* loss: one finite value; 0 or -1 */
GMDEF gm_tensor *gm_grad(gm_graph *g, gm_tensor *y, gm_tensor *x, int create_graph); /* d sum(y) / d x */

/* Gradient checking: compare gm_backward with central finite differences. fn builds a scalar from
   the inputs (each a leaf with requires_grad). Returns the largest |analytic - numeric| divided by
   max(1e-3, largest |numeric|) over all inputs and elements, or -1 after an error. */
typedef gm_tensor *(*gm_fn)(gm_graph *g, gm_tensor **inputs, void *ctx);
GMDEF double gm_gradcheck(gm_fn fn, void *ctx, int ninputs, float **values, const int (*shapes)[4], float h);

/* ======================================================================================= */
/* Layers: small structs of parameter views with a forward function                        */
/* ======================================================================================= */
typedef struct gm_linear { gm_params *p; int w, b; int in, out; } gm_linear;   /* y = x W^T + b */
typedef struct gm_conv { gm_params *p; int w, b; int cin, cout, k, stride, pad, out_pad, transposed; } gm_conv;
typedef struct gm_batchnorm {
    gm_params *p; int gamma, beta, mean, var;  /* mean, var: running statistics (buffers) */
    int c; float momentum, eps;
} gm_batchnorm;
typedef struct gm_layernorm { gm_params *p; int gamma, beta; int n; float eps; } gm_layernorm;

GMDEF int gm_linear_init(gm_linear *l, gm_params *p, const char *name, int in, int out, int init, gm_rng *r);
GMDEF gm_tensor *gm_linear_fwd(gm_graph *g, const gm_linear *l, gm_tensor *x);  /* x (N,in) -> (N,out) */
GMDEF int gm_conv_init(gm_conv *c, gm_params *p, const char *name, int cin, int cout, int k, int stride,
                       int pad, int init, gm_rng *r);
GMDEF int gm_conv_transpose_init(gm_conv *c, gm_params *p, const char *name, int cin, int cout, int k,
                                 int stride, int pad, int out_pad, int init, gm_rng *r);
GMDEF gm_tensor *gm_conv_fwd(gm_graph *g, const gm_conv *c, gm_tensor *x);
GMDEF int gm_batchnorm_init(gm_batchnorm *bn, gm_params *p, const char *name, int channels);
GMDEF gm_tensor *gm_batchnorm_fwd(gm_graph *g, const gm_batchnorm *bn, gm_tensor *x); /* (N,C) or (N,C,H,W) */
GMDEF int gm_layernorm_init(gm_layernorm *ln, gm_params *p, const char *name, int features);
GMDEF gm_tensor *gm_layernorm_fwd(gm_graph *g, const gm_layernorm *ln, gm_tensor *x); /* over all but dim 0 */

/* ======================================================================================= */
/* Optimizers                                                                              */
/* ======================================================================================= */
GMDEF gm_optim gm_sgd(float lr, float momentum);
GMDEF gm_optim gm_rmsprop(float lr, float alpha);          /* PyTorch's defaults: alpha 0.99, eps 1e-8 */
GMDEF gm_optim gm_adam(float lr, float beta1, float beta2); /* eps 1e-8 */
GMDEF gm_optim gm_adamw(float lr, float beta1, float beta2, float weight_decay);
GMDEF int   gm_optim_step(gm_optim *o, gm_params *p);      /* update, then zero p's gradients; 0 or -1 */
GMDEF float gm_optim_lr(const gm_optim *o);                /* learning rate of the next step */
GMDEF void  gm_optim_free(gm_optim *o);
GMDEF float gm_grad_norm(const gm_params *p);              /* global L2 norm of the gradients */

/* ======================================================================================= */
/* Data, pictures, checkpoints                                                             */
/* ======================================================================================= */
#include "src/gm_data_api.h"
#include "src/gm_image_api.h"

#ifdef __cplusplus
}
#endif
#endif /* GENMOD_H */

#ifdef GENMOD_IMPLEMENTATION
#ifndef GENMOD_IMPLEMENTATION_INCLUDED
#define GENMOD_IMPLEMENTATION_INCLUDED
#include "src/gm_core_impl.h"
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
