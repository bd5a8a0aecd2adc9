package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// A FUSE mount at MNT whose server is stopped (SIGSTOP, or hung) answers nothing: the mount
// refuses it with exit 3 within a few seconds, as it refuses a live one, instead of blocking
// for ever in the first stat of MNT (where SIGTERM cannot reach it). The stopped mount is left
// alone and serves again once resumed. MNT given through a symlink, or a directory below the
// stopped mount, fare the same.
func TestMountRefusesStoppedFUSEServerAtMountpointWithoutHanging(t *testing.T) {
	data, mnt := cliDemo(t)
	p := trowfsbin.Start(t, data, mnt, "--attr-timeout", "1s", "--entry-timeout", "1s")
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = p.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	time.Sleep(1500 * time.Millisecond) // let the kernel's cached attributes of MNT expire

	other := filepath.Join(t.TempDir(), "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(mnt, link); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{mnt, link, filepath.Join(mnt, "blobs")} {
		start := time.Now()
		r := trowfsbin.RunWithin(t, 40*time.Second, "mount", other, target)
		took := time.Since(start)
		if r.Code != 3 || !strings.Contains(r.Stderr, "did not answer") {
			t.Errorf("mount on %s over a stopped FUSE server: exit %d after %v, want 3 saying it did not answer; stderr:\n%s", target, r.Code, took, r.Stderr)
		}
		if took > 20*time.Second {
			t.Errorf("mount on %s over a stopped FUSE server took %v", target, took)
		}
	}
	resume()
	if n := len(trowfsbin.FUSEMountsUnder(mnt)); n != 1 {
		t.Errorf("%d FUSE mounts on %s after the refused mounts, want 1", n, mnt)
	}
	if _, err := os.Stat(filepath.Join(mnt, "blobs")); err != nil {
		t.Errorf("the stopped mount does not serve after SIGCONT: %v", err)
	}
	p.Stop(t)
}
