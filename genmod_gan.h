/* genmod_gan.h - v0.1 - generative adversarial networks for genmod: GAN (minimax and
   non-saturating), DCGAN, conditional GAN, LSGAN, WGAN (weight clipping), WGAN-GP (exact double
   backprop), hinge loss, R1 penalty (exact double backprop), spectral normalization, instance
   noise, differentiable augmentation (translation, cutout), a moving average of G's weights,
   two time-scale learning rates, PacGAN packing, one-sided label smoothing, the minibatch
   standard deviation, CycleGAN; and the measures that judge them
   (Frechet distance in a digit classifier's feature space, label entropy, conditional accuracy,
   mode coverage on the 8-Gaussians ring). Builds on genmod.h.

   USAGE
     The declarations are always visible; the implementation is compiled where
     GENMOD_GAN_IMPLEMENTATION is defined, in one C or C++ file. Either in the file that holds
     genmod's implementation:
         #define GENMOD_IMPLEMENTATION
         #include "genmod.h"
         #define GENMOD_GAN_IMPLEMENTATION
         #include "genmod_gan.h"
     or in a file of its own (it uses only genmod.h's public functions), linked with the file that
     defines GENMOD_IMPLEMENTATION:
         #define GENMOD_GAN_IMPLEMENTATION
         #include "genmod_gan.h"
     Everywhere else just #include "genmod_gan.h". Build: cc -O2 prog.c -lm -lpthread (or
     cc -O2 core.c gan.c prog.c -lm -lpthread). If you define GENMOD_MALLOC / GENMOD_REALLOC /
     GENMOD_FREE, define the same three wherever an implementation is compiled.

   THE SHORTEST PROGRAM (the MLP GAN of Goodfellow et al. on MNIST in [-1,1])

         gm_dataset tr;  gm_batcher b;  gm_gan gan;  const int *idx;  int k;
         gm_gan_config cfg = gm_gan_default_config(0);       // MLP G and D, unconditional
         gm_mnist_load(&tr, NULL, "data", 0, 0, -1.0f, 1.0f); // pixels on [-1,1], tanh's range
         if (gm_gan_init(&gan, &cfg) != 0) { puts(gm_last_error()); return 1; }
         float *x = malloc(sizeof(float) * 784 * cfg.batch);
         gm_batcher_init(&b, tr.n, cfg.batch, 1, 1);
         while ((k = gm_batcher_next(&b, &idx)) > 0) {        // one epoch
             gm_dataset_gather(&tr, idx, k, x, NULL);
             if (gm_gan_train_step(&gan, x, NULL, k, NULL) != 0) { puts(gm_last_error()); break; }
         }
         gm_gan_sample(&gan, NULL, 64, x);                    // 64 images, G in eval mode
         gm_gan_save(&gan, "gan.safetensors");
         gm_gan_free(&gan);

   EACH MODEL HAS (the family contract of genmod's README)
     a config        gm_gan_default_config(classes) and presets (gm_gan_dcgan_config,
                     gm_gan_ttur_config, gm_gan_wgan_gp_config); a plain struct: both networks,
                     loss, critic steps, penalties (gp, r1), augmentation, the moving average's
                     decay (ema), instance noise, each network's optimizer settings, batch, seed
     _init / _free   gm_gan_init(m, &cfg) builds G, D, both optimizers and the graph, whose random
                     stream (seeded from cfg.seed) draws every noise vector, dropout mask, instance
                     noise and penalty mix; gm_gan_free is safe on a zeroed or failed model
     _train_step     one D step and, every n_critic-th call, one G step on n examples of plain floats
     _sample         n samples (gm_gan_sample_z: from given noise vectors); gm_gan_discriminate: D's
                     scores; any n, eval mode, in chunks
     _forward        gm_gan_forward emits G into your own gm_graph (gm_gan_net_forward: one network)
     _save / _load   one safetensors file: parts "G" and "D" (weights, batch-norm and spectral-norm
                     buffers, each optimizer's state), "G_ema" (the moving average, when cfg.ema > 0;
                     a file with it and a model without, or the reverse, is refused as another
                     architecture), the step counters and the random stream, so a
                     loaded model continues training exactly as the saved one would have; a file of
                     another model or architecture is refused and the model left untouched
     CycleGAN follows the same shape (gm_cyclegan_*), with one deviation: it learns a mapping
     between two domains, so a training step takes a batch of each (a, b) instead of labels, and it
     translates (gm_cyclegan_translate) instead of sampling.

   CONCEPTS
     gm_gan_arch   a plain description of one network (MLP, DCGAN-style conv, image-to-image, patch
                   discriminator): sizes, conditioning classes, batch norm, dropout, activation
                   (genmod's GM_ACT_*), spectral normalization, PacGAN packing (a D field: it scores
                   packs of `pack` samples). gm_gan_mlp_g() etc. give the standard ones; edit fields.
     gm_gan_net    a network built from an arch; owns its gm_params (one per network, so each has
                   its own optimizer and can be frozen while the other trains).
     Losses        GM_GAN_NONSAT (-log D(G(z))), GM_GAN_MINIMAX (log(1 - D(G(z)))), GM_GAN_LSGAN
                   (least squares), GM_GAN_WASSERSTEIN (with weight clipping: opt_d.clip_value;
                   with the gradient penalty: gp = 10), GM_GAN_HINGE. D outputs logits;
                   sigmoid+BCE is computed as BCE with logits. Any loss takes the R1 penalty
                   (cfg.r1) and differentiable augmentation (cfg.augment); the cross-entropy ones
                   one-sided label smoothing (cfg.label_smooth).
     Moving average cfg.ema > 0 keeps generator_ema = the average of G's weights over the G steps
                   (decay warmed up as min(ema, (1+t)/(10+t))); gm_gan_sample uses it (use_ema);
                   gm_gan_ema_recalibrate measures its own batch-norm statistics before sampling.
     Metrics       gm_digit_classifier (weights in data/digit_classifier.safetensors, made by
                   tools/train_classifier.c) gives features and labels; gm_frechet_distance,
                   gm_label_entropy and gm_ring_modes do the rest. gm_sqrtm_psd and gm_eigh_sym
                   (Jacobi, double) are the linear algebra under the Frechet distance.

   ERRORS: functions return 0 / a tensor on success and -1 / NULL on failure, with the reason in
   gm_last_error(). A NaN or infinite loss stops a training step before the update it would feed
   (a G step runs after its D step, so a NaN G loss leaves D's update of that call in place).

   LICENSE: MIT, at the end of the file.
*/
#ifndef GENMOD_GAN_H
#define GENMOD_GAN_H

#include "genmod.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================================= */
/* Spectral normalization (Miyato et al. 2018)                                             */
/* ======================================================================================= */
/* W viewed as a (rows = dim 0, cols = the rest) matrix is divided by its largest singular value,
   estimated by power iteration: each forward pass in training mode does one step
   v = W^T u / |W^T u|, u = W v / |W v|, and sigma = u^T W v, with u and v held constant (no
   gradient through them, as in the paper). u and v persist between steps as buffers of the same
   gm_params ("<weight>_sn_u", "<weight>_sn_v"), so they are saved in checkpoints and never trained. */
typedef struct gm_spectral {
    gm_params *p;
    int w, u, v;            /* views: the weight, and the two power-iteration vectors (buffers) */
    int rows, cols;
} gm_spectral;

GMDEF int gm_spectral_init(gm_spectral *sn, gm_params *p, int weight_view, gm_rng *r);
GMDEF gm_tensor *gm_spectral_weight(gm_graph *g, const gm_spectral *sn);  /* W / sigma, W's shape */
GMDEF float gm_spectral_sigma(const gm_spectral *sn);  /* the current estimate u^T W v */

/* ======================================================================================= */
/* Networks                                                                                */
/* ======================================================================================= */
enum { GM_GAN_MLP = 0,      /* dense layers */
       GM_GAN_CONV,         /* DCGAN: G dense -> reshape -> conv-transpose 4x4/2 ...; D conv 4x4/2 ... -> dense 1 */
       GM_GAN_IMG2IMG,      /* CycleGAN generator: 3x3 convs, stride 1, image in, image out */
       GM_GAN_PATCH };      /* PatchGAN discriminator: conv 4x4/2 ... -> conv 3x3 to one logit per patch */
#define GM_GAN_MAX_HIDDEN 8

typedef struct gm_gan_arch {
    int kind;               /* GM_GAN_MLP, GM_GAN_CONV, GM_GAN_IMG2IMG, GM_GAN_PATCH */
    int generator;          /* 1: noise (N, z) -> data; 0: data -> (N, 1) scores (patch: (N,1,h',w')) */
    int z;                  /* generator: noise size */
    int c, h, w;            /* data shape; MLP data is c*h*w features (c = h = 1 for 2-D points) */
    int hidden[GM_GAN_MAX_HIDDEN], nhidden;  /* MLP: widths; conv: channels per resolution */
    int classes;            /* > 0: conditional; a one-hot label joins z / D's input (as planes for conv) */
    int batchnorm;          /* after hidden layers (conv D: all but the first, as in DCGAN) */
    int spectral;           /* 1: spectral normalization of every weight */
    float dropout;          /* after hidden activations (training mode only) */
    int act;                /* hidden activation, GM_ACT_RELU, GM_ACT_LEAKY_RELU, ... (genmod.h) */
    float slope;            /* GM_ACT_LEAKY_RELU's negative slope */
    int out_act;            /* generator output: GM_ACT_TANH (images in [-1,1]) or GM_ACT_IDENTITY */
    int mbstd;              /* conv/patch D: 1 = a minibatch standard-deviation channel joins the last
                               conv features before the output layer (ProGAN; gm_gan_minibatch_stddev) */
    int pack;               /* D only (0 or 1: off): PacGAN (Lin et al. 2018), D scores packs of `pack`
                               examples, consecutive rows of the batch joined along the channels
                               (conv: (N,C,H,W) -> (N/p,pC,H,W); MLP: (N,F) -> (N/p,pF)); a pack is all
                               real or all fake, so D sees p samples at once and can tell a generator
                               that drops modes. N must divide by p; not for conditional Ds or the
                               gradient penalty (its per-example norm is not the pack's). */
} gm_gan_arch;

/* The standard networks on 28x28 digits; change fields of the result to vary them. */
GMDEF gm_gan_arch gm_gan_mlp_g(int z, int features, int classes); /* z->256->512->1024->features, BN+ReLU, tanh */
GMDEF gm_gan_arch gm_gan_mlp_d(int features, int classes);        /* features->1024->512->256->1, ReLU, dropout 0.3 */
GMDEF gm_gan_arch gm_gan_dcgan_g(int z, int classes);  /* z->128x7x7 BN ReLU -> 64x14x14 BN ReLU -> 1x28x28 tanh */
GMDEF gm_gan_arch gm_gan_dcgan_d(int classes);         /* 1x28x28 -> 64 LReLU -> 128 BN LReLU -> dense 1 */

typedef struct gm_gan_layer {
    int type;               /* private: dense, conv or conv-transpose */
    gm_linear lin;
    gm_conv conv;
    int has_sn, has_bn, act, reshape;
    gm_spectral sn;
    gm_batchnorm bn;
    float slope, dropout;
    int oc, oh, ow;         /* reshape target of a dense layer feeding convs */
} gm_gan_layer;

typedef struct gm_gan_net {
    gm_gan_arch arch;
    gm_params params;       /* every weight of this network (and its buffers) */
    gm_gan_layer layers[GM_GAN_MAX_HIDDEN + 2];
    int nlayers;
} gm_gan_net;

GMDEF int gm_gan_net_init(gm_gan_net *net, const gm_gan_arch *arch, gm_rng *r);
/* x: G (N, z); D (N, c*h*w) or (N, c, h, w). labels: N ints when conditional, else NULL.
   G returns (N, c*h*w) for MLP, (N, c, h, w) for conv; D returns (N, 1) (patch: (N, 1, h', w')). */
GMDEF gm_tensor *gm_gan_net_forward(gm_graph *g, gm_gan_net *net, gm_tensor *x, const int *labels);
GMDEF void gm_gan_net_free(gm_gan_net *net);
/* Minibatch standard deviation (Karras et al. 2018, ProGAN), against mode dropping: x (N, C, H, W)
   -> (N, C+1, H, W), the extra channel the constant s = mean over c,h,w of
   sqrt(var_n x[n,c,h,w] + 1e-8) (the variance over the batch, divided by N). A batch of copies of one
   image gives s ~ 1e-4, a varied batch a larger s, so D can tell a collapsed G's batches from real
   ones. N >= 2. Differentiable in x (every example's gradient depends on the whole batch). */
GMDEF gm_tensor *gm_gan_minibatch_stddev(gm_graph *g, gm_tensor *x);
/* Learning rate decayed linearly to 0: lr * (1 - done), done (the fraction of the training budget
   spent, steps or wall clock) clamped to [0, 1]. Set gan.opt_g.lr / opt_d.lr from it before a step. */
GMDEF float gm_gan_lr_linear(float lr, double done);

/* ======================================================================================= */
/* Losses, gradient penalty, instance noise                                                */
/* ======================================================================================= */
enum { GM_GAN_NONSAT = 0,   /* D: BCE; G: -log D(G(z)) */
       GM_GAN_MINIMAX,      /* D: BCE; G: log(1 - D(G(z))) (saturates when D wins) */
       GM_GAN_LSGAN,        /* D: (D(x)-1)^2/2 + D(G(z))^2/2; G: (D(G(z))-1)^2/2 */
       GM_GAN_WASSERSTEIN,  /* D: D(G(z)) - D(x); G: -D(G(z)) (needs clipping or the penalty) */
       GM_GAN_HINGE,        /* D: relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z)) (SAGAN, BigGAN) */
       GM_GAN_NLOSSES };
GMDEF const char *gm_gan_loss_name(int loss);   /* "nonsat", "minimax", "lsgan", "wgan", "hinge" */
GMDEF int gm_gan_loss_parse(const char *name);  /* the reverse; -1 if unknown */
/* Scalars, means over every element of the D outputs (any shape; patch outputs included). */
GMDEF gm_tensor *gm_gan_d_loss(gm_graph *g, int loss, gm_tensor *d_real, gm_tensor *d_fake);
/* The same with D's target on real data 1 - smooth (one-sided label smoothing; nonsat and minimax
   only, others refused unless smooth is 0): mean of smooth softplus(r) + (1 - smooth) softplus(-r) over
   the real outputs r, plus the fake term unchanged. gm_gan_d_loss is smooth = 0. */
GMDEF gm_tensor *gm_gan_d_loss_smooth(gm_graph *g, int loss, gm_tensor *d_real, gm_tensor *d_fake, float smooth);
GMDEF gm_tensor *gm_gan_g_loss(gm_graph *g, int loss, gm_tensor *d_fake);

/* lambda * mean_i (|grad_x D(x_hat_i)| - 1)^2, x_hat = e*real + (1-e)*fake with one e ~ U[0,1)
   per example (from the graph's rng). The gradient is taken with create_graph, so the penalty
   trains D through a second backward pass. critic(g, x, ctx) must return (N, 1). */
typedef gm_tensor *(*gm_gan_critic_fn)(gm_graph *g, gm_tensor *x, void *ctx);
GMDEF gm_tensor *gm_gan_gradient_penalty(gm_graph *g, gm_gan_critic_fn critic, void *ctx, const gm_tensor *real,
                                         const gm_tensor *fake, float lambda);

/* R1 (Mescheder et al. 2018): gamma/2 * mean_i |grad_x D(x_i)|^2 on real data, exact: the gradient
   is taken with create_graph, so the penalty trains D through a second backward pass. A packing D
   (arch.pack = p): the mean is over its inputs, the packs of p rows of real.
   real: a leaf marked with gm_requires_grad before D ran on it; d_real: D's output on it. */
GMDEF gm_tensor *gm_gan_r1_penalty(gm_graph *g, gm_tensor *d_real, gm_tensor *real, float gamma);

