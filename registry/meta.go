package registry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// kind classifies a tracked path.
type kind uint8

const (
	kBlob         kind = iota + 1 // a blob file in a blob store
	kTagFile                      // trow-files: manifests/<repo...>/<tag>
	kDistRevision                 // distribution: <repo>/_manifests/revisions/<alg>/<hex>/link
	kDistTag                      // distribution: <repo>/_manifests/tags/<tag>/current/link
	kDistLayer                    // distribution: <repo>/_layers/<alg>/<hex>/link
	kOCIIndex                     // oci-layout: <dir>/index.json
	kOCIMarker                    // oci-layout: <dir>/oci-layout
	kDB                           // trow-sqlite: trow.db, trow.db-wal
)

// needsRead reports whether the content of a path of this kind must be read.
func (k kind) needsRead() bool { return k == kTagFile || k == kDistTag || k == kOCIIndex }

// entry is one tracked file. Entries are replaced, never mutated, once
// they are in Registry.entries (except meta/metaErr, set under mu).
type entry struct {
	kind  kind
	info  FileInfo
	store string        // kBlob: blob store ("" or the OCI layout dir); kOCI*: layout dir
	repo  string        // kTagFile, kDist*: repository
	name  string        // kTagFile, kDistTag: tag name
	dgst  digest.Digest // kBlob: the name's digest; kDistRevision, kDistLayer: digest in the path

	// read is true once the content has been read and parsed into meta/metaErr.
	read    bool
	meta    any // *tagFile | digest.Digest (kDistTag) | *ociIndex
	metaErr error
}

// classify maps a relative path to an entry of the layout, or nil if the
// path means nothing to the registry.
func (l Layout) classify(rel string) *entry {
	if store, d, ok := l.blobPath(rel); ok {
		return &entry{kind: kBlob, store: store, dgst: d}
	}
	switch l {
	case TrowFiles:
		rest, ok := strings.CutPrefix(rel, "manifests/")
		if !ok {
			return nil
		}
		i := strings.LastIndexByte(rest, '/')
		if i <= 0 || i == len(rest)-1 {
			return nil
		}
		return &entry{kind: kTagFile, repo: rest[:i], name: rest[i+1:]}
	case TrowSQLite:
		if rel == "trow.db" || rel == "trow.db-wal" {
			return &entry{kind: kDB}
		}
	case Distribution:
		rest, ok := strings.CutPrefix(rel, distRoot+"/repositories/")
		if !ok {
			return nil
		}
		seg := strings.Split(rest, "/")
		for i, s := range seg {
			if !strings.HasPrefix(s, "_") {
				continue
			}
			if i == 0 {
				return nil
			}
			repo, tail := strings.Join(seg[:i], "/"), seg[i:]
			switch {
			case len(tail) == 5 && tail[0] == "_manifests" && tail[1] == "revisions" && tail[4] == "link" && validHex(tail[2], tail[3]):
				return &entry{kind: kDistRevision, repo: repo, dgst: digest.Digest(tail[2] + ":" + tail[3])}
			case len(tail) == 5 && tail[0] == "_manifests" && tail[1] == "tags" && tail[3] == "current" && tail[4] == "link":
				return &entry{kind: kDistTag, repo: repo, name: tail[2]}
			case len(tail) == 4 && tail[0] == "_layers" && tail[3] == "link" && validHex(tail[1], tail[2]):
				return &entry{kind: kDistLayer, repo: repo, dgst: digest.Digest(tail[1] + ":" + tail[2])}
			}
			return nil
		}
	case OCILayout:
		dir, base := parentDir(rel), rel[strings.LastIndexByte(rel, '/')+1:]
		switch base {
		case "index.json":
			return &entry{kind: kOCIIndex, store: dir}
		case "oci-layout":
			return &entry{kind: kOCIMarker, store: dir}
		}
	}
	return nil
}

// tagLine is one line of a trow-files tag file.
type tagLine struct {
	d  digest.Digest
	at time.Time
}

// tagFile is a parsed trow-files tag file.
type tagFile struct {
	lines   []tagLine
	current digest.Digest // the line with the latest timestamp
}

// parseTagFile parses "<digest> <RFC3339-nanos>" lines in either order.
// Lines that do not parse make the file an unparsable finding, but the good
// lines are still used.
func parseTagFile(b []byte) (*tagFile, error) {
	tf := &tagFile{}
	var bad []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		ds, ts, _ := strings.Cut(line, " ")
		d, ok := parseDigest(ds)
		if !ok {
			bad = append(bad, fmt.Sprintf("line %d: bad digest", n))
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(ts))
		if err != nil {
			bad = append(bad, fmt.Sprintf("line %d: bad timestamp", n))
			continue
		}
		tf.lines = append(tf.lines, tagLine{d: d, at: at})
	}
	if err := sc.Err(); err != nil {
		bad = append(bad, err.Error())
	}
	var best time.Time
	for i, l := range tf.lines {
		// Ties go to the later line: v0.4+ appends, and a tie cannot be
		// resolved better.
		if i == 0 || !l.at.Before(best) {
			best, tf.current = l.at, l.d
		}
	}
	switch {
	case len(bad) > 0:
		return tf, fmt.Errorf("tag file: %s", strings.Join(bad, "; "))
	case len(tf.lines) == 0:
		return tf, fmt.Errorf("tag file: no entries")
	}
	return tf, nil
}

// parseLink parses a distribution link file ("sha256:<hex>", no newline;
// surrounding white space is tolerated).
func parseLink(b []byte) (digest.Digest, error) {
	s := strings.TrimSpace(string(b))
	d, ok := parseDigest(s)
	if !ok {
		if len(s) > 80 {
			s = s[:80] + "..."
		}
		return "", fmt.Errorf("link: not a digest: %q", s)
	}
	return d, nil
}

// ociIndex is a parsed index.json of an OCI layout.
type ociIndex struct {
	manifests []Descriptor
}

// refNameAnnotation holds the tag of a descriptor in index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// parseOCIIndex parses index.json. Descriptors with an invalid digest make
// the file unparsable; the valid ones are kept.
func parseOCIIndex(b []byte) (*ociIndex, error) {
	var raw struct {
		SchemaVersion int          `json:"schemaVersion"`
		Manifests     []Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return &ociIndex{}, fmt.Errorf("index.json: %v", err)
	}
	idx := &ociIndex{}
	var bad []string
	for i, d := range raw.Manifests {
		if err := checkDescriptor(fmt.Sprintf("manifests[%d]", i), &d); err != nil {
			bad = append(bad, err.Error())
			continue
		}
		idx.manifests = append(idx.manifests, d)
	}
	if len(bad) > 0 {
		return idx, fmt.Errorf("index.json: %s", strings.Join(bad, "; "))
	}
	return idx, nil
}

// parseMeta parses the content of a metadata entry of kind k.
func parseMeta(k kind, b []byte) (any, error) {
	switch k {
	case kTagFile:
		return parseTagFile(b)
	case kDistTag:
		return parseLink(b)
	case kOCIIndex:
		return parseOCIIndex(b)
	}
	return nil, nil
}
