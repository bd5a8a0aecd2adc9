package ledger

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"pgregory.net/rapid"

	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/checker"
)

// The keeper is driven here as the tracker drives it, against a simulated data directory instead
// of a real one: random operations of a registry (create, write, close, truncate, rename of files
// and directories, exchange, link, unlink, mkdir, rmdir), interleaved with a hash worker whose
// read of a file and whose record of the result are separate steps, so that any operation can
// fall between them (a rename during hashing, an unlink of one link while a writer is open, a
// rename over an open file). At the end, with every writer closed and every job run, the tree
// must equal a scan of the simulated directory from scratch.

// simFile is an inode of the simulated directory.
type simFile struct {
	content string
	ctime   int64
	mtime   int64
}

type sim struct {
	clock int64
	next  uint64
	files map[uint64]*simFile
	names map[string]uint64 // file names
	dirs  map[string]bool   // directories ("" is the root)
}

func newSim() *sim {
	return &sim{files: map[uint64]*simFile{}, names: map[string]uint64{}, dirs: map[string]bool{"": true}}
}

func (s *sim) tick() int64 { s.clock++; return s.clock }

func (s *sim) meta(ino uint64) hashtree.Meta {
	f := s.files[ino]
	return hashtree.Meta{Size: int64(len(f.content)), Mtime: f.mtime, Ctime: f.ctime, Ino: ino}
}

func (s *sim) stat(rel string) (hashtree.Meta, bool) {
	if ino, ok := s.names[rel]; ok {
		return s.meta(ino), true
	}
	return hashtree.Meta{}, false
}

func parentOf(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

func (s *sim) exists(rel string) bool { _, f := s.names[rel]; return f || s.dirs[rel] }

func (s *sim) empty(dir string) bool {
	for p := range s.names {
		if parentOf(p) == dir {
			return false
		}
	}
	for p := range s.dirs {
		if p != "" && parentOf(p) == dir {
			return false
		}
	}
	return true
}

// move renames everything at or under from to to (the directory entries themselves).
func (s *sim) move(from, to string) {
	names, dirs := map[string]uint64{}, map[string]bool{}
	for p, ino := range s.names {
		if p == from || strings.HasPrefix(p, from+"/") {
			delete(s.names, p)
			names[to+p[len(from):]] = ino
		}
	}
	for p := range s.dirs {
		if p == from || strings.HasPrefix(p, from+"/") {
			delete(s.dirs, p)
			dirs[to+p[len(from):]] = true
		}
	}
	for p, ino := range names {
		s.names[p] = ino
	}
	for p := range dirs {
		s.dirs[p] = true
	}
}

// recSink records what the keeper decides, as the tracker would.
type recSink struct {
	jobs      []Job
	mismatch  map[string]bool
	problems  []string
	rescans   []string
	cleared   int
	changed   int
	forbidden bool // a call back into the keeper from the sink would be a bug; none is made here
}

func (r *recSink) Changed(string, hashtree.Entry)         { r.changed++ }
func (r *recSink) Removed(string)                         { r.changed++ }
func (r *recSink) Dirty()                                 {}
func (r *recSink) Queue(j Job, _ bool)                    { r.jobs = append(r.jobs, j) }
func (r *recSink) Mismatch(p string, _ checker.NameCheck) { r.mismatch[p] = true }
func (r *recSink) ClearMismatch(p string)                 { delete(r.mismatch, p) }
func (r *recSink) ClearPath(string)                       { r.cleared++ }
func (r *recSink) Problem(rel, what string, err error) {
	r.problems = append(r.problems, fmt.Sprint(rel, ": ", what, ": ", err))
}
func (r *recSink) Rescan(rel, op string, err error) {
	r.rescans = append(r.rescans, fmt.Sprint(op, " ", rel, ": ", err))
}

func sum(content string) hashtree.Digest { return sha256.Sum256([]byte(content)) }

// reading is a hash job between its read and its record.
type reading struct {
	job   Job
	names []string
	res   Hashed
}

var simPath = rapid.Custom(func(t *rapid.T) string {
	depth := rapid.IntRange(1, 3).Draw(t, "depth")
	parts := make([]string, depth)
	for i := range parts {
		parts[i] = rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "part")
	}
	return strings.Join(parts, "/")
})

