package bench

import (
	"fmt"
	"time"

	"github.com/trowfs/trowfs/peers"
)

// peersSim runs the in-process peer simulation (peers.Simulate: real node and sync code, gossip
// over memberlist's mock network, the data plane in memory) at several sizes, with and without
// churn, and reports the time to converge after the heal and the cost per node.
func (s *Suite) peersSim() ([]Row, error) {
	sizes := pick(s, []int{10, 25, 50}, []int{10, 25})
	var rows []Row
	for _, n := range sizes {
		for _, churn := range []int{-1, n / 10} {
			label := fmt.Sprintf("peers: %d nodes, %d churned", n, max(churn, 0))
			s.logf("   %s", label)
			res, err := peers.Simulate(peers.SimOptions{Nodes: n, Churn: churn, Seed: 1, Timeout: 3 * time.Minute})
			if err != nil {
				return nil, err
			}
			note := fmt.Sprintf("%d changes, 30%% of data-plane links down during them; same roots %.1f s after the heal; per node: %.0f syncs (%.0f after the heal), %.0f KB gossip, %.1f members seen leave; %d registers",
				res.Changes, res.RootsEqual.Seconds(), res.SyncsPerNode, res.SyncsAfterHealPerNode, res.GossipBytesPerNode/1e3, res.LeavesPerNode, res.Registers)
			row := Row{Name: label + ", time to converge after the heal", Unit: "s", Native: NA, Loopback: NA, Trowfs: res.Elapsed.Seconds(),
				Mode: "simulated", Target: "info", Note: note}
			if !res.Converged {
				row.Broken, row.Note = true, "not converged: "+res.String()
			}
			rows = append(rows, row,
				Row{Name: label + ", data-plane bytes per node", Unit: "KB", Native: NA, Loopback: NA, Trowfs: res.DataBytesPerNode / 1e3,
					Mode: "simulated", Target: "info", Note: "in + out, over the whole run"})
		}
	}
	return rows, nil
}
