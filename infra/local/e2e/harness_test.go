package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/iterator"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/bridge"
	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/infra/local/sampleapp"
	"github.com/ai-square/coalmine/scripts/coalmine/cli"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/rollout"
)

func TestMain(m *testing.M) {
	sampleapp.RunIfChild()
	code := m.Run()
	shared.Close()
	os.Exit(code)
}

// shared is one Google Pub/Sub emulator for the whole test binary (it
// takes seconds to start); each cloud uses a Pub/Sub project of its own.
var shared pubsubemu.Shared

func gcloudHost(t *testing.T) string {
	t.Helper()
	srv, err := shared.Server()
	if err != nil {
		t.Fatalf("Google's Pub/Sub emulator: %v", err)
	}
	return srv.Host()
}

const (
	service = "ai-square"
	repo    = "local.dev/ai-square/web"
	project = "local-project"
	region  = "local"
)

// testPolicy: one service, four stages, no deploy windows (tests run any
// day), no backup (the data-safety tests cover it).
const testPolicy = `
services:
  - name: ai-square
    project: local-project
    region: local
    images: [local.dev/ai-square/web]
    stages:
      - {percent: 10, bake: 1s}
      - {percent: 30, bake: 1s}
      - {percent: 50, bake: 1s}
      - {percent: 100}
    windows:
      deny: []
    backup:
      required: false
`

// backends lists the Pub/Sub servers to run each test against.
func backends(t *testing.T) []pubsubemu.Backend {
	t.Helper()
	switch v := os.Getenv("COALMINE_E2E_PUBSUB"); v {
	case "pstest":
		return []pubsubemu.Backend{pubsubemu.BackendPstest}
	case "gcloud":
		if !pubsubemu.GcloudAvailable() {
			t.Fatalf("COALMINE_E2E_PUBSUB=gcloud but Google's Pub/Sub emulator is not installed")
		}
		return []pubsubemu.Backend{pubsubemu.BackendGcloud}
	case "":
	default:
		t.Fatalf("COALMINE_E2E_PUBSUB=%q: want pstest or gcloud", v)
	}
	out := []pubsubemu.Backend{pubsubemu.BackendPstest}
	if pubsubemu.GcloudAvailable() {
		out = append(out, pubsubemu.BackendGcloud)
	} else {
		t.Log("Google's Pub/Sub emulator is not installed: pstest only")
	}
	return out
}

// forEachBackend runs body once per backend, each with its own cloud.
func forEachBackend(t *testing.T, body func(t *testing.T, backend pubsubemu.Backend)) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) { body(t, b) })
	}
}

// logBuffer keeps every log line for assertions (and prints them when a
// test fails with -v).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// everySecond is a fast-mode schedule that fires every second: the sweep job of tests
// whose watchdog must look often.
const everySecond = "* * * * * *"

type harness struct {
	t     *testing.T
	cloud *cloud.Cloud
	logs  *logBuffer
	svcs  *run.ServicesClient
	revs  *run.RevisionsClient
}

type options struct {
	policy      string // default testPolicy
	chaos       bridge.Chaos
	hooks       release.Hooks
	maxAttempts int
	// ticks lets Cloud Scheduler fire its jobs on their own (fast schedules: tick jobs
	// every 2s; sweep as sweep says). Off, the jobs exist but fire only when a test runs
	// them, so a test that drives every step itself is not raced by the judge.
	ticks bool
	// sweep is the sweep job's schedule (default cloud.FastSweepSchedule).
	sweep       string
	wrapBackups func(release.Backuper) release.Backuper
	now         func() time.Time // the functions' clock (default: the wall clock)
}

