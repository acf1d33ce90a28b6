package gcsemu

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	gax "github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
)

const bucket = "data"

// start starts a server with a bucket and returns it with a client whose
// retries are fast and bounded.
func start(t *testing.T, o Options) (*Server, *storage.Client) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := Start(o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	c, err := s.Client(ctx)
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetRetry(
		storage.WithBackoff(gax.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}),
		storage.WithMaxAttempts(3),
	)
	if err := c.Bucket(bucket).Create(ctx, "local", nil); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return s, c
}

func put(t *testing.T, c *storage.Client, name string, data []byte) *storage.ObjectAttrs {
	t.Helper()
	w := c.Bucket(bucket).Object(name).NewWriter(context.Background())
	w.ContentType = "text/plain"
	if _, err := w.Write(data); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close writer %s: %v", name, err)
	}
	return w.Attrs()
}

func read(t *testing.T, c *storage.Client, name string, opts ...storage.ReaderOption) ([]byte, error) {
	t.Helper()
	r, err := c.Bucket(bucket).Object(name).NewReader(context.Background(), opts...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func httpCode(err error) int {
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		return gerr.Code
	}
	return 0
}

func reason(err error) string {
	var gerr *googleapi.Error
	if errors.As(err, &gerr) && len(gerr.Errors) > 0 {
		return gerr.Errors[0].Reason
	}
	return ""
}

// TestFakeIgnoresRewritePreconditions records the fake-gcs-server behaviour
// the shim exists for. If it fails, upstream enforces preconditions on
// rewrite now and the shim's check is redundant (but harmless).
func TestFakeIgnoresRewritePreconditions(t *testing.T) {
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Stop()
	fake.CreateObject(fakestorage.Object{
		ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: "src"},
		Content:     []byte("hello"),
	})
	c := fake.Client()
	ctx := context.Background()
	dst := c.Bucket(bucket).Object("dst").If(storage.Conditions{DoesNotExist: true})
	src := c.Bucket(bucket).Object("src")
	if _, err := dst.CopierFrom(src).Run(ctx); err != nil {
		t.Fatalf("first copy: %v", err)
	}
	_, err = dst.CopierFrom(src).Run(ctx)
	if err != nil {
		t.Fatalf("second DoesNotExist copy without the shim: got %v, want success (fake-gcs-server v1.56.1 ignores rewrite preconditions; if it now answers 412, the shim's check is redundant)", err)
	}
}

func TestRewritePreconditions(t *testing.T) {
	s, c := start(t, Options{})
	ctx := context.Background()
	srcAttrs := put(t, c, "src/a.txt", []byte("version 1"))
	src := c.Bucket(bucket).Object("src/a.txt").Generation(srcAttrs.Generation)
	dst := c.Bucket(bucket).Object("backup/a.txt")

	// DoesNotExist: succeeds once, then 412.
	if _, err := dst.If(storage.Conditions{DoesNotExist: true}).CopierFrom(src).Run(ctx); err != nil {
		t.Fatalf("first DoesNotExist copy: %v", err)
	}
	put(t, c, "src/a.txt", []byte("version 2"))
	_, err := dst.If(storage.Conditions{DoesNotExist: true}).CopierFrom(c.Bucket(bucket).Object("src/a.txt")).Run(ctx)
	if got, want := httpCode(err), http.StatusPreconditionFailed; got != want {
		t.Fatalf("second DoesNotExist copy: got code %d (%v), want %d", got, err, want)
	}
	if got, want := reason(err), "conditionNotMet"; got != want {
		t.Errorf("412 reason: got %q, want %q", got, want)
	}
	data, err := read(t, c, "backup/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), "version 1"; got != want {
		t.Errorf("destination after refused copy: got %q, want %q", got, want)
	}

	// ifGenerationMatch=N on the destination.
	dstAttrs, err := dst.Attrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	latest := c.Bucket(bucket).Object("src/a.txt")
	_, err = dst.If(storage.Conditions{GenerationMatch: dstAttrs.Generation + 1}).CopierFrom(latest).Run(ctx)
	if got, want := httpCode(err), http.StatusPreconditionFailed; got != want {
		t.Fatalf("copy with wrong GenerationMatch: got code %d (%v), want %d", got, err, want)
	}
	if _, err := dst.If(storage.Conditions{GenerationMatch: dstAttrs.Generation}).CopierFrom(latest).Run(ctx); err != nil {
		t.Fatalf("copy with right GenerationMatch: %v", err)
	}
	data, err = read(t, c, "backup/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), "version 2"; got != want {
		t.Errorf("destination after GenerationMatch copy: got %q, want %q", got, want)
	}
	// GenerationMatch on a missing destination fails too.
	_, err = c.Bucket(bucket).Object("backup/missing").If(storage.Conditions{GenerationMatch: 7}).CopierFrom(latest).Run(ctx)
	if got, want := httpCode(err), http.StatusPreconditionFailed; got != want {
		t.Errorf("GenerationMatch copy onto a missing object: got code %d (%v), want %d", got, err, want)
	}

	cnt := s.Counters()
	if got, want := cnt.Rewrites("backup/a.txt"), 4; got != want {
		t.Errorf("Rewrites(backup/a.txt): got %d, want %d", got, want)
	}
	if got, want := cnt.Rewrites("backup/missing"), 1; got != want {
		t.Errorf("Rewrites(backup/missing): got %d, want %d", got, want)
	}
	if got, want := cnt.PreconditionFailures(), 3; got != want {
		t.Errorf("PreconditionFailures: got %d, want %d", got, want)
	}
}

