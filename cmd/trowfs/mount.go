package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/trowfs/trowfs/demo"
	"github.com/trowfs/trowfs/internal/server"
	"github.com/trowfs/trowfs/internal/tracker"
)

type mountCmd struct {
	Data string `arg:"" optional:"" help:"Data directory of the registry (the source of truth). Omit both arguments for a demo." type:"path"`
	Mnt  string `arg:"" optional:"" help:"Mountpoint to point the registry at (created if missing)." type:"path"`

	Layout             string        `help:"Registry layout: auto, trow-files, trow-sqlite, distribution, oci-layout or plain." default:"auto" enum:"auto,trow-files,trow-sqlite,distribution,oci-layout,plain"`
	Exclude            []string      `help:"Glob of volatile paths to pass through without hashing (repeatable; '**' spans directories; no '/' matches a base name). Added to the layout's defaults." placeholder:"GLOB"`
	NoDefaultExcludes  bool          `help:"Do not add the layout's default exclusions (upload areas, SQLite -wal/-shm)."`
	DeleteUntagged     bool          `help:"Count manifests without tags as unreferenced, like 'registry garbage-collect --delete-untagged'."`
	VerifyOnStart      string        `help:"How the snapshot is checked at mount: quick (rehash what changed by size/mtime/ctime/inode), full (quick, then rehash everything in the background, finds bit rot), off." default:"quick" enum:"quick,full,off"`
	CheckpointInterval time.Duration `help:"Write the tree to DATA/.trowfs when it changed, this often (0: only at unmount)." default:"1m"`
	ScrubInterval      time.Duration `help:"Pause between background scrub passes that rehash stored files (0: no scrub)." default:"0s"`
	ScrubRate          string        `help:"Bandwidth cap of the scrub, e.g. 50MiB (per second)." default:"50MiB"`
	ScrubSample        float64       `help:"Fraction of files each scrub pass checks (0 < f <= 1)." default:"1"`
	Listen             string        `help:"HTTP endpoint address: a loopback host:port or unix:/path.sock (off when empty)." placeholder:"ADDR"`
	APITokenFile       string        `help:"File holding the bearer token POST requests must present." type:"path" placeholder:"FILE"`
	WriteMode          string        `help:"passthrough (kernel writes to the backing file; hashed at last close) or daemon (writes through trowfs, hashed as they stream)." default:"passthrough" enum:"passthrough,daemon"`
	EntryTimeout       time.Duration `help:"How long the kernel may cache names (every change passes through trowfs)." default:"60s"`
	AttrTimeout        time.Duration `help:"How long the kernel may cache attributes." default:"60s"`
	NegativeTimeout    time.Duration `help:"How long the kernel may cache a missing name." default:"5s"`
	ReadyFile          string        `help:"Write this file once the mount serves (for scripts and service managers)." type:"path" placeholder:"FILE"`
	NonEmpty           bool          `name:"nonempty" help:"Mount even if MNT is not empty (its contents are hidden while mounted); without it a non-empty MNT exits 2."`
	ListState          bool          `help:"List the virtual .state files in directory listings (off: the registry sees exactly DATA)."`
	FuseDebug          bool          `help:"Log every FUSE request (very verbose)."`
	OnMismatch         string        `help:"What reading a blob whose content does not match its digest gets: serve (the bytes as they are) or eio (EIO from open until the blob is healed from a peer or rewritten)." default:"serve" enum:"serve,eio"`
	Progress           string        `help:"Progress of the start-up reconcile on stderr: auto (a bar on a terminal, log lines otherwise), bar, log or none." default:"auto" enum:"auto,bar,log,none"`
	ProgressInterval   time.Duration `help:"How often progress is logged when it is not a bar." default:"5s"`
	peerFlags          `embed:""`

	execFlags
}

