/* genmod_image.h - v0.1 - pictures for genmod: image grids, text, scatter / heatmap / line plots,
   PNG and PPM files. Single-header C library (stb style), apart from the core because training
   needs none of it (as stb keeps image writing apart from image loading).

   USAGE
     In exactly one C or C++ file (it may be the one that holds genmod's implementation):
         #define STB_IMAGE_WRITE_IMPLEMENTATION         // optional: without it, PPM files only
         #include "third_party/stb_image_write.h"
         #define GENMOD_IMAGE_IMPLEMENTATION
         #include "genmod_image.h"
     Everywhere else just #include "genmod_image.h". The core (genmod.h, GENMOD_IMPLEMENTATION)
     is compiled in this file or another one; the pictures use only its gm_fail.

   THE SHORTEST PROGRAM (a grid of 64 MNIST digits, 4x enlarged)

         gm_dataset d;  gm_image grid, big;
         gm_idx_load(&d, "data/train-images-idx3-ubyte", NULL, 64, 0.0f, 1.0f);
         gm_image_grid(&grid, d.x, 64, 1, 28, 28, 8, 2, 0.0f, 1.0f);
         gm_image_upscale(&big, &grid, 4);
         if (gm_image_write_png("digits.png", &big) != 0) puts(gm_last_error());
         gm_image_free(&grid); gm_image_free(&big); gm_dataset_free(&d);

   Everything renders into a plain RGB8 buffer (gm_image); writing a file is a separate, thin step.
   PPM needs nothing; PNG needs stb_image_write.h included before this header's implementation
   (otherwise gm_image_write_png fails with a message saying so). Private names start gm__im_.
   libc and libm only.

   LICENSE: MIT, at the end of genmod.h.
*/
#ifndef GENMOD_IMAGE_H
#define GENMOD_IMAGE_H

#include "genmod.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- images ----
 * Functions that make a picture take an uninitialised `gm_image *out`, allocate it, and return
 * 0; on bad input they return -1 with a message in gm_last_error() and leave out empty
 * ({0, 0, NULL}), so gm_image_free(out) is always safe. Sides are limited to GM_IMAGE_MAX_SIDE.
 *
 * Non-finite data: gm_image_grid draws NaN pixels in GM_NAN_COLOR (magenta, not a colour a
 * real picture produces by accident) and clamps +-inf like any value outside [lo, hi];
 * gm_plot_heatmap draws non-finite cells in GM_NAN_COLOR; gm_plot_scatter and gm_plot_lines
 * skip non-finite points and say how many in a note under the plot. A plot with no finite
 * point at all is an error. */
#define GM_IMAGE_MAX_SIDE 16384
#define GM_NAN_COLOR_R 255
#define GM_NAN_COLOR_G 0
#define GM_NAN_COLOR_B 255
#define GM_PALETTE_SIZE 10

typedef struct gm_image {
    int w, h;
    unsigned char *rgb;     /* w*h*3 bytes, rows top to bottom, R G B per pixel */
} gm_image;

GMDEF int  gm_image_new(gm_image *img, int w, int h, unsigned char r, unsigned char g, unsigned char b);
GMDEF void gm_image_free(gm_image *img);

/* n images, each c x h x w floats (c = 1 grey or 3 RGB; planar CHW, as in gm_dataset), tiled
 * row by row in `cols` columns (cols <= 0: about square) with `pad` white pixels around and
 * between tiles. Values map linearly from [lo, hi] to 0..255 and are clamped. */
GMDEF int gm_image_grid(gm_image *out, const float *x, int n, int c, int h, int w, int cols, int pad,
                        float lo, float hi);
/* Nearest-neighbour enlargement by an integer factor (28x28 digits are tiny on a screen). */
GMDEF int gm_image_upscale(gm_image *out, const gm_image *in, int factor);
/* Panels side by side (hstack) or one above the other (vstack) on white, `pad` pixels apart
 * and around. captions: NULL, or one string (or NULL) per panel, centred above it. */
GMDEF int gm_image_hstack(gm_image *out, const gm_image *panels, int n, const char *const *captions, int pad);
GMDEF int gm_image_vstack(gm_image *out, const gm_image *panels, int n, const char *const *captions, int pad);
/* Text in the built-in 5x8 pixel font (ASCII 32..126; others show as '?'), top-left at (x, y),
 * each font pixel drawn as scale x scale; clipped at the borders. '\n' starts a new line. */
GMDEF void gm_image_text(gm_image *img, int x, int y, const char *s, int scale,
                         unsigned char r, unsigned char g, unsigned char b);
GMDEF int  gm_text_width(const char *s, int scale);   /* pixels of the widest line */

/* Colours. gm_colormap: t in [0, 1] (clamped; NaN gives GM_NAN_COLOR) to a perceptually even
 * dark-blue -> green -> yellow ramp (viridis-like). gm_palette: colour k (mod 10) of a
 * qualitative palette for labels and series. */
GMDEF void gm_colormap(float t, unsigned char rgb[3]);
GMDEF void gm_palette(int k, unsigned char rgb[3]);

/* Plots. Start from gm_plot_defaults() (or pass NULL for all defaults) and set what you need. */
typedef struct gm_plot_opts {
    int w, h;               /* picture size (default 800 x 560) */
    const char *title;      /* drawn above the plot; NULL: none */
    const char *xlabel, *ylabel;   /* axis names; NULL: none */
    int fixed_x, fixed_y;   /* 1: use [x0,x1] / [y0,y1] below instead of the data's range */
    float x0, x1, y0, y1;
    int fixed_v;            /* heatmap: 1: colours span [v0,v1] instead of the values' range */
    float v0, v1;
    int log_y;              /* lines: logarithmic y axis (points <= 0 are skipped) */
    float x_step;           /* lines: point i of a series is at x = (i + 1) * x_step (default 1) */
    float smooth;           /* lines: 0..0.999; > 0 draws the raw curve faint and an exponential
                               moving average (this weight on the past) on top */
    float point_size;       /* scatter: dot radius in pixels (default: 2.5, smaller for big n) */
} gm_plot_opts;

GMDEF gm_plot_opts gm_plot_defaults(void);
/* n points (x0,y0,x1,y1,...). labels: NULL (one colour) or n values in 0..nlabels-1
 * (nlabels <= GM_PALETTE_SIZE), shown in a legend right of the plot with label_names[k]
 * (NULL: the number k). */
GMDEF int gm_plot_scatter(gm_image *out, const gm_plot_opts *opts, const float *xy, int n,
                          const int *labels, int nlabels, const char *const *label_names);
/* A gw x gh grid of values; cell (i, j) = values[j*gw + i] covers x in x0 + [i, i+1]*(x1-x0)/gw
 * and y in y0 + [j, j+1]*(y1-y0)/gh, so row j = 0 is at the BOTTOM (y0), as in a plot. Shown
 * smoothly interpolated with gm_colormap between the smallest and largest finite value (or
 * opts->v0..v1 when fixed_v), with a labelled colour bar. x0..x1, y0..y1 are the axes. */
GMDEF int gm_plot_heatmap(gm_image *out, const gm_plot_opts *opts, const float *values, int gw, int gh,
                          float x0, float x1, float y0, float y1);
/* nseries curves; series[k] has lengths[k] points, names[k] (NULL array or entry: "series k")
 * in a legend row above the plot. Ticks at 1, 2, 5 x 10^k; log_y ticks at powers of ten. */
GMDEF int gm_plot_lines(gm_image *out, const gm_plot_opts *opts, const float *const *series,
                        const int *lengths, const char *const *names, int nseries);

/* Files. Both write to "<path>.tmp" and rename it over path, so a crash or a full disk never
 * leaves a half-written picture under the real name. gm_image_write_png works only when
 * stb_image_write.h was included before the implementation; otherwise it fails with a message
 * saying so. */
GMDEF int gm_image_write_ppm(const char *path, const gm_image *img);
GMDEF int gm_image_write_png(const char *path, const gm_image *img);

#ifdef __cplusplus
}
#endif
#endif /* GENMOD_IMAGE_H */

/* ======================================================================================= */
/* Implementation                                                                          */
/* ======================================================================================= */
#ifdef GENMOD_IMAGE_IMPLEMENTATION
#ifndef GENMOD_IMAGE_IMPLEMENTATION_INCLUDED
#define GENMOD_IMAGE_IMPLEMENTATION_INCLUDED
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* This implementation uses only genmod.h's public API, so it compiles in its own file as well as
   beside the core's; it brings the allocator fallbacks and the min/max the core keeps private. */
#if defined(GENMOD_MALLOC) != defined(GENMOD_FREE) || defined(GENMOD_MALLOC) != defined(GENMOD_REALLOC)
#error "genmod_image.h: define GENMOD_MALLOC, GENMOD_REALLOC and GENMOD_FREE together, or none of them"
#endif
#ifndef GENMOD_MALLOC
#define GENMOD_MALLOC(sz) malloc(sz)
#define GENMOD_REALLOC(p, sz) realloc(p, sz)
#define GENMOD_FREE(p) free(p)
#endif
#ifndef GM__MIN
#define GM__MIN(a, b) ((a) < (b) ? (a) : (b))
#define GM__MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

/* NaN and inf fail this test; written out so it does not depend on C99 classification macros,
 * which C++ headers and old compilers treat differently. */
