// Package terraform holds coalmine's Terraform (modules/coalmine and the
// example root) and the tests that check it without the Google provider:
// the module matches events.Triggers and the other Go constants the
// functions assume, every grant is in docs/production.md's least-privilege
// table and every permission the functions' code needs is held.
package terraform

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/ai-square/coalmine/events"
)

const (
	moduleDir  = "modules/coalmine"
	exampleDir = "example"
	docsPath   = "../../docs/production.md"
	project    = "my-project"
	region     = "asia-east1"
)

// moduleVars sets every optional input, so that every conditional resource
// and grant exists.
func moduleVars(image bool) map[string]cty.Value {
	img := cty.NullVal(cty.String)
	if image {
		img = cty.StringVal(region + "-docker.pkg.dev/" + project + "/coalmine/functions@sha256:" + strings.Repeat("a", 64))
	}
	strs := func(ss ...string) cty.Value {
		vs := make([]cty.Value, len(ss))
		for i, s := range ss {
			vs[i] = cty.StringVal(s)
		}
		return cty.ListVal(vs)
	}
	return map[string]cty.Value{
		"project_id":              cty.StringVal(project),
		"region":                  cty.StringVal(region),
		"image":                   img,
		"policy":                  cty.StringVal("services: []\n"),
		"target_services":         strs("ai-square"),
		"target_service_accounts": strs("ai-square-runtime@" + project + ".iam.gserviceaccount.com"),
		"release_repositories": cty.ListVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{
			"location": cty.StringVal(region), "repository": cty.StringVal("ai-square"),
		})}),
		"backup_bucket":             cty.StringVal("my-project-coalmine-backups"),
		"backup_source_buckets":     strs("ai-square-user-data"),
		"cloudsql_instances":        strs(project + ":" + region + ":ai-square-db"),
		"cloudsql_service_accounts": strs("p123-abc@gcp-sa-cloud-sql.iam.gserviceaccount.com"),
		"backup_secret_env":         cty.MapVal(map[string]cty.Value{"DATABASE_URL": cty.StringVal("ai-square-database-url")}),
	}
}

// module evaluates the module with every input set; its evaluation must
// have no errors (an undeclared reference or an unknown function).
func module(t *testing.T, image bool) *evaluated {
	t.Helper()
	e := evaluate(t, load(t, moduleDir), moduleVars(image))
	for _, err := range e.errors {
		t.Errorf("evaluating %s: %s", moduleDir, err)
	}
	if t.Failed() {
		t.FailNow()
	}
	return e
}

func TestFormatted(t *testing.T) {
	var files []string
	for _, dir := range []string{moduleDir, exampleDir} {
		fs, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
		files = append(files, fs...)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := hclwrite.Format(src); !bytes.Equal(got, src) {
			t.Errorf("%s is not formatted: run terraform fmt -recursive infra/terraform", f)
		}
	}
	if _, err := exec.LookPath("terraform"); err != nil {
		t.Log("terraform is not installed: checked with hclwrite.Format only")
		return
	}
	cmd := exec.Command("terraform", "fmt", "-check", "-recursive", ".")
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE=/dev/null", "CHECKPOINT_DISABLE=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("terraform fmt -check -recursive: %v\n%s", err, out)
	}
}

func TestModuleEvaluates(t *testing.T) {
	for _, image := range []bool{true, false} {
		e := module(t, image)
		for _, r := range e.resources {
			if r.instances == nil {
				t.Errorf("image %v: %s was never evaluated", image, r.addr())
			}
		}
	}
}

// functionNames are the functions events.Triggers names.
func functionNames() []string {
	seen := map[string]bool{}
	var out []string
	for _, tr := range events.Triggers {
		if !seen[tr.Function] {
			seen[tr.Function] = true
			out = append(out, tr.Function)
		}
	}
	return out
}

func serviceName(fn string) string { return "coalmine-" + strings.ToLower(fn) }

func topicID(topic string) string { return "projects/" + project + "/topics/" + topic }

