package monitoringemu_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/monitoringemu"
)

// alertTopic receives the notifications of the test channel.
const alertTopic = "projects/" + project + "/topics/coalmine-alerts"

// alertEnv is a server whose notifications are published on a real Pub/Sub server
// (pstest), with the official alerting clients connected to it.
type alertEnv struct {
	srv     *monitoringemu.Server
	clock   *clock
	ap      *monitoring.AlertPolicyClient
	nc      *monitoring.NotificationChannelClient
	ps      *pubsub.Client
	channel string // a pubsub channel to alertTopic
}

// newAlertEnv starts pstest, a server with opts (clock at t0, Publish through the official
// Pub/Sub client; AlertsManual unless loop) and the clients, and creates a channel to
// alertTopic with a subscription "alerts" on it.
func newAlertEnv(t *testing.T, opts monitoringemu.Options, loop bool) *alertEnv {
	t.Helper()
	ctx := context.Background()
	ps := pstest.NewServer()
	t.Cleanup(func() { ps.Close() })
	conn, err := grpc.NewClient(ps.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	psc, err := pubsub.NewClient(ctx, project, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { psc.Close() })
	if _, err := psc.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: alertTopic}); err != nil {
		t.Fatal(err)
	}
	if _, err := psc.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/" + project + "/subscriptions/alerts", Topic: alertTopic, AckDeadlineSeconds: 60,
	}); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: t0}
	opts.Now = clk.Now
	opts.AlertsManual = !loop
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	opts.Publish = func(ctx context.Context, topic string, data []byte) error {
		p := psc.Publisher(topic)
		defer p.Stop()
		_, err := p.Publish(ctx, &pubsub.Message{Data: data}).Get(ctx)
		return err
	}
	srv, err := monitoringemu.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	ap, err := monitoring.NewAlertPolicyClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ap.Close() })
	nc, err := monitoring.NewNotificationChannelClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	ch, err := nc.CreateNotificationChannel(ctx, &monitoringpb.CreateNotificationChannelRequest{
		Name:                "projects/" + project,
		NotificationChannel: &monitoringpb.NotificationChannel{Type: "pubsub", DisplayName: "coalmine alerts", Labels: map[string]string{"topic": alertTopic}},
	})
	if err != nil {
		t.Fatalf("CreateNotificationChannel: %v", err)
	}
	return &alertEnv{srv: srv, clock: clk, ap: ap, nc: nc, ps: psc, channel: ch.GetName()}
}

// create creates p in the test project.
func (e *alertEnv) create(t *testing.T, p *monitoringpb.AlertPolicy) *monitoringpb.AlertPolicy {
	t.Helper()
	got, err := e.ap.CreateAlertPolicy(context.Background(), &monitoringpb.CreateAlertPolicyRequest{Name: "projects/" + project, AlertPolicy: p})
	if err != nil {
		t.Fatalf("CreateAlertPolicy(%q): %v", p.GetDisplayName(), err)
	}
	return got
}

// evaluate runs EvaluateAlerts at t0+at (also the server's clock) and returns the
// notifications it published.
func (e *alertEnv) evaluate(t *testing.T, at time.Duration) []received {
	t.Helper()
	now := t0.Add(at)
	e.clock.Set(now)
	if err := e.srv.EvaluateAlerts(context.Background(), now); err != nil {
		t.Fatalf("EvaluateAlerts(t0+%s): %v", at, err)
	}
	return e.pull(t)
}

// received is one notification: decoded by events.DecodeIncident (what coalmine's Alert
// function parses) and as generic JSON for the fields the decoder does not keep.
type received struct {
	inc events.Incident
	raw map[string]any // the "incident" object
}

// pull returns the notifications waiting on the subscription (none: nil), acknowledged.
func (e *alertEnv) pull(t *testing.T) []received {
	t.Helper()
	ctx := context.Background()
	resp, err := e.ps.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{
		Subscription: "projects/" + project + "/subscriptions/alerts", MaxMessages: 100, ReturnImmediately: true,
	})
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	return e.decode(t, resp)
}

// waitPull waits until at least one notification arrives (or ctx ends) and returns them.
func (e *alertEnv) waitPull(ctx context.Context, t *testing.T) []received {
	t.Helper()
	for {
		resp, err := e.ps.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{
			Subscription: "projects/" + project + "/subscriptions/alerts", MaxMessages: 100,
		})
		if err != nil {
			t.Fatalf("Pull: %v", err)
		}
		if got := e.decode(t, resp); len(got) > 0 {
			return got
		}
	}
}

