package tracker

import (
	"sort"
	"strings"
	"time"
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
)

// Finding is one problem found in the data directory or in trowfs's bookkeeping.
type Finding struct {
	Kind     string    `json:"kind"`
	Path     string    `json:"path"`
	Expected string    `json:"expected,omitempty"`
	Actual   string    `json:"actual,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	At       time.Time `json:"at"`
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
}

func (t *Tracker) clearFindingLocked(kind, rel string) { delete(t.findings, findingKey{kind, rel}) }

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
