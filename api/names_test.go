package api

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// nameDoc has a name in every position the encoding rules cover: a member, a list, a map key
// and a nested object in a list.
type nameDoc struct {
	Name  string            `json:"name"`
	List  []string          `json:"list"`
	Tags  map[string]string `json:"tags"`
	Found []Finding         `json:"found"`
}

// decodedDoc is what a client decodes nameDoc's JSON into, b64 siblings included.
type decodedDoc struct {
	Name     string                       `json:"name"`
	NameB64  string                       `json:"name_b64"`
	List     []string                     `json:"list"`
	ListB64  []*string                    `json:"list_b64"`
	Tags     map[string]string            `json:"tags"`
	TagsB64  map[string]string            `json:"tags_b64"`
	Found    []map[string]string          `json:"found"`
	FoundB64 []map[string]json.RawMessage `json:"found_b64"`
}

// recover rebuilds the exact values from the display forms and their siblings.
func (d decodedDoc) recover(t *testing.T) nameDoc {
	t.Helper()
	dec := func(display, b64 string) string {
		s, err := DecodeString(display, b64)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	out := nameDoc{Name: dec(d.Name, d.NameB64), Tags: map[string]string{}}
	for i, s := range d.List {
		if d.ListB64 != nil && d.ListB64[i] != nil {
			s = dec(s, *d.ListB64[i])
		}
		out.List = append(out.List, s)
	}
	for k, v := range d.Tags {
		out.Tags[k] = v
	}
	for k, v := range d.TagsB64 {
		if strings.HasSuffix(k, B64Suffix) {
			continue
		}
		out.Tags[dec("", k)] = dec(v, d.TagsB64[k+B64Suffix])
	}
	for _, f := range d.Found {
		out.Found = append(out.Found, Finding{Kind: f["kind"], Path: dec(f["path"], f["path_b64"]), Detail: dec(f["detail"], f["detail_b64"])})
	}
	return out
}

func roundTrip(t *testing.T, in nameDoc) {
	t.Helper()
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.Valid(b) {
		t.Fatalf("Marshal wrote invalid UTF-8: %q", b)
	}
	var d decodedDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	got := d.recover(t)
	if got.Name != in.Name || strings.Join(got.List, "\x00/") != strings.Join(in.List, "\x00/") || len(got.Tags) != len(in.Tags) || len(got.Found) != len(in.Found) {
		t.Fatalf("round trip of %q\n via %s\n gave %q", in, b, got)
	}
	for k, v := range in.Tags {
		if got.Tags[k] != v {
			t.Fatalf("tag %q: got %q want %q (json %s)", k, got.Tags[k], v, b)
		}
	}
	for i := range in.Found {
		if got.Found[i] != in.Found[i] {
			t.Fatalf("finding %d: got %q want %q (json %s)", i, got.Found[i], in.Found[i], b)
		}
	}
}

// Names that are not UTF-8 survive JSON exactly: "\xfe" and "\xff" stay two different names.
func TestJSONKeepsNamesThatAreNotUTF8(t *testing.T) {
	for _, n := range []string{"\xfe", "\xff", "a\xfeb", "plain", "", "日本", "\xed\xa0\x80", "x\x00y"} {
		roundTrip(t, nameDoc{Name: n, List: []string{"ok", n}, Tags: map[string]string{n: "v" + n, "\xfe" + n: "w"},
			Found: []Finding{{Kind: "drift", Path: "dir/" + n, Detail: "open " + n}}})
	}
	b, _ := Marshal(struct {
		Name string `json:"name"`
	}{"\xfe"})
	if want := `{"name":"\ufffd","name_b64":"/g=="}`; string(b) != want {
		t.Fatalf("Marshal = %s, want %s", b, want)
	}
}

// A document with valid UTF-8 only is exactly what encoding/json writes.
func TestJSONUnchangedForValidNames(t *testing.T) {
	v := nameDoc{Name: "blobs<&>", List: []string{"a", "b"}, Tags: map[string]string{"latest": "sha256:1"}, Found: []Finding{{Kind: "k", Path: "p"}}}
	a, _ := Marshal(v)
	b, _ := json.Marshal(v)
	if string(a) != string(b) {
		t.Fatalf("Marshal = %s, json.Marshal = %s", a, b)
	}
}

func FuzzNameRoundTrip(f *testing.F) {
	for _, s := range []string{"\xfe", "\xff", "a", "", "sha256:abc", "\xc3", "é", "a\x00"} {
		f.Add([]byte(s), []byte("x"))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		n, m := string(a), string(b)
		roundTrip(t, nameDoc{Name: n, List: []string{m, n}, Tags: map[string]string{n: m, m + "/": n},
			Found: []Finding{{Kind: "mismatch", Path: n + "/" + m, Detail: m}}})
		if strings.ContainsAny(n, "/\x00") || n == "" || len(n) > MaxNameLen {
			return
		}
		enc := EncodeAfter(n)
		if !utf8.ValidString(enc) {
			t.Fatalf("EncodeAfter(%q) = %q is not UTF-8", n, enc)
		}
		// "next" travels through JSON and a query string, then comes back as "after".
		var back struct{ Next string }
		j, _ := Marshal(struct{ Next string }{enc})
		if err := json.Unmarshal(j, &back); err != nil {
			t.Fatal(err)
		}
		q, err := url.ParseQuery(url.Values{"after": {back.Next}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeAfter(q.Get("after"))
		if err != nil || got != n {
			t.Fatalf("DecodeAfter(EncodeAfter(%q)=%q) = %q, %v", n, enc, got, err)
		}
	})
}

// A malformed encoded "after" is a 400, not a name.
func TestAfterRejectsBadBase64(t *testing.T) {
	for _, v := range []string{"/", "/!!", "/" + base64.StdEncoding.EncodeToString([]byte("a/b")), "/" + base64.StdEncoding.EncodeToString([]byte("a\x00"))} {
		if _, err := DecodeAfter(v); err == nil {
			t.Errorf("DecodeAfter(%q) accepted", v)
		}
	}
}

// Following "next" through a directory whose names are not UTF-8 visits every name exactly once
// and ends; path_b64 names such a directory exactly.
func TestTreePagingWithNamesThatAreNotUTF8(t *testing.T) {
	b := newFakeBackend()
	names := []string{"\xfe", "\xff", "\xfe\xff", "a", "\xc3(", "é", "z"}
	dir := "d\xfe"
	for _, n := range names {
		b.addFile(dir+"/"+n, 1)
	}
	ts := newTestServer(t, b, Options{})
	seen := map[string]int{}
	after := ""
	for page := 0; ; page++ {
		if page > len(names)+1 {
			t.Fatalf("paging did not end after %d pages: %v", page, seen)
		}
		q := url.Values{"path_b64": {base64.StdEncoding.EncodeToString([]byte(dir))}, "limit": {"2"}}
		if after != "" {
			q.Set("after", after)
		}
		resp, body := ts.do("GET", "/v1/tree?"+q.Encode(), nil)
		wantStatus(t, resp, body, 200)
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
		if got, _ := DecodeString(p.Path, p.PathB64); got != dir {
			t.Fatalf("page path %q (b64 %q), want %q", p.Path, p.PathB64, dir)
		}
		for _, e := range p.Entries {
			n, err := DecodeString(e.Name, e.NameB64)
			if err != nil {
				t.Fatal(err)
			}
			seen[n]++
		}
		if p.Next == "" {
			if link := resp.Header.Get("Link"); link != "" {
				t.Fatalf("last page has a Link header %q", link)
			}
			break
		}
		link, _ := url.Parse(strings.TrimSuffix(strings.TrimPrefix(resp.Header.Get("Link"), "<"), `>; rel="next"`))
		if link.Query().Get("after") != p.Next {
			t.Fatalf("Link after %q, next %q", link.Query().Get("after"), p.Next)
		}
		after = p.Next
	}
	for _, n := range names {
		if seen[n] != 1 {
			t.Errorf("name %q seen %d times (all: %v)", n, seen[n], seen)
		}
	}
	if len(seen) != len(names) {
		t.Errorf("saw %d names, want %d: %v", len(seen), len(names), seen)
	}
	resp, body := ts.do("GET", "/v1/tree?path=a&path_b64=YQ==", nil)
	wantStatus(t, resp, body, 400)
}
