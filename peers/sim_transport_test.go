package peers

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// MockTransport delivers a packet by handing it to the destination's unbuffered channel: to a
// node that has stopped reading (stopped, or stopping) the send would never return, and the
// sender's probe or gossip loop would hang for the rest of the simulation. The simulation's
// transport loses such a packet, as UDP would, and fails such a dial.
func TestSimTransportLosesPacketsToStoppedNode(t *testing.T) {
	net := &memberlist.MockNetwork{}
	from, stopped, gone := net.NewTransport("a"), net.NewTransport("b"), &goneSet{addrs: map[string]bool{}}
	tr := simTransport{countingTransport{from, &atomic.Int64{}}, gone}
	ip, port, err := stopped.FinalAdvertiseAddr("", 0)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("%s:%d", ip, port)
	within := func(what string, d time.Duration, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { f(); close(done) }()
		select {
		case <-done:
		case <-time.After(d):
			t.Fatalf("%s to a node that reads nothing did not return within %s", what, d)
		}
	}
	within("a packet", 3*time.Second, func() { _, _ = tr.WriteTo([]byte("ping"), addr) })
	within("a dial", 3*time.Second, func() { _, _ = tr.DialTimeout(addr, 200*time.Millisecond) })
	gone.add(addr)
	within("a packet to a stopped incarnation", 100*time.Millisecond, func() { _, _ = tr.WriteTo([]byte("ping"), addr) })
	if _, err := tr.DialTimeout(addr, time.Second); err == nil {
		t.Fatal("a dial to a stopped incarnation succeeded")
	}
}
