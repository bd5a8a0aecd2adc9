package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trowfs/trowfs/api"
	trowfs "github.com/trowfs/trowfs/fs"
	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/statedir"
	"github.com/trowfs/trowfs/internal/tracker"
	"github.com/trowfs/trowfs/internal/version"
	"github.com/trowfs/trowfs/peers"
	"github.com/trowfs/trowfs/registry"
)

// Config is everything `trowfs mount` can be told.
type Config struct {
	Data, Mnt          string
	NonEmpty           bool   // mount even if MNT holds entries (they are hidden while mounted)
	Layout             string // "auto" or a registry.Layout
	Exclude            []string
	NoDefaultExcludes  bool
	DeleteUntagged     bool
	VerifyOnStart      tracker.VerifyMode
	CheckpointInterval time.Duration
	ScrubInterval      time.Duration // 0 disables the scrub
	ScrubRate          int64
	ScrubSample        float64
	Listen             string
	APIToken           string
	WriteMode          string
	EntryTimeout       time.Duration
	AttrTimeout        time.Duration
	NegativeTimeout    time.Duration
	ReadyFile          string
	ListState          bool
	Debug              bool
	Logger             *slog.Logger
	// Status, if set, is told what Start is doing (for a service manager's status line).
	Status func(string)
	// LoadProgress, if set, is told how far the start-up reconcile of DATA got: files and bytes
	// of regular files seen so far, now and then, and once more at its end with final set
	// (tracker.Options.OnLoadProgress).
	LoadProgress func(files, bytes int64, final bool)
	// DrainTimeout bounds how long Stop waits for pending hashes before the final snapshot.
	DrainTimeout time.Duration
	// OnMismatch is what an open for reading of a blob known not to match its name gets:
	// OnMismatchServe (default, "") or OnMismatchEIO.
	OnMismatch string
	PeerConfig
}

// ConfigError is a problem with what the operator asked for (exit code 2).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// MountError is a failure to mount (exit code 5).
type MountError struct{ Err error }

func (e *MountError) Error() string { return e.Err.Error() }
func (e *MountError) Unwrap() error { return e.Err }

// Server is a running mount.
type Server struct {
	cfg    Config
	log    *slog.Logger
	layout registry.Layout
	t      *tracker.Tracker
	// reg is replaced once when an empty data directory (layout auto) turns into a registry.
	reg atomic.Pointer[registry.Registry]
	// layoutMu guards layout and the re-detection state.
	layoutMu   sync.Mutex
	autoLayout bool      // the layout was auto-detected as plain: look again as files arrive
	lastDetect time.Time // throttles re-detection
	fuse       *trowfs.Server
	api        *api.Server
	started    time.Time
	cancel     context.CancelFunc
	bg         sync.WaitGroup
	gone       chan struct{} // closed when the FUSE server stops serving (unmounted by us or from outside)
	mounted    atomic.Bool   // the mount serves: trow.db is read through it

	stopOnce sync.Once
	stopErr  error
	lastSnap atomic.Int64  // Unix nanoseconds of the last checkpoint written by this mount; 0: none yet
	snapFail atomic.Uint64 // snapshot writes (checkpoints, the final one) that failed
	snapBad  atomic.Bool   // the last snapshot write failed
	hist     *histograms   // latency histograms served on /metrics
	peer     atomic.Pointer[peers.Node]
	heal     healing // blobs known bad, and their heals from peers (heal.go)
}

