package tracker

import "sync"

// eventQueue delivers events to one callback, in order, from its own goroutine, so that FUSE
// operations never wait for observers.
type eventQueue struct {
	fn     func(Event)
	mu     sync.Mutex // guards the fields below
	cond   *sync.Cond
	q      []Event
	active bool // the goroutine is delivering a batch
	closed bool
	done   chan struct{}
}

func newEventQueue(fn func(Event)) *eventQueue {
	e := &eventQueue{fn: fn, done: make(chan struct{})}
	e.cond = sync.NewCond(&e.mu)
	if fn == nil {
		close(e.done)
		return e
	}
	go e.run()
	return e
}

func (e *eventQueue) push(ev Event) {
	if e.fn == nil {
		return
	}
	e.mu.Lock()
	e.q = append(e.q, ev)
	e.mu.Unlock()
	e.cond.Broadcast()
}

func (e *eventQueue) run() {
	defer close(e.done)
	e.mu.Lock()
	for {
		for len(e.q) == 0 && !e.closed {
			e.cond.Wait()
		}
		if len(e.q) == 0 && e.closed {
			e.mu.Unlock()
			return
		}
		batch := e.q
		e.q = nil
		e.active = true
		e.mu.Unlock()
		for _, ev := range batch {
			e.fn(ev)
		}
		e.mu.Lock()
		e.active = false
		e.cond.Broadcast()
	}
}

// wait blocks until everything pushed so far was delivered.
func (e *eventQueue) wait() {
	if e.fn == nil {
		return
	}
	e.mu.Lock()
	for (len(e.q) > 0 || e.active) && !e.closed {
		e.cond.Wait()
	}
	e.mu.Unlock()
}

func (e *eventQueue) close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cond.Broadcast()
	<-e.done
}
