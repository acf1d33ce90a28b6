// Package policy defines coalmine's release policy: which Cloud Run services coalmine releases,
// which image repositories each may run, how a release backs up data, shifts traffic, verifies
// gates, reacts to alerts and rolls back, and when a release may start.
//
// A policy is one YAML file holding many services. A top-level `defaults:` block carries the
// same fields as a service (minus name, project, region and images) and is merged under every
// service: a value the service writes wins, lists replace rather than merge, mappings merge key
// by key. Parse and Load decode strictly (unknown fields are errors), apply the built-in
// defaults, then validate, collecting every problem as a *FieldError. docs/policy.md is the
// field-by-field reference.
package policy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrInvalid is matched (errors.Is) by every error that reports a problem in the policy's
// content: each *FieldError and each YAML decoding error returned by Parse.
var ErrInvalid = errors.New("invalid policy")

// ErrUnknownService is wrapped by Policy.Service when no service has the requested name.
var ErrUnknownService = errors.New("unknown service")

// ErrImageNotAllowed is wrapped by Policy.ServiceForImage when no service lists the repository.
var ErrImageNotAllowed = errors.New("image repository not allowed")

// Strategy is how a service's new revision receives traffic.
type Strategy string

const (
	// StrategyCanary shifts traffic to the new revision in the stages of Service.Stages.
	StrategyCanary Strategy = "canary"
	// StrategyBlueGreen deploys the new revision with 0% traffic under a tag, then moves all
	// traffic to it at once: its stages are exactly [{percent: 100}].
	StrategyBlueGreen Strategy = "blue-green"
)

// Action is what a failed gate or a firing alert does to the rollout.
type Action string

const (
	// ActionRollback returns all traffic to the stable revision and restores its template.
	ActionRollback Action = "rollback"
	// ActionPause holds the rollout at its current stage for an operator to investigate.
	ActionPause Action = "pause"
)

// DatabaseDriver says how the database is backed up.
type DatabaseDriver string

const (
	// DriverPostgres runs pg_dump against the URL held in the environment variable URLEnv.
	DriverPostgres DatabaseDriver = "postgres"
	// DriverCloudSQL asks the Cloud SQL Admin API to export the database to Cloud Storage.
	DriverCloudSQL DatabaseDriver = "cloudsql"
	// DriverNone backs up no database.
	DriverNone DatabaseDriver = "none"
)

// Policy is a parsed, defaulted and validated policy file.
type Policy struct {
	// Services are the services coalmine releases, each with the defaults block merged in.
	Services []Service `yaml:"services"`
}

// Service is the release policy of one Cloud Run service.
type Service struct {
	// Name is the Cloud Run service id.
	Name string `yaml:"name"`
	// Project is the Google Cloud project id (or number) of the service.
	Project string `yaml:"project"`
	// Region is the Cloud Run region of the service.
	Region string `yaml:"region"`
	// Container names the container of the service template whose image is replaced; empty
	// means the first container.
	Container string `yaml:"container"`
	// Images are the image repositories (HOST/PATH, no tag or digest) this service may run.
	Images []string `yaml:"images"`
	// Strategy is canary or blue-green.
	Strategy Strategy `yaml:"strategy"`
	// Stages are the traffic percentages the canary moves through, each held for its bake.
	Stages []Stage `yaml:"stages"`
	// Gates are the checks the canary must pass before each move.
	Gates Gates `yaml:"gates"`
	// Alerts map Cloud Monitoring alert policies (by display name) to actions.
	Alerts []Alert `yaml:"alerts"`
	// Windows say when a release may start.
	Windows Windows `yaml:"windows"`
	// Backup says what is backed up before a deploy.
	Backup Backup `yaml:"backup"`
	// Rollback adds extra steps to a rollback.
	Rollback Rollback `yaml:"rollback"`
	// Deadlines bound each step of a rollout.
	Deadlines Deadlines `yaml:"deadlines"`
	// History is how many finished rollouts are kept in the service's rollout annotation.
	History int `yaml:"history"`
	// FailedDigests is how many failed image digests are remembered (and not released again
	// without an explicit retry).
	FailedDigests int `yaml:"failedDigests"`
}

