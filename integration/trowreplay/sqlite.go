package trowreplay

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver, as "sqlite"

	"github.com/trowfs/trowfs/registry"
)

// ReadyContent is what the readiness probe writes to uploads/fs-ready (11 bytes).
const ReadyContent = "trow ready\n"

// Trigger fills manifest_blob_assoc from a manifest's config and layers, as Trow's migration does.
const Trigger = `
CREATE TRIGGER IF NOT EXISTS manifest_blob_assoc_fill AFTER INSERT ON manifest BEGIN
  INSERT OR IGNORE INTO manifest_blob_assoc (manifest_digest, blob_digest)
    SELECT NEW.digest, json_extract(value, '$.digest') FROM json_each(NEW.json, '$.layers');
  INSERT OR IGNORE INTO manifest_blob_assoc (manifest_digest, blob_digest)
    SELECT NEW.digest, json_extract(NEW.json, '$.config.digest') WHERE json_extract(NEW.json, '$.config.digest') IS NOT NULL;
END;`

// SQLite replays the SQLite era on the directory Root (normally a trowfs mountpoint).
type SQLite struct {
	Root string
}

// Init creates the directories Trow v0.7 creates at start-up.
func (s *SQLite) Init() error {
	for _, d := range []string{"blobs", "uploads"} {
		if err := os.MkdirAll(filepath.Join(s.Root, d), 0o755); err != nil {
			return opErr("mkdir", d, err)
		}
	}
	return nil
}

// BlobPath is where the SQLite era keeps blob d: the flat blobs/<alg>:<hex>.
func (s *SQLite) BlobPath(d digest.Digest) string { return filepath.Join(s.Root, "blobs", d.String()) }

// OpenDB opens trow.db under Root as Trow does: WAL mode, a busy timeout, foreign keys on. Each
// *sql.DB is limited to one connection so that two of them are two SQLite connections.
func (s *SQLite) OpenDB() (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	p := filepath.Join(s.Root, "trow.db")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: p}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, opErr("open", p, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, opErr("open", p, err)
	}
	return db, nil
}

// CreateSchema creates Trow's tables and the association trigger.
func CreateSchema(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, registry.TrowSchema); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if _, err := db.ExecContext(ctx, Trigger); err != nil {
		return fmt.Errorf("trigger: %w", err)
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if mode != "wal" {
		return fmt.Errorf("journal_mode is %q, want wal", mode)
	}
	return nil
}

// UploadBlob writes b to uploads/<uuid> in chunks O_APPEND writes (one open per PATCH), records
// the upload and the blob rows, and renames the file into blobs/<digest>, replacing any file
// there. The content is not checked against the digest (Trow's check is commented out).
func (s *SQLite) UploadBlob(ctx context.Context, db *sql.DB, repo string, d digest.Digest, data []byte, chunks int) error {
	uuid := UUID()
	up := filepath.Join(s.Root, "uploads", uuid)
	if _, err := db.ExecContext(ctx, `INSERT INTO blob_upload (uuid, offset, repo) VALUES (?, 0, ?)`, uuid, repo); err != nil {
		return err
	}
	off := 0
	for _, c := range chunksOf(data, chunks) {
		if err := patch(up, c); err != nil {
			return err
		}
		off += len(c)
		if _, err := db.ExecContext(ctx, `UPDATE blob_upload SET offset = ? WHERE uuid = ?`, off, uuid); err != nil {
			return err
		}
	}
	if err := os.Rename(up, s.BlobPath(d)); err != nil {
		// Trow panics here.
		return opErr("rename", up, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // committed below
	if _, err := tx.ExecContext(ctx, `INSERT INTO blob (digest, size) VALUES (?, ?) ON CONFLICT(digest) DO UPDATE SET last_accessed = unixepoch()`, d.String(), len(data)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO repo_blob_assoc (repo_name, blob_digest) VALUES (?, ?)`, repo, d.String()); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM blob_upload WHERE uuid = ?`, uuid); err != nil {
		return err
	}
	return tx.Commit()
}

// PutManifest stores a manifest row and points tag at it (an empty tag: a push by digest).
func PutManifest(ctx context.Context, db *sql.DB, repo, tag string, m Blob) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // committed below
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO manifest (digest, json, blob) VALUES (?, jsonb(?), ?)`, m.Digest.String(), string(m.Data), m.Data); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO repo_blob_assoc (repo_name, manifest_digest) VALUES (?, ?)`, repo, m.Digest.String()); err != nil {
		return err
	}
	if tag != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tag (repo, tag, manifest_digest) VALUES (?, ?, ?) ON CONFLICT(repo, tag) DO UPDATE SET manifest_digest = excluded.manifest_digest`, repo, tag, m.Digest.String()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Pull is a blob GET: it only updates blob.last_accessed (every pull is a write to trow.db).
func Pull(ctx context.Context, db *sql.DB, d digest.Digest) error {
	_, err := db.ExecContext(ctx, `UPDATE blob SET last_accessed = last_accessed + 1 WHERE digest = ?`, d.String())
	return err
}

// Push uploads every blob of im and puts its manifest under tag.
func (s *SQLite) Push(ctx context.Context, db *sql.DB, repo, tag string, im Image, chunks int) error {
	for _, b := range im.Blobs() {
		if err := s.UploadBlob(ctx, db, repo, b.Digest, b.Data, chunks); err != nil {
			return err
		}
	}
	return PutManifest(ctx, db, repo, tag, im.Manifest)
}

// ProxyBlob is the pull-through path: uploads/<digest> opened O_RDWR|O_CREAT|O_EXCL, written,
// re-read from the same descriptor to hash it, renamed into blobs/, then the old name unlinked
// expecting ENOENT, and only then the descriptor closed. It returns an error when the unlink
// does not fail with ENOENT.
func (s *SQLite) ProxyBlob(b Blob) error {
	tmp := filepath.Join(s.Root, "uploads", b.Digest.String())
	fd, err := unix.Open(tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return opErr("open", tmp, err)
	}
	fdF := &rawFile{fd: fd}
	defer fdF.Close()
	for _, c := range chunksOf(b.Data, 4) {
		if _, err := unix.Write(fd, c); err != nil {
			return opErr("write", tmp, err)
		}
	}
	buf := make([]byte, len(b.Data)+1)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		return opErr("pread", tmp, err)
	}
	if got := digest.FromBytes(buf[:n]); got != b.Digest {
		return opErr("digest", tmp, fmt.Errorf("re-read %d bytes hashing to %s, want %s", n, got, b.Digest))
	}
	if err := os.Rename(tmp, s.BlobPath(b.Digest)); err != nil {
		return opErr("rename", tmp, err)
	}
	if err := unix.Unlink(tmp); !errors.Is(err, unix.ENOENT) {
		return opErr("unlink", tmp, fmt.Errorf("after the rename: got %v, want ENOENT", err))
	}
	return opErr("close", tmp, fdF.Close())
}

// Ready rewrites uploads/fs-ready with O_TRUNC, as every readiness probe does.
func (s *SQLite) Ready() error {
	p := filepath.Join(s.Root, "uploads", "fs-ready")
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return opErr("open", p, err)
	}
	if n, err := unix.Write(fd, []byte(ReadyContent)); err != nil || n != len(ReadyContent) {
		unix.Close(fd)
		return opErr("write", p, fmt.Errorf("wrote %d bytes: %v", n, err))
	}
	return opErr("close", p, unix.Close(fd))
}

// IntegrityCheck runs PRAGMA integrity_check and returns its answer ("ok" when sound).
func IntegrityCheck(ctx context.Context, db *sql.DB) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var res string
	err := db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res)
	return res, err
}
