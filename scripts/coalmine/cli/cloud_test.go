package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"

	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/infra/local/sampleapp"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/rollout"
)

// TestMain lets the Cloud Run emulator run this test binary as the sample app.
func TestMain(m *testing.M) {
	sampleapp.RunIfChild()
	os.Exit(m.Run())
}

// testRepository is the one repository the test policy allows, for service web.
const testRepository = "local.dev/x/web"

// writePolicy writes a policy with one service, web, in the Cloud Run
// emulator's project and region, and returns its path.
func writePolicy(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "policy.yaml")
	yaml := fmt.Sprintf("services:\n  - {name: web, project: %s, region: %s, images: [%s], backup: {required: false}}\n",
		runemu.DefaultProject, runemu.DefaultRegion, testRepository)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeLocalEnv writes dir/local.env with env, the test policy and its project.
func writeLocalEnv(t *testing.T, dir string, env map[string]string) {
	t.Helper()
	all := map[string]string{release.EnvPolicy: writePolicy(t, dir), release.EnvProject: runemu.DefaultProject}
	for k, v := range env {
		all[k] = v
	}
	if err := cloud.WriteEnv(filepath.Join(dir, cloud.EnvFile), all); err != nil {
		t.Fatal(err)
	}
}

// cloudRunWith starts a Cloud Run emulator (closed at cleanup) serving service
// web with rollout state st, and returns a --dir whose local.env points at it.
func cloudRunWith(t *testing.T, st rollout.State) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg := runemu.NewRegistry()
	reg.Register(testRepository+":stable", runemu.Image{})
	srv, err := runemu.New(runemu.Options{Registry: reg, Logger: slog.New(slog.DiscardHandler), OperationPollHold: 5 * time.Second})
	if err != nil {
		t.Fatalf("runemu.New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	svcs, err := run.NewServicesClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatalf("NewServicesClient: %v", err)
	}
	defer svcs.Close()
	enc, err := rollout.Encode(st)
	if err != nil {
		t.Fatalf("rollout.Encode: %v", err)
	}
	op, err := svcs.CreateService(ctx, &runpb.CreateServiceRequest{
		Parent:    fmt.Sprintf("projects/%s/locations/%s", runemu.DefaultProject, runemu.DefaultRegion),
		ServiceId: "web",
		Service: &runpb.Service{
			Annotations: map[string]string{rollout.AnnotationKey: enc},
			Template:    &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: testRepository + ":stable"}}},
		},
	})
	if err != nil {
		t.Fatalf("CreateService: %v", err)
	}
	if _, err := op.Wait(ctx); err != nil {
		t.Fatalf("CreateService: wait: %v", err)
	}
	dir := t.TempDir()
	writeLocalEnv(t, dir, map[string]string{cloudrun.EmulatorHostEnv: srv.Addr()})
	return dir
}

// closedAddr returns a local address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// rolloutWith returns a state whose rollout is progressing at stage 1 and
// whose history has n entries, the newest with reason "entry n".
func rolloutWith(n int) rollout.State {
	now := time.Now()
	st := rollout.State{
		Generation: int64(n + 1),
		Rollout: &rollout.Rollout{
			ID: "web-0123456789ab", Image: testRepository + "@sha256:0123456789ab", Phase: rollout.Progressing,
			Stage: 1, Stages: []int{10, 100}, Started: now, StepStarted: now,
		},
	}
	for i := 1; i <= n; i++ {
		st.History = append(st.History, rollout.Entry{
			Rollout: "web-0123456789ab", Generation: int64(i), At: now, Kind: "shift", Phase: rollout.Progressing,
			Reason: fmt.Sprintf("entry %d", i),
		})
	}
	return st
}
