package ledger

import (
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// model is the ledger's specification written the naive way: flat path tables rewritten by
// prefix on every rename, which is what the tracker did before the ledger. Each step of a random
// sequence is applied to both, and they must agree on every name of every file, on the in-flight
// count, on which jobs are current, and the trie must hold no node that leads to nothing.
type model struct {
	names map[string]uint64 // tracked name -> inode
	files map[uint64]*mfile
	gen   uint64
}

type mfile struct {
	writers  int
	gen      uint64
	inFlight bool
}

func newModel() *model { return &model{names: map[string]uint64{}, files: map[uint64]*mfile{}} }

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") || dir == "" }

func (m *model) file(ino uint64) *mfile {
	f := m.files[ino]
	if f == nil {
		f = &mfile{}
		m.files[ino] = f
	}
	return f
}

func (m *model) namesOf(ino uint64) []string {
	var out []string
	for p, i := range m.names {
		if i == ino {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// forget applies the rule "a file not in flight with at most one name is forgotten" to the files
// that lost a name or were settled.
func (m *model) forget(inos map[uint64]bool) {
	for ino := range inos {
		f := m.files[ino]
		if f == nil || f.inFlight || len(m.namesOf(ino)) > 1 {
			continue
		}
		for p, i := range m.names {
			if i == ino {
				delete(m.names, p)
			}
		}
		delete(m.files, ino)
	}
}

// removeUnder drops every name at or under dir, returning the files that lost one.
func (m *model) removeUnder(dir string, lost map[uint64]bool) {
	for p, i := range m.names {
		if under(p, dir) {
			delete(m.names, p)
			lost[i] = true
		}
	}
}

func (m *model) bind(rel string, ino uint64) {
	m.file(ino)
	lost := map[uint64]bool{}
	for p, i := range m.names {
		if strings.HasPrefix(p, rel+"/") || (p == rel && i != ino) {
			delete(m.names, p)
			lost[i] = true
		}
	}
	m.names[rel] = ino
	delete(lost, ino)
	m.forget(lost)
}

func (m *model) unbind(rel string) {
	lost := map[uint64]bool{}
	m.removeUnder(rel, lost)
	m.forget(lost)
}

func (m *model) rename(from, to string) bool {
	if from == to {
		return false
	}
	if a, ok := m.names[from]; ok {
		if b, ok := m.names[to]; ok && a == b {
			return false
		}
	}
	lost := map[uint64]bool{}
	m.removeUnder(to, lost)
	moved := map[string]uint64{}
	for p, i := range m.names {
		if under(p, from) {
			delete(m.names, p)
			moved[to+p[len(from):]] = i
		}
	}
	for p, i := range moved {
		m.names[p] = i
	}
	m.forget(lost)
	return true
}

func (m *model) exchange(a, b string) {
	moved := map[string]uint64{}
	for p, i := range m.names {
		switch {
		case under(p, a):
			delete(m.names, p)
			moved[b+p[len(a):]] = i
		case under(p, b):
			delete(m.names, p)
			moved[a+p[len(b):]] = i
		}
	}
	for p, i := range moved {
		m.names[p] = i
	}
}

// prefixes counts the distinct non-empty path prefixes of the tracked names: the trie's size.
func (m *model) prefixes() int {
	seen := map[string]bool{}
	for p := range m.names {
		for {
			seen[p] = true
			i := strings.LastIndexByte(p, '/')
			if i < 0 {
				break
			}
			p = p[:i]
		}
	}
	return len(seen)
}

var pathGen = rapid.Custom(func(t *rapid.T) string {
	depth := rapid.IntRange(1, 3).Draw(t, "depth")
	parts := make([]string, depth)
	for i := range parts {
		parts[i] = rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "part")
	}
	return strings.Join(parts, "/")
})

// related says one of a and b lies in the other: rename(2) refuses that (EINVAL, ENOTEMPTY).
func related(a, b string) bool {
	return strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

func TestLedgerAgreesWithFlatPathTables(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l, m := New(), newModel()
		var jobs []Job
		inoGen := rapid.Uint64Range(1, 6)
		t.Repeat(map[string]func(*rapid.T){
			"bind": func(t *rapid.T) {
				p, ino := pathGen.Draw(t, "p"), inoGen.Draw(t, "ino")
				l.Bind(p, ino)
				m.bind(p, ino)
			},
			"link": func(t *rapid.T) {
				a, b, ino := pathGen.Draw(t, "a"), pathGen.Draw(t, "b"), inoGen.Draw(t, "ino")
				if a == b || related(a, b) {
					t.Skip("one name inside the other")
				}
				l.Link(a, b, ino)
				m.bind(a, ino)
				m.bind(b, ino)
			},
			"unbind": func(t *rapid.T) {
				p := pathGen.Draw(t, "p")
				l.Unbind(p)
				m.unbind(p)
			},
			"rename": func(t *rapid.T) {
				a, b := pathGen.Draw(t, "from"), pathGen.Draw(t, "to")
				if related(a, b) {
					t.Skip("rename into itself")
				}
				if got, want := l.Rename(a, b), m.rename(a, b); got != want {
					t.Fatalf("Rename(%q, %q) = %v, want %v", a, b, got, want)
				}
			},
			"exchange": func(t *rapid.T) {
				a, b := pathGen.Draw(t, "a"), pathGen.Draw(t, "b")
				if a == b || related(a, b) {
					t.Skip("exchange with itself")
				}
				l.Exchange(a, b)
				m.exchange(a, b)
			},
			"open": func(t *rapid.T) {
				ino, created := inoGen.Draw(t, "ino"), rapid.Bool().Draw(t, "created")
				l.OpenWrite(ino, created)
				f := m.file(ino)
				m.gen++
				f.writers++
				f.gen, f.inFlight = m.gen, true
			},
			"close": func(t *rapid.T) {
				ino := inoGen.Draw(t, "ino")
				j, ok := l.CloseWrite(ino)
				f := m.files[ino]
				want := f != nil && f.writers == 1
				if f != nil && f.writers > 0 {
					f.writers--
				}
				if ok != want {
					t.Fatalf("CloseWrite(%d) queued %v, want %v", ino, ok, want)
				}
				if ok {
					jobs = append(jobs, j)
				}
			},
			"changed": func(t *rapid.T) {
				ino := inoGen.Draw(t, "ino")
				_, j, ok := l.Changed(ino)
				f := m.file(ino)
				m.gen++
				f.gen, f.inFlight = m.gen, true
				if ok != (f.writers == 0) {
					t.Fatalf("Changed(%d) queued %v with %d writers", ino, ok, f.writers)
				}
				if ok {
					jobs = append(jobs, j)
				}
			},
			"settle": func(t *rapid.T) {
				ino := inoGen.Draw(t, "ino")
				l.Settle(ino)
				if f := m.files[ino]; f != nil {
					f.inFlight, f.writers = false, 0
					m.forget(map[uint64]bool{ino: true})
				}
			},
			"": func(t *rapid.T) {
				for ino, f := range m.files {
					if got, want := l.Names(ino), m.namesOf(ino); !slices.Equal(got, want) {
						t.Fatalf("names of %d: %q, want %q", ino, got, want)
					}
					lf := l.File(ino)
					if lf == nil || lf.Writers != f.writers || lf.InFlight != f.inFlight {
						t.Fatalf("file %d: %+v, want %+v", ino, lf, f)
					}
				}
				if l.Tracked() != len(m.files) {
					t.Fatalf("ledger tracks %d files, model %d", l.Tracked(), len(m.files))
				}
				n := 0
				for _, f := range m.files {
					if f.inFlight {
						n++
					}
				}
				if l.InFlight() != n {
					t.Fatalf("in flight: %d, want %d", l.InFlight(), n)
				}
				for p, ino := range m.names {
					if got, ok := l.Ino(p); !ok || got != ino {
						t.Fatalf("Ino(%q) = %d %v, want %d", p, got, ok, ino)
					}
				}
				if got, want := l.nodes(), m.prefixes(); got != want {
					t.Fatalf("trie has %d nodes, the names need %d", got, want)
				}
				for _, j := range jobs {
					f := m.files[j.Ino]
					want := f != nil && f.inFlight && f.gen == j.Gen && f.writers == 0
					if _, ok := l.Current(j); ok != want {
						t.Fatalf("Current(%+v) = %v, want %v", j, ok, want)
					}
				}
			},
		})
	})
}
