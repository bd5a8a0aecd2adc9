package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/peers"
)

// Bad peer flags exit 2 before anything is mounted: a key others can read, a key of the wrong
// length, a non-loopback bind without a key, a peer flag without --peer-bind.
func TestPeerFlagsRefusedWithExit2(t *testing.T) {
	dir := t.TempDir()
	data, mnt := filepath.Join(dir, "data"), filepath.Join(dir, "mnt")
	os.Mkdir(data, 0o755)
	key := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n" // 32 bytes
	open := key("open.key", good, 0o644)
	short := key("short.key", "c2hvcnQ=\n", 0o600)
	base := []string{"mount", data, mnt, "--registry-url", "http://127.0.0.1:8000", "--peer-name", "a"}
	for _, extra := range [][]string{
		{"--peer-bind", "127.0.0.1:17946", "--peer-key-file", open},
		{"--peer-bind", "127.0.0.1:17946", "--peer-key-file", short},
		{"--peer-bind", "0.0.0.0:17946"},
		{"--peer-join", "seed:7946"},
	} {
		args := append(append([]string{}, base...), extra...)
		if extra[0] == "--peer-join" {
			args = []string{"mount", data, mnt, "--peer-join", "seed:7946"}
		}
		if got := run(args); got != ExitUsage {
			t.Errorf("run(%v) = %d, want %d", extra, got, ExitUsage)
		}
	}
	// Each says what is wrong.
	for _, c := range []struct {
		f    peerFlags
		want string
	}{
		{peerFlags{PeerBind: "127.0.0.1:17946", PeerKeyFile: open, RegistryURL: "http://r"}, "chmod 600"},
		{peerFlags{PeerBind: "127.0.0.1:17946", PeerKeyFile: short, RegistryURL: "http://r"}, "the key is 5 bytes, want 32"},
		{peerFlags{PeerBind: "0.0.0.0:17946", RegistryURL: "http://r"}, "a --peer-key-file is required"},
		{peerFlags{PeerJoin: []string{"seed:7946"}}, "--peer-join needs --peer-bind"},
		{peerFlags{PeerBind: "127.0.0.1:17946"}, "--registry-url is required"},
	} {
		_, err := c.f.config()
		if ee, ok := err.(*exitError); !ok || ee.code != ExitUsage || !strings.Contains(ee.msg, c.want) {
			t.Errorf("%+v: %v, want exit 2 saying %q", c.f, err, c.want)
		}
	}
	if pc, err := (peerFlags{}).config(); err != nil || pc.Peers != nil {
		t.Errorf("no --peer-bind: %+v %v, want peers off", pc, err)
	}
	if _, err := os.Stat(filepath.Join(data, ".trowfs")); err == nil {
		t.Fatal("a refused mount touched DATA/.trowfs")
	}
}

func TestPeersTable(t *testing.T) {
	last := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	st := peers.Status{Name: "a", Root: "sha256:" + strings.Repeat("ab", 32), Registers: 2, InSync: false, Rejected: 3, WaitingFor: "registry view",
		Members: []peers.MemberStatus{{Name: "b", Address: "10.0.0.2:7946", State: "alive", Root: "sha256:" + strings.Repeat("cd", 32), LastExchange: &last, BytesIn: 10, BytesOut: 20, LastError: "boom"}}}
	var out bytes.Buffer
	if err := printPeers(&out, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"node a", "rejected 3", "waiting for: registry view", "NAME", "b ", "10.0.0.2:7946", "alive", "cdcdcdcdcdcd", "2026-12-07T12:00:00Z", "boom"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPeersReadsTheEndpoint(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/peers" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(peers.Status{Name: "a", Members: []peers.MemberStatus{}})
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	b, err := getEndpoint(addr, "/v1/peers")
	var st peers.Status
	if err != nil || json.Unmarshal(b, &st) != nil || st.Name != "a" {
		t.Fatalf("getEndpoint: %v %s", err, b)
	}
	if _, err := getEndpoint(addr, "/v1/nothing"); err == nil {
		t.Fatal("a 404 was not an error")
	}
}
