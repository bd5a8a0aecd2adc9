package oci_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"

	"github.com/trowfs/trowfs/integration/regtest"
	"github.com/trowfs/trowfs/peers"
	"github.com/trowfs/trowfs/peers/crdt"
	"github.com/trowfs/trowfs/peers/oci"
	"github.com/trowfs/trowfs/registry"
)

// dirSource reads a registry's storage directory for the registry model.
type dirSource struct{ root string }

func (s dirSource) ReadFile(rel string) ([]byte, error) {
	if !fs.ValidPath(rel) {
		return nil, fmt.Errorf("bad path %q", rel)
	}
	return os.ReadFile(filepath.Join(s.root, filepath.FromSlash(rel)))
}
func (s dirSource) DBPath() string { return filepath.Join(s.root, "trow.db") }

// modelView is the registry model over a distribution root, rebuilt at each View (in production the
// mount keeps the model current; here the registry writes behind our back).
type modelView struct {
	t    testing.TB
	root string
}

func (m modelView) View() (crdt.View, error) {
	r := registry.New(registry.Distribution, dirSource{m.root}, registry.Options{})
	defer r.Close()
	var files []registry.FileInfo
	err := filepath.WalkDir(m.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(m.root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, registry.FileInfo{Path: filepath.ToSlash(rel), Size: fi.Size()})
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	r.Reset(files)
	return oci.NewViewSource(r).View()
}

// counter counts requests by method and path, and the most blob GETs in flight at once.
type counter struct {
	rt http.RoundTripper
	mu sync.Mutex
	n  map[string]int
	// inflight and maxInflight count blob GETs (guarded by mu).
	inflight, maxInflight int
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	blobGet := req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:")
	c.mu.Lock()
	c.n[req.Method+" "+req.URL.Path]++
	if blobGet {
		c.inflight++
		c.maxInflight = max(c.maxInflight, c.inflight)
	}
	c.mu.Unlock()
	resp, err := c.rt.RoundTrip(req)
	if blobGet {
		if err == nil {
			// Hold the slot until the body is read, so the count covers the transfer.
			resp.Body = &doneBody{ReadCloser: resp.Body, done: func() { c.mu.Lock(); c.inflight--; c.mu.Unlock() }}
		} else {
			c.mu.Lock()
			c.inflight--
			c.mu.Unlock()
		}
	}
	return resp, err
}

type doneBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *doneBody) Close() error {
	b.once.Do(b.done)
	return b.ReadCloser.Close()
}

func (c *counter) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

type fixture struct {
	a, b  *regtest.Registry
	rt    *counter
	ap    *oci.Applier
	store *memStore
}

type memStore struct {
	mu sync.Mutex
	b  []byte
}

func (m *memStore) Load() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.b == nil {
		return nil, os.ErrNotExist
	}
	return m.b, nil
}
func (m *memStore) Save(b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.b = append([]byte(nil), b...)
	return nil
}

func newFixture(t *testing.T, localURL string) *fixture {
	t.Helper()
	f := &fixture{a: regtest.StartDistribution(t, t.TempDir()), rt: &counter{rt: http.DefaultTransport, n: map[string]int{}}, store: &memStore{}}
	f.b = regtest.StartDistribution(t, t.TempDir())
	if localURL == "" {
		localURL = f.b.URL()
	}
	f.ap = f.applier(t, localURL)
	return f
}

