/* flow_images: NICE, RealNVP or Glow on MNIST digits. Uniform dequantization and the logit
 * pre-transform (its log-det counted) give an exact bits/dim on the test set; --dequant
 * variational learns q(u|x) instead (a small conditional flow) and reports the bound it trains,
 * -E_q[log p(x + u) - log q(u|x)] in bits/dim, an upper bound on the exact figure. The learning
 * rate warms up linearly over --warmup steps, then (--schedule cosine) decays to 1% of --lr over
 * the step budget. Writes sample grids at several temperatures (and one larger grid at T = 0.7),
 * interpolations between test digits in z, and the loss curve.
 * --save FILE writes the trained flow; --load FILE --steps 0 only draws the pictures of a saved one.
 *
 * Default: Glow, 2 levels x FLOW_GLOW_STEPS steps, ResNet s/t nets of 32 filters (the best of the
 * configurations measured at equal CPU time on full MNIST: docs/notes/FLOW_NOTES.md). Default
 * budget, when none of --steps, --epochs, --minutes is given: FLOW_HOUR_STEPS steps on full MNIST
 * (60,000 training images: ~70 minutes of one core, within an hour of two; a step count, not a
 * time, so the same model at any thread count and load), and FLOW_SMALL_EPOCHS epochs on a
 * smaller set (the bundled 10,000 digits: 468 steps, ~2 minutes).
 *
 *   cc -O2 -I. examples/flow_images.c -o flow_images -lm -lpthread
 *   ./flow_images                                    # bundled digits, ~2 minutes
 *   ./flow_images --data MNIST --save glow.safetensors     # full MNIST: the hour's budget
 *   ./flow_images --model realnvp --steps 1000 --schedule constant   # the earlier RealNVP recipe */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_FLOW_IMPLEMENTATION
#include "../genmod_flow.h"
#include "common.h"

#define NTEMPS 4
#define NINTERP 6
#define ISTEPS 10
#define FLOW_GLOW_STEPS 8        /* Glow steps per level by default (the header's recipe has 4) */
#define FLOW_HOUR_STEPS 14000L   /* default budget on full MNIST: fits one hour of 2 cores (FLOW_NOTES) */
#define FLOW_SMALL_EPOCHS 3      /* default budget on a smaller set: the bundled 10k digits, ~2 minutes */

