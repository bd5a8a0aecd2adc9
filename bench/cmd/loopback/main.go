// Command loopback is the baseline of the trowfs benchmarks: a plain go-fuse loopback of DATA on
// MNT with the mount options trowfs uses (direct mount and allow_other and default_permissions as
// root, MaxWrite 1 MiB, entry and attribute timeouts 60 s, negative timeout 5 s, kernel
// passthrough left on as go-fuse does by default), and nothing else. Whatever trowfs costs more
// than this is the cost of its tree.
//
//	loopback [--ready-file F] [--debug] DATA MNT
//
// --debug logs every FUSE request and reply (go-fuse's MountOptions.Debug) to stderr; the
// benchmarks count requests per operation from it.
//
// It runs in the foreground and unmounts on SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loopback:", err)
		os.Exit(1)
	}
}

func run() error {
	ready := flag.String("ready-file", "", "write this file once the mount serves")
	debug := flag.Bool("debug", false, "log every FUSE request (go-fuse MountOptions.Debug)")
	flag.Parse()
	if flag.NArg() != 2 {
		return fmt.Errorf("usage: loopback [--ready-file F] [--debug] DATA MNT")
	}
	data, mnt := flag.Arg(0), flag.Arg(1)
	root, err := gofs.NewLoopbackRoot(data)
	if err != nil {
		return err
	}
	asRoot := os.Geteuid() == 0
	mo := fuse.MountOptions{
		AllowOther:  asRoot,
		Name:        "loopback",
		FsName:      data,
		DirectMount: asRoot,
		MaxWrite:    1 << 20,
		Debug:       *debug,
	}
	if asRoot {
		mo.Options = append(mo.Options, "default_permissions")
	}
	entry, attr, negative := 60*time.Second, 60*time.Second, 5*time.Second
	srv, err := gofs.Mount(mnt, root, &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &negative,
		NullPermissions: true,
	})
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", data, mnt, err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(fmt.Sprintln(os.Getpid())), 0o644); err != nil {
			_ = srv.Unmount()
			return err
		}
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-sigs:
		if err := srv.Unmount(); err != nil {
			return fmt.Errorf("unmount %s: %w", mnt, err)
		}
		<-done
	case <-done:
	}
	return nil
}
