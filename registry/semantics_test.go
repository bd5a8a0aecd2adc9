package registry

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestTrowFilesTagOrder checks that the current target is the line with the
// latest timestamp in both orders (v0.3 newest first, v0.4+ newest last),
// and that the previous target shows up as dangling tag history.
func TestTrowFilesTagOrder(t *testing.T) {
	for _, newestFirst := range []bool{true, false} {
		root := t.TempDir()
		w := newWriter(t, TrowFiles, root).(*trowFilesWriter)
		rng := rand.New(rand.NewPCG(9, 9))
		old, cur := makeImage(rng, 1, false), makeImage(rng, 1, false)
		for _, im := range []image{old, cur} {
			for _, c := range append(im.blobs(), im.manifest) {
				w.blob("", c)
			}
		}
		t1 := time.Date(2023, 5, 1, 0, 0, 0, 1, time.UTC).Format(time.RFC3339Nano)
		t2 := time.Date(2023, 5, 2, 0, 0, 0, 2, time.UTC).Format(time.RFC3339Nano)
		lOld, lCur := old.manifest.d.String()+" "+t1+"\n", cur.manifest.d.String()+" "+t2+"\n"
		body := lOld + lCur
		if newestFirst {
			body = lCur + lOld
		}
		writeFile(t, root, "manifests/org/app/latest", []byte(body))
		r := newRegistry(t, TrowFiles, root, Options{})
		r.Reset(scan(t, TrowFiles, root))
		rep := r.Report()
		rr, _ := r.RepoReport("org/app")
		if rr.Tags["latest"] != cur.manifest.d.String() {
			t.Fatalf("newestFirst=%v: latest -> %s, want %s", newestFirst, rr.Tags["latest"], cur.manifest.d)
		}
		var want []string
		for _, c := range append(old.blobs(), old.manifest) {
			want = append(want, "blobs/sha256/"+c.d.Encoded())
		}
		if got := findingsOf(rep); !reflect.DeepEqual(got, findings{Dangling: sorted(want...)}) {
			t.Fatalf("findings %+v, want dangling %v", got, want)
		}
		for _, d := range rep.Dangling {
			if d.Note != "tag history of org/app:latest" {
				t.Errorf("dangling %s note = %q", d.Path, d.Note)
			}
		}
	}
}

// TestTrowFilesDeleteUntagged: push-by-digest tag files are roots unless
// DeleteUntagged is set.
func TestTrowFilesDeleteUntagged(t *testing.T) {
	root := t.TempDir()
	w := newWriter(t, TrowFiles, root)
	rng := rand.New(rand.NewPCG(2, 2))
	tagged, untagged := makeImage(rng, 1, false), makeImage(rng, 2, false)
	push(w, "app", "v1", tagged)
	push(w, "app", "", untagged)
	for _, del := range []bool{false, true} {
		r := newRegistry(t, TrowFiles, root, Options{DeleteUntagged: del})
		r.Reset(scan(t, TrowFiles, root))
		var want findings
		want.InSync = !del
		if del {
			for _, c := range append(untagged.blobs(), untagged.manifest) {
				want.Dangling = append(want.Dangling, "blobs/sha256/"+c.d.Encoded())
			}
			want.Dangling = sorted(want.Dangling...)
		}
		if got := findingsOf(r.Report()); !reflect.DeepEqual(got, want) {
			t.Fatalf("delete-untagged=%v: %+v, want %+v", del, got, want)
		}
	}
}

