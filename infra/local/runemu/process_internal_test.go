package runemu

import (
	"strings"
	"testing"
)

func TestTailBuffer(t *testing.T) {
	b := newTailBuffer(10)
	b.Write([]byte("hello\n"))
	b.Write([]byte("world\n"))
	if got, want := b.String(), "llo\nworld\n"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	b.Write([]byte(strings.Repeat("x", 25)))
	if got, want := b.String(), strings.Repeat("x", 10); got != want {
		t.Errorf("after a long write: %q, want %q", got, want)
	}
	lines := newTailBuffer(100)
	lines.Write([]byte("a\n\nb\nc\n\n"))
	if got, want := lines.lastLines(2), "b\nc"; got != want {
		t.Errorf("lastLines(2) = %q, want %q", got, want)
	}
}
