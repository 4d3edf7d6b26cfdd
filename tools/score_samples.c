/* score_samples.c: scores generated 28x28 digits stored in an IDX file, the way the GAN examples
 * score their own samples (examples/gan.c, score()), so that samples from any program (genmod's
 * --dump-samples, the PyTorch reference scripts) are measured with one ruler.
 *
 *   cc -O2 -std=c99 -I. tools/score_samples.c -o build/score_samples -lm -lpthread
 *   ./build/score_samples --samples out/dcgan.idx [--data DIR] [--classifier FILE] [--n N]
 *   ./build/score_samples --samples guided.idx --labels guided-labels.idx    # conditional samples
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
 *   accuracy       with --labels (IDX uint8 labels, magic 0x00000801, one per sample: the class
 *                  each sample was asked for), the fraction the classifier calls by that label
 * Bad input (missing or malformed file, images not 28x28, too few samples) prints a message on
 * stderr and exits with 1; a bad command line exits with 2. */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_GAN_IMPLEMENTATION
#include "../genmod_gan.h"
#include "tool.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME "score_samples"
#define SIDE 28                      /* the classifier only knows 28x28 digits */
#define PATH_CAP 1024

typedef struct opts {
    const char *samples;             /* --samples FILE.idx (required) */
    const char *data;                /* --data DIR: where the reference test images are */
    const char *classifier;          /* --classifier FILE.safetensors */
    const char *labels;              /* --labels FILE.idx: the class each sample was drawn for */
    int n;                           /* --n: samples to score, 0 = all in the file */
    char data_buf[PATH_CAP], classifier_buf[PATH_CAP];   /* storage for the defaults */
} opts;

/* The command line into o ("--flag v" or "--flag=v"). Returns 0, 1 (--help: usage printed)
 * or 2 (bad: said on stderr). */
static int parse_args(opts *o, int argc, char **argv) {
    const tool_flag flags[5] = {
        {"samples", TOOL_STRING, &o->samples, "FILE.idx", "the generated images (required)", 0, NULL},
        {"labels", TOOL_STRING, &o->labels, "FILE.idx", "the class each sample was drawn for: adds accuracy", 0, NULL},
        {"data", TOOL_STRING, &o->data, "DIR", "folder holding t10k-images-idx3-ubyte [bundled data/]", 0, NULL},
        {"classifier", TOOL_STRING, &o->classifier, "FILE",
         "classifier weights [bundled data/digit_classifier.safetensors]", 0, NULL},
        {"n", TOOL_INT, &o->n, "N", "score only the first N samples, 0 = all", 0, "a whole number (allowed: 0..)"}};
    const tool_cli cli = {NAME, "--samples FILE.idx [--labels FILE.idx] [--data DIR] [--classifier FILE] [--n N]",
                          "Scores generated 28x28 digits (IDX uint8, 0 background, 255 ink) against the test images\n"
                          "of DIR with the metric classifier; prints one JSON line (fd, label_entropy in nats, label_hist,\n"
                          "and with --labels the accuracy).",
                          flags, 5, 18};
    int rc = tool_parse(&cli, argc, argv);
    if (rc == 0 && !o->samples) rc = tool_bad_usage(NAME, "--samples FILE.idx is required");
    return rc;
}

/* Both defaults come from the bundled data/ directory; the classifier does not follow --data,
   because a full MNIST download has no classifier in it. */
static void fill_defaults(opts *o) {
    const char *dir = tool_data_dir();
    if (!o->data) {
        snprintf(o->data_buf, sizeof o->data_buf, "%s", dir);
        o->data = o->data_buf;
    }
    if (!o->classifier) {
        snprintf(o->classifier_buf, sizeof o->classifier_buf, "%s/digit_classifier.safetensors", dir);
        o->classifier = o->classifier_buf;
    }
}

/* Loads up to max_items images (0: all) onto [-1, 1], with their labels when labels is not
 * NULL (the loader checks both files hold the same count), and checks they are 28x28 digits.
 * what names the file's role in the messages. Returns 0, or -1 after printing why. */
static int load_digits(gm_dataset *d, const char *path, const char *labels, int max_items, const char *what) {
    if (gm_idx_load(d, path, labels, max_items, -1.0f, 1.0f) != 0) {
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
    if (load_digits(d, o->samples, o->labels, o->n, "samples") != 0) return -1;
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
    if (load_digits(d, path, NULL, 0, "reference") != 0) return -1;
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

/* One JSON line, closed by the process's peak memory. */
static void print_json(const opts *o, int n, int nref, const gm_digit_scores *sc, const long hist[10]) {
    int k;
    tool_json_begin();
    tool_json_str("samples", o->samples);
    tool_json_int("n", n);
    tool_json_str("reference", o->data);
    tool_json_int("nref", nref);
    tool_json_num("fd", sc->fd);
    tool_json_num("label_entropy", sc->entropy);
    tool_json_key("label_hist");
    for (k = 0; k < 10; k++) printf("%c%ld", k == 0 ? '[' : ',', hist[k]);
    putchar(']');
    if (o->labels) tool_json_num("accuracy", sc->accuracy);
    tool_json_end();
}

int main(int argc, char **argv) {
    opts o;
    gm_dataset samples, ref;
    gm_digit_classifier m;
    gm_digit_scores sc;
    gm_graph *g;
    long hist[10];
    int rc;
    memset(&o, 0, sizeof o);
    rc = parse_args(&o, argc, argv);
    if (rc != 0) return rc == 1 ? 0 : 2;
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
    if (rc == 0 && gm_digit_score(&m, g, samples.x, samples.y, samples.n, ref.x, ref.n, &sc) != 0) {
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
