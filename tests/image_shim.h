/* image_shim.h: lets the pictures layer (src/gm_image_*.h) compile on its own, before it is
 * pasted into genmod.h: a minimal gm_last_error / gm__fail and the two headers. Include it in
 * exactly one file. Define STB_IMAGE_WRITE_IMPLEMENTATION and include stb_image_write.h first
 * to get PNG support. */
#ifndef GM_IMAGE_SHIM_H
#define GM_IMAGE_SHIM_H
#include <stdarg.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "../src/gm_shared_types.h"
#include "../src/gm_image_api.h"
#ifdef __cplusplus
}
#endif

static char gm__shim_err[512];
GMDEF const char *gm_last_error(void) { return gm__shim_err; }
static int gm__fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(gm__shim_err, sizeof gm__shim_err, fmt, ap);
    va_end(ap);
    return -1;
}
#include "../src/gm_image_impl.h"
#endif
