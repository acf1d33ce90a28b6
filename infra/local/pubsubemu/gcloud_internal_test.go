package pubsubemu

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"
)

func TestGcloudCloseKillsProcessGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping Google's Pub/Sub emulator")
	}
	if !GcloudAvailable() {
		t.Skip("gcloud with the pubsub-emulator component is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := Start(ctx, Options{
		Backend: BackendGcloud,
		Logger:  slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := srv.cmd.Process
	if !groupAlive(p) {
		t.Fatal("emulator process group not running after Start")
	}
	for range 2 { // idempotent
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if groupAlive(p) {
		t.Errorf("process group %d still has processes after Close", p.Pid)
	}
	if conn, err := net.DialTimeout("tcp", srv.Host(), time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Close", srv.Host())
	}
}

func TestAckDeadlineSeconds(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want int32
	}{
		{0, 10},
		{5 * time.Second, 10},
		{60 * time.Second, 60},
		{600 * time.Second, 600},
		{time.Hour, 600},
	}
	for _, tt := range tests {
		if got := ackDeadlineSeconds(tt.in); got != tt.want {
			t.Errorf("ackDeadlineSeconds(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
