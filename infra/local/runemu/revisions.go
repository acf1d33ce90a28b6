package runemu

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"sort"
	"strconv"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Reasons a revision is not ready. They prefix the message of the revision's Ready
// condition (the condition's Reasons field carries the closest Cloud Run enum).
const (
	// ReasonImageNotFound: the image reference is not in the Registry
	// (Reasons: CONTAINER_MISSING).
	ReasonImageNotFound = "ImageNotFound"
	// ReasonContainerFailedToStart: the process could not start or exited before listening
	// (Reasons: HEALTH_CHECK_CONTAINER_ERROR).
	ReasonContainerFailedToStart = "ContainerFailedToStart"
	// ReasonHealthCheckTimeout: the process did not listen within Options.StartTimeout
	// (Reasons: HEALTH_CHECK_CONTAINER_ERROR).
	ReasonHealthCheckTimeout = "HealthCheckTimeout"
	// ReasonContainerExited: the process was ready and exited later
	// (Reasons: HEALTH_CHECK_CONTAINER_ERROR).
	ReasonContainerExited = "ContainerExited"
)

// revision is one revision of a service. All fields are guarded by Server.mu.
type revision struct {
	name, full, uid string
	serviceID       string
	seq             int64
	created         time.Time
	updated         time.Time
	template        *runpb.RevisionTemplate // as stored: submitted, with server-side defaults
	ready           bool
	reconciling     bool
	cond            *runpb.Condition // the Ready condition
	proc            *process
	logs            *tailBuffer
	deleted         bool
}

// newRevisionLocked records a pending revision of svc.
func (s *Server) newRevisionLocked(svc *service, name string, tmpl *runpb.RevisionTemplate, now time.Time) *revision {
	s.seq++
	svc.revCounter++
	rev := &revision{
		name:        name,
		full:        s.revisionName(svc.id, name),
		uid:         newUUID(),
		serviceID:   svc.id,
		seq:         s.seq,
		created:     now,
		updated:     now,
		template:    proto.CloneOf(tmpl),
		reconciling: true,
		cond:        condition(conditionReady, runpb.Condition_CONDITION_PENDING, "Starting the revision's container.", now),
	}
	svc.revisions[name] = rev
	return rev
}

// revisionSnapshotLocked returns the revision resource as the API shows it: the
// template's settings plus status.
func (s *Server) revisionSnapshotLocked(svc *service, rev *revision) *runpb.Revision {
	t := rev.template
	out := &runpb.Revision{
		Name:                          rev.full,
		Uid:                           rev.uid,
		Generation:                    1,
		Labels:                        maps.Clone(t.GetLabels()),
		Annotations:                   maps.Clone(t.GetAnnotations()),
		CreateTime:                    timestamppb.New(rev.created),
		UpdateTime:                    timestamppb.New(rev.updated),
		LaunchStage:                   svc.spec.GetLaunchStage(),
		Service:                       svc.name,
		Scaling:                       proto.CloneOf(t.GetScaling()),
		VpcAccess:                     proto.CloneOf(t.GetVpcAccess()),
		MaxInstanceRequestConcurrency: t.GetMaxInstanceRequestConcurrency(),
		Timeout:                       proto.CloneOf(t.GetTimeout()),
		ServiceAccount:                t.GetServiceAccount(),
		Containers:                    cloneAll(t.GetContainers()),
		Sandboxes:                     proto.CloneOf(t.GetSandboxes()),
		Volumes:                       cloneAll(t.GetVolumes()),
		ExecutionEnvironment:          t.GetExecutionEnvironment(),
		EncryptionKey:                 t.GetEncryptionKey(),
		ServiceMesh:                   proto.CloneOf(t.GetServiceMesh()),
		EncryptionKeyRevocationAction: t.GetEncryptionKeyRevocationAction(),
		EncryptionKeyShutdownDuration: proto.CloneOf(t.GetEncryptionKeyShutdownDuration()),
		SessionAffinity:               t.GetSessionAffinity(),
		NodeSelector:                  proto.CloneOf(t.GetNodeSelector()),
		WorkloadIdentityConfig:        proto.CloneOf(t.GetWorkloadIdentityConfig()),
		Client:                        t.GetClient(),
		ClientVersion:                 t.GetClientVersion(),
		AmbientNetworking:             proto.CloneOf(t.GetAmbientNetworking()),
		Reconciling:                   rev.reconciling,
		Conditions:                    []*runpb.Condition{proto.CloneOf(rev.cond)},
		Etag:                          `"` + rev.uid[:8] + strconv.FormatInt(rev.updated.UnixNano(), 36) + `"`,
	}
	if t.GpuZonalRedundancyDisabled != nil {
		v := t.GetGpuZonalRedundancyDisabled()
		out.GpuZonalRedundancyDisabled = &v
	}
	if !rev.reconciling {
		out.ObservedGeneration = 1
	}
	return out
}

