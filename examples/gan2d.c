/* gan2d.c: GAN loss variants on the 8-Gaussians ring (2-D), side by side.
 *
 *   cc -O2 -I. examples/gan2d.c -o build/gan2d -lm -lpthread
 *   ./build/gan2d                       # every variant, 2000 G steps each, PNGs in out/
 *   ./build/gan2d --loss wgan-gp --spectral 1 --noise 0.1
 *
 * For each variant (nonsat, minimax, lsgan, wgan with clipping, wgan-gp) it trains a small MLP GAN
 * (G z=2 -> 64 -> 64 -> 2, D 2 -> 64 -> 64 -> 1, LeakyReLU) and writes
 *   gan2d_<variant>_step<k>.png   real (grey) vs generated (colour) at fixed latent vectors, 5 times
 *   gan2d_<variant>_d.png         D's output over the plane (sigmoid for BCE losses, raw otherwise)
 *                                 with the final samples on top
 *   gan2d_<variant>_loss.png      D and G losses
 * and reports modes covered and the fraction of high-quality samples (within 3 std of a mode). */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#define GENMOD_GAN_IMPLEMENTATION
#include "../genmod_gan.h"
#include "common.h"

#define NDATA 8192
#define NSHOW 1000
#define GRID 96

typedef struct setup { const char *name; int loss, n_critic; float gp, clip; } setup;
static const setup SETUPS[5] = {
    {"nonsat", GM_GAN_NONSAT, 1, 0, 0},     {"minimax", GM_GAN_MINIMAX, 1, 0, 0}, {"lsgan", GM_GAN_LSGAN, 1, 0, 0},
    {"wgan", GM_GAN_WASSERSTEIN, 5, 0, 0.05f}, {"wgan-gp", GM_GAN_WASSERSTEIN, 5, 0.1f, 0},
};

/* Real points (label 0) and generated ones (label 1) in one scatter plot. */
static int save_scatter(const ex_args *a, const char *file, const char *title, const float *real, const float *fake) {
    static float xy[4 * NSHOW];
    static int lab[2 * NSHOW];
    static const char *names[2] = {"real", "generated"};
    gm_plot_opts o = gm_plot_defaults();
    gm_image img;
    int i;
    memcpy(xy, real, 2 * NSHOW * sizeof(float));
    memcpy(xy + 2 * NSHOW, fake, 2 * NSHOW * sizeof(float));
    for (i = 0; i < 2 * NSHOW; i++) lab[i] = i >= NSHOW;
    o.title = title; o.fixed_x = o.fixed_y = 1;
    o.x0 = o.y0 = -3; o.x1 = o.y1 = 3; o.w = o.h = 560;
    if (gm_plot_scatter(&img, &o, xy, 2 * NSHOW, lab, 2, names) != 0) { fprintf(stderr, "%s\n", gm_last_error()); return -1; }
    return ex_save_png(a, file, &img);
}

