#include "tmp_kernels_impl.h"
