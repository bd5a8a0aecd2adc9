package registry

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	_ "modernc.org/sqlite" // registers the "sqlite" driver (pure Go)

	"github.com/trowfs/trowfs/hashtree"
)

// TrowSchema is the schema of Trow's SQLite database (v0.7 and later) as far
// as trowfs reads it: the tables and columns the logical digest covers, plus
// the volatile ones it ignores. Tests use it to create such a database.
const TrowSchema = `
CREATE TABLE IF NOT EXISTS blob (
    digest TEXT NOT NULL PRIMARY KEY,
    size INTEGER NOT NULL,
    last_accessed INTEGER NOT NULL DEFAULT (unixepoch())
);
CREATE TABLE IF NOT EXISTS manifest (
    digest TEXT NOT NULL PRIMARY KEY,
    json BLOB NOT NULL,
    blob BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_upload (
    uuid TEXT NOT NULL PRIMARY KEY,
    offset INTEGER NOT NULL,
    updated_at INTEGER NOT NULL DEFAULT (unixepoch()),
    repo TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS repo_blob_assoc (
    repo_name TEXT NOT NULL,
    blob_digest TEXT,
    manifest_digest TEXT,
    PRIMARY KEY (repo_name, blob_digest, manifest_digest),
    FOREIGN KEY (blob_digest) REFERENCES blob(digest) ON DELETE CASCADE,
    FOREIGN KEY (manifest_digest) REFERENCES manifest(digest) ON DELETE CASCADE,
    CHECK (blob_digest IS NOT NULL OR manifest_digest IS NOT NULL)
);
CREATE TABLE IF NOT EXISTS tag (
    tag TEXT NOT NULL,
    repo TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    CONSTRAINT IDX_repo_tag PRIMARY KEY (repo, tag),
    FOREIGN KEY (manifest_digest) REFERENCES manifest(digest) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS manifest_blob_assoc (
    manifest_digest TEXT NOT NULL,
    blob_digest TEXT NOT NULL,
    PRIMARY KEY (manifest_digest, blob_digest),
    FOREIGN KEY (manifest_digest) REFERENCES manifest(digest) ON DELETE CASCADE,
    FOREIGN KEY (blob_digest) REFERENCES blob(digest)
);
CREATE INDEX IF NOT EXISTS idx_manifest_blob_assoc_blob ON manifest_blob_assoc(blob_digest);
`

// dbDigestHeader starts the canonical serialisation of the logical digest;
// it names the format version.
const dbDigestHeader = "trowfs-db-digest v1\n"

// dbQueryTimeout bounds one whole read of the database.
const dbQueryTimeout = 30 * time.Second

// dbBusyTimeoutMS is how long one statement waits for a lock held by Trow.
const dbBusyTimeoutMS = 2000

// DBError is a failure to read trow.db.
type DBError struct {
	Path string
	Op   string
	Err  error
}

func (e *DBError) Error() string {
	return "registry: trow.db " + e.Op + " " + e.Path + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *DBError) Unwrap() error { return e.Err }

// ErrNotTrowDB is wrapped when the database lacks Trow's manifest or tag table.
var ErrNotTrowDB = errors.New("not a Trow database")

// dbManifest is one row of the manifest table.
type dbManifest struct {
	raw []byte // the blob column (raw bytes as pushed), or json when blob is NULL
}

// dbTag is one row of the tag table.
type dbTag struct {
	repo, tag string
	target    digest.Digest
	rawTarget string // as stored, for reports when it is not a valid digest
}

// dbModel is everything read from trow.db in one read transaction.
type dbModel struct {
	manifests map[digest.Digest]dbManifest
	badRows   []Unparsable // rows whose digest column is not a digest
	tags      []dbTag
	repos     map[string]struct{}
	// repoManifests maps repo → the manifests repo_blob_assoc associates with it.
	repoManifests map[string]map[digest.Digest]struct{}
	digest        hashtree.Digest
	loadedAt      time.Time
}

