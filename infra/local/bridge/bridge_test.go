package bridge_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/bridge"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
)

func TestRoutesFor(t *testing.T) {
	deploy := events.Trigger{Function: events.FunctionDeploy, Topic: events.TopicDeploy, Subscription: "coalmine-deploy-coalmine-deploy"}
	tests := []struct {
		name     string
		base     string
		triggers []events.Trigger
		want     []bridge.Route
	}{
		{
			name:     "one trigger",
			base:     "http://127.0.0.1:8080",
			triggers: []events.Trigger{deploy},
			want:     []bridge.Route{{Subscription: deploy.Subscription, Topic: events.TopicDeploy, URL: "http://127.0.0.1:8080/Deploy"}},
		},
		{
			name:     "trailing slash",
			base:     "http://fn.local/",
			triggers: []events.Trigger{deploy},
			want:     []bridge.Route{{Subscription: deploy.Subscription, Topic: events.TopicDeploy, URL: "http://fn.local/Deploy"}},
		},
		{name: "none", base: "http://x", triggers: nil, want: []bridge.Route{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bridge.RoutesFor(tt.base, tt.triggers)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("RoutesFor(%q) = %+v, want %+v", tt.base, got, tt.want)
			}
		})
	}

	got := bridge.RoutesFor("http://h", events.Triggers)
	if len(got) != len(events.Triggers) {
		t.Fatalf("RoutesFor(events.Triggers) has %d routes, want %d", len(got), len(events.Triggers))
	}
	for i, tr := range events.Triggers {
		if want := (bridge.Route{Subscription: tr.Subscription, Topic: tr.Topic, URL: "http://h/" + tr.Function}); got[i] != want {
			t.Errorf("route %d = %+v, want %+v", i, got[i], want)
		}
	}
}

