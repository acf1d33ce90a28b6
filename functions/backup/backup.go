// Package backup is the Backup function: it consumes Artifact Registry
// notifications (topic gcr), operator releases (coalmine-release) and its
// own continuations (coalmine-backup), claims a rollout, takes the backup
// and publishes DeployCanary.
package backup

import (
	"context"
	"fmt"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/backup"
	"github.com/ai-square/coalmine/shared/registry"
	"github.com/ai-square/coalmine/shared/release"
)

func init() {
	functions.CloudEvent(events.FunctionBackup, release.Lazy(events.FunctionBackup, deployed))
}

// deployed is Handler with the backup runner and the registry check of a
// deployed function.
func deployed(env *release.Env) release.Handler {
	r, err := backup.FromEnvironment(context.Background())
	if err != nil {
		return func(context.Context, event.Event) error { return err }
	}
	r.Log = env.Log
	env.Backups = r
	env.Images = registry.New()
	return Handler(env)
}

// NoTopic is why an event whose source names no Pub/Sub topic is refused:
// Backup tells Artifact Registry notifications (topic gcr) from commands by
// the topic. functions-framework takes the topic of a push request from its
// path, so a push subscription's endpoint must end in
// /projects/PROJECT/topics/TOPIC (infra/terraform's does).
func NoTopic(source string) error {
	return fmt.Errorf("the event's source %q names no Pub/Sub topic, so a registry notification cannot be told from a command: a push endpoint must end in /projects/PROJECT/topics/TOPIC", source)
}

// Handler returns the Backup function for env.
func Handler(env *release.Env) release.Handler {
	return func(ctx context.Context, e event.Event) error {
		msg, err := events.DecodeMessagePublished(e)
		if err != nil {
			return env.Malformed(events.FunctionBackup, e, err)
		}
		if msg.Topic == "" {
			return env.Malformed(events.FunctionBackup, e, NoTopic(e.Source()))
		}
		if msg.Topic == events.TopicGCR {
			n, err := events.DecodeArtifact(msg.Message.Data)
			if err != nil {
				return env.Malformed(events.FunctionBackup, e, err)
			}
			return env.Artifact(ctx, n, msg.Message.PublishTime)
		}
		c, err := events.DecodeCommand(msg.Message.Data)
		if err != nil {
			return env.Malformed(events.FunctionBackup, e, err)
		}
		switch c.Type {
		case events.CommandRelease:
			return env.Release(ctx, c, msg.Message.PublishTime)
		case events.CommandBackup:
			return env.Backup(ctx, c)
		}
		return env.Malformed(events.FunctionBackup, e, fmt.Errorf("command %s is not for Backup", c.Type))
	}
}
