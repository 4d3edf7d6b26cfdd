/* score_samples.c: scores generated 28x28 digits stored in an IDX file, the way the GAN examples
 * score their own samples (examples/gan.c, score()), so that samples from any program (genmod's
 * --dump-samples, the PyTorch reference scripts) are measured with one ruler.
 *
 *   cc -O2 -std=c99 -I. tools/score_samples.c -o build/score_samples -lm -lpthread
 *   ./build/score_samples --samples out/dcgan.idx [--data DIR] [--classifier FILE] [--n N]
 *
 * Input: IDX uint8 images (magic 0x00000803), 28x28, 0 = background, 255 = ink. Like the
 * examples, pixels are mapped onto [-1, 1] before they reach the classifier (its training range
 * and the range of a tanh generator). The first N samples (default: all) are compared with every
 * image of DIR/t10k-images-idx3-ubyte (default DIR: the bundled data/ directory, found as the
 * examples find it: $GENMOD_DATA, else data/, ../data/ or ../../data/).
 *
 * Output, one JSON line on stdout:
 *   fd             Frechet distance between Gaussians fitted to the metric classifier's 128
 *                  features of the samples and of the test images (lower is better; with few
 *                  samples even real digits do not reach 0: the floor grows as N shrinks)
 *   label_entropy  entropy of the predicted-label histogram in nats (ln 10 = 2.303 is uniform)
 *   label_hist     how many samples the classifier calls 0, 1, ..., 9
 * Bad input (missing or malformed file, images not 28x28, too few samples) prints a message on
 * stderr and exits with 1; a bad command line exits with 2. */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_GAN_IMPLEMENTATION
#include "../genmod_gan.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifndef _WIN32
#include <sys/resource.h>
#endif

#define NAME "score_samples"
#define SIDE 28                      /* the classifier only knows 28x28 digits */
#define PATH_CAP 1024

typedef struct opts {
    const char *samples;             /* --samples FILE.idx (required) */
    const char *data;                /* --data DIR: where the reference test images are */
    const char *classifier;          /* --classifier FILE.safetensors */
    int n;                           /* --n: samples to score, 0 = all in the file */
    char data_buf[PATH_CAP], classifier_buf[PATH_CAP];   /* storage for the defaults */
} opts;

static void usage(FILE *f) {
    fprintf(f, "usage: %s --samples FILE.idx [--data DIR] [--classifier FILE] [--n N]\n"
               "Scores generated 28x28 digits (IDX uint8, 0 background, 255 ink) against the test images\n"
               "of DIR with the metric classifier; prints one JSON line (fd, label_entropy in nats, label_hist).\n\n"
               "  --samples FILE.idx  the generated images (required)\n"
               "  --data DIR          folder holding t10k-images-idx3-ubyte [bundled data/]\n"
               "  --classifier FILE   classifier weights [bundled data/digit_classifier.safetensors]\n"
               "  --n N               score only the first N samples, 0 = all [0]\n"
               "  --help              this text\n", NAME);
}

/* --n's value: a whole number >= 0. */
static int parse_count(const char *s, int *out) {
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (!*s || *end || errno == ERANGE || v < 0 || v > INT_MAX) return -1;
    *out = (int)v;
    return 0;
}

/* The command line: "--flag v" or "--flag=v". Returns 0, 1 (--help) or 2 (msg says why). */
static int parse_args(opts *o, int argc, char **argv, char *msg, size_t cap) {
    static const char *const names[4] = {"samples", "data", "classifier", "n"};
    int i, k;
    msg[0] = 0;
    for (i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq, *val;
        size_t len;
        if (strncmp(arg, "--", 2) != 0) { snprintf(msg, cap, "unexpected argument '%s' (flags start with --)", arg); return 2; }
        arg += 2;
        eq = strchr(arg, '=');
        len = eq ? (size_t)(eq - arg) : strlen(arg);
        for (k = 0; k < 4 && !(strlen(names[k]) == len && strncmp(names[k], arg, len) == 0); k++) {}
        if (k == 4) { snprintf(msg, cap, "unknown flag '--%.*s'", (int)len, arg); return 2; }
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else { snprintf(msg, cap, "--%s needs a value", names[k]); return 2; }
        if (k == 0) o->samples = val;
        else if (k == 1) o->data = val;
        else if (k == 2) o->classifier = val;
        else if (parse_count(val, &o->n) != 0) {
            snprintf(msg, cap, "--n: '%s' is not a whole number (allowed: 0..)", val);
            return 2;
        }
    }
    if (!o->samples) { snprintf(msg, cap, "--samples FILE.idx is required"); return 2; }
    return 0;
}

