package bench

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Config is what the command line sets.
type Config struct {
	Quick    bool   // small sizes, for a CI smoke run
	Only     string // comma-separated workload names; empty runs all
	Dir      string // parent of the scratch directory (not tmpfs)
	CacheDir string // reusable generated data (the startup tree)
	Repeat   int    // measurements per figure; the median is reported
	Trowfs   string // the trowfs binary
	Loopback string // the loopback baseline binary
	// PassthroughHP is libfuse's passthrough_hp binary (make passthrough-hp); where it is
	// missing, its column is left empty and a SKIP row says why.
	PassthroughHP string
	Tools         string // directory holding the registry binary (integration/tools/install.sh)
	Log           io.Writer
}

// Workload is one named group of measurements.
type Workload struct {
	Name string
	Help string
	Run  func(s *Suite) ([]Row, error)
}

// Workloads lists every workload in the order they run.
func Workloads() []Workload {
	return []Workload{
		{"seqread", "sequential read of a large file, warm and cold", (*Suite).seqRead},
		{"seqwrite", "sequential write + fsync, digest availability, both write modes", (*Suite).seqWrite},
		{"commit", "registry commit pattern: 256 KiB O_APPEND upload, fsync, rename into blobs/", (*Suite).commit},
		{"stat", "stat of 20k files cold and warm, readdir of a 20k-entry directory", (*Suite).stat},
		{"smallfiles", "create 20k empty files; 4 KiB create+write+rename+unlink cycle, and its FUSE requests by opcode", (*Suite).smallFiles},
		{"startup", "snapshot load + quick reconcile vs find x 2, RSS per file", (*Suite).startup},
		{"tree", "hashtree memory per file and update cost in a 1M vs 1k directory", (*Suite).tree},
		{"checkpoint", "longest wait of create/commit/rename tracker calls during a checkpoint of 1M entries, lock hold", (*Suite).checkpoint},
		{"registry", "push and pull images through the distribution registry", (*Suite).registry},
		{"consistency", "cat .state vs registry garbage-collect --dry-run", (*Suite).consistency},
		{"scrub", "scrub and offline verify throughput vs disk and SHA-256", (*Suite).scrub},
		{"peers", "peers: replication across 3 registries on trowfs vs crane copy, idle traffic, difference cost, simulated cluster at 10, 25, 50 nodes", (*Suite).peersAll},
	}
}

// Suite runs the workloads in one scratch directory.
type Suite struct {
	cfg     Config
	scratch string
}

// New creates the scratch directory. Close removes it.
func New(cfg Config) (*Suite, error) {
	if cfg.Repeat < 1 {
		cfg.Repeat = 1
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	scratch, err := os.MkdirTemp(cfg.Dir, "trowfs-bench-")
	if err != nil {
		return nil, err
	}
	s := &Suite{cfg: cfg, scratch: scratch}
	var fs unix.Statfs_t
	if err := unix.Statfs(scratch, &fs); err == nil && fs.Type == unix.TMPFS_MAGIC {
		s.logf("warning: %s is on tmpfs: native figures will be memory speed, not disk speed", cfg.Dir)
	}
	return s, nil
}

// Scratch is the run's scratch directory.
func (s *Suite) Scratch() string { return s.scratch }

// Close stops every mount and removes the scratch directory (never the cache).
func (s *Suite) Close() error {
	StopAll()
	if s.scratch == "" {
		return nil
	}
	// Refuse to remove anything that is still mounted somewhere below the scratch directory.
	var mounted []string
	_ = filepath.WalkDir(s.scratch, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && IsMounted(p) {
			mounted = append(mounted, p)
			return filepath.SkipDir
		}
		return nil
	})
	if len(mounted) > 0 {
		return fmt.Errorf("still mounted, scratch %s left in place: %s", s.scratch, strings.Join(mounted, " "))
	}
	return os.RemoveAll(s.scratch)
}

// Run runs the selected workloads and returns their rows. A workload that fails contributes a
// FAIL row with the error; the others still run.
func (s *Suite) Run(ctx context.Context) ([]Row, error) {
	selected := map[string]bool{}
	for _, n := range strings.Split(s.cfg.Only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			selected[n] = true
		}
	}
	known := map[string]bool{}
	for _, w := range Workloads() {
		known[w.Name] = true
	}
	for n := range selected {
		if !known[n] {
			return nil, fmt.Errorf("-only %s: no such workload", n)
		}
	}
	var rows []Row
	for _, w := range Workloads() {
		if len(selected) > 0 && !selected[w.Name] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return rows, err
		}
		s.logf("== %s: %s", w.Name, w.Help)
		start := time.Now()
		rs, err := w.Run(s)
		rows = append(rows, rs...)
		if err != nil {
			f := false
			rows = append(rows, Row{Name: w.Name, Pass: &f, Broken: true, Note: "error: " + err.Error(), Native: NA, Loopback: NA, Trowfs: NA})
			s.logf("   %s failed: %v", w.Name, err)
		}
		StopAll()
		s.logf("   %s took %s", w.Name, time.Since(start).Round(time.Millisecond))
	}
	return rows, nil
}

func (s *Suite) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.Log, time.Now().UTC().Format("15:04:05 ")+format+"\n", args...)
}

// dir returns a fresh directory under the scratch directory.
func (s *Suite) dir(parts ...string) (string, error) {
	p := filepath.Join(append([]string{s.scratch}, parts...)...)
	if err := os.RemoveAll(p); err != nil {
		return "", err
	}
	return p, os.MkdirAll(p, 0o755)
}

// pick returns full in a full run and quick with -quick.
func pick[T any](s *Suite, full, quick T) T {
	if s.cfg.Quick {
		return quick
	}
	return full
}

