package runemu

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Condition types set on services and revisions.
const (
	conditionReady               = "Ready"
	conditionRoutesReady         = "RoutesReady"
	conditionConfigurationsReady = "ConfigurationsReady"
)

// service is the state of one Cloud Run service. All fields are guarded by Server.mu.
type service struct {
	id, name, uid string
	seq           int64
	created       time.Time
	updated       time.Time
	// spec holds the user-settable fields as last accepted (Name set, output fields clear).
	spec          *runpb.Service
	generation    int64
	observed      int64
	etag          string
	latestReady   string // short revision names
	latestCreated string
	statuses      []*runpb.TrafficTargetStatus
	terminal      *runpb.Condition
	conditions    []*runpb.Condition
	revisions     map[string]*revision // by short name
	revCounter    int
	queue         []*job // accepted updates waiting for the worker
	pending       int    // accepted updates not finished
	working       bool   // a worker goroutine is running
	deleted       bool
	ctx           context.Context // cancelled when the service is deleted or the server closes
	cancel        context.CancelFunc
	proxy         *frontProxy
}

// job is one accepted create/update, reconciled in the background in acceptance order.
type job struct {
	gen         int64
	op          *operation
	newRev      *revision // the revision this update created, if any
	templateRev string    // the revision the update's template refers to
	traffic     []*runpb.TrafficTarget
}

// plan is what an accepted update will do, decided and validated before anything changes.
type plan struct {
	newRev      string
	templateRev string
	traffic     []*runpb.TrafficTarget
}

// outputOnlyServiceFields are cleared from submitted services and refused in update masks.
var outputOnlyServiceFields = map[string]bool{
	"name": true, "uid": true, "generation": true, "create_time": true, "update_time": true,
	"delete_time": true, "expire_time": true, "creator": true, "last_modifier": true,
	"urls": true, "observed_generation": true, "terminal_condition": true, "conditions": true,
	"latest_ready_revision": true, "latest_created_revision": true, "traffic_statuses": true,
	"uri": true, "satisfies_pzs": true, "reconciling": true, "etag": true,
}

// userSpec returns a copy of in with every output-only field cleared.
func userSpec(in *runpb.Service) *runpb.Service {
	sp := proto.CloneOf(in)
	m := sp.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); outputOnlyServiceFields[string(fd.Name())] {
			m.Clear(fd)
		}
	}
	return sp
}

// mergeSpec applies a submitted service to the current spec under mask. A nil or empty
// mask (or "*") replaces the whole user-settable spec; otherwise only top-level fields
// may be named.
func mergeSpec(cur, in *runpb.Service, mask *fieldmaskpb.FieldMask) (*runpb.Service, error) {
	if len(mask.GetPaths()) == 0 || slices.Contains(mask.GetPaths(), "*") {
		return userSpec(in), nil
	}
	out := proto.CloneOf(cur)
	src, dst := in.ProtoReflect(), out.ProtoReflect()
	fields := dst.Descriptor().Fields()
	for _, p := range mask.GetPaths() {
		if strings.Contains(p, ".") {
			return nil, status.Errorf(codes.Unimplemented, "update_mask: nested path %q is not supported by the emulator; name top-level fields or send no mask", p)
		}
		fd := fields.ByName(protoreflect.Name(p))
		if fd == nil {
			fd = fields.ByJSONName(p)
		}
		if fd == nil {
			return nil, invalid("update_mask", "unknown field %q", p)
		}
		if outputOnlyServiceFields[string(fd.Name())] {
			return nil, invalid("update_mask", "field %q is output only", p)
		}
		if src.Has(fd) {
			dst.Set(fd, src.Get(fd))
		} else {
			dst.Clear(fd)
		}
	}
	return userSpec(out), nil
}

// computeEtag derives a quoted etag from the generation and a hash of the spec.
func computeEtag(svc *service) string {
	h := sha256.New()
	h.Write([]byte(svc.uid))
	binary.Write(h, binary.BigEndian, svc.generation)
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(svc.spec)
	h.Write(b)
	gen := binary.AppendUvarint(nil, uint64(svc.generation))
	return `"` + base64.RawURLEncoding.EncodeToString(gen) + "/" + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12]) + `"`
}

