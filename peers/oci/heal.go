package oci

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/internal/beneath"
	"github.com/trowfs/trowfs/peers"
	"github.com/trowfs/trowfs/registry"
)

// HealRequest names one damaged blob file.
type HealRequest struct {
	// DataDir is DATA (the backing directory, not the mount: the caller updates its tree from the
	// rename, as for any change made behind the registry).
	DataDir string
	// RelPath is the blob file, slash-separated, relative to DATA (every layout knows it).
	RelPath string
	// Digest is what the file must hold; Size its length (-1: unknown, then only the digest is
	// checked).
	Digest digest.Digest
	Size   int64
	// Repos are repositories that reference the blob: a blob is fetched through one of them
	// (the OCI API has no repository-less blob GET).
	Repos []string
	// Manifest says the blob is a manifest: it is fetched from the manifests endpoint by digest
	// (a registry need not serve a manifest from its blobs endpoint; distribution does not).
	Manifest bool
}

// ErrNoPeerHasIt is wrapped when no source served the blob with the right content.
var ErrNoPeerHasIt = errors.New("no peer served the blob with matching content")

// ErrChangedMeanwhile is wrapped when the damaged file is missing, or was removed or replaced
// while the heal fetched its copy: the registry deleted or rewrote it, and its decision stands
// (a heal never brings back a deleted blob, nor replaces a file it has not examined).
var ErrChangedMeanwhile = errors.New("the blob file is missing or was replaced or removed during the heal: left as the registry made it")

// stateDirName is trowfs's own directory in DATA, where the healed copy is written first.
const stateDirName = ".trowfs"

// Heal fetches req's blob from the first source (and repository) that serves it, verifies its
// digest and size, writes it to a temporary file under DATA/.trowfs, fsyncs it, renames it over
// RelPath and fsyncs the directory. Every path below DATA is resolved beneath DATA without
// following a symbolic link (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), and only a regular
// file (or a missing one) is replaced. It returns the source's name. Sources that serve wrong
// bytes are counted and backed off as in Apply.
func (a *Applier) Heal(ctx context.Context, req HealRequest, sources []peers.Source) (string, error) {
	if err := req.Digest.Validate(); err != nil {
		return "", fmt.Errorf("oci: heal %s: %w", req.RelPath, err)
	}
	if !validRel(req.RelPath) {
		return "", fmt.Errorf("oci: heal: %q is not a path below DATA", req.RelPath)
	}
	if len(req.Repos) == 0 {
		return "", fmt.Errorf("oci: heal %s: no repository references %s", req.RelPath, req.Digest)
	}
	r := &round{a: a, ctx: ctx, flights: map[string]*flight{}}
	r.res.Rejected = map[string]int64{}
	for _, s := range sources {
		ep, err := newEndpoint(s.Name, s.RegistryURL, a.readRT)
		if err != nil {
			a.sourceFailed(s.Name, err, false)
			continue
		}
		r.sources = append(r.sources, ep)
	}
	dataFd, err := unix.Open(req.DataDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("oci: heal: open %s: %w", req.DataDir, err)
	}
	defer unix.Close(dataFd)
	parentFd, base, err := beneath.Parent(dataFd, req.RelPath)
	if err != nil {
		return "", fmt.Errorf("oci: heal %s: open its directory beneath DATA without following links: %w", req.RelPath, err)
	}
	if parentFd != dataFd {
		defer unix.Close(parentFd)
	}
	// The healed file takes the mode and owner of the file it replaces: the registry may run as
	// another user than trowfs. A missing file is not healed: the registry deleted it (a heal
	// that created it would bring back a blob the registry no longer knows and cannot collect).
	var st unix.Stat_t
	switch err := unix.Fstatat(parentFd, base, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case errors.Is(err, unix.ENOENT):
		return "", fmt.Errorf("oci: heal %s: %w", req.RelPath, ErrChangedMeanwhile)
	case err != nil:
		return "", fmt.Errorf("oci: heal %s: %w", req.RelPath, err)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return "", fmt.Errorf("oci: heal %s: not a regular file: refusing to replace it", req.RelPath)
	}

	if req.Size > 0 {
		if err := checkFree(req.DataDir, req.Size); err != nil {
			return "", fmt.Errorf("oci: heal %s: %w", req.RelPath, err) // no source is to blame
		}
	}
	desc := registry.Descriptor{Digest: req.Digest, Size: req.Size}
	var errs []string
	for _, src := range r.usable() {
		for _, repo := range req.Repos {
			kind := "blobs"
			if req.Manifest {
				kind = "manifests"
			}
			sp, err := r.fetchHeal(src, repo, kind, desc, dataFd)
			if err != nil {
				var nf *notFoundError
				if errors.As(err, &nf) {
					continue // try the next repository
				}
				if errors.Is(err, errNoHealBudget) {
					return "", fmt.Errorf("oci: heal %s: %w", req.RelPath, err) // no source is to blame
				}
				var de *DescriptorError
				if errors.As(err, &de) {
					return "", fmt.Errorf("oci: heal %s: %w", req.RelPath, err) // the request's size is wrong, not the source
				}
				errs = append(errs, src.name+": "+err.Error())
				r.failed(src, err)
				break
			}
			err = sp.install(parentFd, base, &st)
			if err != nil {
				return "", fmt.Errorf("oci: heal %s: %w", req.RelPath, err)
			}
			a.mu.Lock()
			a.st.Healed++
			a.mu.Unlock()
			a.log.Info("peers: healed a blob file from a peer", "path", req.RelPath, "digest", req.Digest, "peer", src.name)
			return src.name, nil
		}
	}
	return "", fmt.Errorf("oci: heal %s (%s): %w (%s)", req.RelPath, req.Digest, ErrNoPeerHasIt, orNone(errs))
}

