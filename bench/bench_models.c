/* bench_models.c: training throughput of one genmod model at one thread count, for
 * bench/run_models.sh (which interleaves it with the PyTorch references of shared/baselines).
 *
 *   bench_models MODEL THREADS SECONDS [WARMUP_SECONDS]
 *   MODEL: ae | vae | gan | dcgan | wgangp | realnvp | ffjord
 *
 * Trains MODEL on random data of the shape the torch_<model>.py references use (a pool of 8
 * pre-generated batches, cycled; data loading excluded) for a warm-up (default 0.5 s), then probes
 * the FMA peak for THREADS threads (0.25 s), times at least SECONDS of training steps, probes the
 * peak again, and prints one JSON line:
 *   samples_per_s   real examples consumed per second (batch x D steps for the GANs: the torch
 *                   scripts' convention; WGAN-GP: 5 critic steps of 64 per generator step)
 *   steps_per_s     train calls per second (GANs: D steps), critic_steps_per_s for wgangp
 *   gflop_per_step  model FLOPs (matmul/conv, forward and backward) per step, from gm_graph_flops
 *                   differences of the model's own graph over the timed steps
 *   peak_gflops     mean of the two FMA probes; mfu = gflop_per_step * steps_per_s / peak_gflops
 *   nfe_per_s       FFJORD only: function evaluations of f(z, t) per second in the training solves
 *   rss_mib         getrusage(RUSAGE_SELF) ru_maxrss of this process (one process per model)
 *   graph_mib       gm_graph_memory of the model's graph + 4 bytes per trainable parameter (info)
 * Models (the reference architectures, batch sizes and optimizers of shared/baselines):
 *   ae      dense AE 784-784-256-128 / 128-128-256-784, batch 256, RMSProp 1e-3 (gm_ae_default_config)
 *   vae     dense VAE 784-784-256-128 ELU, z 10, decoder 256-384-512-784, batch 100, Adam
 *   gan     MLP GAN G 100-256-512-1024-784 (ReLU, tanh, no batch norm as torch_gan.py),
 *           D 784-1024-512-256-1 (ReLU, dropout 0.3), non-saturating, Adam 2e-4, batch 100
 *   dcgan   DCGAN 28x28 (gm_gan_dcgan_config), Adam 2e-4 (0.5, 0.999), batch 64
 *   wgangp  WGAN-GP MLP (G as gan, critic without dropout), penalty 10, 5 critic steps per G step,
 *           Adam 1e-4 (0.5, 0.9), batch 64
 *   realnvp RealNVP on two moons, 6 affine couplings, s/t nets 2-256x4-2, batch 256, Adam
 *           (gm_flow_default_config; its 0.01 L2 term on the kernels is kept: work torch does not do)
 *   ffjord  FFJORD on two moons (gm_ffjord_default_config(2): f 3x64 tanh, RK4 8 steps, exact trace),
 *           batch 256, Adam 1e-3; no PyTorch reference exists for it
 * Build: cc -O2 -std=c99 -Wall -Wextra -Wpedantic -I. bench/bench_models.c -o build/bench_models -lm -lpthread */
#include "bench_util.h"
#include <stdio.h>
#include <sys/resource.h>
#define GENMOD_IMPLEMENTATION
#include "genmod.h"
#define GENMOD_VAE_IMPLEMENTATION
#include "genmod_vae.h"
#define GENMOD_GAN_IMPLEMENTATION
#include "genmod_gan.h"
#define GENMOD_FLOW_IMPLEMENTATION
#include "genmod_flow.h"

#define POOL 8

enum { M_AE = 0, M_VAE, M_GAN, M_DCGAN, M_WGANGP, M_REALNVP, M_FFJORD, M_COUNT };
static const char *model_names[M_COUNT] = {"ae", "vae", "gan", "dcgan", "wgangp", "realnvp", "ffjord"};

typedef struct bench_model {
    int kind, batch, dim;       /* dim: floats per example */
    float *data;                /* POOL batches */
    long it, nfe;               /* nfe: FFJORD function evaluations so far */
    gm_ae ae;
    gm_vae vae;
    gm_gan gan;
    gm_flow flow;
    gm_ffjord ffjord;
    gm_graph *g;                /* the graph the model computes in (the model's own) */
} bench_model;

static void die(const char *what) {
    fprintf(stderr, "bench_models: %s: %s\n", what, gm_last_error());
    exit(1);
}

