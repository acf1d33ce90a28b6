package policy

import (
	"reflect"
	"testing"
	"time"
)

const minimalService = `
services:
  - name: web
    project: my-project
    region: asia-east1
    images: [asia-east1-docker.pkg.dev/my-project/app/web]
    backup:
      storage: {sources: [{bucket: user-data}]}
      target: {bucket: backups}
`

func TestBuiltInDefaults(t *testing.T) {
	s := mustParse(t, minimalService).Services[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"container", s.Container, ""},
		{"strategy", s.Strategy, StrategyCanary},
		{"stages", s.Stages, DefaultCanaryStages()},
		{"percents", s.StagePercents(), []int{10, 30, 50, 100}},
		{"minRequests", s.Gates.MinRequests, 100},
		{"errorRate", s.Gates.ErrorRate, ErrorRateGate{Max: 0.001, MaxIncreaseOverStable: 0.005, Confidence: 0.95, OnFail: ActionRollback}},
		{"latencyP95", s.Gates.LatencyP95, LatencyGate{MaxMs: 1000, MaxRatioToStable: 1.5, OnFail: ActionPause}},
		{"dbConnections", s.Gates.DBConnections, (*DBConnectionsGate)(nil)},
		{"interval", s.Gates.Interval, Dur(time.Minute)},
		{"alignment", s.Gates.Alignment, Dur(time.Minute)},
		{"ingestionDelay", s.Gates.IngestionDelay, Dur(3 * time.Minute)},
		{"alerts", s.Alerts, []Alert(nil)},
		{"timezone", s.Windows.Timezone, "UTC"},
		{"deny", s.Windows.Deny, DefaultDeny()},
		{"allow", s.Windows.Allow, []TimeRange(nil)},
		{"required", s.Backup.Required, true},
		{"workers", s.Backup.Storage.Workers, 16},
		{"driver", s.Backup.Database.Driver, DriverNone},
		{"urlEnv", s.Backup.Database.URLEnv, ""},
		{"source prefix", s.Backup.Storage.Sources[0].Prefix, ""},
		{"retention", s.Backup.Retention, Retention{Keep: 10, MaxAge: Dur(720 * time.Hour)}},
		{"rollback", s.Rollback, Rollback{}},
		{"deadlines", s.Deadlines, Deadlines{
			Backup: Dur(2 * time.Hour), Deploy: Dur(15 * time.Minute), Stage: Dur(72 * time.Hour),
			Paused: Dur(72 * time.Hour), Rollback: Dur(10 * time.Minute), Waiting: Dur(168 * time.Hour), Guard: Dur(time.Hour),
			Retries: 3,
		}},
		{"history", s.History, 20},
		{"failedDigests", s.FailedDigests, 20},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestDefaultsFunc(t *testing.T) {
	s := Defaults()
	s.Name, s.Project, s.Region = "web", "my-project", "asia-east1"
	s.Images = []string{"x.dev/a/web"}
	s.Backup.Required = false
	if err := (&Policy{Services: []Service{s}}).Validate(); err != nil {
		t.Errorf("Defaults() with name, project, region, images: %v", err)
	}
	// Defaults returns fresh slices each time.
	s.Stages[0].Percent = 1
	if got := Defaults().Stages[0].Percent; got != 10 {
		t.Errorf("Defaults() shares stages: got %d, want 10", got)
	}
}

func TestDefaultsBlockMerge(t *testing.T) {
	src := `
defaults:
  stages: [{percent: 20, bake: 1h}, {percent: 100}]
  gates:
    minRequests: 500
    errorRate: {max: 0.01}
    dbConnections: {instance: "my-project:main-db", maxConnections: 50}
  alerts: [{policy: shared alert, action: pause}]
  windows:
    timezone: Europe/Berlin
    allow: [{days: [Tue, Wed, Thu], from: "09:00", to: "17:00"}]
  backup:
    database: {driver: postgres, database: app}
    target: {bucket: backups, prefix: all/}
  rollback:
    env: {A: "1", B: "2"}
    hook: {path: /hook}
  deadlines: {stage: 48h, retries: 5}
  history: 7
services:
  - name: inherits
    project: my-project
    region: asia-east1
    images: [x.dev/a/inherits]
  - name: overrides
    project: my-project
    region: asia-east1
    images: [x.dev/a/overrides]
    stages: [{percent: 5, bake: 2h}, {percent: 50, bake: 2h}, {percent: 100}]
    gates:
      errorRate: {confidence: 0.99}
      dbConnections: null
    alerts: []
    windows: {allow: [{days: [Mon], from: "10:00", to: "11:00"}]}
    backup:
      required: false
      database: {database: other}
      target: {prefix: overrides/}
    rollback:
      env: {B: "3", C: "4"}
      hook: {timeout: 1m}
    deadlines: {retries: 0}
    history: 9
  - name: bluegreen
    project: my-project
    region: asia-east1
    images: [x.dev/a/bluegreen]
    strategy: blue-green
    gates:
      ingestionDelay: 0s
      latencyP95: {maxRatioToStable: 0}
    windows: {deny: []}
`
	p := mustParse(t, src)
	in, over, bg := p.Services[0], p.Services[1], p.Services[2]
	checks := []struct {
		name      string
		got, want any
	}{
		// Inherited from the defaults block, with built-in defaults below it.
		{"inherits percents", in.StagePercents(), []int{20, 100}},
		{"inherits minRequests", in.Gates.MinRequests, 500},
		{"inherits errorRate", in.Gates.ErrorRate, ErrorRateGate{Max: 0.01, MaxIncreaseOverStable: 0.005, Confidence: 0.95, OnFail: ActionRollback}},
		{"inherits dbConnections", in.Gates.DBConnections, &DBConnectionsGate{Max: 0.8, Instance: "my-project:main-db", MaxConnections: 50, OnFail: ActionRollback}},
		{"inherits alerts", in.Alerts, []Alert{{Policy: "shared alert", Action: ActionPause}}},
		{"inherits timezone", in.Windows.Timezone, "Europe/Berlin"},
		{"inherits deny", in.Windows.Deny, DefaultDeny()},
		{"inherits allow", in.Windows.Allow, []TimeRange{{Days: []string{"Tue", "Wed", "Thu"}, From: "09:00", To: "17:00"}}},
		{"inherits database", in.Backup.Database, Database{Driver: DriverPostgres, URLEnv: "DATABASE_URL", Database: "app"}},
		{"inherits target", in.Backup.Target, Location{Bucket: "backups", Prefix: "all/"}},
		{"inherits env", in.Rollback.Env, map[string]string{"A": "1", "B": "2"}},
		{"inherits hook", in.Rollback.Hook, &Hook{Path: "/hook", Method: "POST", Timeout: Dur(5 * time.Minute)}},
		{"inherits stage deadline", in.Deadlines.Stage, Dur(48 * time.Hour)},
		{"inherits deploy deadline", in.Deadlines.Deploy, Dur(15 * time.Minute)},
		{"inherits retries", in.Deadlines.Retries, 5},
		{"inherits history", in.History, 7},

		// Service values win; lists replace; mappings merge key by key.
		{"overrides percents", over.StagePercents(), []int{5, 50, 100}},
		{"overrides errorRate", over.Gates.ErrorRate, ErrorRateGate{Max: 0.01, MaxIncreaseOverStable: 0.005, Confidence: 0.99, OnFail: ActionRollback}},
		{"overrides minRequests", over.Gates.MinRequests, 500},
		{"null turns gate off", over.Gates.DBConnections, (*DBConnectionsGate)(nil)},
		{"empty list replaces", over.Alerts, []Alert{}},
		{"allow replaced", over.Windows.Allow, []TimeRange{{Days: []string{"Mon"}, From: "10:00", To: "11:00"}}},
		{"explicit false", over.Backup.Required, false},
		{"database merged", over.Backup.Database, Database{Driver: DriverPostgres, URLEnv: "DATABASE_URL", Database: "other"}},
		{"target merged", over.Backup.Target, Location{Bucket: "backups", Prefix: "overrides/"}},
		{"env merged", over.Rollback.Env, map[string]string{"A": "1", "B": "3", "C": "4"}},
		{"hook merged", over.Rollback.Hook, &Hook{Path: "/hook", Method: "POST", Timeout: Dur(time.Minute)}},
		{"explicit zero retries", over.Deadlines.Retries, 0},
		{"overrides history", over.History, 9},

		// Blue-green does not inherit canary stages; explicit zeros and [] stay.
		{"blue-green stages", bg.Stages, DefaultBlueGreenStages()},
		{"explicit zero delay", bg.Gates.IngestionDelay, Dur(0)},
		{"explicit zero ratio", bg.Gates.LatencyP95.MaxRatioToStable, 0.0},
		{"explicit empty deny", bg.Windows.Deny, []TimeRange{}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}

	// Each service holds its own copy of what it inherited.
	p.Services[0].Rollback.Env["A"] = "changed"
	p.Services[0].Gates.DBConnections.Max = 0.5
	if got := p.Services[1].Rollback.Env["A"]; got != "1" {
		t.Errorf("env shared between services: got %q, want 1", got)
	}
	if got := p.Services[2].Gates.DBConnections.Max; got != 0.8 {
		t.Errorf("dbConnections shared between services: got %v, want 0.8", got)
	}
}

func TestStrategyDefaults(t *testing.T) {
	const head = `
services:
  - name: web
    project: my-project
    region: asia-east1
    images: [x.dev/a/web]
    backup: {required: false}
`
	tests := []struct {
		name     string
		defaults string
		service  string
		want     []int
	}{
		{"canary default", "", "", []int{10, 30, 50, 100}},
		{"blue-green default", "", "    strategy: blue-green\n", []int{100}},
		{"blue-green from defaults", "defaults: {strategy: blue-green}\n", "", []int{100}},
		{"blue-green ignores inherited stages", "defaults: {stages: [{percent: 50}, {percent: 100}]}\n", "    strategy: blue-green\n", []int{100}},
		{"canary service under blue-green defaults", "defaults: {strategy: blue-green}\n", "    strategy: canary\n", []int{10, 30, 50, 100}},
		{"null stages means default", "defaults: {stages: [{percent: 50}, {percent: 100}]}\n", "    stages: ~\n", []int{10, 30, 50, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.defaults+head+tt.service)
			if got := p.Services[0].StagePercents(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDatabaseDriverDefaults(t *testing.T) {
	tests := []struct {
		name string
		db   string
		want Database
	}{
		{"absent", "{}", Database{Driver: DriverNone}},
		{"postgres", "{driver: postgres, database: app}", Database{Driver: DriverPostgres, URLEnv: "DATABASE_URL", Database: "app"}},
		{"postgres urlEnv", "{driver: postgres, urlEnv: PG_URL, database: app}", Database{Driver: DriverPostgres, URLEnv: "PG_URL", Database: "app"}},
		{"cloudsql", "{driver: cloudsql, instance: 'my-project:main', database: app}", Database{Driver: DriverCloudSQL, Instance: "my-project:main", Database: "app"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := minimalService + "      database: " + tt.db + "\n"
			if got := mustParse(t, src).Services[0].Backup.Database; got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRangeBoundsDefault(t *testing.T) {
	src := minimalService + "    windows: {deny: [{days: [Sat, Sun]}], allow: [{from: '08:00'}, {to: '18:00'}]}\n"
	w := mustParse(t, src).Services[0].Windows
	wantDeny := []TimeRange{{Days: []string{"Sat", "Sun"}, From: "00:00", To: "24:00"}}
	wantAllow := []TimeRange{{From: "08:00", To: "24:00"}, {From: "00:00", To: "18:00"}}
	if !reflect.DeepEqual(w.Deny, wantDeny) || !reflect.DeepEqual(w.Allow, wantAllow) {
		t.Errorf("got deny %+v allow %+v, want %+v %+v", w.Deny, w.Allow, wantDeny, wantAllow)
	}
}
