// Package pgdump is the backup driver for a self-managed PostgreSQL database:
// it runs the PostgreSQL client tools (pg_dump, pg_restore) as subprocesses.
//
// Archives are in pg_dump's custom format, streamed: Dump writes pg_dump's
// standard output straight into the caller's writer (an upload, say) with no
// temporary file, and Verify and Restore read an archive from a reader the
// same way. Because the archive is written to a pipe, it carries no data
// offsets and is read strictly in order, which is how Verify can prove it
// whole: it decodes every data block.
//
// Decisions:
//   - Dump runs `pg_dump --format=custom --no-owner --no-privileges`. Object
//     ownership and GRANTs are left out, because the roles of one database
//     server rarely exist on another (a Cloud SQL instance restored into a
//     local server, or the reverse). (pg_dump ignores --no-owner for archive
//     formats; Restore passes it to pg_restore, where it takes effect.)
//   - Cleaning is a restore-time choice, not a dump-time one: pg_dump ignores
//     --clean for archive formats, and every archive entry carries its DROP
//     statement anyway. Restore runs `pg_restore --clean --if-exists
//     --no-owner --no-privileges --single-transaction --exit-on-error`: it
//     drops and recreates every object in the archive, in one transaction,
//     so a failed restore (a truncated archive, a lost connection) changes
//     nothing. Objects the archive does not contain are left alone.
//   - The password never appears on a command line or in an error: a URL's
//     password is handed to the tools in PGPASSWORD, and errors show the URL
//     with the password replaced by "xxxxx". The tools never prompt for a
//     password (--no-password).
//   - Connecting is bounded (PGCONNECT_TIMEOUT, Dumper.ConnectTimeout; a
//     connect_timeout in the URL wins), and a failure to reach the server is
//     reported as ErrUnreachable, which callers treat as transient.
//   - pg_dump refuses servers newer than itself, so without Dumper.BinDir the
//     newest pg_dump/pg_restore found is used.
package pgdump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	// ErrInvalidDump reports an archive that is not a complete, readable
	// pg_dump custom-format archive: truncated, corrupt, or not an archive.
	ErrInvalidDump = errors.New("invalid or incomplete pg_dump archive")
	// ErrUnreachable reports that the database server could not be reached:
	// connection refused, connect timeout, unknown host, or a server that is
	// starting up or shutting down. It is transient: retrying may succeed.
	ErrUnreachable = errors.New("database server unreachable")
	// ErrNotInstalled reports that pg_dump or pg_restore was not found.
	ErrNotInstalled = errors.New("PostgreSQL client tools not found on PATH or under /usr/lib/postgresql/*/bin; install them with `apt-get install -y postgresql-client`")
)

// DefaultConnectTimeout bounds each connection attempt of the tools when
// Dumper.ConnectTimeout is zero.
const DefaultConnectTimeout = 10 * time.Second

// libDir is where Debian's postgresql packages install the client tools, one
// directory per major version.
var libDir = "/usr/lib/postgresql"

// Dumper dumps, verifies and restores PostgreSQL databases with pg_dump and
// pg_restore. The zero value is ready to use; a Dumper is safe for concurrent
// use and must not be copied after first use.
type Dumper struct {
	// BinDir is the directory holding pg_dump and pg_restore. Empty means the
	// newest found on PATH or under /usr/lib/postgresql/*/bin (pg_dump must
	// not be older than the server it dumps).
	BinDir string
	// ConnectTimeout bounds each connection attempt; zero means
	// DefaultConnectTimeout. Whole seconds; a connect_timeout parameter in
	// the URL takes precedence.
	ConnectTimeout time.Duration

	mu    sync.Mutex
	tools map[string]string // tool name → resolved path
}

// Stats describes a finished dump.
type Stats struct {
	// Bytes is the size of the archive written.
	Bytes int64
	// Duration is the time from starting pg_dump to its exit.
	Duration time.Duration
}

