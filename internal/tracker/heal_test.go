package tracker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/hashtree"
)

// blobsRule names blobs/<hex> by their sha256, like a blob store.
func blobsRule(rel string) (digest.Digest, bool) {
	hex, ok := strings.CutPrefix(rel, "blobs/")
	if !ok {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, hex)
	return d, d.Validate() == nil
}

func findingsOf(tr *Tracker, rel string) map[string]Finding {
	out := map[string]Finding{}
	for _, f := range tr.Findings(rel) {
		out[f.Kind] = f
	}
	return out
}

func healSetup(t *testing.T) (*Tracker, string, string, digest.Digest) {
	t.Helper()
	data := t.TempDir()
	good := "the layer's real content"
	want := digest.FromString(good)
	rel := "blobs/" + want.Encoded()
	write(t, filepath.Join(data, rel), "the layer's real contenT") // same size, one byte off
	tr, err := New(Options{Root: data, BlobDigest: blobsRule})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	if err := tr.Lock(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	if !tr.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	if _, ok := findingsOf(tr, rel)[FindingMismatch]; !ok {
		t.Fatalf("no mismatch finding for the damaged blob: %+v", tr.Findings(""))
	}
	return tr, data, rel, want
}

// installCopy replaces rel behind the tracker, as Heal does: a new file renamed over.
func installCopy(t *testing.T, data, rel, content string) {
	t.Helper()
	tmp := filepath.Join(data, "copy.tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(data, rel)); err != nil {
		t.Fatal(err)
	}
}

func TestHealedTurnsMismatchIntoRepaired(t *testing.T) {
	tr, data, rel, want := healSetup(t)
	bad := findingsOf(tr, rel)[FindingMismatch].Actual
	installCopy(t, data, rel, "the layer's real content")
	if err := tr.Healed(rel, "node-a", want); err != nil {
		t.Fatal(err)
	}
	if !tr.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	fs := findingsOf(tr, rel)
	if _, ok := fs[FindingMismatch]; ok {
		t.Fatalf("mismatch still reported after the heal: %+v", fs)
	}
	f, ok := fs[FindingRepaired]
	if !ok || f.RepairedFrom != "node-a" || f.Expected != want.String() || f.Actual != bad {
		t.Fatalf("repaired finding = %+v (ok %v), want from node-a, expected %s, actual %s", f, ok, want, bad)
	}
	tr.WithTree(func(tree *hashtree.Tree) {
		e, _ := tree.Get(rel)
		if e.Status != hashtree.StatusVerified || e.Digest.String() != want.String() {
			t.Errorf("tree entry after the heal: status %v digest %s", e.Status, e.Digest)
		}
	})
	// The tree equals a rescan of DATA (the rename behind the mount was taken in).
	ref, err := Rescan(context.Background(), data, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr.WithTree(func(tree *hashtree.Tree) {
		_ = hashtree.Diff(ref, tree, func(c hashtree.Change) error {
			if c.Path != "copy.tmp" {
				t.Errorf("tree differs from a rescan at %s", c.Path)
			}
			return nil
		})
	})
}

func TestHealedThatDoesNotHoldStaysMismatch(t *testing.T) {
	tr, data, rel, want := healSetup(t)
	installCopy(t, data, rel, "still not the right bytes") // a copy damaged after its verification
	if err := tr.Healed(rel, "node-a", want); err != nil {
		t.Fatal(err)
	}
	if !tr.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	fs := findingsOf(tr, rel)
	if _, ok := fs[FindingRepaired]; ok {
		t.Fatalf("a copy that does not match its name was called repaired: %+v", fs)
	}
	if f, ok := fs[FindingMismatch]; !ok || f.Actual != digest.FromString("still not the right bytes").String() {
		t.Fatalf("mismatch finding = %+v (ok %v)", f, ok)
	}
}

func TestHealedRefusesWhatIsNotAFile(t *testing.T) {
	tr, data, rel, want := healSetup(t)
	if err := os.Remove(filepath.Join(data, rel)); err != nil {
		t.Fatal(err)
	}
	if err := tr.Healed(rel, "node-a", want); err == nil {
		t.Fatal("Healed of a missing file succeeded")
	}
}
