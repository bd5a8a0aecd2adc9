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
)

// authKey derives the data plane's MAC key from the shared key, so that the same bytes are never
// used both as memberlist's AES key and as an HMAC key.
func authKey(shared []byte) []byte {
	m := hmac.New(sha256.New, shared)
	m.Write([]byte("trowfs peer data plane v1"))
	return m.Sum(nil)
}

// macOf is HMAC-SHA256(key, method \n path \n time \n nonce \n name \n hex(sha256(body))).
func macOf(key []byte, method, path, ts, nonce, name string, body []byte) []byte {
	bh := sha256.Sum256(body)
	m := hmac.New(sha256.New, key)
	for _, s := range []string{method, path, ts, nonce, name, hex.EncodeToString(bh[:])} {
		m.Write([]byte(s))
		m.Write([]byte{'\n'})
	}
	return m.Sum(nil)
}

// sign sets the authentication headers of req, whose body is body.
func sign(req *http.Request, key []byte, name string, body []byte, now time.Time) {
	var nb [16]byte
	_, _ = rand.Read(nb[:])
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	nonce := hex.EncodeToString(nb[:])
	req.Header.Set(HeaderTime, ts)
	req.Header.Set(HeaderNonce, nonce)
	req.Header.Set(HeaderName, name)
	req.Header.Set(HeaderMAC, hex.EncodeToString(macOf(key, req.Method, req.URL.Path, ts, nonce, name, body)))
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

// check verifies r's headers against body; only a request whose MAC verifies reaches the nonce
// cache, so an unauthenticated sender cannot fill it.
func (v *verifier) check(r *http.Request, body []byte) error {
	ts, nonce, name, mac := r.Header.Get(HeaderTime), r.Header.Get(HeaderNonce), r.Header.Get(HeaderName), r.Header.Get(HeaderMAC)
	if ts == "" || nonce == "" || name == "" || mac == "" {
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
	if subtle.ConstantTimeCompare(got, macOf(v.key, r.Method, r.URL.Path, ts, nonce, name, body)) != 1 {
		return errBadMAC
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
