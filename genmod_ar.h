/* genmod_ar.h - v0.2 - autoregressive models on top of genmod.h: MADE, PixelCNN, Gated PixelCNN,
   PixelRNN's Row LSTM, and an LSTM cell.
   Single-header C library (stb style): the declarations are always visible, the implementation
   is compiled where GENMOD_AR_IMPLEMENTATION is defined.

   USAGE
     Either in the same C or C++ file as the core:
         #define GENMOD_IMPLEMENTATION
         #include "genmod.h"
         #define GENMOD_AR_IMPLEMENTATION
         #include "genmod_ar.h"
     or in a file of its own (the implementation uses only genmod.h's public functions; the core
     is implemented in another file and both are linked together):
         #define GENMOD_AR_IMPLEMENTATION
         #include "genmod_ar.h"
     Elsewhere just #include "genmod_ar.h". Build: cc -O2 prog.c -lm -lpthread. If you define
     GENMOD_MALLOC, GENMOD_REALLOC and GENMOD_FREE, define all three.

   THE SHORTEST PROGRAM

     MADE on binarized 28x28 digits (x: n * 784 floats, each 0 or 1):

         gm_made_config cfg = gm_made_default_config(784, GM_MADE_BERNOULLI);
         gm_made m;
         if (gm_made_init(&m, &cfg) != 0) { puts(gm_last_error()); return 1; }
         for (step = 0; step < 5000; step++)                  // batches of cfg.batch examples
             if (gm_made_train_step(&m, xb, NULL, k, NULL) != 0) { puts(gm_last_error()); return 1; }
         gm_made_eval ev;
         gm_made_evaluate(&m, xtest, ntest, &ev);              // ev.nats: test -log p(x), exact
         gm_made_sample(&m, NULL, 16, out);                    // 16 digits, one pixel at a time
         gm_made_save(&m, "made.safetensors");
         gm_made_free(&m);

     A class-conditional Gated PixelCNN on the same digits (labels: n ints 0..9):

         gm_pixelcnn_config pc = gm_pixelcnn_gated_config(28, 28, 2);   // 8 layers of 32 channels
         pc.classes = 10;
         gm_pixelcnn p;
         if (gm_pixelcnn_init(&p, &pc) != 0) { puts(gm_last_error()); return 1; }
         gm_pixelcnn_train_step(&p, xb, yb, 64, NULL);                  // one Adam step
         gm_pixelcnn_sample(&p, labels, 10, out);                         // cached sampling
         gm_pixelcnn_sample_ex(&p, labels, NULL, 0, 10, 0.9f, top, 14, out);  // complete rows 14..27

   MODELS
     gm_made   MADE (Germain et al. 2015): an MLP whose weight matrices are multiplied by binary
               masks so that output d depends only on the inputs before d in an ordering; its
               outputs are then the parameters of p(x_d | x_<d) and p(x) = prod_d p(x_d | x_<d)
               is exact in one pass. Outputs per dimension: a Bernoulli logit (binary data) or a
               mixture of `components` Gaussians (real data, e.g. the 2-D toys). A "mask set" is an
               ordering of the inputs plus a degree for every hidden unit (a unit of degree k sees
               inputs 1..k of the ordering); `masks` sets are drawn at init, training cycles
               through them (one per step: order- and connectivity-agnostic training), and
               log_prob averages the probabilities of the first `ensemble` sets (an ensemble of
               orderings, still a normalized density). With ordering GM_MADE_NATURAL every set
               keeps the order 0..D-1 and only the connectivity varies.
     gm_pixelcnn  PixelCNN (van den Oord et al. 2016) over images in raster order, with levels 2
               (a Bernoulli logit per value) or 3..256 (a softmax over the levels; values are
               floats k/(levels-1)). cfg.colors 1 (gray) or 3 (RGB, plain and gated kinds: images
               planar (N, 3, H, W), drawn R, then G, then B inside each pixel: every layer's
               channels are split into three groups, and at a pixel's own position group g sees
               groups < g (mask A, the first layer) or <= g (mask B, later layers, 1x1 ones
               included); the logits are (N, 3 * levels-or-1, H, W), color-major). Three kinds:
               GM_PIXELCNN_PLAIN: a 7x7 mask-A convolution (rows above, and the left of the
               pixel's row), residual blocks (ReLU, 1x1 h->h/2, 3x3 mask B, 1x1 h/2->h), then
               ReLU, 1x1, ReLU, 1x1. It has the blind spot of stacked masked convolutions: pixel
               (r,c) never sees (r-1, c+4) although it sees (r-2, c+4) (tests/test_ar.c shows it).
               GM_PIXELCNN_GATED: the Gated PixelCNN (van den Oord et al. 2016b): a vertical stack
               (rows above, all columns of its window) and a horizontal stack (the row to the
               left), gates tanh(a) * sigmoid(b), the vertical stack feeding the horizontal one
               through a 1x1 convolution, a 1x1 convolution and a residual connection in the
               horizontal stack. Its receptive field is a full rectangle above plus the row to the
               left: no blind spot (tests/test_ar.c checks every entry of the Jacobian against
               that field). Conditioning: cfg.classes (one-hot labels) and/or cfg.context (a vector
               from the caller, e.g. an encoder's code), mapped by a learned matrix to a bias on
               both stacks' pre-activations in every layer.
               The vertical stack's 2x3 and 4x7 kernels are exact (rectangular, padded on top: no
               masked zeros); the horizontal stack's 1x2 (1x4) windows are shifted copies stacked
               on the channels for one 1x1 convolution; the gates are the core's fused gm_gate.
               GM_PIXELCNN_ROWLSTM: PixelRNN's Row LSTM (van den Oord et al. 2016): a 7x7 mask-A
               convolution, then `layers` Row LSTM layers with residual connections, then the same
               output layers. A layer processes the rows top to bottom: a row's LSTM state comes
               from the row above's (a 1x3 convolution along it: its state moves one column per
               row, a triangular receptive field) and from the row's input (a 1x3 mask-B
               convolution: the pixel to the left and the pixel's own features). The LSTM gates
               are gm_lstm_cell's. Conditioning as the gated kind (a bias on the input-to-state
               pre-activations).
               Sampling: naive (the whole network once per pixel) or, for the gated and Row LSTM
               kinds, cached. Gated: the vertical stack once per row on the rows that row sees,
               then per pixel the horizontal stack and the output layers on that row alone. Row
               LSTM: every layer's h and c of the row above kept, then per pixel every layer on
               the current row alone. Cached and naive give the same images for the same seed
               (tests/test_ar.c compares them bit for bit); on a 28x28 image with 8 gated layers of
               32 channels the cached sampler was 22x to 42x faster in our runs.
     gm_lstm   An LSTM cell on (N, features) tensors, any sequence (gm_lstm_init / gm_lstm_step,
               composed of core ops, so gm_backward gives the gradients through time), and its
               gates alone on pre-activations of any shape (gm_lstm_cell, which the Row LSTM uses).

   EACH MODEL HAS (the family contract; gm_<m> is gm_made or gm_pixelcnn)
     config      gm_made_default_config(dim, output): the recipe (2 hidden layers of 500 ReLU
                 units, Adam 1e-3, batch 100, natural order, one mask set);
                 gm_pixelcnn_default_config(h, w, levels) (plain: 64 channels, 5 blocks, Adam 1e-3,
                 batch 64), gm_pixelcnn_gated_config(h, w, levels) (8 gated layers of 32
                 channels, the PyTorch reference's), gm_pixelcnn_rowlstm_config(h, w, levels) (4
                 Row LSTM layers of 32 channels)
     init/free   gm_made_init validates the config (naming the field), draws the mask sets from
                 cfg.seed, builds parameters, Adam, graph and random stream; gm_made_free is safe
                 on a zeroed or failed model and twice
     train       gm_<m>_train_step(m, x, labels, n, &stats): one Adam step on the mean negative
                 log-likelihood of n examples; labels NULL unless the model is class-conditional
                 (MADE never is); a NaN or infinite loss is refused (-1), the weights unchanged;
                 gm_pixelcnn_train_step_ex also takes a context (n x cfg.context floats)
     sample      gm_<m>_sample(m, labels, n, out), and gm_<m>_sample_ex with a temperature and
                 completion (MADE: given values for any dimensions and a mask set; PixelCNN: the
                 top rows given)
     inference   gm_<m>_log_prob (nats per example), gm_<m>_evaluate (mean nats, bits/dim), any
                 n, through gm_run_chunks (eval mode, no tape; PixelCNN in sub-batches of 32)
     graph       gm_made_forward(g, m, x, set, &out, &logp), gm_pixelcnn_forward(g, m, x, labels,
                 context, &out, &logp): the network in the caller's graph, its outputs (logits)
                 and the per-example log-likelihood
     checkpoints gm_<m>_save / gm_<m>_load through gm_model_save / gm_model_load: models "made",
                 "pixelcnn" (both PixelCNN kinds) and "rowlstm", the architecture text (a
                 PixelCNN's names its kind, size, levels, channels, blocks or layers, classes,
                 context and colors if 3), the weights, Adam's state, the
                 step, MADE's mask sets' degrees (buffers, so a loaded model has the saved masks
                 whatever its seed) and the random streams; another model or architecture is
                 refused, model untouched. Convolution masks are rebuilt, not stored.

   NUMBERS
     Log-densities are natural logs; bits/dim = nats / (D ln 2). For Bernoulli outputs they are
     probabilities of the binary vectors (a sum of 1 over all 2^D of them: tests/test_ar.c
     enumerates the 512 images of a 3x3 model); for Gaussian outputs densities in R^D.

   ERRORS
     0 / -1 with the reason in gm_last_error(): a config field out of range (named), labels given
     to a model that takes none or missing or out of range, a context missing or of the wrong
     size, Bernoulli data that is not 0 or 1, pixels that are not one of the model's levels, n < 1,
     NULL buffers, a checkpoint of another model or architecture.

   LICENSE: MIT, at the end of the file.
*/
#ifndef GENMOD_AR_H
#define GENMOD_AR_H

#include "genmod.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================= */
/* MADE                                                                                    */
/* ======================================================================================= */
#define GM_MADE_MAX_HIDDEN 6
#define GM_MADE_MAX_MASKS 64
enum { GM_MADE_BERNOULLI = 0, GM_MADE_GAUSSIAN = 1 };     /* output distribution per dimension */
enum { GM_MADE_NATURAL = 0, GM_MADE_RANDOM = 1 };         /* ordering of the inputs */

typedef struct gm_made_config {
    int dim;                          /* D, the length of a vector (784 for 28x28 images) */
    int n_hidden;                     /* hidden layers, 1..GM_MADE_MAX_HIDDEN */
    int hidden[GM_MADE_MAX_HIDDEN];   /* units per hidden layer (each >= 1) */
    int act;                          /* GM_ACT_* of the hidden layers (relu) */
    int output;                       /* GM_MADE_BERNOULLI or GM_MADE_GAUSSIAN */
    int components;                   /* Gaussians per dimension (GAUSSIAN; 1 = a plain Gaussian) */
    int ordering;                     /* GM_MADE_NATURAL (0..D-1) or GM_MADE_RANDOM (one per mask set) */
    int masks;                        /* mask sets drawn at init and cycled in training, 1..GM_MADE_MAX_MASKS */
    int ensemble;                     /* sets averaged by log_prob and evaluate, 1..masks */
    float lr;                         /* Adam learning rate */
    int batch;                        /* the recommended batch size; train_step takes any */
    uint64_t seed;                    /* masks, initial weights, sampling */
} gm_made_config;

typedef struct gm_made_stats {
    float loss;                       /* mean -log p(x) of the batch, nats */
    float bits_per_dim;               /* the same in bits per dimension */
    int mask_set;                     /* the set this step trained */
} gm_made_stats;

typedef struct gm_made_eval {
    double nats;                      /* mean -log p(x), nats per example */
    double bits_per_dim;              /* nats / (D ln 2) */
} gm_made_eval;

typedef struct gm_made {
    gm_made_config cfg;
    gm_params params;                 /* weights "l<k>.w" (out, in), "l<k>.b", and the degree
                                         buffers "set<s>.order" (D) and "set<s>.deg<k>" */
    gm_params maskp;                  /* the binary masks built from the degrees (not saved) */
    gm_optim opt;
    gm_graph *graph;
    gm_rng rng;                       /* sampling */
    long step;
    int nl;                           /* layers: n_hidden + 1 */
    int w[GM_MADE_MAX_HIDDEN + 1], b[GM_MADE_MAX_HIDDEN + 1];   /* views in params */
    int order[GM_MADE_MAX_MASKS];     /* view of each set's ordering in params */
    int mask0;                        /* view of set 0's first mask in maskp (set s, layer k: mask0 + s*nl + k) */
    int out_per_dim;                  /* output units per dimension: 1 (Bernoulli) or 3K */
    float *scratch;                   /* sampling state */
    size_t scratch_cap;
} gm_made;

