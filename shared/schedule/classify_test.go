package schedule

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestClassify: which gRPC codes are permanent, and NOT_FOUND only where it means the
// location.
func TestClassify(t *testing.T) {
	tests := []struct {
		code              codes.Code
		onLocation, onJob bool // permanent when the call is on the location / on a job
	}{
		{codes.InvalidArgument, true, true},
		{codes.PermissionDenied, true, true},
		{codes.FailedPrecondition, true, true},
		{codes.Unimplemented, true, true},
		{codes.NotFound, true, false},
		{codes.Unavailable, false, false},
		{codes.DeadlineExceeded, false, false},
		{codes.ResourceExhausted, false, false},
		{codes.Aborted, false, false},
		{codes.Internal, false, false},
		{codes.Unknown, false, false},
		{codes.AlreadyExists, false, false},
	}
	for _, tt := range tests {
		err := fmt.Errorf("call: %w", status.Error(tt.code, "x"))
		for _, c := range []struct {
			location, want bool
		}{{true, tt.onLocation}, {false, tt.onJob}} {
			got := classify(err, c.location)
			if errors.Is(got, ErrPermanent) != c.want || Transient(got) == c.want {
				t.Errorf("classify(%v, location %v) = %v (transient %v), want permanent %v", tt.code, c.location, got, Transient(got), c.want)
			}
			if status.Code(got) != tt.code {
				t.Errorf("classify(%v) lost the code: %v", tt.code, status.Code(got))
			}
		}
	}
	if Transient(status.Error(codes.Canceled, "cancelled")) {
		t.Errorf("a cancelled call is transient")
	}
}
