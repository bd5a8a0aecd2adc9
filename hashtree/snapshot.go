package hashtree

import "io"

// WriteSnapshot is not yet implemented.
func WriteSnapshot(w io.Writer, t *Tree, meta map[string]string) error {
	return ErrSnapshotVersion
}

// ReadSnapshot is not yet implemented.
func ReadSnapshot(r io.Reader) (*Tree, map[string]string, error) {
	return nil, nil, ErrSnapshotVersion
}
