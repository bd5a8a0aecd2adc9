package bench

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// sha256Limit hashes total bytes from a 64 MiB buffer in memory and returns MB/s.
func sha256Limit(total int64) float64 {
	buf := randomBytes(64 << 20)
	h := sha256.New()
	start := time.Now()
	for done := int64(0); done < total; done += int64(len(buf)) {
		h.Write(buf[:min(int64(len(buf)), total-done)])
	}
	h.Sum(nil)
	return mbps(total, time.Since(start))
}

func (s *Suite) scrub() ([]Row, error) {
	total := pick(s, int64(1<<30), int64(128<<20))
	const fileSize = 32 << 20
	label := sizeLabel(total)
	data, err := s.dir("scrub", "data")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(filepath.Join(s.scratch, "scrub"))
	var files []string
	buf := randomBytes(chunk)
	for i := int64(0); i < total/fileSize; i++ {
		p := filepath.Join(data, fmt.Sprintf("blob%03d", i))
		if _, err := writeFile(p, fileSize, buf); err != nil {
			return nil, err
		}
		files = append(files, p)
	}
	mnt := filepath.Join(s.scratch, "scrub", "mnt")
	// The first mount hashes the files and writes the snapshot that verify and the scrub compare with.
	tr, err := s.mountTrowfs(data, mnt)
	if err != nil {
		return nil, err
	}
	_, err = waitSettled(mnt, 10*time.Minute)
	if serr := tr.Stop(); err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	diskCold := func() (float64, error) {
		if err := evict(files...); err != nil {
			return 0, err
		}
		start := time.Now()
		var n int64
		for _, f := range files {
			m, _, err := readFile(f, buf)
			if err != nil {
				return 0, err
			}
			n += m
		}
		return mbps(n, time.Since(start)), nil
	}
	diskWarm := func() (float64, error) {
		start := time.Now()
		var n int64
		for _, f := range files {
			m, _, err := readFile(f, buf)
			if err != nil {
				return 0, err
			}
			n += m
		}
		return mbps(n, time.Since(start)), nil
	}
	offline := func(cold bool) func() (float64, error) {
		return func() (float64, error) {
			if cold {
				if err := evict(files...); err != nil {
					return 0, err
				}
			} else if _, err := diskWarm(); err != nil {
				return 0, err
			}
			start := time.Now()
			if _, err := runCmd(context.Background(), 30*time.Minute, s.cfg.Trowfs, "--log-level", "warn", "verify", "--progress", "none", data); err != nil {
				return 0, err
			}
			return mbps(total, time.Since(start)), nil
		}
	}
	// A mounted full run (POST /v1/verify): the files hashed by the mount's verification workers,
	// timed by the run itself (started_at to finished_at).
	sock := filepath.Join(s.scratch, "scrub", "api.sock")
	// The cores each mounted run kept busy (process CPU time over the run's wall time): on a
	// machine shared with other work this says whether the cores were there to use.
	coresUsed := map[bool][]float64{}
	mounted := func(cold bool) func() (float64, error) {
		return func() (float64, error) {
			tr, err := s.mountTrowfs(data, mnt, "--listen", "unix:"+sock)
			if err != nil {
				return 0, err
			}
			defer tr.Stop()
			if cold {
				if err := evict(files...); err != nil {
					return 0, err
				}
			} else if _, err := diskWarm(); err != nil {
				return 0, err
			}
			cpu0, err := cpuTime(tr.cmd.Process.Pid)
			if err != nil {
				return 0, err
			}
			took, err := verifyRun(sock, 30*time.Minute)
			if err != nil {
				return 0, err
			}
			if cpu1, err := cpuTime(tr.cmd.Process.Pid); err == nil {
				coresUsed[cold] = append(coresUsed[cold], (cpu1-cpu0).Seconds()/took.Seconds())
			}
			return mbps(total, took), nil
		}
	}
	verify := func() (float64, error) {
		if err := evict(files...); err != nil {
			return 0, err
		}
		start := time.Now()
		if _, err := runCmd(context.Background(), 30*time.Minute, s.cfg.Trowfs, "--log-level", "warn", "verify", "--progress", "none", data); err != nil {
			return 0, err
		}
		return mbps(total, time.Since(start)), nil
	}
	scrubMount := func() (float64, error) {
		if err := evict(files...); err != nil {
			return 0, err
		}
		tr, err := s.mountTrowfs(data, mnt, "--scrub-interval", "1h", "--scrub-rate", "0")
		if err != nil {
			return 0, err
		}
		start := time.Now().Add(-tr.Startup) // the scrub starts during the mount's startup
		var d time.Duration
		for {
			st, err := ReadState(mnt)
			if err != nil {
				tr.Stop()
				return 0, err
			}
			if st.Mount != nil && st.Mount.Scrub.Passes >= 1 {
				d = time.Since(start)
				break
			}
			if time.Since(start) > 30*time.Minute {
				tr.Stop()
				return 0, fmt.Errorf("scrub pass not done after 30 min")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := tr.Stop(); err != nil {
			return 0, err
		}
		return mbps(total, d), nil
	}
	s.logf("   %s: disk read, trowfs verify, POST /v1/verify, mount scrub (cold; then warm from the page cache)", label)
	// The SHA-256 rate is measured between the runs, under the same load as they are (a shared
	// machine's is anything but constant).
	shaRate := func() (float64, error) { return sha256Limit(total), nil }
	med, spr, err := s.interleave(diskCold, verify, mounted(true), scrubMount, diskWarm, offline(false), mounted(false), shaRate)
	if err != nil {
		return nil, err
	}
	sha := med[7]
	cores := runtime.GOMAXPROCS(0)
	// What a verification can reach: the disk, or every core hashing, whichever is slower.
	coldLimit, warmLimit := min(med[0], float64(cores)*sha), min(med[4], float64(cores)*sha)
	limitNote := func(disk, limit float64, what string) string {
		return fmt.Sprintf("native column = min(%s read %.0f MB/s, %d cores x SHA-256 %.0f MB/s) = %.0f MB/s", what, disk, cores, sha, limit)
	}
	const goal = 0.9
	row := func(name, mode string, v, limit float64, note string) Row {
		return Row{Name: name, Unit: "MB/s", HigherBetter: true, Native: limit, Loopback: NA, Trowfs: v, Mode: mode,
			Target: fmt.Sprintf(">= %.1f x native", goal), Pass: atLeast(v/limit, goal), Note: note}
	}
	return []Row{
		{Name: "SHA-256 limit (crypto/sha256, memory)", Unit: "MB/s", HigherBetter: true, Native: NA, Loopback: NA, Trowfs: sha, Mode: "1 core", Target: "info",
			Note: fmt.Sprintf("x %d cores = %.0f MB/s", cores, float64(cores)*sha)},
		row("offline verify "+label+" (trowfs verify), cold", "offline", med[1], coldLimit, limitNote(med[0], coldLimit, "cold disk")+"; "+noise(spr...)),
		row("mounted full verify "+label+" (POST /v1/verify), cold", "mounted", med[2], coldLimit, limitNote(med[0], coldLimit, "cold disk")+
			fmt.Sprintf("; the run's own started_at to finished_at; it kept %.2f cores busy", Median(coresUsed[true]))),
		row("scrub "+label+" (--scrub-rate 0), cold", "mounted", med[3], coldLimit, limitNote(med[0], coldLimit, "cold disk")+"; time from process start to the first completed scrub pass"),
		row("offline verify "+label+" (trowfs verify), warm", "offline", med[5], warmLimit, limitNote(med[4], warmLimit, "page-cache")+"; includes process start and the walk"),
		row("mounted full verify "+label+" (POST /v1/verify), warm", "mounted", med[6], warmLimit, limitNote(med[4], warmLimit, "page-cache")+
			fmt.Sprintf("; it kept %.2f cores busy", Median(coresUsed[false]))),
	}, nil
}

// cpuTime is the user and system CPU time process pid has used (/proc/pid/stat, in clock ticks
// of 1/100 s, Linux's USER_HZ).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) in parentheses; utime and stime
	// are fields 14 and 15, the 12th and 13th after it.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return time.Duration(u+st) * 10 * time.Millisecond, nil
}

// verifyRun starts a full verification run through the endpoint on the unix socket sock and
// returns how long the run took by its own clock.
func verifyRun(sock string, timeout time.Duration) (time.Duration, error) {
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	type run struct {
		ID         string     `json:"id"`
		State      string     `json:"state"`
		Error      string     `json:"error"`
		StartedAt  time.Time  `json:"started_at"`
		FinishedAt *time.Time `json:"finished_at"`
		Findings   []any      `json:"findings"`
	}
	get := func(method, url string) (run, error) {
		var r run
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			return r, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return r, err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return r, fmt.Errorf("%s %s: %s", method, url, resp.Status)
		}
		return r, json.NewDecoder(resp.Body).Decode(&r)
	}
	r, err := get("POST", "http://trowfs/v1/verify?kind=full")
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(timeout)
	for r.State == "running" {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("verification run %s not done after %v", r.ID, timeout)
		}
		time.Sleep(20 * time.Millisecond)
		if r, err = get("GET", "http://trowfs/v1/verify/"+r.ID); err != nil {
			return 0, err
		}
	}
	if r.State != "done" || r.FinishedAt == nil {
		return 0, fmt.Errorf("verification run %s: %s %s", r.ID, r.State, r.Error)
	}
	if len(r.Findings) > 0 {
		return 0, fmt.Errorf("verification run %s of an intact directory found %d problems", r.ID, len(r.Findings))
	}
	return r.FinishedAt.Sub(r.StartedAt), nil
}
