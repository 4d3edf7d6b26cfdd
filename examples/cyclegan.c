/* cyclegan.c: CycleGAN (Zhu et al.) between thin-stroke digits (A) and thick ones (B), unpaired.
 *
 *   cc -O2 -I. examples/cyclegan.c -o build/cyclegan -lm -lpthread && ./build/cyclegan
 *
 * Domains that ship with the repo: A = the first half of the bundled training digits as they are;
 * B = the second half, dilated by a 3x3 max filter. The halves are disjoint, so no image of A has
 * its thick twin in B: the pairing must be learned from the two distributions alone.
 * G: A -> B and F: B -> A are 3x3 conv nets (16-32-16, ReLU, tanh); DA, DB patch discriminators;
 * LSGAN losses + 10 x L1 cycle loss (+ --identity x L1 identity loss); Adam 2e-4, betas (0.5, 0.999).
 *
 * Writes cyclegan_step<k>.png (rows: test digits A, G(A), F(G(A)), then B, F(B), G(F(B))) and the
 * loss curves. The JSON line holds the mean |G(a) - dilate(a)| on 500 test digits: the true thick
 * twin, never seen in training (the untouched input scores `l1_identity`). --save FILE writes the
 * model after training; --load FILE continues from one (--steps 0: only the pictures and scores).
 *
 *   ./build/cyclegan --save cyclegan.safetensors && ./build/cyclegan --load cyclegan.safetensors --steps 0 */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_GAN_IMPLEMENTATION
#include "../genmod_gan.h"
#include "common.h"

#define NSHOW 10
#define NEVAL 500

/* Rows: A, G(A), F(G(A)), B, F(B), G(F(B)) for NSHOW test digits. */
static int save_rows(const ex_args *a, gm_cyclegan *m, const float *ta, const float *tb, long step) {
    static float rows[6 * NSHOW * 784];
    char file[96];
    gm_image grid, big;
    memcpy(rows, ta, NSHOW * 784 * sizeof(float));
    memcpy(rows + 3 * NSHOW * 784, tb, NSHOW * 784 * sizeof(float));
    if (gm_cyclegan_translate(m, 1, rows, NSHOW, rows + NSHOW * 784) != 0 ||
        gm_cyclegan_translate(m, 0, rows + NSHOW * 784, NSHOW, rows + 2 * NSHOW * 784) != 0 ||
        gm_cyclegan_translate(m, 0, rows + 3 * NSHOW * 784, NSHOW, rows + 4 * NSHOW * 784) != 0 ||
        gm_cyclegan_translate(m, 1, rows + 4 * NSHOW * 784, NSHOW, rows + 5 * NSHOW * 784) != 0)
        return -1;
    if (gm_image_grid(&grid, rows, 6 * NSHOW, 1, 28, 28, NSHOW, 2, -1.0f, 1.0f) != 0) return -1;
    if (gm_image_upscale(&big, &grid, 2) != 0) { gm_image_free(&grid); return -1; }
    gm_image_free(&grid);
    snprintf(file, sizeof file, "cyclegan_step%05ld.png", step);
    return ex_save_png(a, file, &big);
}

static double mean_l1(const float *x, const float *y, size_t n) {
    double s = 0;
    size_t i;
    for (i = 0; i < n; i++) s += fabs((double)x[i] - y[i]);
    return s / (double)n;
}

