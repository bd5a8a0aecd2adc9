package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// wireCounter counts the TCP and UDP payload bytes that cross the loopback interface to or from
// a set of ports, read from an AF_PACKET socket (needs CAP_NET_RAW; the suite runs as root for
// its mounts). It reads only headers' lengths and ports, never payloads, and counts every packet
// once (as it leaves its sender). This measures what a trowfs process sends on its gossip port,
// which it counts nowhere itself.
type wireCounter struct {
	fd    int
	ports map[uint16]int // port -> class index
	done  chan struct{}
	wg    sync.WaitGroup

	mu      sync.Mutex // guards bytes, packets, readErr
	bytes   []int64    // per class
	packets []int64
	readErr error
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// newWireCounter starts counting traffic on lo for classes of ports: classes[i] is the set of
// ports of class i (say gossip ports and data-plane ports). A packet is counted in the class of
// its destination port, else of its source port.
func newWireCounter(classes ...[]int) (*wireCounter, error) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return nil, err
	}
	// ETH_P_ALL: packets leaving an interface are handed only to taps of every protocol.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("packet socket (needs CAP_NET_RAW): %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: lo.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind packet socket to lo: %w", err)
	}
	// Wake up now and then to notice stop; a large buffer so that an idle-time burst is not lost.
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000})
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	w := &wireCounter{fd: fd, ports: map[uint16]int{}, done: make(chan struct{}),
		bytes: make([]int64, len(classes)), packets: make([]int64, len(classes))}
	for i, ps := range classes {
		for _, p := range ps {
			w.ports[uint16(p)] = i
		}
	}
	w.wg.Add(1)
	go w.loop()
	return w, nil
}

func (w *wireCounter) loop() {
	defer w.wg.Done()
	buf := make([]byte, 65536+64)
	for {
		select {
		case <-w.done:
			return
		default:
		}
		n, from, err := unix.Recvfrom(w.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			w.mu.Lock()
			w.readErr = err
			w.mu.Unlock()
			return
		}
		// On lo every packet is seen twice: leaving (PACKET_OUTGOING) and arriving. Count it once.
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype != unix.PACKET_OUTGOING {
			continue
		}
		class, payload, ok := w.classify(buf[:n])
		if !ok {
			continue
		}
		w.mu.Lock()
		w.bytes[class] += int64(payload)
		w.packets[class]++
		w.mu.Unlock()
	}
}

// classify parses an IPv4 packet's header and its UDP or TCP header: the class of its ports and
// its payload length.
func (w *wireCounter) classify(p []byte) (class, payload int, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return 0, 0, false
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < 20 || len(p) < ihl+8 || total < ihl {
		return 0, 0, false
	}
	l4 := p[ihl:]
	src, dst := binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
	switch p[9] {
	case unix.IPPROTO_UDP:
		payload = int(binary.BigEndian.Uint16(l4[4:6])) - 8
	case unix.IPPROTO_TCP:
		if len(l4) < 13 {
			return 0, 0, false
		}
		payload = total - ihl - int(l4[12]>>4)*4
	default:
		return 0, 0, false
	}
	if c, hit := w.ports[dst]; hit {
		return c, max(payload, 0), true
	}
	if c, hit := w.ports[src]; hit {
		return c, max(payload, 0), true
	}
	return 0, 0, false
}

// snapshot returns the bytes and packets counted so far per class.
func (w *wireCounter) snapshot() (bytes, packets []int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int64{}, w.bytes...), append([]int64{}, w.packets...), w.readErr
}

// stop ends the counting and closes the socket.
func (w *wireCounter) stop() {
	close(w.done)
	w.wg.Wait()
	unix.Close(w.fd)
}

// waitFor polls ok every 50 ms until it holds or d passes.
func waitFor(d time.Duration, ok func() bool) bool {
	end := time.Now().Add(d)
	for !ok() {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
