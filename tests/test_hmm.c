/* test_hmm.c: tests of genmod_hmm.h (Markov chains, hidden Markov models).
 * Build: gcc -O2 -std=c99 -Wall -Wextra -Wpedantic -I. tests/test_hmm.c -o /tmp/th -lm -lpthread
 * Run from the repository root (finds data/text/) or from tests/. Optional argument: run only the
 * tests whose name contains it.
 * Exactness is checked against brute-force enumeration of every state path (small models, and a
 * 10,000-step left-to-right model whose paths can all be listed), against an independent textbook
 * log-space implementation in long double, and between the AVX2 and plain C kernels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define GENMOD_IMPLEMENTATION
#include "genmod.h"
#define GENMOD_HMM_IMPLEMENTATION
#include "genmod_hmm.h"
#include "gm_test.h"

/* ---------------------------------------------------------------------------------------- */
/* helpers                                                                                  */
/* ---------------------------------------------------------------------------------------- */
static double urand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) * (1.0 / 9007199254740992.0);
}

/* A random distribution of n floats; `peak` > 0 makes one entry (index k) dominant. */
static void rand_row(uint64_t *s, float *row, int n, int k, double peak) {
    double sum = 0;
    int i;
    for (i = 0; i < n; i++) {
        row[i] = (float)(0.05 + urand(s) + (i == k ? peak : 0));
        sum += row[i];
    }
    for (i = 0; i < n; i++) row[i] = (float)(row[i] / sum);
}

/* A discrete HMM with random (all positive) parameters. */
static int make_discrete(gm_hmm *m, int S, int K, uint64_t seed, double peak) {
    gm_hmm_config c = gm_hmm_default_config(S, GM_HMM_DISCRETE, K);
    float *st = (float *)malloc(sizeof(float) * S), *tr = (float *)malloc(sizeof(float) * S * S);
    float *em = (float *)malloc(sizeof(float) * S * K);
    int i, rc;
    c.seed = seed;
    for (i = 0; i < S; i++) {
        rand_row(&seed, tr + i * S, S, i, peak);
        rand_row(&seed, em + i * K, K, i % K, peak);
    }
    rand_row(&seed, st, S, -1, 0);
    rc = gm_hmm_init(m, &c) || gm_hmm_set_chain(m, st, tr) || gm_hmm_set_discrete(m, em) ? -1 : 0;
    free(st); free(tr); free(em);
    return rc;
}

static int *rand_symbols(uint64_t *s, int n, int K) {
    int *x = (int *)malloc(sizeof(int) * n), i;
    for (i = 0; i < n; i++) x[i] = (int)(urand(s) * K);
    return x;
}

/* log p(x, path) computed directly from the model's parameters (long double). */
static long double path_logp(const gm_hmm *m, const int *sym, const float *x, const int *path, int T) {
    gm__hmm_tab t = gm__hmm_tables(m);
    long double lp = logl(t.pi[path[0]]);
    int s;
    for (s = 0; s < T; s++) {
        if (s > 0) lp += logl(t.A[path[s - 1] * t.S + path[s]]);
        if (t.disc) lp += logl(t.B[path[s] * t.K + sym[s]]);
        else {
            double row[16];
            gm__hmm_gauss_row(&t, x + (size_t)s * t.D, row, NULL);
            lp += row[path[s]];
        }
    }
    return lp;
}

typedef struct brute {
    long double ll;        /* log p(x) */
    double post[8 * 4];    /* T x S */
    int best[8];
    long double best_lp;
} brute;

/* Every one of the S^T paths. */
static void brute_force(const gm_hmm *m, const int *sym, const float *x, int T, brute *b) {
    const int S = m->cfg.states;
    int path[8], i, t;
    long n = 1, k;
    long double mx = -INFINITY, sum = 0;
    long double *lp;
    for (t = 0; t < T; t++) n *= S;
    lp = (long double *)malloc(sizeof(long double) * n);
    b->best_lp = -INFINITY;
    for (k = 0; k < n; k++) {
        long r = k;
        for (t = 0; t < T; t++) { path[t] = (int)(r % S); r /= S; }
        lp[k] = path_logp(m, sym, x, path, T);
        if (lp[k] > mx) mx = lp[k];
        if (lp[k] > b->best_lp) { b->best_lp = lp[k]; memcpy(b->best, path, sizeof(int) * T); }
    }
    for (k = 0; k < n; k++) sum += expl(lp[k] - mx);
    b->ll = mx + logl(sum);
    memset(b->post, 0, sizeof b->post);
    for (k = 0; k < n; k++) {
        long r = k;
        for (t = 0; t < T; t++) { i = (int)(r % S); r /= S; b->post[t * S + i] += (double)expl(lp[k] - b->ll); }
    }
    free(lp);
}

/* ---------------------------------------------------------------------------------------- */
/* kernels: AVX2 against the plain C references                                             */
/* ---------------------------------------------------------------------------------------- */
static int close_rel(double a, double b, double rel, double abs_tol) {
    if (a == b) return 1;   /* also equal infinities */
    return fabs(a - b) <= rel * fmax(fabs(a), fabs(b)) + abs_tol;
}

GM_TEST(test_kernels_match_reference) {
#ifdef GM__HMM_X86
    const gm__hmm_kern *c = &gm__hmm_kern_c, *v = &gm__hmm_kern_avx2;
    static const int sizes[] = {1, 3, 4, 5, 8, 15, 16, 17, 33, 64};
    uint64_t s = 7;
    int si, i, j, bad = 0;
    if (!gm_simd_supported(GM_PATH_AVX2)) { printf("# no AVX2 on this CPU: only the C kernels run\n"); return; }
    for (si = 0; si < (int)(sizeof sizes / sizeof sizes[0]); si++) {
        const int S = sizes[si];
        double a[64], b[64], r1[64], r2[64], A[64 * 64], C1[64 * 64], C2[64 * 64], u[64];
        int g1[64], g2[64];
        for (i = 0; i < S; i++) {
            a[i] = -800.0 * urand(&s);                   /* exp arguments down past the underflow */
            b[i] = exp(-660.0 * urand(&s)) * 100.0;      /* log arguments from 1e-285 to 100 */
            u[i] = urand(&s);
        }
        a[0] = -INFINITY;
        for (i = 0; i < S * S; i++) { A[i] = urand(&s); C1[i] = C2[i] = urand(&s); }
        /* exp: 2 ulp, and below exp(-708) the vector version may return 0 where libm gives a denormal */
        c->expshift(r1, a, -3.0, S); v->expshift(r2, a, -3.0, S);
        for (i = 0; i < S; i++) bad += !close_rel(r1[i], r2[i], 1e-15, 1e-306);
        GM_CHECK(bad == 0, "expshift differs (S = %d)", S);
        c->logv(r1, b, S); v->logv(r2, b, S);
        for (i = 0; i < S; i++) bad += !close_rel(r1[i], r2[i], 1e-15, 0);
        GM_CHECK(bad == 0, "logv differs (S = %d)", S);
        /* sums of S <= 64 positive products: different order and FMA, so 1e-13 relative */
        c->vecmat(r1, u, A, S); v->vecmat(r2, u, A, S);
        for (i = 0; i < S; i++) bad += !close_rel(r1[i], r2[i], 1e-13, 0);
        GM_CHECK(bad == 0, "vecmat differs (S = %d)", S);
        c->matvec(r1, A, u, S); v->matvec(r2, A, u, S);
        for (i = 0; i < S; i++) bad += !close_rel(r1[i], r2[i], 1e-13, 0);
        GM_CHECK(bad == 0, "matvec differs (S = %d)", S);
        c->xiacc(C1, u, A, b, S); v->xiacc(C2, u, A, b, S);
        for (i = 0; i < S * S; i++) bad += !close_rel(C1[i], C2[i], 1e-13, 0);
        GM_CHECK(bad == 0, "xiacc differs (S = %d)", S);
        /* Viterbi: identical, ties included (a row repeated makes exact ties) */
        for (i = 0; i < S; i++) r1[i] = log(u[i] + 0.1);
        if (S > 2) { r1[2] = r1[1]; for (j = 0; j < S; j++) A[2 * S + j] = A[S + j]; }
        for (i = 0; i < S * S; i++) A[i] = log(A[i]);
        c->vitstep(r2, g1, r1, A, S); v->vitstep(a, g2, r1, A, S);
        for (i = 0; i < S; i++) bad += r2[i] != a[i] || g1[i] != g2[i];
        GM_CHECK(bad == 0, "vitstep differs (S = %d)", S);
    }
    printf("# AVX2 kernels agree with the C references (exp/log 1e-15, sums 1e-13, Viterbi exactly)\n");
#else
    printf("# not an x86 build: only the C kernels exist\n");
#endif
}

