package cloudrun

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
)

// Revision is what a rollout needs to know about a revision.
type Revision struct {
	Name  string // short name
	Image string
	// Ready: the Ready condition succeeded. Failed: it failed for good.
	// Neither: still starting.
	Ready   bool
	Failed  bool
	Reason  string
	Message string
}

// Why returns a one-line explanation of a failed revision.
func (r *Revision) Why() string {
	switch {
	case r.Reason != "" && r.Message != "":
		return r.Reason + ": " + r.Message
	case r.Reason != "":
		return r.Reason
	case r.Message != "":
		return r.Message
	}
	return "no reason given"
}

// Revision reads one revision of a service.
func (c *Client) Revision(ctx context.Context, service, revision string) (*Revision, error) {
	raw, err := c.revisions.GetRevision(ctx, &runpb.GetRevisionRequest{Name: c.RevisionName(service, revision)})
	if err != nil {
		return nil, classify("read revision "+revision, err)
	}
	return revisionFromProto(raw), nil
}

func revisionFromProto(raw *runpb.Revision) *Revision {
	r := &Revision{Name: shortName(raw.GetName())}
	if cs := raw.GetContainers(); len(cs) > 0 {
		r.Image = cs[0].GetImage()
	}
	for _, cond := range raw.GetConditions() {
		if cond.GetType() != "Ready" {
			continue
		}
		r.Message = cond.GetMessage()
		switch {
		case cond.GetRevisionReason() != runpb.Condition_REVISION_REASON_UNDEFINED:
			r.Reason = cond.GetRevisionReason().String()
		case cond.GetReason() != runpb.Condition_COMMON_REASON_UNDEFINED:
			r.Reason = cond.GetReason().String()
		}
		switch cond.GetState() {
		case runpb.Condition_CONDITION_SUCCEEDED:
			r.Ready = true
		case runpb.Condition_CONDITION_FAILED:
			r.Failed = true
		}
	}
	return r
}

// WaitRevision polls a revision until it is Ready (nil) or has failed
// (ErrRevisionFailed, with Cloud Run's reason), or ctx ends.
func (c *Client) WaitRevision(ctx context.Context, service, revision string) (*Revision, error) {
	for {
		r, err := c.Revision(ctx, service, revision)
		if err != nil {
			return nil, err
		}
		if r.Ready {
			return r, nil
		}
		if r.Failed {
			return r, fmt.Errorf("revision %s: %w: %s", revision, ErrRevisionFailed, r.Why())
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("waiting for revision %s: %w", revision, ctx.Err())
		case <-time.After(c.poll):
		}
	}
}

// maxRevisionName is the longest revision name Cloud Run accepts (a DNS label).
const maxRevisionName = 63

// CanaryName returns the canary revision's name for a rollout: explicit
// (so a redelivered deploy names the same revision and creates nothing
// new), starting with the service name as Cloud Run requires, unique per
// claim (a retry of the same digest gets a new revision), and at most 63
// characters: SERVICE-DIGEST-CLAIM, the claim generation in base 36 and
// the digest cut to 4-7 hex digits to fit.
func CanaryName(service, digest string, claimed int64) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	gen := strconv.FormatInt(claimed, 36)
	n := maxRevisionName - len(service) - len(gen) - 2
	n = min(max(n, 4), 7, len(hex))
	return service + "-" + hex[:n] + "-" + gen
}
