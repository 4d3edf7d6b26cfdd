/* ebm2d: a deep energy-based model E(x) (an MLP) on a 2-D toy density, trained by contrastive
 * divergence with short-run Langevin dynamics and a replay buffer. Writes the data next to the
 * learned density exp(-E) and Langevin samples, and the Langevin chain from noise over its steps.
 *
 *   cc -O2 -I. examples/ebm2d.c -o ebm2d -lm -lpthread
 *   ./ebm2d --dataset 8gaussians */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_EBM_IMPLEMENTATION
#include "../genmod_ebm.h"
#include "common.h"

#define GRID 120
#define NFRAMES 4
#define PI_ 3.14159265358979323846

/* 8 Gaussians only: the fraction of samples within 0.25 of a mode (a uniform ring of radius 2
   would put 32% there) and the modes holding >= 2% */
static void coverage(const float *x, int n, double *near, int *modes) {
    int cnt[8] = {0}, i, k, hit = 0;
    for (i = 0; i < n; i++)
        for (k = 0; k < 8; k++) {
            double a = 2 * PI_ * k / 8, dx = x[2 * i] - 2 * cos(a), dy = x[2 * i + 1] - 2 * sin(a);
            if (dx * dx + dy * dy < 0.0625) { cnt[k]++; hit++; break; }
        }
    *near = (double)hit / n;
    *modes = 0;
    for (k = 0; k < 8; k++) *modes += cnt[k] >= 0.02 * n;
}

static int scatter(gm_image *img, const float *xy, int n, float lim, const char *title) {
    gm_plot_opts o = gm_plot_defaults();
    o.w = 420; o.h = 420; o.title = title;
    o.fixed_x = o.fixed_y = 1; o.x0 = o.y0 = -lim; o.x1 = o.y1 = lim;
    return gm_plot_scatter(img, &o, xy, n, NULL, 0, NULL);
}

/* exp(-E) on a GRID x GRID lattice over [-lim, lim]^2, normalized to sum 1 */
static int density(gm_ebm *m, float lim, gm_image *img) {
    static float pts[GRID * GRID * 2], e[GRID * GRID];
    gm_plot_opts o = gm_plot_defaults();
    int i, j;
    double emin = 1e30;
    for (j = 0; j < GRID; j++)
        for (i = 0; i < GRID; i++) {
            pts[2 * (j * GRID + i)] = -lim + (i + 0.5f) * 2 * lim / GRID;
            pts[2 * (j * GRID + i) + 1] = -lim + (j + 0.5f) * 2 * lim / GRID;
        }
    if (gm_ebm_energy(m, pts, GRID * GRID, e) != 0) return -1;
    for (i = 0; i < GRID * GRID; i++) emin = e[i] < emin ? e[i] : emin;
    for (i = 0; i < GRID * GRID; i++) e[i] = (float)exp(-(e[i] - emin));
    o.w = 480; o.h = 420; o.title = "exp(-E(x))";
    return gm_plot_heatmap(img, &o, e, GRID, GRID, -lim, lim, -lim, lim);
}

