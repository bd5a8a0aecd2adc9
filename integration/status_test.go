package integration

// GET / on the endpoint is a read-only HTML status page of a real mount: root digest, counts,
// findings and the registry report, with hostile names escaped and nothing loaded from elsewhere.

import (
	"encoding/json"
	"html"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

func TestStatusPageShowsMountAndEscapesHostileNames(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	p := trowfsbin.Start(t, "", "", "--listen", "unix:"+sock)
	get := unixGet(t, sock)

	// A file added behind trowfs's back with a name that is markup: a verify run reports it
	// as drift, so its name reaches the page.
	hostile := `<script>alert(1)`
	if err := os.WriteFile(filepath.Join(p.Data, hostile), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := http.Client{Transport: &http.Transport{DialContext: unixDial(sock)}}
	resp, err := c.Post("http://localhost/v1/verify?kind=quick", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/verify: %d", resp.StatusCode)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, body := get("/v1/verify")
		var run struct{ State string }
		if err := json.Unmarshal([]byte(body), &run); err != nil {
			t.Fatalf("/v1/verify: %v %s", err, body)
		}
		if run.State != "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("verify run did not finish")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, stateDoc := get("/v1/state")
	var state struct {
		Digest   string
		Findings []struct{ Path string }
	}
	if err := json.Unmarshal([]byte(stateDoc), &state); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range state.Findings {
		found = found || strings.Contains(f.Path, hostile)
	}
	if !found {
		t.Fatalf("the verify run did not report %q; state: %s", hostile, stateDoc)
	}

	resp, err = c.Get("http://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %s", resp.StatusCode, ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("GET /: Content-Security-Policy %q, want default-src 'none'", csp)
	}
	code, page := get("/")
	if code != http.StatusOK {
		t.Fatalf("GET /: %d", code)
	}
	if strings.Contains(page, "<script") {
		t.Errorf("status page contains a raw <script>:\n%s", page)
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)") {
		t.Errorf("status page does not show the escaped name:\n%s", page)
	}
	for _, want := range []string{state.Digest, "Findings:", "Registry", "all_blob_digest", "trow-files", "healthy"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	for _, banned := range []string{"http://", "https://", "src="} {
		if strings.Contains(page, banned) {
			t.Errorf("status page refers to %q: no external assets", banned)
		}
	}
	if !strings.Contains(page, "<code>&lt;script&gt;alert(1)</code></td><td>file</td>") {
		t.Errorf("the root listing does not show the file %q escaped", hostile)
	}

	// The tree is browsable: a directory links to its own page, which lists its entries.
	m := regexp.MustCompile(`<a href="(/\?path=[^"]+)"><code>([^<]+)</code>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the root listing links no directory:\n%s", page)
	}
	code, sub := get(html.UnescapeString(m[1]))
	if code != http.StatusOK || !strings.Contains(sub, "<h2>Tree: <code>/"+m[2]+"</code></h2>") || !strings.Contains(sub, `<a href="/?path=">up</a>`) {
		t.Errorf("GET %s: %d, want the listing of %s with an up link:\n%s", m[1], code, m[2], sub)
	}
	if code, _ := get("/?path=no-such-dir"); code != http.StatusNotFound {
		t.Errorf("GET /?path=no-such-dir: %d, want 404", code)
	}

	resp, err = c.Post("http://localhost/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405 (read-only)", resp.StatusCode)
	}
}
