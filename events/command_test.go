package events_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ai-square/coalmine/events"
)

var cmdTime = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func validCommands() []events.Command {
	base := events.Command{Version: 1, Service: "ai-square", Rollout: "ai-square-6ec128e26cd5", Generation: 4, Time: cmdTime, Actor: "test"}
	rel := base
	rel.Type, rel.Step, rel.Rollout, rel.Generation = events.CommandRelease, events.StepRelease, "", 0
	rel.Image = testRepo + "@" + testDigest
	shift := base
	shift.Type, shift.Stage, shift.Step, shift.Manual = events.CommandShiftTraffic, 2, events.StepStage(2), true
	out := []events.Command{rel, shift}
	for typ, step := range map[events.CommandType]string{
		events.CommandBackup: events.StepBackup, events.CommandDeployCanary: events.StepDeploy,
		events.CommandPause: events.StepPause, events.CommandResume: events.StepResume, events.CommandRollback: events.StepRollback,
	} {
		c := base
		c.Type, c.Step = typ, step
		out = append(out, c)
	}
	return out
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range validCommands() {
		t.Run(string(c.Type), func(t *testing.T) {
			b, err := c.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := events.DecodeCommand(b)
			if err != nil {
				t.Fatalf("DecodeCommand: %v", err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("got %+v, want %+v", got, c)
			}
			if c.Type.Topic() == "" {
				t.Errorf("%s has no topic", c.Type)
			}
		})
	}
}

func TestEveryCommandTypeHasOneTopic(t *testing.T) {
	for _, typ := range events.CommandTypes {
		if typ.Topic() == "" {
			t.Errorf("%s has no topic", typ)
		}
	}
	if got := events.CommandType("dev.coalmine.command.nope.v1").Topic(); got != "" {
		t.Errorf("unknown type has topic %q", got)
	}
}

func TestDecodeCommandRejects(t *testing.T) {
	valid := validCommands()
	rel, shift := valid[0], valid[1]
	var rb events.Command // (validCommands ranges over a map: find it by type)
	for _, c := range valid {
		if c.Type == events.CommandRollback {
			rb = c
		}
	}
	tests := []struct {
		name  string
		cmd   events.Command
		edit  func(*events.Command)
		field string
	}{
		{"no version", shift, func(c *events.Command) { c.Version = 0 }, "version"},
		{"future version", shift, func(c *events.Command) { c.Version = 2 }, "version"},
		{"no type", shift, func(c *events.Command) { c.Type = "" }, "type"},
		{"unknown type", shift, func(c *events.Command) { c.Type = "dev.coalmine.command.launch.v1" }, "type"},
		{"no service", shift, func(c *events.Command) { c.Service = "" }, "service"},
		{"bad service", shift, func(c *events.Command) { c.Service = "AI_Square" }, "service"},
		{"negative generation", shift, func(c *events.Command) { c.Generation = -1 }, "generation"},
		{"no time", shift, func(c *events.Command) { c.Time = time.Time{} }, "time"},
		{"no rollout", shift, func(c *events.Command) { c.Rollout = "" }, "rollout"},
		{"bad rollout", shift, func(c *events.Command) { c.Rollout = "../x" }, "rollout"},
		{"shift stage 0", shift, func(c *events.Command) { c.Stage, c.Step = 0, "stage-0" }, "stage"},
		{"shift step mismatch", shift, func(c *events.Command) { c.Step = "stage-3" }, "step"},
		{"rollback wrong step", rb, func(c *events.Command) { c.Step = "deploy" }, "step"},
		{"release without image", rel, func(c *events.Command) { c.Image = "" }, "image"},
		{"release by tag", rel, func(c *events.Command) { c.Image = testRepo + ":1.1" }, "image"},
		{"release garbage image", rel, func(c *events.Command) { c.Image = "not an image" }, "image"},
		{"release wrong step", rel, func(c *events.Command) { c.Step = "deploy" }, "step"},
		{"negative attempt", rb, func(c *events.Command) { c.Attempt = -1 }, "attempt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cmd
			tt.edit(&c)
			b, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			_, err = events.DecodeCommand(b)
			checkFieldError(t, err, "command", tt.field)
			if _, err := c.Encode(); err == nil {
				t.Errorf("Encode accepted the invalid command")
			}
		})
	}
	for _, body := range []string{"", "null", "[]", `{"version":"1"}`, "{"} {
		if _, err := events.DecodeCommand([]byte(body)); !errors.Is(err, events.ErrMalformed) {
			t.Errorf("DecodeCommand(%q) = %v, want ErrMalformed", body, err)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range validCommands() {
		b, err := json.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"type":"dev.coalmine.command.shift-traffic.v1","stage":1e9}`))
	f.Add([]byte(`{"version":1,"type":"dev.coalmine.command.release.v1","image":"@@"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := events.DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, events.ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		b, err := c.Encode()
		if err != nil {
			t.Fatalf("a decoded command does not encode: %v", err)
		}
		again, err := events.DecodeCommand(b)
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, c)
		}
		if c.Type.Topic() == "" {
			t.Fatalf("decoded command of type %q has no topic", c.Type)
		}
	})
}

