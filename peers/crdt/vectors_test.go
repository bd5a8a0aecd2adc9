package crdt

import (
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The test vectors live in docs/peers.md; this test reads them from there, so the document and
// the code cannot drift apart. TROWFS_PRINT_VECTORS=1 prints the computed block.
const peersDoc = "../../docs/peers.md"

func vectorEntries() []Entry {
	return []Entry{
		{Key: Key{"lib/app", Manifest, "sha256:01"}, Stamp: Stamp{Wall: 1700000000000, Logical: 0, Node: "a"}},
		{Key: Key{"lib/app", Tag, "latest"}, Target: "sha256:01", Stamp: Stamp{Wall: 1700000000000, Logical: 1, Node: "a"}},
		{Key: Key{"lib/app", Manifest, "sha256:02"}, Deleted: true, Stamp: Stamp{Wall: 1700000000001, Logical: 0, Node: "b"}},
	}
}

func computedVectors(t *testing.T) map[string]string {
	es := vectorEntries()
	got := map[string]string{
		"key-manifest":     hex.EncodeToString(EncodeKey(es[0].Key)),
		"keyhash-manifest": KeyHash(es[0].Key).String(),
		"entry-manifest":   hex.EncodeToString(EncodeEntry(es[0])),
		"entry-tag":        hex.EncodeToString(EncodeEntry(es[1])),
		"entry-tombstone":  hex.EncodeToString(EncodeEntry(es[2])),
		"entryhash-tag":    EntryHash(es[1]).String(),
	}
	s := New()
	for _, e := range es {
		s.Merge(e)
	}
	got["root-3"] = s.Root().String()
	got["summaries-root-3"] = hex.EncodeToString(EncodeSummaries(s.Summaries([]Path{""})))
	big := New()
	for i := range 100 {
		big.Merge(Entry{Key: Key{"r", Manifest, fmt.Sprintf("sha256:%03d", i)}, Stamp: Stamp{Wall: int64(i + 1), Node: "n"}})
	}
	got["root-100"] = big.Root().String()
	got["paths-0-1f"] = hex.EncodeToString(EncodePaths([]Path{"0", "1f"}))
	return got
}

func TestDocVectors(t *testing.T) {
	got := computedVectors(t)
	if os.Getenv("TROWFS_PRINT_VECTORS") != "" {
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range got {
				if !yield(k) {
					return
				}
			}
		}) {
			fmt.Printf("%-18s %s\n", k, got[k])
		}
	}
	doc, err := os.ReadFile(peersDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```peers-vectors\n")
	body, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("%s: no ```peers-vectors block", peersDoc)
	}
	line := regexp.MustCompile(`^(\S+)\s+([0-9a-f]+)$`)
	want := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("bad vector line %q", l)
		}
		want[m[1]] = m[2]
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("vector %s: got %s, the document says %s", k, got[k], w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("vector %s missing from %s", k, peersDoc)
		}
	}
	// The documented encodings decode back to the entries.
	for i, name := range []string{"entry-manifest", "entry-tag", "entry-tombstone"} {
		b, _ := hex.DecodeString(want[name])
		if e, err := DecodeEntry(b); err != nil || e != vectorEntries()[i] {
			t.Errorf("%s decodes to %v, %v", name, e, err)
		}
	}
}
