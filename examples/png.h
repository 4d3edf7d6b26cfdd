/* png.h: every example's first include. It compiles stb_image_write (vendored, public domain / MIT)
 * into the program, before genmod's implementation, which then writes PNGs through it. Its own
 * "= { 0 }" initializers warn when built as C++, so they are silenced here, not edited there. */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "../third_party/stb_image_write.h"
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
