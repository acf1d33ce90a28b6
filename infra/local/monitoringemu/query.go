package monitoringemu

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MaxAlignment is the largest alignment period accepted (Google: 104 weeks).
const MaxAlignment = 104 * 7 * 24 * time.Hour

// invalid returns an INVALID_ARGUMENT status.
func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// projectOf parses "projects/P".
func projectOf(name string) (string, error) {
	p, ok := strings.CutPrefix(name, "projects/")
	if !ok || p == "" || strings.Contains(p, "/") {
		return "", invalid("name %q: want projects/PROJECT_ID", name)
	}
	return p, nil
}

// timeSeriesQuery is a validated ListTimeSeries request, without paging.
type timeSeriesQuery struct {
	project    string
	metricType string
	clauses    []clause
	start, end time.Time // start == end for a point query
	aligner    monitoringpb.Aggregation_Aligner
	period     time.Duration
	reducer    monitoringpb.Aggregation_Reducer
	groupBy    []groupField
	headers    bool
}

// groupField is a parsed group_by_fields entry.
type groupField struct {
	kind fieldKind // fieldResourceType, fieldResourceLabel, fieldMetricLabel
	key  string
}

// supported aligners and reducers; the rest are refused by name.
var supportedAligners = map[monitoringpb.Aggregation_Aligner]bool{
	monitoringpb.Aggregation_ALIGN_NONE: true, monitoringpb.Aggregation_ALIGN_DELTA: true,
	monitoringpb.Aggregation_ALIGN_RATE: true, monitoringpb.Aggregation_ALIGN_SUM: true,
	monitoringpb.Aggregation_ALIGN_MEAN: true, monitoringpb.Aggregation_ALIGN_MAX: true,
	monitoringpb.Aggregation_ALIGN_MIN: true, monitoringpb.Aggregation_ALIGN_COUNT: true,
	monitoringpb.Aggregation_ALIGN_PERCENTILE_50: true, monitoringpb.Aggregation_ALIGN_PERCENTILE_95: true,
	monitoringpb.Aggregation_ALIGN_PERCENTILE_99: true, monitoringpb.Aggregation_ALIGN_NEXT_OLDER: true,
}

var supportedReducers = map[monitoringpb.Aggregation_Reducer]bool{
	monitoringpb.Aggregation_REDUCE_NONE: true, monitoringpb.Aggregation_REDUCE_SUM: true,
	monitoringpb.Aggregation_REDUCE_MEAN: true, monitoringpb.Aggregation_REDUCE_MAX: true,
	monitoringpb.Aggregation_REDUCE_MIN: true, monitoringpb.Aggregation_REDUCE_COUNT: true,
	monitoringpb.Aggregation_REDUCE_PERCENTILE_50: true, monitoringpb.Aggregation_REDUCE_PERCENTILE_95: true,
	monitoringpb.Aggregation_REDUCE_PERCENTILE_99: true,
}

