package server_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/trowfs/trowfs/demo"
	"github.com/trowfs/trowfs/internal/server"
	"github.com/trowfs/trowfs/internal/tracker"
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

// families parses a /metrics answer with expfmt and returns each family's type by name
// ("counter", "gauge", "histogram", ...).
func families(t *testing.T, get func(string) (int, []byte)) (map[string]string, map[string]*dto.MetricFamily) {
	t.Helper()
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	types := map[string]string{}
	for name, mf := range mfs {
		types[name] = strings.ToLower(mf.GetType().String())
	}
	return types, mfs
}

// documentedMetrics reads the table of docs/api.md's "Metrics" section: the type of each trowfs_*
// family, and whether the standard go_* and process_* collectors are listed.
func documentedMetrics(t *testing.T) (types map[string]string, std bool) {
	t.Helper()
	b, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Metrics\n")
	if !ok {
		t.Fatal("docs/api.md has no Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	types = map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(trowfs_[a-z_]+)[^|]*\\| ([a-z]+) \\|").FindAllStringSubmatch(section, -1) {
		types[m[1]] = m[2]
	}
	std = regexp.MustCompile("(?m)^\\| `go_\\*`, `process_\\*` \\|.*standard Go and process collectors").MatchString(section)
	return types, std
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
	emitted, _ := families(t, get2)
	documented, std := documentedMetrics(t)
	if len(documented) == 0 {
		t.Fatal("no metric read from docs/api.md")
	}
	for n, typ := range documented {
		switch got, ok := emitted[n]; {
		case !ok:
			t.Errorf("docs/api.md lists %s, which /metrics does not emit", n)
		case got != typ:
			t.Errorf("docs/api.md lists %s as a %s, /metrics emits a %s", n, typ, got)
		}
	}
	for n := range emitted {
		if strings.HasPrefix(n, "go_") || strings.HasPrefix(n, "process_") {
			if !std {
				t.Errorf("/metrics emits %s, and docs/api.md does not list the standard Go and process collectors", n)
			}
			continue
		}
		if _, ok := documented[n]; !ok {
			t.Errorf("/metrics emits %s, which docs/api.md does not list", n)
		}
	}
	for _, n := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := emitted[n]; !ok {
			t.Errorf("/metrics has no %s from the standard collectors", n)
		}
	}

	// A file written through the daemon is hashed as it streams: it counts in all three hashing
	// counters, so bytes/files and bytes/seconds mean what the docs say.
	if !s.Settle(10 * time.Second) {
		t.Fatal("did not settle")
	}
	before := scrape(t, get2)
	_, beforeFams := families(t, get2)
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
	// The streamed hash is one observation of the commit-hash histogram.
	_, afterFams := families(t, get2)
	if d := histCount(t, afterFams, "trowfs_commit_hash_duration_seconds", "") - histCount(t, beforeFams, "trowfs_commit_hash_duration_seconds", ""); d != 1 {
		t.Errorf("trowfs_commit_hash_duration_seconds_count grew by %d for one streamed file, want 1", d)
	}
}

// histCount is the _count of the histogram series name (with label kind=kind when kind is not "").
func histCount(t *testing.T, mfs map[string]*dto.MetricFamily, name, kind string) uint64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok || mf.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("/metrics has no histogram %s", name)
	}
	for _, m := range mf.GetMetric() {
		match := kind == ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "kind" && l.GetValue() == kind {
				match = true
			}
		}
		if match {
			return m.GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("/metrics has no series %s{kind=%q}", name, kind)
	return 0
}

// The latency histograms count through a real mount: a file hashed after its close, a full
// verification run and a checkpoint are each one more observation, with a positive sum.
func TestLatencyHistogramsObserveHashesRunsAndCheckpoints(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	s := start(t, server.Config{Listen: "unix:" + sock, CheckpointInterval: 20 * time.Millisecond})
	get := unixClient(t, sock)
	get2 := func(p string) (int, []byte) { c, _, b := get(p); return c, b }
	if !s.Settle(10 * time.Second) {
		t.Fatal("did not settle")
	}
	_, before := families(t, get2)
	if err := os.WriteFile(filepath.Join(s.Mountpoint(), "closed"), []byte(strings.Repeat("x", 1<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	if !s.Settle(10 * time.Second) {
		t.Fatal("did not settle")
	}
	run, err := s.Tracker().StartVerify(tracker.RunFull, tracker.RunOptions{Ctx: t.Context()})
	if err != nil {
		t.Fatal(err)
	}
	run.Wait()
	var after map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, after = families(t, get2)
		if histCount(t, after, "trowfs_snapshot_write_duration_seconds", "") > histCount(t, before, "trowfs_snapshot_write_duration_seconds", "") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct{ name, kind string }{
		{"trowfs_commit_hash_duration_seconds", ""},
		{"trowfs_verify_run_duration_seconds", tracker.RunFull},
		{"trowfs_snapshot_write_duration_seconds", ""},
	} {
		if d := histCount(t, after, c.name, c.kind) - histCount(t, before, c.name, c.kind); d < 1 {
			t.Errorf("%s{kind=%q}_count did not grow", c.name, c.kind)
		}
	}
	if n := histCount(t, after, "trowfs_verify_run_duration_seconds", tracker.RunQuick); n != 0 {
		t.Errorf("a full run counted as quick: %d", n)
	}
	for _, m := range after["trowfs_commit_hash_duration_seconds"].GetMetric() {
		if m.GetHistogram().GetSampleSum() <= 0 {
			t.Errorf("commit hash histogram sum %v after hashing 1 MiB", m.GetHistogram().GetSampleSum())
		}
	}
}
