package mountinfo

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Mount
		ok   bool
	}{
		{`44 26 0:39 / /tmp/a\040b/mnt rw,nosuid,nodev,relatime - fuse.trowfs /tmp/a\040b/data rw,user_id=0,group_id=0`,
			Mount{Root: "/", Point: "/tmp/a b/mnt", FSType: "fuse.trowfs", Source: "/tmp/a b/data", Major: 0, Minor: 39}, true},
		{`36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue`,
			Mount{Root: "/mnt1", Point: "/mnt2", FSType: "ext3", Source: "/dev/root", Major: 98, Minor: 0}, true},
		{`48 22 0:43 / /sys/fs/fuse/connections rw,relatime - fusectl fusectl rw`,
			Mount{Root: "/", Point: "/sys/fs/fuse/connections", FSType: "fusectl", Source: "fusectl", Minor: 43}, true},
		{`garbage`, Mount{}, false},
		{`1 2 x:y / /m rw - ext4 /dev/x rw`, Mount{}, false},
	} {
		got, ok := Parse(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
	if !(Mount{FSType: "fuse.trowfs"}).FUSE() || !(Mount{FSType: "fuse"}).FUSE() || (Mount{FSType: "fusectl"}).FUSE() {
		t.Error("FUSE() misclassifies fuse, fuse.trowfs or fusectl")
	}
	if got := Unescape(`a\134b\011c\`); got != "a\\b\tc\\" {
		t.Errorf("Unescape = %q", got)
	}
	if got := Unescape(`/var/tmp/a\040b`); got != "/var/tmp/a b" {
		t.Errorf("Unescape = %q", got)
	}
}
