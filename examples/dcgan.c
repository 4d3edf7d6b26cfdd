/* dcgan.c: DCGAN on the bundled MNIST digits (Radford et al.), the recipe of the issue:
 * G z -> dense 128x7x7, BN, ReLU -> conv-transpose 4x4/2 to 64, BN, ReLU -> conv-transpose 4x4/2
 * to 1, tanh; D conv 4x4/2 64, LeakyReLU 0.2 -> conv 4x4/2 128, BN, LeakyReLU -> dense 1;
 * Adam 2e-4, betas (0.5, 0.999), batch 64, 1000 G steps (the PyTorch baseline's budget).
 *
 *   cc -O2 -I. examples/dcgan.c -o build/dcgan -lm -lpthread && ./build/dcgan
 *
 * The program is examples/gan.c with these defaults: every flag of gan.c works (--help). */
#define EX_GAN_NAME "dcgan"
#define EX_GAN_ABOUT "DCGAN on MNIST (conv generator and discriminator)."
#define EX_GAN_ARCH "conv"
#define EX_GAN_LOSS "nonsat"
#define EX_GAN_STEPS 1000
#define EX_GAN_BATCH 64
#define EX_GAN_LR 2e-4f
#define EX_GAN_BETA2 0.999f
#define EX_GAN_GP 0.0f
#define EX_GAN_NCRITIC 1
#define EX_GAN_COND 0
#include "gan.c"
