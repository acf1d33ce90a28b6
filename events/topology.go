package events

import "time"

// The function names: FUNCTION_TARGET values in production, HTTP paths
// (/NAME) when one process serves them all.
const (
	FunctionBackup   = "Backup"
	FunctionDeploy   = "Deploy"
	FunctionShift    = "Shift"
	FunctionRollback = "Rollback"
	FunctionVerify   = "Verify"
	FunctionAlert    = "Alert"
)

// Trigger connects a topic to the function that consumes it: in production
// a push subscription (infra/terraform) that POSTs each message, with an
// OIDC token, to the function's Cloud Run service at
// /projects/PROJECT/topics/TOPIC (functions-framework turns the push body
// into the messagePublished CloudEvent and takes the topic from that path);
// locally a subscription the bridge pulls and POSTs to the function as a
// CloudEvent, as Eventarc would.
type Trigger struct {
	Function string
	Topic    string
	// Subscription is the subscription ID: coalmine-FUNCTION-TOPIC.
	Subscription string
}

// Delivery settings shared by every trigger subscription.
const (
	// AckDeadline is the ack deadline of trigger subscriptions; for push
	// subscriptions it is also the HTTP timeout, so it covers the longest
	// function run (a deploy waiting for its revision).
	AckDeadline = 600 * time.Second
	// FunctionTimeout is the request timeout of every function's Cloud Run
	// service (and its CLOUD_RUN_TIMEOUT_SECONDS, which functions-framework
	// turns into the context's deadline). The longest run, a Deploy waiting
	// up to 8 minutes for its canary, fits in it, and it is under
	// AckDeadline, so Pub/Sub does not redeliver a message while a function
	// is still working on it.
	FunctionTimeout = 540 * time.Second
	// MinBackoff and MaxBackoff bound the retry policy's exponential backoff.
	MinBackoff = 10 * time.Second
	MaxBackoff = 600 * time.Second
	// MaxDeliveryAttempts is how many times a message is delivered before it
	// goes to TopicDeadLetter.
	MaxDeliveryAttempts = 10
	// SubscriptionDeadLetter keeps dead letters for inspection.
	SubscriptionDeadLetter = "coalmine-dead-letter"
	// SubscriptionWatch is where `coalmine watch` and notifications read
	// lifecycle events.
	SubscriptionWatch = "coalmine-events-watch"
)

func trigger(fn, topic string) Trigger {
	return Trigger{Function: fn, Topic: topic, Subscription: "coalmine-" + lower(fn) + "-" + topic}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Triggers is the topology: every (topic, function) pair. The local cloud
// is made from it; infra/terraform declares the same subscriptions, and its
// test (infra/terraform/terraform_test.go) fails when they differ.
var Triggers = []Trigger{
	trigger(FunctionBackup, TopicGCR),
	trigger(FunctionBackup, TopicRelease),
	trigger(FunctionBackup, TopicBackup),
	trigger(FunctionDeploy, TopicDeploy),
	trigger(FunctionShift, TopicShift),
	trigger(FunctionRollback, TopicRollback),
	trigger(FunctionVerify, TopicTicks),
	trigger(FunctionAlert, TopicAlerts),
}
