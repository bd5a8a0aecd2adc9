package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/api"
	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/server"
	"github.com/trowfs/trowfs/internal/statedir"
	"github.com/trowfs/trowfs/internal/tracker"
	"github.com/trowfs/trowfs/registry"
)

type verifyCmd struct {
	Data             string        `arg:"" help:"Data directory to check (must not be mounted by trowfs)." type:"path"`
	JSON             bool          `help:"Print the result as one JSON object on stdout."`
	Layout           string        `help:"Registry layout (auto detects it)." default:"auto" enum:"auto,trow-files,trow-sqlite,distribution,oci-layout,plain"`
	Exclude          []string      `help:"Extra globs of volatile paths (as for mount)." placeholder:"GLOB"`
	DeleteUntagged   bool          `help:"Count manifests without tags as unreferenced (as for mount)."`
	Progress         string        `help:"Progress on stderr: auto (a bar on a terminal, log lines otherwise), bar, log or none." default:"auto" enum:"auto,bar,log,none"`
	ProgressInterval time.Duration `help:"How often progress is logged when it is not a bar." default:"5s"`
}

// verifyResult is the JSON document of `trowfs verify --json` (docs/cli.md).
type verifyResult struct {
	Data        string            `json:"data"`
	Layout      string            `json:"layout"`
	Snapshot    string            `json:"snapshot"`
	SnapshotAt  *time.Time        `json:"snapshot_written_at,omitempty"`
	Root        string            `json:"root_digest"`
	SnapRoot    string            `json:"snapshot_root_digest,omitempty"`
	Files       int64             `json:"files"`
	Bytes       int64             `json:"bytes"`
	Differences []difference      `json:"differences"`
	Findings    []tracker.Finding `json:"findings"`
	Registry    *registry.Report  `json:"registry,omitempty"`
	Verdict     string            `json:"verdict"`
	ExitCode    int               `json:"exit_code"`
	Took        string            `json:"took"`
}

type difference struct {
	Path   string `json:"path"`
	Change string `json:"change"` // added, removed, modified, silent (content changed, metadata did not)
	Kind   string `json:"kind"`
	Was    string `json:"snapshot_digest,omitempty"`
	Now    string `json:"digest,omitempty"`
}

