package events_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ai-square/coalmine/events"
)

func TestDecodeIncidentFixtures(t *testing.T) {
	tests := []struct {
		fixture      string
		want         events.Incident
		wantService  string
		wantRevision string
	}{
		{
			fixture: "monitoring-incident-open-cloudrun.json",
			want: events.Incident{
				Version:       "1.2",
				ID:            "0.nwq2k1x7v3lp",
				State:         events.IncidentOpen,
				PolicyName:    "api 5xx rate",
				ConditionName: "Cloud Run Revision - 5xx request rate",
				StartedAt:     time.Unix(1764151260, 0).UTC(),
				ResourceType:  "cloud_run_revision",
				ResourceLabels: map[string]string{
					"project_id":         "my-project",
					"service_name":       "api",
					"revision_name":      "api-00042-xav",
					"location":           "europe-west1",
					"configuration_name": "api",
				},
				MetricType:       "run.googleapis.com/request_count",
				MetricLabels:     map[string]string{"response_code": "503", "response_code_class": "5xx", "route": ""},
				PolicyUserLabels: map[string]string{"service": "api", "team": "platform"},
				ThresholdValue:   "1",
				ObservedValue:    "3.417",
				Summary:          "Request Count for my-project Cloud Run Revision labels {project_id=my-project, service_name=api, revision_name=api-00042-xav, location=europe-west1, configuration_name=api} with metric labels {response_code=503, response_code_class=5xx, route=} is above the threshold of 1.000 with a value of 3.417.",
				URL:              "https://console.cloud.google.com/monitoring/alerting/alerts/0.nwq2k1x7v3lp?channelType=cloud-pubsub&project=my-project",
				Documentation:    "api is returning 5xx. Runbook: https://example.internal/runbooks/api-5xx",
			},
			wantService:  "api",
			wantRevision: "api-00042-xav",
		},
		{
			fixture: "monitoring-notification-test-payload.json",
			want: events.Incident{
				Version:          "test",
				ID:               "12345",
				State:            events.IncidentOpen,
				PolicyName:       "projects/12345/alertPolicies/12345",
				ConditionName:    "Example condition",
				ResourceType:     "example_resource",
				ResourceLabels:   map[string]string{"example": "label"},
				MetricType:       "test.googleapis.com/metric",
				MetricLabels:     map[string]string{"example": "label"},
				PolicyUserLabels: map[string]string{"example": "label"},
				ThresholdValue:   "0.5",
				ObservedValue:    "1.0",
				Summary:          "Test Incident",
				URL:              "http://www.example.com",
				Documentation:    "Test documentation",
				Test:             true,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			got, err := events.DecodeIncident(fixtureFromTestdata(t, tt.fixture))
			if err != nil {
				t.Fatalf("DecodeIncident: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v,\nwant %+v", got, tt.want)
			}
			if s := got.Service(); s != tt.wantService {
				t.Errorf("got Service() %q, want %q", s, tt.wantService)
			}
			if r := got.Revision(); r != tt.wantRevision {
				t.Errorf("got Revision() %q, want %q", r, tt.wantRevision)
			}
		})
	}
}

// incidentFixtureWith returns the Cloud Run incident fixture with edit applied to its
// decoded JSON (a nil value deletes the key).
func incidentFixtureWith(t *testing.T, edit map[string]any) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(fixtureFromTestdata(t, "monitoring-incident-open-cloudrun.json"), &doc); err != nil {
		t.Fatalf("parse fixture: %v", err)
	}
	for path, value := range edit {
		parent := doc
		keys := strings.Split(path, ".")
		for _, k := range keys[:len(keys)-1] {
			child, ok := parent[k].(map[string]any)
			if !ok {
				t.Fatalf("fixture has no object at %q", k)
			}
			parent = child
		}
		last := keys[len(keys)-1]
		if value == nil {
			delete(parent, last)
		} else {
			parent[last] = value
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("encode fixture: %v", err)
	}
	return b
}

// jsonNull stands for a JSON null in incidentFixtureWith edits (nil deletes the key).
var jsonNull = json.RawMessage("null")

