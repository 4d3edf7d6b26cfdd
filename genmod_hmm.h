/* genmod_hmm.h - v0.1 - Markov chains and hidden Markov models on top of genmod.h.
   Single-header C library (stb style): the declarations are always visible, the implementation
   is compiled where GENMOD_HMM_IMPLEMENTATION is defined.

   USAGE
     Either in the same C or C++ file as the core:
         #define GENMOD_IMPLEMENTATION
         #include "genmod.h"
         #define GENMOD_HMM_IMPLEMENTATION
         #include "genmod_hmm.h"
     or in a file of its own (the implementation uses only genmod.h's public functions; the core
     is implemented in another file and both are linked together):
         #define GENMOD_HMM_IMPLEMENTATION
         #include "genmod_hmm.h"
     Elsewhere just #include "genmod_hmm.h". Build: cc -O2 prog.c -lm -lpthread

   THE SHORTEST PROGRAMS

     A character-level Markov chain of order 5 on a text mapped to symbols 0..K-1:

         int len[1] = {n};                                   // one sequence of n symbols
         gm_seqs d = gm_seqs_symbols(text, len, 1);
         gm_markov_config cfg = gm_markov_default_config(K, 5);   // Witten-Bell back-off
         gm_markov mc;
         if (gm_markov_init(&mc, &cfg) != 0 || gm_markov_train(&mc, &d) != 0) { puts(gm_last_error()); return 1; }
         int out[200];
         gm_markov_sample(&mc, 1, 200, 0.8f, out);           // 200 symbols at temperature 0.8
         double ll;
         gm_markov_log_prob(&mc, &test, NULL, &ll);          // log-likelihood of other text, nats

     A hidden Markov model with 8 states and discrete emissions, fitted by Baum-Welch:

         gm_hmm_config cfg = gm_hmm_default_config(8, GM_HMM_DISCRETE, K);
         gm_hmm hmm;
         gm_hmm_stats st;
         if (gm_hmm_init(&hmm, &cfg) != 0 || gm_hmm_fit(&hmm, &d, &st) != 0) { puts(gm_last_error()); return 1; }
         int *path = malloc(sizeof(int) * n);
         gm_hmm_viterbi(&hmm, &d, path, NULL);               // the most probable state of every step
         gm_hmm_free(&hmm);

   MODELS
     gm_markov  Markov chain of order n over symbols 0..K-1 (an n-gram model): trained by counting
                every n-gram of orders 0..n; the next-symbol distribution is interpolated back-off
                (each context's counts with the next lower order as a prior: Witten-Bell weights
                by default, or a fixed strength), or plain additive smoothing at the full order.
                Sampling at a temperature (0: the most probable symbol), from scratch or after a
                given prefix; the log-likelihood of sequences.
     gm_hmm     Hidden Markov model with S states: start distribution, S x S transition matrix, and
                discrete emissions (S x K) or Gaussian ones (diagonal covariance, optionally a
                mixture of M Gaussians per state). Exact inference: log-likelihood (forward),
                posterior of every state at every step (forward-backward), most probable state
                path (Viterbi); sampling; Baum-Welch (EM) one iteration at a time
                (gm_hmm_train_step) or with random restarts until convergence (gm_hmm_fit).

   SEQUENCES (gm_seqs)
     A batch of n sequences of different lengths: their steps one after the other in one array
     (symbols as ints, or vectors of `dims` floats), and the n lengths. Every call takes a batch;
     results per step (posteriors, paths) come back in the same concatenated layout. The
     sequences of a batch are spread over genmod's thread pool; results do not depend on the
     number of threads (per-sequence work is reduced in a fixed order).

   THE FAMILY CONTRACT, AND WHERE THIS HEADER DEPARTS FROM IT
     Each model has _default_config, _init (validates the config, naming the field; seeds its
     gm_rng from cfg.seed), _free (safe twice and on a zeroed model), _sample, inference calls on
     plain arrays, and _save/_load through the core's gm_model_save/gm_model_load (model names
     "markov" and "hmm"; the architecture text holds the order and the alphabet, or the states
     and the emission kind, symbols, dimensions and mixture count; another model's file or
     another architecture is refused and leaves the model untouched). Errors: 0 / -1 with the
     reason in gm_last_error(). The departures, all because these models are exact algorithms on
     sequences rather than networks trained by gradient steps on fixed-size examples:
       - data is a gm_seqs batch (concatenated steps plus lengths), not n examples of plain
         floats; there are no labels;
       - training: gm_markov_train adds counts (there is nothing to optimize); gm_hmm_train_step
         is one Baum-Welch iteration over the whole batch (EM needs every sequence's expected
         counts before it can update), and gm_hmm_fit runs the iterations and restarts;
       - there is no gm_graph, no optimizer and no _forward: nothing is differentiated, and the
         checkpoints hold no optimizer state;
       - an HMM computes with double-precision parameters; `params` (a gm_params, what a
         checkpoint holds, float32 as every genmod checkpoint) is kept equal to them rounded, so a
         loaded model computes with the float values (log-likelihoods agree to about 1e-7
         relative); probabilities below float's range (1.4e-45) are saved as 0;
       - a Markov chain's checkpoint holds its observed n-grams, so its tensor shapes depend on
         the data (listed in the metadata key "markov.sizes"); its smoothing settings are
         restored by _load as well, since they define its probabilities.

   NUMERICS
     Forward and backward messages are kept as logarithms (double). One step multiplies by the
     transition matrix in linear space after shifting by the largest message (exp of at most S
     numbers, one S x S matrix-vector product, S logarithms), which is exact unless a sum
     underflows: when a state's sum falls below 1e-290 (it can when the transition matrix has
     zeros or emissions are extreme) that state is recomputed with an exact log-sum-exp. So
     sequences of any length work: a 10,000-step sequence whose probability is 1e-7544 gets its
     log-likelihood to 1e-13 relative and its posteriors to float precision (tests/test_hmm.c
     enumerates every path of such a model). Posteriors and expected transition counts are
     normalized per step. The exp, log, matrix-vector and Viterbi max-plus loops have AVX2+FMA
     versions (used when gm_simd_path() is AVX2 or AVX-512; about 3x faster) beside plain C
     references that use libm; they agree to 1e-15 relative (exp, log) and 1e-13 (sums of up to
     64 products), and Viterbi paths are identical (tests/test_hmm.c checks all three).
     Baum-Welch's M-step is exact maximum likelihood when cfg.pseudo is 0 (then every iteration
     raises the training log-likelihood or leaves it equal); with pseudo > 0 it is the MAP
     estimate under Dirichlet(1 + pseudo) priors on every distribution, and what never decreases
     is stats.objective = log-likelihood + pseudo * sum of the log-probabilities. Gaussian
     variances have a floor (cfg.var_floor times the data's variance in that dimension), which
     keeps the likelihood bounded; the floored update is still the constrained maximum, so EM
     stays monotone.
     Memory per sequence in flight (one per thread): posteriors and training keep the forward
     messages, 8 x S bytes per step; Viterbi its back-pointers, 4 x S; the log-likelihood alone
     needs no per-step memory; Gaussian emissions add 8 x S per step. Split very long streams (say
     into pieces of 100,000 steps) if that is too much.

   ERRORS
     Every call returns 0 or -1 with the reason in gm_last_error(): a symbol outside the alphabet,
     a sequence of length 0, NaN or infinity in the data (the message names the sequence, step
     and dimension), a matrix given by the caller that is not stochastic (names the matrix and
     row), a sequence the model gives probability 0 when training or decoding it (log_prob gives
     -inf for it instead), a config field out of range (names the field).

   LICENSE: MIT, at the end of the file.
*/
#ifndef GENMOD_HMM_H
#define GENMOD_HMM_H

#include "genmod.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================= */
/* Sequences                                                                               */
/* ======================================================================================= */
typedef struct gm_seqs {
    int n;                   /* number of sequences */
    const int *len;          /* n lengths, each >= 1 */
    const int *sym;          /* discrete data: the symbols of sequence 0, then 1, ... (sum of len ints) */
    const float *x;          /* real-valued data: the vectors, dims floats per step (sum of len x dims) */
} gm_seqs;

GMDEF gm_seqs gm_seqs_symbols(const int *sym, const int *len, int n);
GMDEF gm_seqs gm_seqs_vectors(const float *x, const int *len, int n);

/* ======================================================================================= */
/* Markov chains (n-gram models)                                                           */
/* ======================================================================================= */
#define GM_MARKOV_MAX_ORDER 16
enum { GM_MARKOV_BACKOFF = 0, GM_MARKOV_ADDITIVE };

typedef struct gm_markov_config {
    int alphabet;            /* symbols 0 .. alphabet-1 (at most 2^24) */
    int order;               /* context length n (0: symbol frequencies), at most GM_MARKOV_MAX_ORDER */
    int smoothing;           /* GM_MARKOV_BACKOFF: P_k(x|c) = (count(c x) + s P_k-1(x|c')) / (count(c .) + s),
                                c' the context without its oldest symbol, s below; P_0 is additive.
                                GM_MARKOV_ADDITIVE: (count(c x) + alpha) / (count(c .) + alpha K) at
                                the full order only */
    float alpha;             /* additive pseudo-count of every symbol (0.5); 0 with ADDITIVE: maximum likelihood */
    float strength;          /* BACKOFF: the weight s of the lower order; 0 (default): Witten-Bell, s = the
                                number of different symbols seen after that context */
    uint64_t seed;           /* sampling */
} gm_markov_config;

typedef struct gm__markov_table gm__markov_table;
typedef struct gm_markov {
    gm_markov_config cfg;
    gm_rng rng;              /* sampling */
    long step;               /* gm_markov_train calls */
    double count;            /* symbols counted */
    gm__markov_table *table; /* internal: the n-gram counts */
} gm_markov;

GMDEF gm_markov_config gm_markov_default_config(int alphabet, int order);
GMDEF int  gm_markov_init(gm_markov *m, const gm_markov_config *cfg);  /* 0, or -1 (gm_last_error) */
GMDEF void gm_markov_free(gm_markov *m);
/* Counts every n-gram of orders 0..n in the sequences (call again to add more data). A sequence's
   first symbols are counted with the shorter contexts they have. */
GMDEF int  gm_markov_train(gm_markov *m, const gm_seqs *d);
/* The distribution of the next symbol after ctx (nctx symbols; only the last `order` matter),
   into probs (alphabet floats, summing to 1). */
GMDEF int  gm_markov_next(const gm_markov *m, const int *ctx, int nctx, float *probs);
/* log p of each sequence (nats; per_seq: n values, may be NULL) and their sum (total, may be NULL).
   A symbol the model gives probability 0 (possible only with alpha = 0) gives -inf. */
GMDEF int  gm_markov_log_prob(const gm_markov *m, const gm_seqs *d, double *per_seq, double *total);
/* n sequences of len symbols into out (n x len), each from an empty context. Temperature T > 0
   samples from p^(1/T) renormalized; T = 0 takes the most probable symbol. */
GMDEF int  gm_markov_sample(gm_markov *m, int n, int len, float temperature, int *out);
/* len symbols continuing prefix (nprefix >= 0 symbols) into out (len ints, the prefix not included). */
GMDEF int  gm_markov_continue(gm_markov *m, const int *prefix, int nprefix, int len, float temperature, int *out);
GMDEF int  gm_markov_save(const gm_markov *m, const char *path);
GMDEF int  gm_markov_load(gm_markov *m, const char *path);  /* m: initialized with the same alphabet and order */

/* ======================================================================================= */
/* Hidden Markov models                                                                    */
/* ======================================================================================= */
enum { GM_HMM_DISCRETE = 0, GM_HMM_GAUSSIAN };
struct gm_hmm_stats;

typedef struct gm_hmm_config {
    int states;              /* hidden states S (1 .. 4096) */
    int emission;            /* GM_HMM_DISCRETE (categorical over symbols) or GM_HMM_GAUSSIAN */
    int symbols;             /* discrete: alphabet size K */
    int dims;                /* Gaussian: dimensions D of one observation */
    int mixtures;            /* Gaussian: components per state, each with diagonal covariance (1) */
    int max_iters;           /* gm_hmm_fit: Baum-Welch iterations per restart at most (200) */
    int restarts;            /* gm_hmm_fit: random starts drawn from the data, the best training
                                log-likelihood kept (4); 0: continue from the current parameters */
    double tol;              /* gm_hmm_fit: a restart stops when an iteration gains less than tol nats
                                per observation (1e-6) */
    float pseudo;            /* pseudo-count added to every expected count of the start, transition,
                                discrete emission and mixture weight distributions (0: maximum
                                likelihood; > 0 keeps probabilities of unseen events above 0) */
    float var_floor;         /* Gaussian: smallest variance, as a fraction of the training data's
                                variance in that dimension (1e-3) */
    uint64_t seed;           /* initial parameters, restarts, sampling */
    /* gm_hmm_fit calls on_iter(on_iter_ctx, restart, iteration, stats) after every iteration (NULL:
       never); a non-zero return stops the fit, which keeps the best parameters seen so far */
    int (*on_iter)(void *ctx, int restart, int iter, const struct gm_hmm_stats *st);
    void *on_iter_ctx;
} gm_hmm_config;

typedef struct gm_hmm {
    gm_hmm_config cfg;
    gm_params params;        /* views "start" (S), "trans" (S, S), and "emit" (S, K) for discrete
                                emissions, or "weight" (S, M), "mean" (S, M, D), "var" (S, M, D):
                                probabilities and variances (float copy of the working values) */
    gm_rng rng;              /* initialization, restarts, sampling */
    long step;               /* Baum-Welch iterations taken */
    int v_start, v_trans, v_emit, v_weight, v_mean, v_var;   /* view indices in params (-1: none) */
    double *p;               /* internal: the parameters in double precision, laid out as params.data */
    double *tab;             /* internal: tables derived from them (logarithms, transposes) */
} gm_hmm;

typedef struct gm_hmm_stats {
    double log_lik;          /* train_step: log-likelihood of the batch under the parameters before
                                the update (nats); fit: of the parameters it ends with */
    double per_obs;          /* log_lik divided by the number of observations (steps) */
    double objective;        /* log_lik + pseudo * sum of log-probabilities (= log_lik when pseudo is 0) */
    long obs;                /* steps in the batch */
    int iters;               /* fit: iterations run by the restart kept */
    int restart;             /* fit: which restart was kept (0-based) */
    double restart_ll[16];   /* fit: final log-likelihood of each of the first 16 restarts */
} gm_hmm_stats;

GMDEF gm_hmm_config gm_hmm_default_config(int states, int emission, int symbols_or_dims);
/* Builds the model with random parameters (Dirichlet rows; Gaussian means N(0, 1), variances 1):
   gm_hmm_fit draws better, data-based starts. 0, or -1 (the message names the field). */
GMDEF int  gm_hmm_init(gm_hmm *m, const gm_hmm_config *cfg);
GMDEF void gm_hmm_free(gm_hmm *m);
/* Set parameters given by the caller (row-major). Every row must be a distribution: finite,
   >= 0, summing to 1 within 1e-4 (it is then renormalized); variances finite and > 0, means
   finite. Otherwise -1 with a message naming the matrix and row, and nothing changes. */
GMDEF int  gm_hmm_set_chain(gm_hmm *m, const float *start, const float *trans);    /* S, S x S */
GMDEF int  gm_hmm_set_discrete(gm_hmm *m, const float *emit);                      /* S x K */
GMDEF int  gm_hmm_set_gaussian(gm_hmm *m, const float *weight, const float *mean, const float *var); /* S x M, S x M x D twice */
/* One Baum-Welch iteration on the batch: expected counts (forward-backward), then the M-step.
   st may be NULL. A sequence the model gives probability 0 is refused (-1), nothing changes. */