GMDEF gm_made_config gm_made_default_config(int dim, int output);
GMDEF int  gm_made_init(gm_made *m, const gm_made_config *cfg);     /* 0, or -1 (gm_last_error) */
GMDEF void gm_made_free(gm_made *m);
GMDEF int  gm_made_train_step(gm_made *m, const float *x, const int *labels, int n, gm_made_stats *stats);
/* log p(x) of each of n examples (nats), the ensemble of the first cfg.ensemble mask sets. */
GMDEF int  gm_made_log_prob(gm_made *m, const float *x, int n, double *logp);
GMDEF int  gm_made_evaluate(gm_made *m, const float *x, int n, gm_made_eval *ev);
GMDEF int  gm_made_sample(gm_made *m, const int *labels, int n, float *out);   /* temperature 1, set 0 */
/* Sampling dimension by dimension in the ordering of mask set `set`, at a temperature (Bernoulli:
   logits / T; Gaussian: mixture weights' logits / T and standard deviations * T). given/known
   (both NULL, or n * D each): where known is nonzero the value of given is kept and conditioned
   on; exact conditionals when the known dimensions come first in the ordering (the top rows of
   an image in the natural order). */
GMDEF int  gm_made_sample_ex(gm_made *m, int n, float temperature, int set, const float *given,
                             const unsigned char *known, float *out);
/* x (N, D) through mask set `set`: out (N, D * out_per_dim) (Bernoulli: the logits; Gaussian:
   the mixture logits, means and log standard deviations, D*K each, dimension-major), logp (N)
   the log-density. Either pointer may be NULL. */
GMDEF int  gm_made_forward(gm_graph *g, gm_made *m, gm_tensor *x, int set, gm_tensor **out, gm_tensor **logp);
GMDEF int  gm_made_save(const gm_made *m, const char *path);
GMDEF int  gm_made_load(gm_made *m, const char *path);   /* m: initialized with the same architecture */
GMDEF int  gm_made_order(const gm_made *m, int set, int *order);   /* the set's ordering: order[pos] = dim */

/* ======================================================================================= */
/* LSTM cell (any sequence; the Row LSTM uses its gates)                                    */
/* ======================================================================================= */
/* Views "<name>.wx" (4H, in), "<name>.wh" (4H, H), "<name>.b" (4H) in p; gate order i, f, o, g. */
typedef struct gm_lstm { gm_params *p; int wx, wh, b; int in, hidden; } gm_lstm;
/* Weights uniform in +-1/sqrt(hidden) (PyTorch's), the forget gate's bias 1 more (remember by default). */
GMDEF int gm_lstm_init(gm_lstm *l, gm_params *p, const char *name, int in, int hidden, gm_rng *r);
/* One step: x (N,in), h and c (N,hidden), or both NULL (zero state) -> h_out, c_out (N,hidden).
   Built from core ops in g, so gradients through any number of steps come from gm_backward. */
GMDEF int gm_lstm_step(gm_graph *g, const gm_lstm *l, gm_tensor *x, gm_tensor *h, gm_tensor *c,
                       gm_tensor **h_out, gm_tensor **c_out);
/* The cell's update from pre-activations pre (N, 4H, ...) (i, f, o, g along axis 1), c of pre's shape
   with H channels or NULL (zero): c' = sigmoid(f) c + sigmoid(i) tanh(g), h' = sigmoid(o) tanh(c'). */
GMDEF int gm_lstm_cell(gm_graph *g, gm_tensor *pre, gm_tensor *c, gm_tensor **h_out, gm_tensor **c_out);

/* ======================================================================================= */
/* PixelCNN, Gated PixelCNN, PixelRNN (Row LSTM)                                           */
/* ======================================================================================= */
#define GM_PCNN_MAX_BLOCKS 16
#define GM_PCNN_MAX_LAYERS 16
enum { GM_PIXELCNN_PLAIN = 0, GM_PIXELCNN_GATED = 1, GM_PIXELCNN_ROWLSTM = 2 };

typedef struct gm_pixelcnn_config {
    int kind;                         /* GM_PIXELCNN_PLAIN or GM_PIXELCNN_GATED */
    int height, width;                /* image size */
    int colors;                       /* image channels: 1 (gray) or 3 (RGB: drawn R, G, B inside each pixel;
                                         plain and gated kinds); images are planar (N, colors, H, W) */
    int levels;                       /* 2: a Bernoulli logit per pixel (binary images); 3..256: a softmax */
    int channels;                     /* plain: h, the residual stream (blocks work at h/2); gated: C per stack */
    int blocks;                       /* plain: residual blocks 1x1 h->h/2, 3x3 mask B, 1x1 h/2->h */
    int layers;                       /* gated: gated layers, the 7x7 mask-A layer included; rowlstm: Row LSTM
                                         layers (1..GM_PCNN_MAX_LAYERS) */
    int first_kernel;                 /* plain, rowlstm: the first (mask-A) convolution's size (odd, 7); gated: always 7 */
    int classes;                      /* gated, rowlstm: > 0 for a class-conditional model (a learned bias per layer) */
    int context;                      /* gated, rowlstm: > 0: length of a context vector from the caller (a learned
                                         linear map to a bias per layer); with classes, both add up */
    int naive_sampling;               /* 1: sample by running the whole network once per pixel (the
                                         reference); 0: gated and rowlstm models use the cached sampler
                                         (same images for the same seed, far fewer operations) */
    float lr;                         /* Adam learning rate */
    int batch;                        /* the recommended batch size; train_step takes any */
    uint64_t seed;
} gm_pixelcnn_config;

typedef struct gm_pixelcnn_stats { float loss; float bits_per_dim; } gm_pixelcnn_stats;   /* nats per image */
typedef struct gm_pixelcnn_eval { double nats; double bits_per_dim; } gm_pixelcnn_eval;

#define GM__PCNN_MAX_SLOTS (4 * GM_PCNN_MAX_LAYERS + 3 * GM_PCNN_MAX_BLOCKS + 3)
typedef struct gm_pixelcnn {
    gm_pixelcnn_config cfg;
    gm_params params;                 /* "c<k>.w" (cout, cin, k, k), "c<k>.b", gated "cond<i>" */
    gm_params maskp;                  /* the masks of the k x k convolutions (constant, not saved) */
    gm_optim opt;
    gm_graph *graph;
    gm_rng rng;
    long step;
    int nslots;                       /* convolutions: weight, bias, mask (-1: none), kernel size */
    int w[GM__PCNN_MAX_SLOTS], b[GM__PCNN_MAX_SLOTS], mask[GM__PCNN_MAX_SLOTS], k[GM__PCNN_MAX_SLOTS];
    int kh[GM__PCNN_MAX_SLOTS];       /* kernel height: k, or k/2 + 1 (the vertical stack: rows up to the centre) */
    int cond[GM_PCNN_MAX_LAYERS];     /* gated: the conditioning matrix of each layer (-1: none) */
    int *labels;                      /* pixel levels of a batch (softmax loss) */
    size_t labels_cap;
} gm_pixelcnn;

/* levels 2: PixelCNN with 64 channels and 5 residual blocks; use .kind = GM_PIXELCNN_GATED (or the
   gated preset) for the Gated PixelCNN of 8 layers of 32 channels (the PyTorch reference's). */
GMDEF gm_pixelcnn_config gm_pixelcnn_default_config(int height, int width, int levels);
GMDEF gm_pixelcnn_config gm_pixelcnn_gated_config(int height, int width, int levels);
/* PixelRNN's Row LSTM: 4 layers of 32 LSTM channels, Adam 1e-3, batch 64. */
GMDEF gm_pixelcnn_config gm_pixelcnn_rowlstm_config(int height, int width, int levels);
GMDEF int  gm_pixelcnn_init(gm_pixelcnn *m, const gm_pixelcnn_config *cfg);
GMDEF void gm_pixelcnn_free(gm_pixelcnn *m);
/* x: n images of height*width floats in [0,1], each a level k/(levels-1) (binary for levels 2);
   labels: n classes for a class-conditional model, else NULL. */
GMDEF int  gm_pixelcnn_train_step(gm_pixelcnn *m, const float *x, const int *labels, int n, gm_pixelcnn_stats *stats);
/* The same with a context: n vectors of context_dim floats (context_dim must equal cfg.context). */
GMDEF int  gm_pixelcnn_train_step_ex(gm_pixelcnn *m, const float *x, const int *labels, const float *context,
                                     int context_dim, int n, gm_pixelcnn_stats *stats);
GMDEF int  gm_pixelcnn_log_prob(gm_pixelcnn *m, const float *x, const int *labels, const float *context,
                                int context_dim, int n, double *logp);   /* nats per image */
GMDEF int  gm_pixelcnn_evaluate(gm_pixelcnn *m, const float *x, const int *labels, const float *context,
                                int context_dim, int n, gm_pixelcnn_eval *ev);
GMDEF int  gm_pixelcnn_sample(gm_pixelcnn *m, const int *labels, int n, float *out);
/* Pixel by pixel in raster order at a temperature (logits / T); with given != NULL the first
   `rows` rows of each image are copied from given and the rest drawn (completion). */
GMDEF int  gm_pixelcnn_sample_ex(gm_pixelcnn *m, const int *labels, const float *context, int context_dim, int n,
                                 float temperature, const float *given, int rows, float *out);
/* x (N,1,H,W) in [0,1] -> out: logits (N, levels == 2 ? 1 : levels, H, W); logp (N). labels (N ints)
   and context (N, cfg.context) as the model needs them, else NULL. Either output may be NULL. */
GMDEF int  gm_pixelcnn_forward(gm_graph *g, gm_pixelcnn *m, gm_tensor *x, const int *labels, gm_tensor *context,
                               gm_tensor **out, gm_tensor **logp);