// healTemp is a verified copy in DATA/.trowfs, still open.
type healTemp struct {
	f     *os.File
	dirFd int // DATA/.trowfs
	name  string
}

// install gives the copy the mode and owner of was (the file stat'ed at parentFd/base when the
// heal began), fsyncs it and puts it at parentFd/base only if that is still was: it exchanges
// the two names atomically (renameat2 RENAME_EXCHANGE, which fails on a missing target, so a
// blob deleted meanwhile is never recreated), checks that what it took out is was, and swaps
// back if not (the registry rewrote the blob meanwhile: its file stays). Then it removes the old
// file and fsyncs the directory. On any failure nothing is left under DATA/.trowfs.
func (h *healTemp) install(parentFd int, base string, was *unix.Stat_t) error {
	defer unix.Close(h.dirFd)
	defer h.f.Close()
	fail := func(err error) error {
		_ = unix.Unlinkat(h.dirFd, h.name, 0)
		return err
	}
	if err := unix.Fchmod(int(h.f.Fd()), was.Mode&0o7777); err != nil {
		return fail(fmt.Errorf("set the healed copy's mode: %w", err))
	}
	if int(was.Uid) != os.Geteuid() || int(was.Gid) != os.Getegid() {
		if err := unix.Fchown(int(h.f.Fd()), int(was.Uid), int(was.Gid)); err != nil {
			return fail(fmt.Errorf("give the healed copy the owner %d:%d of the file it replaces: %w", was.Uid, was.Gid, err))
		}
	}
	if err := h.f.Sync(); err != nil {
		return fail(err)
	}
	same := func(st *unix.Stat_t) bool {
		return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Dev == was.Dev && st.Ino == was.Ino
	}
	err := unix.Renameat2(h.dirFd, h.name, parentFd, base, unix.RENAME_EXCHANGE)
	switch {
	case errors.Is(err, unix.ENOENT):
		return fail(ErrChangedMeanwhile) // deleted meanwhile: stays deleted
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP):
		// No exchange on this file system: check, then rename over (a narrow window only).
		var cur unix.Stat_t
		if err := unix.Fstatat(parentFd, base, &cur, unix.AT_SYMLINK_NOFOLLOW); err != nil || !same(&cur) {
			return fail(ErrChangedMeanwhile)
		}
		if err := unix.Renameat(h.dirFd, h.name, parentFd, base); err != nil {
			return fail(fmt.Errorf("rename the healed copy into place: %w", err))
		}
	case err != nil:
		return fail(fmt.Errorf("rename the healed copy into place: %w", err))
	default:
		// h.name is now the file that was at base.
		var out unix.Stat_t
		if err := unix.Fstatat(h.dirFd, h.name, &out, unix.AT_SYMLINK_NOFOLLOW); err != nil || !same(&out) {
			// Not the file the heal examined: the registry's file goes back. If base went away
			// between the two exchanges (deleted: it took the copy with it), what is left is the
			// registry's file under h.name, which it replaced anyway: removed.
			_ = unix.Renameat2(h.dirFd, h.name, parentFd, base, unix.RENAME_EXCHANGE)
			return fail(ErrChangedMeanwhile)
		}
		// The copy is in place: a damaged file that cannot be removed now is not a failed heal
		// (the next heal's housekeeping removes it, a day on: it is a heal.*.tmp file).
		_ = unix.Unlinkat(h.dirFd, h.name, 0)
	}
	// parentFd is O_PATH: fsync needs a real descriptor of the directory.
	dfd, err := beneath.Open(parentFd, ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	return unix.Fsync(dfd)
}