func (e *alertEnv) decode(t *testing.T, resp *pubsubpb.PullResponse) []received {
	t.Helper()
	var out []received
	var acks []string
	for _, m := range resp.GetReceivedMessages() {
		acks = append(acks, m.GetAckId())
		data := m.GetMessage().GetData()
		inc, err := events.DecodeIncident(data)
		if err != nil {
			t.Fatalf("published notification does not decode: %v\n%s", err, data)
		}
		var doc struct {
			Incident map[string]any `json:"incident"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		out = append(out, received{inc: inc, raw: doc.Incident})
	}
	if len(acks) > 0 {
		if err := e.ps.SubscriptionAdminClient.Acknowledge(context.Background(), &pubsubpb.AcknowledgeRequest{
			Subscription: "projects/" + project + "/subscriptions/alerts", AckIds: acks,
		}); err != nil {
			t.Fatalf("Acknowledge: %v", err)
		}
	}
	return out
}

// policies lists the test project's policies with filter.
func (e *alertEnv) policies(t *testing.T, filter string, pageSize int32) ([]*monitoringpb.AlertPolicy, error) {
	t.Helper()
	it := e.ap.ListAlertPolicies(context.Background(), &monitoringpb.ListAlertPoliciesRequest{Name: "projects/" + project, Filter: filter, PageSize: pageSize})
	var out []*monitoringpb.AlertPolicy
	for {
		p, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
}

// requests records, for each of n sample periods of length period from start, total
// requests of the revision of which failed answered 503 (the rest 200), all with latency.
func requests(srv *monitoringemu.Server, rev string, start time.Time, period time.Duration, n, total, failed int, latency time.Duration) {
	for p := range n {
		from := start.Add(time.Duration(p) * period)
		for i := range total {
			code := 200
			if i < failed {
				code = 503
			}
			srv.RecordRequest(monitoringemu.Request{
				Project: project, Location: location, Service: service, Revision: rev,
				Time: from.Add(time.Duration(i) * period / time.Duration(total)), Status: code, Latency: latency,
			})
		}
	}
}

// agg is one aggregation grouped by fields.
func agg(period time.Duration, a monitoringpb.Aggregation_Aligner, r monitoringpb.Aggregation_Reducer, groupBy ...string) []*monitoringpb.Aggregation {
	return []*monitoringpb.Aggregation{{AlignmentPeriod: durationpb.New(period), PerSeriesAligner: a, CrossSeriesReducer: r, GroupByFields: groupBy}}
}

const (
	requestCount = `metric.type = "run.googleapis.com/request_count" AND resource.type = "cloud_run_revision" AND resource.labels.service_name = "api"`
	errorCount   = requestCount + ` AND metric.labels.response_code_class = "5xx"`
	latencies    = `metric.type = "run.googleapis.com/request_latencies" AND resource.type = "cloud_run_revision" AND resource.labels.service_name = "api"`
)

// ratioCondition is a 5xx ratio condition per revision (reference §6 A's shape).
func ratioCondition(period time.Duration, threshold float64, duration time.Duration, missing monitoringpb.AlertPolicy_Condition_EvaluationMissingData) *monitoringpb.AlertPolicy_Condition {
	a := agg(period, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM, "resource.label.revision_name")
	return &monitoringpb.AlertPolicy_Condition{
		DisplayName: fmt.Sprintf("5xx / all requests > %v", threshold),
		Condition: &monitoringpb.AlertPolicy_Condition_ConditionThreshold{ConditionThreshold: &monitoringpb.AlertPolicy_Condition_MetricThreshold{
			Filter: errorCount, Aggregations: a,
			DenominatorFilter: requestCount, DenominatorAggregations: a,
			Comparison: monitoringpb.ComparisonType_COMPARISON_GT, ThresholdValue: threshold,
			Duration:              durationpb.New(duration),
			EvaluationMissingData: missing,
		}},
	}
}

// policyOf is a policy of one or more conditions notifying the env's channel.
func (e *alertEnv) policyOf(name string, cs ...*monitoringpb.AlertPolicy_Condition) *monitoringpb.AlertPolicy {
	return &monitoringpb.AlertPolicy{
		DisplayName:          name,
		Conditions:           cs,
		Combiner:             monitoringpb.AlertPolicy_OR,
		NotificationChannels: []string{e.channel},
		Severity:             monitoringpb.AlertPolicy_ERROR,
		UserLabels:           map[string]string{"service": "api"},
		Documentation:        &monitoringpb.AlertPolicy_Documentation{Content: "Roll back.", MimeType: "text/markdown"},
	}
}

// openIncidents returns the server's open incidents.
func openIncidents(srv *monitoringemu.Server) []monitoringemu.Incident {
	var out []monitoringemu.Incident
	for _, in := range srv.Incidents() {
		if in.State == monitoringemu.IncidentOpen {
			out = append(out, in)
		}
	}
	return out
}
