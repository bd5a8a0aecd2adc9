package registry

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/hashtree"
)

// olaregReferrerSubject annotates olareg's referrers responses in index.json.
const olaregReferrerSubject = "org.olareg.referrer.subject"

// sd names a digest in one blob store ("" for single-store layouts).
type sd struct {
	store string
	d     digest.Digest
}

// edge is a reference from manifest `from` in repository `repo`.
type edge struct {
	repo string
	from digest.Digest
}

// root is a manifest the mark phase starts from.
type root struct {
	repo   string
	store  string
	d      digest.Digest
	tags   []string // tags pointing at it (empty: untagged)
	tagged bool
	// blobOnly: the descriptor's media type says it is not a manifest
	// (an index.json entry naming a plain blob): mark, do not parse.
	blobOnly bool
	// subject: for an olareg referrers response, the manifest it is for.
	subject digest.Digest
}

// needItem is a manifest file the traversal wants parsed.
type needItem struct {
	path string
	d    digest.Digest
	st   hashtree.Status
}

// graph is the result of one traversal.
type graph struct {
	// marks are the referenced digests (the mark set), per store. In
	// trow-sqlite only blob files are in it (manifests are rows).
	marks map[sd]struct{}
	// brokenTargets are absent tag targets (also in marks for file layouts).
	brokenTargets map[sd]struct{}
	// parents records every manifest reference to a digest.
	parents map[sd][]edge
	// untaggedRoot lists the repositories naming an absent untagged root.
	untaggedRoot map[sd][]string
	// rootTags records the tags of each root ("repo:tag").
	rootTags map[sd][]string
	// manifests are the manifests visited that are present.
	manifests map[sd]struct{}
	// asManifest are digests referenced as manifests (roots, index
	// children), present or not.
	asManifest map[sd]struct{}
	// missingRows are manifest rows absent from trow.db (trow-sqlite).
	missingRows map[sd]struct{}
	// history are digests reachable only from trow-files tag history.
	history map[sd]string
	// roots as computed, for repo reports.
	roots      []root
	tags       int
	brokenTags []BrokenTag
	unparsable map[string]Unparsable
	need       map[string]needItem
}

func newGraph() *graph {
	return &graph{
		marks:         map[sd]struct{}{},
		brokenTargets: map[sd]struct{}{},
		parents:       map[sd][]edge{},
		untaggedRoot:  map[sd][]string{},
		rootTags:      map[sd][]string{},
		manifests:     map[sd]struct{}{},
		asManifest:    map[sd]struct{}{},
		missingRows:   map[sd]struct{}{},
		history:       map[sd]string{},
		unparsable:    map[string]Unparsable{},
		need:          map[string]needItem{},
	}
}

// maxPasses bounds the parse-and-retraverse loop of compute (each pass
// resolves one more level of nested indexes).
const maxPasses = 32

// compute traverses the model, loading the manifests it needs outside the
// lock and traversing again until nothing is missing from the parse set.
// With onlyRepo set, only that repository's roots are used.
func (r *Registry) compute(repo string, onlyRepo bool) (*graph, uint64) {
	extra := map[string]parsed{}
	for pass := 0; ; pass++ {
		r.mu.RLock()
		version := r.version
		w := &walker{r: r, g: newGraph(), extra: extra}
		w.run(repo, onlyRepo)
		r.mu.RUnlock()
		if len(w.g.need) == 0 || pass >= maxPasses {
			return w.g, version
		}
		for _, n := range w.g.need {
			extra[n.path] = r.loadManifest(n)
		}
	}
}

// loadManifest reads and parses one manifest file and caches the result
// when the bytes hash to the name (so the cached value can only ever be
// the parse of the right content).
func (r *Registry) loadManifest(n needItem) parsed {
	b, err := r.readFile(n.path)
	if err != nil {
		return parsed{err: &ReadError{Path: n.path, Err: err}}
	}
	r.st.manifestReads.Add(1)
	r.st.manifestReadBytes.Add(uint64(len(b)))
	m, err := ParseManifest(b)
	p := parsed{m: m, err: err}
	if n.st != hashtree.StatusMismatch && contentMatches(n.d, b) && r.manifests != nil {
		r.manifests.Set(n.d.String(), p, manifestCost(m))
	}
	return p
}

