/* ---- pictures: public declarations (pasted into genmod.h) ----
 * Everything renders into a plain RGB8 buffer (gm_image); writing a file is a separate, thin
 * step. PPM needs nothing; PNG needs stb_image_write.h included before the implementation:
 *
 *     #define STB_IMAGE_WRITE_IMPLEMENTATION
 *     #include "third_party/stb_image_write.h"
 *     #define GENMOD_IMPLEMENTATION
 *     #include "genmod.h"
 *
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