// Stage is one step of a canary.
type Stage struct {
	// Percent is the share of traffic the new revision receives during the stage, 1..100.
	Percent int `yaml:"percent"`
	// Bake is the minimum time the stage is held (and its gates healthy) before the next
	// stage; ignored for the last stage.
	Bake Duration `yaml:"bake"`
}

// Gates are the health checks of the canary revision, read from its own metrics.
type Gates struct {
	// MinRequests is the number of requests the canary must serve in a stage before a
	// verdict; below it the verdict is inconclusive and the stage holds.
	MinRequests int `yaml:"minRequests"`
	// ErrorRate checks the canary's 5xx fraction.
	ErrorRate ErrorRateGate `yaml:"errorRate"`
	// LatencyP95 checks the canary's 95th-percentile request latency.
	LatencyP95 LatencyGate `yaml:"latencyP95"`
	// DBConnections checks Cloud SQL connection use; nil turns the gate off.
	DBConnections *DBConnectionsGate `yaml:"dbConnections,omitempty"`
	// Interval is how often the gates of a running rollout are checked: the schedule of the
	// rollout's Cloud Scheduler tick job. Whole minutes that divide an hour (1m, 2m, 5m, ...
	// 30m), or 1h.
	Interval Duration `yaml:"interval"`
	// Alignment is the Cloud Monitoring alignment period of the queries (at least 60s).
	Alignment Duration `yaml:"alignment"`
	// IngestionDelay is how far back from now metric data is trusted to be complete.
	IngestionDelay Duration `yaml:"ingestionDelay"`
}

// ErrorRateGate fails when the canary's error rate (5xx / all requests) is, with the given
// confidence, above Max or more than MaxIncreaseOverStable above the stable revision's.
type ErrorRateGate struct {
	// Max is the highest acceptable error rate, a fraction 0..1.
	Max float64 `yaml:"max"`
	// MaxIncreaseOverStable is the highest acceptable excess over the stable revision's error
	// rate in the same window, a fraction 0..1.
	MaxIncreaseOverStable float64 `yaml:"maxIncreaseOverStable"`
	// Confidence is the confidence the statistical test requires before it decides, in (0, 1).
	Confidence float64 `yaml:"confidence"`
	// OnFail is what a failure does.
	OnFail Action `yaml:"onFail"`
}

// LatencyGate fails when the canary's p95 latency is above MaxMs or above MaxRatioToStable
// times the stable revision's p95.
type LatencyGate struct {
	// MaxMs is the highest acceptable p95 latency in milliseconds.
	MaxMs int `yaml:"maxMs"`
	// MaxRatioToStable is the highest acceptable ratio of the canary's p95 to the stable
	// revision's; 0 turns the comparison off.
	MaxRatioToStable float64 `yaml:"maxRatioToStable"`
	// OnFail is what a failure does.
	OnFail Action `yaml:"onFail"`
}

// DBConnectionsGate fails when the Cloud SQL instance's connection use (num_backends divided
// by MaxConnections) is above Max.
type DBConnectionsGate struct {
	// Max is the highest acceptable connection use, a fraction in (0, 1].
	Max float64 `yaml:"max"`
	// Instance is the Cloud SQL instance, PROJECT:INSTANCE or the connection name
	// PROJECT:REGION:INSTANCE.
	Instance string `yaml:"instance"`
	// MaxConnections is the instance's max_connections setting.
	MaxConnections int `yaml:"maxConnections"`
	// OnFail is what a failure does.
	OnFail Action `yaml:"onFail"`
}

// DatabaseID returns the instance as Cloud Monitoring's cloudsql_database resource label
// database_id spells it: PROJECT:INSTANCE (a connection name's region is dropped).
func (g DBConnectionsGate) DatabaseID() string {
	project, _, instance, ok := splitInstance(g.Instance)
	if !ok {
		return g.Instance
	}
	return project + ":" + instance
}

