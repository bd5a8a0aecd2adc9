package regtest

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The pure parts of the harness, tested without any tool installed.

func TestParseGarbageCollect(t *testing.T) {
	const a = "sha256:" + "aa" + "00000000000000000000000000000000000000000000000000000000000000"
	const b = "sha256:" + "bb" + "00000000000000000000000000000000000000000000000000000000000000"
	out := strings.Join([]string{
		"trowfs/gc",
		"trowfs/gc: marking manifest sha256:" + strings.Repeat("1", 64) + " ",
		"trowfs/gc: marking blob sha256:" + strings.Repeat("2", 64),
		"",
		"2 blobs marked, 2 blobs and 0 manifests eligible for deletion",
		"blob eligible for deletion: " + b,
		"blob eligible for deletion: " + a,
		"trowfs/gc: layer link eligible for deletion: " + a,
	}, "\n")
	got, err := ParseGarbageCollect(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{a, b}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v (sorted, layer links not counted)", got, want)
	}

	if _, err := ParseGarbageCollect(strings.Replace(out, "2 blobs and", "3 blobs and", 1)); err == nil {
		t.Error("a list shorter than the summary's count must be an error")
	}
	if _, err := ParseGarbageCollect("trowfs/gc\n"); err == nil {
		t.Error("output without a summary line must be an error")
	}
	none, err := ParseGarbageCollect("\n0 blobs marked, 0 blobs and 0 manifests eligible for deletion\n")
	if err != nil || len(none) != 0 {
		t.Errorf("empty registry: %v, %v", none, err)
	}
}

const junitSample = `<testsuites tests="6" failures="1">
  <testsuite name="OCI Conformance Test" tests="6" failures="1" errors="0">
    <testcase name="OCI Conformance Test/ping" status="passed"></testcase>
    <testcase name="OCI Conformance Test/blobs/get" status="passed"></testcase>
    <testcase name="OCI Conformance Test/blobs/post-only" status="skipped"></testcase>
    <testcase name="OCI Conformance Test/manifests/put" status="failure"></testcase>
  </testsuite>
</testsuites>`

func TestParseJunit(t *testing.T) {
	var r Result
	if err := r.parseJunit([]byte(junitSample)); err != nil {
		t.Fatal(err)
	}
	if r.Passed != 2 || r.Skipped != 1 || r.Failed != 1 || r.Errors != 0 || len(r.Cases) != 4 {
		t.Fatalf("counts: %s", r)
	}
	if f := r.Failures(); !slices.Equal(f, []string{"OCI Conformance Test/manifests/put"}) {
		t.Errorf("failures %v", f)
	}

	other := Result{Cases: slices.Clone(r.Cases)}
	if d := r.Diff(other); len(d) != 0 {
		t.Errorf("a result differs from its copy: %v", d)
	}
	other.Cases[3].Status = CasePassed
	other.Cases = other.Cases[1:]
	want := []string{
		"OCI Conformance Test/manifests/put: failure -> passed",
		"OCI Conformance Test/ping: passed -> (absent)",
	}
	if d := r.Diff(other); !slices.Equal(d, want) {
		t.Errorf("diff %q, want %q", d, want)
	}

	var bad Result
	if err := bad.parseJunit([]byte(`<testsuites><testsuite failures="1"></testsuite></testsuites>`)); err == nil {
		t.Error("a junit.xml without cases must be an error")
	}
	inconsistent := strings.Replace(junitSample, `status="failure"`, `status="passed"`, 1)
	if err := bad.parseJunit([]byte(inconsistent)); err == nil {
		t.Error("suite failures without a failed case must be an error")
	}
	if err := (&Result{}).parseJunit([]byte(strings.Replace(junitSample, `"skipped"`, `"odd"`, 1))); err == nil {
		t.Error("an unknown status must be an error")
	}
}

func TestBuildImage(t *testing.T) {
	opt := ImageOptions{Layers: 3, LayerSize: 1000, Concurrency: 1}
	a0, blobsA0, err := buildImage("r", 0, 7, opt)
	if err != nil {
		t.Fatal(err)
	}
	again, _, _ := buildImage("r", 0, 7, opt)
	if !sameImage(a0, again) {
		t.Fatalf("same seed, different image:\n%+v\n%+v", a0, again)
	}
	a1, _, _ := buildImage("r", 1, 7, opt)
	if a1.Layers[0] != a0.Layers[0] {
		t.Error("layer 0 must be shared by the images of a seed")
	}
	if a1.Layers[1] == a0.Layers[1] || a1.Digest == a0.Digest || a1.Config == a0.Config {
		t.Error("the other layers, the config and the manifest must be unique to the image")
	}
	b0, _, _ := buildImage("r", 0, 8, opt)
	if b0.Layers[0] == a0.Layers[0] {
		t.Error("another seed must give other content")
	}

	// Blobs are in upload order (layers, config, manifest) and match their digests and the Image.
	if len(blobsA0) != 5 {
		t.Fatalf("%d blobs, want 3 layers + config + manifest", len(blobsA0))
	}
	var size int64
	for _, b := range blobsA0 {
		if newBlob(b.data).digest != b.digest {
			t.Errorf("blob %s does not match its content", b.digest)
		}
		size += int64(len(b.data))
	}
	if size != a0.Bytes {
		t.Errorf("Bytes %d, blobs hold %d", a0.Bytes, size)
	}
	if got := []string{blobsA0[4].digest, blobsA0[3].digest, blobsA0[0].digest}; !slices.Equal(got, []string{a0.Digest, a0.Config, a0.Layers[0]}) {
		t.Errorf("blob order %v", got)
	}
	var m struct {
		MediaType string
		Config    struct{ Digest string }
		Layers    []struct {
			Digest string
			Size   int
		}
	}
	if err := json.Unmarshal(blobsA0[4].data, &m); err != nil {
		t.Fatal(err)
	}
	if m.MediaType != MediaTypeManifest || m.Config.Digest != a0.Config || len(m.Layers) != 3 || m.Layers[2].Digest != a0.Layers[2] {
		t.Errorf("manifest %s", blobsA0[4].data)
	}

	// A layer is a valid tar archive holding LayerSize bytes.
	tr := tar.NewReader(bytes.NewReader(blobsA0[1].data))
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, tr)
	if err != nil || n != 1000 || hdr.Size != 1000 {
		t.Errorf("layer file: %d bytes (%v), header %d", n, err, hdr.Size)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("one file per layer, then EOF: %v", err)
	}
}

