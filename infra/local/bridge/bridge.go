// Package bridge is the local stand-in for Eventarc: for each trigger it
// pulls the trigger's Pub/Sub subscription and POSTs every message to the
// function as a binary-mode CloudEvent, exactly as an Eventarc push
// subscription does. It acks on 2xx, otherwise retries with exponential
// backoff while holding the message, and dead-letters it after MaxAttempts
// deliveries with the attributes Pub/Sub adds. pstest has neither push
// delivery, nor retry backoff, nor correct dead-lettering, so the bridge owns
// all three (the subscriptions it reads carry no dead-letter policy).
//
// Chaos options duplicate and delay deliveries, to exercise the at-least-once,
// unordered delivery functions get in production.
package bridge

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/ai-square/coalmine/events"
)

// Local retry backoff defaults. Production trigger subscriptions use
// events.MinBackoff and events.MaxBackoff (10 s to 600 s), which would make
// local runs and tests crawl.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// maxOutstanding is how many messages one route delivers concurrently, like
// a push subscription that does not wait for one response before sending the
// next message.
const maxOutstanding = 16

// Dead-letter attributes Pub/Sub adds to a message it forwards to a
// dead-letter topic.
const (
	AttrDeadLetterDeliveryCount       = "CloudPubSubDeadLetterSourceDeliveryCount"
	AttrDeadLetterSubscription        = "CloudPubSubDeadLetterSourceSubscription"
	AttrDeadLetterSubscriptionProject = "CloudPubSubDeadLetterSourceSubscriptionProject"
	AttrDeadLetterTopicPublishTime    = "CloudPubSubDeadLetterSourceTopicPublishTime"
)

// deadLetterTimeLayout is how Pub/Sub writes
// CloudPubSubDeadLetterSourceTopicPublishTime (2022-08-12T15:56:29.732+00:00).
const deadLetterTimeLayout = "2006-01-02T15:04:05.000-07:00"

// Route connects a subscription to the function endpoint that consumes it.
type Route struct {
	// Subscription is the subscription ID (a full
	// projects/P/subscriptions/S name is accepted too).
	Subscription string
	// Topic is the topic ID, for the CloudEvent source. Empty means the
	// subscription's topic, looked up by Start.
	Topic string
	// URL is the function endpoint the bridge POSTs to.
	URL string
}

// RoutesFor returns one route per trigger, to baseURL + "/" + the trigger's
// function: the paths functions-framework serves every function on when
// FUNCTION_TARGET is unset.
func RoutesFor(baseURL string, triggers []events.Trigger) []Route {
	base := strings.TrimRight(baseURL, "/")
	routes := make([]Route, 0, len(triggers))
	for _, t := range triggers {
		routes = append(routes, Route{Subscription: t.Subscription, Topic: t.Topic, URL: base + "/" + t.Function})
	}
	return routes
}

// Chaos perturbs deliveries the way production may: duplicates and
// reordering. The zero value disables it.
type Chaos struct {
	// Seed seeds the random source of the chaos decisions (when Start or
	// SetChaos is called); the same seed gives the same sequence of
	// decisions, though concurrent messages may draw them in any order.
	Seed int64
	// Duplicate is the probability, per delivery attempt, that the message
	// is POSTed twice, concurrently. The attempt succeeds if either POST
	// does.
	Duplicate float64
	// MaxDelay is the upper bound of a random delay before each POST, which
	// reorders concurrent deliveries.
	MaxDelay time.Duration
}

// Options configures a Bridge.
type Options struct {
	// Client is the Pub/Sub client to pull and publish with. Required.
	Client *pubsub.Client
	// Project is the project of the subscriptions and topics; empty means
	// the client's project.
	Project string
	// Routes are the subscriptions to deliver and where to.
	Routes []Route
	// MaxAttempts is how many deliveries a message gets before it is
	// dead-lettered; 0 means events.MaxDeliveryAttempts.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts (MinBackoff, doubling, capped at MaxBackoff); 0 means
	// DefaultMinBackoff and DefaultMaxBackoff. Production uses
	// events.MinBackoff and events.MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// DeadLetterTopic is the topic ID dead letters are published to; empty
	// means events.TopicDeadLetter.
	DeadLetterTopic string
	// HTTPClient sends the POSTs; nil means a client with a pooled
	// transport. Its own Timeout, if any, also applies.
	HTTPClient *http.Client
	// Timeout bounds each POST; 0 means events.AckDeadline, which is the
	// push timeout in production.
	Timeout time.Duration
	// Logger receives one record per delivery; nil means slog.Default().
	Logger *slog.Logger
	// Chaos is the initial chaos setting; see Bridge.SetChaos.
	Chaos Chaos
}

