package fs

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// The handle cache keeps at most its size of descriptors open, evicting the least recently
// used idle one; a descriptor lent to a call stays open however many others are opened meanwhile;
// a handle opened again after eviction leads to the same file; and once every node that kept a
// handle is forgotten, no descriptor and no entry is left.
func TestHandleCacheBoundsDescriptorsAndNeverClosesOneInUse(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
		t.Skip("open_by_handle_at needs CAP_DAC_READ_SEARCH")
	}
	dir := t.TempDir()
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	var dst unix.Stat_t
	if err := unix.Fstat(dfd, &dst); err != nil {
		t.Fatal(err)
	}
	const size, n = 4, 40
	c, err := newHandleCache(dfd, dst.Dev, size)
	if err != nil {
		t.Fatalf("file handles on %s: %v", dir, err)
	}
	var ents []*handleEntry
	var inos []uint64
	for i := range n {
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		e, ok := c.keep(fd, &st)
		if !ok {
			t.Fatalf("%s has no file handle", p)
		}
		ents, inos = append(ents, e), append(inos, st.Ino)
		if _, open := c.stats(); open > size {
			t.Fatalf("%d descriptors open after %d keeps, cache size %d", open, i+1, size)
		}
	}
	held, errno := c.acquire(ents[0])
	if errno != 0 {
		t.Fatal(errno)
	}
	for round := range 3 {
		for i, e := range ents[1:] {
			fd, errno := c.acquire(e)
			if errno != 0 {
				t.Fatalf("round %d, file %d: %v", round, i+1, errno)
			}
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil || st.Ino != inos[i+1] {
				t.Fatalf("file %d: the handle's descriptor is ino %d (%v), want %d", i+1, st.Ino, err, inos[i+1])
			}
			c.release(e)
			if _, open := c.stats(); open > size {
				t.Fatalf("%d descriptors open, cache size %d", open, size)
			}
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(held, &st); err != nil || st.Ino != inos[0] {
		t.Fatalf("the descriptor lent to a call was closed or reused meanwhile: ino %d, %v", st.Ino, err)
	}
	c.forget(ents[0]) // the node is forgotten while a call still uses the descriptor
	if err := unix.Fstat(held, &st); err != nil || st.Ino != inos[0] {
		t.Fatalf("forget closed a descriptor in use: %v", err)
	}
	c.release(ents[0])
	for _, e := range ents[1:] {
		c.forget(e)
	}
	if entries, open := c.stats(); entries != 0 || open != 0 {
		t.Errorf("%d entries and %d descriptors left after every node was forgotten", entries, open)
	}
}
