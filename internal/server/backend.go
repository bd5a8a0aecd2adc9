package server

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sort"

	"github.com/trowfs/trowfs/api"
	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/tracker"
)

// backend adapts a Server to the HTTP endpoint.
type backend struct{ s *Server }

var _ api.Backend = backend{}

func (b backend) State(p string) ([]byte, error) {
	doc, _, err := b.s.stateDoc(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%q: %w", p, api.ErrNotFound)
	}
	return doc, err
}

func (b backend) Tree(p, after string, limit int) (api.TreePage, error) {
	page := api.TreePage{Path: "/" + p}
	var err error
	b.s.t.WithTree(func(tr *hashtree.Tree) {
		e, ok := tr.Get(p)
		if p == "" {
			e, ok = hashtree.Entry{Kind: hashtree.KindDir, Digest: tr.Root()}, true
		}
		if !ok {
			err = fmt.Errorf("%q: %w", p, api.ErrNotFound)
			return
		}
		if e.Kind != hashtree.KindDir {
			err = fmt.Errorf("%q: %w", p, api.ErrNotDir)
			return
		}
		page.Digest = e.Digest.String()
		err = tr.List(p, after, func(name string, c hashtree.Entry) bool {
			if len(page.Entries) == limit {
				page.Next = page.Entries[len(page.Entries)-1].Name
				return false
			}
			te := api.TreeEntry{Name: name, Kind: c.Kind.String(), Digest: c.Digest.String(), Status: c.Status.String(), Size: c.Meta.Size}
			if c.Kind == hashtree.KindDir {
				if sum, ok := tr.Summary(path.Join(p, name)); ok {
					te.Files, te.Bytes, te.Size = sum.Files, sum.Bytes, 0
					te.Status = subtreeStatus(sum)
				}
			}
			page.Entries = append(page.Entries, te)
			return true
		})
	})
	if page.Entries == nil {
		page.Entries = []api.TreeEntry{}
	}
	return page, err
}

func subtreeStatus(s hashtree.Summary) string {
	st, _ := tracker.SubtreeStatus(&s)
	return st
}

func (b backend) Registry() (any, bool) {
	if b.s.Layout() == "plain" {
		return nil, false
	}
	return b.s.reg.Load().Report(), true
}

func (b backend) StartVerify(kind string) (api.VerifyRun, error) {
	r, err := b.s.t.StartVerify(kind, tracker.RunOptions{})
	if errors.Is(err, tracker.ErrBusy) {
		return api.VerifyRun{}, api.ErrBusy
	}
	if err != nil {
		return api.VerifyRun{}, err
	}
	return toAPIRun(r.View()), nil
}

func (b backend) VerifyRun(id string) (api.VerifyRun, bool) {
	r, ok := b.s.t.RunByID(id)
	if !ok {
		return api.VerifyRun{}, false
	}
	return toAPIRun(r.View()), true
}

func (b backend) LastVerifyRun() (api.VerifyRun, bool) {
	runs := b.s.t.Runs()
	for i := len(runs) - 1; i >= 0; i-- {
		if runs[i].Kind != tracker.RunScrub {
			return toAPIRun(runs[i].View()), true
		}
	}
	return api.VerifyRun{}, false
}

func toAPIRun(v tracker.RunView) api.VerifyRun {
	r := api.VerifyRun{ID: v.ID, Kind: v.Kind, State: v.State, StartedAt: v.StartedAt, FinishedAt: v.FinishedAt,
		FilesTotal: v.FilesTotal, FilesDone: v.FilesDone, BytesTotal: v.BytesTotal, BytesDone: v.BytesDone, Error: v.Error}
	for _, f := range v.Findings {
		r.Findings = append(r.Findings, api.Finding{Kind: f.Kind, Path: f.Path, Expected: f.Expected, Actual: f.Actual, Detail: f.Detail})
	}
	return r
}

func (b backend) Healthy() error {
	if b.s.fuse == nil {
		return errors.New("not mounted")
	}
	return nil
}

