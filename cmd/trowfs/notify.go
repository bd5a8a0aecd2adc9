package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trowfs/trowfs/internal/server"
)

// notifier speaks systemd's notify protocol (sd_notify(3)): one datagram of newline-separated
// VAR=value assignments per message, sent to the unix datagram socket named by NOTIFY_SOCKET (a
// leading '@' names an abstract socket). Without NOTIFY_SOCKET every method does nothing.
type notifier struct {
	addr     *net.UnixAddr // nil: not run by a service manager that listens
	watchdog time.Duration // WATCHDOG_USEC for this process; 0: no watchdog
	log      *slog.Logger

	mu       sync.Mutex // serialises sends and guards phase
	phase    string     // start-up step being done, repeated with its elapsed time
	detail   string     // how far the step got (the reconcile's counts), shown after it
	since    time.Time
	stopped  atomic.Bool // STOPPING=1 sent
	cancel   context.CancelFunc
	loopDone chan struct{}
}

// newNotifier reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and removes them from the
// environment, so that a command run with --exec does not take them for its own.
func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{log: log}
	sock := os.Getenv("NOTIFY_SOCKET")
	usec := os.Getenv("WATCHDOG_USEC")
	pid := os.Getenv("WATCHDOG_PID")
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		_ = os.Unsetenv(k)
	}
	if sock == "" {
		return n
	}
	if sock[0] != '/' && sock[0] != '@' {
		log.Warn("NOTIFY_SOCKET is neither a path nor an abstract socket name; not notifying", "NOTIFY_SOCKET", sock)
		return n
	}
	n.addr = &net.UnixAddr{Name: sock, Net: "unixgram"} // Go maps a leading '@' to the abstract namespace
	if usec != "" && (pid == "" || pid == strconv.Itoa(os.Getpid())) {
		if us, err := strconv.ParseUint(usec, 10, 63); err == nil && us > 0 {
			n.watchdog = time.Duration(us) * time.Microsecond
		} else {
			log.Warn("WATCHDOG_USEC is not a positive number; no watchdog", "WATCHDOG_USEC", usec)
		}
	}
	return n
}

// send sends one message. Failures are logged, never fatal: the registry must not lose its
// filesystem because the service manager went away.
func (n *notifier) send(msg string) {
	if n.addr == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err == nil {
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Write([]byte(msg))
		conn.Close()
	}
	if err != nil {
		n.log.Warn("could not notify the service manager", "NOTIFY_SOCKET", n.addr.Name, "err", err)
	}
}

// startup begins the start-up status: every step Start reports is sent as STATUS=, and repeated
// every few seconds with its elapsed time while it lasts (a long reconcile shows it is alive).
func (n *notifier) startup() {
	if n.addr == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.loopDone = cancel, make(chan struct{})
	go func() {
		defer close(n.loopDone)
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				n.mu.Lock()
				phase, detail, since := n.phase, n.detail, n.since
				n.mu.Unlock()
				if detail != "" {
					phase += ": " + detail
				}
				if phase != "" {
					n.send(fmt.Sprintf("STATUS=%s (%s)", oneLine(phase), time.Since(since).Round(time.Second)))
				}
			}
		}
	}()
}

// status is server.Config.Status.
func (n *notifier) status(phase string) {
	if n.addr == nil {
		return
	}
	phase = oneLine(phase) // kept so: every later STATUS= built from it stays one line
	n.mu.Lock()
	n.phase, n.detail, n.since = phase, "", time.Now()
	n.mu.Unlock()
	n.send("STATUS=" + oneLine(phase))
}

// oneLine makes s fit in one assignment of a notify datagram: the protocol has no escapes, so a
// line break (in a path, or an error naming a file of DATA) would start an assignment of its
// own (READY=1, MAINPID=...). They become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

