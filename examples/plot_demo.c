/* plot_demo: draws one of each picture type from synthetic data, to look at the output.
 *   cc -O2 -I. examples/plot_demo.c -o plot_demo -lm -lpthread && ./plot_demo [outdir]
 * Writes out/demo_*.png. */
#include "png.h"   /* PNG writing: stb_image_write, compiled before genmod */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#include <stdlib.h>
#include <string.h>
#include <math.h>

static unsigned long demo_state = 12345;
static float demo_uniform(void) {
    demo_state = demo_state * 6364136223846793005UL + 1442695040888963407UL;
    return (float)((demo_state >> 33) & 0xffffff) / 16777216.0f;
}
static float demo_normal(void) {
    float u = demo_uniform() + 1e-7f, v = demo_uniform();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static int save(const char *dir, const char *name, gm_image *img) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (gm_image_write_png(path, img) != 0) { fprintf(stderr, "%s\n", gm_last_error()); return -1; }
    printf("wrote %s (%d x %d)\n", path, img->w, img->h);
    gm_image_free(img);
    return 0;
}

/* 28x28 "digit-like" strokes: a ring or a bar with some noise, in [0, 1]. */
static void fake_digit(float *x, int k, float blur) {
    int i, j;
    float cx = 14 + demo_normal(), cy = 14 + demo_normal(), r = 6 + (k % 3);
    for (i = 0; i < 28; i++)
        for (j = 0; j < 28; j++) {
            float dx = j - cx, dy = i - cy, d = (k % 2) ? fabsf(sqrtf(dx*dx + dy*dy) - r) : fabsf(dx - dy * 0.3f * (k % 5 - 2));
            float v = expf(-d * d / (2.0f * blur * blur));
            if (!(k % 2) && fabsf(dy) > 9) v = 0;
            x[i * 28 + j] = v;
        }
}

static int demo_grids(const char *dir) {
    int n = 40, k;
    float *a = (float *)malloc(sizeof(float) * 28 * 28 * n), *b = (float *)malloc(sizeof(float) * 28 * 28 * n);
    gm_image ga, gb, panels[2], st, big;
    const char *caps[2] = {"data", "reconstruction"};
    for (k = 0; k < n; k++) { fake_digit(a + k * 784, k, 1.0f); fake_digit(b + k * 784, k, 2.2f); }
    a[5 * 784 + 14 * 28 + 14] = NAN;   /* shows the NaN colour */
    if (gm_image_grid(&ga, a, n, 1, 28, 28, 10, 2, 0, 1) || gm_image_grid(&gb, b, n, 1, 28, 28, 10, 2, 0, 1)) return -1;
    if (gm_image_upscale(&big, &ga, 2) || save(dir, "demo_grid.png", &big)) return -1;
    panels[0] = ga; panels[1] = gb;
    if (gm_image_hstack(&st, panels, 2, caps, 8) || save(dir, "demo_hstack.png", &st)) return -1;
    if (gm_image_vstack(&st, panels, 2, caps, 8) || save(dir, "demo_vstack.png", &st)) return -1;
    gm_image_free(&ga); gm_image_free(&gb);
    free(a); free(b);
    return 0;
}

static int demo_rgb_grid(const char *dir) {
    int n = 16, k, c, i, j;
    float *x = (float *)malloc(sizeof(float) * 3 * 32 * 32 * n);
    gm_image g, big;
    for (k = 0; k < n; k++)
        for (c = 0; c < 3; c++)
            for (i = 0; i < 32; i++)
                for (j = 0; j < 32; j++)
                    x[((k * 3 + c) * 32 + i) * 32 + j] = -1 + 2 * (0.5f + 0.5f * sinf(0.2f * (i * (c + 1) + j * (k % 4 + 1)) + k));
    if (gm_image_grid(&g, x, n, 3, 32, 32, 0, 2, -1, 1) || gm_image_upscale(&big, &g, 3)) return -1;
    gm_image_free(&g);
    free(x);
    return save(dir, "demo_grid_rgb.png", &big);
}

static int demo_scatter(const char *dir) {
    int n = 5000, i;
    float *xy = (float *)malloc(sizeof(float) * 2 * n);
    int *lab = (int *)malloc(sizeof(int) * n);
    gm_plot_opts o = gm_plot_defaults();
    gm_image img;
    for (i = 0; i < n; i++) {
        int k = i % 10;
        float a = 6.2831853f * k / 10;
        lab[i] = k;
        xy[2 * i] = 3 * cosf(a) + 0.6f * demo_normal();
        xy[2 * i + 1] = 3 * sinf(a) + 0.6f * demo_normal();
    }
    xy[0] = NAN;
    o.title = "VAE latent space (test set)";
    o.xlabel = "z1"; o.ylabel = "z2";
    if (gm_plot_scatter(&img, &o, xy, n, lab, 10, NULL)) { fprintf(stderr, "%s\n", gm_last_error()); return -1; }
    free(xy); free(lab);
    return save(dir, "demo_scatter.png", &img);
}