func start(t *testing.T, backend pubsubemu.Backend, o options) *harness {
	t.Helper()
	logs := &logBuffer{}
	ctx := context.Background()
	pol := o.policy
	if pol == "" {
		pol = testPolicy
	}
	cfg := cloud.Config{
		Dir: t.TempDir(), Policy: []byte(pol), Pubsub: backend, SchedulerManual: !o.ticks, SweepSchedule: o.sweep,
		PollInterval: 50 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		MaxAttempts: o.maxAttempts, Chaos: o.chaos, Hooks: o.hooks, WrapBackups: o.wrapBackups,
		BackupBudget: 2 * time.Second, Now: o.now, Fast: true,
		Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if backend == pubsubemu.BackendGcloud {
		cfg.Pubsub, cfg.PubsubHost = pubsubemu.BackendExternal, gcloudHost(t)
		cfg.Project = shared.NextProject("e2e")
	}
	c, err := cloud.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("cloud.Start: %v", err)
	}
	h := &harness{t: t, cloud: c, logs: logs}
	t.Cleanup(func() {
		if t.Failed() && testing.Verbose() {
			logs.mu.Lock()
			t.Logf("logs:\n%s", logs.buf.String())
			logs.mu.Unlock()
		}
		c.Close()
	})
	h.svcs, err = run.NewServicesClient(ctx, c.Run.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.svcs.Close() })
	h.revs, err = run.NewRevisionsClient(ctx, c.Run.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.revs.Close() })
	return h
}

