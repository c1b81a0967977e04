# ked — build, test, bench, demo.  `make help` lists the targets.
#
#   make deps    install missing Debian packages (apt-get update first when one is missing)
#   make         build build/libked.a and build/ked
#   make test    run the whole test suite (prints "N passed, N failed")
#   make asan    the fast tests under ASan+UBSan (build-san/)
#   make bench   benchmarks (ratios against the machine's sgemm peak and PyTorch)
#   make demo    the main job on the built-in default model

CC      ?= cc
BUILD   ?= build
PKGS     = jansson yaml-0.1 libpcre2-8 libutf8proc openblas lapacke
DEBS     = build-essential pkg-config libopenblas-openmp-dev liblapacke-dev libjansson-dev \
           libyaml-dev libpcre2-dev libutf8proc-dev clang
# warnings: ggml's set (docs/style.md §6.14); -Werror keeps gcc and clang clean
WARN     = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
           -Wno-unused-parameter
OPT     ?= -O3 -march=native
# gcc warns on every snprintf that may truncate; ked truncates error messages on purpose
ifneq ($(findstring clang,$(CC)),clang)
  WARN += -Wno-format-truncation
endif
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) -fopenmp $(WARN) -Iinclude -Isrc \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -fopenmp -lmvec -lm -lpthread

ifeq ($(SAN),1)
  OPT     = -O1 -g -fno-omit-frame-pointer
  CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDLIBS += -fsanitize=address,undefined
  # at -O1 clang does not vectorise, and says so of every `#pragma omp simd` loop
  ifeq ($(findstring clang,$(CC)),clang)
    CFLAGS += -Wno-pass-failed
  endif
endif

LIB_SRC  := $(sort $(wildcard src/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC  := $(sort $(wildcard cli/*.c))
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC:= $(sort $(wildcard bench/bench_*.c))
BENCH_BIN:= $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all deps test test-fast asan bench demo clean help tidy
all: $(BUILD)/ked $(TEST_BIN)

help:
	@sed -n '1,9p' Makefile

deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "make deps: all Debian packages present"; fi

$(BUILD)/%.o: %.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC  $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libked.a: $(LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/ked: $(CLI_OBJ) $(BUILD)/libked.a
	@echo "  LD  $@"
	@$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(BUILD)/libked.a
	@mkdir -p $(dir $@)
	@echo "  LD  $@"
	@$(CC) $(CFLAGS) -Itests $< $(BUILD)/libked.a -o $@ $(LDLIBS)

$(BUILD)/bench/%: bench/%.c bench/bench_util.h $(BUILD)/libked.a
	@mkdir -p $(dir $@)
	@echo "  LD  $@"
	@$(CC) $(CFLAGS) $< $(BUILD)/libked.a -o $@ $(LDLIBS)

# the whole suite, heavy tests included
test: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) sh tests/run.sh all

# fast tests only (no heavy ones)
test-fast: all
	@BUILD=$(BUILD) sh tests/run.sh fast

asan: deps
	@$(MAKE) --no-print-directory SAN=1 BUILD=build-san CC=clang all
	@BUILD=build-san sh tests/run.sh fast

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@sh bench/run.sh $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory $(BUILD)/ked
	@sh cli/demo.sh $(BUILD)/ked

# the default model models/ked-facts (docs/training.md): corpus, tokenizer, training (resumable:
# run it again after an interruption), installation and accuracy. KF_THREADS=N to use N threads.
.PHONY: ked-facts
ked-facts: deps
	@$(MAKE) --no-print-directory $(BUILD)/ked $(BUILD)/tools/kf_corpus $(BUILD)/tools/kf_eval
	@sh tools/ked_facts.sh $(BUILD)

$(BUILD)/tools/%: tools/%.c $(wildcard tools/*.h) $(BUILD)/libked.a
	@mkdir -p $(dir $@)
	@echo "  LD  $@"
	@$(CC) $(CFLAGS) $< $(BUILD)/libked.a -o $@ $(LDLIBS)

clean:
	rm -rf build build-san
