/* genmod_gan.h's implementation in its own translation unit, the core compiled elsewhere. */
#define GENMOD_GAN_IMPLEMENTATION
#include "genmod_gan.h"
