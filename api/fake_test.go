package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// fakeBackend is an in-memory Backend. It records every path it is given so
// that tests can prove a rejected parameter never reached it.
type fakeBackend struct {
	// mu guards every field below.
	mu        sync.Mutex
	dirs      map[string][]TreeEntry // directory path -> children, any order
	files     map[string]bool        // file paths
	report    any                    // nil: plain layout
	runs      []VerifyRun            // oldest first
	running   bool                   // a run is in progress
	metrics   []Metric
	unhealthy error
	failWith  error    // returned by State and Tree when set
	calls     []string // "State(p)", "Tree(p,after,limit)", ...
}

func newFakeBackend() *fakeBackend {
	f := &fakeBackend{
		dirs:  map[string][]TreeEntry{},
		files: map[string]bool{},
	}
	f.addDir("")
	return f
}

// addDir adds a directory and its ancestors.
func (f *fakeBackend) addDir(p string) {
	if _, ok := f.dirs[p]; ok {
		return
	}
	f.dirs[p] = nil
	if p == "" {
		return
	}
	parent, name := splitPath(p)
	f.addDir(parent)
	f.dirs[parent] = append(f.dirs[parent], TreeEntry{Name: name, Kind: KindDir, Digest: "sha256:" + name})
}

// addFile adds a file and its ancestors.
func (f *fakeBackend) addFile(p string, size int64) {
	parent, name := splitPath(p)
	f.addDir(parent)
	f.files[p] = true
	f.dirs[parent] = append(f.dirs[parent], TreeEntry{Name: name, Kind: KindFile, Size: size, Digest: "sha256:" + name, Status: "ok"})
}

func splitPath(p string) (parent, name string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

func (f *fakeBackend) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// set changes the fake's fields under its lock.
func (f *fakeBackend) set(change func(*fakeBackend)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *fakeBackend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeBackend) State(p string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("State(%q)", p)
	if f.failWith != nil {
		return nil, f.failWith
	}
	if _, isDir := f.dirs[p]; !isDir && !f.files[p] {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, p)
	}
	return json.Marshal(map[string]any{"path": p, "digest": "sha256:" + p})
}

func (f *fakeBackend) Tree(p, after string, limit int) (TreePage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("Tree(%q,%q,%d)", p, after, limit)
	if f.failWith != nil {
		return TreePage{}, f.failWith
	}
	kids, isDir := f.dirs[p]
	if !isDir {
		if f.files[p] {
			return TreePage{}, fmt.Errorf("%w: %s", ErrNotDir, p)
		}
		return TreePage{}, fmt.Errorf("%w: %s", ErrNotFound, p)
	}
	kids = slices.Clone(kids)
	slices.SortFunc(kids, func(a, b TreeEntry) int { return strings.Compare(a.Name, b.Name) })
	page := TreePage{Path: p, Digest: "sha256:dir-" + p}
	for _, e := range kids {
		if e.Name <= after {
			continue
		}
		if len(page.Entries) == limit {
			page.Next = page.Entries[len(page.Entries)-1].Name
			break
		}
		page.Entries = append(page.Entries, e)
	}
	return page, nil
}

func (f *fakeBackend) Registry() (any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("Registry()")
	return f.report, f.report != nil
}

func (f *fakeBackend) StartVerify(kind string) (VerifyRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("StartVerify(%q)", kind)
	if f.running {
		return VerifyRun{}, ErrBusy
	}
	f.running = true
	run := VerifyRun{
		ID:         fmt.Sprintf("run-%d", len(f.runs)+1),
		Kind:       kind,
		State:      RunRunning,
		StartedAt:  time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC),
		FilesTotal: 10,
		BytesTotal: 1000,
	}
	f.runs = append(f.runs, run)
	return run, nil
}

// finish ends the running run with the given findings.
func (f *fakeBackend) finish(findings ...Finding) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.running {
		return
	}
	f.running = false
	r := &f.runs[len(f.runs)-1]
	end := r.StartedAt.Add(time.Second)
	r.State, r.FinishedAt, r.Findings = RunDone, &end, findings
	r.FilesDone, r.BytesDone = r.FilesTotal, r.BytesTotal
}

func (f *fakeBackend) VerifyRun(id string) (VerifyRun, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("VerifyRun(%q)", id)
	for _, r := range f.runs {
		if r.ID == id {
			return r, true
		}
	}
	return VerifyRun{}, false
}

func (f *fakeBackend) LastVerifyRun() (VerifyRun, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.runs) == 0 {
		return VerifyRun{}, false
	}
	return f.runs[len(f.runs)-1], true
}

func (f *fakeBackend) Metrics() []Metric {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.metrics)
}

func (f *fakeBackend) Healthy() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unhealthy
}

var errInternal = errors.New("disk on fire at /secret/place")
