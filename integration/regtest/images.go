package regtest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// OCI media types of the images the helpers push.
const (
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// requestTimeout bounds one HTTP request to a registry.
const requestTimeout = 2 * time.Minute

// Image is an image the helpers pushed: enough to pull it back, check it, and predict what a
// garbage collector may reclaim once it is deleted.
type Image struct {
	Repo string
	Tag  string
	// Digest is the manifest's digest.
	Digest string
	Config string
	Layers []string
	// Bytes is the size of the manifest, the config and the layers together.
	Bytes int64
}

// Blobs returns the digests of the manifest, the config and the layers: every blob the image
// stores in a registry that keeps manifests as blobs.
func (im Image) Blobs() []string {
	return append([]string{im.Digest, im.Config}, im.Layers...)
}

// Ref is repo:tag.
func (im Image) Ref() string { return im.Repo + ":" + im.Tag }

// ImageOptions shape the synthetic images of PushImagesWith.
type ImageOptions struct {
	// Layers per image (at least 1). Layer 0 is a base layer shared by every image of the same seed;
	// the others are unique to their image.
	Layers int
	// LayerSize is the size of the random file inside each layer's tar archive.
	LayerSize int
	// Concurrency is the number of images pushed or pulled at once.
	Concurrency int
}

// DefaultImageOptions returns what PushImages and PullImages use: a shared base layer and two
// unique ones of 32 KiB, two images at a time.
func DefaultImageOptions() ImageOptions {
	return ImageOptions{Layers: 3, LayerSize: 32 << 10, Concurrency: 2}
}

// PushImages pushes n synthetic images to repo on the registry at addr (host:port, plain HTTP) with
// DefaultImageOptions, tagged img-0 .. img-(n-1), and returns them with the bytes uploaded. The
// content is a pure function of seed, so two runs with the same seed push the same digests.
func PushImages(tb testing.TB, addr, repo string, n int, seed uint64) ([]Image, int64) {
	tb.Helper()
	return PushImagesWith(tb, addr, repo, n, seed, DefaultImageOptions())
}

// PushImagesWith is PushImages with explicit options. Blobs the registry already has in the
// repository (HEAD answers 200) are not uploaded again and do not count as bytes moved. Each blob is
// uploaded as docker and containerd do: POST an upload session, PATCH the bytes, PUT the digest.
func PushImagesWith(tb testing.TB, addr, repo string, n int, seed uint64, opt ImageOptions) ([]Image, int64) {
	tb.Helper()
	if opt.Layers < 1 || opt.LayerSize < 0 || opt.Concurrency < 1 || n < 0 {
		tb.Fatalf("regtest: PushImagesWith: bad options %+v for %d images", opt, n)
	}
	c := newClient(addr)
	defer c.close()
	images := make([]Image, n)
	moved, err := forEach(n, opt.Concurrency, func(i int) (int64, error) {
		im, blobs, err := buildImage(repo, i, seed, opt)
		if err != nil {
			return 0, err
		}
		images[i] = im
		return c.pushImage(im, blobs)
	})
	if err != nil {
		tb.Fatalf("regtest: push to %s/%s: %v", addr, repo, err)
	}
	return images, moved
}

// PullImages pulls every image by tag from the registry at addr, reads every blob in full, checks
// that the manifest is the one pushed and every blob matches its digest, and returns the bytes read.
func PullImages(tb testing.TB, addr string, images []Image) int64 {
	tb.Helper()
	return PullImagesWith(tb, addr, images, DefaultImageOptions().Concurrency)
}

// PullImagesWith is PullImages with the number of images pulled at once.
func PullImagesWith(tb testing.TB, addr string, images []Image, concurrency int) int64 {
	tb.Helper()
	if concurrency < 1 {
		tb.Fatalf("regtest: PullImagesWith: concurrency %d", concurrency)
	}
	c := newClient(addr)
	defer c.close()
	moved, err := forEach(len(images), concurrency, func(i int) (int64, error) {
		return c.pullImage(images[i])
	})
	if err != nil {
		tb.Fatalf("regtest: pull from %s: %v", addr, err)
	}
	return moved
}

// DeleteManifest deletes a manifest by digest (DELETE /v2/<repo>/manifests/<digest>), which also
// untags it.
func DeleteManifest(tb testing.TB, addr, repo, digest string) {
	tb.Helper()
	c := newClient(addr)
	defer c.close()
	resp, err := c.do(http.MethodDelete, c.url("/v2/"+repo+"/manifests/"+digest), nil, nil)
	if err != nil {
		tb.Fatalf("regtest: delete %s@%s: %v", repo, digest, err)
	}
	if err := expect(resp, http.StatusAccepted); err != nil {
		tb.Fatalf("regtest: delete %s@%s: %v", repo, digest, err)
	}
}

// Unreferenced returns the sorted blobs of removed that no image of kept uses: what a collector may
// reclaim once the removed images' manifests are deleted.
func Unreferenced(removed, kept []Image) []string {
	used := map[string]bool{}
	for _, im := range kept {
		for _, b := range im.Blobs() {
			used[b] = true
		}
	}
	var out []string
	for _, im := range removed {
		for _, b := range im.Blobs() {
			if !used[b] {
				out = append(out, b)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// forEach runs f(0..n-1) on up to workers goroutines, sums what they return and joins their errors.
func forEach(n, workers int, f func(i int) (int64, error)) (int64, error) {
	var (
		// mu guards total and errs.
		mu    sync.Mutex
		total int64
		errs  []error
		wg    sync.WaitGroup
	)
	next := make(chan int)
	for range min(workers, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				v, err := f(i)
				mu.Lock()
				total += v
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return total, errors.Join(errs...)
}

// blob is content with its digest.
type blob struct {
	digest string
	data   []byte
}

func newBlob(data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{digest: "sha256:" + hex.EncodeToString(sum[:]), data: data}
}

// buildImage makes image i of a seed: a valid OCI image whose layers are uncompressed tar archives
// each holding one file of random bytes. Layer 0 depends on the seed only (shared); the rest on the
// seed, i and the layer index. It returns the blobs in upload order: layers, config, then the
// manifest last.
func buildImage(repo string, i int, seed uint64, opt ImageOptions) (Image, []blob, error) {
	var layers []blob
	for j := range opt.Layers {
		stream := uint64(i + 1)
		if j == 0 {
			stream = 0
		}
		layers = append(layers, newBlob(layerTar(seed, stream, uint64(j), opt.LayerSize)))
	}
	type descriptor struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int    `json:"size"`
	}
	diffIDs := make([]string, len(layers))
	layerDescs := make([]descriptor, len(layers))
	for j, l := range layers {
		diffIDs[j] = l.digest // uncompressed layers: the diff ID is the digest
		layerDescs[j] = descriptor{MediaType: MediaTypeLayer, Digest: l.digest, Size: len(l.data)}
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Labels": map[string]string{"org.trowfs.regtest.image": fmt.Sprint(i)}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return Image{}, nil, fmt.Errorf("image config: %w", err)
	}
	config := newBlob(cfg)
	man, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeManifest,
		"config":        descriptor{MediaType: MediaTypeConfig, Digest: config.digest, Size: len(config.data)},
		"layers":        layerDescs,
	})
	if err != nil {
		return Image{}, nil, fmt.Errorf("image manifest: %w", err)
	}
	manifest := newBlob(man)
	im := Image{Repo: repo, Tag: fmt.Sprintf("img-%d", i), Digest: manifest.digest, Config: config.digest}
	im.Bytes = int64(len(manifest.data) + len(config.data))
	for _, l := range layers {
		im.Layers = append(im.Layers, l.digest)
		im.Bytes += int64(len(l.data))
	}
	return im, append(append(layers, config), manifest), nil
}

// layerTar is a deterministic tar archive holding one file of size random bytes drawn from a
// ChaCha8 stream keyed by (seed, stream, layer).
func layerTar(seed, stream, layer uint64, size int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], stream)
	binary.LittleEndian.PutUint64(key[16:], layer)
	copy(key[24:], "trowfs-r")
	rng := rand.NewChaCha8(key)
	data := make([]byte, size)
	_, _ = rng.Read(data) // ChaCha8.Read never fails
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Name:    fmt.Sprintf("regtest/s%d-l%d.bin", stream, layer),
		Mode:    0o644,
		Size:    int64(size),
		ModTime: time.Unix(0, 0),
		Format:  tar.FormatPAX,
	}
	// Writes to a bytes.Buffer cannot fail, and the header is valid by construction.
	_ = tw.WriteHeader(hdr)
	_, _ = tw.Write(data)
	_ = tw.Close()
	return buf.Bytes()
}

