package registry

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Layout names the on-disk format of a registry's data directory.
type Layout string

// The layouts trowfs knows.
const (
	// TrowFiles is Trow v0.3 to v0.6: blobs/sha256/<hex>, manifests/<repo...>/<tag>.
	TrowFiles Layout = "trow-files"
	// TrowSQLite is Trow v0.7 and later: trow.db and a flat blobs/<alg>:<hex>.
	TrowSQLite Layout = "trow-sqlite"
	// Distribution is the CNCF distribution registry's filesystem driver.
	Distribution Layout = "distribution"
	// OCILayout is an OCI image layout at the root or one per repository directory.
	OCILayout Layout = "oci-layout"
	// Plain is anything else: no registry facts.
	Plain Layout = "plain"
)

// Layouts lists every layout, in documentation order.
var Layouts = []Layout{TrowFiles, TrowSQLite, Distribution, OCILayout, Plain}

// ErrUnknownLayout is returned by ParseLayout for a name it does not know.
var ErrUnknownLayout = errors.New("registry: unknown layout")

// ParseLayout parses a layout name. "auto" is not a layout: callers resolve
// it with Detect.
func ParseLayout(s string) (Layout, error) {
	for _, l := range Layouts {
		if string(l) == s {
			return l, nil
		}
	}
	return "", fmt.Errorf("%w %q (want one of trow-files, trow-sqlite, distribution, oci-layout, plain)", ErrUnknownLayout, s)
}

// String returns the layout name.
func (l Layout) String() string { return string(l) }

// distRoot is the distribution driver's root inside DATA.
const distRoot = "docker/registry/v2"

// detectMaxDepth bounds how deep Detect looks for per-repository OCI layouts.
const detectMaxDepth = 6

// detectMaxEntries bounds how many directory entries Detect reads in total.
const detectMaxEntries = 20000

// Detect guesses the layout of dataDir from what is in it. It only reads
// directory entries and never opens a file. An empty or unreadable
// directory is Plain.
func Detect(dataDir string) Layout {
	isFile := func(rel string) bool {
		fi, err := os.Lstat(filepath.Join(dataDir, rel))
		return err == nil && fi.Mode().IsRegular()
	}
	isDir := func(rel string) bool {
		fi, err := os.Lstat(filepath.Join(dataDir, rel))
		return err == nil && fi.IsDir()
	}
	switch {
	case isFile("trow.db"):
		return TrowSQLite
	case isDir(distRoot):
		return Distribution
	case isFile("oci-layout"):
		return OCILayout
	case isDir("blobs/sha256") && isDir("manifests"):
		return TrowFiles
	case isDir("blobs") && hasFlatBlob(filepath.Join(dataDir, "blobs")):
		return TrowSQLite
	}
	budget := detectMaxEntries
	if findOCILayout(dataDir, 0, &budget) {
		return OCILayout
	}
	return Plain
}

// hasFlatBlob reports whether dir holds an entry named like "sha256:<hex>".
func hasFlatBlob(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(64)
	for _, n := range names {
		if _, ok := flatBlobDigest(n); ok {
			return true
		}
	}
	return false
}