func TestUploadsAndReadsPassThrough(t *testing.T) {
	s, c := start(t, Options{})
	ctx := context.Background()
	// A resumable upload in several chunks: the Location header must point
	// at the shim.
	big := bytes.Repeat([]byte("0123456789abcdef"), 40<<10) // 640 KiB
	w := c.Bucket(bucket).Object("big").NewWriter(ctx)
	w.ChunkSize = 256 << 10
	if _, err := w.Write(big); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("resumable upload: %v", err)
	}
	// The default (XML) read path and the JSON read path.
	got, err := read(t, c, "big")
	if err != nil {
		t.Fatalf("XML read: %v", err)
	}
	if !bytes.Equal(got, big) {
		t.Errorf("XML read: got %d bytes, want %d identical bytes", len(got), len(big))
	}
	jc, err := s.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	r, err := jc.Bucket(bucket).Object("big").NewRangeReader(ctx, 16, 16)
	if err != nil {
		t.Fatalf("range read: %v", err)
	}
	part, _ := io.ReadAll(r)
	r.Close()
	if got, want := string(part), "0123456789abcdef"; got != want {
		t.Errorf("range read: got %q, want %q", got, want)
	}
	// fake-gcs-server enforces DoesNotExist on uploads by itself; the shim
	// counts its 412.
	before := s.Counters().PreconditionFailures()
	w = c.Bucket(bucket).Object("big").If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	w.Write([]byte("x"))
	err = w.Close()
	if got, want := httpCode(err), http.StatusPreconditionFailed; got != want {
		t.Fatalf("DoesNotExist upload over an object: got code %d (%v), want %d", got, err, want)
	}
	if got, want := s.Counters().PreconditionFailures()-before, 1; got != want {
		t.Errorf("PreconditionFailures after a refused upload: got +%d, want +%d", got, want)
	}
}

func TestLatency(t *testing.T) {
	const latency = 60 * time.Millisecond
	s, c := start(t, Options{Latency: latency})
	ctx := context.Background()
	put(t, c, "a", []byte("a"))
	tests := []struct {
		name     string
		latency  time.Duration
		min, max time.Duration
	}{
		{"with latency", latency, latency, 10 * latency},
		{"latency off", 0, 0, latency},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.SetLatency(tt.latency)
			begin := time.Now()
			if _, err := c.Bucket(bucket).Object("a").Attrs(ctx); err != nil {
				t.Fatal(err)
			}
			if got := time.Since(begin); got < tt.min || got > tt.max {
				t.Errorf("Attrs took %v, want between %v and %v", got, tt.min, tt.max)
			}
		})
	}
}