// fileStamp is what a stat says about one file.
type fileStamp struct {
	exists bool
	size   int64
	mtime  time.Time
}

// dbStamp identifies a state of trow.db and its WAL by size and mtime.
type dbStamp struct {
	db, wal fileStamp
}

// statDB stats trow.db and trow.db-wal.
func statDB(path string) dbStamp {
	st := func(p string) fileStamp {
		fi, err := os.Stat(p)
		if err != nil {
			return fileStamp{}
		}
		return fileStamp{exists: true, size: fi.Size(), mtime: fi.ModTime()}
	}
	return dbStamp{db: st(path), wal: st(path + "-wal")}
}

// dsn returns the read-only data source name for path.
func dsn(path string) string {
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "query_only(1)")
	q.Add("_pragma", "busy_timeout("+strconv.Itoa(dbBusyTimeoutMS)+")")
	q.Set("_txlock", "deferred")
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// loadDB reads trow.db at path in one short read-only transaction and
// closes it again, so that trowfs holds no connection (and no WAL read
// mark) between reloads.
func loadDB(ctx context.Context, path string) (*dbModel, error) {
	// SQLite follows symbolic links and blocks on a FIFO: open nothing but a regular file, so a
	// link planted in DATA cannot make a root trowfs read (and create -shm files) outside it.
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, &DBError{Path: path, Op: "open", Err: fmt.Errorf("not a regular file (%s)", fi.Mode().Type())}
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, &DBError{Path: path, Op: "open", Err: err}
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(ctx, dbQueryTimeout)
	defer cancel()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, &DBError{Path: path, Op: "begin", Err: err}
	}
	// A read transaction only: rolling back releases the WAL read mark.
	defer tx.Rollback() //nolint:errcheck // read-only, nothing to lose
	m, err := readModel(ctx, tx)
	if err != nil {
		return nil, &DBError{Path: path, Op: "read", Err: err}
	}
	m.loadedAt = time.Now()
	return m, nil
}

// tables returns the names of the tables in the database.
func tables(ctx context.Context, tx *sql.Tx) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	t := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		t[n] = true
	}
	return t, rows.Err()
}

