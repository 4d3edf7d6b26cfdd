/* common.h: the conventions every genmod example follows, in one small header.
 *
 *   #include "png.h"                             // PNG output (without it: PPM files)
 *   #define GENMOD_IMPLEMENTATION
 *   #include "../genmod.h"
 *   #include "common.h"
 *
 *   int main(int argc, char **argv) {
 *       float beta = 1;
 *       ex_opt extra[] = {{"beta", EX_FLOAT, &beta, "KL weight", "0.."}};
 *       ex_args a = ex_defaults("vae", 10, 64, 1e-3f);          // name, epochs, batch, lr
 *       ex_run run;
 *       ex_init(&a, argc, argv, "Variational autoencoder on MNIST.", extra, 1);  // exits on error / --help
 *       ex_run_begin(&run, &a, ex_total_steps(&a, steps_per_epoch), a.batch, "loss,recon,kl");
 *       for (...) { ...; float m[3] = {loss, recon, kl}; ex_run_step(&run, m); }
 *       ex_run_end(&run);
 *       ex_run_plot(&run, "loss.png", "VAE training", 0);
 *       ... ex_save_png(&a, "samples.png", &img); ...
 *       ex_json j; ex_json_init(&j); ex_json_num(&j, "test_nll", nll); ex_json_print(&j);   // last line
 *       ex_run_free(&run);
 *   }
 *
 * Flags every example takes: --data --epochs --steps --minutes --batch --lr --seed --threads --out
 * --save --load --samples --dump-samples --quiet --help, plus its own table of ex_opt. Both "--flag v"
 * and "--flag=v". Errors name the flag and the value and exit with code 2; --help exits 0.
 * Helpers here are named ex_ (they belong to the examples, not to the library). */
#ifndef GENMOD_EXAMPLES_COMMON_H
#define GENMOD_EXAMPLES_COMMON_H
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <time.h>
#ifdef _WIN32
#include <io.h>
#include <direct.h>
#include <sys/stat.h>
#else
#include <unistd.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/resource.h>
#endif

#define EX_MAX_METRICS 16
#define EX_PATH 1024

/* ---------------------------------------------------------------------------------------- */
/* Command line                                                                             */
/* ---------------------------------------------------------------------------------------- */
typedef struct ex_args {
    const char *name;          /* example name: prefix of its log file, shown in messages */
    const char *data_dir;      /* --data (default: $GENMOD_DATA, else data/ found from the cwd) */
    const char *out_dir;       /* --out (default "out"), created if missing */
    const char *save, *load;   /* --save FILE, --load FILE (NULL: not given) */
    const char *dump_samples;  /* --dump-samples FILE.idx (NULL: not given) */
    int epochs;                /* --epochs */
    long steps;                /* --steps: a step budget; when >= 0 it overrides epochs (-1: not given) */
    int batch;                 /* --batch */
    float lr;                  /* --lr */
    unsigned long seed;        /* --seed */
    int threads;               /* --threads (0: the library's default) */
    int samples;               /* --samples: how many samples to draw for pictures / dumps */
    int quiet;                 /* --quiet: only errors and the final JSON line */
    float minutes;             /* --minutes: wall-clock training budget (0: none); training ends at
                                  the first of steps, epochs or minutes */
    const char *without;       /* common flags this example does not take, e.g. "samples dump-samples"
                                  (set before ex_init): absent from --help and refused, never ignored */
    char data_buf[EX_PATH];
} ex_args;

/* An example's own flags. ptr points to an int (EX_INT, EX_BOOL), float (EX_FLOAT) or
 * const char * (EX_STRING, EX_CHOICE). choices: for EX_CHOICE the allowed values "a|b|c"; for
 * EX_INT / EX_FLOAT an optional range "lo..hi" (either end may be left out: "0..", "..1"). */
enum { EX_INT, EX_FLOAT, EX_STRING, EX_BOOL, EX_CHOICE,
       EX__LONG, EX__ULONG };   /* the last two: only for the built-in --steps and --seed */
typedef struct ex_opt {
    const char *name;
    int type;
    void *ptr;
    const char *help;
    const char *choices;
} ex_opt;

static inline ex_args ex_defaults(const char *name, int epochs, int batch, float lr) {
    ex_args a;
    memset(&a, 0, sizeof a);
    a.name = name; a.out_dir = "out";
    a.epochs = epochs; a.batch = batch; a.lr = lr;
    a.seed = 1; a.samples = 64;
    a.steps = -1;              /* not given: --epochs decides */
    return a;
}