static int gm__im_finite(double v) { return v == v && v - v == 0.0; }
static double gm__im_clampd(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* ---- images ---- */
static void gm__im_clear(gm_image *img) { if (img) { img->w = 0; img->h = 0; img->rgb = NULL; } }

/* Every image size goes through here, so no later w*h*3 can overflow. */
static int gm__im_check_size(const char *what, long long w, long long h) {
    if (w <= 0 || h <= 0)
        return gm_fail("%s: image size %lld x %lld: both sides must be positive", what, w, h);
    if (w > GM_IMAGE_MAX_SIDE || h > GM_IMAGE_MAX_SIDE)
        return gm_fail("%s: image size %lld x %lld: a side exceeds GM_IMAGE_MAX_SIDE (%d)", what, w, h,
                        GM_IMAGE_MAX_SIDE);
    if ((unsigned long long)w * (unsigned long long)h > (unsigned long long)((size_t)-1) / 3u)
        return gm_fail("%s: image size %lld x %lld does not fit in memory", what, w, h);
    return 0;
}

static int gm__im_alloc(gm_image *img, const char *what, long long w, long long h,
                        unsigned char r, unsigned char g, unsigned char b) {
    size_t i, npix;
    if (!img) return gm_fail("%s: output image is NULL", what);
    gm__im_clear(img);
    if (gm__im_check_size(what, w, h) != 0) return -1;
    npix = (size_t)w * (size_t)h;
    img->rgb = (unsigned char *)GENMOD_MALLOC(npix * 3);
    if (!img->rgb) return gm_fail("%s: out of memory for a %lld x %lld image", what, w, h);
    img->w = (int)w; img->h = (int)h;
    for (i = 0; i < npix; i++) { img->rgb[3*i] = r; img->rgb[3*i+1] = g; img->rgb[3*i+2] = b; }
    return 0;
}

GMDEF int gm_image_new(gm_image *img, int w, int h, unsigned char r, unsigned char g, unsigned char b) {
    return gm__im_alloc(img, "gm_image_new", w, h, r, g, b);
}

GMDEF void gm_image_free(gm_image *img) {
    if (!img) return;
    if (img->rgb) GENMOD_FREE(img->rgb);
    gm__im_clear(img);
}

static int gm__im_valid(const gm_image *img) {
    return img && img->rgb && img->w > 0 && img->h > 0 && img->w <= GM_IMAGE_MAX_SIDE && img->h <= GM_IMAGE_MAX_SIDE;
}

/* Blend colour c over pixel (x, y) with opacity a in [0, 1]; outside the image: nothing. */
static void gm__im_blend(gm_image *img, int x, int y, const unsigned char c[3], double a) {
    unsigned char *p;
    int k;
    if (x < 0 || y < 0 || x >= img->w || y >= img->h || !(a > 0)) return;
    if (a > 1) a = 1;
    p = img->rgb + ((size_t)y * (size_t)img->w + (size_t)x) * 3;
    for (k = 0; k < 3; k++) p[k] = (unsigned char)(p[k] + (c[k] - p[k]) * a + 0.5);   /* value >= 0: rounds */
}

static void gm__im_put(gm_image *img, int x, int y, const unsigned char c[3]) {
    unsigned char *p;
    if (x < 0 || y < 0 || x >= img->w || y >= img->h) return;
    p = img->rgb + ((size_t)y * (size_t)img->w + (size_t)x) * 3;
    p[0] = c[0]; p[1] = c[1]; p[2] = c[2];
}

/* Filled rectangle [x, x+w) x [y, y+h), clipped to the image. */
static void gm__im_rect(gm_image *img, int x, int y, int w, int h, const unsigned char c[3]) {
    int i, j, xa = GM__MAX(x, 0), ya = GM__MAX(y, 0);
    int xb = GM__MIN(x + w, img->w), yb = GM__MIN(y + h, img->h);
    for (j = ya; j < yb; j++)
        for (i = xa; i < xb; i++) gm__im_put(img, i, j, c);
}

static void gm__im_rgb(unsigned char c[3], int r, int g, int b) {
    c[0] = (unsigned char)r; c[1] = (unsigned char)g; c[2] = (unsigned char)b;
}

/* Anti-aliased filled disc: coverage falls off over one pixel at the rim. Only pixels inside
 * clip = {x, y, w, h} (a plot area) are touched. */
static void gm__im_disc(gm_image *img, const int clip[4], double cx, double cy, double r,
                        const unsigned char c[3], double alpha) {
    int x, y, xa, xb, ya, yb;
    if (!(cx > clip[0] - r - 2 && cx < clip[0] + clip[2] + r + 2 && cy > clip[1] - r - 2 &&
          cy < clip[1] + clip[3] + r + 2)) return;     /* far outside (and no huge int casts) */
    xa = GM__MAX((int)floor(cx - r - 1), clip[0]); xb = GM__MIN((int)ceil(cx + r + 1), clip[0] + clip[2] - 1);
    ya = GM__MAX((int)floor(cy - r - 1), clip[1]); yb = GM__MIN((int)ceil(cy + r + 1), clip[1] + clip[3] - 1);
    for (y = ya; y <= yb; y++)
        for (x = xa; x <= xb; x++) {
            double dx = x + 0.5 - cx, dy = y + 0.5 - cy, d = sqrt(dx*dx + dy*dy);
            double cov = gm__im_clampd(r + 0.5 - d, 0, 1);
            if (cov > 0) gm__im_blend(img, x, y, c, cov * alpha);
        }
}

/* ---- font ---- */
/* 5x8 cells, ASCII 32..126, drawn for this library. One byte per row, bit 4 is the leftmost
   column; rows 0-6 sit on the baseline, row 7 holds descenders (g j p q y , _). */
#define GM__IM_GLYPH_W 5
#define GM__IM_GLYPH_H 8
#define GM__IM_ADVANCE 6     /* glyph plus one column of space */
#define GM__IM_LINE 10       /* glyph plus two rows of space */
static const unsigned char gm__im_font[95][8] = {
    {0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x00}, /* ' ' */
    {0x04,0x04,0x04,0x04,0x04,0x00,0x04,0x00}, /* '!' */
    {0x0a,0x0a,0x0a,0x00,0x00,0x00,0x00,0x00}, /* '"' */
    {0x0a,0x0a,0x1f,0x0a,0x1f,0x0a,0x0a,0x00}, /* '#' */
    {0x04,0x0f,0x14,0x0e,0x05,0x1e,0x04,0x00}, /* '$' */
    {0x18,0x19,0x02,0x04,0x08,0x13,0x03,0x00}, /* '%' */
    {0x0c,0x12,0x14,0x08,0x15,0x12,0x0d,0x00}, /* '&' */
    {0x04,0x04,0x04,0x00,0x00,0x00,0x00,0x00}, /* "'" */
    {0x02,0x04,0x08,0x08,0x08,0x04,0x02,0x00}, /* '(' */
    {0x08,0x04,0x02,0x02,0x02,0x04,0x08,0x00}, /* ')' */
    {0x00,0x04,0x15,0x0e,0x15,0x04,0x00,0x00}, /* '*' */
    {0x00,0x04,0x04,0x1f,0x04,0x04,0x00,0x00}, /* '+' */
    {0x00,0x00,0x00,0x00,0x00,0x06,0x06,0x08}, /* ',' */
    {0x00,0x00,0x00,0x1f,0x00,0x00,0x00,0x00}, /* '-' */
    {0x00,0x00,0x00,0x00,0x00,0x0c,0x0c,0x00}, /* '.' */
    {0x01,0x01,0x02,0x04,0x08,0x10,0x10,0x00}, /* '/' */
    {0x0e,0x11,0x13,0x15,0x19,0x11,0x0e,0x00}, /* '0' */
    {0x04,0x0c,0x04,0x04,0x04,0x04,0x0e,0x00}, /* '1' */
    {0x0e,0x11,0x01,0x02,0x04,0x08,0x1f,0x00}, /* '2' */
    {0x1f,0x02,0x04,0x02,0x01,0x11,0x0e,0x00}, /* '3' */
    {0x02,0x06,0x0a,0x12,0x1f,0x02,0x02,0x00}, /* '4' */
    {0x1f,0x10,0x1e,0x01,0x01,0x11,0x0e,0x00}, /* '5' */
    {0x06,0x08,0x10,0x1e,0x11,0x11,0x0e,0x00}, /* '6' */
    {0x1f,0x01,0x02,0x04,0x08,0x08,0x08,0x00}, /* '7' */
    {0x0e,0x11,0x11,0x0e,0x11,0x11,0x0e,0x00}, /* '8' */
    {0x0e,0x11,0x11,0x0f,0x01,0x02,0x0c,0x00}, /* '9' */
    {0x00,0x0c,0x0c,0x00,0x0c,0x0c,0x00,0x00}, /* ':' */
    {0x00,0x0c,0x0c,0x00,0x0c,0x0c,0x08,0x00}, /* ';' */
    {0x02,0x04,0x08,0x10,0x08,0x04,0x02,0x00}, /* '<' */
    {0x00,0x00,0x1f,0x00,0x1f,0x00,0x00,0x00}, /* '=' */
    {0x08,0x04,0x02,0x01,0x02,0x04,0x08,0x00}, /* '>' */
    {0x0e,0x11,0x01,0x02,0x04,0x00,0x04,0x00}, /* '?' */
    {0x0e,0x11,0x17,0x15,0x17,0x10,0x0f,0x00}, /* '@' */
    {0x0e,0x11,0x11,0x1f,0x11,0x11,0x11,0x00}, /* 'A' */
    {0x1e,0x11,0x11,0x1e,0x11,0x11,0x1e,0x00}, /* 'B' */
    {0x0e,0x11,0x10,0x10,0x10,0x11,0x0e,0x00}, /* 'C' */
    {0x1c,0x12,0x11,0x11,0x11,0x12,0x1c,0x00}, /* 'D' */
    {0x1f,0x10,0x10,0x1e,0x10,0x10,0x1f,0x00}, /* 'E' */
    {0x1f,0x10,0x10,0x1e,0x10,0x10,0x10,0x00}, /* 'F' */
    {0x0e,0x11,0x10,0x17,0x11,0x11,0x0f,0x00}, /* 'G' */
    {0x11,0x11,0x11,0x1f,0x11,0x11,0x11,0x00}, /* 'H' */
    {0x0e,0x04,0x04,0x04,0x04,0x04,0x0e,0x00}, /* 'I' */
    {0x07,0x02,0x02,0x02,0x02,0x12,0x0c,0x00}, /* 'J' */
    {0x11,0x12,0x14,0x18,0x14,0x12,0x11,0x00}, /* 'K' */
    {0x10,0x10,0x10,0x10,0x10,0x10,0x1f,0x00}, /* 'L' */
    {0x11,0x1b,0x15,0x15,0x11,0x11,0x11,0x00}, /* 'M' */
    {0x11,0x11,0x19,0x15,0x13,0x11,0x11,0x00}, /* 'N' */
    {0x0e,0x11,0x11,0x11,0x11,0x11,0x0e,0x00}, /* 'O' */
    {0x1e,0x11,0x11,0x1e,0x10,0x10,0x10,0x00}, /* 'P' */
    {0x0e,0x11,0x11,0x11,0x15,0x12,0x0d,0x00}, /* 'Q' */
    {0x1e,0x11,0x11,0x1e,0x14,0x12,0x11,0x00}, /* 'R' */
    {0x0f,0x10,0x10,0x0e,0x01,0x01,0x1e,0x00}, /* 'S' */
    {0x1f,0x04,0x04,0x04,0x04,0x04,0x04,0x00}, /* 'T' */
    {0x11,0x11,0x11,0x11,0x11,0x11,0x0e,0x00}, /* 'U' */
    {0x11,0x11,0x11,0x11,0x11,0x0a,0x04,0x00}, /* 'V' */
    {0x11,0x11,0x11,0x15,0x15,0x15,0x0a,0x00}, /* 'W' */
    {0x11,0x11,0x0a,0x04,0x0a,0x11,0x11,0x00}, /* 'X' */
    {0x11,0x11,0x0a,0x04,0x04,0x04,0x04,0x00}, /* 'Y' */
    {0x1f,0x01,0x02,0x04,0x08,0x10,0x1f,0x00}, /* 'Z' */
    {0x0e,0x08,0x08,0x08,0x08,0x08,0x0e,0x00}, /* '[' */
    {0x10,0x10,0x08,0x04,0x02,0x01,0x01,0x00}, /* '\\' */
    {0x0e,0x02,0x02,0x02,0x02,0x02,0x0e,0x00}, /* ']' */
    {0x04,0x0a,0x11,0x00,0x00,0x00,0x00,0x00}, /* '^' */
    {0x00,0x00,0x00,0x00,0x00,0x00,0x00,0x1f}, /* '_' */
    {0x08,0x04,0x00,0x00,0x00,0x00,0x00,0x00}, /* '`' */
    {0x00,0x00,0x0e,0x01,0x0f,0x11,0x0f,0x00}, /* 'a' */
    {0x10,0x10,0x16,0x19,0x11,0x11,0x1e,0x00}, /* 'b' */
    {0x00,0x00,0x0e,0x10,0x10,0x11,0x0e,0x00}, /* 'c' */
    {0x01,0x01,0x0d,0x13,0x11,0x11,0x0f,0x00}, /* 'd' */
    {0x00,0x00,0x0e,0x11,0x1f,0x10,0x0e,0x00}, /* 'e' */
    {0x06,0x09,0x08,0x1c,0x08,0x08,0x08,0x00}, /* 'f' */
    {0x00,0x00,0x0f,0x11,0x11,0x0f,0x01,0x0e}, /* 'g' */
    {0x10,0x10,0x16,0x19,0x11,0x11,0x11,0x00}, /* 'h' */
    {0x04,0x00,0x0c,0x04,0x04,0x04,0x0e,0x00}, /* 'i' */
    {0x02,0x00,0x06,0x02,0x02,0x02,0x12,0x0c}, /* 'j' */
    {0x10,0x10,0x12,0x14,0x18,0x14,0x12,0x00}, /* 'k' */
    {0x0c,0x04,0x04,0x04,0x04,0x04,0x0e,0x00}, /* 'l' */
    {0x00,0x00,0x1a,0x15,0x15,0x15,0x15,0x00}, /* 'm' */
    {0x00,0x00,0x16,0x19,0x11,0x11,0x11,0x00}, /* 'n' */
    {0x00,0x00,0x0e,0x11,0x11,0x11,0x0e,0x00}, /* 'o' */
    {0x00,0x00,0x1e,0x11,0x11,0x1e,0x10,0x10}, /* 'p' */
    {0x00,0x00,0x0f,0x11,0x11,0x0f,0x01,0x01}, /* 'q' */
    {0x00,0x00,0x16,0x19,0x10,0x10,0x10,0x00}, /* 'r' */
    {0x00,0x00,0x0f,0x10,0x0e,0x01,0x1e,0x00}, /* 's' */
    {0x08,0x08,0x1c,0x08,0x08,0x09,0x06,0x00}, /* 't' */
    {0x00,0x00,0x11,0x11,0x11,0x13,0x0d,0x00}, /* 'u' */
    {0x00,0x00,0x11,0x11,0x11,0x0a,0x04,0x00}, /* 'v' */
    {0x00,0x00,0x11,0x11,0x15,0x15,0x0a,0x00}, /* 'w' */
    {0x00,0x00,0x11,0x0a,0x04,0x0a,0x11,0x00}, /* 'x' */
    {0x00,0x00,0x11,0x11,0x11,0x0f,0x01,0x0e}, /* 'y' */
    {0x00,0x00,0x1f,0x02,0x04,0x08,0x1f,0x00}, /* 'z' */
    {0x02,0x04,0x04,0x08,0x04,0x04,0x02,0x00}, /* '{' */
    {0x04,0x04,0x04,0x04,0x04,0x04,0x04,0x04}, /* '|' */
    {0x08,0x04,0x04,0x02,0x04,0x04,0x08,0x00}, /* '}' */
    {0x00,0x00,0x08,0x15,0x02,0x00,0x00,0x00}, /* '~' */
};

static const unsigned char *gm__im_glyph(int ch) {
    if (ch < 32 || ch > 126) ch = '?';
    return gm__im_font[ch - 32];
}

GMDEF int gm_text_width(const char *s, int scale) {
    int best = 0, cur = 0;
    if (!s || scale < 1) return 0;
    for (; *s; s++) {
        if (*s == '\n') { cur = 0; continue; }
        cur++;
        if (cur > best) best = cur;
    }
    return best > 0 ? (best * GM__IM_ADVANCE - 1) * scale : 0;
}

static int gm__im_text_height(int scale) { return GM__IM_GLYPH_H * scale; }

/* Text drawn left to right (vertical = 0) or bottom to top (vertical = 1, for a y-axis name:
 * (x, y) is then the bottom-left corner of the rotated text). */
static void gm__im_draw_text(gm_image *img, int x, int y, const char *s, int scale, const unsigned char c[3],
                             int vertical) {
    int pen = 0, line = 0, row, col;
    if (!img || !img->rgb || !s || scale < 1) return;
    for (; *s; s++) {
        const unsigned char *gl;
        if (*s == '\n') { pen = 0; line++; continue; }
        gl = gm__im_glyph((unsigned char)*s);
        for (row = 0; row < GM__IM_GLYPH_H; row++)
            for (col = 0; col < GM__IM_GLYPH_W; col++) {
                int gx, gy;
                if (!(gl[row] & (0x10 >> col))) continue;
                gx = (pen * GM__IM_ADVANCE + col) * scale;
                gy = (line * GM__IM_LINE + row) * scale;
                if (vertical) gm__im_rect(img, x + gy, y - gx - scale + 1, scale, scale, c);
                else gm__im_rect(img, x + gx, y + gy, scale, scale, c);
            }
        pen++;
    }
}

GMDEF void gm_image_text(gm_image *img, int x, int y, const char *s, int scale,
                         unsigned char r, unsigned char g, unsigned char b) {
    unsigned char c[3];
    gm__im_rgb(c, r, g, b);
    if (gm__im_valid(img)) gm__im_draw_text(img, x, y, s, scale, c, 0);
}

/* ---- colours ---- */
/* Ten evenly spaced samples of the viridis ramp (dark blue-violet -> teal -> green -> yellow):
 * lightness rises steadily, so equal steps in value look like equal steps in colour, and it
 * stays readable in grey and for colour-blind viewers. Linear interpolation in between. */
static const unsigned char gm__im_ramp[10][3] = {
    {68, 1, 84}, {72, 40, 120}, {62, 73, 137}, {49, 104, 142}, {38, 130, 142},
    {31, 158, 137}, {53, 183, 121}, {110, 206, 88}, {181, 222, 43}, {253, 231, 37}
};

GMDEF void gm_colormap(float t, unsigned char rgb[3]) {
    double u, f;
    int i, k;
    if (!rgb) return;
    if (t != t) { gm__im_rgb(rgb, GM_NAN_COLOR_R, GM_NAN_COLOR_G, GM_NAN_COLOR_B); return; }
    u = gm__im_clampd(t, 0, 1) * 9.0;
    i = (int)u;
    if (i > 8) i = 8;
    f = u - i;
    for (k = 0; k < 3; k++)
        rgb[k] = (unsigned char)(gm__im_ramp[i][k] + (gm__im_ramp[i+1][k] - gm__im_ramp[i][k]) * f + 0.5);
}

/* Qualitative palette (the widely used "Tableau 10" hues): ten colours that stay apart from
 * each other, on white, and in the order people expect (blue, orange, green, red, ...). */
static const unsigned char gm__im_pal[GM_PALETTE_SIZE][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189},
    {140, 86, 75}, {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}
};

