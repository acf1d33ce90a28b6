package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// validService returns a parsed service that passes validation, for rule cases to break.
func validService(t *testing.T) Service {
	t.Helper()
	return mustParse(t, minimalService).Services[0]
}

func TestFieldError(t *testing.T) {
	e := &FieldError{Field: "services[0].stages[2].percent", Rule: "must be between 1 and 100"}
	if got, want := e.Error(), "policy: services[0].stages[2].percent: must be between 1 and 100"; got != want {
		t.Errorf("Error(): got %q, want %q", got, want)
	}
	if !errors.Is(e, ErrInvalid) {
		t.Error("errors.Is(FieldError, ErrInvalid) = false")
	}
	var err error = errors.Join(errors.New("other"), e)
	var fe *FieldError
	if !errors.As(err, &fe) || fe != e {
		t.Error("errors.As through errors.Join failed")
	}
}

func TestValidateRules(t *testing.T) {
	const (
		p           = "services[0]"
		dur         = `must be a duration such as 90s, 24h or 2d, got "%s"`
		nameTooLong = `must be at most 38 characters: Cloud Run refuses a traffic tag and service name longer than 46 characters together, and coalmine tags revisions with "previous" (8 characters)`
	)
	badDur := func(text string) Duration { return Duration{invalid: text} }
	withDB := func(s *Service, db Database) { s.Backup.Database = db }
	gate := func(s *Service) *DBConnectionsGate {
		s.Gates.DBConnections = &DBConnectionsGate{Max: 0.8, Instance: "my-project:main-db", MaxConnections: 100, OnFail: ActionRollback}
		return s.Gates.DBConnections
	}
	hook := func(s *Service) *Hook {
		s.Rollback.Hook = &Hook{Path: "/hook", Method: "POST", Timeout: Dur(time.Minute)}
		return s.Rollback.Hook
	}
	tests := []struct {
		name   string
		mutate func(s *Service)
		field  string
		rule   string
	}{
		// name, project, region, container
		{"name required", func(s *Service) { s.Name = "" }, p + ".name", "required"},
		{"name upper case", func(s *Service) { s.Name = "Web" }, p + ".name", "must start with a lower-case letter, contain only a-z, 0-9 and '-', and not end with '-'"},
		{"name digit first", func(s *Service) { s.Name = "1web" }, p + ".name", "must start with a lower-case letter, contain only a-z, 0-9 and '-', and not end with '-'"},
		{"name trailing dash", func(s *Service) { s.Name = "web-" }, p + ".name", "must start with a lower-case letter, contain only a-z, 0-9 and '-', and not end with '-'"},
		{"name underscore", func(s *Service) { s.Name = "my_web" }, p + ".name", "must start with a lower-case letter, contain only a-z, 0-9 and '-', and not end with '-'"},
		{"name too long for the longest tag", func(s *Service) { s.Name = "a" + strings.Repeat("b", 38) }, p + ".name", nameTooLong},
		{"name too long for Cloud Run", func(s *Service) { s.Name = strings.Repeat("a", 50) }, p + ".name", nameTooLong},
		{"project required", func(s *Service) { s.Project = "" }, p + ".project", "required"},
		{"project invalid", func(s *Service) { s.Project = "My_Project" }, p + ".project", "must be a project id (6-30 characters: a-z, 0-9, '-', starting with a letter) or a project number"},
		{"project too short", func(s *Service) { s.Project = "proj" }, p + ".project", "must be a project id (6-30 characters: a-z, 0-9, '-', starting with a letter) or a project number"},
		{"region required", func(s *Service) { s.Region = "" }, p + ".region", "required"},
		{"region invalid", func(s *Service) { s.Region = "Asia East" }, p + ".region", "must be a region name such as asia-east1 (a-z, 0-9, '-')"},
		{"container invalid", func(s *Service) { s.Container = "Main_C" }, p + ".container", "must be a container name (at most 63 characters: a-z, 0-9, '-', starting and ending with a letter or digit)"},

		// images
		{"images required", func(s *Service) { s.Images = nil }, p + ".images", "at least one image repository is required"},
		{"image empty", func(s *Service) { s.Images = []string{""} }, p + ".images[0]", "required"},
		{"image scheme", func(s *Service) { s.Images = []string{"https://x.dev/a/web"} }, p + ".images[0]", "must not include a scheme; write HOST/PATH"},
		{"image tag", func(s *Service) { s.Images = []string{"x.dev/a/web:v1"} }, p + ".images[0]", "must not include a tag"},
		{"image digest", func(s *Service) { s.Images = []string{"x.dev/a/web@sha256:abc"} }, p + ".images[0]", "must not include a digest"},
		{"image no host", func(s *Service) { s.Images = []string{"library/web"} }, p + ".images[0]", "must start with a registry host (containing a '.', or localhost[:port])"},
		{"image bare name", func(s *Service) { s.Images = []string{"web"} }, p + ".images[0]", "must start with a registry host (containing a '.', or localhost[:port])"},
		{"image no path", func(s *Service) { s.Images = []string{"x.dev"} }, p + ".images[0]", "must have at least one path element after the host"},
		{"image upper case", func(s *Service) { s.Images = []string{"x.dev/App/web"} }, p + ".images[0]", "path elements must be lower-case a-z, 0-9 separated by '.', '_', '__' or '-'"},
		{"image trailing slash", func(s *Service) { s.Images = []string{"x.dev/a/"} }, p + ".images[0]", "path elements must be lower-case a-z, 0-9 separated by '.', '_', '__' or '-'"},
		{"image space", func(s *Service) { s.Images = []string{" x.dev/a"} }, p + ".images[0]", "must not contain spaces"},
		{"image duplicate", func(s *Service) { s.Images = []string{"x.dev/a", "x.dev/b", "x.dev/a"} }, p + ".images[2]", "duplicate repository (also images[0])"},

		// strategy and stages
		{"strategy invalid", func(s *Service) { s.Strategy = "rolling" }, p + ".strategy", "must be canary or blue-green"},
		{"stages empty", func(s *Service) { s.Stages = []Stage{} }, p + ".stages", "at least one stage is required"},
		{"percent zero", func(s *Service) { s.Stages = []Stage{{Percent: 0}, {Percent: 100}} }, p + ".stages[0].percent", "must be between 1 and 100"},
		{"percent over 100", func(s *Service) { s.Stages = []Stage{{Percent: 10}, {Percent: 101}} }, p + ".stages[1].percent", "must be between 1 and 100"},
		{"percent not increasing", func(s *Service) { s.Stages = []Stage{{Percent: 30}, {Percent: 30}, {Percent: 100}} }, p + ".stages[1].percent", "must be greater than the previous stage's 30"},
		{"percent decreasing", func(s *Service) { s.Stages = []Stage{{Percent: 50}, {Percent: 10}, {Percent: 100}} }, p + ".stages[1].percent", "must be greater than the previous stage's 50"},
		{"last not 100", func(s *Service) { s.Stages = []Stage{{Percent: 10}, {Percent: 50}} }, p + ".stages[1].percent", "the last stage must be 100"},
		{"blue-green stages", func(s *Service) { s.Strategy = StrategyBlueGreen }, p + ".stages", "must be exactly [{percent: 100}] for strategy blue-green"},
		{"bake negative", func(s *Service) { s.Stages[0].Bake = Dur(-time.Second) }, p + ".stages[0].bake", "must not be negative"},
		{"bake invalid", func(s *Service) { s.Stages[1].Bake = badDur("soon") }, p + ".stages[1].bake", `must be a duration such as 90s, 24h or 2d, got "soon"`},
		{"bake past stage deadline", func(s *Service) { s.Stages[2].Bake = Dur(72 * time.Hour) }, p + ".stages[2].bake", "must be shorter than deadlines.stage (72h)"},

		// gates
		{"minRequests zero", func(s *Service) { s.Gates.MinRequests = 0 }, p + ".gates.minRequests", "must be at least 1"},
		{"errorRate max over 1", func(s *Service) { s.Gates.ErrorRate.Max = 1.5 }, p + ".gates.errorRate.max", "must be a fraction between 0 and 1"},
		{"errorRate increase negative", func(s *Service) { s.Gates.ErrorRate.MaxIncreaseOverStable = -0.1 }, p + ".gates.errorRate.maxIncreaseOverStable", "must be a fraction between 0 and 1"},
		{"confidence 1", func(s *Service) { s.Gates.ErrorRate.Confidence = 1 }, p + ".gates.errorRate.confidence", "must be greater than 0 and less than 1"},
		{"confidence 0", func(s *Service) { s.Gates.ErrorRate.Confidence = 0 }, p + ".gates.errorRate.confidence", "must be greater than 0 and less than 1"},
		{"errorRate onFail", func(s *Service) { s.Gates.ErrorRate.OnFail = "ignore" }, p + ".gates.errorRate.onFail", "must be rollback or pause"},
		{"latency maxMs", func(s *Service) { s.Gates.LatencyP95.MaxMs = 0 }, p + ".gates.latencyP95.maxMs", "must be at least 1"},
		{"latency ratio below 1", func(s *Service) { s.Gates.LatencyP95.MaxRatioToStable = 0.5 }, p + ".gates.latencyP95.maxRatioToStable", "must be 0 (off) or at least 1"},
		{"latency onFail", func(s *Service) { s.Gates.LatencyP95.OnFail = "" }, p + ".gates.latencyP95.onFail", "must be rollback or pause"},
		{"db max zero", func(s *Service) { gate(s).Max = 0 }, p + ".gates.dbConnections.max", "must be greater than 0 and at most 1"},
		{"db max over 1", func(s *Service) { gate(s).Max = 1.2 }, p + ".gates.dbConnections.max", "must be greater than 0 and at most 1"},
		{"db instance required", func(s *Service) { gate(s).Instance = "" }, p + ".gates.dbConnections.instance", "required"},
		{"db instance format", func(s *Service) { gate(s).Instance = "main-db" }, p + ".gates.dbConnections.instance", "must be PROJECT:INSTANCE or PROJECT:REGION:INSTANCE"},
		{"db maxConnections", func(s *Service) { gate(s).MaxConnections = 0 }, p + ".gates.dbConnections.maxConnections", "must be at least 1 (the instance's max_connections)"},
		{"db onFail", func(s *Service) { gate(s).OnFail = "stop" }, p + ".gates.dbConnections.onFail", "must be rollback or pause"},
		{"interval below 1m", func(s *Service) { s.Gates.Interval = Dur(30 * time.Second) }, p + ".gates.interval", intervalRule},
		{"interval not dividing an hour", func(s *Service) { s.Gates.Interval = Dur(7 * time.Minute) }, p + ".gates.interval", intervalRule},
		{"interval of 2h", func(s *Service) { s.Gates.Interval = Dur(2 * time.Hour) }, p + ".gates.interval", intervalRule},
		{"alert condition both", func(s *Service) {
			s.Alerts = []Alert{{Policy: "x", Action: ActionRollback, ErrorRateAbove: 0.05, LatencyP95AboveMs: 2000}}
		}, p + ".alerts[0]", "errorRateAbove and latencyP95AboveMs are two alert policies: give each its own entry"},
		{"alert error rate of 1", func(s *Service) {
			s.Alerts = []Alert{{Policy: "x", Action: ActionRollback, ErrorRateAbove: 1}}
		}, p + ".alerts[0].errorRateAbove", "must be a fraction in (0, 1), or left out"},
		{"alert latency negative", func(s *Service) {
			s.Alerts = []Alert{{Policy: "x", Action: ActionPause, LatencyP95AboveMs: -1}}
		}, p + ".alerts[0].latencyP95AboveMs", "must be a positive number of milliseconds, or left out"},
		{"alert for in seconds", func(s *Service) {
			s.Alerts = []Alert{{Policy: "x", Action: ActionPause, LatencyP95AboveMs: 2000, For: Dur(90 * time.Second)}}
		}, p + ".alerts[0].for", "must be whole minutes up to 24h (Cloud Monitoring's condition duration)"},
		{"alert for on an unmanaged policy", func(s *Service) {
			s.Alerts = []Alert{{Policy: "x", Action: ActionPause, For: Dur(time.Minute)}}
		}, p + ".alerts[0].for", "only an alert with errorRateAbove or latencyP95AboveMs has a duration (coalmine does not create the others)"},
		{"guard negative", func(s *Service) { s.Deadlines.Guard = Dur(-time.Minute) }, p + ".deadlines.guard", "must not be negative"},
		{"interval invalid", func(s *Service) { s.Gates.Interval = badDur("1 minute") }, p + ".gates.interval", `must be a duration such as 90s, 24h or 2d, got "1 minute"`},
		{"alignment below 60s", func(s *Service) { s.Gates.Alignment = Dur(30 * time.Second) }, p + ".gates.alignment", "must be at least 60s"},
		{"alignment fractional", func(s *Service) { s.Gates.Alignment = Dur(90500 * time.Millisecond) }, p + ".gates.alignment", "must be a whole number of seconds"},
		{"ingestionDelay negative", func(s *Service) { s.Gates.IngestionDelay = Dur(-time.Minute) }, p + ".gates.ingestionDelay", "must not be negative"},

		// alerts
		{"alert policy required", func(s *Service) { s.Alerts = []Alert{{Action: ActionPause}} }, p + ".alerts[0].policy", "required"},
		{"alert policy duplicate", func(s *Service) {
			s.Alerts = []Alert{{Policy: "a", Action: ActionPause}, {Policy: "b", Action: ActionPause}, {Policy: "a", Action: ActionRollback}}
		}, p + ".alerts[2].policy", "duplicate alert policy (also alerts[0])"},
		{"alert action", func(s *Service) { s.Alerts = []Alert{{Policy: "a", Action: "page"}} }, p + ".alerts[0].action", "must be rollback or pause"},

		// windows
		{"timezone unknown", func(s *Service) { s.Windows.Timezone = "Mars/Olympus" }, p + ".windows.timezone", "unknown time zone; must be an IANA name such as Asia/Taipei"},
		{"timezone Local", func(s *Service) { s.Windows.Timezone = "Local" }, p + ".windows.timezone", "must be an IANA time zone name such as Asia/Taipei (Local is not allowed)"},
		{"day invalid", func(s *Service) { s.Windows.Deny[1].Days = []string{"Fri", "Funday"} }, p + ".windows.deny[1].days[1]", `must be a day of the week (Mon..Sun or Monday..Sunday), got "Funday"`},
		{"from one digit hour", func(s *Service) { s.Windows.Deny[0].From = "7:00" }, p + ".windows.deny[0].from", `must be HH:MM between 00:00 and 23:59, got "7:00"`},
		{"from 24:00", func(s *Service) { s.Windows.Deny[0].From = "24:00" }, p + ".windows.deny[0].from", `must be HH:MM between 00:00 and 23:59, got "24:00"`},
		{"to 00:00", func(s *Service) { s.Windows.Deny[0].To = "00:00" }, p + ".windows.deny[0].to", `must be HH:MM between 00:01 and 24:00, got "00:00"`},
		{"to 24:01", func(s *Service) { s.Windows.Deny[0].To = "24:01" }, p + ".windows.deny[0].to", `must be HH:MM between 00:01 and 24:00, got "24:01"`},
		{"to minutes 60", func(s *Service) { s.Windows.Deny[0].To = "10:60" }, p + ".windows.deny[0].to", `must be HH:MM between 00:01 and 24:00, got "10:60"`},
		{"from not before to", func(s *Service) {
			s.Windows.Allow = []TimeRange{{From: "22:00", To: "06:00"}}
		}, p + ".windows.allow[0].to", "must be after from (22:00); split a range that crosses midnight in two"},

		// backup
		{"source bucket required", func(s *Service) { s.Backup.Storage.Sources[0].Bucket = "" }, p + ".backup.storage.sources[0].bucket", "required"},
		{"source bucket scheme", func(s *Service) { s.Backup.Storage.Sources[0].Bucket = "gs://user-data" }, p + ".backup.storage.sources[0].bucket", "must be a bucket name without gs://"},
		{"source bucket invalid", func(s *Service) { s.Backup.Storage.Sources[0].Bucket = "User-Data" }, p + ".backup.storage.sources[0].bucket", "must be a bucket name (3-63 characters: a-z, 0-9, '-', '_', '.', starting and ending with a letter or digit)"},
		{"source prefix slash", func(s *Service) { s.Backup.Storage.Sources[0].Prefix = "/users" }, p + ".backup.storage.sources[0].prefix", "must not start with '/'"},
		{"workers zero", func(s *Service) { s.Backup.Storage.Workers = 0 }, p + ".backup.storage.workers", "must be between 1 and 256"},
		{"workers too many", func(s *Service) { s.Backup.Storage.Workers = 257 }, p + ".backup.storage.workers", "must be between 1 and 256"},
		{"driver unknown", func(s *Service) { withDB(s, Database{Driver: "mysql", Database: "app"}) }, p + ".backup.database.driver", "must be postgres, cloudsql or none"},
		{"driver missing", func(s *Service) { withDB(s, Database{Database: "app"}) }, p + ".backup.database.driver", "required when database fields are set (postgres, cloudsql or none)"},
		{"driver none with fields", func(s *Service) { withDB(s, Database{Driver: DriverNone, Database: "app"}) }, p + ".backup.database.driver", "is none but database fields are set; set driver to postgres or cloudsql"},
		{"postgres database required", func(s *Service) { withDB(s, Database{Driver: DriverPostgres, URLEnv: "DATABASE_URL"}) }, p + ".backup.database.database", "required unless driver is none"},
		{"postgres database space", func(s *Service) {
			withDB(s, Database{Driver: DriverPostgres, URLEnv: "DATABASE_URL", Database: "my db"})
		}, p + ".backup.database.database", "must not contain spaces or control characters"},
		{"postgres database long", func(s *Service) {
			withDB(s, Database{Driver: DriverPostgres, URLEnv: "DATABASE_URL", Database: strings.Repeat("d", 64)})
		}, p + ".backup.database.database", "must be at most 63 bytes"},
		{"postgres urlEnv", func(s *Service) { withDB(s, Database{Driver: DriverPostgres, URLEnv: "1URL", Database: "app"}) }, p + ".backup.database.urlEnv", "must be an environment variable name"},
		{"postgres instance", func(s *Service) {
			withDB(s, Database{Driver: DriverPostgres, URLEnv: "DATABASE_URL", Instance: "my-project:db", Database: "app"})
		}, p + ".backup.database.instance", "applies only to driver cloudsql"},
		{"cloudsql instance required", func(s *Service) { withDB(s, Database{Driver: DriverCloudSQL, Database: "app"}) }, p + ".backup.database.instance", "required for driver cloudsql"},
		{"cloudsql instance format", func(s *Service) { withDB(s, Database{Driver: DriverCloudSQL, Instance: "db", Database: "app"}) }, p + ".backup.database.instance", "must be PROJECT:INSTANCE or PROJECT:REGION:INSTANCE"},
		{"cloudsql urlEnv", func(s *Service) {
			withDB(s, Database{Driver: DriverCloudSQL, Instance: "my-project:db", URLEnv: "DATABASE_URL", Database: "app"})
		}, p + ".backup.database.urlEnv", "applies only to driver postgres"},
		{"cloudsql database required", func(s *Service) { withDB(s, Database{Driver: DriverCloudSQL, Instance: "my-project:db"}) }, p + ".backup.database.database", "required unless driver is none"},
		{"target required", func(s *Service) { s.Backup.Target = Location{} }, p + ".backup.target.bucket", "required when storage sources or a database are backed up"},
		{"target required for database", func(s *Service) {
			s.Backup.Storage.Sources = nil
			s.Backup.Target = Location{}
			withDB(s, Database{Driver: DriverPostgres, URLEnv: "DATABASE_URL", Database: "app"})
		}, p + ".backup.target.bucket", "required when storage sources or a database are backed up"},
		{"target invalid", func(s *Service) { s.Backup.Target.Bucket = "b" }, p + ".backup.target.bucket", "must be a bucket name (3-63 characters: a-z, 0-9, '-', '_', '.', starting and ending with a letter or digit)"},
		{"target prefix slash", func(s *Service) { s.Backup.Target.Prefix = "/x" }, p + ".backup.target.prefix", "must not start with '/'"},
		{"target inside source", func(s *Service) { s.Backup.Target = Location{Bucket: "user-data", Prefix: "backups/"} }, p + ".backup.target", "must not lie inside storage.sources[0]"},
		{"nothing to back up", func(s *Service) { s.Backup.Storage.Sources = nil }, p + ".backup", "required is true but nothing is backed up: set storage.sources or database, or set required: false"},
		{"retention keep", func(s *Service) { s.Backup.Retention.Keep = 0 }, p + ".backup.retention.keep", "must be at least 1"},
		{"retention maxAge", func(s *Service) { s.Backup.Retention.MaxAge = Dur(-time.Hour) }, p + ".backup.retention.maxAge", "must not be negative"},

		// rollback
		{"env name", func(s *Service) { s.Rollback.Env = map[string]string{"USE-PG": "false"} }, p + ".rollback.env", `"USE-PG" must be an environment variable name (A-Z, a-z, 0-9, '_', not starting with a digit)`},
		{"env reserved", func(s *Service) { s.Rollback.Env = map[string]string{"PORT": "9090"} }, p + ".rollback.env.PORT", "is reserved by Cloud Run"},
		{"hook neither", func(s *Service) { hook(s).Path = "" }, p + ".rollback.hook", "must set exactly one of path and command, got neither"},
		{"hook both", func(s *Service) { hook(s).Command = []string{"sync"} }, p + ".rollback.hook", "must set exactly one of path and command, got both"},
		{"hook path relative", func(s *Service) { hook(s).Path = "internal/sync" }, p + ".rollback.hook.path", "must start with a single '/'"},
		{"hook path url", func(s *Service) { hook(s).Path = "//evil.example/x" }, p + ".rollback.hook.path", "must start with a single '/'"},
		{"hook method", func(s *Service) { hook(s).Method = "post" }, p + ".rollback.hook.method", "must be an upper-case HTTP method such as POST"},
		{"hook command empty", func(s *Service) { h := hook(s); h.Path, h.Method, h.Command = "", "", []string{""} }, p + ".rollback.hook.command[0]", "must name a program"},
		{"hook command with method", func(s *Service) { h := hook(s); h.Path, h.Command = "", []string{"sync"} }, p + ".rollback.hook.method", "applies only to a path hook"},
		{"hook timeout zero", func(s *Service) { hook(s).Timeout = Dur(0) }, p + ".rollback.hook.timeout", "must be greater than 0"},
		{"hook timeout long", func(s *Service) { hook(s).Timeout = Dur(10 * time.Minute) }, p + ".rollback.hook.timeout", "must be at most 9m (the hook runs inside one 10m delivery of the rollback)"},
		{"hook outlasts the rollback deadline", func(s *Service) {
			hook(s).Timeout = Dur(9 * time.Minute)
			s.Deadlines.Rollback = Dur(9 * time.Minute)
		}, p + ".deadlines.rollback", "must be at least rollback.hook.timeout + 1m (10m), or the watchdog publishes the rollback again while the hook still runs"},

		// deadlines
		{"deadline backup", func(s *Service) { s.Deadlines.Backup = Dur(0) }, p + ".deadlines.backup", "must be greater than 0"},
		{"deadline deploy", func(s *Service) { s.Deadlines.Deploy = Dur(-time.Minute) }, p + ".deadlines.deploy", "must be greater than 0"},
		{"deadline stage", func(s *Service) { s.Stages = DefaultBlueGreenStages(); s.Deadlines.Stage = Dur(0) }, p + ".deadlines.stage", "must be greater than 0"},
		{"deadline paused", func(s *Service) { s.Deadlines.Paused = badDur("3 days") }, p + ".deadlines.paused", `must be a duration such as 90s, 24h or 2d, got "3 days"`},
		{"deadline rollback", func(s *Service) { s.Deadlines.Rollback = Dur(0) }, p + ".deadlines.rollback", "must be greater than 0"},
		{"deadline waiting", func(s *Service) { s.Deadlines.Waiting = Dur(0) }, p + ".deadlines.waiting", "must be greater than 0"},
		{"retries negative", func(s *Service) { s.Deadlines.Retries = -1 }, p + ".deadlines.retries", "must be between 0 and 10"},
		{"retries too many", func(s *Service) { s.Deadlines.Retries = 11 }, p + ".deadlines.retries", "must be between 0 and 10"},

		// limits
		{"history zero", func(s *Service) { s.History = 0 }, p + ".history", "must be between 1 and 100"},
		{"history too many", func(s *Service) { s.History = 101 }, p + ".history", "must be between 1 and 100"},
		{"failedDigests zero", func(s *Service) { s.FailedDigests = 0 }, p + ".failedDigests", "must be between 1 and 100"},
		{"failedDigests too many", func(s *Service) { s.FailedDigests = 101 }, p + ".failedDigests", "must be between 1 and 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validService(t)
			tt.mutate(&s)
			err := (&Policy{Services: []Service{s}}).Validate()
			wantOneFieldError(t, err, tt.field, tt.rule)
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *Service)
	}{
		{"as parsed", func(*Service) {}},
		{"localhost registry", func(s *Service) { s.Images = []string{"localhost:5000/web", "localhost/a/b"} }},
		{"artifact registry", func(s *Service) { s.Images = []string{"asia-east1-docker.pkg.dev/my-project/repo/sub/web-app_2.x"} }},
		{"docker hub", func(s *Service) { s.Images = []string{"docker.io/library/nginx"} }},
		{"project number", func(s *Service) { s.Project = "123456789012" }},
		{"name 38 chars", func(s *Service) { s.Name = "a" + strings.Repeat("b", 37) }},
		{"single stage 100", func(s *Service) { s.Stages = []Stage{{Percent: 100}} }},
		{"blue-green", func(s *Service) { s.Strategy, s.Stages = StrategyBlueGreen, DefaultBlueGreenStages() }},
		{"bake zero", func(s *Service) { s.Stages[0].Bake = Dur(0) }},
		{"last bake ignored", func(s *Service) { s.Stages[3].Bake = Dur(1000 * time.Hour) }},
		{"zero fractions", func(s *Service) { s.Gates.ErrorRate.Max, s.Gates.ErrorRate.MaxIncreaseOverStable = 0, 0 }},
		{"latency ratio off", func(s *Service) { s.Gates.LatencyP95.MaxRatioToStable = 0 }},
		{"zero ingestion delay", func(s *Service) { s.Gates.IngestionDelay = Dur(0) }},
		{"connection name", func(s *Service) {
			s.Gates.DBConnections = &DBConnectionsGate{Max: 1, Instance: "my-project:asia-east1:db", MaxConnections: 1, OnFail: ActionPause}
		}},
		{"no deny", func(s *Service) { s.Windows.Deny = nil }},
		{"full day names", func(s *Service) { s.Windows.Deny[0].Days = []string{"monday", "TUESDAY", "Sun"} }},
		{"cloudsql", func(s *Service) {
			s.Backup.Database = Database{Driver: DriverCloudSQL, Instance: "my-project:asia-east1:db", Database: "app"}
		}},
		{"target in other prefix of source bucket", func(s *Service) {
			s.Backup.Storage.Sources[0].Prefix = "users/"
			s.Backup.Target = Location{Bucket: "user-data", Prefix: "backups/"}
		}},
		{"nothing to back up, not required", func(s *Service) { s.Backup.Storage.Sources = nil; s.Backup.Required = false }},
		{"command hook", func(s *Service) {
			s.Rollback.Hook = &Hook{Command: []string{"/bin/sync", "--all"}, Timeout: Dur(time.Minute)}
		}},
		{"retries zero", func(s *Service) { s.Deadlines.Retries = 0 }},
		{"dotted bucket", func(s *Service) { s.Backup.Target.Bucket = "backups.example.com" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validService(t)
			tt.mutate(&s)
			if err := (&Policy{Services: []Service{s}}).Validate(); err != nil {
				t.Errorf("got %v, want nil", err)
			}
		})
	}
}

