// Package demo generates a small Trow data directory (the files-only layout of Trow v0.3 to v0.6)
// for `trowfs demo` and for `trowfs mount` without arguments: a few repositories with tags, image
// manifests, configs and layers, all consistent, so the .state shows a registry in sync.
package demo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// Generate writes the demo registry into dir (created if needed). It refuses a non-empty dir.
func Generate(dir string) error {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("demo: %s is not empty", dir)
	}
	for _, d := range []string{"blobs/sha256", "manifests", "scratch"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	rng := rand.New(rand.NewPCG(145, 2020))
	put := func(b []byte) (string, int, error) {
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		return "sha256:" + h, len(b), os.WriteFile(filepath.Join(dir, "blobs", "sha256", h), b, 0o644)
	}
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int    `json:"size"`
	}
	base := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	images := []struct{ repo, tag string }{
		{"library/alpine", "3.19"}, {"library/alpine", "latest"}, {"org/app", "v1"}, {"org/app", "v2"}, {"org/team/tool", "main"},
	}
	for i, im := range images {
		var layers []desc
		for l := 0; l < 2+i%2; l++ {
			b := make([]byte, 4096+rng.IntN(64<<10))
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			d, n, err := put(b)
			if err != nil {
				return err
			}
			layers = append(layers, desc{"application/vnd.oci.image.layer.v1.tar+gzip", d, n})
		}
		cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "created": base.Add(time.Duration(i) * time.Hour)})
		cd, cn, err := put(cfg)
		if err != nil {
			return err
		}
		man, _ := json.MarshalIndent(map[string]any{
			"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
			"config": desc{"application/vnd.oci.image.config.v1+json", cd, cn}, "layers": layers,
		}, "", "   ")
		md, _, err := put(man)
		if err != nil {
			return err
		}
		tagDir := filepath.Join(dir, "manifests", filepath.FromSlash(im.repo))
		if err := os.MkdirAll(tagDir, 0o755); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %s\n", md, base.Add(time.Duration(i)*time.Minute).Format(time.RFC3339Nano))
		f, err := os.OpenFile(filepath.Join(tagDir, im.tag), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		_, err = f.WriteString(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}
