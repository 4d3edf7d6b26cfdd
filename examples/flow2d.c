/* flow2d: NICE, RealNVP or Glow on a 2-D toy density. Writes one PNG panel (the data, the learned
 * density as a heatmap, samples, and the data pushed forward to z) and the loss curve; prints the
 * test NLL next to a full-covariance Gaussian fit's. The defaults are the Keras RealNVP recipe, as
 * the PyTorch reference implements it (6 couplings, s/t nets 2-256-256-256-256-2, L2 0.01, Adam
 * 1e-4, batch 256); --csv PREFIX trains on the reference's exact points (its --save-data PREFIX).
 * --save FILE writes the trained flow; --load FILE --epochs 0 only draws the pictures of a saved one.
 *
 *   cc -O2 -I. examples/flow2d.c -o flow2d -lm -lpthread
 *   ./flow2d --model realnvp --dataset moons --epochs 110 --save moons.safetensors */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_FLOW_IMPLEMENTATION
#include "../genmod_flow.h"
#include "common.h"

typedef struct points { float *xy; int *lab; int n, nlab; } points;

/* PREFIX_train.csv / PREFIX_test.csv: "x,y" per line. */
static int read_csv(const char *path, points *p) {
    FILE *fp = fopen(path, "r");
    int cap = 1024;
    double a, b;
    if (!fp) { fprintf(stderr, "flow2d: cannot open %s\n", path); return -1; }
    p->n = 0; p->lab = NULL; p->nlab = 0;
    p->xy = (float *)malloc(sizeof(float) * 2 * (size_t)cap);
    while (p->xy && fscanf(fp, "%lf,%lf", &a, &b) == 2) {
        if (p->n == cap) { cap *= 2; p->xy = (float *)realloc(p->xy, sizeof(float) * 2 * (size_t)cap); if (!p->xy) break; }
        p->xy[2 * p->n] = (float)a; p->xy[2 * p->n + 1] = (float)b; p->n++;
    }
    fclose(fp);
    if (!p->xy || p->n == 0) { fprintf(stderr, "flow2d: %s: no 'x,y' lines\n", path); return -1; }
    return 0;
}

static int make_points(const char *name, int n, uint64_t seed, points *p) {
    int i;
    p->n = n;
    p->xy = (float *)malloc(sizeof(float) * 2 * (size_t)n);
    p->lab = (int *)malloc(sizeof(int) * (size_t)n);
    if (!p->xy || !p->lab) return -1;
    if (gm_toy2d(name, n, seed, -1, p->xy, p->lab) != 0) { fprintf(stderr, "flow2d: %s\n", gm_last_error()); return -1; }
    p->nlab = 1;
    for (i = 0; i < n; i++) { p->lab[i] %= GM_PALETTE_SIZE; if (p->lab[i] + 1 > p->nlab) p->nlab = p->lab[i] + 1; }
    return 0;
}

/* NLL on test of the MLE full-covariance Gaussian of train (the bound a flow must beat). */
static double gauss_nll(const points *tr, const points *te) {
    double mu[2] = {0, 0}, S[3] = {0, 0, 0}, det, s = 0;
    int i;
    for (i = 0; i < tr->n; i++) { mu[0] += tr->xy[2 * i]; mu[1] += tr->xy[2 * i + 1]; }
    mu[0] /= tr->n; mu[1] /= tr->n;
    for (i = 0; i < tr->n; i++) {
        double a = tr->xy[2 * i] - mu[0], b = tr->xy[2 * i + 1] - mu[1];
        S[0] += a * a; S[1] += a * b; S[2] += b * b;
    }
    S[0] /= tr->n; S[1] /= tr->n; S[2] /= tr->n;
    det = S[0] * S[2] - S[1] * S[1];
    for (i = 0; i < te->n; i++) {
        double a = te->xy[2 * i] - mu[0], b = te->xy[2 * i + 1] - mu[1];
        s += 0.5 * (S[2] * a * a - 2 * S[1] * a * b + S[0] * b * b) / det + 0.5 * log(det) + log(2 * 3.14159265358979);
    }
    return s / te->n;
}

static int scatter(gm_image *img, const char *title, const float *xy, int n, const int *lab, int nlab, float lo, float hi) {
    gm_plot_opts o = gm_plot_defaults();
    o.w = 420; o.h = 420; o.title = title;
    o.fixed_x = o.fixed_y = 1; o.x0 = o.y0 = lo; o.x1 = o.y1 = hi;
    o.point_size = 1.5f;
    return gm_plot_scatter(img, &o, xy, n, lab, lab ? nlab : 0, NULL);
}

