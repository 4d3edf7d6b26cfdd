/* The core's implementation, alone in its translation unit (see test_contract.c). */
#define GENMOD_IMPLEMENTATION
#include "genmod.h"
