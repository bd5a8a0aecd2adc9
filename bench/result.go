package bench

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Row is one line of the results table. Values are NaN where a column does not apply.
type Row struct {
	Name string
	Unit string
	// HigherBetter says whether a larger value is better (throughput) or worse (time, bytes).
	HigherBetter bool
	Native       float64
	Loopback     float64
	Trowfs       float64
	// HP is libfuse's passthrough_hp (the C reference passthrough) on the same workload in the
	// same run; 0 where it was not measured (a measured time or rate is never 0).
	HP   float64
	Mode string // trowfs configuration measured, e.g. "passthrough"
	// Target describes the target; empty when the row is informational.
	Target string
	// Pass is set by the workload that knows how its target is checked; nil means no target.
	Pass *bool
	Note string
	// Broken marks a functional failure rather than a missed target: a workload error, a blob
	// not verified, a consistency finding. It fails even a -quick run.
	Broken bool
	// Skipped, when not empty, says why the row has no figures.
	Skipped string
}

// NA is the value of a column that does not apply.
var NA = math.NaN()

// ratio returns how fast trowfs is relative to base, as a fraction (1 = same speed, 0.5 = half
// as fast), whatever the unit's direction.
func ratio(base, trowfs float64, higherBetter bool) float64 {
	if math.IsNaN(base) || math.IsNaN(trowfs) || base == 0 || trowfs == 0 {
		return NA
	}
	if higherBetter {
		return trowfs / base
	}
	return base / trowfs
}

// VsNative is the speed ratio trowfs / native.
func (r Row) VsNative() float64 { return ratio(r.Native, r.Trowfs, r.HigherBetter) }

// VsLoopback is the speed ratio trowfs / loopback.
func (r Row) VsLoopback() float64 { return ratio(r.Loopback, r.Trowfs, r.HigherBetter) }

// HPVsNative is the speed ratio passthrough_hp / native.
func (r Row) HPVsNative() float64 { return ratio(r.Native, r.HP, r.HigherBetter) }

// LoopbackVsNative is the speed ratio loopback / native.
func (r Row) LoopbackVsNative() float64 { return ratio(r.Native, r.Loopback, r.HigherBetter) }

// Verdict is PASS, FAIL, SKIP or "-" (no target).
func (r Row) Verdict() string {
	switch {
	case r.Skipped != "":
		return "SKIP"
	case r.Pass == nil:
		return "-"
	case *r.Pass:
		return "PASS"
	}
	return "FAIL"
}

// atLeast returns a pass pointer for v >= min, false when v is not a number.
func atLeast(v, min float64) *bool {
	ok := !math.IsNaN(v) && v >= min
	return &ok
}

// atMost returns a pass pointer for v <= max, false when v is not a number.
func atMost(v, max float64) *bool {
	ok := !math.IsNaN(v) && v <= max
	return &ok
}

// Median returns the median of xs (NaN when empty); xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return NA
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Spread returns (max-min)/median of xs, a simple noise figure; NaN for fewer than two values.
func Spread(xs []float64) float64 {
	if len(xs) < 2 {
		return NA
	}
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	m := Median(xs)
	if m == 0 {
		return NA
	}
	return (hi - lo) / m
}

// formatValue prints a figure with about three significant digits.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