// parseQuery validates req (everything but paging) against the server's minimum
// alignment period.
func parseQuery(req *monitoringpb.ListTimeSeriesRequest, minAlign time.Duration) (*timeSeriesQuery, error) {
	q := &timeSeriesQuery{}
	var err error
	if q.project, err = projectOf(req.GetName()); err != nil {
		return nil, err
	}
	if q.metricType, q.clauses, err = parseFilter(req.GetFilter(), true); err != nil {
		return nil, invalid("filter %q: %v", req.GetFilter(), err)
	}
	iv := req.GetInterval()
	if iv.GetEndTime() == nil {
		return nil, invalid("interval.end_time is required")
	}
	if err := iv.GetEndTime().CheckValid(); err != nil {
		return nil, invalid("interval.end_time: %v", err)
	}
	q.end = iv.GetEndTime().AsTime()
	q.start = q.end
	if iv.GetStartTime() != nil {
		if err := iv.GetStartTime().CheckValid(); err != nil {
			return nil, invalid("interval.start_time: %v", err)
		}
		q.start = iv.GetStartTime().AsTime()
		if q.start.After(q.end) {
			return nil, invalid("interval.start_time %s is later than interval.end_time %s", q.start.Format(time.RFC3339Nano), q.end.Format(time.RFC3339Nano))
		}
	}
	switch req.GetView() {
	case monitoringpb.ListTimeSeriesRequest_FULL:
	case monitoringpb.ListTimeSeriesRequest_HEADERS:
		q.headers = true
	default:
		return nil, invalid("view %v is not supported (FULL or HEADERS)", req.GetView())
	}
	if req.GetOrderBy() != "" {
		return nil, invalid("order_by %q: must be empty", req.GetOrderBy())
	}
	if sa := req.GetSecondaryAggregation(); sa != nil && (sa.GetAlignmentPeriod() != nil || sa.GetPerSeriesAligner() != 0 || sa.GetCrossSeriesReducer() != 0 || len(sa.GetGroupByFields()) > 0) {
		return nil, invalid("secondary_aggregation is not supported by this emulator")
	}
	agg := req.GetAggregation()
	q.aligner = agg.GetPerSeriesAligner()
	q.reducer = agg.GetCrossSeriesReducer()
	if !supportedAligners[q.aligner] {
		return nil, invalid("aggregation.per_series_aligner %v is not supported by this emulator", q.aligner)
	}
	if !supportedReducers[q.reducer] {
		return nil, invalid("aggregation.cross_series_reducer %v is not supported by this emulator", q.reducer)
	}
	if q.aligner != monitoringpb.Aggregation_ALIGN_NONE {
		ap := agg.GetAlignmentPeriod()
		if ap == nil {
			return nil, invalid("aggregation.alignment_period is required with per_series_aligner %v", q.aligner)
		}
		if err := ap.CheckValid(); err != nil {
			return nil, invalid("aggregation.alignment_period: %v", err)
		}
		q.period = ap.AsDuration()
		if q.period < minAlign {
			return nil, invalid("aggregation.alignment_period %s is below the minimum of %s", q.period, minAlign)
		}
		if q.period > MaxAlignment {
			return nil, invalid("aggregation.alignment_period %s is above the maximum of %s", q.period, MaxAlignment)
		}
	}
	if q.reducer != monitoringpb.Aggregation_REDUCE_NONE {
		if q.aligner == monitoringpb.Aggregation_ALIGN_NONE {
			return nil, invalid("aggregation.cross_series_reducer %v requires a per_series_aligner other than ALIGN_NONE and an alignment_period", q.reducer)
		}
		for _, f := range agg.GetGroupByFields() {
			g, err := parseGroupField(f)
			if err != nil {
				return nil, invalid("aggregation.group_by_fields: %v", err)
			}
			q.groupBy = append(q.groupBy, g)
		}
	}
	// Without a reducer group_by_fields are ignored, as documented by Google.
	if q.start.Equal(q.end) && q.aligner != monitoringpb.Aggregation_ALIGN_NONE {
		// A point query with an aligner covers one alignment period ending at end_time.
		q.start = q.end.Add(-q.period)
	}
	return q, nil
}

func parseGroupField(f string) (groupField, error) {
	switch {
	case f == "resource.type":
		return groupField{kind: fieldResourceType}, nil
	case strings.HasPrefix(f, "resource.labels.") || strings.HasPrefix(f, "resource.label."):
		k := f[strings.Index(f[len("resource."):], ".")+len("resource.")+1:]
		if k != "" && !strings.ContainsAny(k, "./") {
			return groupField{kind: fieldResourceLabel, key: k}, nil
		}
	case strings.HasPrefix(f, "metric.labels.") || strings.HasPrefix(f, "metric.label."):
		k := f[strings.Index(f[len("metric."):], ".")+len("metric.")+1:]
		if k != "" && !strings.ContainsAny(k, "./") {
			return groupField{kind: fieldMetricLabel, key: k}, nil
		}
	}
	return groupField{}, fmt.Errorf("unsupported field %q (supported: resource.type, resource.labels.KEY, metric.labels.KEY)", f)
}

// isNumeric reports whether a value type is INT64 or DOUBLE.
func isNumeric(t metric.MetricDescriptor_ValueType) bool {
	return t == metric.MetricDescriptor_INT64 || t == metric.MetricDescriptor_DOUBLE
}

