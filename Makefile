# FedSeg: `make test` and `make demo` work on a fresh Debian machine; both install what is missing.
SWIFT ?= swift
BENCH_SUITES ?= gemm kmeans embed coordinator secagg scale compare durable

DEMO_DIR ?= .demo
export DEMO_DIR

PROTOC_SCRATCH ?= .build-protoc

# On goodbooks the recommendation release needs the larger share of ε and of each reader's books
# (README, "Segments on real data": measured with scripts/goodbooks-table).
GOODBOOKS_SPLIT ?= --clustering-share 0.3 --max-items-per-user 30 --candidate-items 500

FUZZ_SECONDS ?= 600
FUZZ_FLAGS = -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -use-ld=lld

.PHONY: all setup build test demo demo-distributed demo-synthetic bench proto openapi fuzz clean

all: build

setup:
	@scripts/setup

build: setup
	$(SWIFT) build

# The tests also drive the dashboard in headless Chromium (setup --browser installs it) and start
# PostgreSQL servers of their own for the PostgreSQL store (setup --postgres installs Debian's).
test:
	@scripts/setup --browser --postgres
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# The main job: the coordinator daemon on a free loopback port, 10 tenant-shard clients holding the
# bundled goodbooks readers (MiniLM embeddings, computed on the clients), a private run at ε = 8,
# the report, the privacy audit through the admin API, and a graceful stop; then the same readers on
# three `fedseg-node serve` processes, enrolled with tokens, in a local and a distributed run the
# operator starts with `fedseg run start`, each node segmenting and recommending on its own.
demo: setup
	$(SWIFT) build -c release
	.build/release/fedseg doctor
	scripts/demo goodbooks data/goodbooks --clients 10 --k 8 --epsilon 8 --delta 1e-6 --embedder minilm $(GOODBOOKS_SPLIT)
	@echo
	@echo "== the same readers on three real nodes (fedseg-node serve, one process each), runs started by the operator"
	NODE_CACHE_DIR=$${FEDSEG_CACHE:-$$HOME/.cache/fedseg}/embeddings scripts/node-demo data/goodbooks 3 minilm

# The same data and ε with secure aggregation: each client adds a share of the noise.
demo-distributed: setup
	$(SWIFT) build -c release
	scripts/demo goodbooks-distributed data/goodbooks --clients 10 --k 8 --epsilon 8 --delta 1e-6 --embedder minilm \
		--privacy-mode distributed $(GOODBOOKS_SPLIT)

# The same on generated data with planted segments, where ARI against ground truth means something.
demo-synthetic: setup
	$(SWIFT) build -c release
	rm -rf $(DEMO_DIR)/planted-data
	.build/release/client-sim generate --out $(DEMO_DIR)/planted-data --users 20000 --segments 8 --seed 1
	scripts/demo planted $(DEMO_DIR)/planted-data --clients 20 --k 8 --epsilon 8 --delta 1e-6 --embedder minilm

# docs/openapi.json is the API's contract; the coordinator serves the copy compiled into it
# (GET /openapi.json), and a test fails when the two differ.
openapi:
	{ printf '// Generated from docs/openapi.json by `make openapi`: edit that file, then run it.\n\nenum OpenAPIDocument {\n    static let json = #"""\n'; \
	  cat docs/openapi.json; printf '\n"""#\n}\n'; } > Sources/FedSegCoordinator/OpenAPIDocument.swift

# The durable suite starts a PostgreSQL server of its own: setup --postgres installs Debian's.
bench:
	@scripts/setup --postgres
	@# A nested package keeps a stale list of the root package's files in its build plan: drop the
	@# plan (seconds to redo), and rebuild clean only if it still trips.
	cd Benchmarks && rm -f .build/*.yaml .build/*/description.json && \
		($(SWIFT) build -c release || ($(SWIFT) package clean && $(SWIFT) build -c release))
	@for suite in $(BENCH_SUITES); do echo "== $$suite"; Benchmarks/.build/release/fedseg-bench $$suite || exit 1; done

# Regenerates the committed Swift code from Protos/ (needs protoc: apt-get install protobuf-compiler).
proto:
	@command -v protoc >/dev/null || { echo "proto: protoc missing: apt-get install protobuf-compiler" >&2; exit 1; }
	$(SWIFT) package resolve
	$(SWIFT) build -c release --package-path .build/checkouts/swift-protobuf --product protoc-gen-swift --scratch-path $(PROTOC_SCRATCH)
	mkdir -p Sources/FedSegProtocol/Generated
	protoc --plugin=protoc-gen-swift=$(PROTOC_SCRATCH)/release/protoc-gen-swift --swift_out=Sources/FedSegProtocol/Generated \
		--swift_opt=Visibility=Public --proto_path=Protos Protos/fedseg/v1/*.proto

# libFuzzer over the wire decoder, field validation and the envelope opener (Fuzz/), seeded
# from Fuzz/Corpus; new inputs go to .fuzz-corpus, crashes to .fuzz-artifacts.
fuzz: setup
	cd Fuzz && ($(SWIFT) build -c release $(FUZZ_FLAGS) || ($(SWIFT) package clean && $(SWIFT) build -c release $(FUZZ_FLAGS)))
	mkdir -p .fuzz-corpus .fuzz-artifacts
	Fuzz/.build/release/fedseg-fuzz .fuzz-corpus Fuzz/Corpus -max_total_time=$(FUZZ_SECONDS) -timeout=5 \
		-artifact_prefix=.fuzz-artifacts/

clean:
	rm -rf .build Benchmarks/.build $(DEMO_DIR)
