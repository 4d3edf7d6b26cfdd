/* diffusion.c: a denoising diffusion model (DDPM, Ho et al. 2020) with a small U-Net on the MNIST
 * digits (images in [-1, 1]), sampled with DDPM and DDIM, class-conditional with classifier-free
 * guidance, scored with the metric classifier.
 *
 *   cc -O2 -I. examples/diffusion.c -o build/diffusion -lm -lpthread
 *   ./build/diffusion                         # 10 minutes of training, pictures and scores in out/
 *   ./build/diffusion --minutes 2 --base 16   # a quicker, smaller run
 *   ./build/diffusion --steps 430 --minutes 0 # a step budget instead of a time budget
 *   ./build/diffusion --recipe reference      # the PyTorch reference's recipe (below)
 *   ./build/diffusion --save d.safetensors    # then: --load d.safetensors --steps 0 (sampling only)
 *
 * The network is the PyTorch reference's (genmod_diffusion.h, GM_DIFF_NET_UNET): base 32
 * channels, T = 1000, linear betas, eps prediction, EMA 0.999 with warm-up (sampling uses the EMA
 * weights), label dropout 0.1. Two recipes (--recipe sets the defaults of --batch, --lr, --clip-x0):
 *   fast       (default) Adam 1e-3, batch 64, predicted x_0 clipped to [-1, 1] while sampling: more
 *              steps in a short budget (in the PyTorch reference's 10-minute runs it reached a
 *              test loss of 0.026 against 0.039 for its own recipe, and visibly better samples)
 *   reference  the PyTorch reference's: Adam 2e-4, batch 128, no clipping
 * Writes
 *   diffusion_train<k>.png    samples (DDIM 25 steps, fixed noise) at 5 points of the training
 *   diffusion_reverse.png     the reverse process x_T ... x_0 of 8 samples (DDIM 50, 11 frames)
 *   diffusion_ddim.png        the same noise through DDIM with 10, 25, 50, 100 steps (one row each)
 *   diffusion_guided.png      one row per digit, guidance weight --guidance
 *   diffusion_loss.png        the training loss
 * and a JSON line: final loss (mean of the last 100 steps), training samples/s, sampling seconds
 * per image for DDIM-50 and DDPM (1000 steps), and the Frechet distance to the test images and the
 * label entropy in the digit classifier's features, with the guided samples' accuracy.
 * --samples N (same as --score-samples N) DDIM samples are scored; --dump-samples FILE.idx writes
 * them. */
#include "png.h"
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_DIFFUSION_IMPLEMENTATION
#include "../genmod_diffusion.h"
#define GENMOD_GAN_IMPLEMENTATION
#include "../genmod_gan.h"
#include "common.h"

typedef struct opts {
    float minutes, guidance, eta, ema;
    int base, conditional, sample_steps, nscore, vpred, ddpm, clip, attn;
    const char *schedule, *recipe;
} opts;

/* The last --recipe given (the defaults of --batch, --lr and --clip-x0 depend on it), or "fast". */
static const char *find_recipe(int argc, char **argv) {
    const char *v = "fast";
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--recipe") == 0 && i + 1 < argc) v = argv[i + 1];
        else if (strncmp(argv[i], "--recipe=", 9) == 0) v = argv[i] + 9;
    }
    return v;
}

/* n images (n * 784 in [-1, 1]) as a grid of `cols` columns, upscaled 2x, written as file. */
static int save_images(const ex_args *a, const char *file, const float *x, int n, int cols) {
    gm_image img, big;
    if (gm_image_grid(&img, x, n, 1, 28, 28, cols, 2, -1.0f, 1.0f) != 0) { fprintf(stderr, "%s: %s\n", a->name, gm_last_error()); return -1; }
    if (gm_image_upscale(&big, &img, 2) != 0) { gm_image_free(&img); fprintf(stderr, "%s: %s\n", a->name, gm_last_error()); return -1; }
    gm_image_free(&img);
    return ex_save_png(a, file, &big);
}

static int fail(const ex_args *a) {
    fprintf(stderr, "%s: %s\n", a->name, gm_last_error());
    return -1;
}

/* DDIM with `steps` steps from the given noise; seconds per image into *spi. */
static int ddim(gm_diffusion *d, const int *lab, int n, int steps, float eta, float w, const float *noise, float *x,
                double *spi) {
    gm_diffusion_sampler sp = gm_diffusion_ddim_sampler(steps, eta);
    double t0 = ex_now();
    int rc = gm_diffusion_sample_with(d, lab, n, &sp, lab ? w : 0.0f, noise, x);
    if (spi) *spi = (ex_now() - t0) / n;
    return rc;
}

