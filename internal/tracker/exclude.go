package tracker

import (
	"fmt"
	"path"
	"strings"
)

// Matcher decides which paths are excluded from hashing. Patterns are slash-separated globs matched
// against paths relative to the data root: '*', '?' and '[...]' match within one segment, and a
// segment that is exactly "**" matches zero or more whole segments. A pattern without a '/' matches
// the base name at any depth ("*-wal"). A path is also excluded when one of its parent directories
// matches ("uploads" excludes everything under uploads/).
type Matcher struct {
	patterns [][]string // each pattern split into segments
	base     []string   // patterns without '/': matched against any single segment
}

// NewMatcher compiles patterns; it rejects malformed ones with a clear error.
func NewMatcher(patterns []string) (*Matcher, error) {
	m := &Matcher{}
	for _, p := range patterns {
		p = strings.Trim(strings.TrimSpace(p), "/")
		if p == "" {
			continue
		}
		segs := strings.Split(p, "/")
		for _, s := range segs {
			if _, err := path.Match(s, ""); err != nil {
				return nil, fmt.Errorf("exclude pattern %q: %w", p, err)
			}
		}
		if len(segs) == 1 && segs[0] != "**" {
			m.base = append(m.base, segs[0])
			continue
		}
		m.patterns = append(m.patterns, segs)
	}
	return m, nil
}

// Empty reports whether the matcher excludes nothing.
func (m *Matcher) Empty() bool { return m == nil || (len(m.patterns) == 0 && len(m.base) == 0) }

// Match reports whether rel (a clean relative path) or one of its parents is excluded.
func (m *Matcher) Match(rel string) bool {
	if m.Empty() || rel == "" {
		return false
	}
	segs := strings.Split(rel, "/")
	for _, s := range segs {
		for _, b := range m.base {
			if ok, _ := path.Match(b, s); ok {
				return true
			}
		}
	}
	for _, p := range m.patterns {
		// A match of any prefix of the path means a parent directory is excluded.
		for n := 1; n <= len(segs); n++ {
			if matchSegs(p, segs[:n]) {
				return true
			}
		}
	}
	return false
}

func matchSegs(pat, segs []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			for i := 0; i <= len(segs); i++ {
				if matchSegs(rest, segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], segs[0]); !ok {
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0
}
