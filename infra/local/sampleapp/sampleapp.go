// Package sampleapp is the small HTTP program that local Cloud Run revisions run.
//
// It serves on 127.0.0.1:$PORT and identifies the revision that answered every response
// with the X-Revision header (the value of $K_REVISION), so a client of the front proxy can
// tell which revision served each request. Its behaviour is steered by environment
// variables, as an image's environment would be:
//
//   - SAMPLE_ERROR_RATE: fraction (0..1) of requests answered with 500;
//   - SAMPLE_LATENCY_MS: latency added to every request;
//   - SAMPLE_FAIL_START=true: print the reason to stderr and exit 1 before listening.
//
// GET /healthz always answers 200 without latency or errors; GET / answers a short text
// naming the revision, subject to the error rate and latency. Any request but /healthz may
// add ?delay_ms=N (0..10000) of latency of its own, so that a client can give requests a
// known latency distribution (the tests of latency metrics do). It is also a miniature AI
// Square with a user-data API on Cloud Storage or PostgreSQL: see users.go.
//
// Binaries that let the Cloud Run emulator re-execute them as the sample app call
// RunIfChild first thing (test binaries from TestMain).
package sampleapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Environment variables read by the sample app.
const (
	// EnvChild set to "1" makes RunIfChild run the sample app instead of the host binary.
	EnvChild = "COALMINE_SAMPLEAPP"
	// EnvParentPID, when set, is the pid of the process that started the app; the app
	// exits when its parent changes (the starter died), so no orphan outlives it.
	EnvParentPID = "COALMINE_SAMPLEAPP_PARENT_PID"
	// EnvErrorRate is the fraction (0..1) of requests answered with status 500.
	EnvErrorRate = "SAMPLE_ERROR_RATE"
	// EnvLatencyMS is the latency in milliseconds added to every request but /healthz.
	EnvLatencyMS = "SAMPLE_LATENCY_MS"
	// EnvFailStart set to "true" makes the app exit 1 before listening.
	EnvFailStart = "SAMPLE_FAIL_START"
)

// HeaderRevision is the response header naming the revision that served the request.
const HeaderRevision = "X-Revision"

// Config is what the app serves with.
type Config struct {
	// Service and Revision name the Cloud Run service and revision ($K_SERVICE, $K_REVISION).
	Service  string
	Revision string
	// ErrorRate is the fraction (0..1) of requests answered with 500.
	ErrorRate float64
	// Latency is added to every request but /healthz.
	Latency time.Duration
	// Random returns a number in [0,1); nil uses math/rand/v2.
	Random func() float64
	// UsePostgres, DatabaseURL and UserBucket configure the user-data API
	// (see users.go).
	UsePostgres bool
	DatabaseURL string
	UserBucket  string
}

// ConfigFromEnv reads the configuration from the environment through getenv.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{Service: getenv("K_SERVICE"), Revision: getenv("K_REVISION"),
		DatabaseURL: getenv(EnvDatabaseURL), UserBucket: getenv(EnvUserBucket)}
	if cfg.UserBucket == "" {
		cfg.UserBucket = DefaultUserBucket
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv(EnvUsePostgres))); v {
	case "", "false", "0", "no":
	case "true", "1", "yes":
		cfg.UsePostgres = true
	default:
		return Config{}, fmt.Errorf("%s=%q: want true or false", EnvUsePostgres, v)
	}
	if v := strings.TrimSpace(getenv(EnvErrorRate)); v != "" {
		rate, err := strconv.ParseFloat(v, 64)
		if err != nil || rate < 0 || rate > 1 {
			return Config{}, fmt.Errorf("%s=%q: want a number between 0 and 1", EnvErrorRate, v)
		}
		cfg.ErrorRate = rate
	}
	if v := strings.TrimSpace(getenv(EnvLatencyMS)); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 0 {
			return Config{}, fmt.Errorf("%s=%q: want a non-negative whole number of milliseconds", EnvLatencyMS, v)
		}
		cfg.Latency = time.Duration(ms) * time.Millisecond
	}
	return cfg, nil
}