GMDEF void gm_palette(int k, unsigned char rgb[3]) {
    if (!rgb) return;
    k %= GM_PALETTE_SIZE;
    if (k < 0) k += GM_PALETTE_SIZE;
    rgb[0] = gm__im_pal[k][0]; rgb[1] = gm__im_pal[k][1]; rgb[2] = gm__im_pal[k][2];
}

/* ---- grids and panels ---- */
#define GM__IM_GRID_BG 255   /* padding between tiles: white, like the paper the grid sits on */

static unsigned char gm__im_to_byte(float v, float lo, float hi) {
    double t = ((double)v - lo) / ((double)hi - lo) * 255.0;
    if (!(t > 0)) return 0;     /* also -inf: clamps like any small value */
    if (t >= 255) return 255;
    return (unsigned char)(t + 0.5);
}

static int gm__im_grid_check(const float *x, int n, int c, int h, int w, int pad, float lo, float hi) {
    const char *f = "gm_image_grid";
    if (!x) return gm_fail("%s: input is NULL", f);
    if (n <= 0) return gm_fail("%s: n = %d images: need at least one", f, n);
    if (c != 1 && c != 3) return gm_fail("%s: c = %d channels: must be 1 (grey) or 3 (RGB)", f, c);
    if (h <= 0 || w <= 0 || h > GM_IMAGE_MAX_SIDE || w > GM_IMAGE_MAX_SIDE)
        return gm_fail("%s: tile size %d x %d: sides must be in 1..%d", f, w, h, GM_IMAGE_MAX_SIDE);
    if (pad < 0 || pad > GM_IMAGE_MAX_SIDE) return gm_fail("%s: pad = %d must be in 0..%d", f, pad, GM_IMAGE_MAX_SIDE);
    if (!gm__im_finite(lo) || !gm__im_finite(hi) || lo == hi)
        return gm_fail("%s: value range [%g, %g] must be finite and non-empty", f, (double)lo, (double)hi);
    if ((size_t)n > ((size_t)-1) / sizeof(float) / 3 / (size_t)h / (size_t)w)
        return gm_fail("%s: %d images of %dx%dx%d floats overflow the address space", f, n, c, h, w);
    return 0;
}