func TestDelivery(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *pubsubemu.Server) {
		e := newEnv(t, srv, nil)
		var logs syncBuffer
		b := e.start(bridge.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		attrs := map[string]string{events.AttrType: "coalmine.deploy.v1", "k": "v"}
		data := `{"hello":"world"}`
		before := time.Now()
		id := e.publish(data, attrs)

		waitFor(t, 10*time.Second, "the delivery to be acked", func() bool { return b.Stats().Acks == 1 })
		calls := e.fn.got()
		if len(calls) != 1 {
			t.Fatalf("function got %d calls, want 1", len(calls))
		}
		c := calls[0]
		sub := "projects/" + e.project + "/subscriptions/" + e.trigger.Subscription
		source := "//pubsub.googleapis.com/projects/" + e.project + "/topics/" + e.trigger.Topic

		// Headers, exactly as Eventarc sends them.
		var body struct {
			Message struct {
				Data        string            `json:"data"`
				Attributes  map[string]string `json:"attributes"`
				MessageID   string            `json:"messageId"`
				PublishTime string            `json:"publishTime"`
			} `json:"message"`
			Subscription    string `json:"subscription"`
			DeliveryAttempt int    `json:"deliveryAttempt"`
		}
		if err := json.Unmarshal(c.body, &body); err != nil {
			t.Fatalf("body %s: %v", c.body, err)
		}
		for _, h := range []struct{ name, want string }{
			{"Content-Type", "application/json"},
			{"ce-id", id},
			{"ce-source", source},
			{"ce-specversion", "1.0"},
			{"ce-type", "google.cloud.pubsub.topic.v1.messagePublished"},
			{"ce-time", body.Message.PublishTime},
		} {
			if got := c.header.Get(h.name); got != h.want {
				t.Errorf("header %s = %q, want %q", h.name, got, h.want)
			}
		}
		if got, want := c.path, "/"+events.FunctionDeploy; got != want {
			t.Errorf("path = %q, want %q", got, want)
		}

		// The raw body.
		if got, want := body.Message.Data, base64.StdEncoding.EncodeToString([]byte(data)); got != want {
			t.Errorf("body message.data = %q, want %q", got, want)
		}
		if got, want := body.Message.MessageID, id; got != want {
			t.Errorf("body message.messageId = %q, want %q", got, want)
		}
		if got, want := body.Subscription, sub; got != want {
			t.Errorf("body subscription = %q, want %q", got, want)
		}
		if got, want := body.DeliveryAttempt, 1; got != want {
			t.Errorf("body deliveryAttempt = %d, want %d", got, want)
		}
		pt, err := time.Parse(time.RFC3339Nano, body.Message.PublishTime)
		if err != nil {
			t.Errorf("body message.publishTime: %v", err)
		}
		if pt.Before(before.Add(-2*time.Second)) || pt.After(time.Now().Add(2*time.Second)) {
			t.Errorf("publishTime %v is not around the publish (%v)", pt, before)
		}

		// What the cloudevents SDK and events.DecodeMessagePublished see.
		ev := c.event
		if got, want := ev.ID(), id; got != want {
			t.Errorf("event id = %q, want %q", got, want)
		}
		if got, want := ev.Source(), source; got != want {
			t.Errorf("event source = %q, want %q", got, want)
		}
		if got, want := ev.SpecVersion(), "1.0"; got != want {
			t.Errorf("event specversion = %q, want %q", got, want)
		}
		if got, want := ev.DataContentType(), "application/json"; got != want {
			t.Errorf("event datacontenttype = %q, want %q", got, want)
		}
		if !ev.Time().Equal(pt) {
			t.Errorf("event time = %v, want the publish time %v", ev.Time(), pt)
		}
		m := c.msg
		if got, want := string(m.Message.Data), data; got != want {
			t.Errorf("decoded data = %q, want %q", got, want)
		}
		if fmt.Sprint(m.Message.Attributes) != fmt.Sprint(attrs) {
			t.Errorf("decoded attributes = %v, want %v", m.Message.Attributes, attrs)
		}
		if got, want := m.Message.MessageID, id; got != want {
			t.Errorf("decoded message id = %q, want %q", got, want)
		}
		if !m.Message.PublishTime.Equal(pt) {
			t.Errorf("decoded publish time = %v, want %v", m.Message.PublishTime, pt)
		}
		if got, want := m.Subscription, sub; got != want {
			t.Errorf("decoded subscription = %q, want %q", got, want)
		}
		if got, want := m.Topic, e.trigger.Topic; got != want {
			t.Errorf("decoded topic = %q, want %q", got, want)
		}

		// Stats and the delivery log.
		st := b.Stats()
		if got, want := st.Subscriptions[e.trigger.Subscription], (bridge.Counts{Deliveries: 1, Acks: 1}); got != want {
			t.Errorf("stats for %s = %+v, want %+v", e.trigger.Subscription, got, want)
		}
		if got, want := st.Counts, (bridge.Counts{Deliveries: 1, Acks: 1}); got != want {
			t.Errorf("total stats = %+v, want %+v", got, want)
		}
		var logged bool
		for _, line := range strings.Split(logs.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "delivered" {
				continue
			}
			logged = true
			for _, k := range []string{"subscription", "message_id", "attempt", "status", "duration"} {
				if _, ok := rec[k]; !ok {
					t.Errorf("delivery log %s lacks %q", line, k)
				}
			}
			if rec["message_id"] != id || rec["subscription"] != e.trigger.Subscription || rec["status"] != float64(200) || rec["attempt"] != float64(1) {
				t.Errorf("delivery log = %s", line)
			}
		}
		if !logged {
			t.Errorf("no delivery logged; log:\n%s", logs.String())
		}
	})
}

