/* genmod_hmm.h's implementation in its own translation unit, the core compiled elsewhere. */
#define GENMOD_HMM_IMPLEMENTATION
#include "genmod_hmm.h"
