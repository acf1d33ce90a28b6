package monitoringemu_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ai-square/coalmine/infra/local/monitoringemu"
)

func TestNotificationChannelCRUD(t *testing.T) {
	e := newAlertEnv(t, monitoringemu.Options{}, false)
	ctx := context.Background()

	it := e.nc.ListNotificationChannelDescriptors(ctx, &monitoringpb.ListNotificationChannelDescriptorsRequest{Name: "projects/" + project})
	d, err := it.Next()
	if err != nil {
		t.Fatalf("ListNotificationChannelDescriptors: %v", err)
	}
	if d.GetType() != "pubsub" || len(d.GetLabels()) != 1 || d.GetLabels()[0].GetKey() != "topic" {
		t.Errorf("descriptor: got type %q labels %v, want pubsub with label topic", d.GetType(), d.GetLabels())
	}
	if _, err := it.Next(); !errors.Is(err, iterator.Done) {
		t.Errorf("descriptors: got more than the pubsub one (%v)", err)
	}
	if got, err := e.nc.GetNotificationChannelDescriptor(ctx, &monitoringpb.GetNotificationChannelDescriptorRequest{Name: "projects/" + project + "/notificationChannelDescriptors/pubsub"}); err != nil || got.GetType() != "pubsub" {
		t.Errorf("GetNotificationChannelDescriptor(pubsub): got %v, %v", got, err)
	}
	if _, err := e.nc.GetNotificationChannelDescriptor(ctx, &monitoringpb.GetNotificationChannelDescriptorRequest{Name: "projects/" + project + "/notificationChannelDescriptors/email"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetNotificationChannelDescriptor(email): got %v, want NOT_FOUND", err)
	}

	// newAlertEnv created one channel; add two more, one disabled.
	ch, err := e.nc.GetNotificationChannel(ctx, &monitoringpb.GetNotificationChannelRequest{Name: e.channel})
	if err != nil {
		t.Fatalf("GetNotificationChannel: %v", err)
	}
	if !strings.HasPrefix(ch.GetName(), "projects/"+project+"/notificationChannels/") || !ch.GetEnabled().GetValue() || !ch.GetCreationRecord().GetMutateTime().AsTime().Equal(t0) {
		t.Errorf("created channel: got name %q enabled %v created %v; want a server-assigned name, enabled by default, created at t0", ch.GetName(), ch.GetEnabled(), ch.GetCreationRecord())
	}
	for _, enabled := range []bool{true, false} {
		if _, err := e.nc.CreateNotificationChannel(ctx, &monitoringpb.CreateNotificationChannelRequest{Name: "projects/" + project,
			NotificationChannel: &monitoringpb.NotificationChannel{Type: "pubsub", Labels: map[string]string{"topic": "projects/other/topics/t"},
				UserLabels: map[string]string{"managed-by": "coalmine"}, Enabled: wrapperspb.Bool(enabled)}}); err != nil {
			t.Fatalf("CreateNotificationChannel: %v", err)
		}
	}
	list := func(filter string, pageSize int32) []*monitoringpb.NotificationChannel {
		t.Helper()
		it := e.nc.ListNotificationChannels(ctx, &monitoringpb.ListNotificationChannelsRequest{Name: "projects/" + project, Filter: filter, PageSize: pageSize})
		var out []*monitoringpb.NotificationChannel
		for {
			c, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return out
			}
			if err != nil {
				t.Fatalf("ListNotificationChannels(%q): %v", filter, err)
			}
			out = append(out, c)
		}
	}
	if got := list("", 1); len(got) != 3 || got[0].GetName() != e.channel {
		t.Errorf("list in pages of 1: got %d channels, want 3, the first %s", len(got), e.channel)
	}
	if got := list(`type = "pubsub" AND labels.topic = "projects/other/topics/t" AND user_labels.managed-by = "coalmine"`, 0); len(got) != 2 {
		t.Errorf("filtered list: got %d channels, want 2", len(got))
	}
	if got := list(`labels.topic = "`+alertTopic+`"`, 0); len(got) != 1 || got[0].GetName() != e.channel {
		t.Errorf("list by topic: got %v, want the env's channel", got)
	}
	// Other projects see none.
	it2 := e.nc.ListNotificationChannels(ctx, &monitoringpb.ListNotificationChannelsRequest{Name: "projects/other"})
	if _, err := it2.Next(); !errors.Is(err, iterator.Done) {
		t.Errorf("another project's list: got %v, want none", err)
	}

	upd, err := e.nc.UpdateNotificationChannel(ctx, &monitoringpb.UpdateNotificationChannelRequest{
		NotificationChannel: &monitoringpb.NotificationChannel{Name: e.channel, DisplayName: "renamed", Labels: map[string]string{"topic": "projects/p/topics/x"}},
		UpdateMask:          &fieldmaskpb.FieldMask{Paths: []string{"display_name"}},
	})
	if err != nil {
		t.Fatalf("UpdateNotificationChannel: %v", err)
	}
	if upd.GetDisplayName() != "renamed" || upd.GetLabels()["topic"] != alertTopic || len(upd.GetMutationRecords()) != 2 {
		t.Errorf("masked update: got display name %q topic %q, %d mutation records; want renamed, the topic kept, 2 records", upd.GetDisplayName(), upd.GetLabels()["topic"], len(upd.GetMutationRecords()))
	}

	// A channel in use is not deleted without force; with force the policy loses it.
	p := e.create(t, e.policyOf("uses the channel", ratioCondition(time.Minute, 0.05, 0, 0)))
	if err := e.nc.DeleteNotificationChannel(ctx, &monitoringpb.DeleteNotificationChannelRequest{Name: e.channel}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), p.GetName()) {
		t.Errorf("delete a channel in use: got %v, want FAILED_PRECONDITION naming %s", err, p.GetName())
	}
	if err := e.nc.DeleteNotificationChannel(ctx, &monitoringpb.DeleteNotificationChannelRequest{Name: e.channel, Force: true}); err != nil {
		t.Fatalf("forced delete: %v", err)
	}
	if got, err := e.ap.GetAlertPolicy(ctx, &monitoringpb.GetAlertPolicyRequest{Name: p.GetName()}); err != nil || len(got.GetNotificationChannels()) != 0 {
		t.Errorf("policy after the forced delete of its channel: got %v, %v; want no channels", got.GetNotificationChannels(), err)
	}
	if _, err := e.nc.GetNotificationChannel(ctx, &monitoringpb.GetNotificationChannelRequest{Name: e.channel}); status.Code(err) != codes.NotFound {
		t.Errorf("get a deleted channel: got %v, want NOT_FOUND", err)
	}
	if err := e.nc.SendNotificationChannelVerificationCode(ctx, &monitoringpb.SendNotificationChannelVerificationCodeRequest{Name: e.channel}); status.Code(err) != codes.Unimplemented {
		t.Errorf("SendNotificationChannelVerificationCode: got %v, want UNIMPLEMENTED", err)
	}
}

