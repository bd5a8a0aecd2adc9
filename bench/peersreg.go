package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/trowfs/trowfs/peers"
	"github.com/trowfs/trowfs/peers/crdt"
)

// peerNode is one trowfs mount (--layout distribution, peers on) with a distribution registry
// serving from it, as an operator runs them (docs/peers.md).
type peerNode struct {
	name                string
	dir                 string
	gossipPort, regPort int // the data plane listens on gossipPort+1
	mount               *Mount
	reg                 *regServer
}

func (p *peerNode) regAddr() string { return "127.0.0.1:" + strconv.Itoa(p.regPort) }

// peerState is the root .state's peers object.
func (p *peerNode) peerState() (*peers.Status, error) {
	b, err := os.ReadFile(filepath.Join(p.mount.Mnt, ".state"))
	if err != nil {
		return nil, err
	}
	var st struct {
		Peers *peers.Status `json:"peers"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s/.state: %w", p.mount.Mnt, err)
	}
	if st.Peers == nil {
		return nil, fmt.Errorf("%s/.state has no peers object", p.mount.Mnt)
	}
	return st.Peers, nil
}

// inSync is a node that sees the other two alive with its own root and waits for nothing.
func (p *peerNode) inSync(others int) (bool, string) {
	st, err := p.peerState()
	if err != nil {
		return false, err.Error()
	}
	if !st.InSync || len(st.Members) != others || st.WaitingFor != "" {
		return false, fmt.Sprintf("%s: in_sync %v, %d members, waiting for %q", p.name, st.InSync, len(st.Members), st.WaitingFor)
	}
	for _, m := range st.Members {
		if m.State != "alive" || !m.InSync {
			return false, fmt.Sprintf("%s: member %s %s, in_sync %v", p.name, m.Name, m.State, m.InSync)
		}
	}
	return true, ""
}

// freePortPair returns a free port whose successor is free too (gossip and data plane).
func freePortPair() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, uerr := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		l.Close()
		if uerr == nil {
			u.Close()
		}
		if err == nil {
			l2.Close()
			if uerr == nil {
				return p, nil
			}
		}
	}
	return 0, fmt.Errorf("no free pair of ports")
}

// servesDigest says whether the registry at addr serves repo:tag as the manifest digest.
func servesDigest(addr, repo, tag, digest string) bool {
	req, err := http.NewRequest(http.MethodHead, "http://"+addr+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		return false
	}
	req.Header.Set("Accept", mediaManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && resp.Header.Get("Docker-Content-Digest") == digest
}

// peersRegistries measures three trowfs mounts joined as peers, each under its own distribution
// registry: the time until an image pushed (crane copy) to A is served by B and C, against crane
// copy of the same image between two plain registries in the same run; then the idle traffic per
// node.
func (s *Suite) peersRegistries() ([]Row, error) {
	nImgs, layerSize := pick(s, 5, 3), pick(s, 16<<20, 4<<20)
	const layers = 3
	lagName := "peers: image pushed to A served by B and C, after the push"
	fromName := "peers: image pushed to A served by B and C, from the push's start"
	idleName := "peers: idle traffic per node, gossip + data plane (3 mounts)"
	lagTarget := "≤ 1.5× crane copy"
	bin, err := s.registryBin()
	crane := filepath.Join(s.cfg.Tools, "bin", "crane")
	if err == nil {
		if _, serr := os.Stat(crane); serr != nil {
			err = fmt.Errorf("%s not found: run `make tools` (integration/tools/install.sh)", crane)
		}
	}
	if err != nil {
		return []Row{{Name: lagName, Skipped: err.Error(), Mode: "3 mounts", Target: lagTarget},
			{Name: idleName, Skipped: err.Error(), Mode: "3 mounts", Target: "info"}}, nil
	}
	imgs, err := makeImages(nImgs, layers, layerSize, "peers/img")
	if err != nil {
		return nil, err
	}
	base, err := s.dir("peers")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(base)

	// The source registry the images are copied from, the plain target of the baseline, and two
	// more plain targets for two copies at once (what A serving B and C does).
	var plain [4]*regServer
	for i, nm := range []string{"source", "plain", "plain2", "plain3"} {
		d := filepath.Join(base, nm)
		if err := os.MkdirAll(filepath.Join(d, "root"), 0o755); err != nil {
			return nil, err
		}
		if plain[i], err = s.startRegistry(bin, filepath.Join(d, "root"), d); err != nil {
			return nil, fmt.Errorf("%s registry: %w", nm, err)
		}
		defer plain[i].stop()
	}
	src, dst, pair := plain[0], plain[1], plain[2:]
	if err := pushAll(src.addr, imgs, 4); err != nil {
		return nil, fmt.Errorf("push to the source registry: %w", err)
	}

	// Three nodes.
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyFile := filepath.Join(base, "peer.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, err
	}
	var nodes []*peerNode
	for _, nm := range []string{"a", "b", "c"} {
		n := &peerNode{name: nm, dir: filepath.Join(base, nm)}
		if n.gossipPort, err = freePortPair(); err != nil {
			return nil, err
		}
		if n.regPort, err = freePort(); err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	seed := "127.0.0.1:" + strconv.Itoa(nodes[0].gossipPort)
	defer func() {
		for _, n := range nodes {
			if d := os.Getenv("TROWFS_BENCH_PEER_LOGS"); d != "" && n.mount != nil { // kept to study a run
				_ = os.WriteFile(filepath.Join(d, "peer-"+n.name+".log"), []byte(n.mount.Log()), 0o644)
			}
			if n.reg != nil {
				n.reg.stop() // it has files open on the mount
			}
			if n.mount != nil {
				_ = n.mount.Stop()
			}
		}
	}()
	for _, n := range nodes {
		data := filepath.Join(n.dir, "data")
		if err := os.MkdirAll(data, 0o755); err != nil {
			return nil, err
		}
		n.mount, err = s.mountTrowfs(data, filepath.Join(n.dir, "mnt"), "--layout", "distribution",
			"--peer-name", n.name, "--peer-bind", "127.0.0.1:"+strconv.Itoa(n.gossipPort), "--peer-join", seed,
			"--peer-key-file", keyFile, "--registry-url", "http://"+n.regAddr(),
			"--log-level", "debug") // the peers' debug lines time the steps of the replication (lagSplit)
		if err != nil {
			return nil, err
		}
		if n.reg, err = s.startRegistryOn(bin, n.mount.Mnt, n.dir, n.regPort); err != nil {
			return nil, fmt.Errorf("registry of %s: %w", n.name, err)
		}
	}
	allInSync := func(d time.Duration) error {
		var why string
		ok := waitFor(d, func() bool {
			for _, n := range nodes {
				var ok bool
				if ok, why = n.inSync(len(nodes) - 1); !ok {
					return false
				}
			}
			return true
		})
		if !ok {
			return fmt.Errorf("the three nodes not in sync after %s: %s", d, why)
		}
		return nil
	}
	if err := allInSync(2 * time.Minute); err != nil {
		return nil, err
	}

	// Replication against crane copy, one image at a time, alternating which goes first.
	craneCopy := func(from, to string, img benchImage) (float64, error) {
		start := time.Now()
		_, err := runCmd(context.Background(), 5*time.Minute, crane, "copy", "--insecure",
			from+"/"+img.repo+":"+img.tag, to+"/"+img.repo+":"+img.tag)
		return time.Since(start).Seconds(), err
	}
	var copies, pairs, pushes, lags, served, stamps []float64
	split := lagSplit{}
	for i, img := range imgs {
		for j := range 3 {
			switch (i + j) % 3 {
			case 0:
				c, err := craneCopy(src.addr, dst.addr, img)
				if err != nil {
					return nil, err
				}
				copies = append(copies, c)
				continue
			case 1:
				start := time.Now()
				errs := make(chan error, len(pair))
				for _, r := range pair {
					go func() { _, err := craneCopy(src.addr, r.addr, img); errs <- err }()
				}
				for range pair {
					if err := <-errs; err != nil {
						return nil, err
					}
				}
				pairs = append(pairs, time.Since(start).Seconds())
				continue
			}
			before, err := nodes[0].peerState()
			if err != nil {
				return nil, err
			}
			start := time.Now()
			p, err := craneCopy(src.addr, nodes[0].regAddr(), img)
			if err != nil {
				return nil, fmt.Errorf("push to A: %w", err)
			}
			pushed := time.Since(start)
			var stamped time.Duration // when A's peer root first moved: the push seen and stamped
			visible := map[string]time.Time{}
			if !waitFor(2*time.Minute, func() bool {
				if stamped == 0 {
					if st, err := nodes[0].peerState(); err == nil && st.Root != before.Root {
						stamped = time.Since(start) - pushed
					}
				}
				for _, n := range nodes[1:] {
					if visible[n.name].IsZero() && servesDigest(n.regAddr(), img.repo, img.tag, img.manifest.digest) {
						visible[n.name] = time.Now()
					}
				}
				return len(visible) == len(nodes)-1
			}) {
				return nil, fmt.Errorf("%s:%s pushed to A not served by B and C within 2 min", img.repo, img.tag)
			}
			all := time.Since(start)
			if stamped == 0 {
				stamped = all - pushed
			}
			pushes, lags, served = append(pushes, p), append(lags, (all-pushed).Seconds()), append(served, all.Seconds())
			stamps = append(stamps, stamped.Seconds())
			time.Sleep(300 * time.Millisecond) // the mounts' last lines reach their logs
			split.add(nodes, start.Add(pushed), visible)
		}
		// The next measurement starts from a quiet cluster (and B and C really hold the image).
		if err := allInSync(time.Minute); err != nil {
			return nil, err
		}
		for _, n := range nodes[1:] {
			if err := newClient(n.regAddr()).pull(img); err != nil {
				return nil, fmt.Errorf("pull from %s: %w", n.name, err)
			}
		}
	}
	cp, lag, all := Median(copies), Median(lags), Median(served)
	note := fmt.Sprintf("%d images of %d × %d MiB layers, one at a time; native column = `crane copy` of the same image between two plain distribution registries in the same run; trowfs = from crane copy to A returning (median %.2f s) until B and C both serve the tag, polled every 50 ms: %.2f× crane copy (of which %.2f s until A's peer root moved: the push seen by the mount and stamped); two crane copies at once from one registry to two others, the transfer work of the replication: %.2f s, lag %.2f× that; every image then pulled from B and C, every digest checked; %s",
		nImgs, layers, layerSize>>20, Median(pushes), lag/cp, Median(stamps), Median(pairs), lag/Median(pairs), noise(Spread(copies), Spread(lags)))
	if sp := split.String(); sp != "" {
		note += "; " + sp
	}
	lagRow := Row{Name: lagName, Unit: "s", Native: cp, Loopback: NA, Trowfs: lag, Mode: "3 mounts", Target: lagTarget,
		Pass: atMost(lag/cp, 1.5), Note: note}
	fromRow := Row{Name: fromName, Unit: "s", Native: cp, Loopback: NA, Trowfs: all, Mode: "3 mounts", Target: "info",
		Note: fmt.Sprintf("the push to A included: %.2f× crane copy", all/cp)}

	idle, err := s.peersIdle(nodes)
	if err != nil {
		return []Row{lagRow, fromRow}, err
	}
	return []Row{lagRow, fromRow, idle}, nil
}

// peersIdle counts what a quiet 3-node cluster sends: the gossip and data-plane ports' TCP and UDP
// payload bytes on the loopback (the nodes count only data-plane bytes themselves), and the
// nodes' own data-plane counters, over a window.
func (s *Suite) peersIdle(nodes []*peerNode) (Row, error) {
	name := "peers: idle traffic per node, gossip + data plane (3 mounts)"
	window := pick(s, 60*time.Second, 20*time.Second)
	time.Sleep(2 * time.Second) // past the last change's gossip
	var gossipPorts, dataPorts []int
	for _, n := range nodes {
		gossipPorts, dataPorts = append(gossipPorts, n.gossipPort), append(dataPorts, n.gossipPort+1)
	}
	counters := func() (int64, error) {
		var sum int64
		for _, n := range nodes {
			st, err := n.peerState()
			if err != nil {
				return 0, err
			}
			sum += st.BytesIn + st.BytesOut
		}
		return sum, nil
	}
	before, err := counters()
	if err != nil {
		return Row{}, err
	}
	w, werr := newWireCounter(gossipPorts, dataPorts)
	if werr != nil {
		return Row{Name: name, Skipped: werr.Error(), Mode: "3 mounts", Target: "info"}, nil
	}
	start := time.Now()
	time.Sleep(window)
	b, p, rerr := w.snapshot()
	elapsed := time.Since(start)
	w.stop()
	if rerr != nil {
		return Row{}, fmt.Errorf("counting loopback traffic: %w", rerr)
	}
	after, err := counters()
	if err != nil {
		return Row{}, err
	}
	perMin := func(v int64) float64 { return float64(v) / float64(len(nodes)) / elapsed.Minutes() }
	row := Row{Name: name, Unit: "B/min", Native: NA, Loopback: NA, Trowfs: perMin(b[0] + b[1]), Mode: "3 mounts", Target: "info",
		Note: fmt.Sprintf("over %s with no change, TCP+UDP payload bytes on the loopback per node: gossip %.0f B/min (%d packets in all), data plane %.0f B/min (%d packets); the nodes' own data-plane counters (bytes_in+bytes_out, summed) moved by %d",
			elapsed.Round(time.Second), perMin(b[0]), p[0], perMin(b[1]), p[1], after-before)}
	if after != before {
		row.Broken = true
		row.Note += ": an idle cluster must move no data-plane bytes"
	}
	return row, nil
}

// peersDiff measures finding k = 10 differences among n = 100,000 manifests (crdt.MeasureDiff:
// the node's Sync descent with every message encoded as on the wire) and at 16× n.
func (s *Suite) peersDiff() []Row {
	const k, n = 10, 100_000
	small := crdt.MeasureDiff(n, k)
	large := crdt.MeasureDiff(16*n, k)
	growth := float64(large.Bytes) / float64(small.Bytes)
	r1 := Row{Name: fmt.Sprintf("peers: bytes to find k=%d differences among %dk manifests", k, n/1000), Unit: "KB",
		Native: NA, Loopback: NA, Trowfs: float64(small.Bytes) / 1e3, Mode: "crdt.Sync", Target: "≤ 64 KB",
		Pass: atMost(float64(small.Bytes), 64<<10), Note: small.String()}
	r2 := Row{Name: fmt.Sprintf("peers: growth of those bytes when n grows 16× (%dk manifests)", 16*n/1000), Unit: "×",
		Native: NA, Loopback: NA, Trowfs: growth, Mode: "crdt.Sync", Target: "≤ 2×",
		Pass: atMost(growth, 2), Note: large.String()}
	for _, r := range []*Row{&r1, &r2} {
		if !small.Converged || !large.Converged {
			f := false
			r.Pass, r.Broken = &f, true
			r.Note += "; the two states did not end equal"
		}
	}
	return []Row{r1, r2}
}

// peersAll is the peers workload: the registries on three mounts, the difference cost, the
// simulated cluster.
func (s *Suite) peersAll() ([]Row, error) {
	var rows []Row
	var errs []string
	s.logf("   three trowfs mounts under distribution registries, joined as peers")
	rs, err := s.peersRegistries()
	rows = append(rows, rs...)
	if err != nil {
		errs = append(errs, "registries: "+err.Error())
	}
	StopAll()
	if os.Getenv("TROWFS_BENCH_PEERS") == "replication" { // the replication rows alone (BENCHMARKS.md)
		return rows, errorsOf(errs)
	}
	s.logf("   difference cost")
	rows = append(rows, s.peersDiff()...)
	rs, err = s.peersSim()
	rows = append(rows, rs...)
	if err != nil {
		errs = append(errs, "simulation: "+err.Error())
	}
	return rows, errorsOf(errs)
}

func errorsOf(errs []string) error {
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// lagSplit gathers, image by image, when each step of a replication happened after the push to A
// returned, from the mounts' debug lines (peers/node.go): A stamps the push, A starts its sync with
// B (or C), B merges A's offer, B starts and ends its apply, B's registry serves the tag.
type lagSplit map[string][]float64

// lagSteps are the steps in order: the node whose log says it, its message, and a key=value the
// line must hold ("" for any).
var lagSteps = []struct{ name, who, msg, attr string }{
	{"stamped", "a", "local registry changes stamped", ""},
	{"A syncs", "a", "sync start", "peer=%s"},
	{"root gossiped", "%s", "member root gossiped", "peer=a"},
	{"offer merged", "%s", "offer taken", "changed=true"},
	{"apply start", "%s", "apply start", ""},
	{"apply end", "%s", "apply end", ""},
}

var logTime = regexp.MustCompile(`^time=(\S+) level=\S+ msg=("(?:[^"\\]|\\.)*"|\S+)(.*)$`)

// add records the steps of one replication: for B and C, the first line of each step after A's
// stamp (the apply's end after its start), and when the tag became visible.
func (l lagSplit) add(nodes []*peerNode, from time.Time, visible map[string]time.Time) {
	type line struct {
		t        time.Time
		msg, all string
	}
	logs := map[string][]line{}
	for _, n := range nodes {
		for _, s := range strings.Split(n.mount.Log(), "\n") {
			m := logTime.FindStringSubmatch(s)
			if m == nil {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil || t.Before(from.Add(-time.Second)) {
				continue
			}
			msg := strings.Trim(m[2], `"`)
			logs[n.name] = append(logs[n.name], line{t, msg, m[3]})
		}
	}
	for _, n := range nodes[1:] {
		at := from.Add(-time.Second) // the stamp may come before crane returns (its manifest PUT is done)
		stamp := at
		for _, st := range lagSteps {
			if st.name != "apply end" && st.name != "stamped" {
				at = stamp
			}
			who := st.who
			if strings.Contains(who, "%s") {
				who = fmt.Sprintf(who, n.name)
			}
			attr := st.attr
			if strings.Contains(attr, "%s") {
				attr = fmt.Sprintf(attr, n.name)
			}
			for _, ln := range logs[who] {
				if ln.t.Before(at) || ln.msg != st.msg || (attr != "" && !strings.Contains(ln.all, " "+attr)) {
					continue
				}
				at = ln.t
				if st.name == "stamped" {
					stamp = at
				}
				l[st.name] = append(l[st.name], at.Sub(from).Seconds())
				break
			}
		}
		if v, ok := visible[n.name]; ok {
			l["visible"] = append(l["visible"], v.Sub(from).Seconds())
		}
	}
}

// String is the median time of each step after the push returned, over B and C and the images.
func (l lagSplit) String() string {
	var parts []string
	for _, st := range append(lagSteps, struct{ name, who, msg, attr string }{name: "visible"}) {
		if xs := l[st.name]; len(xs) > 0 {
			parts = append(parts, fmt.Sprintf("%s %+.2f s (%d)", st.name, Median(xs), len(xs)))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "split, median seconds after the push returned on B and C (count): " + strings.Join(parts, ", ")
}
