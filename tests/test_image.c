/* test_image.c: the pictures layer (grids, text, ticks, colours, plots, PNG/PPM files) and the
 * example conventions of examples/common.h (flags, run log, JSON line).
 *   gcc -O2 -std=c99 -Wall -Wextra -Wpedantic tests/test_image.c -o /tmp/ti -lm && /tmp/ti */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  /* stb's "= { 0 }" under C++ */
#endif
/* The decoder comes from Debian's libstb-dev (.ci/run installs it); only this test reads PNGs. */
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "../third_party/stb_image_write.h"
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_IMAGE_IMPLEMENTATION
#include "../genmod_image.h"
#include "gm_test.h"

#include "../examples/common.h"

#ifndef _WIN32
#include <sys/wait.h>
#endif

static const unsigned char *px(const gm_image *img, int x, int y) {
    return img->rgb + ((size_t)y * img->w + x) * 3;
}
static int is_rgb(const gm_image *img, int x, int y, int r, int g, int b) {
    const unsigned char *p = px(img, x, y);
    return p[0] == r && p[1] == g && p[2] == b;
}
static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}
static int empty_image(const gm_image *img) { return img->w == 0 && img->h == 0 && img->rgb == NULL; }

GM_TEST(test_grid_geometry) {
    /* 3 tiles of 2x3 in 2 columns, pad 1: 2*(3+1)+1 = 9 wide, 2*(2+1)+1 = 7 high */
    float x[18];
    gm_image g;
    int i;
    for (i = 0; i < 18; i++) x[i] = (float)(i / 6) * 0.5f;   /* tile 0: 0, tile 1: 0.5, tile 2: 1 */
    x[6 + 1 * 3 + 2] = 0.25f;                               /* tile 1, row 1, column 2 */
    GM_CHECK(gm_image_grid(&g, x, 3, 1, 2, 3, 2, 1, 0, 1) == 0, "%s", gm_last_error());
    GM_CHECK(g.w == 9 && g.h == 7, "size %d x %d", g.w, g.h);
    GM_CHECK(is_rgb(&g, 0, 0, 255, 255, 255), "padding is white");
    GM_CHECK(is_rgb(&g, 1, 1, 0, 0, 0), "tile 0 top-left is black");
    GM_CHECK(is_rgb(&g, 3, 2, 0, 0, 0), "tile 0 bottom-right is black");
    GM_CHECK(is_rgb(&g, 4, 1, 255, 255, 255), "column of padding between tiles");
    GM_CHECK(is_rgb(&g, 5, 1, 128, 128, 128), "tile 1 at x = 1 + 3 + 1: 0.5 -> 128");
    GM_CHECK(is_rgb(&g, 5 + 2, 1 + 1, 64, 64, 64), "0.25 -> 64 at tile 1 (2, 1)");
    GM_CHECK(is_rgb(&g, 1, 4, 255, 255, 255), "tile 2 starts at y = 1 + 2 + 1 = 4: 1 -> 255");
    GM_CHECK(is_rgb(&g, 5, 4, 255, 255, 255), "the empty 4th tile is background");
    gm_image_free(&g);
    GM_CHECK(empty_image(&g), "free leaves an empty image");
    gm_image_free(&g);   /* twice is fine */
    /* cols <= 0: about square */
    GM_CHECK(gm_image_grid(&g, x, 3, 1, 2, 3, 0, 0, 0, 1) == 0 && g.w == 6 && g.h == 4, "auto cols: %d x %d", g.w, g.h);
    gm_image_free(&g);
}

GM_TEST(test_grid_rgb_clamp_nan) {
    /* one 1x4 RGB image, planar: R plane, G plane, B plane; range [-1, 1] */
    float x[12] = {-1, 0, 1, 5,   -3, 1, -1, 0,   1, 0.5f, 0, 0};
    gm_image g;
    float inf = (float)HUGE_VAL;
    GM_CHECK(gm_image_grid(&g, x, 1, 3, 1, 4, 1, 0, -1, 1) == 0, "%s", gm_last_error());
    GM_CHECK(is_rgb(&g, 0, 0, 0, 0, 255), "(-1,-3,1) -> (0,0,255) (clamped)");
    GM_CHECK(is_rgb(&g, 1, 0, 128, 255, 191), "(0,1,0.5) -> (128,255,191)");
    GM_CHECK(is_rgb(&g, 3, 0, 255, 128, 128), "5 clamps to 255");
    gm_image_free(&g);
    x[0] = inf; x[4] = -inf; x[9] = (float)(inf - inf);
    GM_CHECK(gm_image_grid(&g, x, 1, 3, 1, 4, 1, 0, -1, 1) == 0, "%s", gm_last_error());
    GM_CHECK(is_rgb(&g, 0, 0, 255, 0, 255), "+inf -> 255, -inf -> 0");
    GM_CHECK(is_rgb(&g, 1, 0, GM_NAN_COLOR_R, GM_NAN_COLOR_G, GM_NAN_COLOR_B), "NaN pixel drawn magenta");
    gm_image_free(&g);
    /* inverted range works: lo > hi flips the ramp */
    GM_CHECK(gm_image_grid(&g, x + 4, 1, 1, 1, 4, 1, 0, 1, -1) == 0 && is_rgb(&g, 1, 0, 0, 0, 0), "inverted: 1 -> 0");
    gm_image_free(&g);
}

