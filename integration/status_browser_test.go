package integration

// The status page in a real browser: Debian's Chromium, headless, driven by chromedp over the
// DevTools protocol, against the endpoint of a real mount. What a person sees: the health
// summary, a mismatched blob named with its repositories and drawn in the problem colour, a tree
// that can be walked by clicking, and nothing fetched from anywhere but the endpoint itself.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// chromium returns the path of the Chromium binary: missing, the test fails under CI=true
// (make test installs it) and is skipped elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if trowfsbin.InCI() {
		t.Fatal("chromium is not installed (make apt installs it); CI=true requires the browser test")
	}
	t.Skip("chromium is not installed (make apt installs it)")
	return ""
}

// listenAddr waits for the "HTTP endpoint listening" log line of p and returns its TCP address.
func listenAddr(t *testing.T, p *trowfsbin.Proc) string {
	t.Helper()
	re := regexp.MustCompile(`HTTP endpoint listening.*addr="?(127\.0\.0\.1:[0-9]+)`)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if m := re.FindStringSubmatch(p.Stderr()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listening address in the log:\n%s", p.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// browserDOM is what the page script below reads from the rendered document.
type browserDOM struct {
	Text string // document.body.innerText: what is rendered as text
	// Mismatch rows: the rows of the mismatched-blob table, with their class and the colour
	// the browser computed for them.
	Mismatch []struct{ Text, Class, Color string }
	// Entry is the tree listing's row named by the script's argument, if present.
	Entry *struct{ Text, StatusClass, StatusColor, Digest string }
	// External lists src and href attributes pointing outside the page's origin.
	External []string
}

// domScript returns a script that fills browserDOM; entry names the tree row to report.
func domScript(entry string) string {
	name, _ := json.Marshal(entry)
	return `(() => {
  const out = {Text: document.body.innerText, Mismatch: [], Entry: null, External: []};
  const h = document.getElementById("mismatched");
  if (h) {
    let tbl = h.nextElementSibling;
    for (const tr of tbl.querySelectorAll("tr.bad")) {
      out.Mismatch.push({Text: tr.innerText, Class: tr.className, Color: getComputedStyle(tr).color});
    }
  }
  for (const tr of document.querySelectorAll("tr")) {
    const first = tr.querySelector("td code");
    if (first && first.textContent === ` + string(name) + `) {
      const td = tr.children;
      out.Entry = {Text: tr.innerText, StatusClass: td[2].className, StatusColor: getComputedStyle(td[2]).color,
                   Digest: td[5].innerText};
    }
  }
  for (const el of document.querySelectorAll("[src],[href]")) {
    const u = new URL(el.getAttribute("src") || el.getAttribute("href"), document.baseURI);
    if (u.origin !== location.origin) out.External.push(u.href);
  }
  return out;
})()`
}

func TestStatusPageInBrowser(t *testing.T) {
	chrome := chromium(t)
	p := trowfsbin.Start(t, "", "", "--listen", "127.0.0.1:0")
	origin := "http://" + listenAddr(t, p)
	hc := http.Client{Timeout: 10 * time.Second}
	getJSON := func(path string, v any) {
		t.Helper()
		resp, err := hc.Get(origin + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}

	// Plant a mismatch: a blob of the demo registry rewritten through the mount with content
	// that does not hash to its name, as a bad disk or a buggy writer would leave it.
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
	rel := strings.TrimPrefix(blob, p.Data+"/")
	if err := os.WriteFile(filepath.Join(p.Mnt, rel), []byte("not the content its name says"), 0o644); err != nil {
		t.Fatal(err)
	}
	type mismatched struct {
		Path, Expected string
		Repos          []string
	}
	var rep struct {
		Mismatched []mismatched
		Count      int `json:"mismatched_count"`
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		getJSON("/v1/registry", &rep)
		if rep.Count > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registry report never counted the mismatched blob %s", rel)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var bad mismatched
	for _, m := range rep.Mismatched {
		if m.Path == rel {
			bad = m
		}
	}
	if bad.Path == "" || len(bad.Repos) == 0 {
		t.Fatalf("registry report: mismatched %+v, want %s with its repositories", rep.Mismatched, rel)
	}
	var root struct {
		Files, Bytes int64
		Digest       string
	}
	getJSON("/v1/state", &root)

	// The browser, with every request it makes recorded.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run sandboxed as root
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var requests []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requests = append(requests, e.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	read := func(entry string) browserDOM {
		t.Helper()
		d, err := chromedp.Run(ctx, chromedp.Evaluate[browserDOM](domScript(entry)))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		if len(d.External) > 0 {
			t.Errorf("the page links outside its origin: %v", d.External)
		}
		return d
	}

	// The summary, once rendered.
	// (chromedp enables the network domain of every tab it attaches to.)
	if err := chromedp.Do(ctx, chromedp.Navigate(origin+"/"), chromedp.WaitVisible(chromedp.CSS("h1"))); err != nil {
		t.Fatalf("loading %s/ in chromium: %v", origin, err)
	}
	top := strings.Split(rel, "/")[0]
	d := read(top)
	for _, want := range []string{
		"trowfs healthy", root.Digest,
		fmt.Sprintf("Files / dirs / symlinks\t%d /", root.Files), fmt.Sprintf("Bytes\t%d", root.Bytes),
		"inconsistent", fmt.Sprintf("Mismatched blobs: %d", rep.Count),
		"Scrub\t{", "\"passes\":", "Findings: ", "mismatch\t" + rel, // scrub progress, recent findings
	} {
		if !strings.Contains(d.Text, want) {
			t.Errorf("rendered page lacks %q:\n%s", want, d.Text)
		}
	}

	// The mismatch: its digest and repositories in a row drawn in the problem colour.
	found := false
	for _, row := range d.Mismatch {
		if !strings.Contains(row.Text, bad.Expected) {
			continue
		}
		found = true
		for _, repo := range bad.Repos {
			if !strings.Contains(row.Text, repo) {
				t.Errorf("mismatch row %q does not name repository %s", row.Text, repo)
			}
		}
		if !strings.Contains(" "+row.Class+" ", " bad ") || row.Color != "rgb(187, 0, 0)" {
			t.Errorf("mismatch row has class %q and colour %s, want class bad drawn rgb(187, 0, 0)", row.Class, row.Color)
		}
	}
	if !found {
		t.Errorf("no rendered mismatch row names %s: rows %+v\n%s", bad.Expected, d.Mismatch, d.Text)
	}

	// The tree: click down to the blob's directory, one level at a time; each directory's row
	// shows the digest its .state has, and the blob's row its mismatch in the problem colour.
	parts := strings.Split(rel, "/")
	for i, name := range parts {
		dir := strings.Join(parts[:i+1], "/")
		if d.Entry == nil {
			t.Fatalf("the listing of /%s has no row %q:\n%s", strings.Join(parts[:i], "/"), name, d.Text)
		}
		if i == len(parts)-1 {
			if !strings.Contains(d.Entry.Text, "mismatch") || d.Entry.StatusClass != "bad" || d.Entry.StatusColor != "rgb(187, 0, 0)" {
				t.Errorf("blob row %q: status class %q colour %s, want mismatch in class bad", d.Entry.Text, d.Entry.StatusClass, d.Entry.StatusColor)
			}
			break
		}
		if want := p.State(t, dir).Digest; d.Entry.Digest != want {
			t.Errorf("row of %s shows digest %q, its .state has %q", dir, d.Entry.Digest, want)
		}
		link := fmt.Sprintf(`//table//a[code=%q]`, name)
		heading := fmt.Sprintf(`//h2/code[text()=%q]`, "/"+dir)
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.Search(link)), chromedp.WaitVisible(chromedp.Search(heading))); err != nil {
			t.Fatalf("clicking into %s: %v\n%s", dir, err, d.Text)
		}
		d = read(parts[i+1])
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		if u, err := url.Parse(loc); err != nil || u.Query().Get("path") != dir {
			t.Errorf("after clicking into %s the browser is at %s", dir, loc)
		}
	}

	// No external asset: every request the browser made went to the endpoint.
	mu.Lock()
	defer mu.Unlock()
	t.Logf("chromium rendered %s with its mismatch in %s and walked to /%s; requests: %v", origin, bad.Repos, rel, requests)
	if len(requests) < 1+len(parts)-1 {
		t.Errorf("recorded %d requests, want at least one per page: %v", len(requests), requests)
	}
	for _, u := range requests {
		if !strings.HasPrefix(u, origin+"/") {
			t.Errorf("the page made the browser fetch %s, outside %s", u, origin)
		}
	}
}
