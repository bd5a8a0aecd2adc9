package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
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
	s.logf("   %s: disk read, trowfs verify, mount scrub (all cold)", label)
	med, spr, err := s.interleave(diskCold, verify, scrubMount)
	if err != nil {
		return nil, err
	}
	sha := sha256Limit(total)
	note := fmt.Sprintf("native column = cold sequential read of the same %d files; SHA-256 limit %.0f MB/s (one core)", len(files), sha)
	return []Row{
		{Name: "SHA-256 limit (crypto/sha256, memory)", Unit: "MB/s", HigherBetter: true, Native: NA, Loopback: NA, Trowfs: sha, Mode: "1 core", Target: "info"},
		{Name: "offline verify " + label + " (trowfs verify), cold", Unit: "MB/s", HigherBetter: true, Native: med[0], Loopback: NA, Trowfs: med[1],
			Mode: "offline", Target: "info: vs disk and SHA-256", Note: note + "; " + noise(spr...)},
		{Name: "scrub " + label + " (--scrub-rate 0), cold", Unit: "MB/s", HigherBetter: true, Native: med[0], Loopback: NA, Trowfs: med[2],
			Mode: "mounted", Target: "info: vs disk and SHA-256", Note: "time from process start to the first completed scrub pass"},
	}, nil
}
