/* gan.c: GANs on the bundled MNIST digits (images in [-1,1]), scored with the metric classifier.
 *
 *   cc -O2 -I. examples/gan.c -o build/gan -lm -lpthread
 *   ./build/gan                          # MLP GAN of the issue: non-saturating loss, 1700 steps
 *   ./build/gan --loss minimax --spectral 1 --noise 0.1
 *
 * dcgan.c, wgan.c and cgan.c are this program with other defaults (they #include it), so every
 * flag works in all four: --arch mlp|conv, --loss nonsat|minimax|lsgan|wgan, --gp, --clip,
 * --n-critic, --spectral, --noise, --conditional.
 *
 * Writes <name>_epoch<k>.png (a grid of samples at fixed latent vectors after every epoch; the
 * conditional GAN: one row per digit), <name>_loss.png and <name>_log.csv, and ends with a JSON
 * line: Frechet distance to the test images in the classifier's feature space, entropy of the
 * predicted labels (ln 10 = 2.303 when uniform), the conditional accuracy. */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#define GENMOD_GAN_IMPLEMENTATION
#include "../genmod_gan.h"
#include "common.h"

#ifndef EX_GAN_NAME                     /* defaults of this program; the others override them */
#define EX_GAN_NAME "gan"
#define EX_GAN_ABOUT "MLP GAN on MNIST (Goodfellow et al.), non-saturating or minimax loss."
#define EX_GAN_ARCH "mlp"
#define EX_GAN_LOSS "nonsat"
#define EX_GAN_STEPS 1700
#define EX_GAN_BATCH 100
#define EX_GAN_LR 2e-4f
#define EX_GAN_BETA2 0.999f
#define EX_GAN_GP 0.0f
#define EX_GAN_NCRITIC 1
#define EX_GAN_COND 0
#endif

#define ZDIM 100

typedef struct cfg {
    const char *arch, *loss;
    float gp, clip, noise, beta1, beta2;
    int n_critic, spectral, conditional, nscore;
} cfg;

static int build(gm_gan *gan, const ex_args *a, const cfg *c) {
    int classes = c->conditional ? 10 : 0, conv = strcmp(c->arch, "conv") == 0;
    gm_gan_arch ga = conv ? gm_gan_dcgan_g(ZDIM, classes) : gm_gan_mlp_g(ZDIM, 784, classes);
    gm_gan_arch da = conv ? gm_gan_dcgan_d(classes) : gm_gan_mlp_d(784, classes);
    gm_gan_opts o = gm_gan_defaults(gm_gan_loss_parse(c->loss));
    gm_optim og = gm_adam(a->lr, c->beta1, c->beta2), od = og;
    if (o.loss == GM_GAN_WASSERSTEIN) {
        da.dropout = 0;        /* a critic, not a classifier: no dropout, and no batch norm (it */
        da.batchnorm = 0;      /* would couple the examples that the penalty treats one by one) */
    }
    da.spectral = c->spectral;
    o.n_critic = c->n_critic; o.gp = c->gp; o.noise = c->noise;
    o.noise_steps = (a->steps > 0 ? a->steps : EX_GAN_STEPS) * c->n_critic / 2;
    if (c->clip > 0) {         /* WGAN with weight clipping: RMSProp, as in the paper */
        og = gm_rmsprop(a->lr, 0.99f); od = og;
        od.clip_value = c->clip;
    }
    if (gm_gan_init(gan, &ga, &da, &o, og, od, a->seed) != 0) return -1;
    if (!a->quiet)
        printf("%s: G %zu weights, D %zu weights; loss %s, n_critic %d, gp %g, clip %g, spectral %d, noise %g\n",
               a->name, gm_params_count(&gan->G.params), gm_params_count(&gan->D.params), c->loss, c->n_critic, c->gp, c->clip,
               c->spectral, c->noise);
    return 0;
}