GMDEF int  gm_hmm_train_step(gm_hmm *m, const gm_seqs *d, gm_hmm_stats *st);
/* Baum-Welch to convergence from cfg.restarts random data-based starts (or from the current
   parameters when restarts is 0); the model ends with the best. st may be NULL. */
GMDEF int  gm_hmm_fit(gm_hmm *m, const gm_seqs *d, gm_hmm_stats *st);
/* log p(x) of each sequence (per_seq: n values, may be NULL) and their sum (total, may be NULL). */
GMDEF int  gm_hmm_log_prob(const gm_hmm *m, const gm_seqs *d, double *per_seq, double *total);
/* Posterior p(state at step t | whole sequence) into post ((sum of len) x S floats, rows summing
   to 1); per_seq (may be NULL) gets log p(x). A sequence of probability 0 is refused. */
GMDEF int  gm_hmm_posterior(const gm_hmm *m, const gm_seqs *d, float *post, double *per_seq);
/* The most probable state path of each sequence into path (sum of len ints); per_seq (may be NULL)
   gets log p(x, path). Ties go to the lower state index. */
GMDEF int  gm_hmm_viterbi(const gm_hmm *m, const gm_seqs *d, int *path, double *per_seq);
/* n sequences of len steps: states (n x len ints), and sym (discrete: n x len ints) or
   x (Gaussian: n x len x D floats). Any of the three may be NULL. */
GMDEF int  gm_hmm_sample(gm_hmm *m, int n, int len, int *states, int *sym, float *x);
GMDEF int  gm_hmm_save(const gm_hmm *m, const char *path);
/* m: initialized with the same states, emission kind, symbols / dims and mixtures. The loaded
   values are validated (rows sum to 1, finite, non-negative, variances > 0) before anything
   changes. */
GMDEF int  gm_hmm_load(gm_hmm *m, const char *path);
/* "states=8 emission=discrete symbols=27" or "states=3 emission=gaussian dims=2 mixtures=1". */
GMDEF void gm_hmm_arch(const gm_hmm_config *cfg, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif /* GENMOD_HMM_H */

/* ======================================================================================= */
/* Implementation                                                                          */
/* ======================================================================================= */
#ifdef GENMOD_HMM_IMPLEMENTATION
#ifndef GENMOD_HMM_IMPLEMENTATION_INCLUDED
#define GENMOD_HMM_IMPLEMENTATION_INCLUDED
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(GENMOD_MALLOC) && !defined(GENMOD_REALLOC) && !defined(GENMOD_FREE)
#define GENMOD_MALLOC(sz) malloc(sz)
#define GENMOD_REALLOC(p, sz) realloc(p, sz)
#define GENMOD_FREE(p) free(p)
#endif
#define GM__HMM_CAST(type, x) ((type)(x))

#if !defined(GENMOD_NO_SIMD) && (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define GM__HMM_X86 1
#include <immintrin.h>
#define GM__HMM_TGT __attribute__((target("avx2,fma")))
#endif

/* A sum of shifted exponentials below this is recomputed exactly in log space: terms dropped by
   the shift (exp below -708) are then at most 1e-18 of what is kept. */
#define GM__HMM_TINY 1e-290
/* Expected transition counts of a step are normalized by their linear sum when it is above this,
   else computed exactly in log space. */
#define GM__HMM_XI_TINY 1e-200
/* Sequences are split into at most this many chunks (a fixed number, so results do not depend
   on the thread count); each chunk is one task of the thread pool. */
#define GM__HMM_CHUNKS 32

static void *gm__hmm_alloc(size_t count, size_t size) {
    if (count == 0) count = 1;
    if (count > (size_t)-1 / size) return NULL;
    return GENMOD_MALLOC(count * size);
}

/* A uniform double in [0, 1) with 53 random bits. */
static double gm__hmm_unif(gm_rng *r) {
    uint32_t a = gm_rng_u32(r) >> 5, b = gm_rng_u32(r) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

/* Index drawn from unnormalized non-negative weights w (total > 0). */
static int gm__hmm_draw(gm_rng *r, const double *w, int n, double total) {
    double u = gm__hmm_unif(r) * total, c = 0;
    int i, last = 0;
    for (i = 0; i < n; i++) {
        if (w[i] <= 0) continue;
        last = i;
        c += w[i];
        if (u < c) return i;
    }
    return last;   /* rounding left u just above the sum */
}

static double gm__hmm_max(const double *v, int n) {
    double m = -INFINITY;
    int i;
    for (i = 0; i < n; i++)
        if (v[i] > m) m = v[i];
    return m;
}

/* log sum exp of n values (exact, libm): the final log-likelihoods and the rare exact steps. */
static double gm__hmm_lse(const double *v, int n, int stride) {
    double m = -INFINITY, s = 0;
    int i;
    for (i = 0; i < n; i++)
        if (v[(size_t)i * stride] > m) m = v[(size_t)i * stride];
    if (m == -INFINITY) return m;
    for (i = 0; i < n; i++) s += exp(v[(size_t)i * stride] - m);
    return m + log(s);
}

/* log sum_i exp(a_i + b_i) over n pairs, b with a stride. */
static double gm__hmm_lse2(const double *a, const double *b, int n, int bstride) {
    double m = -INFINITY, s = 0, t;
    int i;
    for (i = 0; i < n; i++) {
        t = a[i] + b[(size_t)i * bstride];
        if (t > m) m = t;
    }
    if (m == -INFINITY) return m;
    for (i = 0; i < n; i++) s += exp(a[i] + b[(size_t)i * bstride] - m);
    return m + log(s);
}

/* ======================================================================================= */
/* Kernels: plain C references (libm) and AVX2+FMA versions                                */
/* ======================================================================================= */
typedef struct gm__hmm_kern {
    /* w = exp(v - m); values below exp(-708) may be returned as 0 */
    void (*expshift)(double *w, const double *v, double m, int n);
    /* y = log(x) where x >= GM__HMM_TINY (elsewhere: any value, which the caller replaces) */
    void (*logv)(double *y, const double *x, int n);
    /* y_j = sum_i w_i A_ij (A is S x S, row-major) */
    void (*vecmat)(double *y, const double *w, const double *A, int S);
    /* s_i = sum_j A_ij w_j */
    void (*matvec)(double *s, const double *A, const double *w, int S);
    /* C_ij += u_i A_ij w_j */
    void (*xiacc)(double *C, const double *u, const double *A, const double *w, int S);
    /* best_j = max_i (d_i + L_ij), arg_j = the first i reaching it (0 if all are -inf) */
    void (*vitstep)(double *best, int *arg, const double *d, const double *L, int S);
} gm__hmm_kern;

static void gm__hmm_expshift_c(double *w, const double *v, double m, int n) {
    int i;
    for (i = 0; i < n; i++) w[i] = exp(v[i] - m);
}

static void gm__hmm_logv_c(double *y, const double *x, int n) {
    int i;
    for (i = 0; i < n; i++) y[i] = x[i] > 0 ? log(x[i]) : -INFINITY;
}

static void gm__hmm_vecmat_c(double *y, const double *w, const double *A, int S) {
    int i, j;
    for (j = 0; j < S; j++) y[j] = 0;
    for (i = 0; i < S; i++) {
        const double wi = w[i], *a = A + (size_t)i * S;
        if (wi == 0) continue;
        for (j = 0; j < S; j++) y[j] += wi * a[j];
    }
}

static void gm__hmm_matvec_c(double *s, const double *A, const double *w, int S) {
    int i, j;
    for (i = 0; i < S; i++) {
        const double *a = A + (size_t)i * S;
        double acc = 0;
        for (j = 0; j < S; j++) acc += a[j] * w[j];
        s[i] = acc;
    }
}

static void gm__hmm_xiacc_c(double *C, const double *u, const double *A, const double *w, int S) {
    int i, j;
    for (i = 0; i < S; i++) {
        const double ui = u[i], *a = A + (size_t)i * S;
        double *c = C + (size_t)i * S;
        if (ui == 0) continue;
        for (j = 0; j < S; j++) c[j] += ui * a[j] * w[j];
    }
}

static void gm__hmm_vitstep_c(double *best, int *arg, const double *d, const double *L, int S) {
    int i, j;
    for (j = 0; j < S; j++) { best[j] = -INFINITY; arg[j] = 0; }
    for (i = 0; i < S; i++) {
        const double di = d[i], *l = L + (size_t)i * S;
        for (j = 0; j < S; j++) {
            const double c = di + l[j];
            if (c > best[j]) { best[j] = c; arg[j] = i; }
        }
    }
}

static const gm__hmm_kern gm__hmm_kern_c = {gm__hmm_expshift_c, gm__hmm_logv_c, gm__hmm_vecmat_c,
                                            gm__hmm_matvec_c, gm__hmm_xiacc_c, gm__hmm_vitstep_c};

#ifdef GM__HMM_X86
/* exp of 4 doubles: x = k ln2 + r, |r| <= ln2/2, exp(r) by its Taylor series to r^13 (error
   below 1e-17), times 2^k built in the exponent bits. Below -708 (and -inf): 0. */
GM__HMM_TGT static __m256d gm__hmm_exp4(__m256d x) {
    const __m256d lo = _mm256_set1_pd(-708.0), hi = _mm256_set1_pd(709.0);
    const __m256d under = _mm256_cmp_pd(x, lo, _CMP_LT_OQ);
    __m256d k, r, p;
    __m256i e;
    x = _mm256_min_pd(_mm256_max_pd(x, lo), hi);
    k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634074)),
                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_fnmadd_pd(k, _mm256_set1_pd(6.93145751953125e-1), x);   /* ln2 in two parts */
    r = _mm256_fnmadd_pd(k, _mm256_set1_pd(1.42860682030941723212e-6), r);
    p = _mm256_set1_pd(1.0 / 6227020800.0);                                  /* 1/13! */
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 479001600.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 39916800.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 3628800.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 362880.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 40320.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 5040.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 720.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 120.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 24.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 6.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0.5));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    e = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));
    e = _mm256_slli_epi64(_mm256_add_epi64(e, _mm256_set1_epi64x(1023)), 52);
    return _mm256_andnot_pd(under, _mm256_mul_pd(p, _mm256_castsi256_pd(e)));
}

/* log of 4 positive normal doubles: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s),
   s = (m-1)/(m+1), |s| <= 0.172, by its series to s^21 (error below 1e-18). */
GM__HMM_TGT static __m256d gm__hmm_log4(__m256d x) {
    const __m256i bits = _mm256_castpd_si256(x);
    const __m256i expo = _mm256_srli_epi64(bits, 52);
    __m256d m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(0x000FFFFFFFFFFFFFLL)),
                                                    _mm256_set1_epi64x(0x3FF0000000000000LL)));
    __m256d e = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(expo, _mm256_set1_epi64x(0x4330000000000000LL))),
                              _mm256_set1_pd(4503599627370496.0));     /* the raw exponent as a double */
    const __m256d big = _mm256_cmp_pd(m, _mm256_set1_pd(1.4142135623730951), _CMP_GT_OQ);
    __m256d s, z, q;
    m = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), big);
    e = _mm256_sub_pd(_mm256_add_pd(e, _mm256_and_pd(big, _mm256_set1_pd(1.0))), _mm256_set1_pd(1023.0));
    s = _mm256_div_pd(_mm256_sub_pd(m, _mm256_set1_pd(1.0)), _mm256_add_pd(m, _mm256_set1_pd(1.0)));
    z = _mm256_mul_pd(s, s);
    q = _mm256_set1_pd(2.0 / 21);
    q = _mm256_fmadd_pd(q, z, _mm256_set1_pd(2.0 / 19));
    q = _mm256_fmadd_pd(q, z, _mm256_set1_pd(2.0 / 17));
    q = _mm256_fmadd_pd(q, z, _mm256_set1_pd(2.0 / 15));
    q = _mm256_fmadd_pd(q, z, _mm256_set1_pd(2.0 / 13));
    q = _mm256_fmadd_pd(q, z, _mm256_set1_pd(2.0 / 11));
    q = _mm256_fmadd_pd(q, z, _mm256_set1_pd(2.0 / 9));
    q = _mm256_fmadd_pd(q, z, _mm256_set1_pd(2.0 / 7));
    q = _mm256_fmadd_pd(q, z, _mm256_set1_pd(2.0 / 5));
    q = _mm256_fmadd_pd(q, z, _mm256_set1_pd(2.0 / 3));
    q = _mm256_mul_pd(_mm256_mul_pd(q, z), s);                       /* log m - 2s */
    q = _mm256_fmadd_pd(e, _mm256_set1_pd(1.42860682030941723212e-6), q);
    return _mm256_add_pd(_mm256_fmadd_pd(e, _mm256_set1_pd(6.93145751953125e-1), _mm256_add_pd(s, s)), q);
}

/* Lane masks for a tail of r = 1..3 doubles: the 4 entries from gm__hmm_lanes + 4 - r. */
static const long long gm__hmm_lanes[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
#define GM__HMM_TAIL(r) _mm256_loadu_si256(GM__HMM_CAST(const __m256i *, gm__hmm_lanes + 4 - (r)))

GM__HMM_TGT static void gm__hmm_expshift_avx2(double *w, const double *v, double m, int n) {
    const __m256d vm = _mm256_set1_pd(m);
    int i = 0;
    for (; i + 4 <= n; i += 4) _mm256_storeu_pd(w + i, gm__hmm_exp4(_mm256_sub_pd(_mm256_loadu_pd(v + i), vm)));
    if (i < n) {   /* the tail with masked loads, so every value takes the same formula */
        const __m256i k = GM__HMM_TAIL(n - i);
        _mm256_maskstore_pd(w + i, k, gm__hmm_exp4(_mm256_sub_pd(_mm256_maskload_pd(v + i, k), vm)));
    }
}

GM__HMM_TGT static void gm__hmm_logv_avx2(double *y, const double *x, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) _mm256_storeu_pd(y + i, gm__hmm_log4(_mm256_loadu_pd(x + i)));
    if (i < n) {
        const __m256i k = GM__HMM_TAIL(n - i);
        _mm256_maskstore_pd(y + i, k, gm__hmm_log4(_mm256_maskload_pd(x + i, k)));
    }
}

/* y = w^T A: 16 output columns at a time held in registers while i runs over the rows. */
GM__HMM_TGT static void gm__hmm_vecmat_avx2(double *y, const double *w, const double *A, int S) {
    int i, j = 0;
    for (; j + 16 <= S; j += 16) {
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        for (i = 0; i < S; i++) {
            const __m256d wi = _mm256_broadcast_sd(w + i);
            const double *r = A + (size_t)i * S + j;
            a0 = _mm256_fmadd_pd(wi, _mm256_loadu_pd(r), a0);
            a1 = _mm256_fmadd_pd(wi, _mm256_loadu_pd(r + 4), a1);
            a2 = _mm256_fmadd_pd(wi, _mm256_loadu_pd(r + 8), a2);
            a3 = _mm256_fmadd_pd(wi, _mm256_loadu_pd(r + 12), a3);
        }
        _mm256_storeu_pd(y + j, a0); _mm256_storeu_pd(y + j + 4, a1);
        _mm256_storeu_pd(y + j + 8, a2); _mm256_storeu_pd(y + j + 12, a3);
    }
    for (; j + 4 <= S; j += 4) {
        __m256d a0 = _mm256_setzero_pd();
        for (i = 0; i < S; i++) a0 = _mm256_fmadd_pd(_mm256_broadcast_sd(w + i), _mm256_loadu_pd(A + (size_t)i * S + j), a0);
        _mm256_storeu_pd(y + j, a0);
    }
    if (j < S) {
        const __m256i k = GM__HMM_TAIL(S - j);
        __m256d a0 = _mm256_setzero_pd();
        for (i = 0; i < S; i++) a0 = _mm256_fmadd_pd(_mm256_broadcast_sd(w + i), _mm256_maskload_pd(A + (size_t)i * S + j, k), a0);
        _mm256_maskstore_pd(y + j, k, a0);
    }
}

