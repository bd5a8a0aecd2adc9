#!/usr/bin/env bash
# install.sh: builds the pinned real registries and clients that trowfs's integration tests drive.
#
# Nothing here is committed code of those projects: every tool is built from the Go module proxy at a
# pinned version into ${TROWFS_TOOLS:-$HOME/.cache/trowfs-tools}/bin. A stamp file records what was
# built at which version, so a second run skips the tools that are already there (idempotent).
#
# Called by `make tools` (from .ci/run, as root, CI=true, on a fresh Debian machine). Usable by hand:
#   bash integration/tools/install.sh            # build what is missing
#   TROWFS_TOOLS=/tmp/t bash integration/tools/install.sh
#   TROWFS_TOOLS_FORCE=1 bash integration/tools/install.sh   # rebuild everything
# The pinned versions live in versions.txt beside this script.
set -euo pipefail

# A bare environment (no HOME, a short PATH) must not stop the Go toolchain.
export HOME="${HOME:-/root}"
[ -d "$HOME" ] || export HOME=/root
export PATH="/usr/local/go/bin:${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"
export GOPATH="${GOPATH:-$HOME/go}"
export GOCACHE="${GOCACHE:-$HOME/.cache/go-build}"
export GOMODCACHE="${GOMODCACHE:-$GOPATH/pkg/mod}"
# The project's GOFLAGS (-mod=mod) and any workspace must not leak into the builds of other modules.
export GOFLAGS="-buildvcs=false"
export GOWORK=off
export CGO_ENABLED=0

command -v go >/dev/null 2>&1 || { echo "install.sh: error: go not found (looked in /usr/local/go/bin and PATH)" >&2; exit 1; }

TOOLS="${TROWFS_TOOLS:-$HOME/.cache/trowfs-tools}"
BIN="$TOOLS/bin"
STAMP="$TOOLS/versions"
LOGS="$TOOLS/logs"
mkdir -p "$BIN" "$LOGS"
touch "$STAMP"

log() { echo "== tools: $*"; }

# stamped NAME VERSION: true when BIN/NAME exists and the stamp file records VERSION for it.
stamped() {
	[ -z "${TROWFS_TOOLS_FORCE:-}" ] && [ -x "$BIN/$1" ] && grep -qxF "$1 $2" "$STAMP"
}

# record NAME VERSION: replaces NAME's line in the stamp file (safe: called from the parent shell only).
record() {
	local tmp
	tmp="$(mktemp "$TOOLS/.versions.XXXXXX")"
	{ grep -v "^$1 " "$STAMP" || true; echo "$1 $2"; } | sort >"$tmp"
	mv -f "$tmp" "$STAMP"
}

# Each build writes exactly one executable, first into a temporary directory, then renames it into
# BIN, so an interrupted build never leaves a half-written tool that looks installed.

# build_install NAME VERSION PACKAGE: `go install PACKAGE@VERSION` (a main package in its own module;
# the conformance suite is one).
build_install() {
	local out; out="$(mktemp -d "$TOOLS/.build-$1.XXXXXX")"
	GOBIN="$out" go install "$3@$2"
	mv -f "$out/$(basename "$3")" "$BIN/$1"
	rm -rf "$out"
}

# build_wrapped NAME VERSION PACKAGE: some modules list no versions (olareg), so `go install pkg@v` is
# refused; a throwaway wrapper module that requires the exact version builds the command instead.
build_wrapped() {
	local mod module
	mod="$(mktemp -d "$TOOLS/.build-$1.XXXXXX")"
	module="${3%/cmd/*}"
	(
		cd "$mod"
		go mod init trowfs.invalid/wrapper >/dev/null 2>&1
		go get "$module@$2"
		go get "$3@$2"
		go build -o "$mod/tool.bin" "$3"
	)
	mv -f "$mod/tool.bin" "$BIN/$1"
	rm -rf "$mod"
}

builder_for() {
	case "$1" in
	olareg) echo build_wrapped ;;
	*) echo build_install ;;
	esac
}

VERSIONS="$(dirname "$0")/versions.txt"
[ -r "$VERSIONS" ] || { echo "install.sh: error: $VERSIONS not readable" >&2; exit 1; }
WANT=()
while read -r name version pkg _; do
	case "$name" in ''|'#'*) continue ;; esac
	[ -n "$pkg" ] || { echo "install.sh: error: bad line in $VERSIONS: $name $version" >&2; exit 1; }
	WANT+=("$name $version $pkg")
done <"$VERSIONS"

log "go $(go version | awk '{print $3}'), cache $TOOLS"
start=$(date +%s)
declare -A PIDS=() VERS=()
for w in "${WANT[@]}"; do
	read -r name version pkg <<<"$w"
	if stamped "$name" "$version"; then
		log "$name $version: already installed"
		continue
	fi
	log "$name $version: building (log: $LOGS/$name.log)"
	# Builds run in parallel: downloads overlap and the Go compiler's own parallelism fills 2 cores.
	builder="$(builder_for "$name")"
	( set -euo pipefail; "$builder" "$name" "$version" "$pkg" ) >"$LOGS/$name.log" 2>&1 &
	PIDS[$name]=$!
	VERS[$name]=$version
done

failed=()
for name in "${!PIDS[@]}"; do
	if wait "${PIDS[$name]}"; then
		record "$name" "${VERS[$name]}"
		log "$name ${VERS[$name]}: installed"
	else
		failed+=("$name")
		echo "== tools: $name ${VERS[$name]}: BUILD FAILED; its log:" >&2
		sed 's/^/    /' "$LOGS/$name.log" >&2 || true
	fi
done

# Leftover temporary build directories of failed builds.
rm -rf "$TOOLS"/.build-* 2>/dev/null || true

if [ "${#failed[@]}" -gt 0 ]; then
	echo "install.sh: error: failed to build: ${failed[*]}" >&2
	exit 1
fi

for w in "${WANT[@]}"; do
	read -r name _ _ <<<"$w"
	[ -x "$BIN/$name" ] || { echo "install.sh: error: $BIN/$name missing after install" >&2; exit 1; }
done
log "all tools ready in $BIN ($(( $(date +%s) - start )) s)"
cat "$STAMP"
