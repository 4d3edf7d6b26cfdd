/* vae: a variational autoencoder on MNIST digits (genmod_vae.h).
 *   cc -O2 -I. examples/vae.c -o vae -lm -lpthread && ./vae
 * Trains the reference MLP VAE (784-784-256-128 ELU, z 10, decoder 256-384-512 ELU, Bernoulli
 * likelihood on grayscale pixels, Adam 1e-3, batch 100: the PyTorch reference's) on the bundled
 * digits, then writes to out/:
 *   vae_samples.png          prior samples z ~ N(0, I) (with --conditional: one row per digit)
 *   vae_reconstructions.png  test digits and their reconstructions
 *   vae_interpolation.png    decoded straight lines between pairs of test digits in latent space
 *   vae_loss.png             training curves (loss, reconstruction, KL, beta)
 *   vae_latent.png, vae_manifold.png   with --latent 2: the test set's latent means coloured by
 *                            digit, and the decoder over a grid of z
 * and ends with one JSON line: test negative ELBO (nats, bits/dim), its reconstruction and KL
 * parts, the KL of each latent dimension, and an importance-weighted -log p(x) (--iw samples).
 * Variants: --beta B, --beta-schedule constant|linear|cyclical (--beta-steps), --conv,
 * --conditional, --likelihood bernoulli|gaussian|gaussian-learned. Full MNIST: --data DIR.
 * --save FILE writes the trained model; --load FILE starts from a saved one (same flags that shape
 * the model: --latent, --conv, --conditional, --likelihood); with --epochs 0 nothing is trained and
 * the loaded model is only evaluated and drawn. */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_VAE_IMPLEMENTATION
#include "../genmod_vae.h"
#include "common.h"

typedef struct opts {
    int latent, conv, conditional, beta_steps, iw, iw_n;
    float beta, beta_start;
    const char *schedule, *likelihood;
} opts;

static gm_vae_config make_config(const opts *o, const ex_args *a) {
    gm_vae_config c = o->conv ? gm_vae_conv_config() : gm_vae_default_config();
    c.latent = o->latent;
    c.nclasses = o->conditional ? 10 : 0;
    c.likelihood = !strcmp(o->likelihood, "gaussian") ? GM_VAE_GAUSSIAN
                 : !strcmp(o->likelihood, "gaussian-learned") ? GM_VAE_GAUSSIAN_LEARNED : GM_VAE_BERNOULLI;
    c.beta.beta = o->beta;
    c.beta.start = o->beta_start;
    c.beta.steps = o->beta_steps;
    c.beta.kind = !strcmp(o->schedule, "linear") ? GM_BETA_LINEAR : !strcmp(o->schedule, "cyclical") ? GM_BETA_CYCLICAL
                                                                                                     : GM_BETA_CONSTANT;
    c.lr = a->lr;
    c.batch = a->batch;
    c.seed = a->seed;
    return c;
}

static void die(const ex_args *a, const char *what) {
    fprintf(stderr, "%s: %s: %s\n", a->name, what, gm_last_error());
    exit(1);
}

/* A grid picture of n images, enlarged 2x, written to the output directory. */
static void save_grid(const ex_args *a, const char *file, const float *x, int n, int cols) {
    gm_image g, big;
    if (gm_image_grid(&g, x, n, 1, 28, 28, cols, 2, 0.0f, 1.0f) != 0 || gm_image_upscale(&big, &g, 2) != 0) die(a, file);
    gm_image_free(&g);
    ex_save_png(a, file, &big);
}

static void train(gm_vae *m, const gm_dataset *tr, ex_args *a, ex_run *run, long total) {
    gm_batcher b;
    const int *idx;
    int k;
    long step = 0;
    float *xb = (float *)malloc(sizeof(float) * 784 * a->batch);
    int *yb = (int *)malloc(sizeof(int) * a->batch);
    if (!xb || !yb || gm_batcher_init(&b, tr->n, a->batch, a->seed, 0) != 0) die(a, "batcher");
    while (step < total && !ex_interrupted()) {
        gm_vae_stats st;
        float metrics[4];
        if ((k = gm_batcher_next(&b, &idx)) == 0) continue;   /* end of an epoch */
        gm_dataset_gather(tr, idx, k, xb, yb);
        if (gm_vae_train_step(m, xb, m->cfg.nclasses ? yb : NULL, k, &st) != 0) die(a, "training");
        metrics[0] = st.loss; metrics[1] = st.recon; metrics[2] = st.kl; metrics[3] = st.beta;
        ex_run_step(run, metrics);
        step++;
    }
    gm_batcher_free(&b);
    free(xb);
    free(yb);
}