// TestStatusCodes: 2xx acks (no redelivery); any other status is retried.
func TestStatusCodes(t *testing.T) {
	tests := []struct {
		status    int
		wantPOSTs int
	}{
		{http.StatusOK, 1},
		{http.StatusCreated, 1},
		{http.StatusAccepted, 1},
		{http.StatusNoContent, 1},
		{http.StatusFound, 2},
		{http.StatusBadRequest, 2},
		{http.StatusNotFound, 2},
		{http.StatusTooManyRequests, 2},
		{http.StatusInternalServerError, 2},
		{http.StatusServiceUnavailable, 2},
	}
	forEachBackend(t, func(t *testing.T, srv *pubsubemu.Server) {
		for _, tt := range tests {
			t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, srv, func(_ context.Context, c call) int {
					if c.n == 1 {
						return tt.status
					}
					return http.StatusOK
				})
				b := e.start(bridge.Options{})
				id := e.publish("x", nil)
				waitFor(t, 10*time.Second, "the message to be acked", func() bool { return b.Stats().Acks == 1 })
				time.Sleep(50 * time.Millisecond) // room for a wrong extra POST
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
				if got, want := len(e.fn.gotFor(id)), tt.wantPOSTs; got != want {
					t.Errorf("POSTs = %d, want %d", got, want)
				}
				want := bridge.Counts{Deliveries: tt.wantPOSTs, Acks: 1, Failures: tt.wantPOSTs - 1}
				if got := b.Stats().Counts; got != want {
					t.Errorf("stats = %+v, want %+v", got, want)
				}
				// Acked: nothing is left on the subscription.
				if got := e.pull(e.trigger.Subscription, 1, 300*time.Millisecond); len(got) != 0 {
					t.Errorf("subscription still has %d messages after the ack", len(got))
				}
			})
		}
	})
}

func TestRetryBackoff(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name       string
		min, max   time.Duration
		failures   int
		wantGaps   []time.Duration
		increasing bool
	}{
		{name: "doubling", min: 100 * ms, max: time.Second, failures: 3, wantGaps: []time.Duration{100 * ms, 200 * ms, 400 * ms}, increasing: true},
		{name: "capped", min: 50 * ms, max: 60 * ms, failures: 4, wantGaps: []time.Duration{50 * ms, 60 * ms, 60 * ms, 60 * ms}},
	}
	forEachBackend(t, func(t *testing.T, srv *pubsubemu.Server) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, srv, func(_ context.Context, c call) int {
					if c.n <= tt.failures {
						return http.StatusInternalServerError
					}
					return http.StatusOK
				})
				b := e.start(bridge.Options{MinBackoff: tt.min, MaxBackoff: tt.max})
				id := e.publish("retry me", nil)
				waitFor(t, 10*time.Second, "the message to be acked", func() bool { return b.Stats().Acks == 1 })
				calls := e.fn.gotFor(id)
				if got, want := len(calls), tt.failures+1; got != want {
					t.Fatalf("POSTs = %d, want %d", got, want)
				}
				for i, c := range calls {
					if got, want := c.attempt, i+1; got != want {
						t.Errorf("POST %d: deliveryAttempt = %d, want %d", i, got, want)
					}
					if got, want := c.header.Get("ce-id"), id; got != want {
						t.Errorf("POST %d: ce-id = %q, want %q", i, got, want)
					}
				}
				var gaps []time.Duration
				for i := 1; i < len(calls); i++ {
					gaps = append(gaps, calls[i].at.Sub(calls[i-1].at))
				}
				for i, want := range tt.wantGaps {
					// Lower bound exact; the upper bound leaves room for a
					// slow machine but catches a missing cap.
					if gaps[i] < want || gaps[i] > want+250*ms {
						t.Errorf("gap before attempt %d = %v, want %v (+ a little)", i+2, gaps[i], want)
					}
				}
				if tt.increasing {
					for i := 1; i < len(gaps); i++ {
						if gaps[i] <= gaps[i-1] {
							t.Errorf("backoff not growing: gaps %v", gaps)
						}
					}
				}
				want := bridge.Counts{Deliveries: tt.failures + 1, Acks: 1, Failures: tt.failures}
				if got := b.Stats().Counts; got != want {
					t.Errorf("stats = %+v, want %+v", got, want)
				}
			})
		}
	})
}

