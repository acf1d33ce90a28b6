// Package postgres starts a throwaway PostgreSQL server from the machine's
// own binaries: the local cloud's stand-in for Cloud SQL, and the real
// database the tests of the backup drivers run against.
//
// Start runs initdb (trust authentication, UTF8, no fsync) into a fresh data
// directory and then runs the `postgres` server as a direct child process,
// listening only on 127.0.0.1, with its Unix socket inside the data directory
// and durability turned off (fsync, synchronous_commit, full_page_writes):
// it is a test server, and a crash may lose it. On Linux the server gets
// SIGINT (PostgreSQL's fast shutdown) when the process that started it dies,
// even by a panic or SIGKILL, so no server outlives its test binary; the
// data directories such a death leaves behind are removed by the next Start.
//
// initdb and the server refuse to run as root. When the caller is root, both
// run as the `postgres` user (which the postgresql packages create) and the
// directories are handed to that user.
package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrUnavailable reports that the PostgreSQL server binaries (initdb, pg_ctl,
// postgres) are not installed where Available looks.
var ErrUnavailable = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under /usr/lib/postgresql/*/bin; install them with `apt-get install -y postgresql`")

// RunAsUser is the operating-system user initdb and the server run as when
// the caller is root.
const RunAsUser = "postgres"

// Superuser is the database superuser initdb creates; it needs no password
// (trust authentication).
const Superuser = "postgres"

// startTimeout bounds how long Start waits for a started server to accept
// connections, unless ctx ends sooner.
const startTimeout = 60 * time.Second

// stopTimeout bounds how long Stop waits for a fast shutdown before it kills
// the server.
const stopTimeout = 15 * time.Second

// tempPrefix names the temporary directories Start creates, so that a later
// Start can find and remove those whose owner died without calling Stop.
const tempPrefix = "coalmine-postgres-"

// ownerFile, inside a temporary directory Start created, holds the process id
// of the process that created it.
const ownerFile = "owner.pid"

// libDir is where Debian's postgresql packages install the server binaries,
// one directory per major version.
var libDir = "/usr/lib/postgresql"

// serverBinaries must all be present in the directory Available returns.
var serverBinaries = []string{"initdb", "pg_ctl", "postgres"}

// Available reports where the PostgreSQL server binaries are: the directory
// of `initdb` found on PATH (symbolic links resolved) when `pg_ctl` and
// `postgres` sit next to it, otherwise the highest version under
// /usr/lib/postgresql/*/bin that has all three.
func Available() (binDir string, ok bool) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if dir := filepath.Dir(real); hasAll(dir) {
				return dir, true
			}
		}
	}
	for _, dir := range versionDirs(libDir) {
		if hasAll(dir) {
			return dir, true
		}
	}
	return "", false
}

// versionDirs lists root/*/bin, highest major version first.
func versionDirs(root string) []string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	type v struct {
		n   float64
		dir string
	}
	var vs []v
	for _, e := range entries {
		n, err := strconv.ParseFloat(e.Name(), 64) // "15", "9.6"
		if err != nil {
			continue
		}
		vs = append(vs, v{n, filepath.Join(root, e.Name(), "bin")})
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].n > vs[j].n })
	dirs := make([]string, len(vs))
	for i := range vs {
		dirs[i] = vs[i].dir
	}
	return dirs
}

