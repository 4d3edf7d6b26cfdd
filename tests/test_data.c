/* test_data.c: tests of the data and checkpoint layer (IDX, toy densities, utilities, safetensors).
 * Build: gcc -O2 -std=c99 -Wall -Wextra -Wpedantic tests/test_data.c -o /tmp/td -lm
 * Run from the repository root (finds data/) or from tests/ (finds ../data/).
 * Interop helpers for tests/safetensors_check.py:  td --st-write FILE,  td --st-read FILE. */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#include "gm_test.h"
#ifdef GM__POSIX_IO
#include <sys/stat.h> /* mkdir, to block a temp file name */
#endif

/* ------------------------------------------------------------------ helpers */
static char tmpdir_[512];

static char made_[128][1024]; /* every scratch name handed out, removed at exit */
static int nmade_;
static const char *tpath(const char *name) { /* a file name in a per-run scratch area */
    static char buf[8][1024];
    static int k;
    int i;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/gmtd_%ld_%s", tmpdir_, gm__pid(), name);
    for (i = 0; i < nmade_ && strcmp(made_[i], buf[k]) != 0; i++) {}
    if (i == nmade_ && nmade_ < 128) strcpy(made_[nmade_++], buf[k]);
    return buf[k];
}
static void cleanup(void) {
    int i;
    for (i = 0; i < nmade_; i++) remove(made_[i]);
}
static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { printf("cannot write %s\n", path); return; }
    if (n) fwrite(b, 1, n, f);
    fclose(f);
}
static unsigned char *read_bytes(const char *path, size_t *n) {
    unsigned char *b = NULL;
    if (gm__read_file("test", path, &b, n) != 0) return NULL;
    return b;
}
static int has(const char *needle) { return strstr(gm_last_error(), needle) != NULL; }

/* An IDX file: magic, dims (big-endian), then `payload` bytes of value i*7 % 256 (or labels i % 10). */
static size_t make_idx(unsigned char *b, uint32_t magic, int ndim, const uint32_t *dims, size_t payload, int labels) {
    size_t i, n = 4 + 4 * (size_t)ndim;
    int d;
    gm__put_be32(b, magic);
    for (d = 0; d < ndim; d++) gm__put_be32(b + 4 + 4 * d, dims[d]);
    for (i = 0; i < payload; i++) b[n + i] = (unsigned char)(labels ? i % 10 : (i * 7) % 256);
    return n + payload;
}

/* ------------------------------------------------------------------ IDX */
GM_TEST(idx_roundtrip) {
    float x[5 * 4 * 3];
    int y[5] = {3, 0, 9, 1, 7}, i;
    gm_dataset d;
    for (i = 0; i < 60; i++) x[i] = (float)(-1.0 + 2.0 * ((i * 37) % 256) / 255.0);
    GM_CHECK(gm_idx_save_images(tpath("rt-img"), x, 5, 4, 3, -1, 1) == 0, "%s", gm_last_error());
    GM_CHECK(gm_idx_save_labels(tpath("rt-lbl"), y, 5) == 0, "%s", gm_last_error());
    GM_CHECK(gm_idx_load(&d, tpath("rt-img"), tpath("rt-lbl"), 0, -1, 1) == 0, "%s", gm_last_error());
    GM_CHECK(d.n == 5 && d.h == 4 && d.w == 3 && d.c == 1 && d.nclasses == 10, "dims %d %d %d %d", d.n, d.h, d.w, d.c);
    for (i = 0; d.x && i < 60; i++) GM_CHECK(fabsf(d.x[i] - x[i]) < 1e-6f, "pixel %d %g vs %g", i, d.x[i], x[i]);
    for (i = 0; d.y && i < 5; i++) GM_CHECK(d.y[i] == y[i], "label %d", i);
    gm_dataset_free(&d);
    GM_CHECK(d.x == NULL && d.n == 0, "free clears");
    /* [0,1] range and max_items */
    GM_CHECK(gm_idx_load(&d, tpath("rt-img"), NULL, 2, 0, 1) == 0, "%s", gm_last_error());
    GM_CHECK(d.n == 2 && d.y == NULL, "max_items: n=%d", d.n);
    for (i = 0; d.x && i < 24; i++) GM_CHECK(d.x[i] >= 0 && d.x[i] <= 1 && fabsf(d.x[i] - (x[i] + 1) / 2) < 1e-6f, "pixel %d", i);
    gm_dataset_free(&d);
    /* values outside the range are clamped; NaN is refused */
    x[0] = 5; x[1] = -5;
    GM_CHECK(gm_idx_save_images(tpath("rt-img2"), x, 5, 4, 3, -1, 1) == 0, "%s", gm_last_error());
    GM_CHECK(gm_idx_load(&d, tpath("rt-img2"), NULL, 0, 0, 1) == 0 && d.x[0] == 1.0f && d.x[1] == 0.0f, "clamp");
    gm_dataset_free(&d);
    x[3] = (float)sqrt(-1.0);
    GM_CHECK(gm_idx_save_images(tpath("rt-img3"), x, 5, 4, 3, -1, 1) == -1 && has("non-finite"), "%s", gm_last_error());
    y[2] = 300;
    GM_CHECK(gm_idx_save_labels(tpath("rt-lbl3"), y, 5) == -1 && has("byte"), "%s", gm_last_error());
    /* memory loader gives the same */
    {
        size_t n1, n2;
        unsigned char *bi = read_bytes(tpath("rt-img"), &n1), *bl = read_bytes(tpath("rt-lbl"), &n2);
        GM_CHECK(bi && bl && gm_idx_load_mem(&d, bi, n1, bl, n2, 0, -1, 1, 10) == 0 && d.n == 5 && d.y[2] == 9, "mem");
        gm_dataset_free(&d);
        GENMOD_FREE(bi);
        GENMOD_FREE(bl);
    }
}

/* Loads img (+lbl) expecting failure with `reason` in the message and *d untouched. */
static void expect_idx_fail(const char *img, const char *lbl, const char *reason, int line) {
    gm_dataset d;
    int rc;
    memset(&d, 0x5a, sizeof d);
    rc = gm_idx_load(&d, img, lbl, 0, 0, 1);
    GM_CHECK(rc == -1, "line %d: load succeeded, expected '%s'", line, reason);
    GM_CHECK(has(reason), "line %d: message '%s' lacks '%s'", line, gm_last_error(), reason);
    GM_CHECK(strstr(gm_last_error(), img) != NULL || (lbl && strstr(gm_last_error(), lbl) != NULL),
             "line %d: message '%s' does not name the file", line, gm_last_error());
    GM_CHECK(((unsigned char *)&d)[0] == 0x5a, "line %d: dataset modified on failure", line);
}
#define IDX_FAIL(img, lbl, reason) expect_idx_fail(img, lbl, reason, __LINE__)

