package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

type testServer struct {
	t  *testing.T
	b  *fakeBackend
	s  *Server
	hs *httptest.Server
}

func newTestServer(t *testing.T, b *fakeBackend, opts Options) *testServer {
	t.Helper()
	s := New(b, opts)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &testServer{t: t, b: b, s: s, hs: hs}
}

// do sends a request with a raw (not re-encoded) path and query and returns
// the response with its body read.
func (ts *testServer) do(method, rawURL string, hdr map[string]string) (*http.Response, []byte) {
	ts.t.Helper()
	req, err := http.NewRequest(method, ts.hs.URL+rawURL, nil)
	if err != nil {
		ts.t.Fatalf("NewRequest %s %s: %v", method, rawURL, err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := ts.hs.Client().Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		ts.t.Fatalf("%s %s: reading body: %v", method, rawURL, err)
	}
	return resp, body
}

// wantStatus fails unless resp has the status; for error statuses it also
// checks the JSON error body and returns its message.
func wantStatus(t *testing.T, resp *http.Response, body []byte, code int) string {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, code, body)
	}
	if code < 400 || resp.Request.URL.Path == "/healthz" {
		return ""
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: error Content-Type %q, want application/json", resp.Request.URL, ct)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("%s: error body %q is not {\"error\": \"...\"} (%v)", resp.Request.URL, body, err)
	}
	return e.Error
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return v
}

func TestState(t *testing.T) {
	b := newFakeBackend()
	b.addFile("blobs/sha256/abc", 3)
	ts := newTestServer(t, b, Options{})

	for _, tc := range []struct{ query, want string }{
		{"", ""},
		{"?path=", ""},
		{"?path=/", ""},
		{"?path=blobs/sha256", "blobs/sha256"},
		{"?path=/blobs/sha256", "blobs/sha256"},
		{"?path=blobs//sha256/./", "blobs/sha256"},
		{"?path=%2Fblobs%2Fsha256%2Fabc", "blobs/sha256/abc"},
	} {
		resp, body := ts.do("GET", "/v1/state"+tc.query, nil)
		wantStatus(t, resp, body, 200)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", tc.query, ct)
		}
		want, _ := b.State(tc.want)
		if !bytes.Equal(body, want) {
			t.Errorf("%s: body %s, want verbatim %s", tc.query, body, want)
		}
	}

	resp, body := ts.do("GET", "/v1/state?path=nope", nil)
	msg := wantStatus(t, resp, body, 404)
	if !strings.Contains(msg, "nope") {
		t.Errorf("404 message %q does not name the path", msg)
	}

	resp, body = ts.do("HEAD", "/v1/state?path=blobs", nil)
	wantStatus(t, resp, body, 200)
	if len(body) != 0 {
		t.Errorf("HEAD returned a body: %q", body)
	}
}

// TestPathEscapes sends every parameter that could reach outside the data
// root and checks that each is refused with 400 before the backend sees it.
func TestPathEscapes(t *testing.T) {
	b := newFakeBackend()
	b.addFile("a/b", 1)
	ts := newTestServer(t, b, Options{})
	bad := []string{
		"path=..",
		"path=../",
		"path=../etc/passwd",
		"path=/..",
		"path=/../etc",
		"path=a/../../etc",
		"path=a/../b", // harmless after cleaning, refused anyway
		"path=a/..",
		"path=%2e%2e",
		"path=%2E%2E%2Fetc",
		"path=%2fa%2f%2e%2e%2f%2e%2e",
		"path=a%00b",
		"path=%00",
		"path=a%2F..%2F..%2Fetc",
		"path=" + strings.Repeat("a/", MaxPathLen),
		"path=%zz",       // malformed escape
		"path=a&path=..", // given twice
	}
	for _, route := range []string{"/v1/state", "/v1/tree"} {
		for _, q := range bad {
			resp, body := ts.do("GET", route+"?"+q, nil)
			wantStatus(t, resp, body, 400)
		}
	}
	if calls := b.Calls(); len(calls) != 0 {
		t.Fatalf("rejected paths reached the backend: %q", calls)
	}

	// Escapes in the URL path itself are not routes.
	for _, p := range []string{"/v1/state/../../etc/passwd", "/v1/%2e%2e/metrics", "/../v1/state"} {
		resp, body := ts.do("GET", p, nil)
		if resp.StatusCode != 404 && resp.StatusCode != 400 {
			t.Errorf("GET %s: status %d, want 404 or 400; body %s", p, resp.StatusCode, body)
		}
	}

	// A twice-encoded ".." is a literal name once decoded, which cannot
	// climb: it reaches the backend as a plain (missing) entry.
	resp, body := ts.do("GET", "/v1/state?path=%252e%252e", nil)
	wantStatus(t, resp, body, 404)
	if calls := b.Calls(); !slices.Equal(calls, []string{`State("%2e%2e")`}) {
		t.Fatalf("backend calls %q", calls)
	}
}

