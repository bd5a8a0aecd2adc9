package api

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// MetricsContentType is the Content-Type of the Prometheus text exposition
// format written by [WriteMetrics].
const MetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// Metric types WriteMetrics accepts in [Metric.Type].
const (
	TypeCounter = "counter"
	TypeGauge   = "gauge"
)

// MetricError reports a sample WriteMetrics cannot write.
type MetricError struct {
	Name   string // metric name as given
	Reason string
}

func (e *MetricError) Error() string {
	return fmt.Sprintf("metric %q: %s", e.Name, e.Reason)
}

// WriteMetrics writes ms in the Prometheus text exposition format 0.0.4:
// families sorted by name, each with one HELP and one TYPE line, then its
// samples sorted by label set, labels sorted by name, label values and help
// text escaped. The output depends only on the set of samples, not on their
// order. Everything is validated before the first byte is written: on a bad
// name, label, type, a disagreement on Help or Type between samples of the
// same name, or a duplicate label set, nothing is written and a *MetricError
// is returned.
func WriteMetrics(w io.Writer, ms []Metric) error {
	type sample struct {
		key    string // canonical label set, for sorting and duplicates
		labels string // rendered {a="b",...} or ""
		value  float64
	}
	type family struct {
		help, typ string
		samples   []sample
	}
	fams := make(map[string]*family)
	for _, m := range ms {
		if !validMetricName(m.Name) {
			return &MetricError{Name: m.Name, Reason: "invalid metric name"}
		}
		if m.Type != TypeCounter && m.Type != TypeGauge {
			return &MetricError{Name: m.Name, Reason: fmt.Sprintf("type %q is not counter or gauge", m.Type)}
		}
		f := fams[m.Name]
		if f == nil {
			f = &family{help: m.Help, typ: m.Type}
			fams[m.Name] = f
		} else {
			if f.typ != m.Type {
				return &MetricError{Name: m.Name, Reason: fmt.Sprintf("type %q disagrees with %q", m.Type, f.typ)}
			}
			if f.help != m.Help {
				return &MetricError{Name: m.Name, Reason: "help text disagrees between samples"}
			}
		}
		names := make([]string, 0, len(m.Labels))
		for k := range m.Labels {
			if !validLabelName(k) {
				return &MetricError{Name: m.Name, Reason: fmt.Sprintf("invalid label name %q", k)}
			}
			names = append(names, k)
		}
		slices.Sort(names)
		var lb strings.Builder
		var key strings.Builder
		if len(names) > 0 {
			lb.WriteByte('{')
			for i, k := range names {
				// The format requires UTF-8; a path with other bytes is
				// shown with replacement characters.
				v := strings.ToValidUTF8(m.Labels[k], "\uFFFD")
				if i > 0 {
					lb.WriteByte(',')
				}
				lb.WriteString(k)
				lb.WriteString(`="`)
				lb.WriteString(escapeLabelValue(v))
				lb.WriteByte('"')
				// NUL cannot appear in a label name; it separates fields
				// unambiguously in the sort key.
				key.WriteString(k)
				key.WriteByte(0)
				key.WriteString(v)
				key.WriteByte(0)
			}
			lb.WriteByte('}')
		}
		f.samples = append(f.samples, sample{key: key.String(), labels: lb.String(), value: m.Value})
	}

	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	slices.Sort(names)

	var buf bytes.Buffer
	for _, n := range names {
		f := fams[n]
		slices.SortFunc(f.samples, func(a, b sample) int { return strings.Compare(a.key, b.key) })
		for i := 1; i < len(f.samples); i++ {
			if f.samples[i].key == f.samples[i-1].key {
				return &MetricError{Name: n, Reason: "duplicate label set " + f.samples[i].labels}
			}
		}
		if f.help != "" {
			fmt.Fprintf(&buf, "# HELP %s %s\n", n, escapeHelp(strings.ToValidUTF8(f.help, "\uFFFD")))
		}
		fmt.Fprintf(&buf, "# TYPE %s %s\n", n, f.typ)
		for _, s := range f.samples {
			buf.WriteString(n)
			buf.WriteString(s.labels)
			buf.WriteByte(' ')
			buf.WriteString(formatValue(s.value))
			buf.WriteByte('\n')
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// validMetricName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || c == ':' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z'):
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// validLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]* and does
// not start with "__" (reserved by Prometheus).
func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z'):
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// escapeLabelValue escapes backslash, double quote and line feed, as the
// text format requires inside label values.
func escapeLabelValue(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// escapeHelp escapes backslash and line feed, as the text format requires in
// HELP lines.
func escapeHelp(s string) string {
	if !strings.ContainsAny(s, "\\\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// formatValue renders a sample value the way Prometheus parses it.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
