package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `trowfs state` on a directory that is not a trowfs mount but holds a real .state file (a data
// directory, say) refuses with exit 2 instead of printing that file as if it were trowfs's.
func TestStateRefusesARealStateFileOutsideAMount(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".state"), []byte(`{"path":"/","status":"verified"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{dir, filepath.Join(dir, ".state")} {
		if got := run([]string{"state", arg}); got != ExitUsage {
			t.Errorf("trowfs state %s = %d, want %d", arg, got, ExitUsage)
		}
	}
	if got := run([]string{"state", filepath.Join(dir, "missing")}); got != ExitUsage {
		t.Errorf("trowfs state on a missing directory = %d, want %d", got, ExitUsage)
	}
}

func TestMountTypeFromMountinfo(t *testing.T) {
	const mi = `22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
98 22 0:52 / /srv/mnt\040x rw,nosuid,nodev,relatime shared:60 - fuse.trowfs /srv/data rw,user_id=0,group_id=0
99 22 0:53 / /other rw,relatime - fuse.sshfs host: rw
`
	for _, c := range []struct {
		major, minor uint32
		want         string
		found        bool
	}{{0, 52, "fuse.trowfs", true}, {0, 53, "fuse.sshfs", true}, {259, 1, "ext4", true}, {0, 99, "", false}} {
		got, found := mountType(strings.NewReader(mi), c.major, c.minor)
		if got != c.want || found != c.found {
			t.Errorf("mountType(%d:%d) = %q, %v; want %q, %v", c.major, c.minor, got, found, c.want, c.found)
		}
	}
}

// A token file others can read or change is refused with a message saying chmod 600, as ssh
// refuses such a key; an owner-only file is read with white space trimmed; white space only is
// refused.
func TestTokenFileModes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // not subject to the umask
			t.Fatal(err)
		}
		return p
	}
	for _, mode := range []os.FileMode{0o644, 0o604, 0o620, 0o602, 0o666} {
		p := write("tok", "secret\n", mode)
		_, err := readTokenFile(p)
		if err == nil || exitFor(err) != ExitUsage || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %v (exit %d), want exit 2 saying chmod 600", mode, err, exitFor(err))
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400, 0o640} {
		p := write("tok", "  secret\n", mode)
		if tok, err := readTokenFile(p); err != nil || tok != "secret" {
			t.Errorf("mode %04o: %q, %v; want secret", mode, tok, err)
		}
	}
	if _, err := readTokenFile(write("blank", " \n\t", 0o600)); err == nil || exitFor(err) != ExitUsage {
		t.Errorf("white-space-only token file: %v, want exit 2", err)
	}
	if _, err := readTokenFile(filepath.Join(dir, "none")); err == nil || exitFor(err) != ExitUsage {
		t.Errorf("missing token file: %v, want exit 2", err)
	}
}
