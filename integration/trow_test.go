package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/integration/trowreplay"
	"github.com/trowfs/trowfs/internal/tracker"
	"github.com/trowfs/trowfs/registry"
)

// t0 is the time of the first push; later pushes are later by whole seconds.
var t0 = time.Date(2024, 3, 1, 12, 0, 0, 123456789, time.UTC)

// expectReport is what a registry report must say: exactly these findings and nothing else.
type expectReport struct {
	tags     int
	dangling map[string]string // digest → note prefix ("" = no note)
	missing  []registry.MissingBlob
	mism     []registry.MismatchedBlob
	broken   []registry.BrokenTag
	unparse  []string // paths
	// inSync overrides the in_sync derived from the lists (a broken tag in trow-sqlite).
	inSync *bool
}

// checkReport compares a report with what is expected, field by field, and with the root .state.
func checkReport(t *testing.T, e *trowreplay.Env, want expectReport) registry.Report {
	t.Helper()
	rep := e.Report()
	if rep.Tags != want.tags {
		t.Errorf("tags: got %d, want %d", rep.Tags, want.tags)
	}
	got := map[string]registry.DanglingBlob{}
	for _, d := range rep.Dangling {
		got[d.Digest] = d
	}
	for d, note := range want.dangling {
		g, ok := got[d]
		if !ok {
			t.Errorf("dangling: %s not listed", d)
			continue
		}
		if !strings.HasPrefix(g.Note, note) || (note == "" && g.Note != "") {
			t.Errorf("dangling %s: note %q, want prefix %q", d, g.Note, note)
		}
		if fi, err := os.Stat(filepath.Join(e.Data, filepath.FromSlash(g.Path))); err != nil || fi.Size() != g.Size {
			t.Errorf("dangling %s: path %s size %d does not match DATA (%v)", d, g.Path, g.Size, err)
		}
	}
	for d := range got {
		if _, ok := want.dangling[d]; !ok {
			t.Errorf("dangling: unexpected %+v", got[d])
		}
	}
	if rep.DanglingCount != len(want.dangling) {
		t.Errorf("dangling_count %d, want %d", rep.DanglingCount, len(want.dangling))
	}
	if !equalJSON(rep.Missing, want.missing) {
		t.Errorf("missing:\n got  %+v\n want %+v", rep.Missing, want.missing)
	}
	if !equalJSON(rep.Mismatched, want.mism) {
		t.Errorf("mismatched:\n got  %+v\n want %+v", rep.Mismatched, want.mism)
	}
	if !equalJSON(rep.BrokenTags, want.broken) {
		t.Errorf("broken_tags:\n got  %+v\n want %+v", rep.BrokenTags, want.broken)
	}
	var up []string
	for _, u := range rep.Unparsable {
		up = append(up, u.Path)
	}
	if !equalJSON(up, want.unparse) {
		t.Errorf("unparsable: got %+v, want paths %v", rep.Unparsable, want.unparse)
	}
	wantSync := len(want.dangling) == 0 && len(want.missing) == 0 && len(want.broken) == 0
	if want.inSync != nil {
		wantSync = *want.inSync
	}
	if rep.InSync != wantSync {
		t.Errorf("in_sync %v, want %v (all_blob_digest %s, all_manifest_digest %s)", rep.InSync, wantSync, rep.AllBlobDigest, rep.AllManifestDigest)
	}
	if rep.InSync != (rep.AllBlobDigest == rep.AllManifestDigest) {
		t.Errorf("in_sync %v but all_blob_digest %s, all_manifest_digest %s", rep.InSync, rep.AllBlobDigest, rep.AllManifestDigest)
	}
	st := e.StateRegistry()
	if st.AllBlobDigest != rep.AllBlobDigest || st.AllManifestDigest != rep.AllManifestDigest || st.InSync != rep.InSync ||
		st.DanglingCount != rep.DanglingCount || st.MissingCount != rep.MissingCount || st.MismatchedCount != rep.MismatchedCount ||
		st.BrokenTagCount != rep.BrokenTagCount || st.UnparsableCount != rep.UnparsableCount {
		t.Errorf(".state registry disagrees with Report():\n .state %+v\n report %+v", st, rep)
	}
	return rep
}

