#include "tmp_kernels_api.h"