// New returns the app's HTTP handler.
func New(cfg Config) http.Handler {
	if cfg.Random == nil {
		cfg.Random = rand.Float64
	}
	a := &app{cfg: cfg}
	users := &userAPI{usePostgres: cfg.UsePostgres, databaseURL: cfg.DatabaseURL, bucket: cfg.UserBucket}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.Handle("GET /api/users/{email}", a.faulty(http.HandlerFunc(users.get)))
	mux.Handle("PUT /api/users/{email}", a.faulty(http.HandlerFunc(users.put)))
	mux.HandleFunc("POST "+SyncPath, users.sync)
	mux.Handle("GET /{$}", a.faulty(http.HandlerFunc(a.root)))
	mux.Handle("GET /", a.faulty(http.NotFoundHandler()))
	return a.identify(mux)
}

type app struct {
	cfg Config
}

// identify sets the revision header on every response.
func (a *app) identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderRevision, a.cfg.Revision)
		next.ServeHTTP(w, r)
	})
}

// faulty applies the configured latency and error rate.
func (a *app) faulty(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		latency := a.cfg.Latency
		if v := r.URL.Query().Get("delay_ms"); v != "" {
			ms, err := strconv.Atoi(v)
			if err != nil || ms < 0 || ms > 10000 {
				http.Error(w, fmt.Sprintf("delay_ms=%q: want milliseconds 0..10000", v), http.StatusBadRequest)
				return
			}
			latency += time.Duration(ms) * time.Millisecond
		}
		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if a.cfg.ErrorRate > 0 && a.cfg.Random() < a.cfg.ErrorRate {
			http.Error(w, "injected error (SAMPLE_ERROR_RATE)", http.StatusInternalServerError)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *app) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

func (a *app) root(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Hello from revision %s of service %s\n", a.cfg.Revision, a.cfg.Service)
}

// Main runs the app from the environment until SIGTERM or SIGINT, then exits the process.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := Run(ctx, os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

// Run serves the app configured by getenv until ctx is done and returns the exit code:
// 0 after a clean shutdown, 1 when the app cannot start (the reason is written to stderr).
func Run(ctx context.Context, getenv func(string) string, stderr io.Writer) int {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "sampleapp: "+format+"\n", args...)
		return 1
	}
	if strings.EqualFold(strings.TrimSpace(getenv(EnvFailStart)), "true") {
		return fail("refusing to start: %s=true", EnvFailStart)
	}
	cfg, err := ConfigFromEnv(getenv)
	if err != nil {
		return fail("bad configuration: %v", err)
	}
	port := getenv("PORT")
	if port == "" {
		port = "8080"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		return fail("listen on port %s: %v", port, err)
	}
	srv := &http.Server{Handler: New(cfg), ReadHeaderTimeout: 10 * time.Second}
	log.Info("sampleapp listening", "addr", ln.Addr().String(), "revision", cfg.Revision,
		"error_rate", cfg.ErrorRate, "latency", cfg.Latency.String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fail("serve: %v", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fail("shutdown: %v", err)
	}
	return 0
}

// RunIfChild runs the sample app and exits the process when the environment asks for it
// (COALMINE_SAMPLEAPP=1); otherwise it returns at once. Binaries call it first thing so
// the Cloud Run emulator can re-execute them as the sample app.
func RunIfChild() {
	if os.Getenv(EnvChild) != "1" {
		return
	}
	if v := os.Getenv(EnvParentPID); v != "" {
		if ppid, err := strconv.Atoi(v); err == nil {
			go exitWithParent(ppid)
		}
	}
	Main()
}

// exitWithParent exits when the process's parent is no longer ppid: the starter died and
// the app was re-parented, so nobody will stop it.
func exitWithParent(ppid int) {
	for {
		if os.Getppid() != ppid {
			fmt.Fprintf(os.Stderr, "sampleapp: parent %d exited, stopping\n", ppid)
			os.Exit(2)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
