/* test_contract.c: every family follows one contract, checked the same way for each model.
 *
 * Built from separate translation units (see the Makefile): tests/contract_core.c holds the core's
 * implementation, tests/contract_<family>.c each family's (one of them compiled as C++), and this
 * file only includes the headers. So it also proves that a family implementation links against a
 * core compiled elsewhere.
 *
 * For every model: init from its default config (made small), one train step, a save, a load
 * into a fresh model of the same config (its weights then equal the saved ones, byte for byte),
 * free twice. Then every model's loader is handed every other model's checkpoint: each must be
 * refused with a message naming the model it expected and the one it found, and leave the model
 * byte-identical. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "genmod.h"
#include "genmod_vae.h"
#include "genmod_gan.h"
#include "genmod_flow.h"
#include "genmod_hmm.h"
#include "genmod_diffusion.h"
#include "genmod_ar.h"
#include "genmod_ebm.h"

#include "genmod_image.h"
#include "gm_test.h"

#define MAX_PARTS 4

/* One model behind the contract, seen through the same few calls. */
typedef struct model_kind {
    const char *name;                                   /* the checkpoint's "genmod.model" */
    size_t size;                                        /* sizeof the model struct */
    int (*init)(void *m, int variant);                  /* variant 1: another architecture */
    int (*train)(void *m);                              /* one step on a small random batch */
    int (*save)(const void *m, const char *path);
    int (*load)(void *m, const char *path);
    int (*parts)(void *m, gm_params **out);             /* the parameter sets it holds (NULL: none) */
    int (*probe)(void *m, float *out, int cap);         /* models without parameter sets: some of
                                                           their outputs, to see them unchanged */
    void (*free)(void *m);
} model_kind;

static void random_fill(float *x, size_t n, unsigned seed, float lo, float hi) {
    gm_rng r;
    size_t i;
    gm_rng_seed(&r, seed);
    for (i = 0; i < n; i++) x[i] = lo + (hi - lo) * gm_rng_uniform(&r);
}

/* ---- autoencoder and VAE ---------------------------------------------------------------- */
static gm_vae_arch small_arch(int variant) {
    gm_vae_arch a;
    memset(&a, 0, sizeof a);
    a.in_c = 1; a.in_h = 4; a.in_w = 4;
    a.n_enc = 2; a.enc[0] = 8; a.enc[1] = 4;
    a.n_dec = 1; a.dec[0] = variant ? 6 : 8;
    a.act = GM_ACT_RELU;
    return a;
}

static int ae_init(void *m, int variant) {
    gm_ae_config c = gm_ae_default_config();
    c.arch = small_arch(variant);
    return gm_ae_init((gm_ae *)m, &c);
}
static int ae_train(void *m) {
    float x[8 * 16];
    random_fill(x, 8 * 16, 1, 0, 1);
    return gm_ae_train_step((gm_ae *)m, x, NULL, 8, NULL);
}
static int ae_save(const void *m, const char *p) { return gm_ae_save((const gm_ae *)m, p); }
static int ae_load(void *m, const char *p) { return gm_ae_load((gm_ae *)m, p); }
static int ae_parts(void *m, gm_params **out) { out[0] = &((gm_ae *)m)->params; return 1; }
static void ae_free(void *m) { gm_ae_free((gm_ae *)m); }

static int vae_init(void *m, int variant) {
    gm_vae_config c = gm_vae_default_config();
    c.arch = small_arch(variant);
    c.latent = 2;
    return gm_vae_init((gm_vae *)m, &c);
}
static int vae_train(void *m) {
    float x[8 * 16];
    random_fill(x, 8 * 16, 2, 0, 1);
    return gm_vae_train_step((gm_vae *)m, x, NULL, 8, NULL);
}
static int vae_save(const void *m, const char *p) { return gm_vae_save((const gm_vae *)m, p); }
static int vae_load(void *m, const char *p) { return gm_vae_load((gm_vae *)m, p); }
static int vae_parts(void *m, gm_params **out) { out[0] = &((gm_vae *)m)->params; return 1; }
static void vae_free(void *m) { gm_vae_free((gm_vae *)m); }