// contentMatches reports whether b hashes to d (sha256 or sha512).
func contentMatches(d digest.Digest, b []byte) bool {
	alg := d.Algorithm()
	if !alg.Available() {
		return false
	}
	return alg.FromBytes(b) == d
}

// walker runs one traversal. r.mu is held for reading throughout.
type walker struct {
	r     *Registry
	g     *graph
	extra map[string]parsed
	// revisions maps repo → manifest revisions (distribution only).
	revisions map[string]map[digest.Digest]bool
	// rowsSeen are the trow.db manifests visited (trow-sqlite only).
	rowsSeen map[digest.Digest]bool
	// histNote is the note for digests reached from tag history.
	histNote string
	// referrers are olareg referrers responses waiting for their subject
	// to be kept (oci-layout with DeleteUntagged).
	referrers []root
}

func (w *walker) present(s sd) bool {
	if s.store == dbStore {
		if w.r.db == nil {
			return false
		}
		_, ok := w.r.db.manifests[s.d]
		return ok
	}
	return w.r.blobs[s.store][s.d] != nil
}

// mismatched reports whether s is a blob file whose content does not match its name.
func (w *walker) mismatched(s sd) bool {
	e := w.r.blobs[s.store][s.d]
	return e != nil && e.info.Status == hashtree.StatusMismatch
}

// dbStore is the pseudo store of trow.db manifest rows.
const dbStore = "\x00db"

// manifest returns the parsed manifest s, or false when it is absent,
// unparsable (recorded) or not parsed yet (recorded in need).
func (w *walker) manifest(s sd) (*Manifest, bool) {
	var p parsed
	var path string
	if s.store == dbStore {
		row, ok := w.r.db.manifests[s.d]
		if !ok {
			return nil, false
		}
		path = "trow.db"
		key := "db\x00" + s.d.String()
		var hit bool
		if p, hit = w.extra[key]; !hit {
			if w.r.manifests != nil {
				p, hit = w.r.manifests.Get(s.d.String())
			}
			if !hit {
				m, err := ParseManifest(row.raw)
				p = parsed{m: m, err: err}
				if contentMatches(s.d, row.raw) && w.r.manifests != nil {
					w.r.manifests.Set(s.d.String(), p, manifestCost(m))
				}
			}
			w.extra[key] = p
		}
	} else {
		e := w.r.blobs[s.store][s.d]
		if e == nil {
			return nil, false
		}
		path = e.info.Path
		var hit bool
		if p, hit = w.extra[path]; !hit {
			if e.info.Status != hashtree.StatusMismatch && w.r.manifests != nil {
				p, hit = w.r.manifests.Get(s.d.String())
			}
			if !hit && e.info.Size > MaxManifestSize {
				p, hit = parsed{err: parseErr("file of %d bytes, larger than %d", e.info.Size, MaxManifestSize)}, true
			}
			if !hit {
				w.g.need[path] = needItem{path: path, d: s.d, st: e.info.Status}
				return nil, false
			}
			w.extra[path] = p
		}
	}
	w.g.manifests[s] = struct{}{}
	if p.err != nil || p.m == nil {
		msg := "unparsable"
		if p.err != nil {
			msg = p.err.Error()
		}
		w.g.unparsable[path+"\x00"+s.d.String()] = Unparsable{Path: path, Digest: s.d.String(), Error: msg}
		return nil, false
	}
	return p.m, true
}

