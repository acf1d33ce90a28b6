package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestCloudLoggingShape(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, slog.LevelDebug)
	ctx := WithTrace(context.Background(), "projects/p/traces/abc")
	log.LogAttrs(ctx, slog.LevelWarn, "rollout paused", slog.String("rollout", "web-1"), Trace(ctx))
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v: %s", err, buf.String())
	}
	for k, want := range map[string]any{"severity": "WARNING", "message": "rollout paused", "rollout": "web-1", "logging.googleapis.com/trace": "projects/p/traces/abc"} {
		if got[k] != want {
			t.Errorf("field %q = %v, want %v (line %s)", k, got[k], want, buf.String())
		}
	}
	for _, k := range []string{"level", "msg"} {
		if _, ok := got[k]; ok {
			t.Errorf("field %q present; Cloud Logging wants severity/message", k)
		}
	}
	for lvl, want := range map[slog.Level]string{slog.LevelDebug: "DEBUG", slog.LevelInfo: "INFO", slog.LevelError: "ERROR"} {
		if got := severity(lvl); got != want {
			t.Errorf("severity(%v) = %s, want %s", lvl, got, want)
		}
	}
}
