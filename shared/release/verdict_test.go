package release_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ai-square/coalmine/infra/local/monitoringemu"
	"github.com/ai-square/coalmine/shared/judge"
	"github.com/ai-square/coalmine/shared/metrics"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/rollout"
)

type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fixedClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// TestJudgeReadsTheStage: Judge reads the canary's and the stable revision's figures from the
// stage's start to now minus the ingestion delay, through the real Monitoring client against
// the local server with Google's timing, and hands them to the judge: no data is
// inconclusive (never healthy), a failing canary is unhealthy with the policy's action, and
// a rollout with no canary in a stage is ErrNothingToJudge.
func TestJudgeReadsTheStage(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	clk := &fixedClock{t: t0}
	srv, err := monitoringemu.New(monitoringemu.Options{Now: clk.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	r, err := metrics.New(ctx, metrics.Options{Project: "local-project", ClientOptions: srv.ClientOptions()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pol, err := policy.Parse([]byte(`
services:
  - name: web
    project: local-project
    region: asia-east1
    images: [example.com/web]
    backup: {required: false}
`))
	if err != nil {
		t.Fatal(err)
	}
	svc := &pol.Services[0]
	stageStart := t0.Add(10 * time.Second)
	st := rollout.State{Rollout: &rollout.Rollout{ID: "web-1", Phase: rollout.Progressing, Stage: 1, Stages: []int{10, 100},
		Canary: "web-2", Stable: "web-1", StepStarted: stageStart}}

	// A stage without a canary taking traffic.
	deploying := st
	deploying.Rollout = &rollout.Rollout{ID: "web-1", Phase: rollout.Deploying, Stages: []int{10, 100}}
	if _, err := release.Judge(ctx, r, svc, deploying, t0); !errors.Is(err, release.ErrNothingToJudge) {
		t.Errorf("deploying: %v, want ErrNothingToJudge", err)
	}

	// Five minutes of traffic: the canary fails 10% of 300 requests, the stable none of 2700.
	for i := range 3000 {
		at := t0.Add(time.Minute + time.Duration(i)*(5*time.Minute)/3000)
		rev, status := "web-1", 200
		if i%10 == 0 {
			rev = "web-2"
			if i%100 == 0 {
				status = 500
			}
		}
		srv.RecordRequest(monitoringemu.Request{Project: "local-project", Location: "asia-east1", Service: "web", Revision: rev, Time: at, Status: status, Latency: 20 * time.Millisecond})
	}

	// Two minutes in, the ingestion delay (3m) leaves no whole minute: no data, inconclusive.
	clk.Set(t0.Add(2 * time.Minute))
	j, err := release.Judge(ctx, r, svc, st, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if j.Verdict.Status != judge.Inconclusive || j.Canary != nil || j.NoData["web-2"] == "" {
		t.Errorf("before any data: %s, canary %v, no data %v; want inconclusive with the canary's data missing", j.Verdict.Reason, j.Canary, j.NoData)
	}

	// Ten minutes in: the six minutes of data are read, from the first whole minute.
	clk.Set(t0.Add(10 * time.Minute))
	j, err = release.Judge(ctx, r, svc, st, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if j.Canary == nil || j.Canary.Total() != 300 || j.Canary.Classes["5xx"] != 30 {
		t.Fatalf("canary read %v, want 300 requests, 30 of them 5xx", j.Canary)
	}
	if j.Stable == nil || j.Stable.Total() != 2700 {
		t.Errorf("stable read %v, want 2700 requests", j.Stable)
	}
	if got, want := j.Verdict.Start, t0.Add(time.Minute); !got.Equal(want) {
		t.Errorf("window starts %v, want %v (the first whole minute of the stage)", got, want)
	}
	if j.Verdict.Status != judge.Unhealthy || j.Verdict.Action != policy.ActionRollback || !strings.Contains(j.Verdict.Reason, judge.GateErrorRate) {
		t.Errorf("verdict %s (%s): %s; want unhealthy, rollback, on the error rate", j.Verdict.Status, j.Verdict.Action, j.Verdict.Reason)
	}

	// Paused at the stage (the canary keeps its traffic), resumed or paused since: judged
	// from the stage's start, which a pause does not move.
	paused := st
	pr := *st.Rollout
	pr.Phase, pr.StageStarted, pr.StepStarted = rollout.Paused, stageStart, t0.Add(8*time.Minute)
	paused.Rollout = &pr
	if j, err := release.Judge(ctx, r, svc, paused, clk.Now()); err != nil || j.Canary == nil || j.Canary.Total() != 300 {
		t.Errorf("paused: %v, canary %v; want the stage's 300 canary requests", err, j.Canary)
	}

	// A canary that no request reached has no series over whole, visible minutes: no data,
	// inconclusive, while the stable revision's figures are read.
	silent := st
	silent.Rollout = &rollout.Rollout{ID: "web-1", Phase: rollout.Progressing, Stage: 1, Stages: []int{10, 100}, Canary: "web-3", Stable: "web-1", StepStarted: stageStart}
	j, err = release.Judge(ctx, r, svc, silent, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if j.Verdict.Status != judge.Inconclusive || j.Canary != nil || !strings.Contains(j.NoData["web-3"], "no data") || j.Stable == nil {
		t.Errorf("silent canary: %s, canary %v, no data %v, stable %v; want inconclusive, the canary's data missing, the stable's read", j.Verdict.Reason, j.Canary, j.NoData, j.Stable)
	}
}