func TestDecodeIncidentVariants(t *testing.T) {
	tests := []struct {
		name  string
		edit  map[string]any
		check func(t *testing.T, got events.Incident)
	}{
		{
			name: "closed upper case with ended_at",
			edit: map[string]any{"incident.state": "CLOSED", "incident.ended_at": 1764151860},
			check: func(t *testing.T, got events.Incident) {
				if got.State != events.IncidentClosed {
					t.Errorf("got state %q, want %q", got.State, events.IncidentClosed)
				}
				if want := time.Unix(1764151860, 0).UTC(); !got.EndedAt.Equal(want) {
					t.Errorf("got ended_at %v, want %v", got.EndedAt, want)
				}
			},
		},
		{
			name: "ended_at and started_at 0 mean unset",
			edit: map[string]any{"incident.ended_at": 0, "incident.started_at": 0},
			check: func(t *testing.T, got events.Incident) {
				if !got.EndedAt.IsZero() || !got.StartedAt.IsZero() {
					t.Errorf("got started %v ended %v, want zero times", got.StartedAt, got.EndedAt)
				}
			},
		},
		{
			name: "whole seconds in exponent notation",
			edit: map[string]any{"incident.started_at": json.RawMessage("1.76415126e9")},
			check: func(t *testing.T, got events.Incident) {
				if want := time.Unix(1764151260, 0).UTC(); !got.StartedAt.Equal(want) {
					t.Errorf("got started_at %v, want %v", got.StartedAt, want)
				}
			},
		},
		{
			name: "documentation as a string",
			edit: map[string]any{"incident.documentation": "see the runbook"},
			check: func(t *testing.T, got events.Incident) {
				if got.Documentation != "see the runbook" {
					t.Errorf("got documentation %q, want %q", got.Documentation, "see the runbook")
				}
			},
		},
		{
			name: "documentation null and prose observed value",
			edit: map[string]any{
				"incident.documentation":  jsonNull,
				"incident.state":          "closed",
				"incident.observed_value": "Incident cancelled because the alert policy condition was deleted or modified while incident was active.",
			},
			check: func(t *testing.T, got events.Incident) {
				if got.Documentation != "" {
					t.Errorf("got documentation %q, want empty", got.Documentation)
				}
				if !strings.HasPrefix(got.ObservedValue, "Incident cancelled") {
					t.Errorf("got observed value %q, want the prose", got.ObservedValue)
				}
			},
		},
		{
			name: "optional parts absent",
			edit: map[string]any{
				"incident.resource":               nil,
				"incident.metric":                 nil,
				"incident.policy_user_labels":     nil,
				"incident.scoping_project_number": nil,
				"incident.condition":              nil,
				"incident.started_at":             nil,
			},
			check: func(t *testing.T, got events.Incident) {
				if got.Service() != "" || got.Revision() != "" || got.ResourceLabels != nil {
					t.Errorf("got service %q revision %q labels %v, want none", got.Service(), got.Revision(), got.ResourceLabels)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := events.DecodeIncident(incidentFixtureWith(t, tt.edit))
			if err != nil {
				t.Fatalf("DecodeIncident: %v", err)
			}
			tt.check(t, got)
		})
	}
}

func TestDecodeIncidentRejects(t *testing.T) {
	tests := []struct {
		name      string
		data      []byte
		wantField string
	}{
		{name: "not JSON", data: []byte(`incident`), wantField: "(body)"},
		{name: "empty", data: nil, wantField: "(body)"},
		{name: "array", data: []byte(`[{"version":"1.2"}]`), wantField: "(body)"},
		{name: "version missing", data: incidentFixtureWith(t, map[string]any{"version": nil}), wantField: "version"},
		{name: "version unknown", data: incidentFixtureWith(t, map[string]any{"version": "1.1"}), wantField: "version"},
		{name: "version a number", data: incidentFixtureWith(t, map[string]any{"version": 1.2}), wantField: "version"},
		{name: "incident missing", data: []byte(`{"version":"1.2"}`), wantField: "incident"},
		{name: "incident null", data: []byte(`{"version":"1.2","incident":null}`), wantField: "incident"},
		{name: "incident a string", data: []byte(`{"version":"1.2","incident":"x"}`), wantField: "incident"},
		{name: "incident_id missing", data: incidentFixtureWith(t, map[string]any{"incident.incident_id": nil}), wantField: "incident.incident_id"},
		{name: "incident_id a number", data: incidentFixtureWith(t, map[string]any{"incident.incident_id": 7}), wantField: "incident.incident_id"},
		{name: "state missing", data: incidentFixtureWith(t, map[string]any{"incident.state": nil}), wantField: "incident.state"},
		{name: "state unknown", data: incidentFixtureWith(t, map[string]any{"incident.state": "acknowledged"}), wantField: "incident.state"},
		{name: "started_at a string", data: incidentFixtureWith(t, map[string]any{"incident.started_at": "1764151260"}), wantField: "incident.started_at"},
		{name: "started_at negative", data: incidentFixtureWith(t, map[string]any{"incident.started_at": -1}), wantField: "incident.started_at"},
		{name: "started_at fractional", data: incidentFixtureWith(t, map[string]any{"incident.started_at": 1764151260.5}), wantField: "incident.started_at"},
		{name: "started_at after year 9999", data: incidentFixtureWith(t, map[string]any{"incident.started_at": json.RawMessage("1e20")}), wantField: "incident.started_at"},
		{name: "ended_at an object", data: incidentFixtureWith(t, map[string]any{"incident.ended_at": map[string]any{}}), wantField: "incident.ended_at"},
		{name: "scoping_project_number a string", data: incidentFixtureWith(t, map[string]any{"incident.scoping_project_number": "123"}), wantField: "incident.scoping_project_number"},
		{name: "documentation a number", data: incidentFixtureWith(t, map[string]any{"incident.documentation": 3}), wantField: "incident.documentation"},
		{name: "documentation content not a string", data: incidentFixtureWith(t, map[string]any{"incident.documentation": map[string]any{"content": true}}), wantField: "incident.documentation.content"},
		{name: "threshold_value a number", data: incidentFixtureWith(t, map[string]any{"incident.threshold_value": 1}), wantField: "incident.threshold_value"},
		{name: "observed_value a number", data: incidentFixtureWith(t, map[string]any{"incident.observed_value": 3.417}), wantField: "incident.observed_value"},
		{name: "resource labels not strings", data: incidentFixtureWith(t, map[string]any{"incident.resource.labels": map[string]any{"service_name": 1}}), wantField: "incident.resource.labels"},
		{name: "metric not an object", data: incidentFixtureWith(t, map[string]any{"incident.metric": "x"}), wantField: "incident.metric"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := events.DecodeIncident(tt.data)
			checkFieldError(t, err, "monitoring incident", tt.wantField)
			if !reflect.DeepEqual(got, events.Incident{}) {
				t.Errorf("got %+v on error, want zero value", got)
			}
		})
	}
}