GM_TEST(test_grid_invalid) {
    float x[4] = {0, 0, 0, 0};
    gm_image g;
    g.w = 5; g.h = 5; g.rgb = NULL;
    GM_CHECK(gm_image_grid(&g, NULL, 1, 1, 2, 2, 1, 0, 0, 1) == -1 && strstr(gm_last_error(), "NULL"), "NULL input");
    GM_CHECK(empty_image(&g), "output cleared on failure");
    GM_CHECK(gm_image_grid(NULL, x, 1, 1, 2, 2, 1, 0, 0, 1) == -1, "NULL output");
    GM_CHECK(gm_image_grid(&g, x, 0, 1, 2, 2, 1, 0, 0, 1) == -1 && strstr(gm_last_error(), "n = 0"), "n = 0: %s", gm_last_error());
    GM_CHECK(gm_image_grid(&g, x, 1, 2, 2, 1, 1, 0, 0, 1) == -1 && strstr(gm_last_error(), "c = 2"), "c = 2");
    GM_CHECK(gm_image_grid(&g, x, 1, 1, 0, 2, 1, 0, 0, 1) == -1, "h = 0");
    GM_CHECK(gm_image_grid(&g, x, 1, 1, 2, -2, 1, 0, 0, 1) == -1, "w < 0");
    GM_CHECK(gm_image_grid(&g, x, 1, 1, 2, 2, 1, -1, 0, 1) == -1 && strstr(gm_last_error(), "pad"), "pad < 0");
    GM_CHECK(gm_image_grid(&g, x, 1, 1, 2, 2, 1, 0, 1, 1) == -1 && strstr(gm_last_error(), "range"), "lo == hi");
    GM_CHECK(gm_image_grid(&g, x, 1, 1, 2, 2, 1, 0, (float)(HUGE_VAL - HUGE_VAL), 1) == -1, "NaN lo");
    /* sizes whose products overflow, or sides past the limit: rejected before any allocation */
    GM_CHECK(gm_image_grid(&g, x, 2147483647, 3, 16384, 16384, 1, 0, 0, 1) == -1 &&
             (strstr(gm_last_error(), "overflow") || strstr(gm_last_error(), "MAX_SIDE")), "n*c*h*w overflow: %s", gm_last_error());
    GM_CHECK(gm_image_grid(&g, x, 4, 1, 10000, 10, 1, 0, 0, 1) == -1 && strstr(gm_last_error(), "GM_IMAGE_MAX_SIDE"),
             "4 tiles of 10000 rows exceed the side limit: %s", gm_last_error());
    GM_CHECK(gm_image_grid(&g, x, 1, 1, 2, 2, 2147483647, 0, 0, 1) == -1, "huge cols");
    GM_CHECK(gm_image_new(&g, 0, 5, 0, 0, 0) == -1 && strstr(gm_last_error(), "positive"), "w = 0");
    GM_CHECK(gm_image_new(&g, -3, 5, 0, 0, 0) == -1, "w < 0");
    GM_CHECK(gm_image_new(&g, 100000, 5, 0, 0, 0) == -1, "w too large");
    GM_CHECK(gm_image_new(NULL, 5, 5, 0, 0, 0) == -1, "NULL image");
    GM_CHECK(gm_image_new(&g, 2, 3, 1, 2, 3) == 0 && g.w == 2 && g.h == 3 && is_rgb(&g, 1, 2, 1, 2, 3), "new fills");
    gm_image_free(&g);
}

GM_TEST(test_text) {
    gm_image img;
    int x, y, inside = 0, outside = 0;
    GM_CHECK(gm_text_width("abc", 1) == 17, "3 glyphs: 3*6-1 = 17, got %d", gm_text_width("abc", 1));
    GM_CHECK(gm_text_width("abc", 2) == 34, "scale 2");
    GM_CHECK(gm_text_width("ab\nabcd", 1) == 23, "widest line");
    GM_CHECK(gm_text_width("", 1) == 0 && gm_text_width(NULL, 1) == 0, "empty");
    gm_image_new(&img, 60, 40, 255, 255, 255);
    gm_image_text(&img, 10, 10, "A-1", 2, 0, 0, 0);
    for (y = 0; y < img.h; y++)
        for (x = 0; x < img.w; x++) {
            int dark = px(&img, x, y)[0] == 0;
            int in = x >= 10 && x < 10 + gm_text_width("A-1", 2) && y >= 10 && y < 10 + 16;
            if (dark && in) inside++;
            if (dark && !in) outside++;
        }
    GM_CHECK(inside > 40, "ink inside the text box: %d pixels", inside);
    GM_CHECK(outside == 0, "no ink outside the box: %d pixels", outside);
    /* clipped, non-ASCII and NULL text must not crash */
    gm_image_text(&img, 55, 35, "clipped \x01\xff", 3, 0, 0, 0);
    gm_image_text(&img, -20, -20, "negative", 1, 0, 0, 0);
    gm_image_text(&img, 0, 0, NULL, 1, 0, 0, 0);
    gm_image_text(NULL, 0, 0, "x", 1, 0, 0, 0);
    gm_image_free(&img);
}

