package monitoringemu

import (
	"context"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/genproto/googleapis/api/label"
	"google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// MaxPageSize is the largest page ListTimeSeries returns (Google's limit).
const MaxPageSize = 100000

// MaxSeriesPerWrite is the most time series one CreateTimeSeries may carry.
const MaxSeriesPerWrite = 200

// metricAPI serves google.monitoring.v3.MetricService for a Server (kept apart so that
// the RPC methods are not part of Server's API); the other RPCs are UNIMPLEMENTED.
type metricAPI struct {
	monitoringpb.UnimplementedMetricServiceServer
	*Server
}

// query evaluates a ListTimeSeries request (all pages) at the server's clock.
func (s *Server) query(req *monitoringpb.ListTimeSeriesRequest) ([]*monitoringpb.TimeSeries, error) {
	q, err := parseQuery(req, s.minAlign)
	if err != nil {
		return nil, err
	}
	res, err := s.runQuery(q, s.now())
	if err != nil {
		return nil, err
	}
	out := make([]*monitoringpb.TimeSeries, len(res))
	for i, o := range res {
		out[i] = o.toProto(q.headers)
	}
	return out, nil
}

// descriptorOf returns the descriptor of a metric type a query names: nil (and no error)
// for a custom or workload metric never written, INVALID_ARGUMENT for a Google metric the
// server does not produce.
func (s *Server) descriptorOf(metricType string) (*metric.MetricDescriptor, error) {
	s.store.mu.Lock()
	desc := s.store.descriptors[metricType]
	s.store.mu.Unlock()
	if desc == nil && isGoogleMetric(metricType) {
		// A Google metric this server does not produce: answering "no data" would read
		// as silence, so refuse it by name.
		return nil, status.Errorf(codes.InvalidArgument, "filter: metric.type %q is not served by the local Monitoring server (it serves %s, %s, %s and custom/workload metrics written with CreateTimeSeries)",
			metricType, MetricRequestCount, MetricRequestLatencies, MetricNumBackends)
	}
	return desc, nil
}

// runQuery evaluates a parsed query over the data visible at now. It is the query engine
// ListTimeSeries and alert evaluation share.
func (s *Server) runQuery(q *timeSeriesQuery, now time.Time) ([]*outSeries, error) {
	desc, err := s.descriptorOf(q.metricType)
	if err != nil {
		return nil, err
	}
	if desc == nil {
		// A custom or workload metric never written: no data, as at Google. Aggregation
		// shape was still validated.
		return nil, nil
	}
	raws := s.store.visible(q.project, q.metricType, now)
	if q.metricType == MetricRequestCount || q.metricType == MetricRequestLatencies {
		raws = mergeRaw(raws, s.run.visible(q.project, q.metricType, now, s.runDelay))
	}
	return q.run(desc, raws)
}

// mergeRaw adds b's series to a, merging the points of series with the same identity.
func mergeRaw(a, b []*rawSeries) []*rawSeries {
	if len(a) == 0 {
		return b
	}
	byKey := make(map[string]*rawSeries, len(a))
	for _, rs := range a {
		byKey[seriesKey(rs.project, rs.metricType, rs.metricLabels, rs.resourceType, rs.resLabels)] = rs
	}
	for _, rs := range b {
		k := seriesKey(rs.project, rs.metricType, rs.metricLabels, rs.resourceType, rs.resLabels)
		if x := byKey[k]; x != nil {
			x.points = append(x.points, rs.points...)
			sort.SliceStable(x.points, func(i, j int) bool { return x.points[i].end.Before(x.points[j].end) })
			continue
		}
		a = append(a, rs)
	}
	return a
}

// ListTimeSeries implements the RPC (see the package doc for what is supported).
func (s metricAPI) ListTimeSeries(ctx context.Context, req *monitoringpb.ListTimeSeriesRequest) (*monitoringpb.ListTimeSeriesResponse, error) {
	if req.GetPageSize() < 0 {
		return nil, invalid("page_size %d is negative", req.GetPageSize())
	}
	fp := requestFingerprint(req)
	offset := 0
	if t := req.GetPageToken(); t != "" {
		var err error
		if offset, err = parsePageToken(t, fp); err != nil {
			return nil, invalid("page_token: %v", err)
		}
	}
	all, err := s.query(req)
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	if size == 0 || size > MaxPageSize {
		size = MaxPageSize
	}
	if offset > len(all) {
		offset = len(all)
	}
	end := min(offset+size, len(all))
	resp := &monitoringpb.ListTimeSeriesResponse{TimeSeries: all[offset:end]}
	if end < len(all) {
		resp.NextPageToken = pageToken(end, fp)
	}
	if len(all) > 0 && all[0].GetUnit() != "" {
		resp.Unit = all[0].GetUnit()
	}
	return resp, nil
}

// requestFingerprint identifies a request without its paging fields, so that a token
// is only accepted for the query that produced it.
func requestFingerprint(req *monitoringpb.ListTimeSeriesRequest) uint64 {
	c := proto.Clone(req).(*monitoringpb.ListTimeSeriesRequest)
	c.PageToken, c.PageSize = "", 0
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

func pageToken(offset int, fp uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("v1:%d:%x", offset, fp)))
}