static void pictures(gm_vae *m, const gm_dataset *te, const ex_args *a) {
    int n = a->samples > 0 ? a->samples : 64, i, labels[100], pairs = 8, steps = 10;
    const int *te_y = m->cfg.nclasses ? te->y : NULL;   /* an unconditional model takes no labels */
    float *x = (float *)malloc(sizeof(float) * 784 * (n > 200 ? n : 200));
    gm_image panels[2], both;
    const char *caps[2] = {"test digits", "reconstructions"};
    if (!x) die(a, "out of memory");
    /* prior samples (conditional: row k is digit k); also what --dump-samples writes */
    if (m->cfg.nclasses) {
        int *lab = (int *)malloc(sizeof(int) * n);
        for (i = 0; i < n; i++) lab[i] = m->cfg.nclasses * i / n;
        if (gm_vae_sample(m, lab, n, x) != 0) die(a, "sampling");
        free(lab);
    } else if (gm_vae_sample(m, NULL, n, x) != 0) die(a, "sampling");
    ex_dump_samples(a, x, n, 28, 28, 0.0f, 1.0f);
    if (m->cfg.nclasses && n >= 100) {   /* 10 x 10: one row per digit */
        for (i = 0; i < 100; i++) labels[i] = i / 10;
        if (gm_vae_sample(m, labels, 100, x) != 0) die(a, "sampling");
        save_grid(a, "vae_samples.png", x, 100, 10);
    } else {
        save_grid(a, "vae_samples.png", x, n > 100 ? 100 : n, m->cfg.nclasses ? 10 : 0);
    }
    /* 32 test digits next to their reconstructions */
    if (gm_vae_reconstruct(m, te->x, te_y, 32, x) != 0) die(a, "reconstruct");
    if (gm_image_grid(&panels[0], te->x, 32, 1, 28, 28, 4, 2, 0, 1) != 0 ||
        gm_image_grid(&panels[1], x, 32, 1, 28, 28, 4, 2, 0, 1) != 0 ||
        gm_image_hstack(&both, panels, 2, caps, 8) != 0) die(a, "reconstruction picture");
    gm_image_free(&panels[0]); gm_image_free(&panels[1]);
    if (gm_image_upscale(&panels[0], &both, 2) != 0) die(a, "upscale");
    gm_image_free(&both);
    ex_save_png(a, "vae_reconstructions.png", &panels[0]);
    /* interpolation strips: test digit 2p to test digit 2p+1, one strip per row */
    for (i = 0; i < pairs; i++) {
        int lab2[2];
        lab2[0] = te->y[2 * i]; lab2[1] = te->y[2 * i + 1];
        if (gm_vae_interpolate(m, te->x + (size_t)(2 * i) * 784, te->x + (size_t)(2 * i + 1) * 784,
                               m->cfg.nclasses ? lab2 : NULL, steps, x + (size_t)i * steps * 784) != 0)
            die(a, "interpolate");
    }
    save_grid(a, "vae_interpolation.png", x, pairs * steps, steps);
    free(x);
}

