package server_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/demo"
	"github.com/trowfs/trowfs/server"
)

// scrape returns the samples of /metrics by series (name and labels as written).
func scrape(t *testing.T, get func(string) (int, []byte)) map[string]float64 {
	t.Helper()
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(body)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func metricNames(samples map[string]float64) []string {
	var names []string
	for series := range samples {
		name, _, _ := strings.Cut(series, "{")
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// documentedMetrics lists the metric names of the table in docs/api.md's "Metrics" section.
func documentedMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Metrics\n")
	if !ok {
		t.Fatal("docs/api.md has no Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var names []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(trowfs_[a-z_]+)").FindAllStringSubmatch(section, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return names
}

// The metrics docs/api.md lists are exactly those /metrics emits (for a registry layout), and
// every one of them is there from the first scrape, before any event.
func TestMetricsMatchDocs(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := demo.Generate(data); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	s := start(t, server.Config{Data: data, Listen: "unix:" + sock, WriteMode: "daemon"})
	get := unixClient(t, sock)
	get2 := func(p string) (int, []byte) { c, _, b := get(p); return c, b }
	emitted := metricNames(scrape(t, get2))
	documented := documentedMetrics(t)
	for _, n := range documented {
		if !slices.Contains(emitted, n) {
			t.Errorf("docs/api.md lists %s, which /metrics does not emit", n)
		}
	}
	for _, n := range emitted {
		if !slices.Contains(documented, n) {
			t.Errorf("/metrics emits %s, which docs/api.md does not list", n)
		}
	}

	// A file written through the daemon is hashed as it streams: it counts in all three hashing
	// counters, so bytes/files and bytes/seconds mean what the docs say.
	if !s.Settle(10 * time.Second) {
		t.Fatal("did not settle")
	}
	before := scrape(t, get2)
	content := strings.Repeat("streamed bytes ", 1000)
	if err := os.WriteFile(filepath.Join(s.Mountpoint(), "streamed"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if !s.Settle(10 * time.Second) {
		t.Fatal("did not settle")
	}
	after := scrape(t, get2)
	if d := after["trowfs_files_hashed_total"] - before["trowfs_files_hashed_total"]; d != 1 {
		t.Errorf("files_hashed_total grew by %v for one file, want 1", d)
	}
	if d := after["trowfs_bytes_hashed_total"] - before["trowfs_bytes_hashed_total"]; d != float64(len(content)) {
		t.Errorf("bytes_hashed_total grew by %v for a %d-byte file, want %d", d, len(content), len(content))
	}
	if after["trowfs_hash_seconds_total"] <= before["trowfs_hash_seconds_total"] {
		t.Errorf("hash_seconds_total did not grow: %v -> %v", before["trowfs_hash_seconds_total"], after["trowfs_hash_seconds_total"])
	}
}
