/* gm_test.h: the tiny test harness every tests/test_*.c uses.
 *
 *   GM_TEST(name) { GM_CHECK(cond, "fmt", ...); }
 *   int main(void) { GM_RUN(name); ...; return gm_test_summary(); }
 *
 * Each check failure prints "FAIL name: message" and marks the test failed; each test prints one
 * "PASS name" or "FAIL name" line. tests/run.sh adds up the lines of every test program (a program
 * that crashes counts as a failure) and prints the closing "N passed, N failed". */
#ifndef GM_TEST_H
#define GM_TEST_H
#include <stdio.h>
#include <math.h>

static int gm_test_failed_now;   /* did the running test fail a check? */
static int gm_test_npass, gm_test_nfail;
static const char *gm_test_name;

#define GM_TEST(name) static void name(void)

#define GM_CHECK(cond, ...)                                                        \
    do {                                                                           \
        if (!(cond)) {                                                             \
            printf("FAIL %s: %s:%d: ", gm_test_name, __FILE__, __LINE__);          \
            printf(__VA_ARGS__);                                                   \
            printf("\n");                                                          \
            gm_test_failed_now = 1;                                                \
        }                                                                          \
    } while (0)

/* |a - b| <= tol * max(1, |a|, |b|): relative for large values, absolute near zero. */
#define GM_CHECK_CLOSE(a, b, tol) GM_CHECK(gm_test_close((a), (b), (tol)), \
    "%s = %.9g vs %s = %.9g (tol %g)", #a, (double)(a), #b, (double)(b), (double)(tol))

static inline int gm_test_close(double a, double b, double tol) {
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    if (m < 1.0) m = 1.0;
    return fabs(a - b) <= tol * m; /* NaN compares false: a NaN fails */
}

#define GM_RUN(name)                                                               \
    do {                                                                           \
        gm_test_name = #name;                                                      \
        gm_test_failed_now = 0;                                                    \
        fflush(stdout);                                                            \
        name();                                                                    \
        if (gm_test_failed_now) { gm_test_nfail++; printf("FAIL %s\n", #name); }   \
        else { gm_test_npass++; printf("PASS %s\n", #name); }                      \
        fflush(stdout);                                                            \
    } while (0)

static int gm_test_summary(void) {
    printf("# %d passed, %d failed\n", gm_test_npass, gm_test_nfail);
    return gm_test_nfail ? 1 : 0;
}
#endif
