/* tool.h: what the programs in tools/ share -- a table-driven command line, the bundled data
 * directory, and their one JSON line. Each tool is built with one cc line and must not depend on
 * examples/, hence this small header of static helpers (C99, also valid C++):
 *
 *   static const char *in;  static int n = 0;     // defaults are the values before parsing
 *   static const tool_flag flags[] = {
 *       {"in", TOOL_STRING, &in, "FILE", "what to read (required)", 0, NULL},
 *       {"n",  TOOL_INT,    &n,  "N",    "how many, 0 = all",       0, NULL}};
 *   static const tool_cli cli = {"mytool", "--in FILE [--n N]", "Reads FILE.", flags, 2, 10};
 *   int rc = tool_parse(&cli, argc, argv);    // 1: usage printed, 2: bad flag, told on stderr
 *   if (rc) return rc == 1 ? 0 : 2;
 *   if (!in) return tool_bad_usage("mytool", "--in FILE is required");
 *   tool_json_begin(); tool_json_str("in", in); tool_json_int("n", n); tool_json_end();
 *
 * Flags are "--flag value" or "--flag=value"; --help or -h anywhere prints the usage: each flag,
 * its help and, when the field holds one before parsing, its default in brackets. */
#ifndef GENMOD_TOOL_H
#define GENMOD_TOOL_H
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifndef _WIN32
#include <sys/resource.h>
#endif

typedef enum tool_kind {
    TOOL_STRING,     /* const char *: the value as given */
    TOOL_INT,        /* int: a whole number in [min, INT_MAX] */
    TOOL_ULONG,      /* unsigned long: a whole number >= 0, without a sign */
    TOOL_POSITIVE,   /* float: a number > 0 (and < 1e30) */
    TOOL_SWITCH      /* int: set to 1 by the bare flag; takes no value */
} tool_kind;

typedef struct tool_flag {
    const char *name;    /* without the leading -- */
    tool_kind kind;
    void *value;         /* where the value goes; its type follows kind */
    const char *meta;    /* the value's placeholder in the usage ("N", "FILE"), NULL for a switch */
    const char *help;
    int min;             /* TOOL_INT: the smallest value allowed (a smaller one is "out of range") */
    const char *what;    /* what a bad value "is not", NULL: worded by kind */
} tool_flag;

typedef struct tool_cli {
    const char *name;      /* the program, first word of every message */
    const char *synopsis;  /* the usage line after the name */
    const char *about;     /* what the program does (may span lines) */
    const tool_flag *flags;
    int nflags;
    int width;             /* the usage's flag column */
} tool_cli;

/* The complaint about a bad command line, on stderr; returns 2, the exit code for it. */
static inline int tool_bad_usage(const char *tool, const char *msg) {
    fprintf(stderr, "%s: %s (see --help)\n", tool, msg);
    return 2;
}

/* A flag's value as it stands, for the usage's "[default]"; 0 when it has none. */
static inline int tool__default(const tool_flag *f, char *buf, size_t cap) {
    switch (f->kind) {
    case TOOL_STRING:
        if (!*(const char **)f->value) return 0;
        snprintf(buf, cap, " [%s]", *(const char **)f->value);
        return 1;
    case TOOL_INT: snprintf(buf, cap, " [%d]", *(const int *)f->value); return 1;
    case TOOL_ULONG: snprintf(buf, cap, " [%lu]", *(const unsigned long *)f->value); return 1;
    case TOOL_POSITIVE: snprintf(buf, cap, " [%g]", (double)*(const float *)f->value); return 1;
    case TOOL_SWITCH: break;
    }
    return 0;
}

static inline void tool_usage(const tool_cli *c, FILE *out) {
    char col[64], def[1024];
    int i;
    fprintf(out, "usage: %s %s\n%s\n\n", c->name, c->synopsis, c->about);
    for (i = 0; i < c->nflags; i++) {
        const tool_flag *f = &c->flags[i];
        snprintf(col, sizeof col, "--%s%s%s", f->name, f->meta ? " " : "", f->meta ? f->meta : "");
        fprintf(out, "  %-*s  %s%s\n", c->width, col, f->help, tool__default(f, def, sizeof def) ? def : "");
    }
    fprintf(out, "  %-*s  this text\n", c->width, "--help");
}