func TestCleanPath(t *testing.T) {
	ok := map[string]string{
		"":          "",
		"/":         "",
		".":         "",
		"./":        "",
		"a":         "a",
		"/a/b":      "a/b",
		"a/b/":      "a/b",
		"a//b":      "a/b",
		"./a/./b":   "a/b",
		"//a":       "a",
		"a..b":      "a..b",
		"...":       "...",
		"sha256:ab": "sha256:ab",
		`a\..\b`:    `a\..\b`, // a backslash is an ordinary byte on Linux
	}
	for in, want := range ok {
		got, err := CleanPath(in)
		if err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"..", "/..", "../a", "a/..", "a/../b", "a/b/../../..", "a\x00", strings.Repeat("x", MaxPathLen+1)} {
		got, err := CleanPath(in)
		if err == nil {
			t.Errorf("CleanPath(%q) = %q, want an error", in, got)
			continue
		}
		var pe *PathError
		if !errors.Is(err, ErrBadPath) || !errors.As(err, &pe) {
			t.Errorf("CleanPath(%q) error %v is not a *PathError matching ErrBadPath", in, err)
		}
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"", "/", "a/b", "../a", "a/../b", "%2e%2e", "a\x00b", "//..//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := CleanPath(in)
		if err != nil {
			return
		}
		if strings.HasPrefix(got, "/") || strings.ContainsRune(got, 0) || got == "." {
			t.Fatalf("CleanPath(%q) = %q", in, got)
		}
		for _, e := range strings.Split(got, "/") {
			if e == ".." || e == "." || (e == "" && got != "") {
				t.Fatalf("CleanPath(%q) = %q has element %q", in, got, e)
			}
		}
		if again, err := CleanPath(got); err != nil || again != got {
			t.Fatalf("CleanPath not idempotent: %q -> %q -> %q, %v", in, got, again, err)
		}
	})
}

