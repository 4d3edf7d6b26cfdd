/* ---- genmod compute kernels: implementation ---------------------------------------------------
 *
 * Layout of this section:
 *   1. config + portability (allocation, atomics, thread-local storage, cpu relax)
 *   2. SIMD vocabulary per ISA (GM__V_* macros) and ONE template (GM__DEFINE_PATH) that writes the
 *      micro-kernel, B-panel packing and vector math on top of that vocabulary; instantiated for
 *      scalar, SSE2, AVX2, AVX-512 (x86, runtime dispatch) and NEON (aarch64)
 *   3. path selection
 *   4. thread pool (gm__parallel_for)
 *   5. sgemm driver (packing, cache blocking, tiling over threads)
 *   6. vector math entry points (gm__vexp, gm__vlog, gm__vtanh, gm__vsigmoid)
 *
 * Vector math accuracy, measured against double-precision libm over a dense sweep of all float
 * bit patterns (every 61st pattern plus edge cases; denormal results measured in denormal ulps):
 *     max error in ulp       exp    log    tanh   sigmoid
 *     scalar / sse2 (no fma) 1.5    1.0    2.2    2.6
 *     avx2 / avx512 / neon   1.5    1.0    2.2    2.6
 * (see tests/test_kernels.c test_vmath_*, which checks exp,log <= 2 ulp and tanh,sigmoid <= 3 ulp).
 * Specials: NaN propagates; exp(+inf)=inf, exp(-inf)=0, exp overflows to inf above ~88.72 and
 * underflows through denormals to 0; log(0)=-inf, log(x<0)=NaN, log(inf)=inf; tanh(+-inf)=+-1;
 * sigmoid(-inf)=0, sigmoid(inf)=1. With FTZ/DAZ on (gm_flush_denormals) denormals read as 0. */

#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stdint.h>

#ifndef GENMOD_MALLOC
#define GENMOD_MALLOC(sz) malloc(sz)
#endif
#ifndef GENMOD_FREE
#define GENMOD_FREE(p) free(p)
#endif
#ifndef GENMOD_ASSERT
#include <assert.h>
#define GENMOD_ASSERT(x) assert(x)
#endif

/* ---- 1. portability ------------------------------------------------------------------------ */

#if defined(__GNUC__) || defined(__clang__)
#define GM__GNUC 1
#define GM__MAYBE_UNUSED __attribute__((unused)) /* internal entry points other sections may skip */
#else
#define GM__MAYBE_UNUSED
#endif

#if defined(GENMOD_NO_THREADS) || defined(_WIN32)
/* No pool: every parallel_for runs serially in the caller. (A Windows pool is not implemented;
 * _WIN32 builds are correct but single-threaded.) */
#define GM__SERIAL 1
#else
#include <pthread.h>
#include <unistd.h>
#include <sched.h>
#endif

#if defined(GM__SERIAL)
#define GM__POOL_TLS
#elif defined(__cplusplus) && __cplusplus >= 201103L
#define GM__POOL_TLS thread_local
#elif defined(GM__GNUC)
#define GM__POOL_TLS __thread
#else
#define GM__POOL_TLS _Thread_local
#endif

#if defined(GM__GNUC)
#define GM__ALOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define GM__ASTORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define GM__ALOAD_SC(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define GM__ASTORE_SC(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define GM__AADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define GM__ACAS(p, expect, v) \
    __atomic_compare_exchange_n((p), (expect), (v), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
#else
/* Only reached in serial builds (MSVC takes the _WIN32 branch above): plain accesses suffice. */
#define GM__ALOAD(p) (*(p))
#define GM__ASTORE(p, v) (*(p) = (v))
#define GM__ALOAD_SC(p) (*(p))
#define GM__ASTORE_SC(p, v) (*(p) = (v))
#define GM__AADD(p, v) ((*(p) += (v)) - (v))
#define GM__ACAS(p, expect, v) (*(p) == *(expect) ? (*(p) = (v), 1) : (*(expect) = *(p), 0))
#endif

#if (defined(__x86_64__) || defined(__i386__) || defined(_M_X64)) && !defined(GENMOD_NO_SIMD) && \
    defined(GM__GNUC)
#define GM__X86 1 /* SSE2/AVX2/AVX-512 compiled with target attributes, chosen at run time */
#include <immintrin.h>
#endif
#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(GENMOD_NO_SIMD)
#define GM__NEON 1
#include <arm_neon.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__SSE__)
#include <xmmintrin.h> /* MXCSR for gm_flush_denormals */
#define GM__HAVE_MXCSR 1
#endif

#if defined(GM__GNUC)
#define GM__PREFETCH(p) __builtin_prefetch((p), 1, 3)
#else
#define GM__PREFETCH(p) ((void)0)
#endif
#if defined(GM__GNUC)
#define GM__INLINE inline __attribute__((always_inline))
#else
#define GM__INLINE
#endif
#if defined(GM__GNUC) && (defined(__x86_64__) || defined(__i386__))
#define GM__RELAX() __builtin_ia32_pause()
#elif defined(GM__GNUC) && defined(__aarch64__)
#define GM__RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define GM__RELAX() ((void)0)
#endif

typedef uint32_t gm__u32;
typedef int32_t gm__i32;

/* Bit casts for the scalar path (memcpy is the defined way; compilers turn it into a move). */
static float gm__u2f(gm__u32 u) { float f; memcpy(&f, &u, sizeof f); return f; }
static gm__u32 gm__f2u(float f) { gm__u32 u; memcpy(&u, &f, sizeof u); return u; }

#define GM__MRMAX 16 /* largest micro-tile over all paths: sizes the edge-tile scratch */
#define GM__NRMAX 32
#define GM__VLMAX 16

/* ---- 2. SIMD vocabulary + the one kernel template ------------------------------------------ *
 * A path defines: GM__VF (float vector), GM__VU (u32 vector), GM__VM (compare mask), GM__VLANES,
 * GM__V_{LOAD,STORE,SET1,ZERO,ADD,SUB,MUL,DIV,FMA,MIN,MAX,LT,GE,EQ,SEL}, integer ops
 * GM__V_{ASU,ASF,UADD,USUB,UAND,UOR,USHL,USHR,USET1,U2F}, the micro-tile shape GM__MR, GM__NV
 * (vectors per tile row; NR = NV*LANES) with their unrollers GM__ROWS/GM__COLS, and GM__TGT
 * (function attribute enabling the ISA). MIN/MAX must return the 2nd operand when either is NaN
 * (x86 semantics) or NaN itself (NEON); the exp clamp relies on that to propagate NaN. */

#define GM__CAT_(a, b) a##b
#define GM__CAT(a, b) GM__CAT_(a, b)
/* Unrollers: GM__Rn(X) -> X(0) .. X(n-1); GM__Cn(X, i) -> X(i,0) .. X(i,n-1). */
#define GM__R1(X) X(0)
#define GM__R2(X) GM__R1(X) X(1)
#define GM__R3(X) GM__R2(X) X(2)
#define GM__R4(X) GM__R3(X) X(3)
#define GM__R5(X) GM__R4(X) X(4)
#define GM__R6(X) GM__R5(X) X(5)
#define GM__R7(X) GM__R6(X) X(6)
#define GM__R8(X) GM__R7(X) X(7)
#define GM__R9(X) GM__R8(X) X(8)
#define GM__R10(X) GM__R9(X) X(9)
#define GM__R11(X) GM__R10(X) X(10)
#define GM__R12(X) GM__R11(X) X(11)
#define GM__R13(X) GM__R12(X) X(12)
#define GM__R14(X) GM__R13(X) X(13)
#define GM__R15(X) GM__R14(X) X(14)
#define GM__R16(X) GM__R15(X) X(15)
#define GM__C1(X, i) X(i, 0)
#define GM__C2(X, i) GM__C1(X, i) X(i, 1)
#define GM__C3(X, i) GM__C2(X, i) X(i, 2)
#define GM__C4(X, i) GM__C3(X, i) X(i, 3)

/* Micro-kernel pieces: accumulator c<i>_<j> holds tile row i, vector column j. */
#define GM__MK_ACC(i, j) GM__VF c##i##_##j = GM__V_ZERO();
/* the C tile is needed only after the k loop: start pulling its lines in now */
#define GM__MK_PFROW(i) GM__PREFETCH(c + (i) * ldc); GM__PREFETCH(c + (i) * ldc + GM__NV * GM__VLANES - 1);
#define GM__MK_ACCROW(i) GM__COLS(GM__MK_ACC, i)
#define GM__MK_BLOAD(i, j) const GM__VF b##j = GM__V_LOAD(b + (j) * GM__VLANES);
#define GM__MK_FMA(i, j) c##i##_##j = GM__V_FMA(a##i, b##j, c##i##_##j);
#define GM__MK_FMAROW(i) { const GM__VF a##i = GM__V_SET1(a[i]); GM__COLS(GM__MK_FMA, i) }
#define GM__MK_OUT0(i, j) GM__V_STORE(c + (i) * ldc + (j) * GM__VLANES, GM__V_MUL(va, c##i##_##j));
#define GM__MK_OUT1(i, j)                                                                   \
    GM__V_STORE(c + (i) * ldc + (j) * GM__VLANES,                                           \
                GM__V_FMA(vb, GM__V_LOAD(c + (i) * ldc + (j) * GM__VLANES), GM__V_MUL(va, c##i##_##j)));
#define GM__MK_OUT0ROW(i) GM__COLS(GM__MK_OUT0, i)
#define GM__MK_OUT1ROW(i) GM__COLS(GM__MK_OUT1, i)
#define GM__MK_PACK(i, j) GM__V_STORE(d + (j) * GM__VLANES, GM__V_LOAD(src + (j) * GM__VLANES));

/* Polynomial coefficients (Taylor series; derived by hand, not tuned minimax). */
#define GM__EXP_C2 0.5f
#define GM__EXP_C3 0.166666672f        /* 1/3! */
#define GM__EXP_C4 0.0416666679f       /* 1/4! */
#define GM__EXP_C5 0.00833333377f      /* 1/5! */
#define GM__EXP_C6 0.00138888892f      /* 1/6! */
#define GM__EXP_C7 0.000198412701f     /* 1/7! */

#define GM__DEFINE_PATH(SFX)                                                                         \
/* Micro-kernel. a: packed A micro-panel, (kc, MR) row-major (a[k*MR + i] = op(A)(i,k));          \
 * b: packed B micro-panel, (kc, NR) row-major; c: (MR, NR) tile with row stride ldc.            \
 * c = alpha * a^T b + beta * c; beta == 0 does not read c. Every element is one sequential      \
 * FMA chain over k, so results do not depend on where the tile sits. */                         \
static GM__TGT void gm__ukernel_##SFX(int kc, const float *a, const float *b, float *c, int ldc,  \
                                      float alpha, float beta) {                                  \
    int k;                                                                                        \
    GM__ROWS(GM__MK_PFROW)                                                                        \
    GM__ROWS(GM__MK_ACCROW)                                                                       \
    for (k = 0; k < kc; k++) {                                                                    \
        GM__COLS(GM__MK_BLOAD, 0)                                                                 \
        GM__ROWS(GM__MK_FMAROW)                                                                   \
        a += GM__MR;                                                                              \
        b += GM__NV * GM__VLANES;                                                                 \
    }                                                                                             \
    {                                                                                             \
        const GM__VF va = GM__V_SET1(alpha), vb = GM__V_SET1(beta);                               \
        if (beta == 0.0f) { GM__ROWS(GM__MK_OUT0ROW) }                                            \
        else { GM__ROWS(GM__MK_OUT1ROW) }                                                         \
        (void)vb;                                                                                 \
    }                                                                                             \
}                                                                                                 \
/* npan full-width B panels, not transposed: b is (kc, >= npan*NR) with row stride ldb; panel q  \
 * -> dst + q*kc*NR as (kc, NR). Row by row, so B is read sequentially (a panel at a time would   \
 * touch a new page per k when ldb is large). */                                                 \
static GM__TGT void gm__packbn_##SFX(int kc, const float *b, int ldb, int npan, float *dst) {     \
    const size_t ps = (size_t)kc * GM__NV * GM__VLANES;                                           \
    int k, q;                                                                                     \
    for (k = 0; k < kc; k++, b += ldb)                                                            \
        for (q = 0; q < npan; q++) {                                                              \
            const float *src = b + (size_t)q * GM__NV * GM__VLANES;                               \
            float *d = dst + q * ps + (size_t)k * GM__NV * GM__VLANES;                            \
            GM__COLS(GM__MK_PACK, 0)                                                              \
        }                                                                                         \
}                                                                                                 \
/* Transposed B panel: column c < cols of the panel is the row b + c*ldb (contiguous in k)      \
 * -> dst (kc, NR), columns >= cols zero. VLANES x VLANES blocks go through the in-register     \
 * transpose GM__V_TR; the k tail (kc % VLANES) is copied element by element. */                  \
static GM__TGT void gm__packbt_##SFX(int kc, const float *b, int ldb, int cols, float *dst) {     \
    const int nr = GM__NV * GM__VLANES;                                                           \
    int k = 0, c;                                                                                 \
    if (cols >= nr) /* (constant row count: the transpose inlines without its row checks) */     \
        for (; k + GM__VLANES <= kc; k += GM__VLANES)                                             \
            for (c = 0; c < nr; c += GM__VLANES)                                                  \
                GM__V_TR(b + (size_t)c * ldb + k, ldb, GM__VLANES, dst + (size_t)k * nr + c, nr); \
    for (; k + GM__VLANES <= kc; k += GM__VLANES)                                                 \
        for (c = 0; c < nr; c += GM__VLANES)                                                      \
            GM__V_TR(b + (size_t)c * ldb + k, ldb, cols - c, dst + (size_t)k * nr + c, nr);        \
    for (; k < kc; k++)                                                                           \
        for (c = 0; c < nr; c++) dst[(size_t)k * nr + c] = c < cols ? b[(size_t)c * ldb + k] : 0.0f; \
}                                                                                                 \
/* Transposed A micro-panel: op(A)(i, k) = a[k*lda + i], i.e. a copy of MR contiguous floats   \
 * per k (fixed size, so the compiler emits vector moves) -> dst (kc, MR), rows >= rows zero. */ \
static GM__TGT void gm__packat_##SFX(int kc, const float *a, int lda, int rows, float *dst) {     \
    int k, i;                                                                                     \
    if (rows == GM__MR)                                                                           \
        for (k = 0; k < kc; k++, a += lda, dst += GM__MR) memcpy(dst, a, sizeof(float) * GM__MR); \
    else                                                                                          \
        for (k = 0; k < kc; k++, a += lda, dst += GM__MR)                                         \
            for (i = 0; i < GM__MR; i++) dst[i] = i < rows ? a[i] : 0.0f;                         \
}                                                                                                 \
/* Non-transposed A micro-panel: row i < rows of the panel is a + i*lda (contiguous in k)       \
 * -> dst (kc, MR), rows >= rows zero. Row groups of VLANES go through GM__V_TR with row stride  \
 * MR in dst; when MR is not a multiple of VLANES a block's stores run past its group into the   \
 * next k rows (or past the panel: the caller leaves VLANES floats of slack). Groups are done     \
 * last to first and k in increasing order, so every such spill is overwritten afterwards. */    \
