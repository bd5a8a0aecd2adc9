package registry

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// trowDB is a writer connection playing Trow.
type trowDB struct {
	t    *testing.T
	root string
	db   *sql.DB
}

func openTrowDB(t *testing.T, root string) *trowDB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(root, "trow.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(0)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(TrowSchema); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	return &trowDB{t: t, root: root, db: db}
}

func (w *trowDB) exec(q string, args ...any) {
	w.t.Helper()
	if _, err := w.db.Exec(q, args...); err != nil {
		w.t.Fatalf("%s: %v", q, err)
	}
}

func (w *trowDB) blob(c content) {
	writeFile(w.t, w.root, "blobs/"+c.d.String(), c.b)
	w.exec(`INSERT OR IGNORE INTO blob(digest, size) VALUES (?, ?)`, c.d.String(), len(c.b))
}

func (w *trowDB) manifest(repo string, c content, refs ...content) {
	w.exec(`INSERT OR IGNORE INTO manifest(digest, json, blob) VALUES (?, ?, ?)`, c.d.String(), c.b, c.b)
	w.exec(`INSERT OR IGNORE INTO repo_blob_assoc(repo_name, manifest_digest) VALUES (?, ?)`, repo, c.d.String())
	for _, r := range refs {
		w.exec(`INSERT OR IGNORE INTO manifest_blob_assoc(manifest_digest, blob_digest) VALUES (?, ?)`, c.d.String(), r.d.String())
		w.exec(`INSERT OR IGNORE INTO repo_blob_assoc(repo_name, blob_digest) VALUES (?, ?)`, repo, r.d.String())
	}
}

func (w *trowDB) push(repo, tag string, im image) {
	for _, c := range im.blobs() {
		w.blob(c)
	}
	w.manifest(repo, im.manifest, im.blobs()...)
	if tag != "" {
		w.tag(repo, tag, im.manifest.d)
	}
}

func (w *trowDB) tag(repo, tag string, d digest.Digest) {
	w.exec(`INSERT INTO tag(tag, repo, manifest_digest) VALUES (?, ?, ?)
		ON CONFLICT(repo, tag) DO UPDATE SET manifest_digest = excluded.manifest_digest`, tag, repo, d.String())
}

type sqliteScenario struct {
	a, c1, c2 image
	idx       content
}

func buildSQLite(t *testing.T, root string) (*trowDB, *sqliteScenario) {
	w := openTrowDB(t, root)
	rng := rand.New(rand.NewPCG(5, 6))
	s := &sqliteScenario{a: makeImage(rng, 2, false), c1: makeImage(rng, 1, false), c2: makeImage(rng, 2, true)}
	w.push("org/app", "v1", s.a)
	w.push("lib/multi", "", s.c1)
	w.push("lib/multi", "", s.c2)
	s.idx = makeIndex(s.c1.manifest, s.c2.manifest)
	w.manifest("lib/multi", s.idx)
	w.tag("lib/multi", "multi", s.idx.d)
	return w, s
}

func TestSQLiteCleanAndLogicalDigest(t *testing.T) {
	root := t.TempDir()
	w, s := buildSQLite(t, root)
	if got := Detect(root); got != TrowSQLite {
		t.Fatalf("Detect = %s", got)
	}
	r := newRegistry(t, TrowSQLite, root, Options{Debounce: 20 * time.Millisecond})
	r.Reset(scan(t, TrowSQLite, root))
	rep := r.Report()
	if !rep.OK || !rep.InSync || rep.DBError != "" {
		t.Fatalf("clean sqlite registry not OK: %+v", findingsOf(rep))
	}
	if rep.Repositories != 2 || rep.Tags != 2 || rep.Manifests != 4 || rep.Blobs != 8 {
		t.Errorf("counts: repos %d tags %d manifests %d blobs %d", rep.Repositories, rep.Tags, rep.Manifests, rep.Blobs)
	}
	d0, ok := r.DBDigest()
	if !ok || d0.IsZero() || rep.DBDigest != d0.String() {
		t.Fatalf("DBDigest = %v, %v (report %q)", d0, ok, rep.DBDigest)
	}

	// Pulls only touch last_accessed: the logical digest must not move.
	w.exec(`UPDATE blob SET last_accessed = last_accessed + 1000`)
	w.exec(`INSERT INTO blob_upload(uuid, offset, repo) VALUES ('u1', 0, 'org/app')`)
	r.Update(FileInfo{Path: "trow.db-wal"})
	waitFor(t, func() bool { return r.Stats().DBReloads >= 2 })
	if d1, _ := r.DBDigest(); d1 != d0 {
		t.Fatalf("digest changed on last_accessed/blob_upload update: %v -> %v", d0, d1)
	}

	// A tag move changes it, and the report follows.
	w.tag("org/app", "v1", s.c1.manifest.d)
	r.Update(FileInfo{Path: "trow.db-wal"})
	r.Flush()
	d2, _ := r.DBDigest()
	if d2 == d0 {
		t.Fatal("digest did not change when a tag moved")
	}
	rep = r.Report()
	// a's blobs are still referenced: untagged manifests are roots without DeleteUntagged.
	if !rep.OK {
		t.Fatalf("report after tag move: %+v", findingsOf(rep))
	}
	rr, ok := r.RepoReport("org/app")
	if !ok || rr.Tags["v1"] != s.c1.manifest.d.String() {
		t.Fatalf("repo report tags = %v", rr.Tags)
	}

	// With DeleteUntagged, a's manifest is no longer a root: its blobs dangle.
	r2 := newRegistry(t, TrowSQLite, root, Options{DeleteUntagged: true})
	r2.Reset(scan(t, TrowSQLite, root))
	var want []string
	for _, c := range s.a.blobs() {
		want = append(want, "blobs/"+c.d.String())
	}
	if got := findingsOf(r2.Report()); !reflect.DeepEqual(got, findings{Dangling: sorted(want...)}) {
		t.Fatalf("delete-untagged findings = %+v, want dangling %v", got, want)
	}
}

