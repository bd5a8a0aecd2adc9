package fs

import (
	"errors"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// toErrno converts an error to the errno returned to the kernel, in one place: go-fuse's ToErrno
// does not unwrap wrapped errors (they would become ENOSYS).
func toErrno(err error) syscall.Errno {
	if err == nil {
		return gofs.OK
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return gofs.ToErrno(err)
}