// checkCatalog walks MNT/manifests as Trow's catalog does and compares it with want; a .state
// entry must never show up.
func checkCatalog(t *testing.T, mnt string, want map[string][]string) {
	t.Helper()
	cat, err := trowreplay.Catalog(mnt)
	if err != nil {
		t.Fatalf("catalog walk: %v", err)
	}
	if p, bad := trowreplay.HasStateEntry(cat); bad {
		t.Errorf("Trow's catalog would list trowfs's %s as a repository or tag", p)
	}
	for _, tags := range want {
		sort.Strings(tags)
	}
	if !equalJSON(cat, want) {
		t.Errorf("catalog:\n got  %v\n want %v", cat, want)
	}
}

// noFindings fails when the tracker has any finding.
func noFindings(t *testing.T, e *trowreplay.Env) {
	t.Helper()
	if f := e.Srv.Tracker().Findings(""); len(f) > 0 {
		t.Errorf("unexpected findings: %+v", f)
	}
}

func blobsOf(ims ...trowreplay.Image) []string {
	var out []string
	for _, im := range ims {
		out = append(out, im.Manifest.Digest.String())
		for _, b := range im.Blobs() {
			out = append(out, b.Digest.String())
		}
	}
	return out
}

func danglingSet(note string, ds ...string) map[string]string {
	m := map[string]string{}
	for _, d := range ds {
		m[d] = note
	}
	return m
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestTrowFilesEra replays Trow v0.3.0 (copy), v0.3.5 (rename) and v0.4+ (append) through the
// mount: uploads by PATCHes, manifest PUTs, retags, a push by digest, the proxy path, a manifest
// DELETE and a blob DELETE.
func TestTrowFilesEra(t *testing.T) {
	for _, v := range []trowreplay.FilesVersion{trowreplay.V030, trowreplay.V035, trowreplay.V04} {
		t.Run(v.String(), func(t *testing.T) { testFilesEra(t, v) })
	}
}

func testFilesEra(t *testing.T, v trowreplay.FilesVersion) {
	e := trowreplay.NewEnv(t, "trow-files")
	// Trow creates its directories before anything is mounted on a fresh volume; auto-detection
	// needs them to say trow-files.
	if err := (&trowreplay.Files{Root: e.Data}).Init(); err != nil {
		t.Fatal(err)
	}
	e.Start()
	if l := e.Srv.RegistryModel().Layout(); l != registry.TrowFiles {
		t.Fatalf("layout %s, want trow-files", l)
	}
	f := &trowreplay.Files{Root: e.Mnt, Version: v}
	seed := uint64(v) * 100
	imA := trowreplay.NewImage(seed+1, 2, 200<<10)
	imB := trowreplay.NewImage(seed+2, 2, 70<<10)
	imC := trowreplay.NewImage(seed+3, 1, 10<<10)
	imD := trowreplay.NewImage(seed+4, 2, 30<<10)

	step := func(name string, fn func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, fn) {
			t.FailNow()
		}
	}

	step("push", func(t *testing.T) {
		if err := f.Push("org/app", "latest", imA, t0, 5); err != nil {
			t.Fatal(err)
		}
		e.AssertMatchesRescan(t)
		checkReport(t, e, expectReport{tags: 1})
		checkCatalog(t, e.Mnt, map[string][]string{"org/app": {"latest"}})
		noFindings(t, e)
		if v == trowreplay.V030 {
			if f.Copies+f.Fallbacks == 0 {
				t.Errorf("v0.3.0 copied nothing")
			}
			t.Logf("v0.3.0 copies: %d with copy_file_range, %d with read/write", f.Copies, f.Fallbacks)
		}
		for _, b := range append(imA.Blobs(), imA.Manifest) {
			if _, err := os.Stat(filepath.Join(e.Mnt, "scratch", b.Hex())); err == nil {
				t.Errorf("scratch file left for %s", b.Digest)
			}
		}
		ents, _ := os.ReadDir(filepath.Join(e.Mnt, "scratch"))
		if len(ents) != 0 {
			t.Errorf("scratch/ not empty after the uploads: %d entries", len(ents))
		}
	})

	step("retag", func(t *testing.T) {
		if err := f.Push("org/app", "latest", imB, t0.Add(time.Second), 1); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(e.Mnt, "manifests/org/app/latest"))
		if err != nil {
			t.Fatal(err)
		}
		lines := trowreplay.TagLine(imB.Manifest.Digest, t0.Add(time.Second)) + trowreplay.TagLine(imA.Manifest.Digest, t0)
		if v == trowreplay.V04 {
			lines = trowreplay.TagLine(imA.Manifest.Digest, t0) + trowreplay.TagLine(imB.Manifest.Digest, t0.Add(time.Second))
		}
		if string(b) != lines {
			t.Fatalf("tag file:\n%s\nwant\n%s", b, lines)
		}
		e.AssertMatchesRescan(t)
		// The tag now names imB in both line orders; imA is reachable only from the tag history.
		rr, ok := e.Srv.RegistryModel().RepoReport("org/app")
		if !ok || rr.Tags["latest"] != imB.Manifest.Digest.String() {
			t.Errorf("org/app:latest resolves to %q, want %s (newest line, %s order)", rr.Tags["latest"], imB.Manifest.Digest, v)
		}
		checkReport(t, e, expectReport{tags: 1, dangling: danglingSet("tag history of org/app:latest", blobsOf(imA)...)})
		checkCatalog(t, e.Mnt, map[string][]string{"org/app": {"latest"}})
		noFindings(t, e)
	})
	history := danglingSet("tag history of org/app:latest", blobsOf(imA)...)

	step("push-by-digest", func(t *testing.T) {
		if err := f.Push("org/other", imC.Manifest.Digest.String(), imC, t0.Add(2*time.Second), 2); err != nil {
			t.Fatal(err)
		}
		e.AssertMatchesRescan(t)
		// A push by digest is not a tag, but keeps the manifest.
		checkReport(t, e, expectReport{tags: 1, dangling: history})
		checkCatalog(t, e.Mnt, map[string][]string{"org/app": {"latest"}, "org/other": {imC.Manifest.Digest.String()}})
	})

	step("proxy", func(t *testing.T) {
		for _, b := range imD.Blobs() {
			if err := f.ProxyBlob(b); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.PutManifest("f/docker/library/alpine", "3.19", imD.Manifest, t0.Add(3*time.Second)); err != nil {
			t.Fatal(err)
		}
		e.AssertMatchesRescan(t)
		checkReport(t, e, expectReport{tags: 2, dangling: history})
		checkCatalog(t, e.Mnt, map[string][]string{"org/app": {"latest"}, "org/other": {imC.Manifest.Digest.String()},
			"f/docker/library/alpine": {"3.19"}})
		noFindings(t, e)
	})

	step("delete-manifest", func(t *testing.T) {
		if err := f.DeleteManifest("org/other", imC.Manifest.Digest.String()); err != nil {
			t.Fatal(err)
		}
		e.AssertMatchesRescan(t)
		checkReport(t, e, expectReport{tags: 2, dangling: merge(history, danglingSet("", blobsOf(imC)...))})
		checkCatalog(t, e.Mnt, map[string][]string{"org/app": {"latest"}, "f/docker/library/alpine": {"3.19"}})
	})

	step("delete-blob", func(t *testing.T) {
		gone := imB.Layers[1].Digest
		if err := f.DeleteBlob(gone); err != nil {
			t.Fatal(err)
		}
		e.AssertMatchesRescan(t)
		checkReport(t, e, expectReport{tags: 2, dangling: merge(history, danglingSet("", blobsOf(imC)...)),
			missing: []registry.MissingBlob{{Digest: gone.String(), Kind: "blob", Repos: []string{"org/app"},
				Manifests: []string{imB.Manifest.Digest.String()}, Tags: []string{"org/app:latest"}}}})
		noFindings(t, e)
	})

	step("remount", func(t *testing.T) {
		before := e.Report()
		e.Restart()
		after := e.Report()
		if after.AllBlobDigest != before.AllBlobDigest || after.AllManifestDigest != before.AllManifestDigest ||
			after.MissingCount != before.MissingCount || after.DanglingCount != before.DanglingCount {
			t.Errorf("report changed across a remount:\n before %+v\n after  %+v", before, after)
		}
		e.AssertMatchesRescan(t)
		noFindings(t, e)
	})
}