// ingressContainer is the container that receives requests: the one declaring a port,
// else the first.
func ingressContainer(t *runpb.RevisionTemplate) *runpb.Container {
	for _, c := range t.GetContainers() {
		if len(c.GetPorts()) > 0 {
			return c
		}
	}
	return t.GetContainers()[0]
}

// startRevision starts rev's process and waits until it listens, recording the outcome
// in rev's Ready condition.
func (s *Server) startRevision(svc *service, rev *revision) {
	s.mu.Lock()
	c := proto.CloneOf(ingressContainer(rev.template))
	s.mu.Unlock()
	log := s.log.With("service", svc.id, "revision", rev.name, "image", c.GetImage())

	img, err := s.reg.Resolve(c.GetImage())
	if err != nil {
		s.revisionFailed(rev, ReasonImageNotFound, runpb.Condition_CONTAINER_MISSING,
			fmt.Sprintf("Image '%s' not found.", c.GetImage()))
		return
	}
	path, args, imgEnv, err := img.program()
	if err != nil {
		s.revisionFailed(rev, ReasonContainerFailedToStart, runpb.Condition_REVISION_FAILED, err.Error())
		return
	}
	port, err := freePort()
	if err != nil {
		s.revisionFailed(rev, ReasonContainerFailedToStart, runpb.Condition_REVISION_FAILED, err.Error())
		return
	}
	env := append(os.Environ(), imgEnv...)
	for _, e := range c.GetEnv() {
		if e.GetValueSource() != nil {
			log.Warn("env var from a value source (secret) is not supported; skipped", "name", e.GetName())
			continue
		}
		env = append(env, e.GetName()+"="+e.GetValue())
	}
	env = append(env, "PORT="+strconv.Itoa(port), "K_SERVICE="+svc.id, "K_REVISION="+rev.name, "K_CONFIGURATION="+svc.id)

	p, err := s.procs.start(procSpec{revision: rev.name, path: path, args: args, env: env, port: port, logDir: s.opts.LogDir})
	if err != nil {
		s.revisionFailed(rev, ReasonContainerFailedToStart, runpb.Condition_REVISION_FAILED,
			fmt.Sprintf("The user-provided container failed to start: %v", err))
		return
	}
	s.mu.Lock()
	rev.logs = p.logs
	s.mu.Unlock()
	log.Debug("revision process started", "pid", p.cmd.Process.Pid, "port", port)

	if err := p.waitReady(svc.ctx, s.opts.StartTimeout); err != nil {
		p.stop()
		switch {
		case errors.Is(err, errExitedEarly):
			s.revisionFailed(rev, ReasonContainerFailedToStart, runpb.Condition_REVISION_FAILED, fmt.Sprintf(
				"The user-provided container failed to start and listen on the port defined provided by the PORT=%d environment variable: the process exited (%s).%s",
				port, p.exitStatus(), logExcerpt(p)))
		case errors.Is(err, errStartTimeout):
			s.revisionFailed(rev, ReasonHealthCheckTimeout, runpb.Condition_REVISION_FAILED, fmt.Sprintf(
				"The user-provided container failed to start and listen on the port defined provided by the PORT=%d environment variable within the allocated timeout of %s.%s",
				port, s.opts.StartTimeout, logExcerpt(p)))
		default:
			s.revisionFailed(rev, ReasonContainerFailedToStart, runpb.Condition_REVISION_FAILED,
				"The revision was stopped before it became ready: the service was deleted or the emulator closed.")
		}
		return
	}

	s.mu.Lock()
	if rev.deleted || svc.deleted || s.closed {
		s.mu.Unlock()
		p.stop()
		return
	}
	now := time.Now()
	rev.proc = p
	rev.ready = true
	rev.reconciling = false
	rev.updated = now
	rev.cond = condition(conditionReady, runpb.Condition_CONDITION_SUCCEEDED, "", now)
	s.mu.Unlock()
	log.Info("revision ready", "pid", p.cmd.Process.Pid, "addr", p.addr)
	go s.watchRevision(rev, p)
}

