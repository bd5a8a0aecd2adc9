# trowfs developer targets. `make run` and `make test` are the README's first two commands.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

BIN      ?= bin/trowfs
GO       ?= go
DATA     ?=
MNT      ?=

.PHONY: all build run setup setup-run apt tools vet test test-short fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/trowfs

# Packages the mount and the tests use. Missing apt is not fatal: trowfs mounts directly as root.
apt:
	@if command -v apt-get >/dev/null 2>&1 && { ! command -v fusermount3 >/dev/null || ! command -v sqlite3 >/dev/null; }; then \
	  echo "== installing fuse3 sqlite3 (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 sqlite3 >/dev/null) \
	    || echo "warning: apt-get failed; continuing (trowfs mounts with DirectMount as root)"; \
	fi
	@[ -e /dev/fuse ] || { echo "error: /dev/fuse is missing"; exit 1; }

setup-run: apt build

# Mount DATA on MNT; with no DATA, a small generated demo registry is mounted and its .state shown.
run: setup-run
	$(BIN) mount $(DATA) $(MNT)

# Everything the tests need: apt packages, the real registries and clients (pinned), the binary.
setup: apt build tools

tools:
	bash integration/tools/install.sh

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: vet build
	$(GO) test -race -count=1 -timeout 18m ./...

test-short: build
	$(GO) test -short -count=1 ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzReadSnapshot -fuzztime 30s ./hashtree/
	$(GO) test -run '^$$' -fuzz FuzzNameRoundTrip -fuzztime 30s ./api/

bench: build
	$(GO) run ./bench/cmd/trowfs-bench $(BENCHFLAGS)

clean:
	rm -rf bin
