// Command trowfs mounts a container registry's data directory through a FUSE passthrough
// filesystem that keeps a Merkle tree of it, and verifies such directories offline.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/trowfs/trowfs/internal/server"
	"github.com/trowfs/trowfs/internal/tracker"
	"github.com/trowfs/trowfs/internal/version"
)

// Exit codes (docs/cli.md). They are an interface: scripts depend on them.
const (
	ExitOK          = 0  // success; for verify: the directory matches the snapshot and the registry is consistent
	ExitDifferences = 1  // verify: the directory differs from the snapshot (changed while unmounted)
	ExitUsage       = 2  // bad command line or configuration
	ExitInUse       = 3  // the data directory is held by a running trowfs, or MNT is a live FUSE mount
	ExitIntegrity   = 4  // verify: corruption or registry inconsistency (mismatched, missing, bit rot, unparsable)
	ExitMount       = 5  // the mount itself failed
	ExitInternal    = 70 // anything else
)

type globals struct {
	LogLevel  string `help:"Log level: debug, info, warn or error." default:"info" enum:"debug,info,warn,error" env:"TROWFS_LOG_LEVEL"`
	LogFormat string `help:"Log format: text or json." default:"text" enum:"text,json" env:"TROWFS_LOG_FORMAT"`
}

type cli struct {
	globals
	Mount   mountCmd   `cmd:"" help:"Mount DATA on MNT and keep its Merkle tree (no arguments: a generated demo registry)."`
	Verify  verifyCmd  `cmd:"" help:"Check a data directory offline against its snapshot and its registry layout."`
	State   stateCmd   `cmd:"" help:"Print the .state of a directory of a mounted trowfs."`
	Peers   peersCmd   `cmd:"" help:"Print the peers of a mounted trowfs as a table (from --listen or MNT/.state)."`
	Demo    demoCmd    `cmd:"" help:"Generate a small demo registry (Trow's files-only layout) into DIR."`
	Version versionCmd `cmd:"" help:"Print the version."`
}

const description = `trowfs is a FUSE passthrough filesystem for container registry data directories.

Mount it between a registry and its data directory: every byte stays in DATA, and every write,
create, rename, unlink and mkdir that crosses the mount updates an in-memory Merkle tree. Each
directory of the mount has a virtual, read-only .state file (never listed) with its subtree digest,
counts, bytes and verification status; the root's adds the registry's consistency report
(dangling, missing and mismatched blobs).

  trowfs mount /var/lib/trow/data /mnt/trow     # then: trow --data-dir /mnt/trow
  cat /mnt/trow/.state
  trowfs verify /var/lib/trow/data              # offline, while unmounted

Exit codes: 0 ok, 1 differences (verify), 2 usage, 3 data directory or mountpoint in use, 4 integrity problems
(verify), 5 mount failed, 70 internal error. See docs/cli.md.`

func main() {
	if isMountHelperCall(os.Args[0], os.Args[1:]) {
		os.Exit(runMountHelper(os.Args[1:]))
	}
	if os.Getenv(envDaemonReadyFD) != "" {
		// The detached daemon of the mount form: until it is ready its stderr is a pipe to the
		// process that started it, which may be gone (mount(8) killed by a timeout, ^C). Go would
		// then die of SIGPIPE on the next log line, perhaps with the mount made: with SIGPIPE
		// caught, that write fails instead, and the daemon carries on.
		signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var c cli
	parser, err := kong.New(&c, kong.Name("trowfs"), kong.Description(description), kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}), kong.Exit(func(code int) { panic(exitCode(code)) }))
	if err != nil {
		fmt.Fprintln(os.Stderr, "trowfs:", err)
		return ExitInternal
	}
	code := func() (code int) {
		defer func() {
			if r := recover(); r != nil {
				if ec, ok := r.(exitCode); ok {
					code = int(ec)
					return
				}
				panic(r)
			}
		}()
		kctx, err := parser.Parse(args)
		if err != nil {
			parser.Errorf("%s", err)
			fmt.Fprintln(os.Stderr, "run 'trowfs --help' for usage")
			return ExitUsage
		}
		log := newLogger(c.globals)
		slog.SetDefault(log)
		err = kctx.Run(&c.globals, log)
		return exitFor(err)
	}()
	return code
}

type exitCode int

// exitError carries a chosen exit code with an optional message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func exitFor(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(os.Stderr, "trowfs:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "trowfs:", err)
	var ce *server.ConfigError
	var me *server.MountError
	var iu *tracker.InUseError
	var mu *server.MountpointInUseError
	switch {
	case errors.As(err, &ce):
		return ExitUsage
	case errors.As(err, &iu), errors.As(err, &mu):
		return ExitInUse
	case errors.As(err, &me):
		return ExitMount
	}
	return ExitInternal
}

func newLogger(g globals) *slog.Logger {
	lvl := slog.LevelInfo
	_ = lvl.UnmarshalText([]byte(g.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if g.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

type versionCmd struct{}

func (versionCmd) Run() error {
	fmt.Println("trowfs", version.String())
	return nil
}
