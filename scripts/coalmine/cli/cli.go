// Package cli is the coalmine operator CLI. Main runs one command line;
// every command has --help.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"

	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/infra/local/gcsemu"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/metrics"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/publish"
	"github.com/ai-square/coalmine/shared/release"

	"github.com/ai-square/coalmine/shared/emulator"
)

// command is one subcommand.
type command struct {
	name string
	// args is the usage after the command's name: its positional
	// arguments and, in brackets, flags. Main takes from it how many
	// positional arguments the command accepts (see positional) and
	// refuses a command line with fewer or more before run.
	args    string
	summary string
	detail  string
	// notes, when set, makes more help text after detail; it runs only
	// when the help is shown.
	notes func() string
	flags func(fs *flag.FlagSet) // defines the command's flags
	run   func(ctx context.Context, a *app, fs *flag.FlagSet) error
}

// defaultDir is the local cloud's directory unless --dir or $COALMINE_DIR
// say otherwise.
const defaultDir = ".coalmine"

// The usage of the flags every command has.
const (
	dirUsage    = "the local cloud's directory `DIR` (where its local.env is)"
	configUsage = "the policy `FILE` (default: $COALMINE_POLICY, or the local cloud's)"
)

// app is one invocation: where output goes and how to reach the cloud.
type app struct {
	stdout, stderr io.Writer
	dir            string
	config         string
	now            func() time.Time
}

var commands []*command

func register(c *command) { commands = append(commands, c) }

func find(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// usageError is a mistake in the command line: the usage is printed too.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// Main runs the command line args (without the program name) and returns
// the exit code: 0 success, 1 failure, 2 bad usage. Control characters in
// anything it prints are escaped (see visible).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return MainAt(ctx, time.Now, args, stdout, stderr)
}

// MainAt is Main with the clock the commands decide by (today only `verdict`, whose window
// ends at now minus the ingestion delay): tests judge at a chosen time.
func MainAt(ctx context.Context, now func() time.Time, args []string, stdout, stderr io.Writer) int {
	o, e := &visibleWriter{w: stdout}, &visibleWriter{w: stderr}
	defer o.flush()
	defer e.flush()
	return mainTo(ctx, now, args, o, e)
}

func mainTo(ctx context.Context, now func() time.Time, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, now: now}
	global := flag.NewFlagSet("coalmine", flag.ContinueOnError)
	global.SetOutput(stderr)
	global.StringVar(&a.dir, "dir", envOr("COALMINE_DIR", defaultDir), dirUsage)
	global.StringVar(&a.config, "config", "", configUsage)
	global.Usage = func() { printUsage(stderr, global) }
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := global.Args()
	if len(rest) == 0 {
		printUsage(stderr, global)
		return 2
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		return help(a, global, rest)
	}
	if group := subcommands(name); len(group) > 0 {
		switch {
		case len(rest) == 0:
			fmt.Fprintf(stderr, "coalmine %s: which subcommand?\n\n", name)
			printGroup(stderr, name, group)
			return 2
		case isHelpFlag(rest[0]):
			printGroup(stderr, name, group)
			return 0
		}
		name, rest = name+" "+rest[0], rest[1:]
		if find(name) == nil {
			fmt.Fprintf(stderr, "coalmine: unknown command %q.\n\n", name)
			printGroup(stderr, strings.Fields(name)[0], group)
			return 2
		}
	}
	c := find(name)
	if c == nil {
		fmt.Fprintf(stderr, "coalmine: unknown command %q. See coalmine help.\n", name)
		return 2
	}
	fs := newFlagSet(a, c)
	if err := fs.Parse(interleave(fs, rest)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	err := checkArgs(c, fs.Args())
	if err == nil {
		err = c.run(ctx, a, fs)
	}
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "coalmine %s: %v\n", c.name, err)
			fs.Usage()
			return 2
		}
		fmt.Fprintf(stderr, "coalmine %s: %v\n", c.name, err)
		return 1
	}
	return 0
}

// checkArgs checks the number of positional arguments against the usage.
func checkArgs(c *command, args []string) error {
	names, least, most := positional(c.args)
	if most >= 0 && len(args) > most {
		extra := args[most:]
		quoted := make([]string, len(extra))
		for i, x := range extra {
			quoted[i] = strconv.Quote(x)
		}
		plural := ""
		if len(extra) > 1 {
			plural = "s"
		}
		return usagef("unexpected argument%s %s", plural, strings.Join(quoted, ", "))
	}
	if len(args) < least {
		return usagef("missing %s", strings.Join(names[len(args):least], " "))
	}
	return nil
}

