package integration

// The mount(8) form's parent waits for the detached daemon; the daemon's stderr is a pipe to it
// until the mount serves. If the parent dies first (mount(8) killed by a timeout, a ^C on a slow
// mount), the daemon must not die on its next log line (SIGPIPE on stderr) and leave a dead
// mountpoint behind.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// daemonOf returns the pid of the detached daemon the mount form ppid started, or 0: a child of
// ppid that already runs `trowfs mount`. Other children are not it: Go's os/exec first forks a
// child that exits at once (the runtime's check that clone with CLONE_PIDFD works), and a child
// between fork and exec still shows the parent's command line.
func daemonOf(ppid int) int {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil || parentOf(d.Name()) != ppid {
			continue
		}
		cl, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cl), "\x00mount\x00") {
			pid, _ := strconv.Atoi(d.Name())
			return pid
		}
	}
	return 0
}

// parentOf returns the parent pid of /proc/<pid>, or 0.
func parentOf(pid string) int {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// childOf returns the pid of a process whose parent is ppid, or 0.
func childOf(ppid int) int {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			return pid
		}
	}
	return 0
}

func TestMountHelperDaemonSurvivesItsParentDying(t *testing.T) {
	trowfsbin.Require(t)
	bin := trowfsbin.Build(t)
	data, mnt, tmp := t.TempDir(), t.TempDir(), t.TempDir()
	// Enough files that the start-up takes a moment after the daemon is forked.
	for i := range 3000 {
		if err := os.WriteFile(filepath.Join(data, fmt.Sprintf("f%04d", i)), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	logFile := filepath.Join(tmp, "log")
	parent := exec.Command(bin, data, mnt, "-o", "layout=plain,log_file="+logFile)
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	var daemon int
	for deadline := time.Now().Add(10 * time.Second); daemon == 0; {
		if daemon = daemonOf(parent.Process.Pid); daemon == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the mount form started no daemon")
			}
			time.Sleep(time.Millisecond)
		}
	}
	_ = parent.Process.Kill() // mount(8) gone before the daemon is ready
	_ = parent.Wait()
	t.Cleanup(func() {
		_ = syscall.Kill(daemon, syscall.SIGTERM)
		for deadline := time.Now().Add(trowfsbin.StopTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if syscall.Kill(daemon, 0) != nil {
				break
			}
		}
		if trowfsbin.Mounted(mnt) {
			_ = trowfsbin.Detach(mnt, true)
		}
	})
	// The daemon carries on: the mount serves within a while, never a dead mountpoint.
	deadline := time.Now().Add(trowfsbin.ReadyTimeout)
	for {
		_, err := os.ReadFile(filepath.Join(mnt, ".state"))
		if err == nil && trowfsbin.Mounted(mnt) {
			break
		}
		if errors.Is(err, syscall.ENOTCONN) {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("the daemon died after mounting (its parent went away): %s is a dead mount\n%s", mnt, log)
		}
		if syscall.Kill(daemon, 0) != nil {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("the daemon died once its parent was gone (mounted: %v)\n%s", trowfsbin.Mounted(mnt), log)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no serving mount %v after the parent died", trowfsbin.ReadyTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// umount may meet a reference the kernel still holds from the last read of .state for a
	// moment ("target is busy"); anything else, or busy for seconds, is a failure.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, code := runMount(t, "umount", mnt)
		if code == 0 {
			break
		}
		if !strings.Contains(out, "busy") || time.Now().After(deadline) {
			t.Fatalf("umount: %d\n%s", code, out)
		}
	}
}