// alignedType checks aligner against a metric's kind and value type as Google documents
// (monitoringpb.Aggregation_Aligner) and returns the aligned kind and value type.
func alignedType(a monitoringpb.Aggregation_Aligner, k metric.MetricDescriptor_MetricKind, t metric.MetricDescriptor_ValueType) (metric.MetricDescriptor_MetricKind, metric.MetricDescriptor_ValueType, error) {
	gauge, delta, cum := k == metric.MetricDescriptor_GAUGE, k == metric.MetricDescriptor_DELTA, k == metric.MetricDescriptor_CUMULATIVE
	distr := t == metric.MetricDescriptor_DISTRIBUTION
	bad := func() error {
		return invalid("aggregation.per_series_aligner %v is not valid for a %v %v metric", a, k, t)
	}
	switch a {
	case monitoringpb.Aggregation_ALIGN_NONE:
		return k, t, nil
	case monitoringpb.Aggregation_ALIGN_DELTA:
		if !(delta || cum) || !(isNumeric(t) || distr) {
			return 0, 0, bad()
		}
		if cum && distr {
			return 0, 0, invalid("aggregation.per_series_aligner ALIGN_DELTA on a CUMULATIVE DISTRIBUTION metric is not supported by this emulator")
		}
		return metric.MetricDescriptor_DELTA, t, nil
	case monitoringpb.Aggregation_ALIGN_RATE:
		if !(delta || cum) || !isNumeric(t) {
			return 0, 0, bad()
		}
		return metric.MetricDescriptor_GAUGE, metric.MetricDescriptor_DOUBLE, nil
	case monitoringpb.Aggregation_ALIGN_SUM:
		if !(gauge || delta) || !(isNumeric(t) || distr) {
			return 0, 0, bad()
		}
		return k, t, nil
	case monitoringpb.Aggregation_ALIGN_MEAN:
		if !(gauge || delta) || !(isNumeric(t) || distr) {
			return 0, 0, bad()
		}
		return metric.MetricDescriptor_GAUGE, metric.MetricDescriptor_DOUBLE, nil
	case monitoringpb.Aggregation_ALIGN_MAX, monitoringpb.Aggregation_ALIGN_MIN:
		if !(gauge || delta) || !isNumeric(t) {
			return 0, 0, bad()
		}
		return k, t, nil
	case monitoringpb.Aggregation_ALIGN_COUNT:
		if !(gauge || delta) || !(isNumeric(t) || t == metric.MetricDescriptor_BOOL) {
			return 0, 0, bad()
		}
		return k, metric.MetricDescriptor_INT64, nil
	case monitoringpb.Aggregation_ALIGN_PERCENTILE_50, monitoringpb.Aggregation_ALIGN_PERCENTILE_95, monitoringpb.Aggregation_ALIGN_PERCENTILE_99:
		if !(gauge || delta) || !distr {
			return 0, 0, bad()
		}
		return metric.MetricDescriptor_GAUGE, metric.MetricDescriptor_DOUBLE, nil
	case monitoringpb.Aggregation_ALIGN_NEXT_OLDER:
		if !gauge {
			return 0, 0, bad()
		}
		return k, t, nil
	}
	return 0, 0, bad()
}

