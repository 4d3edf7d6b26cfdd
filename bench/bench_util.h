/* bench_util.h: timer, median and an FMA-peak probe shared by genmod's benchmarks.
 * The probe runs 24 independent AVX-512 FMA chains (enough to hide FMA latency on any core with
 * one or two 512-bit FMA pipes) and reports fp32 GFLOP/s; with nthreads > 1 it runs the probe in
 * that many pthreads at once and reports the sum. Compiled with a target attribute, so a plain
 * `cc -O2` build works; on CPUs without AVX-512 it falls back to AVX2+FMA (16 chains). */
#ifndef GM_BENCH_UTIL_H
#define GM_BENCH_UTIL_H
#define _POSIX_C_SOURCE 200809L
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <immintrin.h>

static double gm_bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int gm_bench_cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double gm_bench_median(const double *v, int n) { /* n <= 64 */
    double t[64];
    if (n <= 0) return 0.0;
    if (n > 64) n = 64;
    memcpy(t, v, (size_t)n * sizeof(double));
    qsort(t, (size_t)n, sizeof(double), gm_bench_cmp);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

#define GM_BENCH_CHAIN(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) \
    X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)

/* iters x 24 FMAs of 16 lanes; returns a value that depends on every chain (defeats DCE) */
__attribute__((target("avx512f,fma"))) static float gm_bench_fma512(long iters) {
#define GM_BD(i) __m512 a##i = _mm512_set1_ps(1.0f + (float)(i) * 1e-3f);
#define GM_BF(i) a##i = _mm512_fmadd_ps(a##i, m, c);
#define GM_BS(i) s = _mm512_add_ps(s, a##i);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    __m512 s = _mm512_setzero_ps();
    long i;
    GM_BENCH_CHAIN(GM_BD)
    for (i = 0; i < iters; i++) { GM_BENCH_CHAIN(GM_BF) }
    GM_BENCH_CHAIN(GM_BS)
    return _mm512_reduce_add_ps(s);
#undef GM_BD
#undef GM_BF
#undef GM_BS
}

__attribute__((target("avx2,fma"))) static float gm_bench_fma256(long iters) {
#define GM_BD(i) __m256 a##i = _mm256_set1_ps(1.0f + (float)(i) * 1e-3f);
#define GM_BF(i) a##i = _mm256_fmadd_ps(a##i, m, c);
#define GM_BS(i) s = _mm256_add_ps(s, a##i);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    __m256 s = _mm256_setzero_ps();
    float out[8];
    long i;
    GM_BENCH_CHAIN(GM_BD)
    for (i = 0; i < iters; i++) { GM_BENCH_CHAIN(GM_BF) }
    GM_BENCH_CHAIN(GM_BS)
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
#undef GM_BD
#undef GM_BF
#undef GM_BS
}

typedef struct { double seconds, gflops; volatile float sink; } gm_bench_probe_arg;

static void *gm_bench_probe_thread(void *p) {
    gm_bench_probe_arg *a = (gm_bench_probe_arg *)p;
    const int w512 = __builtin_cpu_supports("avx512f");
    const long chunk = 1 << 16;
    const double flops_per_iter = 24.0 * (w512 ? 16 : 8) * 2.0;
    double t0 = gm_bench_now(), t;
    long n = 0;
    do {
        a->sink += w512 ? gm_bench_fma512(chunk) : gm_bench_fma256(chunk);
        n += chunk;
        t = gm_bench_now() - t0;
    } while (t < a->seconds);
    a->gflops = (double)n * flops_per_iter / t * 1e-9;
    return NULL;
}

/* fp32 FMA peak in GFLOP/s over `seconds`, summed over nthreads (1..16) threads. */
static double gm_bench_fma_peak(int nthreads, double seconds) {
    pthread_t tid[16];
    gm_bench_probe_arg args[16];
    double sum = 0.0;
    int i;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 16) nthreads = 16;
    for (i = 0; i < nthreads; i++) { args[i].seconds = seconds; args[i].gflops = 0.0; args[i].sink = 0.0f; }
    for (i = 1; i < nthreads; i++) pthread_create(&tid[i], NULL, gm_bench_probe_thread, &args[i]);
    gm_bench_probe_thread(&args[0]);
    for (i = 1; i < nthreads; i++) pthread_join(tid[i], NULL);
    for (i = 0; i < nthreads; i++) sum += args[i].gflops;
    return sum;
}
#endif
