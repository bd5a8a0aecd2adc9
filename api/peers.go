package api

import "net/http"

// PeersBackend is implemented by a Backend that can run peers (docs/peers.md).
type PeersBackend interface {
	// Peers returns the peer status (JSON-marshalable), or ok=false when peers are off.
	Peers() (status any, ok bool)
}

// getPeers answers GET /v1/peers: the root .state's "peers" object.
func (s *Server) getPeers(w http.ResponseWriter, r *http.Request) {
	pb, ok := s.backend.(PeersBackend)
	var st any
	if ok {
		st, ok = pb.Peers()
	}
	if !ok {
		s.writeError(w, r, http.StatusNotFound, "peers are off (no --peer-bind)")
		return
	}
	s.writeJSON(w, r, http.StatusOK, st)
}
