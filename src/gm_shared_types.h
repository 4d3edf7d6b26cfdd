/* Shared core types (the lead pastes these into genmod.h's declaration section verbatim).
 * Helpers: include this from your shim; do not edit. */
#include <stddef.h>
#include <stdint.h>
#ifndef GMDEF
#define GMDEF extern
#endif

/* ---- errors ----
 * Functions that can fail on user input return 0 on success and -1 on failure, and set a message
 * (per thread) readable with gm_last_error(). Inside the implementation, fail with
 *     return gm__fail("idx: %s: truncated: header says %d images, file holds %zu bytes", path, n, size);
 * (printf-style; it stores the message and returns -1). */
GMDEF const char *gm_last_error(void);
/* implementation provides:  static int gm__fail(const char *fmt, ...);  (returns -1) */

/* ---- parameters ----
 * Every trainable tensor of a model lives in one contiguous buffer `data`, with `grad` mirroring it.
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
GMDEF void   gm_params_free(gm_params *p);

/* ---- optimizer state (moments mirror the parameter buffer) ---- */
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
