package rollout

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"
)

// The random walk drives the state machine the way the functions of the
// chain do (see design.md): each wire command is handled by a model of its
// function, which applies the transition, "writes" it, and publishes the
// next command. Deliveries are duplicated and reordered; functions crash
// between their write and their publish; operators pause, resume, promote
// and abort at random points with fresh or stale reads; newer images
// supersede, older pushes arrive late. Once commands stop coming the
// watchdog ticks with simulated time until the rollout ends.

type wire int

const (
	wClaim wire = iota
	wBackup
	wDeploy
	wShift
	wPause
	wResume
	wRollback
)

func (w wire) String() string {
	return [...]string{"claim", "backup", "deploy", "shift", "pause", "resume", "rollback"}[w]
}

type msg struct {
	w wire
	c Command
}

type walk struct {
	t      *testing.T
	rng    *rand.Rand
	cfg    Config
	s      State
	now    time.Time
	queue  []msg
	pushes []Command // every claim published, for late deliveries
	undone map[string]bool
	trace  []string
	writes int
}

func newWalk(t *testing.T, seed int64) *walk {
	cfg := DefaultConfig()
	cfg.History = 8
	cfg.FailedDigests = 4
	return &walk{
		t: t, rng: rand.New(rand.NewSource(seed)), cfg: cfg,
		s:      State{V: StateVersion, Service: "web", Stable: "web-initial"},
		now:    t0,
		undone: map[string]bool{},
	}
}

func (w *walk) fail(format string, args ...any) {
	w.t.Helper()
	tail := w.trace
	if len(tail) > 40 {
		tail = tail[len(tail)-40:]
	}
	w.t.Fatalf("%s\ntrace (last %d of %d):\n  %s", fmt.Sprintf(format, args...), len(tail), len(w.trace), strings.Join(tail, "\n  "))
}

func (w *walk) publish(m msg) { w.queue = append(w.queue, m) }

func (w *walk) cmd(k Kind) Command {
	c := Command{Kind: k, Generation: w.s.Generation, Actor: "sim"}
	if w.s.Rollout != nil {
		c.Rollout = w.s.Rollout.ID
	}
	return c
}

// apply runs the state machine and, when applied, "writes" the state (one
// UpdateService) and checks the invariants on what the service would serve.
func (w *walk) apply(c Command) Result {
	w.t.Helper()
	res := Apply(w.s, c, w.now, w.cfg)
	w.trace = append(w.trace, fmt.Sprintf("%s %s %s gen=%d stage=%d manual=%v reason=%q -> %v %s",
		c.Kind, c.Rollout, c.Digest, c.Generation, c.Stage, c.Manual, c.Reason, res.Outcome, res.Reason))
	// Applied, and a queued claim (Supersede), are written.
	if res.Outcome != Applied && res.Outcome != Supersede {
		return res
	}
	if res.State.Generation != w.s.Generation+1 {
		w.fail("generation went from %d to %d", w.s.Generation, res.State.Generation)
	}
	enc, err := Encode(res.State)
	if err != nil {
		w.fail("encode: %v", err)
	}
	dec, err := Decode(enc)
	if err != nil {
		w.fail("decode: %v", err)
	}
	w.s = dec
	w.writes++
	w.check()
	// The function that ends a rollout publishes the queued push's release
	// after its write (unless it dies first: the tick publishes it then).
	if r := w.s.Rollout; r != nil && !r.Active() && w.s.Pending != nil && w.rng.Float64() < 0.9 {
		w.publish(msg{wClaim, w.pendingClaim()})
	}
	return res
}

// pendingClaim is the release the queued push becomes.
func (w *walk) pendingClaim() Command {
	p := w.s.Pending
	return Command{Kind: Claim, Service: "web", Image: p.Image, Digest: p.Digest, PublishTime: p.PublishTime,
		Stages: []int{10, 30, 50, 100}, Retry: p.Retry, Actor: "sim"}
}

