package monitoringemu

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/genproto/googleapis/api"
	"google.golang.org/genproto/googleapis/api/label"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ChannelTypePubSub is the only notification channel type the server serves: its label
// "topic" names the Pub/Sub topic (projects/P/topics/T) that receives the notifications.
const ChannelTypePubSub = "pubsub"

// mutatedBy is who the server writes in creation and mutation records.
const mutatedBy = "monitoringemu@localhost"

// maxListPage is the largest page of policies or channels a list returns.
const maxListPage = 1000

// channelAPI serves google.monitoring.v3.NotificationChannelService for a Server. The
// verification-code RPCs are UNIMPLEMENTED (a pubsub channel needs no verification).
type channelAPI struct {
	monitoringpb.UnimplementedNotificationChannelServiceServer
	*Server
}

// pubsubDescriptor is the descriptor of the pubsub channel type, named in project.
func pubsubDescriptor(project string) *monitoringpb.NotificationChannelDescriptor {
	return &monitoringpb.NotificationChannelDescriptor{
		Name:        "projects/" + project + "/notificationChannelDescriptors/" + ChannelTypePubSub,
		Type:        ChannelTypePubSub,
		DisplayName: "Pub/Sub",
		Description: "Publishes each incident notification (schema 1.2 JSON) on a Pub/Sub topic.",
		Labels: []*label.LabelDescriptor{{
			Key: "topic", ValueType: label.LabelDescriptor_STRING,
			Description: "The topic that receives the notifications: projects/PROJECT_ID/topics/TOPIC_ID.",
		}},
		LaunchStage: api.LaunchStage_GA,
	}
}

// ListNotificationChannelDescriptors lists the pubsub descriptor.
func (s channelAPI) ListNotificationChannelDescriptors(ctx context.Context, req *monitoringpb.ListNotificationChannelDescriptorsRequest) (*monitoringpb.ListNotificationChannelDescriptorsResponse, error) {
	project, err := projectOf(req.GetName())
	if err != nil {
		return nil, err
	}
	if req.GetPageToken() != "" {
		return nil, invalid("page_token: this emulator returns every descriptor in one page")
	}
	return &monitoringpb.ListNotificationChannelDescriptorsResponse{
		ChannelDescriptors: []*monitoringpb.NotificationChannelDescriptor{pubsubDescriptor(project)},
	}, nil
}

// GetNotificationChannelDescriptor returns projects/P/notificationChannelDescriptors/pubsub.
func (s channelAPI) GetNotificationChannelDescriptor(ctx context.Context, req *monitoringpb.GetNotificationChannelDescriptorRequest) (*monitoringpb.NotificationChannelDescriptor, error) {
	project, typ, ok := strings.Cut(strings.TrimPrefix(req.GetName(), "projects/"), "/notificationChannelDescriptors/")
	if !strings.HasPrefix(req.GetName(), "projects/") || !ok || project == "" || typ == "" {
		return nil, invalid("name %q: want projects/PROJECT_ID/notificationChannelDescriptors/TYPE", req.GetName())
	}
	if typ != ChannelTypePubSub {
		return nil, status.Errorf(codes.NotFound, "notification channel descriptor %s not found (this emulator serves %q)", req.GetName(), ChannelTypePubSub)
	}
	return pubsubDescriptor(project), nil
}

// channelProject parses projects/P/notificationChannels/ID and returns P.
func channelProject(name string) (string, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[1] == "" || parts[2] != "notificationChannels" || parts[3] == "" {
		return "", invalid("name %q: want projects/PROJECT_ID/notificationChannels/CHANNEL_ID", name)
	}
	return parts[1], nil
}