GM_TEST(idx_corruptions) {
    static unsigned char b[4096];
    uint32_t d3[3] = {4, 5, 6}, d1[1] = {4};
    size_t n;
    const unsigned char gz[] = {0x1f, 0x8b, 0x08, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    n = make_idx(b, 0x803, 3, d3, 120, 0); write_bytes(tpath("good-img"), b, n);
    n = make_idx(b, 0x801, 1, d1, 4, 1);   write_bytes(tpath("good-lbl"), b, n);
    IDX_FAIL(tpath("no-such-file"), NULL, "cannot open");
    IDX_FAIL(tpath("good-img"), tpath("no-such-labels"), "cannot open");
    write_bytes(tpath("gz"), gz, sizeof gz);
    IDX_FAIL(tpath("gz"), NULL, "gzip-compressed; decompress it first (gunzip)");
    write_bytes(tpath("empty"), b, 0);
    IDX_FAIL(tpath("empty"), NULL, "empty");
    n = make_idx(b, 0x12345678, 3, d3, 120, 0); write_bytes(tpath("magic"), b, n);
    IDX_FAIL(tpath("magic"), NULL, "bad magic");
    n = make_idx(b, 0xD03, 3, d3, 120, 0); write_bytes(tpath("float"), b, n);
    IDX_FAIL(tpath("float"), NULL, "float32");
    IDX_FAIL(tpath("good-lbl"), NULL, "bad magic"); /* labels passed as images */
    IDX_FAIL(tpath("good-img"), tpath("good-img"), "swapped");
    n = make_idx(b, 0x803, 3, d3, 119, 0); write_bytes(tpath("trunc"), b, n);
    IDX_FAIL(tpath("trunc"), NULL, "truncated");
    write_bytes(tpath("trunc-hdr"), b, 10);
    IDX_FAIL(tpath("trunc-hdr"), NULL, "truncated");
    n = make_idx(b, 0x803, 3, d3, 125, 0); write_bytes(tpath("trail"), b, n);
    IDX_FAIL(tpath("trail"), NULL, "trailing bytes");
    { uint32_t big[3] = {0x7fffffff, 0x7fffffff, 0x7fffffff};
      n = make_idx(b, 0x803, 3, big, 16, 0); write_bytes(tpath("huge"), b, n);
      IDX_FAIL(tpath("huge"), NULL, "overflow"); }
    { uint32_t big[3] = {0xffffffffu, 28, 28};
      n = make_idx(b, 0x803, 3, big, 16, 0); write_bytes(tpath("neg"), b, n);
      IDX_FAIL(tpath("neg"), NULL, "dimension 0"); }
    { uint32_t big[3] = {0x10000, 0x10000, 0x10000}; /* 2^48 bytes: no overflow, but truncated */
      n = make_idx(b, 0x803, 3, big, 16, 0); write_bytes(tpath("big"), b, n);
      IDX_FAIL(tpath("big"), NULL, "truncated"); }
    { uint32_t z[3] = {4, 0, 6};
      n = make_idx(b, 0x803, 3, z, 0, 0); write_bytes(tpath("zero"), b, n);
      IDX_FAIL(tpath("zero"), NULL, "dimension 1"); }
    n = make_idx(b, 0x801, 1, d1, 4, 1); b[8 + 2] = 10; write_bytes(tpath("badlbl"), b, n);
    IDX_FAIL(tpath("good-img"), tpath("badlbl"), "label 10 of item 2 is out of range 0..9");
    { uint32_t d5[1] = {5};
      n = make_idx(b, 0x801, 1, d5, 5, 1); write_bytes(tpath("lbl5"), b, n);
      IDX_FAIL(tpath("good-img"), tpath("lbl5"), "count mismatch"); }
    IDX_FAIL(tmpdir_, NULL, "");  /* a directory: any clear message */
    { gm_dataset d; /* the valid pair still loads */
      GM_CHECK(gm_idx_load(&d, tpath("good-img"), tpath("good-lbl"), 0, 0, 1) == 0, "%s", gm_last_error());
      GM_CHECK(d.n == 4 && d.h == 5 && d.w == 6 && fabsf(d.x[1] - 7 / 255.0f) < 1e-7f && d.y[3] == 3, "values");
      gm_dataset_free(&d);
      GM_CHECK(gm_idx_load_ex(&d, tpath("good-img"), tpath("good-lbl"), 0, 0, 1, 3) == -1 && has("out of range 0..2"),
               "num_classes: %s", gm_last_error()); }
    { gm_dataset tr;
      GM_CHECK(gm_mnist_load(&tr, NULL, tpath("nodir"), 0, 0, 0, 1) == -1 && has("cannot open"), "%s", gm_last_error());
#ifdef GM__POSIX_IO
      { char gzp[1200]; /* gm_mnist_load points at a .gz sibling */
        mkdir(tpath("mn"), 0700);
        snprintf(gzp, sizeof gzp, "%s/train-images-idx3-ubyte.gz", tpath("mn"));
        write_bytes(gzp, gz, sizeof gz);
        GM_CHECK(gm_mnist_load(&tr, NULL, tpath("mn"), 0, 0, 0, 1) == -1 && has("decompress it first"), "%s", gm_last_error());
        remove(gzp);
        remove(tpath("mn")); }
#endif
    }
}

static const char *data_dir(void) {
    FILE *f = fopen("data/train-images-idx3-ubyte", "rb");
    if (f) { fclose(f); return "data"; }
    return "../data";
}

GM_TEST(bundled_mnist) {
    gm_dataset tr, te;
    static const int want_tr[10] = {1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978};
    int i, cnt[10] = {0};
    double sum = 0;
    float mn = 1, mx = 0;
    if (gm_mnist_load(&tr, &te, data_dir(), 0, 0, 0, 1) != 0) { GM_CHECK(0, "%s", gm_last_error()); return; }
    GM_CHECK(tr.n == 10000 && te.n == 2000 && tr.h == 28 && tr.w == 28 && te.h == 28, "sizes %d %d", tr.n, te.n);
    for (i = 0; i < tr.n * 784; i++) {
        sum += floor(tr.x[i] * 255.0 + 0.5);
        if (tr.x[i] < mn) mn = tr.x[i];
        if (tr.x[i] > mx) mx = tr.x[i];
    }
    GM_CHECK(mn == 0.0f && mx == 1.0f, "range %g..%g", mn, mx);
    GM_CHECK(sum == 262146600.0, "train pixel checksum %.0f", sum);
    for (i = 0, sum = 0; i < te.n * 784; i++) sum += floor(te.x[i] * 255.0 + 0.5);
    GM_CHECK(sum == 48335026.0, "test pixel checksum %.0f", sum);
    for (i = 0; i < tr.n; i++) if (tr.y[i] >= 0 && tr.y[i] < 10) cnt[tr.y[i]]++;
    for (i = 0; i < 10; i++) GM_CHECK(cnt[i] == want_tr[i], "class %d: %d", i, cnt[i]);
    GM_CHECK(tr.y[0] == 5 && te.y[0] == 7, "first labels %d %d", tr.y[0], te.y[0]);
    gm_dataset_free(&tr);
    gm_dataset_free(&te);
    GM_CHECK(gm_mnist_load(&tr, NULL, data_dir(), 100, 0, -1, 1) == 0 && tr.n == 100, "max_train");
    for (i = 0, mn = 1; i < tr.n * 784; i++) if (tr.x[i] < mn) mn = tr.x[i];
    GM_CHECK(mn == -1.0f, "[-1,1] min %g", mn);
    gm_dataset_free(&tr);
}

/* ------------------------------------------------------------------ toys and utilities */
GM_TEST(toy2d) {
    static const char *names[] = {"moons", "circles", "8gaussians", "checkerboard", "pinwheel", "2spirals", "swissroll"};
    static const int nlab[] = {2, 2, 8, 8, 5, 2, 4};
    enum { N = 3000 };
    static float a[2 * N], b[2 * N];
    static int la[N], lb[N];
    float mean[2], sd[2];
    int k, i;
    for (k = 0; k < (int)(sizeof names / sizeof names[0]); k++) {
        GM_CHECK(gm_toy2d(names[k], N, 42, -1, a, la) == 0, "toy %d: %s", k, gm_last_error());
        GM_CHECK(gm_toy2d(names[k], N, 42, -1, b, lb) == 0, "%s", names[k]);
        GM_CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(la, lb, sizeof la) == 0, "%s: not deterministic", names[k]);
        GM_CHECK(gm_toy2d(names[k], N, 43, -1, b, NULL) == 0 && memcmp(a, b, sizeof a) != 0, "%s: seed ignored", names[k]);
        for (i = 0; i < 2 * N; i++) if (!isfinite(a[i]) || fabsf(a[i]) > 20) break;
        GM_CHECK(i == 2 * N, "%s: value %d = %g", names[k], i, a[i < 2 * N ? i : 0]);
        for (i = 0; i < N; i++) if (la[i] < 0 || la[i] >= nlab[k]) break;
        GM_CHECK(i == N, "%s: label out of range", names[k]);
        GM_CHECK(strstr(gm_toy2d_names(), names[k]) != NULL, "%s not listed", names[k]);
    }
    /* moons: balanced halves, standardized to mean 0 / std 1 */
    GM_CHECK(gm_toy2d("moons", N, 7, 0.05f, a, la) == 0, "moons");
    for (i = 0, k = 0; i < N; i++) k += la[i];
    GM_CHECK(k == N / 2, "moons inner count %d", k);
    gm_standardize_fit(a, N, 2, mean, sd);
    GM_CHECK(fabsf(mean[0] - 0.5f) < 0.05f && fabsf(mean[1] - 0.25f) < 0.05f, "moons raw mean %g %g", mean[0], mean[1]);
    gm_standardize_apply(a, N, 2, mean, sd);
    gm_standardize_fit(a, N, 2, b, b + 2);
    GM_CHECK_CLOSE(b[0], 0.0, 1e-5); GM_CHECK_CLOSE(b[1], 0.0, 1e-5);
    GM_CHECK_CLOSE(b[2], 1.0, 1e-5); GM_CHECK_CLOSE(b[3], 1.0, 1e-5);
    gm_standardize_undo(a, N, 2, mean, sd);
    GM_CHECK(gm_toy2d("moons", N, 7, 0.05f, b, NULL) == 0, "moons");
    for (i = 0; i < 2 * N; i++) if (fabsf(a[i] - b[i]) > 1e-5f) break;
    GM_CHECK(i == 2 * N, "standardize undo differs at %d", i);
    /* noiseless moons lie exactly on the two arcs */
    GM_CHECK(gm_toy2d("moons", 101, 1, 0, a, la) == 0, "moons");
    for (i = 0; i < 101; i++) {
        double cx = la[i] ? 1.0 : 0.0, cy = la[i] ? 0.5 : 0.0;
        GM_CHECK_CLOSE(hypot(a[2 * i] - cx, a[2 * i + 1] - cy), 1.0, 1e-6);
    }
    /* 8 gaussians: every point within 5 std of its centre */
    GM_CHECK(gm_toy2d("8gaussians", N, 3, -1, a, la) == 0, "8g");
    for (i = 0; i < N; i++) {
        double ang = 2 * GM__PI * la[i] / 8;
        if (hypot(a[2 * i] - 2 * cos(ang), a[2 * i + 1] - 2 * sin(ang)) > 0.02 * 6) break;
    }
    GM_CHECK(i == N, "8gaussians point %d off its centre", i);
    GM_CHECK(gm_toy2d("banana", 10, 1, -1, a, NULL) == -1 && has("unknown") && has("moons") && has("swissroll"),
             "%s", gm_last_error());
    GM_CHECK(gm_toy2d("moons", 0, 1, -1, a, NULL) == -1, "n=0 accepted");
}