/* The total number of training steps: --steps if given, else epochs x steps per epoch. Zero is a
 * run without training (with --load: sample and evaluate a saved model). */
static inline long ex_total_steps(const ex_args *a, long steps_per_epoch) {
    return a->steps >= 0 ? a->steps : (long)a->epochs * steps_per_epoch;
}

static inline int ex_parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (!*s || *end || errno == ERANGE || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static inline int ex_parse_float(const char *s, double lo, double hi, float *out) {
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (!*s || *end || errno == ERANGE || !(v == v) || v < lo || v > hi || fabs(v) > 3.4e38) return -1;
    *out = (float)v;
    return 0;
}

/* "lo..hi" (either side optional) -> bounds; no range: +-huge. */
static inline void ex_range(const char *r, double *lo, double *hi) {
    const char *dots = r ? strstr(r, "..") : NULL;
    *lo = -1e300; *hi = 1e300;
    if (!dots) return;
    if (dots != r) *lo = atof(r);
    if (dots[2]) *hi = atof(dots + 2);
}

static inline int ex_in_choices(const char *v, const char *choices) {
    size_t n = strlen(v);
    const char *p = choices;
    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* Applies one extra option; msg gets the complaint. */
static inline int ex_set_extra(const ex_opt *o, const char *v, char *msg, size_t cap) {
    double lo, hi;
    long l;
    ex_range(o->choices, &lo, &hi);
    switch (o->type) {
    case EX_INT:
        if (ex_parse_long(v, lo < -2147483647.0 ? -2147483647L : (long)lo, hi > 2147483647.0 ? 2147483647L : (long)hi, &l) != 0) {
            snprintf(msg, cap, "--%s: '%s' is not a whole number%s%s%s", o->name, v, o->choices ? " (allowed: " : "",
                     o->choices ? o->choices : "", o->choices ? ")" : "");
            return -1;
        }
        *(int *)o->ptr = (int)l;
        return 0;
    case EX__LONG:
        if (ex_parse_long(v, lo < -9e18 ? LONG_MIN : (long)lo, hi > 9e18 ? LONG_MAX : (long)hi, (long *)o->ptr) != 0) {
            snprintf(msg, cap, "--%s: '%s' is not a whole number (allowed: %s)", o->name, v, o->choices);
            return -1;
        }
        return 0;
    case EX__ULONG: {
        char *end;
        unsigned long u;
        errno = 0;
        u = strtoul(v, &end, 10);
        if (!*v || *v == '-' || *v == '+' || *end || errno == ERANGE) {
            snprintf(msg, cap, "--%s: '%s' is not a whole number >= 0", o->name, v);
            return -1;
        }
        *(unsigned long *)o->ptr = u;
        return 0;
    }
    case EX_FLOAT:
        if (ex_parse_float(v, lo, hi, (float *)o->ptr) != 0) {
            snprintf(msg, cap, "--%s: '%s' is not a number%s%s%s", o->name, v, o->choices ? " (allowed: " : "",
                     o->choices ? o->choices : "", o->choices ? ")" : "");
            return -1;
        }
        return 0;
    case EX_BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes")) { *(int *)o->ptr = 1; return 0; }
        if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no")) { *(int *)o->ptr = 0; return 0; }
        snprintf(msg, cap, "--%s: '%s' is not a yes/no value (1, 0, true, false)", o->name, v);
        return -1;
    case EX_CHOICE:
        if (!ex_in_choices(v, o->choices)) {
            snprintf(msg, cap, "--%s: '%s' is not one of %s", o->name, v, o->choices ? o->choices : "(none)");
            return -1;
        }
        *(const char **)o->ptr = v;
        return 0;
    default:
        *(const char **)o->ptr = v;
        return 0;
    }
}

/* 0 if the common flag `name` is in a->without (this example does not take it). */
static inline int ex_takes(const ex_args *a, const char *name) {
    const char *p = a->without;
    size_t len = strlen(name);
    while (p && *p) {
        while (*p == ' ') p++;
        if (strncmp(p, name, len) == 0 && (p[len] == ' ' || p[len] == 0)) return 0;
        while (*p && *p != ' ') p++;
    }
    return 1;
}

/* The common flags as a table pointing into a (so one parser serves both), less a->without. */
static inline int ex_builtin(ex_args *a, ex_opt *t) {
    ex_opt b[] = {
        {"data", EX_STRING, &a->data_dir, "dataset directory", NULL},
        {"epochs", EX_INT, &a->epochs, "training epochs", "0.."},
        {"steps", EX__LONG, &a->steps, "step budget; overrides --epochs", "0.."},
        {"batch", EX_INT, &a->batch, "minibatch size", "1.."},
        {"lr", EX_FLOAT, &a->lr, "learning rate", "0.."},
        {"seed", EX__ULONG, &a->seed, "random seed", NULL},
        {"threads", EX_INT, &a->threads, "worker threads (0: library default)", "0..1024"},
        {"out", EX_STRING, &a->out_dir, "output directory (created if missing)", NULL},
        {"save", EX_STRING, &a->save, "save the trained model to FILE", NULL},
        {"load", EX_STRING, &a->load, "load a model from FILE before training", NULL},
        {"samples", EX_INT, &a->samples, "samples to draw", "0..1000000"},
        {"dump-samples", EX_STRING, &a->dump_samples, "write the samples as an IDX file", NULL},
        {"quiet", EX_BOOL, &a->quiet, "print only errors and the final JSON line", NULL},
        {"minutes", EX_FLOAT, &a->minutes, "wall-clock training budget (0: none)", "0.."},
    };
    int i, n = 0;
    for (i = 0; i < (int)(sizeof b / sizeof b[0]); i++)
        if (ex_takes(a, b[i].name)) t[n++] = b[i];
    return n;
}

static inline const ex_opt *ex_find(const ex_opt *t, int n, const char *name, size_t len) {
    int i;
    for (i = 0; i < n; i++)
        if (strlen(t[i].name) == len && strncmp(t[i].name, name, len) == 0) return &t[i];
    return NULL;
}

/* Parses argv without exiting (testable). Returns 0 (ok), 1 (--help was asked for: nothing is
 * applied) or 2 (bad command line: msg says why). */
static inline int ex_parse(ex_args *a, int argc, char **argv, const ex_opt *extra, int nextra, char *msg, size_t cap) {
    ex_opt t[32];
    int i, nb;
    msg[0] = 0;
    for (i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    nb = ex_builtin(a, t);
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq, *val;
        const ex_opt *o;
        size_t len;
        if (strncmp(arg, "--", 2) != 0) { snprintf(msg, cap, "unexpected argument '%s' (flags start with --)", arg); return 2; }
        arg += 2;
        eq = strchr(arg, '=');
        len = eq ? (size_t)(eq - arg) : strlen(arg);
        o = ex_find(t, nb, arg, len);
        if (!o) o = ex_find(extra, nextra, arg, len);
        if (!o) { snprintf(msg, cap, "unknown flag '--%.*s'", (int)len, arg); return 2; }
        if (eq) val = eq + 1;
        else if (o->type == EX_BOOL) val = "1";
        else if (i + 1 < argc) val = argv[++i];
        else { snprintf(msg, cap, "--%s needs a value", o->name); return 2; }
        if (ex_set_extra(o, val, msg, cap) != 0) return 2;
    }
    return 0;
}

static inline void ex_usage(FILE *f, const ex_args *a, const char *about, const ex_opt *extra, int nextra) {
    int i;
    fprintf(f, "usage: %s [flags]\n", a->name);
    if (about && about[0]) fprintf(f, "%s\n", about);
    fprintf(f, "\nflags (default in brackets):\n");
    if (ex_takes(a, "data")) fprintf(f, "  --data DIR          dataset directory [$GENMOD_DATA, else data/ or ../data/]\n");
    if (ex_takes(a, "epochs")) fprintf(f, "  --epochs N          training epochs [%d]\n", a->epochs);
    fprintf(f, "  --steps N           step budget; overrides --epochs [%s]\n", a->steps >= 0 ? "set" : "off");
    if (ex_takes(a, "batch")) fprintf(f, "  --batch N           minibatch size [%d]\n", a->batch);
    if (ex_takes(a, "lr")) fprintf(f, "  --lr X              learning rate [%g]\n", a->lr);
    fprintf(f, "  --seed N            random seed [%lu]\n", a->seed);
    fprintf(f, "  --threads N         worker threads, 0 = library default [%d]\n", a->threads);
    fprintf(f, "  --out DIR           output directory, created if missing [%s]\n", a->out_dir);
    fprintf(f, "  --save FILE         save the trained model\n  --load FILE         load a model first\n");
    if (ex_takes(a, "samples")) fprintf(f, "  --samples N         samples to draw [%d]\n", a->samples);
    if (ex_takes(a, "dump-samples")) fprintf(f, "  --dump-samples F    write the samples as an IDX file\n");
    fprintf(f, "  --minutes X         wall-clock training budget, 0 = none [%g]\n", a->minutes);
    fprintf(f, "  --quiet             only errors and the final JSON line\n  --help              this text\n");
    for (i = 0; i < nextra; i++) {
        const ex_opt *o = &extra[i];
        char def[64], flag[64];
        static const char *const meta[5] = {" N", " X", " S", "", " NAME"};
        if (o->type == EX_INT || o->type == EX_BOOL) snprintf(def, sizeof def, "%d", *(const int *)o->ptr);
        else if (o->type == EX_FLOAT) snprintf(def, sizeof def, "%g", *(const float *)o->ptr);
        else snprintf(def, sizeof def, "%s", *(const char *const *)o->ptr ? *(const char *const *)o->ptr : "none");
        snprintf(flag, sizeof flag, "%s%s", o->name, o->type >= 0 && o->type < 5 ? meta[o->type] : "");
        fprintf(f, "  --%-18s%s%s%s [%s]\n", flag, o->help ? o->help : "", o->choices ? ": " : "",
                o->choices ? o->choices : "", def);
    }
}

static inline int ex_is_dir(const char *p) {
    struct stat st;
#ifdef _WIN32
    return stat(p, &st) == 0 && (st.st_mode & _S_IFMT) == _S_IFDIR;
#else
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
#endif
}

/* mkdir -p: creates every missing directory along the path. */
static inline int ex_mkdirs(const char *path) {
    char buf[EX_PATH];
    size_t i, n = strlen(path);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\\' && buf[i] != 0) continue;
        buf[i] = 0;
#ifdef _WIN32
        if (!ex_is_dir(buf) && _mkdir(buf) != 0 && errno != EEXIST) return -1;
#else
        if (!ex_is_dir(buf) && mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
#endif
        buf[i] = path[i];
    }
    return ex_is_dir(path) ? 0 : -1;
}

/* --data default: $GENMOD_DATA, else the first of data, ../data, ../../data that exists. */
static inline void ex_find_data(ex_args *a) {
    static const char *tries[3] = {"data", "../data", "../../data"};
    const char *env = getenv("GENMOD_DATA");
    int i;
    if (a->data_dir) return;
    if (env && env[0]) { snprintf(a->data_buf, sizeof a->data_buf, "%s", env); a->data_dir = a->data_buf; return; }
    a->data_dir = "data";
    for (i = 0; i < 3; i++)
        if (ex_is_dir(tries[i])) { a->data_dir = tries[i]; return; }
}

/* The metric classifier's weights (genmod_gan.h's digit classifier): DIR/digit_classifier.safetensors
 * of --data when it holds one, else the bundled data/ copy, since a full MNIST download has none. */
static inline void ex_classifier_path(const ex_args *a, char *buf, size_t size) {
    ex_args bundled;
    FILE *f;
    snprintf(buf, size, "%s/digit_classifier.safetensors", a->data_dir);
    if ((f = fopen(buf, "rb")) != NULL) { fclose(f); return; }
    bundled = ex_defaults(a->name, 1, 1, 0);
    ex_find_data(&bundled);
    snprintf(buf, size, "%s/digit_classifier.safetensors", bundled.data_dir);
}

#ifdef GENMOD_GAN_H
/* The metric classifier (ex_classifier_path), loaded once, before training, and checked against
 * the data it will score: on the labelled test images te (pixels in [-1, 1]) it must be right at
 * least 80% of the time. One that is not (the digit classifier on Fashion-MNIST, whose classes mean
 * nothing to it) would give FDs and class histograms that look like numbers and mean nothing. A
 * classifier that cannot be loaded or does not fit the data ends the run at once (exit 1, with
 * what to do), not after its training budget. The caller frees m. */
static inline void ex_metric_classifier(const ex_args *a, const gm_dataset *te, gm_digit_classifier *m) {
    char path[EX_PATH];
    gm_graph *g = NULL;
    int *pred = NULL, i, n = te->n < 2000 ? te->n : 2000, hit = 0, rc;
    ex_classifier_path(a, path, sizeof path);
    rc = gm_digit_classifier_load(m, path);
    if (rc == 0 && te->y) {                    /* without labels there is nothing to check it against */
        g = gm_graph_new(1);
        pred = (int *)malloc((size_t)n * sizeof(int));
        rc = g && pred ? gm_digit_classifier_run(m, g, te->x, n, NULL, pred) : gm_fail("out of memory");
        for (i = 0; rc == 0 && i < n; i++) hit += pred[i] == te->y[i];
        if (rc == 0 && hit < 0.8 * n)
            rc = gm_fail("the metric classifier %s labels only %.1f%% of %s's test images right: it was not trained on "
                         "this data. Train one (./build/train_classifier --data %s --save %s/digit_classifier.safetensors)",
                         path, 100.0 * hit / n, a->data_dir, a->data_dir, a->data_dir);
        free(pred);
        gm_graph_free(g);
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", a->name, gm_last_error());
        exit(1);
    }
}
#endif

/* Wall-clock seconds (for the progress line and the --minutes budget). */
static inline double ex_now(void) {
#ifdef _WIN32
    return (double)clock() / CLOCKS_PER_SEC;     /* wall time on Windows */
#else
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec * 1e-6;
#endif
}

/* Training stops at the first of: its step budget, Ctrl-C, or the --minutes budget. Ctrl-C: the
 * first one ends training at the next step, and the program finishes as usual (its pictures, and
 * the checkpoint when --save is given); a second one kills it at once. The budget's clock starts
 * at the first call of ex_interrupted(), i.e. when training starts (loading data is not counted). */
static volatile sig_atomic_t ex_stop_requested;
static double ex__budget_s, ex__budget_t0;   /* set by ex_init from --minutes; 0: no budget */
static int ex__budget_own;   /* 1: the example stops itself (ex_take_budget); the budget only sets the ETA */
static int ex__quiet;
static void ex_on_interrupt(int sig) {
    ex_stop_requested = 1;
    signal(sig, SIG_DFL);
}
static inline int ex_interrupted(void) {
    static int told, timed_out;
    if (ex__budget_s > 0 && !timed_out) {
        if (ex__budget_t0 == 0) ex__budget_t0 = ex_now();
        else if (!ex__budget_own && ex_now() - ex__budget_t0 >= ex__budget_s) {
            timed_out = 1;
            if (!ex__quiet) fprintf(stderr, "\ntime budget of %g minutes reached: stopping training\n", ex__budget_s / 60);
        }
    }
    if (ex_stop_requested && !told) {
        told = 1;
        fprintf(stderr, "\ninterrupted: stopping training; press Ctrl-C again to quit at once\n");
    }
    return ex_stop_requested != 0 || timed_out;
}

/* For an example that keeps the --minutes budget itself (the diffusion example does not count the
 * time its progress pictures take): returns the budget in seconds, and ex_interrupted() then only
 * reports Ctrl-C (the progress line still counts its ETA down from the budget). */
static inline double ex_take_budget(void) {
    ex__budget_own = 1;
    return ex__budget_s;
}

/* 1 if the command line sets the flag --name ("--name v" or "--name=v"): for the examples whose
 * defaults depend on whether a flag was given at all, which its value alone does not tell. */
static inline int ex_given(int argc, char **argv, const char *name) {
    size_t len = strlen(name);
    int i;
    for (i = 1; i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, name, len) == 0 &&
            (argv[i][2 + len] == 0 || argv[i][2 + len] == '=')) return 1;
    return 0;
}

/* Refuses (exit 2) a flag given where it would change nothing: `applies` is 0 then, and `when`
 * says where it does apply ("with --denoise"). Call after ex_init. */
static inline void ex_requires(const ex_args *a, int argc, char **argv, const char *flag, int applies, const char *when) {
    if (!applies && ex_given(argc, argv, flag)) {
        fprintf(stderr, "%s: --%s applies only %s\n", a->name, flag, when);
        exit(2);
    }
}

/* Parse, or exit: --help prints the usage (exit 0), a bad flag a message (exit 2). Then finds
 * the data, creates the output directory and sets the thread count. */
static inline void ex_init(ex_args *a, int argc, char **argv, const char *about, const ex_opt *extra, int nextra) {
    char msg[512];
    int rc = ex_parse(a, argc, argv, extra, nextra, msg, sizeof msg);
    if (rc == 1) { ex_usage(stdout, a, about, extra, nextra); exit(0); }
    if (rc == 2) { fprintf(stderr, "%s: %s (see --help)\n", a->name, msg); exit(2); }
    ex_find_data(a);
    if (ex_mkdirs(a->out_dir) != 0) {
        fprintf(stderr, "%s: cannot create output directory '%s': %s\n", a->name, a->out_dir, strerror(errno));
        exit(1);
    }
    if (a->threads > 0) gm_set_threads(a->threads);
    ex__budget_s = 60.0 * a->minutes;
    ex__quiet = a->quiet;
    signal(SIGINT, ex_on_interrupt);
}

/* --batch against the training set, once it is loaded: a batch larger than the data is refused
 * (exit 2) naming both sizes, before any buffer of that size is asked for. */
static inline void ex_check_batch(const ex_args *a, long n_train) {
    if ((long)a->batch > n_train) {
        fprintf(stderr, "%s: --batch %d is larger than the %ld training examples\n", a->name, a->batch, n_train);
        exit(2);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Output files                                                                             */
/* ---------------------------------------------------------------------------------------- */
static inline const char *ex_out_path(const ex_args *a, const char *file, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", a->out_dir, file);
    return buf;
}

/* Writes img into the output directory, says where, and frees it. Without stb_image_write the
 * picture is written as .ppm instead of .png. Returns 0 or -1 (message printed). */
/* n 28x28 digits (n * 784 floats in [lo, hi]) as a grid of `cols` columns, 1-pixel gaps, enlarged
 * 2x for the screen. 0, or -1 with gm_last_error(). */
static inline int ex_digit_grid(gm_image *out, const float *x, int n, int cols, float lo, float hi) {
    gm_image small;
    int rc = gm_image_grid(&small, x, n, 1, 28, 28, cols, 1, lo, hi);
    if (rc == 0) rc = gm_image_upscale(out, &small, 2);
    gm_image_free(&small);
    return rc;
}

/* Binary digit models read all-0/1 images (a statically binarized MNIST) bit for bit; other
 * images (the bundled digits) are binarized here, once, from one fixed stream whatever --seed:
 * train first, then test. Returns 1 if it binarized, 0 if the data were binary already. */
static inline int ex_all_binary(const float *x, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (x[i] != 0.0f && x[i] != 1.0f) return 0;
    return 1;
}

static inline int ex_binarize_digits(float *train, size_t ntrain, float *test, size_t ntest, uint64_t seed) {
    gm_rng r;
    if (ex_all_binary(train, ntrain) && ex_all_binary(test, ntest)) return 0;
    gm_rng_seed(&r, seed);
    gm_binarize(train, train, ntrain, &r);
    gm_binarize(test, test, ntest, &r);
    return 1;
}

static inline int ex_save_png(const ex_args *a, const char *file, gm_image *img) {
    char path[EX_PATH];
    int rc;
    ex_out_path(a, file, path, sizeof path);
#ifdef INCLUDE_STB_IMAGE_WRITE_H
    rc = gm_image_write_png(path, img);
#else
    {   char *dot = strrchr(path, '.');
        if (dot && strlen(dot) == 4 && (size_t)(dot - path) + 5 <= sizeof path) strcpy(dot, ".ppm");
        rc = gm_image_write_ppm(path, img); }
#endif
    if (rc != 0) fprintf(stderr, "%s: %s\n", a->name, gm_last_error());
    else if (!a->quiet) printf("wrote %s\n", path);
    gm_image_free(img);
    return rc;
}

/* --dump-samples: n images of h x w in [lo, hi] as IDX (for scoring with another tool). */
static inline int ex_dump_samples(const ex_args *a, const float *x, int n, int h, int w, float lo, float hi) {
    if (!a->dump_samples) return 0;
    if (gm_idx_save_images(a->dump_samples, x, n, h, w, lo, hi) != 0) {
        fprintf(stderr, "%s: %s\n", a->name, gm_last_error());
        return -1;
    }
    if (!a->quiet) printf("wrote %s (%d samples)\n", a->dump_samples, n);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Training run: progress line, CSV log, metric history                                     */
/* ---------------------------------------------------------------------------------------- */
static inline int ex_isatty_stdout(void) {
#ifdef _WIN32
    return _isatty(_fileno(stdout));
#else
    return isatty(STDOUT_FILENO);
#endif
}

typedef struct ex_run {
    const ex_args *a;
    long total, step;          /* planned steps, steps done */
    int batch, n, tty;
    char names_buf[512];
    const char *names[EX_MAX_METRICS];
    float *hist[EX_MAX_METRICS];   /* every step's value of each metric, for the loss plot */
    long cap;
    int nohist;                    /* out of memory once: stop keeping history */
    double sum[EX_MAX_METRICS];    /* totals since the last progress line (shown as means) */
    long nsum;
    FILE *csv;
    double t0, last;
} ex_run;

/* metrics: comma-separated names ("loss,recon,kl"); ex_run_step takes values in that order.
 * Opens <out>/<name>_log.csv. Returns 0, or -1 (message printed; the run still works). */
static inline int ex_run_begin(ex_run *r, const ex_args *a, long total, int batch, const char *metrics) {
    char path[EX_PATH], *p;
    int i;
    memset(r, 0, sizeof *r);
    r->a = a; r->total = total; r->batch = batch;
    r->tty = ex_isatty_stdout();
    snprintf(r->names_buf, sizeof r->names_buf, "%s", metrics ? metrics : "loss");
    for (p = r->names_buf; p && r->n < EX_MAX_METRICS; r->n++) {
        r->names[r->n] = p;
        p = strchr(p, ',');
        if (p) *p++ = 0;
    }
    r->t0 = r->last = ex_now();
    snprintf(path, sizeof path, "%s/%s_log.csv", a->out_dir, a->name);
    r->csv = fopen(path, "w");
    if (!r->csv) { fprintf(stderr, "%s: cannot write %s: %s\n", a->name, path, strerror(errno)); return -1; }
    setvbuf(r->csv, NULL, _IOFBF, 1 << 16);
    fprintf(r->csv, "step,time_s");
    for (i = 0; i < r->n; i++) fprintf(r->csv, ",%s", r->names[i]);
    fprintf(r->csv, "\n");
    return 0;
}

static inline void ex_fmt_time(char *buf, size_t cap, double s) {
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

/* One progress line: bar (terminal only), step/total, mean of each metric since the last
 * line, samples per second and the time left. */
static inline void ex_progress(ex_run *r, double now, int final) {
    char line[512], eta[32];
    size_t len = 0;
    int i;
    double el = now - r->t0, rate = el > 0 ? r->step * (double)r->batch / el : 0, left;
    if (r->tty) {
        int fill = r->total > 0 ? (int)(20.0 * r->step / r->total) : 0;
        len += snprintf(line + len, sizeof line - len, "\r[%.*s%.*s] ", fill, "====================",
                        20 - (fill > 20 ? 20 : fill), "                    ");
    }
    len += r->total > 0 ? snprintf(line + len, sizeof line - len, "%ld/%ld", r->step, r->total)
                        : snprintf(line + len, sizeof line - len, "%ld", r->step);   /* a time budget only */
    for (i = 0; i < r->n && len < sizeof line - 40; i++)
        len += snprintf(line + len, sizeof line - len, "  %s %.4g", r->names[i], r->nsum ? r->sum[i] / r->nsum : 0.0);
    left = r->step > 0 && r->total > 0 ? el / r->step * (r->total - r->step) : 1e30;   /* 1e30: unknown */
    if (ex__budget_s > 0 && ex__budget_t0 > 0 && ex__budget_s - (now - ex__budget_t0) < left)
        left = ex__budget_s - (now - ex__budget_t0);   /* --minutes ends training first */
    if (!final && left >= 1e29) snprintf(eta, sizeof eta, "?");
    else ex_fmt_time(eta, sizeof eta, final ? el : left);
    if (len < sizeof line - 60)
        snprintf(line + len, sizeof line - len, "  | %.0f samples/s  %s %s%s", rate, final ? "took" : "ETA", eta,
                 r->tty ? "\033[K" : "\n");
    fputs(line, stdout);
    fflush(stdout);
    memset(r->sum, 0, sizeof r->sum);
    r->nsum = 0;
    r->last = now;
}

static inline int ex_run_grow(ex_run *r) {
    long cap = r->cap ? r->cap * 2 : 1024;
    int i;
    for (i = 0; i < r->n; i++) {
        float *h = (float *)realloc(r->hist[i], (size_t)cap * sizeof(float));
        if (!h) return -1;
        r->hist[i] = h;
    }
    r->cap = cap;
    return 0;
}

/* Call once per training step with the step's metric values. */
static inline void ex_run_step(ex_run *r, const float *values) {
    int i;
    double now = ex_now();
    if (!r->nohist && r->step >= r->cap && ex_run_grow(r) != 0) r->nohist = 1;
    for (i = 0; i < r->n; i++) {
        if (!r->nohist) r->hist[i][r->step] = values[i];
        r->sum[i] += values[i];
    }
    r->nsum++;
    r->step++;
    if (r->csv) {
        fprintf(r->csv, "%ld,%.3f", r->step, now - r->t0);
        for (i = 0; i < r->n; i++) fprintf(r->csv, ",%.7g", values[i]);
        fputc('\n', r->csv);
    }
    if (r->a->quiet) return;
    if ((r->tty && now - r->last >= 0.1) || now - r->last >= 5.0) ex_progress(r, now, 0);
}

/* After the last step: the final line, and the CSV log closed. */
/* Training speed of the last finished run (examples per second), for the summary line. */
static double ex_last_samples_per_s;

static inline void ex_run_end(ex_run *r) {
    double dt = ex_now() - r->t0;
    if (dt > 0 && r->step > 0) ex_last_samples_per_s = (double)r->step * r->batch / dt;
    if (!r->a->quiet) {
        if (r->nsum) ex_progress(r, ex_now(), 1);
        if (r->tty) fputc('\n', stdout);
    }
    if (r->csv) { fclose(r->csv); r->csv = NULL; }
}

/* Curves of every metric (smoothed when there are many steps) in <out>/file. */
static inline int ex_run_plot(ex_run *r, const char *file, const char *title, int log_y) {
    gm_plot_opts o = gm_plot_defaults();
    gm_image img;
    int lens[EX_MAX_METRICS], i;
    long kept = r->nohist ? 0 : r->step;
    if (kept <= 0 || kept > 2147483647L) return 0;
    for (i = 0; i < r->n; i++) lens[i] = (int)kept;
    o.title = title; o.xlabel = "step"; o.log_y = log_y;
    o.smooth = kept > 200 ? 0.9f : 0.0f;
    if (gm_plot_lines(&img, &o, (const float *const *)r->hist, lens, r->names, r->n) != 0) {
        fprintf(stderr, "%s: %s\n", r->a->name, gm_last_error());
        return -1;
    }
    return ex_save_png(r->a, file, &img);
}

static inline void ex_run_free(ex_run *r) {
    int i;
    if (r->csv) fclose(r->csv);
    for (i = 0; i < r->n; i++) free(r->hist[i]);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------------------------------- */
/* Final summary: one JSON object on one line                                               */
/* ---------------------------------------------------------------------------------------- */
typedef struct ex_json { char buf[4096]; size_t len; int n; } ex_json;

static inline void ex_json_init(ex_json *j) { j->buf[0] = 0; j->len = 0; j->n = 0; }

/* Appends text if it fits whole (the object stays valid JSON when full: the pair is dropped). */
static inline void ex_json_add(ex_json *j, const char *text) {
    size_t n = strlen(text);
    if (j->len + n + 2 >= sizeof j->buf) return;
    memcpy(j->buf + j->len, text, n + 1);
    j->len += n;
    j->n++;
}

static inline void ex_json_key(char *out, size_t cap, const char *key, int comma) {
    size_t k = 0;
    if (comma && k < cap) out[k++] = ',';
    if (k < cap) out[k++] = '"';
    for (; *key && k + 7 < cap; key++) {
        unsigned char c = (unsigned char)*key;
        if (c == '"' || c == '\\') { out[k++] = '\\'; out[k++] = (char)c; }
        else if (c < 0x20) k += (size_t)snprintf(out + k, cap - k, "\\u%04x", c);
        else out[k++] = (char)c;
    }
    out[k++] = '"';
    out[k] = 0;
}

/* A number (NaN and inf become null, which JSON can hold). */
static inline void ex_json_num(ex_json *j, const char *key, double v) {
    char t[400];
    size_t k;
    ex_json_key(t, sizeof t - 40, key, j->n > 0);
    k = strlen(t);
    if (v == v && v - v == 0) snprintf(t + k, sizeof t - k, ":%.10g", v);
    else snprintf(t + k, sizeof t - k, ":null");
    ex_json_add(j, t);
}

static inline void ex_json_str(ex_json *j, const char *key, const char *v) {
    char t[800], s[400];
    size_t k;
    ex_json_key(t, 380, key, j->n > 0);
    ex_json_key(s, sizeof s, v ? v : "", 0);
    k = strlen(t);
    snprintf(t + k, sizeof t - k, ":%s", s);
    ex_json_add(j, t);
}

/* Prints the object, closed by the figures every example reports: the training speed of its
 * last run and the process's peak memory (resident set, where the OS tells it). */
static inline void ex_json_print(const ex_json *j) {
    ex_json all = *j;
    if (ex_last_samples_per_s > 0) ex_json_num(&all, "samples_per_s", ex_last_samples_per_s);
#ifndef _WIN32
    {
        struct rusage ru;
#ifdef __APPLE__
        const double per_mib = 1048576.0;   /* ru_maxrss in bytes */
#else
        const double per_mib = 1024.0;      /* ru_maxrss in KiB */
#endif
        if (getrusage(RUSAGE_SELF, &ru) == 0) ex_json_num(&all, "peak_rss_mib", (double)ru.ru_maxrss / per_mib);
    }
#endif
    printf("{%s}\n", all.buf);
    fflush(stdout);
}
#endif
