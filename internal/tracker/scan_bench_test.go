package tracker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkRescanSmallFiles scans and hashes TROWFS_BENCH_FILES (default 20,000) small files in
// directories of 500, the shape of a registry's blob store.
func BenchmarkRescanSmallFiles(b *testing.B) {
	n := 20000
	if s := os.Getenv("TROWFS_BENCH_FILES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	data := b.TempDir()
	for i := 0; i < n; i++ {
		dir := filepath.Join(data, "blobs", fmt.Sprintf("d%03d", i/500))
		if i%500 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%07d", i)), []byte(strconv.Itoa(i)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr, err := Rescan(context.Background(), data, ScanOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if s, _ := tr.Summary(""); s.Files != int64(n) {
			b.Fatalf("%d files, want %d", s.Files, n)
		}
	}
}
