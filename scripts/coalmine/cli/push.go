package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/infra/local/sampleapp"
	"github.com/ai-square/coalmine/shared/policy"
)

// envFlags collects repeated KEY=value flags.
type envFlags map[string]string

func (e envFlags) String() string { return fmt.Sprint(map[string]string(e)) }
func (e envFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=value, got %q", v)
	}
	e[k] = val
	return nil
}

func init() {
	var (
		errorRate float64
		latencyMS int
		failStart bool
		env       = envFlags{}
		override  bool
		reason    string
	)
	register(&command{
		name:    "push",
		args:    "IMAGE [--error-rate R] [--latency-ms MS] [--fail-start] [--env KEY=value]... [--override-window --reason TEXT]",
		summary: "Register a local image and publish its Artifact Registry notification (local cloud only).",
		detail: `IMAGE is a repository with an optional tag (local.dev/ai-square/web:v2; the tag defaults to
latest). The image runs the sample app with the given error rate, latency and environment; its
digest is derived from the repository, tag and settings. The notification (INSERT, digest and
tag) goes to the gcr topic, as Artifact Registry sends it. Prints the image with its digest.
The repository must be one that a service of the policy lists in its images; push refuses any
other and registers and publishes nothing.

With --override-window (and --reason) the rollout starts now even outside the policy's deploy
windows: push then publishes a release command for each service that takes the repository
(a registry notification cannot carry an override), waits for each outcome and prints it; the
history records who overrode the window and why.`,
		flags: func(fs *flag.FlagSet) {
			fs.Float64Var(&errorRate, "error-rate", 0, "answer the fraction `R` of requests with 500 (0..1)")
			fs.IntVar(&latencyMS, "latency-ms", 0, "add `MS` milliseconds of latency to every request")
			fs.BoolVar(&failStart, "fail-start", false, "the image exits at start (its revision never becomes ready)")
			fs.Var(env, "env", "set the environment variable `KEY=value` in the image (repeatable)")
			fs.BoolVar(&override, "override-window", false, "start the rollout now even outside the deploy windows (needs --reason)")
			fs.StringVar(&reason, "reason", "", "why the deploy window is overridden (for the history)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet) error {
			if errorRate < 0 || errorRate > 1 {
				return usagef("--error-rate %v is not a fraction between 0 and 1", errorRate)
			}
			if latencyMS < 0 {
				return usagef("--latency-ms must not be negative")
			}
			if override && strings.TrimSpace(reason) == "" {
				return usagef("--override-window needs --reason: the history records who overrode the deploy window and why")
			}
			if reason != "" && !override {
				return usagef("--reason goes with --override-window (a push is not an operator command otherwise)")
			}
			repo, tag, err := splitImage(fs.Arg(0))
			if err != nil {
				return usagef("%v", err)
			}
			t, err := a.target()
			if err != nil {
				return err
			}
			if len(t.policy.ServicesForImage(repo)) == 0 {
				return notAllowed(t.policy, repo)
			}
			if t.registry == "" {
				return fmt.Errorf("push registers a local image and needs a local cloud; run coalmine local up (or pass --dir)")
			}
			img := runemu.Image{Env: maps.Clone(env)}
			if img.Env == nil {
				img.Env = map[string]string{}
			}
			if errorRate > 0 {
				img.Env[sampleapp.EnvErrorRate] = strconv.FormatFloat(errorRate, 'f', -1, 64)
			}
			if latencyMS > 0 {
				img.Env[sampleapp.EnvLatencyMS] = strconv.Itoa(latencyMS)
			}
			if failStart {
				img.Env[sampleapp.EnvFailStart] = "true"
			}
			digest := digestOf(repo, tag, img)
			ref := repo + "@" + digest
			if err := runemu.WriteImage(t.registry, ref, img); err != nil {
				return err
			}
			if override {
				fmt.Fprintln(a.stdout, ref)
				return releaseOverride(ctx, a, t, repo, ref, reason)
			}
			bus, err := t.bus(ctx)
			if err != nil {
				return err
			}
			defer bus.Close()
			data, err := json.Marshal(events.ArtifactNotification{Action: events.ActionInsert, Digest: ref, Tag: repo + ":" + tag})
			if err != nil {
				return err
			}
			if _, err := bus.Publish(ctx, events.TopicGCR, data, nil); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, ref)
			return nil
		},
	})
}

