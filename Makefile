# accesshub — the commands a newcomer needs. See README.md.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: known-bad deny nats-config dev test test-rust test-contracts test-api-fuzz test-chart bench soak lint fmt services build clean-test-dbs image-size

## Start NATS + PostgreSQL (installing them if needed), the vendor simulators and every
## accesshub service locally, with a demo tenant wired to the simulators. Ctrl-C stops it.
dev: services
	deploy/dev-up.sh

## Run the whole test suite (Rust unit/integration/end-to-end tests, the schema contract tests
## with the official AsyncAPI parser and python-jsonschema, the admin API fuzzer and the Helm
## chart tests).
test: services clean-test-dbs test-rust test-contracts test-api-fuzz test-chart

services:
	deploy/dev-services.sh

## Regenerate deploy/nats/values-nats.yaml from deploy/nats/permissions.yaml (NATS identities).
nats-config:
	$(CARGO) run -q -p accesshub-natsauth --bin accesshub-nats-config -- helm-values > deploy/nats/values-nats.yaml

build:
	$(CARGO) build --workspace --bins

test-rust:
	$(CARGO) build --workspace --bins
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast --profile ci; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

test-chart:
	tests/chart/run.sh

## Property-based fuzzing (schemathesis) of the live admin API against its OpenAPI document:
## no 5xx, every answer as documented. API_FUZZ_EXAMPLES (default 100) bounds it.
test-api-fuzz:
	tests/api-fuzz/run.sh

## proto-schemas/: @asyncapi/parser (npm, into tests/contracts/node_modules), check_schema on
## every JSON Schema, every example validated.
test-contracts:
	tests/contracts/run.sh

## Drop databases left behind by earlier (killed) test runs.
clean-test-dbs:
	@psql -h 127.0.0.1 -U postgres -d test -tAc "select datname from pg_database where datname like 'ah_t_%'" 2>/dev/null \
	  | while read -r db; do [ -n "$$db" ] && psql -h 127.0.0.1 -U postgres -d test -qc "drop database if exists \"$$db\" with (force)" >/dev/null 2>&1; done; true

## Benchmarks: raw baselines and accesshub's figures, printed and written to BENCHMARKS.md,
## then one summary table (baselines, figures, targets met/missed, ratios) at its top.
bench: services
	deploy/bench.sh

## The cluster chaos test must catch known-bad changes (tests/e2e/known-bad/*.patch): each is
## applied to a scratch worktree, built, and the short cluster chaos must fail on it.
known-bad: services
	tests/e2e/known-bad/run.sh

## The long runs: the convergence checker (issue 20: thousands of seeded histories per vendor
## with crashes and vendor faults; SOAK_HISTORIES per vendor, SOAK_ARGS e.g. --vendor tapkey),
## then the long form of the cluster chaos test (issue 25: CLUSTER_CHAOS_SEEDS seeded runs of
## CLUSTER_CHAOS_ROUNDS rounds on a 3-node R3 cluster; the short form, seed 1 with 30 rounds,
## is in make test).
SOAK_HISTORIES ?= 2000
## Environments side by side per vendor (each its own PostgreSQL and nats-server; histories
## mostly wait for the pipeline to settle, so 16 on 2 cores ran ~10x one: BENCHMARKS.md).
SOAK_JOBS ?= 16
CLUSTER_CHAOS_SEEDS ?= 1,2,3,4,5,6,7,8
CLUSTER_CHAOS_ROUNDS ?= 120
soak: services
	$(CARGO) run --release -p accesshub-convergence --bin convergence-soak -- --histories $(SOAK_HISTORIES) --jobs $(SOAK_JOBS) $(SOAK_ARGS)
	$(CARGO) build --workspace --bins
	CLUSTER_CHAOS_SEEDS=$(CLUSTER_CHAOS_SEEDS) CLUSTER_CHAOS_ROUNDS=$(CLUSTER_CHAOS_ROUNDS) \
	  $(CARGO) test -p accesshub-e2e --test cluster cluster_chaos_seeded -- --nocapture

lint: deny
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## The container image's size without a container engine: builds the binary deploy/Dockerfile
## ships (release), strips it as the Dockerfile does, adds the distroless base (BENCHMARKS.md).
image-size:
	deploy/image-size.sh --markdown

## Dependency policy (deny.toml): licenses, bans, sources; advisories when the RustSec DB can be
## fetched (else a loud warning). Installs cargo-deny if missing.
deny:
	CARGO=$(CARGO) deploy/deny.sh

fmt:
	$(CARGO) fmt --all
