// Package registry turns the set of files the mount tracks into knowledge
// about the container registry stored in them: which layout it is, which
// repositories, tags and manifests exist, which blobs are referenced, and
// which are dangling, missing or corrupt.
//
// It knows five layouts (see Layout): Trow's file-only era (trow-files),
// Trow's SQLite era (trow-sqlite), the CNCF distribution registry's
// filesystem driver (distribution), OCI image layouts, alone or one per
// repository (oci-layout), and anything else (plain, no registry facts).
//
// The mount feeds a Registry with Reset after a scan and with Update and
// Remove as files change. Those calls only record the change: the small
// metadata files they name (tag files, links, index.json) are read and the
// consistency report is recomputed lazily, the next time Report or
// RepoReport is called, from the in-memory model and a cache of parsed
// manifests (package cache). Nothing here rescans the data directory.
//
// The package must never write to the data directory, never hold a lock on
// Trow's SQLite database beyond one short read transaction, never import
// FUSE, and never panic on bad input: anything it cannot parse becomes an
// "unparsable" finding in the report.
//
// # Locking
//
// Registry.mu guards the model (tracked files, parsed metadata, the SQLite
// model, the cached report and the version counter). It is never held
// during file or database I/O. Registry.computeMu serialises report
// computations so that two callers of Report do not duplicate work; it is
// always taken before mu. Registry.dbMu guards the debounce timer of the
// SQLite reload and is never held while mu is taken.
package registry