// TestDistributionGCSemantics mirrors garbage-collect's mark phase.
func TestDistributionGCSemantics(t *testing.T) {
	root := t.TempDir()
	w := newWriter(t, Distribution, root).(*distWriter)
	rng := rand.New(rand.NewPCG(4, 4))
	tagged, untagged := makeImage(rng, 1, false), makeImage(rng, 2, false)
	c1, c2 := makeImage(rng, 1, false), makeImage(rng, 1, false)
	noRev := makeImage(rng, 1, false)
	push(w, "a", "v1", tagged)
	push(w, "a", "", untagged)
	push(w, "m", "", c1)
	push(w, "m", "", c2)
	idx := makeIndex(c1.manifest, c2.manifest)
	w.manifest("m", idx)
	w.tag("m", "multi", idx.d)
	// A tag whose manifest has no revision link: garbage-collect does not
	// start from tags, so nothing keeps it.
	for _, c := range append(noRev.blobs(), noRev.manifest) {
		w.blob("", c)
	}
	w.tag("a", "norev", noRev.manifest.d)

	paths := func(ims ...image) []string {
		var out []string
		for _, im := range ims {
			for _, c := range append(im.blobs(), im.manifest) {
				out = append(out, w.blobPath(c.d, ""))
			}
		}
		return sorted(out...)
	}
	for _, c := range []struct {
		del  bool
		want []string
	}{
		{false, paths(noRev)},
		// Untagged children of a tagged index are kept through the index.
		{true, paths(noRev, untagged)},
	} {
		r := newRegistry(t, Distribution, root, Options{DeleteUntagged: c.del})
		r.Reset(scan(t, Distribution, root))
		got := findingsOf(r.Report())
		if !reflect.DeepEqual(got, findings{Dangling: c.want}) {
			t.Fatalf("delete-untagged=%v:\n got %+v\nwant dangling %v", c.del, got, c.want)
		}
	}

	// A revision whose blob is gone, untagged: missing, named by its repository.
	rm(t, root, w.blobPath(untagged.manifest.d, ""))
	r := newRegistry(t, Distribution, root, Options{})
	r.Reset(scan(t, Distribution, root))
	rep := r.Report()
	if rep.MissingCount != 1 || rep.Missing[0].Digest != untagged.manifest.d.String() ||
		!reflect.DeepEqual(rep.Missing[0].Repos, []string{"a"}) || len(rep.Missing[0].Manifests) != 0 {
		t.Fatalf("missing = %+v", rep.Missing)
	}
}

// TestRemoveDirectory: Remove of a directory drops its whole subtree.
func TestRemoveDirectory(t *testing.T) {
	root := t.TempDir()
	w := newWriter(t, Distribution, root)
	s := buildScenario(w, 11)
	r := newRegistry(t, Distribution, root, Options{})
	r.Reset(scan(t, Distribution, root))
	if err := os.RemoveAll(filepath.Join(root, distRoot, "repositories", "lib")); err != nil {
		t.Fatal(err)
	}
	r.Remove(distRoot + "/repositories/lib")
	fresh := newRegistry(t, Distribution, root, Options{})
	fresh.Reset(scan(t, Distribution, root))
	if got, want := normalise(r.Report()), normalise(fresh.Report()); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Remove(dir):\n got %+v\nwant %+v", findingsOf(got), findingsOf(want))
	}
	if repos := r.Repos(); !reflect.DeepEqual(repos, []string{s.appRepo}) {
		t.Fatalf("repos = %v", repos)
	}
	if repo, ok := r.RepoForDir(distRoot + "/repositories/org/app"); !ok || repo != "org/app" {
		t.Fatalf("RepoForDir = %q, %v", repo, ok)
	}
	if _, ok := r.RepoForDir(distRoot + "/repositories/lib/multi"); ok {
		t.Fatal("RepoForDir found a removed repository")
	}
}