func TestDeadLetter(t *testing.T) {
	tests := []struct {
		name       string
		respond    func(ctx context.Context, c call) int
		refused    bool // the function is not listening
		wantStatus int
	}{
		{
			name:       "HTTP 500",
			respond:    func(context.Context, call) int { return http.StatusInternalServerError },
			wantStatus: http.StatusInternalServerError,
		},
		{
			name: "timeout",
			respond: func(ctx context.Context, _ call) int {
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
				}
				return http.StatusOK
			},
			wantStatus: 0,
		},
		{name: "connection refused", refused: true, wantStatus: 0},
	}
	const maxAttempts = 3
	forEachBackend(t, func(t *testing.T, srv *pubsubemu.Server) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, srv, tt.respond)
				o := bridge.Options{MaxAttempts: maxAttempts, Timeout: 200 * time.Millisecond}
				if tt.refused {
					l, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						t.Fatal(err)
					}
					addr := l.Addr().String()
					l.Close()
					o.Routes = bridge.RoutesFor("http://"+addr, []events.Trigger{e.trigger})
				}
				b := e.start(o)
				var ds deliveries
				b.OnDelivery(ds.add)
				attrs := map[string]string{"k": "v", events.AttrType: "coalmine.deploy.v1"}
				id := e.publish("poison", attrs)
				waitFor(t, 15*time.Second, "the message to be dead-lettered", func() bool { return b.Stats().DeadLetters == 1 })

				got := ds.get()
				if len(got) != maxAttempts {
					t.Fatalf("deliveries = %d (%+v), want %d", len(got), got, maxAttempts)
				}
				for i, d := range got {
					if d.MessageID != id || d.Subscription != e.trigger.Subscription || d.Attempt != i+1 ||
						d.Status != tt.wantStatus || d.Err == nil || d.Duplicate {
						t.Errorf("delivery %d = %+v, want attempt %d of %s with status %d and an error", i, d, i+1, id, tt.wantStatus)
					}
				}
				if tt.name == "timeout" && !errors.Is(got[0].Err, context.DeadlineExceeded) {
					t.Errorf("timeout delivery error = %v, want context.DeadlineExceeded", got[0].Err)
				}

				dead := e.pull(events.SubscriptionDeadLetter, 1, 10*time.Second)
				if len(dead) != 1 {
					t.Fatalf("dead-letter subscription has %d messages, want 1", len(dead))
				}
				dm := dead[0].GetMessage()
				if got, want := string(dm.GetData()), "poison"; got != want {
					t.Errorf("dead letter data = %q, want %q", got, want)
				}
				if dm.GetMessageId() == id {
					t.Errorf("dead letter kept the original message id %s; Pub/Sub republishes it with a new one", id)
				}
				wantAttrs := map[string]string{
					"k":             "v",
					events.AttrType: "coalmine.deploy.v1",
					"CloudPubSubDeadLetterSourceDeliveryCount":       strconv.Itoa(maxAttempts),
					"CloudPubSubDeadLetterSourceSubscription":        e.trigger.Subscription,
					"CloudPubSubDeadLetterSourceSubscriptionProject": e.project,
				}
				gotAttrs := dm.GetAttributes()
				publishTime := gotAttrs["CloudPubSubDeadLetterSourceTopicPublishTime"]
				delete(gotAttrs, "CloudPubSubDeadLetterSourceTopicPublishTime")
				if fmt.Sprint(gotAttrs) != fmt.Sprint(wantAttrs) {
					t.Errorf("dead letter attributes = %v, want %v (+ TopicPublishTime)", gotAttrs, wantAttrs)
				}
				pt, err := time.Parse("2006-01-02T15:04:05.000-07:00", publishTime)
				if err != nil {
					t.Errorf("CloudPubSubDeadLetterSourceTopicPublishTime = %q: %v", publishTime, err)
				} else if len(got) > 0 && tt.respond != nil {
					// Compare with the publish time the function saw.
					if want := e.fn.gotFor(id)[0].msg.Message.PublishTime.Truncate(time.Millisecond); !pt.Equal(want) {
						t.Errorf("CloudPubSubDeadLetterSourceTopicPublishTime = %v, want %v", pt, want)
					}
				}

				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
				want := bridge.Counts{Deliveries: maxAttempts, Failures: maxAttempts, DeadLetters: 1}
				if got := b.Stats().Counts; got != want {
					t.Errorf("stats = %+v, want %+v", got, want)
				}
				if got := e.pull(e.trigger.Subscription, 1, 700*time.Millisecond); len(got) != 0 {
					t.Errorf("original still on the subscription after dead-lettering: %v", got)
				}
			})
		}
	})
}

