package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// A file or directory created through the mount gets the mode it would get natively under the
// caller's umask, whatever umask trowfs itself runs with, and trowfs keeps its own umask (no
// process-wide umask(0)).
func TestCreatesThroughTheMountFollowTheCallersUmask(t *testing.T) {
	trowfsbin.Require(t)
	bin := trowfsbin.Build(t)
	dir := t.TempDir()
	data, mnt, ready, native := filepath.Join(dir, "data"), filepath.Join(dir, "mnt"), filepath.Join(dir, "ready"), filepath.Join(dir, "native")
	for _, d := range []string{data, native} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// trowfs under umask 077: a create it masked again would lose group and other bits.
	cmd := exec.Command("sh", "-c", `umask 077 && exec "$0" "$@"`, bin, "mount", data, mnt, "--ready-file", ready, "--layout", "plain")
	startMount(t, cmd, mnt, ready)

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "\nUmask:\t0077\n") {
		t.Errorf("trowfs changed its own umask (started with 077):\n%s", status)
	}

	want := map[string]map[string]os.FileMode{ // umask -> name -> mode
		"022": {"f": 0o644, "d": 0o755, "p": 0o644},
		"077": {"f": 0o600, "d": 0o700, "p": 0o600},
		"000": {"f": 0o666, "d": 0o777, "p": 0o666},
	}
	for um, names := range want {
		for _, root := range []string{native, mnt} {
			sh := fmt.Sprintf(`umask %s && cd "$0" && : > f%s && mkdir d%s && mkfifo p%s`, um, um, um, um)
			if out, err := exec.Command("sh", "-c", sh, root).CombinedOutput(); err != nil {
				t.Fatalf("umask %s in %s: %v\n%s", um, root, err, out)
			}
		}
		for name, mode := range names {
			n, err := os.Lstat(filepath.Join(native, name+um))
			if err != nil {
				t.Fatal(err)
			}
			m, err := os.Lstat(filepath.Join(mnt, name+um))
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.Lstat(filepath.Join(data, name+um))
			if err != nil {
				t.Fatal(err)
			}
			if n.Mode().Perm() != mode {
				t.Fatalf("natively, umask %s gave %s%s mode %03o; the test expects %03o", um, name, um, n.Mode().Perm(), mode)
			}
			if m.Mode().Perm() != mode || b.Mode().Perm() != mode {
				t.Errorf("umask %s: %s%s through the mount %03o (backing file %03o), natively %03o", um, name, um, m.Mode().Perm(), b.Mode().Perm(), mode)
			}
		}
	}
}
