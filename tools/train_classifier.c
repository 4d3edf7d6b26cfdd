/* train_classifier.c: trains the digit classifier behind the GAN measures (genmod_gan.h:
 * gm_digit_classifier) on the bundled MNIST subset and writes its weights to
 * data/digit_classifier.safetensors (the committed checkpoint was made by this program with its
 * defaults: `./build/train_classifier`).
 *
 *   cc -O2 -I. tools/train_classifier.c -o build/train_classifier -lm -lpthread
 *   ./build/train_classifier [--epochs 12] [--save data/digit_classifier.safetensors]
 *
 * Flags: --data DIR (default: $GENMOD_DATA, else data/, ../data/ or ../../data/), --epochs N,
 * --batch N, --lr X, --seed N, --threads N, --save FILE, --quiet, --help.
 * Images are mapped to [-1, 1], the range GAN generators produce. Prints the mean loss of every
 * epoch, the test accuracy and the Frechet distance between the features of 2000 training and the
 * 2000 test images (the floor a perfect generator would reach with that many samples), then a
 * JSON line. */
#define GENMOD_IMPLEMENTATION
#include "../genmod.h"
#define GENMOD_GAN_IMPLEMENTATION
#include "../genmod_gan.h"
#include "tool.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifndef _WIN32
#include <sys/time.h>
#endif

#define NAME "train_classifier"

typedef struct opts {
    const char *data, *save;
    int epochs, batch, threads, quiet;
    float lr;
    unsigned long seed;
} opts;

/* The command line into o, whose fields hold the defaults. Returns 0, 1 (--help: usage
 * printed) or 2 (bad: said on stderr). */
static int parse_args(opts *o, int argc, char **argv) {
    const tool_flag flags[8] = {
        {"data", TOOL_STRING, &o->data, "DIR", "dataset directory [$GENMOD_DATA, else data/ or ../data/]", 0, NULL},
        {"epochs", TOOL_INT, &o->epochs, "N", "training epochs", 1, NULL},
        {"batch", TOOL_INT, &o->batch, "N", "minibatch size", 1, NULL},
        {"lr", TOOL_POSITIVE, &o->lr, "X", "Adam learning rate", 0, NULL},
        {"seed", TOOL_ULONG, &o->seed, "N", "random seed", 0, NULL},
        {"threads", TOOL_INT, &o->threads, "N", "worker threads, 0 = library default", 0, NULL},
        {"save", TOOL_STRING, &o->save, "FILE", "where the weights go", 0, NULL},
        {"quiet", TOOL_SWITCH, &o->quiet, NULL, "only errors and the final JSON line", 0, NULL}};
    const tool_cli cli = {NAME, "[flags]", "Trains the digit classifier used to score GAN samples (FD, label entropy, accuracy).",
                          flags, 8, 14};
    return tool_parse(&cli, argc, argv);
}

static double now_s(void) {
#ifdef _WIN32
    return (double)clock() / CLOCKS_PER_SEC;
#else
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec * 1e-6;
#endif
}

static int fail(const char *what) {
    fprintf(stderr, "%s: %s: %s\n", NAME, what, gm_last_error());
    return 1;
}

/* Fraction of the test set classified correctly. */
static double test_accuracy(gm_digit_classifier *m, gm_graph *g, const gm_dataset *te) {
    int *pred = (int *)malloc((size_t)te->n * sizeof(int)), i, hit = 0;
    if (!pred || gm_digit_classifier_run(m, g, te->x, te->n, NULL, pred) != 0) { free(pred); return -1; }
    for (i = 0; i < te->n; i++) hit += pred[i] == te->y[i];
    free(pred);
    return (double)hit / te->n;
}

/* The summary line: the figures, the training speed and the process's peak memory. */
static void print_json(const opts *o, double acc, const gm_digit_scores *sc, double samples_per_s) {
    tool_json_begin();
    tool_json_str("model", "digit_classifier");
    tool_json_num("test_accuracy", acc);
    tool_json_num("fd_train2000_vs_test", sc->fd);
    tool_json_num("entropy_train2000", sc->entropy);
    tool_json_int("epochs", o->epochs);
    tool_json_str("checkpoint", o->save);
    tool_json_num("samples_per_s", samples_per_s);
    tool_json_end();
}

