// Package logging makes slog loggers that write JSON in the shape Cloud
// Logging reads from a Cloud Run container's stdout: "severity" instead of
// "level" (DEBUG, INFO, WARNING, ERROR), "message" instead of "msg", and a
// trace field when the context carries one.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
)

// New returns a JSON logger for Cloud Logging writing to w at level and above.
func New(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: replace}))
}

// FromEnv returns a logger to stdout whose level comes from COALMINE_LOG_LEVEL
// (debug, info, warn, error; default info).
func FromEnv() *slog.Logger {
	var level slog.Level
	switch strings.ToLower(os.Getenv("COALMINE_LOG_LEVEL")) {
	case "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	return New(os.Stdout, level)
}

// Discard returns a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func replace(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		lvl, _ := a.Value.Any().(slog.Level)
		return slog.String("severity", severity(lvl))
	case slog.MessageKey:
		a.Key = "message"
	}
	return a
}

func severity(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

type traceKey struct{}

// WithTrace returns a context whose log lines (through Attrs) carry the
// Cloud Logging trace "projects/P/traces/T".
func WithTrace(ctx context.Context, trace string) context.Context {
	return context.WithValue(ctx, traceKey{}, trace)
}

// Trace returns the attribute for the context's trace, or an empty attribute.
func Trace(ctx context.Context) slog.Attr {
	if t, ok := ctx.Value(traceKey{}).(string); ok && t != "" {
		return slog.String("logging.googleapis.com/trace", t)
	}
	return slog.Attr{}
}
