package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The status page (GET /): the root's .state and the registry report as one small HTML page
// for a person at a browser. Read-only, no scripts, no external assets; every value goes
// through html/template, so hostile file names are escaped.

// statusFindings caps the findings listed on the page (the count is always shown).
const statusFindings = 50

// statusTreeEntries caps the entries of the directory listed on a page; "next" and "first"
// links page through the rest (the "after" parameter, as GET /v1/tree takes it).
const statusTreeEntries = 500

type statusPage struct {
	Healthy   bool
	Unhealthy string
	State     statusState
	Findings  []Finding
	More      int
	Registry  map[string]any
	RegKeys   []string
	Problems  statusProblems
	Peers     []statusKV
	Dir       string    // the directory listed ("" = root)
	DirLink   statusRef // the directory itself (for the paging links)
	Parent    statusRef // its parent, for the "up" link
	Tree      []statusEntry
	After     string // the "after" of this page ("" = first page)
	Next      string // the "after" of the next page ("" = last page), as EncodeAfter writes it
}

// statusRef is the query naming a directory on the page: path=P, or path_b64=base64 when P is
// not valid UTF-8 (a name is bytes; a link must reach it all the same).
type statusRef struct{ Param, Value string }

func statusRefOf(p string) statusRef {
	if needsB64(p) {
		return statusRef{"path_b64", base64.StdEncoding.EncodeToString([]byte(p))}
	}
	return statusRef{"path", p}
}

// statusEntry is one row of the directory listing; Link is the page of a subdirectory.
type statusEntry struct {
	TreeEntry
	Link *statusRef
}

