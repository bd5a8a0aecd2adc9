package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trowfs/trowfs/api"
	"github.com/trowfs/trowfs/internal/tracker"
)

// histograms are the latency metrics of docs/api.md. The server owns them; the tracker reports
// into them through its OnCommitHash and OnRunEnd hooks, and checkpoints observe directly.
type histograms struct {
	commitHash prometheus.Histogram
	runs       *prometheus.HistogramVec // by kind
	snapshot   prometheus.Histogram
}

func newHistograms() *histograms {
	h := &histograms{
		// 0.5 ms (a small manifest) to about 2 min (a multi-GiB layer at ~50 MB/s).
		commitHash: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trowfs_commit_hash_duration_seconds",
			Help:    "Seconds each pass of hashing that commits a digest took (close, rescan, load).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		// 0.1 s to about 7 h: a throttled scrub pass of a large registry takes hours.
		runs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trowfs_verify_run_duration_seconds",
			Help:    "Seconds verification runs and scrub passes took, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.1, 4, 10),
		}, []string{"kind"}),
		// 1 ms to about 4 min.
		snapshot: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trowfs_snapshot_write_duration_seconds",
			Help:    "Seconds each snapshot write took (checkpoints and the one at unmount).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	// Every series exists from the first scrape.
	for _, k := range []string{tracker.RunFull, tracker.RunQuick, tracker.RunScrub} {
		h.runs.WithLabelValues(k)
	}
	return h
}

func (h *histograms) observeCommitHash(d time.Duration) {
	h.commitHash.Observe(d.Seconds())
}

func (h *histograms) observeRun(kind string, d time.Duration) {
	h.runs.WithLabelValues(kind).Observe(d.Seconds())
}

func (h *histograms) observeSnapshot(d time.Duration) {
	h.snapshot.Observe(d.Seconds())
}

// Collectors hands the histograms to the endpoint's registry (api.MetricsCollectors).
func (b backend) Collectors() []prometheus.Collector {
	h := b.s.hist
	return []prometheus.Collector{h.commitHash, h.runs, h.snapshot}
}

var _ api.MetricsCollectors = backend{}
