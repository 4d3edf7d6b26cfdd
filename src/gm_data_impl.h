/* ---- data and checkpoints: implementation (pasted under GENMOD_IMPLEMENTATION) ----
 * Uses only libc/libm, the shared core types, gm__fail() and the gm_params_* functions.
 * Every file format reader here treats its input as hostile: sizes read from a file are checked
 * for overflow before use and nothing is read outside the buffer that holds the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <limits.h>
#include <errno.h>
#include <math.h>
#if defined(__unix__) || defined(__APPLE__)
#define GM__POSIX_IO 1
#include <unistd.h>
#include <fcntl.h>
#elif defined(_WIN32)
#include <io.h>
#include <process.h>
#endif

#ifndef GENMOD_MALLOC
#define GENMOD_MALLOC(sz) malloc(sz)
#endif
#ifndef GENMOD_FREE
#define GENMOD_FREE(p) free(p)
#endif
#ifndef GENMOD_REALLOC
#define GENMOD_REALLOC(p, sz) realloc(p, sz)
#endif

#define GM__PI 3.14159265358979323846

/* ======================================================================== random numbers */
/* splitmix64: tiny, seedable from any value, identical on every platform. */
static uint64_t gm__sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
/* uniform in [0,1) with 53 random bits */
static double gm__unif(uint64_t *s) { return (double)(gm__sm64(s) >> 11) * (1.0 / 9007199254740992.0); }
/* standard normal by Box-Muller; 1-u keeps log() away from 0. One value per call keeps the
 * stream simple to reason about (no cached second value hidden in state). */
static double gm__normal(uint64_t *s) {
    double u1 = 1.0 - gm__unif(s), u2 = gm__unif(s);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * GM__PI * u2);
}
/* uniform integer in [0, n) without modulo bias (rejection of the incomplete last block) */
static uint64_t gm__below(uint64_t *s, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, r;
    do { r = gm__sm64(s); } while (r >= lim);
    return r % n;
}

/* ======================================================================== byte order */
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

/* ======================================================================== reading files */
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
    if (!s->f) return gm__fail("%s: %s: cannot open: %s", what, path, strerror(errno));
    if (fseek(s->f, 0, SEEK_END) != 0 || (end = ftell(s->f)) < 0 || fseek(s->f, 0, SEEK_SET) != 0) {
        fclose(s->f);
        s->f = NULL;
        return gm__fail("%s: %s: cannot determine the file size (not a regular file?)", what, path);
    }
    s->size = (uint64_t)end;
    if (fgetc(s->f) == EOF && ferror(s->f)) { /* e.g. a directory: fopen and ftell "work" on Linux */
        fclose(s->f);
        s->f = NULL;
        return gm__fail("%s: %s: cannot read (is it a directory?)", what, path);
    }
    if (fseek(s->f, 0, SEEK_SET) != 0) {
        fclose(s->f);
        s->f = NULL;
        return gm__fail("%s: %s: cannot seek", what, path);
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
        return gm__fail("%s: %s: file too large for this platform", what, path);
    }
    n = (size_t)s.size;
    buf = (unsigned char *)GENMOD_MALLOC(n + 1); /* +1: malloc(0) may return NULL */
    if (!buf) { gm__src_close(&s); return gm__fail("%s: %s: out of memory reading %zu bytes", what, path, n); }
    if (gm__src_read(&s, buf, n) != n || ferror(s.f)) {
        GENMOD_FREE(buf);
        gm__src_close(&s);
        return gm__fail("%s: %s: read error (a directory, or the file changed while reading?)", what, path);
    }
    gm__src_close(&s);
    *out = buf;
    *len = n;
    return 0;
}

/* ======================================================================== writing files */
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
    if (!w->tmp) return gm__fail("%s: %s: out of memory", what, path);
    snprintf(w->tmp, n, "%s.tmp.%ld", path, gm__pid());
#ifdef GM__POSIX_IO
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (w->fd < 0) {
#else
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
#endif
        int e = errno;
        gm__fail("%s: %s: cannot create temporary file %s: %s", what, path, w->tmp, strerror(e));
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
        gm__fail("%s: %s: write failed: %s (the previous file, if any, is unchanged)", w->what, w->path,
                 strerror(e ? e : EIO));
    }
#ifdef GM__POSIX_IO
    else gm__sync_dir(w->path);
#endif
    GENMOD_FREE(w->tmp);
    w->tmp = NULL;
    return rc;
}

