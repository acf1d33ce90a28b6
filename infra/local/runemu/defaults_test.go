package runemu_test

import (
	"regexp"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// defaulted is template(revision, image) with the server-side defaults the emulator fills in.
func defaulted(revision, image string) *runpb.RevisionTemplate {
	t := template(revision, image)
	t.Timeout = durationpb.New(300 * time.Second)
	t.MaxInstanceRequestConcurrency = 80
	t.Scaling = &runpb.RevisionScaling{MaxInstanceCount: 100}
	c := t.Containers[0]
	c.Resources = &runpb.ResourceRequirements{Limits: map[string]string{"cpu": "1000m", "memory": "512Mi"}}
	c.Ports = []*runpb.ContainerPort{{Name: "http1", ContainerPort: 8080}}
	c.StartupProbe = &runpb.Probe{TimeoutSeconds: 240, PeriodSeconds: 240, FailureThreshold: 1,
		ProbeType: &runpb.Probe_TcpSocket{TcpSocket: &runpb.TCPSocketAction{Port: 8080}}}
	return t
}

// TestServerSideDefaults: the stored template, as the service and its revision show it, has
// Cloud Run's defaults filled in; values the client set are kept.
func TestServerSideDefaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	svc := e.create(t, "svc", &runpb.Service{Template: template("svc-v1", imageA)})
	if got, want := svc.GetTemplate(), defaulted("svc-v1", imageA); !proto.Equal(got, want) {
		t.Errorf("service template:\ngot  %v\nwant %v", got, want)
	}
	rev, err := e.revs.GetRevision(testCtx(t), &runpb.GetRevisionRequest{Name: e.revisionName("svc", "svc-v1")})
	if err != nil {
		t.Fatalf("GetRevision: %v", err)
	}
	want := defaulted("svc-v1", imageA)
	if got := (&runpb.RevisionTemplate{Timeout: rev.GetTimeout(), MaxInstanceRequestConcurrency: rev.GetMaxInstanceRequestConcurrency(),
		Scaling: rev.GetScaling(), Containers: rev.GetContainers()}); !proto.Equal(got, &runpb.RevisionTemplate{Timeout: want.Timeout,
		MaxInstanceRequestConcurrency: want.MaxInstanceRequestConcurrency, Scaling: want.Scaling, Containers: want.Containers}) {
		t.Errorf("revision settings: got %v, want the defaulted template's %v", got, want)
	}

	own := template("svc2-v1", imageA)
	own.Timeout = durationpb.New(time.Minute)
	own.MaxInstanceRequestConcurrency = 10
	own.Scaling = &runpb.RevisionScaling{MinInstanceCount: 1, MaxInstanceCount: 3}
	own.Containers[0].Resources = &runpb.ResourceRequirements{Limits: map[string]string{"memory": "2Gi"}}
	own.Containers[0].Ports = []*runpb.ContainerPort{{Name: "h2c", ContainerPort: 9000}}
	got := e.create(t, "svc2", &runpb.Service{Template: own}).GetTemplate()
	wantOwn := proto.CloneOf(own)
	wantOwn.Containers[0].Resources.Limits["cpu"] = "1000m"
	wantOwn.Containers[0].StartupProbe = &runpb.Probe{TimeoutSeconds: 240, PeriodSeconds: 240, FailureThreshold: 1,
		ProbeType: &runpb.Probe_TcpSocket{TcpSocket: &runpb.TCPSocketAction{Port: 9000}}}
	if !proto.Equal(got, wantOwn) {
		t.Errorf("template with the client's own settings:\ngot  %v\nwant %v", got, wantOwn)
	}
}