// Start validates cfg, loads and reconciles the tree, mounts, and starts the background work.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	status := cfg.Status
	if status == nil {
		status = func(string) {}
	}
	status("checking the data directory and the mountpoint")
	data, mnt, err := checkDirs(cfg.Data, cfg.Mnt, cfg.NonEmpty, log)
	if err != nil {
		return nil, err
	}
	cfg.Data, cfg.Mnt = data, mnt
	layout := registry.Layout("")
	if cfg.Layout == "" || cfg.Layout == "auto" {
		layout = registry.Detect(cfg.Data)
	} else if layout, err = registry.ParseLayout(cfg.Layout); err != nil {
		return nil, &ConfigError{err}
	}
	exclude := append([]string{}, cfg.Exclude...)
	if !cfg.NoDefaultExcludes {
		exclude = append(layout.Excludes(), exclude...)
	}
	if _, err := tracker.NewMatcher(exclude); err != nil {
		return nil, &ConfigError{err}
	}
	if cfg.VerifyOnStart == "" {
		cfg.VerifyOnStart = tracker.VerifyQuick
	}
	switch cfg.VerifyOnStart {
	case tracker.VerifyQuick, tracker.VerifyFull, tracker.VerifyOff:
	default:
		return nil, &ConfigError{fmt.Errorf("--verify-on-start=%s: want quick, full or off", cfg.VerifyOnStart)}
	}
	switch cfg.OnMismatch {
	case "", OnMismatchServe, OnMismatchEIO:
	default:
		return nil, &ConfigError{fmt.Errorf("--on-mismatch=%s: want %s or %s", cfg.OnMismatch, OnMismatchServe, OnMismatchEIO)}
	}
	// Files and directories created through the mount get exactly the mode the caller asked for
	// (the kernel has already applied the caller's umask): fs creates them on umask-0 threads
	// (internal/exactmode), and the process keeps its own umask for everything else.

	s := &Server{cfg: cfg, log: log, layout: layout, started: time.Now().UTC(), hist: newHistograms()}
	s.heal.q = newHealQueue(time.Now, healQueueMax, healBackoffStart, healBackoffMax)
	s.reg.Store(registry.New(layout, source{s}, registry.Options{DeleteUntagged: cfg.DeleteUntagged, Logger: log}))
	s.autoLayout = (cfg.Layout == "" || cfg.Layout == "auto") && layout == registry.Plain
	if s.autoLayout {
		log.Info("no registry layout recognised yet; looking again as files arrive (or pass --layout)")
	}
	s.t, err = tracker.New(tracker.Options{Root: cfg.Data, Exclude: exclude, BlobDigest: layout.BlobDigest, Logger: log, Notify: s.notify,
		OnCommitHash: s.hist.observeCommitHash, OnRunEnd: s.hist.observeRun, OnLoadProgress: cfg.LoadProgress})
	if err != nil {
		return nil, &ConfigError{err}
	}
	if err := s.t.Lock(); err != nil {
		s.t.Close()
		var ue *statedir.UnsafeError
		if errors.As(err, &ue) {
			return nil, &ConfigError{err}
		}
		return nil, err
	}
	status("loading the snapshot and reconciling " + cfg.Data)
	log.Info("loading", "data", cfg.Data, "layout", layout, "exclude", exclude, "verify_on_start", cfg.VerifyOnStart)
	if _, err := s.t.Load(ctx, cfg.VerifyOnStart); err != nil {
		s.t.Close()
		return nil, err
	}
	if layout != registry.Plain {
		files := s.files()
		s.reg.Load().Reset(files)
		s.seedBadBlobs(files)
	}
	// The load allocated and dropped a lot (the snapshot's buffers, the walk): give it back now
	// rather than whenever the runtime gets to it.
	debug.FreeOSMemory()

	opts := trowfs.DefaultOptions()
	if cfg.WriteMode != "" {
		opts.WriteMode = cfg.WriteMode
	}
	if cfg.EntryTimeout > 0 {
		opts.EntryTimeout = cfg.EntryTimeout
	}
	if cfg.AttrTimeout > 0 {
		opts.AttrTimeout = cfg.AttrTimeout
	}
	if cfg.NegativeTimeout > 0 {
		opts.NegativeTimeout = cfg.NegativeTimeout
	}
	opts.Debug = cfg.Debug
	opts.ListState = cfg.ListState
	opts.State = s.stateDoc
	if cfg.OnMismatch == OnMismatchEIO {
		opts.Refuse = s.refuse
	}
	status("mounting " + cfg.Mnt)
	s.fuse, err = trowfs.Mount(cfg.Data, cfg.Mnt, s.t, opts)
	if err != nil {
		s.reg.Load().Close()
		s.t.Close()
		return nil, &MountError{err}
	}
	s.gone = make(chan struct{})
	s.mounted.Store(true)
	go func() { s.fuse.Wait(); s.mounted.Store(false); close(s.gone) }()
	log.Info("mounted", "data", cfg.Data, "mountpoint", cfg.Mnt, "write_mode", opts.WriteMode, "kernel_passthrough", s.fuse.Passthrough())

	bgctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if cfg.VerifyOnStart == tracker.VerifyFull {
		if _, err := s.t.StartVerify(tracker.RunFull, tracker.RunOptions{Ctx: bgctx}); err != nil {
			log.Warn("full verification on start did not start", "err", err)
		}
	}
	if cfg.ScrubInterval > 0 {
		s.t.StartScrub(tracker.ScrubOptions{Interval: cfg.ScrubInterval, Rate: cfg.ScrubRate, Sample: cfg.ScrubSample})
	}
	if cfg.CheckpointInterval > 0 {
		s.bg.Add(1)
		go s.checkpoints(bgctx)
	}
	if cfg.Listen != "" {
		if err := s.startAPI(); err != nil {
			_ = s.Stop()
			return nil, &ConfigError{err}
		}
	}
	if err := s.startPeers(); err != nil {
		_ = s.Stop()
		return nil, &ConfigError{err}
	}
	if cfg.ReadyFile != "" {
		if err := os.WriteFile(cfg.ReadyFile, []byte(cfg.Mnt+"\n"), 0o644); err != nil {
			log.Warn("could not write the ready file", "path", cfg.ReadyFile, "err", err)
		}
	}
	return s, nil
}