// Delivery describes one POST of a message to a function.
type Delivery struct {
	// Subscription is the subscription ID the message came from.
	Subscription string
	// MessageID is the Pub/Sub message ID (also the CloudEvent id).
	MessageID string
	// Attempt is the delivery attempt, from 1 (deliveryAttempt in the body).
	Attempt int
	// Status is the HTTP status code; 0 when no response arrived.
	Status int
	// Err is nil when the function acknowledged the message (a 2xx status);
	// otherwise it describes the status, the timeout or the connection error.
	Err error
	// Duplicate is true for the extra POST Chaos.Duplicate adds.
	Duplicate bool
	// Duration is how long the POST took.
	Duration time.Duration
}

// Counts are delivery counters.
type Counts struct {
	// Deliveries counts POSTs, duplicates included.
	Deliveries int
	// Duplicates counts the extra POSTs Chaos.Duplicate added (included in
	// Deliveries).
	Duplicates int
	// Acks counts messages acked after a successful delivery.
	Acks int
	// Failures counts POSTs that did not succeed (non-2xx, timeout,
	// connection error, or cut short by Close).
	Failures int
	// DeadLetters counts messages published to the dead-letter topic (and
	// then acked).
	DeadLetters int
	// Nacks counts messages handed back to Pub/Sub undelivered: in flight
	// while the bridge closed, or the dead-letter publish failed.
	Nacks int
}

// Stats are the bridge's counters, in total (the embedded Counts) and per
// subscription ID.
type Stats struct {
	Counts
	Subscriptions map[string]Counts
}

// Bridge delivers Pub/Sub messages to functions. Create one with Start.
type Bridge struct {
	client      *pubsub.Client
	project     string
	maxAttempts int
	minBackoff  time.Duration
	maxBackoff  time.Duration
	timeout     time.Duration
	httpClient  *http.Client
	logger      *slog.Logger
	deadLetter  *pubsub.Publisher
	routes      []*route

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closing   atomic.Bool
	closeOnce sync.Once

	chaosMu sync.Mutex
	chaos   Chaos
	rng     *rand.Rand

	mu    sync.Mutex
	stats map[string]*Counts
	hooks []func(Delivery)
}

// route is a Route resolved against the project.
type route struct {
	Route
	id         string // subscription ID
	fullName   string // projects/P/subscriptions/S
	source     string // CloudEvent source
	subscriber *pubsub.Subscriber
}

// Start checks that every route's subscription and the dead-letter topic
// exist, then delivers each route's messages until Close. ctx bounds those
// checks only (its values are kept for the deliveries).
func Start(ctx context.Context, o Options) (*Bridge, error) {
	if o.Client == nil {
		return nil, errors.New("bridge: Options.Client is required")
	}
	b := &Bridge{
		client:      o.Client,
		project:     o.Project,
		maxAttempts: o.MaxAttempts,
		minBackoff:  o.MinBackoff,
		maxBackoff:  o.MaxBackoff,
		timeout:     o.Timeout,
		httpClient:  o.HTTPClient,
		logger:      o.Logger,
		stats:       map[string]*Counts{},
	}
	if b.project == "" {
		b.project = o.Client.Project()
	}
	if b.maxAttempts <= 0 {
		b.maxAttempts = events.MaxDeliveryAttempts
	}
	if b.minBackoff <= 0 {
		b.minBackoff = DefaultMinBackoff
	}
	if b.maxBackoff <= 0 {
		b.maxBackoff = DefaultMaxBackoff
	}
	b.maxBackoff = max(b.maxBackoff, b.minBackoff)
	if b.timeout <= 0 {
		b.timeout = events.AckDeadline
	}
	if b.httpClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = maxOutstanding * 2
		b.httpClient = &http.Client{Transport: t}
	}
	if b.logger == nil {
		b.logger = slog.Default()
	}
	b.setChaos(o.Chaos)

	dlt := o.DeadLetterTopic
	if dlt == "" {
		dlt = events.TopicDeadLetter
	}
	dltName := dlt
	if !strings.HasPrefix(dlt, "projects/") {
		dltName = "projects/" + b.project + "/topics/" + dlt
	}
	if _, err := o.Client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: dltName}); err != nil {
		return nil, fmt.Errorf("bridge: dead-letter topic %s: %w", dltName, err)
	}

	seen := map[string]bool{}
	for _, r := range o.Routes {
		rt, err := b.resolve(ctx, r)
		if err != nil {
			return nil, err
		}
		if seen[rt.fullName] {
			return nil, fmt.Errorf("bridge: subscription %s is routed twice", rt.fullName)
		}
		seen[rt.fullName] = true
		b.routes = append(b.routes, rt)
		b.stats[rt.id] = &Counts{}
	}

	b.deadLetter = o.Client.Publisher(dltName)
	maxHold := time.Duration(b.maxAttempts)*(b.timeout+b.maxBackoff) + 10*time.Minute
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel = cancel
	for _, r := range b.routes {
		r.subscriber = o.Client.Subscriber(r.fullName)
		r.subscriber.ReceiveSettings.MaxOutstandingMessages = maxOutstanding
		r.subscriber.ReceiveSettings.MaxExtension = maxHold
		b.wg.Add(1)
		go b.run(runCtx, r)
	}
	b.logger.Info("bridge started", "routes", len(b.routes), "project", b.project,
		"max_attempts", b.maxAttempts, "min_backoff", b.minBackoff, "max_backoff", b.maxBackoff)
	return b, nil
}

