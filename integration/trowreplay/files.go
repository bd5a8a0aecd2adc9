package trowreplay

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// FilesVersion is a Trow release of the files era, as far as its file operations differ.
type FilesVersion int

// The files-era behaviours.
const (
	// V030 is Trow v0.3.0 to v0.3.4: blobs are copied into place (copy_file_range, then fchmod)
	// and the scratch file unlinked; tag files are rewritten in place, newest line first.
	V030 FilesVersion = iota
	// V035 is Trow v0.3.5 to v0.3.x: blobs are renamed into place; tag files as V030.
	V035
	// V04 is Trow v0.4 to v0.6: blobs are renamed; tag files are appended to, newest line last.
	V04
)

func (v FilesVersion) String() string {
	switch v {
	case V030:
		return "v0.3.0"
	case V035:
		return "v0.3.5"
	case V04:
		return "v0.4"
	}
	return fmt.Sprintf("FilesVersion(%d)", int(v))
}

// Files replays the files era on the directory Root (normally a trowfs mountpoint).
type Files struct {
	Root    string
	Version FilesVersion
	// Copies counts blobs copied with copy_file_range; Fallbacks those copied with read/write
	// because copy_file_range was refused.
	Copies, Fallbacks int
}

// OpError is a replayed operation that failed: Trow would have returned an error (or panicked).
type OpError struct {
	Op   string
	Path string
	Err  error
}

func (e *OpError) Error() string { return e.Op + " " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the system error.
func (e *OpError) Unwrap() error { return e.Err }

func opErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Op: op, Path: path, Err: err}
}

// UUID returns a random version-4 UUID as Trow names uploads.
func UUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Init creates the directories Trow creates at start-up.
func (f *Files) Init() error {
	for _, d := range []string{"blobs/sha256", "manifests", "scratch"} {
		if err := os.MkdirAll(filepath.Join(f.Root, d), 0o755); err != nil {
			return opErr("mkdir", d, err)
		}
	}
	return nil
}

// BlobPath is where the files era keeps blob d.
func (f *Files) BlobPath(d digest.Digest) string {
	return filepath.Join(f.Root, "blobs", "sha256", d.Encoded())
}

// patch appends one chunk as one PATCH does: open O_WRONLY|O_APPEND|O_CREAT, seek to the end,
// write, close.
func patch(path string, chunk []byte) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return opErr("open", path, err)
	}
	fdF := &rawFile{fd: fd}
	defer fdF.Close()
	if _, err := unix.Seek(fd, 0, io.SeekEnd); err != nil {
		return opErr("lseek", path, err)
	}
	for len(chunk) > 0 {
		n, err := unix.Write(fd, chunk)
		if err != nil {
			return opErr("write", path, err)
		}
		chunk = chunk[n:]
	}
	return opErr("close", path, fdF.Close())
}

// chunksOf cuts b into n nearly equal chunks (at least one, even for empty b).
func chunksOf(b []byte, n int) [][]byte {
	if n < 1 {
		n = 1
	}
	var out [][]byte
	size := (len(b) + n - 1) / n
	if size == 0 {
		return [][]byte{b}
	}
	for len(b) > 0 {
		k := min(size, len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}

// hashFile reads path through a fresh descriptor and returns its sha256 digest, with Trow's
// digest loop: a read shorter than the buffer is taken as the end of the file, so a mount that
// returns short reads makes the digest wrong, as it would for Trow.
func hashFile(path string) (digest.Digest, int64, error) {
	fl, err := os.Open(path)
	if err != nil {
		return "", 0, opErr("open", path, err)
	}
	defer fl.Close()
	h := sha256.New()
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := fl.Read(buf)
		h.Write(buf[:n])
		total += int64(n)
		if err == io.EOF || (err == nil && n < len(buf)) {
			break
		}
		if err != nil {
			return "", 0, opErr("read", path, err)
		}
	}
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil))), total, nil
}

// UploadBlob uploads b in chunks PATCHes to scratch/<uuid>, then completes the upload.
func (f *Files) UploadBlob(b Blob, chunks int) error {
	scratch := filepath.Join(f.Root, "scratch", UUID())
	for _, c := range chunksOf(b.Data, chunks) {
		if err := patch(scratch, c); err != nil {
			return err
		}
	}
	return f.complete(scratch, b.Digest)
}

