package events

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

// MessagePublishedType is the CloudEvent type Eventarc (and functions-framework's
// conversion of a raw push) gives a Pub/Sub message.
const MessagePublishedType = "google.cloud.pubsub.topic.v1.messagePublished"

const (
	cloudEventSource   = "pubsub cloudevent"
	pushEnvelopeSource = "pubsub push envelope"
	// pubsubTopicSourcePrefix starts the CloudEvent source of a Pub/Sub message:
	// //pubsub.googleapis.com/projects/PROJECT/topics/TOPIC.
	pubsubTopicSourcePrefix = "//pubsub.googleapis.com/projects/"
)

// PubsubMessage is one Pub/Sub message as a subscriber sees it.
type PubsubMessage struct {
	// Data is the message payload, decoded from base64.
	Data []byte
	// Attributes are the message attributes; nil when there are none.
	Attributes map[string]string
	// MessageID is the server-assigned message id.
	MessageID string
	// PublishTime is when Pub/Sub accepted the message.
	PublishTime time.Time
	// OrderingKey is the ordering key, usually empty.
	OrderingKey string
}

// MessagePublished is a Pub/Sub message delivered by Eventarc or by a push subscription
// (google.events.cloud.pubsub.v1.MessagePublishedData), plus the topic it came from.
type MessagePublished struct {
	// Message is the delivered message.
	Message PubsubMessage
	// Subscription is "projects/P/subscriptions/S"; empty when the sender omitted it
	// (functions-framework's conversion of a raw push drops it).
	Subscription string
	// Topic is the short topic id parsed from the CloudEvent source
	// (//pubsub.googleapis.com/projects/P/topics/T); empty when the source has another
	// shape and always empty for a raw push envelope.
	Topic string
}

// wirePubsubMessage is PubsubMessage as JSON: camelCase per the proto JSON mapping, with
// the snake_case duplicates some senders add.
type wirePubsubMessage struct {
	Data             *string           `json:"data"`
	Attributes       map[string]string `json:"attributes"`
	MessageID        string            `json:"messageId"`
	MessageIDSnake   string            `json:"message_id"`
	PublishTime      string            `json:"publishTime"`
	PublishTimeSnake string            `json:"publish_time"`
	OrderingKey      string            `json:"orderingKey"`
	OrderingKeySnake string            `json:"ordering_key"`
}

// wireMessagePublished is MessagePublishedData as JSON (also the push envelope).
type wireMessagePublished struct {
	Message      *wirePubsubMessage `json:"message"`
	Subscription string             `json:"subscription"`
}

// DecodeMessagePublished decodes a Pub/Sub CloudEvent (type MessagePublishedType) as
// delivered by Eventarc. messageId falls back to message_id and then to the event id;
// publishTime falls back to publish_time and then to the event time. Every error is a
// *FieldError naming the field.
func DecodeMessagePublished(e cloudevents.Event) (MessagePublished, error) {
	if got := e.Type(); got != MessagePublishedType {
		return MessagePublished{}, &FieldError{
			Source: cloudEventSource, Field: "type",
			Problem: fmt.Sprintf("got %s, want %q", quoteForError(got), MessagePublishedType),
		}
	}
	m, err := decodeMessagePublished(cloudEventSource, "data", e.Data(), e.ID(), e.Time())
	if err != nil {
		return MessagePublished{}, err
	}
	m.Topic = topicFromSource(e.Source())
	return m, nil
}

// DecodePushEnvelope decodes the JSON body of a Pub/Sub push request (the default wrapped
// format: {"message":{...},"subscription":"..."}). Topic is left empty: the envelope does
// not carry it. Every error is a *FieldError naming the field.
func DecodePushEnvelope(body []byte) (MessagePublished, error) {
	return decodeMessagePublished(pushEnvelopeSource, bodyField, body, "", time.Time{})
}

