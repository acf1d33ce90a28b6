package release_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/rollout"
)

const (
	imageRepo = "europe-docker.pkg.dev/p/r/web"
	pushed    = imageRepo + "@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	missing   = imageRepo + "@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// images is a registry holding the images in it; err, when set, is what
// every lookup answers.
type images struct {
	in      map[string]bool
	err     error
	checked []string
}

func (i *images) Exists(_ context.Context, image string) error {
	i.checked = append(i.checked, image)
	if i.err != nil {
		return i.err
	}
	if !i.in[image] {
		return fmt.Errorf("image %s: %w europe-docker.pkg.dev", image, release.ErrImageNotFound)
	}
	return nil
}

// cloudRun is one service's Cloud Run: reads and state-only writes; any
// other call panics (the embedded interface is nil).
type cloudRun struct {
	release.CloudRun
	svc    cloudrun.Service
	reads  int
	writes []rollout.State
}

func (c *cloudRun) Read(context.Context, string) (*cloudrun.Service, error) {
	c.reads++
	svc := c.svc
	return &svc, nil
}

func (c *cloudRun) SetTraffic(_ context.Context, svc *cloudrun.Service, next rollout.State) (*cloudrun.Service, error) {
	c.writes = append(c.writes, next)
	after := *svc
	after.State = next
	c.svc = after
	return &after, nil
}

// bus records what is published.
type bus struct{ commands []events.Command }

func (b *bus) Command(_ context.Context, c events.Command) error {
	b.commands = append(b.commands, c)
	return nil
}
func (b *bus) Event(context.Context, events.Lifecycle) error { return nil }

func newEnv(t *testing.T, st rollout.State, reg *images) (*release.Env, *cloudRun, *bus) {
	t.Helper()
	pol, err := policy.Parse([]byte("services:\n  - {name: web, project: my-project, region: europe-west1, images: [" + imageRepo + "], windows: {deny: []}, backup: {required: false}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	run := &cloudRun{svc: cloudrun.Service{Name: "web", Serving: "web-00001", State: st}}
	b := &bus{}
	env := &release.Env{
		Policy: pol, Bus: b, Images: reg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		CloudRun: func(context.Context, string, string) (release.CloudRun, error) { return run, nil },
	}
	return env, run, b
}

func releaseOf(image string) events.Command {
	return events.Command{Type: events.CommandRelease, Service: "web", Image: image, Step: events.StepRelease, Actor: "operator:test"}
}

func TestReleaseOfAnImageNotInTheRegistryIsRefused(t *testing.T) {
	reg := &images{in: map[string]bool{pushed: true}}
	env, run, b := newEnv(t, rollout.State{}, reg)
	if err := env.Release(context.Background(), releaseOf(missing), time.Now()); err != nil {
		t.Fatalf("Release of an image not in the registry = %v, want nil (acknowledged)", err)
	}
	if got, want := strings.Join(reg.checked, " "), missing; got != want {
		t.Errorf("images checked: %q, want %q", got, want)
	}
	if len(run.writes) != 0 || len(b.commands) != 0 {
		t.Errorf("refused release wrote %d states and published %v, want nothing", len(run.writes), b.commands)
	}

	// The image in the registry is claimed.
	if err := env.Release(context.Background(), releaseOf(pushed), time.Now()); err != nil {
		t.Fatalf("Release = %v", err)
	}
	if len(run.writes) != 1 || run.writes[0].Rollout == nil || run.writes[0].Rollout.Image != pushed {
		t.Fatalf("release of an image in the registry wrote %+v, want its claim", run.writes)
	}
	if len(b.commands) != 1 || b.commands[0].Type != events.CommandBackup {
		t.Errorf("published %v, want the backup command", b.commands)
	}
}

func TestReleaseWhenTheRegistryCannotBeReachedIsRetried(t *testing.T) {
	down := errors.New("dial tcp: connection refused")
	env, run, b := newEnv(t, rollout.State{}, &images{err: down})
	err := env.Release(context.Background(), releaseOf(pushed), time.Now())
	if !errors.Is(err, down) {
		t.Fatalf("Release with the registry down = %v, want an error wrapping %v (delivered again)", err, down)
	}
	if run.reads != 0 || len(run.writes) != 0 || len(b.commands) != 0 {
		t.Errorf("Release with the registry down read %d times, wrote %d states, published %v; want nothing", run.reads, len(run.writes), b.commands)
	}
}

// A push queued behind a rollout whose image left the registry since is
// dropped when its release comes, not released again by every tick.
func TestQueuedPushNoLongerInTheRegistryIsDropped(t *testing.T) {
	now := time.Now()
	cfg := rollout.DefaultConfig()
	claim := rollout.Command{Kind: rollout.Claim, Service: "web", Image: pushed, Digest: digestOf(pushed), PublishTime: now.Add(-time.Minute),
		Stages: []int{10, 100}, Stable: "web-00001", WindowOpen: true, Actor: "test"}
	res := rollout.Apply(rollout.State{}, claim, now, cfg)
	queue := claim
	queue.Image, queue.Digest, queue.PublishTime = missing, digestOf(missing), now
	res = rollout.Apply(res.State, queue, now, cfg)
	if res.State.Pending == nil {
		t.Fatalf("set-up: %s not queued: %s %s", missing, res.Outcome, res.Reason)
	}
	env, run, b := newEnv(t, res.State, &images{in: map[string]bool{pushed: true}})
	c := releaseOf(missing)
	c.Pushed = now
	if err := env.Release(context.Background(), c, now); err != nil {
		t.Fatalf("Release = %v, want nil", err)
	}
	if len(run.writes) != 1 || run.writes[0].Pending != nil {
		t.Fatalf("writes %+v, want one that drops the queued push", run.writes)
	}
	h := run.writes[0].History
	if last := h[len(h)-1]; last.Kind != rollout.Dequeue || !strings.Contains(last.Reason, "not in the registry") {
		t.Errorf("last history entry %+v, want the dequeue saying why", last)
	}
	if len(b.commands) != 0 {
		t.Errorf("published %v, want nothing", b.commands)
	}
}

func digestOf(image string) string { return image[strings.IndexByte(image, '@')+1:] }