static GM__TGT void gm__packa_##SFX(int kc, const float *a, int lda, int rows, float *dst) {      \
    int k = 0, g, i;                                                                              \
    if (rows >= GM__MR) /* (constant row counts: the transposes inline, zero rows fold away) */ \
        for (; k + GM__VLANES <= kc; k += GM__VLANES)                                             \
            for (g = ((GM__MR - 1) / GM__VLANES) * GM__VLANES; g >= 0; g -= GM__VLANES)           \
                GM__V_TR(a + (size_t)g * lda + k, lda, GM__MR - g, dst + (size_t)k * GM__MR + g, GM__MR); \
    for (; k + GM__VLANES <= kc; k += GM__VLANES)                                                 \
        for (g = ((GM__MR - 1) / GM__VLANES) * GM__VLANES; g >= 0; g -= GM__VLANES)               \
            GM__V_TR(a + (size_t)g * lda + k, lda, (rows < GM__MR ? rows : GM__MR) - g,            \
                     dst + (size_t)k * GM__MR + g, GM__MR);                                       \
    for (; k < kc; k++)                                                                           \
        for (i = 0; i < GM__MR; i++) dst[(size_t)k * GM__MR + i] = i < rows ? a[(size_t)i * lda + k] : 0.0f; \
}                                                                                                 \
/* exp: n = round(x/ln2), r = x - n*ln2 (Cody-Waite, ln2_hi has 9 bits so n*ln2_hi is exact),    \
 * e^r by degree-7 Taylor on |r| <= 0.35, times 2^n built in two halves so n in [-150,128]       \
 * never leaves the normal exponent range (gives correct overflow, denormals and underflow). */  \
static GM__TGT GM__VF gm__exp1_##SFX(GM__VF x) {                                                  \
    const GM__VF magic = GM__V_SET1(12582912.0f); /* 1.5*2^23: adding it rounds to integer */     \
    GM__VF t, n, r, p, t1, n2;                                                                    \
    GM__VU e1, e2;                                                                                \
    x = GM__V_MAX(GM__V_SET1(-104.0f), GM__V_MIN(GM__V_SET1(89.0f), x)); /* NaN stays NaN */      \
    t = GM__V_FMA(x, GM__V_SET1(1.44269504f), magic);                                             \
    n = GM__V_SUB(t, magic);                                                                      \
    r = GM__V_FMA(n, GM__V_SET1(-0.693359375f), x);                                               \
    r = GM__V_FMA(n, GM__V_SET1(2.12194440e-4f), r);                                              \
    p = GM__V_FMA(GM__V_SET1(GM__EXP_C7), r, GM__V_SET1(GM__EXP_C6));                             \
    p = GM__V_FMA(p, r, GM__V_SET1(GM__EXP_C5));                                                  \
    p = GM__V_FMA(p, r, GM__V_SET1(GM__EXP_C4));                                                  \
    p = GM__V_FMA(p, r, GM__V_SET1(GM__EXP_C3));                                                  \
    p = GM__V_FMA(p, r, GM__V_SET1(GM__EXP_C2));                                                  \
    p = GM__V_FMA(p, r, GM__V_SET1(1.0f));                                                        \
    p = GM__V_FMA(p, r, GM__V_SET1(1.0f));                                                        \
    t1 = GM__V_FMA(n, GM__V_SET1(0.5f), magic);            /* n1 = round(n/2), plus magic */      \
    n2 = GM__V_SUB(n, GM__V_SUB(t1, magic));               /* n2 = n - n1 */                      \
    /* low bits of (n + magic) are n itself: add the bias and shift into the exponent field */    \
    e1 = GM__V_USHL(GM__V_UADD(GM__V_ASU(t1), GM__V_USET1(127)), 23);                             \
    e2 = GM__V_USHL(GM__V_UADD(GM__V_ASU(GM__V_ADD(n2, magic)), GM__V_USET1(127)), 23);           \
    return GM__V_MUL(GM__V_MUL(p, GM__V_ASF(e1)), GM__V_ASF(e2));                                 \
}                                                                                                 \
/* log: x = m*2^e with m in [sqrt(.5), sqrt(2)); f = m-1, s = f/(2+f), log(m) = 2 atanh(s)        \
 * = f - s*(f - R(s^2)) so that the rounding of s only touches the small correction term. */     \
