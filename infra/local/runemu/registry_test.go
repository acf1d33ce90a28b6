package runemu_test

import (
	"errors"
	"slices"
	"strings"
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

func TestRegistryDir(t *testing.T) {
	dir := t.TempDir()
	r := runemu.NewRegistry()
	r.SetDir(dir)
	ref := "local.dev/app/web@sha256:" + strings.Repeat("ab", 32)
	if _, err := r.Resolve(ref); !errors.Is(err, runemu.ErrImageNotFound) {
		t.Fatalf("Resolve before WriteImage = %v, want ErrImageNotFound", err)
	}
	want := runemu.Image{Env: map[string]string{"SAMPLE_ERROR_RATE": "0.5"}}
	if err := runemu.WriteImage(dir, ref, want); err != nil {
		t.Fatalf("WriteImage: %v", err)
	}
	got, err := r.Resolve(ref)
	if err != nil || got.Env["SAMPLE_ERROR_RATE"] != "0.5" {
		t.Fatalf("Resolve = %+v, %v; want %+v", got, err, want)
	}
	if _, err := r.Resolve(ref + "x"); !errors.Is(err, runemu.ErrImageNotFound) {
		t.Errorf("Resolve of another ref = %v, want ErrImageNotFound", err)
	}
}
