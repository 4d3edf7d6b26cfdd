/* autoencoder: an undercomplete autoencoder on MNIST digits (genmod_vae.h).
 *   cc -O2 -I. examples/autoencoder.c -o autoencoder -lm -lpthread && ./autoencoder
 * Trains the reference MLP autoencoder (784-784-256-128 ReLU code, decoder 128-128-256-784 with a
 * sigmoid output, MSE, RMSProp lr 1e-3, batch 256: the PyTorch reference's) on the bundled digits
 * and writes to out/:
 *   autoencoder_reconstructions.png   test digits next to their reconstructions
 *                                     (--denoise: clean target | noisy input | output)
 *   autoencoder_loss.png              training curves
 * and ends with one JSON line: test MSE per pixel, squared error per image, the code's mean
 * activation and fraction of near-zero values.
 * Variants: --conv (conv encoder, transposed-conv decoder), --denoise (Gaussian noise --noise and
 * masking noise --mask on the input, trained to give the clean image), --sparse l1|kl (penalty
 * --sparse-weight on the code; kl uses a sigmoid code and the target mean --sparse-target).
 * --save FILE writes the trained model; --load FILE starts from a saved one (same --conv, --code,
 * --sparse kl as when it was saved); with --epochs 0 the loaded model is only evaluated and drawn. */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_VAE_IMPLEMENTATION
#include "../genmod_vae.h"
#include "common.h"

typedef struct opts {
    int conv, denoise, code;
    float noise, mask, sparse_weight, sparse_target;
    const char *sparse;
} opts;

static void die(const ex_args *a, const char *what) {
    fprintf(stderr, "%s: %s: %s\n", a->name, what, gm_last_error());
    exit(1);
}

static gm_ae_config make_config(const opts *o, const ex_args *a) {
    gm_ae_config c = o->conv ? gm_ae_conv_config() : gm_ae_default_config();
    c.arch.enc[c.arch.n_enc - 1] = o->code;
    if (o->denoise) { c.noise_sigma = o->noise; c.mask_prob = o->mask; }
    if (!strcmp(o->sparse, "l1")) c.sparsity = GM_AE_SPARSE_L1;
    if (!strcmp(o->sparse, "kl")) { c.sparsity = GM_AE_SPARSE_KL; c.code_act = GM_ACT_SIGMOID; }
    c.sparsity_weight = o->sparse_weight > 0 ? o->sparse_weight : (c.sparsity == GM_AE_SPARSE_KL ? 3e-3f : 1e-4f);
    c.sparsity_target = o->sparse_target;
    c.lr = a->lr;
    c.batch = a->batch;
    c.seed = a->seed;
    return c;
}

static void train(gm_ae *m, const gm_dataset *tr, const ex_args *a, ex_run *run, long total) {
    gm_batcher b;
    const int *idx;
    int k;
    long step = 0;
    float *xb = (float *)malloc(sizeof(float) * 784 * a->batch);
    if (!xb || gm_batcher_init(&b, tr->n, a->batch, a->seed, 0) != 0) die(a, "batcher");
    while (step < total && !ex_interrupted()) {
        gm_ae_stats st;
        float metrics[4];
        if ((k = gm_batcher_next(&b, &idx)) == 0) continue;
        gm_dataset_gather(tr, idx, k, xb, NULL);
        if (gm_ae_train_step(m, xb, NULL, k, &st) != 0) die(a, "training");
        metrics[0] = st.loss; metrics[1] = st.mse; metrics[2] = st.penalty; metrics[3] = st.code_zero_frac;
        ex_run_step(run, metrics);
        step++;
    }
    gm_batcher_free(&b);
    free(xb);
}

/* Panels of 32 test digits: original | (noisy input |) reconstruction, enlarged 2x. */
static void picture(gm_ae *m, const gm_dataset *te, const ex_args *a, int denoise) {
    int n = 32, np = 0, i;
    float *noisy = (float *)malloc(sizeof(float) * 784 * n), *out = (float *)malloc(sizeof(float) * 784 * n);
    gm_image panels[3], both, big;
    const char *caps[3];
    const float *src[3];
    if (!noisy || !out) die(a, "out of memory");
    if (denoise) {
        if (gm_ae_corrupt(m, te->x, n, noisy) != 0) die(a, "corrupt");
        if (gm_ae_reconstruct(m, noisy, n, out) != 0) die(a, "reconstruct");
        caps[0] = "clean target"; caps[1] = "noisy input"; caps[2] = "output";
        src[0] = te->x; src[1] = noisy; src[2] = out; np = 3;
    } else {
        if (gm_ae_reconstruct(m, te->x, n, out) != 0) die(a, "reconstruct");
        caps[0] = "test digits"; caps[1] = "reconstructions";
        src[0] = te->x; src[1] = out; np = 2;
    }
    for (i = 0; i < np; i++)
        if (gm_image_grid(&panels[i], src[i], n, 1, 28, 28, 4, 2, 0.0f, 1.0f) != 0) die(a, "grid");
    if (gm_image_hstack(&both, panels, np, caps, 8) != 0 || gm_image_upscale(&big, &both, 2) != 0) die(a, "picture");
    for (i = 0; i < np; i++) gm_image_free(&panels[i]);
    gm_image_free(&both);
    ex_save_png(a, "autoencoder_reconstructions.png", &big);
    free(noisy);
    free(out);
}

