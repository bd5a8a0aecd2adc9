package hashtree

import (
	"encoding/hex"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"unsafe"
)

func TestInvalidPathsRejected(t *testing.T) {
	tr := New()
	must(t, tr.MkdirAll("a/b", 1))
	must(t, tr.Put("a/f", fileOf("f")))
	for _, p := range []string{"/x", "./x", "a/../b", "a//b", "a/", "/", "a/./b", ".", "..", "a/..", "a\x00b", "x/."} {
		file := Entry{Kind: KindFile}
		for op, err := range map[string]error{
			"put":      tr.Put(p, file),
			"update":   tr.Update(p, func(*Entry) {}),
			"mkdir":    tr.Mkdir(p, 1),
			"mkdirall": tr.MkdirAll(p, 1),
			"remove":   tr.Remove(p, 1),
			"rename1":  tr.Rename(p, "a/g", 1),
			"rename2":  tr.Rename("a/f", p, 1),
			"exch1":    tr.Exchange(p, "a/f", 1),
			"exch2":    tr.Exchange("a/f", p, 1),
			"list":     tr.List(p, "", func(string, Entry) bool { return true }),
		} {
			if !errors.Is(err, ErrInvalidPath) {
				t.Errorf("%s %q: %v, want ErrInvalidPath", op, p, err)
			}
		}
		if _, ok := tr.Get(p); ok {
			t.Errorf("Get(%q) found something", p)
		}
		if _, ok := tr.Summary(p); ok {
			t.Errorf("Summary(%q) found something", p)
		}
	}
	// The root cannot be replaced, removed or moved.
	for _, err := range []error{tr.Put("", Entry{Kind: KindFile}), tr.Remove("", 1), tr.Rename("", "z", 1), tr.Rename("a", "", 1), tr.Update("", func(*Entry) {})} {
		if !errors.Is(err, ErrInvalidPath) {
			t.Errorf("root: %v", err)
		}
	}
	// Odd but valid names.
	for _, p := range []string{"a/sha256:00ff", "a/...", "a/.hidden", "a/-", "a/\xff\xfe", "a/ spaced "} {
		must(t, tr.Put(p, fileOf(p)))
		if _, ok := tr.Get(p); !ok {
			t.Errorf("Get(%q) after Put", p)
		}
	}
	checkInvariants(t, tr)
}

func TestErrors(t *testing.T) {
	tr := New()
	must(t, tr.MkdirAll("d/sub", 1))
	must(t, tr.Put("d/f", fileOf("f")))
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"put under missing dir", tr.Put("x/f", fileOf("f")), ErrNotFound},
		{"put under a file", tr.Put("d/f/g", fileOf("g")), ErrNotDir},
		{"put over a dir", tr.Put("d/sub", fileOf("g")), ErrIsDir},
		{"put of a dir", tr.Put("d/g", Entry{Kind: KindDir}), ErrInvalidEntry},
		{"put of kind 0", tr.Put("d/g", Entry{}), ErrInvalidEntry},
		{"put with bad status", tr.Put("d/g", Entry{Kind: KindFile, Status: NumStatus}), ErrInvalidEntry},
		{"mkdir over a file", tr.Mkdir("d/f", 1), ErrExists},
		{"mkdirall through a file", tr.MkdirAll("d/f/x", 1), ErrNotDir},
		{"mkdir under missing", tr.Mkdir("x/y", 1), ErrNotFound},
		{"remove missing", tr.Remove("d/nope", 1), ErrNotFound},
		{"remove under missing", tr.Remove("x/nope", 1), ErrNotFound},
		{"update missing", tr.Update("d/nope", func(*Entry) {}), ErrNotFound},
		{"update dir", tr.Update("d/sub", func(*Entry) {}), ErrIsDir},
		{"update kind", tr.Update("d/f", func(e *Entry) { e.Kind = KindSymlink }), ErrInvalidEntry},
		{"update status", tr.Update("d/f", func(e *Entry) { e.Status = 9 }), ErrInvalidEntry},
		{"rename into itself", tr.Rename("d", "d/sub/d", 1), ErrInvalidPath},
		{"rename over an ancestor", tr.Rename("d/sub", "d", 1), ErrInvalidPath},
		{"rename missing", tr.Rename("d/nope", "d/x", 1), ErrNotFound},
		{"rename to missing dir", tr.Rename("d/f", "x/f", 1), ErrNotFound},
		{"exchange missing", tr.Exchange("d/f", "d/nope", 1), ErrNotFound},
		{"exchange with ancestor", tr.Exchange("d", "d/f", 1), ErrInvalidPath},
		{"list a file", tr.List("d/f", "", nil), ErrNotDir},
		{"list missing", tr.List("x", "", nil), ErrNotFound},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
	var pe *PathError
	if err := tr.Remove("d/nope", 1); !errors.As(err, &pe) || pe.Path != "d/nope" || pe.Op != "remove" {
		t.Errorf("PathError: %#v", err)
	}
	// Failed calls changed nothing.
	if e, _ := tr.Get("d/f"); e.Kind != KindFile || e.Digest != SumBytes([]byte("f")) {
		t.Errorf("d/f changed: %+v", e)
	}
	must(t, tr.Mkdir("d/sub", 99)) // existing directory: no-op
	if e, _ := tr.Get("d/sub"); e.ChangedAt != 1 {
		t.Errorf("Mkdir of an existing directory changed it: %+v", e)
	}
	if tr.Len() != 3 {
		t.Errorf("Len = %d, want 3", tr.Len())
	}
	checkInvariants(t, tr)
}

