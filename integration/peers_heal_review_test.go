package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// TestPeersHealARepairedBlobThatRotsAgain: a repaired blob that rots again is a mismatch again
// (the repaired finding does not hide it), is healed again, and is repaired again; the healed
// counter counts both heals and the file ends right, through the mount and B's registry.
func TestPeersHealARepairedBlobThatRotsAgain(t *testing.T) {
	a, b := healCluster(t)
	img := randomImage(t)
	dg := pushImage(t, a.regAddr(), "repo/app:v1", img)
	waitAll(t, "B serves repo/app:v1", []*e2eNode{b}, func(n *e2eNode) bool { return tagDigest(t, n.regAddr(), "repo/app:v1") == dg })
	waitAll(t, "in sync after the push", []*e2eNode{a, b}, func(n *e2eNode) bool { return oneMemberInSync(n.state(t)) })
	rel, d := layerBlob(t, img)
	before := heals(t, b, "healed")
	for round := 1; round <= 2; round++ {
		flipByte(t, filepath.Join(b.data, rel))
		verifyUntil(t, b, "the damaged blob is found", func() bool {
			_, bad := findingAt(t, b, rel)["mismatch"]
			return bad || heals(t, b, "healed") >= before+float64(round)
		})
		waitAll(t, "the heal is counted", []*e2eNode{b}, func(n *e2eNode) bool { return heals(t, n, "healed") >= before+float64(round) })
		f := waitRepaired(t, b, rel)
		if f.RepairedFrom != "a" || f.Expected != d.String() || f.Actual == d.String() {
			t.Fatalf("round %d: repaired finding %+v", round, f)
		}
		if got := sha256File(t, filepath.Join(b.mnt, rel)); got != d.Hex {
			t.Fatalf("round %d: the blob reads %s through B's mount, want %s", round, got, d.Hex)
		}
	}
	if after := heals(t, b, "healed"); after != before+2 {
		t.Fatalf("healed went from %v to %v, want two more", before, after)
	}
	if got, err := pullLayer(t, b.regAddr(), "repo/app", d); err != nil || got != d.Hex {
		t.Fatalf("pull of the layer through B's registry: %s, %v", got, err)
	}
	if code, body := unixGet(t, b.sock)("/v1/state"); code != 200 || !strings.Contains(body, `"repaired_from": "a"`) {
		t.Fatalf("GET /v1/state on B: %d, no repaired_from a", code)
	}
}