int main(int argc, char **argv) {
    const char *model = "glow", *dequant = "uniform", *schedule = "cosine";
    int warmup = 200;
    int scales = 2, fsteps = 0, filters = 0, blocks = 1, hidden = 0, n_train = 60000, n_test = 10000;   /* all of both files */
    float alpha = 0.05f;
    static const float temps[NTEMPS] = {0.5f, 0.7f, 0.85f, 1.0f};
    ex_opt extra[] = {
        {"model", EX_CHOICE, &model, "flow", "nice|realnvp|glow"},
        {"scales", EX_INT, &scales, "RealNVP scales / Glow levels", "1..4"},
        {"flow-steps", EX_INT, &fsteps, "Glow steps per level / RealNVP couplings per stage (0: model default)", "0..32"},
        {"filters", EX_INT, &filters, "channels of the conv s/t nets (0: model default)", "0..512"},
        {"blocks", EX_INT, &blocks, "residual blocks of the conv s/t nets", "0..8"},
        {"hidden", EX_INT, &hidden, "NICE: width of the dense nets (0: default)", "0..4096"},
        {"alpha", EX_FLOAT, &alpha, "logit pre-transform: logit(a + (1-2a) x)", "0..0.49"},
        {"n-train", EX_INT, &n_train, "training images (at most the file's; default all)", "1..60000"},
        {"n-test", EX_INT, &n_test, "test images for bits/dim (at most the file's; default all)", "1..10000"},
        {"dequant", EX_CHOICE, &dequant, "dequantization: uniform noise, or a learned q(u|x) (reports a bound)",
         "uniform|variational"},
        {"warmup", EX_INT, &warmup, "learning-rate warm-up steps (linear from 0)", "0.."},
        {"schedule", EX_CHOICE, &schedule,
         "learning rate after the warm-up: cosine decay to lr/100 over the step budget, or constant "
         "(also when only --minutes bounds the run)", "cosine|constant"},
    };
    ex_args a = ex_defaults("flow_images", FLOW_SMALL_EPOCHS, 64, 1e-3f);
    ex_run run;
    ex_json j;
    gm_dataset train, test;
    gm_flow f;
    gm_flow_config cfg;
    gm_batcher b;
    const int *idx;
    float *xb, *smp, *ip;
    double t0, train_s, nll, bpd;
    long steps_per_epoch, nan_skips = 0;
    int k, i, mi, models[3], nsmp, time_only;
    gm_image panels[NTEMPS], img;
    char caps[NTEMPS][32], about[400];
    const char *capp[NTEMPS];

    a.samples = 40;   /* per temperature panel */
    snprintf(about, sizeof about,
             "Normalizing flows on MNIST digits: samples, bits/dim, interpolations.\n"
             "Budget when none of --steps, --epochs, --minutes is given: %ld steps on full MNIST (60,000 training\n"
             "images; within an hour of 2 cores), --epochs on smaller sets (the bundled digits: ~2 minutes).",
             FLOW_HOUR_STEPS);
    ex_init(&a, argc, argv, about, extra, (int)(sizeof extra / sizeof extra[0]));
    gm_flush_denormals();
    models[0] = GM_FLOW_NICE; models[1] = GM_FLOW_REALNVP; models[2] = GM_FLOW_GLOW;
    mi = !strcmp(model, "nice") ? 0 : !strcmp(model, "realnvp") ? 1 : 2;
    ex_requires(&a, argc, argv, "hidden", mi == 0, "with --model nice (the others use conv nets: --filters)");
    if (gm_mnist_load(&train, &test, a.data_dir, n_train, n_test, 0.0f, 1.0f) != 0) {
        fprintf(stderr, "flow_images: %s\n", gm_last_error());
        return 1;
    }
    ex_check_batch(&a, train.n);
    cfg = gm_flow_default_config(models[mi], 1, 28, 28);
    cfg.n_scales = scales; cfg.blocks = blocks; cfg.logit_alpha = alpha;
    if (fsteps > 0) cfg.steps = fsteps;
    else if (mi == 2) cfg.steps = FLOW_GLOW_STEPS;
    cfg.filters = filters > 0 ? filters : (mi == 1 ? 16 : 32);
    if (hidden > 0) cfg.hidden = hidden;
    cfg.lr = a.lr; cfg.batch = a.batch; cfg.seed = a.seed; cfg.warmup = warmup;
    cfg.dequantize = strcmp(dequant, "variational") == 0 ? GM_FLOW_DEQ_VARIATIONAL : GM_FLOW_DEQ_UNIFORM;
    if (gm_flow_init(&f, &cfg) != 0) {     /* the model is the flags': a model that cannot be built is a bad command line */
        fprintf(stderr, "flow_images: --model %s --scales %d --flow-steps %d --filters %d --blocks %d: %s\n", model, scales,
                cfg.steps, cfg.filters, blocks, gm_last_error());
        return 2;
    }
    /* The budget: what was given, else the stated default for the data's size. --minutes alone
       trains until the time is up (the step count is then unknown, so the rate stays constant). */
    time_only = !ex_given(argc, argv, "steps") && !ex_given(argc, argv, "epochs") && a.minutes > 0;
    if (time_only) a.steps = 1000000000L;
    else if (!ex_given(argc, argv, "steps") && !ex_given(argc, argv, "epochs") && train.n >= 60000)
        a.steps = FLOW_HOUR_STEPS;   /* smaller sets: the --epochs default, FLOW_SMALL_EPOCHS */
    steps_per_epoch = train.n / a.batch > 0 ? train.n / a.batch : 1;
    if (strcmp(schedule, "cosine") == 0 && !time_only) {
        /* set before --load: a loaded flow resumes the schedule it was saved with */
        f.opt.sched.kind = GM_LR_COSINE;
        f.opt.sched.total = ex_total_steps(&a, steps_per_epoch);
        f.opt.sched.min_lr = a.lr / 100;
    }
    if (a.load && gm_flow_load(&f, a.load) != 0) { fprintf(stderr, "flow_images: %s\n", gm_last_error()); return 1; }
    if (!a.quiet)
        printf("flow_images: %s, %d layers, %zu parameters, %d train / %d test images, %d threads\n", model, f.nlayers,
               gm_params_count(&f.params), train.n, test.n, gm_get_threads());

    xb = (float *)malloc(sizeof(float) * 784 * (size_t)a.batch);
    gm_batcher_init(&b, train.n, a.batch, a.seed, 1);
    ex_run_begin(&run, &a, ex_total_steps(&a, steps_per_epoch), a.batch, "nll,bpd");
    t0 = ex_now();
    while (run.step < run.total && !ex_interrupted()) {
        while (run.step < run.total && !ex_interrupted() && (k = gm_batcher_next(&b, &idx)) > 0) {
            gm_flow_stats st;
            float m[2];
            gm_dataset_gather(&train, idx, k, xb, NULL);
            if (gm_flow_train_step(&f, xb, NULL, k, &st) != 0) {
                /* A NaN loss leaves the flow untouched: skip that batch (a long default run is not
                   lost to one bad batch), but stop if it keeps happening. */
                if (strstr(gm_last_error(), "NaN") && ++nan_skips <= 10) {
                    fprintf(stderr, "flow_images: step %ld skipped (%s)\n", run.step + 1, gm_last_error());
                    continue;
                }
                fprintf(stderr, "flow_images: %s\n", gm_last_error());
                return 1;
            }
            m[0] = st.nll;
            m[1] = (float)((st.nll + 784 * log(256.0)) / (784 * log(2.0)));
            ex_run_step(&run, m);
        }
    }
    train_s = ex_now() - t0;
    ex_run_end(&run);
    ex_run_plot(&run, "flow_images_loss.png", "flow on digits: training NLL (nats) and bits/dim", 1);
    if (a.save && gm_flow_save(&f, a.save) != 0) { fprintf(stderr, "flow_images: %s\n", gm_last_error()); return 1; }

    if (gm_flow_nll(&f, test.x, test.n, 1, &nll, &bpd) != 0) { fprintf(stderr, "flow_images: %s\n", gm_last_error()); return 1; }
    if (!a.quiet)
        printf("test: %.2f nats/image, %.4f bits/dim (%d images, %s, logit counted)\n", nll, bpd, test.n,
               cfg.dequantize == GM_FLOW_DEQ_VARIATIONAL ? "variational bound, one u per image" : "dequantized");

    /* samples at several temperatures, one panel each (--samples per panel); then 100 at T = 0.7,
       the temperature flows are usually shown at, in a grid of their own */
    nsmp = a.samples > 100 ? a.samples : 100;
    smp = (float *)malloc(sizeof(float) * 784 * (size_t)nsmp);
    memset(panels, 0, sizeof panels);
    for (i = 0; i < NTEMPS && a.samples > 0; i++) {
        snprintf(caps[i], sizeof caps[i], "T = %.2f", (double)temps[i]);
        capp[i] = caps[i];
        if (gm_flow_sample_temperature(&f, NULL, a.samples, temps[i], smp) != 0 ||
            ex_digit_grid(&panels[i], smp, a.samples, 8, 0, 1) != 0) {
            fprintf(stderr, "flow_images: %s\n", gm_last_error());
            return 1;
        }
    }
    if (a.samples > 0) {
        if (gm_image_hstack(&img, panels, NTEMPS, capp, 10) == 0) ex_save_png(&a, "flow_images_samples.png", &img);
        for (i = 0; i < NTEMPS; i++) gm_image_free(&panels[i]);
        if (ex_dump_samples(&a, smp, a.samples, 28, 28, 0, 1) != 0) return 1;   /* the last panel's, T = 1 */
        if (gm_flow_sample_temperature(&f, NULL, 100, 0.7f, smp) != 0 || ex_digit_grid(&img, smp, 100, 10, 0, 1) != 0) {
            fprintf(stderr, "flow_images: %s\n", gm_last_error());
            return 1;
        }
        ex_save_png(&a, "flow_images_samples_t07.png", &img);
    }

    /* interpolations: rows between pairs of test digits */
    ip = (float *)malloc(sizeof(float) * 784 * NINTERP * ISTEPS);
    for (i = 0; i < NINTERP; i++)
        if (gm_flow_interpolate(&f, test.x + (size_t)(2 * i) * 784, test.x + (size_t)(2 * i + 1) * 784, ISTEPS,
                                ip + (size_t)i * ISTEPS * 784) != 0) {
            fprintf(stderr, "flow_images: %s\n", gm_last_error());
            return 1;
        }
    if (ex_digit_grid(&img, ip, NINTERP * ISTEPS, ISTEPS, 0, 1) == 0) ex_save_png(&a, "flow_images_interp.png", &img);

    ex_json_init(&j);
    ex_json_str(&j, "model", model);
    ex_json_num(&j, "steps", (double)run.step);
    ex_json_num(&j, "batch", a.batch);
    ex_json_num(&j, "test_nll_nats", nll);
    ex_json_num(&j, "test_bpd", bpd);
    ex_json_str(&j, "dequant", dequant);
    ex_json_str(&j, "schedule", time_only ? "constant" : schedule);
    ex_json_num(&j, "flow_steps", cfg.steps);
    ex_json_num(&j, "filters", cfg.filters);
    ex_json_num(&j, "nan_skips", (double)nan_skips);
    ex_json_num(&j, "n_test", test.n);
    ex_json_num(&j, "params", (double)gm_params_count(&f.params));
    ex_json_num(&j, "layers", f.nlayers);
    ex_json_num(&j, "train_s", train_s);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&b);
    gm_flow_free(&f);
    gm_dataset_free(&train); gm_dataset_free(&test);
    free(xb); free(smp); free(ip);
    return 0;
}
