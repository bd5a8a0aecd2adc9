package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/internal/beneath"
)

// openBeneath opens rel below root for reading, without following symlinks out of it, at any
// depth (paths longer than PATH_MAX included).
func openBeneath(root, rel string) (*os.File, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rfd)
	fd, err := beneath.Open(rfd, rel, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), rel), nil
}

// readBeneath reads rel below root without following symlinks out of it.
func readBeneath(root, rel string, limit int64) ([]byte, error) {
	f, err := openBeneath(root, rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", rel, limit)
	}
	return b, err
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// progress reports the progress of long work (trowfs verify's hashing, a mount's start-up
// reconcile) on stderr: a bar redrawn in place on a terminal, a line every interval otherwise
// (through log when set, so a mount's progress reads like the rest of its log), and always a
// final line with the final counts.
type progress struct {
	mode     string // bar, log or none
	what     string
	interval time.Duration // between log lines
	rate     bool          // show bytes per second (hashing; not a scan that only stats)
	log      *slog.Logger  // nil: plain lines
	start    time.Time
	last     time.Time
	shown    bool
	files    int64 // the last counts reported
	bytes    int64
}

// logEvery is how often progress is logged when stderr is not a terminal.
const logEvery = 5 * time.Second

func newProgress(mode, what string) *progress {
	if mode == "auto" {
		mode = "log"
		if isTerminal(os.Stderr) {
			mode = "bar"
		}
	}
	return &progress{mode: mode, what: what, interval: logEvery, rate: true, start: time.Now(), last: time.Now()}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (p *progress) counts(files, bytes int64) string {
	s := fmt.Sprintf("%d files, %s", files, humanBytes(bytes))
	if p.rate {
		s += fmt.Sprintf(", %s/s", humanBytes(int64(float64(bytes)/time.Since(p.start).Seconds())))
	}
	return s
}

func (p *progress) update(files, bytes int64) {
	p.files, p.bytes = files, bytes
	if p.mode == "none" {
		return
	}
	now := time.Now()
	switch p.mode {
	case "bar":
		if now.Sub(p.last) < 100*time.Millisecond {
			return
		}
		fmt.Fprintf(os.Stderr, "\r%s: %s   ", p.what, p.counts(files, bytes))
		p.shown = true
	default:
		if now.Sub(p.last) < p.interval {
			return
		}
		if p.log != nil {
			p.log.Info(p.what, "files", files, "bytes", bytes, "elapsed", now.Sub(p.start).Round(time.Millisecond))
		} else {
			fmt.Fprintf(os.Stderr, "%s: %s\n", p.what, p.counts(files, bytes))
		}
	}
	p.last = now
}

// done ends the report with the final counts (those of the last update).
func (p *progress) done() {
	took := time.Since(p.start).Round(time.Millisecond)
	switch p.mode {
	case "none":
	case "bar":
		fmt.Fprintf(os.Stderr, "\r%s: done, %s in %s   \n", p.what, p.counts(p.files, p.bytes), took)
	default:
		if p.log != nil {
			p.log.Info(p.what+" done", "files", p.files, "bytes", p.bytes, "took", took)
		} else {
			fmt.Fprintf(os.Stderr, "%s: done, %s in %s\n", p.what, p.counts(p.files, p.bytes), took)
		}
	}
}
