package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trowfs/trowfs/api"
	"github.com/trowfs/trowfs/internal/server"
)

// unixClient returns a GET helper for an endpoint on a unix socket.
func unixClient(t *testing.T, sock string) func(path string) (int, http.Header, []byte) {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (netConn, error) {
		var d netDialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	t.Cleanup(c.CloseIdleConnections)
	return func(path string) (int, http.Header, []byte) {
		t.Helper()
		resp, err := c.Get("http://localhost" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
}

// Files whose names are not UTF-8, created through a real mount, are listed by /v1/tree exactly
// once each when a client follows next to the end, and .state names their directory exactly.
func TestTreePagingThroughMountWithNamesThatAreNotUTF8(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	s := start(t, server.Config{Listen: "unix:" + sock})
	dir := "d\xfe"
	names := []string{"\xfe", "\xff", "\xfe\xff", "a", "\xc3(", "é", "sha256:0a"}
	if err := os.Mkdir(filepath.Join(s.Mountpoint(), dir), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(s.Mountpoint(), dir, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Settle(10 * time.Second) {
		t.Fatal("did not settle")
	}
	get := unixClient(t, sock)
	pathB64 := base64.StdEncoding.EncodeToString([]byte(dir))
	seen := map[string]int{}
	after := ""
	for page := 0; ; page++ {
		if page > len(names) {
			t.Fatalf("following next did not end after %d pages (seen %v)", page, seen)
		}
		q := url.Values{"path_b64": {pathB64}, "limit": {"2"}}
		if after != "" {
			q.Set("after", after)
		}
		code, hdr, body := get("/v1/tree?" + q.Encode())
		if code != 200 {
			t.Fatalf("/v1/tree?%s: %d %s", q.Encode(), code, body)
		}
		var p struct {
			Path    string `json:"path"`
			PathB64 string `json:"path_b64"`
			Entries []struct {
				Name    string `json:"name"`
				NameB64 string `json:"name_b64"`
			} `json:"entries"`
			Next string `json:"next"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if got, _ := api.DecodeString(p.Path, p.PathB64); got != "/"+dir {
			t.Fatalf("page path %q, want %q: %s", got, "/"+dir, body)
		}
		for _, e := range p.Entries {
			n, err := api.DecodeString(e.Name, e.NameB64)
			if err != nil {
				t.Fatal(err)
			}
			seen[n]++
		}
		if p.Next == "" {
			if hdr.Get("Link") != "" {
				t.Fatalf("last page has Link %q", hdr.Get("Link"))
			}
			break
		}
		after = p.Next
	}
	for _, n := range names {
		if seen[n] != 1 {
			t.Errorf("name %q listed %d times (all: %v)", n, seen[n], seen)
		}
	}
	if len(seen) != len(names) {
		t.Errorf("listed %d names, want %d: %v", len(seen), len(names), seen)
	}

	// The same directory's .state, through the endpoint and through the mount.
	code, _, body := get("/v1/state?path_b64=" + url.QueryEscape(pathB64))
	fromMount, err := os.ReadFile(filepath.Join(s.Mountpoint(), dir, ".state"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range [][]byte{body, fromMount} {
		var st struct {
			Path    string `json:"path"`
			PathB64 string `json:"path_b64"`
			Files   int    `json:"files"`
		}
		if err := json.Unmarshal(doc, &st); err != nil {
			t.Fatalf("%d %s: %v", code, doc, err)
		}
		if got, _ := api.DecodeString(st.Path, st.PathB64); got != "/"+dir || st.Files != len(names) {
			t.Fatalf(".state path %q files %d, want %q and %d: %s", got, st.Files, "/"+dir, len(names), doc)
		}
	}
}
