package registry

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/hashtree"
)

// dirSource reads from a real directory.
type dirSource struct{ root string }

var errEscape = errors.New("path escapes the root")

func (s dirSource) ReadFile(rel string) ([]byte, error) {
	if !filepath.IsLocal(rel) {
		return nil, errEscape
	}
	return os.ReadFile(filepath.Join(s.root, filepath.FromSlash(rel)))
}

func (s dirSource) DBPath() string { return filepath.Join(s.root, "trow.db") }

// fileInfo hashes one file the way the mount would: blob paths get
// Verified or Mismatch, everything else Unverified.
func fileInfo(t testing.TB, l Layout, root, rel string) FileInfo {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	fi := FileInfo{Path: rel, Size: int64(len(b)), Digest: sha256.Sum256(b)}
	if d, ok := l.BlobDigest(rel); ok {
		fi.Status = hashtree.StatusMismatch
		var got string
		switch d.Algorithm() {
		case "sha512":
			got = fmt.Sprintf("sha512:%x", sha512.Sum512(b))
		default:
			got = fmt.Sprintf("sha256:%x", sha256.Sum256(b))
		}
		if got == string(d) {
			fi.Status = hashtree.StatusVerified
		}
	}
	return fi
}

// scan lists every regular file under root (excluding trow.db side files,
// as the default excludes would).
func scan(t testing.TB, l Layout, root string) []FileInfo {
	t.Helper()
	var out []FileInfo
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, "trow.db-") {
			return nil
		}
		out = append(out, fileInfo(t, l, root, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeFile(t testing.TB, root, rel string, b []byte) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// content is a blob with its digest.
type content struct {
	d digest.Digest
	b []byte
}

func newContent(b []byte) content { return content{digest.FromBytes(b), b} }

// image is a generated image: config, layers and the manifest itself.
type image struct {
	config   content
	layers   []content
	manifest content
}

func (im image) blobs() []content { return append([]content{im.config}, im.layers...) }

func desc(mt string, c content) map[string]any {
	return map[string]any{"mediaType": mt, "digest": c.d.String(), "size": len(c.b)}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// makeImage builds an image with n random layers (OCI or Docker schema2).
func makeImage(rng *rand.Rand, n int, docker bool) image {
	var im image
	rnd := func(k int) []byte {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	im.config = newContent(mustJSON(map[string]any{"architecture": "amd64", "os": "linux", "salt": fmt.Sprintf("%x", rnd(8))}))
	layers := []any{}
	for i := 0; i < n; i++ {
		c := newContent(rnd(64 + rng.IntN(256)))
		im.layers = append(im.layers, c)
		layers = append(layers, desc("application/vnd.oci.image.layer.v1.tar+gzip", c))
	}
	mt, cmt := MediaTypeOCIManifest, "application/vnd.oci.image.config.v1+json"
	if docker {
		mt, cmt = MediaTypeDockerManifest, "application/vnd.docker.container.image.v1+json"
	}
	im.manifest = newContent(mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": mt, "config": desc(cmt, im.config), "layers": layers,
	}))
	return im
}

// makeIndex builds an OCI index over the given manifests.
func makeIndex(children ...content) content {
	ms := []any{}
	for _, c := range children {
		ms = append(ms, desc(MediaTypeOCIManifest, c))
	}
	return newContent(mustJSON(map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIIndex, "manifests": ms}))
}

// writer writes one layout's files.
type writer interface {
	blob(repo string, c content)           // a blob (layer, config) in repo's store
	manifest(repo string, c content)       // a manifest pushed to repo (untagged)
	tag(repo, tag string, d digest.Digest) // point repo:tag at d
	blobPath(d digest.Digest, repo string) string
	tagPath(repo, tag string) string
	layout() Layout
}

type trowFilesWriter struct {
	t    testing.TB
	root string
	now  time.Time
}

func (w *trowFilesWriter) layout() Layout { return TrowFiles }
func (w *trowFilesWriter) blobPath(d digest.Digest, _ string) string {
	return "blobs/sha256/" + d.Encoded()
}
func (w *trowFilesWriter) tagPath(repo, tag string) string { return "manifests/" + repo + "/" + tag }
func (w *trowFilesWriter) blob(_ string, c content)        { writeFile(w.t, w.root, w.blobPath(c.d, ""), c.b) }
func (w *trowFilesWriter) manifest(repo string, c content) {
	w.blob(repo, c)
	w.tag(repo, c.d.String(), c.d)
}

// tag appends a line (v0.4+ order, newest last).
func (w *trowFilesWriter) tag(repo, tag string, d digest.Digest) {
	w.now = w.now.Add(time.Second)
	p := filepath.Join(w.root, filepath.FromSlash(w.tagPath(repo, tag)))
	old, _ := os.ReadFile(p)
	line := d.String() + " " + w.now.UTC().Format(time.RFC3339Nano) + "\n"
	writeFile(w.t, w.root, w.tagPath(repo, tag), append(old, line...))
}

type distWriter struct {
	t    testing.TB
	root string
}

func (w *distWriter) layout() Layout { return Distribution }
func (w *distWriter) blobPath(d digest.Digest, _ string) string {
	return distRoot + "/blobs/sha256/" + d.Encoded()[:2] + "/" + d.Encoded() + "/data"
}
func (w *distWriter) tagPath(repo, tag string) string {
	return distRoot + "/repositories/" + repo + "/_manifests/tags/" + tag + "/current/link"
}
func (w *distWriter) blob(_ string, c content) { writeFile(w.t, w.root, w.blobPath(c.d, ""), c.b) }
func (w *distWriter) link(repo, kind string, d digest.Digest) {
	writeFile(w.t, w.root, distRoot+"/repositories/"+repo+"/"+kind+"/sha256/"+d.Encoded()+"/link", []byte(d))
}
func (w *distWriter) manifest(repo string, c content) {
	w.blob(repo, c)
	w.link(repo, "_manifests/revisions", c.d)
}
func (w *distWriter) tag(repo, tag string, d digest.Digest) {
	writeFile(w.t, w.root, w.tagPath(repo, tag), []byte(d))
	writeFile(w.t, w.root, distRoot+"/repositories/"+repo+"/_manifests/tags/"+tag+"/index/sha256/"+d.Encoded()+"/link", []byte(d))
}

// ociWriter writes one layout per repository (olareg style).
type ociWriter struct {
	t    testing.TB
	root string
}

func (w *ociWriter) layout() Layout { return OCILayout }
func (w *ociWriter) blobPath(d digest.Digest, repo string) string {
	return ociDirJoin(ociDirOfRepo(repo), "blobs/sha256/"+d.Encoded())
}
func (w *ociWriter) tagPath(repo, tag string) string {
	return ociDirJoin(ociDirOfRepo(repo), "index.json")
}
func (w *ociWriter) blob(repo string, c content) { writeFile(w.t, w.root, w.blobPath(c.d, repo), c.b) }
func (w *ociWriter) index(repo string) (map[string]any, string) {
	p := w.tagPath(repo, "")
	idx := map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIIndex, "manifests": []any{}}
	if b, err := os.ReadFile(filepath.Join(w.root, filepath.FromSlash(p))); err == nil {
		_ = json.Unmarshal(b, &idx)
	} else {
		writeFile(w.t, w.root, ociDirJoin(ociDirOfRepo(repo), "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
	}
	return idx, p
}
func (w *ociWriter) manifest(repo string, c content) {
	w.blob(repo, c)
	idx, p := w.index(repo)
	ms := idx["manifests"].([]any)
	ms = append(ms, desc(MediaTypeOCIManifest, c))
	idx["manifests"] = ms
	writeFile(w.t, w.root, p, mustJSON(idx))
}
func (w *ociWriter) tag(repo, tag string, d digest.Digest) {
	idx, p := w.index(repo)
	ms := idx["manifests"].([]any)
	out := []any{}
	for _, m := range ms {
		mm := m.(map[string]any)
		if a, _ := mm["annotations"].(map[string]any); a != nil && a[refNameAnnotation] == tag {
			continue
		}
		out = append(out, m)
	}
	out = append(out, map[string]any{"mediaType": MediaTypeOCIManifest, "digest": d.String(), "size": 1,
		"annotations": map[string]any{refNameAnnotation: tag}})
	idx["manifests"] = out
	writeFile(w.t, w.root, p, mustJSON(idx))
}

func ociDirJoin(dir, rel string) string {
	if dir == "" {
		return rel
	}
	return dir + "/" + rel
}

// newRegistry creates a Registry over root and registers Close.
func newRegistry(t testing.TB, l Layout, root string, opts Options) *Registry {
	t.Helper()
	r := New(l, dirSource{root}, opts)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// normalise drops the time stamps so that reports can be compared.
func normalise(rep Report) Report {
	rep.UpdatedAt = time.Time{}
	rep.DBLoadedAt = nil
	return rep
}