// Dump writes a custom-format archive of the database at url into w,
// streaming pg_dump's output. A server that cannot be reached gives an error
// wrapping ErrUnreachable within the connect timeout. On error, w may have
// received part of an archive, which Verify rejects.
func (d *Dumper) Dump(ctx context.Context, url string, w io.Writer) (Stats, error) {
	conn, err := parseConn(url)
	if err != nil {
		return Stats{}, fmt.Errorf("pgdump: dump: %w", err)
	}
	bin, err := d.tool(ctx, "pg_dump")
	if err != nil {
		return Stats{}, fmt.Errorf("pgdump: dump %s: %w", conn.redacted, err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(runCtx, bin,
		"--format=custom",
		"--no-owner",
		"--no-privileges",
		"--no-password",
		"--dbname="+conn.dbname,
	)
	cmd.Env = conn.env(d.connectTimeout())
	stderr := &headBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Stats{}, fmt.Errorf("pgdump: dump %s: %w", conn.redacted, err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Stats{}, fmt.Errorf("pgdump: dump %s: start %s: %w", conn.redacted, bin, err)
	}
	n, copyErr := io.Copy(w, stdout)
	if copyErr != nil {
		cancel() // nobody reads pg_dump's output any more
	}
	waitErr := cmd.Wait()
	st := Stats{Bytes: n, Duration: time.Since(start)}
	switch {
	case ctx.Err() != nil:
		return st, fmt.Errorf("pgdump: dump %s: %w", conn.redacted, ctx.Err())
	case copyErr != nil:
		return st, fmt.Errorf("pgdump: dump %s: writing the archive after %d bytes: %w", conn.redacted, n, copyErr)
	case waitErr != nil:
		return st, toolError("dump "+conn.redacted, "pg_dump", waitErr, conn.scrub(stderr.String()))
	}
	return st, nil
}

// Verify checks that r holds a complete, readable custom-format archive,
// without a database server, and returns how many tables' data it holds (its
// TABLE DATA entries). It reads r to the end: one pg_restore lists the table
// of contents, and another decodes every data block into the null device, so
// a truncated or corrupt archive fails. Such failures wrap ErrInvalidDump;
// an error reading r is returned as is (wrapped), since it says nothing about
// the archive.
func (d *Dumper) Verify(ctx context.Context, r io.Reader) (tables int, err error) {
	bin, err := d.tool(ctx, "pg_restore")
	if err != nil {
		return 0, fmt.Errorf("pgdump: verify: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	list := exec.CommandContext(runCtx, bin, "--list")
	full := exec.CommandContext(runCtx, bin, "--file="+os.DevNull)
	var listOut bytes.Buffer
	listErr, fullErr := &headBuffer{max: 16 << 10}, &headBuffer{max: 16 << 10}
	list.Stdout, list.Stderr = &listOut, listErr
	full.Stdout, full.Stderr = io.Discard, fullErr
	listIn, err := list.StdinPipe()
	if err != nil {
		return 0, fmt.Errorf("pgdump: verify: %w", err)
	}
	fullIn, err := full.StdinPipe()
	if err != nil {
		return 0, fmt.Errorf("pgdump: verify: %w", err)
	}
	if err := list.Start(); err != nil {
		return 0, fmt.Errorf("pgdump: verify: start %s: %w", bin, err)
	}
	if err := full.Start(); err != nil {
		cancel()
		_ = list.Wait()
		return 0, fmt.Errorf("pgdump: verify: start %s: %w", bin, err)
	}

	// Feed both. pg_restore --list stops reading after the table of
	// contents; the decoding one reads to the end unless the archive is bad.
	readErr := tee(r, fullIn, listIn)
	_ = fullIn.Close()
	_ = listIn.Close()
	if readErr != nil {
		cancel()
	}
	listWait, fullWait := list.Wait(), full.Wait()
	switch {
	case ctx.Err() != nil:
		return 0, fmt.Errorf("pgdump: verify: %w", ctx.Err())
	case readErr != nil:
		return 0, fmt.Errorf("pgdump: verify: reading the archive: %w", readErr)
	case listWait != nil:
		return 0, fmt.Errorf("pgdump: verify: %w: pg_restore --list: %v: %s", ErrInvalidDump, listWait, summarize(listErr.String()))
	case fullWait != nil:
		return 0, fmt.Errorf("pgdump: verify: %w: pg_restore (reading every data block): %v: %s", ErrInvalidDump, fullWait, summarize(fullErr.String()))
	}
	return countTableData(listOut.String()), nil
}

// tableDataLine matches a TABLE DATA entry of `pg_restore --list`, e.g.
// "3340; 0 16390 TABLE DATA public items postgres".
var tableDataLine = regexp.MustCompile(`^\d+; \d+ \d+ TABLE DATA `)

// countTableData counts the TABLE DATA entries in a `pg_restore --list`
// listing (comment lines start with ';').
func countTableData(listing string) int {
	n := 0
	for _, line := range strings.Split(listing, "\n") {
		if tableDataLine.MatchString(line) {
			n++
		}
	}
	return n
}

// tee copies r into every writer of dst until r ends. A writer that fails
// (its process exited) is dropped; tee stops early when all have failed. It
// returns r's error, if any.
func tee(r io.Reader, dst ...io.Writer) error {
	buf := make([]byte, 256<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			live := dst[:0]
			for _, w := range dst {
				if _, werr := w.Write(buf[:n]); werr == nil {
					live = append(live, w)
				}
			}
			dst = live
			if len(dst) == 0 {
				return nil
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Restore replaces the objects of the archive in r in the database at url:
// `pg_restore --clean --if-exists --no-owner --no-privileges
// --single-transaction --exit-on-error`, reading the archive from r. It all
// happens in one transaction, so on any error (a truncated archive, which
// gives an error wrapping ErrInvalidDump; a lost connection) the database is
// left as it was. Objects the archive does not hold are left alone. A server
// that cannot be reached gives an error wrapping ErrUnreachable.
func (d *Dumper) Restore(ctx context.Context, url string, r io.Reader) error {
	conn, err := parseConn(url)
	if err != nil {
		return fmt.Errorf("pgdump: restore: %w", err)
	}
	bin, err := d.tool(ctx, "pg_restore")
	if err != nil {
		return fmt.Errorf("pgdump: restore into %s: %w", conn.redacted, err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(runCtx, bin,
		"--clean",
		"--if-exists",
		"--no-owner",
		"--no-privileges",
		"--single-transaction",
		"--exit-on-error",
		"--no-password",
		"--dbname="+conn.dbname,
	)
	cmd.Env = conn.env(d.connectTimeout())
	stderr := &headBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("pgdump: restore into %s: %w", conn.redacted, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgdump: restore into %s: start %s: %w", conn.redacted, bin, err)
	}
	readErr := tee(r, stdin)
	if readErr != nil {
		// Kill pg_restore rather than let it see a clean end of input: its
		// transaction is then never committed.
		cancel()
	}
	_ = stdin.Close()
	waitErr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("pgdump: restore into %s: %w", conn.redacted, ctx.Err())
	case readErr != nil:
		return fmt.Errorf("pgdump: restore into %s: reading the archive: %w", conn.redacted, readErr)
	case waitErr != nil:
		return toolError("restore into "+conn.redacted, "pg_restore", waitErr, conn.scrub(stderr.String()))
	}
	return nil
}

// unreachableMarks are parts of libpq's messages for a server that could not
// be reached (as opposed to one that refused us: bad password, no such
// database), across PostgreSQL versions.
var unreachableMarks = []string{
	"could not connect to server",   // PostgreSQL ≤ 13
	"connection refused",            // TCP RST
	"is the server running",         // libpq's hint
	"timeout expired",               // connect_timeout
	"could not translate host name", // DNS
	"no route to host",
	"network is unreachable",
	"connection timed out",
	"server closed the connection unexpectedly",
	"the database system is starting up",
	"the database system is shutting down",
	"the database system is in recovery mode",
	"the database system is not yet accepting connections",
}

// invalidArchiveMarks are parts of pg_restore's messages for an archive it
// cannot read.
var invalidArchiveMarks = []string{
	"input file is too short",
	"input file does not appear to be a valid archive",
	"did not find magic string",
	"could not read from input file",
	"unexpected end of file",
	"could not find block id",
	"corrupt",
	"unrecognized data block type",
	"unsupported version",
	"could not uncompress data",
	"could not decompress data",
}

// toolError builds the error of a failed tool run, classifying it by what
// the tool printed.
func toolError(what, tool string, waitErr error, stderr string) error {
	msg := summarize(stderr)
	low := strings.ToLower(stderr)
	for _, m := range unreachableMarks {
		if strings.Contains(low, m) {
			return fmt.Errorf("pgdump: %s: %w: %s", what, ErrUnreachable, msg)
		}
	}
	for _, m := range invalidArchiveMarks {
		if strings.Contains(low, m) {
			return fmt.Errorf("pgdump: %s: %w: %s", what, ErrInvalidDump, msg)
		}
	}
	return fmt.Errorf("pgdump: %s: %s failed (%v): %s", what, tool, waitErr, msg)
}

// summarize turns a tool's stderr into one line.
func summarize(stderr string) string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "(no message)"
	}
	return strings.Join(lines, " | ")
}

func (d *Dumper) connectTimeout() time.Duration {
	if d.ConnectTimeout > 0 {
		return d.ConnectTimeout
	}
	return DefaultConnectTimeout
}

// tool returns the path of the client tool name (pg_dump or pg_restore).
func (d *Dumper) tool(ctx context.Context, name string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.tools[name]; ok {
		return p, nil
	}
	var p string
	if d.BinDir != "" {
		p = filepath.Join(d.BinDir, name)
		if !isExecutable(p) {
			return "", fmt.Errorf("%s not found in %s: %w", name, d.BinDir, ErrNotInstalled)
		}
	} else {
		var err error
		if p, err = newestTool(ctx, name); err != nil {
			return "", err
		}
	}
	if d.tools == nil {
		d.tools = map[string]string{}
	}
	d.tools[name] = p
	return p, nil
}

// newestTool finds name on PATH and under libDir/*/bin and returns the one
// reporting the highest version. On a tie the first found wins, except that
// Debian's pg_wrapper (what /usr/bin/pg_dump is on Debian) loses ties to the
// real binary it would run.
func newestTool(ctx context.Context, name string) (string, error) {
	var cands []string
	if p, err := exec.LookPath(name); err == nil {
		cands = append(cands, p)
	}
	dirs, _ := filepath.Glob(filepath.Join(libDir, "*", "bin"))
	sort.Strings(dirs)
	for _, dir := range dirs {
		if p := filepath.Join(dir, name); isExecutable(p) {
			cands = append(cands, p)
		}
	}
	best, bestV, bestWrapper := "", version{}, false
	for _, p := range cands {
		v, err := toolVersion(ctx, p)
		if err != nil {
			continue
		}
		wrapper := isWrapper(p)
		if best == "" || bestV.less(v) || (bestV == v && bestWrapper && !wrapper) {
			best, bestV, bestWrapper = p, v, wrapper
		}
	}
	if best == "" {
		return "", fmt.Errorf("%s: %w", name, ErrNotInstalled)
	}
	return best, nil
}

// isWrapper reports whether p is Debian's pg_wrapper script.
func isWrapper(p string) bool {
	real, err := filepath.EvalSymlinks(p)
	return err == nil && filepath.Base(real) == "pg_wrapper"
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// version is a PostgreSQL version: major, minor.
type version struct{ major, minor int }

func (v version) less(w version) bool {
	return v.major < w.major || (v.major == w.major && v.minor < w.minor)
}

// versionOutput matches `pg_dump --version`: "pg_dump (PostgreSQL) 15.18
// (Debian 15.18-0+deb12u1)", "pg_dump (PostgreSQL) 17beta1", "9.6.24".
var versionOutput = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// toolVersion runs `p --version`.
func toolVersion(ctx context.Context, p string) (version, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, "--version").Output()
	if err != nil {
		return version{}, err
	}
	return parseVersion(string(out))
}

func parseVersion(s string) (version, error) {
	m := versionOutput.FindStringSubmatch(s)
	if m == nil {
		return version{}, fmt.Errorf("unrecognized version %q", strings.TrimSpace(s))
	}
	var v version
	v.major, _ = strconv.Atoi(m[1])
	if m[2] != "" {
		v.minor, _ = strconv.Atoi(m[2])
	}
	return v, nil
}

// conn is a connection string prepared for the tools.
type conn struct {
	dbname   string // for --dbname: the URL or conninfo without its password
	password string // for PGPASSWORD; "" when none was given
	redacted string // for messages
}

// conninfoPassword matches a password in a key=value connection string.
var conninfoPassword = regexp.MustCompile(`(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']\S*)`)

// parseConn takes the password out of a postgres:// (or postgresql://) URL or
// a key=value connection string. Its errors never contain the string.
func parseConn(s string) (conn, error) {
	if s == "" {
		return conn{}, errors.New("empty database URL")
	}
	if !strings.HasPrefix(s, "postgres://") && !strings.HasPrefix(s, "postgresql://") {
		if !strings.Contains(s, "=") {
			return conn{}, errors.New("database URL must be a postgres:// URL or a key=value connection string")
		}
		c := conn{dbname: s}
		if m := conninfoPassword.FindStringSubmatch(s); m != nil {
			v := m[1]
			if strings.HasPrefix(v, "'") {
				v = strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(v[1 : len(v)-1])
			}
			c.password = v
			c.dbname = strings.TrimSpace(conninfoPassword.ReplaceAllString(s, ""))
		}
		c.redacted = c.dbname
		return c, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return conn{}, errors.New("database URL does not parse as a URL") // err would echo the password
	}
	var c conn
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			c.password = p
			u.User = url.User(u.User.Username())
		}
	}
	if q := u.Query(); q.Has("password") {
		if c.password == "" {
			c.password = q.Get("password")
		}
		q.Del("password")
		u.RawQuery = q.Encode()
	}
	c.dbname = u.String()
	if c.password != "" && u.User != nil {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	c.redacted = u.String()
	return c, nil
}

// env is the tools' environment: the caller's, plus the password, the
// connect timeout and an application name.
func (c conn) env(timeout time.Duration) []string {
	secs := int(timeout.Round(time.Second) / time.Second)
	if secs < 2 {
		secs = 2 // libpq treats 1 as 2
	}
	env := append(os.Environ(),
		"PGCONNECT_TIMEOUT="+strconv.Itoa(secs),
		"PGAPPNAME=coalmine-pgdump",
	)
	if c.password != "" {
		env = append(env, "PGPASSWORD="+c.password)
	}
	return env
}

// scrub removes the password from a tool's message, should it ever appear.
func (c conn) scrub(s string) string {
	if c.password == "" {
		return s
	}
	return strings.ReplaceAll(s, c.password, "xxxxx")
}

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	mu        sync.Mutex
	max       int
	buf       bytes.Buffer
	truncated bool
}

func (h *headBuffer) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	room := h.max - h.buf.Len()
	if room < len(p) {
		h.truncated = true
		if room > 0 {
			h.buf.Write(p[:room])
		}
		return len(p), nil
	}
	h.buf.Write(p)
	return len(p), nil
}

func (h *headBuffer) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.truncated {
		return h.buf.String() + "\n[…]"
	}
	return h.buf.String()
}
