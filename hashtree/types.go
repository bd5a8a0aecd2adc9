package hashtree

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Kind is the type of a tree entry.
type Kind uint8

// Entry kinds. The numeric values are part of the digest encoding.
const (
	KindFile    Kind = 1
	KindDir     Kind = 2
	KindSymlink Kind = 3
)

// String returns "file", "dir" or "symlink".
func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "dir"
	case KindSymlink:
		return "symlink"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Status is the verification state of a file.
type Status uint8

// File statuses. The numeric values are part of the snapshot encoding.
const (
	StatusUnverified Status = iota
	StatusVerified
	StatusPending
	StatusMismatch
	StatusExcluded
)

// NumStatus is the number of Status values.
const NumStatus = 5

var statusNames = [NumStatus]string{"unverified", "verified", "pending", "mismatch", "excluded"}

// String returns the lower-case name of the status.
func (s Status) String() string {
	if int(s) < NumStatus {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// ParseStatus is the inverse of Status.String.
func ParseStatus(s string) (Status, error) {
	for i, n := range statusNames {
		if n == s {
			return Status(i), nil
		}
	}
	return 0, fmt.Errorf("hashtree: unknown status %q", s)
}

// Digest is a sha256 digest.
type Digest [32]byte

const digestPrefix = "sha256:"

// String returns "sha256:<64 hex>", or "" for the zero digest.
func (d Digest) String() string {
	if d.IsZero() {
		return ""
	}
	var b [len(digestPrefix) + 64]byte
	copy(b[:], digestPrefix)
	hex.Encode(b[len(digestPrefix):], d[:])
	return string(b[:])
}

// IsZero reports whether d is the zero digest.
func (d Digest) IsZero() bool { return d == Digest{} }

// ErrInvalidDigest is returned by ParseDigest.
var ErrInvalidDigest = errors.New("hashtree: invalid digest")

// ParseDigest parses "sha256:<64 lower-case hex>". The empty string parses
// as the zero digest.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if s == "" {
		return d, nil
	}
	h, ok := strings.CutPrefix(s, digestPrefix)
	if !ok || len(h) != 64 {
		return d, fmt.Errorf("%w: %q", ErrInvalidDigest, s)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return d, fmt.Errorf("%w: %q", ErrInvalidDigest, s)
		}
	}
	if _, err := hex.Decode(d[:], []byte(h)); err != nil {
		return d, fmt.Errorf("%w: %q", ErrInvalidDigest, s)
	}
	return d, nil
}

// SumBytes returns the sha256 of b.
func SumBytes(b []byte) Digest { return sha256.Sum256(b) }

// Meta is what reconciliation compares with the backing file. It never
// enters a digest.
type Meta struct {
	Size         int64
	Mtime, Ctime int64 // unix ns
	Ino          uint64
}

// Entry is one file, symlink or directory of the tree.
type Entry struct {
	Kind Kind
	// Digest: for a file, the sha256 of its content (set by the caller);
	// for a symlink, computed by Put from Target; for a directory, the
	// subtree digest (output only).
	Digest     Digest
	Target     string // symlink target
	Status     Status // files; symlinks are always StatusVerified
	Meta       Meta
	ChangedAt  int64 // unix ns when the tree last saw this entry change
	VerifiedAt int64 // unix ns of the last content check, 0 = never
}

// Summary aggregates a subtree (for a file or symlink: just itself).
type Summary struct {
	Digest                Digest
	Files, Dirs, Symlinks int64 // Dirs excludes the directory itself
	Bytes                 int64 // sum of file Meta.Size
	ByStatus              [NumStatus]int64
	ChangedAt             int64 // max ChangedAt in the subtree, the directory itself included
	VerifiedAt            int64 // min VerifiedAt over files; 0 if any file has 0 or there are no files
}

// Change is one difference reported by Diff. A nil side is absent.
type Change struct {
	Path     string
	Old, New *Entry
}

// Sentinel errors; test with errors.Is.
var (
	ErrNotFound     = errors.New("hashtree: no such entry")
	ErrNotDir       = errors.New("hashtree: not a directory")
	ErrIsDir        = errors.New("hashtree: is a directory")
	ErrExists       = errors.New("hashtree: entry exists")
	ErrInvalidPath  = errors.New("hashtree: invalid path")
	ErrInvalidEntry = errors.New("hashtree: invalid entry")
)

// Snapshot errors; ReadSnapshot wraps one of them.
var (
	ErrCorruptSnapshot = errors.New("hashtree: corrupt snapshot")
	ErrSnapshotVersion = errors.New("hashtree: unsupported snapshot version")
)

// PathError wraps a sentinel error with the path it concerns.
type PathError struct {
	Op   string
	Path string
	Err  error
}

func (e *PathError) Error() string { return e.Op + " " + e.Path + ": " + e.Err.Error() }
func (e *PathError) Unwrap() error { return e.Err }

// ValidPath reports whether p is a valid tree path: "" (the root) or
// slash-separated non-empty names without NUL, "." or "..".
func ValidPath(p string) bool {
	if p == "" {
		return true
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			n := p[start:i]
			if n == "" || n == "." || n == ".." {
				return false
			}
			start = i + 1
		} else if p[i] == 0 {
			return false
		}
	}
	return true
}
