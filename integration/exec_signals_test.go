package integration

// Signals an operator's tools send that are not SIGTERM/SIGINT. Go's default for SIGHUP is to
// exit at once: the FUSE daemon died without unmounting (the mountpoint left "Transport endpoint
// is not connected") or writing its snapshot. SIGUSR1 and SIGUSR2 Go drops: with --exec they
// never reached the command.

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// Without --exec, SIGHUP (the terminal of a foreground trowfs closed, an ssh session ending)
// stops trowfs cleanly, as SIGTERM does, as libfuse's daemons do.
func TestSIGHUPUnmountsCleanlyAndWritesTheSnapshot(t *testing.T) {
	data, mnt := t.TempDir(), filepath.Join(t.TempDir(), "mnt")
	p := trowfsbin.Start(t, data, mnt, "--layout", "plain", "--checkpoint-interval", "0")
	if err := os.WriteFile(filepath.Join(mnt, "pushed"), []byte("blob"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if code := exitOf(t, p); code != 0 {
		t.Fatalf("trowfs exited %d after SIGHUP, want 0 after a clean unmount; stderr:\n%s", code, p.Stderr())
	}
	code, v := trowfsbin.Verify(t, data)
	if code != 0 || v.Snapshot != "loaded" || v.Files != 1 || len(v.Differences) != 0 {
		t.Fatalf("after SIGHUP: verify exit %d, snapshot %s, %d files, differences %v; want the snapshot written at unmount\n%s", code, v.Snapshot, v.Files, v.Differences, v.Raw)
	}
}

// With --exec, SIGUSR1 and SIGUSR2 are the command's (log reopening, say): forwarded, and the
// mount stays.
func TestExecForwardsSIGUSR1AndSIGUSR2(t *testing.T) {
	data, mnt, tmp := t.TempDir(), filepath.Join(t.TempDir(), "mnt"), t.TempDir()
	started, got := filepath.Join(tmp, "started"), filepath.Join(tmp, "got")
	script := `trap 'echo usr1 >> "$2"' USR1
trap 'echo usr2 >> "$2"' USR2
trap 'exit 4' TERM
echo up > "$1"
while :; do sleep 0.05; done`
	p := trowfsbin.Start(t, data, mnt, "--exec", "--", "sh", "-c", script, "sh", started, got)
	waitFile(t, p, started, 10*time.Second)
	for _, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2} {
		if err := p.Signal(sig); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if p.Exited() || !trowfsbin.Mounted(mnt) {
			t.Fatalf("%v ended trowfs or its mount; stderr:\n%s", sig, p.Stderr())
		}
	}
	if b, _ := os.ReadFile(got); strings.Fields(string(b)) == nil || strings.Join(strings.Fields(string(b)), " ") != "usr1 usr2" {
		t.Fatalf("the command saw %q, want usr1 then usr2", b)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitOf(t, p); code != 4 {
		t.Fatalf("trowfs exited %d, want the command's 4", code)
	}
}
