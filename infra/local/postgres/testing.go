package postgres

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// EnvRequire names the environment variable that makes a missing PostgreSQL
// a test failure instead of a skip. CI sets it (to anything but "", "0" or
// "false"), so tests cannot pass there by silently skipping.
const EnvRequire = "COALMINE_REQUIRE_POSTGRES"

// Required reports whether EnvRequire is set.
func Required() bool {
	switch os.Getenv(EnvRequire) {
	case "", "0", "false":
		return false
	}
	return true
}

// SkipIfUnavailable skips t when the server binaries are missing and
// EnvRequire is not set, and fails it when they are missing and it is set.
func SkipIfUnavailable(t testing.TB) {
	t.Helper()
	if _, ok := Available(); ok {
		return
	}
	if Required() {
		t.Fatalf("%s is set but: %v", EnvRequire, ErrUnavailable)
		return
	}
	t.Skipf("skipping: %v (set %s=1 to fail instead)", ErrUnavailable, EnvRequire)
}

// StartForTest starts a server for t (see SkipIfUnavailable for when it
// skips instead) and stops it when t ends. A server that does not start
// fails t.
func StartForTest(t testing.TB, o Options) *Server {
	t.Helper()
	SkipIfUnavailable(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	s, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop postgres: %v", err)
		}
	})
	return s
}

// testWriter writes log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
