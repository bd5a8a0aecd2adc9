package oci_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/integration/regtest"
	"github.com/trowfs/trowfs/peers"
	"github.com/trowfs/trowfs/peers/oci"
)

// healSetup pushes one image to a real registry and returns it with the digest, size and bytes of
// its first layer.
func healSetup(t *testing.T) (*regtest.Registry, digest.Digest, []byte) {
	t.Helper()
	a := regtest.StartDistribution(t, t.TempDir())
	img, err := random.Image(5000, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.NewTag(a.Addr+"/org/app:v1", name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	b, err := os.ReadFile(filepath.Join(a.Dir, "docker/registry/v2/blobs/sha256", d.Hex[:2], d.Hex, "data"))
	if err != nil {
		t.Fatal(err)
	}
	return a, digest.Digest(d.String()), b
}

func blobRel(d digest.Digest) string {
	return "docker/registry/v2/blobs/sha256/" + d.Encoded()[:2] + "/" + d.Encoded() + "/data"
}

func newHealer(t *testing.T) *oci.Applier {
	ap, err := oci.New(oci.Options{LocalURL: "http://127.0.0.1:1", Local: modelView{t, t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// TestHealReplacesRottenBlobFromPeer: a blob file whose bytes rotted is replaced, at the same path,
// by verified bytes from the peer that has them; a lying peer before it gets nothing written.
func TestHealReplacesRottenBlobFromPeer(t *testing.T) {
	a, d, good := healSetup(t)
	data := t.TempDir()
	rel := blobRel(d)
	p := filepath.Join(data, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	rotten := bytes.Clone(good)
	rotten[10] ^= 0xff
	if err := os.WriteFile(p, rotten, 0o644); err != nil {
		t.Fatal(err)
	}
	ap := newHealer(t)
	bad := liar(t, a, "flip", nil)
	srcs := []peers.Source{{Name: "liar", RegistryURL: bad.URL}, {Name: "a", RegistryURL: a.URL()}}
	from, err := ap.Heal(context.Background(), oci.HealRequest{DataDir: data, RelPath: rel, Digest: d, Size: int64(len(good)),
		Repos: []string{"not/here", "org/app"}}, srcs)
	if err != nil || from != "a" {
		t.Fatalf("Heal = %q, %v", from, err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, good) {
		t.Fatal("the healed file does not hold the blob")
	}
	if left, _ := filepath.Glob(filepath.Join(data, ".trowfs", "*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if st := ap.Stats(); st.Healed != 1 || st.Sources["liar"].Rejected != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestHealRefusesWhenNoPeerServesMatchingBytes leaves the bad file as it was.
func TestHealRefusesWhenNoPeerServesMatchingBytes(t *testing.T) {
	a, d, good := healSetup(t)
	data := t.TempDir()
	rel := blobRel(d)
	p := filepath.Join(data, filepath.FromSlash(rel))
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("rotten"), 0o644)
	bad := liar(t, a, "truncate", nil)
	_, err := newHealer(t).Heal(context.Background(), oci.HealRequest{DataDir: data, RelPath: rel, Digest: d, Size: int64(len(good)),
		Repos: []string{"org/app"}}, []peers.Source{{Name: "liar", RegistryURL: bad.URL}})
	if !errors.Is(err, oci.ErrNoPeerHasIt) {
		t.Fatalf("Heal from a liar: %v", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "rotten" {
		t.Fatalf("file changed: %q", got)
	}
}

// TestHealDoesNotFollowPlantedSymlinks: a directory on the path replaced by a symlink to a
// directory outside DATA, or the file itself a symlink, is refused and the outside file untouched.
func TestHealDoesNotFollowPlantedSymlinks(t *testing.T) {
	a, d, good := healSetup(t)
	for _, c := range []string{"dir", "file", "escape"} {
		t.Run(c, func(t *testing.T) {
			data, outside := t.TempDir(), t.TempDir()
			rel := blobRel(d)
			p := filepath.Join(data, filepath.FromSlash(rel))
			victim := filepath.Join(outside, "data")
			os.WriteFile(victim, []byte("precious"), 0o644)
			switch c {
			case "dir":
				os.MkdirAll(filepath.Dir(filepath.Dir(p)), 0o755)
				os.Symlink(outside, filepath.Dir(p))
			case "file":
				os.MkdirAll(filepath.Dir(p), 0o755)
				os.Symlink(victim, p)
			case "escape":
				rel = "../" + filepath.Base(outside) + "/data"
			}
			_, err := newHealer(t).Heal(context.Background(), oci.HealRequest{DataDir: data, RelPath: rel, Digest: d, Size: int64(len(good)),
				Repos: []string{"org/app"}}, []peers.Source{{Name: "a", RegistryURL: a.URL()}})
			if err == nil {
				t.Fatal("Heal through a planted link succeeded")
			}
			if got, _ := os.ReadFile(victim); string(got) != "precious" {
				t.Fatalf("outside file changed: %q", got)
			}
		})
	}
}

// TestHealKeepsTheFilesModeAndOwner: the healed file has the mode and owner of the file it
// replaces (the registry often runs as another user than trowfs: a 0600 root-owned blob would be
// unreadable to it). A missing file is not created (TestHealNeverResurrectsABlobDeletedDuringTheHeal).
func TestHealKeepsTheFilesModeAndOwner(t *testing.T) {
	a, d, good := healSetup(t)
	root := os.Geteuid() == 0
	for _, c := range []string{"rotten"} {
		t.Run(c, func(t *testing.T) {
			data := t.TempDir()
			rel := blobRel(d)
			p := filepath.Join(data, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			uid, gid := os.Geteuid(), os.Getegid()
			if root {
				uid, gid = 4321, 4322
				if err := os.Chown(filepath.Dir(p), uid, gid); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(p, []byte("rotten"), 0o640); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, 0o640)
			if root {
				if err := os.Chown(p, uid, gid); err != nil {
					t.Fatal(err)
				}
			}
			_, err := newHealer(t).Heal(context.Background(), oci.HealRequest{DataDir: data, RelPath: rel, Digest: d, Size: int64(len(good)),
				Repos: []string{"org/app"}}, []peers.Source{{Name: "a", RegistryURL: a.URL()}})
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			want := os.FileMode(0o640)
			if fi.Mode().Perm() != want {
				t.Errorf("healed file mode %v, want %v", fi.Mode().Perm(), want)
			}
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
				t.Errorf("healed file owned by %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
			}
		})
	}
}

// TestHealWithAWrongSizeBlamesNoSource: a request whose Size is not the blob's fails with a
// *DescriptorError, leaves the file alone and does not back off the source that served the real
// blob.
func TestHealWithAWrongSizeBlamesNoSource(t *testing.T) {
	a, d, good := healSetup(t)
	data := t.TempDir()
	rel := blobRel(d)
	p := filepath.Join(data, filepath.FromSlash(rel))
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("rotten"), 0o644)
	ap := newHealer(t)
	_, err := ap.Heal(context.Background(), oci.HealRequest{DataDir: data, RelPath: rel, Digest: d, Size: int64(len(good)) - 1,
		Repos: []string{"org/app"}}, []peers.Source{{Name: "a", RegistryURL: a.URL()}})
	var de *oci.DescriptorError
	if !errors.As(err, &de) || de.Actual != int64(len(good)) {
		t.Fatalf("Heal with a wrong size: %v", err)
	}
	if st := ap.Stats().Sources["a"]; st.Rejected != 0 || !st.BackoffUntil.IsZero() {
		t.Fatalf("the source was blamed: %+v", st)
	}
	if got, _ := os.ReadFile(p); string(got) != "rotten" {
		t.Fatalf("file changed: %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(data, ".trowfs", "*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// TestHealRefusesASizeLargerThanDATAsFreeSpace: a heal of a blob declared larger than DATA's free
// space fetches nothing (a source streaming it would fill the registry's disk first).
func TestHealRefusesASizeLargerThanDATAsFreeSpace(t *testing.T) {
	a, d, _ := healSetup(t)
	var sent atomicInt
	s := endless(t, a, d.String(), &sent)
	data := t.TempDir()
	rel := blobRel(d)
	os.MkdirAll(filepath.Dir(filepath.Join(data, filepath.FromSlash(rel))), 0o755)
	os.WriteFile(filepath.Join(data, filepath.FromSlash(rel)), []byte("rotten"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ap := newHealer(t)
	_, err := ap.Heal(ctx, oci.HealRequest{DataDir: data, RelPath: rel, Digest: d, Size: 1 << 62,
		Repos: []string{"org/app"}}, []peers.Source{{Name: "endless", RegistryURL: s.URL}})
	if err == nil || !strings.Contains(err.Error(), "free") || ctx.Err() != nil {
		t.Fatalf("Heal of a 2^62-byte blob: %v (ctx %v)", err, ctx.Err())
	}
	if n := sent.get(); n != 0 {
		t.Fatalf("%d bytes fetched", n)
	}
	if st := ap.Stats().Sources["endless"]; st.Rejected != 0 || st.Failures != 0 {
		t.Fatalf("source blamed: %+v", st)
	}
}

// TestHealRemovesStaleTempFiles: a heal's temporary file left in DATA/.trowfs by a crash (older
// than a day) is removed by the next heal instead of taking the registry's disk forever; a recent
// one (a heal still running) and other files are left.
func TestHealRemovesStaleTempFiles(t *testing.T) {
	a, d, good := healSetup(t)
	data := t.TempDir()
	rel := blobRel(d)
	os.MkdirAll(filepath.Dir(filepath.Join(data, filepath.FromSlash(rel))), 0o755)
	os.WriteFile(filepath.Join(data, filepath.FromSlash(rel)), []byte("rotten"), 0o644)
	st := filepath.Join(data, ".trowfs")
	os.MkdirAll(st, 0o700)
	old, recent, other := filepath.Join(st, "heal.00aa.tmp"), filepath.Join(st, "heal.00bb.tmp"), filepath.Join(st, "state")
	for _, p := range []string{old, recent, other} {
		os.WriteFile(p, []byte("x"), 0o600)
	}
	long := time.Now().Add(-25 * time.Hour)
	os.Chtimes(old, long, long)
	os.Chtimes(other, long, long)
	if _, err := newHealer(t).Heal(context.Background(), oci.HealRequest{DataDir: data, RelPath: rel, Digest: d, Size: int64(len(good)),
		Repos: []string{"org/app"}}, []peers.Source{{Name: "a", RegistryURL: a.URL()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(old); !os.IsNotExist(err) {
		t.Errorf("stale temporary file left: %v", err)
	}
	for _, p := range []string{recent, other} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}

// TestHealOfUnknownSizeCannotFillDATA: a heal with Size -1 reads at most half of DATA's free space,
// so a source streaming without end fails the heal instead of filling the registry's disk (DATA
// here is a 16 MiB tmpfs; root only).
func TestHealOfUnknownSizeCannotFillDATA(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	a, d, _ := healSetup(t)
	var sent atomicInt
	s := endless(t, a, d.String(), &sent)
	data := t.TempDir()
	if err := syscall.Mount("tmpfs", data, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(data, 0) })
	rel := blobRel(d)
	os.MkdirAll(filepath.Dir(filepath.Join(data, filepath.FromSlash(rel))), 0o755)
	os.WriteFile(filepath.Join(data, filepath.FromSlash(rel)), []byte("rotten"), 0o644) // a missing one is not healed
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ap := newHealer(t)
	_, err := ap.Heal(ctx, oci.HealRequest{DataDir: data, RelPath: rel, Digest: d, Size: -1,
		Repos: []string{"org/app"}}, []peers.Source{{Name: "endless", RegistryURL: s.URL}})
	if err == nil || strings.Contains(err.Error(), "no space") || !strings.Contains(err.Error(), "more than") || ctx.Err() != nil {
		t.Fatalf("Heal of an endless blob of unknown size: %v (ctx %v)", err, ctx.Err())
	}
	var fs syscall.Statfs_t
	syscall.Statfs(data, &fs)
	if left, _ := filepath.Glob(filepath.Join(data, ".trowfs", "*")); len(left) != 0 || fs.Bavail*uint64(fs.Bsize) < 7<<20 {
		t.Fatalf("temporary files left %v, %d bytes free", left, fs.Bavail*uint64(fs.Bsize))
	}
}

// TestHealOfUnknownSizeRejectsEveryKindOfLiar is the heal as trowfs runs it (the damaged file's
// size is not trusted: Size -1): a source that flips a byte, truncates, or serves another valid
// blob gets nothing written and is counted as rejected, and the honest source after it heals.
func TestHealOfUnknownSizeRejectsEveryKindOfLiar(t *testing.T) {
	for _, mode := range []string{"flip", "truncate", "other"} {
		t.Run(mode, func(t *testing.T) {
			a, d, good := healSetup(t)
			data := t.TempDir()
			rel := blobRel(d)
			p := filepath.Join(data, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			rotten := bytes.Clone(good)
			rotten[len(rotten)-1] ^= 0x80
			if err := os.WriteFile(p, rotten, 0o644); err != nil {
				t.Fatal(err)
			}
			ap := newHealer(t)
			bad := liar(t, a, mode, []byte("a different, perfectly valid blob"))
			srcs := []peers.Source{{Name: "liar", RegistryURL: bad.URL}, {Name: "a", RegistryURL: a.URL()}}
			from, err := ap.Heal(context.Background(), oci.HealRequest{DataDir: data, RelPath: rel, Digest: d, Size: -1,
				Repos: []string{"org/app"}}, srcs)
			if err != nil || from != "a" {
				t.Fatalf("Heal = %q, %v; want it healed from a", from, err)
			}
			if got, _ := os.ReadFile(p); !bytes.Equal(got, good) {
				t.Fatal("the healed file does not hold the blob")
			}
			if st := ap.Stats(); st.Healed != 1 || st.Sources["liar"].Rejected != 1 {
				t.Fatalf("stats %+v; want one heal and the liar rejected once", st)
			}
			if left, _ := filepath.Glob(filepath.Join(data, ".trowfs", "*")); len(left) != 0 {
				t.Fatalf("temporary files left: %v", left)
			}
		})
	}
}

// TestHealOfAManifest fetches a damaged manifest's bytes from the manifests endpoint by digest.
func TestHealOfAManifest(t *testing.T) {
	a := regtest.StartDistribution(t, t.TempDir())
	img, err := random.Image(1000, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.NewTag(a.Addr+"/org/app:v1", name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	md, _ := img.Digest()
	d := digest.Digest(md.String())
	data := t.TempDir()
	rel := blobRel(d)
	p := filepath.Join(data, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	rotten := bytes.Clone(raw)
	rotten[len(rotten)/2] ^= 0x20
	if err := os.WriteFile(p, rotten, 0o644); err != nil {
		t.Fatal(err)
	}
	ap := newHealer(t)
	from, err := ap.Heal(context.Background(), oci.HealRequest{DataDir: data, RelPath: rel, Digest: d, Size: -1,
		Repos: []string{"org/app"}, Manifest: true}, []peers.Source{{Name: "a", RegistryURL: a.URL()}})
	if err != nil || from != "a" {
		t.Fatalf("Heal of a manifest = %q, %v", from, err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, raw) {
		t.Fatal("the healed file does not hold the manifest")
	}
}
