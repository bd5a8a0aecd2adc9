package api

import (
	"encoding/base64"
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

// EncodeAfter returns the form of an entry name that the "after" parameter of
// /v1/tree accepts and that "next" carries: the name itself when it is valid
// UTF-8, otherwise "/" followed by the standard base64 of its bytes (a name
// never contains "/", so the two forms cannot be confused).
func EncodeAfter(name string) string {
	if name == "" || !needsB64(name) {
		return name
	}
	return "/" + base64.StdEncoding.EncodeToString([]byte(name))
}

// DecodeAfter is the inverse of [EncodeAfter]: it validates an "after" value
// and returns the entry name it stands for.
func DecodeAfter(raw string) (string, error) {
	name := raw
	if b64, ok := strings.CutPrefix(raw, "/"); ok {
		b, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil || len(b) == 0 {
			return "", &PathError{Param: "after", Value: raw, Reason: `a value starting with "/" must be "/" and the base64 of a name`}
		}
		name = string(b)
	}
	if err := checkName("after", name); err != nil {
		return "", err
	}
	return name, nil
}

// pathFromQuery returns the raw "path" parameter, or the bytes of "path_b64"
// (standard base64) when that is given instead; both at once is an error.
func pathFromQuery(get func(string) string, has func(string) bool) (string, error) {
	if !has("path_b64") {
		return get("path"), nil
	}
	if has("path") {
		return "", &PathError{Param: "path_b64", Value: get("path_b64"), Reason: "give path or path_b64, not both"}
	}
	b, err := base64.StdEncoding.Strict().DecodeString(get("path_b64"))
	if err != nil {
		return "", &PathError{Param: "path_b64", Value: get("path_b64"), Reason: "not standard base64"}
	}
	return string(b), nil
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
