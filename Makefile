# Materia: the two set-up commands are `make demo` and `make test`; both start from a fresh
# clone and install what they need. One cargo profile (release) serves tests, the demo,
# benchmarks and releases, and the target directory lives outside the clone, so the bundled C
# libraries compile once per machine and later runs (and other clones) reuse them.

SHELL := /bin/sh
CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(HOME)/.cache/materia/target
CARGO_FLAGS := --release --locked
BIN_DIR := $(CARGO_TARGET_DIR)/release
BINARIES := extract-psd psd-gen

.PHONY: all deps deps-bench build test test-rust lint demo bench release clean-data help

all: build

help:
	@echo "make demo     run the pipeline end to end on generated data (data/...)"
	@echo "make test     lint and every test"
	@echo "make bench    benchmarks against their baselines"
	@echo "make lint     cargo fmt --check, clippy -D warnings, shellcheck"
	@echo "make release  build the binaries into ./bin (what deploys run)"

deps:
	@sh scripts/install-deps.sh test

deps-bench:
	@sh scripts/install-deps.sh bench

build:
	$(CARGO) build $(CARGO_FLAGS) --workspace --bins

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings
	shellcheck -s sh scripts/*.sh .ci/run

test-rust: build
	$(CARGO) test $(CARGO_FLAGS) --workspace

test: lint test-rust

demo: build
	BIN_DIR="$(BIN_DIR)" sh scripts/demo.sh

bench: deps-bench build
	BIN_DIR="$(BIN_DIR)" sh scripts/bench-extract.sh

release: build
	mkdir -p bin
	for b in $(BINARIES); do install -m 0755 "$(BIN_DIR)/$$b" "bin/$$b.new" && mv -f "bin/$$b.new" "bin/$$b"; done

# Removes the demo's data (never run against production paths).
clean-data:
	rm -rf data
