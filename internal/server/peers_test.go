package server_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trowfs/trowfs/internal/server"
	"github.com/trowfs/trowfs/peers"
	"github.com/trowfs/trowfs/peers/crdt"
)

type oneManifest struct{}

func (oneManifest) View() (crdt.View, error) {
	return crdt.View{"app": {Manifests: map[string]struct{}{"sha256:" + strings.Repeat("ab", 32): {}}, Tags: map[string]string{}}}, nil
}

func peerSettings(t *testing.T) *peers.Settings {
	s, err := peers.Flags{Bind: "127.0.0.1:0", DataBind: "127.0.0.1:0", Name: "node-a", RegistryURL: "http://127.0.0.1:1"}.Validate()
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

// A mount with --peer-bind runs a node: the root .state and GET /v1/peers carry its status (and
// say it waits for the registry view while no Applier is wired), /metrics has it, and its state
// is written to DATA/.trowfs at unmount and read back at the next mount.
func TestMountRunsPeerNodeAndReportsIt(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	sock := filepath.Join(dir, "api.sock")
	s := start(t, server.Config{Data: data, Listen: "unix:" + sock, PeerConfig: server.PeerConfig{Peers: peerSettings(t), PeerView: oneManifest{}}})
	var doc struct {
		Peers *peers.Status `json:"peers"`
	}
	b, err := os.ReadFile(filepath.Join(s.Mountpoint(), ".state"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.Peers == nil {
		t.Fatalf("the root .state has no peers object (%v): %s", err, b)
	}
	// No Applier given: the server wires the production one (peers/oci against --registry-url),
	// so the node waits for nothing it lacks.
	if doc.Peers.Name != "node-a" || doc.Peers.WaitingFor == peers.WaitingRegistryView {
		t.Fatalf("peers object: %+v", doc.Peers)
	}
	get := unixClient(t, sock)
	code, _, body := get("/v1/peers")
	var st peers.Status
	if code != 200 || json.Unmarshal(body, &st) != nil || st.Name != "node-a" {
		t.Fatalf("GET /v1/peers: %d %s", code, body)
	}
	if st.Registers != 1 {
		t.Fatalf("the node did not observe the registry view: %d registers", st.Registers)
	}
	code, _, body = get("/metrics")
	if code != 200 || !strings.Contains(string(body), "\ntrowfs_peer_enabled 1\n") || !strings.Contains(string(body), "\ntrowfs_peer_registers 1\n") {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, ".trowfs", "peers.state")); err != nil {
		t.Fatalf("no peer state written at unmount: %v", err)
	}
	// The next mount starts from it, even with no registry view to observe.
	s2 := start(t, server.Config{Data: data, PeerConfig: server.PeerConfig{Peers: peerSettings(t)}})
	b, err = os.ReadFile(filepath.Join(s2.Mountpoint(), ".state"))
	if err != nil {
		t.Fatal(err)
	}
	doc.Peers = nil
	if err := json.Unmarshal(b, &doc); err != nil || doc.Peers == nil || doc.Peers.Registers != 1 {
		t.Fatalf("the persisted peer state was not loaded: %v %s", err, b)
	}
}

func TestPeersRouteSaysOffWithoutPeerBind(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	s := start(t, server.Config{Listen: "unix:" + sock})
	code, _, body := unixClient(t, sock)("/v1/peers")
	if code != 404 || !strings.Contains(string(body), "peers are off") {
		t.Fatalf("GET /v1/peers with peers off: %d %s", code, body)
	}
	b, _ := os.ReadFile(filepath.Join(s.Mountpoint(), ".state"))
	if strings.Contains(string(b), `"peers"`) {
		t.Fatalf("the root .state has a peers object with peers off: %s", b)
	}
}
