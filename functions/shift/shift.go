// Package shift is the Shift function: on coalmine-shift it applies
// ShiftTraffic (the last stage promotes), Pause and Resume.
package shift

import (
	"context"
	"fmt"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/release"
)

func init() {
	functions.CloudEvent(events.FunctionShift, release.Lazy(events.FunctionShift, Handler))
}

// Handler returns the Shift function for env.
func Handler(env *release.Env) release.Handler {
	return func(ctx context.Context, e event.Event) error {
		c, _, err := events.DecodeCommandEvent(e)
		if err != nil {
			return env.Malformed(events.FunctionShift, e, err)
		}
		switch c.Type {
		case events.CommandShiftTraffic, events.CommandPause, events.CommandResume:
			return env.Shift(ctx, c)
		}
		return env.Malformed(events.FunctionShift, e, fmt.Errorf("command %s is not for Shift", c.Type))
	}
}