static void model_init(bench_model *m, int kind) {
    gm_rng rng;
    size_t n;
    memset(m, 0, sizeof *m);
    m->kind = kind;
    gm_rng_seed(&rng, 7);
    switch (kind) {
    case M_AE: {
        gm_ae_config c = gm_ae_default_config();
        c.batch = 256;
        if (gm_ae_init(&m->ae, &c) != 0) die("gm_ae_init");
        m->batch = 256; m->dim = 784; m->g = m->ae.graph;
        break;
    }
    case M_VAE: {
        gm_vae_config c = gm_vae_default_config();
        c.batch = 100;
        if (gm_vae_init(&m->vae, &c) != 0) die("gm_vae_init");
        m->batch = 100; m->dim = 784; m->g = m->vae.graph;
        break;
    }
    case M_GAN: case M_DCGAN: case M_WGANGP: {
        gm_gan_config c;
        if (kind == M_DCGAN) {
            c = gm_gan_dcgan_config(0);           /* Adam 2e-4 (0.5, 0.999), batch 64 */
        } else if (kind == M_GAN) {
            c = gm_gan_default_config(0);         /* Adam 2e-4, batch 100 */
            c.generator.batchnorm = 0;            /* torch_gan.py's G has no batch norm */
            c.opt_g.beta1 = c.opt_d.beta1 = 0.9f;
        } else {
            c = gm_gan_wgan_gp_config(0);         /* critic without dropout or batch norm, penalty 10, */
            c.generator.batchnorm = 0;            /* 5 critic steps, Adam 1e-4 (0.5, 0.9), batch 64 */
        }
        c.seed = 1;
        if (gm_gan_init(&m->gan, &c) != 0) die("gm_gan_init");
        m->batch = c.batch; m->dim = 784; m->g = m->gan.graph;
        break;
    }
    case M_REALNVP: {
        gm_flow_config c = gm_flow_default_config(GM_FLOW_REALNVP, 2, 1, 1);
        c.batch = 256; c.n_couplings = 6; c.hidden = 256; c.depth = 4;
        if (gm_flow_init(&m->flow, &c) != 0) die("gm_flow_init");
        m->batch = 256; m->dim = 2; m->g = m->flow.graph;
        break;
    }
    case M_FFJORD: {
        gm_ffjord_config c = gm_ffjord_default_config(2);
        c.batch = 256;
        if (gm_ffjord_init(&m->ffjord, &c) != 0) die("gm_ffjord_init");
        m->batch = 256; m->dim = 2; m->g = m->ffjord.graph;
        break;
    }
    default: break;
    }
    n = (size_t)POOL * (size_t)m->batch * (size_t)m->dim;
    if (!(m->data = (float *)malloc(n * sizeof(float)))) { fprintf(stderr, "bench_models: out of memory\n"); exit(1); }
    if (kind == M_REALNVP || kind == M_FFJORD) {
        if (gm_toy2d("moons", POOL * m->batch, 7, -1.0f, m->data, NULL) != 0) die("gm_toy2d");
    } else if (kind == M_AE || kind == M_VAE) {
        gm_init_uniform(&rng, m->data, n, 0.0f, 1.0f);      /* [0,1) as the torch scripts */
    } else {
        gm_init_uniform(&rng, m->data, n, -1.0f, 1.0f);     /* tanh range */
    }
}

/* One train call: AE/VAE/flow one optimizer step; GANs one D step (+ a G step every n_critic). */
static void model_step(bench_model *m) {
    const float *x = m->data + (size_t)(m->it % POOL) * (size_t)m->batch * (size_t)m->dim;
    int rc = 0;
    m->it++;
    switch (m->kind) {
    case M_AE: rc = gm_ae_train_step(&m->ae, x, NULL, m->batch, NULL); break;
    case M_VAE: rc = gm_vae_train_step(&m->vae, x, NULL, m->batch, NULL); break;
    case M_REALNVP: rc = gm_flow_train_step(&m->flow, x, NULL, m->batch, NULL); break;
    case M_FFJORD: rc = gm_ffjord_train_step(&m->ffjord, x, NULL, m->batch, NULL); m->nfe += m->ffjord.nfe; break;
    default: rc = gm_gan_train_step(&m->gan, x, NULL, m->batch, NULL); break;
    }
    if (rc != 0) die(model_names[m->kind]);
}

/* 1 when the model is at the end of a full cycle (WGAN-GP: a G step just ran after 5 critic
   steps), so the timed window holds whole cycles and its FLOPs per step are exact. */
static int at_cycle(const bench_model *m) {
    if (m->kind < M_GAN || m->kind > M_WGANGP || m->gan.cfg.n_critic <= 1) return 1;
    return m->gan.d_steps % m->gan.cfg.n_critic == 0;
}