func (v *verifyCmd) Run(log *slog.Logger) error {
	start := time.Now()
	st, err := os.Stat(v.Data)
	if err != nil || !st.IsDir() {
		return &exitError{ExitUsage, fmt.Sprintf("data directory %s: not a readable directory (%v)", v.Data, err)}
	}
	// DATA/.trowfs is read through one descriptor opened without following links; verify
	// changes nothing there.
	sd, err := statedir.OpenReadOnly(v.Data)
	var ue *statedir.UnsafeError
	switch {
	case errors.As(err, &ue):
		return &exitError{ExitUsage, ue.Error()}
	case err == nil:
		defer sd.Close()
	case errors.Is(err, os.ErrNotExist):
		sd = nil
	default:
		return &exitError{ExitUsage, err.Error()}
	}
	if sd != nil && inUse(sd) {
		return &exitError{ExitInUse, fmt.Sprintf("%s is mounted by a running trowfs: read its .state, or POST /v1/verify to its endpoint", v.Data)}
	}
	// SQLite would follow a trow.db that is a link out of DATA, or block on a FIFO.
	if err := server.CheckTrowDB(v.Data); err != nil {
		return &exitError{ExitUsage, err.Error()}
	}
	layout := registry.Detect(v.Data)
	if v.Layout != "auto" {
		if layout, err = registry.ParseLayout(v.Layout); err != nil {
			return &exitError{ExitUsage, err.Error()}
		}
	}
	exclude := append(layout.Excludes(), v.Exclude...)
	res := verifyResult{Data: v.Data, Layout: string(layout), Differences: []difference{}, Findings: []tracker.Finding{}}

	var snap *hashtree.Tree
	var meta map[string]string
	serr := error(os.ErrNotExist) // no DATA/.trowfs: no snapshot
	if sd != nil {
		snap, meta, serr = tracker.ReadSnapshotFrom(sd)
	}
	switch {
	case serr == nil:
		res.Snapshot = "loaded"
		if ns, ok := parseNs(meta["written_at"]); ok {
			t := time.Unix(0, ns).UTC()
			res.SnapshotAt = &t
		}
		res.SnapRoot = snap.Root().String()
	case errors.Is(serr, os.ErrNotExist):
		res.Snapshot = "missing"
	default:
		res.Snapshot = "unusable: " + serr.Error()
	}

	if v.ProgressInterval <= 0 {
		return &exitError{ExitUsage, "--progress-interval must be positive"}
	}
	prog := newProgress(v.Progress, "hashing")
	prog.interval = v.ProgressInterval
	// One pass: every file hashed once, blobs in their name's algorithm too (internal/checker).
	tree, nameFindings, err := tracker.Check(context.Background(), v.Data, tracker.ScanOptions{Exclude: exclude, Progress: prog.update, BlobDigest: layout.BlobDigest})
	prog.done()
	if err != nil {
		return fmt.Errorf("scan %s: %w", v.Data, err)
	}
	sum, _ := tree.Summary("")
	res.Root, res.Files, res.Bytes = sum.Digest.String(), sum.Files, sum.Bytes

	if snap != nil {
		_ = hashtree.Diff(snap, tree, func(c hashtree.Change) error {
			d := difference{Path: c.Path}
			switch {
			case c.Old == nil:
				d.Change, d.Kind, d.Now = "added", c.New.Kind.String(), c.New.Digest.String()
			case c.New == nil:
				d.Change, d.Kind, d.Was = "removed", c.Old.Kind.String(), c.Old.Digest.String()
			default:
				if c.Old.Kind == hashtree.KindDir && c.New.Kind == hashtree.KindDir {
					return nil
				}
				d.Change, d.Kind, d.Was, d.Now = "modified", c.New.Kind.String(), c.Old.Digest.String(), c.New.Digest.String()
				if c.Old.Kind == hashtree.KindFile && c.New.Kind == hashtree.KindFile && c.Old.Meta == c.New.Meta && c.Old.Status != hashtree.StatusPending {
					d.Change = "silent"
					res.Findings = append(res.Findings, tracker.Finding{Kind: tracker.FindingBitRot, Path: c.Path, Expected: d.Was, Actual: d.Now,
						Detail: "content changed while size, mtime, ctime and inode did not", At: time.Now().UTC()})
				}
			}
			res.Differences = append(res.Differences, d)
			return nil
		})
	}

	// Blobs must match their names: the scan applied the rule (tracker.Check).
	mismatched := map[string]bool{}
	for _, f := range nameFindings {
		mismatched[f.Path] = true
	}
	res.Findings = append(res.Findings, nameFindings...)
	var files []registry.FileInfo
	_ = tree.Walk(func(p string, e hashtree.Entry) error {
		if e.Kind != hashtree.KindFile {
			return nil
		}
		fi := registry.FileInfo{Path: p, Size: e.Meta.Size, Digest: e.Digest, Status: e.Status}
		if mismatched[p] {
			fi.Status = hashtree.StatusMismatch
		}
		files = append(files, fi)
		return nil
	})
	if layout != registry.Plain {
		reg := registry.New(layout, offlineSource{v.Data}, registry.Options{DeleteUntagged: v.DeleteUntagged, Logger: log})
		reg.Reset(files)
		rep := reg.Report()
		reg.Close()
		res.Registry = &rep
	}
	sort.Slice(res.Findings, func(i, j int) bool { return res.Findings[i].Path < res.Findings[j].Path })

	res.ExitCode, res.Verdict = verdict(&res)
	res.Took = time.Since(start).Round(time.Millisecond).String()
	if v.JSON {
		b, err := api.MarshalIndent(res, "", "  ") // keeps paths that are not UTF-8 (docs/api.md)
		if err != nil {
			return err
		}
		if _, err := os.Stdout.Write(append(b, '\n')); err != nil {
			return err
		}
	} else {
		printHuman(os.Stdout, &res)
	}
	if res.ExitCode != ExitOK {
		return &exitError{code: res.ExitCode}
	}
	return nil
}

func verdict(r *verifyResult) (int, string) {
	integrity := len(r.Findings) > 0
	if r.Registry != nil && registryProblems(r.Registry) {
		integrity = true
	}
	switch {
	case integrity:
		return ExitIntegrity, "integrity problems found"
	case len(r.Differences) > 0:
		return ExitDifferences, "the directory differs from the snapshot"
	case r.Snapshot != "loaded":
		return ExitOK, "consistent (no snapshot to compare with: " + r.Snapshot + ")"
	}
	return ExitOK, "consistent: the directory matches the snapshot"
}

