package cli

import (
	"strings"
	"testing"
)

func TestVisible(t *testing.T) {
	tests := []struct{ in, keep, want string }{
		{"plain text, ünïcode 中文 ✓", "", "plain text, ünïcode 中文 ✓"},
		{"\x1b[31mred\x1b[0m", "", `\x1b[31mred\x1b[0m`},
		{"bell\a", "", `bell\a`},
		{"a\nb\tc\rd", "", `a\nb\tc\rd`},
		{"a\nb\tc\rd", "\n\t", "a\nb\tc\\rd"},
		{"del\x7f c1\u009b2J nel\u0085", "", `del\x7f c1\u009b2J nel\u0085`},
		{"evil\u202etxt.exe \u2066x\u2069 line\u2028sep", "", `evil\u202etxt.exe \u2066x\u2069 line\u2028sep`},
		{"bad \xff\xfe utf8", "", `bad \xff\xfe utf8`},
	}
	for _, tt := range tests {
		if got := visible(tt.in, tt.keep); got != tt.want {
			t.Errorf("visible(%q, %q) = %q, want %q", tt.in, tt.keep, got, tt.want)
		}
	}
}

func TestVisibleWriterKeepsRunesSplitAcrossWrites(t *testing.T) {
	var b strings.Builder
	w := &visibleWriter{w: &b}
	in := []byte("中\x1b文\n")
	for i := range in {
		if n, err := w.Write(in[i : i+1]); n != 1 || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	w.Write([]byte("end \xe4\xb8"))
	w.flush()
	if got, want := b.String(), "中\\x1b文\nend \\xe4\\xb8"; got != want {
		t.Errorf("written %q, want %q", got, want)
	}
}