GM_TEST(utilities) {
    static float x[10000], y[10000];
    gm_rng r, r2;
    int i;
    double s = 0;
    gm_rng_seed(&r, 5);
    gm_rng_seed(&r2, 5);
    for (i = 0; i < 10000; i++) x[i] = 0.3f;
    gm_binarize(y, x, 10000, &r);
    for (i = 0; i < 10000; i++) { GM_CHECK(y[i] == 0 || y[i] == 1, "binary"); s += y[i]; }
    GM_CHECK(fabs(s / 10000 - 0.3) < 0.02, "bernoulli mean %g", s / 10000);
    gm_binarize(x, x, 10000, &r2); /* in place, same seed: same draws */
    GM_CHECK(memcmp(x, y, sizeof x) == 0, "binarize not deterministic");
    gm_binarize(x, y, 10000, &r); /* state advanced: 0/1 inputs reproduce exactly */
    GM_CHECK(memcmp(x, y, sizeof x) == 0, "p in {0,1} must be exact");
    for (i = 0; i < 10000; i++) x[i] = (float)((i % 256) / 255.0);
    gm_dequantize(x, 10000, &r);
    for (i = 0; i < 10000; i++)
        if (!(x[i] >= (i % 256) / 256.0f && x[i] < (i % 256 + 1) / 256.0f + 1e-7f && x[i] < 1.0f)) break;
    GM_CHECK(i == 10000, "dequantized value %d = %g out of its bin", i, x[i < 10000 ? i : 0]);
    {   /* gather */
        gm_dataset d;
        float xb[2 * 3];
        int yb[2], idx[2] = {2, 0}, yy[3] = {7, 8, 9};
        float xx[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
        memset(&d, 0, sizeof d);
        d.n = 3; d.c = 1; d.h = 1; d.w = 3; d.x = xx; d.y = yy;
        gm_dataset_gather(&d, idx, 2, xb, yb);
        GM_CHECK(xb[0] == 6 && xb[2] == 8 && xb[3] == 0 && yb[0] == 9 && yb[1] == 7, "gather");
    }
}

GM_TEST(batcher) {
    gm_batcher b, c;
    const int *idx;
    int seen[10], order[3][10], e, k, i, pos, sizes[8], nb;
    GM_CHECK(gm_batcher_init(&b, 10, 3, 99, 0) == 0, "%s", gm_last_error());
    for (e = 0; e < 3; e++) {
        memset(seen, 0, sizeof seen);
        pos = 0; nb = 0;
        while ((k = gm_batcher_next(&b, &idx)) > 0) {
            sizes[nb++] = k;
            for (i = 0; i < k; i++) { seen[idx[i]]++; order[e][pos++] = idx[i]; }
        }
        GM_CHECK(pos == 10 && nb == 4 && sizes[0] == 3 && sizes[3] == 1, "epoch %d: %d items %d batches", e, pos, nb);
        for (i = 0; i < 10; i++) GM_CHECK(seen[i] == 1, "epoch %d: index %d seen %d times", e, i, seen[i]);
    }
    GM_CHECK(b.epoch == 3, "epoch counter %ld", b.epoch);
    GM_CHECK(memcmp(order[0], order[1], sizeof order[0]) != 0 && memcmp(order[1], order[2], sizeof order[0]) != 0,
             "epochs not reshuffled");
    GM_CHECK(gm_batcher_init(&c, 10, 3, 99, 0) == 0, "init");
    for (pos = 0; (k = gm_batcher_next(&c, &idx)) > 0; pos += k) GM_CHECK(memcmp(idx, order[0] + pos, k * sizeof(int)) == 0, "seed");
    gm_batcher_free(&c);
    GM_CHECK(gm_batcher_init(&c, 10, 3, 100, 0) == 0, "init");
    GM_CHECK(gm_batcher_next(&c, &idx) == 3 && memcmp(idx, order[0], 3 * sizeof(int)) != 0, "other seed, same order");
    gm_batcher_free(&c);
    GM_CHECK(gm_batcher_init(&c, 10, 3, 1, 1) == 0, "init");
    for (nb = 0; (k = gm_batcher_next(&c, &idx)) > 0; nb++) GM_CHECK(k == 3, "drop_last batch of %d", k);
    GM_CHECK(nb == 3, "drop_last: %d batches", nb);
    gm_batcher_free(&c);
    GM_CHECK(gm_batcher_init(&c, 2, 3, 1, 1) == -1 && has("drop_last"), "%s", gm_last_error());
    GM_CHECK(gm_batcher_init(&c, 0, 3, 1, 0) == -1, "n=0");
    gm_batcher_free(&b);
}

/* ------------------------------------------------------------------ checkpoints */
/* A model with three views, deterministic values from `seed`. */
static void make_model(gm_params *p, float seed, int swap_shape) {
    int s1[2] = {3, 4}, s1b[2] = {4, 3}, s2[1] = {4}, s3[3] = {2, 1, 3};
    size_t i;
    memset(p, 0, sizeof *p);
    gm_params_add(p, "enc.weight", 2, swap_shape ? s1b : s1);
    gm_params_add(p, "enc.bias", 1, s2);
    gm_params_add(p, "dec.w", 3, s3);
    for (i = 0; i < p->count; i++) p->data[i] = seed == 0 ? 0.0f : (float)sin(seed * (double)(i + 1)) * 3.0f;
}
static void make_optim(gm_optim *o, const gm_params *p, int with_moments) {
    size_t i;
    memset(o, 0, sizeof *o);
    o->kind = GM_ADAMW; o->lr = 3e-4f; o->beta1 = 0.9f; o->beta2 = 0.999f; o->eps = 1e-8f; o->weight_decay = 0.01f;
    o->clip_norm = 1.0f; o->momentum = 0.5f; o->alpha = 0.99f; o->clip_value = 0.0f; o->step = 1234;
    o->sched.kind = GM_LR_COSINE; o->sched.warmup = 100; o->sched.total = 5000; o->sched.min_lr = 1e-6f;
    o->sched.gamma = 0.1f; o->sched.step_size = 7;
    if (!with_moments) return;
    o->n = p->count;
    o->m = (float *)malloc(p->count * sizeof(float));
    o->v = (float *)malloc(p->count * sizeof(float));
    for (i = 0; i < p->count; i++) { o->m[i] = (float)cos((double)i) * 1e-3f; o->v[i] = (float)(i * i) * 1e-7f + 1e-30f; }
}
static void free_optim(gm_optim *o) { free(o->m); free(o->v); o->m = o->v = NULL; }
/* x and y hold the same values in every view of p (gaps between views are padding) */
static int views_equal(const gm_params *p, const float *x, const float *y) {
    int i;
    for (i = 0; i < p->nviews; i++)
        if (memcmp(x + p->views[i].offset, y + p->views[i].offset, p->views[i].size * sizeof(float)) != 0) return 0;
    return 1;
}

GM_TEST(checkpoint_roundtrip) {
    gm_params a, b;
    gm_optim oa, ob;
    gm_meta ma, mb;
    size_t n;
    unsigned char *raw;
    make_model(&a, 1.7f, 0);
    make_optim(&oa, &a, 1);
    memset(&ma, 0, sizeof ma);
    GM_CHECK(gm_meta_set(&ma, "model", "vae") == 0 && gm_meta_setf(&ma, "hidden", "%d,%d", 512, 256) == 0, "meta set");
    GM_CHECK(gm_meta_set(&ma, "note", "quote \" backslash \\ tab \t newline \n utf8 \xc3\xa9") == 0, "meta set");
    GM_CHECK(gm_meta_set(&ma, "model", "vae2") == 0 && ma.n == 3 && strcmp(gm_meta_get(&ma, "model"), "vae2") == 0, "replace");
    GM_CHECK(gm_meta_set(&ma, "optim.lr", "1") == -1 && has("reserved"), "reserved prefix");
    GM_CHECK(gm_checkpoint_save(tpath("ck.safetensors"), &a, &oa, &ma) == 0, "%s", gm_last_error());
    raw = read_bytes(tpath("ck.safetensors"), &n);
    GM_CHECK(raw && n > 8 && gm__le64(raw) % 8 == 0 && raw[8] == '{', "header padded to 8");
    GENMOD_FREE(raw);
    {
        char tmp[1100];
        FILE *f;
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", tpath("ck.safetensors"), gm__pid());
        f = fopen(tmp, "rb");
        GM_CHECK(!f, "temp file %s left behind", tmp);
        if (f) fclose(f);
    }
    make_model(&b, 0, 0);
    memset(&ob, 0, sizeof ob);
    memset(&mb, 0, sizeof mb);
    GM_CHECK(gm_checkpoint_load(tpath("ck.safetensors"), &b, &ob, &mb) == 0, "%s", gm_last_error());
    GM_CHECK(views_equal(&a, a.data, b.data), "weights differ");
    GM_CHECK(ob.m && ob.v && ob.n == a.count, "moments allocated");
    GM_CHECK(ob.m && views_equal(&a, oa.m, ob.m), "m differs");
    GM_CHECK(ob.v && views_equal(&a, oa.v, ob.v), "v differs");
    GM_CHECK(ob.kind == GM_ADAMW && ob.step == 1234 && ob.lr == oa.lr && ob.eps == oa.eps && ob.beta2 == oa.beta2 &&
             ob.weight_decay == oa.weight_decay && ob.clip_norm == 1.0f && ob.momentum == 0.5f && ob.alpha == oa.alpha,
             "hyperparameters");
    GM_CHECK(ob.sched.kind == GM_LR_COSINE && ob.sched.warmup == 100 && ob.sched.total == 5000 &&
             ob.sched.min_lr == oa.sched.min_lr && ob.sched.gamma == oa.sched.gamma && ob.sched.step_size == 7, "schedule");
    GM_CHECK(mb.n == 3 && strcmp(gm_meta_get(&mb, "hidden"), "512,256") == 0 && strcmp(gm_meta_get(&mb, "note"), ma.value[2]) == 0,
             "metadata");
    GM_CHECK(gm_meta_get(&mb, "optim.lr") == NULL, "optimizer keys leak into user metadata");
    /* weights only: optimizer tensors ignored without opt */
    gm_params_free(&b);
    make_model(&b, 0, 0);
    GM_CHECK(gm_checkpoint_load(tpath("ck.safetensors"), &b, NULL, NULL) == 0, "%s", gm_last_error());
    GM_CHECK(views_equal(&a, a.data, b.data), "weights differ (no opt)");
    /* a checkpoint without optimizer state cannot fill an optimizer */
    GM_CHECK(gm_checkpoint_save(tpath("ck-w.safetensors"), &a, NULL, NULL) == 0, "%s", gm_last_error());
    free_optim(&ob);
    memset(&ob, 0, sizeof ob);
    GM_CHECK(gm_checkpoint_load(tpath("ck-w.safetensors"), &b, &ob, NULL) == -1 && has("no optimizer state") && !ob.m,
             "%s", gm_last_error());
    /* optimizer with moments never allocated saves zeros */
    {
        gm_optim oz;
        size_t i;
        make_optim(&oz, &a, 0);
        GM_CHECK(gm_checkpoint_save(tpath("ck-z.safetensors"), &a, &oz, NULL) == 0, "%s", gm_last_error());
        GM_CHECK(gm_checkpoint_load(tpath("ck-z.safetensors"), &b, &ob, NULL) == 0, "%s", gm_last_error());
        for (i = 0; ob.m && i < a.count; i++) GM_CHECK(ob.m[i] == 0 && ob.v[i] == 0, "zero moments");
        free_optim(&ob);
    }
    gm_params_free(&a);
    gm_params_free(&b);
    free_optim(&oa);
}

/* Checks that loading buf fails, mentions `reason`, and leaves model/opt/meta untouched. */
static void expect_st_fail(const unsigned char *buf, size_t len, gm_params *p, int with_opt, const char *reason, int line) {
    gm_optim o;
    gm_meta m;
    size_t i;
    int rc;
    for (i = 0; i < p->count; i++) p->data[i] = 42.0f;
    memset(&o, 0, sizeof o);
    o.lr = 7.0f;
    memset(&m, 0, sizeof m);
    rc = gm_checkpoint_load_mem(buf, len, p, with_opt ? &o : NULL, &m);
    GM_CHECK(rc == -1, "line %d: accepted, expected '%s'", line, reason);
    GM_CHECK(has(reason) && gm_last_error()[0], "line %d: message '%s' lacks '%s'", line, gm_last_error(), reason);
    for (i = 0; i < p->count; i++) if (p->data[i] != 42.0f) break;
    GM_CHECK(i == p->count, "line %d: params modified on failure", line);
    GM_CHECK(o.m == NULL && o.lr == 7.0f && m.n == 0, "line %d: optimizer/meta modified on failure", line);
}
#define ST_FAIL(buf, len, p, reason) expect_st_fail(buf, len, p, 1, reason, __LINE__)   /* with an optimizer */
#define ST_FAILW(buf, len, p, reason) expect_st_fail(buf, len, p, 0, reason, __LINE__)  /* weights only */

/* A safetensors image from a header text and `dlen` data bytes (header not padded: tests tolerance). */
static size_t make_st(unsigned char *out, const char *json, size_t dlen) {
    size_t n = strlen(json), i;
    for (i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(out + 8, json, n);
    for (i = 0; i < dlen; i++) out[8 + n + i] = (unsigned char)(i * 13);
    return 8 + n + dlen;
}

GM_TEST(checkpoint_validation) {
    gm_params p, q;
    gm_optim o;
    unsigned char *good, *buf;
    size_t n, i, len;
    static unsigned char b[8192];
    int sa[1] = {2}, sb[2] = {1, 2}, rejected = 0;
    make_model(&p, 2.5f, 0);
    make_optim(&o, &p, 1);
    GM_CHECK(gm_checkpoint_save(tpath("v.safetensors"), &p, &o, NULL) == 0, "%s", gm_last_error());
    good = read_bytes(tpath("v.safetensors"), &n);
    if (!good) { GM_CHECK(0, "no file"); return; }
    buf = (unsigned char *)malloc(n);
    /* every truncation */
    for (len = 0; len < n; len++) ST_FAIL(good, len, &p, "");
    { /* every header byte flipped (xor 0xff): never valid JSON/UTF-8 or consistent sizes */
        size_t hl = (size_t)gm__le64(good) + 8;
        for (i = 0; i < hl; i++) {
            memcpy(buf, good, n);
            buf[i] ^= 0xff;
            ST_FAIL(buf, n, &p, "");
        }
        /* flipped data bytes cannot be detected (the format has no checksum) but must load safely */
        for (i = hl; i < n; i += 7) {
            memcpy(buf, good, n);
            buf[i] ^= 0xff;
            if (gm_checkpoint_load_mem(buf, n, &p, NULL, NULL) != 0) rejected++;
        }
        GM_CHECK(rejected == 0, "data flips rejected: %d", rejected);
    }
    /* wrong shape: both shapes named */
    make_model(&q, 1, 1);
    ST_FAIL(good, n, &q, "tensor 'enc.weight' has shape [3,4] but the model expects [4,3]");
    gm_params_free(&q);
    /* wrong dtype */
    memcpy(buf, good, n);
    { char *s = strstr((char *)buf + 8, "\"F32\""); if (s) memcpy(s, "\"F16\"", 5); }
    ST_FAIL(buf, n, &p, "dtype F16 is not supported");
    /* huge header length */
    memcpy(buf, good, n);
    buf[7] = 0x80;
    ST_FAIL(buf, n, &p, "exceeds the file size");
    /* extra bytes after the data */
    { unsigned char *big = (unsigned char *)malloc(n + 4);
      memcpy(big, good, n); memset(big + n, 0, 4);
      ST_FAIL(big, n + 4, &p, "after the last tensor");
      free(big); }
    free(buf);
    GENMOD_FREE(good);
    gm_params_free(&p);
    free_optim(&o);

    /* hand-made headers against a small model {a:[2], b:[1,2]} */
    memset(&q, 0, sizeof q);
    gm_params_add(&q, "a", 1, sa);
    gm_params_add(&q, "b", 2, sb);
#define AOK "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"
#define BOK "\"b\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,16]}"
    len = make_st(b, "{" AOK "," BOK "}", 16);
    GM_CHECK(gm_checkpoint_load_mem(b, len, &q, NULL, NULL) == 0, "baseline: %s", gm_last_error());
    GM_CHECK((memcmp(q.data + q.views[0].offset, b + len - 16, 8) == 0 &&
              memcmp(q.data + q.views[1].offset, b + len - 8, 8) == 0) || !gm__host_is_le(), "baseline data");
    len = make_st(b, "{\"b\":{\"shape\":[1,2],\"data_offsets\":[0,8],\"dtype\":\"F32\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                     "\"data_offsets\":[8,16]}, \"__metadata__\":{\"k\":\"v\"}}  \n", 16);
    GM_CHECK(gm_checkpoint_load_mem(b, len, &q, NULL, NULL) == 0, "reordered: %s", gm_last_error());
    len = make_st(b, "{" AOK "," BOK ",\"optim.m.a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 24);
    GM_CHECK(gm_checkpoint_load_mem(b, len, &q, NULL, NULL) == 0, "optimizer tensors ignored without opt: %s", gm_last_error());
    ST_FAIL(b, len, &q, "optimizer tensor 'optim.v.a' is missing");
    len = make_st(b, "{" AOK ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[4,12]}}", 12);
    ST_FAILW(b, len, &q, "overlapping");
    len = make_st(b, "{" AOK ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[12,20]}}", 20);
    ST_FAILW(b, len, &q, "unused bytes before tensor 'b'");
    len = make_st(b, "{" AOK "," BOK "}", 12);
    ST_FAILW(b, len, &q, "outside the data section");
    len = make_st(b, "{" AOK ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[16,8]}}", 16);
    ST_FAILW(b, len, &q, "end before begin");
    len = make_st(b, "{" AOK ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,20]}}", 20);
    ST_FAILW(b, len, &q, "span 12 bytes but its F32 shape needs 8");
    len = make_st(b, "{" AOK ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,18446744073709551615]}}", 16);
    ST_FAILW(b, len, &q, "outside");
    len = make_st(b, "{" AOK ",\"b\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[8,16]}}", 16);
    ST_FAILW(b, len, &q, "overflow");
    len = make_st(b, "{" AOK ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,99999999999999999999]}}", 16);
    ST_FAILW(b, len, &q, "data_offsets must be");
    len = make_st(b, "{" AOK "}", 8);
    ST_FAILW(b, len, &q, "tensor 'b' is missing");
    len = make_st(b, "{" AOK "," BOK ",\"c\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[16,20]}}", 20);
    ST_FAILW(b, len, &q, "unexpected tensor 'c'");
    len = make_st(b, "{" AOK "," BOK ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 24);
    ST_FAILW(b, len, &q, "appears twice");
    len = make_st(b, "{" AOK ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,16],\"x\":1}}", 16);
    ST_FAILW(b, len, &q, "unknown field 'x'");
    len = make_st(b, "{" AOK ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,2]}}", 16);
    ST_FAILW(b, len, &q, "missing field 'data_offsets'");
    len = make_st(b, "{" AOK ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,-2],\"data_offsets\":[8,16]}}", 16);
    ST_FAILW(b, len, &q, "shape entry 1");
    len = make_st(b, "{" AOK ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,2.0],\"data_offsets\":[8,16]}}", 16);
    ST_FAILW(b, len, &q, "shape entry 1");
    len = make_st(b, "{" AOK "," BOK ",\"__metadata__\":{\"k\":1}}", 16);
    ST_FAILW(b, len, &q, "metadata 'k' is not a string");
    len = make_st(b, "{" AOK "," BOK ",\"__metadata__\":{\"optim.lr\":\"x\"}}", 16);
    GM_CHECK(gm_checkpoint_load_mem(b, len, &q, NULL, NULL) == 0, "optim metadata ignored without opt: %s", gm_last_error());
    /* bad JSON of many kinds */
    {
        static const char *bad[] = {
            "{" AOK "," BOK ",}", "{" AOK "," BOK "", "{'a':1}", "{" AOK "," BOK "} x", "[]", "{\"a\" " AOK "}",
            "{" AOK "," BOK ",\"__metadata__\":{\"k\":\"\\x\"}}", "{" AOK "," BOK ",\"__metadata__\":{\"k\":\"\\ud800\"}}",
            "{" AOK "," BOK ",\"__metadata__\":{\"k\":\"a\nb\"}}", "{" AOK "," BOK ",\"__metadata__\":{\"k\":\"\xc3\x28\"}}",
            "{" AOK "," BOK ",\"__metadata__\":{\"k\":01}}", "{" AOK "," BOK ",\"__metadata__\":{\"k\":NaN}}",
            "{" AOK "," BOK ",\"__metadata__\":{\"k\":tru}}", "{" AOK "," BOK ",\"__metadata__\":{\"k\":\"\\u00zz\"}}",
            "{" AOK "," BOK ",\"__metadata__\":{\"k\":\"\\u0000\"}}", "{" AOK "," BOK ",\"__metadata__\":{\"k\":\"unterminated}}",
            "{" AOK "," BOK ",\"__metadata__\":{\"k\":-}}", "{" AOK "," BOK ",\"__metadata__\":{\"k\":1.}}",
            "{" AOK "," BOK ",\"__metadata__\":{\"k\":\"\xed\xa0\x80\"}}", "{" AOK "," BOK ",\"__metadata__\":{\"k\":\"\xc0\xaf\"}}",
            "{" AOK "," BOK ",\"__metadata__\":[]}", "{" AOK "," BOK ",\"__metadata__\":{},\"__metadata__\":{}}",
        };
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            len = make_st(b, bad[i], 16);
            ST_FAILW(b, len, &q, "");
        }
        /* nesting depth: 40 levels of arrays in metadata */
        strcpy((char *)b + 4000, "{" AOK "," BOK ",\"__metadata__\":{\"k\":");
        for (i = 0; i < 40; i++) strcat((char *)b + 4000, "[");
        for (i = 0; i < 40; i++) strcat((char *)b + 4000, "]");
        strcat((char *)b + 4000, "}}");
        len = make_st(b, (char *)b + 4000, 16);
        ST_FAILW(b, len, &q, "nested too deeply");
        len = make_st(b, "{" AOK "," BOK ",\"__metadata__\":{\"k\":\"v\\u00e9\\ud83d\\ude00\\n\"}}", 16);
        {
            gm_meta m;
            memset(&m, 0, sizeof m);
            GM_CHECK(gm_checkpoint_load_mem(b, len, &q, NULL, &m) == 0 && m.n == 1 &&
                     strcmp(m.value[0], "v\xc3\xa9\xf0\x9f\x98\x80\n") == 0, "escapes decoded: %s", gm_last_error());
        }
    }
    len = make_st(b, "{}", 0);
    ST_FAILW(b, len, &q, "tensor 'a' is missing");
    gm_params_free(&q);
}