func TestTopicsAreEventsTopics(t *testing.T) {
	e := module(t, true)
	topics := e.resource(t, "google_pubsub_topic", "coalmine")
	var got []string
	for k, v := range topics.instances {
		got = append(got, k)
		if name := str(v, "name"); name != k {
			t.Errorf("topic %s is named %q", k, name)
		}
	}
	sort.Strings(got)
	want := append([]string(nil), events.Topics...)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("topics = %v, want events.Topics %v", got, want)
	}
	vars := moduleVars(true)
	vars["create_gcr_topic"] = cty.False
	e = evaluate(t, load(t, moduleDir), vars)
	if _, ok := e.resource(t, "google_pubsub_topic", "coalmine").instances[events.TopicGCR]; ok {
		t.Errorf("create_gcr_topic = false still creates the gcr topic")
	}
}

// TestTriggersMatchEvents: one push subscription per events.Trigger, with
// the delivery the functions assume.
func TestTriggersMatchEvents(t *testing.T) {
	e := module(t, true)
	subs := e.resource(t, "google_pubsub_subscription", "trigger").instances
	services := e.resource(t, "google_cloud_run_v2_service", "function").instances
	push := str(e.resource(t, "google_service_account", "push").instances[""], "email")
	if len(subs) != len(events.Triggers) {
		t.Errorf("%d trigger subscriptions, want %d (events.Triggers)", len(subs), len(events.Triggers))
	}
	for _, tr := range events.Triggers {
		s, ok := subs[tr.Subscription]
		if !ok {
			t.Errorf("no push subscription %s (%s ← %s)", tr.Subscription, tr.Function, tr.Topic)
			continue
		}
		where := "subscription " + tr.Subscription
		if got := str(s, "name"); got != tr.Subscription {
			t.Errorf("%s: name = %q, want %q", where, got, tr.Subscription)
		}
		if got, want := str(s, "topic"), topicID(tr.Topic); got != want {
			t.Errorf("%s: topic = %q, want %q", where, got, want)
		}
		svc := services[tr.Function]
		timeout := duration(t, str(svc, "template", 0, "timeout"))
		if got, want := num(s, "ack_deadline_seconds"), int64(events.AckDeadline/time.Second); got != want {
			t.Errorf("%s: ack_deadline_seconds = %d, want events.AckDeadline %d", where, got, want)
		}
		if got := time.Duration(num(s, "ack_deadline_seconds")) * time.Second; got < timeout {
			t.Errorf("%s: ack deadline %v is shorter than %s's timeout %v: Pub/Sub would redeliver while it runs", where, got, tr.Function, timeout)
		}
		if got := duration(t, str(s, "retry_policy", 0, "minimum_backoff")); got != events.MinBackoff {
			t.Errorf("%s: minimum_backoff = %v, want events.MinBackoff %v", where, got, events.MinBackoff)
		}
		if got := duration(t, str(s, "retry_policy", 0, "maximum_backoff")); got != events.MaxBackoff {
			t.Errorf("%s: maximum_backoff = %v, want events.MaxBackoff %v", where, got, events.MaxBackoff)
		}
		if got, want := str(s, "dead_letter_policy", 0, "dead_letter_topic"), topicID(events.TopicDeadLetter); got != want {
			t.Errorf("%s: dead_letter_topic = %q, want %q", where, got, want)
		}
		if got, want := num(s, "dead_letter_policy", 0, "max_delivery_attempts"), int64(events.MaxDeliveryAttempts); got != want {
			t.Errorf("%s: max_delivery_attempts = %d, want events.MaxDeliveryAttempts %d", where, got, want)
		}
		uri := str(svc, "uri")
		if uri == "" {
			t.Errorf("%s: no Cloud Run service for %s", where, tr.Function)
			continue
		}
		// functions-framework takes the topic of the CloudEvent from this path.
		if got, want := str(s, "push_config", 0, "push_endpoint"), uri+"/projects/"+project+"/topics/"+tr.Topic; got != want {
			t.Errorf("%s: push_endpoint = %q, want %q", where, got, want)
		}
		if got := str(s, "push_config", 0, "oidc_token", 0, "service_account_email"); got != push {
			t.Errorf("%s: OIDC token as %q, want the push account %q", where, got, push)
		}
		if got := str(s, "push_config", 0, "oidc_token", 0, "audience"); got != uri {
			t.Errorf("%s: OIDC audience %q, want the service URL %q", where, got, uri)
		}
		if got := str(s, "expiration_policy", 0, "ttl"); got != "" || get(s, "expiration_policy", 0, "ttl") == cty.NilVal {
			t.Errorf("%s: expiration_policy.ttl = %q, want \"\" (never expires)", where, got)
		}
	}
	// No image yet: no functions, so no push subscriptions either.
	if subs := module(t, false).resource(t, "google_pubsub_subscription", "trigger").instances; len(subs) != 0 {
		t.Errorf("with no image, %d trigger subscriptions would push to functions that do not exist", len(subs))
	}
}