/* The whole forward-backward with the C kernels (forced scalar path) against the SIMD ones. */
GM_TEST(test_paths_agree_end_to_end) {
    gm_hmm m;
    uint64_t s = 11;
    int *x = rand_symbols(&s, 5000, 12), len[2] = {3000, 2000}, *p1, *p2, i, diffs = 0;
    float *q1 = (float *)malloc(sizeof(float) * 5000 * 20), *q2 = (float *)malloc(sizeof(float) * 5000 * 20);
    double l1[2] = {NAN, NAN}, l2[2] = {NAN, NAN}, v1[2] = {NAN, NAN}, v2[2] = {NAN, NAN}, maxd = 0;
    const int path0 = gm_simd_path();
    gm_seqs d = gm_seqs_symbols(x, len, 2);
    p1 = (int *)malloc(sizeof(int) * 5000); p2 = (int *)malloc(sizeof(int) * 5000);
    GM_CHECK(make_discrete(&m, 20, 12, 3, 0.0) == 0, "%s", gm_last_error());
    gm_simd_force(GM_PATH_SCALAR);
    GM_CHECK(gm_hmm_posterior(&m, &d, q1, l1) == 0 && gm_hmm_viterbi(&m, &d, p1, v1) == 0, "%s", gm_last_error());
    gm_simd_force(path0);
    GM_CHECK(gm_hmm_posterior(&m, &d, q2, l2) == 0 && gm_hmm_viterbi(&m, &d, p2, v2) == 0, "%s", gm_last_error());
    for (i = 0; i < 2; i++) {
        GM_CHECK(close_rel(l1[i], l2[i], 1e-12, 0), "log p %.17g vs %.17g", l1[i], l2[i]);
        GM_CHECK(close_rel(v1[i], v2[i], 1e-12, 0), "viterbi log p %.17g vs %.17g", v1[i], v2[i]);
    }
    for (i = 0; i < 5000 * 20; i++) maxd = fmax(maxd, fabs(q1[i] - q2[i]));
    for (i = 0; i < 5000; i++) diffs += p1[i] != p2[i];
    GM_CHECK(maxd <= 1e-6, "posteriors differ by %g", maxd);
    GM_CHECK(diffs == 0, "%d Viterbi states differ", diffs);
    printf("# %s vs scalar: log p rel diff %.1e, posterior max diff %.1e\n", gm_simd_name(path0),
           fabs(l1[0] - l2[0]) / fabs(l1[0]), maxd);
    gm_hmm_free(&m);
    free(x); free(q1); free(q2); free(p1); free(p2);
}

/* ---------------------------------------------------------------------------------------- */
/* brute force on small models                                                              */
/* ---------------------------------------------------------------------------------------- */
static void check_against_brute(const gm_hmm *m, const int *sym, const float *x, const int *len, int n) {
    const int S = m->cfg.states;
    gm_seqs d = sym ? gm_seqs_symbols(sym, len, n) : gm_seqs_vectors(x, len, n);
    int total = 0, i, t, k, *path;
    float *post;
    double *ll, *vl, worst_post = 0, worst_ll = 0;
    for (i = 0; i < n; i++) total += len[i];
    post = (float *)malloc(sizeof(float) * total * S);
    path = (int *)malloc(sizeof(int) * total);
    ll = (double *)malloc(sizeof(double) * n);
    vl = (double *)malloc(sizeof(double) * n);
    for (i = 0; i < n; i++) ll[i] = vl[i] = NAN;   /* a failed call cannot pass the checks below */
    for (i = 0; i < total * S; i++) post[i] = NAN;
    GM_CHECK(gm_hmm_posterior(m, &d, post, ll) == 0, "%s", gm_last_error());
    GM_CHECK(gm_hmm_viterbi(m, &d, path, vl) == 0, "%s", gm_last_error());
    for (i = 0, total = 0; i < n; total += len[i], i++) {
        brute b;
        brute_force(m, sym ? sym + total : NULL, x ? x + (size_t)total * m->cfg.dims : NULL, len[i], &b);
        worst_ll = fmax(worst_ll, fabs(ll[i] - (double)b.ll) / fabs((double)b.ll));
        GM_CHECK(close_rel(ll[i], (double)b.ll, 1e-12, 0), "seq %d: log p %.15g, brute force %.15Lg", i, ll[i], b.ll);
        GM_CHECK(close_rel(vl[i], (double)b.best_lp, 1e-12, 0), "seq %d: viterbi %.15g, brute force %.15Lg", i, vl[i], b.best_lp);
        for (t = 0; t < len[i]; t++) {
            GM_CHECK(path[total + t] == b.best[t], "seq %d step %d: state %d, brute force %d", i, t, path[total + t], b.best[t]);
            for (k = 0; k < S; k++) worst_post = fmax(worst_post, fabs(post[(size_t)(total + t) * S + k] - b.post[t * S + k]));
        }
    }
    GM_CHECK(worst_post <= 1e-6, "posteriors differ from brute force by %g", worst_post);
    printf("# %s: %d sequences of length 1..%d: log p rel err %.1e, posterior max err %.1e, paths equal\n",
           sym ? "discrete" : "gaussian", n, len[n - 1], worst_ll, worst_post);
    free(post); free(path); free(ll); free(vl);
}

GM_TEST(test_brute_force_discrete) {
    gm_hmm m;
    uint64_t s = 5;
    int len[7] = {1, 2, 3, 4, 5, 6, 7}, *x = rand_symbols(&s, 28, 4);
    GM_CHECK(make_discrete(&m, 3, 4, 9, 1.0) == 0, "%s", gm_last_error());
    check_against_brute(&m, x, NULL, len, 7);
    gm_hmm_free(&m);
    free(x);
}

GM_TEST(test_brute_force_gaussian_mixture) {
    gm_hmm m;
    gm_hmm_config c = gm_hmm_default_config(2, GM_HMM_GAUSSIAN, 2);
    const float st[2] = {0.3f, 0.7f}, tr[4] = {0.8f, 0.2f, 0.35f, 0.65f}, w[4] = {0.6f, 0.4f, 0.25f, 0.75f};
    const float mu[8] = {-1, 0, 1, 1, 2, -1, 0.5f, 0.5f}, var[8] = {0.5f, 1, 2, 0.3f, 1, 1, 0.2f, 0.7f};
    uint64_t s = 3;
    int len[8] = {1, 2, 3, 4, 5, 6, 7, 8}, i;
    float x[72];
    for (i = 0; i < 72; i++) x[i] = (float)(4 * urand(&s) - 2);
    c.mixtures = 2;
    GM_CHECK(gm_hmm_init(&m, &c) == 0 && gm_hmm_set_chain(&m, st, tr) == 0 && gm_hmm_set_gaussian(&m, w, mu, var) == 0,
             "%s", gm_last_error());
    check_against_brute(&m, NULL, x, len, 8);
    gm_hmm_free(&m);
}

/* ---------------------------------------------------------------------------------------- */
/* 10,000 steps                                                                             */
/* ---------------------------------------------------------------------------------------- */
/* A left-to-right model: state 0 stays (0.999) or moves to state 1, which never leaves; it starts
   in 0. Its only possible paths are 0^k 1^(T-k), k = 1..T: all T of them are enumerated. The data
   first favours state 1 for 4000 steps, then state 0 for 6000, so the forward probability of state
   0 falls ~e^-8800 below state 1's (past double's range) before it becomes the best explanation:
   a naive forward underflows, and a log-space one without the exact step loses state 0. */
static void switch_check(const gm_hmm *m, const int *sym, const float *x, int T) {
    gm_seqs d = sym ? gm_seqs_symbols(sym, &T, 1) : gm_seqs_vectors(x, &T, 1);
    gm__hmm_tab tb = gm__hmm_tables(m);
    long double *e0 = (long double *)malloc(sizeof(long double) * (T + 1)), *e1 = (long double *)malloc(sizeof(long double) * (T + 1));
    long double *lp = (long double *)malloc(sizeof(long double) * (T + 1)), mx = -INFINITY, sum = 0, ll, tail;
    double got = NAN, vit = NAN, worst = 0;
    float *post = (float *)malloc(sizeof(float) * 2 * T);
    int *path = (int *)malloc(sizeof(int) * T), k, t, kbest = 0, bad = 0;
    /* prefix sums of the emission log-probabilities of each state */
    e0[0] = e1[0] = 0;
    for (t = 0; t < T; t++) {
        double row[2];
        if (sym) { row[0] = log(tb.B[sym[t]]); row[1] = log(tb.B[2 + sym[t]]); }
        else gm__hmm_gauss_row(&tb, x + t, row, NULL);
        e0[t + 1] = e0[t] + row[0];
        e1[t + 1] = e1[t] + row[1];
    }
    for (k = 1; k <= T; k++) {   /* k steps in state 0 */
        lp[k] = e0[k] + (k - 1) * logl(tb.A[0]);
        if (k < T) lp[k] += logl(tb.A[1]) + (T - k - 1) * logl(tb.A[3]) + e1[T] - e1[k];
        if (lp[k] > mx) { mx = lp[k]; kbest = k; }
    }
    for (k = 1; k <= T; k++) sum += expl(lp[k] - mx);
    ll = mx + logl(sum);
    GM_CHECK(gm_hmm_log_prob(m, &d, &got, NULL) == 0, "%s", gm_last_error());
    GM_CHECK(close_rel(got, (double)ll, 1e-12, 0), "log p %.17g, all %d paths %.17Lg", got, T, ll);
    GM_CHECK(gm_hmm_posterior(m, &d, post, NULL) == 0, "%s", gm_last_error());
    /* P(state_t = 0) = sum over k > t */
    tail = 0;
    for (t = T - 1; t >= 0; t--) {
        tail += expl(lp[t + 1] - ll);
        worst = fmax(worst, fabs(post[2 * t] - (double)tail));
    }
    GM_CHECK(worst <= 1e-6, "posterior of state 0 off by %g", worst);
    GM_CHECK(gm_hmm_viterbi(m, &d, path, &vit) == 0, "%s", gm_last_error());
    for (t = 0; t < T; t++) bad += path[t] != (t < kbest ? 0 : 1);
    GM_CHECK(bad == 0 && close_rel(vit, (double)lp[kbest], 1e-12, 0), "viterbi: %d states wrong, log p %.17g vs %.17Lg",
             bad, vit, lp[kbest]);
    printf("# %s switch model, T = %d: log p = %.6Lg (p ~ 1e%.0Lf), best switch after %d steps; rel err %.1e, posterior err %.1e\n",
           sym ? "discrete" : "gaussian", T, ll, ll / logl(10.0L), kbest, fabs(got - (double)ll) / fabs((double)ll), worst);
    free(e0); free(e1); free(lp); free(post); free(path);
}

