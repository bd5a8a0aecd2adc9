package integration

// The peers applier (peers/oci) pushing into a distribution registry whose storage is on a real
// trowfs mount: what it pushes is served byte-identical, trowfs sees no missing or mismatched
// blob, and the tree trowfs kept equals an offline rescan.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trowfs/trowfs/integration/regtest"
	"github.com/trowfs/trowfs/peers"
	"github.com/trowfs/trowfs/peers/crdt"
	"github.com/trowfs/trowfs/peers/oci"
	"github.com/trowfs/trowfs/registry"
)

// dirView is the registry model over a distribution root read through the given directory (the
// mount), rebuilt at each View.
type dirView struct{ root string }

func (v dirView) ReadFile(rel string) ([]byte, error) {
	if !fs.ValidPath(rel) {
		return nil, fmt.Errorf("bad path %q", rel)
	}
	return os.ReadFile(filepath.Join(v.root, filepath.FromSlash(rel)))
}
func (v dirView) DBPath() string { return filepath.Join(v.root, "trow.db") }

func (v dirView) View() (crdt.View, error) {
	r := registry.New(registry.Distribution, v, registry.Options{})
	defer r.Close()
	var files []registry.FileInfo
	err := filepath.WalkDir(v.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		rel, _ := filepath.Rel(v.root, p)
		files = append(files, registry.FileInfo{Path: filepath.ToSlash(rel)})
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	r.Reset(files)
	return oci.NewViewSource(r).View()
}

// flipBlobs is a reverse proxy that flips one byte of every blob body.
func flipBlobs(t *testing.T, target string) *httptest.Server {
	u, _ := url.Parse(target)
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodGet || resp.StatusCode != http.StatusOK || !strings.Contains(resp.Request.URL.Path, "/blobs/") {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		b[len(b)/2] ^= 1
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	s := httptest.NewServer(p)
	t.Cleanup(s.Close)
	return s
}

func TestPeersApplyIntoMountedDistribution(t *testing.T) {
	m := newMounter(t)
	a := regtest.StartDistribution(t, t.TempDir())
	data := t.TempDir()
	mnt := m.Mount(t, data, "--layout", "distribution")
	b := regtest.StartDistribution(t, mnt)

	for i := range 3 {
		img, err := random.Image(50_000, 3)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.NewTag(fmt.Sprintf("%s/org/app:v%d", a.Addr, i), name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	idx, _ := random.Index(20_000, 2, 2)
	iref, _ := name.NewTag(a.Addr+"/lib/multi:latest", name.Insecure)
	if err := remote.WriteIndex(iref, idx); err != nil {
		t.Fatal(err)
	}
	live, err := dirView{a.Dir}.View()
	if err != nil {
		t.Fatal(err)
	}
	ap, err := oci.New(oci.Options{LocalURL: b.URL(), Local: dirView{mnt}, TempDir: t.TempDir(), MemLimit: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	liar := flipBlobs(t, a.URL())
	srcs := []peers.Source{{Name: "liar", RegistryURL: liar.URL}, {Name: "a", RegistryURL: a.URL()}}
	res, err := ap.ApplyResult(context.Background(), live, srcs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rejected["liar"] == 0 {
		t.Errorf("the lying source was not caught: %+v", res)
	}
	t.Logf("applied: %+v", res)

	// B serves what A serves, byte for byte.
	for repo, rp := range live {
		for d := range rp.Manifests {
			ra, _ := name.NewDigest(a.Addr+"/"+repo+"@"+d, name.Insecure)
			rb, _ := name.NewDigest(b.Addr+"/"+repo+"@"+d, name.Insecure)
			da, err1 := remote.Get(ra)
			db, err2 := remote.Get(rb)
			if err1 != nil || err2 != nil || !bytes.Equal(da.Manifest, db.Manifest) {
				t.Fatalf("%s@%s: %v, %v", repo, d, err1, err2)
			}
		}
		for tag, d := range rp.Tags {
			rb, _ := name.NewTag(b.Addr+"/"+repo+":"+tag, name.Insecure)
			desc, err := remote.Head(rb)
			if err != nil || desc.Digest.String() != d {
				t.Fatalf("B %s:%s = %v, %v, want %s", repo, tag, desc, err, d)
			}
		}
	}
	if got, _ := (dirView{mnt}).View(); fmt.Sprint(got) != fmt.Sprint(live) {
		t.Fatalf("B holds %v\nwant %v", got, live)
	}

	// A delete propagates.
	delete(live["org/app"].Tags, "v0")
	if res, err := ap.ApplyResult(context.Background(), live, srcs); err != nil || res.DeletedTags != 1 {
		t.Fatalf("delete: %+v, %v", res, err)
	}

	st := regtest.WaitState(t, mnt, stateTimeout, func(s regtest.State) bool {
		return settled(s) && s.Registry.MissingCount == 0 && s.Registry.MismatchedCount == 0
	})
	checkLayout(t, st, "distribution")
	b.Stop(t)
	st = regtest.WaitState(t, mnt, stateTimeout, settled)
	regtest.CheckRescan(t, m, data, mnt, st.Digest)
}