GM__HMM_TGT static double gm__hmm_hsum(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* s = A w: four rows at a time (four independent accumulators); the last columns masked. */
GM__HMM_TGT static void gm__hmm_matvec_avx2(double *s, const double *A, const double *w, int S) {
    const int jt = S & ~3;
    const __m256i k = GM__HMM_TAIL(S - jt > 0 ? S - jt : 4);
    const __m256d wt = jt < S ? _mm256_maskload_pd(w + jt, k) : _mm256_setzero_pd();
    int i = 0, j;
    for (; i + 4 <= S; i += 4) {
        const double *r0 = A + (size_t)i * S, *r1 = r0 + S, *r2 = r1 + S, *r3 = r2 + S;
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        for (j = 0; j < jt; j += 4) {
            const __m256d wj = _mm256_loadu_pd(w + j);
            a0 = _mm256_fmadd_pd(_mm256_loadu_pd(r0 + j), wj, a0);
            a1 = _mm256_fmadd_pd(_mm256_loadu_pd(r1 + j), wj, a1);
            a2 = _mm256_fmadd_pd(_mm256_loadu_pd(r2 + j), wj, a2);
            a3 = _mm256_fmadd_pd(_mm256_loadu_pd(r3 + j), wj, a3);
        }
        if (jt < S) {
            a0 = _mm256_fmadd_pd(_mm256_maskload_pd(r0 + jt, k), wt, a0);
            a1 = _mm256_fmadd_pd(_mm256_maskload_pd(r1 + jt, k), wt, a1);
            a2 = _mm256_fmadd_pd(_mm256_maskload_pd(r2 + jt, k), wt, a2);
            a3 = _mm256_fmadd_pd(_mm256_maskload_pd(r3 + jt, k), wt, a3);
        }
        s[i] = gm__hmm_hsum(a0); s[i + 1] = gm__hmm_hsum(a1); s[i + 2] = gm__hmm_hsum(a2); s[i + 3] = gm__hmm_hsum(a3);
    }
    for (; i < S; i++) {
        const double *r = A + (size_t)i * S;
        __m256d a0 = _mm256_setzero_pd();
        for (j = 0; j < jt; j += 4) a0 = _mm256_fmadd_pd(_mm256_loadu_pd(r + j), _mm256_loadu_pd(w + j), a0);
        if (jt < S) a0 = _mm256_fmadd_pd(_mm256_maskload_pd(r + jt, k), wt, a0);
        s[i] = gm__hmm_hsum(a0);
    }
}

GM__HMM_TGT static void gm__hmm_xiacc_avx2(double *C, const double *u, const double *A, const double *w, int S) {
    const int jt = S & ~3;
    const __m256i k = GM__HMM_TAIL(S - jt > 0 ? S - jt : 4);
    const __m256d wt = jt < S ? _mm256_maskload_pd(w + jt, k) : _mm256_setzero_pd();
    int i, j;
    for (i = 0; i < S; i++) {
        const double *a = A + (size_t)i * S;
        double *c = C + (size_t)i * S;
        const __m256d ui = _mm256_broadcast_sd(u + i);
        if (u[i] == 0) continue;
        for (j = 0; j < jt; j += 4)
            _mm256_storeu_pd(c + j, _mm256_fmadd_pd(_mm256_mul_pd(ui, _mm256_loadu_pd(a + j)), _mm256_loadu_pd(w + j),
                                                    _mm256_loadu_pd(c + j)));
        if (jt < S)
            _mm256_maskstore_pd(c + jt, k, _mm256_fmadd_pd(_mm256_mul_pd(ui, _mm256_maskload_pd(a + jt, k)), wt,
                                                           _mm256_maskload_pd(c + jt, k)));
    }
}

/* Max-plus with the first argmax: strict > keeps the lowest i on ties, as the C version does,
   and the sums are the same IEEE additions, so both give identical results. */
GM__HMM_TGT static void gm__hmm_vitstep_avx2(double *best, int *arg, const double *d, const double *L, int S) {
    int i, j = 0;
    for (; j + 8 <= S; j += 8) {
        __m256d b0 = _mm256_set1_pd(-INFINITY), b1 = b0, g0 = _mm256_setzero_pd(), g1 = g0;
        for (i = 0; i < S; i++) {
            const __m256d di = _mm256_broadcast_sd(d + i), vi = _mm256_set1_pd((double)i);
            const double *l = L + (size_t)i * S + j;
            const __m256d c0 = _mm256_add_pd(di, _mm256_loadu_pd(l)), c1 = _mm256_add_pd(di, _mm256_loadu_pd(l + 4));
            const __m256d m0 = _mm256_cmp_pd(c0, b0, _CMP_GT_OQ), m1 = _mm256_cmp_pd(c1, b1, _CMP_GT_OQ);
            b0 = _mm256_blendv_pd(b0, c0, m0); g0 = _mm256_blendv_pd(g0, vi, m0);
            b1 = _mm256_blendv_pd(b1, c1, m1); g1 = _mm256_blendv_pd(g1, vi, m1);
        }
        _mm256_storeu_pd(best + j, b0); _mm256_storeu_pd(best + j + 4, b1);
        _mm_storeu_si128(GM__HMM_CAST(__m128i *, arg + j), _mm256_cvtpd_epi32(g0));
        _mm_storeu_si128(GM__HMM_CAST(__m128i *, arg + j + 4), _mm256_cvtpd_epi32(g1));
    }
    for (; j < S; j += 4) {
        const int r = S - j < 4 ? S - j : 4;
        const __m256i k = GM__HMM_TAIL(r);
        __m256d b0 = _mm256_set1_pd(-INFINITY), g0 = _mm256_setzero_pd();
        double tb[4];
        int ta[4], q;
        for (i = 0; i < S; i++) {
            const __m256d c0 = _mm256_add_pd(_mm256_broadcast_sd(d + i), _mm256_maskload_pd(L + (size_t)i * S + j, k));
            const __m256d m0 = _mm256_cmp_pd(c0, b0, _CMP_GT_OQ);
            b0 = _mm256_blendv_pd(b0, c0, m0); g0 = _mm256_blendv_pd(g0, _mm256_set1_pd((double)i), m0);
        }
        _mm256_storeu_pd(tb, b0);
        _mm_storeu_si128(GM__HMM_CAST(__m128i *, ta), _mm256_cvtpd_epi32(g0));
        for (q = 0; q < r; q++) { best[j + q] = tb[q]; arg[j + q] = ta[q]; }
    }
}

static const gm__hmm_kern gm__hmm_kern_avx2 = {gm__hmm_expshift_avx2, gm__hmm_logv_avx2, gm__hmm_vecmat_avx2,
                                               gm__hmm_matvec_avx2, gm__hmm_xiacc_avx2, gm__hmm_vitstep_avx2};
#endif

/* The kernels for genmod's current SIMD path (gm_simd_force(GM_PATH_SCALAR) selects the references). */
static const gm__hmm_kern *gm__hmm_kernels(void) {
#ifdef GM__HMM_X86
    const int p = gm_simd_path();
    if (p == GM_PATH_AVX2 || p == GM_PATH_AVX512) return &gm__hmm_kern_avx2;
#endif
    return &gm__hmm_kern_c;
}

/* ======================================================================================= */
/* Sequences                                                                               */
/* ======================================================================================= */
GMDEF gm_seqs gm_seqs_symbols(const int *sym, const int *len, int n) {
    gm_seqs d;
    d.n = n; d.len = len; d.sym = sym; d.x = NULL;
    return d;
}

GMDEF gm_seqs gm_seqs_vectors(const float *x, const int *len, int n) {
    gm_seqs d;
    d.n = n; d.len = len; d.sym = NULL; d.x = x;
    return d;
}

/* Checks a batch: lengths >= 1, symbols in 0..K-1 (K > 0) or finite vectors of D floats (D > 0).
   *total gets the number of steps. The message names the sequence, step and what is wrong. */
static int gm__seqs_check(const gm_seqs *d, const char *who, int K, int D, size_t *total) {
    size_t t = 0, pos = 0;
    int i, s, k;
    if (!d) return gm_fail("%s: no data (gm_seqs is NULL)", who);
    if (d->n < 1) return gm_fail("%s: no sequences (n = %d)", who, d->n);
    if (!d->len) return gm_fail("%s: the sequence lengths (gm_seqs.len) are NULL", who);
    for (i = 0; i < d->n; i++) {
        if (d->len[i] < 1)
            return gm_fail("%s: sequence %d has length %d (a sequence needs at least one step)", who, i, d->len[i]);
        t += (size_t)d->len[i];
    }
    if (K > 0 && !d->sym) return gm_fail("%s: the model takes symbols, and gm_seqs.sym is NULL", who);
    if (D > 0 && !d->x) return gm_fail("%s: the model takes vectors of %d floats, and gm_seqs.x is NULL", who, D);
    for (i = 0; i < d->n; i++)
        for (s = 0; s < d->len[i]; s++, pos++) {
            if (K > 0 && (d->sym[pos] < 0 || d->sym[pos] >= K))
                return gm_fail("%s: sequence %d, step %d: symbol %d is outside the alphabet 0..%d", who, i, s,
                               d->sym[pos], K - 1);
            if (D > 0)
                for (k = 0; k < D; k++) {
                    const float v = d->x[pos * (size_t)D + (size_t)k];
                    if (v != v) return gm_fail("%s: sequence %d, step %d, dimension %d: NaN in the data", who, i, s, k);
                    if (v - v != 0)
                        return gm_fail("%s: sequence %d, step %d, dimension %d: infinite value in the data", who, i, s, k);
                }
        }
    *total = t;
    return 0;
}

/* First step of every sequence (n + 1 offsets); NULL if out of memory. */
static size_t *gm__seqs_offsets(const gm_seqs *d) {
    size_t *off = GM__HMM_CAST(size_t *, gm__hmm_alloc((size_t)d->n + 1, sizeof(size_t)));
    int i;
    if (!off) return NULL;
    off[0] = 0;
    for (i = 0; i < d->n; i++) off[i + 1] = off[i] + (size_t)d->len[i];
    return off;
}

/* Splits the n sequences into chunks of about equal total length: chunk c holds sequences
   first[c] .. first[c+1]-1. The split depends on the data only. Returns the chunk count. */
static int gm__seqs_chunks(const gm_seqs *d, const size_t *off, int *first) {
    const int nc = d->n < GM__HMM_CHUNKS ? d->n : GM__HMM_CHUNKS;
    const size_t total = off[d->n];
    int c, i = 0;
    first[0] = 0;
    for (c = 1; c < nc; c++) {
        const double target = (double)total * c / nc;
        while (i < d->n - (nc - c) && (double)off[i + 1] <= target) i++;
        if (i < first[c - 1] + 1) i = first[c - 1] + 1;
        first[c] = i;
    }
    first[nc] = d->n;
    return nc;
}

/* ======================================================================================= */
/* Hidden Markov models: tables and exact inference                                        */
/* ======================================================================================= */
/* Pointers into m->tab, derived from the double parameters m->p after every change. */
typedef struct gm__hmm_tab {
    int S, K, D, M, disc;
    const double *pi, *A, *B, *w, *mean, *var;   /* the parameters (into m->p) */
    double *logpi, *logA;    /* S, S x S */
    double *colnz, *rownz;   /* 1 where column j / row i of A has a non-zero entry */
    double *logBT;           /* discrete: K x S, log B transposed (the row of a symbol is contiguous) */
    double *logw, *cst;      /* Gaussian: S x M log weights; -1/2 sum_d log(2 pi var) */
    double *ivar;            /* Gaussian: S x M x D, 1 / var */
} gm__hmm_tab;

static size_t gm__hmm_tab_size(const gm_hmm_config *c) {
    const size_t S = (size_t)c->states;
    size_t n = S + 2 * S * S + 2 * S;
    if (c->emission == GM_HMM_DISCRETE) n += (size_t)c->symbols * S;
    else n += 2 * S * (size_t)c->mixtures + S * (size_t)c->mixtures * (size_t)c->dims;
    return n;
}

static gm__hmm_tab gm__hmm_tables(const gm_hmm *m) {
    gm__hmm_tab t;
    const gm_hmm_config *c = &m->cfg;
    const size_t S = (size_t)c->states;
    double *q = m->tab;
    memset(&t, 0, sizeof t);
    t.S = c->states; t.disc = c->emission == GM_HMM_DISCRETE;
    t.K = t.disc ? c->symbols : 0;
    t.D = t.disc ? 0 : c->dims;
    t.M = t.disc ? 0 : c->mixtures;
    t.pi = m->p + m->params.views[m->v_start].offset;
    t.A = m->p + m->params.views[m->v_trans].offset;
    t.logpi = q; q += S;
    t.logA = q; q += S * S;
    t.colnz = q; q += S;
    t.rownz = q; q += S;
    if (t.disc) {
        t.B = m->p + m->params.views[m->v_emit].offset;
        t.logBT = q;
    } else {
        t.w = m->p + m->params.views[m->v_weight].offset;
        t.mean = m->p + m->params.views[m->v_mean].offset;
        t.var = m->p + m->params.views[m->v_var].offset;
        t.logw = q; q += S * (size_t)t.M;
        t.cst = q; q += S * (size_t)t.M;
        t.ivar = q;
    }
    return t;
}

static double gm__hmm_log0(double p) { return p > 0 ? log(p) : -INFINITY; }

/* Recomputes the derived tables from m->p. */
static void gm__hmm_derive(gm_hmm *m) {
    gm__hmm_tab t = gm__hmm_tables(m);
    const int S = t.S;
    int i, j, k, d;
    for (i = 0; i < S; i++) { t.logpi[i] = gm__hmm_log0(t.pi[i]); t.colnz[i] = 0; t.rownz[i] = 0; }
    for (i = 0; i < S; i++)
        for (j = 0; j < S; j++) {
            const double a = t.A[(size_t)i * S + j];
            t.logA[(size_t)i * S + j] = gm__hmm_log0(a);
            if (a > 0) { t.colnz[j] = 1; t.rownz[i] = 1; }
        }
    if (t.disc) {
        for (j = 0; j < S; j++)
            for (k = 0; k < t.K; k++) t.logBT[(size_t)k * S + j] = gm__hmm_log0(t.B[(size_t)j * t.K + k]);
        return;
    }
    for (k = 0; k < S * t.M; k++) {
        double c = 0;
        t.logw[k] = t.M == 1 ? 0.0 : gm__hmm_log0(t.w[k]);
        for (d = 0; d < t.D; d++) {
            const double v = t.var[(size_t)k * t.D + d];
            c += log(2 * 3.14159265358979323846 * v);
            t.ivar[(size_t)k * t.D + d] = 1.0 / v;
        }
        t.cst[k] = -0.5 * c;
    }
}

/* Gaussian emission log-densities of one observation: out[j] = log sum_m w_jm N(x; mu_jm, var_jm);
   comp (S x M, may be NULL) gets each log w_jm N(x; ...). */
static void gm__hmm_gauss_row(const gm__hmm_tab *t, const float *x, double *out, double *comp) {
    int j, c, d;
    for (j = 0; j < t->S; j++) {
        double mx = -INFINITY, s = 0, lc[64];
        double *l = comp ? comp + (size_t)j * t->M : lc;
        for (c = 0; c < t->M; c++) {
            const size_t k = (size_t)j * t->M + c;
            const double *mu = t->mean + k * t->D, *iv = t->ivar + k * t->D;
            double q = 0;
            for (d = 0; d < t->D; d++) {
                const double e = (double)x[d] - mu[d];
                q += e * e * iv[d];
            }
            l[c] = t->logw[k] + t->cst[k] - 0.5 * q;
            if (l[c] > mx) mx = l[c];
        }
        if (t->M == 1 || mx == -INFINITY) { out[j] = mx; continue; }
        for (c = 0; c < t->M; c++) s += exp(l[c] - mx);
        out[j] = mx + log(s);
    }
}

/* One sequence being worked on, with its scratch vectors (each S doubles). */
typedef struct gm__hmm_seq {
    const gm__hmm_tab *t;
    const gm__hmm_kern *k;
    int T;
    const int *sym;          /* discrete */
    const float *x;          /* Gaussian */
    double *E;               /* Gaussian: T x S emission log-densities */
    double *la;              /* T x S forward log messages (2 x S, reused, when roll is set) */
    int roll;                /* only the log-likelihood is wanted: keep the last two rows */
    double *w, *y, *v, *lb, *lbn, *u, *g, *tmp;
    double *comp;            /* Gaussian: S x M component terms */
} gm__hmm_seq;

static const double *gm__hmm_em(const gm__hmm_seq *q, int t) {
    return q->t->disc ? q->t->logBT + (size_t)q->sym[t] * q->t->S : q->E + (size_t)t * q->t->S;
}

static void gm__hmm_emissions(gm__hmm_seq *q) {
    int t;
    if (q->t->disc) return;
    for (t = 0; t < q->T; t++) gm__hmm_gauss_row(q->t, q->x + (size_t)t * q->t->D, q->E + (size_t)t * q->t->S, NULL);
}

/* Forward pass: la[t][j] = log p(x_0..x_t, state_t = j). Returns log p(x) (-inf: impossible). */
static double gm__hmm_forward(gm__hmm_seq *q) {
    const gm__hmm_tab *tb = q->t;
    const int S = tb->S;
    const double *l0 = gm__hmm_em(q, 0);
    int t, j;
    for (j = 0; j < S; j++) q->la[j] = tb->logpi[j] + l0[j];
    for (t = 1; t < q->T; t++) {
        const double *prev = q->la + (size_t)(q->roll ? (t - 1) & 1 : t - 1) * S, *lt = gm__hmm_em(q, t);
        double *cur = q->la + (size_t)(q->roll ? t & 1 : t) * S;
        const double mx = gm__hmm_max(prev, S);
        if (mx == -INFINITY) return -INFINITY;
        q->k->expshift(q->w, prev, mx, S);
        q->k->vecmat(q->y, q->w, tb->A, S);
        q->k->logv(cur, q->y, S);
        for (j = 0; j < S; j++) {
            if (q->y[j] >= GM__HMM_TINY) cur[j] += mx + lt[j];
            else if (tb->colnz[j] == 0 || lt[j] == -INFINITY) cur[j] = -INFINITY;
            else cur[j] = gm__hmm_lse2(prev, tb->logA + j, S, S) + lt[j];   /* the shifted sum underflowed */
        }
    }
    return gm__hmm_lse(q->la + (size_t)(q->roll ? (q->T - 1) & 1 : q->T - 1) * S, S, 1);
}

/* Posterior of step t from la[t] and lb (log backward messages): g = softmax(la + lb). */
static void gm__hmm_gamma(gm__hmm_seq *q, const double *la, const double *lb) {
    const int S = q->t->S;
    double mx, s = 0;
    int i;
    for (i = 0; i < S; i++) q->tmp[i] = la[i] + lb[i];
    mx = gm__hmm_max(q->tmp, S);
    q->k->expshift(q->g, q->tmp, mx, S);
    for (i = 0; i < S; i++) s += q->g[i];
    for (i = 0; i < S; i++) q->g[i] /= s;
}

/* Expected counts of a sequence, added into acc by gm__hmm_backward. */
typedef struct gm__hmm_acc {
    double *start;           /* S */
    double *trans;           /* S x S */
    double *emitT;           /* discrete: K x S */
    double *W, *S1, *S2;     /* Gaussian: S x M weights, S x M x D shifted sums of x and x^2 */
} gm__hmm_acc;

static void gm__hmm_acc_emission(gm__hmm_seq *q, gm__hmm_acc *a, int t) {
    const gm__hmm_tab *tb = q->t;
    const int S = tb->S, M = tb->M, D = tb->D;
    int j, c, d;
    if (tb->disc) {
        double *e = a->emitT + (size_t)q->sym[t] * S;
        for (j = 0; j < S; j++) e[j] += q->g[j];
        return;
    }
    if (M > 1) gm__hmm_gauss_row(tb, q->x + (size_t)t * D, q->tmp, q->comp);
    for (j = 0; j < S; j++) {
        if (q->g[j] == 0) continue;
        for (c = 0; c < M; c++) {
            const size_t k = (size_t)j * M + c;
            const double r = M == 1 ? q->g[j] : q->g[j] * exp(q->comp[k] - q->tmp[j]);
            const double *mu = tb->mean + k * D;
            const float *x = q->x + (size_t)t * D;
            a->W[k] += r;
            for (d = 0; d < D; d++) {   /* shifted by the current mean: no cancellation in the variance */
                const double e = (double)x[d] - mu[d];
                a->S1[k * D + d] += r * e;
                a->S2[k * D + d] += r * e * e;
            }
        }
    }
}

/* Expected transition counts of step t -> t+1 added exactly in log space (the rare case where
   the linear sum underflowed). v = log b(x_t+1) + lb_t+1. */
static void gm__hmm_xi_exact(gm__hmm_seq *q, const double *la, double *C) {
    const gm__hmm_tab *tb = q->t;
    const int S = tb->S;
    double mx = -INFINITY, s = 0;
    int i, j;
    for (i = 0; i < S; i++)
        for (j = 0; j < S; j++) {
            const double e = la[i] + tb->logA[(size_t)i * S + j] + q->v[j];
            if (e > mx) mx = e;
        }
    if (mx == -INFINITY) return;
    for (i = 0; i < S; i++)
        for (j = 0; j < S; j++) s += exp(la[i] + tb->logA[(size_t)i * S + j] + q->v[j] - mx);
    for (i = 0; i < S; i++)
        for (j = 0; j < S; j++) C[(size_t)i * S + j] += exp(la[i] + tb->logA[(size_t)i * S + j] + q->v[j] - mx) / s;
}

/* Backward pass after gm__hmm_forward: posteriors into post (T x S, may be NULL) and expected
   counts into acc (may be NULL). */
static void gm__hmm_backward(gm__hmm_seq *q, float *post, gm__hmm_acc *acc) {
    const gm__hmm_tab *tb = q->t;
    const int S = tb->S, T = q->T;
    double *lb = q->lb, *lbn = q->lbn, *sw;
    int t, i, j;
    for (i = 0; i < S; i++) lbn[i] = 0;
    gm__hmm_gamma(q, q->la + (size_t)(T - 1) * S, lbn);
    if (post) for (i = 0; i < S; i++) post[(size_t)(T - 1) * S + i] = (float)q->g[i];
    if (acc) gm__hmm_acc_emission(q, acc, T - 1);
    for (t = T - 2; t >= 0; t--) {
        const double *lt1 = gm__hmm_em(q, t + 1), *la = q->la + (size_t)t * S;
        double m1, m2, z;
        int fast;
        for (j = 0; j < S; j++) q->v[j] = lt1[j] + lbn[j];
        m2 = gm__hmm_max(q->v, S);
        q->k->expshift(q->w, q->v, m2, S);
        q->k->matvec(q->y, tb->A, q->w, S);      /* y_i = sum_j A_ij exp(v_j - m2) */
        q->k->logv(lb, q->y, S);
        for (i = 0; i < S; i++) {
            if (q->y[i] >= GM__HMM_TINY) lb[i] += m2;
            else if (tb->rownz[i] == 0) lb[i] = -INFINITY;
            else lb[i] = gm__hmm_lse2(q->v, tb->logA + (size_t)i * S, S, 1);   /* underflowed: exact */
        }
        /* u = exp(la - max): with y, gamma_i = u_i y_i / z and xi_ij = u_i A_ij w_j / z, where
           z = sum_i u_i y_i; exact unless z underflowed, then both are computed in log space */
        m1 = gm__hmm_max(la, S);
        q->k->expshift(q->u, la, m1, S);
        z = 0;
        for (i = 0; i < S; i++) z += q->u[i] * q->y[i];
        fast = z >= GM__HMM_XI_TINY;
        if (fast) for (i = 0; i < S; i++) q->g[i] = q->u[i] * q->y[i] / z;
        else gm__hmm_gamma(q, la, lb);
        if (post) for (i = 0; i < S; i++) post[(size_t)t * S + i] = (float)q->g[i];
        if (acc) {
            gm__hmm_acc_emission(q, acc, t);
            if (fast) {
                for (i = 0; i < S; i++) q->u[i] /= z;
                q->k->xiacc(acc->trans, q->u, tb->A, q->w, S);
            } else {
                gm__hmm_xi_exact(q, la, acc->trans);
            }
        }
        sw = lb; lb = lbn; lbn = sw;
    }
    if (acc) for (i = 0; i < S; i++) acc->start[i] += q->g[i];
}

/* Viterbi: the most probable path into path (T ints); returns its log p(x, path) (-inf: the
   sequence is impossible). psi: T x S ints of scratch. */
static double gm__hmm_viterbi_seq(gm__hmm_seq *q, int *psi, int *path) {
    const gm__hmm_tab *tb = q->t;
    const int S = tb->S;
    const double *l0 = gm__hmm_em(q, 0);
    double *d = q->v, *nd = q->y, *sw, best;
    int t, j, arg = 0;
    for (j = 0; j < S; j++) d[j] = tb->logpi[j] + l0[j];
    for (t = 1; t < q->T; t++) {
        const double *lt = gm__hmm_em(q, t);
        q->k->vitstep(nd, psi + (size_t)t * S, d, tb->logA, S);
        for (j = 0; j < S; j++) nd[j] += lt[j];
        sw = d; d = nd; nd = sw;
    }
    best = d[0];
    for (j = 1; j < S; j++)
        if (d[j] > best) { best = d[j]; arg = j; }
    if (best == -INFINITY) return best;
    path[q->T - 1] = arg;
    for (t = q->T - 1; t > 0; t--) path[t - 1] = psi[(size_t)t * S + path[t]];
    return best;
}

/* ---- the batch runner: chunks of sequences on the thread pool ---- */
enum { GM__HMM_LOGP = 0, GM__HMM_POST, GM__HMM_TRAIN, GM__HMM_VITERBI };

typedef struct gm__hmm_run {
    const gm__hmm_tab *t;
    const gm__hmm_kern *k;
    const gm_seqs *d;
    const size_t *off;
    const int *first;        /* chunk boundaries */
    int mode;
    double *ll;              /* per sequence */
    float *post;
    int *path;
    double *acc;             /* per chunk: acc_n doubles */
    size_t acc_n;
    int *err;                /* per chunk: 0, 1 (out of memory), 2 (a sequence of probability 0) */
    int *err_seq;            /* per chunk: that sequence */
} gm__hmm_run;

static size_t gm__hmm_acc_size(const gm__hmm_tab *t) {
    const size_t S = (size_t)t->S;
    return S + S * S + (t->disc ? (size_t)t->K * S : S * (size_t)t->M * (1 + 2 * (size_t)t->D));
}

static gm__hmm_acc gm__hmm_acc_at(const gm__hmm_tab *t, double *a) {
    gm__hmm_acc r;
    const size_t S = (size_t)t->S;
    memset(&r, 0, sizeof r);
    r.start = a; a += S;
    r.trans = a; a += S * S;
    if (t->disc) { r.emitT = a; return r; }
    r.W = a; a += S * (size_t)t->M;
    r.S1 = a; a += S * (size_t)t->M * (size_t)t->D;
    r.S2 = a;
    return r;
}

static void gm__hmm_task(void *ctx, int c) {
    gm__hmm_run *r = GM__HMM_CAST(gm__hmm_run *, ctx);
    const gm__hmm_tab *tb = r->t;
    const int S = tb->S, a = r->first[c], b = r->first[c + 1];
    int i, tmax = 0;
    size_t need, nla;
    double *ws;
    int *psi = NULL;
    gm__hmm_seq q;
    gm__hmm_acc acc;
    for (i = a; i < b; i++)
        if (r->d->len[i] > tmax) tmax = r->d->len[i];
    /* la (2 rows for the log-likelihood alone, none for Viterbi), E (Gaussian), 9 vectors, comp */
    nla = r->mode == GM__HMM_VITERBI ? 0 : r->mode == GM__HMM_LOGP ? 2 * (size_t)S : (size_t)tmax * S;
    need = nla + (tb->disc ? 0 : (size_t)tmax * S) + 9 * (size_t)S + (size_t)S * (tb->M > 0 ? tb->M : 1);
    ws = GM__HMM_CAST(double *, gm__hmm_alloc(need, sizeof(double)));
    if (r->mode == GM__HMM_VITERBI) psi = GM__HMM_CAST(int *, gm__hmm_alloc((size_t)tmax * S, sizeof(int)));
    if (!ws || (r->mode == GM__HMM_VITERBI && !psi)) {
        GENMOD_FREE(ws); GENMOD_FREE(psi);
        r->err[c] = 1;
        return;
    }
    memset(&q, 0, sizeof q);
    memset(&acc, 0, sizeof acc);
    q.t = tb; q.k = r->k;
    q.roll = r->mode == GM__HMM_LOGP;
    q.la = ws;
    q.E = tb->disc ? NULL : ws + nla;
    q.w = ws + nla + (tb->disc ? 0 : (size_t)tmax * S);
    q.y = q.w + S; q.v = q.y + S; q.lb = q.v + S; q.lbn = q.lb + S; q.u = q.lbn + S; q.g = q.u + S;
    q.tmp = q.g + S; q.comp = q.tmp + 2 * (size_t)S;
    if (r->mode == GM__HMM_TRAIN) {
        memset(r->acc + (size_t)c * r->acc_n, 0, r->acc_n * sizeof(double));
        acc = gm__hmm_acc_at(tb, r->acc + (size_t)c * r->acc_n);
    }
    for (i = a; i < b; i++) {
        const size_t o = r->off[i];
        double ll;
        q.T = r->d->len[i];
        q.sym = r->d->sym ? r->d->sym + o : NULL;
        q.x = r->d->x ? r->d->x + o * (size_t)(tb->D > 0 ? tb->D : 1) : NULL;
        gm__hmm_emissions(&q);
        if (r->mode == GM__HMM_VITERBI) ll = gm__hmm_viterbi_seq(&q, psi, r->path + o);
        else ll = gm__hmm_forward(&q);
        if (r->ll) r->ll[i] = ll;
        if (ll == -INFINITY && r->mode != GM__HMM_LOGP) {
            if (!r->err[c]) { r->err[c] = 2; r->err_seq[c] = i; }
            continue;
        }
        if (r->mode == GM__HMM_POST) gm__hmm_backward(&q, r->post + o * (size_t)S, NULL);
        else if (r->mode == GM__HMM_TRAIN) gm__hmm_backward(&q, NULL, &acc);
    }
    GENMOD_FREE(ws);
    GENMOD_FREE(psi);
}

/* Runs mode over the batch (already checked). ll: n doubles (required). With GM__HMM_TRAIN, *acc_out
   gets the accumulators summed over chunks in chunk order (the caller frees it). */
static int gm__hmm_run_batch(const gm_hmm *m, const gm_seqs *d, int mode, double *ll, float *post, int *path,
                             double **acc_out, const char *who) {
    gm__hmm_tab tb = gm__hmm_tables(m);
    gm__hmm_run r;
    size_t *off = gm__seqs_offsets(d);
    int *first = GM__HMM_CAST(int *, gm__hmm_alloc(GM__HMM_CHUNKS + 1, sizeof(int)));
    int *err = GM__HMM_CAST(int *, gm__hmm_alloc(2 * GM__HMM_CHUNKS, sizeof(int)));
    int nc, c, rc = 0;
    size_t i;
    memset(&r, 0, sizeof r);
    if (!off || !first || !err) { rc = gm_fail("%s: out of memory", who); goto done; }
    nc = gm__seqs_chunks(d, off, first);
    memset(err, 0, 2 * GM__HMM_CHUNKS * sizeof(int));
    r.t = &tb; r.k = gm__hmm_kernels(); r.d = d; r.off = off; r.first = first; r.mode = mode;
    r.ll = ll; r.post = post; r.path = path; r.err = err; r.err_seq = err + GM__HMM_CHUNKS;
    if (mode == GM__HMM_TRAIN) {
        r.acc_n = gm__hmm_acc_size(&tb);
        r.acc = GM__HMM_CAST(double *, gm__hmm_alloc(r.acc_n * (size_t)nc, sizeof(double)));
        if (!r.acc) { rc = gm_fail("%s: out of memory", who); goto done; }
    }
    gm_parallel_for(nc, gm__hmm_task, &r);
    for (c = 0; c < nc && rc == 0; c++) {
        if (err[c] == 1) rc = gm_fail("%s: out of memory (sequences %d..%d)", who, first[c], first[c + 1] - 1);
        else if (err[c] == 2)
            rc = gm_fail("%s: sequence %d has probability 0 under the model (a symbol or transition it never "
                         "allows)", who, r.err_seq[c]);
    }
    if (rc == 0 && mode == GM__HMM_TRAIN) {
        for (c = 1; c < nc; c++)
            for (i = 0; i < r.acc_n; i++) r.acc[i] += r.acc[(size_t)c * r.acc_n + i];
        *acc_out = r.acc;
        r.acc = NULL;
    }
done:
    GENMOD_FREE(r.acc);
    GENMOD_FREE(off);
    GENMOD_FREE(first);
    GENMOD_FREE(err);
    return rc;
}

/* ======================================================================================= */
/* Hidden Markov models: the public calls                                                  */
/* ======================================================================================= */
GMDEF gm_hmm_config gm_hmm_default_config(int states, int emission, int symbols_or_dims) {
    gm_hmm_config c;
    memset(&c, 0, sizeof c);
    c.states = states;
    c.emission = emission;
    if (emission == GM_HMM_DISCRETE) c.symbols = symbols_or_dims;
    else c.dims = symbols_or_dims;
    c.mixtures = 1;
    c.max_iters = 200;
    c.restarts = 4;
    c.tol = 1e-6;
    c.pseudo = 0.0f;
    c.var_floor = 1e-3f;
    c.seed = 1;
    return c;
}

GMDEF void gm_hmm_arch(const gm_hmm_config *c, char *buf, size_t size) {
    if (!buf || size == 0) return;
    if (c->emission == GM_HMM_DISCRETE) snprintf(buf, size, "states=%d emission=discrete symbols=%d", c->states, c->symbols);
    else snprintf(buf, size, "states=%d emission=gaussian dims=%d mixtures=%d", c->states, c->dims, c->mixtures);
}

static int gm__hmm_check_config(const gm_hmm_config *c) {
    if (!c) return gm_fail("hmm: config is NULL");
    if (c->states < 1 || c->states > 4096) return gm_fail("hmm: config.states = %d (allowed: 1..4096)", c->states);
    if (c->emission != GM_HMM_DISCRETE && c->emission != GM_HMM_GAUSSIAN)
        return gm_fail("hmm: config.emission = %d (GM_HMM_DISCRETE or GM_HMM_GAUSSIAN)", c->emission);
    if (c->emission == GM_HMM_DISCRETE && (c->symbols < 1 || c->symbols > (1 << 24)))
        return gm_fail("hmm: config.symbols = %d (allowed: 1..16777216)", c->symbols);
    if (c->emission == GM_HMM_DISCRETE && (double)c->symbols * c->states > 268435456.0)
        return gm_fail("hmm: config.symbols x config.states = %d x %d is too large (at most 2^28)", c->symbols, c->states);
    if (c->emission == GM_HMM_GAUSSIAN && (c->dims < 1 || c->dims > 4096))
        return gm_fail("hmm: config.dims = %d (allowed: 1..4096)", c->dims);
    if (c->emission == GM_HMM_GAUSSIAN && (c->mixtures < 1 || c->mixtures > 64))
        return gm_fail("hmm: config.mixtures = %d (allowed: 1..64)", c->mixtures);
    if (c->emission == GM_HMM_GAUSSIAN && (double)c->dims * c->mixtures * c->states > 268435456.0)
        return gm_fail("hmm: config.states x mixtures x dims is too large (at most 2^28)");
    if (c->max_iters < 1) return gm_fail("hmm: config.max_iters = %d (must be >= 1)", c->max_iters);
    if (c->restarts < 0) return gm_fail("hmm: config.restarts = %d (must be >= 0)", c->restarts);
    if (!(c->tol >= 0) || c->tol - c->tol != 0) return gm_fail("hmm: config.tol = %g (must be finite and >= 0)", c->tol);
    if (!(c->pseudo >= 0) || c->pseudo - c->pseudo != 0)
        return gm_fail("hmm: config.pseudo = %g (must be finite and >= 0)", (double)c->pseudo);
    if (c->emission == GM_HMM_GAUSSIAN && (!(c->var_floor > 0) || c->var_floor - c->var_floor != 0))
        return gm_fail("hmm: config.var_floor = %g (must be finite and > 0)", (double)c->var_floor);
    return 0;
}

/* Copies the double parameters into the float params (what checkpoints hold). */
static void gm__hmm_sync(gm_hmm *m) {
    size_t i;
    for (i = 0; i < m->params.count; i++) m->params.data[i] = (float)m->p[i];
}

/* A random distribution: Dirichlet(1) draws (exponentials, kept away from 0) times prior. */
static void gm__hmm_rand_row(gm_rng *r, double *row, int n, const double *prior) {
    double s = 0;
    int i;
    for (i = 0; i < n; i++) {
        row[i] = (0.01 - log(1.0 - gm__hmm_unif(r))) * (prior ? prior[i] : 1.0);
        s += row[i];
    }
    for (i = 0; i < n; i++) row[i] /= s;
}

/* Data-free random parameters (gm_hmm_init). */
static void gm__hmm_random(gm_hmm *m) {
    gm__hmm_tab t = gm__hmm_tables(m);
    double *p = m->p;
    const size_t o_pi = m->params.views[m->v_start].offset, o_a = m->params.views[m->v_trans].offset;
    int i;
    gm__hmm_rand_row(&m->rng, p + o_pi, t.S, NULL);
    for (i = 0; i < t.S; i++) gm__hmm_rand_row(&m->rng, p + o_a + (size_t)i * t.S, t.S, NULL);
    if (t.disc) {
        const size_t o = m->params.views[m->v_emit].offset;
        for (i = 0; i < t.S; i++) gm__hmm_rand_row(&m->rng, p + o + (size_t)i * t.K, t.K, NULL);
    } else {
        const size_t ow = m->params.views[m->v_weight].offset, om = m->params.views[m->v_mean].offset,
                     ov = m->params.views[m->v_var].offset, n = (size_t)t.S * t.M * t.D;
        size_t k;
        for (i = 0; i < t.S * t.M; i++) p[ow + (size_t)i] = 1.0 / t.M;
        for (k = 0; k < n; k++) { p[om + k] = gm_rng_normal(&m->rng); p[ov + k] = 1.0; }
    }
    gm__hmm_derive(m);
    gm__hmm_sync(m);
}

GMDEF void gm_hmm_free(gm_hmm *m) {
    if (!m) return;
    gm_params_free(&m->params);
    GENMOD_FREE(m->p);
    GENMOD_FREE(m->tab);
    m->p = NULL;
    m->tab = NULL;
    m->v_start = m->v_trans = m->v_emit = m->v_weight = m->v_mean = m->v_var = -1;
}

/* Adds the model's views to p (gm_hmm_init, and the scratch params of gm_hmm_load). */
static int gm__hmm_views(const gm_hmm_config *c, gm_params *p, int *v) {
    int sh[3];
    sh[0] = c->states;
    v[0] = gm_params_add(p, "start", 1, sh);
    sh[1] = c->states;
    v[1] = gm_params_add(p, "trans", 2, sh);
    v[2] = v[3] = v[4] = v[5] = -1;
    if (c->emission == GM_HMM_DISCRETE) {
        sh[1] = c->symbols;
        v[2] = gm_params_add(p, "emit", 2, sh);
        return v[0] < 0 || v[1] < 0 || v[2] < 0 ? -1 : 0;
    }
    sh[1] = c->mixtures;
    v[3] = gm_params_add(p, "weight", 2, sh);
    sh[2] = c->dims;
    v[4] = gm_params_add(p, "mean", 3, sh);
    v[5] = gm_params_add(p, "var", 3, sh);
    return v[0] < 0 || v[1] < 0 || v[3] < 0 || v[4] < 0 || v[5] < 0 ? -1 : 0;
}

GMDEF int gm_hmm_init(gm_hmm *m, const gm_hmm_config *cfg) {
    int v[6];
    if (!m) return gm_fail("hmm: model is NULL");
    memset(m, 0, sizeof *m);
    m->v_start = m->v_trans = m->v_emit = m->v_weight = m->v_mean = m->v_var = -1;
    if (gm__hmm_check_config(cfg) != 0) return -1;
    m->cfg = *cfg;
    if (m->cfg.emission == GM_HMM_DISCRETE) { m->cfg.dims = 0; m->cfg.mixtures = 0; }
    else m->cfg.symbols = 0;
    if (gm__hmm_views(&m->cfg, &m->params, v) != 0) { gm_hmm_free(m); return -1; }
    m->v_start = v[0]; m->v_trans = v[1]; m->v_emit = v[2]; m->v_weight = v[3]; m->v_mean = v[4]; m->v_var = v[5];
    m->params.frozen = 1;   /* nothing here is trained by gradients */
    m->p = GM__HMM_CAST(double *, gm__hmm_alloc(m->params.count, sizeof(double)));
    m->tab = GM__HMM_CAST(double *, gm__hmm_alloc(gm__hmm_tab_size(&m->cfg), sizeof(double)));
    if (!m->p || !m->tab) { gm_hmm_free(m); return gm_fail("hmm: out of memory"); }
    memset(m->p, 0, m->params.count * sizeof(double));
    gm_rng_seed(&m->rng, m->cfg.seed);
    gm__hmm_random(m);
    return 0;
}

static int gm__hmm_ready(const gm_hmm *m, const char *who) {
    if (!m || !m->p || !m->tab) return gm_fail("%s: the model is not initialized (gm_hmm_init)", who);
    return 0;
}

/* Checks rows of probabilities given as floats: finite, >= 0, summing to 1 within 1e-4. */
static int gm__hmm_check_rows(const float *v, int rows, int cols, const char *who, const char *what) {
    int i, j;
    for (i = 0; i < rows; i++) {
        double s = 0;
        for (j = 0; j < cols; j++) {
            const float x = v[(size_t)i * cols + j];
            if (x != x || x - x != 0) return gm_fail("%s: %s row %d, column %d is %g (not finite)", who, what, i, j, (double)x);
            if (x < 0) return gm_fail("%s: %s row %d, column %d is %g (a probability cannot be negative)", who, what, i, j, (double)x);
            s += x;
        }
        if (fabs(s - 1.0) > 1e-4)
            return gm_fail("%s: %s row %d sums to %.9g, not 1 (tolerance 1e-4): not a stochastic matrix", who, what, i, s);
    }
    return 0;
}

static void gm__hmm_put_rows(double *dst, const float *src, int rows, int cols) {
    int i, j;
    for (i = 0; i < rows; i++) {
        double s = 0;
        for (j = 0; j < cols; j++) s += src[(size_t)i * cols + j];
        for (j = 0; j < cols; j++) dst[(size_t)i * cols + j] = src[(size_t)i * cols + j] / s;
    }
}

GMDEF int gm_hmm_set_chain(gm_hmm *m, const float *start, const float *trans) {
    int S;
    if (gm__hmm_ready(m, "gm_hmm_set_chain") != 0) return -1;
    S = m->cfg.states;
    if (start && gm__hmm_check_rows(start, 1, S, "gm_hmm_set_chain", "start") != 0) return -1;
    if (trans && gm__hmm_check_rows(trans, S, S, "gm_hmm_set_chain", "trans") != 0) return -1;
    if (start) gm__hmm_put_rows(m->p + m->params.views[m->v_start].offset, start, 1, S);
    if (trans) gm__hmm_put_rows(m->p + m->params.views[m->v_trans].offset, trans, S, S);
    gm__hmm_derive(m);
    gm__hmm_sync(m);
    return 0;
}

GMDEF int gm_hmm_set_discrete(gm_hmm *m, const float *emit) {
    if (gm__hmm_ready(m, "gm_hmm_set_discrete") != 0) return -1;
    if (m->cfg.emission != GM_HMM_DISCRETE) return gm_fail("gm_hmm_set_discrete: the model has Gaussian emissions");
    if (!emit) return gm_fail("gm_hmm_set_discrete: emit is NULL");
    if (gm__hmm_check_rows(emit, m->cfg.states, m->cfg.symbols, "gm_hmm_set_discrete", "emit") != 0) return -1;
    gm__hmm_put_rows(m->p + m->params.views[m->v_emit].offset, emit, m->cfg.states, m->cfg.symbols);
    gm__hmm_derive(m);
    gm__hmm_sync(m);
    return 0;
}

/* Means finite, variances finite and > 0 (n values each). */
static int gm__hmm_check_gauss(const float *mean, const float *var, size_t n, int D, const char *who) {
    size_t k;
    for (k = 0; mean && k < n; k++)
        if (mean[k] != mean[k] || mean[k] - mean[k] != 0)
            return gm_fail("%s: mean of state/component %d, dimension %d is %g (not finite)", who, (int)(k / D), (int)(k % D),
                           (double)mean[k]);
    for (k = 0; var && k < n; k++)
        if (!(var[k] > 0) || var[k] - var[k] != 0)
            return gm_fail("%s: variance of state/component %d, dimension %d is %g (must be finite and > 0)", who,
                           (int)(k / D), (int)(k % D), (double)var[k]);
    return 0;
}

GMDEF int gm_hmm_set_gaussian(gm_hmm *m, const float *weight, const float *mean, const float *var) {
    size_t n, k;
    double *p;
    if (gm__hmm_ready(m, "gm_hmm_set_gaussian") != 0) return -1;
    if (m->cfg.emission != GM_HMM_GAUSSIAN) return gm_fail("gm_hmm_set_gaussian: the model has discrete emissions");
    n = (size_t)m->cfg.states * m->cfg.mixtures * m->cfg.dims;
    if (weight && gm__hmm_check_rows(weight, m->cfg.states, m->cfg.mixtures, "gm_hmm_set_gaussian", "weight") != 0) return -1;
    if (gm__hmm_check_gauss(mean, var, n, m->cfg.dims, "gm_hmm_set_gaussian") != 0) return -1;
    p = m->p;
    if (weight) gm__hmm_put_rows(p + m->params.views[m->v_weight].offset, weight, m->cfg.states, m->cfg.mixtures);
    for (k = 0; mean && k < n; k++) p[m->params.views[m->v_mean].offset + k] = mean[k];
    for (k = 0; var && k < n; k++) p[m->params.views[m->v_var].offset + k] = var[k];
    gm__hmm_derive(m);
    gm__hmm_sync(m);
    return 0;
}

static int gm__hmm_check_data(const gm_hmm *m, const gm_seqs *d, const char *who, size_t *total) {
    if (gm__hmm_ready(m, who) != 0) return -1;
    return gm__seqs_check(d, who, m->cfg.emission == GM_HMM_DISCRETE ? m->cfg.symbols : 0,
                          m->cfg.emission == GM_HMM_GAUSSIAN ? m->cfg.dims : 0, total);
}

static double gm__hmm_sum_ll(const double *ll, int n) {
    double s = 0;
    int i;
    for (i = 0; i < n; i++) s += ll[i];
    return s;
}

GMDEF int gm_hmm_log_prob(const gm_hmm *m, const gm_seqs *d, double *per_seq, double *total) {
    size_t nobs;
    double *ll;
    int rc;
    if (gm__hmm_check_data(m, d, "gm_hmm_log_prob", &nobs) != 0) return -1;
    ll = per_seq ? per_seq : GM__HMM_CAST(double *, gm__hmm_alloc((size_t)d->n, sizeof(double)));
    if (!ll) return gm_fail("gm_hmm_log_prob: out of memory");
    rc = gm__hmm_run_batch(m, d, GM__HMM_LOGP, ll, NULL, NULL, NULL, "gm_hmm_log_prob");
    if (rc == 0 && total) *total = gm__hmm_sum_ll(ll, d->n);
    if (!per_seq) GENMOD_FREE(ll);
    return rc;
}

GMDEF int gm_hmm_posterior(const gm_hmm *m, const gm_seqs *d, float *post, double *per_seq) {
    size_t nobs;
    double *ll;
    int rc;
    if (gm__hmm_check_data(m, d, "gm_hmm_posterior", &nobs) != 0) return -1;
    if (!post) return gm_fail("gm_hmm_posterior: post is NULL");
    ll = per_seq ? per_seq : GM__HMM_CAST(double *, gm__hmm_alloc((size_t)d->n, sizeof(double)));
    if (!ll) return gm_fail("gm_hmm_posterior: out of memory");
    rc = gm__hmm_run_batch(m, d, GM__HMM_POST, ll, post, NULL, NULL, "gm_hmm_posterior");
    if (!per_seq) GENMOD_FREE(ll);
    return rc;
}

GMDEF int gm_hmm_viterbi(const gm_hmm *m, const gm_seqs *d, int *path, double *per_seq) {
    size_t nobs;
    double *ll;
    int rc;
    if (gm__hmm_check_data(m, d, "gm_hmm_viterbi", &nobs) != 0) return -1;
    if (!path) return gm_fail("gm_hmm_viterbi: path is NULL");
    ll = per_seq ? per_seq : GM__HMM_CAST(double *, gm__hmm_alloc((size_t)d->n, sizeof(double)));
    if (!ll) return gm_fail("gm_hmm_viterbi: out of memory");
    rc = gm__hmm_run_batch(m, d, GM__HMM_VITERBI, ll, NULL, path, NULL, "gm_hmm_viterbi");
    if (!per_seq) GENMOD_FREE(ll);
    return rc;
}

/* pseudo * sum of log-probabilities of every distribution (the log Dirichlet prior, up to a constant). */
static double gm__hmm_log_prior(const gm_hmm *m) {
    gm__hmm_tab t = gm__hmm_tables(m);
    double s = 0;
    int i;
    if (m->cfg.pseudo == 0) return 0;
    for (i = 0; i < t.S; i++) s += gm__hmm_log0(t.pi[i]);
    for (i = 0; i < t.S * t.S; i++) s += gm__hmm_log0(t.A[i]);
    if (t.disc) for (i = 0; i < t.S * t.K; i++) s += gm__hmm_log0(t.B[i]);
    else if (t.M > 1) for (i = 0; i < t.S * t.M; i++) s += gm__hmm_log0(t.w[i]);
    return m->cfg.pseudo * s;
}

/* Normalizes counts + pseudo into dst (a distribution); a row without counts keeps its values. */
static void gm__hmm_normalize(double *dst, const double *cnt, int n, int stride, double pseudo) {
    double s = 0;
    int i;
    for (i = 0; i < n; i++) s += cnt[(size_t)i * stride] + pseudo;
    if (!(s > 0)) return;
    for (i = 0; i < n; i++) dst[i] = (cnt[(size_t)i * stride] + pseudo) / s;
}

/* Variance floor of each dimension: var_floor x the data's variance (var_floor alone where the
   data is constant). floor: D doubles. */
static void gm__hmm_var_floor(const gm_hmm *m, const gm_seqs *d, size_t nobs, double *floor) {
    const int D = m->cfg.dims;
    size_t t;
    int k;
    for (k = 0; k < D; k++) {
        double mean = 0, v = 0;
        for (t = 0; t < nobs; t++) mean += d->x[t * D + k];
        mean /= (double)nobs;
        for (t = 0; t < nobs; t++) v += (d->x[t * D + k] - mean) * (d->x[t * D + k] - mean);
        v /= (double)nobs;
        floor[k] = m->cfg.var_floor * (v > 0 ? v : 1.0);
    }
}

/* The M-step from summed expected counts. */
static void gm__hmm_mstep(gm_hmm *m, double *accbuf, const double *floor) {
    gm__hmm_tab t = gm__hmm_tables(m);
    gm__hmm_acc a = gm__hmm_acc_at(&t, accbuf);
    const double ps = m->cfg.pseudo;
    double *p = m->p;
    const size_t o_pi = m->params.views[m->v_start].offset, o_a = m->params.views[m->v_trans].offset;
    int i, c, k;
    gm__hmm_normalize(p + o_pi, a.start, t.S, 1, ps);
    for (i = 0; i < t.S; i++) gm__hmm_normalize(p + o_a + (size_t)i * t.S, a.trans + (size_t)i * t.S, t.S, 1, ps);
    if (t.disc) {
        const size_t o = m->params.views[m->v_emit].offset;
        for (i = 0; i < t.S; i++) gm__hmm_normalize(p + o + (size_t)i * t.K, a.emitT + i, t.K, t.S, ps);
    } else {
        const size_t ow = m->params.views[m->v_weight].offset, om = m->params.views[m->v_mean].offset,
                     ov = m->params.views[m->v_var].offset;
        if (t.M > 1)
            for (i = 0; i < t.S; i++) gm__hmm_normalize(p + ow + (size_t)i * t.M, a.W + (size_t)i * t.M, t.M, 1, ps);
        for (c = 0; c < t.S * t.M; c++) {
            const double W = a.W[c];
            if (!(W > 0)) continue;   /* a component nothing was assigned to keeps its values */
            for (k = 0; k < t.D; k++) {
                const size_t j = (size_t)c * t.D + k;
                const double d1 = a.S1[j] / W, var = a.S2[j] / W - d1 * d1;
                p[om + j] += d1;
                p[ov + j] = var > floor[k] ? var : floor[k];
            }
        }
    }
    gm__hmm_derive(m);
    gm__hmm_sync(m);
}

/* One EM iteration on a checked batch. */
static int gm__hmm_em_step(gm_hmm *m, const gm_seqs *d, size_t nobs, const double *floor, double *ll, gm_hmm_stats *st,
                           const char *who) {
    double *acc = NULL, total;
    if (gm__hmm_run_batch(m, d, GM__HMM_TRAIN, ll, NULL, NULL, &acc, who) != 0) return -1;
    total = gm__hmm_sum_ll(ll, d->n);
    if (st) {
        st->log_lik = total;
        st->obs = (long)nobs;
        st->per_obs = total / (double)nobs;
        st->objective = total + gm__hmm_log_prior(m);
    }
    gm__hmm_mstep(m, acc, floor);
    GENMOD_FREE(acc);
    m->step++;
    return 0;
}

GMDEF int gm_hmm_train_step(gm_hmm *m, const gm_seqs *d, gm_hmm_stats *st) {
    size_t nobs;
    double *ll, *floor = NULL;
    int rc;
    if (gm__hmm_check_data(m, d, "gm_hmm_train_step", &nobs) != 0) return -1;
    ll = GM__HMM_CAST(double *, gm__hmm_alloc((size_t)d->n + (size_t)(m->cfg.dims > 0 ? m->cfg.dims : 0), sizeof(double)));
    if (!ll) return gm_fail("gm_hmm_train_step: out of memory");
    if (m->cfg.emission == GM_HMM_GAUSSIAN) {
        floor = ll + d->n;
        gm__hmm_var_floor(m, d, nobs, floor);
    }
    if (st) memset(st, 0, sizeof *st);
    rc = gm__hmm_em_step(m, d, nobs, floor, ll, st, "gm_hmm_train_step");
    GENMOD_FREE(ll);
    return rc;
}

/* Means of the S x M components by k-means++ seeding (each next mean drawn with probability
   proportional to its squared distance, scaled per dimension, to the nearest mean so far) among
   up to 2048 observations picked at random: spread-out starts that EM improves from. */
#define GM__HMM_SEED_POOL 2048
static void gm__hmm_seed_means(gm_hmm *m, const gm_seqs *d, size_t nobs, double *mean, const double *floor, double *dist) {
    const int D = m->cfg.dims, nc = m->cfg.states * m->cfg.mixtures;
    const int np = nobs < GM__HMM_SEED_POOL ? (int)nobs : GM__HMM_SEED_POOL;
    size_t pick[GM__HMM_SEED_POOL];
    double total;
    int i, c, k;
    for (i = 0; i < np; i++) {
        pick[i] = np == (int)nobs ? (size_t)i : (size_t)(gm__hmm_unif(&m->rng) * (double)nobs);
        if (pick[i] >= nobs) pick[i] = nobs - 1;
        dist[i] = INFINITY;
    }
    for (c = 0; c < nc; c++) {
        int at = 0;
        if (c == 0) at = (int)(gm__hmm_unif(&m->rng) * np);
        else {
            total = 0;
            for (i = 0; i < np; i++) total += dist[i];
            at = total > 0 ? gm__hmm_draw(&m->rng, dist, np, total) : (int)(gm__hmm_unif(&m->rng) * np);
        }
        if (at >= np) at = np - 1;
        for (k = 0; k < D; k++) mean[(size_t)c * D + k] = d->x[pick[at] * D + k];
        for (i = 0; i < np; i++) {   /* distance to the nearest mean, each dimension scaled by the data's spread */
            double e = 0;
            for (k = 0; k < D; k++) {
                const double u = d->x[pick[i] * D + k] - mean[(size_t)c * D + k];
                e += u * u * m->cfg.var_floor / floor[k];
            }
            if (e < dist[i]) dist[i] = e;
        }
    }
}

/* A random start drawn from the data: Dirichlet rows for the chain; discrete emissions the symbol
   frequencies times heavy-tailed noise (so the states start apart); Gaussian means seeded
   k-means++ style, variances the data's. */
static void gm__hmm_data_init(gm_hmm *m, const gm_seqs *d, size_t nobs, const double *floor, double *scratch) {
    gm__hmm_tab t = gm__hmm_tables(m);
    double *p = m->p;
    const size_t o_pi = m->params.views[m->v_start].offset, o_a = m->params.views[m->v_trans].offset;
    int i, k, c;
    size_t s;
    gm__hmm_rand_row(&m->rng, p + o_pi, t.S, NULL);
    for (i = 0; i < t.S; i++) gm__hmm_rand_row(&m->rng, p + o_a + (size_t)i * t.S, t.S, NULL);
    if (t.disc) {
        const size_t o = m->params.views[m->v_emit].offset;
        for (k = 0; k < t.K; k++) scratch[k] = 1.0;   /* symbol counts plus one */
        for (s = 0; s < nobs; s++) scratch[d->sym[s]] += 1.0;
        for (i = 0; i < t.S; i++) {   /* frequencies times cubed exponentials: rows that differ */
            double *row = p + o + (size_t)i * t.K, sum = 0;
            for (k = 0; k < t.K; k++) {
                const double e = -log(1.0 - gm__hmm_unif(&m->rng));
                row[k] = scratch[k] * (0.01 + e * e * e);
                sum += row[k];
            }
            for (k = 0; k < t.K; k++) row[k] /= sum;
        }
    } else {
        const size_t ow = m->params.views[m->v_weight].offset, om = m->params.views[m->v_mean].offset,
                     ov = m->params.views[m->v_var].offset;
        for (i = 0; i < t.S * t.M; i++) p[ow + (size_t)i] = 1.0 / t.M;
        gm__hmm_seed_means(m, d, nobs, p + om, floor, scratch);
        for (c = 0; c < t.S * t.M; c++)
            for (k = 0; k < t.D; k++) p[ov + (size_t)c * t.D + k] = floor[k] / m->cfg.var_floor;   /* the data's variance */
    }
    gm__hmm_derive(m);
    gm__hmm_sync(m);
}

GMDEF int gm_hmm_fit(gm_hmm *m, const gm_seqs *d, gm_hmm_stats *st) {
    size_t nobs, np;
    double *ll, *floor, *best, *scratch, best_ll = -INFINITY, prev;
    int r, it, nr, rc = 0, kept = -1, best_iters = 0, stop = 0;
    gm_hmm_stats s1;
    if (gm__hmm_check_data(m, d, "gm_hmm_fit", &nobs) != 0) return -1;
    np = m->params.count;
    nr = m->cfg.restarts > 0 ? m->cfg.restarts : 1;
    ll = GM__HMM_CAST(double *, gm__hmm_alloc((size_t)d->n + np + (size_t)m->cfg.dims + (size_t)m->cfg.symbols +
                                              GM__HMM_SEED_POOL, sizeof(double)));
    if (!ll) return gm_fail("gm_hmm_fit: out of memory");
    best = ll + d->n;
    floor = best + np;
    scratch = floor + m->cfg.dims;
    if (m->cfg.emission == GM_HMM_GAUSSIAN) gm__hmm_var_floor(m, d, nobs, floor);
    if (st) memset(st, 0, sizeof *st);
    for (r = 0; r < nr && rc == 0 && !stop; r++) {
        double fin;
        if (m->cfg.restarts > 0) gm__hmm_data_init(m, d, nobs, floor, scratch);
        prev = -INFINITY;
        for (it = 0; it < m->cfg.max_iters && !stop; it++) {
            if ((rc = gm__hmm_em_step(m, d, nobs, floor, ll, &s1, "gm_hmm_fit")) != 0) break;
            if (m->cfg.on_iter && m->cfg.on_iter(m->cfg.on_iter_ctx, r, it, &s1) != 0) stop = 1;
            if (it > 0 && s1.log_lik - prev < m->cfg.tol * (double)nobs) { it++; break; }
            prev = s1.log_lik;
        }
        if (rc != 0) break;
        if ((rc = gm__hmm_run_batch(m, d, GM__HMM_LOGP, ll, NULL, NULL, NULL, "gm_hmm_fit")) != 0) break;
        fin = gm__hmm_sum_ll(ll, d->n);
        if (st && r < 16) st->restart_ll[r] = fin;
        if (kept < 0 || fin > best_ll) {
            best_ll = fin;
            kept = r;
            best_iters = it;
            memcpy(best, m->p, np * sizeof(double));
        }
    }
    if (kept >= 0) {
        memcpy(m->p, best, np * sizeof(double));
        gm__hmm_derive(m);
        gm__hmm_sync(m);
    }
    if (rc == 0 && st) {
        st->log_lik = best_ll;
        st->obs = (long)nobs;
        st->per_obs = best_ll / (double)nobs;
        st->objective = best_ll + gm__hmm_log_prior(m);
        st->iters = best_iters;
        st->restart = kept;
    }
    GENMOD_FREE(ll);
    return rc;
}

GMDEF int gm_hmm_sample(gm_hmm *m, int n, int len, int *states, int *sym, float *x) {
    gm__hmm_tab t;
    int i, s, st, c, k;
    if (gm__hmm_ready(m, "gm_hmm_sample") != 0) return -1;
    if (n < 0 || len < 0) return gm_fail("gm_hmm_sample: n = %d, len = %d (must be >= 0)", n, len);
    if (sym && m->cfg.emission != GM_HMM_DISCRETE) return gm_fail("gm_hmm_sample: sym is for discrete emissions; this model's are Gaussian (use x)");
    if (x && m->cfg.emission != GM_HMM_GAUSSIAN) return gm_fail("gm_hmm_sample: x is for Gaussian emissions; this model's are discrete (use sym)");
    t = gm__hmm_tables(m);
    for (i = 0; i < n; i++) {
        st = gm__hmm_draw(&m->rng, t.pi, t.S, 1.0);
        for (s = 0; s < len; s++) {
            const size_t o = (size_t)i * len + s;
            if (s > 0) st = gm__hmm_draw(&m->rng, t.A + (size_t)st * t.S, t.S, 1.0);
            if (states) states[o] = st;
            if (t.disc) {
                const int y = gm__hmm_draw(&m->rng, t.B + (size_t)st * t.K, t.K, 1.0);
                if (sym) sym[o] = y;
                continue;
            }
            c = t.M == 1 ? 0 : gm__hmm_draw(&m->rng, t.w + (size_t)st * t.M, t.M, 1.0);
            for (k = 0; k < t.D; k++) {
                const size_t j = ((size_t)st * t.M + c) * t.D + k;
                const float e = gm_rng_normal(&m->rng);
                if (x) x[o * t.D + k] = (float)(t.mean[j] + sqrt(t.var[j]) * e);
            }
        }
    }
    return 0;
}

GMDEF int gm_hmm_save(const gm_hmm *m, const char *path) {
    char arch[128];
    gm_model_part part;
    if (gm__hmm_ready(m, "gm_hmm_save") != 0) return -1;
    gm_hmm_arch(&m->cfg, arch, sizeof arch);
    part.name = "";
    part.params = GM__HMM_CAST(gm_params *, &m->params);   /* only read */
    part.opt = NULL;
    return gm_model_save(path, "hmm", arch, m->step, &part, 1, NULL);
}

GMDEF int gm_hmm_load(gm_hmm *m, const char *path) {
    char arch[128];
    gm_params tmp;
    gm_model_part part;
    int v[6], S, rc = -1;
    long step = 0;
    size_t i;
    if (gm__hmm_ready(m, "gm_hmm_load") != 0) return -1;
    memset(&tmp, 0, sizeof tmp);
    gm_hmm_arch(&m->cfg, arch, sizeof arch);
    if (gm__hmm_views(&m->cfg, &tmp, v) != 0) { gm_params_free(&tmp); return -1; }
    part.name = "";
    part.params = &tmp;
    part.opt = NULL;
    if (gm_model_load(path, "hmm", arch, &step, &part, 1, NULL) != 0) goto done;
    /* validate everything before the model changes */
    S = m->cfg.states;
    if (gm__hmm_check_rows(gm_params_data(&tmp, v[0]), 1, S, path, "hmm: start") != 0 ||
        gm__hmm_check_rows(gm_params_data(&tmp, v[1]), S, S, path, "hmm: trans") != 0)
        goto done;
    if (m->cfg.emission == GM_HMM_DISCRETE) {
        if (gm__hmm_check_rows(gm_params_data(&tmp, v[2]), S, m->cfg.symbols, path, "hmm: emit") != 0) goto done;
    } else {
        const size_t n = (size_t)S * m->cfg.mixtures * m->cfg.dims;
        if (gm__hmm_check_rows(gm_params_data(&tmp, v[3]), S, m->cfg.mixtures, path, "hmm: weight") != 0 ||
            gm__hmm_check_gauss(gm_params_data(&tmp, v[4]), gm_params_data(&tmp, v[5]), n, m->cfg.dims, path) != 0)
            goto done;
    }
    /* same layout as m->params (same views added in the same order) */
    for (i = 0; i < tmp.count; i++) m->p[i] = tmp.data[i];
    gm__hmm_put_rows(m->p + m->params.views[m->v_start].offset, gm_params_data(&tmp, v[0]), 1, S);
    gm__hmm_put_rows(m->p + m->params.views[m->v_trans].offset, gm_params_data(&tmp, v[1]), S, S);
    if (m->cfg.emission == GM_HMM_DISCRETE)
        gm__hmm_put_rows(m->p + m->params.views[m->v_emit].offset, gm_params_data(&tmp, v[2]), S, m->cfg.symbols);
    else
        gm__hmm_put_rows(m->p + m->params.views[m->v_weight].offset, gm_params_data(&tmp, v[3]), S, m->cfg.mixtures);
    memcpy(m->params.data, tmp.data, tmp.count * sizeof(float));   /* the file's values exactly */
    gm__hmm_derive(m);
    m->step = step;
    rc = 0;
done:
    gm_params_free(&tmp);
    return rc;
}

/* ======================================================================================= */
/* Markov chains                                                                           */
/* ======================================================================================= */
/* Every observed n-gram (orders 0..n, as symbol strings of length 1..n+1) and every context
   (length 0..n) is one entry of an open-addressing hash table: count = times the string occurred
   (as an n-gram), total = times it was followed by a symbol (as a context), distinct = how many
   different symbols followed it. Entry 0 is the empty context. */
typedef struct gm__mk_ent {
    uint64_t h;
    size_t off;              /* its symbols in the pool */
    int len, distinct;
    double count, total;
} gm__mk_ent;

struct gm__markov_table {
    gm__mk_ent *ent;
    size_t nent, capent;
    int *pool;
    size_t npool, cappool;
    uint32_t *slot;          /* entry index + 1, 0: empty */
    size_t nslot;            /* a power of two, at least twice nent */
};

static uint64_t gm__mk_hash(const int *s, int len) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)len;
    int i;
    for (i = 0; i < len; i++) {
        h ^= (uint32_t)s[i];
        h *= 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    h ^= h >> 29;
    h *= 0x94D049BB133111EBull;
    return h ^ (h >> 32);
}