/* ---- GAN and CycleGAN ---------------------------------------------------------------------- */
static void small_gan_net(gm_gan_arch *a, int width) {
    a->c = 1; a->h = 1; a->w = 16;
    a->nhidden = 1; a->hidden[0] = width;
    if (a->generator) a->z = 4;
}

static int gan_init(void *m, int variant) {
    gm_gan_config c = gm_gan_default_config(0);
    small_gan_net(&c.generator, 8);
    small_gan_net(&c.discriminator, variant ? 6 : 8);
    return gm_gan_init((gm_gan *)m, &c);
}
static int gan_train(void *m) {
    float x[8 * 16];
    random_fill(x, 8 * 16, 3, -1, 1);
    return gm_gan_train_step((gm_gan *)m, x, NULL, 8, NULL);
}
static int gan_save(const void *m, const char *p) { return gm_gan_save((const gm_gan *)m, p); }
static int gan_load(void *m, const char *p) { return gm_gan_load((gm_gan *)m, p); }
static int gan_parts(void *m, gm_params **out) {
    out[0] = &((gm_gan *)m)->generator.params;
    out[1] = &((gm_gan *)m)->discriminator.params;
    return 2;
}
static void gan_free(void *m) { gm_gan_free((gm_gan *)m); }

static int cyclegan_init(void *m, int variant) {
    gm_cyclegan_config c = gm_cyclegan_default_config(1, 8, 8);
    c.generator.nhidden = 1; c.generator.hidden[0] = variant ? 3 : 4;
    c.discriminator.nhidden = 1; c.discriminator.hidden[0] = 4;
    return gm_cyclegan_init((gm_cyclegan *)m, &c);
}
static int cyclegan_train(void *m) {
    float a[2 * 64], b[2 * 64];
    random_fill(a, 2 * 64, 4, -1, 1);
    random_fill(b, 2 * 64, 5, -1, 1);
    return gm_cyclegan_train_step((gm_cyclegan *)m, a, b, 2, NULL);
}
static int cyclegan_save(const void *m, const char *p) { return gm_cyclegan_save((const gm_cyclegan *)m, p); }
static int cyclegan_load(void *m, const char *p) { return gm_cyclegan_load((gm_cyclegan *)m, p); }
static int cyclegan_parts(void *m, gm_params **out) {
    gm_cyclegan *c = (gm_cyclegan *)m;
    out[0] = &c->gen_ab.params; out[1] = &c->gen_ba.params; out[2] = &c->disc_a.params; out[3] = &c->disc_b.params;
    return 4;
}
static void cyclegan_free(void *m) { gm_cyclegan_free((gm_cyclegan *)m); }

/* ---- normalizing flows and FFJORD ------------------------------------------------------------ */
static int flow_init(void *m, int variant) {
    gm_flow_config c = gm_flow_default_config(GM_FLOW_REALNVP, 2, 1, 1);
    c.n_couplings = 2; c.hidden = variant ? 6 : 8; c.depth = 1;
    return gm_flow_init((gm_flow *)m, &c);
}
static int flow_train(void *m) {
    float x[16 * 2];
    random_fill(x, 16 * 2, 6, -1, 1);
    return gm_flow_train_step((gm_flow *)m, x, NULL, 16, NULL);
}
static int flow_save(const void *m, const char *p) { return gm_flow_save((const gm_flow *)m, p); }
static int flow_load(void *m, const char *p) { return gm_flow_load((gm_flow *)m, p); }
static int flow_parts(void *m, gm_params **out) { out[0] = &((gm_flow *)m)->params; return 1; }
static void flow_free(void *m) { gm_flow_free((gm_flow *)m); }