func TestSQLiteDamage(t *testing.T) {
	for _, c := range []struct {
		name string
		do   func(w *trowDB, s *sqliteScenario)
		want func(s *sqliteScenario) findings
	}{
		{"deleted referenced blob", func(w *trowDB, s *sqliteScenario) { rm(w.t, w.root, "blobs/"+s.a.layers[1].d.String()) },
			func(s *sqliteScenario) findings { return findings{Missing: []string{s.a.layers[1].d.String()}} }},
		{"stray blob", func(w *trowDB, s *sqliteScenario) {
			writeFile(w.t, w.root, "blobs/"+newContent([]byte("x")).d.String(), []byte("x"))
		},
			func(s *sqliteScenario) findings {
				return findings{Dangling: []string{"blobs/" + newContent([]byte("x")).d.String()}}
			}},
		{"unparsable manifest row", func(w *trowDB, s *sqliteScenario) {
			g := newContent([]byte("{not json"))
			w.exec(`INSERT INTO manifest(digest, json, blob) VALUES (?, ?, ?)`, g.d.String(), g.b, g.b)
			w.tag("org/app", "bad", g.d)
		}, func(s *sqliteScenario) findings { return findings{Unparsable: []string{"trow.db"}, InSync: true} }},
		{"tag to missing manifest", func(w *trowDB, s *sqliteScenario) { w.tag("org/app", "ghost", newContent([]byte("?")).d) },
			func(s *sqliteScenario) findings { return findings{Broken: []string{"org/app:ghost"}, InSync: true} }},
		{"blob content mismatch", func(w *trowDB, s *sqliteScenario) {
			writeFile(w.t, w.root, "blobs/"+s.a.config.d.String(), []byte("flipped"))
		}, func(s *sqliteScenario) findings {
			return findings{Mismatched: []string{"blobs/" + s.a.config.d.String()}, InSync: true}
		}},
		{"missing index child row", func(w *trowDB, s *sqliteScenario) {
			w.exec(`DELETE FROM manifest WHERE digest = ?`, s.c2.manifest.d.String())
		}, func(s *sqliteScenario) findings {
			var dang []string
			for _, c := range s.c2.blobs() {
				dang = append(dang, "blobs/"+c.d.String())
			}
			return findings{Missing: []string{s.c2.manifest.d.String()}, Dangling: sorted(dang...)}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			w, s := buildSQLite(t, root)
			c.do(w, s)
			r := newRegistry(t, TrowSQLite, root, Options{})
			r.Reset(scan(t, TrowSQLite, root))
			if got, want := findingsOf(r.Report()), c.want(s); !reflect.DeepEqual(got, want) {
				t.Fatalf("findings:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestSQLiteConcurrentWriter reloads the database while another connection
// keeps writing, as Trow does: neither side may fail.
func TestSQLiteConcurrentWriter(t *testing.T) {
	root := t.TempDir()
	w, s := buildSQLite(t, root)
	r := newRegistry(t, TrowSQLite, root, Options{Debounce: time.Millisecond})
	r.Reset(scan(t, TrowSQLite, root))
	want, _ := r.DBDigest()

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var writes int
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			// Volatile writes only, with periodic checkpoints.
			if _, err := w.db.Exec(`UPDATE blob SET last_accessed = ?`, i); err != nil {
				werr = err
				return
			}
			if i%50 == 0 {
				if _, err := w.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
					werr = err
					return
				}
			}
			writes++
		}
	}()
	reloads := 0
	for ctx.Err() == nil {
		r.Update(FileInfo{Path: "trow.db-wal"})
		r.Flush()
		reloads++
		if d, _ := r.DBDigest(); d != want {
			t.Fatalf("digest changed under volatile writes")
		}
	}
	wg.Wait()
	if werr != nil {
		t.Fatalf("writer failed while the registry read: %v", werr)
	}
	if st := r.Stats(); st.DBErrors != 0 {
		t.Fatalf("%d reload errors", st.DBErrors)
	}
	if writes < 10 || reloads < 10 {
		t.Fatalf("too little concurrency: %d writes, %d reloads", writes, reloads)
	}
	t.Logf("%d writes, %d reloads", writes, reloads)
	_ = s
}

func TestSQLiteReadOnlyDSN(t *testing.T) {
	root := t.TempDir()
	buildSQLite(t, root)
	db, err := sql.Open("sqlite", dsn(filepath.Join(root, "trow.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO tag(tag, repo, manifest_digest) VALUES ('x','y','z')`); err == nil {
		t.Fatal("the registry's connection could write")
	}
}

func TestSQLiteNotTrowDB(t *testing.T) {
	root := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(root, "trow.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE other(x)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r := newRegistry(t, TrowSQLite, root, Options{})
	r.Reset(scan(t, TrowSQLite, root))
	rep := r.Report()
	if rep.DBError == "" || rep.OK {
		t.Fatalf("want a db_error, got %+v", rep)
	}
	if _, ok := r.DBDigest(); ok {
		t.Fatal("DBDigest ok for a foreign database")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSQLiteUnreportedWALWrite: a tag move that nobody reported (the WAL
// is excluded from the tree) is still seen by the next Report after the
// debounce interval, because the database's size and mtime changed.
func TestSQLiteUnreportedWALWrite(t *testing.T) {
	root := t.TempDir()
	w, s := buildSQLite(t, root)
	r := newRegistry(t, TrowSQLite, root, Options{Debounce: 10 * time.Millisecond})
	r.Reset(scan(t, TrowSQLite, root))
	before := r.Report().DBDigest
	w.tag("org/app", "v9", s.c1.manifest.d)
	waitFor(t, func() bool { return r.Report().DBDigest != before })
	if rr, _ := r.RepoReport("org/app"); rr.Tags["v9"] != s.c1.manifest.d.String() {
		t.Fatalf("tags after unreported write: %v", rr.Tags)
	}
}

// BenchmarkLoadDB measures one read-only reload of a trow.db holding 2000
// manifests with 5 blobs each.
func BenchmarkLoadDB(b *testing.B) {
	root := b.TempDir()
	w := openTrowDBB(b, root)
	rng := rand.New(rand.NewPCG(1, 2))
	tx, err := w.Begin()
	if err != nil {
		b.Fatal(err)
	}
	exec := func(q string, args ...any) {
		if _, err := tx.Exec(q, args...); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	for i := 0; i < 2000; i++ {
		im := makeImage(rng, 4, false)
		repo := "r" + strconv.Itoa(i)
		exec(`INSERT INTO manifest(digest, json, blob) VALUES (?, ?, ?)`, im.manifest.d.String(), im.manifest.b, im.manifest.b)
		exec(`INSERT INTO tag(tag, repo, manifest_digest) VALUES (?, ?, ?)`, "v1", repo, im.manifest.d.String())
		for _, c := range im.blobs() {
			exec(`INSERT INTO manifest_blob_assoc VALUES (?, ?)`, im.manifest.d.String(), c.d.String())
			exec(`INSERT INTO repo_blob_assoc(repo_name, blob_digest) VALUES (?, ?)`, repo, c.d.String())
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := loadDB(context.Background(), filepath.Join(root, "trow.db")); err != nil {
			b.Fatal(err)
		}
	}
}

func openTrowDBB(b *testing.B, root string) *sql.DB {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(root, "trow.db")+"?_pragma=journal_mode(WAL)")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if _, err := db.Exec(TrowSchema); err != nil {
		b.Fatal(err)
	}
	return db
}

// A trow.db that is a symbolic link (or anything but a regular file) is never opened: SQLite
// would follow the link, read a database outside DATA and create its -shm beside it.
func TestSQLiteSymlinkedDBIsNotOpened(t *testing.T) {
	outside := t.TempDir()
	buildSQLite(t, outside)
	root := t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "trow.db"), filepath.Join(root, "trow.db")); err != nil {
		t.Fatal(err)
	}
	if _, err := loadDB(context.Background(), filepath.Join(root, "trow.db")); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("loadDB through a symlink: %v, want a refusal", err)
	}
	r := newRegistry(t, TrowSQLite, root, Options{})
	r.Reset(scan(t, TrowSQLite, root))
	if rep := r.Report(); rep.DBError == "" || rep.OK {
		t.Fatalf("want a db_error for a symlinked trow.db, got %+v", rep)
	}
}
