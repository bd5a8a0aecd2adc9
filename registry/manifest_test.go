package registry

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParseManifestKinds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	oci := makeImage(rng, 2, false)
	docker := makeImage(rng, 1, true)
	idx := makeIndex(oci.manifest, docker.manifest)
	dl := newContent([]byte(`{"schemaVersion":2,"mediaType":"` + MediaTypeDockerList + `","manifests":[{"mediaType":"` +
		MediaTypeDockerManifest + `","digest":"` + docker.manifest.d.String() + `","size":5,"platform":{"os":"linux","architecture":"arm64"}}]}`))
	shapeOnly := []byte(`{"schemaVersion":2,"config":{"digest":"` + oci.config.d.String() + `","size":1},"layers":[]}`)
	referrer := []byte(`{"schemaVersion":2,"mediaType":"` + MediaTypeOCIManifest + `","config":{"digest":"` + oci.config.d.String() +
		`","size":1},"layers":[],"subject":{"mediaType":"` + MediaTypeOCIManifest + `","digest":"` + oci.manifest.d.String() + `","size":1}}`)
	artifact := []byte(`{"mediaType":"` + MediaTypeOCIArtifact + `","artifactType":"x","blobs":[{"digest":"` + oci.layers[0].d.String() + `","size":3}]}`)

	for _, c := range []struct {
		name string
		b    []byte
		kind ManifestKind
		refs []string
	}{
		{"oci manifest", oci.manifest.b, KindImage, digests(oci.blobs()...)},
		{"docker manifest", docker.manifest.b, KindImage, digests(docker.blobs()...)},
		{"oci index", idx.b, KindIndex, digests(oci.manifest, docker.manifest)},
		{"docker list", dl.b, KindIndex, digests(docker.manifest)},
		{"no mediaType, manifest shape", shapeOnly, KindImage, digests(oci.config)},
		{"referrer: subject is not a reference", referrer, KindImage, digests(oci.config)},
		{"artifact manifest", artifact, KindImage, digests(oci.layers[0])},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := ParseManifest(c.b)
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind != c.kind {
				t.Errorf("kind = %d, want %d", m.Kind, c.kind)
			}
			var got []string
			for _, d := range m.References() {
				got = append(got, d.Digest.String())
			}
			if strings.Join(got, ",") != strings.Join(c.refs, ",") {
				t.Errorf("references = %v, want %v", got, c.refs)
			}
		})
	}
}

func digests(cs ...content) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.d.String())
	}
	return out
}

func TestParseManifestRejects(t *testing.T) {
	good := "sha256:" + strings.Repeat("a", 64)
	for name, b := range map[string]string{
		"empty":              "",
		"not json":           "garbage {",
		"array":              "[1,2]",
		"schema1":            `{"schemaVersion":1,"fsLayers":[]}`,
		"schema3":            `{"schemaVersion":3,"mediaType":"` + MediaTypeOCIManifest + `","config":{"digest":"` + good + `"}}`,
		"unknown mediaType":  `{"schemaVersion":2,"mediaType":"text/plain"}`,
		"no schemaVersion":   `{"mediaType":"` + MediaTypeOCIManifest + `","config":{"digest":"` + good + `"}}`,
		"no config":          `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIManifest + `","layers":[]}`,
		"bad layer digest":   `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIManifest + `","config":{"digest":"` + good + `"},"layers":[{"digest":"sha256:XYZ"}]}`,
		"upper-case hex":     `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIManifest + `","config":{"digest":"sha256:` + strings.Repeat("A", 64) + `"}}`,
		"missing digest":     `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[{"size":3}]}`,
		"negative size":      `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[{"digest":"` + good + `","size":-1}]}`,
		"index with layers":  `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[],"layers":[]}`,
		"shapeless":          `{"schemaVersion":2}`,
		"bad subject digest": `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIManifest + `","config":{"digest":"` + good + `"},"subject":{"digest":"md5:x"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			m, err := ParseManifest([]byte(b))
			var pe *ParseError
			if err == nil || !errors.Is(err, ErrUnparsable) || !errors.As(err, &pe) || m != nil {
				t.Fatalf("ParseManifest = %v, %v; want a *ParseError", m, err)
			}
		})
	}
}

// FuzzParseManifest checks that the parser never panics and that what it
// accepts is internally consistent. The corpus is generated here.
func FuzzParseManifest(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	a, b := makeImage(rng, 2, false), makeImage(rng, 1, true)
	f.Add(a.manifest.b)
	f.Add(b.manifest.b)
	f.Add(makeIndex(a.manifest, b.manifest).b)
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`))
	f.Add([]byte(`{"mediaType":"` + MediaTypeOCIArtifact + `","blobs":[]}`))
	f.Add([]byte(`{"schemaVersion":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"schemaVersion":2,"config":null,"layers":null,"manifests":null}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ParseManifest(in)
		if err != nil {
			if m != nil || !errors.Is(err, ErrUnparsable) {
				t.Fatalf("error %v with manifest %v", err, m)
			}
			return
		}
		if m.Kind != KindImage && m.Kind != KindIndex {
			t.Fatalf("kind %d", m.Kind)
		}
		for _, d := range m.References() {
			if d.Digest.Validate() != nil {
				t.Fatalf("accepted invalid digest %q", d.Digest)
			}
		}
		if m.Kind == KindIndex && (m.Config != nil || len(m.Layers) > 0) {
			t.Fatal("index with image fields")
		}
	})
}
