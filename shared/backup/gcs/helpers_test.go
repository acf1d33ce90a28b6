package gcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	gax "github.com/googleapis/gax-go/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"

	"github.com/ai-square/coalmine/infra/local/gcsemu"
)

const (
	bucketA      = "src-a"
	bucketB      = "src-b"
	backupBucket = "backup"
)

// env is a local Cloud Storage with two source buckets and a backup bucket,
// and an official client with fast, bounded retries.
type env struct {
	emu    *gcsemu.Server
	client *storage.Client
}

func newEnv(tb testing.TB, latency time.Duration) *env {
	tb.Helper()
	emu, err := gcsemu.Start(gcsemu.Options{Latency: latency, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatalf("start gcsemu: %v", err)
	}
	tb.Cleanup(func() { emu.Close() })
	ctx := context.Background()
	client, err := emu.Client(ctx)
	if err != nil {
		tb.Fatalf("client: %v", err)
	}
	tb.Cleanup(func() { client.Close() })
	client.SetRetry(
		storage.WithBackoff(gax.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}),
		storage.WithMaxAttempts(3),
	)
	for _, b := range []string{bucketA, bucketB, backupBucket} {
		if err := client.Bucket(b).Create(ctx, "local", nil); err != nil {
			tb.Fatalf("create bucket %s: %v", b, err)
		}
	}
	return &env{emu: emu, client: client}
}

func (e *env) copier(workers int) *Copier {
	return &Copier{Client: e.client, Workers: workers, MaxAttempts: 3, WriteTimeout: 300 * time.Millisecond}
}

// content is the deterministic content of a seeded object; some are empty.
func content(bucket, name string) []byte {
	if strings.HasSuffix(name, "-0") {
		return nil
	}
	line := bucket + "/" + name + "\n"
	return bytes.Repeat([]byte(line), 1+len(name)%5)
}

// objectNames returns n names under prefix, spread over a few "directories",
// with one name that needs URL escaping.
func objectNames(prefix string, n int) []string {
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, fmt.Sprintf("%sdir-%d/obj-%d", prefix, i%7, i))
	}
	if n > 3 {
		out[3] = prefix + "ünïcode name #3?&=%.txt"
	}
	return out
}

// seed uploads the named objects with their content.
func (e *env) seed(tb testing.TB, bucket string, names []string) {
	tb.Helper()
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(32)
	for _, name := range names {
		g.Go(func() error { return e.put(ctx, bucket, name, content(bucket, name)) })
	}
	if err := g.Wait(); err != nil {
		tb.Fatalf("seed %s: %v", bucket, err)
	}
}

func (e *env) put(ctx context.Context, bucket, name string, data []byte) error {
	w := e.client.Bucket(bucket).Object(name).NewWriter(ctx)
	w.ContentType = "application/octet-stream"
	w.ChunkSize = 0 // one request, no 16 MiB buffer per object
	if _, err := w.Write(data); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, name, err)
	}
	return nil
}

func (e *env) read(tb testing.TB, bucket, name string) []byte {
	tb.Helper()
	r, err := e.client.Bucket(bucket).Object(name).NewReader(context.Background())
	if err != nil {
		tb.Fatalf("read %s/%s: %v", bucket, name, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		tb.Fatalf("read %s/%s: %v", bucket, name, err)
	}
	return data
}

// layout is the standard test data: two sources with prefixes, and decoys
// outside them that must not be backed up.
type layout struct {
	sources []Source
	want    map[string][]string // bucket -> names that must be backed up
}

func (e *env) seedLayout(tb testing.TB, perSource int) layout {
	tb.Helper()
	l := layout{
		sources: []Source{{Bucket: bucketA, Prefix: "users/"}, {Bucket: bucketB, Prefix: "sessions/2025/"}},
		want: map[string][]string{
			bucketA: objectNames("users/", perSource),
			bucketB: objectNames("sessions/2025/", perSource),
		},
	}
	e.seed(tb, bucketA, l.want[bucketA])
	e.seed(tb, bucketB, l.want[bucketB])
	e.seed(tb, bucketA, objectNames("tmp/", 10))
	e.seed(tb, bucketB, objectNames("sessions/2024/", 10))
	return l
}

func (l layout) total() int { return len(l.want[bucketA]) + len(l.want[bucketB]) }

func crc(data []byte) uint32 { return crc32.Checksum(data, castagnoli) }

// checkBackup checks that every wanted object has an entry with the size
// and CRC32C of its content, and nothing else is in entries; it compares the
// bytes of a sample of the copies (index 3 mod 10, which includes the
// escaped name).
func (e *env) checkBackup(t *testing.T, l layout, prefix string, entries []Entry) {
	t.Helper()
	byBackup := map[string]Entry{}
	for _, en := range entries {
		byBackup[en.Backup] = en
	}
	if got, want := len(byBackup), l.total(); got != want {
		t.Errorf("distinct entries: got %d, want %d", got, want)
	}
	for bucket, names := range l.want {
		for i, name := range names {
			b := backupName(prefix, bucket, name)
			en, ok := byBackup[b]
			if !ok {
				t.Errorf("no entry for %s/%s", bucket, name)
				continue
			}
			want := content(bucket, name)
			if en.Source != bucket || en.Name != name || en.Size != int64(len(want)) || en.CRC32C != crc(want) || en.Generation == 0 {
				t.Errorf("entry for %s/%s: got %+v, want size %d crc %08x", bucket, name, en, len(want), crc(want))
			}
			if i%10 != 3 {
				continue // Verify reads every byte; here a sample suffices
			}
			if got := e.read(t, backupBucket, b); !bytes.Equal(got, want) {
				t.Errorf("backup %s: got %q, want %q", b, got, want)
			}
		}
	}
}

// copyAll runs Copy in chunks of maxObjects until done, writing a manifest
// part per chunk and round-tripping the cursor through JSON as the function
// does through its annotation. It returns every entry and the number of
// calls.
func copyAll(t *testing.T, c *Copier, req CopyRequest) ([]Entry, int) {
	t.Helper()
	ctx := context.Background()
	var all []Entry
	for calls := 1; ; calls++ {
		res, err := c.Copy(ctx, req)
		if err != nil {
			t.Fatalf("Copy call %d from %+v: %v", calls, req.Cursor, err)
		}
		if err := c.WritePart(ctx, req.Bucket, req.Prefix, calls, res.Entries); err != nil {
			t.Fatalf("WritePart %d: %v", calls, err)
		}
		all = append(all, res.Entries...)
		if res.Done {
			return all, calls
		}
		if res.Next == req.Cursor {
			t.Fatalf("Copy call %d made no progress from %+v", calls, req.Cursor)
		}
		req.Cursor = roundTrip(t, res.Next)
		if calls > 10000 {
			t.Fatal("Copy never finished")
		}
	}
}

// listNames lists the object names under prefix.
func listNames(tb testing.TB, e *env, bucket, prefix string) []string {
	tb.Helper()
	var out []string
	it := e.client.Bucket(bucket).Objects(context.Background(), &storage.Query{Prefix: prefix})
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			tb.Fatalf("list %s/%s: %v", bucket, prefix, err)
		}
		out = append(out, a.Name)
	}
}