// Metrics lists every metric of docs/api.md.
func (b backend) Metrics() []api.Metric {
	s := b.s
	st := s.t.Stats()
	var ms []api.Metric
	add := func(name, help, typ string, v float64, labels ...string) {
		m := api.Metric{Name: name, Help: help, Type: typ, Value: v}
		if len(labels) == 2 {
			m.Labels = map[string]string{labels[0]: labels[1]}
		}
		ms = append(ms, m)
	}
	ops := make([]string, 0, len(st.Ops))
	for k := range st.Ops {
		ops = append(ops, k)
	}
	sort.Strings(ops)
	for _, op := range ops {
		add("trowfs_ops_total", "Mutating operations seen through the mount.", "counter", float64(st.Ops[op]), "op", op)
	}
	add("trowfs_internal_errors_total", "Bookkeeping disagreements repaired from the directory.", "counter", float64(st.InternalErrors))
	add("trowfs_bytes_hashed_total", "Bytes of file content hashed.", "counter", float64(st.BytesHashed))
	add("trowfs_files_hashed_total", "Files hashed.", "counter", float64(st.FilesHashed))
	add("trowfs_hash_seconds_total", "Time spent hashing file content.", "counter", st.HashSeconds)
	add("trowfs_tree_entries", "Entries in the tree.", "gauge", float64(st.Entries))
	add("trowfs_tree_bytes", "Bytes of the files in the tree.", "gauge", float64(st.Summary.Bytes))
	for i := 0; i < hashtree.NumStatus; i++ {
		add("trowfs_files", "Files by status.", "gauge", float64(st.Summary.ByStatus[i]), "status", hashtree.Status(i).String())
	}
	add("trowfs_pending_files", "Files with writers or waiting to be hashed.", "gauge", float64(st.Pending))
	for _, k := range []string{tracker.FindingMismatch, tracker.FindingBitRot, tracker.FindingTransientRead, tracker.FindingReadError, tracker.FindingDrift, tracker.FindingShadowed, tracker.FindingInternal, tracker.FindingRepaired} {
		add("trowfs_findings", "Current findings by kind.", "gauge", float64(st.Findings[k]), "kind", k)
	}
	if s.Layout() != "plain" {
		reg := s.reg.Load()
		r := reg.Report()
		add("trowfs_registry_blobs", "Blobs present.", "gauge", float64(r.Blobs))
		add("trowfs_registry_dangling_blobs", "Blobs present that no manifest references.", "gauge", float64(r.DanglingCount))
		add("trowfs_registry_dangling_bytes", "Bytes of the blobs present that no manifest references.", "gauge", float64(r.DanglingBytes))
		add("trowfs_registry_missing_blobs", "Blobs referenced but absent.", "gauge", float64(r.MissingCount))
		add("trowfs_registry_mismatched_blobs", "Blobs whose content does not match their name.", "gauge", float64(r.MismatchedCount))
		inSync := 0.0
		if r.InSync {
			inSync = 1
		}
		add("trowfs_registry_in_sync", "1 when all_blob_digest equals all_manifest_digest.", "gauge", inSync)
		rs := reg.Stats()
		add("trowfs_cache_hit_ratio", "Hit ratio of trowfs's caches.", "gauge", rs.ManifestCache.Ratio, "cache", "manifests")
	}
	add("trowfs_scrub_files_done_total", "Files checked by the scrub.", "counter", float64(st.Scrub.FilesDone))
	add("trowfs_scrub_bytes_done_total", "Bytes checked by the scrub.", "counter", float64(st.Scrub.BytesDone))
	add("trowfs_scrub_passes_total", "Completed scrub passes.", "counter", float64(st.Scrub.Passes))
	add("trowfs_scrub_progress_ratio", "Progress of the current or last scrub pass, by bytes.", "gauge", scrubProgress(s.t.Runs()))
	snap := s.lastSnap.Load()
	if snap == 0 {
		// No checkpoint yet: the snapshot this mount loaded is the last one written.
		if at := s.t.LoadReport().SnapshotWrittenAt; !at.IsZero() {
			snap = at.UnixNano()
		}
	}
	add("trowfs_snapshot_last_write_timestamp_seconds", "When the last snapshot of the tree was written (0: never).", "gauge", float64(snap)/1e9)
	add("trowfs_snapshot_write_failures_total", "Snapshot writes (checkpoints and the one at unmount) that failed.", "counter", float64(s.snapFail.Load()))
	add("trowfs_mounted_since_timestamp_seconds", "When the mount started.", "gauge", float64(s.started.UnixNano())/1e9)
	ms = append(ms, s.peerMetrics()...)
	ms = append(ms, s.healMetrics()...)
	return ms
}

// scrubProgress is the fraction of the newest scrub run done, by bytes (by files when it has no
// bytes): 0 before the first run, 1 once a run finished.
func scrubProgress(runs []*tracker.Run) float64 {
	for i := len(runs) - 1; i >= 0; i-- {
		if runs[i].Kind != tracker.RunScrub {
			continue
		}
		v := runs[i].View()
		switch {
		case v.State == api.RunDone:
			return 1
		case v.BytesTotal > 0:
			return min(1, float64(v.BytesDone)/float64(v.BytesTotal))
		case v.FilesTotal > 0:
			return min(1, float64(v.FilesDone)/float64(v.FilesTotal))
		}
		return 0
	}
	return 0
}
