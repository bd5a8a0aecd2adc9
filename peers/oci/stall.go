package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// stallTransport abandons a request that makes too little progress: each window of d must bring
// the response headers or at least min bytes of the body. A hung or slowloris registry would
// otherwise hold the round forever (the node gives Apply no deadline).
type stallTransport struct {
	rt  http.RoundTripper
	d   time.Duration
	min int64 // bytes per window
}

// errStalled is the cause of a request abandoned by stallTransport.
var errStalled = errors.New("stalled")

func (s *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{cancel: cancel, d: s.d, min: s.min}
	w.start()
	resp, err := s.rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		w.stop()
		if c := context.Cause(ctx); errors.Is(c, errStalled) {
			return nil, c
		}
		return nil, err
	}
	w.progress(s.min) // the headers are a window's progress
	resp.Body = &watchedBody{rc: resp.Body, w: w, ctx: ctx}
	return resp, nil
}

type watchdog struct {
	cancel context.CancelCauseFunc
	d      time.Duration
	min    int64
	n      atomic.Int64 // bytes in the current window

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func (w *watchdog) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = time.AfterFunc(w.d, w.check)
}

func (w *watchdog) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if n := w.n.Swap(0); n < w.min {
		w.stopped = true
		w.cancel(fmt.Errorf("%w: %d bytes in %v, want at least %d", errStalled, n, w.d, w.min))
		return
	}
	w.t.Reset(w.d)
}

func (w *watchdog) progress(n int64) { w.n.Add(n) }

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.t != nil {
		w.t.Stop()
	}
	w.cancel(nil)
}

type watchedBody struct {
	rc  io.ReadCloser
	w   *watchdog
	ctx context.Context
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.w.progress(int64(n))
	if err != nil && err != io.EOF {
		if c := context.Cause(b.ctx); errors.Is(c, errStalled) {
			return n, c
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	b.w.stop()
	return err
}
