package tracker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/hashtree"
)

// blobRule is a layout's blob-name rule in miniature: blobs/<alg>:<hex> must hash to its name.
func blobRule(rel string) (digest.Digest, bool) {
	name, ok := strings.CutPrefix(rel, "blobs/")
	if !ok {
		return "", false
	}
	d, err := digest.Parse(name)
	return d, err == nil
}

// The mount's hash after a write, a mounted full verification and the offline check apply one
// blob-name rule and report the same finding, for sha256 and sha512 names alike.
func TestBlobNameRuleIsOneRuleMountedAndOffline(t *testing.T) {
	data := t.TempDir()
	lie256 := digest.FromString("what the name promises")
	lie512 := digest.SHA512.FromString("what the name promises")
	good512 := digest.SHA512.FromString("honest")
	write(t, filepath.Join(data, "blobs", lie256.String()), "other content")
	write(t, filepath.Join(data, "blobs", lie512.String()), "other content")
	write(t, filepath.Join(data, "blobs", good512.String()), "honest")
	tr, err := New(Options{Root: data, BlobDigest: blobRule})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Lock(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	if !tr.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	bad := []string{"blobs/" + lie256.String(), "blobs/" + lie512.String()}
	byPath := func(fs []Finding) map[string]Finding {
		m := map[string]Finding{}
		for _, f := range fs {
			if f.Kind == FindingMismatch {
				f.At = time.Time{}
				m[f.Path] = f
			}
		}
		return m
	}
	mounted := byPath(tr.Findings(""))
	r, err := tr.StartVerify(RunFull, RunOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	r.Wait()
	run := byPath(r.View().Findings)
	_, offlineFs, err := Check(context.Background(), data, ScanOptions{BlobDigest: blobRule})
	if err != nil {
		t.Fatal(err)
	}
	offline := byPath(offlineFs)
	for name, got := range map[string]map[string]Finding{"after the write": mounted, "mounted verify": run, "offline check": offline} {
		if len(got) != len(bad) {
			t.Errorf("%s: %d mismatches %v, want %d", name, len(got), got, len(bad))
		}
		for _, p := range bad {
			if got[p] != offline[p] || got[p].Actual == "" || got[p].Expected == got[p].Actual {
				t.Errorf("%s: %s reported as %+v, offline as %+v", name, p, got[p], offline[p])
			}
		}
	}
	for _, p := range bad {
		if e, _ := tr.Entry(p); e.Status != hashtree.StatusMismatch {
			t.Errorf("%s: status %s, want mismatch", p, e.Status)
		}
	}
	if e, _ := tr.Entry("blobs/" + good512.String()); e.Status != hashtree.StatusVerified {
		t.Errorf("an honest sha512 blob: status %s", e.Status)
	}
}

// A scrub stopped midway on several workers keeps a cursor that skips no file: every file up
// to and including the cursor was checked, so the next pass loses nothing.
func TestScrubCursorOnWorkersSkipsNothing(t *testing.T) {
	data := t.TempDir()
	for i := 0; i < 64; i++ {
		write(t, filepath.Join(data, "d", string(rune('A'+i))), strings.Repeat("x", 4096))
	}
	tr := newTracker(t, data)
	defer tr.Close()
	if _, err := tr.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	tr.Drain(5 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	r, err := tr.StartVerify(RunScrub, RunOptions{Ctx: ctx, Workers: 4, Rate: 64 * 4096 * 2}) // about 0.5 s
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	r.Wait()
	v := r.View()
	if v.State != "failed" || v.FilesDone == 0 || v.FilesDone == v.FilesTotal {
		t.Fatalf("run %s after %d of %d files: want one stopped midway", v.State, v.FilesDone, v.FilesTotal)
	}
	tr.mu.Lock()
	cursor := tr.scrub.cursor
	tr.mu.Unlock()
	var upTo int64
	tr.WithTree(func(tree *hashtree.Tree) {
		_ = tree.Walk(func(p string, e hashtree.Entry) error {
			if e.Kind == hashtree.KindFile && !walkOrderLess(cursor, p) {
				upTo++
			}
			return nil
		})
	})
	if cursor == "" || upTo > v.FilesDone {
		t.Fatalf("cursor %q covers %d files but only %d were checked", cursor, upTo, v.FilesDone)
	}
}

// A full run reports what was added to DATA behind the mount once per added top-level entry
// (a whole directory is one finding), and afterwards the tree matches a rescan.
func TestVerifyAddsWhatAppearedBehindTheMount(t *testing.T) {
	data := t.TempDir()
	write(t, filepath.Join(data, "old"), "kept")
	tr := newTracker(t, data)
	defer tr.Close()
	if _, err := tr.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	tr.Drain(5 * time.Second)
	write(t, filepath.Join(data, "new/a/b"), "deep")
	write(t, filepath.Join(data, "new/c"), "c")
	write(t, filepath.Join(data, "loose"), "loose")
	if err := os.Symlink("old", filepath.Join(data, "new/link")); err != nil {
		t.Fatal(err)
	}
	r, err := tr.StartVerify(RunFull, RunOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	r.Wait()
	var got []string
	for _, f := range r.View().Findings {
		got = append(got, f.Kind+" "+f.Path)
	}
	if want := []string{"drift loose", "drift new"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("findings %v, want %v", got, want)
	}
	assertEqualsRescan(t, tr)
}
