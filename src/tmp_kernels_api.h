/* TEMPORARY scalar kernels until src/gm_kernels_impl.h lands. */
GMDEF void gm_set_threads(int n);
GMDEF int gm_get_threads(void);
GMDEF void gm_flush_denormals(void);
GMDEF void gm_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);
