/* genmod_ar.h's implementation in its own translation unit, the core compiled elsewhere. */
#define GENMOD_AR_IMPLEMENTATION
#include "genmod_ar.h"