func TestChaosDuplicate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *pubsubemu.Server) {
		e := newEnv(t, srv, nil)
		b := e.start(bridge.Options{})
		b.SetChaos(bridge.Chaos{Seed: 1, Duplicate: 1})
		var ds deliveries
		b.OnDelivery(ds.add)
		const n = 3
		var ids []string
		for i := range n {
			ids = append(ids, e.publish(fmt.Sprint("m", i), nil))
		}
		waitFor(t, 10*time.Second, "every message acked", func() bool { return b.Stats().Acks == n })
		waitFor(t, 5*time.Second, "every duplicate delivered", func() bool { return b.Stats().Deliveries == 2*n })
		time.Sleep(50 * time.Millisecond)
		for _, id := range ids {
			if got, want := len(e.fn.gotFor(id)), 2; got != want {
				t.Errorf("message %s: %d POSTs, want %d", id, got, want)
			}
			var dup, orig int
			for _, d := range ds.get() {
				if d.MessageID != id {
					continue
				}
				if d.Attempt != 1 || d.Status != http.StatusOK || d.Err != nil {
					t.Errorf("delivery %+v, want a successful first attempt", d)
				}
				if d.Duplicate {
					dup++
				} else {
					orig++
				}
			}
			if dup != 1 || orig != 1 {
				t.Errorf("message %s: %d original and %d duplicate deliveries, want 1 and 1", id, orig, dup)
			}
		}
		if got, want := b.Stats().Counts, (bridge.Counts{Deliveries: 2 * n, Duplicates: n, Acks: n}); got != want {
			t.Errorf("stats = %+v, want %+v", got, want)
		}
	})
}

// TestChaosReorder publishes pairs of messages in order and expects MaxDelay
// to deliver at least one pair the other way round. With a 200ms bound each
// pair swaps with probability about 0.45, so all 20 in order has odds around
// 1e-5.
func TestChaosReorder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *pubsubemu.Server) {
		e := newEnv(t, srv, nil)
		b := e.start(bridge.Options{Chaos: bridge.Chaos{Seed: 42, MaxDelay: 200 * time.Millisecond}})
		const pairs = 20
		for i := range pairs {
			e.publish(fmt.Sprintf("%d-a", i), nil)
			e.publish(fmt.Sprintf("%d-b", i), nil)
		}
		waitFor(t, 15*time.Second, "every message acked", func() bool { return b.Stats().Acks == 2*pairs })
		seq := map[string]int{}
		for _, c := range e.fn.got() {
			seq[string(c.msg.Message.Data)] = c.seq
		}
		swapped := 0
		for i := range pairs {
			if seq[fmt.Sprintf("%d-b", i)] < seq[fmt.Sprintf("%d-a", i)] {
				swapped++
			}
		}
		t.Logf("%d of %d pairs arrived out of order", swapped, pairs)
		if swapped == 0 {
			t.Errorf("no pair out of order over %d tries; MaxDelay does not reorder", pairs)
		}
	})
}

func TestCloseStopsDelivery(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *pubsubemu.Server) {
		e := newEnv(t, srv, nil)
		b := e.start(bridge.Options{})
		first := e.publish("before close", nil)
		waitFor(t, 10*time.Second, "the first message acked", func() bool { return b.Stats().Acks == 1 })
		for range 2 { // idempotent
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
		}
		second := e.publish("after close", nil)
		time.Sleep(300 * time.Millisecond)
		calls := e.fn.got()
		if len(calls) != 1 || calls[0].msg.Message.MessageID != first {
			t.Errorf("function got %d calls, want only %s", len(calls), first)
		}
		if got, want := b.Stats().Counts, (bridge.Counts{Deliveries: 1, Acks: 1}); got != want {
			t.Errorf("stats = %+v, want %+v", got, want)
		}
		got := e.pull(e.trigger.Subscription, 1, 5*time.Second)
		if len(got) != 1 || got[0].GetMessage().GetMessageId() != second {
			t.Errorf("subscription after close has %v, want the undelivered %s", got, second)
		}
	})
}