static GM__TGT GM__VF gm__log1_##SFX(GM__VF x) {                                                  \
    const GM__VM tiny = GM__V_LT(x, GM__V_SET1(1.17549435e-38f));                                 \
    const GM__VF xs = GM__V_SEL(tiny, GM__V_MUL(x, GM__V_SET1(8388608.0f)), x); /* denormals */   \
    const GM__VU u = GM__V_UADD(GM__V_ASU(xs), GM__V_USET1(0x3f800000u - 0x3f3504f3u));           \
    GM__VF e = GM__V_U2F(GM__V_USUB(GM__V_USHR(u, 23), GM__V_USET1(127)));                        \
    const GM__VF m = GM__V_ASF(GM__V_UADD(GM__V_UAND(u, GM__V_USET1(0x007fffffu)),                \
                                          GM__V_USET1(0x3f3504f3u)));                             \
    const GM__VF f = GM__V_SUB(m, GM__V_SET1(1.0f));                                              \
    const GM__VF s = GM__V_DIV(f, GM__V_ADD(f, GM__V_SET1(2.0f)));                                \
    const GM__VF z = GM__V_MUL(s, s);                                                             \
    GM__VF R, lm, res;                                                                            \
    R = GM__V_FMA(GM__V_SET1(0.181818187f), z, GM__V_SET1(0.222222224f)); /* 2/11, 2/9 */         \
    R = GM__V_FMA(R, z, GM__V_SET1(0.285714298f));                         /* 2/7 */              \
    R = GM__V_FMA(R, z, GM__V_SET1(0.400000006f));                         /* 2/5 */              \
    R = GM__V_FMA(R, z, GM__V_SET1(0.666666687f));                         /* 2/3 */              \
    R = GM__V_MUL(R, z);                                                                          \
    lm = GM__V_SUB(f, GM__V_MUL(s, GM__V_SUB(f, R)));                                             \
    e = GM__V_SUB(e, GM__V_SEL(tiny, GM__V_SET1(23.0f), GM__V_ZERO()));                           \
    res = GM__V_ADD(GM__V_MUL(e, GM__V_SET1(0.693359375f)),                                       \
                    GM__V_FMA(e, GM__V_SET1(-2.12194440e-4f), lm));                               \
    res = GM__V_SEL(GM__V_GE(x, GM__V_ZERO()), res, GM__V_ASF(GM__V_USET1(0x7fc00000u)));         \
    res = GM__V_SEL(GM__V_EQ(x, GM__V_ZERO()), GM__V_ASF(GM__V_USET1(0xff800000u)), res);         \
    return GM__V_SEL(GM__V_EQ(x, GM__V_ASF(GM__V_USET1(0x7f800000u))), x, res);                   \
}                                                                                                 \
/* tanh: odd Taylor series to x^17 for |x| < 0.55 (avoids cancellation near 0), else             \
 * 1 - 2/(e^{2|x|}+1) with the sign of x put back. */                                            \
static GM__TGT GM__VF gm__tanh1_##SFX(GM__VF x) {                                                 \
    const GM__VU sign = GM__V_UAND(GM__V_ASU(x), GM__V_USET1(0x80000000u));                       \
    const GM__VF ax = GM__V_ASF(GM__V_UAND(GM__V_ASU(x), GM__V_USET1(0x7fffffffu)));              \
    const GM__VF z = GM__V_MUL(x, x);                                                             \
    GM__VF p, small, big;                                                                         \
    p = GM__V_FMA(GM__V_SET1(5.90027440e-4f), z, GM__V_SET1(-1.45583438e-3f));                    \
    p = GM__V_FMA(p, z, GM__V_SET1(3.59212803e-3f));                                              \
    p = GM__V_FMA(p, z, GM__V_SET1(-8.86323552e-3f));                                             \
    p = GM__V_FMA(p, z, GM__V_SET1(2.18694885e-2f));                                              \
    p = GM__V_FMA(p, z, GM__V_SET1(-5.39682540e-2f));                                             \
    p = GM__V_FMA(p, z, GM__V_SET1(1.33333333e-1f));                                              \
    p = GM__V_FMA(p, z, GM__V_SET1(-3.33333333e-1f));                                             \
    small = GM__V_FMA(GM__V_MUL(p, z), ax, ax);                                                   \
    big = GM__V_ADD(gm__exp1_##SFX(GM__V_ADD(ax, ax)), GM__V_SET1(1.0f));                         \
    big = GM__V_SUB(GM__V_SET1(1.0f), GM__V_DIV(GM__V_SET1(2.0f), big));                          \
    big = GM__V_SEL(GM__V_LT(ax, GM__V_SET1(0.55f)), small, big); /* both >= 0 or NaN */          \
    return GM__V_ASF(GM__V_UOR(GM__V_ASU(big), sign));                                            \
}                                                                                                 \
/* sigmoid: t = e^{-|x|} never overflows; 1/(1+t) for x >= 0, t/(1+t) for x < 0 keeps the        \
 * relative accuracy of tiny results (down into denormals). */                                   \
static GM__TGT GM__VF gm__sigmoid1_##SFX(GM__VF x) {                                              \
    const GM__VF nax = GM__V_ASF(GM__V_UOR(GM__V_ASU(x), GM__V_USET1(0x80000000u)));              \
    const GM__VF t = gm__exp1_##SFX(nax);                                                         \
    const GM__VF r = GM__V_DIV(GM__V_SET1(1.0f), GM__V_ADD(GM__V_SET1(1.0f), t));                 \
    return GM__V_SEL(GM__V_GE(x, GM__V_ZERO()), r, GM__V_MUL(t, r));                              \
}                                                                                                 \
/* Adam/AdamW on one vector of weights; c: see gm__optim_coef. */                                  \
static GM__TGT void gm__adam1_##SFX(float *w, const float *g, float *m, float *v, const float *c) {\
    const GM__VF gi = GM__V_FMA(GM__V_LOAD(g), GM__V_SET1(c[0]), GM__V_MUL(GM__V_SET1(c[1]), GM__V_LOAD(w)));\
    const GM__VF mi = GM__V_FMA(GM__V_LOAD(m), GM__V_SET1(c[3]), GM__V_MUL(gi, GM__V_SET1(c[4])));  \
    const GM__VF vi = GM__V_FMA(GM__V_LOAD(v), GM__V_SET1(c[5]), GM__V_MUL(GM__V_MUL(gi, gi), GM__V_SET1(c[6])));\
    const GM__VF den = GM__V_FMA(GM__V_SQRT(vi), GM__V_SET1(c[8]), GM__V_SET1(c[9]));           \
    const GM__VF wi = GM__V_SUB(GM__V_MUL(GM__V_LOAD(w), GM__V_SET1(c[2])),                      \
                                GM__V_DIV(GM__V_MUL(mi, GM__V_SET1(c[7])), den));                \
    GM__V_STORE(m, mi); GM__V_STORE(v, vi); GM__V_STORE(w, wi);                                   \
}                                                                                                 \
/* RMSProp (with optional momentum: c[6] = 0 makes m the plain step). */                          \
static GM__TGT void gm__rmsprop1_##SFX(float *w, const float *g, float *m, float *v, const float *c) {\
    const GM__VF gi = GM__V_FMA(GM__V_LOAD(g), GM__V_SET1(c[0]), GM__V_MUL(GM__V_SET1(c[1]), GM__V_LOAD(w)));\
    const GM__VF vi = GM__V_FMA(GM__V_LOAD(v), GM__V_SET1(c[2]), GM__V_MUL(GM__V_MUL(gi, gi), GM__V_SET1(c[3])));\
    const GM__VF q = GM__V_DIV(gi, GM__V_ADD(GM__V_SQRT(vi), GM__V_SET1(c[5])));                  \
    const GM__VF mi = GM__V_FMA(GM__V_LOAD(m), GM__V_SET1(c[6]), q);                              \
    GM__V_STORE(v, vi); GM__V_STORE(m, mi);                                                       \
    GM__V_STORE(w, GM__V_SUB(GM__V_LOAD(w), GM__V_MUL(mi, GM__V_SET1(c[4]))));                     \
}                                                                                                 \
GM__DEFINE_OPTIM(SFX, adam)                                                                       \
GM__DEFINE_OPTIM(SFX, rmsprop)                                                                    \
GM__DEFINE_VMAP(SFX, exp)                                                                         \
GM__DEFINE_VMAP(SFX, log)                                                                         \
GM__DEFINE_VMAP(SFX, tanh)                                                                        \
GM__DEFINE_VMAP(SFX, sigmoid)                                                                     \
static const gm__path_ops gm__ops_##SFX = {                                                       \
    GM__MR, GM__NV * GM__VLANES, gm__ukernel_##SFX, gm__packbn_##SFX, gm__packbt_##SFX,           \
    gm__packa_##SFX, gm__packat_##SFX,                                                            \
    gm__vexp_##SFX, gm__vlog_##SFX, gm__vtanh_##SFX, gm__vsigmoid_##SFX,                          \
    gm__adam_##SFX, gm__rmsprop_##SFX};

/* y[i] = f(x[i]); the tail goes through a padded vector so every element sees the same code. */
#define GM__DEFINE_VMAP(SFX, F)                                                                   \
static GM__TGT void gm__v##F##_##SFX(float *y, const float *x, size_t n) {                        \
    size_t i = 0;                                                                                 \
    for (; i + GM__VLANES <= n; i += GM__VLANES)                                                  \
        GM__V_STORE(y + i, gm__##F##1_##SFX(GM__V_LOAD(x + i)));                                  \
    if (i < n) {                                                                                  \
        float t[GM__VLMAX];                                                                       \
        size_t j;                                                                                 \
        for (j = 0; j < (size_t)GM__VLANES; j++) t[j] = i + j < n ? x[i + j] : 0.0f;              \
        GM__V_STORE(t, gm__##F##1_##SFX(GM__V_LOAD(t)));                                          \
        for (j = 0; i + j < n; j++) y[i + j] = t[j];                                              \
    }                                                                                             \
}

/* An optimizer update over n floats: the vector body, then the tail through padded copies so
 * every element sees the same arithmetic. */
#define GM__DEFINE_OPTIM(SFX, F)                                                                  \
static GM__TGT void gm__##F##_##SFX(float *w, const float *g, float *m, float *v, size_t n,       \
                                    const float *c) {                                             \
    size_t i = 0, j;                                                                              \
    for (; i + GM__VLANES <= n; i += GM__VLANES) gm__##F##1_##SFX(w + i, g + i, m + i, v + i, c); \
    if (i < n) {                                                                                  \
        float tw[GM__VLMAX], tg[GM__VLMAX], tm[GM__VLMAX], tv[GM__VLMAX];                         \
        for (j = 0; j < (size_t)GM__VLANES; j++) {                                                \
            int in = i + j < n;                                                                   \
            tw[j] = in ? w[i + j] : 0.0f; tg[j] = in ? g[i + j] : 0.0f;                           \
            tm[j] = in ? m[i + j] : 0.0f; tv[j] = in ? v[i + j] : 0.0f;                           \
        }                                                                                         \
        gm__##F##1_##SFX(tw, tg, tm, tv, c);                                                      \
        for (j = 0; i + j < n; j++) { w[i + j] = tw[j]; m[i + j] = tm[j]; v[i + j] = tv[j]; }     \
    }                                                                                             \
}