// positional reads a usage line: a WORD is a required positional
// argument, [WORD] an optional one, a trailing ... (WORD..., [WORD]...)
// means any number; a word starting with - is a flag, and the other words
// in its brackets are its value ([--reason TEXT]). It returns the
// positional arguments as written (required ones first, as usage lines
// put them) and how many there may be: at least least, at most most (-1:
// any number).
func positional(usage string) (names []string, least, most int) {
	depth, flagDepth := 0, -1
	for _, word := range strings.Fields(usage) {
		opens := len(word) - len(strings.TrimLeft(word, "["))
		word = word[opens:]
		depth += opens
		word, many := strings.CutSuffix(word, "...")
		closes := len(word) - len(strings.TrimRight(word, "]"))
		word = word[:len(word)-closes]
		switch {
		case strings.HasPrefix(word, "-"):
			flagDepth = depth
		case flagDepth >= 0 && depth >= flagDepth, word == "":
		default:
			name := word
			if depth > 0 {
				name = "[" + word + "]"
			} else {
				least++
			}
			if many {
				name += "..."
				most = -1
			} else if most >= 0 {
				most++
			}
			names = append(names, name)
		}
		depth -= closes
		if depth < flagDepth {
			flagDepth = -1
		}
	}
	return names, least, most
}

// help prints the help of a command, of a group of subcommands or of
// coalmine (coalmine help [COMMAND]) to stdout.
func help(a *app, global *flag.FlagSet, words []string) int {
	if len(words) == 0 {
		printUsage(a.stdout, global)
		return 0
	}
	name := strings.Join(words, " ")
	if c := find(name); c != nil {
		fs := newFlagSet(a, c)
		fs.SetOutput(a.stdout)
		fs.Usage()
		return 0
	}
	if group := subcommands(name); len(group) > 0 {
		printGroup(a.stdout, name, group)
		return 0
	}
	fmt.Fprintf(a.stderr, "coalmine help: unknown command %q. See coalmine help.\n", name)
	return 2
}

// subcommands returns the commands of group ("local", "backups"), sorted,
// or none when group is not one.
func subcommands(group string) []*command {
	var out []*command
	for _, c := range commands {
		if strings.HasPrefix(c.name, group+" ") {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// printGroup lists the subcommands of group with their summaries.
func printGroup(w io.Writer, group string, cmds []*command) {
	fmt.Fprintf(w, "Usage: coalmine %s SUBCOMMAND [ARGS]\n\nSubcommands:\n", group)
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'coalmine %s SUBCOMMAND --help' for a subcommand's arguments and flags.\n", group)
}

// isHelpFlag reports whether arg asks for help as the flag package reads it.
func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "-help", "--h", "--help":
		return true
	}
	return false
}

func newFlagSet(a *app, c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("coalmine "+c.name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.StringVar(&a.dir, "dir", a.dir, dirUsage)
	fs.StringVar(&a.config, "config", a.config, configUsage)
	if c.flags != nil {
		c.flags(fs)
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: coalmine %s %s\n\n%s\n", c.name, c.args, c.summary)
		if c.detail != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.detail))
		}
		if c.notes != nil {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.notes()))
		}
		fmt.Fprintf(w, "\nFlags:\n")
		printFlags(w, fs)
	}
	return fs
}

// interleave lets flags follow positional arguments (coalmine push IMAGE --fail-start).
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			pos = append(pos, arg)
			continue
		}
		flags = append(flags, arg)
		name := strings.TrimLeft(arg, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil {
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
				continue
			}
			if i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		}
	}
	return append(flags, pos...)
}

func printUsage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprintf(w, "coalmine releases Cloud Run services safely: backup, canary, staged traffic, rollback.\n\nUsage: coalmine [--dir DIR] [--config FILE] COMMAND [ARGS]\n\nCommands:\n")
	sorted := append([]*command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'coalmine COMMAND --help' (or 'coalmine help COMMAND') for a command's flags.\n\nGlobal flags:\n")
	printFlags(w, global)
}

// printFlags lists the flags of fs as flag.PrintDefaults does, but written
// --name, as the usage lines and the docs write them (the flag package
// takes both).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if kind != "" {
			line += " " + kind
		}
		line += "\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t")
		if !isZeroValue(f) {
			def := f.DefValue
			if g, ok := f.Value.(flag.Getter); ok {
				if _, isString := g.Get().(string); isString {
					def = strconv.Quote(def)
				}
			}
			line += " (default " + def + ")"
		}
		fmt.Fprintln(w, line)
	})
}