// decodeMessagePublished decodes MessagePublishedData JSON. Field paths in errors are
// relative to the data; whole names the data itself, for errors about all of it. eventID
// and eventTime are the fallbacks for a missing message id and publish time.
func decodeMessagePublished(source, whole string, data []byte, eventID string, eventTime time.Time) (MessagePublished, error) {
	var w wireMessagePublished
	if len(data) == 0 {
		return MessagePublished{}, &FieldError{Source: source, Field: whole, Problem: "empty; want a JSON object with a message"}
	}
	if err := json.Unmarshal(data, &w); err != nil {
		fe := jsonFieldErrorAt(source, "", err)
		if fe.Field == "" {
			fe.Field = whole
		}
		return MessagePublished{}, fe
	}
	if w.Message == nil {
		return MessagePublished{}, &FieldError{Source: source, Field: "message", Problem: "missing"}
	}
	wm := w.Message
	msg := PubsubMessage{Attributes: wm.Attributes, OrderingKey: wm.OrderingKey}
	if msg.OrderingKey == "" {
		msg.OrderingKey = wm.OrderingKeySnake
	}
	if wm.Data != nil && *wm.Data != "" {
		b, err := base64.StdEncoding.DecodeString(*wm.Data)
		if err != nil {
			return MessagePublished{}, &FieldError{Source: source, Field: "message.data", Problem: fmt.Sprintf("invalid base64: %v", err)}
		}
		msg.Data = b
	}

	switch {
	case wm.MessageID != "":
		msg.MessageID = wm.MessageID
	case wm.MessageIDSnake != "":
		msg.MessageID = wm.MessageIDSnake
	case eventID != "":
		msg.MessageID = eventID
	default:
		return MessagePublished{}, &FieldError{Source: source, Field: "message.messageId", Problem: "missing"}
	}

	field, value := "message.publishTime", wm.PublishTime
	if value == "" && wm.PublishTimeSnake != "" {
		field, value = "message.publish_time", wm.PublishTimeSnake
	}
	switch {
	case value != "":
		t, err := time.Parse(time.RFC3339Nano, value)
		if err != nil {
			return MessagePublished{}, &FieldError{
				Source: source, Field: field,
				Problem: fmt.Sprintf("%s is not an RFC 3339 time", quoteForError(value)),
			}
		}
		if problem := publishTimeProblem(t); problem != "" {
			return MessagePublished{}, &FieldError{Source: source, Field: field, Problem: quoteForError(value) + ": " + problem}
		}
		msg.PublishTime = t.UTC()
	case !eventTime.IsZero():
		if problem := publishTimeProblem(eventTime); problem != "" {
			return MessagePublished{}, &FieldError{Source: source, Field: "time", Problem: problem}
		}
		msg.PublishTime = eventTime.UTC()
	default:
		return MessagePublished{}, &FieldError{Source: source, Field: "message.publishTime", Problem: "missing"}
	}
	return MessagePublished{Message: msg, Subscription: w.Subscription}, nil
}

// publishTimeProblem says what makes t implausible as a publish time, or returns "".
func publishTimeProblem(t time.Time) string {
	if t.Before(time.Unix(0, 0)) {
		return "before 1970"
	}
	if t.UTC().Year() > 9999 {
		return "after year 9999"
	}
	return ""
}

// topicFromSource returns T from //pubsub.googleapis.com/projects/P/topics/T, or "" when
// source has another shape.
func topicFromSource(source string) string {
	rest, ok := strings.CutPrefix(source, pubsubTopicSourcePrefix)
	if !ok {
		return ""
	}
	project, topic, ok := strings.Cut(rest, "/topics/")
	if !ok || project == "" || topic == "" || strings.Contains(project, "/") || strings.Contains(topic, "/") {
		return ""
	}
	return topic
}

// DecodeCommandEvent decodes a coalmine command delivered as a Pub/Sub
// CloudEvent: the envelope, then the command in the message data.
func DecodeCommandEvent(e cloudevents.Event) (Command, PubsubMessage, error) {
	msg, err := DecodeMessagePublished(e)
	if err != nil {
		return Command{}, PubsubMessage{}, err
	}
	c, err := DecodeCommand(msg.Message.Data)
	if err != nil {
		return Command{}, msg.Message, err
	}
	return c, msg.Message, nil
}