/* Differentiable augmentation (DiffAugment, Zhao et al. 2020): the same random transformation
   family on real and fake images before D, so D never sees un-augmented data and G gets gradients
   through it. x: (N, c*h*w) or (N, c, h, w); the result has x's shape. Per example, from the
   graph's random stream: translation by up to h/8, w/8 pixels (rounded) with zero fill, and a
   cutout zeroing an (h/2 x w/2) square centred anywhere (clipped at the border). Both are linear
   in x (masks and shifts), so the gradient w.r.t. x is exact. Pixels in [-1,1]: zero is mid-grey. */
enum { GM_GAN_AUG_TRANSLATION = 1, GM_GAN_AUG_CUTOUT = 2 };
GMDEF gm_tensor *gm_gan_augment(gm_graph *g, gm_tensor *x, int c, int h, int w, int policy);

/* Exponential moving average of a network's weights: avg = decay avg + (1 - decay) net for every
   trained tensor; buffers (batch-norm statistics, spectral-norm vectors) are copied. Both networks
   from the same arch. gm_gan_ema_decay: the decay used after `steps` updates, min(decay,
   (1 + steps) / (10 + steps)), so that the average forgets the random initial weights early. */
GMDEF int gm_gan_ema_update(gm_gan_net *avg, const gm_gan_net *net, float decay);
GMDEF float gm_gan_ema_decay(float decay, long steps);

/* Instance noise (Sonderby et al. 2016): x + std * N(0, I), std = std0 * (1 - step/steps), 0 after. */
GMDEF float gm_gan_noise_std(float std0, long step, long steps);
GMDEF gm_tensor *gm_gan_instance_noise(gm_graph *g, gm_tensor *x, float std);

/* ======================================================================================= */
/* The GAN model                                                                           */
/* ======================================================================================= */
/* One network's optimizer, built at init (change gan.opt_g / opt_d afterwards for a schedule). */
typedef struct gm_gan_optim_config {
    int kind;               /* GM_ADAM, GM_RMSPROP (WGAN with clipping, as in its paper) or GM_SGD */
    float lr;               /* learning rate */
    float beta1;            /* Adam's first-moment decay; SGD's momentum */
    float beta2;            /* Adam's second-moment decay; RMSProp's smoothing constant (alpha) */
    float clip_value;       /* > 0: every weight clamped to [-clip_value, clip_value] after a step */
} gm_gan_optim_config;

typedef struct gm_gan_config {
    gm_gan_arch generator;      /* G: noise (+ label) -> data */
    gm_gan_arch discriminator;  /* D: data (+ label) -> score; G's data shape and classes */
    int loss;                   /* GM_GAN_NONSAT, GM_GAN_MINIMAX, GM_GAN_LSGAN, GM_GAN_WASSERSTEIN, GM_GAN_HINGE */
    int n_critic;               /* D steps per G step (1; WGAN 5) */
    float gp;                   /* > 0: gradient penalty weight (WGAN-GP: 10) */
    float r1;                   /* > 0: R1 penalty gamma on real data, gamma/2 E|grad D(x)|^2 (0: off) */
    float label_smooth;         /* > 0: one-sided label smoothing (Salimans et al. 2016): D's target on real
                                   data is 1 - label_smooth (nonsat, minimax; fakes keep 0); 0: off */
    int augment;                /* GM_GAN_AUG_TRANSLATION | GM_GAN_AUG_CUTOUT on real and fake before D (0: off) */
    float ema;                  /* > 0: decay of the moving average of G's weights, which samples (0: off) */
    float noise;                /* instance noise std at the start (0: off) */
    long noise_steps;           /* D steps over which the instance noise anneals to zero */
    gm_gan_optim_config opt_g;  /* G's optimizer (Adam 2e-4, betas 0.5, 0.999) */
    gm_gan_optim_config opt_d;  /* D's optimizer (the same) */
    int batch;                  /* the recommended batch size; gm_gan_train_step takes any n */
    uint64_t seed;              /* weights and the model's random stream */
} gm_gan_config;

/* The MLP GAN on 28x28 digits: G z 100 -> 256 -> 512 -> 1024 -> 784 (batch norm, ReLU, tanh),
   D 784 -> 1024 -> 512 -> 256 -> 1 (ReLU, dropout 0.3), non-saturating loss, batch 100.
   classes > 0: conditional on a label 0..classes-1 (G and D). */
GMDEF gm_gan_config gm_gan_default_config(int classes);
/* DCGAN (gm_gan_dcgan_g / _d), Adam 2e-4 (0.5, 0.999), batch 64. */
GMDEF gm_gan_config gm_gan_dcgan_config(int classes);
/* Two time-scale update rule (Heusel et al. 2017) on the DCGAN: D's learning rate 4e-4, G's 1e-4,
   Adam betas (0.5, 0.999). */
GMDEF gm_gan_config gm_gan_ttur_config(int classes);
/* WGAN-GP: the MLP G, an MLP critic without dropout or batch norm (the penalty treats examples one
   by one), Wasserstein loss, penalty 10, 5 critic steps per G step, Adam 1e-4 (0.5, 0.9), batch 64. */
GMDEF gm_gan_config gm_gan_wgan_gp_config(int classes);

typedef struct gm_gan_stats {
    float d_loss, g_loss;   /* g_loss: of this call's G step (0 if none) */
    float d_real, d_fake;   /* mean D output (logit or critic value) on the real and fake batch */
    float gp;               /* penalty term (0 without) */
    float r1;               /* R1 term (0 without) */
    float noise;            /* instance noise std used */
    int g_step;             /* 1 if this call also stepped G */
} gm_gan_stats;

typedef struct gm_gan {
    gm_gan_config cfg;              /* as given to gm_gan_init */
    gm_gan_net generator, discriminator;
    gm_gan_net generator_ema;       /* cfg.ema > 0: the moving average of G's weights (else empty) */
    int use_ema;                    /* 1 when cfg.ema > 0: sampling uses generator_ema; set 0 for the trained G */
    gm_optim opt_g, opt_d;          /* built from cfg; change hyperparameters or schedules here */
    gm_graph *graph;                /* every call of this model computes here; its rng is the model's */
    long d_steps, g_steps;          /* training steps taken by each network */
} gm_gan;

GMDEF int  gm_gan_init(gm_gan *gan, const gm_gan_config *cfg);
GMDEF void gm_gan_free(gm_gan *gan);
/* One D step on n real examples (n * c*h*w floats; labels when conditional, also given to the
   fakes, NULL otherwise) and, when d_steps reaches a multiple of n_critic, one G step on the same
   fake batch. stats may be NULL. */
GMDEF int  gm_gan_train_step(gm_gan *gan, const float *real, const int *labels, int n, gm_gan_stats *stats);
/* n samples into out (n * c*h*w) with G in eval mode (batch-norm running statistics), the noise
   drawn from the model's random stream; labels when conditional. With cfg.ema > 0 (and use_ema),
   G is the moving average of its weights. */
GMDEF int  gm_gan_sample(gm_gan *gan, const int *labels, int n, float *out);
GMDEF int  gm_gan_sample_z(gm_gan *gan, const float *z, const int *labels, int n, float *out);  /* z: n * z floats */
/* Batch-norm statistics of the moving average of G, measured on itself ("standing statistics"):
   the average's running means and variances are G's, copied by each update, but the averaged
   weights feed their batch norms other activations. This replaces them by their mean over
   `batches` training-mode batches of cfg.batch noise vectors (random labels when conditional),
   drawn from the model's stream. No-op without a moving average or batch norm. 0 or -1. */
GMDEF int  gm_gan_ema_recalibrate(gm_gan *gan, int batches);
/* D's raw output on n inputs (eval mode: no dropout), into out: n floats (a patch D: n * h'*w'; a
   packing D: n / pack, n a multiple of the pack, consecutive examples packed). With arch.mbstd the output depends on the batch the example is run in (gm_run_chunks' chunks). */
GMDEF int  gm_gan_discriminate(gm_gan *gan, const float *x, const int *labels, int n, float *out);
/* G on z (N, z) in the caller's graph, for custom losses: (N, c*h*w) for MLP, (N, c, h, w) for conv. */
GMDEF gm_tensor *gm_gan_forward(gm_graph *g, gm_gan *gan, gm_tensor *z, const int *labels);
GMDEF int  gm_gan_save(const gm_gan *gan, const char *path);
GMDEF int  gm_gan_load(gm_gan *gan, const char *path);  /* gan: initialized with the same architecture */

/* ======================================================================================= */
/* CycleGAN (Zhu et al. 2017): unpaired translation A <-> B                                */
/* ======================================================================================= */
GMDEF gm_gan_arch gm_cyclegan_g(int c, int h, int w);   /* 3x3 convs 16-32-16, ReLU, tanh */
GMDEF gm_gan_arch gm_cyclegan_d(int c, int h, int w);   /* patch D: 4x4/2 32, 64, LReLU, 3x3 to 1 */

typedef struct gm_cyclegan_config {
    gm_gan_arch generator;      /* both generators, A -> B and B -> A (an image-to-image net) */
    gm_gan_arch discriminator;  /* both discriminators, of A and of B */
    int loss;                   /* adversarial loss, GM_GAN_LSGAN as in the paper */
    float cycle;                /* weight of |F(G(a)) - a|_1 + |G(F(b)) - b|_1 (10) */
    float identity;             /* weight of |G(b) - b|_1 + |F(a) - a|_1 (0: off; the paper uses cycle/2) */
    float ema;                  /* > 0: decay of the moving average of both generators, which translates (0: off) */
    gm_gan_optim_config opt_g;  /* each generator's optimizer (Adam 2e-4, betas 0.5, 0.999) */
    gm_gan_optim_config opt_d;  /* each discriminator's optimizer (the same) */
    int batch;                  /* the recommended batch size (16) */
    uint64_t seed;              /* weights and the model's random stream */
} gm_cyclegan_config;

typedef struct gm_cyclegan_stats { float g_adv, cycle, identity, d_a, d_b; } gm_cyclegan_stats;

typedef struct gm_cyclegan {
    gm_cyclegan_config cfg;
    gm_gan_net gen_ab, gen_ba;      /* the paper's G: A -> B and F: B -> A */
    gm_gan_net disc_a, disc_b;      /* D_A judges A, D_B judges B */
    gm_gan_net gen_ab_ema, gen_ba_ema;  /* cfg.ema > 0: the moving averages of gen_ab, gen_ba (else empty) */
    int use_ema;                    /* 1 when cfg.ema > 0: translate with the averages; 0: the trained ones */
    gm_optim opt_ab, opt_ba, opt_da, opt_db;
    gm_graph *graph;
    long step;                      /* training steps taken */
} gm_cyclegan;

GMDEF gm_cyclegan_config gm_cyclegan_default_config(int c, int h, int w);  /* images c x h x w */
GMDEF int  gm_cyclegan_init(gm_cyclegan *m, const gm_cyclegan_config *cfg);
GMDEF void gm_cyclegan_free(gm_cyclegan *m);
/* One step of both generators (discriminators frozen), then one of both discriminators, on n
   images from A and n from B (n * c*h*w floats each). stats may be NULL. */
GMDEF int  gm_cyclegan_train_step(gm_cyclegan *m, const float *a, const float *b, int n, gm_cyclegan_stats *stats);
/* to_b = 1: A -> B, else B -> A; eval mode; n images into out. */
GMDEF int  gm_cyclegan_translate(gm_cyclegan *m, int to_b, const float *x, int n, float *out);
GMDEF int  gm_cyclegan_save(const gm_cyclegan *m, const char *path);   /* parts "G", "F", "DA", "DB" (+ "G_ema", "F_ema") */
GMDEF int  gm_cyclegan_load(gm_cyclegan *m, const char *path);

/* Demo domains from one digit set: thin strokes as they are (A) vs the same digits dilated by a
   3x3 max filter (B). x: n images h*w in [-1,1]; out: the dilated copies (may not alias x). */
GMDEF void gm_dilate_images(const float *x, int n, int h, int w, float *out);

/* ======================================================================================= */
/* Measuring GANs                                                                          */
/* ======================================================================================= */
/* Linear algebra in double, for symmetric matrices (row-major n x n). */
GMDEF int gm_eigh_sym(const double *a, int n, double *evals, double *evecs); /* Jacobi; evecs columns, ascending */
GMDEF int gm_sqrtm_psd(const double *a, int n, double *out);  /* symmetric square root; eigenvalues < 0 count as 0 */
/* Mean and covariance (divided by n - 1, as numpy.cov) of n rows of d floats. */
GMDEF int gm_gaussian_fit(const float *x, int n, int d, double *mean, double *cov);
/* |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), with Tr (S1 S2)^1/2 = Tr (S1^1/2 S2 S1^1/2)^1/2.
   Returns the distance (>= 0 up to rounding), or -1 after an error. */
GMDEF double gm_frechet_distance(const double *mu1, const double *cov1, const double *mu2, const double *cov2, int d);
/* Entropy (nats) of the histogram of n labels in 0..classes-1: ln(classes) when uniform. */
GMDEF double gm_label_entropy(const int *labels, int n, int classes);
/* Mode coverage on a ring of `modes` Gaussians of std `std` at radius `radius` (8-Gaussians: 8, 2,
   0.02). A sample is of high quality within 3 std of its nearest mode; a mode is covered when at
   least min_count high-quality samples lie at it. Returns the number of covered modes (or -1);
   *hq gets the fraction of high-quality samples (NULL to skip). */
GMDEF int gm_ring_modes(const float *xy, int n, int modes, float radius, float std, int min_count, float *hq);

/* The metric classifier: conv 4x4/2 16 ReLU -> conv 4x4/2 32 ReLU -> dense 128 ReLU (the
   features) -> dense 10. Inputs 28x28 in [-1,1]. */
#define GM_DIGIT_FEATURES 128
typedef struct gm_digit_classifier {
    gm_params params;
    gm_conv c1, c2;
    gm_linear fc1, fc2;
} gm_digit_classifier;
GMDEF int  gm_digit_classifier_init(gm_digit_classifier *m, uint64_t seed);     /* random weights */
GMDEF int  gm_digit_classifier_load(gm_digit_classifier *m, const char *path);  /* init + checkpoint */
/* x (N,784) or (N,1,28,28) -> logits (N,10); *features (N,128) if features != NULL. */
GMDEF gm_tensor *gm_digit_classifier_forward(gm_graph *g, gm_digit_classifier *m, gm_tensor *x, gm_tensor **features);
/* Runs n images through (eval mode, in chunks; resets g): features (n*128) and/or pred (n). */
GMDEF int  gm_digit_classifier_run(gm_digit_classifier *m, gm_graph *g, const float *x, int n, float *features, int *pred);
GMDEF void gm_digit_classifier_free(gm_digit_classifier *m);

typedef struct gm_digit_scores {
    double fd;              /* Frechet distance in feature space, samples vs reference */
    double entropy;         /* of the predicted label histogram, nats (ln 10 = 2.303 is uniform) */
    double accuracy;        /* conditional samples: fraction classified as their label (-1 if no labels) */
} gm_digit_scores;
/* n samples (labels: the class each was drawn for, or NULL) against nref reference images. */
GMDEF int gm_digit_score(gm_digit_classifier *m, gm_graph *g, const float *samples, const int *labels, int n,
                         const float *ref, int nref, gm_digit_scores *out);

#ifdef __cplusplus
}
#endif
#endif /* GENMOD_GAN_H */

/* ======================================================================================= */
/* Implementation                                                                          */
/* ======================================================================================= */
#ifdef GENMOD_GAN_IMPLEMENTATION
#ifndef GENMOD_GAN_IMPLEMENTATION_INCLUDED
#define GENMOD_GAN_IMPLEMENTATION_INCLUDED
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The allocator: genmod.h's, or in a file of its own the same default. */
#if defined(GENMOD_MALLOC) != defined(GENMOD_FREE) || defined(GENMOD_MALLOC) != defined(GENMOD_REALLOC)
#error "genmod_gan.h: define GENMOD_MALLOC, GENMOD_REALLOC and GENMOD_FREE together, or none of them"
#endif
#ifndef GENMOD_MALLOC
#define GENMOD_MALLOC(sz) malloc(sz)
#define GENMOD_REALLOC(p, sz) realloc(p, sz)
#define GENMOD_FREE(p) free(p)
#endif

