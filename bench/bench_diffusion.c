/* bench_diffusion.c: the diffusion U-Net (genmod_diffusion.h, the PyTorch reference's network:
 * base 32, 28x28, unconditional) at 1 and 2 threads, next to the PyTorch reference run in the same
 * rounds:
 *   training   samples/s of Adam steps at batch 64 (the example's default) and at batch 128, with
 *              the EMA update, and MFU: the model FLOPs
 *              (gm_graph_flops of the steps; the reference counts the same conv/linear products,
 *              822.8 MFLOP per sample) over the FMA peak probed for that thread count just before
 *              and after the round's runs
 *   sampling   DDIM-50 images/s on a batch of 16 (50 network evaluations each, EMA weights);
 *              DDPM images/s is derived from it as 50/1000 of the DDIM-50 rate (both run one
 *              network evaluation per step on the same batch; the sampler's own arithmetic is
 *              negligible): timing 1000 evaluations per round would take minutes
 *   speed-up   ours at 2 threads / ours at 1 thread (batch 64) in the same round, against the FMA probe's
 *              2-thread / 1-thread ratio in that round
 * For each of ROUNDS rounds and each thread count: probe, then for each batch ours and the reference
 * back to back (odd rounds ours first, even rounds the reference first; the sampling runs with the
 * batch-64 runs), probe again; the ratios are taken
 * inside each round and the table shows medians over rounds. Our model is built once (its first
 * steps page-fault its arena in; they are not timed). The reference: ddpm_mnist.py's UNet imported
 * from $GM_BASELINES/quality (default ../shared/baselines), its Adam, EMA update and sampler, in a
 * separate python process per run (2 threads with OMP_WAIT_POLICY=PASSIVE, its best setting).
 * Appends JSON lines to out/bench.jsonl.
 *   make build/bench_diffusion && ./build/bench_diffusion [rounds=3] [steps=2]
 * Environment: GM_BASELINES, PYTHON (/usr/bin/python3); without torch the reference is skipped. */
#include "bench_util.h"
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#define GENMOD_IMPLEMENTATION
#include "genmod.h"
#define GENMOD_DIFFUSION_IMPLEMENTATION
#include "genmod_diffusion.h"

#define NB 2   /* training batches: the example's default first */
static const int batches[NB] = {64, 128};
#define BMAX 128
#define SBATCH 16
#define SSTEPS 50
#define MAXR 16

/* The reference's side: argv threads steps batch sample_batch sample_steps dir. Prints one line
   "samples_per_s train_flops_per_sample ddim_images_per_s" (ddpm_mnist.py parses its own flags at
   import, so sys.argv is set first); sample_batch 0 skips the sampling (prints 0). */
static const char *py_src =
    "import sys, time, math\n"
    "th, steps, batch, sb, ss, d = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]\n"
    "sys.argv = [sys.argv[0], '--threads', str(th), '--sample-steps', str(ss)]\n"
    "sys.path.insert(0, d)\n"
    "import ddpm_mnist as R\n"
    "import torch, torch.nn.functional as F\n"
    "torch.manual_seed(1)\n"
    "model, ema = R.UNet(32, False, 0), R.UNet(32, False, 0)\n"
    "ema.load_state_dict(model.state_dict())\n"
    "for p in ema.parameters(): p.requires_grad_(False)\n"
    "_, train_flops = R.count_flops(model, False)\n"
    "opt = torch.optim.Adam(model.parameters(), lr=2e-4)\n"
    "betas = R.betas_for('linear', 1000); abar = torch.cumprod(1 - betas, 0)\n"
    "sab, s1ab = torch.sqrt(abar).float(), torch.sqrt(1 - abar).float()\n"
    "x0 = torch.rand(batch, 1, 28, 28) * 2 - 1\n"
    "def step(n):\n"
    "    t = torch.randint(0, 1000, (batch,)); e = torch.randn(x0.shape)\n"
    "    loss = F.mse_loss(model(R.q_sample(sab, s1ab, x0, t, e), t), e)\n"
    "    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()\n"
    "    d = min(0.999, (1 + n) / (10 + n))\n"
    "    with torch.no_grad():\n"
    "        for pe, pm in zip(ema.parameters(), model.parameters()): pe.mul_(d).add_(pm, alpha=1 - d)\n"
    "step(0); step(1)\n"
    "t0 = time.perf_counter()\n"
    "for i in range(steps): step(2 + i)\n"
    "sps = batch * steps / (time.perf_counter() - t0)\n"
    "ips = 0.0\n"
    "if sb > 0:\n"
    "    ema.eval(); g = torch.Generator().manual_seed(3)\n"
    "    t0 = time.perf_counter(); R.sample(ema, sb, abar, betas, None, g)\n"
    "    ips = sb / (time.perf_counter() - t0)\n"
    "print('%.4f %.1f %.5f' % (sps, train_flops, ips), flush=True)\n";

