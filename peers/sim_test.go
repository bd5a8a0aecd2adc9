package peers

import (
	"log/slog"
	"os"
	"testing"
	"time"
)

// Ten nodes over memberlist's mock network, the real node and sync code, changes made while a
// third of the data-plane links are down and two nodes are away: once healed, every node ends
// with the same root, and finding the differences stays cheap.
func TestSimulatedClusterConverges(t *testing.T) {
	res, err := Simulate(SimOptions{Nodes: 10, Changes: 40, Partition: 0.3, Churn: 2, Seed: 1, Timeout: time.Minute, Logger: simLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if !res.Converged {
		t.Fatalf("not converged: %s", res)
	}
	if res.Registers == 0 {
		t.Fatal("nothing was replicated")
	}
}

func simLogger(t *testing.T) *slog.Logger {
	if os.Getenv("PEERS_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