/* --latent 2: the test set's latent means coloured by digit, and decoded z over a grid. */
static void latent_pictures(gm_vae *m, const gm_dataset *te, const ex_args *a) {
    int n = te->n, side = 20, i, j;
    float *mu = (float *)malloc(sizeof(float) * 2 * n), *z = (float *)malloc(sizeof(float) * 2 * side * side);
    float *img = (float *)malloc(sizeof(float) * 784 * side * side);
    int *lab = (int *)malloc(sizeof(int) * side * side);
    gm_plot_opts o = gm_plot_defaults();
    gm_image pic;
    if (!mu || !z || !img || !lab) die(a, "out of memory");
    if (gm_vae_encode(m, te->x, m->cfg.nclasses ? te->y : NULL, n, mu, NULL) != 0) die(a, "encode");
    o.title = "latent means of the test digits";
    o.xlabel = "z1"; o.ylabel = "z2";
    if (gm_plot_scatter(&pic, &o, mu, n, te->y, 10, NULL) != 0) die(a, "scatter");
    ex_save_png(a, "vae_latent.png", &pic);
    for (j = 0; j < side; j++)          /* row 0 at the top = largest z2 */
        for (i = 0; i < side; i++) {
            z[2 * (j * side + i)] = -2.5f + 5.0f * i / (side - 1);
            z[2 * (j * side + i) + 1] = 2.5f - 5.0f * j / (side - 1);
            lab[j * side + i] = 0;      /* conditional: the manifold of digit 0 */
        }
    if (gm_vae_decode(m, z, m->cfg.nclasses ? lab : NULL, side * side, img) != 0) die(a, "decode");
    save_grid(a, "vae_manifold.png", img, side * side, side);
    free(mu); free(z); free(img); free(lab);
}