func (b *Bridge) resolve(ctx context.Context, r Route) (*route, error) {
	if r.Subscription == "" {
		return nil, errors.New("bridge: route without a subscription")
	}
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bridge: route %s: URL %q is not an absolute http(s) URL", r.Subscription, r.URL)
	}
	id := lastSegment(r.Subscription)
	full := "projects/" + b.project + "/subscriptions/" + id
	if strings.HasPrefix(r.Subscription, "projects/") {
		full = r.Subscription
	}
	sub, err := b.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: full})
	if err != nil {
		return nil, fmt.Errorf("bridge: subscription %s: %w", full, err)
	}
	if r.Topic == "" {
		r.Topic = lastSegment(sub.GetTopic())
	}
	return &route{
		Route:    r,
		id:       id,
		fullName: full,
		source:   "//pubsub.googleapis.com/projects/" + b.project + "/topics/" + lastSegment(r.Topic),
	}, nil
}

func lastSegment(name string) string {
	return name[strings.LastIndexByte(name, '/')+1:]
}

// SetChaos replaces the chaos setting and reseeds its random source;
// deliveries that have not started their POST yet use the new setting.
func (b *Bridge) SetChaos(c Chaos) {
	b.setChaos(c)
	b.logger.Info("chaos set", "seed", c.Seed, "duplicate", c.Duplicate, "max_delay", c.MaxDelay)
}

func (b *Bridge) setChaos(c Chaos) {
	b.chaosMu.Lock()
	defer b.chaosMu.Unlock()
	b.chaos = c
	b.rng = rand.New(rand.NewPCG(uint64(c.Seed), 0x636f616c6d696e65))
}

// plan draws the chaos decisions of one delivery attempt: one delay per
// POST, two POSTs when duplicating.
func (b *Bridge) plan() []time.Duration {
	b.chaosMu.Lock()
	defer b.chaosMu.Unlock()
	n := 1
	if b.chaos.Duplicate > 0 && b.rng.Float64() < b.chaos.Duplicate {
		n = 2
	}
	delays := make([]time.Duration, n)
	if b.chaos.MaxDelay > 0 {
		for i := range delays {
			delays[i] = time.Duration(b.rng.Int64N(int64(b.chaos.MaxDelay)))
		}
	}
	return delays
}

// OnDelivery registers f to be called after every POST (from the delivering
// goroutine, so f must be quick and safe for concurrent use).
func (b *Bridge) OnDelivery(f func(Delivery)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hooks = append(b.hooks, f)
}

// Stats returns a snapshot of the counters.
func (b *Bridge) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Stats{Subscriptions: make(map[string]Counts, len(b.stats))}
	for id, c := range b.stats {
		s.Subscriptions[id] = *c
		s.Deliveries += c.Deliveries
		s.Duplicates += c.Duplicates
		s.Acks += c.Acks
		s.Failures += c.Failures
		s.DeadLetters += c.DeadLetters
		s.Nacks += c.Nacks
	}
	return s
}