int main(int argc, char **argv) {
    opts o;
    ex_args a = ex_defaults("autoencoder", 20, 256, 1e-3f);
    ex_run run;
    ex_json j;
    gm_dataset tr, te;
    gm_ae m;
    gm_ae_config cfg;
    gm_ae_stats ev;
    double t0 = ex_now(), t_train;
    long total;
    ex_opt extra[] = {
        {"conv", EX_BOOL, &o.conv, "convolutional encoder and decoder (Adam)", NULL},
        {"code", EX_INT, &o.code, "code size", "1.."},
        {"denoise", EX_BOOL, &o.denoise, "train on corrupted inputs to reconstruct the clean ones", NULL},
        {"noise", EX_FLOAT, &o.noise, "--denoise: Gaussian noise std", "0.."},
        {"mask", EX_FLOAT, &o.mask, "--denoise: probability of zeroing each pixel", "0..0.99"},
        {"sparse", EX_CHOICE, &o.sparse, "sparsity penalty on the code", "none|l1|kl"},
        {"sparse-weight", EX_FLOAT, &o.sparse_weight, "penalty weight (0: 1e-4 for l1, 3e-3 for kl)", "0.."},
        {"sparse-target", EX_FLOAT, &o.sparse_target, "kl: target mean activation", "0.001..0.999"},
    };
    memset(&o, 0, sizeof o);
    o.code = 128; o.noise = 0.3f; o.mask = 0.0f; o.sparse = "none"; o.sparse_target = 0.05f;
    ex_init(&a, argc, argv, "Autoencoder on MNIST: plain, --denoise, --sparse, --conv (genmod_vae.h).", extra,
            (int)(sizeof extra / sizeof extra[0]));
    ex_requires(&a, argc, argv, "noise", o.denoise, "with --denoise");
    ex_requires(&a, argc, argv, "mask", o.denoise, "with --denoise");
    ex_requires(&a, argc, argv, "sparse-weight", strcmp(o.sparse, "none") != 0, "with --sparse l1|kl");
    ex_requires(&a, argc, argv, "sparse-target", strcmp(o.sparse, "kl") == 0, "with --sparse kl");
    ex_requires(&a, argc, argv, "samples", a.dump_samples != NULL, "with --dump-samples (how many test reconstructions it writes)");
    if (gm_mnist_load(&tr, &te, a.data_dir, 0, 0, 0.0f, 1.0f) != 0) die(&a, "data");
    ex_check_batch(&a, tr.n);
    total = ex_total_steps(&a, (tr.n + a.batch - 1) / a.batch);
    cfg = make_config(&o, &a);
    if (gm_ae_init(&m, &cfg) != 0) die(&a, "model");
    if (a.load && gm_ae_load(&m, a.load) != 0) die(&a, "load");
    if (!a.quiet)
        printf("autoencoder: %d train / %d test images from %s; %s, code %d%s%s%s, %s lr %g, batch %d, %ld steps\n",
               tr.n, te.n, a.data_dir, o.conv ? "conv" : "dense", o.code, o.denoise ? ", denoising" : "",
               strcmp(o.sparse, "none") ? ", sparse " : "", strcmp(o.sparse, "none") ? o.sparse : "",
               cfg.optim == GM_ADAM ? "Adam" : "RMSProp", a.lr, a.batch, total);
    ex_run_begin(&run, &a, total, a.batch, "loss,mse,penalty,code_zero_frac");
    train(&m, &tr, &a, &run, total);
    ex_run_end(&run);
    t_train = ex_now() - t0;
    if (a.save && gm_ae_save(&m, a.save) != 0) die(&a, "save");
    if (gm_ae_evaluate(&m, te.x, te.n, &ev) != 0) die(&a, "evaluate");
    if (!a.quiet)
        printf("test MSE %.6f per pixel (%.3f per image); code mean %.4f, %.1f%% of code values below %g\n", ev.mse,
               ev.mse * 784, ev.code_mean, 100 * ev.code_zero_frac, cfg.zero_thresh);
    ex_run_plot(&run, "autoencoder_loss.png", "autoencoder training", 1);
    picture(&m, &te, &a, o.denoise);
    if (a.dump_samples) {   /* no prior to sample: the test reconstructions, as the PyTorch reference dumps */
        int n = a.samples < te.n ? a.samples : te.n;
        float *r = (float *)malloc(sizeof(float) * 784 * n);
        if (!r || gm_ae_reconstruct(&m, te.x, n, r) != 0) die(&a, "reconstruct");
        ex_dump_samples(&a, r, n, 28, 28, 0.0f, 1.0f);
        free(r);
    }
    ex_json_init(&j);
    ex_json_str(&j, "model", o.conv ? "conv_autoencoder" : "autoencoder");
    ex_json_str(&j, "data", a.data_dir);
    ex_json_num(&j, "n_train", tr.n);
    ex_json_num(&j, "steps", (double)run.step);   /* done: --minutes or Ctrl-C may end training early */
    ex_json_num(&j, "batch", a.batch);
    ex_json_num(&j, "lr", a.lr);
    ex_json_num(&j, "denoise", o.denoise);
    ex_json_str(&j, "sparse", o.sparse);
    ex_json_num(&j, "test_mse_per_pixel", ev.mse);
    ex_json_num(&j, "test_sse_per_image", ev.mse * 784.0);
    ex_json_num(&j, "code_mean", ev.code_mean);
    ex_json_num(&j, "code_zero_frac", ev.code_zero_frac);
    ex_json_num(&j, "train_s", t_train);
    ex_json_num(&j, "wall_s", ex_now() - t0);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_ae_free(&m);
    gm_dataset_free(&tr);
    gm_dataset_free(&te);
    return 0;
}
