package events

// Pub/Sub topic IDs. Google owns TopicGCR (Artifact Registry publishes to it);
// every other topic belongs to coalmine. Each command type has exactly one
// consuming function; see docs/architecture.md for the chain.
const (
	// TopicGCR carries Artifact Registry notifications (image pushed or deleted).
	TopicGCR = "gcr"
	// TopicRelease carries release commands from the operator CLI (release, retry).
	TopicRelease = "coalmine-release"
	// TopicBackup carries backup continuations the Backup function publishes to itself.
	TopicBackup = "coalmine-backup"
	// TopicDeploy carries DeployCanary commands.
	TopicDeploy = "coalmine-deploy"
	// TopicShift carries ShiftTraffic, Pause and Resume commands.
	TopicShift = "coalmine-shift"
	// TopicRollback carries Rollback commands.
	TopicRollback = "coalmine-rollback"
	// TopicTicks carries Cloud Scheduler ticks (verification and watchdog).
	TopicTicks = "coalmine-ticks"
	// TopicAlerts carries Cloud Monitoring incident notifications.
	TopicAlerts = "coalmine-alerts"
	// TopicEvents carries lifecycle events, published after every write.
	TopicEvents = "coalmine-events"
	// TopicDeadLetter receives messages that could not be delivered after the
	// configured number of attempts.
	TopicDeadLetter = "coalmine-dead-letter"
)

// Topics lists every topic coalmine uses, Google's gcr topic included.
var Topics = []string{
	TopicGCR, TopicRelease, TopicBackup, TopicDeploy, TopicShift,
	TopicRollback, TopicTicks, TopicAlerts, TopicEvents, TopicDeadLetter,
}

// AttrType is the Pub/Sub message attribute that repeats a command's or
// lifecycle event's CloudEvent type, so subscriptions can filter on it.
const AttrType = "coalmine-type"
