#include "gm_kernels_api.h"
