package tracker

import (
	"time"

	"github.com/trowfs/trowfs/hashtree"
)

// StateFileName is the virtual file every directory of the mount has.
const StateFileName = ".state"

// State is the content of a .state file (docs/state.md). Keys are a stable contract.
type State struct {
	Path       string           `json:"path"`
	Kind       string           `json:"kind"`
	Digest     string           `json:"digest"`
	Status     string           `json:"status"`
	Files      int64            `json:"files"`
	Dirs       int64            `json:"dirs"`
	Symlinks   int64            `json:"symlinks"`
	Bytes      int64            `json:"bytes"`
	Statuses   map[string]int64 `json:"statuses"`
	ChangedAt  *time.Time       `json:"changed_at"`
	VerifiedAt *time.Time       `json:"verified_at"`
	Findings   []Finding        `json:"findings"`
	// FindingsCount is exact even when Findings is cut short.
	FindingsCount int `json:"findings_count"`
}

// maxStateFindings bounds the findings listed in one .state document.
const maxStateFindings = 100

// State returns the state of rel ("" = root). ok is false when the tree has no such path.
func (t *Tracker) State(rel string) (State, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.tree.Summary(rel)
	if !ok {
		return State{}, false
	}
	e, _ := t.tree.Get(rel)
	kind := e.Kind
	if rel == "" {
		kind = hashtree.KindDir
	}
	st := State{
		Path:     "/" + rel,
		Kind:     kind.String(),
		Digest:   s.Digest.String(),
		Status:   subtreeStatusName(&s),
		Files:    s.Files,
		Dirs:     s.Dirs,
		Symlinks: s.Symlinks,
		Bytes:    s.Bytes,
		Statuses: map[string]int64{},
	}
	for i := 0; i < hashtree.NumStatus; i++ {
		st.Statuses[hashtree.Status(i).String()] = s.ByStatus[i]
	}
	st.ChangedAt = nsTime(s.ChangedAt)
	st.VerifiedAt = nsTime(s.VerifiedAt)
	all := t.findingsLocked(rel, 0)
	st.FindingsCount = len(all)
	if len(all) > maxStateFindings {
		all = all[:maxStateFindings]
	}
	st.Findings = all
	if st.Findings == nil {
		st.Findings = []Finding{}
	}
	return st, true
}

// subtreeStatus is the worst status in the subtree: mismatch, then pending, then unverified, then
// verified. A subtree of excluded files only is excluded; an empty one is verified.
func subtreeStatusName(s *hashtree.Summary) string {
	n, _ := SubtreeStatus(s)
	return n
}

// SubtreeStatus returns the status name of a subtree and its hashtree.Status.
func SubtreeStatus(s *hashtree.Summary) (string, hashtree.Status) {
	st := subtreeStatus(s)
	return st.String(), st
}

func subtreeStatus(s *hashtree.Summary) hashtree.Status {
	b := s.ByStatus
	switch {
	case b[hashtree.StatusMismatch] > 0:
		return hashtree.StatusMismatch
	case b[hashtree.StatusPending] > 0:
		return hashtree.StatusPending
	case b[hashtree.StatusUnverified] > 0:
		return hashtree.StatusUnverified
	case b[hashtree.StatusVerified] > 0:
		return hashtree.StatusVerified
	case b[hashtree.StatusExcluded] > 0:
		return hashtree.StatusExcluded
	}
	return hashtree.StatusVerified
}

func nsTime(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

// Entry returns the tree entry of rel.
func (t *Tracker) Entry(rel string) (hashtree.Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tree.Get(rel)
}

// Root returns the root digest of the tree.
func (t *Tracker) Root() hashtree.Digest {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tree.Root()
}

// Stats is a point-in-time view of the tracker's counters and tree.
type Stats struct {
	Ops            map[string]int64
	BytesHashed    int64
	FilesHashed    int64
	HashSeconds    float64
	InternalErrors int64
	Entries        int
	Summary        hashtree.Summary
	Pending        int // files with writers or waiting for a hash
	Findings       map[string]int
	Scrub          ScrubProgress
}

// Stats returns the current statistics.
func (t *Tracker) Stats() Stats {
	s := Stats{Ops: map[string]int64{}, Findings: map[string]int{}}
	for _, op := range OpNames {
		s.Ops[op] = 0
	}
	t.stats.ops.Range(func(k, v any) bool {
		s.Ops[k.(string)] = v.(interface{ Load() int64 }).Load()
		return true
	})
	s.BytesHashed = t.stats.bytesHashed.Load()
	s.FilesHashed = t.stats.filesHashed.Load()
	s.HashSeconds = float64(t.stats.hashNanos.Load()) / 1e9
	s.InternalErrors = t.stats.internalErrors.Load()
	t.mu.Lock()
	s.Entries = t.tree.Len()
	s.Summary, _ = t.tree.Summary("")
	s.Pending = t.book.InFlight()
	for k := range t.findings {
		s.Findings[k.kind]++
	}
	s.Scrub = t.scrub.progress
	t.mu.Unlock()
	return s
}
