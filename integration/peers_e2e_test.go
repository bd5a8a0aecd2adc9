package integration

// Three trowfs mounts, each under its own distribution v3.1.2 registry, joined as peers through
// the real binary exactly as an operator runs them (docs/peers.md, "Operating"): a push to one
// registry is served byte-identical by the others, a retag and a tag delete follow, a delete
// survives a restart, a stopped registry is waited for and caught up, and an idle cluster moves no
// data-plane bytes.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/trowfs/trowfs/integration/regtest"
	"github.com/trowfs/trowfs/integration/trowfsbin"
	"github.com/trowfs/trowfs/peers"
)

// convergeTimeout bounds each convergence step. The node compares on every gossiped root change
// and every 10 s; a step that needs more than a minute is a bug.
const convergeTimeout = 60 * time.Second

// e2eNode is one node: a data directory, its trowfs mount and the registry serving from it.
type e2eNode struct {
	name              string
	data, mnt, sock   string
	peerPort, regPort int
	args              []string
	proc              *trowfsbin.Proc
	reg               *exec.Cmd
	regOut            *bytes.Buffer
	regMu             *sync.Mutex // guards regOut
	regDone           chan struct{}
}

func (n *e2eNode) regAddr() string { return "127.0.0.1:" + strconv.Itoa(n.regPort) }

// freePeerPort returns a port whose successor (the data plane's default) is free too.
func freePeerPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p
		}
	}
	t.Fatal("no free pair of ports")
	return 0
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// mount starts (or restarts) the node's trowfs with its fixed arguments.
func (n *e2eNode) mount(t *testing.T) {
	t.Helper()
	n.proc = trowfsbin.Start(t, n.data, n.mnt, n.args...)
}

// unmount stops the registry first (it has files open on the mount), then trowfs.
func (n *e2eNode) unmount(t *testing.T) {
	t.Helper()
	n.stopRegistry(t)
	n.proc.Stop(t)
}

// startRegistry starts distribution serving from the mount on the node's fixed port (a restart
// keeps --registry-url valid) and waits until /v2/ answers.
func (n *e2eNode) startRegistry(t *testing.T) {
	t.Helper()
	cfg, err := regtest.WriteDistributionConfig(t.TempDir(), n.mnt, n.regPort)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(regtest.Tools(t).Registry, "serve", cfg)
	n.regOut = &bytes.Buffer{}
	n.regMu = &sync.Mutex{}
	cmd.Stdout, cmd.Stderr = &lockedWriter{n.regMu, n.regOut}, &lockedWriter{n.regMu, n.regOut}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.reg, n.regDone = cmd, make(chan struct{})
	done := n.regDone
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { n.stopRegistry(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + n.regAddr() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			n.regMu.Lock()
			out := n.regOut.String()
			n.regMu.Unlock()
			t.Fatalf("registry of %s exited: %s", n.name, out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry of %s not answering", n.name)
		}
	}
}

func (n *e2eNode) stopRegistry(t *testing.T) {
	if n.reg == nil {
		return
	}
	_ = n.reg.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.regDone:
	case <-time.After(10 * time.Second):
		_ = n.reg.Process.Kill()
		<-n.regDone
	}
	n.reg = nil
}

// lockedWriter is an io.Writer safe for the two copy goroutines of exec.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// e2eState is the part of the root .state this test reads.
type e2eState struct {
	regtest.State
	Peers *peers.Status `json:"peers"`
}

func (n *e2eNode) state(t *testing.T) e2eState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.mnt, ".state"))
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	var s e2eState
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s .state: %v\n%s", n.name, err, b)
	}
	s.Raw = b
	return s
}

// cliPeers runs `trowfs peers --listen` against the node's endpoint: the table and the JSON.
func (n *e2eNode) cliPeers(t *testing.T) (string, peers.Status) {
	t.Helper()
	tab := trowfsbin.Run(t, "peers", "--listen", "unix:"+n.sock)
	js := trowfsbin.Run(t, "peers", "--listen", "unix:"+n.sock, "--json")
	if tab.Code != 0 || js.Code != 0 {
		t.Fatalf("trowfs peers on %s: %d %s / %d %s", n.name, tab.Code, tab.Stderr, js.Code, js.Stderr)
	}
	var st peers.Status
	if err := json.Unmarshal([]byte(js.Stdout), &st); err != nil {
		t.Fatalf("trowfs peers --json on %s: %v\n%s", n.name, err, js.Stdout)
	}
	return tab.Stdout, st
}

// converged is a node whose peers report 2 live members, all in sync, and whose registry report
// has nothing missing or mismatched.
func converged(s e2eState) bool {
	if s.Peers == nil || !s.Peers.InSync || len(s.Peers.Members) != 2 || s.Peers.WaitingFor != "" {
		return false
	}
	for _, m := range s.Peers.Members {
		if m.State != "alive" || !m.InSync {
			return false
		}
	}
	return settled(s.State) && s.Registry.MissingCount == 0 && s.Registry.MismatchedCount == 0
}