func (b *Bridge) count(r *route, f func(*Counts)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b.stats[r.id])
}

// Close stops pulling, nacks the messages in flight (without dead-lettering
// them) and waits for the deliveries to return. It is idempotent.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() {
		b.closing.Store(true)
		b.cancel()
		b.wg.Wait()
		b.deadLetter.Stop()
		b.logger.Info("bridge closed")
	})
	return nil
}

// run receives r's messages until ctx is done, restarting Receive after
// errors.
func (b *Bridge) run(ctx context.Context, r *route) {
	defer b.wg.Done()
	for {
		err := r.subscriber.Receive(ctx, func(mctx context.Context, m *pubsub.Message) {
			b.handle(mctx, r, m)
		})
		if ctx.Err() != nil {
			return
		}
		b.logger.Error("receive stopped; restarting", "subscription", r.id, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// handle delivers m until it succeeds, is dead-lettered, or the bridge
// closes.
func (b *Bridge) handle(ctx context.Context, r *route, m *pubsub.Message) {
	for attempt := 1; ; attempt++ {
		if b.deliver(ctx, r, m, attempt) {
			m.Ack()
			b.count(r, func(c *Counts) { c.Acks++ })
			return
		}
		if ctx.Err() != nil || b.closing.Load() {
			b.nack(r, m, attempt, "bridge closing")
			return
		}
		if attempt >= b.maxAttempts {
			b.deadLetterMessage(ctx, r, m, attempt)
			return
		}
		select {
		case <-ctx.Done():
			b.nack(r, m, attempt, "bridge closing")
			return
		case <-time.After(b.backoff(attempt)):
		}
	}
}

// backoff is the wait after the attempt-th failed delivery.
func (b *Bridge) backoff(attempt int) time.Duration {
	d := b.minBackoff
	for i := 1; i < attempt && d < b.maxBackoff; i++ {
		d *= 2
	}
	return min(d, b.maxBackoff)
}

func (b *Bridge) nack(r *route, m *pubsub.Message, attempt int, why string) {
	m.Nack()
	b.count(r, func(c *Counts) { c.Nacks++ })
	b.logger.Info("nacked", "subscription", r.id, "message_id", m.ID, "attempt", attempt, "reason", why)
}

// deliver runs one delivery attempt: one POST, or two concurrent ones when
// chaos duplicates it. It reports whether any POST succeeded.
func (b *Bridge) deliver(ctx context.Context, r *route, m *pubsub.Message, attempt int) bool {
	delays := b.plan()
	body, err := envelope(r, m, attempt)
	if err != nil { // cannot happen: the envelope is plain data
		b.logger.Error("encoding delivery", "subscription", r.id, "message_id", m.ID, "error", err)
		return false
	}
	var ok atomic.Bool
	var wg sync.WaitGroup
	for i, delay := range delays {
		wg.Go(func() {
			if delay > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(delay):
				}
			}
			if b.post(ctx, r, m, attempt, body, i > 0) {
				ok.Store(true)
			}
		})
	}
	wg.Wait()
	return ok.Load()
}

// post POSTs one delivery and records it.
func (b *Bridge) post(ctx context.Context, r *route, m *pubsub.Message, attempt int, body []byte, duplicate bool) bool {
	start := time.Now()
	d := Delivery{Subscription: r.id, MessageID: m.ID, Attempt: attempt, Duplicate: duplicate}
	d.Status, d.Err = b.send(ctx, r, m, body)
	d.Duration = time.Since(start)
	b.record(r, d)
	return d.Err == nil
}

// send makes the HTTP request and classifies the response as Pub/Sub push
// does: 102, 200, 201, 202 and 204 acknowledge, anything else is a failure.
func (b *Bridge) send(ctx context.Context, r *route, m *pubsub.Message, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("Ce-Id", m.ID)
	h.Set("Ce-Source", r.source)
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Type", events.MessagePublishedType)
	h.Set("Ce-Time", formatTimestamp(m.PublishTime))
	h.Set("User-Agent", "coalmine-bridge")
	resp, err := b.httpClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return 0, fmt.Errorf("no response within %s: %w", b.timeout, context.DeadlineExceeded)
		}
		return 0, err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusProcessing, http.StatusOK, http.StatusCreated, http.StatusAccepted, http.StatusNoContent:
		return resp.StatusCode, nil
	}
	msg := strings.TrimSpace(string(snippet))
	if msg == "" {
		return resp.StatusCode, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return resp.StatusCode, fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
}

