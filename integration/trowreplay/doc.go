// Package trowreplay replays, from Go, the exact file operations Trow performs on its data
// directory in both of its eras (see shared/REFERENCE.md section 1): the files era (v0.3 to
// v0.6: scratch uploads, copy or rename into blobs/sha256/<hex>, tag files in both line orders)
// and the SQLite era (v0.7+: trow.db in WAL mode, uploads/ renamed into a flat blobs/<alg>:<hex>,
// the proxy's O_EXCL temp file, the readiness file). It also builds deterministic images and
// gives the test helpers the integration tests share (a mounted server, rescan comparison,
// content listings, Trow's catalog walk).
//
// It exists for tests only. It must never be imported by trowfs itself, never write anywhere but
// the directory it is given, and never hide an error of an operation it replays: Trow's own
// behaviour on a failed operation (a panic on a failed rename) is what the tests check against.
package trowreplay
