# Materia: the two set-up commands are `make demo` and `make test`; both start from a fresh
# clone and install what they need. One cargo profile (release) serves tests, the demo,
# benchmarks and releases, and the target directory lives outside the clone, so the bundled C
# libraries compile once per machine and later runs (and other clones) reuse them.

SHELL := /bin/sh
CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(HOME)/.cache/materia/target
# Every cargo command selects --workspace: the features of build-script dependencies are unified
# over the selected packages, and a different selection (say `-p lakehouse`) changes the hash of
# libduckdb-sys's build script, which recompiles the bundled DuckDB (about 25 minutes).
CARGO_FLAGS := --release --locked
BIN_DIR := $(CARGO_TARGET_DIR)/release
BINARIES := extract-psd psd-gen transform export-serving materia-status
# The SQLMesh virtualenv: pinned SQLMesh and the duckdb package of the same DuckDB release as
# the Rust crate (transform/requirements.txt, frozen from transform/requirements.in).
VENV ?= .venv
SQLMESH := $(VENV)/bin/sqlmesh

.PHONY: all deps deps-bench build venv test test-rust test-transform lint demo bench release clean-data help

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

venv: $(VENV)/.installed

$(VENV)/.installed: transform/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r transform/requirements.txt
	touch $@

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings
	shellcheck -s sh scripts/*.sh .ci/run

test-rust: build venv
	MATERIA_VENV="$(abspath $(VENV))" $(CARGO) test $(CARGO_FLAGS) --workspace

# SQLMesh unit tests of every model (fixture paths are relative to transform/).
test-transform: venv
	cd transform && LANDING_DIR=/nonexistent "$(abspath $(SQLMESH))" test

test: lint test-transform test-rust

demo: build venv
	BIN_DIR="$(BIN_DIR)" VENV="$(abspath $(VENV))" sh scripts/demo.sh

bench: deps-bench build venv
	BIN_DIR="$(BIN_DIR)" sh scripts/bench-extract.sh
	BIN_DIR="$(BIN_DIR)" VENV="$(abspath $(VENV))" sh scripts/bench-transform.sh
	BIN_DIR="$(BIN_DIR)" VENV="$(abspath $(VENV))" sh scripts/bench-export.sh

release: build
	mkdir -p bin
	for b in $(BINARIES); do install -m 0755 "$(BIN_DIR)/$$b" "bin/$$b.new" && mv -f "bin/$$b.new" "bin/$$b"; done

# Removes the demo's data (never run against production paths).
clean-data:
	rm -rf data