// Alert maps a Cloud Monitoring alert policy to an action.
type Alert struct {
	// Policy is the alert policy's display name (the incident's policy_name).
	Policy string `yaml:"policy"`
	// Action is what an open incident of the policy does to a running rollout.
	Action Action `yaml:"action"`
	// ErrorRateAbove, when set, describes the alert policy for coalmine to create: it fires
	// when a revision of the service answers more than this fraction of its requests with
	// 5xx, over one alignment period, for For. 0: not set.
	ErrorRateAbove float64 `yaml:"errorRateAbove,omitempty"`
	// LatencyP95AboveMs, when set, describes the alert policy for coalmine to create: it
	// fires when a revision's p95 request latency is above this many milliseconds for For.
	// 0: not set. Without either, the alert policy is the user's own, made elsewhere.
	LatencyP95AboveMs int `yaml:"latencyP95AboveMs,omitempty"`
	// For is how long the condition must hold before the incident opens (Cloud Monitoring's
	// duration: whole minutes, 0 for the first violating evaluation).
	For Duration `yaml:"for"`
}

// Managed reports whether coalmine creates the alert policy (it describes a condition).
func (a Alert) Managed() bool { return a.ErrorRateAbove > 0 || a.LatencyP95AboveMs > 0 }

// Backup says what is backed up before the canary is deployed, and where to.
type Backup struct {
	// Required refuses to deploy without a verified backup.
	Required bool `yaml:"required"`
	// Storage lists Cloud Storage data to copy.
	Storage Storage `yaml:"storage"`
	// Database says how to dump the database.
	Database Database `yaml:"database"`
	// Target is where backups are written.
	Target Location `yaml:"target"`
	// Retention says which old backups are deleted.
	Retention Retention `yaml:"retention"`
}

// Storage lists the Cloud Storage objects to back up.
type Storage struct {
	// Sources are the bucket/prefix pairs copied into the backup.
	Sources []Location `yaml:"sources"`
	// Workers is how many objects are copied at once, 1..256.
	Workers int `yaml:"workers"`
}

// Location is a Cloud Storage bucket and an object name prefix.
type Location struct {
	// Bucket is the bucket name (no gs:// scheme).
	Bucket string `yaml:"bucket"`
	// Prefix selects objects whose names start with it; empty means the whole bucket.
	Prefix string `yaml:"prefix"`
}

// Database says how the service's database is dumped.
type Database struct {
	// Driver is postgres, cloudsql or none.
	Driver DatabaseDriver `yaml:"driver"`
	// URLEnv names the environment variable holding the connection URL (driver postgres).
	URLEnv string `yaml:"urlEnv"`
	// Instance is the Cloud SQL instance, PROJECT:INSTANCE or PROJECT:REGION:INSTANCE
	// (driver cloudsql).
	Instance string `yaml:"instance"`
	// Database is the database name.
	Database string `yaml:"database"`
}

// ProjectInstance splits Instance into the project and instance ids the Cloud SQL Admin API
// takes; ok is false when Instance is not PROJECT:INSTANCE or PROJECT:REGION:INSTANCE.
func (d Database) ProjectInstance() (project, instance string, ok bool) {
	project, _, instance, ok = splitInstance(d.Instance)
	return project, instance, ok
}

// Retention says which backups are deleted: the newest Keep are always kept; older ones are
// deleted once they are older than MaxAge.
type Retention struct {
	// Keep is how many of the newest backups are always kept (at least 1).
	Keep int `yaml:"keep"`
	// MaxAge is the age after which a backup outside the newest Keep is deleted; 0 deletes it
	// as soon as it falls out of the newest Keep.
	MaxAge Duration `yaml:"maxAge"`
}

// Rollback lists what a rollback does besides returning traffic and the template to the
// stable revision.
type Rollback struct {
	// Env are environment variables set on the restored stable template.
	Env map[string]string `yaml:"env,omitempty"`
	// Hook is called once traffic is back on the stable revision; nil means none.
	Hook *Hook `yaml:"hook,omitempty"`
}

// MaxHookTimeout bounds rollback.hook.timeout. The hook runs inside one
// delivery of the Rollback command, whose push deadline is 600 s
// (events.AckDeadline). A hook may take at most 9 minutes, leaving a
// minute of the delivery for the writes around it; a delivery that runs
// over is delivered again, and the hook's lease in the state (which the
// hook never outlives) keeps that second delivery from running it again.
const MaxHookTimeout = 9 * time.Minute