func TestTreePagination(t *testing.T) {
	b := newFakeBackend()
	var want []string
	for i := range 25 {
		name := fmt.Sprintf("sha256:%02d", 24-i) // added in reverse order
		b.addFile("blobs/"+name, int64(i))
		want = append(want, name)
	}
	slices.Sort(want)
	b.addDir("blobs/sub")
	want = append(want, "sub")
	ts := newTestServer(t, b, Options{})

	var got []string
	after, pages := "", 0
	for {
		q := url.Values{"path": {"/blobs"}, "limit": {"10"}}
		if after != "" {
			q.Set("after", after)
		}
		resp, body := ts.do("GET", "/v1/tree?"+q.Encode(), nil)
		wantStatus(t, resp, body, 200)
		page := decode[TreePage](t, body)
		pages++
		if page.Path != "blobs" || page.Digest == "" {
			t.Fatalf("page header %+v", page)
		}
		if len(page.Entries) > 10 {
			t.Fatalf("page of %d entries, limit 10", len(page.Entries))
		}
		for _, e := range page.Entries {
			got = append(got, e.Name)
		}
		link := resp.Header.Get("Link")
		if page.Next == "" {
			if link != "" {
				t.Errorf("last page has Link %q", link)
			}
			break
		}
		if !strings.Contains(link, "after="+url.QueryEscape(page.Next)) || !strings.Contains(link, `rel="next"`) {
			t.Errorf("Link %q does not point at after=%s", link, page.Next)
		}
		after = page.Next
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
	}
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("%d pages, names %q; want 3 pages, %q", pages, got, want)
	}

	// An empty directory lists [] rather than null.
	resp, body := ts.do("GET", "/v1/tree?path=blobs/sub", nil)
	wantStatus(t, resp, body, 200)
	if !bytes.Contains(body, []byte(`"entries":[]`)) {
		t.Errorf("empty directory body %s", body)
	}

	// Limits: default, capped, refused.
	b.set(func(f *fakeBackend) { f.calls = nil })
	for _, q := range []string{"", "&limit=10000", "&limit=10001", "&limit=99999999"} {
		resp, body := ts.do("GET", "/v1/tree?path=blobs"+q, nil)
		wantStatus(t, resp, body, 200)
	}
	wantCalls := []string{
		fmt.Sprintf(`Tree("blobs","",%d)`, DefaultTreeLimit),
		`Tree("blobs","",10000)`, `Tree("blobs","",10000)`, `Tree("blobs","",10000)`,
	}
	if calls := b.Calls(); !slices.Equal(calls, wantCalls) {
		t.Fatalf("backend calls %q, want %q", calls, wantCalls)
	}
	for _, q := range []string{"limit=0", "limit=-1", "limit=ten", "limit=1.5", "after=a/b", "after=a%00", "after=" + strings.Repeat("x", 256)} {
		resp, body := ts.do("GET", "/v1/tree?path=blobs&"+q, nil)
		wantStatus(t, resp, body, 400)
	}

	// A file is not a directory; a missing path is not found.
	resp, body = ts.do("GET", "/v1/tree?path=blobs/sha256:01", nil)
	wantStatus(t, resp, body, 400)
	resp, body = ts.do("GET", "/v1/tree?path=nope", nil)
	wantStatus(t, resp, body, 404)
}

func TestRegistry(t *testing.T) {
	b := newFakeBackend()
	ts := newTestServer(t, b, Options{})
	resp, body := ts.do("GET", "/v1/registry", nil)
	wantStatus(t, resp, body, 404)

	b.set(func(f *fakeBackend) { f.report = map[string]any{"layout": "distribution", "in_sync": true, "blobs": 3} })
	resp, body = ts.do("GET", "/v1/registry", nil)
	wantStatus(t, resp, body, 200)
	got := decode[map[string]any](t, body)
	if got["layout"] != "distribution" || got["in_sync"] != true || got["blobs"] != 3.0 {
		t.Fatalf("report %s", body)
	}

	b.set(func(f *fakeBackend) { f.report = map[string]any{"bad": func() {}} }) // not marshalable
	resp, body = ts.do("GET", "/v1/registry", nil)
	wantStatus(t, resp, body, 500)
}

