package terraform

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"gopkg.in/yaml.v3"

	"github.com/ai-square/coalmine/shared/policy"
)

const root = "../.."

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goVersion is go.mod's go directive.
func goVersion(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(readFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return m[1]
}

type buildStep struct {
	ID         string   `yaml:"id"`
	Name       string   `yaml:"name"`
	Entrypoint string   `yaml:"entrypoint"`
	Args       []string `yaml:"args"`
	Env        []string `yaml:"env"`
}

type buildConfig struct {
	Substitutions map[string]string `yaml:"substitutions"`
	Steps         []buildStep       `yaml:"steps"`
}

func cloudBuild(t *testing.T) (buildConfig, map[string]buildStep) {
	t.Helper()
	var c buildConfig
	if err := yaml.Unmarshal([]byte(readFile(t, "cloudbuild.yaml")), &c); err != nil {
		t.Fatalf("cloudbuild.yaml: %v", err)
	}
	steps := map[string]buildStep{}
	for _, s := range c.Steps {
		steps[s.ID] = s
	}
	for _, id := range []string{"check", "test", "build", "push", "deploy", "alerts"} {
		if _, ok := steps[id]; !ok {
			t.Fatalf("cloudbuild.yaml has no step %q", id)
		}
	}
	return c, steps
}

// TestCloudBuild: cloudbuild.yaml tests with PostgreSQL required, builds the
// Dockerfile into the repository Terraform makes, deploys by digest to every
// function's service, and makes the alert policies from the policy secret.
func TestCloudBuild(t *testing.T) {
	c, steps := cloudBuild(t)
	e := module(t, true)

	test := steps["test"]
	if got, want := test.Name, "golang:"+goVersion(t)+"-bookworm"; got != want {
		t.Errorf("test step image %q, want %q (go.mod's Go)", got, want)
	}
	if strings.Join(test.Args, " ") != "./scripts/test.sh" || !contains(test.Env, "COALMINE_REQUIRE_POSTGRES=1") {
		t.Errorf("test step runs %v with env %v, want the README's ./scripts/test.sh with COALMINE_REQUIRE_POSTGRES=1", test.Args, test.Env)
	}

	repo := e.resource(t, "google_artifact_registry_repository", "coalmine").instances[""]
	image := "${_REGION}-docker.pkg.dev/${PROJECT_ID}/" + str(repo, "repository_id") + "/functions"
	if out := str(e.resource(t, "google_artifact_registry_repository", "coalmine").instances[""], "location"); out != region {
		t.Errorf("image repository in %q, want the region", out)
	}
	build := strings.Join(steps["build"].Args, " ")
	for _, want := range []string{"--build-arg=PG_MAJOR=${_PG_MAJOR}", "--tag=" + image + ":${BUILD_ID}"} {
		if !strings.Contains(build, want) {
			t.Errorf("build step %q lacks %q", build, want)
		}
	}
	push := strings.Join(steps["push"].Args, " ")
	if !strings.Contains(push, "docker push \""+image+":${BUILD_ID}\"") || !strings.Contains(push, "RepoDigests") {
		t.Errorf("push step does not push %s and keep its digest: %q", image, push)
	}

	deploy := strings.Join(steps["deploy"].Args, " ")
	m := regexp.MustCompile(`for fn in ([a-z ]+);`).FindStringSubmatch(deploy)
	if m == nil {
		t.Fatalf("deploy step has no `for fn in …;` loop over the functions: %q", deploy)
	}
	var got, want []string
	for _, fn := range strings.Fields(m[1]) {
		got = append(got, "coalmine-"+fn)
	}
	for _, svc := range e.resource(t, "google_cloud_run_v2_service", "function").instances {
		want = append(want, str(svc, "name"))
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("deploy step updates %v, want the module's function services %v", got, want)
	}
	if !strings.Contains(deploy, `--image "$$(cat /workspace/image)"`) {
		t.Errorf("deploy step does not deploy the pushed digest: %q", deploy)
	}
	if !regexp.MustCompile(`tags add "\$\$\(cat /workspace/image\)" \\\s+"` + regexp.QuoteMeta(image) + `:deployed"`).MatchString(deploy) {
		t.Errorf("deploy step does not tag the deployed image %s:deployed: %q", image, deploy)
	}
	kept := false
	for _, p := range list(repo, "cleanup_policies") {
		if str(p, "action") == "KEEP" && str(p, "condition", 0, "tag_state") == "TAGGED" {
			for _, tag := range list(p, "condition", 0, "tag_prefixes") {
				kept = kept || tag.AsString() == "deployed"
			}
		}
	}
	if !kept {
		t.Errorf("the image repository's cleanup may delete the image tagged deployed")
	}
	secret := str(e.resource(t, "google_secret_manager_secret", "policy").instances[""], "secret_id")
	if !strings.Contains(deploy, "--secret "+secret) {
		t.Errorf("deploy step does not read the policy secret %s", secret)
	}
	if alerts := strings.Join(steps["alerts"].Args, " "); !strings.Contains(alerts, "go run ./scripts/coalmine alerts --project \"${PROJECT_ID}\" --config /workspace/policy.yaml") {
		t.Errorf("alerts step does not run coalmine alerts on the policy: %q", alerts)
	}

	// Every user substitution is declared and used.
	used := map[string]bool{}
	for _, s := range c.Steps {
		for _, m := range regexp.MustCompile(`\$\{(_[A-Z_]+)\}`).FindAllStringSubmatch(strings.Join(append(s.Args, s.Env...), " "), -1) {
			used[m[1]] = true
		}
	}
	for name := range used {
		if _, ok := c.Substitutions[name]; !ok {
			t.Errorf("cloudbuild.yaml uses ${%s} without a default in substitutions", name)
		}
	}
	for name := range c.Substitutions {
		if !used[name] {
			t.Errorf("cloudbuild.yaml declares %s but never uses it", name)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestDockerfile: the image builds the functions with the build script,
// installs the PostgreSQL client with the install script (the two scripts
// scripts/image/check.sh runs without Docker), and runs as a non-root user.
func TestDockerfile(t *testing.T) {
	d := readFile(t, "Dockerfile")
	c, _ := cloudBuild(t)
	for _, want := range []string{
		"ARG GO_VERSION=" + goVersion(t) + "\n",
		"ARG PG_MAJOR=" + c.Substitutions["_PG_MAJOR"] + "\n",
		"FROM golang:${GO_VERSION}-bookworm AS build\n",
		"RUN scripts/image/build.sh /out/functions\n",
		"RUN install-pg-client.sh \"${PG_MAJOR}\"",
		"COPY --from=build /out/functions /functions\n",
		"ENTRYPOINT [\"/functions\"]\n",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("Dockerfile lacks %q", strings.TrimSpace(want))
		}
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)$`).FindAllStringSubmatch(d, -1)
	if len(user) == 0 {
		t.Fatal("Dockerfile sets no USER: the functions would run as root")
	}
	if last := user[len(user)-1][1]; last == "root" || last == "0" || strings.HasPrefix(last, "0:") {
		t.Errorf("Dockerfile runs as %s", last)
	}
	script := readFile(t, "scripts/image/build.sh")
	if !strings.Contains(script, "CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w' -o \"$out\" ./functions") {
		t.Errorf("scripts/image/build.sh does not build ./functions static and trimmed")
	}
}

// TestProductionPolicy: the policy in docs/production.md is valid and
// agrees with the example's terraform.tfvars.example (project, region,
// services, images' repositories, buckets, the database URL's secret).
func TestProductionPolicy(t *testing.T) {
	doc := readFile(t, "docs/production.md")
	i := strings.Index(doc, "<!-- production-policy:")
	if i < 0 {
		t.Fatal("docs/production.md has no production-policy block")
	}
	rest := doc[i:]
	start := strings.Index(rest, "```yaml\n")
	end := strings.Index(rest[start+8:], "```")
	if start < 0 || end < 0 {
		t.Fatal("no ```yaml block after the production-policy marker")
	}
	pol, err := policy.Parse([]byte(rest[start+8 : start+8+end]))
	if err != nil {
		t.Fatalf("the policy of docs/production.md: %v", err)
	}

	f, diags := hclparse.NewParser().ParseHCLFile(filepath.Join(exampleDir, "terraform.tfvars.example"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	vars := map[string]cty.Value{}
	for name, a := range f.Body.(*hclsyntax.Body).Attributes {
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("terraform.tfvars.example %s: %v", name, diags)
		}
		vars[name] = v
	}
	tf := cty.ObjectVal(vars)
	set := func(name string) map[string]bool {
		out := map[string]bool{}
		for _, v := range list(tf, name) {
			out[v.AsString()] = true
		}
		return out
	}
	services, sources := set("target_services"), set("backup_source_buckets")
	repos := map[string]bool{}
	for _, r := range list(tf, "release_repositories") {
		repos[str(r, "location")+"/"+str(r, "repository")] = true
	}
	secrets := get(tf, "backup_secret_env")
	for _, s := range pol.Services {
		if s.Project != str(tf, "project_id") || s.Region != str(tf, "region") {
			t.Errorf("service %s in %s/%s, the example's project and region are %s/%s", s.Name, s.Project, s.Region, str(tf, "project_id"), str(tf, "region"))
		}
		if !services[s.Name] {
			t.Errorf("service %s is not in target_services", s.Name)
		}
		for _, img := range s.Images {
			// LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE
			parts := registryParts(img)
			if parts == nil || !repos[parts[0]+"/"+parts[2]] || parts[1] != s.Project {
				t.Errorf("image %s is not in a repository of release_repositories", img)
			}
		}
		if s.Backup.Target.Bucket != str(tf, "backup_bucket") {
			t.Errorf("service %s backs up to %s, Terraform creates %s", s.Name, s.Backup.Target.Bucket, str(tf, "backup_bucket"))
		}
		for _, src := range s.Backup.Storage.Sources {
			if !sources[src.Bucket] {
				t.Errorf("source bucket %s is not in backup_source_buckets", src.Bucket)
			}
		}
		if s.Backup.Database.Driver == policy.DriverPostgres && get(secrets, s.Backup.Database.URLEnv) == cty.NilVal {
			t.Errorf("the database URL %s is not in backup_secret_env", s.Backup.Database.URLEnv)
		}
	}
}

var registryImage = regexp.MustCompile(`^([a-z0-9-]+)-docker\.pkg\.dev/([^/]+)/([^/]+)/.+$`)

// registryParts returns location, project, repository of an Artifact
// Registry image, or nil.
func registryParts(img string) []string {
	m := registryImage.FindStringSubmatch(img)
	if m == nil {
		return nil
	}
	return m[1:]
}
