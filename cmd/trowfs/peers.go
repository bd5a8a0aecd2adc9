package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/trowfs/trowfs/internal/server"
	"github.com/trowfs/trowfs/internal/tracker"
	"github.com/trowfs/trowfs/peers"
)

// peerFlags are the peer options of `trowfs mount` (docs/cli.md, docs/peers.md).
type peerFlags struct {
	PeerBind           string        `help:"Turn peers on: gossip on this host:port (TCP and UDP); the data plane listens on port+1 unless --peer-data-bind. A non-loopback address needs --peer-key-file." placeholder:"HOST:PORT" group:"Peers"`
	PeerDataBind       string        `help:"Data-plane address (default: the --peer-bind host, port+1)." placeholder:"HOST:PORT" group:"Peers"`
	PeerJoin           []string      `help:"Seeds to join (repeatable, comma lists): host:port (A/AAAA), _service._proto.name or srv+name (SRV). Retried with backoff until one answers." placeholder:"SEED" group:"Peers"`
	PeerAdvertise      string        `help:"Gossip address other nodes reach this one at (an IP:port; default: the bound address)." placeholder:"IP:PORT" group:"Peers"`
	PeerKeyFile        string        `help:"Shared key: base64 of 32 bytes (openssl rand -base64 32), mode 0600. Encrypts gossip and authenticates the data plane." type:"path" placeholder:"FILE" group:"Peers"`
	PeerName           string        `help:"Stable node name (default: the hostname, e.g. a StatefulSet pod name)." placeholder:"NAME" group:"Peers"`
	RegistryURL        string        `help:"This node's registry, which trowfs pushes what peers have into (required with --peer-bind)." placeholder:"URL" group:"Peers"`
	RegistryAdvertise  string        `help:"The URL peers read this node's content from (default: --registry-url)." placeholder:"URL" group:"Peers"`
	PeerTombstoneGrace time.Duration `help:"How long a delete is remembered after every member had it." default:"168h" group:"Peers"`
}

// config validates the flags; peers off when --peer-bind is absent.
func (f peerFlags) config() (server.PeerConfig, error) {
	fl := peers.Flags{Bind: f.PeerBind, DataBind: f.PeerDataBind, Join: f.PeerJoin, Advertise: f.PeerAdvertise, KeyFile: f.PeerKeyFile,
		Name: f.PeerName, RegistryURL: f.RegistryURL, RegistryAdvertise: f.RegistryAdvertise, TombstoneGrace: f.PeerTombstoneGrace}
	if !fl.Enabled() {
		for flag, v := range map[string]bool{"--peer-join": len(f.PeerJoin) > 0, "--peer-data-bind": f.PeerDataBind != "", "--peer-advertise": f.PeerAdvertise != "",
			"--peer-key-file": f.PeerKeyFile != "", "--peer-name": f.PeerName != "", "--registry-url": f.RegistryURL != "", "--registry-advertise": f.RegistryAdvertise != ""} {
			if v {
				return server.PeerConfig{}, &exitError{ExitUsage, flag + " needs --peer-bind (peers are off without it)"}
			}
		}
		return server.PeerConfig{}, nil
	}
	s, err := fl.Validate()
	if err != nil {
		return server.PeerConfig{}, &exitError{ExitUsage, err.Error()}
	}
	return server.PeerConfig{Peers: &s}, nil
}

type peersCmd struct {
	Path   string `arg:"" optional:"" help:"A trowfs mountpoint: read its root .state (instead of --listen)." type:"path"`
	Listen string `help:"The mount's HTTP endpoint (its --listen: a loopback host:port or unix:/path.sock): GET /v1/peers." placeholder:"ADDR"`
	JSON   bool   `help:"Print the status JSON instead of a table."`
}

func (c *peersCmd) Run() error {
	var st peers.Status
	var raw []byte
	var err error
	switch {
	case c.Listen != "" && c.Path != "":
		return &exitError{ExitUsage, "give MNT or --listen, not both"}
	case c.Listen != "":
		raw, err = getEndpoint(c.Listen, "/v1/peers")
		if err != nil {
			return err
		}
	case c.Path != "":
		var doc struct {
			Peers json.RawMessage `json:"peers"`
		}
		b, err := readState(c.Path)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s: %w", c.Path, err)
		}
		if len(doc.Peers) == 0 {
			return &exitError{ExitUsage, c.Path + ": peers are off on this mount (no --peer-bind)"}
		}
		raw = doc.Peers
	default:
		return &exitError{ExitUsage, "peers needs MNT or --listen ADDR"}
	}
	if c.JSON {
		_, err := os.Stdout.Write(append(raw, '\n'))
		return err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("peer status: %w", err)
	}
	return printPeers(os.Stdout, st)
}

// readState reads MNT/.state, refusing a file that is not on a trowfs mount (as `trowfs state`).
func readState(mnt string) ([]byte, error) {
	p := filepath.Join(mnt, tracker.StateFileName)
	f, err := os.Open(p)
	if err != nil {
		return nil, &exitError{ExitUsage, fmt.Sprintf("%s: %v (is %s a trowfs mount?)", p, err, mnt)}
	}
	defer f.Close()
	if ok, why := onTrowfs(f); !ok {
		return nil, &exitError{ExitUsage, fmt.Sprintf("%s is not on a trowfs mount (%s)", mnt, why)}
	}
	return io.ReadAll(f)
}

// getEndpoint GETs route from a trowfs endpoint at addr (host:port or unix:/path).
func getEndpoint(addr, route string) ([]byte, error) {
	network, target := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, target = "unix", p
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}}
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	host := "localhost"
	if network == "tcp" {
		host = addr
	}
	resp, err := cl.Get("http://" + host + route)
	if err != nil {
		return nil, &exitError{ExitUsage, fmt.Sprintf("--listen %s: %v (is the mount running with --listen %s?)", addr, err, addr)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusNotFound {
			return nil, &exitError{ExitUsage, fmt.Sprintf("%s%s: %s", addr, route, msg)}
		}
		return nil, errors.New(addr + route + ": " + resp.Status + ": " + msg)
	}
	return b, nil
}

func short(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func printPeers(w io.Writer, st peers.Status) error {
	fmt.Fprintf(w, "node %s  root %s  registers %d  in_sync %v  conflicts %d  rejected %d  auth_failures %d  bytes in/out %d/%d\n",
		st.Name, short(st.Root), st.Registers, st.InSync, st.Conflicts, st.Rejected, st.AuthFailures, st.BytesIn, st.BytesOut)
	if st.WaitingFor != "" {
		fmt.Fprintf(w, "waiting for: %s\n", st.WaitingFor)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tSTATE\tIN_SYNC\tROOT\tLAST_EXCHANGE\tBYTES_IN\tBYTES_OUT\tERROR")
	for _, m := range st.Members {
		last := "-"
		if m.LastExchange != nil {
			last = m.LastExchange.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%d\t%d\t%s\n", m.Name, m.Address, m.State, m.InSync, short(m.Root), last, m.BytesIn, m.BytesOut, m.LastError)
	}
	return tw.Flush()
}
