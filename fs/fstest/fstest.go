// Package fstest mounts trowfs in-process for tests and checks the tree kept inline against a
// from-scratch rescan of the backing directory.
package fstest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	trowfs "github.com/trowfs/trowfs/fs"
	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/tracker"
)

// Require fails (under CI=true) or skips the test when FUSE cannot be used here.
func Require(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FUSE tests need /dev/fuse under CI=true: %v", err)
		}
		t.Skipf("no /dev/fuse: %v", err)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FUSE tests run as root under CI=true (uid %d)", os.Geteuid())
		}
		t.Skip("FUSE tests need root")
	}
}

// Env is one mounted trowfs.
type Env struct {
	Data, Mnt string
	Tracker   *tracker.Tracker
	Server    *trowfs.Server
	Exclude   []string
	opts      Options
	t         testing.TB
	mounted   bool
	conn      uint32 // FUSE connection number (minor device of the mount)
}

// Options configure Mount.
type Options struct {
	WriteMode string
	Exclude   []string
	Data      string // reuse an existing data directory
	Verify    tracker.VerifyMode
	ListState bool
	// BlobDigest names the digest a blob path must have (a layout's BlobDigest); nil: none.
	BlobDigest func(rel string) (digest.Digest, bool)
	// CacheTimeout, if set, replaces the kernel's entry and attribute timeouts (60 s by default),
	// for tests that need the kernel to look names up again.
	CacheTimeout time.Duration
	// Refuse, if set, is the mount's Options.Refuse (opens for reading it names fail with EIO).
	Refuse trowfs.Refuser
	// Log, if set, also receives the tracker's log lines (warnings and worse), for tests that
	// assert on them.
	Log io.Writer
	// Mount, if set, adjusts the mount's options last (for options no field here names).
	Mount func(*trowfs.Options)
}