func (w *walk) check() {
	w.t.Helper()
	s, r := w.s, w.s.Rollout
	if len(s.History) > w.cfg.History || len(s.FailedDigests) > w.cfg.FailedDigests {
		w.fail("history %d / failed digests %d over their caps", len(s.History), len(s.FailedDigests))
	}
	sum, stable, seen := 0, 0, map[string]bool{}
	for _, tg := range s.Traffic() {
		sum += tg.Percent
		if seen[tg.Revision] {
			w.fail("revision %s twice in traffic %v", tg.Revision, s.Traffic())
		}
		seen[tg.Revision] = true
		if tg.Tag == TagStable {
			stable++
			if tg.Revision != s.Stable {
				w.fail("tag stable on %s but state says %s is stable", tg.Revision, s.Stable)
			}
		}
	}
	if sum != 100 || stable != 1 {
		w.fail("traffic %v: sum %d, %d stable tags", s.Traffic(), sum, stable)
	}
	if p := s.Pending; p != nil && (r == nil || p.Digest == r.Digest) {
		w.fail("queued push %s with rollout %v", p.Digest, r)
	}
	if r == nil {
		return
	}
	if r.Phase.undone() {
		w.undone[r.ID] = true
	}
	if w.undone[r.ID] {
		if r.Phase == Promoted {
			w.fail("rollout %s promoted after a rollback", r.ID)
		}
		if r.Canary != "" && seen[r.Canary] {
			w.fail("rolled back canary %s still in traffic %v", r.Canary, s.Traffic())
		}
	}
	if r.Phase == Promoted && s.Stable != r.Canary {
		w.fail("promoted but stable is %s, canary %s", s.Stable, r.Canary)
	}
	if r.Active() && s.Stable != r.Stable {
		w.fail("rollout %s active with stable %s, state says %s", r.ID, r.Stable, s.Stable)
	}
}

// crashed reports whether the function dies after its write, before its
// publish and ack: the message comes back and nothing is published.
func (w *walk) crashed(m msg) bool {
	if w.rng.Float64() < 0.1 {
		w.trace = append(w.trace, "  crash after write: "+m.w.String()+" redelivered")
		w.publish(m)
		return true
	}
	return false
}

