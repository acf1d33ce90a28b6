package runemu

import (
	"math/rand/v2"

	"cloud.google.com/go/run/apiv2/runpb"
)

const (
	typeLatest   = runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
	typeRevision = runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
)

// defaultTraffic is what an empty Service.Traffic means: 100% to the latest ready revision.
func defaultTraffic() []*runpb.TrafficTarget {
	return []*runpb.TrafficTarget{{Type: typeLatest, Percent: 100}}
}

// buildStatuses turns validated (short-named) traffic into traffic statuses; tagURI
// returns the URL serving a tag.
func buildStatuses(traffic []*runpb.TrafficTarget, tagURI func(tag string) string) []*runpb.TrafficTargetStatus {
	out := make([]*runpb.TrafficTargetStatus, 0, len(traffic))
	for _, t := range traffic {
		st := &runpb.TrafficTargetStatus{Type: t.GetType(), Revision: t.GetRevision(), Percent: t.GetPercent(), Tag: t.GetTag()}
		if st.Tag != "" {
			st.Uri = tagURI(st.Tag)
		}
		out = append(out, st)
	}
	return out
}

// targetRevision is the revision a target points at, LATEST resolved to latestReady.
func targetRevision(typ runpb.TrafficTargetAllocationType, revision, latestReady string) string {
	if typ == typeLatest {
		return latestReady
	}
	return revision
}

// pickRevision chooses a revision for one request by the statuses' percents; roll is
// uniform in [0,100). It returns "" when no target has traffic.
func pickRevision(statuses []*runpb.TrafficTargetStatus, latestReady string, roll int) string {
	for _, st := range statuses {
		if roll < int(st.GetPercent()) {
			return targetRevision(st.GetType(), st.GetRevision(), latestReady)
		}
		roll -= int(st.GetPercent())
	}
	return ""
}

// rollPercent returns a uniform number in [0,100).
func rollPercent() int { return rand.IntN(100) }

// tagRevision is the revision serving tag, if the tag exists.
func tagRevision(statuses []*runpb.TrafficTargetStatus, latestReady, tag string) (string, bool) {
	for _, st := range statuses {
		if st.GetTag() == tag {
			return targetRevision(st.GetType(), st.GetRevision(), latestReady), true
		}
	}
	return "", false
}

// references reports whether traffic (spec or statuses) names revision, by name or tag.
func references[T interface {
	GetType() runpb.TrafficTargetAllocationType
	GetRevision() string
	GetPercent() int32
	GetTag() string
}](targets []T, revision, latestReady string) (serving, tagged bool) {
	for _, t := range targets {
		if targetRevision(t.GetType(), t.GetRevision(), latestReady) != revision {
			continue
		}
		if t.GetPercent() > 0 {
			serving = true
		}
		if t.GetTag() != "" {
			tagged = true
		}
	}
	return serving, tagged
}

// route picks the revision for one request to service's URL (tag "") or to a tag URL. It
// returns the revision's short name ("" if the traffic names none) and the address of its
// process ("" if it cannot serve).
func (s *Server) route(serviceID, tag string) (rev, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, ok := s.services[serviceID]
	if !ok {
		return "", ""
	}
	if tag != "" {
		rev, _ = tagRevision(svc.statuses, svc.latestReady, tag)
	} else {
		rev = pickRevision(svc.statuses, svc.latestReady, rollPercent())
	}
	r, ok := svc.revisions[rev]
	if !ok || !r.ready || r.proc == nil {
		return rev, ""
	}
	return rev, r.proc.addr
}
