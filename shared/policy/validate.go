package policy

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ai-square/coalmine/shared/rollout"
)

// FieldError is one problem in a policy: the YAML path of the field and the rule it breaks.
type FieldError struct {
	// Field is the YAML path, such as services[0].stages[2].percent or defaults.name.
	Field string
	// Rule says what the value must be.
	Rule string
}

// Error returns "policy: FIELD: RULE".
func (e *FieldError) Error() string { return "policy: " + e.Field + ": " + e.Rule }

// Unwrap returns ErrInvalid, so errors.Is(err, ErrInvalid) holds for every FieldError.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, rule string) *FieldError { return &FieldError{Field: field, Rule: rule} }

// Validate checks every rule of the policy and returns all problems as *FieldError values
// joined with errors.Join, or nil. Parse calls it after applying defaults; programs that build
// a Policy in code (from Defaults) call it themselves.
func (p *Policy) Validate() error {
	v := &validator{}
	if len(p.Services) == 0 {
		v.add("services", "at least one service is required")
	}
	firstByName := map[string]int{}
	for i := range p.Services {
		s := &p.Services[i]
		path := fmt.Sprintf("services[%d]", i)
		v.service(path, s)
		if s.Name == "" {
			continue
		}
		if j, dup := firstByName[s.Name]; dup {
			v.add(path+".name", fmt.Sprintf("duplicate service name %q (also services[%d])", s.Name, j))
		} else {
			firstByName[s.Name] = i
		}
	}
	return errors.Join(v.errs...)
}

type validator struct{ errs []error }

func (v *validator) add(field, rule string) { v.errs = append(v.errs, fieldErr(field, rule)) }

var (
	serviceNameRE   = regexp.MustCompile(`^[a-z]([a-z0-9-]*[a-z0-9])?$`)
	projectIDRE     = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	projectNumberRE = regexp.MustCompile(`^[0-9]{1,20}$`)
	regionRE        = regexp.MustCompile(`^[a-z]([a-z0-9-]*[a-z0-9])?$`)
	dnsLabelRE      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	hostRE          = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$`)
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
	envNameRE       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	bucketPartRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$`)
	methodRE        = regexp.MustCompile(`^[A-Z]+$`)
)

// longestTag is the longest traffic tag coalmine writes; maxServiceName the
// longest service name with which every tag fits Cloud Run's limit (38).
var (
	longestTag     = rollout.LongestOwnedTag()
	maxServiceName = rollout.MaxTagAndServiceName - len(longestTag)
)

// reservedEnv are the environment variables Cloud Run sets itself and refuses in a template.
var reservedEnv = []string{"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"}

func (v *validator) service(path string, s *Service) {
	switch {
	case s.Name == "":
		v.add(path+".name", "required")
	case len(s.Name) > maxServiceName:
		v.add(path+".name", fmt.Sprintf("must be at most %d characters: Cloud Run refuses a traffic tag and service name longer than %d characters together, and coalmine tags revisions with %q (%d characters)",
			maxServiceName, rollout.MaxTagAndServiceName, longestTag, len(longestTag)))
	case !serviceNameRE.MatchString(s.Name):
		v.add(path+".name", "must start with a lower-case letter, contain only a-z, 0-9 and '-', and not end with '-'")
	}
	switch {
	case s.Project == "":
		v.add(path+".project", "required")
	case !projectIDRE.MatchString(s.Project) && !projectNumberRE.MatchString(s.Project):
		v.add(path+".project", "must be a project id (6-30 characters: a-z, 0-9, '-', starting with a letter) or a project number")
	}
	switch {
	case s.Region == "":
		v.add(path+".region", "required")
	case !regionRE.MatchString(s.Region):
		v.add(path+".region", "must be a region name such as asia-east1 (a-z, 0-9, '-')")
	}
	if s.Container != "" && !dnsLabelRE.MatchString(s.Container) {
		v.add(path+".container", "must be a container name (at most 63 characters: a-z, 0-9, '-', starting and ending with a letter or digit)")
	}
	if len(s.Images) == 0 {
		v.add(path+".images", "at least one image repository is required")
	}
	for i, img := range s.Images {
		f := fmt.Sprintf("%s.images[%d]", path, i)
		if rule := repositoryRule(img); rule != "" {
			v.add(f, rule)
		} else if j := slices.Index(s.Images, img); j < i {
			v.add(f, fmt.Sprintf("duplicate repository (also images[%d])", j))
		}
	}
	v.stages(path, s)
	v.gates(path+".gates", &s.Gates)
	seen := map[string]int{}
	for i, a := range s.Alerts {
		f := fmt.Sprintf("%s.alerts[%d]", path, i)
		if a.Policy == "" {
			v.add(f+".policy", "required")
		} else if j, dup := seen[a.Policy]; dup {
			v.add(f+".policy", fmt.Sprintf("duplicate alert policy (also alerts[%d])", j))
		} else {
			seen[a.Policy] = i
		}
		v.action(f+".action", a.Action)
		v.alertCondition(f, a)
	}
	v.windows(path+".windows", &s.Windows)
	v.backup(path+".backup", &s.Backup)
	v.rollback(path+".rollback", &s.Rollback)
	v.deadlines(path+".deadlines", &s.Deadlines)
	v.hookDeadline(path, s)
	v.intRange(path+".history", s.History, 1, 100)
	v.intRange(path+".failedDigests", s.FailedDigests, 1, 100)
}