/* ---------------------------------------------------------------------- spectral norm */
static double gm__gan_normalize(float *x, int n) {
    double s = 0;
    int i;
    for (i = 0; i < n; i++) s += (double)x[i] * x[i];
    s = sqrt(s);
    for (i = 0; i < n && s > 0; i++) x[i] = (float)(x[i] / (s + 1e-12));
    return s;
}

/* out (rows) = W v, or out (cols) = W^T u when transposed; W (rows, cols). In double for accuracy. */
static void gm__gan_matvec(const float *W, int rows, int cols, const float *x, float *out, int transposed) {
    int i, j;
    if (!transposed) {
        for (i = 0; i < rows; i++) {
            double s = 0;
            for (j = 0; j < cols; j++) s += (double)W[(size_t)i * cols + j] * x[j];
            out[i] = (float)s;
        }
        return;
    }
    for (j = 0; j < cols; j++) out[j] = 0;
    for (i = 0; i < rows; i++)
        for (j = 0; j < cols; j++) out[j] += W[(size_t)i * cols + j] * x[i];
}

GMDEF int gm_spectral_init(gm_spectral *sn, gm_params *p, int weight_view, gm_rng *r) {
    char name[GM_NAME_MAX + 8];
    int shape[4] = {0, 0, 0, 0};
    gm_param_view *v;
    if (!sn || !p || !r || weight_view < 0 || weight_view >= p->nviews)
        return gm_fail("gm_spectral_init: bad arguments (view %d of %d)", weight_view, p ? p->nviews : 0);
    v = &p->views[weight_view];
    if (v->ndim < 2) return gm_fail("gm_spectral_init: '%s' is not a matrix (ndim %d)", v->name, v->ndim);
    sn->p = p;
    sn->w = weight_view;
    sn->rows = v->shape[0];
    sn->cols = (int)(v->size / (size_t)v->shape[0]);
    snprintf(name, sizeof name, "%.*s_sn_u", GM_NAME_MAX - 8, v->name);
    shape[0] = sn->rows;
    if ((sn->u = gm_params_add(p, name, 1, shape)) < 0) return -1;
    snprintf(name, sizeof name, "%.*s_sn_v", GM_NAME_MAX - 8, p->views[weight_view].name);
    shape[0] = sn->cols;
    if ((sn->v = gm_params_add(p, name, 1, shape)) < 0) return -1;
    gm_params_mark_buffer(p, sn->u);
    gm_params_mark_buffer(p, sn->v);
    gm_init_normal(r, gm_params_data(p, sn->u), (size_t)sn->rows, 0.0f, 1.0f);
    gm__gan_normalize(gm_params_data(p, sn->u), sn->rows);
    gm__gan_matvec(gm_params_data(p, sn->w), sn->rows, sn->cols, gm_params_data(p, sn->u), gm_params_data(p, sn->v), 1);
    gm__gan_normalize(gm_params_data(p, sn->v), sn->cols);
    return 0;
}

static void gm__spectral_power_step(const gm_spectral *sn) {
    float *W = gm_params_data(sn->p, sn->w), *u = gm_params_data(sn->p, sn->u), *v = gm_params_data(sn->p, sn->v);
    gm__gan_matvec(W, sn->rows, sn->cols, u, v, 1);   /* v = W^T u / |.| */
    gm__gan_normalize(v, sn->cols);
    gm__gan_matvec(W, sn->rows, sn->cols, v, u, 0);   /* u = W v / |.| */
    gm__gan_normalize(u, sn->rows);
}

GMDEF float gm_spectral_sigma(const gm_spectral *sn) {
    const float *W = gm_params_data(sn->p, sn->w), *u = gm_params_data(sn->p, sn->u), *v = gm_params_data(sn->p, sn->v);
    double s = 0;
    int i, j;
    for (i = 0; i < sn->rows; i++) {
        double row = 0;
        for (j = 0; j < sn->cols; j++) row += (double)W[(size_t)i * sn->cols + j] * v[j];
        s += row * u[i];
    }
    return (float)s;
}

GMDEF gm_tensor *gm_spectral_weight(gm_graph *g, const gm_spectral *sn) {
    gm_tensor *w, *wm, *u, *v, *sigma;
    if (!g || !sn || !sn->p) return NULL;
    if (gm_graph_training(g)) gm__spectral_power_step(sn);
    w = gm_param(g, sn->p, sn->w);
    if (!w) return NULL;
    wm = gm_reshape(g, w, sn->rows, sn->cols, 0, 0);
    u = gm_input(g, gm_params_data(sn->p, sn->u), 1, sn->rows, 0, 0);   /* constants: no gradient */
    v = gm_input(g, gm_params_data(sn->p, sn->v), sn->cols, 1, 0, 0);
    sigma = gm_matmul(g, gm_matmul(g, u, wm, 0, 0), v, 0, 0);           /* (1,1) = u^T W v */
    if (w->ndim == 4) sigma = gm_reshape(g, sigma, 1, 1, 1, 1);
    return gm_div(g, w, sigma);
}

/* ---------------------------------------------------------------------- architectures */
static gm_gan_arch gm__gan_arch(int kind, int generator) {
    gm_gan_arch a;
    memset(&a, 0, sizeof a);
    a.kind = kind; a.generator = generator;
    a.c = 1; a.h = 28; a.w = 28;
    a.act = GM_ACT_RELU; a.slope = 0.2f;
    a.out_act = generator ? GM_ACT_TANH : GM_ACT_IDENTITY;
    return a;
}

GMDEF gm_gan_arch gm_gan_mlp_g(int z, int features, int classes) {
    gm_gan_arch a = gm__gan_arch(GM_GAN_MLP, 1);
    a.z = z; a.c = 1; a.h = 1; a.w = features; a.classes = classes;
    a.hidden[0] = 256; a.hidden[1] = 512; a.hidden[2] = 1024; a.nhidden = 3;
    a.batchnorm = 1;
    return a;
}

GMDEF gm_gan_arch gm_gan_mlp_d(int features, int classes) {
    gm_gan_arch a = gm__gan_arch(GM_GAN_MLP, 0);
    a.c = 1; a.h = 1; a.w = features; a.classes = classes;
    a.hidden[0] = 1024; a.hidden[1] = 512; a.hidden[2] = 256; a.nhidden = 3;
    a.dropout = 0.3f;
    return a;
}

GMDEF gm_gan_arch gm_gan_dcgan_g(int z, int classes) {
    gm_gan_arch a = gm__gan_arch(GM_GAN_CONV, 1);
    a.z = z; a.classes = classes;
    a.hidden[0] = 128; a.hidden[1] = 64; a.nhidden = 2;
    a.batchnorm = 1;
    return a;
}

GMDEF gm_gan_arch gm_gan_dcgan_d(int classes) {
    gm_gan_arch a = gm__gan_arch(GM_GAN_CONV, 0);
    a.classes = classes;
    a.hidden[0] = 64; a.hidden[1] = 128; a.nhidden = 2;
    a.batchnorm = 1; a.act = GM_ACT_LEAKY_RELU;
    return a;
}

GMDEF gm_gan_arch gm_cyclegan_g(int c, int h, int w) {
    gm_gan_arch a = gm__gan_arch(GM_GAN_IMG2IMG, 1);
    a.c = c; a.h = h; a.w = w;
    a.hidden[0] = 16; a.hidden[1] = 32; a.hidden[2] = 16; a.nhidden = 3;
    return a;
}

GMDEF gm_gan_arch gm_cyclegan_d(int c, int h, int w) {
    gm_gan_arch a = gm__gan_arch(GM_GAN_PATCH, 0);
    a.c = c; a.h = h; a.w = w;
    a.hidden[0] = 32; a.hidden[1] = 64; a.nhidden = 2;
    a.act = GM_ACT_LEAKY_RELU;
    return a;
}

/* ---------------------------------------------------------------------- networks */
enum { GM__GAN_DENSE = 0, GM__GAN_CONV, GM__GAN_CONVT };

/* who: the calling function, field: the config field holding the arch (named in the message). */
static int gm__gan_arch_check(const gm_gan_arch *a, const char *who, const char *field) {
    int i, f = a->kind == GM_GAN_CONV || a->kind == GM_GAN_PATCH ? 1 << a->nhidden : 1;
    if (a->kind < GM_GAN_MLP || a->kind > GM_GAN_PATCH) return gm_fail("%s: %s.kind %d is unknown", who, field, a->kind);
    if (a->nhidden < 1 || a->nhidden > GM_GAN_MAX_HIDDEN)
        return gm_fail("%s: %s.nhidden is %d, must be 1..%d", who, field, a->nhidden, GM_GAN_MAX_HIDDEN);
    for (i = 0; i < a->nhidden; i++)
        if (a->hidden[i] <= 0) return gm_fail("%s: %s.hidden[%d] = %d must be positive", who, field, i, a->hidden[i]);
    if (a->c <= 0 || a->h <= 0 || a->w <= 0) return gm_fail("%s: %s data shape %dx%dx%d", who, field, a->c, a->h, a->w);
    if (a->h % f || a->w % f)
        return gm_fail("%s: %s: a conv net with %d stages needs h, w divisible by %d (got %dx%d)", who, field, a->nhidden,
                       f, a->h, a->w);
    if (a->generator && a->kind != GM_GAN_IMG2IMG && a->z <= 0) return gm_fail("%s: %s.z must be > 0", who, field);
    if (a->generator && a->kind == GM_GAN_PATCH)
        return gm_fail("%s: %s: a patch network is a discriminator (set generator = 0)", who, field);
    if (a->classes < 0 || a->classes > 1000) return gm_fail("%s: %s.classes %d out of 0..1000", who, field, a->classes);
    if (!(a->dropout >= 0 && a->dropout < 1)) return gm_fail("%s: %s.dropout %g out of [0,1)", who, field, a->dropout);
    if (a->act < 0 || a->act >= GM_ACT_COUNT) return gm_fail("%s: %s.act %d is not a GM_ACT_*", who, field, a->act);
    if (a->out_act < 0 || a->out_act >= GM_ACT_COUNT)
        return gm_fail("%s: %s.out_act %d is not a GM_ACT_*", who, field, a->out_act);
    if (a->mbstd && (a->generator || (a->kind != GM_GAN_CONV && a->kind != GM_GAN_PATCH)))
        return gm_fail("%s: %s.mbstd: the minibatch standard deviation is for conv discriminators only", who, field);
    if (a->mbstd != 0 && a->mbstd != 1) return gm_fail("%s: %s.mbstd %d must be 0 or 1", who, field, a->mbstd);
    if (a->pack < 0 || a->pack > 16) return gm_fail("%s: %s.pack %d out of 0..16", who, field, a->pack);
    if (a->pack > 1 && (a->generator || a->kind == GM_GAN_IMG2IMG))
        return gm_fail("%s: %s.pack: packing (PacGAN) is for discriminators only", who, field);
    if (a->pack > 1 && a->classes > 0)
        return gm_fail("%s: %s.pack: a conditional discriminator cannot pack (one label per example)", who, field);
    return 0;
}

/* Adds one layer: weights (PyTorch's default init), then its spectral-norm vectors and batch norm. */
static int gm__gan_add(gm_gan_net *net, int type, int in, int out, int k, int stride, int pad, int bn, int act,
                       gm_rng *r) {
    gm_gan_layer *L = &net->layers[net->nlayers];
    char name[32];
    int rc, w;
    memset(L, 0, sizeof *L);
    snprintf(name, sizeof name, "l%d", net->nlayers);
    L->type = type; L->act = act; L->slope = net->arch.slope;
    if (type == GM__GAN_DENSE) rc = gm_linear_init(&L->lin, &net->params, name, in, out, GM_INIT_TORCH, r);
    else if (type == GM__GAN_CONV) rc = gm_conv_init(&L->conv, &net->params, name, in, out, k, stride, pad, GM_INIT_TORCH, r);
    else rc = gm_conv_transpose_init(&L->conv, &net->params, name, in, out, k, stride, pad, 0, GM_INIT_TORCH, r);
    if (rc != 0) return -1;
    w = type == GM__GAN_DENSE ? L->lin.w : L->conv.w;
    L->has_sn = net->arch.spectral;
    if (L->has_sn && gm_spectral_init(&L->sn, &net->params, w, r) != 0) return -1;
    snprintf(name, sizeof name, "l%d.bn", net->nlayers);
    L->has_bn = bn;
    if (bn && gm_batchnorm_init(&L->bn, &net->params, name, out) != 0) return -1;
    net->nlayers++;
    return 0;
}

static int gm__gan_build_mlp(gm_gan_net *net, gm_rng *r) {
    const gm_gan_arch *a = &net->arch;
    int i, in = (a->generator ? a->z : a->c * a->h * a->w * (a->pack > 1 ? a->pack : 1)) + a->classes;
    for (i = 0; i < a->nhidden; i++) {
        if (gm__gan_add(net, GM__GAN_DENSE, in, a->hidden[i], 0, 0, 0, a->batchnorm, a->act, r) != 0) return -1;
        net->layers[net->nlayers - 1].dropout = a->dropout;
        in = a->hidden[i];
    }
    return gm__gan_add(net, GM__GAN_DENSE, in, a->generator ? a->c * a->h * a->w : 1, 0, 0, 0, 0,
                       a->generator ? a->out_act : GM_ACT_IDENTITY, r);
}

/* DCGAN generator: dense to hidden[0] planes at (h, w) / 2^nhidden, then a conv-transpose 4x4/2
   per remaining stage, the last one to c channels. */
static int gm__gan_build_conv_g(gm_gan_net *net, gm_rng *r) {
    const gm_gan_arch *a = &net->arch;
    int i, s = 1 << a->nhidden, oh = a->h / s, ow = a->w / s;
    gm_gan_layer *L;
    if (gm__gan_add(net, GM__GAN_DENSE, a->z + a->classes, a->hidden[0] * oh * ow, 0, 0, 0, a->batchnorm, a->act, r) != 0)
        return -1;
    L = &net->layers[0];
    L->reshape = 1; L->oc = a->hidden[0]; L->oh = oh; L->ow = ow;
    for (i = 1; i < a->nhidden; i++)
        if (gm__gan_add(net, GM__GAN_CONVT, a->hidden[i - 1], a->hidden[i], 4, 2, 1, a->batchnorm, a->act, r) != 0) return -1;
    return gm__gan_add(net, GM__GAN_CONVT, a->hidden[a->nhidden - 1], a->c, 4, 2, 1, 0, a->out_act, r);
}

/* DCGAN discriminator (conv 4x4/2 per stage, no batch norm on the first, dense 1) or PatchGAN
   (same convs, then a 3x3 conv to one logit per patch). */
static int gm__gan_build_conv_d(gm_gan_net *net, gm_rng *r) {
    const gm_gan_arch *a = &net->arch;
    int i, in = a->c * (a->pack > 1 ? a->pack : 1) + a->classes, s = 1 << a->nhidden;
    for (i = 0; i < a->nhidden; i++) {
        if (gm__gan_add(net, GM__GAN_CONV, in, a->hidden[i], 4, 2, 1, a->batchnorm && i > 0, a->act, r) != 0) return -1;
        net->layers[net->nlayers - 1].dropout = a->dropout;
        in = a->hidden[i];
    }
    in += a->mbstd;         /* the minibatch standard-deviation channel (gm_gan_net_forward adds it) */
    if (a->kind == GM_GAN_PATCH) return gm__gan_add(net, GM__GAN_CONV, in, 1, 3, 1, 1, 0, GM_ACT_IDENTITY, r);
    return gm__gan_add(net, GM__GAN_DENSE, in * (a->h / s) * (a->w / s), 1, 0, 0, 0, 0, GM_ACT_IDENTITY, r);
}

