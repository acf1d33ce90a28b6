package scheduleremu_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ai-square/coalmine/infra/local/scheduleremu"
)

// TestFireAcrossMinutes: a job fires when Fire's time reaches its slot and not before,
// publishes its data and attributes exactly, and its next slot follows, across the hour.
func TestFireAcrossMinutes(t *testing.T) {
	e := newEnv(t, scheduleremu.Options{})
	ctx := context.Background()
	in := job("m", "*/20 * * * *")
	in.GetPubsubTarget().Attributes = map[string]string{"a": "1", "b": "two"}
	j := e.create(t, in)
	if got, want := j.GetScheduleTime().AsTime(), t0.Add(20*time.Minute); !got.Equal(want) {
		t.Fatalf("schedule_time = %v, want %v", got, want)
	}
	for _, step := range []struct {
		at       time.Duration // after t0
		fired    int
		nextSlot time.Duration // after t0
	}{
		{19*time.Minute + 59*time.Second, 0, 20 * time.Minute},
		{20 * time.Minute, 1, 40 * time.Minute},
		{20*time.Minute + 30*time.Second, 0, 40 * time.Minute},
		{40 * time.Minute, 1, 60 * time.Minute},
		{60 * time.Minute, 1, 80 * time.Minute}, // 11:00, into the next hour
	} {
		if got := e.srv.Fire(ctx, t0.Add(step.at)); got != step.fired {
			t.Errorf("Fire(t0+%v) = %d, want %d", step.at, got, step.fired)
		}
		if got, want := e.scheduleTime(t, j.GetName()), t0.Add(step.nextSlot); !got.Equal(want) {
			t.Errorf("after Fire(t0+%v): schedule_time = %v, want %v", step.at, got, want)
		}
	}
	msgs := e.receive(t, 3)
	for _, m := range msgs {
		if string(m.Data) != `{"job":"m"}` || len(m.Attributes) != 2 || m.Attributes["a"] != "1" || m.Attributes["b"] != "two" {
			t.Errorf("message data %q attributes %v, want {\"job\":\"m\"} and a=1 b=two", m.Data, m.Attributes)
		}
	}
	got := e.get(t, j.GetName())
	if got, want := got.GetLastAttemptTime().AsTime(), t0.Add(time.Hour); !got.Equal(want) {
		t.Errorf("last_attempt_time = %v, want %v", got, want)
	}
	if got.GetStatus().GetCode() != 0 {
		t.Errorf("status = %v, want code 0", got.GetStatus())
	}
}

// TestFireTimeZones: schedules are wall-clock times in the job's time zone: 09:00 in
// Asia/Taipei is 01:00 UTC; 09:00 in Europe/Berlin moves from 07:00 to 08:00 UTC when
// summer time ends; "utc" is UTC.
func TestFireTimeZones(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name, zone string
		created    time.Time
		slots      []time.Time // successive firings, in UTC
	}{
		{"Asia/Taipei", "Asia/Taipei", time.Date(2026, 11, 26, 0, 30, 0, 0, time.UTC), []time.Time{
			time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC),
			time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC),
		}},
		{"Europe/Berlin across the end of summer time", "Europe/Berlin", time.Date(2026, 10, 24, 6, 0, 0, 0, time.UTC), []time.Time{
			time.Date(2026, 10, 24, 7, 0, 0, 0, time.UTC),
			time.Date(2026, 10, 25, 8, 0, 0, 0, time.UTC),
			time.Date(2026, 10, 26, 8, 0, 0, 0, time.UTC),
		}},
		{"lowercase utc", "utc", time.Date(2026, 11, 26, 0, 30, 0, 0, time.UTC), []time.Time{
			time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, scheduleremu.Options{})
			e.clock.Set(tt.created)
			in := job("tz", "0 9 * * *")
			in.TimeZone = tt.zone
			j := e.create(t, in)
			if j.GetTimeZone() != tt.zone {
				t.Errorf("time_zone = %q, want %q", j.GetTimeZone(), tt.zone)
			}
			for i, slot := range tt.slots {
				if got := e.scheduleTime(t, j.GetName()); !got.Equal(slot) {
					t.Fatalf("slot %d: schedule_time = %v, want %v", i, got, slot)
				}
				if n := e.srv.Fire(ctx, slot.Add(-time.Second)); n != 0 {
					t.Errorf("Fire a second before %v fired %d, want 0", slot, n)
				}
				if n := e.srv.Fire(ctx, slot); n != 1 {
					t.Errorf("Fire at %v fired %d, want 1", slot, n)
				}
			}
			if got, want := e.published(), len(tt.slots); got != want {
				t.Errorf("published %d messages, want %d", got, want)
			}
		})
	}
}

