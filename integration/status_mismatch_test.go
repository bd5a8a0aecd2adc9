package integration

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// A blob whose content no longer matches its digest shows on the status page as an
// inconsistent registry, with the blob's digest, in the "bad" style.
func TestStatusPageShowsMismatchedBlob(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	p := trowfsbin.Start(t, "", "", "--listen", "unix:"+sock)
	get := unixGet(t, sock)
	var blob string
	filepath.WalkDir(p.Data, func(path string, d fs.DirEntry, err error) error {
		if err == nil && blob == "" && d.Type().IsRegular() && strings.Contains(path, "/blobs/") && len(d.Name()) >= 64 {
			blob = path
		}
		return nil
	})
	if blob == "" {
		t.Fatal("demo registry has no blob")
	}
	if err := os.WriteFile(filepath.Join(p.Mnt, strings.TrimPrefix(blob, p.Data)), []byte("not the content its name says"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := http.Client{Transport: &http.Transport{DialContext: unixDial(sock)}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := get("/v1/registry")
		var rep struct {
			MismatchedCount int `json:"mismatched_count"`
		}
		json.Unmarshal([]byte(body), &rep)
		if rep.MismatchedCount > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry report never counted the mismatched blob: %s", body)
		}
		if resp, err := c.Post("http://localhost/v1/verify?kind=full", "", nil); err == nil {
			resp.Body.Close()
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, page := get("/")
	if !strings.Contains(page, `class="bad">inconsistent`) {
		t.Errorf("status page does not show the registry as inconsistent:\n%s", page)
	}
	if !strings.Contains(page, filepath.Base(blob)) {
		t.Errorf("status page does not name the mismatched blob %s", filepath.Base(blob))
	}
}
