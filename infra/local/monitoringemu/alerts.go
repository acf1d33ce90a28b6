package monitoringemu

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// alertAPI serves google.monitoring.v3.AlertPolicyService for a Server (kept apart so that
// the RPC methods are not part of Server's API).
type alertAPI struct {
	monitoringpb.UnimplementedAlertPolicyServiceServer
	*Server
}

// alerting is the server's alerting state: notification channels, alert policies, the
// per-series state of their conditions and the incidents.
type alerting struct {
	mu           sync.Mutex
	channels     map[string]*monitoringpb.NotificationChannel // by name
	channelOrder []string                                     // creation order
	policies     map[string]*policyEntry                      // by name
	policyOrder  []string                                     // creation order
	// series is the evaluation state of each series of each condition: condition name →
	// series key → state.
	series map[string]map[string]*seriesState
	// open holds the open incidents by condition name and series key.
	open map[incidentKey]*incident
	// closed holds the last maxClosedIncidents closed incidents, oldest first.
	closed []*incident
}

// policyEntry is a stored alert policy and its compiled conditions.
type policyEntry struct {
	project string
	pb      *monitoringpb.AlertPolicy // as returned (clones), condition names assigned
	conds   []*condition              // parallel to pb.Conditions
}

func newAlerting() *alerting {
	return &alerting{
		channels: map[string]*monitoringpb.NotificationChannel{},
		policies: map[string]*policyEntry{},
		series:   map[string]map[string]*seriesState{},
		open:     map[incidentKey]*incident{},
	}
}

// newID returns a numeric id like Google's that taken does not report as used.
func (a *alerting) newID(taken func(string) bool) string {
	for {
		id := strconv.FormatUint(rand.Uint64()>>1, 10)
		if !taken(id) {
			return id
		}
	}
}

// policyProject parses projects/P/alertPolicies/ID and returns P.
func policyProject(name string) (string, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[1] == "" || parts[2] != "alertPolicies" || parts[3] == "" {
		return "", invalid("name %q: want projects/PROJECT_ID/alertPolicies/POLICY_ID", name)
	}
	return parts[1], nil
}

// checkPolicyLocked validates p, a policy of project, and compiles its conditions (whose
// names must already be set). Errors are INVALID_ARGUMENT naming the bad part.
func (s *Server) checkPolicyLocked(project string, p *monitoringpb.AlertPolicy) ([]*condition, error) {
	switch n := len([]rune(p.GetDisplayName())); {
	case n == 0:
		return nil, invalid("alert_policy.display_name is required")
	case n > 512:
		return nil, invalid("alert_policy.display_name: %d characters, at most 512", n)
	}
	if d := p.GetDocumentation(); d != nil {
		if n := len([]rune(d.GetContent())); n > 8192 {
			return nil, invalid("alert_policy.documentation.content: %d characters, at most 8192", n)
		}
		if m := d.GetMimeType(); m != "" && m != "text/markdown" {
			return nil, invalid("alert_policy.documentation.mime_type %q is not supported (only text/markdown)", m)
		}
		if n := len(d.GetSubject()); n > 10240 {
			return nil, invalid("alert_policy.documentation.subject: %d bytes, at most 10240", n)
		}
		if n := len(d.GetLinks()); n > 3 {
			return nil, invalid("alert_policy.documentation.links: %d links, at most 3", n)
		}
	}
	if err := checkUserLabels("alert_policy.user_labels", p.GetUserLabels()); err != nil {
		return nil, err
	}
	switch n := len(p.GetConditions()); {
	case n == 0:
		return nil, invalid("alert_policy.conditions: at least one condition is required")
	case n > MaxConditions:
		return nil, invalid("alert_policy.conditions: %d conditions, at most %d", n, MaxConditions)
	}
	conds := make([]*condition, len(p.GetConditions()))
	for i, c := range p.GetConditions() {
		cc, err := s.compileCondition(project, i, c)
		if err != nil {
			return nil, invalid("alert_policy.%s", status.Convert(err).Message())
		}
		conds[i] = cc
	}
	switch p.GetCombiner() {
	case monitoringpb.AlertPolicy_OR, monitoringpb.AlertPolicy_AND, monitoringpb.AlertPolicy_AND_WITH_MATCHING_RESOURCE:
	case monitoringpb.AlertPolicy_COMBINE_UNSPECIFIED:
		if len(conds) > 1 {
			return nil, invalid("alert_policy.combiner is required with more than one condition (OR, AND or AND_WITH_MATCHING_RESOURCE)")
		}
	default:
		return nil, invalid("alert_policy.combiner %v is not a known value", p.GetCombiner())
	}
	for i, name := range p.GetNotificationChannels() {
		cp, err := channelProject(name)
		if err != nil {
			return nil, invalid("alert_policy.notification_channels[%d]: %s", i, status.Convert(err).Message())
		}
		if cp != project {
			return nil, invalid("alert_policy.notification_channels[%d] %q is not a channel of project %s", i, name, project)
		}
		if s.alerts.channels[name] == nil {
			return nil, invalid("alert_policy.notification_channels[%d] %q does not exist", i, name)
		}
		if slices.Index(p.GetNotificationChannels(), name) != i {
			return nil, invalid("alert_policy.notification_channels[%d] %q is listed twice", i, name)
		}
	}
	if st := p.GetAlertStrategy(); st != nil {
		if st.GetNotificationRateLimit() != nil {
			return nil, invalid("alert_policy.alert_strategy.notification_rate_limit applies to log-based policies only")
		}
		if len(st.GetNotificationChannelStrategy()) > 0 {
			return nil, invalid("alert_policy.alert_strategy.notification_channel_strategy (renotification) is not supported by this emulator")
		}
		if ac := st.GetAutoClose(); ac != nil {
			if err := ac.CheckValid(); err != nil || ac.AsDuration() < 0 {
				return nil, invalid("alert_policy.alert_strategy.auto_close %v is not a valid non-negative duration", ac)
			}
		}
		if pr := st.GetNotificationPrompts(); len(pr) > 0 {
			opened := slices.Contains(pr, monitoringpb.AlertPolicy_AlertStrategy_OPENED)
			for _, x := range pr {
				if x != monitoringpb.AlertPolicy_AlertStrategy_OPENED && x != monitoringpb.AlertPolicy_AlertStrategy_CLOSED {
					return nil, invalid("alert_policy.alert_strategy.notification_prompts: %v is not OPENED or CLOSED", x)
				}
			}
			if !opened {
				return nil, invalid("alert_policy.alert_strategy.notification_prompts %v: a metric policy notifies OPENED, or OPENED and CLOSED", pr)
			}
		}
	}
	if _, ok := monitoringpb.AlertPolicy_Severity_name[int32(p.GetSeverity())]; !ok {
		return nil, invalid("alert_policy.severity %v is not a known value", p.GetSeverity())
	}
	return conds, nil
}