// repositoryRule returns why s is not a full image repository path, or "".
func repositoryRule(s string) string {
	switch {
	case s == "":
		return "required"
	case strings.Contains(s, "://"):
		return "must not include a scheme; write HOST/PATH"
	case strings.Contains(s, "@"):
		return "must not include a digest"
	case s != strings.TrimSpace(s):
		return "must not contain spaces"
	}
	parts := strings.Split(s, "/")
	host := parts[0]
	if !hostRE.MatchString(host) || (!strings.Contains(host, ".") && host != "localhost" && !strings.HasPrefix(host, "localhost:")) {
		return "must start with a registry host (containing a '.', or localhost[:port])"
	}
	if len(parts) < 2 {
		return "must have at least one path element after the host"
	}
	for _, c := range parts[1:] {
		if strings.Contains(c, ":") {
			return "must not include a tag"
		}
		if !pathComponentRE.MatchString(c) {
			return "path elements must be lower-case a-z, 0-9 separated by '.', '_', '__' or '-'"
		}
	}
	return ""
}

func (v *validator) stages(path string, s *Service) {
	f := path + ".stages"
	if s.Strategy != StrategyCanary && s.Strategy != StrategyBlueGreen {
		v.add(path+".strategy", "must be canary or blue-green")
	}
	if len(s.Stages) == 0 {
		v.add(f, "at least one stage is required")
		return
	}
	if s.Strategy == StrategyBlueGreen && (len(s.Stages) != 1 || s.Stages[0].Percent != 100) {
		v.add(f, "must be exactly [{percent: 100}] for strategy blue-green")
		return
	}
	last := len(s.Stages) - 1
	stageDeadline := s.Deadlines.Stage
	for i, st := range s.Stages {
		sf := fmt.Sprintf("%s[%d]", f, i)
		switch {
		case st.Percent < 1 || st.Percent > 100:
			v.add(sf+".percent", "must be between 1 and 100")
		case i > 0 && st.Percent <= s.Stages[i-1].Percent:
			v.add(sf+".percent", fmt.Sprintf("must be greater than the previous stage's %d", s.Stages[i-1].Percent))
		case i == last && st.Percent != 100:
			v.add(sf+".percent", "the last stage must be 100")
		}
		if v.duration(sf+".bake", st.Bake, 0) && i < last && stageDeadline.Valid() && stageDeadline.Duration > 0 && st.Bake.Duration >= stageDeadline.Duration {
			v.add(sf+".bake", fmt.Sprintf("must be shorter than deadlines.stage (%s)", formatDuration(stageDeadline.Duration)))
		}
	}
}

