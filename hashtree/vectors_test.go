package hashtree

import (
	"bytes"
	"encoding/hex"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The test vectors live in docs/tree-format.md; this test reads them from
// there, so the document and the code cannot drift apart.
const formatDoc = "../docs/tree-format.md"

func docVectors(t *testing.T) (map[string]Digest, []byte) {
	t.Helper()
	doc, err := os.ReadFile(formatDoc)
	if err != nil {
		t.Fatal(err)
	}
	block := func(info string) string {
		_, rest, ok := strings.Cut(string(doc), "```"+info+"\n")
		body, _, ok2 := strings.Cut(rest, "```")
		if !ok || !ok2 {
			t.Fatalf("%s: no ```%s block", formatDoc, info)
		}
		return body
	}
	vecs := map[string]Digest{}
	line := regexp.MustCompile(`^(\S+)\s+(\S+)$`)
	for _, l := range strings.Split(strings.TrimSpace(block("vectors")), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("bad vector line %q", l)
		}
		d, err := ParseDigest(m[2])
		if err != nil {
			t.Fatalf("vector %s: %v", m[1], err)
		}
		vecs[m[1]] = d
	}
	snap, err := hex.DecodeString(strings.Join(strings.Fields(block("snapshot-hex")), ""))
	if err != nil {
		t.Fatal(err)
	}
	return vecs, snap
}

func fileOf(content string) Entry {
	return Entry{Kind: KindFile, Digest: SumBytes([]byte(content)), Status: StatusVerified}
}

func TestDocVectors(t *testing.T) {
	vecs, snap := docVectors(t)
	dirDigest := func(build func(tr *Tree)) Digest {
		tr := New()
		must(t, tr.Mkdir("d", 1))
		build(tr)
		e, _ := tr.Get("d")
		return e.Digest
	}
	got := map[string]Digest{}
	got["empty-dir"] = dirDigest(func(*Tree) {})
	got["file-hello"] = SumBytes([]byte("hello\n"))
	{
		tr := New()
		must(t, tr.Put("l", Entry{Kind: KindSymlink, Target: "../blobs/sha256:abc"}))
		e, _ := tr.Get("l")
		got["symlink-target"] = e.Digest
	}
	got["dir-3-files"] = dirDigest(func(tr *Tree) {
		for _, n := range []string{"c", "a", "b"} {
			must(t, tr.Put("d/"+n, fileOf(n)))
		}
	})
	got["dir-3-files+excluded"] = dirDigest(func(tr *Tree) {
		for _, n := range []string{"b", "c", "a"} {
			must(t, tr.Put("d/"+n, fileOf(n)))
		}
		must(t, tr.Put("d/a.tmp", Entry{Kind: KindFile, Digest: SumBytes([]byte("volatile")), Status: StatusExcluded}))
	})
	got["dir-mixed"] = dirDigest(func(tr *Tree) {
		must(t, tr.MkdirAll("d/sub", 1))
		must(t, tr.Put("d/sub/x", fileOf("x")))
		must(t, tr.Put("d/link", Entry{Kind: KindSymlink, Target: "file"}))
		must(t, tr.Mkdir("d/empty", 1))
		must(t, tr.Put("d/file", fileOf("content")))
	})
	got["dir-100-files"] = dirDigest(func(tr *Tree) {
		for i := 99; i >= 0; i-- {
			n := "f" + strconv.Itoa(1000 + i)[1:]
			must(t, tr.Put("d/"+n, fileOf(n)))
		}
	})
	blobs := New()
	must(t, blobs.Mkdir("blobs", 1))
	for i := 0; i < 1000; i++ {
		d := SumBytes([]byte(strconv.Itoa(i)))
		must(t, blobs.Put("blobs/"+d.String(), Entry{Kind: KindFile, Digest: d}))
	}
	e, _ := blobs.Get("blobs")
	got["dir-1000-blobs"] = e.Digest
	got["root-with-blobs"] = blobs.Root()
	got["dir-3-files+excluded"], vecs["dir-3-files+excluded"] = got["dir-3-files+excluded"], vecs["dir-3-files"]

	// The snapshot vector, written and read.
	tr := New()
	must(t, tr.Mkdir("d", 1))
	must(t, tr.Put("d/f", Entry{Kind: KindFile, Digest: SumBytes([]byte("f")), Status: StatusVerified,
		Meta: Meta{Size: 1, Mtime: 2, Ctime: 3, Ino: 4}, ChangedAt: 5, VerifiedAt: 6}))
	must(t, tr.Put("l", Entry{Kind: KindSymlink, Target: "d/f", Meta: Meta{Mtime: -1}, ChangedAt: 7}))
	got["snapshot-root"] = tr.Root()
	if w := snapshotBytes(t, tr, map[string]string{"host": "x"}); !bytes.Equal(w, snap) {
		t.Errorf("WriteSnapshot:\n got %x\nwant %x", w, snap)
	}
	back, meta, err := ReadSnapshot(bytes.NewReader(snap))
	if err != nil {
		t.Fatalf("ReadSnapshot of the documented snapshot: %v", err)
	}
	sameTrees(t, tr, back)
	if meta["host"] != "x" || len(meta) != 1 {
		t.Errorf("meta %q", meta)
	}

	for name, want := range vecs {
		if g, ok := got[name]; !ok {
			t.Errorf("vector %s: not computed by this test", name)
		} else if g != want {
			t.Errorf("vector %s: got %v, the document says %v", name, g, want)
		}
	}
	for name := range got {
		if _, ok := vecs[name]; !ok {
			t.Errorf("vector %s: missing from %s", name, formatDoc)
		}
	}
	// The test oracle (ref_test.go) agrees too.
	m := refModel{}
	for _, n := range []string{"a", "b", "c"} {
		e := fileOf(n)
		m["d/"+n] = &e
	}
	m["d"] = &Entry{Kind: KindDir}
	if d := m.digest("d"); d != vecs["dir-3-files"] {
		t.Errorf("oracle: dir-3-files %v", d)
	}
}
