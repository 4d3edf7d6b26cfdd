/* test_kernels.c: SIMD paths, thread pool, sgemm and vector math of genmod's kernel section.
 *
 * Every path this CPU + build supports is forced in turn and checked against a double-precision
 * reference. sgemm tolerance: |C - ref| <= 1e-5 * (|alpha| * sum_k |a_ik||b_kj| + |beta||c_ij|),
 * i.e. ~84 float epsilons relative to the magnitude of the sum (worst-case float accumulation
 * error for K=257 is ~K*eps/2 = 1.5e-5, the typical one is far below). Set GM_TEST_SMALL=1 (the
 * NEON run under qemu does) to skip the 257-sized cases and use a sparser vector-math sweep. */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#include "gm_test.h"
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#if !defined(GENMOD_NO_THREADS) && !defined(_WIN32)
#include <pthread.h>
#endif

static int small_run; /* GM_TEST_SMALL: qemu */

static unsigned rng_state = 12345u;
static float rnd(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffffff) / 8388608.0f - 1.0f;
}

static float *alloc_f(size_t n) { return (float *)malloc((n ? n : 1) * sizeof(float)); }

static float opA(int ta, const float *A, int lda, int i, int k) { return ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]; }
static float opB(int tb, const float *B, int ldb, int k, int j) { return tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]; }

/* One sgemm case on the current path; returns 0 if fine, else prints the first mismatch. */
static int gemm_case(int ta, int tb, int M, int N, int K, float alpha, float beta, int pad) {
    const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    const size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = alloc_f(na), *B = alloc_f(nb), *C = alloc_f(nc), *C0 = alloc_f(nc);
    size_t t;
    int i, j, k, bad = 0;
    for (t = 0; t < na; t++) A[t] = rnd();
    for (t = 0; t < nb; t++) B[t] = rnd();
    for (t = 0; t < nc; t++) C[t] = (beta == 0.0f) ? (float)NAN : rnd();
    for (i = 0; i < M; i++) /* the padding columns of C are sentinels that must survive */
        for (j = N; j < ldc; j++) C[(size_t)i * ldc + j] = 777.0f;
    memcpy(C0, C, nc * sizeof(float));
    gm_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    for (i = 0; i < M && !bad; i++) {
        for (j = 0; j < N && !bad; j++) {
            double s = 0.0, mag = 0.0, ref, got = C[(size_t)i * ldc + j];
            for (k = 0; k < K; k++) {
                double p = (double)opA(ta, A, lda, i, k) * opB(tb, B, ldb, k, j);
                s += p;
                mag += fabs(p);
            }
            ref = alpha * s;
            mag = fabs(alpha) * mag;
            if (beta != 0.0f) {
                ref += beta * (double)C0[(size_t)i * ldc + j];
                mag += fabs(beta * (double)C0[(size_t)i * ldc + j]);
            }
            if (!(fabs(got - ref) <= 1e-5 * mag + 1e-30)) {
                GM_CHECK(0, "%s ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d: C[%d][%d]=%.9g ref=%.9g",
                         gm_simd_name(gm_simd_path()), ta, tb, M, N, K, alpha, beta, pad, i, j, got, ref);
                bad = 1;
            }
        }
        for (j = N; j < ldc && !bad; j++)
            if (C[(size_t)i * ldc + j] != 777.0f) {
                GM_CHECK(0, "%s ta=%d tb=%d M=%d N=%d K=%d: wrote outside C at [%d][%d]",
                         gm_simd_name(gm_simd_path()), ta, tb, M, N, K, i, j);
                bad = 1;
            }
    }
    free(A); free(B); free(C); free(C0);
    return bad;
}

