package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/internal/server"
)

// execFlags run the registry under the mount: `trowfs mount DATA MNT --exec -- CMD ARGS...`.
// They are embedded in mountCmd.
type execFlags struct {
	Exec            bool          `help:"Run the command given after -- once the mount serves (when --ready-file is written), forward SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 to it, and when it exits unmount and exit with its status (128+N if signal N killed it)."`
	ExecStopTimeout time.Duration `help:"With --exec: how long trowfs, asked to stop, waits for the command to exit after forwarding the signal before it sends SIGKILL (the mount stays up meanwhile)." default:"30s"`
	Command         []string      `arg:"" optional:"" passthrough:"" help:"With --exec: the command and its arguments, after --." placeholder:"CMD"`
}

// check validates the flags before anything is mounted.
func (e *execFlags) check(demo bool) error {
	if len(e.Command) > 0 && e.Command[0] == "--" {
		e.Command = e.Command[1:]
	}
	switch {
	case !e.Exec && len(e.Command) > 0:
		return &exitError{ExitUsage, fmt.Sprintf("unexpected argument %q (to run a command under the mount: --exec -- CMD ARGS...)", e.Command[0])}
	case e.Exec && len(e.Command) == 0:
		return &exitError{ExitUsage, "--exec needs a command after --: trowfs mount DATA MNT --exec -- CMD ARGS..."}
	case e.Exec && demo:
		return &exitError{ExitUsage, "--exec needs DATA and MNT"}
	case e.ExecStopTimeout < 0:
		return &exitError{ExitUsage, "--exec-stop-timeout must not be negative"}
	}
	return nil
}

// Exit codes of a command that could not be started, as shells report them.
const (
	exitCannotExec = 126
	exitNotFound   = 127
)

// child is the command run under the mount.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited and been reaped
	err  error         // Start's error, or nil
}

// startChild starts argv with the mountpoint in TROWFS_MOUNTPOINT, in its own process group
// (so a terminal's ^C reaches it once, not twice: from the terminal or forwarded by trowfs),
// killed by the kernel if trowfs dies first: it must never run on a dead mount. Pdeathsig is
// tied to the thread that forks, so that thread stays locked until the child is reaped.
//
// When trowfs is the foreground job of the terminal on its stdin (an interactive shell,
// `docker run -it`), the command's group becomes the foreground one, as a shell does for a
// job: otherwise the command's first read of the terminal would stop it with SIGTTIN for good.
// The terminal's ^C and ^Z then go to the command alone; once it is gone, trowfs takes the
// terminal back.
func startChild(argv []string, mnt string) *child {
	c := &child{done: make(chan struct{})}
	c.cmd = exec.Command(argv[0], argv[1:]...)
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	c.cmd.Env = append(os.Environ(), "TROWFS_MOUNTPOINT="+mnt)
	fg := terminalForeground()
	// Ctty is the child's descriptor of the terminal: its stdin, as here.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Foreground: fg, Ctty: 0, Pdeathsig: syscall.SIGKILL}
	started := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		c.err = c.cmd.Start()
		close(started)
		if c.err == nil {
			if fg {
				go c.relayStops()
			}
			_ = c.cmd.Wait()
		}
		if fg {
			reclaimTerminal()
		}
		close(c.done)
	}()
	<-started
	return c
}

// terminalForeground reports whether stdin is a terminal whose foreground process group is
// trowfs's own.
func terminalForeground() bool {
	pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

// reclaimTerminal makes trowfs's process group the terminal's foreground one again (so that a
// ^C during the unmount reaches trowfs). trowfs is in the background when it asks, which sends
// it SIGTTOU unless that is ignored.
func reclaimTerminal() {
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	_ = unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, unix.Getpgrp())
}

// relayStops keeps job control working for the foreground command: when the terminal's ^Z
// stops it, trowfs takes the terminal back and stops its own group too, so that the shell sees
// its job stopped (it waits on trowfs, not on the command). Continued (fg), trowfs hands the
// terminal to the command again and continues it. It returns once the command is gone.
func (c *child) relayStops() {
	pid := c.cmd.Process.Pid
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		var si unix.Siginfo
		// WSTOPPED without WEXITED: only stops are reported (and consumed); the exit is Wait's.
		if err := unix.Waitid(unix.P_PID, pid, &si, unix.WSTOPPED|unix.WNOHANG, nil); err != nil {
			return
		}
		if si.Signo == 0 {
			continue // not stopped
		}
		reclaimTerminal()
		_ = unix.Kill(0, unix.SIGTSTP) // our group: trowfs (and whatever shares its job) stops here
		// Continued: give the terminal back to the command's group and continue it.
		signal.Ignore(syscall.SIGTTOU)
		_ = unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, pid)
		signal.Reset(syscall.SIGTTOU)
		_ = unix.Kill(-pid, unix.SIGCONT)
	}
}

