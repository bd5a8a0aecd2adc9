package trowreplay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/fs/fstest"
	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/server"
	"github.com/trowfs/trowfs/internal/tracker"
	"github.com/trowfs/trowfs/registry"
)

// Env is a data directory and, while mounted, the in-process trowfs server over it.
type Env struct {
	t      testing.TB
	Data   string
	Mnt    string
	Layout string
	Srv    *server.Server
}

// NewEnv makes an empty data directory and a mountpoint; nothing is mounted yet.
func NewEnv(t testing.TB, layout string) *Env {
	t.Helper()
	fstest.Require(t)
	dir := t.TempDir()
	e := &Env{t: t, Data: filepath.Join(dir, "data"), Mnt: filepath.Join(dir, "mnt"), Layout: layout}
	for _, d := range []string{e.Data, e.Mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { e.Stop() })
	return e
}

// Start mounts DATA on MNT with the server package.
func (e *Env) Start() *server.Server {
	e.t.Helper()
	if e.Srv != nil {
		e.t.Fatal("already mounted")
	}
	log := slog.New(slog.NewTextHandler(logWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.Start(context.Background(), server.Config{Data: e.Data, Mnt: e.Mnt, Layout: e.Layout,
		CheckpointInterval: 0, Logger: log, DrainTimeout: time.Minute})
	if err != nil {
		e.t.Fatalf("mount %s on %s: %v", e.Data, e.Mnt, err)
	}
	e.Srv = srv
	return srv
}

// Stop unmounts (if mounted). It is safe to call more than once.
func (e *Env) Stop() {
	if e.Srv == nil {
		return
	}
	srv := e.Srv
	e.Srv = nil
	if err := srv.Stop(); err != nil {
		e.t.Errorf("stop: %v", err)
	}
}

// Restart unmounts and mounts again (quick verification on start).
func (e *Env) Restart() *server.Server {
	e.t.Helper()
	e.Stop()
	return e.Start()
}

// Settle waits until hashing is done and the registry model has every change.
func (e *Env) Settle() {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !e.Srv.Tracker().Drain(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatalf("hashing did not settle within 30s")
		}
	}
	e.Srv.Tracker().WaitNotified()
	e.Srv.RegistryModel().Flush()
}

// Report settles and returns the registry report.
func (e *Env) Report() registry.Report {
	e.t.Helper()
	e.Settle()
	return e.Srv.RegistryModel().Report()
}

// Excludes are the default excludes of the mounted layout.
func (e *Env) Excludes() []string {
	return registry.Layout(e.Srv.RegistryModel().Layout()).Excludes()
}

// RescanDiff settles and compares the inline tree with a from-scratch rescan of DATA; it returns
// the differences (nil when equal).
//
// When the only difference is the size of an excluded file, it looks again (up to 5 times,
// 200 ms apart): an excluded file open for writing keeps its old size in the tree until it is
// closed, and in trow-sqlite trowfs's own reloads of trow.db keep opening trow.db-shm (see
// TestTrowSQLiteNoReloadLoop), so a comparison can catch one in flight.
func (e *Env) RescanDiff() []string {
	e.t.Helper()
	var diffs []string
	for try := 0; try < 5; try++ {
		var onlyExcluded bool
		diffs, onlyExcluded = e.rescanDiff()
		if len(diffs) == 0 || !onlyExcluded {
			return diffs
		}
		e.t.Logf("rescan: only excluded files' sizes differ, looking again: %v", diffs)
		time.Sleep(200 * time.Millisecond)
	}
	return diffs
}

// rescanDiff is one comparison; onlyExcluded says every difference is the size of an excluded file.
func (e *Env) rescanDiff() (diffs []string, onlyExcluded bool) {
	e.t.Helper()
	e.Settle()
	ref, err := tracker.Rescan(context.Background(), e.Data, tracker.ScanOptions{Exclude: e.Excludes()})
	if err != nil {
		e.t.Fatal(err)
	}
	onlyExcluded = true
	e.Srv.Tracker().WithTree(func(tr *hashtree.Tree) {
		_ = hashtree.Diff(ref, tr, func(c hashtree.Change) error {
			diffs = append(diffs, describe(c))
			onlyExcluded = false
			return nil
		})
		rs, _ := ref.Summary("")
		ts, _ := tr.Summary("")
		if rs.Files != ts.Files || rs.Bytes != ts.Bytes || rs.Dirs != ts.Dirs {
			diffs = append(diffs, fmt.Sprintf("summary: rescan files=%d dirs=%d bytes=%d, inline files=%d dirs=%d bytes=%d",
				rs.Files, rs.Dirs, rs.Bytes, ts.Files, ts.Dirs, ts.Bytes))
			// Diff ignores sizes; name the files whose sizes differ (excluded files included).
			_ = ref.Walk(func(p string, re hashtree.Entry) error {
				if ie, ok := tr.Get(p); ok && ie.Kind == re.Kind && ie.Meta.Size != re.Meta.Size {
					diffs = append(diffs, fmt.Sprintf("%s: rescan size=%d %s / inline size=%d %s", p, re.Meta.Size, re.Status, ie.Meta.Size, ie.Status))
					if re.Status != hashtree.StatusExcluded {
						onlyExcluded = false
					}
				}
				return nil
			})
		}
		if rs.Files != ts.Files || rs.Dirs != ts.Dirs {
			onlyExcluded = false
		}
		if rs.Digest != ts.Digest {
			diffs = append(diffs, fmt.Sprintf("root digest: rescan %s, inline %s", rs.Digest, ts.Digest))
			onlyExcluded = false
		}
	})
	return diffs, onlyExcluded
}

// AssertMatchesRescan fails t (the test or subtest running the check) when the inline tree
// differs from a rescan.
func (e *Env) AssertMatchesRescan(t testing.TB) {
	t.Helper()
	if d := e.RescanDiff(); len(d) > 0 {
		if len(d) > 40 {
			d = append(d[:40], fmt.Sprintf("... and %d more", len(d)-40))
		}
		t.Fatalf("inline tree differs from a rescan of %s:\n%s", e.Data, strings.Join(d, "\n"))
	}
}

func describe(c hashtree.Change) string {
	s := func(x *hashtree.Entry) string {
		if x == nil {
			return "absent"
		}
		return fmt.Sprintf("%s %s %s size=%d", x.Kind, x.Digest, x.Status, x.Meta.Size)
	}
	return fmt.Sprintf("%s: rescan %s / inline %s", c.Path, s(c.Old), s(c.New))
}

// StateRegistry reads MNT/.state and returns its "registry" object decoded as a Report.
func (e *Env) StateRegistry() registry.Report {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Mnt, ".state"))
	if err != nil {
		e.t.Fatalf("read .state: %v", err)
	}
	var doc struct {
		Registry *registry.Report `json:"registry"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		e.t.Fatalf(".state is not JSON: %v", err)
	}
	if doc.Registry == nil {
		e.t.Fatalf(".state has no registry object:\n%s", b)
	}
	return *doc.Registry
}

// Listing maps every regular file under root (except trowfs's .trowfs and the excluded side
// files given) to the sha256 of its content and its mode.
func Listing(t testing.TB, root string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if rel == tracker.StateDirName && d.IsDir() {
			return filepath.SkipDir
		}
		for _, s := range skip {
			if rel == s {
				return nil
			}
		}
		if d.IsDir() {
			if rel != "." {
				out[rel+"/"] = "dir"
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		out[rel] = fmt.Sprintf("%s %o", hex.EncodeToString(h.Sum(nil)), fi.Mode())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// DiffListings describes how after differs from before, ignoring the paths in except.
func DiffListings(before, after map[string]string, except ...string) []string {
	skip := map[string]bool{}
	for _, x := range except {
		skip[x] = true
	}
	var out []string
	for p, v := range before {
		if skip[p] {
			continue
		}
		if w, ok := after[p]; !ok {
			out = append(out, "lost "+p)
		} else if w != v {
			out = append(out, "changed "+p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok && !skip[p] {
			out = append(out, "appeared "+p)
		}
	}
	sort.Strings(out)
	return out
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
