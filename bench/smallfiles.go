package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The small-file rows of issue 9 item 5: metadata churn, where every operation is a FUSE round
// trip unless the kernel can answer it from its caches.
const (
	createFiles = 20000   // "creating 20k empty files"
	cycleSize   = 4 << 10 // "4 KiB create + write + rename + unlink"
	// traceCycles is how many cycles the request count is taken over, after traceWarm cycles
	// that fill the caches of the directory itself.
	traceCycles = 200
	traceWarm   = 20
	// hpInodes is how many inodes the passthrough_hp rows ask it to hold at once. It keeps an
	// O_PATH descriptor for every inode the kernel knows, and this machine's hard limit of
	// 20,000 open files (root cannot raise it) fails it with EBADF at about 19,970: the 20k
	// rows cannot include it, so it has rows of its own at 15k beside native at 15k.
	hpInodes = 15000
)

// hpSee points a 20k row's note to passthrough_hp's row of its own, when there is one.
func hpSee(measured bool) string {
	if !measured {
		return ""
	}
	return " (passthrough_hp: the 15k row)"
}

// hpLimitNote explains the passthrough_hp rows of their own.
const hpLimitNote = "passthrough_hp holds one O_PATH fd per inode and fails at about 19,970 inodes under the 20,000 open-file hard limit, so it is measured at 15k beside native at 15k"

// createEmpty creates n empty files in a new directory dir (O_CREAT|O_EXCL, then close) and
// returns µs per file. The directory is made before the clock starts.
func createEmpty(dir string, n int) (float64, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, err
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		fd, err := unix.Open(fmt.Sprintf("%s/f%d", dir, i), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return 0, err
		}
		if err := unix.Close(fd); err != nil {
			return 0, err
		}
	}
	return float64(time.Since(start).Nanoseconds()) / 1e3 / float64(n), nil
}

// smallCycle runs n cycles of the upload-then-delete pattern in dir (made if missing): create
// tmp<i> with O_EXCL, write 4 KiB, close, rename it to f<i>, unlink f<i>; it returns µs per cycle.
func smallCycle(dir string, first, n int, buf []byte) (float64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	start := time.Now()
	for i := first; i < first+n; i++ {
		tmp, final := fmt.Sprintf("%s/tmp%d", dir, i), fmt.Sprintf("%s/f%d", dir, i)
		fd, err := unix.Open(tmp, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return 0, err
		}
		if w, err := unix.Write(fd, buf); err != nil || w != len(buf) {
			unix.Close(fd)
			return 0, fmt.Errorf("write %s: %d bytes, %v", tmp, w, err)
		}
		if err := unix.Close(fd); err != nil {
			return 0, err
		}
		if err := unix.Rename(tmp, final); err != nil {
			return 0, err
		}
		if err := unix.Unlink(final); err != nil {
			return 0, err
		}
	}
	return float64(time.Since(start).Nanoseconds()) / 1e3 / float64(n), nil
}

