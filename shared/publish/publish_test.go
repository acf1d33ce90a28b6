package publish_test

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/publish"
)

// TestCommandAndEvent publishes through a real Pub/Sub server (pstest) and
// reads back what a function would receive.
func TestCommandAndEvent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := pstest.NewServer()
	defer srv.Close()
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pubsub.NewClient(ctx, "p", option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, topic := range []string{events.TopicShift, events.TopicEvents} {
		if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/p/topics/" + topic}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
			Name: "projects/p/subscriptions/" + topic, Topic: "projects/p/topics/" + topic, AckDeadlineSeconds: 10,
		}); err != nil {
			t.Fatal(err)
		}
	}
	bus := publish.NewWithClient(c)
	defer bus.Close()
	cmd := events.Command{Type: events.CommandShiftTraffic, Service: "web", Rollout: "web-abc", Generation: 3, Stage: 2, Step: events.StepStage(2)}
	if err := bus.Command(ctx, cmd); err != nil {
		t.Fatalf("Command: %v", err)
	}
	bad := cmd
	bad.Step = "stage-9"
	if err := bus.Command(ctx, bad); err == nil {
		t.Errorf("an invalid command was published")
	}
	if err := bus.Event(ctx, events.Lifecycle{Type: events.EventPaused, Service: "web", Rollout: "web-abc", Phase: "paused"}); err != nil {
		t.Fatalf("Event: %v", err)
	}
	got := receive(ctx, t, c, events.TopicShift)
	c2, err := events.DecodeCommand(got.Data)
	if err != nil {
		t.Fatalf("published command does not decode: %v", err)
	}
	if c2.Version != events.CommandVersion || c2.ID == "" || c2.Time.IsZero() || c2.Stage != 2 {
		t.Errorf("published command = %+v, want version, ID and time stamped", c2)
	}
	if got.Attributes[events.AttrType] != string(events.CommandShiftTraffic) {
		t.Errorf("attributes = %v", got.Attributes)
	}
	ev := receive(ctx, t, c, events.TopicEvents)
	if e, err := events.DecodeLifecycle(ev.Data); err != nil || e.Type != events.EventPaused {
		t.Errorf("published event = %+v, %v", e, err)
	}
}

func receive(ctx context.Context, t *testing.T, c *pubsub.Client, sub string) *pubsub.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	var got *pubsub.Message
	err := c.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		if got == nil {
			got = m
		}
		cancel()
	})
	if got == nil {
		t.Fatalf("nothing received on %s: %v", sub, err)
	}
	return got
}
