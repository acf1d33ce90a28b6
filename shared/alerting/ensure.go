package alerting

import (
	"context"
	"errors"
	"fmt"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/ai-square/coalmine/shared/policy"
)

// ErrConflict is wrapped by Ensure's error when a policy it would manage exists but is not
// coalmine's to change: a policy of that display name without the label managed-by =
// coalmine, one that belongs to another service, or more than one.
var ErrConflict = errors.New("alert policy conflict")

// channelDisplayName is the display name of the channels Ensure creates.
const channelDisplayName = "coalmine alerts"

// Result is what Ensure did.
type Result struct {
	// Channel is the pubsub notification channel to the topic in the project.
	Channel string
	// ChannelsCreated are the channels Ensure created (none when they existed): the
	// project's, and one in each other project that holds a service with managed alerts
	// (a policy notifies channels of its own project).
	ChannelsCreated []string
	// Created, Updated and Unchanged are the display names of the managed alert
	// policies, by what Ensure did to them.
	Created, Updated, Unchanged []string
}

// Ensure makes the project's pubsub channel to topic (projects/P/topics/T; found by type
// and labels.topic, else created) and creates or updates each service's managed alert
// policies (Policies, in the service's project) by display name, so that a second call
// changes nothing. Alerts without a condition are left alone, and so are policies of
// alerts no longer in the file (Ensure never deletes). A policy of the same display name
// that coalmine does not manage is an error wrapping ErrConflict; Ensure goes on with the
// other policies and joins the errors. opts point the clients at Google (none) or at an
// emulator.
func Ensure(ctx context.Context, opts []option.ClientOption, project, topic string, pol *policy.Policy, t Timing) (Result, error) {
	var res Result
	nc, err := monitoring.NewNotificationChannelClient(ctx, opts...)
	if err != nil {
		return res, fmt.Errorf("alerting: notification channel client: %w", err)
	}
	defer nc.Close()
	ap, err := monitoring.NewAlertPolicyClient(ctx, opts...)
	if err != nil {
		return res, fmt.Errorf("alerting: alert policy client: %w", err)
	}
	defer ap.Close()

	channels := map[string]string{} // project → channel
	channelOf := func(project string) (string, error) {
		if ch, ok := channels[project]; ok {
			return ch, nil
		}
		ch, created, err := ensureChannel(ctx, nc, project, topic)
		if err != nil {
			return "", err
		}
		if created {
			res.ChannelsCreated = append(res.ChannelsCreated, ch)
		}
		channels[project] = ch
		return ch, nil
	}
	if res.Channel, err = channelOf(project); err != nil {
		return res, err
	}

	existing := map[string][]*monitoringpb.AlertPolicy{} // project → its policies
	var errs []error
	for i := range pol.Services {
		svc := &pol.Services[i]
		in := svc.Project
		if in == "" {
			in = project
		}
		if len(Policies(svc, "", t)) == 0 {
			continue
		}
		ch, err := channelOf(in)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, ok := existing[in]; !ok {
			ps, err := listPolicies(ctx, ap, in)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			existing[in] = ps
		}
		for _, want := range Policies(svc, ch, t) {
			made, did, err := ensurePolicy(ctx, ap, in, svc.Name, want, existing[in])
			switch did {
			case created:
				res.Created = append(res.Created, want.GetDisplayName())
				existing[in] = append(existing[in], made) // a later service may not reuse its name
			case updated:
				res.Updated = append(res.Updated, want.GetDisplayName())
			case unchanged:
				res.Unchanged = append(res.Unchanged, want.GetDisplayName())
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("alerting: service %s, alert %q: %w", svc.Name, want.GetDisplayName(), err))
			}
		}
	}
	return res, errors.Join(errs...)
}

