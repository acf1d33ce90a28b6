package pubsubemu_test

import (
	"context"
	"net"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
)

func TestEnsureTopology(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *pubsubemu.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		project := projectID(t)
		c, err := srv.NewClient(ctx, project)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()

		for i := range 2 { // the second run finds everything in place
			if err := pubsubemu.EnsureTopology(ctx, c, project, events.Triggers); err != nil {
				t.Fatalf("EnsureTopology #%d: %v", i+1, err)
			}
		}

		for _, topic := range events.Topics {
			if _, err := c.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: pubsubemu.TopicName(project, topic)}); err != nil {
				t.Errorf("topic %s: %v", topic, err)
			}
		}

		type want struct {
			sub, topic  string
			ackDeadline int32
			retry       bool
		}
		var wants []want
		for _, tr := range events.Triggers {
			wants = append(wants, want{tr.Subscription, tr.Topic, 600, true})
		}
		wants = append(wants,
			want{events.SubscriptionDeadLetter, events.TopicDeadLetter, 60, false},
			want{events.SubscriptionWatch, events.TopicEvents, 60, false},
		)
		for _, w := range wants {
			got, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{
				Subscription: pubsubemu.SubscriptionName(project, w.sub),
			})
			if err != nil {
				t.Errorf("subscription %s: %v", w.sub, err)
				continue
			}
			if got, want := got.GetTopic(), pubsubemu.TopicName(project, w.topic); got != want {
				t.Errorf("%s: topic = %q, want %q", w.sub, got, want)
			}
			if got, want := got.GetAckDeadlineSeconds(), w.ackDeadline; got != want {
				t.Errorf("%s: ack deadline = %d, want %d", w.sub, got, want)
			}
			if got.GetDeadLetterPolicy() != nil {
				t.Errorf("%s: dead-letter policy = %v, want none (the bridge dead-letters)", w.sub, got.GetDeadLetterPolicy())
			}
			if !w.retry {
				continue
			}
			rp := got.GetRetryPolicy()
			if rp == nil {
				t.Errorf("%s: no retry policy", w.sub)
				continue
			}
			if got, want := rp.GetMinimumBackoff().AsDuration(), events.MinBackoff; got != want {
				t.Errorf("%s: min backoff = %v, want %v", w.sub, got, want)
			}
			if got, want := rp.GetMaximumBackoff().AsDuration(), events.MaxBackoff; got != want {
				t.Errorf("%s: max backoff = %v, want %v", w.sub, got, want)
			}
		}

		// The data plane works through the same client options.
		id, err := c.Publisher(events.TopicEvents).Publish(ctx, &pubsub.Message{Data: []byte("hello")}).Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		var got *pubsub.Message
		err = c.Subscriber(events.SubscriptionWatch).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			got = m
			rcancel()
		})
		if err != nil {
			t.Fatal(err)
		}
		if got == nil {
			t.Fatal("no message on the watch subscription")
		}
		if got.ID != id || string(got.Data) != "hello" {
			t.Errorf("received id=%s data=%q, want id=%s data=%q", got.ID, got.Data, id, "hello")
		}
	})
}

func TestEnsureTopologyOtherTriggerTopics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *pubsubemu.Server) {
		ctx := context.Background()
		project := projectID(t)
		c, err := srv.NewClient(ctx, project)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		triggers := []events.Trigger{{Function: "F", Topic: "extra-topic", Subscription: "extra-sub"}}
		if err := pubsubemu.EnsureTopology(ctx, c, "", triggers); err != nil {
			t.Fatal(err)
		}
		sub, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{
			Subscription: pubsubemu.SubscriptionName(project, "extra-sub"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sub.GetTopic(), pubsubemu.TopicName(project, "extra-topic"); got != want {
			t.Errorf("topic = %q, want %q", got, want)
		}
	})
}

func TestStartExternal(t *testing.T) {
	ctx := context.Background()
	inner, err := pubsubemu.Start(ctx, pubsubemu.Options{Backend: pubsubemu.BackendPstest, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()

	tests := []struct {
		name    string
		opts    pubsubemu.Options
		env     string
		wantErr bool
	}{
		{name: "host option", opts: pubsubemu.Options{Backend: pubsubemu.BackendExternal, Host: inner.Host()}},
		{name: "host from env", opts: pubsubemu.Options{Backend: pubsubemu.BackendExternal}, env: inner.Host()},
		{name: "default backend with env", opts: pubsubemu.Options{}, env: inner.Host()},
		{name: "no host", opts: pubsubemu.Options{Backend: pubsubemu.BackendExternal}, wantErr: true},
		{name: "unknown backend", opts: pubsubemu.Options{Backend: "nope"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(pubsubemu.EnvEmulatorHost, tt.env)
			tt.opts.Logger = testLogger(t)
			srv, err := pubsubemu.Start(ctx, tt.opts)
			if tt.wantErr {
				if err == nil {
					srv.Close()
					t.Fatal("Start succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := srv.Backend(), pubsubemu.BackendExternal; got != want {
				t.Errorf("Backend() = %q, want %q", got, want)
			}
			if got, want := srv.Host(), inner.Host(); got != want {
				t.Errorf("Host() = %q, want %q", got, want)
			}
			if err := srv.Close(); err != nil {
				t.Fatal(err)
			}
			// Closing an external server leaves it running.
			c, err := srv.NewClient(ctx, projectID(t))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: pubsubemu.TopicName(c.Project(), "topic-t")}); err != nil {
				t.Errorf("external server unusable after Close: %v", err)
			}
		})
	}
}

func TestDefaultBackendIsPstest(t *testing.T) {
	t.Setenv(pubsubemu.EnvEmulatorHost, "")
	srv, err := pubsubemu.Start(context.Background(), pubsubemu.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if got, want := srv.Backend(), pubsubemu.BackendPstest; got != want {
		t.Errorf("Backend() = %q, want %q", got, want)
	}
}

func TestCloseStopsPstest(t *testing.T) {
	srv, err := pubsubemu.Start(context.Background(), pubsubemu.Options{Backend: pubsubemu.BackendPstest, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if conn, err := net.DialTimeout("tcp", srv.Host(), time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Close", srv.Host())
	}
}
