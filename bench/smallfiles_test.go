package bench

import (
	"os/exec"
	"strings"
	"testing"
)

// The request counts of the 4 KiB cycle come from the servers' debug logs: go-fuse's lines and
// libfuse's lines must both be counted, by opcode, and replies and other output must not be.
func TestCountOpcodesGoFuseAndLibfuse(t *testing.T) {
	log := strings.Join([]string{
		`2026/12/07 17:14:25 rx 94: LOOKUP n2  "tmp3"  p26123`,
		`2026/12/07 17:14:25 tx 94:     OK, {n0 g0 tE=5s tA=0s {M00 SZ=0}}`,
		`time=2026-12-07T17:14:25Z level=INFO msg="rx 96: CREATE n2 {0100644 [WRONLY,CREAT,EXCL]} \"tmp3\"  p26123"`,
		`2026/12/07 17:14:25 rx 98: GETXATTR n6 {sz 0} "security.capability"  p26123`,
		`2026/12/07 17:14:25 rx 114: FORGET n6 {Nlookup=1} p0`,
		`dev unique: 12, opcode: LOOKUP (1), nodeid: 1, insize: 48, pid: 77`,
		`   unique: 12, error: -2 (No such file or directory), outsize: 16`,
		`dev unique: 14, opcode: BATCH_FORGET (42), nodeid: 0, insize: 56, pid: 0`,
		`LOOKUP mentioned in free text is not a request`,
	}, "\n")
	c, err := countOpcodesIn(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"LOOKUP": 2, "CREATE": 1, "GETXATTR": 1, "FORGET": 1, "BATCH_FORGET": 1}
	if len(c) != len(want) {
		t.Errorf("counts %v, want %v", c, want)
	}
	for op, n := range want {
		if c[op] != n {
			t.Errorf("%s: %d, want %d (all: %v)", op, c[op], n, c)
		}
	}
	if got := formatCounts(map[string]int{"LOOKUP": 400, "CREATE": 200, "FLUSH": 200}, 200); got != "LOOKUP 2.00, CREATE 1.00, FLUSH 1.00" {
		t.Errorf("formatCounts = %q", got)
	}
}

// The passthrough_hp columns appear only when a row measured it, so that tables without it keep
// their shape, and then every row has the two cells, "-" where it was not measured.
func TestPassthroughHPColumns(t *testing.T) {
	plain := []Row{{Name: "a", Unit: "µs/op", Native: 10, Loopback: 20, Trowfs: 40, Mode: "passthrough"}}
	if md := Markdown(plain); strings.Contains(md, "passthrough_hp") {
		t.Errorf("a table without passthrough_hp figures has its column:\n%s", md)
	}
	rows := append(plain, Row{Name: "b", Unit: "µs/op", Native: 10, Loopback: 20, Trowfs: 40, HP: 25, Mode: "passthrough"},
		Row{Name: "c", Skipped: "no binary"})
	md := Markdown(rows)
	for _, want := range []string{
		"| benchmark | unit | native | loopback | trowfs | mode | vs native | vs loopback | passthrough_hp | hp vs native | target | result |",
		"| a | µs/op | 10.0 | 20.0 | 40.0 | passthrough | 0.25 | 0.50 | - | - |  | - |",
		"| b | µs/op | 10.0 | 20.0 | 40.0 | passthrough | 0.25 | 0.50 | 25.0 | 0.40 |  | - |",
		"| c |  | - | - | - |  | - | - | - | - |  | SKIP |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	// Text aligns the hp figures like the other numbers: every line has the same width.
	lines := strings.Split(strings.TrimRight(Text(rows[:2]), "\n"), "\n")
	for _, l := range lines[1:] {
		if len([]rune(l)) != len([]rune(lines[0])) {
			t.Errorf("text lines differ in width:\n%s", strings.Join(lines, "\n"))
		}
	}
	if got := (Row{Native: 10, HP: 25}).HPVsNative(); got != 0.4 {
		t.Errorf("HPVsNative (time) = %v, want 0.4", got)
	}
}

// passthrough_hp exits with status 1 whenever a signal ended its loop, so after the suite's
// SIGTERM that status is a clean stop for it, and only for it.
func TestPassthroughHPExitStatusOneIsCleanStop(t *testing.T) {
	err := exec.Command("sh", "-c", "exit 1").Run()
	if err == nil {
		t.Fatal("sh -c 'exit 1' succeeded")
	}
	if !(&Mount{Kind: KindPassthroughHP, waitErr: err}).exitedBySignal() {
		t.Error("passthrough_hp's status 1 is not taken as a clean stop")
	}
	for _, k := range []Kind{KindTrowfs, KindLoopback} {
		if (&Mount{Kind: k, waitErr: err}).exitedBySignal() {
			t.Errorf("%s's status 1 is taken as a clean stop", k)
		}
	}
	other := exec.Command("sh", "-c", "exit 2").Run()
	if (&Mount{Kind: KindPassthroughHP, waitErr: other}).exitedBySignal() {
		t.Error("passthrough_hp's status 2 is taken as a clean stop")
	}
}