func TestKeeperKeepsTheTreeEqualToTheDirectory(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := newSim()
		out := &recSink{mismatch: map[string]bool{}}
		k := NewKeeper(hashtree.New(), Rules{}, out, s.tick, s.stat)
		writers := map[uint64]int{} // open write handles, by inode
		var inFlight []reading      // jobs read but not recorded

		// startJob is the worker's first half: the job is current, its names are read and the
		// file is read through the first name that still leads to it.
		startJob := func(j Job) {
			if _, ok := k.Book().Current(j); !ok {
				return
			}
			names := k.Names(j.Ino)
			if len(names) == 0 {
				k.Book().Settle(j.Ino)
				return
			}
			for _, n := range names {
				if ino, ok := s.names[n]; ok && ino == j.Ino {
					f := s.files[ino]
					inFlight = append(inFlight, reading{job: j, names: names,
						res: Hashed{Sum: sum(f.content), Meta: s.meta(ino), Read: true}})
					return
				}
			}
			// Every name is gone: the tracker waits for the reports of renames in progress;
			// here every report has arrived, so the names the ledger has are current.
			if _, ok := k.Book().Current(j); ok {
				k.Book().Settle(j.Ino)
			}
		}
		// finishJob is the worker's second half: the result is recorded if the job is still
		// current and the file was not changed meanwhile, else tried again.
		finishJob := func(r reading) {
			f, ok := k.Book().Current(r.job)
			if !ok {
				return
			}
			if cur := s.files[r.job.Ino]; cur == nil || s.meta(r.job.Ino) != r.res.Meta {
				out.jobs = append(out.jobs, r.job) // changed while hashing: again
				return
			}
			if now := k.Names(r.job.Ino); !slices.Equal(now, r.names) {
				out.jobs = append(out.jobs, r.job) // renamed or linked meanwhile: again
				return
			}
			p := PendingOf(f)
			names := k.Names(r.job.Ino)
			k.Book().Settle(r.job.Ino)
			for _, n := range names {
				unchanged := p != nil && p.HadDigest && r.res.Meta == p.Meta
				prior := hashtree.StatusPending
				if p != nil {
					prior = p.Status
				}
				k.Record(n, r.job.Ino, r.res, unchanged, prior)
			}
		}

		t.Repeat(map[string]func(*rapid.T){
			"create": func(t *rapid.T) {
				p := simPath.Draw(t, "p")
				if s.exists(p) || !s.dirs[parentOf(p)] {
					t.Skip("exists or no parent")
				}
				s.next++
				ino := s.next
				now := s.tick()
				s.files[ino] = &simFile{ctime: now, mtime: now}
				s.names[p] = ino
				writers[ino]++
				k.OpenWrite(p, s.meta(ino), true)
			},
			"open": func(t *rapid.T) {
				p := simPath.Draw(t, "p")
				ino, ok := s.names[p]
				if !ok {
					t.Skip("no file")
				}
				writers[ino]++
				k.OpenWrite(p, s.meta(ino), false)
			},
			"write": func(t *rapid.T) {
				var open []uint64
				for ino, n := range writers {
					if n > 0 {
						open = append(open, ino)
					}
				}
				if len(open) == 0 {
					t.Skip("no writer")
				}
				slices.Sort(open)
				ino := rapid.SampledFrom(open).Draw(t, "ino")
				f := s.files[ino]
				f.content += rapid.SampledFrom([]string{"x", "yy", "zzz"}).Draw(t, "data")
				f.mtime = s.tick()
				f.ctime = f.mtime
			},
			"close": func(t *rapid.T) {
				var open []uint64
				for ino, n := range writers {
					if n > 0 {
						open = append(open, ino)
					}
				}
				if len(open) == 0 {
					t.Skip("no writer")
				}
				slices.Sort(open)
				ino := rapid.SampledFrom(open).Draw(t, "ino")
				writers[ino]--
				k.CloseWrite(ino)
			},
			"truncate": func(t *rapid.T) {
				p := simPath.Draw(t, "p")
				ino, ok := s.names[p]
				if !ok {
					t.Skip("no file")
				}
				f := s.files[ino]
				f.content = ""
				f.mtime = s.tick()
				f.ctime = f.mtime
				k.Truncated(p, s.meta(ino))
			},
			"mkdir": func(t *rapid.T) {
				p := simPath.Draw(t, "p")
				if s.exists(p) || !s.dirs[parentOf(p)] {
					t.Skip("exists or no parent")
				}
				s.dirs[p] = true
				k.Mkdir(p)
			},
			"rmdir": func(t *rapid.T) {
				p := simPath.Draw(t, "p")
				if !s.dirs[p] || !s.empty(p) {
					t.Skip("not an empty directory")
				}
				delete(s.dirs, p)
				k.Rmdir(p)
			},
			"unlink": func(t *rapid.T) {
				p := simPath.Draw(t, "p")
				ino, ok := s.names[p]
				if !ok {
					t.Skip("no file")
				}
				delete(s.names, p)
				s.files[ino].ctime = s.tick()
				k.Unlink(p)
			},
			"link": func(t *rapid.T) {
				a, b := simPath.Draw(t, "a"), simPath.Draw(t, "b")
				ino, ok := s.names[a]
				if !ok || s.exists(b) || !s.dirs[parentOf(b)] {
					t.Skip("no source, or target exists")
				}
				s.names[b] = ino
				s.files[ino].ctime = s.tick()
				k.Link(a, b, s.meta(ino))
			},
			"rename": func(t *rapid.T) {
				a, b := simPath.Draw(t, "from"), simPath.Draw(t, "to")
				if !s.exists(a) || !s.dirs[parentOf(b)] || a == b || related(a, b) {
					t.Skip("no source, no target directory, or into itself")
				}
				ia, fa := s.names[a]
				ib, fb := s.names[b]
				switch {
				case fa && s.dirs[b], !fa && fb:
					t.Skip("file over directory or directory over file")
				case s.dirs[a] && s.dirs[b] && !s.empty(b):
					t.Skip("over a directory that is not empty")
				case fa && fb && ia == ib:
					k.Rename(a, b, false) // two names of one file: nothing happens
					return
				}
				if fb {
					delete(s.names, b)
					s.files[ib].ctime = s.tick()
				}
				delete(s.dirs, b)
				s.move(a, b)
				if fa {
					s.files[ia].ctime = s.tick()
				}
				k.Rename(a, b, false)
			},
			"exchange": func(t *rapid.T) {
				a, b := simPath.Draw(t, "a"), simPath.Draw(t, "b")
				if !s.exists(a) || !s.exists(b) || a == b || related(a, b) {
					t.Skip("both must exist, apart")
				}
				s.move(a, "\x00tmp")
				s.move(b, a)
				s.move("\x00tmp", b)
				for _, p := range []string{a, b} {
					if ino, ok := s.names[p]; ok {
						s.files[ino].ctime = s.tick()
					}
				}
				k.Rename(a, b, true)
			},
			"hash-start": func(t *rapid.T) {
				if len(out.jobs) == 0 {
					t.Skip("no job")
				}
				i := rapid.IntRange(0, len(out.jobs)-1).Draw(t, "job")
				j := out.jobs[i]
				out.jobs = slices.Delete(out.jobs, i, i+1)
				startJob(j)
			},
			"hash-finish": func(t *rapid.T) {
				if len(inFlight) == 0 {
					t.Skip("no job read")
				}
				i := rapid.IntRange(0, len(inFlight)-1).Draw(t, "reading")
				r := inFlight[i]
				inFlight = slices.Delete(inFlight, i, i+1)
				finishJob(r)
			},
		})

		// Quiesce: close every writer, then run every job to the end.
		var open []uint64
		for ino, n := range writers {
			for ; n > 0; n-- {
				open = append(open, ino)
			}
		}
		slices.Sort(open)
		for _, ino := range open {
			k.CloseWrite(ino)
		}
		for round := 0; len(out.jobs) > 0 || len(inFlight) > 0; round++ {
			if round > 1000 {
				t.Fatalf("jobs do not settle: %d queued, %d reading", len(out.jobs), len(inFlight))
			}
			jobs := out.jobs
			out.jobs = nil
			for _, j := range jobs {
				startJob(j)
			}
			rs := inFlight
			inFlight = nil
			for _, r := range rs {
				finishJob(r)
			}
		}
		if len(out.problems) > 0 || len(out.rescans) > 0 {
			t.Fatalf("bookkeeping problems %q, rescans %q", out.problems, out.rescans)
		}
		if n := k.Book().InFlight(); n != 0 {
			t.Fatalf("%d files still in flight after every writer closed and every job ran", n)
		}
		compareWithSim(t, k.Tree(), s)
	})
}

