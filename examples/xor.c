/* The README's complete program: an MLP learns XOR. cc -O2 -I. examples/xor.c -o xor -lm -lpthread */
#include <stdio.h>
#define GENMOD_IMPLEMENTATION
#include "genmod.h"

int main(void) {
    float xs[8] = {0,0, 0,1, 1,0, 1,1}, ys[4] = {0, 1, 1, 0};
    gm_params P = {0};                        /* every weight of the model, one buffer */
    gm_rng rng;  gm_linear l1, l2;  int step;
    gm_rng_seed(&rng, 1);
    gm_linear_init(&l1, &P, "l1", 2, 16, GM_INIT_TORCH, &rng);
    gm_linear_init(&l2, &P, "l2", 16, 1, GM_INIT_TORCH, &rng);
    gm_optim opt = gm_adam(1e-2f, 0.9f, 0.999f);
    gm_graph *g = gm_graph_new(1);            /* arena + tape of one step */
    for (step = 0; step <= 2000; step++) {
        gm_graph_reset(g);
        gm_tensor *x = gm_input(g, xs, 4, 2, 0, 0), *y = gm_input(g, ys, 4, 1, 0, 0);
        gm_tensor *h = gm_tanh(g, gm_linear_forward(g, &l1, x));           /* h = tanh(x W1 + b1) */
        gm_tensor *loss = gm_bce_logits(g, gm_linear_forward(g, &l2, h), y);
        if (gm_backward(g, loss) != 0) { fprintf(stderr, "%s\n", gm_last_error()); return 1; }
        gm_optim_step(&opt, &P);              /* Adam update, then gradients back to zero */
        if (step % 500 == 0) printf("step %4d  loss %.4f\n", step, loss->data[0]);
    }
    gm_graph_free(g); gm_optim_free(&opt); gm_params_free(&P);
    return 0;
}