// TestWhenATemplateMakesARevision: a template equal to the current one after defaults makes
// no revision, whatever else the update changes; an explicit name of an existing revision
// with another configuration is ALREADY_EXISTS; an unnamed changed template makes a
// generated revision, and clearing the name is a change.
func TestWhenATemplateMakesARevision(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	first := e.create(t, "svc", &runpb.Service{Template: template("svc-v1", imageA)})
	v1 := e.revisionName("svc", "svc-v1")

	// Traffic and annotations change; the template goes back as read.
	asRead := proto.CloneOf(first)
	asRead.Annotations = map[string]string{"coalmine.dev/rollout": `{"generation":1}`}
	asRead.Traffic = []*runpb.TrafficTarget{{Type: revision, Revision: "svc-v1", Percent: 100, Tag: "stable"}}
	if got := e.mustUpdate(t, asRead); got.GetLatestCreatedRevision() != v1 {
		t.Errorf("template sent back as read: latest created %q, want %q", got.GetLatestCreatedRevision(), v1)
	}
	// The template as first submitted, without the defaults, is the same template.
	bare := e.get(t, "svc")
	bare.Template = template("svc-v1", imageA)
	bare.Traffic = []*runpb.TrafficTarget{{Type: revision, Revision: "svc-v1", Percent: 100}}
	if got := e.mustUpdate(t, bare); got.GetLatestCreatedRevision() != v1 {
		t.Errorf("template without defaults: latest created %q, want %q", got.GetLatestCreatedRevision(), v1)
	}
	if got, want := len(listRevisions(t, e, "svc")), 1; got != want {
		t.Fatalf("%d revisions after updates that kept the template, want %d", got, want)
	}

	// The same name with another configuration is refused, and changes nothing.
	before := e.get(t, "svc")
	for name, mutate := range map[string]func(*runpb.RevisionTemplate){
		"env": func(t *runpb.RevisionTemplate) {
			t.Containers[0].Env = []*runpb.EnvVar{{Name: "A", Values: &runpb.EnvVar_Value{Value: "b"}}}
		},
		"image":                 func(t *runpb.RevisionTemplate) { t.Containers[0].Image = imageB },
		"health_check_disabled": func(t *runpb.RevisionTemplate) { t.HealthCheckDisabled = true },
		"memory": func(t *runpb.RevisionTemplate) {
			t.Containers[0].Resources = &runpb.ResourceRequirements{Limits: map[string]string{"memory": "1Gi"}}
		},
	} {
		in := proto.CloneOf(before)
		mutate(in.Template)
		_, err := e.svcs.UpdateService(testCtx(t), &runpb.UpdateServiceRequest{Service: in})
		want := "Revision named 'svc-v1' with different configuration already exists."
		if got := status.Convert(err); got.Code() != codes.AlreadyExists || got.Message() != want {
			t.Errorf("%s changed under the same name: %v, want %v %q", name, err, codes.AlreadyExists, want)
		}
	}
	sameSpec(t, "after the refused updates", e.get(t, "svc"), before)

	// Clearing the name is a template change: a generated revision.
	generated := regexp.MustCompile(`^svc-\d{5}-[a-z]{3}$`)
	unnamed := e.get(t, "svc")
	unnamed.Template.Revision = ""
	cleared := e.mustUpdate(t, unnamed)
	gen1 := lastSegment(cleared.GetLatestCreatedRevision())
	if !generated.MatchString(gen1) {
		t.Errorf("name cleared: latest created %q, want a generated name", gen1)
	}
	// Unnamed and unchanged: no revision. Unnamed and changed: a generated one.
	if got := e.mustUpdate(t, e.get(t, "svc")); lastSegment(got.GetLatestCreatedRevision()) != gen1 {
		t.Errorf("unnamed template sent back as read: latest created %q, want %q", got.GetLatestCreatedRevision(), gen1)
	}
	changed := e.get(t, "svc")
	changed.Template.Containers[0].Image = imageB
	gen2 := lastSegment(e.mustUpdate(t, changed).GetLatestCreatedRevision())
	if !generated.MatchString(gen2) || gen2 == gen1 {
		t.Errorf("unnamed changed template: latest created %q, want a new generated name (not %q)", gen2, gen1)
	}
	// Naming an existing revision with its own configuration makes no revision.
	back := e.get(t, "svc")
	back.Template = template("svc-v1", imageA)
	if got := e.mustUpdate(t, back); got.GetLatestCreatedRevision() != v1 {
		t.Errorf("template restored under svc-v1: latest created %q, want %q", got.GetLatestCreatedRevision(), v1)
	}
	if got, want := len(listRevisions(t, e, "svc")), 3; got != want {
		t.Errorf("%d revisions, want %d (svc-v1 and two generated)", got, want)
	}
}
