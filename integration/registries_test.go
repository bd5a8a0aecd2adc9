package integration

// Real registries on a plain directory and on a trowfs mount: the CNCF distribution registry
// v3.1.2 and olareg v0.1.2 driven by integration/regtest (tools from `make tools`).
//
// The plain-directory tests prove the harness: the conformance profile gives 0 failures, the
// garbage-collect parser finds exactly the blobs of a deleted image, olareg round-trips images.
// The mount tests repeat the same workloads through trowfs and compare: the same conformance
// outcome, trowfs's dangling list equal to what garbage-collect --dry-run would delete, and the
// tree kept inline equal to an offline rescan after unmount.

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/regtest"
)

// stateTimeout bounds the wait for trowfs's .state to reflect what a registry just did.
const stateTimeout = 30 * time.Second

// minConformanceCases guards against a suite run that tested almost nothing: the profile runs
// about 400 leaf cases; a broken configuration would run a handful.
const minConformanceCases = 100

// checkConformance fails the test unless res has no failed case and ran a real number of cases.
func checkConformance(t *testing.T, where string, res regtest.Result) {
	t.Helper()
	t.Logf("conformance on %s: %s", where, res)
	if f := res.Failures(); len(f) > 0 {
		t.Errorf("conformance on %s: %d failed cases:\n  %s\n%s", where, len(f), strings.Join(f, "\n  "), res.Output)
	}
	if res.Passed < minConformanceCases {
		t.Errorf("conformance on %s: only %d cases passed (want at least %d): the profile ran almost nothing\n%s",
			where, res.Passed, minConformanceCases, res.Output)
	}
}

func TestRegistriesDistributionConformancePlain(t *testing.T) {
	reg := regtest.StartDistribution(t, t.TempDir())
	checkConformance(t, "a plain directory", regtest.RunConformance(t, reg.Addr))
}

// gcWorkload pushes 5 images sharing a base layer to the distribution registry on dir, deletes the
// manifest of one, stops the registry and returns the deleted image, the kept ones and the blobs a
// collector may reclaim (the deleted image's manifest, config and unique layers).
func gcWorkload(t *testing.T, dir string) (reg *regtest.Registry, deleted regtest.Image, kept []regtest.Image, reclaimable []string) {
	t.Helper()
	reg = regtest.StartDistribution(t, dir)
	const repo = "trowfs/gc"
	images, moved := regtest.PushImages(t, reg.Addr, repo, 5, 1)
	var total int64
	for _, im := range images {
		total += im.Bytes
	}
	// Every image shares layer 0, uploaded once: less than the total, but more than any one image.
	if moved <= images[0].Bytes || moved >= total {
		t.Fatalf("pushed %d bytes for 5 images of %d bytes in all", moved, total)
	}
	if got := regtest.PullImages(t, reg.Addr, images); got != total {
		t.Fatalf("pulled %d bytes, the images hold %d", got, total)
	}
	deleted = images[2]
	kept = slices.Concat(images[:2], images[3:])
	regtest.DeleteManifest(t, reg.Addr, repo, deleted.Digest)
	reg.Stop(t) // garbage-collect runs offline
	reclaimable = regtest.Unreferenced([]regtest.Image{deleted}, kept)
	if len(reclaimable) != len(deleted.Blobs())-1 {
		t.Fatalf("the deleted image should free all its blobs but the shared base layer: %v", reclaimable)
	}
	return reg, deleted, kept, reclaimable
}

// distributionBlobPath is where the distribution registry keeps a blob's bytes under its root.
func distributionBlobPath(root, digest string) string {
	alg, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(root, "docker", "registry", "v2", "blobs", alg, hex[:2], hex, "data")
}

func TestRegistriesDistributionGCPlain(t *testing.T) {
	root := t.TempDir()
	reg, _, kept, reclaimable := gcWorkload(t, root)

	eligible, out := regtest.GarbageCollect(t, reg.ConfigPath, true, false)
	if !slices.Equal(eligible, reclaimable) {
		t.Fatalf("garbage-collect --dry-run would delete\n  %v\nthe deleted image frees\n  %v\noutput:\n%s", eligible, reclaimable, out)
	}
	for _, d := range eligible {
		if _, err := os.Stat(distributionBlobPath(root, d)); err != nil {
			t.Errorf("a dry run must delete nothing: %v", err)
		}
	}

	deletedBlobs, _ := regtest.GarbageCollect(t, reg.ConfigPath, false, false)
	if !slices.Equal(deletedBlobs, eligible) {
		t.Errorf("garbage-collect deleted %v, its dry run announced %v", deletedBlobs, eligible)
	}
	for _, d := range eligible {
		if _, err := os.Stat(distributionBlobPath(root, d)); !os.IsNotExist(err) {
			t.Errorf("blob %s should be gone after garbage-collect: %v", d, err)
		}
	}
	if again, out := regtest.GarbageCollect(t, reg.ConfigPath, true, false); len(again) != 0 {
		t.Errorf("after garbage-collect, a dry run still finds %v\n%s", again, out)
	}

	// What the collector kept is still whole.
	reg2 := regtest.StartDistribution(t, root)
	regtest.PullImages(t, reg2.Addr, kept)
}