func formatRatio(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

// columns of the table, in order. The passthrough_hp columns are added (after the trowfs
// ratios) only when some row measured it, so tables of workloads without it keep their shape.
var columns = []string{"benchmark", "unit", "native", "loopback", "trowfs", "mode", "vs native", "vs loopback", "target", "result"}

// hpColumns are inserted before "target" when a row has a passthrough_hp figure.
var hpColumns = []string{"passthrough_hp", "hp vs native"}

// hpAt is the index in columns where hpColumns go.
const hpAt = 8

func anyHP(rows []Row) bool {
	for _, r := range rows {
		if r.HP != 0 {
			return true
		}
	}
	return false
}

func header(hp bool) []string {
	if !hp {
		return columns
	}
	return append(append(append([]string(nil), columns[:hpAt]...), hpColumns...), columns[hpAt:]...)
}

// numeric reports whether column i of a table with or without the hp columns is right-aligned.
func numeric(i int, hp bool) bool {
	if hp && i >= hpAt {
		if i < hpAt+len(hpColumns) {
			return true
		}
		i -= len(hpColumns)
	}
	return i >= 2 && i <= 4 || i == 6 || i == 7
}

func (r Row) cells(hp bool) []string {
	var c []string
	if r.Skipped != "" {
		c = []string{r.Name, r.Unit, "-", "-", "-", r.Mode, "-", "-", r.Target, "SKIP"}
	} else {
		c = []string{r.Name, r.Unit, formatValue(r.Native), formatValue(r.Loopback), formatValue(r.Trowfs), r.Mode,
			formatRatio(r.VsNative()), formatRatio(r.VsLoopback()), r.Target, r.Verdict()}
	}
	if !hp {
		return c
	}
	h := []string{"-", "-"}
	if r.Skipped == "" && r.HP != 0 {
		h = []string{formatValue(r.HP), formatRatio(r.HPVsNative())}
	}
	return append(append(append([]string(nil), c[:hpAt]...), h...), c[hpAt:]...)
}

// Text renders rows as an aligned plain-text table followed by the notes.
func Text(rows []Row) string {
	hp := anyHP(rows)
	all := [][]string{header(hp)}
	for _, r := range rows {
		all = append(all, r.cells(hp))
	}
	width := make([]int, len(all[0]))
	for _, c := range all {
		for i, s := range c {
			width[i] = max(width[i], len([]rune(s)))
		}
	}
	var b strings.Builder
	for _, c := range all {
		for i, s := range c {
			pad := width[i] - len([]rune(s))
			if numeric(i, hp) {
				b.WriteString(strings.Repeat(" ", pad) + s)
			} else {
				b.WriteString(s + strings.Repeat(" ", pad))
			}
			if i < len(c)-1 {
				b.WriteString("  ")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString(notes(rows, "  "))
	return b.String()
}

// Markdown renders rows as a markdown table followed by the notes as a list.
func Markdown(rows []Row) string {
	var b strings.Builder
	hp := anyHP(rows)
	cols := header(hp)
	b.WriteString("| " + strings.Join(cols, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(cols)) + "\n")
	for _, r := range rows {
		c := r.cells(hp)
		for i := range c {
			c[i] = strings.ReplaceAll(c[i], "|", `\|`)
		}
		b.WriteString("| " + strings.Join(c, " | ") + " |\n")
	}
	b.WriteString("\n")
	b.WriteString(notes(rows, "- "))
	return b.String()
}

// label names the row in the notes: the benchmark and, when set, the mode.
func (r Row) label() string {
	if r.Mode == "" {
		return r.Name
	}
	return r.Name + " [" + r.Mode + "]"
}

func notes(rows []Row, bullet string) string {
	var b strings.Builder
	for _, r := range rows {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(&b, "%s%s: skipped: %s\n", bullet, r.label(), r.Skipped)
		case strings.Trim(r.Note, "; ") != "":
			fmt.Fprintf(&b, "%s%s: %s\n", bullet, r.label(), strings.Trim(r.Note, "; "))
		}
	}
	return b.String()
}

// AnyBroken reports whether a row records a functional failure.
func AnyBroken(rows []Row) bool {
	for _, r := range rows {
		if r.Broken {
			return true
		}
	}
	return false
}

// Summary counts the verdicts.
func Summary(rows []Row) (pass, fail, skip int) {
	for _, r := range rows {
		switch r.Verdict() {
		case "PASS":
			pass++
		case "FAIL":
			fail++
		case "SKIP":
			skip++
		}
	}
	return
}
