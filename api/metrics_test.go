package api

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// parsedSample is one sample line read back from the text format.
type parsedSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseExposition is an independent reader of the text format 0.0.4 that
// checks what WriteMetrics promises: one TYPE (and at most one HELP) line per
// name, before its samples; families contiguous and sorted by name; every
// sample line `name{labels} value` with valid names, escapes and values; no
// series twice.
func parseExposition(text string) (samples []parsedSample, help, types map[string]string, err error) {
	help, types = map[string]string{}, map[string]string{}
	if text != "" && !strings.HasSuffix(text, "\n") {
		return nil, nil, nil, errors.New("output does not end with a newline")
	}
	var order []string // family names in order of appearance
	seen := map[string]bool{}
	current := ""
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if text == "" {
			break
		}
		fail := func(f string, a ...any) error { return fmt.Errorf("line %d %q: %s", i+1, line, fmt.Sprintf(f, a...)) }
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			kw, rest, _ := strings.Cut(rest, " ")
			name, val, _ := strings.Cut(rest, " ")
			if !validMetricName(name) {
				return nil, nil, nil, fail("bad name in comment")
			}
			if name != current {
				if seen[name] {
					return nil, nil, nil, fail("family %s is not contiguous", name)
				}
				seen[name], current = true, name
				order = append(order, name)
			}
			switch kw {
			case "HELP":
				if _, dup := help[name]; dup {
					return nil, nil, nil, fail("second HELP")
				}
				if _, typed := types[name]; typed {
					return nil, nil, nil, fail("HELP after TYPE")
				}
				h, err := unescape(val, false)
				if err != nil {
					return nil, nil, nil, fail("%v", err)
				}
				help[name] = h
			case "TYPE":
				if _, dup := types[name]; dup {
					return nil, nil, nil, fail("second TYPE")
				}
				if val != "counter" && val != "gauge" {
					return nil, nil, nil, fail("type %q", val)
				}
				types[name] = val
			default:
				return nil, nil, nil, fail("unknown comment")
			}
			continue
		}
		s, err := parseSampleLine(line)
		if err != nil {
			return nil, nil, nil, fail("%v", err)
		}
		if s.name != current || types[s.name] == "" {
			return nil, nil, nil, fail("sample outside its family or before TYPE")
		}
		samples = append(samples, s)
	}
	if !slices.IsSorted(order) {
		return nil, nil, nil, fmt.Errorf("families not sorted: %q", order)
	}
	series := map[string]bool{}
	for _, s := range samples {
		k := s.name + fmt.Sprint(sortedLabels(s.labels))
		if series[k] {
			return nil, nil, nil, fmt.Errorf("series %s twice", k)
		}
		series[k] = true
	}
	return samples, help, types, nil
}

func sortedLabels(m map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

func parseSampleLine(line string) (parsedSample, error) {
	s := parsedSample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, errors.New("no value")
	}
	s.name = line[:i]
	if !validMetricName(s.name) {
		return s, fmt.Errorf("bad name %q", s.name)
	}
	rest := line[i:]
	if strings.HasPrefix(rest, "{") {
		rest = rest[1:]
		var prev string
		for {
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return s, errors.New("label without =\"")
			}
			name := rest[:eq]
			if !validLabelName(name) {
				return s, fmt.Errorf("bad label name %q", name)
			}
			if name <= prev {
				return s, fmt.Errorf("labels not sorted or repeated at %q", name)
			}
			prev = name
			rest = rest[eq+2:]
			// Find the closing quote, skipping escapes.
			end := -1
			for j := 0; j < len(rest); j++ {
				if rest[j] == '\\' {
					j++
					continue
				}
				if rest[j] == '"' {
					end = j
					break
				}
			}
			if end < 0 {
				return s, errors.New("unterminated label value")
			}
			v, err := unescape(rest[:end], true)
			if err != nil {
				return s, err
			}
			s.labels[name] = v
			rest = rest[end+1:]
			if strings.HasPrefix(rest, ",") {
				rest = rest[1:]
				continue
			}
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			return s, errors.New("expected , or } after a label")
		}
	}
	val, ok := strings.CutPrefix(rest, " ")
	if !ok || val == "" || strings.Contains(val, " ") {
		return s, fmt.Errorf("want exactly one space then a value (no timestamp), got %q", rest)
	}
	f, err := strconv.ParseFloat(val, 64)
	if err != nil {
		return s, fmt.Errorf("value %q: %v", val, err)
	}
	s.value = f
	return s, nil
}

// unescape undoes the text format's escapes: \\ and \n, and \" in label values.
func unescape(s string, label bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\n' {
			return "", errors.New("raw newline")
		}
		if label && c == '"' {
			return "", errors.New("unescaped quote")
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(s) {
			return "", errors.New("trailing backslash")
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case '"':
			if !label {
				return "", errors.New(`\" in HELP`)
			}
			b.WriteByte('"')
		default:
			return "", fmt.Errorf("unknown escape \\%c", s[i])
		}
	}
	return b.String(), nil
}

