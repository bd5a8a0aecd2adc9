package fs_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	trowfs "github.com/trowfs/trowfs/fs"
	"github.com/trowfs/trowfs/fs/fstest"
)

// cycleReplaced makes n files in dir and renames a new file over each through the mount, so
// that n kept entries pass through the handle cache and push older ones out of it.
func cycleReplaced(t *testing.T, dir string, n int) {
	t.Helper()
	for i := range n {
		p := filepath.Join(dir, "other"+strconv.Itoa(i))
		if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p+".new", []byte("new"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".new", p); err != nil {
			t.Fatal(err)
		}
	}
}

// deletedFds is the number of this process's descriptors that lead to target, a path in DATA
// whose object lost its last link: what the mount keeps open of it.
func deletedFds(t *testing.T, target string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ent := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + ent.Name()); err == nil && l == target+" (deleted)" {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds: the kernel forgets a node asynchronously once nothing holds
// it. Not a timing assertion: the bound only keeps a broken build from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still not so after 30s: %s", what)
		}
	}
}

// A file whose last link a rename or unlink through the mount takes, while another process
// holds it only by an O_PATH descriptor (the kernel holds the node; the daemon saw no open), is
// natively still that file: fstat through /proc/PID/fd gives it with no link, and a reopen of
// that path reads its content. The daemon's descriptor of it is the only thing keeping it
// alive, so it must outlast the handle cache's eviction: a cache of one descriptor and 50 other
// replaced files cycled through it would evict it (before pinning: ESTALE). Once the holder
// exits, the kernel forgets the node and the pinned descriptor is closed: the mount holds no
// descriptor of the file and no more descriptors than before.
func TestUnlinkedFileHeldByOPathOutlivesHandleCacheEviction(t *testing.T) {
	for _, how := range []string{"renamed", "unlinked"} {
		t.Run(how, func(t *testing.T) {
			e := fstest.Mount(t, fstest.Options{CacheTimeout: time.Nanosecond, // every stat reaches the daemon
				Mount: func(o *trowfs.Options) { o.HandleCache = 1 }})
			p := filepath.Join(e.Mnt, "x")
			if err := os.WriteFile(p, []byte("old x"), 0o644); err != nil {
				t.Fatal(err)
			}
			fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			var want unix.Stat_t
			if err := unix.Fstat(fd, &want); err != nil {
				t.Fatal(err)
			}
			held := os.NewFile(uintptr(fd), p)
			holder := exec.Command("sleep", "3600")
			holder.ExtraFiles = []*os.File{held} // fd 3 in the holder
			if err := holder.Start(); err != nil {
				t.Fatal(err)
			}
			held.Close() // the holder's descriptor is now the only one
			t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
			before := openFds(t)

			if how == "renamed" {
				if err := os.WriteFile(p+".new", []byte("new"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(p+".new", p); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			cycleReplaced(t, e.Mnt, 50)

			proc := fmt.Sprintf("/proc/%d/fd/3", holder.Process.Pid)
			var st unix.Stat_t
			if err := unix.Stat(proc, &st); err != nil {
				t.Fatalf("stat %s of the %s file after its cache entry would be evicted: %v", proc, how, err)
			}
			if st.Ino != want.Ino || st.Nlink != 0 {
				t.Fatalf("stat %s: ino %d with %d links, want the %s file %d with none", proc, st.Ino, st.Nlink, how, want.Ino)
			}
			target := filepath.Join(e.Data, "x")
			if n := deletedFds(t, target); n != 1 {
				t.Fatalf("the mount holds %d descriptors of the %s file while a process holds it, want 1", n, how)
			}
			got, err := os.ReadFile(proc)
			if err != nil || string(got) != "old x" {
				t.Fatalf("read through a reopen of %s: %q, %v; want %q", proc, got, err, "old x")
			}

			holder.Process.Kill()
			holder.Wait()
			waitFor(t, "the pinned descriptor is closed once its holder exits", func() bool { return deletedFds(t, target) == 0 })
			waitFor(t, "the mount's descriptors return to their count before the renames", func() bool { return openFds(t) <= before })
			e.AssertMatchesRescan()
		})
	}
}

// A directory removed through the mount while it is the working directory of another process is,
// natively, still that directory: `stat .` there gives it with no link. The daemon keeps its
// object like a replaced file's, and it too survives the handle cache's eviction (cache of one,
// 50 replaced files cycled through it). Before, a removed directory answered ENOENT.
func TestRemovedDirectoryHeldAsCwdStaysStatable(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{CacheTimeout: time.Nanosecond,
		Mount: func(o *trowfs.Options) { o.HandleCache = 1 }})
	d := filepath.Join(e.Mnt, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	var want unix.Stat_t
	if err := unix.Stat(d, &want); err != nil {
		t.Fatal(err)
	}
	before := openFds(t)
	holder := exec.Command("sh", "-c", `read go; exec stat -c '%h %i' .`)
	holder.Dir = d
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder // dash warns on stderr that getcwd fails at start: natively too
	holder.Stdout, holder.Stderr = &out, &errOut
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	// The holder is in d once its cwd link shows it.
	waitFor(t, "the holder runs in d", func() bool {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", holder.Process.Pid))
		return err == nil && l == d
	})

	if err := syscall.Rmdir(d); err != nil {
		t.Fatal(err)
	}
	cycleReplaced(t, e.Mnt, 50)
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/cwd", holder.Process.Pid), &st); err != nil || st.Ino != want.Ino || st.Nlink != 0 {
		t.Errorf("stat of the holder's removed cwd: ino %d with %d links (%v), want %d with none", st.Ino, st.Nlink, err, want.Ino)
	}
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	if err := holder.Wait(); err != nil {
		t.Fatalf("`stat .` in the removed directory: %v: %s%s", err, out.String(), errOut.String())
	}
	if got, wantOut := strings.TrimSpace(out.String()), fmt.Sprintf("0 %d", want.Ino); got != wantOut {
		t.Fatalf("`stat .` in the removed directory printed %q, want %q (links, inode)", got, wantOut)
	}
	waitFor(t, "the mount's descriptors return once the holder exited", func() bool { return openFds(t) <= before })
	e.AssertMatchesRescan()
}