// findOCILayout looks for an "oci-layout" file in subdirectories of dir, as
// olareg keeps one layout per repository (repositories nest).
func findOCILayout(dir string, depth int, budget *int) bool {
	if depth > detectMaxDepth || *budget <= 0 {
		return false
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	*budget -= len(ents)
	for _, e := range ents {
		if depth > 0 && e.Name() == "oci-layout" && e.Type().IsRegular() {
			return true
		}
	}
	for _, e := range ents {
		// blobs/ and upload areas never hold layouts.
		if !e.IsDir() || e.Name() == "blobs" || e.Name() == "_uploads" {
			continue
		}
		if findOCILayout(filepath.Join(dir, e.Name()), depth+1, budget) {
			return true
		}
	}
	return false
}

// Excludes returns the default exclude globs for the layout's volatile
// paths (upload areas, SQLite's side files, temporary files). Glob syntax
// is the caller's: '*', '?' and [...] within one segment, '**' as a whole
// segment matches zero or more segments, and a pattern without '/' matches
// the base name anywhere.
func (l Layout) Excludes() []string {
	switch l {
	case TrowFiles:
		return []string{"scratch/**"}
	case TrowSQLite:
		return []string{"uploads/**", "trow.db-wal", "trow.db-shm", "trow.db-journal"}
	case Distribution:
		// _uploads holds blob uploads; the filesystem driver writes small
		// files (links) as "<name>.<uuid>.tmp" before renaming them.
		return []string{"**/_uploads/**", "link.*.tmp", "startedat.*.tmp"}
	case OCILayout:
		// olareg: uploads in <repo>/_uploads/upload.*, index.json rewritten
		// through os.CreateTemp(dir, "index.json.*").
		return []string{"**/_uploads/**", "index.json.*"}
	}
	return nil
}

// hexLen is the length of the hex encoding of each supported algorithm.
func hexLen(alg string) int {
	switch alg {
	case "sha256":
		return 64
	case "sha512":
		return 128
	}
	return 0
}

// validHex reports whether h is lowercase hex of the right length for alg.
func validHex(alg, h string) bool {
	n := hexLen(alg)
	if n == 0 || len(h) != n {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// parseDigest parses "<alg>:<hex>" for sha256 and sha512 with strict hex.
func parseDigest(s string) (digest.Digest, bool) {
	alg, h, ok := strings.Cut(s, ":")
	if !ok || !validHex(alg, h) {
		return "", false
	}
	return digest.Digest(s), true
}

// flatBlobDigest parses a trow-sqlite blob file name "sha256:<hex>".
func flatBlobDigest(name string) (digest.Digest, bool) { return parseDigest(name) }

// BlobDigest returns the digest a blob path names in this layout, or false
// if rel is not a blob path of the layout. Paths are slash-separated and
// relative to DATA.
func (l Layout) BlobDigest(rel string) (digest.Digest, bool) {
	_, d, ok := l.blobPath(rel)
	return d, ok
}

// blobPath is BlobDigest plus the blob store the path belongs to: "" for
// layouts with a single store, the layout directory for oci-layout.
func (l Layout) blobPath(rel string) (store string, d digest.Digest, ok bool) {
	switch l {
	case TrowFiles:
		h, ok := strings.CutPrefix(rel, "blobs/sha256/")
		if !ok || !validHex("sha256", h) {
			return "", "", false
		}
		return "", digest.Digest("sha256:" + h), true
	case TrowSQLite:
		name, ok := strings.CutPrefix(rel, "blobs/")
		if !ok {
			return "", "", false
		}
		d, ok := flatBlobDigest(name)
		return "", d, ok
	case Distribution:
		rest, ok := strings.CutPrefix(rel, distRoot+"/blobs/")
		if !ok {
			return "", "", false
		}
		p := strings.Split(rest, "/")
		if len(p) != 4 || p[3] != "data" || !validHex(p[0], p[2]) || p[1] != p[2][:2] {
			return "", "", false
		}
		return "", digest.Digest(p[0] + ":" + p[2]), true
	case OCILayout:
		p := strings.Split(rel, "/")
		n := len(p)
		if n < 3 || p[n-3] != "blobs" || !validHex(p[n-2], p[n-1]) {
			return "", "", false
		}
		return strings.Join(p[:n-3], "/"), digest.Digest(p[n-2] + ":" + p[n-1]), true
	}
	return "", "", false
}

// ociRepoName is the repository name of an OCI layout directory: the
// directory itself, or "." for a layout at the root of DATA.
func ociRepoName(dir string) string {
	if dir == "" {
		return "."
	}
	return dir
}

// ociDirOfRepo is the inverse of ociRepoName.
func ociDirOfRepo(repo string) string {
	if repo == "." {
		return ""
	}
	return repo
}

// parentDir returns the slash-separated parent of p, "" at the top.
func parentDir(p string) string {
	d := path.Dir(p)
	if d == "." {
		return ""
	}
	return d
}
