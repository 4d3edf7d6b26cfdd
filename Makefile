# genmod: `make demo` trains the main example on the bundled data and writes PNGs to out/;
# `make test` builds and runs every test (ends with "N passed, N failed").
CC      ?= cc
CXX     ?= c++
OPT     ?= -O2
WARN    := -std=c99 -Wall -Wextra -Wpedantic
LDLIBS  := -lm -lpthread
SAN     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
HEADERS := $(wildcard genmod*.h) examples/common.h
TESTS   := test_core test_grad test_kernels test_data test_image test_vae test_gan test_flow test_hmm test_diffusion test_ar test_ebm test_contract
EXAMPLES:= $(patsubst examples/%.c,%,$(wildcard examples/*.c))
AARCH64_CC ?= aarch64-linux-gnu-gcc

.PHONY: all test sanitize flags demo bench clean warnings fuzz data interop

TOOLS   := $(patsubst tools/%.c,%,$(wildcard tools/*.c))

all: $(addprefix build/,$(EXAMPLES)) $(addprefix build/,$(TOOLS))

build/%: tools/%.c $(HEADERS) | build
	$(CC) $(OPT) $(WARN) -I. $< -o $@ $(LDLIBS)

build/%: examples/%.c $(HEADERS) | build
	$(CC) $(OPT) $(WARN) -I. $< -o $@ $(LDLIBS)

build/test_%: tests/test_%.c tests/gm_test.h $(HEADERS) | build
	$(CC) $(OPT) $(WARN) -I. $< -o $@ $(LDLIBS)

build/san/fuzz_%: tests/fuzz_%.c $(HEADERS) | build
	@mkdir -p build/san
	$(CC) $(SAN) $(WARN) -I. $< -o $@ $(LDLIBS)

build/san/test_%: tests/test_%.c tests/gm_test.h $(HEADERS) | build
	@mkdir -p build/san
	$(CC) $(SAN) $(WARN) -I. $< -o $@ $(LDLIBS)

# test_contract links the core, the pictures and every family from separate translation units,
# one of them (the GAN family) compiled as C++: a family needs nothing of the core but its API.
CONTRACT_C := tests/contract_core.c tests/contract_image.c tests/contract_vae.c tests/contract_flow.c tests/contract_hmm.c tests/contract_diffusion.c tests/contract_ar.c tests/contract_ebm.c
build/contract_gan.o: tests/contract_gan.c $(HEADERS) | build
	$(CXX) $(OPT) -x c++ -std=c++11 -Wall -Wextra -Wpedantic -I. -c $< -o $@

build/test_contract: tests/test_contract.c tests/gm_test.h $(CONTRACT_C) build/contract_gan.o $(HEADERS) | build
	$(CC) $(OPT) $(WARN) -I. -c tests/test_contract.c -o build/contract_main.o
	for f in $(CONTRACT_C); do $(CC) $(OPT) $(WARN) -I. -c $$f -o build/$$(basename $$f .c).o || exit 1; done
	$(CXX) build/contract_main.o $(patsubst tests/%.c,build/%.o,$(CONTRACT_C)) build/contract_gan.o -o $@ $(LDLIBS)

build/san/test_contract: tests/test_contract.c tests/gm_test.h $(CONTRACT_C) tests/contract_gan.c $(HEADERS) | build
	@mkdir -p build/san
	$(CC) $(SAN) $(WARN) -I. tests/test_contract.c $(CONTRACT_C) tests/contract_gan.c -o $@ $(LDLIBS)

NEON_TESTS := test_kernels test_core test_grad
build/neon/test_%: tests/test_%.c tests/gm_test.h $(HEADERS) | build
	@mkdir -p build/neon
	$(AARCH64_CC) -O2 -static $(WARN) -I. $< -o $@ $(LDLIBS)

build:
	@mkdir -p build out

# The test command CI runs: unit tests, the warning-free build checks, and the NEON path under qemu:
# the kernels, and the core ops and gradient checks, which take the convolutions through the NEON
# transposes (a FAIL, not a skip, if the cross tools are missing: .ci/run installs them).
FUZZERS := fuzz_idx fuzz_safetensors
test: $(addprefix build/,$(TESTS)) $(addprefix build/san/,$(FUZZERS)) $(addprefix build/neon/,$(NEON_TESTS))
	@sh tests/run.sh $(addprefix build/,$(TESTS)) "sh tests/warnings.sh" "GM_TEST_SMALL=1 qemu-aarch64 build/neon/test_kernels" \
	    "qemu-aarch64 build/neon/test_core" "qemu-aarch64 build/neon/test_grad" \
	    "build/san/fuzz_idx tests/corpus/idx/*" "build/san/fuzz_safetensors tests/corpus/safetensors/*"

sanitize: $(addprefix build/san/,$(TESTS))
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 sh tests/run.sh $(addprefix build/san/,$(TESTS))

warnings:
	@sh tests/warnings.sh

# Every example's every flag (tests/flags.sh): refused when malformed, and honoured (it changes
# what the run produces) or refused when it does not apply. Tiny runs, two at a time: ~9 minutes
# on 2 cores: with make test it would pass the 10-minute limit, so it is its own target (CI runs it after).
flags: $(addprefix build/,$(EXAMPLES))
	@sh tests/flags.sh

demo: build/vae
	./build/vae --out out

# Speed: GEMM and an MLP step against OpenBLAS and the FMA peak, then every model family's training
# throughput against the PyTorch references of ../shared/baselines (GM_BASELINES), interleaved.
bench: build/bench_gemm build/bench_train build/bench_models build/bench_hmm build/bench_ebm build/bench_diffusion build/bench_ar
	./build/bench_gemm
	./build/bench_train
	sh bench/run_models.sh
	./build/bench_hmm
	./build/bench_ebm
	./build/bench_diffusion
	./build/bench_ar

build/bench_%: bench/bench_%.c bench/bench_util.h $(HEADERS) | build
	$(CC) $(OPT) $(WARN) -I. $< -o $@ $(LDLIBS) -lopenblas

data:
	sh data/fetch.sh

# Coverage-guided fuzzing of the file loaders with libFuzzer (clang), FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
fuzz: | build
	@for f in $(FUZZERS); do \
	    clang -g -O1 -DGM_LIBFUZZER -fsanitize=fuzzer,address,undefined -I. tests/$$f.c -o build/$$f-lf $(LDLIBS) || exit 1; \
	    mkdir -p build/corpus-$$f; \
	    ./build/$$f-lf -max_total_time=$(FUZZ_SECONDS) -timeout=10 build/corpus-$$f tests/corpus/$${f#fuzz_} 2>&1 | tail -n 3 || exit 1; \
	done

# A checkpoint written by genmod read by an independent Python reader, and the reverse.
interop: build/test_data
	/usr/bin/python3 tests/safetensors_check.py roundtrip build/test_data

clean:
	rm -rf build