// clearReadOnly drops what a client may not write: validity and the records.
func clearReadOnly(p *monitoringpb.AlertPolicy) {
	p.Validity, p.CreationRecord, p.MutationRecord = nil, nil, nil
}

// CreateAlertPolicy validates and stores a policy; the server assigns the policy's and
// its conditions' names. enabled defaults to true.
func (s alertAPI) CreateAlertPolicy(ctx context.Context, req *monitoringpb.CreateAlertPolicyRequest) (*monitoringpb.AlertPolicy, error) {
	project, err := projectOf(req.GetName())
	if err != nil {
		return nil, err
	}
	if req.GetAlertPolicy() == nil {
		return nil, invalid("alert_policy is required")
	}
	p := proto.Clone(req.GetAlertPolicy()).(*monitoringpb.AlertPolicy)
	clearReadOnly(p)
	a := s.alerts
	a.mu.Lock()
	defer a.mu.Unlock()
	p.Name = "projects/" + project + "/alertPolicies/" + a.newID(func(id string) bool {
		return a.policies["projects/"+project+"/alertPolicies/"+id] != nil
	})
	for _, c := range p.GetConditions() {
		if c != nil {
			c.Name = s.newConditionName(p.Name, p.GetConditions())
		}
	}
	conds, err := s.checkPolicyLocked(project, p)
	if err != nil {
		return nil, err
	}
	if p.Enabled == nil {
		p.Enabled = wrapperspb.Bool(true)
	}
	p.CreationRecord = s.record()
	p.MutationRecord = p.CreationRecord
	a.policies[p.Name] = &policyEntry{project: project, pb: p, conds: conds}
	a.policyOrder = append(a.policyOrder, p.Name)
	return proto.Clone(p).(*monitoringpb.AlertPolicy), nil
}

// newConditionName returns a condition name of policy not used by cs.
func (s *Server) newConditionName(policy string, cs []*monitoringpb.AlertPolicy_Condition) string {
	id := s.alerts.newID(func(id string) bool {
		return slices.ContainsFunc(cs, func(c *monitoringpb.AlertPolicy_Condition) bool { return c.GetName() == policy+"/conditions/"+id })
	})
	return policy + "/conditions/" + id
}

