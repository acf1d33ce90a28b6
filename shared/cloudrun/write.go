package cloudrun

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"

	"github.com/ai-square/coalmine/shared/rollout"
)

// write is the only way coalmine changes a service: ONE UpdateService that
// sets the traffic the next state describes, the state annotation and (when
// tmpl is not nil) the template, carrying the etag that was read. Before it
// the service is read again and must still have the etag and the state
// generation of svc; after it the service must hold next's generation. Any
// difference is ErrConflict: someone else wrote in between.
//
// With tmpl nil the template goes back exactly as read, revision name
// included, so Cloud Run creates no revision; if Cloud Run refuses it, the
// write fails. Only with copyIfRefused, when Cloud Run refuses tmpl's
// revision name (ALREADY_EXISTS: that revision has another configuration),
// is tmpl sent again without a name, and Cloud Run creates a revision of it.
func (c *Client) write(ctx context.Context, svc *Service, next rollout.State, tmpl *runpb.RevisionTemplate, copyIfRefused bool) (*Service, error) {
	if next.Generation != svc.State.Generation+1 {
		return nil, fmt.Errorf("write %s: state generation %d does not follow %d: %w", svc.Name, next.Generation, svc.State.Generation, ErrInvalid)
	}
	enc, err := rollout.Encode(next)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w: %w", svc.Name, ErrInvalid, err)
	}
	cur, err := c.services.GetService(ctx, &runpb.GetServiceRequest{Name: svc.FullName})
	if err != nil {
		return nil, classify("write "+svc.Name+": read before write", err)
	}
	curState, err := rollout.Decode(cur.GetAnnotations()[rollout.AnnotationKey])
	if err != nil {
		return nil, fmt.Errorf("write %s: %w: %w", svc.Name, ErrState, err)
	}
	if cur.GetEtag() != svc.Etag || curState.Generation != svc.State.Generation {
		return nil, fmt.Errorf("write %s: read etag %s generation %d, now etag %s generation %d: %w",
			svc.Name, svc.Etag, svc.State.Generation, cur.GetEtag(), curState.Generation, ErrConflict)
	}
	upd := proto.Clone(cur).(*runpb.Service)
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	upd.Annotations[rollout.AnnotationKey] = enc
	upd.Traffic = trafficFor(next, cur)
	if tmpl != nil {
		upd.Template = tmpl
	}
	op, err := c.services.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: upd})
	if copyIfRefused && tmpl != nil && isAlreadyExists(err) && upd.GetTemplate().GetRevision() != "" {
		// Cloud Run refuses a template whose explicit revision name already
		// exists with another configuration (it may have filled in defaults
		// the stored revision lacks): send it without a name.
		upd.Template.Revision = ""
		op, err = c.services.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: upd})
	}
	if grpcCode(err) == codes.FailedPrecondition {
		// Older APIs answer an etag mismatch with FAILED_PRECONDITION.
		return nil, fmt.Errorf("write %s: %w: %w", svc.Name, ErrConflict, err)
	}
	if err != nil {
		return nil, classify("write "+svc.Name, err)
	}
	if err := c.wait(ctx, op); err != nil {
		return nil, err
	}
	after, err := c.Read(ctx, svc.Name)
	if err != nil {
		return nil, err
	}
	// The state written must be the state read back, to the byte: two
	// writers that both read generation N both write N+1, and only the
	// content tells whose write stuck if Cloud Run did not enforce the etag.
	if got := after.raw.GetAnnotations()[rollout.AnnotationKey]; got != enc {
		return nil, fmt.Errorf("write %s: wrote generation %d, service has generation %d written by someone else: %w", svc.Name, next.Generation, after.State.Generation, ErrConflict)
	}
	return after, nil
}

// grpcCode is the gRPC code of err (wrapped or not), codes.OK for nil.
func grpcCode(err error) codes.Code {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Code()
	}
	return status.Code(err)
}

// opError is the error a long-running operation finished with.
type opError struct{ err error }

func (e *opError) Error() string   { return "operation failed: " + e.err.Error() }
func (e *opError) Unwrap() []error { return []error{ErrNotServed, e.err} }

// wait polls an update until it is done, at the client's poll interval.
func (c *Client) wait(ctx context.Context, op *run.UpdateServiceOperation) error {
	for {
		_, err := op.Poll(ctx)
		if err != nil {
			if op.Done() {
				return &opError{err: classify("update", err)}
			}
			return classify("poll update", err)
		}
		if op.Done() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for update: %w", ctx.Err())
		case <-time.After(c.poll):
		}
	}
}

// trafficFor turns the state's split into traffic targets, pinned to named
// revisions, and keeps any 0% target with a tag coalmine does not own.
// A state that describes no split (a rollout stopped for an outside
// change) leaves the service's traffic exactly as it is.
func trafficFor(next rollout.State, cur *runpb.Service) []*runpb.TrafficTarget {
	if len(next.Traffic()) == 0 {
		var keep []*runpb.TrafficTarget
		for _, t := range cur.GetTraffic() {
			keep = append(keep, proto.Clone(t).(*runpb.TrafficTarget))
		}
		return keep
	}
	var out []*runpb.TrafficTarget
	ours := map[string]bool{}
	for _, t := range next.Traffic() {
		ours[t.Revision] = true
		out = append(out, &runpb.TrafficTarget{
			Type:     runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
			Revision: t.Revision, Percent: int32(t.Percent), Tag: t.Tag,
		})
	}
	for _, t := range cur.GetTraffic() {
		if t.GetTag() == "" || rollout.OwnedTag(t.GetTag()) || t.GetPercent() != 0 || t.GetRevision() == "" {
			continue
		}
		out = append(out, &runpb.TrafficTarget{
			Type:     runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
			Revision: shortName(t.GetRevision()), Percent: 0, Tag: t.GetTag(),
		})
	}
	return out
}