// reducedType checks reducer against the aligned kind and value type and returns the
// reduced ones.
func reducedType(r monitoringpb.Aggregation_Reducer, k metric.MetricDescriptor_MetricKind, t metric.MetricDescriptor_ValueType) (metric.MetricDescriptor_MetricKind, metric.MetricDescriptor_ValueType, error) {
	distr := t == metric.MetricDescriptor_DISTRIBUTION
	bad := func() error {
		return invalid("aggregation.cross_series_reducer %v is not valid for aligned %v %v values", r, k, t)
	}
	if k == metric.MetricDescriptor_CUMULATIVE {
		return 0, 0, bad()
	}
	switch r {
	case monitoringpb.Aggregation_REDUCE_NONE:
		return k, t, nil
	case monitoringpb.Aggregation_REDUCE_SUM:
		if !(isNumeric(t) || distr) {
			return 0, 0, bad()
		}
		return k, t, nil
	case monitoringpb.Aggregation_REDUCE_MEAN:
		if !(isNumeric(t) || distr || t == metric.MetricDescriptor_BOOL) {
			return 0, 0, bad()
		}
		return metric.MetricDescriptor_GAUGE, metric.MetricDescriptor_DOUBLE, nil
	case monitoringpb.Aggregation_REDUCE_MAX, monitoringpb.Aggregation_REDUCE_MIN:
		if !isNumeric(t) {
			return 0, 0, bad()
		}
		return k, t, nil
	case monitoringpb.Aggregation_REDUCE_COUNT:
		return k, metric.MetricDescriptor_INT64, nil
	case monitoringpb.Aggregation_REDUCE_PERCENTILE_50, monitoringpb.Aggregation_REDUCE_PERCENTILE_95, monitoringpb.Aggregation_REDUCE_PERCENTILE_99:
		if !(isNumeric(t) || distr) {
			return 0, 0, bad()
		}
		return metric.MetricDescriptor_GAUGE, metric.MetricDescriptor_DOUBLE, nil
	}
	return 0, 0, bad()
}

func alignerPercentile(a monitoringpb.Aggregation_Aligner) float64 {
	switch a {
	case monitoringpb.Aggregation_ALIGN_PERCENTILE_50:
		return 50
	case monitoringpb.Aggregation_ALIGN_PERCENTILE_95:
		return 95
	}
	return 99
}

func reducerPercentile(r monitoringpb.Aggregation_Reducer) float64 {
	switch r {
	case monitoringpb.Aggregation_REDUCE_PERCENTILE_50:
		return 50
	case monitoringpb.Aggregation_REDUCE_PERCENTILE_95:
		return 95
	}
	return 99
}

// outPoint is an aligned or reduced point.
type outPoint struct {
	start, end time.Time
	v          value
}

func (p outPoint) value() value { return p.v }

// meanOf is the mean of the values of ps (at least one), read as numbers by num.
func meanOf[P any](ps []P, v func(P) value, num func(value) float64) float64 {
	var s float64
	for _, p := range ps {
		s += num(v(p))
	}
	return s / float64(len(ps))
}

// extremeOf returns the value of ps (at least one) whose number (by num) is the highest, or
// the lowest; the first of equals wins.
func extremeOf[P any](ps []P, v func(P) value, num func(value) float64, highest bool) value {
	best := v(ps[0])
	for _, p := range ps[1:] {
		a, b := num(v(p)), num(best)
		if (highest && a > b) || (!highest && a < b) {
			best = v(p)
		}
	}
	return best
}

// outSeries is a result series before conversion to protobuf.
type outSeries struct {
	metricType   string
	metricLabels map[string]string
	resourceType string
	resLabels    map[string]string
	kind         metric.MetricDescriptor_MetricKind
	vtype        metric.MetricDescriptor_ValueType
	unit         string
	points       []outPoint // newest first
}

// periodOf is the index k of the alignment period holding a point that ends at t <= end:
// periods are anchored at the interval's end time and step back by the alignment
// period, period k being (end-(k+1)·P, end-k·P].
func (q *timeSeriesQuery) periodOf(t time.Time) int {
	return int(q.end.Sub(t) / q.period)
}

// inInterval reports whether a point ending at t is in the query interval (start, end];
// a point query (start == end) selects points ending exactly at end.
func (q *timeSeriesQuery) inInterval(t time.Time) bool {
	if q.start.Equal(q.end) {
		return t.Equal(q.end)
	}
	return t.After(q.start) && !t.After(q.end)
}

