package server

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func wantApartRefused(t *testing.T, data, mnt, dataDir string) {
	t.Helper()
	before, _ := os.ReadDir(dataDir)
	_, _, err := checkDirs(data, mnt, false, slog.Default())
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "must not contain each other") {
		t.Errorf("mount %s %s: %v, want a usage error (must not contain each other)", data, mnt, err)
	}
	if after, _ := os.ReadDir(dataDir); len(after) != len(before) {
		t.Errorf("a refused mountpoint created something in DATA: %v -> %v", before, after)
	}
}

// A mountpoint given as a symbolic link into DATA (or to DATA), and DATA given as a link into
// the mountpoint, are refused like the plain paths: both are resolved before comparing.
func TestCheckDirsResolvesSymlinksBeforeComparing(t *testing.T) {
	dir := t.TempDir()
	data, mnt := filepath.Join(dir, "data"), filepath.Join(dir, "mnt")
	mkdirs(t, filepath.Join(data, "sub"), mnt)
	for name, target := range map[string]string{
		"link to a directory in DATA":  filepath.Join(data, "sub"),
		"link to DATA":                 data,
		"link to a missing dir inside": filepath.Join(data, "new"),
		"relative link into DATA":      "data/sub",
	} {
		t.Run(name, func(t *testing.T) {
			link := filepath.Join(dir, "link-"+strings.ReplaceAll(name, " ", "-"))
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			wantApartRefused(t, data, link, data)
			wantApartRefused(t, data, filepath.Join(link, "deeper"), data)
		})
	}
	t.Run("DATA a link into MNT", func(t *testing.T) {
		mkdirs(t, filepath.Join(mnt, "inner"))
		link := filepath.Join(dir, "datalink")
		if err := os.Symlink(filepath.Join(mnt, "inner"), link); err != nil {
			t.Fatal(err)
		}
		wantApartRefused(t, link, mnt, data)
	})
	if _, _, err := checkDirs(data, filepath.Join(dir, "mnt2"), false, slog.Default()); err != nil {
		t.Errorf("separate DATA and MNT refused: %v", err)
	}
}

// A bind mount that aliases DATA is seen through by device and inode.
func TestCheckDirsSeesThroughBindMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("bind mounts need root under CI=true")
		}
		t.Skip("bind mounts need root")
	}
	dir := t.TempDir()
	data, alias := filepath.Join(dir, "data"), filepath.Join(dir, "alias")
	mkdirs(t, filepath.Join(data, "sub"), alias)
	if err := unix.Mount(data, alias, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	defer unix.Unmount(alias, unix.MNT_DETACH)
	wantApartRefused(t, data, filepath.Join(alias, "sub"), data) // MNT below an alias of DATA
	wantApartRefused(t, data, alias, data)                       // MNT an alias of DATA
	wantApartRefused(t, alias, filepath.Join(data, "sub"), data) // DATA an alias, MNT in the original
}

// A mountpoint that holds entries is refused (the mount would hide them) unless nonEmpty.
func TestCheckDirsRefusesNonEmptyMountpoint(t *testing.T) {
	dir := t.TempDir()
	data, mnt := filepath.Join(dir, "data"), filepath.Join(dir, "mnt")
	mkdirs(t, data, mnt)
	if err := os.WriteFile(filepath.Join(mnt, "left-over"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := checkDirs(data, mnt, false, slog.Default())
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "not empty") || !strings.Contains(err.Error(), "--nonempty") {
		t.Errorf("non-empty mountpoint: %v, want a usage error naming --nonempty", err)
	}
	if _, _, err := checkDirs(data, mnt, true, slog.Default()); err != nil {
		t.Errorf("non-empty mountpoint with nonEmpty: %v", err)
	}
}

// A bind mount of a directory inside DATA (or of one inside MNT) is an alias the parent chain
// of its path never reaches: its location in the filesystem, from the mount table, is compared
// instead. Where mounts propagate (shared, the systemd default) a FUSE mount on such an alias
// also appears inside DATA, and DATA then contains itself.
func TestCheckDirsSeesThroughBindMountsOfSubdirectories(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("bind mounts need root under CI=true")
		}
		t.Skip("bind mounts need root")
	}
	dir := t.TempDir()
	data, mnt := filepath.Join(dir, "data"), filepath.Join(dir, "mnt")
	subAlias, mntAlias := filepath.Join(dir, "sub-alias"), filepath.Join(dir, "mnt-alias")
	mkdirs(t, filepath.Join(data, "sub", "deeper"), filepath.Join(mnt, "inner"), subAlias, mntAlias)
	for src, dst := range map[string]string{filepath.Join(data, "sub"): subAlias, filepath.Join(mnt, "inner"): mntAlias} {
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind mount: %v", err)
		}
		defer unix.Unmount(dst, unix.MNT_DETACH)
	}
	wantApartRefused(t, data, subAlias, data)                           // MNT an alias of a directory in DATA
	wantApartRefused(t, data, filepath.Join(subAlias, "deeper"), data)  // MNT below such an alias
	wantApartRefused(t, data, filepath.Join(subAlias, "missing"), data) // MNT to be created there
	wantApartRefused(t, mntAlias, mnt, data)                            // DATA an alias of a directory in MNT
	if _, _, err := checkDirs(data, filepath.Join(dir, "elsewhere"), false, slog.Default()); err != nil {
		t.Errorf("separate DATA and MNT refused: %v", err)
	}
}
