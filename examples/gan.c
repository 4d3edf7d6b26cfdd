/* gan.c: GANs on the bundled MNIST digits (images in [-1,1]), scored with the metric classifier.
 *
 *   cc -O2 -I. examples/gan.c -o build/gan -lm -lpthread
 *   ./build/gan                          # MLP GAN (Goodfellow et al.): non-saturating loss, 1700 steps
 *   ./build/gan --preset dcgan           # DCGAN (Radford et al.), recipe tuned: D on packs of 2, lr 4e-4, EMA
 *   ./build/gan --preset dcgan --data data/mnist-full --minutes 5   # full MNIST (make data), 5 minutes
 *   ./build/gan --preset dcgan --recipe seed                  # the PyTorch reference's DCGAN exactly
 *   ./build/gan --preset cgan            # conditional DCGAN (Mirza & Osindero): one row per digit
 *   ./build/gan --preset wgan            # WGAN-GP (Gulrajani et al.): MLP critic, penalty 10, 5 critic steps
 *   ./build/gan --preset wgan --gp 0 --clip 0.01 --lr 5e-5    # the original WGAN: clipping, RMSProp
 *   ./build/gan --loss minimax --spectral 1 --noise 0.1
 *   ./build/gan --preset dcgan --ema 0.999 --r1 0.1 --augment both --lr 1e-4 --lr-d 4e-4
 *   ./build/gan --preset dcgan --save dcgan.safetensors       # then: --load dcgan.safetensors --steps 0
 *
 * A preset sets the defaults of the other flags (the table below); flags given after it override
 * them: --arch mlp|conv, --loss nonsat|minimax|lsgan|wgan|hinge, --gp, --r1, --clip, --n-critic,
 * --spectral, --noise, --augment none|translation|cutout|both, --ema, --conditional, --beta1,
 * --beta2, --steps (G steps; --minutes X without --steps trains for X minutes, --epochs is refused),
 * --batch, --lr, --lr-d (D's own rate: two time scales), --lr-decay
 * linear (both rates fall linearly to 0 at the end of the budget: the first of --steps and
 * --minutes to run out), --mbstd (ProGAN's minibatch standard-deviation channel in the conv D),
 * --width K (the conv nets' channels times K), --pack P (PacGAN: D scores packs of P samples),
 * --smooth S (one-sided label smoothing: D's real target 1 - S), --d-batchnorm 0|1 (batch norm in D).
 * Flags that do not apply are refused (exit 2): --width without conv nets, --pack with a conditional
 * D, the gradient penalty or a batch it does not divide, --smooth with a loss other than nonsat/minimax.
 * --recipe seed (the default of gan, cgan, wgan) is the PyTorch reference's recipe for each preset;
 * --recipe pacgan is that recipe with D scoring packs of 2 samples (--pack 2): on full MNIST at
 * 3000 steps it scored FD 123 and 172 against the seed recipe's 254 and 212 (seeds 1 and 2), every
 * class nearer 10%, at two thirds of the CPU per step; --recipe tuned (dcgan's default) adds
 * --lr 4e-4 and the moving average (--ema 0.999 --ema-restat 50): FD 97 and 129 (the trained G
 * 107 and 124) at 3000 steps. --recipe modern
 * turns on the moving average of G (--ema 0.999), spectral norm in D, the hinge loss and
 * translation augmentation; measured on the bundled digits over 3 seeds at 400 DCGAN steps it is
 * worse than the reference recipe (docs/notes/GAN_NOTES.md), which is why it is not the default;
 * on full MNIST at 2000 steps neither the average nor two time scales beat it either.
 * With a moving average the scores are of the average, and the JSON adds the trained G's own
 * (fd_raw, ...); --ema-restat N first measures the average's own batch-norm statistics on N
 * batches (the copied ones are G's).
 *
 * Writes <preset>_epoch<k>.png (a grid of samples at fixed latent vectors after every epoch; the
 * conditional GAN: one row per digit), <preset>_loss.png and <preset>_log.csv, and ends with a
 * JSON line: Frechet distance to the test images in the classifier's feature space, entropy of
 * the predicted labels (ln 10 = 2.303 when uniform), the conditional accuracy. --save FILE writes
 * the model after training; --load FILE continues from one (--steps 0: only the pictures and
 * scores); a file of another preset or architecture is refused. */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_GAN_IMPLEMENTATION