// TestTrowFilesEraStateNeverATag checks that .state is reachable by name in every repository
// directory but never listed, so Trow's catalog and tag listing never see it.
func TestTrowFilesEraStateNeverATag(t *testing.T) {
	e := trowreplay.NewEnv(t, "trow-files")
	if err := (&trowreplay.Files{Root: e.Data}).Init(); err != nil {
		t.Fatal(err)
	}
	e.Start()
	f := &trowreplay.Files{Root: e.Mnt, Version: trowreplay.V04}
	im := trowreplay.NewImage(900, 1, 4096)
	if err := f.Push("a/b/c", "v1", im, t0, 1); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"manifests", "manifests/a", "manifests/a/b", "manifests/a/b/c"} {
		if _, err := os.Stat(filepath.Join(e.Mnt, dir, ".state")); err != nil {
			t.Errorf("%s/.state not reachable by name: %v", dir, err)
		}
		ents, err := os.ReadDir(filepath.Join(e.Mnt, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range ents {
			if x.Name() == ".state" {
				t.Errorf("%s lists .state", dir)
			}
		}
	}
	checkCatalog(t, e.Mnt, map[string][]string{"a/b/c": {"v1"}})
	e.Settle()
	// A repository's .state carries its detail.
	b, err := os.ReadFile(filepath.Join(e.Mnt, "manifests/a/b/c/.state"))
	if err != nil || !strings.Contains(string(b), `"repository"`) || !strings.Contains(string(b), im.Manifest.Digest.String()) {
		t.Errorf("manifests/a/b/c/.state lacks the repository detail (%v):\n%s", err, b)
	}
}

// sqliteEnv is a mounted trow-sqlite data directory with Trow's directories and schema.
func sqliteEnv(t *testing.T) (*trowreplay.Env, *trowreplay.SQLite) {
	t.Helper()
	e := trowreplay.NewEnv(t, "trow-sqlite")
	s := &trowreplay.SQLite{Root: e.Mnt}
	e.Start()
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	db, err := s.OpenDB()
	if err != nil {
		t.Fatal(err)
	}
	if err := trowreplay.CreateSchema(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return e, s
}

// openDB opens a Trow connection and closes it at cleanup.
func openDB(t *testing.T, s *trowreplay.SQLite) *sql.DB {
	t.Helper()
	db, err := s.OpenDB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// waitReport polls the registry report until ok says it is what is wanted.
func waitReport(e *trowreplay.Env, timeout time.Duration, ok func(registry.Report) bool) (registry.Report, bool) {
	deadline := time.Now().Add(timeout)
	for {
		e.Srv.RegistryModel().Flush()
		rep := e.Srv.RegistryModel().Report()
		if ok(rep) {
			return rep, true
		}
		if time.Now().After(deadline) {
			return rep, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTrowSQLiteEra replays Trow v0.7+ through the mount: two concurrent SQLite connections in
// WAL mode, uploads renamed into the flat blobs/, the proxy path, the readiness file.
func TestTrowSQLiteEra(t *testing.T) {
	e, s := sqliteEnv(t)
	ctx := context.Background()
	if l := e.Srv.RegistryModel().Layout(); l != registry.TrowSQLite {
		t.Fatalf("layout %s, want trow-sqlite", l)
	}
	db1, db2 := openDB(t, s), openDB(t, s)

	const perWriter = 6
	shared := trowreplay.NewBlob([]byte(strings.Repeat("shared base layer\n", 4000)))
	images := map[string][]trowreplay.Image{}
	for w, repo := range []string{"team/a", "team/b"} {
		for i := 0; i < perWriter; i++ {
			own := trowreplay.NewImage(uint64(1000+w*100+i), 1, 16<<10+i).Layers[0]
			images[repo] = append(images[repo], trowreplay.ImageOf(uint64(1000+w*100+i), shared, own))
		}
	}
	proxied := trowreplay.NewImage(5000, 2, 40<<10)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	writer := func(db *sql.DB, repo string) {
		defer wg.Done()
		for i, im := range images[repo] {
			// Every push uploads the shared layer again: the rename replaces the existing file.
			if err := s.Push(ctx, db, repo, fmt.Sprintf("v%d", i), im, 2); err != nil {
				errs <- fmt.Errorf("%s v%d: %w", repo, i, err)
				return
			}
			if err := trowreplay.Pull(ctx, db, im.Layers[0].Digest); err != nil {
				errs <- err
				return
			}
			if i == perWriter/2 {
				// A checkpoint that truncates the WAL while the other connection writes and trowfs reads.
				if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
					errs <- fmt.Errorf("%s checkpoint: %w", repo, err)
					return
				}
			}
		}
		// Every tag ends at the last image: "latest".
		last := images[repo][len(images[repo])-1]
		if err := trowreplay.PutManifest(ctx, db, repo, "latest", last.Manifest); err != nil {
			errs <- err
		}
	}
	wg.Add(4)
	go writer(db1, "team/a")
	go writer(db2, "team/b")
	go func() {
		defer wg.Done()
		for i := 0; i < 60; i++ {
			if err := s.Ready(); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for _, b := range proxied.Blobs() {
			if err := s.ProxyBlob(b); err != nil {
				errs <- err
				return
			}
			if _, err := db1.ExecContext(ctx, `INSERT INTO blob (digest, size) VALUES (?, ?) ON CONFLICT DO NOTHING`, b.Digest.String(), len(b.Data)); err != nil {
				errs <- err
				return
			}
		}
		if err := trowreplay.PutManifest(ctx, db1, "f/docker/alpine", "3", proxied.Manifest); err != nil {
			errs <- err
		}
	}()
	// The registry model reads trow.db while the writers run.
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			e.Srv.RegistryModel().Flush()
			_ = e.Srv.RegistryModel().Report()
		}
	}()
	wg.Wait()
	close(stop)
	<-readerDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(e.Mnt, "uploads", "fs-ready"))
	if err != nil || string(b) != trowreplay.ReadyContent {
		t.Errorf("uploads/fs-ready holds %q (%v), want %q", b, err, trowreplay.ReadyContent)
	}
	ents, _ := os.ReadDir(filepath.Join(e.Mnt, "uploads"))
	if len(ents) != 1 {
		t.Errorf("uploads/ holds %d entries, want only fs-ready", len(ents))
	}
	wantTags := 2*(perWriter+1) + 1

	t.Run("model-follows-open-connections", func(t *testing.T) {
		// Trow never closes its connections: what an operator reads in .state must show the rows
		// while they stay open.
		deadline := time.Now().Add(5 * time.Second)
		rep := e.StateRegistry()
		for rep.Tags != wantTags && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			rep = e.StateRegistry()
		}
		if rep.Tags != wantTags {
			t.Errorf("with Trow's connections open, .state shows %d tags (db_loaded_at %v, db_error %q), want %d",
				rep.Tags, rep.DBLoadedAt, rep.DBError, wantTags)
		}
	})

	for _, db := range []*sql.DB{db1, db2} {
		if res, err := trowreplay.IntegrityCheck(ctx, db); err != nil || res != "ok" {
			t.Errorf("integrity_check: %q %v", res, err)
		}
	}
	// Blobs referenced by manifest rows are present in the flat blobs/.
	rows, err := db1.QueryContext(ctx, `SELECT DISTINCT blob_digest FROM manifest_blob_assoc`)
	if err != nil {
		t.Fatal(err)
	}
	var referenced int
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		referenced++
		if _, err := os.Stat(filepath.Join(e.Mnt, "blobs", d)); err != nil {
			t.Errorf("manifest row references %s, not in blobs/: %v", d, err)
		}
	}
	rows.Close()
	if want := 2*perWriter*2 + 1 + 3; referenced != want {
		t.Errorf("manifest_blob_assoc names %d blobs, want %d", referenced, want)
	}
	db1.Close()
	db2.Close()

	t.Run("closed", func(t *testing.T) {
		e.AssertMatchesRescan(t)
		// Every uploaded blob is referenced by a manifest row: nothing dangles, nothing is missing.
		rep, ok := waitReport(e, 5*time.Second, func(r registry.Report) bool { return r.Tags == wantTags })
		if !ok {
			t.Fatalf("registry model shows %d tags after the connections closed, want %d (db_error %q)", rep.Tags, wantTags, rep.DBError)
		}
		checkReport(t, e, expectReport{tags: wantTags})
		if rep.DBDigest == "" || rep.DBError != "" {
			t.Errorf("db_digest %q db_error %q", rep.DBDigest, rep.DBError)
		}
		noFindings(t, e)
	})

	t.Run("db-digest", func(t *testing.T) {
		rep0 := e.Report()
		if rep0.DBLoadedAt == nil {
			t.Fatal("trow.db not loaded")
		}
		// A pure read: only last_accessed changes.
		db := openDB(t, s)
		if err := trowreplay.Pull(ctx, db, shared.Digest); err != nil {
			t.Fatal(err)
		}
		db.Close()
		e.Settle()
		rep1, ok := waitReport(e, 5*time.Second, func(r registry.Report) bool {
			return r.DBLoadedAt != nil && r.DBLoadedAt.After(*rep0.DBLoadedAt)
		})
		if !ok {
			t.Fatalf("trow.db was not re-read after a pull (loaded at %v)", rep1.DBLoadedAt)
		}
		if rep1.DBDigest != rep0.DBDigest {
			t.Errorf("db_digest changed on a pure read: %s → %s", rep0.DBDigest, rep1.DBDigest)
		}
		// A tag change changes it.
		db = openDB(t, s)
		if err := trowreplay.PutManifest(ctx, db, "team/a", "latest", images["team/a"][0].Manifest); err != nil {
			t.Fatal(err)
		}
		db.Close()
		e.Settle()
		rep2, ok := waitReport(e, 5*time.Second, func(r registry.Report) bool { return r.DBDigest != rep1.DBDigest })
		if !ok {
			t.Errorf("db_digest did not change when a tag moved (still %s)", rep2.DBDigest)
		}
		e.AssertMatchesRescan(t)
	})
}

// TestTrowSQLiteMismatchedRename renames an upload whose content does not match its name into
// blobs/: the rename must succeed (Trow panics otherwise) and the blob is reported as mismatched.
func TestTrowSQLiteMismatchedRename(t *testing.T) {
	e, s := sqliteEnv(t)
	ctx := context.Background()
	db := openDB(t, s)
	base := trowreplay.NewImage(7000, 2, 8<<10)
	// A third layer named by its sha512 digest (Trow v0.7 accepts both algorithms).
	l512 := []byte(strings.Repeat("sha512 layer\n", 900))
	im := trowreplay.ImageOf(7000, base.Layers[0], base.Layers[1], trowreplay.Blob{Data: l512, Digest: digest.SHA512.FromBytes(l512)})
	bad := append([]byte{}, im.Layers[1].Data...)
	bad[100] ^= 0x01
	bad512 := append([]byte{}, l512...)
	bad512[5] ^= 0x01
	l1, l2 := im.Layers[1], im.Layers[2]
	for i, b := range im.Blobs() {
		data := b.Data
		switch i {
		case 2:
			data = bad
		case 3:
			data = bad512
		}
		if err := s.UploadBlob(ctx, db, "x/y", b.Digest, data, 2); err != nil {
			t.Fatalf("upload %d: %v (a failed rename makes Trow panic)", i, err)
		}
	}
	if err := trowreplay.PutManifest(ctx, db, "x/y", "t", im.Manifest); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// The report's actual digest is the sha256 of the content (docs/registry.md).
	checkReport(t, e, expectReport{tags: 1, mism: []registry.MismatchedBlob{
		{Path: "blobs/" + l1.Digest.String(), Expected: l1.Digest.String(), Actual: digest.FromBytes(bad).String(), Repos: []string{"x/y"}},
		{Path: "blobs/" + l2.Digest.String(), Expected: l2.Digest.String(), Actual: digest.FromBytes(bad512).String(), Repos: []string{"x/y"}},
	}})
	f := e.Srv.Tracker().Findings("")
	if len(f) != 2 || f[0].Kind != tracker.FindingMismatch || f[0].Path != "blobs/"+l1.Digest.String() ||
		f[1].Kind != tracker.FindingMismatch || f[1].Path != "blobs/"+l2.Digest.String() || f[1].Actual != digest.SHA512.FromBytes(bad512).String() {
		t.Errorf("findings %+v, want a mismatch on each bad layer (the sha512 one with its sha512)", f)
	}
	e.AssertMatchesRescan(t)

	// The same names uploaded again with the right content replace them: no longer mismatched.
	db = openDB(t, s)
	for _, l := range []trowreplay.Blob{l1, l2} {
		if err := s.UploadBlob(ctx, db, "x/y", l.Digest, l.Data, 1); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	checkReport(t, e, expectReport{tags: 1})
	noFindings(t, e)
	e.AssertMatchesRescan(t)
}

// equalJSON compares two values by their JSON encoding (nil and empty slices are equal).
func equalJSON(a, b any) bool {
	return normJSON(a) == normJSON(b)
}

func normJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "error: " + err.Error()
	}
	switch s := string(b); s {
	case "null", "[]", "{}":
		return "empty"
	default:
		return s
	}
}