// Mount mounts a fresh (or the given) data directory and unmounts it at cleanup.
func Mount(t testing.TB, o Options) *Env {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	e := &Env{Data: o.Data, Mnt: filepath.Join(dir, "mnt"), Exclude: o.Exclude, opts: o, t: t}
	if e.Data == "" {
		e.Data = filepath.Join(dir, "data")
		if err := os.Mkdir(e.Data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(e.Mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	e.Start()
	t.Cleanup(func() {
		if e.mounted {
			e.Stop()
		}
	})
	return e
}

// Start mounts (again) after Stop.
func (e *Env) Start() {
	t := e.t
	t.Helper()
	var logw io.Writer = testWriter{t}
	if e.opts.Log != nil {
		logw = io.MultiWriter(logw, e.opts.Log)
	}
	tr, err := tracker.New(tracker.Options{Root: e.Data, Exclude: e.Exclude, BlobDigest: e.opts.BlobDigest, Logger: slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Lock(); err != nil {
		t.Fatal(err)
	}
	mode := e.opts.Verify
	if mode == "" {
		mode = tracker.VerifyQuick
	}
	if _, err := tr.Load(context.Background(), mode); err != nil {
		t.Fatal(err)
	}
	opts := trowfs.DefaultOptions()
	if e.opts.WriteMode != "" {
		opts.WriteMode = e.opts.WriteMode
	}
	opts.ListState = e.opts.ListState
	opts.Refuse = e.opts.Refuse
	if e.opts.CacheTimeout != 0 {
		opts.EntryTimeout, opts.AttrTimeout = e.opts.CacheTimeout, e.opts.CacheTimeout
	}
	if e.opts.Mount != nil {
		e.opts.Mount(&opts)
	}
	opts.State = func(rel string) ([]byte, time.Time, error) {
		st, ok := tr.State(rel)
		if !ok {
			return nil, time.Time{}, os.ErrNotExist
		}
		b, err := json.MarshalIndent(st, "", "  ")
		var changed time.Time
		if st.ChangedAt != nil {
			changed = *st.ChangedAt
		}
		return append(b, '\n'), changed, err
	}
	srv, err := trowfs.Mount(e.Data, e.Mnt, tr, opts)
	if err != nil {
		tr.Close()
		t.Fatalf("mount failed (a FUSE test must mount): %v", err)
	}
	e.Tracker, e.Server, e.mounted = tr, srv, true
	var st syscall.Stat_t
	if err := syscall.Stat(e.Mnt, &st); err == nil {
		e.conn = unix.Minor(st.Dev)
		live.Store(e.conn, e.Mnt)
	}
}

// live holds the connections of mounts this test process made and has not unmounted, so Main
// can kill them when the process is about to die with them still up (a timeout, a panic): a
// process that exits while serving its own mount hangs in the kernel forever otherwise.
var live sync.Map // uint32 connection -> mountpoint

// Main runs the tests of a package that mounts trowfs in-process. It aborts and detaches any
// mount still up when the tests end, and shortly before the -test.timeout deadline.
func Main(m *testing.M) {
	flag.Parse()
	if d := testTimeout(); d > 30*time.Second {
		time.AfterFunc(d-20*time.Second, func() {
			fmt.Fprintln(os.Stderr, "fstest: test timeout is near; aborting every mount of this process")
			abortAll()
		})
	}
	code := m.Run()
	if abortAll() > 0 && code == 0 {
		fmt.Fprintln(os.Stderr, "fstest: tests left FUSE mounts behind")
		code = 1
	}
	os.Exit(code)
}

func abortAll() int {
	n := 0
	live.Range(func(k, v any) bool {
		n++
		_ = syscall.Unmount(v.(string), syscall.MNT_DETACH)
		Abort(k.(uint32))
		return true
	})
	return n
}

func testTimeout() time.Duration {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	d, _ := time.ParseDuration(f.Value.String())
	return d
}

// Abort kills the FUSE connection of a mount (as /sys/fs/fuse/connections/N/abort does): every
// pending and future request fails, so nothing can hang on a dead or wedged server.
func Abort(conn uint32) {
	if conn == 0 {
		return
	}
	_ = os.WriteFile(fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", conn), []byte("1"), 0)
}

// Stop unmounts, drains hashing and writes the final snapshot, as `trowfs mount` does on SIGTERM.
func (e *Env) Stop() {
	t := e.t
	t.Helper()
	if !e.mounted {
		return
	}
	defer live.Delete(e.conn)
	var err error
	for i := 0; i < 5; i++ {
		if err = e.Server.Unmount(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		// Something still holds the mount (a test's open file): detach it and kill the
		// connection so the server's Wait cannot hang.
		t.Errorf("unmount: %v (detaching and aborting the connection)", err)
		_ = syscall.Unmount(e.Mnt, syscall.MNT_DETACH)
		Abort(e.conn)
	}
	e.Server.Wait()
	e.Tracker.Drain(time.Minute)
	if err := e.Tracker.WriteSnapshot(true); err != nil {
		t.Errorf("final snapshot: %v", err)
	}
	e.Tracker.Close()
	e.mounted = false
}

// Settle waits until every write was released and hashed.
func (e *Env) Settle() {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !e.Tracker.Drain(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatalf("tree did not settle within 30s")
		}
	}
}

// AssertMatchesRescan checks that the tree kept inline equals a from-scratch rescan of DATA.
func (e *Env) AssertMatchesRescan() {
	e.t.Helper()
	if diffs := e.RescanDiff(); len(diffs) > 0 {
		e.t.Fatalf("inline tree differs from a rescan of %s:\n%s", e.Data, strings.Join(diffs, "\n"))
	}
}

// RescanDiff settles the tree and lists how it differs from a from-scratch rescan of DATA
// (nothing when they are equal).
func (e *Env) RescanDiff() []string {
	e.t.Helper()
	e.Settle()
	ref, err := tracker.Rescan(context.Background(), e.Data, tracker.ScanOptions{Exclude: e.Exclude})
	if err != nil {
		return []string{"rescan: " + err.Error()}
	}
	var diffs []string
	e.Tracker.WithTree(func(tr *hashtree.Tree) {
		_ = hashtree.Diff(ref, tr, func(c hashtree.Change) error {
			diffs = append(diffs, describe(c))
			return nil
		})
		rs, _ := ref.Summary("")
		ts, _ := tr.Summary("")
		_ = tr.Walk(func(p string, te hashtree.Entry) error {
			if re, ok := ref.Get(p); ok && re.Kind != hashtree.KindDir && re.Meta.Size != te.Meta.Size {
				diffs = append(diffs, fmt.Sprintf("%s: size rescan %d inline %d (%s)", p, re.Meta.Size, te.Meta.Size, te.Status))
			}
			return nil
		})
		if rs.Files != ts.Files || rs.Bytes != ts.Bytes || rs.Dirs != ts.Dirs || rs.Symlinks != ts.Symlinks {
			diffs = append(diffs, fmt.Sprintf("summary: rescan files=%d dirs=%d symlinks=%d bytes=%d, inline files=%d dirs=%d symlinks=%d bytes=%d",
				rs.Files, rs.Dirs, rs.Symlinks, rs.Bytes, ts.Files, ts.Dirs, ts.Symlinks, ts.Bytes))
		}
		if rs.Digest != ts.Digest {
			diffs = append(diffs, fmt.Sprintf("root digest: rescan %s, inline %s", rs.Digest, ts.Digest))
		}
	})
	if len(diffs) > 40 {
		diffs = append(diffs[:40], fmt.Sprintf("... and %d more", len(diffs)-40))
	}
	return diffs
}

func describe(c hashtree.Change) string {
	s := func(e *hashtree.Entry) string {
		if e == nil {
			return "absent"
		}
		return fmt.Sprintf("%s %s %s size=%d", e.Kind, e.Digest, e.Status, e.Meta.Size)
	}
	return fmt.Sprintf("%s: rescan %s / inline %s", c.Path, s(c.Old), s(c.New))
}

// ReadState reads and decodes the .state of dir (relative to the mount).
func (e *Env) ReadState(dir string) map[string]any {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Mnt, dir, ".state"))
	if err != nil {
		e.t.Fatalf("read .state of %q: %v", dir, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		e.t.Fatalf(".state of %q is not JSON: %v\n%s", dir, err, b)
	}
	return m
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