#include "../genmod_gan.h"
#include "common.h"

#define ZDIM 100
#define UNBOUNDED_STEPS 1000000000L   /* "--minutes X" alone: the minutes end training */

/* The presets: the networks, loss and budget of each recipe (the PyTorch reference's). */
typedef struct preset {
    const char *name, *about, *arch, *loss;
    long steps;                 /* G steps */
    int batch;
    float lr, beta2, gp;
    int n_critic, conditional;
} preset;
static const preset PRESETS[] = {
    {"gan", "MLP GAN on MNIST (Goodfellow et al.), non-saturating or minimax loss.", "mlp", "nonsat", 1700, 100, 2e-4f,
     0.999f, 0, 1, 0},
    {"dcgan", "DCGAN on MNIST (conv generator and discriminator).", "conv", "nonsat", 1000, 64, 2e-4f, 0.999f, 0, 1, 0},
    {"cgan", "Conditional GAN on MNIST (label-conditioned G and D).", "conv", "nonsat", 1000, 64, 2e-4f, 0.999f, 0, 1, 1},
    {"wgan", "WGAN-GP (or WGAN with weight clipping) on MNIST.", "mlp", "wgan", 420, 64, 1e-4f, 0.9f, 10.0f, 5, 0},
};
#define NPRESETS ((int)(sizeof PRESETS / sizeof PRESETS[0]))

typedef struct opts {
    const char *preset, *arch, *loss, *recipe, *augment, *lr_decay;
    float gp, clip, noise, beta1, beta2, ema, r1, lr_d, width, smooth;
    int n_critic, spectral, conditional, nscore, restat, mbstd, pack, d_bn;
} opts;

/* --recipe: "seed" is the PyTorch reference's recipe for each preset (the comparison with it is
   one flag away); "modern" adds what the GAN literature since found to matter: the moving
   average of G's weights, spectral norm in D, the hinge loss, differentiable augmentation;
   "pacgan" is the reference's recipe with D scoring packs of 2 samples (PacGAN): on full MNIST at
   3000 steps it halved the seed recipe's FD on seed 1 and cut it by a fifth on seed 2, brought
   every class nearer 10%, and costs a third less CPU per step (D sees half as many inputs);
   "tuned", the DCGAN preset's default, adds twice the learning rate (4e-4, both networks) and
   samples from the moving average of G (0.999, batch-norm statistics measured on 50 batches),
   which the faster rate makes worth having (GAN_NOTES.md, session 7). The other presets keep
   "seed" (the conditional D and the WGAN-GP critic cannot pack; the MLP GAN was not measured). */
static const char *default_recipe(const preset *p) { return strcmp(p->name, "dcgan") == 0 ? "tuned" : "seed"; }

static void apply_recipe(opts *o, ex_args *a, const char *recipe) {
    o->recipe = recipe;
    if (strcmp(recipe, "pacgan") == 0 || strcmp(recipe, "tuned") == 0) o->pack = 2;
    if (strcmp(recipe, "tuned") == 0) {
        a->lr = 4e-4f;
        o->ema = 0.999f;
        o->restat = 50;
    }
    if (strcmp(recipe, "modern") != 0) return;
    o->ema = 0.999f;
    o->spectral = 1;
    if (strcmp(o->loss, "wgan") != 0) o->loss = "hinge";
    o->augment = "translation";
}

static int augment_bits(const char *s) {
    return strcmp(s, "translation") == 0 ? GM_GAN_AUG_TRANSLATION
         : strcmp(s, "cutout") == 0      ? GM_GAN_AUG_CUTOUT
         : strcmp(s, "both") == 0        ? GM_GAN_AUG_TRANSLATION | GM_GAN_AUG_CUTOUT
                                         : 0;
}

/* The last --recipe given (the other flags' defaults depend on it); NULL if none. */
static const char *find_recipe(int argc, char **argv) {
    const char *v = NULL;
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--recipe") == 0 && i + 1 < argc) v = argv[i + 1];
        else if (strncmp(argv[i], "--recipe=", 9) == 0) v = argv[i] + 9;
    }
    return v;
}

/* --preset decides the other flags' defaults, so it is read before the command line is parsed
   (the last one given counts); an unknown name is left for the parser to report. */
