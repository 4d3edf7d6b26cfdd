/* anomaly: anomaly detection with a VAE trained on digits (genmod_vae.h).
 *   cc -O2 -I. examples/anomaly.c -o anomaly -lm -lpthread
 *   ./anomaly --ood /path/to/fashion-mnist      # digits vs clothes (Fashion-MNIST t10k images)
 *   ./anomaly                                   # no --ood: see the fallback below
 * Trains the reference dense VAE on the training digits, scores the test digits (in
 * distribution) and out-of-distribution images with the negative ELBO (--score nelbo, nats) or
 * the reconstruction error (--score recon), and writes out/anomaly_hist.png (both score
 * histograms) and out/anomaly_examples.png (the most and least typical images). The JSON line
 * holds the AUROC (the chance that a random OOD image scores above a random test digit) and the
 * false-positive rate at the threshold that flags 95% of the OOD images.
 * Without --ood the product never reaches for other data: the OOD set is the test digits
 * transformed by --fallback: rotate (90 degrees, the default), invert (1 - x) or noise (uniform
 * pixels). Rotated digits are the hard case: they still look like strokes.
 * --save FILE writes the trained VAE; --load FILE starts from a saved one (the dense reference VAE,
 * as the vae example saves it when no flag changes the model); with --epochs 0 it is only scored. */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_VAE_IMPLEMENTATION
#include "../genmod_vae.h"
#include "common.h"

static void die(const ex_args *a, const char *what) {
    fprintf(stderr, "%s: %s: %s\n", a->name, what, gm_last_error());
    exit(1);
}

/* The fallback OOD set: n test digits transformed, into out (n * 784). */
static void make_fallback(const gm_dataset *te, int n, const char *kind, float *out, unsigned seed) {
    int i, r, c;
    for (i = 0; i < n; i++) {
        const float *x = te->x + (size_t)i * 784;
        float *y = out + (size_t)i * 784;
        for (r = 0; r < 28; r++)
            for (c = 0; c < 28; c++) {
                if (!strcmp(kind, "invert")) y[r * 28 + c] = 1.0f - x[r * 28 + c];
                else if (!strcmp(kind, "noise")) {
                    seed = seed * 1664525u + 1013904223u;
                    y[r * 28 + c] = (float)(seed >> 8) / 16777216.0f;
                } else y[r * 28 + c] = x[c * 28 + (27 - r)];   /* rotate 90 degrees */
            }
    }
}