func TestNotificationChannelInvalidArgument(t *testing.T) {
	e := newAlertEnv(t, monitoringemu.Options{}, false)
	ctx := context.Background()
	pubsub := func(labels map[string]string) *monitoringpb.NotificationChannel {
		return &monitoringpb.NotificationChannel{Type: "pubsub", Labels: labels}
	}
	topic := map[string]string{"topic": alertTopic}
	tests := []struct {
		name   string
		parent string
		ch     *monitoringpb.NotificationChannel
		want   string // in the message
	}{
		{"no channel", "projects/" + project, nil, "notification_channel"},
		{"email", "projects/" + project, &monitoringpb.NotificationChannel{Type: "email", Labels: map[string]string{"email_address": "a@b.c"}}, `"email"`},
		{"no type", "projects/" + project, &monitoringpb.NotificationChannel{Labels: topic}, "type"},
		{"no topic", "projects/" + project, pubsub(nil), "labels.topic"},
		{"topic id only", "projects/" + project, pubsub(map[string]string{"topic": "coalmine-alerts"}), "labels.topic"},
		{"topic of a subscription", "projects/" + project, pubsub(map[string]string{"topic": "projects/p/subscriptions/s"}), "labels.topic"},
		{"unknown label", "projects/" + project, pubsub(map[string]string{"topic": alertTopic, "channel": "x"}), `"channel"`},
		{"user label key", "projects/" + project, &monitoringpb.NotificationChannel{Type: "pubsub", Labels: topic, UserLabels: map[string]string{"Team": "a"}}, "user_labels"},
		{"user label value", "projects/" + project, &monitoringpb.NotificationChannel{Type: "pubsub", Labels: topic, UserLabels: map[string]string{"team": "A B"}}, "user_labels"},
		{"bad parent", "my-project", pubsub(topic), "projects/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.nc.CreateNotificationChannel(ctx, &monitoringpb.CreateNotificationChannelRequest{Name: tt.parent, NotificationChannel: tt.ch})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, %v; want INVALID_ARGUMENT", got, err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.want) {
				t.Errorf("message %q does not name %q", msg, tt.want)
			}
		})
	}
	// Updates are validated too.
	_, err := e.nc.UpdateNotificationChannel(ctx, &monitoringpb.UpdateNotificationChannelRequest{
		NotificationChannel: &monitoringpb.NotificationChannel{Name: e.channel, Labels: map[string]string{}},
		UpdateMask:          &fieldmaskpb.FieldMask{Paths: []string{"labels.topic"}},
	})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "labels.topic") {
		t.Errorf("update removing the topic: got %v, want INVALID_ARGUMENT naming labels.topic", err)
	}
	_, err = e.nc.UpdateNotificationChannel(ctx, &monitoringpb.UpdateNotificationChannelRequest{
		NotificationChannel: &monitoringpb.NotificationChannel{Name: e.channel},
		UpdateMask:          &fieldmaskpb.FieldMask{Paths: []string{"verification_status"}},
	})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "verification_status") {
		t.Errorf("update of an unsupported path: got %v, want INVALID_ARGUMENT naming it", err)
	}
	it := e.nc.ListNotificationChannels(ctx, &monitoringpb.ListNotificationChannelsRequest{Name: "projects/" + project, Filter: `type != "pubsub"`})
	if _, err := it.Next(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "!=") {
		t.Errorf("list filter with !=: got %v, want INVALID_ARGUMENT naming !=", err)
	}
}
