package oci

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/trowfs/trowfs/registry"
)

type dbOnlySource struct{ db string }

func (s dbOnlySource) ReadFile(rel string) ([]byte, error) { return nil, os.ErrNotExist }
func (s dbOnlySource) DBPath() string                      { return s.db }

// TestReviewUnreadableTrowDBIsNotAnEmptyRegistry: a trow-sqlite model whose trow.db could not be
// read (never loaded: a damaged file, a read that failed at start-up) has an empty Catalog. The
// view must say it cannot tell, not hand the node an empty registry: observed, that empty View
// stamps a delete of every manifest and tag the node last saw, and every peer applies them.
func TestReviewUnreadableTrowDBIsNotAnEmptyRegistry(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "trow.db")
	if err := os.WriteFile(db, []byte("not a sqlite database, whatever its name says"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := registry.New(registry.TrowSQLite, dbOnlySource{db}, registry.Options{})
	r.Reset([]registry.FileInfo{{Path: "trow.db", Size: 44}})
	if v, err := NewViewSource(r).View(); err == nil {
		t.Fatalf("an unreadable trow.db gave the view %v and no error", v)
	}
	if v, err := NewViewSourceFunc(func() *registry.Registry { return r }).View(); err == nil {
		t.Fatalf("an unreadable trow.db gave the view %v and no error", v)
	}
	// An empty registry of another layout is a real, empty View.
	e := registry.New(registry.Distribution, dbOnlySource{}, registry.Options{})
	e.Reset(nil)
	if v, err := NewViewSource(e).View(); err != nil || len(v) != 0 {
		t.Fatalf("an empty distribution registry: %v, %v", v, err)
	}
}