static void gm__mk_table_free(gm__markov_table *t) {
    if (!t) return;
    GENMOD_FREE(t->ent);
    GENMOD_FREE(t->pool);
    GENMOD_FREE(t->slot);
    GENMOD_FREE(t);
}

static gm__markov_table *gm__mk_table_new(void) {
    gm__markov_table *t = GM__HMM_CAST(gm__markov_table *, gm__hmm_alloc(1, sizeof(gm__markov_table)));
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->capent = 256; t->cappool = 1024; t->nslot = 512;
    t->ent = GM__HMM_CAST(gm__mk_ent *, gm__hmm_alloc(t->capent, sizeof(gm__mk_ent)));
    t->pool = GM__HMM_CAST(int *, gm__hmm_alloc(t->cappool, sizeof(int)));
    t->slot = GM__HMM_CAST(uint32_t *, gm__hmm_alloc(t->nslot, sizeof(uint32_t)));
    if (!t->ent || !t->pool || !t->slot) { gm__mk_table_free(t); return NULL; }
    memset(t->slot, 0, t->nslot * sizeof(uint32_t));
    memset(&t->ent[0], 0, sizeof(gm__mk_ent));   /* the empty context */
    t->ent[0].h = gm__mk_hash(NULL, 0);
    t->nent = 1;
    t->slot[t->ent[0].h & (t->nslot - 1)] = 1;
    return t;
}

