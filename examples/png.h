/* png.h: every example's first include, its pictures. It compiles stb_image_write (vendored,
 * public domain / MIT) into the program, then genmod_image.h's implementation (grids, plots, PNG
 * files), which writes PNGs through it. stb's own "= { 0 }" initializers warn when built as C++,
 * so they are silenced here, not edited there. */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "../third_party/stb_image_write.h"
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
#define GENMOD_IMAGE_IMPLEMENTATION
#include "../genmod_image.h"