static int gm__gan_build_img2img(gm_gan_net *net, gm_rng *r) {
    const gm_gan_arch *a = &net->arch;
    int i, in = a->c + a->classes;
    for (i = 0; i < a->nhidden; i++) {
        if (gm__gan_add(net, GM__GAN_CONV, in, a->hidden[i], 3, 1, 1, a->batchnorm, a->act, r) != 0) return -1;
        in = a->hidden[i];
    }
    return gm__gan_add(net, GM__GAN_CONV, in, a->c, 3, 1, 1, 0, a->out_act, r);
}

GMDEF int gm_gan_net_init(gm_gan_net *net, const gm_gan_arch *arch, gm_rng *r) {
    int rc;
    if (!net || !arch || !r) return gm_fail("gm_gan_net_init: NULL argument");
    memset(net, 0, sizeof *net);
    if (gm__gan_arch_check(arch, "gm_gan_net_init", "arch") != 0) return -1;
    net->arch = *arch;
    if (arch->kind == GM_GAN_MLP) rc = gm__gan_build_mlp(net, r);
    else if (arch->kind == GM_GAN_IMG2IMG) rc = gm__gan_build_img2img(net, r);
    else if (arch->generator) rc = gm__gan_build_conv_g(net, r);
    else rc = gm__gan_build_conv_d(net, r);
    if (rc != 0) gm_gan_net_free(net);
    return rc;
}

GMDEF void gm_gan_net_free(gm_gan_net *net) {
    if (!net) return;
    gm_params_free(&net->params);
    memset(net, 0, sizeof *net);
}

static gm_tensor *gm__gan_layer_forward(gm_graph *g, gm_gan_layer *L, gm_tensor *x) {
    gm_params *p = L->type == GM__GAN_DENSE ? L->lin.p : L->conv.p;
    int wv = L->type == GM__GAN_DENSE ? L->lin.w : L->conv.w, bv = L->type == GM__GAN_DENSE ? L->lin.b : L->conv.b;
    gm_tensor *w = L->has_sn ? gm_spectral_weight(g, &L->sn) : gm_param(g, p, wv), *y;
    if (!x) return NULL;
    if (L->type == GM__GAN_DENSE) {
        if (x->ndim != 2) x = gm_flatten(g, x);            /* conv features (N,C,H,W) -> (N, C*H*W) */
        y = gm_matmul(g, x, w, 0, 1);                       /* (N,in) (out,in)^T -> (N,out) */
    } else if (L->type == GM__GAN_CONV) {
        y = gm_conv2d(g, x, w, L->conv.stride, L->conv.pad);
    } else {
        y = gm_conv_transpose2d(g, x, w, L->conv.stride, L->conv.pad, L->conv.out_pad);
    }
    y = gm_bias_add(g, y, gm_param(g, p, bv));
    if (L->has_bn) y = gm_batchnorm_forward(g, &L->bn, y);
    y = gm_activation(g, y, L->act, L->slope);
    if (L->dropout > 0) y = gm_dropout(g, y, L->dropout);
    if (L->reshape) y = gm_reshape(g, y, -1, L->oc, L->oh, L->ow);
    return y;
}

/* Joins a one-hot label: as columns to (N, F), as constant planes to (N, C, H, W). */
static gm_tensor *gm__gan_condition(gm_graph *g, gm_tensor *x, const int *labels, int classes) {
    gm_tensor *oh;
    if (!x || classes <= 0) return x;
    if (!labels) {
        gm_fail("gm_gan_net_forward: a conditional network (%d classes) needs labels", classes);
        return NULL;
    }
    oh = gm_one_hot(g, labels, x->shape[0], classes);                   /* (N, classes) */
    if (x->ndim == 2) return gm_concat(g, x, oh, 1);
    oh = gm_expand(g, gm_reshape(g, oh, x->shape[0], classes, 1, 1), x->shape[0], classes, x->shape[2], x->shape[3]);
    return gm_concat(g, x, oh, 1);
}

GMDEF gm_tensor *gm_gan_net_forward(gm_graph *g, gm_gan_net *net, gm_tensor *x, const int *labels) {
    const gm_gan_arch *a;
    int i;
    if (!g || !net || !x) return NULL;
    a = &net->arch;
    if (!a->generator || a->kind == GM_GAN_IMG2IMG) {
        /* data in: MLPs take (N, F), conv nets (N, C, H, W); accept either layout */
        if (a->kind == GM_GAN_MLP && x->ndim != 2) x = gm_flatten(g, x);
        else if (a->kind != GM_GAN_MLP && x->ndim == 2) x = gm_reshape(g, x, -1, a->c, a->h, a->w);
        if (x && a->pack > 1) {     /* PacGAN: p consecutive examples -> one input (NCHW rows are contiguous) */
            if (x->shape[0] % a->pack != 0) {
                gm_fail("gm_gan_net_forward: a discriminator packing %d examples got a batch of %d (not a multiple)",
                        a->pack, x->shape[0]);
                return NULL;
            }
            x = a->kind == GM_GAN_MLP ? gm_reshape(g, x, x->shape[0] / a->pack, a->pack * x->shape[1], 0, 0)
                                      : gm_reshape(g, x, x->shape[0] / a->pack, a->pack * a->c, a->h, a->w);
        }
    }
    x = gm__gan_condition(g, x, labels, a->classes);
    for (i = 0; i < net->nlayers && x; i++) {
        if (a->mbstd && i == net->nlayers - 1) x = gm_gan_minibatch_stddev(g, x);
        if (x) x = gm__gan_layer_forward(g, &net->layers[i], x);
    }
    return x;
}

GMDEF gm_tensor *gm_gan_minibatch_stddev(gm_graph *g, gm_tensor *x) {
    gm_tensor *d, *s;
    int n;
    if (!g || !x) return NULL;
    if (x->ndim != 4 || x->shape[0] < 2) {
        gm_fail("gm_gan_minibatch_stddev: needs (N, C, H, W) with N >= 2, got a %d-D tensor of %d rows", x->ndim,
                x->shape[0]);
        return NULL;
    }
    n = x->shape[0];
    d = gm_sub(g, x, gm_mean_axes(g, x, GM_AXIS(0)));                            /* x - batch mean */
    s = gm_sqrt(g, gm_affine(g, gm_mean_axes(g, gm_square(g, d), GM_AXIS(0)), 1.0f, 1e-8f));  /* (1,C,H,W) */
    s = gm_reshape(g, gm_mean(g, s), 1, 1, 1, 1);
    s = gm_expand(g, s, n, 1, x->shape[2], x->shape[3]);
    return gm_concat(g, x, s, 1);
}

GMDEF float gm_gan_lr_linear(float lr, double done) {
    if (!(done > 0)) done = 0;          /* NaN counts as the start */
    if (done > 1) done = 1;
    return (float)(lr * (1.0 - done));
}


/* ---------------------------------------------------------------------- losses */
static const char *gm__gan_loss_names[GM_GAN_NLOSSES] = {"nonsat", "minimax", "lsgan", "wgan", "hinge"};

GMDEF const char *gm_gan_loss_name(int loss) {
    return loss >= 0 && loss < GM_GAN_NLOSSES ? gm__gan_loss_names[loss] : "?";
}

GMDEF int gm_gan_loss_parse(const char *name) {
    int i;
    for (i = 0; name && i < GM_GAN_NLOSSES; i++)
        if (strcmp(name, gm__gan_loss_names[i]) == 0) return i;
    return -1;
}

static gm_tensor *gm__gan_full_like(gm_graph *g, const gm_tensor *t, float v) {
    return t ? gm_full(g, v, t->shape[0], t->ndim > 1 ? t->shape[1] : 0, t->ndim > 2 ? t->shape[2] : 0,
                       t->ndim > 3 ? t->shape[3] : 0) : NULL;
}

/* mean((x - target)^2) / 2 */
static gm_tensor *gm__gan_half_sq(gm_graph *g, gm_tensor *x, float target) {
    return gm_scale(g, gm_mean(g, gm_square(g, gm_affine(g, x, 1.0f, -target))), 0.5f);
}

GMDEF gm_tensor *gm_gan_d_loss(gm_graph *g, int loss, gm_tensor *d_real, gm_tensor *d_fake) {
    return gm_gan_d_loss_smooth(g, loss, d_real, d_fake, 0.0f);
}

GMDEF gm_tensor *gm_gan_d_loss_smooth(gm_graph *g, int loss, gm_tensor *d_real, gm_tensor *d_fake, float smooth) {
    if (!g || !d_real || !d_fake) return NULL;
    if (smooth != 0 && loss != GM_GAN_NONSAT && loss != GM_GAN_MINIMAX) {
        gm_fail("gm_gan_d_loss_smooth: label smoothing is for the cross-entropy losses, not %s", gm_gan_loss_name(loss));
        return NULL;
    }
    switch (loss) {
    case GM_GAN_NONSAT:
    case GM_GAN_MINIMAX:
        return gm_add(g, gm_bce_logits(g, d_real, gm__gan_full_like(g, d_real, 1.0f - smooth)),
                      gm_bce_logits(g, d_fake, gm__gan_full_like(g, d_fake, 0.0f)));
    case GM_GAN_LSGAN: return gm_add(g, gm__gan_half_sq(g, d_real, 1.0f), gm__gan_half_sq(g, d_fake, 0.0f));
    case GM_GAN_WASSERSTEIN: return gm_sub(g, gm_mean(g, d_fake), gm_mean(g, d_real));
    case GM_GAN_HINGE:
        return gm_add(g, gm_mean(g, gm_relu(g, gm_affine(g, d_real, -1.0f, 1.0f))),
                      gm_mean(g, gm_relu(g, gm_affine(g, d_fake, 1.0f, 1.0f))));
    default: gm_fail("gm_gan_d_loss: unknown loss %d", loss); return NULL;
    }
}

GMDEF gm_tensor *gm_gan_g_loss(gm_graph *g, int loss, gm_tensor *d_fake) {
    if (!g || !d_fake) return NULL;
    switch (loss) {
    case GM_GAN_NONSAT: return gm_bce_logits(g, d_fake, gm__gan_full_like(g, d_fake, 1.0f));   /* -log D */
    case GM_GAN_MINIMAX: return gm_neg(g, gm_bce_logits(g, d_fake, gm__gan_full_like(g, d_fake, 0.0f))); /* log(1-D) */
    case GM_GAN_LSGAN: return gm__gan_half_sq(g, d_fake, 1.0f);
    case GM_GAN_WASSERSTEIN:
    case GM_GAN_HINGE: return gm_neg(g, gm_mean(g, d_fake));
    default: gm_fail("gm_gan_g_loss: unknown loss %d", loss); return NULL;
    }
}

GMDEF gm_tensor *gm_gan_gradient_penalty(gm_graph *g, gm_gan_critic_fn critic, void *ctx, const gm_tensor *real,
                                         const gm_tensor *fake, float lambda) {
    gm_tensor *xh, *dx, *norm;
    gm_rng *rng;
    int i, j, n, per;
    if (!g || !critic || !real || !fake) return NULL;
    if (real->size != fake->size || real->ndim != fake->ndim) {
        gm_fail("gm_gan_gradient_penalty: real (%d values) and fake (%d) differ in shape", real->size, fake->size);
        return NULL;
    }
    n = real->shape[0];
    per = real->size / n;
    xh = gm_zeros(g, real->shape[0], real->ndim > 1 ? real->shape[1] : 0, real->ndim > 2 ? real->shape[2] : 0,
                  real->ndim > 3 ? real->shape[3] : 0);
    if (!xh) return NULL;
    rng = gm_graph_rng(g);
    for (i = 0; i < n; i++) {           /* x_hat = e real + (1 - e) fake: a leaf, no path to G */
        float e = gm_rng_uniform(rng);
        for (j = 0; j < per; j++) {
            size_t k = (size_t)i * per + j;
            xh->data[k] = e * real->data[k] + (1 - e) * fake->data[k];
        }
    }
    gm_requires_grad(xh);
    dx = gm_grad(g, gm_sum(g, critic(g, xh, ctx)), xh, 1);     /* d D / d x_hat, itself differentiable */
    norm = gm_sqrt(g, gm_affine(g, gm_sum_rows(g, gm_square(g, dx)), 1.0f, 1e-12f));  /* (N); eps keeps sqrt' finite */
    return gm_scale(g, gm_mean(g, gm_square(g, gm_affine(g, norm, 1.0f, -1.0f))), lambda);
}

GMDEF gm_tensor *gm_gan_r1_penalty(gm_graph *g, gm_tensor *d_real, gm_tensor *real, float gamma) {
    gm_tensor *dx;
    if (!g || !d_real || !real) return NULL;
    dx = gm_grad(g, gm_sum(g, d_real), real, 1);    /* d D / d x, itself differentiable */
    if (!dx) return NULL;
    /* a packing D (PacGAN) has one output per p rows of x: the mean is over its inputs, the packs,
       so the sum over rows is scaled by p = rows / outputs (1 without packing) */
    if (d_real->shape[0] > 0 && real->shape[0] != d_real->shape[0])
        gamma *= (float)real->shape[0] / (float)d_real->shape[0];
    return gm_scale(g, gm_mean(g, gm_sum_rows(g, gm_square(g, dx))), 0.5f * gamma);
}

/* x shifted by s along axis (zero fill): a slice joined to zeros, so the gradient is the reverse shift. */
static gm_tensor *gm__gan_shift(gm_graph *g, gm_tensor *x, int axis, int s) {
    int shape[4], len = x->shape[axis];
    gm_tensor *z;
    if (s == 0) return x;
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = s > 0 ? s : -s;
    z = gm_zeros(g, shape[0], shape[1], shape[2], shape[3]);
    return s > 0 ? gm_concat(g, z, gm_slice(g, x, axis, 0, len - s), axis)
                 : gm_concat(g, gm_slice(g, x, axis, -s, len + s), z, axis);
}

/* Per-example shift along axis by shift[i] in [-m, m]: the sum over the shifts in use of the
   shifted batch times each example's one-hot selector (N,1,1,1). */
static gm_tensor *gm__gan_translate_axis(gm_graph *g, gm_tensor *x, int axis, const int *shift, int m) {
    gm_tensor *out = NULL;
    int s, i, n = x->shape[0], used;
    for (s = -m; s <= m && x; s++) {
        gm_tensor *sel = gm_zeros(g, n, 1, 1, 1), *part;
        if (!sel) return NULL;
        for (i = 0, used = 0; i < n; i++)
            if (shift[i] == s) sel->data[i] = 1.0f, used = 1;
        if (!used) continue;
        part = gm_mul(g, gm__gan_shift(g, x, axis, s), sel);
        out = out ? gm_add(g, out, part) : part;
    }
    return out;
}

static gm_tensor *gm__gan_translate(gm_graph *g, gm_tensor *x, gm_rng *r) {
    const int n = x->shape[0], my = (x->shape[2] + 4) / 8, mx = (x->shape[3] + 4) / 8;  /* h/8, w/8 rounded */
    int *sy = (int *)GENMOD_MALLOC(sizeof(int) * 2 * (size_t)n), *sx = sy ? sy + n : NULL, i;
    gm_tensor *y;
    if (!sy) return NULL;
    for (i = 0; i < n; i++) sy[i] = gm_rng_int(r, 2 * my + 1) - my;
    for (i = 0; i < n; i++) sx[i] = gm_rng_int(r, 2 * mx + 1) - mx;
    y = gm__gan_translate_axis(g, gm__gan_translate_axis(g, x, 2, sy, my), 3, sx, mx);
    GENMOD_FREE(sy);
    return y;
}

