package peers

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trowfs/trowfs/peers/crdt"
)

// KeySize is the length of the shared key: 32 bytes (AES-256 for gossip, HMAC-SHA256 for the data plane).
const KeySize = 32

// DefaultTombstoneGrace is how long a tombstone outlives the moment every member had it.
const DefaultTombstoneGrace = 7 * 24 * time.Hour

// Limits of what node meta carries, so that it always fits memberlist's 512 bytes (see meta.go).
const (
	MaxAddrLen = 261 // a 253-byte DNS name, brackets, ":" and a 5-digit port
	MaxURLLen  = 200 // --registry-advertise
)

// ConfigError is a problem with what the operator asked for (the CLI exits 2).
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

func configErr(format string, a ...any) error { return &ConfigError{fmt.Sprintf(format, a...)} }

// maxKeyFile bounds what LoadKeyFile reads: a key is 44 bytes of base64 and a newline.
const maxKeyFile = 1024

// LoadKeyFile reads a base64-encoded 32-byte key (as `openssl rand -base64 32` writes it). It
// refuses a file that group or other may read or write, that is not a regular file (opened without
// blocking, so a FIFO nobody writes to is refused rather than waited on), that is larger than
// maxKeyFile, and a key of another length.
func LoadKeyFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, configErr("--peer-key-file: %v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, configErr("--peer-key-file: %v", err)
	}
	if !st.Mode().IsRegular() {
		return nil, configErr("--peer-key-file %s: not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, configErr("--peer-key-file %s: mode %04o lets group or other read it; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, configErr("--peer-key-file %s: %v", path, err)
	}
	if len(b) > maxKeyFile {
		return nil, configErr("--peer-key-file %s: larger than %d bytes; it should hold only a key: openssl rand -base64 32", path, maxKeyFile)
	}
	return ParseKey(string(b))
}

// ParseKey decodes a base64 key of exactly KeySize bytes.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, configErr("--peer-key-file is empty; write a key with: openssl rand -base64 32")
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, configErr("--peer-key-file: not base64 (%v); write a key with: openssl rand -base64 32", err)
	}
	if len(k) != KeySize {
		return nil, configErr("--peer-key-file: the key is %d bytes, want %d; write one with: openssl rand -base64 32", len(k), KeySize)
	}
	return k, nil
}

// Flags are the peer options of `trowfs mount` as the operator gave them.
type Flags struct {
	Bind              string        // --peer-bind host:port (gossip, TCP and UDP); empty: peers off
	DataBind          string        // --peer-data-bind host:port; default the gossip host, port+1
	Join              []string      // --peer-join, repeatable, comma lists; host:port, _svc._proto.name, srv+name
	Advertise         string        // --peer-advertise host:port (gossip); the data plane advertises port+1 unless DataBind says otherwise
	KeyFile           string        // --peer-key-file
	Name              string        // --peer-name; default the hostname
	RegistryURL       string        // --registry-url
	RegistryAdvertise string        // --registry-advertise; default RegistryURL
	TombstoneGrace    time.Duration // --peer-tombstone-grace
}

// Enabled reports whether peers are on (a --peer-bind was given).
func (f Flags) Enabled() bool { return f.Bind != "" }

// Settings are validated flags: what Start needs besides the state and the seams.
type Settings struct {
	Name              string
	BindHost          string
	BindPort          int
	DataBind          string
	AdvertiseHost     string // "" lets memberlist choose
	AdvertisePort     int
	DataAdvertise     string
	Join              []string
	Key               []byte // nil only on loopback
	RegistryURL       string
	RegistryAdvertise string
	TombstoneGrace    time.Duration
}

// MinTombstoneGrace is the shortest --peer-tombstone-grace: twice crdt.MaxDrift.
const MinTombstoneGrace = 2 * crdt.MaxDrift

// Validate checks f and reads the key. It does no DNS: seeds are resolved at join time (they may
// not exist yet when a StatefulSet starts).