func parsePageToken(t string, fp uint64) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil {
		return 0, fmt.Errorf("malformed token")
	}
	parts := strings.Split(string(b), ":")
	if len(parts) != 3 || parts[0] != "v1" {
		return 0, fmt.Errorf("malformed token")
	}
	off, err := strconv.Atoi(parts[1])
	if err != nil || off < 0 {
		return 0, fmt.Errorf("malformed token")
	}
	if parts[2] != strconv.FormatUint(fp, 16) {
		return 0, fmt.Errorf("token belongs to another query")
	}
	return off, nil
}

// CreateTimeSeries writes one point per series, validating like Google (see the package
// doc). The request is atomic: any invalid series rejects the whole request with
// INVALID_ARGUMENT naming the series index.
func (s metricAPI) CreateTimeSeries(ctx context.Context, req *monitoringpb.CreateTimeSeriesRequest) (*emptypb.Empty, error) {
	project, err := projectOf(req.GetName())
	if err != nil {
		return nil, err
	}
	n := len(req.GetTimeSeries())
	if n == 0 {
		return nil, invalid("time_series: at least one series is required")
	}
	if n > MaxSeriesPerWrite {
		return nil, invalid("time_series: %d series, at most %d per request", n, MaxSeriesPerWrite)
	}
	now := s.now()
	st := s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	st.pruneLocked(now)
	type write struct {
		desc    *metric.MetricDescriptor
		newDesc bool
		ml, rl  map[string]string
		rt      string
		p       rawPoint
	}
	var writes []write
	seen := map[string]int{}
	pending := map[string]*metric.MetricDescriptor{} // descriptors created by this request
	for i, ts := range req.GetTimeSeries() {
		bad := func(format string, args ...any) error {
			return invalid("time_series[%d]: %s", i, fmt.Sprintf(format, args...))
		}
		typ := ts.GetMetric().GetType()
		if typ == "" {
			return nil, bad("metric.type is required")
		}
		if !writable(typ) {
			return nil, bad("metric type %q cannot be written (custom.googleapis.com/…, workload.googleapis.com/… or the emulator's built-in metrics)", typ)
		}
		rt := ts.GetResource().GetType()
		rlabels, ok := resourceLabelSet(rt)
		if !ok {
			return nil, bad("monitored resource type %q is not supported (cloud_run_revision, cloudsql_database, global)", rt)
		}
		rl := copyLabels(ts.GetResource().GetLabels())
		if rl == nil {
			rl = map[string]string{}
		}
		for k := range rl {
			if !rlabels[k] {
				return nil, bad("resource label %q is not a label of %s", k, rt)
			}
		}
		if p, ok := rl["project_id"]; ok && p != project {
			return nil, bad("resource label project_id %q differs from %s", p, req.GetName())
		}
		rl["project_id"] = project
		if len(ts.GetPoints()) != 1 {
			return nil, bad("exactly one point per series is required, got %d", len(ts.GetPoints()))
		}
		pt := ts.GetPoints()[0]
		vt, v, err := valueOf(pt.GetValue())
		if err != nil {
			return nil, bad("%v", err)
		}
		if ts.GetValueType() != metric.MetricDescriptor_VALUE_TYPE_UNSPECIFIED && ts.GetValueType() != vt {
			return nil, bad("value_type %v does not match the point's %v value", ts.GetValueType(), vt)
		}
		desc := st.descriptors[typ]
		newDesc := false
		if desc == nil {
			desc = pending[typ]
		}
		if desc == nil {
			kind := ts.GetMetricKind()
			if kind == metric.MetricDescriptor_METRIC_KIND_UNSPECIFIED {
				kind = metric.MetricDescriptor_GAUGE
			}
			desc = &metric.MetricDescriptor{Type: typ, MetricKind: kind, ValueType: vt, Unit: ts.GetUnit()}
			newDesc = true
			pending[typ] = desc
		}
		kind := desc.GetMetricKind()
		if ts.GetMetricKind() != metric.MetricDescriptor_METRIC_KIND_UNSPECIFIED && ts.GetMetricKind() != kind {
			return nil, bad("metric_kind %v does not match the descriptor of %s (%v)", ts.GetMetricKind(), typ, kind)
		}
		if vt != desc.GetValueType() {
			return nil, bad("value type %v does not match the descriptor of %s (%v)", vt, typ, desc.GetValueType())
		}
		if len(desc.GetMonitoredResourceTypes()) > 0 && !contains(desc.GetMonitoredResourceTypes(), rt) {
			return nil, bad("metric %s is not defined for monitored resource %s", typ, rt)
		}
		ml := copyLabels(ts.GetMetric().GetLabels())
		if isBuiltin(typ) {
			for k := range ml {
				if !hasLabel(desc, k) {
					return nil, bad("metric label %q is not a label of %s", k, typ)
				}
			}
		}
		// Interval.
		iv := pt.GetInterval()
		if iv.GetEndTime() == nil || iv.GetEndTime().CheckValid() != nil {
			return nil, bad("points[0].interval.end_time is required")
		}
		end := iv.GetEndTime().AsTime()
		start := end
		if iv.GetStartTime() != nil {
			if iv.GetStartTime().CheckValid() != nil {
				return nil, bad("points[0].interval.start_time is invalid")
			}
			start = iv.GetStartTime().AsTime()
		}
		if end.Before(now.Add(-Retention)) {
			return nil, bad("points[0].interval.end_time %s is more than 25 hours in the past", end.Format(time.RFC3339))
		}
		if end.After(now.Add(5 * time.Minute)) {
			return nil, bad("points[0].interval.end_time %s is more than 5 minutes in the future", end.Format(time.RFC3339))
		}
		switch kind {
		case metric.MetricDescriptor_GAUGE:
			if !start.Equal(end) {
				return nil, bad("GAUGE point: start_time must be absent or equal to end_time")
			}
		case metric.MetricDescriptor_DELTA, metric.MetricDescriptor_CUMULATIVE:
			if !start.Before(end) {
				return nil, bad("%v point: start_time must be earlier than end_time", kind)
			}
		}
		key := seriesKey(project, typ, ml, rt, rl)
		if j, dup := seen[key]; dup {
			return nil, bad("same time series as time_series[%d]: one point per series per request", j)
		}
		seen[key] = i
		if rs := st.series[typ][key]; rs != nil && len(rs.points) > 0 {
			last := rs.points[len(rs.points)-1]
			switch kind {
			case metric.MetricDescriptor_GAUGE:
				if end.Before(last.end.Add(time.Millisecond)) {
					return nil, bad("points must be written in order: end_time %s is not after the last point's %s", end.Format(time.RFC3339Nano), last.end.Format(time.RFC3339Nano))
				}
			case metric.MetricDescriptor_DELTA:
				if start.Before(last.end.Add(time.Millisecond)) {
					return nil, bad("DELTA points must not overlap: start_time %s is not after the last point's end_time %s", start.Format(time.RFC3339Nano), last.end.Format(time.RFC3339Nano))
				}
			case metric.MetricDescriptor_CUMULATIVE:
				if !end.After(last.end) || (!start.Equal(last.start) && start.Before(last.end.Add(time.Millisecond))) {
					return nil, bad("CUMULATIVE points must keep the start time with increasing end times, or start after the last point")
				}
			}
		}
		visible := now
		if isBuiltin(typ) {
			visible = end.Add(s.builtinDelay(typ))
		}
		writes = append(writes, write{
			desc: desc, newDesc: newDesc, ml: ml, rl: rl, rt: rt,
			p: rawPoint{start: start, end: end, visibleAt: visible, v: v},
		})
	}
	for _, w := range writes {
		typ := w.desc.GetType()
		if w.newDesc {
			st.descriptors[typ] = w.desc
		}
		if !isBuiltin(typ) {
			for k := range w.ml {
				if !hasLabel(w.desc, k) {
					w.desc.Labels = append(w.desc.Labels, &label.LabelDescriptor{Key: k, ValueType: label.LabelDescriptor_STRING})
				}
			}
		}
		rs := st.seriesLocked(project, typ, w.ml, w.rt, w.rl, w.desc.GetMetricKind(), w.desc.GetValueType(), w.desc.GetUnit())
		rs.putLocked(w.p)
	}
	return &emptypb.Empty{}, nil
}

