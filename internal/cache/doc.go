// Package cache is a small, typed wrapper around ristretto/v2 for values that
// are immutable once computed (for example a manifest parsed from a blob whose
// name is its digest). It counts its own hits and misses so that callers can
// report a hit ratio without enabling ristretto's global metrics.
//
// The cache must never be used for values that can change under the same key:
// ristretto may return an entry long after it was set, and Set is
// asynchronous (a value may be dropped or become visible only later). A miss
// is therefore always legal and callers must be able to recompute the value.
package cache
