package policy

import "time"

// Built-in defaults. A field left out of both the service and the defaults block gets these;
// a field that is written is taken as written (an explicit 0 or false stays 0 or false).
const (
	// DefaultMinRequests is the default Gates.MinRequests.
	DefaultMinRequests = 100
	// DefaultWorkers is the default Storage.Workers.
	DefaultWorkers = 16
	// DefaultURLEnv is the default Database.URLEnv for the postgres driver.
	DefaultURLEnv = "DATABASE_URL"
	// DefaultHookMethod is the default Hook.Method of a path hook.
	DefaultHookMethod = "POST"
	// DefaultHistory is the default Service.History.
	DefaultHistory = 20
	// DefaultFailedDigests is the default Service.FailedDigests.
	DefaultFailedDigests = 20
	// DefaultRetries is the default Deadlines.Retries.
	DefaultRetries = 3
	// DefaultTimezone is the default Windows.Timezone.
	DefaultTimezone = "UTC"
)

// DefaultCanaryStages returns the default stages of a canary: 10%, 30% and 50% for 24h each,
// then 100%.
func DefaultCanaryStages() []Stage {
	day := Dur(24 * time.Hour)
	return []Stage{{Percent: 10, Bake: day}, {Percent: 30, Bake: day}, {Percent: 50, Bake: day}, {Percent: 100}}
}

// DefaultBlueGreenStages returns the stages of a blue-green release: [{percent: 100}].
func DefaultBlueGreenStages() []Stage { return []Stage{{Percent: 100}} }

// DefaultDeny returns the default deny ranges: Monday 00:00-12:00 and Friday 12:00-24:00.
func DefaultDeny() []TimeRange {
	return []TimeRange{
		{Days: []string{"Mon"}, From: "00:00", To: "12:00"},
		{Days: []string{"Fri"}, From: "12:00", To: "24:00"},
	}
}

// Defaults returns a canary service with every built-in default set and no name, project,
// region or images: what a service that writes nothing else gets. Programs that build a
// policy in code start from it and call Policy.Validate.
func Defaults() Service {
	s := baseService()
	applyDefaults(&s)
	return s
}

// baseService holds the defaults that do not depend on other fields. Parse decodes the
// defaults block and then the service on top of it, so only written fields change.
func baseService() Service {
	return Service{
		Strategy: StrategyCanary,
		Gates: Gates{
			MinRequests: DefaultMinRequests,
			ErrorRate: ErrorRateGate{
				Max:                   0.001,
				MaxIncreaseOverStable: 0.005,
				Confidence:            0.95,
				OnFail:                ActionRollback,
			},
			LatencyP95: LatencyGate{
				MaxMs:            1000,
				MaxRatioToStable: 1.5,
				OnFail:           ActionPause,
			},
			Interval:       Dur(time.Minute),
			Alignment:      Dur(60 * time.Second),
			IngestionDelay: Dur(3 * time.Minute),
		},
		Windows: Windows{Timezone: DefaultTimezone},
		Backup: Backup{
			Required:  true,
			Storage:   Storage{Workers: DefaultWorkers},
			Retention: Retention{Keep: 10, MaxAge: Dur(720 * time.Hour)},
		},
		Deadlines: Deadlines{
			Backup:   Dur(2 * time.Hour),
			Deploy:   Dur(15 * time.Minute),
			Stage:    Dur(72 * time.Hour),
			Paused:   Dur(72 * time.Hour),
			Rollback: Dur(10 * time.Minute),
			Waiting:  Dur(168 * time.Hour),
			Guard:    Dur(time.Hour),
			Retries:  DefaultRetries,
		},
		History:       DefaultHistory,
		FailedDigests: DefaultFailedDigests,
	}
}

// applyDefaults fills the defaults that depend on other fields or live in optional parts:
// stages by strategy, the deny ranges, range bounds, the database driver, the optional gate
// and the hook.
func applyDefaults(s *Service) {
	if s.Strategy == "" {
		s.Strategy = StrategyCanary
	}
	if s.Stages == nil { // absent or null; an explicit [] stays empty and fails validation
		if s.Strategy == StrategyBlueGreen {
			s.Stages = DefaultBlueGreenStages()
		} else {
			s.Stages = DefaultCanaryStages()
		}
	}
	if s.Windows.Timezone == "" {
		s.Windows.Timezone = DefaultTimezone
	}
	if s.Windows.Deny == nil { // an explicit [] means no deny ranges
		s.Windows.Deny = DefaultDeny()
	}
	for _, rs := range [][]TimeRange{s.Windows.Deny, s.Windows.Allow} {
		for i := range rs {
			if rs[i].From == "" {
				rs[i].From = "00:00"
			}
			if rs[i].To == "" {
				rs[i].To = "24:00"
			}
		}
	}
	db := &s.Backup.Database
	if db.Driver == "" && db.URLEnv == "" && db.Instance == "" && db.Database == "" {
		db.Driver = DriverNone
	}
	if db.Driver == DriverPostgres && db.URLEnv == "" {
		db.URLEnv = DefaultURLEnv
	}
	if g := s.Gates.DBConnections; g != nil {
		if g.Max == 0 {
			g.Max = 0.8
		}
		if g.OnFail == "" {
			g.OnFail = ActionRollback
		}
	}
	if h := s.Rollback.Hook; h != nil {
		if h.Path != "" && h.Method == "" {
			h.Method = DefaultHookMethod
		}
		if h.Timeout.Duration == 0 && h.Timeout.Valid() {
			h.Timeout = Dur(5 * time.Minute)
		}
	}
}