// GetAlertPolicy returns a policy or NOT_FOUND.
func (s alertAPI) GetAlertPolicy(ctx context.Context, req *monitoringpb.GetAlertPolicyRequest) (*monitoringpb.AlertPolicy, error) {
	if _, err := policyProject(req.GetName()); err != nil {
		return nil, err
	}
	a := s.alerts
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.policies[req.GetName()]
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "alert policy %s not found", req.GetName())
	}
	return proto.Clone(e.pb).(*monitoringpb.AlertPolicy), nil
}

// policyField reports whether a policy list filter may name f.
func policyField(f string) bool {
	_, user := labelField(f, "user_labels", "user_label")
	return f == "display_name" || user
}

// policyValue reads a filter field of p.
func policyValue(p *monitoringpb.AlertPolicy) func(string) (string, bool) {
	return func(f string) (string, bool) {
		if f == "display_name" {
			return p.GetDisplayName(), true
		}
		if k, ok := labelField(f, "user_labels", "user_label"); ok {
			v, ok := p.GetUserLabels()[k]
			return v, ok
		}
		return "", false
	}
}

// ListAlertPolicies lists a project's policies in creation order. Filters:
// display_name = "…" and user_labels.KEY = "…" joined by AND.
func (s alertAPI) ListAlertPolicies(ctx context.Context, req *monitoringpb.ListAlertPoliciesRequest) (*monitoringpb.ListAlertPoliciesResponse, error) {
	project, err := projectOf(req.GetName())
	if err != nil {
		return nil, err
	}
	cs, err := parseListFilter(req.GetFilter(), policyField, "display_name and user_labels.KEY")
	if err != nil {
		return nil, err
	}
	if req.GetOrderBy() != "" {
		return nil, invalid("order_by %q is not supported by this emulator (policies come in creation order)", req.GetOrderBy())
	}
	a := s.alerts
	a.mu.Lock()
	var all []*monitoringpb.AlertPolicy
	for _, name := range a.policyOrder {
		e := a.policies[name]
		if e.project == project && matchList(cs, policyValue(e.pb)) {
			all = append(all, proto.Clone(e.pb).(*monitoringpb.AlertPolicy))
		}
	}
	a.mu.Unlock()
	start, end, next, err := listPage(len(all), req.GetPageSize(), req.GetPageToken(), listFingerprint("policies", req.GetName(), req.GetFilter()), maxListPage)
	if err != nil {
		return nil, err
	}
	return &monitoringpb.ListAlertPoliciesResponse{AlertPolicies: all[start:end], NextPageToken: next, TotalSize: int32(len(all))}, nil
}

// UpdateAlertPolicy changes the fields the update mask names, or replaces the policy
// (keeping its name) when the mask is empty. A supplied condition with the name of one of
// the policy's conditions updates it; one without a name is added; a condition not
// supplied is deleted. The open incidents of a condition that changed or was deleted are
// closed as cancelled (and their closed notification sent).
func (s alertAPI) UpdateAlertPolicy(ctx context.Context, req *monitoringpb.UpdateAlertPolicyRequest) (*monitoringpb.AlertPolicy, error) {
	in := req.GetAlertPolicy()
	if in == nil {
		return nil, invalid("alert_policy is required")
	}
	project, err := policyProject(in.GetName())
	if err != nil {
		return nil, invalid("alert_policy.%s", status.Convert(err).Message())
	}
	s.evalMu.Lock() // notifications of cancelled incidents stay in order with evaluations'
	defer s.evalMu.Unlock()
	a := s.alerts
	a.mu.Lock()
	old := a.policies[in.GetName()]
	if old == nil {
		a.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "alert policy %s not found", in.GetName())
	}
	p, err := s.applyPolicyUpdate(old.pb, in, req.GetUpdateMask().GetPaths())
	if err != nil {
		a.mu.Unlock()
		return nil, err
	}
	conds, err := s.checkPolicyLocked(project, p)
	if err != nil {
		a.mu.Unlock()
		return nil, err
	}
	if p.Enabled == nil {
		p.Enabled = wrapperspb.Bool(true)
	}
	p.MutationRecord = s.record()
	// Conditions that changed or went away: their incidents are cancelled, their state
	// dropped.
	now := s.now()
	var out []delivery
	for _, oc := range old.pb.GetConditions() {
		i := slices.IndexFunc(p.GetConditions(), func(c *monitoringpb.AlertPolicy_Condition) bool { return c.GetName() == oc.GetName() })
		if i >= 0 && proto.Equal(oc, p.GetConditions()[i]) {
			continue
		}
		out = append(out, s.cancelConditionLocked(p, oc, now)...)
	}
	a.policies[p.Name] = &policyEntry{project: project, pb: p, conds: conds}
	res := proto.Clone(p).(*monitoringpb.AlertPolicy)
	a.mu.Unlock()
	s.deliver(s.ctx, out)
	return res, nil
}