/* The pictures after training: the reverse process, DDIM at several step counts, guided rows. */
static int pictures(const ex_args *a, gm_diffusion *d, const opts *o, const float *noise, double *spi_ddim, double *spi_ddpm) {
    static float x[100 * 784], traj[11 * 8 * 784], frames[88 * 784];
    static int lab[100];
    const int steps[4] = {10, 25, 50, 100};
    gm_diffusion_sampler sp = gm_diffusion_ddim_sampler(50, 0);
    int i, f, k, *L = o->conditional ? lab : NULL;
    double t0;
    for (i = 0; i < 100; i++) lab[i] = i / 10;
    /* the reverse process: 8 samples, 11 frames from x_T to x_0 */
    sp.frames = 11; sp.traj = traj;
    if (gm_diffusion_sample_with(d, L ? lab : NULL, 8, &sp, 0, noise, x) != 0) return fail(a);
    for (i = 0; i < 8; i++)
        for (f = 0; f < 11; f++) memcpy(frames + (size_t)(i * 11 + f) * 784, traj + ((size_t)f * 8 + i) * 784, 784 * sizeof(float));
    if (save_images(a, "diffusion_reverse.png", frames, 88, 11) != 0) return -1;
    /* DDIM at 10, 25, 50, 100 steps, the same noise: one row of 10 each */
    for (k = 0; k < 4; k++)
        if (ddim(d, NULL, 10, steps[k], 0, 0, noise, x + k * 10 * 784, NULL) != 0) return fail(a);
    if (save_images(a, "diffusion_ddim.png", x, 40, 10) != 0) return -1;
    /* timing: DDIM-50 on 20 images, DDPM on 4 (1000 network calls each) */
    if (ddim(d, NULL, 20, 50, 0, 0, noise, x, spi_ddim) != 0) return fail(a);
    t0 = ex_now();
    *spi_ddpm = -1;
    if (o->ddpm) {
        gm_diffusion_sampler dp = gm_diffusion_ddpm_sampler();
        if (gm_diffusion_sample_with(d, NULL, 4, &dp, 0, noise, x) != 0) return fail(a);
        *spi_ddpm = (ex_now() - t0) / 4;
    }
    /* one row per digit with guidance */
    if (o->conditional) {
        if (ddim(d, lab, 100, o->sample_steps, o->eta, o->guidance, NULL, x, NULL) != 0) return fail(a);
        if (save_images(a, "diffusion_guided.png", x, 100, 10) != 0) return -1;
    }
    return 0;
}

/* FD, label entropy and (conditional, guided) accuracy of n DDIM samples against the test images;
   --dump-samples writes them. */
static int score(const ex_args *a, gm_diffusion *d, const opts *o, gm_digit_classifier *m, const gm_dataset *te, int n,
                 gm_digit_scores *sc) {
    gm_graph *g = gm_graph_new(1);
    float *x = (float *)malloc((size_t)n * 784 * sizeof(float));
    int *lab = (int *)malloc((size_t)n * sizeof(int)), i, rc = -1;
    for (i = 0; lab && i < n; i++) lab[i] = i % 10;
    if (g && x && lab) {
        rc = ddim(d, o->conditional ? lab : NULL, n, o->sample_steps, o->eta, o->guidance, NULL, x, NULL);
        if (rc == 0) rc = gm_digit_score(m, g, x, o->conditional ? lab : NULL, n, te->x, te->n, sc);
        if (rc == 0) rc = ex_dump_samples(a, x, n, 28, 28, -1.0f, 1.0f);
    }
    if (rc != 0) fprintf(stderr, "%s: scoring: %s\n", a->name, gm_last_error());
    gm_graph_free(g);
    free(x);
    free(lab);
    return rc;
}

