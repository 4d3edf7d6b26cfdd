/* genmod_diffusion.h's implementation in its own translation unit, the core compiled elsewhere. */
#define GENMOD_DIFFUSION_IMPLEMENTATION
#include "genmod_diffusion.h"
