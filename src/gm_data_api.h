/* ---- data and checkpoints: public declarations (pasted into genmod.h) ----
 * Needs the shared core types (gm_params, gm_optim, GMDEF). Every function that reads a file or
 * user input returns 0 (or a count) on success and -1 on failure with gm_last_error() naming the
 * file and the problem. Nothing here keeps global state; all randomness is seeded by the caller
 * and comes from a private splitmix64 generator, so results do not depend on libc rand(). */

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

/* ---- 2-D toy densities ----
 * name: one of gm_toy2d_names(). noise < 0 selects the dataset's default (see DATA_NOTES.md).
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
 * *rng is the generator state (any value to start); it is advanced, so successive calls
 * draw fresh samples. dst may equal src. */
GMDEF void gm_binarize(float *dst, const float *src, size_t count, uint64_t *rng);
/* Uniform dequantization for flows on [0,1] data holding k/255 values:
 * x = (k + u) / 256 with u ~ U[0,1). Result is in [0,1). *rng as for gm_binarize. */
GMDEF void gm_dequantize(float *x, size_t count, uint64_t *rng);

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
    uint64_t rng;
} gm_batcher;
GMDEF int  gm_batcher_init(gm_batcher *b, int n, int batch, uint64_t seed, int drop_last);
GMDEF int  gm_batcher_next(gm_batcher *b, const int **idx);
GMDEF void gm_batcher_free(gm_batcher *b);
/* Copies items idx[0..count-1] of d into x_out (count*c*h*w floats) and y_out (count ints;
 * NULL to skip, or d->y NULL). */
GMDEF void gm_dataset_gather(const gm_dataset *d, const int *idx, int count, float *x_out, int *y_out);

/* ---- checkpoints (safetensors) ----
 * Every view of p is stored as an F32 tensor under its view name. With opt, the moments are
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