GMDEF int gm_image_grid(gm_image *out, const float *x, int n, int c, int h, int w, int cols, int pad,
                        float lo, float hi) {
    long long rows, W, H;
    int i, yy, xx, k;
    size_t plane = (size_t)(h > 0 ? h : 0) * (size_t)(w > 0 ? w : 0);
    gm__im_clear(out);
    if (!out) return gm_fail("gm_image_grid: output image is NULL");
    if (gm__im_grid_check(x, n, c, h, w, pad, lo, hi) != 0) return -1;
    if (cols <= 0) cols = (int)ceil(sqrt((double)n));
    rows = (n + (long long)cols - 1) / cols;
    W = (long long)cols * (w + pad) + pad;
    H = rows * (h + pad) + pad;
    if (gm__im_alloc(out, "gm_image_grid", W, H, GM__IM_GRID_BG, GM__IM_GRID_BG, GM__IM_GRID_BG) != 0) return -1;
    for (i = 0; i < n; i++) {
        const float *src = x + (size_t)i * (size_t)c * plane;
        int ox = pad + (i % cols) * (w + pad), oy = pad + (i / cols) * (h + pad);
        for (yy = 0; yy < h; yy++)
            for (xx = 0; xx < w; xx++) {
                unsigned char px[3];
                int nan = 0;
                for (k = 0; k < 3; k++) {
                    float v = src[(size_t)(c == 3 ? k : 0) * plane + (size_t)yy * w + xx];
                    if (v != v) nan = 1;
                    px[k] = gm__im_to_byte(v, lo, hi);
                }
                if (nan) gm__im_rgb(px, GM_NAN_COLOR_R, GM_NAN_COLOR_G, GM_NAN_COLOR_B);
                gm__im_put(out, ox + xx, oy + yy, px);
            }
    }
    return 0;
}

GMDEF int gm_image_upscale(gm_image *out, const gm_image *in, int factor) {
    int x, y;
    gm__im_clear(out);
    if (!gm__im_valid(in)) return gm_fail("gm_image_upscale: input image is NULL or empty");
    if (factor < 1) return gm_fail("gm_image_upscale: factor = %d must be at least 1", factor);
    if (gm__im_alloc(out, "gm_image_upscale", (long long)in->w * factor, (long long)in->h * factor, 0, 0, 0) != 0)
        return -1;
    for (y = 0; y < out->h; y++)
        for (x = 0; x < out->w; x++)
            gm__im_put(out, x, y, in->rgb + ((size_t)(y / factor) * (size_t)in->w + (size_t)(x / factor)) * 3);
    return 0;
}

static void gm__im_blit(gm_image *dst, const gm_image *src, int ox, int oy) {
    int y;
    for (y = 0; y < src->h; y++) {
        int x;
        for (x = 0; x < src->w; x++)
            gm__im_put(dst, ox + x, oy + y, src->rgb + ((size_t)y * (size_t)src->w + (size_t)x) * 3);
    }
}

/* Caption scale: small panels (digit grids) get the 1x font, larger ones 2x. */
static int gm__im_caption_scale(const gm_image *panels, int n) {
    int i, wmin = INT_MAX;
    for (i = 0; i < n; i++) wmin = GM__MIN(wmin, panels[i].w);
    return wmin >= 200 ? 2 : 1;
}

/* hstack and vstack share this: horizontal = 1 places panels left to right. */
static int gm__im_stack(gm_image *out, const gm_image *panels, int n, const char *const *captions, int pad,
                        int horizontal, const char *f) {
    long long W = 0, H = 0;
    int i, ts, caph = 0, pos;
    unsigned char ink[3];
    gm__im_clear(out);
    if (!out) return gm_fail("%s: output image is NULL", f);
    if (!panels || n <= 0) return gm_fail("%s: need at least one panel (n = %d)", f, n);
    if (pad < 0 || pad > GM_IMAGE_MAX_SIDE) return gm_fail("%s: pad = %d must be in 0..%d", f, pad, GM_IMAGE_MAX_SIDE);
    for (i = 0; i < n; i++)
        if (!gm__im_valid(&panels[i])) return gm_fail("%s: panel %d is empty or invalid", f, i);
    ts = gm__im_caption_scale(panels, n);
    for (i = 0; captions && i < n; i++)
        if (captions[i] && captions[i][0]) caph = gm__im_text_height(ts) + 4 * ts;
    for (i = 0; i < n; i++) {
        long long cw = GM__MAX(panels[i].w, captions && captions[i] ? gm_text_width(captions[i], ts) : 0);
        long long ch = panels[i].h + caph;
        if (horizontal) { W += cw + pad; H = H > ch ? H : ch; }
        else { H += ch + pad; W = W > cw ? W : cw; }
        if (W > GM_IMAGE_MAX_SIDE || H > GM_IMAGE_MAX_SIDE) break;   /* stop summing: size check below fails */
    }
    if (horizontal) { W += pad; H += 2 * pad; } else { H += pad; W += 2 * pad; }
    if (gm__im_alloc(out, f, W, H, 255, 255, 255) != 0) return -1;
    gm__im_rgb(ink, 40, 40, 40);
    pos = pad;
    for (i = 0; i < n; i++) {
        const char *cap = captions ? captions[i] : NULL;
        int cw = GM__MAX(panels[i].w, cap ? gm_text_width(cap, ts) : 0);
        int ox = horizontal ? pos : pad, oy = horizontal ? pad : pos;
        if (cap) gm__im_draw_text(out, ox + (cw - gm_text_width(cap, ts)) / 2, oy + ts, cap, ts, ink, 0);
        gm__im_blit(out, &panels[i], ox + (cw - panels[i].w) / 2, oy + caph);
        pos += (horizontal ? cw : panels[i].h + caph) + pad;
    }
    return 0;
}

GMDEF int gm_image_hstack(gm_image *out, const gm_image *panels, int n, const char *const *captions, int pad) {
    return gm__im_stack(out, panels, n, captions, pad, 1, "gm_image_hstack");
}

GMDEF int gm_image_vstack(gm_image *out, const gm_image *panels, int n, const char *const *captions, int pad) {
    return gm__im_stack(out, panels, n, captions, pad, 0, "gm_image_vstack");
}

/* ---- axis ticks ---- */
#define GM__IM_MAXT 32
#define GM__IM_MAXMINOR 96
#define GM__IM_LABEL 32

/* The smallest step of the form {1, 2, 5} x 10^k that puts at most maxn ticks in [lo, hi]. */
static double gm__im_nice_step(double lo, double hi, int maxn) {
    static const double mant[3] = {1, 2, 5};
    int e, k, guard;
    if (maxn < 2) maxn = 2;
    e = (int)floor(log10((hi - lo) / maxn)) - 1;
    for (guard = 0; guard < 64; guard++, e++)
        for (k = 0; k < 3; k++) {
            double step = mant[k] * pow(10.0, e);
            double cnt = floor(hi / step + 1e-9) - ceil(lo / step - 1e-9) + 1;
            if (cnt <= maxn) return step;
        }
    return hi - lo;
}

/* Tick values: multiples of a nice step inside [lo, hi] (ends included up to rounding).
 * Returns the count (0 when the range is unusable); *step_out gets the step. */
static int gm__im_nice_ticks(double lo, double hi, int maxn, double *ticks, int cap, double *step_out) {
    double step, first;
    int n = 0;
    if (step_out) *step_out = 0;
    if (!gm__im_finite(lo) || !gm__im_finite(hi) || cap <= 0) return 0;
    if (hi < lo) { double t = lo; lo = hi; hi = t; }
    if (hi == lo) { ticks[0] = lo; return 1; }
    step = gm__im_nice_step(lo, hi, maxn);
    first = ceil(lo / step - 1e-9);
    for (; n < cap && (first + n) * step <= hi + step * 1e-9; n++) {
        double t = (first + n) * step;
        ticks[n] = fabs(t) < step * 1e-9 ? 0.0 : t;   /* no "-0" and no 1e-17 for zero */
    }
    if (step_out) *step_out = step;
    return n;
}

/* Removes trailing zeros of a mantissa ("2.50e6" -> "2.5e6", "3.00" -> "3"). */
static void gm__im_trim_zeros(char *s) {
    char *dot = strchr(s, '.'), *e, *end;
    char tail[GM__IM_LABEL];
    if (!dot) return;
    e = strchr(s, 'e');
    end = e ? e : s + strlen(s);
    strcpy(tail, end);
    while (end > dot + 1 && end[-1] == '0') end--;
    if (end == dot + 1) end--;
    strcpy(end, tail);
}

/* Tick label for v on an axis with the given step: fixed-point with just enough decimals for
 * the step, or a compact exponent form ("2.5e-6", "1e12") for very small or large numbers. */