// Tracker returns the tree keeper.
func (s *Server) Tracker() *tracker.Tracker { return s.t }

// Registry returns the registry model.
func (s *Server) RegistryModel() *registry.Registry { return s.reg.Load() }

// Layout returns the registry layout in use.
func (s *Server) Layout() registry.Layout {
	s.layoutMu.Lock()
	defer s.layoutMu.Unlock()
	return s.layout
}

// Mountpoint returns where DATA is mounted.
func (s *Server) Mountpoint() string { return s.cfg.Mnt }

// Settle waits until pending hashes are done, every tree change reached the registry model and
// the model processed it. It reports false on timeout.
func (s *Server) Settle(timeout time.Duration) bool {
	if !s.t.Drain(timeout) {
		return false
	}
	s.t.WaitNotified()
	s.reg.Load().Flush()
	return true
}

// Serving reports whether the FUSE server loop still serves the mount.
func (s *Server) Serving() bool { return s.mounted.Load() }

// Wait blocks until the filesystem is unmounted (by Stop or from outside).
func (s *Server) Wait() { <-s.gone }

// Stop unmounts, waits for pending hashes, writes the final snapshot and releases everything.
// It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	s.log.Info("shutting down", "mountpoint", s.cfg.Mnt)
	s.stopPeers() // first: pushes in flight finish through the mount, the state is written before the snapshot
	if s.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.api.Shutdown(ctx)
		cancel()
	}
	if s.fuse != nil {
		s.unmount()
		s.t.AbandonWriters()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.bg.Wait()
	s.t.StopRuns() // no verification or scrub may change the tree behind the final snapshot
	timeout := s.cfg.DrainTimeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	if !s.t.Drain(timeout) {
		s.log.Warn("stopped waiting for pending hashes; those files stay pending and are rehashed at the next mount")
	}
	snapStart := time.Now()
	err := s.t.WriteSnapshot(true)
	if err != nil {
		s.snapFail.Add(1)
		s.log.Error("final snapshot failed; the next mount rescans", "err", err)
	} else {
		s.hist.observeSnapshot(time.Since(snapStart))
		s.log.Info("snapshot written", "root", s.t.Root().String())
	}
	s.reg.Load().Close()
	s.t.Close()
	return err
}

