package trowreplay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoLoop says the machine cannot make a loop-mounted ext4 (tools or loop devices missing).
var ErrNoLoop = errors.New("no loop-mounted ext4 here")

// LoopFS is a small ext4 filesystem on a loop device, mounted at Dir. It lets a test change a
// file's bytes on the device underneath the filesystem, which changes neither its size, mtime,
// ctime nor inode: the only way to simulate real bit rot.
type LoopFS struct {
	Dir    string
	Device string
	image  string
}

const loopBlockSize = 4096

// NewLoopFS makes an ext4 image of size bytes in dir, attaches it and mounts it at dir/mnt.
func NewLoopFS(dir string, size int64) (*LoopFS, error) {
	for _, tool := range []string{"mkfs.ext4", "losetup", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: %s not installed", ErrNoLoop, tool)
		}
	}
	l := &LoopFS{Dir: filepath.Join(dir, "mnt"), image: filepath.Join(dir, "ext4.img")}
	if err := os.WriteFile(l.image, nil, 0o600); err != nil {
		return nil, err
	}
	if err := os.Truncate(l.image, size); err != nil {
		return nil, err
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", strconv.Itoa(loopBlockSize), "-E", "lazy_itable_init=0,lazy_journal_init=0", l.image).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkfs.ext4: %v: %s", err, out)
	}
	out, err := exec.Command("losetup", "--find", "--show", l.image).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%w: losetup: %v: %s", ErrNoLoop, err, out)
	}
	l.Device = strings.TrimSpace(string(out))
	if err := os.Mkdir(l.Dir, 0o755); err != nil {
		l.detach()
		return nil, err
	}
	if err := unix.Mount(l.Device, l.Dir, "ext4", 0, ""); err != nil {
		l.detach()
		return nil, fmt.Errorf("%w: mount %s: %v", ErrNoLoop, l.Device, err)
	}
	return l, nil
}

func (l *LoopFS) detach() {
	if l.Device != "" {
		_ = exec.Command("losetup", "-d", l.Device).Run()
		l.Device = ""
	}
}

// Close unmounts the filesystem and detaches the loop device.
func (l *LoopFS) Close() error {
	var err error
	if l.Device != "" {
		err = unix.Unmount(l.Dir, 0)
		if err != nil {
			err = unix.Unmount(l.Dir, unix.MNT_DETACH)
		}
	}
	l.detach()
	return err
}

// FlipBit flips bit 0x10 of the byte at off in the file at path (inside Dir) by writing the
// device directly, then drops the file's cached pages so the next read sees the device. It
// returns an error when the change did not become visible through the filesystem.
func (l *LoopFS) FlipBit(path string, off int64) error {
	if err := syncFS(l.Dir); err != nil {
		return err
	}
	rel, err := filepath.Rel(l.Dir, path)
	if err != nil {
		return err
	}
	out, err := exec.Command("debugfs", "-R", "blocks /"+filepath.ToSlash(rel), l.Device).Output()
	if err != nil {
		return fmt.Errorf("debugfs blocks: %w", err)
	}
	fields := strings.Fields(string(out))
	idx := int(off / loopBlockSize)
	if idx >= len(fields) {
		return fmt.Errorf("debugfs lists %d blocks for %s, need block %d", len(fields), rel, idx)
	}
	blk, err := strconv.ParseInt(fields[idx], 10, 64)
	if err != nil {
		return fmt.Errorf("debugfs block %q: %w", fields[idx], err)
	}
	// O_DIRECT needs an aligned buffer: an anonymous mapping is page aligned.
	buf, err := unix.Mmap(-1, 0, loopBlockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(buf)
	fd, err := unix.Open(l.Device, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	dev := &rawFile{fd: fd}
	defer dev.Close()
	if n, err := unix.Pread(fd, buf, blk*loopBlockSize); err != nil || n != loopBlockSize {
		return fmt.Errorf("read device block %d: %d bytes, %v", blk, n, err)
	}
	i := off % loopBlockSize
	buf[i] ^= 0x10
	want := buf[i]
	if n, err := unix.Pwrite(fd, buf, blk*loopBlockSize); err != nil || n != loopBlockSize {
		return fmt.Errorf("write device block %d: %d bytes, %v", blk, n, err)
	}
	if err := dev.Close(); err != nil {
		return err
	}
	// Drop the file's clean cached pages.
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return err
	}
	got := make([]byte, 1)
	if _, err := f.ReadAt(got, off); err != nil {
		return err
	}
	if !bytes.Equal(got, []byte{want}) {
		return fmt.Errorf("the flipped bit is not visible through the filesystem (page cache not dropped)")
	}
	return nil
}

func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}
