#!/bin/sh
# Every header (the core, the pictures and each family, each included twice) must compile warning-free with gcc and clang (C99) and as C++, with and without SIMD
# and threads. One PASS/FAIL line per compiler configuration.
cd "$(dirname "$0")/.." || exit 1
src=$(mktemp --suffix=.c)
cat > "$src" <<'C'
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#define GENMOD_IMAGE_IMPLEMENTATION
#include "genmod_image.h"
#include "genmod_image.h"
#define GENMOD_IMPLEMENTATION
#include "genmod.h"
#include "genmod.h"
#define GENMOD_VAE_IMPLEMENTATION
#include "genmod_vae.h"
#define GENMOD_GAN_IMPLEMENTATION
#include "genmod_gan.h"
#define GENMOD_FLOW_IMPLEMENTATION
#include "genmod_flow.h"
#define GENMOD_HMM_IMPLEMENTATION
#include "genmod_hmm.h"
#define GENMOD_DIFFUSION_IMPLEMENTATION
#include "genmod_diffusion.h"
#define GENMOD_AR_IMPLEMENTATION
#include "genmod_ar.h"
#define GENMOD_EBM_IMPLEMENTATION
#include "genmod_ebm.h"
#include "genmod_vae.h"
#include "genmod_gan.h"
#include "genmod_flow.h"
#include "genmod_hmm.h"
#include "genmod_diffusion.h"
#include "genmod_ar.h"
#include "genmod_ebm.h"
int main(void) { return gm_get_threads() > 0 ? 0 : 1; }
C
check() {
    name=$1; shift
    if out=$("$@" 2>&1) && [ -z "$out" ]; then echo "PASS warnings_$name"; else echo "FAIL warnings_$name"; echo "$out" | head -20; fi
}
# stb_image_write.h is vendored as it is: -isystem keeps its own warnings out of the check
W="-Wall -Wextra -Wpedantic -Werror -I. -isystem third_party -fsyntax-only"
check gcc_c99 gcc -std=c99 $W "$src"
check gcc_c11 gcc -std=c11 $W "$src"
check gcc_nosimd_nothreads gcc -std=c99 -DGENMOD_NO_SIMD -DGENMOD_NO_THREADS $W "$src"
check gxx_cxx11 g++ -x c++ -std=c++11 $W "$src"
if command -v clang >/dev/null; then
    check clang_c99 clang -std=c99 $W "$src"
    check clangxx_cxx11 clang++ -x c++ -std=c++11 $W "$src"
else
    echo "FAIL warnings_clang: clang is not installed"
fi
rm -f "$src"
# The examples and tools, which users build with one cc line, are held to the same standard.
for f in examples/*.c tools/*.c; do
    check "gcc_$(basename "$f" .c)" gcc -std=c99 $W "$f"
    if command -v clang >/dev/null; then check "clang_$(basename "$f" .c)" clang -std=c99 $W "$f"; fi
done