// unmount takes the filesystem down. A mountpoint still in use (a file held open through it) is
// detached lazily; trowfs then waits briefly and exits anyway: the open file keeps working until
// it is closed (the kernel ends the connection when this process exits) and stays pending.
func (s *Server) unmount() {
	var err error
	for i := 0; i < 3; i++ {
		select {
		case <-s.gone: // unmounted from outside
			return
		default:
		}
		if os.Geteuid() == 0 {
			err = syscall.Unmount(s.cfg.Mnt, 0)
			if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
				err = nil // no longer mounted
			}
		} else {
			err = s.fuse.Unmount()
		}
		if err == nil {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err != nil {
		s.log.Warn("mountpoint busy; detaching it lazily (files open through it keep working until closed)", "err", err)
		_ = syscall.Unmount(s.cfg.Mnt, syscall.MNT_DETACH)
	}
	select {
	case <-s.gone:
	case <-time.After(3 * time.Second):
		s.log.Warn("files are still open through the detached mount; finishing without them")
	}
}

// SnapshotWriteFailing reports whether the last snapshot write (a checkpoint) failed: DATA/.trowfs
// cannot be written, and a restart would rescan what changed since the last one that succeeded.
func (s *Server) SnapshotWriteFailing() bool { return s.snapBad.Load() }

func (s *Server) checkpoints(ctx context.Context) {
	defer s.bg.Done()
	tick := time.NewTicker(s.cfg.CheckpointInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if !s.t.Dirty() {
				continue
			}
			start := time.Now()
			if err := s.t.WriteSnapshot(false); err != nil {
				s.snapFail.Add(1)
				s.snapBad.Store(true)
				s.log.Warn("checkpoint failed", "err", err)
				continue
			}
			s.hist.observeSnapshot(time.Since(start))
			s.lastSnap.Store(time.Now().UnixNano())
			s.snapBad.Store(false)
			s.log.Debug("checkpoint written", "took", time.Since(start))
		}
	}
}

// notify forwards tree changes to the registry model.
func (s *Server) notify(ev tracker.Event) {
	defer s.notifyPeers()
	if s.redetect() {
		return // the new registry model was loaded from the whole tree
	}
	s.observeBlob(ev)
	reg := s.reg.Load()
	if ev.Removed {
		reg.Remove(ev.Path)
		return
	}
	if ev.Entry.Kind != hashtree.KindFile {
		return
	}
	reg.Update(registry.FileInfo{Path: ev.Path, Size: ev.Entry.Meta.Size, Digest: ev.Entry.Digest, Status: ev.Entry.Status})
}

// redetect looks for a registry layout again (at most twice a second) while the data directory
// has not shown one; when it finds one, it switches the tracker's rules and the registry model.
func (s *Server) redetect() bool {
	s.layoutMu.Lock()
	if !s.autoLayout || time.Since(s.lastDetect) < 500*time.Millisecond {
		s.layoutMu.Unlock()
		return false
	}
	s.lastDetect = time.Now()
	l := registry.Detect(s.cfg.Data)
	if l == registry.Plain {
		s.layoutMu.Unlock()
		return false
	}
	s.layout, s.autoLayout = l, false
	s.layoutMu.Unlock()
	s.log.Info("registry layout detected", "layout", l)
	exclude := append([]string{}, s.cfg.Exclude...)
	if !s.cfg.NoDefaultExcludes {
		exclude = append(l.Excludes(), exclude...)
	}
	if err := s.t.SetClassifier(exclude, l.BlobDigest); err != nil {
		s.log.Warn("could not apply the layout's exclusions", "err", err)
	}
	reg := registry.New(l, source{s}, registry.Options{DeleteUntagged: s.cfg.DeleteUntagged, Logger: s.log})
	files := s.files()
	reg.Reset(files)
	s.seedBadBlobs(files)
	if old := s.reg.Swap(reg); old != nil {
		old.Close()
	}
	return true
}

// files lists every file of the tree for the registry model.
func (s *Server) files() []registry.FileInfo {
	var out []registry.FileInfo
	s.t.WithTree(func(tr *hashtree.Tree) {
		_ = tr.Walk(func(p string, e hashtree.Entry) error {
			if e.Kind == hashtree.KindFile {
				out = append(out, registry.FileInfo{Path: p, Size: e.Meta.Size, Digest: e.Digest, Status: e.Status})
			}
			return nil
		})
	})
	return out
}

