// Package alert is the Alert function: it answers Cloud Monitoring incident notifications
// (coalmine-alerts, Google's schema 1.2 JSON) by rolling back or pausing the rollout the
// incident is about, as the service's policy maps the alert policy.
package alert

import (
	"context"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/release"
)

func init() {
	functions.CloudEvent(events.FunctionAlert, release.Lazy(events.FunctionAlert, Handler))
}

// Handler returns the Alert function for env.
func Handler(env *release.Env) release.Handler {
	return func(ctx context.Context, e event.Event) error {
		msg, err := events.DecodeMessagePublished(e)
		if err != nil {
			return env.Malformed(events.FunctionAlert, e, err)
		}
		inc, err := events.DecodeIncident(msg.Message.Data)
		if err != nil {
			return env.Malformed(events.FunctionAlert, e, err)
		}
		return env.Alert(ctx, inc)
	}
}
