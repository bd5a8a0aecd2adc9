package integration

// The peer fault that no other test covers with whole processes: a node's trowfs killed with
// SIGKILL in the middle of a transfer (its registry pushing onto the mount when the mount dies),
// then restarted. The others (partition, slow and lying peers, a node restarted after missing
// changes, a refusing registry) are covered in-process by peers/faults_test.go,
// peers/tombstone_test.go and peers/oci/apply_test.go, and with real registries by
// peers_e2e_test.go and peers_apply_test.go.

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/trowfs/trowfs/integration/regtest"
	"github.com/trowfs/trowfs/integration/trowfsbin"
)

func TestPeersNodeKilledMidTransferConverges(t *testing.T) {
	trowfsbin.Require(t)
	regtest.Tools(t)
	nodes, keyFile := newE2ENodes(t, "a", "b", "c")
	a, b := nodes[0], nodes[1]
	seed := "127.0.0.1:" + strconv.Itoa(a.peerPort)
	for _, n := range nodes {
		n.args = []string{"--layout", "distribution", "--listen", "unix:" + n.sock,
			"--peer-name", n.name, "--peer-bind", "127.0.0.1:" + strconv.Itoa(n.peerPort), "--peer-join", seed,
			"--peer-key-file", keyFile, "--registry-url", "http://" + n.regAddr()}
		n.mount(t)
		n.startRegistry(t)
	}
	waitAll(t, "three members in sync on an empty cluster", nodes, func(n *e2eNode) bool { return converged(n.state(t)) })

	// An image large enough that B is still uploading when it is killed: 4 layers of 12 MB.
	img, err := random.Image(12<<20, 4)
	if err != nil {
		t.Fatal(err)
	}
	d := pushImage(t, a.regAddr(), "repo/big:v1", img)
	// Kill B's trowfs as soon as its registry has an upload in progress on the mount.
	uploads := filepath.Join(b.data, "docker/registry/v2/repositories/repo/big/_uploads")
	deadline := time.Now().Add(convergeTimeout)
	for {
		if es, _ := os.ReadDir(uploads); len(es) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never started an upload of repo/big; stderr:\n%s", lastLines(b.proc.Stderr(), 30))
		}
		time.Sleep(2 * time.Millisecond)
	}
	served := tagDigest(t, b.regAddr(), "repo/big:v1") == d
	if err := b.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.proc.WaitExit(10 * time.Second); !ok {
		t.Fatal("trowfs did not die of SIGKILL")
	}
	t.Logf("B killed mid-transfer (tag already served: %v)", served)
	b.stopRegistry(t) // it was writing onto the dead mount
	if err := trowfsbin.Detach(b.mnt, true); err != nil {
		t.Fatalf("detaching B's dead mount: %v", err)
	}

	// B comes back: the transfer is redone and every node ends converged, B serving the whole
	// image byte-identical and its blob files all equal to their names (converged checks the
	// registry report: nothing missing or mismatched).
	b.mount(t)
	b.startRegistry(t)
	waitAll(t, "B serves repo/big:v1 after its restart", nodes[1:2], func(n *e2eNode) bool { return tagDigest(t, n.regAddr(), "repo/big:v1") == d })
	waitAll(t, "converged after the kill", nodes, func(n *e2eNode) bool { return converged(n.state(t)) })
	for _, n := range nodes[1:] {
		sameImage(t, n.regAddr(), "repo/big", img)
	}
	for _, n := range nodes {
		n.unmount(t)
		v := trowfsbin.Run(t, "verify", n.data, "--progress", "none")
		if v.Code != 0 {
			t.Errorf("trowfs verify on %s after the kill: exit %d\n%s%s", n.name, v.Code, v.Stdout, v.Stderr)
		}
	}
}