int main(int argc, char **argv) {
    opts o;
    gm_dataset tr, te;
    gm_digit_classifier m;
    gm_batcher b;
    gm_graph *g;
    gm_optim opt;
    gm_digit_scores sc;
    gm_meta meta;
    const int *idx;
    float *x;
    int *y, k, epoch, rc;
    long seen = 0;
    double acc, t0;
    memset(&o, 0, sizeof o);
    o.save = "data/digit_classifier.safetensors";
    o.epochs = 12; o.batch = 64; o.lr = 1e-3f; o.seed = 1;
    rc = parse_args(&o, argc, argv);
    if (rc != 0) return rc == 1 ? 0 : 2;
    if (!o.data) o.data = tool_data_dir();
    if (o.threads > 0) gm_set_threads(o.threads);
    if (gm_mnist_load(&tr, &te, o.data, 0, 0, -1.0f, 1.0f) != 0) return fail("data");
    if (gm_digit_classifier_init(&m, o.seed) != 0) return fail("model");
    g = gm_graph_new(o.seed);
    opt = gm_adam(o.lr, 0.9f, 0.999f);
    x = (float *)malloc((size_t)o.batch * 784 * sizeof(float));
    y = (int *)malloc((size_t)o.batch * sizeof(int));
    if (!g || !x || !y) { fprintf(stderr, "%s: out of memory\n", NAME); return 1; }
    gm_batcher_init(&b, tr.n, o.batch, o.seed, 1);
    t0 = now_s();
    for (epoch = 0; epoch < o.epochs; epoch++) {
        double sum = 0;
        int steps = 0;
        while ((k = gm_batcher_next(&b, &idx)) > 0) {
            gm_tensor *loss;
            gm_graph_reset(g);
            gm_dataset_gather(&tr, idx, k, x, y);
            loss = gm_softmax_xent(g, gm_digit_classifier_forward(g, &m, gm_input(g, x, k, 784, 0, 0), NULL), y);
            if (gm_backward(g, loss) != 0 || gm_optim_step(&opt, &m.params) != 0) return fail("training");
            sum += loss->data[0];
            steps++;
            seen += k;
        }
        if (!o.quiet) printf("epoch %d/%d: mean loss %.4f\n", epoch + 1, o.epochs, steps ? sum / steps : 0.0);
    }
    t0 = now_s() - t0;
    acc = test_accuracy(&m, g, &te);
    if (acc < 0) return fail("evaluation");
    if (gm_digit_score(&m, g, tr.x, NULL, 2000, te.x, te.n, &sc) != 0) return fail("Frechet distance");
    memset(&meta, 0, sizeof meta);
    gm_meta_set(&meta, "model", "gm_digit_classifier");
    gm_meta_set(&meta, "arch", "conv4x4/2 16 relu, conv4x4/2 32 relu, dense 128 relu (features), dense 10; input 28x28 in [-1,1]");
    gm_meta_setf(&meta, "test_accuracy", "%.4f", acc);
    gm_meta_setf(&meta, "epochs", "%d", o.epochs);
    gm_meta_setf(&meta, "seed", "%lu", o.seed);
    gm_meta_set(&meta, "made_by", "tools/train_classifier.c");
    if (gm_checkpoint_save(o.save, &m.params, NULL, &meta) != 0) return fail("save");
    if (!o.quiet) printf("test accuracy %.4f, FD(2000 train, %d test) %.3f, label entropy of train %.4f; wrote %s\n", acc,
                         te.n, sc.fd, sc.entropy, o.save);
    print_json(&o, acc, &sc, t0 > 0 ? seen / t0 : 0);
    gm_batcher_free(&b);
    free(x); free(y);
    gm_optim_free(&opt);
    gm_graph_free(g);
    gm_digit_classifier_free(&m);
    gm_dataset_free(&tr); gm_dataset_free(&te);
    return 0;
}