GMDEF int  gm_pixelcnn_save(const gm_pixelcnn *m, const char *path);
GMDEF int  gm_pixelcnn_load(gm_pixelcnn *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* GENMOD_AR_H */

/* ======================================================================================= */
/* Implementation                                                                          */
/* ======================================================================================= */
#ifdef GENMOD_AR_IMPLEMENTATION
#ifndef GENMOD_AR_IMPLEMENTATION_INCLUDED
#define GENMOD_AR_IMPLEMENTATION_INCLUDED
#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>

/* This implementation uses only genmod.h's public API, so it compiles in its own file as well as
   beside the core's; it brings the allocator fallbacks and the casts the core keeps private. */
#if defined(GENMOD_MALLOC) != defined(GENMOD_FREE) || defined(GENMOD_MALLOC) != defined(GENMOD_REALLOC)
#error "genmod_ar.h: define GENMOD_MALLOC, GENMOD_REALLOC and GENMOD_FREE together, or none of them"
#endif
#ifndef GENMOD_MALLOC
#define GENMOD_MALLOC(sz) malloc(sz)
#define GENMOD_REALLOC(p, sz) realloc(p, sz)
#define GENMOD_FREE(p) free(p)
#endif
#ifdef __cplusplus
#define GM__AR_CAST(type, x) static_cast<type>(x)
#else
#define GM__AR_CAST(type, x) ((type)(x))
#endif

#define GM__AR_LN2 0.69314718055994531
#define GM__AR_LOG2PI 1.8378770664093453

/* Start a training step: fresh graph, tape on, training mode. */
static void gm__ar_train_begin(gm_graph *g) {
    gm_graph_reset(g);
    gm_graph_set_grad(g, 1);
    gm_graph_set_training(g, 1);
}

/* log sum_k exp(v[:, k]) of v (R, K), differentiable and stable: log_softmax(v) = v - lse(v). */
static gm_tensor *gm__ar_logsumexp(gm_graph *g, gm_tensor *v) {
    if (!v) return NULL;
    if (v->shape[1] == 1) return v;
    return gm_sub(g, gm_slice(g, v, 1, 0, 1), gm_slice(g, gm_log_softmax(g, v), 1, 0, 1));
}

/* Draw from a softmax over k logits at a temperature. */
static int gm__ar_draw(gm_rng *r, const float *logits, int k, int stride, float temperature) {
    double mx = -1e300, s = 0, u;
    int i;
    for (i = 0; i < k; i++) if (logits[i * stride] > mx) mx = logits[i * stride];
    for (i = 0; i < k; i++) s += exp((logits[i * stride] - mx) / temperature);
    u = gm_rng_uniform(r) * s;
    for (i = 0; i < k - 1; i++) {
        u -= exp((logits[i * stride] - mx) / temperature);
        if (u < 0) return i;
    }
    return k - 1;
}

/* ---------------------------------------------------------------------------------------- */
/* MADE                                                                                     */
/* ---------------------------------------------------------------------------------------- */
GMDEF gm_made_config gm_made_default_config(int dim, int output) {
    gm_made_config c;
    memset(&c, 0, sizeof c);
    c.dim = dim;
    c.n_hidden = 2; c.hidden[0] = 500; c.hidden[1] = 500;
    c.act = GM_ACT_RELU;
    c.output = output;
    c.components = output == GM_MADE_GAUSSIAN ? 5 : 1;
    c.ordering = GM_MADE_NATURAL;
    c.masks = 1;
    c.ensemble = 1;
    c.lr = 1e-3f;
    c.batch = 100;
    c.seed = 1;
    return c;
}

static int gm__made_check(const gm_made_config *c) {
    int k;
    if (c->dim < 1) return gm_fail("gm_made_init: dim %d must be >= 1", c->dim);
    if (c->n_hidden < 1 || c->n_hidden > GM_MADE_MAX_HIDDEN)
        return gm_fail("gm_made_init: n_hidden %d must be in 1..%d", c->n_hidden, GM_MADE_MAX_HIDDEN);
    for (k = 0; k < c->n_hidden; k++)
        if (c->hidden[k] < 1) return gm_fail("gm_made_init: hidden[%d] = %d must be >= 1", k, c->hidden[k]);
    if (c->act < 0 || c->act >= GM_ACT_COUNT) return gm_fail("gm_made_init: act %d is not a GM_ACT_* activation", c->act);
    if (c->output != GM_MADE_BERNOULLI && c->output != GM_MADE_GAUSSIAN)
        return gm_fail("gm_made_init: output %d is not GM_MADE_BERNOULLI or GM_MADE_GAUSSIAN", c->output);
    if (c->output == GM_MADE_GAUSSIAN && (c->components < 1 || c->components > 64))
        return gm_fail("gm_made_init: components %d must be in 1..64", c->components);
    if (c->ordering != GM_MADE_NATURAL && c->ordering != GM_MADE_RANDOM)
        return gm_fail("gm_made_init: ordering %d is not GM_MADE_NATURAL or GM_MADE_RANDOM", c->ordering);
    if (c->masks < 1 || c->masks > GM_MADE_MAX_MASKS)
        return gm_fail("gm_made_init: masks %d must be in 1..%d", c->masks, GM_MADE_MAX_MASKS);
    if (c->ensemble < 1 || c->ensemble > c->masks)
        return gm_fail("gm_made_init: ensemble %d must be in 1..masks (%d)", c->ensemble, c->masks);
    if (!(c->lr > 0)) return gm_fail("gm_made_init: learning rate lr %g must be positive", c->lr);
    return 0;
}

static int gm__made_units(const gm_made *m, int k) {   /* outputs of layer k */
    return k < m->cfg.n_hidden ? m->cfg.hidden[k] : m->cfg.dim * m->out_per_dim;
}

/* The degrees of one mask set, drawn as in the paper: the ordering (1-based positions of the
   dimensions), then each hidden unit uniform in [min degree of the layer below, D-1], so no unit
   is cut off from every input or every output. Stored as float buffers. */
static void gm__made_draw_set(gm_made *m, int s, gm_rng *r) {
    int D = m->cfg.dim, k, i, lo = 1;
    float *ord = gm_params_data(&m->params, m->order[s]);
    for (i = 0; i < D; i++) ord[i] = (float)(i + 1);
    if (m->cfg.ordering == GM_MADE_RANDOM)
        for (i = D - 1; i > 0; i--) {          /* Fisher-Yates */
            int j = gm_rng_int(r, i + 1);
            float t = ord[i]; ord[i] = ord[j]; ord[j] = t;
        }
    for (k = 0; k < m->cfg.n_hidden; k++) {
        float *deg = gm_params_data(&m->params, m->order[s] + 1 + k);
        int hi = D - 1, mn = D;
        if (lo > hi) lo = hi;
        for (i = 0; i < m->cfg.hidden[k]; i++) {
            deg[i] = (float)(lo + (hi > lo ? gm_rng_int(r, hi - lo + 1) : 0));
            if ((int)deg[i] < mn) mn = (int)deg[i];
        }
        lo = mn;
    }
}

/* The dimension an output unit belongs to: outputs are the logits (Bernoulli), or three blocks of
   D*K (mixture logits, means, log standard deviations), each dimension-major. */
static int gm__made_unit_dim(const gm_made *m, int o) {
    int DK = m->cfg.dim * m->cfg.components;
    return m->cfg.output == GM_MADE_BERNOULLI ? o : (o % DK) / m->cfg.components;
}

/* Masks from degrees: a hidden unit of degree d sees units below of degree <= d; an output of
   dimension i (degree ord[i]) sees units of degree < ord[i]. Rebuilt after a load. */
static void gm__made_build_masks(gm_made *m) {
    int s, k, o, i;
    for (s = 0; s < m->cfg.masks; s++) {
        const float *ord = gm_params_data(&m->params, m->order[s]);
        for (k = 0; k < m->nl; k++) {
            float *mk = gm_params_data(&m->maskp, m->mask0 + s * m->nl + k);
            const float *below = k == 0 ? ord : gm_params_data(&m->params, m->order[s] + k);
            int nin = k == 0 ? m->cfg.dim : m->cfg.hidden[k - 1], nout = gm__made_units(m, k);
            for (o = 0; o < nout; o++) {
                int out = k < m->cfg.n_hidden;
                float d = out ? gm_params_data(&m->params, m->order[s] + 1 + k)[o] : ord[gm__made_unit_dim(m, o)];
                for (i = 0; i < nin; i++)
                    mk[(size_t)o * nin + i] = (out ? below[i] <= d : below[i] < d) ? 1.0f : 0.0f;
            }
        }
    }
}

static int gm__made_build(gm_made *m, gm_rng *r) {
    int k, s, shape[2];
    char name[48];
    for (k = 0; k < m->nl; k++) {
        int nin = k == 0 ? m->cfg.dim : m->cfg.hidden[k - 1], nout = gm__made_units(m, k);
        shape[0] = nout; shape[1] = nin;
        snprintf(name, sizeof name, "l%d.w", k);
        if ((m->w[k] = gm_params_add(&m->params, name, 2, shape)) < 0) return -1;
        snprintf(name, sizeof name, "l%d.b", k);
        if ((m->b[k] = gm_params_add(&m->params, name, 1, shape)) < 0) return -1;
    }
    for (s = 0; s < m->cfg.masks; s++) {
        shape[0] = m->cfg.dim;
        snprintf(name, sizeof name, "set%d.order", s);
        if ((m->order[s] = gm_params_add(&m->params, name, 1, shape)) < 0) return -1;
        gm_params_mark_buffer(&m->params, m->order[s]);
        for (k = 0; k < m->cfg.n_hidden; k++) {
            int v;
            shape[0] = m->cfg.hidden[k];
            snprintf(name, sizeof name, "set%d.deg%d", s, k);
            if ((v = gm_params_add(&m->params, name, 1, shape)) < 0) return -1;
            gm_params_mark_buffer(&m->params, v);
        }
        for (k = 0; k < m->nl; k++) {
            int v;
            shape[0] = gm__made_units(m, k); shape[1] = k == 0 ? m->cfg.dim : m->cfg.hidden[k - 1];
            snprintf(name, sizeof name, "set%d.mask%d", s, k);
            if ((v = gm_params_add(&m->maskp, name, 2, shape)) < 0) return -1;
            gm_params_mark_buffer(&m->maskp, v);
            if (s == 0 && k == 0) m->mask0 = v;
        }
    }
    /* views only now: adding may move the buffers */
    for (k = 0; k < m->nl; k++) {
        const gm_param_view *v = &m->params.views[m->w[k]];
        gm_init_weights(r, gm_params_data(&m->params, m->w[k]), v->size, GM_INIT_TORCH, v->shape[1], v->shape[0]);
        memset(gm_params_data(&m->params, m->b[k]), 0, (size_t)v->shape[0] * sizeof(float));
    }
    for (s = 0; s < m->cfg.masks; s++) gm__made_draw_set(m, s, r);
    m->maskp.frozen = 1;
    gm__made_build_masks(m);
    return 0;
}

GMDEF int gm_made_init(gm_made *m, const gm_made_config *cfg) {
    gm_rng r;
    if (!m || !cfg) return gm_fail("gm_made_init: NULL argument");
    memset(m, 0, sizeof *m);
    if (gm__made_check(cfg) != 0) return -1;
    m->cfg = *cfg;
    m->nl = cfg->n_hidden + 1;
    m->out_per_dim = cfg->output == GM_MADE_BERNOULLI ? 1 : 3 * cfg->components;
    gm_rng_seed(&r, cfg->seed);
    if (gm__made_build(m, &r) != 0) {
        gm_made_free(m);
        return gm_fail("gm_made_init: out of memory");
    }
    m->opt = gm_adam(cfg->lr, 0.9f, 0.999f);
    m->rng = gm_rng_split(&r);
    m->graph = gm_graph_new(cfg->seed + 1);
    if (!m->graph) { gm_made_free(m); return gm_fail("gm_made_init: out of memory"); }
    return 0;
}

GMDEF void gm_made_free(gm_made *m) {
    if (!m) return;
    gm_params_free(&m->params);
    gm_params_free(&m->maskp);
    gm_optim_free(&m->opt);
    gm_graph_free(m->graph);
    GENMOD_FREE(m->scratch);
    memset(m, 0, sizeof *m);
}

/* Per-example log-density (N) from the network's output (N, D*P) for data x (N, D). */
static gm_tensor *gm__made_logp(gm_graph *g, const gm_made *m, gm_tensor *out, gm_tensor *x) {
    int N = x->shape[0], D = m->cfg.dim, K = m->cfg.components;
    gm_tensor *lw, *mu, *ls, *z, *comp, *xr;
    if (m->cfg.output == GM_MADE_BERNOULLI) return gm_bernoulli_loglik(g, out, x);
    /* Mixture per dimension: log sum_k w_k N(x; mu_k, s_k), the three parts (N, D*K) each */
    lw = gm_log_softmax(g, gm_reshape(g, gm_slice(g, out, 1, 0, D * K), N * D, K, 0, 0));
    mu = gm_reshape(g, gm_slice(g, out, 1, D * K, D * K), N * D, K, 0, 0);
    ls = gm_clamp(g, gm_reshape(g, gm_slice(g, out, 1, 2 * D * K, D * K), N * D, K, 0, 0), -9.0f, 9.0f);
    xr = gm_reshape(g, x, N * D, 1, 0, 0);
    z = gm_mul(g, gm_sub(g, xr, mu), gm_exp(g, gm_neg(g, ls)));
    comp = gm_sub(g, gm_affine(g, gm_square(g, z), -0.5f, -0.5f * (float)GM__AR_LOG2PI), ls);
    comp = gm__ar_logsumexp(g, gm_add(g, lw, comp));
    return gm_sum_rows(g, gm_reshape(g, comp, N, D, 0, 0));
}

GMDEF int gm_made_forward(gm_graph *g, gm_made *m, gm_tensor *x, int set, gm_tensor **out, gm_tensor **logp) {
    gm_tensor *h;
    int k;
    if (!g || !m || !x) return gm_fail("gm_made_forward: NULL argument");
    if (x->ndim != 2 || x->shape[1] != m->cfg.dim)
        return gm_fail("gm_made_forward: x must be (N,%d), got %d dims with %d columns", m->cfg.dim, x->ndim,
                       x->ndim > 1 ? x->shape[1] : x->shape[0]);
    if (set < 0 || set >= m->cfg.masks) return gm_fail("gm_made_forward: mask set %d not in 0..%d", set, m->cfg.masks - 1);
    h = x;
    for (k = 0; k < m->nl; k++) {
        /* the mask multiplies the weight inside the graph, so the gradient is masked the same way */
        gm_tensor *w = gm_mul(g, gm_param(g, &m->params, m->w[k]), gm_param(g, &m->maskp, m->mask0 + set * m->nl + k));
        h = gm_bias_add(g, gm_matmul(g, h, w, 0, 1), gm_param(g, &m->params, m->b[k]));
        if (k < m->cfg.n_hidden) h = gm_activation(g, h, m->cfg.act, 0.01f);
    }
    if (out) *out = h;
    if (logp) *logp = h ? gm__made_logp(g, m, h, x) : NULL;
    if (!h || (logp && !*logp)) return gm_graph_fail(g, "gm_made_forward");
    return 0;
}

static int gm__made_args(gm_made *m, const float *x, int n, const char *who) {
    size_t i, count;
    if (!m || !m->graph) return gm_fail("%s: model not initialized", who);
    if (!x || n < 1) return gm_fail("%s: need x and n >= 1 (got n = %d)", who, n);
    if (m->cfg.output != GM_MADE_BERNOULLI) return 0;
    count = (size_t)n * (size_t)m->cfg.dim;
    for (i = 0; i < count; i++)
        if (x[i] != 0.0f && x[i] != 1.0f)
            return gm_fail("%s: Bernoulli MADE needs binary data, example %d dimension %d is %g (binarize first)",
                           who, (int)(i / m->cfg.dim), (int)(i % m->cfg.dim), x[i]);
    return 0;
}

GMDEF int gm_made_train_step(gm_made *m, const float *x, const int *labels, int n, gm_made_stats *stats) {
    gm_graph *g;
    gm_tensor *xt, *logp, *loss;
    int set;
    if (gm__made_args(m, x, n, "gm_made_train_step") != 0) return -1;
    if (labels) return gm_fail("gm_made_train_step: MADE is not conditional: labels must be NULL");
    g = m->graph;
    set = (int)(m->step % m->cfg.masks);
    gm__ar_train_begin(g);
    xt = gm_input(g, x, n, m->cfg.dim, 0, 0);
    if (!xt) return gm_graph_fail(g, "gm_made_train_step");
    if (gm_made_forward(g, m, xt, set, NULL, &logp) != 0) return -1;
    loss = gm_scale(g, gm_sum(g, logp), -1.0f / (float)n);
    /* gm_backward refuses a NaN or infinite loss before any gradient exists: no step is taken */
    if (gm_backward(g, loss) != 0) return gm_graph_fail(g, "gm_made_train_step");
    if (gm_optim_step(&m->opt, &m->params) != 0) return -1;
    m->step++;
    if (stats) {
        stats->loss = loss->data[0];
        stats->bits_per_dim = (float)(loss->data[0] / (m->cfg.dim * GM__AR_LN2));
        stats->mask_set = set;
    }
    return 0;
}

typedef struct gm__made_job { gm_made *m; const float *x; double *logp; } gm__made_job;

/* One chunk: log-densities of every ensemble set, combined as log mean exp in double. */
static int gm__made_logp_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__made_job *j = GM__AR_CAST(gm__made_job *, ctx);
    gm_made *m = j->m;
    int E = m->cfg.ensemble, s, i;
    double *acc = j->logp + start;
    gm_tensor *xt = gm_input(g, j->x + (size_t)start * m->cfg.dim, count, m->cfg.dim, 0, 0), *lp;
    if (!xt) return -1;
    for (s = 0; s < E; s++) {
        if (gm_made_forward(g, m, xt, s, NULL, &lp) != 0) return -1;
        for (i = 0; i < count; i++) {
            double v = lp->data[i], a = acc[i];
            if (s == 0) { acc[i] = v; continue; }
            acc[i] = (a > v ? a + log1p(exp(v - a)) : v + log1p(exp(a - v)));   /* log(e^a + e^v) */
        }
    }
    for (i = 0; i < count && E > 1; i++) acc[i] -= log((double)E);
    return 0;
}

