package trowreplay

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/opencontainers/go-digest"
)

// Blob is content and its sha256 digest.
type Blob struct {
	Data   []byte
	Digest digest.Digest
}

// NewBlob wraps data with its digest.
func NewBlob(data []byte) Blob { return Blob{Data: data, Digest: digest.FromBytes(data)} }

// Hex is the hex part of the digest.
func (b Blob) Hex() string { return b.Digest.Encoded() }

// Image is one pushed image: a config, layers and the OCI image manifest naming them.
type Image struct {
	Config   Blob
	Layers   []Blob
	Manifest Blob
}

// Blobs returns the config and the layers (not the manifest).
func (im Image) Blobs() []Blob { return append([]Blob{im.Config}, im.Layers...) }

// NewImage builds a deterministic image from seed: layers of layerSize pseudo-random bytes each.
// Different seeds give different blobs.
func NewImage(seed uint64, layers, layerSize int) Image {
	rng := rand.New(rand.NewPCG(seed, 0x7a0f5))
	var ls []Blob
	for i := 0; i < layers; i++ {
		b := make([]byte, layerSize)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		ls = append(ls, NewBlob(b))
	}
	return ImageOf(seed, ls...)
}

// ImageOf builds the image with the given layers (shared layers are how images share blobs)
// and a config naming seed.
func ImageOf(seed uint64, layers ...Blob) Image {
	type desc struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
		Size      int           `json:"size"`
	}
	im := Image{Layers: layers}
	var ls []desc
	for _, l := range layers {
		ls = append(ls, desc{"application/vnd.oci.image.layer.v1.tar+gzip", l.Digest, len(l.Data)})
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "seed": seed,
		"rootfs": map[string]any{"type": "layers", "diff_ids": digests(layers)}})
	im.Config = NewBlob(cfg)
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc{"application/vnd.oci.image.config.v1+json", im.Config.Digest, len(cfg)},
		"layers":        ls,
	})
	im.Manifest = NewBlob(m)
	return im
}

func digests(bs []Blob) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Digest.String()
	}
	return out
}

// NewIndex builds an OCI image index over the manifests of ims.
func NewIndex(ims ...Image) Blob {
	var ms []map[string]any
	for i, im := range ims {
		ms = append(ms, map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json",
			"digest": im.Manifest.Digest, "size": len(im.Manifest.Data),
			"platform": map[string]string{"architecture": fmt.Sprintf("arch%d", i), "os": "linux"}})
	}
	b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": ms})
	return NewBlob(b)
}
