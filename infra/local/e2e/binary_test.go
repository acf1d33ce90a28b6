package e2e

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"

	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/rollout"
)

// TestLocalUpBinary runs the real `coalmine local up` and the README's
// commands as separate processes, and checks the result from outside with
// the official Cloud Run client.
func TestLocalUpBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI")
	}
	bin := filepath.Join(t.TempDir(), "coalmine")
	build := exec.Command("go", "build", "-o", bin, "github.com/ai-square/coalmine/scripts/coalmine")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		dir := t.TempDir()
		policyFile := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(policyFile, []byte(testPolicy), 0o644); err != nil {
			t.Fatal(err)
		}
		state := filepath.Join(dir, "state")
		up := exec.Command(bin, "local", "up", "--dir", state, "--config", policyFile)
		up.Env = os.Environ()
		if backend == pubsubemu.BackendGcloud {
			up.Env = append(up.Env, "PUBSUB_EMULATOR_HOST="+gcloudHost(t))
			up.Args = append(up.Args, "--pubsub", "external")
		}
		var stderr bytes.Buffer
		up.Stderr = &stderr
		stdout, err := up.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := up.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			up.Process.Signal(os.Interrupt)
			done := make(chan error, 1)
			go func() { done <- up.Wait() }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				up.Process.Kill()
				t.Errorf("local up did not stop on interrupt")
			}
			if t.Failed() {
				logs, _ := os.ReadFile(filepath.Join(state, cloud.LogFile))
				t.Logf("local up stderr:\n%s\nits logs:\n%s", stderr.String(), logs)
			}
		})
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if sc.Text() == "ready" {
					close(ready)
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(90 * time.Second):
			t.Fatalf("local up never printed ready; stderr:\n%s", stderr.String())
		}
		env, err := cloud.ReadEnv(filepath.Join(state, cloud.EnvFile))
		if err != nil {
			t.Fatalf("local.env: %v", err)
		}
		for _, k := range []string{"PUBSUB_EMULATOR_HOST", "CLOUDRUN_EMULATOR_HOST", "COALMINE_PROJECT", "COALMINE_REGION"} {
			if env[k] == "" {
				t.Errorf("local.env has no %s: %v", k, env)
			}
		}
		coalmine := func(args ...string) string {
			t.Helper()
			cmd := exec.Command(bin, append([]string{"--dir", state}, args...)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("coalmine %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		// Checked from outside: the official client, pointed by local.env.
		ctx := context.Background()
		t.Setenv(cloudrun.EmulatorHostEnv, env[cloudrun.EmulatorHostEnv])
		svcs, err := run.NewServicesClient(ctx, cloudrun.EmulatorOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		defer svcs.Close()
		name := "projects/local-project/locations/local/services/ai-square"
		waitState := func(what string, ok func(rollout.State, *runpb.Service) bool) (rollout.State, *runpb.Service) {
			t.Helper()
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				svc, err := svcs.GetService(ctx, &runpb.GetServiceRequest{Name: name})
				if err != nil {
					t.Fatal(err)
				}
				st := stateOf(t, svc)
				if ok(st, svc) {
					return st, svc
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Fatalf("timed out waiting for %s; status:\n%s", what, coalmine("status"))
			return rollout.State{}, nil
		}
		phase := func(p rollout.Phase, stage int) func(rollout.State, *runpb.Service) bool {
			return func(st rollout.State, _ *runpb.Service) bool {
				return st.Rollout != nil && st.Rollout.Phase == p && st.Rollout.Stage == stage
			}
		}

		image := strings.TrimSpace(coalmine("push", repo+":v2"))
		st, svc := waitState("stage 1", phase(rollout.Progressing, 1))
		if st.Rollout.Image != image {
			t.Errorf("rollout image %s, want %s", st.Rollout.Image, image)
		}
		split := map[string]int32{}
		for _, ts := range svc.GetTrafficStatuses() {
			split[ts.GetRevision()] += ts.GetPercent()
		}
		if split[st.Rollout.Canary] != 10 || split[st.Stable] != 90 {
			t.Errorf("TrafficStatuses at stage 1 = %v", split)
		}
		if out := coalmine("status", "ai-square"); !strings.Contains(out, "stage 1/4 (10%)") {
			t.Errorf("status:\n%s", out)
		}
		for range 3 {
			coalmine("promote", "ai-square")
			time.Sleep(300 * time.Millisecond)
		}
		st, _ = waitState("promoted", phase(rollout.Promoted, 4))
		canary := st.Rollout.Canary
		coalmine("push", repo+":v3", "--error-rate", "0.2")
		waitState("second rollout at stage 1", func(st rollout.State, _ *runpb.Service) bool {
			return st.Rollout.Image != image && st.Rollout.Phase == rollout.Progressing
		})
		coalmine("abort", "ai-square")
		st, svc = waitState("rolled back", phase(rollout.RolledBack, 1))
		if st.Stable != canary || svc.GetTemplate().GetContainers()[0].GetImage() != image {
			t.Errorf("after abort: stable %s template image %s; want %s and %s", st.Stable, svc.GetTemplate().GetContainers()[0].GetImage(), canary, image)
		}
		if out, err := exec.Command(bin, "--dir", state, "pause", "ai-square").CombinedOutput(); err == nil || !strings.Contains(string(out), "no rollout in progress") {
			t.Errorf("pause with no rollout: %v, %s", err, out)
		}
	})
}
