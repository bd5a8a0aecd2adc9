package api

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestImportBoundary keeps the package independent of the rest of trowfs:
// it reaches the mount only through Backend.
func TestImportBoundary(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/trowfs/trowfs/") || strings.Contains(p, "go-fuse") {
				t.Errorf("%s imports %s: the api package must talk to trowfs only through Backend", name, p)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no Go files checked")
	}
}