func sameImage(a, b Image) bool {
	return a.Digest == b.Digest && a.Config == b.Config && a.Bytes == b.Bytes && slices.Equal(a.Layers, b.Layers)
}

func TestUnreferenced(t *testing.T) {
	gone := Image{Digest: "m1", Config: "c1", Layers: []string{"base", "l1"}}
	kept := []Image{{Digest: "m2", Config: "c2", Layers: []string{"base", "l2"}}}
	if got := Unreferenced([]Image{gone}, kept); !slices.Equal(got, []string{"c1", "l1", "m1"}) {
		t.Errorf("got %v", got)
	}
	if got := Unreferenced([]Image{gone, gone}, nil); !slices.Equal(got, []string{"base", "c1", "l1", "m1"}) {
		t.Errorf("duplicates: %v", got)
	}
}

func TestForEach(t *testing.T) {
	sum, err := forEach(10, 3, func(i int) (int64, error) { return int64(i), nil })
	if sum != 45 || err != nil {
		t.Errorf("sum %d, err %v", sum, err)
	}
	boom := errors.New("boom")
	sum, err = forEach(4, 2, func(i int) (int64, error) {
		if i%2 == 1 {
			return 1, boom
		}
		return 1, nil
	})
	if sum != 4 || !errors.Is(err, boom) {
		t.Errorf("sum %d, err %v", sum, err)
	}
	if sum, err := forEach(0, 2, func(int) (int64, error) { return 1, nil }); sum != 0 || err != nil {
		t.Errorf("no work: %d, %v", sum, err)
	}
}

func TestFindTools(t *testing.T) {
	dir := t.TempDir()
	if _, err := findTools(dir); !errors.Is(err, ErrToolMissing) {
		t.Fatalf("empty tools dir: %v", err)
	}
	pinned, err := pinnedVersions()
	if err != nil {
		t.Fatal(err)
	}
	var stamp strings.Builder
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range pinned {
		stamp.WriteString(name + " " + v + "\n")
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "versions"), []byte(stamp.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := findTools(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Registry != filepath.Join(bin, "registry") || p.Versions["olareg"] != pinned["olareg"] {
		t.Errorf("paths %+v", p)
	}
	stale := strings.Replace(stamp.String(), "registry "+pinned["registry"], "registry v0.0.1", 1)
	if err := os.WriteFile(filepath.Join(dir, "versions"), []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := findTools(dir); !errors.Is(err, ErrToolMissing) {
		t.Errorf("a tool at another version than pinned must count as missing: %v", err)
	}
}

func TestDeclaresModule(t *testing.T) {
	for in, want := range map[string]bool{
		"module github.com/trowfs/trowfs\n\ngo 1.26\n": true,
		"// x\nmodule \"github.com/trowfs/trowfs\"\n":  true,
		"module github.com/trowfs/trowfs-tools\n":      false,
		"module trowfs.invalid/wrapper\n":              false,
		"go 1.26\n":                                    false,
	} {
		if got := declaresModule([]byte(in)); got != want {
			t.Errorf("declaresModule(%q) = %v", in, got)
		}
	}
}

func TestParseStateAndVerify(t *testing.T) {
	s, err := ParseState([]byte(`{"digest":"sha256:00","status":"verified","registry":{"layout":"distribution",
		"dangling":[{"digest":"sha256:b","path":"x"},{"digest":"sha256:a","path":"y"},{"digest":"sha256:b","path":"z","repo":"r2"}],
		"dangling_count":3}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Registry.DanglingDigests(); !slices.Equal(got, []string{"sha256:a", "sha256:b"}) {
		t.Errorf("dangling digests %v", got)
	}
	if _, err := ParseState([]byte(`{"status":"verified"}`)); err == nil {
		t.Error("a .state without a digest must be an error")
	}
	if got := (*RegistryState)(nil).DanglingDigests(); got != nil {
		t.Errorf("nil report: %v", got)
	}
	v, err := ParseVerify([]byte(`{"root_digest":"sha256:1","snapshot_root_digest":"sha256:1","snapshot":"loaded","exit_code":0}`))
	if err != nil || v.RootDigest != v.SnapshotRootDigest || v.Snapshot != "loaded" {
		t.Errorf("verify: %+v, %v", v, err)
	}
	if _, err := ParseVerify([]byte(`not json`)); err == nil {
		t.Error("bad JSON must be an error")
	}
}