GMDEF int gm_made_log_prob(gm_made *m, const float *x, int n, double *logp) {
    gm__made_job j;
    if (gm__made_args(m, x, n, "gm_made_log_prob") != 0) return -1;
    if (!logp) return gm_fail("gm_made_log_prob: logp is NULL");
    j.m = m; j.x = x; j.logp = logp;
    return gm_run_chunks(m->graph, n, gm__made_logp_chunk, &j, "gm_made_log_prob");
}

GMDEF int gm_made_evaluate(gm_made *m, const float *x, int n, gm_made_eval *ev) {
    double *lp, s = 0;
    int i;
    if (!ev) return gm_fail("gm_made_evaluate: ev is NULL");
    if (n < 1) return gm_fail("gm_made_evaluate: n %d must be >= 1", n);
    lp = GM__AR_CAST(double *, GENMOD_MALLOC((size_t)n * sizeof(double)));
    if (!lp) return gm_fail("gm_made_evaluate: out of memory");
    if (gm_made_log_prob(m, x, n, lp) != 0) { GENMOD_FREE(lp); return -1; }
    for (i = 0; i < n; i++) s += lp[i];
    GENMOD_FREE(lp);
    ev->nats = -s / n;
    ev->bits_per_dim = ev->nats / (m->cfg.dim * GM__AR_LN2);
    return 0;
}

GMDEF int gm_made_order(const gm_made *m, int set, int *order) {
    int i;
    const float *ord;
    if (!m || !m->graph || !order) return gm_fail("gm_made_order: NULL argument");
    if (set < 0 || set >= m->cfg.masks) return gm_fail("gm_made_order: mask set %d not in 0..%d", set, m->cfg.masks - 1);
    ord = m->params.data + m->params.views[m->order[set]].offset;
    for (i = 0; i < m->cfg.dim; i++) order[(int)ord[i] - 1] = i;
    return 0;
}

/* Draw dimension d of one example from the network's output row o. */
static float gm__made_draw_dim(gm_made *m, const float *o, int d, float T) {
    int D = m->cfg.dim, K = m->cfg.components, k;
    if (m->cfg.output == GM_MADE_BERNOULLI) {
        float p = 1.0f / (1.0f + expf(-o[d] / T));
        return gm_rng_uniform(&m->rng) < p ? 1.0f : 0.0f;
    }
    k = gm__ar_draw(&m->rng, o + (size_t)d * K, K, 1, T);
    return o[(size_t)D * K + (size_t)d * K + k] +
           T * expf(fminf(fmaxf(o[2 * (size_t)D * K + (size_t)d * K + k], -9.0f), 9.0f)) * gm_rng_normal(&m->rng);
}

typedef struct gm__made_sjob {
    gm_made *m; float T; int set; const float *given; const unsigned char *known; float *out; const int *order;
} gm__made_sjob;

/* One chunk of sampling: D passes of the network, each fixing the next dimension of the ordering
   (the graph is reset between passes: one pass's memory is all it holds). */
static int gm__made_sample_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__made_sjob *j = GM__AR_CAST(gm__made_sjob *, ctx);
    gm_made *m = j->m;
    int D = m->cfg.dim, P = m->out_per_dim, pos, i;
    float *x = j->out + (size_t)start * D;
    gm_tensor *xt, *o;
    for (i = 0; i < count * D; i++)
        x[i] = j->known && j->known[(size_t)start * D + i] ? j->given[(size_t)start * D + i] : 0.0f;
    for (pos = 0; pos < D; pos++) {
        int d = j->order[pos];
        gm_graph_reset(g);
        xt = gm_input(g, x, count, D, 0, 0);
        if (!xt || gm_made_forward(g, m, xt, j->set, &o, NULL) != 0) return -1;
        for (i = 0; i < count; i++) {
            size_t at = (size_t)(start + i) * D + d;
            if (j->known && j->known[at]) continue;
            x[(size_t)i * D + d] = gm__made_draw_dim(m, o->data + (size_t)i * D * P, d, j->T);
        }
    }
    return 0;
}

GMDEF int gm_made_sample_ex(gm_made *m, int n, float temperature, int set, const float *given,
                            const unsigned char *known, float *out) {
    gm__made_sjob j;
    int *order, rc;
    if (!m || !m->graph || !out || n < 1) return gm_fail("gm_made_sample_ex: need a model, out and n >= 1");
    if (!(temperature > 0)) return gm_fail("gm_made_sample_ex: temperature %g must be positive", temperature);
    if (set < 0 || set >= m->cfg.masks) return gm_fail("gm_made_sample_ex: mask set %d not in 0..%d", set, m->cfg.masks - 1);
    if ((given == NULL) != (known == NULL)) return gm_fail("gm_made_sample_ex: give both given and known, or neither");
    order = GM__AR_CAST(int *, GENMOD_MALLOC((size_t)m->cfg.dim * sizeof(int)));
    if (!order) return gm_fail("gm_made_sample_ex: out of memory");
    gm_made_order(m, set, order);
    j.m = m; j.T = temperature; j.set = set; j.given = given; j.known = known; j.out = out; j.order = order;
    rc = gm_run_chunks(m->graph, n, gm__made_sample_chunk, &j, "gm_made_sample_ex");
    GENMOD_FREE(order);
    return rc;
}

GMDEF int gm_made_sample(gm_made *m, const int *labels, int n, float *out) {
    if (labels) return gm_fail("gm_made_sample: MADE is not conditional: labels must be NULL");
    return gm_made_sample_ex(m, n, 1.0f, 0, NULL, NULL, out);
}

/* The architecture text: everything that fixes the tensors' shapes and meaning. */
static void gm__made_arch(const gm_made *m, char *s, size_t cap) {
    int k;
    size_t len;
    snprintf(s, cap, "made dim=%d hidden=", m->cfg.dim);
    for (k = 0; k < m->cfg.n_hidden; k++) {
        len = strlen(s);
        snprintf(s + len, cap - len, "%s%d", k ? "," : "", m->cfg.hidden[k]);
    }
    len = strlen(s);
    snprintf(s + len, cap - len, " act=%s out=%s components=%d ordering=%s masks=%d", gm_act_name(m->cfg.act),
             m->cfg.output == GM_MADE_BERNOULLI ? "bernoulli" : "gaussian", m->cfg.output == GM_MADE_BERNOULLI ? 1 : m->cfg.components,
             m->cfg.ordering == GM_MADE_NATURAL ? "natural" : "random", m->cfg.masks);
}

GMDEF int gm_made_save(const gm_made *m, const char *path) {
    char arch[256];
    if (!m || !m->graph || !path) return gm_fail("gm_made_save: NULL argument");
    gm__made_arch(m, arch, sizeof arch);
    return gm_model_save_single(path, "made", arch, m->step, &m->params, &m->opt, &m->rng, m->graph, NULL);
}

