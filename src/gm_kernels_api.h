/* ---- genmod compute kernels: SIMD dispatch, thread pool, sgemm ------------------------------ */
#ifndef GM_KERNELS_API_H
#define GM_KERNELS_API_H

/* SIMD code paths. GM_PATH_SCALAR is always available; the others depend on the CPU and build. */
enum { GM_PATH_SCALAR = 0, GM_PATH_SSE2, GM_PATH_AVX2, GM_PATH_AVX512, GM_PATH_NEON, GM_PATH_COUNT };

GMDEF int  gm_simd_path(void);              /* the path in use (best supported by default) */
GMDEF int  gm_simd_force(int path);         /* use this path from now on; 0, or -1 if unsupported (nothing changes) */
GMDEF int  gm_simd_supported(int path);     /* 1 if this CPU + build can run it */
GMDEF const char *gm_simd_name(int path);   /* "scalar", "sse2", "avx2", "avx512", "neon" ("?" if out of range) */

GMDEF void gm_set_threads(int n);           /* kernel threads; n <= 0 means all cores; default all cores */
GMDEF int  gm_get_threads(void);
GMDEF void gm_flush_denormals(void);        /* FTZ+DAZ in the calling thread; pool threads do it themselves */

/* C = alpha * op(A) * op(B) + beta * C, all row-major.
 * op(A) is (M,K): A is (M,K) with row stride lda, or (K,M) if ta.
 * op(B) is (K,N): B is (K,N) with row stride ldb, or (N,K) if tb.
 * C is (M,N) with row stride ldc. beta == 0 means C is not read (it may hold NaN).
 * The result is bit-identical for any thread count (work is split over output tiles only). */
GMDEF void gm_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);

#endif /* GM_KERNELS_API_H */
