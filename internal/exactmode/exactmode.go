// Package exactmode creates files and directories with exactly the mode asked for, without
// touching the process's umask.
//
// The kernel applies the caller's umask to a create that crosses a FUSE mount before trowfs
// sees it; the passthrough's own mkdir/open(O_CREAT)/mknod on the backing directory would apply
// trowfs's umask a second time. Setting the process umask to 0 avoids that but changes every
// other file the process creates (snapshots, the lock, peer state, a registry run with --exec).
// Instead, Do runs the create on one of a few OS threads that left the process's shared
// filesystem attributes (unshare(CLONE_FS)) and set their own umask to 0. Those threads stay
// locked to their goroutines for the life of the process and run nothing else.
//
// Handing a create to another thread costs two thread switches, which on a busy machine is a
// good part of a create through the mount. A create whose permission bits the process umask
// would not touch anyway (mode 0644 or 0755 under umask 022: what registries ask for) therefore
// runs in place: its mode comes out the same either way.
package exactmode

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// threads is how many creates can run at once on umask-0 threads (a create that blocks on a slow
// disk holds one).
var threads = max(8, 2*runtime.GOMAXPROCS(0))

var (
	once  sync.Once
	work  chan func()
	ready bool // the threads exist; false when unshare is not permitted (then Do runs fn in place)
	// umask is the process's umask when Do was first called, or -1 where it cannot be read
	// without changing it (then every create goes to a umask-0 thread). trowfs never changes its
	// umask; a program that does must call Refresh after it.
	umask atomic.Int32
)

// readUmask reads the process umask from this thread's status (Linux 4.7 and later): umask(2)
// itself cannot read it without setting it, which would race every other thread's creates. Not
// /proc/self, which is the main thread's, and the main thread may be one of the umask-0 threads.
// The calling goroutine runs on a thread that shares the process's umask: the umask-0 threads
// run only their own goroutines.
func readUmask() int32 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return -1
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("Umask:")); ok {
			m, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 32)
			if err != nil {
				return -1
			}
			return int32(m)
		}
	}
	return -1
}

// Refresh reads the process umask again, for a program that changed it after its first Do.
func Refresh() {
	once.Do(start)
	umask.Store(readUmask())
}

func start() {
	umask.Store(readUmask())
	work = make(chan func())
	errs := make(chan error, threads)
	for range threads {
		go thread(errs)
	}
	ok := true
	for range threads {
		if err := <-errs; err != nil {
			ok = false
		}
	}
	ready = ok
	if !ok {
		close(work) // the threads that did start end
	}
}

func thread(errs chan<- error) {
	// Never unlocked: the thread's umask is its own from here on, and the runtime ends the
	// thread if this goroutine ever returns.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		errs <- err
		return
	}
	unix.Umask(0)
	errs <- nil
	for fn := range work {
		fn()
	}
}

// Do runs fn, which creates a file or directory with mode (only its permission bits matter), so
// that the mode comes out exactly as asked (umask 0), and returns when fn has returned. fn runs in
// place when the process umask would leave mode as it is, and where the kernel refuses
// unshare(CLONE_FS) (then the process's umask applies: modes can only come out narrower).
func Do(mode uint32, fn func()) {
	once.Do(start)
	if u := umask.Load(); !ready || (u >= 0 && mode&0o777&uint32(u) == 0) {
		fn()
		return
	}
	done := make(chan struct{})
	work <- func() {
		defer close(done)
		fn()
	}
	<-done
}

// Available reports whether Do runs with umask 0 (false: the kernel refused unshare).
func Available() bool {
	once.Do(start)
	return ready
}
