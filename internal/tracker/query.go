package tracker

import (
	"github.com/trowfs/trowfs/hashtree"
)

// StatusAmbiguous is the status InodeState reports for a file whose names are in different states
// (a blob hard-linked under a name its content does not match, an excluded name linked to a
// tracked one). It never appears in the tree or in .state, which are per name.
const StatusAmbiguous = "ambiguous"

// NameState returns the digest and status .state reports for rel ("" = root): a file's own, a
// directory's subtree's. ok is false when the tree has no such path.
func (t *Tracker) NameState(rel string) (digest, status string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nameStateLocked(rel)
}

func (t *Tracker) nameStateLocked(rel string) (digest, status string, ok bool) {
	s, ok := t.tree.Summary(rel)
	if !ok {
		return "", "", false
	}
	return s.Digest.String(), subtreeStatusName(&s), true
}

// InodeState is NameState over every name the tracker knows for the file at rel (rel and its hard
// links). When all names agree it is their state. When they differ, status is StatusAmbiguous and
// digest is the common digest, or "" when the digests differ too.
func (t *Tracker) InodeState(rel string) (digest, status string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	digest, status, ok = t.nameStateLocked(rel)
	if !ok {
		return "", "", false
	}
	for _, p := range t.otherNamesLocked(rel) {
		d, s, ok := t.nameStateLocked(p)
		if !ok {
			continue
		}
		if s != status {
			status = StatusAmbiguous
		}
		if d != digest {
			digest = ""
		}
	}
	return digest, status, true
}

// LinkNames returns the other names the tracker knows for the file at rel: the hard links the
// tree still gives the same inode. It is empty for a directory, a symlink or a file with one name.
func (t *Tracker) LinkNames(rel string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.otherNamesLocked(rel)
}

func (t *Tracker) otherNamesLocked(rel string) []string {
	e, ok := t.tree.Get(rel)
	if !ok || e.Kind != hashtree.KindFile {
		return nil
	}
	var names []string
	for _, p := range t.namesLocked(e.Meta.Ino) {
		if p != rel {
			names = append(names, p)
		}
	}
	return names
}

// FileNames returns the names the tracker knows for the hard-linked file with inode number ino
// (sorted): the names the tree still gives that inode. It is empty for a settled file the
// tracker never saw with more than one link; a file with one name that is open for writing or
// waits for its hash has that name here too (the ledger names every file in flight), which the
// mount's retry on ENOENT (fs onName) treats as one name: it tries it once, then gives ENOENT.
func (t *Tracker) FileNames(ino uint64) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.namesLocked(ino)
}