static int ffjord_init(void *m, int variant) {
    gm_ffjord_config c = gm_ffjord_default_config(2);
    c.hidden = variant ? 6 : 8; c.depth = 1; c.rk4_steps = 2;
    return gm_ffjord_init((gm_ffjord *)m, &c);
}
static int ffjord_train(void *m) {
    float x[16 * 2];
    random_fill(x, 16 * 2, 7, -1, 1);
    return gm_ffjord_train_step((gm_ffjord *)m, x, NULL, 16, NULL);
}
static int ffjord_save(const void *m, const char *p) { return gm_ffjord_save((const gm_ffjord *)m, p); }
static int ffjord_load(void *m, const char *p) { return gm_ffjord_load((gm_ffjord *)m, p); }
static int ffjord_parts(void *m, gm_params **out) { out[0] = &((gm_ffjord *)m)->params; return 1; }
static void ffjord_free(void *m) { gm_ffjord_free((gm_ffjord *)m); }

/* ---- Markov chain and HMM: sequences of symbols, no graph ------------------------------------ */
static int seq_data(int *sym, int *len, int n, int length, int alphabet, unsigned seed) {
    gm_rng r;
    int i;
    gm_rng_seed(&r, seed);
    for (i = 0; i < n; i++) len[i] = length;
    for (i = 0; i < n * length; i++) sym[i] = gm_rng_int(&r, alphabet);
    return 0;
}

static int markov_init(void *m, int variant) {
    gm_markov_config c = gm_markov_default_config(4, variant ? 1 : 2);
    return gm_markov_init((gm_markov *)m, &c);
}
static int markov_train(void *m) {
    int sym[3 * 20], len[3];
    gm_seqs d;
    seq_data(sym, len, 3, 20, 4, 8);
    d = gm_seqs_symbols(sym, len, 3);
    return gm_markov_train((gm_markov *)m, &d);
}
static int markov_save(const void *m, const char *p) { return gm_markov_save((const gm_markov *)m, p); }
static int markov_load(void *m, const char *p) { return gm_markov_load((gm_markov *)m, p); }
static int markov_probe(void *m, float *out, int cap) {
    int ctx[2] = {1, 2};
    return cap >= 4 && gm_markov_next((const gm_markov *)m, ctx, 2, out) == 0 ? 4 : 0;
}
static void markov_free(void *m) { gm_markov_free((gm_markov *)m); }

static int hmm_init(void *m, int variant) {
    gm_hmm_config c = gm_hmm_default_config(variant ? 3 : 2, GM_HMM_DISCRETE, 4);
    return gm_hmm_init((gm_hmm *)m, &c);
}
static int hmm_train(void *m) {
    int sym[3 * 20], len[3];
    gm_seqs d;
    seq_data(sym, len, 3, 20, 4, 9);
    d = gm_seqs_symbols(sym, len, 3);
    return gm_hmm_train_step((gm_hmm *)m, &d, NULL);
}
static int hmm_save(const void *m, const char *p) { return gm_hmm_save((const gm_hmm *)m, p); }
static int hmm_load(void *m, const char *p) { return gm_hmm_load((gm_hmm *)m, p); }
static int hmm_parts(void *m, gm_params **out) { out[0] = &((gm_hmm *)m)->params; return 1; }
static void hmm_free(void *m) { gm_hmm_free((gm_hmm *)m); }

/* ---- diffusion (MLP; variant: a conditional U-Net on 8x8) and score models ---------------- */
static int diffusion_init(void *m, int variant) {
    gm_diffusion_config c = variant ? gm_diffusion_default_config(1, 8, 8) : gm_diffusion_default_config(2, 1, 1);
    c.hidden = 8; c.depth = 1; c.base = 8; c.groups = 4; c.temb = 8; c.T = 50; c.sample_steps = 5;
    c.classes = variant ? 3 : 0; c.attn = variant;
    return gm_diffusion_init((gm_diffusion *)m, &c);
}
static int diffusion_train(void *m) {
    gm_diffusion *d = (gm_diffusion *)m;
    float x[4 * 64];
    int lab[4] = {0, 1, 2, 0};
    random_fill(x, 4 * 64, 8, -1, 1);
    return gm_diffusion_train_step(d, x, d->cfg.classes ? lab : NULL, 4, NULL);
}
static int diffusion_save(const void *m, const char *p) { return gm_diffusion_save((const gm_diffusion *)m, p); }
static int diffusion_load(void *m, const char *p) { return gm_diffusion_load((gm_diffusion *)m, p); }
static int diffusion_parts(void *m, gm_params **out) {
    out[0] = &((gm_diffusion *)m)->params;
    out[1] = &((gm_diffusion *)m)->ema;
    return 2;
}
static void diffusion_free(void *m) { gm_diffusion_free((gm_diffusion *)m); }

