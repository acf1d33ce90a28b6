package main

// The production delivery path: each function runs as a Cloud Run service
// and gets its messages from a Pub/Sub PUSH subscription whose endpoint is
// https://SERVICE_URL/projects/PROJECT/topics/TOPIC. functions-framework-go
// turns such a raw push body (no Ce-Id header, no cloudevents content type)
// into a google.cloud.pubsub.topic.v1.messagePublished CloudEvent whose
// source, //pubsub.googleapis.com/projects/P/topics/T, comes from the
// request PATH; events.DecodeMessagePublished reads the topic back from that
// source, and Backup tells Artifact Registry's gcr notifications from our
// commands by it. The local bridge POSTs binary-mode CloudEvents instead, so
// this is the only test of the push path: it builds the real binary, starts
// it as Cloud Run would and POSTs what Pub/Sub push sends.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/functions/backup"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
)

const (
	// pushProject is the project in the push endpoints' paths and envelopes.
	pushProject = "push-project"
	// pushWait bounds every wait for a log line or a readiness condition.
	pushWait = 15 * time.Second
)

// pushRepository is the repository of the gcr fixture, which no service of
// pushPolicy takes.
const pushRepository = "us-west1-docker.pkg.dev/my-project/my-repo/hello-world"

// pushPolicy has one service, app, whose only repository is on a registry
// at 127.0.0.1:%d (a closed port: asking it whether an image exists fails
// at once, a transient error).
const pushPolicy = `
services:
  - name: app
    project: push-project
    region: us-central1
    images: [127.0.0.1:%d/team/app]
    stages:
      - {percent: 10, bake: 1s}
      - {percent: 100}
    windows:
      deny: []
    backup:
      required: false
`

func TestPushDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the functions binary")
	}
	// Google's emulator is a Java server that takes seconds to start: start
	// it while the binary links.
	emulator := startEmulatorAsync(t)
	bin := buildFunctions(t)

	ps := pstest.NewServer()
	t.Cleanup(func() { _ = ps.Close() })
	closed := closedPort(t)
	fn := startFunction(t, bin, "Backup", map[string]string{
		"COALMINE_POLICY_YAML": fmt.Sprintf(pushPolicy, closed),
		"COALMINE_PROJECT":     pushProject,
		"COALMINE_REGION":      "us-central1",
		// Publishing (replies, next commands) goes to pstest; nothing below
		// publishes, but the client needs somewhere to point without
		// credentials.
		"PUBSUB_EMULATOR_HOST": ps.Addr,
		// None of these is called by the cases below; a closed port keeps the clients
		// from looking for Application Default Credentials.
		"CLOUDRUN_EMULATOR_HOST":   "127.0.0.1:" + strconv.Itoa(closed),
		"SCHEDULER_EMULATOR_HOST":  "127.0.0.1:" + strconv.Itoa(closed),
		"MONITORING_EMULATOR_HOST": "127.0.0.1:" + strconv.Itoa(closed),
		"STORAGE_EMULATOR_HOST":    "127.0.0.1:" + strconv.Itoa(closed),
	})

	gcr, err := os.ReadFile(filepath.Join("..", "events", "testdata", "gcr-insert-digest.json"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := events.DecodeArtifact(gcr)
	if err != nil {
		t.Fatalf("the fixture: %v", err)
	}
	// One Pub/Sub message, delivered below to three endpoints.
	gcrPush := pushBody(gcr, "1111111111")
	// What Backup logs when it reads those bytes as a command.
	_, notCommand := events.DecodeCommand(gcr)
	if notCommand == nil {
		t.Fatal("the gcr fixture decodes as a command; the cases below cannot tell the topics apart")
	}

	t.Run("gcr topic in the path: an Artifact Registry notification", func(t *testing.T) {
		from := fn.logs.mark()
		if got, want := fn.post(t, "/projects/"+pushProject+"/topics/"+events.TopicGCR, gcrPush), http.StatusOK; got != want {
			t.Fatalf("POST: got HTTP %d, want %d", got, want)
		}
		l := fn.logs.wait(t, from, "log of the ignored notification", func(l logLine) bool {
			return l.message() == "ignored: repository not allowed for any configured service"
		})
		for k, want := range map[string]string{
			"severity": "INFO", "function": events.FunctionBackup,
			"action": events.ActionInsert, "digest": n.Digest, "repository": pushRepository,
		} {
			if got := l.str(k); got != want {
				t.Errorf("log %s: got %q, want %q", k, got, want)
			}
		}
		fn.logs.none(t, from, "log of a malformed event", isMalformed)
	})

	t.Run("coalmine-release in the path: the same bytes are a malformed command", func(t *testing.T) {
		from := fn.logs.mark()
		if got, want := fn.post(t, "/projects/"+pushProject+"/topics/"+events.TopicRelease, gcrPush), http.StatusOK; got != want {
			t.Fatalf("POST: got HTTP %d, want %d (a malformed command is acknowledged)", got, want)
		}
		l := fn.logs.wait(t, from, "log of the malformed command", isMalformed)
		checkMalformed(t, l, notCommand, "//pubsub.googleapis.com/projects/"+pushProject+"/topics/"+events.TopicRelease)
		fn.logs.none(t, from, "log of the ignored notification", isArtifactLog)
	})

	// A push endpoint without /projects/P/topics/T: functions-framework
	// prints a WARNING (with no newline) and builds the source
	// "//pubsub.googleapis.com/" with no topic. Backup cannot tell an image
	// push from a command without it, so it refuses the event as malformed
	// (acknowledged, 200), saying the endpoint must end in the topic's path:
	// with such an endpoint every gcr notification would be lost. This is why
	// Terraform's test checks the endpoints' shape. The WARNING is not even
	// a line of its own: the next JSON log line on stdout is glued to it, so
	// Cloud Logging gets the malformed-event warning as plain text.
	t.Run("no topic in the path: refused, naming the endpoint's shape", func(t *testing.T) {
		from := fn.logs.mark()
		if got, want := fn.post(t, "/", gcrPush), http.StatusOK; got != want {
			t.Fatalf("POST: got HTTP %d, want %d", got, want)
		}
		l := fn.logs.wait(t, from, "log of the malformed command", isMalformed)
		checkMalformed(t, l, backup.NoTopic("//pubsub.googleapis.com/"), "//pubsub.googleapis.com/")
		fn.logs.none(t, from, "log of the ignored notification", isArtifactLog)
		// v1.9.2 glues its warning to the front of the malformed-event line
		// (l.text); a line of its own would do as well.
		fn.logs.wait(t, from, "warning of functions-framework about the path", func(l logLine) bool {
			return l.stream == "stdout" && strings.HasPrefix(l.text, "WARNING: failed to extract Pub/Sub topic name from the URL request path")
		})
	})

	// Not a push envelope: functions-framework answers 400 before any
	// function code runs. Pub/Sub push treats it as a nack: the message is
	// delivered again until the subscription's max delivery attempts, then
	// goes to the dead-letter topic.
	for _, tc := range []struct {
		name, body, stderr string
	}{
		{"not JSON", "this is not JSON", "parsing background event body"},
		{"JSON but not an envelope", `{"hello":"world"}`, "unable to extract background event"},
		{"message.data not base64", `{"message":{"data":"%%%","messageId":"2","publishTime":"2026-01-02T12:34:56.789Z"},"subscription":"projects/p/subscriptions/s"}`, "parsing background event body"},
	} {
		t.Run("bad body: "+tc.name, func(t *testing.T) {
			from := fn.logs.mark()
			if got, want := fn.post(t, "/projects/"+pushProject+"/topics/"+events.TopicGCR, []byte(tc.body)), http.StatusBadRequest; got != want {
				t.Fatalf("POST: got HTTP %d, want %d", got, want)
			}
			fn.logs.wait(t, from, "complaint of functions-framework on stderr", func(l logLine) bool {
				return l.stream == "stderr" && strings.HasPrefix(l.text, tc.stderr)
			})
		})
	}

	// A transient failure: the registry that would say whether the image
	// exists cannot be reached. The function returns an error,
	// functions-framework answers 500, and Pub/Sub push takes it as a nack
	// and delivers the command again with backoff.
	t.Run("transient error: HTTP 500", func(t *testing.T) {
		image := fmt.Sprintf("127.0.0.1:%d/team/app@sha256:%s", closed, strings.Repeat("ab", 32))
		c, err := events.Command{
			Version: events.CommandVersion, Type: events.CommandRelease, ID: "cmd-push-1",
			Service: "app", Step: events.StepRelease, Image: image, Actor: "operator:push-test",
			Time: time.Date(2026, 1, 2, 12, 34, 56, 0, time.UTC),
		}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		from := fn.logs.mark()
		if got, want := fn.post(t, "/projects/"+pushProject+"/topics/"+events.TopicRelease, pushBody(c, "3333333333")), http.StatusInternalServerError; got != want {
			t.Fatalf("POST: got HTTP %d, want %d", got, want)
		}
		l := fn.logs.wait(t, from, "warning that it will be delivered again", func(l logLine) bool {
			return strings.HasPrefix(l.message(), "release app: will be delivered again: ")
		})
		if got, want := l.str("severity"), "WARNING"; got != want {
			t.Errorf("severity: got %q, want %q", got, want)
		}
		if got, want := l.str("error"), fmt.Sprintf("cannot ask registry 127.0.0.1:%d", closed); !strings.Contains(got, want) {
			t.Errorf("error: got %q, want it to contain %q", got, want)
		}
		fn.logs.wait(t, from, "Function error line of functions-framework on stderr", func(l logLine) bool {
			return l.stream == "stderr" && strings.HasPrefix(l.text, "Function error: ")
		})
	})

	// A real push: Google's Pub/Sub emulator POSTs to the function itself.
	// It sends no OIDC token, which the function does not check anyway
	// (Cloud Run does, in front of it).
	t.Run("Google's emulator pushes a gcr notification", func(t *testing.T) {
		srv := emulator(t)
		ctx, cancel := context.WithTimeout(context.Background(), pushWait)
		defer cancel()
		c, err := srv.NewClient(ctx, pushProject)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		topic := pubsubemu.TopicName(pushProject, events.TopicGCR)
		if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
			t.Fatal(err)
		}
		// A second push subscription records the envelope the emulator
		// sends, to compare with what the cases above POST by hand.
		envelopes := make(chan []byte, 1)
		rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			select {
			case envelopes <- b:
			default:
			}
		}))
		defer rec.Close()
		for name, endpoint := range map[string]string{
			"backup-gcr": fn.url + "/projects/" + pushProject + "/topics/" + events.TopicGCR,
			"recorder":   rec.URL + "/projects/" + pushProject + "/topics/" + events.TopicGCR,
		} {
			if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
				Name:       pubsubemu.SubscriptionName(pushProject, name),
				Topic:      topic,
				PushConfig: &pubsubpb.PushConfig{PushEndpoint: endpoint},
			}); err != nil {
				t.Fatalf("subscription %s: %v", name, err)
			}
		}
		from := fn.logs.mark()
		p := c.Publisher(events.TopicGCR)
		defer p.Stop()
		id, err := p.Publish(ctx, &pubsub.Message{Data: gcr}).Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l := fn.logs.wait(t, from, "log of the pushed notification, ignored", func(l logLine) bool {
			return isArtifactLog(l) && l.str("digest") == n.Digest
		})
		if got, want := l.str("repository"), pushRepository; got != want {
			t.Errorf("log repository: got %q, want %q", got, want)
		}
		select {
		case b := <-envelopes:
			m, err := events.DecodePushEnvelope(b)
			if err != nil {
				t.Errorf("the emulator's envelope %s: %v", b, err)
			} else if m.Message.MessageID != id || !bytes.Equal(m.Message.Data, gcr) {
				t.Errorf("the emulator's envelope: got message %s with data %q, want %s with the fixture", m.Message.MessageID, m.Message.Data, id)
			}
			t.Logf("the emulator's push envelope: %s", b)
		case <-ctx.Done():
			t.Errorf("the recorder subscription got no push")
		}
	})
}