static const preset *find_preset(int argc, char **argv) {
    const preset *p = &PRESETS[0];
    int i, k;
    for (i = 1; i < argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--preset") == 0 && i + 1 < argc) v = argv[i + 1];
        else if (strncmp(argv[i], "--preset=", 9) == 0) v = argv[i] + 9;
        for (k = 0; v && k < NPRESETS; k++)
            if (strcmp(v, PRESETS[k].name) == 0) p = &PRESETS[k];
    }
    return p;
}

/* The flags as a gm_gan_config: the library's preset for the networks, then every flag. */
static gm_gan_config make_config(const ex_args *a, const opts *o) {
    int classes = o->conditional ? 10 : 0;
    gm_gan_config c = strcmp(o->arch, "conv") == 0 ? gm_gan_dcgan_config(classes) : gm_gan_default_config(classes);
    c.loss = gm_gan_loss_parse(o->loss);
    if (c.loss == GM_GAN_WASSERSTEIN) {
        c.discriminator.dropout = 0;        /* a critic, not a classifier: no dropout, and no batch norm */
        c.discriminator.batchnorm = 0;      /* (it would couple the examples that the penalty treats one by one) */
    }
    c.discriminator.spectral = o->spectral;
    c.discriminator.mbstd = o->mbstd;
    c.discriminator.pack = o->pack;
    if (o->d_bn >= 0) c.discriminator.batchnorm = o->d_bn;
    c.label_smooth = o->smooth;
    if (o->width != 1.0f) {     /* conv nets only (main refuses the flag otherwise): channels x width */
        int i;
        for (i = 0; i < c.generator.nhidden; i++) c.generator.hidden[i] = (int)(c.generator.hidden[i] * o->width + 0.5f);
        for (i = 0; i < c.discriminator.nhidden; i++)
            c.discriminator.hidden[i] = (int)(c.discriminator.hidden[i] * o->width + 0.5f);
    }
    c.n_critic = o->n_critic; c.gp = o->gp; c.noise = o->noise;
    c.ema = o->ema; c.r1 = o->r1; c.augment = augment_bits(o->augment);
    c.noise_steps = a->steps * o->n_critic / 2;
    c.opt_g.lr = c.opt_d.lr = a->lr;
    if (o->lr_d > 0) c.opt_d.lr = o->lr_d;      /* two time-scale update rule */
    c.opt_g.beta1 = c.opt_d.beta1 = o->beta1;
    c.opt_g.beta2 = c.opt_d.beta2 = o->beta2;
    if (o->clip > 0) {         /* WGAN with weight clipping: RMSProp (smoothing 0.99), as in the paper */
        c.opt_g.kind = c.opt_d.kind = GM_RMSPROP;
        c.opt_g.beta2 = c.opt_d.beta2 = 0.99f;
        c.opt_d.clip_value = o->clip;
    }
    c.batch = a->batch;
    c.seed = a->seed;
    return c;
}

static int build(gm_gan *gan, const ex_args *a, const opts *o) {
    gm_gan_config c = make_config(a, o);
    if (gm_gan_init(gan, &c) != 0) return -1;
    if (a->load && gm_gan_load(gan, a->load) != 0) { gm_gan_free(gan); return -1; }
    if (!a->quiet)
        printf("%s: recipe %s: G %zu weights, D %zu weights; loss %s, n_critic %d, gp %g, r1 %g, clip %g, spectral %d, "
               "noise %g, augment %s, ema %g, pack %d, smooth %g, lr G %g D %g%s%s\n",
               a->name, o->recipe, gm_params_count(&gan->generator.params), gm_params_count(&gan->discriminator.params),
               o->loss, o->n_critic, o->gp, o->r1, o->clip, o->spectral, o->noise, o->augment, o->ema, o->pack, o->smooth,
               gan->opt_g.lr,
               gan->opt_d.lr, a->load ? "; loaded " : "", a->load ? a->load : "");
    return 0;
}

/* 100 samples at fixed latent vectors: 10 x 10 grid (conditional: row r is digit r). */
static int save_grid(const ex_args *a, gm_gan *gan, const float *z, const int *labels, long epoch) {
    static float x[100 * 784];
    char file[128];
    gm_image grid, big;
    if (gm_gan_sample_z(gan, z, gan->cfg.generator.classes ? labels : NULL, 100, x) != 0) return -1;
    if (gm_image_grid(&grid, x, 100, 1, 28, 28, 10, 2, -1.0f, 1.0f) != 0) return -1;
    if (gm_image_upscale(&big, &grid, 2) != 0) { gm_image_free(&grid); return -1; }
    gm_image_free(&grid);
    snprintf(file, sizeof file, "%s_epoch%03ld.png", a->name, epoch);
    return ex_save_png(a, file, &big);
}

