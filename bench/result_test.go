package bench

import (
	"math"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		in := append([]float64(nil), c.in...)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Fatalf("Median modified its input: %v", c.in)
			}
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is a number")
	}
}

func TestRatioDirection(t *testing.T) {
	// Throughput: trowfs at 450 MB/s against native 900 MB/s is 0.5 as fast.
	r := Row{HigherBetter: true, Native: 900, Loopback: 300, Trowfs: 450}
	if got := r.VsNative(); got != 0.5 {
		t.Errorf("VsNative = %v, want 0.5", got)
	}
	if got := r.VsLoopback(); got != 1.5 {
		t.Errorf("VsLoopback = %v, want 1.5", got)
	}
	// Time per operation: trowfs taking 200 µs where the loopback takes 100 µs is 0.5 as fast.
	r = Row{Native: 50, Loopback: 100, Trowfs: 200}
	if got := r.VsLoopback(); got != 0.5 {
		t.Errorf("VsLoopback (time) = %v, want 0.5", got)
	}
	if got := r.VsNative(); got != 0.25 {
		t.Errorf("VsNative (time) = %v, want 0.25", got)
	}
	r = Row{Native: NA, Loopback: 0, Trowfs: 1}
	if !math.IsNaN(r.VsNative()) || !math.IsNaN(r.VsLoopback()) {
		t.Error("a missing or zero baseline gave a ratio")
	}
}

func TestVerdict(t *testing.T) {
	if v := (Row{}).Verdict(); v != "-" {
		t.Errorf("no target: %q", v)
	}
	if v := (Row{Pass: atLeast(0.84, 0.85)}).Verdict(); v != "FAIL" {
		t.Errorf("0.84 >= 0.85: %q", v)
	}
	if v := (Row{Pass: atLeast(0.85, 0.85)}).Verdict(); v != "PASS" {
		t.Errorf("0.85 >= 0.85: %q", v)
	}
	if v := (Row{Pass: atMost(NA, 3)}).Verdict(); v != "FAIL" {
		t.Errorf("NaN <= 3: %q", v)
	}
	if v := (Row{Skipped: "no tool", Pass: atLeast(1, 0)}).Verdict(); v != "SKIP" {
		t.Errorf("skipped: %q", v)
	}
	rows := []Row{{Pass: atLeast(1, 0)}, {Pass: atMost(4, 3)}, {Skipped: "x"}, {}}
	if p, f, s := Summary(rows); p != 1 || f != 1 || s != 1 {
		t.Errorf("Summary = %d %d %d, want 1 1 1", p, f, s)
	}
}

func TestMarkdown(t *testing.T) {
	rows := []Row{
		{Name: "a|b", Unit: "MB/s", HigherBetter: true, Native: 1000, Loopback: 800, Trowfs: 950, Mode: "passthrough",
			Target: "≥ 0.9× native", Pass: atLeast(0.95, 0.9), Note: "noise 3%"},
		{Name: "registry", Skipped: "registry not installed"},
	}
	md := Markdown(rows)
	for _, want := range []string{`| a\|b | MB/s | 1000 | 800 | 950 | passthrough | 0.95 | 1.19 | ≥ 0.9× native | PASS |`,
		"| registry |", "| SKIP |", "- a|b [passthrough]: noise 3%", "- registry: skipped: registry not installed"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if lines := strings.Count(Text(rows), "\n"); lines != 5 {
		t.Errorf("text table has %d lines, want 5:\n%s", lines, Text(rows))
	}
}

func TestPeakLiveHeap(t *testing.T) {
	log := "gc 1 @0.012s 2%: 0.018+1.2+0.003 ms clock, 0.036+0.11/1.0/0.5+0.007 ms cpu, 4->4->3 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\n" +
		"time=... level=WARN msg=x\n" +
		"gc 2 @0.5s 3%: 0.01+2+0.01 ms clock, 0.02+0.1/2/1+0.02 ms cpu, 300->310->212 MB, 320 MB goal, 0 MB stacks, 0 MB globals, 2 P\n" +
		"gc 3 @0.9s 3%: 0.01+2+0.01 ms clock, 0.02+0.1/2/1+0.02 ms cpu, 400->410->150 MB, 424 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)\n"
	if got := peakLiveHeap(log); got != 212<<20 {
		t.Errorf("peakLiveHeap = %d, want %d", got, 212<<20)
	}
	if got := peakLiveHeap("no gc lines"); got != 0 {
		t.Errorf("peakLiveHeap without gctrace = %d", got)
	}
}
