package tracker

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/internal/statedir"
)

// victim is a file outside DATA that a planted link points at. Nothing trowfs does may change it.
type victim struct {
	path string
	body []byte
	st   unix.Stat_t
}

func newVictim(t *testing.T) *victim {
	t.Helper()
	v := &victim{path: filepath.Join(t.TempDir(), "victim"), body: []byte("precious bytes outside DATA\n")}
	if err := os.WriteFile(v.path, v.body, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(v.path, &v.st); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *victim) check(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(v.path)
	if err != nil {
		t.Fatalf("victim %s: %v", v.path, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(v.path, &st); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, v.body) || st.Mode != v.st.Mode || st.Uid != v.st.Uid || st.Size != v.st.Size || st.Mtim != v.st.Mtim {
		t.Errorf("the victim outside DATA changed: %q mode %o uid %d (was %q mode %o uid %d)", b, st.Mode, st.Uid, v.body, v.st.Mode, v.st.Uid)
	}
}

// mountCycle does what a mount does with DATA/.trowfs: lock, load, checkpoint, final snapshot,
// close. It returns the load report.
func mountCycle(t *testing.T, data string) LoadReport {
	t.Helper()
	tr, err := New(Options{Root: data})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Lock(); err != nil {
		t.Fatalf("lock: %v", err)
	}
	type res struct {
		rep LoadReport
		err error
	}
	ch := make(chan res, 1)
	go func() {
		rep, err := tr.Load(context.Background(), VerifyQuick)
		ch <- res{rep, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-time.After(20 * time.Second):
		t.Fatal("Load blocked on something planted in DATA/.trowfs")
	}
	if r.err != nil {
		t.Fatalf("load: %v", r.err)
	}
	if !tr.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	if err := tr.WriteSnapshot(false); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if err := tr.WriteSnapshot(true); err != nil {
		t.Fatalf("final snapshot: %v", err)
	}
	return r.rep
}

func stateDirPath(data string) string { return filepath.Join(data, StateDirName) }

// Links, hard links and FIFOs planted at trowfs's names inside DATA/.trowfs are replaced or
// refused, never followed: the file they point at is unchanged, and the mount proceeds.
func TestStateDirPlantedLinksAreNeverFollowed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant string // name inside .trowfs
		how   string // symlink, hardlink, fifo
	}{
		{"mounted marker symlink", mountedFile, "symlink"},
		{"mounted marker hard link", mountedFile, "hardlink"},
		{"mounted marker fifo", mountedFile, "fifo"},
		{"lock symlink", LockFile, "symlink"},
		{"lock hard link", LockFile, "hardlink"},
		{"lock fifo", LockFile, "fifo"},
		{"snapshot symlink", SnapshotFile, "symlink"},
		{"snapshot hard link", SnapshotFile, "hardlink"},
		{"snapshot fifo", SnapshotFile, "fifo"},
		{"snapshot temp symlink", SnapshotFile + ".tmp", "symlink"},
		{"snapshot temp glob symlink", SnapshotFile + ".0123456789abcdef.tmp", "symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			if err := os.WriteFile(filepath.Join(data, "f"), []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			v := newVictim(t)
			if err := os.Mkdir(stateDirPath(data), 0o700); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(stateDirPath(data), tc.plant)
			var err error
			switch tc.how {
			case "symlink":
				err = os.Symlink(v.path, p)
			case "hardlink":
				err = os.Link(v.path, p)
			case "fifo":
				err = unix.Mkfifo(p, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			rep := mountCycle(t, data)
			v.check(t)
			if tc.plant == mountedFile && !rep.PreviousCrashed {
				t.Errorf("a leftover %s (any kind) should count as a crashed previous mount", mountedFile)
			}
			if tc.plant == SnapshotFile {
				if rep.Snapshot == "loaded" || !strings.Contains(rep.Snapshot, "unusable") {
					t.Errorf("a planted %s was read as the snapshot: %q", tc.how, rep.Snapshot)
				}
			}
			// The mount put real files of its own in place of what was planted.
			for _, n := range []string{LockFile, SnapshotFile} {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(stateDirPath(data), n), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
					t.Errorf("%s is not a regular file of trowfs's own after the mount (mode %o, nlink %d, %v)", n, st.Mode, st.Nlink, err)
				}
			}
			// And the next mount reads that snapshot.
			if rep := mountCycle(t, data); rep.Snapshot != "loaded" || rep.PreviousCrashed {
				t.Errorf("second mount: snapshot %q, crashed %v; want loaded and clean", rep.Snapshot, rep.PreviousCrashed)
			}
			v.check(t)
		})
	}
}

// A snapshot planted as a link to a real snapshot elsewhere is not loaded (it would hand the
// mount a tree it never kept).
func TestStateDirSnapshotLinkIsNotLoaded(t *testing.T) {
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "g"), []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	mountCycle(t, other)
	data := t.TempDir()
	if err := os.Mkdir(stateDirPath(data), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(stateDirPath(other), SnapshotFile), filepath.Join(stateDirPath(data), SnapshotFile)); err != nil {
		t.Fatal(err)
	}
	if rep := mountCycle(t, data); !strings.Contains(rep.Snapshot, "symbolic link") {
		t.Errorf("snapshot through a link: %q, want unusable (a symbolic link)", rep.Snapshot)
	}
	if _, _, err := ReadSnapshotFile(data); err != nil {
		t.Errorf("verify's read of the snapshot written in place of the link: %v", err)
	}
}

