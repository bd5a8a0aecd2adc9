package registry

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/cache"
)

// FileInfo is what the mount knows about one tracked file.
type FileInfo struct {
	Path   string          // slash-separated, relative to DATA
	Size   int64           //
	Digest hashtree.Digest // sha256 of the content; zero while unknown
	Status hashtree.Status //
}

// Source gives the registry read access to DATA. ReadFile reads a small file
// (manifest, link, tag file, index.json) by relative path and must refuse
// paths that escape the root. DBPath is the filesystem path of trow.db, to
// be opened read-only.
type Source interface {
	ReadFile(rel string) ([]byte, error)
	DBPath() string
}

// Options configure a Registry.
type Options struct {
	// DeleteUntagged mirrors `registry garbage-collect --delete-untagged`:
	// only manifests a tag currently points at are roots of the mark phase.
	DeleteUntagged bool
	// Logger receives findings and database reload errors; nil discards.
	Logger *slog.Logger
	// Debounce coalesces trow.db reloads: at most one per Debounce, at most
	// Debounce after a change. Zero means DefaultDebounce.
	Debounce time.Duration
	// MaxListed bounds each list in a Report (counts stay exact). Zero means
	// DefaultMaxListed.
	MaxListed int
	// CacheBytes bounds the parsed-manifest cache. Zero means DefaultCacheBytes.
	CacheBytes int64
}

// Defaults for Options.
const (
	DefaultDebounce   = 500 * time.Millisecond
	DefaultMaxListed  = 1000
	DefaultCacheBytes = 64 << 20
)

// parsed is the result of parsing one manifest.
type parsed struct {
	m   *Manifest
	err error
}

// Registry keeps the registry model of one data directory. All methods are
// safe for concurrent use.
type Registry struct {
	layout    Layout
	src       Source
	opts      Options
	log       *slog.Logger
	manifests *cache.Cache[string, parsed] // nil if the cache could not be created

	// computeMu serialises report computations (taken before mu).
	computeMu sync.Mutex

	// mu guards the model below. Never held during I/O.
	mu sync.RWMutex
	// entries maps each tracked path to its entry.
	entries map[string]*entry
	// dirCount counts tracked entries under each ancestor directory, so
	// that Remove of a directory finds its subtree without a full scan.
	dirCount map[string]int
	// blobs maps store → digest → the entry of the blob file.
	blobs map[string]map[digest.Digest]*entry
	// nblobs is the number of blob files in blobs.
	nblobs int
	// meta holds the entries that are not blobs (tag files, links, ...).
	meta map[string]*entry
	// revisions maps repo → manifest revisions (distribution).
	revisions map[string]map[digest.Digest]bool
	// presentDigest caches all_blob_digest; "" when the blob set changed.
	presentDigest string
	// dirty holds metadata paths whose content must be (re)read.
	dirty map[string]struct{}
	// db is the last successful read of trow.db; dbErr the last failure.
	db    *dbModel
	dbErr error
	// dbStamp is the size and mtime of trow.db and trow.db-wal before
	// the last read attempt, made at dbTried.
	dbStamp dbStamp
	dbTried time.Time
	// version increases with every change to the model.
	version   uint64
	changedAt time.Time
	// cached is the report computed at cachedVersion.
	cached        *Report
	cachedVersion uint64

	// dbMu guards the debounce state below. Never held while taking mu.
	dbMu      sync.Mutex
	dbTimer   *time.Timer
	dbPending bool // a change arrived since the last reload started
	dbRunning bool // a reload is in progress
	closed    bool
	dbWG      sync.WaitGroup

	st counters
}

// counters are the atomic statistics behind Stats.
type counters struct {
	updates, removes, resets         atomic.Uint64
	reportsComputed, reportsCached   atomic.Uint64
	metaReads, metaReadErrors        atomic.Uint64
	manifestReads, manifestReadBytes atomic.Uint64
	dbReloads, dbErrors              atomic.Uint64
	lastComputeNanos                 atomic.Int64
}

// Stats are the registry's counters.
type Stats struct {
	Updates           uint64      `json:"updates"`
	Removes           uint64      `json:"removes"`
	Resets            uint64      `json:"resets"`
	ReportsComputed   uint64      `json:"reports_computed"`
	ReportsCached     uint64      `json:"reports_cached"`
	MetaReads         uint64      `json:"meta_reads"`
	MetaReadErrors    uint64      `json:"meta_read_errors"`
	ManifestReads     uint64      `json:"manifest_reads"`
	ManifestReadBytes uint64      `json:"manifest_read_bytes"`
	DBReloads         uint64      `json:"db_reloads"`
	DBErrors          uint64      `json:"db_errors"`
	LastCompute       string      `json:"last_compute"` // duration of the last report computation
	ManifestCache     cache.Stats `json:"manifest_cache"`
	TrackedFiles      int         `json:"tracked_files"`
}