/* AUROC by ranks: P(score_ood > score_in) + 0.5 P(equal). */
static double auroc(const float *in, int nin, const float *ood, int nood) {
    double wins = 0;
    int i, k;
    for (i = 0; i < nood; i++)
        for (k = 0; k < nin; k++) wins += ood[i] > in[k] ? 1.0 : ood[i] == in[k] ? 0.5 : 0.0;
    return wins / ((double)nin * nood);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Histograms of both score sets over a shared range, drawn as two curves. */
static void histogram(const ex_args *a, const float *in, int nin, const float *ood, int nood, const char *xlabel,
                      const char *ood_name) {
    enum { BINS = 60 };
    float hin[BINS] = {0}, hood[BINS] = {0}, lo = in[0], hi = in[0];
    const float *series[2];
    int lens[2] = {BINS, BINS}, i;
    const char *names[2];
    char title[160];
    gm_plot_opts o = gm_plot_defaults();
    gm_image img;
    float *all = (float *)malloc(sizeof(float) * (nin + nood));
    if (!all) die(a, "out of memory");
    memcpy(all, in, sizeof(float) * nin);
    memcpy(all + nin, ood, sizeof(float) * nood);
    qsort(all, (size_t)(nin + nood), sizeof(float), cmp_float);
    lo = all[0];
    hi = all[(int)(0.99 * (nin + nood - 1))];   /* the top 1% would squash the plot */
    free(all);
    for (i = 0; i < nin; i++) hin[in[i] >= hi ? BINS - 1 : (int)((in[i] - lo) / (hi - lo) * BINS)] += 1.0f / nin;
    for (i = 0; i < nood; i++) hood[ood[i] >= hi ? BINS - 1 : (int)((ood[i] - lo) / (hi - lo) * BINS)] += 1.0f / nood;
    series[0] = hin; series[1] = hood;
    names[0] = "test digits (in distribution)"; names[1] = ood_name;
    snprintf(title, sizeof title, "anomaly scores: digits vs %s", ood_name);
    o.title = title; o.xlabel = xlabel; o.ylabel = "fraction of images";
    o.x_step = (hi - lo) / BINS;
    if (gm_plot_lines(&img, &o, series, lens, names, 2) != 0) die(a, "plot");
    ex_save_png(a, "anomaly_hist.png", &img);
}

/* The 16 lowest- and highest-scoring images of both sets together. */
static void examples(const ex_args *a, const float *x, const float *score, int n) {
    int *order = (int *)malloc(sizeof(int) * n), i, k;
    float *pick = (float *)malloc(sizeof(float) * 784 * 32);
    gm_image p[2], both, big;
    const char *caps[2] = {"most typical", "most anomalous"};
    if (!order || !pick) die(a, "out of memory");
    for (i = 0; i < n; i++) order[i] = i;
    for (i = 1; i < n; i++) {   /* insertion sort by score (n is a few thousand) */
        int v = order[i];
        for (k = i; k > 0 && score[order[k - 1]] > score[v]; k--) order[k] = order[k - 1];
        order[k] = v;
    }
    for (i = 0; i < 16; i++) {
        memcpy(pick + (size_t)i * 784, x + (size_t)order[i] * 784, 784 * sizeof(float));
        memcpy(pick + (size_t)(16 + i) * 784, x + (size_t)order[n - 1 - i] * 784, 784 * sizeof(float));
    }
    if (gm_image_grid(&p[0], pick, 16, 1, 28, 28, 4, 2, 0, 1) != 0 ||
        gm_image_grid(&p[1], pick + 16 * 784, 16, 1, 28, 28, 4, 2, 0, 1) != 0 ||
        gm_image_hstack(&both, p, 2, caps, 8) != 0 || gm_image_upscale(&big, &both, 2) != 0) die(a, "picture");
    gm_image_free(&p[0]); gm_image_free(&p[1]); gm_image_free(&both);
    ex_save_png(a, "anomaly_examples.png", &big);
    free(order);
    free(pick);
}

int main(int argc, char **argv) {
    const char *ood_dir = NULL, *fallback = "rotate", *score_kind = "nelbo";
    int n_ood = 2000, nin, nood, i, kind, flagged = 0;
    ex_args a = ex_defaults("anomaly", 10, 100, 1e-3f);
    ex_opt extra[] = {
        {"ood", EX_STRING, &ood_dir, "folder with out-of-distribution IDX images (t10k-images-idx3-ubyte), e.g. Fashion-MNIST", NULL},
        {"fallback", EX_CHOICE, &fallback, "OOD set when --ood is not given", "rotate|invert|noise"},
        {"score", EX_CHOICE, &score_kind, "anomaly score", "nelbo|recon"},
        {"n-ood", EX_INT, &n_ood, "out-of-distribution images to score", "1.."},
    };
    gm_dataset tr, te, od;
    gm_vae m;
    gm_vae_config cfg = gm_vae_default_config();
    ex_run run;
    ex_json j;
    float *xood, *sin_, *sood, *all, thr;
    double t0 = ex_now(), auc;
    long total, step = 0;
    char ood_name[64];
    a.without = "samples dump-samples";     /* a detector: it draws no samples */
    ex_init(&a, argc, argv, "Anomaly detection with a VAE: digits vs Fashion-MNIST (--ood DIR) or transformed digits.",
            extra, (int)(sizeof extra / sizeof extra[0]));
    if (gm_mnist_load(&tr, &te, a.data_dir, 0, 0, 0.0f, 1.0f) != 0) die(&a, "data");
    ex_check_batch(&a, tr.n);
    kind = !strcmp(score_kind, "recon") ? GM_VAE_SCORE_RECON : GM_VAE_SCORE_NELBO;
    nin = te.n;
    memset(&od, 0, sizeof od);
    if (ood_dir) {
        char path[EX_PATH];
        snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", ood_dir);
        if (gm_idx_load(&od, path, NULL, n_ood, 0.0f, 1.0f) != 0) die(&a, "--ood");
        if (od.n < n_ood) { fprintf(stderr, "anomaly: --n-ood %d: %s holds only %d images\n", n_ood, path, od.n); return 2; }
        nood = od.n;
        xood = od.x;
        snprintf(ood_name, sizeof ood_name, "%s", strstr(ood_dir, "fashion") ? "Fashion-MNIST" : "OOD images");
    } else {
        if (n_ood > te.n) { fprintf(stderr, "anomaly: --n-ood %d: the fallback transforms test digits, and there are %d\n", n_ood, te.n); return 2; }
        nood = n_ood;
        xood = (float *)malloc(sizeof(float) * 784 * nood);
        if (!xood) die(&a, "out of memory");
        make_fallback(&te, nood, fallback, xood, (unsigned)a.seed);
        snprintf(ood_name, sizeof ood_name, "%s digits (fallback)", !strcmp(fallback, "rotate") ? "rotated"
                 : !strcmp(fallback, "invert") ? "inverted" : "noise, not");
        if (!a.quiet) printf("anomaly: no --ood given: the out-of-distribution set is %s\n", ood_name);
    }
    cfg.lr = a.lr; cfg.batch = a.batch; cfg.seed = a.seed;
    if (gm_vae_init(&m, &cfg) != 0) die(&a, "model");
    if (a.load && gm_vae_load(&m, a.load) != 0) die(&a, "load");
    total = ex_total_steps(&a, (tr.n + a.batch - 1) / a.batch);
    ex_run_begin(&run, &a, total, a.batch, "loss,recon,kl");
    {
        gm_batcher b;
        const int *idx;
        int k;
        float *xb = (float *)malloc(sizeof(float) * 784 * a.batch);
        if (!xb || gm_batcher_init(&b, tr.n, a.batch, a.seed, 0) != 0) die(&a, "batcher");
        while (step < total && !ex_interrupted()) {
            gm_vae_stats st;
            float mt[3];
            if ((k = gm_batcher_next(&b, &idx)) == 0) continue;
            gm_dataset_gather(&tr, idx, k, xb, NULL);
            if (gm_vae_train_step(&m, xb, NULL, k, &st) != 0) die(&a, "training");
            mt[0] = st.loss; mt[1] = st.recon; mt[2] = st.kl;
            ex_run_step(&run, mt);
            step++;
        }
        gm_batcher_free(&b);
        free(xb);
    }
    ex_run_end(&run);
    if (a.save && gm_vae_save(&m, a.save) != 0) die(&a, "save");
    sin_ = (float *)malloc(sizeof(float) * nin);
    sood = (float *)malloc(sizeof(float) * nood);
    all = (float *)malloc(sizeof(float) * 784 * (nin + nood));
    if (!sin_ || !sood || !all) die(&a, "out of memory");
    if (gm_vae_score(&m, te.x, NULL, nin, kind, sin_) != 0 || gm_vae_score(&m, xood, NULL, nood, kind, sood) != 0)
        die(&a, "score");
    auc = auroc(sin_, nin, sood, nood);
    memcpy(all, sood, sizeof(float) * nood);   /* threshold flagging 95% of the OOD images */
    qsort(all, (size_t)nood, sizeof(float), cmp_float);
    thr = all[(int)(0.05 * (nood - 1))];
    for (i = 0; i < nin; i++) flagged += sin_[i] >= thr;
    if (!a.quiet)
        printf("AUROC %.4f; at the threshold that flags 95%% of the %s, %.1f%% of test digits are flagged\n", auc, ood_name,
               100.0 * flagged / nin);
    histogram(&a, sin_, nin, sood, nood, kind == GM_VAE_SCORE_NELBO ? "negative ELBO (nats)" : "squared reconstruction error",
              ood_name);
    memcpy(all, te.x, sizeof(float) * 784 * nin);
    memcpy(all + (size_t)784 * nin, xood, sizeof(float) * 784 * nood);
    {
        float *sc = (float *)malloc(sizeof(float) * (nin + nood));
        if (!sc) die(&a, "out of memory");
        memcpy(sc, sin_, sizeof(float) * nin);
        memcpy(sc + nin, sood, sizeof(float) * nood);
        examples(&a, all, sc, nin + nood);
        free(sc);
    }
    ex_json_init(&j);
    ex_json_str(&j, "model", "vae_anomaly");
    ex_json_str(&j, "data", a.data_dir);
    ex_json_str(&j, "ood", ood_dir ? ood_dir : fallback);
    ex_json_str(&j, "score", score_kind);
    ex_json_num(&j, "steps", (double)run.step);   /* done: --minutes or Ctrl-C may end training early */
    ex_json_num(&j, "n_in", nin);
    ex_json_num(&j, "n_ood", nood);
    ex_json_num(&j, "auroc", auc);
    ex_json_num(&j, "fpr_at_95_tpr", (double)flagged / nin);
    ex_json_num(&j, "wall_s", ex_now() - t0);
    ex_json_print(&j);
    if (!ood_dir) free(xood);
    free(sin_); free(sood); free(all);
    ex_run_free(&run);
    gm_vae_free(&m);
    gm_dataset_free(&tr);
    gm_dataset_free(&te);
    gm_dataset_free(&od);
    return 0;
}