// etagMatches compares a client etag with the current one, tolerating missing quotes.
func etagMatches(got, want string) bool {
	return strings.Trim(got, `"`) == strings.Trim(want, `"`)
}

func condition(typ string, state runpb.Condition_State, msg string, at time.Time) *runpb.Condition {
	return &runpb.Condition{Type: typ, State: state, Message: msg, LastTransitionTime: timestamppb.New(at), Severity: severityOf(state)}
}

func severityOf(state runpb.Condition_State) runpb.Condition_Severity {
	if state == runpb.Condition_CONDITION_FAILED {
		return runpb.Condition_ERROR
	}
	return runpb.Condition_SEVERITY_UNSPECIFIED
}

// snapshotLocked returns the service resource as the API shows it.
func (s *Server) snapshotLocked(svc *service) *runpb.Service {
	out := proto.CloneOf(svc.spec)
	out.Name = svc.name
	out.Uid = svc.uid
	out.Generation = svc.generation
	out.ObservedGeneration = svc.observed
	out.CreateTime = timestamppb.New(svc.created)
	out.UpdateTime = timestamppb.New(svc.updated)
	if svc.proxy != nil {
		out.Uri = svc.proxy.main.url
		out.Urls = []string{out.Uri}
	}
	out.TerminalCondition = proto.CloneOf(svc.terminal)
	out.Conditions = cloneAll(svc.conditions)
	if svc.latestReady != "" {
		out.LatestReadyRevision = s.revisionName(svc.id, svc.latestReady)
	}
	if svc.latestCreated != "" {
		out.LatestCreatedRevision = s.revisionName(svc.id, svc.latestCreated)
	}
	out.TrafficStatuses = cloneAll(svc.statuses)
	out.Reconciling = svc.pending > 0
	out.Etag = svc.etag
	return out
}

// servicesAPI implements google.cloud.run.v2.Services.
type servicesAPI struct {
	runpb.UnimplementedServicesServer
	s *Server
}