/* The learned density exp(log p) on a G x G grid over [lo,hi]^2; *integral: its sum x cell area. */
static int density(gm_flow *f, gm_image *img, float lo, float hi, double *integral) {
    int G = 160, i, j, rc;
    float *xy = (float *)malloc(sizeof(float) * 3 * (size_t)G * G), *lp = xy + 2 * (size_t)G * G;
    double cell = (hi - lo) / (double)G, s = 0;
    gm_plot_opts o = gm_plot_defaults();
    if (!xy) return -1;
    for (j = 0; j < G; j++) for (i = 0; i < G; i++) {
        xy[2 * (j * G + i)] = lo + (float)((i + 0.5) * cell);
        xy[2 * (j * G + i) + 1] = lo + (float)((j + 0.5) * cell);
    }
    rc = gm_flow_log_prob_batch(f, xy, G * G, lp);
    for (i = 0; rc == 0 && i < G * G; i++) { lp[i] = expf(lp[i]); s += lp[i] * cell * cell; }
    *integral = s;
    o.w = 480; o.h = 420; o.title = "learned density p(x)";
    if (rc == 0) rc = gm_plot_heatmap(img, &o, lp, G, G, lo, hi, lo, hi);
    free(xy);
    return rc;
}

int main(int argc, char **argv) {
    const char *model = "realnvp", *dataset = "moons", *csv = NULL;
    int n_train = 3000, n_test = 3000, layers = 6, hidden = 256, depth = 4, models[3];
    float l2 = 0.01f;
    ex_opt extra[] = {
        {"model", EX_CHOICE, &model, "flow", "nice|realnvp|glow"},
        {"dataset", EX_CHOICE, &dataset, "toy density", "moons|circles|8gaussians|checkerboard|pinwheel|spirals|swissroll"},
        {"csv", EX_STRING, &csv, "train on PREFIX_train.csv, test on PREFIX_test.csv (the PyTorch reference's --save-data)", NULL},
        {"n-train", EX_INT, &n_train, "training points", "16..10000000"},
        {"n-test", EX_INT, &n_test, "test points", "16..10000000"},
        {"layers", EX_INT, &layers, "coupling layers (Glow: steps)", "1..30"},
        {"hidden", EX_INT, &hidden, "width of the s/t nets", "1..4096"},
        {"depth", EX_INT, &depth, "hidden layers of the s/t nets", "1..8"},
        {"l2", EX_FLOAT, &l2, "L2 on the dense kernels (Keras regularizer)", "0.."},
    };
    ex_args a = ex_defaults("flow2d", 110, 256, 1e-4f);
    ex_run run;
    ex_json j;
    gm_flow f;
    gm_flow_config cfg;
    points tr, te;
    gm_batcher b;
    const int *idx;
    float mean[2], sd[2], *xb, *z, *smp, lo, hi;
    double t0, train_s, test_nll, train_nll, gnll, integral = 0;
    long steps_per_epoch;
    int k, i, epoch, mi;
    gm_image panels[4], img;
    char title[128];

    a.samples = 3000;      /* the samples panel */
    a.without = "data dump-samples";   /* synthetic 2-D data (--dataset); 2-D points are no IDX images */
    ex_init(&a, argc, argv, "Normalizing flows (NICE, RealNVP, Glow) on a 2-D density.", extra,
            (int)(sizeof extra / sizeof extra[0]));
    gm_flush_denormals();   /* the L2 term shrinks the nets into float denormals: 10x slower without */
    models[0] = GM_FLOW_NICE; models[1] = GM_FLOW_REALNVP; models[2] = GM_FLOW_GLOW;
    mi = !strcmp(model, "nice") ? 0 : !strcmp(model, "realnvp") ? 1 : 2;

    /* data: standardized with the train statistics, as Keras' Normalization layer */
    if (csv) {
        char p1[EX_PATH], p2[EX_PATH];
        snprintf(p1, sizeof p1, "%s_train.csv", csv);
        snprintf(p2, sizeof p2, "%s_test.csv", csv);
        if (read_csv(p1, &tr) || read_csv(p2, &te)) return 1;
    } else {
        const char *name = !strcmp(dataset, "spirals") ? "2spirals" : dataset;
        if (make_points(name, n_train, a.seed * 2, &tr) || make_points(name, n_test, a.seed * 2 + 1, &te)) return 1;
    }
    gm_standardize_fit(tr.xy, tr.n, 2, mean, sd);
    gm_standardize_apply(tr.xy, tr.n, 2, mean, sd);
    gm_standardize_apply(te.xy, te.n, 2, mean, sd);

    cfg = gm_flow_default_config(models[mi], 2, 1, 1);
    cfg.n_couplings = layers; cfg.hidden = hidden; cfg.depth = depth; cfg.l2 = l2;
    cfg.lr = a.lr; cfg.batch = a.batch; cfg.seed = a.seed;
    if (gm_flow_init(&f, &cfg) != 0) { fprintf(stderr, "flow2d: %s\n", gm_last_error()); return 1; }
    if (a.load && gm_flow_load(&f, a.load) != 0) { fprintf(stderr, "flow2d: %s\n", gm_last_error()); return 1; }
    if (!a.quiet)
        printf("flow2d: %s on %s, %d train / %d test points, %d layers, %zu parameters, %d threads\n", model,
               csv ? csv : dataset, tr.n, te.n, f.nlayers, gm_params_count(&f.params), gm_get_threads());

    /* training */
    xb = (float *)malloc(sizeof(float) * 2 * (size_t)a.batch);
    ex_check_batch(&a, tr.n);   /* before the batcher, which would refuse it less clearly */
    gm_batcher_init(&b, tr.n, a.batch, a.seed, 0);
    steps_per_epoch = (tr.n + a.batch - 1) / a.batch;
    ex_run_begin(&run, &a, ex_total_steps(&a, steps_per_epoch), a.batch, "loss,nll,l2");
    t0 = ex_now();
    for (epoch = 0; run.step < run.total && !ex_interrupted(); epoch++) {
        while (run.step < run.total && !ex_interrupted() && (k = gm_batcher_next(&b, &idx)) > 0) {
            gm_flow_stats st;
            float m[3];
            for (i = 0; i < k; i++) { xb[2 * i] = tr.xy[2 * idx[i]]; xb[2 * i + 1] = tr.xy[2 * idx[i] + 1]; }
            if (gm_flow_train_step(&f, xb, NULL, k, &st) != 0) { fprintf(stderr, "flow2d: %s\n", gm_last_error()); return 1; }
            m[0] = st.loss; m[1] = st.nll; m[2] = st.l2;
            ex_run_step(&run, m);
        }
    }
    train_s = ex_now() - t0;
    ex_run_end(&run);
    snprintf(title, sizeof title, "%s on %s: training objective", model, csv ? "csv" : dataset);
    ex_run_plot(&run, "flow2d_loss.png", title, 0);
    if (a.save && gm_flow_save(&f, a.save) != 0) { fprintf(stderr, "flow2d: %s\n", gm_last_error()); return 1; }

    /* evaluation */
    if (gm_flow_nll(&f, te.xy, te.n, 0, &test_nll, NULL) || gm_flow_nll(&f, tr.xy, tr.n, 0, &train_nll, NULL)) {
        fprintf(stderr, "flow2d: %s\n", gm_last_error());
        return 1;
    }
    gnll = gauss_nll(&tr, &te);
    if (!a.quiet) printf("test NLL %.4f nats/point (train %.4f); full-covariance Gaussian %.4f\n", test_nll, train_nll, gnll);

    /* the picture: data, density, samples, z */
    lo = hi = 0;
    for (i = 0; i < 2 * te.n; i++) { if (te.xy[i] < lo) lo = te.xy[i]; if (te.xy[i] > hi) hi = te.xy[i]; }
    lo = lo - 0.15f * (hi - lo); hi = hi + 0.15f * (hi - lo);
    if (-lo > hi) hi = -lo; else lo = -hi;
    k = a.samples > 0 ? a.samples : 1;
    smp = (float *)malloc(sizeof(float) * 2 * (size_t)k);
    z = (float *)malloc(sizeof(float) * 2 * (size_t)te.n);
    memset(panels, 0, sizeof panels);
    if (scatter(&panels[0], "data (test)", te.xy, te.n, te.lab, te.nlab, lo, hi) || density(&f, &panels[1], lo, hi, &integral) ||
        gm_flow_sample(&f, NULL, k, smp) || scatter(&panels[2], "samples", smp, k, NULL, 0, lo, hi) ||
        gm_flow_encode(&f, te.xy, te.n, z) || scatter(&panels[3], "data -> z", z, te.n, te.lab, te.nlab, -4, 4)) {
        fprintf(stderr, "flow2d: %s\n", gm_last_error());
        return 1;
    }
    if (gm_image_hstack(&img, panels, 4, NULL, 8) == 0) ex_save_png(&a, "flow2d.png", &img);
    for (i = 0; i < 4; i++) gm_image_free(&panels[i]);

    ex_json_init(&j);
    ex_json_str(&j, "model", model);
    ex_json_str(&j, "dataset", csv ? csv : dataset);
    ex_json_num(&j, "epochs", a.steps >= 0 ? (double)run.step / steps_per_epoch : a.epochs);
    ex_json_num(&j, "steps", (double)run.step);
    ex_json_num(&j, "test_nll_nats", test_nll);
    ex_json_num(&j, "train_nll_nats", train_nll);
    ex_json_num(&j, "gauss_fullcov_test_nll_nats", gnll);
    ex_json_num(&j, "density_integral", integral);
    ex_json_num(&j, "final_l2_term", run.step ? run.hist[2][run.step - 1] : 0);
    ex_json_num(&j, "params", (double)gm_params_count(&f.params));
    ex_json_num(&j, "threads", gm_get_threads());
    ex_json_num(&j, "train_s", train_s);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&b);
    gm_flow_free(&f);
    free(xb); free(z); free(smp); free(tr.xy); free(tr.lab); free(te.xy); free(te.lab);
    return 0;
}