static int is_dir(const char *p) {
    struct stat st;
#ifdef _WIN32
    return stat(p, &st) == 0 && (st.st_mode & _S_IFMT) == _S_IFDIR;
#else
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
#endif
}

/* The bundled data/ directory, found as the examples find it: $GENMOD_DATA, else the first of
   data, ../data, ../../data that exists. Both defaults come from it; the classifier does not
   follow --data, because a full MNIST download has no classifier in it. */
static void fill_defaults(opts *o) {
    static const char *tries[3] = {"data", "../data", "../../data"};
    const char *env = getenv("GENMOD_DATA"), *dir = "data";
    int i;
    if (env && env[0]) dir = env;
    else
        for (i = 0; i < 3; i++)
            if (is_dir(tries[i])) { dir = tries[i]; break; }
    if (!o->data) {
        snprintf(o->data_buf, sizeof o->data_buf, "%s", dir);
        o->data = o->data_buf;
    }
    if (!o->classifier) {
        snprintf(o->classifier_buf, sizeof o->classifier_buf, "%s/digit_classifier.safetensors", dir);
        o->classifier = o->classifier_buf;
    }
}

/* Loads up to max_items images (0: all) onto [-1, 1] and checks they are 28x28 digits.
 * what names the file's role in the messages. Returns 0, or -1 after printing why. */
static int load_digits(gm_dataset *d, const char *path, int max_items, const char *what) {
    if (gm_idx_load(d, path, NULL, max_items, -1.0f, 1.0f) != 0) {
        fprintf(stderr, "%s: %s: %s\n", NAME, what, gm_last_error());
        return -1;
    }
    if (d->h != SIDE || d->w != SIDE) {
        fprintf(stderr, "%s: %s: %s holds %dx%d images; the classifier needs %dx%d digits\n", NAME, what, path,
                d->h, d->w, SIDE, SIDE);
        gm_dataset_free(d);
        return -1;
    }
    return 0;
}

/* The samples: the first n of the file (all when n is 0). A Frechet distance needs a
 * covariance, hence at least 2 samples; asking for more than the file holds is an error rather
 * than a silently smaller score (the FD depends on the sample count). */
static int load_samples(gm_dataset *d, const opts *o) {
    if (load_digits(d, o->samples, o->n, "samples") != 0) return -1;
    if (o->n > 0 && d->n < o->n) {
        fprintf(stderr, "%s: samples: --n %d asked for, but %s holds only %d images\n", NAME, o->n, o->samples, d->n);
        gm_dataset_free(d);
        return -1;
    }
    if (d->n < 2) {
        fprintf(stderr, "%s: samples: %s holds %d image; at least 2 are needed\n", NAME, o->samples, d->n);
        gm_dataset_free(d);
        return -1;
    }
    return 0;
}

/* The reference: every test image of the directory, as the examples use it. */
static int load_reference(gm_dataset *d, const char *dir) {
    char path[PATH_CAP];
    if (snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir) >= (int)sizeof path) {
        fprintf(stderr, "%s: --data: directory name too long\n", NAME);
        return -1;
    }
    if (load_digits(d, path, 0, "reference") != 0) return -1;
    if (d->n < 2) {
        fprintf(stderr, "%s: reference: %s holds %d image; at least 2 are needed\n", NAME, path, d->n);
        gm_dataset_free(d);
        return -1;
    }
    return 0;
}

/* How many of the n images the classifier assigns to each digit. gm_digit_score keeps its
 * predictions to itself, so this runs the classifier over the samples once more (cheap). */