// visit marks everything manifest s references, recursing into child
// manifests by the layout's rule.
func (w *walker) visit(repo string, s sd, marks map[sd]struct{}, record bool) {
	m, ok := w.manifest(s)
	if !ok {
		return
	}
	isIndex := m.Kind == KindIndex
	for _, ref := range m.References() {
		if isIndex {
			w.g.asManifest[sd{s.store, ref.Digest}] = struct{}{}
		}
		if w.r.layout == TrowSQLite && isIndex {
			// Child manifests are rows of trow.db, not blob files.
			c := sd{dbStore, ref.Digest}
			if record {
				w.g.parents[c] = append(w.g.parents[c], edge{repo, s.d})
			}
			if w.rowsSeen[ref.Digest] {
				continue
			}
			w.rowsSeen[ref.Digest] = true
			if !w.present(c) {
				if record {
					w.g.missingRows[c] = struct{}{}
				}
				continue
			}
			w.visit(repo, c, marks, record)
			continue
		}
		c := sd{s.store, ref.Digest}
		if s.store == dbStore {
			c.store = ""
		}
		// Parent edges are kept only where they can matter: for absent
		// or mismatched references (to name what needs them) and for
		// manifests (to walk up to the tags). Sound layers need none.
		down := w.recurse(repo, c, isIndex)
		if record && (down || !w.present(c) || w.mismatched(c)) {
			w.g.parents[c] = append(w.g.parents[c], edge{repo, s.d})
		}
		if _, done := marks[c]; done {
			continue
		}
		marks[c] = struct{}{}
		if !record {
			if _, ok := w.g.history[c]; !ok {
				w.g.history[c] = w.histNote
			}
		}
		if down {
			w.visit(repo, c, marks, record)
		}
	}
}

// recurse says whether the traversal descends into reference c.
func (w *walker) recurse(repo string, c sd, fromIndex bool) bool {
	switch w.r.layout {
	case Distribution:
		// As garbage-collect: any reference that is a manifest revision of
		// this repository (link present and blob present).
		return w.revisions[repo][c.d] && w.present(c)
	default:
		return fromIndex && w.present(c)
	}
}

// markRoot marks root rt and descends into it.
func (w *walker) markRoot(rt root) {
	s := sd{rt.store, rt.d}
	if !rt.blobOnly {
		w.g.asManifest[s] = struct{}{}
	}
	for _, t := range rt.tags {
		w.g.rootTags[s] = append(w.g.rootTags[s], rt.repo+":"+t)
	}
	if !w.present(s) {
		if rt.tagged {
			w.g.brokenTargets[s] = struct{}{}
			if s.store != dbStore {
				w.g.marks[s] = struct{}{}
			}
		} else if s.store == dbStore {
			w.g.missingRows[s] = struct{}{}
		} else {
			w.g.marks[s] = struct{}{}
			w.g.untaggedRoot[s] = append(w.g.untaggedRoot[s], rt.repo)
		}
		return
	}
	if s.store == dbStore {
		if w.rowsSeen[s.d] {
			return
		}
		w.rowsSeen[s.d] = true
	} else {
		w.g.marks[s] = struct{}{}
	}
	if rt.blobOnly {
		return
	}
	// Like garbage-collect, a root is always descended into, even
	// when an earlier manifest already marked it.
	w.visit(rt.repo, s, w.g.marks, true)
}

// run builds the roots and traverses from them.
func (w *walker) run(repo string, onlyRepo bool) {
	w.revisions = w.r.revisions
	w.g.marks = make(map[sd]struct{}, w.r.nblobs)
	w.rowsSeen = map[digest.Digest]bool{}
	roots, history := w.roots(repo, onlyRepo)
	if onlyRepo {
		kept := roots[:0]
		for _, rt := range roots {
			if rt.repo == repo {
				kept = append(kept, rt)
			}
		}
		roots = kept
	}
	w.g.roots = roots
	for _, rt := range roots {
		w.markRoot(rt)
	}
	// olareg with untagged collection keeps a referrers response (an
	// index.json entry annotated with its subject) while its subject is kept.
	for changed := true; changed; {
		changed = false
		for i, rt := range w.referrers {
			if rt.d == "" {
				continue
			}
			if _, kept := w.g.marks[sd{rt.store, rt.subject}]; kept {
				w.referrers[i].d = ""
				w.g.roots = append(w.g.roots, rt)
				w.markRoot(rt)
				changed = true
			}
		}
	}
	// Tag history (trow-files): what it reaches beyond the mark set is
	// dangling, with a note saying where it comes from.
	if len(history) > 0 && !onlyRepo {
		hm := map[sd]struct{}{}
		for _, h := range history {
			s := sd{h.store, h.d}
			if _, ok := w.g.marks[s]; ok {
				continue
			}
			note := "tag history of " + h.repo + ":" + strings.Join(h.tags, ",")
			if _, done := hm[s]; done || !w.present(s) {
				continue
			}
			hm[s] = struct{}{}
			w.histNote = note
			w.g.history[s] = note
			w.visit(h.repo, s, hm, false)
		}
	}
}