/* Odd sizes in all four transpose combos with rotating alpha/beta/padding. */
static void gemm_sweep(void) {
    static const int sizes[] = {1, 3, 17, 33, 257};
    static const float alphas[] = {1.0f, -0.5f, 2.5f};
    static const float betas[] = {0.0f, 1.0f, 0.7f, 0.0f};
    const int nsz = small_run ? 4 : 5;
    int a, b, c, t, v = 0, fails = 0;
    for (a = 0; a < nsz; a++)
        for (b = 0; b < nsz; b++)
            for (c = 0; c < nsz; c++) {
                const int big = (a == 4) + (b == 4) + (c == 4);
                if (big > 1 && !(a == 4 && b == 4 && c != 4)) continue; /* keep it quick */
                for (t = 0; t < 4 && fails < 3; t++, v++)
                    fails += gemm_case(t & 1, t >> 1, sizes[a], sizes[b], sizes[c], alphas[v % 3],
                                       betas[v % 4], (v % 3 == 1) ? 3 : 0);
            }
    if (!small_run && fails == 0) fails += gemm_case(0, 0, 257, 257, 257, 1.0f, 0.0f, 0);
    /* K > 256 crosses a KC slice: later slices accumulate into C */
    if (fails == 0) fails += gemm_case(1, 0, 19, 37, small_run ? 300 : 600, 0.75f, 0.5f, 1);
    if (fails == 0) fails += gemm_case(0, 1, 21, 41, small_run ? 300 : 700, 1.0f, 0.0f, 2);
    /* N > 1024 spans two packed B blocks (GM__NC); M > 384 two packed A blocks (GM__MC);
     * K = 784 is cut into two equal slices */
    if (fails == 0) fails += gemm_case(0, 1, 13, 1100, 40, 1.0f, 0.5f, 1);
    if (fails == 0) fails += gemm_case(0, 0, 11, 1090, 33, -1.0f, 0.0f, 0);
    if (!small_run && fails == 0) fails += gemm_case(0, 1, 400, 45, 784, 1.0f, 0.0f, 3);
    if (!small_run && fails == 0) fails += gemm_case(1, 1, 390, 70, 100, 1.0f, 1.0f, 0);
    /* degenerate: K == 0 scales C, alpha == 0 too */
    {
        float Cs[6] = {1, 2, 3, 4, 5, 6}, Ad[1] = {0}, Bd[1] = {0};
        gm_sgemm(0, 0, 2, 3, 0, 1.0f, Ad, 1, Bd, 3, 2.0f, Cs, 3);
        GM_CHECK_CLOSE(Cs[0], 2.0, 0.0);
        GM_CHECK_CLOSE(Cs[5], 12.0, 0.0);
        gm_sgemm(0, 0, 2, 3, 0, 1.0f, Ad, 1, Bd, 3, 0.0f, Cs, 3);
        GM_CHECK(Cs[0] == 0.0f && Cs[5] == 0.0f, "K=0, beta=0 must zero C");
    }
}

static int force(int p) { return gm_simd_force(p) == 0; }

GM_TEST(test_paths) {
    int p, best = gm_simd_path();
    GM_CHECK(gm_simd_supported(GM_PATH_SCALAR), "scalar must always be supported");
    GM_CHECK(gm_simd_supported(best), "default path %d unsupported", best);
    for (p = best + 1; p < GM_PATH_COUNT; p++)
        GM_CHECK(!gm_simd_supported(p) || p == GM_PATH_NEON, "default %s is not the best", gm_simd_name(best));
    GM_CHECK(strcmp(gm_simd_name(GM_PATH_AVX512), "avx512") == 0, "name");
    GM_CHECK(strcmp(gm_simd_name(GM_PATH_SCALAR), "scalar") == 0, "name");
    GM_CHECK(gm_simd_force(-1) == -1 && gm_simd_force(GM_PATH_COUNT) == -1, "bad path accepted");
    GM_CHECK(gm_simd_path() == best, "failed force changed the path");
#if defined(__x86_64__) && !defined(GENMOD_NO_SIMD) && (defined(__GNUC__) || defined(__clang__))
    GM_CHECK(gm_simd_supported(GM_PATH_SSE2), "x86-64 always has SSE2");
    GM_CHECK(gm_simd_force(GM_PATH_NEON) == -1, "NEON on x86?");
#endif
#if defined(__aarch64__) && !defined(GENMOD_NO_SIMD)
    GM_CHECK(best == GM_PATH_NEON, "aarch64 should default to NEON");
#endif
    printf("# default path: %s, threads: %d\n", gm_simd_name(best), gm_get_threads());
    for (p = 0; p < GM_PATH_COUNT; p++) printf("# %-7s supported=%d\n", gm_simd_name(p), gm_simd_supported(p));
}