// TestIncrementalEqualsReset is a property test: any sequence of pushes,
// tags, deletions and damage, fed as Update/Remove, gives the same report as
// a Reset on the final state.
func TestIncrementalEqualsReset(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		l := rapid.SampledFrom([]Layout{TrowFiles, Distribution, OCILayout}).Draw(rt, "layout")
		root, err := os.MkdirTemp(t.TempDir(), "prop")
		if err != nil {
			rt.Fatal(err)
		}
		w := newWriter(t, l, root)
		r := New(l, dirSource{root}, Options{DeleteUntagged: rapid.Bool().Draw(rt, "untagged")})
		defer r.Close()
		prev := map[string]FileInfo{}
		r.Reset(nil)
		rng := rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "seed"), 0))
		repos := []string{"a", "b/c"}
		var pushed []image
		sync := func(removedDir string) {
			now := map[string]FileInfo{}
			for _, f := range scan(t, l, root) {
				now[f.Path] = f
			}
			if removedDir != "" {
				r.Remove(removedDir)
			}
			for p := range prev {
				if _, ok := now[p]; !ok && (removedDir == "" || !strings.HasPrefix(p, removedDir+"/")) {
					r.Remove(p)
				}
			}
			for p, f := range now {
				if prev[p] != f {
					r.Update(f)
				}
			}
			prev = now
		}
		steps := rapid.IntRange(1, 12).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			repo := rapid.SampledFrom(repos).Draw(rt, "repo")
			removed := ""
			switch op := rapid.IntRange(0, 6).Draw(rt, "op"); {
			case op <= 1 || len(pushed) == 0:
				im := makeImage(rng, 1+rng.IntN(2), rng.IntN(2) == 0)
				tag := ""
				if rapid.Bool().Draw(rt, "tagged") {
					tag = rapid.SampledFrom([]string{"v1", "v2"}).Draw(rt, "tag")
				}
				push(w, repo, tag, im)
				pushed = append(pushed, im)
			case op == 2:
				im := rapid.SampledFrom(pushed).Draw(rt, "image")
				w.tag(repo, rapid.SampledFrom([]string{"v1", "v2", "v3"}).Draw(rt, "tag"), im.manifest.d)
			case op == 3:
				im := rapid.SampledFrom(pushed).Draw(rt, "image")
				all := append(im.blobs(), im.manifest)
				c := rapid.SampledFrom(all).Draw(rt, "victim")
				_ = os.Remove(filepath.Join(root, filepath.FromSlash(w.blobPath(c.d, repo))))
			case op == 4:
				w.blob(repo, newContent([]byte(rapid.StringN(1, 20, -1).Draw(rt, "stray"))))
			case op == 5:
				im := rapid.SampledFrom(pushed).Draw(rt, "image")
				writeFile(t, root, w.blobPath(im.config.d, repo), []byte("corrupt"))
			case op == 6:
				dir := map[Layout]string{TrowFiles: "manifests/" + repo, Distribution: distRoot + "/repositories/" + repo,
					OCILayout: repo}[l]
				_ = os.RemoveAll(filepath.Join(root, filepath.FromSlash(dir)))
				removed = dir
			}
			sync(removed)
			if rapid.Bool().Draw(rt, "check now") {
				compareWithReset(t, rt, l, root, r)
			}
		}
		compareWithReset(t, rt, l, root, r)
	})
}

func compareWithReset(t *testing.T, rt *rapid.T, l Layout, root string, r *Registry) {
	fresh := New(l, dirSource{root}, r.opts)
	defer fresh.Close()
	fresh.Reset(scan(t, l, root))
	got, want := normalise(r.Report()), normalise(fresh.Report())
	if !reflect.DeepEqual(got, want) {
		rt.Fatalf("incremental report differs from reset:\n got %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(r.Repos(), fresh.Repos()) {
		rt.Fatalf("repos differ: %v vs %v", r.Repos(), fresh.Repos())
	}
}

// TestConcurrentUpdateReport exercises the locks under -race.
func TestConcurrentUpdateReport(t *testing.T) {
	root := t.TempDir()
	w := newWriter(t, Distribution, root)
	buildScenario(w, 3)
	files := scan(t, Distribution, root)
	r := newRegistry(t, Distribution, root, Options{})
	r.Reset(files)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				f := files[(i*7+g)%len(files)]
				switch (i + g) % 4 {
				case 0:
					r.Remove(f.Path)
				case 1, 2:
					r.Update(f)
				case 3:
					r.Report()
					r.RepoReport("org/app")
					r.Stats()
				}
			}
		}(g)
	}
	wg.Wait()
	for _, f := range files {
		r.Update(f)
	}
	fresh := newRegistry(t, Distribution, root, Options{})
	fresh.Reset(files)
	if got, want := normalise(r.Report()), normalise(fresh.Report()); !reflect.DeepEqual(got, want) {
		t.Fatalf("after concurrent churn:\n got %+v\nwant %+v", findingsOf(got), findingsOf(want))
	}
	if s := r.Stats(); s.ManifestCache.Hits == 0 || s.ManifestCache.Ratio <= 0 {
		t.Fatalf("manifest cache unused: %+v", s.ManifestCache)
	}
}

