package cloudrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ai-square/coalmine/shared/rollout"
)

// DeployRequest describes the canary to create.
type DeployRequest struct {
	// Image is the full image reference with digest.
	Image string
	// Container names the container to update ("" for the first).
	Container string
	// Env overrides environment variables of that container (optional).
	Env map[string]string
}

// Deploy creates the canary revision next.Rollout.Canary from the service's
// template with the new image, at 0% traffic with tag "canary", while the
// current split stays pinned to named revisions, in one write. It then
// waits (within ctx) until the revision is Ready. A revision that cannot
// start returns ErrRevisionFailed with Cloud Run's reason; no traffic moved.
// If Cloud Run refuses the canary's name (ALREADY_EXISTS: a revision of that
// name has another configuration) the deploy fails with ErrInvalid: a copy
// under a generated name would not be the canary the state records.
// Deploying the same canary again (a redelivery) creates nothing new.
func (c *Client) Deploy(ctx context.Context, svc *Service, next rollout.State, req DeployRequest) (*Service, error) {
	r := next.Rollout
	if r == nil || r.Canary == "" {
		return nil, fmt.Errorf("deploy %s: next state names no canary: %w", svc.Name, ErrInvalid)
	}
	tmpl := svc.Template()
	tmpl.Revision = r.Canary
	ctr, err := container(tmpl, req.Container)
	if err != nil {
		return nil, fmt.Errorf("deploy %s: %w: %w", svc.Name, ErrInvalid, err)
	}
	ctr.Image = req.Image
	setEnv(ctr, req.Env)
	after, err := c.write(ctx, svc, next, tmpl, false)
	var oe *opError
	if errors.As(err, &oe) {
		// The write was accepted; the revision did not come up.
		rev, rerr := c.Revision(ctx, svc.Name, r.Canary)
		if rerr == nil && rev.Failed {
			return nil, fmt.Errorf("deploy %s: revision %s: %w: %s", svc.Name, r.Canary, ErrRevisionFailed, rev.Why())
		}
		return nil, fmt.Errorf("deploy %s: %w", svc.Name, err)
	}
	if err != nil {
		return nil, err
	}
	if _, err := c.WaitRevision(ctx, svc.Name, r.Canary); err != nil {
		return nil, fmt.Errorf("deploy %s: %w", svc.Name, err)
	}
	return after, nil
}

// SetTraffic writes next's traffic split and state, leaving the template
// alone: a stage, a promotion (next makes the canary stable and keeps the
// old stable at 0% tagged "previous"), a pause or a resume. The template
// goes back exactly as read, so Cloud Run creates no revision; should Cloud
// Run refuse it (ALREADY_EXISTS), the write fails with ErrInvalid rather
// than send it without its name, which would create one.
func (c *Client) SetTraffic(ctx context.Context, svc *Service, next rollout.State) (*Service, error) {
	return c.write(ctx, svc, next, nil, false)
}

// Rollback writes next (whose traffic is all on the stable revision) and
// restores the template saved when the canary was deployed, so a later
// `gcloud run deploy` or Terraform apply cannot bring the canary's image
// back. The template is restored under the stable revision's own name, so
// Cloud Run creates no new revision; if Cloud Run refuses that name
// (ALREADY_EXISTS: its configuration differs), write sends the template
// without a name and Cloud Run creates a copy of it at 0% traffic.
func (c *Client) Rollback(ctx context.Context, svc *Service, next rollout.State) (*Service, error) {
	var tmpl *runpb.RevisionTemplate
	if r := next.Rollout; r != nil && len(r.StableTemplate) > 0 {
		tmpl = &runpb.RevisionTemplate{}
		if err := protojson.Unmarshal(r.StableTemplate, tmpl); err != nil {
			return nil, fmt.Errorf("rollback %s: saved template: %w: %w", svc.Name, ErrState, err)
		}
	}
	return c.write(ctx, svc, next, tmpl, true)
}

func isAlreadyExists(err error) bool {
	var se interface{ GRPCStatus() *status.Status }
	return errors.As(err, &se) && se.GRPCStatus().Code() == codes.AlreadyExists
}

