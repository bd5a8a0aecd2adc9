package registry

import (
	"time"
)

// Report is the consistency report of the whole registry. It is computed
// from the in-memory model and cached until the model changes. Lists are
// sorted and bounded by Options.MaxListed; the *_count fields are always
// exact and Truncated says whether any list was cut.
type Report struct {
	Layout       Layout `json:"layout"`
	Repositories int    `json:"repositories"`
	Tags         int    `json:"tags"`
	Manifests    int    `json:"manifests"`
	Blobs        int    `json:"blobs"`
	BlobBytes    int64  `json:"blob_bytes"`

	AllBlobDigest     string `json:"all_blob_digest"`
	AllManifestDigest string `json:"all_manifest_digest"`
	InSync            bool   `json:"in_sync"`
	// OK is true when InSync is true and every finding list is empty.
	OK bool `json:"ok"`

	Dangling        []DanglingBlob   `json:"dangling"`
	DanglingCount   int              `json:"dangling_count"`
	DanglingBytes   int64            `json:"dangling_bytes"`
	Missing         []MissingBlob    `json:"missing"`
	MissingCount    int              `json:"missing_count"`
	Mismatched      []MismatchedBlob `json:"mismatched"`
	MismatchedCount int              `json:"mismatched_count"`
	BrokenTags      []BrokenTag      `json:"broken_tags"`
	BrokenTagCount  int              `json:"broken_tag_count"`
	Unparsable      []Unparsable     `json:"unparsable"`
	UnparsableCount int              `json:"unparsable_count"`
	Truncated       bool             `json:"truncated"`

	DeleteUntagged bool       `json:"delete_untagged"`
	DBDigest       string     `json:"db_digest,omitempty"`
	DBError        string     `json:"db_error,omitempty"`
	DBLoadedAt     *time.Time `json:"db_loaded_at,omitempty"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// DanglingBlob is a blob that is present and that nothing keeps: the
// garbage collector would delete it.
type DanglingBlob struct {
	Digest string `json:"digest"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	// Repo is the repository owning the blob store (oci-layout only).
	Repo string `json:"repo,omitempty"`
	// Note explains a known origin, e.g. "tag history of org/app:latest"
	// in trow-files.
	Note string `json:"note,omitempty"`
}

// MissingBlob is a digest something needs but no file (or, in
// trow-sqlite, no manifest row) holds.
type MissingBlob struct {
	Digest string `json:"digest"`
	// Kind is "blob", or "manifest" for a manifest row missing from
	// trow.db (trow-sqlite only; not part of all_manifest_digest).
	Kind string `json:"kind"`
	// Repos are the repositories whose manifests need it.
	Repos []string `json:"repos"`
	// Manifests are the manifests referencing it; empty when it is
	// itself a manifest named by the repository (a revision link or an
	// untagged index.json entry).
	Manifests []string `json:"manifests,omitempty"`
	// Tags are the "repo:tag" whose images need it, directly or through an index.
	Tags []string `json:"tags,omitempty"`
}

// MismatchedBlob is a file at a blob path whose content does not hash to
// the digest in its name.
type MismatchedBlob struct {
	Path     string `json:"path"`
	Expected string `json:"expected"` // the digest in the name
	Actual   string `json:"actual"`   // sha256 of the content, "" if unknown
	// Repos are the repositories whose manifests or tags use the blob: the images it
	// breaks. Empty when nothing uses it (it is also dangling).
	Repos []string `json:"repos"`
}

// BrokenTag is a tag pointing at a manifest that is absent.
type BrokenTag struct {
	Repo   string `json:"repo"`
	Tag    string `json:"tag"`
	Digest string `json:"digest"`
}

// Unparsable is a manifest, tag file, link, index.json or database row that
// could not be parsed.
type Unparsable struct {
	Path   string `json:"path"`
	Digest string `json:"digest,omitempty"`
	Error  string `json:"error"`
}

// RepoReport is the detail of one repository.
type RepoReport struct {
	Repo string `json:"repo"`
	// Tags maps each tag to the digest it currently points at.
	Tags map[string]string `json:"tags"`
	// Manifests are the manifests reachable from the repository's roots
	// (tagged manifests, and untagged ones unless DeleteUntagged).
	Manifests []string `json:"manifests"`
	// Blobs are the other digests those manifests reference (configs, layers).
	Blobs      []string      `json:"blobs"`
	Missing    []MissingBlob `json:"missing"`
	BrokenTags []BrokenTag   `json:"broken_tags"`
	Unparsable []Unparsable  `json:"unparsable"`
}

// Report returns the current consistency report. It reads the metadata
// files changed since the last call and the manifests not in the cache,
// never the whole data directory. Callers must not modify the slices.
func (r *Registry) Report() Report {
	r.computeMu.Lock()
	defer r.computeMu.Unlock()
	r.maybeReloadDB()
	r.mu.RLock()
	if r.cached != nil && r.cachedVersion == r.version && len(r.dirty) == 0 {
		rep := *r.cached
		r.mu.RUnlock()
		r.st.reportsCached.Add(1)
		return rep
	}
	r.mu.RUnlock()
	r.refreshMeta()
	start := time.Now()
	g, version := r.compute("", false)
	r.mu.Lock()
	rep := r.buildReportLocked(g)
	if version == r.version {
		r.cached, r.cachedVersion = &rep, version
	}
	r.mu.Unlock()
	r.st.reportsComputed.Add(1)
	r.st.lastComputeNanos.Store(int64(time.Since(start)))
	return rep
}

// RepoReport returns the detail of one repository, false if unknown.
func (r *Registry) RepoReport(repo string) (RepoReport, bool) {
	r.computeMu.Lock()
	defer r.computeMu.Unlock()
	r.refreshMeta()
	r.mu.RLock()
	_, known := r.reposLocked()[repo]
	r.mu.RUnlock()
	if !known {
		return RepoReport{}, false
	}
	g, _ := r.compute(repo, true)
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.buildRepoReportLocked(repo, g), true
}
