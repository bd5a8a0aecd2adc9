package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// registryConfig is a minimal configuration of the CNCF distribution registry: filesystem storage,
// no background upload purging (it would change the directory at a random time), no access log.
const registryConfig = `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
  redirect:
    disable: true
http:
  addr: 127.0.0.1:%d
  secret: trowfs-bench-fixed-secret
`

// registryBin returns the distribution registry binary, or an error saying how to install it.
func (s *Suite) registryBin() (string, error) {
	p := filepath.Join(s.cfg.Tools, "bin", "registry")
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		return "", fmt.Errorf("%s not found: run `make tools` (integration/tools/install.sh)", p)
	}
	return p, nil
}

// regServer is a distribution registry process started by the suite.
type regServer struct {
	cmd    *exec.Cmd
	addr   string
	config string
	exited chan struct{}
	out    *os.File
}

// writeRegistryConfig writes the configuration for root and port into dir.
func writeRegistryConfig(dir, root string, port int) (string, error) {
	quoted, err := json.Marshal(root) // a JSON string is a valid YAML scalar
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "registry.yml")
	return p, os.WriteFile(p, []byte(fmt.Sprintf(registryConfig, quoted, port)), 0o644)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRegistry starts `registry serve` on root and waits until /v2/ answers.
func (s *Suite) startRegistry(bin, root, cfgDir string) (*regServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return s.startRegistryOn(bin, root, cfgDir, port)
}

// startRegistryOn is startRegistry on a given port (a trowfs peer must be told its registry's URL
// before the registry can start on the mount).
func (s *Suite) startRegistryOn(bin, root, cfgDir string, port int) (*regServer, error) {
	cfg, err := writeRegistryConfig(cfgDir, root, port)
	if err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(cfgDir, "registry.log"))
	if err != nil {
		return nil, err
	}
	r := &regServer{addr: "127.0.0.1:" + strconv.Itoa(port), config: cfg, exited: make(chan struct{}), out: out}
	r.cmd = exec.Command(bin, "serve", cfg)
	r.cmd.Stdout, r.cmd.Stderr = out, out
	r.cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true")
	if err := r.cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	go func() { _ = r.cmd.Wait(); close(r.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + r.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case <-r.exited:
			out.Close()
			b, _ := os.ReadFile(out.Name())
			return nil, fmt.Errorf("registry exited before answering:\n%s", tailBytes(b, 2000))
		default:
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, errors.New("registry did not answer /v2/ within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM to the registry (by pid), then SIGKILL after 10 s.
func (r *regServer) stop() {
	select {
	case <-r.exited:
	default:
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
	}
	r.out.Close()
}

// blob is content with its digest.
type blob struct {
	digest string
	data   []byte
}

func newBlob(b []byte) blob {
	sum := sha256.Sum256(b)
	return blob{"sha256:" + hex.EncodeToString(sum[:]), b}
}

// benchImage is an OCI image held in memory: a config, layers and the manifest naming them.
type benchImage struct {
	repo, tag string
	config    blob
	layers    []blob
	manifest  blob
}

// ociDescriptor is an OCI content descriptor.
type ociDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int    `json:"size"`
}

const (
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// makeImages builds n distinct images of random layers, one repository each.
func makeImages(n, layers, layerSize int, repo string) ([]benchImage, error) {
	imgs := make([]benchImage, n)
	for i := range imgs {
		img := benchImage{repo: fmt.Sprintf("%s%d", repo, i), tag: "v1"}
		var diffIDs []string
		var descs []ociDescriptor
		for j := 0; j < layers; j++ {
			l := newBlob(randomBytes(layerSize))
			img.layers = append(img.layers, l)
			diffIDs = append(diffIDs, l.digest)
			descs = append(descs, ociDescriptor{mediaLayer, l.digest, len(l.data)})
		}
		cfg, err := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
			"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
		if err != nil {
			return nil, err
		}
		img.config = newBlob(cfg)
		man, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaManifest,
			"config": ociDescriptor{mediaConfig, img.config.digest, len(cfg)}, "layers": descs})
		if err != nil {
			return nil, err
		}
		img.manifest = newBlob(man)
		imgs[i] = img
	}
	return imgs, nil
}

// client is a minimal OCI distribution client: what docker, crane and containerd do on a push
// (HEAD each blob, monolithic upload of the missing ones, PUT the manifest) and on a pull (GET
// the manifest, then every blob, checking each digest).
type client struct {
	base string
	http *http.Client
}

func newClient(addr string) *client {
	return &client{base: "http://" + addr, http: &http.Client{Timeout: 5 * time.Minute}}
}

func (c *client) do(method, url, contentType string, body []byte, want int) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if method == http.MethodGet && strings.Contains(url, "/manifests/") {
		req.Header.Set("Accept", mediaManifest)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != want {
		return resp, b, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, tailBytes(b, 500))
	}
	return resp, b, nil
}

