#include "gm_kernels_impl.h"
