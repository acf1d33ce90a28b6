// Package cloudrun is coalmine's adapter over the Cloud Run Admin API v2
// (cloud.google.com/go/run/apiv2). It reads a service into what a rollout
// needs (stable and canary revisions, the traffic split, the rollout state
// annotation) and writes traffic, template and state together: every write
// is ONE UpdateService carrying the etag and the state generation that were
// read.
package cloudrun

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"google.golang.org/api/option"

	"github.com/ai-square/coalmine/shared/emulator"
)

// EmulatorHostEnv names the environment variable that points the client at
// a local Cloud Run Admin API emulator (host:port, plaintext gRPC).
const EmulatorHostEnv = "CLOUDRUN_EMULATOR_HOST"

// Options configure a Client.
type Options struct {
	Project string
	Region  string
	// PollInterval is how often long-running operations and revision
	// readiness are polled (default 1s).
	PollInterval time.Duration
	// ClientOptions are passed to the Google clients; when empty and
	// CLOUDRUN_EMULATOR_HOST is set, the emulator is used.
	ClientOptions []option.ClientOption
}

// Client reads and writes Cloud Run services of one project and region.
type Client struct {
	services  *run.ServicesClient
	revisions *run.RevisionsClient
	project   string
	region    string
	poll      time.Duration
}

// EmulatorOptions returns client options for CLOUDRUN_EMULATOR_HOST, or nil
// when it is not set (the real API with Application Default Credentials).
func EmulatorOptions() []option.ClientOption {
	return emulator.ClientOptions(os.Getenv(EmulatorHostEnv))
}

// New connects to Cloud Run.
func New(ctx context.Context, o Options) (*Client, error) {
	if o.Project == "" || o.Region == "" {
		return nil, errors.New("cloudrun: project and region are required")
	}
	opts := o.ClientOptions
	if len(opts) == 0 {
		opts = EmulatorOptions()
	}
	svc, err := run.NewServicesClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cloudrun: services client: %w", err)
	}
	rev, err := run.NewRevisionsClient(ctx, opts...)
	if err != nil {
		svc.Close()
		return nil, fmt.Errorf("cloudrun: revisions client: %w", err)
	}
	poll := o.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	return &Client{services: svc, revisions: rev, project: o.Project, region: o.Region, poll: poll}, nil
}

// Close releases the connections.
func (c *Client) Close() error {
	return errors.Join(c.services.Close(), c.revisions.Close())
}

// ServiceName returns the full resource name of a service.
func (c *Client) ServiceName(service string) string {
	return fmt.Sprintf("projects/%s/locations/%s/services/%s", c.project, c.region, service)
}

// RevisionName returns the full resource name of a revision.
func (c *Client) RevisionName(service, revision string) string {
	return c.ServiceName(service) + "/revisions/" + shortName(revision)
}

// shortName returns the last path segment of a resource name.
func shortName(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[i+1:]
	}
	return name
}