/* D over [-3,3]^2 as a heatmap, next to the final samples. */
static int save_surface(const ex_args *a, gm_gan *gan, gm_graph *g, const char *name, const float *real, const float *fake) {
    static float pts[2 * GRID * GRID], val[GRID * GRID];
    char title[96], file[96];
    gm_plot_opts o = gm_plot_defaults();
    gm_image panels[2];
    gm_image both;
    int i, j;
    for (j = 0; j < GRID; j++)
        for (i = 0; i < GRID; i++) {
            pts[2 * (j * GRID + i)] = -3 + 6 * (i + 0.5f) / GRID;
            pts[2 * (j * GRID + i) + 1] = -3 + 6 * (j + 0.5f) / GRID;
        }
    if (gm_gan_discriminate(gan, g, pts, NULL, GRID * GRID, val) != 0) { fprintf(stderr, "%s\n", gm_last_error()); return -1; }
    if (gan->o.loss == GM_GAN_NONSAT || gan->o.loss == GM_GAN_MINIMAX)
        for (i = 0; i < GRID * GRID; i++) val[i] = 1.0f / (1.0f + expf(-val[i]));   /* D(x) as a probability */
    snprintf(title, sizeof title, "%s: D(x)", name);
    o.title = title; o.w = o.h = 560;
    if (gm_plot_heatmap(&panels[0], &o, val, GRID, GRID, -3, 3, -3, 3) != 0) { fprintf(stderr, "%s\n", gm_last_error()); return -1; }
    {   static float xy[4 * NSHOW];
        static int lab[2 * NSHOW];
        static const char *names[2] = {"real", "generated"};
        gm_plot_opts s = gm_plot_defaults();
        memcpy(xy, real, 2 * NSHOW * sizeof(float));
        memcpy(xy + 2 * NSHOW, fake, 2 * NSHOW * sizeof(float));
        for (i = 0; i < 2 * NSHOW; i++) lab[i] = i >= NSHOW;
        snprintf(title, sizeof title, "%s: samples", name);
        s.title = title; s.fixed_x = s.fixed_y = 1; s.x0 = s.y0 = -3; s.x1 = s.y1 = 3; s.w = s.h = 560;
        if (gm_plot_scatter(&panels[1], &s, xy, 2 * NSHOW, lab, 2, names) != 0) { gm_image_free(&panels[0]); return -1; }
    }
    i = gm_image_hstack(&both, panels, 2, NULL, 8);
    gm_image_free(&panels[0]); gm_image_free(&panels[1]);
    if (i != 0) { fprintf(stderr, "%s\n", gm_last_error()); return -1; }
    snprintf(file, sizeof file, "gan2d_%s_d.png", name);
    return ex_save_png(a, file, &both);
}

