package release

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/api/option"

	"github.com/ai-square/coalmine/shared/metrics"
	"github.com/ai-square/coalmine/shared/policy"
)

// Readers caches one Cloud Monitoring reader per project and alignment period.
type Readers struct {
	// ClientOptions are passed to every reader (nil: MONITORING_EMULATOR_HOST when set,
	// else Google's API).
	ClientOptions []option.ClientOption

	mu      sync.Mutex
	readers map[string]*metrics.Reader
}

// For returns the reader of svc's project with its gates' alignment, connecting on first
// use.
func (r *Readers) For(ctx context.Context, svc *policy.Service) (Metrics, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := fmt.Sprintf("%s/%s", svc.Project, svc.Gates.Alignment.Duration)
	if m, ok := r.readers[key]; ok {
		return m, nil
	}
	m, err := metrics.New(ctx, metrics.Options{Project: svc.Project, Alignment: svc.Gates.Alignment.Duration, ClientOptions: r.ClientOptions})
	if err != nil {
		return nil, err
	}
	if r.readers == nil {
		r.readers = map[string]*metrics.Reader{}
	}
	r.readers[key] = m
	return m, nil
}

// Close closes every reader.
func (r *Readers) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, m := range r.readers {
		errs = append(errs, m.Close())
	}
	r.readers = nil
	return errors.Join(errs...)
}
