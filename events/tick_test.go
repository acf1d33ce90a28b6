package events_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ai-square/coalmine/events"
)

var testTickTime = time.Date(2026, 11, 26, 10, 5, 0, 412_000_000, time.UTC)

func TestDecodeTickFixture(t *testing.T) {
	m, err := events.DecodePushEnvelope(fixtureFromTestdata(t, "coalmine-tick-push.json"))
	if err != nil {
		t.Fatalf("DecodePushEnvelope: %v", err)
	}
	got, err := events.DecodeTick(m.Message)
	if err != nil {
		t.Fatalf("DecodeTick: %v", err)
	}
	want := events.Tick{Job: "coalmine-tick", Version: 1, PublishTime: testTickTime}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestDecodeTick(t *testing.T) {
	tests := []struct {
		name string
		msg  events.PubsubMessage
		want events.Tick
	}{
		{
			name: "version 1",
			msg:  events.PubsubMessage{Data: []byte(`{"job":"coalmine-tick","version":1}`), PublishTime: testTickTime},
			want: events.Tick{Job: "coalmine-tick", Version: 1, PublishTime: testTickTime},
		},
		{
			name: "version missing means 1",
			msg:  events.PubsubMessage{Data: []byte(`{"job":"coalmine-tick"}`), PublishTime: testTickTime},
			want: events.Tick{Job: "coalmine-tick", Version: 1, PublishTime: testTickTime},
		},
		{
			name: "version 0 means 1, attributes and unknown fields ignored",
			msg: events.PubsubMessage{
				Data:        []byte(`{"job":"other-job","version":0,"note":"x"}`),
				Attributes:  map[string]string{"k": "v"},
				PublishTime: testTickTime,
			},
			want: events.Tick{Job: "other-job", Version: 1, PublishTime: testTickTime},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := events.DecodeTick(tt.msg)
			if err != nil {
				t.Fatalf("DecodeTick: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeTickRejects(t *testing.T) {
	scheduler, err := events.DecodePushEnvelope(fixtureFromTestdata(t, "scheduler-pubsub-message-received.json"))
	if err != nil {
		t.Fatalf("DecodePushEnvelope: %v", err)
	}
	tests := []struct {
		name      string
		msg       events.PubsubMessage
		wantField string
	}{
		{name: "another scheduler job's payload", msg: scheduler.Message, wantField: "job"},
		{name: "no data", msg: events.PubsubMessage{Attributes: map[string]string{"job": "coalmine-tick"}, PublishTime: testTickTime}, wantField: "(body)"},
		{name: "not JSON", msg: events.PubsubMessage{Data: []byte(`tick`), PublishTime: testTickTime}, wantField: "(body)"},
		{name: "not an object", msg: events.PubsubMessage{Data: []byte(`"coalmine-tick"`), PublishTime: testTickTime}, wantField: "(body)"},
		{name: "null", msg: events.PubsubMessage{Data: []byte(`null`), PublishTime: testTickTime}, wantField: "job"},
		{name: "job empty", msg: events.PubsubMessage{Data: []byte(`{"job":"","version":1}`), PublishTime: testTickTime}, wantField: "job"},
		{name: "job not a string", msg: events.PubsubMessage{Data: []byte(`{"job":1}`), PublishTime: testTickTime}, wantField: "job"},
		{name: "version 2", msg: events.PubsubMessage{Data: []byte(`{"job":"coalmine-tick","version":2}`), PublishTime: testTickTime}, wantField: "version"},
		{name: "version negative", msg: events.PubsubMessage{Data: []byte(`{"job":"coalmine-tick","version":-1}`), PublishTime: testTickTime}, wantField: "version"},
		{name: "version a string", msg: events.PubsubMessage{Data: []byte(`{"job":"coalmine-tick","version":"1"}`), PublishTime: testTickTime}, wantField: "version"},
		{name: "version fractional", msg: events.PubsubMessage{Data: []byte(`{"job":"coalmine-tick","version":1.5}`), PublishTime: testTickTime}, wantField: "version"},
		{name: "no publish time", msg: events.PubsubMessage{Data: []byte(`{"job":"coalmine-tick","version":1}`)}, wantField: "publishTime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := events.DecodeTick(tt.msg)
			checkFieldError(t, err, "scheduler tick", tt.wantField)
			if got != (events.Tick{}) {
				t.Errorf("got %+v on error, want zero value", got)
			}
		})
	}
}

func TestTickSlot(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		name   string
		at     time.Time
		period time.Duration
		want   time.Time
	}{
		{name: "minute", at: testTickTime, period: time.Minute, want: time.Date(2026, 11, 26, 10, 5, 0, 0, time.UTC)},
		{name: "five minutes", at: testTickTime.Add(4 * time.Minute), period: 5 * time.Minute, want: time.Date(2026, 11, 26, 10, 5, 0, 0, time.UTC)},
		{name: "on the boundary", at: time.Date(2026, 11, 26, 10, 10, 0, 0, time.UTC), period: 5 * time.Minute, want: time.Date(2026, 11, 26, 10, 10, 0, 0, time.UTC)},
		{name: "other zone, same instant", at: testTickTime.In(berlin), period: time.Minute, want: time.Date(2026, 11, 26, 10, 5, 0, 0, time.UTC)},
		{name: "zero period", at: testTickTime, period: 0, want: testTickTime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := events.Tick{Job: "coalmine-tick", Version: 1, PublishTime: tt.at}.Slot(tt.period)
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTickSlotSameForRedeliveryAndRetryWithinSlot(t *testing.T) {
	first := events.Tick{Job: "coalmine-tick", Version: 1, PublishTime: time.Date(2026, 11, 26, 10, 5, 0, 412_000_000, time.UTC)}
	retry := first
	retry.PublishTime = first.PublishTime.Add(20 * time.Second)
	next := first
	next.PublishTime = first.PublishTime.Add(time.Minute)
	if a, b := first.Slot(time.Minute), retry.Slot(time.Minute); a != b {
		t.Errorf("got slots %v and %v for a retry within the minute, want equal", a, b)
	}
	if a, b := first.Slot(time.Minute), next.Slot(time.Minute); a == b {
		t.Errorf("got slot %v for two different minutes, want different", a)
	}
}

func FuzzDecodeTick(f *testing.F) {
	for _, name := range []string{"coalmine-tick-push.json", "scheduler-pubsub-message-received.json"} {
		m, err := events.DecodePushEnvelope(fixtureFromTestdata(f, name))
		if err != nil {
			f.Fatalf("fixture %s: %v", name, err)
		}
		f.Add(m.Message.Data, m.Message.PublishTime.UnixNano(), int64(time.Minute))
	}
	f.Add([]byte(`{"job":"coalmine-tick"}`), int64(0), int64(time.Minute))
	f.Add([]byte(`{"job":"coalmine-tick","version":2}`), testTickTime.UnixNano(), int64(5*time.Minute))
	f.Add([]byte(`{"job":"x","version":-3}`), testTickTime.UnixNano(), int64(-1))
	f.Add([]byte(`{"job":7}`), testTickTime.UnixNano(), int64(time.Hour))
	f.Add([]byte(``), testTickTime.UnixNano(), int64(time.Second))
	f.Fuzz(func(t *testing.T, data []byte, publishUnixNano, periodNanos int64) {
		var at time.Time
		if publishUnixNano != 0 {
			at = time.Unix(0, publishUnixNano).UTC()
		}
		tick, err := events.DecodeTick(events.PubsubMessage{Data: data, PublishTime: at})
		if err != nil {
			checkFieldError(t, err, "scheduler tick", fieldOf(err))
			return
		}
		if tick.Job == "" || tick.Version != 1 || !tick.PublishTime.Equal(at) || at.IsZero() {
			t.Fatalf("decoded %+v from %q at %v", tick, data, at)
		}
		encoded, err := json.Marshal(map[string]any{"job": tick.Job, "version": tick.Version})
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := events.DecodeTick(events.PubsubMessage{Data: encoded, PublishTime: at})
		if err != nil {
			t.Fatalf("decode re-encoded %s: %v", encoded, err)
		}
		if again != tick {
			t.Fatalf("got %+v after re-encoding, want %+v", again, tick)
		}
		period := time.Duration(periodNanos)
		slot := tick.Slot(period)
		switch {
		case period <= 0:
			if !slot.Equal(at) {
				t.Fatalf("Slot(%v) = %v, want the publish time %v", period, slot, at)
			}
		case slot.After(at) || !at.Before(slot.Add(period)):
			t.Fatalf("Slot(%v) = %v, want within (%v - period, %v]", period, slot, at, at)
		case tick.Slot(period) != slot || (events.Tick{PublishTime: slot}).Slot(period) != slot:
			t.Fatalf("Slot(%v) = %v is not stable", period, slot)
		}
	})
}
