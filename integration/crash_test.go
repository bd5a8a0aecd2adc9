package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/integration/trowfsbin"
	"github.com/trowfs/trowfs/internal/tracker"
)

// crashModel is what the workload knows about DATA: files whose last operation returned
// success (present, with their digest), paths it removed successfully (absent), and paths an
// operation was in flight on when the mount died (uncertain: either outcome is correct).
type crashModel struct {
	mu        sync.Mutex // guards the three maps
	present   map[string]string
	absent    map[string]bool
	uncertain map[string]bool
}

func newCrashModel() *crashModel {
	return &crashModel{present: map[string]string{}, absent: map[string]bool{}, uncertain: map[string]bool{}}
}

func (m *crashModel) done(path, digest string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.present[path] = digest
	delete(m.absent, path)
	delete(m.uncertain, path)
}

func (m *crashModel) gone(path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.present, path)
	delete(m.uncertain, path)
	m.absent[path] = true
}

func (m *crashModel) unsure(paths ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range paths {
		delete(m.present, p)
		delete(m.absent, p)
		m.uncertain[p] = true
	}
}

// crashWorker creates, overwrites, renames and unlinks its own files below MNT/w<id>/ until
// stop is set or an operation fails (the mount died). Only its own files: no two workers race
// on one path, so the model stays exact.
type crashWorker struct {
	id, round int
	mnt       string
	rng       *rand.Rand
	model     *crashModel
	ops       *atomic.Int64 // completed operations of all workers
	mine      []string      // this worker's present files
	seq       int
}

func crashDigest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func (w *crashWorker) dir() string {
	return fmt.Sprintf("w%d/d%d/e%d", w.id, w.rng.IntN(3), w.rng.IntN(2))
}

