package runemu

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
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
	Command []string `json:"command,omitempty"`
	// Env is the image's environment (ENV lines of a Dockerfile).
	Env map[string]string `json:"env,omitempty"`
}

// Registry maps image references to local programs, like a container registry maps them
// to images. It is safe for concurrent use; the zero value is empty and ready.
type Registry struct {
	mu     sync.RWMutex
	images map[string]Image
	dir    string
}

// SetDir makes the registry also resolve images stored in dir by
// WriteImage — how `coalmine push`, a separate process, registers an image
// with a running local cloud.
func (r *Registry) SetDir(dir string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dir = dir
}

// imageFile is where WriteImage stores ref under dir.
func imageFile(dir, ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(dir, hex.EncodeToString(sum[:])+".json")
}

type storedImage struct {
	Ref   string `json:"ref"`
	Image Image  `json:"image"`
}

// WriteImage stores img under ref in dir (created if missing) for a
// Registry with SetDir(dir) to resolve. The write is atomic.
func WriteImage(dir, ref string, img Image) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("image registry %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(storedImage{Ref: ref, Image: img}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode image %s: %w", ref, err)
	}
	tmp, err := os.CreateTemp(dir, ".image-*")
	if err != nil {
		return fmt.Errorf("image registry %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write image %s: %w", ref, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write image %s: %w", ref, err)
	}
	return os.Rename(tmp.Name(), imageFile(dir, ref))
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
	if ok {
		return cloneImage(img), nil
	}
	if r.dir != "" {
		b, err := os.ReadFile(imageFile(r.dir, ref))
		if err == nil {
			var st storedImage
			if err := json.Unmarshal(b, &st); err != nil || st.Ref != ref {
				return Image{}, fmt.Errorf("resolve image %q: corrupt registry entry: %v", ref, err)
			}
			return cloneImage(st.Image), nil
		}
	}
	return Image{}, fmt.Errorf("resolve image %q: %w", ref, ErrImageNotFound)
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
