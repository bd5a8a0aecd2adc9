package fs_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"pgregory.net/rapid"

	trowfs "github.com/trowfs/trowfs/fs"
	"github.com/trowfs/trowfs/fs/fstest"
)

// The universe the random operations draw from: few names, so operations collide often.
var (
	propDirs  = []string{"", "d1", "d2", "d1/d3", "up"}
	propFiles = []string{"f1", "f2", "f3", "sha256:ab"}
)

func propPath(t *rapid.T, label string) string {
	d := rapid.SampledFrom(propDirs).Draw(t, label+"_dir")
	f := rapid.SampledFrom(propFiles).Draw(t, label+"_file")
	return filepath.Join(d, f)
}

// TestTreeEqualsRescanProperty drives random operations through a real mount (writes at random
// offsets, appends, truncates, renames of files and directories, links, unlinks, mkdir, rmdir,
// symlinks, files held open across renames), then checks that the tree kept inline equals a
// from-scratch rescan, and again after an unmount and a remount from the snapshot.
func TestTreeEqualsRescanProperty(t *testing.T) {
	fstest.Require(t)
	checks := 0
	rapid.Check(t, func(rt *rapid.T) {
		checks++
		mode := rapid.SampledFrom([]string{trowfs.WritePassthrough, trowfs.WriteDaemon}).Draw(rt, "mode")
		e := fstest.Mount(t, fstest.Options{WriteMode: mode, Exclude: []string{"up/**"}})
		var open []*os.File
		defer func() {
			for _, f := range open {
				f.Close()
			}
			e.Stop()
		}()
		m := func(p string) string { return filepath.Join(e.Mnt, p) }
		n := rapid.IntRange(1, 40).Draw(rt, "ops")
		for i := 0; i < n; i++ {
			switch op := rapid.IntRange(0, 11).Draw(rt, "op"); op {
			case 0, 1: // write at a random offset
				p := propPath(rt, "w")
				off := rapid.Int64Range(0, 70000).Draw(rt, "off")
				size := rapid.IntRange(0, 50000).Draw(rt, "size")
				if f, err := os.OpenFile(m(p), os.O_RDWR|os.O_CREATE, 0o644); err == nil {
					buf := make([]byte, size)
					for j := range buf {
						buf[j] = byte(j*31 + i)
					}
					f.WriteAt(buf, off)
					f.Close()
				}
			case 2: // append
				p := propPath(rt, "a")
				if f, err := os.OpenFile(m(p), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
					fmt.Fprintf(f, "line %d\n", i)
					f.Close()
				}
			case 3:
				os.Truncate(m(propPath(rt, "t")), rapid.Int64Range(0, 80000).Draw(rt, "len"))
			case 4:
				os.Rename(m(propPath(rt, "rf")), m(propPath(rt, "rt")))
			case 5:
				os.Rename(m(rapid.SampledFrom(propDirs[1:]).Draw(rt, "rd1")), m(rapid.SampledFrom(propDirs[1:]).Draw(rt, "rd2")))
			case 6:
				os.Link(m(propPath(rt, "lf")), m(propPath(rt, "lt")))
			case 7:
				os.Remove(m(propPath(rt, "u")))
			case 8:
				os.Mkdir(m(rapid.SampledFrom(propDirs[1:]).Draw(rt, "mk")), 0o755)
			case 9:
				os.Remove(m(rapid.SampledFrom(propDirs[1:]).Draw(rt, "rm")))
			case 10:
				os.Symlink(rapid.SampledFrom([]string{"f1", "../d2", "/etc/passwd"}).Draw(rt, "target"), m(propPath(rt, "s")))
			case 11: // keep a writer open across later operations
				if f, err := os.OpenFile(m(propPath(rt, "o")), os.O_RDWR|os.O_CREATE, 0o644); err == nil {
					f.WriteAt([]byte("held open"), rapid.Int64Range(0, 100).Draw(rt, "ooff"))
					open = append(open, f)
				}
			}
		}
		for _, f := range open {
			f.Write([]byte("+closing"))
			f.Close()
		}
		open = nil
		if d := e.RescanDiff(); len(d) > 0 {
			rt.Fatalf("after the operations:\n%s", strings.Join(d, "\n"))
		}
		e.Stop()
		if rapid.Bool().Draw(rt, "offline_change") {
			os.WriteFile(filepath.Join(e.Data, "offline"), []byte(fmt.Sprint(checks)), 0o644)
		}
		e.Start()
		if d := e.RescanDiff(); len(d) > 0 {
			rt.Fatalf("after a remount:\n%s", strings.Join(d, "\n"))
		}
	})
}

// TestConcurrentWritersAndRenames has many goroutines create, write, rename and remove files at
// once (run it with -race); the tree must equal a rescan afterwards.
func TestConcurrentWritersAndRenames(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode, Exclude: []string{"uploads/**"}})
		for _, d := range []string{"uploads", "blobs", "shared"} {
			if err := os.Mkdir(filepath.Join(e.Mnt, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(g), 7))
				for i := 0; i < 60; i++ {
					up := filepath.Join(e.Mnt, "uploads", fmt.Sprintf("u-%d-%d", g, i))
					buf := make([]byte, r.IntN(200<<10))
					for j := range buf {
						buf[j] = byte(r.Uint32())
					}
					if err := os.WriteFile(up, buf, 0o644); err != nil {
						t.Error(err)
						return
					}
					dst := filepath.Join(e.Mnt, "blobs", fmt.Sprintf("b-%d", r.IntN(40)))
					if err := os.Rename(up, dst); err != nil {
						t.Error(err)
						return
					}
					sh := filepath.Join(e.Mnt, "shared", fmt.Sprintf("s-%d", r.IntN(10)))
					switch r.IntN(4) {
					case 0:
						os.WriteFile(sh, buf[:len(buf)/3], 0o644)
					case 1:
						os.Remove(sh)
					case 2:
						os.Rename(sh, filepath.Join(e.Mnt, "shared", fmt.Sprintf("s-%d", r.IntN(10))))
					case 3:
						if f, err := os.OpenFile(sh, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
							f.Write(buf[:100])
							f.Close()
						}
					}
				}
			}(g)
		}
		wg.Wait()
		e.AssertMatchesRescan()
	})
}
