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

// After kill -9 the mountpoint is a dead FUSE mount (ENOTCONN). The next `trowfs mount` on it
// detaches it, says so in one log line naming the mountpoint, mounts and serves.
func TestMountAfterKill9ReplacesDeadMount(t *testing.T) {
	data, mnt := cliDemo(t)
	p := trowfsbin.Start(t, data, mnt)
	before := p.WaitSettled(t, settleTimeout)
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.WaitExit(10 * time.Second); !ok {
		t.Fatal("trowfs did not die within 10 s of SIGKILL")
	}
	if m, ok := trowfsbin.FindMount(mnt); !ok || !m.FUSE() {
		t.Fatalf("after kill -9 %s should still be a (dead) FUSE mount: %+v %v", mnt, m, ok)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != syscall.ENOTCONN {
		t.Fatalf("statfs of the dead mount: %v, want ENOTCONN", err)
	}

	q := trowfsbin.Start(t, data, mnt)
	if n := strings.Count(q.Stderr(), "detached a dead FUSE mount"); n != 1 || !strings.Contains(q.Stderr(), "mountpoint="+mnt) {
		t.Errorf("want one log line saying the dead mount on %s was detached (got %d):\n%s", mnt, n, q.Stderr())
	}
	after := q.WaitSettled(t, settleTimeout)
	if after.Digest != before.Digest || after.Mount == nil || !after.Mount.Load.PreviousMountCrashed {
		t.Errorf("remount after kill -9: digest %s (was %s), load %+v; want the same digest and previous_mount_crashed", after.Digest, before.Digest, after.Mount)
	}
	if err := os.WriteFile(filepath.Join(mnt, "after-restart"), []byte("served"), 0o644); err != nil {
		t.Fatalf("write through the new mount: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(data, "after-restart")); err != nil || string(b) != "served" {
		t.Fatalf("the write did not reach DATA: %q %v", b, err)
	}
	q.Stop(t)
	if m := trowfsbin.FUSEMountsUnder(filepath.Dir(mnt)); len(m) != 0 {
		t.Errorf("mounts left after the clean stop: %+v", m)
	}
	if code, v := trowfsbin.Verify(t, data); code != 0 {
		t.Errorf("verify after the restarted mount: exit %d, %s", code, v.Verdict)
	}
}

// A mountpoint that is already a live FUSE mount is refused with exit 3 (in use), and the live
// mount is not disturbed; a non-empty mountpoint is refused with exit 2 unless --nonempty.
func TestMountRefusesLiveOrNonEmptyMountpoint(t *testing.T) {
	data, mnt := cliDemo(t)
	p := trowfsbin.Start(t, data, mnt)
	before := p.WaitSettled(t, settleTimeout)
	other := filepath.Join(t.TempDir(), "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	r := trowfsbin.RunWithin(t, 30*time.Second, "mount", other, mnt)
	if r.Code != 3 || !strings.Contains(r.Stderr, "in use") || !strings.Contains(r.Stderr, mnt) {
		t.Errorf("mount over a live trowfs: exit %d, want 3 naming %s in use; stderr:\n%s", r.Code, mnt, r.Stderr)
	}
	if n := len(trowfsbin.FUSEMountsUnder(mnt)); n != 1 {
		t.Errorf("%d FUSE mounts on %s after the refused mount, want 1", n, mnt)
	}
	if after := p.State(t, ""); after.Digest != before.Digest {
		t.Errorf("the refused mount disturbed the live one: digest %s -> %s", before.Digest, after.Digest)
	}
	p.Stop(t)

	full := filepath.Join(t.TempDir(), "full")
	if err := os.MkdirAll(filepath.Join(full, "something"), 0o755); err != nil {
		t.Fatal(err)
	}
	r = trowfsbin.RunWithin(t, 30*time.Second, "mount", data, full)
	if r.Code != 2 || !strings.Contains(r.Stderr, "not empty") || !strings.Contains(r.Stderr, "--nonempty") {
		t.Errorf("mount on a non-empty MNT: exit %d, want 2 naming --nonempty; stderr:\n%s", r.Code, r.Stderr)
	}
	if trowfsbin.Mounted(full) {
		_ = trowfsbin.Detach(full, true)
		t.Errorf("a refused mount mounted %s", full)
	}
	q := trowfsbin.Start(t, data, full, "--nonempty")
	if _, err := os.Stat(filepath.Join(full, "blobs")); err != nil {
		t.Errorf("--nonempty mount does not serve DATA: %v", err)
	}
	q.Stop(t)
}

// Symlink tricks are refused with exit 2 before anything is mounted or created: MNT a link into
// DATA, DATA a link into MNT, and DATA/.trowfs a link out of DATA.
func TestMountRefusesSymlinkTricks(t *testing.T) {
	data, _ := cliDemo(t)
	dir := t.TempDir()
	into := filepath.Join(dir, "into-data")
	if err := os.Symlink(filepath.Join(data, "blobs"), into); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(filepath.Join(mnt, "inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	dataLink := filepath.Join(dir, "data-link")
	if err := os.Symlink(filepath.Join(mnt, "inner"), dataLink); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, data, mnt, want string }{
		{"MNT a link into DATA", data, into, "must not contain each other"},
		{"DATA a link into MNT", dataLink, mnt, "must not contain each other"},
	} {
		r := trowfsbin.RunWithin(t, 30*time.Second, "mount", tc.data, tc.mnt)
		if r.Code != 2 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%s: exit %d, want 2 (%s); stderr:\n%s", tc.name, r.Code, tc.want, r.Stderr)
		}
	}

	victim := t.TempDir()
	sd := filepath.Join(data, ".trowfs")
	if err := os.RemoveAll(sd); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, sd); err != nil {
		t.Fatal(err)
	}
	r := trowfsbin.RunWithin(t, 30*time.Second, "mount", data, filepath.Join(dir, "mnt2"))
	if r.Code != 2 || !strings.Contains(r.Stderr, "symbolic link") {
		t.Errorf("DATA/.trowfs a symlink: exit %d, want 2 saying it is a symbolic link; stderr:\n%s", r.Code, r.Stderr)
	}
	if code, _ := trowfsbin.Verify(t, data); code != 2 {
		t.Errorf("verify with DATA/.trowfs a symlink: exit %d, want 2", code)
	}
	if ents, _ := os.ReadDir(victim); len(ents) != 0 {
		t.Errorf("trowfs wrote where DATA/.trowfs points: %v", ents)
	}
	for _, m := range trowfsbin.FUSEMountsUnder(dir) {
		_ = trowfsbin.Detach(m.Point, true)
		t.Errorf("a refused command mounted %s", m.Point)
	}
}