#define GEMM_PATH_TEST(name, path)                                                  \
    GM_TEST(name) {                                                                 \
        int saved = gm_simd_path();                                                 \
        if (!force(path)) { printf("# %s: not supported here, skipped\n", #name); return; } \
        gemm_sweep();                                                               \
        gm_simd_force(saved);                                                       \
    }
GEMM_PATH_TEST(test_sgemm_scalar, GM_PATH_SCALAR)
GEMM_PATH_TEST(test_sgemm_sse2, GM_PATH_SSE2)
GEMM_PATH_TEST(test_sgemm_avx2, GM_PATH_AVX2)
GEMM_PATH_TEST(test_sgemm_avx512, GM_PATH_AVX512)
GEMM_PATH_TEST(test_sgemm_neon, GM_PATH_NEON)

/* Same inputs -> bit-identical C at 1, 2, 3 threads, on every path, odd shapes, all transposes. */
GM_TEST(test_sgemm_deterministic) {
    static const int shapes[][3] = {{257, 255, 131}, {100, 784, 256}, {7, 1000, 300}, {45, 47, 1001}};
    int saved = gm_simd_path(), p, s, t, th;
    for (p = 0; p < GM_PATH_COUNT; p++) {
        if (!force(p)) continue;
        for (s = 0; s < 4; s++) {
            const int M = small_run ? shapes[s][0] / 3 + 1 : shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            const size_t na = (size_t)M * K + 8, nb = (size_t)K * N + 8, nc = (size_t)M * N;
            float *A = alloc_f(na), *B = alloc_f(nb), *C1 = alloc_f(nc), *C2 = alloc_f(nc);
            size_t q;
            for (q = 0; q < na; q++) A[q] = rnd();
            for (q = 0; q < nb; q++) B[q] = rnd();
            t = s & 3; /* a different transpose combo per shape */
            gm_set_threads(1);
            gm_sgemm(t & 1, t >> 1, M, N, K, 1.0f, A, (t & 1) ? M : K, B, (t >> 1) ? K : N, 0.0f, C1, N);
            for (th = 2; th <= 3; th++) {
                for (q = 0; q < nc; q++) C2[q] = (float)NAN;
                gm_set_threads(th);
                gm_sgemm(t & 1, t >> 1, M, N, K, 1.0f, A, (t & 1) ? M : K, B, (t >> 1) ? K : N, 0.0f, C2, N);
                GM_CHECK(memcmp(C1, C2, nc * sizeof(float)) == 0, "%s %dx%dx%d t%d: %d threads differ from 1",
                         gm_simd_name(p), M, N, K, t, th);
            }
            free(A); free(B); free(C1); free(C2);
        }
    }
    gm_set_threads(0);
    gm_simd_force(saved);
}

/* ---- thread pool ---- */
static int pf_hits[1000];
static void pf_count(void *ctx, int t) { (void)ctx; __atomic_fetch_add(&pf_hits[t], 1, __ATOMIC_RELAXED); }
static void pf_nested(void *ctx, int t) {
    int *sum = (int *)ctx;
    (void)t;
    gm__parallel_for(10, pf_count, NULL); /* nested: must run serially, not deadlock */
    __atomic_fetch_add(sum, 1, __ATOMIC_RELAXED);
}

GM_TEST(test_parallel_for) {
    int th, i, rep, sum;
    for (th = 1; th <= 4; th++) {
        gm_set_threads(th);
        GM_CHECK(gm_get_threads() == th || gm_get_threads() == 1, "gm_get_threads %d", gm_get_threads());
        for (rep = 0; rep < 50; rep++) { /* many small jobs: exercises the spin handoff */
            memset(pf_hits, 0, sizeof pf_hits);
            gm__parallel_for(rep % 7 + 1 + (rep == 49 ? 990 : 0), pf_count, NULL);
            for (i = 0; i < rep % 7 + 1 + (rep == 49 ? 990 : 0); i++)
                if (pf_hits[i] != 1) { GM_CHECK(0, "threads=%d task %d ran %d times", th, i, pf_hits[i]); break; }
        }
        memset(pf_hits, 0, sizeof pf_hits);
        sum = 0;
        gm__parallel_for(8, pf_nested, &sum);
        GM_CHECK(sum == 8 && pf_hits[0] == 8 && pf_hits[9] == 8, "nested parallel_for: %d %d", sum, pf_hits[0]);
    }
    gm_set_threads(0);
    GM_CHECK(gm_get_threads() >= 1, "default threads");
}

/* ---- vector math ---- */
typedef void (*vfn)(float *, const float *, size_t);
static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double ref_softplus(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }
#define NVMATH 6

/* Error of y against the double reference, in units of the float ulp at the reference
 * (the ulp of the smallest denormal below FLT_MIN). 0 if both are the same inf/NaN. */
static double ulp_err(float y, double r) {
    int e;
    if (isnan(r)) return isnan(y) ? 0.0 : 1e30;
    if (isnan(y)) return 1e30;
    if (fabs(r) >= 3.40282357e38) /* rounds to +-inf in float */
        return (isinf(y) && (y > 0) == (r > 0)) ? 0.0 : 1e30;
    if (isinf(y)) return 1e30;
    frexp(r, &e);
    return fabs((double)y - r) / ldexp(1.0, (e - 24 < -149) ? -149 : e - 24);
}

static float bits2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Sweep of float bit patterns (both signs, all exponents) plus a dense stretch near 0..4. */
static size_t sweep_inputs(float **out) {
    const uint32_t step = small_run ? 65521u : 2039u;
    size_t n = 0, cap = (size_t)(4294967296.0 / step) + 300000;
    float *x = alloc_f(cap);
    uint64_t u;
    for (u = 0; u < 4294967296ull; u += step) x[n++] = bits2f((uint32_t)u);
    for (u = 0; u < 200000 && n < cap; u++) x[n++] = (float)u * (small_run ? 2e-4f : 2e-5f) - 2.0f;
    *out = x;
    return n;
}

static void vmath_path(int p, const float *x, size_t n, double *const refs[NVMATH]) {
    static const char *names[NVMATH] = {"exp", "log", "tanh", "sigmoid", "expm1", "softplus"};
    static const double limit[NVMATH] = {2.0, 2.0, 3.0, 3.0, 4.0, 4.0};
    vfn fns[NVMATH];
    float *y = alloc_f(n);
    int f;
    size_t i;
    fns[0] = gm__vexp; fns[1] = gm__vlog; fns[2] = gm__vtanh; fns[3] = gm__vsigmoid;
    fns[4] = gm__vexpm1; fns[5] = gm__vsoftplus;
    for (f = 0; f < NVMATH; f++) {
        double worst = 0.0;
        size_t wi = 0;
        fns[f](y, x, n);
        for (i = 0; i < n; i++) {
            const double e = ulp_err(y[i], refs[f][i]);
            if (e > worst) { worst = e; wi = i; }
        }
        printf("# %-6s %-7s max %.2f ulp (at x=%.9g: got %.9g want %.9g)\n", gm_simd_name(p), names[f], worst,
               x[wi], y[wi], refs[f][wi]);
        GM_CHECK(worst <= limit[f], "%s %s: %.2f ulp > %.1f at x=%.9g", gm_simd_name(p), names[f], worst,
                 limit[f], x[wi]);
    }
    free(y);
}

static void vmath_specials(int p) {
    const float inf = (float)INFINITY, nan = (float)NAN;
    float x[19], y[19];
    int i;
    /* exp */
    x[0] = inf; x[1] = -inf; x[2] = nan; x[3] = 100.0f; x[4] = -110.0f; x[5] = 0.0f; x[6] = 88.8f; x[7] = -103.0f;
    gm__vexp(y, x, 8);
    GM_CHECK(isinf(y[0]) && y[0] > 0 && y[1] == 0.0f && isnan(y[2]) && isinf(y[3]) && y[4] == 0.0f &&
             y[5] == 1.0f && isinf(y[6]) && y[7] > 0.0f && y[7] < FLT_MIN,
             "%s exp specials: %g %g %g %g %g %g %g %g", gm_simd_name(p), y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]);
    /* log */
    x[0] = 0.0f; x[1] = -0.0f; x[2] = -1.0f; x[3] = inf; x[4] = nan; x[5] = 1.0f; x[6] = -inf; x[7] = 1e-40f;
    gm__vlog(y, x, 8);
    GM_CHECK(isinf(y[0]) && y[0] < 0 && isinf(y[1]) && y[1] < 0 && isnan(y[2]) && isinf(y[3]) && y[3] > 0 &&
             isnan(y[4]) && y[5] == 0.0f && isnan(y[6]) && fabs(y[7] - log(1e-40)) < 1e-4,
             "%s log specials: %g %g %g %g %g %g %g %g", gm_simd_name(p), y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]);
    /* tanh, sigmoid */
    x[0] = inf; x[1] = -inf; x[2] = nan; x[3] = -0.0f; x[4] = 20.0f;
    gm__vtanh(y, x, 5);
    GM_CHECK(y[0] == 1.0f && y[1] == -1.0f && isnan(y[2]) && y[3] == 0.0f && signbit(y[3]) && y[4] == 1.0f,
             "%s tanh specials: %g %g %g %g %g", gm_simd_name(p), y[0], y[1], y[2], y[3], y[4]);
    gm__vsigmoid(y, x, 5);
    GM_CHECK(y[0] == 1.0f && y[1] == 0.0f && isnan(y[2]) && y[3] == 0.5f && y[4] == 1.0f,
             "%s sigmoid specials: %g %g %g %g %g", gm_simd_name(p), y[0], y[1], y[2], y[3], y[4]);
    /* expm1, softplus: inf, -inf, nan, -0, 20 */
    gm__vexpm1(y, x, 5);
    GM_CHECK(isinf(y[0]) && y[0] > 0 && y[1] == -1.0f && isnan(y[2]) && y[3] == 0.0f && fabsf(y[4] / 485165194.4f - 1.0f) < 1e-6f,
             "%s expm1 specials: %g %g %g %g %g", gm_simd_name(p), y[0], y[1], y[2], y[3], y[4]);
    gm__vsoftplus(y, x, 5);
    GM_CHECK(isinf(y[0]) && y[0] > 0 && y[1] == 0.0f && isnan(y[2]) && fabsf(y[3] - 0.693147181f) < 1e-7f && y[4] == 20.0f,
             "%s softplus specials: %g %g %g %g %g", gm_simd_name(p), y[0], y[1], y[2], y[3], y[4]);
    /* in place, and every tail length: element i must not depend on n */
    for (i = 0; i < 19; i++) x[i] = (float)i * 0.37f - 3.0f;
    for (i = 1; i <= 19; i++) {
        float z[19];
        memcpy(z, x, sizeof z);
        gm__vtanh(z, z, (size_t)i);
        gm__vtanh(y, x, 19);
        GM_CHECK(memcmp(z, y, (size_t)i * sizeof(float)) == 0 && (i == 19 || z[i] == x[i]),
                 "%s tanh in place / tail %d", gm_simd_name(p), i);
    }
}

