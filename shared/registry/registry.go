// Package registry asks a container registry (Artifact Registry, Container
// Registry, any registry speaking the OCI distribution API) whether it
// holds an image, before coalmine releases it.
package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/google"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ai-square/coalmine/shared/release"
)

// Client checks images in their registries (release.Images). It is safe
// for concurrent use.
type Client struct {
	// Keychain finds the credentials for a registry (New: Google's for
	// Google's registries; nil: the Docker config's everywhere).
	Keychain authn.Keychain
	// Transport carries the requests (default remote.DefaultTransport).
	Transport http.RoundTripper
	// Timeout bounds one check (default 30s).
	Timeout time.Duration
}

// New returns a Client that authenticates to Artifact Registry (*.pkg.dev)
// and Container Registry (gcr.io) with Application Default Credentials, or
// gcloud's when there are none, and to other registries with the Docker
// config's credentials.
func New() *Client {
	return &Client{Keychain: &googleKeychain{}}
}

// Exists asks the registry for the manifest of image, a reference by
// digest (HEAD, nothing is downloaded). It returns nil when the registry
// has it, an error wrapping release.ErrImageNotFound when the registry
// answers that it does not (or image is not a reference by digest), and
// another error when it cannot tell: the registry fails, refuses access or
// cannot be reached.
func (c *Client) Exists(ctx context.Context, image string) error {
	ref, err := name.NewDigest(image)
	if err != nil {
		return fmt.Errorf("image %s: %w: it is not a reference by digest (%v)", image, release.ErrImageNotFound, err)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	keychain := c.Keychain
	if keychain == nil {
		keychain = authn.DefaultKeychain
	}
	tr := c.Transport
	if tr == nil {
		tr = remote.DefaultTransport
	}
	host := ref.RegistryStr()
	_, err = remote.Head(ref,
		remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain), remote.WithTransport(tr),
		// The caller retries (Pub/Sub redelivers, the operator runs the
		// command again): one quick retry here, not a minute of them.
		remote.WithRetryBackoff(remote.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 2}),
	)
	var te *transport.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te) && isManifestRequest(te) && te.StatusCode == http.StatusNotFound:
		return fmt.Errorf("image %s: %w %s (HTTP %d)", image, release.ErrImageNotFound, host, te.StatusCode)
	case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		return fmt.Errorf("image %s: registry %s refused access (HTTP %d): the caller needs read access to the repository (roles/artifactregistry.reader on Artifact Registry): %w",
			image, host, te.StatusCode, err)
	default:
		return fmt.Errorf("image %s: cannot ask registry %s: %w", image, host, err)
	}
}

// isManifestRequest reports whether e answers the request for a manifest:
// a 404 elsewhere (the API root) says the host is no registry, not that
// the image is missing.
func isManifestRequest(e *transport.Error) bool {
	return e.Request != nil && strings.Contains(e.Request.URL.Path, "/manifests/")
}

// googleKeychain authenticates to Google's registries. Unlike
// google.Keychain, which settles on anonymous access for the life of the
// process when its first attempt finds no credentials, it returns the
// error and tries again next time, and it keeps credentials once found.
type googleKeychain struct {
	mu   sync.Mutex
	auth authn.Authenticator
}

func (k *googleKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), r)
}

func (k *googleKeychain) ResolveContext(ctx context.Context, r authn.Resource) (authn.Authenticator, error) {
	host := r.RegistryStr()
	if !isGoogle(host) {
		return authn.DefaultKeychain.Resolve(r)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.auth != nil {
		return k.auth, nil
	}
	auth, err := google.NewEnvAuthenticator(ctx)
	if err != nil {
		gauth, gerr := google.NewGcloudAuthenticator(ctx)
		if gerr != nil || gauth == authn.Anonymous {
			return nil, fmt.Errorf("no Google credentials for %s: Application Default Credentials: %v", host, err)
		}
		auth = gauth
	}
	k.auth = auth
	return auth, nil
}

// isGoogle reports whether host is Artifact Registry or Container Registry.
func isGoogle(host string) bool {
	return host == "gcr.io" || strings.HasSuffix(host, ".gcr.io") || strings.HasSuffix(host, ".pkg.dev")
}
