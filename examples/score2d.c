/* score2d.c: a score-based model on a 2-D toy: denoising score matching over noise levels, then
 * annealed Langevin dynamics to sample.
 *
 *   cc -O2 -I. examples/score2d.c -o build/score2d -lm -lpthread
 *   ./build/score2d                          # 8 Gaussians, 3000 steps, PNGs in out/
 *   ./build/score2d --toy checkerboard --steps 5000
 *   ./build/score2d --save s.safetensors     # then: --load s.safetensors --steps 0
 *
 * Writes
 *   score2d_field.png    per noise level (largest, middle, smallest): the learned score s(x, sigma)
 *                        as arrows over the true density (a histogram of 100,000 data points)
 *   score2d_samples.png  data (grey) and Langevin samples (colour)
 *   score2d_loss.png     the training loss
 * and, on the 8 Gaussians, the modes covered and the fraction of high-quality samples (within 3
 * std of a mode). The model: gm_score (genmod_diffusion.h), an MLP of 128 x 3 with SiLU and the
 * noise level's sinusoidal embedding added in every layer, 10 levels from 3 to 0.01. */
#include "png.h"
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_DIFFUSION_IMPLEMENTATION
#include "../genmod_diffusion.h"
#define GENMOD_GAN_IMPLEMENTATION
#include "../genmod_gan.h"
#include "common.h"

#define NDATA 8192
#define NDENS 100000
#define NSHOW 2000
#define PIX 360          /* one panel */
#define ARROWS 21        /* per side */
#define RANGE 3.0f

static void put(gm_image *im, int x, int y, const unsigned char c[3]) {
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
    memcpy(im->rgb + 3 * ((size_t)y * im->w + x), c, 3);
}

static void line(gm_image *im, float x0, float y0, float x1, float y1, const unsigned char c[3]) {
    int k, n = (int)(fabsf(x1 - x0) + fabsf(y1 - y0)) + 1;
    for (k = 0; k <= n; k++) put(im, (int)(x0 + (x1 - x0) * k / n + 0.5f), (int)(y0 + (y1 - y0) * k / n + 0.5f), c);
}

/* Data coordinates to panel pixels (y up). */
static float px(float x) { return (x + RANGE) / (2 * RANGE) * PIX; }
static float py(float y) { return (RANGE - y) / (2 * RANGE) * PIX; }

/* An arrow from (x, y) along (dx, dy) pixels, with a two-stroke head. */
static void arrow(gm_image *im, float x, float y, float dx, float dy, const unsigned char c[3]) {
    float len = sqrtf(dx * dx + dy * dy), ux, uy;
    if (len < 1) { put(im, (int)x, (int)y, c); return; }
    ux = dx / len; uy = dy / len;
    line(im, x, y, x + dx, y + dy, c);
    line(im, x + dx, y + dy, x + dx - 4 * ux + 3 * uy, y + dy - 4 * uy - 3 * ux, c);
    line(im, x + dx, y + dy, x + dx - 4 * ux - 3 * uy, y + dy - 4 * uy + 3 * ux, c);
}

/* One panel: the density as colour (log of a histogram), the score at `level` as arrows scaled so
   the longest is 1.4 cells long. */
static int field_panel(gm_image *im, gm_score *m, const float *dens, int level) {
    static float pts[2 * ARROWS * ARROWS], sc[2 * ARROWS * ARROWS];
    static const unsigned char white[3] = {255, 255, 255};
    float mx = 0, cell = (float)PIX / ARROWS, title_sigma = m->sigmas[level];
    char title[64];
    int i, j;
    if (gm_image_new(im, PIX, PIX, 0, 0, 0) != 0) return -1;
    for (j = 0; j < PIX; j++)
        for (i = 0; i < PIX; i++) {
            unsigned char c[3];
            gm_colormap(dens[j * PIX + i], c);
            put(im, i, j, c);
        }
    for (j = 0; j < ARROWS; j++)
        for (i = 0; i < ARROWS; i++) {
            pts[2 * (j * ARROWS + i)] = -RANGE + 2 * RANGE * (i + 0.5f) / ARROWS;
            pts[2 * (j * ARROWS + i) + 1] = RANGE - 2 * RANGE * (j + 0.5f) / ARROWS;
        }
    if (gm_score_field(m, pts, ARROWS * ARROWS, level, sc) != 0) return -1;
    for (i = 0; i < ARROWS * ARROWS; i++) mx = fmaxf(mx, sqrtf(sc[2 * i] * sc[2 * i] + sc[2 * i + 1] * sc[2 * i + 1]));
    for (i = 0; i < ARROWS * ARROWS && mx > 0; i++)
        arrow(im, px(pts[2 * i]), py(pts[2 * i + 1]), 1.4f * cell * sc[2 * i] / mx, -1.4f * cell * sc[2 * i + 1] / mx, white);
    snprintf(title, sizeof title, "sigma %.3g", (double)title_sigma);
    gm_image_text(im, 6, 6, title, 2, 255, 255, 255);
    return 0;
}