/* The path transposes (the layout moves around convolutions) against the definition, bit-exact
   (a transpose only moves floats): every edge shape around the vector width, padded strides. The
   strides (sld = cols + 3, dld = rows + 5) take both loop orders of the kernel: dst's rows farther
   apart than src's (rows >= cols - 1) and the other way. */
GM_TEST(test_transpose_paths) {
    static const int sizes[] = {1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 49, 64};
    const int ns = (int)(sizeof sizes / sizeof sizes[0]);
    int saved = gm_simd_path(), p, a, b;
    float *src = alloc_f(64 * 70), *dst = alloc_f(64 * 70);
    for (a = 0; a < 64 * 70; a++) src[a] = (float)a * 0.5f - 7.0f;
    for (p = 0; p < GM_PATH_COUNT; p++) {
        if (!force(p)) continue;
        for (a = 0; a < ns; a++)
            for (b = 0; b < ns; b++) {
                const int rows = sizes[a], cols = sizes[b], sld = cols + 3, dld = rows + 5;
                int i, j, bad = 0;
                for (i = 0; i < 64 * 70; i++) dst[i] = -1.0f;
                gm__ops()->transpose(src, sld, dst, dld, rows, cols);
                for (i = 0; i < rows; i++)
                    for (j = 0; j < cols; j++) bad += dst[(size_t)j * dld + i] != src[(size_t)i * sld + j];
                for (j = 0; j < cols; j++)  /* the padding of each destination row is untouched */
                    for (i = rows; i < dld && (size_t)j * dld + i < 64 * 70; i++) bad += dst[(size_t)j * dld + i] != -1.0f;
                GM_CHECK(bad == 0, "%s transpose %dx%d: %d wrong", gm_simd_name(p), rows, cols, bad);
            }
    }
    free(src);
    free(dst);
    gm_simd_force(saved);
}

