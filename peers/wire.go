package peers

// The data plane's bodies are crdt's wire encodings (docs/peers.md, "Encoding"): EncodePaths,
// EncodeSummaries, EncodeDigests, EncodeEntries. These bound what one request or answer may hold.
const (
	maxBody  = 16 << 20
	maxPaths = 4096  // paths per summaries request
	maxKeys  = 16384 // key hashes per entries request, entries per offer
)