func TestExcludedFilesDoNotChangeDigests(t *testing.T) {
	tr := New()
	must(t, tr.Mkdir("uploads", 1))
	empty := tr.Root()
	// Enough excluded files to split the directory's HAMT several times.
	for i := 0; i < 500; i++ {
		must(t, tr.Put("uploads/"+bigName(i), Entry{Kind: KindFile, Digest: SumBytes([]byte{byte(i)}), Status: StatusExcluded}))
	}
	if tr.Root() != empty {
		t.Fatal("excluded files changed the root digest")
	}
	must(t, tr.Put("uploads/real", fileOf("x")))
	want := New()
	must(t, want.Mkdir("uploads", 1))
	must(t, want.Put("uploads/real", fileOf("x")))
	if tr.Root() != want.Root() {
		t.Fatal("one contributing file among excluded ones")
	}
	// Flipping statuses in and out of excluded.
	must(t, tr.Update("uploads/"+bigName(7), func(e *Entry) { e.Status = StatusPending }))
	must(t, want.Put("uploads/"+bigName(7), Entry{Kind: KindFile, Digest: SumBytes([]byte{7})}))
	if tr.Root() != want.Root() {
		t.Fatal("file leaving excluded")
	}
	must(t, tr.Update("uploads/"+bigName(7), func(e *Entry) { e.Status = StatusExcluded }))
	must(t, want.Remove("uploads/"+bigName(7), 1))
	if tr.Root() != want.Root() {
		t.Fatal("file becoming excluded again")
	}
	s, _ := tr.Summary("uploads")
	if s.Files != 501 || s.ByStatus[StatusExcluded] != 500 || s.ByStatus[StatusVerified] != 1 {
		t.Fatalf("summary %+v", s)
	}
	checkInvariants(t, tr)
}

func TestSymlinkDigestAndStatus(t *testing.T) {
	tr := New()
	must(t, tr.Put("l", Entry{Kind: KindSymlink, Target: "a/b", Digest: SumBytes([]byte("junk")), Status: StatusMismatch}))
	e, _ := tr.Get("l")
	if e.Status != StatusVerified || e.Target != "a/b" || e.Digest != symlinkDigest("a/b") || e.Digest == SumBytes([]byte("a/b")) {
		t.Fatalf("symlink entry %+v", e)
	}
	must(t, tr.Update("l", func(e *Entry) { e.Target = "c" }))
	if e, _ := tr.Get("l"); e.Digest != symlinkDigest("c") {
		t.Fatal("Update did not recompute the symlink digest")
	}
	// A file put over the symlink drops the target.
	must(t, tr.Put("l", Entry{Kind: KindFile, Target: "ignored"}))
	if e, _ := tr.Get("l"); e.Target != "" || e.Kind != KindFile {
		t.Fatalf("file over symlink: %+v", e)
	}
}

func TestSummaryVerifiedAt(t *testing.T) {
	tr := New()
	must(t, tr.MkdirAll("a/b", 1))
	must(t, tr.Put("a/l", Entry{Kind: KindSymlink, Target: "x"}))
	for _, c := range []struct {
		put  map[string]int64
		want int64
	}{
		{nil, 0},                             // no files
		{map[string]int64{"a/f": 7}, 7},      // one file
		{map[string]int64{"a/b/g": 5}, 5},    // the minimum, from a subdirectory
		{map[string]int64{"a/b/h": 0}, 0},    // a never-verified file
		{map[string]int64{"a/b/h": 9}, 5},    // verified later
		{map[string]int64{"a/b/g": 0}, 0},    // and again
		{map[string]int64{"a/b/g": 11}, 7},   // min(7, 9, 11)
		{map[string]int64{"a/f": 100}, 9},    // min(100, 9, 11)
		{map[string]int64{"a/b/h": 100}, 11}, // min(100, 100, 11)
	} {
		for p, v := range c.put {
			must(t, tr.Put(p, Entry{Kind: KindFile, VerifiedAt: v}))
		}
		if s, _ := tr.Summary("a"); s.VerifiedAt != c.want {
			t.Fatalf("after %v: VerifiedAt %d, want %d", c.put, s.VerifiedAt, c.want)
		}
	}
	if s, _ := tr.Summary("a/l"); s.VerifiedAt != 0 || s.Symlinks != 1 {
		t.Fatalf("symlink summary %+v", s)
	}
}