// status is the child's exit status as trowfs passes it on: its exit code, or 128+N when
// signal N killed it.
func (c *child) status() int {
	if c.err != nil {
		if errors.Is(c.err, exec.ErrNotFound) || errors.Is(c.err, os.ErrNotExist) {
			return exitNotFound
		}
		return exitCannotExec
	}
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return c.cmd.ProcessState.ExitCode()
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func (c *child) signal(sig os.Signal, log *slog.Logger) {
	select {
	case <-c.done:
		return
	default:
	}
	if err := c.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		log.Warn("could not signal the command", "signal", sig, "err", err)
	}
}

// runExec runs the command while srv serves, then stops srv. sigs receives SIGINT, SIGTERM,
// SIGHUP, SIGUSR1 and SIGUSR2 (all forwarded; the last three are the command's business only);
// stopping is called once trowfs starts shutting down (the command is told first); release, once the command is gone, so that another signal during the unmount ends trowfs as
// it does without --exec.
// The result is the command's status, or srv's error when the command succeeded but the
// shutdown did not.
func (e *execFlags) runExec(srv *server.Server, sigs <-chan os.Signal, stopping, release func(), log *slog.Logger) error {
	c := startChild(e.Command, srv.Mountpoint())
	if c.err != nil {
		log.Error("could not start the command; unmounting", "command", e.Command[0], "err", c.err)
		stopping()
		release()
		if err := srv.Stop(); err != nil {
			return err
		}
		return &exitError{c.status(), ""}
	}
	log.Info("command started under the mount", "pid", c.cmd.Process.Pid, "command", strings.Join(e.Command, " "))
	// Only while the command runs: the unmount may run fusermount3, whose status its own Wait
	// must get.
	stopReaper := func() {}
	if os.Getpid() == 1 {
		stopReaper = reapOrphans(c.cmd.Process.Pid)
	}
	unmounted := make(chan struct{})
	go func() { srv.Wait(); close(unmounted) }()
	var kill <-chan time.Time
	shutdown := func(why string) {
		if kill == nil {
			log.Info(why+"; waiting for the command to exit before unmounting", "timeout", e.ExecStopTimeout)
			stopping()
			kill = time.After(e.ExecStopTimeout)
		}
	}
wait:
	for {
		select {
		case sig := <-sigs:
			log.Info("forwarding signal to the command", "signal", sig)
			c.signal(sig, log)
			if sig == syscall.SIGINT || sig == syscall.SIGTERM {
				shutdown("signal received")
			}
		case <-unmounted:
			unmounted = nil
			log.Error("the mount went away while the command runs; stopping the command")
			c.signal(syscall.SIGTERM, log)
			shutdown("unmounted from outside")
		case <-kill:
			log.Warn("the command did not exit in time; killing it", "timeout", e.ExecStopTimeout)
			c.signal(syscall.SIGKILL, log)
			kill = make(chan time.Time) // never again
		case <-c.done:
			break wait
		}
	}
	stopReaper()
	code := c.status()
	log.Info("command exited; unmounting", "status", code)
	stopping()
	release()
	if err := srv.Stop(); err != nil && code == 0 {
		return err
	}
	return &exitError{code, ""}
}

// reapOrphans, for trowfs as PID 1 of a PID namespace (a container's entry point), reaps the
// orphans the kernel hands it: every process of the container whose parent died becomes its
// child, and a zombie PID 1 does not reap stays for ever. It reaps only zombies found in /proc
// whose parent is trowfs, never main (the command, which its own Wait reaps: its exit status
// is trowfs's). The returned function stops it.
func reapOrphans(main int) (stop func()) {
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(5 * time.Second) // a SIGCHLD merged with another is caught up here
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-sigchld:
			case <-tick.C:
			}
			for _, pid := range zombieChildren(os.Getpid(), main) {
				var ws unix.WaitStatus
				_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			}
		}
	}()
	return func() {
		signal.Stop(sigchld)
		close(done)
		<-finished
	}
}

// zombieChildren lists the zombies in /proc whose parent is ppid, except skip.
func zombieChildren(ppid, skip int) []int {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == skip {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold anything, so parse after its last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 || f[0] != "Z" {
			continue
		}
		if p, err := strconv.Atoi(f[1]); err == nil && p == ppid {
			out = append(out, pid)
		}
	}
	return out
}

// execSignals catches the signals forwarded to the command, before it starts: a signal between
// the mount and the command's start is then seen by runExec.
func execSignals() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	return ch, func() { signal.Stop(ch) }
}
