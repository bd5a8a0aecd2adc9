package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/demo"
	"github.com/trowfs/trowfs/internal/server"
)

// Names are attacker-controlled (pushed repositories and tags, files dropped into DATA): none
// may become a label value, and the number of series must not grow with the number of names.
func TestMetricsSeriesDoNotGrowWithNames(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := demo.Generate(data); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	s := start(t, server.Config{Data: data, Listen: "unix:" + sock, WriteMode: "daemon"})
	get := unixClient(t, sock)
	get2 := func(p string) (int, []byte) { c, _, b := get(p); return c, b }
	mnt := s.Mountpoint()

	series := func() (int, []string) {
		_, mfs := families(t, get2)
		n := 0
		var values []string
		for name, mf := range mfs {
			if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
				continue
			}
			for _, m := range mf.GetMetric() {
				n++
				for _, l := range m.GetLabel() {
					values = append(values, l.GetValue())
				}
			}
		}
		return n, values
	}
	hostile := func(from, to int) {
		for i := from; i < to; i++ {
			d := filepath.Join(mnt, fmt.Sprintf("repo-%d-<script>", i))
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(d, fmt.Sprintf(`tag-%d"}evil{x="`, i))
			if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(f, f+"-moved"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("nowhere", filepath.Join(d, "link")); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(20 * time.Second)
		for s.Tracker().Stats().Pending > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	hostile(0, 20)
	few, values := series()
	hostile(20, 400)
	many, values2 := series()
	if many != few {
		t.Errorf("%d series after 20 hostile names, %d after 400: the series grow with the names", few, many)
	}
	for _, v := range append(values, values2...) {
		if strings.Contains(v, "repo-") || strings.Contains(v, "tag-") || strings.Contains(v, "evil") {
			t.Errorf("a name became a label value: %q", v)
		}
	}
	if many > 200 {
		t.Errorf("%d trowfs series, want a bounded handful", many)
	}
	t.Logf("%d trowfs series", many)
}
