package cli

import (
	"strings"
	"testing"
)

func TestStatusHistoryCount(t *testing.T) {
	dir := cloudRunWith(t, rolloutWith(20))
	tests := []struct {
		history     string
		code        int
		shows, hide []string
	}{
		{"-1", 2, []string{"--history -1", "0 or more"}, nil},
		{"0", 0, []string{"web-0123456789ab"}, []string{"history"}},
		{"3", 0, []string{"(entry 20)", "(entry 18)"}, []string{"(entry 17)"}},
		{"50", 0, []string{"(entry 20)", "(entry 1)"}, nil},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(t, "--dir", dir, "status", "web", "--history", tt.history)
		out := stdout + stderr
		if code != tt.code {
			t.Errorf("status web --history %s: exit %d, want %d; output %q", tt.history, code, tt.code, out)
			continue
		}
		for _, s := range tt.shows {
			if !strings.Contains(out, s) {
				t.Errorf("status web --history %s: output %q does not mention %q", tt.history, out, s)
			}
		}
		for _, s := range tt.hide {
			if strings.Contains(stdout, s) {
				t.Errorf("status web --history %s: output %q mentions %q", tt.history, stdout, s)
			}
		}
	}
}