// encodeIncident encodes inc as a schema 1.2 notification (or "test" when inc.Test).
func encodeIncident(t *testing.T, inc events.Incident) []byte {
	t.Helper()
	unixOrNull := func(at time.Time) any {
		if at.IsZero() {
			return nil
		}
		return at.Unix()
	}
	type labelled struct {
		Type   string            `json:"type"`
		Labels map[string]string `json:"labels"`
	}
	b, err := json.Marshal(map[string]any{
		"version": inc.Version,
		"incident": map[string]any{
			"incident_id":        inc.ID,
			"state":              inc.State,
			"policy_name":        inc.PolicyName,
			"condition_name":     inc.ConditionName,
			"started_at":         unixOrNull(inc.StartedAt),
			"ended_at":           unixOrNull(inc.EndedAt),
			"resource":           labelled{Type: inc.ResourceType, Labels: inc.ResourceLabels},
			"metric":             labelled{Type: inc.MetricType, Labels: inc.MetricLabels},
			"policy_user_labels": inc.PolicyUserLabels,
			"threshold_value":    inc.ThresholdValue,
			"observed_value":     inc.ObservedValue,
			"summary":            inc.Summary,
			"url":                inc.URL,
			"documentation":      map[string]string{"content": inc.Documentation, "mime_type": "text/markdown"},
		},
	})
	if err != nil {
		t.Fatalf("encode incident: %v", err)
	}
	return b
}

func FuzzDecodeIncident(f *testing.F) {
	for _, name := range []string{"monitoring-incident-open-cloudrun.json", "monitoring-notification-test-payload.json"} {
		f.Add(fixtureFromTestdata(f, name))
	}
	f.Add([]byte(`{"version":"1.2","incident":{"incident_id":"x","state":"Closed","started_at":1.5e9,"ended_at":1500000060,"documentation":"d"}}`))
	f.Add([]byte(`{"version":"1.2","incident":{"incident_id":"x","state":"open","started_at":-1}}`))
	f.Add([]byte(`{"version":"1.2","incident":{"incident_id":"x","state":"open","scoping_project_number":"1"}}`))
	f.Add([]byte(`{"version":"1.3","incident":{}}`))
	f.Add([]byte(`{"version":"test","incident":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		inc, err := events.DecodeIncident(data)
		if err != nil {
			checkFieldError(t, err, "monitoring incident", fieldOf(err))
			return
		}
		if inc.State != events.IncidentOpen && inc.State != events.IncidentClosed {
			t.Fatalf("decoded state %q", inc.State)
		}
		if inc.ID == "" {
			t.Fatal("decoded an incident without an id")
		}
		if inc.Version != "1.2" && inc.Version != "test" || inc.Test != (inc.Version == "test") {
			t.Fatalf("decoded version %q with Test %v", inc.Version, inc.Test)
		}
		for _, at := range []time.Time{inc.StartedAt, inc.EndedAt} {
			if !at.IsZero() && (at.Location() != time.UTC || at.Nanosecond() != 0 || at.Unix() <= 0) {
				t.Fatalf("decoded time %v, want zero or whole UTC seconds after 1970", at)
			}
		}
		again, err := events.DecodeIncident(encodeIncident(t, inc))
		if err != nil {
			t.Fatalf("decode re-encoded %+v: %v", inc, err)
		}
		if !reflect.DeepEqual(again, inc) {
			t.Fatalf("got %+v after re-encoding,\nwant %+v", again, inc)
		}
	})
}
