/* data_shim.h: stand-in for the genmod core so the data layer can be tested alone.
 * The lead replaces it with   #define GENMOD_IMPLEMENTATION / #include "../genmod.h".
 * Provides only what the data layer uses: gm__fail, gm_last_error and the gm_params_* calls. */
#ifndef GM_DATA_SHIM_H
#define GM_DATA_SHIM_H
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../src/gm_shared_types.h"

static char gm__shim_err[1024];
GMDEF const char *gm_last_error(void) { return gm__shim_err; }
static int gm__fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(gm__shim_err, sizeof gm__shim_err, fmt, ap);
    va_end(ap);
    return -1;
}

GMDEF int gm_params_find(const gm_params *p, const char *name) {
    int i;
    for (i = 0; i < p->nviews; i++)
        if (strcmp(p->views[i].name, name) == 0) return i;
    return -1;
}
GMDEF int gm_params_add(gm_params *p, const char *name, int ndim, const int *shape) {
    size_t size = 1;
    int i;
    gm_param_view *v;
    if (ndim < 0 || ndim > GM_MAX_DIMS || strlen(name) >= GM_NAME_MAX || gm_params_find(p, name) >= 0) return -1;
    for (i = 0; i < ndim; i++) size *= (size_t)shape[i];
    if (p->nviews == p->views_capacity) {
        p->views_capacity = p->views_capacity ? 2 * p->views_capacity : 8;
        p->views = (gm_param_view *)realloc(p->views, (size_t)p->views_capacity * sizeof *v);
    }
    if (p->count + size > p->capacity) {
        p->capacity = 2 * (p->count + size);
        p->data = (float *)realloc(p->data, p->capacity * sizeof(float));
        p->grad = (float *)realloc(p->grad, p->capacity * sizeof(float));
    }
    v = &p->views[p->nviews];
    memset(v, 0, sizeof *v);
    strcpy(v->name, name);
    v->ndim = ndim;
    for (i = 0; i < ndim; i++) v->shape[i] = shape[i];
    v->offset = p->count;
    v->size = size;
    memset(p->data + p->count, 0, size * sizeof(float));
    memset(p->grad + p->count, 0, size * sizeof(float));
    p->count += size;
    return p->nviews++;
}
GMDEF float *gm_params_data(gm_params *p, int view) { return p->data + p->views[view].offset; }
GMDEF float *gm_params_grad(gm_params *p, int view) { return p->grad + p->views[view].offset; }
GMDEF void gm_params_zero_grad(gm_params *p) { if (p->grad) memset(p->grad, 0, p->count * sizeof(float)); }
GMDEF void gm_params_free(gm_params *p) {
    free(p->data);
    free(p->grad);
    free(p->views);
    memset(p, 0, sizeof *p);
}

#include "../src/gm_data_api.h"
#include "../src/gm_data_impl.h"
#endif