/* The classifier's labels of n samples (into pred): the smallest and largest class share, and the
   histogram as text ("9.8,11.0,...": percent per digit 0-9). */
static char g_hist[128];
static int class_shares(gm_digit_classifier *m, gm_graph *g, const float *x, int n, int *pred, double *lo, double *hi) {
    int count[10] = {0}, i;
    size_t k = 0;
    if (gm_digit_classifier_run(m, g, x, n, NULL, pred) != 0) return -1;
    for (i = 0; i < n; i++) count[pred[i]]++;
    for (i = 0; i < 10; i++) k += (size_t)snprintf(g_hist + k, sizeof g_hist - k, "%s%.1f", i ? "," : "", 100.0 * count[i] / n);
    *lo = *hi = (double)count[0] / n;
    for (i = 1; i < 10; i++) {
        if ((double)count[i] / n < *lo) *lo = (double)count[i] / n;
        if ((double)count[i] / n > *hi) *hi = (double)count[i] / n;
    }
    return 0;
}

/* FD, label entropy and (conditional) accuracy of n samples against the test images; the smallest
   and largest share of one class among the samples (*lo, *hi). */
static int score(const ex_args *a, gm_gan *gan, gm_digit_classifier *m, const gm_dataset *te, int n, gm_digit_scores *sc,
                 double *lo, double *hi, int dump) {
    gm_graph *g = gm_graph_new(1);          /* the classifier draws no random numbers */
    float *x = (float *)malloc((size_t)n * 784 * sizeof(float));
    int *lab = (int *)malloc((size_t)n * sizeof(int)), i, rc = -1, cond = gan->cfg.generator.classes > 0;
    if (g && x && lab) {
        for (i = 0; i < n; i++) lab[i] = i % 10;
        rc = gm_gan_sample(gan, cond ? lab : NULL, n, x);
        if (rc == 0) rc = gm_digit_score(m, g, x, cond ? lab : NULL, n, te->x, te->n, sc);
        if (rc == 0) rc = class_shares(m, g, x, n, lab, lo, hi);
        if (rc == 0 && dump) rc = ex_dump_samples(a, x, n, 28, 28, -1.0f, 1.0f);
    }
    if (rc != 0) fprintf(stderr, "%s: scoring: %s\n", a->name, gm_last_error());
    gm_graph_free(g);
    free(x); free(lab);
    return rc;
}