// Hook is either an HTTP request to the service (Path) or a command (Command), never both.
type Hook struct {
	// Path is the request path on the service's URL, starting with '/'.
	Path string `yaml:"path,omitempty"`
	// Method is the HTTP method of the request (default POST).
	Method string `yaml:"method,omitempty"`
	// Command is a program and its arguments, run without a shell.
	Command []string `yaml:"command,omitempty"`
	// Timeout bounds the request or command (default 5m, at most
	// MaxHookTimeout).
	Timeout Duration `yaml:"timeout"`
}

// Deadlines bound how long each step of a rollout may go without progress before the
// watchdog re-publishes its command (up to Retries times) and then rolls the rollout back, or
// fails it when the canary has no traffic.
type Deadlines struct {
	// Backup bounds the backup step.
	Backup Duration `yaml:"backup"`
	// Deploy bounds deploying the canary revision until it is ready.
	Deploy Duration `yaml:"deploy"`
	// Stage bounds the time spent at one stage without moving on.
	Stage Duration `yaml:"stage"`
	// Paused is how long a paused rollout waits before it is rolled back.
	Paused Duration `yaml:"paused"`
	// Rollback bounds the rollback step.
	Rollback Duration `yaml:"rollback"`
	// Waiting is how long a claimed rollout may wait for a release window before it fails.
	Waiting Duration `yaml:"waiting"`
	// Guard is how long after a promotion an alert still reverts the service to the revision
	// the promotion replaced (0: an alert after a promotion does nothing).
	Guard Duration `yaml:"guard"`
	// Retries is how many times the watchdog re-publishes a step's command, 0..10.
	Retries int `yaml:"retries"`
}

// StagePercents returns the traffic percentages of the stages, in order.
func (s *Service) StagePercents() []int {
	out := make([]int, len(s.Stages))
	for i, st := range s.Stages {
		out[i] = st.Percent
	}
	return out
}

// AllowsImage reports whether repository is one of the service's image repositories (exact
// match).
func (s *Service) AllowsImage(repository string) bool {
	for _, r := range s.Images {
		if r == repository {
			return true
		}
	}
	return false
}

// AlertAction returns the action of the alert with the given policy display name, and false
// when the service has no such alert.
func (s *Service) AlertAction(policyName string) (Action, bool) {
	for _, a := range s.Alerts {
		if a.Policy == policyName {
			return a.Action, true
		}
	}
	return "", false
}

// Service returns the service with the given name, or an error wrapping ErrUnknownService.
func (p *Policy) Service(name string) (*Service, error) {
	for i := range p.Services {
		if p.Services[i].Name == name {
			return &p.Services[i], nil
		}
	}
	return nil, fmt.Errorf("policy: service %q: %w", name, ErrUnknownService)
}

// ServiceForImage returns the service whose images list the repository (exact match, no tag
// or digest), or an error wrapping ErrImageNotAllowed. A repository may belong to more than
// one service; then the first in file order is returned (see ServicesForImage).
func (p *Policy) ServiceForImage(repository string) (*Service, error) {
	if ss := p.ServicesForImage(repository); len(ss) > 0 {
		return ss[0], nil
	}
	return nil, fmt.Errorf("policy: image %q: %w", repository, ErrImageNotAllowed)
}

// ServicesForImage returns every service whose images list the repository, in file order.
func (p *Policy) ServicesForImage(repository string) []*Service {
	var out []*Service
	for i := range p.Services {
		if p.Services[i].AllowsImage(repository) {
			out = append(out, &p.Services[i])
		}
	}
	return out
}

// Duration is a time.Duration read from YAML as a Go duration string ("90s", "24h", "1h30m")
// or whole days ("2d", optionally followed by a Go duration: "1d12h"). A string that does not
// parse is kept and reported by validation with the field's path.
type Duration struct {
	time.Duration
	invalid string // the text that did not parse; empty when valid
}

// Dur returns a Duration of d.
func Dur(d time.Duration) Duration { return Duration{Duration: d} }

