package terraform

import (
	"go/ast"
	"go/types"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"
)

// googleCalls classifies every function of a Google client library that
// the functions' packages use (go list -deps ./functions): the text of the
// calls table's Google API method cell it is (part of), or "-" when it
// makes no request of its own (constructors, options, Close, reading a
// response), or "cli" when only the CLI's `backups restore` reaches it (the
// packages are linked into the functions, the call is not on their paths).
var googleCalls = map[string]string{
	"(*cloud.google.com/go/run/apiv2.ServicesClient).GetService":                  "`Services.GetService`",
	"(*cloud.google.com/go/run/apiv2.ServicesClient).UpdateService":               "`Services.UpdateService`",
	"(*cloud.google.com/go/run/apiv2.UpdateServiceOperation).Poll":                "`Operations.GetOperation`",
	"(*cloud.google.com/go/run/apiv2.UpdateServiceOperation).Done":                "-",
	"(*cloud.google.com/go/run/apiv2.RevisionsClient).GetRevision":                "`Revisions.GetRevision`",
	"(*cloud.google.com/go/run/apiv2.ServicesClient).Close":                       "-",
	"(*cloud.google.com/go/run/apiv2.RevisionsClient).Close":                      "-",
	"cloud.google.com/go/run/apiv2.NewServicesClient":                             "-",
	"cloud.google.com/go/run/apiv2.NewRevisionsClient":                            "-",
	"(*cloud.google.com/go/pubsub/v2.Publisher).Publish":                          "`Publisher.Publish`",
	"(*cloud.google.com/go/internal/pubsub.PublishResult).Get":                    "-",
	"(*cloud.google.com/go/pubsub/v2.Client).Publisher":                           "-",
	"(*cloud.google.com/go/pubsub/v2.Client).Close":                               "-",
	"(*cloud.google.com/go/pubsub/v2.Publisher).Stop":                             "-",
	"cloud.google.com/go/pubsub/v2.NewClient":                                     "-",
	"(*cloud.google.com/go/scheduler/apiv1.CloudSchedulerClient).CreateJob":       "`CreateJob`",
	"(*cloud.google.com/go/scheduler/apiv1.CloudSchedulerClient).GetJob":          "`GetJob`",
	"(*cloud.google.com/go/scheduler/apiv1.CloudSchedulerClient).UpdateJob":       "`UpdateJob`",
	"(*cloud.google.com/go/scheduler/apiv1.CloudSchedulerClient).ResumeJob":       "`ResumeJob`",
	"(*cloud.google.com/go/scheduler/apiv1.CloudSchedulerClient).DeleteJob":       "`DeleteJob`",
	"(*cloud.google.com/go/scheduler/apiv1.CloudSchedulerClient).ListJobs":        "`ListJobs`",
	"(*cloud.google.com/go/scheduler/apiv1.JobIterator).Next":                     "`ListJobs`",
	"(*cloud.google.com/go/scheduler/apiv1.CloudSchedulerClient).Close":           "-",
	"cloud.google.com/go/scheduler/apiv1.NewCloudSchedulerClient":                 "-",
	"(*cloud.google.com/go/monitoring/apiv3/v2.MetricClient).ListTimeSeries":      "`ListTimeSeries`",
	"(*cloud.google.com/go/monitoring/apiv3/v2.TimeSeriesIterator).Next":          "`ListTimeSeries`",
	"(*cloud.google.com/go/monitoring/apiv3/v2.MetricClient).Close":               "-",
	"cloud.google.com/go/monitoring/apiv3/v2.NewMetricClient":                     "-",
	"(*cloud.google.com/go/storage.BucketHandle).Objects":                         "`objects.list`",
	"(*cloud.google.com/go/storage.ObjectIterator).Next":                          "`objects.list`",
	"(*cloud.google.com/go/storage.ObjectHandle).Attrs":                           "`objects.get`",
	"(*cloud.google.com/go/storage.ObjectHandle).NewReader":                       "`objects.get`",
	"(*cloud.google.com/go/storage.ObjectHandle).NewWriter":                       "`objects.insert`",
	"(*cloud.google.com/go/storage.Writer).Write":                                 "`objects.insert`",
	"(*cloud.google.com/go/storage.Writer).Close":                                 "`objects.insert`",
	"(*cloud.google.com/go/storage.Writer).CloseWithError":                        "-",
	"(*cloud.google.com/go/storage.ObjectHandle).CopierFrom":                      "`objects.rewrite`",
	"(*cloud.google.com/go/storage.Copier).Run":                                   "`objects.rewrite`",
	"(*cloud.google.com/go/storage.ObjectHandle).Delete":                          "cli",
	"(*cloud.google.com/go/storage.Reader).Close":                                 "-",
	"(*cloud.google.com/go/storage.Client).Bucket":                                "-",
	"(*cloud.google.com/go/storage.BucketHandle).Object":                          "-",
	"(*cloud.google.com/go/storage.BucketHandle).Retryer":                         "-",
	"(*cloud.google.com/go/storage.ObjectHandle).Generation":                      "-",
	"(*cloud.google.com/go/storage.ObjectHandle).If":                              "-",
	"(*cloud.google.com/go/storage.ObjectHandle).ReadCompressed":                  "-",
	"(*cloud.google.com/go/storage.ObjectHandle).Retryer":                         "-",
	"(*cloud.google.com/go/storage.Query).SetAttrSelection":                       "-",
	"cloud.google.com/go/storage.NewClient":                                       "-",
	"cloud.google.com/go/storage.ShouldRetry":                                     "-",
	"cloud.google.com/go/storage.WithDisableReaderChecksum":                       "-",
	"cloud.google.com/go/storage.WithErrorFunc":                                   "-",
	"cloud.google.com/go/storage.WithMaxAttempts":                                 "-",
	"(*google.golang.org/api/sqladmin/v1.InstancesService).Export":                "`instances.export`",
	"(*google.golang.org/api/sqladmin/v1.InstancesExportCall).Do":                 "`instances.export`",
	"(*google.golang.org/api/sqladmin/v1.InstancesExportCall).Context":            "-",
	"(*google.golang.org/api/sqladmin/v1.OperationsService).List":                 "`operations.list`",
	"(*google.golang.org/api/sqladmin/v1.OperationsListCall).Pages":               "`operations.list`",
	"(*google.golang.org/api/sqladmin/v1.OperationsListCall).Instance":            "-",
	"(*google.golang.org/api/sqladmin/v1.OperationsListCall).MaxResults":          "-",
	"(*google.golang.org/api/sqladmin/v1.OperationsService).Get":                  "`operations.get`",
	"(*google.golang.org/api/sqladmin/v1.OperationsGetCall).Do":                   "`operations.get`",
	"(*google.golang.org/api/sqladmin/v1.OperationsGetCall).Context":              "-",
	"(*google.golang.org/api/sqladmin/v1.InstancesService).Import":                "cli",
	"(*google.golang.org/api/sqladmin/v1.InstancesImportCall).Do":                 "cli",
	"(*google.golang.org/api/sqladmin/v1.InstancesImportCall).Context":            "-",
	"google.golang.org/api/sqladmin/v1.NewService":                                "-",
	"github.com/google/go-containerregistry/pkg/v1/remote.Head":                   "`HEAD /v2/…/manifests/DIGEST`",
	"github.com/google/go-containerregistry/pkg/v1/google.NewEnvAuthenticator":    "token exchange",
	"github.com/google/go-containerregistry/pkg/v1/google.NewGcloudAuthenticator": "token exchange",
	"(*github.com/google/go-containerregistry/pkg/authn.defaultKeychain).Resolve": "-",
	"github.com/google/go-containerregistry/pkg/v1/remote.WithAuthFromKeychain":   "-",
	"github.com/google/go-containerregistry/pkg/v1/remote.WithContext":            "-",
	"github.com/google/go-containerregistry/pkg/v1/remote.WithRetryBackoff":       "-",
	"github.com/google/go-containerregistry/pkg/v1/remote.WithTransport":          "-",
	"github.com/google/go-containerregistry/pkg/name.NewDigest":                   "-",
	"(github.com/google/go-containerregistry/pkg/authn.Resource).RegistryStr":     "-",
	"(github.com/google/go-containerregistry/pkg/name.Registry).RegistryStr":      "-",
	"google.golang.org/api/idtoken.NewClient":                                     "ID token",
}

