package api

import (
	"strings"
	"testing"
)

// The registry report's problem lists are tables of their own, each row in the "bad" style,
// with the repositories a mismatched blob breaks; hostile repository names stay text.
func TestStatusPageProblemTables(t *testing.T) {
	b := newFakeBackend()
	ts := newTestServer(t, b, Options{})
	b.set(func(f *fakeBackend) {
		f.report = map[string]any{
			"ok": false,
			"mismatched": []map[string]any{{"path": "blobs/sha256/aa", "expected": "sha256:aa", "actual": "sha256:bb",
				"repos": []string{"org/app", "<b>evil</b>"}}},
			"mismatched_count": 1,
			"missing":          []map[string]any{{"digest": "sha256:cc", "kind": "blob", "repos": []string{"org/lib"}, "tags": []string{"org/lib:v1"}}},
			"missing_count":    1,
			"dangling":         []map[string]any{{"digest": "sha256:dd", "path": "blobs/sha256/dd", "size": 4096}},
			"dangling_count":   1,
			"dangling_bytes":   4096,
		}
	})
	resp, body := ts.do("GET", "/", nil)
	wantStatus(t, resp, body, 200)
	page := string(body)
	for _, want := range []string{
		`<h3 class="bad" id="mismatched">Mismatched blobs: 1</h3>`,
		`<tr class="bad"><td><code>sha256:aa</code></td><td><code>sha256:bb</code></td><td><code>org/app</code> <code>&lt;b&gt;evil&lt;/b&gt;</code> </td><td><code>blobs/sha256/aa</code></td></tr>`,
		`<h3 class="bad" id="missing">Missing: 1</h3>`,
		`<td><code>sha256:cc</code></td><td>blob</td><td><code>org/lib</code> </td><td><code>org/lib:v1</code> </td>`,
		`<h3 class="bad" id="dangling">Dangling: 1 (4096 bytes)</h3>`,
		`<tr class="bad"><td><code>sha256:dd</code></td><td>4096</td>`,
		`<th>mismatched_count</th>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %s:\n%s", want, page)
		}
	}
	if strings.Contains(page, "<th>mismatched</th>") || strings.Contains(page, "<b>evil") {
		t.Errorf("the lists are shown raw:\n%s", page)
	}

	// A consistent registry has no problem tables.
	b.set(func(f *fakeBackend) {
		f.report = map[string]any{"ok": true, "mismatched": []any{}, "mismatched_count": 0}
	})
	_, body = ts.do("GET", "/", nil)
	if strings.Contains(string(body), `id="mismatched"`) || !strings.Contains(string(body), `class="ok">consistent`) {
		t.Errorf("a consistent registry's page:\n%s", body)
	}
}