// complete is the PUT that ends an upload: with a descriptor still open on the scratch file, the
// content is re-read and hashed, then moved into blobs/ (copy+unlink or rename by version).
func (f *Files) complete(scratch string, want digest.Digest) error {
	fd, err := unix.Open(scratch, unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
	if err != nil {
		return opErr("open", scratch, err)
	}
	fdF := &rawFile{fd: fd}
	defer fdF.Close()
	got, _, err := hashFile(scratch)
	if err != nil {
		return err
	}
	if got != want {
		return opErr("digest", scratch, fmt.Errorf("content is %s, client said %s", got, want))
	}
	if err := f.moveIntoBlobs(scratch, want); err != nil {
		return err
	}
	return opErr("close", scratch, fdF.Close())
}

// moveIntoBlobs puts src at blobs/sha256/<hex> the way the version does.
func (f *Files) moveIntoBlobs(src string, d digest.Digest) error {
	dst := f.BlobPath(d)
	if f.Version != V030 {
		return opErr("rename", src, os.Rename(src, dst))
	}
	if err := f.copyFile(src, dst); err != nil {
		return err
	}
	return opErr("unlink", src, os.Remove(src))
}

// copyFile is Rust's std::fs::copy on Linux: open the source, create the destination
// O_WRONLY|O_CREAT|O_TRUNC, copy with copy_file_range (read/write when it is refused), then
// fchmod the destination to the source's mode.
func (f *Files) copyFile(src, dst string) error {
	in, err := unix.Open(src, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return opErr("open", src, err)
	}
	defer unix.Close(in)
	var st unix.Stat_t
	if err := unix.Fstat(in, &st); err != nil {
		return opErr("fstat", src, err)
	}
	out, err := unix.Open(dst, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, st.Mode&0o7777)
	if err != nil {
		return opErr("open", dst, err)
	}
	outF := &rawFile{fd: out}
	defer outF.Close()
	left := st.Size
	usedCFR := true
	for left > 0 {
		n, err := unix.CopyFileRange(in, nil, out, nil, int(left), 0)
		if err != nil {
			if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
				usedCFR = false
				break
			}
			return opErr("copy_file_range", dst, err)
		}
		if n == 0 {
			break
		}
		left -= int64(n)
	}
	if left > 0 {
		// Fall back to read/write from where copy_file_range stopped.
		off := st.Size - left
		buf := make([]byte, 64<<10)
		for left > 0 {
			n, err := unix.Pread(in, buf[:min(int64(len(buf)), left)], off)
			if err != nil {
				return opErr("read", src, err)
			}
			if n == 0 {
				return opErr("read", src, io.ErrUnexpectedEOF)
			}
			if _, err := unix.Pwrite(out, buf[:n], off); err != nil {
				return opErr("write", dst, err)
			}
			off += int64(n)
			left -= int64(n)
		}
	}
	if usedCFR {
		f.Copies++
	} else {
		f.Fallbacks++
	}
	if err := unix.Fchmod(out, st.Mode&0o7777); err != nil {
		return opErr("fchmod", dst, err)
	}
	return opErr("close", dst, outF.Close())
}

// TagLine is one line of a tag file.
func TagLine(d digest.Digest, at time.Time) string {
	return d.String() + " " + at.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") + "\n"
}

