package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// Media types of the manifests the parser understands.
const (
	MediaTypeOCIManifest      = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex         = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest   = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList       = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeOCIArtifact      = "application/vnd.oci.artifact.manifest.v1+json"
	mediaTypeDockerSchema1    = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1Sig = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// MaxManifestSize is the largest manifest the parser reads (the
// distribution registry's own limit is 4 MiB).
const MaxManifestSize = 4 << 20

// ManifestKind says whether a manifest describes one image or a list of them.
type ManifestKind uint8

// Manifest kinds.
const (
	KindImage ManifestKind = iota + 1 // OCI image manifest, Docker schema2 manifest, OCI artifact manifest
	KindIndex                         // OCI image index, Docker manifest list
)

// Descriptor is the part of an OCI descriptor the registry needs.
type Descriptor struct {
	MediaType   string            `json:"mediaType,omitempty"`
	Digest      digest.Digest     `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Manifest is a parsed manifest: what it references.
type Manifest struct {
	MediaType string       // declared, or inferred from the shape
	Kind      ManifestKind //
	Config    *Descriptor  // image manifests (nil for artifact manifests)
	Layers    []Descriptor // image manifests ("blobs" of an artifact manifest)
	Manifests []Descriptor // indexes: child manifests
	Subject   *Descriptor  // referrers: the manifest this one refers to
}

// References returns the digests a manifest needs, in the order the
// distribution registry's garbage collector marks them: config then layers
// for an image, the child manifests for an index. The subject is not a
// reference (see docs/registry.md).
func (m *Manifest) References() []Descriptor {
	if m.Kind == KindIndex {
		return m.Manifests
	}
	refs := make([]Descriptor, 0, 1+len(m.Layers))
	if m.Config != nil {
		refs = append(refs, *m.Config)
	}
	return append(refs, m.Layers...)
}

// ErrUnparsable is wrapped by every error ParseManifest returns.
var ErrUnparsable = errors.New("unparsable manifest")

// ParseError says why a manifest could not be parsed.
type ParseError struct {
	Reason string
}

func (e *ParseError) Error() string { return "unparsable manifest: " + e.Reason }

// Unwrap makes errors.Is(err, ErrUnparsable) true.
func (e *ParseError) Unwrap() error { return ErrUnparsable }

func parseErr(format string, a ...any) error {
	return &ParseError{Reason: fmt.Sprintf(format, a...)}
}

// rawManifest is the union of the JSON shapes the parser accepts.
type rawManifest struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        *Descriptor       `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Blobs         []Descriptor      `json:"blobs"`
	Manifests     []Descriptor      `json:"manifests"`
	Subject       *Descriptor       `json:"subject"`
	FSLayers      []json.RawMessage `json:"fsLayers"`
}

// ParseManifest parses an OCI image manifest or index, a Docker schema2
// manifest or manifest list, or an OCI artifact manifest. The media type
// comes from the mediaType field or, when that is absent, from the shape.
// Every descriptor digest must be a valid digest. Anything else is a
// *ParseError; ParseManifest never panics.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, parseErr("larger than %d bytes", MaxManifestSize)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, parseErr("empty")
	}
	var raw rawManifest
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, parseErr("invalid JSON: %v", err)
	}
	if raw.MediaType == mediaTypeDockerSchema1 || raw.MediaType == mediaTypeDockerSchema1Sig ||
		raw.SchemaVersion != nil && *raw.SchemaVersion == 1 {
		return nil, parseErr("docker schema1 manifests are not supported")
	}
	if raw.SchemaVersion != nil && *raw.SchemaVersion != 2 && raw.MediaType != MediaTypeOCIArtifact {
		return nil, parseErr("schemaVersion %d", *raw.SchemaVersion)
	}
	m := &Manifest{MediaType: raw.MediaType}
	switch raw.MediaType {
	case MediaTypeOCIManifest, MediaTypeDockerManifest:
		m.Kind = KindImage
	case MediaTypeOCIIndex, MediaTypeDockerList:
		m.Kind = KindIndex
	case MediaTypeOCIArtifact:
		m.Kind = KindImage
	case "":
		switch {
		case raw.Manifests != nil && raw.Config == nil && raw.Layers == nil:
			m.Kind, m.MediaType = KindIndex, MediaTypeOCIIndex
		case raw.Config != nil && raw.Manifests == nil:
			m.Kind, m.MediaType = KindImage, MediaTypeOCIManifest
		default:
			return nil, parseErr("no mediaType and not shaped like a manifest or an index")
		}
	default:
		return nil, parseErr("unknown mediaType %q", raw.MediaType)
	}
	if m.MediaType != MediaTypeOCIArtifact && raw.SchemaVersion == nil {
		return nil, parseErr("missing schemaVersion")
	}
	switch {
	case m.MediaType == MediaTypeOCIArtifact:
		if raw.Manifests != nil || raw.Config != nil {
			return nil, parseErr("artifact manifest with config or manifests")
		}
		m.Layers = raw.Blobs
	case m.Kind == KindImage:
		if raw.Manifests != nil {
			return nil, parseErr("image manifest with a manifests list")
		}
		if raw.Config == nil {
			return nil, parseErr("image manifest without config")
		}
		m.Config = raw.Config
		m.Layers = raw.Layers
	default:
		if raw.Config != nil || raw.Layers != nil {
			return nil, parseErr("index with config or layers")
		}
		m.Manifests = raw.Manifests
	}
	m.Subject = raw.Subject
	if m.Config != nil {
		if err := checkDescriptor("config", m.Config); err != nil {
			return nil, err
		}
	}
	for i := range m.Layers {
		if err := checkDescriptor(fmt.Sprintf("layers[%d]", i), &m.Layers[i]); err != nil {
			return nil, err
		}
	}
	for i := range m.Manifests {
		if err := checkDescriptor(fmt.Sprintf("manifests[%d]", i), &m.Manifests[i]); err != nil {
			return nil, err
		}
	}
	if m.Subject != nil {
		if err := checkDescriptor("subject", m.Subject); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// checkDescriptor validates the digest and size of one descriptor.
func checkDescriptor(where string, d *Descriptor) error {
	if d.Digest == "" {
		return parseErr("%s: missing digest", where)
	}
	if err := d.Digest.Validate(); err != nil {
		return parseErr("%s: %v", where, err)
	}
	if d.Size < 0 {
		return parseErr("%s: negative size", where)
	}
	return nil
}

// manifestCost estimates the memory a parsed manifest takes, for the cache.
func manifestCost(m *Manifest) int64 {
	if m == nil {
		return 64
	}
	return int64(128 + 96*(len(m.Layers)+len(m.Manifests)))
}

// isManifestMediaType reports whether a descriptor's media type names a manifest.
func isManifestMediaType(mt string) bool {
	switch mt {
	case MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerList, MediaTypeOCIArtifact:
		return true
	}
	return false
}
