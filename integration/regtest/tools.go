package regtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Paths are the absolute paths of the pinned tools built by integration/tools/install.sh.
type Paths struct {
	// Registry is the CNCF distribution registry (`registry serve`, `registry garbage-collect`).
	Registry string
	// Conformance is the OCI distribution-spec conformance suite.
	Conformance string
	// Olareg is the olareg registry (one OCI layout per repository).
	Olareg string
	// Crane is go-containerregistry's command-line client.
	Crane string
	// Versions maps each tool's name to the version recorded when it was built.
	Versions map[string]string
}

// Tool names, as in integration/tools/versions.txt and the cache's bin directory.
const (
	toolRegistry    = "registry"
	toolConformance = "oci-conformance"
	toolOlareg      = "olareg"
	toolCrane       = "crane"
)

// ToolsDir is where install.sh puts the tools: $TROWFS_TOOLS, or $HOME/.cache/trowfs-tools.
func ToolsDir() string {
	if d := os.Getenv("TROWFS_TOOLS"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "trowfs-tools")
}

// InCI reports whether the tests run under CI (CI=true), where missing tools are failures.
func InCI() bool {
	return os.Getenv("CI") == "true"
}

// Tools returns the paths of the pinned tools. A tool that is missing, or built at another version
// than integration/tools/versions.txt pins, fails the test under CI=true and skips it otherwise.
func Tools(tb testing.TB) Paths {
	tb.Helper()
	p, err := findTools(ToolsDir())
	if err != nil {
		if InCI() {
			tb.Fatalf("regtest: %v: run make tools", err)
		}
		tb.Skipf("regtest: %v: run make tools (or bash integration/tools/install.sh) to enable this test", err)
	}
	return p
}

// ErrToolMissing is wrapped by the error findTools returns when a tool is absent or stale.
var ErrToolMissing = errors.New("real-registry tool not installed")

func findTools(dir string) (Paths, error) {
	pinned, err := pinnedVersions()
	if err != nil {
		return Paths{}, err
	}
	stamp, err := os.ReadFile(filepath.Join(dir, "versions"))
	if err != nil {
		return Paths{}, fmt.Errorf("%w: %v", ErrToolMissing, err)
	}
	built := parseVersions(stamp)
	bin := filepath.Join(dir, "bin")
	p := Paths{
		Registry:    filepath.Join(bin, toolRegistry),
		Conformance: filepath.Join(bin, toolConformance),
		Olareg:      filepath.Join(bin, toolOlareg),
		Crane:       filepath.Join(bin, toolCrane),
		Versions:    built,
	}
	for name, want := range pinned {
		if got := built[name]; got != want {
			return Paths{}, fmt.Errorf("%w: %s is at %q in %s, %s is pinned", ErrToolMissing, name, got, dir, want)
		}
		fi, err := os.Stat(filepath.Join(bin, name))
		if err != nil {
			return Paths{}, fmt.Errorf("%w: %v", ErrToolMissing, err)
		}
		if fi.Mode()&0o111 == 0 {
			return Paths{}, fmt.Errorf("%w: %s is not executable", ErrToolMissing, filepath.Join(bin, name))
		}
	}
	return p, nil
}

// pinnedVersions reads integration/tools/versions.txt, found by walking up from the working
// directory to the module root (go test runs each package in its own directory).
func pinnedVersions() (map[string]string, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(root, "integration", "tools", "versions.txt"))
	if err != nil {
		return nil, fmt.Errorf("regtest: pinned versions: %w", err)
	}
	v := parseVersions(b)
	for _, name := range []string{toolRegistry, toolConformance, toolOlareg, toolCrane} {
		if v[name] == "" {
			return nil, fmt.Errorf("regtest: integration/tools/versions.txt pins no version of %s", name)
		}
	}
	return v, nil
}

// parseVersions reads lines of "name version [anything]", skipping blanks and # comments.
func parseVersions(b []byte) map[string]string {
	v := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		v[f[0]] = f[1]
	}
	return v
}

const modulePath = "github.com/trowfs/trowfs"

// moduleRoot is the nearest directory at or above the working directory whose go.mod declares
// trowfs's module.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("regtest: module root: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && declaresModule(b) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("regtest: no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func declaresModule(gomod []byte) bool {
	for _, line := range strings.Split(string(gomod), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == modulePath
		}
	}
	return false
}
