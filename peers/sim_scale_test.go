package peers

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// The simulation at scale: 25 nodes (with churn and partitions) converge well within CI time; 50
// nodes run when PEERS_SIM50 is set (make bench reports them too).
func TestSimulatedClusterConvergesAtScale(t *testing.T) {
	// Opt-in: a measurement, not a CI gate. Under -race on 2 shared cores 25 nodes converge (10 s
	// after the heal, 2026-12-07) but some live members are still declared dead (about 2 per node),
	// and 50 nodes do not even all join within 3 min, with the simulation's probe timings and with the
	// shorter ones it had before. Without -race, 50 nodes converge in seconds (BENCHMARKS.md, Peers).
	// CI runs TestSimulatedClusterConverges (10 nodes) and the three-registry end-to-end test.
	v := os.Getenv("PEERS_SIM_NODES")
	if v == "" {
		t.Skip("scale simulation: set PEERS_SIM_NODES=25 (or 50) to run it")
	}
	nodes, perr := strconv.Atoi(v)
	if perr != nil || nodes < 2 {
		t.Fatalf("PEERS_SIM_NODES=%q: want a node count >= 2", v)
	}
	churn := 0
	if os.Getenv("PEERS_SIM_NOCHURN") != "" {
		churn = -1
	}
	res, err := Simulate(SimOptions{Nodes: nodes, Churn: churn, Seed: 1, Timeout: 3 * time.Minute, Logger: simLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if !res.Converged {
		t.Fatalf("not converged: %s", res)
	}
}
