package peers

import (
	"io"
	"log"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/trowfs/trowfs/peers/crdt"
)

// startSeeded starts one node on 127.0.0.1 whose only seed is seed ("" for its own gossip address).
func startSeeded(t *testing.T, name, seed string) *Node {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if seed == "" {
		seed = "127.0.0.1:" + strconv.Itoa(nt.GetAutoBindPort())
	}
	reg := &registry{v: crdt.View{}}
	s := Settings{Name: name, BindHost: "127.0.0.1", BindPort: nt.GetAutoBindPort(), Key: testKey, Join: []string{seed},
		RegistryURL: "http://" + name + ".invalid", RegistryAdvertise: "http://" + name + ".invalid", TombstoneGrace: DefaultTombstoneGrace}
	n, err := Start(Options{Settings: s, View: reg, Applier: reg, Store: FileStore{Path: filepath.Join(t.TempDir(), "state")},
		Transport: nt, Listener: lis, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("stopping %s: %v", name, err)
		}
	})
	return n
}

// The first node of a cluster is often given its own address as a seed (the same flags on every
// node; a headless Service that resolves to every pod, this one included). Once another node has
// joined it, it waits for no seed any more.
func TestSeedListingOnlyItselfStopsWaitingOnceJoined(t *testing.T) {
	a := startSeeded(t, "a", "")
	waitFor(t, 5*time.Second, "a says it waits for another node", func() bool {
		return strings.Contains(a.Status().WaitingFor, "seeds")
	})
	startSeeded(t, "b", a.GossipAddr())
	waitFor(t, 10*time.Second, "a no longer waits for seeds once b joined it", func() bool {
		st := a.Status()
		return len(st.Members) == 1 && st.WaitingFor == ""
	})
}
