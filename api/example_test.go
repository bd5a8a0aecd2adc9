package api_test

import (
	"os"

	"github.com/trowfs/trowfs/api"
)

func ExampleWriteMetrics() {
	_ = api.WriteMetrics(os.Stdout, []api.Metric{
		{Name: "trowfs_ops_total", Help: "Filesystem operations seen by the mount.", Type: api.TypeCounter,
			Labels: map[string]string{"op": "write"}, Value: 42},
		{Name: "trowfs_ops_total", Help: "Filesystem operations seen by the mount.", Type: api.TypeCounter,
			Labels: map[string]string{"op": "rename"}, Value: 7},
		{Name: "trowfs_files", Help: "Files by status.", Type: api.TypeGauge,
			Labels: map[string]string{"status": `odd "one"`}, Value: 1},
	})
	// Output:
	// # HELP trowfs_files Files by status.
	// # TYPE trowfs_files gauge
	// trowfs_files{status="odd \"one\""} 1
	// # HELP trowfs_ops_total Filesystem operations seen by the mount.
	// # TYPE trowfs_ops_total counter
	// trowfs_ops_total{op="rename"} 7
	// trowfs_ops_total{op="write"} 42
}

func ExampleCleanPath() {
	for _, p := range []string{"/blobs/sha256/", "blobs//sha256/./ab", "blobs/../../etc"} {
		clean, err := api.CleanPath(p)
		if err != nil {
			os.Stdout.WriteString("refused: " + err.Error() + "\n")
			continue
		}
		os.Stdout.WriteString("\"" + clean + "\"\n")
	}
	// Output:
	// "blobs/sha256"
	// "blobs/sha256/ab"
	// refused: path "blobs/../../etc": contains a ".." element
}
