package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// Names on the status page are attacker-controlled: a pushed repository, a tag, a file dropped
// into DATA, the text of a finding. None of them may become markup, a script, an attribute or a
// link elsewhere, and the page must stay valid UTF-8 and browsable whatever the bytes.

// hostileState is a fakeBackend whose root .state carries findings and mount fields.
type hostileState struct {
	*fakeBackend
	root map[string]any
}

func (h hostileState) State(p string) ([]byte, error) {
	if p == "" {
		return json.Marshal(h.root)
	}
	return h.fakeBackend.State(p)
}

const (
	evilScript = `<script>alert(1)</script>`
	evilAttr   = `"><img src=x onerror=alert(2)>`
	evilQuote  = `' onmouseover='alert(3)`
	evilJSURL  = `javascript:alert(4)`
)

var evilNames = []string{evilScript, evilAttr, evilQuote, evilJSURL}

// markupOf lists every tag and attribute name the page contains: hostile input must not add any.
var tagRe = regexp.MustCompile(`<([a-zA-Z0-9]+)([^>]*)>`)
var attrRe = regexp.MustCompile(`\s([a-zA-Z-]+)=`)

func checkNoInjectedMarkup(t *testing.T, page string) {
	t.Helper()
	allowedTags := map[string]bool{"html": true, "head": true, "meta": true, "title": true, "style": true, "body": true,
		"h1": true, "h2": true, "h3": true, "p": true, "span": true, "table": true, "tr": true, "th": true, "td": true,
		"code": true, "a": true}
	allowedAttrs := map[string]bool{"lang": true, "charset": true, "class": true, "id": true, "href": true}
	for _, m := range tagRe.FindAllStringSubmatch(page, -1) {
		if !allowedTags[strings.ToLower(m[1])] {
			t.Errorf("the page has a <%s> tag: %s", m[1], m[0])
		}
		for _, a := range attrRe.FindAllStringSubmatch(m[2], -1) {
			if !allowedAttrs[strings.ToLower(a[1])] {
				t.Errorf("the page has an attribute %s: %s", a[1], m[0])
			}
		}
	}
	for _, m := range regexp.MustCompile(`href="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if !strings.HasPrefix(m[1], "/") || strings.HasPrefix(m[1], "//") {
			t.Errorf("the page links outside the endpoint: %s", m[0])
		}
	}
	for _, bad := range []string{"<script", "<img", "onmouseover='", "href=\"javascript"} {
		if strings.Contains(strings.ToLower(page), bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
}

func hostileServer(t *testing.T) (*testServer, *fakeBackend) {
	f := newFakeBackend()
	var findings []Finding
	for i, n := range evilNames {
		f.addFile("repos/"+n+"/file", int64(i))
		f.addDir("dirs/" + n)
		findings = append(findings, Finding{Kind: "mismatch", Path: "repos/" + n, Detail: "detail " + n})
	}
	f.addFile("latin1/caf\xe9", 1)
	f.addDir("latin1/dir\xff\xfe")
	f.addFile("latin1/dir\xff\xfe/inside", 2)
	findings = append(findings, Finding{Kind: "bitrot", Path: "latin1/caf\xe9", Detail: "bytes \xff\xfe"})
	f.report = map[string]any{
		"ok":               false,
		"note":             evilScript,
		"mismatched":       []map[string]any{{"path": evilAttr, "expected": evilScript, "actual": evilQuote, "repos": evilNames}},
		"mismatched_count": 1,
		"missing":          []map[string]any{{"digest": evilAttr, "kind": evilScript, "repos": evilNames, "tags": []string{evilScript + ":" + evilAttr}}},
		"missing_count":    1,
		"dangling":         []map[string]any{{"digest": evilScript, "path": evilAttr, "repo": evilQuote, "note": evilJSURL, "size": 1}},
		"dangling_count":   1,
	}
	f.unhealthy = fmt.Errorf("unhealthy because of %s", evilAttr)
	root := map[string]any{
		"digest": evilScript, "status": evilAttr, "findings_count": len(findings), "findings": findings,
		"statuses": map[string]int{evilScript: 1},
		"mount":    map[string]any{"data_dir": evilAttr, "mountpoint": "/mnt/\xff" + evilScript, "layout": evilQuote, "scrub": evilJSURL},
		"peers":    map[string]any{evilScript: evilAttr},
	}
	hs := httptest.NewServer(New(hostileState{f, root}, Options{}).Handler())
	t.Cleanup(hs.Close)
	return &testServer{t: t, b: f, hs: hs}, f
}

func TestStatusPageEscapesHostileNames(t *testing.T) {
	ts, _ := hostileServer(t)
	for _, dir := range []string{"", "repos", "dirs", "latin1"} {
		resp, body := ts.do("GET", "/?path="+url.QueryEscape(dir), nil)
		wantStatus(t, resp, body, 200)
		page := string(body)
		checkNoInjectedMarkup(t, page)
		if !utf8.Valid(body) {
			t.Errorf("/?path=%s: the page is not valid UTF-8 (it says charset=utf-8)", dir)
		}
		if dir == "repos" && !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("the hostile name is not shown as text:\n%s", page)
		}
	}
}

// Every directory shown, whatever the bytes of its name, links to a page listing it: a
// directory with a non-UTF-8 name must not be a dead end that hides what is inside.
func TestStatusPageLinksEveryDirectory(t *testing.T) {
	ts, _ := hostileServer(t)
	seen := map[string]bool{}
	var walk func(link string, depth int)
	walk = func(link string, depth int) {
		if depth > 5 || seen[link] {
			return
		}
		seen[link] = true
		resp, body := ts.do("GET", link, nil)
		wantStatus(t, resp, body, 200)
		for _, m := range regexp.MustCompile(`<a href="(/\?path[^"]*)"><code>`).FindAllStringSubmatch(string(body), -1) {
			walk(strings.ReplaceAll(m[1], "&amp;", "&"), depth+1)
		}
	}
	walk("/", 0)
	found := false
	for link := range seen {
		u, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}
		p, err := pathParam(u.Query())
		if err != nil {
			t.Fatalf("%s: %v", link, err)
		}
		if p == "latin1/dir\xff\xfe" {
			found = true
		}
	}
	if !found {
		t.Errorf("no link reaches latin1/dir\\xff\\xfe; pages reached: %v", seen)
	}
	// The root, repos, dirs, latin1, the non-UTF-8 one, and the hostile directories below
	// repos and dirs (one name holds a slash: "</script>" makes two levels).
	if len(seen) != 1+3+1+2*5 {
		t.Errorf("reached %d pages, want 15: %v", len(seen), seen)
	}
}

