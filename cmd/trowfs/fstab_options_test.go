package main

import (
	"slices"
	"strings"
	"testing"
)

// What mount.fuse3 and mount(8) hand the helper, copied from their real argv (a recording
// helper run by `mount.fuse3 'rec#/data' MNT -o ...` and `mount -t fuse -o ...`): quotes and
// backslashes arrive as typed, and mount.fuse3 appends dev,suid.
func TestMountHelperOptionValuesWithCommas(t *testing.T) {
	for _, c := range []struct {
		opts string
		want []string
	}{
		{`layout=plain,exclude="a/**,b/**",x-systemd.automount,x-systemd.requires=foo.service,comment=x,exclude=c\,d,defaults,dev,suid`,
			[]string{"--layout=plain", "--exclude=a/**,b/**", "--exclude=c,d"}},
		{`rw,peer_join="trow-0.trow:7946,trow-1.trow:7946",listen=unix:/run/a=b.sock,dev,suid`,
			[]string{"--peer-join=trow-0.trow:7946,trow-1.trow:7946", "--listen=unix:/run/a=b.sock"}},
		{`log_level="warn"`, []string{"--log-level=warn"}},
	} {
		h, err := parseHelperArgs(helperModel(t), []string{"/data", "/mnt", "-o", c.opts})
		if err != nil {
			t.Errorf("-o %s: %v", c.opts, err)
			continue
		}
		if got := h.args[3:]; !slices.Equal(got, c.want) {
			t.Errorf("-o %s:\n got %q\nwant %q", c.opts, got, c.want)
		}
	}
	_, err := parseHelperArgs(helperModel(t), []string{"/data", "/mnt", "-o", `exclude="a,b`})
	if err == nil || !strings.Contains(err.Error(), "not closed") {
		t.Errorf("an unclosed quote: %v, want a clear error", err)
	}
}

// Options mount(8), mount.fuse3 and systemd's fstab generator may pass for an fstab line are
// accepted and ignored, never refused; options that mean nothing to trowfs are refused by name.
func TestMountHelperIgnoresMountAndSystemdOptions(t *testing.T) {
	ignored := []string{"defaults", "noauto", "auto", "nofail", "_netdev", "user", "users", "owner", "rw", "dev", "suid",
		"nodev", "nosuid", "exec", "noexec", "noatime", "relatime", "x-systemd.automount", "x-systemd.requires=a.service",
		"x-systemd.mount-timeout=5min", "x-systemd.idle-timeout=1h", "x-systemd.device-timeout=30", "x-mount.mkdir",
		"x-initrd.mount", "comment=systemd.automount", "fsname=trowfs", "subtype=trowfs", "allow_other", "default_permissions"}
	h, err := parseHelperArgs(helperModel(t), []string{"/data", "/mnt", "-o", strings.Join(ignored, ",")})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.args) != 3 {
		t.Fatalf("ignored options became flags: %q", h.args)
	}
	for _, o := range []string{"kernel_cache", "uid=1000", "context=system_u:object_r:fuse_t", "exec_stop_timeout2=1s"} {
		_, err := parseHelperArgs(helperModel(t), []string{"/data", "/mnt", "-o", o})
		name, _, _ := strings.Cut(o, "=")
		if err == nil || !strings.Contains(err.Error(), `unknown option "`+name+`"`) {
			t.Errorf("-o %s: %v, want unknown option %q", o, err, name)
		}
	}
}