GM_TEST(test_nice_ticks) {
    double t[GM__IM_MAXT], step;
    char lab[GM__IM_LABEL];
    int n, i;
    n = gm__im_nice_ticks(0, 1, 6, t, GM__IM_MAXT, &step);
    GM_CHECK(n == 6, "[0,1]: %d ticks", n);
    for (i = 0; i < n && i < 6; i++) GM_CHECK_CLOSE(t[i], 0.2 * i, 1e-12);
    GM_CHECK_CLOSE(step, 0.2, 1e-12);
    gm__im_fmt_tick(lab, t[1], step, 1); GM_CHECK(!strcmp(lab, "0.2"), "label %s", lab);
    gm__im_fmt_tick(lab, t[0], step, 1); GM_CHECK(!strcmp(lab, "0"), "label %s", lab);
    n = gm__im_nice_ticks(-3.7, 12.1, 6, t, GM__IM_MAXT, &step);
    GM_CHECK(n == 3 && step == 5 && t[0] == 0 && t[1] == 5 && t[2] == 10, "[-3.7,12.1]: n %d step %g", n, step);
    n = gm__im_nice_ticks(-3.7, 12.1, 10, t, GM__IM_MAXT, &step);
    GM_CHECK(n == 8 && step == 2 && t[0] == -2 && t[7] == 12, "[-3.7,12.1] x10: n %d step %g", n, step);
    n = gm__im_nice_ticks(1e-9, 5e-9, 5, t, GM__IM_MAXT, &step);
    GM_CHECK(n == 5 && gm_test_close(step, 1e-9, 1e-9), "tiny: n %d step %g", n, step);
    gm__im_fmt_tick(lab, t[1], step, 5e-9); GM_CHECK(!strcmp(lab, "2e-9"), "tiny label %s", lab);
    n = gm__im_nice_ticks(0, 3e12, 6, t, GM__IM_MAXT, &step);
    GM_CHECK(n == 4 && step == 1e12, "huge: n %d step %g", n, step);
    gm__im_fmt_tick(lab, t[3], step, 3e12); GM_CHECK(!strcmp(lab, "3e12"), "huge label %s", lab);
    gm__im_fmt_tick(lab, 2.5e6, 5e5, 3e6); GM_CHECK(!strcmp(lab, "2.5e6"), "mantissa label %s", lab);
    gm__im_fmt_tick(lab, -0.05, 0.05, 0.1); GM_CHECK(!strcmp(lab, "-0.05"), "label %s", lab);
    n = gm__im_nice_ticks(-1e-3, 2e-3, 8, t, GM__IM_MAXT, &step);
    GM_CHECK(n >= 4 && n <= 8, "small signed range: %d", n);
    for (i = 0; i < n; i++) GM_CHECK(t[i] >= -1e-3 - 1e-15 && t[i] <= 2e-3 + 1e-15, "tick %g inside", t[i]);
    n = gm__im_nice_ticks(7, 7, 6, t, GM__IM_MAXT, &step);
    GM_CHECK(n == 1 && t[0] == 7, "equal ends: one tick");
    n = gm__im_nice_ticks((double)(HUGE_VAL - HUGE_VAL), 1, 6, t, GM__IM_MAXT, &step);
    GM_CHECK(n == 0, "NaN range: no ticks");
    {   double lo = 5, hi = 5, z0 = 0, z1 = 0;
        gm__im_range(&lo, &hi, 0);
        gm__im_range(&z0, &z1, 0);
        GM_CHECK(lo == 4.5 && hi == 5.5 && z0 == -1 && z1 == 1, "empty ranges widened: [%g,%g] [%g,%g]", lo, hi, z0, z1);
    }
    {   gm__im_axis a;       /* log axis over 1e-3 .. 1e2: labels at the powers of ten */
        memset(&a, 0, sizeof a);
        a.log = 1; a.lo = -3; a.hi = 2;
        gm__im_axis_ticks(&a, 8);
        GM_CHECK(a.n == 6 && !strcmp(a.lab[0], "0.001") && !strcmp(a.lab[5], "100"), "log: n %d %s..%s", a.n,
                 a.lab[0], a.n ? a.lab[a.n - 1] : "");
        GM_CHECK(a.nminor > 10, "log minor lines: %d", a.nminor);
    }
}

GM_TEST(test_colors) {
    unsigned char c[3];
    gm_colormap(0, c);   GM_CHECK(c[0] == 68 && c[1] == 1 && c[2] == 84, "t=0 dark violet");
    gm_colormap(1, c);   GM_CHECK(c[0] == 253 && c[1] == 231 && c[2] == 37, "t=1 yellow");
    gm_colormap(-5, c);  GM_CHECK(c[0] == 68 && c[1] == 1, "clamped below");
    gm_colormap(9, c);   GM_CHECK(c[0] == 253 && c[1] == 231, "clamped above");
    gm_colormap((float)(HUGE_VAL - HUGE_VAL), c);
    GM_CHECK(c[0] == GM_NAN_COLOR_R && c[1] == GM_NAN_COLOR_G && c[2] == GM_NAN_COLOR_B, "NaN marked");
    {   /* lightness (roughly) increases monotonically along the ramp */
        int i, prev = -1, mono = 1;
        for (i = 0; i <= 100; i++) {
            int l;
            gm_colormap(i / 100.0f, c);
            l = 299 * c[0] + 587 * c[1] + 114 * c[2];
            if (l < prev) mono = 0;
            prev = l;
        }
        GM_CHECK(mono, "luma increases along the colormap");
    }
    {   unsigned char a[3], b[3];
        int i, j, same = 0;
        for (i = 0; i < GM_PALETTE_SIZE; i++)
            for (j = i + 1; j < GM_PALETTE_SIZE; j++) {
                gm_palette(i, a); gm_palette(j, b);
                if (abs(a[0] - b[0]) + abs(a[1] - b[1]) + abs(a[2] - b[2]) < 60) same++;
            }
        GM_CHECK(same == 0, "palette colours are distinct");
        gm_palette(-1, a); gm_palette(9, b);
        GM_CHECK(a[0] == b[0] && a[1] == b[1], "negative index wraps");
    }
}