// hasAll reports whether dir holds every server binary.
func hasAll(dir string) bool {
	for _, b := range serverBinaries {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Options configures Start.
type Options struct {
	// Dir is the directory the data directory is created in (as
	// Dir/postgres-*). Empty means a new temporary directory, removed by Stop.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Logger receives lifecycle messages, and the server's own log lines at
	// debug level. Nil means slog.Default().
	Logger *slog.Logger
}

// Server is a running PostgreSQL server on 127.0.0.1. Stop it with Stop.
type Server struct {
	binDir  string
	port    int
	dataDir string
	// removeDir is what Stop removes: the temporary parent Start created, or
	// the data directory Start created inside Options.Dir.
	removeDir string
	logger    *slog.Logger

	cmd  *exec.Cmd
	done chan struct{} // closed when the server process has exited
	err  error         // the server's exit status, valid once done is closed
	tail *tailBuffer   // the end of the server's log

	stopOnce sync.Once
	stopErr  error
}

// Start initializes a new database cluster and starts a server on it,
// returning once it accepts connections. ctx bounds the start only; the
// server runs until Stop. It returns an error wrapping ErrUnavailable when
// the binaries are missing.
func Start(ctx context.Context, o Options) (*Server, error) {
	binDir, ok := Available()
	if !ok {
		return nil, fmt.Errorf("start postgres: %w", ErrUnavailable)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	var cred *ids
	if os.Geteuid() == 0 {
		u, err := lookupIDs(RunAsUser)
		if err != nil {
			return nil, fmt.Errorf("start postgres: running as root, so initdb and postgres must run as user %q: %w", RunAsUser, err)
		}
		cred = u
	}

	sweepStale(logger)

	s := &Server{binDir: binDir, logger: logger}
	parent := o.Dir
	if parent == "" {
		tmp, err := os.MkdirTemp("", tempPrefix)
		if err != nil {
			return nil, fmt.Errorf("start postgres: create temporary directory: %w", err)
		}
		_ = os.WriteFile(filepath.Join(tmp, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644)
		parent, s.removeDir = tmp, tmp
	} else if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("start postgres: create %s: %w", parent, err)
	}
	fail := func(err error) (*Server, error) {
		if s.removeDir != "" {
			_ = os.RemoveAll(s.removeDir)
		}
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	dataDir, err := os.MkdirTemp(parent, "postgres-")
	if err != nil {
		return fail(fmt.Errorf("create data directory: %w", err))
	}
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	if s.removeDir == "" {
		s.removeDir = dataDir
	}
	s.dataDir = dataDir
	if cred != nil {
		if err := handOver(parent, dataDir, cred); err != nil {
			return fail(err)
		}
	}

	start := time.Now()
	if err := s.initdb(ctx, parent, cred); err != nil {
		return fail(err)
	}
	logger.Debug("postgres: initdb done", "data_dir", dataDir, "duration", time.Since(start).String())

	// A free port picked by the kernel may be taken again before the server
	// binds it; try a few times.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := o.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return fail(err)
			}
		}
		s.port = port
		lastErr = s.run(ctx, parent, cred)
		if lastErr == nil {
			logger.Info("postgres: server ready", "url", s.URL("postgres"), "data_dir", dataDir,
				"bin_dir", binDir, "duration", time.Since(start).String())
			return s, nil
		}
		if o.Port != 0 || !strings.Contains(lastErr.Error(), "could not bind") {
			break
		}
	}
	return fail(lastErr)
}

// initdb creates the cluster in s.dataDir.
func (s *Server) initdb(ctx context.Context, workDir string, cred *ids) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, "initdb"),
		"--pgdata="+s.dataDir,
		"--username="+Superuser,
		"--auth=trust",
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync",
	)
	cmd.Dir = workDir
	cmd.Env = serverEnv()
	setSysProcAttr(cmd, cred)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "ermission denied") {
			msg += fmt.Sprintf(" (every directory above %s must be searchable by user %q)", s.dataDir, RunAsUser)
		}
		return fmt.Errorf("initdb %s: %w: %s", s.dataDir, err, msg)
	}
	return nil
}

// run starts the server on s.port and waits until it accepts connections.
func (s *Server) run(ctx context.Context, workDir string, cred *ids) error {
	args := []string{
		"-D", s.dataDir,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "logging_collector=off",
		"-c", "max_connections=200",
	}
	// Unix socket paths are limited to about 100 bytes; without a socket the
	// server still serves TCP, which is all this package uses.
	sock := ""
	if len(s.dataDir)+len("/.s.PGSQL.65535.lock") < 100 {
		sock = s.dataDir
	}
	args = append(args, "-c", "unix_socket_directories="+sock)

	cmd := exec.Command(filepath.Join(s.binDir, "postgres"), args...)
	cmd.Dir = workDir
	cmd.Env = serverEnv()
	setSysProcAttr(cmd, cred)
	setParentDeathSignal(cmd)
	tail := &tailBuffer{max: 16 << 10}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", cmd.Path, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			tail.add(line)
			s.logger.Debug("postgres: "+line, "port", s.port)
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	s.cmd, s.tail = cmd, tail
	s.done = make(chan struct{})
	go func() {
		s.err = cmd.Wait()
		_ = pw.Close()
		close(s.done)
	}()

	waitCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		err := s.ping(waitCtx)
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("postgres exited before accepting connections (%v): %s", s.err, tail.String())
		case <-waitCtx.Done():
			s.kill()
			return fmt.Errorf("postgres on port %d did not accept connections: %w (last error: %v): %s",
				s.port, waitCtx.Err(), err, tail.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ping connects to the server on s.port and checks that it is this one (the
// port may belong to another server: one started with the same Options.Port,
// or one that took a port freePort picked).
func (s *Server) ping(ctx context.Context) error {
	c, err := pgx.Connect(ctx, s.URL("postgres")+"&connect_timeout=2")
	if err != nil {
		return err
	}
	defer func() { _ = c.Close(context.Background()) }()
	var dir string
	if err := c.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dir); err != nil {
		return err
	}
	if !sameDir(dir, s.dataDir) {
		return fmt.Errorf("port %d is served by another server (data directory %s)", s.port, dir)
	}
	return nil
}

// sameDir reports whether a and b name the same directory.
func sameDir(a, b string) bool {
	if a == b {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// kill stops the server at once and waits for it.
func (s *Server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// URL returns the connection URL of database db (default "postgres") as the
// superuser, e.g. postgres://postgres@127.0.0.1:5432/app?sslmode=disable.
func (s *Server) URL(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, s.port, url.PathEscape(db))
}

// Port returns the TCP port the server listens on (on 127.0.0.1).
func (s *Server) Port() int { return s.port }

// BinDir returns the directory of the server binaries in use. The client
// tools of the same version (pg_dump, pg_restore, psql) are usually there too.
func (s *Server) BinDir() string { return s.binDir }

// DataDir returns the server's data directory.
func (s *Server) DataDir() string { return s.dataDir }

// CreateDatabase creates database name, owned by the superuser.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return fmt.Errorf("create database %q: connect: %w", name, err)
	}
	defer func() { _ = c.Close(context.Background()) }()
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

// Stop shuts the server down (fast shutdown: open sessions are ended, their
// transactions rolled back), killing it if that takes over 15 seconds, and
// removes what Start created on disk. It may be called more than once; later
// calls return the first result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			select {
			case <-s.done:
				// Already gone (killed, or crashed).
			default:
				_ = signalFastShutdown(s.cmd.Process)
				select {
				case <-s.done:
				case <-time.After(stopTimeout):
					s.logger.Warn("postgres: fast shutdown timed out; killing the server", "port", s.port)
					s.kill()
				}
			}
		}
		if s.removeDir != "" {
			if err := os.RemoveAll(s.removeDir); err != nil {
				s.stopErr = fmt.Errorf("stop postgres: remove %s: %w", s.removeDir, err)
			}
		}
		s.logger.Info("postgres: server stopped", "port", s.port)
	})
	return s.stopErr
}