typedef void (*gm__optim_fn)(float *w, const float *g, float *m, float *v, size_t n, const float *c);
typedef void (*gm__ukernel_fn)(int kc, const float *a, const float *b, float *c, int ldc, float alpha,
                               float beta);
typedef void (*gm__packb_fn)(int kc, const float *b, int ldb, int npan, float *dst);
typedef void (*gm__packt_fn)(int kc, const float *src, int ld, int n, float *dst);
typedef void (*gm__vmap_fn)(float *y, const float *x, size_t n);
typedef struct {
    int mr, nr;                 /* micro-tile shape */
    gm__ukernel_fn ukernel;
    gm__packb_fn packbn;        /* full-width, non-transposed B panels */
    gm__packt_fn packbt;        /* transposed B panel (n = columns present, rest zero) */
    gm__packt_fn packa;         /* non-transposed A micro-panel (n = rows present, rest zero) */
    gm__packt_fn packat;        /* transposed A micro-panel (n = rows present, rest zero) */
    gm__vmap_fn vexp, vlog, vtanh, vsigmoid;
    gm__optim_fn adam, rmsprop; /* coefficient layouts: gm__optim_coef in the optimizer section */
} gm__path_ops;

/* -- scalar: the reference path, plain C floats -- */
#define GM__VF float
#define GM__VU gm__u32
#define GM__VM int
#define GM__VLANES 1
#define GM__V_LOAD(p) (*(p))
#define GM__V_STORE(p, v) (*(p) = (v))
#define GM__V_SET1(x) ((float)(x))
#define GM__V_ZERO() 0.0f
#define GM__V_ADD(a, b) ((a) + (b))
#define GM__V_SUB(a, b) ((a) - (b))
#define GM__V_MUL(a, b) ((a) * (b))
#define GM__V_DIV(a, b) ((a) / (b))
#define GM__V_SQRT(a) sqrtf(a)
#define GM__V_FMA(a, b, c) ((a) * (b) + (c))
#define GM__V_MIN(a, b) ((a) < (b) ? (a) : (b))
#define GM__V_MAX(a, b) ((a) > (b) ? (a) : (b))
#define GM__V_LT(a, b) ((a) < (b))
#define GM__V_GE(a, b) ((a) >= (b))
#define GM__V_EQ(a, b) ((a) == (b))
#define GM__V_SEL(m, a, b) ((m) ? (a) : (b))
#define GM__V_ASU(x) gm__f2u(x)
#define GM__V_ASF(u) gm__u2f(u)
#define GM__V_UADD(a, b) ((gm__u32)((a) + (b)))
#define GM__V_USUB(a, b) ((gm__u32)((a) - (b)))
#define GM__V_UAND(a, b) ((a) & (b))
#define GM__V_UOR(a, b) ((a) | (b))
#define GM__V_USHL(a, n) ((gm__u32)((a) << (n)))
#define GM__V_USHR(a, n) ((a) >> (n))
#define GM__V_USET1(x) ((gm__u32)(x))
#define GM__V_U2F(u) ((float)(gm__i32)(u))
#define GM__MR 4
#define GM__NV 4
#define GM__ROWS GM__R4
#define GM__COLS GM__C4
#define GM__TGT
/* GM__V_TR(s, ls, n, d, ld): d[c*ld + r] = r < n ? s[r*ls + c] : 0 for r, c < VLANES (rows >= n
 * are not read; all VLANES floats of each d row are written). */
static GM__INLINE void gm__tr_scalar(const float *s, int ls, int n, float *d, int ld) {
    (void)ls; (void)ld;
    d[0] = n > 0 ? s[0] : 0.0f;
}
#define GM__V_TR gm__tr_scalar
GM__DEFINE_PATH(scalar)
#undef GM__VF
#undef GM__VU
#undef GM__VM
#undef GM__VLANES
#undef GM__V_LOAD
#undef GM__V_STORE
#undef GM__V_SET1
#undef GM__V_ZERO
#undef GM__V_ADD
#undef GM__V_SUB
#undef GM__V_MUL
#undef GM__V_DIV
#undef GM__V_SQRT
#undef GM__V_FMA
#undef GM__V_MIN
#undef GM__V_MAX
#undef GM__V_LT
#undef GM__V_GE
#undef GM__V_EQ
#undef GM__V_SEL
#undef GM__V_ASU
#undef GM__V_ASF
#undef GM__V_UADD
#undef GM__V_USUB
#undef GM__V_UAND
#undef GM__V_UOR
#undef GM__V_USHL
#undef GM__V_USHR
#undef GM__V_USET1
#undef GM__V_U2F
#undef GM__MR
#undef GM__NV
#undef GM__ROWS
#undef GM__COLS
#undef GM__TGT
#undef GM__V_TR

#if defined(GM__X86)
/* -- SSE2: 4 lanes, no FMA (the FMA macro is mul+add, two roundings), 6x8 tile = 12 of 16 xmm -- */
#define GM__VF __m128
#define GM__VU __m128i
#define GM__VM __m128
#define GM__VLANES 4
#define GM__V_LOAD(p) _mm_loadu_ps(p)
#define GM__V_STORE(p, v) _mm_storeu_ps((p), (v))
#define GM__V_SET1(x) _mm_set1_ps(x)
#define GM__V_ZERO() _mm_setzero_ps()
#define GM__V_ADD(a, b) _mm_add_ps((a), (b))
#define GM__V_SUB(a, b) _mm_sub_ps((a), (b))
#define GM__V_MUL(a, b) _mm_mul_ps((a), (b))
#define GM__V_DIV(a, b) _mm_div_ps((a), (b))
#define GM__V_SQRT(a) _mm_sqrt_ps(a)
#define GM__V_FMA(a, b, c) _mm_add_ps(_mm_mul_ps((a), (b)), (c))
#define GM__V_MIN(a, b) _mm_min_ps((a), (b))
#define GM__V_MAX(a, b) _mm_max_ps((a), (b))
#define GM__V_LT(a, b) _mm_cmplt_ps((a), (b))
#define GM__V_GE(a, b) _mm_cmpge_ps((a), (b))
#define GM__V_EQ(a, b) _mm_cmpeq_ps((a), (b))
#define GM__V_SEL(m, a, b) _mm_or_ps(_mm_and_ps((m), (a)), _mm_andnot_ps((m), (b)))
#define GM__V_ASU(x) _mm_castps_si128(x)
#define GM__V_ASF(u) _mm_castsi128_ps(u)
#define GM__V_UADD(a, b) _mm_add_epi32((a), (b))
#define GM__V_USUB(a, b) _mm_sub_epi32((a), (b))
#define GM__V_UAND(a, b) _mm_and_si128((a), (b))
#define GM__V_UOR(a, b) _mm_or_si128((a), (b))
#define GM__V_USHL(a, n) _mm_slli_epi32((a), (n))
#define GM__V_USHR(a, n) _mm_srli_epi32((a), (n))
#define GM__V_USET1(x) _mm_set1_epi32((int)(gm__u32)(x))
#define GM__V_U2F(u) _mm_cvtepi32_ps(u)
#define GM__MR 6
#define GM__NV 2
#define GM__ROWS GM__R6
#define GM__COLS GM__C2
#define GM__TGT __attribute__((target("sse2")))
#define GM__TR_LD(x) const GM__VF r##x = (x) < n ? GM__V_LOAD(s + (size_t)(x) * ls) : GM__V_ZERO();
static GM__TGT GM__INLINE void gm__tr_sse2(const float *s, int ls, int n, float *d, int ld) {
    GM__R4(GM__TR_LD)
    const __m128 t0 = _mm_unpacklo_ps(r0, r1), t1 = _mm_unpackhi_ps(r0, r1);
    const __m128 t2 = _mm_unpacklo_ps(r2, r3), t3 = _mm_unpackhi_ps(r2, r3);
    _mm_storeu_ps(d, _mm_movelh_ps(t0, t2));
    _mm_storeu_ps(d + ld, _mm_movehl_ps(t2, t0));
    _mm_storeu_ps(d + 2 * ld, _mm_movelh_ps(t1, t3));
    _mm_storeu_ps(d + 3 * ld, _mm_movehl_ps(t3, t1));
}
#define GM__V_TR gm__tr_sse2
GM__DEFINE_PATH(sse2)
#undef GM__VF
#undef GM__VU
#undef GM__VM
#undef GM__VLANES
#undef GM__V_LOAD
#undef GM__V_STORE
#undef GM__V_SET1
#undef GM__V_ZERO
#undef GM__V_ADD
#undef GM__V_SUB
#undef GM__V_MUL
#undef GM__V_DIV
#undef GM__V_SQRT
#undef GM__V_FMA
#undef GM__V_MIN
#undef GM__V_MAX
#undef GM__V_LT
#undef GM__V_GE
#undef GM__V_EQ
#undef GM__V_SEL
#undef GM__V_ASU
#undef GM__V_ASF
#undef GM__V_UADD
#undef GM__V_USUB
#undef GM__V_UAND
#undef GM__V_UOR
#undef GM__V_USHL
#undef GM__V_USHR
#undef GM__V_USET1
#undef GM__V_U2F
#undef GM__MR
#undef GM__NV
#undef GM__ROWS
#undef GM__COLS
#undef GM__TGT
#undef GM__V_TR

