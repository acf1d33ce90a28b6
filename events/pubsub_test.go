package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/ai-square/coalmine/events"
)

const (
	testSubscription = "projects/my-project/subscriptions/eventarc-europe-west1-ops-worker-123456-sub-789"
	testMessageID    = "17352088341234567"
	testTopicSource  = "//pubsub.googleapis.com/projects/my-project/topics/ops-tasks"
)

var testPublishTime = time.Date(2026, 11, 26, 2, 0, 0, 871_000_000, time.UTC)

// wantFixtureMessage is the message carried by the cloudevent-pubsub-* fixtures.
func wantFixtureMessage() events.PubsubMessage {
	return events.PubsubMessage{
		Data:        []byte(`{"task":"backup","scope":"all"}`),
		Attributes:  map[string]string{"task": "backup"},
		MessageID:   testMessageID,
		PublishTime: testPublishTime,
	}
}

// structuredFixtureBody returns the structured-mode CloudEvent fixture without its
// "_comment" key, which is not a valid CloudEvent attribute name.
func structuredFixtureBody(t testing.TB) []byte {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(fixtureFromTestdata(t, "cloudevent-pubsub-structured.json"), &doc); err != nil {
		t.Fatalf("parse fixture: %v", err)
	}
	delete(doc, "_comment")
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("re-encode fixture: %v", err)
	}
	return b
}

// decodeOverHTTP POSTs req to a server that reads the CloudEvent with the CloudEvents SDK
// and decodes it with DecodeMessagePublished, and returns what the server got.
func decodeOverHTTP(t *testing.T, build func(url string) *http.Request) (events.MessagePublished, error) {
	t.Helper()
	type result struct {
		m   events.MessagePublished
		err error
	}
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m, err := events.DecodeMessagePublished(*e)
		results <- result{m, err}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	resp, err := srv.Client().Do(build(srv.URL))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("got HTTP status %d, want %d", resp.StatusCode, http.StatusNoContent)
	}
	r := <-results
	return r.m, r.err
}

