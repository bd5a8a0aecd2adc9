package integration

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/fs/fstest"
	"github.com/trowfs/trowfs/integration/trowreplay"
	"github.com/trowfs/trowfs/internal/tracker"
	"github.com/trowfs/trowfs/registry"
)

// Damage modes: how the damage reaches the data directory.
const (
	// offline: DATA is damaged while unmounted; the next mount's quick verification finds it.
	modeOffline = "offline"
	// behind: DATA is damaged while mounted, then a full verification run is started.
	modeBehind = "behind"
	// through: the damage is done through the mount.
	modeThrough = "through"
)

// damageFixture is a registry with two tagged images, org/app:v1 (A) and org/lib:1.0 (B).
type damageFixture struct {
	era  string // "files" or "sqlite"
	e    *trowreplay.Env
	A, B trowreplay.Image
}

// blobRel is the path of blob d relative to DATA.
func (fx *damageFixture) blobRel(d digest.Digest) string {
	if fx.era == "files" {
		return "blobs/sha256/" + d.Encoded()
	}
	return "blobs/" + d.String()
}

// scratchRel is the era's upload area (excluded from the tree).
func (fx *damageFixture) scratchRel() string {
	if fx.era == "files" {
		return "scratch"
	}
	return "uploads"
}

// newDamageFixture mounts a fresh data directory (data, if not empty) and pushes the images.
func newDamageFixture(t *testing.T, era, data string) *damageFixture {
	t.Helper()
	layout := map[string]string{"files": "trow-files", "sqlite": "trow-sqlite"}[era]
	fx := &damageFixture{era: era, e: trowreplay.NewEnv(t, layout),
		A: trowreplay.NewImage(61, 2, 48<<10), B: trowreplay.NewImage(62, 2, 20<<10)}
	e := fx.e
	if data != "" {
		e.Data = data
	}
	ctx := context.Background()
	switch era {
	case "files":
		if err := (&trowreplay.Files{Root: e.Data}).Init(); err != nil {
			t.Fatal(err)
		}
		e.Start()
		f := &trowreplay.Files{Root: e.Mnt, Version: trowreplay.V04}
		if err := f.Push("org/app", "v1", fx.A, t0, 2); err != nil {
			t.Fatal(err)
		}
		if err := f.Push("org/lib", "1.0", fx.B, t0, 2); err != nil {
			t.Fatal(err)
		}
	case "sqlite":
		s := &trowreplay.SQLite{Root: e.Mnt}
		e.Start()
		if err := s.Init(); err != nil {
			t.Fatal(err)
		}
		db, err := s.OpenDB()
		if err != nil {
			t.Fatal(err)
		}
		if err := trowreplay.CreateSchema(ctx, db); err != nil {
			t.Fatal(err)
		}
		if err := s.Push(ctx, db, "org/app", "v1", fx.A, 2); err != nil {
			t.Fatal(err)
		}
		if err := s.Push(ctx, db, "org/lib", "1.0", fx.B, 2); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if rep, ok := waitReport(e, 5*time.Second, func(r registry.Report) bool { return r.Tags == 2 }); !ok {
		t.Fatalf("fixture: %d tags, want 2", rep.Tags)
	}
	checkReport(t, e, expectReport{tags: 2})
	noFindings(t, e)
	e.AssertMatchesRescan(t)
	if t.Failed() {
		t.FailNow()
	}
	return fx
}

// damage is what one case did and what must be found.
type damage struct {
	paths    []string            // paths (relative to DATA) the damage touched
	report   expectReport        // the registry report, exactly
	findings map[string][]string // mode → finding kinds on paths[0]; nothing anywhere else
}

// damageCase is one named kind of damage.
type damageCase struct {
	name  string
	eras  []string
	modes []string
	do    func(t *testing.T, fx *damageFixture, root, mode string) damage
	// bugs explains, per mode, a known trowfs bug that makes the case fail (logged on failure).
	bugs map[string]string
}

var allModes = []string{modeOffline, modeBehind, modeThrough}

func boolp(b bool) *bool { return &b }

func damageCases() []damageCase {
	both := []string{"files", "sqlite"}
	return []damageCase{
		{name: "flipped-bit", eras: both, modes: allModes, do: func(t *testing.T, fx *damageFixture, root, mode string) damage {
			l := fx.A.Layers[0]
			rel := fx.blobRel(l.Digest)
			bad := append([]byte{}, l.Data...)
			bad[len(bad)/2] ^= 0x10
			p := filepath.Join(root, rel)
			st := mustStat(t, p)
			fl, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fl.WriteAt(bad[len(bad)/2:len(bad)/2+1], int64(len(bad)/2)); err != nil {
				t.Fatal(err)
			}
			if err := fl.Close(); err != nil {
				t.Fatal(err)
			}
			// Same size; the modification time put back.
			if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
				t.Fatal(err)
			}
			return damage{paths: []string{rel},
				report: expectReport{tags: 2, mism: []registry.MismatchedBlob{{Path: rel, Expected: l.Digest.String(), Actual: digest.FromBytes(bad).String(), Repos: []string{"org/app"}}}},
				findings: map[string][]string{modeOffline: {tracker.FindingMismatch}, modeBehind: {tracker.FindingDrift, tracker.FindingMismatch},
					modeThrough: {tracker.FindingMismatch}}}
		}},
		{name: "truncated-blob", eras: both, modes: allModes, do: func(t *testing.T, fx *damageFixture, root, mode string) damage {
			l := fx.B.Layers[1]
			rel := fx.blobRel(l.Digest)
			if err := os.Truncate(filepath.Join(root, rel), int64(len(l.Data)/3)); err != nil {
				t.Fatal(err)
			}
			return damage{paths: []string{rel},
				report: expectReport{tags: 2, mism: []registry.MismatchedBlob{{Path: rel, Expected: l.Digest.String(), Actual: digest.FromBytes(l.Data[:len(l.Data)/3]).String(), Repos: []string{"org/lib"}}}},
				findings: map[string][]string{modeOffline: {tracker.FindingMismatch}, modeBehind: {tracker.FindingDrift, tracker.FindingMismatch},
					modeThrough: {tracker.FindingMismatch}}}
		}},
		{name: "deleted-referenced-blob", eras: both, modes: allModes, do: func(t *testing.T, fx *damageFixture, root, mode string) damage {
			l := fx.A.Layers[1]
			rel := fx.blobRel(l.Digest)
			if err := os.Remove(filepath.Join(root, rel)); err != nil {
				t.Fatal(err)
			}
			return damage{paths: []string{rel},
				report: expectReport{tags: 2, missing: []registry.MissingBlob{{Digest: l.Digest.String(), Kind: "blob", Repos: []string{"org/app"},
					Manifests: []string{fx.A.Manifest.Digest.String()}, Tags: []string{"org/app:v1"}}}},
				findings: map[string][]string{modeBehind: {tracker.FindingDrift}}}
		}},
		{name: "stray-blob", eras: both, modes: allModes, do: func(t *testing.T, fx *damageFixture, root, mode string) damage {
			stray := trowreplay.NewBlob([]byte(strings.Repeat("left over by an interrupted GC\n", 700)))
			rel := fx.blobRel(stray.Digest)
			if err := os.WriteFile(filepath.Join(root, rel), stray.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			// Created behind the mount's back: a full verification walks DATA and reports it as drift.
			return damage{paths: []string{rel}, report: expectReport{tags: 2, dangling: danglingSet("", stray.Digest.String())},
				findings: map[string][]string{modeBehind: {tracker.FindingDrift}}}
		}},
		{name: "unparsable-manifest", eras: []string{"files"}, modes: []string{modeOffline, modeThrough}, do: func(t *testing.T, fx *damageFixture, root, mode string) damage {
			// A manifest stored under its own digest (so not mismatched) that is not a manifest,
			// tagged org/bad:x.
			garbage := trowreplay.NewBlob([]byte("{\"schemaVersion\": 2, \"layers\": [truncated"))
			rel := fx.blobRel(garbage.Digest)
			if err := os.WriteFile(filepath.Join(root, rel), garbage.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			tagRel := "manifests/org/bad/x"
			if err := os.MkdirAll(filepath.Join(root, "manifests/org/bad"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, tagRel), []byte(trowreplay.TagLine(garbage.Digest, t0)), 0o644); err != nil {
				t.Fatal(err)
			}
			return damage{paths: []string{rel, tagRel, "manifests/org/bad/"}, report: expectReport{tags: 3, unparse: []string{rel}}}
		}},
		{name: "unparsable-manifest", eras: []string{"sqlite"}, modes: []string{modeOffline, modeThrough}, do: func(t *testing.T, fx *damageFixture, root, mode string) damage {
			garbage := trowreplay.NewBlob([]byte("{\"schemaVersion\": 2, \"layers\": [truncated"))
			db := openDamageDB(t, root)
			if _, err := db.Exec(`INSERT INTO manifest (digest, json, blob) VALUES (?, jsonb('{}'), ?)`, garbage.Digest.String(), garbage.Data); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`INSERT INTO tag (repo, tag, manifest_digest) VALUES ('org/bad', 'x', ?)`, garbage.Digest.String()); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			return damage{paths: []string{"trow.db"}, report: expectReport{tags: 3, unparse: []string{"trow.db"}}}
		}},
		{name: "tag-to-missing-manifest", eras: []string{"files"}, modes: []string{modeOffline, modeThrough}, do: func(t *testing.T, fx *damageFixture, root, mode string) damage {
			ghost := trowreplay.NewImage(63, 1, 100).Manifest.Digest
			tagRel := "manifests/org/app/ghost"
			if err := os.WriteFile(filepath.Join(root, tagRel), []byte(trowreplay.TagLine(ghost, t0)), 0o644); err != nil {
				t.Fatal(err)
			}
			// In trow-files manifests are blobs: the absent target is referenced, so not in sync.
			return damage{paths: []string{tagRel},
				report: expectReport{tags: 3, inSync: boolp(false), broken: []registry.BrokenTag{{Repo: "org/app", Tag: "ghost", Digest: ghost.String()}}}}
		}},
		{name: "tag-to-missing-manifest", eras: []string{"sqlite"}, modes: []string{modeOffline, modeThrough}, do: func(t *testing.T, fx *damageFixture, root, mode string) damage {
			ghost := trowreplay.NewImage(63, 1, 100).Manifest.Digest
			db := openDamageDB(t, root)
			if _, err := db.Exec(`PRAGMA foreign_keys = OFF`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`INSERT INTO tag (repo, tag, manifest_digest) VALUES ('org/app', 'ghost', ?)`, ghost.String()); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			// In trow-sqlite manifests are rows, not blobs: in_sync stays true (docs/registry.md).
			return damage{paths: []string{"trow.db"},
				report: expectReport{tags: 3, inSync: boolp(true), broken: []registry.BrokenTag{{Repo: "org/app", Tag: "ghost", Digest: ghost.String()}}}}
		}},
		{name: "renamed-in-under-wrong-name", eras: both, modes: allModes, bugs: map[string]string{modeBehind: "a file replaced in DATA " +
			"while mounted (new inode) is found as drift, but tracker.(*Tracker).rehashLocked → fileStateLocked keeps the entry's old " +
			"Meta (old inode), so recordHashLocked discards the hash (e.Meta.Ino != ino) and the entry stays pending for ever with the " +
			"old digest: no mismatch is reported and the tree differs from a rescan"}, do: func(t *testing.T, fx *damageFixture, root, mode string) damage {
			// An upload of B's first layer completed under A's first layer's name.
			victim := fx.A.Layers[0]
			rel := fx.blobRel(victim.Digest)
			tmp := filepath.Join(root, fx.scratchRel(), trowreplay.UUID())
			if err := os.WriteFile(tmp, fx.B.Layers[0].Data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(root, rel)); err != nil {
				t.Fatalf("rename into blobs must succeed (Trow panics otherwise): %v", err)
			}
			return damage{paths: []string{rel},
				report: expectReport{tags: 2, mism: []registry.MismatchedBlob{{Path: rel, Expected: victim.Digest.String(), Actual: fx.B.Layers[0].Digest.String(), Repos: []string{"org/app"}}}},
				findings: map[string][]string{modeOffline: {tracker.FindingMismatch}, modeBehind: {tracker.FindingDrift, tracker.FindingMismatch},
					modeThrough: {tracker.FindingMismatch}}}
		}},
	}
}

// TestDamage does each kind of damage to a Trow registry of each era, behind the mount's back
// and through it, and checks that it is found and named precisely, that nothing else is
// reported, and that no other file changed.
func TestDamage(t *testing.T) {
	for _, c := range damageCases() {
		for _, era := range c.eras {
			for _, mode := range c.modes {
				t.Run(era+"/"+c.name+"/"+mode, func(t *testing.T) { runDamage(t, c, era, mode) })
			}
		}
	}
}

// sideFiles are not compared in the content listing: SQLite's own files change with every
// connection.
var sideFiles = []string{"trow.db-wal", "trow.db-shm", "trow.db-journal"}

func runDamage(t *testing.T, c damageCase, era, mode string) {
	fx := newDamageFixture(t, era, "")
	e := fx.e
	before := trowreplay.Listing(t, e.Data, sideFiles...)
	root := e.Data
	switch mode {
	case modeOffline:
		e.Stop()
	case modeThrough:
		root = e.Mnt
	}
	d := c.do(t, fx, root, mode)
	switch mode {
	case modeOffline:
		e.Start()
	case modeBehind:
		run, err := e.Srv.Tracker().StartVerify(tracker.RunFull, tracker.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		run.Wait()
		if v := run.View(); v.State != "done" {
			t.Fatalf("verification run %s: %s", v.State, v.Error)
		}
	}
	// The database is re-read when it changes; wait until the model has the damage.
	waitReport(e, 5*time.Second, func(r registry.Report) bool { return r.Tags == d.report.tags })

	want := d.report
	rep := checkReport(t, e, want)
	if rep.OK {
		t.Errorf("report says ok despite the damage")
	}

	// Findings: exactly the expected kinds on the damaged path, none anywhere else.
	got := map[string][]string{}
	for _, f := range e.Srv.Tracker().Findings("") {
		got[f.Path] = append(got[f.Path], f.Kind)
	}
	wantKinds := append([]string{}, d.findings[mode]...)
	sort.Strings(wantKinds)
	gotKinds := got[d.paths[0]]
	sort.Strings(gotKinds)
	if !equalJSON(gotKinds, wantKinds) {
		t.Errorf("findings on %s: %v, want %v", d.paths[0], gotKinds, wantKinds)
	}
	for p, kinds := range got {
		if p != d.paths[0] {
			t.Errorf("unexpected findings on %s: %v", p, kinds)
		}
	}
	if mode == modeOffline {
		checkLoadChanges(t, e, d.paths)
	}

	// Nothing else changed or was lost.
	after := trowreplay.Listing(t, e.Data, sideFiles...)
	if diff := trowreplay.DiffListings(before, after, d.paths...); len(diff) > 0 {
		t.Errorf("files other than the damaged ones changed:\n%s", strings.Join(diff, "\n"))
	}
	if diff := e.RescanDiff(); len(diff) > 0 {
		t.Errorf("inline tree differs from a rescan:\n%s", strings.Join(diff, "\n"))
	}
	if t.Failed() && c.bugs[mode] != "" {
		t.Logf("bug: %s", c.bugs[mode])
	}
}

// checkLoadChanges checks that the mount's load report lists the damaged files, and only them,
// as changed while unmounted.
func checkLoadChanges(t *testing.T, e *trowreplay.Env, paths []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	lr := e.Srv.Tracker().LoadReport()
	for !lr.ChangedSettled && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		lr = e.Srv.Tracker().LoadReport()
	}
	want := map[string]bool{}
	side := map[string]bool{}
	for _, p := range sideFiles {
		side[p] = true
	}
	for _, p := range paths {
		want[strings.TrimSuffix(p, "/")] = true
	}
	for _, c := range lr.Changed {
		if !want[c.Path] && c.Path != "trow.db" && !side[c.Path] {
			t.Errorf("load report: %s %s, not damaged", c.Path, c.Change)
		}
		delete(want, c.Path)
	}
	for p := range want {
		if p != "trow.db" {
			t.Errorf("load report does not list %s as changed while unmounted (changes: %+v)", p, lr.Changed)
		}
	}
}

// openDamageDB opens trow.db under root (DATA while unmounted, or MNT) with one connection.
func openDamageDB(t *testing.T, root string) *sql.DB {
	t.Helper()
	db, err := (&trowreplay.SQLite{Root: root}).OpenDB()
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func mustStat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestDamageBitRot flips a bit of a blob on the block device under an ext4 data directory, so
// that size, mtime, ctime and inode all stay the same (real bit rot), and runs a full
// verification through the mount's tracker: it must report bit_rot and the mismatched blob,
// and nothing else.
func TestDamageBitRot(t *testing.T) {
	for _, era := range []string{"files", "sqlite"} {
		t.Run(era, func(t *testing.T) {
			fstest.Require(t)
			lfs, err := trowreplay.NewLoopFS(t.TempDir(), 64<<20)
			if errors.Is(err, trowreplay.ErrNoLoop) && os.Getenv("CI") != "true" {
				t.Skipf("bit rot needs a loop-mounted ext4: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := lfs.Close(); err != nil {
					t.Errorf("loop filesystem: %v", err)
				}
			})
			data := filepath.Join(lfs.Dir, "data")
			if err := os.Mkdir(data, 0o755); err != nil {
				t.Fatal(err)
			}
			fx := newDamageFixture(t, era, data)
			e := fx.e
			before := trowreplay.Listing(t, e.Data, sideFiles...)
			l := fx.A.Layers[1]
			rel := fx.blobRel(l.Digest)
			p := filepath.Join(e.Data, rel)
			var st0, st1 unix.Stat_t
			if err := unix.Stat(p, &st0); err != nil {
				t.Fatal(err)
			}
			off := int64(len(l.Data)/2 + 7)
			if err := lfs.FlipBit(p, off); err != nil {
				t.Fatal(err)
			}
			if err := unix.Stat(p, &st1); err != nil {
				t.Fatal(err)
			}
			if st0.Size != st1.Size || st0.Mtim != st1.Mtim || st0.Ctim != st1.Ctim || st0.Ino != st1.Ino {
				t.Fatalf("flipping the bit on the device changed the file's metadata: %+v → %+v", st0, st1)
			}
			bad := append([]byte{}, l.Data...)
			bad[off] ^= 0x10

			run, err := e.Srv.Tracker().StartVerify(tracker.RunFull, tracker.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			run.Wait()
			v := run.View()
			if v.State != "done" || len(v.Findings) != 1 || v.Findings[0].Kind != tracker.FindingBitRot || v.Findings[0].Path != rel ||
				v.Findings[0].Actual != digest.FromBytes(bad).String() {
				t.Errorf("verification run %s found %+v, want one bit_rot on %s", v.State, v.Findings, rel)
			}
			checkReport(t, e, expectReport{tags: 2, mism: []registry.MismatchedBlob{{Path: rel, Expected: l.Digest.String(), Actual: digest.FromBytes(bad).String(), Repos: []string{"org/app"}}}})
			f := e.Srv.Tracker().Findings("")
			if len(f) != 1 || f[0].Kind != tracker.FindingBitRot || f[0].Path != rel {
				t.Errorf("findings %+v, want exactly one bit_rot on %s", f, rel)
			}
			after := trowreplay.Listing(t, e.Data, sideFiles...)
			if diff := trowreplay.DiffListings(before, after, rel); len(diff) > 0 {
				t.Errorf("files other than %s changed:\n%s", rel, strings.Join(diff, "\n"))
			}
			if diff := e.RescanDiff(); len(diff) > 0 {
				t.Errorf("inline tree differs from a rescan:\n%s", strings.Join(diff, "\n"))
			}
			// Stop before the loop filesystem goes (cleanups run last-registered first).
			e.Stop()
		})
	}
}