GMDEF int gm_made_load(gm_made *m, const char *path) {
    char arch[256];
    if (!m || !m->graph || !path) return gm_fail("gm_made_load: NULL argument");
    gm__made_arch(m, arch, sizeof arch);
    if (gm_model_load_single(path, "made", arch, &m->step, &m->params, &m->opt, &m->rng, m->graph, NULL) != 0) return -1;
    gm__made_build_masks(m);   /* the file's degrees */
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* LSTM cell                                                                                */
/* ---------------------------------------------------------------------------------------- */
GMDEF int gm_lstm_init(gm_lstm *l, gm_params *p, const char *name, int in, int hidden, gm_rng *r) {
    char nm[96];
    int shape[2], i;
    float bound, *b;
    if (!l || !p || !name || !r || in < 1 || hidden < 1)
        return gm_fail("gm_lstm_init: bad arguments for '%s' (in %d, hidden %d)", name ? name : "?", in, hidden);
    memset(l, 0, sizeof *l);
    l->p = p; l->in = in; l->hidden = hidden;
    shape[0] = 4 * hidden; shape[1] = in;
    snprintf(nm, sizeof nm, "%s.wx", name);
    if ((l->wx = gm_params_add(p, nm, 2, shape)) < 0) return -1;
    shape[1] = hidden;
    snprintf(nm, sizeof nm, "%s.wh", name);
    if ((l->wh = gm_params_add(p, nm, 2, shape)) < 0) return -1;
    snprintf(nm, sizeof nm, "%s.b", name);
    if ((l->b = gm_params_add(p, nm, 1, shape)) < 0) return -1;
    bound = 1.0f / sqrtf((float)hidden);   /* views only now: adding may move the buffers */
    gm_init_uniform(r, gm_params_data(p, l->wx), p->views[l->wx].size, -bound, bound);
    gm_init_uniform(r, gm_params_data(p, l->wh), p->views[l->wh].size, -bound, bound);
    b = gm_params_data(p, l->b);
    gm_init_uniform(r, b, (size_t)4 * hidden, -bound, bound);
    for (i = hidden; i < 2 * hidden; i++) b[i] += 1.0f;
    return 0;
}

GMDEF int gm_lstm_cell(gm_graph *g, gm_tensor *pre, gm_tensor *c, gm_tensor **h_out, gm_tensor **c_out) {
    int H, k;
    gm_tensor *ig, *fg, *og, *cg, *cn, *hn;
    if (!g || !pre || !h_out || !c_out) return gm_fail("gm_lstm_cell: NULL argument");
    if (pre->ndim < 2 || pre->shape[1] % 4) return gm_fail("gm_lstm_cell: pre must have 4H channels on axis 1");
    H = pre->shape[1] / 4;
    if (c) {
        int ok = c->ndim == pre->ndim && c->shape[1] == H;
        for (k = 0; ok && k < pre->ndim; k++) ok = k == 1 || c->shape[k] == pre->shape[k];
        if (!ok) return gm_fail("gm_lstm_cell: c must be pre's shape with %d channels", H);
    }
    ig = gm_sigmoid(g, gm_slice(g, pre, 1, 0, H));
    fg = gm_sigmoid(g, gm_slice(g, pre, 1, H, H));
    og = gm_sigmoid(g, gm_slice(g, pre, 1, 2 * H, H));
    cg = gm_tanh(g, gm_slice(g, pre, 1, 3 * H, H));
    cn = gm_mul(g, ig, cg);
    if (c) cn = gm_add(g, gm_mul(g, fg, c), cn);
    hn = gm_mul(g, og, gm_tanh(g, cn));
    if (!hn) return gm_graph_fail(g, "gm_lstm_cell");
    *h_out = hn; *c_out = cn;
    return 0;
}

GMDEF int gm_lstm_step(gm_graph *g, const gm_lstm *l, gm_tensor *x, gm_tensor *h, gm_tensor *c,
                       gm_tensor **h_out, gm_tensor **c_out) {
    gm_tensor *pre;
    if (!g || !l || !l->p || !x) return gm_fail("gm_lstm_step: NULL argument");
    if (x->ndim != 2 || x->shape[1] != l->in) return gm_fail("gm_lstm_step: x must be (N,%d)", l->in);
    if ((h == NULL) != (c == NULL)) return gm_fail("gm_lstm_step: give both h and c, or neither");
    if (h && (h->ndim != 2 || h->shape[0] != x->shape[0] || h->shape[1] != l->hidden))
        return gm_fail("gm_lstm_step: h must be (%d,%d)", x->shape[0], l->hidden);
    pre = gm_matmul(g, x, gm_param(g, l->p, l->wx), 0, 1);
    if (h) pre = gm_add(g, pre, gm_matmul(g, h, gm_param(g, l->p, l->wh), 0, 1));
    pre = gm_bias_add(g, pre, gm_param(g, l->p, l->b));
    if (!pre) return gm_graph_fail(g, "gm_lstm_step");
    return gm_lstm_cell(g, pre, c, h_out, c_out);
}

/* ---------------------------------------------------------------------------------------- */
/* PixelCNN, Gated PixelCNN, Row LSTM                                                       */
/* ---------------------------------------------------------------------------------------- */
/* Inference works on sub-batches of this many images: the activations of one pass (tens of
   channels at every pixel) stay near the size of a training step's. */
#define GM__PCNN_SUB 32
enum { GM__MASK_A, GM__MASK_B, GM__MASK_V, GM__MASK_NONE };

GMDEF gm_pixelcnn_config gm_pixelcnn_default_config(int height, int width, int levels) {
    gm_pixelcnn_config c;
    memset(&c, 0, sizeof c);
    c.kind = GM_PIXELCNN_PLAIN;
    c.height = height; c.width = width; c.levels = levels; c.colors = 1;
    c.channels = 64; c.blocks = 5; c.layers = 8; c.first_kernel = 7;
    c.lr = 1e-3f; c.batch = 64; c.seed = 1;
    return c;
}

GMDEF gm_pixelcnn_config gm_pixelcnn_gated_config(int height, int width, int levels) {
    gm_pixelcnn_config c = gm_pixelcnn_default_config(height, width, levels);
    c.kind = GM_PIXELCNN_GATED;
    c.channels = 32; c.layers = 8;
    return c;
}

GMDEF gm_pixelcnn_config gm_pixelcnn_rowlstm_config(int height, int width, int levels) {
    gm_pixelcnn_config c = gm_pixelcnn_default_config(height, width, levels);
    c.kind = GM_PIXELCNN_ROWLSTM;
    c.channels = 32; c.layers = 4;
    return c;
}

static int gm__pcnn_check(const gm_pixelcnn_config *c) {
    if (c->kind != GM_PIXELCNN_PLAIN && c->kind != GM_PIXELCNN_GATED && c->kind != GM_PIXELCNN_ROWLSTM)
        return gm_fail("gm_pixelcnn_init: kind %d is not GM_PIXELCNN_PLAIN, _GATED or _ROWLSTM", c->kind);
    if (c->height < 1 || c->width < 1) return gm_fail("gm_pixelcnn_init: height %d and width %d must be >= 1", c->height, c->width);
    if (c->levels < 2 || c->levels > 256) return gm_fail("gm_pixelcnn_init: levels %d must be in 2..256", c->levels);
    if (c->colors != 1 && c->colors != 3) return gm_fail("gm_pixelcnn_init: colors %d must be 1 or 3", c->colors);
    if (c->colors == 3 && c->kind == GM_PIXELCNN_ROWLSTM) return gm_fail("gm_pixelcnn_init: colors 3 needs kind GM_PIXELCNN_PLAIN or _GATED");
    if (c->colors == 3 && c->channels < 6) return gm_fail("gm_pixelcnn_init: channels %d must be >= 6 with 3 colors", c->channels);
    if (c->channels < 2 || c->channels % 2) return gm_fail("gm_pixelcnn_init: channels %d must be even and >= 2", c->channels);
    if (c->kind == GM_PIXELCNN_PLAIN) {
        if (c->blocks < 0 || c->blocks > GM_PCNN_MAX_BLOCKS) return gm_fail("gm_pixelcnn_init: blocks %d must be in 0..%d", c->blocks, GM_PCNN_MAX_BLOCKS);
        if (c->classes || c->context) return gm_fail("gm_pixelcnn_init: classes and context need kind GM_PIXELCNN_GATED or _ROWLSTM");
    } else if (c->layers < 1 || c->layers > GM_PCNN_MAX_LAYERS)
        return gm_fail("gm_pixelcnn_init: layers %d must be in 1..%d", c->layers, GM_PCNN_MAX_LAYERS);
    if (c->kind != GM_PIXELCNN_GATED && (c->first_kernel < 3 || c->first_kernel % 2 == 0))
        return gm_fail("gm_pixelcnn_init: first_kernel %d must be odd and >= 3", c->first_kernel);
    if (c->classes < 0 || c->context < 0) return gm_fail("gm_pixelcnn_init: classes %d and context %d must be >= 0", c->classes, c->context);
    if (!(c->lr > 0)) return gm_fail("gm_pixelcnn_init: learning rate lr %g must be positive", c->lr);
    return 0;
}

/* Which taps of a k x k kernel a mask keeps. A: rows above the centre and the centre row left of
   it; B: the same and the centre (a pixel's own features after the first layer, never its value);
   V (vertical stack): rows up to the centre row, every column: a (k/2+1) x k kernel padded on top
   only, so nothing is masked (the 2x3 and 4x7 kernels of the reference). */
static int gm__pcnn_tap(int type, int k, int r, int c) {
    int h = k / 2;
    switch (type) {
    case GM__MASK_A: return r < h || (r == h && c < h);
    case GM__MASK_B: return r < h || (r == h && c <= h);
    case GM__MASK_V: return r <= h;
    default: return 1;
    }
}

/* Channel groups for RGB (R = 0, G = 1, B = 2; every channel has one): a selector packs a mode and
   a parameter p. NONE: channels from earlier pixels only (taps already shifted: any group may see
   them); COLOR: p channels per color, color-major (the image: p = 1; the logits: p = levels or 1);
   HID: hidden features, group (ch mod p) mod 3, so a gate's two halves of p channels pair up
   within a group; TAIL: the first p channels come from earlier pixels, the rest are the pixel's
   own features in groups (ch - p) mod 3 (the horizontal stack's taps). */
enum { GM__G_NONE = 0, GM__G_COLOR = 1, GM__G_HID = 2, GM__G_TAIL = 3 };
#define GM__GSEL(mode, p) ((mode) | ((p) << 2))
static int gm__pcnn_group(int sel, int ch) {
    int p = sel >> 2;
    switch (sel & 3) {
    case GM__G_COLOR: return ch / p;
    case GM__G_HID: return (ch % p) % 3;
    case GM__G_TAIL: return ch < p ? -1 : (ch - p) % 3;
    default: return -1;
    }
}

/* Does weight (o, i, y, x) survive the mask? Off the centre: the spatial rule. At the centre of an
   A or B mask (the pixel itself): inputs from earlier pixels always; one color: B keeps, A drops;
   RGB: output group go sees input group gi < go (A) or gi <= go (B): R, G, B inside each pixel. */
static int gm__pcnn_keep(const gm_pixelcnn *m, int type, int k, int y, int x, int gi, int go) {
    int h = k / 2;
    if ((type != GM__MASK_A && type != GM__MASK_B) || y != h || x != h) return gm__pcnn_tap(type, k, y, x);
    if (gi < 0) return 1;
    if (m->cfg.colors == 1) return type == GM__MASK_B;
    return type == GM__MASK_A ? gi < go : gi <= go;
}

/* One convolution slot; returns the fan-in for its init (kept taps times cin: PyTorch's init of the
   equivalent unmasked kernel) or -1. A mask is stored only if it drops something. */
static int gm__pcnn_slot(gm_pixelcnn *m, int cin, int cout, int k, int type, int gin, int gout) {
    int L = m->nslots, shape[4], o, i, y, x, taps = 0, drops = 0;
    char name[32];
    shape[0] = cout; shape[1] = cin; shape[2] = type == GM__MASK_V ? k / 2 + 1 : k; shape[3] = k;
    snprintf(name, sizeof name, "c%d.w", L);
    if ((m->w[L] = gm_params_add(&m->params, name, 4, shape)) < 0) return -1;
    snprintf(name, sizeof name, "c%d.b", L);
    if ((m->b[L] = gm_params_add(&m->params, name, 1, shape)) < 0) return -1;
    m->mask[L] = -1;
    m->k[L] = k;
    m->kh[L] = shape[2];
    for (o = 0; o < cout && !drops && type != GM__MASK_V; o++)
        for (i = 0; i < cin && !drops; i++)
            for (y = 0; y < k; y++)
                for (x = 0; x < k; x++) drops += !gm__pcnn_keep(m, type, k, y, x, gm__pcnn_group(gin, i), gm__pcnn_group(gout, o));
    if (drops) {
        float *mk;
        snprintf(name, sizeof name, "c%d.mask", L);
        if ((m->mask[L] = gm_params_add(&m->maskp, name, 4, shape)) < 0) return -1;
        gm_params_mark_buffer(&m->maskp, m->mask[L]);
        mk = gm_params_data(&m->maskp, m->mask[L]);
        for (o = 0; o < cout; o++)
            for (i = 0; i < cin; i++)
                for (y = 0; y < k; y++)
                    for (x = 0; x < k; x++)
                        mk[(((size_t)o * cin + i) * k + y) * k + x] =
                            (float)gm__pcnn_keep(m, type, k, y, x, gm__pcnn_group(gin, i), gm__pcnn_group(gout, o));
    }
    for (y = 0; y < k; y++) for (x = 0; x < k; x++) taps += gm__pcnn_tap(k > 1 ? type : GM__MASK_NONE, k, y, x);
    m->nslots++;
    return taps * cin;
}

/* The conditioning matrix of layer i, (classes + context, 4C), if the model is conditional. */
static int gm__pcnn_add_cond(gm_pixelcnn *m, int i) {
    int shape[2];
    char name[32];
    m->cond[i] = -1;
    if (m->cfg.classes + m->cfg.context == 0) return 0;
    shape[0] = m->cfg.classes + m->cfg.context; shape[1] = 4 * m->cfg.channels;
    snprintf(name, sizeof name, "cond%d", i);
    return (m->cond[i] = gm_params_add(&m->params, name, 2, shape)) < 0 ? -1 : 0;
}

static int gm__pcnn_build(gm_pixelcnn *m, int *fan_in) {
    const gm_pixelcnn_config *c = &m->cfg;
    int i, h = c->channels, C = c->channels, K = c->colors, out = c->levels == 2 ? 1 : c->levels, f = 0;
    int img = GM__GSEL(GM__G_COLOR, 1), hid, hid2 = GM__GSEL(GM__G_HID, C);
    /* 1x1 convolutions are masks B at their single tap: a no-op for one color, channel groups for RGB */
#define GM__PCNN_ADD(cin, cout, k, t, gi, go) do { \
        if ((f = gm__pcnn_slot(m, cin, cout, k, t, gi, go)) < 0) return -1; \
        fan_in[m->nslots - 1] = f; \
    } while (0)
    if (c->kind == GM_PIXELCNN_PLAIN) {
        int hh = GM__GSEL(GM__G_HID, h / 2);
        hid = GM__GSEL(GM__G_HID, h);
        GM__PCNN_ADD(K, h, c->first_kernel, GM__MASK_A, img, hid);
        for (i = 0; i < c->blocks; i++) {
            GM__PCNN_ADD(h, h / 2, 1, GM__MASK_B, hid, hh);
            GM__PCNN_ADD(h / 2, h / 2, 3, GM__MASK_B, hh, hh);
            GM__PCNN_ADD(h / 2, h, 1, GM__MASK_B, hh, hid);
        }
    } else if (c->kind == GM_PIXELCNN_ROWLSTM) {
        hid = GM__GSEL(GM__G_HID, C);
        GM__PCNN_ADD(1, C, c->first_kernel, GM__MASK_A, img, hid);
        for (i = 0; i < c->layers; i++) {
            GM__PCNN_ADD(2 * C, 4 * C, 1, GM__MASK_NONE, 0, 0);   /* input-to-state: the 1x3 mask-B taps */
            GM__PCNN_ADD(3 * C, 4 * C, 1, GM__MASK_NONE, 0, 0);   /* state-to-state: the row above's 1x3 */
            if (gm__pcnn_add_cond(m, i) != 0) return -1;
        }
        h = C;
    } else {
        hid = GM__GSEL(GM__G_HID, C);
        for (i = 0; i < c->layers; i++) {
            int cin = i ? C : K, k = i ? 3 : 7, taps = i ? 2 * C : 4 * K + (K > 1 ? K : 0);
            /* vertical stack: rows above only, every channel */
            GM__PCNN_ADD(cin, 2 * C, k, GM__MASK_V, GM__G_NONE, hid2);
            /* horizontal stack: 1x1 over the taps (layer 0, RGB: the pixel's earlier colors last) */
            GM__PCNN_ADD(taps, 2 * C, 1, i ? GM__MASK_B : GM__MASK_A, GM__GSEL(GM__G_TAIL, i ? C : 4 * K), hid2);
            GM__PCNN_ADD(2 * C, 2 * C, 1, GM__MASK_B, GM__G_NONE, hid2);   /* vertical-to-horizontal link */
            GM__PCNN_ADD(C, C, 1, GM__MASK_B, hid, hid);   /* horizontal output, before the residual */
            if (gm__pcnn_add_cond(m, i) != 0) return -1;
        }
        h = C;
    }
    GM__PCNN_ADD(h, h, 1, GM__MASK_B, hid, hid);
    GM__PCNN_ADD(h, K * out, 1, GM__MASK_B, hid, GM__GSEL(GM__G_COLOR, out));
#undef GM__PCNN_ADD
    return 0;
}

GMDEF int gm_pixelcnn_init(gm_pixelcnn *m, const gm_pixelcnn_config *cfg) {
    gm_rng r;
    int i, fan_in[GM__PCNN_MAX_SLOTS];
    if (!m || !cfg) return gm_fail("gm_pixelcnn_init: NULL argument");
    memset(m, 0, sizeof *m);
    if (gm__pcnn_check(cfg) != 0) return -1;
    m->cfg = *cfg;
    if (cfg->kind == GM_PIXELCNN_PLAIN) m->cfg.layers = 0;   /* fields of the other kinds do not count */
    else m->cfg.blocks = 0;
    if (cfg->kind == GM_PIXELCNN_GATED) m->cfg.first_kernel = 7;
    gm_rng_seed(&r, cfg->seed);
    if (gm__pcnn_build(m, fan_in) != 0) { gm_pixelcnn_free(m); return gm_fail("gm_pixelcnn_init: out of memory"); }
    for (i = 0; i < m->nslots; i++) {   /* views only now: adding may move the buffers */
        const gm_param_view *v = &m->params.views[m->w[i]];
        float bound = 1.0f / sqrtf((float)fan_in[i]);
        gm_init_weights(&r, gm_params_data(&m->params, m->w[i]), v->size, GM_INIT_TORCH, fan_in[i], v->shape[0]);
        gm_init_uniform(&r, gm_params_data(&m->params, m->b[i]), (size_t)v->shape[0], -bound, bound);
    }
    for (i = 0; cfg->kind == GM_PIXELCNN_ROWLSTM && i < cfg->layers; i++) {   /* forget gates open: +1 */
        float *b = gm_params_data(&m->params, m->b[1 + 2 * i]);
        int ch;
        for (ch = cfg->channels; ch < 2 * cfg->channels; ch++) b[ch] += 1.0f;
    }
    for (i = 0; cfg->kind != GM_PIXELCNN_PLAIN && i < cfg->layers; i++)
        if (m->cond[i] >= 0)   /* an embedding's init, N(0, 1) */
            gm_init_normal(&r, gm_params_data(&m->params, m->cond[i]), m->params.views[m->cond[i]].size, 0.0f, 1.0f);
    m->maskp.frozen = 1;
    m->opt = gm_adam(cfg->lr, 0.9f, 0.999f);
    m->rng = gm_rng_split(&r);
    m->graph = gm_graph_new(cfg->seed + 1);
    if (!m->graph) { gm_pixelcnn_free(m); return gm_fail("gm_pixelcnn_init: out of memory"); }
    return 0;
}

