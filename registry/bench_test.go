package registry

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"testing"
)

// memSource is an in-memory Source for benchmarks.
type memSource map[string][]byte

func (m memSource) ReadFile(rel string) ([]byte, error) {
	b, ok := m[rel]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return b, nil
}
func (m memSource) DBPath() string { return "" }

// distFixture builds a distribution registry of n images with layers
// layers each, in memory.
func distFixture(n, layers int) (memSource, []FileInfo) {
	src := memSource{}
	var files []FileInfo
	w := &distWriter{}
	add := func(rel string, b []byte) {
		src[rel] = b
		files = append(files, FileInfo{Path: rel, Size: int64(len(b)), Digest: sha256.Sum256(b)})
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < n; i++ {
		repo := fmt.Sprintf("org/app%d", i%50)
		im := makeImage(rng, layers, false)
		for _, c := range append(im.blobs(), im.manifest) {
			add(w.blobPath(c.d, ""), c.b)
		}
		add(distRoot+"/repositories/"+repo+"/_manifests/revisions/sha256/"+im.manifest.d.Encoded()+"/link", []byte(im.manifest.d))
		add(w.tagPath(repo, fmt.Sprintf("v%d", i)), []byte(im.manifest.d))
	}
	return src, files
}

// BenchmarkReport measures answering "is this registry consistent?" for
// 10k blobs after one change (the warm path the mount takes).
func BenchmarkReport(b *testing.B) {
	src, files := distFixture(2000, 4) // 2000 × (config + 4 layers) = 10k blobs
	r := New(Distribution, src, Options{})
	defer r.Close()
	r.Reset(files)
	if rep := r.Report(); !rep.OK || rep.Blobs != 12000 {
		b.Fatalf("fixture not clean: blobs %d ok %v", rep.Blobs, rep.OK)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Update(files[i%len(files)])
		r.Report()
	}
	b.ReportMetric(r.Stats().ManifestCache.Ratio, "cache-hit-ratio")
}

// BenchmarkUpdate measures the cost of recording one change.
func BenchmarkUpdate(b *testing.B) {
	src, files := distFixture(200, 4)
	r := New(Distribution, src, Options{})
	defer r.Close()
	r.Reset(files)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Update(files[i%len(files)])
	}
}

// BenchmarkReset measures a full load (cold manifest cache).
func BenchmarkReset(b *testing.B) {
	src, files := distFixture(2000, 4)
	for i := 0; i < b.N; i++ {
		r := New(Distribution, src, Options{})
		r.Reset(files)
		r.Close()
	}
}
