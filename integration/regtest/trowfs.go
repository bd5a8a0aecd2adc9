package regtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Mounter runs the trowfs binary for a test, through the contract of `trowfs mount` and `trowfs
// verify` (docs/testing-registries.md). integration/trowfsbin provides the real one; the tests of
// this package only need these three operations, so they are written against this interface.
type Mounter interface {
	// Mount mounts data on a new mountpoint with the extra `trowfs mount` flags args (for example
	// "--layout", "distribution": an empty data directory is detected as plain) and returns the
	// mountpoint once trowfs serves (its ready file exists). The mount is stopped when the test
	// ends if Unmount did not stop it before.
	Mount(tb testing.TB, data string, args ...string) (mnt string)
	// Unmount stops the mount on mnt cleanly (SIGTERM: unmount, write the snapshot, exit 0) and
	// fails the test if trowfs exits otherwise or the mount is still there.
	Unmount(tb testing.TB, mnt string)
	// Verify runs `trowfs verify DATA --json` on an unmounted data directory and returns its exit
	// code and standard output (one JSON document).
	Verify(tb testing.TB, data string) (exitCode int, stdout []byte)
}

// State is the part of a `.state` file the registry tests read.
type State struct {
	Path     string         `json:"path"`
	Digest   string         `json:"digest"`
	Status   string         `json:"status"`
	Files    int64          `json:"files"`
	Bytes    int64          `json:"bytes"`
	Registry *RegistryState `json:"registry"`
	// Raw is the whole document, for failure messages.
	Raw []byte `json:"-"`
}

// RegistryState is the registry consistency report in the root `.state` and in `trowfs verify
// --json`.
type RegistryState struct {
	Layout            string    `json:"layout"`
	AllBlobDigest     string    `json:"all_blob_digest"`
	AllManifestDigest string    `json:"all_manifest_digest"`
	InSync            bool      `json:"in_sync"`
	Dangling          []BlobRef `json:"dangling"`
	DanglingCount     int       `json:"dangling_count"`
	Missing           []BlobRef `json:"missing"`
	MissingCount      int       `json:"missing_count"`
	Mismatched        []BlobRef `json:"mismatched"`
	MismatchedCount   int       `json:"mismatched_count"`
	Truncated         bool      `json:"truncated"`
}

// BlobRef is an entry of the dangling, missing or mismatched lists (mismatched entries name the
// digest as "expected").
type BlobRef struct {
	Digest   string `json:"digest"`
	Expected string `json:"expected"`
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	// Repo is the repository owning the blob store (OCI layouts, one per repository).
	Repo string `json:"repo"`
}

// DanglingDigests returns the sorted, distinct digests of the dangling list (a digest stored in
// several OCI layouts appears once per layout in the list).
func (r *RegistryState) DanglingDigests() []string {
	if r == nil {
		return nil
	}
	out := make([]string, 0, len(r.Dangling))
	for _, b := range r.Dangling {
		out = append(out, b.Digest)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ParseState decodes a `.state` document.
func ParseState(b []byte) (State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("regtest: .state: %w", err)
	}
	if s.Digest == "" {
		return State{}, errors.New("regtest: .state has no digest")
	}
	s.Raw = b
	return s, nil
}

// ReadState reads and decodes dir/.state on a trowfs mount.
func ReadState(tb testing.TB, dir string) State {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ".state"))
	if err != nil {
		tb.Fatalf("regtest: %v", err)
	}
	s, err := ParseState(b)
	if err != nil {
		tb.Fatalf("%v\n%s", err, b)
	}
	return s
}

// WaitState polls dir/.state until ok accepts it, and returns the last state read. trowfs updates
// the registry report as it sees changes, possibly a moment after the operation returned. The test
// fails when ok never accepts a state within timeout; the last state is shown.
func WaitState(tb testing.TB, dir string, timeout time.Duration, ok func(State) bool) State {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := ReadState(tb, dir)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			tb.Fatalf("regtest: %s/.state did not reach the expected state within %v; last:\n%s", dir, timeout, s.Raw)
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// VerifyReport is the part of `trowfs verify --json` the registry tests read.
type VerifyReport struct {
	Data               string         `json:"data"`
	Layout             string         `json:"layout"`
	Snapshot           string         `json:"snapshot"`
	RootDigest         string         `json:"root_digest"`
	SnapshotRootDigest string         `json:"snapshot_root_digest"`
	Files              int64          `json:"files"`
	Differences        []any          `json:"differences"`
	Findings           []any          `json:"findings"`
	Registry           *RegistryState `json:"registry"`
	Verdict            string         `json:"verdict"`
	ExitCode           int            `json:"exit_code"`
	// Raw is the whole document, for failure messages.
	Raw []byte `json:"-"`
}

// ParseVerify decodes the output of `trowfs verify --json`.
func ParseVerify(b []byte) (VerifyReport, error) {
	var v VerifyReport
	if err := json.Unmarshal(b, &v); err != nil {
		return VerifyReport{}, fmt.Errorf("regtest: trowfs verify --json: %w", err)
	}
	if v.RootDigest == "" {
		return VerifyReport{}, errors.New("regtest: trowfs verify --json printed no root_digest")
	}
	v.Raw = b
	return v, nil
}

// CheckRescan unmounts mnt, runs `trowfs verify DATA --json` and fails the test unless it exits 0,
// loaded the snapshot written at unmount, found no difference and no finding, and its rescan has
// the digest wantRoot (the root `.state` digest read just before unmounting): the tree trowfs kept
// inline equals a from-scratch rescan of the backing directory. It returns the report.
func CheckRescan(tb testing.TB, m Mounter, data, mnt, wantRoot string) VerifyReport {
	tb.Helper()
	m.Unmount(tb, mnt)
	code, out := m.Verify(tb, data)
	v, err := ParseVerify(out)
	if err != nil {
		tb.Fatalf("%v (exit %d)\n%s", err, code, tail(string(out), 8000))
	}
	if code != 0 || v.ExitCode != 0 {
		tb.Errorf("regtest: trowfs verify %s exited %d (report says %d): %s\n%s", data, code, v.ExitCode, v.Verdict, tail(string(out), 8000))
	}
	if v.Snapshot != "loaded" {
		tb.Errorf("regtest: trowfs verify %s: snapshot %q, want loaded (written at unmount)", data, v.Snapshot)
	}
	if v.SnapshotRootDigest != v.RootDigest {
		tb.Errorf("regtest: snapshot root %s != rescan root %s", v.SnapshotRootDigest, v.RootDigest)
	}
	if len(v.Differences) != 0 || len(v.Findings) != 0 {
		tb.Errorf("regtest: trowfs verify %s: %d differences, %d findings", data, len(v.Differences), len(v.Findings))
	}
	if wantRoot != "" && v.RootDigest != wantRoot {
		tb.Errorf("regtest: rescan root %s != the mount's last .state digest %s", v.RootDigest, wantRoot)
	}
	return v
}
