package integration

import (
	"os/exec"
	"testing"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// go.mod lists every direct requirement as direct and nothing unused, and go.sum is complete:
// `go mod tidy` would change nothing (CI builds with -mod=readonly, which relies on it).
func TestGoModIsTidy(t *testing.T) {
	root, err := trowfsbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go: %v", err)
	}
	cmd := exec.Command(goBin, "mod", "tidy", "-diff")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod tidy -diff: %v: go.mod or go.sum is not tidy (run go mod tidy):\n%s", err, out)
	}
}
