package runemu_test

import (
	"strings"
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// TestValidationRejectsAndChangesNothing: invalid creates and updates fail with the right
// code and a message naming the field, and leave every resource as it was.
func TestValidationRejectsAndChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	e.create(t, "svc", &runpb.Service{Template: template("svc-stable", imageA)})
	base := e.get(t, "svc")

	traffic := func(tt ...*runpb.TrafficTarget) func(*runpb.Service) {
		return func(s *runpb.Service) { s.Traffic = tt }
	}
	rev := func(name string, pct int32, tag string) *runpb.TrafficTarget {
		return &runpb.TrafficTarget{Type: revision, Revision: name, Percent: pct, Tag: tag}
	}
	updates := []struct {
		name     string
		mutate   func(*runpb.Service)
		mask     []string
		wantCode codes.Code
		wantMsg  string
	}{
		{"percent above 100", traffic(rev("svc-stable", 120, "")), nil, codes.InvalidArgument, "service.traffic[0].percent"},
		{"negative percent", traffic(rev("svc-stable", 100, ""), &runpb.TrafficTarget{Type: latest, Percent: -10}), nil, codes.InvalidArgument, "service.traffic[1].percent"},
		{"sum below 100", traffic(rev("svc-stable", 50, "")), nil, codes.InvalidArgument, "add up to 100"},
		{"sum above 100", traffic(rev("svc-stable", 100, ""), &runpb.TrafficTarget{Type: latest, Percent: 10}), nil, codes.InvalidArgument, "add up to 100"},
		{"duplicate tags", traffic(rev("svc-stable", 100, "blue"), &runpb.TrafficTarget{Type: latest, Tag: "blue"}), nil, codes.InvalidArgument, "service.traffic[1].tag"},
		{"invalid tag", traffic(rev("svc-stable", 100, "Blue_1")), nil, codes.InvalidArgument, "service.traffic[0].tag"},
		{"unknown revision", traffic(rev("svc-nope", 100, "")), nil, codes.InvalidArgument, "svc-nope"},
		{"revision of another service", traffic(rev(e.revisionName("other", "other-v1"), 100, "")), nil, codes.InvalidArgument, "service.traffic[0].revision"},
		{"latest naming a revision", traffic(&runpb.TrafficTarget{Type: latest, Revision: "svc-stable", Percent: 100}), nil, codes.InvalidArgument, "service.traffic[0].revision"},
		{"unspecified type", traffic(&runpb.TrafficTarget{Revision: "svc-stable", Percent: 100}), nil, codes.InvalidArgument, "service.traffic[0].type"},
		{"reserved service annotation", func(s *runpb.Service) { s.Annotations = map[string]string{"run.googleapis.com/ingress": "all"} }, nil, codes.InvalidArgument, "service.annotations"},
		{"reserved service label", func(s *runpb.Service) { s.Labels = map[string]string{"cloud.googleapis.com/location": "x"} }, nil, codes.InvalidArgument, "service.labels"},
		{"reserved template annotation", func(s *runpb.Service) {
			s.Template.Annotations = map[string]string{"autoscaling.knative.dev/maxScale": "3"}
		}, nil, codes.InvalidArgument, "service.template.annotations"},
		{"reserved template label", func(s *runpb.Service) { s.Template.Labels = map[string]string{"serving.knative.dev/route": "x"} }, nil, codes.InvalidArgument, "service.template.labels"},
		{"annotations over 256 KiB", func(s *runpb.Service) {
			s.Annotations = map[string]string{"coalmine.dev/rollout": strings.Repeat("x", 257<<10)}
		}, nil, codes.InvalidArgument, "service.annotations"},
		{"no template", func(s *runpb.Service) { s.Template = nil }, nil, codes.InvalidArgument, "service.template"},
		{"no containers", func(s *runpb.Service) { s.Template.Containers = nil }, nil, codes.InvalidArgument, "service.template.containers"},
		{"empty image", func(s *runpb.Service) { s.Template.Containers[0].Image = "" }, nil, codes.InvalidArgument, "service.template.containers[0].image"},
		{"revision name without service prefix", func(s *runpb.Service) { s.Template = template("other-v2", imageB) }, nil, codes.InvalidArgument, "service.template.revision"},
		{"explicit revision reused with another template", func(s *runpb.Service) { s.Template = template("svc-stable", imageB) }, nil, codes.AlreadyExists, "Revision named 'svc-stable' with different configuration already exists"},
		{"nested update mask", func(s *runpb.Service) { s.Labels = map[string]string{"a": "b"} }, []string{"template.containers"}, codes.Unimplemented, "update_mask"},
		{"output-only update mask", func(s *runpb.Service) {}, []string{"uri"}, codes.InvalidArgument, "update_mask"},
		{"unknown service", func(s *runpb.Service) { s.Name = e.serviceName("nope") }, nil, codes.NotFound, "nope"},
		{"bad service name", func(s *runpb.Service) { s.Name = "services/svc" }, nil, codes.InvalidArgument, "service.name"},
	}
	for _, tc := range updates {
		t.Run("update/"+tc.name, func(t *testing.T) {
			in := proto.CloneOf(base)
			tc.mutate(in)
			req := &runpb.UpdateServiceRequest{Service: in}
			if tc.mask != nil {
				req.UpdateMask = &fieldmaskpb.FieldMask{Paths: tc.mask}
			}
			_, err := e.svcs.UpdateService(testCtx(t), req)
			if got := codeOf(err); got != tc.wantCode {
				t.Fatalf("code %v (%v), want %v", got, err, tc.wantCode)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tc.wantMsg)
			}
			sameSpec(t, "after the rejected update", e.get(t, "svc"), base)
			if got, want := len(listRevisions(t, e, "svc")), 1; got != want {
				t.Errorf("service has %d revisions, want %d", got, want)
			}
		})
	}

	creates := []struct {
		name, id string
		svc      *runpb.Service
		wantCode codes.Code
		wantMsg  string
	}{
		{"upper-case id", "Svc2", &runpb.Service{Template: template("", imageA)}, codes.InvalidArgument, "service_id"},
		{"id starting with a digit", "2svc", &runpb.Service{Template: template("", imageA)}, codes.InvalidArgument, "service_id"},
		{"id with trailing hyphen", "svc2-", &runpb.Service{Template: template("", imageA)}, codes.InvalidArgument, "service_id"},
		{"id with underscore", "svc_2", &runpb.Service{Template: template("", imageA)}, codes.InvalidArgument, "service_id"},
		{"id of 50 characters", "s" + strings.Repeat("v", 49), &runpb.Service{Template: template("", imageA)}, codes.InvalidArgument, "fewer than 50"},
		{"empty id", "", &runpb.Service{Template: template("", imageA)}, codes.InvalidArgument, "service_id"},
		{"duplicate", "svc", &runpb.Service{Template: template("", imageA)}, codes.AlreadyExists, "svc"},
		{"reserved annotation", "svc2", &runpb.Service{Template: template("", imageA), Annotations: map[string]string{"run.googleapis.com/launch-stage": "BETA"}}, codes.InvalidArgument, "service.annotations"},
		{"traffic to unknown revision", "svc2", &runpb.Service{Template: template("svc2-a", imageA), Traffic: []*runpb.TrafficTarget{{Type: revision, Revision: "svc2-b", Percent: 100}}}, codes.InvalidArgument, "svc2-b"},
	}
	for _, tc := range creates {
		t.Run("create/"+tc.name, func(t *testing.T) {
			_, err := e.svcs.CreateService(testCtx(t), &runpb.CreateServiceRequest{Parent: e.parent, ServiceId: tc.id, Service: tc.svc})
			if got := codeOf(err); got != tc.wantCode {
				t.Fatalf("code %v (%v), want %v", got, err, tc.wantCode)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tc.wantMsg)
			}
			if got, want := len(listServices(t, e)), 1; got != want {
				t.Errorf("%d services exist, want %d", got, want)
			}
			sameSpec(t, "after the rejected create", e.get(t, "svc"), base)
		})
	}
}

