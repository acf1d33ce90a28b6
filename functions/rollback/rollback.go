// Package rollback is the Rollback function: on coalmine-rollback it
// returns all traffic to the stable revision, restores its template and
// ends the rollout.
package rollback

import (
	"context"
	"fmt"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/release"
)

func init() {
	functions.CloudEvent(events.FunctionRollback, release.Lazy(events.FunctionRollback, Handler))
}

// Handler returns the Rollback function for env.
func Handler(env *release.Env) release.Handler {
	return func(ctx context.Context, e event.Event) error {
		c, _, err := events.DecodeCommandEvent(e)
		if err != nil {
			return env.Malformed(events.FunctionRollback, e, err)
		}
		if c.Type != events.CommandRollback {
			return env.Malformed(events.FunctionRollback, e, fmt.Errorf("command %s is not for Rollback", c.Type))
		}
		return env.Rollback(ctx, c)
	}
}
