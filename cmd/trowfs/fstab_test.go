package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

func helperModel(t *testing.T) *kong.Node {
	t.Helper()
	p, err := kong.New(&cli{}, kong.Name("trowfs"))
	if err != nil {
		t.Fatal(err)
	}
	return p.Model.Node
}

func TestMountHelperOptionsBecomeMountFlags(t *testing.T) {
	h, err := parseHelperArgs(helperModel(t), []string{"/srv/data", "/mnt/reg", "-o",
		"rw,nodev,nosuid,allow_other,_netdev,nofail,x-systemd.requires=foo.service,layout=distribution,exclude=a/**,exclude=b,verify_on_start=full,nonempty,delete-untagged,listen=unix:/run/t.sock,log_level=warn",
		"-n", "-s", "-o", "checkpoint_interval=30s"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"mount", "/srv/data", "/mnt/reg", "--layout=distribution", "--exclude=a/**", "--exclude=b", "--verify-on-start=full",
		"--nonempty", "--delete-untagged", "--listen=unix:/run/t.sock", "--log-level=warn", "--checkpoint-interval=30s"}
	if !slices.Equal(h.args, want) {
		t.Fatalf("args\n got %q\nwant %q", h.args, want)
	}
	if h.foreground || h.fake {
		t.Fatalf("foreground %v fake %v", h.foreground, h.fake)
	}
	h, err = parseHelperArgs(helperModel(t), []string{"/usr/local/sbin/trowfs#/srv/data", "/mnt/reg", "-f", "-o", "foreground,log_file=/var/log/t.log"})
	if err != nil || h.data != "/srv/data" || !h.fake || !h.foreground || h.logFile != "/var/log/t.log" {
		t.Fatalf("%+v, %v", h, err)
	}
}

func TestMountHelperRejectsBadOptions(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"/d", "/m", "-o", "bogus=1"}, "unknown option"},
		{[]string{"/d", "/m", "-o", "ro"}, "read-write"},
		{[]string{"/d", "/m", "-o", "layout"}, "needs a value"},
		{[]string{"/d", "/m", "-o", "exec=x"}, ""}, // the generic exec option: ignored
		{[]string{"/d", "/m", "-o", "help"}, "unknown option"},
		{[]string{"/d"}, "want DATA and MNT"},
		{[]string{"/d", "/m", "--layout=plain"}, "unknown option"},
	} {
		_, err := parseHelperArgs(helperModel(t), c.args)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: error %v, want %q", c.args, err, c.want)
		}
	}
}

func TestMountHelperCallDetection(t *testing.T) {
	for _, c := range []struct {
		argv0 string
		args  []string
		want  bool
	}{
		{"/usr/local/sbin/trowfs", []string{"/d", "/m", "-o", "layout=plain"}, true},
		{"/sbin/mount.fuse.trowfs", []string{"/d", "/m"}, true},
		{"trowfs", []string{"mount", "/d", "/m"}, false},
		{"trowfs", []string{"verify", "/d"}, false},
		{"trowfs", []string{"--log-level", "debug", "mount"}, false},
		{"trowfs", []string{"version"}, false},
		{"trowfs", nil, false},
	} {
		if got := isMountHelperCall(c.argv0, c.args); got != c.want {
			t.Errorf("%s %q: %v, want %v", c.argv0, c.args, got, c.want)
		}
	}
}

// `trowfs peers --listen ADDR` and any other subcommand with two arguments must reach its
// command, not be taken for the mount(8) form `trowfs DATA MNT`.
func TestEveryCommandIsNotTakenForTheMountForm(t *testing.T) {
	p, err := kong.New(&cli{}, kong.Name("trowfs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Model.Children {
		if isMountHelperCall("trowfs", []string{c.Name, "--listen", "unix:/run/trowfs.sock"}) {
			t.Errorf("trowfs %s --listen ADDR is taken for the mount form", c.Name)
		}
	}
}
