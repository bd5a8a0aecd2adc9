package tracker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkFullVerify is a mounted full verification run (POST /v1/verify's code path) over
// 512 MiB in 16 files from the page cache, on one worker and on one per CPU: the ratio is what
// the worker pool buys.
func BenchmarkFullVerify(b *testing.B) {
	data := b.TempDir()
	buf := make([]byte, 32<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for i := 0; i < 16; i++ {
		if err := os.WriteFile(filepath.Join(data, fmt.Sprintf("f%02d", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	tr, err := New(Options{Root: data, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Lock(); err != nil {
		b.Fatal(err)
	}
	if _, err := tr.Load(context.Background(), VerifyQuick); err != nil {
		b.Fatal(err)
	}
	if !tr.Drain(time.Minute) {
		b.Fatal("did not settle")
	}
	var cpu [2]time.Duration // process CPU time spent in runs on one worker, on n
	cpuNow := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	run := func(b *testing.B, w int) time.Duration {
		c0 := cpuNow()
		defer func() { cpu[min(w-1, 1)] += cpuNow() - c0 }()
		start := time.Now()
		r, err := tr.StartVerify(RunFull, RunOptions{Workers: w})
		if err != nil {
			b.Fatal(err)
		}
		r.Wait()
		if v := r.View(); v.State != "done" || len(v.Findings) > 0 {
			b.Fatalf("run %s with %d findings", v.State, len(v.Findings))
		}
		return time.Since(start)
	}
	n := runtime.GOMAXPROCS(0)
	// One run on one worker, one on n, alternately, so that a shared machine's changing load
	// falls on both alike; reported: MB/s of each and the speed-up.
	b.Run(fmt.Sprintf("workers=1-vs-%d", n), func(b *testing.B) {
		var one, all time.Duration
		cpu = [2]time.Duration{}
		for b.Loop() {
			one += run(b, 1)
			all += run(b, n)
		}
		mb := float64(b.N) * 16 * 32
		b.ReportMetric(mb/one.Seconds()*1.048576, "MB/s-1-worker")
		b.ReportMetric(mb/all.Seconds()*1.048576, fmt.Sprintf("MB/s-%d-workers", n))
		b.ReportMetric(one.Seconds()/all.Seconds(), "speedup")
		b.ReportMetric(cpu[1].Seconds()/all.Seconds(), fmt.Sprintf("cores-busy-%d-workers", n))
	})
}
