package peers

import (
	"net"
	"strings"
)

// rejoinLoop runs after the first join: every SyncInterval it resolves the seeds again and joins
// those that are not live members. Without it a seed that restarts (the same --peer-join on every
// node, so its only seed is itself) stays alone for good: the others list it as left and
// memberlist never dials a member that left. A seed that is down costs one refused connection per
// interval; a live cluster costs a resolution and nothing on the wire.
func (n *Node) rejoinLoop() {
	if len(n.set.Join) == 0 {
		return
	}
	for n.sleep(n.opts.SyncInterval) {
		addrs, _ := ResolveSeeds(n.ctx, net.DefaultResolver, n.set.Join)
		// The node's own member table (memberlist's Members() hands out nodes it mutates unlocked).
		live := map[string]bool{n.GossipAddr(): true}
		n.mu.Lock()
		for _, m := range n.members {
			if m.alive {
				live[m.addr] = true
			}
		}
		n.mu.Unlock()
		var missing []string
		for _, a := range addrs {
			if !live[a] {
				missing = append(missing, a)
			}
		}
		if len(missing) == 0 {
			continue
		}
		if joined, err := n.ml.Join(missing); joined > 0 {
			n.log.Info("rejoined seeds", "seeds", missing, "via", joined, "members", n.ml.NumMembers())
			n.mu.Lock()
			if strings.HasPrefix(n.waitingFor, "seeds ") {
				n.waitingFor = ""
			}
			n.mu.Unlock()
		} else {
			n.log.Debug("seeds not live members still do not answer", "seeds", missing, "err", err)
		}
	}
}