static int score_init(void *m, int variant) {
    gm_score_config c = gm_score_default_config(2);
    c.hidden = variant ? 6 : 8; c.depth = 1; c.temb = 8; c.levels = 3; c.langevin_steps = 2;
    return gm_score_init((gm_score *)m, &c);
}
static int score_train(void *m) {
    float x[16 * 2];
    random_fill(x, 16 * 2, 9, -1, 1);
    return gm_score_train_step((gm_score *)m, x, NULL, 16, NULL);
}
static int score_save(const void *m, const char *p) { return gm_score_save((const gm_score *)m, p); }
static int score_load(void *m, const char *p) { return gm_score_load((gm_score *)m, p); }
static int score_parts(void *m, gm_params **out) { out[0] = &((gm_score *)m)->params; return 1; }
static void score_free(void *m) { gm_score_free((gm_score *)m); }

/* ---- autoregressive: MADE, PixelCNN (plain and gated) --------------------------------------- */
static int made_init(void *m, int variant) {
    gm_made_config c = gm_made_default_config(16, GM_MADE_BERNOULLI);
    c.hidden[0] = 8; c.hidden[1] = variant ? 6 : 8;
    c.ordering = GM_MADE_RANDOM; c.masks = 2; c.ensemble = 2;
    return gm_made_init((gm_made *)m, &c);
}
static int made_train(void *m) {
    float x[8 * 16];
    int i;
    random_fill(x, 8 * 16, 6, 0, 1);
    for (i = 0; i < 8 * 16; i++) x[i] = x[i] < 0.5f ? 0.0f : 1.0f;
    return gm_made_train_step((gm_made *)m, x, NULL, 8, NULL);
}
static int made_save(const void *m, const char *p) { return gm_made_save((const gm_made *)m, p); }
static int made_load(void *m, const char *p) { return gm_made_load((gm_made *)m, p); }
static int made_parts(void *m, gm_params **out) { out[0] = &((gm_made *)m)->params; return 1; }
static void made_free(void *m) { gm_made_free((gm_made *)m); }

static int pixelcnn_init(void *m, int variant) {   /* variant 1: the Gated PixelCNN, class-conditional */
    gm_pixelcnn_config c = variant ? gm_pixelcnn_gated_config(4, 4, 4) : gm_pixelcnn_default_config(4, 4, 4);
    c.channels = 4; c.blocks = 1; c.layers = 2;
    if (variant) c.classes = 3;
    return gm_pixelcnn_init((gm_pixelcnn *)m, &c);
}
static int pixelcnn_train(void *m) {
    gm_pixelcnn *p = (gm_pixelcnn *)m;
    float x[4 * 16];
    int i, y[4] = {0, 1, 2, 0};
    random_fill(x, 4 * 16, 7, 0, 1);
    for (i = 0; i < 4 * 16; i++) x[i] = (float)(int)(x[i] * 3.999f) / 3.0f;   /* the 4 levels */
    return gm_pixelcnn_train_step(p, x, p->cfg.classes ? y : NULL, 4, NULL);
}
static int pixelcnn_save(const void *m, const char *p) { return gm_pixelcnn_save((const gm_pixelcnn *)m, p); }
static int pixelcnn_load(void *m, const char *p) { return gm_pixelcnn_load((gm_pixelcnn *)m, p); }
static int pixelcnn_parts(void *m, gm_params **out) { out[0] = &((gm_pixelcnn *)m)->params; return 1; }
static void pixelcnn_free(void *m) { gm_pixelcnn_free((gm_pixelcnn *)m); }
static int rowlstm_init(void *m, int variant) {   /* variant 1: two layers, class-conditional */
    gm_pixelcnn_config c = gm_pixelcnn_rowlstm_config(4, 4, 4);
    c.channels = 4; c.layers = variant ? 2 : 1;
    if (variant) c.classes = 3;
    return gm_pixelcnn_init((gm_pixelcnn *)m, &c);
}

