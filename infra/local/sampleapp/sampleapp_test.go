package sampleapp_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ai-square/coalmine/infra/local/sampleapp"
)

// envOf turns pairs into a getenv function.
func envOf(kv ...string) func(string) string {
	m := make(map[string]string)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestConfigFromEnv(t *testing.T) {
	cases := []struct {
		name    string
		env     func(string) string
		want    sampleapp.Config
		wantErr string
	}{
		{"defaults", envOf("K_SERVICE", "svc", "K_REVISION", "svc-v1"), sampleapp.Config{Service: "svc", Revision: "svc-v1"}, ""},
		{"error rate and latency", envOf(sampleapp.EnvErrorRate, "0.25", sampleapp.EnvLatencyMS, "40"), sampleapp.Config{ErrorRate: 0.25, Latency: 40 * time.Millisecond}, ""},
		{"error rate above 1", envOf(sampleapp.EnvErrorRate, "1.5"), sampleapp.Config{}, sampleapp.EnvErrorRate},
		{"error rate not a number", envOf(sampleapp.EnvErrorRate, "lots"), sampleapp.Config{}, sampleapp.EnvErrorRate},
		{"negative latency", envOf(sampleapp.EnvLatencyMS, "-1"), sampleapp.Config{}, sampleapp.EnvLatencyMS},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sampleapp.ConfigFromEnv(tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ConfigFromEnv error = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ConfigFromEnv: %v", err)
			}
			if got.Service != tc.want.Service || got.Revision != tc.want.Revision || got.ErrorRate != tc.want.ErrorRate || got.Latency != tc.want.Latency {
				t.Errorf("ConfigFromEnv = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestHandler(t *testing.T) {
	cases := []struct {
		name       string
		cfg        sampleapp.Config
		method     string
		path       string
		wantStatus int
		wantBody   string
	}{
		{"root", sampleapp.Config{Service: "svc", Revision: "svc-v1"}, "GET", "/", 200, "svc-v1"},
		{"root with every request failing", sampleapp.Config{Revision: "svc-v1", ErrorRate: 1}, "GET", "/", 500, "injected"},
		{"healthz never fails", sampleapp.Config{Revision: "svc-v1", ErrorRate: 1}, "GET", "/healthz", 200, "ok"},
		{"unknown path", sampleapp.Config{Revision: "svc-v1"}, "GET", "/nope", 404, ""},
		{"wrong method", sampleapp.Config{Revision: "svc-v1"}, "POST", "/healthz", 405, ""},
		{"a delay of its own", sampleapp.Config{Revision: "svc-v1"}, "GET", "/?delay_ms=1", 200, "svc-v1"},
		{"a delay that is not milliseconds", sampleapp.Config{Revision: "svc-v1"}, "GET", "/?delay_ms=abc", 400, "delay_ms"},
		{"a delay too long", sampleapp.Config{Revision: "svc-v1"}, "GET", "/?delay_ms=10001", 400, "0..10000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			sampleapp.New(tc.cfg).ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if got, want := rec.Code, tc.wantStatus; got != want {
				t.Errorf("status %d, want %d", got, want)
			}
			if got, want := rec.Header().Get(sampleapp.HeaderRevision), tc.cfg.Revision; got != want {
				t.Errorf("%s header %q, want %q", sampleapp.HeaderRevision, got, want)
			}
			if !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Errorf("body %q does not contain %q", rec.Body.String(), tc.wantBody)
			}
		})
	}
}

func TestHandlerErrorRateAndLatency(t *testing.T) {
	rolls := []float64{0.1, 0.5, 0.29, 0.3, 0.9}
	var mu sync.Mutex
	i := 0
	h := sampleapp.New(sampleapp.Config{Revision: "r", ErrorRate: 0.3, Latency: 20 * time.Millisecond, Random: func() float64 {
		mu.Lock()
		defer mu.Unlock()
		v := rolls[i%len(rolls)]
		i++
		return v
	}})
	var statuses []int
	start := time.Now()
	for range rolls {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		statuses = append(statuses, rec.Code)
	}
	if got, want := fmt.Sprint(statuses), "[500 200 500 200 200]"; got != want {
		t.Errorf("statuses %s, want %s (a roll below the rate fails)", got, want)
	}
	if got, want := time.Since(start), 5*20*time.Millisecond; got < want {
		t.Errorf("5 requests took %v, want at least %v of added latency", got, want)
	}
	start = time.Now()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/?delay_ms=30", nil))
	if got, want := time.Since(start), 50*time.Millisecond; got < want {
		t.Errorf("a request with delay_ms=30 took %v, want at least %v (its own delay and the configured latency)", got, want)
	}
}

func TestRunFailStart(t *testing.T) {
	var stderr bytes.Buffer
	code := sampleapp.Run(context.Background(), envOf(sampleapp.EnvFailStart, "true", "PORT", "0"), &stderr)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), sampleapp.EnvFailStart+"=true") {
		t.Errorf("stderr %q does not give the reason", stderr.String())
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr syncBuffer
	go func() {
		done <- sampleapp.Run(ctx, envOf("PORT", strconv.Itoa(port), "K_REVISION", "svc-v9"), &stderr)
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); ; {
		resp, err = http.Get(url)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v (stderr: %s)", url, err, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get(sampleapp.HeaderRevision), "svc-v9"; got != want {
		t.Errorf("%s = %q, want %q", sampleapp.HeaderRevision, got, want)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d after cancel, want 0 (stderr: %s)", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRunIfChildReturnsWhenNotChild(t *testing.T) {
	t.Setenv(sampleapp.EnvChild, "")
	sampleapp.RunIfChild() // must return
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
