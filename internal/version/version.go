// Package version is trowfs's version, stamped at build time:
//
//	go build -ldflags "-X github.com/trowfs/trowfs/internal/version.Version=v1.2.3" ./cmd/trowfs
//
// (make build and the Dockerfile do this with `git describe`). `trowfs version`, the root
// .state's trowfs_version and the status page all show String.
package version

import "runtime/debug"

// Version is set with -ldflags -X; "dev" when it was not.
var Version = "dev"

// String is Version, or, for a binary built without -X, the module version the Go toolchain
// recorded (`go install github.com/trowfs/trowfs/cmd/trowfs@v1.2.3`), or "dev".
func String() string {
	if Version != "dev" && Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
