package policy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// mustParse parses src and fails the test on error.
func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, src)
	}
	return p
}

// wantOneFieldError checks that err holds exactly one problem, a *FieldError with the field
// and rule given.
func wantOneFieldError(t *testing.T, err error, field, rule string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s: %s", field, rule)
	}
	if all := unjoin(err); len(all) != 1 {
		t.Fatalf("got %d errors, want 1 (%s: %s):\n%v", len(all), field, rule, err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("got %T %v, want a *FieldError", err, err)
	}
	if fe.Field != field || fe.Rule != rule {
		t.Errorf("got %q: %q, want %q: %q", fe.Field, fe.Rule, field, rule)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false, want true", err)
	}
}

func TestExampleValidates(t *testing.T) {
	p, err := Parse(Example())
	if err != nil {
		t.Fatalf("Parse(Example()): %v", err)
	}
	s, err := p.Service("ai-square")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"project", s.Project, "local-project"},
		{"region", s.Region, "local"},
		{"images", s.Images, []string{"local.dev/ai-square/web"}},
		{"strategy", s.Strategy, StrategyCanary},
		{"percents", s.StagePercents(), []int{10, 30, 50, 100}},
		{"bake", s.Stages[0].Bake.Duration, 30 * time.Second},
		{"timezone", s.Windows.Timezone, "Asia/Taipei"},
		{"deny", s.Windows.Deny, DefaultDeny()},
		{"sources", s.Backup.Storage.Sources, []Location{{Bucket: "ai-square-user-data"}}},
		{"driver", s.Backup.Database.Driver, DriverPostgres},
		{"database", s.Backup.Database.Database, "ai_square_db"},
		{"target", s.Backup.Target.Bucket, "coalmine-backups"},
		{"alerts", s.Alerts, []Alert{
			{Policy: "ai-square error rate > 5%", Action: ActionRollback, ErrorRateAbove: 0.05, For: Dur(time.Minute)},
			{Policy: "ai-square p95 > 2000ms", Action: ActionPause, LatencyP95AboveMs: 2000, For: Dur(time.Minute)},
		}},
		{"hook path", s.Rollback.Hook.Path, "/internal/sync-gcs-from-postgres"},
		{"errorRate.max", s.Gates.ErrorRate.Max, 0.001},
		{"latency maxMs", s.Gates.LatencyP95.MaxMs, 1000},
		{"latency onFail", s.Gates.LatencyP95.OnFail, ActionPause},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

// TestDocsFullExample keeps the full example of docs/policy.md valid.
func TestDocsFullExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "policy.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- full-example")
	if !ok {
		t.Fatal("docs/policy.md has no full-example marker")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("docs/policy.md: full example block not closed")
	}
	p := mustParse(t, block)
	if got, want := len(p.Services), 2; got != want {
		t.Fatalf("services: got %d, want %d", got, want)
	}
	s, _ := p.Service("ai-square")
	if got, want := s.Gates.DBConnections.DatabaseID(), "my-project:ai-square-db"; got != want {
		t.Errorf("DatabaseID: got %q, want %q", got, want)
	}
	if got, want := s.Backup.Retention.MaxAge.Duration, 720*time.Hour; got != want {
		t.Errorf("maxAge: got %v, want %v", got, want)
	}
	docs, _ := p.Service("ai-square-docs")
	if got, want := docs.StagePercents(), []int{100}; !slices.Equal(got, want) {
		t.Errorf("blue-green stages: got %v, want %v", got, want)
	}
}