// run evaluates q over the visible raw series of its metric type.
func (q *timeSeriesQuery) run(desc *metric.MetricDescriptor, raws []*rawSeries) ([]*outSeries, error) {
	kind, vtype := desc.GetMetricKind(), desc.GetValueType()
	akind, atype, err := alignedType(q.aligner, kind, vtype)
	if err != nil {
		return nil, err
	}
	rkind, rtype, err := reducedType(q.reducer, akind, atype)
	if err != nil {
		return nil, err
	}
	unit := desc.GetUnit()
	switch q.aligner {
	case monitoringpb.Aggregation_ALIGN_RATE:
		unit += "/s"
	case monitoringpb.Aggregation_ALIGN_COUNT:
		unit = "1"
	}
	if q.reducer == monitoringpb.Aggregation_REDUCE_COUNT {
		unit = "1"
	}
	var aligned []*outSeries
	for _, rs := range raws {
		if !matchSeries(q.clauses, rs) {
			continue
		}
		os := &outSeries{
			metricType: rs.metricType, metricLabels: rs.metricLabels,
			resourceType: rs.resourceType, resLabels: rs.resLabels,
			kind: akind, vtype: atype, unit: unit,
		}
		if q.aligner == monitoringpb.Aggregation_ALIGN_NONE {
			for i := len(rs.points) - 1; i >= 0; i-- {
				p := rs.points[i]
				if q.inInterval(p.end) {
					os.points = append(os.points, outPoint{start: p.start, end: p.end, v: p.v})
				}
			}
		} else {
			// Only periods with data yield a point: group the points by period (points are
			// oldest first, so each group is too, and the newest period has the lowest k).
			var ks []int
			byK := map[int][]rawPoint{}
			for _, p := range rs.points {
				if !q.inInterval(p.end) {
					continue
				}
				k := q.periodOf(p.end)
				if _, ok := byK[k]; !ok {
					ks = append(ks, k)
				}
				byK[k] = append(byK[k], p)
			}
			sort.Ints(ks)
			for _, k := range ks {
				pe := q.end.Add(-time.Duration(k) * q.period)
				p, err := q.align(rs, byK[k], pe.Add(-q.period), pe, kind, vtype)
				if err != nil {
					return nil, err
				}
				if akind == metric.MetricDescriptor_GAUGE {
					p.start = p.end
				}
				os.points = append(os.points, p)
			}
		}
		if len(os.points) > 0 {
			aligned = append(aligned, os)
		}
	}
	out := aligned
	if q.reducer != monitoringpb.Aggregation_REDUCE_NONE {
		if out, err = q.reduce(aligned, rkind, rtype, atype); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].sortKey() < out[j].sortKey() })
	return out, nil
}

func (o *outSeries) sortKey() string {
	var b strings.Builder
	b.WriteString(o.resourceType)
	b.WriteByte(0)
	writeLabels(&b, o.resLabels)
	b.WriteByte(0)
	writeLabels(&b, o.metricLabels)
	return b.String()
}