/* ---- energy-based models ------------------------------------------------------------------ */
static int rbm_init(void *m, int variant) {
    gm_rbm_config c = gm_rbm_default_config(16, variant ? 6 : 8);
    return gm_rbm_init((gm_rbm *)m, &c);
}
static int rbm_train(void *m) {
    float x[8 * 16];
    int i;
    random_fill(x, 8 * 16, 7, 0, 1);
    for (i = 0; i < 8 * 16; i++) x[i] = x[i] < 0.5f ? 0.0f : 1.0f;   /* a Bernoulli RBM takes bits */
    return gm_rbm_train_step((gm_rbm *)m, x, NULL, 8, NULL);
}
static int rbm_save(const void *m, const char *p) { return gm_rbm_save((const gm_rbm *)m, p); }
static int rbm_load(void *m, const char *p) { return gm_rbm_load((gm_rbm *)m, p); }
static int rbm_parts(void *m, gm_params **out) { out[0] = &((gm_rbm *)m)->params; return 1; }
static void rbm_free(void *m) { gm_rbm_free((gm_rbm *)m); }

static int ebm_init(void *m, int variant) {
    gm_ebm_config c = variant ? gm_ebm_conv_config(1, 2, 1) : gm_ebm_default_config(2);   /* 1: the conv energy */
    c.hidden = variant ? 6 : 8; c.depth = 1; c.buffer_size = 32; c.langevin_steps = 2;
    return gm_ebm_init((gm_ebm *)m, &c);
}
static int ebm_train(void *m) {
    float x[8 * 2];
    random_fill(x, 8 * 2, 8, -1, 1);
    return gm_ebm_train_step((gm_ebm *)m, x, NULL, 8, NULL);
}
static int ebm_save(const void *m, const char *p) { return gm_ebm_save((const gm_ebm *)m, p); }
static int ebm_load(void *m, const char *p) { return gm_ebm_load((gm_ebm *)m, p); }
static int ebm_parts(void *m, gm_params **out) { out[0] = &((gm_ebm *)m)->params; return 1; }
static void ebm_free(void *m) { gm_ebm_free((gm_ebm *)m); }

/* CONTRACT_KINDS_MORE */

static const model_kind kinds[] = {
    {"ae", sizeof(gm_ae), ae_init, ae_train, ae_save, ae_load, ae_parts, NULL, ae_free},
    {"vae", sizeof(gm_vae), vae_init, vae_train, vae_save, vae_load, vae_parts, NULL, vae_free},
    {"gan", sizeof(gm_gan), gan_init, gan_train, gan_save, gan_load, gan_parts, NULL, gan_free},
    {"cyclegan", sizeof(gm_cyclegan), cyclegan_init, cyclegan_train, cyclegan_save, cyclegan_load, cyclegan_parts,
     NULL, cyclegan_free},
    {"flow", sizeof(gm_flow), flow_init, flow_train, flow_save, flow_load, flow_parts, NULL, flow_free},
    {"ffjord", sizeof(gm_ffjord), ffjord_init, ffjord_train, ffjord_save, ffjord_load, ffjord_parts, NULL, ffjord_free},
    {"markov", sizeof(gm_markov), markov_init, markov_train, markov_save, markov_load, NULL, markov_probe, markov_free},
    {"hmm", sizeof(gm_hmm), hmm_init, hmm_train, hmm_save, hmm_load, hmm_parts, NULL, hmm_free},
    {"diffusion", sizeof(gm_diffusion), diffusion_init, diffusion_train, diffusion_save, diffusion_load, diffusion_parts,
     NULL, diffusion_free},
    {"score", sizeof(gm_score), score_init, score_train, score_save, score_load, score_parts, NULL, score_free},
    {"made", sizeof(gm_made), made_init, made_train, made_save, made_load, made_parts, NULL, made_free},
    {"pixelcnn", sizeof(gm_pixelcnn), pixelcnn_init, pixelcnn_train, pixelcnn_save, pixelcnn_load, pixelcnn_parts, NULL,
     pixelcnn_free},
    {"rowlstm", sizeof(gm_pixelcnn), rowlstm_init, pixelcnn_train, pixelcnn_save, pixelcnn_load, pixelcnn_parts, NULL,
     pixelcnn_free},
    {"rbm", sizeof(gm_rbm), rbm_init, rbm_train, rbm_save, rbm_load, rbm_parts, NULL, rbm_free},
    {"ebm", sizeof(gm_ebm), ebm_init, ebm_train, ebm_save, ebm_load, ebm_parts, NULL, ebm_free},
};
#define NKINDS ((int)(sizeof kinds / sizeof kinds[0]))

