package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// settleTimeout bounds how long a small mount may take to hash everything.
const settleTimeout = 30 * time.Second

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func cliSHA(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// cliDemo writes the demo registry into a fresh DATA and returns DATA and a mountpoint path.
func cliDemo(t *testing.T) (data, mnt string) {
	t.Helper()
	dir := t.TempDir()
	data, mnt = filepath.Join(dir, "data"), filepath.Join(dir, "mnt")
	trowfsbin.Demo(t, data)
	return data, mnt
}

// cliBackingFiles walks DATA (without .trowfs) and returns each regular file's size.
func cliBackingFiles(t *testing.T, data string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(data, p)
		if d.IsDir() && rel == ".trowfs" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			out[filepath.ToSlash(rel)] = info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func cliNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func cliRequireKeys(t *testing.T, what string, raw map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := raw[k]; !ok {
			t.Errorf("%s has no %q key (documented); keys: %v", what, k, mapKeys(raw))
		}
	}
}

func mapKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// The help texts are how an operator learns the tool: they must exit 0 and name the flags.
func TestCLIHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"mount", "verify", "state", "demo", "version", "Exit codes", "docs/cli.md"}},
		{[]string{"mount", "--help"}, []string{"--ready-file", "--checkpoint-interval", "--verify-on-start", "--exclude", "--listen", "--write-mode", "--layout", "--nonempty"}},
		{[]string{"verify", "--help"}, []string{"--json", "--progress", "--layout", "--exclude", "--delete-untagged"}},
		{[]string{"state", "--help"}, []string{"<path>"}},
		{[]string{"demo", "--help"}, []string{"<dir>"}},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			r := trowfsbin.Run(t, tc.args...)
			if r.Code != 0 {
				t.Fatalf("trowfs %v: exit %d, want 0; stderr:\n%s", tc.args, r.Code, r.Stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Stdout, w) {
					t.Errorf("trowfs %v does not mention %q:\n%s", tc.args, w, r.Stdout)
				}
			}
		})
	}
	r := trowfsbin.Run(t, "version")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "trowfs ") {
		t.Errorf("trowfs version: exit %d, output %q", r.Code, r.Stdout)
	}
}

// Bad command lines exit 2 with a message that names what is wrong, and mount nothing.
func TestCLIUsageErrors(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	missing := filepath.Join(dir, "does-not-exist")
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown flag", []string{"mount", "--bogus-flag", data, mnt}, "unknown flag --bogus-flag"},
		{"unknown command", []string{"frobnicate"}, "frobnicate"},
		{"no command", nil, `expected one of "mount"`},
		{"missing data dir", []string{"mount", missing, mnt}, missing},
		{"data is a file", []string{"mount", filepath.Join(dir, "file"), mnt}, "not a directory"},
		{"mountpoint inside data", []string{"mount", data, filepath.Join(data, "mnt")}, "must not contain each other"},
		{"data inside mountpoint", []string{"mount", data, dir}, "must not contain each other"},
		{"only DATA", []string{"mount", data}, "needs both DATA and MNT"},
		{"bad verify mode", []string{"mount", data, mnt, "--verify-on-start", "sometimes"}, "--verify-on-start"},
		{"bad scrub sample", []string{"mount", data, mnt, "--scrub-sample", "2"}, "--scrub-sample"},
		{"bad scrub rate", []string{"mount", data, mnt, "--scrub-rate", "fast"}, "--scrub-rate"},
		{"verify missing dir", []string{"verify", missing}, missing},
		{"verify no dir", []string{"verify"}, "<data>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "data is a file" {
				if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := trowfsbin.RunWithin(t, 20*time.Second, tc.args...)
			if r.Code != 2 {
				t.Errorf("trowfs %v: exit %d, want 2 (usage); stderr:\n%s", tc.args, r.Code, r.Stderr)
			}
			if !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("trowfs %v: stderr does not name %q:\n%s", tc.args, tc.want, r.Stderr)
			}
			for _, m := range trowfsbin.FUSEMountsUnder(dir) {
				_ = trowfsbin.Detach(m.Point, true)
				t.Errorf("a rejected command line mounted %s", m.Point)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(data, ".trowfs")); err == nil {
		t.Errorf("a rejected command line created %s/.trowfs", data)
	}
}

