package e2e

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/bridge"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/shared/rollout"
)

// TestMalformedPayloads: garbage on every topic is acknowledged with a
// logged reason and changes nothing; nothing panics.
func TestMalformedPayloads(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{maxAttempts: 3})
		h.push(repo + ":v2")
		before := h.waitPhase(rollout.Progressing, 1)
		payloads := []string{
			"not json",
			"{}",
			"[]",
			`{"action":"INSERT","digest":"not-a-digest"}`,
			`{"version":1,"type":"dev.coalmine.command.shift-traffic.v1","service":"ai-square"}`,
			`{"version":99,"type":"dev.coalmine.command.rollback.v1"}`,
			`{"version":1,"type":"dev.coalmine.command.pause.v1","service":"ai-square","rollout":"ai-square-x","generation":1,"step":"pause","time":"2026-01-01T00:00:00Z"}`,
			strings.Repeat("\x00\xff", 512),
		}
		// The chain's own messages (push, backup, deploy, stage 1) are
		// acked first, so that what follows counts only the payloads.
		h.waitFor("the chain's messages acked", func(view) bool {
			st := h.cloud.Bridge.Stats()
			return st.Subscriptions["coalmine-shift-"+events.TopicShift].Acks >= 1 && st.Acks == st.Deliveries
		})
		before0 := h.cloud.Bridge.Stats()
		logged := len(h.logs.lines())
		perSub := map[string]int{}
		for _, tr := range events.Triggers {
			for _, p := range payloads {
				if _, err := h.cloud.Bus.Publish(context.Background(), tr.Topic, []byte(p), nil); err != nil {
					t.Fatalf("publish to %s: %v", tr.Topic, err)
				}
				perSub[tr.Subscription]++
			}
		}
		sent := len(events.Triggers) * len(payloads)
		explained := func() (warned int) {
			for _, l := range h.logs.lines()[logged:] {
				msg, _ := l["msg"].(string)
				if strings.Contains(msg, "malformed") || strings.Contains(msg, "ignored") || strings.Contains(msg, "rejected") || strings.Contains(msg, "stale") {
					warned++
				}
			}
			return warned
		}
		// short lists the subscriptions still waiting for payloads.
		short := func(st bridge.Stats) map[string]int {
			out := map[string]int{}
			for sub, n := range perSub {
				if got := st.Subscriptions[sub].Acks - before0.Subscriptions[sub].Acks; got < n {
					out[sub] = n - got
				}
			}
			return out
		}
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if len(short(h.cloud.Bridge.Stats())) == 0 && explained() >= sent {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		st := h.cloud.Bridge.Stats()
		delivered := st.Acks - before0.Acks
		if missing := short(st); len(missing) > 0 {
			if backend != pubsubemu.BackendGcloud {
				t.Errorf("payloads not delivered within 60 s: %v", missing)
			} else {
				// Google's emulator now and then leaves one message of a
				// burst undelivered (see docs/local-cloud.md: the bridge
				// never sees it, so no function does). pstest runs the same
				// functions strictly; here what was delivered is checked.
				t.Logf("Google's Pub/Sub emulator has not delivered these payloads within 60 s: %v; checking the %d delivered", missing, delivered)
			}
		}
		if st.DeadLetters != 0 || st.Failures != 0 {
			t.Errorf("malformed payloads were retried or dead-lettered: %+v", st)
		}
		after := h.view()
		if after.state.Generation != before.state.Generation || after.phase() != rollout.Progressing {
			t.Errorf("malformed payloads changed the state: generation %d → %d, phase %s", before.state.Generation, after.state.Generation, after.phase())
		}
		warned := explained()
		if warned < delivered {
			byFn := map[string]int{}
			for _, l := range h.logs.lines()[logged:] {
				msg, _ := l["msg"].(string)
				fn, _ := l["function"].(string)
				if strings.Contains(msg, "malformed") || strings.Contains(msg, "ignored") || strings.Contains(msg, "rejected") || strings.Contains(msg, "stale") {
					byFn[fn]++
				} else {
					t.Logf("other line: %v", l)
				}
			}
			t.Errorf("%d log lines explain the %d malformed payloads delivered: by function %v; bridge %+v", warned, delivered, byFn, st.Subscriptions)
		}
		for _, l := range h.logs.lines() {
			if msg, _ := l["msg"].(string); strings.Contains(msg, "panic") {
				t.Errorf("a function panicked: %v", l)
			}
		}
		// Garbage POSTed to a function itself, not through Pub/Sub, is
		// answered by functions-framework, as on Cloud Run.
		fns := map[string]bool{}
		for _, tr := range events.Triggers {
			fns[tr.Function] = true
		}
		for _, fn := range slices.Sorted(maps.Keys(fns)) {
			resp, err := http.Post(h.cloud.FunctionsURL+"/"+fn, "application/json", strings.NewReader("not json"))
			if err != nil {
				t.Fatalf("POST to %s: %v", fn, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Google-Status") != "crash" {
				t.Errorf("POST of garbage to %s: status %d, X-Google-Status %q; want functions-framework's 400 and \"crash\"",
					fn, resp.StatusCode, resp.Header.Get("X-Google-Status"))
			}
		}
	})
}

// deadLetter waits for one message on the dead-letter subscription.
func (h *harness) deadLetter(timeout time.Duration) *pubsub.Message {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got *pubsub.Message
	sub := h.cloud.PubsubClient.Subscriber(events.SubscriptionDeadLetter)
	err := sub.Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		m.Ack()
		if got == nil {
			got = m
			cancel()
		}
	})
	if got == nil {
		h.t.Fatalf("no dead letter within %s (%v); bridge stats %+v", timeout, err, h.cloud.Bridge.Stats())
	}
	return got
}
