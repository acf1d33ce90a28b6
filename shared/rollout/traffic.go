package rollout

import (
	"cmp"
	"slices"
)

// The traffic tags coalmine owns. Other tags on the service are left alone.
const (
	TagStable   = "stable"
	TagCanary   = "canary"
	TagPrevious = "previous"
)

// OwnedTag reports whether coalmine manages tag t.
func OwnedTag(t string) bool { return slices.Contains(OwnedTags(), t) }

// OwnedTags returns the traffic tags coalmine writes.
func OwnedTags() []string { return []string{TagStable, TagCanary, TagPrevious} }

// MaxTagAndServiceName is Cloud Run's limit on a traffic tag's length plus
// the service name's: a longer pair is refused (INVALID_ARGUMENT "Combined
// traffic tag and service name cannot exceed 46 characters").
const MaxTagAndServiceName = 46

// LongestOwnedTag returns the longest tag coalmine writes: a service name
// longer than MaxTagAndServiceName minus its length cannot be released.
func LongestOwnedTag() string {
	return slices.MaxFunc(OwnedTags(), func(a, b string) int { return cmp.Compare(len(a), len(b)) })
}

// Target is one entry of a traffic split: a named revision, its share and
// its tag.
type Target struct {
	Revision string
	Percent  int
	Tag      string
}

// Traffic is the split the state describes: the stable revision (tag
// stable) with what the canary does not take; the canary (tag canary) with
// its stage's percent while the rollout is live (0% while deploying); and
// the previous stable revision at 0% (tag previous) after a promotion. Once
// a rollout is rolled back, failed or superseded the canary gets nothing and
// loses its tag. The percents always sum to 100 when Stable is set. A
// rollout stopped for an outside change describes no split (nil): the
// traffic is the operator's until the next claim.
func (s State) Traffic() []Target {
	if s.Stable == "" || (s.Rollout != nil && s.Rollout.Phase == Stopped) {
		return nil
	}
	canary, pct := "", 0
	if r := s.Rollout; r != nil && r.Canary != "" && r.Canary != s.Stable {
		switch r.Phase {
		case Deploying, Progressing, Paused:
			canary, pct = r.Canary, r.Percent()
		}
	}
	out := []Target{{Revision: s.Stable, Percent: 100 - pct, Tag: TagStable}}
	if canary != "" {
		out = append(out, Target{Revision: canary, Percent: pct, Tag: TagCanary})
	}
	if s.Previous != "" && s.Previous != s.Stable && s.Previous != canary {
		out = append(out, Target{Revision: s.Previous, Percent: 0, Tag: TagPrevious})
	}
	return out
}