static int demo_scatter2(const char *dir) {
    int n = 2000, i;
    float *xy = (float *)malloc(sizeof(float) * 2 * n);
    int *lab = (int *)malloc(sizeof(int) * n);
    const char *names[2] = {"data", "generated"};
    gm_plot_opts o = gm_plot_defaults();
    gm_image img;
    for (i = 0; i < n; i++) {
        float t = 3.14159265f * demo_uniform();
        int k = i % 2, up = (i / 2) % 2;
        lab[i] = k;
        xy[2 * i] = (up ? cosf(t) : 1 - cosf(t)) + 0.08f * demo_normal() + (k ? 0.05f : 0);
        xy[2 * i + 1] = (up ? sinf(t) : 0.5f - sinf(t)) + 0.08f * demo_normal();
    }
    o.title = "two moons: data vs generated";
    o.w = 640; o.h = 480;
    if (gm_plot_scatter(&img, &o, xy, n, lab, 2, names)) { fprintf(stderr, "%s\n", gm_last_error()); return -1; }
    free(xy); free(lab);
    return save(dir, "demo_scatter2.png", &img);
}

static int demo_heatmap(const char *dir) {
    int gw = 120, gh = 120, i, j, k;
    float *v = (float *)malloc(sizeof(float) * gw * gh);
    gm_plot_opts o = gm_plot_defaults();
    gm_image img;
    for (j = 0; j < gh; j++)
        for (i = 0; i < gw; i++) {
            float x = -4 + 8 * (i + 0.5f) / gw, y = -4 + 8 * (j + 0.5f) / gh, d = 0;
            for (k = 0; k < 8; k++) {
                float cx = 2.5f * cosf(0.785398f * k), cy = 2.5f * sinf(0.785398f * k);
                d += expf(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * 0.16f)) / (8 * 6.2831853f * 0.16f);
            }
            v[j * gw + i] = d;
        }
    o.title = "model density, 8 gaussians";
    o.xlabel = "x"; o.ylabel = "y";
    if (gm_plot_heatmap(&img, &o, v, gw, gh, -4, 4, -4, 4)) { fprintf(stderr, "%s\n", gm_last_error()); return -1; }
    free(v);
    return save(dir, "demo_heatmap.png", &img);
}

static int demo_lines(const char *dir) {
    enum { N = 3000 };
    static float loss[N], kl[N], rec[N], val[N / 100];
    const float *s[4];
    int len[4] = {N, N, N, N / 100}, i;
    const char *names[4] = {"loss", "kl", "recon", "val loss"};
    gm_plot_opts o = gm_plot_defaults();
    gm_image img;
    for (i = 0; i < N; i++) {
        float t = (float)i / N;
        rec[i] = 60 + 180 * expf(-8 * t) + 6 * demo_normal();
        kl[i] = 25 * (1 - expf(-10 * t)) + 1.5f * demo_normal() + 2;
        loss[i] = rec[i] + kl[i];
    }
    for (i = 0; i < N / 100; i++) val[i] = 95 + 170 * expf(-8.0f * i / 30);
    loss[1500] = NAN;
    s[0] = loss; s[1] = kl; s[2] = rec; s[3] = val;
    o.title = "VAE training"; o.xlabel = "step"; o.ylabel = "nats";
    o.smooth = 0.95f;
    if (gm_plot_lines(&img, &o, s, len, names, 3)) { fprintf(stderr, "%s\n", gm_last_error()); return -1; }
    if (save(dir, "demo_lines.png", &img)) return -1;
    o.log_y = 1; o.smooth = 0; o.title = "same, log y, no smoothing";
    if (gm_plot_lines(&img, &o, s, len, names, 3)) { fprintf(stderr, "%s\n", gm_last_error()); return -1; }
    if (save(dir, "demo_lines_log.png", &img)) return -1;
    {   /* a loss spanning many decades, and a short eval series every 100 steps */
        static float a[N];
        for (i = 0; i < N; i++) a[i] = 3e2f * expf(-12.0f * i / N) * (1 + 0.3f * demo_uniform());
        s[0] = a; s[1] = val; len[0] = N; len[1] = N / 100;
        o.title = "decades"; o.log_y = 1; o.x_step = 1; o.smooth = 0.9f;
        if (gm_plot_lines(&img, &o, s, len, names + 2, 1)) { fprintf(stderr, "%s\n", gm_last_error()); return -1; }
        if (save(dir, "demo_lines_decades.png", &img)) return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "out";
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {   /* no flags: only the output directory */
        fprintf(stderr, "usage: plot_demo [outdir]  (writes outdir/demo_*.png; default out)\n");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    if (demo_grids(dir) || demo_rgb_grid(dir) || demo_scatter(dir) || demo_scatter2(dir) || demo_heatmap(dir) ||
        demo_lines(dir)) {
        fprintf(stderr, "plot_demo: failed: %s\n", gm_last_error());
        return 1;
    }
    return 0;
}