// handle is the model of the function that consumes m.
func (w *walk) handle(m msg) {
	w.t.Helper()
	c := m.c
	switch m.w {
	case wClaim:
		c.Stable = w.s.Stable
		c.WindowOpen = w.rng.Float64() < 0.8
		res := w.apply(c)
		switch res.Outcome {
		case Applied:
			if w.crashed(m) {
				return
			}
			if w.s.Rollout.Phase == BackingUp {
				w.publish(msg{wBackup, w.cmd(BackupProgress)})
			}
		case Duplicate:
			if p := w.s.Pending; p != nil && p.Digest == c.Digest {
				w.supersede()
				return
			}
			w.republishNext()
		case Supersede:
			if w.crashed(m) {
				return
			}
			w.supersede()
		case Rejected, Stale:
			if p := w.s.Pending; p != nil && p.Digest == c.Digest {
				d := w.cmd(Dequeue)
				d.Digest, d.Reason = c.Digest, res.Reason
				w.apply(d)
			}
		case Retry:
			w.publish(m)
		}
	case wBackup:
		holder := fmt.Sprintf("worker-%d", w.rng.Intn(2))
		p := c
		p.Kind, p.Holder, p.Backup = BackupProgress, holder, &Backup{Objects: w.rng.Intn(100)}
		res := w.apply(p)
		switch res.Outcome {
		case Applied:
			switch x := w.rng.Float64(); {
			case x < 0.3:
				if !w.crashed(m) {
					w.publish(msg{wBackup, w.cmd(BackupProgress)})
				}
			case x < 0.35:
				f := w.cmd(Fail)
				f.Reason = "backup verification failed"
				w.apply(f)
			default:
				d := w.cmd(BackupDone)
				d.Holder, d.Backup = holder, &Backup{Prefix: "gs://backups/" + w.s.Rollout.ID + "/"}
				if w.apply(d).Outcome == Applied && !w.crashed(m) {
					w.publish(msg{wDeploy, w.cmd(CanaryCreated)})
				}
			}
		case Duplicate:
			w.republishNext()
		case Retry:
			w.publish(m)
		}
	case wDeploy:
		d := c
		d.Kind = CanaryCreated
		if r := w.s.Rollout; r != nil && r.ID == c.Rollout {
			d.Revision = r.ID + "-canary"
			d.Template = []byte(`{"containers":[{"image":"stable"}]}`)
		}
		res := w.apply(d)
		switch res.Outcome {
		case Applied, Duplicate:
			if res.Outcome == Applied && w.crashed(m) {
				return
			}
			if w.rng.Float64() < 0.1 {
				f := w.cmd(Fail)
				f.Reason = "revision failed to start"
				w.apply(f)
				return
			}
			sh := w.cmd(Shift)
			sh.Stage = 1
			w.publish(msg{wShift, sh})
		case Retry:
			w.publish(m)
		}
	case wShift:
		res := w.apply(c)
		switch res.Outcome {
		case Applied:
			if w.crashed(m) {
				return
			}
			// Verification (a later issue) or an operator moves it on.
			if r := w.s.Rollout; r.Phase == Progressing && w.rng.Float64() < 0.5 {
				sh := w.cmd(Shift)
				sh.Stage = r.Stage + 1
				w.publish(msg{wShift, sh})
			}
		case Retry:
			w.publish(m)
		}
	case wPause, wResume:
		if w.apply(c).Outcome == Retry {
			w.publish(m)
		}
	case wRollback:
		res := w.apply(c)
		switch res.Outcome {
		case Applied, Duplicate:
			if res.Outcome == Applied && w.crashed(m) {
				return
			}
			if w.s.Rollout.Phase == RollingBack && w.rng.Float64() < 0.8 {
				w.apply(w.cmd(RollbackDone)) // post-rollback hook succeeded
			}
		case Retry:
			w.publish(m)
		}
	}
}

// supersede publishes the rollback of the rollout a queued push waits
// for, unless it is already rolling back.
func (w *walk) supersede() {
	if r := w.s.Rollout; r.Active() && r.Phase != RollingBack {
		rb := w.cmd(Rollback)
		rb.Reason = "superseded"
		w.publish(msg{wRollback, rb})
	}
}

// republishNext is what a function does with a duplicate: publish the
// command that follows the current state again.
func (w *walk) republishNext() {
	r := w.s.Rollout
	if r == nil {
		return
	}
	switch r.Phase {
	case BackingUp:
		w.publish(msg{wBackup, w.cmd(BackupProgress)})
	case Deploying:
		w.publish(msg{wDeploy, w.cmd(CanaryCreated)})
	case RollingBack:
		w.publish(msg{wRollback, w.cmd(Rollback)})
	}
}

func (w *walk) push(retry bool) {
	d := fmt.Sprintf("sha256:%016x%016x%016x%016x", w.rng.Uint64(), w.rng.Uint64(), w.rng.Uint64(), w.rng.Uint64())
	if retry && w.s.Rollout != nil {
		d = w.s.Rollout.Digest
	}
	c := Command{Kind: Claim, Service: "web", Image: "local.dev/web@" + d, Digest: d, PublishTime: w.now,
		Stages: []int{10, 30, 50, 100}, Retry: retry, Actor: "sim"}
	if w.rng.Float64() < 0.3 {
		c.Stages = []int{100} // blue-green
	}
	w.pushes = append(w.pushes, c)
	w.publish(msg{wClaim, c})
}

// operator publishes what the CLI would, from a fresh or an old read.
func (w *walk) operator() {
	r := w.s.Rollout
	if r == nil {
		return
	}
	c := w.cmd(Pause)
	if w.rng.Float64() < 0.2 && c.Generation > 2 {
		c.Generation -= int64(1 + w.rng.Intn(2)) // an old read
	}
	c.Actor = "operator"
	switch w.rng.Intn(4) {
	case 0:
		w.publish(msg{wPause, c})
	case 1:
		c.Kind = Resume
		w.publish(msg{wResume, c})
	case 2:
		c.Kind, c.Stage, c.Manual = Shift, r.Stage+1, true
		w.publish(msg{wShift, c})
	case 3:
		c.Kind, c.Reason = Rollback, "operator abort"
		w.publish(msg{wRollback, c})
	}
}