// fetchHeal streams the blob from src into a new file under DATA/.trowfs, verifying it; on any
// mismatch the file is removed and nothing else is touched.
func (r *round) fetchHeal(src *endpoint, repo, kind string, desc registry.Descriptor, dataFd int) (*healTemp, error) {
	if err := unix.Mkdirat(dataFd, stateDirName, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, err
	}
	dirFd, err := beneath.Open(dataFd, stateDirName, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, fmt.Errorf("open %s beneath DATA: %w", stateDirName, err)
	}
	removeStaleTemps(dirFd)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := "heal." + hex.EncodeToString(rnd[:]) + ".tmp"
	fd, err := beneath.OpenMode(dirFd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		unix.Close(dirFd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), tmp)
	fail := func(err error) (*healTemp, error) {
		f.Close()
		_ = unix.Unlinkat(dirFd, tmp, 0)
		unix.Close(dirFd)
		return nil, err
	}
	resp, err := src.do(r.ctx, "GET", repo, kind, desc.Digest.String())
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	what := "blob "
	if kind == "manifests" {
		what = "manifest "
	}
	if err := checkStatus(resp, what+repo+"@"+desc.Digest.String()); err != nil {
		return fail(err)
	}
	// Blobs of unknown size may take at most half of DATA's free space, all the heals running at
	// once together: a source streaming without end must not fill the registry's disk.
	maxUnknown := int64(1 << 62)
	var w io.Writer = f
	if desc.Size < 0 {
		var fs unix.Statfs_t
		if err := unix.Fstatfs(dirFd, &fs); err != nil {
			return fail(err)
		}
		free := int64(fs.Bavail) * int64(fs.Bsize)
		maxUnknown = max(1, free/2)
		bw := &budgetWriter{w: f, b: &r.a.budget, limit: (free + r.a.budget.written.Load()) / 2}
		defer func() { r.a.budget.written.Add(-bw.total) }()
		w = bw
	}
	if _, err := copyVerified(w, resp.Body, desc.Digest, desc.Size, maxUnknown); err != nil {
		return fail(err)
	}
	return &healTemp{f: f, dirFd: dirFd, name: tmp}, nil
}

// healBudget makes the heals of unknown size running at once share half of DATA's free space:
// each measured half of the free space it saw alone, so two at once could fill DATA. Each heal
// caps the bytes written by all of them together at half of the free space there was before any
// of them wrote (the free space now plus what they wrote so far).
type healBudget struct {
	written atomic.Int64 // bytes written so far by the heals of unknown size in flight
}

// errNoHealBudget: the heals of unknown size in flight wrote half of DATA's free space between
// them. The source writing when that happens need not be the one to blame: no source is blamed
// and the heal is retried later (a single source sending too much is blamed by copyVerified).
var errNoHealBudget = errors.New("heals in flight wrote half of DATA's free space between them: abandoned, retried later")

// budgetWriter writes to w while the heals of unknown size together stay below limit.
type budgetWriter struct {
	w     io.Writer
	b     *healBudget
	limit int64
	total int64 // what this writer wrote (given back when the heal ends)
}

func (c *budgetWriter) Write(p []byte) (int, error) {
	if c.b.written.Load()+int64(len(p)) > c.limit {
		return 0, errNoHealBudget
	}
	k, err := c.w.Write(p)
	c.b.written.Add(int64(k))
	c.total += int64(k)
	return k, err
}

// staleTempAge is how old a heal's temporary file must be to be taken for one left by a crash.
const staleTempAge = 24 * time.Hour

// removeStaleTemps removes the heal temporary files (regular files named heal.*.tmp) in dirFd
// older than staleTempAge: a crash mid-heal would otherwise leave a blob-sized file in DATA for
// ever. Errors are ignored: this is housekeeping.
func removeStaleTemps(dirFd int) {
	fd, err := unix.Dup(dirFd)
	if err != nil {
		return
	}
	d := os.NewFile(uintptr(fd), stateDirName)
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		if !strings.HasPrefix(n, "heal.") || !strings.HasSuffix(n, ".tmp") {
			continue
		}
		var st unix.Stat_t
		if unix.Fstatat(dirFd, n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		if time.Since(time.Unix(st.Mtim.Unix())) > staleTempAge {
			_ = unix.Unlinkat(dirFd, n, 0)
		}
	}
}

// validRel reports whether p is a clean, relative, slash-separated path below DATA, outside
// DATA/.trowfs.
func validRel(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." {
		return false
	}
	first, _, _ := strings.Cut(p, "/")
	return first != stateDirName
}