// untaggedWorkload pushes 4 images, then pushes another image under the tag of the first, which
// leaves the first image's manifest untagged but still a revision of the repository. It stops the
// registry and returns the blobs only `garbage-collect --delete-untagged` may reclaim.
func untaggedWorkload(t *testing.T, dir string) (reg *regtest.Registry, reclaimable []string) {
	t.Helper()
	reg = regtest.StartDistribution(t, dir)
	const repo = "trowfs/untagged"
	images, _ := regtest.PushImages(t, reg.Addr, repo, 4, 4)
	replacement, _ := regtest.PushImages(t, reg.Addr, repo, 1, 5) // tag img-0 again, other content
	if replacement[0].Tag != images[0].Tag || replacement[0].Digest == images[0].Digest {
		t.Fatalf("the replacement must retag %s with another manifest", images[0].Tag)
	}
	regtest.PullImages(t, reg.Addr, slices.Concat(replacement, images[1:]))
	reg.Stop(t)
	return reg, regtest.Unreferenced(images[:1], slices.Concat(replacement, images[1:]))
}

func TestRegistriesDistributionGCUntaggedPlain(t *testing.T) {
	reg, reclaimable := untaggedWorkload(t, t.TempDir())
	if eligible, out := regtest.GarbageCollect(t, reg.ConfigPath, true, false); len(eligible) != 0 {
		t.Errorf("without --delete-untagged an untagged revision is kept, yet the dry run would delete %v\n%s", eligible, out)
	}
	if eligible, out := regtest.GarbageCollect(t, reg.ConfigPath, true, true); !slices.Equal(eligible, reclaimable) {
		t.Errorf("garbage-collect --dry-run --delete-untagged would delete\n  %v\nthe untagged image frees\n  %v\n%s", eligible, reclaimable, out)
	}
}

func TestRegistriesOlaregConformancePlain(t *testing.T) {
	reg := regtest.StartOlareg(t, t.TempDir())
	checkConformance(t, "a plain directory (olareg)", regtest.RunConformance(t, reg.Addr))
}

func TestRegistriesOlaregPlain(t *testing.T) {
	dir := t.TempDir()
	reg := regtest.StartOlareg(t, dir)
	const repo = "trowfs/olareg"
	images, _ := regtest.PushImages(t, reg.Addr, repo, 3, 2)
	var total int64
	for _, im := range images {
		total += im.Bytes
	}
	if got := regtest.PullImages(t, reg.Addr, images); got != total {
		t.Fatalf("pulled %d bytes, the images hold %d", got, total)
	}
	// olareg keeps one OCI image layout per repository.
	for _, f := range []string{"oci-layout", "index.json"} {
		if _, err := os.Stat(filepath.Join(dir, repo, f)); err != nil {
			t.Errorf("olareg layout: %v", err)
		}
	}
	for _, d := range images[1].Blobs() {
		alg, hex, _ := strings.Cut(d, ":")
		if _, err := os.Stat(filepath.Join(dir, repo, "blobs", alg, hex)); err != nil {
			t.Errorf("olareg layout: blob %s: %v", d, err)
		}
	}
	regtest.DeleteManifest(t, reg.Addr, repo, images[1].Digest)
	// With its background collection off, olareg keeps every blob of the deleted image: they are
	// what a consistency check must report as dangling.
	for _, d := range regtest.Unreferenced(images[1:2], []regtest.Image{images[0], images[2]}) {
		alg, hex, _ := strings.Cut(d, ":")
		if _, err := os.Stat(filepath.Join(dir, repo, "blobs", alg, hex)); err != nil {
			t.Errorf("olareg removed a blob of the deleted image: %v", err)
		}
	}
	index, err := os.ReadFile(filepath.Join(dir, repo, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(index), images[1].Digest) {
		t.Errorf("index.json still lists the deleted manifest %s:\n%s", images[1].Digest, index)
	}
	regtest.PullImages(t, reg.Addr, []regtest.Image{images[0], images[2]})
	reg.Stop(t)
}
