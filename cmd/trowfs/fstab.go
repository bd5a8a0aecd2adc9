package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
	"golang.org/x/sys/unix"
)

// The mount(8) form: `trowfs DATA MNT -o opt,opt=val` (what mount.fuse3 runs for
// `mount -t fuse.trowfs DATA MNT -o ...` and an fstab line), or the same as mount.fuse.trowfs.
// Every `trowfs mount` flag is an option (dashes or underscores); the generic and FUSE options
// mount(8) passes are accepted. trowfs then detaches itself and returns once the mount serves.

// Options mount(8) and mount.fuse3 may pass that trowfs accepts and does nothing more about:
// trowfs's mounts are always nodev,nosuid (FUSE's default), read-write, and as root allow_other
// and default_permissions already.
var ignoredMountOptions = []string{
	"rw", "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "_netdev", "nofail",
	"dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime", "relatime", "norelatime",
	"strictatime", "lazytime", "nolazytime", "diratime", "nodiratime", "async", "sync", "dirsync",
	"allow_other", "allow_root", "default_permissions", "auto_unmount", "silent", "loud", "nosymfollow",
}

// Options of the mount(8) form that are not flags.
const (
	optForeground = "foreground" // stay in the foreground (do not detach)
	optLogFile    = "log_file"   // where the detached daemon logs (default: nowhere)
)

// Environment between the detached daemon and the process that started it.
const (
	envDaemonReadyFD = "TROWFS_DAEMON_READY_FD" // the daemon writes "ready\n" there once the mount serves
	envDaemonLog     = "TROWFS_DAEMON_LOG"      // the file the daemon's stderr goes to after that
)

// commands are the subcommand names (TestEveryCommandIsNotTakenForTheMountForm keeps it complete).
var commands = []string{"mount", "verify", "state", "peers", "demo", "version", "help"}

// isMountHelperCall reports whether trowfs was run in the mount(8) form.
func isMountHelperCall(argv0 string, args []string) bool {
	if strings.HasPrefix(filepath.Base(argv0), "mount.") {
		return true
	}
	return len(args) >= 2 && !strings.HasPrefix(args[0], "-") && !slices.Contains(commands, args[0])
}

// helperCall is a parsed mount(8)-form command line.
type helperCall struct {
	data, mnt  string
	args       []string // the `trowfs mount` command line it stands for
	foreground bool
	fake       bool // mount -f: do everything but mount
	logFile    string
}

// parseHelperArgs turns `DATA MNT [-o opts]... [-n] [-s] [-f] [-v]` into a `trowfs mount`
// command line, mapping every option to the mount flag of that name (from the kong model).
func parseHelperArgs(model *kong.Node, args []string) (*helperCall, error) {
	var mountNode *kong.Node
	for _, c := range model.Children {
		if c.Name == "mount" {
			mountNode = c
		}
	}
	flags := map[string]*kong.Flag{}
	for _, group := range append(model.AllFlags(true), mountNode.AllFlags(true)...) {
		for _, f := range group {
			flags[f.Name] = f
		}
	}
	h := &helperCall{}
	var pos, opts []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-o" && i+1 < len(args):
			i++
			o, err := splitMountOptions(args[i])
			if err != nil {
				return nil, err
			}
			opts = append(opts, o...)
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			o, err := splitMountOptions(a[2:])
			if err != nil {
				return nil, err
			}
			opts = append(opts, o...)
		case a == "-n", a == "-s", a == "-v": // no mtab, sloppy, verbose: nothing to do
		case a == "-f":
			h.fake = true
		case a == "-t" && i+1 < len(args): // the type mount(8) may repeat
			i++
		case strings.HasPrefix(a, "-"):
			return nil, fmt.Errorf("unknown option %q (mount form: trowfs DATA MNT -o opt,opt=val)", a)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, fmt.Errorf("want DATA and MNT, got %q (mount form: trowfs DATA MNT -o opt,opt=val)", pos)
	}
	h.data, h.mnt = pos[0], pos[1]
	if _, src, ok := strings.Cut(h.data, "#"); ok { // mount -t fuse 'trowfs#DATA' MNT, unsplit
		h.data = src
	}
	for _, p := range []*string{&h.data, &h.mnt} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		*p = abs
	}
	h.args = []string{"mount", h.data, h.mnt}
	for _, o := range opts {
		name, val, hasVal := strings.Cut(strings.TrimSpace(o), "=")
		switch {
		case name == "":
			continue
		case slices.Contains(ignoredMountOptions, name), strings.HasPrefix(name, "x-"), name == "comment",
			name == "fsname", name == "subtype", name == "rootmode", name == "user_id", name == "group_id",
			name == "max_read", name == "blksize":
			continue
		case name == "ro":
			return nil, errors.New("option ro: trowfs mounts read-write only (a registry writes)")
		case name == optForeground:
			h.foreground = true
			continue
		case name == optLogFile:
			if val == "" {
				return nil, errors.New("option log_file needs a path")
			}
			h.logFile = val
			continue
		}
		flag := strings.ReplaceAll(name, "_", "-")
		f, ok := flags[flag]
		if !ok || flag == "help" || flag == "exec" {
			return nil, fmt.Errorf("unknown option %q (every `trowfs mount` flag is an option: docs/cli.md)", name)
		}
		switch {
		case f.IsBool() && !hasVal:
			h.args = append(h.args, "--"+flag)
		case f.IsBool():
			h.args = append(h.args, "--"+flag+"="+val)
		case !hasVal:
			return nil, fmt.Errorf("option %s needs a value (%s=...)", name, name)
		default:
			h.args = append(h.args, "--"+flag+"="+val)
		}
	}
	return h, nil
}

