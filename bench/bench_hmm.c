/* bench_hmm.c: hidden Markov model throughput (genmod_hmm.h), in states x steps per second, for 16
 * and 64 states at 1 and 2 threads: the forward pass (log-likelihood), forward-backward
 * (posteriors), a whole Baum-Welch iteration (forward-backward, expected counts, M-step) and
 * Viterbi. Each figure is the median of several timed runs; with --scalar the plain C kernels are
 * measured as well (gm_simd_force), to show what the AVX2 versions gain. Discrete emissions over
 * 32 symbols; 16 sequences of 4,000 steps (one per task, so 2 threads can share them).
 * Appends JSON lines to out/bench.jsonl.
 *   gcc -O2 -std=c99 -I. bench/bench_hmm.c -o /tmp/bench_hmm -lm -lpthread
 *   make build/bench_hmm && ./build/bench_hmm [runs=5] [--scalar] */
#include "bench_util.h"
#include <stdio.h>
#include <sys/stat.h>
#define GENMOD_IMPLEMENTATION
#include "genmod.h"
#define GENMOD_HMM_IMPLEMENTATION
#include "genmod_hmm.h"

#define NSEQ 16
#define LEN 4000
#define K 32

enum { OP_FORWARD, OP_POSTERIOR, OP_TRAIN, OP_VITERBI, NOPS };
static const char *const op_name[NOPS] = {"forward", "forward_backward", "baum_welch", "viterbi"};

static double run_op(gm_hmm *m, const gm_seqs *d, int op, float *post, int *path) {
    double t0 = gm_bench_now(), ll;
    int rc = 0;
    switch (op) {
    case OP_FORWARD: rc = gm_hmm_log_prob(m, d, NULL, &ll); break;
    case OP_POSTERIOR: rc = gm_hmm_posterior(m, d, post, NULL); break;
    case OP_TRAIN: rc = gm_hmm_train_step(m, d, NULL); break;
    default: rc = gm_hmm_viterbi(m, d, path, NULL); break;
    }
    if (rc != 0) { fprintf(stderr, "bench_hmm: %s\n", gm_last_error()); exit(1); }
    return gm_bench_now() - t0;
}

int main(int argc, char **argv) {
    static const int states[2] = {16, 64};
    int runs = 5, scalar = 0, a, si, op, r, path_kind, len[NSEQ], *sym, *path;
    float *post;
    FILE *jsonl;
    (void)gm_bench_fma_peak;   /* bench_util.h's probe: not needed here */
    for (a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--scalar")) scalar = 1;
        else runs = atoi(argv[a]) > 0 && atoi(argv[a]) <= 64 ? atoi(argv[a]) : runs;
    }
    sym = (int *)malloc(sizeof(int) * NSEQ * LEN);
    path = (int *)malloc(sizeof(int) * NSEQ * LEN);
    post = (float *)malloc(sizeof(float) * NSEQ * LEN * 64);
    if (!sym || !path || !post) return 1;
    mkdir("out", 0777);
    jsonl = fopen("out/bench.jsonl", "a");
    printf("bench_hmm: %d sequences x %d steps, %d symbols; %d rounds, each timing 1 then 2 threads; kernels %s%s\n", NSEQ,
           LEN, K, runs, gm_simd_name(gm_simd_path()), scalar ? " and scalar" : "");
    printf("%-18s %6s %8s %18s %18s %12s\n", "op", "states", "kernels", "t1 states*steps/s", "t2 states*steps/s", "t2/t1 (med)");
    for (path_kind = 0; path_kind < (scalar ? 2 : 1); path_kind++) {
        const int simd = gm_simd_path();
        const char *kname = path_kind ? "scalar" : gm_simd_name(simd);
        if (path_kind == 1) gm_simd_force(GM_PATH_SCALAR);
        for (si = 0; si < 2; si++) {
            const int S = states[si];
            gm_hmm m;
            gm_hmm_config c = gm_hmm_default_config(S, GM_HMM_DISCRETE, K);
            gm_seqs d;
            c.seed = 3;
            if (gm_hmm_init(&m, &c) != 0) { fprintf(stderr, "bench_hmm: %s\n", gm_last_error()); return 1; }
            for (r = 0; r < NSEQ; r++) len[r] = LEN;
            if (gm_hmm_sample(&m, NSEQ, LEN, NULL, sym, NULL) != 0) return 1;
            d = gm_seqs_symbols(sym, len, NSEQ);
            for (op = 0; op < NOPS; op++) {
                double t1[64], t2[64], ratio[64], r1, r2, q;
                /* interleaved rounds: the machine's speed drifts, so the ratio is taken per round */
                for (r = 0; r < runs; r++) {
                    gm_set_threads(1);
                    if (r == 0) run_op(&m, &d, op, post, path);   /* warm-up */
                    t1[r] = run_op(&m, &d, op, post, path);
                    gm_set_threads(2);
                    if (r == 0) run_op(&m, &d, op, post, path);
                    t2[r] = run_op(&m, &d, op, post, path);
                    ratio[r] = t1[r] / t2[r];
                }
                r1 = (double)S * NSEQ * LEN / gm_bench_median(t1, runs);
                r2 = (double)S * NSEQ * LEN / gm_bench_median(t2, runs);
                q = gm_bench_median(ratio, runs);
                printf("%-18s %6d %8s %18.3g %18.3g %12.2f\n", op_name[op], S, kname, r1, r2, q);
                if (jsonl) {
                    fprintf(jsonl, "{\"name\": \"hmm_%s_s%d_t1%s\", \"value\": %.4g, \"unit\": \"states*steps/s\"}\n", op_name[op],
                            S, path_kind ? "_scalar" : "", r1);
                    fprintf(jsonl, "{\"name\": \"hmm_%s_s%d_t2%s\", \"value\": %.4g, \"unit\": \"states*steps/s\", "
                            "\"speedup_over_t1\": %.3f}\n", op_name[op], S, path_kind ? "_scalar" : "", r2, q);
                }
            }
            gm_hmm_free(&m);
        }
        gm_simd_force(simd);
    }
    gm_set_threads(0);
    if (jsonl) fclose(jsonl);
    free(sym); free(path); free(post);
    return 0;
}
