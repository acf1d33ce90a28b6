package cli

import (
	"flag"
	"regexp"
	"strings"
	"testing"
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

var (
	flagInText  = regexp.MustCompile(`(^|[\s\[(` + "`" + `])--([a-z][a-z0-9-]*)`)
	singleDash  = regexp.MustCompile(`(?m)^\s+-[a-z]`)
	definedFlag = func(fs *flag.FlagSet, name string) bool { return fs.Lookup(name) != nil }
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
			if !definedFlag(fs, m[2]) {
				t.Errorf("coalmine %s --help mentions --%s, which it does not define: %q", c.name, m[2], help)
			}
		}
	}
	code, stdout, _ := runCLI(t, "help")
	if code != 0 || !strings.Contains(stdout, "\n  --dir") || !strings.Contains(stdout, "\n  --config") || singleDash.MatchString(stdout) {
		t.Errorf("coalmine help: exit %d, global flags not written --dir and --config: %q", code, stdout)
	}
}