// DATA/.trowfs itself a symbolic link (to a directory or a file outside DATA): the mount is
// refused with a clear error and nothing is created or changed where the link points.
func TestStateDirSymlinkIsRefused(t *testing.T) {
	for _, target := range []string{"dir", "file", "dangling"} {
		t.Run(target, func(t *testing.T) {
			data := t.TempDir()
			outside := t.TempDir()
			v := newVictim(t)
			link := v.path
			switch target {
			case "dir":
				link = outside
			case "dangling":
				link = filepath.Join(outside, "nothing")
			}
			if err := os.Symlink(link, stateDirPath(data)); err != nil {
				t.Fatal(err)
			}
			tr, err := New(Options{Root: data})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			err = tr.Lock()
			var ue *statedir.UnsafeError
			if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "symbolic link") {
				t.Fatalf("lock with %s a symlink: %v, want an error saying it is a symbolic link", stateDirPath(data), err)
			}
			if _, err := tr.Load(context.Background(), VerifyQuick); err == nil {
				t.Error("load with .trowfs a symlink succeeded")
			}
			if err := tr.WriteSnapshot(true); err == nil {
				t.Error("snapshot with .trowfs a symlink succeeded")
			}
			if _, _, err := ReadSnapshotFile(data); !errors.As(err, &ue) {
				t.Errorf("ReadSnapshotFile with .trowfs a symlink: %v, want UnsafeError", err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("files appeared where the link points: %v", ents)
			}
			v.check(t)
		})
	}
}

// An existing DATA/.trowfs with a loose mode is tightened to 0700; a new one is created 0700.
func TestStateDirModeTightened(t *testing.T) {
	data := t.TempDir()
	if err := os.Mkdir(stateDirPath(data), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(stateDirPath(data), 0o777); err != nil {
		t.Fatal(err)
	}
	mountCycle(t, data)
	st, err := os.Lstat(stateDirPath(data))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 || !st.IsDir() {
		t.Errorf("%s: mode %v after the mount, want drwx------", stateDirPath(data), st.Mode())
	}
	fresh := t.TempDir()
	syscall.Umask(0)
	defer syscall.Umask(0o022)
	mountCycle(t, fresh)
	if st, err := os.Lstat(stateDirPath(fresh)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("new %s: mode %v (%v), want 0700", stateDirPath(fresh), st.Mode(), err)
	}
	for _, n := range []string{LockFile, SnapshotFile} {
		if st, err := os.Lstat(filepath.Join(stateDirPath(fresh), n)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", n, st.Mode(), err)
		}
	}
}

// DATA/.trowfs owned by another user is refused (its owner could swap what trowfs writes).
func TestStateDirForeignOwnerIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (chown) under CI=true")
		}
		t.Skip("needs root to chown")
	}
	data := t.TempDir()
	if err := os.Mkdir(stateDirPath(data), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(stateDirPath(data), 4242, 4242); err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Root: data})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	err = tr.Lock()
	var ue *statedir.UnsafeError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "owned by uid 4242") {
		t.Fatalf("lock of a foreign-owned .trowfs: %v, want an error naming its owner", err)
	}
	if ents, _ := os.ReadDir(stateDirPath(data)); len(ents) != 0 {
		t.Errorf("trowfs wrote into a foreign-owned .trowfs: %v", ents)
	}
}

// A snapshot write that died half way leaves a temporary file; the next lock removes it.
func TestStateDirStaleTempSnapshotsRemoved(t *testing.T) {
	data := t.TempDir()
	mountCycle(t, data)
	stale := filepath.Join(stateDirPath(data), SnapshotFile+".deadbeef.tmp")
	if err := os.WriteFile(stale, []byte("half a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	mountCycle(t, data)
	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary snapshot %s survived the next mount (%v)", stale, err)
	}
}

// A directory planted at one of trowfs's names inside DATA/.trowfs: an empty one is taken back
// and the mount proceeds (snapshot and marker written, nothing left behind); one with entries
// is refused at Lock with *statedir.UnsafeError (exit 2), never half-used: before, a directory
// at the lock's name failed as an internal error and one at the snapshot's name let the mount
// run and every snapshot fail.
func TestStateDirDirectoryAtOwnNameIsReclaimedOrRefused(t *testing.T) {
	for _, name := range []string{LockFile, SnapshotFile, mountedFile} {
		t.Run(name+" empty", func(t *testing.T) {
			data := t.TempDir()
			if err := os.MkdirAll(filepath.Join(stateDirPath(data), name), 0o755); err != nil {
				t.Fatal(err)
			}
			mountCycle(t, data)
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(stateDirPath(data), SnapshotFile), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
				t.Errorf("no snapshot file after a clean cycle: %v, mode %o", err, st.Mode)
			}
			if err := unix.Lstat(filepath.Join(stateDirPath(data), mountedFile), &st); !errors.Is(err, unix.ENOENT) {
				t.Errorf("mounted marker left after a clean cycle: %v, mode %o", err, st.Mode)
			}
		})
		t.Run(name+" not empty", func(t *testing.T) {
			data := t.TempDir()
			keep := filepath.Join(stateDirPath(data), name, "keep")
			if err := os.MkdirAll(filepath.Dir(keep), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(keep, []byte("someone's"), 0o644); err != nil {
				t.Fatal(err)
			}
			tr, err := New(Options{Root: data})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			err = tr.Lock()
			var ue *statedir.UnsafeError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "directory") {
				t.Fatalf("lock with a non-empty directory at %s: %v, want *statedir.UnsafeError saying it is a directory", name, err)
			}
			if b, err := os.ReadFile(keep); err != nil || string(b) != "someone's" {
				t.Errorf("the planted directory's content changed: %q, %v", b, err)
			}
		})
	}
}
