package crdt

import (
	"os"
	"testing"
)

func TestMeasureDiffCostIsLogarithmic(t *testing.T) {
	small := MeasureDiff(100_000, 10)
	t.Log(small)
	if !small.Converged || small.Bytes > 64<<10 {
		t.Fatalf("n=100k k=10: %v", small)
	}
	big := 400_000
	if os.Getenv("TROWFS_PEERS_BIG") != "" {
		big = 1_600_000
	}
	large := MeasureDiff(big, 10)
	t.Log(large)
	if !large.Converged || float64(large.Bytes) > 2*float64(small.Bytes) {
		t.Fatalf("n=%d: %v against %v", big, large, small)
	}
}

func BenchmarkMeasureDiff100k(b *testing.B) {
	for i := 0; i < b.N; i++ {
		c := MeasureDiff(100_000, 10)
		b.ReportMetric(float64(c.Bytes), "bytes/sync")
		b.ReportMetric(float64(c.RoundTrips), "roundtrips/sync")
	}
}
