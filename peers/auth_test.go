package peers

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/trowfs/trowfs/peers/crdt"
)

func authNode(key []byte, now func() time.Time) *Node {
	return &Node{set: Settings{Name: "b"}, now: now, rep: NewReplica("b", now), verify: newVerifier(authKey(key), now), macKey: authKey(key), log: slog.New(slog.DiscardHandler),
		members: map[string]*member{}, bytesIn: map[string]int64{}, bytesOut: map[string]int64{},
		kick: make(chan struct{}, 1), obs: make(chan struct{}, 1), apply: make(chan struct{}, 1), save: make(chan struct{}, 1)}
}

func TestDataPlaneRefusesUnauthenticatedRequests(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	now := time.Now()
	offer := crdt.EncodeEntries([]crdt.Entry{{Key: crdt.Key{Repo: "r", Kind: crdt.Manifest, Name: "sha256:aa"}, Stamp: crdt.Stamp{Wall: 1, Node: "a"}}})
	req := func(mut func(r *http.Request)) *http.Request {
		r := httptest.NewRequest(http.MethodPost, routeOffer, bytes.NewReader(offer))
		sign(r, authKey(key), "a", "b", offer, now)
		if mut != nil {
			mut(r)
		}
		return r
	}
	cases := []struct {
		name string
		r    *http.Request
		code int
	}{
		{"no MAC", req(func(r *http.Request) { r.Header.Del(HeaderMAC) }), 401},
		{"no headers", httptest.NewRequest(http.MethodPost, routeOffer, bytes.NewReader(offer)), 401},
		{"bad MAC", req(func(r *http.Request) { r.Header.Set(HeaderMAC, "00"+r.Header.Get(HeaderMAC)[2:]) }), 401},
		{"other key", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, routeOffer, bytes.NewReader(offer))
			sign(r, authKey(bytes.Repeat([]byte{8}, 32)), "a", "b", offer, now)
			return r
		}(), 401},
		{"other path", req(func(r *http.Request) { r.URL.Path = routeEntries }), 401},
		{"other name", req(func(r *http.Request) { r.Header.Set(HeaderName, "c") }), 401},
		{"stale", req(func(r *http.Request) {
			r.Header.Set(HeaderTime, strconv.FormatInt(now.Add(-6*time.Minute).UnixMilli(), 10))
		}), 401},
		{"body changed", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, routeOffer, bytes.NewReader(append(append([]byte{}, offer...), 'x')))
			sign(r, authKey(key), "a", "b", offer, now)
			return r
		}(), 401},
	}
	n := authNode(key, func() time.Time { return now })
	h := n.handler()
	for _, c := range cases {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, c.r)
		if w.Code != c.code {
			t.Errorf("%s: status %d, want %d (%s)", c.name, w.Code, c.code, w.Body)
		}
		if n.rep.Len() != 0 {
			t.Fatalf("%s: the offer was processed", c.name)
		}
	}
	// A good request is processed; the same request again is a replay.
	good := req(nil)
	replay := httptest.NewRequest(http.MethodPost, routeOffer, bytes.NewReader(offer))
	replay.Header = good.Header.Clone()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, good)
	if w.Code != 200 || n.rep.Len() != 1 {
		t.Fatalf("a good offer: %d %s, %d registers", w.Code, w.Body, n.rep.Len())
	}
	n.rep = NewReplica("b", func() time.Time { return now })
	w = httptest.NewRecorder()
	h.ServeHTTP(w, replay)
	if w.Code != 401 || n.rep.Len() != 0 {
		t.Fatalf("a replayed offer: %d %s, %d registers", w.Code, w.Body, n.rep.Len())
	}
	if n.authFail != uint64(len(cases))+1 {
		t.Fatalf("auth failures counted %d, want %d", n.authFail, len(cases)+1)
	}
}
