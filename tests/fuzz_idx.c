/* fuzz_idx.c: fuzzes the IDX (MNIST) loader with arbitrary image and label files.
 *   libFuzzer: clang -g -O1 -DGM_LIBFUZZER -fsanitize=fuzzer,address,undefined tests/fuzz_idx.c -o /tmp/fz_idx -lm
 *              /tmp/fz_idx -max_total_time=60 /tmp/idx_corpus tests/corpus/idx
 *   replay:    cc -fsanitize=address,undefined tests/fuzz_idx.c -o /tmp/fz_idx -lm && /tmp/fz_idx tests/corpus/idx/ *
 *   seeds:     /tmp/fz_idx --write-seeds tests/corpus/idx
 * Input framing: byte 0 = flags (bit 0: with labels; bits 1..7: max_items, 0 = all),
 * bytes 1..2 = little-endian length L of the image file, then L image bytes, then the label file. */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"

static void fz_check(const gm_dataset *d, int rc) {
    size_t i, n;
    if (rc != 0) {
        if (gm_last_error()[0] == 0) { fprintf(stderr, "failure without a message\n"); abort(); }
        return;
    }
    n = (size_t)d->n * (size_t)d->h * (size_t)d->w;
    for (i = 0; i < n; i++) /* every pixel mapped into [-1, 1] */
        if (!(d->x[i] >= -1.0f && d->x[i] <= 1.0f)) { fprintf(stderr, "pixel out of range\n"); abort(); }
    for (i = 0; d->y && i < (size_t)d->n; i++)
        if (d->y[i] < 0 || d->y[i] >= 10) { fprintf(stderr, "label out of range\n"); abort(); }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gm_dataset d;
    size_t li;
    int rc, with_labels, max_items;
    if (size < 3) return 0;
    with_labels = data[0] & 1;
    max_items = data[0] >> 1;
    li = (size_t)data[1] | ((size_t)data[2] << 8);
    data += 3; size -= 3;
    if (li > size) li = size;
    memset(&d, 0, sizeof d);
    rc = gm_idx_load_mem(&d, data, li, with_labels ? data + li : NULL, size - li, max_items, -1.0f, 1.0f, 10);
    fz_check(&d, rc);
    gm_dataset_free(&d);
    return 0;
}

#ifndef GM_LIBFUZZER
static int fz_replay(const char *path) {
    unsigned char *buf;
    size_t n;
    if (gm__read_file("fuzz", path, &buf, &n) != 0) { fprintf(stderr, "%s\n", gm_last_error()); return 1; }
    LLVMFuzzerTestOneInput(buf, n);
    GENMOD_FREE(buf);
    return 0;
}
/* Seeds: n images of h x w with labels, framed as above. */
static int fz_seed(const char *dir, const char *name, int flags, uint32_t n, uint32_t h, uint32_t w) {
    unsigned char buf[4096];
    char path[1024];
    size_t L = 16 + (size_t)n * h * w, i, total;
    FILE *f;
    buf[0] = (unsigned char)flags;
    buf[1] = (unsigned char)L; buf[2] = (unsigned char)(L >> 8);
    gm__put_be32(buf + 3, 0x803); gm__put_be32(buf + 7, n); gm__put_be32(buf + 11, h); gm__put_be32(buf + 15, w);
    for (i = 0; i < (size_t)n * h * w; i++) buf[19 + i] = (unsigned char)(i * 37);
    gm__put_be32(buf + 3 + L, 0x801); gm__put_be32(buf + 7 + L, n);
    for (i = 0; i < n; i++) buf[11 + L + i] = (unsigned char)(i % 10);
    total = 3 + L + 8 + n;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!(f = fopen(path, "wb"))) { fprintf(stderr, "cannot write %s\n", path); return 1; }
    fwrite(buf, 1, total, f);
    fclose(f);
    return 0;
}
int main(int argc, char **argv) {
    int i, bad = 0;
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
        return fz_seed(argv[2], "3x4x5_labels", 1, 3, 4, 5) | fz_seed(argv[2], "2x28x28_nolabels", 0, 2, 28, 28) |
               fz_seed(argv[2], "10x2x2_max3", 1 | (3 << 1), 10, 2, 2);
    for (i = 1; i < argc; i++) bad |= fz_replay(argv[i]);
    printf("fuzz_idx: replayed %d inputs\n", argc - 1);
    return bad;
}
#endif