// CreateService validates and accepts a new service; its first revision starts in the
// background and the returned operation finishes when it is ready (or failed).
func (a servicesAPI) CreateService(_ context.Context, req *runpb.CreateServiceRequest) (*longrunningpb.Operation, error) {
	s := a.s
	if err := s.checkParent(req.GetParent(), "parent"); err != nil {
		return nil, err
	}
	if err := validateServiceID(req.GetServiceId()); err != nil {
		return nil, err
	}
	if req.GetService() == nil {
		return nil, invalid("service", "is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.createLocked(req.GetServiceId(), userSpec(req.GetService()), req.GetValidateOnly())
}

// createLocked creates service id from spec.
func (s *Server) createLocked(id string, spec *runpb.Service, validateOnly bool) (*longrunningpb.Operation, error) {
	if s.closed {
		return nil, status.Error(codes.Unavailable, "the emulator is shutting down")
	}
	name := s.serviceName(id)
	if _, exists := s.services[id]; exists {
		return nil, status.Errorf(codes.AlreadyExists, "Resource '%s' already exists.", id)
	}
	now := time.Now()
	svc := &service{
		id:        id,
		name:      name,
		uid:       newUUID(),
		created:   now,
		updated:   now,
		spec:      spec,
		revisions: make(map[string]*revision),
	}
	pl, err := s.planLocked(svc, spec, false)
	if err != nil {
		return nil, err
	}
	if validateOnly {
		return s.validatedOp(name, spec, pl), nil
	}
	proxy, err := s.newFrontProxy(id)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.seq++
	svc.seq = s.seq
	svc.proxy = proxy
	svc.ctx, svc.cancel = context.WithCancel(s.ctx)
	s.services[id] = svc
	s.log.Info("service created", "service", id, "uri", proxy.main.url)
	return s.applyLocked(svc, spec, pl), nil
}

// validatedOp is the finished operation of a validate-only request.
func (s *Server) validatedOp(name string, spec *runpb.Service, pl *plan) *longrunningpb.Operation {
	resp := proto.CloneOf(spec)
	resp.Name = name
	resp.Traffic = pl.traffic
	op := s.ops.create(s.parent(), resp)
	s.ops.finish(op, resp, nil)
	return s.ops.snapshot(op)
}

// planLocked validates spec against svc, fills the template's server-side defaults into
// spec, and decides which revision the template needs:
//   - named after an existing revision: that revision, if its configuration is the same
//     after defaults, else ALREADY_EXISTS (Cloud Run's 409);
//   - named after no revision: a new revision of that name;
//   - unnamed and equal to the service's current template after defaults (the name is part
//     of the template, so clearing it is a change): the latest created revision;
//   - unnamed and changed: a new revision with a generated name.
//
// force (ForceNewRevision) always needs a new revision.
func (s *Server) planLocked(svc *service, spec *runpb.Service, force bool) (*plan, error) {
	if err := validateSpec(svc.id, spec); err != nil {
		return nil, err
	}
	cur := svc.spec.GetTemplate()
	spec.Template = withDefaults(spec.GetTemplate())
	pl := &plan{}
	tmpl := spec.GetTemplate()
	if name := tmpl.GetRevision(); name != "" {
		if existing, ok := svc.revisions[name]; ok {
			if !sameConfiguration(existing.template, tmpl) {
				return nil, status.Errorf(codes.AlreadyExists, "Revision named '%s' with different configuration already exists.", name)
			}
			if force {
				return nil, status.Errorf(codes.AlreadyExists, "Revision named '%s' already exists; force_new_revision needs a new revision name", name)
			}
			pl.templateRev = name
		} else {
			pl.newRev = name
		}
	} else {
		if svc.latestCreated != "" && !force && proto.Equal(withDefaults(cur), tmpl) {
			pl.templateRev = svc.latestCreated
		} else {
			pl.newRev = s.generateRevisionNameLocked(svc)
		}
	}
	if pl.newRev != "" {
		pl.templateRev = pl.newRev
	}
	traffic := spec.GetTraffic()
	if len(traffic) == 0 {
		traffic = defaultTraffic()
	}
	norm, err := validateTraffic(s, svc.id, traffic, func(rev string) bool {
		_, ok := svc.revisions[rev]
		return ok || rev == pl.newRev
	})
	if err != nil {
		return nil, err
	}
	pl.traffic = norm
	return pl, nil
}

// generateRevisionNameLocked returns SERVICE-NNNNN-abc, unused in svc.
func (s *Server) generateRevisionNameLocked(svc *service) string {
	for n := svc.revCounter + 1; ; n++ {
		suffix := make([]byte, 3)
		for i := range suffix {
			suffix[i] = byte('a' + rand.IntN(26))
		}
		name := fmt.Sprintf("%s-%05d-%s", svc.id, n, suffix)
		if _, taken := svc.revisions[name]; !taken {
			return name
		}
	}
}

// applyLocked commits an accepted update and queues its reconcile.
func (s *Server) applyLocked(svc *service, spec *runpb.Service, pl *plan) *longrunningpb.Operation {
	now := time.Now()
	spec.Name = svc.name
	spec.Traffic = pl.traffic
	svc.spec = spec
	svc.generation++
	svc.updated = now
	var rev *revision
	if pl.newRev != "" {
		rev = s.newRevisionLocked(svc, pl.newRev, spec.GetTemplate(), now)
	}
	svc.latestCreated = pl.templateRev
	svc.etag = computeEtag(svc)
	svc.pending++
	svc.terminal = condition(conditionReady, runpb.Condition_CONDITION_RECONCILING, "Deploying revision and routing traffic.", now)
	op := s.ops.create(s.parent(), s.snapshotLocked(svc))
	svc.queue = append(svc.queue, &job{gen: svc.generation, op: op, newRev: rev, templateRev: pl.templateRev, traffic: pl.traffic})
	if !svc.working {
		svc.working = true
		s.wg.Add(1)
		go s.work(svc)
	}
	s.log.Info("service update accepted", "service", svc.id, "generation", svc.generation,
		"new_revision", pl.newRev, "template_revision", pl.templateRev, "operation", op.pb.Name)
	return s.ops.snapshot(op)
}

// work reconciles svc's queued updates one at a time, in acceptance order.
func (s *Server) work(svc *service) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(svc.queue) == 0 {
			svc.working = false
			s.mu.Unlock()
			return
		}
		j := svc.queue[0]
		svc.queue = svc.queue[1:]
		deleted := svc.deleted
		s.mu.Unlock()
		if !deleted && j.newRev != nil {
			s.startRevision(svc, j.newRev)
		}
		s.finishJob(svc, j)
	}
}

