/* genmod_flow.h's implementation in its own translation unit, the core compiled elsewhere. */
#define GENMOD_FLOW_IMPLEMENTATION
#include "genmod_flow.h"
