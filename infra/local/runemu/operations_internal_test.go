package runemu

import (
	"testing"

	"google.golang.org/protobuf/types/known/emptypb"
)

func TestOpStoreKeepsBoundedDoneOperations(t *testing.T) {
	st := newOpStore(3)
	pending := st.create("p", nil)
	var done []*operation
	for range 5 {
		op := st.create("p", nil)
		st.finish(op, &emptypb.Empty{}, nil)
		done = append(done, op)
	}
	if _, ok := st.lookup(pending.pb.Name); !ok {
		t.Error("the pending operation was evicted")
	}
	for i, op := range done {
		_, ok := st.lookup(op.pb.Name)
		if want := i >= 2; ok != want {
			t.Errorf("done operation %d kept = %v, want %v", i, ok, want)
		}
	}
	if st.nDone != 3 {
		t.Errorf("nDone = %d, want 3", st.nDone)
	}
	st.finish(pending, nil, nil)
	if _, ok := st.lookup(pending.pb.Name); !ok {
		t.Error("an operation was forgotten as soon as it finished")
	}
	if _, ok := st.lookup(done[2].pb.Name); ok {
		t.Error("the operation that finished first was kept after another finished")
	}
	if len(st.ops) != 3 {
		t.Errorf("kept %d operations, want 3", len(st.ops))
	}
}
