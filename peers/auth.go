package peers

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Headers of an authenticated data-plane request.
const (
	HeaderTime  = "X-Trowfs-Peer-Time"  // Unix milliseconds
	HeaderNonce = "X-Trowfs-Peer-Nonce" // 16 random bytes, hex
	HeaderName  = "X-Trowfs-Peer-Name"  // the caller's node name
	HeaderTo    = "X-Trowfs-Peer-To"    // the node the request is for
	HeaderBody  = "X-Trowfs-Peer-Body"  // hex SHA-256 of the body, so the MAC is checked before the body is read
	HeaderMAC   = "X-Trowfs-Peer-Mac"   // hex HMAC-SHA256, see macOf
)

// MaxSkew is how far a request's timestamp may be from the receiver's clock.
const MaxSkew = 5 * time.Minute

// nonceCacheMax bounds the replay cache; a full cache of unexpired nonces refuses new requests
// (503) rather than forgetting one that could be replayed.
const nonceCacheMax = 1 << 16

var (
	errNoAuth   = errors.New("missing authentication headers")
	errBadMAC   = errors.New("bad MAC")
	errStale    = errors.New("timestamp outside the allowed window")
	errReplay   = errors.New("replayed nonce")
	errNonceCap = errors.New("too many requests in the replay window")
	errNotForUs = errors.New("request addressed to another node")
	errBadBody  = errors.New("body does not match its signed digest")
)

// authKey derives the data plane's MAC key from the shared key, so that the same bytes are never
// used both as memberlist's AES key and as an HMAC key.
func authKey(shared []byte) []byte {
	m := hmac.New(sha256.New, shared)
	m.Write([]byte("trowfs peer data plane v1"))
	return m.Sum(nil)
}

// bodyDigest is the hex SHA-256 of a body, as HeaderBody carries it and macOf covers it.
func bodyDigest(body []byte) string {
	bh := sha256.Sum256(body)
	return hex.EncodeToString(bh[:])
}

// macOf is HMAC-SHA256(key, method \n path \n time \n nonce \n name \n to \n hex(sha256(body)) \n).
func macOf(key []byte, method, path, ts, nonce, name, to, bodyHex string) []byte {
	m := hmac.New(sha256.New, key)
	for _, s := range []string{method, path, ts, nonce, name, to, bodyHex} {
		m.Write([]byte(s))
		m.Write([]byte{'\n'})
	}
	return m.Sum(nil)
}

// sign sets the authentication headers of req, from node name to node to, whose body is body.
func sign(req *http.Request, key []byte, name, to string, body []byte, now time.Time) {
	var nb [16]byte
	_, _ = rand.Read(nb[:])
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	nonce := hex.EncodeToString(nb[:])
	bh := bodyDigest(body)
	req.Header.Set(HeaderTime, ts)
	req.Header.Set(HeaderNonce, nonce)
	req.Header.Set(HeaderName, name)
	req.Header.Set(HeaderTo, to)
	req.Header.Set(HeaderBody, bh)
	req.Header.Set(HeaderMAC, hex.EncodeToString(macOf(key, req.Method, req.URL.Path, ts, nonce, name, to, bh)))
}

// verifier checks authenticated requests and remembers nonces for the replay window.
type verifier struct {
	key []byte
	now func() time.Time
	// mu guards seen.
	mu   sync.Mutex
	seen map[string]time.Time // nonce -> when it expires
}

func newVerifier(key []byte, now func() time.Time) *verifier {
	return &verifier{key: key, now: now, seen: make(map[string]time.Time)}
}

// check verifies r's headers for the node named self, before its body is read (the MAC covers
// the body's digest, which checkBody compares once the body is in); only a request whose MAC
// verifies reaches the nonce cache, so an unauthenticated sender can neither fill it nor make the
// node read (and hold) a body.
func (v *verifier) check(r *http.Request, self string) error {
	h := r.Header
	ts, nonce, name, to, bh, mac := h.Get(HeaderTime), h.Get(HeaderNonce), h.Get(HeaderName), h.Get(HeaderTo), h.Get(HeaderBody), h.Get(HeaderMAC)
	if ts == "" || nonce == "" || name == "" || to == "" || bh == "" || mac == "" {
		return errNoAuth
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errBadMAC
	}
	now := v.now()
	if d := now.Sub(time.UnixMilli(ms)); d > MaxSkew || d < -MaxSkew {
		return errStale
	}
	got, err := hex.DecodeString(mac)
	if err != nil || len(nonce) != 32 {
		return errBadMAC
	}
	if subtle.ConstantTimeCompare(got, macOf(v.key, r.Method, r.URL.Path, ts, nonce, name, to, bh)) != 1 {
		return errBadMAC
	}
	if to != self {
		return errNotForUs // captured on its way to another member and replayed here
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.seen[nonce]; ok {
		return errReplay
	}
	if len(v.seen) >= nonceCacheMax {
		for k, exp := range v.seen {
			if now.After(exp) {
				delete(v.seen, k)
			}
		}
		if len(v.seen) >= nonceCacheMax {
			return errNonceCap
		}
	}
	// A nonce must be remembered for as long as its timestamp is acceptable.
	v.seen[nonce] = time.UnixMilli(ms).Add(MaxSkew)
	return nil
}

// checkBody compares a body read after check with the digest its signed headers gave.
func checkBody(r *http.Request, body []byte) error {
	if subtle.ConstantTimeCompare([]byte(bodyDigest(body)), []byte(r.Header.Get(HeaderBody))) != 1 {
		return errBadBody
	}
	return nil
}