GM_TEST(checkpoint_save_failures) {
    gm_params p, q;
    size_t n1, n2;
    unsigned char *before, *after;
    char dir[1100];
    make_model(&p, 1.0f, 0);
    GM_CHECK(gm_checkpoint_save(tpath("keep.safetensors"), &p, NULL, NULL) == 0, "%s", gm_last_error());
    before = read_bytes(tpath("keep.safetensors"), &n1);
    p.data[0] = 123.0f;
    GM_CHECK(gm_checkpoint_save(tpath("nodir/x.safetensors"), &p, NULL, NULL) == -1 && has("nodir"), "%s", gm_last_error());
    /* the temp name is occupied by a directory: the write fails, the old file stays */
    snprintf(dir, sizeof dir, "%s.tmp.%ld", tpath("keep.safetensors"), gm__pid());
#ifdef GM__POSIX_IO
    if (mkdir(dir, 0700) == 0) {
        GM_CHECK(gm_checkpoint_save(tpath("keep.safetensors"), &p, NULL, NULL) == -1 && has("temporary"), "%s", gm_last_error());
        remove(dir);
    } else GM_CHECK(0, "mkdir %s failed", dir);
#endif
    after = read_bytes(tpath("keep.safetensors"), &n2);
    GM_CHECK(before && after && n1 == n2 && memcmp(before, after, n1) == 0, "old checkpoint changed");
    make_model(&q, 0, 0);
    GM_CHECK(gm_checkpoint_load(tpath("keep.safetensors"), &q, NULL, NULL) == 0 && q.data[0] != 123.0f, "old loads");
    GM_CHECK(gm_checkpoint_load(tpath("nonexistent.safetensors"), &q, NULL, NULL) == -1 && has("cannot open") &&
             has("nonexistent.safetensors"), "%s", gm_last_error());
    GM_CHECK(gm_checkpoint_load(tmpdir_, &q, NULL, NULL) == -1, "directory");
    /* unsavable models */
    strcpy(p.views[1].name, "optim.x");
    GM_CHECK(gm_checkpoint_save(tpath("bad.safetensors"), &p, NULL, NULL) == -1 && has("reserved"), "%s", gm_last_error());
    strcpy(p.views[1].name, "enc.weight");
    GM_CHECK(gm_checkpoint_save(tpath("bad.safetensors"), &p, NULL, NULL) == -1 && has("twice"), "%s", gm_last_error());
    {
        FILE *f = fopen(tpath("bad.safetensors"), "rb");
        GM_CHECK(f == NULL, "failed save created a file");
        if (f) fclose(f);
    }
    GENMOD_FREE(before);
    GENMOD_FREE(after);
    gm_params_free(&p);
    gm_params_free(&q);
}