/* ======================================================================== IDX */
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
    if (size == 0) return gm__fail("idx: %s: file is empty", path);
    if (got >= 2 && b[0] == 0x1f && b[1] == 0x8b)
        return gm__fail("idx: %s: is gzip-compressed; decompress it first (gunzip)", path);
    if (got < 4) return gm__fail("idx: %s: truncated: %d bytes is too short for an IDX header", path, (int)got);
    if (b[0] != 0 || b[1] != 0)
        return gm__fail("idx: %s: bad magic 0x%02x%02x%02x%02x: not an IDX file", path, b[0], b[1], b[2], b[3]);
    if (b[2] != 0x08)
        return gm__fail("idx: %s: data type 0x%02x (%s) is not supported, only uint8 (0x08)", path, b[2],
                        gm__idx_type_name(b[2]));
    if (b[3] != want_ndim)
        return gm__fail("idx: %s: bad magic 0x%08x: has %d dimensions; an IDX %s file has magic 0x%08x "
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
    if (s->f && ferror(s->f)) return gm__fail("idx: %s: read error (is it a directory?)", s->path);
    if (gm__idx_magic(b, got, s->size, s->path, want_ndim) != 0) return -1;
    if (got < need)
        return gm__fail("idx: %s: truncated: file has %d bytes, the header alone needs %d", s->path, (int)got, (int)need);
    h->ndim = want_ndim;
    h->data_bytes = 1;
    for (i = 0; i < want_ndim; i++) {
        h->dims[i] = gm__be32(b + 4 + 4 * i);
        if (h->dims[i] == 0 || h->dims[i] > (uint32_t)INT_MAX)
            return gm__fail("idx: %s: dimension %d is %lu (must be 1..%d)", s->path, i, (unsigned long)h->dims[i], INT_MAX);
        if (!gm__mul_u64(h->data_bytes, h->dims[i], &h->data_bytes))
            return gm__fail("idx: %s: dimensions overflow (corrupt header)", s->path);
    }
    if (h->data_bytes > UINT64_MAX - need) return gm__fail("idx: %s: dimensions overflow (corrupt header)", s->path);
    total = need + h->data_bytes;
    if (s->size < total)
        return gm__fail("idx: %s: truncated: header says %lu items (%llu bytes in all) but the file has %llu bytes",
                        s->path, (unsigned long)h->dims[0], (unsigned long long)total, (unsigned long long)s->size);
    if (s->size > total)
        return gm__fail("idx: %s: %llu trailing bytes after the %lu items the header announces (corrupt or wrong header)",
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
        if (gm__src_read(s, buf, n) != n) return gm__fail("idx: %s: read error or file shrank while reading", s->path);
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
        if (gm__src_read(s, buf, k) != k) return gm__fail("idx: %s: read error or file shrank while reading", s->path);
        for (i = 0; i < k; i++) {
            if (buf[i] >= num_classes)
                return gm__fail("idx: %s: label %d of item %lu is out of range 0..%d", s->path, buf[i],
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
    if (!isfinite(lo) || !isfinite(hi)) return gm__fail("idx: %s: range [%g, %g] is not finite", img->path, lo, hi);
    if (num_classes < 1 || num_classes > 256) return gm__fail("idx: num_classes %d must be 1..256", num_classes);
    if (gm__idx_header(img, 3, &hi_) != 0) return -1;
    if (lbl) {
        if (gm__idx_header(lbl, 1, &hl) != 0) return -1;
        if (hl.dims[0] != hi_.dims[0])
            return gm__fail("idx: count mismatch: %s has %lu images but %s has %lu labels", img->path,
                            (unsigned long)hi_.dims[0], lbl->path, (unsigned long)hl.dims[0]);
    }
    items = hi_.dims[0];
    if (max_items > 0 && (size_t)max_items < items) items = (size_t)max_items;
    if ((uint64_t)hi_.dims[1] * hi_.dims[2] > (uint64_t)INT_MAX)
        return gm__fail("idx: %s: images of %lux%lu are too large", img->path, (unsigned long)hi_.dims[1],
                        (unsigned long)hi_.dims[2]);
    per = (size_t)hi_.dims[1] * hi_.dims[2];
    if (items > SIZE_MAX / sizeof(float) / per)
        return gm__fail("idx: %s: %lu images of %lux%lu do not fit in memory", img->path, (unsigned long)items,
                        (unsigned long)hi_.dims[1], (unsigned long)hi_.dims[2]);
    nfloat = items * per;
    t.n = (int)items; t.h = (int)hi_.dims[1]; t.w = (int)hi_.dims[2]; t.c = 1;
    t.x = (float *)GENMOD_MALLOC(nfloat * sizeof(float));
    if (!t.x) return gm__fail("idx: %s: out of memory for %lu images", img->path, (unsigned long)items);
    if (lbl) {
        t.y = (int *)GENMOD_MALLOC(items * sizeof(int));
        t.nclasses = num_classes;
        if (!t.y) { gm_dataset_free(&t); return gm__fail("idx: %s: out of memory", lbl->path); }
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
    if (!d || !images_path) return gm__fail("idx: NULL dataset or path");
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
    if (!d || !images) return gm__fail("idx: NULL dataset or image buffer");
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
    if (n < 0 || (size_t)n >= cap) return gm__fail("mnist: directory name too long: %s", dir);
    f = fopen(buf, "rb");
    if (f) { fclose(f); return 0; }
    n = snprintf(buf, cap, "%s/%s.gz", dir, name);
    if (n > 0 && (size_t)n < cap && (f = fopen(buf, "rb")) != NULL) {
        fclose(f);
        return gm__fail("mnist: %s/%s is missing but %s exists; decompress it first (gunzip)", dir, name, buf);
    }
    snprintf(buf, cap, "%s/%s", dir, name);
    return 0; /* the loader reports the missing file with its errno */
}

GMDEF int gm_mnist_load(gm_dataset *train, gm_dataset *test, const char *dir, int max_train, int max_test,
                        float lo, float hi) {
    char ip[4096], lp[4096];
    gm_dataset a;
    if (!train || !dir) return gm__fail("mnist: NULL dataset or directory");
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
    if (!path || !x) return gm__fail("idx: NULL path or data");
    if (n < 1 || h < 1 || w < 1 || (size_t)h * (size_t)w > SIZE_MAX / (size_t)n)
        return gm__fail("idx: %s: bad image count/size %d x %d x %d", path, n, h, w);
    if (!isfinite(lo) || !isfinite(hi) || !(hi > lo)) return gm__fail("idx: %s: bad range [%g, %g]", path, lo, hi);
    count = (size_t)n * (size_t)h * (size_t)w;
    for (i = 0; i < count; i++) /* check first: never leave a half-written temp file for bad data */
        if (!isfinite(x[i]))
            return gm__fail("idx: %s: image %lu has a non-finite pixel (%g)", path, (unsigned long)(i / ((size_t)h * w)), x[i]);
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
    if (!path || !y || n < 1) return gm__fail("idx: NULL path/labels or count %d < 1", n);
    for (i = 0; i < n; i++)
        if (y[i] < 0 || y[i] > 255) return gm__fail("idx: %s: label %d of item %d does not fit in a byte", path, y[i], i);
    if (gm__wopen(&f, "idx", path) != 0) return -1;
    dim = (uint32_t)n;
    gm__idx_put_header(&f, 1, &dim);
    for (i = 0; i < n; i++) {
        unsigned char b = (unsigned char)y[i];
        gm__wput(&f, &b, 1);
    }
    return gm__wcommit(&f);
}

/* ======================================================================== strict JSON */
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

/* ======================================================================== string builder */
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

/* ======================================================================== metadata */
GMDEF const char *gm_meta_get(const gm_meta *m, const char *key) {
    int i;
    if (!m || !key) return NULL;
    for (i = 0; i < m->n && i < GM_META_MAX; i++)
        if (strcmp(m->key[i], key) == 0) return m->value[i];
    return NULL;
}

GMDEF int gm_meta_set(gm_meta *m, const char *key, const char *value) {
    int i;
    if (!m || !key || !value) return gm__fail("meta: NULL argument");
    if (m->n < 0 || m->n > GM_META_MAX) return gm__fail("meta: corrupt count %d (zero-initialize a gm_meta)", m->n);
    if (strlen(key) >= GM_META_KEY_MAX) return gm__fail("meta: key '%.40s...' longer than %d bytes", key, GM_META_KEY_MAX - 1);
    if (strlen(value) >= GM_META_VALUE_MAX)
        return gm__fail("meta: value of '%s' longer than %d bytes", key, GM_META_VALUE_MAX - 1);
    if (strncmp(key, "optim.", 6) == 0) return gm__fail("meta: key '%s': the prefix 'optim.' is reserved", key);
    for (i = 0; i < m->n; i++)
        if (strcmp(m->key[i], key) == 0) break;
    if (i == GM_META_MAX) return gm__fail("meta: full (%d entries); cannot add '%s'", GM_META_MAX, key);
    if (i == m->n) { strcpy(m->key[i], key); m->n++; }
    strcpy(m->value[i], value);
    return 0;
}

GMDEF int gm_meta_setf(gm_meta *m, const char *key, const char *fmt, ...) {
    char v[GM_META_VALUE_MAX + 1];
    va_list ap;
    int n;
    if (!fmt) return gm__fail("meta: NULL format");
    va_start(ap, fmt);
    n = vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= GM_META_VALUE_MAX) return gm__fail("meta: value of '%s' longer than %d bytes", key ? key : "?", GM_META_VALUE_MAX - 1);
    return gm_meta_set(m, key, v);
}

/* Optimizer fields stored in __metadata__ as strings, described once for save and load. */
enum { GM__OF_FLOAT, GM__OF_LONG, GM__OF_KIND, GM__OF_SCHED };
typedef struct gm__optfield { const char *key; int type; size_t off; } gm__optfield;
#define GM__OFS(f) (offsetof(gm_optim, sched) + offsetof(gm_schedule, f))
static const gm__optfield gm__optfields[] = {
    {"optim.kind", GM__OF_KIND, offsetof(gm_optim, kind)},
    {"optim.step", GM__OF_LONG, offsetof(gm_optim, step)},
    {"optim.lr", GM__OF_FLOAT, offsetof(gm_optim, lr)},
    {"optim.beta1", GM__OF_FLOAT, offsetof(gm_optim, beta1)},
    {"optim.beta2", GM__OF_FLOAT, offsetof(gm_optim, beta2)},
    {"optim.eps", GM__OF_FLOAT, offsetof(gm_optim, eps)},
    {"optim.momentum", GM__OF_FLOAT, offsetof(gm_optim, momentum)},
    {"optim.alpha", GM__OF_FLOAT, offsetof(gm_optim, alpha)},
    {"optim.weight_decay", GM__OF_FLOAT, offsetof(gm_optim, weight_decay)},
    {"optim.clip_norm", GM__OF_FLOAT, offsetof(gm_optim, clip_norm)},
    {"optim.clip_value", GM__OF_FLOAT, offsetof(gm_optim, clip_value)},
    {"optim.sched.kind", GM__OF_SCHED, GM__OFS(kind)},
    {"optim.sched.warmup", GM__OF_LONG, GM__OFS(warmup)},
    {"optim.sched.step_size", GM__OF_LONG, GM__OFS(step_size)},
    {"optim.sched.gamma", GM__OF_FLOAT, GM__OFS(gamma)},
    {"optim.sched.total", GM__OF_LONG, GM__OFS(total)},
    {"optim.sched.min_lr", GM__OF_FLOAT, GM__OFS(min_lr)},
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

/* ======================================================================== safetensors save */
static int gm__st_reserved(const char *name) {
    return strcmp(name, "__metadata__") == 0 || strncmp(name, "optim.", 6) == 0;
}

/* Every name and metadata string must be writable as JSON and readable back unambiguously. */
static int gm__st_check_save(const char *path, const gm_params *p, const gm_optim *opt, const gm_meta *meta) {
    int i;
    for (i = 0; i < p->nviews; i++) {
        const char *nm = p->views[i].name;
        if (!memchr(nm, 0, GM_NAME_MAX)) return gm__fail("checkpoint: %s: view %d has an unterminated name", path, i);
        if (gm__st_reserved(nm)) return gm__fail("checkpoint: %s: parameter name '%s' is reserved", path, nm);
        if (!gm__utf8_valid(nm)) return gm__fail("checkpoint: %s: parameter name of view %d is not valid UTF-8", path, i);
        if (gm_params_find(p, nm) != i) return gm__fail("checkpoint: %s: parameter name '%s' is used twice", path, nm);
        if (p->views[i].offset > p->count || p->views[i].size > p->count - p->views[i].offset)
            return gm__fail("checkpoint: %s: view '%s' lies outside the parameter buffer", path, nm);
    }
    if (opt && (opt->m || opt->v) && opt->n != p->count)
        return gm__fail("checkpoint: %s: optimizer holds %lu floats but the model has %lu", path,
                        (unsigned long)opt->n, (unsigned long)p->count);
    if (meta) {
        if (meta->n < 0 || meta->n > GM_META_MAX) return gm__fail("checkpoint: %s: corrupt metadata count %d", path, meta->n);
        for (i = 0; i < meta->n; i++) {
            if (!memchr(meta->key[i], 0, GM_META_KEY_MAX) || !memchr(meta->value[i], 0, GM_META_VALUE_MAX))
                return gm__fail("checkpoint: %s: metadata entry %d is not NUL-terminated", path, i);
            if (strncmp(meta->key[i], "optim.", 6) == 0)
                return gm__fail("checkpoint: %s: metadata key '%s' uses the reserved prefix 'optim.'", path, meta->key[i]);
            if (!gm__utf8_valid(meta->key[i]) || !gm__utf8_valid(meta->value[i]))
                return gm__fail("checkpoint: %s: metadata entry '%s' is not valid UTF-8", path, meta->key[i]);
            if (gm_meta_get(meta, meta->key[i]) != meta->value[i])
                return gm__fail("checkpoint: %s: metadata key '%s' appears twice", path, meta->key[i]);
        }
    }
    if (opt)
        for (i = 0; i < GM__NOPTFIELDS; i++) {
            char v[64];
            if (gm__optfield_format(opt, &gm__optfields[i], v, sizeof v) != 0)
                return gm__fail("checkpoint: %s: optimizer field %s has an invalid value", path, gm__optfields[i].key);
        }
    return 0;
}

static void gm__st_put_tensor(gm__sb *b, const char *prefix, const gm_param_view *v, uint64_t *off) {
    int d;
    char name[GM_NAME_MAX + 16];
    snprintf(name, sizeof name, "%s%s", prefix, v->name);
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

/* The JSON header, padded with spaces to a multiple of 8 bytes. */
static int gm__st_header_build(gm__sb *b, const gm_params *p, const gm_optim *opt, const gm_meta *meta) {
    int i, first = 1;
    uint64_t off = 0;
    gm__sb_str(b, "{\"__metadata__\":{");
    for (i = 0; meta && i < meta->n; i++, first = 0) {
        if (!first) gm__sb_str(b, ",");
        gm__sb_jstr(b, meta->key[i]); gm__sb_str(b, ":"); gm__sb_jstr(b, meta->value[i]);
    }
    for (i = 0; opt && i < GM__NOPTFIELDS; i++, first = 0) {
        char v[64];
        gm__optfield_format(opt, &gm__optfields[i], v, sizeof v);
        if (!first) gm__sb_str(b, ",");
        gm__sb_jstr(b, gm__optfields[i].key); gm__sb_str(b, ":"); gm__sb_jstr(b, v);
    }
    gm__sb_str(b, "}");
    for (i = 0; i < p->nviews; i++) gm__st_put_tensor(b, "", &p->views[i], &off);
    for (i = 0; opt && i < p->nviews; i++) gm__st_put_tensor(b, "optim.m.", &p->views[i], &off);
    for (i = 0; opt && i < p->nviews; i++) gm__st_put_tensor(b, "optim.v.", &p->views[i], &off);
    gm__sb_str(b, "}");
    while (b->len % 8) gm__sb_str(b, " ");
    return b->oom ? -1 : 0;
}

GMDEF int gm_checkpoint_save(const char *path, const gm_params *p, const gm_optim *opt, const gm_meta *meta) {
    gm__sb hdr;
    gm__wfile w;
    unsigned char len8[8];
    int i;
    if (!path || !p) return gm__fail("checkpoint: NULL path or params");
    if (gm__st_check_save(path, p, opt, meta) != 0) return -1;
    memset(&hdr, 0, sizeof hdr);
    if (gm__st_header_build(&hdr, p, opt, meta) != 0) {
        GENMOD_FREE(hdr.s);
        return gm__fail("checkpoint: %s: out of memory building the header", path);
    }
    if (gm__wopen(&w, "checkpoint", path) != 0) { GENMOD_FREE(hdr.s); return -1; }
    for (i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hdr.len >> (8 * i));
    gm__wput(&w, len8, 8);
    gm__wput(&w, hdr.s, hdr.len);
    GENMOD_FREE(hdr.s);
    for (i = 0; i < p->nviews; i++) gm__wput_f32le(&w, p->data + p->views[i].offset, p->views[i].size);
    for (i = 0; opt && i < p->nviews; i++) gm__wput_f32le(&w, opt->m ? opt->m + p->views[i].offset : NULL, p->views[i].size);
    for (i = 0; opt && i < p->nviews; i++) gm__wput_f32le(&w, opt->v ? opt->v + p->views[i].offset : NULL, p->views[i].size);
    return gm__wcommit(&w);
}

/* ======================================================================== safetensors load */
#define GM__ST_NAME_MAX 160
#define GM__ST_MAX_DIMS 16
enum { GM__ST_WEIGHT, GM__ST_M, GM__ST_V, GM__ST_IGNORED };

typedef struct gm__st_entry {
    char name[GM__ST_NAME_MAX];
    int ndim;
    uint64_t shape[GM__ST_MAX_DIMS];
    uint64_t begin, end;
    int view, role;         /* matching model view and what it holds */
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
    if (len < 8) return gm__fail("checkpoint: %s: truncated: %lu bytes, too short for a safetensors file", st->path, (unsigned long)len);
    n = gm__le64(buf);
    if (n > (uint64_t)len - 8)
        return gm__fail("checkpoint: %s: header length %llu exceeds the file size (%lu bytes): truncated or not a "
                        "safetensors file", st->path, (unsigned long long)n, (unsigned long)len);
    if (n < 2) return gm__fail("checkpoint: %s: header length %llu is too small", st->path, (unsigned long long)n);
    if (gm__jparse(&st->j, (const char *)buf + 8, (size_t)n) != 0)
        return gm__fail("checkpoint: %s: bad JSON header: %s at byte %lu", st->path, st->j.err, (unsigned long)(8 + st->j.pos));
    if (st->j.t[0].type != GM__J_OBJ) return gm__fail("checkpoint: %s: header is not a JSON object", st->path);
    st->data = buf + 8 + n;
    st->dlen = (uint64_t)len - 8 - n;
    return 0;
}

/* The shape array: non-negative integers, product*4 bytes without overflow. */
static int gm__st_shape(gm__st *st, gm__st_entry *e, int k, uint64_t *bytes) {
    int i, c = st->j.t[k].count;
    if (st->j.t[k].type != GM__J_ARR) return gm__fail("checkpoint: %s: tensor '%s': shape is not an array", st->path, e->name);
    if (c > GM__ST_MAX_DIMS) return gm__fail("checkpoint: %s: tensor '%s': %d dimensions (max %d)", st->path, e->name, c, GM__ST_MAX_DIMS);
    e->ndim = c;
    *bytes = 4;
    for (i = 0, k++; i < c; i++, k = st->j.t[k].next) {
        if (gm__juint(&st->j, k, &e->shape[i]) != 0)
            return gm__fail("checkpoint: %s: tensor '%s': shape entry %d is not a non-negative integer", st->path, e->name, i);
        if (!gm__mul_u64(*bytes, e->shape[i], bytes))
            return gm__fail("checkpoint: %s: tensor '%s': shape size overflows", st->path, e->name);
    }
    return 0;
}

static int gm__st_offsets(gm__st *st, gm__st_entry *e, int k) {
    if (st->j.t[k].type != GM__J_ARR || st->j.t[k].count != 2 || gm__juint(&st->j, k + 1, &e->begin) != 0 ||
        gm__juint(&st->j, st->j.t[k + 1].next, &e->end) != 0)
        return gm__fail("checkpoint: %s: tensor '%s': data_offsets must be [begin, end] with non-negative integers",
                        st->path, e->name);
    return 0;
}

/* One tensor entry: exactly the keys dtype, shape, data_offsets, consistent with each other. */
static int gm__st_entry_parse(gm__st *st, gm__st_entry *e, int k) {
    int i, c, seen = 0;
    uint64_t bytes = 0;
    char key[32], dt[32];
    if (st->j.t[k].type != GM__J_OBJ) return gm__fail("checkpoint: %s: tensor '%s': entry is not an object", st->path, e->name);
    c = st->j.t[k].count;
    for (i = 0, k++; i < c; i++) {
        int v = st->j.t[k].next, bit;
        if (gm__jstr(&st->j, k, key, sizeof key) != 0) key[0] = 0;
        bit = strcmp(key, "dtype") == 0 ? 1 : strcmp(key, "shape") == 0 ? 2 : strcmp(key, "data_offsets") == 0 ? 4 : 0;
        if (!bit) return gm__fail("checkpoint: %s: tensor '%s': unknown field '%s'", st->path, e->name, key);
        if (seen & bit) return gm__fail("checkpoint: %s: tensor '%s': field '%s' appears twice", st->path, e->name, key);
        seen |= bit;
        if (bit == 1) {
            if (st->j.t[v].type != GM__J_STR || gm__jstr(&st->j, v, dt, sizeof dt) != 0)
                return gm__fail("checkpoint: %s: tensor '%s': dtype is not a short string", st->path, e->name);
            if (strcmp(dt, "F32") != 0)
                return gm__fail("checkpoint: %s: tensor '%s': dtype %s is not supported (only F32)", st->path, e->name, dt);
        } else if (bit == 2) {
            if (gm__st_shape(st, e, v, &bytes) != 0) return -1;
        } else if (gm__st_offsets(st, e, v) != 0) return -1;
        k = st->j.t[v].next;
    }
    if (seen != 7) return gm__fail("checkpoint: %s: tensor '%s': missing field '%s'", st->path, e->name,
                                   !(seen & 1) ? "dtype" : !(seen & 2) ? "shape" : "data_offsets");
    if (e->end < e->begin)
        return gm__fail("checkpoint: %s: tensor '%s': data_offsets [%llu,%llu] end before begin", st->path, e->name,
                        (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > st->dlen)
        return gm__fail("checkpoint: %s: tensor '%s': data_offsets [%llu,%llu] lie outside the data section (%llu bytes)",
                        st->path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)st->dlen);
    if (e->end - e->begin != bytes)
        return gm__fail("checkpoint: %s: tensor '%s': data_offsets span %llu bytes but its F32 shape needs %llu",
                        st->path, e->name, (unsigned long long)(e->end - e->begin), (unsigned long long)bytes);
    return 0;
}

/* All top-level entries into st->e; __metadata__ remembered for later. */
static int gm__st_collect(gm__st *st) {
    int i, k, c = st->j.t[0].count;
    st->meta_tok = -1;
    if ((size_t)c >= SIZE_MAX / sizeof(gm__st_entry)) return gm__fail("checkpoint: %s: too many header entries", st->path);
    st->e = (gm__st_entry *)GENMOD_MALLOC(((size_t)c + 1) * sizeof(gm__st_entry));
    if (!st->e) return gm__fail("checkpoint: %s: out of memory for %d header entries", st->path, c);
    for (i = 0, k = 1; i < c; i++) {
        int v = st->j.t[k].next;
        gm__st_entry *e = &st->e[st->ne];
        memset(e, 0, sizeof *e);
        if (gm__jstr(&st->j, k, e->name, sizeof e->name) != 0)
            return gm__fail("checkpoint: %s: a tensor name is longer than %d bytes or contains NUL", st->path, GM__ST_NAME_MAX - 1);
        if (strcmp(e->name, "__metadata__") == 0) {
            if (st->meta_tok >= 0) return gm__fail("checkpoint: %s: __metadata__ appears twice", st->path);
            if (st->j.t[v].type != GM__J_OBJ) return gm__fail("checkpoint: %s: __metadata__ is not an object", st->path);
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
            return gm__fail("checkpoint: %s: tensor '%s' appears twice", st->path, st->e[i].name);
    o = (const gm__st_entry **)GENMOD_MALLOC(((size_t)st->ne + 1) * sizeof *o);
    if (!o) return gm__fail("checkpoint: %s: out of memory", st->path);
    for (i = 0; i < st->ne; i++) o[i] = &st->e[i];
    if (st->ne > 1) qsort(o, (size_t)st->ne, sizeof *o, gm__st_cmp_off);
    for (i = 0; i < st->ne; i++) {
        if (o[i]->begin != at) {
            if (o[i]->begin < at)
                gm__fail("checkpoint: %s: tensors '%s' and '%s' have overlapping data_offsets", st->path,
                         o[i - 1]->name, o[i]->name);
            else
                gm__fail("checkpoint: %s: %llu unused bytes before tensor '%s' in the data section", st->path,
                         (unsigned long long)(o[i]->begin - at), o[i]->name);
            GENMOD_FREE(o);
            return -1;
        }
        at = o[i]->end;
    }
    GENMOD_FREE(o);
    if (at != st->dlen)
        return gm__fail("checkpoint: %s: %llu bytes after the last tensor in the data section (truncated header "
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

/* Pairs each tensor with a model view and role; counts what the model needs. */
static int gm__st_match(gm__st *st, const gm_params *p, const gm_optim *opt, int *have) {
    int i;
    for (i = 0; i < st->ne; i++) {
        gm__st_entry *e = &st->e[i];
        const char *nm = e->name;
        e->role = GM__ST_WEIGHT;
        if (strncmp(nm, "optim.m.", 8) == 0 || strncmp(nm, "optim.v.", 8) == 0) {
            if (!opt) { e->role = GM__ST_IGNORED; continue; }
            e->role = nm[6] == 'm' ? GM__ST_M : GM__ST_V;
            nm += 8;
        }
        e->view = gm_params_find(p, nm);
        if (e->view < 0)
            return gm__fail("checkpoint: %s: unexpected tensor '%s': the model has no parameter '%s'", st->path, e->name, nm);
        if (!gm__st_shape_eq(e, &p->views[e->view])) {
            char a[128], b[128];
            gm__shape_str(a, sizeof a, e->ndim, e->shape, NULL);
            gm__shape_str(b, sizeof b, p->views[e->view].ndim, NULL, p->views[e->view].shape);
            return gm__fail("checkpoint: %s: tensor '%s' has shape %s but the model expects %s", st->path, e->name, a, b);
        }
        have[e->view * 3 + e->role]++;
    }
    return 0;
}

static int gm__st_missing(gm__st *st, const gm_params *p, const gm_optim *opt, const int *have) {
    int i, any_opt = 0;
    for (i = 0; i < p->nviews; i++) {
        any_opt |= have[i * 3 + 1] | have[i * 3 + 2];
        if (!have[i * 3]) return gm__fail("checkpoint: %s: tensor '%s' is missing", st->path, p->views[i].name);
    }
    if (opt && !any_opt && p->nviews > 0)
        return gm__fail("checkpoint: %s: no optimizer state in this checkpoint (pass NULL as the optimizer to load "
                        "weights only)", st->path);
    for (i = 0; opt && i < p->nviews; i++) {
        if (!have[i * 3 + 1] || !have[i * 3 + 2])
            return gm__fail("checkpoint: %s: optimizer tensor 'optim.%c.%s' is missing", st->path,
                            have[i * 3 + 1] ? 'v' : 'm', p->views[i].name);
    }
    return 0;
}

/* __metadata__: string values only; "optim.*" keys into *o (all required when o), others into *m. */
static int gm__st_meta(gm__st *st, gm_optim *o, gm_meta *m) {
    int i, k, c, seen[GM__NOPTFIELDS];
    char key[GM__ST_NAME_MAX], val[GM_META_VALUE_MAX];
    memset(seen, 0, sizeof seen);
    c = st->meta_tok >= 0 ? st->j.t[st->meta_tok].count : 0;
    for (i = 0, k = st->meta_tok + 1; i < c; i++) {
        int v = st->j.t[k].next, f;
        if (gm__jstr(&st->j, k, key, sizeof key) != 0)
            return gm__fail("checkpoint: %s: a metadata key is longer than %d bytes or contains NUL", st->path, GM__ST_NAME_MAX - 1);
        if (st->j.t[v].type != GM__J_STR) return gm__fail("checkpoint: %s: metadata '%s' is not a string", st->path, key);
        if (gm__jstr(&st->j, v, val, sizeof val) != 0)
            return gm__fail("checkpoint: %s: metadata '%s': value longer than %d bytes or contains NUL", st->path, key, GM_META_VALUE_MAX - 1);
        k = st->j.t[v].next;
        if (strncmp(key, "optim.", 6) != 0) {
            if (!m) continue;
            if (strlen(key) >= GM_META_KEY_MAX)
                return gm__fail("checkpoint: %s: metadata key '%.40s...' is longer than %d bytes", st->path, key, GM_META_KEY_MAX - 1);
            if (gm_meta_get(m, key)) return gm__fail("checkpoint: %s: metadata key '%s' appears twice", st->path, key);
            if (m->n == GM_META_MAX) return gm__fail("checkpoint: %s: more than %d metadata entries", st->path, GM_META_MAX);
            strcpy(m->key[m->n], key); /* both fit: checked above and by the decode buffer size */
            strcpy(m->value[m->n], val);
            m->n++;
            continue;
        }
        if (!o) continue;
        for (f = 0; f < GM__NOPTFIELDS && strcmp(key, gm__optfields[f].key) != 0; f++) {}
        if (f == GM__NOPTFIELDS) return gm__fail("checkpoint: %s: unknown optimizer metadata '%s'", st->path, key);
        if (seen[f]++) return gm__fail("checkpoint: %s: metadata key '%s' appears twice", st->path, key);
        if (gm__optfield_parse(o, &gm__optfields[f], val) != 0)
            return gm__fail("checkpoint: %s: optimizer metadata '%s' has a bad value '%s'", st->path, key, val);
    }
    for (i = 0; o && i < GM__NOPTFIELDS; i++)
        if (!seen[i]) return gm__fail("checkpoint: %s: optimizer metadata '%s' is missing", st->path, gm__optfields[i].key);
    return 0;
}

/* F32 little-endian bytes into floats in host order. */
static void gm__st_copy(float *dst, const unsigned char *src, size_t n) {
    memcpy(dst, src, n * sizeof(float));
    if (!gm__host_is_le()) gm__swap4(dst, n);
}

/* Everything validated: allocate missing moments (the only step that can still fail), then copy. */
static int gm__st_apply(gm__st *st, gm_params *p, gm_optim *opt, const gm_optim *to, gm_meta *meta, const gm_meta *tm) {
    int i;
    float *m = NULL, *v = NULL;
    if (opt) {
        if ((opt->m || opt->v) && opt->n != p->count)
            return gm__fail("checkpoint: %s: optimizer buffers hold %lu floats but the model has %lu", st->path,
                            (unsigned long)opt->n, (unsigned long)p->count);
        m = opt->m ? opt->m : (float *)GENMOD_MALLOC(p->count * sizeof(float) + 1);
        v = opt->v ? opt->v : (float *)GENMOD_MALLOC(p->count * sizeof(float) + 1);
        if (!m || !v) {
            if (m != opt->m) GENMOD_FREE(m);
            if (v != opt->v) GENMOD_FREE(v);
            return gm__fail("checkpoint: %s: out of memory for optimizer state", st->path);
        }
        /* fresh buffers: zero the alignment gaps between views too, so nothing is left undefined */
        if (m != opt->m) memset(m, 0, p->count * sizeof(float));
        if (v != opt->v) memset(v, 0, p->count * sizeof(float));
    }
    for (i = 0; i < st->ne; i++) {
        const gm__st_entry *e = &st->e[i];
        const gm_param_view *pv;
        float *dst;
        if (e->role == GM__ST_IGNORED) continue;
        pv = &p->views[e->view];
        dst = e->role == GM__ST_WEIGHT ? p->data : e->role == GM__ST_M ? m : v;
        gm__st_copy(dst + pv->offset, st->data + e->begin, pv->size);
    }
    if (opt) {
        for (i = 0; i < GM__NOPTFIELDS; i++) { /* field by field: leaves m, v, n and anything else alone */
            const gm__optfield *f = &gm__optfields[i];
            memcpy((char *)opt + f->off, (const char *)to + f->off, f->type == GM__OF_FLOAT ? sizeof(float)
                   : f->type == GM__OF_LONG ? sizeof(long) : sizeof(int));
        }
        opt->m = m;
        opt->v = v;
        opt->n = p->count;
    }
    if (meta) *meta = *tm;
    return 0;
}

/* Validates a whole safetensors image against p, then loads it. `path` names it in messages. */
static int gm__st_load_mem(const unsigned char *buf, size_t len, const char *path, gm_params *p, gm_optim *opt,
                           gm_meta *meta) {
    gm__st st;
    gm_optim to;
    gm_meta *tm = NULL;
    int rc = -1, *have = NULL;
    memset(&st, 0, sizeof st);
    memset(&to, 0, sizeof to);
    st.path = path;
    if (meta && !(tm = (gm_meta *)GENMOD_MALLOC(sizeof(gm_meta)))) return gm__fail("checkpoint: %s: out of memory", path);
    if (tm) memset(tm, 0, sizeof *tm);
    have = (int *)GENMOD_MALLOC(((size_t)p->nviews * 3 + 1) * sizeof(int));
    if (!have) { gm__fail("checkpoint: %s: out of memory", path); goto done; }
    memset(have, 0, ((size_t)p->nviews * 3 + 1) * sizeof(int));
    if (gm__st_header(&st, buf, len) == 0 && gm__st_collect(&st) == 0 && gm__st_layout(&st) == 0 &&
        gm__st_match(&st, p, opt, have) == 0 && gm__st_missing(&st, p, opt, have) == 0 &&
        gm__st_meta(&st, opt ? &to : NULL, tm) == 0)
        rc = gm__st_apply(&st, p, opt, &to, meta, tm);
done:
    GENMOD_FREE(have);
    GENMOD_FREE(tm);
    GENMOD_FREE(st.e);
    GENMOD_FREE(st.j.t);
    return rc;
}

GMDEF int gm_checkpoint_load_mem(const void *buf, size_t len, gm_params *p, gm_optim *opt, gm_meta *meta) {
    if (!buf || !p) return gm__fail("checkpoint: NULL buffer or params");
    return gm__st_load_mem((const unsigned char *)buf, len, "<memory>", p, opt, meta);
}

GMDEF int gm_checkpoint_load(const char *path, gm_params *p, gm_optim *opt, gm_meta *meta) {
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc;
    if (!path || !p) return gm__fail("checkpoint: NULL path or params");
    if (gm__read_file("checkpoint", path, &buf, &len) != 0) return -1;
    rc = gm__st_load_mem(buf, len, path, p, opt, meta);
    GENMOD_FREE(buf);
    return rc;
}

/* ======================================================================== 2-D toy densities */
/* Each generator writes n points into xy (row-major pairs) and a label per point into lab
 * (never NULL here: gm_toy2d supplies scratch), using noise >= 0 already defaulted. */
typedef void (*gm__toy_fn)(int n, uint64_t *r, double noise, float *xy, int *lab);

/* Fisher-Yates over rows, so that balanced recipes (first half one class) come out mixed. */
static void gm__toy_shuffle(int n, uint64_t *r, float *xy, int *lab) {
    int i;
    for (i = n - 1; i > 0; i--) {
        int j = (int)gm__below(r, (uint64_t)i + 1), tl = lab[i];
        float tx = xy[2 * i], ty = xy[2 * i + 1];
        xy[2 * i] = xy[2 * j]; xy[2 * i + 1] = xy[2 * j + 1]; lab[i] = lab[j];
        xy[2 * j] = tx; xy[2 * j + 1] = ty; lab[j] = tl;
    }
}
static void gm__toy_noise(int n, uint64_t *r, double noise, float *xy) {
    int i;
    if (noise <= 0) return;
    for (i = 0; i < 2 * n; i++) xy[i] = (float)(xy[i] + noise * gm__normal(r));
}
/* k-th of m evenly spaced values in [0, end] (both ends included, like numpy linspace) */
static double gm__linspace(int k, int m, double end) { return m > 1 ? end * k / (m - 1) : 0.0; }

/* sklearn make_moons: outer (cos t, sin t), inner (1 - cos t, 0.5 - sin t), t evenly in [0, pi]. */
static void gm__toy_moons(int n, uint64_t *r, double noise, float *xy, int *lab) {
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
static void gm__toy_circles(int n, uint64_t *r, double noise, float *xy, int *lab) {
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
static void gm__toy_8gauss(int n, uint64_t *r, double noise, float *xy, int *lab) {
    int i;
    for (i = 0; i < n; i++) {
        int k = (int)gm__below(r, 8);
        double a = 2 * GM__PI * k / 8;
        xy[2 * i] = (float)(2.0 * cos(a) + noise * gm__normal(r));
        xy[2 * i + 1] = (float)(2.0 * sin(a) + noise * gm__normal(r));
        lab[i] = k;
    }
}
/* FFJORD checkerboard on [-4,4]^2: 8 filled cells of side 2; label = filled cell 0..7. */
static void gm__toy_checker(int n, uint64_t *r, double noise, float *xy, int *lab) {
    int i;
    for (i = 0; i < n; i++) {
        double x1 = gm__unif(r) * 4 - 2;
        int row = (int)gm__below(r, 2), col = (int)floor(x1) + 2; /* col 0..3 */
        double x2 = gm__unif(r) - 2.0 * row + (col & 1);
        xy[2 * i] = (float)(2 * x1);
        xy[2 * i + 1] = (float)(2 * x2);
        lab[i] = col * 2 + row;
    }
    gm__toy_noise(n, r, noise, xy);
}
/* FFJORD pinwheel: 5 arms; radial std 3*noise, tangential std noise (0.1), twist rate 0.25. */
static void gm__toy_pinwheel(int n, uint64_t *r, double noise, float *xy, int *lab) {
    int i;
    for (i = 0; i < n; i++) {
        int k = (int)gm__below(r, 5);
        double rad = 1.0 + 3 * noise * gm__normal(r), tan_ = noise * gm__normal(r);
        double a = 2 * GM__PI * k / 5 + 0.25 * exp(rad);
        xy[2 * i] = (float)(2 * (rad * cos(a) - tan_ * sin(a)));
        xy[2 * i + 1] = (float)(2 * (rad * sin(a) + tan_ * cos(a)));
        lab[i] = k;
    }
}
/* FFJORD 2spirals: t = sqrt(u) * 3 pi, arm (-t cos t, t sin t) + U[0,0.5) jitter, mirrored, /3. */
static void gm__toy_spirals(int n, uint64_t *r, double noise, float *xy, int *lab) {
    int i;
    for (i = 0; i < n; i++) {
        double t = sqrt(gm__unif(r)) * 3 * GM__PI, s = (i & 1) ? -1.0 : 1.0;
        double x = -cos(t) * t + gm__unif(r) * 0.5, y = sin(t) * t + gm__unif(r) * 0.5;
        xy[2 * i] = (float)(s * x / 3);
        xy[2 * i + 1] = (float)(s * y / 3);
        lab[i] = i & 1;
    }
    gm__toy_noise(n, r, noise, xy);
}
/* sklearn swiss roll (x, z) scaled by 1/5 as in FFJORD: t = 1.5 pi (1 + 2u), noise before scaling
 * (default 1.0, so std 0.2 in the output); label = quarter of the roll 0..3 (for colouring). */
static void gm__toy_swissroll(int n, uint64_t *r, double noise, float *xy, int *lab) {
    int i;
    for (i = 0; i < n; i++) {
        double u = gm__unif(r), t = 1.5 * GM__PI * (1 + 2 * u);
        xy[2 * i] = (float)((t * cos(t) + noise * gm__normal(r)) / 5);
        xy[2 * i + 1] = (float)((t * sin(t) + noise * gm__normal(r)) / 5);
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
    uint64_t r = seed;
    if (!name) return gm__fail("toy2d: NULL name (valid: %s)", gm_toy2d_names());
    for (i = 0; i < GM__NTOYS && strcmp(name, gm__toys[i].name) != 0; i++) {}
    if (i == GM__NTOYS) return gm__fail("toy2d: unknown dataset '%s' (valid: %s)", name, gm_toy2d_names());
    if (n < 1 || !xy) return gm__fail("toy2d: %s: need n >= 1 (got %d) and an output buffer", name, n);
    if (!isfinite(noise)) return gm__fail("toy2d: %s: noise is not finite", name);
    if (!lab && !(lab = (int *)GENMOD_MALLOC((size_t)n * sizeof(int))))
        return gm__fail("toy2d: %s: out of memory for %d points", name, n);
    gm__toys[i].fn(n, &r, noise < 0 ? gm__toys[i].default_noise : (double)noise, xy, lab);
    if (lab != labels) GENMOD_FREE(lab);
    return 0;
}

/* ======================================================================== dataset utilities */
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

GMDEF void gm_binarize(float *dst, const float *src, size_t count, uint64_t *rng) {
    size_t i;
    for (i = 0; i < count; i++) dst[i] = gm__unif(rng) < (double)src[i] ? 1.0f : 0.0f; /* p<=0 never, p>=1 always */
}
GMDEF void gm_dequantize(float *x, size_t count, uint64_t *rng) {
    size_t i;
    for (i = 0; i < count; i++) {
        double k = floor((double)x[i] * 255.0 + 0.5); /* recover the integer level k from k/255 */
        float v;
        if (k < 0) k = 0;
        if (k > 255) k = 255;
        v = (float)((k + gm__unif(rng)) / 256.0);
        x[i] = v < 1.0f ? v : 0.99999994f; /* float rounding must not reach 1 */
    }
}

static void gm__batcher_shuffle(gm_batcher *b) {
    int i;
    for (i = b->n - 1; i > 0; i--) {
        int j = (int)gm__below(&b->rng, (uint64_t)i + 1), t = b->perm[i];
        b->perm[i] = b->perm[j];
        b->perm[j] = t;
    }
}
GMDEF int gm_batcher_init(gm_batcher *b, int n, int batch, uint64_t seed, int drop_last) {
    int i;
    if (!b) return gm__fail("batcher: NULL");
    memset(b, 0, sizeof *b);
    if (n < 1 || batch < 1) return gm__fail("batcher: need n >= 1 and batch >= 1 (got n=%d batch=%d)", n, batch);
    if (drop_last && batch > n)
        return gm__fail("batcher: batch size %d exceeds the %d items and drop_last is set: no batch would ever come", batch, n);
    b->perm = (int *)GENMOD_MALLOC((size_t)n * sizeof(int));
    if (!b->perm) return gm__fail("batcher: out of memory for %d indices", n);
    for (i = 0; i < n; i++) b->perm[i] = i;
    b->n = n; b->batch = batch; b->drop_last = drop_last ? 1 : 0; b->rng = seed;
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