// TestTrowSQLiteStopWithReloadPending stops the server right after a write to trow.db, while the
// debounced reload of the database is still scheduled: Stop must return (it once hung forever in
// registry.(*Registry).Close).
func TestTrowSQLiteStopWithReloadPending(t *testing.T) {
	e, s := sqliteEnv(t)
	ctx := context.Background()
	db := openDB(t, s)
	if err := s.Push(ctx, db, "a/b", "t", trowreplay.NewImage(8000, 1, 1024), 1); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Let the close reach the registry (a reload is then scheduled, debounced) and stop at once.
	e.Srv.Tracker().Drain(10 * time.Second)
	e.Srv.Tracker().WaitNotified()
	srv := e.Srv
	e.Srv = nil // this test stops it itself
	done := make(chan error, 1)
	go func() { done <- srv.Stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("server.Stop did not return within 10 s with a trow.db reload pending " +
			"(registry.(*Registry).Close waiting for a debounce timer it stopped; the goroutine stays blocked)")
	}
}

// TestTrowSQLiteNoReloadLoop leaves an idle trow-sqlite registry alone for 2 s: trowfs must not
// keep re-reading trow.db when nothing writes it.
func TestTrowSQLiteNoReloadLoop(t *testing.T) {
	e, s := sqliteEnv(t)
	db := openDB(t, s)
	if err := s.Push(context.Background(), db, "a/b", "t", trowreplay.NewImage(8100, 1, 1024), 1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	e.Settle()
	time.Sleep(registry.DefaultDebounce + 200*time.Millisecond) // the reload the close scheduled
	before := e.Srv.RegistryModel().Stats()
	ops := e.Srv.Tracker().Stats().Ops["open_write"]
	time.Sleep(2 * time.Second)
	after := e.Srv.RegistryModel().Stats()
	if n := after.DBReloads - before.DBReloads; n > 0 {
		t.Errorf("bug: trow.db was re-read %d times in 2 s while nothing wrote to it (%d opens for writing through the mount meanwhile): "+
			"each reload reads trow.db through the mount, its read-only connection opens the WAL side files for writing, "+
			"their close is reported as a change to trow.db-wal and schedules the next reload",
			n, e.Srv.Tracker().Stats().Ops["open_write"]-ops)
	}
}

// trowUID is the user Trow v0.3 to v0.6 runs as.
const trowUID = 333333

// asUser runs fn on a thread whose filesystem uid and gid are uid and whose working directory
// is dir (the thread gets its own, so that relative paths reach dir without traversing the
// test's private temporary directories), as a Trow process running as that user would make its
// calls. The thread is never unlocked, so it ends with the goroutine instead of going back to the
// pool with another identity.
func asUser(uid int, dir string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- err
			return
		}
		if err := unix.Chdir(dir); err != nil {
			done <- err
			return
		}
		if err := unix.Setfsgid(uid); err != nil {
			done <- err
			return
		}
		if err := unix.Setfsuid(uid); err != nil {
			done <- err
			return
		}
		done <- fn()
	}()
	return <-done
}