func TestDecodeMessagePublishedOverHTTP(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T, url string) *http.Request
		want  events.MessagePublished
	}{
		{
			name: "binary mode",
			build: func(t *testing.T, url string) *http.Request {
				req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(fixtureFromTestdata(t, "cloudevent-pubsub-binary-body.json")))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("ce-id", testMessageID)
				req.Header.Set("ce-specversion", "1.0")
				req.Header.Set("ce-type", events.MessagePublishedType)
				req.Header.Set("ce-source", "//pubsub.googleapis.com/projects/my-project/topics/my-topic")
				req.Header.Set("ce-time", "2026-11-26T02:00:00.871Z")
				return req
			},
			want: events.MessagePublished{Message: wantFixtureMessage(), Subscription: testSubscription, Topic: "my-topic"},
		},
		{
			name: "structured mode",
			build: func(t *testing.T, url string) *http.Request {
				req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(structuredFixtureBody(t)))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/cloudevents+json")
				return req
			},
			want: events.MessagePublished{Message: wantFixtureMessage(), Subscription: testSubscription, Topic: "ops-tasks"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeOverHTTP(t, func(url string) *http.Request { return tt.build(t, url) })
			if err != nil {
				t.Fatalf("DecodeMessagePublished: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// newPubsubEvent builds a messagePublished CloudEvent carrying data.
func newPubsubEvent(data []byte, id, source string, at time.Time) cloudevents.Event {
	e := cloudevents.New()
	e.SetID(id)
	e.SetType(events.MessagePublishedType)
	e.SetSource(source)
	if !at.IsZero() {
		e.SetTime(at)
	}
	e.SetDataContentType("application/json")
	e.DataEncoded = data
	return e
}

func TestDecodeMessagePublishedFallbacks(t *testing.T) {
	eventTime := time.Date(2026, 1, 2, 12, 34, 56, 789_000_000, time.UTC)
	tests := []struct {
		name     string
		data     string
		eventID  string
		wantID   string
		wantTime time.Time
	}{
		{
			name:     "camelCase wins over snake_case and the event",
			data:     `{"message":{"messageId":"camel","message_id":"snake","publishTime":"2026-11-26T02:00:00.871Z","publish_time":"2020-01-01T00:00:00Z"}}`,
			eventID:  "event",
			wantID:   "camel",
			wantTime: testPublishTime,
		},
		{
			name:     "snake_case when camelCase is missing",
			data:     `{"message":{"message_id":"snake","publish_time":"2026-11-26T02:00:00.871Z"}}`,
			eventID:  "event",
			wantID:   "snake",
			wantTime: testPublishTime,
		},
		{
			name:     "event id and time when both spellings are missing",
			data:     `{"message":{"data":"aGVsbG8="}}`,
			eventID:  "event",
			wantID:   "event",
			wantTime: eventTime,
		},
		{
			name:     "offset publish time is normalised to UTC",
			data:     `{"message":{"messageId":"m","publishTime":"2026-11-26T03:00:00.871+01:00"}}`,
			eventID:  "event",
			wantID:   "m",
			wantTime: testPublishTime,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := events.DecodeMessagePublished(newPubsubEvent([]byte(tt.data), tt.eventID, testTopicSource, eventTime))
			if err != nil {
				t.Fatalf("DecodeMessagePublished: %v", err)
			}
			if got.Message.MessageID != tt.wantID {
				t.Errorf("got message id %q, want %q", got.Message.MessageID, tt.wantID)
			}
			if got.Message.PublishTime != tt.wantTime {
				t.Errorf("got publish time %v, want %v", got.Message.PublishTime, tt.wantTime)
			}
		})
	}
}

func TestDecodeMessagePublishedTopic(t *testing.T) {
	data := []byte(`{"message":{"messageId":"1","publishTime":"2026-11-26T02:00:00Z"}}`)
	tests := []struct {
		source string
		want   string
	}{
		{source: testTopicSource, want: "ops-tasks"},
		{source: "//pubsub.googleapis.com/projects/my-project/topics/gcr", want: "gcr"},
		{source: "//pubsub.googleapis.com/projects/my-project/topics/", want: ""},
		{source: "//pubsub.googleapis.com/projects//topics/t", want: ""},
		{source: "//pubsub.googleapis.com/projects/p/topics/t/extra", want: ""},
		{source: "//pubsub.googleapis.com/projects/p/subscriptions/s", want: ""},
		{source: "//storage.googleapis.com/projects/p/topics/t", want: ""},
		{source: "https://example.com/", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			got, err := events.DecodeMessagePublished(newPubsubEvent(data, "1", tt.source, time.Time{}))
			if err != nil {
				t.Fatalf("DecodeMessagePublished: %v", err)
			}
			if got.Topic != tt.want {
				t.Errorf("got topic %q, want %q", got.Topic, tt.want)
			}
		})
	}
}

func TestDecodeMessagePublishedRejects(t *testing.T) {
	const source = "pubsub cloudevent"
	valid := `{"messageId":"1","publishTime":"2026-11-26T02:00:00Z"}`
	tests := []struct {
		name      string
		event     func() cloudevents.Event
		wantField string
	}{
		{
			name: "wrong type",
			event: func() cloudevents.Event {
				e := newPubsubEvent([]byte(`{"message":`+valid+`}`), "1", testTopicSource, time.Time{})
				e.SetType("google.cloud.storage.object.v1.finalized")
				return e
			},
			wantField: "type",
		},
		{name: "no data", event: eventWithData(``, "1"), wantField: "data"},
		{name: "data not JSON", event: eventWithData(`message`, "1"), wantField: "data"},
		{name: "data an array", event: eventWithData(`[]`, "1"), wantField: "data"},
		{name: "message missing", event: eventWithData(`{"subscription":"s"}`, "1"), wantField: "message"},
		{name: "message null", event: eventWithData(`{"message":null}`, "1"), wantField: "message"},
		{name: "message a string", event: eventWithData(`{"message":"x"}`, "1"), wantField: "message"},
		{name: "data not base64", event: eventWithData(`{"message":{"data":"!!!","messageId":"1","publishTime":"2026-11-26T02:00:00Z"}}`, "1"), wantField: "message.data"},
		{name: "data not a string", event: eventWithData(`{"message":{"data":[1],"messageId":"1","publishTime":"2026-11-26T02:00:00Z"}}`, "1"), wantField: "message.data"},
		{name: "attribute not a string", event: eventWithData(`{"message":{"attributes":{"k":1},"messageId":"1","publishTime":"2026-11-26T02:00:00Z"}}`, "1"), wantField: "message.attributes"},
		{name: "message id missing everywhere", event: eventWithData(`{"message":{"publishTime":"2026-11-26T02:00:00Z"}}`, ""), wantField: "message.messageId"},
		{name: "message id not a string", event: eventWithData(`{"message":{"messageId":1,"publishTime":"2026-11-26T02:00:00Z"}}`, "1"), wantField: "message.messageId"},
		{name: "publish time missing everywhere", event: eventWithData(`{"message":{"messageId":"1"}}`, "1"), wantField: "message.publishTime"},
		{name: "publish time not RFC 3339", event: eventWithData(`{"message":{"messageId":"1","publishTime":"26/11/2026"}}`, "1"), wantField: "message.publishTime"},
		{name: "publish time a number", event: eventWithData(`{"message":{"messageId":"1","publishTime":1764151260}}`, "1"), wantField: "message.publishTime"},
		{name: "publish time before 1970", event: eventWithData(`{"message":{"messageId":"1","publishTime":"1969-12-31T23:59:59Z"}}`, "1"), wantField: "message.publishTime"},
		{name: "snake publish time invalid", event: eventWithData(`{"message":{"messageId":"1","publish_time":"yesterday"}}`, "1"), wantField: "message.publish_time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := events.DecodeMessagePublished(tt.event())
			checkFieldError(t, err, source, tt.wantField)
			if !reflect.DeepEqual(got, events.MessagePublished{}) {
				t.Errorf("got %+v on error, want zero value", got)
			}
		})
	}
}

