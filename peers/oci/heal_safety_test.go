package oci_test

// What a heal must never do, whatever the registry and the peers do while it runs: bring back a
// blob the registry deleted, replace a file the registry rewrote, write bytes that do not match
// the blob's name, write through a link planted in DATA, leave a temporary file behind when it is
// cancelled, or let heals running at once fill DATA.

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

// trickster serves the blob d of target in one of the ways a lying or broken peer can.
func trickster(t *testing.T, target string, d string, good []byte, mode string) *httptest.Server {
	u, _ := url.Parse(target)
	p := httputil.NewSingleHostReverseProxy(u)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	var s *httptest.Server
	s = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wrong" {
			w.Write(flipped)
			return
		}
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
			p.ServeHTTP(w, r)
			return
		}
		switch mode {
		case "redirect-elsewhere-wrong":
			http.Redirect(w, r, s.URL+"/wrong", http.StatusTemporaryRedirect)
		case "redirect-elsewhere-right":
			http.Redirect(w, r, target+r.URL.Path, http.StatusTemporaryRedirect)
		case "gzip-wrong", "gzip-right":
			b := flipped
			if mode == "gzip-right" {
				b = good
			}
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz(b))
		case "gzip-undeclared":
			w.Write(gz(good)) // compressed bytes without saying so
		case "cut":
			w.Header().Set("Content-Length", fmt.Sprint(len(good)))
			w.WriteHeader(http.StatusOK)
			w.Write(good[:len(good)/2])
			w.(http.Flusher).Flush()
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
		case "huge":
			w.WriteHeader(http.StatusOK)
			w.Write(good)
			buf := make([]byte, 64<<10)
			for i := 0; i < 1<<14 && r.Context().Err() == nil; i++ { // up to 1 GiB more
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// TestHealWritesOnlyBytesThatMatchTheName: whatever a peer does (wrong bytes behind a redirect to
// another host, gzip transfer encoding of wrong bytes or of compressed bytes it does not declare,
// the right bytes then a cut connection, the right bytes then an endless tail), the file ends
// holding exactly the blob, from the peer only when what it served was exactly the blob, nothing
// is left in DATA/.trowfs, and a known size bounds what is read.
func TestHealWritesOnlyBytesThatMatchTheName(t *testing.T) {
	a, d, good := healSetup(t)
	for _, c := range []struct {
		mode string
		ok   bool // the trickster's bytes are the blob
	}{
		{"redirect-elsewhere-wrong", false}, {"redirect-elsewhere-right", true}, {"gzip-wrong", false},
		{"gzip-right", true}, {"gzip-undeclared", false}, {"cut", false}, {"huge", false},
	} {
		t.Run(c.mode, func(t *testing.T) {
			data := t.TempDir()
			rel := blobRel(d)
			p := filepath.Join(data, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("rotten"), 0o644); err != nil {
				t.Fatal(err)
			}
			liar := trickster(t, a.URL(), d.String(), good, c.mode)
			ap := newHealer(t)
			from, err := ap.Heal(context.Background(), oci.HealRequest{DataDir: data, RelPath: rel, Digest: d,
				Size: int64(len(good)), Repos: []string{"org/app"}},
				[]peers.Source{{Name: "liar", RegistryURL: liar.URL}, {Name: "a", RegistryURL: a.URL()}})
			want := "a"
			if c.ok {
				want = "liar"
			}
			if err != nil || from != want {
				t.Fatalf("Heal = %q, %v; want it healed from %s", from, err, want)
			}
			if got, _ := os.ReadFile(p); !bytes.Equal(got, good) {
				t.Fatal("the healed file does not hold the blob")
			}
			if left, _ := filepath.Glob(filepath.Join(data, ".trowfs", "*")); len(left) != 0 {
				t.Fatalf("temporary files left: %v", left)
			}
			if st := ap.Stats().Sources["liar"]; !c.ok && st.Rejected+st.Failures == 0 {
				t.Fatalf("the trickster was not blamed: %+v", st)
			}
		})
	}
}

// TestHealNeverWritesThroughPlantedLinks: DATA/.trowfs (where the copy is written first) planted
// as a symbolic link to a directory outside DATA makes the heal fail with nothing written there;
// a blob file that is a hard link to a file outside DATA is replaced by name, never written
// through, so the outside file keeps its bytes.
func TestHealNeverWritesThroughPlantedLinks(t *testing.T) {
	a, d, good := healSetup(t)
	for _, c := range []string{"statedir-symlink", "hardlink"} {
		t.Run(c, func(t *testing.T) {
			base := t.TempDir()
			data, outside := filepath.Join(base, "data"), filepath.Join(base, "outside")
			rel := blobRel(d)
			p := filepath.Join(data, filepath.FromSlash(rel))
			for _, dir := range []string{filepath.Dir(p), outside} {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			victim := filepath.Join(outside, "victim")
			if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
				t.Fatal(err)
			}
			switch c {
			case "statedir-symlink":
				if err := os.WriteFile(p, []byte("rotten"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(outside, filepath.Join(data, ".trowfs")); err != nil {
					t.Fatal(err)
				}
			case "hardlink":
				if err := os.Link(victim, p); err != nil {
					t.Fatal(err)
				}
			}
			_, err := newHealer(t).Heal(context.Background(), oci.HealRequest{DataDir: data, RelPath: rel, Digest: d,
				Size: int64(len(good)), Repos: []string{"org/app"}}, []peers.Source{{Name: "a", RegistryURL: a.URL()}})
			if got, _ := os.ReadFile(victim); string(got) != "precious" {
				t.Fatalf("the file outside DATA now holds %q", got)
			}
			names, _ := os.ReadDir(outside)
			if len(names) != 1 {
				t.Fatalf("files written outside DATA: %v", names)
			}
			switch c {
			case "statedir-symlink":
				if err == nil {
					t.Fatal("Heal through a symlinked DATA/.trowfs succeeded")
				}
			case "hardlink":
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := os.ReadFile(p); !bytes.Equal(got, good) {
					t.Fatal("the blob path does not hold the blob")
				}
			}
		})
	}
}

// TestHealCancelledMidStreamLeavesNothing: a heal whose context ends while a slow peer streams
// (the mount stopping) returns, leaves the bad file as it was and no temporary file.
func TestHealCancelledMidStreamLeavesNothing(t *testing.T) {
	a, d, _ := healSetup(t)
	var sent atomicInt
	s := endless(t, a, d.String(), &sent)
	data := t.TempDir()
	rel := blobRel(d)
	p := filepath.Join(data, filepath.FromSlash(rel))
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("rotten"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := newHealer(t).Heal(ctx, oci.HealRequest{DataDir: data, RelPath: rel, Digest: d, Size: -1,
			Repos: []string{"org/app"}}, []peers.Source{{Name: "slow", RegistryURL: s.URL}})
		done <- err
	}()
	for sent.get() < 1<<20 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled heal succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Heal did not return after its context ended")
	}
	if got, _ := os.ReadFile(p); string(got) != "rotten" {
		t.Fatalf("the file changed: %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(data, ".trowfs", "*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// TestConcurrentHealsOfUnknownSizeTakeHalfOfDATATogether: trowfs heals two blobs at once, both of
// unknown size (as the server asks). Two peers streaming without end must not take more than
// half of DATA's free space between them: the registry keeps the other half (each heal alone
// measuring half of the free space it sees at its start, two of them could fill DATA).
func TestConcurrentHealsOfUnknownSizeTakeHalfOfDATATogether(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	a, d, _ := healSetup(t)
	data := t.TempDir()
	if err := syscall.Mount("tmpfs", data, "tmpfs", 0, "size=32m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(data, 0) })
	rel := blobRel(d)
	p := filepath.Join(data, filepath.FromSlash(rel))
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("rotten"), 0o644)
	var fs0 syscall.Statfs_t
	syscall.Statfs(data, &fs0)
	free0 := int64(fs0.Bavail) * int64(fs0.Bsize)
	ap := newHealer(t)
	// Both sources hold their stream until both heals have started, as two slow peers would.
	var started sync.WaitGroup
	started.Add(2)
	gate := make(chan struct{})
	go func() { started.Wait(); close(gate) }()
	var minFree atomic.Int64
	minFree.Store(free0)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			var fs syscall.Statfs_t
			if syscall.Statfs(data, &fs) == nil {
				if f := int64(fs.Bavail) * int64(fs.Bsize); f < minFree.Load() {
					minFree.Store(f)
				}
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		var sent atomicInt
		u, _ := url.Parse(a.URL())
		proxy := httputil.NewSingleHostReverseProxy(u)
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
				proxy.ServeHTTP(w, r)
				return
			}
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			started.Done()
			<-gate
			buf := make([]byte, 64<<10)
			for r.Context().Err() == nil {
				if _, err := w.Write(buf); err != nil {
					return
				}
				sent.add(int64(len(buf)))
			}
		}))
		t.Cleanup(s.Close)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, errs[i] = ap.Heal(ctx, oci.HealRequest{DataDir: data, RelPath: rel, Digest: d, Size: -1,
				Repos: []string{"org/app"}}, []peers.Source{{Name: fmt.Sprint("endless", i), RegistryURL: s.URL}})
		}()
	}
	wg.Wait()
	close(stop)
	for i, err := range errs {
		if err == nil || strings.Contains(err.Error(), "no space") {
			t.Errorf("heal %d: %v; want it abandoned before DATA is full", i, err)
		}
	}
	if used := free0 - minFree.Load(); used > free0/2+(1<<20) {
		t.Fatalf("two heals of unknown size took %d of %d free bytes at once; want at most half", used, free0)
	}
}