static gm__mk_ent *gm__mk_find(const gm__markov_table *t, const int *s, int len) {
    const uint64_t h = gm__mk_hash(s, len);
    size_t i = (size_t)h & (t->nslot - 1);
    for (;; i = (i + 1) & (t->nslot - 1)) {
        const uint32_t k = t->slot[i];
        gm__mk_ent *e;
        if (!k) return NULL;
        e = &t->ent[k - 1];
        if (e->h == h && e->len == len && (len == 0 || memcmp(t->pool + e->off, s, (size_t)len * sizeof(int)) == 0))
            return e;
    }
}

static int gm__mk_rehash(gm__markov_table *t, size_t nslot) {
    uint32_t *sl = GM__HMM_CAST(uint32_t *, gm__hmm_alloc(nslot, sizeof(uint32_t)));
    size_t k;
    if (!sl) return -1;
    memset(sl, 0, nslot * sizeof(uint32_t));
    for (k = 0; k < t->nent; k++) {
        size_t i = (size_t)t->ent[k].h & (nslot - 1);
        while (sl[i]) i = (i + 1) & (nslot - 1);
        sl[i] = (uint32_t)(k + 1);
    }
    GENMOD_FREE(t->slot);
    t->slot = sl;
    t->nslot = nslot;
    return 0;
}

