package registry

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLayout(t *testing.T) {
	for _, l := range Layouts {
		got, err := ParseLayout(string(l))
		if err != nil || got != l {
			t.Errorf("ParseLayout(%q) = %q, %v", l, got, err)
		}
	}
	for _, bad := range []string{"auto", "", "Trow-Files", "oci"} {
		if _, err := ParseLayout(bad); !errors.Is(err, ErrUnknownLayout) {
			t.Errorf("ParseLayout(%q) error = %v, want ErrUnknownLayout", bad, err)
		}
	}
}

func TestBlobDigest(t *testing.T) {
	h := strings.Repeat("ab", 32)
	h512 := strings.Repeat("cd", 64)
	for _, c := range []struct {
		l    Layout
		rel  string
		want string
	}{
		{TrowFiles, "blobs/sha256/" + h, "sha256:" + h},
		{TrowFiles, "blobs/sha256/" + strings.ToUpper(h), ""},
		{TrowFiles, "blobs/sha256/" + h[:63], ""},
		{TrowFiles, "blobs/sha512/" + h512, ""},
		{TrowFiles, "x/blobs/sha256/" + h, ""},
		{TrowSQLite, "blobs/sha256:" + h, "sha256:" + h},
		{TrowSQLite, "blobs/sha512:" + h512, "sha512:" + h512},
		{TrowSQLite, "blobs/sha512:" + h, ""},
		{TrowSQLite, "blobs/md5:" + h[:32], ""},
		{TrowSQLite, "uploads/sha256:" + h, ""},
		{Distribution, "docker/registry/v2/blobs/sha256/ab/" + h + "/data", "sha256:" + h},
		{Distribution, "docker/registry/v2/blobs/sha256/cd/" + h + "/data", ""},
		{Distribution, "docker/registry/v2/blobs/sha256/ab/" + h, ""},
		{Distribution, "docker/registry/v2/repositories/x/_layers/sha256/" + h + "/link", ""},
		{OCILayout, "blobs/sha256/" + h, "sha256:" + h},
		{OCILayout, "org/app/blobs/sha256/" + h, "sha256:" + h},
		{OCILayout, "org/app/blobs/sha512/" + h512, "sha512:" + h512},
		{OCILayout, "org/app/blobs/sha256/" + h + "x", ""},
		{Plain, "blobs/sha256/" + h, ""},
	} {
		d, ok := c.l.BlobDigest(c.rel)
		if string(d) != c.want || ok != (c.want != "") {
			t.Errorf("%s.BlobDigest(%q) = %q, %v; want %q", c.l, c.rel, d, ok, c.want)
		}
	}
}

func TestExcludes(t *testing.T) {
	for _, l := range Layouts {
		if l != Plain && len(l.Excludes()) == 0 {
			t.Errorf("%s has no default excludes", l)
		}
	}
	if ex := TrowSQLite.Excludes(); !contains(ex, "trow.db-wal") || !contains(ex, "uploads/**") || contains(ex, "trow.db") {
		t.Errorf("trow-sqlite excludes = %v", ex)
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func TestDetect(t *testing.T) {
	mk := func(files ...string) string {
		root := t.TempDir()
		for _, f := range files {
			if strings.HasSuffix(f, "/") {
				if err := os.MkdirAll(filepath.Join(root, f), 0o755); err != nil {
					t.Fatal(err)
				}
				continue
			}
			writeFile(t, root, f, []byte("x"))
		}
		return root
	}
	h := strings.Repeat("0", 64)
	for _, c := range []struct {
		name  string
		files []string
		want  Layout
	}{
		{"empty", nil, Plain},
		{"random files", []string{"a/b/c.txt"}, Plain},
		{"trow.db", []string{"trow.db", "blobs/"}, TrowSQLite},
		{"flat blobs only", []string{"blobs/sha256:" + h}, TrowSQLite},
		{"trow files", []string{"blobs/sha256/", "manifests/", "scratch/"}, TrowFiles},
		{"distribution", []string{"docker/registry/v2/"}, Distribution},
		{"oci at root", []string{"oci-layout", "index.json", "blobs/sha256/"}, OCILayout},
		{"olareg nested", []string{"org/team/app/oci-layout", "org/team/app/index.json"}, OCILayout},
	} {
		if got := Detect(mk(c.files...)); got != c.want {
			t.Errorf("%s: Detect = %s, want %s", c.name, got, c.want)
		}
	}
	if got := Detect(filepath.Join(t.TempDir(), "does-not-exist")); got != Plain {
		t.Errorf("Detect(missing) = %s, want plain", got)
	}
}