// TestCloseNacksInFlight: a message in flight when the bridge closes goes
// back to the subscription and is not dead-lettered, even on its last
// attempt.
func TestCloseNacksInFlight(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *pubsubemu.Server) {
		started := make(chan struct{}, 1)
		e := newEnv(t, srv, func(ctx context.Context, _ call) int {
			started <- struct{}{}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
			}
			return http.StatusServiceUnavailable
		})
		b := e.start(bridge.Options{MaxAttempts: 1})
		id := e.publish("in flight", nil)
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery")
		}
		start := time.Now()
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Close took %v with a delivery in flight", d)
		}
		st := b.Stats().Counts
		if st.DeadLetters != 0 || st.Nacks != 1 || st.Acks != 0 {
			t.Errorf("stats = %+v, want one nack, no ack, no dead letter", st)
		}
		if got := e.pull(events.SubscriptionDeadLetter, 1, 500*time.Millisecond); len(got) != 0 {
			t.Errorf("dead-letter subscription has %d messages, want none", len(got))
		}
		got := e.pull(e.trigger.Subscription, 1, 5*time.Second)
		if len(got) != 1 || got[0].GetMessage().GetMessageId() != id {
			t.Errorf("subscription after close has %v, want the nacked %s", got, id)
		}
	})
}

func TestStartErrors(t *testing.T) {
	srv, err := pubsubemu.Start(context.Background(), pubsubemu.Options{Backend: pubsubemu.BackendPstest, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e := newEnv(t, srv, nil)
	tests := []struct {
		name    string
		opts    bridge.Options
		wantErr string
	}{
		{name: "no client", opts: bridge.Options{}, wantErr: "Client"},
		{name: "missing subscription", opts: bridge.Options{Client: e.client, Routes: []bridge.Route{{Subscription: "nope", URL: "http://x/"}}}, wantErr: "nope"},
		{name: "bad URL", opts: bridge.Options{Client: e.client, Routes: []bridge.Route{{Subscription: e.trigger.Subscription, URL: "/relative"}}}, wantErr: "URL"},
		{name: "no subscription", opts: bridge.Options{Client: e.client, Routes: []bridge.Route{{URL: "http://x/"}}}, wantErr: "subscription"},
		{name: "missing dead-letter topic", opts: bridge.Options{Client: e.client, DeadLetterTopic: "nope-dlt"}, wantErr: "nope-dlt"},
		{
			name: "route twice",
			opts: bridge.Options{Client: e.client, Routes: []bridge.Route{
				{Subscription: e.trigger.Subscription, URL: "http://x/"},
				{Subscription: e.trigger.Subscription, URL: "http://y/"},
			}},
			wantErr: "twice",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Logger = testLogger(t)
			b, err := bridge.Start(context.Background(), tt.opts)
			if err == nil {
				b.Close()
				t.Fatalf("Start succeeded, want an error mentioning %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

// TestTopicFromSubscription: a route without a topic gets the subscription's.
func TestTopicFromSubscription(t *testing.T) {
	forEachBackend(t, func(t *testing.T, srv *pubsubemu.Server) {
		e := newEnv(t, srv, nil)
		b := e.start(bridge.Options{Routes: []bridge.Route{{Subscription: e.trigger.Subscription, URL: e.fn.srv.URL + "/"}}})
		e.publish("x", nil)
		waitFor(t, 10*time.Second, "the delivery", func() bool { return b.Stats().Acks == 1 })
		if got, want := e.fn.got()[0].event.Source(), "//pubsub.googleapis.com/projects/"+e.project+"/topics/"+e.trigger.Topic; got != want {
			t.Errorf("source = %q, want %q", got, want)
		}
	})
}