// TestTrowFilesEraAsTrowUser replays a push and a DELETE as Trow's own non-root user through the
// root-run mount (allow_other, kernel permission checks): the calls succeed, the files belong to
// that user in DATA, and a user without rights on DATA is refused.
func TestTrowFilesEraAsTrowUser(t *testing.T) {
	e := trowreplay.NewEnv(t, "trow-files")
	if err := (&trowreplay.Files{Root: e.Data}).Init(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"", "blobs", "blobs/sha256", "manifests", "scratch"} {
		if err := os.Chown(filepath.Join(e.Data, d), trowUID, trowUID); err != nil {
			t.Fatal(err)
		}
	}
	e.Start()
	f := &trowreplay.Files{Root: ".", Version: trowreplay.V04}
	im := trowreplay.NewImage(9100, 2, 64<<10)
	other := trowreplay.NewImage(9101, 1, 1024)
	err := asUser(trowUID, e.Mnt, func() error {
		if err := f.Push("org/app", "v1", im, t0, 3); err != nil {
			return err
		}
		if err := f.Push("org/app", "old", other, t0, 1); err != nil {
			return err
		}
		return f.DeleteManifest("org/app", "old")
	})
	if err != nil {
		t.Fatalf("Trow's operations as uid %d through the mount: %v", trowUID, err)
	}
	var st unix.Stat_t
	for _, rel := range []string{"blobs/sha256/" + im.Layers[0].Hex(), "manifests/org/app/v1", "manifests/org/app"} {
		if err := unix.Stat(filepath.Join(e.Data, rel), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != trowUID || st.Gid != trowUID {
			t.Errorf("%s belongs to %d:%d in DATA, want %d:%d", rel, st.Uid, st.Gid, trowUID, trowUID)
		}
	}
	// Another user has no write access to Trow's directories.
	err = asUser(trowUID+1, e.Mnt, func() error {
		return os.WriteFile(filepath.Join("blobs/sha256", strings.Repeat("0", 64)), []byte("x"), 0o644)
	})
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("a write by uid %d into blobs/: %v, want EACCES", trowUID+1, err)
	}
	e.AssertMatchesRescan(t)
	checkReport(t, e, expectReport{tags: 1, dangling: danglingSet("", blobsOf(other)...)})
	checkCatalog(t, e.Mnt, map[string][]string{"org/app": {"v1"}})
	noFindings(t, e)
}
