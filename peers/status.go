package peers

import (
	"encoding/hex"
	"sort"
	"time"

	"github.com/trowfs/trowfs/peers/crdt"
)

// Status is the root .state's "peers" object and GET /v1/peers (docs/peers.md).
type Status struct {
	Name         string         `json:"name"`
	Root         string         `json:"root"`
	Registers    int            `json:"registers"`
	Members      []MemberStatus `json:"members"`
	InSync       bool           `json:"in_sync"`
	LastFullSync *time.Time     `json:"last_full_sync,omitempty"`
	Conflicts    uint64         `json:"conflicts"`
	Rejected     uint64         `json:"rejected"`
	// FutureStamps counts stamps refused for being more than crdt.MaxDrift ahead of this node's
	// clock; FutureNode is the node that stamped the latest of them (its clock is broken).
	FutureStamps uint64 `json:"future_stamps"`
	FutureNode   string `json:"future_node,omitempty"`
	// Stale counts entries refused for being stamped before the purge horizon (a node cut off for
	// longer than the grace period offering what the others deleted and purged).
	Stale        uint64 `json:"stale_refused"`
	AuthFailures uint64 `json:"auth_failures"`
	Syncs        uint64 `json:"syncs"`
	Purged       int    `json:"tombstones_purged"`
	BytesIn      int64  `json:"bytes_in"`
	BytesOut     int64  `json:"bytes_out"`
	WaitingFor   string `json:"waiting_for,omitempty"`
	Resyncing    bool   `json:"resyncing,omitempty"`
}

// MemberStatus is one other node as this one sees it.
type MemberStatus struct {
	Name         string     `json:"name"`
	Address      string     `json:"address"`
	DataAddress  string     `json:"data_address,omitempty"`
	Registry     string     `json:"registry,omitempty"`
	Root         string     `json:"root,omitempty"`
	State        string     `json:"state"` // alive|left|incompatible
	InSync       bool       `json:"in_sync"`
	LastExchange *time.Time `json:"last_exchange,omitempty"`
	LastError    string     `json:"last_error,omitempty"`
	BytesIn      int64      `json:"bytes_in"`
	BytesOut     int64      `json:"bytes_out"`
}

func hexDigest(d crdt.Digest) string { return "sha256:" + hex.EncodeToString(d[:]) }

func timeMs(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// WaitingRegistryView is waiting_for while the node has no ViewSource or no Applier: it gossips
// and syncs its state but cannot see or change the local registry.
const WaitingRegistryView = "registry view"

// Status returns the node's current view of the cluster.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	root := n.rep.Root()
	st := Status{Name: n.set.Name, Root: hexDigest(root), Registers: n.rep.Len(), InSync: true, Conflicts: n.rep.Conflicts(),
		Rejected: n.rejected, AuthFailures: n.authFail, Syncs: n.syncs, Purged: n.purged, WaitingFor: n.waitingFor, Resyncing: n.resyncing,
		Members: []MemberStatus{}}
	if n.opts.View == nil || n.opts.Applier == nil {
		st.WaitingFor = WaitingRegistryView
	}
	st.Stale = n.rep.Stale()
	if k, last := n.rep.Drift(); k > 0 {
		st.FutureStamps, st.FutureNode = k, last.Node
	}
	if !n.lastFull.IsZero() {
		t := n.lastFull.UTC()
		st.LastFullSync = &t
	}
	for _, b := range n.bytesIn {
		st.BytesIn += b
	}
	for _, b := range n.bytesOut {
		st.BytesOut += b
	}
	for _, m := range n.members {
		ms := MemberStatus{Name: m.name, Address: m.addr, DataAddress: m.meta.DataAddr, Registry: m.meta.RegistryURL,
			Root: hexDigest(m.meta.Root), State: "alive", LastError: m.lastErr, BytesIn: n.bytesIn[m.name], BytesOut: n.bytesOut[m.name]}
		switch {
		case !m.alive:
			ms.State = "left"
		case m.metaErr != "":
			ms.State, ms.LastError, ms.Root = "incompatible", m.metaErr, ""
		}
		ms.InSync = ms.State == "alive" && m.meta.Root == root
		if ms.State == "alive" && !ms.InSync {
			st.InSync = false
		}
		if !m.lastExchange.IsZero() {
			t := m.lastExchange.UTC()
			ms.LastExchange = &t
		}
		st.Members = append(st.Members, ms)
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	return st
}