// readModel runs every query inside tx (one consistent snapshot).
func readModel(ctx context.Context, tx *sql.Tx) (*dbModel, error) {
	have, err := tables(ctx, tx)
	if err != nil {
		return nil, err
	}
	for _, t := range []string{"manifest", "tag"} {
		if !have[t] {
			return nil, fmt.Errorf("%w: no table %q", ErrNotTrowDB, t)
		}
	}
	m := &dbModel{manifests: map[digest.Digest]dbManifest{}, repos: map[string]struct{}{},
		repoManifests: map[string]map[digest.Digest]struct{}{}}
	var lines []string

	err = query(ctx, tx, `SELECT digest, json, blob FROM manifest`, func(v []any) {
		name := fieldText(v[0])
		lines = append(lines, serialiseRow("manifest", v[0], hashField(v[1]), hashField(v[2])))
		d, ok := parseDigest(name)
		if !ok {
			m.badRows = append(m.badRows, Unparsable{Path: "trow.db", Digest: name, Error: "manifest row: invalid digest"})
			return
		}
		raw := fieldBytes(v[2])
		if v[2] == nil {
			raw = fieldBytes(v[1])
		}
		m.manifests[d] = dbManifest{raw: raw}
	})
	if err != nil {
		return nil, err
	}
	err = query(ctx, tx, `SELECT tag, repo, manifest_digest FROM tag`, func(v []any) {
		lines = append(lines, serialiseRow("tag", v[1], v[0], v[2]))
		t := dbTag{tag: fieldText(v[0]), repo: fieldText(v[1]), rawTarget: fieldText(v[2])}
		t.target, _ = parseDigest(t.rawTarget)
		m.tags = append(m.tags, t)
		m.repos[t.repo] = struct{}{}
	})
	if err != nil {
		return nil, err
	}
	if have["repo_blob_assoc"] {
		err = query(ctx, tx, `SELECT repo_name, blob_digest, manifest_digest FROM repo_blob_assoc`, func(v []any) {
			lines = append(lines, serialiseRow("repo_blob_assoc", v[0], v[1], v[2]))
			repo := fieldText(v[0])
			m.repos[repo] = struct{}{}
			if d, ok := parseDigest(fieldText(v[2])); ok {
				if m.repoManifests[repo] == nil {
					m.repoManifests[repo] = map[digest.Digest]struct{}{}
				}
				m.repoManifests[repo][d] = struct{}{}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	if have["manifest_blob_assoc"] {
		err = query(ctx, tx, `SELECT manifest_digest, blob_digest FROM manifest_blob_assoc`, func(v []any) {
			lines = append(lines, serialiseRow("manifest_blob_assoc", v[0], v[1]))
		})
		if err != nil {
			return nil, err
		}
	}
	m.digest = logicalDigest(lines)
	sort.Slice(m.tags, func(i, j int) bool {
		if m.tags[i].repo != m.tags[j].repo {
			return m.tags[i].repo < m.tags[j].repo
		}
		return m.tags[i].tag < m.tags[j].tag
	})
	return m, nil
}

// query runs q and calls fn with the column values of each row.
func query(ctx context.Context, tx *sql.Tx, q string, fn func([]any)) error {
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		fn(vals)
	}
	return rows.Err()
}

// logicalDigest sorts the serialised rows bytewise and hashes the header
// followed by every row.
func logicalDigest(lines []string) hashtree.Digest {
	sort.Strings(lines)
	h := sha256.New()
	h.Write([]byte(dbDigestHeader))
	for _, l := range lines {
		h.Write([]byte(l))
	}
	var d hashtree.Digest
	h.Sum(d[:0])
	return d
}

// nullField stands for SQL NULL in the serialisation ('~' is always
// percent-encoded in a value, so it cannot be confused with one).
const nullField = "~"

// hashed marks a value already reduced to "sha256:<hex>" by hashField.
type hashed string

// hashField replaces a (possibly large) column value with the sha256 of its
// bytes, keeping NULL as NULL.
func hashField(v any) any {
	if v == nil {
		return nil
	}
	return hashed(digest.FromBytes(fieldBytes(v)).String())
}

// serialiseRow writes one row: the table name, then each field, separated by
// TAB and terminated by LF. Fields are percent-encoded (see escapeField).
func serialiseRow(table string, fields ...any) string {
	var b strings.Builder
	b.WriteString(table)
	for _, f := range fields {
		b.WriteByte('\t')
		switch v := f.(type) {
		case nil:
			b.WriteString(nullField)
		case hashed:
			b.WriteString(string(v))
		default:
			b.WriteString(escapeField(fieldBytes(v)))
		}
	}
	b.WriteByte('\n')
	return b.String()
}

// escapeField keeps A-Z a-z 0-9 and . _ : / @ + - as they are and writes
// every other byte as %XX (upper-case hex).
func escapeField(p []byte) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for _, c := range p {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '/' || c == '@' || c == '+' || c == '-' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&15])
	}
	return b.String()
}

// fieldBytes converts a scanned column value to bytes: text and blobs as
// they are, integers and reals in decimal, NULL as nil.
func fieldBytes(v any) []byte {
	switch x := v.(type) {
	case nil:
		return nil
	case []byte:
		return x
	case string:
		return []byte(x)
	case int64:
		return strconv.AppendInt(nil, x, 10)
	case float64:
		return strconv.AppendFloat(nil, x, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(nil, x)
	case time.Time:
		return []byte(x.UTC().Format(time.RFC3339Nano))
	}
	return []byte(fmt.Sprint(v))
}

// fieldText is fieldBytes as a string.
func fieldText(v any) string { return string(fieldBytes(v)) }
