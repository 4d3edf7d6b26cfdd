/* ffjord2d: FFJORD (a continuous normalizing flow) on a 2-D toy density. dz/dt = f(z, t) is an MLP;
 * training backpropagates through the ODE solver (RK4 with fixed steps or adaptive Dormand-Prince),
 * with the exact trace of df/dz or Hutchinson's estimator. Writes a panel (data, learned density,
 * samples), the trajectory of samples from z ~ N(0, I) at t = T back to data at t = 0, and the
 * loss curve; prints the test NLL (exact trace, DOPRI5 at tight tolerances) and the evaluations
 * per solve. --save FILE writes the trained model; --load FILE --epochs 0 only draws the pictures
 * of a saved one.
 *
 *   cc -O2 -I. examples/ffjord2d.c -o ffjord2d -lm -lpthread
 *   ./ffjord2d --dataset moons --epochs 20 --solver rk4 --trace exact --save ffjord.safetensors */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_FLOW_IMPLEMENTATION
#include "../genmod_flow.h"
#include "common.h"

#define FRAMES 6

static int scatter(gm_image *img, const char *title, const float *xy, int n, float lo, float hi, int w) {
    gm_plot_opts o = gm_plot_defaults();
    o.w = w; o.h = w; o.title = title;
    o.fixed_x = o.fixed_y = 1; o.x0 = o.y0 = lo; o.x1 = o.y1 = hi;
    o.point_size = 1.2f;
    return gm_plot_scatter(img, &o, xy, n, NULL, 0, NULL);
}

/* exp(log p) on a G x G grid, exact trace. */
static int density(gm_ffjord *m, gm_image *img, float lo, float hi, double *integral) {
    int G = 90, i, j, rc;
    float *xy = (float *)malloc(sizeof(float) * 3 * (size_t)G * G), *lp = xy + 2 * (size_t)G * G;
    double cell = (hi - lo) / (double)G, s = 0;
    gm_plot_opts o = gm_plot_defaults();
    if (!xy) return -1;
    for (j = 0; j < G; j++) for (i = 0; i < G; i++) {
        xy[2 * (j * G + i)] = lo + (float)((i + 0.5) * cell);
        xy[2 * (j * G + i) + 1] = lo + (float)((j + 0.5) * cell);
    }
    rc = gm_ffjord_log_prob_batch(m, xy, G * G, GM_TRACE_EXACT, lp);
    for (i = 0; rc == 0 && i < G * G; i++) { lp[i] = expf(lp[i]); s += lp[i] * cell * cell; }
    *integral = s;
    o.w = 460; o.h = 400; o.title = "learned density p(x)";
    if (rc == 0) rc = gm_plot_heatmap(img, &o, lp, G, G, lo, hi, lo, hi);
    free(xy);
    return rc;
}