func (v *validator) gates(f string, g *Gates) {
	if g.MinRequests < 1 {
		v.add(f+".minRequests", "must be at least 1")
	}
	v.fraction(f+".errorRate.max", g.ErrorRate.Max)
	v.fraction(f+".errorRate.maxIncreaseOverStable", g.ErrorRate.MaxIncreaseOverStable)
	if !(g.ErrorRate.Confidence > 0 && g.ErrorRate.Confidence < 1) {
		v.add(f+".errorRate.confidence", "must be greater than 0 and less than 1")
	}
	v.action(f+".errorRate.onFail", g.ErrorRate.OnFail)
	if g.LatencyP95.MaxMs < 1 {
		v.add(f+".latencyP95.maxMs", "must be at least 1")
	}
	if r := g.LatencyP95.MaxRatioToStable; r != 0 && !(r >= 1) {
		v.add(f+".latencyP95.maxRatioToStable", "must be 0 (off) or at least 1")
	}
	v.action(f+".latencyP95.onFail", g.LatencyP95.OnFail)
	if db := g.DBConnections; db != nil {
		df := f + ".dbConnections"
		if !(db.Max > 0 && db.Max <= 1) {
			v.add(df+".max", "must be greater than 0 and at most 1")
		}
		if db.Instance == "" {
			v.add(df+".instance", "required")
		} else if _, _, _, ok := splitInstance(db.Instance); !ok {
			v.add(df+".instance", "must be PROJECT:INSTANCE or PROJECT:REGION:INSTANCE")
		}
		if db.MaxConnections < 1 {
			v.add(df+".maxConnections", "must be at least 1 (the instance's max_connections)")
		}
		v.action(df+".onFail", db.OnFail)
	}
	if v.duration(f+".interval", g.Interval, 0) {
		if d := g.Interval.Duration; d != time.Hour && (d < time.Minute || d > 30*time.Minute || d%time.Minute != 0 || time.Hour%d != 0) {
			v.add(f+".interval", "must be whole minutes that divide an hour (1m, 2m, 3m, 4m, 5m, 6m, 10m, 12m, 15m, 20m, 30m) or 1h: it becomes the tick job's cron schedule")
		}
	}
	if v.duration(f+".alignment", g.Alignment, 0) {
		switch {
		case g.Alignment.Duration < 60*time.Second:
			v.add(f+".alignment", "must be at least 60s")
		case g.Alignment.Duration%time.Second != 0:
			v.add(f+".alignment", "must be a whole number of seconds")
		}
	}
	v.duration(f+".ingestionDelay", g.IngestionDelay, 0)
}

func (v *validator) windows(f string, w *Windows) {
	if w.Timezone == "Local" {
		v.add(f+".timezone", "must be an IANA time zone name such as Asia/Taipei (Local is not allowed)")
	} else if _, err := loadLocation(w.Timezone); err != nil {
		v.add(f+".timezone", "unknown time zone; must be an IANA name such as Asia/Taipei")
	}
	for i, r := range w.Deny {
		v.timeRange(fmt.Sprintf("%s.deny[%d]", f, i), r)
	}
	for i, r := range w.Allow {
		v.timeRange(fmt.Sprintf("%s.allow[%d]", f, i), r)
	}
}

func (v *validator) timeRange(f string, r TimeRange) {
	for i, d := range r.Days {
		if _, ok := ParseDay(d); !ok {
			v.add(fmt.Sprintf("%s.days[%d]", f, i), fmt.Sprintf("must be a day of the week (Mon..Sun or Monday..Sunday), got %q", d))
		}
	}
	from, okFrom := parseClock(r.From)
	if !okFrom || from == 24*60 {
		okFrom = false
		v.add(f+".from", fmt.Sprintf("must be HH:MM between 00:00 and 23:59, got %q", r.From))
	}
	to, okTo := parseClock(r.To)
	if !okTo || to == 0 {
		okTo = false
		v.add(f+".to", fmt.Sprintf("must be HH:MM between 00:01 and 24:00, got %q", r.To))
	}
	if okFrom && okTo && from >= to {
		v.add(f+".to", fmt.Sprintf("must be after from (%s); split a range that crosses midnight in two", r.From))
	}
}