/* ------------------------------------------------------------------ model checkpoints (several parts) */
/* Part "D" of the test models: its own view names and a second optimizer unlike make_optim's. */
static void make_disc(gm_params *p, float seed, int nviews) {
    int s1[2] = {5, 2}, s2[1] = {5}, s3[1] = {1};
    size_t i;
    memset(p, 0, sizeof *p);
    gm_params_add(p, "fc.weight", 2, s1);
    if (nviews > 1) gm_params_add(p, "fc.bias", 1, s2);
    if (nviews > 2) gm_params_add(p, "out", 1, s3);
    for (i = 0; i < p->count; i++) p->data[i] = (float)cos(seed * (double)(i + 3)) * 2.0f;
}
static void make_optim2(gm_optim *o, const gm_params *p) {
    size_t i;
    memset(o, 0, sizeof *o);
    *o = gm_rmsprop(2e-3f, 0.95f);
    o->momentum = 0.25f; o->clip_value = 0.01f; o->step = 99;
    o->sched.kind = GM_LR_STEP; o->sched.step_size = 40; o->sched.gamma = 0.5f;
    o->n = p->count;
    o->m = (float *)malloc(p->count * sizeof(float));
    o->v = (float *)malloc(p->count * sizeof(float));
    for (i = 0; i < p->count; i++) { o->m[i] = (float)sin((double)i) * 0.3f; o->v[i] = 1e-20f * (float)(i + 1); }
}
static int same_optim_fields(const gm_optim *a, const gm_optim *b) {
    return a->kind == b->kind && a->lr == b->lr && a->beta1 == b->beta1 && a->beta2 == b->beta2 && a->eps == b->eps &&
           a->momentum == b->momentum && a->alpha == b->alpha && a->weight_decay == b->weight_decay &&
           a->clip_norm == b->clip_norm && a->clip_value == b->clip_value && a->step == b->step &&
           a->sched.kind == b->sched.kind && a->sched.warmup == b->sched.warmup &&
           a->sched.step_size == b->sched.step_size && a->sched.gamma == b->sched.gamma &&
           a->sched.total == b->sched.total && a->sched.min_lr == b->sched.min_lr;
}

