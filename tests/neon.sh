#!/bin/sh
# Cross-compiles tests/test_kernels.c for aarch64 (NEON path) and runs it under qemu-user.
# Needs: apt-get install -y gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
# GM_TEST_SMALL=1 keeps the run short (qemu is slow): no 257-sized cases, sparse math sweep.
set -e
cd "$(dirname "$0")/.."
out=${TMPDIR:-/tmp}/gm_test_kernels_neon
aarch64-linux-gnu-gcc -O2 -std=c99 -Wall -Wextra -Wpedantic -static tests/test_kernels.c -o "$out" -lm -lpthread
GM_TEST_SMALL=1 qemu-aarch64 "$out"
