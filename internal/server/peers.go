package server

import (
	"errors"
	"io"
	"os"

	"github.com/trowfs/trowfs/api"
	"github.com/trowfs/trowfs/internal/statedir"
	"github.com/trowfs/trowfs/peers"
	"github.com/trowfs/trowfs/peers/oci"
)

// PeerConfig turns peers on (docs/peers.md). Peers nil: off, nothing changes.
type PeerConfig struct {
	Peers *peers.Settings // validated --peer-* and --registry-* flags
	// PeerView reads the local registry (the registry model's catalog) and PeerApplier makes the
	// local registry hold what the peers agreed on (package peers/oci). While either is nil the
	// node runs, gossips and syncs its state, applies nothing and says in its status what it
	// waits for.
	PeerView    peers.ViewSource
	PeerApplier peers.Applier
	// PeerHealer heals blob files that do not match their name from the peers' registries
	// (heal.go). nil: the PeerApplier if it can (the production one can).
	PeerHealer Healer
}

// peerStateName is the peer state's file in DATA/.trowfs; peerAppliedName what the applier last
// saw replicated into the local registry (so a delete made while this node was down still reaches it).
const (
	peerStateName   = "peers.state"
	peerAppliedName = "peers.applied"
)

// startPeers starts the peer node once the mount serves.
func (s *Server) startPeers() error {
	if s.cfg.Peers == nil {
		return nil
	}
	sd, err := s.t.StateDir()
	if err != nil {
		return err
	}
	view, applier := s.cfg.PeerView, s.cfg.PeerApplier
	local := view
	if view == nil {
		// What the local registry holds, from the registry model trowfs keeps anyway (it follows
		// the model when layout detection replaces it): the node observes what the registry
		// records (a manifest whose blob file is missing is healed, not deleted everywhere), the
		// applier compares with what it serves (and pushes such a manifest again).
		view = oci.NewRecordedViewSourceFunc(s.RegistryModel)
		local = oci.NewViewSourceFunc(s.RegistryModel)
	}
	if applier == nil {
		ap, err := oci.New(oci.Options{LocalURL: s.cfg.Peers.RegistryURL, Local: local,
			Store: stateDirStore{sd, peerAppliedName}, Logger: s.log.With("peers", "apply")})
		if err != nil {
			return err
		}
		applier = ap
	}
	n, err := peers.Start(peers.Options{Settings: *s.cfg.Peers, View: view, Applier: applier,
		Store: stateDirStore{sd, peerStateName}, Logger: s.log})
	if err != nil {
		return err
	}
	s.peer.Store(n)
	healer := s.cfg.PeerHealer
	if healer == nil {
		healer, _ = applier.(Healer)
	}
	s.startHealing(healer)
	return nil
}

// stopPeers leaves the cluster and writes the peer state while DATA/.trowfs is still open.
func (s *Server) stopPeers() {
	s.stopHealing()
	if n := s.peer.Swap(nil); n != nil {
		if err := n.Stop(); err != nil {
			s.log.Warn("writing the peer state at shutdown failed", "err", err)
		}
	}
}

// notifyPeers tells the node that the registry model may have changed (it debounces).
func (s *Server) notifyPeers() {
	if n := s.peer.Load(); n != nil {
		n.Notify()
	}
}

// peerStatus is the root .state's "peers" object; nil when peers are off.
func (s *Server) peerStatus() *peers.Status {
	n := s.peer.Load()
	if n == nil {
		return nil
	}
	st := n.Status()
	return &st
}

// Peers answers GET /v1/peers.
func (b backend) Peers() (any, bool) {
	st := b.s.peerStatus()
	return st, st != nil
}

var _ api.PeersBackend = backend{}

// peerMetrics are the trowfs_peer_* metrics; they exist (at zero) when peers are off.
func (s *Server) peerMetrics() []api.Metric {
	var st peers.Status
	on := 0.0
	if p := s.peerStatus(); p != nil {
		st, on = *p, 1
	}
	live, inSync, waiting := 0.0, 0.0, 0.0
	for _, m := range st.Members {
		if m.State == "alive" {
			live++
		}
	}
	if on == 1 && st.InSync {
		inSync = 1
	}
	if st.WaitingFor != "" {
		waiting = 1
	}
	g, c := api.TypeGauge, api.TypeCounter
	return []api.Metric{
		{Name: "trowfs_peer_enabled", Help: "1 when this mount runs a peer node.", Type: g, Value: on},
		{Name: "trowfs_peer_members", Help: "Other nodes alive in the cluster.", Type: g, Value: live},
		{Name: "trowfs_peer_in_sync", Help: "1 when every live member's root equals this node's.", Type: g, Value: inSync},
		{Name: "trowfs_peer_waiting", Help: "1 while the node waits for something (see waiting_for in .state).", Type: g, Value: waiting},
		{Name: "trowfs_peer_registers", Help: "Registers of the replicated state, tombstones included.", Type: g, Value: float64(st.Registers)},
		{Name: "trowfs_peer_conflicts_total", Help: "Concurrent tag writes met in merges.", Type: c, Value: float64(st.Conflicts)},
		{Name: "trowfs_peer_rejected_total", Help: "Peer answers rejected because they did not match the peer's own tree.", Type: c, Value: float64(st.Rejected)},
		{Name: "trowfs_peer_future_stamps_total", Help: "Peer stamps refused for being more than an hour ahead of this node's clock (a broken clock).", Type: c, Value: float64(st.FutureStamps)},
		{Name: "trowfs_peer_stale_refused_total", Help: "Peer entries refused for being stamped before the purge horizon (a member cut off longer than the grace period).", Type: c, Value: float64(st.Stale)},
		{Name: "trowfs_peer_auth_failures_total", Help: "Data-plane requests refused for a missing, bad, stale or replayed MAC.", Type: c, Value: float64(st.AuthFailures)},
		{Name: "trowfs_peer_syncs_total", Help: "Comparisons run with peers.", Type: c, Value: float64(st.Syncs)},
		{Name: "trowfs_peer_tombstones_purged_total", Help: "Tombstones purged after every member had them and the grace period passed.", Type: c, Value: float64(st.Purged)},
		{Name: "trowfs_peer_bytes_total", Help: "Data-plane bytes exchanged with peers.", Type: c, Value: float64(st.BytesIn), Labels: map[string]string{"direction": "in"}},
		{Name: "trowfs_peer_bytes_total", Help: "Data-plane bytes exchanged with peers.", Type: c, Value: float64(st.BytesOut), Labels: map[string]string{"direction": "out"}},
	}
}

// stateDirStore keeps the peer state in DATA/.trowfs without following links (package statedir).
type stateDirStore struct {
	d    *statedir.Dir
	name string
}

func (st stateDirStore) Load() ([]byte, error) {
	f, err := st.d.OpenRead(st.name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, os.ErrNotExist
		}
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<30))
}

func (st stateDirStore) Save(b []byte) error { return st.d.WriteFile(st.name, b) }
