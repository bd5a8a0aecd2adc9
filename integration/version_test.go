package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// A binary built by `make build` carries the version the Makefile stamps (git describe), not
// "dev": `trowfs version` prints it and the root .state reports it.
func TestMakeBuildStampsTheVersion(t *testing.T) {
	trowfsbin.Require(t)
	root, err := trowfsbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "trowfs")
	mk := exec.Command("make", "-s", "build", "BIN="+bin)
	mk.Dir = root
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	want := "unknown"
	gd := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	gd.Dir = root
	if out, err := gd.Output(); err == nil {
		want = strings.TrimSpace(string(out))
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("trowfs version: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "trowfs "+want {
		t.Fatalf("trowfs version printed %q, want %q", got, "trowfs "+want)
	}

	dir := t.TempDir()
	data, mnt, ready := filepath.Join(dir, "data"), filepath.Join(dir, "mnt"), filepath.Join(dir, "ready")
	trowfsbin.Demo(t, data)
	startMount(t, exec.Command(bin, "mount", data, mnt, "--ready-file", ready), mnt, ready)
	b, err := os.ReadFile(filepath.Join(mnt, ".state"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Mount struct {
			Version string `json:"trowfs_version"`
		} `json:"mount"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mount.Version != want {
		t.Errorf(".state trowfs_version %q, want %q", st.Mount.Version, want)
	}
}

// startMount starts cmd, a `trowfs mount ... --ready-file ready` of mnt (not through
// trowfsbin.Start: the binary or its environment is the test's own), waits for ready, and stops
// it with SIGTERM at cleanup, failing the test unless it exits 0 with mnt unmounted.
func startMount(t *testing.T, cmd *exec.Cmd, mnt, ready string) *exec.Cmd {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("trowfs mount exited with %v; stderr:\n%s", err, stderr.String())
			}
		case <-time.After(trowfsbin.StopTimeout):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("trowfs mount did not stop within %v", trowfsbin.StopTimeout)
		}
		if trowfsbin.Mounted(mnt) {
			_ = trowfsbin.Detach(mnt, true)
			t.Error("the mount outlived trowfs")
		}
	})
	deadline := time.Now().Add(trowfsbin.ReadyTimeout)
	for {
		if b, err := os.ReadFile(ready); err == nil && strings.HasSuffix(string(b), "\n") {
			return cmd
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("trowfs mount exited before it was ready (%v); stderr:\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("trowfs mount not ready after %v; stderr:\n%s", trowfsbin.ReadyTimeout, stderr.String())
		}
	}
}