GM_TEST(test_long_sequences_enumerated) {
    const int T = 10000;
    const float st[2] = {1, 0}, tr[4] = {0.999f, 0.001f, 0, 1}, em[4] = {0.9f, 0.1f, 0.1f, 0.9f};
    const float w[2] = {1, 1}, mu[2] = {-1, 1}, var[2] = {1, 1};
    int *sym = (int *)malloc(sizeof(int) * T), t, path0 = gm_simd_path(), rep;
    float *x = (float *)malloc(sizeof(float) * T);
    double naive[2] = {1, 0};
    gm_hmm m, g;
    gm_hmm_config c = gm_hmm_default_config(2, GM_HMM_DISCRETE, 2), cg = gm_hmm_default_config(2, GM_HMM_GAUSSIAN, 1);
    uint64_t s = 1;
    for (t = 0; t < T; t++) {
        sym[t] = t < 4000 ? (urand(&s) < 0.9 ? 1 : 0) : (urand(&s) < 0.9 ? 0 : 1);
        x[t] = (float)((t < 4000 ? 1.0 : -1.0) + 0.6 * (urand(&s) - 0.5));
    }
    GM_CHECK(gm_hmm_init(&m, &c) == 0 && gm_hmm_set_chain(&m, st, tr) == 0 && gm_hmm_set_discrete(&m, em) == 0, "%s", gm_last_error());
    GM_CHECK(gm_hmm_init(&g, &cg) == 0 && gm_hmm_set_chain(&g, st, tr) == 0 && gm_hmm_set_gaussian(&g, w, mu, var) == 0, "%s", gm_last_error());
    /* the naive forward in plain double probabilities underflows to exactly 0 */
    naive[0] = em[sym[0]];
    for (t = 1; t < T; t++) {
        const double a0 = naive[0] * tr[0] * em[sym[t]], a1 = (naive[0] * tr[1] + naive[1]) * em[2 + sym[t]];
        naive[0] = a0; naive[1] = a1;
    }
    GM_CHECK(naive[0] + naive[1] == 0, "the naive forward did not underflow (%g)", naive[0] + naive[1]);
    for (rep = 0; rep < 2; rep++) {   /* with the SIMD kernels, then the C references */
        if (rep == 1) gm_simd_force(GM_PATH_SCALAR);
        switch_check(&m, sym, NULL, T);
        switch_check(&g, NULL, x, T);
    }
    gm_simd_force(path0);
    gm_hmm_free(&m);
    gm_hmm_free(&g);
    free(sym); free(x);
}

/* An independent textbook implementation in long double log space (log-sum-exp everywhere). */
static void ref_forward_backward(const gm_hmm *m, const int *x, int T, long double *ll, double *post, int *path,
                                 long double *vit) {
    gm__hmm_tab tb = gm__hmm_tables(m);
    const int S = tb.S;
    long double *la = (long double *)malloc(sizeof(long double) * T * S), *lb = (long double *)malloc(sizeof(long double) * T * S);
    long double *dl = (long double *)malloc(sizeof(long double) * T * S);
    int *bp = (int *)malloc(sizeof(int) * T * S), t, i, j;
    for (j = 0; j < S; j++) dl[j] = la[j] = logl(tb.pi[j]) + logl(tb.B[j * tb.K + x[0]]);
    for (t = 1; t < T; t++)
        for (j = 0; j < S; j++) {
            long double mx = -INFINITY, s = 0, best = -INFINITY;
            for (i = 0; i < S; i++) {
                const long double v = la[(t - 1) * S + i] + logl(tb.A[i * S + j]), d = dl[(t - 1) * S + i] + logl(tb.A[i * S + j]);
                if (v > mx) mx = v;
                if (d > best) { best = d; bp[t * S + j] = i; }
            }
            for (i = 0; i < S; i++) s += expl(la[(t - 1) * S + i] + logl(tb.A[i * S + j]) - mx);
            la[t * S + j] = mx + logl(s) + logl(tb.B[j * tb.K + x[t]]);
            dl[t * S + j] = best + logl(tb.B[j * tb.K + x[t]]);
        }
    for (j = 0; j < S; j++) lb[(T - 1) * S + j] = 0;
    for (t = T - 2; t >= 0; t--)
        for (i = 0; i < S; i++) {
            long double mx = -INFINITY, s = 0;
            for (j = 0; j < S; j++) {
                const long double v = logl(tb.A[i * S + j]) + logl(tb.B[j * tb.K + x[t + 1]]) + lb[(t + 1) * S + j];
                if (v > mx) mx = v;
            }
            for (j = 0; j < S; j++) s += expl(logl(tb.A[i * S + j]) + logl(tb.B[j * tb.K + x[t + 1]]) + lb[(t + 1) * S + j] - mx);
            lb[t * S + i] = mx + logl(s);
        }
    {
        long double mx = -INFINITY, s = 0;
        for (j = 0; j < S; j++) if (la[(T - 1) * S + j] > mx) mx = la[(T - 1) * S + j];
        for (j = 0; j < S; j++) s += expl(la[(T - 1) * S + j] - mx);
        *ll = mx + logl(s);
    }
    for (t = 0; t < T; t++)
        for (j = 0; j < S; j++) post[t * S + j] = (double)expl(la[t * S + j] + lb[t * S + j] - *ll);
    *vit = -INFINITY;
    for (j = 0; j < S; j++)
        if (dl[(T - 1) * S + j] > *vit) { *vit = dl[(T - 1) * S + j]; path[T - 1] = j; }
    for (t = T - 1; t > 0; t--) path[t - 1] = bp[t * S + path[t]];
    free(la); free(lb); free(dl); free(bp);
}

GM_TEST(test_long_sequence_reference) {
    const int T = 10000, S = 5, K = 7;
    gm_hmm m;
    uint64_t s = 21;
    int *x = rand_symbols(&s, T, K), *p1 = (int *)malloc(sizeof(int) * T), *p2 = (int *)malloc(sizeof(int) * T), t, bad = 0;
    double *post = (double *)malloc(sizeof(double) * T * S), got = NAN, vit = NAN, worst = 0;
    float *q = (float *)malloc(sizeof(float) * T * S);
    long double ll, rv;
    gm_seqs d = gm_seqs_symbols(x, &T, 1);
    GM_CHECK(make_discrete(&m, S, K, 4, 2.0) == 0, "%s", gm_last_error());
    ref_forward_backward(&m, x, T, &ll, post, p2, &rv);
    GM_CHECK(gm_hmm_posterior(&m, &d, q, &got) == 0 && gm_hmm_viterbi(&m, &d, p1, &vit) == 0, "%s", gm_last_error());
    GM_CHECK(close_rel(got, (double)ll, 1e-12, 0), "log p %.17g vs reference %.17Lg", got, ll);
    GM_CHECK(close_rel(vit, (double)rv, 1e-12, 0), "viterbi log p %.17g vs reference %.17Lg", vit, rv);
    for (t = 0; t < T * S; t++) worst = fmax(worst, fabs(q[t] - post[t]));
    for (t = 0; t < T; t++) bad += p1[t] != p2[t];
    GM_CHECK(worst <= 1e-6, "posteriors differ from the reference by %g", worst);
    GM_CHECK(bad == 0, "%d Viterbi states differ from the reference", bad);
    printf("# random 5-state model, T = %d: log p = %.2f; vs long-double reference: rel %.1e, posterior %.1e\n", T, got,
           fabs(got - (double)ll) / fabs((double)ll), worst);
    gm_hmm_free(&m);
    free(x); free(p1); free(p2); free(post); free(q);
}

/* With identical emission rows the states explain nothing: log p(x) = sum_t log b(x_t) and the
   posterior of step t is the chain's marginal pi A^t, whatever the data. */
GM_TEST(test_uninformative_emissions_closed_form) {
    const int T = 10000, S = 3, K = 4;
    const float st[3] = {0.2f, 0.5f, 0.3f}, tr[9] = {0.5f, 0.3f, 0.2f, 0.1f, 0.8f, 0.1f, 0.3f, 0.3f, 0.4f};
    const float em[12] = {0.1f, 0.2f, 0.3f, 0.4f, 0.1f, 0.2f, 0.3f, 0.4f, 0.1f, 0.2f, 0.3f, 0.4f};
    gm_hmm m;
    gm_hmm_config c = gm_hmm_default_config(S, GM_HMM_DISCRETE, K);
    uint64_t s = 2;
    int *x = rand_symbols(&s, T, K), t, i, j;
    float *q = (float *)malloc(sizeof(float) * T * S);
    double got = NAN, want = 0, marg[3], nm[3], worst = 0;
    gm_seqs d = gm_seqs_symbols(x, &T, 1);
    gm__hmm_tab tb;
    GM_CHECK(gm_hmm_init(&m, &c) == 0 && gm_hmm_set_chain(&m, st, tr) == 0 && gm_hmm_set_discrete(&m, em) == 0, "%s", gm_last_error());
    tb = gm__hmm_tables(&m);   /* the values the model holds (the float rows renormalized in double) */
    for (i = 0; i < S; i++) marg[i] = tb.pi[i];
    for (t = 0; t < T; t++) want += log(tb.B[x[t]]);
    GM_CHECK(gm_hmm_posterior(&m, &d, q, &got) == 0, "%s", gm_last_error());
    GM_CHECK(close_rel(got, want, 1e-12, 0), "log p %.17g, closed form %.17g", got, want);
    for (t = 0; t < T; t++) {
        for (i = 0; i < S; i++) worst = fmax(worst, fabs(q[t * S + i] - marg[i]));
        for (j = 0; j < S; j++) { nm[j] = 0; for (i = 0; i < S; i++) nm[j] += marg[i] * tb.A[i * S + j]; }
        for (j = 0; j < S; j++) marg[j] = nm[j];
    }
    GM_CHECK(worst <= 1e-6, "posteriors differ from the chain's marginals by %g", worst);
    gm_hmm_free(&m);
    free(x); free(q);
}

