package registry

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// catalogOf builds an expected catalog from repo → tag → digest ("" tag: untagged).
func catalogOf(entries map[string][][2]string) Catalog {
	c := Catalog{}
	for repo, es := range entries {
		for _, e := range es {
			c.add(repo, digest.Digest(e[1]), e[0])
		}
	}
	return c
}

// TestCatalogPerLayout writes the same history in every file layout (a
// tagged image, an untagged one, a retag, a second repository) and checks
// that Catalog reports the manifests and the current tags, with a manifest
// pushed by digest listed as a manifest and never as a tag, and that an
// incremental update is seen.
func TestCatalogPerLayout(t *testing.T) {
	for _, l := range []Layout{TrowFiles, Distribution, OCILayout} {
		t.Run(l.String(), func(t *testing.T) {
			root := t.TempDir()
			w := newWriter(t, l, root)
			rng := rand.New(rand.NewPCG(7, 8))
			a, b, c := makeImage(rng, 1, false), makeImage(rng, 2, false), makeImage(rng, 1, true)
			push(w, "org/app", "v1", a)
			push(w, "org/app", "", b)
			push(w, "lib/x", "latest", c)
			r := newRegistry(t, l, root, Options{})
			r.Reset(scan(t, l, root))
			want := catalogOf(map[string][][2]string{
				"org/app": {{"v1", a.manifest.d.String()}, {"", b.manifest.d.String()}},
				"lib/x":   {{"latest", c.manifest.d.String()}},
			})
			if got := r.Catalog(); !reflect.DeepEqual(got, want) {
				t.Fatalf("Catalog = %v, want %v", got, want)
			}
			for _, tag := range r.Catalog()["org/app"].Tags {
				if _, isDigest := parseDigest(string(tag)); !isDigest {
					t.Fatalf("tag target %q is not a digest", tag)
				}
			}
			if _, ok := r.Catalog()["org/app"].Tags[b.manifest.d.String()]; ok {
				t.Fatalf("a manifest pushed by digest is reported as a tag")
			}

			// Retag v1 to b, tag b as v2: only the changed files are fed in.
			w.tag("org/app", "v1", b.manifest.d)
			w.tag("org/app", "v2", b.manifest.d)
			r.Reset(scan(t, l, root))
			want["org/app"].Tags["v1"] = b.manifest.d
			want["org/app"].Tags["v2"] = b.manifest.d
			if got := r.Catalog(); !reflect.DeepEqual(got, want) {
				t.Fatalf("after retag: Catalog = %v, want %v", got, want)
			}
		})
	}
}

// TestCatalogDistributionTagWithoutRevision leaves out a tag whose target has
// no revision link: distribution does not serve it.
func TestCatalogDistributionTagWithoutRevision(t *testing.T) {
	root := t.TempDir()
	w := newWriter(t, Distribution, root)
	rng := rand.New(rand.NewPCG(1, 2))
	a := makeImage(rng, 1, false)
	push(w, "org/app", "v1", a)
	w.tag("org/app", "ghost", digest.FromString("never pushed"))
	r := newRegistry(t, Distribution, root, Options{})
	r.Reset(scan(t, Distribution, root))
	got := r.Catalog()["org/app"]
	if _, ok := got.Tags["ghost"]; ok || got.Tags["v1"] != a.manifest.d {
		t.Fatalf("tags = %v", got.Tags)
	}
}

// TestCatalogSQLite reads manifests and tags from trow.db rows: untagged
// manifests through repo_blob_assoc, a tag row whose manifest row is
// missing left out, and a later write seen after Flush.
func TestCatalogSQLite(t *testing.T) {
	root := t.TempDir()
	w, s := buildSQLite(t, root)
	w.tag("org/app", "dangling", digest.FromString("no row"))
	r := newRegistry(t, TrowSQLite, root, Options{Debounce: 20 * time.Millisecond})
	r.Reset(scan(t, TrowSQLite, root))
	r.Flush()
	want := catalogOf(map[string][][2]string{
		"org/app":   {{"v1", s.a.manifest.d.String()}},
		"lib/multi": {{"", s.c1.manifest.d.String()}, {"", s.c2.manifest.d.String()}, {"multi", s.idx.d.String()}},
	})
	if got := r.Catalog(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Catalog = %v, want %v", got, want)
	}
	w.tag("lib/multi", "one", s.c1.manifest.d)
	r.Flush()
	want["lib/multi"].Tags["one"] = s.c1.manifest.d
	if got := r.Catalog(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after tag: Catalog = %v, want %v", got, want)
	}
}

// TestCatalogLeavesOutManifestsWhoseBlobFileIsMissing: in the file layouts a manifest is served
// from its blob file, so one whose file is gone (a link or tag file left behind) is not in the
// catalog: else the node would announce it and its applier would never restore it.
func TestCatalogLeavesOutManifestsWhoseBlobFileIsMissing(t *testing.T) {
	for _, l := range []Layout{TrowFiles, Distribution, OCILayout} {
		t.Run(l.String(), func(t *testing.T) {
			root := t.TempDir()
			w := newWriter(t, l, root)
			rng := rand.New(rand.NewPCG(3, 4))
			a, b := makeImage(rng, 1, false), makeImage(rng, 1, false)
			push(w, "org/app", "v1", a)
			push(w, "org/app", "v2", b)
			if err := os.Remove(filepath.Join(root, filepath.FromSlash(w.blobPath(b.manifest.d, "org/app")))); err != nil {
				t.Fatal(err)
			}
			r := newRegistry(t, l, root, Options{})
			r.Reset(scan(t, l, root))
			got := r.Catalog()["org/app"]
			if _, ok := got.Manifests[b.manifest.d]; ok {
				t.Fatalf("manifest with no blob file listed: %v", got)
			}
			if _, ok := got.Tags["v2"]; ok {
				t.Fatalf("tag of a manifest with no blob file listed: %v", got.Tags)
			}
			if got.Tags["v1"] != a.manifest.d {
				t.Fatalf("tags = %v", got.Tags)
			}
		})
	}
}
