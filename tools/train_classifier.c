/* train_classifier.c: trains the digit classifier behind the GAN measures (genmod_gan.h:
 * gm_digit_classifier) on the bundled MNIST subset and writes its weights to
 * data/digit_classifier.safetensors (the committed checkpoint was made by this program with its
 * defaults: `./build/train_classifier`).
 *
 *   cc -O2 -I. tools/train_classifier.c -o build/train_classifier -lm -lpthread
 *   ./build/train_classifier [--epochs 12] [--save data/digit_classifier.safetensors]
 *
 * Images are mapped to [-1, 1], the range GAN generators produce. Prints the test accuracy and the
 * Frechet distance between the features of 2000 training and the 2000 test images (the floor a
 * perfect generator would reach with that many samples), then a JSON line. */
#include "../examples/png.h"
#define GENMOD_IMPLEMENTATION
#define GENMOD_GAN_IMPLEMENTATION
#include "../genmod_gan.h"
#include "../examples/common.h"

static int fail(const ex_args *a, const char *what) {
    fprintf(stderr, "%s: %s: %s\n", a->name, what, gm_last_error());
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

int main(int argc, char **argv) {
    ex_args a = ex_defaults("train_classifier", 12, 64, 1e-3f);
    gm_dataset tr, te;
    gm_digit_classifier m;
    gm_batcher b;
    gm_graph *g;
    gm_optim opt;
    gm_digit_scores sc;
    gm_meta meta;
    ex_run run;
    ex_json j;
    const int *idx;
    float *x;
    int *y, k, epoch;
    double acc;
    a.save = "data/digit_classifier.safetensors";
    ex_init(&a, argc, argv, "Trains the digit classifier used to score GAN samples (FD, label entropy, accuracy).", NULL, 0);
    if (gm_mnist_load(&tr, &te, a.data_dir, 0, 0, -1.0f, 1.0f) != 0) return fail(&a, "data");
    if (gm_digit_classifier_init(&m, a.seed) != 0) return fail(&a, "model");
    g = gm_graph_new(a.seed);
    opt = gm_adam(a.lr, 0.9f, 0.999f);
    x = (float *)malloc((size_t)a.batch * 784 * sizeof(float));
    y = (int *)malloc((size_t)a.batch * sizeof(int));
    if (!g || !x || !y) { fprintf(stderr, "%s: out of memory\n", a.name); return 1; }
    gm_batcher_init(&b, tr.n, a.batch, a.seed, 1);
    ex_run_begin(&run, &a, ex_total_steps(&a, tr.n / a.batch), a.batch, "loss");
    for (epoch = 0; epoch < a.epochs; epoch++) {
        while ((k = gm_batcher_next(&b, &idx)) > 0) {
            gm_tensor *loss;
            float l;
            gm_graph_reset(g);
            gm_dataset_gather(&tr, idx, k, x, y);
            loss = gm_softmax_xent(g, gm_digit_classifier_forward(g, &m, gm_input(g, x, k, 784, 0, 0), NULL), y);
            if (gm_backward(g, loss) != 0 || gm_optim_step(&opt, &m.params) != 0) return fail(&a, "training");
            l = loss->data[0];
            ex_run_step(&run, &l);
        }
    }
    ex_run_end(&run);
    acc = test_accuracy(&m, g, &te);
    if (acc < 0) return fail(&a, "evaluation");
    if (gm_digit_score(&m, g, tr.x, NULL, 2000, te.x, te.n, &sc) != 0) return fail(&a, "Frechet distance");
    memset(&meta, 0, sizeof meta);
    gm_meta_set(&meta, "model", "gm_digit_classifier");
    gm_meta_set(&meta, "arch", "conv4x4/2 16 relu, conv4x4/2 32 relu, dense 128 relu (features), dense 10; input 28x28 in [-1,1]");
    gm_meta_setf(&meta, "test_accuracy", "%.4f", acc);
    gm_meta_setf(&meta, "epochs", "%d", a.epochs);
    gm_meta_setf(&meta, "seed", "%lu", a.seed);
    gm_meta_set(&meta, "made_by", "tools/train_classifier.c");
    if (gm_checkpoint_save(a.save, &m.params, NULL, &meta) != 0) return fail(&a, "save");
    if (!a.quiet) printf("test accuracy %.4f, FD(2000 train, %d test) %.3f, label entropy of train %.4f; wrote %s\n", acc,
                         te.n, sc.fd, sc.entropy, a.save);
    ex_json_init(&j);
    ex_json_str(&j, "model", "digit_classifier");
    ex_json_num(&j, "test_accuracy", acc);
    ex_json_num(&j, "fd_train2000_vs_test", sc.fd);
    ex_json_num(&j, "entropy_train2000", sc.entropy);
    ex_json_num(&j, "epochs", a.epochs);
    ex_json_str(&j, "checkpoint", a.save);
    ex_json_print(&j);
    ex_run_free(&run);
    gm_batcher_free(&b);
    free(x); free(y);
    gm_optim_free(&opt);
    gm_graph_free(g);
    gm_digit_classifier_free(&m);
    gm_dataset_free(&tr); gm_dataset_free(&te);
    return 0;
}
