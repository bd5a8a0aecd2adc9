package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// tokenFileBadBits are the permission bits refused on --api-token-file, as ssh refuses a
// private key others can read: readable by others, or writable by group or others.
const tokenFileBadBits = 0o026

// readTokenFile reads the bearer token of --api-token-file. A file others can read (or that
// group or others can write), an unreadable one and one holding only white space are refused
// with exit 2: the endpoint never starts with a token that is not secret or not there.
func readTokenFile(path string) (string, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, and the mount
	// would hang before it starts; the check below then refuses it. O_NOCTTY: a terminal given
	// here must not become the controlling one. Neither changes how a regular file reads.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return "", &exitError{ExitUsage, "--api-token-file: " + err.Error()}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", &exitError{ExitUsage, "--api-token-file: " + err.Error()}
	}
	if !st.Mode().IsRegular() {
		return "", &exitError{ExitUsage, fmt.Sprintf("--api-token-file %s is not a regular file", path)}
	}
	if perm := st.Mode().Perm(); perm&tokenFileBadBits != 0 {
		return "", &exitError{ExitUsage, fmt.Sprintf("--api-token-file %s has mode %04o: others may read or change the token; run chmod 600 %s", path, perm, path)}
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", &exitError{ExitUsage, "--api-token-file: " + err.Error()}
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", &exitError{ExitUsage, fmt.Sprintf("--api-token-file %s is empty (or only white space)", path)}
	}
	return token, nil
}