/* ---- helpers -------------------------------------------------------------------------------- */
static char ckpt[NKINDS][64];   /* one trained checkpoint per kind */

/* A copy of every parameter value and buffer the model holds, to compare after a refused load. */
typedef struct snapshot { float *data; size_t n; } snapshot;

static snapshot snap(const model_kind *k, void *m) {
    gm_params *p[MAX_PARTS];
    int np = k->parts ? k->parts(m, p) : 0, i;
    snapshot s;
    size_t at = 0;
    s.n = 0;
    if (k->probe) {
        s.data = (float *)malloc(64 * sizeof(float));
        s.n = s.data ? (size_t)k->probe(m, s.data, 64) : 0;
        if (s.n == 0) { free(s.data); s.data = NULL; }
        return s;
    }
    for (i = 0; i < np; i++) s.n += p[i]->count;
    s.data = (float *)malloc((s.n + 1) * sizeof(float));
    for (i = 0; s.data && i < np; i++) {
        memcpy(s.data + at, p[i]->data, p[i]->count * sizeof(float));
        at += p[i]->count;
    }
    return s;
}

static int snap_equal(const snapshot *a, const snapshot *b) {
    return a->data && b->data && a->n == b->n && memcmp(a->data, b->data, a->n * sizeof(float)) == 0;
}

static void *new_model(const model_kind *k) { return calloc(1, k->size); }

/* ---- the tests ------------------------------------------------------------------------------ */
GM_TEST(each_model_trains_saves_and_loads) {
    int i;
    for (i = 0; i < NKINDS; i++) {
        const model_kind *k = &kinds[i];
        void *a = new_model(k), *b = new_model(k);
        snapshot sa, sb;
        snprintf(ckpt[i], sizeof ckpt[i], "build/contract_%s.safetensors", k->name);
        GM_CHECK(k->init(a, 0) == 0, "%s: init: %s", k->name, gm_last_error());
        GM_CHECK(k->train(a) == 0, "%s: train step: %s", k->name, gm_last_error());
        GM_CHECK(k->save(a, ckpt[i]) == 0, "%s: save: %s", k->name, gm_last_error());
        GM_CHECK(k->init(b, 0) == 0, "%s: second init: %s", k->name, gm_last_error());
        GM_CHECK(k->load(b, ckpt[i]) == 0, "%s: load: %s", k->name, gm_last_error());
        sa = snap(k, a);
        sb = snap(k, b);
        GM_CHECK(snap_equal(&sa, &sb), "%s: the loaded weights differ from the saved ones", k->name);
        free(sa.data); free(sb.data);
        k->free(a); k->free(a);   /* twice: free must be safe on a freed model */
        k->free(b);
        free(a); free(b);
    }
}

/* The pictures, from their own translation unit too. */
GM_TEST(pictures_link_from_their_own_file) {
    gm_image img;
    float x[4] = {0, 0.5f, 1, 0.25f};
    GM_CHECK(gm_image_grid(&img, x, 1, 1, 2, 2, 1, 1, 0, 1) == 0, "grid: %s", gm_last_error());
    GM_CHECK(img.w == 4 && img.h == 4 && img.rgb && img.rgb[3 * (1 * 4 + 1)] == 0, "a 2x2 tile with a 1-pixel border");
    gm_image_free(&img);
    GM_CHECK(gm_image_new(&img, -1, 3, 0, 0, 0) != 0 && img.rgb == NULL, "a negative size is refused");
}