// mountTrowfs mounts the trowfs binary on data and mnt.
func (s *Suite) mountTrowfs(data, mnt string, extra ...string) (*Mount, error) {
	return s.mountTrowfsEnv(nil, data, mnt, extra...)
}

// mountTrowfsEnv mounts trowfs with extra environment variables.
func (s *Suite) mountTrowfsEnv(env []string, data, mnt string, extra ...string) (*Mount, error) {
	return StartMount(KindTrowfs, s.cfg.Trowfs, data, mnt, s.scratch, 30*time.Minute, env,
		append([]string{"--log-level", "warn"}, extra...)...)
}

// mountLoopback mounts the plain go-fuse loopback on data and mnt.
func (s *Suite) mountLoopback(data, mnt string) (*Mount, error) {
	return StartMount(KindLoopback, s.cfg.Loopback, data, mnt, s.scratch, time.Minute, nil)
}

// hpMissing says why the passthrough_hp column cannot be measured, or "" when it can.
func (s *Suite) hpMissing() string {
	if s.cfg.PassthroughHP == "" {
		return "no passthrough_hp binary given (-passthrough-hp)"
	}
	if _, err := os.Stat(s.cfg.PassthroughHP); err != nil {
		return fmt.Sprintf("%s is absent: build it with `make passthrough-hp LIBFUSE=<libfuse git dir or tarball>` (bench/passthrough_hp/build.sh)", s.cfg.PassthroughHP)
	}
	return ""
}

// hpSkipRow is the SKIP row a workload adds when passthrough_hp is missing.
func (s *Suite) hpSkipRow(workload string) []Row {
	why := s.hpMissing()
	if why == "" {
		return nil
	}
	return []Row{{Name: workload + ": passthrough_hp column", Native: NA, Loopback: NA, Trowfs: NA, Skipped: why}}
}

// mountHP mounts libfuse's passthrough_hp on data and mnt as its documentation shows
// (`passthrough_hp SOURCE MOUNTPOINT`), with its default caching: entry and attribute timeouts
// of 86400 s, keep_cache and cache_readdir on every open directory, kernel passthrough of reads
// and writes (hence no writeback cache), splice, default_permissions, a multi-threaded loop.
// It returns nil and no error when the binary is missing (see hpMissing).
func (s *Suite) mountHP(data, mnt string, extra ...string) (*Mount, error) {
	if s.hpMissing() != "" {
		return nil, nil
	}
	return StartMount(KindPassthroughHP, s.cfg.PassthroughHP, data, mnt, s.scratch, time.Minute, nil, extra...)
}

// State is the part of a .state document the benchmarks read.
type State struct {
	Files         int64 `json:"files"`
	Bytes         int64 `json:"bytes"`
	FindingsCount int   `json:"findings_count"`
	Statuses      struct {
		Excluded, Mismatch, Pending, Unverified, Verified int64
	} `json:"statuses"`
	Mount *struct {
		PendingFiles int64 `json:"pending_files"`
		Load         struct {
			Snapshot  string `json:"snapshot"`
			Files     int64  `json:"files"`
			Rehashing int64  `json:"rehashing"`
			Duration  string `json:"duration"`
		} `json:"load"`
		Scrub struct {
			Running   bool  `json:"running"`
			FilesDone int64 `json:"files_done"`
			BytesDone int64 `json:"bytes_done"`
			Passes    int64 `json:"passes"`
		} `json:"scrub"`
	} `json:"mount"`
}

// ReadState reads and decodes the .state of dir (a directory of a trowfs mount).
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, ".state"))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s/.state: %w", dir, err)
	}
	return &st, nil
}

// errNotSettled is a mount still hashing after the wait.
var errNotSettled = errors.New("mount still has pending files")

// waitSettled waits until the mount has no pending files (the first mount of a directory
// hashes everything in the background; measurements must not compete with that).
func waitSettled(mnt string, timeout time.Duration) (*State, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := ReadState(mnt)
		if err != nil {
			return nil, err
		}
		if st.Statuses.Pending == 0 && (st.Mount == nil || st.Mount.PendingFiles == 0) {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("%s: %w after %s (%d pending)", mnt, errNotSettled, timeout, st.Statuses.Pending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// randomBytes returns n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// interleave runs each measurement of fns once per repeat, in turn, so that noise from other
// users of the machine falls on all of them alike, and returns the medians and spreads.
func (s *Suite) interleave(fns ...func() (float64, error)) (medians, spreads []float64, err error) {
	vals := make([][]float64, len(fns))
	for r := 0; r < s.cfg.Repeat; r++ {
		for i, fn := range fns {
			if fn == nil {
				continue
			}
			v, err := fn()
			if err != nil {
				return nil, nil, err
			}
			vals[i] = append(vals[i], v)
		}
	}
	for _, v := range vals {
		medians = append(medians, Median(v))
		spreads = append(spreads, Spread(v))
	}
	return medians, spreads, nil
}

// noise formats the largest spread as a note fragment.
func noise(spreads ...float64) string {
	m := NA
	for _, s := range spreads {
		if !isNaN(s) && (isNaN(m) || s > m) {
			m = s
		}
	}
	if isNaN(m) {
		return ""
	}
	return fmt.Sprintf("spread (max-min)/median up to %.0f%%", m*100)
}

func isNaN(f float64) bool { return f != f }

// mbps is a throughput in MB/s (10^6 bytes per second).
func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / d.Seconds() / 1e6 }

// SetLoopback sets the loopback baseline binary (built after the scratch directory exists).
func (s *Suite) SetLoopback(path string) { s.cfg.Loopback = path }