static unsigned long be32(const unsigned char *p) {
    return ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) | ((unsigned long)p[2] << 8) | p[3];
}

GM_TEST(test_png_write) {
    gm_image img;
    unsigned char buf[64];
    const char *path = "/tmp/gm_test_image.png";
    FILE *f;
    size_t got;
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    remove(path);
    gm_image_new(&img, 37, 21, 10, 200, 30);
    GM_CHECK(gm_image_write_png(path, &img) == 0, "%s", gm_last_error());
    f = fopen(path, "rb");
    GM_CHECK(f != NULL, "file exists");
    if (!f) { gm_image_free(&img); return; }
    got = fread(buf, 1, sizeof buf, f);
    fclose(f);
    GM_CHECK(got >= 33 && memcmp(buf, sig, 8) == 0, "PNG signature");
    GM_CHECK(memcmp(buf + 12, "IHDR", 4) == 0, "IHDR first");
    GM_CHECK(be32(buf + 16) == 37 && be32(buf + 20) == 21, "IHDR %lu x %lu", be32(buf + 16), be32(buf + 20));
    GM_CHECK(buf[24] == 8 && buf[25] == 2, "8-bit RGB");
    GM_CHECK(!file_exists("/tmp/gm_test_image.png.tmp"), "no temp file left");
    /* overwriting an existing file works (rename over it) */
    GM_CHECK(gm_image_write_png(path, &img) == 0, "overwrite: %s", gm_last_error());
    remove(path);
    GM_CHECK(gm_image_write_png("/tmp/gm_no_such_dir_7f3a/x.png", &img) == -1, "missing directory fails");
    GM_CHECK(strstr(gm_last_error(), "/tmp/gm_no_such_dir_7f3a/x.png") != NULL, "message names the path: %s", gm_last_error());
    GM_CHECK(!file_exists("/tmp/gm_no_such_dir_7f3a/x.png") && !file_exists("/tmp/gm_no_such_dir_7f3a/x.png.tmp"), "no file");
    GM_CHECK(gm_image_write_png(NULL, &img) == -1 && gm_image_write_png("", &img) == -1, "bad path");
    gm_image_free(&img);
    GM_CHECK(gm_image_write_png("/tmp/gm_test_empty.png", &img) == -1 && !file_exists("/tmp/gm_test_empty.png"), "empty image");
}

GM_TEST(test_ppm_roundtrip) {
    gm_image img;
    const char *path = "/tmp/gm_test_image.ppm";
    char magic[3] = {0, 0, 0};
    int w = 0, h = 0, maxv = 0, x, y, same = 1;
    FILE *f;
    gm_image_new(&img, 13, 7, 0, 0, 0);
    for (y = 0; y < 7; y++)
        for (x = 0; x < 13; x++) {
            unsigned char *p = img.rgb + (y * 13 + x) * 3;
            p[0] = (unsigned char)(x * 19); p[1] = (unsigned char)(y * 37); p[2] = (unsigned char)(x * y);
        }
    GM_CHECK(gm_image_write_ppm(path, &img) == 0, "%s", gm_last_error());
    GM_CHECK(!file_exists("/tmp/gm_test_image.ppm.tmp"), "no temp file left");
    f = fopen(path, "rb");
    GM_CHECK(f != NULL, "opened");
    if (f) {
        unsigned char data[13 * 7 * 3];
        GM_CHECK(fscanf(f, "%2s %d %d %d", magic, &w, &h, &maxv) == 4, "header");
        fgetc(f);   /* the single whitespace after maxval */
        GM_CHECK(!strcmp(magic, "P6") && w == 13 && h == 7 && maxv == 255, "%s %d %d %d", magic, w, h, maxv);
        GM_CHECK(fread(data, 1, sizeof data, f) == sizeof data, "pixels");
        same = memcmp(data, img.rgb, sizeof data) == 0;
        GM_CHECK(same, "pixels round-trip");
        GM_CHECK(fgetc(f) == EOF, "nothing after the pixels");
        fclose(f);
    }
    remove(path);
    GM_CHECK(gm_image_write_ppm("/tmp/gm_no_such_dir_7f3a/y.ppm", &img) == -1, "missing directory");
    gm_image_free(&img);
}

static int count_rgb(const gm_image *img, int r, int g, int b) {
    int x, y, n = 0;
    for (y = 0; y < img->h; y++)
        for (x = 0; x < img->w; x++) n += is_rgb(img, x, y, r, g, b);
    return n;
}

/* Each kind of picture, written as PNG and decoded by an independent reader: the size is right, the
   content is not constant, and every pixel is exactly the rendered one (PNG is lossless). */
static void check_png_roundtrip(const char *kind, const gm_image *img) {
    const char *path = "/tmp/gm_test_decode.png";
    int w = 0, h = 0, c = 0, i, lo = 255, hi = 0;
    unsigned char *px;
    GM_CHECK(gm_image_write_png(path, img) == 0, "%s: %s", kind, gm_last_error());
    px = stbi_load(path, &w, &h, &c, 3);
    GM_CHECK(px != NULL, "%s: decode failed: %s", kind, px ? "" : stbi_failure_reason());
    if (!px) return;
    GM_CHECK(w == img->w && h == img->h, "%s: decoded %dx%d, rendered %dx%d", kind, w, h, img->w, img->h);
    if (w == img->w && h == img->h) {
        GM_CHECK(memcmp(px, img->rgb, (size_t)w * h * 3) == 0, "%s: decoded pixels differ", kind);
        for (i = 0; i < w * h * 3; i++) { lo = px[i] < lo ? px[i] : lo; hi = px[i] > hi ? px[i] : hi; }
        GM_CHECK(hi - lo > 100, "%s: nearly constant picture (%d..%d)", kind, lo, hi);
    }
    stbi_image_free(px);
    remove(path);
}

