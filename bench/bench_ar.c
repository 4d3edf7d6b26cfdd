/* bench_ar.c: autoregressive models (genmod_ar.h) against the PyTorch references, in the same run.
 * Training: the Gated PixelCNN of 8 layers of 32 channels (the PyTorch reference's GatedPixelCNN
 * class, layer for layer) and the plain PixelCNN (ours: 64 channels, 5 residual blocks; the
 * reference's small PixelCNN: 7x7 mask A, five 3x3 mask-B layers of 64 channels; different
 * architectures, so compare their MFU rather than their samples/s), batch 64 of binary 28x28
 * images, Adam, at 1 and 2 threads. Each round runs ours and the reference back to back (odd
 * rounds ours first, even rounds the reference first; 2 threads with OMP_WAIT_POLICY=PASSIVE,
 * the reference's best 2-thread setting), takes the ratio inside the round, and
 * probes the FMA peak for the MFU; the table shows medians over rounds. MFU: the FLOPs the graph
 * counted (multiply-adds of the matmuls and convolutions) over the step time and the probed peak;
 * the reference's gated MFU uses the same FLOPs per sample (the same layers).
 * Sampling: one 28x28 image from a Gated PixelCNN and a Row LSTM (4 layers of 32), naive (the
 * whole network per pixel) against cached, same seed, at 1 thread; the same image is checked.
 * Appends JSON lines to out/bench.jsonl.
 *   cc -O2 -std=c99 -I. bench/bench_ar.c -o build/bench_ar -lm -lpthread
 *   ./build/bench_ar [rounds=3] [steps=3]    (GM_BASELINES: the references' directory, PYTHON) */
#include "bench_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#define GENMOD_IMPLEMENTATION
#include "genmod.h"
#define GENMOD_AR_IMPLEMENTATION
#include "genmod_ar.h"

#define NB 64

static void die(void) { fprintf(stderr, "bench_ar: %s\n", gm_last_error()); exit(1); }

/* Seconds per training step (median of `steps` after one warm-up step); *flops: FLOPs per step. */
static double time_ours(int gated, int steps, const float *x, double *flops) {
    gm_pixelcnn m;
    gm_pixelcnn_config c = gated ? gm_pixelcnn_gated_config(28, 28, 2) : gm_pixelcnn_default_config(28, 28, 2);
    double t[64], f0;
    int s;
    if (gm_pixelcnn_init(&m, &c) != 0 || gm_pixelcnn_train_step(&m, x, NULL, NB, NULL) != 0) die();
    f0 = gm_graph_flops(m.graph);
    for (s = 0; s < steps; s++) {
        t[s] = gm_bench_now();
        if (gm_pixelcnn_train_step(&m, x, NULL, NB, NULL) != 0) die();
        t[s] = gm_bench_now() - t[s];
    }
    *flops = (gm_graph_flops(m.graph) - f0) / steps;
    gm_pixelcnn_free(&m);
    return gm_bench_median(t, steps);
}

/* The reference's samples/s at `threads` (negative if unavailable). gated: its GatedPixelCNN class,
   timed here (one warm-up step, then `steps` steps); plain: torch_pixelcnn.py's own harness. */
static double time_torch(int gated, int threads, int steps) {
    const char *base = getenv("GM_BASELINES"), *py = getenv("PYTHON");
    const char *wait = threads > 1 ? "OMP_WAIT_POLICY=PASSIVE " : "";   /* PyTorch's best 2-thread setting */
    char cmd[2048], line[4096];
    double v = -1;
    FILE *p;
    if (!base) base = "../shared/baselines";
    if (!py) py = "/usr/bin/python3";
    if (gated)
        snprintf(cmd, sizeof cmd,
                 "%sOMP_NUM_THREADS=%d %s -c 'import sys, time, importlib.util\n"
                 "sys.argv = [\"ref\", \"--threads\", \"%d\"]\n"
                 "spec = importlib.util.spec_from_file_location(\"ref\", \"%s/quality/pixelcnn_mnist.py\")\n"
                 "ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)\n"
                 "import torch\n"
                 "torch.manual_seed(0); m = ref.GatedPixelCNN(8, 32, 2); opt = torch.optim.Adam(m.parameters(), 1e-3)\n"
                 "x = (torch.rand(%d, 1, 28, 28) < 0.13).float()\n"
                 "def step():\n"
                 "    opt.zero_grad(); loss = ref.nll_sum(m(x), x, 2) / %d; loss.backward(); opt.step()\n"
                 "step(); ts = []\n"
                 "for i in range(%d):\n"
                 "    t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)\n"
                 "ts.sort(); print(\"SPS\", %d / ts[len(ts) // 2])' 2>/dev/null",
                 wait, threads, py, threads, base, NB, NB, steps, NB);
    else
        snprintf(cmd, sizeof cmd, "%s%s %s/torch_pixelcnn.py --threads %d --windows 1 --window-secs 2 --warmup-secs 2 2>/dev/null",
                 wait, py, base, threads);
    if (!(p = popen(cmd, "r"))) return -1;
    while (fgets(line, sizeof line, p)) {
        const char *q = strstr(line, "\"samples_per_s_median\":");
        if (gated && !strncmp(line, "SPS ", 4)) v = atof(line + 4);
        if (!gated && !strncmp(line, "JSON ", 5) && q) v = atof(q + strlen("\"samples_per_s_median\":"));
    }
    pclose(p);
    return v;
}