func (v *validator) backup(f string, b *Backup) {
	for i, src := range b.Storage.Sources {
		v.location(fmt.Sprintf("%s.storage.sources[%d]", f, i), src, true)
	}
	v.intRange(f+".storage.workers", b.Storage.Workers, 1, 256)

	db := b.Database
	df := f + ".database"
	switch db.Driver {
	case DriverNone:
		if db.Database != "" || db.Instance != "" || db.URLEnv != "" {
			v.add(df+".driver", "is none but database fields are set; set driver to postgres or cloudsql")
		}
	case DriverPostgres:
		if !envNameRE.MatchString(db.URLEnv) {
			v.add(df+".urlEnv", "must be an environment variable name")
		}
		if db.Instance != "" {
			v.add(df+".instance", "applies only to driver cloudsql")
		}
		v.databaseName(df+".database", db.Database)
	case DriverCloudSQL:
		if db.Instance == "" {
			v.add(df+".instance", "required for driver cloudsql")
		} else if _, _, _, ok := splitInstance(db.Instance); !ok {
			v.add(df+".instance", "must be PROJECT:INSTANCE or PROJECT:REGION:INSTANCE")
		}
		if db.URLEnv != "" {
			v.add(df+".urlEnv", "applies only to driver postgres")
		}
		v.databaseName(df+".database", db.Database)
	case "":
		v.add(df+".driver", "required when database fields are set (postgres, cloudsql or none)")
	default:
		v.add(df+".driver", "must be postgres, cloudsql or none")
	}

	hasData := len(b.Storage.Sources) > 0 || (db.Driver != DriverNone && db.Driver != "")
	if hasData {
		if b.Target.Bucket == "" {
			v.add(f+".target.bucket", "required when storage sources or a database are backed up")
		} else {
			v.location(f+".target", b.Target, false)
			for i, src := range b.Storage.Sources {
				if src.Bucket == b.Target.Bucket && strings.HasPrefix(b.Target.Prefix, src.Prefix) {
					v.add(f+".target", fmt.Sprintf("must not lie inside storage.sources[%d]", i))
					break
				}
			}
		}
	} else if b.Target.Bucket != "" || b.Target.Prefix != "" {
		v.location(f+".target", b.Target, false)
	}
	if b.Required && !hasData {
		v.add(f, "required is true but nothing is backed up: set storage.sources or database, or set required: false")
	}
	if b.Retention.Keep < 1 {
		v.add(f+".retention.keep", "must be at least 1")
	}
	v.duration(f+".retention.maxAge", b.Retention.MaxAge, 0)
}

func (v *validator) location(f string, l Location, requireBucket bool) {
	switch {
	case l.Bucket == "":
		if requireBucket {
			v.add(f+".bucket", "required")
		}
	case strings.HasPrefix(l.Bucket, "gs://"):
		v.add(f+".bucket", "must be a bucket name without gs://")
	case !validBucket(l.Bucket):
		v.add(f+".bucket", "must be a bucket name (3-63 characters: a-z, 0-9, '-', '_', '.', starting and ending with a letter or digit)")
	}
	if strings.HasPrefix(l.Prefix, "/") {
		v.add(f+".prefix", "must not start with '/'")
	}
}

// validBucket follows Cloud Storage's bucket naming rules: 3-63 characters (up to 222 with
// dots, each dot-separated part at most 63), lower-case letters, digits, '-', '_' and '.',
// starting and ending with a letter or digit.
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 222 || (!strings.Contains(b, ".") && len(b) > 63) {
		return false
	}
	for _, part := range strings.Split(b, ".") {
		if len(part) > 63 || !bucketPartRE.MatchString(part) {
			return false
		}
	}
	return true
}

func (v *validator) databaseName(f, name string) {
	switch {
	case name == "":
		v.add(f, "required unless driver is none")
	case len(name) > 63:
		v.add(f, "must be at most 63 bytes")
	case strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		v.add(f, "must not contain spaces or control characters")
	}
}

func (v *validator) rollback(f string, r *Rollback) {
	keys := make([]string, 0, len(r.Env))
	for k := range r.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch {
		case !envNameRE.MatchString(k):
			v.add(f+".env", fmt.Sprintf("%q must be an environment variable name (A-Z, a-z, 0-9, '_', not starting with a digit)", k))
		case slices.Contains(reservedEnv, k) || strings.HasPrefix(k, "X_GOOGLE_"):
			v.add(f+".env."+k, "is reserved by Cloud Run")
		}
	}
	h := r.Hook
	if h == nil {
		return
	}
	hf := f + ".hook"
	switch {
	case h.Path == "" && len(h.Command) == 0:
		v.add(hf, "must set exactly one of path and command, got neither")
	case h.Path != "" && len(h.Command) > 0:
		v.add(hf, "must set exactly one of path and command, got both")
	case h.Path != "":
		if !strings.HasPrefix(h.Path, "/") || strings.HasPrefix(h.Path, "//") {
			v.add(hf+".path", "must start with a single '/'")
		}
		if !methodRE.MatchString(h.Method) {
			v.add(hf+".method", "must be an upper-case HTTP method such as POST")
		}
	default:
		if h.Command[0] == "" {
			v.add(hf+".command[0]", "must name a program")
		}
		if h.Method != "" {
			v.add(hf+".method", "applies only to a path hook")
		}
	}
	if v.duration(hf+".timeout", h.Timeout, 1) && h.Timeout.Duration > MaxHookTimeout {
		v.add(hf+".timeout", fmt.Sprintf("must be at most %s (the hook runs inside one 10m delivery of the rollback)", formatDuration(MaxHookTimeout)))
	}
}