// cli runs a coalmine command against this cloud and returns its output.
func (h *harness) cli(args ...string) string {
	h.t.Helper()
	out, err := h.tryCLI(args...)
	if err != nil {
		h.t.Fatalf("coalmine %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// cliAt runs a coalmine command whose clock is now.
func (h *harness) cliAt(now func() time.Time, args ...string) string {
	h.t.Helper()
	out, err := h.tryCLIAt(now, args...)
	if err != nil {
		h.t.Fatalf("coalmine %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (h *harness) tryCLI(args ...string) (string, error) { return h.tryCLIAt(time.Now, args...) }

func (h *harness) tryCLIAt(now func() time.Time, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := cli.MainAt(ctx, now, append([]string{"--dir", h.cloud.Dir}, args...), &stdout, &stderr)
	if code != 0 {
		return stdout.String(), fmt.Errorf("exit %d: %s", code, stderr.String())
	}
	return stdout.String(), nil
}

// push registers an image through the CLI and returns its reference.
func (h *harness) push(image string, flags ...string) string {
	h.t.Helper()
	return strings.TrimSpace(h.cli(append([]string{"push", image}, flags...)...))
}

// service reads the service with the official client.
func (h *harness) service() *runpb.Service {
	h.t.Helper()
	svc, err := h.svcs.GetService(context.Background(), &runpb.GetServiceRequest{Name: h.serviceName()})
	if err != nil {
		h.t.Fatalf("GetService: %v", err)
	}
	return svc
}

func (h *harness) serviceName() string {
	return fmt.Sprintf("projects/%s/locations/%s/services/%s", project, region, service)
}

func stateOf(t *testing.T, svc *runpb.Service) rollout.State {
	t.Helper()
	st, err := rollout.Decode(svc.GetAnnotations()[rollout.AnnotationKey])
	if err != nil {
		t.Fatalf("state annotation: %v", err)
	}
	return st
}

// view is what the official client shows of the service.
type view struct {
	svc     *runpb.Service
	state   rollout.State
	percent map[string]int32  // revision -> percent (TrafficStatuses)
	tags    map[string]string // tag -> revision
	tagURI  map[string]string // tag -> URL
}

func (h *harness) view() view {
	h.t.Helper()
	svc := h.service()
	v := view{svc: svc, state: stateOf(h.t, svc), percent: map[string]int32{}, tags: map[string]string{}, tagURI: map[string]string{}}
	for _, ts := range svc.GetTrafficStatuses() {
		rev := ts.GetRevision()
		if rev == "" {
			rev = lastSegment(svc.GetLatestReadyRevision())
		}
		v.percent[rev] += ts.GetPercent()
		if ts.GetTag() != "" {
			v.tags[ts.GetTag()] = rev
			v.tagURI[ts.GetTag()] = ts.GetUri()
		}
	}
	return v
}

func (v view) phase() rollout.Phase {
	if v.state.Rollout == nil {
		return ""
	}
	return v.state.Rollout.Phase
}

func (v view) stage() int {
	if v.state.Rollout == nil {
		return 0
	}
	return v.state.Rollout.Stage
}

func lastSegment(s string) string { return s[strings.LastIndexByte(s, '/')+1:] }

// waitFor polls the service until cond holds.
func (h *harness) waitFor(what string, cond func(v view) bool) view {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var v view
	for time.Now().Before(deadline) {
		v = h.view()
		if cond(v) {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("timed out waiting for %s; phase %q stage %d traffic %v tags %v reason %q", what, v.phase(), v.stage(), v.percent, v.tags, reasonOf(v))
	return v
}

func reasonOf(v view) string {
	if v.state.Rollout == nil {
		return ""
	}
	return v.state.Rollout.Reason
}

// waitPhase waits until the state is at phase p and stage, and Cloud Run
// has finished applying it: the state is written with the update, the
// traffic it describes is served once the update is reconciled.
func (h *harness) waitPhase(p rollout.Phase, stage int) view {
	h.t.Helper()
	return h.waitFor(fmt.Sprintf("phase %s stage %d", p, stage), func(v view) bool {
		return v.phase() == p && v.stage() == stage && !v.svc.GetReconciling()
	})
}

// stays checks that the service keeps phase p for a while (nothing
// delivered late changes it).
func (h *harness) stays(p rollout.Phase, d time.Duration) {
	h.t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if v := h.view(); v.phase() != p {
			h.t.Fatalf("phase changed from %s to %s", p, v.phase())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// revisions lists the service's revisions with the official client.
func (h *harness) revisions() []string {
	h.t.Helper()
	it := h.revs.ListRevisions(context.Background(), &runpb.ListRevisionsRequest{Parent: h.serviceName()})
	var out []string
	for {
		r, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			h.t.Fatalf("ListRevisions: %v", err)
		}
		out = append(out, lastSegment(r.GetName()))
	}
}

// load sends steady requests to url until stopped and counts failures.
type load struct {
	stop     chan struct{}
	done     chan struct{}
	ok, bad  atomic.Int64
	mu       sync.Mutex
	failures []string
	served   map[string]int
}

func startLoad(url string) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{}), served: map[string]int{}}
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			resp, err := client.Get(url)
			if err != nil {
				l.fail(err.Error())
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			l.mu.Lock()
			l.served[resp.Header.Get(sampleapp.HeaderRevision)]++
			l.mu.Unlock()
			if resp.StatusCode != http.StatusOK {
				l.fail(fmt.Sprintf("status %d from %s", resp.StatusCode, resp.Header.Get(sampleapp.HeaderRevision)))
				continue
			}
			l.ok.Add(1)
		}
	}()
	return l
}

func (l *load) fail(why string) {
	l.bad.Add(1)
	l.mu.Lock()
	if len(l.failures) < 10 {
		l.failures = append(l.failures, why)
	}
	l.mu.Unlock()
}

func (l *load) finish() (ok, bad int64, failures []string, served map[string]int) {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load(), l.bad.Load(), l.failures, l.served
}

// logged reports whether function logged a message containing text.
func (h *harness) logged(function, text string) bool {
	for _, l := range h.logs.lines() {
		msg, _ := l["msg"].(string)
		if l["function"] == function && strings.Contains(msg, text) {
			return true
		}
	}
	return false
}

// get fetches url once and returns the serving revision and status.
func get(t *testing.T, url string) (string, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Header.Get(sampleapp.HeaderRevision), resp.StatusCode
}

// historyOf returns the history entries of one rollout.
func historyOf(st rollout.State, id string) []rollout.Entry {
	var out []rollout.Entry
	for _, e := range st.History {
		if e.Rollout == id {
			out = append(out, e)
		}
	}
	return out
}

// checkStepsOnce fails if any (kind, stage) step appears twice in a
// rollout's history.
func checkStepsOnce(t *testing.T, st rollout.State, id string) {
	t.Helper()
	seen := map[string]int{}
	for _, e := range historyOf(st, id) {
		if e.Kind == rollout.BackupProgress || e.Kind == rollout.Republish {
			continue // lease renewals may repeat
		}
		seen[fmt.Sprintf("%s/%d", e.Kind, e.Stage)]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("step %s appears %d times in the history of %s: %v", k, n, id, historyOf(st, id))
		}
	}
}

// publishCommand publishes a command as the CLI would, n times.
func (h *harness) publishCommand(c events.Command, n int) {
	h.t.Helper()
	for range n {
		if err := h.cloud.Bus.Command(context.Background(), c); err != nil {
			h.t.Fatalf("publish %s: %v", c.Type, err)
		}
	}
}