// New returns an empty Registry for layout l reading through src.
func New(l Layout, src Source, opts Options) *Registry {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.MaxListed <= 0 {
		opts.MaxListed = DefaultMaxListed
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Registry{layout: l, src: src, opts: opts, log: log.With("component", "registry")}
	c, err := cache.New[string, parsed](opts.CacheBytes, opts.CacheBytes/1024)
	if err != nil {
		r.log.Warn("manifest cache disabled", "err", err)
	} else {
		r.manifests = c
	}
	r.mu.Lock()
	r.resetLocked()
	r.mu.Unlock()
	return r
}

// Layout returns the registry's layout.
func (r *Registry) Layout() Layout { return r.layout }

// resetLocked empties the model. Caller holds mu.
func (r *Registry) resetLocked() {
	r.entries = map[string]*entry{}
	r.dirCount = map[string]int{}
	r.blobs = map[string]map[digest.Digest]*entry{}
	r.nblobs = 0
	r.meta = map[string]*entry{}
	r.revisions = map[string]map[digest.Digest]bool{}
	r.presentDigest = ""
	r.dirty = map[string]struct{}{}
	r.cached = nil
	r.bumpLocked()
}

// bumpLocked records a change. Caller holds mu.
func (r *Registry) bumpLocked() {
	r.version++
	r.changedAt = time.Now().UTC()
}

// Reset replaces the model with files (a full scan), reads every metadata
// file, loads trow.db and computes the report.
func (r *Registry) Reset(files []FileInfo) {
	r.st.resets.Add(1)
	r.mu.Lock()
	r.resetLocked()
	for _, f := range files {
		r.putLocked(f)
	}
	hasDB := r.entries["trow.db"] != nil
	r.mu.Unlock()
	if r.layout == TrowSQLite {
		if hasDB {
			r.reloadDB()
		} else {
			r.mu.Lock()
			r.db, r.dbErr = nil, nil
			r.mu.Unlock()
		}
	}
	r.Report()
}

// Update records that a file was created, changed or hashed. It does no
// I/O: metadata files are re-read on the next Report; a change to trow.db
// or trow.db-wal schedules a debounced reload of the database.
func (r *Registry) Update(f FileInfo) {
	r.st.updates.Add(1)
	r.mu.Lock()
	k := r.putLocked(f)
	r.mu.Unlock()
	if k == kDB {
		r.scheduleDBReload()
	}
}

// putLocked adds or replaces the entry for f. Caller holds mu.
func (r *Registry) putLocked(f FileInfo) kind {
	e := r.layout.classify(f.Path)
	if e == nil {
		return 0
	}
	e.info = f
	old := r.entries[f.Path]
	if old != nil && old.kind == e.kind && old.kind.needsRead() && old.read &&
		!f.Digest.IsZero() && f.Digest == old.info.Digest && f.Size == old.info.Size {
		// Same content (only the status changed): keep what was parsed.
		e.read, e.meta, e.metaErr = true, old.meta, old.metaErr
	}
	if old != nil {
		r.dropLocked(f.Path, old)
	}
	r.entries[f.Path] = e
	for d := parentDir(f.Path); ; d = parentDir(d) {
		r.dirCount[d]++
		if d == "" {
			break
		}
	}
	switch e.kind {
	case kBlob:
		m := r.blobs[e.store]
		if m == nil {
			m = map[digest.Digest]*entry{}
			r.blobs[e.store] = m
		}
		if m[e.dgst] == nil {
			r.nblobs++
			r.presentDigest = ""
		}
		m[e.dgst] = e
	case kDistRevision:
		m := r.revisions[e.repo]
		if m == nil {
			m = map[digest.Digest]bool{}
			r.revisions[e.repo] = m
		}
		m[e.dgst] = true
		r.meta[f.Path] = e
	default:
		r.meta[f.Path] = e
	}
	if e.kind.needsRead() && !e.read {
		r.dirty[f.Path] = struct{}{}
	}
	r.bumpLocked()
	return e.kind
}

// dropLocked removes the entry e at p from every index. Caller holds mu.
func (r *Registry) dropLocked(p string, e *entry) {
	delete(r.entries, p)
	delete(r.dirty, p)
	for d := parentDir(p); ; d = parentDir(d) {
		if r.dirCount[d]--; r.dirCount[d] <= 0 {
			delete(r.dirCount, d)
		}
		if d == "" {
			break
		}
	}
	switch e.kind {
	case kBlob:
		if m := r.blobs[e.store]; m != nil && m[e.dgst] == e {
			delete(m, e.dgst)
			r.nblobs--
			r.presentDigest = ""
			if len(m) == 0 {
				delete(r.blobs, e.store)
			}
		}
	case kDistRevision:
		delete(r.meta, p)
		if m := r.revisions[e.repo]; m != nil {
			delete(m, e.dgst)
			if len(m) == 0 {
				delete(r.revisions, e.repo)
			}
		}
	default:
		delete(r.meta, p)
	}
}

// Remove records that the file rel, or every file under the directory rel,
// went away.
func (r *Registry) Remove(rel string) {
	r.st.removes.Add(1)
	rel = strings.TrimSuffix(rel, "/")
	dbTouched := false
	r.mu.Lock()
	changed := false
	if e := r.entries[rel]; e != nil {
		dbTouched = e.kind == kDB
		r.dropLocked(rel, e)
		changed = true
	}
	if rel == "" || r.dirCount[rel] > 0 {
		prefix := rel + "/"
		for p, e := range r.entries {
			if rel == "" || strings.HasPrefix(p, prefix) {
				dbTouched = dbTouched || e.kind == kDB
				r.dropLocked(p, e)
				changed = true
			}
		}
	}
	if changed {
		r.bumpLocked()
	}
	r.mu.Unlock()
	if dbTouched {
		r.scheduleDBReload()
	}
}

// Close stops the database reloads and releases the cache.
func (r *Registry) Close() error {
	r.dbMu.Lock()
	r.closed = true
	if r.dbTimer != nil && r.dbTimer.Stop() {
		// The timer will not fire: release its WaitGroup slot here.
		r.dbTimer = nil
		r.dbWG.Done()
	}
	r.dbMu.Unlock()
	r.dbWG.Wait()
	if r.manifests != nil {
		r.manifests.Close()
	}
	return nil
}

// Stats returns the registry's counters and the manifest cache hit ratio.
func (r *Registry) Stats() Stats {
	s := Stats{
		Updates:           r.st.updates.Load(),
		Removes:           r.st.removes.Load(),
		Resets:            r.st.resets.Load(),
		ReportsComputed:   r.st.reportsComputed.Load(),
		ReportsCached:     r.st.reportsCached.Load(),
		MetaReads:         r.st.metaReads.Load(),
		MetaReadErrors:    r.st.metaReadErrors.Load(),
		ManifestReads:     r.st.manifestReads.Load(),
		ManifestReadBytes: r.st.manifestReadBytes.Load(),
		DBReloads:         r.st.dbReloads.Load(),
		DBErrors:          r.st.dbErrors.Load(),
		LastCompute:       time.Duration(r.st.lastComputeNanos.Load()).String(),
	}
	if r.manifests != nil {
		s.ManifestCache = r.manifests.Stats()
	}
	r.mu.RLock()
	s.TrackedFiles = len(r.entries)
	r.mu.RUnlock()
	return s
}

// DBDigest returns the logical digest of trow.db's rows (trow-sqlite only),
// false when the database has not been read successfully.
func (r *Registry) DBDigest() (hashtree.Digest, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.db == nil {
		return hashtree.Digest{}, false
	}
	return r.db.digest, true
}

// Repos returns the repository names, sorted.
func (r *Registry) Repos() []string {
	r.refreshMeta()
	r.mu.RLock()
	defer r.mu.RUnlock()
	set := r.reposLocked()
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// reposLocked returns the set of repositories. Caller holds mu (read).
func (r *Registry) reposLocked() map[string]struct{} {
	set := map[string]struct{}{}
	switch r.layout {
	case TrowSQLite:
		if r.db != nil {
			for k := range r.db.repos {
				set[k] = struct{}{}
			}
		}
	default:
		for _, e := range r.meta {
			switch e.kind {
			case kTagFile, kDistRevision, kDistTag:
				set[e.repo] = struct{}{}
			case kOCIIndex:
				set[ociRepoName(e.store)] = struct{}{}
			}
		}
	}
	return set
}

// RepoForDir maps a directory to the repository it holds:
// "manifests/<repo>" in trow-files, "docker/registry/v2/repositories/<repo>"
// in distribution, the layout directory in oci-layout ("" is the root
// layout, named "."). trow-sqlite keeps repositories only in the database.
func (r *Registry) RepoForDir(rel string) (string, bool) {
	rel = strings.Trim(rel, "/")
	var repo string
	switch r.layout {
	case TrowFiles:
		p, ok := strings.CutPrefix(rel, "manifests/")
		if !ok {
			return "", false
		}
		repo = p
	case Distribution:
		p, ok := strings.CutPrefix(rel, distRoot+"/repositories/")
		if !ok {
			return "", false
		}
		repo = p
	case OCILayout:
		repo = ociRepoName(rel)
	default:
		return "", false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.reposLocked()[repo]; !ok {
		return "", false
	}
	return repo, true
}

// scheduleDBReload arranges a reload of trow.db within Debounce.
func (r *Registry) scheduleDBReload() {
	if r.layout != TrowSQLite {
		return
	}
	r.dbMu.Lock()
	defer r.dbMu.Unlock()
	if r.closed {
		return
	}
	r.dbPending = true
	if r.dbTimer != nil || r.dbRunning {
		return // a reload is already scheduled or running and will re-check dbPending
	}
	r.dbWG.Add(1)
	r.dbTimer = time.AfterFunc(r.opts.Debounce, r.dbTimerFired)
}

// dbTimerFired runs a reload, and another one if changes arrived meanwhile.
func (r *Registry) dbTimerFired() {
	defer r.dbWG.Done()
	r.dbMu.Lock()
	r.dbTimer = nil
	if r.closed || !r.dbPending {
		r.dbMu.Unlock()
		return
	}
	r.dbPending, r.dbRunning = false, true
	r.dbMu.Unlock()

	r.reloadDB()

	r.dbMu.Lock()
	r.dbRunning = false
	if r.dbPending && !r.closed && r.dbTimer == nil {
		r.dbWG.Add(1)
		r.dbTimer = time.AfterFunc(r.opts.Debounce, r.dbTimerFired)
	}
	r.dbMu.Unlock()
}

// Flush re-reads trow.db now (trow-sqlite only), whether or not a change
// was reported, and returns when the model reflects the database as of the
// call. Use it when WAL writes may not have been reported (trow.db-wal is
// excluded from the tree by default) or to skip the debounce.
func (r *Registry) Flush() {
	if r.layout != TrowSQLite {
		return
	}
	r.dbMu.Lock()
	closed := r.closed
	r.dbPending = false
	r.dbMu.Unlock()
	if !closed {
		r.reloadDB()
	}
}

// reloadDB reads trow.db and swaps the new model in.
func (r *Registry) reloadDB() {
	if r.src == nil || r.src.DBPath() == "" {
		return
	}
	r.st.dbReloads.Add(1)
	stamp := statDB(r.src.DBPath())
	m, err := loadDB(context.Background(), r.src.DBPath())
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dbStamp, r.dbTried = stamp, time.Now()
	if err != nil {
		r.st.dbErrors.Add(1)
		r.log.Warn("trow.db read failed; keeping the previous model", "err", err)
		r.dbErr = err
		r.bumpLocked()
		return
	}
	r.db, r.dbErr = m, nil
	r.bumpLocked()
}

// maybeReloadDB re-reads trow.db when its size or mtime, or those of
// trow.db-wal, changed since the last read, at most once per Debounce. It
// catches WAL writes nobody reported (trow.db-wal is excluded from the tree).
func (r *Registry) maybeReloadDB() {
	if r.layout != TrowSQLite || r.src == nil || r.src.DBPath() == "" {
		return
	}
	r.mu.RLock()
	tried, stamp := r.dbTried, r.dbStamp
	r.mu.RUnlock()
	if time.Since(tried) < r.opts.Debounce {
		return
	}
	if now := statDB(r.src.DBPath()); now != stamp && now.db.exists {
		r.reloadDB()
	}
}

// refreshMeta reads the metadata files marked dirty and installs what was
// parsed, unless the entry changed meanwhile (then it stays dirty).
func (r *Registry) refreshMeta() {
	type job struct {
		path string
		e    *entry
	}
	r.mu.RLock()
	jobs := make([]job, 0, len(r.dirty))
	for p := range r.dirty {
		jobs = append(jobs, job{p, r.entries[p]})
	}
	r.mu.RUnlock()
	if len(jobs) == 0 {
		return
	}
	type result struct {
		job
		meta any
		err  error
	}
	res := make([]result, 0, len(jobs))
	for _, j := range jobs {
		if j.e == nil {
			continue
		}
		r.st.metaReads.Add(1)
		b, err := r.readFile(j.path)
		var meta any
		if err != nil {
			r.st.metaReadErrors.Add(1)
			err = &ReadError{Path: j.path, Err: err}
		} else {
			meta, err = parseMeta(j.e.kind, b)
		}
		res = append(res, result{j, meta, err})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range res {
		if r.entries[x.path] != x.e {
			continue // replaced or removed meanwhile: stays dirty if replaced
		}
		x.e.read, x.e.meta, x.e.metaErr = true, x.meta, x.err
		delete(r.dirty, x.path)
	}
	r.bumpLocked()
}

// ReadError is a failure to read a file through the Source.
type ReadError struct {
	Path string
	Err  error
}

func (e *ReadError) Error() string { return "read " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *ReadError) Unwrap() error { return e.Err }

// errNoSource is returned when the Registry was created without a Source.
var errNoSource = errors.New("registry: no source")

func (r *Registry) readFile(rel string) ([]byte, error) {
	if r.src == nil {
		return nil, errNoSource
	}
	return r.src.ReadFile(rel)
}