func (w *crashWorker) content() []byte {
	n := w.rng.IntN(64 << 10)
	if w.rng.IntN(10) == 0 {
		n = 1<<20 + w.rng.IntN(2<<20) // some large writes, several FUSE requests each
	}
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := w.rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// writeFile writes b to MNT/rel in 256 KiB pieces and closes it.
func (w *crashWorker) writeFile(rel string, b []byte, flag int) error {
	f, err := os.OpenFile(filepath.Join(w.mnt, rel), flag, 0o644)
	if err != nil {
		return err
	}
	for off := 0; off < len(b); off += 256 << 10 {
		if _, err := f.Write(b[off:min(off+256<<10, len(b))]); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func (w *crashWorker) run(stop *atomic.Bool) {
	for !stop.Load() {
		if err := w.step(); err != nil {
			return
		}
		w.ops.Add(1)
	}
}

func (w *crashWorker) step() error {
	w.seq++
	switch r := w.rng.IntN(100); {
	case r < 15 && len(w.mine) > 0: // unlink
		i := w.rng.IntN(len(w.mine))
		p := w.mine[i]
		if err := os.Remove(filepath.Join(w.mnt, p)); err != nil {
			w.model.unsure(p)
			return err
		}
		w.model.gone(p)
		w.mine = append(w.mine[:i], w.mine[i+1:]...)
	case r < 30 && len(w.mine) > 0: // rename across directories
		i := w.rng.IntN(len(w.mine))
		from := w.mine[i]
		to := fmt.Sprintf("%s/r-%d-%d", w.dir(), w.round, w.seq)
		if err := os.MkdirAll(filepath.Join(w.mnt, filepath.Dir(to)), 0o755); err != nil {
			return err
		}
		w.model.mu.Lock()
		digest := w.model.present[from]
		w.model.mu.Unlock()
		if err := os.Rename(filepath.Join(w.mnt, from), filepath.Join(w.mnt, to)); err != nil {
			w.model.unsure(from, to)
			return err
		}
		w.model.gone(from)
		w.model.done(to, digest)
		w.mine[i] = to
	case r < 40 && len(w.mine) > 0: // overwrite in place
		p := w.mine[w.rng.IntN(len(w.mine))]
		b := w.content()
		if err := w.writeFile(p, b, os.O_WRONLY|os.O_TRUNC); err != nil {
			w.model.unsure(p)
			return err
		}
		w.model.done(p, crashDigest(b))
	default: // the registry commit pattern: write a temporary file, close, rename into place
		dir := w.dir()
		if err := os.MkdirAll(filepath.Join(w.mnt, dir), 0o755); err != nil {
			return err
		}
		tmp := fmt.Sprintf("%s/.tmp-%d-%d", dir, w.round, w.seq)
		final := fmt.Sprintf("%s/f-%d-%d", dir, w.round, w.seq)
		b := w.content()
		if err := w.writeFile(tmp, b, os.O_WRONLY|os.O_CREATE|os.O_EXCL); err != nil {
			w.model.unsure(tmp)
			return err
		}
		if err := os.Rename(filepath.Join(w.mnt, tmp), filepath.Join(w.mnt, final)); err != nil {
			w.model.unsure(tmp, final)
			return err
		}
		w.model.gone(tmp)
		w.model.done(final, crashDigest(b))
		w.mine = append(w.mine, final)
	}
	return nil
}

// check compares the model with DATA and with the digests the mount serves.
func (m *crashModel) check(t *testing.T, data, mnt string) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	buf := make([]byte, 128)
	for p, want := range m.present {
		b, err := os.ReadFile(filepath.Join(data, p))
		if err != nil {
			t.Errorf("lost: %s completed before the crash but is gone from DATA: %v", p, err)
			continue
		}
		if got := crashDigest(b); got != want {
			t.Errorf("lost: %s completed before the crash with %s but DATA holds %s", p, want, got)
		}
		n, err := unix.Getxattr(filepath.Join(mnt, p), "user.trowfs.digest", buf)
		if err != nil || string(buf[:n]) != want {
			t.Errorf("tree after the crash: %s has digest %q (%v), content is %s", p, buf[:max(n, 0)], err, want)
		}
	}
	for p := range m.absent {
		if _, err := os.Lstat(filepath.Join(data, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was removed before the crash but DATA has it (%v)", p, err)
		}
	}
}

// kill -9 in the middle of a workload, several times at different points: after each crash the
// remounted tree must equal the directory (verify exits 0) and everything the workload
// completed before the kill must be in DATA with its content.
func TestCrashKill9MidWorkload(t *testing.T) {
	data, mnt := cliDemo(t)
	model := newCrashModel()
	// Kill points: after this many completed operations (and at least the delay, so
	// checkpoints every 200 ms have happened before some kills and not others).
	// The write mode alternates: passthrough writes bypass the daemon, daemon writes cross it.
	for round, kp := range []struct {
		ops   int64
		delay time.Duration
		mode  string
	}{
		{20, 100 * time.Millisecond, "passthrough"},
		{150, 700 * time.Millisecond, "daemon"},
		{60, 300 * time.Millisecond, "passthrough"},
		{300, 1200 * time.Millisecond, "daemon"},
	} {
		t.Run(fmt.Sprintf("%s_kill_after_%d_ops", kp.mode, kp.ops), func(t *testing.T) {
			p := trowfsbin.Start(t, data, mnt, "--checkpoint-interval", "200ms", "--write-mode", kp.mode)
			var ops atomic.Int64
			var stop atomic.Bool
			var wg sync.WaitGroup
			for g := 0; g < 4; g++ {
				w := &crashWorker{id: g, round: round, mnt: mnt, rng: rand.New(rand.NewPCG(uint64(round), uint64(g))), model: model, ops: &ops}
				wg.Add(1)
				go func() { defer wg.Done(); w.run(&stop) }()
			}
			start := time.Now()
			for (ops.Load() < kp.ops || time.Since(start) < kp.delay) && time.Since(start) < 20*time.Second {
				time.Sleep(5 * time.Millisecond)
			}
			done := ops.Load()
			// The workers stop while the dead mount is still mounted (their next operation fails);
			// only then is it detached, so none of them can write into the bare mountpoint.
			p.Kill9Then(t, func() {
				stop.Store(true)
				waited := make(chan struct{})
				go func() { wg.Wait(); close(waited) }()
				select {
				case <-waited:
				case <-time.After(30 * time.Second):
					t.Fatalf("workers still blocked 30 s after the mount was killed")
				}
			})
			t.Logf("killed after %d operations (%v); %d files expected present, %d in flight at the kill",
				done, time.Since(start).Round(time.Millisecond), len(model.present), len(model.uncertain))
			if done < kp.ops {
				t.Fatalf("the workload completed only %d operations in 20 s; stderr:\n%s", done, p.Stderr())
			}

			// Before any remount: the last checkpoint is whole (written by atomic rename), and
			// what changed since it is a difference, never an integrity finding.
			code, v := trowfsbin.Verify(t, data)
			if (code != 0 && code != 1) || len(v.Findings) != 0 || (v.Snapshot != "loaded" && v.Snapshot != "missing") {
				t.Errorf("verify right after the kill: exit %d, snapshot %q, findings %+v; want exit 0 or 1, a whole snapshot, no findings",
					code, v.Snapshot, v.Findings)
			}
			t.Logf("verify right after the kill: exit %d, snapshot %s, %d differences from the last checkpoint", code, v.Snapshot, len(v.Differences))

			p2 := trowfsbin.Start(t, data, mnt, "--checkpoint-interval", "200ms")
			s := p2.WaitSettled(t, 60*time.Second)
			if !s.Mount.Load.PreviousMountCrashed {
				t.Errorf("the remount did not notice the crash: load %+v", s.Mount.Load)
			}
			t.Logf("remount: snapshot %s, %d files rehashed, %d changes since the last checkpoint", s.Mount.Load.Snapshot,
				s.Mount.Load.Rehashing, s.Mount.Load.ChangedWhileUnmountedCount)
			if n := len(cliBackingFiles(t, data)); s.Files != int64(n) || s.Status != "verified" {
				t.Errorf("after the crash: .state counts %d files (status %s), DATA holds %d", s.Files, s.Status, n)
			}
			model.check(t, data, mnt)
			p2.Stop(t)
			code, v = trowfsbin.Verify(t, data)
			if code != 0 || len(v.Differences) != 0 || len(v.Findings) != 0 {
				t.Errorf("verify after crash and remount: exit %d, %s, differences %+v, findings %+v", code, v.Verdict, v.Differences, v.Findings)
			}
			if v.RootDigest != s.Digest {
				t.Errorf("verify rebuilt root %s, the settled remount said %s", v.RootDigest, s.Digest)
			}
		})
		if t.Failed() {
			break
		}
	}
}

// SIGTERM while a writer holds a file open in the mount: the process must still exit (the
// mountpoint is detached lazily), its snapshot marks the open file pending, and the next mount
// rehashes it.
func TestCrashSigtermWithOpenWriter(t *testing.T) {
	data, mnt := cliDemo(t)
	p := trowfsbin.Start(t, data, mnt)
	p.WaitSettled(t, settleTimeout)

	f, err := os.OpenFile(filepath.Join(mnt, "held.bin"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			f.Close()
		}
	}()
	if _, err := f.Write([]byte("written before SIGTERM\n")); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Unmounting retries for a few seconds before it detaches lazily; then nothing is left to
	// wait for but hashing.
	const grace = 20 * time.Second
	code, exited := p.WaitExit(grace)
	if !exited {
		f.Close()
		closed = true
		code2, exited2 := p.WaitExit(5 * time.Second)
		t.Fatalf("trowfs did not exit within %v of SIGTERM while a writer held a file open "+
			"(5 s after the writer closed it: exited %v, code %d); stderr:\n%s", grace, exited2, code2, p.Stderr())
	}
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM with an open writer, want 0; stderr:\n%s", code, p.Stderr())
	}
	if trowfsbin.Mounted(mnt) {
		t.Errorf("%s is still in the mount table after trowfs exited", mnt)
	}
	// The writer's descriptor outlives the daemon: more writes may fail, closing must not hang.
	_, werr := f.Write([]byte("written after exit\n"))
	cerr := f.Close()
	closed = true
	t.Logf("after the daemon exited: write %v, close %v", werr, cerr)

	snap, _, err := tracker.ReadSnapshotFile(data)
	if err != nil {
		t.Fatalf("no usable snapshot after SIGTERM: %v", err)
	}
	if e, ok := snap.Get("held.bin"); !ok || e.Status != hashtree.StatusPending {
		t.Errorf("snapshot entry of the file open at unmount: %+v (present %v), want status pending", e, ok)
	}

	content, err := os.ReadFile(filepath.Join(data, "held.bin"))
	if err != nil {
		t.Fatal(err)
	}
	p = trowfsbin.Start(t, data, mnt)
	s := p.WaitSettled(t, settleTimeout)
	buf := make([]byte, 128)
	n, err := unix.Getxattr(filepath.Join(mnt, "held.bin"), "user.trowfs.digest", buf)
	if err != nil || string(buf[:n]) != crashDigest(content) {
		t.Errorf("after remount the file open at unmount has digest %q (%v), want %s", buf[:max(n, 0)], err, crashDigest(content))
	}
	n, err = unix.Getxattr(filepath.Join(mnt, "held.bin"), "user.trowfs.status", buf)
	if err != nil || string(buf[:n]) != "verified" {
		t.Errorf("after remount its status is %q (%v), want verified", buf[:max(n, 0)], err)
	}
	if s.Mount.Load.Rehashing < 1 {
		t.Errorf("the remount rehashed nothing: %+v", s.Mount.Load)
	}
	p.Stop(t)
	if code, v := trowfsbin.Verify(t, data); code != 0 {
		t.Errorf("verify: exit %d, %s, differences %+v", code, v.Verdict, v.Differences)
	}
}