static void gm__im_fmt_tick(char *buf, double v, double step, double maxabs) {
    if (v == 0 || (step > 0 && fabs(v) < step * 1e-6)) { strcpy(buf, "0"); return; }
    if (maxabs < 1e6 && (step <= 0 || step >= 1e-5)) {
        int dec = step >= 1 || step <= 0 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, GM__IM_LABEL, "%.*f", dec, v);
    } else {
        int p = (int)floor(log10(fabs(v))) - (step > 0 ? (int)floor(log10(step) + 1e-9) : 0);
        char raw[GM__IM_LABEL], *e;
        int ex;
        snprintf(raw, sizeof raw, "%.*e", p < 0 ? 0 : (p > 6 ? 6 : p), v);
        e = strchr(raw, 'e');
        if (!e) { strcpy(buf, raw); return; }
        ex = atoi(e + 1);
        *e = 0;
        gm__im_trim_zeros(raw);
        snprintf(buf, GM__IM_LABEL, "%.16se%d", raw, ex);
    }
}

typedef struct gm__im_axis {
    double lo, hi;                  /* shown range in axis units (log10 of the value on a log axis) */
    int log;
    int n;
    double at[GM__IM_MAXT];         /* tick positions in axis units */
    char lab[GM__IM_MAXT][GM__IM_LABEL];
    int nminor;
    double minor[GM__IM_MAXMINOR];  /* faint grid lines (log axes: 2..9 x 10^k) */
} gm__im_axis;

static void gm__im_axis_linear(gm__im_axis *a, int maxn, int logpos) {
    double v[GM__IM_MAXT], step, maxabs = 0, lo = a->lo, hi = a->hi;
    int i, n;
    if (logpos) { lo = pow(10.0, lo); hi = pow(10.0, hi); }
    n = gm__im_nice_ticks(lo, hi, maxn, v, GM__IM_MAXT, &step);
    a->n = 0;
    for (i = 0; i < n; i++) if (fabs(v[i]) > maxabs) maxabs = fabs(v[i]);
    for (i = 0; i < n; i++) {
        if (logpos && !(v[i] > 0)) continue;
        a->at[a->n] = logpos ? log10(v[i]) : v[i];
        gm__im_fmt_tick(a->lab[a->n], v[i], step, maxabs);
        a->n++;
    }
}

/* Log axis spanning at least a decade: ticks at powers of ten (every s-th), minor lines at
 * 2..9 x 10^k when every decade is labelled. Narrower: linear nice ticks placed on the log axis. */
static void gm__im_axis_log(gm__im_axis *a, int maxn) {
    static const int strides[6] = {1, 2, 3, 5, 10, 20};
    int kmin = (int)ceil(a->lo - 1e-9), kmax = (int)floor(a->hi + 1e-9), s = 1, i, k;
    if (kmax - kmin < 1) { gm__im_axis_linear(a, maxn, 1); return; }
    for (i = 0; i < 6; i++) { s = strides[i]; if ((kmax - kmin) / s + 1 <= maxn) break; }
    a->n = 0;
    for (k = kmin - 1; k <= kmax && a->n < GM__IM_MAXT - 3; k++) {
        int m;
        if (((k % s) + s) % s) continue;
        /* 1 x 10^k always; 2 and 5 x 10^k too when only two or three decades show */
        for (m = 1; m <= 5; m += (m == 1 ? 1 : 3)) {
            double at = k + log10((double)m);
            if ((m > 1 && kmax - kmin > 2) || at < a->lo - 1e-9 || at > a->hi + 1e-9) continue;
            a->at[a->n] = at;
            if (k >= -4 && k <= 5) snprintf(a->lab[a->n], GM__IM_LABEL, "%.*f", k < 0 ? -k : 0, m * pow(10.0, k));
            else snprintf(a->lab[a->n], GM__IM_LABEL, "%de%d", m, k);
            a->n++;
        }
    }
    a->nminor = 0;
    if (s != 1 || a->hi - a->lo > 12) return;
    for (k = kmin - 1; k <= kmax; k++)
        for (i = 2; i <= 9 && a->nminor < GM__IM_MAXMINOR; i++) {
            double at = k + log10((double)i);
            if (at > a->lo && at < a->hi) a->minor[a->nminor++] = at;
        }
}

static void gm__im_axis_ticks(gm__im_axis *a, int maxn) {
    a->nminor = 0;
    if (a->log) gm__im_axis_log(a, maxn);
    else gm__im_axis_linear(a, maxn, 0);
}

/* Data range -> shown range: an empty range is widened, then pad * span added on both sides. */
static void gm__im_range(double *lo, double *hi, double pad) {
    double span;
    if (*hi < *lo) { double t = *lo; *lo = *hi; *hi = t; }
    if (*hi == *lo) {
        double d = *lo != 0 ? fabs(*lo) * 0.1 : 1.0;
        *lo -= d; *hi += d;
    }
    span = *hi - *lo;
    *lo -= pad * span; *hi += pad * span;
}

static int gm__im_max_label_width(const gm__im_axis *a, int ts) {
    int i, m = 0;
    for (i = 0; i < a->n; i++) m = GM__MAX(m, gm_text_width(a->lab[i], ts));
    return m;
}

/* ---- figure: plot area, axes, title ---- */
typedef struct gm__im_fig {
    gm_image *img;
    const gm_plot_opts *o;
    int x, y, w, h;        /* plot area in pixels */
    gm__im_axis ax, ay;
    int ts;                /* scale of tick labels and legends; titles use 2 * ts */
    int top_extra_y;       /* top of the band reserved above the plot (legend row) */
    char note[96];         /* small remark under the plot (skipped points), or "" */
} gm__im_fig;

static const unsigned char gm__im_ink[3] = {35, 35, 40};      /* titles */
static const unsigned char gm__im_ink2[3] = {80, 80, 88};     /* tick labels, frame */
static const unsigned char gm__im_gridc[3] = {226, 226, 232};
static const unsigned char gm__im_gridm[3] = {241, 241, 245};
static const unsigned char gm__im_areac[3] = {252, 252, 253};

static double gm__im_px(const gm__im_fig *f, double v) {
    return f->x + 0.5 + (v - f->ax.lo) / (f->ax.hi - f->ax.lo) * (f->w - 1);
}
static double gm__im_py(const gm__im_fig *f, double v) {
    return f->y + 0.5 + (1.0 - (v - f->ay.lo) / (f->ay.hi - f->ay.lo)) * (f->h - 1);
}

/* Fits the plot area into the picture around the margins the labels need. right: pixels
 * reserved right of the plot (legend, colour bar); top_extra: pixels above it (legend row);
 * aspect > 0: make the area's width/height equal to it (a density over the plane). */
static void gm__im_fig_layout(gm__im_fig *f, int right, int top_extra, double aspect) {
    const gm_plot_opts *o = f->o;
    int ts = f->ts, lh = gm__im_text_height(ts), pass, left, top, bottom, maxn;
    top = 10 + (o->title && o->title[0] ? gm__im_text_height(2 * ts) + 10 : 4);
    f->top_extra_y = top;
    top += top_extra;
    bottom = 6 + lh + 8 + (o->xlabel && o->xlabel[0] ? lh + 8 : 0) + (f->note[0] ? lh + 6 : 0) + 6;
    f->h = o->h - top - bottom;
    f->w = o->w - right - 60;      /* first guess, corrected below */
    f->y = top;
    for (pass = 0; pass < 2; pass++) {
        maxn = GM__MAX(3, GM__MIN(10, f->h / (lh * 4)));
        gm__im_axis_ticks(&f->ay, maxn);
        left = 10 + (o->ylabel && o->ylabel[0] ? lh + 8 : 0) + gm__im_max_label_width(&f->ay, ts) + 8;
        f->x = left;
        f->w = o->w - left - right - 14;
        f->h = o->h - top - bottom;
        if (aspect > 0 && f->w > 0 && f->h > 0) {
            int avail = f->w;
            if (f->w > f->h * aspect) f->w = (int)(f->h * aspect + 0.5);
            else f->h = (int)(f->w / aspect + 0.5);
            f->x += (avail - f->w) / 2;    /* centre the narrower area (and what sits right of it) */
        }
    }
    /* x ticks: as many as fit with room between the labels */
    for (maxn = 10; maxn >= 2; maxn--) {
        gm__im_axis_ticks(&f->ax, maxn);
        if (f->ax.n * (gm__im_max_label_width(&f->ax, ts) + 16 * ts) <= f->w) break;
    }
}

static void gm__im_fig_background(gm__im_fig *f) {
    int i;
    gm__im_rect(f->img, f->x, f->y, f->w, f->h, gm__im_areac);
    for (i = 0; i < f->ay.nminor; i++)
        gm__im_rect(f->img, f->x, (int)gm__im_py(f, f->ay.minor[i]), f->w, 1, gm__im_gridm);
    for (i = 0; i < f->ax.n; i++)
        gm__im_rect(f->img, (int)gm__im_px(f, f->ax.at[i]), f->y, 1, f->h, gm__im_gridc);
    for (i = 0; i < f->ay.n; i++)
        gm__im_rect(f->img, f->x, (int)gm__im_py(f, f->ay.at[i]), f->w, 1, gm__im_gridc);
}

