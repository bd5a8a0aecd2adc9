package fs

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/internal/tracker"
)

// Write modes.
const (
	// WritePassthrough lets the kernel write straight to the backing file; the file is hashed
	// from the backing file when its last writer closes it. The default: measured fastest.
	WritePassthrough = "passthrough"
	// WriteDaemon sends writes through the daemon, which hashes sequential writes as they pass.
	WriteDaemon = "daemon"
)

// Options configures a mount.
type Options struct {
	WriteMode string    // WritePassthrough (default) or WriteDaemon
	State     StateFunc // renders .state documents
	// Timeouts for kernel caching of entries and attributes. Every change goes through the
	// mount, so they can be long.
	EntryTimeout, AttrTimeout, NegativeTimeout time.Duration
	AllowOther                                 bool // default true via DefaultOptions
	// ListState makes readdir list the virtual .state files (off by default: a registry walking
	// its directories must see exactly the backing directory).
	ListState bool
	Debug     bool
	FsName    string
	// Refuse, if set, fails opens for reading of the paths it names with EIO (fs/mismatch.go).
	Refuse Refuser
	// HandleCache is how many descriptors of file handles the mount keeps open for nodes whose
	// name went away (fs/handle.go); 0 for DefaultHandleCache.
	HandleCache int
	// NoFileHandles makes such nodes keep a descriptor each, as where DATA refuses file
	// handles (for tests of that fallback).
	NoFileHandles bool
	// Logger receives the mount's few log lines; nil for slog.Default().
	Logger *slog.Logger
}

// DefaultOptions are the options `trowfs mount` starts from.
func DefaultOptions() Options {
	return Options{WriteMode: WritePassthrough, EntryTimeout: 60 * time.Second, AttrTimeout: 60 * time.Second,
		NegativeTimeout: 5 * time.Second, AllowOther: true}
}

// mountState is shared by every node of one mount.
type mountState struct {
	t    *tracker.Tracker
	root *gofs.LoopbackRoot
	// data is DATA's absolute path and dataFd an O_PATH descriptor of it, which every backing
	// operation is relative to (backing.go); dataDir owns the descriptor and closes it once the
	// mount's nodes are gone.
	data    string
	dataFd  int
	dataDir *os.File
	root0   bool // the daemon runs as root: new objects get the caller's owner
	// perName gives each name of a multiply-linked file its own node (Node.ownNode). Set once
	// the kernel accepted passthrough, right after the mount; atomic because lookups may race it.
	perName atomic.Bool
	// nameGens numbers the generations of per-name nodes (Node.ownNode), so no two collide.
	nameGens    atomic.Uint64
	state       StateFunc
	passthrough bool
	listState   bool
	refuse      Refuser // Options.Refuse, or nil
	// handles is the cache of file handles that nodes whose name went away keep (fs/handle.go);
	// nil where DATA refuses them, and such nodes keep descriptors.
	handles       *handleCache
	handleRefused sync.Once // logs the first object that has no handle
	log           *slog.Logger
}

func (m *mountState) newNode() *Node {
	return &Node{LoopbackNode: gofs.LoopbackNode{RootData: m.root}, m: m}
}

// Server is a running mount.
type Server struct {
	*fuse.Server
	mnt         string
	passthrough bool
	root        *Node // for Invalidate
	// inval passes the tracker's findings of changes behind the mount to the kernel (dircache.go).
	inval     *invalQueue
	unmounted atomic.Bool
}

// Passthrough reports whether the kernel accepted FUSE passthrough (reads, and writes in the
// default write mode, bypass the daemon).
func (s *Server) Passthrough() bool { return s.passthrough }

// Mountpoint returns where the filesystem is mounted.
func (s *Server) Mountpoint() string { return s.mnt }

// NewRoot builds the root node of a trowfs filesystem over data.
func NewRoot(data string, t *tracker.Tracker, opts Options) (gofs.InodeEmbedder, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(data, &st); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	abs, err := filepath.Abs(data)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	fd, err := unix.Open(abs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if opts.State == nil {
		opts.State = func(rel string) ([]byte, time.Time, error) { return nil, time.Time{}, os.ErrNotExist }
	}
	ms := &mountState{t: t, state: opts.State, passthrough: opts.WriteMode != WriteDaemon, listState: opts.ListState, refuse: opts.Refuse}
	lr := &gofs.LoopbackRoot{Path: data, Dev: uint64(st.Dev)}
	ms.root = lr
	ms.data, ms.dataFd, ms.dataDir, ms.root0 = abs, fd, os.NewFile(uintptr(fd), abs), os.Geteuid() == 0
	ms.setupHandles(opts)
	lr.NewNode = func(r *gofs.LoopbackRoot, parent *gofs.Inode, name string, st *syscall.Stat_t) gofs.InodeEmbedder {
		return ms.newNode()
	}
	root := lr.NewNode(lr, nil, "", &st)
	lr.RootNode = root
	return root, nil
}

// Mount mounts a trowfs filesystem of data on mnt. It returns once the kernel serves the mount.
func Mount(data, mnt string, t *tracker.Tracker, opts Options) (*Server, error) {
	if opts.WriteMode != WritePassthrough && opts.WriteMode != WriteDaemon && opts.WriteMode != "" {
		return nil, fmt.Errorf("unknown write mode %q (want %s or %s)", opts.WriteMode, WritePassthrough, WriteDaemon)
	}
	root, err := NewRoot(data, t, opts)
	if err != nil {
		return nil, err
	}
	fsName := opts.FsName
	if fsName == "" {
		fsName = data
	}
	mo := fuse.MountOptions{
		AllowOther:  opts.AllowOther && os.Geteuid() == 0,
		Name:        "trowfs",
		FsName:      fsName,
		DirectMount: os.Geteuid() == 0,
		MaxWrite:    1 << 20,
		Debug:       opts.Debug,
	}
	if os.Geteuid() == 0 {
		// The kernel checks permissions, so an unprivileged registry gets exactly what the
		// backing directory's modes allow.
		mo.Options = append(mo.Options, "default_permissions")
	}
	if opts.WriteMode == WriteDaemon {
		// The kernel fails mixed passthrough and daemon opens of one inode: none at all then.
		mo.DisabledCapabilities |= fuse.CAP_PASSTHROUGH
	}
	et, at, nt := opts.EntryTimeout, opts.AttrTimeout, opts.NegativeTimeout
	fo := &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &et,
		AttrTimeout:     &at,
		NegativeTimeout: &nt,
		NullPermissions: true,
	}
	srv, err := gofs.Mount(mnt, root, fo)
	if err != nil {
		return nil, fmt.Errorf("mount %s on %s: %w", data, mnt, err)
	}
	s := &Server{Server: srv, mnt: mnt, root: root.(*Node)}
	s.passthrough = opts.WriteMode != WriteDaemon && srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0
	root.(*Node).m.perName.Store(s.passthrough)
	s.inval = newInvalQueue(s.invalidate)
	remove := t.SetBehindHook(s.inval.add)
	go func() {
		// Unmounted: nothing is cached any more, and the connection must not be written to.
		srv.Wait()
		s.unmounted.Store(true)
		remove()
	}()
	return s, nil
}
