package monitoringemu

import (
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/api"
	"google.golang.org/genproto/googleapis/api/label"
	"google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Metric types the emulator knows without a write.
const (
	MetricRequestCount     = "run.googleapis.com/request_count"
	MetricRequestLatencies = "run.googleapis.com/request_latencies"
	MetricNumBackends      = "cloudsql.googleapis.com/database/postgresql/num_backends"
)

// Monitored resource types.
const (
	ResourceCloudRunRevision = "cloud_run_revision"
	ResourceCloudSQLDatabase = "cloudsql_database"
	ResourceGlobal           = "global"
)

// Google's ingestion delays ("After sampling, data is not visible for up to N seconds").
const (
	// RunDelayMin and RunDelayMax bound Cloud Run's delay: Google says "~2–3 min"; each
	// (series, period) point gets a deterministic delay in this range.
	RunDelayMin = 120 * time.Second
	RunDelayMax = 180 * time.Second
	// SQLIngestDelay is Cloud SQL's: "not visible for up to 165 seconds"; the emulator always
	// uses the maximum.
	SQLIngestDelay = 165 * time.Second
)

// writablePrefixes are the metric type prefixes CreateTimeSeries accepts besides the
// built-in metrics (which Google does not let users write; the emulator does, so that
// tests can inject data).
var writablePrefixes = []string{"custom.googleapis.com/", "workload.googleapis.com/"}

func strLabel(key, desc string) *label.LabelDescriptor {
	return &label.LabelDescriptor{Key: key, ValueType: label.LabelDescriptor_STRING, Description: desc}
}

// builtinMetrics returns the descriptors of the built-in metrics (without names).
func builtinMetrics() []*metric.MetricDescriptor {
	runLabels := []*label.LabelDescriptor{
		strLabel("response_code", "HTTP response code of a request."),
		strLabel("response_code_class", "HTTP response code class of a request."),
		strLabel("route", "Always empty."),
	}
	runMeta := &metric.MetricDescriptor_MetricDescriptorMetadata{
		SamplePeriod: durationpb.New(60 * time.Second),
		IngestDelay:  durationpb.New(RunDelayMax),
	}
	return []*metric.MetricDescriptor{
		{
			Type:                   MetricRequestCount,
			Labels:                 runLabels,
			MetricKind:             metric.MetricDescriptor_DELTA,
			ValueType:              metric.MetricDescriptor_INT64,
			Unit:                   "1",
			Description:            "Number of requests reaching the revision.",
			DisplayName:            "Request Count",
			Metadata:               runMeta,
			LaunchStage:            api.LaunchStage_GA,
			MonitoredResourceTypes: []string{ResourceCloudRunRevision},
		},
		{
			Type:                   MetricRequestLatencies,
			Labels:                 runLabels,
			MetricKind:             metric.MetricDescriptor_DELTA,
			ValueType:              metric.MetricDescriptor_DISTRIBUTION,
			Unit:                   "ms",
			Description:            "Distribution of request latency in milliseconds reaching the revision.",
			DisplayName:            "Request Latencies",
			Metadata:               runMeta,
			LaunchStage:            api.LaunchStage_GA,
			MonitoredResourceTypes: []string{ResourceCloudRunRevision},
		},
		{
			Type:        MetricNumBackends,
			Labels:      []*label.LabelDescriptor{strLabel("database", "Name of the database.")},
			MetricKind:  metric.MetricDescriptor_GAUGE,
			ValueType:   metric.MetricDescriptor_INT64,
			Unit:        "1",
			Description: "Number of connections to the Cloud SQL PostgreSQL instance.",
			DisplayName: "PostgreSQL Connections",
			Metadata: &metric.MetricDescriptor_MetricDescriptorMetadata{
				SamplePeriod: durationpb.New(60 * time.Second),
				IngestDelay:  durationpb.New(SQLIngestDelay),
			},
			LaunchStage:            api.LaunchStage_GA,
			MonitoredResourceTypes: []string{ResourceCloudSQLDatabase},
		},
	}
}

// resourceDescriptors are the monitored resource types the emulator knows (without names).
func resourceDescriptors() []*monitoredres.MonitoredResourceDescriptor {
	return []*monitoredres.MonitoredResourceDescriptor{
		{
			Type:        ResourceCloudRunRevision,
			DisplayName: "Cloud Run Revision",
			Description: "A revision in Cloud Run (fully managed).",
			Labels: []*label.LabelDescriptor{
				strLabel("project_id", "The identifier of the GCP project associated with this resource."),
				strLabel("service_name", "The name of the service."),
				strLabel("revision_name", "The name of the revision."),
				strLabel("location", "The region where the service is running."),
				strLabel("configuration_name", "The name of the configuration that created the revision."),
			},
			LaunchStage: api.LaunchStage_GA,
		},
		{
			Type:        ResourceCloudSQLDatabase,
			DisplayName: "Cloud SQL Database",
			Description: "A Cloud SQL database.",
			Labels: []*label.LabelDescriptor{
				strLabel("project_id", "The identifier of the GCP project associated with this resource."),
				strLabel("database_id", "The ID of the database (PROJECT_ID:INSTANCE_ID)."),
				strLabel("region", "The region in which the database is running."),
			},
			LaunchStage: api.LaunchStage_GA,
		},
		{
			Type:        ResourceGlobal,
			DisplayName: "Global",
			Description: "A global resource.",
			Labels: []*label.LabelDescriptor{
				strLabel("project_id", "The identifier of the GCP project associated with this resource."),
			},
			LaunchStage: api.LaunchStage_GA,
		},
	}
}

// resourceLabelSet returns the label keys of a known monitored resource type.
func resourceLabelSet(typ string) (map[string]bool, bool) {
	for _, d := range resourceDescriptors() {
		if d.GetType() == typ {
			m := make(map[string]bool, len(d.GetLabels()))
			for _, l := range d.GetLabels() {
				m[l.GetKey()] = true
			}
			return m, true
		}
	}
	return nil, false
}

// isBuiltin reports whether typ is a built-in metric type.
func isBuiltin(typ string) bool {
	return typ == MetricRequestCount || typ == MetricRequestLatencies || typ == MetricNumBackends
}

// writable reports whether CreateTimeSeries accepts metric type typ.
func writable(typ string) bool {
	if isBuiltin(typ) {
		return true
	}
	for _, p := range writablePrefixes {
		if strings.HasPrefix(typ, p) && len(typ) > len(p) {
			return true
		}
	}
	return false
}
