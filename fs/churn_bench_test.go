package fs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
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

// The two small-file rows of `make bench` (bench/smallfiles.go), in-process so that a CPU profile
// covers the daemon's side: creating empty files into one directory, and the 4 KiB upload cycle
// (create, write, close, rename to a new name, unlink).
func BenchmarkSmallFileCreateAndCycle(b *testing.B) {
	data := make([]byte, 4096)
	b.Run("create", func(b *testing.B) {
		e := fstest.Mount(b, fstest.Options{})
		b.ResetTimer()
		for i := range b.N {
			fd, err := syscall.Open(filepath.Join(e.Mnt, fmt.Sprintf("f%d", i)), syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			syscall.Close(fd)
		}
	})
	b.Run("cycle", func(b *testing.B) {
		e := fstest.Mount(b, fstest.Options{})
		b.ResetTimer()
		for i := range b.N {
			tmp := filepath.Join(e.Mnt, fmt.Sprintf("tmp%d", i))
			fd, err := syscall.Open(tmp, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := syscall.Write(fd, data); err != nil {
				b.Fatal(err)
			}
			syscall.Close(fd)
			dst := filepath.Join(e.Mnt, fmt.Sprintf("f%d", i))
			if err := syscall.Rename(tmp, dst); err != nil {
				b.Fatal(err)
			}
			if err := syscall.Unlink(dst); err != nil {
				b.Fatal(err)
			}
		}
	})
}