int main(int argc, char **argv) {
    const char *dataset = "8gaussians";
    int hidden = 64, depth = 2, lsteps = 40, buffer = 10000, n_data = 20000, n_samples = 2000;
    float step_size = 0.01f, noise = 0.005f, alpha = 0.1f, reinit = 0.05f, lim = 4.0f;
    ex_opt extra[] = {
        {"dataset", EX_STRING, &dataset, "2-D toy (moons circles 8gaussians checkerboard pinwheel 2spirals swissroll)", NULL},
        {"hidden", EX_INT, &hidden, "MLP width", "1..4096"},
        {"depth", EX_INT, &depth, "MLP hidden layers", "1..8"},
        {"langevin-steps", EX_INT, &lsteps, "Langevin steps per training step", "1..10000"},
        {"step-size", EX_FLOAT, &step_size, "Langevin step on dE/dx", "0.."},
        {"noise", EX_FLOAT, &noise, "Langevin noise std", "0.."},
        {"alpha", EX_FLOAT, &alpha, "weight of the energy-magnitude term", "0.."},
        {"reinit", EX_FLOAT, &reinit, "fraction of negatives started from noise", "0..1"},
        {"buffer", EX_INT, &buffer, "replay buffer size", "1..10000000"},
        {"range", EX_FLOAT, &lim, "plots and noise starts cover [-range, range]^2", "0.1.."},
    };
    ex_args a = ex_defaults("ebm2d", 0, 256, 3e-3f);
    ex_run run;
    ex_json j;
    gm_ebm m;
    gm_ebm_config cfg;
    gm_batcher b;
    const int *idx;
    float *data, *xb, *smp, *traj;
    gm_image panels[4], frames[NFRAMES], img;
    static const int fsteps[NFRAMES] = {0, 20, 60, 200};
    const char *caps[4] = {"data", "exp(-E)", "Langevin from noise", "Langevin from the buffer"};
    char fcap[NFRAMES][32];
    const char *fcaps[NFRAMES];
    double t0, train_s, near = 0, near_buf = 0;
    int i, k, modes = 0, modes_buf = 0, done;

    ex_init(&a, argc, argv, "Deep energy-based model on a 2-D toy: Langevin dynamics, replay buffer, density of exp(-E).",
            extra, (int)(sizeof extra / sizeof extra[0]));
    if (a.steps < 0 && a.epochs == 0) a.steps = 2500;   /* the default budget: 2,500 steps */
    gm_flush_denormals();
    data = (float *)malloc(sizeof(float) * 2 * (size_t)n_data);
    xb = (float *)malloc(sizeof(float) * 2 * (size_t)a.batch);
    smp = (float *)malloc(sizeof(float) * 2 * (size_t)n_samples * 2);
    traj = (float *)malloc(sizeof(float) * 2 * (size_t)n_samples);
    if (!data || !xb || !smp || !traj) { fprintf(stderr, "ebm2d: out of memory\n"); return 1; }
    if (gm_toy2d(dataset, n_data, a.seed, -1, data, NULL) != 0) { fprintf(stderr, "ebm2d: --dataset: %s\n", gm_last_error()); return 2; }
    cfg = gm_ebm_default_config(2);
    cfg.hidden = hidden; cfg.depth = depth; cfg.langevin_steps = lsteps;
    cfg.step_size = step_size; cfg.noise = noise; cfg.alpha = alpha; cfg.reinit = reinit;
    cfg.buffer_size = buffer; cfg.init_range = lim; cfg.lr = a.lr; cfg.batch = a.batch; cfg.seed = a.seed;
    if (gm_ebm_init(&m, &cfg) != 0) { fprintf(stderr, "ebm2d: %s\n", gm_last_error()); return 1; }
    if (a.load && gm_ebm_load(&m, a.load) != 0) { fprintf(stderr, "ebm2d: %s\n", gm_last_error()); return 1; }
    if (!a.quiet) printf("ebm2d: %s, MLP 2-%dx%d-1, %d Langevin steps of %g (noise %g)\n", dataset, hidden, depth, lsteps,
                         (double)step_size, (double)noise);

    gm_batcher_init(&b, n_data, a.batch, a.seed, 1);
    ex_run_begin(&run, &a, ex_total_steps(&a, n_data / a.batch), a.batch, "loss,e_data,e_samples");
    t0 = ex_now();
    while (run.step < run.total && !ex_interrupted()) {
        gm_ebm_stats st;
        float mm[3];
        if ((k = gm_batcher_next(&b, &idx)) == 0) continue;
        for (i = 0; i < k; i++) { xb[2 * i] = data[2 * idx[i]]; xb[2 * i + 1] = data[2 * idx[i] + 1]; }
        if (gm_ebm_train_step(&m, xb, NULL, k, &st) != 0) { fprintf(stderr, "ebm2d: %s\n", gm_last_error()); return 1; }
        mm[0] = st.loss; mm[1] = st.e_pos; mm[2] = st.e_neg;
        ex_run_step(&run, mm);
    }
    train_s = ex_now() - t0;
    ex_run_end(&run);
    ex_run_plot(&run, "ebm2d_loss.png", "deep EBM: loss and mean energies", 0);
    if (a.save && gm_ebm_save(&m, a.save) != 0) { fprintf(stderr, "ebm2d: %s\n", gm_last_error()); return 1; }

    /* the Langevin chain from uniform noise, pictured over its steps */
    {
        gm_rng rng;
        gm_rng_seed(&rng, a.seed + 1);
        for (i = 0; i < 2 * n_samples; i++) traj[i] = -lim + 2 * lim * gm_rng_uniform(&rng);
    }
    for (k = 0, done = 0; k < NFRAMES; k++) {
        if (fsteps[k] > done && gm_ebm_langevin(&m, traj, n_samples, fsteps[k] - done) != 0) {
            fprintf(stderr, "ebm2d: %s\n", gm_last_error());
            return 1;
        }
        done = fsteps[k];
        snprintf(fcap[k], sizeof fcap[k], "step %d", fsteps[k]);
        fcaps[k] = fcap[k];
        scatter(&frames[k], traj, n_samples, lim, NULL);
    }
    if (gm_image_hstack(&img, frames, NFRAMES, fcaps, 10) == 0) { ex_save_png(&a, "ebm2d_langevin.png", &img); gm_image_free(&img); }
    for (k = 0; k < NFRAMES; k++) gm_image_free(&frames[k]);

    if (gm_ebm_sample(&m, NULL, n_samples, smp) != 0 || gm_ebm_sample_buffer(&m, n_samples, smp + 2 * n_samples) != 0) {
        fprintf(stderr, "ebm2d: %s\n", gm_last_error());
        return 1;
    }
    scatter(&panels[0], data, n_samples, lim, NULL);
    if (density(&m, lim, &panels[1]) != 0) { fprintf(stderr, "ebm2d: %s\n", gm_last_error()); return 1; }
    scatter(&panels[2], smp, n_samples, lim, NULL);
    scatter(&panels[3], smp + 2 * n_samples, n_samples, lim, NULL);
    if (gm_image_hstack(&img, panels, 4, caps, 10) == 0) { ex_save_png(&a, "ebm2d.png", &img); gm_image_free(&img); }
    for (k = 0; k < 4; k++) gm_image_free(&panels[k]);

    ex_json_init(&j);
    ex_json_str(&j, "dataset", dataset);
    ex_json_num(&j, "steps", (double)run.step);
    if (!strcmp(dataset, "8gaussians")) {
        coverage(smp, n_samples, &near, &modes);
        coverage(smp + 2 * n_samples, n_samples, &near_buf, &modes_buf);
        ex_json_num(&j, "modes_noise", modes);
        ex_json_num(&j, "near_mode_noise", near);
        ex_json_num(&j, "modes_buffer", modes_buf);
        ex_json_num(&j, "near_mode_buffer", near_buf);
    }
    ex_json_num(&j, "train_s", train_s);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&b);
    gm_ebm_free(&m);
    free(data); free(xb); free(smp); free(traj);
    return 0;
}