func validLifecycle() events.Lifecycle {
	return events.Lifecycle{Version: 1, Type: events.EventTrafficShifted, Service: "ai-square", Rollout: "ai-square-6ec128e26cd5",
		Generation: 7, Phase: "progressing", Stage: 1, Percent: 10, Canary: "ai-square-6ec128e-7", Stable: "ai-square-00001-abc", Time: cmdTime}
}

func TestLifecycle(t *testing.T) {
	e := validLifecycle()
	b, err := e.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	got, err := events.DecodeLifecycle(b)
	if err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, e)
	}
	for _, tt := range []struct {
		edit  func(*events.Lifecycle)
		field string
	}{
		{func(e *events.Lifecycle) { e.Version = 0 }, "version"},
		{func(e *events.Lifecycle) { e.Type = "x" }, "type"},
		{func(e *events.Lifecycle) { e.Service = "" }, "service"},
		{func(e *events.Lifecycle) { e.Rollout = "" }, "rollout"},
		{func(e *events.Lifecycle) { e.Phase = "" }, "phase"},
		{func(e *events.Lifecycle) { e.Percent = 101 }, "percent"},
		{func(e *events.Lifecycle) { e.Time = time.Time{} }, "time"},
	} {
		bad := validLifecycle()
		tt.edit(&bad)
		b, _ := json.Marshal(bad)
		_, err := events.DecodeLifecycle(b)
		checkFieldError(t, err, "lifecycle event", tt.field)
	}
}

func FuzzDecodeLifecycle(f *testing.F) {
	b, err := json.Marshal(validLifecycle())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"version":1,"type":"dev.coalmine.rollout.promoted.v1","percent":-5}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := events.DecodeLifecycle(data)
		if err != nil {
			if !errors.Is(err, events.ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if _, err := e.Encode(); err != nil {
			t.Fatalf("a decoded event does not encode: %v", err)
		}
	})
}

func TestTopologyConsumesEveryCommandTopicOnce(t *testing.T) {
	consumers := map[string][]string{}
	subs := map[string]bool{}
	for _, tr := range events.Triggers {
		consumers[tr.Topic] = append(consumers[tr.Topic], tr.Function)
		if subs[tr.Subscription] {
			t.Errorf("subscription %s appears twice", tr.Subscription)
		}
		subs[tr.Subscription] = true
	}
	for _, typ := range events.CommandTypes {
		if got := consumers[typ.Topic()]; len(got) != 1 {
			t.Errorf("topic %s of %s has consumers %v, want exactly one", typ.Topic(), typ, got)
		}
	}
	if got := consumers[events.TopicGCR]; len(got) != 1 || got[0] != events.FunctionBackup {
		t.Errorf("gcr consumers = %v, want [Backup]", got)
	}
}