/* -- AVX2+FMA: 8 lanes, 6x16 tile = 12 of 16 ymm -- */
#define GM__VF __m256
#define GM__VU __m256i
#define GM__VM __m256
#define GM__VLANES 8
#define GM__V_LOAD(p) _mm256_loadu_ps(p)
#define GM__V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define GM__V_SET1(x) _mm256_set1_ps(x)
#define GM__V_ZERO() _mm256_setzero_ps()
#define GM__V_ADD(a, b) _mm256_add_ps((a), (b))
#define GM__V_SUB(a, b) _mm256_sub_ps((a), (b))
#define GM__V_MUL(a, b) _mm256_mul_ps((a), (b))
#define GM__V_DIV(a, b) _mm256_div_ps((a), (b))
#define GM__V_SQRT(a) _mm256_sqrt_ps(a)
#define GM__V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define GM__V_MIN(a, b) _mm256_min_ps((a), (b))
#define GM__V_MAX(a, b) _mm256_max_ps((a), (b))
#define GM__V_LT(a, b) _mm256_cmp_ps((a), (b), _CMP_LT_OQ)
#define GM__V_GE(a, b) _mm256_cmp_ps((a), (b), _CMP_GE_OQ)
#define GM__V_EQ(a, b) _mm256_cmp_ps((a), (b), _CMP_EQ_OQ)
#define GM__V_SEL(m, a, b) _mm256_blendv_ps((b), (a), (m))
#define GM__V_ASU(x) _mm256_castps_si256(x)
#define GM__V_ASF(u) _mm256_castsi256_ps(u)
#define GM__V_UADD(a, b) _mm256_add_epi32((a), (b))
#define GM__V_USUB(a, b) _mm256_sub_epi32((a), (b))
#define GM__V_UAND(a, b) _mm256_and_si256((a), (b))
#define GM__V_UOR(a, b) _mm256_or_si256((a), (b))
#define GM__V_USHL(a, n) _mm256_slli_epi32((a), (n))
#define GM__V_USHR(a, n) _mm256_srli_epi32((a), (n))
#define GM__V_USET1(x) _mm256_set1_epi32((int)(gm__u32)(x))
#define GM__V_U2F(u) _mm256_cvtepi32_ps(u)
#define GM__MR 6
#define GM__NV 2
#define GM__ROWS GM__R6
#define GM__COLS GM__C2
#define GM__TGT __attribute__((target("avx2,fma")))
static GM__TGT GM__INLINE void gm__tr_avx2(const float *s, int ls, int n, float *d, int ld) {
    GM__R8(GM__TR_LD)
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d + ld, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d + 2 * ld, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d + 3 * ld, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d + 4 * ld, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d + 5 * ld, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d + 6 * ld, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d + 7 * ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#define GM__V_TR gm__tr_avx2
GM__DEFINE_PATH(avx2)
#undef GM__VF
#undef GM__VU
#undef GM__VM
#undef GM__VLANES
#undef GM__V_LOAD
#undef GM__V_STORE
#undef GM__V_SET1
#undef GM__V_ZERO
#undef GM__V_ADD
#undef GM__V_SUB
#undef GM__V_MUL
#undef GM__V_DIV
#undef GM__V_SQRT
#undef GM__V_FMA
#undef GM__V_MIN
#undef GM__V_MAX
#undef GM__V_LT
#undef GM__V_GE
#undef GM__V_EQ
#undef GM__V_SEL
#undef GM__V_ASU
#undef GM__V_ASF
#undef GM__V_UADD
#undef GM__V_USUB
#undef GM__V_UAND
#undef GM__V_UOR
#undef GM__V_USHL
#undef GM__V_USHR
#undef GM__V_USET1
#undef GM__V_U2F
#undef GM__MR
#undef GM__NV
#undef GM__ROWS
#undef GM__COLS
#undef GM__TGT
#undef GM__V_TR

/* -- AVX-512: 16 lanes, 10x32 tile = 20 of 32 zmm accumulators (measured faster than 12 or 14
 *    on this Zen-class core, and 100-row batches split into whole panels) -- */
#define GM__VF __m512
#define GM__VU __m512i
#define GM__VM __mmask16
#define GM__VLANES 16
#define GM__V_LOAD(p) _mm512_loadu_ps(p)
#define GM__V_STORE(p, v) _mm512_storeu_ps((p), (v))
#define GM__V_SET1(x) _mm512_set1_ps(x)
#define GM__V_ZERO() _mm512_setzero_ps()
#define GM__V_ADD(a, b) _mm512_add_ps((a), (b))
#define GM__V_SUB(a, b) _mm512_sub_ps((a), (b))
#define GM__V_MUL(a, b) _mm512_mul_ps((a), (b))
#define GM__V_DIV(a, b) _mm512_div_ps((a), (b))
#define GM__V_SQRT(a) _mm512_maskz_sqrt_ps((__mmask16)0xffff, (a))
#define GM__V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define GM__V_MIN(a, b) _mm512_maskz_min_ps((__mmask16)0xffff, (a), (b))
#define GM__V_MAX(a, b) _mm512_maskz_max_ps((__mmask16)0xffff, (a), (b))
#define GM__V_LT(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_LT_OQ)
#define GM__V_GE(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_GE_OQ)
#define GM__V_EQ(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_EQ_OQ)
#define GM__V_SEL(m, a, b) _mm512_mask_blend_ps((m), (b), (a))
#define GM__V_ASU(x) _mm512_castps_si512(x)
#define GM__V_ASF(u) _mm512_castsi512_ps(u)
#define GM__V_UADD(a, b) _mm512_add_epi32((a), (b))
#define GM__V_USUB(a, b) _mm512_sub_epi32((a), (b))
#define GM__V_UAND(a, b) _mm512_and_si512((a), (b))
#define GM__V_UOR(a, b) _mm512_or_si512((a), (b))
#define GM__V_USHL(a, n) _mm512_maskz_slli_epi32((__mmask16)0xffff, (a), (n))
#define GM__V_USHR(a, n) _mm512_maskz_srli_epi32((__mmask16)0xffff, (a), (n))
#define GM__V_USET1(x) _mm512_set1_epi32((int)(gm__u32)(x))
#define GM__V_U2F(u) _mm512_maskz_cvtepi32_ps((__mmask16)0xffff, (u))
/* (the maskz forms dodge a g++-12 -Wuninitialized false positive in the plain intrinsics) */
#ifndef GM__AVX512_MR
#define GM__AVX512_MR 10
#endif
#define GM__MR GM__AVX512_MR
#define GM__NV 2
#define GM__ROWS GM__CAT(GM__R, GM__AVX512_MR)
#define GM__COLS GM__C2
#define GM__TGT __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
/* 16x16: 4x4 transposes inside 128-bit lanes, then two rounds of 128-bit lane shuffles (maskz
 * forms: see the note on g++-12 above) */
#define GM__M16 ((__mmask16)0xffff)
#define GM__TR_L(a, b, imm) _mm512_maskz_shuffle_f32x4(GM__M16, (a), (b), (imm)) /* 128-bit lanes */
#define GM__TR_UNP(x, y) const __m512 t##x = _mm512_maskz_unpacklo_ps(GM__M16, r##x, r##y), \
                                      t##y = _mm512_maskz_unpackhi_ps(GM__M16, r##x, r##y);
static GM__TGT GM__INLINE void gm__tr_avx512(const float *s, int ls, int n, float *d, int ld) {
    GM__R16(GM__TR_LD)
    GM__TR_UNP(0, 1) GM__TR_UNP(2, 3) GM__TR_UNP(4, 5) GM__TR_UNP(6, 7)
    GM__TR_UNP(8, 9) GM__TR_UNP(10, 11) GM__TR_UNP(12, 13) GM__TR_UNP(14, 15)
    /* u(4q+m): column m of each 128-bit lane, rows 4q..4q+3 */
    const __m512 u0 = _mm512_shuffle_ps(t0, t2, 0x44), u1 = _mm512_shuffle_ps(t0, t2, 0xee);
    const __m512 u2 = _mm512_shuffle_ps(t1, t3, 0x44), u3 = _mm512_shuffle_ps(t1, t3, 0xee);
    const __m512 u4 = _mm512_shuffle_ps(t4, t6, 0x44), u5 = _mm512_shuffle_ps(t4, t6, 0xee);
    const __m512 u6 = _mm512_shuffle_ps(t5, t7, 0x44), u7 = _mm512_shuffle_ps(t5, t7, 0xee);
    const __m512 u8 = _mm512_shuffle_ps(t8, t10, 0x44), u9 = _mm512_shuffle_ps(t8, t10, 0xee);
    const __m512 u10 = _mm512_shuffle_ps(t9, t11, 0x44), u11 = _mm512_shuffle_ps(t9, t11, 0xee);
    const __m512 u12 = _mm512_shuffle_ps(t12, t14, 0x44), u13 = _mm512_shuffle_ps(t12, t14, 0xee);
    const __m512 u14 = _mm512_shuffle_ps(t13, t15, 0x44), u15 = _mm512_shuffle_ps(t13, t15, 0xee);
    /* v(m) = lanes 0,2 of u(m), u(4+m); v(4+m) = lanes 1,3; same for rows 8..15 in v(8..15) */
    const __m512 v0 = GM__TR_L(u0, u4, 0x88), v4 = GM__TR_L(u0, u4, 0xdd);
    const __m512 v1 = GM__TR_L(u1, u5, 0x88), v5 = GM__TR_L(u1, u5, 0xdd);
    const __m512 v2 = GM__TR_L(u2, u6, 0x88), v6 = GM__TR_L(u2, u6, 0xdd);
    const __m512 v3 = GM__TR_L(u3, u7, 0x88), v7 = GM__TR_L(u3, u7, 0xdd);
    const __m512 v8 = GM__TR_L(u8, u12, 0x88), v12 = GM__TR_L(u8, u12, 0xdd);
    const __m512 v9 = GM__TR_L(u9, u13, 0x88), v13 = GM__TR_L(u9, u13, 0xdd);
    const __m512 v10 = GM__TR_L(u10, u14, 0x88), v14 = GM__TR_L(u10, u14, 0xdd);
    const __m512 v11 = GM__TR_L(u11, u15, 0x88), v15 = GM__TR_L(u11, u15, 0xdd);
    _mm512_storeu_ps(d, GM__TR_L(v0, v8, 0x88));
    _mm512_storeu_ps(d + ld, GM__TR_L(v1, v9, 0x88));
    _mm512_storeu_ps(d + 2 * ld, GM__TR_L(v2, v10, 0x88));
    _mm512_storeu_ps(d + 3 * ld, GM__TR_L(v3, v11, 0x88));
    _mm512_storeu_ps(d + 4 * ld, GM__TR_L(v4, v12, 0x88));
    _mm512_storeu_ps(d + 5 * ld, GM__TR_L(v5, v13, 0x88));
    _mm512_storeu_ps(d + 6 * ld, GM__TR_L(v6, v14, 0x88));
    _mm512_storeu_ps(d + 7 * ld, GM__TR_L(v7, v15, 0x88));
    _mm512_storeu_ps(d + 8 * ld, GM__TR_L(v0, v8, 0xdd));
    _mm512_storeu_ps(d + 9 * ld, GM__TR_L(v1, v9, 0xdd));
    _mm512_storeu_ps(d + 10 * ld, GM__TR_L(v2, v10, 0xdd));
    _mm512_storeu_ps(d + 11 * ld, GM__TR_L(v3, v11, 0xdd));
    _mm512_storeu_ps(d + 12 * ld, GM__TR_L(v4, v12, 0xdd));
    _mm512_storeu_ps(d + 13 * ld, GM__TR_L(v5, v13, 0xdd));
    _mm512_storeu_ps(d + 14 * ld, GM__TR_L(v6, v14, 0xdd));
    _mm512_storeu_ps(d + 15 * ld, GM__TR_L(v7, v15, 0xdd));
}
#undef GM__TR_UNP
#undef GM__M16
#undef GM__TR_L
#define GM__V_TR gm__tr_avx512
GM__DEFINE_PATH(avx512)
#undef GM__VF
#undef GM__VU
#undef GM__VM
#undef GM__VLANES
#undef GM__V_LOAD
#undef GM__V_STORE
#undef GM__V_SET1
#undef GM__V_ZERO
#undef GM__V_ADD
#undef GM__V_SUB
#undef GM__V_MUL
#undef GM__V_DIV
#undef GM__V_SQRT
#undef GM__V_FMA
#undef GM__V_MIN
#undef GM__V_MAX
#undef GM__V_LT
#undef GM__V_GE
#undef GM__V_EQ
#undef GM__V_SEL
#undef GM__V_ASU
#undef GM__V_ASF
#undef GM__V_UADD
#undef GM__V_USUB
#undef GM__V_UAND
#undef GM__V_UOR
#undef GM__V_USHL
#undef GM__V_USHR
#undef GM__V_USET1
#undef GM__V_U2F
#undef GM__MR
#undef GM__NV
#undef GM__ROWS
#undef GM__COLS
#undef GM__TGT
#undef GM__V_TR
#undef GM__TR_LD
#endif /* GM__X86 */

#if defined(GM__NEON)
/* -- NEON (aarch64): 4 lanes, fused FMA, 8x8 tile = 16 of 32 q registers -- */
#define GM__VF float32x4_t
#define GM__VU uint32x4_t
#define GM__VM uint32x4_t
#define GM__VLANES 4
#define GM__V_LOAD(p) vld1q_f32(p)
#define GM__V_STORE(p, v) vst1q_f32((p), (v))
#define GM__V_SET1(x) vdupq_n_f32(x)
#define GM__V_ZERO() vdupq_n_f32(0.0f)
#define GM__V_ADD(a, b) vaddq_f32((a), (b))
#define GM__V_SUB(a, b) vsubq_f32((a), (b))
#define GM__V_MUL(a, b) vmulq_f32((a), (b))
#define GM__V_DIV(a, b) vdivq_f32((a), (b))
#define GM__V_SQRT(a) vsqrtq_f32(a)
#define GM__V_FMA(a, b, c) vfmaq_f32((c), (a), (b))
#define GM__V_MIN(a, b) vminq_f32((a), (b))
#define GM__V_MAX(a, b) vmaxq_f32((a), (b))
#define GM__V_LT(a, b) vcltq_f32((a), (b))
#define GM__V_GE(a, b) vcgeq_f32((a), (b))
#define GM__V_EQ(a, b) vceqq_f32((a), (b))
#define GM__V_SEL(m, a, b) vbslq_f32((m), (a), (b))
#define GM__V_ASU(x) vreinterpretq_u32_f32(x)
#define GM__V_ASF(u) vreinterpretq_f32_u32(u)
#define GM__V_UADD(a, b) vaddq_u32((a), (b))
#define GM__V_USUB(a, b) vsubq_u32((a), (b))
#define GM__V_UAND(a, b) vandq_u32((a), (b))
#define GM__V_UOR(a, b) vorrq_u32((a), (b))
#define GM__V_USHL(a, n) vshlq_n_u32((a), (n))
#define GM__V_USHR(a, n) vshrq_n_u32((a), (n))
#define GM__V_USET1(x) vdupq_n_u32((gm__u32)(x))
#define GM__V_U2F(u) vcvtq_f32_s32(vreinterpretq_s32_u32(u))
#define GM__MR 8
#define GM__NV 2
#define GM__ROWS GM__R8
#define GM__COLS GM__C2
#define GM__TGT
#define GM__TR_LD(x) const GM__VF r##x = (x) < n ? GM__V_LOAD(s + (size_t)(x) * ls) : GM__V_ZERO();
static GM__INLINE void gm__tr_neon(const float *s, int ls, int n, float *d, int ld) {
    GM__R4(GM__TR_LD)
    const float32x4x2_t p = vtrnq_f32(r0, r1), q = vtrnq_f32(r2, r3);
    vst1q_f32(d, vcombine_f32(vget_low_f32(p.val[0]), vget_low_f32(q.val[0])));
    vst1q_f32(d + ld, vcombine_f32(vget_low_f32(p.val[1]), vget_low_f32(q.val[1])));
    vst1q_f32(d + 2 * ld, vcombine_f32(vget_high_f32(p.val[0]), vget_high_f32(q.val[0])));
    vst1q_f32(d + 3 * ld, vcombine_f32(vget_high_f32(p.val[1]), vget_high_f32(q.val[1])));
}
#undef GM__TR_LD
#define GM__V_TR gm__tr_neon
GM__DEFINE_PATH(neon)
#undef GM__VF
#undef GM__VU
#undef GM__VM
#undef GM__VLANES
#undef GM__V_LOAD
#undef GM__V_STORE
#undef GM__V_SET1
#undef GM__V_ZERO
#undef GM__V_ADD
#undef GM__V_SUB
#undef GM__V_MUL
#undef GM__V_DIV
#undef GM__V_SQRT
#undef GM__V_FMA
#undef GM__V_MIN
#undef GM__V_MAX
#undef GM__V_LT
#undef GM__V_GE
#undef GM__V_EQ
#undef GM__V_SEL
#undef GM__V_ASU
#undef GM__V_ASF
#undef GM__V_UADD
#undef GM__V_USUB
#undef GM__V_UAND
#undef GM__V_UOR
#undef GM__V_USHL
#undef GM__V_USHR
#undef GM__V_USET1
#undef GM__V_U2F
#undef GM__MR
#undef GM__NV
#undef GM__ROWS
#undef GM__COLS
#undef GM__TGT
#undef GM__V_TR
#endif /* GM__NEON */

/* ---- 3. path selection --------------------------------------------------------------------- */

static int gm__path_cur = -1; /* -1: not chosen yet; accessed atomically */

static const gm__path_ops *gm__path_table(int path) {
    switch (path) {
    case GM_PATH_SCALAR: return &gm__ops_scalar;
#if defined(GM__X86)
    case GM_PATH_SSE2: return &gm__ops_sse2;
    case GM_PATH_AVX2: return &gm__ops_avx2;
    case GM_PATH_AVX512: return &gm__ops_avx512;
#endif
#if defined(GM__NEON)
    case GM_PATH_NEON: return &gm__ops_neon;
#endif
    default: return NULL;
    }
}

GMDEF int gm_simd_supported(int path) {
    if (!gm__path_table(path)) return 0;
#if defined(GM__X86)
    __builtin_cpu_init();
    /* __builtin_cpu_supports also checks that the OS saves the wider registers (XGETBV). */
    if (path == GM_PATH_SSE2) return __builtin_cpu_supports("sse2") ? 1 : 0;
    if (path == GM_PATH_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (path == GM_PATH_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("fma");
#endif
    return 1; /* scalar, or NEON which every aarch64 CPU has */
}

GMDEF const char *gm_simd_name(int path) {
    static const char *const names[GM_PATH_COUNT] = {"scalar", "sse2", "avx2", "avx512", "neon"};
    return path >= 0 && path < GM_PATH_COUNT ? names[path] : "?";
}

GMDEF int gm_simd_path(void) {
    int p = GM__ALOAD(&gm__path_cur);
    if (p < 0) {
        for (p = GM_PATH_COUNT - 1; p > 0; p--)
            if (gm_simd_supported(p)) break;
        GM__ASTORE(&gm__path_cur, p); /* racing first calls all store the same value */
    }
    return p;
}

GMDEF int gm_simd_force(int path) {
    if (!gm_simd_supported(path)) return -1;
    GM__ASTORE(&gm__path_cur, path);
    return 0;
}

static const gm__path_ops *gm__ops(void) { return gm__path_table(gm_simd_path()); }

GMDEF void gm_flush_denormals(void) {
#if defined(GM__HAVE_MXCSR)
    _mm_setcsr(_mm_getcsr() | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
#elif defined(GM__GNUC) && defined(__aarch64__)
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    fpcr |= (uint64_t)1 << 24; /* FZ: flush denormal inputs and outputs */
    __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr));
#endif
}

/* ---- 4. thread pool -------------------------------------------------------------------------
 * One job at a time: the caller publishes (fn, ctx, ntasks), bumps each participating worker's
 * `go` word, runs tasks itself, then waits until every participant has written `done`. Tasks are
 * handed out by an atomic counter. Every participant checks in for every job, so a slow worker can
 * never pick up a stale job. Workers spin briefly (training issues thousands of small GEMMs per
 * second), then sleep on a condition variable. A job that starts while the pool is busy (another
 * user thread, or a task calling parallel_for) runs serially in its own thread. */

static int gm__nthreads_want = 0; /* 0 = all cores */

GM__MAYBE_UNUSED static int gm__ncores(void) {
#if defined(GM__SERIAL)
    return 1;
#else
    static int cached = 0; /* sysconf reads /sys on every call: far too slow per GEMM */
    int c = GM__ALOAD(&cached);
    if (c == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c = n < 1 ? 1 : (n > 64 ? 64 : (int)n);
        GM__ASTORE(&cached, c);
    }
    return c;
#endif
}

GMDEF void gm_set_threads(int n) { GM__ASTORE(&gm__nthreads_want, n <= 0 ? 0 : (n > 64 ? 64 : n)); }

GMDEF int gm_get_threads(void) {
#if defined(GM__SERIAL)
    return 1;
#else
    int n = GM__ALOAD(&gm__nthreads_want);
    return n > 0 ? n : gm__ncores();
#endif
}

/* Per-thread scratch (packed panels). Grow-only; freed when a worker exits or at pool shutdown
 * for the thread that runs it. 64-byte aligned. */
static GM__POOL_TLS void *gm__ws_raw;
static GM__POOL_TLS float *gm__ws;
static GM__POOL_TLS size_t gm__ws_cap;

static float *gm__scratch(size_t nfloats) {
    if (nfloats > gm__ws_cap) {
        GENMOD_FREE(gm__ws_raw);
        gm__ws_raw = GENMOD_MALLOC(nfloats * sizeof(float) + 64);
        GENMOD_ASSERT(gm__ws_raw != NULL);
        gm__ws = (float *)(((uintptr_t)gm__ws_raw + 63) & ~(uintptr_t)63);
        gm__ws_cap = nfloats;
    }
    return gm__ws;
}

GM__MAYBE_UNUSED static void gm__scratch_free(void) {
    GENMOD_FREE(gm__ws_raw);
    gm__ws_raw = NULL;
    gm__ws = NULL;
    gm__ws_cap = 0;
}

#if defined(GM__SERIAL)

GM__MAYBE_UNUSED static void gm__parallel_for(int ntasks, void (*fn)(void *ctx, int task), void *ctx) {
    int t;
    for (t = 0; t < ntasks; t++) fn(ctx, t);
}

#else

#define GM__MAXWORKERS 63
#define GM__SPIN_WORKER (1 << 15) /* spin iterations before a worker sleeps (~1 ms) */

typedef struct {
    int go, done; /* job generation posted to / finished by this worker */
    int start;    /* generation current when the worker was created: nothing pending before it */
    char pad[64 - 3 * sizeof(int)];
} gm__slot;

static struct {
    gm__slot slot[GM__MAXWORKERS];
    pthread_t tid[GM__MAXWORKERS];
    int nworkers;                /* started; only changed by the thread holding `busy` */
    int busy;                    /* 1 while a job owns the pool */
    int sleepers;                /* workers inside the condvar wait */
    int shutdown;
    int gen;                     /* job generation, owned by the `busy` holder */
    int atexit_done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*fn)(void *, int);     /* the job: written before `go`, read after it */
    void *ctx;
    int ntasks;
    int next;                    /* next task to hand out */
} gm__pool = {{{0, 0, 0, {0}}}, {0}, 0, 0, 0, 0, 0, 0, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
              NULL, NULL, 0, 0};

static GM__POOL_TLS int gm__in_task; /* nested parallel_for runs serially */

static void gm__run_tasks(void) {
    void (*fn)(void *, int) = gm__pool.fn;
    void *ctx = gm__pool.ctx;
    int n = gm__pool.ntasks, t;
    while ((t = GM__AADD(&gm__pool.next, 1)) < n) fn(ctx, t);
}

static void *gm__worker_main(void *arg) {
    int w = (int)(size_t)arg, i;
    int seen = gm__pool.slot[w].start, g = seen; /* written before pthread_create */
    gm_flush_denormals();
    gm__in_task = 1;
    for (;;) {
        for (i = 0; i < GM__SPIN_WORKER; i++) {
            g = GM__ALOAD(&gm__pool.slot[w].go);
            if (g != seen || GM__ALOAD(&gm__pool.shutdown)) break;
            /* Yield now and then: if the scheduler put us on the poster's CPU, pure spinning
             * would keep the poster (and the job) off the CPU for our whole spin budget. */
            if ((i & 63) == 63) sched_yield();
            else GM__RELAX();
        }
        if (g == seen && !GM__ALOAD(&gm__pool.shutdown)) {
            pthread_mutex_lock(&gm__pool.mu);
            GM__AADD(&gm__pool.sleepers, 1);
            /* seq_cst pairs with the poster's store of go then load of sleepers: one sees the other */
            while ((g = GM__ALOAD_SC(&gm__pool.slot[w].go)) == seen && !GM__ALOAD_SC(&gm__pool.shutdown))
                pthread_cond_wait(&gm__pool.cv, &gm__pool.mu);
            GM__AADD(&gm__pool.sleepers, -1);
            pthread_mutex_unlock(&gm__pool.mu);
        }
        if (GM__ALOAD(&gm__pool.shutdown)) break;
        seen = g;
        gm__run_tasks();
        GM__ASTORE(&gm__pool.slot[w].done, g);
    }
    gm__scratch_free();
    return NULL;
}

static void gm__pool_shutdown(void) {
    int i, expect = 0;
    /* wait for a running job to finish, then keep the pool locked for good */
    while (!GM__ACAS(&gm__pool.busy, &expect, 1)) { expect = 0; sched_yield(); }
    GM__ASTORE_SC(&gm__pool.shutdown, 1);
    pthread_mutex_lock(&gm__pool.mu);
    pthread_cond_broadcast(&gm__pool.cv);
    pthread_mutex_unlock(&gm__pool.mu);
    for (i = 0; i < gm__pool.nworkers; i++) pthread_join(gm__pool.tid[i], NULL);
    gm__pool.nworkers = 0;
    gm__scratch_free();
}

/* Start workers up to `want` (caller holds busy). Returns how many exist. */
static int gm__pool_grow(int want) {
    if (want > GM__MAXWORKERS) want = GM__MAXWORKERS;
    if (!gm__pool.atexit_done) {
        gm__pool.atexit_done = 1;
        atexit(gm__pool_shutdown);
    }
    while (gm__pool.nworkers < want) {
        int w = gm__pool.nworkers;
        gm__pool.slot[w].start = gm__pool.slot[w].done = gm__pool.gen; /* nothing pending */
        GM__ASTORE(&gm__pool.slot[w].go, gm__pool.gen);
        if (pthread_create(&gm__pool.tid[w], NULL, gm__worker_main, (void *)(size_t)w) != 0) break;
        gm__pool.nworkers++;
    }
    return gm__pool.nworkers;
}

/* Runs fn(ctx, t) for t in [0, ntasks) on the pool; the caller participates; returns when all
 * are done. Task order and placement are unspecified. */
GM__MAYBE_UNUSED static void gm__parallel_for(int ntasks, void (*fn)(void *ctx, int task), void *ctx) {
    int nw = gm_get_threads() - 1, expect = 0, w, g, t, spins;
    if (nw > ntasks - 1) nw = ntasks - 1;
    if (nw <= 0 || gm__in_task || GM__ALOAD(&gm__pool.shutdown) ||
        !GM__ACAS(&gm__pool.busy, &expect, 1)) {
        for (t = 0; t < ntasks; t++) fn(ctx, t);
        return;
    }
    nw = nw < gm__pool_grow(nw) ? nw : gm__pool.nworkers;
    g = ++gm__pool.gen;
    gm__pool.fn = fn;
    gm__pool.ctx = ctx;
    gm__pool.ntasks = ntasks;
    GM__ASTORE(&gm__pool.next, 0);
    for (w = 0; w < nw; w++) GM__ASTORE_SC(&gm__pool.slot[w].go, g);
    if (GM__ALOAD_SC(&gm__pool.sleepers) > 0) {
        pthread_mutex_lock(&gm__pool.mu);
        pthread_cond_broadcast(&gm__pool.cv);
        pthread_mutex_unlock(&gm__pool.mu);
    }
    gm__in_task = 1;
    gm__run_tasks();
    gm__in_task = 0;
    for (w = 0; w < nw; w++)
        for (spins = 0; GM__ALOAD(&gm__pool.slot[w].done) != g; spins++) {
            if ((spins & 63) == 63) sched_yield(); /* the worker may share our CPU: let it run */
            else GM__RELAX();
        }
    GM__ASTORE(&gm__pool.busy, 0);
}

#endif /* pool */

/* ---- 5. sgemm -------------------------------------------------------------------------------
 * Blocking: for each K slice (K cut into equal slices of <= KC), pack the task's B columns (NC at a
 * time, in L2/L3) once; for each MC block of rows the task owns, pack A (MC x KC, in L2) and sweep
 * the micro-kernel over the NR column panels x MR row panels. Packing is per path (vector copies
 * and in-register transposes). Each thread task owns a rectangle of output tiles and packs its own
 * panels, so one fork/join covers the whole call. K is never split across threads and edge tiles
 * run the same micro-kernel on zero-padded panels into a scratch tile, so every C element is
 * computed by the same operations whatever the thread count. */

#ifndef GM__KC
#define GM__KC 400 /* most k per slice; K is cut into equal slices (rounded up to 16), so that
                      K=784 runs as 400+384 instead of 384+384+16 */
#endif
#ifndef GM__NC
#define GM__NC 1024 /* columns of B per packed block (rounded down to a multiple of NR) */
#endif
#ifndef GM__MC
#define GM__MC 384 /* rows of A per packed block (rounded down to a multiple of MR) */
#endif

typedef struct {
    const gm__path_ops *ops;
    int ta, tb, M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int mp, np; /* number of MR row panels, NR column panels */
    int kcs;    /* k per slice (depends on K only: every thread slices K the same way) */
    int pm, pn; /* task grid: pm x pn rectangles of tiles */
} gm__gemm_job;

/* dst (kc, mr) row-major = op(A)(i0 .. i0+mr-1, k0 .. k0+kc-1)^T, rows >= rows are zero. */
static void gm__pack_a(const gm__gemm_job *j, int i0, int rows, int k0, int kc, float *dst) {
    if (j->ta) { /* op(A)(i,k) = A[k*lda + i]: each k is a contiguous run of rows */
        j->ops->packat(kc, j->A + (size_t)k0 * j->lda + i0, j->lda, rows, dst);
    } else { /* op(A)(i,k) = A[i*lda + k]: in-register transposes (may write VLANES floats past
                the panel: see gm__packa and the slack in gm__gemm_rect) */
        j->ops->packa(kc, j->A + (size_t)i0 * j->lda + k0, j->lda, rows, dst);
    }
}

/* Column panels [q0, q1) of op(B)(k0 .. k0+kc-1, :) -> dst, panel q at dst + (q-q0)*kc*nr as
 * (kc, nr) row-major; columns past N are zero. */
static void gm__pack_b(const gm__gemm_job *j, int q0, int q1, int k0, int kc, float *dst) {
    const int nr = j->ops->nr;
    const int nfull = (q1 * nr <= j->N ? q1 : j->N / nr) - q0; /* full-width panels */
    int c, k, q;
    if (!j->tb) { /* op(B)(k,c) = B[k*ldb + c] */
        if (nfull > 0) j->ops->packbn(kc, j->B + (size_t)k0 * j->ldb + (size_t)q0 * nr, j->ldb, nfull, dst);
        for (q = q0 + (nfull > 0 ? nfull : 0); q < q1; q++) { /* the edge panel */
            const int cols = j->N - q * nr;
            const float *src = j->B + (size_t)k0 * j->ldb + (size_t)q * nr;
            float *d = dst + (size_t)(q - q0) * kc * nr;
            for (k = 0; k < kc; k++, src += j->ldb, d += nr) {
                for (c = 0; c < cols; c++) d[c] = src[c];
                for (; c < nr; c++) d[c] = 0.0f;
            }
        }
    } else { /* op(B)(k,c) = B[c*ldb + k]: in-register VLANES x VLANES transposes */
        for (q = q0; q < q1; q++)
            j->ops->packbt(kc, j->B + (size_t)q * nr * j->ldb + k0, j->ldb, j->N - q * nr,
                           dst + (size_t)(q - q0) * kc * nr);
    }
}

/* One tile at (row, col): full tiles go straight to C; edge tiles through a scratch tile. */
static void gm__gemm_tile(const gm__gemm_job *j, int row, int col, int kc, const float *ap,
                          const float *bp, float beta, float *tmp) {
    const int mr = j->ops->mr, nr = j->ops->nr;
    const int rows = j->M - row < mr ? j->M - row : mr, cols = j->N - col < nr ? j->N - col : nr;
    float *c = j->C + (size_t)row * j->ldc + col;
    int i, q;
    if (rows == mr && cols == nr) {
        j->ops->ukernel(kc, ap, bp, c, j->ldc, j->alpha, beta);
        return;
    }
    if (beta != 0.0f)
        for (i = 0; i < rows; i++)
            for (q = 0; q < cols; q++) tmp[i * nr + q] = c[(size_t)i * j->ldc + q];
    j->ops->ukernel(kc, ap, bp, tmp, nr, j->alpha, beta);
    for (i = 0; i < rows; i++)
        for (q = 0; q < cols; q++) c[(size_t)i * j->ldc + q] = tmp[i * nr + q];
}

/* Tiles [p0,p1) x [q0,q1) (row panels x column panels). */
static void gm__gemm_rect(const gm__gemm_job *j, int p0, int p1, int q0, int q1) {
    const int mr = j->ops->mr, nr = j->ops->nr;
    const int mcp = GM__MC / mr > 0 ? GM__MC / mr : 1; /* row panels per packed A block */
    const int ncp = GM__NC / nr > 0 ? GM__NC / nr : 1; /* column panels per packed B block */
    const int nqb = q1 - q0 < ncp ? q1 - q0 : ncp;
    const int kcmax = j->kcs;
    /* abuf, GM__VLMAX floats of slack (gm__packa may write that far past a panel), bbuf, tmp */
    float *ws = gm__scratch((size_t)kcmax * (mcp * mr + nqb * nr) + GM__VLMAX + (size_t)mr * nr);
    float *abuf = ws, *bbuf = ws + (size_t)kcmax * mcp * mr + GM__VLMAX, *tmp = bbuf + (size_t)kcmax * nqb * nr;
    int pc, jb, ib, ip, q;
    for (pc = 0; pc < j->K; pc += j->kcs) {
        const int kc = j->K - pc < j->kcs ? j->K - pc : j->kcs;
        const float beta = pc == 0 ? j->beta : 1.0f; /* later K slices accumulate */
        for (jb = q0; jb < q1; jb += ncp) {
            const int je = jb + ncp < q1 ? jb + ncp : q1;
            gm__pack_b(j, jb, je, pc, kc, bbuf); /* once per slice, reused by every A block */
            for (ib = p0; ib < p1; ib += mcp) {
                const int ie = ib + mcp < p1 ? ib + mcp : p1;
                for (ip = ib; ip < ie; ip++) {
                    const int row = ip * mr, rows = j->M - row < mr ? j->M - row : mr;
                    gm__pack_a(j, row, rows, pc, kc, abuf + (size_t)(ip - ib) * kc * mr);
                }
                for (q = jb; q < je; q++)
                    for (ip = ib; ip < ie; ip++)
                        gm__gemm_tile(j, ip * mr, q * nr, kc, abuf + (size_t)(ip - ib) * kc * mr,
                                      bbuf + (size_t)(q - jb) * kc * nr, beta, tmp);
            }
        }
    }
}

static void gm__gemm_task(void *ctx, int t) {
    const gm__gemm_job *j = (const gm__gemm_job *)ctx;
    const int ti = t / j->pn, tj = t % j->pn;
    gm__gemm_rect(j, (int)((long long)ti * j->mp / j->pm), (int)((long long)(ti + 1) * j->mp / j->pm),
                  (int)((long long)tj * j->np / j->pn), (int)((long long)(tj + 1) * j->np / j->pn));
}

/* Choose a pm x pn grid (pm*pn <= nthreads) minimising the largest task: its tiles' FMAs plus a
 * rough charge for the panels it packs (one packed float ~ 8 FMAs of time). */
static void gm__gemm_grid(gm__gemm_job *j, int nthreads) {
    const double tile = (double)j->ops->mr * j->ops->nr;
    double best = -1.0;
    int t, a;
    j->pm = j->pn = 1;
    for (t = nthreads; t >= 1; t--)
        for (a = 1; a <= t; a++) {
            const int b = t / a;
            double rows, cols, cost;
            if (t % a || a > j->mp || b > j->np) continue;
            rows = (double)((j->mp + a - 1) / a);
            cols = (double)((j->np + b - 1) / b);
            cost = rows * cols * tile + 8.0 * (rows * j->ops->mr + cols * j->ops->nr);
            if (best < 0.0 || cost < best) { best = cost; j->pm = a; j->pn = b; }
        }
}

/* C = beta*C for the degenerate cases (K == 0 or alpha == 0). */
static void gm__gemm_scale(int M, int N, float beta, float *C, int ldc) {
    int i, q;
    for (i = 0; i < M; i++)
        for (q = 0; q < N; q++) C[(size_t)i * ldc + q] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + q];
}

