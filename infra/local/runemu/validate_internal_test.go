package runemu

import (
	"strings"
	"testing"
)

func TestValidateServiceID(t *testing.T) {
	cases := []struct {
		id string
		ok bool
	}{
		{"svc", true},
		{"a", true},
		{"api-v2", true},
		{"a" + strings.Repeat("b", 48), true}, // 49 characters
		{"a" + strings.Repeat("b", 49), false},
		{"", false},
		{"Svc", false},
		{"1svc", false},
		{"-svc", false},
		{"svc-", false},
		{"svc_a", false},
		{"svc.a", false},
	}
	for _, tc := range cases {
		if err := validateServiceID(tc.id); (err == nil) != tc.ok {
			t.Errorf("validateServiceID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
}

func TestValidateRevisionName(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"svc-v1", true},
		{"svc-00001-abc", true},
		{"svc-", false},
		{"svc", false},
		{"other-v1", false},
		{"svc-V1", false},
		{"svc-v1-", false},
		{"svc-" + strings.Repeat("x", 60), false},
	}
	for _, tc := range cases {
		if err := validateRevisionName("svc", tc.name); (err == nil) != tc.ok {
			t.Errorf("validateRevisionName(svc, %q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestReservedNamespace(t *testing.T) {
	cases := []struct {
		key, want string
	}{
		{"run.googleapis.com/ingress", "run.googleapis.com"},
		{"client.run.googleapis.com/x", "run.googleapis.com"},
		{"cloud.googleapis.com/location", "cloud.googleapis.com"},
		{"serving.knative.dev/route", "serving.knative.dev"},
		{"autoscaling.knative.dev/maxScale", "autoscaling.knative.dev"},
		{"coalmine.dev/rollout", ""},
		{"notrun.googleapis.com/x", ""},
		{"team", ""},
	}
	for _, tc := range cases {
		got, ok := reservedNamespace(tc.key)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("reservedNamespace(%q) = %q, %v; want %q", tc.key, got, ok, tc.want)
		}
	}
}
