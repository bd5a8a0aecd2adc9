package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// deepMkdirs makes levels directories of 200-byte names under dirFd with mkdirat from each
// parent's descriptor (a whole-path mkdir fails past PATH_MAX) and returns a descriptor of the
// deepest one and its path relative to dirFd.
func deepMkdirs(t *testing.T, dirFd, levels int) (int, string) {
	t.Helper()
	fd, err := unix.Openat(dirFd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for i := 0; i < levels; i++ {
		name := strings.Repeat(string(rune('a'+i%26)), 200)
		fd = mkdirAt(t, fd, name)
		segs = append(segs, name)
	}
	return fd, strings.Join(segs, "/")
}

// mkdirAt makes name in dirFd, closes dirFd and returns a descriptor of the new directory.
func mkdirAt(t *testing.T, dirFd int, name string) int {
	t.Helper()
	if err := unix.Mkdirat(dirFd, name, 0o755); err != nil {
		t.Fatal(err)
	}
	next, err := unix.Openat(dirFd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	unix.Close(dirFd)
	if err != nil {
		t.Fatal(err)
	}
	return next
}

func writeAt(t *testing.T, dirFd int, name, body string, flags int) {
	t.Helper()
	fd, err := unix.Openat(dirFd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC|flags, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(body)); err != nil {
		t.Fatal(err)
	}
}

// `trowfs verify` on a data directory whose tree is deeper than PATH_MAX (an OCI layout whose
// repository directory sits 42 levels of 200-byte names down, made in DATA directly) reports
// every file and exits 0; once the deep blob's content no longer matches its name it exits 4
// and names the blob.
func TestCLIVerifyTreeDeeperThanPathMax(t *testing.T) {
	trowfsbin.Require(t)
	data := t.TempDir()
	root, err := unix.Open(data, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	const index = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`
	writeAt(t, root, "oci-layout", `{"imageLayoutVersion":"1.0.0"}`, unix.O_EXCL)
	writeAt(t, root, "index.json", index, unix.O_EXCL)
	repo, deep := deepMkdirs(t, root, 42)
	defer unix.Close(repo)
	if len(deep) <= 8<<10 {
		t.Fatalf("deep path is only %d bytes", len(deep))
	}
	writeAt(t, repo, "oci-layout", `{"imageLayoutVersion":"1.0.0"}`, unix.O_EXCL)
	writeAt(t, repo, "index.json", index, unix.O_EXCL)
	writeAt(t, repo, "notes", "a plain file at depth", unix.O_EXCL)
	body := "a blob at depth 45"
	sum := sha256.Sum256([]byte(body))
	hexSum := hex.EncodeToString(sum[:])
	blobs := mkdirAt(t, mkdirAt(t, repo, "blobs"), "sha256")
	defer unix.Close(blobs)
	writeAt(t, blobs, hexSum, body, unix.O_EXCL)
	blobRel := deep + "/blobs/sha256/" + hexSum

	code, v := trowfsbin.Verify(t, data, "--layout", "oci-layout")
	if code != 0 || v.Files != 6 {
		t.Fatalf("verify of a tree deeper than PATH_MAX: exit %d, %d files (want 0 and 6); verdict %q, findings %+v", code, v.Files, v.Verdict, v.Findings)
	}

	writeAt(t, blobs, hexSum, "not what the name says", unix.O_TRUNC)
	code, v = trowfsbin.Verify(t, data, "--layout", "oci-layout")
	var named bool
	for _, f := range v.Findings {
		named = named || f.Path == blobRel && f.Kind == "mismatch"
	}
	if code != 4 || !named {
		t.Errorf("verify after corrupting the deep blob: exit %d (want 4), findings %+v; want a mismatch at the blob", code, v.Findings)
	}
}