/* Zeroes an (h/2 x w/2) square per example: x times a constant (N,1,h,w) mask. */
static gm_tensor *gm__gan_cutout(gm_graph *g, gm_tensor *x, gm_rng *r) {
    const int n = x->shape[0], h = x->shape[2], w = x->shape[3], ch = (h + 1) / 2, cw = (w + 1) / 2;
    gm_tensor *mask = gm_full(g, 1.0f, n, 1, h, w);
    int i, y, xx;
    if (!mask) return NULL;
    for (i = 0; i < n; i++) {
        const int y0 = gm_rng_int(r, h) - ch / 2, x0 = gm_rng_int(r, w) - cw / 2;
        for (y = y0 < 0 ? 0 : y0; y < y0 + ch && y < h; y++)
            for (xx = x0 < 0 ? 0 : x0; xx < x0 + cw && xx < w; xx++) mask->data[((size_t)i * h + y) * w + xx] = 0.0f;
    }
    return gm_mul(g, x, mask);
}

GMDEF gm_tensor *gm_gan_augment(gm_graph *g, gm_tensor *x, int c, int h, int w, int policy) {
    gm_tensor *y;
    if (!g || !x) return NULL;
    if (policy & ~(GM_GAN_AUG_TRANSLATION | GM_GAN_AUG_CUTOUT)) {
        gm_fail("gm_gan_augment: policy %d has bits other than GM_GAN_AUG_TRANSLATION | GM_GAN_AUG_CUTOUT", policy);
        return NULL;
    }
    if (c < 1 || h < 1 || w < 1 || x->size != x->shape[0] * c * h * w) {
        gm_fail("gm_gan_augment: %d values per example are not %dx%dx%d", x->size / (x->shape[0] ? x->shape[0] : 1), c, h, w);
        return NULL;
    }
    if (!policy) return x;
    y = x->ndim == 4 ? x : gm_reshape(g, x, x->shape[0], c, h, w);
    if (y && (policy & GM_GAN_AUG_TRANSLATION)) y = gm__gan_translate(g, y, gm_graph_rng(g));
    if (y && (policy & GM_GAN_AUG_CUTOUT)) y = gm__gan_cutout(g, y, gm_graph_rng(g));
    return !y || x->ndim == 4 ? y : gm_reshape(g, y, x->shape[0], x->ndim > 1 ? x->shape[1] : 0, x->ndim > 2 ? x->shape[2] : 0, 0);
}

GMDEF float gm_gan_ema_decay(float decay, long steps) {
    const float warm = (1.0f + (float)steps) / (10.0f + (float)steps);
    return decay < warm ? decay : warm;
}

GMDEF int gm_gan_ema_update(gm_gan_net *avg, const gm_gan_net *net, float decay) {
    int v;
    size_t k;
    if (!avg || !net) return gm_fail("gm_gan_ema_update: NULL argument");
    if (avg->params.count != net->params.count || avg->params.nviews != net->params.nviews)
        return gm_fail("gm_gan_ema_update: the networks differ (%lu and %lu values)", (unsigned long)avg->params.count,
                       (unsigned long)net->params.count);
    if (!(decay >= 0 && decay <= 1)) return gm_fail("gm_gan_ema_update: decay %g out of [0,1]", decay);
    for (v = 0; v < net->params.nviews; v++) {
        const gm_param_view *pv = &net->params.views[v];
        const float *src = net->params.data + pv->offset;
        float *dst = avg->params.data + pv->offset;
        if (pv->buffer) memcpy(dst, src, pv->size * sizeof(float));
        else
            for (k = 0; k < pv->size; k++) dst[k] = decay * dst[k] + (1.0f - decay) * src[k];
    }
    return 0;
}

GMDEF float gm_gan_noise_std(float std0, long step, long steps) {
    if (std0 <= 0 || steps <= 0 || step >= steps) return 0.0f;
    return std0 * (1.0f - (float)step / (float)steps);
}

GMDEF gm_tensor *gm_gan_instance_noise(gm_graph *g, gm_tensor *x, float std) {
    if (!g || !x || std <= 0) return x;
    return gm_add(g, x, gm_scale(g, gm_randn_like(g, x), std));
}

/* ---------------------------------------------------------------------- configs */
static gm_gan_optim_config gm__gan_adam(float lr, float beta1, float beta2) {
    gm_gan_optim_config o;
    memset(&o, 0, sizeof o);
    o.kind = GM_ADAM; o.lr = lr; o.beta1 = beta1; o.beta2 = beta2;
    return o;
}

static gm_optim gm__gan_optim(const gm_gan_optim_config *c) {
    gm_optim o = c->kind == GM_RMSPROP ? gm_rmsprop(c->lr, c->beta2)
               : c->kind == GM_SGD     ? gm_sgd(c->lr, c->beta1)
                                       : gm_adam(c->lr, c->beta1, c->beta2);
    o.clip_value = c->clip_value;
    return o;
}

static int gm__gan_optim_check(const gm_gan_optim_config *o, const char *who, const char *field) {
    if (o->kind != GM_ADAM && o->kind != GM_RMSPROP && o->kind != GM_SGD)
        return gm_fail("%s: %s.kind %d is not GM_ADAM, GM_RMSPROP or GM_SGD", who, field, o->kind);
    if (!(o->lr > 0)) return gm_fail("%s: %s.lr %g must be positive", who, field, o->lr);
    if (!(o->beta1 >= 0 && o->beta1 < 1)) return gm_fail("%s: %s.beta1 %g out of [0,1)", who, field, o->beta1);
    if (!(o->beta2 >= 0 && o->beta2 < 1)) return gm_fail("%s: %s.beta2 %g out of [0,1)", who, field, o->beta2);
    if (!(o->clip_value >= 0)) return gm_fail("%s: %s.clip_value %g must be >= 0", who, field, o->clip_value);
    return 0;
}

GMDEF gm_gan_config gm_gan_default_config(int classes) {
    gm_gan_config c;
    memset(&c, 0, sizeof c);
    c.generator = gm_gan_mlp_g(100, 784, classes);
    c.discriminator = gm_gan_mlp_d(784, classes);
    c.loss = GM_GAN_NONSAT;
    c.n_critic = 1;
    c.opt_g = c.opt_d = gm__gan_adam(2e-4f, 0.5f, 0.999f);
    c.batch = 100;
    c.seed = 1;
    return c;
}

GMDEF gm_gan_config gm_gan_dcgan_config(int classes) {
    gm_gan_config c = gm_gan_default_config(classes);
    c.generator = gm_gan_dcgan_g(100, classes);
    c.discriminator = gm_gan_dcgan_d(classes);
    c.batch = 64;
    return c;
}

GMDEF gm_gan_config gm_gan_ttur_config(int classes) {
    gm_gan_config c = gm_gan_dcgan_config(classes);
    c.opt_g = gm__gan_adam(1e-4f, 0.5f, 0.999f);
    c.opt_d = gm__gan_adam(4e-4f, 0.5f, 0.999f);
    return c;
}

GMDEF gm_gan_config gm_gan_wgan_gp_config(int classes) {
    gm_gan_config c = gm_gan_default_config(classes);
    c.discriminator.dropout = 0;        /* a critic, not a classifier */
    c.discriminator.batchnorm = 0;
    c.loss = GM_GAN_WASSERSTEIN;
    c.n_critic = 5;
    c.gp = 10.0f;
    c.opt_g = c.opt_d = gm__gan_adam(1e-4f, 0.5f, 0.9f);
    c.batch = 64;
    return c;
}

static int gm__gan_config_check(const gm_gan_config *c) {
    const gm_gan_arch *ga = &c->generator, *da = &c->discriminator;
    const char *who = "gm_gan_init";
    if (gm__gan_arch_check(ga, who, "generator") != 0 || gm__gan_arch_check(da, who, "discriminator") != 0) return -1;
    if (!ga->generator || ga->kind == GM_GAN_IMG2IMG)
        return gm_fail("%s: generator must map noise to data (generator = 1, kind GM_GAN_MLP or GM_GAN_CONV)", who);
    if (da->generator || da->kind == GM_GAN_IMG2IMG)
        return gm_fail("%s: discriminator must score data (generator = 0, kind GM_GAN_MLP, _CONV or _PATCH)", who);
    if (ga->c * ga->h * ga->w != da->c * da->h * da->w)
        return gm_fail("%s: generator makes %dx%dx%d, discriminator takes %dx%dx%d", who, ga->c, ga->h, ga->w, da->c, da->h,
                       da->w);
    if (ga->classes != da->classes)
        return gm_fail("%s: generator.classes is %d, discriminator.classes %d: they must agree", who, ga->classes,
                       da->classes);
    if (c->loss < 0 || c->loss >= GM_GAN_NLOSSES) return gm_fail("%s: loss %d is not a GM_GAN_* loss", who, c->loss);
    if (c->n_critic < 1) return gm_fail("%s: n_critic is %d, must be >= 1", who, c->n_critic);
    if (!(c->gp >= 0)) return gm_fail("%s: gp %g must be >= 0", who, c->gp);
    if (c->gp > 0 && da->pack > 1)
        return gm_fail("%s: gp with discriminator.pack %d: the penalty's gradient norm is per example, not per pack", who,
                       da->pack);
    if (!(c->label_smooth >= 0 && c->label_smooth < 1))
        return gm_fail("%s: label_smooth %g out of [0,1)", who, c->label_smooth);
    if (c->label_smooth > 0 && c->loss != GM_GAN_NONSAT && c->loss != GM_GAN_MINIMAX)
        return gm_fail("%s: label_smooth is for the cross-entropy losses (nonsat, minimax), not %s", who,
                       gm_gan_loss_name(c->loss));
    if (!(c->r1 >= 0)) return gm_fail("%s: r1 %g must be >= 0", who, c->r1);
    if (!(c->ema >= 0 && c->ema < 1)) return gm_fail("%s: ema %g out of [0,1) (0: no moving average)", who, c->ema);
    if (c->augment & ~(GM_GAN_AUG_TRANSLATION | GM_GAN_AUG_CUTOUT))
        return gm_fail("%s: augment %d has bits other than GM_GAN_AUG_TRANSLATION | GM_GAN_AUG_CUTOUT", who, c->augment);
    if (c->augment && (da->h < 4 || da->w < 4))
        return gm_fail("%s: augment needs images (the discriminator's data is %dx%dx%d)", who, da->c, da->h, da->w);
    if (!(c->noise >= 0) || c->noise_steps < 0)
        return gm_fail("%s: noise %g and noise_steps %ld must be >= 0", who, c->noise, c->noise_steps);
    if (c->batch < 1) return gm_fail("%s: batch is %d, must be >= 1", who, c->batch);
    return gm__gan_optim_check(&c->opt_g, who, "opt_g") != 0 || gm__gan_optim_check(&c->opt_d, who, "opt_d") != 0 ? -1 : 0;
}

/* labels: n values in 0..classes-1 for a conditional network, NULL for the others. */
static int gm__gan_labels_check(int classes, const int *labels, int n, const char *who) {
    int i;
    if (classes == 0) return labels ? gm_fail("%s: labels given to an unconditional model (pass NULL)", who) : 0;
    if (!labels) return gm_fail("%s: this conditional model needs labels (0..%d)", who, classes - 1);
    for (i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= classes)
            return gm_fail("%s: label %d of example %d is out of 0..%d", who, labels[i], i, classes - 1);
    return 0;
}

/* ---------------------------------------------------------------------- the GAN model */
GMDEF int gm_gan_init(gm_gan *gan, const gm_gan_config *cfg) {
    gm_rng r;
    if (!gan || !cfg) return gm_fail("gm_gan_init: NULL argument");
    memset(gan, 0, sizeof *gan);
    if (gm__gan_config_check(cfg) != 0) return -1;
    gan->cfg = *cfg;
    gm_rng_seed(&r, cfg->seed);
    if (gm_gan_net_init(&gan->generator, &cfg->generator, &r) != 0 ||
        gm_gan_net_init(&gan->discriminator, &cfg->discriminator, &r) != 0) {
        gm_gan_free(gan);
        return -1;
    }
    if (cfg->ema > 0) {     /* the average starts as G itself */
        if (gm_gan_net_init(&gan->generator_ema, &cfg->generator, &r) != 0) {
            gm_gan_free(gan);
            return -1;
        }
        memcpy(gan->generator_ema.params.data, gan->generator.params.data, gan->generator.params.count * sizeof(float));
        gan->use_ema = 1;
    }
    gan->opt_g = gm__gan_optim(&cfg->opt_g);
    gan->opt_d = gm__gan_optim(&cfg->opt_d);
    gan->graph = gm_graph_new(cfg->seed);
    if (!gan->graph) {
        gm_gan_free(gan);
        return gm_fail("gm_gan_init: out of memory for the graph");
    }
    return 0;
}

GMDEF void gm_gan_free(gm_gan *gan) {
    if (!gan) return;
    gm_gan_net_free(&gan->generator); gm_gan_net_free(&gan->discriminator); gm_gan_net_free(&gan->generator_ema);
    gm_optim_free(&gan->opt_g); gm_optim_free(&gan->opt_d);
    gm_graph_free(gan->graph);
    memset(gan, 0, sizeof *gan);
}

typedef struct gm__gan_critic_ctx { gm_gan_net *D; const int *labels; } gm__gan_critic_ctx;

static gm_tensor *gm__gan_critic(gm_graph *g, gm_tensor *x, void *ctx) {
    gm__gan_critic_ctx *c = (gm__gan_critic_ctx *)ctx;
    return gm_gan_net_forward(g, c->D, x, c->labels);
}

/* D's scores of real and fake. A D whose output for one example does not depend on the others in
   the batch (no batch norm) nor on how many times it runs (no spectral norm: each training pass
   takes a power step) scores both in one pass of 2n rows: the same function, with GEMMs twice as
   tall. (Conditional Ds would need the labels twice; they take two passes.) */
static void gm__gan_d_scores(gm_gan *gan, gm_graph *g, gm_tensor *xr, gm_tensor *xf, const int *labels, gm_tensor **dr,
                             gm_tensor **df) {
    const gm_gan_arch *a = &gan->discriminator.arch;
    if (!a->batchnorm && !a->spectral && a->classes == 0 && xr && xf && xr->shape[0] == xf->shape[0]) {
        gm_tensor *both = gm_gan_net_forward(g, &gan->discriminator, gm_concat(g, xr, xf, 0), NULL);
        const int n = both ? both->shape[0] / 2 : 0;   /* packs: real packs first (n divides by the pack) */
        if (!both) { *dr = *df = NULL; return; }
        *dr = gm_slice(g, both, 0, 0, n);
        *df = gm_slice(g, both, 0, n, n);
        return;
    }
    *dr = gm_gan_net_forward(g, &gan->discriminator, xr, labels);
    *df = gm_gan_net_forward(g, &gan->discriminator, xf, labels);
}

/* What D sees of a batch: augmented (when configured), then with instance noise. */
static gm_tensor *gm__gan_d_input(gm_gan *gan, gm_tensor *x, float std) {
    const gm_gan_arch *a = &gan->discriminator.arch;
    if (gan->cfg.augment) x = gm_gan_augment(gan->graph, x, a->c, a->h, a->w, gan->cfg.augment);
    return gm_gan_instance_noise(gan->graph, x, std);
}

/* The real batch as D sees it. With R1 it must be a leaf tracked for gm_grad: the augmented values
   are copied into one (real data needs no gradient path), so R1 is taken at the augmented images. */
static gm_tensor *gm__gan_real_input(gm_gan *gan, gm_tensor *real, float std, gm_tensor **leaf) {
    gm_graph *g = gan->graph;
    gm_tensor *x = real;
    const gm_gan_arch *a = &gan->discriminator.arch;
    *leaf = NULL;
    if (gan->cfg.r1 <= 0) return gm__gan_d_input(gan, real, std);
    if (gan->cfg.augment) {
        x = gm_gan_augment(g, real, a->c, a->h, a->w, gan->cfg.augment);
        x = x ? gm_input(g, x->data, x->shape[0], x->ndim > 1 ? x->shape[1] : 0, x->ndim > 2 ? x->shape[2] : 0,
                         x->ndim > 3 ? x->shape[3] : 0) : NULL;
    }
    *leaf = gm_requires_grad(x);
    return x ? gm_gan_instance_noise(g, x, std) : NULL;
}