// TestTagAndServiceNameLimit: Cloud Run refuses a traffic tag whose length plus the service
// name's exceeds 46 characters, on create and on update, and changes nothing.
func TestTagAndServiceNameLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	const want = "Combined traffic tag and service name cannot exceed 46 characters"
	id := "s" + strings.Repeat("x", 37) // 38 characters
	pinned := func(tag string) []*runpb.TrafficTarget {
		return []*runpb.TrafficTarget{{Type: revision, Revision: id + "-v1", Percent: 100, Tag: tag}}
	}

	_, err := e.svcs.CreateService(testCtx(t), &runpb.CreateServiceRequest{Parent: e.parent, ServiceId: id + "9",
		Service: &runpb.Service{Template: template("", imageA), Traffic: []*runpb.TrafficTarget{{Type: latest, Percent: 100, Tag: "previous"}}}})
	if got := status.Convert(err); got.Code() != codes.InvalidArgument || got.Message() != want {
		t.Errorf("CreateService with a 39-character name and tag previous: %v, want %v %q", err, codes.InvalidArgument, want)
	}
	if got := len(listServices(t, e)); got != 0 {
		t.Errorf("%d services exist after the refused create, want 0", got)
	}

	base := e.create(t, id, &runpb.Service{Template: template(id+"-v1", imageA), Traffic: pinned("previous")})
	for _, tc := range []struct {
		tag     string
		refused bool
	}{
		{"previous", false}, // 38 + 8 = 46
		{"previous1", true}, // 47
		{"canary", false},
		{strings.Repeat("t", 9), true},
	} {
		in := proto.CloneOf(e.get(t, id))
		in.Traffic = pinned(tc.tag)
		_, err := e.update(t, in)
		if !tc.refused {
			if err != nil {
				t.Errorf("tag %q (%d characters with the name): %v, want accepted", tc.tag, len(id)+len(tc.tag), err)
			}
			continue
		}
		if got := status.Convert(err); got.Code() != codes.InvalidArgument || got.Message() != want {
			t.Errorf("tag %q (%d characters with the name): %v, want %v %q", tc.tag, len(id)+len(tc.tag), err, codes.InvalidArgument, want)
		}
	}
	if got, want := len(listRevisions(t, e, id)), 1; got != want {
		t.Errorf("%d revisions, want %d", got, want)
	}
	if got := e.get(t, id).GetGeneration(); got != base.GetGeneration()+2 {
		t.Errorf("generation %d, want %d (two accepted updates)", got, base.GetGeneration()+2)
	}
}