GM_TEST(test_vmath) {
    int saved = gm_simd_path(), p;
    float *x;
    size_t n = sweep_inputs(&x), i;
    double *refs[NVMATH];
    for (p = 0; p < NVMATH; p++) refs[p] = (double *)malloc(n * sizeof(double));
    for (i = 0; i < n; i++) {
        const double d = x[i];
        refs[0][i] = exp(d);
        refs[1][i] = log(d);
        refs[2][i] = tanh(d);
        refs[3][i] = ref_sigmoid(d);
        refs[4][i] = expm1(d);
        refs[5][i] = ref_softplus(d);
    }
    for (p = 0; p < GM_PATH_COUNT; p++) {
        if (!force(p)) continue;
        vmath_path(p, x, n, refs);
        vmath_specials(p);
    }
    for (p = 0; p < NVMATH; p++) free(refs[p]);
    free(x);
    gm_simd_force(saved);
}

/* The fused maps (group norm, silu's gradient, the gated unit and its gradient) on every path
   against double references: |y - ref| <= 4 float epsilons times the sum of the magnitudes of
   the terms (the vector tanh and sigmoid are within 3 ulp; 1 - t^2 and s (1 - s) cancel, so the
   bound is on the terms, not the result). Every tail length gives each element the same bits. */
static double fused_ref(int op, double a, double b, double c, const float *f, double *mag) {
    const double t = tanh(b), s = ref_sigmoid(op == GM__FU_SILU_GRAD ? b : c);
    switch (op) {
    case GM__FU_NORM: *mag = fabs((a - f[0]) * f[1]) + fabs(f[2]); return (a - f[0]) * f[1] + f[2];
    case GM__FU_NORM_GRAD:
        *mag = fabs(f[0] * a) + fabs(f[1] * (b - f[2])) + fabs(f[3]);
        return f[0] * a + f[1] * (b - f[2]) + f[3];
    case GM__FU_SILU_GRAD: *mag = fabs(a) * s * (1 + fabs(b)); return a * s * (1 + b * (1 - s));
    case GM__FU_GATE: *mag = fabs(tanh(a) * ref_sigmoid(b)); return tanh(a) * ref_sigmoid(b);
    case GM__FU_GATE_DA: *mag = fabs(a) * s * (1 + t * t); return a * s * (1 - t * t);
    default: *mag = fabs(a * t) * s * (1 + s); return a * t * s * (1 - s);
    }
}