// align computes the aligned point of rs for the period (ps, pe] from its points in
// the period, in (oldest first, at least one).
func (q *timeSeriesQuery) align(rs *rawSeries, in []rawPoint, ps, pe time.Time, kind metric.MetricDescriptor_MetricKind, vtype metric.MetricDescriptor_ValueType) (outPoint, error) {
	op := outPoint{start: ps, end: pe}
	isDist := vtype == metric.MetricDescriptor_DISTRIBUTION
	isInt := vtype == metric.MetricDescriptor_INT64
	num := func(v value) float64 {
		if isInt {
			return float64(v.i)
		}
		return v.d
	}
	switch q.aligner {
	case monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_ALIGN_RATE, monitoringpb.Aggregation_ALIGN_SUM:
		var sum value
		if kind == metric.MetricDescriptor_CUMULATIVE {
			// The increase over the period: from the last point before the period (if
			// any) through the period's points, each point adds its growth since the
			// previous point of the same cumulation (same start time), or its whole value
			// after a reset (a new start time). Numbers only (see alignedType).
			var prev *rawPoint
			if i := sort.Search(len(rs.points), func(i int) bool { return rs.points[i].end.After(ps) }); i > 0 {
				prev = &rs.points[i-1]
			}
			for k := range in {
				p := &in[k]
				if prev != nil && p.start.Equal(prev.start) {
					sum.i += p.v.i - prev.v.i
					sum.d += p.v.d - prev.v.d
				} else {
					sum.i += p.v.i
					sum.d += p.v.d
				}
				prev = p
			}
		} else {
			if isDist {
				sum.dist = &dist{}
			}
			for _, p := range in {
				if isDist {
					if err := sum.dist.merge(p.v.dist); err != nil {
						return outPoint{}, invalid("%v", err)
					}
				} else {
					sum.i += p.v.i
					sum.d += p.v.d
				}
			}
		}
		if q.aligner == monitoringpb.Aggregation_ALIGN_RATE {
			op.v = value{d: num(sum) / q.period.Seconds()}
		} else {
			op.v = sum
		}
	case monitoringpb.Aggregation_ALIGN_MEAN:
		if isDist {
			d := &dist{}
			for _, p := range in {
				if err := d.merge(p.v.dist); err != nil {
					return outPoint{}, invalid("%v", err)
				}
			}
			op.v = value{d: d.mean}
		} else {
			op.v = value{d: meanOf(in, rawPoint.value, num)}
		}
	case monitoringpb.Aggregation_ALIGN_MAX, monitoringpb.Aggregation_ALIGN_MIN:
		op.v = extremeOf(in, rawPoint.value, num, q.aligner == monitoringpb.Aggregation_ALIGN_MAX)
	case monitoringpb.Aggregation_ALIGN_COUNT:
		op.v = value{i: int64(len(in))}
	case monitoringpb.Aggregation_ALIGN_PERCENTILE_50, monitoringpb.Aggregation_ALIGN_PERCENTILE_95, monitoringpb.Aggregation_ALIGN_PERCENTILE_99:
		d := &dist{}
		for _, p := range in {
			if err := d.merge(p.v.dist); err != nil {
				return outPoint{}, invalid("%v", err)
			}
		}
		op.v = value{d: d.percentile(alignerPercentile(q.aligner))}
	case monitoringpb.Aggregation_ALIGN_NEXT_OLDER:
		op.v = in[len(in)-1].v
	}
	return op, nil
}

// reduce combines aligned series by the group-by fields; each result keeps only the
// grouped labels (and the resource and metric types).
func (q *timeSeriesQuery) reduce(aligned []*outSeries, kind metric.MetricDescriptor_MetricKind, vtype, atype metric.MetricDescriptor_ValueType) ([]*outSeries, error) {
	type group struct {
		os      *outSeries
		members []*outSeries
	}
	groups := map[string]*group{}
	var order []string
	for _, a := range aligned {
		ml, rl := map[string]string{}, map[string]string{}
		for _, g := range q.groupBy {
			switch g.kind {
			case fieldResourceLabel:
				if v, ok := a.resLabels[g.key]; ok {
					rl[g.key] = v
				}
			case fieldMetricLabel:
				if v, ok := a.metricLabels[g.key]; ok {
					ml[g.key] = v
				}
			}
		}
		// resource.type is implicitly kept (Google's GroupByFields doc).
		rt := a.resourceType
		k := seriesKey("", a.metricType, ml, rt, rl)
		g := groups[k]
		if g == nil {
			g = &group{os: &outSeries{
				metricType: a.metricType, metricLabels: ml, resourceType: rt, resLabels: rl,
				kind: kind, vtype: vtype, unit: a.unit,
			}}
			groups[k] = g
			order = append(order, k)
		}
		g.members = append(g.members, a)
	}
	var out []*outSeries
	for _, k := range order {
		g := groups[k]
		// Points of the members by period end.
		byEnd := map[time.Time][]outPoint{}
		var ends []time.Time
		for _, m := range g.members {
			for _, p := range m.points {
				if _, ok := byEnd[p.end]; !ok {
					ends = append(ends, p.end)
				}
				byEnd[p.end] = append(byEnd[p.end], p)
			}
		}
		sort.Slice(ends, func(i, j int) bool { return ends[i].After(ends[j]) })
		for _, e := range ends {
			p, err := q.reducePoints(byEnd[e], atype)
			if err != nil {
				return nil, err
			}
			if kind == metric.MetricDescriptor_GAUGE {
				p.start = p.end
			}
			g.os.points = append(g.os.points, p)
		}
		out = append(out, g.os)
	}
	return out, nil
}