// notReadyMessage is Cloud Run's message for a revision that cannot take traffic.
func notReadyMessage(name string, rev *revision) string {
	msg := fmt.Sprintf("Revision '%s' is not ready and cannot serve traffic.", name)
	if rev == nil {
		return msg + " The revision does not exist."
	}
	if m := rev.cond.GetMessage(); m != "" {
		msg += " " + m
	}
	return msg
}

// finishJob settles one reconcile: on success the job's traffic becomes the traffic
// statuses; on failure routing is left as it was and the operation fails.
func (s *Server) finishJob(svc *service, j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc.pending--
	if svc.deleted {
		s.ops.finish(j.op, nil, status.Errorf(codes.Aborted, "service %s was deleted", svc.id))
		return
	}
	if s.closed {
		s.ops.finish(j.op, nil, status.Error(codes.Unavailable, "the emulator is shutting down"))
		return
	}
	now := time.Now()
	var failure string
	configOK := false
	if tr := svc.revisions[j.templateRev]; tr == nil || !tr.ready {
		failure = notReadyMessage(j.templateRev, tr)
	} else {
		configOK = true
		svc.latestReady = tr.name
		for _, t := range j.traffic {
			name := targetRevision(t.GetType(), t.GetRevision(), svc.latestReady)
			if r := svc.revisions[name]; r == nil || !r.ready {
				failure = notReadyMessage(name, r)
				break
			}
		}
	}
	svc.observed = j.gen
	svc.updated = now
	if failure == "" {
		tags := make(map[string]bool)
		for _, t := range j.traffic {
			if t.GetTag() != "" {
				tags[t.GetTag()] = true
			}
		}
		svc.statuses = buildStatuses(j.traffic, svc.proxy.tagURI)
		svc.proxy.retainTags(tags)
	}
	if svc.pending == 0 {
		if failure == "" {
			svc.terminal = condition(conditionReady, runpb.Condition_CONDITION_SUCCEEDED, "", now)
			svc.conditions = []*runpb.Condition{
				condition(conditionRoutesReady, runpb.Condition_CONDITION_SUCCEEDED, "", now),
				condition(conditionConfigurationsReady, runpb.Condition_CONDITION_SUCCEEDED, "", now),
			}
		} else {
			svc.terminal = condition(conditionReady, runpb.Condition_CONDITION_FAILED, failure, now)
			svc.terminal.Reasons = &runpb.Condition_Reason{Reason: runpb.Condition_REVISION_FAILED}
			cfg := condition(conditionConfigurationsReady, runpb.Condition_CONDITION_SUCCEEDED, "", now)
			if !configOK {
				cfg = condition(conditionConfigurationsReady, runpb.Condition_CONDITION_FAILED, failure, now)
				cfg.Reasons = &runpb.Condition_Reason{Reason: runpb.Condition_REVISION_FAILED}
			}
			routes := condition(conditionRoutesReady, runpb.Condition_CONDITION_FAILED, failure, now)
			routes.Reasons = &runpb.Condition_Reason{Reason: runpb.Condition_REVISION_FAILED}
			svc.conditions = []*runpb.Condition{routes, cfg}
		}
	}
	snap := s.snapshotLocked(svc)
	if failure != "" {
		s.log.Warn("service update failed", "service", svc.id, "generation", j.gen, "reason", failure)
		s.ops.finish(j.op, nil, status.Error(codes.FailedPrecondition, failure))
		return
	}
	s.log.Info("service update done", "service", svc.id, "generation", j.gen, "latest_ready", svc.latestReady)
	s.ops.finish(j.op, snap, nil)
}

// lookupLocked finds a service by full name.
func (s *Server) lookupLocked(name string) (*service, error) {
	id, err := s.parseServiceName(name, "name")
	if err != nil {
		return nil, err
	}
	svc, ok := s.services[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Resource '%s' of kind 'SERVICE' in region '%s' in project '%s' does not exist.", id, s.opts.Region, s.opts.Project)
	}
	return svc, nil
}

