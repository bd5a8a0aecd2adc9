package integration

// mount(8) options as an fstab line writes them: a value holding commas in double quotes, and
// the generic, systemd and FUSE options mount(8) and mount.fuse3 pass along, through the real
// mount(8) and mount.fuse3.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

func TestMountHelperQuotedCommaValueReachesTheFlag(t *testing.T) {
	mount := requireMountHelper(t)
	bin := trowfsbin.Build(t)
	data, mnt, tmp := t.TempDir(), t.TempDir(), t.TempDir()
	logFile := filepath.Join(tmp, "log")
	opts := `layout=plain,exclude="scratch/**,tmp/**",nofail,_netdev,x-systemd.automount,x-systemd.mount-timeout=5min,comment=x,log_file=` + logFile
	if out, code := runMount(t, mount, "-t", "fuse", bin+"#"+data, mnt, "-o", opts); code != 0 {
		t.Fatalf("mount -o %s: exit %d\n%s", opts, code, out)
	}
	t.Cleanup(func() {
		if trowfsbin.Mounted(mnt) {
			_ = trowfsbin.Detach(mnt, true)
		}
	})
	for _, p := range []string{"scratch/a", "tmp/b", "kept"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(mnt, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mnt, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var st trowfsbin.StateDoc
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(mnt, ".state"))
		if err != nil {
			t.Fatal(err)
		}
		if st, err = trowfsbin.ParseState(b); err != nil {
			t.Fatal(err)
		}
		if st.Statuses["excluded"] == 2 && st.Statuses["pending"] == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Statuses["excluded"] != 2 {
		log, _ := os.ReadFile(logFile)
		t.Fatalf("files by status %v, want 2 excluded (scratch/** and tmp/** from one quoted option)\ndaemon log:\n%s", st.Statuses, log)
	}
	if out, code := runMount(t, "umount", mnt); code != 0 {
		t.Fatalf("umount: exit %d\n%s", code, out)
	}
	// The daemon lets go of DATA once it wrote its snapshot.
	deadline = time.Now().Add(trowfsbin.StopTimeout)
	for {
		code, _ := trowfsbin.Verify(t, data, "--exclude", "scratch/**", "--exclude", "tmp/**")
		if code != 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon still holds DATA after umount")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if log, _ := os.ReadFile(logFile); !strings.Contains(string(log), `msg="snapshot written"`) {
		t.Errorf("no snapshot written after umount:\n%s", log)
	}
}

// A quote left open is a clear error, and nothing is mounted. (mount(8) itself silently drops
// such an option before it runs the helper; mount.fuse3, which systemd's mount units and
// scripts may run directly, passes it on.)
func TestMountHelperUnclosedQuoteIsAClearError(t *testing.T) {
	requireMountHelper(t)
	bin := trowfsbin.Build(t)
	data, mnt := t.TempDir(), t.TempDir()
	out, code := runMount(t, "/sbin/mount.fuse3", bin+"#"+data, mnt, "-o", `layout=plain,exclude="scratch/**`)
	if code != 2 || !strings.Contains(out, "not closed") {
		t.Errorf("exit %d, want 2 with a message about the quote:\n%s", code, out)
	}
	if trowfsbin.Mounted(mnt) {
		_ = trowfsbin.Detach(mnt, true)
		t.Fatal("mounted despite the bad options")
	}
}