// hookDeadline checks that the watchdog does not publish the rollback
// again while its hook may still run.
func (v *validator) hookDeadline(path string, s *Service) {
	h := s.Rollback.Hook
	if h == nil || !h.Timeout.Valid() || !s.Deadlines.Rollback.Valid() || h.Timeout.Duration <= 0 || h.Timeout.Duration > MaxHookTimeout || s.Deadlines.Rollback.Duration <= 0 {
		return
	}
	if need := h.Timeout.Duration + time.Minute; s.Deadlines.Rollback.Duration < need {
		v.add(path+".deadlines.rollback", fmt.Sprintf("must be at least rollback.hook.timeout + 1m (%s), or the watchdog publishes the rollback again while the hook still runs", formatDuration(need)))
	}
}

func (v *validator) deadlines(f string, d *Deadlines) {
	for _, x := range []struct {
		name string
		d    Duration
	}{
		{"backup", d.Backup}, {"deploy", d.Deploy}, {"stage", d.Stage},
		{"paused", d.Paused}, {"rollback", d.Rollback}, {"waiting", d.Waiting},
	} {
		v.duration(f+"."+x.name, x.d, 1)
	}
	v.intRange(f+".retries", d.Retries, 0, 10)
	v.duration(f+".guard", d.Guard, 0)
}

// alertCondition checks the condition of an alert policy coalmine creates.
func (v *validator) alertCondition(f string, a Alert) {
	switch {
	case a.ErrorRateAbove < 0 || a.ErrorRateAbove >= 1 || math.IsNaN(a.ErrorRateAbove):
		v.add(f+".errorRateAbove", "must be a fraction in (0, 1), or left out")
	case a.LatencyP95AboveMs < 0:
		v.add(f+".latencyP95AboveMs", "must be a positive number of milliseconds, or left out")
	case a.ErrorRateAbove > 0 && a.LatencyP95AboveMs > 0:
		v.add(f, "errorRateAbove and latencyP95AboveMs are two alert policies: give each its own entry")
	}
	if v.duration(f+".for", a.For, 0) {
		switch {
		case !a.Managed() && a.For.Duration != 0:
			v.add(f+".for", "only an alert with errorRateAbove or latencyP95AboveMs has a duration (coalmine does not create the others)")
		case a.For.Duration%time.Minute != 0 || a.For.Duration > 24*time.Hour:
			v.add(f+".for", "must be whole minutes up to 24h (Cloud Monitoring's condition duration)")
		}
	}
}

// duration reports a duration that did not parse or is below its minimum (0: must be >= 0;
// 1: must be > 0) and returns whether it is usable.
func (v *validator) duration(f string, d Duration, min int) bool {
	if !d.Valid() {
		v.add(f, fmt.Sprintf("must be a duration such as 90s, 24h or 2d, got %q", d.invalid))
		return false
	}
	if min == 0 && d.Duration < 0 {
		v.add(f, "must not be negative")
		return false
	}
	if min == 1 && d.Duration <= 0 {
		v.add(f, "must be greater than 0")
		return false
	}
	return true
}

func (v *validator) fraction(f string, x float64) {
	if !(x >= 0 && x <= 1) {
		v.add(f, "must be a fraction between 0 and 1")
	}
}

func (v *validator) intRange(f string, n, lo, hi int) {
	if n < lo || n > hi {
		v.add(f, fmt.Sprintf("must be between %d and %d", lo, hi))
	}
}

func (v *validator) action(f string, a Action) {
	if a != ActionRollback && a != ActionPause {
		v.add(f, "must be rollback or pause")
	}
}

var instancePartRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// splitInstance splits PROJECT:INSTANCE or PROJECT:REGION:INSTANCE.
func splitInstance(s string) (project, region, instance string, ok bool) {
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 2:
		project, instance = parts[0], parts[1]
	case 3:
		project, region, instance = parts[0], parts[1], parts[2]
		if !regionRE.MatchString(region) {
			return "", "", "", false
		}
	default:
		return "", "", "", false
	}
	if !projectIDRE.MatchString(project) && !projectNumberRE.MatchString(project) {
		return "", "", "", false
	}
	if !instancePartRE.MatchString(instance) || len(instance) > 98 {
		return "", "", "", false
	}
	return project, region, instance, true
}