// ParseDuration parses a Go duration string or whole days ("2d", "1d12h", "-3d").
func ParseDuration(s string) (time.Duration, error) {
	rest, neg := s, false
	if strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i >= len(rest) || rest[i] != 'd' {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return d, nil
	}
	days, err := strconv.ParseInt(rest[:i], 10, 64)
	const maxDays = int64(1<<63-1) / int64(24*time.Hour)
	if err != nil || days > maxDays {
		return 0, fmt.Errorf("duration %q out of range", s)
	}
	d := time.Duration(days) * 24 * time.Hour
	if tail := rest[i+1:]; tail != "" {
		if tail[0] == '-' || tail[0] == '+' {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		t, err := time.ParseDuration(tail)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		if t > time.Duration(1<<63-1)-d {
			return 0, fmt.Errorf("duration %q out of range", s)
		}
		d += t
	}
	if neg {
		d = -d
	}
	return d, nil
}

// UnmarshalYAML reads a duration scalar. Text that does not parse is kept for validation to
// report; a mapping or sequence is a decoding error.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot unmarshal %s into a duration", n.Line, kindName(n.Kind))}}
	}
	v, err := ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		*d = Duration{invalid: n.Value}
		return nil
	}
	*d = Duration{Duration: v}
	return nil
}

// MarshalYAML writes the duration as a Go duration string without zero units ("24h", "1m30s").
func (d Duration) MarshalYAML() (any, error) {
	if d.invalid != "" {
		return d.invalid, nil
	}
	return formatDuration(d.Duration), nil
}

// MarshalText writes the duration like MarshalYAML, so JSON carries "24h" rather than
// nanoseconds.
func (d Duration) MarshalText() ([]byte, error) {
	if d.invalid != "" {
		return nil, fmt.Errorf("invalid duration %q", d.invalid)
	}
	return []byte(formatDuration(d.Duration)), nil
}

// UnmarshalText parses a duration like ParseDuration; unlike UnmarshalYAML it fails on text
// that does not parse.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = Duration{Duration: v}
	return nil
}

// Valid reports whether the duration's YAML text parsed.
func (d Duration) Valid() bool { return d.invalid == "" }

// formatDuration writes 9m rather than 9m0s, 2h rather than 2h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	return "a scalar"
}

// Load reads and parses the policy file at path (see Parse).
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	return Parse(data)
}

