package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Incident states, as normalised by DecodeIncident.
const (
	// IncidentOpen: the alert condition is met.
	IncidentOpen = "open"
	// IncidentClosed: the condition returned to normal, or the incident was cancelled.
	IncidentClosed = "closed"
)

const (
	incidentSource = "monitoring incident"
	// incidentVersion is the notification schema version DecodeIncident understands.
	incidentVersion = "1.2"
	// incidentTestVersion is the version of the console's "send test notification".
	incidentTestVersion = "test"
	// maxUnixSeconds is 9999-12-31T23:59:59Z.
	maxUnixSeconds = 253402300799
)

// Incident is a Cloud Monitoring alert notification (schema version 1.2) delivered on a
// Pub/Sub notification channel, or the console's test notification (version "test").
type Incident struct {
	// Version is the schema version: "1.2", or "test" for a test notification.
	Version string
	// ID is the incident id, the same in the open and the closed notification.
	ID string
	// State is IncidentOpen or IncidentClosed (normalised to lower case).
	State string
	// PolicyName is the alert policy's display name.
	PolicyName string
	// ConditionName is the condition's display name.
	ConditionName string
	// StartedAt is when the incident opened; zero when not sent.
	StartedAt time.Time
	// EndedAt is when the incident closed; zero while open.
	EndedAt time.Time
	// ResourceType is the monitored resource type, e.g. "cloud_run_revision".
	ResourceType string
	// ResourceLabels are the monitored resource's labels (service_name, revision_name, ...).
	ResourceLabels map[string]string
	// MetricType is the metric type, e.g. "run.googleapis.com/request_count".
	MetricType string
	// MetricLabels are the labels of the violating time series.
	MetricLabels map[string]string
	// PolicyUserLabels are the user labels set on the alert policy.
	PolicyUserLabels map[string]string
	// ThresholdValue is the condition's threshold, as sent (a string such as "0.9").
	ThresholdValue string
	// ObservedValue is the observed value, as sent; on close it can be prose.
	ObservedValue string
	// Summary is Google's one-line description of the incident.
	Summary string
	// URL links to the incident in the console.
	URL string
	// Documentation is the policy's documentation content, whether it was sent as an
	// object {content, mime_type, ...} or as a plain string.
	Documentation string
	// Test is true for the console's test notification (version "test").
	Test bool
}

// Service returns the Cloud Run service named by the resource label service_name, or "".
func (i Incident) Service() string { return i.ResourceLabels["service_name"] }

// Revision returns the Cloud Run revision named by the resource label revision_name, or "".
func (i Incident) Revision() string { return i.ResourceLabels["revision_name"] }

// wireIncidentNotification is the notification document as JSON.
type wireIncidentNotification struct {
	Version  *string       `json:"version"`
	Incident *wireIncident `json:"incident"`
}

// wireIncident holds the fields of "incident" that DecodeIncident reads or validates.
type wireIncident struct {
	IncidentID           string          `json:"incident_id"`
	ScopingProjectNumber json.RawMessage `json:"scoping_project_number"`
	URL                  string          `json:"url"`
	StartedAt            json.RawMessage `json:"started_at"`
	EndedAt              json.RawMessage `json:"ended_at"`
	State                string          `json:"state"`
	Summary              string          `json:"summary"`
	Resource             struct {
		Type   string            `json:"type"`
		Labels map[string]string `json:"labels"`
	} `json:"resource"`
	Metric struct {
		Type   string            `json:"type"`
		Labels map[string]string `json:"labels"`
	} `json:"metric"`
	PolicyName       string            `json:"policy_name"`
	PolicyUserLabels map[string]string `json:"policy_user_labels"`
	ConditionName    string            `json:"condition_name"`
	ThresholdValue   string            `json:"threshold_value"`
	ObservedValue    string            `json:"observed_value"`
	Documentation    json.RawMessage   `json:"documentation"`
}