int main(int argc, char **argv) {
    const preset *p = find_preset(argc, argv);
    char presets[64], about[256];
    opts o;
    ex_opt extra[] = {
        {"preset", EX_CHOICE, &o.preset, "recipe: sets the defaults of the other flags", presets},
        {"arch", EX_CHOICE, &o.arch, "networks: MLP or DCGAN convolutions", "mlp|conv"},
        {"recipe", EX_CHOICE, &o.recipe, "seed: the reference's recipe; modern: --ema 0.999 --spectral 1 --loss hinge (conv: and) "
         "--augment translation; pacgan: --pack 2; tuned (dcgan's default): --pack 2 --lr 4e-4 --ema 0.999 "
         "--ema-restat 50 (sets the defaults of those flags)", "seed|modern|pacgan|tuned"},
        {"loss", EX_CHOICE, &o.loss, "GAN loss", "nonsat|minimax|lsgan|wgan|hinge"},
        {"ema", EX_FLOAT, &o.ema, "decay of the moving average of G's weights, which samples (0: off)", "0..0.99999"},
        {"ema-restat", EX_INT, &o.restat, "batches to measure the average's own batch-norm statistics on before "
         "sampling (0: G's, copied)", "0..10000"},
        {"r1", EX_FLOAT, &o.r1, "R1 penalty gamma on real data (0: off)", "0.."},
        {"augment", EX_CHOICE, &o.augment, "differentiable augmentation of real and fake before D",
         "none|translation|cutout|both"},
        {"lr-decay", EX_CHOICE, &o.lr_decay, "learning-rate schedule of both networks: constant, or linear to 0 at the "
         "end of the budget (the first of --steps and --minutes to run out)", "none|linear"},
        {"mbstd", EX_BOOL, &o.mbstd, "minibatch standard-deviation channel in D (conv D only; ProGAN)", NULL},
        {"width", EX_FLOAT, &o.width, "channel multiplier of the conv G and D (DCGAN: G 128,64 and D 64,128 times it)",
         "0.25..8"},
        {"pack", EX_INT, &o.pack, "PacGAN: D scores packs of this many samples (all real or all fake) joined along "
         "the channels; 1: off", "1..16"},
        {"smooth", EX_FLOAT, &o.smooth, "one-sided label smoothing: D's target on real data is 1 - smooth (nonsat, "
         "minimax)", "0..0.5"},
        {"d-batchnorm", EX_INT, &o.d_bn, "batch norm in D (the preset's: DCGAN 1, MLP 0)", "0..1"},
        {"lr-d", EX_FLOAT, &o.lr_d, "D's learning rate (0: --lr; two time-scale: e.g. --lr 1e-4 --lr-d 4e-4)", "0.."},
        {"gp", EX_FLOAT, &o.gp, "gradient penalty weight (WGAN-GP: 10)", "0.."},
        {"clip", EX_FLOAT, &o.clip, "clip critic weights to [-c,c] (WGAN; switches to RMSProp)", "0.."},
        {"n-critic", EX_INT, &o.n_critic, "D steps per G step", "1..100"},
        {"spectral", EX_BOOL, &o.spectral, "spectral normalization in D", NULL},
        {"noise", EX_FLOAT, &o.noise, "instance noise std at the start (anneals to 0 by half-way)", "0.."},
        {"conditional", EX_BOOL, &o.conditional, "condition G and D on the digit label", NULL},
        {"beta1", EX_FLOAT, &o.beta1, "Adam beta1", "0..1"},
        {"beta2", EX_FLOAT, &o.beta2, "Adam beta2", "0..1"},
        {"score-samples", EX_INT, &o.nscore, "samples scored against the test images", "2..100000"},
    };
    ex_args a = ex_defaults(p->name, 1, p->batch, p->lr);
    gm_dataset tr, te;
    gm_gan gan;
    gm_gan_stats st;
    gm_batcher b;
    gm_digit_scores sc, sc_raw;
    gm_digit_classifier metric;
    double lo = 0, hi = 0, lo_raw = 0, hi_raw = 0;
    char hist[128];
    gm_rng r;
    ex_run run;
    ex_json j;
    const int *idx;
    float *x, *z, last_g = 0, lr_g0, lr_d0;
    double t_start;
    int *y, k, i, grid_labels[100];
    long epoch = 0, target;
    snprintf(presets, sizeof presets, "%s|%s|%s|%s", PRESETS[0].name, PRESETS[1].name, PRESETS[2].name, PRESETS[3].name);
    o.preset = p->name; o.arch = p->arch; o.loss = p->loss; o.gp = p->gp; o.clip = 0; o.noise = 0;
    o.beta1 = 0.5f; o.beta2 = p->beta2; o.n_critic = p->n_critic; o.spectral = 0;
    o.conditional = p->conditional; o.nscore = 2000;
    o.ema = 0; o.r1 = 0; o.lr_d = 0; o.augment = "none"; o.restat = 0; o.lr_decay = "none"; o.mbstd = 0;
    o.width = 1.0f; o.pack = 1; o.smooth = 0; o.d_bn = -1;
    apply_recipe(&o, &a, find_recipe(argc, argv) ? find_recipe(argc, argv) : default_recipe(p));
    a.steps = p->steps;
    snprintf(about, sizeof about, "%s --steps counts G steps.", p->about);
    /* the budget counts G steps (no --epochs); the grid is always 10x10 at fixed z and
       --score-samples sets how many are scored and dumped (no --samples) */
    a.without = "epochs samples";
    ex_init(&a, argc, argv, about, extra, (int)(sizeof extra / sizeof extra[0]));
    ex_requires(&a, argc, argv, "ema-restat", o.ema > 0, "with --ema (it measures the average's batch-norm statistics)");
    ex_requires(&a, argc, argv, "augment", strcmp(o.arch, "conv") == 0, "with the conv networks (--arch conv): it shifts images");
    if (strcmp(o.arch, "conv") != 0 && !ex_given(argc, argv, "augment")) o.augment = "none";   /* --recipe modern on the MLP */
    if (a.minutes > 0 && !ex_given(argc, argv, "steps")) {
        /* --minutes without --steps: the minutes are the budget (the preset's step count is only
           the budget when none is given), so `--preset dcgan --minutes 5` trains for 5 minutes */
        if (o.noise > 0) {
            fprintf(stderr, "%s: --noise anneals over --steps: give --steps with --minutes\n", a.name);
            return 2;
        }
        a.steps = UNBOUNDED_STEPS;
    }
    if (o.mbstd && strcmp(o.arch, "conv") != 0) {
        fprintf(stderr, "%s: --mbstd needs the conv discriminator (--arch conv)\n", a.name);
        return 2;
    }
    if (o.width != 1.0f && strcmp(o.arch, "conv") != 0) {
        fprintf(stderr, "%s: --width scales the conv networks' channels (--arch conv)\n", a.name);
        return 2;
    }
    if (o.pack > 1 && (o.conditional || o.gp > 0 || a.batch % o.pack != 0)) {
        fprintf(stderr, "%s: --pack %d: %s\n", a.name, o.pack,
                o.conditional ? "a conditional D has one label per example, it cannot pack"
                : o.gp > 0    ? "the gradient penalty's norm is per example, not per pack (--gp 0)"
                              : "--batch must be a multiple of the pack");
        return 2;
    }
    if (o.smooth > 0 && strcmp(o.loss, "nonsat") != 0 && strcmp(o.loss, "minimax") != 0) {
        fprintf(stderr, "%s: --smooth is for the cross-entropy losses (nonsat, minimax), not %s\n", a.name, o.loss);
        return 2;
    }
    if (gm_mnist_load(&tr, &te, a.data_dir, 0, 0, -1.0f, 1.0f) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
    ex_check_batch(&a, tr.n);
    ex_metric_classifier(&a, &te, &metric);   /* a run that cannot be scored stops now, not after training */
    if (build(&gan, &a, &o) != 0) {
        fprintf(stderr, "%s: %s\n", a.name, gm_last_error());
        gm_dataset_free(&tr); gm_dataset_free(&te);
        return 1;
    }
    x = (float *)malloc((size_t)a.batch * 784 * sizeof(float));
    y = (int *)malloc((size_t)a.batch * sizeof(int));
    z = (float *)malloc(100 * ZDIM * sizeof(float));
    if (!x || !y || !z) { fprintf(stderr, "%s: out of memory\n", a.name); return 1; }
    gm_rng_seed(&r, a.seed + 7);
    for (i = 0; i < 100; i++) grid_labels[i] = i / 10;
    for (i = 0; i < 100 * ZDIM; i++) z[i] = gm_rng_normal(&r);     /* fixed latent vectors */
    if (o.conditional)     /* conditional grid: column = latent vector, row = digit */
        for (i = 0; i < 100; i++) memcpy(z + i * ZDIM, z + (i % 10) * ZDIM, ZDIM * sizeof(float));
    gm_batcher_init(&b, tr.n, a.batch, a.seed, 1);
    target = gan.g_steps + a.steps;                                  /* --steps more G steps */
    ex_run_begin(&run, &a, a.steps == UNBOUNDED_STEPS ? 0 : a.steps * o.n_critic, a.batch, "d_loss,g_loss,d_real,d_fake");
    save_grid(&a, &gan, z, grid_labels, 0);
    lr_g0 = a.lr; lr_d0 = o.lr_d > 0 ? o.lr_d : a.lr;    /* the flags' rates (a loaded file holds decayed ones) */
    t_start = ex_now();
    while (gan.g_steps < target && !ex_interrupted()) {
        if (strcmp(o.lr_decay, "linear") == 0) {    /* the fraction of the budget spent: steps or minutes */
            double done = a.steps > 0 ? (double)(gan.g_steps - (target - a.steps)) / (double)a.steps : 0;
            if (a.minutes > 0 && (ex_now() - t_start) / (60.0 * a.minutes) > done) done = (ex_now() - t_start) / (60.0 * a.minutes);
            gan.opt_g.lr = gm_gan_lr_linear(lr_g0, done);
            gan.opt_d.lr = gm_gan_lr_linear(lr_d0, done);
        }
        if ((k = gm_batcher_next(&b, &idx)) == 0) {          /* end of an epoch: a picture */
            save_grid(&a, &gan, z, grid_labels, ++epoch);
            continue;
        }
        gm_dataset_gather(&tr, idx, k, x, y);
        if (gm_gan_train_step(&gan, x, o.conditional ? y : NULL, k, &st) != 0) {
            fprintf(stderr, "%s: %s\n", a.name, gm_last_error());
            return 1;
        }
        if (st.g_step) last_g = st.g_loss;
        {   float m[4];
            m[0] = st.d_loss; m[1] = last_g; m[2] = st.d_real; m[3] = st.d_fake;
            ex_run_step(&run, m); }
    }
    ex_run_end(&run);
    if (a.save && gm_gan_save(&gan, a.save) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
    if (a.save && !a.quiet) printf("wrote %s\n", a.save);
    if (o.restat > 0 && gm_gan_ema_recalibrate(&gan, o.restat) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
    save_grid(&a, &gan, z, grid_labels, ++epoch);
    {   char file[128];
        snprintf(file, sizeof file, "%s_loss.png", a.name);
        ex_run_plot(&run, file, a.name, 0); }
    if (score(&a, &gan, &metric, &te, o.nscore, &sc, &lo, &hi, 1) != 0) return 1;
    snprintf(hist, sizeof hist, "%s", g_hist);
    if (gan.use_ema) {      /* the trained G too, for comparison with its average */
        gan.use_ema = 0;
        if (score(&a, &gan, &metric, &te, o.nscore, &sc_raw, &lo_raw, &hi_raw, 0) != 0) return 1;
        gan.use_ema = 1;
    }
    if (!a.quiet) printf("%s: FD %.2f (classifier features, %d samples vs %d test), label entropy %.3f nats%s", a.name, sc.fd,
                         o.nscore, te.n, sc.entropy, o.conditional ? "" : "\n");
    if (!a.quiet && o.conditional) printf(", conditional accuracy %.3f\n", sc.accuracy);
    if (!a.quiet) printf("%s: classes from %.1f%% to %.1f%% of the samples%s\n", a.name, 100 * lo, 100 * hi,
                         gan.use_ema ? " (moving average of G)" : "");
    if (!a.quiet && gan.use_ema)
        printf("%s: the trained G itself: FD %.2f, label entropy %.3f, classes from %.1f%% to %.1f%%\n", a.name, sc_raw.fd,
               sc_raw.entropy, 100 * lo_raw, 100 * hi_raw);
    ex_json_init(&j);
    ex_json_str(&j, "model", a.name);
    ex_json_str(&j, "arch", o.arch);
    ex_json_str(&j, "loss", o.loss);
    ex_json_str(&j, "recipe", o.recipe);
    ex_json_num(&j, "ema", o.ema);
    ex_json_str(&j, "lr_decay", o.lr_decay);
    ex_json_num(&j, "mbstd", o.mbstd);
    ex_json_num(&j, "lr", a.lr);
    ex_json_num(&j, "ema_restat", o.restat);
    ex_json_num(&j, "width", o.width);
    ex_json_num(&j, "pack", o.pack);
    ex_json_num(&j, "smooth", o.smooth);
    ex_json_num(&j, "d_batchnorm", gan.discriminator.arch.batchnorm);
    ex_json_num(&j, "g_steps", (double)gan.g_steps);
    ex_json_num(&j, "d_steps", (double)gan.d_steps);
    ex_json_num(&j, "fd", sc.fd);
    ex_json_num(&j, "label_entropy", sc.entropy);
    ex_json_num(&j, "class_min", lo);
    ex_json_num(&j, "class_max", hi);
    ex_json_str(&j, "class_percent", hist);
    if (gan.use_ema) {
        ex_json_num(&j, "fd_raw", sc_raw.fd);
        ex_json_num(&j, "label_entropy_raw", sc_raw.entropy);
        ex_json_num(&j, "class_min_raw", lo_raw);
        ex_json_num(&j, "class_max_raw", hi_raw);
    }
    if (o.conditional) ex_json_num(&j, "cond_accuracy", sc.accuracy);
    ex_json_num(&j, "score_samples", o.nscore);
    ex_json_num(&j, "train_s", run.step > 0 ? ex_now() - run.t0 : 0);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&b);
    gm_gan_free(&gan);
    gm_digit_classifier_free(&metric);
    free(x); free(y); free(z);
    gm_dataset_free(&tr); gm_dataset_free(&te);
    return 0;
}