// reducePoints reduces the aligned points of one period across series; atype is their
// value type.
func (q *timeSeriesQuery) reducePoints(ps []outPoint, atype metric.MetricDescriptor_ValueType) (outPoint, error) {
	op := outPoint{start: ps[0].start, end: ps[0].end}
	isDist := atype == metric.MetricDescriptor_DISTRIBUTION
	num := func(v value) float64 {
		switch atype {
		case metric.MetricDescriptor_INT64:
			return float64(v.i)
		case metric.MetricDescriptor_BOOL:
			if v.b {
				return 1
			}
			return 0
		}
		return v.d
	}
	merged := func() (*dist, error) {
		d := &dist{}
		for _, p := range ps {
			if err := d.merge(p.v.dist); err != nil {
				return nil, invalid("%v", err)
			}
		}
		return d, nil
	}
	switch q.reducer {
	case monitoringpb.Aggregation_REDUCE_SUM:
		if isDist {
			d, err := merged()
			if err != nil {
				return op, err
			}
			op.v = value{dist: d}
		} else {
			for _, p := range ps {
				op.v.i += p.v.i
				op.v.d += p.v.d
			}
		}
	case monitoringpb.Aggregation_REDUCE_MEAN:
		if isDist {
			d, err := merged()
			if err != nil {
				return op, err
			}
			op.v = value{d: d.mean}
		} else {
			op.v = value{d: meanOf(ps, outPoint.value, num)}
		}
	case monitoringpb.Aggregation_REDUCE_MAX, monitoringpb.Aggregation_REDUCE_MIN:
		op.v = extremeOf(ps, outPoint.value, num, q.reducer == monitoringpb.Aggregation_REDUCE_MAX)
	case monitoringpb.Aggregation_REDUCE_COUNT:
		op.v = value{i: int64(len(ps))}
	default: // percentiles
		pct := reducerPercentile(q.reducer)
		if isDist {
			d, err := merged()
			if err != nil {
				return op, err
			}
			op.v = value{d: d.percentile(pct)}
		} else {
			vs := make([]float64, len(ps))
			for i, p := range ps {
				vs[i] = num(p.v)
			}
			op.v = value{d: percentileOf(vs, pct)}
		}
	}
	if math.IsNaN(op.v.d) {
		op.v.d = 0
	}
	return op, nil
}

// toProto converts a result series; headers drops the points.
func (o *outSeries) toProto(headers bool) *monitoringpb.TimeSeries {
	ts := &monitoringpb.TimeSeries{
		Metric:     &metric.Metric{Type: o.metricType, Labels: copyLabels(o.metricLabels)},
		Resource:   &monitoredres.MonitoredResource{Type: o.resourceType, Labels: copyLabels(o.resLabels)},
		MetricKind: o.kind,
		ValueType:  o.vtype,
		Unit:       o.unit,
	}
	if headers {
		return ts
	}
	for _, p := range o.points {
		iv := &monitoringpb.TimeInterval{EndTime: timestamppb.New(p.end)}
		if o.kind != metric.MetricDescriptor_GAUGE {
			iv.StartTime = timestamppb.New(p.start)
		}
		ts.Points = append(ts.Points, &monitoringpb.Point{Interval: iv, Value: typedValue(o.vtype, p.v)})
	}
	return ts
}

func copyLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func typedValue(t metric.MetricDescriptor_ValueType, v value) *monitoringpb.TypedValue {
	switch t {
	case metric.MetricDescriptor_INT64:
		return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: v.i}}
	case metric.MetricDescriptor_DOUBLE:
		return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DoubleValue{DoubleValue: v.d}}
	case metric.MetricDescriptor_BOOL:
		return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_BoolValue{BoolValue: v.b}}
	case metric.MetricDescriptor_STRING:
		return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_StringValue{StringValue: v.s}}
	case metric.MetricDescriptor_DISTRIBUTION:
		d := v.dist
		if d == nil {
			d = &dist{}
		}
		return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DistributionValue{DistributionValue: d.toProto()}}
	}
	return nil
}