GM_TEST(test_png_decodes) {
    float digits[4 * 28 * 28], xy[200], heat[16 * 16], curve[50];
    const float *series[1];
    int lab[100], len[1] = {50}, i;
    gm_plot_opts o = gm_plot_defaults();
    gm_image img, panels[2];
    for (i = 0; i < 4 * 28 * 28; i++) digits[i] = (float)((i * 7919) % 255) / 255.0f;
    for (i = 0; i < 100; i++) { xy[2 * i] = cosf((float)i); xy[2 * i + 1] = sinf((float)i * 1.3f); lab[i] = i % 3; }
    for (i = 0; i < 256; i++) heat[i] = (float)(i % 16) * (float)(i / 16);
    for (i = 0; i < 50; i++) curve[i] = 1.0f / (float)(i + 1);
    series[0] = curve;
    o.w = 320; o.h = 240;
    if (gm_image_grid(&img, digits, 4, 1, 28, 28, 2, 2, 0.0f, 1.0f) == 0) { check_png_roundtrip("grid", &img); gm_image_free(&img); }
    else GM_CHECK(0, "grid: %s", gm_last_error());
    if (gm_plot_scatter(&img, &o, xy, 100, lab, 3, NULL) == 0) { check_png_roundtrip("scatter", &img); gm_image_free(&img); }
    else GM_CHECK(0, "scatter: %s", gm_last_error());
    if (gm_plot_heatmap(&img, &o, heat, 16, 16, -1, 1, -1, 1) == 0) { check_png_roundtrip("heatmap", &img); gm_image_free(&img); }
    else GM_CHECK(0, "heatmap: %s", gm_last_error());
    if (gm_plot_lines(&img, &o, series, len, NULL, 1) == 0) { check_png_roundtrip("lines", &img); gm_image_free(&img); }
    else GM_CHECK(0, "lines: %s", gm_last_error());
    if (gm_image_grid(&panels[0], digits, 2, 1, 28, 28, 2, 2, 0.0f, 1.0f) == 0 &&
        gm_image_grid(&panels[1], digits + 2 * 784, 2, 1, 28, 28, 2, 2, 0.0f, 1.0f) == 0 &&
        gm_image_hstack(&img, panels, 2, NULL, 4) == 0) {
        check_png_roundtrip("panels", &img);
        gm_image_free(&img);
    } else GM_CHECK(0, "panels: %s", gm_last_error());
    gm_image_free(&panels[0]);
    gm_image_free(&panels[1]);
}