/* D step: D on the real and the detached fake (augmented, noisy), loss (+ penalties), backward,
   update D. */
static int gm__gan_d_step(gm_gan *gan, gm_tensor *real, gm_tensor *fake, const int *labels, float std, gm_gan_stats *st) {
    gm_graph *g = gan->graph;
    gm__gan_critic_ctx cc;
    gm_tensor *leaf, *xr = gm__gan_real_input(gan, real, std, &leaf), *xf = gm__gan_d_input(gan, gm_detach(g, fake), std);
    gm_tensor *dr = NULL, *df = NULL, *loss = NULL, *gp = NULL, *r1 = NULL;
    if (xr && xf) gm__gan_d_scores(gan, g, xr, xf, labels, &dr, &df);
    loss = gm_gan_d_loss_smooth(g, gan->cfg.loss, dr, df, gan->cfg.label_smooth);
    if (gan->cfg.r1 > 0 && loss) {
        r1 = gm_gan_r1_penalty(g, dr, leaf, gan->cfg.r1);
        loss = r1 ? gm_add(g, loss, r1) : NULL;
    }
    if (gan->cfg.gp > 0 && loss) {
        cc.D = &gan->discriminator; cc.labels = labels;
        gp = gm_gan_gradient_penalty(g, gm__gan_critic, &cc, xr, xf, gan->cfg.gp);
        loss = gm_add(g, loss, gp);
    }
    if (!loss) return gm_graph_fail(g, "gm_gan_train_step: D loss");
    if (gm_backward(g, loss) != 0) return gm_graph_fail(g, "gm_gan_train_step: D step");
    if (gm_optim_step(&gan->opt_d, &gan->discriminator.params) != 0) return -1;
    st->d_loss = loss->data[0];
    st->d_real = (float)gm_tensor_mean(dr);
    st->d_fake = (float)gm_tensor_mean(df);
    st->gp = gp ? gp->data[0] : 0.0f;
    st->r1 = r1 ? r1->data[0] : 0.0f;
    return 0;
}

/* G step on the same fake batch, with D frozen so only G's gradients are taken. */
static int gm__gan_g_step(gm_gan *gan, gm_tensor *fake, const int *labels, float std, gm_gan_stats *st) {
    gm_graph *g = gan->graph;
    gm_gan_net *D = &gan->discriminator;
    gm_tensor *loss;
    int rc;
    D->params.frozen = 1;
    loss = gm_gan_g_loss(g, gan->cfg.loss, gm_gan_net_forward(g, D, gm__gan_d_input(gan, fake, std), labels));
    rc = loss ? gm_backward(g, loss) : -1;
    D->params.frozen = 0;
    if (rc != 0) return gm_graph_fail(g, "gm_gan_train_step: G step");
    if (gm_optim_step(&gan->opt_g, &gan->generator.params) != 0) return -1;
    st->g_loss = loss->data[0];
    return 0;
}

GMDEF int gm_gan_train_step(gm_gan *gan, const float *real, const int *labels, int n, gm_gan_stats *stats) {
    const gm_gan_arch *a;
    gm_gan_stats dummy;
    gm_graph *g;
    gm_tensor *z, *fake, *xr;
    int do_g, rec;
    float std;
    if (!gan || !gan->graph || !real || n <= 0)
        return gm_fail("gm_gan_train_step: bad arguments (n = %d%s)", n,
                       gan && !gan->graph ? ", model not initialized" : "");
    a = &gan->generator.arch;
    if (gm__gan_labels_check(a->classes, labels, n, "gm_gan_train_step") != 0) return -1;
    if (!stats) stats = &dummy;
    memset(stats, 0, sizeof *stats);
    g = gan->graph;
    do_g = (gan->d_steps + 1) % gan->cfg.n_critic == 0;
    std = gm_gan_noise_std(gan->cfg.noise, gan->d_steps, gan->cfg.noise_steps);
    gm_graph_reset(g);
    gm_graph_set_training(g, 1);
    z = gm_randn(g, n, a->z, 0, 0);
    rec = gm_graph_set_grad(g, do_g);     /* critic-only steps need no tape through G */
    fake = gm_gan_net_forward(g, &gan->generator, z, labels);
    gm_graph_set_grad(g, rec);
    xr = a->kind == GM_GAN_MLP ? gm_input(g, real, n, a->c * a->h * a->w, 0, 0) : gm_input(g, real, n, a->c, a->h, a->w);
    if (!fake || !xr) return gm_graph_fail(g, "gm_gan_train_step: generator");
    stats->noise = std;
    if (gm__gan_d_step(gan, xr, fake, labels, std, stats) != 0) return -1;
    gan->d_steps++;
    if (!do_g) return 0;
    if (gm__gan_g_step(gan, fake, labels, std, stats) != 0) return -1;
    if (gan->cfg.ema > 0 &&
        gm_gan_ema_update(&gan->generator_ema, &gan->generator, gm_gan_ema_decay(gan->cfg.ema, gan->g_steps)) != 0)
        return -1;
    gan->g_steps++;
    stats->g_step = 1;
    return 0;
}

GMDEF gm_tensor *gm_gan_forward(gm_graph *g, gm_gan *gan, gm_tensor *z, const int *labels) {
    if (!g || !gan || !z) return NULL;
    return gm_gan_net_forward(g, &gan->generator, z, labels);
}

/* Inference through gm_run_chunks: one network on rows of `in` (in_per floats each, shaped as the
   network's data when image), or on fresh N(0, I) noise when in is NULL. */
typedef struct gm__gan_job {
    gm_gan_net *net;
    const float *in;
    int in_per, image;
    const int *labels;
    float *out;
    int out_per;
} gm__gan_job;

static int gm__gan_run_chunk(gm_graph *g, int start, int count, void *ctx) {
    const gm__gan_job *r = (const gm__gan_job *)ctx;
    const gm_gan_arch *a = &r->net->arch;
    const float *in = r->in ? r->in + (size_t)start * r->in_per : NULL;
    gm_tensor *x, *y;
    if (!in) x = gm_randn(g, count, r->in_per, 0, 0);
    else if (r->image) x = gm_input(g, in, count * r->in_per / (a->c * a->h * a->w), a->c, a->h, a->w);  /* packs: p rows */
    else x = gm_input(g, in, count, r->in_per, 0, 0);
    y = gm_gan_net_forward(g, r->net, x, r->labels ? r->labels + start : NULL);
    if (!y) return -1;
    memcpy(r->out + (size_t)start * r->out_per, y->data, (size_t)count * r->out_per * sizeof(float));
    return 0;
}

static int gm__gan_run(gm_graph *g, gm_gan_net *net, const float *in, int in_per, int image, const int *labels, int n,
                       float *out, int out_per, const char *who) {
    gm__gan_job r;
    r.net = net; r.in = in; r.in_per = in_per; r.image = image; r.labels = labels; r.out = out; r.out_per = out_per;
    return gm_run_chunks(g, n, gm__gan_run_chunk, &r, who);
}

GMDEF int gm_gan_sample_z(gm_gan *gan, const float *z, const int *labels, int n, float *out) {
    const gm_gan_arch *a;
    if (!gan || !gan->graph || !out || n < 0) return gm_fail("gm_gan_sample: bad arguments");
    a = &gan->generator.arch;
    if (gm__gan_labels_check(a->classes, labels, n, z ? "gm_gan_sample_z" : "gm_gan_sample") != 0) return -1;
    return gm__gan_run(gan->graph, gan->use_ema && gan->cfg.ema > 0 ? &gan->generator_ema : &gan->generator, z, a->z, 0,
                       labels, n, out, a->c * a->h * a->w,
                       z ? "gm_gan_sample_z" : "gm_gan_sample");
}

GMDEF int gm_gan_ema_recalibrate(gm_gan *gan, int batches) {
    gm_gan_net *net;
    gm_graph *g;
    int *labels = NULL, b, k, i, rec, train, rc = 0;
    float keep[GM_GAN_MAX_HIDDEN + 2];
    if (!gan || !gan->graph || batches < 1) return gm_fail("gm_gan_ema_recalibrate: bad arguments (batches %d)", batches);
    if (gan->cfg.ema <= 0) return 0;
    net = &gan->generator_ema;
    g = gan->graph;
    if (net->arch.classes > 0) {
        labels = (int *)GENMOD_MALLOC((size_t)gan->cfg.batch * sizeof(int));
        if (!labels) return gm_fail("gm_gan_ema_recalibrate: out of memory");
    }
    for (k = 0; k < net->nlayers; k++) keep[k] = net->layers[k].bn.momentum;
    rec = gm_graph_set_grad(g, 0);
    train = gm_graph_training(g);
    gm_graph_set_training(g, 1);
    for (b = 0; b < batches && rc == 0; b++) {
        for (k = 0; k < net->nlayers; k++) net->layers[k].bn.momentum = 1.0f / (float)(b + 1);   /* running mean */
        for (i = 0; labels && i < gan->cfg.batch; i++) labels[i] = gm_rng_int(gm_graph_rng(g), net->arch.classes);
        gm_graph_reset(g);
        if (!gm_gan_net_forward(g, net, gm_randn(g, gan->cfg.batch, net->arch.z, 0, 0), labels))
            rc = gm_graph_fail(g, "gm_gan_ema_recalibrate");
    }
    for (k = 0; k < net->nlayers; k++) net->layers[k].bn.momentum = keep[k];
    gm_graph_reset(g);
    gm_graph_set_training(g, train);
    gm_graph_set_grad(g, rec);
    GENMOD_FREE(labels);
    return rc;
}

GMDEF int gm_gan_sample(gm_gan *gan, const int *labels, int n, float *out) {
    return gm_gan_sample_z(gan, NULL, labels, n, out);
}

/* D's outputs per example: one score, or one per patch. */
static int gm__gan_d_outputs(const gm_gan_arch *a) {
    int s = 1 << a->nhidden;
    return a->kind == GM_GAN_PATCH ? (a->h / s) * (a->w / s) : 1;
}

GMDEF int gm_gan_discriminate(gm_gan *gan, const float *x, const int *labels, int n, float *out) {
    const gm_gan_arch *a;
    int p;
    if (!gan || !gan->graph || !x || !out || n < 0) return gm_fail("gm_gan_discriminate: bad arguments");
    a = &gan->discriminator.arch;
    if (gm__gan_labels_check(a->classes, labels, n, "gm_gan_discriminate") != 0) return -1;
    /* a packing D: one item per pack, so that no chunk splits one (a packing D has no labels) */
    p = a->pack > 1 ? a->pack : 1;
    if (n % p != 0)
        return gm_fail("gm_gan_discriminate: the discriminator scores packs of %d examples; n = %d is not a multiple", p, n);
    return gm__gan_run(gan->graph, &gan->discriminator, x, p * a->c * a->h * a->w, 1, labels, n / p, out,
                       gm__gan_d_outputs(a), "gm_gan_discriminate");
}

/* ---------------------------------------------------------------------- checkpoints */
static const char *gm__gan_kind_names[4] = {"mlp", "conv", "img2img", "patch"};

/* One network in a line: everything that decides its tensors and what it computes. */
static size_t gm__gan_arch_text(const gm_gan_arch *a, char *s, size_t cap) {
    size_t k = 0;
    int i;
#define GM__GAN_PUT(...) k += (size_t)snprintf(s + (k < cap ? k : cap), k < cap ? cap - k : 0, __VA_ARGS__)
    GM__GAN_PUT("%s", gm__gan_kind_names[a->kind]);
    if (a->generator && a->kind != GM_GAN_IMG2IMG) GM__GAN_PUT(" z%d", a->z);
    GM__GAN_PUT(" %dx%dx%d h", a->c, a->h, a->w);
    for (i = 0; i < a->nhidden; i++) GM__GAN_PUT("%s%d", i ? "," : "", a->hidden[i]);
    if (a->classes) GM__GAN_PUT(" classes%d", a->classes);
    if (a->batchnorm) GM__GAN_PUT(" bn");
    if (a->spectral) GM__GAN_PUT(" sn");
    if (a->dropout > 0) GM__GAN_PUT(" dropout%g", a->dropout);
    if (a->mbstd) GM__GAN_PUT(" mbstd");
    if (a->pack > 1) GM__GAN_PUT(" pack%d", a->pack);
    GM__GAN_PUT(" %s", gm_act_name(a->act));
    if (a->act == GM_ACT_LEAKY_RELU) GM__GAN_PUT("%g", a->slope);
    if (a->generator) GM__GAN_PUT(" out_%s", gm_act_name(a->out_act));
#undef GM__GAN_PUT
    return k;
}

/* "G <arch> | D <arch> | <loss>": the checkpoint's genmod.arch, compared on load. */
static int gm__gan_model_text(const char *n1, const gm_gan_arch *a1, const char *n2, const gm_gan_arch *a2, int loss,
                              char *s, size_t cap, const char *who) {
    size_t k = (size_t)snprintf(s, cap, "%s ", n1);
    if (k < cap) k += gm__gan_arch_text(a1, s + k, cap - k);
    if (k < cap) k += (size_t)snprintf(s + k, cap - k, " | %s ", n2);
    if (k < cap) k += gm__gan_arch_text(a2, s + k, cap - k);
    if (k < cap) k += (size_t)snprintf(s + k, cap - k, " | %s", gm_gan_loss_name(loss));
    return k < cap ? 0 : gm_fail("%s: the architecture text is longer than %d bytes (too many layers to describe)", who,
                                 (int)cap - 1);
}

/* The GAN's genmod.arch: both networks, the loss, and " | ema" when the file holds the moving
   average (part "G_ema"), so a file with and a model without it (or the reverse) are refused. */
static int gm__gan_arch_ema(const gm_gan *gan, char *s, size_t cap, const char *who) {
    size_t k;
    if (gm__gan_model_text("G", &gan->generator.arch, "D", &gan->discriminator.arch, gan->cfg.loss, s, cap, who) != 0)
        return -1;
    k = strlen(s);
    if (gan->cfg.ema > 0 && (size_t)snprintf(s + k, cap - k, " | ema") >= cap - k)
        return gm_fail("%s: the architecture text is longer than %d bytes", who, (int)cap - 1);
    return 0;
}

static int gm__gan_extra(gm_meta *extra, gm_graph *g, long g_steps, const char *train) {
    memset(extra, 0, sizeof *extra);
    if (gm_meta_setf(extra, "gan.g_steps", "%ld", g_steps) != 0 || gm_meta_set(extra, "gan.train", train) != 0 ||
        gm_meta_set_rng(extra, "gan.rng", gm_graph_rng(g)) != 0)
        return -1;
    return 0;
}

static void gm__gan_parts(gm_model_part *parts, const char *name, gm_gan_net *net, gm_optim *opt) {
    parts->name = name;
    parts->params = &net->params;
    parts->opt = opt;
}

GMDEF int gm_gan_save(const gm_gan *gan, const char *path) {
    gm_gan *m = (gm_gan *)gan;      /* the parts are written, not changed */
    gm_model_part parts[3];
    gm_meta extra;
    char arch[GM_META_VALUE_MAX], train[GM_META_VALUE_MAX];
    if (!gan || !path) return gm_fail("gm_gan_save: NULL argument");
    if (!gan->graph) return gm_fail("gm_gan_save: the model is not initialized");
    if (gm__gan_arch_ema(gan, arch, sizeof arch, "gm_gan_save") != 0) return -1;
    snprintf(train, sizeof train, "n_critic=%d gp=%g r1=%g augment=%d ema=%g noise=%g noise_steps=%ld label_smooth=%g",
             gan->cfg.n_critic, gan->cfg.gp, gan->cfg.r1, gan->cfg.augment, gan->cfg.ema, gan->cfg.noise,
             gan->cfg.noise_steps, gan->cfg.label_smooth);
    if (gm__gan_extra(&extra, gan->graph, gan->g_steps, train) != 0) return gm_fail("gm_gan_save: metadata too long");
    gm__gan_parts(&parts[0], "G", &m->generator, &m->opt_g);
    gm__gan_parts(&parts[1], "D", &m->discriminator, &m->opt_d);
    gm__gan_parts(&parts[2], "G_ema", &m->generator_ema, NULL);
    return gm_model_save(path, "gan", arch, gan->d_steps, parts, gan->cfg.ema > 0 ? 3 : 2, &extra);
}