GMDEF void gm_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    gm__gemm_job j;
    int nthreads;
    GENMOD_ASSERT(M >= 0 && N >= 0 && K >= 0);
    GENMOD_ASSERT(ldc >= (N > 1 ? N : 1));
    GENMOD_ASSERT(lda >= ((ta ? M : K) > 1 ? (ta ? M : K) : 1));
    GENMOD_ASSERT(ldb >= ((tb ? K : N) > 1 ? (tb ? K : N) : 1));
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == 0.0f) {
        gm__gemm_scale(M, N, beta, C, ldc);
        return;
    }
    j.ops = gm__ops();
    j.ta = ta; j.tb = tb; j.M = M; j.N = N; j.K = K;
    j.lda = lda; j.ldb = ldb; j.ldc = ldc;
    j.alpha = alpha; j.beta = beta;
    j.A = A; j.B = B; j.C = C;
    j.mp = (M + j.ops->mr - 1) / j.ops->mr;
    j.np = (N + j.ops->nr - 1) / j.ops->nr;
    {
        const int nslices = (K + GM__KC - 1) / GM__KC;
        j.kcs = ((K + nslices - 1) / nslices + 15) & ~15;
        if (j.kcs > K) j.kcs = K;
    }
    /* below ~0.5 MFLOP a fork/join costs more than it saves */
    nthreads = (double)M * N * K < 262144.0 ? 1 : gm_get_threads();
    gm__gemm_grid(&j, nthreads);
    if (j.pm * j.pn == 1) gm__gemm_task(&j, 0);
    else gm__parallel_for(j.pm * j.pn, gm__gemm_task, &j);
}

/* ---- 6. vector math ------------------------------------------------------------------------ */

GM__MAYBE_UNUSED static void gm__vexp(float *y, const float *x, size_t n) { gm__ops()->vexp(y, x, n); }
GM__MAYBE_UNUSED static void gm__vlog(float *y, const float *x, size_t n) { gm__ops()->vlog(y, x, n); }
GM__MAYBE_UNUSED static void gm__vtanh(float *y, const float *x, size_t n) { gm__ops()->vtanh(y, x, n); }
GM__MAYBE_UNUSED static void gm__vsigmoid(float *y, const float *x, size_t n) { gm__ops()->vsigmoid(y, x, n); }
GM__MAYBE_UNUSED static const gm__path_ops *gm__kernels(void) { return gm__ops(); }
