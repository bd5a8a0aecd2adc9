package tracker

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Finding kinds. They are part of the .state and API contract (docs/state.md).
const (
	FindingMismatch      = "mismatch"       // a blob's content does not match the digest its name promises
	FindingBitRot        = "bit_rot"        // content changed while size, mtime, ctime and inode did not
	FindingTransientRead = "transient_read" // a read disagreed once and was right on the second attempt
	FindingReadError     = "read_error"     // the file could not be read twice in a row
	FindingDrift         = "drift"          // the file changed in DATA without passing through the mount
	FindingShadowed      = "shadowed"       // a real file named .state is hidden from lookups by the virtual one
	FindingInternal      = "internal"       // trowfs's bookkeeping disagreed with the directory and repaired itself
	FindingRepaired      = "repaired"       // a mismatched blob was replaced by a verified copy from a peer (RepairedFrom)
)

// Finding is one problem found in the data directory or in trowfs's bookkeeping.
type Finding struct {
	Kind     string `json:"kind"`
	Path     string `json:"path"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	Detail   string `json:"detail,omitempty"`
	// RepairedFrom names the peer a repaired blob was copied from (kind repaired only).
	RepairedFrom string    `json:"repaired_from,omitempty"`
	At           time.Time `json:"at"`
}

type findingKey struct{ kind, path string }

// maxFindings bounds memory if something floods findings; counts stay exact in stats.
const maxFindings = 100000

func (t *Tracker) addFindingLocked(f Finding) {
	if f.At.IsZero() {
		f.At = time.Now().UTC()
	}
	k := findingKey{f.Kind, f.Path}
	if _, ok := t.findings[k]; !ok && len(t.findings) >= maxFindings {
		return
	}
	t.findings[k] = f
	if f.Kind == FindingMismatch || f.Kind == FindingBitRot {
		// The content is bad again: an earlier repair did not hold.
		delete(t.findings, findingKey{FindingRepaired, f.Path})
	}
}

// clearFindingLocked forgets the finding kind at rel. A mismatch cleared by the commit of a
// matching digest after a heal (Healed) becomes a repaired finding instead, and takes the path's
// bit_rot finding with it.
func (t *Tracker) clearFindingLocked(kind, rel string) {
	k := findingKey{kind, rel}
	if kind != FindingMismatch || t.heals == nil {
		delete(t.findings, k)
		return
	}
	h, ok := t.heals[rel]
	if !ok {
		delete(t.findings, k)
		return
	}
	delete(t.heals, rel)
	old, had := t.findings[k]
	if rot, ok := t.findings[findingKey{FindingBitRot, rel}]; !had && ok {
		old, had = rot, true
	}
	delete(t.findings, k)
	delete(t.findings, findingKey{FindingBitRot, rel})
	f := Finding{Kind: FindingRepaired, Path: rel, Expected: h.want, Actual: h.bad, RepairedFrom: h.from,
		Detail: "blob content did not match its name; replaced by a verified copy from peer " + h.from}
	if had {
		f.Actual = old.Actual
	}
	t.addFindingLocked(f)
}

// healNote is a verified copy a heal installed at a path, until its hash commits.
type healNote struct {
	from      string // the peer it came from
	want, bad string // the digest in the name, and the content's digest before the heal
}

// Healed records that rel (a blob path) was replaced in DATA, behind the mount, by a copy of
// its blob that from served and that was verified against want. The file is rehashed through
// the normal path: when the digest that commits matches the name, the tree, its subtree digests
// and the registry model take it, and the path's mismatch finding becomes a repaired one naming
// from. Nothing is recorded if rel is not a regular file any more.
func (t *Tracker) Healed(rel, from string, want digest.Digest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, err := t.lstat(rel)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("tracker: healed %s is not a regular file", rel)
	}
	if t.heals == nil {
		t.heals = map[string]healNote{}
	}
	h := healNote{from: from, want: want.String()}
	if e, ok := t.tree.Get(rel); ok {
		h.bad = e.Digest.String()
	}
	t.heals[rel] = h
	t.rehashLocked(rel, &st, true)
	return nil
}

// clearFindingsLocked forgets content findings about rel and everything under it (the path was
// removed or replaced). Internal findings stay: they describe trowfs, not the file.
func (t *Tracker) clearFindingsLocked(rel string) {
	for k := range t.findings {
		if k.kind == FindingInternal || k.kind == FindingShadowed {
			continue
		}
		if k.path == rel || strings.HasPrefix(k.path, rel+"/") {
			delete(t.findings, k)
		}
	}
	for p := range t.heals {
		if p == rel || strings.HasPrefix(p, rel+"/") {
			delete(t.heals, p)
		}
	}
}

// Findings returns the current findings under dir ("" = all), sorted by path then kind.
func (t *Tracker) Findings(dir string) []Finding {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.findingsLocked(dir, 0)
}

func (t *Tracker) findingsLocked(dir string, limit int) []Finding {
	var out []Finding
	for k, f := range t.findings {
		if dir == "" || k.path == dir || strings.HasPrefix(k.path, dir+"/") {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Kind < out[j].Kind
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
