#!/usr/bin/env bash
# Builds libfuse's example/passthrough_hp (the fastest C passthrough, the third comparison column of
# `make bench`) from a local snapshot of libfuse's public repository, at a pinned tag, into
# bin/passthrough_hp of this repository. It is a benchmark baseline only: not part of `make test` or CI.
#
#   bench/passthrough_hp/build.sh SNAPSHOT [OUT]
#
# SNAPSHOT is where libfuse's source comes from, one of:
#   - a git directory (bare or not) of https://github.com/libfuse/libfuse that holds tag $TAG;
#   - a tarball (.tar, .tar.gz, .tar.xz) of that tag's tree, such as GitHub's fuse-3.18.2.tar.gz;
#   - an unpacked source tree of that tag.
# The script fetches nothing from the internet (this machine reaches only the Go proxy, apt and npm),
# so the snapshot must be provided. libfuse's source is never copied into this repository: it is
# unpacked and built in a temporary directory that is removed afterwards.
#
# What it needs from apt (meson, ninja-build, g++, pkg-config) it installs itself when missing.
# The program links libfuse statically, so bin/passthrough_hp runs without a libfuse3 install; it
# needs only /dev/fuse (and, to mount as non-root, fusermount3 from the fuse3 package).
set -euo pipefail

# The pinned release: libfuse 3.18.2, commit 033844748010a3b8265bf1c90b9ae8ffe4cd9ca7.
TAG=fuse-3.18.2
COMMIT=033844748010a3b8265bf1c90b9ae8ffe4cd9ca7

snap=${1:?usage: build.sh SNAPSHOT [OUT] (SNAPSHOT: libfuse git dir, tarball or source tree of $TAG)}
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${2:-$repo/bin/passthrough_hp}

need=""
command -v meson >/dev/null || need="$need meson"
command -v ninja >/dev/null || need="$need ninja-build"
command -v g++ >/dev/null || need="$need g++"
command -v pkg-config >/dev/null || need="$need pkg-config"
if [ -n "$need" ]; then
	echo "== installing$need (apt)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

work=$(mktemp -d /tmp/passthrough_hp-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$work/src
mkdir -p "$src"

if git --git-dir="$snap" rev-parse -q --verify "$TAG^{commit}" >/dev/null 2>&1; then
	gd=$snap
elif [ -d "$snap/.git" ] && git --git-dir="$snap/.git" rev-parse -q --verify "$TAG^{commit}" >/dev/null 2>&1; then
	gd=$snap/.git
else
	gd=""
fi
if [ -n "$gd" ]; then
	got=$(git --git-dir="$gd" rev-parse "$TAG^{commit}")
	if [ "$got" != "$COMMIT" ]; then
		echo "error: $TAG in $snap is $got, want $COMMIT" >&2
		exit 1
	fi
	git --git-dir="$gd" archive "$COMMIT" | tar -x -C "$src"
	echo "== libfuse $TAG ($COMMIT) from git directory $gd"
elif [ -f "$snap" ]; then
	tar -xf "$snap" -C "$src" --strip-components=1
	echo "== libfuse from tarball $snap (expected $TAG)"
elif [ -f "$snap/meson.build" ]; then
	cp -a "$snap/." "$src/"
	echo "== libfuse from source tree $snap (expected $TAG)"
else
	echo "error: $snap is neither a libfuse git directory holding $TAG, nor a tarball, nor a source tree" >&2
	exit 1
fi
# A tarball or tree cannot be checked against the commit; check at least the version it declares.
if ! grep -q "version: '${TAG#fuse-}'" "$src/meson.build"; then
	echo "error: $snap is not libfuse ${TAG#fuse-} (meson.build declares another version)" >&2
	exit 1
fi

# Static libfuse, examples on (passthrough_hp is one), no tests, no utils (fusermount3 comes from
# Debian's fuse3 when needed; as root libfuse mounts with mount(2) itself), and no io_uring transport
# (this kernel has it off: /sys/module/fuse/parameters/enable_uring = N).
meson setup "$work/build" "$src" --buildtype=release -Ddefault_library=static \
	-Dexamples=true -Dtests=false -Dutils=false -Duseroot=false -Denable-io-uring=false >"$work/setup.log" 2>&1 ||
	{ cat "$work/setup.log" >&2; exit 1; }
ninja -C "$work/build" example/passthrough_hp >"$work/ninja.log" 2>&1 ||
	{ tail -50 "$work/ninja.log" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
install -m 0755 "$work/build/example/passthrough_hp" "$out"
echo "$TAG $COMMIT" >"$out.version"
echo "== built $out ($TAG)"