// statusName shows a name as text: itself when it is valid UTF-8, otherwise with each byte
// that is not part of a UTF-8 character written as \xNN (the page is UTF-8; distinct names
// stay distinct).
func statusName(s string) string {
	if !needsB64(s) {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n <= 1, r == 0:
			fmt.Fprintf(&b, `\x%02x`, s[0])
			n = 1
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}

type statusState struct {
	Digest        string         `json:"digest"`
	Status        string         `json:"status"`
	Files         int64          `json:"files"`
	Dirs          int64          `json:"dirs"`
	Symlinks      int64          `json:"symlinks"`
	Bytes         int64          `json:"bytes"`
	Statuses      map[string]int `json:"statuses"`
	ChangedAt     string         `json:"changed_at"`
	VerifiedAt    string         `json:"verified_at"`
	FindingsCount int            `json:"findings_count"`
	Findings      []Finding      `json:"findings"`
	Mount         map[string]any `json:"mount"`
	Peers         any            `json:"peers"`
}

type statusKV struct{ Key, Value string }

// statusProblems are the registry report's lists, shown as tables of their own (the report's
// other fields are key/value rows). Decoded from the report's JSON, so the page shows what
// /v1/registry shows; field names match its keys case-insensitively.
type statusProblems struct {
	Mismatched []struct {
		Path, Expected, Actual string
		Repos                  []string
		ReposMore              int `json:"-"`
	}
	MismatchedCount int `json:"mismatched_count"`
	Missing         []struct {
		Digest, Kind        string
		Repos, Tags         []string
		ReposMore, TagsMore int `json:"-"`
	}
	MissingCount int `json:"missing_count"`
	Dangling     []struct {
		Digest, Path, Repo, Note string
		Size                     int64
	}
	DanglingCount int   `json:"dangling_count"`
	DanglingBytes int64 `json:"dangling_bytes"`
}

// statusRowNames caps the repositories and tags shown in one row of a problem table: a blob
// every repository shares would otherwise list them all, in each row it appears in.
const statusRowNames = 20

// capNames cuts names to statusRowNames and returns how many it left out.
func capNames(names *[]string) int {
	n := len(*names) - statusRowNames
	if n <= 0 {
		return 0
	}
	*names = (*names)[:statusRowNames]
	return n
}

// capRows applies capNames to every row of the problem tables.
func (p *statusProblems) capRows() {
	for i := range p.Mismatched {
		p.Mismatched[i].ReposMore = capNames(&p.Mismatched[i].Repos)
	}
	for i := range p.Missing {
		p.Missing[i].ReposMore = capNames(&p.Missing[i].Repos)
		p.Missing[i].TagsMore = capNames(&p.Missing[i].Tags)
	}
}

// statusListKeys are the report keys shown in the problem tables instead of as rows.
var statusListKeys = map[string]bool{"mismatched": true, "missing": true, "dangling": true}

// statusKVs flattens a JSON value into sorted key/value rows (one level; deeper values as JSON).
func statusKVs(v any) []statusKV {
	var out []statusKV
	switch v := v.(type) {
	case nil:
	case map[string]any:
		for k, x := range v {
			out = append(out, statusKV{k, statusValue(x)})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	case []any:
		for i, x := range v {
			out = append(out, statusKV{strconv.Itoa(i + 1), statusValue(x)})
		}
	default:
		out = append(out, statusKV{"", statusValue(v)})
	}
	return out
}

func statusValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"name": statusName,
	"get": func(m map[string]any, k string) string {
		if v, ok := m[k]; ok {
			return statusValue(v)
		}
		return ""
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>trowfs status</title>
<style>body{font:14px sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}
.ok{color:#070}.bad{color:#b00}code{font-size:13px}</style></head><body>
<h1>trowfs {{if .Healthy}}<span class="ok">healthy</span>{{else}}<span class="bad">unhealthy</span>{{end}}</h1>
{{with .Unhealthy}}<p class="bad">{{.}}</p>{{end}}
<h2>Tree</h2><table>
<tr><th>Root digest</th><td><code>{{.State.Digest}}</code></td></tr>
<tr><th>Status</th><td class="{{if eq .State.Status "verified"}}ok{{else}}bad{{end}}">{{.State.Status}}</td></tr>
<tr><th>Files / dirs / symlinks</th><td>{{.State.Files}} / {{.State.Dirs}} / {{.State.Symlinks}}</td></tr>
<tr><th>Bytes</th><td>{{.State.Bytes}}</td></tr>
<tr><th>Files by status</th><td>{{range $k, $v := .State.Statuses}}{{$k}}: {{$v}} {{end}}</td></tr>
<tr><th>Changed at</th><td>{{.State.ChangedAt}}</td></tr>
<tr><th>Verified at</th><td>{{.State.VerifiedAt}}</td></tr>
{{with .State.Mount}}<tr><th>Data directory</th><td><code>{{get . "data_dir"}}</code></td></tr>
<tr><th>Mountpoint</th><td><code>{{get . "mountpoint"}}</code></td></tr>
<tr><th>Layout</th><td>{{get . "layout"}}</td></tr>
<tr><th>Mounted since</th><td>{{get . "mounted_since"}}</td></tr>
<tr><th>Scrub</th><td><code>{{get . "scrub"}}</code></td></tr>
<tr><th>Version</th><td>{{get . "trowfs_version"}}</td></tr>{{end}}
</table>
<h2>Findings: <span class="{{if .State.FindingsCount}}bad{{else}}ok{{end}}">{{.State.FindingsCount}}</span></h2>
{{if .Findings}}<table><tr><th>Kind</th><th>Path</th><th>Detail</th></tr>
{{range .Findings}}<tr><td>{{.Kind}}</td><td><code>{{.Path}}</code></td><td>{{.Detail}}</td></tr>
{{end}}</table>{{if .More}}<p>{{.More}} more (GET /v1/state)</p>{{end}}{{end}}
<h2>Tree: <code>/{{name .Dir}}</code></h2>
{{if .Dir}}<p><a href="/?{{.Parent.Param}}={{.Parent.Value}}">up</a></p>{{end}}
<table><tr><th>Name</th><th>Kind</th><th>Status</th><th>Size / bytes below</th><th>Files</th><th>Digest</th></tr>
{{range .Tree}}<tr><td>{{if .Link}}<a href="/?{{.Link.Param}}={{.Link.Value}}"><code>{{name .Name}}</code></a>{{else}}<code>{{name .Name}}</code>{{end}}</td><td>{{.Kind}}</td>
<td class="{{if or (eq .Status "verified") (eq .Status "")}}ok{{else}}bad{{end}}">{{.Status}}</td><td>{{if eq .Kind "dir"}}{{.Bytes}}{{else}}{{.Size}}{{end}}</td><td>{{if eq .Kind "dir"}}{{.Files}}{{end}}</td><td><code>{{.Digest}}</code></td></tr>
{{end}}</table>{{if or .After .Next}}<p>{{if .After}}<a href="/?{{.DirLink.Param}}={{.DirLink.Value}}">first</a> {{end}}{{with .Next}}<a href="/?{{$.DirLink.Param}}={{$.DirLink.Value}}&amp;after={{.}}">next {{len $.Tree}}+</a>{{end}}</p>{{end}}
<h2>Registry</h2>
{{if .Registry}}<p class="{{if eq (get .Registry "ok") "true"}}ok">consistent{{else}}bad">inconsistent{{end}}</p><table>
{{range .RegKeys}}<tr><th>{{.}}</th><td><code>{{get $.Registry .}}</code></td></tr>
{{end}}</table>
{{with .Problems}}{{if .MismatchedCount}}<h3 class="bad" id="mismatched">Mismatched blobs: {{.MismatchedCount}}</h3>
<table><tr><th>Digest (name)</th><th>Content hashes to</th><th>Repositories</th><th>Path</th></tr>
{{range .Mismatched}}<tr class="bad"><td><code>{{.Expected}}</code></td><td><code>{{.Actual}}</code></td><td>{{range .Repos}}<code>{{.}}</code> {{else}}(none){{end}}{{with .ReposMore}}and {{.}} more{{end}}</td><td><code>{{.Path}}</code></td></tr>
{{end}}</table>{{end}}
{{if .MissingCount}}<h3 class="bad" id="missing">Missing: {{.MissingCount}}</h3>
<table><tr><th>Digest</th><th>Kind</th><th>Repositories</th><th>Tags</th></tr>
{{range .Missing}}<tr class="bad"><td><code>{{.Digest}}</code></td><td>{{.Kind}}</td><td>{{range .Repos}}<code>{{.}}</code> {{end}}{{with .ReposMore}}and {{.}} more{{end}}</td><td>{{range .Tags}}<code>{{.}}</code> {{end}}{{with .TagsMore}}and {{.}} more{{end}}</td></tr>
{{end}}</table>{{end}}
{{if .DanglingCount}}<h3 class="bad" id="dangling">Dangling: {{.DanglingCount}} ({{.DanglingBytes}} bytes)</h3>
<table><tr><th>Digest</th><th>Size</th><th>Repository</th><th>Path</th><th>Note</th></tr>
{{range .Dangling}}<tr class="bad"><td><code>{{.Digest}}</code></td><td>{{.Size}}</td><td><code>{{.Repo}}</code></td><td><code>{{.Path}}</code></td><td>{{.Note}}</td></tr>
{{end}}</table>{{end}}{{end}}
{{else}}<p>No registry layout (plain).</p>{{end}}
{{if .Peers}}<h2>Peers</h2><table>
{{range .Peers}}<tr><th>{{.Key}}</th><td><code>{{.Value}}</code></td></tr>
{{end}}</table>{{end}}
<p>JSON: <a href="/v1/state">/v1/state</a> <a href="/v1/registry">/v1/registry</a> <a href="/v1/verify">/v1/verify</a> <a href="/metrics">/metrics</a> <a href="/healthz">/healthz</a></p>
</body></html>
`))

// getStatus renders the status page.
func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	var page statusPage
	q, err := query(r)
	if err == nil {
		page.Dir, err = pathParam(q)
	}
	var after string
	if err == nil {
		after, err = DecodeAfter(q.Get("after"))
	}
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	tree, err := s.backend.Tree(page.Dir, after, statusTreeEntries)
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	page.After = EncodeAfter(after)
	page.Next = EncodeAfter(tree.Next)
	page.DirLink = statusRefOf(page.Dir)
	if i := strings.LastIndexByte(page.Dir, '/'); i >= 0 {
		page.Parent = statusRefOf(page.Dir[:i])
	} else {
		page.Parent = statusRefOf("")
	}
	for _, e := range tree.Entries {
		se := statusEntry{TreeEntry: e}
		if e.Kind == "dir" {
			ref := statusRefOf(strings.TrimPrefix(page.Dir+"/"+e.Name, "/"))
			se.Link = &ref
		}
		page.Tree = append(page.Tree, se)
	}
	if err := s.backend.Healthy(); err != nil {
		page.Unhealthy = err.Error()
	} else {
		page.Healthy = true
	}
	doc, err := s.backend.State("")
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	if err := json.Unmarshal(doc, &page.State); err != nil {
		s.writeError(w, r, http.StatusInternalServerError, fmt.Sprintf("root state: %v", err))
		return
	}
	page.Findings = page.State.Findings
	if len(page.Findings) > statusFindings {
		page.More = len(page.Findings) - statusFindings
		page.Findings = page.Findings[:statusFindings]
	}
	page.Peers = statusKVs(page.State.Peers)
	if report, ok := s.backend.Registry(); ok {
		// Through JSON, so that the page shows what /v1/registry shows, whatever its Go type.
		b, err := json.Marshal(report)
		if err == nil {
			err = json.Unmarshal(b, &page.Registry)
		}
		if err == nil {
			err = json.Unmarshal(b, &page.Problems)
		}
		page.Problems.capRows()
		if err != nil {
			s.writeError(w, r, http.StatusInternalServerError, fmt.Sprintf("registry report: %v", err))
			return
		}
		for k := range page.Registry {
			if !statusListKeys[k] {
				page.RegKeys = append(page.RegKeys, k)
			}
		}
		sort.Strings(page.RegKeys)
	}
	var buf bytes.Buffer
	if err := statusTemplate.Execute(&buf, page); err != nil {
		s.writeError(w, r, http.StatusInternalServerError, fmt.Sprintf("status page: %v", err))
		return
	}
	// Names are shown through statusName; whatever else holds other bytes still leaves as UTF-8.
	out := bytes.ToValidUTF8(buf.Bytes(), []byte("\uFFFD"))
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Nothing but the inline style: no script, no frame around it, no form, no base.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}