/* ---------------------------------------------------------------------------------------- */
/* Baum-Welch                                                                               */
/* ---------------------------------------------------------------------------------------- */
/* n sequences of random lengths in [lo, hi] sampled from m: lengths into len, data returned. */
static void sample_batch(gm_hmm *m, int n, int lo, int hi, uint64_t *s, int *len, int **sym, float **x, int **states) {
    int i, total = 0, off = 0;
    for (i = 0; i < n; i++) { len[i] = lo + (int)(urand(s) * (hi - lo + 1)); total += len[i]; }
    if (sym) *sym = (int *)malloc(sizeof(int) * total);
    if (x) *x = (float *)malloc(sizeof(float) * total * (m->cfg.dims > 0 ? m->cfg.dims : 1));
    if (states) *states = (int *)malloc(sizeof(int) * total);
    for (i = 0; i < n; i++) {
        gm_hmm_sample(m, 1, len[i], states ? *states + off : NULL, sym ? *sym + off : NULL,
                      x ? *x + (size_t)off * m->cfg.dims : NULL);
        off += len[i];
    }
}

/* iters EM steps from the model's current parameters; every step's log-likelihood (or objective)
   must be >= the previous one minus 1e-10 relative (summation noise). */
static int monotone_run(gm_hmm *m, const gm_seqs *d, int iters, int use_objective, double *first, double *last) {
    gm_hmm_stats st;
    double prev = -INFINITY, worst_drop = 0;
    int it, drops = 0;
    for (it = 0; it < iters; it++) {
        double v;
        if (gm_hmm_train_step(m, d, &st) != 0) { printf("# %s\n", gm_last_error()); return -1; }
        v = use_objective ? st.objective : st.log_lik;
        if (it == 0) *first = v;
        if (v < prev - 1e-10 * fabs(prev)) { drops++; worst_drop = fmax(worst_drop, prev - v); }
        prev = v;
    }
    *last = prev;
    if (drops) printf("# %d drops, worst %.3g nats\n", drops, worst_drop);
    return drops;
}

GM_TEST(test_baum_welch_monotone) {
    gm_hmm truth, m;
    gm_hmm_config c;
    int len[12], *sym = NULL, r;
    float *x = NULL;
    uint64_t s = 99;
    double a, b;
    gm_seqs d;
    /* discrete: data from a random 4-state model, three random starts of a 4-state model, 40 steps */
    GM_CHECK(make_discrete(&truth, 4, 6, 8, 2.0) == 0, "%s", gm_last_error());
    sample_batch(&truth, 12, 50, 300, &s, len, &sym, NULL, NULL);
    d = gm_seqs_symbols(sym, len, 12);
    for (r = 0; r < 3; r++) {
        c = gm_hmm_default_config(4, GM_HMM_DISCRETE, 6);
        c.seed = 100 + r;
        GM_CHECK(gm_hmm_init(&m, &c) == 0, "%s", gm_last_error());
        GM_CHECK(monotone_run(&m, &d, 40, 0, &a, &b) == 0, "discrete start %d: log-likelihood went down", r);
        GM_CHECK(b > a + 10, "discrete start %d: no real progress (%.3f -> %.3f)", r, a, b);
        gm_hmm_free(&m);
        /* with pseudo-counts the objective (log-likelihood + log prior) is what never decreases */
        c.pseudo = 0.5f;
        GM_CHECK(gm_hmm_init(&m, &c) == 0, "%s", gm_last_error());
        GM_CHECK(monotone_run(&m, &d, 40, 1, &a, &b) == 0, "discrete start %d, pseudo 0.5: objective went down", r);
        gm_hmm_free(&m);
    }
    gm_hmm_free(&truth);
    free(sym);
    /* Gaussian, 2 components per state, 2-D: data from a 3-state model */
    {
        const float st[3] = {0.5f, 0.3f, 0.2f}, tr[9] = {0.9f, 0.05f, 0.05f, 0.1f, 0.8f, 0.1f, 0.05f, 0.15f, 0.8f};
        const float w[6] = {0.5f, 0.5f, 0.3f, 0.7f, 0.8f, 0.2f};
        const float mu[12] = {0, 0, 1, 1, 3, 0, 3, 1, -2, 2, -3, 3}, var[12] = {0.5f, 0.5f, 0.3f, 0.3f, 1, 1, 0.5f, 0.2f, 1, 1, 0.4f, 0.6f};
        c = gm_hmm_default_config(3, GM_HMM_GAUSSIAN, 2);
        c.mixtures = 2;
        GM_CHECK(gm_hmm_init(&truth, &c) == 0 && gm_hmm_set_chain(&truth, st, tr) == 0 &&
                 gm_hmm_set_gaussian(&truth, w, mu, var) == 0, "%s", gm_last_error());
        sample_batch(&truth, 8, 100, 250, &s, len, NULL, &x, NULL);
        d = gm_seqs_vectors(x, len, 8);
        for (r = 0; r < 3; r++) {
            c.seed = 200 + r;
            GM_CHECK(gm_hmm_init(&m, &c) == 0, "%s", gm_last_error());
            GM_CHECK(monotone_run(&m, &d, 40, 0, &a, &b) == 0, "gaussian start %d: log-likelihood went down", r);
            GM_CHECK(b > a + 10, "gaussian start %d: no real progress (%.3f -> %.3f)", r, a, b);
            gm_hmm_free(&m);
        }
        gm_hmm_free(&truth);
        free(x);
    }
}

/* The permutation of {0..S-1} (S <= 4) that maps learned states onto true ones best, by the
   largest absolute difference over the given per-state parameter rows. */
static double best_perm_err(int S, const float *tl, const double *ll, int tcols, const float *el, const double *le, int ecols,
                            int *perm) {
    int p[4], best[4], i, j, k;
    double besterr = 1e30;
    int n = 1;
    for (i = 2; i <= S; i++) n *= i;
    for (k = 0; k < n; k++) {
        int used[4] = {0, 0, 0, 0}, r = k;
        double err = 0;
        for (i = 0; i < S; i++) {   /* the k-th permutation (factorial number system) */
            int pick = r % (S - i), c = -1;
            r /= S - i;
            for (j = 0; j < S; j++) if (!used[j] && ++c == pick) break;
            p[i] = j;
            used[j] = 1;
        }
        /* learned state p[i] plays true state i */
        for (i = 0; i < S; i++) {
            for (j = 0; tl && j < S; j++) err = fmax(err, fabs(tl[i * tcols + j] - ll[p[i] * tcols + p[j]]));
            for (j = 0; el && j < ecols; j++) err = fmax(err, fabs(el[i * ecols + j] - le[p[i] * ecols + j]));
        }
        if (err < besterr) { besterr = err; memcpy(best, p, sizeof best); }
    }
    if (perm) memcpy(perm, best, sizeof(int) * S);
    return besterr;
}

GM_TEST(test_recovers_discrete_hmm) {
    /* a 3-state model whose states emit distinguishable (but overlapping) symbol distributions */
    const float st[3] = {0.5f, 0.25f, 0.25f}, tr[9] = {0.8f, 0.15f, 0.05f, 0.1f, 0.7f, 0.2f, 0.2f, 0.1f, 0.7f};
    const float em[12] = {0.8f, 0.1f, 0.05f, 0.05f, 0.05f, 0.8f, 0.1f, 0.05f, 0.05f, 0.05f, 0.2f, 0.7f};
    /* tolerance c / sqrt(N) on the largest error over the 9 transition and 12 emission entries */
    const int nseq[3] = {10, 100, 1000};
    const double c_tol = 8.0;
    double err[3];
    int k;
    for (k = 0; k < 3; k++) {
        gm_hmm truth, m;
        gm_hmm_config c = gm_hmm_default_config(3, GM_HMM_DISCRETE, 4);
        gm_hmm_stats fst;
        int *len = (int *)malloc(sizeof(int) * nseq[k]), *sym = NULL, i, N = 0;
        uint64_t s = 1234 + k;
        gm_seqs d;
        double tol;
        c.seed = 77 + k;
        GM_CHECK(gm_hmm_init(&truth, &c) == 0 && gm_hmm_set_chain(&truth, st, tr) == 0 && gm_hmm_set_discrete(&truth, em) == 0,
                 "%s", gm_last_error());
        sample_batch(&truth, nseq[k], 100, 100, &s, len, &sym, NULL, NULL);
        for (i = 0; i < nseq[k]; i++) N += len[i];
        d = gm_seqs_symbols(sym, len, nseq[k]);
        c.restarts = 4;
        c.tol = 1e-6;
        c.max_iters = 300;
        GM_CHECK(gm_hmm_init(&m, &c) == 0 && gm_hmm_fit(&m, &d, &fst) == 0, "%s", gm_last_error());
        err[k] = best_perm_err(3, tr, gm__hmm_tables(&m).A, 3, em, gm__hmm_tables(&m).B, 4, NULL);
        tol = c_tol / sqrt((double)N);
        printf("# discrete, N = %6d steps: largest parameter error %.4f (tolerance %.4f), %d iterations\n", N, err[k], tol, fst.iters);
        GM_CHECK(err[k] <= tol, "N = %d: error %.4f above %.4f", N, err[k], tol);
        gm_hmm_free(&truth);
        gm_hmm_free(&m);
        free(len); free(sym);
    }
}

