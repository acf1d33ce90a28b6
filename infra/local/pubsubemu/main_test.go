package pubsubemu_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"

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
		srv, err := pubsubemu.Start(context.Background(), pubsubemu.Options{Backend: pubsubemu.BackendPstest, Logger: testLogger(t)})
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
	shared.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := shared.Server()
	if err != nil {
		t.Fatalf("starting the gcloud emulator: %v", err)
	}
	return srv
}

var projectSeq atomic.Int64

// projectID returns a project ID no other test uses, so tests sharing a
// server do not see each other's topics.
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

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
