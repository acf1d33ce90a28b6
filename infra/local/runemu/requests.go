package runemu

import (
	"sync"
	"time"
)

// DefaultRequestBuffer is how many requests are kept per service when Options.RequestBuffer
// is zero.
const DefaultRequestBuffer = 100_000

// Request is one HTTP request served (or refused) by a service's front proxy.
type Request struct {
	// Service is the service id (short name).
	Service string
	// Revision is the short name of the revision that served it; empty when none could.
	Revision string
	// Time is when the proxy received the request.
	Time time.Time
	// Status is the HTTP status returned to the client.
	Status int
	// Latency is the time from receipt to the end of the response, as the proxy saw it.
	Latency time.Duration
	// Tag is the traffic tag whose URL received the request; empty for the service URL.
	Tag string
	// Reached says whether the request reached the revision's process: false when no ready
	// revision could serve it or its process could not be connected to (the proxy answered
	// 503 or 502 itself). Cloud Run's request_count counts only requests that reached a
	// container.
	Reached bool
}

// requestLog keeps the most recent requests per service and fans them out to subscribers.
type requestLog struct {
	mu    sync.Mutex
	cap   int
	rings map[string]*requestRing
	subs  map[uint64]func(Request)
	next  uint64
}

func newRequestLog(capacity int) *requestLog {
	return &requestLog{cap: capacity, rings: make(map[string]*requestRing), subs: make(map[uint64]func(Request))}
}

// record stores r and calls every subscriber (outside the lock, in the caller's goroutine).
func (l *requestLog) record(r Request) {
	l.mu.Lock()
	ring := l.rings[r.Service]
	if ring == nil {
		ring = &requestRing{buf: make([]Request, 0, min(l.cap, 1024)), cap: l.cap}
		l.rings[r.Service] = ring
	}
	ring.add(r)
	subs := make([]func(Request), 0, len(l.subs))
	for _, fn := range l.subs {
		subs = append(subs, fn)
	}
	l.mu.Unlock()
	for _, fn := range subs {
		fn(r)
	}
}

// list returns service's kept requests, oldest first.
func (l *requestLog) list(service string) []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	ring := l.rings[service]
	if ring == nil {
		return nil
	}
	return ring.all()
}

// subscribe adds fn and returns a function that removes it.
func (l *requestLog) subscribe(fn func(Request)) func() {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := l.next
	l.next++
	l.subs[id] = fn
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.subs, id)
	}
}

// requestRing is a bounded ring buffer of requests.
type requestRing struct {
	buf   []Request
	cap   int
	start int // index of the oldest entry once full
}

func (r *requestRing) add(x Request) {
	if len(r.buf) < r.cap {
		r.buf = append(r.buf, x)
		return
	}
	r.buf[r.start] = x
	r.start = (r.start + 1) % r.cap
}

func (r *requestRing) all() []Request {
	out := make([]Request, 0, len(r.buf))
	out = append(out, r.buf[r.start:]...)
	return append(out, r.buf[:r.start]...)
}
