# FedSeg: `make test` and `make demo` work on a fresh Debian machine; both install what is missing.
SWIFT ?= swift
BENCH_SUITES ?= gemm kmeans embed

.PHONY: all setup build test demo bench clean

all: build

setup:
	@scripts/setup

build: setup
	$(SWIFT) build

test: setup
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

demo: setup
	$(SWIFT) build -c release
	.build/release/fedseg doctor

bench: setup
	cd Benchmarks && $(SWIFT) build -c release
	@for suite in $(BENCH_SUITES); do echo "== $$suite"; Benchmarks/.build/release/fedseg-bench $$suite || exit 1; done

clean:
	rm -rf .build Benchmarks/.build