GM_TEST(test_plots) {
    float xy[8] = {0, 0, 1, 1, 2, 0.5f, 0, 0};
    int lab[4] = {0, 1, 2, 1};
    float s0[5] = {5, 4, 3, 2, 1}, s1[3] = {1, 2, 3};
    const float *ser[2];
    int len[2] = {5, 3};
    const char *names[2] = {"loss", "kl"};
    float heat[6] = {0, 1, 2, 3, 4, 5};
    gm_plot_opts o = gm_plot_defaults();
    gm_image img;
    unsigned char c0[3];
    ser[0] = s0; ser[1] = s1;
    xy[6] = (float)(HUGE_VAL - HUGE_VAL);
    GM_CHECK(gm_plot_scatter(&img, &o, xy, 4, lab, 3, NULL) == 0, "%s", gm_last_error());
    GM_CHECK(img.w == 800 && img.h == 560, "default size");
    gm_palette(2, c0);
    GM_CHECK(count_rgb(&img, c0[0], c0[1], c0[2]) > 0, "label 2's colour is drawn (legend)");
    gm_image_free(&img);
    GM_CHECK(gm_plot_scatter(&img, NULL, xy, 3, NULL, 0, NULL) == 0, "no labels, NULL opts: %s", gm_last_error());
    gm_image_free(&img);
    GM_CHECK(gm_plot_scatter(&img, &o, xy, 4, lab, 11, NULL) == -1 && empty_image(&img), "11 labels rejected");
    lab[3] = 3;
    GM_CHECK(gm_plot_scatter(&img, &o, xy, 4, lab, 3, NULL) == -1 && strstr(gm_last_error(), "labels[3]"), "label range");
    GM_CHECK(gm_plot_scatter(&img, &o, xy + 6, 1, NULL, 0, NULL) == -1 && strstr(gm_last_error(), "NaN"), "all NaN");
    GM_CHECK(gm_plot_scatter(&img, &o, NULL, 4, NULL, 0, NULL) == -1, "NULL points");
    o.w = 100;
    GM_CHECK(gm_plot_scatter(&img, &o, xy, 3, NULL, 0, NULL) == -1 && strstr(gm_last_error(), "size"), "too small");
    o = gm_plot_defaults();
    o.fixed_x = 1; o.x0 = 1; o.x1 = 1;
    GM_CHECK(gm_plot_scatter(&img, &o, xy, 3, NULL, 0, NULL) == -1, "empty fixed range");
    o = gm_plot_defaults();

    GM_CHECK(gm_plot_lines(&img, &o, ser, len, names, 2) == 0, "%s", gm_last_error());
    gm_image_free(&img);
    o.log_y = 1; o.smooth = 0.5f; o.title = "t"; o.xlabel = "x"; o.ylabel = "y";
    GM_CHECK(gm_plot_lines(&img, &o, ser, len, NULL, 2) == 0, "log: %s", gm_last_error());
    gm_image_free(&img);
    s1[0] = -1; s1[1] = (float)HUGE_VAL; s1[2] = 0;
    GM_CHECK(gm_plot_lines(&img, &o, ser + 1, len + 1, NULL, 1) == -1 && strstr(gm_last_error(), "no point"), "nothing positive");
    o = gm_plot_defaults();
    GM_CHECK(gm_plot_lines(&img, &o, NULL, len, names, 2) == -1, "NULL series");
    len[0] = -1;
    GM_CHECK(gm_plot_lines(&img, &o, ser, len, names, 2) == -1 && strstr(gm_last_error(), "negative"), "negative length");
    len[0] = 5;
    GM_CHECK(gm_plot_lines(&img, &o, ser, len, names, 0) == -1, "nseries 0");
    o.smooth = 1;
    GM_CHECK(gm_plot_lines(&img, &o, ser, len, names, 1) == -1 && strstr(gm_last_error(), "smooth"), "smooth 1");
    o = gm_plot_defaults();

    GM_CHECK(gm_plot_heatmap(&img, &o, heat, 3, 2, -1, 1, 0, 1) == 0, "%s", gm_last_error());
    gm_colormap(1, c0);
    GM_CHECK(count_rgb(&img, c0[0], c0[1], c0[2]) > 0, "top colour present");
    GM_CHECK(count_rgb(&img, 255, 0, 255) == 0, "no NaN colour");
    gm_image_free(&img);
    heat[2] = (float)(HUGE_VAL - HUGE_VAL);
    GM_CHECK(gm_plot_heatmap(&img, &o, heat, 3, 2, -1, 1, 0, 1) == 0, "%s", gm_last_error());
    GM_CHECK(count_rgb(&img, 255, 0, 255) > 100, "NaN cell drawn magenta");
    gm_image_free(&img);
    GM_CHECK(gm_plot_heatmap(&img, &o, heat, 3, 2, 1, -1, 0, 1) == -1 && strstr(gm_last_error(), "extent"), "x0 > x1");
    GM_CHECK(gm_plot_heatmap(&img, &o, heat, 0, 2, -1, 1, 0, 1) == -1, "gw 0");
    GM_CHECK(gm_plot_heatmap(&img, &o, heat, 2147483647, 2147483647, -1, 1, 0, 1) == -1 &&
             strstr(gm_last_error(), "grid"), "grid overflow: %s", gm_last_error());
    o.fixed_v = 1; o.v0 = 2; o.v1 = 2;
    GM_CHECK(gm_plot_heatmap(&img, &o, heat, 3, 2, -1, 1, 0, 1) == -1, "empty colour range");
}

GM_TEST(test_stack_upscale) {
    gm_image a, b, panels[2], out;
    const char *caps[2] = {"data", NULL};
    gm_image_new(&a, 20, 10, 0, 0, 0);
    gm_image_new(&b, 30, 15, 0, 0, 0);
    panels[0] = a; panels[1] = b;
    GM_CHECK(gm_image_hstack(&out, panels, 2, NULL, 4) == 0, "%s", gm_last_error());
    GM_CHECK(out.w == 4 + 20 + 4 + 30 + 4 && out.h == 15 + 8, "hstack %d x %d", out.w, out.h);
    GM_CHECK(is_rgb(&out, 4, 4, 0, 0, 0) && is_rgb(&out, 3, 4, 255, 255, 255), "first panel at (4, 4)");
    gm_image_free(&out);
    GM_CHECK(gm_image_vstack(&out, panels, 2, caps, 0) == 0, "%s", gm_last_error());
    GM_CHECK(out.w == 30 && out.h == 2 * (10 + 12) + 5, "vstack with a caption row: %d x %d", out.w, out.h);
    gm_image_free(&out);
    panels[1].rgb = NULL;
    GM_CHECK(gm_image_hstack(&out, panels, 2, NULL, 4) == -1 && strstr(gm_last_error(), "panel 1"), "bad panel");
    GM_CHECK(gm_image_hstack(&out, panels, 0, NULL, 4) == -1, "no panels");
    GM_CHECK(gm_image_upscale(&out, &a, 3) == 0 && out.w == 60 && out.h == 30, "upscale");
    gm_image_free(&out);
    GM_CHECK(gm_image_upscale(&out, &a, 0) == -1 && gm_image_upscale(&out, &a, 100000) == -1, "bad factor");
    gm_image_free(&a); gm_image_free(&b);
}

/* ---- examples/common.h ---- */
static int parse(ex_args *a, const ex_opt *extra, int nextra, char *msg, const char *a1, const char *a2,
                 const char *a3, const char *a4) {
    char *argv[6];
    int argc = 1;
    argv[0] = (char *)"prog";
    if (a1) argv[argc++] = (char *)a1;
    if (a2) argv[argc++] = (char *)a2;
    if (a3) argv[argc++] = (char *)a3;
    if (a4) argv[argc++] = (char *)a4;
    argv[argc] = NULL;
    return ex_parse(a, argc, argv, extra, nextra, msg, 256);
}