GM_TEST(test_fused_paths) {
    enum { N = 203 };
    static const float f[4] = {0.3f, 1.7f, -0.4f, 0.25f};
    int saved = gm_simd_path(), p, op, i, len;
    float a[N], b[N], c[N], y[N], z[N];
    for (i = 0; i < N; i++) { a[i] = 4.0f * rnd(); b[i] = 4.0f * rnd(); c[i] = 4.0f * rnd(); }
    for (p = 0; p < GM_PATH_COUNT; p++) {
        double all = 0;
        if (!force(p)) continue;
        for (op = GM__FU_NORM; op <= GM__FU_GATE_DB; op++) {
            double worst = 0;
            gm__vfused(op, y, a, b, c, N, f);
            for (i = 0; i < N; i++) {
                double mag, r = fused_ref(op, a[i], b[i], c[i], f, &mag), e = fabs(y[i] - r) / (mag > 1e-30 ? mag : 1e-30);
                if (e > worst) worst = e;
            }
            GM_CHECK(worst <= 4 * FLT_EPSILON, "%s fused op %d: error %g of the terms' magnitude", gm_simd_name(p), op, worst);
            if (worst > all) all = worst;
            for (len = 1; len <= 37; len++) {
                for (i = 0; i < N; i++) z[i] = -9.0f;
                gm__vfused(op, z + 5, a + 5, b + 5, c + 5, (size_t)len, f);
                GM_CHECK(memcmp(z + 5, y + 5, (size_t)len * sizeof(float)) == 0 && z[4] == -9.0f && z[5 + len] == -9.0f,
                         "%s fused op %d: tail of %d", gm_simd_name(p), op, len);
            }
        }
        printf("# %-6s fused maps: max error %.2f float eps of the terms\n", gm_simd_name(p), all / FLT_EPSILON);
    }
    gm_simd_force(saved);
}