func TestCounters(t *testing.T) {
	s, c := start(t, Options{})
	ctx := context.Background()
	cnt := s.Counters()
	cnt.Reset()
	put(t, c, "a", []byte("a"))
	for range 3 {
		if _, err := c.Bucket(bucket).Object("a").Attrs(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := cnt.Requests(), 4; got != want {
		t.Errorf("Requests after 1 upload + 3 Attrs: got %d, want %d", got, want)
	}
	if _, err := c.Bucket(bucket).Object("b").If(storage.Conditions{DoesNotExist: true}).CopierFrom(c.Bucket(bucket).Object("a")).Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := cnt.Rewrites("b"), 1; got != want {
		t.Errorf("Rewrites(b): got %d, want %d", got, want)
	}
	if got, want := cnt.RewrittenObjects(), 1; got != want {
		t.Errorf("RewrittenObjects: got %d, want %d", got, want)
	}
	cnt.Reset()
	if got := cnt.Requests() + cnt.Rewrites("b") + cnt.PreconditionFailures() + cnt.RewrittenObjects(); got != 0 {
		t.Errorf("counters after Reset: got sum %d, want 0", got)
	}
}

func TestSetDown(t *testing.T) {
	s, c := start(t, Options{})
	ctx := context.Background()
	put(t, c, "a", []byte("a"))
	s.SetDown(true)
	before := s.Counters().Requests()
	_, err := c.Bucket(bucket).Object("a").Attrs(ctx)
	if got, want := httpCode(err), http.StatusServiceUnavailable; got != want {
		t.Fatalf("Attrs while down: got code %d (%v), want %d", got, err, want)
	}
	// The client retried (MaxAttempts 3): every attempt reached the shim.
	if got, want := s.Counters().Requests()-before, 3; got != want {
		t.Errorf("requests while down: got %d, want %d (one per attempt)", got, want)
	}
	s.SetDown(false)
	if _, err := c.Bucket(bucket).Object("a").Attrs(ctx); err != nil {
		t.Fatalf("Attrs after SetDown(false): %v", err)
	}
}

func TestCorruptObject(t *testing.T) {
	s, c := start(t, Options{})
	ctx := context.Background()
	content := []byte("precious user data")
	before := put(t, c, "a", content)
	if err := s.CorruptObject(bucket, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.CorruptObject(bucket, "missing"); err == nil {
		t.Errorf("CorruptObject(missing): got nil error, want one")
	}
	after, err := c.Bucket(bucket).Object("a").Attrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The stored attributes are stale: same generation, size and CRC32C.
	if after.Generation != before.Generation || after.Size != before.Size || after.CRC32C != before.CRC32C {
		t.Errorf("attrs after corruption: got gen %d size %d crc %d, want the stale gen %d size %d crc %d",
			after.Generation, after.Size, after.CRC32C, before.Generation, before.Size, before.CRC32C)
	}
	// The bytes differ; the client's own CRC check on a full read notices.
	if _, err := read(t, c, "a"); err == nil || !strings.Contains(err.Error(), "CRC") {
		t.Errorf("checked read of a corrupted object: got %v, want a bad CRC error", err)
	}
	got, err := read(t, c, "a", storage.WithDisableReaderChecksum())
	if err != nil {
		t.Fatal(err)
	}
	crc := crc32.Checksum(got, crc32.MakeTable(crc32.Castagnoli))
	if len(got) != len(content) || bytes.Equal(got, content) || crc == before.CRC32C {
		t.Errorf("bytes after corruption: got %q (crc %d), want %d different bytes (crc != %d)", got, crc, len(content), before.CRC32C)
	}
}

// TestEmulatorHostEnv: code that builds its own client from
// STORAGE_EMULATOR_HOST (the local cloud's functions) reaches the shim.
func TestEmulatorHostEnv(t *testing.T) {
	s, _ := start(t, Options{})
	t.Setenv(EnvEmulatorHost, s.Host())
	ctx := context.Background()
	c, err := storage.NewClient(ctx)
	if err != nil {
		t.Fatalf("NewClient with %s: %v", EnvEmulatorHost, err)
	}
	defer c.Close()
	put(t, c, "env/a", []byte("via env"))
	if got, err := read(t, c, "env/a"); err != nil || string(got) != "via env" {
		t.Fatalf("read via env client: got %q, %v", got, err)
	}
	dst := c.Bucket(bucket).Object("env/b").If(storage.Conditions{DoesNotExist: true})
	for i, want := range []int{0, http.StatusPreconditionFailed} {
		_, err := dst.CopierFrom(c.Bucket(bucket).Object("env/a")).Run(ctx)
		if got := httpCode(err); got != want {
			t.Errorf("copy %d via env client: got code %d (%v), want %d", i, got, err, want)
		}
	}
}
