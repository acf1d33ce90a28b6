package release_test

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-containerregistry/pkg/name"
	gcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/publish"
	"github.com/ai-square/coalmine/shared/registry"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/rollout"
)

// The release check runs against real servers: go-containerregistry's
// registry (in memory) behind the production registry client, the Cloud
// Run emulator behind the production adapter, and pstest behind the
// production bus.

const (
	project     = runemu.DefaultProject
	region      = runemu.DefaultRegion
	stableImage = "local.dev/web:stable"
	zeroDigest  = "@sha256:0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d"
)

type world struct {
	env    *release.Env
	run    *cloudrun.Client
	srv    *pstest.Server
	repo   string // the registry repository the policy allows
	pushed string // an image in it, by digest
}

func newWorld(t *testing.T, registryHost string) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	w := &world{}
	if registryHost == "" {
		srv := httptest.NewServer(gcrregistry.New(gcrregistry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(srv.Close)
		registryHost = strings.TrimPrefix(srv.URL, "http://")
		w.repo = registryHost + "/ai-square/web"
		w.pushed = pushImage(t, w.repo)
	} else {
		w.repo = registryHost + "/ai-square/web"
	}

	reg := runemu.NewRegistry()
	reg.Register(stableImage, runemu.Image{})
	emu, err := runemu.New(runemu.Options{Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	svcs, err := run.NewServicesClient(ctx, emu.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer svcs.Close()
	op, err := svcs.CreateService(ctx, &runpb.CreateServiceRequest{
		Parent: "projects/" + project + "/locations/" + region, ServiceId: "web",
		Service: &runpb.Service{Template: &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: stableImage}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	w.run, err = cloudrun.New(ctx, cloudrun.Options{Project: project, Region: region, PollInterval: 20 * time.Millisecond, ClientOptions: emu.ClientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.run.Close() })

	w.srv = pstest.NewServer()
	t.Cleanup(func() { w.srv.Close() })
	conn, err := grpc.NewClient(w.srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pubsub.NewClient(ctx, project, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{events.TopicBackup, events.TopicRollback, events.TopicRelease, events.TopicEvents} {
		if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + project + "/topics/" + topic}); err != nil {
			t.Fatal(err)
		}
	}
	bus := publish.NewWithClient(ps)
	t.Cleanup(func() { bus.Close() })

	pol, err := policy.Parse([]byte("services:\n  - {name: web, project: " + project + ", region: " + region + ", images: [" + w.repo + "], windows: {deny: []}, backup: {required: false}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	w.env = &release.Env{
		Policy: pol, Bus: bus, Images: registry.New(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		CloudRun: func(context.Context, string, string) (release.CloudRun, error) { return w.run, nil },
	}
	return w
}

// pushImage pushes a random image to repo and returns it by digest.
func pushImage(t *testing.T, repo string) string {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo + "@" + d.String()
}

func (w *world) state(t *testing.T) rollout.State {
	t.Helper()
	svc, err := w.run.Read(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	return svc.State
}

// published lists the types of the commands published (events aside).
func (w *world) published() []string {
	var out []string
	for _, m := range w.srv.Messages() {
		if typ := m.Attributes[events.AttrType]; strings.HasPrefix(typ, "dev.coalmine.command.") {
			out = append(out, typ)
		}
	}
	return out
}

func releaseOf(image string) events.Command {
	return events.Command{Type: events.CommandRelease, Service: "web", Image: image, Step: events.StepRelease, Actor: "operator:test"}
}

func TestReleaseOfAnImageNotInTheRegistryIsRefused(t *testing.T) {
	w := newWorld(t, "")
	missing := w.repo + zeroDigest
	if err := w.env.Release(context.Background(), releaseOf(missing), time.Now()); err != nil {
		t.Fatalf("Release of an image not in the registry = %v, want nil (acknowledged)", err)
	}
	if st := w.state(t); st.Generation != 0 || len(w.published()) != 0 {
		t.Errorf("refused release: state generation %d, published %v; want nothing", st.Generation, w.published())
	}

	// The image in the registry is claimed.
	if err := w.env.Release(context.Background(), releaseOf(w.pushed), time.Now()); err != nil {
		t.Fatalf("Release = %v", err)
	}
	st := w.state(t)
	if st.Rollout == nil || st.Rollout.Image != w.pushed {
		t.Fatalf("release of an image in the registry: state %+v, want its claim", st.Rollout)
	}
	if got := w.published(); len(got) != 1 || got[0] != string(events.CommandBackup) {
		t.Errorf("published %v, want the backup command", got)
	}
}

func TestReleaseWhenTheRegistryCannotBeReachedIsRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := ln.Addr().String()
	ln.Close() // nothing answers there now
	w := newWorld(t, host)
	err = w.env.Release(context.Background(), releaseOf(w.repo+zeroDigest), time.Now())
	if err == nil {
		t.Fatal("Release with the registry down = nil, want an error (delivered again)")
	}
	if st := w.state(t); st.Generation != 0 || len(w.published()) != 0 {
		t.Errorf("Release with the registry down: state generation %d, published %v; want nothing", st.Generation, w.published())
	}
}

// A push queued behind a rollout whose image left the registry since is
// dropped when its release comes, not released again by every tick.
func TestQueuedPushNoLongerInTheRegistryIsDropped(t *testing.T) {
	w := newWorld(t, "")
	ctx := context.Background()
	now := time.Now()
	if err := w.env.Release(ctx, releaseOf(w.pushed), now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	// A second image is pushed to the registry (so the push is queued),
	// then leaves it.
	gone := w.repo + zeroDigest
	svc, err := w.run.Read(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	res := rollout.Apply(svc.State, rollout.Command{Kind: rollout.Claim, Service: "web", Image: gone, Digest: zeroDigest[1:], PublishTime: now,
		Stages: []int{10, 100}, Stable: svc.Serving, WindowOpen: true, Actor: "test"}, now, rollout.Config{})
	if res.State.Pending == nil {
		t.Fatalf("set-up: not queued: %s %s", res.Outcome, res.Reason)
	}
	if _, err := w.run.SetTraffic(ctx, svc, res.State); err != nil {
		t.Fatal(err)
	}
	c := releaseOf(gone)
	c.Pushed = now
	if err := w.env.Release(ctx, c, now); err != nil {
		t.Fatalf("Release = %v, want nil", err)
	}
	st := w.state(t)
	if st.Pending != nil {
		t.Fatalf("queued push still there: %+v", st.Pending)
	}
	if last := st.History[len(st.History)-1]; last.Kind != rollout.Dequeue || !strings.Contains(last.Reason, "not in the registry") {
		t.Errorf("last history entry %+v, want the dequeue saying why", last)
	}
}
