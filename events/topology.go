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
// an Eventarc trigger (a push subscription), locally a subscription the
// bridge pulls and POSTs to the function.
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

// Triggers is the topology: every (topic, function) pair. Infrastructure
// (Terraform, not built yet) is to follow it; the local cloud is made from it.
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