func printHuman(w io.Writer, r *verifyResult) {
	fmt.Fprintf(w, "data:      %s (layout %s)\n", r.Data, r.Layout)
	fmt.Fprintf(w, "snapshot:  %s", r.Snapshot)
	if r.SnapshotAt != nil {
		fmt.Fprintf(w, ", written %s", r.SnapshotAt.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "\nfiles:     %d (%s)\nroot:      %s\n", r.Files, humanBytes(r.Bytes), r.Root)
	if len(r.Differences) > 0 {
		fmt.Fprintf(w, "\n%d differences from the snapshot:\n", len(r.Differences))
		for _, d := range r.Differences {
			fmt.Fprintf(w, "  %-8s %-7s %s\n", d.Change, d.Kind, d.Path)
		}
	}
	if len(r.Findings) > 0 {
		fmt.Fprintf(w, "\n%d findings:\n", len(r.Findings))
		for _, f := range r.Findings {
			fmt.Fprintf(w, "  %-9s %s\n            expected %s\n            actual   %s\n", f.Kind, f.Path, f.Expected, f.Actual)
		}
	}
	if r.Registry != nil {
		fmt.Fprintf(w, "\nregistry:\n")
		writeRegistry(w, r.Registry)
	}
	fmt.Fprintf(w, "\n%s (exit %d, %s)\n", r.Verdict, r.ExitCode, r.Took)
}

// inUse reports whether a running trowfs holds DATA's lock (without creating anything in DATA).
func inUse(sd *statedir.Dir) bool {
	f, err := sd.OpenRead(tracker.LockFile)
	if err != nil {
		return false
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(fd, unix.LOCK_UN)
	return false
}

func parseNs(s string) (int64, bool) {
	var n int64
	_, err := fmt.Sscanf(s, "%d", &n)
	return n, err == nil && n > 0
}

// offlineSource reads DATA directly (nothing is mounted).
type offlineSource struct{ root string }

func (o offlineSource) ReadFile(rel string) ([]byte, error) {
	return readBeneath(o.root, rel, 64<<20)
}

func (o offlineSource) DBPath() string { return filepath.Join(o.root, "trow.db") }

// registryProblems reports inconsistencies that mean data is wrong or lost. Dangling blobs are
// reported but are not a problem: they are what garbage collection is for.
func registryProblems(r *registry.Report) bool {
	return r.MissingCount > 0 || r.MismatchedCount > 0 || r.BrokenTagCount > 0 || r.UnparsableCount > 0
}

func writeRegistry(w io.Writer, r *registry.Report) {
	fmt.Fprintf(w, "  repositories %d, tags %d, manifests %d, blobs %d (%s)\n", r.Repositories, r.Tags, r.Manifests, r.Blobs, humanBytes(r.BlobBytes))
	fmt.Fprintf(w, "  all_blob_digest     %s\n  all_manifest_digest %s\n  in_sync             %v\n", r.AllBlobDigest, r.AllManifestDigest, r.InSync)
	if r.DBDigest != "" {
		fmt.Fprintf(w, "  trow.db logical digest %s\n", r.DBDigest)
	}
	for _, d := range r.Dangling {
		fmt.Fprintf(w, "  dangling   %s %s (%s)\n", d.Digest, d.Path, humanBytes(d.Size))
	}
	for _, m := range r.Missing {
		fmt.Fprintf(w, "  missing    %s\n", m.Digest)
	}
	for _, m := range r.Mismatched {
		fmt.Fprintf(w, "  mismatched %s\n", m.Path)
	}
	for _, b := range r.BrokenTags {
		fmt.Fprintf(w, "  broken tag %+v\n", b)
	}
	for _, u := range r.Unparsable {
		fmt.Fprintf(w, "  unparsable %+v\n", u)
	}
	fmt.Fprintf(w, "  dangling %d (%s), missing %d, mismatched %d, broken tags %d, unparsable %d\n",
		r.DanglingCount, humanBytes(r.DanglingBytes), r.MissingCount, r.MismatchedCount, r.BrokenTagCount, r.UnparsableCount)
}
