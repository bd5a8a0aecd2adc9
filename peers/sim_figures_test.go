package peers

import (
	"os"
	"testing"
	"time"
)

// The convergence figures of docs/peers.md and BENCHMARKS.md (also printed by make bench):
// PEERS_SIM_FIGURES=1 go test ./peers/ -run TestSimulationFigures -v.
func TestSimulationFigures(t *testing.T) {
	if os.Getenv("PEERS_SIM_FIGURES") == "" {
		t.Skip("set PEERS_SIM_FIGURES=1")
	}
	for _, n := range []int{10, 25, 50} {
		for _, churn := range []int{-1, n / 10} {
			res, err := Simulate(SimOptions{Nodes: n, Churn: churn, Seed: 1, Timeout: 3 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(res)
		}
	}
}