// pushBody is the body Pub/Sub push POSTs for a message with data
// (https://cloud.google.com/pubsub/docs/push#receive_push): the wrapped
// format, with the snake_case duplicates and a delivery attempt (present
// when the subscription has a dead-letter topic).
func pushBody(data []byte, id string) []byte {
	const published = "2026-01-02T12:34:56.789Z"
	b, err := json.Marshal(map[string]any{
		"message": map[string]any{
			"attributes":   map[string]string{"key": "value"},
			"data":         base64.StdEncoding.EncodeToString(data),
			"messageId":    id,
			"message_id":   id,
			"publishTime":  published,
			"publish_time": published,
			"orderingKey":  "",
		},
		"subscription":    "projects/" + pushProject + "/subscriptions/coalmine-backup-push",
		"deliveryAttempt": 3,
	})
	if err != nil {
		panic(err)
	}
	return b
}

func isMalformed(l logLine) bool {
	return strings.HasPrefix(l.message(), "malformed event acknowledged: ")
}

func isArtifactLog(l logLine) bool {
	return l.message() == "ignored: repository not allowed for any configured service"
}

// checkMalformed checks the log line of a push read as a command: the
// command's decoding error, and the CloudEvent source functions-framework
// built from the request path.
func checkMalformed(t *testing.T, l logLine, decodeErr error, source string) {
	t.Helper()
	if got, want := l.message(), "malformed event acknowledged: "+decodeErr.Error(); got != want {
		t.Errorf("log message: got %q, want %q", got, want)
	}
	for k, want := range map[string]string{
		"severity": "WARNING", "function": events.FunctionBackup, "source": source, "event": "1111111111",
	} {
		if got := l.str(k); got != want {
			t.Errorf("log %s: got %q, want %q", k, got, want)
		}
	}
}