// TestFireDays: day-of-week 7 and 0 are Sunday; day-of-month and day-of-week are OR-ed
// when both are restricted, AND-ed (only the restricted one counts) when either is "*".
func TestFireDays(t *testing.T) {
	ctx := context.Background()
	day := func(month time.Month, d int) time.Time { return time.Date(2026, month, d, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		schedule string
		slots    []time.Time // from Thursday 2026-11-26 10:00 UTC
	}{
		{"0 0 1 * SAT", []time.Time{day(11, 28), day(12, 1), day(12, 5), day(12, 12)}}, // Saturdays and the 1st
		{"0 0 1 * *", []time.Time{day(12, 1), day(1, 1).AddDate(1, 0, 0)}},
		{"0 0 * * 7", []time.Time{day(11, 29), day(12, 6)}},
		{"0 0 * * 0", []time.Time{day(11, 29), day(12, 6)}},
		{"0 0 * * 5-7", []time.Time{day(11, 27), day(11, 28), day(11, 29), day(12, 4)}},
		{"0 0 * * fri-sat,7", []time.Time{day(11, 27), day(11, 28), day(11, 29), day(12, 4)}},
		{"0 0 28 * 1", []time.Time{day(11, 28), day(11, 30), day(12, 7)}}, // the 28th or Mondays
	}
	for _, tt := range tests {
		t.Run(tt.schedule, func(t *testing.T) {
			e := newEnv(t, scheduleremu.Options{})
			j := e.create(t, job("d", tt.schedule))
			for i, slot := range tt.slots {
				if got := e.scheduleTime(t, j.GetName()); !got.Equal(slot) {
					t.Fatalf("slot %d: schedule_time = %v (%v), want %v (%v)", i, got, got.Weekday(), slot, slot.Weekday())
				}
				if n := e.srv.Fire(ctx, slot); n != 1 {
					t.Fatalf("Fire at %v fired %d, want 1", slot, n)
				}
			}
		})
	}
}

// TestMissedSlotsFireOnce: a job that missed many slots fires once, and its next slot is
// computed from the time it fired.
func TestMissedSlotsFireOnce(t *testing.T) {
	e := newEnv(t, scheduleremu.Options{})
	ctx := context.Background()
	j := e.create(t, job("missed", "* * * * *"))
	late := t0.Add(10*time.Minute + 20*time.Second)
	if n := e.srv.Fire(ctx, late); n != 1 {
		t.Errorf("Fire after ten missed slots fired %d, want 1", n)
	}
	if n := e.srv.Fire(ctx, late); n != 0 {
		t.Errorf("a second Fire at the same time fired %d, want 0", n)
	}
	if got, want := e.scheduleTime(t, j.GetName()), t0.Add(11*time.Minute); !got.Equal(want) {
		t.Errorf("schedule_time = %v, want %v", got, want)
	}
	e.receive(t, 1)
	if got, want := e.published(), 1; got != want {
		t.Errorf("published %d messages, want %d", got, want)
	}
}

// flaky publishes through next unless fail is set.
type flaky struct {
	mu   sync.Mutex
	fail error
	next scheduleremu.PublishFunc
}

func (f *flaky) set(fail error, next scheduleremu.PublishFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.next = fail, next
}

func (f *flaky) Publish(ctx context.Context, topic string, data []byte, attrs map[string]string) (string, error) {
	f.mu.Lock()
	fail, next := f.fail, f.next
	f.mu.Unlock()
	if fail != nil {
		return "", fail
	}
	return next(ctx, topic, data, attrs)
}

// TestFailedPublish: an attempt whose publish fails records the error's code and message
// and when it happened; the next success records code 0. A topic Pub/Sub does not have
// gives its NOT_FOUND.
func TestFailedPublish(t *testing.T) {
	ctx := context.Background()
	f := &flaky{}
	e := newEnv(t, scheduleremu.Options{Publish: f.Publish})
	j := e.create(t, job("f", "* * * * *"))

	f.set(fmt.Errorf("publish to ticks: %w", status.Error(codes.PermissionDenied, "caller lacks pubsub.topics.publish")), e.pub.Publish)
	at := t0.Add(time.Minute)
	if n := e.srv.Fire(ctx, at); n != 1 {
		t.Fatalf("Fire = %d, want 1", n)
	}
	got := e.get(t, j.GetName())
	if got, want := codes.Code(got.GetStatus().GetCode()), codes.PermissionDenied; got != want {
		t.Errorf("status code = %v, want %v", got, want)
	}
	if msg := got.GetStatus().GetMessage(); !strings.Contains(msg, "caller lacks pubsub.topics.publish") {
		t.Errorf("status message = %q, want the publish error", msg)
	}
	if got := got.GetLastAttemptTime().AsTime(); !got.Equal(at) {
		t.Errorf("last_attempt_time = %v, want %v", got, at)
	}

	f.set(errors.New("connection reset"), e.pub.Publish) // no gRPC status: UNKNOWN
	e.srv.Fire(ctx, t0.Add(2*time.Minute))
	if got := e.get(t, j.GetName()).GetStatus(); codes.Code(got.GetCode()) != codes.Unknown || got.GetMessage() != "connection reset" {
		t.Errorf("status = %v, want UNKNOWN connection reset", got)
	}

	f.set(nil, e.pub.Publish)
	e.srv.Fire(ctx, t0.Add(3*time.Minute))
	if got := e.get(t, j.GetName()); got.GetStatus() == nil || got.GetStatus().GetCode() != 0 || !got.GetLastAttemptTime().AsTime().Equal(t0.Add(3*time.Minute)) {
		t.Errorf("after a success: status %v, last_attempt_time %v; want code 0 at %v", got.GetStatus(), got.GetLastAttemptTime().AsTime(), t0.Add(3*time.Minute))
	}
	e.receive(t, 1)
	if got, want := e.published(), 1; got != want {
		t.Errorf("published %d messages, want %d", got, want)
	}

	// A real refusal from Pub/Sub: the topic does not exist.
	nt := job("no-topic", "* * * * *")
	nt.GetPubsubTarget().TopicName = "projects/p/topics/absent"
	e.create(t, nt)
	if n := e.srv.Fire(ctx, t0.Add(time.Minute)); n != 1 {
		t.Fatalf("Fire = %d, want 1", n)
	}
	if got := e.get(t, nt.GetName()).GetStatus(); codes.Code(got.GetCode()) != codes.NotFound {
		t.Errorf("status of a publish to a missing topic = %v, want NOT_FOUND", got)
	}
}

// TestFastSeconds: fast mode fires six-field schedules by the second; five fields keep
// minute granularity.
func TestFastSeconds(t *testing.T) {
	e := newEnv(t, scheduleremu.Options{Fast: true})
	ctx := context.Background()
	if !e.srv.Fast() {
		t.Errorf("Fast() = false, want true")
	}
	secs := e.create(t, job("secs", "*/2 * * * * *"))
	mins := e.create(t, job("mins", "* * * * *"))
	if got, want := secs.GetScheduleTime().AsTime(), t0.Add(2*time.Second); !got.Equal(want) {
		t.Errorf("six-field schedule_time = %v, want %v", got, want)
	}
	if got, want := mins.GetScheduleTime().AsTime(), t0.Add(time.Minute); !got.Equal(want) {
		t.Errorf("five-field schedule_time = %v, want %v", got, want)
	}
	for i, want := range []int{0, 1, 0, 1, 0} {
		at := t0.Add(time.Duration(i+1) * time.Second)
		if got := e.srv.Fire(ctx, at); got != want {
			t.Errorf("Fire(t0+%ds) = %d, want %d", i+1, got, want)
		}
	}
	if got, want := e.scheduleTime(t, secs.GetName()), t0.Add(6*time.Second); !got.Equal(want) {
		t.Errorf("schedule_time = %v, want %v", got, want)
	}
	e.receive(t, 2)
}

// TestBackgroundLoop: without Manual, the server fires on its own clock every second.
func TestBackgroundLoop(t *testing.T) {
	e := newEnv(t, scheduleremu.Options{Fast: true, Now: time.Now})
	j := e.create(t, job("loop", "* * * * * *"))
	m := e.receive(t, 1)[0]
	if string(m.Data) != `{"job":"loop"}` || m.Attributes["job"] != "loop" {
		t.Errorf("message data %q attributes %v", m.Data, m.Attributes)
	}
	// The attempt is recorded right after the publish returns; wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := e.get(t, j.GetName())
		if got.GetLastAttemptTime() != nil && got.GetStatus() != nil {
			if got.GetStatus().GetCode() != 0 {
				t.Errorf("status = %v, want code 0", got.GetStatus())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no attempt recorded within 5s: %v", got)
		}
		runtime.Gosched()
	}
	if err := e.srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestHangingPublishHoldsOnlyItsJob: in the background loop, a job whose publish hangs does
// not hold back the other jobs' slots (it used to: the loop waited for every publish).
func TestHangingPublishHoldsOnlyItsJob(t *testing.T) {
	release := make(chan struct{})
	var e *env
	e = newEnv(t, scheduleremu.Options{Fast: true, Now: time.Now, Publish: func(ctx context.Context, topic string, data []byte, attrs map[string]string) (string, error) {
		if attrs["job"] == "stuck" {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return "", ctx.Err()
		}
		return e.pub.Publish(ctx, topic, data, attrs)
	}})
	defer close(release)
	e.create(t, job("stuck", "* * * * * *"))
	e.create(t, job("free", "* * * * * *"))
	// Three firings of the free job while the stuck one's first publish is still hanging.
	for _, m := range e.receive(t, 3) {
		if m.Attributes["job"] != "free" {
			t.Errorf("message from job %q, want only the free job's", m.Attributes["job"])
		}
	}
}
