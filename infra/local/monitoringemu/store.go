package monitoringemu

import (
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/api/metric"
)

// Retention is how long points are kept (Google keeps more; its writes and alerting
// windows stop at 25 hours, and memory stays bounded).
const Retention = 25 * time.Hour

// value is one point's value; which field is set depends on the series' value type.
type value struct {
	i    int64
	d    float64
	b    bool
	s    string
	dist *dist
}

// rawPoint is a stored point. start equals end for GAUGE points.
type rawPoint struct {
	start, end time.Time
	visibleAt  time.Time
	v          value
}

func (p rawPoint) value() value { return p.v }

// rawSeries is one time series: its identity and its points, oldest first.
type rawSeries struct {
	project      string
	metricType   string
	metricLabels map[string]string
	resourceType string
	resLabels    map[string]string
	kind         metric.MetricDescriptor_MetricKind
	vtype        metric.MetricDescriptor_ValueType
	unit         string
	points       []rawPoint
}

// seriesKey is the identity of a series: project, metric type and labels, resource
// type and labels.
func seriesKey(project, metricType string, ml map[string]string, rt string, rl map[string]string) string {
	var b strings.Builder
	b.WriteString(project)
	b.WriteByte(0)
	b.WriteString(metricType)
	b.WriteByte(0)
	writeLabels(&b, ml)
	b.WriteByte(0)
	b.WriteString(rt)
	b.WriteByte(0)
	writeLabels(&b, rl)
	return b.String()
}

func writeLabels(b *strings.Builder, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(strconv.Quote(k))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(m[k]))
		b.WriteByte(',')
	}
}

// store holds written series (CreateTimeSeries, RecordBackends) and metric descriptors.
// Cloud Run requests are aggregated separately (runStore) so that RecordRequest does not
// contend with queries.
type store struct {
	mu          sync.Mutex
	descriptors map[string]*metric.MetricDescriptor // by metric type, Name unset
	series      map[string]map[string]*rawSeries    // metric type → key → series
	lastPrune   time.Time
}

func newStore() *store {
	s := &store{
		descriptors: make(map[string]*metric.MetricDescriptor),
		series:      make(map[string]map[string]*rawSeries),
	}
	for _, d := range builtinMetrics() {
		s.descriptors[d.GetType()] = d
	}
	return s
}

// pruneLocked drops points that ended before now-Retention, at most once a minute.
func (s *store) pruneLocked(now time.Time) {
	if now.Sub(s.lastPrune) < time.Minute {
		return
	}
	s.lastPrune = now
	cut := now.Add(-Retention)
	for typ, m := range s.series {
		for k, rs := range m {
			i := sort.Search(len(rs.points), func(i int) bool { return rs.points[i].end.After(cut) })
			if i > 0 {
				rs.points = append(rs.points[:0:0], rs.points[i:]...)
			}
			if len(rs.points) == 0 {
				delete(m, k)
			}
		}
		if len(m) == 0 {
			delete(s.series, typ)
		}
	}
}

// visible returns copies of the series of metricType in project with the points visible
// at now (value pointers shared; callers must not modify them).
func (s *store) visible(project, metricType string, now time.Time) []*rawSeries {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	var out []*rawSeries
	for _, rs := range s.series[metricType] {
		if rs.project != project {
			continue
		}
		c := *rs
		c.points = nil
		for _, p := range rs.points {
			if !p.visibleAt.After(now) {
				c.points = append(c.points, p)
			}
		}
		if len(c.points) > 0 {
			out = append(out, &c)
		}
	}
	return out
}

// runKey identifies a Cloud Run series pair (request_count and request_latencies).
type runKey struct {
	project, location, service, revision string
	code                                 int
}

// runPeriod is one sample period's aggregate of requests.
type runPeriod struct {
	start time.Time
	count int64
	lat   dist
}

// runSeries holds the periods of one runKey, oldest first.
type runSeries struct {
	periods []*runPeriod
}

// runStore aggregates RecordRequest calls into sample periods.
type runStore struct {
	mu        sync.Mutex
	period    time.Duration
	series    map[runKey]*runSeries
	lastPrune time.Time
}

func newRunStore(period time.Duration) *runStore {
	return &runStore{period: period, series: make(map[runKey]*runSeries)}
}

