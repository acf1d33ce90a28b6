package cloud

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/scheduleremu"
	"github.com/ai-square/coalmine/shared/schedule"
)

// Schedules of the local cloud's Scheduler jobs.
const (
	// SweepSchedule is the sweep job's schedule with Google's timing: every 10 minutes.
	SweepSchedule = events.SweepSchedule
	// FastTickSchedule and FastSweepSchedule are the schedules in fast mode (seconds).
	FastTickSchedule  = "*/2 * * * * *"
	FastSweepSchedule = "*/30 * * * * *"
)

// publishTo publishes to a topic named projects/P/topics/T of this cloud's project, as
// Cloud Scheduler and Cloud Monitoring do for their Pub/Sub targets and channels.
func (c *Cloud) publishTo(ctx context.Context, topic string, data []byte, attrs map[string]string) (string, error) {
	project, id, ok := strings.Cut(strings.TrimPrefix(topic, "projects/"), "/topics/")
	if !ok || !strings.HasPrefix(topic, "projects/") || id == "" {
		return "", status.Errorf(codes.InvalidArgument, "topic %q is not projects/PROJECT/topics/TOPIC", topic)
	}
	if project != c.Project {
		return "", status.Errorf(codes.NotFound, "topic %s: the local Pub/Sub holds project %s's topics", topic, c.Project)
	}
	return c.Bus.Publish(ctx, id, data, attrs)
}

// startScheduler starts Cloud Scheduler, the client the functions keep their tick jobs
// with, and the sweep job.
func (c *Cloud) startScheduler(ctx context.Context, cfg Config) error {
	var err error
	c.Scheduler, err = scheduleremu.New(scheduleremu.Options{
		Listen: cfg.Listen + ":0", Fast: cfg.Fast, Manual: cfg.SchedulerManual, Now: cfg.SchedulerNow,
		Publish: c.publishTo, Logger: c.log.With("component", "scheduler"),
	})
	if err != nil {
		return fmt.Errorf("local cloud: scheduler: %w", err)
	}
	c.closers = append(c.closers, c.Scheduler.Close)
	c.Schedules, err = schedule.New(ctx, schedule.Options{Project: c.Project, Location: c.Region, ClientOptions: c.Scheduler.ClientOptions()})
	if err != nil {
		return fmt.Errorf("local cloud: scheduler client: %w", err)
	}
	c.closers = append(c.closers, c.Schedules.Close)
	sweep := cfg.SweepSchedule
	if sweep == "" {
		sweep = SweepSchedule
		if cfg.Fast {
			sweep = FastSweepSchedule
		}
	}
	if err := c.Schedules.EnsureSweep(ctx, sweep); err != nil {
		return fmt.Errorf("local cloud: sweep job: %w", err)
	}
	c.SweepSchedule = sweep
	return nil
}