// logExcerpt quotes the last stderr lines of p for a failure message.
func logExcerpt(p *process) string {
	if tail := p.stderr.lastLines(failureLogLines); tail != "" {
		return " Last stderr lines:\n" + tail
	}
	return " The process wrote nothing to stderr."
}

// watchRevision marks rev not ready if its process exits without being stopped.
func (s *Server) watchRevision(rev *revision, p *process) {
	<-p.exited
	if p.stopping.Load() {
		return
	}
	msg := fmt.Sprintf("The container exited unexpectedly (%s).%s", p.exitStatus(), logExcerpt(p))
	s.mu.Lock()
	if rev.proc == p && !rev.deleted {
		now := time.Now()
		rev.ready = false
		rev.updated = now
		rev.cond = failedCondition(ReasonContainerExited, runpb.Condition_REVISION_FAILED, msg, now)
	}
	s.mu.Unlock()
	s.log.Warn("revision process exited", "revision", rev.name, "status", p.exitStatus())
}

// failedCondition is a failed Ready condition; msg is prefixed by reason.
func failedCondition(reason string, common runpb.Condition_CommonReason, msg string, at time.Time) *runpb.Condition {
	c := condition(conditionReady, runpb.Condition_CONDITION_FAILED, reason+": "+msg, at)
	switch reason {
	case ReasonImageNotFound:
		c.Reasons = &runpb.Condition_Reason{Reason: runpb.Condition_CONTAINER_MISSING}
	case ReasonContainerFailedToStart, ReasonHealthCheckTimeout, ReasonContainerExited:
		c.Reasons = &runpb.Condition_RevisionReason_{RevisionReason: runpb.Condition_HEALTH_CHECK_CONTAINER_ERROR}
	default:
		c.Reasons = &runpb.Condition_Reason{Reason: common}
	}
	return c
}

// revisionFailed records that rev could not become ready.
func (s *Server) revisionFailed(rev *revision, reason string, common runpb.Condition_CommonReason, msg string) {
	now := time.Now()
	s.mu.Lock()
	rev.ready = false
	rev.reconciling = false
	rev.updated = now
	rev.cond = failedCondition(reason, common, msg, now)
	s.mu.Unlock()
	s.log.Warn("revision failed", "service", rev.serviceID, "revision", rev.name, "reason", reason, "message", msg)
}

// revisionsAPI implements google.cloud.run.v2.Revisions.
type revisionsAPI struct {
	runpb.UnimplementedRevisionsServer
	s *Server
}

// lookupRevisionLocked finds a revision by full name.
func (s *Server) lookupRevisionLocked(name string) (*service, *revision, error) {
	svcID, revName, err := s.parseRevisionName(name)
	if err != nil {
		return nil, nil, err
	}
	svc, ok := s.services[svcID]
	if !ok {
		return nil, nil, status.Errorf(codes.NotFound, "Resource '%s' of kind 'SERVICE' in region '%s' in project '%s' does not exist.", svcID, s.opts.Region, s.opts.Project)
	}
	rev, ok := svc.revisions[revName]
	if !ok {
		return nil, nil, status.Errorf(codes.NotFound, "Resource '%s' of kind 'REVISION' in region '%s' in project '%s' does not exist.", revName, s.opts.Region, s.opts.Project)
	}
	return svc, rev, nil
}

