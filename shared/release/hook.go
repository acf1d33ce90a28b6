package release

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"google.golang.org/api/idtoken"

	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/policy"
)

// runHook calls the policy's post-rollback hook once traffic is back on the
// stable revision: an HTTP request to the service (served by the stable
// revision now) or a command. It must be idempotent: a redelivered rollback
// calls it again. A non-2xx answer, a failed command or a timeout is an
// error, and the rollback is delivered again.
//
// It runs for at most limit (the policy's timeout, at most
// policy.MaxHookTimeout so that it ends inside the rollback's delivery
// deadline, and before its lease runs out) and ctx's own deadline.
func (e *Env) runHook(ctx context.Context, h *policy.Hook, svc *cloudrun.Service, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if len(h.Command) > 0 {
		cmd := exec.CommandContext(ctx, h.Command[0], h.Command[1:]...)
		cmd.Env = append(os.Environ(), "COALMINE_SERVICE="+svc.Name, "COALMINE_SERVICE_URL="+svc.URI)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("post-rollback hook %s: %w: %s", strings.Join(h.Command, " "), err, tail(out))
		}
		return nil
	}
	if svc.URI == "" {
		return fmt.Errorf("post-rollback hook: service %s has no URL", svc.Name)
	}
	client, err := e.hookClient(ctx, svc.URI)
	if err != nil {
		return fmt.Errorf("post-rollback hook: client: %w", err)
	}
	method := h.Method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(svc.URI, "/")+h.Path, nil)
	if err != nil {
		return fmt.Errorf("post-rollback hook: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("post-rollback hook %s %s: %w", method, h.Path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post-rollback hook %s %s: status %d: %s", method, h.Path, resp.StatusCode, tail(body))
	}
	return nil
}

func (e *Env) hookClient(ctx context.Context, audience string) (*http.Client, error) {
	if e.HookClient != nil {
		return e.HookClient(ctx, audience)
	}
	if os.Getenv(cloudrun.EmulatorHostEnv) != "" {
		return http.DefaultClient, nil
	}
	return idtoken.NewClient(ctx, audience)
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 500 {
		s = "…" + s[len(s)-500:]
	}
	return s
}
