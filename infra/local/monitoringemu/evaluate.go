package monitoringemu

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/genproto/googleapis/api/metric"
)

// Evaluation cadence of the background loop, on the server's clock.
const (
	// AlertEvaluationPeriod is how often policies are evaluated with Google's timing.
	AlertEvaluationPeriod = time.Minute
	// FastAlertEvaluationPeriod is how often policies are evaluated in fast mode.
	FastAlertEvaluationPeriod = time.Second
	// maxCatchUp bounds the evaluations the loop runs after the clock jumped ahead.
	maxCatchUp = 60
)

// seriesState is the evaluation state of one series of one condition.
type seriesState struct {
	id seriesIdentity
	// since is when the series started violating the threshold (zero: it does not).
	since time.Time
	// failing: violating for at least the condition's duration.
	failing bool
	// lastData is when the series last had a value (or was first seen).
	lastData time.Time
	// value is the last value; hasValue says whether the latest evaluation had one.
	value    float64
	hasValue bool
}

// violate records one evaluation's verdict.
func (ss *seriesState) violate(now time.Time, violating bool, d time.Duration) {
	if !violating {
		ss.since, ss.failing = time.Time{}, false
		return
	}
	if ss.since.IsZero() {
		ss.since = now
	}
	ss.failing = now.Sub(ss.since) >= d
}

// observation is one series' value in an evaluation; has is false for missing data (a
// ratio whose numerator or denominator is absent, or a zero denominator).
type observation struct {
	id    seriesIdentity
	value float64
	has   bool
}

// delivery is one notification for one topic.
type delivery struct {
	topic string
	data  []byte
}