func (s *Suite) smallFiles() ([]Row, error) {
	cycles := pick(s, 20000, 5000)
	base := filepath.Join(s.scratch, "smallfiles")
	defer os.RemoveAll(base)
	roots := map[Kind]string{}
	native, err := s.dir("smallfiles", "native")
	if err != nil {
		return nil, err
	}
	for _, k := range []Kind{KindLoopback, KindTrowfs, KindPassthroughHP} {
		if roots[k], err = s.dir("smallfiles", "data-"+string(k)); err != nil {
			return nil, err
		}
	}
	mnt := func(k Kind) string { return filepath.Join(base, "mnt-"+string(k)) }
	lb, err := s.mountLoopback(roots[KindLoopback], mnt(KindLoopback))
	if err != nil {
		return nil, err
	}
	defer lb.Stop()
	tr, err := s.mountTrowfs(roots[KindTrowfs], mnt(KindTrowfs))
	if err != nil {
		return nil, err
	}
	defer tr.Stop()
	dirs := []string{native, lb.Mnt, tr.Mnt}

	// Create: each measurement fills a new directory, so every one starts from an empty one.
	round := make([]int, 4)
	create := func(i int) func() (float64, error) {
		return func() (float64, error) {
			round[i]++
			return createEmpty(filepath.Join(dirs[i], fmt.Sprintf("create%d", round[i])), createFiles)
		}
	}
	// passthrough_hp cannot hold 20k inodes (see hpInodes): it creates hpInodes files in a
	// fresh mount per measurement, against native creating as many, in the same rounds.
	var hpCreate [2]func() (float64, error)
	if s.hpMissing() == "" {
		hpCreate[0] = func() (float64, error) {
			round[3]++
			return createEmpty(filepath.Join(native, fmt.Sprintf("create-hp%d", round[3])), hpInodes)
		}
		hpCreate[1] = func() (float64, error) {
			m, err := s.mountHP(roots[KindPassthroughHP], mnt(KindPassthroughHP))
			if err != nil {
				return 0, err
			}
			v, err := createEmpty(filepath.Join(m.Mnt, fmt.Sprintf("create%d", round[3])), hpInodes)
			if e := m.Stop(); err == nil {
				err = e
			}
			return v, err
		}
	}
	s.logf("   create %d empty files (passthrough_hp: %d)", createFiles, hpInodes)
	cm, cs, err := s.interleave(create(0), create(1), create(2), hpCreate[0], hpCreate[1])
	if err != nil {
		return nil, err
	}
	// The first mount hashes what was created in the background; let it finish so that the
	// cycle is not measured against that work.
	if _, err := waitSettled(tr.Mnt, 5*time.Minute); err != nil {
		return nil, err
	}
	hp, err := s.mountHP(roots[KindPassthroughHP], mnt(KindPassthroughHP))
	if err != nil {
		return nil, err
	}
	if hp != nil {
		defer hp.Stop()
		dirs = append(dirs, hp.Mnt)
	} else {
		dirs = append(dirs, "")
	}

	buf := randomBytes(cycleSize)
	for i := range round {
		round[i] = 0
	}
	cycle := func(i int) func() (float64, error) {
		if dirs[i] == "" {
			return nil
		}
		return func() (float64, error) {
			r := round[i]
			round[i]++
			return smallCycle(filepath.Join(dirs[i], "cycle"), r*cycles, cycles, buf)
		}
	}
	s.logf("   %d cycles of 4 KiB create+write+close+rename+unlink", cycles)
	ym, ys, err := s.interleave(cycle(0), cycle(1), cycle(2), cycle(3))
	if err != nil {
		return nil, err
	}
	hpVal := func(v float64) float64 {
		if hp == nil {
			return 0
		}
		return v
	}
	var rows []Row
	r := Row{Name: fmt.Sprintf("create %dk empty files", createFiles/1000), Unit: "µs/op", Native: cm[0], Loopback: cm[1], Trowfs: cm[2],
		Mode: "passthrough", Target: "≥ 0.5× native", Note: "open(O_CREAT|O_EXCL) + close into an empty directory" + hpSee(hp != nil) + "; " + noise(cs...)}
	r.Pass = atLeast(r.VsNative(), 0.5)
	rows = append(rows, r)
	if hp != nil {
		r = Row{Name: fmt.Sprintf("create %dk empty files (passthrough_hp's limit)", hpInodes/1000), Unit: "µs/op", Native: cm[3], Loopback: NA, Trowfs: NA, HP: cm[4],
			Mode: "passthrough_hp", Target: "info: the C reference at what it can hold", Note: hpLimitNote + "; a fresh passthrough_hp mount per measurement"}
		rows = append(rows, r)
	}
	r = Row{Name: "4 KiB create+write+rename+unlink cycle", Unit: "µs/op", Native: ym[0], Loopback: ym[1], Trowfs: ym[2], HP: hpVal(ym[3]),
		Mode: "passthrough", Target: "≥ 0.15× native (issue 9)", Note: fmt.Sprintf("%d cycles per measurement: open(O_CREAT|O_EXCL), write 4 KiB, close, rename to a new name, unlink; %s", cycles, noise(ys...))}
	r.Pass = atLeast(r.VsNative(), 0.15)
	rows = append(rows, r)

	// Stop the timed mounts before the traced ones, so that the trace is the only FUSE work.
	for _, m := range []*Mount{hp, tr, lb} {
		if m == nil {
			continue
		}
		if err := m.Stop(); err != nil {
			return rows, err
		}
	}
	trace, err := s.traceCycle(base, buf)
	if err != nil {
		return rows, err
	}
	rows = append(rows, trace...)
	return append(rows, s.hpSkipRow("smallfiles")...), nil
}