// client is a minimal OCI distribution client over plain HTTP.
type client struct {
	base *url.URL
	http *http.Client
}

func newClient(addr string) *client {
	return &client{
		base: &url.URL{Scheme: "http", Host: addr},
		// No proxy: the registries listen on loopback only.
		http: &http.Client{Timeout: requestTimeout, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8}},
	}
}

func (c *client) close() { c.http.CloseIdleConnections() }

func (c *client) url(path string) string {
	return c.base.ResolveReference(&url.URL{Path: path}).String()
}

func (c *client) do(method, rawURL string, body []byte, header http.Header) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, r)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.ContentLength = int64(len(body))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelBody releases the request's context when its body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// expect closes resp and returns an error unless its status is one of want.
func expect(resp *http.Response, want ...int) error {
	defer resp.Body.Close()
	if slices.Contains(want, resp.StatusCode) {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	return fmt.Errorf("%s %s: status %d, want %v: %s", resp.Request.Method, resp.Request.URL.Path,
		resp.StatusCode, want, strings.TrimSpace(string(msg)))
}

// location resolves an upload session's Location header against the registry's URL.
func (c *client) location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("%s %s: no Location header", resp.Request.Method, resp.Request.URL.Path)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("upload Location %q: %w", loc, err)
	}
	return resp.Request.URL.ResolveReference(u), nil
}

