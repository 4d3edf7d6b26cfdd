/* bench_ebm.c: energy-based model throughput (genmod_ebm.h) at 1 and 2 threads: RBM updates per
 * second (784 visible, 500 hidden, batch 100; CD-1 and PCD-1) with their MFU against the probed
 * FMA peak, and deep EBM training steps: on 2-D data (MLP 2-64x2-1, batch 256, 40 Langevin steps)
 * and on 28x28 images (the conv energy of examples/ebm.c: 16 channels, batch 64, 20 Langevin
 * steps), their MFU from the matmul and conv FLOPs the graph counted. Each figure is the median of
 * several timed runs. Appends JSON lines to out/bench.jsonl.
 *   gcc -O2 -std=c99 -I. bench/bench_ebm.c -o /tmp/bench_ebm -lm -lpthread
 *   make build/bench_ebm && ./build/bench_ebm [runs=5] */
#include "bench_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#define GENMOD_IMPLEMENTATION
#include "genmod.h"
#define GENMOD_EBM_IMPLEMENTATION
#include "genmod_ebm.h"

#define V 784
#define H 500
#define B 100
#define STEPS 20

/* matmul FLOPs of one CD-1 / PCD-1 update: p(h|x), the reconstruction's E[v|h], the negative
   p(h|v) (PCD: plus its E[v|h]), and the two weight-gradient products, each 2 B V H */
static double rbm_flops(int pcd) { return (pcd ? 6.0 : 5.0) * 2.0 * B * V * H; }

static double time_rbm(int pcd, const float *x) {
    gm_rbm r;
    gm_rbm_config c = pcd ? gm_rbm_pcd_config(V, H) : gm_rbm_default_config(V, H);
    double t0;
    int s;
    if (gm_rbm_init(&r, &c) != 0) { fprintf(stderr, "bench_ebm: %s\n", gm_last_error()); exit(1); }
    gm_rbm_train_step(&r, x, NULL, B, NULL);   /* warm-up: scratch allocated */
    t0 = gm_bench_now();
    for (s = 0; s < STEPS; s++)
        if (gm_rbm_train_step(&r, x, NULL, B, NULL) != 0) { fprintf(stderr, "bench_ebm: %s\n", gm_last_error()); exit(1); }
    t0 = (gm_bench_now() - t0) / STEPS;
    gm_rbm_free(&r);
    return t0;
}

/* seconds per deep EBM step; *flops gets the FLOPs of one step. conv: the image energy on x
   (64 images of 784), else the MLP on xy (256 points). */
static double time_ebm(int conv, const float *x, double *flops) {
    gm_ebm m;
    gm_ebm_config c = conv ? gm_ebm_conv_config(1, 28, 28) : gm_ebm_default_config(2);
    double t0, f0;
    int s, n = conv ? 64 : 256, steps = conv ? 3 : 5;
    if (conv) { c.langevin_steps = 20; c.batch = 64; } else { c.hidden = 64; c.depth = 2; }
    if (gm_ebm_init(&m, &c) != 0) { fprintf(stderr, "bench_ebm: %s\n", gm_last_error()); exit(1); }
    gm_ebm_train_step(&m, x, NULL, n, NULL);
    f0 = gm_graph_flops(m.graph);
    t0 = gm_bench_now();
    for (s = 0; s < steps; s++)
        if (gm_ebm_train_step(&m, x, NULL, n, NULL) != 0) { fprintf(stderr, "bench_ebm: %s\n", gm_last_error()); exit(1); }
    t0 = (gm_bench_now() - t0) / steps;
    *flops = (gm_graph_flops(m.graph) - f0) / steps;
    gm_ebm_free(&m);
    return t0;
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 5, th, i, k;
    static float x[B * V], xy[256 * 2], img[64 * V];
    FILE *jl;
    gm_rng rng;
    if (runs < 1 || runs > 64) runs = 5;
    gm_rng_seed(&rng, 1);
    for (i = 0; i < B * V; i++) x[i] = gm_rng_uniform(&rng) < 0.13f ? 1.0f : 0.0f;
    gm_toy2d("8gaussians", 256, 1, -1, xy, NULL);
    for (i = 0; i < 64 * V; i++) img[i] = x[i] * 2 - 1;   /* sparse strokes in [-1, 1] */
    mkdir("out", 0755);
    jl = fopen("out/bench.jsonl", "a");
    printf("%-32s %7s %14s %10s %8s\n", "step", "threads", "updates/s", "samples/s", "MFU");
    for (th = 1; th <= 2; th++) {
        double peak, t[64];
        gm_set_threads(th);
        peak = gm_bench_fma_peak(th, 0.2);
        for (k = 0; k < 4; k++) {
            static const char *const names[4] = {"rbm_cd1_784x500_b100", "rbm_pcd1_784x500_b100", "ebm2d_64x2_b256_langevin40",
                                                 "ebm_conv16_28x28_b64_langevin20"};
            const char *name = names[k];
            double med, mfu, flops = 0;
            for (i = 0; i < runs; i++) t[i] = k < 2 ? time_rbm(k, x) : time_ebm(k == 3, k == 3 ? img : xy, &flops);
            med = gm_bench_median(t, runs);
            mfu = (k < 2 ? rbm_flops(k) : flops) / med / (peak * 1e9);
            printf("%-32s %7d %14.1f %10.0f %7.1f%%\n", name, th, 1.0 / med, (k < 2 ? B : k == 2 ? 256 : 64) / med, 100 * mfu);
            if (jl) fprintf(jl, "{\"bench\":\"ebm\",\"step\":\"%s\",\"threads\":%d,\"updates_per_s\":%.3f,\"mfu\":%.4f,\"peak_gflops\":%.1f}\n",
                            name, th, 1.0 / med, mfu, peak);
        }
    }
    if (jl) fclose(jl);
    return 0;
}