func sampleMetrics() []Metric {
	return []Metric{
		{Name: "trowfs_ops_total", Help: "FUSE operations by kind.", Type: TypeCounter, Labels: map[string]string{"op": "write"}, Value: 42},
		{Name: "trowfs_ops_total", Help: "FUSE operations by kind.", Type: TypeCounter, Labels: map[string]string{"op": "rename"}, Value: 7},
		{Name: "trowfs_findings", Help: "Findings of the last run.\nBy kind, with a \\ backslash.", Type: TypeGauge,
			Labels: map[string]string{"kind": `odd "quoted"\ value` + "\nwith a newline", "path": "blobs/sha256:ab"}, Value: 1},
		{Name: "trowfs_findings", Help: "Findings of the last run.\nBy kind, with a \\ backslash.", Type: TypeGauge,
			Labels: map[string]string{"kind": "dangling"}, Value: 0},
		{Name: "trowfs_registry_in_sync", Help: "1 when in sync.", Type: TypeGauge, Value: 1},
		{Name: "trowfs_bytes_hashed_total", Type: TypeCounter, Value: 1 << 40},
		{Name: "trowfs_scrub_progress_ratio", Help: "Scrub progress.", Type: TypeGauge, Value: 0.125},
		{Name: "trowfs_weird", Help: "Special values.", Type: TypeGauge, Labels: map[string]string{"v": "nan"}, Value: math.NaN()},
		{Name: "trowfs_weird", Help: "Special values.", Type: TypeGauge, Labels: map[string]string{"v": "inf"}, Value: math.Inf(1)},
		{Name: "trowfs_weird", Help: "Special values.", Type: TypeGauge, Labels: map[string]string{"v": "-inf"}, Value: math.Inf(-1)},
		{Name: "trowfs_weird", Help: "Special values.", Type: TypeGauge, Labels: map[string]string{"v": "tiny"}, Value: 1e-300},
	}
}

func TestWriteMetricsRoundTrip(t *testing.T) {
	in := sampleMetrics()
	var buf bytes.Buffer
	if err := WriteMetrics(&buf, in); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	samples, help, types, err := parseExposition(text)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if len(samples) != len(in) {
		t.Fatalf("%d samples read back, wrote %d\n%s", len(samples), len(in), text)
	}
	for _, m := range in {
		found := false
		for _, s := range samples {
			sameValue := s.value == m.Value || (math.IsNaN(s.value) && math.IsNaN(m.Value))
			if s.name == m.Name && sameValue && maps.Equal(s.labels, m.Labels) {
				found = true
			}
		}
		if !found {
			t.Errorf("sample %+v not read back\n%s", m, text)
		}
		if types[m.Name] != m.Type {
			t.Errorf("%s: TYPE %q, want %q", m.Name, types[m.Name], m.Type)
		}
		if h, ok := help[m.Name]; m.Help != "" && h != m.Help || m.Help == "" && ok {
			t.Errorf("%s: HELP %q (present %v), want %q", m.Name, h, ok, m.Help)
		}
	}

	// Stable: any input order gives the same bytes.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := slices.Clone(in)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		var again bytes.Buffer
		if err := WriteMetrics(&again, shuffled); err != nil {
			t.Fatal(err)
		}
		if again.String() != text {
			t.Fatalf("output depends on input order:\n%s\nvs\n%s", again.String(), text)
		}
	}
}

// TestWriteMetricsExact pins the format of a small family, byte for byte.
func TestWriteMetricsExact(t *testing.T) {
	var buf bytes.Buffer
	err := WriteMetrics(&buf, []Metric{
		{Name: "b_total", Help: `say "hi" \ bye`, Type: TypeCounter, Labels: map[string]string{"z": "1", "a": `x"y`}, Value: 3},
		{Name: "a", Type: TypeGauge, Value: -0.5},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "# TYPE a gauge\na -0.5\n" +
		"# HELP b_total say \"hi\" \\\\ bye\n# TYPE b_total counter\nb_total{a=\"x\\\"y\",z=\"1\"} 3\n"
	if buf.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", buf.String(), want)
	}
}

func TestWriteMetricsEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMetrics(&buf, nil); err != nil || buf.Len() != 0 {
		t.Fatalf("empty input: %q, %v", buf.String(), err)
	}
}

