package integration

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestPeersHealAtStartFromTheSnapshot: B found a blob bad while no peer was alive and was
// unmounted with the mismatch in its snapshot. When B mounts again (nothing is re-verified: the
// file did not change since), the heal is queued from the loaded tree at once: under
// --on-mismatch=eio the blob is refused from the first open, and it is healed from A without any
// new verification, the finding repaired naming A.
func TestPeersHealAtStartFromTheSnapshot(t *testing.T) {
	a, b := healCluster(t, "--on-mismatch", "eio")
	img := randomImage(t)
	dg := pushImage(t, a.regAddr(), "repo/app:v1", img)
	waitAll(t, "B serves repo/app:v1", []*e2eNode{b}, func(n *e2eNode) bool { return tagDigest(t, n.regAddr(), "repo/app:v1") == dg })
	waitAll(t, "in sync after the push", []*e2eNode{a, b}, func(n *e2eNode) bool { return oneMemberInSync(n.state(t)) })
	rel, d := layerBlob(t, img)

	a.unmount(t)
	waitAll(t, "B sees A gone", []*e2eNode{b}, func(n *e2eNode) bool {
		s := n.state(t)
		return s.Peers != nil && len(s.Peers.Members) == 1 && s.Peers.Members[0].State != "alive"
	})
	flipByte(t, filepath.Join(b.data, rel))
	verifyUntil(t, b, "the damaged blob is found", func() bool {
		_, bad := findingAt(t, b, rel)["mismatch"]
		return bad
	})
	b.unmount(t) // the snapshot holds the mismatch

	// B comes back first, alone: refused from the start.
	b.mount(t)
	if _, err := os.ReadFile(filepath.Join(b.mnt, rel)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("the bad blob after B's remount: %v, want EIO", err)
	}
	b.startRegistry(t)
	// A comes back: B heals from it with no verification asked for.
	a.mount(t)
	a.startRegistry(t)
	start := time.Now()
	f := waitRepaired(t, b, rel)
	t.Logf("healed %v after A came back", time.Since(start))
	if f.RepairedFrom != "a" || f.Expected != d.String() || f.Actual == "" || f.Actual == d.String() {
		t.Fatalf("repaired finding after the remount: %+v", f)
	}
	waitAll(t, "reads of the healed blob succeed", []*e2eNode{b}, func(n *e2eNode) bool {
		_, err := os.ReadFile(filepath.Join(n.mnt, rel))
		return err == nil
	})
	if got := sha256File(t, filepath.Join(b.mnt, rel)); got != d.Hex {
		t.Fatalf("the healed blob reads %s through B's mount, want %s", got, d.Hex)
	}
	if got, err := pullLayer(t, b.regAddr(), "repo/app", d); err != nil || got != d.Hex {
		t.Fatalf("pull of the healed layer through B's registry: %s, %v", got, err)
	}
}