// source gives the registry model read access to DATA.
type source struct{ s *Server }

func (src source) ReadFile(rel string) ([]byte, error) { return src.s.t.ReadFile(rel, 64<<20) }

// DBPath is where trow.db is opened read-only: through the mount while it is up, so the reader
// shares the page cache, locks and shared memory that Trow's own connections use.
func (src source) DBPath() string {
	if src.s.mounted.Load() {
		return filepath.Join(src.s.cfg.Mnt, "trow.db")
	}
	return filepath.Join(src.s.cfg.Data, "trow.db")
}

// stateDoc renders the .state of rel.
func (s *Server) stateDoc(rel string) ([]byte, time.Time, error) {
	st, ok := s.t.State(rel)
	if !ok {
		return nil, time.Time{}, os.ErrNotExist
	}
	doc := stateDoc{State: st}
	reg := s.reg.Load()
	if rel == "" {
		doc.Mount = s.mountInfo()
		doc.Peers = s.peerStatus()
		if s.Layout() != registry.Plain {
			r := reg.Report()
			doc.Registry = &r
		}
	}
	if repo, ok := reg.RepoForDir(rel); ok {
		if rr, ok := reg.RepoReport(repo); ok {
			doc.Repository = &rr
		}
	}
	b, err := api.MarshalIndent(doc, "", "  ") // keeps names that are not UTF-8 (docs/state.md)
	var changed time.Time
	if st.ChangedAt != nil {
		changed = *st.ChangedAt
	}
	return append(b, '\n'), changed, err
}

type stateDoc struct {
	tracker.State
	Mount      *mountInfo           `json:"mount,omitempty"`
	Registry   *registry.Report     `json:"registry,omitempty"`
	Repository *registry.RepoReport `json:"repository,omitempty"`
	Peers      *peers.Status        `json:"peers,omitempty"`
}

type mountInfo struct {
	DataDir       string                `json:"data_dir"`
	Mountpoint    string                `json:"mountpoint"`
	MountedSince  time.Time             `json:"mounted_since"`
	Layout        string                `json:"layout"`
	WriteMode     string                `json:"write_mode"`
	Passthrough   bool                  `json:"kernel_passthrough"`
	Pending       int                   `json:"pending_files"`
	Load          tracker.LoadReport    `json:"load"`
	Scrub         tracker.ScrubProgress `json:"scrub"`
	LastVerify    *tracker.RunView      `json:"last_verify,omitempty"`
	TrowfsVersion string                `json:"trowfs_version"`
}

// Version is the trowfs version the root .state reports (internal/version, stamped at build
// time).
var Version = version.String()

func (s *Server) mountInfo() *mountInfo {
	st := s.t.Stats()
	mi := &mountInfo{DataDir: s.cfg.Data, Mountpoint: s.cfg.Mnt, MountedSince: s.started, Layout: string(s.Layout()),
		WriteMode: s.cfg.WriteMode, Pending: st.Pending, Load: s.t.LoadReport(), Scrub: st.Scrub, TrowfsVersion: Version}
	if mi.WriteMode == "" {
		mi.WriteMode = trowfs.WritePassthrough
	}
	if s.fuse != nil {
		mi.Passthrough = s.fuse.Passthrough()
	}
	if runs := s.t.Runs(); len(runs) > 0 {
		v := runs[len(runs)-1].View()
		mi.LastVerify = &v
	}
	return mi
}

func (s *Server) startAPI() error {
	l, err := api.Listen(s.cfg.Listen)
	if err != nil {
		return err
	}
	s.api = api.New(backend{s}, api.Options{Token: s.cfg.APIToken, Logger: s.log})
	go func() {
		if err := s.api.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) && err.Error() != "http: Server closed" {
			s.log.Error("HTTP endpoint stopped", "err", err)
		}
	}()
	s.log.Info("HTTP endpoint listening", "addr", l.Addr().String())
	return nil
}