func TestWriteMetricsInvalidUTF8(t *testing.T) {
	var buf bytes.Buffer
	err := WriteMetrics(&buf, []Metric{{Name: "m", Type: TypeGauge, Labels: map[string]string{"path": "a\xffb"}, Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "m{path=\"a\uFFFDb\"} 1\n"; !strings.HasSuffix(buf.String(), want) {
		t.Fatalf("got %q, want suffix %q", buf.String(), want)
	}
}

// badMetricSets are sample sets neither WriteMetrics nor /metrics may serve.
func badMetricSets() map[string][]Metric {
	g := func(name string, labels map[string]string) Metric {
		return Metric{Name: name, Type: TypeGauge, Labels: labels, Value: 1}
	}
	return map[string][]Metric{
		"empty name":       {g("", nil)},
		"digit first":      {g("1abc", nil)},
		"dash":             {g("trowfs-ops", nil)},
		"bad label":        {g("m", map[string]string{"a-b": "x"})},
		"reserved label":   {g("m", map[string]string{"__name__": "x"})},
		"colon label":      {g("m", map[string]string{"a:b": "x"})},
		"unknown type":     {{Name: "m", Type: "histogram"}},
		"no type":          {{Name: "m"}},
		"type disagrees":   {g("m", map[string]string{"a": "1"}), {Name: "m", Type: TypeCounter, Labels: map[string]string{"a": "2"}}},
		"help disagrees":   {g("m", map[string]string{"a": "1"}), {Name: "m", Type: TypeGauge, Help: "x", Labels: map[string]string{"a": "2"}}},
		"duplicate series": {g("m", map[string]string{"a": "1"}), g("m", map[string]string{"a": "1"})},
		"duplicate bare":   {g("m", nil), g("m", map[string]string{})},
	}
}

func TestWriteMetricsRejects(t *testing.T) {
	g := func(name string, labels map[string]string) Metric {
		return Metric{Name: name, Type: TypeGauge, Labels: labels, Value: 1}
	}
	for name, ms := range badMetricSets() {
		var buf bytes.Buffer
		ok := g("aaa_first", nil)
		err := WriteMetrics(&buf, append([]Metric{ok}, ms...))
		var me *MetricError
		if !errors.As(err, &me) {
			t.Errorf("%s: error %v, want *MetricError", name, err)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: wrote %q before failing", name, buf.String())
		}
	}
}

func TestMetricsHandler(t *testing.T) {
	b := newFakeBackend()
	b.metrics = sampleMetrics()
	ts := newTestServer(t, b, Options{})
	resp, body := ts.do("GET", "/metrics", nil)
	wantStatus(t, resp, body, 200)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, MetricsContentType) {
		t.Errorf("Content-Type %q", ct)
	}
	// The backend's families come out as WriteMetrics writes them; the
	// standard Go and process collectors are there too.
	var own []string
	std := map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSuffix(string(body), "\n"), "\n") {
		f := strings.Fields(line)
		name := f[0]
		if name == "#" {
			name = f[2]
		}
		name, _, _ = strings.Cut(name, "{")
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			std[name] = true
			continue
		}
		if len(f) == 3 && f[1] == "HELP" {
			continue // empty help: client_golang writes the HELP line, WriteMetrics leaves it out
		}
		own = append(own, line)
	}
	for _, n := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if !std[n] {
			t.Errorf("/metrics has no %s", n)
		}
	}
	if _, _, _, err := parseExposition(strings.Join(own, "\n") + "\n"); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	var direct bytes.Buffer
	if err := WriteMetrics(&direct, sampleMetrics()); err != nil || direct.String() != strings.Join(own, "\n")+"\n" {
		t.Fatalf("handler output differs from WriteMetrics (%v):\n%s\nwant:\n%s", err, strings.Join(own, "\n"), direct.String())
	}

	// Asked for it, the handler gzips.
	req, _ := http.NewRequest("GET", ts.hs.URL+"/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	gz, err := ts.hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	gz.Body.Close()
	if ce := gz.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Errorf("Content-Encoding %q with Accept-Encoding: gzip", ce)
	}

	b.set(func(f *fakeBackend) { f.metrics = []Metric{{Name: "bad name", Type: TypeGauge}} })
	resp, body = ts.do("GET", "/metrics", nil)
	wantStatus(t, resp, body, 500)
}

func BenchmarkWriteMetrics(b *testing.B) {
	var ms []Metric
	for i := range 1000 {
		ms = append(ms, Metric{Name: fmt.Sprintf("trowfs_m%d", i%20), Type: TypeGauge,
			Labels: map[string]string{"op": strconv.Itoa(i)}, Value: float64(i)})
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := WriteMetrics(&buf, ms); err != nil {
			b.Fatal(err)
		}
	}
}

// /metrics refuses, with a JSON 500 and no partial page, every sample set WriteMetrics refuses.
func TestMetricsHandlerRejectsBadSamplesWhole(t *testing.T) {
	b := newFakeBackend()
	ts := newTestServer(t, b, Options{})
	for name, ms := range badMetricSets() {
		ms = append([]Metric{{Name: "aaa_first", Type: TypeGauge, Value: 1}}, ms...)
		b.set(func(f *fakeBackend) { f.metrics = ms })
		resp, body := ts.do("GET", "/metrics", nil)
		if resp.StatusCode != 500 || strings.Contains(string(body), "aaa_first") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
}

// A label value that is not UTF-8 is served with U+FFFD rather than failing the scrape.
func TestMetricsHandlerReplacesInvalidUTF8(t *testing.T) {
	b := newFakeBackend()
	b.metrics = []Metric{{Name: "m", Type: TypeGauge, Labels: map[string]string{"path": "a\xffb"}, Value: 1}}
	ts := newTestServer(t, b, Options{})
	resp, body := ts.do("GET", "/metrics", nil)
	wantStatus(t, resp, body, 200)
	if want := "\nm{path=\"a\uFFFDb\"} 1\n"; !strings.Contains(string(body), want) {
		t.Fatalf("no %q in\n%s", want, body)
	}
}