/* The value v into flag f; msg gets the complaint. Returns 0 or -1. */
static inline int tool__set(const tool_flag *f, const char *v, char *msg, size_t cap) {
    const char *what = f->what;
    char *end;
    errno = 0;
    if (f->kind == TOOL_STRING) { *(const char **)f->value = v; return 0; }
    if (f->kind == TOOL_POSITIVE) {
        double d = strtod(v, &end);
        if (*v && !*end && errno != ERANGE && d > 0 && d < 1e30) { *(float *)f->value = (float)d; return 0; }
        if (!what) what = "a positive number";
    } else if (f->kind == TOOL_ULONG) {
        unsigned long u = strtoul(v, &end, 10);   /* strtoul would wrap "-1" round */
        if (*v && *v != '-' && *v != '+' && !*end && errno != ERANGE) { *(unsigned long *)f->value = u; return 0; }
    } else {
        long l = strtol(v, &end, 10);
        if (*v && !*end && errno != ERANGE && l >= 0 && l <= INT_MAX) {
            if (l >= f->min) { *(int *)f->value = (int)l; return 0; }
            snprintf(msg, cap, "--%s: %ld is out of range", f->name, l);
            return -1;
        }
    }
    snprintf(msg, cap, "--%s: '%s' is not %s", f->name, v, what ? what : "a whole number >= 0");
    return -1;
}

/* The table's entry called name[0..len), or NULL. */
static inline const tool_flag *tool__find(const tool_cli *c, const char *name, size_t len) {
    int k;
    for (k = 0; k < c->nflags; k++)
        if (strlen(c->flags[k].name) == len && strncmp(c->flags[k].name, name, len) == 0) return &c->flags[k];
    return NULL;
}

/* Every flag into its field, in order. Returns 0, or 2 with msg saying why. */
static inline int tool__scan(const tool_cli *c, int argc, char **argv, char *msg, size_t cap) {
    int i;
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq, *val;
        const tool_flag *f;
        size_t len;
        if (strncmp(arg, "--", 2) != 0) { snprintf(msg, cap, "unexpected argument '%s' (flags start with --)", arg); return 2; }
        arg += 2;
        eq = strchr(arg, '=');
        len = eq ? (size_t)(eq - arg) : strlen(arg);
        f = tool__find(c, arg, len);
        if (!f || (f->kind == TOOL_SWITCH && eq)) { snprintf(msg, cap, "unknown flag '--%.*s'", (int)len, arg); return 2; }
        if (f->kind == TOOL_SWITCH) { *(int *)f->value = 1; continue; }
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else { snprintf(msg, cap, "--%s needs a value", f->name); return 2; }
        if (tool__set(f, val, msg, cap) != 0) return 2;
    }
    return 0;
}

/* The command line into the table's fields. Returns 0 (go on), 1 (--help: usage printed on
 * stdout; exit 0) or 2 (bad flag: said on stderr; exit 2). */
static inline int tool_parse(const tool_cli *c, int argc, char **argv) {
    char msg[512];
    int i;
    for (i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { tool_usage(c, stdout); return 1; }
    if (tool__scan(c, argc, argv, msg, sizeof msg) != 0) return tool_bad_usage(c->name, msg);
    return 0;
}

static inline int tool_is_dir(const char *p) {
    struct stat st;
#ifdef _WIN32
    return stat(p, &st) == 0 && (st.st_mode & _S_IFMT) == _S_IFDIR;
#else
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
#endif
}

/* The bundled data/ directory, found as the examples find it: $GENMOD_DATA, else the first of
 * data, ../data, ../../data that exists (a tool runs from the repository or from build/). */
static inline const char *tool_data_dir(void) {
    static const char *const tries[3] = {"data", "../data", "../../data"};
    const char *env = getenv("GENMOD_DATA");
    int i;
    if (env && env[0]) return env;
    for (i = 0; i < 3; i++)
        if (tool_is_dir(tries[i])) return tries[i];
    return "data";
}

/* The JSON line: tool_json_begin, one call per field, tool_json_end. */
static int tool__json_fields;

static inline void tool_json_begin(void) {
    tool__json_fields = 0;
    putchar('{');
}

/* A field's key; the caller prints its value (for arrays). */
static inline void tool_json_key(const char *key) {
    if (tool__json_fields++) putchar(',');
    printf("\"%s\":", key);
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static inline void tool_json_str(const char *key, const char *s) {
    tool_json_key(key);
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* A JSON number; NaN and infinities, which JSON lacks, become null. */
static inline void tool_json_num(const char *key, double v) {
    tool_json_key(key);
    if (v == v && v - v == 0) printf("%.10g", v);
    else printf("null");
}

static inline void tool_json_int(const char *key, long v) {
    tool_json_key(key);
    printf("%ld", v);
}

/* Closes the line with the process's peak memory (resident set, where the OS tells it). */
static inline void tool_json_end(void) {
#ifndef _WIN32
    struct rusage ru;
#ifdef __APPLE__
    const double per_mib = 1048576.0;   /* ru_maxrss in bytes */
#else
    const double per_mib = 1024.0;      /* ru_maxrss in KiB */
#endif
    if (getrusage(RUSAGE_SELF, &ru) == 0) tool_json_num("peak_rss_mib", (double)ru.ru_maxrss / per_mib);
#endif
    printf("}\n");
    fflush(stdout);
}
#endif