/* The entry of s, inserted (zero counts) if new; NULL if out of memory. *fresh: 1 if inserted. */
static gm__mk_ent *gm__mk_get(gm__markov_table *t, const int *s, int len, int *fresh) {
    gm__mk_ent *e = gm__mk_find(t, s, len);
    size_t i;
    *fresh = 0;
    if (e) return e;
    if (t->nent >= 0xFFFFFFF0u) return NULL;
    if (2 * (t->nent + 1) > t->nslot && gm__mk_rehash(t, t->nslot * 2) != 0) return NULL;
    if (t->nent == t->capent) {
        gm__mk_ent *ne = GM__HMM_CAST(gm__mk_ent *, GENMOD_REALLOC(t->ent, 2 * t->capent * sizeof(gm__mk_ent)));
        if (!ne) return NULL;
        t->ent = ne;
        t->capent *= 2;
    }
    while (t->npool + (size_t)len > t->cappool) {
        int *np = GM__HMM_CAST(int *, GENMOD_REALLOC(t->pool, 2 * t->cappool * sizeof(int)));
        if (!np) return NULL;
        t->pool = np;
        t->cappool *= 2;
    }
    e = &t->ent[t->nent];
    memset(e, 0, sizeof *e);
    e->h = gm__mk_hash(s, len);
    e->len = len;
    e->off = t->npool;
    memcpy(t->pool + t->npool, s, (size_t)len * sizeof(int));
    t->npool += (size_t)len;
    i = (size_t)e->h & (t->nslot - 1);
    while (t->slot[i]) i = (i + 1) & (t->nslot - 1);
    t->slot[i] = (uint32_t)(t->nent + 1);
    t->nent++;
    *fresh = 1;
    return e;
}