// EvaluateAlerts evaluates every enabled alert policy as of now, with the data visible at
// now, and publishes the notifications of the incidents it opens and closes (through
// Options.Publish, before it returns). It is what the background loop runs every
// evaluation period; tests that set Options.AlertsManual call it with the times they
// choose. The error joins the conditions that could not be evaluated and the
// notifications that could not be published; every policy is evaluated regardless.
//
// Each threshold condition reads the alignment period ending at now minus the largest
// ingestion delay of its metrics (Cloud Run's 180 s with Google's timing, none in fast
// mode), when all of that period's points are visible: Google's alerting likewise lags
// the data by the ingestion delay. The period's values are aligned per series, reduced by
// the group-by fields, divided numerator by denominator for series with equal labels (a
// missing numerator or denominator is missing data), and compared with the threshold. A
// series fails once it has violated the threshold at every evaluation for the
// condition's duration; the trigger and the combiner decide which failing series open an
// incident. One incident is opened per failing series not already open, and closed when
// the series no longer fails.
func (s *Server) EvaluateAlerts(ctx context.Context, now time.Time) error {
	s.evalMu.Lock()
	defer s.evalMu.Unlock()
	a := s.alerts
	a.mu.Lock()
	var out []delivery
	var errs []error
	for _, name := range a.policyOrder {
		e := a.policies[name]
		if !e.pb.GetEnabled().GetValue() {
			continue
		}
		d, err := s.evaluatePolicyLocked(e, now)
		out = append(out, d...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	a.mu.Unlock()
	if err := s.deliver(ctx, out); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// conditionResult is one condition's outcome in a policy evaluation.
type conditionResult struct {
	c      *condition
	states map[string]*seriesState
	firing map[string]bool // series keys that fail, once trigger and combiner applied
	met    bool            // the trigger is met
}

// evaluatePolicyLocked evaluates one policy at now and returns the notifications to send.
func (s *Server) evaluatePolicyLocked(e *policyEntry, now time.Time) ([]delivery, error) {
	a := s.alerts
	var errs []error
	results := make([]*conditionResult, len(e.conds))
	for i, c := range e.conds {
		st := a.series[c.pb.GetName()]
		if st == nil {
			st = map[string]*seriesState{}
			a.series[c.pb.GetName()] = st
		}
		r := &conditionResult{c: c, states: st, firing: map[string]bool{}}
		results[i] = r
		obs, err := s.observe(e.project, c, now)
		if err != nil {
			// The condition keeps its state: its incidents neither open nor close.
			errs = append(errs, fmt.Errorf("alert policy %s, condition %s: %w", e.pb.GetName(), c.pb.GetName(), err))
			s.log.Warn("alert condition not evaluated", "policy", e.pb.GetName(), "condition", c.pb.GetName(), "error", err)
			obs = nil
		}
		total := 0
		for _, k := range slices.Sorted(maps.Keys(unionKeys(obs, st))) {
			o, seen := obs[k]
			ss := st[k]
			if ss == nil {
				ss = &seriesState{id: o.id, lastData: now}
				st[k] = ss
			}
			if err == nil {
				s.updateSeries(e, c, ss, o, seen, now)
			}
			if seen || ss.failing {
				total++
			}
		}
		var failing []string
		for k, ss := range st {
			if ss.failing {
				failing = append(failing, k)
			}
		}
		if c.count > 0 {
			r.met = len(failing) >= c.count
		} else {
			r.met = len(failing) > 0 && total > 0 && float64(len(failing))*100/float64(total) >= c.percent
		}
		if r.met {
			for _, k := range failing {
				r.firing[k] = true
			}
		}
	}
	combine(e.pb.GetCombiner(), results)

	var out []delivery
	for _, r := range results {
		name := r.c.pb.GetName()
		keys := map[string]bool{}
		for k := range r.firing {
			keys[k] = true
		}
		for k := range a.open {
			if k.condition == name {
				keys[k.series] = true
			}
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			open := a.open[incidentKey{name, k}]
			ss := r.states[k]
			switch {
			case r.firing[k] && open == nil:
				out = append(out, s.openLocked(e, r.c, k, ss, now)...)
			case !r.firing[k] && open != nil:
				var value float64
				has := ss != nil && ss.hasValue
				if has {
					value = ss.value
				}
				out = append(out, s.closeLocked(e.pb, open, now, observed(value, has), open.closeSummary(value, has))...)
			}
		}
		// Forget quiet series: not violating, no incident, no data for a retention period.
		for k, ss := range r.states {
			if ss.since.IsZero() && a.open[incidentKey{name, k}] == nil && now.Sub(ss.lastData) > Retention {
				delete(r.states, k)
			}
		}
	}
	return out, errors.Join(errs...)
}

// unionKeys returns the keys of obs and st.
func unionKeys(obs map[string]observation, st map[string]*seriesState) map[string]bool {
	keys := make(map[string]bool, len(obs)+len(st))
	for k := range obs {
		keys[k] = true
	}
	for k := range st {
		keys[k] = true
	}
	return keys
}

// updateSeries applies one evaluation to a series: a value is compared with the
// threshold; missing data follows evaluationMissingData (INACTIVE: not violating, ACTIVE:
// violating, NO_OP and unspecified: the state is kept); a series without data for the
// policy's autoClose stops failing.
func (s *Server) updateSeries(e *policyEntry, c *condition, ss *seriesState, o observation, seen bool, now time.Time) {
	if seen {
		ss.id = o.id
	}
	if seen && o.has {
		ss.lastData, ss.value, ss.hasValue = now, o.value, true
		violating := o.value > c.threshold
		if c.cmp == monitoringpb.ComparisonType_COMPARISON_LT {
			violating = o.value < c.threshold
		}
		ss.violate(now, violating, c.duration)
		return
	}
	ss.hasValue = false
	switch c.missing {
	case monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE:
		ss.violate(now, false, c.duration)
	case monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_ACTIVE:
		ss.violate(now, true, c.duration)
	}
	if ac := e.pb.GetAlertStrategy().GetAutoClose().AsDuration(); ac > 0 && now.Sub(ss.lastData) >= ac {
		ss.violate(now, false, c.duration)
	}
}

// combine applies the policy's combiner to the firing series of its conditions: OR (and
// a single condition) leaves them; AND keeps them only when every condition's trigger is
// met; AND_WITH_MATCHING_RESOURCE keeps those whose monitored resource fails in every
// condition.
func combine(combiner monitoringpb.AlertPolicy_ConditionCombinerType, rs []*conditionResult) {
	if len(rs) < 2 {
		return
	}
	switch combiner {
	case monitoringpb.AlertPolicy_AND:
		for _, r := range rs {
			if !r.met {
				for _, r := range rs {
					clear(r.firing)
				}
				return
			}
		}
	case monitoringpb.AlertPolicy_AND_WITH_MATCHING_RESOURCE:
		var common map[string]bool
		for _, r := range rs {
			res := map[string]bool{}
			for k := range r.firing {
				res[resourceKey(r.states[k].id)] = true
			}
			if common == nil {
				common = res
			} else {
				maps.DeleteFunc(common, func(k string, _ bool) bool { return !res[k] })
			}
		}
		for _, r := range rs {
			maps.DeleteFunc(r.firing, func(k string, _ bool) bool { return !common[resourceKey(r.states[k].id)] })
		}
	}
}

// resourceKey identifies a monitored resource.
func resourceKey(id seriesIdentity) string {
	return seriesKey("", "", nil, id.resourceType, id.resLabels)
}

// observe reads one condition's series at now: the alignment period ending at
// now - c.delay, with the data visible at now.
func (s *Server) observe(project string, c *condition, now time.Time) (map[string]observation, error) {
	end := now.Add(-c.delay)
	num, err := s.runQuery(c.num.window(end), now)
	if err != nil {
		return nil, err
	}
	nums := observations(project, num)
	if c.den == nil {
		return nums, nil
	}
	den, err := s.runQuery(c.den.window(end), now)
	if err != nil {
		return nil, err
	}
	out := map[string]observation{}
	for k, d := range observations(project, den) {
		n, ok := nums[k]
		if !ok {
			// No numerator: missing data (a 5xx ratio with no 5xx at all is not 0).
			d.id.metricType = c.num.metricType
			out[k] = observation{id: d.id}
			continue
		}
		if d.value == 0 {
			out[k] = observation{id: n.id}
			continue
		}
		out[k] = observation{id: n.id, value: n.value / d.value, has: true}
	}
	for k, n := range nums {
		if _, ok := out[k]; !ok {
			out[k] = observation{id: n.id} // no denominator
		}
	}
	return out, nil
}

// observations returns the newest point of each series by label set (resource type and
// labels, metric labels). Resource labels gain project_id, as Google's notifications show
// it after aggregation.
func observations(project string, series []*outSeries) map[string]observation {
	out := make(map[string]observation, len(series))
	for _, os := range series {
		if len(os.points) == 0 {
			continue
		}
		rl := maps.Clone(os.resLabels)
		if rl == nil {
			rl = map[string]string{}
		}
		if _, ok := rl["project_id"]; !ok {
			rl["project_id"] = project
		}
		ml := maps.Clone(os.metricLabels)
		if ml == nil {
			ml = map[string]string{}
		}
		v := os.points[0].v
		value := v.d
		if os.vtype == metric.MetricDescriptor_INT64 {
			value = float64(v.i)
		}
		k := seriesKey("", "", ml, os.resourceType, rl)
		out[k] = observation{
			id:    seriesIdentity{resourceType: os.resourceType, resLabels: rl, metricType: os.metricType, metricLabels: ml},
			value: value, has: true,
		}
	}
	return out
}

// openLocked opens an incident for series k of condition c and returns its notifications.
func (s *Server) openLocked(e *policyEntry, c *condition, k string, ss *seriesState, now time.Time) []delivery {
	a := s.alerts
	in := &incident{
		Incident: Incident{
			ID:                   newIncidentID(),
			Policy:               e.pb.GetName(),
			PolicyDisplayName:    e.pb.GetDisplayName(),
			Condition:            c.pb.GetName(),
			ConditionDisplayName: c.pb.GetDisplayName(),
			State:                IncidentOpen,
			ResourceType:         ss.id.resourceType,
			ResourceLabels:       maps.Clone(ss.id.resLabels),
			MetricType:           ss.id.metricType,
			MetricLabels:         maps.Clone(ss.id.metricLabels),
			ObservedValue:        observed(ss.value, ss.hasValue),
			Started:              now,
		},
		project:       e.project,
		key:           incidentKey{c.pb.GetName(), k},
		cond:          cloneOf(c.pb),
		metricDisplay: c.numDisplay,
	}
	a.open[in.key] = in
	s.log.Info("alert incident opened", "incident", in.ID, "policy", in.PolicyDisplayName, "condition", in.ConditionDisplayName,
		"resource", in.resourceName(), "observed_value", in.ObservedValue)
	if !notifies(e.pb, monitoringpb.AlertPolicy_AlertStrategy_OPENED) {
		return nil
	}
	return s.notifyLocked(e.pb, in, in.openSummary(ss.value, ss.hasValue))
}

// closeLocked closes an open incident (observed: the observed_value to send) and returns
// its notifications, unless the policy's notification prompts leave CLOSED out.
func (s *Server) closeLocked(p *monitoringpb.AlertPolicy, in *incident, now time.Time, observed, summary string) []delivery {
	a := s.alerts
	delete(a.open, in.key)
	in.State, in.Ended, in.ObservedValue = IncidentClosed, now, observed
	in.PolicyDisplayName = p.GetDisplayName()
	a.closed = append(a.closed, in)
	if n := len(a.closed); n > maxClosedIncidents {
		a.closed = slices.Delete(a.closed, 0, n-maxClosedIncidents)
	}
	s.log.Info("alert incident closed", "incident", in.ID, "policy", in.PolicyDisplayName, "condition", in.ConditionDisplayName,
		"resource", in.resourceName(), "observed_value", in.ObservedValue)
	if !notifies(p, monitoringpb.AlertPolicy_AlertStrategy_CLOSED) {
		return nil
	}
	return s.notifyLocked(p, in, summary)
}

// cancelConditionLocked closes the open incidents of condition oc (changed or deleted by
// an update of policy p) as cancelled, forgets its series and returns the notifications.
func (s *Server) cancelConditionLocked(p *monitoringpb.AlertPolicy, oc *monitoringpb.AlertPolicy_Condition, now time.Time) []delivery {
	a := s.alerts
	delete(a.series, oc.GetName())
	var keys []incidentKey
	for k := range a.open {
		if k.condition == oc.GetName() {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y incidentKey) int {
		if x.series < y.series {
			return -1
		}
		if x.series > y.series {
			return 1
		}
		return 0
	})
	var out []delivery
	for _, k := range keys {
		in := a.open[k]
		out = append(out, s.closeLocked(p, in, now, CancelledObservedValue, in.subjectOfSummary()+": "+CancelledObservedValue)...)
	}
	return out
}

// notifies reports whether policy p sends notifications of prompt (unset prompts: both).
func notifies(p *monitoringpb.AlertPolicy, prompt monitoringpb.AlertPolicy_AlertStrategy_NotificationPrompt) bool {
	pr := p.GetAlertStrategy().GetNotificationPrompts()
	return len(pr) == 0 || slices.Contains(pr, prompt)
}

// notifyLocked renders in's notification once for every enabled channel of p.
func (s *Server) notifyLocked(p *monitoringpb.AlertPolicy, in *incident, summary string) []delivery {
	var topics []string
	for _, name := range p.GetNotificationChannels() {
		if ch := s.alerts.channels[name]; ch != nil && ch.GetEnabled().GetValue() {
			topics = append(topics, ch.GetLabels()["topic"])
		}
	}
	if len(topics) == 0 {
		return nil
	}
	data, err := in.document(p, summary)
	if err != nil {
		s.log.Error("alert notification not rendered", "incident", in.ID, "error", err)
		return nil
	}
	out := make([]delivery, len(topics))
	for i, t := range topics {
		out[i] = delivery{topic: t, data: data}
	}
	return out
}

// deliver publishes the notifications in order through Options.Publish. Without Publish
// they are dropped (incidents are still kept), with one warning per server. A failed
// publish is logged and reported, not retried.
func (s *Server) deliver(ctx context.Context, out []delivery) error {
	if len(out) == 0 {
		return nil
	}
	if s.opts.Publish == nil {
		s.noPublish.Do(func() {
			s.log.Warn("alert notifications are not delivered: the server has no Publish function", "dropped", len(out))
		})
		return nil
	}
	var errs []error
	for _, d := range out {
		if err := s.opts.Publish(ctx, d.topic, d.data); err != nil {
			s.log.Error("alert notification not published", "topic", d.topic, "error", err)
			errs = append(errs, fmt.Errorf("publish alert notification to %s: %w", d.topic, err))
		}
	}
	return errors.Join(errs...)
}

// alertLoop evaluates the policies on the evaluation grid of the server's clock (every
// AlertEvaluationPeriod, or FastAlertEvaluationPeriod in fast mode) until Close. It polls
// the clock in real time, so that an injected clock moved ahead is followed too; after a
// jump it evaluates the grid times it passed, at most maxCatchUp of them.
func (s *Server) alertLoop() {
	defer s.wg.Done()
	period, poll := AlertEvaluationPeriod, time.Second
	if s.opts.Fast {
		period, poll = FastAlertEvaluationPeriod, 100*time.Millisecond
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var last time.Time
	for {
		due := gridTime(s.now(), period)
		if last.IsZero() {
			last = due.Add(-period)
		}
		if due.After(last) {
			from := last.Add(period)
			if n := int(due.Sub(last) / period); n > maxCatchUp {
				from = due.Add(-(maxCatchUp - 1) * period)
				s.log.Warn("alert evaluations skipped: the clock jumped ahead", "skipped", n-maxCatchUp)
			}
			for t := from; !t.After(due); t = t.Add(period) {
				if err := s.EvaluateAlerts(s.ctx, t); err != nil && s.ctx.Err() == nil {
					s.log.Warn("alert evaluation", "at", t, "error", err)
				}
			}
			last = due
		}
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// gridTime is t truncated to a multiple of period since the Unix epoch.
func gridTime(t time.Time, period time.Duration) time.Time {
	n := t.UnixNano()
	p := int64(period)
	r := n % p
	if r < 0 {
		r += p
	}
	return time.Unix(0, n-r).UTC()
}
