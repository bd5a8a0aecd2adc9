package integration

// `trowfs mount DATA MNT --exec -- CMD ARGS...`: the registry runs under the mount, started only
// once the mount serves, signalled first when trowfs is asked to stop, and its exit status is
// trowfs's.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/regtest"
	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// waitFile waits for path to exist and returns its contents.
func waitFile(t *testing.T, p *trowfsbin.Proc, path string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v; trowfs stderr:\n%s", path, timeout, p.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exitOf waits for trowfs to exit and returns its code; it fails the test if the mount survived.
func exitOf(t *testing.T, p *trowfsbin.Proc) int {
	t.Helper()
	code, ok := p.WaitExit(trowfsbin.StopTimeout)
	if !ok {
		t.Fatalf("trowfs did not exit within %v; stderr:\n%s", trowfsbin.StopTimeout, p.Stderr())
	}
	if trowfsbin.Mounted(p.Mnt) {
		t.Fatalf("%s is still mounted after trowfs exited; stderr:\n%s", p.Mnt, p.Stderr())
	}
	return code
}

func TestExecStartsCommandOnServingMountAndExitsWithItsStatus(t *testing.T) {
	data, mnt, tmp := t.TempDir(), filepath.Join(t.TempDir(), "mnt"), t.TempDir()
	seen, goFile := filepath.Join(tmp, "seen"), filepath.Join(tmp, "go")
	// The command reads the root .state at once (only a serving trowfs mount has one), waits for
	// the test, writes through the mount and exits 3.
	script := `cat "$TROWFS_MOUNTPOINT/.state" > "$1" || exit 99
while [ ! -e "$2" ]; do sleep 0.02; done
echo hello > "$TROWFS_MOUNTPOINT/written"
exit 3`
	p := trowfsbin.Start(t, data, mnt, "--exec", "--", "sh", "-c", script, "sh", seen, goFile)
	st := waitFile(t, p, seen, 10*time.Second)
	if !strings.Contains(st, `"mount"`) {
		t.Fatalf("the command started before the mount served: it read %q as MNT/.state", st)
	}
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := exitOf(t, p); code != 3 {
		t.Fatalf("trowfs exited %d, want the command's 3; stderr:\n%s", code, p.Stderr())
	}
	if b, err := os.ReadFile(filepath.Join(data, "written")); err != nil || string(b) != "hello\n" {
		t.Fatalf("DATA/written = %q, %v; want what the command wrote through the mount", b, err)
	}
	code, v := trowfsbin.Verify(t, data)
	if code != 0 || v.Snapshot != "loaded" || len(v.Differences) != 0 || v.Files != 1 {
		t.Fatalf("verify after --exec: exit %d, snapshot %s, %d files, differences %v; want 0, loaded, 1, none\n%s", code, v.Snapshot, v.Files, v.Differences, v.Raw)
	}
}

func TestExecForwardsSIGTERMAndKeepsMountUntilCommandExits(t *testing.T) {
	data, mnt, tmp := t.TempDir(), filepath.Join(t.TempDir(), "mnt"), t.TempDir()
	started, got := filepath.Join(tmp, "started"), filepath.Join(tmp, "got")
	// On SIGTERM the command records whether the mount still serves, writes through it, and
	// exits 7.
	script := `trap 'if cat "$TROWFS_MOUNTPOINT/.state" >/dev/null; then echo term-mounted > "$2"; else echo term-unmounted > "$2"; fi
echo late > "$TROWFS_MOUNTPOINT/late"; exit 7' TERM
echo up > "$1"
while :; do sleep 0.05; done`
	p := trowfsbin.Start(t, data, mnt, "--exec", "--", "sh", "-c", script, "sh", started, got)
	waitFile(t, p, started, 10*time.Second)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitOf(t, p); code != 7 {
		t.Fatalf("trowfs exited %d, want the command's 7; stderr:\n%s", code, p.Stderr())
	}
	if b, _ := os.ReadFile(got); strings.TrimSpace(string(b)) != "term-mounted" {
		t.Fatalf("the command recorded %q on SIGTERM, want term-mounted (signalled first, while the mount serves)", b)
	}
	code, v := trowfsbin.Verify(t, data)
	if code != 0 || len(v.Differences) != 0 || v.Files != 1 {
		t.Fatalf("verify: exit %d, %d files, differences %v: the write the command made on SIGTERM should be in the snapshot\n%s", code, v.Files, v.Differences, v.Raw)
	}
}

func TestExecKillsCommandAfterStopTimeoutAndReportsSignal(t *testing.T) {
	data, mnt, tmp := t.TempDir(), filepath.Join(t.TempDir(), "mnt"), t.TempDir()
	started := filepath.Join(tmp, "started")
	script := `trap '' TERM
echo up > "$1"
while :; do sleep 0.05; done`
	p := trowfsbin.Start(t, data, mnt, "--exec-stop-timeout", "500ms", "--exec", "--", "sh", "-c", script, "sh", started)
	waitFile(t, p, started, 10*time.Second)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitOf(t, p); code != 128+int(syscall.SIGKILL) {
		t.Fatalf("trowfs exited %d, want %d (the command ignored SIGTERM and was killed); stderr:\n%s", code, 128+int(syscall.SIGKILL), p.Stderr())
	}
}

func TestExecMountFailureNeverStartsCommand(t *testing.T) {
	data, mnt, tmp := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(mnt, "occupied"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(tmp, "ran")
	r := trowfsbin.Run(t, "mount", data, mnt, "--exec", "--", "touch", marker)
	if r.Code != 2 || !strings.Contains(r.Stderr, "not empty") {
		t.Fatalf("mount on a non-empty MNT: exit %d, want 2 with 'not empty'; stderr:\n%s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the command ran although the mount failed")
	}
}

func TestExecUsageErrors(t *testing.T) {
	data, mnt := t.TempDir(), filepath.Join(t.TempDir(), "mnt")
	for _, args := range [][]string{
		{"mount", data, mnt, "--exec"},     // no command
		{"mount", data, mnt, "--", "true"}, // a command without --exec
		{"mount", data, mnt, "stray", "x"}, // a stray argument
	} {
		r := trowfsbin.Run(t, args...)
		if r.Code != 2 || !strings.Contains(r.Stderr, "exec") {
			t.Errorf("trowfs %s: exit %d, want 2 mentioning --exec; stderr:\n%s", strings.Join(args, " "), r.Code, r.Stderr)
		}
	}
	if trowfsbin.Mounted(mnt) {
		t.Fatalf("%s was mounted by a usage error", mnt)
	}
}

func TestExecDistributionRegistryUnderMountKeepsPushedBlobs(t *testing.T) {
	tools := regtest.Tools(t)
	data, mnt, cfgDir := t.TempDir(), filepath.Join(t.TempDir(), "mnt"), t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg, err := regtest.WriteDistributionConfig(cfgDir, mnt, port)
	if err != nil {
		t.Fatal(err)
	}
	// Without http.draintimeout the registry does not handle SIGTERM: the signal kills it (143).
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("  draintimeout: 5s\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := trowfsbin.Start(t, data, mnt, "--layout", "distribution", "--exec", "--", tools.Registry, "serve", cfg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("the registry under the mount does not answer on %s (%v); stderr:\n%s", addr, err, p.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}

	layer := filepath.Join(t.TempDir(), "layer.tar")
	if out, err := exec.Command("tar", "-C", cfgDir, "-cf", layer, "config.yml").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	ref := addr + "/exec/test:v1"
	crane := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(tools.Crane, append([]string{"--insecure"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("crane %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
		}
		return string(out)
	}
	crane("append", "-f", layer, "-t", ref)
	var man struct {
		Config struct{ Digest string }
		Layers []struct{ Digest string }
	}
	if err := json.Unmarshal([]byte(crane("manifest", ref)), &man); err != nil || len(man.Layers) != 1 {
		t.Fatalf("manifest of %s: %v %+v", ref, err, man)
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitOf(t, p); code != 0 {
		t.Fatalf("trowfs exited %d after SIGTERM, want 0 (the registry exits cleanly); stderr:\n%s", code, p.Stderr())
	}
	for _, d := range []string{man.Config.Digest, man.Layers[0].Digest} {
		hex := strings.TrimPrefix(d, "sha256:")
		if _, err := os.Stat(filepath.Join(data, "docker/registry/v2/blobs/sha256", hex[:2], hex, "data")); err != nil {
			t.Errorf("blob %s is not in DATA: %v", d, err)
		}
	}
	code, v := trowfsbin.Verify(t, data, "--layout", "distribution")
	if code != 0 || v.Snapshot != "loaded" || len(v.Differences) != 0 || v.Files < 3 {
		t.Fatalf("verify after the registry ran under --exec: exit %d, snapshot %s, %d files, differences %v; want 0, loaded, the blobs, none\n%s", code, v.Snapshot, v.Files, v.Differences, v.Raw)
	}
}

func TestExecForwardsSIGHUPAndStopsCommandWhenUnmountedFromOutside(t *testing.T) {
	data, mnt, tmp := t.TempDir(), filepath.Join(t.TempDir(), "mnt"), t.TempDir()
	started, hup, term := filepath.Join(tmp, "started"), filepath.Join(tmp, "hup"), filepath.Join(tmp, "term")
	script := `trap 'echo hup > "$2"' HUP
trap 'echo term > "$3"; exit 5' TERM
echo up > "$1"
while :; do sleep 0.05; done`
	p := trowfsbin.Start(t, data, mnt, "--exec", "--", "sh", "-c", script, "sh", started, hup, term)
	waitFile(t, p, started, 10*time.Second)
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFile(t, p, hup, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	if p.Exited() || !trowfsbin.Mounted(mnt) {
		t.Fatalf("SIGHUP stopped trowfs or its mount (it is only forwarded); stderr:\n%s", p.Stderr())
	}
	if _, err := os.Stat(term); err == nil {
		t.Fatal("SIGHUP made trowfs stop the command")
	}
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v\n%s", err, out)
	}
	if code := exitOf(t, p); code != 5 {
		t.Fatalf("trowfs exited %d after an outside umount, want the command's 5 (it gets SIGTERM); stderr:\n%s", code, p.Stderr())
	}
	waitFile(t, p, term, time.Second)
}

func TestExecCommandDiesWithTrowfs(t *testing.T) {
	data, mnt, tmp := t.TempDir(), filepath.Join(t.TempDir(), "mnt"), t.TempDir()
	pidFile := filepath.Join(tmp, "pid")
	p := trowfsbin.Start(t, data, mnt, "--exec", "--", "sh", "-c", `echo $$ > "$1"; while :; do sleep 0.05; done`, "sh", pidFile)
	pid := strings.TrimSpace(waitFile(t, p, pidFile, 10*time.Second))
	p.Kill9(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		// Gone, or a zombie waiting for its new parent to reap it: either way not running.
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command (pid %s) still runs 5 s after trowfs was killed: it would run on a dead mount", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
