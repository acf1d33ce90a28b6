// Package deploy is the Deploy function: on DeployCanary (coalmine-deploy)
// it creates the canary revision at 0% traffic, waits until it is Ready
// and publishes ShiftTraffic for stage 1.
package deploy

import (
	"context"
	"fmt"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/release"
)

func init() {
	functions.CloudEvent(events.FunctionDeploy, release.Lazy(events.FunctionDeploy, Handler))
}

// Handler returns the Deploy function for env.
func Handler(env *release.Env) release.Handler {
	return func(ctx context.Context, e event.Event) error {
		c, _, err := events.DecodeCommandEvent(e)
		if err != nil {
			return env.Malformed(events.FunctionDeploy, e, err)
		}
		if c.Type != events.CommandDeployCanary {
			return env.Malformed(events.FunctionDeploy, e, fmt.Errorf("command %s is not for Deploy", c.Type))
		}
		return env.Deploy(ctx, c)
	}
}
