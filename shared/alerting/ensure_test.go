package alerting_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
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
	"google.golang.org/protobuf/proto"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/monitoringemu"
	"github.com/ai-square/coalmine/shared/alerting"
	"github.com/ai-square/coalmine/shared/policy"
)

const (
	project = "my-project"
	topic   = "projects/my-project/topics/coalmine-alerts"
)

// t0 is where the servers' clocks start.
var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// emulator starts a local Monitoring server (AlertsManual, clock at t0) publishing through
// publish, and returns it with its clock.
func emulator(t *testing.T, fast bool, publish func(context.Context, string, []byte) error) (*monitoringemu.Server, *clock) {
	t.Helper()
	clk := &clock{t: t0}
	srv, err := monitoringemu.New(monitoringemu.Options{Fast: fast, Now: clk.Now, AlertsManual: true, Publish: publish,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, clk
}

// policies lists the project's alert policies on srv.
func policies(t *testing.T, srv *monitoringemu.Server) []*monitoringpb.AlertPolicy {
	t.Helper()
	ctx := context.Background()
	c, err := monitoring.NewAlertPolicyClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []*monitoringpb.AlertPolicy
	it := c.ListAlertPolicies(ctx, &monitoringpb.ListAlertPoliciesRequest{Name: "projects/" + project})
	for {
		p, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
}

func TestEnsureIsIdempotent(t *testing.T) {
	srv, clk := emulator(t, false, nil)
	ctx := context.Background()
	pol := parse(t, testPolicy)
	first, err := alerting.Ensure(ctx, srv.ClientOptions(), project, topic, pol, alerting.GoogleTiming())
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	want := alerting.Result{Channel: first.Channel, ChannelsCreated: []string{first.Channel}, Created: []string{"api error rate > 5%", "api p95 > 2000ms"}}
	if fmt.Sprint(first) != fmt.Sprint(want) || !strings.HasPrefix(first.Channel, "projects/my-project/notificationChannels/") {
		t.Errorf("first Ensure: got %+v, want %+v", first, want)
	}
	before := policies(t, srv)
	clk.Set(t0.Add(time.Hour))
	second, err := alerting.Ensure(ctx, srv.ClientOptions(), project, topic, pol, alerting.GoogleTiming())
	if err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	want = alerting.Result{Channel: first.Channel, Unchanged: []string{"api error rate > 5%", "api p95 > 2000ms"}}
	if fmt.Sprint(second) != fmt.Sprint(want) {
		t.Errorf("second Ensure: got %+v, want %+v", second, want)
	}
	after := policies(t, srv)
	if len(after) != 2 || !proto.Equal(before[0], after[0]) || !proto.Equal(before[1], after[1]) {
		t.Errorf("the second Ensure changed the policies:\nbefore %v\n after %v", before, after)
	}
	// Each policy notifies the channel Ensure found.
	for _, p := range after {
		if got := p.GetNotificationChannels(); len(got) != 1 || got[0] != first.Channel {
			t.Errorf("%s notifies %v, want [%s]", p.GetDisplayName(), got, first.Channel)
		}
	}
}

func TestEnsureUpdatesChangedThreshold(t *testing.T) {
	srv, _ := emulator(t, false, nil)
	ctx := context.Background()
	if _, err := alerting.Ensure(ctx, srv.ClientOptions(), project, topic, parse(t, testPolicy), alerting.GoogleTiming()); err != nil {
		t.Fatal(err)
	}
	before := policies(t, srv)
	changed := parse(t, strings.Replace(testPolicy, "errorRateAbove: 0.05", "errorRateAbove: 0.1", 1))
	res, err := alerting.Ensure(ctx, srv.ClientOptions(), project, topic, changed, alerting.GoogleTiming())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res.Updated, res.Unchanged, res.Created) != "[api error rate > 5%] [api p95 > 2000ms] []" {
		t.Errorf("Ensure after a threshold change: got %+v", res)
	}
	after := policies(t, srv)
	if len(after) != 2 || after[0].GetName() != before[0].GetName() || after[0].GetConditions()[0].GetName() != before[0].GetConditions()[0].GetName() {
		t.Fatalf("the update must keep the policy's and the condition's names: before %v after %v", before, after)
	}
	if got := after[0].GetConditions()[0].GetConditionThreshold().GetThresholdValue(); got != 0.1 {
		t.Errorf("threshold after update: got %v, want 0.1", got)
	}
	if !proto.Equal(before[1], after[1]) {
		t.Errorf("the p95 policy changed")
	}
}

func TestEnsureRefusesPoliciesItDoesNotManage(t *testing.T) {
	srv, _ := emulator(t, false, nil)
	ctx := context.Background()
	// The user's own policy under the name of a managed alert.
	mine := alerting.Policies(&parse(t, testPolicy).Services[0], "", alerting.GoogleTiming())[0]
	mine.UserLabels = map[string]string{"team": "web"}
	c, err := monitoring.NewAlertPolicyClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateAlertPolicy(ctx, &monitoringpb.CreateAlertPolicyRequest{Name: "projects/" + project, AlertPolicy: mine}); err != nil {
		t.Fatal(err)
	}
	res, err := alerting.Ensure(ctx, srv.ClientOptions(), project, topic, parse(t, testPolicy), alerting.GoogleTiming())
	if !errors.Is(err, alerting.ErrConflict) || !strings.Contains(err.Error(), "api error rate > 5%") {
		t.Errorf("Ensure: got %v, want an error wrapping ErrConflict naming the alert", err)
	}
	if fmt.Sprint(res.Created) != "[api p95 > 2000ms]" {
		t.Errorf("the other policy: got created %v, want [api p95 > 2000ms]", res.Created)
	}
	for _, p := range policies(t, srv) {
		if p.GetDisplayName() == "api error rate > 5%" && p.GetUserLabels()["team"] != "web" {
			t.Errorf("the user's policy was changed: %v", p)
		}
	}
}

// TestEnsureEndToEnd: the error-rate policy Ensure creates opens an incident for the
// failing revision of real (RecordRequest) traffic, published on the topic, that
// events.DecodeIncident maps back to the service, the revision and the policy file's
// alert.
func TestEnsureEndToEnd(t *testing.T) {
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
	if _, err := psc.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	const sub = "projects/my-project/subscriptions/alert-function"
	if _, err := psc.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic, AckDeadlineSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	publish := func(ctx context.Context, topic string, data []byte) error {
		p := psc.Publisher(topic)
		defer p.Stop()
		_, err := p.Publish(ctx, &pubsub.Message{Data: data}).Get(ctx)
		return err
	}
	srv, clk := emulator(t, true, publish)
	pol := parse(t, testPolicy)
	if _, err := alerting.Ensure(ctx, srv.ClientOptions(), project, topic, pol, alerting.FastTiming()); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	for i, rev := range []string{"api-00001-abc", "api-00002-def"} {
		for s := range 10 {
			for r := range 20 {
				status := 200
				if i == 1 && r%2 == 0 { // the new revision fails half its requests
					status = 503
				}
				srv.RecordRequest(monitoringemu.Request{Project: project, Location: "europe-west1", Service: "api", Revision: rev,
					Time: t0.Add(time.Duration(s)*time.Second + time.Duration(r)*40*time.Millisecond), Status: status, Latency: 20 * time.Millisecond})
			}
		}
	}
	var got []events.Incident
	for s := 1; s <= 10 && len(got) == 0; s++ {
		now := t0.Add(time.Duration(s) * time.Second)
		clk.Set(now)
		if err := srv.EvaluateAlerts(ctx, now); err != nil {
			t.Fatalf("EvaluateAlerts: %v", err)
		}
		resp, err := psc.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 10, ReturnImmediately: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range resp.GetReceivedMessages() {
			inc, err := events.DecodeIncident(m.GetMessage().GetData())
			if err != nil {
				t.Fatalf("DecodeIncident: %v\n%s", err, m.GetMessage().GetData())
			}
			got = append(got, inc)
		}
	}
	if len(got) != 1 {
		t.Fatalf("got %d notifications, want 1", len(got))
	}
	inc := got[0]
	svc, err := pol.Service(inc.Service())
	if err != nil {
		t.Fatalf("the incident's service %q: %v", inc.Service(), err)
	}
	action, ok := svc.AlertAction(inc.PolicyName)
	if inc.State != events.IncidentOpen || inc.Revision() != "api-00002-def" || !ok || action != policy.ActionRollback ||
		inc.PolicyUserLabels["coalmine-service"] != "api" || !inc.StartedAt.Equal(t0.Add(3*time.Second)) {
		t.Errorf("incident: state %s service %q revision %q policy %q (action %q, %v) labels %v started %s; want open, api, api-00002-def, the error-rate alert (rollback), coalmine-service api, at t0+3s (violating from t0+1s, for: 2m scaled to 2s)",
			inc.State, inc.Service(), inc.Revision(), inc.PolicyName, action, ok, inc.PolicyUserLabels, inc.StartedAt)
	}
}

// TestEnsureTheExamplePolicy: the policies of the shipped example file are accepted with
// Google's timing.
func TestEnsureTheExamplePolicy(t *testing.T) {
	srv, _ := emulator(t, false, nil)
	pol, err := policy.Parse(policy.Example())
	if err != nil {
		t.Fatal(err)
	}
	p := pol.Services[0].Project
	res, err := alerting.Ensure(context.Background(), srv.ClientOptions(), p, "projects/"+p+"/topics/coalmine-alerts", pol, alerting.GoogleTiming())
	if err != nil || len(res.Created) != 2 {
		t.Errorf("Ensure(example): got %+v, %v; want its two alerts created", res, err)
	}
}
