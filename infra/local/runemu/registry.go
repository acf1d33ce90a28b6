package runemu

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/ai-square/coalmine/infra/local/sampleapp"
)

// ErrImageNotFound is returned by Registry.Resolve for an image reference nobody registered.
var ErrImageNotFound = errors.New("image not found")

// Image is what a local "container image" runs: a program and its environment.
type Image struct {
	// Command is the program and its arguments. Empty runs the current executable as the
	// sample app (it must call sampleapp.RunIfChild first thing).
	Command []string
	// Env is the image's environment (ENV lines of a Dockerfile).
	Env map[string]string
}

// Registry maps image references to local programs, like a container registry maps them
// to images. It is safe for concurrent use; the zero value is empty and ready.
type Registry struct {
	mu     sync.RWMutex
	images map[string]Image
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// Register makes ref (the full image reference, e.g. "europe-docker.pkg.dev/p/r/app@sha256:…")
// run img. Registering a reference again replaces it.
func (r *Registry) Register(ref string, img Image) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.images == nil {
		r.images = make(map[string]Image)
	}
	r.images[ref] = cloneImage(img)
}

// Resolve returns the image registered under exactly ref, or an error wrapping
// ErrImageNotFound.
func (r *Registry) Resolve(ref string) (Image, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	img, ok := r.images[ref]
	if !ok {
		return Image{}, fmt.Errorf("resolve image %q: %w", ref, ErrImageNotFound)
	}
	return cloneImage(img), nil
}

// Refs returns the registered references, sorted.
func (r *Registry) Refs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.images))
}

func cloneImage(img Image) Image {
	return Image{Command: slices.Clone(img.Command), Env: maps.Clone(img.Env)}
}

// program returns the executable, its arguments and the environment entries the image
// contributes (image env in key order, then the sample-app switch for the default program).
func (img Image) program() (path string, args []string, env []string, err error) {
	for _, k := range slices.Sorted(maps.Keys(img.Env)) {
		env = append(env, k+"="+img.Env[k])
	}
	if len(img.Command) > 0 {
		return img.Command[0], img.Command[1:], env, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", nil, nil, fmt.Errorf("find own executable for the sample app: %w", err)
	}
	env = append(env, sampleapp.EnvChild+"=1", fmt.Sprintf("%s=%d", sampleapp.EnvParentPID, os.Getpid()))
	return exe, nil, env, nil
}
