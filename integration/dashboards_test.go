package integration

// deploy/grafana and deploy/prometheus use only metrics a real mount emits and docs/api.md
// documents, and the alert rules cover what an operator must hear about.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// unixDial dials the unix socket sock whatever the address.
func unixDial(sock string) func(ctx context.Context, _, _ string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}
}

// unixGet returns a GET function for the endpoint listening on the unix socket sock.
func unixGet(t *testing.T, sock string) func(path string) (int, string) {
	c := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: unixDial(sock)}}
	return func(path string) (int, string) {
		t.Helper()
		resp, err := c.Get("http://localhost" + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode, string(b)
	}
}

var metricName = regexp.MustCompile(`\btrowfs_[a-z_]+`)

func TestDashboardAndAlertsUseEmittedDocumentedMetrics(t *testing.T) {
	dash := readRepoFile(t, filepath.Join("deploy", "grafana", "trowfs.json"))
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal([]byte(dash), &d); err != nil {
		t.Fatalf("deploy/grafana/trowfs.json: %v", err)
	}
	if len(d.Panels) == 0 {
		t.Fatal("dashboard has no panels")
	}
	alerts := readRepoFile(t, filepath.Join("deploy", "prometheus", "alerts.yml"))
	if strings.Contains(alerts, "\t") {
		t.Error("alerts.yml must not contain tabs")
	}
	// One rule for each condition the operator must hear about, on the metric that measures it
	// (not a stand-in that only correlates).
	exprs := map[string]string{} // alert name -> its expr
	var alert string
	for _, line := range strings.Split(alerts, "\n") {
		line = strings.TrimSpace(line)
		if n, ok := strings.CutPrefix(line, "- alert: "); ok {
			alert = n
		} else if e, ok := strings.CutPrefix(line, "expr: "); ok && alert != "" {
			exprs[alert] = e
		}
	}
	for name, metric := range map[string]string{
		"TrowfsMismatchedBlobs":       "trowfs_registry_mismatched_blobs",
		"TrowfsMissingBlobs":          "trowfs_registry_missing_blobs",
		"TrowfsDanglingBlobsGrowing":  "trowfs_registry_dangling_bytes",
		"TrowfsScrubNotRun":           "trowfs_scrub_passes_total",
		"TrowfsSnapshotWriteFailures": "trowfs_snapshot_write_failures_total",
		"TrowfsMountUnhealthy":        "trowfs_mounted_since_timestamp_seconds",
	} {
		e, ok := exprs[name]
		if !ok {
			t.Errorf("alerts.yml has no rule %s", name)
		} else if !slices.Contains(metricName.FindAllString(e, -1), metric) {
			t.Errorf("alert %s does not watch %s: %s", name, metric, e)
		}
	}
	used := map[string][]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, n := range metricName.FindAllString(tg.Expr, -1) {
				used[n] = append(used[n], "trowfs.json panel "+p.Title)
			}
		}
	}
	for _, line := range strings.Split(alerts, "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(line), "expr: "); ok {
			for _, n := range metricName.FindAllString(e, -1) {
				used[n] = append(used[n], "alerts.yml")
			}
		}
	}
	if len(used) == 0 {
		t.Fatal("no trowfs_* metric found in the dashboard or the alerts")
	}

	api := readRepoFile(t, filepath.Join("docs", "api.md"))
	_, section, ok := strings.Cut(api, "\n## Metrics\n")
	if !ok {
		t.Fatal("docs/api.md has no Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(trowfs_[a-z_]+)").FindAllStringSubmatch(section, -1) {
		documented = append(documented, m[1])
	}

	sock := filepath.Join(t.TempDir(), "api.sock")
	p := trowfsbin.Start(t, "", "", "--listen", "unix:"+sock)
	code, body := unixGet(t, sock)("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	var emitted []string
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(strings.Fields(line)[0], "{")
		emitted = append(emitted, name)
	}
	for n, where := range used {
		if !slices.Contains(emitted, n) {
			t.Errorf("%s uses %s, which /metrics of a mount does not emit", where[0], n)
		}
		if !slices.Contains(documented, n) {
			t.Errorf("%s uses %s, which docs/api.md does not document", where[0], n)
		}
	}
	// trowfs_registry_dangling_bytes is the report's dangling_bytes: a stray blob (named by its
	// digest, referenced by no manifest) written through the mount shows in both.
	stray := []byte("a blob no manifest references")
	name := fmt.Sprintf("%x", sha256.Sum256(stray))
	if err := os.WriteFile(filepath.Join(p.Mnt, "blobs", "sha256", name), stray, 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		_, repBody := unixGet(t, sock)("/v1/registry")
		var rep struct {
			DanglingBytes int64 `json:"dangling_bytes"`
		}
		if err := json.Unmarshal([]byte(repBody), &rep); err != nil {
			t.Fatalf("/v1/registry: %v", err)
		}
		_, body := unixGet(t, sock)("/metrics")
		v := metricValue(t, body, "trowfs_registry_dangling_bytes")
		if rep.DanglingBytes >= int64(len(stray)) && v == float64(rep.DanglingBytes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trowfs_registry_dangling_bytes = %v, /v1/registry dangling_bytes = %d; want equal, with the %d-byte stray blob", v, rep.DanglingBytes, len(stray))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metricValue returns the value of the unlabelled sample name in a /metrics body.
func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no sample %s", name)
	return 0
}

// A checkpoint that cannot be written counts in trowfs_snapshot_write_failures_total, the
// mount keeps serving, and the next checkpoint after the cause is gone succeeds. The failure
// is real: DATA/.trowfs/tree.snap is made a directory, so the rename that publishes the new
// snapshot fails (EISDIR) even for root, whom permissions would not stop.
func TestSnapshotWriteFailuresCounted(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	p := trowfsbin.Start(t, "", "", "--listen", "unix:"+sock, "--checkpoint-interval", "100ms")
	get := unixGet(t, sock)
	metrics := func() string {
		t.Helper()
		code, body := get("/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d %s", code, body)
		}
		return body
	}
	const failures = "trowfs_snapshot_write_failures_total"
	if v := metricValue(t, metrics(), failures); v != 0 {
		t.Fatalf("%s = %v on a fresh mount, want 0", failures, v)
	}

	snap := filepath.Join(p.Data, ".trowfs", "tree.snap")
	if err := os.RemoveAll(snap); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(snap, "in-the-way"), 0o700); err != nil {
		t.Fatal(err)
	}
	// A change through the mount, so that the next checkpoint has something to write.
	if err := os.WriteFile(filepath.Join(p.Mnt, "after-sabotage"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitMetric := func(what string, ok func(body string) bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; {
			if ok(metrics()) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15 s; log:\n%s", what, p.Stderr())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitMetric("the failed checkpoint is counted", func(b string) bool { return metricValue(t, b, failures) >= 2 })
	if !strings.Contains(p.Stderr(), "checkpoint failed") {
		t.Errorf("the failed checkpoint is not logged:\n%s", p.Stderr())
	}
	// Bookkeeping failing never fails the registry: the mount still reads and writes.
	if err := os.WriteFile(filepath.Join(p.Mnt, "still-writable"), []byte("y"), 0o644); err != nil {
		t.Fatalf("write through the mount while checkpoints fail: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(p.Mnt, "after-sabotage")); err != nil || string(b) != "x" {
		t.Fatalf("read through the mount while checkpoints fail: %q %v", b, err)
	}

	repaired := time.Now()
	if err := os.RemoveAll(snap); err != nil {
		t.Fatal(err)
	}
	waitMetric("a checkpoint succeeds once tree.snap can be replaced", func(b string) bool {
		return metricValue(t, b, "trowfs_snapshot_last_write_timestamp_seconds") >= float64(repaired.UnixNano())/1e9
	})
	body := metrics()
	n := metricValue(t, body, failures)
	time.Sleep(500 * time.Millisecond) // several checkpoint intervals
	if m := metricValue(t, metrics(), failures); m != n {
		t.Errorf("%s rose from %v to %v after the cause was removed", failures, n, m)
	}
	if fi, err := os.Stat(snap); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("tree.snap after the repair: %v %v", fi, err)
	}
}