GM_TEST(test_recovers_gaussian_hmm) {
    const float st[3] = {0.4f, 0.3f, 0.3f}, tr[9] = {0.85f, 0.1f, 0.05f, 0.05f, 0.9f, 0.05f, 0.1f, 0.1f, 0.8f};
    const float w[3] = {1, 1, 1}, mu[6] = {-2, 0, 0, 1.5f, 2, -1}, var[6] = {1, 0.5f, 0.4f, 1, 0.8f, 0.8f};
    const int nseq[3] = {10, 100, 1000};
    const double c_tol = 8.0;   /* on the largest error over transitions, means and standard deviations */
    int k;
    for (k = 0; k < 3; k++) {
        gm_hmm truth, m;
        gm_hmm_config c = gm_hmm_default_config(3, GM_HMM_GAUSSIAN, 2);
        gm_hmm_stats fst;
        int *len = (int *)malloc(sizeof(int) * nseq[k]), i, j, N = 0, perm[3];
        float *x = NULL;
        double lmv[6 * 2], tol, err;
        gm__hmm_tab tb;
        uint64_t s = 555 + k;
        gm_seqs d;
        c.seed = 5 + k;
        GM_CHECK(gm_hmm_init(&truth, &c) == 0 && gm_hmm_set_chain(&truth, st, tr) == 0 && gm_hmm_set_gaussian(&truth, w, mu, var) == 0,
                 "%s", gm_last_error());
        sample_batch(&truth, nseq[k], 100, 100, &s, len, NULL, &x, NULL);
        for (i = 0; i < nseq[k]; i++) N += len[i];
        d = gm_seqs_vectors(x, len, nseq[k]);
        c.restarts = 2;
        c.tol = 1e-6;
        c.max_iters = 300;
        GM_CHECK(gm_hmm_init(&m, &c) == 0 && gm_hmm_fit(&m, &d, &fst) == 0, "%s", gm_last_error());
        tb = gm__hmm_tables(&m);
        /* per state: mean (2) then standard deviation (2), true and learned */
        {
            float truth_row[12];
            for (i = 0; i < 3; i++)
                for (j = 0; j < 2; j++) {
                    truth_row[i * 4 + j] = mu[i * 2 + j];
                    truth_row[i * 4 + 2 + j] = sqrtf(var[i * 2 + j]);
                    lmv[i * 4 + j] = tb.mean[i * 2 + j];
                    lmv[i * 4 + 2 + j] = sqrt(tb.var[i * 2 + j]);
                }
            err = best_perm_err(3, tr, tb.A, 3, truth_row, lmv, 4, perm);
        }
        tol = c_tol / sqrt((double)N);
        printf("# gaussian, N = %6d steps: largest parameter error %.4f (tolerance %.4f), %d iterations\n", N, err, tol, fst.iters);
        GM_CHECK(err <= tol, "N = %d: error %.4f above %.4f", N, err, tol);
        gm_hmm_free(&truth);
        gm_hmm_free(&m);
        free(len); free(x);
    }
}

static int count_iters(void *ctx, int restart, int iter, const gm_hmm_stats *st) {
    int *n = (int *)ctx;
    (void)restart; (void)iter; (void)st;
    return ++*n >= 3;   /* stop after the third iteration */
}

/* restarts = 0 refines the current parameters; the callback sees every iteration and can stop. */
GM_TEST(test_fit_options) {
    gm_hmm truth, m;
    gm_hmm_config c;
    gm_hmm_stats st;
    int len[6], *sym = NULL, calls = 0;
    uint64_t s = 12;
    double before = NAN, after = NAN;
    gm_seqs d;
    GM_CHECK(make_discrete(&truth, 3, 5, 3, 2.0) == 0, "%s", gm_last_error());
    sample_batch(&truth, 6, 100, 200, &s, len, &sym, NULL, NULL);
    d = gm_seqs_symbols(sym, len, 6);
    GM_CHECK(make_discrete(&m, 3, 5, 3, 2.0) == 0, "%s", gm_last_error());   /* starts at the truth */
    m.cfg.restarts = 0;
    m.cfg.max_iters = 20;
    GM_CHECK(gm_hmm_log_prob(&m, &d, NULL, &before) == 0 && gm_hmm_fit(&m, &d, &st) == 0, "%s", gm_last_error());
    GM_CHECK(gm_hmm_log_prob(&m, &d, NULL, &after) == 0, "%s", gm_last_error());
    GM_CHECK(after >= before && close_rel(after, st.log_lik, 1e-12, 0), "refining: %.6f -> %.6f (stats %.6f)", before, after,
             st.log_lik);
    GM_CHECK(st.restart == 0 && st.iters >= 1 && st.iters <= 20, "restart %d, %d iterations", st.restart, st.iters);
    /* the callback stops the fit after 3 iterations of the first of 4 restarts */
    c = gm_hmm_default_config(3, GM_HMM_DISCRETE, 5);
    c.on_iter = count_iters;
    c.on_iter_ctx = &calls;
    gm_hmm_free(&m);
    GM_CHECK(gm_hmm_init(&m, &c) == 0 && gm_hmm_fit(&m, &d, &st) == 0, "%s", gm_last_error());
    GM_CHECK(calls == 3 && st.iters == 3 && st.restart == 0, "callback calls %d, iterations %d, restart %d", calls, st.iters,
             st.restart);
    gm_hmm_free(&m); gm_hmm_free(&truth);
    free(sym);
}

/* Results do not depend on the thread count. */
GM_TEST(test_threads_do_not_change_results) {
    gm_hmm a, b, truth;
    int len[40], *sym = NULL, i, same = 1;
    uint64_t s = 4;
    gm_seqs d;
    GM_CHECK(make_discrete(&truth, 6, 5, 1, 1.0) == 0, "%s", gm_last_error());
    sample_batch(&truth, 40, 20, 400, &s, len, &sym, NULL, NULL);
    d = gm_seqs_symbols(sym, len, 40);
    GM_CHECK(make_discrete(&a, 6, 5, 2, 0.0) == 0 && make_discrete(&b, 6, 5, 2, 0.0) == 0, "%s", gm_last_error());
    gm_set_threads(1);
    for (i = 0; i < 3; i++) GM_CHECK(gm_hmm_train_step(&a, &d, NULL) == 0, "%s", gm_last_error());
    gm_set_threads(2);
    for (i = 0; i < 3; i++) GM_CHECK(gm_hmm_train_step(&b, &d, NULL) == 0, "%s", gm_last_error());
    for (i = 0; i < (int)a.params.count; i++) same &= a.p[i] == b.p[i];
    GM_CHECK(same, "parameters after 3 Baum-Welch steps differ between 1 and 2 threads");
    gm_set_threads(0);
    gm_hmm_free(&a); gm_hmm_free(&b); gm_hmm_free(&truth);
    free(sym);
}

GM_TEST(test_sampling_matches_model) {
    gm_hmm m;
    const int T = 200000;
    int *st = (int *)malloc(sizeof(int) * T), *sym = (int *)malloc(sizeof(int) * T), i, j;
    double cnt[9] = {0}, row[3] = {0}, ecnt[12] = {0}, worst = 0;
    gm__hmm_tab tb;
    GM_CHECK(make_discrete(&m, 3, 4, 17, 1.0) == 0, "%s", gm_last_error());
    GM_CHECK(gm_hmm_sample(&m, 1, T, st, sym, NULL) == 0, "%s", gm_last_error());
    for (i = 1; i < T; i++) { cnt[st[i - 1] * 3 + st[i]]++; row[st[i - 1]]++; }
    for (i = 0; i < T; i++) ecnt[st[i] * 4 + sym[i]]++;
    tb = gm__hmm_tables(&m);
    for (i = 0; i < 3; i++) {
        double n = 0;
        for (j = 0; j < 4; j++) n += ecnt[i * 4 + j];
        for (j = 0; j < 3; j++) worst = fmax(worst, fabs(cnt[i * 3 + j] / row[i] - tb.A[i * 3 + j]));
        for (j = 0; j < 4; j++) worst = fmax(worst, fabs(ecnt[i * 4 + j] / n - tb.B[i * 4 + j]));
    }
    /* about 60,000 draws per row: standard error <= 0.002, so 0.01 is 5 standard errors */
    GM_CHECK(worst < 0.01, "sampled frequencies off by %g", worst);
    gm_hmm_free(&m);
    free(st); free(sym);
}

