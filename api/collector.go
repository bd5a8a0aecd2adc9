package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// MetricsCollectors is an optional extension of [Backend]: collectors it
// returns (histograms, say) are registered once, when the Server is created,
// and served on /metrics beside the Backend's samples.
type MetricsCollectors interface {
	Collectors() []prometheus.Collector
}

// backendCollector turns the Backend's samples into const metrics at scrape
// time: Metrics is called once per scrape, so the values are the backend's
// own, read together. It is an unchecked collector (Describe sends nothing):
// the set of families is the backend's to choose.
type backendCollector struct{ b Backend }

func (backendCollector) Describe(chan<- *prometheus.Desc) {}

func (c backendCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.b.Metrics() {
		ch <- constMetric(m)
	}
}

// constMetric converts one sample; a sample that cannot be converted
// becomes an invalid metric, which fails the scrape (HTTP 500) rather than
// being dropped silently.
func constMetric(m Metric) prometheus.Metric {
	names := make([]string, 0, len(m.Labels))
	for k := range m.Labels {
		names = append(names, k)
	}
	slices.Sort(names)
	values := make([]string, len(names))
	for i, k := range names {
		// The format requires UTF-8; a path with other bytes is shown with
		// replacement characters.
		values[i] = strings.ToValidUTF8(m.Labels[k], "\uFFFD")
	}
	desc := prometheus.NewDesc(m.Name, strings.ToValidUTF8(m.Help, "\uFFFD"), names, nil)
	var vt prometheus.ValueType
	switch m.Type {
	case TypeCounter:
		vt = prometheus.CounterValue
	case TypeGauge:
		vt = prometheus.GaugeValue
	default:
		return prometheus.NewInvalidMetric(desc, &MetricError{Name: m.Name, Reason: fmt.Sprintf("type %q is not counter or gauge", m.Type)})
	}
	for _, k := range names {
		if !validLabelName(k) {
			return prometheus.NewInvalidMetric(desc, &MetricError{Name: m.Name, Reason: fmt.Sprintf("invalid label name %q", k)})
		}
	}
	if !validMetricName(m.Name) {
		return prometheus.NewInvalidMetric(desc, &MetricError{Name: m.Name, Reason: "invalid metric name"})
	}
	cm, err := prometheus.NewConstMetric(desc, vt, m.Value, values...)
	if err != nil {
		return prometheus.NewInvalidMetric(desc, &MetricError{Name: m.Name, Reason: err.Error()})
	}
	return cm
}

// metricsRegistry is the private registry /metrics serves: the Backend's
// samples, its extra collectors, and the standard Go and process collectors.
func metricsRegistry(b Backend) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		backendCollector{b},
	}
	if mc, ok := b.(MetricsCollectors); ok {
		cs = append(cs, mc.Collectors()...)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// getMetrics gathers once, so that a sample that cannot be served is a JSON
// error like every other error of the endpoint, then lets promhttp write the
// families: it negotiates the format (text 0.0.4 by default, OpenMetrics or
// protobuf when asked) and compresses when the client accepts it.
func (s *Server) getMetrics(w http.ResponseWriter, r *http.Request) {
	if s.reg == nil {
		s.writeError(w, r, http.StatusInternalServerError, "internal error: metrics collectors are not registered")
		return
	}
	mfs, err := s.reg.Gather()
	if err != nil {
		s.log.Error("api: cannot gather metrics", "err", err)
		s.writeError(w, r, http.StatusInternalServerError, "internal error gathering metrics")
		return
	}
	promhttp.HandlerFor(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil }),
		promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}).ServeHTTP(w, r)
}