func (f *fixture) applier(t *testing.T, localURL string) *oci.Applier {
	ap, err := oci.New(oci.Options{LocalURL: localURL, Local: modelView{t, f.b.Dir}, Store: f.store, Transport: f.rt,
		TempDir: t.TempDir(), MemLimit: 2048, BackoffStart: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// pushRandom pushes n random images tagged t0..t(n-1) and one random index tagged "multi" to
// repo on reg, and returns the pushed digests by tag.
func pushRandom(t *testing.T, reg *regtest.Registry, repo string, n int) map[string]v1.Hash {
	t.Helper()
	out := map[string]v1.Hash{}
	for i := range n {
		img, err := random.Image(3000, 2) // above MemLimit: spooled to a temp file
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.NewTag(fmt.Sprintf("%s/%s:t%d", reg.Addr, repo, i), name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		out[ref.TagStr()], _ = img.Digest()
	}
	idx, err := random.Index(500, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.NewTag(reg.Addr+"/"+repo+":multi", name.Insecure)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	out["multi"], _ = idx.Digest()
	return out
}

func viewOf(t *testing.T, root string) crdt.View {
	t.Helper()
	v, err := modelView{t, root}.View()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rawManifest GETs a manifest's bytes.
func rawManifest(t *testing.T, reg *regtest.Registry, repo, ref string) ([]byte, int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, reg.URL()+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b, resp.StatusCode
}

// assertServesSame checks that b serves every manifest and tag of want byte-identical to a, and
// every blob of every image.
func assertServesSame(t *testing.T, a, b *regtest.Registry, want crdt.View) {
	t.Helper()
	for repo, rp := range want {
		for d := range rp.Manifests {
			x, _ := rawManifest(t, a, repo, d)
			y, code := rawManifest(t, b, repo, d)
			if code != http.StatusOK || !bytes.Equal(x, y) {
				t.Fatalf("%s@%s: B answers %d, bytes equal %v", repo, d, code, bytes.Equal(x, y))
			}
		}
		for tag, d := range rp.Tags {
			ref, _ := name.NewTag(b.Addr+"/"+repo+":"+tag, name.Insecure)
			desc, err := remote.Head(ref)
			if err != nil || desc.Digest.String() != d {
				t.Fatalf("B %s:%s = %v, %v; want %s", repo, tag, desc, err, d)
			}
			if !desc.MediaType.IsImage() {
				continue
			}
			img, err := remote.Image(ref)
			if err != nil {
				t.Fatal(err)
			}
			layers, _ := img.Layers()
			for _, l := range layers {
				rc, err := l.Compressed()
				if err != nil {
					t.Fatalf("B %s:%s layer: %v", repo, tag, err)
				}
				_, err = io.Copy(io.Discard, rc) // ggcr verifies the digest at EOF
				rc.Close()
				if err != nil {
					t.Fatalf("B %s:%s layer: %v", repo, tag, err)
				}
			}
		}
	}
}

// assertBlobFilesMatchNames hashes every blob file of a distribution root.
func assertBlobFilesMatchNames(t *testing.T, root string) int {
	t.Helper()
	n := 0
	dir := filepath.Join(root, "docker/registry/v2/blobs/sha256")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "data" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		if want := filepath.Base(filepath.Dir(p)); hex.EncodeToString(sum[:]) != want {
			t.Errorf("blob file %s holds %x", want, sum)
		}
		n++
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return n
}

// TestApplyCopiesImagesByteIdenticalAndIsIdempotent applies A's view into an empty B: B serves every
// manifest, tag and blob byte-identical; a second Apply sends no request at all.
func TestApplyCopiesImagesByteIdenticalAndIsIdempotent(t *testing.T) {
	f := newFixture(t, "")
	pushRandom(t, f.a, "org/app", 3)
	pushRandom(t, f.a, "lib/other", 1)
	live := viewOf(t, f.a.Dir)
	res, err := f.ap.ApplyResult(context.Background(), live, []peers.Source{{Name: "a", RegistryURL: f.a.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	assertServesSame(t, f.a, f.b, live)
	if got := viewOf(t, f.b.Dir); fmt.Sprint(got) != fmt.Sprint(live) {
		t.Fatalf("B's view %v\nwant %v", got, live)
	}
	// Per repo: n images of a config and 2 layers, and an index of 2 images of a config and 1 layer.
	if res.Manifests != (3+1+2)+(1+1+2) || res.Tags != 4+2 || res.Blobs != (3*3+2*2)+(1*3+2*2) {
		t.Errorf("result %+v", res)
	}
	assertBlobFilesMatchNames(t, f.b.Dir)
	f.rt.mu.Lock()
	peak := f.rt.maxInflight
	f.rt.mu.Unlock()
	if peak > 4 {
		t.Errorf("%d blob transfers at once, want at most Jobs (4)", peak)
	}
	f.rt.reset()
	if err := f.ap.Apply(context.Background(), live, []peers.Source{{Name: "a", RegistryURL: f.a.URL()}}); err != nil {
		t.Fatal(err)
	}
	if n := f.rt.reset(); len(n) != 0 {
		t.Fatalf("second Apply sent requests: %v", n)
	}
	if s := f.ap.Stats(); s.Applies != 2 || s.Manifests != uint64(res.Manifests) {
		t.Errorf("stats %+v", s)
	}
}

// liar is a reverse proxy in front of a registry that corrupts blob (and optionally manifest)
// bodies.
func liar(t *testing.T, target *regtest.Registry, mode string, other []byte) *httptest.Server {
	u, _ := url.Parse(target.URL())
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
			return nil
		}
		isBlob := strings.Contains(resp.Request.URL.Path, "/blobs/")
		isManifest := strings.Contains(resp.Request.URL.Path, "/manifests/")
		if !(isBlob || isManifest && mode == "manifest") {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		switch mode {
		case "flip", "manifest":
			b[len(b)/2] ^= 0x01
		case "truncate":
			b = b[:len(b)-1]
		case "other":
			b = other
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
		return nil
	}
	s := httptest.NewServer(p)
	t.Cleanup(s.Close)
	return s
}

// TestApplyRejectsLyingSource: a source that flips a byte, truncates, serves another valid blob or a
// wrong manifest gets nothing accepted; the content comes from the honest second source and every
// blob file of B matches its name.
func TestApplyRejectsLyingSource(t *testing.T) {
	for _, mode := range []string{"flip", "truncate", "other", "manifest"} {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, "")
			pushRandom(t, f.a, "org/app", 2)
			live := viewOf(t, f.a.Dir)
			other := []byte("a valid blob of another digest")
			bad := liar(t, f.a, mode, other)
			srcs := []peers.Source{{Name: "liar", RegistryURL: bad.URL}, {Name: "honest", RegistryURL: f.a.URL()}}
			res, err := f.ap.ApplyResult(context.Background(), live, srcs)
			if err != nil {
				t.Fatal(err)
			}
			assertServesSame(t, f.a, f.b, live)
			assertBlobFilesMatchNames(t, f.b.Dir)
			st := f.ap.Stats().Sources["liar"]
			if st.Rejected == 0 || st.RejectedBytes == 0 || res.Rejected["liar"] == 0 || !st.BackoffUntil.After(time.Now()) {
				t.Fatalf("liar not counted or not backed off: %+v, result %+v", st, res)
			}
			if st.Rejected > 4 { // at most one per concurrent job (Jobs = 4) before the back-off is seen
				t.Errorf("liar was asked again while backed off: %d rejections", st.Rejected)
			}
			if hs := f.ap.Stats().Sources["honest"]; hs.Rejected != 0 || hs.Failures != 0 {
				t.Errorf("honest source counted: %+v", hs)
			}
		})
	}
}

// TestApplyOnlyLiarAcceptsNothing: with the lying source alone, Apply fails and B holds nothing.
func TestApplyOnlyLiarAcceptsNothing(t *testing.T) {
	f := newFixture(t, "")
	pushRandom(t, f.a, "org/app", 1)
	live := viewOf(t, f.a.Dir)
	bad := liar(t, f.a, "flip", nil)
	if err := f.ap.Apply(context.Background(), live, []peers.Source{{Name: "liar", RegistryURL: bad.URL}}); err == nil {
		t.Fatal("Apply from a lying source succeeded")
	}
	if n := assertBlobFilesMatchNames(t, f.b.Dir); n != 0 {
		t.Fatalf("B holds %d blobs from a liar", n)
	}
	if v := viewOf(t, f.b.Dir); len(v) != 0 {
		t.Fatalf("B's view %v", v)
	}
}

// TestApplyPropagatesDeletesButNotUnobservedPushes: a tag and a manifest gone from live are
// deleted from B; a manifest pushed to B that live has never held is left alone.
func TestApplyPropagatesDeletesButNotUnobservedPushes(t *testing.T) {
	f := newFixture(t, "")
	tags := pushRandom(t, f.a, "org/app", 3)
	live := viewOf(t, f.a.Dir)
	srcs := []peers.Source{{Name: "a", RegistryURL: f.a.URL()}}
	if err := f.ap.Apply(context.Background(), live, srcs); err != nil {
		t.Fatal(err)
	}
	// A local push the node has not observed yet.
	img, _ := random.Image(100, 1)
	fresh, _ := name.NewTag(f.b.Addr+"/org/app:fresh", name.Insecure)
	if err := remote.Write(fresh, img); err != nil {
		t.Fatal(err)
	}
	freshD, _ := img.Digest()

	// Elsewhere: tag t0 deleted; manifest of t1 and its tag deleted.
	rp := live["org/app"]
	delete(rp.Tags, "t0")
	delete(rp.Tags, "t1")
	delete(rp.Manifests, tags["t1"].String())
	res, err := f.ap.ApplyResult(context.Background(), live, srcs)
	if err != nil {
		t.Fatal(err)
	}
	if res.DeletedTags != 2 || res.DeletedManifests != 1 || res.RefusedDeletes != 0 {
		t.Fatalf("result %+v (stats %+v)", res, f.ap.Stats())
	}
	got := viewOf(t, f.b.Dir)["org/app"]
	if _, ok := got.Tags["t0"]; ok {
		t.Errorf("tag t0 still in B")
	}
	if _, ok := got.Manifests[tags["t0"].String()]; !ok {
		t.Errorf("the manifest of a deleted tag went too")
	}
	if _, ok := got.Manifests[tags["t1"].String()]; ok {
		t.Errorf("deleted manifest still in B")
	}
	if got.Tags["fresh"] != freshD.String() {
		t.Errorf("an unobserved local push was deleted: %v", got.Tags)
	}

	// A restarted Applier (same store) still applies a delete made while it was down.
	ap2 := f.applier(t, f.b.URL())
	delete(rp.Tags, "t2")
	if res, err := ap2.ApplyResult(context.Background(), live, srcs); err != nil || res.DeletedTags != 1 {
		t.Fatalf("after restart: %+v, %v", res, err)
	}
}

// faulty is a reverse proxy in front of the local registry that refuses some requests.
type faulty struct {
	mu     sync.Mutex
	refuse func(*http.Request) int // status to answer, 0: pass
}

func (fa *faulty) server(t *testing.T, target *regtest.Registry) *httptest.Server {
	u, _ := url.Parse(target.URL())
	p := httputil.NewSingleHostReverseProxy(u)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fa.mu.Lock()
		f := fa.refuse
		fa.mu.Unlock()
		if f != nil {
			if code := f(r); code != 0 {
				http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"refused by the test"}]}`, code)
				return
			}
		}
		p.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (fa *faulty) set(f func(*http.Request) int) {
	fa.mu.Lock()
	fa.refuse = f
	fa.mu.Unlock()
}

// TestApplyRefusingRegistryLeavesNothingPartial: a local registry that refuses manifest PUTs ends
// the round with an error and no tag visible; once it accepts, the next round completes. A
// refused delete is reported, not an error, and not retried in the same period.
func TestApplyRefusingRegistryLeavesNothingPartial(t *testing.T) {
	fa := &faulty{}
	f := newFixture(t, "")
	proxy := fa.server(t, f.b)
	ap := f.applier(t, proxy.URL)
	pushRandom(t, f.a, "org/app", 2)
	live := viewOf(t, f.a.Dir)
	srcs := []peers.Source{{Name: "a", RegistryURL: f.a.URL()}}

	fa.set(func(r *http.Request) int {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			return http.StatusInternalServerError
		}
		return 0
	})
	if err := ap.Apply(context.Background(), live, srcs); err == nil {
		t.Fatal("Apply into a refusing registry succeeded")
	}
	if v := viewOf(t, f.b.Dir)["org/app"]; len(v.Tags) != 0 || len(v.Manifests) != 0 {
		t.Fatalf("partial content visible: %v", v)
	}

	fa.set(nil)
	if err := ap.Apply(context.Background(), live, srcs); err != nil {
		t.Fatal(err)
	}
	assertServesSame(t, f.a, f.b, live)

	// Deletes refused with 405 (a registry with deletes disabled).
	var deletes int
	fa.set(func(r *http.Request) int {
		if r.Method == http.MethodDelete {
			deletes++
			return http.StatusMethodNotAllowed
		}
		return 0
	})
	delete(live["org/app"].Tags, "t0")
	for range 2 {
		res, err := ap.ApplyResult(context.Background(), live, srcs)
		if err != nil || res.RefusedDeletes != 1 {
			t.Fatalf("refused delete: %+v, %v", res, err)
		}
	}
	if deletes != 1 {
		t.Fatalf("refused delete sent %d times", deletes)
	}
	if s := ap.Stats(); len(s.Refused) != 1 || !strings.Contains(s.Refused[0], "t0") {
		t.Fatalf("refusal not reported: %v", s.Refused)
	}
}

// emptyView is a local registry holding nothing.
type emptyView struct{}

func (emptyView) View() (crdt.View, error) { return crdt.View{}, nil }

// TestApplySkipsNamesTheAPICannotCarry: an OCI layout at the root of DATA (repository "."), an
// invalid tag or digest is reported as skipped, sends no request and is not an error (which the
// node would retry forever).
func TestApplySkipsNamesTheAPICannotCarry(t *testing.T) {
	rt := &counter{rt: http.DefaultTransport, n: map[string]int{}}
	ap, err := oci.New(oci.Options{LocalURL: "http://127.0.0.1:1", Local: emptyView{}, Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	live := crdt.View{
		".":       {Manifests: map[string]struct{}{"sha256:" + strings.Repeat("a", 64): {}}, Tags: map[string]string{}},
		"Upper":   {Manifests: map[string]struct{}{}, Tags: map[string]string{}},
		"org/app": {Manifests: map[string]struct{}{"md5:zz": {}}, Tags: map[string]string{"bad tag": "sha256:" + strings.Repeat("b", 64)}},
	}
	res, err := ap.ApplyResult(context.Background(), live, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 4 {
		t.Fatalf("skipped %v", res.Skipped)
	}
	if n := rt.reset(); len(n) != 0 {
		t.Fatalf("requests sent: %v", n)
	}
}

// dropper is a proxy that, for blob GETs, sends half of the body and then closes the connection
// (a peer killed in the middle of a transfer).
func dropper(t *testing.T, target *regtest.Registry) *httptest.Server {
	u, _ := url.Parse(target.URL())
	p := httputil.NewSingleHostReverseProxy(u)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			p.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(rec.Code)
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// TestApplySurvivesSourceDyingMidTransfer: a source whose connection drops in the middle of a blob
// is a failure (backed off, not counted as lying) and the content comes from the next source.
func TestApplySurvivesSourceDyingMidTransfer(t *testing.T) {
	f := newFixture(t, "")
	pushRandom(t, f.a, "org/app", 2)
	live := viewOf(t, f.a.Dir)
	d := dropper(t, f.a)
	srcs := []peers.Source{{Name: "dying", RegistryURL: d.URL}, {Name: "a", RegistryURL: f.a.URL()}}
	if err := f.ap.Apply(context.Background(), live, srcs); err != nil {
		t.Fatal(err)
	}
	assertServesSame(t, f.a, f.b, live)
	assertBlobFilesMatchNames(t, f.b.Dir)
	st := f.ap.Stats().Sources["dying"]
	if st.Failures == 0 || st.Rejected != 0 || !st.BackoffUntil.After(time.Now()) {
		t.Fatalf("dying source: %+v", st)
	}
}

// TestApplySkipsRepositoryNamesOutsideTheReferenceGrammar: repository names that go-containerregistry
// accepts but the distribution reference grammar does not ("..", empty or "." path components,
// separators at the ends) are skipped like any other name the API cannot carry: no request (a
// registry would clean "org/../app" into another repository, or answer NAME_INVALID every round).
func TestApplySkipsRepositoryNamesOutsideTheReferenceGrammar(t *testing.T) {
	rt := &counter{rt: http.DefaultTransport, n: map[string]int{}}
	ap, err := oci.New(oci.Options{LocalURL: "http://127.0.0.1:1", Local: emptyView{}, Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	d := "sha256:" + strings.Repeat("a", 64)
	bad := []string{"org/../app", "org//app", "org/./app", "org/app/", "org/app-", "-org/app", "org/a___b", "org/..", "a" + strings.Repeat("/b", 200)}
	live := crdt.View{}
	for _, repo := range bad {
		live[repo] = crdt.Repo{Manifests: map[string]struct{}{d: {}}, Tags: map[string]string{"t": d}}
	}
	res, err := ap.ApplyResult(context.Background(), live, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != len(bad) {
		t.Fatalf("skipped %v, want the %d names %v", res.Skipped, len(bad), bad)
	}
	if n := rt.reset(); len(n) != 0 {
		t.Fatalf("requests sent: %v", n)
	}
	// Names the grammar allows are not skipped.
	for _, repo := range []string{"org/a__b", "org/a.b-c", "a/b/c/d", "x-----y"} {
		res, _ := ap.ApplyResult(context.Background(), crdt.View{repo: {Manifests: map[string]struct{}{d: {}}, Tags: map[string]string{}}}, nil)
		if len(res.Skipped) != 0 {
			t.Errorf("%s skipped: %v", repo, res.Skipped)
		}
	}
}

// TestApplyKeepsAManifestAnUnobservedLocalTagPointsAt: a manifest deleted elsewhere is kept while
// a tag of the local registry that live does not know (a push the node has not observed) points
// at it: distribution deletes every tag of a manifest deleted by digest, so deleting it would
// lose that push.
func TestApplyKeepsAManifestAnUnobservedLocalTagPointsAt(t *testing.T) {
	f := newFixture(t, "")
	tags := pushRandom(t, f.a, "org/app", 2)
	live := viewOf(t, f.a.Dir)
	srcs := []peers.Source{{Name: "a", RegistryURL: f.a.URL()}}
	if err := f.ap.Apply(context.Background(), live, srcs); err != nil {
		t.Fatal(err)
	}
	// A local push of tag "fresh" onto t1's manifest, not yet observed.
	d1 := tags["t1"].String()
	ref, _ := name.NewTag(f.b.Addr+"/org/app:t1", name.Insecure)
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := name.NewTag(f.b.Addr+"/org/app:fresh", name.Insecure)
	if err := remote.Put(fresh, desc); err != nil {
		t.Fatal(err)
	}
	// Elsewhere: t1 and its manifest deleted.
	rp := live["org/app"]
	delete(rp.Tags, "t1")
	delete(rp.Manifests, d1)
	res, err := f.ap.ApplyResult(context.Background(), live, srcs)
	if err != nil {
		t.Fatal(err)
	}
	got := viewOf(t, f.b.Dir)["org/app"]
	if got.Tags["fresh"] != d1 {
		t.Fatalf("the unobserved local tag went with the deleted manifest: tags %v, result %+v", got.Tags, res)
	}
	if _, ok := got.Manifests[d1]; !ok {
		t.Fatalf("manifest %s deleted while a local tag points at it", d1)
	}
	if _, ok := got.Tags["t1"]; ok || res.DeletedTags != 1 {
		t.Fatalf("tag t1 not deleted: %v, %+v", got.Tags, res)
	}
	// Once the local tag is gone too, the next round deletes the manifest.
	if err := remote.Delete(fresh); err != nil {
		t.Fatal(err)
	}
	if res, err := f.ap.ApplyResult(context.Background(), live, srcs); err != nil || res.DeletedManifests != 1 {
		t.Fatalf("manifest not deleted once unreferenced: %+v, %v", res, err)
	}
}

// stalling is a proxy in front of a registry that, for manifest GETs ("silent") or blob GETs
// ("trickle"), sends nothing or a byte every 50 ms: a hung or slowloris peer.
func stalling(t *testing.T, target *regtest.Registry, mode string) *httptest.Server {
	u, _ := url.Parse(target.URL())
	p := httputil.NewSingleHostReverseProxy(u)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case mode == "silent" && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/"):
			<-r.Context().Done()
		case mode == "trickle" && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/"):
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.WriteHeader(rec.Code)
			for _, c := range b {
				w.Write([]byte{c})
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		default:
			p.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// TestApplyAbandonsStalledSources: a source that never answers, or trickles a blob a byte at a
// time, is abandoned after StallTimeout, counted as a failure and backed off; the round finishes
// with the content from the next source instead of hanging (the node passes no deadline).
func TestApplyAbandonsStalledSources(t *testing.T) {
	for _, mode := range []string{"silent", "trickle"} {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, "")
			pushRandom(t, f.a, "org/app", 1)
			live := viewOf(t, f.a.Dir)
			ap, err := oci.New(oci.Options{LocalURL: f.b.URL(), Local: modelView{t, f.b.Dir}, Transport: f.rt,
				TempDir: t.TempDir(), MemLimit: 2048, BackoffStart: time.Minute, StallTimeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			s := stalling(t, f.a, mode)
			srcs := []peers.Source{{Name: "stalled", RegistryURL: s.URL}, {Name: "a", RegistryURL: f.a.URL()}}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			err = ap.Apply(ctx, live, srcs)
			if el := time.Since(start); err != nil || el > 10*time.Second {
				t.Fatalf("Apply past a stalled source: %v after %v", err, el)
			}
			assertServesSame(t, f.a, f.b, live)
			st := ap.Stats().Sources["stalled"]
			if st.Failures == 0 || st.Rejected != 0 || !st.BackoffUntil.After(time.Now()) || !strings.Contains(st.LastError, "stalled") {
				t.Fatalf("stalled source: %+v", st)
			}
		})
	}
}

// putLyingManifest pushes to reg an image manifest whose layer descriptor has the right digest but
// the size off by delta, and returns its digest.
func putLyingManifest(t *testing.T, reg *regtest.Registry, repo string, delta int64) string {
	t.Helper()
	repoRef, _ := name.NewRepository(reg.Addr+"/"+repo, name.Insecure)
	var descs []string
	for _, body := range []string{`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`, strings.Repeat("layer bytes ", 300)} {
		l := static.NewLayer([]byte(body), "application/octet-stream")
		if err := remote.WriteLayer(repoRef, l); err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		descs = append(descs, fmt.Sprintf(`{"mediaType":"application/octet-stream","digest":%q,"size":%d}`, d.String(), len(body)))
	}
	var size int
	fmt.Sscanf(descs[1][strings.LastIndex(descs[1], `"size":`)+7:], "%d", &size)
	descs[1] = descs[1][:strings.LastIndex(descs[1], `"size":`)] + fmt.Sprintf(`"size":%d}`, int64(size)+delta)
	m := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` +
		strings.Replace(descs[0], "application/octet-stream", "application/vnd.oci.image.config.v1+json", 1) + `,"layers":[` + descs[1] + `]}`
	sum := sha256.Sum256([]byte(m))
	d := "sha256:" + hex.EncodeToString(sum[:])
	req, _ := http.NewRequest(http.MethodPut, reg.URL()+"/v2/"+repo+"/manifests/"+d, strings.NewReader(m))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT lying manifest: %s %s", resp.Status, b)
	}
	return d
}

// TestApplyDoesNotBlameSourcesForADescriptorsWrongSize: a manifest (digest-verified, so as its
// author wrote it) whose layer descriptor has the right digest but a wrong size fails with a clear
// error, and the honest source that served the real blob is neither counted as lying nor backed
// off (else one bad manifest in live would cut every node off from every honest peer).
func TestApplyDoesNotBlameSourcesForADescriptorsWrongSize(t *testing.T) {
	for _, delta := range []int64{-10, 10, 1 << 20} {
		t.Run(fmt.Sprint(delta), func(t *testing.T) {
			f := newFixture(t, "")
			d := putLyingManifest(t, f.a, "org/bad", delta)
			live := crdt.View{"org/bad": {Manifests: map[string]struct{}{d: {}}, Tags: map[string]string{}}}
			srcs := []peers.Source{{Name: "a", RegistryURL: f.a.URL()}}
			err := f.ap.Apply(context.Background(), live, srcs)
			if err == nil || !strings.Contains(err.Error(), "size") {
				t.Fatalf("Apply of a manifest with a wrong layer size: %v", err)
			}
			st := f.ap.Stats().Sources["a"]
			if st.Rejected != 0 || !st.BackoffUntil.IsZero() {
				t.Fatalf("the honest source was blamed: %+v", st)
			}
			if n := assertBlobFilesMatchNames(t, f.b.Dir); n != 1 { // the config only
				t.Errorf("B holds %d blobs", n)
			}
		})
	}
}

// endless is a source whose GETs of blob only stream zeros without end (about 64 MB/s at most),
// counting the bytes sent.
func endless(t *testing.T, target *regtest.Registry, only string, sent *atomicInt) *httptest.Server {
	u, _ := url.Parse(target.URL())
	p := httputil.NewSingleHostReverseProxy(u)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+only) {
			p.ServeHTTP(w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
		buf := make([]byte, 64<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(buf); err != nil {
				return
			}
			sent.add(int64(len(buf)))
			time.Sleep(time.Millisecond)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

type atomicInt struct {
	mu sync.Mutex
	n  int64
}

func (a *atomicInt) add(n int64) { a.mu.Lock(); a.n += n; a.mu.Unlock() }
func (a *atomicInt) get() int64  { a.mu.Lock(); defer a.mu.Unlock(); return a.n }

// TestApplyRefusesABlobLargerThanTheFreeSpace: a descriptor declaring 2^62 bytes is refused before
// any byte is fetched (it could never be spooled), instead of letting a source stream into the
// temporary directory until the disk is full.
func TestApplyRefusesABlobLargerThanTheFreeSpace(t *testing.T) {
	f := newFixture(t, "")
	d := putLyingManifest(t, f.a, "org/huge", 1<<62-3600)
	var sent atomicInt
	layer, _ := static.NewLayer([]byte(strings.Repeat("layer bytes ", 300)), "").Digest() // putLyingManifest's
	s := endless(t, f.a, layer.String(), &sent)
	live := crdt.View{"org/huge": {Manifests: map[string]struct{}{d: {}}, Tags: map[string]string{}}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := f.ap.Apply(ctx, live, []peers.Source{{Name: "endless", RegistryURL: s.URL}})
	if err == nil || !strings.Contains(err.Error(), "free") || ctx.Err() != nil {
		t.Fatalf("Apply of a 2^62-byte blob: %v (ctx %v)", err, ctx.Err())
	}
	if n := sent.get(); n != 0 {
		t.Fatalf("%d bytes fetched for a blob that cannot fit", n)
	}
	if st := f.ap.Stats().Sources["endless"]; st.Rejected != 0 || st.Failures != 0 {
		t.Fatalf("source blamed for the manifest's size: %+v", st)
	}
}

// putNestedIndexes pushes an image and n indexes above it, each holding the previous one, and
// returns the top index's digest.
func putNestedIndexes(t *testing.T, reg *regtest.Registry, repo string, n int) string {
	t.Helper()
	img, _ := random.Image(100, 1)
	d, _ := img.Digest()
	ref, _ := name.NewDigest(reg.Addr+"/"+repo+"@"+d.String(), name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	child := fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d}`, d.String(), len(raw))
	var top string
	for range n {
		m := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + child + `]}`
		sum := sha256.Sum256([]byte(m))
		top = "sha256:" + hex.EncodeToString(sum[:])
		req, _ := http.NewRequest(http.MethodPut, reg.URL()+"/v2/"+repo+"/manifests/"+top, strings.NewReader(m))
		req.Header.Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT index: %s", resp.Status)
		}
		child = fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.index.v1+json","digest":%q,"size":%d}`, top, len(m))
	}
	return top
}

// TestApplyBoundsIndexNesting: indexes nested deeper than MaxDepth fail with a clear error and
// push nothing (each level holds up to 4 MiB while its children are applied, so an unbounded
// chain from a hostile peer is unbounded memory); a nesting within the bound applies.
func TestApplyBoundsIndexNesting(t *testing.T) {
	f := newFixture(t, "")
	deep := putNestedIndexes(t, f.a, "org/deep", 50)
	ok := putNestedIndexes(t, f.a, "org/ok", 3)
	srcs := []peers.Source{{Name: "a", RegistryURL: f.a.URL()}}
	live := crdt.View{"org/deep": {Manifests: map[string]struct{}{deep: {}}, Tags: map[string]string{}}}
	err := f.ap.Apply(context.Background(), live, srcs)
	if err == nil || !strings.Contains(err.Error(), "nested") {
		t.Fatalf("Apply of indexes nested 50 deep: %v", err)
	}
	if v := viewOf(t, f.b.Dir); len(v) != 0 {
		t.Fatalf("B holds %v", v)
	}
	if st := f.ap.Stats().Sources["a"]; st.Rejected != 0 || !st.BackoffUntil.IsZero() {
		t.Fatalf("the source was blamed: %+v", st)
	}
	live = crdt.View{"org/ok": {Manifests: map[string]struct{}{ok: {}}, Tags: map[string]string{"v": ok}}}
	if err := f.ap.Apply(context.Background(), live, srcs); err != nil {
		t.Fatal(err)
	}
	assertServesSame(t, f.a, f.b, live)
}

// goroutinePeak is a transport that records the most goroutines seen at any request.
type goroutinePeak struct {
	rt   http.RoundTripper
	mu   sync.Mutex
	peak int
}

func (g *goroutinePeak) RoundTrip(req *http.Request) (*http.Response, error) {
	n := runtime.NumGoroutine()
	g.mu.Lock()
	g.peak = max(g.peak, n)
	g.mu.Unlock()
	return g.rt.RoundTrip(req)
}

// TestApplyManyLayersKeepsGoroutinesBounded: an image of 20000 layer descriptors (a 4 MiB manifest
// holds about 40000) applies with a bounded number of goroutines, not one per descriptor.
func TestApplyManyLayersKeepsGoroutinesBounded(t *testing.T) {
	f := newFixture(t, "")
	repoRef, _ := name.NewRepository(f.a.Addr+"/org/wide", name.Insecure)
	cfg := static.NewLayer([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`), "")
	layer := static.NewLayer([]byte("one small layer"), "")
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repoRef, l); err != nil {
			t.Fatal(err)
		}
	}
	cd, _ := cfg.Digest()
	cs, _ := cfg.Size()
	ld, _ := layer.Digest()
	ls, _ := layer.Size()
	var layers []string
	for i := range 20000 { // distinct descriptors (media types) of one blob
		layers = append(layers, fmt.Sprintf(`{"mediaType":"application/vnd.example.layer.%d","digest":%q,"size":%d}`, i, ld, ls))
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
		cd, cs, strings.Join(layers, ","))
	sum := sha256.Sum256([]byte(m))
	d := "sha256:" + hex.EncodeToString(sum[:])
	req, _ := http.NewRequest(http.MethodPut, f.a.URL()+"/v2/org/wide/manifests/"+d, strings.NewReader(m))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %s", resp.Status)
	}
	g := &goroutinePeak{rt: http.DefaultTransport}
	ap, err := oci.New(oci.Options{LocalURL: f.b.URL(), Local: modelView{t, f.b.Dir}, Transport: g, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	live := crdt.View{"org/wide": {Manifests: map[string]struct{}{d: {}}, Tags: map[string]string{"v": d}}}
	if err := ap.Apply(context.Background(), live, []peers.Source{{Name: "a", RegistryURL: f.a.URL()}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := rawManifest(t, f.b, "org/wide", d); string(got) != m {
		t.Fatal("B does not serve the manifest")
	}
	if g.peak-base > 500 {
		t.Fatalf("%d goroutines above the %d at start for one manifest's layers", g.peak-base, base)
	}
}

// TestApplyRestoresAManifestWhoseBlobFileWentMissing: a manifest of the local registry whose blob
// file is gone (its revision link left behind) is not served, so it is applied again.
func TestApplyRestoresAManifestWhoseBlobFileWentMissing(t *testing.T) {
	f := newFixture(t, "")
	tags := pushRandom(t, f.a, "org/app", 1)
	live := viewOf(t, f.a.Dir)
	srcs := []peers.Source{{Name: "a", RegistryURL: f.a.URL()}}
	if err := f.ap.Apply(context.Background(), live, srcs); err != nil {
		t.Fatal(err)
	}
	d := tags["t0"]
	if err := os.Remove(filepath.Join(f.b.Dir, "docker/registry/v2/blobs/sha256", d.Hex[:2], d.Hex, "data")); err != nil {
		t.Fatal(err)
	}
	if _, code := rawManifest(t, f.b, "org/app", d.String()); code == http.StatusOK {
		t.Fatal("B still serves the manifest")
	}
	res, err := f.ap.ApplyResult(context.Background(), live, srcs)
	if err != nil || res.Manifests != 1 {
		t.Fatalf("second Apply: %+v, %v", res, err)
	}
	assertServesSame(t, f.a, f.b, live)
}

// TestApplyBackoffDoublesForARepeatLiar: a source that lies again each time its back-off ends is
// backed off twice as long each time (1 s, 2 s, 4 s ...), not BackoffStart again; after BackoffMax
// without a failure it starts from BackoffStart.
func TestApplyBackoffDoublesForARepeatLiar(t *testing.T) {
	f := newFixture(t, "")
	pushRandom(t, f.a, "org/app", 1)
	live := viewOf(t, f.a.Dir)
	bad := liar(t, f.a, "flip", nil)
	var mu sync.Mutex
	now := time.Unix(1e9, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ap, err := oci.New(oci.Options{LocalURL: f.b.URL(), Local: modelView{t, f.b.Dir}, TempDir: t.TempDir(), MemLimit: 2048,
		Jobs: 1, BackoffStart: time.Second, BackoffMax: time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	srcs := []peers.Source{{Name: "liar", RegistryURL: bad.URL}}
	var got []time.Duration
	for range 4 {
		ap.Apply(context.Background(), live, srcs)
		st := ap.Stats().Sources["liar"]
		got = append(got, st.BackoffUntil.Sub(clock()))
		mu.Lock()
		now = st.BackoffUntil.Add(time.Millisecond)
		mu.Unlock()
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("back-offs %v, want %v", got, want)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	ap.Apply(context.Background(), live, srcs)
	if d := ap.Stats().Sources["liar"].BackoffUntil.Sub(clock()); d != time.Second {
		t.Fatalf("back-off after a quiet BackoffMax: %v, want 1s", d)
	}
}

// TestApplyErrorNamesTheCauseOfAnUnappliedTag: with the local registry down, the error (the
// node's waiting_for) says why, even when the first failure listed is a tag held back by its
// manifest ("repo:tag" sorts before "repo@digest").
func TestApplyErrorNamesTheCauseOfAnUnappliedTag(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	ap, err := oci.New(oci.Options{LocalURL: down, Local: emptyView{}})
	if err != nil {
		t.Fatal(err)
	}
	d := "sha256:" + strings.Repeat("c", 64)
	live := crdt.View{"org/app": {Manifests: map[string]struct{}{d: {}}, Tags: map[string]string{"v1": d}}}
	_, err = ap.ApplyResult(context.Background(), live, []peers.Source{{Name: "b", RegistryURL: down}})
	if err == nil || !strings.Contains(err.Error(), "org/app:v1") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error %v: want the tag and the cause (connection refused)", err)
	}
}

// Blobs go from the source into the local registry as they arrive, never spooled: with a TempDir
// nothing can be created in (a file), blobs larger than MemLimit are still applied, byte for byte.
func TestApplyStreamsBlobsWithoutSpooling(t *testing.T) {
	f := newFixture(t, "")
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ap, err := oci.New(oci.Options{LocalURL: f.b.URL(), Local: modelView{t, f.b.Dir}, Store: f.store, Transport: f.rt,
		TempDir: notDir, MemLimit: 2048, BackoffStart: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pushRandom(t, f.a, "org/app", 2) // layers of 3000 bytes, above MemLimit
	live := viewOf(t, f.a.Dir)
	res, err := ap.ApplyResult(context.Background(), live, []peers.Source{{Name: "a", RegistryURL: f.a.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	assertServesSame(t, f.a, f.b, live)
	assertBlobFilesMatchNames(t, f.b.Dir)
	if res.Blobs == 0 || res.BlobBytes < 2*2*3000 {
		t.Errorf("result %+v", res)
	}
}
