/* genmod_ebm.h's implementation in its own translation unit, the core compiled elsewhere. */
#define GENMOD_EBM_IMPLEMENTATION
#include "genmod_ebm.h"