/* Every byte a load could change: parameters, optimizer structs and moments, step, extra. */
static unsigned char *model_bytes(const gm_model_part *parts, int nparts, long step, const gm_meta *extra, size_t *n) {
    size_t cap = sizeof step + sizeof *extra, at = 0;
    unsigned char *b;
    int k;
    for (k = 0; k < nparts; k++)
        cap += parts[k].params->count * sizeof(float) * 3 + sizeof(gm_optim);
    b = (unsigned char *)malloc(cap);
#define MB_PUT(src, len) (memcpy(b + at, (src), (len)), at += (len))
    for (k = 0; k < nparts; k++) {
        const gm_params *p = parts[k].params;
        const gm_optim *o = parts[k].opt;
        MB_PUT(p->data, p->count * sizeof(float));
        if (!o) continue;
        MB_PUT(o, sizeof *o);
        if (o->m) MB_PUT(o->m, o->n * sizeof(float));
        if (o->v) MB_PUT(o->v, o->n * sizeof(float));
    }
    MB_PUT(&step, sizeof step);
    MB_PUT(extra, sizeof *extra);
#undef MB_PUT
    *n = at;
    return b;
}

/* Loads path into (parts, step, extra) expecting a refusal naming each of want[]; nothing may change. */
static void expect_model_fail(const char *path, const char *model, const char *arch, gm_model_part *parts, int nparts,
                              const char *const *want, int nwant, int line) {
    long step = 17;
    gm_meta extra;
    size_t n0, n1;
    unsigned char *before, *after;
    int i;
    memset(&extra, 0, sizeof extra);
    gm_meta_set(&extra, "keep", "me");
    before = model_bytes(parts, nparts, step, &extra, &n0);
    GM_CHECK(gm_model_load(path, model, arch, &step, parts, nparts, &extra) == -1, "line %d: accepted", line);
    for (i = 0; i < nwant; i++)
        GM_CHECK(has(want[i]), "line %d: message '%s' lacks '%s'", line, gm_last_error(), want[i]);
    after = model_bytes(parts, nparts, step, &extra, &n1);
    GM_CHECK(n0 == n1 && memcmp(before, after, n0) == 0, "line %d: model changed by a refused load", line);
    free(before);
    free(after);
}