GMDEF int gm_gan_load(gm_gan *gan, const char *path) {
    gm_model_part parts[3];
    gm_meta extra;
    char arch[GM_META_VALUE_MAX];
    const char *gs;
    long step = 0;
    if (!gan || !path) return gm_fail("gm_gan_load: NULL argument");
    if (!gan->graph) return gm_fail("gm_gan_load: the model is not initialized (gm_gan_init first)");
    if (gm__gan_arch_ema(gan, arch, sizeof arch, "gm_gan_load") != 0) return -1;
    gm__gan_parts(&parts[0], "G", &gan->generator, &gan->opt_g);
    gm__gan_parts(&parts[1], "D", &gan->discriminator, &gan->opt_d);
    gm__gan_parts(&parts[2], "G_ema", &gan->generator_ema, NULL);
    memset(&extra, 0, sizeof extra);
    if (gm_model_load(path, "gan", arch, &step, parts, gan->cfg.ema > 0 ? 3 : 2, &extra) != 0) return -1;
    gan->d_steps = step;
    gs = gm_meta_get(&extra, "gan.g_steps");
    gan->g_steps = gs ? atol(gs) : step / gan->cfg.n_critic;
    gm_meta_get_rng(&extra, "gan.rng", gm_graph_rng(gan->graph));   /* absent: the stream stays as it is */
    return 0;
}

/* ---------------------------------------------------------------------- CycleGAN */
GMDEF gm_cyclegan_config gm_cyclegan_default_config(int c, int h, int w) {
    gm_cyclegan_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.generator = gm_cyclegan_g(c, h, w);
    cfg.discriminator = gm_cyclegan_d(c, h, w);
    cfg.loss = GM_GAN_LSGAN;
    cfg.cycle = 10.0f;
    cfg.opt_g = cfg.opt_d = gm__gan_adam(2e-4f, 0.5f, 0.999f);
    cfg.batch = 16;
    cfg.seed = 1;
    return cfg;
}

static int gm__cyclegan_config_check(const gm_cyclegan_config *c) {
    const gm_gan_arch *ga = &c->generator, *da = &c->discriminator;
    const char *who = "gm_cyclegan_init";
    if (gm__gan_arch_check(ga, who, "generator") != 0 || gm__gan_arch_check(da, who, "discriminator") != 0) return -1;
    if (ga->kind != GM_GAN_IMG2IMG || !ga->generator)
        return gm_fail("%s: generator must be an image-to-image network (kind GM_GAN_IMG2IMG, generator = 1)", who);
    if (da->generator || da->kind == GM_GAN_IMG2IMG)
        return gm_fail("%s: discriminator must score images (generator = 0, kind GM_GAN_PATCH, _CONV or _MLP)", who);
    if (ga->c != da->c || ga->h != da->h || ga->w != da->w)
        return gm_fail("%s: generator makes %dx%dx%d, discriminator takes %dx%dx%d", who, ga->c, ga->h, ga->w, da->c, da->h,
                       da->w);
    if (ga->classes || da->classes) return gm_fail("%s: generator.classes and discriminator.classes must be 0", who);
    if (c->loss < 0 || c->loss >= GM_GAN_NLOSSES) return gm_fail("%s: loss %d is not a GM_GAN_* loss", who, c->loss);
    if (!(c->cycle >= 0) || !(c->identity >= 0))
        return gm_fail("%s: cycle %g and identity %g must be >= 0", who, c->cycle, c->identity);
    if (c->batch < 1) return gm_fail("%s: batch is %d, must be >= 1", who, c->batch);
    if (!(c->ema >= 0 && c->ema < 1)) return gm_fail("%s: ema %g out of [0,1) (0: no moving average)", who, c->ema);
    return gm__gan_optim_check(&c->opt_g, who, "opt_g") != 0 || gm__gan_optim_check(&c->opt_d, who, "opt_d") != 0 ? -1 : 0;
}

/* avg: a copy of net (same arch, same values), the start of its moving average. */
static int gm__gan_net_copy(gm_gan_net *avg, const gm_gan_net *net, gm_rng *r) {
    if (gm_gan_net_init(avg, &net->arch, r) != 0) return -1;
    memcpy(avg->params.data, net->params.data, net->params.count * sizeof(float));
    return 0;
}

GMDEF int gm_cyclegan_init(gm_cyclegan *m, const gm_cyclegan_config *cfg) {
    gm_rng r;
    if (!m || !cfg) return gm_fail("gm_cyclegan_init: NULL argument");
    memset(m, 0, sizeof *m);
    if (gm__cyclegan_config_check(cfg) != 0) return -1;
    m->cfg = *cfg;
    gm_rng_seed(&r, cfg->seed);
    if (gm_gan_net_init(&m->gen_ab, &cfg->generator, &r) != 0 || gm_gan_net_init(&m->gen_ba, &cfg->generator, &r) != 0 ||
        gm_gan_net_init(&m->disc_a, &cfg->discriminator, &r) != 0 ||
        gm_gan_net_init(&m->disc_b, &cfg->discriminator, &r) != 0) {
        gm_cyclegan_free(m);
        return -1;
    }
    if (cfg->ema > 0 && (gm__gan_net_copy(&m->gen_ab_ema, &m->gen_ab, &r) != 0 ||
                         gm__gan_net_copy(&m->gen_ba_ema, &m->gen_ba, &r) != 0)) {
        gm_cyclegan_free(m);
        return -1;
    }
    m->use_ema = cfg->ema > 0;
    m->opt_ab = m->opt_ba = gm__gan_optim(&cfg->opt_g);
    m->opt_da = m->opt_db = gm__gan_optim(&cfg->opt_d);
    m->graph = gm_graph_new(cfg->seed);
    if (!m->graph) {
        gm_cyclegan_free(m);
        return gm_fail("gm_cyclegan_init: out of memory for the graph");
    }
    return 0;
}

GMDEF void gm_cyclegan_free(gm_cyclegan *m) {
    if (!m) return;
    gm_gan_net_free(&m->gen_ab); gm_gan_net_free(&m->gen_ba); gm_gan_net_free(&m->disc_a); gm_gan_net_free(&m->disc_b);
    gm_gan_net_free(&m->gen_ab_ema); gm_gan_net_free(&m->gen_ba_ema);
    gm_optim_free(&m->opt_ab); gm_optim_free(&m->opt_ba); gm_optim_free(&m->opt_da); gm_optim_free(&m->opt_db);
    gm_graph_free(m->graph);
    memset(m, 0, sizeof *m);
}

static void gm__cyclegan_freeze_d(gm_cyclegan *m, int frozen) {
    m->disc_a.params.frozen = frozen;
    m->disc_b.params.frozen = frozen;
}

/* Both generators' step (discriminators frozen); sets the fakes G(a), F(b) for the D step. */
static int gm__cyclegan_g_step(gm_cyclegan *m, gm_tensor *xa, gm_tensor *xb, gm_tensor **fb, gm_tensor **fa,
                               gm_cyclegan_stats *st) {
    gm_graph *g = m->graph;
    const gm_cyclegan_config *c = &m->cfg;
    gm_tensor *adv, *cyc, *idt = NULL, *lg;
    int rc;
    *fb = gm_gan_net_forward(g, &m->gen_ab, xa, NULL);              /* G(a): a fake B */
    *fa = gm_gan_net_forward(g, &m->gen_ba, xb, NULL);              /* F(b): a fake A */
    gm__cyclegan_freeze_d(m, 1);
    adv = gm_add(g, gm_gan_g_loss(g, c->loss, gm_gan_net_forward(g, &m->disc_b, *fb, NULL)),
                 gm_gan_g_loss(g, c->loss, gm_gan_net_forward(g, &m->disc_a, *fa, NULL)));
    cyc = gm_add(g, gm_l1(g, gm_gan_net_forward(g, &m->gen_ba, *fb, NULL), xa),
                 gm_l1(g, gm_gan_net_forward(g, &m->gen_ab, *fa, NULL), xb));
    lg = gm_add(g, adv, gm_scale(g, cyc, c->cycle));
    if (c->identity > 0) {
        idt = gm_add(g, gm_l1(g, gm_gan_net_forward(g, &m->gen_ab, xb, NULL), xb),
                     gm_l1(g, gm_gan_net_forward(g, &m->gen_ba, xa, NULL), xa));
        lg = gm_add(g, lg, gm_scale(g, idt, c->identity));
    }
    rc = lg ? gm_backward(g, lg) : -1;
    gm__cyclegan_freeze_d(m, 0);
    if (rc != 0) return gm_graph_fail(g, "gm_cyclegan_train_step: generators");
    if (gm_optim_step(&m->opt_ab, &m->gen_ab.params) != 0 || gm_optim_step(&m->opt_ba, &m->gen_ba.params) != 0) return -1;
    if (c->ema > 0) {
        const float d = gm_gan_ema_decay(c->ema, m->step);
        if (gm_gan_ema_update(&m->gen_ab_ema, &m->gen_ab, d) != 0 || gm_gan_ema_update(&m->gen_ba_ema, &m->gen_ba, d) != 0)
            return -1;
    }
    st->g_adv = adv->data[0]; st->cycle = cyc->data[0]; st->identity = idt ? idt->data[0] : 0.0f;
    return 0;
}

GMDEF int gm_cyclegan_train_step(gm_cyclegan *m, const float *a, const float *b, int n, gm_cyclegan_stats *stats) {
    const gm_gan_arch *ar;
    gm_cyclegan_stats dummy;
    gm_graph *g;
    gm_tensor *xa, *xb, *fb, *fa, *lda, *ldb;
    if (!m || !m->graph || !a || !b || n <= 0)
        return gm_fail("gm_cyclegan_train_step: bad arguments (n = %d%s)", n,
                       m && !m->graph ? ", model not initialized" : "");
    if (!stats) stats = &dummy;
    memset(stats, 0, sizeof *stats);
    ar = &m->gen_ab.arch;
    g = m->graph;
    gm_graph_reset(g);
    gm_graph_set_training(g, 1);
    xa = gm_input(g, a, n, ar->c, ar->h, ar->w);
    xb = gm_input(g, b, n, ar->c, ar->h, ar->w);
    if (gm__cyclegan_g_step(m, xa, xb, &fb, &fa, stats) != 0) return -1;
    /* discriminators on real vs the (detached) fakes made above */
    lda = gm_gan_d_loss(g, m->cfg.loss, gm_gan_net_forward(g, &m->disc_a, xa, NULL),
                        gm_gan_net_forward(g, &m->disc_a, gm_detach(g, fa), NULL));
    ldb = gm_gan_d_loss(g, m->cfg.loss, gm_gan_net_forward(g, &m->disc_b, xb, NULL),
                        gm_gan_net_forward(g, &m->disc_b, gm_detach(g, fb), NULL));
    if (!lda || !ldb || gm_backward(g, gm_add(g, lda, ldb)) != 0)
        return gm_graph_fail(g, "gm_cyclegan_train_step: discriminators");
    if (gm_optim_step(&m->opt_da, &m->disc_a.params) != 0 || gm_optim_step(&m->opt_db, &m->disc_b.params) != 0) return -1;
    m->step++;
    stats->d_a = lda->data[0]; stats->d_b = ldb->data[0];
    return 0;
}

GMDEF int gm_cyclegan_translate(gm_cyclegan *m, int to_b, const float *x, int n, float *out) {
    const gm_gan_arch *a;
    int per;
    if (!m || !m->graph || !x || !out || n < 0) return gm_fail("gm_cyclegan_translate: bad arguments");
    a = &m->gen_ab.arch;
    per = a->c * a->h * a->w;
    return gm__gan_run(m->graph,
                       m->use_ema && m->cfg.ema > 0 ? (to_b ? &m->gen_ab_ema : &m->gen_ba_ema) : (to_b ? &m->gen_ab : &m->gen_ba),
                       x, per, 1, NULL, n, out, per, "gm_cyclegan_translate");
}

static void gm__cyclegan_parts(gm_cyclegan *m, gm_model_part *parts) {   /* 6 parts */
    gm__gan_parts(&parts[0], "G", &m->gen_ab, &m->opt_ab);
    gm__gan_parts(&parts[1], "F", &m->gen_ba, &m->opt_ba);
    gm__gan_parts(&parts[2], "DA", &m->disc_a, &m->opt_da);
    gm__gan_parts(&parts[3], "DB", &m->disc_b, &m->opt_db);
    gm__gan_parts(&parts[4], "G_ema", &m->gen_ab_ema, NULL);
    gm__gan_parts(&parts[5], "F_ema", &m->gen_ba_ema, NULL);
}

/* The CycleGAN's genmod.arch (" | ema" when the averages are in the file) and its part count. */
static int gm__cyclegan_arch(const gm_cyclegan *m, char *s, size_t cap, const char *who) {
    size_t k;
    if (gm__gan_model_text("G,F", &m->cfg.generator, "DA,DB", &m->cfg.discriminator, m->cfg.loss, s, cap, who) != 0)
        return -1;
    k = strlen(s);
    if (m->cfg.ema > 0 && (size_t)snprintf(s + k, cap - k, " | ema") >= cap - k)
        return gm_fail("%s: the architecture text is longer than %d bytes", who, (int)cap - 1);
    return m->cfg.ema > 0 ? 6 : 4;
}

GMDEF int gm_cyclegan_save(const gm_cyclegan *m, const char *path) {
    gm_model_part parts[6];
    gm_meta extra;
    char arch[GM_META_VALUE_MAX], train[GM_META_VALUE_MAX];
    int nparts;
    if (!m || !path) return gm_fail("gm_cyclegan_save: NULL argument");
    if (!m->graph) return gm_fail("gm_cyclegan_save: the model is not initialized");
    if ((nparts = gm__cyclegan_arch(m, arch, sizeof arch, "gm_cyclegan_save")) < 0) return -1;
    snprintf(train, sizeof train, "cycle=%g identity=%g ema=%g", m->cfg.cycle, m->cfg.identity, m->cfg.ema);
    if (gm__gan_extra(&extra, m->graph, m->step, train) != 0) return gm_fail("gm_cyclegan_save: metadata too long");
    gm__cyclegan_parts((gm_cyclegan *)m, parts);      /* written, not changed */
    return gm_model_save(path, "cyclegan", arch, m->step, parts, nparts, &extra);
}

GMDEF int gm_cyclegan_load(gm_cyclegan *m, const char *path) {
    gm_model_part parts[6];
    gm_meta extra;
    char arch[GM_META_VALUE_MAX];
    long step = 0;
    int nparts;
    if (!m || !path) return gm_fail("gm_cyclegan_load: NULL argument");
    if (!m->graph) return gm_fail("gm_cyclegan_load: the model is not initialized (gm_cyclegan_init first)");
    if ((nparts = gm__cyclegan_arch(m, arch, sizeof arch, "gm_cyclegan_load")) < 0) return -1;
    gm__cyclegan_parts(m, parts);
    memset(&extra, 0, sizeof extra);
    if (gm_model_load(path, "cyclegan", arch, &step, parts, nparts, &extra) != 0) return -1;
    m->step = step;
    gm_meta_get_rng(&extra, "gan.rng", gm_graph_rng(m->graph));
    return 0;
}

/* ---------------------------------------------------------------------- demo domains */
GMDEF void gm_dilate_images(const float *x, int n, int h, int w, float *out) {
    int i, r, c, dr, dc;
    for (i = 0; i < n; i++) {
        const float *src = x + (size_t)i * h * w;
        float *dst = out + (size_t)i * h * w;
        for (r = 0; r < h; r++)
            for (c = 0; c < w; c++) {
                float m = src[r * w + c];
                for (dr = -1; dr <= 1; dr++)
                    for (dc = -1; dc <= 1; dc++) {
                        int rr = r + dr, cc = c + dc;
                        if (rr >= 0 && rr < h && cc >= 0 && cc < w && src[rr * w + cc] > m) m = src[rr * w + cc];
                    }
                dst[r * w + c] = m;
            }
    }
}

