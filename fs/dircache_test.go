package fs_test

import (
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/fs/fstest"
	"github.com/trowfs/trowfs/internal/tracker"
)

// dirent is one entry of a getdents64(2) listing.
type dirent struct {
	name string
	ino  uint64
	off  int64
}

// getdents reads the rest of the directory open as fd with buffers of bufSize bytes; at most max
// entries when max > 0 ("." and ".." left out).
func getdents(t *testing.T, fd, bufSize, max int) []dirent {
	t.Helper()
	var out []dirent
	buf := make([]byte, bufSize)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatalf("getdents: %v", err)
		}
		if n == 0 {
			return out
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			ino, off := binary.NativeEndian.Uint64(b), int64(binary.NativeEndian.Uint64(b[8:]))
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			name := string(b[19:reclen])
			name = name[:strings.IndexByte(name, 0)]
			b = b[reclen:]
			if name != "." && name != ".." {
				out = append(out, dirent{name, ino, off})
			}
		}
		if max > 0 && len(out) >= max {
			return out
		}
	}
}

// names maps each listed name to its inode number, failing on a name listed twice.
func names(t *testing.T, ents []dirent) map[string]uint64 {
	t.Helper()
	m := map[string]uint64{}
	for _, e := range ents {
		if _, dup := m[e.name]; dup {
			t.Fatalf("%q listed twice", e.name)
		}
		m[e.name] = e.ino
	}
	return m
}

// listing is dir's listing through a fresh descriptor.
func listing(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	return names(t, getdents(t, fd, 4096, 0))
}

// rewound is the listing of the directory open as fd from its start again (rewinddir).
func rewound(t *testing.T, fd int) map[string]uint64 {
	t.Helper()
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		t.Fatal(err)
	}
	return names(t, getdents(t, fd, 4096, 0))
}

func sameListing(t *testing.T, what string, got, want map[string]uint64) {
	t.Helper()
	if !maps.Equal(got, want) {
		var extra, missing, ino []string
		for n, i := range got {
			if w, ok := want[n]; !ok {
				extra = append(extra, n)
			} else if w != i {
				ino = append(ino, fmt.Sprintf("%s (ino %d, want %d)", n, i, w))
			}
		}
		for n := range want {
			if _, ok := got[n]; !ok {
				missing = append(missing, n)
			}
		}
		slices.Sort(extra)
		slices.Sort(missing)
		t.Fatalf("%s: listing through the mount differs from the backing directory: extra %q, missing %q, stale %q",
			what, extra, missing, ino)
	}
}