/* ---- denormal flush: runs last, it changes the main thread's FP mode ---- */
#if !defined(GENMOD_NO_THREADS) && !defined(_WIN32)
static pthread_t main_tid;
static int dn_flushed[64], dn_onmain[64];
static void dn_task(void *ctx, int t) {
    volatile float tiny = 1e-37f, r;
    volatile int spin;
    (void)ctx;
    for (spin = 0; spin < 20000; spin++) {} /* give the worker a chance to take tasks */
    r = tiny * 1e-3f;
    dn_flushed[t] = (r == 0.0f);
    dn_onmain[t] = pthread_equal(pthread_self(), main_tid) != 0;
}
#endif

GM_TEST(test_flush_denormals) {
    volatile float tiny = 1e-37f, den = 1e-40f, r;
    r = tiny * 1e-3f;
    GM_CHECK(r != 0.0f, "denormals already flushed before gm_flush_denormals (%g)", (double)r);
#if !defined(GENMOD_NO_THREADS) && !defined(_WIN32)
    {
        int t, worker_seen = 0;
        main_tid = pthread_self();
        gm_set_threads(2);
        gm__parallel_for(64, dn_task, NULL);
        for (t = 0; t < 64; t++) {
            if (dn_onmain[t]) GM_CHECK(!dn_flushed[t], "main thread flushed early");
            else { worker_seen = 1; GM_CHECK(dn_flushed[t], "pool thread did not flush denormals"); }
        }
        if (!worker_seen) printf("# no task ran on a worker (single core?)\n");
        gm_set_threads(0);
    }
#endif
    gm_flush_denormals();
    r = tiny * 1e-3f;
    GM_CHECK(r == 0.0f, "FTZ: denormal result not flushed (%g)", (double)r);
    r = den * 1.0f;
#if !defined(__aarch64__) /* aarch64 FZ flushes inputs too, but qemu may not model it */
    GM_CHECK(r == 0.0f, "DAZ: denormal input not treated as zero (%g)", (double)r);
#endif
}

int main(void) {
    const char *s = getenv("GM_TEST_SMALL");
    small_run = s && s[0] == '1';
    GM_RUN(test_paths);
    GM_RUN(test_parallel_for);
    GM_RUN(test_sgemm_scalar);
    GM_RUN(test_sgemm_sse2);
    GM_RUN(test_sgemm_avx2);
    GM_RUN(test_sgemm_avx512);
    GM_RUN(test_sgemm_neon);
    GM_RUN(test_sgemm_deterministic);
    GM_RUN(test_vmath);
    GM_RUN(test_transpose_paths);
    GM_RUN(test_fused_paths);
    GM_RUN(test_flush_denormals);
    return gm_test_summary();
}