typedef struct run { double sps, mfu, ips, peak; } run;

static void die(const char *what) {
    fprintf(stderr, "bench_diffusion: %s: %s\n", what, gm_last_error());
    exit(1);
}

/* Ours: `steps` timed training steps at `batch` and, if `sample`, one DDIM-50 batch of SBATCH images. */
static void run_ours(gm_diffusion *d, const float *x, const float *noise, int batch, int sample, int steps, run *r) {
    static float out[SBATCH * 784];
    gm_diffusion_sampler sp = gm_diffusion_ddim_sampler(SSTEPS, 0);
    double f0 = gm_graph_flops(d->graph), t0 = gm_bench_now(), dt;
    int s;
    for (s = 0; s < steps; s++)
        if (gm_diffusion_train_step(d, x, NULL, batch, NULL) != 0) die("train step");
    dt = gm_bench_now() - t0;
    r->sps = (double)batch * steps / dt;
    r->mfu = (gm_graph_flops(d->graph) - f0) / dt / (r->peak * 1e9);
    r->ips = 0;
    if (!sample) return;
    t0 = gm_bench_now();
    if (gm_diffusion_sample_with(d, NULL, SBATCH, &sp, 0, noise, out) != 0) die("DDIM-50");
    r->ips = SBATCH / (gm_bench_now() - t0);
}

/* The reference, in its own process; 0 on success. */
static int run_torch(const char *py, const char *script, const char *dir, int th, int batch, int sample, int steps, run *r) {
    char cmd[2048];
    double flops = 0;
    FILE *p;
    int ok;
    snprintf(cmd, sizeof cmd, "%s%s '%s' %d %d %d %d %d '%s' 2>/dev/null", th > 1 ? "OMP_WAIT_POLICY=PASSIVE " : "", py,
             script, th, steps, batch, sample ? SBATCH : 0, SSTEPS, dir);
    if (!(p = popen(cmd, "r"))) return -1;
    ok = fscanf(p, "%lf %lf %lf", &r->sps, &flops, &r->ips) == 3;
    if (pclose(p) != 0 || !ok) return -1;
    r->mfu = flops * r->sps / (r->peak * 1e9);
    return 0;
}

