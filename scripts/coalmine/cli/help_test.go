package cli

import (
	"flag"
	"regexp"
	"strings"
	"testing"

	"github.com/ai-square/coalmine/shared/policy"
)

// helpOf returns what `coalmine NAME --help` prints.
func helpOf(t *testing.T, c *command) string {
	t.Helper()
	code, stdout, stderr := runCLI(t, append(strings.Fields(c.name), "--help")...)
	if code != 0 {
		t.Fatalf("coalmine %s --help: exit %d, stderr %q", c.name, code, stderr)
	}
	return stdout + stderr
}

func TestGroupHelpListsSubcommands(t *testing.T) {
	for _, group := range []string{"backups", "local"} {
		for _, args := range [][]string{{group, "--help"}, {group, "-h"}, {"help", group}} {
			code, stdout, stderr := runCLI(t, args...)
			out := stdout + stderr
			if code != 0 || strings.Contains(out, "unknown command") {
				t.Errorf("coalmine %v: exit %d, output %q; want exit 0 and the subcommands", args, code, out)
				continue
			}
			for _, c := range commands {
				if strings.HasPrefix(c.name, group+" ") && (!strings.Contains(out, c.name) || !strings.Contains(out, c.summary)) {
					t.Errorf("coalmine %v: output %q does not list %q with its summary", args, out, c.name)
				}
			}
		}
	}
	for _, tt := range []struct {
		args     []string
		mentions []string
	}{
		{[]string{"local"}, []string{"which subcommand", "local up"}},
		{[]string{"backups", "restore"}, []string{`unknown command "backups restore"`, "backups list", "backups prune"}},
		{[]string{"help", "launch"}, []string{`unknown command "launch"`}},
	} {
		code, _, stderr := runCLI(t, tt.args...)
		for _, want := range tt.mentions {
			if code != 2 || !strings.Contains(stderr, want) {
				t.Errorf("coalmine %v: exit %d, stderr %q; want exit 2 mentioning %q", tt.args, code, stderr, want)
			}
		}
	}
}

var (
	// flagInText finds --name in help text.
	flagInText = regexp.MustCompile(`(^|[\s\[(` + "`" + `])--([a-z][a-z0-9-]*)`)
	// singleDash finds a flag list entry written -name.
	singleDash = regexp.MustCompile(`(?m)^\s+-[a-z]`)
)

func TestHelpWritesFlagsAsTheUsageLineDoes(t *testing.T) {
	for _, c := range commands {
		help := helpOf(t, c)
		fs := newFlagSet(&app{}, c)
		fs.VisitAll(func(f *flag.Flag) {
			if !regexp.MustCompile(`(?m)^  --` + regexp.QuoteMeta(f.Name) + `\b`).MatchString(help) {
				t.Errorf("coalmine %s --help does not list --%s: %q", c.name, f.Name, help)
			}
		})
		if m := singleDash.FindString(help); m != "" {
			t.Errorf("coalmine %s --help lists a flag with one dash (%q): %q", c.name, m, help)
		}
		for _, m := range flagInText.FindAllStringSubmatch(help, -1) {
			if fs.Lookup(m[2]) == nil {
				t.Errorf("coalmine %s --help mentions --%s, which it does not define: %q", c.name, m[2], help)
			}
		}
	}
	code, stdout, _ := runCLI(t, "help")
	if code != 0 || !strings.Contains(stdout, "\n  --dir") || !strings.Contains(stdout, "\n  --config") || singleDash.MatchString(stdout) {
		t.Errorf("coalmine help: exit %d, global flags not written --dir and --config: %q", code, stdout)
	}
}

func TestLocalUpHelpNamesTheBuiltInDenyWindows(t *testing.T) {
	help := helpOf(t, find("local up"))
	for _, want := range []string{"Mon 00:00-12:00", "Fri 12:00-24:00", "Asia/Taipei", "--config FILE"} {
		if !strings.Contains(help, want) {
			t.Errorf("coalmine local up --help does not mention %q: %q", want, help)
		}
	}
}

func TestDescribeWindows(t *testing.T) {
	tests := []struct {
		w    policy.Windows
		want string
	}{
		{policy.Windows{}, "at any time (UTC)"},
		{policy.Windows{Timezone: "Europe/Berlin", Deny: policy.DefaultDeny()}, "at any time but Mon 00:00-12:00 and Fri 12:00-24:00 (Europe/Berlin)"},
		{policy.Windows{Deny: []policy.TimeRange{{From: "22:00"}}, Allow: []policy.TimeRange{{Days: []string{"monday", "TUE"}, From: "09:00", To: "17:00"}}},
			"only in Mon,Tue 09:00-17:00, and not in every day 22:00-24:00 (UTC)"},
	}
	for _, tt := range tests {
		if got := describeWindows(tt.w); got != tt.want {
			t.Errorf("describeWindows(%+v) = %q, want %q", tt.w, got, tt.want)
		}
	}
}

// positionalArgs is how many positional arguments each command takes
// (max -1: any number); every registered command must be listed.
var positionalArgs = map[string]struct{ min, max int }{
	"push":          {1, 1},
	"status":        {0, 1},
	"promote":       {1, 1},
	"abort":         {1, 1},
	"pause":         {1, 1},
	"resume":        {1, 1},
	"release":       {2, 2},
	"retry":         {1, 1},
	"backups list":  {1, 1},
	"backups prune": {0, 1},
	"restore":       {1, 1},
	"local up":      {0, 0},
	"verdict":       {1, 1},
	"alerts":        {0, 0},
}

func TestExtraArgumentsAreRejected(t *testing.T) {
	dir := t.TempDir()
	for _, c := range commands {
		n, ok := positionalArgs[c.name]
		if !ok {
			t.Errorf("command %q is not in positionalArgs", c.name)
			continue
		}
		if _, least, most := positional(c.args); least != n.min || most != n.max {
			t.Errorf("positional(%q) = %d..%d arguments, want %d..%d", c.args, least, most, n.min, n.max)
		}
		args := append([]string{"--dir", dir}, strings.Fields(c.name)...)
		for i := 0; i < n.max; i++ {
			args = append(args, "arg")
		}
		args = append(args, "extra-arg")
		code, _, stderr := runCLI(t, args...)
		if code != 2 || !strings.Contains(stderr, `unexpected argument "extra-arg"`) || !strings.Contains(stderr, "Usage: coalmine "+c.name) {
			t.Errorf("coalmine %v: exit %d, stderr %q; want exit 2 naming the unexpected argument", args[2:], code, stderr)
		}
	}
	code, _, stderr := runCLI(t, "--dir", dir, "promote", "web", "one", "two")
	if code != 2 || !strings.Contains(stderr, `unexpected arguments "one", "two"`) {
		t.Errorf("coalmine promote web one two: exit %d, stderr %q", code, stderr)
	}
}