/* 100 samples at fixed latent vectors: 10 x 10 grid (conditional: row r is digit r). */
static int save_grid(const ex_args *a, gm_gan *gan, gm_graph *g, const float *z, const int *labels, long epoch) {
    static float x[100 * 784];
    char file[128];
    gm_image grid, big;
    if (gm_gan_sample(gan, g, z, gan->G.a.classes ? labels : NULL, 100, x) != 0) return -1;
    if (gm_image_grid(&grid, x, 100, 1, 28, 28, 10, 2, -1.0f, 1.0f) != 0) return -1;
    if (gm_image_upscale(&big, &grid, 2) != 0) { gm_image_free(&grid); return -1; }
    gm_image_free(&grid);
    snprintf(file, sizeof file, "%s_epoch%03ld.png", a->name, epoch);
    return ex_save_png(a, file, &big);
}

/* FD, label entropy and (conditional) accuracy of n samples against the test images. */
static int score(const ex_args *a, gm_gan *gan, gm_graph *g, const gm_dataset *te, int n, gm_digit_scores *sc) {
    char path[EX_PATH];
    gm_digit_classifier m;
    float *x = (float *)malloc((size_t)n * 784 * sizeof(float));
    int *lab = (int *)malloc((size_t)n * sizeof(int)), i, rc = -1;
    ex_classifier_path(a, path, sizeof path);
    for (i = 0; lab && i < n; i++) lab[i] = i % 10;
    if (x && lab && gm_digit_classifier_load(&m, path) == 0) {
        rc = gm_gan_sample(gan, g, NULL, gan->G.a.classes ? lab : NULL, n, x);
        if (rc == 0) rc = gm_digit_score(&m, g, x, gan->G.a.classes ? lab : NULL, n, te->x, te->n, sc);
        if (rc == 0) rc = ex_dump_samples(a, x, n, 28, 28, -1.0f, 1.0f);
        gm_digit_classifier_free(&m);
    }
    if (rc != 0) fprintf(stderr, "%s: scoring: %s\n", a->name, gm_last_error());
    free(x); free(lab);
    return rc;
}

