package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/ai-square/coalmine/events"
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
		// The chain's own messages were acked and logged too (the last
		// shift's ack may still be on its way): count from here, and wait
		// for both the acks and the log lines.
		acked := h.cloud.Bridge.Stats().Acks
		logged := len(h.logs.lines())
		sent := 0
		for _, tr := range events.Triggers {
			for _, p := range payloads {
				if _, err := h.cloud.Bus.Publish(context.Background(), tr.Topic, []byte(p), nil); err != nil {
					t.Fatalf("publish to %s: %v", tr.Topic, err)
				}
				sent++
			}
		}
		explained := func() (warned int) {
			for _, l := range h.logs.lines()[logged:] {
				msg, _ := l["msg"].(string)
				if strings.Contains(msg, "malformed") || strings.Contains(msg, "ignored") || strings.Contains(msg, "rejected") || strings.Contains(msg, "stale") {
					warned++
				}
			}
			return warned
		}
		warned := 0
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if warned = explained(); warned >= sent && h.cloud.Bridge.Stats().Acks >= acked+sent {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		st := h.cloud.Bridge.Stats()
		if st.Acks < acked+sent {
			t.Errorf("the bridge acked %d messages since the payloads were sent, want at least %d: %+v", st.Acks-acked, sent, st)
		}
		if st.DeadLetters != 0 || st.Failures != 0 {
			t.Errorf("malformed payloads were retried or dead-lettered: %+v", st)
		}
		after := h.view()
		if after.state.Generation != before.state.Generation || after.phase() != rollout.Progressing {
			t.Errorf("malformed payloads changed the state: generation %d → %d, phase %s", before.state.Generation, after.state.Generation, after.phase())
		}
		if warned < sent {
			t.Errorf("%d log lines explain the %d malformed payloads", warned, sent)
		}
		for _, l := range h.logs.lines() {
			if msg, _ := l["msg"].(string); strings.Contains(msg, "panic") {
				t.Errorf("a function panicked: %v", l)
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
