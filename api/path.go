package api

import (
	"fmt"
	"path"
	"strings"
)

// MaxPathLen bounds the length of a path parameter, in bytes (Linux PATH_MAX).
const MaxPathLen = 4096

// MaxNameLen bounds the length of the "after" parameter (Linux NAME_MAX).
const MaxNameLen = 255

// PathError reports a request parameter rejected before it reached the
// backend. It matches [ErrBadPath] with errors.Is.
type PathError struct {
	Param  string // query parameter name
	Value  string // the value as received (after URL decoding)
	Reason string
}

func (e *PathError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Param, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrBadPath) true for a *PathError.
func (e *PathError) Is(target error) bool { return target == ErrBadPath }

// CleanPath validates a path parameter and returns it in the form the
// Backend receives: relative to the data root, "/"-separated, clean, "" for
// the root. A leading "/" is accepted and means the data root, so "/a/b" and
// "a/b" are the same path. Rejected, with a *PathError: NUL bytes, any ".."
// element (even one that cleaning would cancel out, such as "a/../b") and
// paths longer than MaxPathLen. The value must already be
// URL-decoded once (as net/url does); "%2e%2e" arriving here encoded twice is
// a literal file name, not a parent reference.
func CleanPath(raw string) (string, error) {
	bad := func(reason string) (string, error) {
		return "", &PathError{Param: "path", Value: raw, Reason: reason}
	}
	if len(raw) > MaxPathLen {
		return bad(fmt.Sprintf("longer than %d bytes", MaxPathLen))
	}
	if strings.IndexByte(raw, 0) >= 0 {
		return bad("contains a NUL byte")
	}
	for elem := range strings.SplitSeq(raw, "/") {
		if elem == ".." {
			return bad(`contains a ".." element`)
		}
	}
	p := path.Clean("/" + raw) // rooted: Clean can never climb above "/"
	p = strings.TrimPrefix(p, "/")
	// Defence in depth: the checks above make these impossible.
	if p == ".." || strings.HasPrefix(p, "../") || path.IsAbs(p) {
		return bad("escapes the data root")
	}
	return p, nil
}

// checkName validates the "after" parameter of /v1/tree: a single directory
// entry name (or "" for the first page).
func checkName(param, raw string) error {
	bad := func(reason string) error {
		return &PathError{Param: param, Value: raw, Reason: reason}
	}
	switch {
	case len(raw) > MaxNameLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxNameLen))
	case strings.IndexByte(raw, 0) >= 0:
		return bad("contains a NUL byte")
	case strings.IndexByte(raw, '/') >= 0:
		return bad("contains a slash")
	}
	return nil
}
