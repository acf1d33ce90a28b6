package cloud

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/release"
)

// A Pub/Sub message on coalmine-release whose data is not a command, as the
// bridge (and Eventarc) POSTs it.
const (
	testSource  = "//pubsub.googleapis.com/projects/local-project/topics/" + events.TopicRelease
	testMessage = `{"message":{"data":"bm90IGpzb24=","messageId":"1","publishTime":"2026-01-02T12:34:56.789Z"},"subscription":"projects/local-project/subscriptions/s"}`
)

type delivery struct {
	contentType string
	headers     map[string]string
	body        string
}

func binaryHeaders() map[string]string {
	return map[string]string{
		"Ce-Id": "1", "Ce-Source": testSource, "Ce-Specversion": "1.0",
		"Ce-Type": events.MessagePublishedType, "Ce-Time": "2026-01-02T12:34:56.789Z",
	}
}

func post(t *testing.T, url string, d delivery) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", d.contentType)
	for k, v := range d.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestFunctionsServedAsInProduction: the local cloud serves its functions
// through functions-framework-go's own handler, so a delivery gets what it
// gets from a deployed function, including the framework's answer to a
// request that is not a CloudEvent.
func TestFunctionsServedAsInProduction(t *testing.T) {
	pol, err := policy.Parse(policy.Example())
	if err != nil {
		t.Fatal(err)
	}
	env := &release.Env{Policy: pol, Log: slog.New(slog.DiscardHandler)}
	mux, err := functionsMux(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()

	noSource := binaryHeaders()
	delete(noSource, "Ce-Source")
	tests := []struct {
		name       string
		d          delivery
		wantStatus int
		// wantGoogleStatus is the X-Google-Status header functions-framework
		// sets on the errors it answers itself.
		wantGoogleStatus string
	}{
		{
			name:       "binary CloudEvent, data not a command (acknowledged)",
			d:          delivery{contentType: "application/json", headers: binaryHeaders(), body: testMessage},
			wantStatus: http.StatusOK,
		},
		{
			name: "structured CloudEvent",
			d: delivery{contentType: "application/cloudevents+json", body: `{"specversion":"1.0","id":"1","type":"` + events.MessagePublishedType +
				`","source":"` + testSource + `","datacontenttype":"application/json","data":` + testMessage + `}`},
			wantStatus: http.StatusOK,
		},
		{
			name:       "binary CloudEvent without ce-source",
			d:          delivery{contentType: "application/json", headers: noSource, body: testMessage},
			wantStatus: http.StatusBadRequest,
		},
		{
			name:             "not a CloudEvent nor a background event",
			d:                delivery{contentType: "application/json", body: "not json"},
			wantStatus:       http.StatusBadRequest,
			wantGoogleStatus: "crash",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, srv.URL+"/"+events.FunctionBackup, tt.d)
			body, _ := io.ReadAll(resp.Body)
			if got, want := resp.StatusCode, tt.wantStatus; got != want {
				t.Errorf("status %d (%s), want %d", got, strings.TrimSpace(string(body)), want)
			}
			if got, want := resp.Header.Get("X-Google-Status"), tt.wantGoogleStatus; got != want {
				t.Errorf("X-Google-Status %q, want %q", got, want)
			}
		})
	}
}

// TestHandlerAsFunctionsFramework: errors and panics answer 500 (the bridge
// delivers again), and CLOUD_RUN_TIMEOUT_SECONDS bounds the function's
// context, as functions-framework does on Cloud Run.
func TestHandlerAsFunctionsFramework(t *testing.T) {
	t.Setenv("CLOUD_RUN_TIMEOUT_SECONDS", "300")
	errBoom := errors.New("boom")
	tests := []struct {
		name       string
		fn         release.Handler
		wantStatus int
	}{
		{"success", func(context.Context, event.Event) error { return nil }, http.StatusOK},
		{"error", func(context.Context, event.Event) error { return errBoom }, http.StatusInternalServerError},
		{"panic", func(context.Context, event.Event) error { panic(errBoom) }, http.StatusInternalServerError},
		{"deadline from CLOUD_RUN_TIMEOUT_SECONDS", func(ctx context.Context, _ event.Event) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("the function's context has no deadline")
			}
			return nil
		}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := handler(context.Background(), tt.fn)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			resp := post(t, srv.URL, delivery{contentType: "application/json", headers: binaryHeaders(), body: testMessage})
			body, _ := io.ReadAll(resp.Body)
			if got, want := resp.StatusCode, tt.wantStatus; got != want {
				t.Errorf("status %d (%s), want %d", got, strings.TrimSpace(string(body)), want)
			}
		})
	}
}

// TestFrameworkVersion: go.mod requires the functions-framework-go whose
// unexported wrapCloudEventFunction framework.go declares (test binaries
// carry no module versions for checkFramework to check).
func TestFrameworkVersion(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to read go.mod with: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-m", "-f", "{{with .Replace}}{{.Version}}{{else}}{{.Version}}{{end}}", frameworkModule).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", frameworkModule, err)
	}
	if got, want := strings.TrimSpace(string(out)), frameworkVersion; got != want {
		t.Errorf("go.mod has %s %s, want %s: check wrapCloudEventFunction's signature in that version, then update frameworkVersion", frameworkModule, got, want)
	}
}
