package integration

// deploy/grafana and deploy/prometheus use only metrics a real mount emits and docs/api.md
// documents, and the alert rules cover what an operator must hear about.

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
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
	// One rule for each condition the operator must hear about.
	for _, name := range []string{"TrowfsMismatchedBlobs", "TrowfsMissingBlobs", "TrowfsDanglingBlobsGrowing", "TrowfsScrubNotRun", "TrowfsSnapshotNotWritten", "TrowfsMountUnhealthy"} {
		if !strings.Contains(alerts, "- alert: "+name+"\n") {
			t.Errorf("alerts.yml has no rule %s", name)
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
	trowfsbin.Start(t, "", "", "--listen", "unix:"+sock)
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
}
