# trowfs developer targets. `make run` and `make test` are the README's first two commands.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

BIN      ?= bin/trowfs
GO       ?= go
DATA     ?=
MNT      ?=

.PHONY: all build install run setup setup-run apt tools vet test test-short fuzz bench passthrough-hp clean

all: build

# The version `trowfs version` and .state report: the nearest tag, else the commit (-dirty with
# uncommitted changes); stamped into internal/version with -ldflags -X.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
LDFLAGS  := -X github.com/trowfs/trowfs/internal/version.Version=$(VERSION)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/trowfs

# The binary where mount(8)'s clean PATH and the systemd unit find it, and mount.fuse.trowfs for
# mount(8) without mount.fuse3 (it looks for helpers in /sbin only: link it there), see
# docs/operating.md.
PREFIX  ?= /usr/local
DESTDIR ?=
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/sbin/trowfs
	ln -sf trowfs $(DESTDIR)$(PREFIX)/sbin/mount.fuse.trowfs

# Packages the mount and the tests use (chromium: the status page's browser test). Missing apt is
# not fatal: trowfs mounts directly as root.
apt:
	@pkgs=""; \
	command -v fusermount3 >/dev/null && [ -e /sbin/mount.fuse3 ] || pkgs="$$pkgs fuse3"; \
	command -v sqlite3 >/dev/null || pkgs="$$pkgs sqlite3"; \
	command -v systemd-analyze >/dev/null || pkgs="$$pkgs systemd"; \
	command -v chromium >/dev/null || pkgs="$$pkgs chromium"; \
	if [ -n "$$pkgs" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "== installing$$pkgs (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null) \
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

test: setup vet
	$(GO) test -race -count=1 -timeout 18m ./...

test-short: build
	$(GO) test -short -count=1 ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzReadSnapshot -fuzztime 30s ./hashtree/
	$(GO) test -run '^$$' -fuzz FuzzNameRoundTrip -fuzztime 30s ./api/

bench: build
	$(GO) run ./bench/cmd/trowfs-bench $(BENCHFLAGS)

# libfuse's example/passthrough_hp at a pinned tag, the C column of `make bench` (which finds it at
# bin/passthrough_hp and prints SKIP rows without it). Not part of test or CI. Nothing is fetched
# from the internet: LIBFUSE is a local snapshot of github.com/libfuse/libfuse (a git directory
# holding tag fuse-3.18.2, that tag's tarball, or its unpacked tree).
LIBFUSE ?=
passthrough-hp:
	@[ -n "$(LIBFUSE)" ] || { echo "usage: make passthrough-hp LIBFUSE=<libfuse git dir, tarball or source tree of fuse-3.18.2>"; exit 2; }
	bash bench/passthrough_hp/build.sh $(LIBFUSE) bin/passthrough_hp

clean:
	rm -rf bin