// releaseOverride releases ref on every service that takes repo, now,
// overriding the deploy windows, and reports each outcome.
func releaseOverride(ctx context.Context, a *app, t *target, repo, ref, reason string) error {
	var errs []error
	who := actor(ctx)
	for _, s := range t.policy.ServicesForImage(repo) {
		cmd := events.Command{
			Type: events.CommandRelease, Service: s.Name, Image: ref, Step: events.StepRelease,
			OverrideWindow: true, Reason: reason, Actor: who, ID: newCommandID(), Reply: true,
		}
		if err := send(ctx, a, t, cmd, "release "+s.Name, operatorFlags{timeout: 2 * time.Minute}); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", s.Name, err))
		}
	}
	return errors.Join(errs...)
}

// notAllowed says that no service of the policy releases repository, and
// which repositories each service does: Backup would drop such a push.
func notAllowed(pol *policy.Policy, repository string) error {
	var allowed []string
	for _, s := range pol.Services {
		allowed = append(allowed, s.Name+": "+strings.Join(s.Images, ", "))
	}
	return fmt.Errorf("no service in the policy releases %q; nothing was pushed (images the policy allows: %s)",
		repository, strings.Join(allowed, "; "))
}

// splitImage splits REPO[:TAG] (no digest) into repository and tag; the
// tag defaults to latest. Errors quote s as the user typed it.
func splitImage(s string) (repo, tag string, err error) {
	if strings.Contains(s, "@") {
		return "", "", fmt.Errorf("%q has a digest; push takes REPOSITORY[:TAG] and makes the digest", s)
	}
	ref, err := events.ParseImageRef(s)
	if err == nil {
		return ref.Repository, ref.Tag, nil
	}
	if slash := strings.LastIndexByte(s, '/'); slash < 0 || strings.Contains(s[slash+1:], ":") {
		return "", "", err // s as typed is at fault
	}
	// No tag: the repository alone must be valid.
	ref, err = events.ParseImageRef(s + ":latest")
	if err == nil {
		return ref.Repository, "latest", nil
	}
	return "", "", asTyped(err, s+":latest", s)
}

// asTyped rewrites an events.ParseImageRef error about parsed so that it
// quotes typed instead: the user never wrote the :latest splitImage adds.
func asTyped(err error, parsed, typed string) error {
	var fe *events.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	problem, ok := strings.CutPrefix(fe.Problem, quoteRef(parsed)+": ")
	if !ok {
		return fmt.Errorf("%q is not an image repository (HOST/PATH)", typed)
	}
	return &events.FieldError{Source: fe.Source, Field: fe.Field, Problem: quoteRef(typed) + ": " + problem}
}

// quoteRef quotes an image reference as events.ParseImageRef's errors do.
func quoteRef(s string) string {
	const maxLen = 160
	if len(s) > maxLen {
		return fmt.Sprintf("%q… (%d bytes)", s[:maxLen], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// digestRef parses IMAGE@sha256:DIGEST, the image argument of release; its
// errors are usage errors that quote s.
func digestRef(s string) (events.ImageRef, error) {
	if !strings.Contains(s, "@") {
		return events.ImageRef{}, usagef("%q has no digest; release takes IMAGE@sha256:DIGEST, as coalmine push prints it", s)
	}
	ref, err := events.ParseImageRef(s)
	if err != nil {
		return events.ImageRef{}, usagef("%v (release takes IMAGE@sha256:DIGEST)", err)
	}
	return ref, nil
}

// digestOf derives a content digest for a local image.
func digestOf(repo, tag string, img runemu.Image) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s:%s\n", repo, tag)
	for _, k := range slices.Sorted(maps.Keys(img.Env)) {
		fmt.Fprintf(h, "%s=%s\n", k, img.Env[k])
	}
	for _, c := range img.Command {
		fmt.Fprintf(h, "cmd %s\n", c)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