// buildFunctions builds the functions binary with plain go build (so the
// build cache serves everything but the link).
func buildFunctions(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "functions")
	build := exec.Command("go", "build", "-o", bin, "./functions")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// closedPort returns a port on 127.0.0.1 that nothing listens on (it was
// free a moment ago).
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// function is a running functions binary.
type function struct {
	url    string
	logs   *logs
	exited chan struct{}
}

// startFunction starts bin serving target on a free port with the
// environment Cloud Run gives it (K_SERVICE, K_REVISION, PORT) plus env,
// and nothing else from the test's environment (no credentials). It
// returns once the server accepts connections.
func startFunction(t *testing.T, bin, target string, env map[string]string) *function {
	t.Helper()
	port := closedPort(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"HOME=" + t.TempDir(), // no Docker or gcloud credentials either
		"PATH=" + os.Getenv("PATH"),
		"FUNCTION_TARGET=" + target,
		"PORT=" + strconv.Itoa(port),
		"K_SERVICE=coalmine-" + strings.ToLower(target),
		"K_REVISION=coalmine-" + strings.ToLower(target) + "-00001-abc",
		"K_CONFIGURATION=coalmine-" + strings.ToLower(target),
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	fn := &function{url: "http://127.0.0.1:" + strconv.Itoa(port), logs: newLogs(), exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); fn.logs.read("stdout", stdout) }()
	go func() { defer readers.Done(); fn.logs.read("stderr", stderr) }()
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		_ = cmd.Wait()
		close(fn.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-fn.exited
		if t.Failed() {
			t.Logf("%s output:\n%s", target, fn.logs.dump(0))
		}
	})
	fn.logs.exited = fn.exited

	deadline := time.Now().Add(pushWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		// A connection, not a request: any request would be an event.
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			conn.Close()
			return fn
		}
		select {
		case <-fn.exited:
			t.Fatalf("%s exited before serving; output:\n%s", target, fn.logs.dump(0))
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept connections within %s: %v", target, pushWait, err)
		}
	}
}