static size_t model_params(const bench_model *m) {
    switch (m->kind) {
    case M_AE: return gm_params_count(&m->ae.params);
    case M_VAE: return gm_params_count(&m->vae.params);
    case M_REALNVP: return gm_params_count(&m->flow.params);
    case M_FFJORD: return gm_params_count(&m->ffjord.params);
    default: return gm_params_count(&m->gan.generator.params) + gm_params_count(&m->gan.discriminator.params);
    }
}

static void model_free(bench_model *m) {
    switch (m->kind) {
    case M_AE: gm_ae_free(&m->ae); break;
    case M_VAE: gm_vae_free(&m->vae); break;
    case M_REALNVP: gm_flow_free(&m->flow); break;
    case M_FFJORD: gm_ffjord_free(&m->ffjord); break;
    default: gm_gan_free(&m->gan); break;
    }
    free(m->data);
}

int main(int argc, char **argv) {
    bench_model m;
    struct rusage ru;
    double seconds, warmup, t0, dt, f0, flops, p0, p1, peak, sps, steps_s, critic_s;
    long n, d0 = 0, nfe0;
    int kind, threads;
    size_t params;
    if (argc < 4) {
        fprintf(stderr, "usage: bench_models ae|vae|gan|dcgan|wgangp|realnvp|ffjord THREADS SECONDS [WARMUP_SECONDS]\n");
        return 2;
    }
    for (kind = 0; kind < M_COUNT; kind++)
        if (strcmp(argv[1], model_names[kind]) == 0) break;
    if (kind == M_COUNT) { fprintf(stderr, "bench_models: unknown model '%s'\n", argv[1]); return 2; }
    threads = atoi(argv[2]);
    seconds = atof(argv[3]);
    warmup = argc > 4 ? atof(argv[4]) : 0.5;
    if (threads < 1 || threads > 16 || seconds <= 0) { fprintf(stderr, "bench_models: bad THREADS or SECONDS\n"); return 2; }

    (void)gm_bench_median;         /* bench_util.h helper this program does not need */
    gm_flush_denormals();          /* gm_graph_new also does it in this thread */
    gm_set_threads(threads);
    model_init(&m, kind);
    params = model_params(&m);

    t0 = gm_bench_now();           /* warm-up: arenas sized, thread pool started, caches warm */
    n = 0;
    do { model_step(&m); n++; } while (gm_bench_now() - t0 < warmup || n < 3 || !at_cycle(&m));

    p0 = gm_bench_fma_peak(threads, 0.25);
    if (kind >= M_GAN && kind <= M_WGANGP) d0 = m.gan.d_steps;
    f0 = gm_graph_flops(m.g);
    nfe0 = m.nfe;
    t0 = gm_bench_now();
    n = 0;
    do { model_step(&m); n++; dt = gm_bench_now() - t0; } while (dt < seconds || n < 3 || !at_cycle(&m));
    flops = (gm_graph_flops(m.g) - f0) / (double)n;
    p1 = gm_bench_fma_peak(threads, 0.25);

    peak = 0.5 * (p0 + p1);
    steps_s = (double)n / dt;
    sps = steps_s * m.batch;       /* every call consumes one real batch (GANs: one D step) */
    critic_s = kind >= M_GAN && kind <= M_WGANGP ? (double)(m.gan.d_steps - d0) / dt : steps_s;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"model\": \"%s\", \"threads\": %d, \"batch\": %d, \"seconds\": %.3f, \"steps\": %ld, "
           "\"samples_per_s\": %.2f, \"steps_per_s\": %.4f, \"critic_steps_per_s\": %.4f, "
           "\"gflop_per_step\": %.5f, \"gflops\": %.3f, \"peak_gflops_before\": %.2f, \"peak_gflops_after\": %.2f, "
           "\"peak_gflops\": %.2f, \"mfu\": %.5f, \"rss_mib\": %.2f, \"graph_mib\": %.2f, \"params\": %lu, "
           "\"nfe_per_s\": %.1f, \"simd\": \"%s\"}\n",
           model_names[kind], threads, m.batch, dt, n, sps, steps_s, critic_s, flops * 1e-9,
           flops * steps_s * 1e-9, p0, p1, peak, peak > 0 ? flops * steps_s * 1e-9 / peak : 0.0,
           (double)ru.ru_maxrss / 1024.0,
           ((double)gm_graph_memory(m.g) + 4.0 * (double)params) / 1048576.0, (unsigned long)params,
           (double)(m.nfe - nfe0) / dt, gm_simd_name(gm_simd_path()));
    fflush(stdout);
    model_free(&m);
    return 0;
}