// builtinDelay is the ingestion delay of points written to a built-in metric: Cloud
// Run's maximum (or the configured delay), Cloud SQL's.
func (s *Server) builtinDelay(typ string) time.Duration {
	if typ == MetricNumBackends {
		return s.sqlDelay
	}
	switch {
	case s.opts.RunDelay != nil:
		return *s.opts.RunDelay
	case s.opts.Fast:
		return 0
	}
	return RunDelayMax
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func hasLabel(d *metric.MetricDescriptor, k string) bool {
	for _, l := range d.GetLabels() {
		if l.GetKey() == k {
			return true
		}
	}
	return false
}

// valueOf returns a written point's value type and value.
func valueOf(tv *monitoringpb.TypedValue) (metric.MetricDescriptor_ValueType, value, error) {
	switch v := tv.GetValue().(type) {
	case *monitoringpb.TypedValue_Int64Value:
		return metric.MetricDescriptor_INT64, value{i: v.Int64Value}, nil
	case *monitoringpb.TypedValue_DoubleValue:
		return metric.MetricDescriptor_DOUBLE, value{d: v.DoubleValue}, nil
	case *monitoringpb.TypedValue_BoolValue:
		return metric.MetricDescriptor_BOOL, value{b: v.BoolValue}, nil
	case *monitoringpb.TypedValue_StringValue:
		return metric.MetricDescriptor_STRING, value{s: v.StringValue}, nil
	case *monitoringpb.TypedValue_DistributionValue:
		d, err := distFromProto(v.DistributionValue)
		if err != nil {
			return 0, value{}, fmt.Errorf("points[0].value: %v", err)
		}
		return metric.MetricDescriptor_DISTRIBUTION, value{dist: d}, nil
	}
	return 0, value{}, fmt.Errorf("points[0].value is required")
}

// ListMetricDescriptors lists the known descriptors. Filters: empty, metric.type = "…"
// and metric.type = starts_with("…").
func (s metricAPI) ListMetricDescriptors(ctx context.Context, req *monitoringpb.ListMetricDescriptorsRequest) (*monitoringpb.ListMetricDescriptorsResponse, error) {
	project, err := projectOf(req.GetName())
	if err != nil {
		return nil, err
	}
	cs, err := descriptorFilter(req.GetFilter(), fieldMetricType, "metric.type", "metric descriptor")
	if err != nil {
		return nil, err
	}
	if req.GetPageToken() != "" {
		return nil, invalid("page_token: this emulator returns every descriptor in one page")
	}
	s.store.mu.Lock()
	var out []*metric.MetricDescriptor
	for typ, d := range s.store.descriptors {
		ok := true
		for _, c := range cs {
			ok = ok && c.matches(typ)
		}
		if ok {
			c := proto.Clone(d).(*metric.MetricDescriptor)
			c.Name = "projects/" + project + "/metricDescriptors/" + typ
			out = append(out, c)
		}
	}
	s.store.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].GetType() < out[j].GetType() })
	return &monitoringpb.ListMetricDescriptorsResponse{MetricDescriptors: out}, nil
}

