package tracker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/checker"
)

// diskEntry is one entry met by walkDisk.
type diskEntry struct {
	rel    string
	st     unix.Stat_t
	target string // symlinks
}

// walkDisk visits every directory, regular file and symlink under the directory open as rootFd,
// parents before children, skipping DATA/.trowfs. Other file types (sockets, FIFOs, devices) are
// reported through skip. It reads directories relative to their parent's descriptor, so a rename
// elsewhere cannot send it outside DATA.
func walkDisk(ctx context.Context, rootFd int, fn func(d *diskEntry) error, skip func(rel string, mode uint32)) error {
	fd, err := unix.Openat(rootFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	scans := make(chan dirScan, 256)
	go func() {
		defer close(scans)
		scanDir(ctx, fd, "", scans)
	}()
	defer func() {
		cancel()
		for range scans { // let the scanner finish and close its descriptors
		}
	}()
	for ds := range scans {
		if ds.err != nil {
			if changedMeanwhile(ds.err) && ds.rel != "" {
				continue // removed, or replaced by a file or a symlink, while we walked
			}
			return ds.err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		for i := range ds.ents {
			e := &ds.ents[i]
			if e.err != nil {
				return e.err
			}
			if e.gone {
				continue
			}
			d := diskEntry{rel: joinRel(ds.rel, e.name), st: e.st, target: e.target}
			if kindOf(e.st.Mode) == 0 {
				if skip != nil {
					skip(d.rel, d.st.Mode)
				}
				continue
			}
			if err := fn(&d); err != nil {
				return err
			}
		}
	}
	return nil
}

// ScanOptions configures Rescan.
type ScanOptions struct {
	Exclude  []string
	Workers  int
	Progress func(files, bytes int64) // called now and then from the scanning goroutine
	// BlobDigest names the digest a path's content must have (the layout's blob-name rule);
	// with it, Check hashes such files in the name's algorithm too, in the same pass.
	BlobDigest func(rel string) (digest.Digest, bool)
}

// Rescan builds a tree of root from scratch, hashing every file that is not excluded. It is the
// reference the inline tree is compared with (tests, `trowfs verify`). Statuses are verified or
// excluded; Meta is what lstat says.
func Rescan(ctx context.Context, root string, opts ScanOptions) (*hashtree.Tree, error) {
	tr, _, err := Check(ctx, root, opts)
	return tr, err
}

// Check is Rescan plus the blob-name rule (opts.BlobDigest) applied in the same pass: it returns
// the tree and a mismatch finding for every blob whose content does not match its name, sorted
// by path. Statuses in the tree are as Rescan's. It is what `trowfs verify` runs.
func Check(ctx context.Context, root string, opts ScanOptions) (*hashtree.Tree, []Finding, error) {
	m, err := NewMatcher(opts.Exclude)
	if err != nil {
		return nil, nil, err
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("data directory: %w", err)
	}
	defer unix.Close(rootFd)
	tr := hashtree.New()
	ts := time.Now().UnixNano()
	type work struct {
		rel  string
		st   unix.Stat_t
		want digest.Digest // the blob name's digest, or ""
	}
	var files []work
	err = walkDisk(ctx, rootFd, func(d *diskEntry) error {
		switch d.st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			return tr.Mkdir(d.rel, ts)
		case unix.S_IFLNK:
			return tr.Put(d.rel, hashtree.Entry{Kind: hashtree.KindSymlink, Target: d.target, Status: hashtree.StatusVerified, Meta: metaOf(&d.st), ChangedAt: ts})
		default:
			if m.Match(d.rel) {
				return tr.Put(d.rel, hashtree.Entry{Kind: hashtree.KindFile, Status: hashtree.StatusExcluded, Meta: metaOf(&d.st), ChangedAt: ts})
			}
			w := work{rel: d.rel, st: d.st}
			if opts.BlobDigest != nil {
				w.want, _ = opts.BlobDigest(d.rel)
			}
			files = append(files, w)
			return nil
		}
	}, nil)
	if err != nil {
		return nil, nil, err
	}
	n := opts.Workers
	if n <= 0 {
		n = runtime.NumCPU()
	}
	sums := make([]checker.Sums, len(files))
	errs := make([]error, len(files))
	var next, doneFiles, doneBytes, reported int64
	var mu sync.Mutex // guards next, doneFiles, doneBytes, reported
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= int64(len(files)) || ctx.Err() != nil {
					return
				}
				sums[i], errs[i] = hashAt(rootFd, files[i].rel, files[i].want)
				mu.Lock()
				doneFiles++
				doneBytes += files[i].st.Size
				// Every 256 files, and every 64 MiB for a few big ones.
				if opts.Progress != nil && (doneFiles%256 == 0 || doneBytes-reported >= 64<<20) {
					opts.Progress(doneFiles, doneBytes)
					reported = doneBytes
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if opts.Progress != nil {
		opts.Progress(doneFiles, doneBytes)
	}
	var findings []Finding
	for i, f := range files {
		if errs[i] != nil {
			if changedMeanwhile(errs[i]) {
				continue // its path no longer leads to the file the walk saw
			}
			return nil, nil, fmt.Errorf("hash %q: %w", f.rel, errs[i])
		}
		if err := tr.Put(f.rel, hashtree.Entry{Kind: hashtree.KindFile, Digest: sums[i].SHA256, Status: hashtree.StatusVerified, Meta: metaOf(&f.st), ChangedAt: ts, VerifiedAt: ts}); err != nil {
			return nil, nil, err
		}
		if f.want != "" {
			if c := checker.CheckName(f.want, sums[i]); c.Verdict != checker.Match {
				findings = append(findings, BlobNameFinding(f.rel, c))
			}
		}
	}
	sort.Slice(findings, func(i, j int) bool { return findings[i].Path < findings[j].Path })
	return tr, findings, nil
}

// errNotRegular says a path the walk saw as a regular file now names something else.
var errNotRegular = errors.New("no longer a regular file")

// changedMeanwhile reports whether err says that a path no longer leads where the walk saw it
// lead: removed, or something on it replaced by a file, a directory or a symbolic link (never
// followed: ELOOP, or EXDEV for one pointing out of DATA). A walk of a directory that others may
// change skips such an entry rather than failing as a whole.
func changedMeanwhile(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) ||
		errors.Is(err, unix.EXDEV) || errors.Is(err, errNotRegular)
}

// hashAt hashes the regular file rel below the directory rootFd, at any depth (in want's
// algorithm too when it is not sha256).
func hashAt(rootFd int, rel string, want digest.Digest) (checker.Sums, error) {
	fd, err := OpenBeneath(rootFd, rel, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return checker.Sums{}, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return checker.Sums{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return checker.Sums{}, errNotRegular
	}
	s, _, err := checker.Sum(f, want)
	return s, err
}