func TestExampleReturnsACopy(t *testing.T) {
	a := Example()
	a[0] = 'X'
	if b := Example(); b[0] == 'X' {
		t.Error("Example() returned shared bytes")
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	p := mustParse(t, string(Example()))
	out, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Marshal(example)): %v\n%s", err, out)
	}
	for _, x := range []*Policy{p, q} {
		for i := range x.Services {
			x.Services[i].Windows.loc = nil
		}
	}
	if !reflect.DeepEqual(q, p) {
		t.Errorf("round trip changed the policy:\ngot  %+v\nwant %+v", q, p)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, Example(), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := len(p.Services), 1; got != want {
		t.Errorf("services: got %d, want %d", got, want)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("Load(missing): got %v, want a not-exist error that is not ErrInvalid", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	const svc = "services:\n  - name: web\n    project: my-project\n    region: asia-east1\n    images: [x.dev/a/web]\n    backup: {required: false}\n"
	tests := []struct {
		name string
		src  string
		want []string // substrings of the error
	}{
		{"unknown service field", svc + "    colour: blue\n", []string{`policy: line 7: unknown field "colour"`}},
		{"unknown top-level field", "servces: []\n", []string{`line 1: unknown field "servces"`}},
		{"unknown nested field", svc + "    gates:\n      errorRate: {maxx: 0.1}\n", []string{`line 8: unknown field "maxx"`}},
		{"unknown defaults field", "defaults:\n  stage: []\n" + svc, []string{`line 2: unknown field "stage"`}},
		{"wrong type", svc + "    stages: [{percent: ten}]\n", []string{"line 7:", "`ten`"}},
		{"duration mapping", svc + "    deadlines: {stage: {hours: 3}}\n", []string{"line 7: cannot unmarshal a mapping into a duration"}},
		{"several problems", svc + "    colour: blue\n    size: 3\n", []string{`line 7: unknown field "colour"`, `line 8: unknown field "size"`}},
		{"duplicate key", svc + "    name: again\n", []string{`line 7: mapping key "name" already defined at line 2`}},
		{"two documents", svc + "---\n" + svc, []string{"only one YAML document is allowed"}},
		{"document after an empty one", svc + "---\n---\n" + svc, []string{"only one YAML document is allowed"}},
		{"syntax", "services: [\n", []string{"policy: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src))
			if err == nil {
				t.Fatal("got nil error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
		})
	}
}

const twoServices = `
defaults:
  backup: {required: false}
services:
  - name: web
    project: my-project
    region: asia-east1
    images: [asia-east1-docker.pkg.dev/my-project/app/web, asia-east1-docker.pkg.dev/my-project/app/shared]
    alerts: [{policy: web errors, action: rollback}]
  - name: api
    project: my-project
    region: asia-east1
    images: [asia-east1-docker.pkg.dev/my-project/app/api, asia-east1-docker.pkg.dev/my-project/app/shared]
`

func TestEmptyTrailingDocument(t *testing.T) {
	for _, tail := range []string{"---\n", "...\n", "---\n# nothing\n", "--- ~\n"} {
		if _, err := Parse(append(Example(), tail...)); err != nil {
			t.Errorf("example + %q: %v", tail, err)
		}
	}
}

func TestServiceLookup(t *testing.T) {
	p := mustParse(t, twoServices)

	s, err := p.Service("api")
	if err != nil || s.Name != "api" {
		t.Errorf("Service(api): got %v, %v", s, err)
	}
	if s != &p.Services[1] {
		t.Error("Service(api) does not point into p.Services")
	}
	_, err = p.Service("nope")
	if !errors.Is(err, ErrUnknownService) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Service(nope): got %v, want ErrUnknownService naming it", err)
	}

	tests := []struct {
		repo      string
		wantFirst string
		wantAll   []string
	}{
		{"asia-east1-docker.pkg.dev/my-project/app/web", "web", []string{"web"}},
		{"asia-east1-docker.pkg.dev/my-project/app/api", "api", []string{"api"}},
		{"asia-east1-docker.pkg.dev/my-project/app/shared", "web", []string{"web", "api"}},
		{"asia-east1-docker.pkg.dev/my-project/app/web:v1", "", nil},
		{"asia-east1-docker.pkg.dev/my-project/app", "", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, s := range p.ServicesForImage(tt.repo) {
			got = append(got, s.Name)
		}
		if !slices.Equal(got, tt.wantAll) {
			t.Errorf("ServicesForImage(%s): got %v, want %v", tt.repo, got, tt.wantAll)
		}
		s, err := p.ServiceForImage(tt.repo)
		if tt.wantFirst == "" {
			if !errors.Is(err, ErrImageNotAllowed) {
				t.Errorf("ServiceForImage(%s): got %v, %v, want ErrImageNotAllowed", tt.repo, s, err)
			}
			continue
		}
		if err != nil || s.Name != tt.wantFirst {
			t.Errorf("ServiceForImage(%s): got %v, %v, want %s", tt.repo, s, err, tt.wantFirst)
		}
	}

	web := &p.Services[0]
	if a, ok := web.AlertAction("web errors"); !ok || a != ActionRollback {
		t.Errorf("AlertAction(web errors): got %q, %v, want rollback, true", a, ok)
	}
	if a, ok := web.AlertAction("other"); ok {
		t.Errorf("AlertAction(other): got %q, true, want false", a)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"24h", 24 * time.Hour, false},
		{"90s", 90 * time.Second, false},
		{"1h30m", 90 * time.Minute, false},
		{"0", 0, false},
		{"2d", 48 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"30d", 720 * time.Hour, false},
		{"-2d", -48 * time.Hour, false},
		{"+1d", 24 * time.Hour, false},
		{"-90s", -90 * time.Second, false},
		{"", 0, true},
		{"3x", 0, true},
		{"d", 0, true},
		{"2", 0, true},
		{"1.5d", 0, true},
		{"2d-1h", 0, true},
		{"2dd", 0, true},
		{"99999999999999999999d", 0, true},
		{"106752d", 0, true},
		{"106751d23h", 106751*24*time.Hour + 23*time.Hour, false},
		{"106751d23h48m", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseDuration(%q): got %v, %v, want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		in        string
		want      time.Duration
		wantValid bool
		wantOut   string
	}{
		{"2d", 48 * time.Hour, true, "48h"},
		{"90s", 90 * time.Second, true, "1m30s"},
		{"1h30m", 90 * time.Minute, true, "1h30m"},
		{"0", 0, true, "0s"},
		{`"5m"`, 5 * time.Minute, true, "5m"},
		{"3x", 0, false, "3x"},
	}
	for _, tt := range tests {
		var d Duration
		if err := yaml.Unmarshal([]byte(tt.in), &d); err != nil {
			t.Fatalf("Unmarshal(%s): %v", tt.in, err)
		}
		if d.Duration != tt.want || d.Valid() != tt.wantValid {
			t.Errorf("Unmarshal(%s): got %v valid %v, want %v valid %v", tt.in, d.Duration, d.Valid(), tt.want, tt.wantValid)
		}
		out, err := yaml.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != tt.wantOut {
			t.Errorf("Marshal(%s): got %q, want %q", tt.in, got, tt.wantOut)
		}
	}
	var d Duration
	if err := yaml.Unmarshal([]byte("[1, 2]"), &d); err == nil {
		t.Error("Unmarshal(sequence) into Duration: got nil error")
	}
}

func TestDurationJSON(t *testing.T) {
	in := struct{ D Duration }{Dur(36 * time.Hour)}
	out, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), `{"D":"36h"}`; got != want {
		t.Errorf("Marshal: got %s, want %s", got, want)
	}
	var back struct{ D Duration }
	if err := json.Unmarshal([]byte(`{"D":"2d"}`), &back); err != nil || back.D != Dur(48*time.Hour) {
		t.Errorf("Unmarshal 2d: got %v, %v", back.D, err)
	}
	if err := json.Unmarshal([]byte(`{"D":"soon"}`), &back); err == nil {
		t.Error("Unmarshal soon: got nil error")
	}
}

func TestBadDurationNamesField(t *testing.T) {
	src := `
services:
  - name: web
    project: my-project
    region: asia-east1
    images: [x.dev/a/web]
    backup: {required: false}
    stages: [{percent: 50, bake: 3x}, {percent: 100}]
`
	_, err := Parse([]byte(src))
	wantOneFieldError(t, err, "services[0].stages[0].bake", `must be a duration such as 90s, 24h or 2d, got "3x"`)
}

func TestProjectInstance(t *testing.T) {
	tests := []struct {
		in                      string
		project, instance, dbID string
		ok                      bool
	}{
		{"my-project:main-db", "my-project", "main-db", "my-project:main-db", true},
		{"my-project:asia-east1:ai-square-db", "my-project", "ai-square-db", "my-project:ai-square-db", true},
		{"main-db", "", "", "main-db", false},
		{"my-project:Main", "", "", "my-project:Main", false},
	}
	for _, tt := range tests {
		p, i, ok := Database{Instance: tt.in}.ProjectInstance()
		if p != tt.project || i != tt.instance || ok != tt.ok {
			t.Errorf("ProjectInstance(%s): got %q %q %v, want %q %q %v", tt.in, p, i, ok, tt.project, tt.instance, tt.ok)
		}
		if got := (DBConnectionsGate{Instance: tt.in}).DatabaseID(); got != tt.dbID {
			t.Errorf("DatabaseID(%s): got %q, want %q", tt.in, got, tt.dbID)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Example())
	f.Add([]byte(twoServices))
	f.Add([]byte("defaults: {windows: {deny: [{days: [mon], from: '00:00', to: '24:00'}]}}\nservices: [{name: a}]\n"))
	f.Add([]byte("services:\n  - &a {name: x}\n  - *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		if len(p.Services) == 0 {
			t.Fatal("valid policy without services")
		}
		for _, s := range p.Services {
			ps := s.StagePercents()
			if len(ps) == 0 || ps[len(ps)-1] != 100 {
				t.Fatalf("valid service %q with stages %v", s.Name, ps)
			}
			now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
			if next := s.Windows.NextAllowed(now); !next.IsZero() && (next.Before(now) || !s.Windows.Allows(next)) {
				t.Fatalf("NextAllowed(%v) = %v, not allowed or before", now, next)
			}
		}
	})
}
