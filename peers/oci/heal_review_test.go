package oci_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/trowfs/trowfs/peers"
	"github.com/trowfs/trowfs/peers/oci"
)

// meddler is a source that, when the heal asks it for a blob, first lets the test act on DATA
// (the registry deleting or re-pushing the blob while the heal fetches it), then serves the real
// bytes.
func meddler(t *testing.T, target string, act func()) *httptest.Server {
	u, _ := url.Parse(target)
	p := httputil.NewSingleHostReverseProxy(u)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			act()
		}
		p.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestHealNeverResurrectsABlobDeletedDuringTheHeal: the registry (its GC, or a delete through the
// API) removes the rotten blob while the heal fetches it. The heal must not bring the file back:
// the registry decided it is gone, and a file it no longer knows is a leak it cannot collect.
// A blob already missing when the heal starts is not created either.
func TestHealNeverResurrectsABlobDeletedDuringTheHeal(t *testing.T) {
	a, d, good := healSetup(t)
	for _, when := range []string{"during", "before"} {
		t.Run(when, func(t *testing.T) {
			data := t.TempDir()
			rel := blobRel(d)
			p := filepath.Join(data, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if when == "during" {
				if err := os.WriteFile(p, []byte("rotten"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			src := meddler(t, a.URL(), func() { os.Remove(p) })
			_, err := newHealer(t).Heal(context.Background(), oci.HealRequest{DataDir: data, RelPath: rel, Digest: d,
				Size: int64(len(good)), Repos: []string{"org/app"}}, []peers.Source{{Name: "a", RegistryURL: src.URL}})
			if err == nil {
				t.Error("Heal of a blob the registry deleted succeeded")
			}
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Fatalf("the deleted blob is back at %s (%v)", rel, err)
			}
			if left, _ := filepath.Glob(filepath.Join(data, ".trowfs", "*")); len(left) != 0 {
				t.Fatalf("temporary files left: %v", left)
			}
		})
	}
}

// TestHealLeavesAFileTheRegistryRewroteDuringTheHeal: the registry pushes the blob again while
// the heal fetches it (a new file renamed over the rotten one). The heal replaced nothing it
// examined: the registry's file stays, untouched, and no temporary file is left.
func TestHealLeavesAFileTheRegistryRewroteDuringTheHeal(t *testing.T) {
	a, d, good := healSetup(t)
	data := t.TempDir()
	rel := blobRel(d)
	p := filepath.Join(data, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("rotten"), 0o644); err != nil {
		t.Fatal(err)
	}
	var pushed uint64
	src := meddler(t, a.URL(), func() {
		tmp := filepath.Join(data, "upload")
		if err := os.WriteFile(tmp, good, 0o644); err != nil {
			t.Error(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Error(err)
		}
		pushed = inode(t, p)
	})
	_, err := newHealer(t).Heal(context.Background(), oci.HealRequest{DataDir: data, RelPath: rel, Digest: d,
		Size: int64(len(good)), Repos: []string{"org/app"}}, []peers.Source{{Name: "a", RegistryURL: src.URL}})
	t.Logf("Heal: %v", err)
	if got := inode(t, p); got != pushed {
		t.Fatalf("the heal replaced the file the registry pushed meanwhile (inode %d, pushed %d)", got, pushed)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, good) {
		t.Fatal("the registry's file changed")
	}
	if left, _ := filepath.Glob(filepath.Join(data, ".trowfs", "*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
