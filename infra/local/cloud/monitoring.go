package cloud

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/monitoringemu"
	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/shared/alerting"
	"github.com/ai-square/coalmine/shared/metrics"
)

// Values of MonitoringModeEnv in local.env.
const (
	// MonitoringModeEnv says in local.env how the Monitoring server times its data.
	MonitoringModeEnv = "COALMINE_MONITORING_MODE"
	// MonitoringFast: no ingestion delay, 1s sample and alignment periods. No figure may be
	// taken from a cloud in this mode.
	MonitoringFast = "fast"
	// MonitoringGoogle: Google's timing (data visible 2–3 minutes after each minute ends,
	// alignment periods of at least 60s).
	MonitoringGoogle = "google"
)

// startMonitoring starts the Cloud Monitoring server.
func (c *Cloud) startMonitoring(cfg Config) error {
	var err error
	c.Monitoring, err = monitoringemu.New(monitoringemu.Options{
		Listen: cfg.Listen + ":0", Fast: cfg.Fast, Logger: c.log.With("component", "monitoring"),
		Publish: func(ctx context.Context, topic string, data []byte) error {
			_, err := c.publishTo(ctx, topic, data, nil)
			return err
		},
	})
	if err != nil {
		return fmt.Errorf("local cloud: monitoring: %w", err)
	}
	c.closers = append(c.closers, c.Monitoring.Close)
	return nil
}

// ensureAlerts creates the policy's alert policies (the alerts with a condition) on the
// Monitoring server, with a Pub/Sub channel to coalmine-alerts.
func (c *Cloud) ensureAlerts(ctx context.Context, cfg Config) error {
	timing := alerting.GoogleTiming()
	if cfg.Fast {
		timing = alerting.FastTiming() // 5s periods, a second of duration per minute of "for"
	}
	project, _, err := location(c.Policy)
	if err != nil {
		return err
	}
	topic := "projects/" + c.Project + "/topics/" + events.TopicAlerts
	c.Alerts, err = alerting.Ensure(ctx, c.Monitoring.ClientOptions(), project, topic, c.Policy, timing)
	if err != nil {
		return fmt.Errorf("local cloud: alert policies: %w", err)
	}
	return nil
}

// recordRequests feeds the Cloud Run emulator's requests to the Monitoring server, as Cloud
// Run counts them: only those that reached a revision's process (a 503 the front proxy
// answered itself because no ready revision could serve, or a 502 because the process could
// not be connected to, never reached a container).
func (c *Cloud) recordRequests() {
	stop := c.Run.OnRequest(func(r runemu.Request) {
		if !r.Reached || r.Revision == "" {
			return
		}
		c.Monitoring.RecordRequest(monitoringemu.Request{
			Project: c.runProject, Location: c.Region, Service: r.Service, Revision: r.Revision,
			Time: r.Time.Add(r.Latency), Status: r.Status, Latency: r.Latency,
		})
	})
	c.closers = append(c.closers, func() error { stop(); return nil })
}

// databaseIDs are the Cloud SQL instances (PROJECT:INSTANCE) the policy's gates name.
func (c *Cloud) databaseIDs() []string {
	ids := map[string]bool{}
	for _, s := range c.Policy.Services {
		if g := s.Gates.DBConnections; g != nil {
			ids[g.DatabaseID()] = true
		}
	}
	return slices.Sorted(maps.Keys(ids))
}

// sampleConnections records the local PostgreSQL's connections under every instance a gate
// names, once per sample period, until ctx ends or the server closes. It also warns when a gate's maxConnections
// is not the server's max_connections.
func (c *Cloud) sampleConnections(ctx context.Context, every time.Duration) {
	ids := c.databaseIDs()
	if len(ids) == 0 {
		return
	}
	if c.Postgres == nil {
		c.log.Warn("a gates.dbConnections names a Cloud SQL instance but the local cloud runs no PostgreSQL (no database backup uses the postgres driver, or PostgreSQL is not installed): the gate will have no data", "instances", ids)
		return
	}
	url := c.Postgres.URL("postgres")
	max, err := monitoringemu.MaxConnections(ctx, url)
	if err != nil {
		c.log.Warn("cannot read the local PostgreSQL's max_connections", "error", err.Error())
	}
	for _, s := range c.Policy.Services {
		if g := s.Gates.DBConnections; g != nil && err == nil && g.MaxConnections != max {
			c.log.Warn("gates.dbConnections.maxConnections is not the local PostgreSQL's max_connections",
				"service", s.Name, "maxConnections", g.MaxConnections, "max_connections", max)
		}
	}
	for _, id := range ids {
		project, _, _ := strings.Cut(id, ":") // Cloud SQL's metrics are in the instance's project
		c.Monitoring.SampleEvery(ctx, every, func(ctx context.Context) (monitoringemu.Backends, error) {
			by, err := monitoringemu.SamplePostgres(ctx, url)
			return monitoringemu.Backends{Project: project, DatabaseID: id, Region: c.Region, ByDatabase: by}, err
		})
	}
}

// monitoringEnv is what local.env says of the Monitoring server.
func (c *Cloud) monitoringEnv() map[string]string {
	mode := MonitoringGoogle
	if c.Monitoring.Fast() {
		mode = MonitoringFast
	}
	return map[string]string{metrics.EmulatorHostEnv: c.Monitoring.Addr(), MonitoringModeEnv: mode}
}