// splitMountOptions splits an -o list at its commas, except inside double quotes (mount(8)'s
// way to put a comma in a value: -o 'peer_join="a:7946,b:7946"') or after a backslash (libfuse's
// "\,"); the quotes and the backslash are dropped. mount(8) and mount.fuse3 pass both through
// as they are.
func splitMountOptions(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if quoted {
		return nil, fmt.Errorf("options %q: a double quote is not closed", s)
	}
	return append(out, cur.String()), nil
}

// runMountHelper runs the mount(8) form: in the foreground, or detached, returning once the
// detached daemon's mount serves (exit 0) or with its error and exit code.
func runMountHelper(args []string) int {
	parser, err := kong.New(&cli{}, kong.Name("trowfs"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "trowfs:", err)
		return ExitInternal
	}
	h, err := parseHelperArgs(parser.Model.Node, args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trowfs:", err)
		return ExitUsage
	}
	if h.fake {
		return ExitOK
	}
	if h.foreground {
		return run(h.args)
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "trowfs:", err)
		return ExitInternal
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "trowfs:", err)
		return ExitInternal
	}
	// The daemon's stderr until it is ready: with log_file, that file from the start (so its
	// first lines are kept even if this process dies before it is ready: mount(8) killed by a
	// timeout); without, a pipe to this process. Either way this process shows those lines only
	// if the daemon fails (mount(8) is quiet on success).
	var errR, errW, logF *os.File
	var logFrom int64
	if h.logFile != "" {
		logF, err = os.OpenFile(h.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			fmt.Fprintln(os.Stderr, "trowfs: log_file:", err)
			return ExitUsage
		}
		if st, serr := logF.Stat(); serr == nil {
			logFrom = st.Size()
		}
	} else if errR, errW, err = os.Pipe(); err != nil {
		fmt.Fprintln(os.Stderr, "trowfs:", err)
		return ExitInternal
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trowfs:", err)
		return ExitInternal
	}
	cmd := exec.Command(self, h.args...)
	cmd.Dir = "/" // hold no directory busy
	cmd.Stdin, cmd.Stdout = null, null
	if logF != nil {
		cmd.Stderr = logF
	} else {
		cmd.Stderr = errW
	}
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.Env = append(os.Environ(), envDaemonReadyFD+"=3")
	if h.logFile != "" {
		cmd.Env = append(cmd.Env, envDaemonLog+"="+h.logFile)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no terminal, its own session
	err = cmd.Start()
	readyW.Close()
	if errW != nil {
		errW.Close()
	}
	if logF != nil {
		logF.Close()
	}
	null.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "trowfs: start the daemon:", err)
		return ExitInternal
	}
	var early strings.Builder
	copied := make(chan struct{})
	if errR != nil {
		go func() { _, _ = io.Copy(&early, errR); close(copied) }()
	} else {
		close(copied)
	}
	line, _ := bufio.NewReader(readyR).ReadString('\n')
	if line == "ready\n" {
		<-copied // the daemon moved its stderr away from the pipe
		_ = cmd.Process.Release()
		return ExitOK
	}
	_ = cmd.Wait()
	<-copied
	if h.logFile != "" {
		if f, err := os.Open(h.logFile); err == nil {
			_, _ = f.Seek(logFrom, io.SeekStart)
			_, _ = io.Copy(&early, f)
			f.Close()
		}
	}
	fmt.Fprint(os.Stderr, early.String())
	if code := cmd.ProcessState.ExitCode(); code > 0 {
		return code
	}
	fmt.Fprintln(os.Stderr, "trowfs: the daemon died before the mount served:", cmd.ProcessState)
	return ExitInternal
}

// daemonReady tells the process that detached this daemon that the mount serves, and sends the
// daemon's logs to TROWFS_DAEMON_LOG (or nowhere) from then on. Without TROWFS_DAEMON_READY_FD it
// does nothing.
func daemonReady() {
	fdStr := os.Getenv(envDaemonReadyFD)
	if fdStr == "" {
		return
	}
	var fd int
	if _, err := fmt.Sscanf(fdStr, "%d", &fd); err != nil || fd < 3 {
		return
	}
	logPath := os.Getenv(envDaemonLog)
	_ = os.Unsetenv(envDaemonReadyFD)
	_ = os.Unsetenv(envDaemonLog)
	out, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if logPath != "" {
		if f, lerr := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); lerr == nil {
			out.Close()
			out, err = f, nil
		} else {
			fmt.Fprintln(os.Stderr, "trowfs: log_file:", lerr, "(logging nowhere)")
		}
	}
	if err == nil {
		_ = unix.Dup3(int(out.Fd()), 2, 0)
		out.Close()
	}
	ready := os.NewFile(uintptr(fd), "ready")
	_, _ = ready.WriteString("ready\n")
	ready.Close()
}