// Done is closed when the server process has exited, whether by Stop or not.
func (s *Server) Done() <-chan struct{} { return s.done }

// serverEnv is the environment of initdb and the server: the caller's,
// without PG* variables that could change what they do, and with a locale
// that exists everywhere.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ids are the numeric user and group of RunAsUser.
type ids struct{ uid, gid int }

// lookupIDs finds the user and primary group ids of name.
func lookupIDs(name string) (*ids, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%w (the postgresql package creates it)", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user %q has uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("user %q has gid %q: %w", name, u.Gid, err)
	}
	return &ids{uid, gid}, nil
}

// handOver gives the data directory to the server's user and makes sure that
// user can reach it: parent gets o+x, and so do its ancestors inside the
// temporary directory (t.TempDir() makes 0700 directories). Any other
// ancestor it cannot pass is reported rather than changed.
func handOver(parent, dataDir string, c *ids) error {
	if err := os.Chown(dataDir, c.uid, c.gid); err != nil {
		return fmt.Errorf("give %s to user %q: %w", dataDir, RunAsUser, err)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", dataDir, err)
	}
	abs, err := filepath.Abs(parent)
	if err != nil {
		return err
	}
	tmp, _ := filepath.Abs(os.TempDir())
	for dir := abs; ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if !searchable(fi, c) {
			inTemp := dir == abs || (strings.HasPrefix(dir, tmp+string(filepath.Separator)))
			if !inTemp {
				return fmt.Errorf("user %q cannot reach %s: directory %s is not searchable by it; choose another Options.Dir", RunAsUser, dataDir, dir)
			}
			if err := os.Chmod(dir, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("make %s searchable for user %q: %w", dir, RunAsUser, err)
			}
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// searchable reports whether a process with ids c may pass through directory
// fi, judging by its permission bits.
func searchable(fi os.FileInfo, c *ids) bool {
	perm := fi.Mode().Perm()
	if uid, gid, ok := owner(fi); ok {
		if uid == c.uid {
			return perm&0o100 != 0
		}
		if gid == c.gid {
			return perm&0o010 != 0
		}
	}
	return perm&0o001 != 0
}

// sweepStale removes temporary directories earlier Starts created whose
// creating process is gone (it died without calling Stop) and whose server is
// not running.
func sweepStale(logger *slog.Logger) {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range matches {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being created
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || processAlive(pid) {
			continue
		}
		pidFiles, _ := filepath.Glob(filepath.Join(dir, "postgres-*", "postmaster.pid"))
		running := false
		for _, pf := range pidFiles {
			if b, err := os.ReadFile(pf); err == nil {
				first, _, _ := strings.Cut(string(b), "\n")
				if p, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && processAlive(p) {
					running = true
				}
			}
		}
		if running {
			continue
		}
		if err := os.RemoveAll(dir); err == nil {
			logger.Debug("postgres: removed a data directory left by a dead process", "dir", dir, "pid", pid)
		}
	}
}

// tailBuffer keeps the last lines written to it, up to max bytes.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	size  int
	lines []string
}

func (t *tailBuffer) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	t.size += len(line) + 1
	for t.size > t.max && len(t.lines) > 1 {
		t.size -= len(t.lines[0]) + 1
		t.lines = t.lines[1:]
	}
}

// String returns the kept lines.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}