/* The density of NDENS data points as a log-histogram on the panel's pixels, scaled to [0, 1]. */
static void density(const char *toy, unsigned long seed, float *dens) {
    float *xy = (float *)malloc(sizeof(float) * 2 * NDENS), mx = 0;
    int i;
    memset(dens, 0, sizeof(float) * PIX * PIX);
    if (!xy || gm_toy2d(toy, NDENS, seed + 7, -1, xy, NULL) != 0) { free(xy); return; }
    for (i = 0; i < NDENS; i++) {
        int x = (int)px(xy[2 * i]), y = (int)py(xy[2 * i + 1]), dx, dy;
        for (dy = -2; dy <= 2; dy++)   /* a small box blur, so thin modes show */
            for (dx = -2; dx <= 2; dx++)
                if (x + dx >= 0 && x + dx < PIX && y + dy >= 0 && y + dy < PIX) dens[(y + dy) * PIX + x + dx] += 1;
    }
    for (i = 0; i < PIX * PIX; i++) mx = fmaxf(mx, dens[i] = logf(1 + dens[i]));
    for (i = 0; i < PIX * PIX && mx > 0; i++) dens[i] = 0.15f + 0.85f * dens[i] / mx;
    free(xy);
}

static int save_field(const ex_args *a, gm_score *m, const char *toy) {
    static float dens[PIX * PIX];
    gm_image panels[3], all;
    int k, lv[3], rc;
    lv[0] = 0; lv[1] = m->cfg.levels / 2; lv[2] = m->cfg.levels - 1;
    density(toy, a->seed, dens);
    for (k = 0; k < 3; k++)
        if (field_panel(&panels[k], m, dens, lv[k]) != 0) {
            while (k >= 0) gm_image_free(&panels[k--]);
            fprintf(stderr, "%s: %s\n", a->name, gm_last_error());
            return -1;
        }
    rc = gm_image_hstack(&all, panels, 3, NULL, 6);
    for (k = 0; k < 3; k++) gm_image_free(&panels[k]);
    if (rc != 0) { fprintf(stderr, "%s: %s\n", a->name, gm_last_error()); return -1; }
    return ex_save_png(a, "score2d_field.png", &all);
}

static int save_samples(const ex_args *a, const float *data, const float *smp) {
    static float xy[4 * NSHOW];
    static int lab[2 * NSHOW];
    static const char *names[2] = {"data", "Langevin samples"};
    gm_plot_opts o = gm_plot_defaults();
    gm_image img;
    int i;
    memcpy(xy, data, sizeof(float) * 2 * NSHOW);
    memcpy(xy + 2 * NSHOW, smp, sizeof(float) * 2 * NSHOW);
    for (i = 0; i < 2 * NSHOW; i++) lab[i] = i >= NSHOW;
    o.title = "annealed Langevin samples";
    o.fixed_x = o.fixed_y = 1; o.x0 = o.y0 = -RANGE; o.x1 = o.y1 = RANGE; o.w = o.h = 560;
    if (gm_plot_scatter(&img, &o, xy, 2 * NSHOW, lab, 2, names) != 0) { fprintf(stderr, "%s\n", gm_last_error()); return -1; }
    return ex_save_png(a, "score2d_samples.png", &img);
}