int main(int argc, char **argv) {
    float identity = 0, cycle = 10, ema = 0;
    ex_opt extra[] = {
        {"cycle", EX_FLOAT, &cycle, "weight of the L1 cycle-consistency loss", "0.."},
        {"identity", EX_FLOAT, &identity, "weight of the L1 identity loss (0: off)", "0.."},
        {"ema", EX_FLOAT, &ema, "decay of the moving average of both generators, which translates (0: off)", "0..0.99999"},
    };
    ex_args a = ex_defaults("cyclegan", 1, 16, 2e-4f);
    int *idx;
    gm_dataset tr, te;
    gm_cyclegan m;
    gm_cyclegan_config c;
    gm_cyclegan_stats st;
    gm_batcher ba, bb;
    ex_run run;
    ex_json j;
    const int *ia, *ib;
    float *xa, *xb, *tmp, *ta, *tb, *gen;
    int half, ka, kb;
    long total, target, shown = -1;
    double l1, l1_id;
    memset(&st, 0, sizeof st);
    a.steps = 400;
    a.without = "epochs samples dump-samples";   /* a translator: --steps is its budget, it draws no samples */
    ex_init(&a, argc, argv, "CycleGAN: thin digits <-> thick (dilated) digits, unpaired. --steps counts steps.", extra,
            (int)(sizeof extra / sizeof extra[0]));
    total = a.steps;
    if (gm_mnist_load(&tr, &te, a.data_dir, 0, 0, -1.0f, 1.0f) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
    c = gm_cyclegan_default_config(1, 28, 28);    /* LSGAN losses, Adam betas (0.5, 0.999) */
    c.cycle = cycle; c.identity = identity; c.ema = ema;
    c.opt_g.lr = c.opt_d.lr = a.lr;
    c.batch = a.batch; c.seed = a.seed;
    if (gm_cyclegan_init(&m, &c) != 0 || (a.load && gm_cyclegan_load(&m, a.load) != 0)) {
        fprintf(stderr, "%s: %s\n", a.name, gm_last_error());
        gm_cyclegan_free(&m);
        gm_dataset_free(&tr); gm_dataset_free(&te);
        return 1;
    }
    half = tr.n / 2;
    ex_check_batch(&a, half);               /* each domain is half of the training digits */
    idx = (int *)malloc((size_t)a.batch * sizeof(int));
    xa = (float *)malloc((size_t)a.batch * 784 * sizeof(float));
    xb = (float *)malloc((size_t)a.batch * 784 * sizeof(float));
    tmp = (float *)malloc((size_t)a.batch * 784 * sizeof(float));
    ta = (float *)malloc(NEVAL * 784 * sizeof(float));
    tb = (float *)malloc(NEVAL * 784 * sizeof(float));
    gen = (float *)malloc(NEVAL * 784 * sizeof(float));
    if (!idx || !xa || !xb || !tmp || !ta || !tb || !gen || te.n < NEVAL) { fprintf(stderr, "%s: out of memory / data\n", a.name); return 1; }
    memcpy(ta, te.x, NEVAL * 784 * sizeof(float));          /* test digits: A, and their true thick twins */
    gm_dilate_images(ta, NEVAL, 28, 28, tb);
    gm_batcher_init(&ba, half, a.batch, a.seed, 1);           /* A: items 0 .. half-1 */
    gm_batcher_init(&bb, tr.n - half, a.batch, a.seed + 1, 1); /* B: items half .. n-1 */
    ex_run_begin(&run, &a, total, a.batch, "g_adv,cycle,d_a,d_b");
    target = m.step + total;                                   /* --steps more steps */
    while (m.step < target && !ex_interrupted()) {
        int i;
        if ((ka = gm_batcher_next(&ba, &ia)) == 0) continue;
        if ((kb = gm_batcher_next(&bb, &ib)) == 0) kb = gm_batcher_next(&bb, &ib);
        {   for (i = 0; i < kb && i < ka; i++) idx[i] = ib[i] + half;
            gm_dataset_gather(&tr, ia, ka, xa, NULL);
            gm_dataset_gather(&tr, idx, i, tmp, NULL);
            gm_dilate_images(tmp, i, 28, 28, xb);
            ka = i; }
        if (gm_cyclegan_train_step(&m, xa, xb, ka, &st) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
        {   float v[4];
            v[0] = st.g_adv; v[1] = st.cycle; v[2] = st.d_a; v[3] = st.d_b;
            ex_run_step(&run, v); }
        if (m.step % (total / 4 > 0 ? total / 4 : 1) == 0 || m.step == 1) save_rows(&a, &m, ta, tb, shown = m.step);
    }
    ex_run_end(&run);
    if (a.save && gm_cyclegan_save(&m, a.save) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
    if (a.save && !a.quiet) printf("wrote %s\n", a.save);
    if (shown < 0) save_rows(&a, &m, ta, tb, m.step);          /* no step taken: the loaded model's rows */
    ex_run_plot(&run, "cyclegan_loss.png", "CycleGAN", 0);
    if (gm_cyclegan_translate(&m, 1, ta, NEVAL, gen) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
    l1 = mean_l1(gen, tb, (size_t)NEVAL * 784);
    l1_id = mean_l1(ta, tb, (size_t)NEVAL * 784);
    if (!a.quiet)
        printf("%s: mean |G(a) - dilate(a)| = %.4f on %d test digits (input unchanged: %.4f)%s\n", a.name, l1, NEVAL, l1_id,
               m.use_ema ? " (moving average of G)" : "");
    ex_json_init(&j);
    ex_json_str(&j, "model", "cyclegan");
    ex_json_num(&j, "steps", (double)m.step);
    ex_json_num(&j, "l1_to_true_dilation", l1);
    ex_json_num(&j, "l1_identity", l1_id);
    ex_json_num(&j, "ema", ema);
    ex_json_num(&j, "cycle_last", st.cycle);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&ba); gm_batcher_free(&bb);
    gm_cyclegan_free(&m);
    free(idx); free(xa); free(xb); free(tmp); free(ta); free(tb); free(gen);
    gm_dataset_free(&tr); gm_dataset_free(&te);
    return 0;
}
