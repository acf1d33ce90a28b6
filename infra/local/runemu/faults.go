package runemu

import (
	"context"
	"fmt"
	"path"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Fault changes how the emulator answers calls of one RPC method, for tests.
type Fault struct {
	// Code is the error returned; codes.OK means no error (only Delay/Hold apply).
	Code codes.Code
	// Message is the error message; empty uses a generic "injected fault" message.
	Message string
	// Times is how many calls the fault applies to; 0 applies it until ClearFaults.
	Times int
	// Delay is added before the call is handled.
	Delay time.Duration
	// Hold, when not nil, blocks the call until it is closed or the caller gives up.
	Hold chan struct{}
	// After runs the real handler first and then returns the error: the write happened,
	// the caller sees a failure.
	After bool
}

// faultSet is the state behind the fault-injecting unary interceptor.
type faultSet struct {
	mu      sync.Mutex
	faults  map[string][]*faultEntry
	calls   map[string]int
	latency time.Duration
}

type faultEntry struct {
	f    Fault
	left int // calls left; <=0 with f.Times==0 means unlimited
}

func newFaultSet() *faultSet {
	return &faultSet{faults: make(map[string][]*faultEntry), calls: make(map[string]int)}
}

// InjectFault queues f for calls of method, the short RPC name ("UpdateService",
// "GetService", "GetOperation", …). Faults of one method apply in the order injected: a
// fault with Times > 0 applies to that many calls, then the next one takes over.
func (s *Server) InjectFault(method string, f Fault) {
	fs := s.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.faults[method] = append(fs.faults[method], &faultEntry{f: f, left: f.Times})
}

// ClearFaults removes every injected fault and the added latency (SetLatency).
func (s *Server) ClearFaults() {
	fs := s.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	clear(fs.faults)
	fs.latency = 0
}

// Calls returns how many calls of method (short RPC name) the emulator received, faulted
// ones included.
func (s *Server) Calls(method string) int {
	fs := s.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.calls[method]
}

// SetLatency adds d to every RPC (0 removes it).
func (s *Server) SetLatency(d time.Duration) {
	fs := s.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.latency = d
}

// take counts a call of method and returns the fault that applies to it, if any.
func (fs *faultSet) take(method string) (*Fault, time.Duration) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.calls[method]++
	q := fs.faults[method]
	if len(q) == 0 {
		return nil, fs.latency
	}
	e := q[0]
	f := e.f
	if e.f.Times > 0 {
		e.left--
		if e.left <= 0 {
			fs.faults[method] = q[1:]
		}
	}
	return &f, fs.latency
}

// unary is the gRPC interceptor applying latency and faults.
func (fs *faultSet) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := path.Base(info.FullMethod)
	f, latency := fs.take(method)
	if err := sleepCtx(ctx, latency); err != nil {
		return nil, err
	}
	if f == nil {
		return handler(ctx, req)
	}
	if err := sleepCtx(ctx, f.Delay); err != nil {
		return nil, err
	}
	if f.Hold != nil {
		select {
		case <-f.Hold:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if f.Code == codes.OK {
		return handler(ctx, req)
	}
	msg := f.Message
	if msg == "" {
		msg = fmt.Sprintf("injected fault: %s %s", method, f.Code)
	}
	if f.After {
		_, _ = handler(ctx, req)
	}
	return nil, status.Error(f.Code, msg)
}

// sleepCtx sleeps d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}