// progress is the start-up reconcile's progress (server.Config.LoadProgress): it goes with the
// phase's repeated STATUS= line; the final counts are sent at once.
func (n *notifier) progress(detail string, final bool) {
	if n.addr == nil {
		return
	}
	n.mu.Lock()
	n.detail = detail
	phase, since := n.phase, n.since
	n.mu.Unlock()
	if final {
		n.send(fmt.Sprintf("STATUS=%s: %s (%s)", phase, detail, time.Since(since).Round(time.Second)))
	}
}

func (n *notifier) endLoop() {
	if n.cancel != nil {
		n.cancel()
		<-n.loopDone
		n.cancel = nil
	}
}

// ready sends READY=1 (the mount serves and the snapshot is reconciled: server.Start returned)
// and then keeps STATUS= current and, with WATCHDOG_USEC, pings WATCHDOG=1 at half its interval
// as long as the mount answers.
func (n *notifier) ready(srv *server.Server) {
	if n.addr == nil {
		return
	}
	n.endLoop()
	n.send(fmt.Sprintf("READY=1\nMAINPID=%d\nSTATUS=%s", os.Getpid(), oneLine(serving(srv))))
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.loopDone = cancel, make(chan struct{})
	go n.serve(ctx, srv)
}

func (n *notifier) serve(ctx context.Context, srv *server.Server) {
	defer close(n.loopDone)
	statusEvery := 5 * time.Second
	var dog <-chan time.Time
	if n.watchdog > 0 {
		t := time.NewTicker(n.watchdog / 2)
		defer t.Stop()
		dog = t.C
		statusEvery = max(statusEvery, n.watchdog/2)
	}
	st := time.NewTicker(statusEvery)
	defer st.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.C:
			if s := serving(srv); s != last {
				n.send("STATUS=" + oneLine(s))
				last = s
			}
		case <-dog:
			if err := alive(ctx, srv, n.watchdog/2); err != nil {
				if ctx.Err() != nil {
					return
				}
				n.log.Error("not pinging the systemd watchdog: the mount does not answer", "err", err)
				continue
			}
			n.send("WATCHDOG=1")
		}
	}
}

// stopping sends STOPPING=1 once, and stops the status and watchdog pings.
func (n *notifier) stopping() {
	if n.addr == nil || n.stopped.Swap(true) {
		return
	}
	n.endLoop()
	n.send("STOPPING=1\nSTATUS=stopping: unmounting and writing the snapshot")
}

// serving is the status line of a mount that serves.
func serving(srv *server.Server) string {
	st := srv.Tracker().Stats()
	s := fmt.Sprintf("serving %s: %d files, %s", srv.Mountpoint(), st.Summary.Files, humanBytes(st.Summary.Bytes))
	if st.Pending > 0 {
		s += fmt.Sprintf(", %d pending", st.Pending)
	}
	if runs := srv.Tracker().Runs(); len(runs) > 0 {
		if v := runs[len(runs)-1].View(); v.State == "running" {
			s += fmt.Sprintf("; %s verification %d/%d files", v.Kind, v.FilesDone, v.FilesTotal)
		}
	}
	if srv.SnapshotWriteFailing() {
		s += "; snapshot writes failing (see the log)"
	}
	return s
}

var probing atomic.Bool

// alive checks that the FUSE server loop and the tracker answer: the server still serves and a
// read of MNT/.state (which goes through the kernel to the FUSE loop and takes the tracker's
// lock) completes within timeout. At most one probe is in flight; a stuck one fails every check
// until it returns.
func alive(ctx context.Context, srv *server.Server, timeout time.Duration) error {
	if !srv.Serving() {
		return errors.New("the FUSE server no longer serves")
	}
	if !probing.CompareAndSwap(false, true) {
		return errors.New("the previous read of .state has not returned")
	}
	done := make(chan error, 1)
	go func() {
		defer probing.Store(false)
		_, err := os.ReadFile(filepath.Join(srv.Mountpoint(), ".state"))
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("reading .state took more than %v", timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}