GM_TEST(free_is_safe_on_zeroed_and_failed_models) {
    int i;
    for (i = 0; i < NKINDS; i++) {
        void *m = new_model(&kinds[i]);
        kinds[i].free(m);   /* never initialized */
        free(m);
    }
}

/* Every loader refuses every other model's file, naming both, and touches nothing. */
GM_TEST(every_loader_refuses_every_other_model) {
    int i, j;
    for (i = 0; i < NKINDS; i++) {
        const model_kind *k = &kinds[i];
        void *m = new_model(k);
        snapshot before, after;
        if (k->init(m, 0) != 0) { GM_CHECK(0, "%s: init: %s", k->name, gm_last_error()); free(m); continue; }
        before = snap(k, m);
        for (j = 0; j < NKINDS; j++) {
            const char *e;
            char found[80];
            if (j == i) continue;
            GM_CHECK(k->load(m, ckpt[j]) != 0, "%s accepted a '%s' checkpoint", k->name, kinds[j].name);
            e = gm_last_error();
            snprintf(found, sizeof found, "'%s'", kinds[j].name);
            GM_CHECK(strstr(e, found) != NULL, "%s loading a %s file: message does not name %s: %s", k->name,
                     kinds[j].name, found, e);
            after = snap(k, m);
            GM_CHECK(snap_equal(&before, &after), "%s: a refused %s file changed the model", k->name, kinds[j].name);
            free(after.data);
        }
        free(before.data);
        k->free(m);
        free(m);
    }
}

/* The same model with another architecture: refused, untouched, the message names the difference. */
GM_TEST(every_loader_refuses_another_architecture) {
    int i;
    for (i = 0; i < NKINDS; i++) {
        const model_kind *k = &kinds[i];
        void *m = new_model(k);
        snapshot before, after;
        if (k->init(m, 1) != 0) { GM_CHECK(0, "%s: init variant: %s", k->name, gm_last_error()); free(m); continue; }
        before = snap(k, m);
        GM_CHECK(k->load(m, ckpt[i]) != 0, "%s: accepted a checkpoint of another architecture", k->name);
        GM_CHECK(strstr(gm_last_error(), "arch") != NULL, "%s: message does not speak of the architecture: %s",
                 k->name, gm_last_error());
        after = snap(k, m);
        GM_CHECK(snap_equal(&before, &after), "%s: a refused file changed the model", k->name);
        free(before.data); free(after.data);
        k->free(m);
        free(m);
    }
}

GM_TEST(plain_checkpoint_is_refused_by_every_loader) {
    gm_params p;
    int shape[1] = {3}, i;
    const char *path = "build/contract_plain.safetensors";
    memset(&p, 0, sizeof p);
    GM_CHECK(gm_params_add(&p, "w", 1, shape) == 0, "params_add: %s", gm_last_error());
    GM_CHECK(gm_checkpoint_save(path, &p, NULL, NULL) == 0, "save: %s", gm_last_error());
    for (i = 0; i < NKINDS; i++) {
        void *m = new_model(&kinds[i]);
        if (kinds[i].init(m, 0) == 0)
            GM_CHECK(kinds[i].load(m, path) != 0, "%s accepted a checkpoint with no model name", kinds[i].name);
        kinds[i].free(m);
        free(m);
    }
    gm_params_free(&p);
}

int main(void) {
    gm_set_threads(1);
    GM_RUN(each_model_trains_saves_and_loads);
    GM_RUN(pictures_link_from_their_own_file);
    GM_RUN(free_is_safe_on_zeroed_and_failed_models);
    GM_RUN(every_loader_refuses_every_other_model);
    GM_RUN(every_loader_refuses_another_architecture);
    GM_RUN(plain_checkpoint_is_refused_by_every_loader);
    return gm_test_summary();
}