// Parse decodes a policy document, merges the defaults block under each service, applies the
// built-in defaults and validates the result. Unknown fields and type mismatches are reported
// with their line; validation problems are *FieldError values joined with errors.Join. Every
// error about the content matches errors.Is(err, ErrInvalid).
func Parse(data []byte) (*Policy, error) {
	// Pass 1: strict decode, for unknown fields and type errors with their lines.
	var strict struct {
		Defaults Service   `yaml:"defaults"`
		Services []Service `yaml:"services"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&strict); err != nil && !errors.Is(err, io.EOF) {
		return nil, decodeErr(err)
	}
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, decodeErr(err)
		}
		if len(extra.Content) > 0 && extra.Content[0].ShortTag() != "!!null" {
			return nil, &decodeError{msg: fmt.Sprintf("line %d: only one YAML document is allowed", extra.Line)}
		}
	}

	// Pass 2: layer built-in defaults, the defaults block and each service.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, decodeErr(err)
	}
	defaultsNode, servicesNode := topLevel(&doc)
	var errs []error
	for _, key := range []string{"name", "project", "region", "images"} {
		if mappingValue(defaultsNode, key) != nil {
			errs = append(errs, fieldErr("defaults."+key, "not allowed in defaults; set it per service"))
		}
	}
	p := &Policy{}
	if servicesNode != nil && servicesNode.Kind == yaml.SequenceNode {
		for _, item := range servicesNode.Content {
			s := baseService()
			if defaultsNode != nil {
				if err := defaultsNode.Decode(&s); err != nil {
					return nil, decodeErr(err)
				}
			}
			if err := item.Decode(&s); err != nil {
				return nil, decodeErr(err)
			}
			// Blue-green services do not inherit canary stages from the defaults block.
			if s.Strategy == StrategyBlueGreen && mappingValue(resolve(item), "stages") == nil {
				s.Stages = nil
			}
			applyDefaults(&s)
			p.Services = append(p.Services, s)
		}
	}

	if err := p.Validate(); err != nil {
		errs = append(errs, attribute(err, servicesNode, defaultsNode)...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for i := range p.Services {
		p.Services[i].Windows.resolveLocation()
	}
	return p, nil
}

// decodeError is a YAML decoding problem (syntax, unknown field, wrong type).
type decodeError struct{ msg string }

func (e *decodeError) Error() string { return "policy: " + e.msg }
func (e *decodeError) Unwrap() error { return ErrInvalid }

var unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type \S+`)

// decodeErr turns a yaml.v3 error into decodeErrors, one per problem.
func decodeErr(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return &decodeError{msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	errs := make([]error, 0, len(te.Errors))
	for _, m := range te.Errors {
		errs = append(errs, &decodeError{msg: unknownFieldRE.ReplaceAllString(m, `unknown field "$1"`)})
	}
	return errors.Join(errs...)
}

// topLevel returns the defaults and services value nodes of a document.
func topLevel(doc *yaml.Node) (defaults, services *yaml.Node) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	root := resolve(doc.Content[0])
	defaults = resolve(mappingValue(root, "defaults"))
	if defaults != nil && defaults.Kind != yaml.MappingNode {
		defaults = nil // null
	}
	return defaults, resolve(mappingValue(root, "services"))
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// mappingValue returns the value of key in mapping n (following merge keys), or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	return mappingValueDepth(n, key, 0)
}

func mappingValueDepth(n *yaml.Node, key string, depth int) *yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode || depth > 10 {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key && k.Tag != "!!merge" {
			return n.Content[i+1]
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			v := resolve(n.Content[i+1])
			if v == nil {
				continue
			}
			if v.Kind == yaml.SequenceNode {
				for _, m := range v.Content {
					if got := mappingValueDepth(m, key, depth+1); got != nil {
						return got
					}
				}
				continue
			}
			if got := mappingValueDepth(v, key, depth+1); got != nil {
				return got
			}
		}
	}
	return nil
}

var pathSegRE = regexp.MustCompile(`[^.\[\]]+|\[\d+\]`)

// nodeAt returns the node at a path such as "stages[2].percent" below n, or nil.
func nodeAt(n *yaml.Node, path string) *yaml.Node {
	for _, seg := range pathSegRE.FindAllString(path, -1) {
		n = resolve(n)
		if n == nil {
			return nil
		}
		if strings.HasPrefix(seg, "[") {
			i, _ := strconv.Atoi(seg[1 : len(seg)-1])
			if n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				return nil
			}
			n = n.Content[i]
			continue
		}
		n = mappingValue(n, seg)
	}
	return n
}

var servicePathRE = regexp.MustCompile(`^services\[(\d+)\]\.(.+)$`)

// attribute rewrites the path of a problem whose value came from the defaults block to
// defaults.FIELD, and drops the duplicates that leaves when several services inherit it.
func attribute(err error, services, defaults *yaml.Node) []error {
	var out []error
	seen := map[FieldError]bool{}
	for _, e := range unjoin(err) {
		var fe *FieldError
		if !errors.As(e, &fe) {
			out = append(out, e)
			continue
		}
		f := *fe
		if m := servicePathRE.FindStringSubmatch(f.Field); m != nil && defaults != nil {
			i, _ := strconv.Atoi(m[1])
			var item *yaml.Node
			if services != nil && services.Kind == yaml.SequenceNode && i < len(services.Content) {
				item = services.Content[i]
			}
			if nodeAt(item, m[2]) == nil && nodeAt(defaults, m[2]) != nil {
				f.Field = "defaults." + m[2]
			}
		}
		if seen[f] {
			continue
		}
		seen[f] = true
		out = append(out, &f)
	}
	return out
}

// unjoin flattens errors.Join trees.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

//go:embed example.yaml
var example []byte

// Example returns a copy of the example policy for the local cloud: service ai-square in
// project local-project, region local, with a fast demo canary.
func Example() []byte { return bytes.Clone(example) }