// record counts, logs and reports a delivery.
func (b *Bridge) record(r *route, d Delivery) {
	b.mu.Lock()
	c := b.stats[r.id]
	c.Deliveries++
	if d.Duplicate {
		c.Duplicates++
	}
	if d.Err != nil {
		c.Failures++
	}
	hooks := b.hooks
	b.mu.Unlock()

	attrs := []any{
		"subscription", d.Subscription, "message_id", d.MessageID, "attempt", d.Attempt,
		"status", d.Status, "duration", d.Duration.Round(time.Microsecond), "url", r.URL,
	}
	if d.Duplicate {
		attrs = append(attrs, "duplicate", true)
	}
	if d.Err != nil {
		b.logger.Warn("delivery failed", append(attrs, "error", d.Err.Error())...)
	} else {
		b.logger.Info("delivered", attrs...)
	}
	for _, f := range hooks {
		f(d)
	}
}

// deadLetterMessage publishes m to the dead-letter topic with Pub/Sub's
// dead-letter attributes and acks it; if publishing fails, m is nacked so a
// later delivery retries.
func (b *Bridge) deadLetterMessage(ctx context.Context, r *route, m *pubsub.Message, attempts int) {
	attrs := make(map[string]string, len(m.Attributes)+4)
	for k, v := range m.Attributes {
		attrs[k] = v
	}
	attrs[AttrDeadLetterDeliveryCount] = strconv.Itoa(attempts)
	attrs[AttrDeadLetterSubscription] = r.id
	attrs[AttrDeadLetterSubscriptionProject] = b.project
	attrs[AttrDeadLetterTopicPublishTime] = m.PublishTime.UTC().Format(deadLetterTimeLayout)
	id, err := b.deadLetter.Publish(ctx, &pubsub.Message{Data: m.Data, Attributes: attrs}).Get(ctx)
	if err != nil {
		b.logger.Error("dead-lettering failed", "subscription", r.id, "message_id", m.ID, "attempts", attempts, "error", err)
		b.nack(r, m, attempts, "dead-letter publish failed")
		return
	}
	m.Ack()
	b.count(r, func(c *Counts) { c.DeadLetters++ })
	b.logger.Warn("dead-lettered", "subscription", r.id, "message_id", m.ID, "attempts", attempts,
		"dead_letter_message_id", id)
}

// wireMessage is google.pubsub.v1.PubsubMessage in its JSON mapping.
type wireMessage struct {
	Data        string            `json:"data,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	MessageID   string            `json:"messageId"`
	PublishTime string            `json:"publishTime"`
	OrderingKey string            `json:"orderingKey,omitempty"`
}

// wireEnvelope is the push body: MessagePublishedData plus deliveryAttempt.
type wireEnvelope struct {
	Message         wireMessage `json:"message"`
	Subscription    string      `json:"subscription"`
	DeliveryAttempt int         `json:"deliveryAttempt"`
}

func envelope(r *route, m *pubsub.Message, attempt int) ([]byte, error) {
	return json.Marshal(wireEnvelope{
		Message: wireMessage{
			Data:        base64.StdEncoding.EncodeToString(m.Data),
			Attributes:  m.Attributes,
			MessageID:   m.ID,
			PublishTime: formatTimestamp(m.PublishTime),
			OrderingKey: m.OrderingKey,
		},
		Subscription:    r.fullName,
		DeliveryAttempt: attempt,
	})
}

// formatTimestamp formats t as the protobuf JSON mapping does: RFC 3339 in
// UTC with 0, 3, 6 or 9 fractional digits.
func formatTimestamp(t time.Time) string {
	t = t.UTC()
	ns := t.Nanosecond()
	switch {
	case ns == 0:
		return t.Format("2006-01-02T15:04:05Z")
	case ns%1e6 == 0:
		return t.Format("2006-01-02T15:04:05.000Z")
	case ns%1e3 == 0:
		return t.Format("2006-01-02T15:04:05.000000Z")
	default:
		return t.Format("2006-01-02T15:04:05.000000000Z")
	}
}
