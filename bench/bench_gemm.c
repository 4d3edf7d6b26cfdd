/* bench_gemm.c: gm_sgemm vs OpenBLAS cblas_sgemm vs the FMA peak, in short interleaved rounds
 * (this machine's speed drifts within seconds, so ratios are taken inside each round and the
 * median over rounds is reported). Appends JSON lines to out/bench.jsonl.
 *   gcc -O2 -std=c99 -I. bench/bench_gemm.c -o /tmp/bench_gemm -lopenblas -lm -lpthread
 *   make build/bench_gemm && ./build/bench_gemm [rounds=5] [--nn] [--t1] [--only SUBSTR]
 * Default: the five target shapes as NN and NT (C = A B^T), TN/TT on two of them, at 1 and 2
 * threads (~70 s). --nn: NN shapes only; --t1: one thread only; --only: shapes whose name contains
 * SUBSTR (e.g. "_NT_t1"). */
#include "bench_util.h"
#include <stdio.h>
#define GENMOD_IMPLEMENTATION
#include "genmod.h"
#include <stdio.h>
#include <sys/stat.h>
#include <cblas.h>

typedef struct { int M, N, K, ta, tb; } shape;

static float *rnd_buf(size_t n) {
    float *p = (float *)malloc(n * sizeof(float));
    size_t i;
    unsigned s = 7u;
    for (i = 0; i < n; i++) { s = s * 1664525u + 1013904223u; p[i] = (float)(s >> 9) / 8388608.0f - 1.0f; }
    return p;
}

/* GFLOP/s of repeated calls for about `secs` seconds (one warm-up call first) */
static double time_gemm(int ours, const shape *s, const float *A, const float *B, float *C, double secs) {
    const int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    double t0, t;
    long n = 0;
    for (;;) {
        if (ours) gm_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
        else cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                         s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
        if (n == 0) t0 = gm_bench_now();
        if (++n > 1 && (t = gm_bench_now() - t0) >= secs) break;
    }
    return 2.0 * s->M * s->N * s->K * (double)(n - 1) / t * 1e-9;
}

static FILE *jsonl;

static void run(const shape *s, int threads, int rounds, double peak_out[2], const char *only) {
    float *A, *B, *C;
    double ours[64], ref[64], peak[64], rp[64], rr[64];
    double mo, mr, mp, mrp, mrr;
    char name[96];
    int r;
    if (s->ta || s->tb)
        snprintf(name, sizeof name, "sgemm_%dx%dx%d_%c%c_t%d", s->M, s->N, s->K, s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', threads);
    else snprintf(name, sizeof name, "sgemm_%dx%dx%d_t%d", s->M, s->N, s->K, threads);
    if (only && !strstr(name, only)) return;
    A = rnd_buf((size_t)s->M * s->K); B = rnd_buf((size_t)s->K * s->N); C = rnd_buf((size_t)s->M * s->N);
    gm_set_threads(threads);
    openblas_set_num_threads(threads);
    for (r = 0; r < rounds; r++) {
        peak[r] = gm_bench_fma_peak(threads, 0.1);
        ours[r] = time_gemm(1, s, A, B, C, 0.2);
        ref[r] = time_gemm(0, s, A, B, C, 0.2);
        rp[r] = ours[r] / peak[r];
        rr[r] = ours[r] / ref[r];
    }
    mo = gm_bench_median(ours, rounds); mr = gm_bench_median(ref, rounds); mp = gm_bench_median(peak, rounds);
    mrp = gm_bench_median(rp, rounds); mrr = gm_bench_median(rr, rounds);
    peak_out[threads - 1] = mp;
    printf("%-28s %8.1f %9.1f %8.1f   %6.3f   %6.3f\n", name, mo, mr, mp, mrp, mrr);
    fflush(stdout);
    if (jsonl)
        fprintf(jsonl, "{\"name\": \"%s\", \"value\": %.2f, \"unit\": \"GFLOP/s\", \"ratio_to_peak\": %.4f, "
                       "\"ref_name\": \"openblas\", \"ref_value\": %.2f, \"ratio_to_ref\": %.4f}\n",
                name, mo, mrp, mr, mrr);
    free(A); free(B); free(C);
}

int main(int argc, char **argv) {
    /* the five target shapes as NN, then C = A B^T (tb=1: every dense layer's forward pass) on all
     * five, then A^T B (ta=1: weight gradients) and TT on the two mid-size ones */
    static const shape shapes[] = {
        {100, 256, 784, 0, 0}, {100, 784, 256, 0, 0}, {256, 256, 256, 0, 0}, {256, 512, 784, 0, 0},
        {1024, 1024, 1024, 0, 0},
        {100, 256, 784, 0, 1}, {100, 784, 256, 0, 1}, {256, 256, 256, 0, 1}, {256, 512, 784, 0, 1},
        {1024, 1024, 1024, 0, 1},
        {100, 784, 256, 1, 0}, {256, 512, 784, 1, 0}, {256, 512, 784, 1, 1}};
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    int rounds = 5, nn_only = 0, tmax = 2, i, t;
    const char *only = NULL;
    double peaks[2] = {0, 0};
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--nn") == 0) nn_only = 1;           /* only the NN shapes */
        else if (strcmp(argv[i], "--t1") == 0) tmax = 1;         /* only 1 thread */
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i]; /* name filter */
        else if (strcmp(argv[i], "--trans") == 0) {}             /* (default now; kept for scripts) */
        else rounds = atoi(argv[i]);
    }
    if (rounds < 1) rounds = 1;
    if (rounds > 64) rounds = 64;
    gm_flush_denormals();
    mkdir("out", 0777);
    jsonl = fopen("out/bench.jsonl", "a");
    printf("path %s, %d rounds (medians of per-round ratios)\n", gm_simd_name(gm_simd_path()), rounds);
    printf("%-28s %8s %9s %8s   %6s   %6s\n", "shape", "ours", "openblas", "peak", "/peak", "/oblas");
    for (t = 1; t <= tmax; t++)
        for (i = 0; i < nshapes; i++) {
            if (nn_only && (shapes[i].ta || shapes[i].tb)) continue;
            run(&shapes[i], t, rounds, peaks, only);
        }
    if (jsonl) {
        if (peaks[0] > 0) fprintf(jsonl, "{\"name\": \"fma_peak_t1\", \"value\": %.2f, \"unit\": \"GFLOP/s\"}\n", peaks[0]);
        if (peaks[1] > 0) fprintf(jsonl, "{\"name\": \"fma_peak_t2\", \"value\": %.2f, \"unit\": \"GFLOP/s\"}\n", peaks[1]);
        fclose(jsonl);
    }
    return 0;
}
