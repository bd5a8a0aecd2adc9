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
	if testing.Short() {
		t.Skip("scale simulation: not with -short")
	}
	nodes := 25
	if v := os.Getenv("PEERS_SIM_NODES"); v != "" {
		nodes, _ = strconv.Atoi(v)
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