// pushImage uploads the blobs the repository lacks, then the manifest under the image's tag, and
// returns the bytes uploaded.
func (c *client) pushImage(im Image, blobs []blob) (int64, error) {
	var moved int64
	for _, b := range blobs[:len(blobs)-1] {
		n, err := c.pushBlob(im.Repo, b)
		if err != nil {
			return moved, fmt.Errorf("%s: %w", im.Ref(), err)
		}
		moved += n
	}
	m := blobs[len(blobs)-1]
	resp, err := c.do(http.MethodPut, c.url("/v2/"+im.Repo+"/manifests/"+im.Tag), m.data,
		http.Header{"Content-Type": {MediaTypeManifest}})
	if err != nil {
		return moved, fmt.Errorf("%s: put manifest: %w", im.Ref(), err)
	}
	got := resp.Header.Get("Docker-Content-Digest")
	if err := expect(resp, http.StatusCreated); err != nil {
		return moved, fmt.Errorf("%s: %w", im.Ref(), err)
	}
	if got != "" && got != m.digest {
		return moved, fmt.Errorf("%s: registry says the manifest is %s, it is %s", im.Ref(), got, m.digest)
	}
	return moved + int64(len(m.data)), nil
}

// pushBlob uploads b unless the repository has it: POST, PATCH, PUT ?digest=.
func (c *client) pushBlob(repo string, b blob) (int64, error) {
	resp, err := c.do(http.MethodHead, c.url("/v2/"+repo+"/blobs/"+b.digest), nil, nil)
	if err != nil {
		return 0, fmt.Errorf("head blob %s: %w", b.digest, err)
	}
	if resp.StatusCode == http.StatusOK {
		return 0, expect(resp, http.StatusOK)
	}
	if err := expect(resp, http.StatusNotFound); err != nil {
		return 0, err
	}
	resp, err = c.do(http.MethodPost, c.url("/v2/"+repo+"/blobs/uploads/"), nil, nil)
	if err != nil {
		return 0, fmt.Errorf("start upload of %s: %w", b.digest, err)
	}
	loc, err := c.location(resp)
	if err2 := expect(resp, http.StatusAccepted); err2 != nil {
		return 0, err2
	}
	if err != nil {
		return 0, err
	}
	resp, err = c.do(http.MethodPatch, loc.String(), b.data, http.Header{
		"Content-Type":  {"application/octet-stream"},
		"Content-Range": {fmt.Sprintf("0-%d", max(len(b.data)-1, 0))},
	})
	if err != nil {
		return 0, fmt.Errorf("patch %s: %w", b.digest, err)
	}
	loc, err = c.location(resp)
	if err2 := expect(resp, http.StatusAccepted, http.StatusNoContent); err2 != nil {
		return 0, err2
	}
	if err != nil {
		return 0, err
	}
	q := loc.Query()
	q.Set("digest", b.digest)
	loc.RawQuery = q.Encode()
	resp, err = c.do(http.MethodPut, loc.String(), nil, nil)
	if err != nil {
		return 0, fmt.Errorf("commit %s: %w", b.digest, err)
	}
	if err := expect(resp, http.StatusCreated); err != nil {
		return 0, err
	}
	return int64(len(b.data)), nil
}

// pullImage fetches the manifest by tag and every blob it references, checking each digest, and
// returns the bytes read.
func (c *client) pullImage(im Image) (int64, error) {
	resp, err := c.do(http.MethodGet, c.url("/v2/"+im.Repo+"/manifests/"+im.Tag), nil,
		http.Header{"Accept": {MediaTypeManifest}})
	if err != nil {
		return 0, fmt.Errorf("%s: get manifest: %w", im.Ref(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %w", im.Ref(), expect(resp, http.StatusOK))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("%s: read manifest: %w", im.Ref(), err)
	}
	if d := newBlob(data).digest; d != im.Digest {
		return 0, fmt.Errorf("%s: manifest is %s, pushed %s", im.Ref(), d, im.Digest)
	}
	var m struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return 0, fmt.Errorf("%s: parse manifest: %w", im.Ref(), err)
	}
	moved := int64(len(data))
	refs := []string{m.Config.Digest}
	for _, l := range m.Layers {
		refs = append(refs, l.Digest)
	}
	for _, d := range refs {
		n, err := c.pullBlob(im.Repo, d)
		moved += n
		if err != nil {
			return moved, fmt.Errorf("%s: %w", im.Ref(), err)
		}
	}
	return moved, nil
}

// pullBlob reads a blob in full, hashing as it streams, and checks it against its digest.
func (c *client) pullBlob(repo, digest string) (int64, error) {
	alg, want, ok := strings.Cut(digest, ":")
	if !ok || alg != "sha256" {
		return 0, fmt.Errorf("blob %q: only sha256 digests are pulled", digest)
	}
	resp, err := c.do(http.MethodGet, c.url("/v2/"+repo+"/blobs/"+digest), nil, nil)
	if err != nil {
		return 0, fmt.Errorf("get blob %s: %w", digest, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, expect(resp, http.StatusOK)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return n, fmt.Errorf("read blob %s: %w", digest, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return n, fmt.Errorf("blob %s: content hashes to sha256:%s", digest, got)
	}
	return n, nil
}
