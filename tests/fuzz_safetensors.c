/* fuzz_safetensors.c: fuzzes the checkpoint (safetensors) loader with arbitrary bytes.
 *   libFuzzer: clang -g -O1 -DGM_LIBFUZZER -fsanitize=fuzzer,address,undefined tests/fuzz_safetensors.c -o /tmp/fz_st -lm
 *              /tmp/fz_st -max_total_time=60 /tmp/st_corpus tests/corpus/safetensors
 *   replay:    cc -fsanitize=address,undefined tests/fuzz_safetensors.c -o /tmp/fz_st -lm
 *              /tmp/fz_st tests/corpus/safetensors/ *      (files given on the command line)
 *   seeds:     /tmp/fz_st --write-seeds tests/corpus/safetensors
 * Each input is loaded four ways (weights only; with optimizer and metadata; with preallocated
 * moments; as a two-part model "G" + "D" with an optimizer for G). On success the model must hold finite-or-not floats copied from the input; on failure
 * nothing may change. Sanitizers catch out-of-bounds reads, leaks and UB. */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"

static gm_params fz_model, fz_disc;

static void fz_init(void) {
    int sa[1] = {2}, sb[2] = {1, 2}, sc[2] = {3, 4};
    if (fz_model.nviews) return;
    gm_params_add(&fz_model, "a", 1, sa);
    gm_params_add(&fz_model, "b", 2, sb);
    gm_params_add(&fz_model, "enc.weight", 2, sc);
    gm_params_add(&fz_disc, "w", 2, sb);
    if (fz_model.count + fz_disc.count > 256) abort(); /* the snapshot buffers below hold 256 floats */
}

static void fz_check_unchanged(const float *before, int rc) {
    if (rc != 0 && memcmp(before, fz_model.data, fz_model.count * sizeof(float)) != 0) {
        fprintf(stderr, "model changed by a failed load: %s\n", gm_last_error());
        abort();
    }
    if (rc != 0 && gm_last_error()[0] == 0) { fprintf(stderr, "failure without a message\n"); abort(); }
}

/* The same bytes as a model of two parts (what gm_model_load reads after the file). */
static void fz_model_load(const uint8_t *data, size_t size) {
    float before[256];
    gm_model_part parts[2];
    gm_optim o;
    gm_meta m;
    long step = -7;
    int rc;
    memset(&o, 0, sizeof o);
    memset(&m, 0, sizeof m);
    parts[0].name = "G"; parts[0].params = &fz_model; parts[0].opt = &o;
    parts[1].name = "D"; parts[1].params = &fz_disc; parts[1].opt = NULL;
    memcpy(before, fz_model.data, fz_model.count * sizeof(float));
    memcpy(before + fz_model.count, fz_disc.data, fz_disc.count * sizeof(float));
    rc = gm__st_load(data, size, "<fuzz>", parts, 2, "gan", "a", &step, &m);
    if (rc != 0 && (memcmp(before, fz_model.data, fz_model.count * sizeof(float)) != 0 ||
                    memcmp(before + fz_model.count, fz_disc.data, fz_disc.count * sizeof(float)) != 0 ||
                    o.m || o.v || m.n || step != -7 || !gm_last_error()[0])) {
        fprintf(stderr, "model changed by a failed load: %s\n", gm_last_error());
        abort();
    }
    if (rc == 0 && (!o.m || !o.v || o.n != fz_model.count || step < 0)) { fprintf(stderr, "bad model load\n"); abort(); }
    GENMOD_FREE(o.m);
    GENMOD_FREE(o.v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    float before[256]; /* fz_model.count is 44 (views are 16-float aligned) */
    gm_optim o;
    gm_meta m;
    int rc;
    fz_init();
    memcpy(before, fz_model.data, fz_model.count * sizeof(float));
    rc = gm_checkpoint_load_mem(data, size, &fz_model, NULL, NULL);
    fz_check_unchanged(before, rc);
    memcpy(before, fz_model.data, fz_model.count * sizeof(float));
    memset(&o, 0, sizeof o);
    memset(&m, 0, sizeof m);
    rc = gm_checkpoint_load_mem(data, size, &fz_model, &o, &m);
    fz_check_unchanged(before, rc);
    if (rc != 0 && (o.m || o.v || m.n)) { fprintf(stderr, "optimizer/meta changed by a failed load\n"); abort(); }
    if (rc == 0 && (!o.m || !o.v || o.n != fz_model.count || m.n > GM_META_MAX)) { fprintf(stderr, "bad optimizer\n"); abort(); }
    GENMOD_FREE(o.m);
    GENMOD_FREE(o.v);
    { /* preallocated moments with a wrong size must be refused, never overrun */
        float mm[3], vv[3];
        memset(&o, 0, sizeof o);
        o.m = mm; o.v = vv; o.n = 3;
        if (gm_checkpoint_load_mem(data, size, &fz_model, &o, NULL) == 0) { fprintf(stderr, "size mismatch accepted\n"); abort(); }
    }
    fz_model_load(data, size);
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
/* Seeds: valid files for the fuzz model, with and without optimizer state and metadata. */
static int fz_write_seeds(const char *dir) {
    char path[1024];
    gm_optim o;
    gm_meta m;
    size_t i;
    fz_init();
    for (i = 0; i < fz_model.count; i++) fz_model.data[i] = (float)i * 0.5f - 2.0f;
    memset(&o, 0, sizeof o);
    memset(&m, 0, sizeof m);
    o.kind = GM_ADAM; o.lr = 1e-3f; o.beta1 = 0.9f; o.beta2 = 0.999f; o.eps = 1e-8f; o.step = 10;
    gm_meta_set(&m, "model", "mlp");
    gm_meta_set(&m, "note", "esc \" \\ \n \xc3\xa9");
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    if (gm_checkpoint_save(path, &fz_model, NULL, NULL) != 0) goto fail;
    snprintf(path, sizeof path, "%s/weights_meta.safetensors", dir);
    if (gm_checkpoint_save(path, &fz_model, NULL, &m) != 0) goto fail;
    snprintf(path, sizeof path, "%s/full.safetensors", dir);
    if (gm_checkpoint_save(path, &fz_model, &o, &m) != 0) goto fail;
    {
        gm_model_part parts[2];
        parts[0].name = "G"; parts[0].params = &fz_model; parts[0].opt = &o;
        parts[1].name = "D"; parts[1].params = &fz_disc; parts[1].opt = NULL;
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (gm_model_save(path, "gan", "a", 10, parts, 2, &m) != 0) goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "%s\n", gm_last_error());
    return 1;
}
int main(int argc, char **argv) {
    int i, bad = 0;
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) return fz_write_seeds(argv[2]);
    for (i = 1; i < argc; i++) bad |= fz_replay(argv[i]);
    printf("fuzz_safetensors: replayed %d inputs\n", argc - 1);
    gm_params_free(&fz_model);
    gm_params_free(&fz_disc);
    return bad;
}
#endif
