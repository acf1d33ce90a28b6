// Package verify is the Verify function: on every Cloud Scheduler tick
// (coalmine-ticks) it watches each service's rollout: it starts rollouts
// waiting for their window and acts on steps past their deadline.
package verify

import (
	"context"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/release"
)

func init() {
	functions.CloudEvent(events.FunctionVerify, release.Lazy(events.FunctionVerify, Handler))
}

// Handler returns the Verify function for env.
func Handler(env *release.Env) release.Handler {
	return func(ctx context.Context, e event.Event) error {
		msg, err := events.DecodeMessagePublished(e)
		if err != nil {
			return env.Malformed(events.FunctionVerify, e, err)
		}
		t, err := events.DecodeTick(msg.Message)
		if err != nil {
			return env.Malformed(events.FunctionVerify, e, err)
		}
		return env.Tick(ctx, t)
	}
}
