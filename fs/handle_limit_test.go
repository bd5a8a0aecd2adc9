package fs_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	trowfs "github.com/trowfs/trowfs/fs"
	"github.com/trowfs/trowfs/fs/fstest"
)

// holdEnv tells a re-executed test binary to act as the holder process of
// TestReplacedNodesNeedNoDescriptorEach: the directory whose files it holds.
const holdEnv = "TROWFS_TEST_HOLD_DIR"

// holdReport is what the holder prints once it has checked every descriptor.
type holdReport struct {
	Checked  int
	Failures int
	First    string
}

// Thousands of nodes whose name a rename through the mount took while a process still holds
// them (O_PATH descriptors in another process: the kernel keeps the nodes, the daemon gets no
// open of its own) must all stay usable, through the descriptors and through the /proc paths the
// kernel still resolves, while the mount process may open far fewer files than there are such
// nodes, and the daemon holds no more descriptors than its handle cache and a few of its own.
// With a descriptor kept per node (Options.NoFileHandles) the daemon runs out of descriptors
// and the nodes past the limit answer ESTALE.
//
// Each replaced file also has a link outside DATA, so it outlives the rename as a file held open
// would; what is shown is that the daemon reaches it without holding it.
func TestReplacedNodesNeedNoDescriptorEach(t *testing.T) {
	if dir := os.Getenv(holdEnv); dir != "" {
		holdAndCheck(dir)
		return
	}
	const (
		n         = 3000
		cacheSize = 64
		fdLimit   = 400 // the mount process's soft RLIMIT_NOFILE: far below n
	)
	base := t.TempDir()
	data, keep := filepath.Join(base, "data"), filepath.Join(base, "keep")
	for _, d := range []string{filepath.Join(data, "d"), keep} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		p := filepath.Join(data, "d", fmt.Sprintf("f%d", i))
		if err := os.WriteFile(p, []byte(fmt.Sprintf("old %d", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(p, filepath.Join(keep, fmt.Sprintf("f%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	e := fstest.Mount(t, fstest.Options{Data: data, CacheTimeout: time.Nanosecond, // every fstat reaches the daemon
		Mount: func(o *trowfs.Options) { o.HandleCache = cacheSize }})

	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: fdLimit, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })

	// The holder raises its own soft limit (the Go runtime does at start) and holds all n.
	cmd := exec.Command(os.Args[0], "-test.run=^TestReplacedNodesNeedNoDescriptorEach$", "-test.count=1")
	cmd.Env = append(os.Environ(), holdEnv+"="+filepath.Join(e.Mnt, "d"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	out := bufio.NewScanner(stdout)
	line := func() string {
		if !out.Scan() {
			t.Fatalf("holder ended early: %v", out.Err())
		}
		return out.Text()
	}
	var fds []int
	if err := json.Unmarshal([]byte(line()), &fds); err != nil || len(fds) != n {
		t.Fatalf("holder's descriptors: %v (%d)", err, len(fds))
	}
	before := openFds(t)

	for i := range n {
		tmp := filepath.Join(e.Mnt, "d", fmt.Sprintf("new%d", i))
		if err := os.WriteFile(tmp, []byte("new"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(e.Mnt, "d", fmt.Sprintf("f%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// Through the paths the kernel still resolves to the replaced files.
	failures := 0
	var first error
	for i, fd := range fds {
		var st, ks syscall.Stat_t
		p := fmt.Sprintf("/proc/%d/fd/%d", cmd.Process.Pid, fd)
		err := syscall.Stat(p, &st)
		if err == nil {
			err = syscall.Stat(filepath.Join(keep, fmt.Sprintf("f%d", i)), &ks)
		}
		if err == nil && (st.Ino != ks.Ino || st.Size != ks.Size) {
			err = fmt.Errorf("%s: ino %d size %d, want the replaced file's %d and %d", p, st.Ino, st.Size, ks.Ino, ks.Size)
		}
		if err != nil {
			failures++
			if first == nil {
				first = err
			}
		}
	}
	if failures > 0 {
		t.Errorf("%d of %d stats through /proc/PID/fd of replaced files failed; first: %v", failures, n, first)
	}
	if _, err := io.WriteString(stdin, "check\n"); err != nil {
		t.Fatal(err)
	}
	var rep holdReport
	if err := json.Unmarshal([]byte(line()), &rep); err != nil {
		t.Fatal(err)
	}
	after := openFds(t)
	t.Logf("holder checked %d replaced files, %d failed; daemon descriptors %d before the renames, %d after (cache %d, soft limit %d)",
		rep.Checked, rep.Failures, before, after, cacheSize, fdLimit)
	if rep.Checked != n || rep.Failures != 0 {
		t.Errorf("%d of %d checks through the holder's descriptors failed (checked %d); first: %s", rep.Failures, n, rep.Checked, rep.First)
	}
	if after > before+cacheSize+16 {
		t.Errorf("the mount process holds %d descriptors with %d replaced nodes held by the kernel, %d before: more than the cache (%d) and a few",
			after, n, before, cacheSize)
	}
	for i := range n { // the chmods reached the files
		fi, err := os.Stat(filepath.Join(keep, fmt.Sprintf("f%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("f%d: mode %v after a chmod through the mount, want 0600", i, fi.Mode().Perm())
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("holder: %v", err)
	}
	e.AssertMatchesRescan()
}

// openFds is the number of descriptors this process has open.
func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// holdAndCheck is the holder process: it opens every f<i> in dir with O_PATH (the kernel holds
// the node; the daemon sees no open), prints the descriptors, and once told checks each replaced
// file through its descriptor: fstat, a read of the old content through a reopen of
// /proc/self/fd, a chmod through that path and an fstat that sees it.
func holdAndCheck(dir string) {
	in := bufio.NewScanner(os.Stdin)
	var fds []int
	var inos []uint64
	for i := 0; ; i++ {
		fd, err := unix.Open(filepath.Join(dir, fmt.Sprintf("f%d", i)), unix.O_PATH|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "holder:", err)
			os.Exit(2)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			fmt.Fprintln(os.Stderr, "holder:", err)
			os.Exit(2)
		}
		fds, inos = append(fds, fd), append(inos, st.Ino)
	}
	b, _ := json.Marshal(fds)
	fmt.Printf("%s\n", b)
	if !in.Scan() {
		os.Exit(0)
	}
	var rep holdReport
	fail := func(i int, err error) {
		rep.Failures++
		if rep.First == "" {
			rep.First = fmt.Sprintf("f%d: %v", i, err)
		}
	}
	for i, fd := range fds {
		rep.Checked++
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			fail(i, fmt.Errorf("fstat: %w", err))
			continue
		}
		if st.Ino != inos[i] {
			fail(i, fmt.Errorf("fstat: ino %d, want %d", st.Ino, inos[i]))
			continue
		}
		p := "/proc/self/fd/" + strconv.Itoa(fd)
		got, err := os.ReadFile(p)
		if err != nil {
			fail(i, fmt.Errorf("read: %w", err))
			continue
		}
		if want := fmt.Sprintf("old %d", i); !bytes.Equal(got, []byte(want)) {
			fail(i, fmt.Errorf("read %q, want %q", got, want))
			continue
		}
		if err := os.Chmod(p, 0o600); err != nil {
			fail(i, fmt.Errorf("chmod: %w", err))
			continue
		}
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&0o777 != 0o600 {
			fail(i, fmt.Errorf("fstat after chmod: mode %o, %v", st.Mode&0o777, err))
		}
	}
	b, _ = json.Marshal(rep)
	fmt.Printf("%s\n", b)
	in.Scan() // until the test is done with the nodes
	os.Exit(0)
}
