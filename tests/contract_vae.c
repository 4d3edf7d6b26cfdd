/* genmod_vae.h's implementation in its own translation unit, the core compiled elsewhere. */
#define GENMOD_VAE_IMPLEMENTATION
#include "genmod_vae.h"
