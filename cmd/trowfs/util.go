package main

import (
	"fmt"
	"io"
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

// progress reports scanning progress on stderr: a bar on a terminal, a log line every few
// seconds otherwise.
type progress struct {
	mode  string
	what  string
	start time.Time
	last  time.Time
	shown bool
}

func newProgress(mode, what string) *progress {
	if mode == "auto" {
		mode = "log"
		if isTerminal(os.Stderr) {
			mode = "bar"
		}
	}
	return &progress{mode: mode, what: what, start: time.Now(), last: time.Now()}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (p *progress) update(files, bytes int64) {
	if p.mode == "none" {
		return
	}
	now := time.Now()
	rate := float64(bytes) / now.Sub(p.start).Seconds()
	switch p.mode {
	case "bar":
		if now.Sub(p.last) < 100*time.Millisecond {
			return
		}
		fmt.Fprintf(os.Stderr, "\r%s: %d files, %s, %s/s   ", p.what, files, humanBytes(bytes), humanBytes(int64(rate)))
		p.shown = true
	default:
		if now.Sub(p.last) < 5*time.Second {
			return
		}
		fmt.Fprintf(os.Stderr, "%s: %d files, %s, %s/s\n", p.what, files, humanBytes(bytes), humanBytes(int64(rate)))
	}
	p.last = now
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprintln(os.Stderr)
	}
}