/* Seconds for one 28x28 image, naive and cached, from the same random state; *same: equal images. */
static void time_sampling(int rowlstm, double *naive, double *cached, int *same) {
    gm_pixelcnn m;
    gm_pixelcnn_config c = rowlstm ? gm_pixelcnn_rowlstm_config(28, 28, 2) : gm_pixelcnn_gated_config(28, 28, 2);
    gm_rng saved;
    static float a[784], b[784];
    if (gm_pixelcnn_init(&m, &c) != 0) die();
    saved = m.rng;
    m.cfg.naive_sampling = 1;
    *naive = gm_bench_now();
    if (gm_pixelcnn_sample(&m, NULL, 1, a) != 0) die();
    *naive = gm_bench_now() - *naive;
    m.rng = saved;
    m.cfg.naive_sampling = 0;
    *cached = gm_bench_now();
    if (gm_pixelcnn_sample(&m, NULL, 1, b) != 0) die();
    *cached = gm_bench_now() - *cached;
    *same = memcmp(a, b, sizeof a) == 0;
    gm_pixelcnn_free(&m);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 3, steps = argc > 2 ? atoi(argv[2]) : 3, r, th, k, i;
    static float x[NB * 784];
    double ours[2][2][16], ref[2][2][16], ratio[2][2][16], mfu[2][2][16], rmfu[2][2][16];
    const char *names[2] = {"pixelcnn_plain_64x5_b64", "pixelcnn_gated_8x32_b64"};
    FILE *jl;
    gm_rng rng;
    if (rounds < 1 || rounds > 16) rounds = 3;
    if (steps < 1 || steps > 64) steps = 3;
    gm_flush_denormals();   /* FTZ/DAZ, as the examples run */
    gm_rng_seed(&rng, 1);
    for (i = 0; i < NB * 784; i++) x[i] = gm_rng_uniform(&rng) < 0.13f ? 1.0f : 0.0f;
    mkdir("out", 0755);
    jl = fopen("out/bench.jsonl", "a");
    for (r = 0; r < rounds; r++)
        for (th = 1; th <= 2; th++) {
            double peak;
            gm_set_threads(th);
            peak = gm_bench_fma_peak(th, 0.2);
            for (k = 0; k < 2; k++) {
                double t = 0, flops = 0, sps;
                if (r % 2 == 0) { t = time_ours(k, steps, x, &flops); sps = time_torch(k, th, steps); }
                else { sps = time_torch(k, th, steps); t = time_ours(k, steps, x, &flops); }
                ours[k][th - 1][r] = NB / t;
                ref[k][th - 1][r] = sps;
                ratio[k][th - 1][r] = sps > 0 ? NB / t / sps : -1;
                mfu[k][th - 1][r] = flops / t / (peak * 1e9);
                rmfu[k][th - 1][r] = k == 1 && sps > 0 ? flops / NB * sps / (peak * 1e9) : -1;
                fprintf(stderr, "round %d, %d thread(s), %s: ours %.1f samples/s (MFU %.1f%%), reference %.1f samples/s\n",
                        r + 1, th, names[k], NB / t, 100 * mfu[k][th - 1][r], sps);
            }
        }
    printf("%-26s %7s %12s %12s %8s %8s %10s\n", "training step", "threads", "ours samp/s", "torch samp/s", "ratio", "MFU", "torch MFU");
    for (k = 0; k < 2; k++)
        for (th = 1; th <= 2; th++) {
            double o = gm_bench_median(ours[k][th - 1], rounds), t = gm_bench_median(ref[k][th - 1], rounds);
            double q = gm_bench_median(ratio[k][th - 1], rounds), u = gm_bench_median(mfu[k][th - 1], rounds);
            double v = gm_bench_median(rmfu[k][th - 1], rounds);
            printf("%-26s %7d %12.1f %12.1f %8.2f %7.1f%% ", names[k], th, o, t, q, 100 * u);
            if (v > 0) printf("%9.1f%%\n", 100 * v); else printf("%10s\n", "-");   /* plain: other layers */
            if (jl) fprintf(jl, "{\"bench\":\"ar\",\"step\":\"%s\",\"threads\":%d,\"samples_per_s\":%.2f,\"ref_name\":\"pytorch\","
                            "\"ref_value\":%.2f,\"ratio_to_ref\":%.3f,\"mfu\":%.4f,\"ref_mfu\":%.4f,\"rounds\":%d}\n",
                            names[k], th, o, t, q, u, v, rounds);
        }
    gm_set_threads(1);
    for (k = 0; k < 2; k++) {
        double tn, tc;
        int same;
        time_sampling(k, &tn, &tc, &same);
        printf("sampling one 28x28 image, %s, 1 thread: naive %.2f s, cached %.3f s, %.1fx, %s image\n",
               k ? "Row LSTM 4x32" : "Gated PixelCNN 8x32", tn, tc, tn / tc, same ? "the same" : "NOT the same");
        if (jl) fprintf(jl, "{\"bench\":\"ar\",\"step\":\"sample_28x28_%s\",\"threads\":1,\"naive_s\":%.3f,\"cached_s\":%.4f,"
                        "\"speedup\":%.2f,\"same_image\":%d}\n", k ? "rowlstm" : "gated", tn, tc, tn / tc, same);
    }
    if (jl) fclose(jl);
    return 0;
}
