package monitoringemu_test

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"github.com/jackc/pgx/v5"

	"github.com/ai-square/coalmine/infra/local/monitoringemu"
	"github.com/ai-square/coalmine/infra/local/postgres"
)

// TestPostgresSampling runs against a real PostgreSQL server (skipped when its binaries
// are absent, unless COALMINE_REQUIRE_POSTGRES is set).
func TestPostgresSampling(t *testing.T) {
	pg := postgres.StartForTest(t, postgres.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := pg.CreateDatabase(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	const held = 3
	for range held {
		c, err := pgx.Connect(ctx, pg.URL("app"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
	}

	got, err := monitoringemu.SamplePostgres(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatalf("SamplePostgres: %v", err)
	}
	// An autovacuum worker may visit "app" while we sample: allow one more.
	if got["app"] < held || got["app"] > held+1 {
		t.Errorf("connections to app: got %d, want %d (the held connections)", got["app"], held)
	}
	if got["postgres"] < 1 {
		t.Errorf("connections to postgres: got %d, want at least 1 (the sampling connection)", got["postgres"])
	}

	max, err := monitoringemu.MaxConnections(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatalf("MaxConnections: %v", err)
	}
	c, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var want int
	if err := c.QueryRow(ctx, `SELECT setting::int FROM pg_settings WHERE name = 'max_connections'`).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if max != want || max <= 0 {
		t.Errorf("MaxConnections: got %d, want %d", max, want)
	}

	// SampleEvery feeds num_backends from the real server. The loop is sequential, so
	// once the second sample is being taken the first one is recorded: the test waits on
	// a channel, not on a timer.
	e := newEnv(t, monitoringemu.Options{Fast: true})
	calls := make(chan struct{}, 1)
	e.srv.SampleEvery(ctx, time.Millisecond, func(ctx context.Context) (monitoringemu.Backends, error) {
		calls <- struct{}{}
		by, err := monitoringemu.SamplePostgres(ctx, pg.URL("postgres"))
		return monitoringemu.Backends{Project: project, DatabaseID: project + ":main", Region: location, ByDatabase: by}, err
	})
	<-calls
	<-calls
	series := e.mustList(t, window(project, `metric.type = "cloudsql.googleapis.com/database/postgresql/num_backends" AND metric.labels.database = "app"`,
		t0.Add(-time.Minute), t0, 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE))
	if len(series) != 1 || len(series[0].GetPoints()) != 1 {
		t.Fatalf("num_backends of app: got %d series, want 1 with 1 point", len(series))
	}
	if n := series[0].GetPoints()[0].GetValue().GetInt64Value(); n < held || n > held+1 {
		t.Errorf("num_backends of app: got %d, want %d", n, held)
	}
	go func() {
		for range calls { // let the loop finish its last sample
		}
	}()
	e.srv.Close()
	close(calls)
}

func TestSampleEveryStopsOnClose(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{Fast: true})
	calls := make(chan struct{}, 100)
	e.srv.SampleEvery(t.Context(), time.Millisecond, func(ctx context.Context) (monitoringemu.Backends, error) {
		select {
		case calls <- struct{}{}:
		default:
		}
		return monitoringemu.Backends{Project: project, DatabaseID: project + ":main", Region: location, ByDatabase: map[string]int64{"app": 2}}, nil
	})
	<-calls
	<-calls // at least two samples: it loops
	done := make(chan struct{})
	go func() { e.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not stop the SampleEvery loop")
	}
}
