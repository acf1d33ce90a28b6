package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/cloudevents/sdk-go/v2/binding"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/bridge"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
)

// shared is the gcloud emulator all tests of this binary share, started on
// first use (its startup takes seconds) and stopped by TestMain.
var shared pubsubemu.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	if err := shared.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "closing the gcloud emulator:", err)
	}
	os.Exit(code)
}

// forEachBackend runs f against pstest (a fresh server) and, unless -short or
// gcloud is missing, against the shared gcloud emulator.
func forEachBackend(t *testing.T, f func(t *testing.T, srv *pubsubemu.Server)) {
	t.Helper()
	t.Run("pstest", func(t *testing.T) {
		srv, err := pubsubemu.Start(context.Background(), pubsubemu.Options{Backend: pubsubemu.BackendPstest, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		f(t, srv)
	})
	t.Run("gcloud", func(t *testing.T) {
		f(t, sharedGcloud(t))
	})
}

func sharedGcloud(t *testing.T) *pubsubemu.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping Google's Pub/Sub emulator")
	}
	if !pubsubemu.GcloudAvailable() {
		t.Skip("gcloud with the pubsub-emulator component is not installed")
	}
	shared.Logger = quietLogger()
	srv, err := shared.Server()
	if err != nil {
		t.Fatalf("starting the gcloud emulator: %v", err)
	}
	return srv
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

var projectSeq atomic.Int64

// projectID returns a project ID no other test uses, so tests sharing a
// server do not see each other's messages.
func projectID(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "t%d-", projectSeq.Add(1))
	for _, r := range strings.ToLower(t.Name()) {
		if b.Len() >= 30 {
			break
		}
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return strings.TrimRight(b.String(), "-")
}

// call is one request the function received, read as functions-framework
// reads it.
type call struct {
	seq     int
	at      time.Time
	path    string
	header  http.Header
	body    []byte
	event   cloudevents.Event
	msg     events.MessagePublished
	attempt int // deliveryAttempt from the body
	n       int // how many POSTs of this message so far, this one included
}

// function is an HTTP server standing in for a coalmine function.
type function struct {
	t       *testing.T
	srv     *httptest.Server
	respond func(ctx context.Context, c call) int // nil: 200

	mu    sync.Mutex
	calls []call
	perID map[string]int
}

func newFunction(t *testing.T, respond func(ctx context.Context, c call) int) *function {
	t.Helper()
	f := &function{t: t, respond: respond, perID: map[string]int{}}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *function) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	ev, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
	if err != nil {
		f.t.Errorf("function: reading the CloudEvent: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	mp, err := events.DecodeMessagePublished(*ev)
	if err != nil {
		f.t.Errorf("function: DecodeMessagePublished: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var raw struct {
		DeliveryAttempt int `json:"deliveryAttempt"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		f.t.Errorf("function: body: %v", err)
	}
	f.mu.Lock()
	f.perID[mp.Message.MessageID]++
	c := call{
		seq: len(f.calls), at: time.Now(), path: r.URL.Path, header: r.Header.Clone(), body: body,
		event: *ev, msg: mp, attempt: raw.DeliveryAttempt, n: f.perID[mp.Message.MessageID],
	}
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	status := http.StatusOK
	if f.respond != nil {
		status = f.respond(r.Context(), c)
	}
	w.WriteHeader(status)
}

// got returns the calls so far.
func (f *function) got() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// gotFor returns the calls for one message ID.
func (f *function) gotFor(id string) []call {
	var cs []call
	for _, c := range f.got() {
		if c.msg.Message.MessageID == id {
			cs = append(cs, c)
		}
	}
	return cs
}

// env is one test's project on a server: topology, client, function.
type env struct {
	t       *testing.T
	project string
	client  *pubsub.Client
	fn      *function
	trigger events.Trigger
	pubs    map[string]*pubsub.Publisher
}

func newEnv(t *testing.T, srv *pubsubemu.Server, respond func(ctx context.Context, c call) int) *env {
	t.Helper()
	ctx := context.Background()
	project := projectID(t)
	client, err := srv.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	if err := pubsubemu.EnsureTopology(ctx, client, project, events.Triggers); err != nil {
		t.Fatal(err)
	}
	e := &env{
		t: t, project: project, client: client, fn: newFunction(t, respond),
		trigger: triggerFor(t, events.FunctionDeploy), pubs: map[string]*pubsub.Publisher{},
	}
	t.Cleanup(func() {
		for _, p := range e.pubs {
			p.Stop()
		}
	})
	return e
}

func triggerFor(t *testing.T, function string) events.Trigger {
	t.Helper()
	for _, tr := range events.Triggers {
		if tr.Function == function {
			return tr
		}
	}
	t.Fatalf("no trigger for %s", function)
	return events.Trigger{}
}

// start starts a bridge routing the env's trigger to its function; zero
// backoffs default to 10ms..100ms to keep tests fast.
func (e *env) start(o bridge.Options) *bridge.Bridge {
	e.t.Helper()
	o.Client = e.client
	o.Project = e.project
	if o.Routes == nil {
		o.Routes = bridge.RoutesFor(e.fn.srv.URL, []events.Trigger{e.trigger})
	}
	if o.Logger == nil {
		o.Logger = testLogger(e.t)
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 10 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 100 * time.Millisecond
	}
	b, err := bridge.Start(context.Background(), o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = b.Close() })
	return b
}

// publish publishes to the env's trigger topic and returns the message ID.
func (e *env) publish(data string, attrs map[string]string) string {
	e.t.Helper()
	return e.publishTo(e.trigger.Topic, data, attrs)
}

func (e *env) publishTo(topic, data string, attrs map[string]string) string {
	e.t.Helper()
	p, ok := e.pubs[topic]
	if !ok {
		p = e.client.Publisher(topic)
		e.pubs[topic] = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := p.Publish(ctx, &pubsub.Message{Data: []byte(data), Attributes: attrs}).Get(ctx)
	if err != nil {
		e.t.Fatalf("publish to %s: %v", topic, err)
	}
	return id
}

// pull pulls (without acking) from a subscription until it has want
// messages or within has passed.
func (e *env) pull(sub string, want int, within time.Duration) []*pubsubpb.ReceivedMessage {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var got []*pubsubpb.ReceivedMessage
	for len(got) < want && ctx.Err() == nil {
		resp, err := e.client.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{
			Subscription: pubsubemu.SubscriptionName(e.project, sub), MaxMessages: 100,
		})
		if err != nil {
			if ctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded {
				break // the window is over
			}
			e.t.Fatalf("pull %s: %v", sub, err)
		}
		got = append(got, resp.GetReceivedMessages()...)
	}
	return got
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deliveries collects what OnDelivery reports.
type deliveries struct {
	mu sync.Mutex
	ds []bridge.Delivery
}

func (d *deliveries) add(x bridge.Delivery) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ds = append(d.ds, x)
}

func (d *deliveries) get() []bridge.Delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]bridge.Delivery(nil), d.ds...)
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for log capture.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
