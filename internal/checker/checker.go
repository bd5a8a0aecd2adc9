// Package checker is the blob-name rule, "a blob's content must equal its name", in one place:
// the hashing of a file for it (sha256 always, the name's own algorithm too when it is another,
// in one pass) and the comparison. The tracker's hash after a write, the blob checks after a
// rename, the mount-time reconcile, the scrub, POST /v1/verify and the offline `trowfs verify`
// all decide through CheckName, so they cannot disagree about what a mismatch is.
package checker

import (
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/hashtree"
)

// MismatchDetail is the detail of every mismatch finding.
const MismatchDetail = "blob content does not match its name"

// Sums are the digests one pass over a file's content produced.
type Sums struct {
	SHA256 hashtree.Digest // always
	Other  digest.Digest   // the blob name's algorithm when it is not sha256 (sha512); "" otherwise
}

// bufs holds 1 MiB read buffers: hashing reads in large requests (io.Copy's 32 KiB ones cost a
// measurable share of a scrub's time).
var bufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// onlyReader hides an *os.File's WriterTo so io.CopyBuffer uses our buffer.
type onlyReader struct{ io.Reader }

// Sum hashes r with sha256 and, when want (a blob name's digest, or "") asks for sha512, with
// that too, in one pass. It returns the bytes read.
func Sum(r io.Reader, want digest.Digest) (Sums, int64, error) {
	var s Sums
	h := sha256.New()
	var other hash.Hash
	w := io.Writer(h)
	if want != "" && want.Algorithm() == digest.SHA512 {
		other = sha512.New()
		w = io.MultiWriter(h, other)
	}
	bp := bufs.Get().(*[]byte)
	n, err := io.CopyBuffer(w, onlyReader{r}, *bp)
	bufs.Put(bp)
	if err != nil {
		return s, n, err
	}
	copy(s.SHA256[:], h.Sum(nil))
	if other != nil {
		s.Other = digest.NewDigestFromBytes(digest.SHA512, other.Sum(nil))
	}
	return s, n, nil
}

// Verdict is the outcome of the blob-name rule for one file.
type Verdict int

const (
	// Match: the content's digest equals the name's.
	Match Verdict = iota
	// Mismatch: it does not; the file is corrupt or misnamed.
	Mismatch
	// Unchecked: the name's algorithm was not hashed (only sha256 is known): hash again with
	// the name given to Sum.
	Unchecked
)

// NameCheck is the result of CheckName.
type NameCheck struct {
	Verdict  Verdict
	Expected string // the name's digest
	Actual   string // the content's digest in the name's algorithm ("" when Unchecked)
}

// CheckName applies the rule to a file whose name promises want (from the layout's BlobDigest)
// and whose content hashed to s.
func CheckName(want digest.Digest, s Sums) NameCheck {
	c := NameCheck{Expected: want.String()}
	switch want.Algorithm() {
	case digest.SHA256:
		c.Actual = s.SHA256.String() // "" for a file never hashed: a mismatch
	default:
		if s.Other == "" || s.Other.Algorithm() != want.Algorithm() {
			c.Verdict = Unchecked
			return c
		}
		c.Actual = s.Other.String()
	}
	if c.Actual != c.Expected {
		c.Verdict = Mismatch
	}
	return c
}
