package monitoringemu

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/protobuf/encoding/protojson"
)

// Incident states, as the notifications spell them.
const (
	IncidentOpen   = "open"
	IncidentClosed = "closed"
)

// NotificationVersion is the schema version of the notifications the server publishes.
const NotificationVersion = "1.2"

// CancelledObservedValue is the observed_value of an incident closed because its
// condition was modified or deleted (Google's wording, from a real notification).
const CancelledObservedValue = "Incident cancelled because the alert policy condition was deleted or modified while incident was active."

// noDataObservedValue is the observed_value of an incident closed (or opened, with
// EVALUATION_MISSING_DATA_ACTIVE) for lack of data; Google's wording is not known.
const noDataObservedValue = "No data"

// maxClosedIncidents is how many closed incidents Incidents keeps reporting.
const maxClosedIncidents = 1000

// Incident is an incident of an alert policy, as Incidents reports it.
type Incident struct {
	// ID is the incident_id of its notifications ("0.…").
	ID string
	// Policy and Condition are the resource names of the policy and its condition;
	// PolicyDisplayName and ConditionDisplayName their display names.
	Policy, PolicyDisplayName       string
	Condition, ConditionDisplayName string
	// State is IncidentOpen or IncidentClosed.
	State string
	// ResourceType and ResourceLabels are the monitored resource of the failing series
	// (after aggregation: the grouped labels and project_id).
	ResourceType   string
	ResourceLabels map[string]string
	// MetricType and MetricLabels are the metric of the failing series.
	MetricType   string
	MetricLabels map[string]string
	// ObservedValue is the value of the last notification ("0.250", or prose).
	ObservedValue string
	// Started is when the incident opened; Ended when it closed (zero while open).
	Started, Ended time.Time
}

// incidentKey identifies the series of a condition an incident is about.
type incidentKey struct {
	condition, series string
}

// seriesIdentity is the resource and metric of an evaluated series.
type seriesIdentity struct {
	resourceType string
	resLabels    map[string]string
	metricType   string
	metricLabels map[string]string
}

// incident is a stored incident.
type incident struct {
	Incident
	project string
	key     incidentKey
	// cond is the condition as it was when the incident opened.
	cond          *monitoringpb.AlertPolicy_Condition
	metricDisplay string
}