/* Trains one variant; fills modes / hq. Returns 0 or -1. */
static int run_variant(const ex_args *base, const setup *s, int spectral, float noise, int *modes, float *hq) {
    static float data[2 * NDATA], batch[2 * 1024], z[2 * NSHOW], fake[2 * NSHOW];
    char name[64], file[96], title[96];
    ex_args a = *base;
    gm_gan_arch ga = gm_gan_mlp_g(2, 2, 0), da = gm_gan_mlp_d(2, 0);
    gm_gan_opts o = gm_gan_defaults(s->loss);
    gm_optim og, od;
    gm_gan gan;
    gm_gan_stats st;
    gm_graph *g = gm_graph_new(a.seed);
    gm_batcher b;
    gm_rng r;
    ex_run run;
    const int *idx;
    long steps = a.steps > 0 ? a.steps : 2000, shot = 0;
    int i, k, rc = 0;
    float last_g = 0;
    snprintf(name, sizeof name, "gan2d_%s%s", s->name, spectral ? "_sn" : "");
    a.name = name;
    ga.hidden[0] = ga.hidden[1] = 64; ga.nhidden = 2; ga.batchnorm = 0; ga.out_act = GM_GAN_ACT_NONE;
    da.hidden[0] = da.hidden[1] = 64; da.nhidden = 2; da.dropout = 0; da.act = GM_GAN_ACT_LEAKY; da.spectral = spectral;
    o.n_critic = s->n_critic; o.gp = s->gp; o.noise = noise; o.noise_steps = steps * s->n_critic / 2;
    if (s->clip > 0) { og = gm_rmsprop(a.lr, 0.99f); od = gm_rmsprop(a.lr, 0.99f); od.clip_value = s->clip; }
    else { og = gm_adam(a.lr, 0.5f, s->gp > 0 ? 0.9f : 0.999f); od = og; }
    og.sched.kind = od.sched.kind = GM_LR_COSINE;      /* decay to 5%: sharpens the modes */
    og.sched.total = steps; od.sched.total = steps * s->n_critic;
    og.sched.min_lr = od.sched.min_lr = a.lr * 0.05f;
    gm_toy2d("8gaussians", NDATA, a.seed, -1, data, NULL);
    gm_rng_seed(&r, a.seed + 100);
    for (i = 0; i < 2 * NSHOW; i++) z[i] = gm_rng_normal(&r);     /* fixed latent vectors */
    if (!g || gm_gan_init(&gan, &ga, &da, &o, og, od, a.seed) != 0) { fprintf(stderr, "%s: %s\n", name, gm_last_error()); return -1; }
    gm_batcher_init(&b, NDATA, a.batch, a.seed, 1);
    ex_run_begin(&run, &a, steps * s->n_critic, a.batch, "d_loss,g_loss");
    while (gan.g_steps < steps && rc == 0 && !ex_interrupted()) {
        if ((k = gm_batcher_next(&b, &idx)) == 0) continue;
        for (i = 0; i < k; i++) { batch[2 * i] = data[2 * idx[i]]; batch[2 * i + 1] = data[2 * idx[i] + 1]; }
        if ((rc = gm_gan_step(&gan, g, batch, NULL, k, &st)) != 0) { fprintf(stderr, "%s: %s\n", name, gm_last_error()); break; }
        {   float m[2];
            if (st.g_step) last_g = st.g_loss;              /* critic-only steps repeat the last G loss */
            m[0] = st.d_loss; m[1] = last_g;
            ex_run_step(&run, m); }
        if (st.g_step && gan.g_steps % (steps / 5 > 0 ? steps / 5 : 1) == 0) {
            gm_gan_sample(&gan, g, z, NULL, NSHOW, fake);
            snprintf(file, sizeof file, "%s_step%ld.png", name, gan.g_steps);
            snprintf(title, sizeof title, "%s, G step %ld", name + 6, gan.g_steps);
            save_scatter(&a, file, title, data, fake);
            shot++;
        }
    }
    ex_run_end(&run);
    snprintf(file, sizeof file, "%s_loss.png", name);
    ex_run_plot(&run, file, name, 0);
    if (rc == 0 && gm_gan_sample(&gan, g, z, NULL, NSHOW, fake) == 0) {
        *modes = gm_ring_modes(fake, NSHOW, 8, 2.0f, 0.02f, 10, hq);
        save_surface(&a, &gan, g, name + 6, data, fake);
        if (!a.quiet) printf("%s: %d of 8 modes, %.1f%% high quality (within 3 std = 0.06)\n", name, *modes, 100 * *hq);
    }
    ex_run_free(&run);
    gm_batcher_free(&b);
    gm_gan_free(&gan);
    gm_graph_free(g);
    return rc;
}

int main(int argc, char **argv) {
    const char *loss = "all";
    int spectral = 0, i, nrun = 0, modes[5];
    float noise = 0, hq[5];
    ex_opt extra[] = {
        {"loss", EX_CHOICE, &loss, "variant to train", "all|nonsat|minimax|lsgan|wgan|wgan-gp"},
        {"spectral", EX_BOOL, &spectral, "spectral normalization in D", NULL},
        {"noise", EX_FLOAT, &noise, "instance noise std at the start (anneals to 0 by half-way)", "0.."},
    };
    ex_args a = ex_defaults("gan2d", 1, 128, 2e-3f);
    ex_json j;
    ex_init(&a, argc, argv, "GAN loss variants on the 8-Gaussians ring (--steps = G steps per variant, default 2000).",
            extra, 3);
    ex_json_init(&j);
    ex_json_str(&j, "model", "gan2d");
    for (i = 0; i < 5; i++) {
        char key[64];
        if (strcmp(loss, "all") != 0 && strcmp(loss, SETUPS[i].name) != 0) continue;
        modes[i] = -1; hq[i] = 0;
        if (run_variant(&a, &SETUPS[i], spectral, noise, &modes[i], &hq[i]) != 0) return 1;
        snprintf(key, sizeof key, "%s_modes", SETUPS[i].name);
        ex_json_num(&j, key, modes[i]);
        snprintf(key, sizeof key, "%s_hq", SETUPS[i].name);
        ex_json_num(&j, key, hq[i]);
        nrun++;
    }
    ex_json_num(&j, "variants", nrun);
    ex_json_print(&j);
    return 0;
}
