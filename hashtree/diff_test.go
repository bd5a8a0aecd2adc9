package hashtree

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// walkOrder compares paths name by name, which is the order of Walk and Diff.
func walkOrder(a, b string) int {
	return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/"))
}

// bruteDiff compares two models entry by entry.
func bruteDiff(a, b refModel) []string {
	var paths []string
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if a[p] == nil {
			paths = append(paths, p)
		}
	}
	slices.SortFunc(paths, walkOrder)
	var out []string
	for _, p := range paths {
		ea, eb := a[p], b[p]
		var same bool
		if ea != nil && eb != nil && ea.Kind == eb.Kind && ea.Target == eb.Target {
			if ea.Kind == KindDir {
				same = a.digest(p) == b.digest(p)
			} else {
				same = ea.Digest == eb.Digest
			}
		}
		if !same {
			out = append(out, fmt.Sprintf("%s %v %v", p, ea != nil, eb != nil))
		}
	}
	return out
}

// walkDiff compares the full Walks of two trees, path by path.
func walkDiff(a, b *Tree) []string {
	entries := func(tr *Tree) map[string]Entry {
		m := map[string]Entry{}
		tr.Walk(func(p string, e Entry) error { m[p] = e; return nil })
		return m
	}
	ea, eb := entries(a), entries(b)
	var paths []string
	for p := range ea {
		paths = append(paths, p)
	}
	for p := range eb {
		if _, ok := ea[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.SortFunc(paths, walkOrder)
	var out []string
	for _, p := range paths {
		x, okA := ea[p]
		y, okB := eb[p]
		if okA && okB && x.Kind == y.Kind && x.Digest == y.Digest && x.Target == y.Target {
			continue
		}
		out = append(out, fmt.Sprintf("%s %v %v", p, okA, okB))
	}
	return out
}

func diffList(t *rapid.T, a, b *Tree) []string {
	var out []string
	err := Diff(a, b, func(c Change) error {
		// Each reported side must be what Get says.
		for _, side := range []struct {
			tr *Tree
			e  *Entry
		}{{a, c.Old}, {b, c.New}} {
			g, ok := side.tr.Get(c.Path)
			if ok != (side.e != nil) || (ok && g != *side.e) {
				t.Fatalf("Diff %q: entry %+v, Get says %+v %v", c.Path, side.e, g, ok)
			}
		}
		out = append(out, fmt.Sprintf("%s %v %v", c.Path, c.Old != nil, c.New != nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDiffMatchesBruteForce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ma := newModelTree()
		for n := rapid.IntRange(0, 40).Draw(t, "base"); n > 0; n-- {
			ma.step(t)
		}
		// b starts as the same content, built independently, then drifts.
		mb := &modelTree{t: ma.rebuild(t), m: refModel{}, clock: ma.clock}
		for p, e := range ma.m {
			c := *e
			mb.m[p] = &c
		}
		// Directory times differ after a rebuild: copy none of them, Diff ignores times.
		for n := rapid.IntRange(0, 6).Draw(t, "drift"); n > 0; n-- {
			mb.step(t)
		}
		want := bruteDiff(ma.m, mb.m)
		got := diffList(t, ma.t, mb.t)
		if !slices.Equal(got, want) {
			t.Fatalf("Diff:\n got %q\nwant %q", got, want)
		}
		if w := walkDiff(ma.t, mb.t); !slices.Equal(got, w) {
			t.Fatalf("Diff vs two Walks:\n got %q\nwant %q", got, w)
		}
		if got := diffList(t, ma.t, ma.t); len(got) != 0 {
			t.Fatalf("Diff of a tree with itself: %q", got)
		}
		if got, want := len(diffList(t, mb.t, ma.t)), len(want); got != want {
			t.Fatalf("Diff(b, a) has %d changes, Diff(a, b) %d", got, want)
		}
	})
}

func TestDiffSkipsEqualHAMTNodes(t *testing.T) {
	const n = 20000
	a, b := New(), New()
	for _, tr := range []*Tree{a, b} {
		must(t, tr.MkdirAll("blobs", 1))
		for i := 0; i < n; i++ {
			must(t, tr.Put("blobs/"+bigName(i), Entry{Kind: KindFile, Digest: SumBytes([]byte(bigName(i)))}))
		}
	}
	must(t, b.Update("blobs/"+bigName(77), func(e *Entry) { e.Digest = SumBytes(nil) }))
	must(t, b.Put("blobs/"+bigName(n), Entry{Kind: KindFile}))
	d := &differ{}
	var got []string
	d.fn = func(c Change) error { got = append(got, c.Path); return nil }
	a.Root()
	b.Root()
	must(t, d.dir(a.root, b.root, ""))
	want := []string{"blobs", "blobs/" + bigName(77), "blobs/" + bigName(n)}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("changes %q, want %q", got, want)
	}
	// Two HAMT leaves of at most 32 entries on each side, give or take a split.
	if d.visited > 4*bucketSize+2 {
		t.Fatalf("Diff compared %d entries one by one; it should skip equal HAMT nodes", d.visited)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