// post POSTs body as Pub/Sub push does (JSON, an OIDC bearer token, no
// CloudEvents headers) to path and returns the status.
func (f *function) post(t *testing.T, path string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer not-a-real-oidc-token")
	req.Header.Set("User-Agent", "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)")
	resp, err := (&http.Client{Timeout: pushWait}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// logLine is one line the function wrote. Its Cloud Logging entry (the
// JSON object) is in entry; text holds what is not JSON: the whole line
// (functions-framework's own prints) or what precedes the entry when
// something printed without a newline before it.
type logLine struct {
	stream string
	text   string
	entry  map[string]any
}

func (l logLine) str(key string) string {
	s, _ := l.entry[key].(string)
	return s
}

func (l logLine) message() string { return l.str("message") }

func (l logLine) String() string {
	e, _ := json.Marshal(l.entry)
	if l.entry == nil {
		e = nil
	}
	return fmt.Sprintf("%s: %s%s", l.stream, l.text, e)
}

// logs collects a process's lines as they come.
type logs struct {
	mu      sync.Mutex
	lines   []logLine
	changed chan struct{} // closed and replaced on every new line
	exited  <-chan struct{}
}

func newLogs() *logs { return &logs{changed: make(chan struct{})} }

func (ls *logs) read(stream string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue // functions-framework flushes with empty lines on Cloud Run
		}
		ll := logLine{stream: stream, text: line}
		if i := strings.Index(line, `{"`); i >= 0 {
			var e map[string]any
			if json.Unmarshal([]byte(line[i:]), &e) == nil {
				ll.text, ll.entry = line[:i], e
			}
		}
		ls.mu.Lock()
		ls.lines = append(ls.lines, ll)
		close(ls.changed)
		ls.changed = make(chan struct{})
		ls.mu.Unlock()
	}
}

// mark returns the position of the next line.
func (ls *logs) mark() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.lines)
}

// wait returns the first line from position from on that matches, failing
// the test if none comes within pushWait or the process exits.
func (ls *logs) wait(t *testing.T, from int, what string, match func(logLine) bool) logLine {
	t.Helper()
	timeout := time.NewTimer(pushWait)
	defer timeout.Stop()
	for {
		ls.mu.Lock()
		for _, l := range ls.lines[from:] {
			if match(l) {
				ls.mu.Unlock()
				return l
			}
		}
		changed := ls.changed
		ls.mu.Unlock()
		select {
		case <-changed:
		case <-ls.exited:
			t.Fatalf("waiting for the %s: the function exited; output since:\n%s", what, ls.dump(from))
		case <-timeout.C:
			t.Fatalf("waited %s for the %s in vain; output since:\n%s", pushWait, what, ls.dump(from))
		}
	}
}

// none fails the test if a line from position from on matches. The
// function logs before it answers, so once the answer and the expected
// line are in, an unexpected line would be too.
func (ls *logs) none(t *testing.T, from int, what string, match func(logLine) bool) {
	t.Helper()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, l := range ls.lines[from:] {
		if match(l) {
			t.Errorf("unexpected %s: %s", what, l)
		}
	}
}

func (ls *logs) dump(from int) string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var b strings.Builder
	for _, l := range ls.lines[from:] {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// startEmulatorAsync starts Google's Pub/Sub emulator in the background
// when it is installed. The returned function waits for it, or skips the
// calling test with the reason it is not there.
func startEmulatorAsync(t *testing.T) func(t *testing.T) *pubsubemu.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		srv  *pubsubemu.Server
		skip string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		if !pubsubemu.GcloudAvailable() {
			done <- result{skip: "Google's Pub/Sub emulator (gcloud component pubsub-emulator) is not installed"}
			return
		}
		srv, err := pubsubemu.Start(ctx, pubsubemu.Options{Backend: pubsubemu.BackendGcloud, Logger: slog.New(slog.DiscardHandler)})
		done <- result{srv: srv, err: err}
	}()
	var (
		once sync.Once
		res  result
	)
	get := func() result {
		once.Do(func() { res = <-done })
		return res
	}
	t.Cleanup(func() {
		cancel()
		if r := get(); r.srv != nil {
			if err := r.srv.Close(); err != nil {
				t.Errorf("closing the emulator: %v", err)
			}
		}
	})
	return func(t *testing.T) *pubsubemu.Server {
		t.Helper()
		r := get()
		switch {
		case r.skip != "":
			t.Skip(r.skip)
		case r.err != nil:
			if errors.Is(r.err, context.Canceled) {
				t.Skip("the test ended before the emulator started")
			}
			t.Fatalf("starting Google's Pub/Sub emulator: %v", r.err)
		}
		return r.srv
	}
}
