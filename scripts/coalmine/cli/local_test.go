package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ai-square/coalmine/infra/local/cloud"
)

// lines is a goroutine-safe writer that calls onLine with every complete line.
type lines struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	onLine func(string)
	seen   int
}

func (w *lines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, _ := w.buf.Write(p)
	for {
		rest := w.buf.Bytes()[w.seen:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		w.seen += i + 1
		if w.onLine != nil {
			w.onLine(string(rest[:i]))
		}
	}
	return n, nil
}

func (w *lines) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// captureStderr points os.Stderr at a file until the test ends and returns
// what was written there so far: what a terminal would have shown.
func captureStderr(t *testing.T) func() string {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = f
	t.Cleanup(func() {
		os.Stderr = old
		f.Close()
	})
	return func() string {
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

// TestLocalUpQuiet: `local up` prints its summary and "ready" on the
// terminal, and nothing else; the local cloud's JSON logs go to DIR/local.log.
func TestLocalUpQuiet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local cloud")
	}
	dir := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &lines{onLine: func(l string) {
		if l == "ready" {
			cancel()
		}
	}}
	var stderr bytes.Buffer
	terminal := captureStderr(t)
	code := Main(ctx, []string{"--dir", dir, "local", "up", "--pubsub", "pstest"}, stdout, &stderr)
	if code != 0 {
		t.Fatalf("coalmine local up: exit %d; stderr %q; stdout:\n%s", code, stderr.String(), stdout.String())
	}

	logPath := filepath.Join(dir, "local.log")
	labels := []string{"starting", "Pub/Sub", "Cloud Run", "Monitoring", "Scheduler", "alerts", "functions", "service", "               releases start", "database", "environment", "logs", "ready", "stopping"}
	out := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	for _, l := range out {
		if !slices.ContainsFunc(labels, func(p string) bool { return strings.HasPrefix(l, p) }) {
			t.Errorf("stdout line %q is not part of the summary", l)
		}
	}
	if !slices.Contains(out, "ready") {
		t.Errorf("stdout has no line \"ready\":\n%s", stdout.String())
	}
	if want := "logs           " + logPath; !slices.Contains(out, want) {
		t.Errorf("stdout has no line %q:\n%s", want, stdout.String())
	}
	if !strings.Contains(stdout.String(), "Google's timing") || strings.Contains(stdout.String(), "FAST") {
		t.Errorf("stdout does not say the Monitoring server keeps Google's timing:\n%s", stdout.String())
	}
	if env, err := cloud.ReadEnv(filepath.Join(dir, cloud.EnvFile)); err != nil || env[cloud.MonitoringModeEnv] != cloud.MonitoringGoogle || env["MONITORING_EMULATOR_HOST"] == "" || env["SCHEDULER_EMULATOR_HOST"] == "" {
		t.Errorf("local.env: %v (err %v), want MONITORING_EMULATOR_HOST, SCHEDULER_EMULATOR_HOST and %s=%s", env, err, cloud.MonitoringModeEnv, cloud.MonitoringGoogle)
	}
	for _, want := range []string{"minute schedules like Google's; sweep */10 * * * *", "alerts         2 alert policies"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout does not say %q:\n%s", want, stdout.String())
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want nothing", stderr.String())
	}
	if got := terminal(); got != "" {
		t.Errorf("the process's stderr got %q, want nothing", got)
	}

	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("the local cloud's logs: %v", err)
	}
	var messages []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct{ Severity, Message string }
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Severity == "" {
			t.Errorf("%s: line %q is not a JSON log record (%v)", logPath, l, err)
			continue
		}
		messages = append(messages, rec.Message)
	}
	// From start-up to the last step of Close.
	for _, want := range []string{"starting Pub/Sub", "bridge started", "Pub/Sub server closed"} {
		if !slices.Contains(messages, want) {
			t.Errorf("%s has no record %q; it has %q", logPath, want, messages)
		}
	}
}

// TestLocalUpFastSaysSo: --fast is printed next to the Monitoring server and written into
// local.env, so that no figure is taken from it by mistake.
func TestLocalUpFastSaysSo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local cloud")
	}
	dir := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var env map[string]string
	stdout := &lines{onLine: func(l string) {
		if l == "ready" {
			env, _ = cloud.ReadEnv(filepath.Join(dir, cloud.EnvFile))
			cancel()
		}
	}}
	_ = captureStderr(t) // functions-framework writes to the process's stderr
	if code := Main(ctx, []string{"--dir", dir, "local", "up", "--pubsub", "pstest", "--fast"}, stdout, io.Discard); code != 0 {
		t.Fatalf("coalmine local up --fast: exit %d; stdout:\n%s", code, stdout.String())
	}
	if !strings.Contains(stdout.String(), "Monitoring") || !strings.Contains(stdout.String(), "FAST MODE") {
		t.Errorf("stdout does not say FAST MODE on the Monitoring line:\n%s", stdout.String())
	}
	if want := "FAST MODE: seconds schedules; tick jobs every 2s, sweep */30 * * * * *"; !strings.Contains(stdout.String(), want) {
		t.Errorf("stdout does not say %q:\n%s", want, stdout.String())
	}
	if env[cloud.MonitoringModeEnv] != cloud.MonitoringFast {
		t.Errorf("local.env %s = %q, want %q", cloud.MonitoringModeEnv, env[cloud.MonitoringModeEnv], cloud.MonitoringFast)
	}
}
