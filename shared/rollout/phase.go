// Package rollout is coalmine's rollout state machine: the phases of a
// release, the commands that move it, the guards on every transition and the
// encoding of the state into the coalmine.dev/rollout annotation on the Cloud
// Run service. It is pure: no I/O, time is passed in.
package rollout

// Phase is where a rollout is.
type Phase string

// The phases. Promoted, RolledBack, Failed, Superseded and Stopped are
// terminal.
const (
	// Waiting: claimed, waiting for a deploy window to open.
	Waiting Phase = "waiting"
	// BackingUp: taking the backup; a worker holds a lease.
	BackingUp Phase = "backing-up"
	// Deploying: backup done; the canary revision is being created (0% traffic).
	Deploying Phase = "deploying"
	// Progressing: the canary serves the traffic of the current stage.
	Progressing Phase = "progressing"
	// Paused: held at the current stage for investigation.
	Paused Phase = "paused"
	// Promoted: the canary took 100% and became the stable revision.
	Promoted Phase = "promoted"
	// RollingBack: traffic and template are back on the stable revision;
	// post-rollback hooks are running.
	RollingBack Phase = "rolling-back"
	// RolledBack: the rollout was undone.
	RolledBack Phase = "rolled-back"
	// Failed: the rollout ended before any traffic moved (backup or deploy
	// failed, or no window opened in time).
	Failed Phase = "failed"
	// Superseded: rolled back because a newer image arrived.
	Superseded Phase = "superseded"
	// Stopped: the service's traffic was changed outside coalmine (a
	// `gcloud run deploy`, a console edit) while the rollout ran; coalmine
	// stopped it and left the traffic where the operator put it.
	Stopped Phase = "stopped"
)

// Phases lists every phase, in the order of a rollout's life.
var Phases = []Phase{Waiting, BackingUp, Deploying, Progressing, Paused, Promoted, RollingBack, RolledBack, Failed, Superseded, Stopped}

// Terminal reports whether no command moves a rollout out of p.
func (p Phase) Terminal() bool {
	switch p {
	case Promoted, RolledBack, Failed, Superseded, Stopped:
		return true
	}
	return false
}

// Valid reports whether p is one of the phases.
func (p Phase) Valid() bool {
	for _, q := range Phases {
		if p == q {
			return true
		}
	}
	return false
}

// undone reports whether p means the rollout was (or is being) rolled back.
func (p Phase) undone() bool {
	return p == RollingBack || p == RolledBack || p == Superseded
}
