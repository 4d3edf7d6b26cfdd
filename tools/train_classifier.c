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
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#ifndef _WIN32
#include <sys/resource.h>
#include <sys/time.h>
#endif

#define NAME "train_classifier"

typedef struct opts {
    const char *data, *save;
    int epochs, batch, threads, quiet;
    float lr;
    unsigned long seed;
} opts;

static void usage(const opts *o) {
    printf("usage: %s [flags]\nTrains the digit classifier used to score GAN samples (FD, label entropy, accuracy).\n\n"
           "  --data DIR      dataset directory [$GENMOD_DATA, else data/ or ../data/]\n"
           "  --epochs N      training epochs [%d]\n  --batch N       minibatch size [%d]\n"
           "  --lr X          Adam learning rate [%g]\n  --seed N        random seed [%lu]\n"
           "  --threads N     worker threads, 0 = library default [%d]\n  --save FILE     where the weights go [%s]\n"
           "  --quiet         only errors and the final JSON line\n  --help          this text\n",
           NAME, o->epochs, o->batch, o->lr, o->seed, o->threads, o->save);
}

/* One flag's value into its field; msg gets the complaint. */
static int set_flag(opts *o, const char *name, const char *v, char *msg, size_t cap) {
    char *end;
    double d;
    long l;
    errno = 0;
    if (!strcmp(name, "data")) { o->data = v; return 0; }
    if (!strcmp(name, "save")) { o->save = v; return 0; }
    if (!strcmp(name, "lr")) {
        d = strtod(v, &end);
        if (*v && !*end && errno != ERANGE && d > 0 && d < 1e30) { o->lr = (float)d; return 0; }
        snprintf(msg, cap, "--lr: '%s' is not a positive number", v);
        return -1;
    }
    if (!strcmp(name, "seed")) {
        unsigned long u = strtoul(v, &end, 10);
        if (*v && *v != '-' && *v != '+' && !*end && errno != ERANGE) { o->seed = u; return 0; }
        snprintf(msg, cap, "--seed: '%s' is not a whole number >= 0", v);
        return -1;
    }
    l = strtol(v, &end, 10);
    if (!*v || *end || errno == ERANGE || l < 0 || l > INT_MAX) {
        snprintf(msg, cap, "--%s: '%s' is not a whole number >= 0", name, v);
        return -1;
    }
    if (!strcmp(name, "epochs") && l >= 1) o->epochs = (int)l;
    else if (!strcmp(name, "batch") && l >= 1) o->batch = (int)l;
    else if (!strcmp(name, "threads")) o->threads = (int)l;
    else { snprintf(msg, cap, "--%s: %ld is out of range", name, l); return -1; }
    return 0;
}

/* "--flag v" or "--flag=v". Returns 0, 1 (--help) or 2 (msg says why). */
static int parse_args(opts *o, int argc, char **argv, char *msg, size_t cap) {
    static const char *const known[7] = {"data", "save", "lr", "seed", "epochs", "batch", "threads"};
    int i, k;
    for (i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    for (i = 1; i < argc; i++) {
        char name[32];
        const char *arg = argv[i], *eq, *val;
        size_t len;
        if (strncmp(arg, "--", 2) != 0) { snprintf(msg, cap, "unexpected argument '%s' (flags start with --)", arg); return 2; }
        arg += 2;
        eq = strchr(arg, '=');
        len = eq ? (size_t)(eq - arg) : strlen(arg);
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), arg);
        if (!strcmp(name, "quiet") && !eq) { o->quiet = 1; continue; }
        for (k = 0; k < 7 && strcmp(known[k], name) != 0; k++) {}
        if (k == 7 || len >= sizeof name) { snprintf(msg, cap, "unknown flag '--%.*s'", (int)len, arg); return 2; }
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else { snprintf(msg, cap, "--%s needs a value", name); return 2; }
        if (set_flag(o, name, val, msg, cap) != 0) return 2;
    }
    return 0;
}

/* --data default: $GENMOD_DATA, else the first of data, ../data, ../../data that exists. */
static const char *find_data(void) {
    static const char *tries[3] = {"data", "../data", "../../data"};
    const char *env = getenv("GENMOD_DATA");
    struct stat st;
    int i;
    if (env && env[0]) return env;
    for (i = 0; i < 3; i++)
#ifdef _WIN32
        if (stat(tries[i], &st) == 0 && (st.st_mode & _S_IFMT) == _S_IFDIR) return tries[i];
#else
        if (stat(tries[i], &st) == 0 && S_ISDIR(st.st_mode)) return tries[i];
#endif
    return "data";
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
    printf("{\"model\":\"digit_classifier\",\"test_accuracy\":%.10g,\"fd_train2000_vs_test\":%.10g,"
           "\"entropy_train2000\":%.10g,\"epochs\":%d,\"checkpoint\":\"", acc, sc->fd, sc->entropy, o->epochs);
    {   const char *s;
        for (s = o->save; *s; s++) {
            if (*s == '"' || *s == '\\') putchar('\\');
            if ((unsigned char)*s >= 0x20) putchar(*s);
        } }
    printf("\",\"samples_per_s\":%.10g", samples_per_s);
#ifndef _WIN32
    {   struct rusage ru;
#ifdef __APPLE__
        const double per_mib = 1048576.0;   /* ru_maxrss in bytes */
#else
        const double per_mib = 1024.0;      /* ru_maxrss in KiB */
#endif
        if (getrusage(RUSAGE_SELF, &ru) == 0) printf(",\"peak_rss_mib\":%.10g", (double)ru.ru_maxrss / per_mib); }
#endif
    printf("}\n");
}

int main(int argc, char **argv) {
    opts o;
    char msg[512];
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
    rc = parse_args(&o, argc, argv, msg, sizeof msg);
    if (rc == 1) { usage(&o); return 0; }
    if (rc == 2) { fprintf(stderr, "%s: %s (see --help)\n", NAME, msg); return 2; }
    if (!o.data) o.data = find_data();
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
