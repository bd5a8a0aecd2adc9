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
package exactmode

import (
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// threads is how many creates can run at once on umask-0 threads (a create that blocks on a slow
// disk holds one).
var threads = max(8, 2*runtime.GOMAXPROCS(0))

var (
	once  sync.Once
	work  chan func()
	ready bool // the threads exist; false when unshare is not permitted (then Do runs fn in place)
)

func start() {
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

// Do runs fn, which creates files or directories, so that their modes are exactly those it asks
// for (umask 0), and returns when fn has returned. Where the kernel refuses unshare(CLONE_FS)
// fn runs in place and the process's umask applies (modes can only come out narrower).
func Do(fn func()) {
	once.Do(start)
	if !ready {
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