// DecodeIncident decodes and validates the data of a Cloud Monitoring notification
// published on a Pub/Sub channel. Unknown JSON fields are ignored. Every error is a
// *FieldError naming the JSON field path (e.g. "incident.state").
func DecodeIncident(data []byte) (Incident, error) {
	fail := func(field, format string, args ...any) (Incident, error) {
		return Incident{}, &FieldError{Source: incidentSource, Field: field, Problem: fmt.Sprintf(format, args...)}
	}
	var w wireIncidentNotification
	if err := json.Unmarshal(data, &w); err != nil {
		return Incident{}, jsonFieldError(incidentSource, "", err)
	}
	switch {
	case w.Version == nil:
		return fail("version", "missing; want %q", incidentVersion)
	case *w.Version != incidentVersion && *w.Version != incidentTestVersion:
		return fail("version", "unsupported version %s; want %q or %q", quoteForError(*w.Version), incidentVersion, incidentTestVersion)
	}
	wi := w.Incident
	if wi == nil {
		return fail("incident", "missing")
	}
	if wi.IncidentID == "" {
		return fail("incident.incident_id", "missing")
	}
	var state string
	switch {
	case strings.EqualFold(wi.State, IncidentOpen):
		state = IncidentOpen
	case strings.EqualFold(wi.State, IncidentClosed):
		state = IncidentClosed
	case wi.State == "":
		return fail("incident.state", "missing; want open or closed")
	default:
		return fail("incident.state", "unknown state %s; want open or closed", quoteForError(wi.State))
	}
	if problem := jsonNumberProblem(wi.ScopingProjectNumber); problem != "" {
		return fail("incident.scoping_project_number", "%s", problem)
	}
	startedAt, problem := unixSecondsTime(wi.StartedAt)
	if problem != "" {
		return fail("incident.started_at", "%s", problem)
	}
	endedAt, problem := unixSecondsTime(wi.EndedAt)
	if problem != "" {
		return fail("incident.ended_at", "%s", problem)
	}
	documentation, err := incidentDocumentation(wi.Documentation)
	if err != nil {
		return Incident{}, err
	}
	return Incident{
		Version:          *w.Version,
		ID:               wi.IncidentID,
		State:            state,
		PolicyName:       wi.PolicyName,
		ConditionName:    wi.ConditionName,
		StartedAt:        startedAt,
		EndedAt:          endedAt,
		ResourceType:     wi.Resource.Type,
		ResourceLabels:   wi.Resource.Labels,
		MetricType:       wi.Metric.Type,
		MetricLabels:     wi.Metric.Labels,
		PolicyUserLabels: wi.PolicyUserLabels,
		ThresholdValue:   wi.ThresholdValue,
		ObservedValue:    wi.ObservedValue,
		Summary:          wi.Summary,
		URL:              wi.URL,
		Documentation:    documentation,
		Test:             *w.Version == incidentTestVersion,
	}, nil
}

// isJSONNull reports whether raw is absent or the JSON literal null.
func isJSONNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// jsonNumberProblem says why raw (absent, null or a JSON value) is not a JSON number, or
// returns "" when it is one or is absent.
func jsonNumberProblem(raw json.RawMessage) string {
	if isJSONNull(raw) {
		return ""
	}
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return fmt.Sprintf("got %s, want a JSON number", jsonValueKind(raw))
	}
	return ""
}

// unixSecondsTime converts a JSON number of Unix seconds to a time. Absent, null and 0
// mean unset (the zero time). Only whole seconds from 1970 to year 9999 are accepted.
func unixSecondsTime(raw json.RawMessage) (time.Time, string) {
	if problem := jsonNumberProblem(raw); problem != "" {
		return time.Time{}, problem + " of Unix seconds"
	}
	if isJSONNull(raw) {
		return time.Time{}, ""
	}
	s := string(raw)
	seconds, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != math.Trunc(f) || f < 0 || f > maxUnixSeconds {
			return time.Time{}, fmt.Sprintf("%s is not whole Unix seconds between 0 and %d", quoteForError(s), int64(maxUnixSeconds))
		}
		seconds = int64(f)
	}
	if seconds < 0 || seconds > maxUnixSeconds {
		return time.Time{}, fmt.Sprintf("%s is not whole Unix seconds between 0 and %d", quoteForError(s), int64(maxUnixSeconds))
	}
	if seconds == 0 {
		return time.Time{}, ""
	}
	return time.Unix(seconds, 0).UTC(), ""
}

// incidentDocumentation returns the documentation content, sent either as an object
// {"content": ..., "mime_type": ..., "subject": ...} or as a plain string.
func incidentDocumentation(raw json.RawMessage) (string, error) {
	const field = "incident.documentation"
	if isJSONNull(raw) {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", jsonFieldError(incidentSource, field, err)
		}
		return s, nil
	case '{':
		var doc struct {
			Content string `json:"content"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			return "", jsonFieldError(incidentSource, field, err)
		}
		return doc.Content, nil
	default:
		return "", &FieldError{
			Source: incidentSource, Field: field,
			Problem: fmt.Sprintf("got %s, want an object with content or a string", jsonValueKind(raw)),
		}
	}
}

// jsonValueKind names the kind of a valid, non-empty JSON value for an error message.
func jsonValueKind(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