// eventWithData returns a builder of a messagePublished event with the given data and id
// and no event time.
func eventWithData(data, id string) func() cloudevents.Event {
	return func() cloudevents.Event {
		return newPubsubEvent([]byte(data), id, testTopicSource, time.Time{})
	}
}

func TestDecodePushEnvelopeFixtures(t *testing.T) {
	tests := []struct {
		fixture string
		want    events.MessagePublished
	}{
		{
			fixture: "cloudevent-pubsub-binary-body.json",
			want:    events.MessagePublished{Message: wantFixtureMessage(), Subscription: testSubscription},
		},
		{
			fixture: "scheduler-pubsub-message-received.json",
			want:    events.MessagePublished{Message: wantFixtureMessage(), Subscription: "projects/my-project/subscriptions/ops-tasks-worker"},
		},
		{
			fixture: "coalmine-tick-push.json",
			want: events.MessagePublished{
				Message: events.PubsubMessage{
					Data:        []byte(`{"job":"coalmine-tick","version":1}`),
					MessageID:   "17352088341239999",
					PublishTime: time.Date(2026, 11, 26, 10, 5, 0, 412_000_000, time.UTC),
				},
				Subscription: "projects/my-project/subscriptions/eventarc-europe-west1-coalmine-verify-123456-sub-001",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			got, err := events.DecodePushEnvelope(fixtureFromTestdata(t, tt.fixture))
			if err != nil {
				t.Fatalf("DecodePushEnvelope: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodePushEnvelopeRejects(t *testing.T) {
	const source = "pubsub push envelope"
	tests := []struct {
		name      string
		body      string
		wantField string
	}{
		{name: "empty body", body: ``, wantField: "(body)"},
		{name: "not JSON", body: `<html>`, wantField: "(body)"},
		{name: "message missing", body: `{}`, wantField: "message"},
		{name: "subscription not a string", body: `{"message":{"messageId":"1","publishTime":"2026-11-26T02:00:00Z"},"subscription":7}`, wantField: "subscription"},
		{name: "no message id to fall back on", body: `{"message":{"publishTime":"2026-11-26T02:00:00Z"}}`, wantField: "message.messageId"},
		{name: "no publish time to fall back on", body: `{"message":{"messageId":"1"}}`, wantField: "message.publishTime"},
		{name: "publish time without zone", body: `{"message":{"messageId":"1","publishTime":"2026-11-26T02:00:00"}}`, wantField: "message.publishTime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := events.DecodePushEnvelope([]byte(tt.body))
			checkFieldError(t, err, source, tt.wantField)
		})
	}
}

// encodePushEnvelope encodes m the way Pub/Sub's push envelope carries it.
func encodePushEnvelope(t *testing.T, m events.MessagePublished) []byte {
	t.Helper()
	type wireMessage struct {
		Data        []byte            `json:"data,omitempty"`
		Attributes  map[string]string `json:"attributes,omitempty"`
		MessageID   string            `json:"messageId"`
		PublishTime string            `json:"publishTime"`
		OrderingKey string            `json:"orderingKey,omitempty"`
	}
	b, err := json.Marshal(struct {
		Message      wireMessage `json:"message"`
		Subscription string      `json:"subscription,omitempty"`
	}{
		Message: wireMessage{
			Data:        m.Message.Data,
			Attributes:  m.Message.Attributes,
			MessageID:   m.Message.MessageID,
			PublishTime: m.Message.PublishTime.Format(time.RFC3339Nano),
			OrderingKey: m.Message.OrderingKey,
		},
		Subscription: m.Subscription,
	})
	if err != nil {
		t.Fatalf("encode push envelope: %v", err)
	}
	return b
}

// checkMessagePublished checks the invariants of a successfully decoded message and that
// it survives re-encoding as a push envelope.
func checkMessagePublished(t *testing.T, m events.MessagePublished) {
	t.Helper()
	if m.Message.MessageID == "" {
		t.Fatalf("decoded %+v without a message id", m)
	}
	if m.Message.PublishTime.IsZero() || m.Message.PublishTime.Location() != time.UTC {
		t.Fatalf("decoded publish time %v, want a non-zero UTC time", m.Message.PublishTime)
	}
	if m.Message.Data != nil && len(m.Message.Data) == 0 {
		t.Fatalf("decoded empty non-nil data")
	}
	again, err := events.DecodePushEnvelope(encodePushEnvelope(t, m))
	if err != nil {
		t.Fatalf("decode re-encoded %+v: %v", m, err)
	}
	want := m
	want.Topic = ""
	if len(want.Message.Attributes) == 0 {
		want.Message.Attributes = nil
	}
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("got %+v after re-encoding, want %+v", again, want)
	}
}

func FuzzDecodeMessagePublished(f *testing.F) {
	var structured struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(fixtureFromTestdata(f, "cloudevent-pubsub-structured.json"), &structured); err != nil {
		f.Fatalf("parse fixture: %v", err)
	}
	f.Add([]byte(structured.Data), testTopicSource, true)
	f.Add(fixtureFromTestdata(f, "cloudevent-pubsub-binary-body.json"), "//pubsub.googleapis.com/projects/my-project/topics/my-topic", false)
	f.Add(fixtureFromTestdata(f, "scheduler-pubsub-message-received.json"), "//pubsub.googleapis.com/projects/p/topics/coalmine-ticks", true)
	f.Add(fixtureFromTestdata(f, "coalmine-tick-push.json"), "//pubsub.googleapis.com/projects/p/topics/", false)
	f.Add([]byte(`{"message":{"data":"aGVsbG8="}}`), "//pubsub.googleapis.com/projects//topics/t", true)
	f.Add([]byte(`{"message":{"data":"!!","messageId":"1"}}`), "", false)
	f.Add([]byte(`{"message":{"publish_time":"2026-11-26T02:00:00+14:00"}}`), "x", false)
	f.Add([]byte(`{"message":null}`), "//pubsub.googleapis.com/projects/p/topics/t/u", true)
	f.Fuzz(func(t *testing.T, data []byte, source string, withTime bool) {
		var at time.Time
		if withTime {
			at = time.Date(2026, 1, 2, 12, 34, 56, 789_000_000, time.UTC)
		}
		m, err := events.DecodeMessagePublished(newPubsubEvent(data, "event-id", source, at))
		if err != nil {
			checkFieldError(t, err, "pubsub cloudevent", fieldOf(err))
			return
		}
		if m.Topic != "" {
			project, ok := strings.CutPrefix(source, "//pubsub.googleapis.com/projects/")
			project, ok2 := strings.CutSuffix(project, "/topics/"+m.Topic)
			if !ok || !ok2 || project == "" || strings.Contains(project, "/") || strings.Contains(m.Topic, "/") {
				t.Fatalf("topic %q parsed from source %q", m.Topic, source)
			}
		}
		checkMessagePublished(t, m)
	})
}

func FuzzDecodePushEnvelope(f *testing.F) {
	for _, name := range []string{"cloudevent-pubsub-binary-body.json", "scheduler-pubsub-message-received.json", "coalmine-tick-push.json"} {
		f.Add(fixtureFromTestdata(f, name))
	}
	f.Add([]byte(`{"message":{"messageId":"1","publishTime":"2026-11-26T02:00:00Z","orderingKey":"k","attributes":{}}}`))
	f.Add([]byte(`{"message":{"message_id":"1","publish_time":"2026-11-26T02:00:00-01:30","ordering_key":"k"}}`))
	f.Add([]byte(`{"message":{"messageId":"1"}}`))
	f.Add([]byte(`{"message":{"data":"aGVsbG8","messageId":"1","publishTime":"2026-11-26T02:00:00Z"}}`))
	f.Add([]byte(`{"message":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := events.DecodePushEnvelope(body)
		if err != nil {
			checkFieldError(t, err, "pubsub push envelope", fieldOf(err))
			return
		}
		if m.Topic != "" {
			t.Fatalf("got topic %q from a push envelope, want none", m.Topic)
		}
		checkMessagePublished(t, m)
	})
}

func TestDecodeCommandEvent(t *testing.T) {
	c := events.Command{Version: 1, Type: events.CommandPause, Service: "ai-square", Rollout: "ai-square-6ec128e26cd5",
		Generation: 3, Step: events.StepPause, Time: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
	data, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"message": map[string]any{"data": data, "messageId": "7", "publishTime": "2026-11-24T10:00:00Z"}})
	got, msg, err := events.DecodeCommandEvent(newPubsubEvent(body, "7", "//pubsub.googleapis.com/projects/p/topics/coalmine-shift", time.Now()))
	if err != nil || got.Rollout != c.Rollout || msg.MessageID != "7" {
		t.Fatalf("DecodeCommandEvent = %+v, %+v, %v", got, msg, err)
	}
	bad, _ := json.Marshal(map[string]any{"message": map[string]any{"data": []byte("{}"), "messageId": "8", "publishTime": "2026-11-24T10:00:00Z"}})
	if _, _, err := events.DecodeCommandEvent(newPubsubEvent(bad, "8", "//pubsub.googleapis.com/projects/p/topics/coalmine-shift", time.Now())); !errors.Is(err, events.ErrMalformed) {
		t.Errorf("DecodeCommandEvent of an empty command = %v, want ErrMalformed", err)
	}
}