// A huge directory is listed a page at a time, each page bounded, and the pages together list
// every entry once.
func TestStatusPagePagesHugeDirectories(t *testing.T) {
	f := newFakeBackend()
	const n = 1234
	for i := range n {
		f.addFile(fmt.Sprintf("big/f%05d", i), 1)
	}
	f.addFile("big/\xff-last", 1) // a non-UTF-8 name on the last page, after every ASCII one
	ts := newTestServer(t, f, Options{})
	rowRe := regexp.MustCompile(`<tr><td><code>([^<]*)</code></td><td>file</td>`)
	nextRe := regexp.MustCompile(`<a href="(/\?[^"]*)"[^>]*>next`)
	link, pages, rows := "/?path=big", 0, map[string]int{}
	for link != "" {
		pages++
		if pages > 10 {
			t.Fatalf("more than 10 pages for %d entries", n+1)
		}
		resp, body := ts.do("GET", link, nil)
		wantStatus(t, resp, body, 200)
		got := rowRe.FindAllStringSubmatch(string(body), -1)
		if len(got) > statusTreeEntries {
			t.Fatalf("%s lists %d entries, more than %d", link, len(got), statusTreeEntries)
		}
		for _, m := range got {
			rows[m[1]]++
		}
		link = ""
		if m := nextRe.FindStringSubmatch(string(body)); m != nil {
			link = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if len(rows) != n+1 {
		t.Fatalf("the pages listed %d distinct entries, want %d", len(rows), n+1)
	}
	for name, c := range rows {
		if c != 1 {
			t.Errorf("%s listed %d times", name, c)
		}
	}
	if pages != (n+1+statusTreeEntries-1)/statusTreeEntries {
		t.Errorf("%d pages, want %d", pages, (n+1+statusTreeEntries-1)/statusTreeEntries)
	}
	// A bad after is a clear 400, not a silent first page.
	resp, body := ts.do("GET", "/?path=big&after=a%2Fb", nil)
	wantStatus(t, resp, body, 400)
}

// Traversal in the browsing parameters is refused before it reaches the backend.
func TestStatusPageRefusesTraversal(t *testing.T) {
	f := newFakeBackend()
	f.addFile("a/b", 1)
	ts := newTestServer(t, f, Options{})
	for _, q := range []string{
		"path=..", "path=../etc", "path=a/../../etc", "path=%2e%2e/etc", "path=a%2f..%2f..", "path=a%00b",
		"path_b64=" + url.QueryEscape("Li4vZXRj"), // "../etc"
		"path=a&path=b", "path=a&path_b64=YQ==", "path=%zz",
	} {
		resp, body := ts.do("GET", "/?"+q, nil)
		wantStatus(t, resp, body, 400)
	}
	for _, c := range f.Calls() {
		if strings.Contains(c, "..") || strings.Contains(c, "etc") {
			t.Errorf("a traversal reached the backend: %s", c)
		}
	}
	// A leading slash and doubled slashes name the same directory; a file is not a directory.
	resp, body := ts.do("GET", "/?path=//a//", nil)
	wantStatus(t, resp, body, 200)
	resp, body = ts.do("GET", "/?path=a/b", nil)
	wantStatus(t, resp, body, 400)
	resp, body = ts.do("GET", "/?path=nope", nil)
	wantStatus(t, resp, body, 404)
}

// The page loads nothing from anywhere (no script, no external asset) and says so in its CSP;
// HEAD has the headers without the body; other methods are refused.
func TestStatusPageHeadersAndMethods(t *testing.T) {
	ts, _ := hostileServer(t)
	resp, body := ts.do("GET", "/", nil)
	wantStatus(t, resp, body, 200)
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy %q allows scripts", csp)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	for _, ext := range []string{"http://", "https://", "@import", "url("} {
		if strings.Contains(string(body), ext) {
			t.Errorf("the page refers to an external asset (%s)", ext)
		}
	}
	head, hbody := ts.do("HEAD", "/", nil)
	wantStatus(t, head, hbody, 200)
	if len(hbody) != 0 || head.Header.Get("Content-Security-Policy") != csp {
		t.Errorf("HEAD: %d body bytes, CSP %q", len(hbody), head.Header.Get("Content-Security-Policy"))
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		resp, body := ts.do(m, "/", nil)
		wantStatus(t, resp, body, 405)
		if resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /: Allow %q", m, resp.Header.Get("Allow"))
		}
	}
}

