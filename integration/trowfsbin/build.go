package trowfsbin

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// EnvBinary names a prebuilt trowfs binary to use instead of building one (for example the
// Makefile's bin/trowfs). It must be an absolute path.
const EnvBinary = "TROWFS_BIN"

// build holds the result of the one build of a test process.
var build struct {
	once sync.Once
	path string // absolute path of the binary; empty when the build failed
	dir  string // directory the binary was built into (removed by Cleanup)
	err  error
}

// InCI reports whether the tests run under CI=true, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require fails (under CI=true) or skips the test when this machine cannot mount FUSE: the
// mount needs /dev/fuse and root (trowfs mounts directly, without fusermount).
func Require(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if InCI() {
			t.Fatalf("FUSE tests need /dev/fuse under CI=true: %v", err)
		}
		t.Skipf("no /dev/fuse: %v", err)
	}
	if os.Geteuid() != 0 {
		if InCI() {
			t.Fatalf("FUSE tests run as root under CI=true (uid %d)", os.Geteuid())
		}
		t.Skip("FUSE tests need root")
	}
}

// Build builds ./cmd/trowfs once per test process and returns the binary's absolute path. A
// failed build fails the test (every test that asks, with the compiler's output).
func Build(t testing.TB) string {
	t.Helper()
	build.once.Do(func() { build.path, build.dir, build.err = buildBinary() })
	if build.err != nil {
		t.Fatalf("building trowfs: %v", build.err)
	}
	return build.path
}

// Cleanup removes the directory the binary was built into. Call it from TestMain after m.Run.
func Cleanup() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

func buildBinary() (path, dir string, err error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if !filepath.IsAbs(p) {
			return "", "", fmt.Errorf("%s=%s: want an absolute path", EnvBinary, p)
		}
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("%s: %w", EnvBinary, err)
		}
		return p, "", nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", "", err
	}
	goBin, err := goTool()
	if err != nil {
		return "", "", err
	}
	dir, err = os.MkdirTemp("", "trowfsbin-")
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, "trowfs")
	cmd := exec.Command(goBin, "build", "-o", path, "./cmd/trowfs")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		_ = os.RemoveAll(dir)
		return "", "", fmt.Errorf("go build ./cmd/trowfs in %s: %v\n%s", root, err, out.String())
	}
	return path, dir, nil
}

// ModuleRoot finds the directory of trowfs's go.mod above the current directory (go test runs
// a package's tests in the package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(b, []byte("module github.com/trowfs/trowfs\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of github.com/trowfs/trowfs above the current directory")
		}
		dir = parent
	}
}

// goTool finds the go command: on PATH, else in GOROOT, else the usual install location.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	for _, p := range []string{filepath.Join(os.Getenv("GOROOT"), "bin", "go"), "/usr/local/go/bin/go"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("the go command is neither on PATH nor in GOROOT")
}
