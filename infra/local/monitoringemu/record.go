package monitoringemu

import (
	"context"
	"sort"
	"time"

	"google.golang.org/genproto/googleapis/api/metric"
)

// Request is one request served by a Cloud Run revision, as the local Cloud Run
// emulator's front proxy saw it.
type Request struct {
	Project, Location, Service, Revision string
	// Time is when the request ended ("captured at the end of the request lifecycle");
	// zero means now by the server's clock.
	Time time.Time
	// Status is the HTTP status code sent.
	Status int
	// Latency is from when the request reached the revision until it was answered.
	Latency time.Duration
}

// RecordRequest adds r to run.googleapis.com/request_count and request_latencies of its
// revision, in the sample period that contains r.Time. It is safe for concurrent use and
// cheap (one short critical section, no allocation once the period exists).
func (s *Server) RecordRequest(r Request) {
	now := s.now()
	t := r.Time
	if t.IsZero() {
		t = now
	}
	ms := float64(r.Latency) / float64(time.Millisecond)
	if ms < 0 {
		ms = 0
	}
	s.run.record(runKey{project: r.Project, location: r.Location, service: r.Service, revision: r.Revision, code: r.Status}, t, ms, now)
}

// Backends is one sample of a Cloud SQL instance's connections per database.
type Backends struct {
	// Project is the project id; DatabaseID is Cloud SQL's "PROJECT:INSTANCE".
	Project, DatabaseID, Region string
	// Time is the sample time; zero means now by the server's clock.
	Time time.Time
	// ByDatabase is the number of connections per database.
	ByDatabase map[string]int64
}

// RecordBackends writes one cloudsql.googleapis.com/database/postgresql/num_backends
// point per database at b.Time (a later sample at the same time replaces it).
func (s *Server) RecordBackends(b Backends) {
	now := s.now()
	t := b.Time
	if t.IsZero() {
		t = now
	}
	res := map[string]string{"project_id": b.Project, "database_id": b.DatabaseID, "region": b.Region}
	st := s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	st.pruneLocked(now)
	for db, n := range b.ByDatabase {
		ml := map[string]string{"database": db}
		rs := st.seriesLocked(b.Project, MetricNumBackends, ml, ResourceCloudSQLDatabase, res, metric.MetricDescriptor_GAUGE, metric.MetricDescriptor_INT64, "1")
		rs.putLocked(rawPoint{start: t, end: t, visibleAt: t.Add(s.sqlDelay), v: value{i: n}})
	}
}

// seriesLocked returns the series with this identity, creating it.
func (st *store) seriesLocked(project, typ string, ml map[string]string, rt string, rl map[string]string, kind metric.MetricDescriptor_MetricKind, vt metric.MetricDescriptor_ValueType, unit string) *rawSeries {
	k := seriesKey(project, typ, ml, rt, rl)
	m := st.series[typ]
	if m == nil {
		m = make(map[string]*rawSeries)
		st.series[typ] = m
	}
	rs := m[k]
	if rs == nil {
		rs = &rawSeries{
			project: project, metricType: typ, metricLabels: copyLabels(ml),
			resourceType: rt, resLabels: copyLabels(rl), kind: kind, vtype: vt, unit: unit,
		}
		m[k] = rs
	}
	return rs
}

// putLocked inserts p in end-time order, replacing a point with the same end time.
func (rs *rawSeries) putLocked(p rawPoint) {
	n := len(rs.points)
	if n == 0 || rs.points[n-1].end.Before(p.end) {
		rs.points = append(rs.points, p)
		return
	}
	i := sort.Search(n, func(i int) bool { return !rs.points[i].end.Before(p.end) })
	if i < n && rs.points[i].end.Equal(p.end) {
		rs.points[i] = p
		return
	}
	rs.points = append(rs.points, rawPoint{})
	copy(rs.points[i+1:], rs.points[i:])
	rs.points[i] = p
}

// SampleEvery calls sample every period (real time) and records what it returns, until
// ctx is done or the server is closed. A sample's zero Time is set to the server's
// clock; errors are logged and the loop goes on. It returns at once; the local cloud
// uses it with SamplePostgres. Tests call RecordBackends directly instead.
func (s *Server) SampleEvery(ctx context.Context, period time.Duration, sample func(context.Context) (Backends, error)) {
	if period <= 0 {
		period = s.period
	}
	s.loops.Lock()
	defer s.loops.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-s.ctx.Done():
				cancel()
			case <-ctx.Done():
			}
		}()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			b, err := sample(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("sample backends", "error", err)
			} else {
				s.RecordBackends(b)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}
