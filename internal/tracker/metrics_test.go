package tracker

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// files_hashed_total, bytes_hashed_total and hash_seconds_total count the same hashing, so
// bytes/seconds is a throughput and bytes/files a mean size, whether the hashing was at commit
// or in a verification run.
func TestHashCountersCountVerificationLikeCommits(t *testing.T) {
	data := t.TempDir()
	write(t, filepath.Join(data, "a"), "some content")
	write(t, filepath.Join(data, "b"), "more content here")
	tr := newTracker(t, data)
	defer tr.Close()
	if _, err := tr.Load(context.Background(), VerifyQuick); err != nil {
		t.Fatal(err)
	}
	if !tr.Drain(10 * time.Second) {
		t.Fatal("did not settle")
	}
	before := tr.Stats()
	r, err := tr.StartVerify(RunFull, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Wait()
	after := tr.Stats()
	files, bytes := after.FilesHashed-before.FilesHashed, after.BytesHashed-before.BytesHashed
	if files != 2 || bytes != int64(len("some content")+len("more content here")) {
		t.Fatalf("a full verification of 2 files added %d files and %d bytes hashed, want 2 and %d", files, bytes, len("some content")+len("more content here"))
	}
	if after.HashSeconds <= before.HashSeconds {
		t.Fatalf("hash seconds did not grow with verification hashing: %v -> %v", before.HashSeconds, after.HashSeconds)
	}
}

// Every operation counter exists from the start, at 0, so a rate() over it works before the
// first operation.
func TestOpCountersExportedFromStart(t *testing.T) {
	tr := newTracker(t, t.TempDir())
	defer tr.Close()
	st := tr.Stats()
	for _, op := range OpNames {
		if v, ok := st.Ops[op]; !ok || v != 0 {
			t.Errorf("op %q: %d, %v; want 0 and present", op, v, ok)
		}
	}
	if !slices.Contains(OpNames, "rename") {
		t.Fatal("OpNames lacks rename")
	}
}