// GetRevision returns a revision.
func (a revisionsAPI) GetRevision(_ context.Context, req *runpb.GetRevisionRequest) (*runpb.Revision, error) {
	s := a.s
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, rev, err := s.lookupRevisionLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	return s.revisionSnapshotLocked(svc, rev), nil
}

// ListRevisions lists the revisions of a service, or of every service with "services/-",
// newest first. ShowDeleted is ignored: deleted revisions are gone at once.
func (a revisionsAPI) ListRevisions(_ context.Context, req *runpb.ListRevisionsRequest) (*runpb.ListRevisionsResponse, error) {
	s := a.s
	svcID, err := s.parseServiceName(req.GetParent(), "parent")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	type entry struct {
		svc *service
		rev *revision
	}
	var entries []entry
	for id, svc := range s.services {
		if svcID != "-" && id != svcID {
			continue
		}
		for _, rev := range svc.revisions {
			entries = append(entries, entry{svc, rev})
		}
	}
	if _, ok := s.services[svcID]; !ok && svcID != "-" {
		s.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "Resource '%s' of kind 'SERVICE' in region '%s' in project '%s' does not exist.", svcID, s.opts.Region, s.opts.Project)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].rev.seq > entries[j].rev.seq })
	all := make([]*runpb.Revision, len(entries))
	for i, e := range entries {
		all[i] = s.revisionSnapshotLocked(e.svc, e.rev)
	}
	s.mu.Unlock()
	page, next, err := paginate(all, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &runpb.ListRevisionsResponse{Revisions: page, NextPageToken: next}, nil
}

// DeleteRevision deletes a revision that neither serves traffic, nor carries a tag, nor is
// the service's latest created revision, and stops its process.
func (a revisionsAPI) DeleteRevision(_ context.Context, req *runpb.DeleteRevisionRequest) (*longrunningpb.Operation, error) {
	s := a.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, status.Error(codes.Unavailable, "the emulator is shutting down")
	}
	svc, rev, err := s.lookupRevisionLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	snap := s.revisionSnapshotLocked(svc, rev)
	if req.GetEtag() != "" && !etagMatches(req.GetEtag(), snap.GetEtag()) {
		return nil, status.Errorf(codes.Aborted, "etag mismatch: revision %s was modified", rev.name)
	}
	specServing, specTagged := references(svc.spec.GetTraffic(), rev.name, svc.latestReady)
	stServing, stTagged := references(svc.statuses, rev.name, svc.latestReady)
	switch {
	case specServing || stServing:
		return nil, status.Errorf(codes.FailedPrecondition, "Revision '%s' is serving traffic; move its traffic to another revision before deleting it.", rev.name)
	case specTagged || stTagged:
		return nil, status.Errorf(codes.FailedPrecondition, "Revision '%s' is referenced by a traffic tag; remove the tag before deleting it.", rev.name)
	case svc.latestCreated == rev.name:
		return nil, status.Errorf(codes.FailedPrecondition, "Revision '%s' is the latest created revision of service '%s' and cannot be deleted.", rev.name, svc.id)
	}
	if req.GetValidateOnly() {
		op := s.ops.create(s.parent(), snap)
		s.ops.finish(op, snap, nil)
		return s.ops.snapshot(op), nil
	}
	delete(svc.revisions, rev.name)
	rev.deleted = true
	if svc.latestReady == rev.name {
		svc.latestReady = ""
	}
	snap.DeleteTime = timestamppb.Now()
	op := s.ops.create(s.parent(), snap)
	p := rev.proc
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if p != nil {
			p.stop()
		}
		s.ops.finish(op, snap, nil)
	}()
	s.log.Info("revision deleted", "service", svc.id, "revision", rev.name)
	return s.ops.snapshot(op), nil
}