// While one trowfs serves DATA, a second mount of it and an offline verify of it exit 3, and
// the first mount is not disturbed.
func TestCLIInUse(t *testing.T) {
	data, mnt := cliDemo(t)
	p := trowfsbin.Start(t, data, mnt)
	before := p.WaitSettled(t, settleTimeout)

	mnt2 := filepath.Join(filepath.Dir(mnt), "mnt2")
	r := trowfsbin.RunWithin(t, 30*time.Second, "mount", data, mnt2)
	if trowfsbin.Mounted(mnt2) {
		_ = trowfsbin.Detach(mnt2, true)
		t.Errorf("the second trowfs mounted %s", mnt2)
	}
	if r.Code != 3 {
		t.Errorf("second mount of %s: exit %d, want 3 (in use); stderr:\n%s", data, r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "in use") || !strings.Contains(r.Stderr, data) {
		t.Errorf("second mount: the message should say %s is in use:\n%s", data, r.Stderr)
	}

	code, _ := trowfsbin.Verify(t, data)
	if code != 3 {
		t.Errorf("verify of a mounted DATA: exit %d, want 3", code)
	}
	r = trowfsbin.Run(t, "verify", data)
	if !strings.Contains(r.Stderr, "mounted by a running trowfs") {
		t.Errorf("verify of a mounted DATA should say why it refused:\n%s", r.Stderr)
	}

	after := p.State(t, "")
	if after.Digest != before.Digest || !trowfsbin.Mounted(mnt) {
		t.Errorf("the refused commands disturbed the running mount: digest %s -> %s", before.Digest, after.Digest)
	}
	p.Stop(t)
	if code, v := trowfsbin.Verify(t, data); code != 0 {
		t.Errorf("verify after unmount: exit %d, %s", code, v.Verdict)
	}
}

// The whole operator story: mount a registry, read .state, see that readdir hides trowfs's
// files, write through the mount, unmount, and verify offline against the snapshot.
func TestCLIMountDemoRegistry(t *testing.T) {
	data, mnt := cliDemo(t)
	p := trowfsbin.Start(t, data, mnt, "--checkpoint-interval", "1s")
	s := p.WaitSettled(t, settleTimeout)

	cliRequireKeys(t, "root .state", s.Raw, "path", "kind", "digest", "status", "files", "dirs", "symlinks", "bytes",
		"statuses", "changed_at", "verified_at", "findings", "findings_count", "mount", "registry")
	if mi, ok := s.Raw["mount"].(map[string]any); ok {
		cliRequireKeys(t, "root .state mount", mi, "data_dir", "mountpoint", "mounted_since", "layout", "write_mode",
			"kernel_passthrough", "pending_files", "load", "trowfs_version")
	}
	backing := cliBackingFiles(t, data)
	var bytesTotal int64
	for _, n := range backing {
		bytesTotal += n
	}
	if s.Path != "/" || s.Kind != "dir" || !digestRE.MatchString(s.Digest) || s.Status != "verified" {
		t.Errorf("root .state: path %q kind %q digest %q status %q", s.Path, s.Kind, s.Digest, s.Status)
	}
	if s.Files != int64(len(backing)) || s.Bytes != bytesTotal {
		t.Errorf("root .state counts %d files, %d bytes; DATA holds %d files, %d bytes", s.Files, s.Bytes, len(backing), bytesTotal)
	}
	if s.Statuses["verified"] != s.Files || s.FindingsCount != 0 {
		t.Errorf("root .state statuses %v, findings %d: want every file verified, no findings", s.Statuses, s.FindingsCount)
	}
	if s.Mount.DataDir != data || s.Mount.Mountpoint != mnt || s.Mount.Load.Snapshot != "missing" || s.Mount.Layout != "trow-files" {
		t.Errorf("root .state mount: %+v", s.Mount)
	}
	if s.Registry == nil || !s.Registry.InSync || !s.Registry.OK || s.Registry.Repositories != 3 || s.Registry.Tags != 5 {
		t.Errorf("root .state registry: %+v, want the demo's 3 repositories and 5 tags, in sync", s.Registry)
	}

	// readdir shows exactly the backing directory: no .state, no .trowfs.
	want := slices.DeleteFunc(cliNames(t, data), func(n string) bool { return n == ".trowfs" })
	if got := cliNames(t, mnt); !slices.Equal(got, want) {
		t.Errorf("ls %s = %v, want %v (DATA without .trowfs)", mnt, got, want)
	}
	if got := cliNames(t, filepath.Join(mnt, "blobs")); slices.Contains(got, ".state") {
		t.Errorf("ls blobs lists .state: %v", got)
	}
	// ... but lookups find .state, read-only, and never .trowfs.
	if st, err := os.Stat(filepath.Join(mnt, ".state")); err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o222 != 0 {
		t.Errorf("stat .state: %v, %v; want a read-only regular file", st, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, ".trowfs")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat .trowfs through the mount: %v, want ENOENT", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, ".state"), []byte("x"), 0o644); err == nil {
		t.Errorf("writing .state succeeded")
	}
	var blobFiles int64
	for rel := range backing {
		if strings.HasPrefix(rel, "blobs/") {
			blobFiles++
		}
	}
	if bs := p.State(t, "blobs"); bs.Path != "/blobs" || bs.Mount != nil || bs.Files != blobFiles {
		t.Errorf("blobs/.state: path %q, files %d (DATA has %d), mount %v", bs.Path, bs.Files, blobFiles, bs.Mount)
	}

	// A blob's xattr digest is the blob's name.
	blobs := cliNames(t, filepath.Join(data, "blobs", "sha256"))
	buf := make([]byte, 128)
	n, err := unix.Getxattr(filepath.Join(mnt, "blobs", "sha256", blobs[0]), "user.trowfs.digest", buf)
	if err != nil || string(buf[:n]) != "sha256:"+blobs[0] {
		t.Errorf("user.trowfs.digest of blob %s = %q (%v)", blobs[0], buf[:max(n, 0)], err)
	}

	// Write through the mount; the tree follows.
	content := bytes.Repeat([]byte("written through trowfs\n"), 5000)
	if err := os.MkdirAll(filepath.Join(mnt, "notes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "notes", "hello.txt"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := p.WaitSettled(t, settleTimeout)
	if s2.Digest == s.Digest || s2.Files != s.Files+1 {
		t.Errorf("after a write: digest %s -> %s, files %d -> %d", s.Digest, s2.Digest, s.Files, s2.Files)
	}
	n, err = unix.Getxattr(filepath.Join(mnt, "notes", "hello.txt"), "user.trowfs.digest", buf)
	if err != nil || string(buf[:n]) != cliSHA(content) {
		t.Errorf("user.trowfs.digest of the written file = %q (%v), want %s", buf[:max(n, 0)], err, cliSHA(content))
	}
	r := trowfsbin.Run(t, "state", mnt)
	if st, err := trowfsbin.ParseState([]byte(r.Stdout)); r.Code != 0 || err != nil || st.Digest != s2.Digest {
		t.Errorf("trowfs state %s: exit %d, err %v, digest %q want %s", mnt, r.Code, err, st.Digest, s2.Digest)
	}

	p.Stop(t)
	if !strings.Contains(p.Stderr(), "snapshot written") {
		t.Errorf("the log does not say the snapshot was written:\n%s", p.Stderr())
	}
	if got, err := os.ReadFile(filepath.Join(data, "notes", "hello.txt")); err != nil || !bytes.Equal(got, content) {
		t.Errorf("the file written through the mount is not in DATA intact (err %v)", err)
	}
	code, v := trowfsbin.Verify(t, data)
	cliRequireKeys(t, "verify --json", v.Raw, "data", "layout", "snapshot", "snapshot_written_at", "root_digest",
		"snapshot_root_digest", "files", "bytes", "differences", "findings", "registry", "verdict", "exit_code", "took")
	if code != 0 || v.Snapshot != "loaded" || len(v.Differences) != 0 || len(v.Findings) != 0 {
		t.Errorf("verify after unmount: exit %d, snapshot %q, differences %+v, findings %+v", code, v.Snapshot, v.Differences, v.Findings)
	}
	if v.RootDigest != s2.Digest || v.SnapshotRootDigest != s2.Digest {
		t.Errorf("verify root %s, snapshot root %s; .state said %s before unmount", v.RootDigest, v.SnapshotRootDigest, s2.Digest)
	}
	if v.Files != s2.Files || v.Registry == nil || !v.Registry.InSync {
		t.Errorf("verify counts %d files (mount said %d), registry %+v", v.Files, s2.Files, v.Registry)
	}
}

type cliChange struct{ path, change string }

// Changes made to DATA while nothing is mounted are named, exactly, by verify and by the next
// mount's .state.
func TestCLIChangedWhileUnmounted(t *testing.T) {
	data, mnt := cliDemo(t)
	for name, body := range map[string]string{"keep.txt": "keep", "mod.txt": "before", "del.txt": "delete me"} {
		if err := os.MkdirAll(filepath.Join(data, "extra"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "extra", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := trowfsbin.Start(t, data, mnt)
	first := p.WaitSettled(t, settleTimeout)
	p.Stop(t)
	if code, v := trowfsbin.Verify(t, data); code != 0 {
		t.Fatalf("verify right after unmount: exit %d, differences %+v, findings %+v", code, v.Differences, v.Findings)
	}

	if err := os.WriteFile(filepath.Join(data, "extra", "mod.txt"), []byte("after, and longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(data, "extra", "del.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "extra", "new.txt"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []cliChange{{"extra/del.txt", "removed"}, {"extra/mod.txt", "modified"}, {"extra/new.txt", "added"}}

	code, v := trowfsbin.Verify(t, data)
	var got []cliChange
	for _, d := range v.Differences {
		got = append(got, cliChange{d.Path, d.Change})
	}
	sortChanges(got)
	if code != 1 || !slices.Equal(got, want) || len(v.Findings) != 0 {
		t.Errorf("verify: exit %d, differences %v, findings %+v; want exit 1 and exactly %v", code, got, v.Findings, want)
	}
	if v.SnapshotRootDigest != first.Digest || v.RootDigest == first.Digest {
		t.Errorf("verify: snapshot root %s (mount said %s), root now %s", v.SnapshotRootDigest, first.Digest, v.RootDigest)
	}
	r := trowfsbin.Run(t, "verify", data, "--progress", "none")
	if r.Code != 1 {
		t.Errorf("human verify: exit %d, want 1", r.Code)
	}
	for _, c := range want {
		if !regexp.MustCompile(`(?m)^\s+` + c.change + `\s+file\s+` + regexp.QuoteMeta(c.path) + `$`).MatchString(r.Stdout) {
			t.Errorf("human verify output does not list %s %s:\n%s", c.change, c.path, r.Stdout)
		}
	}

	p = trowfsbin.Start(t, data, mnt)
	s := p.WaitSettled(t, settleTimeout)
	load := s.Mount.Load
	got = nil
	for _, c := range load.ChangedWhileUnmounted {
		got = append(got, cliChange{c.Path, c.Change})
	}
	sortChanges(got)
	if load.Snapshot != "loaded" || load.PreviousMountCrashed || !slices.Equal(got, want) || load.ChangedWhileUnmountedCount != len(want) {
		t.Errorf("remount load report: snapshot %q, crashed %v, changed %v (count %d); want %v",
			load.Snapshot, load.PreviousMountCrashed, got, load.ChangedWhileUnmountedCount, want)
	}
	if s.Digest != v.RootDigest {
		t.Errorf("remounted root %s, verify rebuilt %s", s.Digest, v.RootDigest)
	}
	p.Stop(t)
	if code, v := trowfsbin.Verify(t, data); code != 0 {
		t.Errorf("verify after the remount: exit %d, differences %+v", code, v.Differences)
	}
}

func sortChanges(c []cliChange) {
	sort.Slice(c, func(i, j int) bool { return c[i].path < c[j].path })
}

// cliFlipByte corrupts one byte in the middle of path in place, keeping its size and restoring
// its atime and mtime, as bit rot would (the ctime cannot be restored from user space).
func cliFlipByte(t *testing.T, path string) {
	t.Helper()
	var before unix.Stat_t
	if err := unix.Stat(path, &before); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := before.Size / 2
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ts := []unix.Timespec{before.Atim, before.Mtim}
	if err := unix.UtimesNano(path, ts); err != nil {
		t.Fatal(err)
	}
	var after unix.Stat_t
	if err := unix.Stat(path, &after); err != nil {
		t.Fatal(err)
	}
	if after.Size != before.Size || after.Mtim != before.Mtim || after.Ino != before.Ino {
		t.Fatalf("the corruption changed the metadata it should keep: %+v -> %+v", before, after)
	}
}

// A blob whose content changes while unmounted, with its size and mtime kept, is an integrity
// problem (exit 4) named by verify, and the next mount reports it too.
func TestCLICorruptBlobWhileUnmounted(t *testing.T) {
	data, mnt := cliDemo(t)
	p := trowfsbin.Start(t, data, mnt)
	p.WaitSettled(t, settleTimeout)
	p.Stop(t)

	blobs := cliNames(t, filepath.Join(data, "blobs", "sha256"))
	sort.Strings(blobs)
	rel := "blobs/sha256/" + blobs[len(blobs)/2]
	cliFlipByte(t, filepath.Join(data, rel))

	code, v := trowfsbin.Verify(t, data)
	if code != 4 {
		t.Errorf("verify after corrupting %s: exit %d, want 4; verdict %q", rel, code, v.Verdict)
	}
	var kinds []string
	for _, f := range v.Findings {
		if f.Path == rel {
			kinds = append(kinds, f.Kind)
			if f.Expected != "sha256:"+filepath.Base(rel) && f.Kind == "mismatch" {
				t.Errorf("mismatch finding expects %s, want the blob's name", f.Expected)
			}
		} else {
			t.Errorf("finding about a file that was not touched: %+v", f)
		}
	}
	if !slices.Contains(kinds, "mismatch") && !slices.Contains(kinds, "bit_rot") {
		t.Errorf("verify findings %+v do not name %s as mismatch or bit_rot", v.Findings, rel)
	}
	if len(v.Differences) != 1 || v.Differences[0].Path != rel ||
		(v.Differences[0].Change != "silent" && v.Differences[0].Change != "modified") {
		t.Errorf("verify differences %+v, want only %s (silent or modified)", v.Differences, rel)
	}
	if v.Registry == nil || v.Registry.MismatchedCount != 1 {
		t.Errorf("verify registry report %+v, want 1 mismatched blob", v.Registry)
	}
	t.Logf("restoring the mtime leaves the ctime changed: verify calls it %q with findings %v", v.Differences[0].Change, kinds)
	r := trowfsbin.Run(t, "verify", data, "--progress", "none")
	if r.Code != 4 || !strings.Contains(r.Stdout, rel) {
		t.Errorf("human verify: exit %d, should name %s:\n%s", r.Code, rel, r.Stdout)
	}

	p = trowfsbin.Start(t, data, mnt)
	s := p.WaitSettled(t, settleTimeout)
	var seen bool
	for _, f := range s.Findings {
		seen = seen || f.Path == rel && f.Kind == "mismatch"
	}
	if !seen || s.Status != "mismatch" || s.Registry == nil || s.Registry.MismatchedCount != 1 {
		t.Errorf("remount: status %q, findings %+v, registry %+v; want %s reported as a mismatch", s.Status, s.Findings, s.Registry, rel)
	}
	p.Stop(t)
}

// A damaged snapshot never blocks the mount: the log says it was unusable, the tree is rebuilt
// by a full rescan, and verify says the snapshot could not be used.
func TestCLICorruptSnapshot(t *testing.T) {
	data, mnt := cliDemo(t)
	p := trowfsbin.Start(t, data, mnt)
	root := p.WaitSettled(t, settleTimeout).Digest
	p.Stop(t)
	snap := filepath.Join(data, ".trowfs", "tree.snap")

	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"empty", func(b []byte) []byte { return nil }},
		{"garbage", func(b []byte) []byte { return bytes.Repeat([]byte("not a snapshot "), len(b)/15+1) }},
		{"one byte flipped", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
		{"trailing garbage", func(b []byte) []byte { return append(b, "tail"...) }},
		{"newer version", func(b []byte) []byte {
			// docs/tree-format.md: "TROWTREE", uvarint version 1, ..., checksum = H(all before it).
			if string(b[:8]) != "TROWTREE" || b[8] != 1 {
				t.Fatalf("the snapshot does not start as docs/tree-format.md says: % x", b[:9])
			}
			b[8] = 2
			sum := sha256.Sum256(b[:len(b)-32])
			copy(b[len(b)-32:], sum[:])
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(snap)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(snap, tc.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			code, v := trowfsbin.Verify(t, data)
			if !strings.HasPrefix(v.Snapshot, "unusable") || !strings.Contains(v.Verdict, "unusable") {
				t.Errorf("verify: snapshot %q, verdict %q; want the snapshot reported unusable", v.Snapshot, v.Verdict)
			}
			if tc.name == "newer version" && !strings.Contains(v.Snapshot, "version") {
				t.Errorf("verify: a snapshot of a newer version is reported as %q; want it to say so (docs/tree-format.md)", v.Snapshot)
			}
			t.Logf("verify: snapshot %q", v.Snapshot)
			// Documented (docs/cli.md): nothing to compare with is not a difference.
			if code != 0 || len(v.Differences) != 0 || v.RootDigest != root {
				t.Errorf("verify: exit %d, differences %+v, root %s (was %s)", code, v.Differences, v.RootDigest, root)
			}

			p := trowfsbin.Start(t, data, mnt)
			s := p.WaitSettled(t, settleTimeout)
			if !strings.HasPrefix(s.Mount.Load.Snapshot, "unusable") || !strings.Contains(p.Stderr(), "snapshot unusable") {
				t.Errorf("mount with a %s snapshot: load.snapshot %q; log:\n%s", tc.name, s.Mount.Load.Snapshot, p.Stderr())
			}
			if s.Digest != root || s.Status != "verified" {
				t.Errorf("after the full rescan: root %s status %s, want %s verified", s.Digest, s.Status, root)
			}
			p.Stop(t)
			if code, v := trowfsbin.Verify(t, data); code != 0 || v.Snapshot != "loaded" || v.SnapshotRootDigest != root {
				t.Errorf("verify after the remount: exit %d, snapshot %q, snapshot root %s", code, v.Snapshot, v.SnapshotRootDigest)
			}
		})
	}
}

// `trowfs mount` without arguments generates a demo registry, mounts it, prints its .state and
// unmounts cleanly on SIGTERM.
func TestCLIDemoMode(t *testing.T) {
	p := trowfsbin.Start(t, "", "")
	deadline := time.Now().Add(settleTimeout)
	for !strings.Contains(p.Stdout(), "Press Ctrl-C") {
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not print its .state within %v; stdout:\n%s\nstderr:\n%s", settleTimeout, p.Stdout(), p.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := p.Stdout()
	head := p.Mnt + "/.state:\n"
	i := strings.Index(out, head)
	j := strings.Index(out, "\n}\n")
	if i < 0 || j < i {
		t.Fatalf("demo output has no %q followed by a JSON document:\n%s", head, out)
	}
	printed, err := trowfsbin.ParseState([]byte(out[i+len(head) : j+2]))
	if err != nil {
		t.Fatalf("the printed .state is not JSON: %v\n%s", err, out)
	}
	if printed.Status != "verified" || !digestRE.MatchString(printed.Digest) || printed.Files == 0 ||
		printed.Registry == nil || !printed.Registry.InSync {
		t.Errorf("printed .state: status %q digest %q files %d registry %+v", printed.Status, printed.Digest, printed.Files, printed.Registry)
	}
	if s := p.State(t, ""); s.Digest != printed.Digest || s.Mount.DataDir != p.Data {
		t.Errorf("cat .state: digest %s data %s; printed %s, mount source %s", s.Digest, s.Mount.DataDir, printed.Digest, p.Data)
	}
	for _, w := range []string{"cat " + p.Mnt + "/blobs/.state", "getfattr"} {
		if !strings.Contains(out, w) {
			t.Errorf("demo output does not suggest %q:\n%s", w, out)
		}
	}
	p.StopWith(t, syscall.SIGINT) // what the demo's "Press Ctrl-C" sends
	if code, v := trowfsbin.Verify(t, p.Data); code != 0 || v.SnapshotRootDigest != printed.Digest {
		t.Errorf("verify of the demo data: exit %d, snapshot root %s, want %s", code, v.SnapshotRootDigest, printed.Digest)
	}
}

// cliLoopFS makes a small ext4 filesystem in an image file and mounts it; remount unmounts and
// mounts it again (dropping every cache of its files). It skips the test when this machine
// cannot make or loop-mount one (the facility is the test's, not trowfs's).
type cliLoopFS struct {
	img, dir string
}

func newCLILoopFS(t *testing.T) *cliLoopFS {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "debugfs", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("simulating bit rot needs %s (e2fsprogs, util-linux): %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("loop mounts need root")
	}
	tmp := t.TempDir()
	l := &cliLoopFS{img: filepath.Join(tmp, "ext4.img"), dir: filepath.Join(tmp, "fs")}
	if err := os.Mkdir(l.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(l.img, 48<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256", l.img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", l.img, l.dir).CombinedOutput(); err != nil {
		t.Skipf("no loop mounts here: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if trowfsbin.Mounted(l.dir) {
			if out, err := exec.Command("umount", l.dir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v\n%s", l.dir, err, out)
				_ = unix.Unmount(l.dir, unix.MNT_DETACH)
			}
		}
	})
	return l
}

func (l *cliLoopFS) unmount(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("umount", l.dir).CombinedOutput(); err != nil {
		t.Fatalf("umount %s: %v\n%s", l.dir, err, out)
	}
}

func (l *cliLoopFS) mount(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "loop", l.img, l.dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v\n%s", l.img, err, out)
	}
}

// rot flips one byte of rel's first data block in the image, below the filesystem: size,
// mtime, ctime and inode stay exactly as they were. The filesystem must be unmounted.
func (l *cliLoopFS) rot(t *testing.T, rel string, off int64) {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "bmap /"+rel+" 0", l.img).Output()
	if err != nil {
		t.Fatalf("debugfs bmap %s: %v", rel, err)
	}
	var block int64
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "%d", &block); err != nil || block <= 0 {
		t.Fatalf("debugfs bmap %s: %q", rel, out)
	}
	f, err := os.OpenFile(l.img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, block*4096+off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := f.WriteAt(b, block*4096+off); err != nil {
		t.Fatal(err)
	}
}

// True bit rot, made below the filesystem so that no metadata changes: verify must call the
// change silent and report bit_rot (and, for a blob, a mismatch with its name), exit 4.
func TestCLIBitRot(t *testing.T) {
	trowfsbin.Require(t)
	l := newCLILoopFS(t)
	data, mnt := filepath.Join(l.dir, "data"), filepath.Join(filepath.Dir(l.dir), "mnt")
	trowfsbin.Demo(t, data)
	plain := "notes/readme.txt"
	if err := os.MkdirAll(filepath.Join(data, "notes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, plain), bytes.Repeat([]byte("plain text, not a blob\n"), 400), 0o644); err != nil {
		t.Fatal(err)
	}
	p := trowfsbin.Start(t, data, mnt)
	p.WaitSettled(t, settleTimeout)
	p.Stop(t)
	blobs := cliNames(t, filepath.Join(data, "blobs", "sha256"))
	sort.Strings(blobs)
	blob := "blobs/sha256/" + blobs[0]
	var before [2]unix.Stat_t
	for i, rel := range []string{plain, blob} {
		if err := unix.Stat(filepath.Join(data, rel), &before[i]); err != nil {
			t.Fatal(err)
		}
	}

	l.unmount(t)
	l.rot(t, "data/"+plain, 100)
	l.rot(t, "data/"+blob, 7)
	l.mount(t)
	for i, rel := range []string{plain, blob} {
		var after unix.Stat_t
		if err := unix.Stat(filepath.Join(data, rel), &after); err != nil {
			t.Fatal(err)
		}
		if after.Size != before[i].Size || after.Mtim != before[i].Mtim || after.Ctim != before[i].Ctim || after.Ino != before[i].Ino {
			t.Fatalf("the simulated bit rot changed the metadata of %s", rel)
		}
	}

	code, v := trowfsbin.Verify(t, data)
	if code != 4 {
		t.Errorf("verify after bit rot: exit %d, want 4; %s", code, v.Verdict)
	}
	type pk struct{ path, kind string }
	var diffs, finds []pk
	for _, d := range v.Differences {
		diffs = append(diffs, pk{d.Path, d.Change})
	}
	for _, f := range v.Findings {
		finds = append(finds, pk{f.Path, f.Kind})
	}
	wantDiffs := []pk{{blob, "silent"}, {plain, "silent"}}
	wantFinds := []pk{{blob, "bit_rot"}, {blob, "mismatch"}, {plain, "bit_rot"}}
	less := func(a, b pk) int { return strings.Compare(a.path+" "+a.kind, b.path+" "+b.kind) }
	slices.SortFunc(diffs, less)
	slices.SortFunc(finds, less)
	if !slices.Equal(diffs, wantDiffs) || !slices.Equal(finds, wantFinds) {
		t.Errorf("verify: differences %v, findings %v; want %v and %v", diffs, finds, wantDiffs, wantFinds)
	}
}

// `umount MNT` from outside ends trowfs like a signal does: exit 0 and a final snapshot.
func TestCLIUnmountFromOutside(t *testing.T) {
	data, mnt := cliDemo(t)
	p := trowfsbin.Start(t, data, mnt)
	if err := os.WriteFile(filepath.Join(mnt, "outside.txt"), []byte("before the umount"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := p.WaitSettled(t, settleTimeout)
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatalf("umount %s: %v", mnt, err)
	}
	start := time.Now()
	p.WaitClean(t)
	took := time.Since(start)
	if !strings.Contains(p.Stderr(), "unmounted from outside") {
		t.Errorf("the log does not say the mount was unmounted from outside:\n%s", p.Stderr())
	}
	// Nothing is mounted any more: there is nothing to retry, and nothing is busy.
	if took > 3*time.Second || strings.Contains(p.Stderr(), "mountpoint busy") {
		t.Errorf("after an outside umount trowfs took %v to exit and logged:\n%s", took.Round(time.Millisecond), p.Stderr())
	}
	if code, v := trowfsbin.Verify(t, data); code != 0 || v.SnapshotRootDigest != s.Digest || v.RootDigest != s.Digest {
		t.Errorf("verify: exit %d, snapshot root %s, root %s; .state said %s", code, v.SnapshotRootDigest, v.RootDigest, s.Digest)
	}
}