func (m *mountCmd) Run(log *slog.Logger) error {
	demoMode := m.Data == "" && m.Mnt == ""
	if !demoMode && (m.Data == "" || m.Mnt == "") {
		return &exitError{ExitUsage, "mount needs both DATA and MNT (or neither, for the demo)"}
	}
	if err := m.execFlags.check(demoMode); err != nil {
		return err
	}
	if demoMode {
		dir, err := os.MkdirTemp("", "trowfs-demo-")
		if err != nil {
			return err
		}
		m.Data, m.Mnt = filepath.Join(dir, "data"), filepath.Join(dir, "mnt")
		if err := demo.Generate(m.Data); err != nil {
			return err
		}
		log.Info("demo: generated a small Trow registry (files-only layout)", "data", m.Data, "mountpoint", m.Mnt)
	}
	rate, err := parseBytes(m.ScrubRate)
	if err != nil {
		return &exitError{ExitUsage, "--scrub-rate: " + err.Error()}
	}
	if m.ScrubSample <= 0 || m.ScrubSample > 1 {
		return &exitError{ExitUsage, "--scrub-sample must be in (0, 1]"}
	}
	token := ""
	if m.APITokenFile != "" {
		if token, err = readTokenFile(m.APITokenFile); err != nil {
			return err
		}
	}
	pc, err := m.peerFlags.config()
	if err != nil {
		return err
	}
	if m.ProgressInterval <= 0 {
		return &exitError{ExitUsage, "--progress-interval must be positive"}
	}
	sd := newNotifier(log)
	sd.startup()
	prog := newProgress(m.Progress, "reconciling "+m.Data)
	prog.interval, prog.rate, prog.log = m.ProgressInterval, false, log
	loadProgress := func(files, bytes int64, final bool) {
		prog.update(files, bytes)
		if final {
			prog.done()
		}
		sd.progress(fmt.Sprintf("%d files, %s", files, humanBytes(bytes)), final)
	}
	defer sd.endLoop()
	var sigs <-chan os.Signal
	releaseSigs := func() {}
	if m.Exec {
		sigs, releaseSigs = execSignals()
		defer releaseSigs()
	}
	// SIGHUP (the terminal of a foreground trowfs closed) stops the mount cleanly like SIGTERM,
	// as libfuse's daemons do; Go's default would exit at once and leave a dead mountpoint. With
	// --exec it is the command's (forwarded, see execSignals).
	shutdownSigs := []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	if !m.Exec {
		shutdownSigs = append(shutdownSigs, syscall.SIGHUP)
	}
	ctx, stop := signal.NotifyContext(context.Background(), shutdownSigs...)
	defer stop()
	srv, err := server.Start(ctx, server.Config{
		Data: m.Data, Mnt: m.Mnt, NonEmpty: m.NonEmpty, Layout: m.Layout, Exclude: m.Exclude, NoDefaultExcludes: m.NoDefaultExcludes,
		DeleteUntagged: m.DeleteUntagged, VerifyOnStart: tracker.VerifyMode(m.VerifyOnStart),
		CheckpointInterval: m.CheckpointInterval, ScrubInterval: m.ScrubInterval, ScrubRate: rate, ScrubSample: m.ScrubSample,
		Listen: m.Listen, APIToken: token, WriteMode: m.WriteMode, EntryTimeout: m.EntryTimeout, AttrTimeout: m.AttrTimeout,
		NegativeTimeout: m.NegativeTimeout, ReadyFile: m.ReadyFile, Debug: m.FuseDebug, ListState: m.ListState, Logger: log,
		Status: sd.status, LoadProgress: loadProgress, OnMismatch: m.OnMismatch, PeerConfig: pc,
	})
	if err != nil {
		sd.status("failed: " + err.Error())
		return err
	}
	sd.ready(srv)
	daemonReady()
	if m.Exec && ctx.Err() == nil {
		return m.runExec(srv, sigs, sd.stopping, func() { stop(); releaseSigs() }, log)
	}
	if demoMode {
		srv.Tracker().Drain(30 * time.Second)
		b, err := os.ReadFile(filepath.Join(m.Mnt, ".state"))
		if err == nil {
			fmt.Printf("%s/.state:\n%s\n", m.Mnt, b)
		}
		fmt.Printf("The demo registry is mounted on %s. Try:\n  cat %s/blobs/.state\n  getfattr -n user.trowfs.digest %s/blobs/sha256/*\nPress Ctrl-C to unmount.\n", m.Mnt, m.Mnt, m.Mnt)
	}
	unmounted := make(chan struct{})
	go func() { srv.Wait(); close(unmounted) }()
	select {
	case <-ctx.Done():
		log.Info("signal received; unmounting")
	case <-unmounted:
		log.Info("unmounted from outside")
	}
	sd.stopping()
	stop()
	return srv.Stop()
}

// parseBytes reads sizes like 50MiB, 1GiB, 100MB, 4096.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	var n float64
	if _, err := fmt.Sscanf(s, "%g", &n); err != nil || n < 0 {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return int64(n * float64(mult)), nil
}

type demoCmd struct {
	Dir string `arg:"" help:"Directory to create the demo registry in (must be empty or missing)." type:"path"`
}

func (d *demoCmd) Run() error {
	if err := demo.Generate(d.Dir); err != nil {
		return err
	}
	fmt.Println("demo registry written to", d.Dir)
	return nil
}