int main(int argc, char **argv) {
    cfg c;
    ex_opt extra[] = {
        {"arch", EX_CHOICE, &c.arch, "networks: MLP or DCGAN convolutions", "mlp|conv"},
        {"loss", EX_CHOICE, &c.loss, "GAN loss", "nonsat|minimax|lsgan|wgan"},
        {"gp", EX_FLOAT, &c.gp, "gradient penalty weight (WGAN-GP: 10)", "0.."},
        {"clip", EX_FLOAT, &c.clip, "clip critic weights to [-c,c] (WGAN; switches to RMSProp)", "0.."},
        {"n-critic", EX_INT, &c.n_critic, "D steps per G step", "1..100"},
        {"spectral", EX_BOOL, &c.spectral, "spectral normalization in D", NULL},
        {"noise", EX_FLOAT, &c.noise, "instance noise std at the start (anneals to 0 by half-way)", "0.."},
        {"conditional", EX_BOOL, &c.conditional, "condition G and D on the digit label", NULL},
        {"beta1", EX_FLOAT, &c.beta1, "Adam beta1", "0..1"},
        {"beta2", EX_FLOAT, &c.beta2, "Adam beta2", "0..1"},
        {"score-samples", EX_INT, &c.nscore, "samples scored against the test images", "2..100000"},
    };
    ex_args a = ex_defaults(EX_GAN_NAME, 1, EX_GAN_BATCH, EX_GAN_LR);
    gm_dataset tr, te;
    gm_gan gan;
    gm_gan_stats st;
    gm_graph *g;
    gm_batcher b;
    gm_digit_scores sc;
    gm_rng r;
    ex_run run;
    ex_json j;
    const int *idx;
    float *x, *z, last_g = 0;
    int *y, k, i, grid_labels[100];
    long epoch = 0, total;
    c.arch = EX_GAN_ARCH; c.loss = EX_GAN_LOSS; c.gp = EX_GAN_GP; c.clip = 0; c.noise = 0;
    c.beta1 = 0.5f; c.beta2 = EX_GAN_BETA2; c.n_critic = EX_GAN_NCRITIC; c.spectral = 0;
    c.conditional = EX_GAN_COND; c.nscore = 2000;
    a.steps = EX_GAN_STEPS;
    ex_init(&a, argc, argv, EX_GAN_ABOUT " --steps counts G steps.", extra, (int)(sizeof extra / sizeof extra[0]));
    total = a.steps;
    if (gm_mnist_load(&tr, &te, a.data_dir, 0, 0, -1.0f, 1.0f) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
    if (build(&gan, &a, &c) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
    g = gm_graph_new(a.seed);
    x = (float *)malloc((size_t)a.batch * 784 * sizeof(float));
    y = (int *)malloc((size_t)a.batch * sizeof(int));
    z = (float *)malloc(100 * ZDIM * sizeof(float));
    if (!g || !x || !y || !z) { fprintf(stderr, "%s: out of memory\n", a.name); return 1; }
    gm_rng_seed(&r, a.seed + 7);
    for (i = 0; i < 100; i++) grid_labels[i] = i / 10;
    for (i = 0; i < 100 * ZDIM; i++) z[i] = gm_rng_normal(&r);     /* fixed latent vectors */
    if (gan.G.a.classes)     /* conditional grid: column = latent vector, row = digit */
        for (i = 0; i < 100; i++) memcpy(z + i * ZDIM, z + (i % 10) * ZDIM, ZDIM * sizeof(float));
    gm_batcher_init(&b, tr.n, a.batch, a.seed, 1);
    ex_run_begin(&run, &a, total * c.n_critic, a.batch, "d_loss,g_loss,d_real,d_fake");
    save_grid(&a, &gan, g, z, grid_labels, 0);
    while (gan.g_steps < total && !ex_interrupted()) {
        if ((k = gm_batcher_next(&b, &idx)) == 0) {          /* end of an epoch: a picture */
            save_grid(&a, &gan, g, z, grid_labels, ++epoch);
            continue;
        }
        gm_dataset_gather(&tr, idx, k, x, y);
        if (gm_gan_step(&gan, g, x, y, k, &st) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
        if (st.g_step) last_g = st.g_loss;
        {   float m[4];
            m[0] = st.d_loss; m[1] = last_g; m[2] = st.d_real; m[3] = st.d_fake;
            ex_run_step(&run, m); }
    }
    ex_run_end(&run);
    save_grid(&a, &gan, g, z, grid_labels, ++epoch);
    {   char file[128];
        snprintf(file, sizeof file, "%s_loss.png", a.name);
        ex_run_plot(&run, file, a.name, 0); }
    if (score(&a, &gan, g, &te, c.nscore, &sc) != 0) return 1;
    if (!a.quiet) printf("%s: FD %.2f (classifier features, %d samples vs %d test), label entropy %.3f nats%s", a.name, sc.fd,
                         c.nscore, te.n, sc.entropy, gan.G.a.classes ? "" : "\n");
    if (!a.quiet && gan.G.a.classes) printf(", conditional accuracy %.3f\n", sc.accuracy);
    ex_json_init(&j);
    ex_json_str(&j, "model", a.name);
    ex_json_str(&j, "arch", c.arch);
    ex_json_str(&j, "loss", c.loss);
    ex_json_num(&j, "g_steps", (double)gan.g_steps);
    ex_json_num(&j, "d_steps", (double)gan.d_steps);
    ex_json_num(&j, "fd", sc.fd);
    ex_json_num(&j, "label_entropy", sc.entropy);
    if (gan.G.a.classes) ex_json_num(&j, "cond_accuracy", sc.accuracy);
    ex_json_num(&j, "score_samples", c.nscore);
    ex_json_num(&j, "train_s", run.step > 0 ? ex_now() - run.t0 : 0);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&b);
    gm_gan_free(&gan);
    gm_graph_free(g);
    free(x); free(y); free(z);
    gm_dataset_free(&tr); gm_dataset_free(&te);
    return 0;
}
