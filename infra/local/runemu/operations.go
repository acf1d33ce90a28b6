package runemu

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// DefaultMaxDoneOperations is how many finished operations are kept when
// Options.MaxDoneOperations is zero; the oldest finished ones are forgotten first.
const DefaultMaxDoneOperations = 1000

// operation is one long-running operation.
type operation struct {
	pb   *longrunningpb.Operation // guarded by opStore.mu
	done chan struct{}
}

// opStore keeps operations by name, in creation order, bounded in finished ones.
type opStore struct {
	mu        sync.Mutex
	ops       map[string]*operation
	order     []string // creation order (may name forgotten operations)
	doneOrder []string // finish order (may name forgotten operations)
	maxDone   int
	nDone     int
}

func newOpStore(maxDone int) *opStore {
	return &opStore{ops: make(map[string]*operation), maxDone: maxDone}
}

// newUUID returns a random RFC 4122 version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// create starts a pending operation under parent ("projects/P/locations/L") with metadata.
func (st *opStore) create(parent string, metadata proto.Message) *operation {
	op := &operation{
		pb:   &longrunningpb.Operation{Name: parent + "/operations/" + newUUID()},
		done: make(chan struct{}),
	}
	if metadata != nil {
		if md, err := anypb.New(metadata); err == nil {
			op.pb.Metadata = md
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.ops[op.pb.Name] = op
	st.order = append(st.order, op.pb.Name)
	return op
}

// finish completes op with resp, or with err when err is not nil. Finishing twice is a no-op.
func (st *opStore) finish(op *operation, resp proto.Message, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if op.pb.Done {
		return
	}
	op.pb.Done = true
	if err != nil {
		op.pb.Result = &longrunningpb.Operation_Error{Error: status.Convert(err).Proto()}
	} else if resp != nil {
		a, aerr := anypb.New(resp)
		if aerr != nil {
			op.pb.Result = &longrunningpb.Operation_Error{Error: status.New(codes.Internal, aerr.Error()).Proto()}
		} else {
			op.pb.Result = &longrunningpb.Operation_Response{Response: a}
		}
	}
	close(op.done)
	if _, kept := st.ops[op.pb.Name]; kept {
		st.nDone++
		st.doneOrder = append(st.doneOrder, op.pb.Name)
		st.evictLocked()
	}
}

// evictLocked forgets the operations that finished first beyond maxDone, and compacts
// the creation order.
func (st *opStore) evictLocked() {
	for st.nDone > st.maxDone && len(st.doneOrder) > 0 {
		name := st.doneOrder[0]
		st.doneOrder[0] = ""
		st.doneOrder = st.doneOrder[1:]
		if _, ok := st.ops[name]; ok {
			delete(st.ops, name)
			st.nDone--
		}
	}
	if len(st.order) > 2*len(st.ops)+16 {
		kept := make([]string, 0, len(st.ops))
		for _, name := range st.order {
			if _, ok := st.ops[name]; ok {
				kept = append(kept, name)
			}
		}
		st.order = kept
	}
}

// snapshot returns a copy of op's current state.
func (st *opStore) snapshot(op *operation) *longrunningpb.Operation {
	st.mu.Lock()
	defer st.mu.Unlock()
	return proto.CloneOf(op.pb)
}

func (st *opStore) lookup(name string) (*operation, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	op, ok := st.ops[name]
	return op, ok
}

// operationsAPI implements google.longrunning.Operations.
type operationsAPI struct {
	longrunningpb.UnimplementedOperationsServer
	s *Server
}

func (a operationsAPI) find(name string) (*operation, error) {
	prefix := a.s.parent() + "/operations/"
	if !strings.HasPrefix(name, prefix) || len(name) == len(prefix) {
		return nil, status.Errorf(codes.InvalidArgument, "name: want %s{operation}, got %q", prefix, name)
	}
	op, ok := a.s.ops.lookup(name)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Operation %s not found.", name)
	}
	return op, nil
}

// GetOperation returns an operation's current state (after Options.OperationPollHold
// at most, when set and the operation is pending).
func (a operationsAPI) GetOperation(ctx context.Context, req *longrunningpb.GetOperationRequest) (*longrunningpb.Operation, error) {
	op, err := a.find(req.GetName())
	if err != nil {
		return nil, err
	}
	if hold := a.s.opts.OperationPollHold; hold > 0 {
		t := time.NewTimer(hold)
		defer t.Stop()
		select {
		case <-op.done:
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return a.s.ops.snapshot(op), nil
}

// WaitOperation waits until the operation is done, the request's timeout passes or the
// caller gives up, and returns its state then.
func (a operationsAPI) WaitOperation(ctx context.Context, req *longrunningpb.WaitOperationRequest) (*longrunningpb.Operation, error) {
	op, err := a.find(req.GetName())
	if err != nil {
		return nil, err
	}
	var timeout <-chan time.Time
	if d := req.GetTimeout().AsDuration(); req.GetTimeout() != nil && d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-op.done:
	case <-timeout:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return a.s.ops.snapshot(op), nil
}

// ListOperations lists the kept operations of the configured location, newest first.
// The filter is ignored.
func (a operationsAPI) ListOperations(_ context.Context, req *longrunningpb.ListOperationsRequest) (*longrunningpb.ListOperationsResponse, error) {
	if err := a.s.checkParent(req.GetName(), "name"); err != nil {
		return nil, err
	}
	st := a.s.ops
	st.mu.Lock()
	all := make([]*longrunningpb.Operation, 0, len(st.order))
	for i := len(st.order) - 1; i >= 0; i-- {
		if op, ok := st.ops[st.order[i]]; ok {
			all = append(all, proto.CloneOf(op.pb))
		}
	}
	st.mu.Unlock()
	page, next, err := paginate(all, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &longrunningpb.ListOperationsResponse{Operations: page, NextPageToken: next}, nil
}

// DeleteOperation forgets an operation (it keeps running if it was not done).
func (a operationsAPI) DeleteOperation(_ context.Context, req *longrunningpb.DeleteOperationRequest) (*emptypb.Empty, error) {
	op, err := a.find(req.GetName())
	if err != nil {
		return nil, err
	}
	st := a.s.ops
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.ops[op.pb.Name]; ok {
		delete(st.ops, op.pb.Name)
		if op.pb.Done {
			st.nDone--
		}
	}
	return &emptypb.Empty{}, nil
}