/* ---------------------------------------------------------------------------------------- */
/* checkpoints                                                                              */
/* ---------------------------------------------------------------------------------------- */
GM_TEST(test_hmm_save_load) {
    const char *path = "/tmp/gm_test_hmm.safetensors", *bad = "/tmp/gm_test_hmm_bad.safetensors";
    gm_hmm m, r, g;
    gm_hmm_config cg = gm_hmm_default_config(3, GM_HMM_GAUSSIAN, 2), c5;
    uint64_t s = 8;
    int *x = rand_symbols(&s, 500, 4), len = 500, i, same = 1;
    double l1 = NAN, l2 = NAN, *keep;
    gm_seqs d = gm_seqs_symbols(x, &len, 1);
    GM_CHECK(make_discrete(&m, 3, 4, 31, 1.0) == 0, "%s", gm_last_error());
    for (i = 0; i < 3; i++) GM_CHECK(gm_hmm_train_step(&m, &d, NULL) == 0, "%s", gm_last_error());
    GM_CHECK(gm_hmm_save(&m, path) == 0, "%s", gm_last_error());
    GM_CHECK(make_discrete(&r, 3, 4, 1, 0.0) == 0, "%s", gm_last_error());
    GM_CHECK(gm_hmm_load(&r, path) == 0, "%s", gm_last_error());
    for (i = 0; i < (int)m.params.count; i++) same &= m.params.data[i] == r.params.data[i];
    GM_CHECK(same, "loaded parameters differ from the saved ones");
    GM_CHECK(r.step == 3, "step %ld after load, expected 3", r.step);
    GM_CHECK(gm_hmm_log_prob(&m, &d, &l1, NULL) == 0 && gm_hmm_log_prob(&r, &d, &l2, NULL) == 0, "%s", gm_last_error());
    GM_CHECK(close_rel(l1, l2, 1e-6, 0), "log p %.10g before, %.10g after the float checkpoint", l1, l2);
    /* another architecture: refused, the model untouched */
    GM_CHECK(gm_hmm_init(&g, &cg) == 0, "%s", gm_last_error());
    keep = (double *)malloc(sizeof(double) * g.params.count);
    memcpy(keep, g.p, sizeof(double) * g.params.count);
    GM_CHECK(gm_hmm_load(&g, path) != 0, "a discrete model's file loaded into a Gaussian model");
    GM_CHECK(strstr(gm_last_error(), "emission=discrete") && strstr(gm_last_error(), "emission=gaussian"),
             "message should name both architectures: %s", gm_last_error());
    GM_CHECK(memcmp(keep, g.p, sizeof(double) * g.params.count) == 0, "a refused load changed the model");
    c5 = gm_hmm_default_config(5, GM_HMM_DISCRETE, 4);
    gm_hmm_free(&g);
    GM_CHECK(gm_hmm_init(&g, &c5) == 0 && gm_hmm_load(&g, path) != 0, "a 3-state file loaded into a 5-state model");
    gm_hmm_free(&g);
    /* a file that is not an HMM: a Markov chain's */
    {
        gm_markov mc;
        gm_markov_config mcfg = gm_markov_default_config(4, 2);
        GM_CHECK(gm_markov_init(&mc, &mcfg) == 0 && gm_markov_train(&mc, &d) == 0 && gm_markov_save(&mc, bad) == 0, "%s", gm_last_error());
        GM_CHECK(gm_hmm_load(&r, bad) != 0 && strstr(gm_last_error(), "markov"), "a markov file was not refused: %s", gm_last_error());
        GM_CHECK(gm_markov_load(&mc, path) != 0 && strstr(gm_last_error(), "hmm"), "an hmm file loaded as a markov chain: %s", gm_last_error());
        gm_markov_free(&mc);
    }
    /* an HMM file whose transition matrix is not stochastic: refused by validation, untouched */
    {
        char arch[128];
        gm_model_part part;
        gm_params_data(&m.params, m.v_trans)[4] += 0.5f;   /* row 1 now sums to 1.5 */
        gm_hmm_arch(&m.cfg, arch, sizeof arch);
        part.name = ""; part.params = &m.params; part.opt = NULL;
        GM_CHECK(gm_model_save(bad, "hmm", arch, 0, &part, 1, NULL) == 0, "%s", gm_last_error());
        memcpy(keep, r.p, sizeof(double) * r.params.count);
        GM_CHECK(gm_hmm_load(&r, bad) != 0, "a non-stochastic transition matrix was loaded");
        GM_CHECK(strstr(gm_last_error(), "trans row 1"), "message should name the row: %s", gm_last_error());
        GM_CHECK(memcmp(keep, r.p, sizeof(double) * r.params.count) == 0, "a refused load changed the model");
        gm_params_data(&m.params, m.v_trans)[4] = -0.1f;
        GM_CHECK(gm_model_save(bad, "hmm", arch, 0, &part, 1, NULL) == 0, "%s", gm_last_error());
        GM_CHECK(gm_hmm_load(&r, bad) != 0 && strstr(gm_last_error(), "negative"), "a negative probability was loaded: %s", gm_last_error());
        gm_params_data(&m.params, m.v_trans)[4] = NAN;
        GM_CHECK(gm_model_save(bad, "hmm", arch, 0, &part, 1, NULL) == 0, "%s", gm_last_error());
        GM_CHECK(gm_hmm_load(&r, bad) != 0 && strstr(gm_last_error(), "not finite"), "a NaN was loaded: %s", gm_last_error());
    }
    /* Gaussian roundtrip */
    {
        float *xv = (float *)malloc(sizeof(float) * 600);
        int gl = 300;
        gm_seqs gd;
        for (i = 0; i < 600; i++) xv[i] = (float)(urand(&s) * 4 - 2);
        gd = gm_seqs_vectors(xv, &gl, 1);
        cg.mixtures = 2;
        GM_CHECK(gm_hmm_init(&g, &cg) == 0 && gm_hmm_train_step(&g, &gd, NULL) == 0 && gm_hmm_save(&g, path) == 0, "%s", gm_last_error());
        cg.seed = 99;
        gm_hmm_free(&r);
        GM_CHECK(gm_hmm_init(&r, &cg) == 0 && gm_hmm_load(&r, path) == 0, "%s", gm_last_error());
        GM_CHECK(gm_hmm_log_prob(&g, &gd, &l1, NULL) == 0 && gm_hmm_log_prob(&r, &gd, &l2, NULL) == 0, "%s", gm_last_error());
        GM_CHECK(close_rel(l1, l2, 1e-6, 0), "gaussian log p %.10g before, %.10g after", l1, l2);
        gm_hmm_free(&g);
        free(xv);
    }
    remove(path); remove(bad);
    gm_hmm_free(&m); gm_hmm_free(&r);
    free(x); free(keep);
}

/* ---------------------------------------------------------------------------------------- */
/* Markov chains                                                                            */
/* ---------------------------------------------------------------------------------------- */
GM_TEST(test_markov_counts_and_smoothing) {
    /* alphabet {0,1,2}, order 2, two sequences: 0 1 2 0 1 1 and 2 2 */
    const int sym[8] = {0, 1, 2, 0, 1, 1, 2, 2}, len[2] = {6, 2};
    gm_markov m;
    gm_markov_config c = gm_markov_default_config(3, 2);
    gm_seqs d = gm_seqs_symbols(sym, len, 2);
    float p[3];
    int ctx[2] = {0, 1}, ctx1[1] = {2};
    double lp, want;
    GM_CHECK(gm_markov_init(&m, &c) == 0 && gm_markov_train(&m, &d) == 0, "%s", gm_last_error());
    /* unigram: counts 0:2, 1:3, 2:3 of 8, alpha 0.5: (c + 0.5) / 9.5 */
    GM_CHECK(gm_markov_next(&m, NULL, 0, p) == 0, "%s", gm_last_error());
    GM_CHECK_CLOSE(p[0], 2.5 / 9.5, 1e-6);
    GM_CHECK_CLOSE(p[1], 3.5 / 9.5, 1e-6);
    /* after "2": followers 0 (once, in seq 0) and 2 (once, in seq 1): Witten-Bell s = 2 distinct,
       P(x|2) = (c(2x) + 2 P0(x)) / (2 + 2) */
    GM_CHECK(gm_markov_next(&m, ctx1, 1, p) == 0, "%s", gm_last_error());
    GM_CHECK_CLOSE(p[0], (1 + 2 * 2.5 / 9.5) / 4, 1e-6);
    GM_CHECK_CLOSE(p[1], (0 + 2 * 3.5 / 9.5) / 4, 1e-6);
    /* after "0 1": followers 2 and 1 (once each); order 1 after "1": 2 (once), 1 (once) */
    GM_CHECK(gm_markov_next(&m, ctx, 2, p) == 0, "%s", gm_last_error());
    {
        const double p0 = 3.5 / 9.5, p1 = (1 + 2 * p0) / 4, p2 = (1 + 2 * p1) / 4;   /* symbol 1 */
        GM_CHECK_CLOSE(p[1], p2, 1e-6);
        GM_CHECK_CLOSE(p[0] + p[1] + p[2], 1.0, 1e-6);
    }
    /* log p of the training data equals the sum of the next-symbol probabilities */
    GM_CHECK(gm_markov_log_prob(&m, &d, NULL, &lp) == 0, "%s", gm_last_error());
    {
        int t, s0, k;
        want = 0;
        for (k = 0, s0 = 0; k < 2; s0 += len[k], k++)
            for (t = 0; t < len[k]; t++) {
                const int h = t < 2 ? t : 2;
                gm_markov_next(&m, sym + s0 + t - h, h, p);
                want += log(p[sym[s0 + t]]);
            }
        GM_CHECK_CLOSE(lp, want, 1e-6);
    }
    gm_markov_free(&m);
    /* additive at the full order: (c(ctx x) + alpha) / (c(ctx .) + alpha K) */
    c.smoothing = GM_MARKOV_ADDITIVE;
    c.alpha = 1;
    GM_CHECK(gm_markov_init(&m, &c) == 0 && gm_markov_train(&m, &d) == 0, "%s", gm_last_error());
    GM_CHECK(gm_markov_next(&m, ctx, 2, p) == 0, "%s", gm_last_error());
    GM_CHECK_CLOSE(p[0], 1.0 / 5, 1e-6);
    GM_CHECK_CLOSE(p[2], 2.0 / 5, 1e-6);
    gm_markov_free(&m);
    /* maximum likelihood (additive, alpha 0): an unseen continuation has probability 0 */
    c.alpha = 0;
    GM_CHECK(gm_markov_init(&m, &c) == 0 && gm_markov_train(&m, &d) == 0, "%s", gm_last_error());
    {
        const int unseen[3] = {0, 1, 0}, l3 = 3;
        gm_seqs u = gm_seqs_symbols(unseen, &l3, 1);
        GM_CHECK(gm_markov_log_prob(&m, &u, NULL, &lp) == 0 && lp == -INFINITY, "log p %g, expected -inf", lp);
    }
    gm_markov_free(&m);
}