func TestParseRules(t *testing.T) {
	const svc = `
  - name: %s
    project: my-project
    region: asia-east1
    images: [x.dev/a/%s]
`
	service := func(name string) string { return strings.ReplaceAll(svc, "%s", name) }
	tests := []struct {
		name  string
		src   string
		field string
		rule  string
	}{
		{"no services", "defaults: {backup: {required: false}}\n", "services", "at least one service is required"},
		{"empty services", "services: []\n", "services", "at least one service is required"},
		{"duplicate names", "defaults: {backup: {required: false}}\nservices:" + service("web") + service("api") + service("web"),
			"services[2].name", `duplicate service name "web" (also services[0])`},
		{"name in defaults", "defaults: {name: web, backup: {required: false}}\nservices:" + service("web"), "defaults.name", "not allowed in defaults; set it per service"},
		{"images in defaults", "defaults: {images: [x.dev/a/b], backup: {required: false}}\nservices:" + service("web"), "defaults.images", "not allowed in defaults; set it per service"},
		{"problem in defaults reported once", "defaults: {backup: {required: false}, gates: {interval: 10s}}\nservices:" + service("web") + service("api"),
			"defaults.gates.interval", intervalRule},
		{"problem in defaults list", "defaults: {backup: {required: false}, stages: [{percent: 10, bake: 1h}, {percent: 90}]}\nservices:" + service("web") + service("api"),
			"defaults.stages[1].percent", "the last stage must be 100"},
		{"service overrides broken default", "defaults: {backup: {required: false}, history: 0}\nservices:" + service("web") + "    history: 5\n" + service("api"),
			"defaults.history", "must be between 1 and 100"},
		{"explicit empty stages", "defaults: {backup: {required: false}}\nservices:" + service("web") + "    stages: []\n", "services[0].stages", "at least one stage is required"},
		{"bad day from yaml", "defaults: {backup: {required: false}}\nservices:" + service("web") + "    windows: {deny: [{days: [Mon, Funday]}]}\n",
			"services[0].windows.deny[0].days[1]", `must be a day of the week (Mon..Sun or Monday..Sunday), got "Funday"`},
		{"bad duration from yaml", "defaults: {backup: {required: false}}\nservices:" + service("web") + "    deadlines: {stage: 3 days}\n",
			"services[0].deadlines.stage", `must be a duration such as 90s, 24h or 2d, got "3 days"`},
		{"stage deadline under bake", "defaults: {backup: {required: false}}\nservices:" + service("web") + "    stages: [{percent: 50, bake: 4d}, {percent: 100}]\n",
			"services[0].stages[0].bake", "must be shorter than deadlines.stage (72h)"},
		{"bad unquoted clock", "defaults: {backup: {required: false}}\nservices:" + service("web") + "    windows: {deny: [{from: 9:00}]}\n",
			"services[0].windows.deny[0].from", `must be HH:MM between 00:00 and 23:59, got "9:00"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src))
			wantOneFieldError(t, err, tt.field, tt.rule)
		})
	}
}

func TestAllProblemsCollected(t *testing.T) {
	src := `
defaults:
  name: nope
services:
  - name: Bad_Name
    region: asia-east1
    images: [x.dev/a/web:latest]
    stages: [{percent: 50}, {percent: 40}]
    gates: {errorRate: {max: 2}}
    alerts: [{policy: a, action: explode}]
    windows: {timezone: Nowhere/City}
    backup: {database: {driver: oracle, database: x}, target: {bucket: b}}
    deadlines: {retries: 99}
`
	_, err := Parse([]byte(src))
	want := []string{
		"defaults.name",
		"services[0].name",
		"services[0].project",
		"services[0].images[0]",
		"services[0].stages[1].percent",
		"services[0].gates.errorRate.max",
		"services[0].alerts[0].action",
		"services[0].windows.timezone",
		"services[0].backup.database.driver",
		"services[0].backup.target.bucket",
		"services[0].deadlines.retries",
	}
	var got []string
	for _, e := range unjoin(err) {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("got %T %v, want *FieldError", e, e)
		}
		got = append(got, fe.Field)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got fields\n%s\nwant\n%s\nerror:\n%v", strings.Join(got, "\n"), strings.Join(want, "\n"), err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Error("errors.Is(err, ErrInvalid) = false")
	}
	if first := strings.SplitN(err.Error(), "\n", 2)[0]; first != "policy: defaults.name: not allowed in defaults; set it per service" {
		t.Errorf("first line: got %q", first)
	}
}

const intervalRule = "must be whole minutes that divide an hour (1m, 2m, 3m, 4m, 5m, 6m, 10m, 12m, 15m, 20m, 30m) or 1h: it becomes the tick job's cron schedule"