func (w *walk) step(inject bool) {
	w.now = w.now.Add(time.Duration(w.rng.Intn(300)) * time.Second)
	if inject {
		switch x := w.rng.Float64(); {
		case x < 0.2:
			w.operator()
		case x < 0.25:
			w.push(false)
		case x < 0.27 && len(w.pushes) > 0:
			late := w.pushes[w.rng.Intn(len(w.pushes))]
			w.publish(msg{wClaim, late})
		case x < 0.29:
			w.push(true)
		}
	}
	if len(w.queue) == 0 {
		return
	}
	if w.rng.Float64() < 0.1 { // duplicate delivery
		w.publish(w.queue[w.rng.Intn(len(w.queue))])
	}
	i := w.rng.Intn(len(w.queue)) // out of order
	m := w.queue[i]
	w.queue = append(w.queue[:i], w.queue[i+1:]...)
	w.handle(m)
}

func (w *walk) drain() {
	for n := 0; len(w.queue) > 0; n++ {
		if n > 10000 {
			w.fail("queue does not drain: %d messages left", len(w.queue))
		}
		w.step(false)
	}
}

func TestRandomWalk(t *testing.T) {
	const walks = 10000
	phases := map[Phase]int{}
	writes, queued := 0, 0
	for seed := int64(1); seed <= walks; seed++ {
		w := newWalk(t, seed)
		w.push(false)
		for n := w.rng.Intn(60) + 1; n > 0; n-- {
			w.step(true)
		}
		w.drain()
		// Commands stop coming; only the Scheduler tick runs now.
		for tick := 0; w.s.Rollout != nil && (w.s.Rollout.Active() || w.s.Pending != nil); tick++ {
			if tick > 500 {
				w.fail("seed %d: rollout %s still %s after %d ticks", seed, w.s.Rollout.ID, w.s.Rollout.Phase, tick)
			}
			w.now = w.now.Add(30 * time.Minute)
			wd := Watchdog(w.s, w.now, true, w.cfg)
			if wd.Apply != nil {
				if res := w.apply(*wd.Apply); res.Outcome != Applied {
					w.fail("seed %d: watchdog's %s not applied: %v %s", seed, wd.Apply.Kind, res.Outcome, res.Reason)
				}
			}
			switch wd.Publish {
			case StepBackup:
				w.publish(msg{wBackup, w.cmd(BackupProgress)})
			case StepDeploy:
				w.publish(msg{wDeploy, w.cmd(CanaryCreated)})
			case StepRollback:
				rb := w.cmd(Rollback)
				rb.Reason = wd.Reason
				w.publish(msg{wRollback, rb})
			case StepRelease:
				w.publish(msg{wClaim, w.pendingClaim()})
			}
			w.drain()
		}
		if w.s.Rollout == nil {
			w.fail("seed %d: no rollout claimed", seed)
		}
		r := w.s.Rollout
		phases[r.Phase]++
		writes += w.writes
		for _, e := range w.s.History {
			if e.Kind == Queue {
				queued++
			}
		}
		want := r.Stable
		if r.Phase == Promoted {
			want = r.Canary
		}
		if w.s.Stable != want {
			w.fail("seed %d: ended %s with stable %s, want %s", seed, r.Phase, w.s.Stable, want)
		}
	}
	t.Logf("%d walks, %d writes, %d pushes queued; final phases: %v", walks, writes, queued, phases)
	if queued == 0 {
		t.Errorf("no push was ever queued: the walk does not explore supersession")
	}
	for _, p := range []Phase{Promoted, RolledBack, Failed} {
		if phases[p] == 0 {
			t.Errorf("no walk ended %s: the walk does not explore enough", p)
		}
	}
}