func (f Flags) Validate() (Settings, error) {
	var s Settings
	host, port, err := splitHostPort(f.Bind, "--peer-bind")
	if err != nil {
		return s, err
	}
	s.BindHost, s.BindPort = host, port
	if f.DataBind != "" {
		if _, _, err := splitHostPort(f.DataBind, "--peer-data-bind"); err != nil {
			return s, err
		}
		s.DataBind = f.DataBind
	} else {
		if port == 0 {
			return s, configErr("--peer-bind %s: port 0 needs an explicit --peer-data-bind", f.Bind)
		}
		if port == 65535 {
			return s, configErr("--peer-bind %s: the data plane uses port+1; pick a lower port or --peer-data-bind", f.Bind)
		}
		s.DataBind = net.JoinHostPort(host, strconv.Itoa(port+1))
	}
	if f.KeyFile != "" {
		if s.Key, err = LoadKeyFile(f.KeyFile); err != nil {
			return s, err
		}
	} else if !isLoopback(host) || (f.DataBind != "" && !isLoopback(hostOf(f.DataBind))) {
		return s, configErr("--peer-bind %s is not a loopback address: a --peer-key-file is required (gossip and the data plane are authenticated with it)", f.Bind)
	}
	if f.Advertise != "" {
		ah, ap, err := splitHostPort(f.Advertise, "--peer-advertise")
		if err != nil {
			return s, err
		}
		if net.ParseIP(ah) == nil {
			return s, configErr("--peer-advertise %s: want an IP address (memberlist advertises addresses, not names)", f.Advertise)
		}
		s.AdvertiseHost, s.AdvertisePort = ah, ap
		if f.DataBind == "" {
			s.DataAdvertise = net.JoinHostPort(ah, strconv.Itoa(ap+1))
		}
	}
	if len(s.DataAdvertise) > MaxAddrLen {
		return s, configErr("data-plane address %q is longer than %d bytes", s.DataAdvertise, MaxAddrLen)
	}
	for _, j := range f.Join {
		for _, p := range strings.Split(j, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			if err := checkSeed(p); err != nil {
				return s, err
			}
			s.Join = append(s.Join, p)
		}
	}
	s.Name = f.Name
	if s.Name == "" {
		if s.Name, err = os.Hostname(); err != nil || s.Name == "" {
			return s, configErr("--peer-name is required: the hostname is not available (%v)", err)
		}
	}
	if len(s.Name) > 128 || strings.ContainsAny(s.Name, " \t\r\n/") {
		return s, configErr("--peer-name %q: at most 128 bytes, no spaces or slashes", s.Name)
	}
	if f.RegistryURL == "" {
		return s, configErr("--registry-url is required with --peer-bind: it is where trowfs pushes what peers have")
	}
	if err := checkURL(f.RegistryURL, "--registry-url"); err != nil {
		return s, err
	}
	s.RegistryURL = f.RegistryURL
	s.RegistryAdvertise = f.RegistryAdvertise
	if s.RegistryAdvertise == "" {
		s.RegistryAdvertise = f.RegistryURL
	}
	if err := checkURL(s.RegistryAdvertise, "--registry-advertise"); err != nil {
		return s, err
	}
	if len(s.RegistryAdvertise) > MaxURLLen {
		return s, configErr("--registry-advertise is %d bytes; at most %d fit in gossip", len(s.RegistryAdvertise), MaxURLLen)
	}
	s.TombstoneGrace = f.TombstoneGrace
	if s.TombstoneGrace == 0 {
		s.TombstoneGrace = DefaultTombstoneGrace
	}
	// A purge horizon refuses stale adds only if the grace outlasts the clock skew a node admits
	// (crdt.MaxDrift ahead, either way): a shorter grace could purge a delete that a node whose
	// clock runs an hour ahead stamped after it.
	if s.TombstoneGrace < MinTombstoneGrace {
		return s, configErr("--peer-tombstone-grace %s: at least %s (twice the clock skew peers admit)", s.TombstoneGrace, MinTombstoneGrace)
	}
	return s, nil
}

func splitHostPort(hp, flag string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, configErr("%s %q: want host:port (%v)", flag, hp, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, configErr("%s %q: bad port", flag, hp)
	}
	return h, n, nil
}

func hostOf(hp string) string { h, _, _ := net.SplitHostPort(hp); return h }

func isLoopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func checkURL(u, flag string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return configErr("%s %q: want http://host:port or https://host:port", flag, u)
	}
	return nil
}

// checkSeed accepts host:port, _service._proto.name (SRV) and srv+name (SRV, any service).
func checkSeed(p string) error {
	if strings.HasPrefix(p, "srv+") || strings.HasPrefix(p, "_") {
		if len(p) > 253+4 {
			return configErr("--peer-join %q: name too long", p)
		}
		return nil
	}
	if _, _, err := splitHostPort(p, "--peer-join"); err != nil {
		return err
	}
	return nil
}

// Resolver is what seed resolution needs from DNS (net.DefaultResolver in production).
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// ResolveSeeds turns seeds into host:port addresses: names become every A/AAAA address,
// _service._proto.name and srv+name become their SRV targets (and those targets' addresses).
// A seed that does not resolve is skipped and reported in the error (the others are still used).
func ResolveSeeds(ctx context.Context, r Resolver, seeds []string) ([]string, error) {
	var out []string
	var errs []error
	seen := map[string]bool{}
	add := func(host string, port int) {
		hp := net.JoinHostPort(host, strconv.Itoa(port))
		if !seen[hp] {
			seen[hp] = true
			out = append(out, hp)
		}
	}
	hosts := func(h string, port int) error {
		if net.ParseIP(h) != nil {
			add(h, port)
			return nil
		}
		addrs, err := r.LookupHost(ctx, h)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			add(a, port)
		}
		return nil
	}
	for _, s := range seeds {
		var err error
		switch {
		case strings.HasPrefix(s, "srv+") || strings.HasPrefix(s, "_"):
			var srvs []*net.SRV
			if name, ok := strings.CutPrefix(s, "srv+"); ok {
				_, srvs, err = r.LookupSRV(ctx, "", "", name)
			} else {
				_, srvs, err = r.LookupSRV(ctx, "", "", s)
			}
			for _, v := range srvs {
				if e := hosts(strings.TrimSuffix(v.Target, "."), int(v.Port)); e != nil {
					errs = append(errs, fmt.Errorf("seed %s: target %s: %w", s, v.Target, e))
				}
			}
		default:
			h, p, _ := splitHostPort(s, "--peer-join")
			err = hosts(h, p)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("seed %s: %w", s, err))
		}
	}
	return out, errors.Join(errs...)
}