/* Adds c occurrences of the n-gram s (len >= 1) following its context s[0..len-2]. */
static int gm__mk_add(gm__markov_table *t, const int *s, int len, double c) {
    int fresh;
    gm__mk_ent *g = gm__mk_get(t, s, len, &fresh), *x;
    if (!g) return -1;
    g->count += c;
    x = gm__mk_get(t, s, len - 1, &fresh);   /* may move the entries: g is not used after this */
    if (!x) return -1;
    x->total += c;
    if (gm__mk_find(t, s, len)->count == c) x->distinct++;   /* the n-gram is new */
    return 0;
}

GMDEF gm_markov_config gm_markov_default_config(int alphabet, int order) {
    gm_markov_config c;
    memset(&c, 0, sizeof c);
    c.alphabet = alphabet;
    c.order = order;
    c.smoothing = GM_MARKOV_BACKOFF;
    c.alpha = 0.5f;
    c.strength = 0.0f;
    c.seed = 1;
    return c;
}

static int gm__mk_check_smoothing(int smoothing, float alpha, float strength, const char *who) {
    if (smoothing != GM_MARKOV_BACKOFF && smoothing != GM_MARKOV_ADDITIVE)
        return gm_fail("%s: config.smoothing = %d (GM_MARKOV_BACKOFF or GM_MARKOV_ADDITIVE)", who, smoothing);
    if (!(alpha >= 0) || alpha - alpha != 0) return gm_fail("%s: config.alpha = %g (must be finite and >= 0)", who, (double)alpha);
    if (!(strength >= 0) || strength - strength != 0)
        return gm_fail("%s: config.strength = %g (must be finite and >= 0)", who, (double)strength);
    return 0;
}

GMDEF int gm_markov_init(gm_markov *m, const gm_markov_config *cfg) {
    if (!m) return gm_fail("markov: model is NULL");
    memset(m, 0, sizeof *m);
    if (!cfg) return gm_fail("markov: config is NULL");
    if (cfg->alphabet < 1 || cfg->alphabet > (1 << 24)) return gm_fail("markov: config.alphabet = %d (allowed: 1..16777216)", cfg->alphabet);
    if (cfg->order < 0 || cfg->order > GM_MARKOV_MAX_ORDER)
        return gm_fail("markov: config.order = %d (allowed: 0..%d)", cfg->order, GM_MARKOV_MAX_ORDER);
    if (gm__mk_check_smoothing(cfg->smoothing, cfg->alpha, cfg->strength, "markov") != 0) return -1;
    m->cfg = *cfg;
    gm_rng_seed(&m->rng, cfg->seed);
    m->table = gm__mk_table_new();
    if (!m->table) return gm_fail("markov: out of memory");
    return 0;
}

GMDEF void gm_markov_free(gm_markov *m) {
    if (!m) return;
    gm__mk_table_free(m->table);
    m->table = NULL;
}

static int gm__mk_ready(const gm_markov *m, const char *who) {
    if (!m || !m->table) return gm_fail("%s: the model is not initialized (gm_markov_init)", who);
    return 0;
}

GMDEF int gm_markov_train(gm_markov *m, const gm_seqs *d) {
    size_t total, pos = 0;
    int i, t, k;
    if (gm__mk_ready(m, "gm_markov_train") != 0) return -1;
    if (gm__seqs_check(d, "gm_markov_train", m->cfg.alphabet, 0, &total) != 0) return -1;
    for (i = 0; i < d->n; i++) {
        const int *s = d->sym + pos;
        for (t = 0; t < d->len[i]; t++) {
            const int kmax = t < m->cfg.order ? t : m->cfg.order;
            for (k = 0; k <= kmax; k++)
                if (gm__mk_add(m->table, s + t - k, k + 1, 1.0) != 0)
                    return gm_fail("gm_markov_train: out of memory (%lu n-grams so far)", (unsigned long)m->table->nent);
        }
        pos += (size_t)d->len[i];
    }
    m->count += (double)total;
    m->step++;
    return 0;
}

static double gm__mk_count(const gm__markov_table *t, const int *s, int len) {
    const gm__mk_ent *e = gm__mk_find(t, s, len);
    return e ? e->count : 0.0;
}

/* P(s[h] | s[h-kmax .. h-1]) with kmax = min(order, h): s holds the history and then the symbol. */
static double gm__mk_p(const gm_markov *m, const int *s, int h) {
    const gm__markov_table *t = m->table;
    const double K = m->cfg.alphabet, a = m->cfg.alpha;
    const int kmax = h < m->cfg.order ? h : m->cfg.order;
    const gm__mk_ent *c;
    double p, den;
    int k;
    if (m->cfg.smoothing == GM_MARKOV_ADDITIVE) {
        c = gm__mk_find(t, s + h - kmax, kmax);
        den = (c ? c->total : 0.0) + a * K;
        return den > 0 ? (gm__mk_count(t, s + h - kmax, kmax + 1) + a) / den : 1.0 / K;
    }
    den = t->ent[0].total + a * K;
    p = den > 0 ? (gm__mk_count(t, s + h, 1) + a) / den : 1.0 / K;
    for (k = 1; k <= kmax; k++) {
        double str;
        c = gm__mk_find(t, s + h - k, k);
        if (!c || c->total == 0) break;   /* no longer context was seen either */
        str = m->cfg.strength > 0 ? m->cfg.strength : (double)c->distinct;
        p = (gm__mk_count(t, s + h - k, k + 1) + str * p) / (c->total + str);
    }
    return p;
}

/* The whole next-symbol distribution after the history s[0..h-1]; s needs room for s[h]. */
static void gm__mk_dist(const gm_markov *m, int *s, int h, double *p) {
    int x;
    for (x = 0; x < m->cfg.alphabet; x++) {
        s[h] = x;
        p[x] = gm__mk_p(m, s, h);
    }
}