// roots returns the mark roots of the layout, sorted by repository, then
// digest, and (trow-files) the tag history lines that are not current.
// It also records tags, broken tags and unparsable metadata in w.g.
func (w *walker) roots(repoFilter string, onlyRepo bool) (roots []root, history []root) {
	r := w.r
	g := w.g
	addMetaErr := func(p string, e *entry) {
		owner := e.repo
		if e.kind == kOCIIndex {
			owner = ociRepoName(e.store)
		}
		if onlyRepo && owner != repoFilter {
			return
		}
		if e.metaErr != nil {
			g.unparsable[p] = Unparsable{Path: p, Error: e.metaErr.Error()}
		}
	}
	paths := make([]string, 0, len(r.meta))
	for p, e := range r.meta {
		if e.kind == kTagFile || e.kind == kDistTag || e.kind == kDistRevision || e.kind == kOCIIndex {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	switch r.layout {
	case TrowFiles:
		for _, p := range paths {
			e := r.meta[p]
			if e.kind != kTagFile || !e.read {
				continue
			}
			addMetaErr(p, e)
			tf, _ := e.meta.(*tagFile)
			if tf == nil || tf.current == "" {
				continue
			}
			_, byDigest := parseDigest(e.name)
			rt := root{repo: e.repo, d: tf.current}
			if !byDigest {
				rt.tags, rt.tagged = []string{e.name}, true
				g.tags++
				if !w.present(sd{"", tf.current}) {
					g.brokenTags = append(g.brokenTags, BrokenTag{Repo: e.repo, Tag: e.name, Digest: tf.current.String()})
				}
			} else if r.opts.DeleteUntagged {
				continue
			}
			roots = append(roots, rt)
			for _, l := range tf.lines {
				if l.d != tf.current {
					history = append(history, root{repo: e.repo, d: l.d, tags: []string{e.name}})
				}
			}
		}
	case Distribution:
		tags := map[string]map[digest.Digest][]string{} // repo → digest → tags
		for _, p := range paths {
			e := r.meta[p]
			if e.kind != kDistTag || !e.read {
				continue
			}
			addMetaErr(p, e)
			d, _ := e.meta.(digest.Digest)
			if d == "" {
				continue
			}
			g.tags++
			if tags[e.repo] == nil {
				tags[e.repo] = map[digest.Digest][]string{}
			}
			tags[e.repo][d] = append(tags[e.repo][d], e.name)
			if !w.present(sd{"", d}) {
				g.brokenTags = append(g.brokenTags, BrokenTag{Repo: e.repo, Tag: e.name, Digest: d.String()})
				g.brokenTargets[sd{"", d}] = struct{}{}
				g.marks[sd{"", d}] = struct{}{}
			}
		}
		for _, p := range paths {
			e := r.meta[p]
			if e.kind != kDistRevision {
				continue
			}
			t := tags[e.repo][e.dgst]
			if r.opts.DeleteUntagged && len(t) == 0 {
				continue
			}
			roots = append(roots, root{repo: e.repo, d: e.dgst, tags: t, tagged: len(t) > 0})
		}
	case OCILayout:
		for _, p := range paths {
			e := r.meta[p]
			if e.kind != kOCIIndex || !e.read {
				continue
			}
			addMetaErr(p, e)
			idx, _ := e.meta.(*ociIndex)
			if idx == nil {
				continue
			}
			repo := ociRepoName(e.store)
			byDigest := map[digest.Digest]int{}
			for _, desc := range idx.manifests {
				name := desc.Annotations[refNameAnnotation]
				i, seen := byDigest[desc.Digest]
				if !seen {
					if r.opts.DeleteUntagged && name == "" {
						if subj, ok := parseDigest(desc.Annotations[olaregReferrerSubject]); ok && (!onlyRepo || repo == repoFilter) {
							w.referrers = append(w.referrers, root{repo: repo, store: e.store, d: desc.Digest, subject: subj})
						}
						continue
					}
					byDigest[desc.Digest] = len(roots)
					roots = append(roots, root{repo: repo, store: e.store, d: desc.Digest,
						blobOnly: desc.MediaType != "" && !isManifestMediaType(desc.MediaType)})
					i = len(roots) - 1
				}
				if name != "" {
					g.tags++
					roots[i].tags = append(roots[i].tags, name)
					roots[i].tagged = true
					if !w.present(sd{e.store, desc.Digest}) {
						g.brokenTags = append(g.brokenTags, BrokenTag{Repo: repo, Tag: name, Digest: desc.Digest.String()})
					}
				}
			}
		}
	case TrowSQLite:
		if r.db == nil {
			return nil, nil
		}
		g.unparsableRows(r.db.badRows)
		tagged := map[digest.Digest][]dbTag{}
		for _, t := range r.db.tags {
			g.tags++
			if t.target == "" {
				g.unparsable["trow.db tag "+t.repo+":"+t.tag] = Unparsable{Path: "trow.db", Digest: t.rawTarget,
					Error: fmt.Sprintf("tag %s:%s: invalid manifest digest", t.repo, t.tag)}
				continue
			}
			tagged[t.target] = append(tagged[t.target], t)
			if _, ok := r.db.manifests[t.target]; !ok {
				g.brokenTags = append(g.brokenTags, BrokenTag{Repo: t.repo, Tag: t.tag, Digest: t.target.String()})
			}
		}
		for _, t := range r.db.tags {
			if t.target != "" {
				roots = append(roots, root{repo: t.repo, store: dbStore, d: t.target, tags: []string{t.tag}, tagged: true})
			}
		}
		if !r.opts.DeleteUntagged {
			ds := make([]string, 0, len(r.db.manifests))
			for d := range r.db.manifests {
				if len(tagged[d]) == 0 {
					ds = append(ds, string(d))
				}
			}
			sort.Strings(ds)
			for _, d := range ds {
				roots = append(roots, root{store: dbStore, d: digest.Digest(d)})
			}
		}
	}
	return roots, history
}

// unparsableRows records invalid rows of trow.db.
func (g *graph) unparsableRows(rows []Unparsable) {
	for _, u := range rows {
		g.unparsable["trow.db row "+u.Digest] = u
	}
}

// setDigest is the sha256 over lines "<digest>\n" of ds, sorted bytewise.
func setDigest(ds []string) string {
	sort.Strings(ds)
	h := sha256.New()
	for _, d := range ds {
		h.Write([]byte(d))
		h.Write([]byte{'\n'})
	}
	return fmt.Sprintf("sha256:%x", h.Sum(nil))
}

// buildReportLocked turns a traversal into a Report. Caller holds mu.
func (r *Registry) buildReportLocked(g *graph) Report {
	max := r.opts.MaxListed
	rep := Report{
		Layout:         r.layout,
		Repositories:   len(r.reposLocked()),
		Tags:           g.tags,
		DeleteUntagged: r.opts.DeleteUntagged,
		UpdatedAt:      r.changedAt,
		Dangling:       []DanglingBlob{},
		Missing:        []MissingBlob{},
		Mismatched:     []MismatchedBlob{},
		BrokenTags:     []BrokenTag{},
		Unparsable:     []Unparsable{},
	}
	if r.layout == Plain {
		rep.AllBlobDigest, rep.AllManifestDigest = setDigest(nil), setDigest(nil)
		rep.InSync, rep.OK = true, true
		return rep
	}
	for s := range g.manifests {
		if s.store == dbStore || r.blobs[s.store][s.d] != nil {
			rep.Manifests++
		}
	}

	// Present blobs, dangling blobs.
	var present []string
	if r.presentDigest == "" {
		present = make([]string, 0, r.nblobs)
	}
	dangling := []DanglingBlob{}
	for store, m := range r.blobs {
		for d, e := range m {
			if r.presentDigest == "" {
				present = append(present, string(d))
			}
			rep.Blobs++
			rep.BlobBytes += e.info.Size
			if _, ok := g.marks[sd{store, d}]; ok {
				continue
			}
			db := DanglingBlob{Digest: string(d), Path: e.info.Path, Size: e.info.Size, Note: g.history[sd{store, d}]}
			if r.layout == OCILayout {
				db.Repo = ociRepoName(store)
			}
			dangling = append(dangling, db)
			rep.DanglingBytes += e.info.Size
		}
	}
	sort.Slice(dangling, func(i, j int) bool { return dangling[i].Path < dangling[j].Path })
	rep.DanglingCount = len(dangling)
	rep.Dangling, rep.Truncated = clip(dangling, max, rep.Truncated)

	// Referenced digests, missing ones.
	referenced := make([]string, 0, len(g.marks))
	for s := range g.marks {
		referenced = append(referenced, string(s.d))
	}
	if r.presentDigest == "" {
		r.presentDigest = setDigest(present)
	}
	rep.AllBlobDigest = r.presentDigest
	rep.AllManifestDigest = setDigest(referenced)
	rep.InSync = rep.AllBlobDigest == rep.AllManifestDigest

	missing := nonNil(r.missingLocked(g, "", false))
	rep.MissingCount = len(missing)
	rep.Missing, rep.Truncated = clip(missing, max, rep.Truncated)

	// Mismatched blob files.
	mism := []MismatchedBlob{}
	for store, m := range r.blobs {
		for d, e := range m {
			if e.info.Status == hashtree.StatusMismatch {
				mism = append(mism, MismatchedBlob{Path: e.info.Path, Expected: string(d), Actual: e.info.Digest.String(),
					Repos: nonNil(reposUsing(g, sd{store, d}))})
			}
		}
	}
	sort.Slice(mism, func(i, j int) bool { return mism[i].Path < mism[j].Path })
	rep.MismatchedCount = len(mism)
	rep.Mismatched, rep.Truncated = clip(mism, max, rep.Truncated)

	bt := append([]BrokenTag{}, g.brokenTags...)
	sortBroken(bt)
	rep.BrokenTagCount = len(bt)
	rep.BrokenTags, rep.Truncated = clip(bt, max, rep.Truncated)

	un := sortedUnparsable(g.unparsable)
	rep.UnparsableCount = len(un)
	rep.Unparsable, rep.Truncated = clip(un, max, rep.Truncated)

	if r.layout == TrowSQLite {
		if r.db != nil {
			rep.DBDigest = r.db.digest.String()
			t := r.db.loadedAt
			rep.DBLoadedAt = &t
		}
		if r.dbErr != nil {
			rep.DBError = r.dbErr.Error()
		} else if r.db == nil {
			rep.DBError = "trow.db not loaded"
		}
	}
	rep.OK = rep.InSync && rep.DanglingCount == 0 && rep.MissingCount == 0 && rep.MismatchedCount == 0 &&
		rep.BrokenTagCount == 0 && rep.UnparsableCount == 0 && rep.DBError == ""
	return rep
}

// missingLocked lists what is referenced but absent, optionally only what
// repository repo needs. Caller holds mu.
func (r *Registry) missingLocked(g *graph, repo string, onlyRepo bool) []MissingBlob {
	var out []MissingBlob
	add := func(s sd, kind string) {
		parents := g.parents[s]
		if len(parents) == 0 && len(g.untaggedRoot[s]) == 0 {
			return // only a tag target: reported as a broken tag
		}
		mb := MissingBlob{Digest: string(s.d), Kind: kind}
		repos := map[string]bool{}
		mans := map[string]bool{}
		for _, p := range parents {
			repos[p.repo] = true
			mans[string(p.from)] = true
		}
		for _, rp := range g.untaggedRoot[s] {
			repos[rp] = true
		}
		if onlyRepo && !repos[repo] {
			return
		}
		mb.Repos = sortedKeys(repos)
		mb.Manifests = sortedKeys(mans)
		mb.Tags = tagsNeeding(g, s)
		out = append(out, mb)
	}
	for s := range g.marks {
		if r.blobs[s.store][s.d] == nil {
			add(s, "blob")
		}
	}
	for s := range g.missingRows {
		add(s, "manifest")
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Digest != out[j].Digest {
			return out[i].Digest < out[j].Digest
		}
		return out[i].Kind < out[j].Kind
	})
	return out
}

// reposUsing lists the repositories that use s: whose manifests reference it, or whose
// tags or untagged roots name it.
func reposUsing(g *graph, s sd) []string {
	repos := map[string]bool{}
	for _, p := range g.parents[s] {
		repos[p.repo] = true
	}
	for _, rp := range g.untaggedRoot[s] {
		repos[rp] = true
	}
	for _, rt := range g.roots {
		if rt.store == s.store && rt.d == s.d {
			repos[rt.repo] = true
		}
	}
	return sortedKeys(repos)
}

// tagsNeeding walks parent edges up to the roots and collects their tags.
func tagsNeeding(g *graph, s sd) []string {
	seen := map[digest.Digest]bool{}
	tags := map[string]bool{}
	queue := []digest.Digest{s.d}
	stores := []string{s.store, "", dbStore}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d] {
			continue
		}
		seen[d] = true
		for _, st := range stores {
			x := sd{st, d}
			for _, t := range g.rootTags[x] {
				tags[t] = true
			}
			for _, p := range g.parents[x] {
				queue = append(queue, p.from)
			}
		}
	}
	return sortedKeys(tags)
}

