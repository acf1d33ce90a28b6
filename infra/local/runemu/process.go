package runemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// logTailBytes bounds the output kept in memory per revision process.
	logTailBytes = 64 << 10
	// stderrTailBytes bounds the stderr kept for failure messages.
	stderrTailBytes = 8 << 10
	// failureLogLines is how many trailing stderr lines a failure message quotes.
	failureLogLines = 10
	// stopGrace is how long a process has to exit after SIGTERM before SIGKILL.
	stopGrace = time.Second
)

// procSpec is what to run for one revision.
type procSpec struct {
	revision string
	path     string
	args     []string
	env      []string // full environment
	port     int
	logDir   string
}

// process is one running revision program, started in its own process group.
type process struct {
	revision string
	port     int
	addr     string
	cmd      *exec.Cmd
	logs     *tailBuffer // stdout and stderr interleaved
	stderr   *tailBuffer
	logFile  *os.File

	exited   chan struct{} // closed once the process was reaped
	waitErr  error         // valid after exited is closed
	stopping atomic.Bool   // set when we stop it on purpose
}

// procSet tracks every live process so Close can stop them all.
type procSet struct {
	mu     sync.Mutex
	closed bool
	procs  map[*process]struct{}
}

// errProcsClosed is returned when starting a process after Close.
var errProcsClosed = errors.New("emulator is closing")

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start starts spec's program and registers it; the process is reaped in the background.
func (ps *procSet) start(spec procSpec) (*process, error) {
	p := &process{
		revision: spec.revision,
		port:     spec.port,
		addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(spec.port)),
		logs:     newTailBuffer(logTailBytes),
		stderr:   newTailBuffer(stderrTailBytes),
		exited:   make(chan struct{}),
	}
	cmd := exec.Command(spec.path, spec.args...)
	cmd.Env = spec.env
	cmd.Stdin = nil
	var stdout, stderr io.Writer = p.logs, io.MultiWriter(p.logs, p.stderr)
	if spec.logDir != "" {
		if err := os.MkdirAll(spec.logDir, 0o755); err != nil {
			return nil, fmt.Errorf("create log dir: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(spec.logDir, spec.revision+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open revision log: %w", err)
		}
		p.logFile = f
		stdout, stderr = io.MultiWriter(stdout, f), io.MultiWriter(stderr, f)
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second // do not hang on pipes held by stray grandchildren
	setProcessGroup(cmd)
	p.cmd = cmd

	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		p.closeLog()
		return nil, errProcsClosed
	}
	if err := cmd.Start(); err != nil {
		p.closeLog()
		return nil, fmt.Errorf("start %s: %w", spec.path, err)
	}
	if ps.procs == nil {
		ps.procs = make(map[*process]struct{})
	}
	ps.procs[p] = struct{}{}
	go func() {
		p.waitErr = cmd.Wait()
		p.closeLog()
		ps.mu.Lock()
		delete(ps.procs, p)
		ps.mu.Unlock()
		close(p.exited)
	}()
	return p, nil
}

// closeAll refuses new processes and stops every live one, waiting until all are reaped.
func (ps *procSet) closeAll() {
	ps.mu.Lock()
	ps.closed = true
	procs := make([]*process, 0, len(ps.procs))
	for p := range ps.procs {
		procs = append(procs, p)
	}
	ps.mu.Unlock()
	stopAll(procs)
}

// stopAll stops procs in parallel and waits for all of them.
func stopAll(procs []*process) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.stop)
	}
	wg.Wait()
}

// pids returns the pid of every live process by revision.
func (ps *procSet) pids() map[string]int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make(map[string]int, len(ps.procs))
	for p := range ps.procs {
		out[p.revision] = p.cmd.Process.Pid
	}
	return out
}

func (p *process) closeLog() {
	if p.logFile != nil {
		p.logFile.Close()
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after a grace period; it returns once
// the process was reaped. Safe to call more than once.
func (p *process) stop() {
	p.stopping.Store(true)
	select {
	case <-p.exited:
		// The leader is gone; make sure nothing it started is left behind.
		killProcessGroup(p.cmd.Process, true)
		return
	default:
	}
	killProcessGroup(p.cmd.Process, false)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
	}
	killProcessGroup(p.cmd.Process, true)
	<-p.exited
}

// exitStatus describes how the process ended; call after exited is closed.
func (p *process) exitStatus() string {
	if p.waitErr == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ProcessState.String()
	}
	return p.waitErr.Error()
}

// Failure kinds of waitReady.
var (
	errExitedEarly  = errors.New("exited before listening")
	errStartTimeout = errors.New("did not listen within the start timeout")
)

// waitReady waits until the process accepts TCP connections on its port. It fails with
// errExitedEarly when the process exits first, errStartTimeout after timeout, or ctx's error.
func (p *process) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	d := net.Dialer{Timeout: 200 * time.Millisecond}
	for {
		conn, err := d.DialContext(ctx, "tcp", p.addr)
		if err == nil {
			conn.Close()
			// A process that exits right after a lucky connect is not ready.
			select {
			case <-p.exited:
				return errExitedEarly
			default:
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
			return errExitedEarly
		case <-deadline.C:
			return errStartTimeout
		case <-tick.C:
		}
	}
}

// tailBuffer keeps the last max bytes written to it. It is safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

// Write appends b, dropping the oldest bytes beyond the bound.
func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(b)
	if len(b) >= t.max {
		b = b[len(b)-t.max:]
		t.buf = append(t.buf[:0], b...)
		return n, nil
	}
	if over := len(t.buf) + len(b) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, b...)
	return n, nil
}

// String returns the kept bytes.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lastLines returns up to n trailing non-empty lines joined by newlines.
func (t *tailBuffer) lastLines(n int) string {
	lines := strings.Split(strings.TrimRight(t.String(), "\n"), "\n")
	var kept []string
	for i := len(lines) - 1; i >= 0 && len(kept) < n; i-- {
		if strings.TrimSpace(lines[i]) != "" {
			kept = append(kept, lines[i])
		}
	}
	for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
		kept[i], kept[j] = kept[j], kept[i]
	}
	return strings.Join(kept, "\n")
}
