package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// progressFiles is how many files the progress tests write: enough that the mount's start-up
// reconcile and trowfs verify's hashing take over a second here.
const progressFiles = 200_000

// progressData writes progressFiles small files (100 bytes each) into a fresh DATA.
func progressData(t *testing.T) (data, mnt string) {
	t.Helper()
	dir := t.TempDir()
	data, mnt = filepath.Join(dir, "data"), filepath.Join(dir, "mnt")
	body := []byte(strings.Repeat("p", 100))
	for d := 0; d < progressFiles/1000; d++ {
		sub := filepath.Join(data, fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := 0; f < 1000; f++ {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d", f)), body, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return data, mnt
}

type progressLine struct {
	files, bytes int64
	final        bool
	text         string
}

// checkProgress requires periodic lines with growing counts, then exactly one final line, last,
// with the final counts.
func checkProgress(t *testing.T, what string, lines []progressLine, files, bytes int64, stderr string) {
	t.Helper()
	if len(lines) < 3 {
		t.Fatalf("%s: %d progress lines, want periodic ones and a final one; stderr:\n%s", what, len(lines), tail(stderr, 40))
	}
	last := lines[len(lines)-1]
	if !last.final || last.files != files || (bytes >= 0 && last.bytes != bytes) {
		t.Errorf("%s: last progress line %q, want the final count of %d files", what, last.text, files)
	}
	prev := int64(0)
	for _, l := range lines[:len(lines)-1] {
		if l.final {
			t.Errorf("%s: a final line before the end: %q", what, l.text)
		}
		if l.files < prev || l.files > files || l.files == 0 {
			t.Errorf("%s: counts out of order or out of range: %q after %d", what, l.text, prev)
		}
		prev = l.files
	}
}

func tail(s string, n int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// With stderr not a terminal, trowfs verify and a mount's start-up reconcile log their progress
// (the default --progress auto) and end with the final count.
func TestProgressIsLoggedOffATerminal(t *testing.T) {
	trowfsbin.Require(t)
	data, mnt := progressData(t)
	const total = progressFiles * 100

	start := time.Now()
	r := trowfsbin.RunWithin(t, 5*time.Minute, "verify", data, "--progress-interval", "100ms")
	took := time.Since(start)
	if r.Code != 0 {
		t.Fatalf("verify exited %d; stderr:\n%s", r.Code, tail(r.Stderr, 40))
	}
	verifyRE := regexp.MustCompile(`^hashing: (?:(done), )?(\d+) files, .*`)
	var vl []progressLine
	for _, l := range strings.Split(r.Stderr, "\n") {
		if m := verifyRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseInt(m[2], 10, 64)
			vl = append(vl, progressLine{files: n, final: m[1] != "", text: l})
		}
	}
	t.Logf("verify of %d files took %v, %d progress lines", progressFiles, took, len(vl))
	checkProgress(t, "verify", vl, progressFiles, -1, r.Stderr)

	start = time.Now()
	p := trowfsbin.Start(t, data, mnt, "--progress-interval", "100ms")
	took = time.Since(start)
	p.Stop(t)
	stderr := p.Stderr()
	dataRE := regexp.QuoteMeta(data)
	mountRE := regexp.MustCompile(`msg="reconciling ` + dataRE + `(?: (done))?" files=(\d+) bytes=(\d+)`)
	var ml []progressLine
	for _, l := range strings.Split(stderr, "\n") {
		if m := mountRE.FindStringSubmatch(l); m != nil {
			f, _ := strconv.ParseInt(m[2], 10, 64)
			b, _ := strconv.ParseInt(m[3], 10, 64)
			ml = append(ml, progressLine{files: f, bytes: b, final: m[1] != "", text: l})
		}
	}
	t.Logf("mount to ready took %v, %d progress lines", took, len(ml))
	checkProgress(t, "mount", ml, progressFiles, total, stderr)
}