int main(int argc, char **argv) {
    const char *dataset = "moons", *solver = "rk4", *trace = "exact";
    int n_train = 3000, n_test = 1000, hidden = 64, depth = 3, rk4 = 8;
    float T = 1.0f, tol = 1e-3f;
    ex_opt extra[] = {
        {"dataset", EX_CHOICE, &dataset, "toy density", "moons|circles|8gaussians|checkerboard|pinwheel|spirals|swissroll"},
        {"solver", EX_CHOICE, &solver, "ODE solver while training", "rk4|dopri5"},
        {"trace", EX_CHOICE, &trace, "trace of df/dz while training", "exact|gauss|rademacher"},
        {"rk4-steps", EX_INT, &rk4, "fixed RK4 steps", "1..1000"},
        {"tol", EX_FLOAT, &tol, "DOPRI5 rtol = atol while training", "1e-9..1"},
        {"T", EX_FLOAT, &T, "integration time", "0.01..100"},
        {"hidden", EX_INT, &hidden, "width of f", "1..4096"},
        {"depth", EX_INT, &depth, "hidden layers of f", "1..8"},
        {"n-train", EX_INT, &n_train, "training points", "16..10000000"},
        {"n-test", EX_INT, &n_test, "test points", "16..10000000"},
    };
    ex_args a = ex_defaults("ffjord2d", 20, 256, 1e-3f);
    ex_run run;
    ex_json j;
    gm_ffjord m;
    gm_ffjord_config cfg;
    gm_batcher b;
    const int *idx;
    float *tr, *te, mean[2], sd[2], *xb, *smp, *traj, lo, hi;
    double t0, train_s, test_nll, integral = 0, nfe_sum = 0;
    long steps_per_epoch;
    int k, i, nsmp = 2000;
    gm_image panels[FRAMES], img, row[3];
    const char *name;

    a.without = "samples dump-samples data";   /* the pictures use a fixed sample count; 2-D points are no IDX images */
    ex_init(&a, argc, argv, "FFJORD: a continuous normalizing flow on a 2-D density.", extra,
            (int)(sizeof extra / sizeof extra[0]));
    ex_requires(&a, argc, argv, "tol", strcmp(solver, "dopri5") == 0, "with --solver dopri5 (rk4 takes fixed steps)");
    gm_flush_denormals();
    name = !strcmp(dataset, "spirals") ? "2spirals" : dataset;
    tr = (float *)malloc(sizeof(float) * 2 * (size_t)n_train);
    te = (float *)malloc(sizeof(float) * 2 * (size_t)n_test);
    xb = (float *)malloc(sizeof(float) * 2 * (size_t)a.batch);
    if (!tr || !te || !xb) { fprintf(stderr, "ffjord2d: out of memory\n"); return 1; }
    if (gm_toy2d(name, n_train, a.seed * 2, -1, tr, NULL) || gm_toy2d(name, n_test, a.seed * 2 + 1, -1, te, NULL)) {
        fprintf(stderr, "ffjord2d: %s\n", gm_last_error());
        return 1;
    }
    gm_standardize_fit(tr, n_train, 2, mean, sd);
    gm_standardize_apply(tr, n_train, 2, mean, sd);
    gm_standardize_apply(te, n_test, 2, mean, sd);

    cfg = gm_ffjord_default_config(2);
    cfg.hidden = hidden; cfg.depth = depth; cfg.t_end = T; cfg.rk4_steps = rk4; cfg.train_tol = tol;
    cfg.solver = !strcmp(solver, "rk4") ? GM_ODE_RK4 : GM_ODE_DOPRI5;
    cfg.trace = !strcmp(trace, "exact") ? GM_TRACE_EXACT : !strcmp(trace, "gauss") ? GM_TRACE_HUTCH_GAUSS : GM_TRACE_HUTCH_RADEMACHER;
    cfg.lr = a.lr; cfg.batch = a.batch; cfg.seed = a.seed;
    if (gm_ffjord_init(&m, &cfg) != 0) { fprintf(stderr, "ffjord2d: %s\n", gm_last_error()); return 1; }
    if (a.load && gm_ffjord_load(&m, a.load) != 0) { fprintf(stderr, "ffjord2d: %s\n", gm_last_error()); return 1; }
    if (!a.quiet)
        printf("ffjord2d: %s, %s solver, %s trace, f %d x %d, %zu parameters\n", dataset, solver, trace, hidden, depth,
               gm_params_count(&m.params));

    ex_check_batch(&a, n_train);   /* before the batcher, which would refuse it less clearly */
    gm_batcher_init(&b, n_train, a.batch, a.seed, 0);
    steps_per_epoch = (n_train + a.batch - 1) / a.batch;
    ex_run_begin(&run, &a, ex_total_steps(&a, steps_per_epoch), a.batch, "nll,nfe");
    t0 = ex_now();
    while (run.step < run.total && !ex_interrupted()) {
        while (run.step < run.total && !ex_interrupted() && (k = gm_batcher_next(&b, &idx)) > 0) {
            gm_ffjord_stats st;
            float v[2];
            for (i = 0; i < k; i++) { xb[2 * i] = tr[2 * idx[i]]; xb[2 * i + 1] = tr[2 * idx[i] + 1]; }
            if (gm_ffjord_train_step(&m, xb, NULL, k, &st) != 0) { fprintf(stderr, "ffjord2d: %s\n", gm_last_error()); return 1; }
            v[0] = st.loss; v[1] = (float)st.nfe;
            nfe_sum += st.nfe;
            ex_run_step(&run, v);
        }
    }
    train_s = ex_now() - t0;
    ex_run_end(&run);
    ex_run_plot(&run, "ffjord2d_loss.png", "FFJORD: training NLL and function evaluations per step", 0);
    if (a.save && gm_ffjord_save(&m, a.save) != 0) { fprintf(stderr, "ffjord2d: %s\n", gm_last_error()); return 1; }

    /* evaluation: exact trace, adaptive solver at the evaluation tolerances */
    m.cfg.solver = GM_ODE_DOPRI5;
    if (gm_ffjord_nll(&m, te, n_test, &test_nll) != 0) { fprintf(stderr, "ffjord2d: %s\n", gm_last_error()); return 1; }
    if (!a.quiet) printf("test NLL %.4f nats/point (exact trace, DOPRI5 rtol %g: %ld evaluations for the last chunk)\n",
                         test_nll, (double)m.cfg.rtol, m.nfe);

    /* pictures */
    lo = hi = 0;
    for (i = 0; i < 2 * n_test; i++) { if (te[i] < lo) lo = te[i]; if (te[i] > hi) hi = te[i]; }
    lo = lo - 0.15f * (hi - lo); hi = hi + 0.15f * (hi - lo);
    if (-lo > hi) hi = -lo; else lo = -hi;
    smp = (float *)malloc(sizeof(float) * 2 * (size_t)nsmp);
    traj = (float *)malloc(sizeof(float) * 2 * (size_t)nsmp * FRAMES);
    memset(row, 0, sizeof row);
    if (scatter(&row[0], "data (test)", te, n_test, lo, hi, 400) || density(&m, &row[1], lo, hi, &integral) ||
        gm_ffjord_sample_trajectory(&m, NULL, nsmp, smp, FRAMES, traj) || scatter(&row[2], "samples", smp, nsmp, lo, hi, 400)) {
        fprintf(stderr, "ffjord2d: %s\n", gm_last_error());
        return 1;
    }
    if (gm_image_hstack(&img, row, 3, NULL, 8) == 0) ex_save_png(&a, "ffjord2d.png", &img);
    for (i = 0; i < 3; i++) gm_image_free(&row[i]);
    memset(panels, 0, sizeof panels);
    for (k = 0; k < FRAMES; k++) {
        char title[64];
        snprintf(title, sizeof title, "t = %.2f", (double)(T * (1.0f - (float)k / (FRAMES - 1))));
        if (scatter(&panels[k], title, traj + (size_t)k * 2 * nsmp, nsmp, lo, hi, 300) != 0) {
            fprintf(stderr, "ffjord2d: %s\n", gm_last_error());
            return 1;
        }
    }
    if (gm_image_hstack(&img, panels, FRAMES, NULL, 6) == 0) ex_save_png(&a, "ffjord2d_trajectory.png", &img);
    for (k = 0; k < FRAMES; k++) gm_image_free(&panels[k]);

    ex_json_init(&j);
    ex_json_str(&j, "model", "ffjord");
    ex_json_str(&j, "dataset", dataset);
    ex_json_str(&j, "solver", solver);
    ex_json_str(&j, "trace", trace);
    ex_json_num(&j, "steps", (double)run.step);
    ex_json_num(&j, "test_nll_nats", test_nll);
    ex_json_num(&j, "density_integral", integral);
    ex_json_num(&j, "nfe_per_train_step", run.step ? nfe_sum / run.step : 0);
    ex_json_num(&j, "params", (double)gm_params_count(&m.params));
    ex_json_num(&j, "train_s", train_s);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&b);
    gm_ffjord_free(&m);
    free(tr); free(te); free(xb); free(smp); free(traj);
    return 0;
}