func TestVerify(t *testing.T) {
	b := newFakeBackend()
	ts := newTestServer(t, b, Options{})

	resp, body := ts.do("GET", "/v1/verify", nil)
	wantStatus(t, resp, body, 404)

	resp, body = ts.do("POST", "/v1/verify?kind=quick", nil)
	wantStatus(t, resp, body, 202)
	run := decode[VerifyRun](t, body)
	if run.ID == "" || run.Kind != VerifyQuick || run.State != RunRunning || run.Findings == nil {
		t.Fatalf("run %s", body)
	}
	loc := resp.Header.Get("Location")
	if loc != "/v1/verify/"+run.ID {
		t.Fatalf("Location %q", loc)
	}

	resp, body = ts.do("POST", "/v1/verify", nil)
	wantStatus(t, resp, body, 409)
	busy := decode[struct {
		Run VerifyRun `json:"run"`
	}](t, body)
	if busy.Run.ID != run.ID || resp.Header.Get("Location") != loc {
		t.Fatalf("409 body %s, Location %q", body, resp.Header.Get("Location"))
	}

	b.finish(Finding{Kind: "mismatched", Path: "blobs/sha256/ab", Expected: "sha256:ab", Actual: "sha256:cd"})
	for _, p := range []string{"/v1/verify", loc} {
		resp, body = ts.do("GET", p, nil)
		wantStatus(t, resp, body, 200)
		got := decode[VerifyRun](t, body)
		if got.ID != run.ID || got.State != RunDone || got.FinishedAt == nil || len(got.Findings) != 1 ||
			got.Findings[0].Actual != "sha256:cd" || got.FilesDone != 10 {
			t.Fatalf("GET %s: %s", p, body)
		}
	}

	// The default kind is full.
	resp, body = ts.do("POST", "/v1/verify", nil)
	wantStatus(t, resp, body, 202)
	if got := decode[VerifyRun](t, body); got.Kind != VerifyFull || got.ID == run.ID {
		t.Fatalf("second run %s", body)
	}

	for _, p := range []string{"/v1/verify/nope", "/v1/verify/a%2Fb", "/v1/verify/"} {
		resp, body = ts.do("GET", p, nil)
		wantStatus(t, resp, body, 404)
	}
	b.finish()
	resp, body = ts.do("POST", "/v1/verify?kind=deep", nil)
	wantStatus(t, resp, body, 400)
	resp, body = ts.do("POST", "/v1/verify?kind=full&kind=quick", nil)
	wantStatus(t, resp, body, 400)

	// A browser's cross-site POST is refused even without a token.
	resp, body = ts.do("POST", "/v1/verify", map[string]string{"Sec-Fetch-Site": "cross-site"})
	wantStatus(t, resp, body, 403)
	resp, body = ts.do("POST", "/v1/verify", map[string]string{"Origin": "https://evil.example"})
	wantStatus(t, resp, body, 403)
}

func TestVerifyToken(t *testing.T) {
	const token = "s3cret-token"
	b := newFakeBackend()
	ts := newTestServer(t, b, Options{Token: token + "\n"}) // as read from a token file
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer " + token + "x", "Bearer s3cret",
		"Basic " + token, token, "Bearer" + token} {
		hdr := map[string]string{}
		if auth != "" {
			hdr["Authorization"] = auth
		}
		resp, body := ts.do("POST", "/v1/verify", hdr)
		wantStatus(t, resp, body, 401)
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %q: WWW-Authenticate %q", auth, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if calls := b.Calls(); len(calls) != 0 {
		t.Fatalf("unauthorized POSTs reached the backend: %q", calls)
	}
	resp, body := ts.do("POST", "/v1/verify?kind=full", map[string]string{"Authorization": "bearer " + token})
	wantStatus(t, resp, body, 202)
	// GETs need no token.
	resp, body = ts.do("GET", "/v1/verify", nil)
	wantStatus(t, resp, body, 200)

	// A token file holding only white space locks POST rather than opening it.
	blank := newTestServer(t, newFakeBackend(), Options{Token: " \n"})
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer  \t"} {
		resp, body := blank.do("POST", "/v1/verify", map[string]string{"Authorization": auth})
		wantStatus(t, resp, body, 401)
	}
}

func TestMethodsAndRoutes(t *testing.T) {
	ts := newTestServer(t, newFakeBackend(), Options{})
	for _, tc := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/state", "GET, HEAD"},
		{"POST", "/v1/tree", "GET, HEAD"},
		{"PUT", "/v1/registry", "GET, HEAD"},
		{"PUT", "/v1/verify", "GET, HEAD, POST"},
		{"POST", "/v1/verify/run-1", "GET, HEAD"},
		{"POST", "/metrics", "GET, HEAD"},
		{"PATCH", "/healthz", "GET, HEAD"},
	} {
		resp, body := ts.do(tc.method, tc.path, nil)
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want 405 Allow %q; %s", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), tc.allow, body)
		}
	}
	for _, p := range []string{"/v1", "/v1/", "/v1/state/", "/v2/state", "/metrics/x", "/v1/verify/a/b"} {
		resp, body := ts.do("GET", p, nil)
		wantStatus(t, resp, body, 404)
	}
	resp, _ := ts.do("GET", "/healthz", nil)
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("common headers missing: %v", resp.Header)
	}
}