GM_TEST(model_roundtrip) {
    gm_params g, d, g2, d2;
    gm_optim og, od, og2, od2;
    gm_model_part save[2], load[2];
    gm_meta extra, back, all;
    long step = -1;
    make_model(&g, 1.3f, 0);
    make_disc(&d, 0.7f, 3);
    make_optim(&og, &g, 1);
    make_optim2(&od, &d);
    save[0].name = "G"; save[0].params = &g; save[0].opt = &og;
    save[1].name = "D"; save[1].params = &d; save[1].opt = &od;
    memset(&extra, 0, sizeof extra);
    gm_meta_set(&extra, "train", "lr_g=3e-4 lr_d=2e-3");
    GM_CHECK(gm_model_save(tpath("m.safetensors"), "gan", "G mlp 8-16, D mlp 16-1", 4321, save, 2, &extra) == 0, "%s",
             gm_last_error());
    make_model(&g2, 0, 0);
    make_disc(&d2, 0, 3);
    memset(&og2, 0, sizeof og2);
    memset(&od2, 0, sizeof od2);
    load[0].name = "D"; load[0].params = &d2; load[0].opt = &od2; /* the order of parts does not matter */
    load[1].name = "G"; load[1].params = &g2; load[1].opt = &og2;
    memset(&back, 0, sizeof back);
    GM_CHECK(gm_model_load(tpath("m.safetensors"), "gan", "G mlp 8-16, D mlp 16-1", &step, load, 2, &back) == 0, "%s",
             gm_last_error());
    GM_CHECK(views_equal(&g, g.data, g2.data) && views_equal(&d, d.data, d2.data), "weights differ");
    GM_CHECK(og2.m && og2.v && og2.n == g.count && views_equal(&g, og.m, og2.m) && views_equal(&g, og.v, og2.v),
             "G's moments differ");
    GM_CHECK(od2.m && od2.v && od2.n == d.count && views_equal(&d, od.m, od2.m) && views_equal(&d, od.v, od2.v),
             "D's moments differ");
    GM_CHECK(same_optim_fields(&og, &og2) && og2.kind == GM_ADAMW, "G's optimizer hyperparameters");
    GM_CHECK(same_optim_fields(&od, &od2) && od2.kind == GM_RMSPROP && od2.step == 99 && od2.sched.kind == GM_LR_STEP,
             "D's optimizer hyperparameters");
    GM_CHECK(step == 4321, "step %ld", step);
    GM_CHECK(back.n == 1 && strcmp(gm_meta_get(&back, "train"), "lr_g=3e-4 lr_d=2e-3") == 0, "extra keys only");
    memset(&all, 0, sizeof all);
    GM_CHECK(gm_checkpoint_read_meta(tpath("m.safetensors"), &all) == 0, "%s", gm_last_error());
    GM_CHECK(all.n == 4 && strcmp(gm_meta_get(&all, "genmod.model"), "gan") == 0 &&
             strcmp(gm_meta_get(&all, "genmod.step"), "4321") == 0 && gm_meta_get(&all, "train") &&
             !gm_meta_get(&all, "optim.G.lr"), "read_meta: %d entries", all.n);
    /* weights only for D (its optimizer state is skipped), NULL step and extra */
    free_optim(&og2);
    memset(&og2, 0, sizeof og2);
    memset(g2.data, 0, g2.count * sizeof(float));
    load[0].opt = NULL;
    GM_CHECK(gm_model_load(tpath("m.safetensors"), "gan", "G mlp 8-16, D mlp 16-1", NULL, load, 2, NULL) == 0, "%s",
             gm_last_error());
    GM_CHECK(views_equal(&g, g.data, g2.data) && same_optim_fields(&og, &og2), "second load");
    /* a part saved without its optimizer cannot fill one */
    save[1].opt = NULL;
    GM_CHECK(gm_model_save(tpath("m-w.safetensors"), "gan", "a", 1, save, 2, NULL) == 0, "%s", gm_last_error());
    load[0].opt = &od2;
    {
        static const char *const want[] = {"no optimizer state for part 'D'"};
        expect_model_fail(tpath("m-w.safetensors"), "gan", "a", load, 2, want, 1, __LINE__);
    }
    /* names that cannot be stored unambiguously, reserved extra keys */
    save[1].opt = &od;
    save[1].name = "D.x";
    GM_CHECK(gm_model_save(tpath("m-bad.safetensors"), "gan", "a", 1, save, 2, NULL) == -1 && has("without '.'"), "dot");
    save[1].name = "G";
    GM_CHECK(gm_model_save(tpath("m-bad.safetensors"), "gan", "a", 1, save, 2, NULL) == -1 && has("used twice"), "twice");
    save[1].name = "";
    GM_CHECK(gm_model_save(tpath("m-bad.safetensors"), "gan", "a", 1, save, 2, NULL) == -1 && has("only part"), "empty");
    save[1].name = "optim";
    GM_CHECK(gm_model_save(tpath("m-bad.safetensors"), "gan", "a", 1, save, 2, NULL) == -1 && has("reserved"), "optim");
    save[1].name = "D";
    gm_meta_set(&extra, "genmod.mine", "x");
    GM_CHECK(gm_model_save(tpath("m-bad.safetensors"), "gan", "a", 1, save, 2, &extra) == -1 && has("reserved prefix 'genmod.'"),
             "%s", gm_last_error());
    {
        FILE *f = fopen(tpath("m-bad.safetensors"), "rb");
        GM_CHECK(f == NULL, "failed save created a file");
        if (f) fclose(f);
    }
    free_optim(&og); free_optim(&od); free_optim(&og2); free_optim(&od2);
    gm_params_free(&g); gm_params_free(&d); gm_params_free(&g2); gm_params_free(&d2);
}