int main(int argc, char **argv) {
    opts o;
    ex_opt extra[] = {
        {"base", EX_INT, &o.base, "U-Net base channels (a multiple of 8)", "8..256"},
        {"attn", EX_INT, &o.attn, "1: self-attention at 7x7 between the middle blocks", "0..1"},
        {"conditional", EX_INT, &o.conditional, "1: class-conditional (label dropout 0.1) for guidance", "0..1"},
        {"guidance", EX_FLOAT, &o.guidance, "classifier-free guidance weight w", "0..100"},
        {"sample-steps", EX_INT, &o.sample_steps, "DDIM steps for the scores and --dump-samples", "1..1000"},
        {"eta", EX_FLOAT, &o.eta, "DDIM noise (0: deterministic)", "0..1"},
        {"ema", EX_FLOAT, &o.ema, "EMA decay of the weights used for sampling", "0..0.99999"},
        {"schedule", EX_CHOICE, &o.schedule, "noise schedule", "linear|cosine"},
        {"v", EX_BOOL, &o.vpred, "v prediction instead of eps", NULL},
        {"ddpm", EX_INT, &o.ddpm, "1: time the DDPM sampler (1000 steps) too", "0..1"},
        {"score-samples", EX_INT, &o.nscore, "DDIM samples scored against the test images", "2..100000"},
        {"clip-x0", EX_INT, &o.clip, "1: clip the predicted x_0 to [-1, 1] while sampling", "0..1"},
        {"recipe", EX_CHOICE, &o.recipe, "fast: batch 64, lr 1e-3, --clip-x0 1; reference: the PyTorch reference's "
                                         "batch 128, lr 2e-4, --clip-x0 0", "fast|reference"},
    };
    int ref = strcmp(find_recipe(argc, argv), "reference") == 0;
    ex_args a = ex_defaults("diffusion", 1, ref ? 128 : 64, ref ? 2e-4f : 1e-3f);
    gm_dataset tr, te;
    gm_diffusion_config c;
    gm_diffusion d;
    gm_diffusion_stats st;
    gm_batcher b;
    gm_digit_scores sc;
    gm_digit_classifier metric;
    gm_rng r;
    ex_run run;
    ex_json j;
    const int *idx;
    static float noise[100 * 784], grid[36 * 784], last[100];   /* last: the last 100 losses */
    float *x;
    int *y, k, i, pic = 0, rc = 0;
    long start, nsteps = 0;
    double t0, train_s = 0, spi_ddim = -1, spi_ddpm = -1, recent = 0, cpu0, cpu_s;
    a.without = "epochs";   /* the budget is --minutes or --steps */
    a.minutes = 10; o.base = 32; o.attn = 0; o.conditional = 1; o.guidance = 1; o.sample_steps = 50; o.eta = 0; o.ema = 0.999f;
    o.schedule = "linear"; o.vpred = 0; o.ddpm = 1; o.nscore = 1000; o.clip = !ref; o.recipe = ref ? "reference" : "fast";
    ex_init(&a, argc, argv, "DDPM/DDIM with a U-Net on MNIST, classifier-free guidance.", extra,
            (int)(sizeof extra / sizeof extra[0]));
    o.minutes = (float)(ex_take_budget() / 60);   /* kept here: the progress pictures do not count */
    if (ex_given(argc, argv, "samples") && ex_given(argc, argv, "score-samples")) {
        fprintf(stderr, "%s: --samples and --score-samples both set how many samples are scored: give one\n", a.name);
        return 2;
    }
    if (ex_given(argc, argv, "samples")) o.nscore = a.samples;
    if (o.nscore < 2) { fprintf(stderr, "%s: --samples must be at least 2 (the FD needs a covariance)\n", a.name); return 2; }
    if (!o.conditional && o.guidance != 0 && ex_given(argc, argv, "guidance")) {
        fprintf(stderr, "%s: --guidance %g needs a class-conditional model (--conditional 1)\n", a.name, (double)o.guidance);
        return 2;
    }
    if (a.steps < 0 && o.minutes <= 0) { fprintf(stderr, "%s: give --minutes > 0 or --steps\n", a.name); return 2; }
    if (gm_mnist_load(&tr, &te, a.data_dir, 0, 0, -1.0f, 1.0f) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
    ex_check_batch(&a, tr.n);
    ex_metric_classifier(&a, &te, &metric);   /* a run that cannot be scored stops now, not after training */
    c = gm_diffusion_default_config(1, 28, 28);
    c.base = o.base; c.temb = o.base; c.attn = o.attn; c.classes = o.conditional ? 10 : 0; c.ema_decay = o.ema;
    c.schedule = strcmp(o.schedule, "cosine") == 0 ? GM_DIFF_COSINE : GM_DIFF_LINEAR;
    c.prediction = o.vpred ? GM_DIFF_PRED_V : GM_DIFF_PRED_EPS;
    c.lr = a.lr; c.batch = a.batch; c.seed = a.seed; c.clip_x0 = o.clip;
    if (gm_diffusion_init(&d, &c) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 2; }
    if (a.load && gm_diffusion_load(&d, a.load) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
    x = (float *)malloc((size_t)a.batch * 784 * sizeof(float));
    y = (int *)malloc((size_t)a.batch * sizeof(int));
    if (!x || !y) { fprintf(stderr, "%s: out of memory\n", a.name); return 1; }
    gm_rng_seed(&r, a.seed + 7);
    for (i = 0; i < 100 * 784; i++) noise[i] = gm_rng_normal(&r);   /* fixed x_T for the pictures */
    gm_batcher_init(&b, tr.n, a.batch, a.seed, 1);
    start = d.step;
    ex_run_begin(&run, &a, a.steps >= 0 ? a.steps : 0, a.batch, "loss");
    t0 = ex_now();
    cpu0 = (double)clock() / CLOCKS_PER_SEC;
    while (!ex_interrupted()) {
        double el = ex_now() - t0;
        if (a.steps >= 0 && d.step - start >= a.steps) break;
        if (o.minutes > 0 && el >= 60.0 * o.minutes) break;
        /* five progress grids, spread over the budget (time or steps) */
        if (o.minutes > 0 ? el >= 60.0 * o.minutes * pic / 5 : (d.step - start) >= a.steps * pic / 5) {
            char file[64];
            double tp = ex_now();
            snprintf(file, sizeof file, "diffusion_train%d.png", pic++);
            if (ddim(&d, NULL, 36, 25, 0, 0, noise, grid, NULL) != 0 || save_images(&a, file, grid, 36, 6) != 0) { rc = -1; break; }
            t0 += ex_now() - tp;   /* pictures do not eat into the training budget */
            continue;
        }
        if ((k = gm_batcher_next(&b, &idx)) == 0) continue;
        gm_dataset_gather(&tr, idx, k, x, y);
        if (gm_diffusion_train_step(&d, x, o.conditional ? y : NULL, k, &st) != 0) { rc = fail(&a); break; }
        nsteps++;
        last[(nsteps - 1) % 100] = st.loss;
        ex_run_step(&run, &st.loss);
    }
    train_s = ex_now() - t0;
    cpu_s = (double)clock() / CLOCKS_PER_SEC - cpu0;   /* all threads; includes the progress grids */
    ex_run_end(&run);
    if (rc == 0 && a.save) {
        if ((rc = gm_diffusion_save(&d, a.save)) != 0) fail(&a);
        else if (!a.quiet) printf("wrote %s\n", a.save);
    }
    if (nsteps > 0) ex_run_plot(&run, "diffusion_loss.png", "diffusion loss (eps MSE)", 1);
    if (rc == 0) rc = pictures(&a, &d, &o, noise, &spi_ddim, &spi_ddpm);
    memset(&sc, 0, sizeof sc);
    if (rc == 0) rc = score(&a, &d, &o, &metric, &te, o.nscore, &sc);
    if (rc == 0 && !a.quiet)
        printf("%s: FD %.2f (%d DDIM-%d samples vs %d test), label entropy %.3f nats, guided accuracy %.3f\n", a.name,
               sc.fd, o.nscore, o.sample_steps, te.n, sc.entropy, sc.accuracy);
    ex_json_init(&j);
    ex_json_str(&j, "model", "diffusion");
    ex_json_str(&j, "recipe", o.recipe);
    ex_json_num(&j, "attn", o.attn);
    ex_json_num(&j, "steps", (double)d.step);
    for (i = 0; i < (nsteps < 100 ? nsteps : 100); i++) recent += last[i] / (nsteps < 100 ? nsteps : 100);
    ex_json_num(&j, "final_loss", recent);
    ex_json_num(&j, "train_s", train_s);
    ex_json_num(&j, "train_cpu_s", cpu_s);
    ex_json_num(&j, "train_samples_per_s", train_s > 0 ? (double)nsteps * a.batch / train_s : 0);
    ex_json_num(&j, "ddim50_s_per_image", spi_ddim);
    ex_json_num(&j, "ddpm_s_per_image", spi_ddpm);
    ex_json_num(&j, "fd", rc == 0 ? sc.fd : -1);
    ex_json_num(&j, "label_entropy", rc == 0 ? sc.entropy : -1);
    if (o.conditional) ex_json_num(&j, "guided_accuracy", rc == 0 ? sc.accuracy : -1);
    ex_json_num(&j, "guidance", o.conditional ? o.guidance : 0);
    ex_json_num(&j, "score_samples", o.nscore);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&b);
    gm_diffusion_free(&d);
    gm_digit_classifier_free(&metric);
    free(x);
    free(y);
    gm_dataset_free(&tr);
    gm_dataset_free(&te);
    return rc == 0 ? 0 : 1;
}
