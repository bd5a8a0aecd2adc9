package bench

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The loopback counter counts UDP and TCP payload bytes to the ports it was given, once per
// packet, and nothing else.
func TestWireCounterCountsPayloadOnce(t *testing.T) {
	a, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	other, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	udpPort, tcpPort := a.LocalAddr().(*net.UDPAddr).Port, l.Addr().(*net.TCPAddr).Port
	w, err := newWireCounter([]int{udpPort}, []int{tcpPort})
	if errors.Is(err, unix.EPERM) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer w.stop()
	c, err := net.Dial("udp", a.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := c.Write(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	c, err = net.Dial("udp", other.LocalAddr().String()) // not counted
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write(make([]byte, 5000))
	c.Close()
	go func() {
		s, err := l.Accept()
		if err == nil {
			_, _ = s.Write(make([]byte, 3000)) // to the client: counted by its source port
			s.Close()
		}
	}()
	tc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tc.Write(make([]byte, 7000))
	buf := make([]byte, 8192)
	got := 0
	for {
		n, err := tc.Read(buf)
		got += n
		if err != nil {
			break
		}
	}
	tc.Close()
	if got != 3000 {
		t.Fatalf("read %d bytes", got)
	}
	var b, p []int64
	ok := waitFor(5*time.Second, func() bool {
		b, p, err = w.snapshot()
		return err != nil || (b[0] >= 1000 && b[1] >= 10000)
	})
	time.Sleep(300 * time.Millisecond) // anything counted twice would show now
	b, p, err = w.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !ok || b[0] != 1000 || p[0] != 10 || b[1] != 10000 {
		t.Fatalf("counted udp %d bytes in %d packets, tcp %d bytes in %d packets; want 1000 in 10, 10000", b[0], p[0], b[1], p[1])
	}
}