// traceCycle mounts each FUSE server with its request log on, runs traceCycles cycles after a
// warm-up, and counts the requests the kernel sent for them, by opcode.
func (s *Suite) traceCycle(base string, buf []byte) ([]Row, error) {
	counts := map[Kind]map[string]int{}
	for _, k := range []Kind{KindLoopback, KindTrowfs, KindPassthroughHP} {
		data, err := s.dir("smallfiles", "trace-data-"+string(k))
		if err != nil {
			return nil, err
		}
		mnt := filepath.Join(base, "trace-mnt-"+string(k))
		var m *Mount
		switch k {
		case KindLoopback:
			m, err = StartMount(KindLoopback, s.cfg.Loopback, data, mnt, s.scratch, time.Minute, nil, "--debug")
		case KindTrowfs:
			// go-fuse's debug lines reach trowfs's log through slog at info level.
			m, err = StartMount(KindTrowfs, s.cfg.Trowfs, data, mnt, s.scratch, time.Minute, nil, "--log-level", "info", "--fuse-debug")
		case KindPassthroughHP:
			m, err = s.mountHP(data, mnt, "--debug-fuse")
		}
		if err != nil {
			return nil, err
		}
		if m == nil {
			continue
		}
		c, err := func() (map[string]int, error) {
			defer m.Stop()
			dir := filepath.Join(mnt, "cycle")
			if _, err := smallCycle(dir, 0, traceWarm, buf); err != nil {
				return nil, err
			}
			from := quietLogSize(m)
			if _, err := smallCycle(dir, traceWarm, traceCycles, buf); err != nil {
				return nil, err
			}
			to := quietLogSize(m)
			return countOpcodes(m.logPath, from, to)
		}()
		if err != nil {
			return nil, err
		}
		counts[k] = c
	}
	per := func(k Kind) float64 {
		c, ok := counts[k]
		if !ok {
			return 0
		}
		total := 0
		for op, n := range c {
			// Not part of the cycle: the kernel sends INTERRUPT when the waiting thread gets a
			// signal, and here the signals are the Go client process's own (a Python client
			// doing the same cycles caused none in 2,000).
			if op != "INTERRUPT" {
				total += n
			}
		}
		return float64(total) / traceCycles
	}
	r := Row{Name: "FUSE requests per 4 KiB cycle", Unit: "req/op", Native: NA, Loopback: per(KindLoopback), Trowfs: per(KindTrowfs), HP: per(KindPassthroughHP),
		Mode: "passthrough", Target: "info: fewer is the way to ≥ 0.15× native"}
	var notes []string
	for _, k := range []Kind{KindLoopback, KindTrowfs, KindPassthroughHP} {
		if c, ok := counts[k]; ok {
			notes = append(notes, string(k)+": "+formatCounts(c, traceCycles))
		}
	}
	r.Note = fmt.Sprintf("requests logged by each server (go-fuse MountOptions.Debug, libfuse -d) over %d cycles after %d warm-up cycles, per cycle by opcode "+
		"(INTERRUPT, from signals to the Go client while it waits, is listed but not counted in the total): %s",
		traceCycles, traceWarm, strings.Join(notes, "; "))
	return []Row{r}, nil
}

// quietLogSize waits until the mount's log has stopped growing (asynchronous requests such as
// RELEASE and FORGET arrive after the system call that caused them returned) and returns its size.
func quietLogSize(m *Mount) int64 {
	var last int64 = -1
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		fi, err := os.Stat(m.logPath)
		if err != nil {
			return 0
		}
		if fi.Size() == last {
			return last
		}
		last = fi.Size()
		time.Sleep(300 * time.Millisecond)
	}
	return last
}

// The request lines of go-fuse's debug log ("rx 12: LOOKUP n1 ...") and of libfuse's
// ("dev unique: 12, opcode: LOOKUP (1), nodeid: 1, ...").
var (
	gofuseRequest  = regexp.MustCompile(`\brx \d+: ([A-Z_]+) `)
	libfuseRequest = regexp.MustCompile(`unique: \d+, opcode: ([A-Z_]+) \(`)
)

// countOpcodes counts the request lines of a go-fuse or libfuse debug log between byte offsets
// from and to, by opcode.
func countOpcodes(path string, from, to int64) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return countOpcodesIn(io.NewSectionReader(f, from, to-from))
}

func countOpcodesIn(r io.Reader) (map[string]int, error) {
	c := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := gofuseRequest.FindStringSubmatch(line); m != nil {
			c[m[1]]++
		} else if m := libfuseRequest.FindStringSubmatch(line); m != nil {
			c[m[1]]++
		}
	}
	return c, sc.Err()
}

// formatCounts prints counts divided by n, most frequent first: "LOOKUP 2, CREATE 1, ...".
func formatCounts(c map[string]int, n int) string {
	ops := make([]string, 0, len(c))
	for op := range c {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool {
		if c[ops[i]] != c[ops[j]] {
			return c[ops[i]] > c[ops[j]]
		}
		return ops[i] < ops[j]
	})
	var parts []string
	for _, op := range ops {
		parts = append(parts, fmt.Sprintf("%s %s", op, formatValue(float64(c[op])/float64(n))))
	}
	return strings.Join(parts, ", ")
}
