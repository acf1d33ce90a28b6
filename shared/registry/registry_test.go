package registry_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	gcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ai-square/coalmine/shared/registry"
	"github.com/ai-square/coalmine/shared/release"
)

var _ release.Images = (*registry.Client)(nil)

// serve starts a registry server (go-containerregistry's, in memory) and
// returns its host.
func serve(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(gcrregistry.New(gcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// push pushes a random image to repo and returns its reference by digest.
func push(t *testing.T, repo string) string {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo + "@" + d.String()
}

const unknownDigest = "@sha256:0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d"

func TestExists(t *testing.T) {
	host := serve(t)
	pushed := push(t, host+"/ai-square/web")
	c := registry.New()
	if err := c.Exists(context.Background(), pushed); err != nil {
		t.Errorf("Exists(%s) = %v, want nil", pushed, err)
	}
	for _, image := range []string{
		host + "/ai-square/web" + unknownDigest, // a repository without that digest
		host + "/ai-square/api" + unknownDigest, // no such repository
	} {
		err := c.Exists(context.Background(), image)
		if !errors.Is(err, release.ErrImageNotFound) {
			t.Errorf("Exists(%s) = %v, want ErrImageNotFound", image, err)
			continue
		}
		for _, want := range []string{image, host} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Exists(%s) = %q; want it to name %q", image, err, want)
			}
		}
	}
}

// TestExistsCannotTell: a registry that fails, refuses access or is not
// there is not a missing image: the caller asks again later.
func TestExistsCannotTell(t *testing.T) {
	answer := func(status int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	tests := []struct {
		name, host, mentions string
	}{
		{"server error", answer(http.StatusInternalServerError), "500"},
		{"no access", answer(http.StatusForbidden), "roles/artifactregistry.reader"},
		{"down", strings.TrimPrefix(down.URL, "http://"), "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			image := tt.host + "/ai-square/web" + unknownDigest
			err := registry.New().Exists(context.Background(), image)
			if err == nil || errors.Is(err, release.ErrImageNotFound) {
				t.Fatalf("Exists(%s) = %v, want an error that is not ErrImageNotFound", image, err)
			}
			for _, want := range []string{image, tt.mentions} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Exists(%s) = %q; want it to mention %q", image, err, want)
				}
			}
		})
	}
}

func TestExistsNeedsADigest(t *testing.T) {
	err := registry.New().Exists(context.Background(), "europe-docker.pkg.dev/p/r/web:v1")
	if !errors.Is(err, release.ErrImageNotFound) || !strings.Contains(err.Error(), "digest") {
		t.Errorf("Exists of a tag = %v, want ErrImageNotFound saying a digest is needed", err)
	}
}
