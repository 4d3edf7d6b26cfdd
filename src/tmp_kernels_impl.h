void gm_set_threads(int n) { (void)n; }
int gm_get_threads(void) { return 1; }
void gm_flush_denormals(void) {}
void gm_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    int i, j, k;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            float s = 0;
            for (k = 0; k < K; k++) s += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
            C[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * C[i * ldc + j]);
        }
}
static void gm__parallel_for(int ntasks, void (*fn)(void *ctx, int task), void *ctx) { int i; for (i = 0; i < ntasks; i++) fn(ctx, i); }
static void gm__vexp(float *y, const float *x, size_t n) { size_t i; for (i = 0; i < n; i++) y[i] = expf(x[i]); }
static void gm__vlog(float *y, const float *x, size_t n) { size_t i; for (i = 0; i < n; i++) y[i] = logf(x[i]); }
static void gm__vtanh(float *y, const float *x, size_t n) { size_t i; for (i = 0; i < n; i++) y[i] = tanhf(x[i]); }
static void gm__vsigmoid(float *y, const float *x, size_t n) { size_t i; for (i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i])); }