// Directory listings are cached by the kernel across opens; every change through the mount must
// still show in the next listing, exactly as the backing directory has it (names and inode
// numbers), through a new descriptor, through one opened before the change and rewound, and after
// a seekdir back into the middle of the listing.
func TestDirCacheThroughMount(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	d, bd := filepath.Join(e.Mnt, "d"), filepath.Join(e.Data, "d")
	other := filepath.Join(e.Mnt, "other")
	for _, p := range []string{d, other} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 60 {
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("file-%03d-%s", i, strings.Repeat("x", 40))), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"out", "in", "sub-rm"} {
		p := filepath.Join(other, n)
		if n == "out" || n == "sub-rm" {
			p = filepath.Join(d, n)
		}
		var err error
		if n == "sub-rm" {
			err = os.Mkdir(p, 0o755)
		} else {
			err = os.WriteFile(p, []byte(n), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(n string) string { return filepath.Join(d, n) }
	ops := []struct {
		name string
		do   func() error
	}{
		{"create", func() error { return os.WriteFile(p("new"), []byte("new"), 0o644) }},
		{"unlink", func() error { return os.Remove(p("file-007-" + strings.Repeat("x", 40))) }},
		{"rename in", func() error { return os.Rename(filepath.Join(other, "in"), p("in")) }},
		{"rename out", func() error { return os.Rename(p("out"), filepath.Join(other, "out")) }},
		{"rename within", func() error { return os.Rename(p("new"), p("renamed")) }},
		{"rename over", func() error { return os.Rename(p("in"), p("renamed")) }},
		{"mkdir", func() error { return os.Mkdir(p("sub"), 0o755) }},
		{"rmdir", func() error { return os.Remove(p("sub-rm")) }},
		{"link", func() error { return os.Link(p("renamed"), p("hardlink")) }},
		{"symlink", func() error { return os.Symlink("renamed", p("symlink")) }},
		{"mknod fifo", func() error { return unix.Mkfifo(p("fifo"), 0o644) }},
		{"unlink one link", func() error { return os.Remove(p("renamed")) }},
	}
	sameListing(t, "start", listing(t, d), listing(t, bd))
	for _, op := range ops {
		// A descriptor that listed the directory before the change, and a second one open at
		// the same time; the listing is cached now.
		fd1, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fd2, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		sameListing(t, op.name+": before", names(t, getdents(t, fd1, 4096, 0)), listing(t, bd))
		if err := op.do(); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		want := listing(t, bd)
		sameListing(t, op.name+": new descriptor", listing(t, d), want)
		sameListing(t, op.name+": descriptor open since before, rewound", rewound(t, fd1), want)
		// seekdir: read part of the listing with a small buffer, note the position, read the rest,
		// go back to the position and read the rest again.
		part := getdents(t, fd2, 256, 3)
		pos, err := unix.Seek(fd2, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		rest := getdents(t, fd2, 4096, 0)
		if _, err := unix.Seek(fd2, pos, 0); err != nil {
			t.Fatal(err)
		}
		again := getdents(t, fd2, 4096, 0)
		if !slices.Equal(rest, again) {
			t.Fatalf("%s: after seekdir to %d the listing continues with %d entries, first time %d", op.name, pos, len(again), len(rest))
		}
		sameListing(t, op.name+": read in two parts", names(t, append(part, rest...)), want)
		sameListing(t, op.name+": second descriptor rewound", rewound(t, fd2), want)
		unix.Close(fd1)
		unix.Close(fd2)
	}
	sameListing(t, "other", listing(t, other), listing(t, filepath.Join(e.Data, "other")))
}

// A change made in DATA behind the mount is not seen by the kernel, which serves the cached
// listing; a verification run that finds it must make the next listing exact.
func TestDirCacheBehindMount(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	d, bd := filepath.Join(e.Mnt, "d"), filepath.Join(e.Data, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"keep", "gone", "replaced"} {
		if err := os.WriteFile(filepath.Join(d, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.Settle()
	before := listing(t, d)
	sameListing(t, "start", before, listing(t, bd))
	if _, err := os.Lstat(filepath.Join(d, "added")); !os.IsNotExist(err) {
		t.Fatalf("lstat of a name not there yet: %v", err) // and the kernel caches the negative entry
	}
	// Behind the mount: one file added, one removed, one replaced by another inode.
	if err := os.WriteFile(filepath.Join(bd, "added"), []byte("added"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(bd, "gone")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bd, "replaced.tmp"), []byte("other content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(bd, "replaced.tmp"), filepath.Join(bd, "replaced")); err != nil {
		t.Fatal(err)
	}
	// The kernel has not been told: the cached listing is served (this shows the cache is in
	// effect, so the rest of the test can fail).
	if got := listing(t, d); !maps.Equal(got, before) {
		t.Fatalf("listing changed before anything told the kernel (is the directory cache off?): %v, cached %v", got, before)
	}
	r, err := e.Tracker.StartVerify(tracker.RunQuick, tracker.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Wait()
	e.Server.Invalidated()
	sameListing(t, "after verify", listing(t, d), listing(t, bd))
	b, err := os.ReadFile(filepath.Join(d, "added"))
	if err != nil || string(b) != "added" {
		t.Fatalf("read of the file added behind the mount: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(d, "gone")); !os.IsNotExist(err) {
		t.Fatalf("lstat of the file removed behind the mount: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(d, "replaced"), &st); err != nil || st.Ino != listing(t, bd)["replaced"] {
		t.Fatalf("lstat of the replaced file: ino %d, %v; want ino %d", st.Ino, err, listing(t, bd)["replaced"])
	}
}

// A heal renames a verified copy over a blob behind the mount and calls Server.Invalidate: the
// next listing must carry the new file's inode number.
func TestDirCacheInvalidate(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	d, bd := filepath.Join(e.Mnt, "d"), filepath.Join(e.Data, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "blob"), []byte("bad"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := listing(t, d)
	if err := os.WriteFile(filepath.Join(bd, ".heal"), []byte("good"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(bd, ".heal"), filepath.Join(bd, "blob")); err != nil {
		t.Fatal(err)
	}
	if got := listing(t, d); !maps.Equal(got, before) {
		t.Fatalf("listing changed before anything told the kernel (is the directory cache off?): %v, cached %v", got, before)
	}
	e.Server.Invalidate("d/blob")
	sameListing(t, "after Invalidate", listing(t, d), listing(t, bd))
}

// A change behind the mount that nothing reports shows in the listing once the directory's cached
// attributes expire: the kernel then sees the directory's new mtime and drops the cached listing.
func TestDirCacheExpiresWithAttributes(t *testing.T) {
	const timeout = 500 * time.Millisecond
	e := fstest.Mount(t, fstest.Options{CacheTimeout: timeout})
	d, bd := filepath.Join(e.Mnt, "d"), filepath.Join(e.Data, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "a"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	listing(t, d)
	time.Sleep(10 * time.Millisecond) // a later mtime than the listing's, on coarse clocks too
	if err := os.WriteFile(filepath.Join(bd, "b"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * timeout)
	sameListing(t, "after the attribute timeout", listing(t, d), listing(t, bd))
}