/* ---------------------------------------------------------------------- linear algebra */
/* Cyclic Jacobi: rotate away each off-diagonal element until the off-diagonal mass is negligible.
   Slow (O(n^3) per sweep, ~10 sweeps) but exact to double precision and simple. */
GMDEF int gm_eigh_sym(const double *a, int n, double *evals, double *evecs) {
    double *A, off, scale = 0;
    int i, j, p, q, sweep;
    if (!a || !evals || !evecs || n <= 0) return gm_fail("gm_eigh_sym: bad arguments (n = %d)", n);
    A = (double *)GENMOD_MALLOC((size_t)n * n * sizeof(double));
    if (!A) return gm_fail("gm_eigh_sym: out of memory for n = %d", n);
    memcpy(A, a, (size_t)n * n * sizeof(double));
    for (i = 0; i < n * n; i++) {
        if (!isfinite(A[i])) { GENMOD_FREE(A); return gm_fail("gm_eigh_sym: matrix has a non-finite entry"); }
        scale += A[i] * A[i];
    }
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) evecs[i * n + j] = i == j;
    for (sweep = 0; sweep < 100; sweep++) {
        for (off = 0, p = 0; p < n; p++)
            for (q = p + 1; q < n; q++) off += A[p * n + q] * A[p * n + q];
        if (off <= 1e-30 * scale || off == 0) break;
        for (p = 0; p < n; p++)
            for (q = p + 1; q < n; q++) {
                double apq = A[p * n + q], theta, t, c, s;
                if (fabs(apq) < 1e-300) continue;
                theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
                t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                c = 1 / sqrt(t * t + 1);
                s = t * c;
                for (i = 0; i < n; i++) {        /* columns p, q: A <- A J */
                    double aip = A[i * n + p], aiq = A[i * n + q];
                    A[i * n + p] = c * aip - s * aiq;
                    A[i * n + q] = s * aip + c * aiq;
                }
                for (i = 0; i < n; i++) {        /* rows p, q: A <- J^T A */
                    double api = A[p * n + i], aqi = A[q * n + i];
                    A[p * n + i] = c * api - s * aqi;
                    A[q * n + i] = s * api + c * aqi;
                }
                for (i = 0; i < n; i++) {        /* V <- V J */
                    double vip = evecs[i * n + p], viq = evecs[i * n + q];
                    evecs[i * n + p] = c * vip - s * viq;
                    evecs[i * n + q] = s * vip + c * viq;
                }
            }
    }
    for (i = 0; i < n; i++) evals[i] = A[i * n + i];
    GENMOD_FREE(A);
    for (i = 1; i < n; i++)                      /* insertion sort, ascending, columns follow */
        for (j = i; j > 0 && evals[j - 1] > evals[j]; j--) {
            double t = evals[j];
            evals[j] = evals[j - 1]; evals[j - 1] = t;
            for (p = 0; p < n; p++) { t = evecs[p * n + j]; evecs[p * n + j] = evecs[p * n + j - 1]; evecs[p * n + j - 1] = t; }
        }
    return 0;
}

GMDEF int gm_sqrtm_psd(const double *a, int n, double *out) {
    double *w, *V;
    int i, j, k;
    if (!a || !out || n <= 0) return gm_fail("gm_sqrtm_psd: bad arguments (n = %d)", n);
    w = (double *)GENMOD_MALLOC((size_t)n * sizeof(double));
    V = (double *)GENMOD_MALLOC((size_t)n * n * sizeof(double));
    if (!w || !V || gm_eigh_sym(a, n, w, V) != 0) {
        GENMOD_FREE(w); GENMOD_FREE(V);
        return gm_fail("gm_sqrtm_psd: eigendecomposition failed (n = %d)", n);
    }
    for (k = 0; k < n; k++) w[k] = w[k] > 0 ? sqrt(w[k]) : 0;    /* round-off can make 0 slightly negative */
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            double s = 0;
            for (k = 0; k < n; k++) s += V[i * n + k] * w[k] * V[j * n + k];   /* V diag(sqrt w) V^T */
            out[i * n + j] = s;
        }
    GENMOD_FREE(w); GENMOD_FREE(V);
    return 0;
}

GMDEF int gm_gaussian_fit(const float *x, int n, int d, double *mean, double *cov) {
    double *c;
    int i, j, k;
    if (!x || !mean || !cov || n < 2 || d <= 0) return gm_fail("gm_gaussian_fit: need n >= 2 rows (got %d), d > 0", n);
    c = (double *)GENMOD_MALLOC((size_t)d * sizeof(double));
    if (!c) return gm_fail("gm_gaussian_fit: out of memory");
    for (j = 0; j < d; j++) mean[j] = 0;
    for (i = 0; i < n; i++)
        for (j = 0; j < d; j++) mean[j] += x[(size_t)i * d + j];
    for (j = 0; j < d; j++) mean[j] /= n;
    memset(cov, 0, (size_t)d * d * sizeof(double));
    for (i = 0; i < n; i++) {
        for (j = 0; j < d; j++) c[j] = x[(size_t)i * d + j] - mean[j];
        for (j = 0; j < d; j++)
            for (k = j; k < d; k++) cov[j * d + k] += c[j] * c[k];
    }
    for (j = 0; j < d; j++)
        for (k = j; k < d; k++) cov[k * d + j] = cov[j * d + k] /= (n - 1);
    GENMOD_FREE(c);
    return 0;
}

GMDEF double gm_frechet_distance(const double *mu1, const double *cov1, const double *mu2, const double *cov2, int d) {
    double *r, *t, *m, *w, *V, dist = 0, tr_sqrt = 0;
    int i, j, k, rc;
    if (!mu1 || !cov1 || !mu2 || !cov2 || d <= 0) return gm_fail("gm_frechet_distance: bad arguments (d = %d)", d);
    r = (double *)GENMOD_MALLOC((size_t)d * d * sizeof(double));
    t = (double *)GENMOD_MALLOC((size_t)d * d * sizeof(double));
    m = (double *)GENMOD_MALLOC((size_t)d * d * sizeof(double));
    V = (double *)GENMOD_MALLOC((size_t)d * d * sizeof(double));
    w = (double *)GENMOD_MALLOC((size_t)d * sizeof(double));
    rc = r && t && m && V && w ? gm_sqrtm_psd(cov1, d, r) : gm_fail("gm_frechet_distance: out of memory");
    if (rc == 0) {
        for (i = 0; i < d; i++)          /* t = R S2, then m = t R = R S2 R (symmetric PSD) */
            for (j = 0; j < d; j++) {
                double s = 0;
                for (k = 0; k < d; k++) s += r[i * d + k] * cov2[k * d + j];
                t[i * d + j] = s;
            }
        for (i = 0; i < d; i++)
            for (j = 0; j < d; j++) {
                double s = 0;
                for (k = 0; k < d; k++) s += t[i * d + k] * r[k * d + j];
                m[i * d + j] = s;
            }
        for (i = 0; i < d; i++)          /* symmetrize away round-off */
            for (j = i + 1; j < d; j++) m[i * d + j] = m[j * d + i] = 0.5 * (m[i * d + j] + m[j * d + i]);
        rc = gm_eigh_sym(m, d, w, V);
    }
    if (rc == 0) {
        for (k = 0; k < d; k++) tr_sqrt += w[k] > 0 ? sqrt(w[k]) : 0;
        for (k = 0; k < d; k++) dist += (mu1[k] - mu2[k]) * (mu1[k] - mu2[k]) + cov1[k * d + k] + cov2[k * d + k];
        dist -= 2 * tr_sqrt;
    }
    GENMOD_FREE(r); GENMOD_FREE(t); GENMOD_FREE(m); GENMOD_FREE(V); GENMOD_FREE(w);
    return rc == 0 ? dist : -1.0;
}

/* ---------------------------------------------------------------------- sample statistics */
GMDEF double gm_label_entropy(const int *labels, int n, int classes) {
    double h = 0;
    int *count, i;
    if (!labels || n <= 0 || classes <= 0) return 0;
    count = (int *)GENMOD_MALLOC((size_t)classes * sizeof(int));
    if (!count) return gm_fail("gm_label_entropy: out of memory");
    memset(count, 0, (size_t)classes * sizeof(int));
    for (i = 0; i < n; i++)
        if (labels[i] >= 0 && labels[i] < classes) count[labels[i]]++;
    for (i = 0; i < classes; i++)
        if (count[i] > 0) h -= (double)count[i] / n * log((double)count[i] / n);
    GENMOD_FREE(count);
    return h;
}

GMDEF int gm_ring_modes(const float *xy, int n, int modes, float radius, float std, int min_count, float *hq) {
    int i, k, covered = 0, good = 0, counts[64];
    if (!xy || n <= 0 || modes <= 0 || modes > 64 || std <= 0)
        return gm_fail("gm_ring_modes: bad arguments (n %d, modes %d of at most 64, std %g)", n, modes, std);
    memset(counts, 0, sizeof counts);
    for (i = 0; i < n; i++) {
        double best = 1e300;
        int arg = 0;
        for (k = 0; k < modes; k++) {
            double a = 2 * 3.14159265358979323846 * k / modes;
            double dx = xy[2 * i] - radius * cos(a), dy = xy[2 * i + 1] - radius * sin(a), d2 = dx * dx + dy * dy;
            if (d2 < best) { best = d2; arg = k; }
        }
        if (sqrt(best) <= 3.0 * std) { good++; counts[arg]++; }
    }
    if (min_count < 1) min_count = 1;
    for (k = 0; k < modes; k++) covered += counts[k] >= min_count;
    if (hq) *hq = (float)good / n;
    return covered;
}

/* ---------------------------------------------------------------------- digit classifier */
GMDEF int gm_digit_classifier_init(gm_digit_classifier *m, uint64_t seed) {
    gm_rng r;
    if (!m) return gm_fail("gm_digit_classifier_init: NULL");
    memset(m, 0, sizeof *m);
    gm_rng_seed(&r, seed);
    if (gm_conv_init(&m->c1, &m->params, "c1", 1, 16, 4, 2, 1, GM_INIT_TORCH, &r) != 0 ||    /* 16 x 14 x 14 */
        gm_conv_init(&m->c2, &m->params, "c2", 16, 32, 4, 2, 1, GM_INIT_TORCH, &r) != 0 ||   /* 32 x 7 x 7 */
        gm_linear_init(&m->fc1, &m->params, "fc1", 32 * 7 * 7, GM_DIGIT_FEATURES, GM_INIT_TORCH, &r) != 0 ||
        gm_linear_init(&m->fc2, &m->params, "fc2", GM_DIGIT_FEATURES, 10, GM_INIT_TORCH, &r) != 0) {
        gm_params_free(&m->params);
        return -1;
    }
    return 0;
}

GMDEF int gm_digit_classifier_load(gm_digit_classifier *m, const char *path) {
    if (gm_digit_classifier_init(m, 1) != 0) return -1;
    if (gm_checkpoint_load(path, &m->params, NULL, NULL) != 0) {
        gm_params_free(&m->params);
        return -1;
    }
    return 0;
}

GMDEF void gm_digit_classifier_free(gm_digit_classifier *m) {
    if (m) gm_params_free(&m->params);
}

GMDEF gm_tensor *gm_digit_classifier_forward(gm_graph *g, gm_digit_classifier *m, gm_tensor *x, gm_tensor **features) {
    gm_tensor *h;
    if (!g || !m || !x) return NULL;
    if (x->ndim == 2) x = gm_reshape(g, x, -1, 1, 28, 28);
    h = gm_relu(g, gm_conv_forward(g, &m->c1, x));
    h = gm_relu(g, gm_conv_forward(g, &m->c2, h));
    h = gm_relu(g, gm_linear_forward(g, &m->fc1, gm_flatten(g, h)));    /* (N, 128): the features */
    if (features) *features = h;
    return gm_linear_forward(g, &m->fc2, h);
}

typedef struct gm__digit_run { gm_digit_classifier *m; const float *x; float *features; int *pred; } gm__digit_run;

static int gm__digit_run_chunk(gm_graph *g, int start, int count, void *ctx) {
    const gm__digit_run *r = (const gm__digit_run *)ctx;
    gm_tensor *x = gm_input(g, r->x + (size_t)start * 784, count, 784, 0, 0), *f = NULL;
    gm_tensor *logits = gm_digit_classifier_forward(g, r->m, x, &f);
    int j, c;
    if (!logits) return -1;
    if (r->features)
        memcpy(r->features + (size_t)start * GM_DIGIT_FEATURES, f->data, (size_t)count * GM_DIGIT_FEATURES * sizeof(float));
    for (j = 0; r->pred && j < count; j++) {
        const float *row = logits->data + (size_t)j * 10;
        int best = 0;
        for (c = 1; c < 10; c++) if (row[c] > row[best]) best = c;
        r->pred[start + j] = best;
    }
    return 0;
}

GMDEF int gm_digit_classifier_run(gm_digit_classifier *m, gm_graph *g, const float *x, int n, float *features, int *pred) {
    gm__digit_run r;
    if (!m || !g || !x || n < 0) return gm_fail("gm_digit_classifier_run: bad arguments");
    r.m = m; r.x = x; r.features = features; r.pred = pred;
    return gm_run_chunks(g, n, gm__digit_run_chunk, &r, "gm_digit_classifier_run");
}

/* Features of n images, then their Gaussian. */
static int gm__digit_gaussian(gm_digit_classifier *m, gm_graph *g, const float *x, int n, int *pred, double *mu, double *cov) {
    float *f = (float *)GENMOD_MALLOC((size_t)n * GM_DIGIT_FEATURES * sizeof(float));
    int rc = f ? gm_digit_classifier_run(m, g, x, n, f, pred) : gm_fail("gm_digit_score: out of memory");
    if (rc == 0) rc = gm_gaussian_fit(f, n, GM_DIGIT_FEATURES, mu, cov);
    GENMOD_FREE(f);
    return rc;
}

GMDEF int gm_digit_score(gm_digit_classifier *m, gm_graph *g, const float *samples, const int *labels, int n,
                         const float *ref, int nref, gm_digit_scores *out) {
    const int d = GM_DIGIT_FEATURES;
    double *mu1 = (double *)GENMOD_MALLOC(2 * d * sizeof(double)), *mu2 = mu1 ? mu1 + d : NULL;
    double *c1 = (double *)GENMOD_MALLOC(2 * (size_t)d * d * sizeof(double)), *c2 = c1 ? c1 + d * d : NULL;
    int *pred = (int *)GENMOD_MALLOC((size_t)(n > 0 ? n : 1) * sizeof(int)), rc, i, hit = 0;
    if (!m || !g || !samples || !ref || n < 2 || nref < 2 || !out) rc = gm_fail("gm_digit_score: bad arguments (n %d, nref %d)", n, nref);
    else if (!mu1 || !c1 || !pred) rc = gm_fail("gm_digit_score: out of memory");
    else rc = gm__digit_gaussian(m, g, samples, n, pred, mu1, c1);
    if (rc == 0) rc = gm__digit_gaussian(m, g, ref, nref, NULL, mu2, c2);
    if (rc == 0) {
        out->fd = gm_frechet_distance(mu1, c1, mu2, c2, d);
        out->entropy = gm_label_entropy(pred, n, 10);
        for (i = 0; labels && i < n; i++) hit += pred[i] == labels[i];
        out->accuracy = labels ? (double)hit / n : -1.0;
        rc = out->fd < 0 ? -1 : 0;
    }
    GENMOD_FREE(mu1); GENMOD_FREE(c1); GENMOD_FREE(pred);
    return rc;
}

#endif /* GENMOD_GAN_IMPLEMENTATION_INCLUDED */
#endif /* GENMOD_GAN_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
MIT License
Copyright (c) 2025 the genmod authors
Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
