package registry

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestIsGoogle(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"europe-docker.pkg.dev", true},
		{"gcr.io", true},
		{"asia.gcr.io", true},
		{"docker.io", false},
		{"localhost:5000", false},
		{"pkg.dev.example.com", false},
	}
	for _, tt := range tests {
		if got := isGoogle(tt.host); got != tt.want {
			t.Errorf("isGoogle(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

// TestGoogleKeychainWithoutCredentials: no credentials for Google's
// registries is an error saying so (asked again next time), not anonymous
// access for the life of the process; other registries are not Google's
// business.
func TestGoogleKeychainWithoutCredentials(t *testing.T) {
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", t.TempDir()+"/none.json")
	t.Setenv("PATH", t.TempDir()) // no gcloud
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	k := &googleKeychain{}
	reg, err := name.NewRegistry("europe-docker.pkg.dev")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		auth, err := k.ResolveContext(context.Background(), reg)
		if err == nil || !strings.Contains(err.Error(), "no Google credentials for europe-docker.pkg.dev") {
			t.Errorf("Resolve(europe-docker.pkg.dev) = %v, %v; want an error saying there are no credentials", auth, err)
		}
	}
	other, err := name.NewRegistry("localhost:5000")
	if err != nil {
		t.Fatal(err)
	}
	if auth, err := k.ResolveContext(context.Background(), other); err != nil || auth != authn.Anonymous {
		t.Errorf("Resolve(localhost:5000) = %v, %v; want anonymous", auth, err)
	}
}