// GetMetricDescriptor returns projects/P/metricDescriptors/TYPE.
func (s metricAPI) GetMetricDescriptor(ctx context.Context, req *monitoringpb.GetMetricDescriptorRequest) (*metric.MetricDescriptor, error) {
	project, typ, ok := strings.Cut(strings.TrimPrefix(req.GetName(), "projects/"), "/metricDescriptors/")
	if !strings.HasPrefix(req.GetName(), "projects/") || !ok || project == "" || typ == "" {
		return nil, invalid("name %q: want projects/PROJECT_ID/metricDescriptors/METRIC_TYPE", req.GetName())
	}
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	d := s.store.descriptors[typ]
	if d == nil {
		return nil, status.Errorf(codes.NotFound, "metric descriptor %s not found", req.GetName())
	}
	c := proto.Clone(d).(*metric.MetricDescriptor)
	c.Name = req.GetName()
	return c, nil
}

// ListMonitoredResourceDescriptors lists cloud_run_revision, cloudsql_database and
// global. Filters: empty or resource.type = "…".
func (s metricAPI) ListMonitoredResourceDescriptors(ctx context.Context, req *monitoringpb.ListMonitoredResourceDescriptorsRequest) (*monitoringpb.ListMonitoredResourceDescriptorsResponse, error) {
	project, err := projectOf(req.GetName())
	if err != nil {
		return nil, err
	}
	cs, err := descriptorFilter(req.GetFilter(), fieldResourceType, "resource.type", "monitored resource descriptor")
	if err != nil {
		return nil, err
	}
	var out []*monitoredres.MonitoredResourceDescriptor
	for _, d := range resourceDescriptors() {
		ok := true
		for _, c := range cs {
			ok = ok && c.matches(d.GetType())
		}
		if ok {
			d.Name = "projects/" + project + "/monitoredResourceDescriptors/" + d.GetType()
			out = append(out, d)
		}
	}
	return &monitoringpb.ListMonitoredResourceDescriptorsResponse{ResourceDescriptors: out}, nil
}

