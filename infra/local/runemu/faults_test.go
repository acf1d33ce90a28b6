package runemu_test

import (
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"

	"github.com/ai-square/coalmine/infra/local/runemu"
)

// TestFaults injects errors, delays and holds into RPCs seen by the official client.
func TestFaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	e.create(t, "svc", &runpb.Service{Template: template("svc-stable", imageA)})

	// relabel returns the current service with one label changed.
	relabel := func(t *testing.T, v string) *runpb.Service {
		t.Helper()
		svc := e.get(t, "svc")
		svc.Labels = map[string]string{"v": v}
		return svc
	}

	t.Run("GetService unavailable once is retried by the client", func(t *testing.T) {
		e.srv.ClearFaults()
		calls := e.srv.Calls("GetService")
		e.srv.InjectFault("GetService", runemu.Fault{Code: codes.Unavailable, Times: 1})
		if _, err := e.svcs.GetService(testCtx(t), &runpb.GetServiceRequest{Name: e.serviceName("svc")}); err != nil {
			t.Fatalf("GetService: %v, want success after the client's retry", err)
		}
		if got, want := e.srv.Calls("GetService")-calls, 2; got != want {
			t.Errorf("GetService calls = %d, want %d (one failed, one retried)", got, want)
		}
	})

	t.Run("UpdateService unavailable once, then success", func(t *testing.T) {
		e.srv.ClearFaults()
		before := e.get(t, "svc")
		e.srv.InjectFault("UpdateService", runemu.Fault{Code: codes.Unavailable, Times: 1})
		_, err := e.svcs.UpdateService(testCtx(t), &runpb.UpdateServiceRequest{Service: relabel(t, "1")})
		if got, want := codeOf(err), codes.Unavailable; got != want {
			t.Fatalf("first UpdateService: code %v (%v), want %v", got, err, want)
		}
		sameSpec(t, "after the failed call", e.get(t, "svc"), before)
		got := e.mustUpdate(t, relabel(t, "1"))
		if got.GetLabels()["v"] != "1" || got.GetGeneration() != before.GetGeneration()+1 {
			t.Errorf("second UpdateService: labels %v generation %d, want v=1 and %d", got.GetLabels(), got.GetGeneration(), before.GetGeneration()+1)
		}
	})

	t.Run("UpdateService aborted", func(t *testing.T) {
		e.srv.ClearFaults()
		before := e.get(t, "svc")
		e.srv.InjectFault("UpdateService", runemu.Fault{Code: codes.Aborted, Message: "conflict", Times: 1})
		_, err := e.svcs.UpdateService(testCtx(t), &runpb.UpdateServiceRequest{Service: relabel(t, "2")})
		if got, want := codeOf(err), codes.Aborted; got != want {
			t.Fatalf("UpdateService: code %v (%v), want %v", got, err, want)
		}
		sameSpec(t, "after the aborted call", e.get(t, "svc"), before)
	})

	t.Run("After: the write happens, the caller sees an error", func(t *testing.T) {
		e.srv.ClearFaults()
		before := e.get(t, "svc")
		e.srv.InjectFault("UpdateService", runemu.Fault{Code: codes.DeadlineExceeded, Times: 1, After: true})
		_, err := e.svcs.UpdateService(testCtx(t), &runpb.UpdateServiceRequest{Service: relabel(t, "3")})
		if got, want := codeOf(err), codes.DeadlineExceeded; got != want {
			t.Fatalf("UpdateService: code %v (%v), want %v", got, err, want)
		}
		after := e.get(t, "svc")
		if after.GetLabels()["v"] != "3" || after.GetGeneration() != before.GetGeneration()+1 {
			t.Errorf("after the faulted call: labels %v generation %d, want v=3 and %d (the write applied)", after.GetLabels(), after.GetGeneration(), before.GetGeneration()+1)
		}
	})

	t.Run("Hold blocks the call but not reads", func(t *testing.T) {
		e.srv.ClearFaults()
		before := e.get(t, "svc")
		hold := make(chan struct{})
		e.srv.InjectFault("UpdateService", runemu.Fault{Hold: hold, Times: 1})
		errc := make(chan error, 1)
		in := relabel(t, "4")
		go func() {
			_, err := e.svcs.UpdateService(testCtx(t), &runpb.UpdateServiceRequest{Service: in})
			errc <- err
		}()
		deadline := time.Now().Add(5 * time.Second)
		for e.srv.Calls("UpdateService") == 0 || len(errc) > 0 {
			if time.Now().After(deadline) {
				t.Fatal("held UpdateService never arrived")
			}
			time.Sleep(5 * time.Millisecond)
		}
		select {
		case err := <-errc:
			t.Fatalf("held UpdateService returned early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		sameSpec(t, "while the update is held", e.get(t, "svc"), before)
		close(hold)
		if err := <-errc; err != nil {
			t.Fatalf("released UpdateService: %v", err)
		}
		if got := e.get(t, "svc"); got.GetLabels()["v"] != "4" {
			t.Errorf("after release: labels %v, want v=4", got.GetLabels())
		}
	})

	t.Run("GetOperation failure surfaces from op.Wait", func(t *testing.T) {
		e.srv.ClearFaults()
		e.srv.InjectFault("GetOperation", runemu.Fault{Code: codes.Internal, Times: 1})
		op, err := e.svcs.UpdateService(testCtx(t), &runpb.UpdateServiceRequest{Service: relabel(t, "5")})
		if err != nil {
			t.Fatalf("UpdateService: %v", err)
		}
		if _, err := op.Wait(testCtx(t)); codeOf(err) != codes.Internal {
			t.Fatalf("op.Wait: %v, want Internal", err)
		}
		if _, err := op.Wait(testCtx(t)); err != nil {
			t.Fatalf("second op.Wait: %v", err)
		}
	})

	t.Run("Delay and latency slow calls down", func(t *testing.T) {
		e.srv.ClearFaults()
		e.srv.SetLatency(30 * time.Millisecond)
		e.srv.InjectFault("ListServices", runemu.Fault{Delay: 50 * time.Millisecond})
		start := time.Now()
		listServices(t, e)
		if got, want := time.Since(start), 80*time.Millisecond; got < want {
			t.Errorf("ListServices took %v, want at least %v", got, want)
		}
		e.srv.ClearFaults()
		start = time.Now()
		e.get(t, "svc")
		if got := time.Since(start); got >= 30*time.Millisecond {
			t.Logf("GetService after ClearFaults took %v (latency should be gone)", got)
		}
	})

}