// GetService returns a service.
func (a servicesAPI) GetService(_ context.Context, req *runpb.GetServiceRequest) (*runpb.Service, error) {
	s := a.s
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, err := s.lookupLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	return s.snapshotLocked(svc), nil
}

// ListServices lists services, newest first.
func (a servicesAPI) ListServices(_ context.Context, req *runpb.ListServicesRequest) (*runpb.ListServicesResponse, error) {
	s := a.s
	if err := s.checkParent(req.GetParent(), "parent"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	svcs := make([]*service, 0, len(s.services))
	for _, svc := range s.services {
		svcs = append(svcs, svc)
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].seq > svcs[j].seq })
	all := make([]*runpb.Service, len(svcs))
	for i, svc := range svcs {
		all[i] = s.snapshotLocked(svc)
	}
	s.mu.Unlock()
	page, next, err := paginate(all, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &runpb.ListServicesResponse{Services: page, NextPageToken: next}, nil
}

// UpdateService validates and accepts a change; the returned operation finishes when the
// change is reconciled. Nothing changes when validation fails.
func (a servicesAPI) UpdateService(_ context.Context, req *runpb.UpdateServiceRequest) (*longrunningpb.Operation, error) {
	s := a.s
	in := req.GetService()
	if in == nil {
		return nil, invalid("service", "is required")
	}
	id, err := s.parseServiceName(in.GetName(), "service.name")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, status.Error(codes.Unavailable, "the emulator is shutting down")
	}
	svc, ok := s.services[id]
	if !ok {
		if !req.GetAllowMissing() {
			return nil, status.Errorf(codes.NotFound, "Resource '%s' of kind 'SERVICE' in region '%s' in project '%s' does not exist.", id, s.opts.Region, s.opts.Project)
		}
		if err := validateServiceID(id); err != nil {
			return nil, err
		}
		spec, err := mergeSpec(&runpb.Service{}, in, req.GetUpdateMask())
		if err != nil {
			return nil, err
		}
		return s.createLocked(id, spec, req.GetValidateOnly())
	}
	if in.GetEtag() != "" && !etagMatches(in.GetEtag(), svc.etag) {
		return nil, status.Errorf(codes.Aborted, "etag mismatch: service %s was modified (current etag %s, request etag %s)", id, svc.etag, in.GetEtag())
	}
	spec, err := mergeSpec(svc.spec, in, req.GetUpdateMask())
	if err != nil {
		return nil, err
	}
	pl, err := s.planLocked(svc, spec, req.GetForceNewRevision())
	if err != nil {
		return nil, err
	}
	if req.GetValidateOnly() {
		return s.validatedOp(svc.name, spec, pl), nil
	}
	return s.applyLocked(svc, spec, pl), nil
}

// DeleteService removes a service at once (Get answers NOT_FOUND) and stops its proxy and
// processes in the background; the operation finishes when they are stopped.
func (a servicesAPI) DeleteService(_ context.Context, req *runpb.DeleteServiceRequest) (*longrunningpb.Operation, error) {
	s := a.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, status.Error(codes.Unavailable, "the emulator is shutting down")
	}
	svc, err := s.lookupLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	if req.GetEtag() != "" && !etagMatches(req.GetEtag(), svc.etag) {
		return nil, status.Errorf(codes.Aborted, "etag mismatch: service %s was modified (current etag %s, request etag %s)", svc.id, svc.etag, req.GetEtag())
	}
	snap := s.snapshotLocked(svc)
	if req.GetValidateOnly() {
		op := s.ops.create(s.parent(), snap)
		s.ops.finish(op, snap, nil)
		return s.ops.snapshot(op), nil
	}
	delete(s.services, svc.id)
	svc.deleted = true
	svc.cancel()
	var procs []*process
	for _, rev := range svc.revisions {
		rev.deleted = true
		if rev.proc != nil {
			procs = append(procs, rev.proc)
		}
	}
	eps := svc.proxy.endpoints()
	snap.DeleteTime = timestamppb.Now()
	op := s.ops.create(s.parent(), snap)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		closeEndpoints(eps)
		stopAll(procs)
		s.ops.finish(op, snap, nil)
	}()
	s.log.Info("service deleted", "service", svc.id, "operation", op.pb.Name)
	return s.ops.snapshot(op), nil
}
