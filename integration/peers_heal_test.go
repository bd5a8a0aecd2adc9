package integration

// Healing end to end (docs/peers.md, "Healing"): two trowfs mounts, each under its own
// distribution v3.1.2 registry, joined as peers through the real binary. A layer blob's file (and
// the manifest's) is damaged in B's DATA behind the mount (same size, one byte flipped); a verification run finds
// it; B fetches the blob from A's registry, verifies it and renames it over the bad file. The
// finding becomes "repaired" naming A, the file holds its name's bytes again, and B's registry
// serves the right bytes. With --on-mismatch=eio and no live peer, reads of the bad blob fail
// with EIO until a peer joins and the blob is healed.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trowfs/trowfs/integration/regtest"
	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// healCluster starts nodes a and b (b with extra mount flags) and returns them once both are in
// sync on an empty cluster.
func healCluster(t *testing.T, bFlags ...string) (a, b *e2eNode) {
	t.Helper()
	trowfsbin.Require(t)
	regtest.Tools(t)
	nodes, keyFile := newE2ENodes(t, "a", "b")
	a, b = nodes[0], nodes[1]
	seeds := "127.0.0.1:" + strconv.Itoa(a.peerPort) + ",127.0.0.1:" + strconv.Itoa(b.peerPort)
	for _, n := range nodes {
		n.args = []string{"--layout", "distribution", "--listen", "unix:" + n.sock,
			"--peer-name", n.name, "--peer-bind", "127.0.0.1:" + strconv.Itoa(n.peerPort), "--peer-join", seeds,
			"--peer-key-file", keyFile, "--registry-url", "http://" + n.regAddr()}
		if n == b {
			n.args = append(n.args, bFlags...)
		}
		n.mount(t)
		n.startRegistry(t)
	}
	waitAll(t, "two members in sync", nodes, func(n *e2eNode) bool { return oneMemberInSync(n.state(t)) })
	return a, b
}

// oneMemberInSync is converged for a cluster of two.
func oneMemberInSync(s e2eState) bool {
	if s.Peers == nil || !s.Peers.InSync || len(s.Peers.Members) != 1 || s.Peers.WaitingFor != "" {
		return false
	}
	m := s.Peers.Members[0]
	return m.State == "alive" && m.InSync && settled(s.State) && s.Registry.MissingCount == 0 && s.Registry.MismatchedCount == 0
}

// healFinding is a finding as the root .state lists it.
type healFinding struct {
	Kind         string `json:"kind"`
	Path         string `json:"path"`
	Expected     string `json:"expected"`
	Actual       string `json:"actual"`
	RepairedFrom string `json:"repaired_from"`
}

func findingAt(t *testing.T, n *e2eNode, rel string) map[string]healFinding {
	t.Helper()
	var doc struct {
		Findings []healFinding `json:"findings"`
	}
	if err := json.Unmarshal(n.state(t).Raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]healFinding{}
	for _, f := range doc.Findings {
		if f.Path == rel {
			out[f.Kind] = f
		}
	}
	return out
}

// layerBlob is the path below DATA of img's first layer in a distribution store, and its digest.
func layerBlob(t *testing.T, img v1.Image) (string, v1.Hash) {
	t.Helper()
	ls, err := img.Layers()
	if err != nil || len(ls) == 0 {
		t.Fatalf("layers: %v", err)
	}
	d, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return "docker/registry/v2/blobs/sha256/" + d.Hex[:2] + "/" + d.Hex + "/data", d
}