// Incidents returns every open incident and the most recent closed ones (up to 1000),
// oldest first. The open incidents of a deleted policy are dropped.
func (s *Server) Incidents() []Incident {
	a := s.alerts
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Incident
	for _, in := range a.closed {
		out = append(out, in.export())
	}
	for _, in := range a.open {
		out = append(out, in.export())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func (in *incident) export() Incident {
	c := in.Incident
	c.ResourceLabels = maps.Clone(in.ResourceLabels)
	c.MetricLabels = maps.Clone(in.MetricLabels)
	return c
}

// newIncidentID returns an id in Google's shape: "0." and 12 base-36 digits.
func newIncidentID() string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := []byte("0.")
	for range 12 {
		b = append(b, digits[rand.IntN(len(digits))])
	}
	return string(b)
}

// projectNumber is the scoping_project_number of a project: the project itself when it
// is a number, else a stable 12-digit number derived from its id (the emulator has no
// project numbers).
func projectNumber(project string) int64 {
	if n, err := strconv.ParseInt(project, 10, 64); err == nil && n > 0 {
		return n
	}
	h := fnv.New64a()
	h.Write([]byte(project))
	return 100000000000 + int64(h.Sum64()%900000000000)
}

// severityText is the notification's severity for a policy severity.
func severityText(s monitoringpb.AlertPolicy_Severity) string {
	switch s {
	case monitoringpb.AlertPolicy_CRITICAL:
		return "Critical"
	case monitoringpb.AlertPolicy_ERROR:
		return "Error"
	case monitoringpb.AlertPolicy_WARNING:
		return "Warning"
	}
	return "no severity"
}

// resourceTypeDisplay is the display name of a monitored resource type ("Cloud Run
// Revision"), or the type itself.
func resourceTypeDisplay(typ string) string {
	for _, d := range resourceDescriptors() {
		if d.GetType() == typ {
			return d.GetDisplayName()
		}
	}
	return typ
}

// formatLabels writes labels as Google's summaries do: {k=v, k=v}, in the order of the
// resource descriptor's labels when known, then by key.
func formatLabels(resourceType string, m map[string]string) string {
	var keys []string
	for _, d := range resourceDescriptors() {
		if d.GetType() == resourceType {
			for _, l := range d.GetLabels() {
				if _, ok := m[l.GetKey()]; ok {
					keys = append(keys, l.GetKey())
				}
			}
		}
	}
	rest := slices.Sorted(maps.Keys(m))
	for _, k := range rest {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// notification is the schema 1.2 document published on a pubsub channel.
type notification struct {
	Incident notificationIncident `json:"incident"`
	Version  string               `json:"version"`
}

type notificationIncident struct {
	IncidentID              string            `json:"incident_id"`
	ScopingProjectID        string            `json:"scoping_project_id"`
	ScopingProjectNumber    int64             `json:"scoping_project_number"`
	URL                     string            `json:"url"`
	Severity                string            `json:"severity"`
	StartedAt               int64             `json:"started_at"`
	EndedAt                 *int64            `json:"ended_at"`
	State                   string            `json:"state"`
	Summary                 string            `json:"summary"`
	ResourceID              string            `json:"resource_id"`
	ResourceName            string            `json:"resource_name"`
	ResourceTypeDisplayName string            `json:"resource_type_display_name"`
	Resource                notificationRes   `json:"resource"`
	Metric                  notificationMet   `json:"metric"`
	Metadata                notificationMeta  `json:"metadata"`
	PolicyName              string            `json:"policy_name"`
	PolicyUserLabels        map[string]string `json:"policy_user_labels,omitempty"`
	ConditionName           string            `json:"condition_name"`
	Condition               json.RawMessage   `json:"condition"`
	ThresholdValue          string            `json:"threshold_value"`
	ObservedValue           string            `json:"observed_value"`
	Documentation           notificationDoc   `json:"documentation"`
}

type notificationRes struct {
	Type   string            `json:"type"`
	Labels map[string]string `json:"labels"`
}

type notificationMet struct {
	Type        string            `json:"type"`
	DisplayName string            `json:"displayName"`
	Labels      map[string]string `json:"labels"`
}

type notificationMeta struct {
	SystemLabels map[string]string `json:"system_labels"`
	UserLabels   map[string]string `json:"user_labels"`
}

type notificationDoc struct {
	Content  string `json:"content"`
	MimeType string `json:"mime_type"`
	Subject  string `json:"subject"`
}

// nonNil returns m, or an empty map for nil (so that JSON says {} rather than null).
func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// document renders the notification of in's current state for policy p (summary: the
// generated sentence). Documentation variables (${…}) are not expanded.
func (in *incident) document(p *monitoringpb.AlertPolicy, summary string) ([]byte, error) {
	sev := severityText(p.GetSeverity())
	tag := "[ALERT - " + sev + "] "
	if in.State == IncidentClosed {
		tag = "[RESOLVED - " + sev + "] "
	}
	subject := p.GetDocumentation().GetSubject()
	if subject == "" {
		subject = p.GetDisplayName()
	}
	mime := p.GetDocumentation().GetMimeType()
	if mime == "" {
		mime = "text/markdown"
	}
	cond, err := protojson.Marshal(in.cond)
	if err != nil {
		return nil, fmt.Errorf("incident %s: condition: %w", in.ID, err)
	}
	n := notification{Version: NotificationVersion, Incident: notificationIncident{
		IncidentID:              in.ID,
		ScopingProjectID:        in.project,
		ScopingProjectNumber:    projectNumber(in.project),
		URL:                     fmt.Sprintf("https://console.cloud.google.com/monitoring/alerting/alerts/%s?channelType=cloud-pubsub&project=%s", in.ID, in.project),
		Severity:                sev,
		StartedAt:               in.Started.Unix(),
		State:                   in.State,
		Summary:                 summary,
		ResourceID:              "",
		ResourceName:            in.resourceName(),
		ResourceTypeDisplayName: resourceTypeDisplay(in.ResourceType),
		Resource:                notificationRes{Type: in.ResourceType, Labels: nonNil(in.ResourceLabels)},
		Metric:                  notificationMet{Type: in.MetricType, DisplayName: in.metricDisplay, Labels: nonNil(in.MetricLabels)},
		Metadata:                notificationMeta{SystemLabels: map[string]string{}, UserLabels: map[string]string{}},
		PolicyName:              p.GetDisplayName(),
		PolicyUserLabels:        p.GetUserLabels(),
		ConditionName:           in.cond.GetDisplayName(),
		Condition:               cond,
		ThresholdValue:          strconv.FormatFloat(in.cond.GetConditionThreshold().GetThresholdValue(), 'f', -1, 64),
		ObservedValue:           in.ObservedValue,
		Documentation:           notificationDoc{Content: p.GetDocumentation().GetContent(), MimeType: mime, Subject: tag + subject},
	}}
	if in.State == IncidentClosed {
		end := in.Ended.Unix()
		n.Incident.EndedAt = &end
	}
	return json.Marshal(n)
}

// resourceName is Google's resource_name: "PROJECT DISPLAY labels {k=v, …}".
func (in *incident) resourceName() string {
	return in.project + " " + resourceTypeDisplay(in.ResourceType) + " labels " + formatLabels(in.ResourceType, in.ResourceLabels)
}

// subjectOfSummary is the start of every summary: "<metric> for <resource> with metric
// labels {…}".
func (in *incident) subjectOfSummary() string {
	return fmt.Sprintf("%s for %s with metric labels %s", in.metricDisplay, in.resourceName(), formatLabels("", in.MetricLabels))
}

// openSummary is the summary of an open notification.
func (in *incident) openSummary(value float64, hasValue bool) string {
	th := in.cond.GetConditionThreshold()
	dir := "above"
	if th.GetComparison() == monitoringpb.ComparisonType_COMPARISON_LT {
		dir = "below"
	}
	if !hasValue {
		return fmt.Sprintf("%s has no data (the condition treats missing data as violating the threshold of %.3f).", in.subjectOfSummary(), th.GetThresholdValue())
	}
	return fmt.Sprintf("%s is %s the threshold of %.3f with a value of %.3f.", in.subjectOfSummary(), dir, th.GetThresholdValue(), value)
}

// closeSummary is the summary of a closed notification.
func (in *incident) closeSummary(value float64, hasValue bool) string {
	if !hasValue {
		return fmt.Sprintf("%s returned to normal: no data in the condition's window.", in.subjectOfSummary())
	}
	return fmt.Sprintf("%s returned to normal with a value of %.3f.", in.subjectOfSummary(), value)
}

// observed formats an observed value as Google does: three decimals.
func observed(v float64, has bool) string {
	if !has {
		return noDataObservedValue
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}