// buildRepoReportLocked turns a one-repository traversal into a RepoReport.
func (r *Registry) buildRepoReportLocked(repo string, g *graph) RepoReport {
	rr := RepoReport{Repo: repo, Tags: map[string]string{}, BrokenTags: []BrokenTag{}}
	for _, rt := range g.roots {
		for _, t := range rt.tags {
			rr.Tags[t] = string(rt.d)
		}
	}
	mans := map[string]bool{}
	for s := range g.manifests {
		mans[string(s.d)] = true
	}
	for s := range g.asManifest {
		mans[string(s.d)] = true
	}
	rr.Manifests = nonNil(sortedKeys(mans))
	blobs := map[string]bool{}
	for s := range g.marks {
		if !mans[string(s.d)] {
			if _, broken := g.brokenTargets[s]; !broken {
				blobs[string(s.d)] = true
			}
		}
	}
	rr.Blobs = nonNil(sortedKeys(blobs))
	rr.Missing = nonNil(r.missingLocked(g, repo, true))
	for _, b := range g.brokenTags {
		if b.Repo == repo {
			rr.BrokenTags = append(rr.BrokenTags, b)
		}
	}
	sortBroken(rr.BrokenTags)
	rr.Unparsable = sortedUnparsable(g.unparsable)
	return rr
}

func sortBroken(bt []BrokenTag) {
	sort.Slice(bt, func(i, j int) bool {
		if bt[i].Repo != bt[j].Repo {
			return bt[i].Repo < bt[j].Repo
		}
		return bt[i].Tag < bt[j].Tag
	})
}

func sortedUnparsable(m map[string]Unparsable) []Unparsable {
	out := make([]Unparsable, 0, len(m))
	for _, u := range m {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Digest < out[j].Digest
	})
	return out
}

func sortedKeys(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// nonNil turns a nil slice into an empty one (JSON [] rather than null).
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// clip bounds a list to max entries, setting truncated when it cuts.
func clip[T any](s []T, max int, truncated bool) ([]T, bool) {
	if len(s) > max {
		return s[:max], true
	}
	return s, truncated
}
