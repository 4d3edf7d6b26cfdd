/* Temporary shim: builds the kernels section on its own until it is pasted into genmod.h. */
#include <stddef.h>
#define GMDEF extern
#include "../src/gm_kernels_api.h"
#include "../src/gm_kernels_impl.h"