func TestBackendErrors(t *testing.T) {
	b := newFakeBackend()
	ts := newTestServer(t, b, Options{})
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("lookup: %w", ErrNotFound), 404},
		{fmt.Errorf("lookup: %w", ErrBadPath), 400},
		{fmt.Errorf("lookup: %w", ErrNotDir), 400},
		{fmt.Errorf("lookup: %w", ErrBusy), 409},
		{errInternal, 500},
	} {
		b.set(func(f *fakeBackend) { f.failWith = tc.err })
		for _, p := range []string{"/v1/state?path=a", "/v1/tree?path=a"} {
			resp, body := ts.do("GET", p, nil)
			msg := wantStatus(t, resp, body, tc.code)
			if tc.code == 500 && strings.Contains(msg, "secret") {
				t.Errorf("500 leaks the internal error: %q", msg)
			}
		}
	}
}

func TestHealthz(t *testing.T) {
	b := newFakeBackend()
	ts := newTestServer(t, b, Options{})
	resp, body := ts.do("GET", "/healthz", nil)
	wantStatus(t, resp, body, 200)
	if string(body) != "ok\n" {
		t.Errorf("body %q", body)
	}
	b.set(func(f *fakeBackend) { f.unhealthy = errors.New("mount is gone:\nENOTCONN") })
	resp, body = ts.do("GET", "/healthz", nil)
	wantStatus(t, resp, body, 503)
	if string(body) != "unhealthy: mount is gone: ENOTCONN\n" {
		t.Errorf("body %q", body)
	}
}

func TestHostCheck(t *testing.T) {
	b := newFakeBackend()
	ts := newTestServer(t, b, Options{})
	for _, host := range []string{"localhost", "LOCALHOST:1234", "127.0.0.1:80", "127.9.9.9", "[::1]:8080", "::1"} {
		resp, body := ts.do("GET", "/healthz", map[string]string{"Host": host})
		wantStatus(t, resp, body, 200)
	}
	for _, host := range []string{"evil.example", "evil.example:80", "10.0.0.1", "localhost.evil.example"} {
		resp, body := ts.do("GET", "/healthz", map[string]string{"Host": host})
		if resp.StatusCode != 403 {
			t.Errorf("Host %q: status %d, want 403; %s", host, resp.StatusCode, body)
		}
	}
	ts2 := newTestServer(t, b, Options{AllowedHosts: []string{"Trowfs.Internal"}})
	resp, body := ts2.do("GET", "/healthz", map[string]string{"Host": "trowfs.internal:9000"})
	wantStatus(t, resp, body, 200)
	ts3 := newTestServer(t, b, Options{AllowedHosts: []string{"*"}})
	resp, body = ts3.do("GET", "/healthz", map[string]string{"Host": "anything"})
	wantStatus(t, resp, body, 200)
}

func TestRequestLog(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts := newTestServer(t, newFakeBackend(), Options{Logger: log, Token: "tok-123"})
	resp, body := ts.do("POST", "/v1/verify?kind=quick", map[string]string{"Authorization": "Bearer tok-123"})
	wantStatus(t, resp, body, 202)
	out := buf.String()
	for _, want := range []string{"api request", "method=POST", "path=/v1/verify", "status=202", `query="kind=quick"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "tok-123") {
		t.Errorf("log leaks the token: %q", out)
	}
}

func TestServeShutdown(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(newFakeBackend(), Options{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	resp, err := http.Get("http://" + l.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v, want http.ErrServerClosed", err)
	}
	if _, err := http.Get("http://" + l.Addr().String() + "/healthz"); err == nil {
		t.Fatal("still serving after Shutdown")
	}
	if s.srv.ReadHeaderTimeout != DefaultReadHeaderTimeout || s.srv.WriteTimeout != DefaultWriteTimeout {
		t.Fatalf("timeouts not set: %+v", s.srv)
	}
}