// PutManifest is a manifest PUT: the body goes to scratch/<uuid>, is read back and parsed, the
// blobs it references are stat-ed, it is moved into blobs/, then the tag file manifests/<repo>/<ref>
// gets a line. ref is a tag, or the digest for a push by digest.
func (f *Files) PutManifest(repo, ref string, m Blob, at time.Time) error {
	scratch := filepath.Join(f.Root, "scratch", UUID())
	if err := os.WriteFile(scratch, m.Data, 0o644); err != nil {
		return opErr("write", scratch, err)
	}
	body, err := os.ReadFile(scratch)
	if err != nil {
		return opErr("read", scratch, err)
	}
	var parsed struct {
		Config *struct {
			Digest digest.Digest `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"layers"`
		Manifests []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(body, &parsed); err != nil {
		return opErr("parse", scratch, err)
	}
	var refs []digest.Digest
	if parsed.Config != nil {
		refs = append(refs, parsed.Config.Digest)
	}
	for _, l := range parsed.Layers {
		refs = append(refs, l.Digest)
	}
	for _, c := range parsed.Manifests {
		refs = append(refs, c.Digest)
	}
	for _, d := range refs {
		if _, err := os.Stat(f.BlobPath(d)); err != nil {
			return opErr("stat", f.BlobPath(d), err)
		}
	}
	if got, _, err := hashFile(scratch); err != nil {
		return err
	} else if got != m.Digest {
		return opErr("digest", scratch, fmt.Errorf("manifest is %s, want %s", got, m.Digest))
	}
	if err := f.moveIntoBlobs(scratch, m.Digest); err != nil {
		return err
	}
	return f.WriteTag(repo, ref, m.Digest, at)
}

// WriteTag adds a line for d to the tag file manifests/<repo>/<ref>: v0.3 rewrites the file in
// place with the new line first; v0.4+ appends it.
func (f *Files) WriteTag(repo, ref string, d digest.Digest, at time.Time) error {
	dir := filepath.Join(f.Root, "manifests", filepath.FromSlash(repo))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return opErr("mkdir", dir, err)
	}
	p := filepath.Join(dir, ref)
	line := TagLine(d, at)
	if f.Version == V04 {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return opErr("open", p, err)
		}
		if _, err := unix.Write(fd, []byte(line)); err != nil {
			unix.Close(fd)
			return opErr("write", p, err)
		}
		return opErr("close", p, unix.Close(fd))
	}
	old, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return opErr("read", p, err)
	}
	// Not atomic: truncate in place, then write the new line followed by the old ones.
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return opErr("open", p, err)
	}
	if _, err := unix.Write(fd, []byte(line)); err != nil {
		unix.Close(fd)
		return opErr("write", p, err)
	}
	if len(old) > 0 {
		if _, err := unix.Write(fd, old); err != nil {
			unix.Close(fd)
			return opErr("write", p, err)
		}
	}
	return opErr("close", p, unix.Close(fd))
}

// Push uploads the image's blobs (each in chunks PATCHes) and puts its manifest under tag.
func (f *Files) Push(repo, tag string, im Image, at time.Time, chunks int) error {
	for _, b := range im.Blobs() {
		if err := f.UploadBlob(b, chunks); err != nil {
			return err
		}
	}
	return f.PutManifest(repo, tag, im.Manifest, at)
}

// DeleteManifest unlinks the tag file manifests/<repo>/<ref>, as Trow's manifest DELETE does.
func (f *Files) DeleteManifest(repo, ref string) error {
	p := filepath.Join(f.Root, "manifests", filepath.FromSlash(repo), ref)
	return opErr("unlink", p, os.Remove(p))
}

// DeleteBlob unlinks blobs/sha256/<hex> even when manifests still reference it.
func (f *Files) DeleteBlob(d digest.Digest) error {
	return opErr("unlink", f.BlobPath(d), os.Remove(f.BlobPath(d)))
}

// ProxyBlob is a pull-through download: scratch/sha256:<hex> is written, re-read, and moved into
// blobs/.
func (f *Files) ProxyBlob(b Blob) error {
	tmp := filepath.Join(f.Root, "scratch", b.Digest.String())
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return opErr("open", tmp, err)
	}
	for _, c := range chunksOf(b.Data, 3) {
		if _, err := unix.Write(fd, c); err != nil {
			unix.Close(fd)
			return opErr("write", tmp, err)
		}
	}
	if err := unix.Close(fd); err != nil {
		return opErr("close", tmp, err)
	}
	return f.complete(tmp, b.Digest)
}

// Catalog walks manifests/ as Trow's catalog and tag listing do: every non-directory entry is a
// tag and its parent directory (relative to manifests/) is a repository.
func Catalog(root string) (map[string][]string, error) {
	base := filepath.Join(root, "manifests")
	out := map[string][]string{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(base, p)
		repo, tag := filepath.ToSlash(filepath.Dir(rel)), d.Name()
		out[repo] = append(out[repo], tag)
		return nil
	})
	for _, tags := range out {
		sort.Strings(tags)
	}
	return out, err
}

// HasStateEntry reports the first ".state" (or any trowfs-reserved) name in a catalog.
func HasStateEntry(cat map[string][]string) (string, bool) {
	for repo, tags := range cat {
		for _, seg := range strings.Split(repo, "/") {
			if seg == ".state" || seg == ".trowfs" {
				return repo, true
			}
		}
		for _, t := range tags {
			if t == ".state" || t == ".trowfs" {
				return repo + ":" + t, true
			}
		}
	}
	return "", false
}

// rawFile is a raw descriptor closed at most once. The tests run in the same process as the
// mount: closing a descriptor number twice could close one of trowfs's own descriptors.
type rawFile struct {
	fd     int
	closed bool
}

// Close closes the descriptor the first time it is called.
func (f *rawFile) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	return unix.Close(f.fd)
}
