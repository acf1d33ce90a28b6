package scheduleremu

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/scheduler/apiv1/schedulerpb"
	"github.com/robfig/cron/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MaxPageSize is the largest page ListJobs returns, and its default (Google's limit).
const MaxPageSize = 500

// MaxRetryCount is the largest retry_config.retry_count Google allows.
const MaxRetryCount = 5

// schedulerAPI serves google.cloud.scheduler.v1.CloudScheduler for a Server (kept apart so
// that the RPC methods are not part of Server's API); the location RPCs are UNIMPLEMENTED.
type schedulerAPI struct {
	schedulerpb.UnimplementedCloudSchedulerServer
	*Server
}

var (
	parentPattern = regexp.MustCompile(`^projects/([^/]+)/locations/([^/]+)$`)
	jobPattern    = regexp.MustCompile(`^(projects/[^/]+/locations/[^/]+)/jobs/([^/]*)$`)
	jobIDPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,500}$`)
	topicPattern  = regexp.MustCompile(`^projects/([^/]+)/topics/([^/]+)$`)
)

// updatable are the update_mask paths UpdateJob takes.
var updatable = []string{"schedule", "time_zone", "description", "pubsub_target", "pubsub_target.data", "pubsub_target.attributes", "pubsub_target.topic_name", "retry_config"}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// checkParent validates projects/P/locations/L and returns P.
func checkParent(parent string) (string, error) {
	m := parentPattern.FindStringSubmatch(parent)
	if m == nil {
		return "", invalid("parent %q: want projects/PROJECT_ID/locations/LOCATION_ID", parent)
	}
	return m[1], nil
}

// checkJobName validates PARENT/jobs/JOB_ID and returns the parent.
func checkJobName(field, name string) (string, error) {
	if name == "" {
		return "", invalid("%s is required", field)
	}
	m := jobPattern.FindStringSubmatch(name)
	if m == nil || !jobIDPattern.MatchString(m[2]) {
		return "", invalid("%s %q: want projects/PROJECT_ID/locations/LOCATION_ID/jobs/JOB_ID, JOB_ID of letters, digits, hyphens and underscores, at most 500 characters", field, name)
	}
	return m[1], nil
}

// compile validates a job's user-set fields (its name is already checked) and parses its
// schedule. project is the job's project.
func (s *Server) compile(j *schedulerpb.Job, project string) (*cron.SpecSchedule, error) {
	if j.GetSchedule() == "" {
		return nil, invalid("job.schedule is required")
	}
	loc, err := loadZone(j.GetTimeZone())
	if err != nil {
		return nil, invalid("job.time_zone %q: unknown time zone (want a tz database name such as \"Europe/Berlin\", or \"UTC\")", j.GetTimeZone())
	}
	sched, err := parseSchedule(j.GetSchedule(), loc, s.opts.Fast)
	if err != nil {
		return nil, invalid("job.schedule %q: %v", j.GetSchedule(), err)
	}
	switch j.GetTarget().(type) {
	case *schedulerpb.Job_PubsubTarget:
	case *schedulerpb.Job_HttpTarget:
		return nil, invalid("job.http_target: only Pub/Sub targets are served by the local Scheduler")
	case *schedulerpb.Job_AppEngineHttpTarget:
		return nil, invalid("job.app_engine_http_target: only Pub/Sub targets are served by the local Scheduler")
	default:
		return nil, invalid("job.pubsub_target is required (only Pub/Sub targets are served by the local Scheduler)")
	}
	t := j.GetPubsubTarget()
	if t == nil {
		return nil, invalid("job.pubsub_target is required (only Pub/Sub targets are served by the local Scheduler)")
	}
	m := topicPattern.FindStringSubmatch(t.GetTopicName())
	switch {
	case m == nil:
		return nil, invalid("job.pubsub_target.topic_name %q: want projects/PROJECT_ID/topics/TOPIC_ID", t.GetTopicName())
	case m[1] != project:
		return nil, invalid("job.pubsub_target.topic_name %q: The topic must be in the same project as the Cloud Scheduler job (%q)", t.GetTopicName(), project)
	}
	if len(t.GetData()) == 0 && len(t.GetAttributes()) == 0 {
		return nil, invalid("job.pubsub_target: Pubsub message must contain either non-empty data, or at least one attribute")
	}
	if n := j.GetRetryConfig().GetRetryCount(); n < 0 || n > MaxRetryCount {
		return nil, invalid("job.retry_config.retry_count %d: Values greater than 5 and negative values are not allowed", n)
	}
	return sched, nil
}

// schedule sets a job's next schedule time from now; a schedule that never fires is
// refused.
func schedule(j *schedulerpb.Job, sched *cron.SpecSchedule, now time.Time) error {
	next := sched.Next(now)
	if next.IsZero() {
		return invalid("job.schedule %q: never fires (no matching time within five years)", j.GetSchedule())
	}
	j.ScheduleTime = timestamppb.New(next)
	return nil
}

// userFields copies what a user may set on a job; output-only fields are left behind.
func userFields(j *schedulerpb.Job) *schedulerpb.Job {
	out := &schedulerpb.Job{
		Name:            j.GetName(),
		Description:     j.GetDescription(),
		Schedule:        j.GetSchedule(),
		TimeZone:        j.GetTimeZone(),
		AttemptDeadline: j.GetAttemptDeadline(),
	}
	if rc := j.GetRetryConfig(); rc != nil {
		out.RetryConfig = proto.Clone(rc).(*schedulerpb.RetryConfig)
	}
	switch t := j.GetTarget().(type) {
	case *schedulerpb.Job_PubsubTarget:
		if t.PubsubTarget != nil {
			out.Target = &schedulerpb.Job_PubsubTarget{PubsubTarget: proto.Clone(t.PubsubTarget).(*schedulerpb.PubsubTarget)}
		}
	default:
		out.Target = t // refused by compile
	}
	return out
}

func newJobID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "job-" + hex.EncodeToString(b)
}

func (s *Server) notFound(name string) error {
	return status.Errorf(codes.NotFound, "job %q not found", name)
}

// lookup returns the entry of a valid job name; s.mu is held.
func (s *Server) lookup(name string) (*entry, error) {
	if _, err := checkJobName("name", name); err != nil {
		return nil, err
	}
	e, ok := s.jobs[name]
	if !ok {
		return nil, s.notFound(name)
	}
	return e, nil
}

func clone(j *schedulerpb.Job) *schedulerpb.Job { return proto.Clone(j).(*schedulerpb.Job) }

func (s schedulerAPI) CreateJob(_ context.Context, req *schedulerpb.CreateJobRequest) (*schedulerpb.Job, error) {
	project, err := checkParent(req.GetParent())
	if err != nil {
		return nil, err
	}
	if req.GetJob() == nil {
		return nil, invalid("job is required")
	}
	j := userFields(req.GetJob())
	if j.Name == "" {
		j.Name = req.GetParent() + "/jobs/" + newJobID()
	}
	parent, err := checkJobName("job.name", j.Name)
	if err != nil {
		return nil, err
	}
	if parent != req.GetParent() {
		return nil, invalid("job.name %q is not in parent %q", j.Name, req.GetParent())
	}
	sched, err := s.compile(j, project)
	if err != nil {
		return nil, err
	}
	if j.TimeZone == "" {
		j.TimeZone = "UTC"
	}
	now := s.now()
	if err := schedule(j, sched, now); err != nil {
		return nil, err
	}
	j.State = schedulerpb.Job_ENABLED
	j.UserUpdateTime = timestamppb.New(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[j.Name]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "job %q already exists", j.Name)
	}
	s.jobs[j.Name] = &entry{job: j, sched: sched}
	s.log.Debug("scheduler job created", "job", j.Name, "schedule", j.Schedule, "time_zone", j.TimeZone, "schedule_time", j.ScheduleTime.AsTime().Format(time.RFC3339))
	return clone(j), nil
}

func (s schedulerAPI) GetJob(_ context.Context, req *schedulerpb.GetJobRequest) (*schedulerpb.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookup(req.GetName())
	if err != nil {
		return nil, err
	}
	return clone(e.job), nil
}

func (s schedulerAPI) ListJobs(_ context.Context, req *schedulerpb.ListJobsRequest) (*schedulerpb.ListJobsResponse, error) {
	if _, err := checkParent(req.GetParent()); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, invalid("page_size %d: must not be negative", size)
	case size == 0 || size > MaxPageSize:
		size = MaxPageSize
	}
	prefix := req.GetParent() + "/jobs/"
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || !strings.HasPrefix(string(b), prefix) {
			return nil, invalid("page_token %q: not a token this list returned", tok)
		}
		after = string(b)
	}
	s.mu.Lock()
	var names []string
	for name := range s.jobs {
		if strings.HasPrefix(name, prefix) && name > after {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	resp := &schedulerpb.ListJobsResponse{}
	for i, name := range names {
		if i == size {
			resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(names[i-1]))
			break
		}
		resp.Jobs = append(resp.Jobs, clone(s.jobs[name].job))
	}
	s.mu.Unlock()
	return resp, nil
}

func (s schedulerAPI) UpdateJob(_ context.Context, req *schedulerpb.UpdateJobRequest) (*schedulerpb.Job, error) {
	in := req.GetJob()
	if in == nil {
		return nil, invalid("job is required")
	}
	if _, err := checkJobName("job.name", in.GetName()); err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	for _, p := range paths {
		if !contains(updatable, p) {
			return nil, invalid("update_mask: path %q is not supported (supported: %s)", p, strings.Join(updatable, ", "))
		}
	}
	if len(paths) == 0 {
		// An empty mask replaces every field a user sets, the target whatever its kind
		// (so that compile names a non-Pub/Sub one).
		paths = []string{"schedule", "time_zone", "description", "retry_config", "target"}
	}
	u := userFields(in)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.jobs[in.GetName()]
	if !ok {
		return nil, s.notFound(in.GetName())
	}
	j := clone(e.job)
	for _, p := range paths {
		switch p {
		case "schedule":
			j.Schedule = u.Schedule
		case "time_zone":
			j.TimeZone = u.TimeZone
		case "description":
			j.Description = u.Description
		case "retry_config":
			j.RetryConfig = u.RetryConfig
		case "target":
			j.Target = u.Target
		case "pubsub_target":
			j.Target = nil
			if t := u.GetPubsubTarget(); t != nil {
				j.Target = &schedulerpb.Job_PubsubTarget{PubsubTarget: t}
			}
		default: // pubsub_target.FIELD
			t := j.GetPubsubTarget()
			if t == nil {
				t = &schedulerpb.PubsubTarget{}
				j.Target = &schedulerpb.Job_PubsubTarget{PubsubTarget: t}
			}
			switch p {
			case "pubsub_target.data":
				t.Data = u.GetPubsubTarget().GetData()
			case "pubsub_target.attributes":
				t.Attributes = u.GetPubsubTarget().GetAttributes()
			case "pubsub_target.topic_name":
				t.TopicName = u.GetPubsubTarget().GetTopicName()
			}
		}
	}
	project := jobProject(j.Name)
	sched, err := s.compile(j, project)
	if err != nil {
		return nil, err
	}
	if j.TimeZone == "" {
		j.TimeZone = "UTC"
	}
	now := s.now()
	if err := schedule(j, sched, now); err != nil {
		return nil, err
	}
	j.UserUpdateTime = timestamppb.New(now)
	e.job, e.sched = j, sched
	s.log.Debug("scheduler job updated", "job", j.Name, "paths", paths, "schedule", j.Schedule, "schedule_time", j.ScheduleTime.AsTime().Format(time.RFC3339))
	return clone(j), nil
}

// jobProject is P of a valid projects/P/locations/L/jobs/J.
func jobProject(name string) string {
	return strings.SplitN(name, "/", 3)[1]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (s schedulerAPI) DeleteJob(_ context.Context, req *schedulerpb.DeleteJobRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.lookup(req.GetName()); err != nil {
		return nil, err
	}
	delete(s.jobs, req.GetName())
	s.log.Debug("scheduler job deleted", "job", req.GetName())
	return &emptypb.Empty{}, nil
}

func (s schedulerAPI) PauseJob(_ context.Context, req *schedulerpb.PauseJobRequest) (*schedulerpb.Job, error) {
	return s.setState(req.GetName(), schedulerpb.Job_ENABLED, schedulerpb.Job_PAUSED, "paused", "only an ENABLED job can be paused")
}

func (s schedulerAPI) ResumeJob(_ context.Context, req *schedulerpb.ResumeJobRequest) (*schedulerpb.Job, error) {
	return s.setState(req.GetName(), schedulerpb.Job_PAUSED, schedulerpb.Job_ENABLED, "resumed", "only a PAUSED job can be resumed")
}

// setState moves a job from one state to another. A resumed job's next schedule time is
// computed from now: the slots it missed while paused do not fire.
func (s *Server) setState(name string, from, to schedulerpb.Job_State, verb, rule string) (*schedulerpb.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	if st := e.job.GetState(); st != from {
		return nil, status.Errorf(codes.FailedPrecondition, "job %q is %s; %s", name, st, rule)
	}
	now := s.now()
	e.job.State = to
	e.job.UserUpdateTime = timestamppb.New(now)
	if to == schedulerpb.Job_ENABLED {
		if err := schedule(e.job, e.sched, now); err != nil {
			return nil, err
		}
	}
	s.log.Debug("scheduler job "+verb, "job", name)
	return clone(e.job), nil
}

func (s schedulerAPI) RunJob(ctx context.Context, req *schedulerpb.RunJobRequest) (*schedulerpb.Job, error) {
	s.mu.Lock()
	e, err := s.lookup(req.GetName())
	var t *schedulerpb.PubsubTarget
	if err == nil {
		t = proto.Clone(e.job.GetPubsubTarget()).(*schedulerpb.PubsubTarget)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.attempt(ctx, e, req.GetName(), t, s.now(), time.Time{})
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.jobs[req.GetName()]; ok {
		return clone(cur.job), nil
	}
	return nil, s.notFound(req.GetName())
}
