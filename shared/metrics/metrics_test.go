package metrics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ai-square/coalmine/infra/local/monitoringemu"
	"github.com/ai-square/coalmine/shared/metrics"
)

// t0 is a minute boundary.
var t0 = time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// setup starts the local Monitoring server with Google's timing on an injected clock, and a
// reader on it.
func setup(t *testing.T, o monitoringemu.Options) (*monitoringemu.Server, *metrics.Reader, *clock) {
	t.Helper()
	clk := &clock{t: t0}
	o.Now = clk.Now
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := monitoringemu.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	r, err := metrics.New(context.Background(), metrics.Options{Project: "p", ClientOptions: srv.ClientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return srv, r, clk
}

func request(rev string, at time.Time, status int, latency time.Duration) monitoringemu.Request {
	return monitoringemu.Request{Project: "p", Location: "asia-east1", Service: "web", Revision: rev, Time: at, Status: status, Latency: latency}
}

// TestRevisionCountsAndLatency: counts by class over the stage's whole minutes are exactly
// what was recorded (requests in the minute the stage began in, before it, are left out);
// the merged latency distribution holds every request and its p95 is within one bucket of
// the true p95; nothing is visible before Google's ingestion delay.
func TestRevisionCountsAndLatency(t *testing.T) {
	srv, r, clk := setup(t, monitoringemu.Options{})
	ctx := context.Background()
	stageStart := t0.Add(30 * time.Second)
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]int64{}
	var lat []float64
	// Before the stage's first whole minute: not the stage's.
	srv.RecordRequest(request("web-2", t0.Add(40*time.Second), 500, 10*time.Millisecond))
	for i := range 600 {
		at := t0.Add(time.Minute + time.Duration(i)*(5*time.Minute)/600)
		status, class := 200, "2xx"
		if rng.Float64() < 0.05 {
			status, class = 503, "5xx"
		}
		ms := 50 + rng.ExpFloat64()*100
		srv.RecordRequest(request("web-2", at, status, time.Duration(ms*float64(time.Millisecond))))
		want[class]++
		lat = append(lat, ms)
	}
	srv.RecordRequest(request("web-1", t0.Add(2*time.Minute), 200, time.Millisecond))
	end := t0.Add(6 * time.Minute)
	w := metrics.Window{Start: stageStart, End: end}

	clk.Set(end.Add(time.Minute)) // inside the 2–3 minute delay of the last minutes
	early, err := r.Revision(ctx, metrics.RevisionID{Service: "web", Revision: "web-2"}, w)
	if err != nil {
		t.Fatalf("before the delay: %v", err)
	}
	if early.Total() >= 600 {
		t.Errorf("a minute after the window, %d requests visible; want the last minutes still hidden", early.Total())
	}

	clk.Set(end.Add(3 * time.Minute))
	got, err := r.Revision(ctx, metrics.RevisionID{Service: "web", Revision: "web-2"}, w)
	if err != nil {
		t.Fatal(err)
	}
	if got.Window.Start != t0.Add(time.Minute) || got.Window.End != end {
		t.Errorf("window %v – %v, want %v – %v (whole minutes)", got.Window.Start, got.Window.End, t0.Add(time.Minute), end)
	}
	for _, class := range []string{"2xx", "5xx"} {
		if got.Classes[class] != want[class] {
			t.Errorf("%s = %d, want %d", class, got.Classes[class], want[class])
		}
	}
	f := got.Figures()
	if f.Requests.Total != 600 || f.Requests.Errors != want["5xx"] || f.Latency.Count() != 600 {
		t.Errorf("figures %+v (latency count %d), want 600 requests, %d errors, 600 latencies", f.Requests, f.Latency.Count(), want["5xx"])
	}
	slices.Sort(lat)
	trueP95 := lat[int(0.95*float64(len(lat)))-1]
	p95, ok := got.Latency.Quantile(0.95)
	if !ok {
		t.Fatal("no p95")
	}
	bucket := func(x float64) int { i, _ := slices.BinarySearch(got.Latency.Bounds, x); return i }
	if d := bucket(p95) - bucket(trueP95); d < -1 || d > 1 {
		t.Errorf("p95 %.1fms is %d buckets from the true %.1fms", p95, d, trueP95)
	}
}

// TestNoDataIsNotZero: a revision with no series, or a window not yet holding a whole
// alignment period, is an error the caller can tell apart, never zero requests.
func TestNoDataIsNotZero(t *testing.T) {
	srv, r, clk := setup(t, monitoringemu.Options{})
	ctx := context.Background()
	srv.RecordRequest(request("web-1", t0.Add(10*time.Second), 200, time.Millisecond))
	clk.Set(t0.Add(10 * time.Minute))
	_, err := r.Revision(ctx, metrics.RevisionID{Service: "web", Revision: "web-9"}, metrics.Window{Start: t0, End: t0.Add(5 * time.Minute)})
	if !errors.Is(err, metrics.ErrNoData) {
		t.Errorf("unknown revision: %v, want ErrNoData", err)
	}
	_, err = r.Revision(ctx, metrics.RevisionID{Service: "web", Revision: "web-1"}, metrics.Window{Start: t0.Add(10 * time.Second), End: t0.Add(50 * time.Second)})
	if !errors.Is(err, metrics.ErrWindow) {
		t.Errorf("window inside one minute: %v, want ErrWindow", err)
	}
	_, err = r.Connections(ctx, "p:db", metrics.Window{Start: t0, End: t0.Add(5 * time.Minute)})
	if !errors.Is(err, metrics.ErrNoData) {
		t.Errorf("connections never sampled: %v, want ErrNoData", err)
	}
	for _, e := range []error{metrics.ErrNoData, metrics.ErrWindow} {
		if metrics.Transient(e) {
			t.Errorf("Transient(%v) = true, want false", e)
		}
	}
}

// TestConnections: the highest instance-wide total (num_backends summed over databases at
// each time) in the window.
func TestConnections(t *testing.T) {
	srv, r, clk := setup(t, monitoringemu.Options{})
	for i, by := range []map[string]int64{{"a": 3, "b": 4}, {"a": 10, "b": 2}, {"a": 1}} {
		srv.RecordBackends(monitoringemu.Backends{Project: "p", DatabaseID: "p:db", Region: "r", Time: t0.Add(time.Duration(i+1) * time.Minute), ByDatabase: by})
	}
	clk.Set(t0.Add(10 * time.Minute))
	got, err := r.Connections(context.Background(), "p:db", metrics.Window{Start: t0, End: t0.Add(5 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if got != 12 {
		t.Errorf("connections = %v, want 12", got)
	}
	// An instance in another project than the service's is read in its own project.
	srv.RecordBackends(monitoringemu.Backends{Project: "data", DatabaseID: "data:db", Region: "r", Time: t0.Add(time.Minute), ByDatabase: map[string]int64{"a": 5}})
	if got, err := r.Connections(context.Background(), "data:db", metrics.Window{Start: t0, End: t0.Add(5 * time.Minute)}); err != nil || got != 5 {
		t.Errorf("connections of data:db = %v, %v; want 5", got, err)
	}
	if _, err := r.Connections(context.Background(), "db", metrics.Window{Start: t0, End: t0.Add(5 * time.Minute)}); !errors.Is(err, metrics.ErrPermanent) {
		t.Errorf("connections of a database_id without a project: %v, want ErrPermanent", err)
	}
}

// TestErrorsClassified: a query Monitoring refuses is permanent; a server that is gone is
// transient.
func TestErrorsClassified(t *testing.T) {
	srv, _, clk := setup(t, monitoringemu.Options{})
	clk.Set(t0.Add(10 * time.Minute))
	ctx := context.Background()
	// Google's minimum alignment is 60s: a 1s reader is refused as invalid.
	fine, err := metrics.New(ctx, metrics.Options{Project: "p", Alignment: time.Second, ClientOptions: srv.ClientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	defer fine.Close()
	_, err = fine.Revision(ctx, metrics.RevisionID{Service: "web", Revision: "web-1"}, metrics.Window{Start: t0, End: t0.Add(time.Minute)})
	if !errors.Is(err, metrics.ErrPermanent) || metrics.Transient(err) {
		t.Errorf("refused query: %v (transient %v), want ErrPermanent", err, metrics.Transient(err))
	}

	r, err := metrics.New(ctx, metrics.Options{Project: "p", ClientOptions: srv.ClientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	srv.Close()
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = r.Revision(qctx, metrics.RevisionID{Service: "web", Revision: "web-1"}, metrics.Window{Start: t0, End: t0.Add(time.Minute)})
	if err == nil || !metrics.Transient(err) {
		t.Errorf("server gone: %v, want a transient error", err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, o := range []metrics.Options{{}, {Project: "p", Alignment: 1500 * time.Millisecond}} {
		if _, err := metrics.New(context.Background(), o); err == nil {
			t.Errorf("New(%+v) = nil error", o)
		}
	}
}

// TestAlignedOnTheUnixGrid: windows are cut at multiples of the period since the Unix epoch,
// for periods that do not divide the time since year 1 (time.Truncate's grid) too.
func TestAlignedOnTheUnixGrid(t *testing.T) {
	for _, p := range []time.Duration{time.Second, 7 * time.Second, time.Minute, 420 * time.Second, time.Hour} {
		w := metrics.Window{Start: t0.Add(13 * time.Second), End: t0.Add(3*time.Hour + 17*time.Second)}
		got, ok := w.Aligned(p)
		if !ok {
			t.Fatalf("%v: no whole period", p)
		}
		for _, x := range []time.Time{got.Start, got.End} {
			if x.Unix()%int64(p/time.Second) != 0 {
				t.Errorf("%v: %v is not on the Unix grid", p, x)
			}
		}
		if got.Start.Before(w.Start) || got.Start.Sub(w.Start) >= p || got.End.After(w.End) || w.End.Sub(got.End) >= p {
			t.Errorf("%v: %v – %v is not %v – %v cut to whole periods", p, got.Start, got.End, w.Start, w.End)
		}
	}
	if _, ok := (metrics.Window{Start: t0.Add(time.Second), End: t0.Add(59 * time.Second)}).Aligned(time.Minute); ok {
		t.Error("a window inside one minute has a whole minute")
	}
}
