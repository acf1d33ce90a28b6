package gcs

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkCopy backs up 5,000 small objects from the local Cloud Storage
// with 20 ms of latency on every request, with 16 workers and with 1, and
// once more with 16 workers and no latency: the emulator's own cost.
// fake-gcs-server's memory backend scans a bucket's whole object list
// (formatting every object's ID) on each read and write, so its CPU cost per
// copy grows with the number of objects in the bucket; on a small machine it,
// not the 20 ms, bounds Workers=16. Benchmarks run only with -bench:
//
//	go test -run '^$' -bench Copy -benchtime 1x ./shared/backup/gcs
//
// Workers=1 takes about 5,000 x 20 ms = 100+ s.
func BenchmarkCopy(b *testing.B) {
	const objects = 5000
	e := newEnv(b, 0)
	e.seed(b, bucketA, objectNames("data/", objects))
	sources := []Source{{Bucket: bucketA, Prefix: "data/"}}
	for _, bc := range []struct {
		name    string
		workers int
		latency time.Duration
	}{
		{"Workers=16", 16, 20 * time.Millisecond},
		{"Workers=1", 1, 20 * time.Millisecond},
		{"Workers=16_NoLatency", 16, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// A backup bucket of its own: the emulator's cost per request
			// grows with the number of objects in a bucket.
			bucket := strings.ToLower(strings.NewReplacer("=", "-", "_", "-").Replace(bc.name))
			if err := e.client.Bucket(bucket).Create(context.Background(), "local", nil); err != nil {
				b.Fatal(err)
			}
			e.emu.SetLatency(bc.latency)
			defer e.emu.SetLatency(0)
			c := e.copier(bc.workers)
			c.WriteTimeout = time.Minute
			b.ResetTimer()
			begin := time.Now()
			for i := range b.N {
				res, err := c.Copy(context.Background(), CopyRequest{
					Sources: sources, Bucket: bucket, Prefix: fmt.Sprintf("run-%d/", i),
				})
				if err != nil {
					b.Fatalf("Copy: %v", err)
				}
				if !res.Done || res.Copied != objects {
					b.Fatalf("Copy: got done %v copied %d, want done, %d copied", res.Done, res.Copied, objects)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(objects*b.N)/time.Since(begin).Seconds(), "objects/s")
		})
	}
}