func TestListPages(t *testing.T) {
	tr := New()
	must(t, tr.Mkdir("blobs", 1))
	var want []string
	for i := 0; i < 3000; i++ {
		n := blobName(i)
		want = append(want, n)
		must(t, tr.Put("blobs/"+n, Entry{Kind: KindFile}))
	}
	sort.Strings(want)
	var got []string
	after := ""
	for {
		n := 0
		must(t, tr.List("blobs", after, func(name string, _ Entry) bool {
			got = append(got, name)
			after = name
			n++
			return n < 250
		}))
		if n == 0 {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged List: %d names, want %d, in order %v", len(got), len(want), slices.IsSorted(got))
	}
	// A cursor that is not a child starts at the next name.
	var first string
	must(t, tr.List("blobs", "sha256:8", func(name string, _ Entry) bool { first = name; return false }))
	if i := sort.SearchStrings(want, "sha256:8"); first != want[i] {
		t.Fatalf("List after a non-child: %q, want %q", first, want[i])
	}
}

func TestWalkAndDiffStopOnError(t *testing.T) {
	tr := smallTree(t)
	stop := errors.New("stop")
	n := 0
	if err := tr.Walk(func(string, Entry) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Walk: %v after %d", err, n)
	}
	n = 0
	if err := Diff(New(), tr, func(Change) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Diff: %v after %d", err, n)
	}
}

func TestNamesAndStatusesText(t *testing.T) {
	for k, s := range map[Kind]string{KindFile: "file", KindDir: "dir", KindSymlink: "symlink"} {
		if k.String() != s {
			t.Errorf("%d: %q", k, k.String())
		}
	}
	for i := 0; i < NumStatus; i++ {
		s, err := ParseStatus(Status(i).String())
		if err != nil || s != Status(i) {
			t.Errorf("status %d: %v %v", i, s, err)
		}
	}
	if _, err := ParseStatus("Verified"); err == nil {
		t.Error("ParseStatus accepted Verified")
	}
	if Status(9).String() == "" || Kind(0).String() == "" {
		t.Error("unknown values need a printable form")
	}
}

func TestDigestText(t *testing.T) {
	d := SumBytes([]byte("hello\n"))
	if s := d.String(); s != "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" {
		t.Fatalf("String %q", s)
	}
	if back, err := ParseDigest(d.String()); err != nil || back != d {
		t.Fatalf("round trip: %v %v", back, err)
	}
	if (Digest{}).String() != "" || !(Digest{}).IsZero() || d.IsZero() {
		t.Fatal("zero digest")
	}
	if z, err := ParseDigest(""); err != nil || !z.IsZero() {
		t.Fatal(`ParseDigest("")`)
	}
	for _, bad := range []string{"sha256:" + strings.ToUpper(d.String()[7:]), d.String()[7:], "sha512:" + d.String()[7:], d.String()[:70], d.String() + "0", "sha256:" + strings.Repeat("g", 64)} {
		if _, err := ParseDigest(bad); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("ParseDigest(%q): %v", bad, err)
		}
	}
}

// A name stored as its digest is written out exactly as encoding/hex
// writes the digest, for every nibble value in every position.
func TestDigestNamesWrittenAsHex(t *testing.T) {
	for i := 0; i < 300; i++ {
		var d Digest
		for j := range d {
			d[j] = byte(i*7 + j*31 + j*j) // every byte value, in every position
		}
		if i == 0 {
			d = Digest{}
		}
		if got, want := string(appendHex([]byte("x"), &d)), "x"+hex.EncodeToString(d[:]); got != want {
			t.Fatalf("appendHex(%x) = %q", d, got)
		}
	}
}

func TestGetRootAndLen(t *testing.T) {
	tr := New()
	e, ok := tr.Get("")
	if !ok || e.Kind != KindDir || e.Digest != tr.Root() {
		t.Fatalf("root entry %+v", e)
	}
	must(t, tr.MkdirAll("a/b/c", 5))
	must(t, tr.Put("a/b/c/f", fileOf("f")))
	must(t, tr.Rename("a/b", "b", 6))
	if tr.Len() != 4 {
		t.Fatalf("Len %d", tr.Len())
	}
	if e, _ := tr.Get(""); e.ChangedAt != 6 {
		t.Fatalf("root ChangedAt %d", e.ChangedAt)
	}
	must(t, tr.Remove("b", 7))
	if tr.Len() != 1 {
		t.Fatalf("Len after removing a subtree: %d", tr.Len())
	}
}

func TestNibbleOfDeepKeys(t *testing.T) {
	hs := newHasher()
	for _, name := range []string{"a", bigName(3), strings.Repeat("x", 200)} {
		e := newNode(name, KindFile)
		k := hs.key(name)
		for d := 0; d < maxDepth; d++ {
			if got, want := hs.nibbleOf(e, keyPrefix(&k), d), nibble(&k, d); got != want {
				t.Fatalf("%q depth %d: %d, want %d", name, d, got, want)
			}
		}
	}
}

func TestNodeLayout(t *testing.T) {
	// The fields a refresh reads must share the first 128 bytes; the whole
	// node must stay within a 176-byte allocation.
	var n node
	if end := unsafe.Offsetof(n.nbuf) + inlineName; end > 128 || unsafe.Offsetof(n.digest) > 128-32 {
		t.Errorf("hot fields end at byte %d", end)
	}
	if size := unsafe.Sizeof(n); size > 176 {
		t.Errorf("node is %d bytes", size)
	}
}