// compareWithSim checks that tree holds exactly the simulated directory: every file with its
// content's digest, verified, with its inode's metadata; every directory; nothing else.
func compareWithSim(t *rapid.T, tree *hashtree.Tree, s *sim) {
	want := map[string]string{}
	for p, ino := range s.names {
		f := s.files[ino]
		want[p] = fmt.Sprintf("file %x verified %+v", sum(f.content), s.meta(ino))
	}
	for p := range s.dirs {
		if p != "" {
			want[p] = "dir"
		}
	}
	got := map[string]string{}
	_ = tree.Walk(func(p string, e hashtree.Entry) error {
		switch e.Kind {
		case hashtree.KindDir:
			got[p] = "dir"
		case hashtree.KindFile:
			status := "verified"
			if e.Status != hashtree.StatusVerified {
				status = fmt.Sprint("status ", e.Status)
			}
			got[p] = fmt.Sprintf("file %x %s %+v", e.Digest, status, e.Meta)
		default:
			got[p] = fmt.Sprint("kind ", e.Kind)
		}
		return nil
	})
	var diffs []string
	for p, w := range want {
		if g := got[p]; g != w {
			diffs = append(diffs, fmt.Sprintf("%s: tree has %q, directory %q", p, g, w))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: tree has %q, directory nothing", p, g))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Fatalf("tree differs from the directory:\n%s", strings.Join(diffs, "\n"))
	}
}

// A blob renamed into place with the wrong content is a mismatch; replaced by the right content
// it is withdrawn.
func TestKeeperFindsABlobWhoseContentIsNotItsName(t *testing.T) {
	s := newSim()
	out := &recSink{mismatch: map[string]bool{}}
	good := "layer"
	name := digest.FromString(good)
	blob := "blobs/sha256/" + name.Encoded()
	rules := Rules{BlobDigest: func(rel string) (digest.Digest, bool) {
		if rel == blob {
			return name, true
		}
		return "", false
	}}
	k := NewKeeper(hashtree.New(), rules, out, s.tick, s.stat)
	for _, d := range []string{"blobs", "blobs/sha256"} {
		s.dirs[d] = true
		k.Mkdir(d)
	}
	put := func(content string) {
		s.next++
		ino := s.next
		s.files[ino] = &simFile{content: content, ctime: s.tick()}
		s.names["upload"] = ino
		k.OpenWrite("upload", s.meta(ino), true)
		k.CloseWrite(ino)
		for _, j := range out.jobs {
			f, _ := k.Book().Current(j)
			prior := PendingOf(f).Status
			names := k.Names(j.Ino)
			k.Book().Settle(j.Ino)
			for _, n := range names {
				k.Record(n, j.Ino, Hashed{Sum: sum(content), Meta: s.meta(j.Ino), Read: true}, false, prior)
			}
		}
		out.jobs = nil
		s.move("upload", blob)
		k.Rename("upload", blob, false)
	}
	put("not the layer")
	if len(out.rescans) > 0 || len(out.problems) > 0 {
		t.Fatalf("rescans %q, problems %q", out.rescans, out.problems)
	}
	if !out.mismatch[blob] {
		t.Fatal("a blob whose content is not its name was not reported")
	}
	if e, _ := k.Tree().Get(blob); e.Status != hashtree.StatusMismatch {
		t.Fatalf("status %v, want mismatch", e.Status)
	}
	put(good)
	if out.mismatch[blob] {
		t.Fatal("the mismatch was not withdrawn once the right content replaced it")
	}
	if e, _ := k.Tree().Get(blob); e.Status != hashtree.StatusVerified {
		t.Fatalf("status %v, want verified", e.Status)
	}
}
