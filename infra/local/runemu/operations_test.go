package runemu_test

import (
	"errors"
	"testing"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"

	"github.com/ai-square/coalmine/infra/local/runemu"
)

// TestOperationsAPI exercises the google.longrunning methods the client exposes.
func TestOperationsAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, runemu.Options{})
	ctx := testCtx(t)
	op, err := e.svcs.CreateService(ctx, &runpb.CreateServiceRequest{Parent: e.parent, ServiceId: "svc", Service: &runpb.Service{Template: template("", imageA)}})
	if err != nil {
		t.Fatalf("CreateService: %v", err)
	}
	waited, err := e.svcs.WaitOperation(ctx, &longrunningpb.WaitOperationRequest{Name: op.Name()})
	if err != nil || !waited.GetDone() || waited.GetResponse() == nil {
		t.Fatalf("WaitOperation: %v, %v; want a done operation with a response", waited, err)
	}
	got, err := e.svcs.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: op.Name()})
	if err != nil || !got.GetDone() {
		t.Fatalf("GetOperation: %v, %v; want done", got, err)
	}
	// The operation can be resumed by name, as another process would.
	resumed, err := e.svcs.CreateServiceOperation(op.Name()).Wait(ctx)
	if err != nil || resumed.GetName() != e.serviceName("svc") {
		t.Fatalf("CreateServiceOperation(%s).Wait: %v, %v", op.Name(), resumed, err)
	}
	it := e.svcs.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Name: e.parent})
	n := 0
	for {
		o, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("ListOperations: %v", err)
		}
		if o.GetName() == op.Name() {
			n++
		}
	}
	if n != 1 {
		t.Errorf("ListOperations listed the create operation %d times, want 1", n)
	}
	if err := e.svcs.DeleteOperation(ctx, &longrunningpb.DeleteOperationRequest{Name: op.Name()}); err != nil {
		t.Fatalf("DeleteOperation: %v", err)
	}
	if _, err := e.svcs.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: op.Name()}); codeOf(err) != codes.NotFound {
		t.Errorf("GetOperation after delete: %v, want NotFound", err)
	}
}