static double med(const double *v, int n) { return gm_bench_median(v, n); }

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 3, steps = argc > 2 ? atoi(argv[2]) : 2, i, k, th, b, have_ref;
    const char *py = getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
    const char *base = getenv("GM_BASELINES") ? getenv("GM_BASELINES") : "../shared/baselines";
    char dir[1024], script[] = "/tmp/gm_bench_diffusion_XXXXXX", check[2048];
    static float x[BMAX * 784], noise[SBATCH * 784];
    static run ours[MAXR][2][NB], ref[MAXR][2][NB];
    double v[6][MAXR], p1[MAXR];
    gm_diffusion_config c = gm_diffusion_default_config(1, 28, 28);
    gm_diffusion d;
    gm_rng rng;
    FILE *f, *jl;
    int fd;
    if (rounds < 1 || rounds > MAXR) rounds = 3;
    if (steps < 1 || steps > 100) steps = 2;
    snprintf(dir, sizeof dir, "%s/quality", base);
    if ((fd = mkstemp(script)) < 0 || !(f = fdopen(fd, "w"))) { perror("bench_diffusion: temporary script"); return 1; }
    fputs(py_src, f);
    fclose(f);
    snprintf(check, sizeof check, "%s -c 'import torch' >/dev/null 2>&1 && test -f '%s/ddpm_mnist.py'", py, dir);
    have_ref = system(check) == 0;
    if (!have_ref) printf("PyTorch or %s/ddpm_mnist.py missing: the reference is skipped\n", dir);
    gm_flush_denormals();
    gm_rng_seed(&rng, 1);
    for (i = 0; i < BMAX * 784; i++) x[i] = 2 * gm_rng_uniform(&rng) - 1;
    for (i = 0; i < SBATCH * 784; i++) noise[i] = gm_rng_normal(&rng);
    if (gm_diffusion_init(&d, &c) != 0) die("init");
    gm_set_threads(1);
    for (i = 0; i < 2 * NB; i++)   /* warm-up: the arena is allocated and faulted in (largest batch first) */
        if (gm_diffusion_train_step(&d, x, NULL, batches[NB - 1 - i / 2], NULL) != 0) die("warm-up");
    memset(ref, 0, sizeof ref);
    for (k = 0; k < rounds; k++) {
        for (th = 1; th <= 2; th++) {
            double pa, pb;
            gm_set_threads(th);
            pa = gm_bench_fma_peak(th, 0.25);
            for (b = 0; b < NB; b++) {
                run *o = &ours[k][th - 1][b], *t = &ref[k][th - 1][b];
                o->peak = t->peak = pa;   /* provisional: the mean of both probes below */
                if (k % 2 == 0) run_ours(&d, x, noise, batches[b], b == 0, steps, o);
                if (have_ref && run_torch(py, script, dir, th, batches[b], b == 0, steps, t) != 0) t->sps = 0;
                if (k % 2 == 1) run_ours(&d, x, noise, batches[b], b == 0, steps, o);
            }
            pb = gm_bench_fma_peak(th, 0.25);
            for (b = 0; b < NB; b++) {
                run *o = &ours[k][th - 1][b], *t = &ref[k][th - 1][b];
                o->mfu *= pa / (0.5 * (pa + pb));
                t->mfu *= pa / (0.5 * (pa + pb));
                o->peak = t->peak = 0.5 * (pa + pb);
                printf("round %d, %d thread%s, batch %d: ours %.1f samples/s, reference %.1f samples/s", k + 1, th,
                       th > 1 ? "s" : "", batches[b], o->sps, t->sps);
                if (b == 0) printf("; DDIM-50 ours %.2f images/s, reference %.2f", o->ips, t->ips);
                printf("; FMA peak %.0f GFLOP/s\n", o->peak);
            }
            fflush(stdout);
        }
    }
    remove(script);
    mkdir("out", 0755);
    jl = fopen("out/bench.jsonl", "a");
    printf("\n%-34s %8s %12s %12s %8s\n", "U-Net 28x28 base 32 (median)", "threads", "genmod", "pytorch", "ratio");
    for (th = 1; th <= 2; th++) {
        double ips, rips, iratio;
        for (b = 0; b < NB; b++) {
            double sps, rsps, ratio, mfu, rmfu, peak;
            char label[64];
            for (k = 0; k < rounds; k++) {
                run *o = &ours[k][th - 1][b], *t = &ref[k][th - 1][b];
                v[0][k] = o->sps; v[1][k] = t->sps; v[2][k] = t->sps > 0 ? o->sps / t->sps : 0;
                v[3][k] = o->mfu; v[4][k] = t->mfu; v[5][k] = o->peak;
            }
            sps = med(v[0], rounds); rsps = med(v[1], rounds); ratio = med(v[2], rounds);
            mfu = med(v[3], rounds); rmfu = med(v[4], rounds); peak = med(v[5], rounds);
            snprintf(label, sizeof label, "train samples/s (batch %d)", batches[b]);
            printf("%-34s %8d %12.1f %12.1f %8.2f\n", label, th, sps, rsps, ratio);
            snprintf(label, sizeof label, "train MFU (batch %d)", batches[b]);
            printf("%-34s %8d %11.1f%% %11.1f%%\n", label, th, 100 * mfu, 100 * rmfu);
            if (jl) {   /* batch 128 keeps the series' old names; batch 64 adds _b64 */
                const char *tag = batches[b] == 128 ? "" : "_b64";
                fprintf(jl, "{\"name\": \"diffusion_unet_train_samples%s_t%d\", \"value\": %.3f, \"unit\": \"samples/s\", "
                            "\"batch\": %d, \"ref_name\": \"pytorch\", \"ref_value\": %.3f, \"ratio_to_ref\": %.4f, \"rounds\": %d}\n",
                        tag, th, sps, batches[b], rsps, ratio, rounds);
                fprintf(jl, "{\"name\": \"diffusion_unet_train_mfu%s_t%d\", \"value\": %.4f, \"unit\": \"fraction\", "
                            "\"batch\": %d, \"peak_gflops\": %.1f, \"ref_name\": \"pytorch\", \"ref_value\": %.4f}\n",
                        tag, th, mfu, batches[b], peak, rmfu);
            }
        }
        for (k = 0; k < rounds; k++) {
            p1[k] = ours[k][th - 1][0].ips;
            v[1][k] = ref[k][th - 1][0].ips;
            v[2][k] = v[1][k] > 0 ? p1[k] / v[1][k] : 0;
        }
        ips = med(p1, rounds); rips = med(v[1], rounds); iratio = med(v[2], rounds);
        printf("%-34s %8d %12.2f %12.2f %8.2f\n", "DDIM-50 images/s (batch 16)", th, ips, rips, iratio);
        printf("%-34s %8d %12.3f %12.3f   (50/1000 of DDIM-50)\n", "DDPM images/s (derived)", th, ips * SSTEPS / 1000,
               rips * SSTEPS / 1000);
        if (jl) {
            fprintf(jl, "{\"name\": \"diffusion_ddim50_images_per_s_t%d\", \"value\": %.4f, \"unit\": \"images/s\", "
                        "\"ref_name\": \"pytorch\", \"ref_value\": %.4f, \"ratio_to_ref\": %.4f}\n", th, ips, rips, iratio);
            fprintf(jl, "{\"name\": \"diffusion_ddpm_images_per_s_t%d\", \"value\": %.5f, \"unit\": \"images/s\", "
                        "\"derived\": \"DDIM-50 rate x 50/1000\"}\n", th, ips * SSTEPS / 1000);
        }
    }
    {   /* the 2-thread speed-up (batch 64) against the probe's, inside each round */
        double su, pr, fr;
        for (k = 0; k < rounds; k++) {
            v[0][k] = ours[k][1][0].sps / ours[k][0][0].sps;
            v[1][k] = ours[k][1][0].peak / ours[k][0][0].peak;
            v[2][k] = v[0][k] / v[1][k];
        }
        su = med(v[0], rounds); pr = med(v[1], rounds); fr = med(v[2], rounds);
        printf("2-thread speed-up: %.2fx (FMA probe %.2fx): %.0f%% of the probe's\n", su, pr, 100 * fr);
        if (jl)
            fprintf(jl, "{\"name\": \"diffusion_unet_speedup_t2\", \"value\": %.4f, \"unit\": \"ratio\", "
                        "\"probe_ratio\": %.4f, \"fraction_of_probe\": %.4f, \"rounds\": %d}\n", su, pr, fr, rounds);
    }
    if (jl) fclose(jl);
    gm_diffusion_free(&d);
    return 0;
}
