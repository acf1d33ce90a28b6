package emulator_test

import (
	"testing"

	"github.com/ai-square/coalmine/shared/emulator"
)

func TestClientOptions(t *testing.T) {
	if got := emulator.ClientOptions(""); got != nil {
		t.Errorf("ClientOptions(\"\"): got %d options, want nil (Google's API)", len(got))
	}
	if got, want := len(emulator.ClientOptions("127.0.0.1:8085")), 3; got != want {
		t.Errorf("ClientOptions(host): got %d options, want %d (endpoint, no auth, plaintext)", got, want)
	}
}