func duration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Errorf("duration %q: %v", s, err)
	}
	return d
}

func TestDeadLettersAndEventsAreKept(t *testing.T) {
	e := module(t, true)
	for _, c := range []struct{ name, sub, topic string }{
		{"dead_letter", events.SubscriptionDeadLetter, events.TopicDeadLetter},
		{"watch", events.SubscriptionWatch, events.TopicEvents},
	} {
		s := e.resource(t, "google_pubsub_subscription", c.name).instances[""]
		if got := str(s, "name"); got != c.sub {
			t.Errorf("%s: name = %q, want %q", c.name, got, c.sub)
		}
		if got, want := str(s, "topic"), topicID(c.topic); got != want {
			t.Errorf("%s: topic = %q, want %q", c.name, got, want)
		}
		if get(s, "push_config") != cty.NilVal {
			t.Errorf("%s: a push subscription; it is for reading (pull)", c.name)
		}
		if get(s, "expiration_policy", 0, "ttl") == cty.NilVal || str(s, "expiration_policy", 0, "ttl") != "" {
			t.Errorf("%s: expires when unused; want expiration_policy { ttl = \"\" }", c.name)
		}
	}
}

func TestFunctionServices(t *testing.T) {
	if events.FunctionTimeout > events.AckDeadline {
		t.Errorf("events.FunctionTimeout %v > events.AckDeadline %v", events.FunctionTimeout, events.AckDeadline)
	}
	e := module(t, true)
	services := e.resource(t, "google_cloud_run_v2_service", "function").instances
	accounts := e.resource(t, "google_service_account", "function").instances
	fns := functionNames()
	if len(services) != len(fns) {
		t.Errorf("%d function services, want %d", len(services), len(fns))
	}
	for _, fn := range fns {
		svc, ok := services[fn]
		if !ok {
			t.Errorf("no Cloud Run service for %s", fn)
			continue
		}
		if got, want := str(svc, "name"), serviceName(fn); got != want {
			t.Errorf("%s: service %q, want %q", fn, got, want)
		}
		if got, want := str(svc, "template", 0, "service_account"), str(accounts[fn], "email"); got != want || got == "" {
			t.Errorf("%s: runs as %q, want its own account %q", fn, got, want)
		}
		if got := duration(t, str(svc, "template", 0, "timeout")); got != events.FunctionTimeout {
			t.Errorf("%s: timeout %v, want events.FunctionTimeout %v", fn, got, events.FunctionTimeout)
		}
		env := map[string]string{}
		for _, v := range list(svc, "template", 0, "containers", 0, "env") {
			if val := str(v, "value"); val != "" {
				env[str(v, "name")] = val
			} else if get(v, "value_source") != cty.NilVal {
				env[str(v, "name")] = "(secret)"
			}
		}
		want := map[string]string{
			"FUNCTION_TARGET":             fn,
			"CLOUD_RUN_TIMEOUT_SECONDS":   fmt.Sprint(int(events.FunctionTimeout / time.Second)),
			"COALMINE_PROJECT":            project,
			"COALMINE_REGION":             region,
			"COALMINE_SCHEDULER_LOCATION": region,
			"COALMINE_POLICY":             "/etc/coalmine/policy.yaml",
		}
		if fn == events.FunctionBackup {
			want["DATABASE_URL"] = "(secret)"
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: env %s = %q, want %q", fn, k, env[k], v)
			}
		}
		for k := range env {
			if _, ok := want[k]; !ok {
				t.Errorf("%s: unexpected env %s", fn, k)
			}
		}
		if got := str(svc, "template", 0, "containers", 0, "image"); got != str(cty.ObjectVal(moduleVars(true)), "image") {
			t.Errorf("%s: image %q, want var.image", fn, got)
		}
		if n := num(svc, "template", 0, "scaling", 0, "min_instance_count"); n != 0 {
			t.Errorf("%s: min_instance_count = %d, want 0 (scale to zero when idle)", fn, n)
		}
	}
}

