package peers

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/peers/crdt"
)

// TestUnauthenticatedRequestRefusedBeforeItsBody: a sender without the key announces a 16 MiB
// body and trickles it. The node must refuse it from the headers alone, at once, instead of
// reading (and holding) the body first: were the MAC checked only after up to 16 MiB had been
// read, anyone who could reach the port would hold a handler and its buffer for the whole read
// timeout per connection.
func TestUnauthenticatedRequestRefusedBeforeItsBody(t *testing.T) {
	n := authNode(testKey, time.Now)
	srv := httptest.NewServer(n.handler())
	t.Cleanup(srv.CloseClientConnections)
	forged := func() string { // well-formed, fresh, and wrong
		ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
		return HeaderTime + ": " + ts + "\r\n" + HeaderNonce + ": " + strings.Repeat("ab", 16) + "\r\n" +
			HeaderName + ": a\r\n" + HeaderTo + ": b\r\n" + HeaderBody + ": " + strings.Repeat("00", 32) + "\r\n" +
			HeaderMAC + ": " + strings.Repeat("11", 32) + "\r\n"
	}
	for _, c := range []struct{ name, headers string }{{"no headers", ""}, {"forged headers", forged()}} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n", routeOffer, maxBody, c.headers)
		_, _ = conn.Write(make([]byte, 1024)) // and then nothing more
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil || !strings.Contains(line, " 401 ") {
			t.Errorf("%s: answer %q, %v: want a 401 before the body is read", c.name, line, err)
		}
	}
}

// TestCapturedRequestCannotBeReplayedToAnotherNode: a request a signed for b, captured on the
// (unencrypted) data plane, is refused by every other member. Each keeps its own nonce cache, so
// only the MAC covering whom the request is for stops the replay.
func TestCapturedRequestCannotBeReplayedToAnotherNode(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	b, c := authNode(testKey, clock), authNode(testKey, clock)
	c.set.Name = "c"
	offer := crdt.EncodeEntries([]crdt.Entry{{Key: crdt.Key{Repo: "r", Kind: crdt.Manifest, Name: "sha256:aa"}, Stamp: crdt.Stamp{Wall: now.UnixMilli(), Node: "a"}}})
	r := httptest.NewRequest(http.MethodPost, routeOffer, bytes.NewReader(offer))
	sign(r, authKey(testKey), "a", "b", offer, now)
	replay := httptest.NewRequest(http.MethodPost, routeOffer, bytes.NewReader(offer))
	replay.Header = r.Header.Clone()

	w := httptest.NewRecorder()
	b.handler().ServeHTTP(w, r)
	if w.Code != http.StatusOK || b.rep.Len() != 1 {
		t.Fatalf("the request to b: %d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	c.handler().ServeHTTP(w, replay)
	if w.Code != http.StatusUnauthorized || c.rep.Len() != 0 || c.authFail != 1 {
		t.Fatalf("b's request replayed to c: %d %s, %d registers merged, %d auth failures", w.Code, w.Body, c.rep.Len(), c.authFail)
	}
}

// TestOversizeAuthenticatedBodyIsRefused: even a member with the key cannot make a node take
// more than maxBody bytes, and nothing of such a request is merged.
func TestOversizeAuthenticatedBodyIsRefused(t *testing.T) {
	now := time.Now()
	n := authNode(testKey, func() time.Time { return now })
	body := make([]byte, maxBody+1)
	r := httptest.NewRequest(http.MethodPost, routeOffer, bytes.NewReader(body))
	sign(r, authKey(testKey), "a", "b", body, now)
	w := httptest.NewRecorder()
	n.handler().ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge || n.rep.Len() != 0 {
		t.Fatalf("a %d-byte body: %d %s", len(body), w.Code, w.Body)
	}
}

// TestCompressedAnswerBombIsBounded: a peer answering with a gzip body that inflates to
// 256 MiB (Go's client inflates transparently) costs the caller at most the 16 MiB answer limit
// (and the answer fails), not the inflated size.
func TestCompressedAnswerBombIsBounded(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zero := make([]byte, 1<<20)
	for range 256 {
		_, _ = zw.Write(zero)
	}
	_ = zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(gz.Bytes())
	}))
	defer srv.Close()
	n := authNode(testKey, time.Now)
	n.http = &http.Client{Transport: &http.Transport{}}
	cl := client{n: n, peer: "a", addr: strings.TrimPrefix(srv.URL, "http://")}
	var err error
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = cl.call(t.Context(), routeSummaries, crdt.EncodePaths([]crdt.Path{""}))
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a 256 MiB answer was taken")
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 8*maxBody { // io.ReadAll doubling, and the race detector's own; the inflated size is 16x the limit
		t.Fatalf("a %d-byte gzip answer made the caller allocate %d bytes", gz.Len(), got)
	}
}
