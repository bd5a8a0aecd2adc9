package registry

import (
	"sort"

	"github.com/opencontainers/go-digest"
)

// CatalogRepo is what one repository holds: the manifests it serves by
// digest and its tags.
type CatalogRepo struct {
	Manifests map[digest.Digest]struct{}
	Tags      map[string]digest.Digest // tag → the manifest it points at
}

// Catalog maps each repository to what it holds. It is a read-only view for
// replication (package peers/oci converts it); it carries no blobs: those
// follow from the manifests.
type Catalog map[string]CatalogRepo

// add records manifest d in repo, and tag → d when tag is not "".
func (c Catalog) add(repo string, d digest.Digest, tag string) {
	rp, ok := c[repo]
	if !ok {
		rp = CatalogRepo{Manifests: map[digest.Digest]struct{}{}, Tags: map[string]digest.Digest{}}
		c[repo] = rp
	}
	rp.Manifests[d] = struct{}{}
	if tag != "" {
		rp.Tags[tag] = d
	}
}

// Repos returns the catalog's repository names, sorted.
func (c Catalog) Repos() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Catalog returns, per repository, the manifests and tags the registry
// serves, from the model trowfs already keeps (it reads only the metadata
// files changed since the last call, never rescans DATA, and parses no
// manifest; in the file layouts a manifest whose blob file is missing is
// left out, with its tags: the registry cannot serve it):
//   - trow-sqlite: the tag rows, and the manifests repo_blob_assoc
//     associates with a repository; a manifest or tag target without a
//     manifest row is not served and is left out.
//   - trow-files: manifests/<repo>/<tag> files, each file's current line;
//     a file named like a digest is a manifest pushed by digest, not a tag.
//   - distribution: _manifests/revisions are the repository's manifests,
//     _manifests/tags/<t>/current/link its tags (a tag whose target has no
//     revision link is not served by distribution and is left out).
//   - oci-layout: each index.json descriptor of a manifest media type, with
//     its org.opencontainers.image.ref.name annotation as the tag.
//
// The result is a fresh copy the caller may modify.
func (r *Registry) Catalog() Catalog { return r.catalog(false) }

// CatalogRecorded is Catalog with, in the file layouts, the manifests whose blob file is missing
// kept (and their tags): what the registry records rather than what it can serve. The peers
// replicate this one, so that a lost blob file is healed, not replicated as a delete.
func (r *Registry) CatalogRecorded() Catalog { return r.catalog(true) }

func (r *Registry) catalog(recorded bool) Catalog {
	r.maybeReloadDB()
	r.refreshMeta()
	r.mu.RLock()
	defer r.mu.RUnlock()
	c := Catalog{}
	switch r.layout {
	case TrowSQLite:
		if r.db == nil {
			return c
		}
		for _, t := range r.db.tags {
			if _, ok := r.db.manifests[t.target]; ok && t.target != "" {
				c.add(t.repo, t.target, t.tag)
			}
		}
		for repo, ms := range r.db.repoManifests {
			for d := range ms {
				if _, ok := r.db.manifests[d]; ok {
					c.add(repo, d, "")
				}
			}
		}
	case TrowFiles:
		for _, e := range r.meta {
			if e.kind != kTagFile || !e.read {
				continue
			}
			tf, _ := e.meta.(*tagFile)
			if tf == nil || tf.current == "" || !recorded && r.blobs[""][tf.current] == nil {
				continue
			}
			if _, byDigest := parseDigest(e.name); byDigest {
				c.add(e.repo, tf.current, "")
			} else {
				c.add(e.repo, tf.current, e.name)
			}
		}
	case Distribution:
		for _, e := range r.meta {
			if e.kind == kDistRevision && (recorded || r.blobs[""][e.dgst] != nil) {
				c.add(e.repo, e.dgst, "")
			}
		}
		for _, e := range r.meta {
			if e.kind != kDistTag || !e.read {
				continue
			}
			d, _ := e.meta.(digest.Digest)
			if _, ok := c[e.repo].Manifests[d]; ok && d != "" {
				c[e.repo].Tags[e.name] = d
			}
		}
	case OCILayout:
		for _, e := range r.meta {
			if e.kind != kOCIIndex || !e.read {
				continue
			}
			idx, _ := e.meta.(*ociIndex)
			if idx == nil {
				continue
			}
			repo := ociRepoName(e.store)
			for _, desc := range idx.manifests {
				if desc.MediaType != "" && !isManifestMediaType(desc.MediaType) || !recorded && r.blobs[e.store][desc.Digest] == nil {
					continue
				}
				c.add(repo, desc.Digest, desc.Annotations[refNameAnnotation])
			}
		}
	}
	return c
}