/* Frame, ticks, tick labels, axis names, title and note: drawn after the data, on top. */
static void gm__im_fig_finish(gm__im_fig *f) {
    gm_image *img = f->img;
    const gm_plot_opts *o = f->o;
    int ts = f->ts, lh = gm__im_text_height(ts), i, ybase = f->y + f->h;
    gm__im_rect(img, f->x - 1, f->y - 1, f->w + 2, 1, gm__im_ink2);
    gm__im_rect(img, f->x - 1, ybase, f->w + 2, 1, gm__im_ink2);
    gm__im_rect(img, f->x - 1, f->y - 1, 1, f->h + 2, gm__im_ink2);
    gm__im_rect(img, f->x + f->w, f->y - 1, 1, f->h + 2, gm__im_ink2);
    for (i = 0; i < f->ax.n; i++) {
        int px = (int)gm__im_px(f, f->ax.at[i]), tw = gm_text_width(f->ax.lab[i], ts);
        gm__im_rect(img, px, ybase + 1, 1, 4, gm__im_ink2);
        gm__im_draw_text(img, px - tw / 2, ybase + 8, f->ax.lab[i], ts, gm__im_ink2, 0);
    }
    for (i = 0; i < f->ay.n; i++) {
        int py = (int)gm__im_py(f, f->ay.at[i]), tw = gm_text_width(f->ay.lab[i], ts);
        gm__im_rect(img, f->x - 5, py, 4, 1, gm__im_ink2);
        gm__im_draw_text(img, f->x - 8 - tw, py - lh / 2 + ts, f->ay.lab[i], ts, gm__im_ink2, 0);
    }
    if (o->xlabel && o->xlabel[0])
        gm__im_draw_text(img, f->x + (f->w - gm_text_width(o->xlabel, ts)) / 2, ybase + 8 + lh + 8,
                         o->xlabel, ts, gm__im_ink, 0);
    if (o->ylabel && o->ylabel[0])
        gm__im_draw_text(img, f->x - 16 - gm__im_max_label_width(&f->ay, ts) - lh,
                         f->y + (f->h + gm_text_width(o->ylabel, ts)) / 2, o->ylabel, ts, gm__im_ink, 1);
    if (o->title && o->title[0])
        gm__im_draw_text(img, f->x + (f->w - gm_text_width(o->title, 2 * ts)) / 2, 10, o->title, 2 * ts, gm__im_ink, 0);
    if (f->note[0]) {
        unsigned char warn[3];
        gm__im_rgb(warn, 190, 40, 40);
        gm__im_draw_text(img, f->x, img->h - 6 - lh, f->note, ts, warn, 0);
    }
}

GMDEF gm_plot_opts gm_plot_defaults(void) {
    gm_plot_opts o;
    memset(&o, 0, sizeof o);
    o.w = 800; o.h = 560;
    o.x_step = 1;
    return o;
}

/* Checks the options shared by all plots and starts the figure with a white picture. */
static int gm__im_fig_begin(gm__im_fig *f, gm_image *out, const gm_plot_opts *o, const char *fn) {
    memset(f, 0, sizeof *f);
    gm__im_clear(out);
    if (!out) return gm_fail("%s: output image is NULL", fn);
    if (o->w < 160 || o->h < 120 || o->w > GM_IMAGE_MAX_SIDE || o->h > GM_IMAGE_MAX_SIDE)
        return gm_fail("%s: plot size %d x %d: must be at least 160 x 120 and at most %d a side", fn, o->w,
                        o->h, GM_IMAGE_MAX_SIDE);
    if (o->fixed_x && !(gm__im_finite(o->x0) && gm__im_finite(o->x1) && o->x0 < o->x1))
        return gm_fail("%s: fixed x range [%g, %g] must be finite with x0 < x1", fn, (double)o->x0, (double)o->x1);
    if (o->fixed_y && !(gm__im_finite(o->y0) && gm__im_finite(o->y1) && o->y0 < o->y1))
        return gm_fail("%s: fixed y range [%g, %g] must be finite with y0 < y1", fn, (double)o->y0, (double)o->y1);
    f->img = out;
    f->o = o;
    f->ts = (o->w >= 1400 && o->h >= 1000) ? 2 : 1;
    return 0;
}

static int gm__im_fig_alloc(gm__im_fig *f, const char *fn) {
    if (f->w < 40 || f->h < 30)
        return gm_fail("%s: %d x %d is too small for the plot area once titles, labels and legend take "
                        "their room", fn, f->o->w, f->o->h);
    if (gm__im_alloc(f->img, fn, f->o->w, f->o->h, 255, 255, 255) != 0) return -1;
    gm__im_fig_background(f);
    return 0;
}

/* ---- scatter ---- */
static int gm__im_scatter_check(const float *xy, int n, const int *labels, int nlabels) {
    int i;
    if (!xy) return gm_fail("gm_plot_scatter: points are NULL");
    if (n <= 0) return gm_fail("gm_plot_scatter: n = %d points: need at least one", n);
    if (!labels) return 0;
    if (nlabels < 1 || nlabels > GM_PALETTE_SIZE)
        return gm_fail("gm_plot_scatter: nlabels = %d: must be in 1..%d (one distinct colour each)", nlabels,
                        GM_PALETTE_SIZE);
    for (i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= nlabels)
            return gm_fail("gm_plot_scatter: labels[%d] = %d is outside 0..%d", i, labels[i], nlabels - 1);
    return 0;
}

static void gm__im_label_name(char *buf, size_t cap, const char *const *names, int k, const char *fallback) {
    if (names && names[k]) snprintf(buf, cap, "%s", names[k]);
    else snprintf(buf, cap, "%s%d", fallback, k);
}

/* Legend in the band right of the plot: a dot and a name per label. */
static void gm__im_scatter_legend(gm__im_fig *f, int nlabels, const char *const *names) {
    int k, lh = gm__im_text_height(f->ts), row = lh + 8 * f->ts, x = f->x + f->w + 18;
    int clip[4];
    clip[0] = 0; clip[1] = 0; clip[2] = f->img->w; clip[3] = f->img->h;
    for (k = 0; k < nlabels; k++) {
        unsigned char c[3];
        char name[64];
        int y = f->y + 4 + k * row;
        gm_palette(k, c);
        gm__im_label_name(name, sizeof name, names, k, "");
        gm__im_disc(f->img, clip, x + 4.5, y + lh / 2.0, 4.0 * f->ts, c, 1.0);
        gm__im_draw_text(f->img, x + 14 * f->ts, y, name, f->ts, gm__im_ink, 0);
    }
}

static int gm__im_scatter_legend_width(int nlabels, const char *const *names, int ts) {
    int k, m = 0;
    char name[64];
    for (k = 0; k < nlabels; k++) {
        gm__im_label_name(name, sizeof name, names, k, "");
        m = GM__MAX(m, gm_text_width(name, ts));
    }
    return 18 + 14 * ts + m + 10;
}

GMDEF int gm_plot_scatter(gm_image *out, const gm_plot_opts *opts, const float *xy, int n,
                          const int *labels, int nlabels, const char *const *label_names) {
    gm_plot_opts o = opts ? *opts : gm_plot_defaults();
    gm__im_fig f;
    double xmin = HUGE_VAL, xmax = -HUGE_VAL, ymin = HUGE_VAL, ymax = -HUGE_VAL, r, alpha;
    int i, bad = 0, outside = 0, clip[4];
    if (gm__im_fig_begin(&f, out, &o, "gm_plot_scatter") != 0) return -1;
    if (gm__im_scatter_check(xy, n, labels, nlabels) != 0) return -1;
    for (i = 0; i < n; i++) {
        double x = xy[2*i], y = xy[2*i+1];
        if (!gm__im_finite(x) || !gm__im_finite(y)) { bad++; continue; }
        if (x < xmin) xmin = x;
        if (x > xmax) xmax = x;
        if (y < ymin) ymin = y;
        if (y > ymax) ymax = y;
    }
    if (bad == n) return gm_fail("gm_plot_scatter: all %d points are NaN or infinite", n);
    if (o.fixed_x) { xmin = o.x0; xmax = o.x1; } else gm__im_range(&xmin, &xmax, 0.05);
    if (o.fixed_y) { ymin = o.y0; ymax = o.y1; } else gm__im_range(&ymin, &ymax, 0.05);
    for (i = 0; i < n; i++) {
        double x = xy[2*i], y = xy[2*i+1];
        if (gm__im_finite(x) && gm__im_finite(y) && (x < xmin || x > xmax || y < ymin || y > ymax)) outside++;
    }
    if (bad && outside)
        snprintf(f.note, sizeof f.note, "not shown: %d NaN/inf point%s, %d outside the axes", bad,
                 bad == 1 ? "" : "s", outside);
    else if (bad) snprintf(f.note, sizeof f.note, "not shown: %d NaN/inf point%s", bad, bad == 1 ? "" : "s");
    else if (outside) snprintf(f.note, sizeof f.note, "not shown: %d point%s outside the axes", outside, outside == 1 ? "" : "s");
    f.ax.lo = xmin; f.ax.hi = xmax; f.ay.lo = ymin; f.ay.hi = ymax;
    gm__im_fig_layout(&f, labels ? gm__im_scatter_legend_width(nlabels, label_names, f.ts) : 0, 0, 0);
    if (gm__im_fig_alloc(&f, "gm_plot_scatter") != 0) return -1;
    /* smaller, lighter dots when there are many, so dense regions still show their density */
    r = o.point_size > 0 ? o.point_size : (n <= 500 ? 3.0 : n <= 5000 ? 2.2 : 1.6);
    alpha = n <= 500 ? 0.85 : n <= 5000 ? 0.7 : 0.5;
    clip[0] = f.x; clip[1] = f.y; clip[2] = f.w; clip[3] = f.h;
    for (i = 0; i < n; i++) {
        double x = xy[2*i], y = xy[2*i+1];
        unsigned char c[3];
        if (!gm__im_finite(x) || !gm__im_finite(y) || x < xmin || x > xmax || y < ymin || y > ymax) continue;
        gm_palette(labels ? labels[i] : 0, c);
        gm__im_disc(out, clip, gm__im_px(&f, x), gm__im_py(&f, y), r, c, alpha);
    }
    gm__im_fig_finish(&f);
    if (labels) gm__im_scatter_legend(&f, nlabels, label_names);
    return 0;
}

/* ---- heatmap ---- */
static int gm__im_heat_check(const float *v, int gw, int gh, float x0, float x1, float y0, float y1) {
    const char *fn = "gm_plot_heatmap";
    if (!v) return gm_fail("%s: values are NULL", fn);
    if (gw <= 0 || gh <= 0) return gm_fail("%s: grid %d x %d: both sides must be positive", fn, gw, gh);
    if (gw > GM_IMAGE_MAX_SIDE || gh > GM_IMAGE_MAX_SIDE)   /* more cells than pixels makes no picture */
        return gm_fail("%s: grid %d x %d: a side exceeds GM_IMAGE_MAX_SIDE (%d)", fn, gw, gh, GM_IMAGE_MAX_SIDE);
    if ((size_t)gw > ((size_t)-1) / sizeof(float) / (size_t)gh)
        return gm_fail("%s: grid %d x %d overflows the address space", fn, gw, gh);
    if (!(gm__im_finite(x0) && gm__im_finite(x1) && x0 < x1 && gm__im_finite(y0) && gm__im_finite(y1) && y0 < y1))
        return gm_fail("%s: extent x [%g, %g], y [%g, %g] must be finite with x0 < x1 and y0 < y1", fn,
                        (double)x0, (double)x1, (double)y0, (double)y1);
    return 0;
}