func TestSweepJob(t *testing.T) {
	e := module(t, true)
	job := e.resource(t, "google_cloud_scheduler_job", "sweep").instances[""]
	if got := str(job, "name"); got != events.SweepJob {
		t.Errorf("sweep job %q, want events.SweepJob %q", got, events.SweepJob)
	}
	if got := str(job, "schedule"); got != events.SweepSchedule {
		t.Errorf("schedule %q, want events.SweepSchedule %q", got, events.SweepSchedule)
	}
	if got := str(job, "region"); got != region {
		t.Errorf("region %q, want the scheduler location %q (the functions' COALMINE_SCHEDULER_LOCATION)", got, region)
	}
	if got, want := str(job, "pubsub_target", 0, "topic_name"), topicID(events.TopicTicks); got != want {
		t.Errorf("topic %q, want %q", got, want)
	}
	data, err := base64.StdEncoding.DecodeString(str(job, "pubsub_target", 0, "data"))
	if err != nil {
		t.Fatalf("sweep data: %v", err)
	}
	var got, want any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("sweep data %q: %v", data, err)
	}
	_ = json.Unmarshal(events.SweepData(), &want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sweep data %s, want events.SweepData() %s", data, events.SweepData())
	}
	tick, err := events.DecodeTick(events.PubsubMessage{Data: data, PublishTime: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)})
	if err != nil || !tick.Sweep() {
		t.Errorf("the sweep job's data is not a sweep tick: %+v, %v", tick, err)
	}
}

func TestAlertChannel(t *testing.T) {
	e := module(t, true)
	ch := e.resource(t, "google_monitoring_notification_channel", "alerts").instances[""]
	if got := str(ch, "type"); got != "pubsub" {
		t.Errorf("channel type %q, want pubsub", got)
	}
	// alerting.Ensure (`coalmine alerts`) finds the channel by this label.
	if got, want := str(ch, "labels", "topic"), topicID(events.TopicAlerts); got != want {
		t.Errorf("channel labels.topic %q, want %q", got, want)
	}
	grant := e.resource(t, "google_pubsub_topic_iam_member", "monitoring_agent_alerts").instances[""]
	if str(grant, "topic") != events.TopicAlerts || str(grant, "role") != "roles/pubsub.publisher" ||
		str(grant, "member") != "serviceAccount:service-"+projectNumber+"@gcp-sa-monitoring-notification.iam.gserviceaccount.com" {
		t.Errorf("Monitoring's notification agent may not publish to %s: %#v", events.TopicAlerts, grant)
	}
}

func TestBackupBucket(t *testing.T) {
	e := module(t, true)
	b := e.resource(t, "google_storage_bucket", "backups").instances[""]
	if v := get(b, "uniform_bucket_level_access"); v == cty.NilVal || !v.True() {
		t.Errorf("backup bucket without uniform bucket-level access")
	}
	if got := str(b, "public_access_prevention"); got != "enforced" {
		t.Errorf("public_access_prevention %q, want enforced", got)
	}
	if got := num(b, "soft_delete_policy", 0, "retention_duration_seconds"); got != 30*86400 {
		t.Errorf("soft delete retention %d s, want 30 days by default", got)
	}
}

