package events_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ai-square/coalmine/events"
)

// fixtureFromTestdata returns the content of testdata/name.
func fixtureFromTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// checkFieldError fails unless err is a *events.FieldError from source about field that
// also classifies as events.ErrMalformed.
func checkFieldError(t *testing.T, err error, source, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a FieldError on field %q", field)
	}
	if !errors.Is(err, events.ErrMalformed) {
		t.Errorf("errors.Is(%v, ErrMalformed) = false, want true", err)
	}
	var fe *events.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("got error %T %v, want *events.FieldError", err, err)
	}
	if fe.Field != field {
		t.Errorf("got field %q, want %q (error: %v)", fe.Field, field, err)
	}
	if fe.Source != source {
		t.Errorf("got source %q, want %q (error: %v)", fe.Source, source, err)
	}
	if fe.Problem == "" {
		t.Errorf("got empty problem in %v", err)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  *events.FieldError
		want string
	}{
		{
			name: "field",
			err:  &events.FieldError{Source: "gcr notification", Field: "digest", Problem: "missing"},
			want: `gcr notification: field "digest": missing`,
		},
		{
			name: "whole payload",
			err:  &events.FieldError{Source: "scheduler tick", Problem: "invalid JSON"},
			want: `scheduler tick: invalid JSON`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFieldErrorClassifiesAsMalformedWhenWrapped(t *testing.T) {
	inner := &events.FieldError{Source: "monitoring incident", Field: "incident.state", Problem: "missing"}
	err := fmt.Errorf("handle alert: %w", inner)
	if !errors.Is(err, events.ErrMalformed) {
		t.Errorf("errors.Is(wrapped, ErrMalformed) = false, want true")
	}
	var fe *events.FieldError
	if !errors.As(err, &fe) || fe != inner {
		t.Errorf("errors.As(wrapped) got %v, want %v", fe, inner)
	}
}
