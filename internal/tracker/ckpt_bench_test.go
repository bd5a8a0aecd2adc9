package tracker_test

import (
	"testing"

	"github.com/trowfs/trowfs/bench"
)

// BenchmarkCheckpointStall runs one checkpoint of a 1M-entry tree while create/commit/rename
// mutations report to the tracker, and reports the longest mutation wait and the lock hold.
//
//	go test -run '^$' -bench CheckpointStall -benchtime 1x ./internal/tracker/
func BenchmarkCheckpointStall(b *testing.B) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	for i := 0; i < b.N; i++ {
		r, err := bench.MeasureCheckpointStall(b.TempDir(), n)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(r.MaxWait.Microseconds())/1000, "max-wait-ms")
		b.ReportMetric(float64(r.Hold.Microseconds())/1000, "hold-ms")
		b.ReportMetric(float64(r.Total.Microseconds())/1000, "total-ms")
		b.ReportMetric(float64(r.MaxIdle.Microseconds())/1000, "idle-max-ms")
		b.ReportMetric(float64(r.Alloc)/(1<<20), "alloc-MiB")
		b.ReportMetric(float64(r.TreeHeap)/(1<<20), "heap-MiB")
	}
}