// googleClient reports whether a package is a Google client library whose
// calls may need a permission (generated message packages, whose methods
// only read responses, and client options are left out).
func googleClient(path string) bool {
	if strings.HasSuffix(path, "pb") || path == "google.golang.org/api/option" {
		return false
	}
	return strings.HasPrefix(path, "cloud.google.com/go/") ||
		strings.HasPrefix(path, "google.golang.org/api/") ||
		strings.HasPrefix(path, "github.com/google/go-containerregistry/")
}

// TestEveryGoogleCallIsInTheCallsTable type-checks the packages the
// functions binary is built from and finds every use of a Google client
// library function. Each must be classified in googleCalls, and each
// request it makes must be a row of docs/production.md's calls table, so a
// new call cannot reach production without its permission being listed
// (and TestFunctionsHoldWhatTheirCodeCalls then checks it is granted).
func TestEveryGoogleCallIsInTheCallsTable(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./functions")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./functions: %v", err)
	}
	var ours []string
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/ai-square/coalmine/") {
			ours = append(ours, p)
		}
	}
	pkgs, err := packages.Load(&packages.Config{
		Dir:  root,
		Mode: packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo,
	}, ours...)
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(root)
	used := map[string]string{} // function → first place
	for _, p := range pkgs {
		for _, err := range p.Errors {
			t.Errorf("%s: %v", p.PkgPath, err)
		}
		for _, f := range p.Syntax {
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				fn, ok := p.TypesInfo.Uses[sel.Sel].(*types.Func)
				if !ok || fn.Pkg() == nil || !googleClient(fn.Pkg().Path()) {
					return true
				}
				if _, seen := used[fn.FullName()]; !seen {
					pos := p.Fset.Position(sel.Pos())
					rel, _ := filepath.Rel(abs, pos.Filename)
					used[fn.FullName()] = rel + ":" + strconv.Itoa(pos.Line)
				}
				return true
			})
		}
	}
	if len(used) == 0 {
		t.Fatal("found no Google client calls at all: the scan is broken")
	}
	var table []string
	for _, row := range docTable(t, "calls") {
		table = append(table, row.cells[1])
	}
	names := sortedKeys(used)
	for _, name := range names {
		class, ok := googleCalls[name]
		switch {
		case !ok:
			t.Errorf("%s uses %s: add it to googleCalls (and, if it makes a request, a row to docs/production.md's calls table)", used[name], name)
		case class == "-" || class == "cli":
		default:
			found := false
			for _, method := range table {
				if strings.Contains(method, class) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s uses %s (%s), which no row of docs/production.md's calls table names", used[name], name, class)
			}
		}
	}
	for name := range googleCalls {
		if _, ok := used[name]; !ok {
			t.Errorf("googleCalls lists %s, which the functions' packages no longer use", name)
		}
	}
	t.Logf("%d Google client functions used by the functions' packages", len(names))
}