// isZeroValue reports whether f's default is its type's zero value, which
// the list leaves out (as flag.PrintDefaults does).
func isZeroValue(f *flag.Flag) bool {
	typ := reflect.TypeOf(f.Value)
	var z reflect.Value
	if typ.Kind() == reflect.Pointer {
		z = reflect.New(typ.Elem())
	} else {
		z = reflect.Zero(typ)
	}
	v, ok := z.Interface().(flag.Value)
	return ok && f.DefValue == v.String()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// target is where the CLI's commands go: the local cloud named by
// DIR/local.env when it exists, else the environment (the real Google
// endpoints unless PUBSUB_EMULATOR_HOST / CLOUDRUN_EMULATOR_HOST are set).
type target struct {
	env      map[string]string
	policy   *policy.Policy
	project  string
	registry string // local image registry, "" outside the local cloud
}

func (a *app) target() (*target, error) {
	t := &target{env: map[string]string{}}
	for _, k := range append([]string{"PUBSUB_EMULATOR_HOST", cloudrun.EmulatorHostEnv, release.EnvProject, release.EnvRegion, release.EnvPolicy, "COALMINE_LOCAL_REGISTRY", metrics.EmulatorHostEnv, cloud.MonitoringModeEnv}, extraEnv...) {
		if v := os.Getenv(k); v != "" {
			t.env[k] = v
		}
	}
	path := filepath.Join(a.dir, cloud.EnvFile)
	local, err := cloud.ReadEnv(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for k, v := range local {
		t.env[k] = v
	}
	if err := t.answering(local, path); err != nil {
		return nil, err
	}
	policyPath := a.config
	if policyPath == "" {
		policyPath = t.env[release.EnvPolicy]
	}
	if policyPath == "" {
		return nil, fmt.Errorf("no policy: pass --config FILE, set %s, or start a local cloud (coalmine local up) so %s exists", release.EnvPolicy, path)
	}
	pol, err := policy.Load(policyPath)
	if err != nil {
		return nil, err
	}
	t.policy = pol
	t.project = t.env[release.EnvProject]
	if t.project == "" && len(pol.Services) > 0 {
		t.project = pol.Services[0].Project
	}
	t.registry = t.env["COALMINE_LOCAL_REGISTRY"]
	return t, nil
}

// emulatorHosts are the variables naming local servers the commands talk
// to. A client pointed at one that is gone waits out its deadline (or
// retries for ever), so answering checks them first.
var emulatorHosts = []string{"PUBSUB_EMULATOR_HOST", cloudrun.EmulatorHostEnv, gcsemu.EnvEmulatorHost, metrics.EmulatorHostEnv}

// dialTimeout bounds the check of one emulator address; a local server
// that is up accepts at once.
const dialTimeout = time.Second

// answering checks that something accepts connections at every emulator
// address of the target: a local.env left behind by a local cloud that has
// stopped otherwise makes every command hang and end in a deadline error.
// local is what envPath held.
func (t *target) answering(local map[string]string, envPath string) error {
	for _, k := range emulatorHosts {
		host := t.env[k]
		if host == "" {
			continue
		}
		addr := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(host, "http://"), "https://"), "/")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			continue // no port to try: let the client say what is wrong
		}
		conn, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err == nil {
			conn.Close()
			continue
		}
		if _, ok := local[k]; ok {
			up := "coalmine local up"
			if dir := filepath.Dir(envPath); filepath.Clean(dir) != defaultDir {
				up += " --dir " + dir
			}
			return fmt.Errorf("nothing answers at %s (%s in %s): the local cloud is not running; start it with `%s`", host, k, envPath, up)
		}
		return fmt.Errorf("nothing answers at %s (%s in the environment): start that emulator, or unset %s to use Google's endpoints", host, k, k)
	}
	return nil
}

// extraEnv are more variables the target takes from the environment.
var extraEnv []string

// policyService finds a service in the policy, naming the ones there are.
func (t *target) policyService(name string) (*policy.Service, error) {
	pol, err := t.policy.Service(name)
	if err != nil {
		var names []string
		for _, s := range t.policy.Services {
			names = append(names, s.Name)
		}
		return nil, fmt.Errorf("service %q is not in the policy (services: %s)", name, strings.Join(names, ", "))
	}
	return pol, nil
}

// service finds a service in the policy and connects to its Cloud Run region.
func (t *target) service(ctx context.Context, name string) (*policy.Service, *cloudrun.Client, error) {
	pol, err := t.policyService(name)
	if err != nil {
		return nil, nil, err
	}
	o := cloudrun.Options{Project: pol.Project, Region: pol.Region, PollInterval: 200 * time.Millisecond}
	if h := t.env[cloudrun.EmulatorHostEnv]; h != "" {
		o.ClientOptions = emulator.ClientOptions(h)
	}
	c, err := cloudrun.New(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	return pol, c, nil
}

// bus connects to Pub/Sub in the target's project.
func (t *target) bus(ctx context.Context) (*publish.Bus, error) {
	if t.project == "" {
		return nil, fmt.Errorf("no project for Pub/Sub: set %s", release.EnvProject)
	}
	var opts []option.ClientOption
	if h := t.env["PUBSUB_EMULATOR_HOST"]; h != "" {
		opts = emulator.ClientOptions(h)
	}
	return publish.New(ctx, t.project, opts...)
}

// pubsubClient is for commands that need more than publishing.
func (t *target) pubsubClient(ctx context.Context) (*pubsub.Client, error) {
	var opts []option.ClientOption
	if h := t.env["PUBSUB_EMULATOR_HOST"]; h != "" {
		opts = emulator.ClientOptions(h)
	}
	return pubsub.NewClient(ctx, t.project, opts...)
}