GMDEF void gm_pixelcnn_free(gm_pixelcnn *m) {
    if (!m) return;
    gm_params_free(&m->params);
    gm_params_free(&m->maskp);
    gm_optim_free(&m->opt);
    gm_graph_free(m->graph);
    GENMOD_FREE(m->labels);
    memset(m, 0, sizeof *m);
}

static gm_tensor *gm__pcnn_conv(gm_graph *g, gm_pixelcnn *m, int L, gm_tensor *x) {
    gm_tensor *w = gm_param(g, &m->params, m->w[L]), *y;
    int h = m->k[L] / 2;
    /* the mask multiplies the weight inside the graph, so the gradient is masked the same way */
    if (m->mask[L] >= 0) w = gm_mul(g, w, gm_param(g, &m->maskp, m->mask[L]));
    /* the vertical stack's (k/2+1) x k kernel: output row r sees input rows r-k/2..r */
    y = m->kh[L] == m->k[L] ? gm_conv2d(g, x, w, 1, h) : gm_conv2d_ex(g, x, w, 1, h, 0, h, h);
    return gm_bias_add(g, y, gm_param(g, &m->params, m->b[L]));
}

/* t moved by s steps along axis (2: down, 3: right), zeros coming in. */
static gm_tensor *gm__pcnn_shift_by(gm_graph *g, gm_tensor *t, int axis, int s) {
    gm_tensor *z;
    if (!t) return NULL;
    if (s >= t->shape[axis]) s = t->shape[axis];
    z = gm_zeros(g, t->shape[0], t->shape[1], axis == 2 ? s : t->shape[2], axis == 3 ? s : t->shape[3]);
    if (s == t->shape[axis]) return z;
    return gm_concat(g, z, gm_slice(g, t, axis, 0, t->shape[axis] - s), axis);
}

static gm_tensor *gm__pcnn_shift(gm_graph *g, gm_tensor *t, int axis) { return gm__pcnn_shift_by(g, t, axis, 1); }

/* The horizontal stack's input of layer i as exact taps (not a masked square kernel): layer 0's
   1x4 window shifted right one column = copies of x shifted right by 4, 3, 2, 1 (RGB: and x itself,
   the pixel's earlier colors, masked by channel groups); a later layer's 1x2 window = h shifted
   right by 1, and h. Stacked along the channels for one 1x1 convolution. */
static gm_tensor *gm__pcnn_htaps(gm_graph *g, gm_tensor *h, int layer, int colors) {
    gm_tensor *t;
    int s;
    if (layer > 0) return gm_concat(g, gm__pcnn_shift_by(g, h, 3, 1), h, 1);
    t = gm__pcnn_shift_by(g, h, 3, 4);
    for (s = 3; s >= 1; s--) t = gm_concat(g, t, gm__pcnn_shift_by(g, h, 3, s), 1);
    return colors > 1 ? gm_concat(g, t, h, 1) : t;
}

/* tanh(first half of the channels) * sigmoid(second half), fused in one op */
static gm_tensor *gm__pcnn_gate(gm_graph *g, gm_tensor *t, int C) {
    (void)C;
    return gm_gate(g, t);
}

/* The conditioning vector (N, classes + context): one-hot labels, then the context. */
static gm_tensor *gm__pcnn_condvec(gm_graph *g, gm_pixelcnn *m, int N, const int *labels, gm_tensor *context) {
    gm_tensor *oh = m->cfg.classes ? gm_one_hot(g, labels, N, m->cfg.classes) : NULL;
    if (!m->cfg.context) return oh;
    return oh ? gm_concat(g, oh, context, 1) : context;
}

/* The conditioning bias of layer i, (N, 4C, 1, 1); NULL without conditioning. */
static gm_tensor *gm__pcnn_bias(gm_graph *g, gm_pixelcnn *m, gm_tensor *cv, int i) {
    if (!cv) return NULL;
    return gm_reshape(g, gm_matmul(g, cv, gm_param(g, &m->params, m->cond[i]), 0, 0), cv->shape[0], 4 * m->cfg.channels, 1, 1);
}

/* The vertical stack: every layer's pre-activation vo (before the conditioning bias, which only
   feeds its own gate) into vo[i]. Row r of every vo depends on input rows above r only, so a crop
   of enough rows above gives row r exactly (what the cached sampler uses). */
static int gm__pcnn_vstack(gm_graph *g, gm_pixelcnn *m, gm_tensor *x, gm_tensor *cv, gm_tensor **vo) {
    int C = m->cfg.channels, i;
    gm_tensor *v = x, *t, *b;
    for (i = 0; i < m->cfg.layers; i++) {
        t = gm__pcnn_conv(g, m, 4 * i, v);
        if (i == 0) t = gm__pcnn_shift(g, t, 2);   /* mask A: rows above only */
        vo[i] = t;
        b = gm__pcnn_bias(g, m, cv, i);
        v = gm__pcnn_gate(g, b ? gm_add(g, t, gm_slice(g, b, 1, 0, 2 * C)) : t, C);
        if (!v) return -1;
    }
    return 0;
}

/* The horizontal stack over the rows of x, given the vertical stack's vo at the same rows: the
   link 1x1(vo), the gate, the 1x1 output and the residual. Works on a single row as well. */
static gm_tensor *gm__pcnn_hstack(gm_graph *g, gm_pixelcnn *m, gm_tensor *x, gm_tensor *cv, gm_tensor **vo) {
    int C = m->cfg.channels, i;
    gm_tensor *h = x, *ho, *gh, *b;
    for (i = 0; i < m->cfg.layers; i++) {
        int s = 4 * i;
        ho = gm__pcnn_conv(g, m, s + 1, gm__pcnn_htaps(g, h, i, m->cfg.colors));   /* columns left only in layer 0 */
        ho = gm_add(g, ho, gm__pcnn_conv(g, m, s + 2, vo[i]));   /* vo at row r holds rows < r only */
        b = gm__pcnn_bias(g, m, cv, i);
        if (b) ho = gm_add(g, ho, gm_slice(g, b, 1, 2 * C, 2 * C));
        gh = gm__pcnn_conv(g, m, s + 3, gm__pcnn_gate(g, ho, C));
        h = i == 0 ? gh : gm_add(g, h, gh);
    }
    return h;
}

static gm_tensor *gm__pcnn_gated(gm_graph *g, gm_pixelcnn *m, gm_tensor *x, gm_tensor *cv) {
    gm_tensor *vo[GM_PCNN_MAX_LAYERS];
    if (gm__pcnn_vstack(g, m, x, cv, vo) != 0) return NULL;
    return gm__pcnn_hstack(g, m, x, cv, vo);
}

/* t[0..n) concatenated along an axis pairwise: each piece is copied log2(n) times, not n times. */
static gm_tensor *gm__ar_concat_all(gm_graph *g, gm_tensor **t, int n, int axis) {
    if (n == 1) return t[0];
    return gm_concat(g, gm__ar_concat_all(g, t, n / 2, axis), gm__ar_concat_all(g, t + n / 2, n - n / 2, axis), axis);
}

/* A row of pixel vectors x (N*W, K) as (N, W, K, 1), moved one column right (dir 1: each pixel
   gets its left neighbour's vector) or left (-1), zeros coming in. */
static gm_tensor *gm__rlstm_shift(gm_graph *g, gm_tensor *x, int W, int dir) {
    int N = x->shape[0] / W, K = x->shape[1];
    gm_tensor *v = gm_reshape(g, x, N, W, K, 1), *z = gm_zeros(g, N, 1, K, 1);
    if (W == 1) return z;
    return dir > 0 ? gm_concat(g, z, gm_slice(g, v, 1, 0, W - 1), 1) : gm_concat(g, gm_slice(g, v, 1, 1, W - 1), z, 1);
}

/* slot L's 1x1 weight (4C, taps*K) times the row's taps stacked per pixel, plus its bias. */
static gm_tensor *gm__rlstm_mm(gm_graph *g, gm_pixelcnn *m, int L, gm_tensor *taps, int NW) {
    gm_tensor *w = gm_param(g, &m->params, m->w[L]);
    if (!taps || !w) return NULL;
    taps = gm_reshape(g, taps, NW, taps->shape[2], 0, 0);
    w = gm_reshape(g, w, w->shape[0], w->shape[1], 0, 0);
    return gm_bias_add(g, gm_matmul(g, taps, w, 0, 1), gm_param(g, &m->params, m->b[L]));
}

/* One row of Row LSTM layer i, every tensor a matrix of the row's pixels (N*W, channels):
   pre-activations = the input-to-state 1x3 mask-B convolution of the row's input x (the pixel to
   the left and the pixel's own features, never its value) + the conditioning bias b (N,1,4C,1) or
   NULL + the state-to-state 1x3 convolution (all three taps) of the row above's h (none on the
   first row); then the LSTM cell. Each 1x3 convolution is one matmul over the stacked taps. */
static int gm__rlstm_row(gm_graph *g, gm_pixelcnn *m, int i, int W, gm_tensor *x, gm_tensor *b, gm_tensor *h,
                         gm_tensor *c, gm_tensor **ho, gm_tensor **co) {
    int NW = x ? x->shape[0] : 0, C = m->cfg.channels;
    gm_tensor *pre = x ? gm__rlstm_mm(g, m, 1 + 2 * i, gm_concat(g, gm__rlstm_shift(g, x, W, 1),
                                                                 gm_reshape(g, x, NW / W, W, C, 1), 2), NW) : NULL;
    if (b) pre = gm_reshape(g, gm_add(g, gm_reshape(g, pre, NW / W, W, 4 * C, 1), b), NW, 4 * C, 0, 0);
    if (h && pre) {
        gm_tensor *taps = gm_concat(g, gm__rlstm_shift(g, h, W, 1), gm_reshape(g, h, NW / W, W, C, 1), 2);
        pre = gm_add(g, pre, gm__rlstm_mm(g, m, 2 + 2 * i, gm_concat(g, taps, gm__rlstm_shift(g, h, W, -1), 2), NW));
    }
    if (!pre) return gm_graph_fail(g, "gm_pixelcnn_forward");
    return gm_lstm_cell(g, pre, c, ho, co);
}

/* The conditioning bias of Row LSTM layer i as (N,1,4C,1), or NULL. */
static gm_tensor *gm__rlstm_bias(gm_graph *g, gm_pixelcnn *m, gm_tensor *cv, int i) {
    gm_tensor *b = gm__pcnn_bias(g, m, cv, i);
    return b ? gm_reshape(g, b, b->shape[0], 1, 4 * m->cfg.channels, 1) : NULL;
}

/* Rows of the first convolution's output (N, C, rows, W), from row `from` on, as (N*W, C) matrices. */
static void gm__rlstm_split(gm_graph *g, gm_tensor *t, int from, gm_tensor **rows) {
    gm_tensor *p = gm_permute(g, t, 0, 2, 3, 1);
    int r, N, W, C;
    if (!p) { rows[0] = NULL; return; }
    N = t->shape[0]; W = t->shape[3]; C = t->shape[1];
    for (r = from; r < t->shape[2]; r++) rows[r - from] = gm_reshape(g, gm_slice(g, p, 1, r, 1), N * W, C, 0, 0);
}

/* The Row LSTM (PixelRNN, van den Oord et al. 2016): a k x k mask-A convolution (the paper's; it
   also lets the last column see the pixel above, which a 1x3 mask-A input-to-state cannot), then
   Row LSTM layers with residual connections, rows top to bottom, each row's state from the row
   above's (1x3 along it) and from the row's input (1x3 mask B). Everything after the first
   convolution works row by row on (N*W, C) matrices: slicing rows out of whole-image tensors would
   give every row's gradient the whole image's size. hl/cl (or NULL): every layer's h and c of the
   last row, the cached sampler's state. */
static gm_tensor *gm__pcnn_rowlstm(gm_graph *g, gm_pixelcnn *m, gm_tensor *x, gm_tensor *cv, gm_tensor **hl, gm_tensor **cl) {
    int N = x->shape[0], H = x->shape[2], W = x->shape[3], C = m->cfg.channels, i, r;
    gm_tensor **rows = GM__AR_CAST(gm_tensor **, GENMOD_MALLOC((size_t)H * sizeof(gm_tensor *))), *out;
    if (!rows) { gm_fail("gm_pixelcnn_forward: out of memory"); return NULL; }
    gm__rlstm_split(g, gm__pcnn_conv(g, m, 0, x), 0, rows);
    for (i = 0; i < m->cfg.layers; i++) {
        gm_tensor *h = NULL, *c = NULL, *b = gm__rlstm_bias(g, m, cv, i);
        for (r = 0; r < H; r++) {
            if (gm__rlstm_row(g, m, i, W, rows[r], b, h, c, &h, &c) != 0) { GENMOD_FREE(rows); return NULL; }
            rows[r] = gm_add(g, rows[r], h);   /* the residual */
        }
        if (hl) { hl[i] = h; cl[i] = c; }
    }
    for (r = 0; r < H; r++) rows[r] = gm_reshape(g, rows[r], N, 1, W, C);
    out = gm_permute(g, gm__ar_concat_all(g, rows, H, 1), 0, 3, 1, 2);
    GENMOD_FREE(rows);
    return out;
}

