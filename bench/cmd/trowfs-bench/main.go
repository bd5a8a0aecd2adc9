// Command trowfs-bench runs the trowfs benchmark suite (`make bench`): every target measured on
// the native directory, through a plain go-fuse loopback and through trowfs in the same run,
// printed as a table with ratios and PASS/FAIL, and written as markdown with -out.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/trowfs/trowfs/bench"
)

func main() {
	os.Exit(run())
}

func run() (code int) {
	// A closed stdout or stderr (`trowfs-bench | head`) must not kill the suite with mounts up: writes then
	// fail with EPIPE instead, and the run still cleans up and writes -out.
	signal.Ignore(syscall.SIGPIPE)
	var cfg bench.Config
	var out string
	flag.BoolVar(&cfg.Quick, "quick", false, "small sizes (a CI smoke run of under 2 minutes; fails only on functional errors)")
	flag.StringVar(&cfg.Only, "only", "", "run only these workloads (comma-separated): "+names())
	flag.StringVar(&cfg.Dir, "dir", "/var/tmp", "parent of the scratch directory (use a disk, not tmpfs)")
	flag.StringVar(&cfg.CacheDir, "cache", "/var/tmp/trowfs-bench-cache", "reusable generated data (the startup tree, keyed by size)")
	flag.IntVar(&cfg.Repeat, "repeat", 1, "measure each figure N times and report the median")
	flag.StringVar(&cfg.Trowfs, "trowfs", "bin/trowfs", "the trowfs binary (make build)")
	flag.StringVar(&cfg.Loopback, "loopback", "", "the loopback baseline binary (default: built from ./bench/cmd/loopback)")
	flag.StringVar(&cfg.PassthroughHP, "passthrough-hp", "bin/passthrough_hp", "libfuse's passthrough_hp, the C comparison column (make passthrough-hp; rows say SKIP without it)")
	flag.StringVar(&cfg.Tools, "tools", toolsDir(), "directory whose bin/ holds the distribution registry (make tools)")
	flag.StringVar(&out, "out", "", "also write the table as markdown to this file")
	flag.Parse()
	cfg.Log = os.Stderr

	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "trowfs-bench: warning: not root; mounts need fusermount3 and cold-cache figures are less cold")
	}
	var err error
	if cfg.Trowfs, err = filepath.Abs(cfg.Trowfs); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(cfg.Trowfs); err != nil {
		return fail(fmt.Errorf("%s: %w (run make build)", cfg.Trowfs, err))
	}
	if cfg.PassthroughHP != "" {
		if cfg.PassthroughHP, err = filepath.Abs(cfg.PassthroughHP); err != nil {
			return fail(err)
		}
	}
	s, err := bench.New(cfg)
	if err != nil {
		return fail(err)
	}
	// Every exit path stops the mounts and removes the scratch directory: return, panic, signal.
	defer func() {
		r := recover()
		if err := s.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "trowfs-bench: cleanup:", err)
			code = 1
		}
		if r != nil {
			panic(r)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "trowfs-bench: %v: unmounting and cleaning up\n", sig)
		cancel()
		bench.Shutdown()
		if err := s.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "trowfs-bench: cleanup:", err)
		}
		os.Exit(130)
	}()
	if cfg.Loopback == "" {
		cfg.Loopback = filepath.Join(s.Scratch(), "loopback")
		if b, err := exec.Command("go", "build", "-o", cfg.Loopback, "./bench/cmd/loopback").CombinedOutput(); err != nil {
			return fail(fmt.Errorf("building the loopback baseline: %v\n%s", err, b))
		}
		// New copied cfg; a second suite value would lose the scratch, so rebuild it around it.
		s.SetLoopback(cfg.Loopback)
	}
	start := time.Now()
	rows, err := s.Run(ctx)
	if err != nil {
		return fail(err)
	}
	header := fmt.Sprintf("trowfs-bench %s, %s, kernel %s, %s, %d CPUs, repeat %d%s, took %s",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), kernel(), runtime.GOARCH, runtime.NumCPU(),
		cfg.Repeat, map[bool]string{true: ", -quick", false: ""}[cfg.Quick], time.Since(start).Round(time.Second))
	pass, failed, skip := bench.Summary(rows)
	summary := fmt.Sprintf("%d PASS, %d FAIL, %d SKIP", pass, failed, skip)
	fmt.Printf("\n%s\n\n%s\n%s\n", header, bench.Text(rows), summary)
	if out != "" {
		md := fmt.Sprintf("%s\n\n%s\n%s\n", header, bench.Markdown(rows), summary)
		if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
			return fail(err)
		}
	}
	// A missed target fails a full run; -quick sizes are too small to judge targets, so a smoke
	// run fails only on functional failures (errors, unverified blobs, consistency findings).
	if bench.AnyBroken(rows) || (failed > 0 && !cfg.Quick) {
		return 1
	}
	return 0
}

func names() string {
	var n []string
	for _, w := range bench.Workloads() {
		n = append(n, w.Name)
	}
	return strings.Join(n, ",")
}

func toolsDir() string {
	if d := os.Getenv("TROWFS_TOOLS"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "trowfs-tools")
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "trowfs-bench:", err)
	return 2
}
