package cloudrun

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors, classified so that callers decide between redelivery and giving
// up with errors.Is and Transient, never by matching messages.
var (
	// ErrConflict: the service changed since it was read (etag or state
	// generation); read again and decide again. Transient.
	ErrConflict = errors.New("cloudrun: service changed since it was read")
	// ErrNotFound: the service (or revision) does not exist. Permanent.
	ErrNotFound = errors.New("cloudrun: not found")
	// ErrRevisionFailed: a revision could not start or become ready.
	// Permanent for the rollout that created it.
	ErrRevisionFailed = errors.New("cloudrun: revision failed")
	// ErrNoStable: the service has no single revision serving all traffic,
	// so there is nothing to roll back to. Permanent until an operator
	// fixes the split.
	ErrNoStable = errors.New("cloudrun: no single stable revision")
	// ErrState: the rollout state annotation is unreadable. Permanent.
	ErrState = errors.New("cloudrun: rollout state unreadable")
	// ErrInvalid: Cloud Run refused the request as invalid. Permanent.
	ErrInvalid = errors.New("cloudrun: request refused as invalid")
	// ErrNotServed: Cloud Run accepted an update and stored it (the
	// service's spec and annotations, the rollout state included, are the
	// ones written) but its operation failed: what it serves is still what
	// it served before. The caller must put the state back. Whether a retry
	// helps is the wrapped error's to say.
	ErrNotServed = errors.New("cloudrun: update stored but not served")
)

// transientCodes are the gRPC codes worth retrying.
var transientCodes = map[codes.Code]bool{
	codes.Unavailable:       true,
	codes.DeadlineExceeded:  true,
	codes.ResourceExhausted: true,
	codes.Aborted:           true,
	codes.Internal:          true,
	codes.Unknown:           true,
}

// Transient reports whether err is worth retrying (by redelivering the
// command): conflicts, unavailability, timeouts and quota errors.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrConflict) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, perm := range []error{ErrNotFound, ErrRevisionFailed, ErrNoStable, ErrState, ErrInvalid, context.Canceled} {
		if errors.Is(err, perm) {
			return false
		}
	}
	if s, ok := status.FromError(err); ok {
		return transientCodes[s.Code()]
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return transientCodes[se.GRPCStatus().Code()]
	}
	return true // an unknown failure (network) is retried; the step deadline bounds it
}

// classify wraps a gRPC error from an API call with the matching sentinel.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	code := status.Code(err)
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		code = se.GRPCStatus().Code()
	}
	switch code {
	case codes.NotFound:
		return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
	case codes.Aborted:
		return fmt.Errorf("%s: %w: %w", what, ErrConflict, err)
	case codes.InvalidArgument, codes.AlreadyExists, codes.FailedPrecondition, codes.OutOfRange:
		return fmt.Errorf("%s: %w: %w", what, ErrInvalid, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
