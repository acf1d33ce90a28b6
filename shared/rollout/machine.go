package rollout

import (
	"fmt"
	"strings"
	"time"
)

// Config bounds the state and sets the step deadlines.
type Config struct {
	// History is how many entries the history keeps (default 20).
	History int
	// FailedDigests is how many failed digests are remembered (default 20).
	FailedDigests int
	Deadlines     Deadlines
}

// Deadlines say how long each step may go without progress before the
// watchdog acts, and how often it publishes a step's command again.
type Deadlines struct {
	Waiting     time.Duration
	Backup      time.Duration // the whole backup
	Lease       time.Duration // one backup chunk; a lease not renewed in time is taken over
	Deploy      time.Duration
	Stage       time.Duration
	Paused      time.Duration
	RollingBack time.Duration
	// Guard is how long after a promotion a reverting rollback still applies (0: never).
	Guard time.Duration
	// Retries is how many times the watchdog re-publishes a step's command.
	Retries int
}

// DefaultConfig returns the defaults documented in docs/policy.md.
func DefaultConfig() Config {
	return Config{
		History:       20,
		FailedDigests: 20,
		Deadlines: Deadlines{
			Waiting:     168 * time.Hour,
			Backup:      2 * time.Hour,
			Lease:       2 * time.Minute,
			Deploy:      15 * time.Minute,
			Stage:       72 * time.Hour,
			Paused:      72 * time.Hour,
			RollingBack: 10 * time.Minute,
			Retries:     3,
		},
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.History <= 0 {
		c.History = d.History
	}
	if c.FailedDigests <= 0 {
		c.FailedDigests = d.FailedDigests
	}
	dl := &c.Deadlines
	for _, p := range []struct{ got, def *time.Duration }{
		{&dl.Waiting, &d.Deadlines.Waiting}, {&dl.Backup, &d.Deadlines.Backup},
		{&dl.Lease, &d.Deadlines.Lease}, {&dl.Deploy, &d.Deadlines.Deploy},
		{&dl.Stage, &d.Deadlines.Stage}, {&dl.Paused, &d.Deadlines.Paused},
		{&dl.RollingBack, &d.Deadlines.RollingBack},
	} {
		if *p.got <= 0 {
			*p.got = *p.def
		}
	}
	if dl.Retries < 0 {
		dl.Retries = 0
	}
	return c
}

// Outcome is what the receiver of a command does with it.
type Outcome int

// The outcomes.
const (
	// Applied: the state changed; write it (one UpdateService, with the etag
	// and generation read) and then publish the next command.
	Applied Outcome = iota + 1
	// Duplicate: this step is already applied; acknowledge, and publish the
	// next command again (the crash may have come between write and publish).
	Duplicate
	// Stale: for another rollout, an older step, or a finished rollout;
	// acknowledge and log.
	Stale
	// Rejected: not allowed here (a guard failed); a permanent error,
	// acknowledged and logged with the reason.
	Rejected
	// Retry: the command depends on state not visible yet; return an error
	// so that Pub/Sub redelivers it.
	Retry
	// Supersede: a claim for a new digest met a rollout in progress. The
	// push is queued in the state (State.Pending): write the state, then
	// publish a rollback of the rollout in progress (reason superseded)
	// unless it is already rolling back, and acknowledge the push. The
	// queued image is released once the rollout has ended.
	Supersede
	// Held: another worker holds the lease (backup or post-rollback
	// steps); acknowledge.
	Held
)

var outcomeNames = map[Outcome]string{
	Applied: "applied", Duplicate: "duplicate", Stale: "stale", Rejected: "rejected",
	Retry: "retry", Supersede: "supersede", Held: "held",
}

func (o Outcome) String() string {
	if n, ok := outcomeNames[o]; ok {
		return n
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Result is the verdict of Apply.
type Result struct {
	Outcome Outcome
	// State is the new state when Applied, the unchanged state otherwise.
	State State
	// Reason explains any outcome but Applied (and the rollback to publish
	// on Supersede).
	Reason string
}

// Apply decides what command c does to state s at time now. It never
// changes s; the new state is in the result. Rules:
//   - a command for another rollout is stale; one whose sender saw a newer
//     generation than s is retried (our read is behind);
//   - a step already applied is a duplicate, an older step is stale, and a
//     step the phase does not allow is rejected;
//   - rollback is valid from every non-terminal phase, and a promote that
//     arrives after it is stale.
func Apply(s State, c Command, now time.Time, cfg Config) Result {
	cfg = cfg.withDefaults()
	c = bounded(c)
	if c.Kind == Claim {
		return claim(s, c, now, cfg)
	}
	r := s.Rollout
	if c.Rollout == "" {
		return reject(s, "command names no rollout")
	}
	if r == nil || r.ID != c.Rollout {
		cur := "none"
		if r != nil {
			cur = r.ID
		}
		if c.Generation > s.Generation {
			return Result{Outcome: Retry, State: s, Reason: fmt.Sprintf("rollout %s not visible yet (current %s, generation %d < %d)", c.Rollout, cur, s.Generation, c.Generation)}
		}
		return Result{Outcome: Stale, State: s, Reason: fmt.Sprintf("rollout %s is not the current rollout (%s)", c.Rollout, cur)}
	}
	if c.Generation > s.Generation {
		return Result{Outcome: Retry, State: s, Reason: fmt.Sprintf("sender saw generation %d, state has %d", c.Generation, s.Generation)}
	}
	if c.Generation != 0 && c.Generation < r.Claimed {
		return stale(s, fmt.Sprintf("command from generation %d predates rollout %s (claimed at %d)", c.Generation, r.ID, r.Claimed))
	}
	switch c.Kind {
	case Begin:
		return begin(s, c, now, cfg)
	case BackupProgress:
		return backupProgress(s, c, now, cfg)
	case BackupDone:
		return backupDone(s, c, now, cfg)
	case CanaryCreated:
		return canaryCreated(s, c, now, cfg)
	case Shift:
		return shift(s, c, now, cfg)
	case Pause:
		return pause(s, c, now, cfg)
	case Resume:
		return resume(s, c, now, cfg)
	case Rollback:
		return rollback(s, c, now, cfg)
	case RollbackDone:
		return rollbackDone(s, c, now, cfg)
	case Fail:
		return fail(s, c, now, cfg)
	case Republish:
		return republish(s, c, now, cfg)
	case HookFailed:
		return hookFailed(s, c, now, cfg)
	case Escalate:
		return escalate(s, c, now, cfg)
	case Dequeue:
		return dequeue(s, c, now, cfg)
	case Stop:
		return stop(s, c, now, cfg)
	case Judged:
		return judged(s, c, now, cfg)
	}
	return reject(s, fmt.Sprintf("unknown command kind %q", c.Kind))
}

// bounded clips every free text of c (see Clip), so that nothing a sender
// writes can make the state too large to write.
func bounded(c Command) Command {
	c.Reason = Clip(c.Reason, MaxReason)
	c.Actor = Clip(c.Actor, MaxActor)
	c.Holder = Clip(c.Holder, MaxActor)
	c.Step = Clip(c.Step, MaxActor)
	c.Incident = Clip(c.Incident, MaxActor)
	if c.Backup != nil {
		b := *c.Backup
		b.LastError = Clip(b.LastError, MaxReason)
		b.Progress = Clip(b.Progress, MaxReason)
		b.Skipped = Clip(b.Skipped, MaxReason)
		c.Backup = &b
	}
	return c
}

// addEntry appends e to the history and trims it to its cap.
func addEntry(n *State, e Entry, cfg Config) {
	e.Reason = Clip(e.Reason, MaxEntryReason)
	n.History = append(n.History, e)
	if over := len(n.History) - cfg.History; over > 0 {
		n.History = append([]Entry(nil), n.History[over:]...)
	}
}

func reject(s State, why string) Result  { return Result{Outcome: Rejected, State: s, Reason: why} }
func stale(s State, why string) Result   { return Result{Outcome: Stale, State: s, Reason: why} }
func already(s State, why string) Result { return Result{Outcome: Duplicate, State: s, Reason: why} }

// finished explains why a command does nothing to a terminal rollout.
func finished(s State) Result {
	why := fmt.Sprintf("rollout %s already %s", s.Rollout.ID, s.Rollout.Phase)
	if s.Rollout.Phase == Stopped {
		why += ": " + s.Rollout.Reason
	}
	return stale(s, why)
}

// next returns a copy of s with the rollout moved to phase p (and stage),
// the generation bumped, the step clock reset and a history entry added.
func next(s State, c Command, now time.Time, cfg Config, p Phase, stage int) Result {
	n := s.Clone()
	n.Generation++
	r := n.Rollout
	if r.Stage != stage {
		r.StageStarted = now
	}
	if r.Phase != p || r.Stage != stage {
		r.StepStarted = now
		r.Attempts = 0
		r.Deadline = deadline(p, now, cfg.Deadlines)
		r.LastError = ""
	}
	r.Escalated = ""
	r.Phase, r.Stage = p, stage
	if p.Terminal() {
		r.Ended = now
		r.Lease = nil
		r.Deadline = time.Time{}
	}
	if c.Reason != "" {
		r.Reason = c.Reason
	}
	// Lease renewals and chunk progress are not history: a long backup
	// would push every other step out of the capped list.
	if c.Kind != BackupProgress || s.Rollout.Phase != p {
		addEntry(&n, Entry{
			Rollout: r.ID, Generation: n.Generation, At: now, Kind: c.Kind,
			Phase: p, Stage: stage, Reason: c.Reason, Actor: c.Actor,
		}, cfg)
	}
	return Result{Outcome: Applied, State: n}
}

func deadline(p Phase, now time.Time, d Deadlines) time.Time {
	var dur time.Duration
	switch p {
	case Waiting:
		dur = d.Waiting
	case BackingUp:
		dur = d.Lease
	case Deploying:
		dur = d.Deploy
	case Progressing:
		dur = d.Stage
	case Paused:
		dur = d.Paused
	case RollingBack:
		dur = d.RollingBack
	default:
		return time.Time{}
	}
	return now.Add(dur)
}

func rememberFailed(s *State, digest string, cfg Config) {
	if digest == "" || s.Failed(digest) {
		return
	}
	s.FailedDigests = append(s.FailedDigests, digest)
	if over := len(s.FailedDigests) - cfg.FailedDigests; over > 0 {
		s.FailedDigests = append([]string(nil), s.FailedDigests[over:]...)
	}
}

// ID returns the rollout ID for a digest on a service: the service name and
// the first 12 hex digits of the digest. Duplicate pushes of one digest get
// the same ID; a later claim of the same digest (a retry) appends "-r" and
// the generation that claimed it.
func ID(service, digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return service + "-" + hex
}

func claim(s State, c Command, now time.Time, cfg Config) Result {
	switch {
	case c.Service == "":
		return reject(s, "claim names no service")
	case c.Digest == "" || c.Image == "":
		return reject(s, "claim names no image digest")
	case len(c.Image) > MaxImage:
		return reject(s, fmt.Sprintf("image reference is %d bytes long, more than %d", len(c.Image), MaxImage))
	case len(c.Stages) == 0 || c.Stages[len(c.Stages)-1] != 100:
		return reject(s, "claim has no stages ending at 100%")
	}
	for i, p := range c.Stages {
		if p < 1 || p > 100 || (i > 0 && p <= c.Stages[i-1]) {
			return reject(s, fmt.Sprintf("claim stages %v are not ascending percents", c.Stages))
		}
	}
	r := s.Rollout
	if c.StableDigest != "" && c.StableDigest == c.Digest && !r.Active() {
		// (While another rollout is in progress, a push of the stable image
		// supersedes it like any newer push: it is how a team cancels one.)
		return stale(s, fmt.Sprintf("already serving: %s runs %s and serves 100%% of the traffic", c.Stable, c.Digest))
	}
	attempt := 1
	if r != nil && r.Digest == c.Digest {
		if r.Active() {
			return already(s, fmt.Sprintf("rollout %s for this digest is already %s", r.ID, r.Phase))
		}
		switch {
		case r.Phase == Promoted:
			return stale(s, fmt.Sprintf("digest already released by rollout %s", r.ID))
		case c.Retry:
		case r.Phase == Superseded && c.PublishTime.After(r.PublishTime):
		case r.Phase == Stopped && c.PublishTime.After(r.PublishTime):
			// Stopped for an outside change, not for the image: a newer
			// push or release of it starts again; the push that claimed it,
			// delivered again, does not undo the operator's change.
		case r.Phase == Stopped:
			return stale(s, fmt.Sprintf("rollout %s of this push was stopped: %s", r.ID, r.Reason))
		case r.Phase == Superseded:
			return stale(s, fmt.Sprintf("push of %s was superseded by a newer image", c.Digest))
		default:
			return reject(s, fmt.Sprintf("digest %s %s in rollout %s (%s); release it again with --force (coalmine release SERVICE IMAGE@DIGEST --force)", c.Digest, r.Phase, r.ID, r.Reason))
		}
		attempt = r.Attempt + 1
	}
	if s.Failed(c.Digest) && !c.Retry {
		return reject(s, fmt.Sprintf("digest %s failed on this service before; release it again with --force (coalmine release SERVICE IMAGE@DIGEST --force)", c.Digest))
	}
	p := s.Pending
	if p != nil && p.Digest != c.Digest && !c.PublishTime.After(p.PublishTime) {
		return stale(s, fmt.Sprintf("push published %s is older than the queued push of %s (%s)",
			c.PublishTime.UTC().Format(time.RFC3339Nano), p.Digest, p.PublishTime.UTC().Format(time.RFC3339Nano)))
	}
	if r != nil && r.Digest != c.Digest {
		if !c.PublishTime.After(r.PublishTime) {
			return stale(s, fmt.Sprintf("push published %s is older than rollout %s (%s)",
				c.PublishTime.UTC().Format(time.RFC3339Nano), r.ID, r.PublishTime.UTC().Format(time.RFC3339Nano)))
		}
		if r.Active() {
			return queue(s, c, now, cfg)
		}
	}
	if c.Retry && attempt == 1 {
		attempt = 2
	}
	// The stable revision is the one Cloud Run says serves everything now
	// (an operator may have deployed outside coalmine since). A service
	// whose traffic is split is left alone: overwriting an operator's split
	// with a claim would be a surprise.
	stable := c.Stable
	if stable == "" {
		return reject(s, "no stable revision: the service must serve one revision at 100% before a rollout (its traffic is split, or it has none)")
	}
	n := s.Clone()
	if p != nil {
		// This claim takes the queue's place: it is the queued push, or a
		// newer one that supersedes it before it began.
		n.Pending = nil
		if p.Digest != c.Digest && r != nil {
			addEntry(&n, Entry{Rollout: r.ID, Generation: s.Generation + 1, At: now, Kind: Dequeue, Phase: r.Phase, Stage: r.Stage,
				Reason: fmt.Sprintf("queued %s dropped: %s is newer", p.Digest, c.Digest), Actor: c.Actor}, cfg)
		}
	}
	n.Service = c.Service
	n.Stable = stable
	phase := BackingUp
	switch {
	case !c.WindowOpen && c.OverrideWindow:
		c.Reason = "deploy window overridden: " + c.Reason
	case !c.WindowOpen:
		phase = Waiting
	}
	id := ID(c.Service, c.Digest)
	if attempt > 1 {
		// A second claim of a digest (retry, or a re-push of a superseded
		// one) gets an ID of its own, so that commands of the earlier
		// attempt can never apply to it.
		id = fmt.Sprintf("%s-r%d", id, s.Generation+1)
	}
	n.Rollout = &Rollout{
		ID: id, Image: c.Image, Digest: c.Digest, PublishTime: c.PublishTime,
		Attempt: attempt, Claimed: s.Generation + 1, Stages: append([]int(nil), c.Stages...),
		Stable: stable, Started: now,
	}
	return next(n, c, now, cfg, phase, 0)
}

// queue records a push that arrived while rollout r is in progress: the
// rollout is superseded and the push waits in the state until it has ended.
// A newer push replaces an older queued one.
func queue(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	if p := s.Pending; p != nil && p.Digest == c.Digest {
		return already(s, fmt.Sprintf("%s is already queued behind rollout %s (%s)", c.Digest, r.ID, r.Phase))
	}
	n := s.Clone()
	n.Generation++
	why := fmt.Sprintf("%s queued behind rollout %s (%s), which is superseded", c.Digest, r.ID, r.Phase)
	if p := s.Pending; p != nil {
		why += fmt.Sprintf("; it replaces the queued %s", p.Digest)
	}
	n.Pending = &Pending{Image: c.Image, Digest: c.Digest, PublishTime: c.PublishTime, Retry: c.Retry, Actor: c.Actor, Queued: now}
	if c.OverrideWindow {
		n.Pending.OverrideWindow, n.Pending.Reason = true, Clip(c.Reason, MaxEntryReason)
	}
	addEntry(&n, Entry{Rollout: r.ID, Generation: n.Generation, At: now, Kind: Queue, Phase: r.Phase, Stage: r.Stage, Reason: why, Actor: c.Actor}, cfg)
	return Result{Outcome: Supersede, State: n, Reason: why}
}

// dequeue drops the queued push of c.Digest, whose claim was refused (the
// reason says why).
func dequeue(s State, c Command, now time.Time, cfg Config) Result {
	p := s.Pending
	if p == nil || p.Digest != c.Digest {
		return stale(s, fmt.Sprintf("no queued push of %s", c.Digest))
	}
	n := s.Clone()
	n.Generation++
	n.Pending = nil
	r := n.Rollout
	addEntry(&n, Entry{Rollout: r.ID, Generation: n.Generation, At: now, Kind: Dequeue, Phase: r.Phase, Stage: r.Stage,
		Reason: fmt.Sprintf("queued %s dropped: %s", p.Digest, c.Reason), Actor: c.Actor}, cfg)
	return Result{Outcome: Applied, State: n}
}

// stop ends a rollout whose service was changed outside coalmine. The
// traffic stays where the operator put it: the state describes no split
// of its own until the next claim, which takes the revision serving 100%
// as its stable one.
func stop(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	switch {
	case r.Phase.Terminal():
		return finished(s)
	case r.Phase == RollingBack:
		return reject(s, "rolling back: the rollback's split stands")
	case c.Reason == "":
		return reject(s, "stop names no reason")
	}
	res := next(s, c, now, cfg, Stopped, r.Stage)
	res.State.Stable = c.Stable
	return res
}

func begin(s State, c Command, now time.Time, cfg Config) Result {
	switch r := s.Rollout; {
	case r.Phase == Waiting:
		return next(s, c, now, cfg, BackingUp, 0)
	case r.Phase == BackingUp:
		return already(s, "backup already started")
	case r.Phase.Terminal():
		return finished(s)
	default:
		return stale(s, fmt.Sprintf("rollout already %s", r.Phase))
	}
}

func backupProgress(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	switch {
	case r.Phase.Terminal():
		return finished(s)
	case r.Phase == Waiting:
		return reject(s, "backup before the rollout began")
	case r.Phase == Deploying:
		return already(s, "backup already done")
	case r.Phase != BackingUp:
		return stale(s, fmt.Sprintf("backup finished; rollout %s", r.Phase))
	case c.Holder == "":
		return reject(s, "backup progress names no lease holder")
	}
	if l := r.Lease; l != nil && l.Holder != c.Holder && now.Before(l.Expires) {
		return Result{Outcome: Held, State: s, Reason: fmt.Sprintf("backup lease held by %s until %s", l.Holder, l.Expires.UTC().Format(time.RFC3339))}
	}
	lease := c.Lease
	switch {
	case lease < 0: // the holder lets go (a transient failure): anyone may continue now
		lease = 0
	case lease == 0:
		lease = cfg.Deadlines.Lease
	}
	res := next(s, c, now, cfg, BackingUp, 0)
	nr := res.State.Rollout
	nr.Lease = &Lease{Holder: c.Holder, Expires: now.Add(lease)}
	nr.Deadline = now.Add(max(lease, cfg.Deadlines.Lease))
	// Only a chunk that got somewhere resets the watchdog's count: taking
	// the lease, or letting go of it after a failure, is no progress, or a
	// backup against a database that is down would never run out of
	// attempts.
	if c.Backup != nil && c.Backup.LastError == "" {
		nr.Attempts = 0
	}
	if c.Backup != nil {
		b := *c.Backup
		nr.Backup = &b
	}
	return res
}

func backupDone(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	switch {
	case r.Phase.Terminal():
		return finished(s)
	case r.Phase == Waiting:
		return reject(s, "backup done before the rollout began")
	case r.Phase == Deploying:
		return already(s, "backup already recorded")
	case r.Phase != BackingUp:
		return stale(s, fmt.Sprintf("rollout already %s", r.Phase))
	case c.Backup == nil:
		return reject(s, "backup done without backup references")
	}
	if l := r.Lease; l != nil && c.Holder != "" && l.Holder != c.Holder && now.Before(l.Expires) {
		return Result{Outcome: Held, State: s, Reason: fmt.Sprintf("backup lease held by %s", l.Holder)}
	}
	res := next(s, c, now, cfg, Deploying, 0)
	b := *c.Backup
	res.State.Rollout.Backup = &b
	res.State.Rollout.Lease = nil
	return res
}

func canaryCreated(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	switch {
	case r.Phase.Terminal():
		return finished(s)
	case r.Phase == Waiting || r.Phase == BackingUp:
		return reject(s, "deploy before the backup finished")
	case r.Phase != Deploying:
		return stale(s, fmt.Sprintf("canary already deployed; rollout %s", r.Phase))
	case c.Revision == "":
		return reject(s, "canary-created names no revision")
	case r.Canary == c.Revision:
		return already(s, "canary "+r.Canary+" already created")
	case r.Canary != "":
		return reject(s, fmt.Sprintf("rollout already has canary %s, not %s", r.Canary, c.Revision))
	}
	n := s.Clone()
	n.Rollout.Canary = c.Revision
	n.Rollout.StableTemplate = append([]byte(nil), c.Template...)
	res := next(n, c, now, cfg, Deploying, 0)
	return res
}

func shift(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	k, n := c.Stage, len(r.Stages)
	if k < 1 || k > n {
		return reject(s, fmt.Sprintf("stage %d outside 1..%d", k, n))
	}
	to := Progressing
	if k == n {
		to = Promoted
	}
	switch r.Phase {
	case Waiting, BackingUp:
		return reject(s, "no canary yet: rollout "+string(r.Phase))
	case Deploying:
		if r.Canary == "" {
			return reject(s, "no canary yet: deploy not written")
		}
		if k != 1 {
			return reject(s, fmt.Sprintf("cannot go from deploying to stage %d", k))
		}
	case Progressing, Paused:
		switch {
		case k == r.Stage && r.Phase == Progressing:
			return already(s, fmt.Sprintf("already at stage %d", k))
		case k <= r.Stage:
			return stale(s, fmt.Sprintf("already at stage %d (%s)", r.Stage, r.Phase))
		case k > r.Stage+1:
			return reject(s, fmt.Sprintf("cannot skip from stage %d to %d", r.Stage, k))
		case r.Phase == Paused && !c.Manual:
			return reject(s, fmt.Sprintf("paused at stage %d; only an operator's promote or a resume moves it", r.Stage))
		case r.Attempts > 0 && !c.Manual:
			// The watchdog published the rollback of a rollout past its deadline: a
			// verdict's shift must not move it on (and reset the watchdog's count).
			return reject(s, fmt.Sprintf("the watchdog rolls this rollout back (its stage %d deadline passed); only an operator's promote moves it on", r.Stage))
		}
	case Promoted:
		if k == n {
			return already(s, "already promoted")
		}
		return finished(s)
	default:
		return finished(s) // rolling back, rolled back, failed, superseded
	}
	if c.Manual {
		why := "operator promote: bake and gates skipped"
		if c.Reason != "" {
			why += ": " + c.Reason
		}
		c.Reason = Clip(why, MaxReason)
	}
	res := next(s, c, now, cfg, to, k)
	if to == Promoted {
		st := &res.State
		st.Previous = st.Stable
		st.PreviousImage = st.StableImage
		st.Stable = st.Rollout.Canary
		st.StableImage = st.Rollout.Image
	}
	return res
}

func pause(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	switch r.Phase {
	case Progressing:
		res := next(s, c, now, cfg, Paused, r.Stage)
		rememberIncident(res.State.Rollout, c.Incident)
		return res
	case Paused:
		return already(s, fmt.Sprintf("already paused at stage %d", r.Stage))
	case Waiting, BackingUp, Deploying:
		return reject(s, fmt.Sprintf("nothing to pause: the canary takes no traffic while %s", r.Phase))
	case RollingBack:
		return stale(s, "rolling back")
	}
	return finished(s)
}

func resume(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	switch r.Phase {
	case Paused:
		// The stage is judged afresh from the resume: an operator who resumes has looked
		// at (or fixed) what paused it, and the figures from before must not pause it
		// again at once. Its bake starts again too.
		res := next(s, c, now, cfg, Progressing, r.Stage)
		res.State.Rollout.StageStarted = now
		return res
	case Progressing:
		return already(s, fmt.Sprintf("not paused; at stage %d", r.Stage))
	case Waiting:
		if !c.OverrideWindow {
			return reject(s, "the rollout waits for a deploy window; resume with an override of the window to start it now")
		}
		c.Reason = "deploy window overridden: " + c.Reason
		return next(s, c, now, cfg, BackingUp, 0)
	case BackingUp, Deploying:
		if c.OverrideWindow {
			// Delivered again, or the window opened first: it has begun.
			return already(s, "the rollout has begun: "+string(r.Phase))
		}
		return reject(s, "nothing to resume: rollout "+string(r.Phase))
	case RollingBack:
		return stale(s, "rolling back")
	}
	return finished(s)
}

func rollback(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	superseded := c.Reason == "superseded"
	switch r.Phase {
	case RollingBack:
		return takeHookLease(s, c, now, cfg)
	case RolledBack, Superseded:
		return already(s, "already "+string(r.Phase))
	case Promoted:
		if c.Revert {
			return revert(s, c, now, cfg)
		}
		return finished(s)
	case Failed, Stopped:
		return finished(s)
	case Waiting, BackingUp:
		// Nothing was deployed: the rollout ends here.
		return undo(s, c, now, cfg, superseded)
	case Deploying:
		if r.Canary == "" {
			return undo(s, c, now, cfg, superseded)
		}
	}
	res := next(s, c, now, cfg, RollingBack, r.Stage)
	rememberIncident(res.State.Rollout, c.Incident)
	nr := res.State.Rollout
	nr.Lease = nil
	if c.Holder != "" {
		nr.Lease = &Lease{Holder: c.Holder, Expires: now.Add(hookLease(c, cfg))}
		nr.Deadline = later(nr.Deadline, nr.Lease.Expires)
	}
	return res
}

// revert rolls a promoted rollout back within the guard period after its promotion: the
// revision it replaced (tag previous) becomes stable again with its template and image, and
// the rollout rolls back from there as from any stage (post-rollback hook included; the
// digest is remembered as failed once it is done).
func revert(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	switch {
	case cfg.Deadlines.Guard <= 0:
		return stale(s, fmt.Sprintf("rollout %s already promoted, and no guard period is set", r.ID))
	case !now.Before(r.Ended.Add(cfg.Deadlines.Guard)):
		return stale(s, fmt.Sprintf("rollout %s promoted at %s, more than the guard period (%s) ago", r.ID, r.Ended.UTC().Format(time.RFC3339), cfg.Deadlines.Guard))
	case r.Stable == "" || s.Stable != r.Canary || len(r.StableTemplate) == 0:
		return stale(s, fmt.Sprintf("rollout %s: nothing to revert to (the revision it replaced is not known, or %s is no longer the stable revision)", r.ID, r.Canary))
	}
	why := "reverted within the guard period after promotion"
	if c.Reason != "" {
		why += ": " + c.Reason
	}
	c.Reason = Clip(why, MaxReason)
	res := next(s, c, now, cfg, RollingBack, r.Stage)
	st := &res.State
	st.Stable, st.StableImage = r.Stable, s.PreviousImage
	st.Previous, st.PreviousImage = "", ""
	nr := st.Rollout
	nr.Ended = time.Time{}
	rememberIncident(nr, c.Incident)
	if c.Holder != "" {
		nr.Lease = &Lease{Holder: c.Holder, Expires: now.Add(hookLease(c, cfg))}
		nr.Deadline = later(nr.Deadline, nr.Lease.Expires)
	}
	return res
}

// hookLease is how long a holder keeps the post-rollback steps.
func hookLease(c Command, cfg Config) time.Duration {
	if c.Lease > 0 {
		return c.Lease
	}
	return cfg.Deadlines.RollingBack
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// takeHookLease handles a rollback delivered again while rolling back.
// Without a holder (no post-rollback hook) it is a duplicate. With one, it
// takes the lease on the post-rollback steps unless another holder's lease
// is live: one hook runs at a time, however many rollbacks were published.
func takeHookLease(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	if c.Holder == "" {
		return already(s, "already "+string(r.Phase))
	}
	if l := r.Lease; l != nil && now.Before(l.Expires) {
		if l.Holder == c.Holder {
			return already(s, "post-rollback steps already held by this command")
		}
		return Result{Outcome: Held, State: s, Reason: fmt.Sprintf("post-rollback steps held by %s until %s", l.Holder, l.Expires.UTC().Format(time.RFC3339))}
	}
	n := s.Clone()
	n.Generation++
	nr := n.Rollout
	nr.Lease = &Lease{Holder: c.Holder, Expires: now.Add(hookLease(c, cfg))}
	nr.Deadline = later(nr.Deadline, nr.Lease.Expires)
	return Result{Outcome: Applied, State: n}
}

// hookFailed records a failed post-rollback hook and lets go of the lease.
func hookFailed(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	switch {
	case r.Phase != RollingBack:
		return stale(s, "not rolling back: rollout "+string(r.Phase))
	case c.Holder == "":
		return reject(s, "hook failure names no lease holder")
	}
	if l := r.Lease; l != nil && l.Holder != c.Holder && now.Before(l.Expires) {
		return Result{Outcome: Held, State: s, Reason: fmt.Sprintf("post-rollback steps held by %s", l.Holder)}
	}
	n := s.Clone()
	n.Generation++
	n.Rollout.Lease = nil
	n.Rollout.LastError = c.Reason
	return Result{Outcome: Applied, State: n}
}

// escalate records that the watchdog gave up re-publishing a rollback of a
// rollout that still has traffic: it stops acting (no deadline) until an
// operator does something, which clears it.
func escalate(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	switch {
	case r.Phase.Terminal():
		return finished(s)
	case r.Escalated != "":
		return already(s, "already escalated: "+r.Escalated)
	}
	n := s.Clone()
	n.Generation++
	nr := n.Rollout
	nr.Escalated = c.Reason
	if nr.Escalated == "" {
		nr.Escalated = "escalated"
	}
	nr.Deadline = time.Time{}
	addEntry(&n, Entry{Rollout: nr.ID, Generation: n.Generation, At: now, Kind: Escalate, Phase: nr.Phase, Stage: nr.Stage, Reason: c.Reason, Actor: c.Actor}, cfg)
	return Result{Outcome: Applied, State: n}
}

// undo ends a rollout that is being rolled back (or never deployed).
func undo(s State, c Command, now time.Time, cfg Config, superseded bool) Result {
	to := RolledBack
	if superseded {
		to = Superseded
	}
	res := next(s, c, now, cfg, to, s.Rollout.Stage)
	if !superseded {
		rememberFailed(&res.State, s.Rollout.Digest, cfg)
	}
	return res
}

func rollbackDone(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	switch r.Phase {
	case RollingBack:
		if l := r.Lease; l != nil && c.Holder != "" && l.Holder != c.Holder && now.Before(l.Expires) {
			return Result{Outcome: Held, State: s, Reason: fmt.Sprintf("post-rollback steps held by %s", l.Holder)}
		}
		if c.Reason == "" {
			c.Reason = r.Reason
		}
		return undo(s, c, now, cfg, r.Reason == "superseded")
	case RolledBack, Superseded:
		return already(s, "already "+string(r.Phase))
	case Promoted, Failed, Stopped:
		return finished(s)
	}
	return reject(s, "not rolling back: rollout "+string(r.Phase))
}

func fail(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	switch r.Phase {
	case Waiting, BackingUp, Deploying:
		if c.Reason == "" {
			c.Reason = "failed"
		}
		res := next(s, c, now, cfg, Failed, 0)
		rememberFailed(&res.State, r.Digest, cfg)
		return res
	case Failed:
		return already(s, "already failed")
	case Progressing, Paused:
		return reject(s, fmt.Sprintf("the canary has traffic (stage %d); roll back instead of failing", r.Stage))
	case RollingBack:
		return stale(s, "rolling back")
	}
	return finished(s)
}

func republish(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	if r.Phase.Terminal() {
		return finished(s)
	}
	if c.Step == "" {
		return reject(s, "republish names no step")
	}
	res := next(s, c, now, cfg, r.Phase, r.Stage)
	nr := res.State.Rollout
	nr.Attempts = r.Attempts + 1
	wait := deadline(r.Phase, now, cfg.Deadlines)
	if c.Step == "rollback" {
		wait = now.Add(cfg.Deadlines.RollingBack)
	}
	nr.Deadline = wait
	return res
}

// Revert returns the state to write when Cloud Run stored written (prev
// with c applied) but could not serve it: the update's operation failed, so
// the traffic served is still prev's. The result is prev's content one
// generation after written, with a history entry saying which step was not
// served and why, so that no step counts as done that did not happen.
func Revert(prev, written State, c Command, why string, now time.Time, cfg Config) State {
	cfg = cfg.withDefaults()
	n := prev.Clone()
	n.Generation = written.Generation + 1
	e := Entry{Generation: n.Generation, At: now, Kind: NotServed, Reason: fmt.Sprintf("%s not served by Cloud Run: %s", c.Kind, why), Actor: Clip(c.Actor, MaxActor)}
	if r := n.Rollout; r != nil {
		e.Rollout, e.Phase, e.Stage = r.ID, r.Phase, r.Stage
	}
	addEntry(&n, e, cfg)
	return n
}
