package integration

// The version an operator sees (`trowfs version`, the root .state's trowfs_version, the status
// page) is the one the build stamped: `make build` from the checkout, the Dockerfile from its
// VERSION build argument. Before, nothing stamped it and .state said "dev" whatever was built.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

func TestMakeBuildStampsTheVersionEverywhere(t *testing.T) {
	trowfsbin.Require(t)
	root, err := trowfsbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "trowfs")
	const want = "9.9.9-stamp-test"
	mk := exec.Command("make", "-C", root, "build", "BIN="+bin, "VERSION="+want)
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "trowfs "+want {
		t.Fatalf("trowfs version: %q, %v; want %q", out, err, "trowfs "+want)
	}

	data, mnt, tmp := t.TempDir(), filepath.Join(t.TempDir(), "mnt"), t.TempDir()
	ready := filepath.Join(tmp, "ready")
	cmd := exec.Command(bin, "mount", data, mnt, "--ready-file", ready, "--layout", "plain")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(trowfsbin.StopTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
		if trowfsbin.Mounted(mnt) {
			_ = trowfsbin.Detach(mnt, true)
			t.Errorf("%s left mounted", mnt)
		}
	})
	deadline := time.Now().Add(trowfsbin.ReadyTimeout)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("trowfs exited before it was ready:\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after %v:\n%s", trowfsbin.ReadyTimeout, stderr.String())
		}
	}
	b, err := os.ReadFile(filepath.Join(mnt, ".state"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := trowfsbin.ParseState(b)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mount == nil || st.Mount.TrowfsVersion != want {
		t.Fatalf("root .state mount.trowfs_version = %+v, want %q", st.Mount, want)
	}
}

func TestDockerfileStampsTheVersion(t *testing.T) {
	df := readRepoFile(t, "Dockerfile")
	if !regexp.MustCompile(`(?m)^ARG VERSION(=\S+)?$`).MatchString(df) {
		t.Error("the Dockerfile has no VERSION build argument")
	}
	build := regexp.MustCompile(`(?m)^RUN .*go build .*$`).FindString(df)
	if !strings.Contains(build, "-X main.version=${VERSION}") {
		t.Errorf("the Dockerfile's go build does not stamp main.version from VERSION: %q", build)
	}
}