/* The two 1x1 output layers. */
static gm_tensor *gm__pcnn_head(gm_graph *g, gm_pixelcnn *m, gm_tensor *h) {
    h = gm__pcnn_conv(g, m, m->nslots - 2, gm_relu(g, h));
    return gm__pcnn_conv(g, m, m->nslots - 1, gm_relu(g, h));
}

static gm_tensor *gm__pcnn_plain(gm_graph *g, gm_pixelcnn *m, gm_tensor *x) {
    int i, L = 0;
    gm_tensor *h = gm__pcnn_conv(g, m, L++, x), *t;
    for (i = 0; i < m->cfg.blocks; i++) {
        t = gm__pcnn_conv(g, m, L++, gm_relu(g, h));
        t = gm__pcnn_conv(g, m, L++, gm_relu(g, t));
        t = gm__pcnn_conv(g, m, L++, gm_relu(g, t));
        h = gm_add(g, h, t);
    }
    return h;
}

/* The pixels' levels as ints (softmax targets), checked against the configured levels. */
static int gm__pcnn_levels(gm_pixelcnn *m, const float *x, int n, const char *who) {
    size_t HW = (size_t)m->cfg.colors * m->cfg.height * m->cfg.width, i, count = (size_t)n * HW;
    int L1 = m->cfg.levels - 1;
    if (count > m->labels_cap) {
        int *p = GM__AR_CAST(int *, GENMOD_REALLOC(m->labels, count * sizeof(int)));
        if (!p) return gm_fail("%s: out of memory", who);
        m->labels = p; m->labels_cap = count;
    }
    for (i = 0; i < count; i++) {
        float v = x[i] * (float)L1;
        int k = (int)floorf(v + 0.5f);
        if (!(x[i] >= 0.0f && x[i] <= 1.0f) || fabsf(v - (float)k) > 1e-3f)
            return gm_fail("%s: value %d of image %d is %g, not one of the %d levels k/%d (levels must match the data)",
                           who, (int)(i % HW), (int)(i / HW), x[i], m->cfg.levels, L1);
        m->labels[i] = k;
    }
    return 0;
}

/* Per-image log-likelihood from logits; the softmax case needs m->labels filled for x. */
static gm_tensor *gm__pcnn_logp(gm_graph *g, gm_pixelcnn *m, gm_tensor *logits, gm_tensor *x) {
    int N = x->shape[0], K = m->cfg.colors, H = m->cfg.height, W = m->cfg.width, L = m->cfg.levels;
    gm_tensor *lg;
    if (L == 2) return gm_bernoulli_loglik(g, logits, x);
    /* (N, K*L, H, W) -> (N*K, L, H, W) -> rows (n, color, y, x) of L logits: x's own order */
    lg = gm_permute(g, K > 1 ? gm_reshape(g, logits, N * K, L, H, W) : logits, 0, 2, 3, 1);
    lg = gm_reshape(g, lg, N * K * H * W, L, 0, 0);
    return gm_sum_rows(g, gm_reshape(g, gm_gather(g, gm_log_softmax(g, lg), m->labels), N, K * H * W, 0, 0));
}

static int gm__pcnn_cond_args(const gm_pixelcnn *m, const int *labels, const float *context, int context_dim,
                              int n, const char *who) {
    int i;
    if (m->cfg.classes && !labels) return gm_fail("%s: the model is class-conditional: give labels", who);
    if (!m->cfg.classes && labels) return gm_fail("%s: the model is not class-conditional: labels must be NULL", who);
    for (i = 0; labels && i < n; i++)
        if (labels[i] < 0 || labels[i] >= m->cfg.classes)
            return gm_fail("%s: label %d of example %d is not in 0..%d", who, labels[i], i, m->cfg.classes - 1);
    if (m->cfg.context && !context) return gm_fail("%s: the model takes a context of %d floats: give it", who, m->cfg.context);
    if (context && context_dim != m->cfg.context)
        return gm_fail("%s: context of %d floats per example, the model takes %d", who, context_dim, m->cfg.context);
    return 0;
}

GMDEF int gm_pixelcnn_forward(gm_graph *g, gm_pixelcnn *m, gm_tensor *x, const int *labels, gm_tensor *context,
                              gm_tensor **out, gm_tensor **logp) {
    gm_tensor *h, *cv = NULL;
    int N;
    if (!g || !m || !x) return gm_fail("gm_pixelcnn_forward: NULL argument");
    if (x->ndim != 4 || x->shape[1] != m->cfg.colors || x->shape[2] != m->cfg.height || x->shape[3] != m->cfg.width)
        return gm_fail("gm_pixelcnn_forward: x must be (N,%d,%d,%d)", m->cfg.colors, m->cfg.height, m->cfg.width);
    N = x->shape[0];
    if (context && (context->ndim != 2 || context->shape[0] != N))
        return gm_fail("gm_pixelcnn_forward: context must be (%d,%d)", N, m->cfg.context);
    if (gm__pcnn_cond_args(m, labels, context ? context->data : NULL, context ? context->shape[1] : 0, N, "gm_pixelcnn_forward") != 0)
        return -1;
    if (logp && m->cfg.levels > 2 && gm__pcnn_levels(m, x->data, N, "gm_pixelcnn_forward") != 0) return -1;
    if (m->cfg.kind != GM_PIXELCNN_PLAIN) cv = gm__pcnn_condvec(g, m, N, labels, context);
    if (m->cfg.kind == GM_PIXELCNN_GATED) h = gm__pcnn_gated(g, m, x, cv);
    else if (m->cfg.kind == GM_PIXELCNN_ROWLSTM) h = gm__pcnn_rowlstm(g, m, x, cv, NULL, NULL);
    else h = gm__pcnn_plain(g, m, x);
    h = gm__pcnn_head(g, m, h);
    if (out) *out = h;
    if (logp) *logp = h ? gm__pcnn_logp(g, m, h, x) : NULL;
    if (!h || (logp && !*logp)) return gm_graph_fail(g, "gm_pixelcnn_forward");
    return 0;
}

static int gm__pcnn_args(gm_pixelcnn *m, const float *x, const int *labels, const float *context, int context_dim,
                         int n, const char *who) {
    if (!m || !m->graph) return gm_fail("%s: model not initialized", who);
    if (!x || n < 1) return gm_fail("%s: need x and n >= 1 (got n = %d)", who, n);
    if (gm__pcnn_cond_args(m, labels, context, context_dim, n, who) != 0) return -1;
    return gm__pcnn_levels(m, x, n, who);   /* also refuses data of other levels */
}

static gm_tensor *gm__pcnn_ctx_input(gm_graph *g, const gm_pixelcnn *m, const float *context, int start, int n) {
    return context ? gm_input(g, context + (size_t)start * m->cfg.context, n, m->cfg.context, 0, 0) : NULL;
}

GMDEF int gm_pixelcnn_train_step_ex(gm_pixelcnn *m, const float *x, const int *labels, const float *context,
                                    int context_dim, int n, gm_pixelcnn_stats *stats) {
    gm_graph *g;
    gm_tensor *xt, *logp, *loss;
    int HW;
    if (gm__pcnn_args(m, x, labels, context, context_dim, n, "gm_pixelcnn_train_step") != 0) return -1;
    g = m->graph;
    HW = m->cfg.colors * m->cfg.height * m->cfg.width;
    gm__ar_train_begin(g);
    xt = gm_input(g, x, n, m->cfg.colors, m->cfg.height, m->cfg.width);
    if (!xt) return gm_graph_fail(g, "gm_pixelcnn_train_step");
    if (gm_pixelcnn_forward(g, m, xt, labels, gm__pcnn_ctx_input(g, m, context, 0, n), NULL, &logp) != 0) return -1;
    loss = gm_scale(g, gm_sum(g, logp), -1.0f / (float)n);
    /* gm_backward refuses a NaN or infinite loss before any gradient exists: no step is taken */
    if (gm_backward(g, loss) != 0) return gm_graph_fail(g, "gm_pixelcnn_train_step");
    if (gm_optim_step(&m->opt, &m->params) != 0) return -1;
    m->step++;
    if (stats) { stats->loss = loss->data[0]; stats->bits_per_dim = (float)(loss->data[0] / (HW * GM__AR_LN2)); }
    return 0;
}

GMDEF int gm_pixelcnn_train_step(gm_pixelcnn *m, const float *x, const int *labels, int n, gm_pixelcnn_stats *stats) {
    return gm_pixelcnn_train_step_ex(m, x, labels, NULL, 0, n, stats);
}

typedef struct gm__pcnn_job {
    gm_pixelcnn *m; const float *x; const int *labels; const float *context;
    double *logp; float T; const float *given; int rows; float *out;
} gm__pcnn_job;

/* One chunk of log-densities, in sub-batches (the graph reset between them). */
static int gm__pcnn_logp_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__pcnn_job *j = GM__AR_CAST(gm__pcnn_job *, ctx);
    gm_pixelcnn *m = j->m;
    int HW = m->cfg.colors * m->cfg.height * m->cfg.width, i, s, k;
    for (s = start; s < start + count; s += k) {
        gm_tensor *xt, *lp;
        k = start + count - s < GM__PCNN_SUB ? start + count - s : GM__PCNN_SUB;
        gm_graph_reset(g);
        xt = gm_input(g, j->x + (size_t)s * HW, k, m->cfg.colors, m->cfg.height, m->cfg.width);
        if (!xt || gm_pixelcnn_forward(g, m, xt, j->labels ? j->labels + s : NULL, gm__pcnn_ctx_input(g, m, j->context, s, k),
                                       NULL, &lp) != 0) return -1;
        for (i = 0; i < k; i++) j->logp[s + i] = lp->data[i];
    }
    return 0;
}

GMDEF int gm_pixelcnn_log_prob(gm_pixelcnn *m, const float *x, const int *labels, const float *context,
                               int context_dim, int n, double *logp) {
    gm__pcnn_job j;
    if (gm__pcnn_args(m, x, labels, context, context_dim, n, "gm_pixelcnn_log_prob") != 0) return -1;
    if (!logp) return gm_fail("gm_pixelcnn_log_prob: logp is NULL");
    memset(&j, 0, sizeof j);
    j.m = m; j.x = x; j.labels = labels; j.context = context; j.logp = logp;
    return gm_run_chunks(m->graph, n, gm__pcnn_logp_chunk, &j, "gm_pixelcnn_log_prob");
}

GMDEF int gm_pixelcnn_evaluate(gm_pixelcnn *m, const float *x, const int *labels, const float *context,
                               int context_dim, int n, gm_pixelcnn_eval *ev) {
    double *lp, s = 0;
    int i;
    if (!ev || n < 1) return gm_fail("gm_pixelcnn_evaluate: need ev and n >= 1");
    lp = GM__AR_CAST(double *, GENMOD_MALLOC((size_t)n * sizeof(double)));
    if (!lp) return gm_fail("gm_pixelcnn_evaluate: out of memory");
    if (gm_pixelcnn_log_prob(m, x, labels, context, context_dim, n, lp) != 0) { GENMOD_FREE(lp); return -1; }
    for (i = 0; i < n; i++) s += lp[i];
    GENMOD_FREE(lp);
    ev->nats = -s / n;
    ev->bits_per_dim = ev->nats / ((double)m->cfg.colors * m->cfg.height * m->cfg.width * GM__AR_LN2);
    return 0;
}

/* Draw one pixel from its logits o (level k at o[k * stride]) at temperature T. */
static float gm__pcnn_draw(gm_pixelcnn *m, const float *o, int stride, float T) {
    int L = m->cfg.levels;
    if (L == 2) return gm_rng_uniform(&m->rng) < 1.0f / (1.0f + expf(-o[0] / T)) ? 1.0f : 0.0f;
    return (float)gm__ar_draw(&m->rng, o, L, stride, T) / (float)(L - 1);
}

/* Rows top..top+rows-1 of every color plane of k images x (k, K, H, W) into crop (k, K, rows, W). */
static void gm__pcnn_crop(const gm_pixelcnn *m, const float *x, int k, int top, int rows, float *crop) {
    int K = m->cfg.colors, H = m->cfg.height, W = m->cfg.width, i;
    for (i = 0; i < k * K; i++)
        memcpy(crop + (size_t)i * rows * W, x + ((size_t)i * H + top) * W, sizeof(float) * rows * W);
}

/* Naive sampling of k images x (k, K*H*W): the whole network once per pixel and color, raster
   order, colors R, G, B inside each pixel. */
