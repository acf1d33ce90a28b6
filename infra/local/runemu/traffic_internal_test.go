package runemu

import (
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
)

func TestPickRevisionFollowsPercents(t *testing.T) {
	cases := []struct {
		name     string
		statuses []*runpb.TrafficTargetStatus
		want     map[string]int // picks over the 100 possible rolls
	}{
		{"latest only", []*runpb.TrafficTargetStatus{{Type: typeLatest, Percent: 100}}, map[string]int{"svc-ready": 100}},
		{"10/90 split", []*runpb.TrafficTargetStatus{
			{Type: typeRevision, Revision: "svc-a", Percent: 90},
			{Type: typeRevision, Revision: "svc-b", Percent: 10, Tag: "canary"},
		}, map[string]int{"svc-a": 90, "svc-b": 10}},
		{"zero-percent tag takes nothing", []*runpb.TrafficTargetStatus{
			{Type: typeRevision, Revision: "svc-b", Tag: "canary"},
			{Type: typeRevision, Revision: "svc-a", Percent: 100},
		}, map[string]int{"svc-a": 100}},
		{"same revision twice", []*runpb.TrafficTargetStatus{
			{Type: typeRevision, Revision: "svc-a", Percent: 30},
			{Type: typeLatest, Percent: 40},
			{Type: typeRevision, Revision: "svc-a", Percent: 30, Tag: "a"},
		}, map[string]int{"svc-a": 60, "svc-ready": 40}},
		{"no traffic", nil, map[string]int{"": 100}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := make(map[string]int)
			for roll := range 100 {
				got[pickRevision(tc.statuses, "svc-ready", roll)]++
			}
			if len(got) != len(tc.want) {
				t.Fatalf("picks %v, want %v", got, tc.want)
			}
			for rev, n := range tc.want {
				if got[rev] != n {
					t.Errorf("picks %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestTagRevisionAndReferences(t *testing.T) {
	statuses := []*runpb.TrafficTargetStatus{
		{Type: typeRevision, Revision: "svc-a", Percent: 100},
		{Type: typeRevision, Revision: "svc-b", Tag: "canary"},
		{Type: typeLatest, Tag: "latest"},
	}
	tags := []struct {
		tag, want string
		ok        bool
	}{{"canary", "svc-b", true}, {"latest", "svc-ready", true}, {"nope", "", false}}
	for _, tc := range tags {
		got, ok := tagRevision(statuses, "svc-ready", tc.tag)
		if got != tc.want || ok != tc.ok {
			t.Errorf("tagRevision(%q) = %q, %v; want %q, %v", tc.tag, got, ok, tc.want, tc.ok)
		}
	}
	refs := []struct {
		rev             string
		serving, tagged bool
	}{{"svc-a", true, false}, {"svc-b", false, true}, {"svc-ready", false, true}, {"svc-c", false, false}}
	for _, tc := range refs {
		serving, tagged := references(statuses, tc.rev, "svc-ready")
		if serving != tc.serving || tagged != tc.tagged {
			t.Errorf("references(%q) = serving %v, tagged %v; want %v, %v", tc.rev, serving, tagged, tc.serving, tc.tagged)
		}
	}
}

func TestBuildStatusesSetsTagURIs(t *testing.T) {
	traffic := []*runpb.TrafficTarget{
		{Type: typeRevision, Revision: "svc-a", Percent: 100},
		{Type: typeRevision, Revision: "svc-b", Tag: "canary"},
	}
	got := buildStatuses(traffic, func(tag string) string { return "http://" + tag })
	if len(got) != 2 || got[0].GetUri() != "" || got[1].GetUri() != "http://canary" || got[1].GetRevision() != "svc-b" || got[0].GetPercent() != 100 {
		t.Errorf("buildStatuses = %v", got)
	}
}