func (c *client) pushBlob(repo string, b blob) error {
	resp, err := c.http.Head(c.base + "/v2/" + repo + "/blobs/" + b.digest)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	resp, _, err = c.do(http.MethodPost, c.base+"/v2/"+repo+"/blobs/uploads/", "", nil, http.StatusAccepted)
	if err != nil {
		return err
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("upload of %s: %w", b.digest, err)
	}
	q := loc.Query()
	q.Set("digest", b.digest)
	loc.RawQuery = q.Encode()
	_, _, err = c.do(http.MethodPut, loc.String(), "application/octet-stream", b.data, http.StatusCreated)
	return err
}

func (c *client) push(img benchImage) error {
	for _, b := range append([]blob{img.config}, img.layers...) {
		if err := c.pushBlob(img.repo, b); err != nil {
			return err
		}
	}
	_, _, err := c.do(http.MethodPut, c.base+"/v2/"+img.repo+"/manifests/"+img.tag, mediaManifest, img.manifest.data, http.StatusCreated)
	return err
}

func (c *client) getBlob(repo, digest string) error {
	_, b, err := c.do(http.MethodGet, c.base+"/v2/"+repo+"/blobs/"+digest, "", nil, http.StatusOK)
	if err != nil {
		return err
	}
	if got := newBlob(b).digest; got != digest {
		return fmt.Errorf("%s: blob %s came back as %s", repo, digest, got)
	}
	return nil
}

func (c *client) pull(img benchImage) error {
	_, man, err := c.do(http.MethodGet, c.base+"/v2/"+img.repo+"/manifests/"+img.tag, "", nil, http.StatusOK)
	if err != nil {
		return err
	}
	var m struct {
		Config ociDescriptor   `json:"config"`
		Layers []ociDescriptor `json:"layers"`
	}
	if err := json.Unmarshal(man, &m); err != nil {
		return fmt.Errorf("%s manifest: %w", img.repo, err)
	}
	if got := newBlob(man).digest; got != img.manifest.digest {
		return fmt.Errorf("%s: manifest came back as %s, pushed %s", img.repo, got, img.manifest.digest)
	}
	for _, d := range append([]ociDescriptor{m.Config}, m.Layers...) {
		if err := c.getBlob(img.repo, d.Digest); err != nil {
			return err
		}
	}
	return nil
}

// pushAll pushes images to addr with the given concurrency.
func pushAll(addr string, imgs []benchImage, workers int) error {
	c := newClient(addr)
	return parallel(len(imgs), workers, func(i int) error { return c.push(imgs[i]) })
}

