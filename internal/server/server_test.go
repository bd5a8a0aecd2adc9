package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trowfs/trowfs/fs/fstest"
	"github.com/trowfs/trowfs/internal/server"
	"github.com/trowfs/trowfs/registry"
)

func TestMain(m *testing.M) { fstest.Main(m) }

func start(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	fstest.Require(t)
	dir := t.TempDir()
	if cfg.Data == "" {
		cfg.Data = filepath.Join(dir, "data")
		os.Mkdir(cfg.Data, 0o755)
	}
	cfg.Mnt = filepath.Join(dir, "mnt")
	s, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return s
}

// An empty data directory mounted with --layout auto becomes a registry when the registry
// writes its first files: the layout is detected then, and blobs are checked against their names.
func TestLayoutDetectedWhenRegistryInitialises(t *testing.T) {
	s := start(t, server.Config{Layout: "auto"})
	if s.Layout() != registry.Plain {
		t.Fatalf("empty dir layout = %s, want plain", s.Layout())
	}
	mnt := s.Mountpoint()
	content := []byte("a layer")
	sum := sha256.Sum256(content)
	hexd := hex.EncodeToString(sum[:])
	blobDir := filepath.Join(mnt, "docker/registry/v2/blobs/sha256", hexd[:2], hexd)
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(mnt, "docker/registry/v2/repositories/app/_uploads/u1"), 0o755); err != nil {
		t.Fatal(err)
	}
	up := filepath.Join(mnt, "docker/registry/v2/repositories/app/_uploads/u1/data")
	if err := os.WriteFile(up, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(up, filepath.Join(blobDir, "data")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Layout() != registry.Distribution && time.Now().Before(deadline) {
		os.WriteFile(filepath.Join(mnt, "poke"), nil, 0o644) // any event triggers a look
		time.Sleep(100 * time.Millisecond)
	}
	if s.Layout() != registry.Distribution {
		t.Fatalf("layout = %s after the registry initialised, want distribution", s.Layout())
	}
	if !s.Settle(10 * time.Second) {
		t.Fatal("did not settle")
	}
	rep := s.RegistryModel().Report()
	if rep.Blobs != 1 || rep.DanglingCount != 1 {
		t.Fatalf("report after detection: blobs %d dangling %d, want 1 and 1", rep.Blobs, rep.DanglingCount)
	}
}

// The HTTP endpoint serves the same .state as the mount, metrics and the tree, and refuses
// paths that escape the root.
func TestEndpointUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	s := start(t, server.Config{Listen: "unix:" + sock})
	os.WriteFile(filepath.Join(s.Mountpoint(), "f"), []byte("x"), 0o644)
	s.Tracker().Drain(10 * time.Second)
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (netConn, error) {
		var d netDialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	get := func(path string) (int, []byte) {
		resp, err := c.Get("http://localhost" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, body := get("/v1/state?path=/")
	var st map[string]any
	if code != 200 || json.Unmarshal(body, &st) != nil || st["files"].(float64) != 1 {
		t.Fatalf("/v1/state: %d %s", code, body)
	}
	want, _ := os.ReadFile(filepath.Join(s.Mountpoint(), ".state"))
	var st2 map[string]any
	json.Unmarshal(want, &st2)
	if st2["digest"] != st["digest"] {
		t.Fatalf("endpoint digest %v != .state digest %v", st["digest"], st2["digest"])
	}
	if code, body := get("/v1/state?path=../etc"); code != 400 {
		t.Fatalf("path escape: %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !contains(body, "trowfs_tree_entries") {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	if code, _ := get("/v1/tree?path=/"); code != 200 {
		t.Fatalf("/v1/tree: %d", code)
	}
}
