package runemu_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/ai-square/coalmine/infra/local/runemu"
)

func TestRegistry(t *testing.T) {
	var r runemu.Registry // the zero value is ready
	img := runemu.Image{Command: []string{"/bin/app", "-v"}, Env: map[string]string{"A": "1"}}
	r.Register("repo/app:b", img)
	r.Register("repo/app:a", runemu.Image{})
	img.Command[0] = "/changed"
	img.Env["A"] = "changed"

	got, err := r.Resolve("repo/app:b")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if got.Command[0] != "/bin/app" || got.Env["A"] != "1" {
		t.Errorf("Resolve = %+v; the registry must keep its own copy", got)
	}
	got.Env["A"] = "mutated"
	if again, _ := r.Resolve("repo/app:b"); again.Env["A"] != "1" {
		t.Errorf("Resolve returned shared state: %+v", again)
	}
	if _, err := r.Resolve("repo/app@sha256:0000"); !errors.Is(err, runemu.ErrImageNotFound) {
		t.Errorf("Resolve(unknown) = %v, want ErrImageNotFound", err)
	}
	if got, want := r.Refs(), []string{"repo/app:a", "repo/app:b"}; !slices.Equal(got, want) {
		t.Errorf("Refs() = %v, want %v", got, want)
	}
}