GM_TEST(test_markov_sampling) {
    /* a chain trained on a long random sequence from a known 2nd-order rule */
    const int T = 50000, K = 4;
    int *x = (int *)malloc(sizeof(int) * T), t, out[20000], ctx[2] = {1, 2}, counts[4] = {0, 0, 0, 0}, greedy[50], i;
    uint64_t s = 3;
    gm_markov m;
    gm_markov_config c = gm_markov_default_config(K, 2);
    float p[4];
    double worst = 0, sharp[4], z = 0;
    gm_seqs d;
    x[0] = 0; x[1] = 1;
    for (t = 2; t < T; t++) x[t] = urand(&s) < 0.7 ? (x[t - 1] + x[t - 2]) % K : (int)(urand(&s) * K);
    d = gm_seqs_symbols(x, &T, 1);
    GM_CHECK(gm_markov_init(&m, &c) == 0 && gm_markov_train(&m, &d) == 0, "%s", gm_last_error());
    /* 20,000 continuations of "1 2" one symbol long: frequencies match the distribution */
    GM_CHECK(gm_markov_next(&m, ctx, 2, p) == 0, "%s", gm_last_error());
    for (i = 0; i < 20000; i++) GM_CHECK(gm_markov_continue(&m, ctx, 2, 1, 1.0f, out + i) == 0, "%s", gm_last_error());
    for (i = 0; i < 20000; i++) counts[out[i]]++;
    for (i = 0; i < K; i++) worst = fmax(worst, fabs(counts[i] / 20000.0 - p[i]));
    GM_CHECK(worst < 0.015, "sampled frequencies off by %g (p = %g %g %g %g)", worst, p[0], p[1], p[2], p[3]);
    /* temperature 0.5 samples from p^2 renormalized */
    for (i = 0; i < K; i++) { sharp[i] = (double)p[i] * p[i]; z += sharp[i]; counts[i] = 0; }
    for (i = 0; i < 20000; i++) gm_markov_continue(&m, ctx, 2, 1, 0.5f, out + i);
    for (i = 0; i < 20000; i++) counts[out[i]]++;
    worst = 0;
    for (i = 0; i < K; i++) worst = fmax(worst, fabs(counts[i] / 20000.0 - sharp[i] / z));
    GM_CHECK(worst < 0.015, "temperature 0.5: frequencies off by %g", worst);
    /* temperature 0 follows the rule (its most probable continuation) */
    GM_CHECK(gm_markov_continue(&m, ctx, 2, 50, 0.0f, greedy) == 0, "%s", gm_last_error());
    for (i = 0, t = 0; i < 50; i++) {
        const int a = i >= 2 ? greedy[i - 2] : ctx[i], b = i >= 1 ? greedy[i - 1] : ctx[1];
        t += greedy[i] != (a + b) % K;
    }
    GM_CHECK(t == 0, "greedy continuation broke the rule %d times", t);
    /* whole sequences */
    GM_CHECK(gm_markov_sample(&m, 3, 100, 1.0f, out) == 0, "%s", gm_last_error());
    gm_markov_free(&m);
    free(x);
}

GM_TEST(test_markov_save_load) {
    const char *path = "/tmp/gm_test_markov.safetensors";
    uint64_t s = 6;
    int *x = rand_symbols(&s, 3000, 5), len[3] = {1000, 1500, 500}, i, o1[200], o2[200];
    gm_markov a, b, c3;
    gm_markov_config c = gm_markov_default_config(5, 3);
    gm_seqs d = gm_seqs_symbols(x, len, 3);
    double l1 = NAN, l2 = NAN;
    c.strength = 2.5f;
    GM_CHECK(gm_markov_init(&a, &c) == 0 && gm_markov_train(&a, &d) == 0 && gm_markov_save(&a, path) == 0, "%s", gm_last_error());
    c.strength = 0;
    c.seed = a.cfg.seed;
    GM_CHECK(gm_markov_init(&b, &c) == 0 && gm_markov_load(&b, path) == 0, "%s", gm_last_error());
    GM_CHECK(b.cfg.strength == 2.5f && b.count == 3000 && b.step == 1, "smoothing/count/step not restored (%g, %g, %ld)",
             (double)b.cfg.strength, b.count, b.step);
    GM_CHECK(gm_markov_log_prob(&a, &d, NULL, &l1) == 0 && gm_markov_log_prob(&b, &d, NULL, &l2) == 0, "%s", gm_last_error());
    GM_CHECK(l1 == l2, "log p %.17g before, %.17g after the checkpoint", l1, l2);
    GM_CHECK(gm_markov_sample(&a, 1, 200, 1.0f, o1) == 0 && gm_markov_sample(&b, 1, 200, 1.0f, o2) == 0, "%s", gm_last_error());
    for (i = 0; i < 200; i++) GM_CHECK(o1[i] == o2[i], "samples differ at %d", i);
    /* another order: refused, untouched */
    c.order = 2;
    GM_CHECK(gm_markov_init(&c3, &c) == 0, "%s", gm_last_error());
    GM_CHECK(gm_markov_load(&c3, path) != 0 && strstr(gm_last_error(), "order=3") && strstr(gm_last_error(), "order=2"),
             "another order was not refused by name: %s", gm_last_error());
    GM_CHECK(c3.count == 0, "a refused load changed the model");
    gm_markov_free(&c3);
    /* a file that is no model at all */
    {
        gm_params p = {0};
        int sh[1] = {3};
        gm_params_add(&p, "w", 1, sh);
        GM_CHECK(gm_checkpoint_save(path, &p, NULL, NULL) == 0, "%s", gm_last_error());
        GM_CHECK(gm_markov_load(&b, path) != 0, "a plain checkpoint loaded as a Markov chain");
        printf("# plain checkpoint refused: %s\n", gm_last_error());
        gm_params_free(&p);
    }
    remove(path);
    gm_markov_free(&a); gm_markov_free(&b);
    free(x);
}

/* On the bundled text a longer context predicts held-out text better. */
GM_TEST(test_markov_on_text) {
    FILE *f = fopen("data/text/persuasion.txt", "rb");
    int *x, n = 0, cut, i, len[2], K = 128;
    char *buf = (char *)malloc(600000);
    double bits[4];
    if (!f) f = fopen("../data/text/persuasion.txt", "rb");
    GM_CHECK(f != NULL, "data/text/persuasion.txt not found");
    if (!f) { free(buf); return; }
    n = (int)fread(buf, 1, 600000, f);
    fclose(f);
    x = (int *)malloc(sizeof(int) * n);
    for (i = 0; i < n; i++) x[i] = (unsigned char)buf[i] & 127;
    cut = n - n / 10;
    len[0] = cut; len[1] = n - cut;
    for (i = 0; i < 4; i++) {
        gm_markov m;
        gm_markov_config c = gm_markov_default_config(K, i * 2);
        gm_seqs tr = gm_seqs_symbols(x, len, 1), te = gm_seqs_symbols(x + cut, len + 1, 1);
        double ll = NAN;
        GM_CHECK(gm_markov_init(&m, &c) == 0 && gm_markov_train(&m, &tr) == 0 && gm_markov_log_prob(&m, &te, NULL, &ll) == 0,
                 "%s", gm_last_error());
        bits[i] = -ll / len[1] / log(2.0);
        gm_markov_free(&m);
    }
    printf("# held-out bits/char, orders 0 2 4 6: %.3f %.3f %.3f %.3f\n", bits[0], bits[1], bits[2], bits[3]);
    GM_CHECK(bits[0] > bits[1] && bits[1] > bits[2] && bits[2] < 2.6, "orders 0, 2, 4: %.3f %.3f %.3f", bits[0], bits[1], bits[2]);
    free(x); free(buf);
}

