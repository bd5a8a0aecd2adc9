package integration

// trowfs as a container's entry point is PID 1 of its PID namespace (the Dockerfile's
// ENTRYPOINT, the StatefulSet's command): every orphan in the container becomes its child, and
// what PID 1 does not reap stays a zombie for ever (a registry's helper processes, a probe's
// leftovers), until the PID table is full.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

func TestExecAsPID1ReapsOrphans(t *testing.T) {
	trowfsbin.Require(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		if trowfsbin.InCI() {
			t.Fatal("unshare (util-linux) is needed under CI=true")
		}
		t.Skip("no unshare")
	}
	bin := trowfsbin.Build(t)
	data, mnt, tmp := t.TempDir(), filepath.Join(t.TempDir(), "mnt"), t.TempDir()
	out := filepath.Join(tmp, "zombies")
	// The command leaves ten orphans that exit at once, waits, and counts the zombies of its
	// PID namespace (its own /proc); then exits 7, which must stay trowfs's status (the reaper
	// never takes the command's own exit).
	script := `for i in 1 2 3 4 5 6 7 8 9 10; do sh -c 'sleep 0.05 &'; done
sleep 1.5
n=0
for s in /proc/[0-9]*/stat; do
  read -r line < "$s" 2>/dev/null || continue
  case "${line##*) }" in Z*) n=$((n+1));; esac
done
echo "$n" > "$1"
exit 7`
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", bin, "mount", data, mnt, "--layout", "plain",
		"--exec", "--", "sh", "-c", script, "sh", out)
	done := make(chan struct{})
	var output []byte
	var err error
	go func() { output, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("trowfs as PID 1 did not finish:\n%s", output)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("unshare ... trowfs mount --exec: %v, want exit status 7 (the command's)\n%s", err, output)
	}
	b, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Fatalf("the command wrote no count: %v\n%s", rerr, output)
	}
	if n := strings.TrimSpace(string(b)); n != "0" {
		t.Fatalf("%s zombies in the container after its orphans exited: trowfs, PID 1, does not reap them\n%s", n, output)
	}
}
