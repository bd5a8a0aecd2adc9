package peers

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/trowfs/trowfs/peers/crdt"
)

// Store keeps the persisted peer state (DATA/.trowfs/peers/state). Load returns os.ErrNotExist
// when nothing was saved yet. It is an interface so that the beneath-DATA, no-follow file helper
// can replace FileStore.
type Store interface {
	Load() ([]byte, error)
	Save(b []byte) error
}

// FileStore writes a file atomically: a temporary file in the same directory, fsynced, renamed
// over the old one, then the directory fsynced.
type FileStore struct{ Path string }

func (f FileStore) Load() ([]byte, error) { return os.ReadFile(f.Path) }

func (f FileStore) Save(b []byte) error {
	dir := filepath.Dir(f.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// The persisted file: "TRPS", version 2, last full sync (Unix ms, 8 bytes big endian), the clock
// (wall 8, logical 4), the purge horizon (Unix ms, 8), the SHA-256 of those 33 bytes (a flipped
// bit in a clock or a time must not pass: it would move the clock or trigger a Forget), then
// crdt's own encoding of the state (versioned and checksummed by crdt). Version 1, without the
// horizon and the header's checksum, is still read.
var (
	persistMagic   = []byte("TRPS\x02")
	persistMagicV1 = []byte("TRPS\x01")
)

func (n *Node) persist() error {
	if n.opts.Store == nil {
		return nil
	}
	n.mu.Lock()
	if !n.dirty {
		n.mu.Unlock()
		return nil
	}
	st, err := n.rep.MarshalBinary()
	c := n.rep.Clock()
	b := append([]byte{}, persistMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(n.lastFull.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Wall))
	b = binary.BigEndian.AppendUint32(b, c.Logical)
	b = binary.BigEndian.AppendUint64(b, uint64(n.rep.Horizon()))
	sum := sha256.Sum256(b)
	b = append(b, sum[:]...)
	n.dirty = false
	n.mu.Unlock()
	if err == nil {
		err = n.opts.Store.Save(append(b, st...))
	}
	if err != nil {
		n.mu.Lock()
		n.dirty = true
		n.mu.Unlock()
	}
	return err
}

// load reads the persisted state; a node away longer than the grace period forgets what it had
// before that (its stale adds must not resurrect purged deletes) and resyncs before applying.
func (n *Node) load() error {
	if n.opts.Store == nil {
		return nil
	}
	b, err := n.opts.Store.Load()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("peer state: %w", err)
	}
	h := len(persistMagic) + 28 + sha256.Size
	switch {
	case len(b) >= h && bytes.HasPrefix(b, persistMagic):
		if sum := sha256.Sum256(b[:h-sha256.Size]); !bytes.Equal(sum[:], b[h-sha256.Size:h]) {
			return fmt.Errorf("peer state: header checksum mismatch (the file is damaged)")
		}
	case len(b) >= len(persistMagicV1)+20 && bytes.HasPrefix(b, persistMagicV1):
		h = len(persistMagicV1) + 20
	default:
		return fmt.Errorf("peer state: not a trowfs peer state file (or another version)")
	}
	p := b[len(persistMagic):]
	lastFull := int64(binary.BigEndian.Uint64(p[0:8]))
	clock := crdt.Stamp{Wall: int64(binary.BigEndian.Uint64(p[8:16])), Logical: binary.BigEndian.Uint32(p[16:20])}
	if err := n.rep.UnmarshalBinary(b[h:]); err != nil {
		return fmt.Errorf("peer state: %w", err)
	}
	if h > len(persistMagicV1)+20 {
		n.rep.SetHorizon(int64(binary.BigEndian.Uint64(p[20:28])))
	}
	n.rep.ObserveClock(clock)
	if lastFull > 0 {
		n.lastFull = timeMs(lastFull)
	}
	if lastFull > 0 && n.now().Sub(n.lastFull) > n.set.TombstoneGrace {
		cut := crdt.Stamp{Wall: n.now().Add(-n.set.TombstoneGrace).UnixMilli()}
		k := n.rep.Forget(cut)
		n.resyncing, n.dirty = true, true
		n.log.Warn("this node was out of sync longer than the tombstone grace period: forgot what it had before then and resyncs before applying",
			"last_full_sync", n.lastFull, "grace", n.set.TombstoneGrace, "forgotten", k)
	}
	return nil
}
