package oci

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/peers/crdt"
	"github.com/trowfs/trowfs/registry"
)

// TestToViewConvertsCatalog converts digests to strings and drops empty repositories.
func TestToViewConvertsCatalog(t *testing.T) {
	d1, d2 := digest.FromString("one"), digest.FromString("two")
	c := registry.Catalog{
		"org/app": {Manifests: map[digest.Digest]struct{}{d1: {}, d2: {}}, Tags: map[string]digest.Digest{"v1": d1}},
		"empty":   {Manifests: map[digest.Digest]struct{}{}, Tags: map[string]digest.Digest{}},
	}
	want := crdt.View{"org/app": {Manifests: map[string]struct{}{d1.String(): {}, d2.String(): {}}, Tags: map[string]string{"v1": d1.String()}}}
	if got := ToView(c); !reflect.DeepEqual(got, want) {
		t.Fatalf("ToView = %v", got)
	}
	// No model yet is an error, never an empty registry, which the node would observe as the
	// deletion of everything.
	if v, err := NewViewSourceFunc(func() *registry.Registry { return nil }).View(); err == nil || v != nil {
		t.Fatalf("nil model: %v, %v (want an error)", v, err)
	}
}

type dbOnlySource struct{ db string }

func (s dbOnlySource) ReadFile(rel string) ([]byte, error) { return nil, os.ErrNotExist }
func (s dbOnlySource) DBPath() string                      { return s.db }

// TestUnreadableTrowDBIsNotAnEmptyRegistry: a trow-sqlite model whose trow.db could not be
// read (never loaded: a damaged file, a read that failed at start-up) has an empty Catalog. The
// view must say it cannot tell, not hand the node an empty registry: observed, that empty View
// stamps a delete of every manifest and tag the node last saw, and every peer applies them.
func TestUnreadableTrowDBIsNotAnEmptyRegistry(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "trow.db")
	if err := os.WriteFile(db, []byte("not a sqlite database, whatever its name says"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := registry.New(registry.TrowSQLite, dbOnlySource{db}, registry.Options{})
	r.Reset([]registry.FileInfo{{Path: "trow.db", Size: 44}})
	if v, err := NewViewSource(r).View(); err == nil {
		t.Fatalf("an unreadable trow.db gave the view %v and no error", v)
	}
	if v, err := NewViewSourceFunc(func() *registry.Registry { return r }).View(); err == nil {
		t.Fatalf("an unreadable trow.db gave the view %v and no error", v)
	}
	// An empty registry of another layout is a real, empty View.
	e := registry.New(registry.Distribution, dbOnlySource{}, registry.Options{})
	e.Reset(nil)
	if v, err := NewViewSource(e).View(); err != nil || len(v) != 0 {
		t.Fatalf("an empty distribution registry: %v, %v", v, err)
	}
}

type rootSource struct{ root string }

func (s rootSource) ReadFile(rel string) ([]byte, error) {
	return os.ReadFile(filepath.Join(s.root, rel))
}
func (s rootSource) DBPath() string { return "" }

// TestMissingBlobFileIsNotObservedAsADelete: in a distribution layout whose manifest blob
// file goes missing (a lost file, damage behind the registry's back), the served view drops the
// manifest and its tags. Were the node to observe that view, it would stamp a delete of both and
// every peer would delete the image. So the view the node observes keeps what the registry
// records; the served view (the applier's) still drops it, so the applier pushes it again.
func TestMissingBlobFileIsNotObservedAsADelete(t *testing.T) {
	root := t.TempDir()
	man := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	d := digest.FromBytes(man)
	h := d.Encoded()
	blob := "docker/registry/v2/blobs/sha256/" + h[:2] + "/" + h + "/data"
	files := map[string][]byte{
		blob: man,
		"docker/registry/v2/repositories/r/_manifests/revisions/sha256/" + h + "/link": []byte(d.String()),
		"docker/registry/v2/repositories/r/_manifests/tags/v1/current/link":            []byte(d.String()),
	}
	var infos []registry.FileInfo
	for p, b := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
		infos = append(infos, registry.FileInfo{Path: p, Size: int64(len(b))})
	}
	r := registry.New(registry.Distribution, rootSource{root}, registry.Options{})
	r.Reset(infos)
	observed := NewRecordedViewSourceFunc(func() *registry.Registry { return r })
	s, c := crdt.New(), crdt.NewClock("a", time.Now)
	v, err := observed.View()
	if err != nil {
		t.Fatal(err)
	}
	if es := s.Observe(v, c); len(es) != 2 {
		t.Fatalf("the image observed as %d entries, want 2", len(es))
	}

	if err := os.Remove(filepath.Join(root, blob)); err != nil {
		t.Fatal(err)
	}
	r.Remove(blob)
	if v, err = observed.View(); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.Observe(v, c) {
		t.Errorf("after the manifest's blob file went missing, Observe stamped %s %c %s deleted=%v", e.Repo, e.Kind, e.Name, e.Deleted)
	}
	if served, _ := NewViewSource(r).View(); len(served["r"].Manifests) != 0 {
		t.Fatalf("the served view still lists a manifest the registry cannot serve: %v", served)
	}
}
