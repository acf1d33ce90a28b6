package cloudrun

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"

	"github.com/ai-square/coalmine/shared/rollout"
)

// Service is a Cloud Run service as a rollout sees it. It keeps what was
// read (etag, state generation) so that the next write can check that
// nothing changed in between.
type Service struct {
	// Name is the service ID; FullName its resource name.
	Name     string
	FullName string
	URI      string
	Etag     string
	// State is the rollout state from the coalmine.dev/rollout annotation
	// (the zero State when coalmine never wrote one).
	State rollout.State
	// Serving is the revision serving 100% of the traffic as Cloud Run
	// reports it, "" when traffic is split.
	Serving string
	// Split is the traffic Cloud Run is actually serving (TrafficStatuses),
	// with short revision names.
	Split []Split
	// LatestReady and LatestCreated are short revision names.
	LatestReady   string
	LatestCreated string
	// Reconciling is true while Cloud Run applies a change.
	Reconciling bool
	// Image is the image of the template's container.
	Image string

	raw *runpb.Service
}

// Split is one entry of the traffic Cloud Run serves.
type Split struct {
	Revision string
	Percent  int
	Tag      string
	URI      string
}

// Stable is the revision coalmine treats as stable: the state's, or the
// one serving all traffic when coalmine has no state yet.
func (s *Service) Stable() string {
	if s.State.Stable != "" {
		return s.State.Stable
	}
	return s.Serving
}

// Canary is the current rollout's canary revision, if any.
func (s *Service) Canary() string {
	if s.State.Rollout == nil {
		return ""
	}
	return s.State.Rollout.Canary
}

// TagURI returns the URL of a traffic tag ("" if the tag is not served).
func (s *Service) TagURI(tag string) string {
	for _, sp := range s.Split {
		if sp.Tag == tag {
			return sp.URI
		}
	}
	return ""
}

// Percent returns the share of traffic a revision is served.
func (s *Service) Percent(revision string) int {
	n := 0
	for _, sp := range s.Split {
		if sp.Revision == revision {
			n += sp.Percent
		}
	}
	return n
}

// ServesState reports whether Cloud Run serves the split the rollout
// state describes: every revision the state gives traffic has that share
// in the traffic Cloud Run reports.
func (s *Service) ServesState() bool {
	for _, t := range s.State.Traffic() {
		if s.Percent(t.Revision) != t.Percent {
			return false
		}
	}
	return true
}

// ChangedOutside says how the traffic Cloud Run is configured with (the
// service's traffic targets, not what it serves yet) differs from the split
// the rollout state describes, or "" when it does not (or the state
// describes none). coalmine writes its split and its state in one update,
// so a difference means someone else changed the traffic: a `gcloud run
// deploy` (100% to the latest revision), a console edit, Terraform. Only
// the shares count; targets at 0% and their tags are not compared.
func (s *Service) ChangedOutside() string {
	want := map[string]int{}
	for _, t := range s.State.Traffic() {
		if t.Percent > 0 {
			want[t.Revision] += t.Percent
		}
	}
	if len(want) == 0 {
		return ""
	}
	got := s.configured()
	if maps.Equal(got, want) {
		return ""
	}
	return fmt.Sprintf("its traffic is %s, not the %s coalmine wrote", splitText(got), splitText(want))
}

// configured is the traffic the service is configured with, by revision,
// for the shares above 0%. A LATEST target counts as the latest ready
// revision when that is also the latest created (nothing new is coming);
// otherwise as "LATEST", which no split of coalmine's matches.
func (s *Service) configured() map[string]int {
	latest := "LATEST"
	if s.LatestReady != "" && s.LatestReady == s.LatestCreated {
		latest = s.LatestReady
	}
	got := map[string]int{}
	for _, t := range s.raw.GetTraffic() {
		if t.GetPercent() == 0 {
			continue
		}
		rev := shortName(t.GetRevision())
		if t.GetType() == runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST || rev == "" {
			rev = latest
		}
		got[rev] += int(t.GetPercent())
	}
	if len(s.raw.GetTraffic()) == 0 {
		got[latest] = 100 // Cloud Run's default for a service without traffic targets
	}
	return got
}

// ConfiguredPercent is the share of traffic the service is configured to
// give revision (its traffic targets, which Cloud Run may still be
// applying).
func (s *Service) ConfiguredPercent(revision string) int {
	return s.configured()[revision]
}

func splitText(m map[string]int) string {
	var parts []string
	for _, rev := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d%%", rev, m[rev]))
	}
	return strings.Join(parts, ", ")
}

// Template returns a copy of the service's revision template.
func (s *Service) Template() *runpb.RevisionTemplate {
	return proto.Clone(s.raw.GetTemplate()).(*runpb.RevisionTemplate)
}

// Read gets a service and decodes its rollout state.
func (c *Client) Read(ctx context.Context, service string) (*Service, error) {
	raw, err := c.services.GetService(ctx, &runpb.GetServiceRequest{Name: c.ServiceName(service)})
	if err != nil {
		return nil, classify("read service "+service, err)
	}
	return fromProto(raw)
}

func fromProto(raw *runpb.Service) (*Service, error) {
	st, err := rollout.Decode(raw.GetAnnotations()[rollout.AnnotationKey])
	if err != nil {
		return nil, fmt.Errorf("service %s: %w: %w", shortName(raw.GetName()), ErrState, err)
	}
	s := &Service{
		Name:          shortName(raw.GetName()),
		FullName:      raw.GetName(),
		URI:           raw.GetUri(),
		Etag:          raw.GetEtag(),
		State:         st,
		LatestReady:   shortName(raw.GetLatestReadyRevision()),
		LatestCreated: shortName(raw.GetLatestCreatedRevision()),
		Reconciling:   raw.GetReconciling(),
		raw:           raw,
	}
	if cs := raw.GetTemplate().GetContainers(); len(cs) > 0 {
		s.Image = cs[0].GetImage()
	}
	per := map[string]int{}
	for _, ts := range raw.GetTrafficStatuses() {
		rev := shortName(ts.GetRevision())
		if ts.GetType() == runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST || rev == "" {
			rev = s.LatestReady
		}
		s.Split = append(s.Split, Split{Revision: rev, Percent: int(ts.GetPercent()), Tag: ts.GetTag(), URI: ts.GetUri()})
		per[rev] += int(ts.GetPercent())
	}
	for rev, p := range per {
		if p == 100 {
			s.Serving = rev
		}
	}
	sort.SliceStable(s.Split, func(i, j int) bool { return s.Split[i].Percent > s.Split[j].Percent })
	return s, nil
}
