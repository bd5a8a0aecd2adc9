package api

import (
	"errors"
	"time"
)

// Backend is what the endpoint needs from a running trowfs. Paths handed to
// it have been validated: they are clean, relative to the data root, use "/"
// as separator, never contain "..", NUL or a leading "/", and "" is the root.
// Implementations must be safe for concurrent use.
type Backend interface {
	// State returns the .state JSON document of a directory or file (path
	// relative to the data root, "" = root).
	State(path string) ([]byte, error)
	// Tree lists children of a directory in name order after `after`, at most
	// limit (the caller caps limit at MaxTreeLimit).
	Tree(path, after string, limit int) (TreePage, error)
	// Registry returns the consistency report (JSON-marshalable) or ok=false
	// for the plain layout.
	Registry() (report any, ok bool)
	// StartVerify starts a verification run (kind "full" or "quick"; ErrBusy
	// if one runs) and returns it.
	StartVerify(kind string) (VerifyRun, error)
	// VerifyRun returns one run by id.
	VerifyRun(id string) (VerifyRun, bool)
	// LastVerifyRun returns the current run, or the last one when none runs.
	LastVerifyRun() (VerifyRun, bool)
	// Metrics returns the current metric samples; /metrics calls it once per
	// scrape.
	Metrics() []Metric
	// Healthy returns nil when the mount is serving, or the reason it is not.
	Healthy() error
}

// Sentinel errors a Backend returns (possibly wrapped with %w) so that the
// endpoint can choose the status code.
var (
	// ErrNotFound: the path or run does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrBadPath: the path is not acceptable (400).
	ErrBadPath = errors.New("bad path")
	// ErrBusy: a verification run is already in progress (409).
	ErrBusy = errors.New("a verification run is already in progress")
	// ErrNotDir: a directory operation was asked of a file (400).
	ErrNotDir = errors.New("not a directory")
)

// Kinds of verification run accepted by POST /v1/verify.
const (
	VerifyFull  = "full"  // re-hash every file and check every blob against its name
	VerifyQuick = "quick" // check sizes and the reference graph, re-hash only what changed
)

// States of a verification run.
const (
	RunRunning = "running"
	RunDone    = "done"
	RunFailed  = "failed"
)

// Tree entry kinds used by trowfs (informative; the backend chooses).
const (
	KindFile    = "file"
	KindDir     = "dir"
	KindSymlink = "symlink"
)

// TreeEntry is one child of a directory in a [TreePage].
type TreeEntry struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Digest string `json:"digest,omitempty"`
	Status string `json:"status,omitempty"`
	Size   int64  `json:"size"`
	// Files and Bytes are the totals below a directory; zero for files.
	Files int64 `json:"files,omitempty"`
	Bytes int64 `json:"bytes,omitempty"`
}

// TreePage is one page of a directory listing.
type TreePage struct {
	Path    string      `json:"path"`
	Digest  string      `json:"digest"`
	Entries []TreeEntry `json:"entries"`
	// Next is the value of "after" for the next page, "" at the end. The
	// backend sets the raw name of the last entry; the endpoint sends it
	// through [EncodeAfter], so "next" is always usable as "after".
	Next string `json:"next,omitempty"`
}

// VerifyRun describes a verification run, running or finished.
type VerifyRun struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	State      string     `json:"state"` // running|done|failed
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	FilesTotal int64      `json:"files_total"`
	FilesDone  int64      `json:"files_done"`
	BytesTotal int64      `json:"bytes_total"`
	BytesDone  int64      `json:"bytes_done"`
	Findings   []Finding  `json:"findings"`
	Error      string     `json:"error,omitempty"`
}

// Finding is one problem a verification run found.
type Finding struct {
	Kind     string `json:"kind"`
	Path     string `json:"path"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// Metric is one sample: a metric name, its help text and type, one label set
// and the value. Samples of the same name must agree on Help and Type.
type Metric struct {
	Name   string
	Help   string
	Type   string // counter|gauge
	Labels map[string]string
	Value  float64
}
