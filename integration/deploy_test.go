package integration

// The systemd files in deploy/systemd stay true to the binary: the unit is valid for
// systemd-analyze, runs the installed binary as Type=notify, and every flag the example
// environment passes is one `trowfs mount` has.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// unitValues reads a systemd unit or environment file into key -> values (in order).
func unitValues(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = append(out[k], v)
		}
	}
	return out
}

func TestSystemdUnitRunsInstalledBinaryWithRealFlags(t *testing.T) {
	root, err := trowfsbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "deploy", "systemd")
	unitPath := filepath.Join(dir, "trowfs@.service")
	unit := unitValues(t, unitPath)
	for k, want := range map[string]string{"Type": "notify", "NotifyAccess": "main", "KillMode": "mixed", "EnvironmentFile": "/etc/trowfs/%i.env"} {
		if got := unit[k]; len(got) != 1 || got[0] != want {
			t.Errorf("trowfs@.service: %s=%v, want %s", k, got, want)
		}
	}
	exe := strings.Fields(strings.Join(unit["ExecStart"], " "))
	if len(exe) < 4 || exe[0] != "/usr/local/sbin/trowfs" || exe[1] != "mount" || exe[2] != "${TROWFS_DATA}" || exe[3] != "${TROWFS_MNT}" {
		t.Fatalf("ExecStart=%v, want /usr/local/sbin/trowfs (make install) mount ${TROWFS_DATA} ${TROWFS_MNT} ...", exe)
	}
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil || !strings.Contains(string(mk), "$(PREFIX)/sbin/trowfs") || !strings.Contains(string(mk), "PREFIX  ?= /usr/local") {
		t.Errorf("make install should put the binary at /usr/local/sbin/trowfs, where the unit runs it (%v)", err)
	}

	help := trowfsbin.Run(t, "mount", "--help")
	env := unitValues(t, filepath.Join(dir, "example.env"))
	for _, k := range []string{"TROWFS_DATA", "TROWFS_MNT", "TROWFS_FLAGS"} {
		if len(env[k]) != 1 {
			t.Fatalf("example.env sets %s %d times, want once", k, len(env[k]))
		}
	}
	for _, f := range strings.Fields(env["TROWFS_FLAGS"][0]) {
		if strings.HasPrefix(f, "--") && !strings.Contains(help.Stdout, strings.SplitN(f, "=", 2)[0]+"=") && !strings.Contains(help.Stdout, f+" ") {
			t.Errorf("example.env passes %s, which trowfs mount does not have", f)
		}
	}
	dropin := unitValues(t, filepath.Join(dir, "registry-after-trowfs.conf"))
	for _, k := range []string{"Requires", "BindsTo", "After"} {
		if got := dropin[k]; len(got) != 1 || got[0] != "trowfs@registry.service" {
			t.Errorf("registry-after-trowfs.conf: %s=%v, want trowfs@registry.service", k, got)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if trowfsbin.InCI() {
			t.Fatalf("systemd-analyze is missing: %v", err)
		}
		t.Skip("systemd-analyze is not installed")
	}
	// systemd-analyze checks that the binary exists: point a copy of the unit at the built one.
	b, _ := os.ReadFile(unitPath)
	tmp := t.TempDir()
	copyPath := filepath.Join(tmp, "trowfs@registry.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(b), "/usr/local/sbin/trowfs", trowfsbin.Build(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify trowfs@.service: %v\n%s", err, out)
	}
}