// TestOCIDeleteUntaggedReferrers: with untagged collection, olareg keeps a
// referrers response while its subject is kept, and only then.
func TestOCIDeleteUntaggedReferrers(t *testing.T) {
	root := t.TempDir()
	w := newWriter(t, OCILayout, root).(*ociWriter)
	rng := rand.New(rand.NewPCG(8, 8))
	kept, dropped := makeImage(rng, 1, false), makeImage(rng, 1, false)
	sigKept, sigDropped := makeImage(rng, 1, false), makeImage(rng, 1, false)
	push(w, "r", "v1", kept)
	push(w, "r", "", dropped)
	push(w, "r", "", sigKept)
	push(w, "r", "", sigDropped)
	respKept, respDropped := makeIndex(sigKept.manifest), makeIndex(sigDropped.manifest)
	w.blob("r", respKept)
	w.blob("r", respDropped)
	idx, p := w.index("r")
	ms := idx["manifests"].([]any)
	for _, x := range []struct {
		resp content
		subj image
	}{{respKept, kept}, {respDropped, dropped}} {
		d := desc(MediaTypeOCIIndex, x.resp)
		d["annotations"] = map[string]any{olaregReferrerSubject: x.subj.manifest.d.String()}
		ms = append(ms, d)
	}
	idx["manifests"] = ms
	writeFile(t, root, p, mustJSON(idx))

	r := newRegistry(t, OCILayout, root, Options{DeleteUntagged: true})
	r.Reset(scan(t, OCILayout, root))
	var want []string
	for _, im := range []image{dropped, sigDropped} {
		for _, c := range append(im.blobs(), im.manifest) {
			want = append(want, w.blobPath(c.d, "r"))
		}
	}
	want = append(want, w.blobPath(respDropped.d, "r"))
	if got := findingsOf(r.Report()); !reflect.DeepEqual(got, findings{Dangling: sorted(want...)}) {
		t.Fatalf("findings %+v\nwant dangling %v", got, sorted(want...))
	}
}

func TestRepoForDir(t *testing.T) {
	for _, c := range []struct {
		l       Layout
		dir     string
		want    string
		missing string
	}{
		{TrowFiles, "manifests/org/app", "org/app", "manifests/org"},
		{Distribution, distRoot + "/repositories/lib/multi", "lib/multi", distRoot + "/repositories/lib"},
		{OCILayout, "org/app", "org/app", "org"},
	} {
		root := t.TempDir()
		buildScenario(newWriter(t, c.l, root), 1)
		r := newRegistry(t, c.l, root, Options{})
		r.Reset(scan(t, c.l, root))
		if got, ok := r.RepoForDir(c.dir); !ok || got != c.want {
			t.Errorf("%s: RepoForDir(%q) = %q, %v; want %q", c.l, c.dir, got, ok, c.want)
		}
		if got, ok := r.RepoForDir(c.missing); ok {
			t.Errorf("%s: RepoForDir(%q) = %q, want none", c.l, c.missing, got)
		}
		if repos := r.Repos(); !reflect.DeepEqual(repos, []string{"lib/multi", "org/app"}) {
			t.Errorf("%s: Repos = %v", c.l, repos)
		}
	}
	// A single OCI layout at the root is the repository ".".
	root := t.TempDir()
	w := newWriter(t, OCILayout, root)
	push(w, ".", "latest", makeImage(rand.New(rand.NewPCG(1, 1)), 1, false))
	r := newRegistry(t, OCILayout, root, Options{})
	r.Reset(scan(t, OCILayout, root))
	if got, ok := r.RepoForDir(""); !ok || got != "." {
		t.Errorf("root layout: RepoForDir(\"\") = %q, %v", got, ok)
	}
	if rep := r.Report(); !rep.OK || rep.Tags != 1 || rep.Manifests != 1 {
		t.Errorf("root layout report: %+v", findingsOf(rep))
	}
}
