package peers

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/trowfs/trowfs/peers/crdt"
)

// Data-plane routes (docs/peers.md, "Protocol").
const (
	routeSummaries = "/peer/v1/summaries"
	routeEntries   = "/peer/v1/entries"
	routeOffer     = "/peer/v1/offer"
)

// requestTimeout bounds one data-plane exchange.
const requestTimeout = 30 * time.Second

// handler serves the data plane of n. Every request is authenticated before anything is decoded.
func (n *Node) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		switch r.URL.Path {
		case routeSummaries, routeEntries, routeOffer:
		default:
			http.NotFound(w, r)
			return
		}
		// The headers first: nobody without the key makes this node read, let alone hold, a body.
		if err := n.verify.check(r, n.set.Name); err != nil {
			n.countAuthFailure()
			if errors.Is(err, errNonceCap) {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		if err := checkBody(r, body); err != nil {
			n.countAuthFailure()
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		peer := r.Header.Get(HeaderName)
		var out []byte
		switch r.URL.Path {
		case routeSummaries:
			var ps []crdt.Path
			if ps, err = crdt.DecodePaths(body, maxPaths); err == nil {
				n.mu.Lock()
				out = crdt.EncodeSummaries(n.rep.Summaries(ps))
				n.mu.Unlock()
			}
		case routeEntries:
			var ks []crdt.Digest
			if ks, err = crdt.DecodeDigests(body, maxKeys); err == nil {
				n.mu.Lock()
				es := n.rep.Entries(ks)
				out = crdt.EncodeEntries(es[:fitEntries(es, len(es))]) // the caller asks again for the rest
				n.mu.Unlock()
			}
		case routeOffer:
			err = n.takeOffer(peer, body)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n.countBytes(peer, int64(len(body)), int64(len(out)))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set(HeaderMAC, answerMAC(n.macKey, r, n.set.Name, out))
		_, _ = w.Write(out)
	})
}

// takeOffer merges the entries a peer sends.
func (n *Node) takeOffer(peer string, body []byte) error {
	es, err := crdt.DecodeEntries(body, maxKeys)
	if err != nil {
		n.mu.Lock()
		n.rejected++
		n.mu.Unlock()
		return fmt.Errorf("offer from %s: %w", peer, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	changed := false
	for _, e := range es {
		if n.rep.Merge(e) {
			changed = true
		}
	}
	if changed {
		n.changedLocked()
	}
	n.log.Debug("offer taken", "peer", peer, "entries", len(es), "changed", changed)
	return nil
}

// client is the caller's side of the data plane to one peer.
type client struct {
	n    *Node
	peer string // the peer's node name
	addr string // its data-plane host:port
}

func (c client) call(ctx context.Context, route string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.addr+route, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	sign(req, c.n.macKey, c.n.set.Name, c.peer, body, c.n.now())
	resp, err := c.n.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	c.n.countBytes(c.peer, int64(len(out)), int64(len(body)))
	if err != nil {
		return nil, err
	}
	if len(out) > maxBody {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", c.peer, route, maxBody)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", c.peer, route, resp.Status, bytes.TrimSpace(out))
	}
	got, err := hex.DecodeString(resp.Header.Get(HeaderMAC))
	if err != nil || !hmac.Equal(got, answerMACBytes(c.n.macKey, req, c.peer, out)) {
		return nil, fmt.Errorf("%w: %s %s: the answer's MAC does not verify", errLying, c.peer, route)
	}
	return out, nil
}

// answerMAC authenticates an answer: the MAC of the request's path, time and nonce with the
// answering node's name, the asking node's name and the answer's body, under the method name ANSWER
// (never a request's), so an answer cannot be forged, replayed for another request or passed off
// as a request.
func answerMAC(key []byte, req *http.Request, name string, body []byte) string {
	return hex.EncodeToString(answerMACBytes(key, req, name, body))
}

func answerMACBytes(key []byte, req *http.Request, name string, body []byte) []byte {
	return macOf(key, "ANSWER", req.URL.Path, req.Header.Get(HeaderTime), req.Header.Get(HeaderNonce), name, req.Header.Get(HeaderName), bodyDigest(body))
}
