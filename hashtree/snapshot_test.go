package hashtree

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func snapshotBytes(t interface{ Fatal(...any) }, tr *Tree, meta map[string]string) []byte {
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, tr, meta); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sameTrees fails unless a and b hold the same entries with the same
// fields, and the same root digest, summary and root ChangedAt.
func sameTrees(t interface{ Fatalf(string, ...any) }, a, b *Tree) {
	type rec struct {
		p string
		e Entry
	}
	var ra, rb []rec
	a.Walk(func(p string, e Entry) error { ra = append(ra, rec{p, e}); return nil })
	b.Walk(func(p string, e Entry) error { rb = append(rb, rec{p, e}); return nil })
	if len(ra) != len(rb) {
		t.Fatalf("entries: %d vs %d", len(ra), len(rb))
	}
	for i := range ra {
		if ra[i] != rb[i] {
			t.Fatalf("entry %d: %+v vs %+v", i, ra[i], rb[i])
		}
	}
	sa, _ := a.Summary("")
	sb, _ := b.Summary("")
	if a.Root() != b.Root() || sa != sb || a.Len() != b.Len() {
		t.Fatalf("root/summary/len differ: %v %+v %d vs %v %+v %d", a.Root(), sa, a.Len(), b.Root(), sb, b.Len())
	}
	ea, _ := a.Get("")
	eb, _ := b.Get("")
	if ea != eb {
		t.Fatalf("root entry %+v vs %+v", ea, eb)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		mt := newModelTree()
		for n := rapid.IntRange(0, 50).Draw(t, "steps"); n > 0; n-- {
			mt.step(t)
		}
		meta := rapid.MapOf(rapid.String(), rapid.String()).Draw(t, "meta")
		data := snapshotBytes(t, mt.t, meta)
		got, gotMeta, err := ReadSnapshot(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		sameTrees(t, mt.t, got)
		checkInvariants(t, got)
		if len(meta) == 0 && len(gotMeta) == 0 {
			gotMeta = meta
		}
		if !maps.Equal(meta, gotMeta) {
			t.Fatalf("meta %q, want %q", gotMeta, meta)
		}
		// The loaded tree keeps working: one more operation on both sides.
		mt.t = got
		mt.step(t)
		mt.check(t)
	})
}

// smallTree has every kind of entry, a big directory and an excluded file.
func smallTree(t testing.TB) *Tree {
	tr := New()
	must(t, tr.MkdirAll("blobs", 5))
	must(t, tr.MkdirAll("uploads/x", 6))
	for i := 0; i < 40; i++ {
		must(t, tr.Put("blobs/"+bigName(i), Entry{Kind: KindFile, Digest: SumBytes([]byte{byte(i)}), Status: StatusVerified,
			Meta: Meta{Size: int64(i), Mtime: -int64(i), Ctime: 1 << 40, Ino: uint64(i)}, ChangedAt: 9, VerifiedAt: 10}))
	}
	must(t, tr.Put("uploads/tmp", Entry{Kind: KindFile, Status: StatusExcluded, Meta: Meta{Size: 3}}))
	must(t, tr.Put("link", Entry{Kind: KindSymlink, Target: "blobs"}))
	return tr
}

func TestSnapshotDamageIsDetected(t *testing.T) {
	data := snapshotBytes(t, smallTree(t), map[string]string{"data_dir": "/var/lib/trow"})
	if _, _, err := ReadSnapshot(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	versionAt := len(snapMagic)
	for i := 0; i < len(data); i++ {
		if _, _, err := ReadSnapshot(bytes.NewReader(data[:i])); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("truncated to %d bytes: %v", i, err)
		}
		for _, bit := range []byte{1, 0x80} {
			d := bytes.Clone(data)
			d[i] ^= bit
			_, _, err := ReadSnapshot(bytes.NewReader(d))
			if !errors.Is(err, ErrCorruptSnapshot) && !(i == versionAt && errors.Is(err, ErrSnapshotVersion)) {
				t.Fatalf("bit %#x flipped at byte %d: %v", bit, i, err)
			}
		}
	}
	if _, _, err := ReadSnapshot(bytes.NewReader(append(bytes.Clone(data), 0))); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestSnapshotNewerVersion(t *testing.T) {
	data := snapshotBytes(t, smallTree(t), nil)
	data[len(snapMagic)] = snapVersion + 1
	_, _, err := ReadSnapshot(bytes.NewReader(data))
	if !errors.Is(err, ErrSnapshotVersion) || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("newer version: %v", err)
	}
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestSnapshotReadError(t *testing.T) {
	boom := errors.New("boom")
	if _, _, err := ReadSnapshot(failingReader{boom}); !errors.Is(err, boom) {
		t.Fatalf("read error: %v", err)
	}
}

// fuzzSeeds are snapshots generated in code: no binary fixtures.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	seeds = append(seeds, snapshotBytes(t, New(), nil))
	seeds = append(seeds, snapshotBytes(t, smallTree(t), map[string]string{"k": "v", "": ""}))
	tr := New()
	must(t, tr.MkdirAll("a/b/c", 1))
	must(t, tr.Put("a/b/c/f", Entry{Kind: KindFile, Digest: SumBytes([]byte("x"))}))
	must(t, tr.Put("a/z", Entry{Kind: KindSymlink, Target: "b/c/f"}))
	seeds = append(seeds, snapshotBytes(t, tr, map[string]string{"snapshot": "1"}))
	return seeds
}

func FuzzReadSnapshot(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, _, err := ReadSnapshot(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) && !errors.Is(err, ErrSnapshotVersion) {
				t.Fatalf("error wraps neither sentinel: %v", err)
			}
			return
		}
		// Whatever loads must be a consistent tree that writes back identically.
		checkInvariants(t, tr)
		again := snapshotBytes(t, tr, nil)
		tr2, _, err := ReadSnapshot(bytes.NewReader(again))
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		sameTrees(t, tr, tr2)
	})
}

func ExampleWriteSnapshot() {
	tr := New()
	_ = tr.MkdirAll("blobs", 0)
	_ = tr.Put("blobs/"+SumBytes([]byte("hello")).String(), Entry{Kind: KindFile, Digest: SumBytes([]byte("hello"))})
	var buf bytes.Buffer
	_ = WriteSnapshot(&buf, tr, map[string]string{"data_dir": "/var/lib/trow"})
	back, meta, err := ReadSnapshot(&buf)
	fmt.Println(err, back.Root() == tr.Root(), back.Len(), meta["data_dir"])
	// Output: <nil> true 2 /var/lib/trow
}
