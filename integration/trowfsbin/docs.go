package trowfsbin

import (
	"encoding/json"
	"time"
)

// The types below mirror the documented JSON of `.state` (docs/state.md) and of
// `trowfs verify --json` (docs/cli.md). They are written from the documentation, not imported
// from trowfs, so a renamed key shows up as a zero value that a test notices; Raw keeps the
// whole document for key checks.

// StateDoc is a `.state` file.
type StateDoc struct {
	Path          string           `json:"path"`
	Kind          string           `json:"kind"`
	Digest        string           `json:"digest"`
	Status        string           `json:"status"`
	Files         int64            `json:"files"`
	Dirs          int64            `json:"dirs"`
	Symlinks      int64            `json:"symlinks"`
	Bytes         int64            `json:"bytes"`
	Statuses      map[string]int64 `json:"statuses"`
	ChangedAt     *time.Time       `json:"changed_at"`
	VerifiedAt    *time.Time       `json:"verified_at"`
	Findings      []Finding        `json:"findings"`
	FindingsCount int              `json:"findings_count"`
	Mount         *MountInfo       `json:"mount"`    // root only
	Registry      *RegistryReport  `json:"registry"` // root only, unless the layout is plain

	Raw map[string]any `json:"-"`
}

// MountInfo is the "mount" object of the root `.state`.
type MountInfo struct {
	DataDir           string     `json:"data_dir"`
	Mountpoint        string     `json:"mountpoint"`
	MountedSince      time.Time  `json:"mounted_since"`
	Layout            string     `json:"layout"`
	WriteMode         string     `json:"write_mode"`
	KernelPassthrough bool       `json:"kernel_passthrough"`
	PendingFiles      int        `json:"pending_files"`
	Load              LoadReport `json:"load"`
	TrowfsVersion     string     `json:"trowfs_version"`
}

// LoadReport says how the mount found the snapshot and the directory.
type LoadReport struct {
	Snapshot                     string     `json:"snapshot"` // loaded, missing, or "unusable: why"
	SnapshotWrittenAt            *time.Time `json:"snapshot_written_at"`
	PreviousMountCrashed         bool       `json:"previous_mount_crashed"`
	VerifyOnStart                string     `json:"verify_on_start"`
	Files                        int64      `json:"files"`
	Rehashing                    int        `json:"rehashing"`
	Duration                     string     `json:"duration"`
	ChangedWhileUnmounted        []Change   `json:"changed_while_unmounted"`
	ChangedWhileUnmountedCount   int        `json:"changed_while_unmounted_count"`
	ChangedWhileUnmountedSettled bool       `json:"changed_while_unmounted_settled"`
}

// Change is one path that changed while nothing was mounted.
type Change struct {
	Path   string `json:"path"`
	Change string `json:"change"` // added, removed, modified
	Kind   string `json:"kind"`
}

// Finding is one integrity problem.
type Finding struct {
	Kind     string    `json:"kind"` // mismatch, bit_rot, transient_read, read_error, drift, shadowed, internal
	Path     string    `json:"path"`
	Expected string    `json:"expected"`
	Actual   string    `json:"actual"`
	Detail   string    `json:"detail"`
	At       time.Time `json:"at"`
}

// RegistryReport is the registry consistency report (the counts; lists stay in Raw).
type RegistryReport struct {
	Layout            string `json:"layout"`
	Repositories      int    `json:"repositories"`
	Tags              int    `json:"tags"`
	Manifests         int    `json:"manifests"`
	Blobs             int    `json:"blobs"`
	BlobBytes         int64  `json:"blob_bytes"`
	AllBlobDigest     string `json:"all_blob_digest"`
	AllManifestDigest string `json:"all_manifest_digest"`
	InSync            bool   `json:"in_sync"`
	OK                bool   `json:"ok"`
	DanglingCount     int    `json:"dangling_count"`
	MissingCount      int    `json:"missing_count"`
	MismatchedCount   int    `json:"mismatched_count"`
	BrokenTagCount    int    `json:"broken_tag_count"`
	UnparsableCount   int    `json:"unparsable_count"`
}

// VerifyJSON is the output of `trowfs verify --json`.
type VerifyJSON struct {
	Data               string          `json:"data"`
	Layout             string          `json:"layout"`
	Snapshot           string          `json:"snapshot"` // loaded, missing, or "unusable: why"
	SnapshotWrittenAt  *time.Time      `json:"snapshot_written_at"`
	RootDigest         string          `json:"root_digest"`
	SnapshotRootDigest string          `json:"snapshot_root_digest"`
	Files              int64           `json:"files"`
	Bytes              int64           `json:"bytes"`
	Differences        []Difference    `json:"differences"`
	Findings           []Finding       `json:"findings"`
	Registry           *RegistryReport `json:"registry"`
	Verdict            string          `json:"verdict"`
	ExitCode           int             `json:"exit_code"`
	Took               string          `json:"took"`

	Raw map[string]any `json:"-"`
}

// Difference is one path where the directory and the snapshot disagree.
type Difference struct {
	Path           string `json:"path"`
	Change         string `json:"change"` // added, removed, modified, silent
	Kind           string `json:"kind"`
	SnapshotDigest string `json:"snapshot_digest"`
	Digest         string `json:"digest"`
}

// decodeWithRaw decodes b into v and into a generic map.
func decodeWithRaw(b []byte, v any, raw *map[string]any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return err
	}
	return json.Unmarshal(b, raw)
}

// ParseState decodes a `.state` document.
func ParseState(b []byte) (StateDoc, error) {
	var s StateDoc
	err := decodeWithRaw(b, &s, &s.Raw)
	return s, err
}

// ParseVerify decodes the output of `trowfs verify --json`.
func ParseVerify(b []byte) (VerifyJSON, error) {
	var v VerifyJSON
	err := decodeWithRaw(b, &v, &v.Raw)
	return v, err
}