// record adds one request to its period.
func (r *runStore) record(k runKey, t time.Time, ms float64, now time.Time) {
	start := t.Truncate(r.period)
	b := runBucketOf(ms)
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := r.series[k]
	if rs == nil {
		rs = &runSeries{}
		r.series[k] = rs
	}
	var p *runPeriod
	n := len(rs.periods)
	if n > 0 && rs.periods[n-1].start.Equal(start) {
		p = rs.periods[n-1]
	} else {
		i := sort.Search(n, func(i int) bool { return !rs.periods[i].start.Before(start) })
		if i < n && rs.periods[i].start.Equal(start) {
			p = rs.periods[i]
		} else {
			p = &runPeriod{start: start, lat: dist{opts: runLatencyOptions}}
			rs.periods = append(rs.periods, nil)
			copy(rs.periods[i+1:], rs.periods[i:])
			rs.periods[i] = p
		}
	}
	p.count++
	p.lat.add(ms, b)
	if now.Sub(r.lastPrune) >= time.Minute {
		r.pruneLocked(now)
	}
}

func (r *runStore) pruneLocked(now time.Time) {
	r.lastPrune = now
	cut := now.Add(-Retention)
	for k, rs := range r.series {
		i := 0
		for i < len(rs.periods) && !rs.periods[i].start.Add(r.period).After(cut) {
			i++
		}
		if i > 0 {
			rs.periods = append(rs.periods[:0:0], rs.periods[i:]...)
		}
		if len(rs.periods) == 0 {
			delete(r.series, k)
		}
	}
}

// runDelaySpread is the deterministic ingestion delay of one (series, period) point in
// [RunDelayMin, RunDelayMax], whole seconds: a hash of its identity, so that, as at
// Google, series of the same minute do not all appear at once.
func runDelaySpread(k runKey, start time.Time) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(k.project))
	h.Write([]byte{0})
	h.Write([]byte(k.location))
	h.Write([]byte{0})
	h.Write([]byte(k.service))
	h.Write([]byte{0})
	h.Write([]byte(k.revision))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(k.code)))
	h.Write([]byte(strconv.FormatInt(start.UnixNano(), 10)))
	span := int64((RunDelayMax - RunDelayMin) / time.Second)
	return RunDelayMin + time.Duration(int64(h.Sum64()%uint64(span+1)))*time.Second
}

// visible returns the Cloud Run series of metricType (request_count or
// request_latencies) in project whose points are visible at now, given the delay
// function.
func (r *runStore) visible(project, metricType string, now time.Time, delay func(runKey, time.Time) time.Duration) []*rawSeries {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.lastPrune) >= time.Minute {
		r.pruneLocked(now)
	}
	var out []*rawSeries
	for k, rs := range r.series {
		if k.project != project {
			continue
		}
		var pts []rawPoint
		for _, p := range rs.periods {
			end := p.start.Add(r.period)
			vis := end.Add(delay(k, p.start))
			if vis.After(now) || end.After(now) {
				continue
			}
			rp := rawPoint{start: p.start, end: end, visibleAt: vis}
			if metricType == MetricRequestCount {
				rp.v.i = p.count
			} else {
				rp.v.dist = p.lat.clone()
			}
			pts = append(pts, rp)
		}
		if len(pts) == 0 {
			continue
		}
		code := strconv.Itoa(k.code)
		rs := &rawSeries{
			project:    k.project,
			metricType: metricType,
			// route is "Always empty." at Google; empty labels are left out (a filter or
			// group-by on a missing label sees "").
			metricLabels: map[string]string{"response_code": code, "response_code_class": codeClass(k.code)},
			resourceType: ResourceCloudRunRevision,
			resLabels: map[string]string{
				"project_id":         k.project,
				"service_name":       k.service,
				"revision_name":      k.revision,
				"location":           k.location,
				"configuration_name": k.service,
			},
			kind:   metric.MetricDescriptor_DELTA,
			points: pts,
		}
		if metricType == MetricRequestCount {
			rs.vtype, rs.unit = metric.MetricDescriptor_INT64, "1"
		} else {
			rs.vtype, rs.unit = metric.MetricDescriptor_DISTRIBUTION, "ms"
		}
		out = append(out, rs)
	}
	return out
}

// codeClass is Cloud Run's response_code_class of an HTTP status: "2xx", "5xx"…
func codeClass(code int) string {
	return strconv.Itoa(code/100) + "xx"
}
