package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// visible returns s with every character that would act on a terminal
// instead of showing — C0 and C1 controls such as ESC and BEL, DEL,
// bidirectional overrides, line and paragraph separators — written as a Go
// escape (ESC as \x1b, BEL as \a, U+202E as \u202e), and every byte that is
// not UTF-8 as \xNN. Characters in keep are left as they are.
func visible(s, keep string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || hidden(r) && !strings.ContainsRune(keep, r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case hidden(r) && !strings.ContainsRune(keep, r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// hidden reports whether r acts on a terminal rather than showing.
func hidden(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Bidi_Control, unicode.Zl, unicode.Zp)
}

// visibleWriter passes everything written through it on as visible(_, "\n\t")
// does. The CLI writes all its output through one: what it prints comes
// from the rollout state, Cloud Run, Cloud Storage and error messages, and
// none of that may recolour, retitle or rewrite the operator's terminal.
type visibleWriter struct {
	w io.Writer
	// partial is an incomplete UTF-8 sequence that ended the last write,
	// held until the rest arrives.
	partial []byte
}

func (v *visibleWriter) Write(p []byte) (int, error) {
	b := append(v.partial, p...)
	v.partial = nil
	if n := incompleteTail(b); n > 0 {
		v.partial = append([]byte(nil), b[len(b)-n:]...)
		b = b[:len(b)-n]
	}
	if _, err := io.WriteString(v.w, visible(string(b), "\n\t")); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flush writes out a held incomplete sequence (escaped: it never completed).
func (v *visibleWriter) flush() {
	if len(v.partial) > 0 {
		io.WriteString(v.w, visible(string(v.partial), "\n\t"))
		v.partial = nil
	}
}

// incompleteTail returns the length of the incomplete UTF-8 sequence that
// ends b, or 0.
func incompleteTail(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if utf8.FullRune(b[i:]) {
				return 0
			}
			return len(b) - i
		}
	}
	return 0
}
