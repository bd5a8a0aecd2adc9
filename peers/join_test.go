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
func startSeeded(t *testing.T, name, seed string) *Node { return startSeededOn(t, name, seed, 0) }

// startSeededOn is startSeeded on a given gossip port (0: any); the node is stopped at cleanup
// unless the test stopped it.
func startSeededOn(t *testing.T, name, seed string, port int) *Node {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: port, Logger: log.New(io.Discard, "", 0)})
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
		Transport: nt, Listener: lis, Logger: slog.New(slog.DiscardHandler), SyncInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n.ctx.Err() != nil {
			return // stopped by the test
		}
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

// The seed restarts (same name and address, its only seed itself, as every node is configured):
// the members that stayed join it again, so the cluster is whole without an operator.
func TestRestartedSeedIsRejoinedByTheOthers(t *testing.T) {
	a := startSeeded(t, "a", "")
	seed := a.GossipAddr()
	b := startSeeded(t, "b", seed)
	waitFor(t, 10*time.Second, "a and b see each other", func() bool { return len(a.Status().Members) == 1 && len(b.Status().Members) == 1 })
	port, _ := strconv.Atoi(seed[strings.LastIndexByte(seed, ':')+1:])
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	a2 := startSeededOn(t, "a", "", port)
	waitFor(t, 15*time.Second, "the restarted seed and b see each other alive", func() bool {
		sa, sb := a2.Status(), b.Status()
		return len(sa.Members) == 1 && sa.Members[0].State == "alive" && sa.WaitingFor == "" &&
			len(sb.Members) == 1 && sb.Members[0].State == "alive"
	})
}