static int label_histogram(gm_digit_classifier *m, gm_graph *g, const float *x, int n, long hist[10]) {
    int *pred = (int *)malloc((size_t)n * sizeof(int)), i;
    memset(hist, 0, 10 * sizeof hist[0]);
    if (!pred) { fprintf(stderr, "%s: out of memory\n", NAME); return -1; }
    if (gm_digit_classifier_run(m, g, x, n, NULL, pred) != 0) {
        fprintf(stderr, "%s: classifier: %s\n", NAME, gm_last_error());
        free(pred);
        return -1;
    }
    for (i = 0; i < n; i++) hist[pred[i]]++;
    free(pred);
    return 0;
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void put_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* A JSON number (NaN and inf become null). */
static void put_json_number(double v) {
    if (v == v && v - v == 0) printf("%.10g", v);
    else printf("null");
}

/* One JSON line, closed by the process's peak memory (resident set, where the OS tells it). */
static void print_json(const opts *o, int n, int nref, const gm_digit_scores *sc, const long hist[10]) {
    int k;
    printf("{\"samples\":");
    put_json_string(o->samples);
    printf(",\"n\":%d,\"reference\":", n);
    put_json_string(o->data);
    printf(",\"nref\":%d,\"fd\":", nref);
    put_json_number(sc->fd);
    printf(",\"label_entropy\":");
    put_json_number(sc->entropy);
    for (k = 0; k < 10; k++) printf("%s%ld", k == 0 ? ",\"label_hist\":[" : ",", hist[k]);
    printf("]");
#ifndef _WIN32
    {   struct rusage ru;
#ifdef __APPLE__
        const double per_mib = 1048576.0;   /* ru_maxrss in bytes */
#else
        const double per_mib = 1024.0;      /* ru_maxrss in KiB */
#endif
        if (getrusage(RUSAGE_SELF, &ru) == 0) {
            printf(",\"peak_rss_mib\":");
            put_json_number((double)ru.ru_maxrss / per_mib);
        } }
#endif
    printf("}\n");
    fflush(stdout);
}

int main(int argc, char **argv) {
    opts o;
    char msg[512];
    gm_dataset samples, ref;
    gm_digit_classifier m;
    gm_digit_scores sc;
    gm_graph *g;
    long hist[10];
    int rc;
    memset(&o, 0, sizeof o);
    rc = parse_args(&o, argc, argv, msg, sizeof msg);
    if (rc == 1) { usage(stdout); return 0; }
    if (rc == 2) { fprintf(stderr, "%s: %s (see --help)\n", NAME, msg); return 2; }
    fill_defaults(&o);

    if (load_samples(&samples, &o) != 0) return 1;
    if (load_reference(&ref, o.data) != 0) { gm_dataset_free(&samples); return 1; }
    if (gm_digit_classifier_load(&m, o.classifier) != 0) {
        fprintf(stderr, "%s: classifier: %s%s\n", NAME, gm_last_error(),
                o.classifier == o.classifier_buf ? " (give its path with --classifier)" : "");
        gm_dataset_free(&samples); gm_dataset_free(&ref);
        return 1;
    }
    g = gm_graph_new(1);             /* the seed is unused: scoring draws no random numbers */
    rc = g ? 0 : -1;
    if (!g) fprintf(stderr, "%s: out of memory\n", NAME);
    /* The very call examples/gan.c makes, so these numbers and the examples' agree. */
    if (rc == 0 && gm_digit_score(&m, g, samples.x, NULL, samples.n, ref.x, ref.n, &sc) != 0) {
        fprintf(stderr, "%s: scoring: %s\n", NAME, gm_last_error());
        rc = -1;
    }
    if (rc == 0) rc = label_histogram(&m, g, samples.x, samples.n, hist);
    if (rc == 0) print_json(&o, samples.n, ref.n, &sc, hist);
    gm_graph_free(g);
    gm_digit_classifier_free(&m);
    gm_dataset_free(&samples);
    gm_dataset_free(&ref);
    return rc == 0 ? 0 : 1;
}
