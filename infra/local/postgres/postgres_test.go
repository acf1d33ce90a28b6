package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestStartCreateDatabaseConnectStop(t *testing.T) {
	SkipIfUnavailable(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	begin := time.Now()
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("started in %v on port %d (bin %s)", time.Since(begin), s.Port(), s.BinDir())
	defer s.Stop()

	if err := s.CreateDatabase(ctx, "app-db"); err != nil {
		t.Fatalf("CreateDatabase: %v", err)
	}
	if err := s.CreateDatabase(ctx, "app-db"); err == nil {
		t.Errorf("CreateDatabase of an existing database: got nil error, want one")
	}
	wantURL := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/app-db?sslmode=disable", s.Port())
	if got := s.URL("app-db"); got != wantURL {
		t.Errorf("URL = %q, want %q", got, wantURL)
	}

	pool, err := pgxpool.New(ctx, s.URL("app-db"))
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY, name text)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO t VALUES (1, 'héllo ☃')`); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var name, db, enc, fsync, listen, sync string
	err = pool.QueryRow(ctx, `SELECT name, current_database(), current_setting('server_encoding'),
		current_setting('fsync'), current_setting('listen_addresses'), current_setting('synchronous_commit') FROM t`).
		Scan(&name, &db, &enc, &fsync, &listen, &sync)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	for _, c := range []struct{ what, got, want string }{
		{"name", name, "héllo ☃"},
		{"database", db, "app-db"},
		{"server_encoding", enc, "UTF8"},
		{"fsync", fsync, "off"},
		{"synchronous_commit", sync, "off"},
		{"listen_addresses", listen, "127.0.0.1"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if os.Geteuid() == 0 {
		fi, err := os.Stat(filepath.Join(s.DataDir(), "PG_VERSION"))
		if err != nil {
			t.Fatal(err)
		}
		uid, _, _ := owner(fi)
		want, _ := lookupIDs(RunAsUser)
		if uid != want.uid {
			t.Errorf("data directory owned by uid %d, want %d (%s)", uid, want.uid, RunAsUser)
		}
	}

	// Stop ends open sessions (fast shutdown) rather than waiting for them.
	pid := s.cmd.Process.Pid
	stopBegin := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("stopped in %v with an open pool", time.Since(stopBegin))
	pool.Close()
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if processAlive(pid) {
		t.Errorf("server process %d still alive after Stop", pid)
	}
	if _, err := os.Stat(s.DataDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory after Stop: stat error %v, want not exist", err)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port()), time.Second); err == nil {
		c.Close()
		t.Errorf("port %d still accepts connections after Stop", s.Port())
	}
}

func TestStartInDirOnPort(t *testing.T) {
	SkipIfUnavailable(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "nested")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(ctx, Options{Dir: dir, Port: port})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Stop()
	if s.Port() != port {
		t.Errorf("Port = %d, want %d", s.Port(), port)
	}
	if got := filepath.Dir(s.DataDir()); got != dir {
		t.Errorf("data directory %s is not in Options.Dir %s", s.DataDir(), dir)
	}
	c, err := pgx.Connect(ctx, s.URL(""))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	c.Close(ctx)

	// A second server on the same port fails with the server's own reason.
	_, err = Start(ctx, Options{Dir: dir, Port: port})
	if err == nil || !strings.Contains(err.Error(), "could not bind") {
		t.Errorf("second Start on port %d: got %v, want a bind error", port, err)
	} else {
		t.Logf("second Start on port %d: %v", port, err)
	}

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(s.DataDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory after Stop: stat error %v, want not exist", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("Options.Dir after Stop: %v, want it kept", err)
	}
}

func TestUnavailable(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	old := libDir
	libDir = filepath.Join(t.TempDir(), "none")
	defer func() { libDir = old }()

	if dir, ok := Available(); ok {
		t.Fatalf("Available = %q, true; want false", dir)
	}
	_, err := Start(context.Background(), Options{})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Start: got %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "apt-get install -y postgresql") {
		t.Errorf("error %q does not say what to install", err)
	}
}

// recordTB records what SkipIfUnavailable does to a test.
type recordTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordTB) Helper()                        {}
func (r *recordTB) Fatalf(format string, a ...any) { r.fatal = fmt.Sprintf(format, a...) }
func (r *recordTB) Skipf(format string, a ...any)  { r.skip = fmt.Sprintf(format, a...) }

func TestSkipIfUnavailable(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	old := libDir
	libDir = filepath.Join(t.TempDir(), "none")
	defer func() { libDir = old }()

	for _, c := range []struct {
		env              string
		wantFail, wantSk bool
	}{
		{"", false, true},
		{"0", false, true},
		{"false", false, true},
		{"1", true, false},
		{"yes", true, false},
	} {
		t.Setenv(EnvRequire, c.env)
		r := &recordTB{TB: t}
		SkipIfUnavailable(r)
		if (r.fatal != "") != c.wantFail || (r.skip != "") != c.wantSk {
			t.Errorf("%s=%q: fatal %q, skip %q; want fail %v, skip %v", EnvRequire, c.env, r.fatal, r.skip, c.wantFail, c.wantSk)
		}
		if r.fatal != "" && !strings.Contains(r.fatal, "apt-get install -y postgresql") {
			t.Errorf("failure %q does not say what to install", r.fatal)
		}
	}
}

func TestVersionDirsHighestFirst(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9.6", "15", "13", "16", "notaversion"} {
		if err := os.MkdirAll(filepath.Join(root, v, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got := versionDirs(root)
	want := []string{"16", "15", "13", "9.6"}
	if len(got) != len(want) {
		t.Fatalf("versionDirs = %v, want versions %v", got, want)
	}
	for i := range want {
		if got[i] != filepath.Join(root, want[i], "bin") {
			t.Errorf("versionDirs[%d] = %s, want version %s", i, got[i], want[i])
		}
	}
}

// helperEnv makes the test binary act as a process that starts a server,
// reports it and dies without stopping it.
const helperEnv = "COALMINE_POSTGRES_HELPER"

func TestMain(m *testing.M) {
	if how := os.Getenv(helperEnv); how != "" {
		helper(how)
		return
	}
	os.Exit(m.Run())
}

// helper starts a server, reports it on stdout and dies as told.
func helper(how string) {
	s, err := Start(context.Background(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("READY", s.cmd.Process.Pid, s.Port(), filepath.Dir(s.DataDir()))
	if how == "panic" {
		panic("test binary panics with a server running")
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// A test binary that dies (panic, SIGKILL) leaves no server running, and the
// next Start removes the directory it left.
func TestNoOrphanWhenParentDies(t *testing.T) {
	SkipIfUnavailable(t)
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("needs Linux (parent-death signal)")
	}
	for _, how := range []string{"panic", "kill"} {
		t.Run(how, func(t *testing.T) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), helperEnv+"="+how)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var pid, port int
			var dir string
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				if rest, ok := strings.CutPrefix(line, "READY "); ok {
					f := strings.Fields(rest)
					pid, _ = strconv.Atoi(f[0])
					port, _ = strconv.Atoi(f[1])
					dir = f[2]
					break
				}
				if strings.HasPrefix(line, "ERROR") {
					t.Fatalf("helper: %s", line)
				}
			}
			go func() {
				for sc.Scan() {
				}
			}()
			_ = cmd.Wait()
			if pid == 0 {
				t.Fatalf("helper reported no server")
			}
			deadline := time.Now().Add(10 * time.Second)
			for processAlive(pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if processAlive(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("server %d (port %d) still running 10s after its parent died", pid, port)
			}
			// Backends may take a moment longer than the postmaster.
			time.Sleep(100 * time.Millisecond)
			// Any process's Start sweeps directories of dead owners, and test
			// packages run in parallel: another one may have swept it already.
			if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
				t.Logf("helper's directory %s was already swept by another process", dir)
				return
			}
			sweepStale(slog.Default())
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after sweep, %s: %v, want removed", dir, err)
			}
		})
	}
}