static int gm__pcnn_sample_naive(gm_graph *g, gm__pcnn_job *j, int s, int k, float *x) {
    gm_pixelcnn *m = j->m;
    int H = m->cfg.height, W = m->cfg.width, HW = H * W, K = m->cfg.colors, Lo = m->cfg.levels == 2 ? 1 : m->cfg.levels;
    int p, i, cc;
    for (p = j->rows * W; p < HW; p++)
        for (cc = 0; cc < K; cc++) {
            gm_tensor *xt, *o;
            gm_graph_reset(g);
            xt = gm_input(g, x, k, K, H, W);
            if (!xt || gm_pixelcnn_forward(g, m, xt, j->labels ? j->labels + s : NULL,
                                           gm__pcnn_ctx_input(g, m, j->context, s, k), &o, NULL) != 0) return -1;
            for (i = 0; i < k; i++)
                x[((size_t)i * K + cc) * HW + p] = gm__pcnn_draw(m, o->data + ((size_t)i * K + cc) * Lo * HW + p, HW, j->T);
        }
    return 0;
}

/* Cached sampling of a gated model. Once per row r: the vertical stack on the rows that row r
   sees (r-layers-3..r: rows above the crop only reach rows above r), whose row r of every layer's
   vo is kept (the vertical stack does not change while row r is drawn). Then once per pixel (and
   color): the horizontal stack and the output layers on row r alone. The same operations on the
   same values as the naive pass, so the same logits and, drawn in the same order, the same images. */
static int gm__pcnn_sample_cached(gm_graph *g, gm__pcnn_job *j, int s, int k, float *x) {
    gm_pixelcnn *m = j->m;
    int H = m->cfg.height, W = m->cfg.width, HW = H * W, C = m->cfg.channels, NL = m->cfg.layers, K = m->cfg.colors;
    int Lo = m->cfg.levels == 2 ? 1 : m->cfg.levels, r, c, cc, i, l, top, rows;
    size_t per = (size_t)k * 2 * C * W;   /* one layer's cached row */
    float *cache = GM__AR_CAST(float *, GENMOD_MALLOC(per * NL * sizeof(float) + (size_t)k * K * HW * sizeof(float)));
    float *crop = cache ? cache + per * NL : NULL;
    int rc = 0;
    if (!cache) return gm_fail("gm_pixelcnn_sample_ex: out of memory");
    for (r = j->rows; r < H && rc == 0; r++) {
        gm_tensor *vo[GM_PCNN_MAX_LAYERS], *xt, *cv;
        top = r - NL - 3 > 0 ? r - NL - 3 : 0;
        rows = r - top + 1;
        gm__pcnn_crop(m, x, k, top, rows, crop);
        gm_graph_reset(g);
        xt = gm_input(g, crop, k, K, rows, W);
        cv = xt ? gm__pcnn_condvec(g, m, k, j->labels ? j->labels + s : NULL, gm__pcnn_ctx_input(g, m, j->context, s, k)) : NULL;
        if (!xt || (m->cfg.classes + m->cfg.context > 0 && !cv) || gm__pcnn_vstack(g, m, xt, cv, vo) != 0) { rc = -1; break; }
        for (l = 0; l < NL; l++)   /* keep row r (the crop's last) of every layer */
            for (i = 0; i < k * 2 * C; i++)
                memcpy(cache + per * l + (size_t)i * W, vo[l]->data + ((size_t)i * rows + rows - 1) * W, sizeof(float) * W);
        for (c = 0; c < W && rc == 0; c++)
            for (cc = 0; cc < K && rc == 0; cc++) {
                gm_tensor *xr, *o;
                gm_graph_reset(g);
                gm__pcnn_crop(m, x, k, r, 1, crop);
                xr = gm_input(g, crop, k, K, 1, W);
                cv = xr ? gm__pcnn_condvec(g, m, k, j->labels ? j->labels + s : NULL, gm__pcnn_ctx_input(g, m, j->context, s, k)) : NULL;
                for (l = 0; l < NL; l++) vo[l] = gm_input(g, cache + per * l, k, 2 * C, 1, W);
                o = gm__pcnn_head(g, m, gm__pcnn_hstack(g, m, xr, cv, vo));
                if (!o) { rc = -1; break; }
                for (i = 0; i < k; i++)
                    x[((size_t)i * K + cc) * HW + (size_t)r * W + c] = gm__pcnn_draw(m, o->data + ((size_t)i * K + cc) * Lo * W + c, W, j->T);
            }
    }
    GENMOD_FREE(cache);
    return rc;
}

/* Cached sampling of a Row LSTM. Every layer's h and c of the row above are kept (from the given
   rows by one pass over them, then from each drawn row); per pixel only row r is recomputed, every
   layer on that row alone. No state depends on a row's last pixel, so the pass that draws it
   leaves row r's final states. Same operations on the same values as the naive pass. */
static int gm__rlstm_sample_cached(gm_graph *g, gm__pcnn_job *j, int s, int k, float *x) {
    gm_pixelcnn *m = j->m;
    int H = m->cfg.height, W = m->cfg.width, HW = H * W, C = m->cfg.channels, NL = m->cfg.layers;
    int Lo = m->cfg.levels == 2 ? 1 : m->cfg.levels, r, c, i, l, have = 0, rc = 0;
    size_t per = (size_t)k * C * W;   /* one layer's h (or c) of one row */
    float *cache = GM__AR_CAST(float *, GENMOD_MALLOC(2 * per * NL * sizeof(float) + (size_t)k * HW * sizeof(float)));
    float *crop = cache ? cache + 2 * per * NL : NULL;
    gm_tensor *hs[GM_PCNN_MAX_LAYERS], *cs[GM_PCNN_MAX_LAYERS];
    if (!cache) return gm_fail("gm_pixelcnn_sample_ex: out of memory");
    for (r = j->rows; r < H && rc == 0; r++) {
        if (r > 0 && !have) {   /* completion: the states of the given rows' last row */
            gm_tensor *xt, *cv;
            for (i = 0; i < k; i++) memcpy(crop + (size_t)i * r * W, x + (size_t)i * HW, sizeof(float) * r * W);
            gm_graph_reset(g);
            xt = gm_input(g, crop, k, 1, r, W);
            cv = xt ? gm__pcnn_condvec(g, m, k, j->labels ? j->labels + s : NULL, gm__pcnn_ctx_input(g, m, j->context, s, k)) : NULL;
            if (!xt || !gm__pcnn_rowlstm(g, m, xt, cv, hs, cs)) { rc = -1; break; }
            for (l = 0; l < NL; l++) {
                memcpy(cache + 2 * per * l, hs[l]->data, per * sizeof(float));
                memcpy(cache + 2 * per * l + per, cs[l]->data, per * sizeof(float));
            }
            have = 1;
        }
        for (c = 0; c < W && rc == 0; c++) {   /* the first convolution's row r needs rows r-k/2..r */
            gm_tensor *hin, *cv, *o;
            int top = r - m->cfg.first_kernel / 2 > 0 ? r - m->cfg.first_kernel / 2 : 0, rows = r - top + 1;
            gm_graph_reset(g);
            for (i = 0; i < k; i++) memcpy(crop + (size_t)i * rows * W, x + (size_t)i * HW + (size_t)top * W, sizeof(float) * rows * W);
            gm__rlstm_split(g, gm__pcnn_conv(g, m, 0, gm_input(g, crop, k, 1, rows, W)), rows - 1, &hin);
            cv = gm__pcnn_condvec(g, m, k, j->labels ? j->labels + s : NULL, gm__pcnn_ctx_input(g, m, j->context, s, k));
            for (l = 0; l < NL && hin; l++) {
                gm_tensor *hp = have ? gm_input(g, cache + 2 * per * l, k * W, C, 0, 0) : NULL;
                gm_tensor *cp = have ? gm_input(g, cache + 2 * per * l + per, k * W, C, 0, 0) : NULL;
                if (gm__rlstm_row(g, m, l, W, hin, gm__rlstm_bias(g, m, cv, l), hp, cp, &hs[l], &cs[l]) != 0) { hin = NULL; break; }
                hin = gm_add(g, hin, hs[l]);
            }
            if (hin) hin = gm_permute(g, gm_reshape(g, hin, k, 1, W, C), 0, 3, 1, 2);
            o = hin ? gm__pcnn_head(g, m, hin) : NULL;
            if (!o) { rc = gm_graph_fail(g, "gm_pixelcnn_sample_ex"); break; }
            for (i = 0; i < k; i++)
                x[(size_t)i * HW + (size_t)r * W + c] = gm__pcnn_draw(m, o->data + (size_t)i * Lo * W + c, W, j->T);
        }
        for (l = 0; l < NL && rc == 0; l++) {   /* the last pixel's pass: row r's final states */
            memcpy(cache + 2 * per * l, hs[l]->data, per * sizeof(float));
            memcpy(cache + 2 * per * l + per, cs[l]->data, per * sizeof(float));
        }
        have = 1;
    }
    GENMOD_FREE(cache);
    return rc;
}

/* One chunk of sampling, in sub-batches. */
static int gm__pcnn_sample_chunk(gm_graph *g, int start, int count, void *ctx) {
    gm__pcnn_job *j = GM__AR_CAST(gm__pcnn_job *, ctx);
    gm_pixelcnn *m = j->m;
    int HW = m->cfg.height * m->cfg.width, W = m->cfg.width, D = m->cfg.colors * HW, i, s, k;
    for (s = start; s < start + count; s += k) {
        float *x = j->out + (size_t)s * D;
        k = start + count - s < GM__PCNN_SUB ? start + count - s : GM__PCNN_SUB;
        for (i = 0; i < k * D; i++) x[i] = j->given && i % HW < j->rows * W ? j->given[(size_t)s * D + i] : 0.0f;
        int rc = m->cfg.naive_sampling || m->cfg.kind == GM_PIXELCNN_PLAIN ? gm__pcnn_sample_naive(g, j, s, k, x)
               : m->cfg.kind == GM_PIXELCNN_GATED ? gm__pcnn_sample_cached(g, j, s, k, x) : gm__rlstm_sample_cached(g, j, s, k, x);
        if (rc != 0) return -1;
    }
    return 0;
}

GMDEF int gm_pixelcnn_sample_ex(gm_pixelcnn *m, const int *labels, const float *context, int context_dim, int n,
                                float temperature, const float *given, int rows, float *out) {
    gm__pcnn_job j;
    if (!m || !m->graph || !out || n < 1) return gm_fail("gm_pixelcnn_sample_ex: need a model, out and n >= 1");
    if (gm__pcnn_cond_args(m, labels, context, context_dim, n, "gm_pixelcnn_sample_ex") != 0) return -1;
    if (!(temperature > 0)) return gm_fail("gm_pixelcnn_sample_ex: temperature %g must be positive", temperature);
    if (given && (rows < 0 || rows > m->cfg.height)) return gm_fail("gm_pixelcnn_sample_ex: rows %d not in 0..%d", rows, m->cfg.height);
    memset(&j, 0, sizeof j);
    j.m = m; j.labels = labels; j.context = context; j.T = temperature; j.given = given; j.rows = given ? rows : 0; j.out = out;
    return gm_run_chunks(m->graph, n, gm__pcnn_sample_chunk, &j, "gm_pixelcnn_sample_ex");
}

GMDEF int gm_pixelcnn_sample(gm_pixelcnn *m, const int *labels, int n, float *out) {
    return gm_pixelcnn_sample_ex(m, labels, NULL, 0, n, 1.0f, NULL, 0, out);
}

/* The checkpoint's model name: the Row LSTM is PixelRNN, a model of its own; both PixelCNNs are
   "pixelcnn" (their architecture text tells them apart). */
static const char *gm__pcnn_model(const gm_pixelcnn *m) { return m->cfg.kind == GM_PIXELCNN_ROWLSTM ? "rowlstm" : "pixelcnn"; }

static void gm__pcnn_arch(const gm_pixelcnn *m, char *s, size_t cap) {
    const gm_pixelcnn_config *c = &m->cfg;
    size_t len;
    if (c->kind == GM_PIXELCNN_PLAIN)
        snprintf(s, cap, "pixelcnn %dx%d levels=%d channels=%d blocks=%d first_kernel=%d", c->height, c->width,
                 c->levels, c->channels, c->blocks, c->first_kernel);
    else if (c->kind == GM_PIXELCNN_GATED)
        snprintf(s, cap, "gated %dx%d levels=%d channels=%d layers=%d classes=%d context=%d", c->height, c->width,
                 c->levels, c->channels, c->layers, c->classes, c->context);
    else
        snprintf(s, cap, "rowlstm %dx%d levels=%d channels=%d layers=%d first_kernel=%d classes=%d context=%d", c->height,
                 c->width, c->levels, c->channels, c->layers, c->first_kernel, c->classes, c->context);
    len = strlen(s);
    if (c->colors != 1) snprintf(s + len, cap - len, " colors=%d", c->colors);   /* gray models keep their text */
}

GMDEF int gm_pixelcnn_save(const gm_pixelcnn *m, const char *path) {
    char arch[160];
    if (!m || !m->graph || !path) return gm_fail("gm_pixelcnn_save: NULL argument");
    gm__pcnn_arch(m, arch, sizeof arch);
    return gm_model_save_single(path, gm__pcnn_model(m), arch, m->step, &m->params, &m->opt, &m->rng, m->graph, NULL);
}

GMDEF int gm_pixelcnn_load(gm_pixelcnn *m, const char *path) {
    char arch[160];
    if (!m || !m->graph || !path) return gm_fail("gm_pixelcnn_load: NULL argument");
    gm__pcnn_arch(m, arch, sizeof arch);
    return gm_model_load_single(path, gm__pcnn_model(m), arch, &m->step, &m->params, &m->opt, &m->rng, m->graph, NULL);
}

#endif /* GENMOD_AR_IMPLEMENTATION_INCLUDED */
#endif /* GENMOD_AR_IMPLEMENTATION */

/*
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
*/
