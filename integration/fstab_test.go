package integration

// The mount(8) form, for real: `mount -t fuse 'BIN#DATA' MNT -o ...`, an /etc/fstab line (via
// mount -T), `mount -t fuse.trowfs` through mount.fuse3, and the mount.fuse.trowfs name. trowfs
// detaches and mount returns once the mount serves; `umount MNT` makes the daemon write the
// snapshot and exit.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// requireMountHelper skips (fails under CI) without mount(8) and mount.fuse3.
func requireMountHelper(t *testing.T) string {
	t.Helper()
	trowfsbin.Require(t)
	mount, err := exec.LookPath("mount")
	if err == nil {
		_, err = os.Stat("/sbin/mount.fuse3")
	}
	if err != nil {
		if trowfsbin.InCI() {
			t.Fatalf("mount(8) and /sbin/mount.fuse3 (apt: fuse3) are needed: %v", err)
		}
		t.Skipf("mount(8) or mount.fuse3 missing: %v", err)
	}
	return mount
}

// runMount runs mount(8) or umount(8) and returns its combined output and exit code.
func runMount(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(trowfsbin.ReadyTimeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s %s did not return within %v", name, strings.Join(args, " "), trowfsbin.ReadyTimeout)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(out), 0
}

// detachedMount checks that a mount(8) call left a serving trowfs mount on mnt, writes a file
// through it, unmounts it with umount(8) and checks that the daemon exited after writing the
// snapshot (verify exits 0 with the file, not 3 for a held data directory).
func detachedMount(t *testing.T, data, mnt, logFile string) {
	t.Helper()
	t.Cleanup(func() {
		if trowfsbin.Mounted(mnt) {
			_ = trowfsbin.Detach(mnt, true)
			t.Errorf("%s was left mounted", mnt)
		}
	})
	m, ok := trowfsbin.FindMount(mnt)
	if !ok || m.FSType != "fuse.trowfs" || m.Source != data {
		t.Fatalf("after mount returned, %s is %+v, want a fuse.trowfs mount of %s", mnt, m, data)
	}
	if _, err := os.ReadFile(filepath.Join(mnt, ".state")); err != nil {
		t.Fatalf("MNT/.state right after mount returned: %v", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "pushed"), []byte("blob"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := runMount(t, "umount", mnt); code != 0 {
		t.Fatalf("umount %s: exit %d\n%s", mnt, code, out)
	}
	deadline := time.Now().Add(trowfsbin.StopTimeout)
	for {
		code, v := trowfsbin.Verify(t, data)
		if code == 0 && v.Snapshot == "loaded" && v.Files == 1 && len(v.Differences) == 0 {
			break
		}
		if code != 3 || time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("after umount: verify exit %d, snapshot %s, %d files, differences %v; want 0 once the daemon wrote its snapshot and exited\ndaemon log:\n%s", code, v.Snapshot, v.Files, v.Differences, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(logFile)
	for _, want := range []string{`msg=mounted`, `msg="unmounted from outside"`, `msg="snapshot written"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the daemon's log_file lacks %s:\n%s", want, log)
		}
	}
}

func TestMountHelperHashFormDetachesAndUmountWritesSnapshot(t *testing.T) {
	mount := requireMountHelper(t)
	bin := trowfsbin.Build(t)
	data, mnt, tmp := t.TempDir(), t.TempDir(), t.TempDir()
	logFile := filepath.Join(tmp, "log")
	start := time.Now()
	out, code := runMount(t, mount, "-t", "fuse", bin+"#"+data, mnt, "-o",
		"layout=plain,rw,nodev,nosuid,allow_other,checkpoint_interval=0,verify_on_start=quick,log_file="+logFile)
	if code != 0 {
		t.Fatalf("mount -t fuse 'trowfs#DATA': exit %d\n%s", code, out)
	}
	if strings.TrimSpace(out) != "" {
		t.Errorf("mount printed %q on success, want nothing", out)
	}
	t.Logf("mount returned after %v", time.Since(start))
	detachedMount(t, data, mnt, logFile)
}

func TestMountHelperFstabLine(t *testing.T) {
	mount := requireMountHelper(t)
	bin := trowfsbin.Build(t)
	data, mnt, tmp := t.TempDir(), t.TempDir(), t.TempDir()
	logFile := filepath.Join(tmp, "log")
	fstab := filepath.Join(tmp, "fstab")
	line := fmt.Sprintf("%s#%s %s fuse noauto,nofail,_netdev,x-systemd.requires=network.target,layout=plain,log_file=%s 0 0\n", bin, data, mnt, logFile)
	if err := os.WriteFile(fstab, []byte("# test fstab\n"+line), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := runMount(t, mount, "-T", fstab, mnt); code != 0 {
		t.Fatalf("mount -T fstab MNT with %q: exit %d\n%s", line, code, out)
	}
	detachedMount(t, data, mnt, logFile)
}

func TestMountHelperFuseTrowfsType(t *testing.T) {
	mount := requireMountHelper(t)
	bin := trowfsbin.Build(t)
	// mount.fuse3 runs `trowfs` through /bin/sh with mount(8)'s clean environment (no PATH), so
	// the shell's default path applies: /usr/local/sbin is where make install puts it. Link the
	// built binary there for the test unless something else is installed there.
	const installed = "/usr/local/sbin/trowfs"
	if target, err := os.Readlink(installed); err == nil && target == bin {
	} else if _, err := os.Lstat(installed); err == nil {
		if trowfsbin.InCI() {
			t.Fatalf("%s exists (not this build): cannot test mount -t fuse.trowfs with the build under test", installed)
		}
		t.Skipf("%s is installed; not replacing it to test mount -t fuse.trowfs", installed)
	} else {
		if err := os.Symlink(bin, installed); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(installed) })
	}
	data, mnt, tmp := t.TempDir(), t.TempDir(), t.TempDir()
	logFile := filepath.Join(tmp, "log")
	if out, code := runMount(t, mount, "-t", "fuse.trowfs", data, mnt, "-o", "layout=plain,log_file="+logFile); code != 0 {
		t.Fatalf("mount -t fuse.trowfs: exit %d\n%s", code, out)
	}
	detachedMount(t, data, mnt, logFile)
}

func TestMountHelperNamedMountFuseTrowfs(t *testing.T) {
	requireMountHelper(t)
	bin := trowfsbin.Build(t)
	data, mnt, tmp := t.TempDir(), t.TempDir(), t.TempDir()
	helper := filepath.Join(tmp, "mount.fuse.trowfs")
	if err := os.Symlink(bin, helper); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(tmp, "log")
	// What mount(8) runs when it finds /sbin/mount.fuse.trowfs.
	if out, code := runMount(t, helper, data, mnt, "-o", "rw,layout=plain,log_file="+logFile); code != 0 {
		t.Fatalf("mount.fuse.trowfs DATA MNT -o ...: exit %d\n%s", code, out)
	}
	detachedMount(t, data, mnt, logFile)
}

func TestMountHelperReportsErrorsWithoutDetaching(t *testing.T) {
	mount := requireMountHelper(t)
	bin := trowfsbin.Build(t)
	data, mnt := t.TempDir(), t.TempDir()
	for _, c := range []struct {
		source, opts, want string
		code               int
	}{
		{bin + "#" + filepath.Join(data, "missing"), "layout=plain", "no such file", 2},
		{bin + "#" + data, "bogus=1", `unknown option "bogus"`, 2},
		{bin + "#" + data, "ro", "read-write", 2},
	} {
		out, code := runMount(t, mount, "-t", "fuse", c.source, mnt, "-o", c.opts)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("mount -t fuse %s -o %s: exit %d, want %d with %q\n%s", c.source, c.opts, code, c.code, c.want, out)
		}
		if trowfsbin.Mounted(mnt) {
			_ = trowfsbin.Detach(mnt, true)
			t.Fatalf("%s was mounted by a failing mount", mnt)
		}
	}
}
