package registry

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// scenario is a small registry: two tagged images in org/app, an index of
// two images tagged in lib/multi.
type scenario struct {
	a, b       image   // org/app:v1, org/app:v2
	c1, c2     image   // children of idx
	idx        content // lib/multi:multi
	appRepo    string
	multiRepo  string
	garbage    content
	stray      content
	absent     content
	replacment []byte
}

func newWriter(t *testing.T, l Layout, root string) writer {
	switch l {
	case TrowFiles:
		return &trowFilesWriter{t: t, root: root, now: time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)}
	case Distribution:
		return &distWriter{t: t, root: root}
	case OCILayout:
		return &ociWriter{t: t, root: root}
	}
	t.Fatalf("no writer for %s", l)
	return nil
}

func push(w writer, repo, tag string, im image) {
	for _, c := range im.blobs() {
		w.blob(repo, c)
	}
	w.manifest(repo, im.manifest)
	if tag != "" {
		w.tag(repo, tag, im.manifest.d)
	}
}

func buildScenario(w writer, seed uint64) *scenario {
	rng := rand.New(rand.NewPCG(seed, 1))
	s := &scenario{appRepo: "org/app", multiRepo: "lib/multi"}
	s.a, s.b = makeImage(rng, 2, false), makeImage(rng, 3, true)
	s.c1, s.c2 = makeImage(rng, 1, false), makeImage(rng, 2, false)
	push(w, s.appRepo, "v1", s.a)
	push(w, s.appRepo, "v2", s.b)
	push(w, s.multiRepo, "", s.c1)
	push(w, s.multiRepo, "", s.c2)
	s.idx = makeIndex(s.c1.manifest, s.c2.manifest)
	w.manifest(s.multiRepo, s.idx)
	w.tag(s.multiRepo, "multi", s.idx.d)
	s.garbage = newContent([]byte("this is not a manifest {"))
	s.stray = newContent([]byte("stray bytes nobody references"))
	s.absent = newContent([]byte(`{"never":"written"}`))
	return s
}

// findings is what a report says is wrong, in comparable form.
type findings struct {
	Dangling   []string // paths
	Missing    []string // digests
	Mismatched []string // paths
	Broken     []string // repo:tag
	Unparsable []string // paths
	InSync     bool
}

func findingsOf(rep Report) findings {
	var f findings
	for _, d := range rep.Dangling {
		f.Dangling = append(f.Dangling, d.Path)
	}
	for _, m := range rep.Missing {
		f.Missing = append(f.Missing, m.Digest)
	}
	for _, m := range rep.Mismatched {
		f.Mismatched = append(f.Mismatched, m.Path)
	}
	for _, b := range rep.BrokenTags {
		f.Broken = append(f.Broken, b.Repo+":"+b.Tag)
	}
	for _, u := range rep.Unparsable {
		f.Unparsable = append(f.Unparsable, u.Path)
	}
	f.InSync = rep.InSync
	return f
}

func sorted(s ...string) []string {
	sort.Strings(s)
	return s
}

