/* wgan.c: WGAN-GP on the bundled MNIST digits (Gulrajani et al.), the recipe of the issue and of
 * the PyTorch baseline: MLP G (as gan.c), critic 784 -> 1024 -> 512 -> 256 -> 1 (ReLU, no
 * dropout, no batch norm), penalty 10 (||grad_x C(x_hat)|| - 1)^2 by double backprop, 5 critic
 * steps per G step, Adam 1e-4 betas (0.5, 0.9), batch 64, 420 G steps.
 *
 *   cc -O2 -I. examples/wgan.c -o build/wgan -lm -lpthread && ./build/wgan
 *   ./build/wgan --arch conv                           # DCGAN-style critic (no batch norm)
 *   ./build/wgan --gp 0 --clip 0.01 --lr 5e-5          # the original WGAN: clipping, RMSProp
 *
 * The program is examples/gan.c with these defaults: every flag of gan.c works (--help). */
#define EX_GAN_NAME "wgan"
#define EX_GAN_ABOUT "WGAN-GP (or WGAN with weight clipping) on MNIST."
#define EX_GAN_ARCH "mlp"
#define EX_GAN_LOSS "wgan"
#define EX_GAN_STEPS 420
#define EX_GAN_BATCH 64
#define EX_GAN_LR 1e-4f
#define EX_GAN_BETA2 0.9f
#define EX_GAN_GP 10.0f
#define EX_GAN_NCRITIC 5
#define EX_GAN_COND 0
#include "gan.c"