int main(int argc, char **argv) {
    opts o;
    ex_args a = ex_defaults("vae", 10, 100, 1e-3f);
    ex_run run;
    ex_json j;
    gm_dataset tr, te;
    gm_vae m;
    gm_vae_config cfg;
    gm_vae_eval ev;
    const int *te_y;
    double t0 = ex_now(), t_train, iw = 0, iw_bpd = 0;
    long total;
    char kl_text[512];
    size_t len = 0;
    int d;
    ex_opt extra[] = {
        {"latent", EX_INT, &o.latent, "latent dimensions", "1..1024"},
        {"beta", EX_FLOAT, &o.beta, "weight of the KL term (beta-VAE)", "0.."},
        {"beta-schedule", EX_CHOICE, &o.schedule, "KL weight over training", "constant|linear|cyclical"},
        {"beta-start", EX_FLOAT, &o.beta_start, "schedule's starting beta", "0.."},
        {"beta-steps", EX_INT, &o.beta_steps, "warm-up length / cycle length in steps (0: a quarter of training)", "0.."},
        {"conv", EX_BOOL, &o.conv, "convolutional encoder and decoder", NULL},
        {"conditional", EX_BOOL, &o.conditional, "condition on the digit label", NULL},
        {"likelihood", EX_CHOICE, &o.likelihood, "decoder distribution", "bernoulli|gaussian|gaussian-learned"},
        {"iw", EX_INT, &o.iw, "importance samples for -log p(x) (0: skip)", "0..100000"},
        {"iw-n", EX_INT, &o.iw_n, "test images for the importance-weighted estimate", "1.."},
    };
    memset(&o, 0, sizeof o);
    o.latent = 10; o.beta = 1.0f; o.schedule = "constant"; o.likelihood = "bernoulli"; o.iw = 100; o.iw_n = 1000;
    ex_init(&a, argc, argv, "Variational autoencoder on MNIST (genmod_vae.h).", extra, (int)(sizeof extra / sizeof extra[0]));
    ex_requires(&a, argc, argv, "beta-start", strcmp(o.schedule, "constant") != 0, "with --beta-schedule linear|cyclical");
    ex_requires(&a, argc, argv, "beta-steps", strcmp(o.schedule, "constant") != 0, "with --beta-schedule linear|cyclical");
    if (gm_mnist_load(&tr, &te, a.data_dir, 0, 0, 0.0f, 1.0f) != 0) die(&a, "data");
    ex_check_batch(&a, tr.n);
    total = ex_total_steps(&a, (tr.n + a.batch - 1) / a.batch);
    if (o.beta_steps == 0) o.beta_steps = (int)(total / 4 > 0 ? total / 4 : 1);
    cfg = make_config(&o, &a);
    if (gm_vae_init(&m, &cfg) != 0) die(&a, "model");
    if (a.load && gm_vae_load(&m, a.load) != 0) die(&a, "load");
    if (!a.quiet)
        printf("vae: %d train / %d test images from %s; %s, z %d, beta %g (%s), Adam lr %g (the PyTorch reference's default), "
               "batch %d, %ld steps, %lu parameters\n", tr.n, te.n, a.data_dir, o.conv ? "conv" : "dense", o.latent,
               o.beta, o.schedule, a.lr, a.batch, total, (unsigned long)gm_params_count(&m.params));
    ex_run_begin(&run, &a, total, a.batch, "loss,recon,kl,beta");
    train(&m, &tr, &a, &run, total);
    ex_run_end(&run);
    t_train = ex_now() - t0;
    if (a.save && gm_vae_save(&m, a.save) != 0) die(&a, "save");
    te_y = o.conditional ? te.y : NULL;   /* an unconditional model takes no labels */
    if (gm_vae_evaluate(&m, te.x, te_y, te.n, &ev) != 0) die(&a, "evaluate");
    if (o.iw > 0 && gm_vae_iw_nll(&m, te.x, te_y, o.iw_n < te.n ? o.iw_n : te.n, o.iw, &iw, &iw_bpd, NULL) != 0)
        die(&a, "iw");
    for (d = 0; d < o.latent && len + 16 < sizeof kl_text; d++)
        len += (size_t)snprintf(kl_text + len, sizeof kl_text - len, d ? ",%.3f" : "%.3f", ev.kl_dim[d]);
    if (!a.quiet) {
        printf("test -ELBO %.2f nats (recon %.2f + KL %.2f) = %.4f bits/dim; %d of %d latent dimensions active\n",
               ev.neg_elbo, ev.recon, ev.kl, ev.neg_elbo_bpd, ev.active, o.latent);
        printf("KL per latent dimension: %s\n", kl_text);
        if (o.iw > 0) printf("IW-%d -log p(x) on %d test images: %.2f nats = %.4f bits/dim\n", o.iw,
                             o.iw_n < te.n ? o.iw_n : te.n, iw, iw_bpd);
    }
    ex_run_plot(&run, "vae_loss.png", "VAE training (nats per image)", 0);
    pictures(&m, &te, &a);
    if (o.latent == 2) latent_pictures(&m, &te, &a);
    ex_json_init(&j);
    ex_json_str(&j, "model", o.conv ? "conv_vae" : "vae");
    ex_json_str(&j, "data", a.data_dir);
    ex_json_num(&j, "n_train", tr.n);
    ex_json_num(&j, "steps", (double)run.step);   /* done: --minutes or Ctrl-C may end training early */
    ex_json_num(&j, "batch", a.batch);
    ex_json_num(&j, "lr", a.lr);
    ex_json_num(&j, "latent", o.latent);
    ex_json_num(&j, "beta", o.beta);
    ex_json_str(&j, "beta_schedule", o.schedule);
    ex_json_num(&j, "conditional", o.conditional);
    ex_json_num(&j, "test_neg_elbo_nats", ev.neg_elbo);
    ex_json_num(&j, "test_recon_nats", ev.recon);
    ex_json_num(&j, "test_kl_nats", ev.kl);
    ex_json_num(&j, "test_neg_elbo_bpd", ev.neg_elbo_bpd);
    ex_json_num(&j, "active_dims", ev.active);
    ex_json_str(&j, "kl_per_dim", kl_text);
    if (o.iw > 0) {
        ex_json_num(&j, "iw_k", o.iw);
        ex_json_num(&j, "iw_n", o.iw_n < te.n ? o.iw_n : te.n);
        ex_json_num(&j, "test_nll_iw_nats", iw);
        ex_json_num(&j, "test_nll_iw_bpd", iw_bpd);
    }
    ex_json_num(&j, "params", (double)gm_params_count(&m.params));
    ex_json_num(&j, "train_s", t_train);
    ex_json_num(&j, "wall_s", ex_now() - t0);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_vae_free(&m);
    gm_dataset_free(&tr);
    gm_dataset_free(&te);
    return 0;
}
