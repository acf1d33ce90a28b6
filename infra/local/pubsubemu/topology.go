package pubsubemu

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ai-square/coalmine/events"
)

// Ack deadline bounds Pub/Sub accepts for a subscription.
const (
	minAckDeadline = 10 * time.Second
	maxAckDeadline = 600 * time.Second
)

// readerAckDeadline is the ack deadline of the subscriptions people and tools
// read (dead letters, lifecycle events).
const readerAckDeadline = 60 * time.Second

// EnsureTopology creates, in project (empty: the client's project), every
// topic in events.Topics (and any other topic a trigger names), one pull
// subscription per trigger, events.SubscriptionDeadLetter on
// events.TopicDeadLetter and events.SubscriptionWatch on events.TopicEvents.
// Resources that already exist are left as they are, so calling it again is
// harmless.
//
// Trigger subscriptions get events.AckDeadline (clamped to the 10–600 s the
// service accepts) and a retry policy of events.MinBackoff..MaxBackoff, but
// no dead-letter policy: locally the bridge retries and dead-letters itself,
// because pstest forwards dead letters without the CloudPubSubDeadLetter*
// attributes and repeatedly.
func EnsureTopology(ctx context.Context, c *pubsub.Client, project string, triggers []events.Trigger) error {
	if project == "" {
		project = c.Project()
	}
	topics := append([]string(nil), events.Topics...)
	seen := make(map[string]bool, len(topics))
	for _, t := range topics {
		seen[t] = true
	}
	for _, tr := range triggers {
		if !seen[tr.Topic] {
			seen[tr.Topic] = true
			topics = append(topics, tr.Topic)
		}
	}
	for _, t := range topics {
		_, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: TopicName(project, t)})
		if err := ignoreExists(err); err != nil {
			return fmt.Errorf("pubsubemu: creating topic %s: %w", t, err)
		}
	}

	subs := make([]*pubsubpb.Subscription, 0, len(triggers)+2)
	for _, tr := range triggers {
		subs = append(subs, &pubsubpb.Subscription{
			Name:               SubscriptionName(project, tr.Subscription),
			Topic:              TopicName(project, tr.Topic),
			AckDeadlineSeconds: ackDeadlineSeconds(events.AckDeadline),
			RetryPolicy: &pubsubpb.RetryPolicy{
				MinimumBackoff: durationpb.New(events.MinBackoff),
				MaximumBackoff: durationpb.New(events.MaxBackoff),
			},
		})
	}
	subs = append(subs,
		&pubsubpb.Subscription{
			Name:               SubscriptionName(project, events.SubscriptionDeadLetter),
			Topic:              TopicName(project, events.TopicDeadLetter),
			AckDeadlineSeconds: ackDeadlineSeconds(readerAckDeadline),
		},
		&pubsubpb.Subscription{
			Name:               SubscriptionName(project, events.SubscriptionWatch),
			Topic:              TopicName(project, events.TopicEvents),
			AckDeadlineSeconds: ackDeadlineSeconds(readerAckDeadline),
		},
	)
	for _, s := range subs {
		_, err := c.SubscriptionAdminClient.CreateSubscription(ctx, s)
		if err := ignoreExists(err); err != nil {
			return fmt.Errorf("pubsubemu: creating subscription %s: %w", s.Name, err)
		}
	}
	return nil
}

// TopicName returns the full resource name projects/PROJECT/topics/TOPIC.
func TopicName(project, topic string) string {
	return "projects/" + project + "/topics/" + topic
}

// SubscriptionName returns the full resource name
// projects/PROJECT/subscriptions/SUBSCRIPTION.
func SubscriptionName(project, subscription string) string {
	return "projects/" + project + "/subscriptions/" + subscription
}

func ackDeadlineSeconds(d time.Duration) int32 {
	d = min(max(d, minAckDeadline), maxAckDeadline)
	return int32(d / time.Second)
}

func ignoreExists(err error) error {
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	return err
}