// GetMonitoredResourceDescriptor returns projects/P/monitoredResourceDescriptors/TYPE.
func (s metricAPI) GetMonitoredResourceDescriptor(ctx context.Context, req *monitoringpb.GetMonitoredResourceDescriptorRequest) (*monitoredres.MonitoredResourceDescriptor, error) {
	project, typ, ok := strings.Cut(strings.TrimPrefix(req.GetName(), "projects/"), "/monitoredResourceDescriptors/")
	if !strings.HasPrefix(req.GetName(), "projects/") || !ok || project == "" || typ == "" {
		return nil, invalid("name %q: want projects/PROJECT_ID/monitoredResourceDescriptors/TYPE", req.GetName())
	}
	for _, d := range resourceDescriptors() {
		if d.GetType() == typ {
			d.Name = req.GetName()
			return d, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "monitored resource descriptor %s not found", req.GetName())
}

// isGoogleMetric reports whether t is a metric of a Google service (SERVICE.googleapis.com/…)
// rather than a user-defined one (custom.googleapis.com, workload.googleapis.com, external…).
func isGoogleMetric(t string) bool {
	host, _, ok := strings.Cut(t, "/")
	return ok && strings.HasSuffix(host, ".googleapis.com") && host != "custom.googleapis.com" && host != "workload.googleapis.com"
}

// descriptorFilter parses a descriptor list's filter (empty: every descriptor), whose
// clauses may only name the one field kind (spelled field); what names the descriptors.
func descriptorFilter(filter string, kind fieldKind, field, what string) ([]clause, error) {
	if strings.TrimSpace(filter) == "" {
		return nil, nil
	}
	_, cs, err := parseFilter(filter, false)
	if err != nil {
		return nil, invalid("filter %q: %v", filter, err)
	}
	for _, c := range cs {
		if c.kind != kind {
			return nil, invalid("filter %q: only %s is supported in %s filters", filter, field, what)
		}
	}
	return cs, nil
}
