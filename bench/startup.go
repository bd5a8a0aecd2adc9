package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/trowfs/trowfs/hashtree"
)

// filesPerDir is the fan-out of the generated startup tree.
const filesPerDir = 1000

// startupData returns the reusable data directory of n small files, generating it once. The
// cache is keyed by n and marked complete only after generation finished.
func (s *Suite) startupData(n int) (string, error) {
	root := filepath.Join(s.cfg.CacheDir, "startup-"+strconv.Itoa(n))
	data := filepath.Join(root, "data")
	marker := filepath.Join(root, "complete")
	if _, err := os.Stat(marker); err == nil {
		return data, nil
	}
	if IsMounted(data) {
		return "", fmt.Errorf("%s is mounted", data)
	}
	if err := os.RemoveAll(root); err != nil {
		return "", err
	}
	s.logf("   generating %d files in %s (once; reused by later runs)", n, data)
	dirs := (n + filesPerDir - 1) / filesPerDir
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	next := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range next {
				dir := filepath.Join(data, fmt.Sprintf("d%04d", d))
				if err := os.MkdirAll(dir, 0o755); err != nil {
					errs <- err
					return
				}
				for i := d * filesPerDir; i < min(n, (d+1)*filesPerDir); i++ {
					body := binary.BigEndian.AppendUint64([]byte("trowfs bench "), uint64(i))
					if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%07d", i)), body, 0o644); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	var err error
feed:
	for d := 0; d < dirs; d++ {
		select {
		case next <- d:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		return "", err
	}
	return data, os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

func (s *Suite) startup() ([]Row, error) {
	n := pick(s, 1_000_000, 50_000)
	data, err := s.startupData(n)
	if err != nil {
		return nil, err
	}
	mnt := filepath.Join(s.scratch, "startup-mnt")
	findOnce := func() (time.Duration, error) {
		start := time.Now()
		_, err := runCmd(context.Background(), 30*time.Minute, "sh", "-c", `find "$1" -printf '%s %T@\n' > /dev/null`, "sh", data)
		return time.Since(start), err
	}
	if _, err := findOnce(); err != nil { // warm the dentry and inode caches like the mount's walk will
		return nil, err
	}
	// The first mount brings the snapshot up to date (hashing everything if there is none).
	s.logf("   first mount of %d files (creates or refreshes the snapshot)", n)
	tr, err := s.mountTrowfs(data, mnt)
	if err != nil {
		return nil, err
	}
	if _, err := waitSettled(mnt, 30*time.Minute); err != nil {
		tr.Stop()
		return nil, err
	}
	if err := tr.Stop(); err != nil {
		return nil, err
	}
	var finds, starts, rss, live []float64
	var last *State
	for r := 0; r < s.cfg.Repeat; r++ {
		fd, err := findOnce()
		if err != nil {
			return nil, err
		}
		tr, err := s.mountTrowfsEnv([]string{"GODEBUG=gctrace=1"}, data, mnt)
		if err != nil {
			return nil, err
		}
		b, rerr := RSS(tr.Pid())
		live = append(live, float64(peakLiveHeap(tr.Log())))
		st, serr := ReadState(mnt)
		if err := tr.Stop(); err != nil {
			return nil, err
		}
		if rerr != nil {
			return nil, rerr
		}
		if serr != nil {
			return nil, serr
		}
		finds, starts, rss, last = append(finds, 2*fd.Seconds()), append(starts, tr.Startup.Seconds()), append(rss, float64(b)), st
	}
	label := fmt.Sprintf("%dk", n/1000)
	if n >= 1_000_000 {
		label = fmt.Sprintf("%dM", n/1_000_000)
	}
	r := Row{Name: "startup: snapshot load + quick reconcile, " + label + " files", Unit: "s", Native: Median(finds), Loopback: NA,
		Trowfs: Median(starts), Mode: "2nd mount", Target: "faster than find × 2"}
	r.Pass = atLeast(r.VsNative(), 1)
	snap, rehash := "?", int64(-1)
	if last.Mount != nil {
		snap, rehash = last.Mount.Load.Snapshot, last.Mount.Load.Rehashing
	}
	r.Note = fmt.Sprintf("native column = 2 × `find DATA -printf '%%s %%T@\\n'` (warm); trowfs = process start to ready file; snapshot %s, %d files rehashed at load; %s",
		snap, rehash, noise(Spread(finds), Spread(starts)))
	rssMed := Median(rss)
	m := Row{Name: "RSS after startup, " + label + " files", Unit: "B/file", Native: NA, Loopback: NA, Trowfs: rssMed / float64(n), Mode: "2nd mount",
		Target: "info (tree alone: see tree row)",
		Note:   fmt.Sprintf("VmRSS %.0f MiB at ready: tree, path index, Go runtime and GC headroom, FUSE buffers", rssMed/(1<<20))}
	h := Row{Name: "peak live heap during startup, " + label + " files", Unit: "B/file", Native: NA, Loopback: NA,
		Trowfs: Median(live) / float64(n), Mode: "2nd mount", Target: "info",
		Note: "the largest heap left live after a GC before ready (GODEBUG=gctrace=1): tree, path index, registry model and what the load still held"}
	return []Row{r, m, h}, nil
}

// gcLine matches the heap sizes of a gctrace line: "<before>-><after>-><live> MB".
var gcLine = regexp.MustCompile(`(?m)^gc \d+ .* (\d+)->(\d+)->(\d+) MB`)

// peakLiveHeap returns the largest live heap (bytes) reported by the gctrace lines of log.
func peakLiveHeap(log string) int64 {
	var peak int64
	for _, m := range gcLine.FindAllStringSubmatch(log, -1) {
		if v, err := strconv.ParseInt(m[3], 10, 64); err == nil && v<<20 > peak {
			peak = v << 20
		}
	}
	return peak
}

// treeName is the i-th blob name of a flat Trow v0.7 blobs/ directory.
func treeName(i int) (string, hashtree.Digest) {
	d := hashtree.SumBytes(binary.BigEndian.AppendUint64(nil, uint64(i)))
	return "blobs/" + d.String(), d
}

// flatTree builds a tree of n verified files in blobs/ and returns it with the heap it holds.
func flatTree(n int) (*hashtree.Tree, []string, uint64, error) {
	// The benchmark's own paths are made before the heap is first read, so
	// that what the tree holds is the difference, exactly (subtracting
	// their lengths missed the allocator's rounding, 3 bytes a path).
	paths := make([]string, n)
	digests := make([]hashtree.Digest, n)
	for i := range paths {
		paths[i], digests[i] = treeName(i)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	t := hashtree.New()
	if err := t.Mkdir("blobs", 1); err != nil {
		return nil, nil, 0, err
	}
	for i, p := range paths {
		d := digests[i]
		e := hashtree.Entry{Kind: hashtree.KindFile, Digest: d, Status: hashtree.StatusVerified,
			Meta: hashtree.Meta{Size: int64(i), Mtime: int64(i), Ctime: int64(i), Ino: uint64(i)}, ChangedAt: int64(i), VerifiedAt: int64(i)}
		if err := t.Put(p, e); err != nil {
			return nil, nil, 0, err
		}
	}
	t.Root()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(digests)
	return t, paths, after.HeapAlloc - before.HeapAlloc, nil
}

// putCost times updates of existing files spread over the directory, each followed by Root().
func putCost(t *hashtree.Tree, paths []string, iters int) (float64, error) {
	start := time.Now()
	for i := 0; i < iters; i++ {
		p := paths[(i*7919)%len(paths)]
		d := hashtree.SumBytes(binary.BigEndian.AppendUint64([]byte("update"), uint64(i)))
		if err := t.Put(p, hashtree.Entry{Kind: hashtree.KindFile, Digest: d, Status: hashtree.StatusPending, ChangedAt: int64(i)}); err != nil {
			return 0, err
		}
		t.Root()
	}
	return float64(time.Since(start).Nanoseconds()) / 1e3 / float64(iters), nil
}

func (s *Suite) tree() ([]Row, error) {
	n := pick(s, 1_000_000, 100_000)
	label := fmt.Sprintf("%dk", n/1000)
	if n >= 1_000_000 {
		label = fmt.Sprintf("%dM", n/1_000_000)
	}
	small, smallPaths, _, err := flatTree(1000)
	if err != nil {
		return nil, err
	}
	big, bigPaths, heap, err := flatTree(n)
	if err != nil {
		return nil, err
	}
	const iters = 20000
	med, spr, err := s.interleave(
		func() (float64, error) { return putCost(small, smallPaths, iters) },
		func() (float64, error) { return putCost(big, bigPaths, iters) })
	if err != nil {
		return nil, err
	}
	perFile := float64(heap) / float64(n)
	mem := Row{Name: "tree memory per file, " + label + " files in one dir", Unit: "B/file", Native: NA, Loopback: NA, Trowfs: perFile,
		Mode: "hashtree", Target: "≤ 128 B/file", Pass: atMost(perFile, 128),
		Note: fmt.Sprintf("Go heap held by the tree after GC: %.0f MiB (entries, HAMT nodes, names, digests)", float64(heap)/(1<<20))}
	r1 := Row{Name: "tree update (Put+Root), 1k-entry dir", Unit: "µs/op", Native: NA, Loopback: NA, Trowfs: med[0], Mode: "hashtree", Target: "baseline"}
	ratio := med[1] / med[0]
	r2 := Row{Name: "tree update (Put+Root), " + label + "-entry dir", Unit: "µs/op", Native: NA, Loopback: NA, Trowfs: med[1], Mode: "hashtree",
		Target: "≤ 2× the 1k cost", Pass: atMost(ratio, 2),
		Note: fmt.Sprintf("%s/1k cost = %.2f; %s", label, ratio, noise(spr...))}
	runtime.KeepAlive(big)
	return []Row{mem, r1, r2}, nil
}