GM_TEST(test_cli) {
    char msg[256];
    float beta = 1;
    int latent = 2, conv = 0;
    const char *model = "vae";
    ex_opt extra[4];
    ex_args a = ex_defaults("vae", 10, 64, 1e-3f);
    extra[0].name = "beta"; extra[0].type = EX_FLOAT; extra[0].ptr = &beta; extra[0].help = "KL weight"; extra[0].choices = "0..";
    extra[1].name = "latent"; extra[1].type = EX_INT; extra[1].ptr = &latent; extra[1].help = "latent size"; extra[1].choices = "1..512";
    extra[2].name = "conv"; extra[2].type = EX_BOOL; extra[2].ptr = &conv; extra[2].help = "conv net"; extra[2].choices = NULL;
    extra[3].name = "model"; extra[3].type = EX_CHOICE; extra[3].ptr = (void *)&model; extra[3].help = "model"; extra[3].choices = "vae|iwae";
    GM_CHECK(parse(&a, extra, 4, msg, "--epochs", "3", "--lr=0.01", NULL) == 0, "%s", msg);
    GM_CHECK(a.epochs == 3 && fabsf(a.lr - 0.01f) < 1e-9f, "epochs %d lr %g", a.epochs, a.lr);
    GM_CHECK(parse(&a, extra, 4, msg, "--steps=123456789012", "--seed", "42", "--conv") == 0, "%s", msg);
    GM_CHECK(a.steps == 123456789012L && a.seed == 42 && conv == 1, "steps %ld seed %lu conv %d", a.steps, a.seed, conv);
    GM_CHECK(ex_total_steps(&a, 100) == 123456789012L, "steps override epochs");
    a.steps = -1;   /* not given */
    GM_CHECK(ex_total_steps(&a, 100) == 300, "epochs x steps per epoch");
    a.steps = 0;    /* --steps 0: no training (with --load: sample a saved model) */
    GM_CHECK(ex_total_steps(&a, 100) == 0, "--steps 0 means no steps");
    GM_CHECK(parse(&a, extra, 4, msg, "--beta", "0.5", "--model=iwae", "--latent=16") == 0, "%s", msg);
    GM_CHECK(beta == 0.5f && !strcmp(model, "iwae") && latent == 16, "extras");
    GM_CHECK(parse(&a, extra, 4, msg, "--out", "/tmp/x", "--quiet", "--data=/d") == 0 && a.quiet && !strcmp(a.out_dir, "/tmp/x")
             && !strcmp(a.data_dir, "/d"), "strings");
    GM_CHECK(parse(&a, extra, 4, msg, "--bogus", NULL, NULL, NULL) == 2 && strstr(msg, "--bogus"), "unknown: %s", msg);
    GM_CHECK(parse(&a, extra, 4, msg, "--epochs", "abc", NULL, NULL) == 2 && strstr(msg, "--epochs") && strstr(msg, "abc"), "%s", msg);
    GM_CHECK(parse(&a, extra, 4, msg, "--epochs", "0", NULL, NULL) == 0 && a.epochs == 0, "epochs 0 (no training): %s", msg);
    GM_CHECK(parse(&a, extra, 4, msg, "--epochs", "-1", NULL, NULL) == 2, "negative epochs accepted");
    GM_CHECK(parse(&a, extra, 4, msg, "--steps", "-1", NULL, NULL) == 2, "negative steps accepted");
    GM_CHECK(parse(&a, extra, 4, msg, "--epochs", "99999999999999", NULL, NULL) == 2, "epochs overflow");
    GM_CHECK(parse(&a, extra, 4, msg, "--lr", "nan", NULL, NULL) == 2 && strstr(msg, "--lr"), "lr nan: %s", msg);
    GM_CHECK(parse(&a, extra, 4, msg, "--lr=-1", NULL, NULL, NULL) == 2, "negative lr");
    GM_CHECK(parse(&a, extra, 4, msg, "--batch", NULL, NULL, NULL) == 2 && strstr(msg, "needs a value"), "missing: %s", msg);
    GM_CHECK(parse(&a, extra, 4, msg, "--seed=-4", NULL, NULL, NULL) == 2, "negative seed");
    GM_CHECK(parse(&a, extra, 4, msg, "--model", "gan", NULL, NULL) == 2 && strstr(msg, "vae|iwae"), "choice: %s", msg);
    GM_CHECK(parse(&a, extra, 4, msg, "--latent=0", NULL, NULL, NULL) == 2 && strstr(msg, "1..512"), "range: %s", msg);
    GM_CHECK(parse(&a, extra, 4, msg, "--conv=maybe", NULL, NULL, NULL) == 2, "bool value");
    GM_CHECK(parse(&a, extra, 4, msg, "stray", NULL, NULL, NULL) == 2, "positional");
    a.epochs = 7;
    GM_CHECK(parse(&a, extra, 4, msg, "--epochs", "2", "--help", NULL) == 1 && a.epochs == 7, "help applies nothing");
}

/* --minutes: parsed like any flag; the budget's clock starts at the first ex_interrupted() (the
 * start of training), which then turns true once the time is spent; an example that keeps the
 * budget itself takes it over with ex_take_budget(). */