// A blob every repository shares, missing or mismatched, would list every repository and tag
// in each of its rows (the report caps rows, not the names in a row): the page caps them too.
func TestStatusPageBoundsNamesPerProblemRow(t *testing.T) {
	f := newFakeBackend()
	var repos, tags []string
	for i := range 5000 {
		repos = append(repos, fmt.Sprintf("org/repo-%05d", i))
		tags = append(tags, fmt.Sprintf("org/repo-%05d:latest", i))
	}
	var mismatched, missing []map[string]any
	for i := range 200 {
		mismatched = append(mismatched, map[string]any{"path": fmt.Sprintf("blobs/%d", i), "expected": "sha256:a", "actual": "sha256:b", "repos": repos})
		missing = append(missing, map[string]any{"digest": fmt.Sprintf("sha256:%d", i), "kind": "blob", "repos": repos, "tags": tags})
	}
	f.report = map[string]any{"ok": false, "mismatched": mismatched, "mismatched_count": 200, "missing": missing, "missing_count": 200}
	ts := newTestServer(t, f, Options{})
	resp, body := ts.do("GET", "/", nil)
	wantStatus(t, resp, body, 200)
	if len(body) > 2<<20 {
		t.Errorf("the page is %d bytes for 400 problem rows: the names in a row are not bounded", len(body))
	}
	if !strings.Contains(string(body), "and 4980 more") {
		t.Errorf("a capped row does not say how many names it leaves out")
	}
}

// The page served on a unix socket (the StatefulSet and the systemd example use one or loopback):
// any Host header is accepted there (no DNS rebinding through a socket file), the socket is the
// owner's only, and the page is the same.
func TestStatusPageOnUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeBackend()
	f.addDir("blobs")
	s := New(f, Options{})
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close() })
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	req, _ := http.NewRequest("GET", "http://anything.example/?path=blobs", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<h2>Tree: <code>/blobs</code></h2>") {
		t.Fatalf("GET / over the socket: %d\n%s", resp.StatusCode, body)
	}
}
