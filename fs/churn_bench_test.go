package fs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/trowfs/trowfs/fs/fstest"
)

// Small-file churn through the mount, the metadata path every registry push takes: create and
// write 4 KiB, then rename it over a name the kernel knows (a re-pushed blob) or unlink it. Each
// of these takes a name from a node the kernel holds, so it pays for keeping the node's object.
func BenchmarkSmallFileChurn(b *testing.B) {
	data := make([]byte, 4096)
	for _, op := range []string{"rename-over", "unlink"} {
		b.Run(op, func(b *testing.B) {
			e := fstest.Mount(b, fstest.Options{})
			target := filepath.Join(e.Mnt, "T")
			if err := os.WriteFile(target, data, 0o644); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				tmp := filepath.Join(e.Mnt, fmt.Sprintf("tmp.%d", i))
				if err := os.WriteFile(tmp, data, 0o644); err != nil {
					b.Fatal(err)
				}
				var err error
				if op == "rename-over" {
					err = os.Rename(tmp, target)
				} else {
					err = os.Remove(tmp)
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := os.Stat(target); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
