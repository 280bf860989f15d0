# The two set-up commands (see README): `make demo` and `make test`. Both install what they need
# first (scripts/setup.sh: Debian packages, the ONNX Runtime library, the models), and a second
# run installs and fetches nothing.

SHELL := /bin/bash
export GST_INTERACTION_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gst-interaction
export ORT_DYLIB_PATH ?= $(GST_INTERACTION_CACHE)/models/onnxruntime/libonnxruntime.so.1.31.1
# A registry file of our own, so that a stale user registry never hides a rebuilt plugin.
export GST_REGISTRY := $(CURDIR)/target/gst-registry.bin
CARGO ?= cargo

.PHONY: setup demo test lint bench duplexbench

setup:
	@bash scripts/setup.sh

demo: setup
	$(CARGO) build --release --workspace
	bash scripts/demo.sh

# --all-targets: the build resolves features as `cargo test` does (dev-dependencies on), so the
# test step reuses it instead of compiling every crate, llama.cpp included, a second time.
test: setup lint
	@bash scripts/test-fetcher.sh
	$(CARGO) build --workspace --all-targets
	@bash scripts/check-plugins.sh $(CURDIR)/target/debug
	GST_PLUGIN_PATH=$(CURDIR)/target/debug bash scripts/cargo-test.sh --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: setup
	$(CARGO) bench --workspace

# The full live benchmark (duplexbench/README.md): the built-in set of 24 dialogues played in
# real time through both configurations (about 10 minutes). Not part of `make test`.
BENCH_OUT ?= $(CURDIR)/out/bench
duplexbench: setup
	$(CARGO) build --release -p duplexbench
	target/release/duplexbench generate --seed 1 --out $(BENCH_OUT)/set
	target/release/duplexbench run --set $(BENCH_OUT)/set --out $(BENCH_OUT)/run --config both