/* Value at fractional cell coordinates (u, v) (cell centres at integers): bilinear between the
 * four nearest cells, or the nearest cell when one of the four is not finite. */
static double gm__im_heat_sample(const float *val, int gw, int gh, double u, double v) {
    int i0, j0, i1, j1;
    double fu, fv, a, b, c, d;
    u = gm__im_clampd(u, 0, gw - 1); v = gm__im_clampd(v, 0, gh - 1);
    i0 = (int)u; j0 = (int)v;
    i1 = GM__MIN(i0 + 1, gw - 1); j1 = GM__MIN(j0 + 1, gh - 1);
    fu = u - i0; fv = v - j0;
    a = val[(size_t)j0 * gw + i0]; b = val[(size_t)j0 * gw + i1];
    c = val[(size_t)j1 * gw + i0]; d = val[(size_t)j1 * gw + i1];
    if (gm__im_finite(a) && gm__im_finite(b) && gm__im_finite(c) && gm__im_finite(d))
        return (a * (1 - fu) + b * fu) * (1 - fv) + (c * (1 - fu) + d * fu) * fv;
    return val[(size_t)(fv < 0.5 ? j0 : j1) * gw + (fu < 0.5 ? i0 : i1)];
}

/* Colour bar right of the plot: the ramp bottom (vmin) to top (vmax), with value ticks. */
static void gm__im_colorbar(gm__im_fig *f, const gm__im_axis *cb, int bx, int bw) {
    int r, i, lh = gm__im_text_height(f->ts);
    for (r = 0; r < f->h; r++) {
        unsigned char c[3];
        gm_colormap((float)(1.0 - (double)r / (f->h - 1 > 0 ? f->h - 1 : 1)), c);
        gm__im_rect(f->img, bx, f->y + r, bw, 1, c);
    }
    gm__im_rect(f->img, bx - 1, f->y - 1, bw + 2, 1, gm__im_ink2);
    gm__im_rect(f->img, bx - 1, f->y + f->h, bw + 2, 1, gm__im_ink2);
    gm__im_rect(f->img, bx - 1, f->y, 1, f->h, gm__im_ink2);
    gm__im_rect(f->img, bx + bw, f->y, 1, f->h, gm__im_ink2);
    for (i = 0; i < cb->n; i++) {
        int py = f->y + (int)((1.0 - (cb->at[i] - cb->lo) / (cb->hi - cb->lo)) * (f->h - 1) + 0.5);
        gm__im_rect(f->img, bx + bw + 1, py, 4, 1, gm__im_ink2);
        gm__im_draw_text(f->img, bx + bw + 8, py - lh / 2 + f->ts, cb->lab[i], f->ts, gm__im_ink2, 0);
    }
}

static void gm__im_heat_fill(gm__im_fig *f, const float *values, int gw, int gh, double vlo, double vhi) {
    int px, py;
    for (py = 0; py < f->h; py++)
        for (px = 0; px < f->w; px++) {
            /* pixel centre -> data -> fractional cell index (cell centres at integers) */
            double x = f->ax.lo + (px + 0.5) / f->w * (f->ax.hi - f->ax.lo);
            double y = f->ay.hi - (py + 0.5) / f->h * (f->ay.hi - f->ay.lo);
            double u = (x - f->ax.lo) / (f->ax.hi - f->ax.lo) * gw - 0.5;
            double v = (y - f->ay.lo) / (f->ay.hi - f->ay.lo) * gh - 0.5;
            double val = gm__im_heat_sample(values, gw, gh, u, v);
            unsigned char c[3];
            if (gm__im_finite(val)) gm_colormap((float)((val - vlo) / (vhi - vlo)), c);
            else gm__im_rgb(c, GM_NAN_COLOR_R, GM_NAN_COLOR_G, GM_NAN_COLOR_B);
            gm__im_put(f->img, f->x + px, f->y + py, c);
        }
}

GMDEF int gm_plot_heatmap(gm_image *out, const gm_plot_opts *opts, const float *values, int gw, int gh,
                          float x0, float x1, float y0, float y1) {
    gm_plot_opts o = opts ? *opts : gm_plot_defaults();
    gm__im_fig f;
    gm__im_axis cb;
    double vlo = HUGE_VAL, vhi = -HUGE_VAL, aspect;
    size_t i, total;
    int bad = 0, bw;
    if (gm__im_fig_begin(&f, out, &o, "gm_plot_heatmap") != 0) return -1;
    if (gm__im_heat_check(values, gw, gh, x0, x1, y0, y1) != 0) return -1;
    total = (size_t)gw * (size_t)gh;
    for (i = 0; i < total; i++) {
        double v = values[i];
        if (!gm__im_finite(v)) { bad++; continue; }
        if (v < vlo) vlo = v;
        if (v > vhi) vhi = v;
    }
    if (bad == (long long)total) return gm_fail("gm_plot_heatmap: all %d x %d values are NaN or infinite", gw, gh);
    if (o.fixed_v) {
        if (!(gm__im_finite(o.v0) && gm__im_finite(o.v1) && o.v0 < o.v1))
            return gm_fail("gm_plot_heatmap: colour range [%g, %g] must be finite with v0 < v1", (double)o.v0,
                            (double)o.v1);
        vlo = o.v0; vhi = o.v1;
    } else gm__im_range(&vlo, &vhi, 0.0);
    if (bad) snprintf(f.note, sizeof f.note, "magenta: %d NaN/inf cell%s", bad, bad == 1 ? "" : "s");
    memset(&cb, 0, sizeof cb);
    cb.lo = vlo; cb.hi = vhi;
    gm__im_axis_ticks(&cb, 8);
    bw = 14 * f.ts;
    f.ax.lo = x0; f.ax.hi = x1; f.ay.lo = y0; f.ay.hi = y1;
    /* equal scales on both axes (round things look round) unless that would make it a sliver */
    aspect = ((double)x1 - x0) / ((double)y1 - y0);
    if (aspect < 0.33 || aspect > 3) aspect = 0;
    gm__im_fig_layout(&f, 16 + bw + 10 + gm__im_max_label_width(&cb, f.ts) + 10, 0, aspect);
    if (gm__im_fig_alloc(&f, "gm_plot_heatmap") != 0) return -1;
    gm__im_heat_fill(&f, values, gw, gh, vlo, vhi);
    gm__im_fig_finish(&f);
    gm__im_colorbar(&f, &cb, f.x + f.w + 16, bw);
    return 0;
}

/* ---- line plots ---- */
#define GM__IM_MAX_SERIES 64

/* Max-accumulates the coverage of a thick segment (half-width hw) into cov (W x H, plot-area
 * coordinates). Keeping the maximum, not the sum, keeps joints between segments even. */
static void gm__im_segment(float *cov, int W, int H, double ax, double ay, double bx, double by, double hw) {
    double dx = bx - ax, dy = by - ay, len2 = dx*dx + dy*dy;
    double xa = gm__im_clampd((ax < bx ? ax : bx) - hw - 1, -1, W), xb = gm__im_clampd((ax > bx ? ax : bx) + hw + 1, -1, W);
    double ya = gm__im_clampd((ay < by ? ay : by) - hw - 1, -1, H), yb = gm__im_clampd((ay > by ? ay : by) + hw + 1, -1, H);
    int i, j, i0 = GM__MAX((int)xa, 0), i1 = GM__MIN((int)xb, W - 1);
    int j0 = GM__MAX((int)ya, 0), j1 = GM__MIN((int)yb, H - 1);
    for (j = j0; j <= j1; j++)
        for (i = i0; i <= i1; i++) {
            double px = i + 0.5 - ax, py = j + 0.5 - ay, t = len2 > 0 ? (px*dx + py*dy) / len2 : 0, ex, ey, c;
            t = gm__im_clampd(t, 0, 1);
            ex = px - t * dx; ey = py - t * dy;
            c = hw + 0.5 - sqrt(ex*ex + ey*ey);
            if (c > 0 && c > cov[(size_t)j * W + i]) cov[(size_t)j * W + i] = (float)(c > 1 ? 1 : c);
        }
}

/* The value plotted for point i, or NaN to skip it: log axis takes log10 (non-positive: skip). */
static double gm__im_line_val(const gm__im_fig *f, double v) {
    if (!gm__im_finite(v)) return HUGE_VAL - HUGE_VAL;
    if (f->ay.log) return v > 0 ? log10(v) : HUGE_VAL - HUGE_VAL;
    return v;
}

/* Draws one series into cov and blends it onto the picture. smooth > 0: exponential moving
 * average with bias correction (the first points are not pulled towards zero). */
static void gm__im_line_draw(gm__im_fig *f, float *cov, const float *s, int len, double smooth,
                             double hw, const unsigned char c[3], double alpha) {
    int i, have = 0;
    double lx = 0, ly = 0, ema = 0, wsum = 0;
    size_t k, npix = (size_t)f->w * (size_t)f->h;
    memset(cov, 0, npix * sizeof(float));
    for (i = 0; i < len; i++) {
        double v = s[i], x, y;
        if (!gm__im_finite(v)) { have = 0; continue; }   /* a gap breaks the line */
        if (smooth > 0) { ema = smooth * ema + (1 - smooth) * v; wsum = smooth * wsum + (1 - smooth); v = ema / wsum; }
        v = gm__im_line_val(f, v);
        if (v != v) { have = 0; continue; }
        x = gm__im_px(f, (i + 1.0) * f->o->x_step) - f->x;
        y = gm__im_py(f, v) - f->y;
        gm__im_segment(cov, f->w, f->h, have ? lx : x, have ? ly : y, x, y, hw);
        lx = x; ly = y; have = 1;
    }
    for (k = 0; k < npix; k++)
        if (cov[k] > 0) gm__im_blend(f->img, f->x + (int)(k % f->w), f->y + (int)(k / f->w), c, cov[k] * alpha);
}