GM_TEST(model_refusals) {
    gm_params g, d, g2, d2, dshort;
    gm_optim og, od, og2, od2;
    gm_model_part save[2], load[2];
    unsigned char *raw;
    size_t n, len;
    make_model(&g, 1.1f, 0);
    make_disc(&d, 0.9f, 3);
    make_optim(&og, &g, 1);
    make_optim2(&od, &d);
    save[0].name = "G"; save[0].params = &g; save[0].opt = &og;
    save[1].name = "D"; save[1].params = &d; save[1].opt = &od;
    GM_CHECK(gm_model_save(tpath("r.safetensors"), "gan", "arch A", 10, save, 2, NULL) == 0, "%s", gm_last_error());
    /* the model to load into: its own values and preallocated moments, all compared byte for byte */
    make_model(&g2, 2.2f, 0);
    make_disc(&d2, 3.3f, 3);
    make_optim(&og2, &g2, 1);
    make_optim2(&od2, &d2);
    og2.lr = 5.0f;
    load[0].name = "G"; load[0].params = &g2; load[0].opt = &og2;
    load[1].name = "D"; load[1].params = &d2; load[1].opt = &od2;
    {
        static const char *const model[] = {"gmtd_", "r.safetensors", "'gan'", "'vae'"};
        static const char *const arch[] = {"r.safetensors", "'arch A'", "'arch B'"};
        expect_model_fail(tpath("r.safetensors"), "vae", "arch A", load, 2, model, 4, __LINE__);
        expect_model_fail(tpath("r.safetensors"), "gan", "arch B", load, 2, arch, 3, __LINE__);
    }
    /* a part's tensor missing from the file */
    make_disc(&dshort, 0.9f, 2);
    save[1].params = &dshort;
    save[1].opt = NULL;
    GM_CHECK(gm_model_save(tpath("r-short.safetensors"), "gan", "arch A", 10, save, 2, NULL) == 0, "%s", gm_last_error());
    {
        static const char *const want[] = {"tensor 'D.out' is missing"};
        load[1].opt = NULL;
        expect_model_fail(tpath("r-short.safetensors"), "gan", "arch A", load, 2, want, 1, __LINE__);
        load[1].opt = &od2;
    }
    /* a file with a part this model lacks, and a model with a part the file lacks */
    {
        static const char *const extra_part[] = {"unexpected tensor 'D.", "no part 'D'"};
        static const char *const missing[] = {"tensor 'E.fc.weight' is missing"};
        gm_model_part three[3];
        gm_params e;
        make_disc(&e, 4.4f, 3);
        expect_model_fail(tpath("r.safetensors"), "gan", "arch A", load, 1, extra_part, 2, __LINE__);
        memcpy(three, load, sizeof load);
        three[2].name = "E"; three[2].params = &e; three[2].opt = NULL;
        expect_model_fail(tpath("r.safetensors"), "gan", "arch A", three, 3, missing, 1, __LINE__);
        gm_params_free(&e);
    }
    /* every truncation of the file */
    raw = read_bytes(tpath("r.safetensors"), &n);
    GM_CHECK(raw != NULL, "read back");
    for (len = 0; raw && len < n; len++) {
        static const char *const any[] = {"checkpoint: "};
        write_bytes(tpath("r-cut.safetensors"), raw, len);
        expect_model_fail(tpath("r-cut.safetensors"), "gan", "arch A", load, 2, any, 1, __LINE__);
    }
    GENMOD_FREE(raw);
    free_optim(&og); free_optim(&od); free_optim(&og2); free_optim(&od2);
    gm_params_free(&g); gm_params_free(&d); gm_params_free(&g2); gm_params_free(&d2); gm_params_free(&dshort);
}

/* One part named "" is a plain checkpoint: the same bytes as gm_checkpoint_save with the same metadata. */
GM_TEST(model_single_part) {
    gm_params p, q;
    gm_optim o, oq;
    gm_model_part part;
    gm_meta extra, meta, back;
    unsigned char *a, *b;
    size_t na, nb;
    long step = 0;
    make_model(&p, 0.8f, 0);
    make_optim(&o, &p, 1);
    memset(&extra, 0, sizeof extra);
    gm_meta_set(&extra, "train", "beta=1");
    memset(&meta, 0, sizeof meta);
    gm_meta_set(&meta, "genmod.model", "vae");
    gm_meta_set(&meta, "genmod.arch", "mlp 784-400-20");
    gm_meta_set(&meta, "genmod.step", "12");
    gm_meta_set(&meta, "train", "beta=1");
    part.name = ""; part.params = &p; part.opt = &o;
    GM_CHECK(gm_model_save(tpath("s-model.safetensors"), "vae", "mlp 784-400-20", 12, &part, 1, &extra) == 0, "%s",
             gm_last_error());
    GM_CHECK(gm_checkpoint_save(tpath("s-ck.safetensors"), &p, &o, &meta) == 0, "%s", gm_last_error());
    a = read_bytes(tpath("s-model.safetensors"), &na);
    b = read_bytes(tpath("s-ck.safetensors"), &nb);
    GM_CHECK(a && b && na == nb && memcmp(a, b, na) == 0, "model file (%lu bytes) differs from checkpoint (%lu bytes)",
             (unsigned long)na, (unsigned long)nb);
    GENMOD_FREE(a);
    GENMOD_FREE(b);
    /* an older file: plain checkpoint with an unknown genmod.* key, loads as a model (that key dropped) */
    gm_meta_set(&meta, "genmod.train", "old");
    GM_CHECK(gm_checkpoint_save(tpath("s-old.safetensors"), &p, &o, &meta) == 0, "%s", gm_last_error());
    make_model(&q, 0, 0);
    memset(&oq, 0, sizeof oq);
    memset(&back, 0, sizeof back);
    part.params = &q; part.opt = &oq;
    GM_CHECK(gm_model_load(tpath("s-old.safetensors"), "vae", "mlp 784-400-20", &step, &part, 1, &back) == 0, "%s",
             gm_last_error());
    GM_CHECK(views_equal(&p, p.data, q.data) && oq.m && views_equal(&p, o.m, oq.m) && same_optim_fields(&o, &oq),
             "old file's values");
    GM_CHECK(step == 12 && back.n == 1 && strcmp(back.key[0], "train") == 0, "step %ld, %d extra keys", step, back.n);
    free_optim(&o); free_optim(&oq);
    gm_params_free(&p); gm_params_free(&q);
}

/* ------------------------------------------------------------------ interop with tests/safetensors_check.py */
/* The fixed model both sides agree on: values exact in float32. */
static void interop_model(gm_params *p) {
    int s1[2] = {3, 4}, s2[1] = {4}, s3[4] = {2, 1, 2, 2};
    size_t i;
    memset(p, 0, sizeof *p);
    gm_params_add(p, "layer.weight", 2, s1);
    gm_params_add(p, "layer.bias", 1, s2);
    gm_params_add(p, "conv.w", 4, s3);
    for (i = 0; i < 12; i++) p->data[p->views[0].offset + i] = (float)i * 0.5f - 1.0f;
    for (i = 0; i < 4; i++) p->data[p->views[1].offset + i] = 0.25f * (float)i;
    for (i = 0; i < 8; i++) p->data[p->views[2].offset + i] = -(float)i;
}
static int interop(const char *mode, const char *path) {
    gm_params p, q;
    gm_meta m;
    size_t i;
    interop_model(&p);
    memset(&m, 0, sizeof m);
    if (strcmp(mode, "--st-write") == 0) {
        gm_optim o;
        make_optim(&o, &p, 1);
        {   /* m counts up through the views in order (what the Python side expects), v = 2 m */
            size_t k = 0;
            int vi;
            for (vi = 0; vi < p.nviews; vi++)
                for (i = 0; i < p.views[vi].size; i++, k++) {
                    o.m[p.views[vi].offset + i] = (float)k;
                    o.v[p.views[vi].offset + i] = 2.0f * (float)k;
                }
        }
        gm_meta_set(&m, "model", "vae");
        gm_meta_set(&m, "hidden", "16");
        if (gm_checkpoint_save(path, &p, &o, &m) != 0) { printf("%s\n", gm_last_error()); return 1; }
        free_optim(&o);
        gm_params_free(&p);
        return 0;
    }
    memset(&q, 0, sizeof q);
    interop_model(&q);
    memset(q.data, 0, q.count * sizeof(float));
    if (gm_checkpoint_load(path, &q, NULL, &m) != 0) { printf("FAIL: %s\n", gm_last_error()); return 1; }
    if (!views_equal(&p, p.data, q.data)) { printf("FAIL: values differ\n"); return 1; }
    if (!gm_meta_get(&m, "model") || strcmp(gm_meta_get(&m, "model"), "vae") != 0) { printf("FAIL: metadata\n"); return 1; }
    printf("C read %s: %d tensors, values and metadata match\n", path, q.nviews);
    gm_params_free(&p);
    gm_params_free(&q);
    return 0;
}

int main(int argc, char **argv) {
    const char *t = getenv("TMPDIR");
    if (argc == 3) return interop(argv[1], argv[2]);
    snprintf(tmpdir_, sizeof tmpdir_, "%s", t && *t ? t : "/tmp");
    GM_RUN(idx_roundtrip);
    GM_RUN(idx_corruptions);
    GM_RUN(bundled_mnist);
    GM_RUN(toy2d);
    GM_RUN(utilities);
    GM_RUN(batcher);
    GM_RUN(checkpoint_roundtrip);
    GM_RUN(checkpoint_validation);
    GM_RUN(checkpoint_save_failures);
    GM_RUN(model_roundtrip);
    GM_RUN(model_refusals);
    GM_RUN(model_single_part);
    cleanup();
    return gm_test_summary();
}