// StableTemplate returns the template of the service's stable revision, in
// protojson, for the rollout state to keep until the rollout ends, named
// after the revision and without annotations or labels in namespaces Cloud
// Run reserves.
//
// When the stable revision is the service's latest created revision, the
// service's own template is that revision's template, every field included
// (any change to the template creates a revision). Otherwise the template
// has moved on (a revision was created after the stable one), and the
// template is rebuilt from the stable Revision resource, which lacks some
// RevisionTemplate fields (health_check_disabled): restored, such a
// template may differ from the revision's configuration, and Rollback then
// writes it as a new revision (see Rollback).
func (c *Client) StableTemplate(ctx context.Context, svc *Service) (json.RawMessage, error) {
	stable := svc.Stable()
	if stable == "" {
		return nil, fmt.Errorf("service %s: %w", svc.Name, ErrNoStable)
	}
	var tmpl *runpb.RevisionTemplate
	// The service's template is the stable revision's own when that is the
	// latest revision created and no newer one is on its way (a template
	// changed while Cloud Run reconciles has not made its revision yet), and
	// it names the stable revision or none.
	if own := svc.Template().GetRevision(); svc.LatestCreated == stable && !svc.Reconciling && (own == "" || own == stable) {
		tmpl = svc.Template()
		tmpl.Revision = stable
		tmpl.Annotations = withoutReserved(tmpl.Annotations)
		tmpl.Labels = withoutReserved(tmpl.Labels)
	} else {
		raw, err := c.revisions.GetRevision(ctx, &runpb.GetRevisionRequest{Name: c.RevisionName(svc.Name, stable)})
		if err != nil {
			return nil, classify("read stable revision "+stable, err)
		}
		tmpl = templateFromRevision(raw)
	}
	b, err := protojson.Marshal(tmpl)
	if err != nil {
		return nil, fmt.Errorf("encode stable template: %w", err)
	}
	return b, nil
}

// reservedPrefixes are annotation and label namespaces Cloud Run v2 rejects.
var reservedPrefixes = []string{"run.googleapis.com/", "cloud.googleapis.com/", "serving.knative.dev/", "autoscaling.knative.dev/"}

// revisionField is the field of the Revision resource that carries
// RevisionTemplate field df (same name and type), or nil when the Revision
// lacks it. The template's revision name has none: it is the Revision's
// name.
func revisionField(df protoreflect.FieldDescriptor) protoreflect.FieldDescriptor {
	sf := (&runpb.Revision{}).ProtoReflect().Descriptor().Fields().ByName(df.Name())
	switch {
	case df.Name() == "revision", sf == nil:
		return nil
	case sf.Kind() != df.Kind() || sf.Cardinality() != df.Cardinality() || sf.IsMap() != df.IsMap():
		return nil
	case df.Kind() == protoreflect.MessageKind && !df.IsMap() && sf.Message().FullName() != df.Message().FullName():
		return nil
	case df.Kind() == protoreflect.EnumKind && sf.Enum().FullName() != df.Enum().FullName():
		return nil
	}
	return sf
}

// templateFromRevision copies every RevisionTemplate field that the
// Revision resource has under the same name and type.
func templateFromRevision(rev *runpb.Revision) *runpb.RevisionTemplate {
	tmpl := &runpb.RevisionTemplate{}
	src, dst := rev.ProtoReflect(), tmpl.ProtoReflect()
	fields := dst.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		df := fields.Get(i)
		if sf := revisionField(df); sf != nil && src.Has(sf) {
			dst.Set(df, src.Get(sf))
		}
	}
	tmpl = proto.Clone(tmpl).(*runpb.RevisionTemplate)
	tmpl.Revision = shortName(rev.GetName())
	tmpl.Annotations = withoutReserved(tmpl.Annotations)
	tmpl.Labels = withoutReserved(tmpl.Labels)
	return tmpl
}

func withoutReserved(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		reserved := false
		for _, p := range reservedPrefixes {
			if strings.HasPrefix(k, p) {
				reserved = true
			}
		}
		if !reserved {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func container(tmpl *runpb.RevisionTemplate, name string) (*runpb.Container, error) {
	cs := tmpl.GetContainers()
	if len(cs) == 0 {
		return nil, errors.New("template has no container")
	}
	if name == "" {
		return cs[0], nil
	}
	for _, c := range cs {
		if c.GetName() == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("template has no container named %q", name)
}

// setEnv sets (or replaces) plain environment variables on a container, in
// name order so that the same request always gives the same template.
func setEnv(c *runpb.Container, env map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(env)) {
		v := env[k]
		found := false
		for _, e := range c.Env {
			if e.GetName() == k {
				e.Values = &runpb.EnvVar_Value{Value: v}
				found = true
			}
		}
		if !found {
			c.Env = append(c.Env, &runpb.EnvVar{Name: k, Values: &runpb.EnvVar_Value{Value: v}})
		}
	}
}
