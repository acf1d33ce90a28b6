package monitoringemu_test

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"

	"github.com/ai-square/coalmine/infra/local/monitoringemu"
)

// BenchmarkRecordRequest measures the cost the front proxy pays per request, from
// parallel handlers on a few revisions.
func BenchmarkRecordRequest(b *testing.B) {
	srv, err := monitoringemu.New(monitoringemu.Options{Now: func() time.Time { return t0 }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			srv.RecordRequest(monitoringemu.Request{
				Project: project, Location: location, Service: service, Revision: revNames[i%4],
				Time: t0.Add(time.Duration(i%120) * time.Second), Status: 200 + int(i%2)*303,
				Latency: time.Duration(i%1000) * time.Millisecond,
			})
		}
	})
}

var revNames = [4]string{"api-1", "api-2", "api-3", "api-4"}

// TestRecordRequestConcurrent records from many goroutines while querying (run with
// -race) and checks that no request is lost.
func TestRecordRequestConcurrent(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{Fast: true})
	const workers, per = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service,
					Revision: fmt.Sprintf("api-%d", w%2), Time: t0.Add(time.Duration(i%5) * time.Second), Status: 200, Latency: time.Millisecond})
			}
		}()
	}
	q := window(project, countFilter, t0, t0.Add(5*time.Second), 5*time.Second, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM)
	e.clock.Set(t0.Add(5 * time.Second))
	for range 5 {
		e.mustList(t, q) // concurrently with the writers
	}
	wg.Wait()
	got := e.mustList(t, q)
	if len(got) != 1 || got[0].GetPoints()[0].GetValue().GetInt64Value() != workers*per {
		t.Errorf("got %s, want %d requests", render(got), workers*per)
	}
}
