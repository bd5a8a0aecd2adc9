// Package oci is the registry side of peers: it makes the local registry hold the replicated state
// by pushing through the registry's own OCI distribution API (never by placing files in DATA: Trow
// v0.7+ serves only what trow.db records), it converts the registry model's Catalog into the
// replicated View, and it heals a damaged blob file from a peer's registry.
//
// Every byte taken from a peer is verified against its digest (and, for blobs, the size in the
// referencing descriptor) before the local registry sees it, so a registry that never checks what
// it is given (Trow) can never store a wrong byte because of a peer. A source that serves wrong
// bytes gets nothing accepted, is counted and backed off, and the content is taken from the next.
//
// Order of a push: every blob a manifest references (config and layers) and, recursively, every
// child manifest of an index, then the manifest by digest, and only then the tags that point at
// it: a tag never becomes visible before everything it needs. Deletes are OCI DELETEs, applied only
// to what this Applier saw replicated before and the replicated state no longer holds.
//
// Wiring (server side):
//
//	ap, err := oci.New(oci.Options{
//		LocalURL: cfg.RegistryURL,                         // --registry-url
//		Local:    oci.NewViewSourceFunc(srv.RegistryModel), // what the local registry holds
//		Store:    peers.FileStore{Path: ".../.trowfs/peers/applied"},
//	})
//	node, err := peers.Start(peers.Options{View: oci.NewViewSourceFunc(srv.RegistryModel), Applier: ap, ...})
//
// ap.Stats() is the status for .state and metrics; ap.Heal repairs a mismatched blob file.
//
// The package never writes into DATA except through Heal, which replaces one file beneath DATA
// without following symbolic links.
package oci