// flipByte damages the file at p in place: same size, one byte changed.
func flipByte(t *testing.T, p string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	off := st.Size() / 2
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// verifyUntil starts quick verification runs on n until cond holds.
func verifyUntil(t *testing.T, n *e2eNode, what string, cond func() bool) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: unixDial(n.sock)}}
	deadline := time.Now().Add(convergeTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v\n%s\n--- stderr (tail):\n%s", what, convergeTimeout, n.state(t).Raw, lastLines(n.proc.Stderr(), 30))
		}
		if resp, err := c.Post("http://localhost/v1/verify?kind=quick", "", nil); err == nil {
			resp.Body.Close()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitRepaired waits until rel's finding on n is repaired and returns it.
func waitRepaired(t *testing.T, n *e2eNode, rel string) healFinding {
	t.Helper()
	var f healFinding
	waitAll(t, "the blob is healed on "+n.name, []*e2eNode{n}, func(n *e2eNode) bool {
		fs := findingAt(t, n, rel)
		var ok bool
		f, ok = fs["repaired"]
		_, bad := fs["mismatch"]
		return ok && !bad
	})
	return f
}

// heals is trowfs_peer_heals_total{result} on n's /metrics.
func heals(t *testing.T, n *e2eNode, result string) float64 {
	t.Helper()
	code, body := unixGet(t, n.sock)("/metrics")
	if code != 200 {
		t.Fatalf("/metrics on %s: %d", n.name, code)
	}
	prefix := `trowfs_peer_heals_total{result="` + result + `"} `
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics on %s has no %s", n.name, prefix)
	return 0
}

// pullLayer fetches a blob through addr's registry and returns the sha256 of what it served.
func pullLayer(t *testing.T, addr, repo string, d v1.Hash) (string, error) {
	t.Helper()
	ref, err := name.NewDigest(addr+"/"+repo+"@"+d.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	l, err := remote.Layer(ref)
	if err != nil {
		return "", err
	}
	rc, err := l.Compressed() // verifies the digest as it is read
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func TestPeersHealRottenBlobFromPeer(t *testing.T) {
	a, b := healCluster(t)
	img := randomImage(t)
	dg := pushImage(t, a.regAddr(), "repo/app:v1", img)
	waitAll(t, "B serves repo/app:v1", []*e2eNode{b}, func(n *e2eNode) bool { return tagDigest(t, n.regAddr(), "repo/app:v1") == dg })
	waitAll(t, "in sync after the push", []*e2eNode{a, b}, func(n *e2eNode) bool { return oneMemberInSync(n.state(t)) })
	rel, d := layerBlob(t, img)
	// The manifest too: it is fetched from the manifests endpoint (distribution serves no
	// manifest from its blobs endpoint).
	md, _ := img.Digest()
	mrel := "docker/registry/v2/blobs/sha256/" + md.Hex[:2] + "/" + md.Hex + "/data"
	before := heals(t, b, "healed")

	for _, r := range []string{rel, mrel} {
		flipByte(t, filepath.Join(b.data, r))
	}
	if got := sha256File(t, filepath.Join(b.data, rel)); got == d.Hex {
		t.Fatal("the damage did not change the blob")
	}
	start := time.Now()
	verifyUntil(t, b, "the damaged blobs are found", func() bool {
		for _, r := range []string{rel, mrel} {
			fs := findingAt(t, b, r)
			_, bad := fs["mismatch"]
			_, rep := fs["repaired"]
			if !bad && !rep {
				return false
			}
		}
		return true
	})
	f := waitRepaired(t, b, rel)
	mf := waitRepaired(t, b, mrel)
	t.Logf("found and healed %v after the first verification request", time.Since(start))
	if f.RepairedFrom != "a" || f.Expected != d.String() || f.Actual == d.String() || f.Actual == "" {
		t.Fatalf("repaired finding: %+v; want repaired_from a, expected %s and the damaged digest as actual", f, d)
	}
	if mf.RepairedFrom != "a" || mf.Expected != md.String() {
		t.Fatalf("repaired finding of the manifest: %+v", mf)
	}
	for r, want := range map[string]string{rel: d.Hex, mrel: md.Hex} {
		if got := sha256File(t, filepath.Join(b.data, r)); got != want {
			t.Fatalf("B's %s after the heal hashes to %s, want %s", r, got, want)
		}
		// Through the mount at once (the kernel was told).
		if got := sha256File(t, filepath.Join(b.mnt, r)); got != want {
			t.Fatalf("%s read through B's mount hashes to %s, want %s", r, got, want)
		}
	}
	if got, err := pullLayer(t, b.regAddr(), "repo/app", d); err != nil || got != d.Hex {
		t.Fatalf("pull of the layer through B's registry: %s, %v", got, err)
	}
	sameImage(t, b.regAddr(), "repo/app", img)
	// The endpoint serves the same finding.
	if code, body := unixGet(t, b.sock)("/v1/state"); code != 200 || !strings.Contains(body, `"repaired_from": "a"`) {
		t.Fatalf("GET /v1/state on B: %d, no repaired_from a:\n%s", code, body)
	}
	if after := heals(t, b, "healed"); after != before+2 {
		t.Fatalf("trowfs_peer_heals_total{result=\"healed\"} went from %v to %v, want two more", before, after)
	}
	// The tree took the healed file: B is consistent and in sync with A again, and the tree it
	// writes at unmount equals a rescan of DATA.
	waitAll(t, "in sync after the heal", []*e2eNode{a, b}, func(n *e2eNode) bool { return oneMemberInSync(n.state(t)) })
	b.unmount(t)
	vr := trowfsbin.Run(t, "verify", b.data, "--json")
	if vr.Code != 0 {
		t.Fatalf("trowfs verify of B's DATA after the heal: exit %d\n%s\n%s", vr.Code, vr.Stdout, vr.Stderr)
	}
}

func TestPeersHealWithOnMismatchEIO(t *testing.T) {
	a, b := healCluster(t, "--on-mismatch", "eio")
	img := randomImage(t)
	dg := pushImage(t, a.regAddr(), "repo/app:v1", img)
	waitAll(t, "B serves repo/app:v1", []*e2eNode{b}, func(n *e2eNode) bool { return tagDigest(t, n.regAddr(), "repo/app:v1") == dg })
	waitAll(t, "in sync after the push", []*e2eNode{a, b}, func(n *e2eNode) bool { return oneMemberInSync(n.state(t)) })
	rel, d := layerBlob(t, img)
	if got := sha256File(t, filepath.Join(b.mnt, rel)); got != d.Hex {
		t.Fatalf("before any damage the blob reads %s through B's mount", got)
	}

	// A goes away: B has no peer to heal from.
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
	// Known bad and not healed: an open for reading through the mount fails with EIO, and so
	// does a pull through B's registry; other blobs still read.
	waitAll(t, "reads of the bad blob fail with EIO", []*e2eNode{b}, func(n *e2eNode) bool {
		_, err := os.ReadFile(filepath.Join(n.mnt, rel))
		return errors.Is(err, syscall.EIO)
	})
	if _, err := pullLayer(t, b.regAddr(), "repo/app", d); err == nil {
		t.Fatal("B's registry served the bad blob under --on-mismatch=eio")
	}
	cd, _ := img.ConfigName()
	cfgRel := "docker/registry/v2/blobs/sha256/" + cd.Hex[:2] + "/" + cd.Hex + "/data"
	if got := sha256File(t, filepath.Join(b.mnt, cfgRel)); got != cd.Hex {
		t.Fatalf("a good blob reads %s through B's mount", got)
	}
	waitAll(t, "B counts a failed heal", []*e2eNode{b}, func(n *e2eNode) bool { return heals(t, n, "failed") >= 1 })
	if _, ok := findingAt(t, b, rel)["repaired"]; ok {
		t.Fatal("repaired with no peer alive")
	}

	// A comes back: B retries at once and heals from it; the EIO is lifted.
	a.mount(t)
	a.startRegistry(t)
	start := time.Now()
	f := waitRepaired(t, b, rel)
	t.Logf("healed %v after A came back", time.Since(start))
	if f.RepairedFrom != "a" {
		t.Fatalf("repaired finding: %+v, want repaired_from a", f)
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
	sameImage(t, b.regAddr(), "repo/app", img)
}

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
