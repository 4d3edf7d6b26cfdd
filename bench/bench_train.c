/* bench_train.c: one training step of a dense MLP (784-784-256-128-256-784, batch 100, ReLU,
 * sigmoid output, MSE, Adam) at 1 and 2 threads, reported as samples/s and model FLOPs utilization
 * (MFU = matmul FLOPs per second / the FMA peak measured for the same thread count).
 *
 * This machine's speed drifts by up to 2x within seconds, so every round measures the FMA probe and
 * the training step back to back, each ratio is taken inside its round, and the median over rounds
 * is reported. Appends JSON lines to out/bench.jsonl.
 *   cc -O2 -I. bench/bench_train.c -o build/bench_train -lm -lpthread && ./build/bench_train */
#include "bench_util.h"
#include <stdio.h>
#define GENMOD_IMPLEMENTATION
#include "genmod.h"

#define ROUNDS 7
#define BATCH 100
#define NLAYERS 5
static const int widths[NLAYERS + 1] = {784, 784, 256, 128, 256, 784};

typedef struct mlp { gm_params params; gm_linear layer[NLAYERS]; gm_optim opt; } mlp;

static void mlp_init(mlp *m) {
    gm_rng rng;
    char name[16];
    int i;
    memset(m, 0, sizeof *m);
    gm_rng_seed(&rng, 1);
    for (i = 0; i < NLAYERS; i++) {
        snprintf(name, sizeof name, "l%d", i);
        gm_linear_init(&m->layer[i], &m->params, name, widths[i], widths[i + 1], GM_INIT_TORCH, &rng);
    }
    m->opt = gm_adam(1e-3f, 0.9f, 0.999f);
}

/* One step on batch x (BATCH, 784): reconstruct x. Returns the loss. */
static float mlp_step(mlp *m, gm_graph *g, const float *x) {
    gm_tensor *in, *h, *loss;
    int i;
    gm_graph_reset(g);
    in = gm_input(g, x, BATCH, 784, 0, 0);
    h = in;
    for (i = 0; i < NLAYERS; i++) {
        h = gm_linear_forward(g, &m->layer[i], h);
        h = i + 1 < NLAYERS ? gm_relu(g, h) : gm_sigmoid(g, h);
    }
    loss = gm_mse(g, h, in);
    if (gm_backward(g, loss) != 0 || gm_optim_step(&m->opt, &m->params) != 0) {
        fprintf(stderr, "bench_train: %s\n", gm_last_error());
        exit(1);
    }
    return loss->data[0];
}

/* Steps per second over at least `seconds`; also the model FLOPs of one step. */
static double time_steps(mlp *m, gm_graph *g, const float *x, double seconds, double *flops_per_step) {
    double t0 = gm_bench_now(), f0 = gm_graph_flops(g), dt;
    long n = 0;
    do { mlp_step(m, g, x); n++; dt = gm_bench_now() - t0; } while (dt < seconds || n < 3);
    *flops_per_step = (gm_graph_flops(g) - f0) / (double)n;
    return (double)n / dt;
}

int main(void) {
    static float x[BATCH * 784];
    double mfu[2][ROUNDS], sps[2][ROUNDS], peak[2][ROUNDS], speedup[ROUNDS], probe_ratio[ROUNDS], flops = 0;
    const char *tname[2] = {"t1", "t2"};
    mlp m;
    gm_graph *g = gm_graph_new(1);
    gm_rng rng;
    int r, t;
    FILE *jsonl;
    gm_flush_denormals();
    gm_rng_seed(&rng, 7);
    gm_init_uniform(&rng, x, BATCH * 784, 0.0f, 1.0f);
    mlp_init(&m);
    for (t = 0; t < 20; t++) mlp_step(&m, g, x);   /* warm up: arena sized, pool started */
    printf("dense MLP 784-784-256-128-256-784, batch %d, Adam; kernels: %s\n", BATCH, gm_simd_name(gm_simd_path()));
    for (r = 0; r < ROUNDS; r++) {
        for (t = 0; t < 2; t++) {
            gm_set_threads(t + 1);
            peak[t][r] = gm_bench_fma_peak(t + 1, 0.2);
            sps[t][r] = time_steps(&m, g, x, 0.4, &flops) * BATCH;
            mfu[t][r] = sps[t][r] / BATCH * flops / 1e9 / peak[t][r];
        }
        speedup[r] = sps[1][r] / sps[0][r];
        probe_ratio[r] = peak[1][r] / peak[0][r];
    }
    printf("  model GFLOP per step: %.3f; memory of one step: %.1f MiB (arena peak %.1f MiB)\n", flops / 1e9,
           (double)gm_graph_memory(g) / 1048576.0, (double)gm_graph_peak(g) / 1048576.0);
    jsonl = fopen("out/bench.jsonl", "a");
    for (t = 0; t < 2; t++) {
        double s = gm_bench_median(sps[t], ROUNDS), u = gm_bench_median(mfu[t], ROUNDS), p = gm_bench_median(peak[t], ROUNDS);
        printf("  %d thread%s: %8.0f samples/s  MFU %.1f%%  (probe peak %.0f GFLOP/s)\n", t + 1, t ? "s" : " ", s,
               100 * u, p);
        if (jsonl) {
            fprintf(jsonl, "{\"name\": \"mlp_train_samples_%s\", \"value\": %.1f, \"unit\": \"samples/s\"}\n", tname[t], s);
            fprintf(jsonl, "{\"name\": \"mlp_train_mfu_%s\", \"value\": %.4f, \"unit\": \"fraction\"}\n", tname[t], u);
        }
    }
    printf("  2-thread speed-up %.2fx; the FMA probe's own 2/1 ratio %.2fx; share of the probe's %.0f%%\n",
           gm_bench_median(speedup, ROUNDS), gm_bench_median(probe_ratio, ROUNDS),
           100 * gm_bench_median(speedup, ROUNDS) / gm_bench_median(probe_ratio, ROUNDS));
    if (jsonl) {
        fprintf(jsonl, "{\"name\": \"mlp_train_speedup_t2\", \"value\": %.3f, \"unit\": \"x\", \"ref_name\": \"fma_probe_t2_over_t1\", "
                "\"ref_value\": %.3f, \"ratio_to_ref\": %.3f}\n", gm_bench_median(speedup, ROUNDS),
                gm_bench_median(probe_ratio, ROUNDS), gm_bench_median(speedup, ROUNDS) / gm_bench_median(probe_ratio, ROUNDS));
        fclose(jsonl);
    }
    gm_graph_free(g);
    gm_optim_free(&m.opt);
    gm_params_free(&m.params);
    return 0;
}
