package peers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
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
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		if err := n.verify.check(r, body); err != nil {
			n.countAuthFailure()
			if errors.Is(err, errNonceCap) {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		peer := r.Header.Get(HeaderName)
		var out []byte
		switch r.URL.Path {
		case routeSummaries:
			var ps = must(decodePaths(body))
			if ps.err == nil {
				n.mu.Lock()
				out = encodeSummaries(n.rep.Summaries(ps.v))
				n.mu.Unlock()
			}
			err = ps.err
		case routeEntries:
			ks := must(decodeDigests(body))
			if ks.err == nil {
				n.mu.Lock()
				es := n.rep.Entries(ks.v)
				raws := make([][]byte, len(es))
				for i, e := range es {
					raws[i] = n.rep.EncodeEntry(e)
				}
				n.mu.Unlock()
				out = encodeRaw(raws)
			}
			err = ks.err
		case routeOffer:
			err = n.takeOffer(peer, body)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n.countBytes(peer, int64(len(body)), int64(len(out)))
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(out)
	})
}

type result[T any] struct {
	v   T
	err error
}

func must[T any](v T, err error) result[T] { return result[T]{v, err} }

// takeOffer merges the entries a peer sends.
func (n *Node) takeOffer(peer string, body []byte) error {
	raws, err := decodeRaw(body)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	changed := false
	for _, raw := range raws {
		e, err := n.rep.DecodeEntry(raw)
		if err != nil {
			n.rejected++
			return fmt.Errorf("offer from %s: %w", peer, err)
		}
		if n.rep.Merge(e) {
			changed = true
		}
	}
	if changed {
		n.changedLocked()
	}
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
	sign(req, c.n.macKey, c.n.set.Name, body, c.n.now())
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
	return out, nil
}

// entryHash is what a leaf's EntryHash commits to: the sha256 of the entry's canonical encoding.
func entryHash(raw []byte) [32]byte { return sha256.Sum256(raw) }
