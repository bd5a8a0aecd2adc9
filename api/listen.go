package api

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// UnixPrefix introduces a unix socket address in [Listen]: "unix:/run/trowfs.sock".
const UnixPrefix = "unix:"

// ListenError reports an address Listen refuses or cannot bind.
type ListenError struct {
	Addr   string
	Reason string
	Err    error // underlying error, if any
}

func (e *ListenError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("listen %q: %s: %v", e.Addr, e.Reason, e.Err)
	}
	return fmt.Sprintf("listen %q: %s", e.Addr, e.Reason)
}

func (e *ListenError) Unwrap() error { return e.Err }

// ErrNotLoopback is wrapped by the *ListenError returned for a TCP address
// that is not a loopback address while non-loopback addresses are refused.
var ErrNotLoopback = errors.New("not a loopback address")

// ListenConfig chooses what Listen accepts.
type ListenConfig struct {
	// AllowNonLoopback permits TCP addresses other than loopback ones (the
	// endpoint is then reachable from the network: set a token, put TLS in
	// front, and list the served host names in Options.AllowedHosts). It is
	// for programs embedding this package: trowfs itself never sets it, and
	// no command line flag does. Default: refuse.
	AllowNonLoopback bool
}

// Listen is ListenConfig{}.Listen: loopback TCP addresses and unix sockets only.
func Listen(addr string) (net.Listener, error) {
	return ListenConfig{}.Listen(addr)
}

// Listen opens the endpoint's listener. Accepted addresses:
//
//	127.0.0.1:PORT, [::1]:PORT (any address in 127.0.0.0/8 or ::1)
//	localhost:PORT            (bound to 127.0.0.1, never resolved)
//	unix:/path/to/sock        (a unix socket, made mode 0600)
//
// PORT may be 0 to pick a free port. Any other TCP address (a host name, an
// empty host meaning all interfaces, a routable address) is refused with a
// *ListenError wrapping ErrNotLoopback unless AllowNonLoopback is set. For a
// unix socket, a stale socket file left by a dead process is removed; a
// socket somebody still listens on, or a path that exists and is not a
// socket, is refused. The socket file is removed when the listener closes.
func (c ListenConfig) Listen(addr string) (net.Listener, error) {
	if p, ok := strings.CutPrefix(addr, UnixPrefix); ok {
		return listenUnix(addr, p)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &ListenError{Addr: addr, Reason: "want HOST:PORT or unix:/path", Err: err}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return nil, &ListenError{Addr: addr, Reason: fmt.Sprintf("bad port %q", port)}
	}
	bindHost := host
	if strings.EqualFold(host, "localhost") {
		// Resolving "localhost" could yield a routable address through a
		// hostile /etc/hosts or resolver; pin it.
		bindHost = "127.0.0.1"
	} else if !c.AllowNonLoopback {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			reason := fmt.Sprintf("host %q is not an IP address", host)
			if host == "" {
				reason = "an empty host listens on every interface"
			}
			return nil, &ListenError{Addr: addr, Reason: reason + " (the endpoint listens only on 127.0.0.1, [::1], localhost or unix:/path)",
				Err: ErrNotLoopback}
		}
		if !ip.Unmap().IsLoopback() {
			return nil, &ListenError{Addr: addr, Reason: fmt.Sprintf("%s is reachable from the network "+
				"(the endpoint listens only on 127.0.0.1, [::1], localhost or unix:/path)", ip),
				Err: ErrNotLoopback}
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(bindHost, port))
	if err != nil {
		return nil, &ListenError{Addr: addr, Reason: "cannot bind", Err: err}
	}
	return l, nil
}

func listenUnix(addr, path string) (net.Listener, error) {
	if path == "" {
		return nil, &ListenError{Addr: addr, Reason: "empty socket path"}
	}
	if strings.HasPrefix(path, "@") {
		// Linux abstract sockets have no file permissions: anyone in the
		// network namespace could connect.
		return nil, &ListenError{Addr: addr, Reason: "abstract unix sockets are not supported (no access control)"}
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, &ListenError{Addr: addr, Reason: "socket path in use", Err: err}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, &ListenError{Addr: addr, Reason: "cannot bind", Err: err}
	}
	// Only the owner (and root) may talk to the endpoint. The directory's
	// permissions should already keep others out during the short window
	// between bind and chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, &ListenError{Addr: addr, Reason: "cannot restrict socket permissions", Err: err}
	}
	return l, nil
}

// removeStaleSocket removes path if it is a unix socket nobody listens on.
// It returns nil when path does not exist, and an error when path is not a
// socket or a live process still accepts connections on it.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket (%s); refusing to remove it", path, fi.Mode().Type())
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("another process is listening on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether %s is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