func TestDamageCases(t *testing.T) {
	for _, l := range []Layout{TrowFiles, Distribution, OCILayout} {
		t.Run(string(l), func(t *testing.T) {
			type damage struct {
				name  string
				do    func(t *testing.T, root string, w writer, s *scenario)
				want  func(w writer, s *scenario) findings
				check func(t *testing.T, rep Report, s *scenario)
			}
			cases := []damage{
				{name: "clean", do: func(*testing.T, string, writer, *scenario) {},
					want: func(writer, *scenario) findings { return findings{InSync: true} }},
				{name: "deleted referenced blob",
					do: func(t *testing.T, root string, w writer, s *scenario) {
						rm(t, root, w.blobPath(s.a.layers[0].d, s.appRepo))
					},
					want: func(w writer, s *scenario) findings {
						return findings{Missing: []string{s.a.layers[0].d.String()}}
					},
					check: func(t *testing.T, rep Report, s *scenario) {
						m := rep.Missing[0]
						if !reflect.DeepEqual(m.Repos, []string{s.appRepo}) || !reflect.DeepEqual(m.Manifests, []string{s.a.manifest.d.String()}) ||
							!reflect.DeepEqual(m.Tags, []string{s.appRepo + ":v1"}) || m.Kind != "blob" {
							t.Errorf("missing entry = %+v", m)
						}
					}},
				{name: "stray blob",
					do: func(t *testing.T, root string, w writer, s *scenario) { w.blob(s.appRepo, s.stray) },
					want: func(w writer, s *scenario) findings {
						return findings{Dangling: []string{w.blobPath(s.stray.d, s.appRepo)}}
					},
					check: func(t *testing.T, rep Report, s *scenario) {
						if rep.DanglingBytes != int64(len(s.stray.b)) || rep.Dangling[0].Size != int64(len(s.stray.b)) {
							t.Errorf("dangling bytes = %d, want %d", rep.DanglingBytes, len(s.stray.b))
						}
					}},
				{name: "unparsable manifest",
					do: func(t *testing.T, root string, w writer, s *scenario) {
						w.manifest(s.appRepo, s.garbage)
						w.tag(s.appRepo, "bad", s.garbage.d)
					},
					want: func(w writer, s *scenario) findings {
						return findings{Unparsable: []string{w.blobPath(s.garbage.d, s.appRepo)}, InSync: true}
					}},
				{name: "tag to missing manifest",
					do: func(t *testing.T, root string, w writer, s *scenario) { w.tag(s.appRepo, "ghost", s.absent.d) },
					want: func(w writer, s *scenario) findings {
						return findings{Broken: []string{s.appRepo + ":ghost"}}
					}},
				{name: "blob content mismatch",
					do: func(t *testing.T, root string, w writer, s *scenario) {
						writeFile(t, root, w.blobPath(s.a.layers[1].d, s.appRepo), []byte("flipped"))
					},
					want: func(w writer, s *scenario) findings {
						return findings{Mismatched: []string{w.blobPath(s.a.layers[1].d, s.appRepo)}, InSync: true}
					},
					check: func(t *testing.T, rep Report, s *scenario) {
						// The status page and alerts name the images a corrupt blob breaks.
						if m := rep.Mismatched[0]; !reflect.DeepEqual(m.Repos, []string{s.appRepo}) || m.Expected != s.a.layers[1].d.String() {
							t.Errorf("mismatched entry = %+v, want repos [%s]", m, s.appRepo)
						}
					}},
				{name: "tagged manifest content mismatch",
					do: func(t *testing.T, root string, w writer, s *scenario) {
						writeFile(t, root, w.blobPath(s.idx.d, s.multiRepo), []byte("flipped"))
					},
					check: func(t *testing.T, rep Report, s *scenario) {
						var got []string
						for _, m := range rep.Mismatched {
							if m.Expected == s.idx.d.String() {
								got = m.Repos
							}
						}
						if !reflect.DeepEqual(got, []string{s.multiRepo}) {
							t.Errorf("mismatched tagged index: repos %v, want [%s]; report %+v", got, s.multiRepo, rep.Mismatched)
						}
					}},
				{name: "deleted index child",
					do: func(t *testing.T, root string, w writer, s *scenario) {
						rm(t, root, w.blobPath(s.c2.manifest.d, s.multiRepo))
					},
					want: func(w writer, s *scenario) findings {
						// The child's own blobs are no longer reachable: the
						// garbage collector would delete them.
						var dang []string
						for _, c := range s.c2.blobs() {
							dang = append(dang, w.blobPath(c.d, s.multiRepo))
						}
						f := findings{Missing: []string{s.c2.manifest.d.String()}, Dangling: sorted(dang...)}
						if l == OCILayout {
							// olareg lists index children in index.json too:
							// absent untagged entries are missing as well.
							f.Missing = []string{s.c2.manifest.d.String()}
						}
						return f
					},
					check: func(t *testing.T, rep Report, s *scenario) {
						m := rep.Missing[0]
						if !reflect.DeepEqual(m.Tags, []string{s.multiRepo + ":multi"}) {
							t.Errorf("missing child tags = %v", m.Tags)
						}
					}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					root := t.TempDir()
					w := newWriter(t, l, root)
					s := buildScenario(w, 7)
					c.do(t, root, w, s)
					if got := Detect(root); got != l {
						t.Fatalf("Detect = %s, want %s", got, l)
					}
					r := newRegistry(t, l, root, Options{})
					r.Reset(scan(t, l, root))
					rep := r.Report()
					if c.want != nil { // nil: the case checks only what it names
						got, want := findingsOf(rep), c.want(w, s)
						if !reflect.DeepEqual(got, want) {
							t.Fatalf("findings:\n got %+v\nwant %+v", got, want)
						}
					}
					if rep.Repositories != 2 || rep.Tags < 3 {
						t.Errorf("repositories = %d, tags = %d", rep.Repositories, rep.Tags)
					}
					if c.check != nil {
						c.check(t, rep, s)
					}
					if (rep.AllBlobDigest == rep.AllManifestDigest) != rep.InSync {
						t.Errorf("in_sync %v inconsistent with digests", rep.InSync)
					}
				})
			}
		})
	}
}

func rm(t *testing.T, root, rel string) {
	t.Helper()
	if err := os.Remove(filepath.Join(root, filepath.FromSlash(rel))); err != nil {
		t.Fatal(err)
	}
}

var _ = digest.Digest("")
