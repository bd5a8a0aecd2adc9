package crdt

import (
	"testing"
	"time"
)

func exchange(a, b *State) {
	for _, e := range a.All() {
		b.Merge(e)
	}
	for _, e := range b.All() {
		a.Merge(e)
	}
}

// TestConcurrentTagWritesConvergeAndMissedDeletesStayDeleted: two nodes push different manifests
// to one tag at the same moment; after they exchange, both hold the same winner, the loser's
// manifest is still there untagged and each counts a conflict. A tag deleted on one node while the
// other missed it stays deleted when they sync, in either direction, and a later re-push wins over
// the delete.
func TestConcurrentTagWritesConvergeAndMissedDeletesStayDeleted(t *testing.T) {
	ms := int64(1_700_000_000_000)
	wall := func() time.Time { return time.UnixMilli(ms) }
	a, b := New(), New()
	ca, cb := NewClock("a", wall), NewClock("b", wall)
	repo := func(m, tag string) View {
		return View{"lib/app": {Manifests: map[string]struct{}{m: {}}, Tags: map[string]string{tag: m}}}
	}
	a.Observe(repo("sha256:aa", "latest"), ca)
	b.Observe(repo("sha256:bb", "latest"), cb) // the same millisecond: "b" > "a" breaks the tie
	exchange(a, b)
	if a.Root() != b.Root() {
		t.Fatal("roots differ after the exchange")
	}
	for _, s := range []*State{a, b} {
		live := s.Live()["lib/app"]
		if live.Tags["latest"] != "sha256:bb" {
			t.Fatalf("winner %q, want sha256:bb (the greater stamp)", live.Tags["latest"])
		}
		if _, ok := live.Manifests["sha256:aa"]; !ok {
			t.Fatal("the losing manifest is gone")
		}
		if s.Conflicts() == 0 {
			t.Fatal("the concurrent write is not counted as a conflict")
		}
	}
	// Each applies the winner to its registry (observing that stamps nothing), then a retags.
	both := func(tags map[string]string) View {
		return View{"lib/app": {Manifests: map[string]struct{}{"sha256:aa": {}, "sha256:bb": {}}, Tags: tags}}
	}
	if es := a.Observe(both(map[string]string{"latest": "sha256:bb"}), ca); len(es) != 0 {
		t.Fatalf("observing the applied winner stamped %v", es)
	}
	b.Observe(both(map[string]string{"latest": "sha256:bb"}), cb)
	before := a.Conflicts()
	ms++
	a.Observe(View{"lib/app": {Manifests: map[string]struct{}{"sha256:aa": {}, "sha256:bb": {}}, Tags: map[string]string{"latest": "sha256:aa"}}}, ca)
	if a.Conflicts() != before {
		t.Fatal("a local retag counted as a conflict")
	}
	exchange(a, b)
	if b.Live()["lib/app"].Tags["latest"] != "sha256:aa" {
		t.Fatal("a later retag did not win")
	}

	// b deletes the tag; a misses it and keeps its (older) value. Then they sync.
	ms++
	b.Observe(View{"lib/app": {Manifests: map[string]struct{}{"sha256:aa": {}, "sha256:bb": {}}}}, cb)
	for _, first := range []bool{true, false} {
		x, y := a, b
		if !first {
			x, y = b, a
		}
		for _, e := range x.All() { // one direction at a time
			y.Merge(e)
		}
	}
	for _, s := range []*State{a, b} {
		if tg, ok := s.Live()["lib/app"].Tags["latest"]; ok {
			t.Fatalf("the deleted tag came back as %s", tg)
		}
	}
	ms++
	a.Observe(View{"lib/app": {Manifests: map[string]struct{}{"sha256:aa": {}, "sha256:bb": {}}, Tags: map[string]string{"latest": "sha256:bb"}}}, ca)
	exchange(a, b)
	if b.Live()["lib/app"].Tags["latest"] != "sha256:bb" {
		t.Fatal("a re-push after the delete did not win")
	}
}