// checkTopic checks a Pub/Sub topic name: projects/P/topics/T.
func checkTopic(topic string) error {
	parts := strings.Split(topic, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[1] == "" || parts[2] != "topics" || parts[3] == "" {
		return fmt.Errorf("labels.topic %q: want projects/PROJECT_ID/topics/TOPIC_ID", topic)
	}
	return nil
}

// checkChannel validates a channel to store (path prefixes the fields in errors).
func checkChannel(path string, ch *monitoringpb.NotificationChannel) error {
	if ch.GetType() != ChannelTypePubSub {
		return invalid("%s.type %q is not supported by this emulator (only %q)", path, ch.GetType(), ChannelTypePubSub)
	}
	for k := range ch.GetLabels() {
		if k != "topic" {
			return invalid("%s.labels: %q is not a label of the %s channel type (only topic)", path, k, ChannelTypePubSub)
		}
	}
	topic, ok := ch.GetLabels()["topic"]
	if !ok {
		return invalid("%s.labels.topic is required (projects/PROJECT_ID/topics/TOPIC_ID)", path)
	}
	if err := checkTopic(topic); err != nil {
		return invalid("%s.%v", path, err)
	}
	if n := len([]rune(ch.GetDisplayName())); n > 512 {
		return invalid("%s.display_name: %d characters, at most 512", path, n)
	}
	if n := len([]rune(ch.GetDescription())); n > 1024 {
		return invalid("%s.description: %d characters, at most 1024", path, n)
	}
	return checkUserLabels(path+".user_labels", ch.GetUserLabels())
}

// checkUserLabels applies Google's user label rules: at most 64 entries; keys and values
// at most 63 characters of lowercase letters, digits, '_' and '-'; keys start with a
// lowercase letter.
func checkUserLabels(path string, m map[string]string) error {
	if len(m) > 64 {
		return invalid("%s: %d entries, at most 64", path, len(m))
	}
	ok := func(s string) bool {
		for _, r := range s {
			if !(unicode.IsLower(r) || unicode.IsDigit(r) || r == '_' || r == '-') {
				return false
			}
		}
		return len([]rune(s)) <= 63
	}
	for k, v := range m {
		first, _ := utf8.DecodeRuneInString(k)
		if k == "" || !unicode.IsLower(first) || !ok(k) {
			return invalid("%s: key %q must start with a lowercase letter and hold at most 63 lowercase letters, digits, '_' or '-'", path, k)
		}
		if !ok(v) {
			return invalid("%s.%s: value %q must hold at most 63 lowercase letters, digits, '_' or '-'", path, k, v)
		}
	}
	return nil
}

// record is a creation or mutation record at the server's clock.
func (s *Server) record() *monitoringpb.MutationRecord {
	return &monitoringpb.MutationRecord{MutateTime: timestamppb.New(s.now()), MutatedBy: mutatedBy}
}

// CreateNotificationChannel stores a pubsub channel under a server-assigned name; enabled
// defaults to true.
func (s channelAPI) CreateNotificationChannel(ctx context.Context, req *monitoringpb.CreateNotificationChannelRequest) (*monitoringpb.NotificationChannel, error) {
	project, err := projectOf(req.GetName())
	if err != nil {
		return nil, err
	}
	if req.GetNotificationChannel() == nil {
		return nil, invalid("notification_channel is required")
	}
	ch := proto.Clone(req.GetNotificationChannel()).(*monitoringpb.NotificationChannel)
	if err := checkChannel("notification_channel", ch); err != nil {
		return nil, err
	}
	if ch.Enabled == nil {
		ch.Enabled = wrapperspb.Bool(true)
	}
	ch.VerificationStatus = monitoringpb.NotificationChannel_VERIFICATION_STATUS_UNSPECIFIED
	ch.CreationRecord = s.record()
	ch.MutationRecords = []*monitoringpb.MutationRecord{ch.CreationRecord}
	a := s.alerts
	a.mu.Lock()
	defer a.mu.Unlock()
	ch.Name = "projects/" + project + "/notificationChannels/" + a.newID(func(id string) bool {
		return a.channels["projects/"+project+"/notificationChannels/"+id] != nil
	})
	a.channels[ch.Name] = ch
	a.channelOrder = append(a.channelOrder, ch.Name)
	return proto.Clone(ch).(*monitoringpb.NotificationChannel), nil
}

// GetNotificationChannel returns a channel or NOT_FOUND.
func (s channelAPI) GetNotificationChannel(ctx context.Context, req *monitoringpb.GetNotificationChannelRequest) (*monitoringpb.NotificationChannel, error) {
	if _, err := channelProject(req.GetName()); err != nil {
		return nil, err
	}
	a := s.alerts
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := a.channels[req.GetName()]
	if ch == nil {
		return nil, status.Errorf(codes.NotFound, "notification channel %s not found", req.GetName())
	}
	return proto.Clone(ch).(*monitoringpb.NotificationChannel), nil
}

// channelField reports whether a channel list filter may name f.
func channelField(f string) bool {
	_, label := labelField(f, "labels", "label")
	_, user := labelField(f, "user_labels", "user_label")
	return f == "type" || f == "display_name" || label || user
}

// channelValue reads a filter field of ch.
func channelValue(ch *monitoringpb.NotificationChannel) func(string) (string, bool) {
	return func(f string) (string, bool) {
		switch f {
		case "type":
			return ch.GetType(), true
		case "display_name":
			return ch.GetDisplayName(), true
		}
		if k, ok := labelField(f, "labels", "label"); ok {
			v, ok := ch.GetLabels()[k]
			return v, ok
		}
		if k, ok := labelField(f, "user_labels", "user_label"); ok {
			v, ok := ch.GetUserLabels()[k]
			return v, ok
		}
		return "", false
	}
}

// ListNotificationChannels lists a project's channels in creation order. Filters: type,
// display_name, labels.KEY and user_labels.KEY compared with = and joined by AND.
func (s channelAPI) ListNotificationChannels(ctx context.Context, req *monitoringpb.ListNotificationChannelsRequest) (*monitoringpb.ListNotificationChannelsResponse, error) {
	project, err := projectOf(req.GetName())
	if err != nil {
		return nil, err
	}
	cs, err := parseListFilter(req.GetFilter(), channelField, "type, display_name, labels.KEY and user_labels.KEY")
	if err != nil {
		return nil, err
	}
	if req.GetOrderBy() != "" {
		return nil, invalid("order_by %q is not supported by this emulator (channels come in creation order)", req.GetOrderBy())
	}
	a := s.alerts
	a.mu.Lock()
	var all []*monitoringpb.NotificationChannel
	for _, name := range a.channelOrder {
		ch := a.channels[name]
		if p, _ := channelProject(name); p == project && matchList(cs, channelValue(ch)) {
			all = append(all, proto.Clone(ch).(*monitoringpb.NotificationChannel))
		}
	}
	a.mu.Unlock()
	start, end, next, err := listPage(len(all), req.GetPageSize(), req.GetPageToken(), listFingerprint("channels", req.GetName(), req.GetFilter()), maxListPage)
	if err != nil {
		return nil, err
	}
	return &monitoringpb.ListNotificationChannelsResponse{
		NotificationChannels: all[start:end], NextPageToken: next, TotalSize: int32(len(all)),
	}, nil
}

// UpdateNotificationChannel changes the fields an update mask names (display_name,
// description, labels, labels.topic, user_labels, user_labels.KEY, enabled), or every
// mutable field when the mask is empty. The type cannot change.
func (s channelAPI) UpdateNotificationChannel(ctx context.Context, req *monitoringpb.UpdateNotificationChannelRequest) (*monitoringpb.NotificationChannel, error) {
	in := req.GetNotificationChannel()
	if in == nil {
		return nil, invalid("notification_channel is required")
	}
	if _, err := channelProject(in.GetName()); err != nil {
		return nil, invalid("notification_channel.%s", status.Convert(err).Message())
	}
	a := s.alerts
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.channels[in.GetName()]
	if old == nil {
		return nil, status.Errorf(codes.NotFound, "notification channel %s not found", in.GetName())
	}
	ch := proto.Clone(old).(*monitoringpb.NotificationChannel)
	if err := applyChannelMask(ch, in, req.GetUpdateMask()); err != nil {
		return nil, err
	}
	if err := checkChannel("notification_channel", ch); err != nil {
		return nil, err
	}
	if ch.Enabled == nil {
		ch.Enabled = wrapperspb.Bool(true)
	}
	ch.MutationRecords = append(ch.MutationRecords, s.record())
	a.channels[ch.Name] = ch
	return proto.Clone(ch).(*monitoringpb.NotificationChannel), nil
}

// applyChannelMask copies the masked fields of in into ch (all mutable fields for an
// empty mask).
func applyChannelMask(ch, in *monitoringpb.NotificationChannel, mask *fieldmaskpb.FieldMask) error {
	if in.GetType() != "" && in.GetType() != ch.GetType() {
		return invalid("notification_channel.type cannot change (%q to %q)", ch.GetType(), in.GetType())
	}
	paths := mask.GetPaths()
	if len(paths) == 0 {
		paths = []string{"display_name", "description", "labels", "user_labels", "enabled"}
	}
	for _, p := range paths {
		switch p {
		case "display_name":
			ch.DisplayName = in.GetDisplayName()
		case "description":
			ch.Description = in.GetDescription()
		case "labels":
			ch.Labels = copyLabels(in.GetLabels())
		case "user_labels":
			ch.UserLabels = copyLabels(in.GetUserLabels())
		case "enabled":
			ch.Enabled = in.GetEnabled()
		case "type":
		default:
			k, label := labelField(p, "labels")
			uk, user := labelField(p, "user_labels", "user_label")
			switch {
			case label:
				ch.Labels = setLabel(ch.Labels, k, in.GetLabels())
			case user:
				ch.UserLabels = setLabel(ch.UserLabels, uk, in.GetUserLabels())
			default:
				return invalid("update_mask: path %q is not supported for notification channels", p)
			}
		}
	}
	return nil
}

// setLabel sets m[k] to from[k], or deletes it when from has no k.
func setLabel(m map[string]string, k string, from map[string]string) map[string]string {
	if v, ok := from[k]; ok {
		if m == nil {
			m = map[string]string{}
		}
		m[k] = v
	} else {
		delete(m, k)
	}
	return m
}

// DeleteNotificationChannel deletes a channel. A channel an alert policy uses is
// FAILED_PRECONDITION unless force is set; then it is removed from those policies.
func (s channelAPI) DeleteNotificationChannel(ctx context.Context, req *monitoringpb.DeleteNotificationChannelRequest) (*emptypb.Empty, error) {
	if _, err := channelProject(req.GetName()); err != nil {
		return nil, err
	}
	a := s.alerts
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.channels[req.GetName()] == nil {
		return nil, status.Errorf(codes.NotFound, "notification channel %s not found", req.GetName())
	}
	var users []string
	for _, name := range a.policyOrder {
		if slices.Contains(a.policies[name].pb.GetNotificationChannels(), req.GetName()) {
			users = append(users, name)
		}
	}
	if len(users) > 0 && !req.GetForce() {
		return nil, status.Errorf(codes.FailedPrecondition, "notification channel %s is used by alert policies %s (delete with force to remove it from them)", req.GetName(), strings.Join(users, ", "))
	}
	for _, name := range users {
		p := a.policies[name].pb
		p.NotificationChannels = slices.DeleteFunc(p.NotificationChannels, func(c string) bool { return c == req.GetName() })
	}
	delete(a.channels, req.GetName())
	a.channelOrder = slices.DeleteFunc(a.channelOrder, func(n string) bool { return n == req.GetName() })
	return &emptypb.Empty{}, nil
}
