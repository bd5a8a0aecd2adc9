package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/tracker"
)

// CheckpointStall is what one checkpoint did to the mutations running beside it.
type CheckpointStall struct {
	Entries  int
	Hold     time.Duration // the checkpoint's hold of the tracker lock
	Total    time.Duration // the whole checkpoint: encode, write, fsync, rename
	MaxWait  time.Duration // the longest tracker call of a mutation that overlapped the checkpoint
	MaxIdle  time.Duration // the longest one outside it (what a mutation costs anyway)
	Calls    int           // tracker calls of the mutator that overlapped the checkpoint
	Alloc    uint64        // bytes allocated while the checkpoint ran (mutator included)
	TreeHeap uint64        // live heap with the tree built, after a GC
}

// MeasureCheckpointStall builds a tracker over dir (created, must be empty) whose tree holds n
// file entries, then runs one checkpoint while another goroutine performs what the mount reports
// for a registry upload: a create (OpenWrite), its commit (the session's Close, which queues the
// hash) and the rename into place (NameOp, Rename). It times every tracker call.
func MeasureCheckpointStall(dir string, n int) (CheckpointStall, error) {
	res := CheckpointStall{Entries: n}
	for _, d := range []string{"uploads", "blobs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return res, err
		}
	}
	tr, err := tracker.New(tracker.Options{Root: dir, Exclude: []string{"uploads/**"}, HashWorkers: 1})
	if err != nil {
		return res, err
	}
	defer tr.Close()
	if err := tr.Lock(); err != nil {
		return res, err
	}
	var buildErr error
	tr.WithTree(func(t *hashtree.Tree) { buildErr = fillTree(t, n) })
	if buildErr != nil {
		return res, buildErr
	}
	if err := tr.WriteSnapshot(false); err != nil { // first checkpoint: digests computed, file cached
		return res, err
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.TreeHeap = ms.HeapAlloc

	type call struct {
		at  time.Time
		dur time.Duration
	}
	var (
		calls []call
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		mErr  error
	)
	timed := func(fn func()) {
		t0 := time.Now()
		fn()
		calls = append(calls, call{t0, time.Since(t0)})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		body := []byte("trowfs checkpoint bench\n")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			up := fmt.Sprintf("uploads/u%d", i)
			f, err := os.OpenFile(filepath.Join(dir, up), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				mErr = err
				return
			}
			var s *tracker.Session
			timed(func() { s = tr.OpenWrite(up, int(f.Fd()), true) })
			_, err = f.Write(body)
			f.Close()
			timed(s.Close)
			if err != nil {
				mErr = err
				return
			}
			to := fmt.Sprintf("blobs/b%d", i)
			done := tr.NameOp()
			if err := os.Rename(filepath.Join(dir, up), filepath.Join(dir, to)); err != nil {
				done()
				mErr = err
				return
			}
			timed(func() { tr.Rename(up, to, false) })
			done()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	runtime.ReadMemStats(&ms)
	alloc0 := ms.TotalAlloc
	c0 := time.Now()
	err = tr.WriteSnapshot(false)
	c1 := time.Now()
	runtime.ReadMemStats(&ms)
	res.Alloc = ms.TotalAlloc - alloc0
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err != nil {
		return res, err
	}
	if mErr != nil {
		return res, mErr
	}
	res.Hold, res.Total = tr.CheckpointTimes()
	for _, c := range calls {
		end := c.at.Add(c.dur)
		if end.After(c0) && c.at.Before(c1) {
			res.MaxWait = max(res.MaxWait, c.dur)
			res.Calls++
		} else {
			res.MaxIdle = max(res.MaxIdle, c.dur)
		}
	}
	return res, nil
}

// fillTree puts n verified files into t, 1000 to a directory.
func fillTree(t *hashtree.Tree, n int) error {
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("blobs/d%04d/f%07d", i/filesPerDir, i)
		if i%filesPerDir == 0 {
			if err := t.MkdirAll(filepath.Dir(p), 1); err != nil {
				return err
			}
		}
		body := []byte(p)
		e := hashtree.Entry{Kind: hashtree.KindFile, Digest: hashtree.SumBytes(body), Status: hashtree.StatusVerified,
			Meta: hashtree.Meta{Size: int64(len(body)), Mtime: int64(i), Ctime: int64(i), Ino: uint64(i + 1)}, ChangedAt: 1, VerifiedAt: 1}
		if err := t.Put(p, e); err != nil {
			return err
		}
	}
	return nil
}

// checkpoint is the checkpoint workload: the stall a checkpoint of a 1M-entry tree causes.
func (s *Suite) checkpoint() ([]Row, error) {
	n := pick(s, 1_000_000, 100_000)
	label := fmt.Sprintf("%dk", n/1000)
	if n >= 1_000_000 {
		label = fmt.Sprintf("%dM", n/1_000_000)
	}
	var runs []CheckpointStall
	for i := 0; i < max(1, s.cfg.Repeat); i++ {
		dir, err := s.dir("checkpoint", fmt.Sprint(i))
		if err != nil {
			return nil, err
		}
		r, err := MeasureCheckpointStall(dir, n)
		os.RemoveAll(dir)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
		runtime.GC()
	}
	med := func(f func(r CheckpointStall) float64) float64 {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = f(r)
		}
		return Median(xs)
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	wait := med(func(r CheckpointStall) float64 { return ms(r.MaxWait) })
	hold := med(func(r CheckpointStall) float64 { return ms(r.Hold) })
	total := med(func(r CheckpointStall) float64 { return ms(r.Total) })
	idle := med(func(r CheckpointStall) float64 { return ms(r.MaxIdle) })
	calls := med(func(r CheckpointStall) float64 { return float64(r.Calls) })
	alloc := med(func(r CheckpointStall) float64 { return float64(r.Alloc) })
	heap := med(func(r CheckpointStall) float64 { return float64(r.TreeHeap) })
	w := Row{Name: "checkpoint of " + label + " entries: longest mutation wait", Unit: "ms", Native: NA, Loopback: NA, Trowfs: wait,
		Mode: "in-process tracker", Target: "≤ 5 ms", Pass: atMost(wait, 5),
		Note: fmt.Sprintf("create/commit/rename tracker calls beside the checkpoint; %.0f calls overlapped it; longest call outside it %.2f ms; median of %d", calls, idle, len(runs))}
	h := Row{Name: "checkpoint of " + label + " entries: tracker lock held", Unit: "ms", Native: NA, Loopback: NA, Trowfs: hold,
		Mode: "in-process tracker", Target: "info"}
	t := Row{Name: "checkpoint of " + label + " entries: total", Unit: "ms", Native: NA, Loopback: NA, Trowfs: total,
		Mode: "in-process tracker", Target: "info",
		Note: fmt.Sprintf("encode, write, fsync, rename; %.0f MiB allocated meanwhile; tree heap %.0f MiB", alloc/(1<<20), heap/(1<<20))}
	return []Row{w, h, t}, nil
}
