package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ai-square/coalmine/events"
)

// actor names the operator for the history: the gcloud account
// (CLOUDSDK_CORE_ACCOUNT, or `gcloud config get-value account`), else $USER.
func actor(ctx context.Context) string {
	who := os.Getenv("CLOUDSDK_CORE_ACCOUNT")
	if who == "" {
		if path, err := exec.LookPath("gcloud"); err == nil {
			gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			out, err := exec.CommandContext(gctx, path, "config", "get-value", "account").Output()
			cancel()
			if err == nil {
				who = strings.TrimSpace(string(out))
			}
		}
	}
	if who == "" || strings.Contains(who, "(unset)") {
		who = os.Getenv("USER")
	}
	if who == "" {
		who = "unknown"
	}
	return "operator:" + who
}

func newCommandID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// listener receives the outcome of one command: a subscription of its own
// on the events topic, made before the command is published (a
// subscription sees only messages published after it exists) and deleted
// when done. Its expiration policy removes it if the CLI dies first.
type listener struct {
	client *pubsub.Client
	name   string
	id     string
}

func (t *target) listen(ctx context.Context, id string) (*listener, error) {
	client, err := t.pubsubClient(ctx)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("projects/%s/subscriptions/coalmine-cli-%s", t.project, id)
	_, err = client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:               name,
		Topic:              fmt.Sprintf("projects/%s/topics/%s", t.project, events.TopicEvents),
		AckDeadlineSeconds: 10,
		ExpirationPolicy:   &pubsubpb.ExpirationPolicy{Ttl: durationpb.New(24 * time.Hour)},
	})
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("cannot listen for the outcome (use --no-wait to publish without waiting): %w", err)
	}
	return &listener{client: client, name: name, id: id}, nil
}

// errNoAnswer: no outcome arrived in time.
var errNoAnswer = errors.New("no answer")

// wait returns the outcome event of the command, or errNoAnswer after timeout.
func (l *listener) wait(ctx context.Context, timeout time.Duration) (events.Lifecycle, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		mu  sync.Mutex // Receive runs callbacks concurrently
		got *events.Lifecycle
	)
	err := l.client.Subscriber(l.name).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		e, err := events.DecodeLifecycle(m.Data)
		if err != nil || e.Type != events.EventOutcome || e.Command != l.id {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if got == nil {
			got = &e
			cancel()
		}
	})
	if got != nil {
		return *got, nil
	}
	if err != nil && ctx.Err() == nil && rctx.Err() == nil {
		return events.Lifecycle{}, fmt.Errorf("listening for the outcome: %w", err)
	}
	if ctx.Err() != nil {
		return events.Lifecycle{}, ctx.Err()
	}
	return events.Lifecycle{}, errNoAnswer
}

func (l *listener) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l.client.SubscriptionAdminClient.DeleteSubscription(ctx, &pubsubpb.DeleteSubscriptionRequest{Subscription: l.name})
	l.client.Close()
}

// errRefused is an outcome that did not apply (refused, too late): the
// command exits 1 after printing it.
type errRefused struct{ e events.Lifecycle }

func (e *errRefused) Error() string {
	return fmt.Sprintf("%s: %s", e.e.Outcome, e.e.Reason)
}

// report prints an outcome and returns an error for the ones that did not apply.
func report(a *app, what string, e events.Lifecycle) error {
	switch e.Outcome {
	case events.OutcomeApplied, events.OutcomeAlready, events.OutcomeQueued:
		fmt.Fprintf(a.stdout, "%s: %s", what, e.Outcome)
		if e.Reason != "" {
			fmt.Fprintf(a.stdout, " (%s)", e.Reason)
		}
		fmt.Fprintln(a.stdout)
		if e.Rollout != "" {
			fmt.Fprintf(a.stdout, "rollout %s: %s", e.Rollout, e.Phase)
			if e.Stage > 0 {
				fmt.Fprintf(a.stdout, ", stage %d (%d%% on the canary)", e.Stage, e.Percent)
			}
			fmt.Fprintln(a.stdout)
		}
		return nil
	}
	return &errRefused{e: e}
}