GMDEF int gm_markov_next(const gm_markov *m, const int *ctx, int nctx, float *probs) {
    int buf[GM_MARKOV_MAX_ORDER + 1], h, i;
    double *p;
    if (gm__mk_ready(m, "gm_markov_next") != 0) return -1;
    if (!probs || nctx < 0 || (nctx > 0 && !ctx)) return gm_fail("gm_markov_next: NULL output or bad context (nctx = %d)", nctx);
    h = nctx < m->cfg.order ? nctx : m->cfg.order;
    for (i = 0; i < h; i++) {
        buf[i] = ctx[nctx - h + i];
        if (buf[i] < 0 || buf[i] >= m->cfg.alphabet)
            return gm_fail("gm_markov_next: context symbol %d is %d, outside the alphabet 0..%d", nctx - h + i, buf[i],
                           m->cfg.alphabet - 1);
    }
    p = GM__HMM_CAST(double *, gm__hmm_alloc((size_t)m->cfg.alphabet, sizeof(double)));
    if (!p) return gm_fail("gm_markov_next: out of memory");
    gm__mk_dist(m, buf, h, p);
    for (i = 0; i < m->cfg.alphabet; i++) probs[i] = (float)p[i];
    GENMOD_FREE(p);
    return 0;
}

typedef struct gm__mk_lp {
    const gm_markov *m;
    const gm_seqs *d;
    const size_t *off;
    const int *first;
    double *ll;
} gm__mk_lp;

static void gm__mk_lp_task(void *ctx, int c) {
    gm__mk_lp *r = GM__HMM_CAST(gm__mk_lp *, ctx);
    int i, t;
    for (i = r->first[c]; i < r->first[c + 1]; i++) {
        const int *s = r->d->sym + r->off[i];
        double ll = 0;
        for (t = 0; t < r->d->len[i]; t++) ll += log(gm__mk_p(r->m, s, t));
        r->ll[i] = ll;
    }
}

GMDEF int gm_markov_log_prob(const gm_markov *m, const gm_seqs *d, double *per_seq, double *total) {
    gm__mk_lp r;
    size_t nobs, *off;
    int first[GM__HMM_CHUNKS + 1], nc;
    double *ll;
    if (gm__mk_ready(m, "gm_markov_log_prob") != 0) return -1;
    if (gm__seqs_check(d, "gm_markov_log_prob", m->cfg.alphabet, 0, &nobs) != 0) return -1;
    off = gm__seqs_offsets(d);
    ll = per_seq ? per_seq : GM__HMM_CAST(double *, gm__hmm_alloc((size_t)d->n, sizeof(double)));
    if (!off || !ll) {
        GENMOD_FREE(off);
        if (!per_seq) GENMOD_FREE(ll);
        return gm_fail("gm_markov_log_prob: out of memory");
    }
    nc = gm__seqs_chunks(d, off, first);
    r.m = m; r.d = d; r.off = off; r.first = first; r.ll = ll;
    gm_parallel_for(nc, gm__mk_lp_task, &r);
    if (total) *total = gm__hmm_sum_ll(ll, d->n);
    GENMOD_FREE(off);
    if (!per_seq) GENMOD_FREE(ll);
    return 0;
}

/* Draws from p^(1/T) (T > 0) or takes the first most probable symbol (T = 0). */
static int gm__mk_pick(gm_rng *r, double *p, int n, double T) {
    double mx = 0, s = 0;
    int i, arg = 0;
    for (i = 0; i < n; i++)
        if (p[i] > mx) { mx = p[i]; arg = i; }
    if (T == 0 || mx == 0) return arg;
    for (i = 0; i < n; i++) {
        p[i] = p[i] > 0 ? exp(log(p[i] / mx) / T) : 0.0;   /* relative to the largest: no overflow */
        s += p[i];
    }
    return gm__hmm_draw(r, p, n, s);
}

GMDEF int gm_markov_continue(gm_markov *m, const int *prefix, int nprefix, int len, float temperature, int *out) {
    int buf[2 * GM_MARKOV_MAX_ORDER + 2], h, i;
    double *p;
    const int n = m ? m->cfg.order : 0;
    if (gm__mk_ready(m, "gm_markov_continue") != 0) return -1;
    if (len < 0 || nprefix < 0 || (len > 0 && !out) || (nprefix > 0 && !prefix))
        return gm_fail("gm_markov_continue: bad arguments (len %d, nprefix %d, or a NULL array)", len, nprefix);
    if (!(temperature >= 0) || temperature - temperature != 0)
        return gm_fail("gm_markov_continue: temperature %g (must be finite and >= 0)", (double)temperature);
    h = nprefix < n ? nprefix : n;
    for (i = 0; i < h; i++) {
        buf[i] = prefix[nprefix - h + i];
        if (buf[i] < 0 || buf[i] >= m->cfg.alphabet)
            return gm_fail("gm_markov_continue: prefix symbol %d is %d, outside the alphabet 0..%d", nprefix - h + i, buf[i],
                           m->cfg.alphabet - 1);
    }
    p = GM__HMM_CAST(double *, gm__hmm_alloc((size_t)m->cfg.alphabet, sizeof(double)));
    if (!p) return gm_fail("gm_markov_continue: out of memory");
    for (i = 0; i < len; i++) {
        int x;
        if (h > n) {   /* keep only the last n symbols */
            memmove(buf, buf + h - n, (size_t)n * sizeof(int));
            h = n;
        }
        gm__mk_dist(m, buf, h, p);
        x = gm__mk_pick(&m->rng, p, m->cfg.alphabet, temperature);
        out[i] = x;
        buf[h++] = x;
    }
    GENMOD_FREE(p);
    return 0;
}

GMDEF int gm_markov_sample(gm_markov *m, int n, int len, float temperature, int *out) {
    int i;
    if (gm__mk_ready(m, "gm_markov_sample") != 0) return -1;
    if (n < 0 || len < 0 || (n > 0 && len > 0 && !out)) return gm_fail("gm_markov_sample: n = %d, len = %d, out %s", n, len, out ? "set" : "NULL");
    for (i = 0; i < n; i++)
        if (gm_markov_continue(m, NULL, 0, len, temperature, out + (size_t)i * len) != 0) return -1;
    return 0;
}

/* ---- Markov checkpoints: the n-grams of each length L = 1..n+1 as "ngrams.L" (m_L x L symbols)
   and "counts.L" (m_L x 2: the count is c0 * 2^24 + c1, both exact in float). ---- */
static void gm__mk_arch(const gm_markov *m, char *buf, size_t size) {
    snprintf(buf, size, "order=%d alphabet=%d", m->cfg.order, m->cfg.alphabet);
}

static int gm__mk_layout(gm_params *p, const long *sizes, int order, int *vg, int *vc) {
    int L, sh[2];
    char name[32];
    for (L = 1; L <= order + 1; L++) {
        vg[L] = vc[L] = -1;
        if (sizes[L] == 0) continue;
        sh[0] = (int)sizes[L];
        sh[1] = L;
        snprintf(name, sizeof name, "ngrams.%d", L);
        if ((vg[L] = gm_params_add(p, name, 2, sh)) < 0) return -1;
        sh[1] = 2;
        snprintf(name, sizeof name, "counts.%d", L);
        if ((vc[L] = gm_params_add(p, name, 2, sh)) < 0) return -1;
    }
    return 0;
}

GMDEF int gm_markov_save(const gm_markov *m, const char *path) {
    const gm__markov_table *t;
    long sizes[GM_MARKOV_MAX_ORDER + 2], fill[GM_MARKOV_MAX_ORDER + 2];
    int vg[GM_MARKOV_MAX_ORDER + 2], vc[GM_MARKOV_MAX_ORDER + 2], L, i, rc;
    char arch[64], list[GM_META_VALUE_MAX];
    size_t k, len = 0;
    gm_params p;
    gm_meta extra;
    gm_model_part part;
    if (gm__mk_ready(m, "gm_markov_save") != 0) return -1;
    t = m->table;
    memset(sizes, 0, sizeof sizes);
    memset(fill, 0, sizeof fill);
    for (k = 1; k < t->nent; k++)
        if (t->ent[k].count > 0) sizes[t->ent[k].len]++;
    for (L = 1; L <= m->cfg.order + 1; L++)
        if (sizes[L] > 2147483647L) return gm_fail("gm_markov_save: %ld n-grams of length %d (at most 2^31 - 1)", sizes[L], L);
    memset(&p, 0, sizeof p);
    if (gm__mk_layout(&p, sizes, m->cfg.order, vg, vc) != 0) { gm_params_free(&p); return -1; }
    for (k = 1; k < t->nent; k++) {   /* insertion order: the file is the same for the same data */
        const gm__mk_ent *e = &t->ent[k];
        float *g, *c;
        if (!(e->count > 0)) continue;
        if (e->count >= 281474976710656.0) { gm_params_free(&p); return gm_fail("gm_markov_save: a count exceeds 2^48"); }
        g = gm_params_data(&p, vg[e->len]) + (size_t)fill[e->len] * e->len;
        c = gm_params_data(&p, vc[e->len]) + (size_t)fill[e->len] * 2;
        for (i = 0; i < e->len; i++) g[i] = (float)t->pool[e->off + (size_t)i];
        c[0] = (float)floor(e->count / 16777216.0);
        c[1] = (float)(e->count - 16777216.0 * floor(e->count / 16777216.0));
        fill[e->len]++;
    }
    for (L = 1; L <= m->cfg.order + 1; L++) len += (size_t)snprintf(list + len, sizeof list - len, L > 1 ? ",%ld" : "%ld", sizes[L]);
    memset(&extra, 0, sizeof extra);
    gm_meta_set(&extra, "markov.sizes", list);
    gm_meta_set(&extra, "markov.smoothing", m->cfg.smoothing == GM_MARKOV_ADDITIVE ? "additive" : "backoff");
    gm_meta_setf(&extra, "markov.alpha", "%.9g", (double)m->cfg.alpha);
    gm_meta_setf(&extra, "markov.strength", "%.9g", (double)m->cfg.strength);
    gm__mk_arch(m, arch, sizeof arch);
    part.name = "";
    part.params = &p;
    part.opt = NULL;
    rc = gm_model_save(path, "markov", arch, m->step, &part, 1, &extra);
    gm_params_free(&p);
    return rc;
}

/* "m1,m2,...,m_{n+1}" -> sizes[1..n+1]; 0 or -1. */
static int gm__mk_parse_sizes(const char *s, int order, long *sizes) {
    int L;
    for (L = 1; L <= order + 1; L++) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 2147483647L) return -1;
        sizes[L] = v;
        s = end;
        if (L <= order) {
            if (*s != ',') return -1;
            s++;
        }
    }
    return *s ? -1 : 0;
}

/* Rebuilds a table from loaded arrays, checking every symbol and count; NULL after gm_fail. */
static gm__markov_table *gm__mk_rebuild(const gm_markov *m, gm_params *p, const long *sizes, const int *vg, const int *vc,
                                        const char *path) {
    gm__markov_table *t = gm__mk_table_new();
    int L, i, sym[GM_MARKOV_MAX_ORDER + 1];
    long r;
    if (!t) { gm_fail("markov: %s: out of memory", path); return NULL; }
    for (L = 1; L <= m->cfg.order + 1; L++)
        for (r = 0; r < sizes[L]; r++) {
            const float *g = gm_params_data(p, vg[L]) + (size_t)r * L, *c = gm_params_data(p, vc[L]) + (size_t)r * 2;
            double cnt;
            for (i = 0; i < L; i++) {
                if (!(g[i] >= 0 && g[i] < (float)m->cfg.alphabet && g[i] == floor(g[i]))) {
                    gm_fail("markov: %s: n-gram %ld of length %d holds %g, not a symbol of the alphabet 0..%d", path, r, L,
                            (double)g[i], m->cfg.alphabet - 1);
                    gm__mk_table_free(t);
                    return NULL;
                }
                sym[i] = (int)g[i];
            }
            if (!(c[0] >= 0 && c[0] < 16777216.0f && c[0] == floor(c[0]) && c[1] >= 0 && c[1] < 16777216.0f &&
                  c[1] == floor(c[1])) || (cnt = (double)c[0] * 16777216.0 + c[1]) <= 0) {
                gm_fail("markov: %s: n-gram %ld of length %d has a bad count (%g, %g)", path, r, L, (double)c[0], (double)c[1]);
                gm__mk_table_free(t);
                return NULL;
            }
            if (gm__mk_find(t, sym, L) && gm__mk_find(t, sym, L)->count > 0) {
                gm_fail("markov: %s: n-gram %ld of length %d appears twice", path, r, L);
                gm__mk_table_free(t);
                return NULL;
            }
            if (gm__mk_add(t, sym, L, cnt) != 0) {
                gm_fail("markov: %s: out of memory", path);
                gm__mk_table_free(t);
                return NULL;
            }
        }
    return t;
}

GMDEF int gm_markov_load(gm_markov *m, const char *path) {
    gm_meta meta;
    gm_params p;
    gm_model_part part;
    gm__markov_table *t = NULL;
    long sizes[GM_MARKOV_MAX_ORDER + 2], step = 0;
    int vg[GM_MARKOV_MAX_ORDER + 2], vc[GM_MARKOV_MAX_ORDER + 2], smoothing, rc = -1;
    const char *s, *sm, *al, *stv;
    char arch[64], *end;
    float alpha = 0, strength = 0;
    double cnt = 0;
    size_t k;
    if (gm__mk_ready(m, "gm_markov_load") != 0) return -1;
    if (!path) return gm_fail("gm_markov_load: path is NULL");
    gm__mk_arch(m, arch, sizeof arch);
    memset(&p, 0, sizeof p);
    part.name = "";
    part.params = &p;
    part.opt = NULL;
    if (gm_checkpoint_read_meta(path, &meta) != 0) return -1;
    s = gm_meta_get(&meta, "markov.sizes");
    if (!s || gm__mk_parse_sizes(s, m->cfg.order, sizes) != 0) {
        /* another model, another architecture or no sizes: the core's load names what it found */
        if (gm_model_load(path, "markov", arch, NULL, &part, 1, NULL) != 0) return -1;
        return gm_fail("markov: %s: bad or missing 'markov.sizes' metadata", path);
    }
    sm = gm_meta_get(&meta, "markov.smoothing");
    al = gm_meta_get(&meta, "markov.alpha");
    stv = gm_meta_get(&meta, "markov.strength");
    smoothing = sm && !strcmp(sm, "additive") ? GM_MARKOV_ADDITIVE : sm && !strcmp(sm, "backoff") ? GM_MARKOV_BACKOFF : -1;
    if (al) alpha = strtof(al, &end);
    if (stv) strength = strtof(stv, &end);
    if (!al || !stv || gm__mk_check_smoothing(smoothing, alpha, strength, path) != 0) {
        if (gm_model_load(path, "markov", arch, NULL, &part, 1, NULL) != 0) return -1;
        return gm_fail("markov: %s: bad or missing smoothing metadata (markov.smoothing, .alpha, .strength)", path);
    }
    if (gm__mk_layout(&p, sizes, m->cfg.order, vg, vc) != 0) goto done;
    if (gm_model_load(path, "markov", arch, &step, &part, 1, NULL) != 0) goto done;
    if (!(t = gm__mk_rebuild(m, &p, sizes, vg, vc, path))) goto done;
    for (k = 1; k < t->nent; k++)
        if (t->ent[k].len == 1) cnt += t->ent[k].count;
    gm__mk_table_free(m->table);
    m->table = t;
    m->count = cnt;
    m->step = step;
    m->cfg.smoothing = smoothing;
    m->cfg.alpha = alpha;
    m->cfg.strength = strength;
    rc = 0;
done:
    gm_params_free(&p);
    return rc;
}

#endif /* GENMOD_HMM_IMPLEMENTATION_INCLUDED */
#endif /* GENMOD_HMM_IMPLEMENTATION */

/*
MIT License

Copyright (c) 2025 the genmod authors

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
*/
