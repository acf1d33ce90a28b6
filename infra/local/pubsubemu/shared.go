package pubsubemu

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
)

// Shared is one Google Pub/Sub emulator for a whole test binary: it takes
// seconds to start, so it is started on first use and every test uses a
// Pub/Sub project of its own (NextProject). TestMain calls Close.
type Shared struct {
	// Logger receives the emulator's logs (default: discarded).
	Logger *slog.Logger

	once sync.Once
	srv  *Server
	err  error
	seq  atomic.Int64
}

// Server starts the emulator on first use and returns it.
func (s *Shared) Server() (*Server, error) {
	s.once.Do(func() {
		log := s.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		s.srv, s.err = Start(context.Background(), Options{Backend: BackendGcloud, Logger: log})
	})
	return s.srv, s.err
}

// NextProject returns a project ID no other caller of this Shared got.
func (s *Shared) NextProject(prefix string) string {
	return prefix + "-" + strconv.FormatInt(s.seq.Add(1), 10)
}

// Close stops the emulator if it was started.
func (s *Shared) Close() error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Close()
}