int main(int argc, char **argv) {
    static float data[2 * NDATA], batch[2 * 1024], smp[2 * NSHOW];
    const char *toy = "8gaussians";
    int levels = 10, lsteps = 100, hidden = 128, i, k, rc = 0, modes = -1;
    float smin = 0.01f, smax = 3.0f, hq = 0, loss = 0;
    ex_opt extra[] = {
        {"toy", EX_STRING, &toy, "2-D dataset (moons circles 8gaussians checkerboard pinwheel 2spirals swissroll)", NULL},
        {"levels", EX_INT, &levels, "noise levels", "1..100"},
        {"sigma-min", EX_FLOAT, &smin, "smallest noise level", "0.0001.."},
        {"sigma-max", EX_FLOAT, &smax, "largest noise level", "0.0001.."},
        {"langevin-steps", EX_INT, &lsteps, "Langevin steps per level", "1..10000"},
        {"hidden", EX_INT, &hidden, "MLP width", "1..4096"},
    };
    ex_args a = ex_defaults("score2d", 1, 256, 3e-3f);
    gm_score_config c;
    gm_score m;
    gm_score_stats st;
    gm_batcher b;
    ex_run run;
    ex_json j;
    const int *idx;
    double t0, train_s = 0, sample_s;
    long target;
    a.steps = 3000;
    a.without = "samples dump-samples data epochs";   /* a synthetic toy, --steps its budget; the mode metrics use a fixed sample count */
    ex_init(&a, argc, argv, "Score-based model on a 2-D toy: denoising score matching, annealed Langevin sampling.", extra, 6);
    if (gm_toy2d(toy, NDATA, a.seed, -1, data, NULL) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 2; }
    c = gm_score_default_config(2);
    c.hidden = hidden; c.levels = levels; c.sigma_min = smin; c.sigma_max = smax; c.langevin_steps = lsteps;
    c.lr = a.lr; c.batch = a.batch; c.seed = a.seed;
    if (gm_score_init(&m, &c) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 2; }
    if (a.load && gm_score_load(&m, a.load) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); gm_score_free(&m); return 1; }
    ex_check_batch(&a, NDATA);
    if (gm_batcher_init(&b, NDATA, a.batch, a.seed, 1) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); return 1; }
    target = m.step + a.steps;
    ex_run_begin(&run, &a, a.steps, a.batch, "loss");
    t0 = ex_now();
    while (m.step < target && rc == 0 && !ex_interrupted()) {
        if ((k = gm_batcher_next(&b, &idx)) == 0) continue;
        for (i = 0; i < k; i++) { batch[2 * i] = data[2 * idx[i]]; batch[2 * i + 1] = data[2 * idx[i] + 1]; }
        if ((rc = gm_score_train_step(&m, batch, NULL, k, &st)) != 0) { fprintf(stderr, "%s: %s\n", a.name, gm_last_error()); break; }
        loss = st.loss;
        ex_run_step(&run, &st.loss);
    }
    train_s = ex_now() - t0;
    ex_run_end(&run);
    if (rc == 0 && a.save) {
        if ((rc = gm_score_save(&m, a.save)) != 0) fprintf(stderr, "%s: %s\n", a.name, gm_last_error());
        else if (!a.quiet) printf("wrote %s\n", a.save);
    }
    if (a.steps > 0) ex_run_plot(&run, "score2d_loss.png", "denoising score matching loss", 0);
    t0 = ex_now();
    if (rc == 0 && (rc = gm_score_sample(&m, NULL, NSHOW, smp)) != 0) fprintf(stderr, "%s: %s\n", a.name, gm_last_error());
    sample_s = ex_now() - t0;
    if (rc == 0) {
        if (strcmp(toy, "8gaussians") == 0) {
            modes = gm_ring_modes(smp, NSHOW, 8, 2.0f, 0.02f, 10, &hq);
            if (!a.quiet) printf("%d of 8 modes, %.1f%% high quality (within 3 std = 0.06)\n", modes, 100 * hq);
        }
        if (save_field(&a, &m, toy) != 0 || save_samples(&a, data, smp) != 0) rc = -1;
    }
    ex_json_init(&j);
    ex_json_str(&j, "model", "score2d");
    ex_json_str(&j, "toy", toy);
    ex_json_num(&j, "steps", (double)m.step);
    ex_json_num(&j, "final_loss", loss);
    ex_json_num(&j, "train_seconds", train_s);
    ex_json_num(&j, "sample_seconds", sample_s);
    if (modes >= 0) { ex_json_num(&j, "modes", modes); ex_json_num(&j, "hq", hq); }
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&b);
    gm_score_free(&m);
    return rc == 0 ? 0 : 1;
}
