package metrics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
)

// Connections returns the highest number of connections a Cloud SQL instance had over w: for
// each alignment period, each database's highest num_backends in it, summed over the
// instance's databases (ALIGN_MAX, then REDUCE_SUM: never below the instance's true peak,
// above it when the databases peak at different times), and the maximum over the window. databaseID is the cloudsql_database resource's database_id label,
// PROJECT:INSTANCE; the metrics are read in that project, which may differ from the
// reader's. It returns ErrNoData when Cloud Monitoring has no sample in w.
func (r *Reader) Connections(ctx context.Context, databaseID string, w Window) (float64, error) {
	project, _, ok := strings.Cut(databaseID, ":")
	if !ok || project == "" {
		return 0, fmt.Errorf("connections of %q: %w: database_id must be PROJECT:INSTANCE", databaseID, ErrPermanent)
	}
	aw, ok := w.Aligned(r.alignment)
	if !ok {
		return 0, fmt.Errorf("connections of %s (alignment %v): %w", databaseID, r.alignment, ErrWindow)
	}
	filter := fmt.Sprintf(`metric.type = %q AND resource.type = %q AND resource.labels.database_id = %q`, NumBackends, resourceDatabase, databaseID)
	series, err := r.series(ctx, project, "connections of "+databaseID, filter, aw,
		r.aggregation(monitoringpb.Aggregation_ALIGN_MAX, monitoringpb.Aggregation_REDUCE_SUM, "resource.labels.database_id"))
	if err != nil {
		return 0, err
	}
	most, seen := math.Inf(-1), false
	for _, ts := range series {
		for _, p := range inWindow(ts, aw) {
			v := p.GetValue()
			x := float64(v.GetInt64Value())
			if _, ok := v.GetValue().(*monitoringpb.TypedValue_DoubleValue); ok {
				x = v.GetDoubleValue()
			}
			most, seen = math.Max(most, x), true
		}
	}
	if !seen {
		return 0, fmt.Errorf("connections of %s: %w", databaseID, ErrNoData)
	}
	return most, nil
}

func isNoData(err error) bool { return errors.Is(err, ErrNoData) }