static int gm__im_lines_check(const gm_plot_opts *o, const float *const *series, const int *lengths, int nseries) {
    const char *fn = "gm_plot_lines";
    int k;
    if (!series || !lengths) return gm_fail("%s: series or lengths is NULL", fn);
    if (nseries <= 0 || nseries > GM__IM_MAX_SERIES)
        return gm_fail("%s: nseries = %d must be in 1..%d", fn, nseries, GM__IM_MAX_SERIES);
    for (k = 0; k < nseries; k++) {
        if (lengths[k] < 0) return gm_fail("%s: lengths[%d] = %d is negative", fn, k, lengths[k]);
        if (lengths[k] > 0 && !series[k]) return gm_fail("%s: series[%d] is NULL but has %d points", fn, k, lengths[k]);
    }
    if (!(gm__im_finite(o->x_step) && o->x_step > 0)) return gm_fail("%s: x_step = %g must be positive", fn, (double)o->x_step);
    if (!(o->smooth >= 0 && o->smooth < 1)) return gm_fail("%s: smooth = %g must be in [0, 1)", fn, (double)o->smooth);
    if (o->log_y && o->fixed_y && !(o->y0 > 0))
        return gm_fail("%s: log y axis needs a positive fixed range, got [%g, %g]", fn, (double)o->y0, (double)o->y1);
    return 0;
}

/* Legend entries flow left to right above the plot, wrapping into rows; returns the rows. */
static int gm__im_legend_rows(const gm__im_fig *f, const char *const *names, int nseries, int draw) {
    int k, x = f->x, rows = 1, lh = gm__im_text_height(f->ts), limit = f->o->w - 12;
    for (k = 0; k < nseries; k++) {
        char name[64];
        int ew;
        gm__im_label_name(name, sizeof name, names, k, "series ");
        ew = 22 * f->ts + gm_text_width(name, f->ts) + 18 * f->ts;
        if (x + ew > limit && x > f->x) { x = f->x; rows++; }
        if (draw) {
            unsigned char c[3];
            int y = f->top_extra_y + (rows - 1) * (lh + 8);
            gm_palette(k, c);
            gm__im_rect(f->img, x, y + lh / 2 - f->ts, 16 * f->ts, 3 * f->ts, c);
            gm__im_draw_text(f->img, x + 22 * f->ts, y, name, f->ts, gm__im_ink, 0);
        }
        x += ew;
    }
    return rows;
}

/* y range over every plotted point; counts the skipped ones. Returns the finite count. */
static long gm__im_lines_range(const gm__im_fig *f, const float *const *series, const int *lengths, int nseries,
                               double *lo, double *hi, long *skipped, int *maxlen) {
    long good = 0;
    int k, i;
    *lo = HUGE_VAL; *hi = -HUGE_VAL; *skipped = 0; *maxlen = 0;
    for (k = 0; k < nseries; k++) {
        if (lengths[k] > *maxlen) *maxlen = lengths[k];
        for (i = 0; i < lengths[k]; i++) {
            double v = gm__im_line_val(f, series[k][i]);
            if (v != v) { (*skipped)++; continue; }
            if (v < *lo) *lo = v;
            if (v > *hi) *hi = v;
            good++;
        }
    }
    return good;
}

GMDEF int gm_plot_lines(gm_image *out, const gm_plot_opts *opts, const float *const *series,
                        const int *lengths, const char *const *names, int nseries) {
    gm_plot_opts o = opts ? *opts : gm_plot_defaults();
    gm__im_fig f;
    double lo, hi;
    long skipped;
    int maxlen, k, rows;
    float *cov;
    if (o.x_step == 0) o.x_step = 1;
    if (gm__im_fig_begin(&f, out, &o, "gm_plot_lines") != 0) return -1;
    if (gm__im_lines_check(&o, series, lengths, nseries) != 0) return -1;
    f.ay.log = o.log_y;
    if (gm__im_lines_range(&f, series, lengths, nseries, &lo, &hi, &skipped, &maxlen) == 0)
        return gm_fail("gm_plot_lines: no point to plot (all series empty, NaN/inf%s)", o.log_y ? " or <= 0 on the log axis" : "");
    if (o.fixed_y) { lo = o.log_y ? log10(o.y0) : o.y0; hi = o.log_y ? log10(o.y1) : o.y1; }
    else gm__im_range(&lo, &hi, 0.05);
    f.ay.lo = lo; f.ay.hi = hi;
    if (o.fixed_x) { f.ax.lo = o.x0; f.ax.hi = o.x1; }
    else { f.ax.lo = 0; f.ax.hi = (double)maxlen * o.x_step; if (maxlen < 2) f.ax.hi = 2.0 * o.x_step; }
    if (skipped)
        snprintf(f.note, sizeof f.note, "not shown: %ld point%s (NaN/inf%s)", skipped, skipped == 1 ? "" : "s",
                 o.log_y ? " or <= 0" : "");
    f.x = 10; f.top_extra_y = 0;
    rows = gm__im_legend_rows(&f, names, nseries, 0);  /* rough: the left margin is not known yet */
    gm__im_fig_layout(&f, 0, rows * (gm__im_text_height(f.ts) + 8) + 6, 0);
    if (gm__im_fig_alloc(&f, "gm_plot_lines") != 0) return -1;
    cov = (float *)GENMOD_MALLOC((size_t)f.w * (size_t)f.h * sizeof(float));
    if (!cov) { gm_image_free(out); return gm_fail("gm_plot_lines: out of memory"); }
    for (k = 0; k < nseries; k++) {
        unsigned char c[3];
        gm_palette(k, c);
        if (o.smooth > 0) {
            gm__im_line_draw(&f, cov, series[k], lengths[k], 0, 0.6, c, 0.25);
            gm__im_line_draw(&f, cov, series[k], lengths[k], o.smooth, 1.0, c, 1.0);
        } else gm__im_line_draw(&f, cov, series[k], lengths[k], 0, 0.8, c, 1.0);
    }
    GENMOD_FREE(cov);
    gm__im_fig_finish(&f);
    gm__im_legend_rows(&f, names, nseries, 1);
    return 0;
}

/* ---- files ---- */
typedef struct gm__im_sink { FILE *fp; int err; } gm__im_sink;

static void gm__im_sink_write(void *ctx, void *data, int size) {
    gm__im_sink *s = (gm__im_sink *)ctx;
    if (size > 0 && fwrite(data, 1, (size_t)size, s->fp) != (size_t)size) s->err = 1;
}

static void gm__im_put_ppm(gm__im_sink *s, const gm_image *img) {
    size_t bytes = (size_t)img->w * (size_t)img->h * 3;
    if (fprintf(s->fp, "P6\n%d %d\n255\n", img->w, img->h) < 0) s->err = 1;
    while (bytes > 0) {     /* in pieces: the sink takes an int count */
        size_t part = bytes < (1u << 30) ? bytes : (1u << 30);
        gm__im_sink_write(s, img->rgb + ((size_t)img->w * (size_t)img->h * 3 - bytes), (int)part);
        bytes -= part;
    }
}

static void gm__im_put_png(gm__im_sink *s, const gm_image *img) {
#ifdef INCLUDE_STB_IMAGE_WRITE_H
    if (!stbi_write_png_to_func(gm__im_sink_write, s, img->w, img->h, 3, img->rgb, img->w * 3)) s->err = 1;
#else
    (void)s; (void)img;
#endif
}

/* Writes through "<path>.tmp" and renames it over path once everything is on disk. */
static int gm__im_write(const char *path, const gm_image *img, int png, const char *fn) {
    size_t len;
    char *tmp;
    gm__im_sink s;
    int saved_errno = 0;
    if (!path || !path[0]) return gm_fail("%s: path is NULL or empty", fn);
    if (!gm__im_valid(img)) return gm_fail("%s: %s: image is NULL or empty", fn, path);
#ifndef INCLUDE_STB_IMAGE_WRITE_H
    if (png) return gm_fail("%s: %s: PNG support needs stb_image_write.h included before the genmod "
                             "implementation (or write a PPM with gm_image_write_ppm)", fn, path);
#endif
    len = strlen(path);
    tmp = (char *)GENMOD_MALLOC(len + 5);
    if (!tmp) return gm_fail("%s: out of memory", fn);
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", 5);
    s.err = 0;
    s.fp = fopen(tmp, "wb");
    if (!s.fp) {
        int e = errno;
        GENMOD_FREE(tmp);
        return gm_fail("%s: cannot create %s: %s", fn, path, strerror(e));
    }
    if (png) gm__im_put_png(&s, img); else gm__im_put_ppm(&s, img);
    if (fflush(s.fp) != 0 || ferror(s.fp)) s.err = 1;
    if (s.err) saved_errno = errno;
    if (fclose(s.fp) != 0 && !s.err) { s.err = 1; saved_errno = errno; }
    if (!s.err) {
#ifdef _WIN32
        remove(path);       /* rename does not replace an existing file on Windows */
#endif
        if (rename(tmp, path) != 0) { s.err = 2; saved_errno = errno; }
    }
    if (s.err) {
        remove(tmp);
        GENMOD_FREE(tmp);
        return gm_fail("%s: %s: %s failed: %s", fn, path, s.err == 2 ? "rename" : "write",
                        saved_errno ? strerror(saved_errno) : "encoder error");
    }
    GENMOD_FREE(tmp);
    return 0;
}

GMDEF int gm_image_write_ppm(const char *path, const gm_image *img) {
    return gm__im_write(path, img, 0, "gm_image_write_ppm");
}

GMDEF int gm_image_write_png(const char *path, const gm_image *img) {
    return gm__im_write(path, img, 1, "gm_image_write_png");
}

#endif /* GENMOD_IMAGE_IMPLEMENTATION_INCLUDED */
#endif /* GENMOD_IMAGE_IMPLEMENTATION */