// ensureChannel finds the project's pubsub channel to topic, or creates it.
func ensureChannel(ctx context.Context, nc *monitoring.NotificationChannelClient, project, topic string) (name string, created bool, err error) {
	it := nc.ListNotificationChannels(ctx, &monitoringpb.ListNotificationChannelsRequest{Name: "projects/" + project})
	for {
		ch, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return "", false, fmt.Errorf("alerting: list notification channels of %s: %w", project, err)
		}
		if ch.GetType() == "pubsub" && ch.GetLabels()["topic"] == topic {
			return ch.GetName(), false, nil
		}
	}
	ch, err := nc.CreateNotificationChannel(ctx, &monitoringpb.CreateNotificationChannelRequest{
		Name: "projects/" + project,
		NotificationChannel: &monitoringpb.NotificationChannel{
			Type:        "pubsub",
			DisplayName: channelDisplayName,
			Description: "Cloud Monitoring incidents for coalmine's Alert function.",
			Labels:      map[string]string{"topic": topic},
			UserLabels:  map[string]string{LabelManagedBy: ManagedBy},
		},
	})
	if err != nil {
		return "", false, fmt.Errorf("alerting: create the pubsub notification channel to %s in %s: %w", topic, project, err)
	}
	return ch.GetName(), true, nil
}

// listPolicies lists every alert policy of project.
func listPolicies(ctx context.Context, ap *monitoring.AlertPolicyClient, project string) ([]*monitoringpb.AlertPolicy, error) {
	var out []*monitoringpb.AlertPolicy
	it := ap.ListAlertPolicies(ctx, &monitoringpb.ListAlertPoliciesRequest{Name: "projects/" + project})
	for {
		p, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("alerting: list alert policies of %s: %w", project, err)
		}
		out = append(out, p)
	}
}

// outcome is what ensurePolicy did.
type outcome int

const (
	failed outcome = iota
	created
	updated
	unchanged
)

// ensurePolicy creates want in project (and returns the created policy), or updates the
// policy of the same display name among existing when it differs.
func ensurePolicy(ctx context.Context, ap *monitoring.AlertPolicyClient, project, service string, want *monitoringpb.AlertPolicy, existing []*monitoringpb.AlertPolicy) (*monitoringpb.AlertPolicy, outcome, error) {
	var same []*monitoringpb.AlertPolicy
	for _, p := range existing {
		if p.GetDisplayName() == want.GetDisplayName() {
			same = append(same, p)
		}
	}
	switch {
	case len(same) == 0:
		p, err := ap.CreateAlertPolicy(ctx, &monitoringpb.CreateAlertPolicyRequest{Name: "projects/" + project, AlertPolicy: want})
		if err != nil {
			return nil, failed, fmt.Errorf("create: %w", err)
		}
		return p, created, nil
	case len(same) > 1:
		return nil, failed, fmt.Errorf("%w: %d policies in %s have this display name", ErrConflict, len(same), project)
	}
	got := same[0]
	switch labels := got.GetUserLabels(); {
	case labels[LabelManagedBy] != ManagedBy:
		return nil, failed, fmt.Errorf("%w: %s has this display name but is not managed by coalmine (user label %s=%s): rename the alert or delete that policy", ErrConflict, got.GetName(), LabelManagedBy, ManagedBy)
	case labels[LabelService] != service:
		return nil, failed, fmt.Errorf("%w: %s has this display name and watches service %q", ErrConflict, got.GetName(), labels[LabelService])
	}
	if proto.Equal(withoutServerFields(got), want) {
		return nil, unchanged, nil
	}
	upd := proto.Clone(want).(*monitoringpb.AlertPolicy)
	upd.Name = got.GetName()
	// Conditions keep their ids in order, as Google advises for small changes; a changed
	// condition still cancels its open incident.
	for i, c := range upd.GetConditions() {
		if i < len(got.GetConditions()) {
			c.Name = got.GetConditions()[i].GetName()
		}
	}
	if _, err := ap.UpdateAlertPolicy(ctx, &monitoringpb.UpdateAlertPolicyRequest{AlertPolicy: upd}); err != nil {
		return nil, failed, fmt.Errorf("update %s: %w", got.GetName(), err)
	}
	return nil, updated, nil
}

// withoutServerFields returns p without what the server assigns (names, records, validity), to be
// compared with a policy from Policies.
func withoutServerFields(p *monitoringpb.AlertPolicy) *monitoringpb.AlertPolicy {
	c := proto.Clone(p).(*monitoringpb.AlertPolicy)
	c.Name, c.CreationRecord, c.MutationRecord, c.Validity = "", nil, nil, nil
	for _, cond := range c.GetConditions() {
		cond.Name = ""
	}
	return c
}