// applyPolicyUpdate returns a copy of old with the update in applied (paths: the update
// mask; none: full replacement), conditions named.
func (s *Server) applyPolicyUpdate(old, in *monitoringpb.AlertPolicy, paths []string) (*monitoringpb.AlertPolicy, error) {
	p := proto.Clone(old).(*monitoringpb.AlertPolicy)
	setConditions := false
	if len(paths) == 0 {
		p = proto.Clone(in).(*monitoringpb.AlertPolicy)
		p.Name, p.CreationRecord = old.GetName(), old.GetCreationRecord()
		setConditions = true
	}
	for _, path := range paths {
		switch path {
		case "display_name":
			p.DisplayName = in.GetDisplayName()
		case "documentation":
			p.Documentation = cloneOf(in.GetDocumentation())
		case "documentation.content", "documentation.mime_type", "documentation.subject", "documentation.links":
			if p.Documentation == nil {
				p.Documentation = &monitoringpb.AlertPolicy_Documentation{}
			}
			d := in.GetDocumentation()
			switch path {
			case "documentation.content":
				p.Documentation.Content = d.GetContent()
			case "documentation.mime_type":
				p.Documentation.MimeType = d.GetMimeType()
			case "documentation.subject":
				p.Documentation.Subject = d.GetSubject()
			default:
				p.Documentation.Links = cloneOf(d).GetLinks()
			}
		case "user_labels":
			p.UserLabels = copyLabels(in.GetUserLabels())
		case "conditions":
			p.Conditions = cloneOf(in).GetConditions()
			setConditions = true
		case "combiner":
			p.Combiner = in.GetCombiner()
		case "enabled":
			p.Enabled = cloneOf(in.GetEnabled())
		case "notification_channels":
			p.NotificationChannels = slices.Clone(in.GetNotificationChannels())
		case "alert_strategy":
			p.AlertStrategy = cloneOf(in.GetAlertStrategy())
		case "severity":
			p.Severity = in.GetSeverity()
		default:
			k, ok := labelField(path, "user_labels", "user_label")
			if !ok {
				return nil, invalid("update_mask: path %q is not supported by this emulator", path)
			}
			p.UserLabels = setLabel(p.UserLabels, k, in.GetUserLabels())
		}
	}
	clearReadOnly(p)
	p.CreationRecord = old.GetCreationRecord()
	if setConditions {
		for i, c := range p.GetConditions() {
			switch {
			case c == nil:
			case c.GetName() == "":
				c.Name = s.newConditionName(p.Name, append(slices.Clone(old.GetConditions()), p.GetConditions()...))
			case !slices.ContainsFunc(old.GetConditions(), func(oc *monitoringpb.AlertPolicy_Condition) bool { return oc.GetName() == c.GetName() }):
				return nil, invalid("alert_policy.conditions[%d].name %q is not a condition of %s (leave it empty to add a condition)", i, c.GetName(), p.Name)
			case slices.IndexFunc(p.GetConditions(), func(o *monitoringpb.AlertPolicy_Condition) bool { return o.GetName() == c.GetName() }) != i:
				return nil, invalid("alert_policy.conditions[%d].name %q is given twice", i, c.GetName())
			}
		}
	}
	return p, nil
}

// cloneOf returns a deep copy of m (nil stays nil).
func cloneOf[M proto.Message](m M) M {
	return proto.Clone(m).(M)
}

// DeleteAlertPolicy deletes a policy. Its open incidents are dropped without a
// notification (as when Google deletes a policy: no closed message is documented), and
// its conditions' state is forgotten.
func (s alertAPI) DeleteAlertPolicy(ctx context.Context, req *monitoringpb.DeleteAlertPolicyRequest) (*emptypb.Empty, error) {
	if _, err := policyProject(req.GetName()); err != nil {
		return nil, err
	}
	a := s.alerts
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.policies[req.GetName()]
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "alert policy %s not found", req.GetName())
	}
	for _, c := range e.pb.GetConditions() {
		delete(a.series, c.GetName())
		for k := range a.open {
			if k.condition == c.GetName() {
				delete(a.open, k)
			}
		}
	}
	delete(a.policies, req.GetName())
	a.policyOrder = slices.DeleteFunc(a.policyOrder, func(n string) bool { return n == req.GetName() })
	return &emptypb.Empty{}, nil
}
