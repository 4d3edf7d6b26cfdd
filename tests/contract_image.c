/* genmod_image.h's implementation in its own translation unit, the core compiled elsewhere. */
#define GENMOD_IMAGE_IMPLEMENTATION
#include "genmod_image.h"
