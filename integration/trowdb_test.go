package integration

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, as "sqlite"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// A DATA/trow.db that is not a regular file is refused with exit 2, by mount and by verify,
// before SQLite opens it: a FIFO would block the command for ever, and a symbolic link out of
// DATA would have root read the file it points to and create trow.db-wal and trow.db-shm beside
// it. Nothing outside DATA changes.
func TestTrowDBThatIsNotARegularFileIsRefused(t *testing.T) {
	trowfsbin.Require(t)
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim.db")
	db, err := sql.Open("sqlite", victim)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"PRAGMA journal_mode=wal", "CREATE TABLE manifest(digest TEXT)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(victim, old, old); err != nil {
		t.Fatal(err)
	}
	before := outsideState(t, outside)

	for name, plant := range map[string]func(p string) error{
		"a FIFO":                           func(p string) error { return syscall.Mkfifo(p, 0o644) },
		"a symbolic link out of DATA":      func(p string) error { return os.Symlink(victim, p) },
		"a relative link out of DATA":      func(p string) error { return os.Symlink("../../"+filepath.Base(outside)+"/victim.db", p) },
		"a symbolic link to nothing there": func(p string) error { return os.Symlink(filepath.Join(outside, "missing.db"), p) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			body := "a flat blob"
			sum := sha256.Sum256([]byte(body))
			if err := os.MkdirAll(filepath.Join(data, "blobs"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(data, "blobs", "sha256:"+hex.EncodeToString(sum[:])), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := plant(filepath.Join(data, "trow.db")); err != nil {
				t.Fatal(err)
			}
			r := trowfsbin.RunWithin(t, 20*time.Second, "verify", data, "--layout", "trow-sqlite", "--progress", "none")
			if r.Code != 2 || !strings.Contains(r.Stderr, "not a regular file") {
				t.Errorf("verify: exit %d, want 2 saying trow.db is not a regular file; stderr:\n%s", r.Code, r.Stderr)
			}
			mnt := filepath.Join(dir, "mnt")
			r = trowfsbin.RunWithin(t, 20*time.Second, "mount", data, mnt, "--layout", "trow-sqlite")
			if r.Code != 2 || !strings.Contains(r.Stderr, "not a regular file") {
				t.Errorf("mount: exit %d, want 2 saying trow.db is not a regular file; stderr:\n%s", r.Code, r.Stderr)
			}
			if trowfsbin.Mounted(mnt) {
				t.Errorf("%s is mounted after a refusal", mnt)
			}
			if after := outsideState(t, outside); after != before {
				t.Errorf("the directory outside DATA changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// outsideState lists dir's entries with size and mtime.
func outsideState(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(e.Name() + " " + fi.Mode().String() + " " + fi.ModTime().UTC().Format(time.RFC3339Nano) + " " + strconv.FormatInt(fi.Size(), 10) + "; ")
	}
	return b.String()
}