// waitAll polls until ok holds on every node.
func waitAll(t *testing.T, what string, nodes []*e2eNode, ok func(*e2eNode) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		all := true
		for _, n := range nodes {
			if !ok(n) {
				all = false
				break
			}
		}
		if all {
			return time.Since(start)
		}
		if time.Since(start) > convergeTimeout {
			var b strings.Builder
			for _, n := range nodes {
				fmt.Fprintf(&b, "--- %s .state:\n%s\n--- %s stderr (tail):\n%s\n", n.name, n.state(t).Raw, n.name, lastLines(n.proc.Stderr(), 30))
			}
			t.Fatalf("%s: not reached within %v\n%s", what, convergeTimeout, b.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// tagDigest is the digest a node serves for repo:tag, "" on 404.
func tagDigest(t *testing.T, addr, repoTag string) string {
	t.Helper()
	ref, err := name.NewTag(addr+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(ref)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return ""
		}
		return "error: " + err.Error()
	}
	return d.Digest.String()
}

// sameImage fails unless addr serves img's manifest and every blob byte-identical.
func sameImage(t *testing.T, addr, repo string, img v1.Image) {
	t.Helper()
	want, _ := img.RawManifest()
	dg, _ := img.Digest()
	ref, _ := name.NewDigest(addr+"/"+repo+"@"+dg.String(), name.Insecure)
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	raw, _ := got.RawManifest()
	if !bytes.Equal(raw, want) {
		t.Fatalf("%s serves another manifest", ref)
	}
	cfgWant, _ := img.RawConfigFile()
	cfgGot, err := got.RawConfigFile()
	if err != nil || !bytes.Equal(cfgWant, cfgGot) {
		t.Fatalf("%s: config differs (%v)", ref, err)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		gl, err := got.LayerByDigest(d)
		if err != nil {
			t.Fatalf("%s layer %s: %v", ref, d, err)
		}
		rw, _ := l.Compressed()
		rg, err := gl.Compressed()
		if err != nil {
			t.Fatalf("%s layer %s: %v", ref, d, err)
		}
		bw, _ := io.ReadAll(rw)
		bg, err := io.ReadAll(rg)
		rw.Close()
		rg.Close()
		if err != nil || !bytes.Equal(bw, bg) {
			t.Fatalf("%s layer %s differs (%v)", ref, d, err)
		}
	}
}

func pushImage(t *testing.T, addr, repoTag string, img v1.Image) string {
	t.Helper()
	ref, _ := name.NewTag(addr+"/"+repoTag, name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(200_000, 3)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// dataBytes sums the data-plane counters of every node, read through `trowfs peers --json`.
func dataBytes(t *testing.T, nodes []*e2eNode) int64 {
	t.Helper()
	var sum int64
	for _, n := range nodes {
		_, st := n.cliPeers(t)
		sum += st.BytesIn + st.BytesOut
	}
	return sum
}

// newE2ENodes returns unstarted nodes with the given names (their data, mountpoint, endpoint
// socket and free ports) and the path of a fresh shared peer key file.
func newE2ENodes(t *testing.T, names ...string) ([]*e2eNode, string) {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyFile := filepath.Join(t.TempDir(), "peer.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Sockets in a short directory: a unix socket path has at most 107 bytes.
	sockDir, err := os.MkdirTemp("", "p")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	var nodes []*e2eNode
	for _, nm := range names {
		nodes = append(nodes, &e2eNode{name: nm, data: t.TempDir(), mnt: filepath.Join(t.TempDir(), "mnt"),
			sock: filepath.Join(sockDir, nm+".sock"), peerPort: freePeerPort(t), regPort: freeTCPPort(t)})
	}
	return nodes, keyFile
}

func TestPeersThreeRegistriesConverge(t *testing.T) {
	trowfsbin.Require(t)
	regtest.Tools(t)
	nodes, keyFile := newE2ENodes(t, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	seed := "127.0.0.1:" + strconv.Itoa(a.peerPort)
	for _, n := range nodes {
		n.args = []string{"--layout", "distribution", "--listen", "unix:" + n.sock,
			"--peer-name", n.name, "--peer-bind", "127.0.0.1:" + strconv.Itoa(n.peerPort), "--peer-join", seed,
			"--peer-key-file", keyFile, "--registry-url", "http://" + n.regAddr()}
		n.mount(t)
		n.startRegistry(t)
	}
	d := waitAll(t, "three members in sync on an empty cluster", nodes, func(n *e2eNode) bool { return converged(n.state(t)) })
	t.Logf("empty cluster in sync after %v", d)
	before := dataBytes(t, nodes)

	// 1. A push to A is served by B and C.
	img1 := randomImage(t)
	start := time.Now()
	d1 := pushImage(t, a.regAddr(), "repo/app:v1", img1)
	pushed := time.Since(start)
	waitAll(t, "B and C serve repo/app:v1", nodes[1:], func(n *e2eNode) bool { return tagDigest(t, n.regAddr(), "repo/app:v1") == d1 })
	served := time.Since(start)
	for _, n := range nodes[1:] {
		sameImage(t, n.regAddr(), "repo/app", img1)
	}
	waitAll(t, "converged after the push", nodes, func(n *e2eNode) bool { return converged(n.state(t)) })
	t.Logf("push to A took %v; B and C served it %v after the push started (%v after it ended)", pushed, served, served-pushed)
	for _, n := range nodes {
		tab, st := n.cliPeers(t)
		if len(st.Members) != 2 || !st.InSync {
			t.Fatalf("trowfs peers on %s: %+v\n%s", n.name, st, tab)
		}
		if n == a {
			t.Logf("trowfs peers on a:\n%s", tab)
		}
	}

	// 2. A retag on B: A and C follow.
	img2 := randomImage(t)
	start = time.Now()
	d2 := pushImage(t, b.regAddr(), "repo/app:v1", img2)
	waitAll(t, "A and C follow the retag on B", []*e2eNode{a, c}, func(n *e2eNode) bool { return tagDigest(t, n.regAddr(), "repo/app:v1") == d2 })
	t.Logf("retag on B followed in %v", time.Since(start))
	for _, n := range []*e2eNode{a, c} {
		sameImage(t, n.regAddr(), "repo/app", img2)
	}
	waitAll(t, "converged after the retag", nodes, func(n *e2eNode) bool { return converged(n.state(t)) })

	// 3. A tag deleted on C disappears on A and B, and stays deleted after A restarts.
	ref, _ := name.NewTag(c.regAddr()+"/repo/app:v1", name.Insecure)
	start = time.Now()
	if err := remote.Delete(ref); err != nil {
		t.Fatalf("delete the tag on C: %v", err)
	}
	waitAll(t, "the deleted tag is gone on A and B", []*e2eNode{a, b}, func(n *e2eNode) bool { return tagDigest(t, n.regAddr(), "repo/app:v1") == "" })
	t.Logf("tag delete on C followed in %v", time.Since(start))
	waitAll(t, "converged after the delete", nodes, func(n *e2eNode) bool { return converged(n.state(t)) })
	a.unmount(t)
	a.mount(t)
	a.startRegistry(t)
	start = time.Now()
	waitAll(t, "converged after A restarted", nodes, func(n *e2eNode) bool { return converged(n.state(t)) })
	t.Logf("A back in sync %v after its restart", time.Since(start))
	// Past one periodic comparison and observation (10 s): nothing brings the tag back.
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		for _, n := range nodes {
			if got := tagDigest(t, n.regAddr(), "repo/app:v1"); got != "" {
				t.Fatalf("the deleted tag came back on %s (%s) after A restarted", n.name, got)
			}
		}
	}

	// 4. B's registry is down while A gets a push: B says what it waits for, then catches up.
	b.stopRegistry(t)
	img3 := randomImage(t)
	d3 := pushImage(t, a.regAddr(), "repo/app:v2", img3)
	waitAll(t, "C serves repo/app:v2", []*e2eNode{c}, func(n *e2eNode) bool { return tagDigest(t, n.regAddr(), "repo/app:v2") == d3 })
	waitAll(t, "B says it waits for its registry", []*e2eNode{b}, func(n *e2eNode) bool {
		s := n.state(t)
		return s.Peers != nil && strings.Contains(s.Peers.WaitingFor, b.regAddr()) && strings.Contains(s.Peers.WaitingFor, "connection refused")
	})
	t.Logf("B waiting_for: %s", b.state(t).Peers.WaitingFor)
	start = time.Now()
	b.startRegistry(t)
	waitAll(t, "B catches up after its registry restarted", []*e2eNode{b}, func(n *e2eNode) bool { return tagDigest(t, n.regAddr(), "repo/app:v2") == d3 })
	t.Logf("B caught up %v after its registry restarted", time.Since(start))
	sameImage(t, b.regAddr(), "repo/app", img3)
	waitAll(t, "converged after B caught up", nodes, func(n *e2eNode) bool { return converged(n.state(t)) })

	// 5. Idle: no data-plane byte moves for 20 s.
	after := dataBytes(t, nodes)
	t.Logf("data-plane bytes (in+out summed over the 3 nodes) for the whole scenario: %d", after-before)
	time.Sleep(20 * time.Second)
	if idle := dataBytes(t, nodes); idle != after {
		t.Errorf("%d data-plane bytes moved in 20 s with no change", idle-after)
	}
	for _, n := range nodes {
		if s := n.state(t); !converged(s) {
			t.Errorf("%s not converged at the end:\n%s", n.name, s.Raw)
		}
	}
}