// pullAll pulls every image from addr, reading and checking every blob.
func pullAll(addr string, imgs []benchImage, workers int) error {
	c := newClient(addr)
	return parallel(len(imgs), workers, func(i int) error { return c.pull(imgs[i]) })
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first error.
func parallel(n, workers int, fn func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex // guards first
	var first error
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func (s *Suite) registry() ([]Row, error) {
	n := pick(s, 50, 10)
	pushName, pullName := fmt.Sprintf("registry push of %d images", n), fmt.Sprintf("registry pull of %d images", n)
	bin, err := s.registryBin()
	if err != nil {
		return []Row{{Name: pushName, Skipped: err.Error(), Mode: "distribution", Target: "≥ 0.8× native"},
			{Name: pullName, Skipped: err.Error(), Mode: "distribution", Target: "≥ 0.8× native"}}, nil
	}
	const layers, layerSize = 3, 512 << 10
	imgs, err := makeImages(n, layers, layerSize, "bench/img")
	if err != nil {
		return nil, err
	}
	base := filepath.Join(s.scratch, "registry")
	defer os.RemoveAll(base)
	var push, pull [3][]float64
	var findings []int
	for r := 0; r < s.cfg.Repeat; r++ {
		for i, target := range []string{"native", "loopback", "trowfs"} {
			dir, err := s.dir("registry", fmt.Sprintf("%s-%d", target, r))
			if err != nil {
				return nil, err
			}
			data := filepath.Join(dir, "data")
			if err := os.Mkdir(data, 0o755); err != nil {
				return nil, err
			}
			root := data
			var m *Mount
			switch target {
			case "loopback":
				m, err = s.mountLoopback(data, filepath.Join(dir, "mnt"))
			case "trowfs":
				m, err = s.mountTrowfs(data, filepath.Join(dir, "mnt"), "--layout", "distribution")
			}
			if err != nil {
				return nil, err
			}
			if m != nil {
				root = m.Mnt
			}
			tp, tl, nf, err := s.pushPull(bin, root, dir, imgs, m != nil && m.Kind == KindTrowfs)
			if m != nil {
				if serr := m.Stop(); err == nil {
					err = serr
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", target, err)
			}
			push[i], pull[i] = append(push[i], tp), append(pull[i], tl)
			if target == "trowfs" {
				findings = append(findings, nf)
			}
			_ = os.RemoveAll(dir)
		}
	}
	note := fmt.Sprintf("%d images of %d × %d KiB layers, 4 concurrent clients; registry root on the native directory, the loopback mount or trowfs (--layout distribution); .state findings after each trowfs push: %v",
		n, layers, layerSize>>10, findings)
	rows := []Row{
		{Name: pushName, Unit: "s", Native: Median(push[0]), Loopback: Median(push[1]), Trowfs: Median(push[2]), Mode: "passthrough", Target: "≥ 0.8× native",
			Note: note + "; " + noise(Spread(push[0]), Spread(push[1]), Spread(push[2]))},
		{Name: pullName, Unit: "s", Native: Median(pull[0]), Loopback: Median(pull[1]), Trowfs: Median(pull[2]), Mode: "passthrough", Target: "≥ 0.8× native",
			Note: noise(Spread(pull[0]), Spread(pull[1]), Spread(pull[2]))},
	}
	for i := range rows {
		ok := *atLeast(rows[i].VsNative(), 0.8)
		for _, f := range findings {
			if f != 0 {
				ok, rows[i].Broken = false, true
			}
		}
		rows[i].Pass = &ok
	}
	return rows, nil
}

// pushPull runs a registry on root, pushes and pulls imgs, and returns both times in seconds and,
// on trowfs, the number of findings in the root .state once the mount has settled.
func (s *Suite) pushPull(bin, root, cfgDir string, imgs []benchImage, onTrowfs bool) (float64, float64, int, error) {
	reg, err := s.startRegistry(bin, root, cfgDir)
	if err != nil {
		return 0, 0, 0, err
	}
	defer reg.stop()
	start := time.Now()
	if err := pushAll(reg.addr, imgs, 4); err != nil {
		return 0, 0, 0, fmt.Errorf("push: %w", err)
	}
	tp := time.Since(start).Seconds()
	start = time.Now()
	if err := pullAll(reg.addr, imgs, 4); err != nil {
		return 0, 0, 0, fmt.Errorf("pull: %w", err)
	}
	tl := time.Since(start).Seconds()
	findings := 0
	if onTrowfs {
		st, err := waitSettled(root, 5*time.Minute)
		if err != nil {
			return 0, 0, 0, err
		}
		findings = st.FindingsCount
	}
	return tp, tl, findings, nil
}

// gcSummary is garbage-collect's summary line.
var gcSummary = regexp.MustCompile(`(?m)^(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion`)

func (s *Suite) consistency() ([]Row, error) {
	blobs := pick(s, 10000, 1000)
	rowName := fmt.Sprintf("is the registry consistent? %dk blobs", blobs/1000)
	target := "faster than garbage-collect --dry-run"
	bin, err := s.registryBin()
	if err != nil {
		return []Row{{Name: rowName, Skipped: err.Error(), Mode: "distribution", Target: target}}, nil
	}
	// Each image is a config, two layers and a manifest: 4 blobs.
	imgs, err := makeImages(blobs/4, 2, 1024, "bench/c")
	if err != nil {
		return nil, err
	}
	base, err := s.dir("consistency")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(base)
	data := filepath.Join(base, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return nil, err
	}
	s.logf("   pushing %d images (%d blobs) to a registry on the native directory", len(imgs), blobs)
	reg, err := s.startRegistry(bin, data, base)
	if err != nil {
		return nil, err
	}
	err = pushAll(reg.addr, imgs, 8)
	reg.stop()
	if err != nil {
		return nil, err
	}
	var gcs []float64
	var marked string
	for r := 0; r < s.cfg.Repeat; r++ {
		start := time.Now()
		out, err := runCmd(context.Background(), 10*time.Minute, bin, "garbage-collect", "--dry-run", reg.config)
		if err != nil {
			return nil, err
		}
		gcs = append(gcs, time.Since(start).Seconds())
		m := gcSummary.FindStringSubmatch(string(out))
		if m == nil {
			return nil, fmt.Errorf("garbage-collect: no summary line:\n%s", tailBytes(out, 2000))
		}
		marked = m[0]
		if m[1] != strconv.Itoa(blobs) || m[2] != "0" || m[3] != "0" {
			return nil, fmt.Errorf("garbage-collect --dry-run on a consistent registry of %d blobs: %q", blobs, m[0])
		}
	}
	mnt := filepath.Join(base, "mnt")
	tr, err := s.mountTrowfs(data, mnt, "--layout", "distribution")
	if err != nil {
		return nil, err
	}
	st, err := waitSettled(mnt, 10*time.Minute)
	if err != nil {
		tr.Stop()
		return nil, err
	}
	var cats []float64
	for r := 0; r < s.cfg.Repeat; r++ {
		start := time.Now()
		if _, err := os.ReadFile(filepath.Join(mnt, ".state")); err != nil {
			tr.Stop()
			return nil, err
		}
		cats = append(cats, time.Since(start).Seconds())
	}
	if err := tr.Stop(); err != nil {
		return nil, err
	}
	// After a restart: the time to mount from the snapshot and answer.
	var restarts []float64
	for r := 0; r < s.cfg.Repeat; r++ {
		tr, err := s.mountTrowfs(data, mnt, "--layout", "distribution")
		if err != nil {
			return nil, err
		}
		start := time.Now()
		_, err = os.ReadFile(filepath.Join(mnt, ".state"))
		d := tr.Startup + time.Since(start)
		if serr := tr.Stop(); err == nil {
			err = serr
		}
		if err != nil {
			return nil, err
		}
		restarts = append(restarts, d.Seconds())
	}
	r1 := Row{Name: rowName + " (cat .state)", Unit: "s", Native: Median(gcs), Loopback: NA, Trowfs: Median(cats), Mode: "mounted", Target: target,
		Note: fmt.Sprintf("native column = `registry garbage-collect --dry-run` on the same data (%s); .state: %d files, %d findings; %s",
			marked, st.Files, st.FindingsCount, noise(Spread(gcs), Spread(cats)))}
	r1.Pass = atLeast(r1.VsNative(), 1)
	ok := *r1.Pass && st.FindingsCount == 0
	r1.Pass, r1.Broken = &ok, st.FindingsCount != 0
	r2 := Row{Name: rowName + " (mount from snapshot + cat .state)", Unit: "s", Native: Median(gcs), Loopback: NA, Trowfs: Median(restarts),
		Mode: "restart", Target: target, Note: noise(Spread(restarts))}
	r2.Pass = atLeast(r2.VsNative(), 1)
	return []Row{r1, r2}, nil
}