GM_TEST(test_minutes_budget) {
    char msg[256];
    ex_args a = ex_defaults("vae", 10, 64, 1e-3f);
    double t;
    GM_CHECK(parse(&a, NULL, 0, msg, "--minutes", "0.5", NULL, NULL) == 0 && fabsf(a.minutes - 0.5f) < 1e-7f, "%s", msg);
    GM_CHECK(parse(&a, NULL, 0, msg, "--minutes", "-1", NULL, NULL) == 2 && strstr(msg, "--minutes"), "negative: %s", msg);
    GM_CHECK(parse(&a, NULL, 0, msg, "--minutes=nan", NULL, NULL, NULL) == 2, "nan minutes accepted");
    ex__quiet = 1;
    ex__budget_s = 0.05;   /* seconds */
    GM_CHECK(ex_take_budget() == 0.05 && ex__budget_own, "take_budget hands the budget over");
    GM_CHECK(!ex_interrupted(), "the first call starts the clock");
    t = ex_now();
    while (ex_now() - t < 0.06) {}
    GM_CHECK(!ex_interrupted(), "an example that keeps its budget is not stopped by ex_interrupted()");
    ex__budget_own = 0; ex__budget_t0 = 0;
    GM_CHECK(!ex_interrupted(), "the first call starts the clock");
    GM_CHECK(!ex_interrupted(), "not yet spent");
    t = ex_now();
    while (ex_now() - t < 0.06) {}
    GM_CHECK(ex_interrupted(), "the budget is spent after 0.06 s");
    GM_CHECK(ex_interrupted(), "and stays spent");
}

GM_TEST(test_cli_exit_codes) {
#ifndef _WIN32
    int st = 0, code;
    pid_t pid;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char *argv[3];
        ex_args a = ex_defaults("child", 1, 1, 1);
        argv[0] = (char *)"child"; argv[1] = (char *)"--nope"; argv[2] = NULL;
        freopen("/dev/null", "w", stderr);
        ex_init(&a, 2, argv, NULL, NULL, 0);
        _exit(0);
    }
    GM_CHECK(pid > 0 && waitpid(pid, &st, 0) == pid, "fork/wait");
    code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    GM_CHECK(code == 2, "unknown flag exits with 2, got %d", code);
    pid = fork();
    if (pid == 0) {
        char *argv[3];
        ex_args a = ex_defaults("child", 1, 1, 1);
        argv[0] = (char *)"child"; argv[1] = (char *)"--help"; argv[2] = NULL;
        freopen("/dev/null", "w", stdout);
        ex_init(&a, 2, argv, "about", NULL, 0);
        _exit(5);
    }
    GM_CHECK(pid > 0 && waitpid(pid, &st, 0) == pid, "fork/wait");
    code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    GM_CHECK(code == 0, "--help exits with 0, got %d", code);
#endif
}

GM_TEST(test_run_log_and_json) {
    ex_args a = ex_defaults("t", 1, 8, 1e-3f);
    ex_run r;
    ex_json j;
    char line[256];
    FILE *f;
    int i, rows = 0;
    a.out_dir = "/tmp/gm_test_out/nested/dir";
    a.quiet = 1;
    GM_CHECK(ex_mkdirs(a.out_dir) == 0 && ex_is_dir(a.out_dir), "mkdir -p");
    GM_CHECK(ex_run_begin(&r, &a, 300, 8, "loss,kl") == 0, "begin");
    for (i = 0; i < 300; i++) {
        float m[2];
        m[0] = 10.0f / (i + 1); m[1] = (float)i;
        ex_run_step(&r, m);
    }
    ex_run_end(&r);
    f = fopen("/tmp/gm_test_out/nested/dir/t_log.csv", "r");
    GM_CHECK(f != NULL, "csv exists");
    if (f) {
        GM_CHECK(fgets(line, sizeof line, f) && !strcmp(line, "step,time_s,loss,kl\n"), "header: %s", line);
        while (fgets(line, sizeof line, f)) rows++;
        GM_CHECK(rows == 300, "rows %d", rows);
        fclose(f);
    }
    GM_CHECK(r.step == 300 && r.hist[1][299] == 299.0f, "history kept");
    GM_CHECK(ex_run_plot(&r, "loss.png", "training", 1) == 0, "plot");
    GM_CHECK(file_exists("/tmp/gm_test_out/nested/dir/loss.png"), "plot written in out dir");
    ex_run_free(&r);
    remove("/tmp/gm_test_out/nested/dir/loss.png");
    remove("/tmp/gm_test_out/nested/dir/t_log.csv");
    ex_json_init(&j);
    ex_json_num(&j, "nll", 81.25);
    ex_json_num(&j, "bad", HUGE_VAL - HUGE_VAL);
    ex_json_str(&j, "model", "v\"a\\e");
    GM_CHECK(!strcmp(j.buf, "\"nll\":81.25,\"bad\":null,\"model\":\"v\\\"a\\\\e\""), "json: %s", j.buf);
    for (i = 0; i < 500; i++) ex_json_num(&j, "a_rather_long_key_name_to_fill_it", i);
    GM_CHECK(j.len < sizeof j.buf && j.buf[j.len - 1] != ',', "full object stays valid");
}

int main(void) {
    GM_RUN(test_grid_geometry);
    GM_RUN(test_png_decodes);
    GM_RUN(test_grid_rgb_clamp_nan);
    GM_RUN(test_grid_invalid);
    GM_RUN(test_text);
    GM_RUN(test_nice_ticks);
    GM_RUN(test_colors);
    GM_RUN(test_png_write);
    GM_RUN(test_ppm_roundtrip);
    GM_RUN(test_plots);
    GM_RUN(test_stack_upscale);
    GM_RUN(test_cli);
    GM_RUN(test_cli_exit_codes);
    GM_RUN(test_minutes_budget);   /* last of the CLI tests: it spends the budget for good */
    GM_RUN(test_run_log_and_json);
    return gm_test_summary();
}
