package peers

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func writeKey(t *testing.T, content string, mode os.FileMode) string {
	p := filepath.Join(t.TempDir(), "peer.key")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeyFileRefusesWrongModeAndLength(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n"
	for _, c := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"group readable", good, 0o640, "group or other"},
		{"other readable", good, 0o604, "group or other"},
		{"short", base64.StdEncoding.EncodeToString(make([]byte, 16)), 0o600, "16 bytes, want 32"},
		{"long", base64.StdEncoding.EncodeToString(make([]byte, 33)), 0o600, "33 bytes"},
		{"not base64", "not*base64", 0o600, "not base64"},
		{"empty", "\n", 0o600, "empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadKeyFile(writeKey(t, c.content, c.mode))
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a ConfigError containing %q", err, c.want)
			}
		})
	}
	k, err := LoadKeyFile(writeKey(t, good, 0o600))
	if err != nil || len(k) != 32 {
		t.Fatalf("a good key: %v (%d bytes)", err, len(k))
	}
}

// TestKeyFileRefusesEmptyPaddedOrFIFOWithoutBlocking: a key file that is empty, padded with
// something after the key, or a FIFO nobody writes to gets a clear ConfigError at once (the CLI
// exits 2). Opened blindly, a FIFO would block the mount's start for ever in open(2); read
// blindly, a 0-byte file would say only "EOF" and anything after the first 1024 bytes would be
// silently ignored.
func TestKeyFileRefusesEmptyPaddedOrFIFOWithoutBlocking(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(make([]byte, 32))
	fifo := filepath.Join(t.TempDir(), "peer.key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, want string
	}{
		{"zero bytes", writeKey(t, "", 0o600), "empty"},
		{"trailing content past 1 KiB", writeKey(t, good+"\n"+strings.Repeat(" ", 1100)+"second line", 0o600), "larger than"},
		{"fifo", fifo, "not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, err := LoadKeyFile(c.path); done <- err }()
			select {
			case err := <-done:
				var ce *ConfigError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("got %v, want a ConfigError containing %q", err, c.want)
				}
			case <-time.After(3 * time.Second):
				// Unblock the open so the goroutine ends.
				if f, err := os.OpenFile(c.path, os.O_WRONLY, 0); err == nil {
					f.Close()
				}
				t.Fatal("LoadKeyFile still blocked after 3 s")
			}
		})
	}
}

func TestFlagsRefuseNonLoopbackBindWithoutKey(t *testing.T) {
	base := Flags{RegistryURL: "http://127.0.0.1:8000", Name: "a"}
	f := base
	f.Bind = "0.0.0.0:7946"
	if _, err := f.Validate(); err == nil || !strings.Contains(err.Error(), "--peer-key-file is required") {
		t.Fatalf("non-loopback bind without key: %v", err)
	}
	f.Bind = "127.0.0.1:7946"
	s, err := f.Validate()
	if err != nil {
		t.Fatalf("loopback without key: %v", err)
	}
	if s.DataBind != "127.0.0.1:7947" || s.RegistryAdvertise != "http://127.0.0.1:8000" || s.TombstoneGrace != DefaultTombstoneGrace {
		t.Fatalf("defaults: %+v", s)
	}
	f.DataBind = "0.0.0.0:9000"
	if _, err := f.Validate(); err == nil {
		t.Fatal("a non-loopback data bind without key was accepted")
	}
	for _, bad := range []Flags{
		{Bind: "127.0.0.1", RegistryURL: "http://x:1", Name: "a"},
		{Bind: "127.0.0.1:7946", Name: "a"},
		{Bind: "127.0.0.1:7946", RegistryURL: "ftp://x", Name: "a"},
		{Bind: "127.0.0.1:7946", RegistryURL: "http://x:1", RegistryAdvertise: "http://" + strings.Repeat("h", 200), Name: "a"},
		{Bind: "127.0.0.1:7946", RegistryURL: "http://x:1", Name: "a b"},
		{Bind: "127.0.0.1:7946", RegistryURL: "http://x:1", Name: "a", Join: []string{"host-without-port"}},
		{Bind: "127.0.0.1:7946", RegistryURL: "http://x:1", Name: "a", Advertise: "name.example:7946"},
	} {
		if _, err := bad.Validate(); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	f = base
	f.Bind, f.Join = "127.0.0.1:7946", []string{"a:1,b:2", " c:3 ", "_peers._tcp.svc.local", "srv+peers.svc"}
	s, err = f.Validate()
	if err != nil || len(s.Join) != 5 {
		t.Fatalf("join lists: %v %v", s.Join, err)
	}
}

type fakeResolver struct{}

func (fakeResolver) LookupHost(_ context.Context, h string) ([]string, error) {
	if h == "trow-peers.svc" {
		return []string{"10.0.0.1", "10.0.0.2", "fd00::3"}, nil
	}
	return nil, errors.New("no such host")
}
func (fakeResolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	return "", []*net.SRV{{Target: "trow-peers.svc.", Port: 7000}}, nil
}

func TestSeedsResolveAAndSRV(t *testing.T) {
	got, err := ResolveSeeds(context.Background(), fakeResolver{}, []string{"trow-peers.svc:7946", "10.9.9.9:1", "_gossip._tcp.trow", "srv+trow", "missing:1"})
	want := "10.0.0.1:7946 10.0.0.2:7946 [fd00::3]:7946 10.9.9.9:1 10.0.0.1:7000 10.0.0.2:7000 [fd00::3]:7000"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %v\nwant %s", got, want)
	}
	if err == nil || !strings.Contains(err.Error(), "missing:1") {
		t.Fatalf("an unresolvable seed is reported: %v", err)
	}
}

func TestMetaFitsWithLongestValues(t *testing.T) {
	m := Meta{ClockWall: -1, ClockLogic: ^uint32(0), DataAddr: "[" + strings.Repeat("a", MaxAddrLen-8) + "]:65535", RegistryURL: "https://" + strings.Repeat("r", MaxURLLen-8)}
	for i := range m.Root {
		m.Root[i] = 0xff
	}
	if len(m.DataAddr) != MaxAddrLen || len(m.RegistryURL) != MaxURLLen {
		t.Fatalf("test values are not the longest: %d %d", len(m.DataAddr), len(m.RegistryURL))
	}
	b, err := m.Encode()
	if err != nil || len(b) > MetaLimit {
		t.Fatalf("meta %d bytes, err %v", len(b), err)
	}
	back, err := DecodeMeta(b)
	if err != nil || back != m {
		t.Fatalf("round trip: %v", err)
	}
	m.RegistryURL += "x"
	if _, err := m.Encode(); err == nil {
		t.Fatal("a too-long URL was encoded")
	}
}

func TestTombstoneGraceMustOutlastAdmittedClockSkew(t *testing.T) {
	f := Flags{RegistryURL: "http://127.0.0.1:8000", Name: "a", Bind: "127.0.0.1:7946"}
	for _, g := range []time.Duration{time.Minute, time.Hour, MinTombstoneGrace - time.Second} {
		f.TombstoneGrace = g
		if _, err := f.Validate(); err == nil || !strings.Contains(err.Error(), "--peer-tombstone-grace") {
			t.Errorf("grace %s: %v, want a refusal", g, err)
		}
	}
	f.TombstoneGrace = MinTombstoneGrace
	if s, err := f.Validate(); err != nil || s.TombstoneGrace != MinTombstoneGrace {
		t.Fatalf("grace %s: %+v, %v", MinTombstoneGrace, s, err)
	}
}