/* ---------------------------------------------------------------------------------------- */
/* bad input                                                                                */
/* ---------------------------------------------------------------------------------------- */
#define EXPECT_FAIL(call, word)                                                                   \
    do {                                                                                          \
        int rc_ = (call);                                                                         \
        GM_CHECK(rc_ != 0, "%s succeeded", #call);                                                \
        GM_CHECK(rc_ == 0 || strstr(gm_last_error(), word), "%s: message lacks '%s': %s", #call, word, \
                 gm_last_error());                                                                \
    } while (0)

GM_TEST(test_bad_input) {
    gm_hmm m, g;
    gm_markov mc;
    gm_hmm_config c = gm_hmm_default_config(3, GM_HMM_DISCRETE, 4), cg = gm_hmm_default_config(2, GM_HMM_GAUSSIAN, 2);
    gm_markov_config mcfg = gm_markov_default_config(4, 2);
    int sym[6] = {0, 1, 2, 3, 1, 0}, len[2] = {4, 2}, zero[2] = {4, 0}, path[6], out[4];
    float post[18], xv[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    const float good[3] = {0.2f, 0.3f, 0.5f}, bad_sum[9] = {0.5f, 0.5f, 0, 0.6f, 0.5f, 0.2f, 0.2f, 0.3f, 0.5f};
    const float neg[9] = {1.2f, -0.2f, 0, 0, 1, 0, 0, 0, 1}, nan_row[9] = {NAN, 0.5f, 0.5f, 0, 1, 0, 0, 0, 1};
    gm_seqs d;
    double ll;
    GM_CHECK(gm_hmm_init(&m, &c) == 0 && gm_hmm_init(&g, &cg) == 0 && gm_markov_init(&mc, &mcfg) == 0, "%s", gm_last_error());
    /* a symbol outside the alphabet, in every call that reads data */
    sym[5] = 4;
    d = gm_seqs_symbols(sym, len, 2);
    EXPECT_FAIL(gm_hmm_log_prob(&m, &d, NULL, &ll), "symbol 4 is outside the alphabet 0..3");
    EXPECT_FAIL(gm_hmm_posterior(&m, &d, post, NULL), "sequence 1, step 1");
    EXPECT_FAIL(gm_hmm_viterbi(&m, &d, path, NULL), "outside the alphabet");
    EXPECT_FAIL(gm_hmm_train_step(&m, &d, NULL), "outside the alphabet");
    EXPECT_FAIL(gm_hmm_fit(&m, &d, NULL), "outside the alphabet");
    EXPECT_FAIL(gm_markov_train(&mc, &d), "outside the alphabet");
    EXPECT_FAIL(gm_markov_log_prob(&mc, &d, NULL, &ll), "outside the alphabet");
    sym[5] = -1;
    EXPECT_FAIL(gm_hmm_log_prob(&m, &d, NULL, &ll), "symbol -1");
    sym[5] = 0;
    /* a sequence of length 0, no sequences, NULL data */
    d = gm_seqs_symbols(sym, zero, 2);
    EXPECT_FAIL(gm_hmm_log_prob(&m, &d, NULL, &ll), "sequence 1 has length 0");
    EXPECT_FAIL(gm_hmm_train_step(&m, &d, NULL), "length 0");
    EXPECT_FAIL(gm_markov_train(&mc, &d), "length 0");
    d = gm_seqs_symbols(sym, len, 0);
    EXPECT_FAIL(gm_hmm_log_prob(&m, &d, NULL, &ll), "no sequences");
    EXPECT_FAIL(gm_hmm_log_prob(&m, NULL, NULL, &ll), "NULL");
    d = gm_seqs_vectors(xv, len, 2);
    EXPECT_FAIL(gm_hmm_log_prob(&m, &d, NULL, &ll), "gm_seqs.sym is NULL");
    /* NaN and infinity in real-valued data */
    len[0] = 4; len[1] = 2;
    d = gm_seqs_vectors(xv, len, 2);
    GM_CHECK(gm_hmm_log_prob(&g, &d, NULL, &ll) == 0, "%s", gm_last_error());
    xv[7] = NAN;
    EXPECT_FAIL(gm_hmm_log_prob(&g, &d, NULL, &ll), "step 3, dimension 1: NaN");
    EXPECT_FAIL(gm_hmm_train_step(&g, &d, NULL), "NaN");
    EXPECT_FAIL(gm_hmm_fit(&g, &d, NULL), "NaN");
    xv[7] = INFINITY;
    EXPECT_FAIL(gm_hmm_viterbi(&g, &d, path, NULL), "infinite");
    xv[7] = 7;
    /* matrices given by the caller that are not stochastic */
    EXPECT_FAIL(gm_hmm_set_chain(&m, good, bad_sum), "trans row 1 sums to 1.3");
    EXPECT_FAIL(gm_hmm_set_chain(&m, good, neg), "cannot be negative");
    EXPECT_FAIL(gm_hmm_set_chain(&m, good, nan_row), "not finite");
    EXPECT_FAIL(gm_hmm_set_chain(&m, bad_sum + 3, NULL), "start row 0 sums to 1.3");
    EXPECT_FAIL(gm_hmm_set_discrete(&m, bad_sum), "emit row 0");
    {
        const float w[2] = {1, 1}, mu[4] = {0, 0, 1, 1}, v0[4] = {1, 0, 1, 1}, wbad[2] = {0.5f, 1};
        gm_hmm_config c2 = cg;
        gm_hmm g2;
        EXPECT_FAIL(gm_hmm_set_gaussian(&g, w, mu, v0), "variance of state/component 0, dimension 1");
        c2.mixtures = 2;
        GM_CHECK(gm_hmm_init(&g2, &c2) == 0, "%s", gm_last_error());
        EXPECT_FAIL(gm_hmm_set_gaussian(&g2, wbad, NULL, NULL), "weight row 0 sums to 1.5");
        gm_hmm_free(&g2);
        EXPECT_FAIL(gm_hmm_set_discrete(&g, good), "Gaussian emissions");
    }
    /* a sequence the model cannot produce */
    {
        const float st[3] = {1, 0, 0}, tr[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, em[12] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
        GM_CHECK(gm_hmm_set_chain(&m, st, tr) == 0 && gm_hmm_set_discrete(&m, em) == 0, "%s", gm_last_error());
        d = gm_seqs_symbols(sym, len, 2);
        GM_CHECK(gm_hmm_log_prob(&m, &d, NULL, &ll) == 0 && ll == -INFINITY, "log p of an impossible sequence: %g", ll);
        EXPECT_FAIL(gm_hmm_train_step(&m, &d, NULL), "sequence 0 has probability 0");
        EXPECT_FAIL(gm_hmm_posterior(&m, &d, post, NULL), "probability 0");
        EXPECT_FAIL(gm_hmm_viterbi(&m, &d, path, NULL), "probability 0");
    }
    EXPECT_FAIL(gm_hmm_sample(&g, 1, 4, NULL, out, NULL), "Gaussian");
    /* configs: the message names the field (init zeroes the model it is given: free it first) */
    gm_hmm_free(&g);
    gm_markov_free(&mc);
    c.states = 0;
    EXPECT_FAIL(gm_hmm_init(&g, &c), "config.states");
    c.states = 3; c.symbols = 0;
    EXPECT_FAIL(gm_hmm_init(&g, &c), "config.symbols");
    cg.mixtures = 0;
    EXPECT_FAIL(gm_hmm_init(&g, &cg), "config.mixtures");
    cg.mixtures = 1; cg.var_floor = 0;
    EXPECT_FAIL(gm_hmm_init(&g, &cg), "config.var_floor");
    mcfg.order = 17;
    EXPECT_FAIL(gm_markov_init(&mc, &mcfg), "config.order");
    mcfg.order = 2; mcfg.alpha = -1;
    EXPECT_FAIL(gm_markov_init(&mc, &mcfg), "config.alpha");
    mcfg.alpha = 0.5f;
    GM_CHECK(gm_markov_init(&mc, &mcfg) == 0, "%s", gm_last_error());
    EXPECT_FAIL(gm_markov_continue(&mc, sym, 2, 4, -1.0f, out), "temperature");
    sym[0] = 9;
    EXPECT_FAIL(gm_markov_continue(&mc, sym, 2, 4, 1.0f, out), "outside the alphabet");
    /* freeing twice, and a zeroed model */
    gm_hmm_free(&m); gm_hmm_free(&m);
    gm_markov_free(&mc); gm_markov_free(&mc);
    {
        gm_hmm z;
        gm_markov zm;
        memset(&z, 0, sizeof z); memset(&zm, 0, sizeof zm);
        gm_hmm_free(&z); gm_markov_free(&zm);
        EXPECT_FAIL(gm_hmm_log_prob(&z, &d, NULL, &ll), "not initialized");
    }
}

#define RUN(t) do { if (!only_ || strstr(#t, only_)) GM_RUN(t); } while (0)
static const char *only_;

int main(int argc, char **argv) {
    only_ = argc > 1 ? argv[1] : NULL;
    RUN(test_kernels_match_reference);
    RUN(test_paths_agree_end_to_end);
    RUN(test_brute_force_discrete);
    RUN(test_brute_force_gaussian_mixture);
    RUN(test_long_sequences_enumerated);
    RUN(test_long_sequence_reference);
    RUN(test_uninformative_emissions_closed_form);
    RUN(test_baum_welch_monotone);
    RUN(test_recovers_discrete_hmm);
    RUN(test_recovers_gaussian_hmm);
    RUN(test_fit_options);
    RUN(test_threads_do_not_change_results);
    RUN(test_sampling_matches_model);
    RUN(test_hmm_save_load);
    RUN(test_markov_counts_and_smoothing);
    RUN(test_markov_sampling);
    RUN(test_markov_save_load);
    RUN(test_markov_on_text);
    RUN(test_bad_input);
    return gm_test_summary();
}
