/* cgan.c: conditional GAN on the bundled MNIST digits (Mirza & Osindero): a one-hot label joins z
 * and D's input (as 10 constant planes for the conv D). DCGAN networks by default (--arch mlp for
 * the MLP ones). The sample grids have one row per digit; the JSON line reports how often the
 * metric classifier reads a sample as the digit it was drawn for (chance: 0.1).
 *
 *   cc -O2 -I. examples/cgan.c -o build/cgan -lm -lpthread && ./build/cgan
 *
 * The program is examples/gan.c with these defaults: every flag of gan.c works (--help). */
#define EX_GAN_NAME "cgan"
#define EX_GAN_ABOUT "Conditional GAN on MNIST (label-conditioned G and D)."
#define EX_GAN_ARCH "conv"
#define EX_GAN_LOSS "nonsat"
#define EX_GAN_STEPS 1000
#define EX_GAN_BATCH 64
#define EX_GAN_LR 2e-4f
#define EX_GAN_BETA2 0.999f
#define EX_GAN_GP 0.0f
#define EX_GAN_NCRITIC 1
#define EX_GAN_COND 1
#include "gan.c"