// TestVariables: every variable of the module and of the example is
// described, used, and (the module's) documented in docs/production.md.
func TestVariables(t *testing.T) {
	doc, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{moduleDir, exampleDir} {
		c := load(t, dir)
		refs := c.references()
		for name, v := range c.variables {
			if strings.TrimSpace(v.description) == "" {
				t.Errorf("%s: variable %s has no description", dir, name)
			}
			if !refs["var."+name] {
				t.Errorf("%s: variable %s is never used", dir, name)
			}
			if dir == moduleDir && !bytes.Contains(doc, []byte("| `"+name+"` |")) {
				t.Errorf("variable %s is not in docs/production.md's variables table", name)
			}
		}
		for _, l := range sortedKeys(c.locals) {
			if !refs["local."+l] {
				t.Errorf("%s: local %s is never used", dir, l)
			}
		}
	}
}

// TestExampleRoot: the example passes only variables the module declares,
// every required one, and its terraform.tfvars.example sets only declared
// variables and every one without a default.
func TestExampleRoot(t *testing.T) {
	mod := load(t, moduleDir)
	root := load(t, exampleDir)
	if len(root.modules) != 1 {
		t.Fatalf("%d module blocks in the example, want 1", len(root.modules))
	}
	args := root.modules[0].Body.Attributes
	if src, _ := args["source"].Expr.Value(nil); src.AsString() != "../"+moduleDir {
		t.Errorf("example module source %q", src.AsString())
	}
	for name := range args {
		if name != "source" && mod.variables[name] == nil {
			t.Errorf("the example passes %s, which the module does not declare", name)
		}
	}
	for name, v := range mod.variables {
		if _, ok := args[name]; !ok && v.def == cty.NilVal {
			t.Errorf("the example does not pass the module's required variable %s", name)
		}
	}
	f, diags := hclparse.NewParser().ParseHCLFile(filepath.Join(exampleDir, "terraform.tfvars.example"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	set := f.Body.(*hclsyntax.Body).Attributes
	for name := range set {
		if root.variables[name] == nil {
			t.Errorf("terraform.tfvars.example sets %s, which the example does not declare", name)
		}
	}
	for name, v := range root.variables {
		if _, ok := set[name]; !ok && v.def == cty.NilVal {
			t.Errorf("terraform.tfvars.example does not set the required variable %s", name)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// grant is one IAM grant of the module: who gets which role on what kind
// of resource (and which resource).
type grant struct {
	who, role, on, resource string
	addr                    string
}

// iamKinds maps the module's IAM member resource types to the kind of
// resource the role is granted on (the "On" column's first word).
var iamKinds = map[string]string{
	"google_project_iam_member":                      "project",
	"google_pubsub_topic_iam_member":                 "topic",
	"google_pubsub_subscription_iam_member":          "subscription",
	"google_storage_bucket_iam_member":               "bucket",
	"google_cloud_run_v2_service_iam_member":         "service",
	"google_service_account_iam_member":              "service account",
	"google_secret_manager_secret_iam_member":        "secret",
	"google_artifact_registry_repository_iam_member": "repository",
}

// grants lists every IAM grant of the evaluated module with its grantee
// named as docs/production.md names it.
func grants(t *testing.T, e *evaluated) []grant {
	t.Helper()
	who := map[string]string{
		"serviceAccount:service-" + projectNumber + "@gcp-sa-pubsub.iam.gserviceaccount.com":                  "Pub/Sub service agent",
		"serviceAccount:service-" + projectNumber + "@gcp-sa-monitoring-notification.iam.gserviceaccount.com": "Monitoring notification agent",
	}
	for fn, sa := range e.resource(t, "google_service_account", "function").instances {
		who[str(sa, "member")] = fn
	}
	for _, name := range []string{"push", "deployer"} {
		sa := e.resource(t, "google_service_account", name).instances[""]
		who[str(sa, "member")] = str(sa, "account_id")
	}
	for _, sa := range list(cty.ObjectVal(moduleVars(true)), "cloudsql_service_accounts") {
		who["serviceAccount:"+sa.AsString()] = "Cloud SQL instances"
	}
	var out []grant
	for _, r := range e.resources {
		if strings.HasSuffix(r.typ, "_iam_binding") || strings.HasSuffix(r.typ, "_iam_policy") {
			t.Errorf("%s: authoritative IAM (%s) would remove grants coalmine does not own; use _iam_member", r.addr(), r.typ)
			continue
		}
		kind, ok := iamKinds[r.typ]
		if !ok {
			if strings.Contains(r.typ, "_iam_") && r.typ != "google_project_iam_custom_role" {
				t.Errorf("%s: an IAM resource type this test does not know", r.addr())
			}
			continue
		}
		for _, key := range sortedKeys(r.instances) {
			v := r.instances[key]
			g := grant{on: kind, role: str(v, "role"), addr: fmt.Sprintf("%s[%q]", r.addr(), key)}
			g.role = strings.TrimPrefix(g.role, "projects/"+project+"/roles/")
			member := str(v, "member")
			if g.who = who[member]; g.who == "" {
				t.Errorf("%s: grants %s to %q, whom docs/production.md does not name", g.addr, g.role, member)
				continue
			}
			for _, attr := range []string{"topic", "subscription", "bucket", "name", "secret_id", "repository", "service_account_id"} {
				if s := str(v, attr); s != "" {
					g.resource = s
					break
				}
			}
			out = append(out, g)
		}
	}
	return out
}

// docRow is one row of a table of docs/production.md.
type docRow struct {
	line  int
	cells []string
}

// docTable returns the rows of the table that follows the marker comment
// <!-- NAME: ... --> in docs/production.md.
func docTable(t *testing.T, name string) []docRow {
	t.Helper()
	b, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "<!-- "+name+":") {
			start = i
		}
	}
	if start < 0 {
		t.Fatalf("docs/production.md has no <!-- %s: --> table", name)
	}
	var rows []docRow
	header := true
	for i := start + 1; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" && len(rows) == 0 && header {
			continue
		}
		if !strings.HasPrefix(l, "|") {
			break
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		if header || strings.HasPrefix(cells[0], "---") {
			header = false
			continue
		}
		rows = append(rows, docRow{line: i + 1, cells: cells})
	}
	if len(rows) == 0 {
		t.Fatalf("the <!-- %s: --> table of docs/production.md is empty", name)
	}
	return rows
}

var backticked = regexp.MustCompile("`([^`]+)`")

// roleOf reads a Role cell: `roles/x` or `coalmineX` (custom).
func roleOf(cell string) string {
	m := backticked.FindStringSubmatch(cell)
	if m == nil {
		return cell
	}
	return m[1]
}

// onKind reads the kind of resource of an On cell: its first word(s),
// plural or not.
func onKind(cell string) string {
	c := strings.ToLower(cell)
	for _, k := range []string{"service account", "project", "topic", "subscription", "bucket", "service", "secret", "repositor"} {
		if strings.HasPrefix(c, k) {
			if k == "repositor" {
				return "repository"
			}
			return k
		}
	}
	return cell
}

// TestLeastPrivilege: the module's grants are exactly the rows of
// docs/production.md's roles table (identity, role, kind of resource; and
// for topics, which topics), and no basic role is granted.
func TestLeastPrivilege(t *testing.T) {
	e := module(t, true)
	gs := grants(t, e)
	type key struct{ who, role, on string }
	have := map[key][]grant{}
	for _, g := range gs {
		switch g.role {
		case "roles/owner", "roles/editor", "roles/viewer":
			t.Errorf("%s grants the basic role %s to %s", g.addr, g.role, g.who)
		}
		k := key{g.who, g.role, g.on}
		have[k] = append(have[k], g)
	}
	documented := map[key]bool{}
	for _, row := range docTable(t, "roles") {
		if len(row.cells) < 4 {
			t.Errorf("docs/production.md:%d: want | Who | Role | On | Why |", row.line)
			continue
		}
		for _, who := range strings.Split(row.cells[0], ",") {
			k := key{strings.TrimSpace(who), roleOf(row.cells[1]), onKind(row.cells[2])}
			documented[k] = true
			gs, ok := have[k]
			if !ok {
				t.Errorf("docs/production.md:%d: %s has %s on a %s, which the module does not grant", row.line, k.who, k.role, k.on)
				continue
			}
			if k.on == "topic" {
				var want, got []string
				for _, m := range backticked.FindAllStringSubmatch(row.cells[2], -1) {
					want = append(want, m[1])
				}
				for _, g := range gs {
					got = append(got, g.resource)
				}
				sort.Strings(want)
				sort.Strings(got)
				if strings.Join(got, " ") != strings.Join(want, " ") {
					t.Errorf("docs/production.md:%d: %s has %s on topics %v in the module, the table says %v", row.line, k.who, k.role, got, want)
				}
			}
		}
	}
	for k, gs := range have {
		if !documented[k] {
			t.Errorf("%s grants %s to %s on a %s: not in docs/production.md's least-privilege table", gs[0].addr, k.role, k.who, k.on)
		}
	}
}

// predefined lists, of each predefined role the functions get, the
// permissions the calls table needs from it (a subset of the role, from
// Google's IAM roles reference).
var predefined = map[string][]string{
	"roles/pubsub.publisher":             {"pubsub.topics.publish"},
	"roles/iam.serviceAccountUser":       {"iam.serviceAccounts.actAs"},
	"roles/secretmanager.secretAccessor": {"secretmanager.versions.access"},
	"roles/storage.objectViewer":         {"storage.objects.get", "storage.objects.list"},
	"roles/storage.objectUser":           {"storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list", "storage.objects.update"},
	"roles/artifactregistry.reader":      {"artifactregistry.repositories.downloadArtifacts"},
	"roles/run.invoker":                  {"run.routes.invoke"},
}

// TestFunctionsHoldWhatTheirCodeCalls: every permission docs/production.md's
// calls table lists for a function (each Google API method its code calls)
// is held by that function, through its custom role or a predefined role
// granted to it; and its custom role holds nothing the table does not list.
func TestFunctionsHoldWhatTheirCodeCalls(t *testing.T) {
	e := module(t, true)
	roles := e.resource(t, "google_project_iam_custom_role", "function").instances
	custom := map[string][]cty.Value{} // role ID → permissions
	for _, r := range e.ofType("google_project_iam_custom_role") {
		for _, v := range r.instances {
			custom[str(v, "role_id")] = list(v, "permissions")
		}
	}
	gs := grants(t, e)
	held := map[string]map[string]string{} // function → permission → via
	for _, g := range gs {
		if held[g.who] == nil {
			held[g.who] = map[string]string{}
		}
		if perms, ok := custom[g.role]; ok {
			for _, p := range perms {
				held[g.who][p.AsString()] = g.role
			}
			continue
		}
		for _, p := range predefined[g.role] {
			held[g.who][p] = g.role
		}
	}
	needed := map[string]map[string]bool{}
	for _, row := range docTable(t, "calls") {
		if len(row.cells) < 4 {
			t.Errorf("docs/production.md:%d: want | Function | Google API method | Permission | Code |", row.line)
			continue
		}
		fns := strings.Split(row.cells[0], ",")
		for _, fn := range fns {
			fn = strings.TrimSpace(fn)
			if needed[fn] == nil {
				needed[fn] = map[string]bool{}
			}
			for _, m := range backticked.FindAllStringSubmatch(row.cells[2], -1) {
				perm := m[1]
				needed[fn][perm] = true
				if _, ok := held[fn][perm]; !ok {
					t.Errorf("docs/production.md:%d: %s calls %s, which needs %s: the module does not grant it", row.line, fn, row.cells[1], perm)
				}
			}
		}
	}
	for _, fn := range functionNames() {
		if len(needed[fn]) == 0 {
			t.Errorf("docs/production.md's calls table has no row for %s", fn)
		}
		for _, p := range list(roles[fn], "permissions") {
			if !needed[fn][p.AsString()] {
				t.Errorf("custom role coalmine%s holds %s, which no call of %s in docs/production.md needs", fn, p.AsString(), fn)
			}
		}
	}
	// A custom role granted to several functions holds only what each of
	// them needs.
	for _, g := range gs {
		perms, ok := custom[g.role]
		if !ok || needed[g.who] == nil {
			continue
		}
		for _, p := range perms {
			if !needed[g.who][p.AsString()] {
				t.Errorf("%s gives %s the permission %s, which no call of %s in docs/production.md needs", g.addr, g.who, p.AsString(), g.who)
			}
		}
	}
}
