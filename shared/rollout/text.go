package rollout

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on the free text the state keeps. Every reason, error, actor and
// progress note that reaches the state is clipped to these on the way in
// (Apply), so a rollback can always be written whatever an operator typed or
// a hook printed: the state stays far below MaxEncodedSize.
const (
	// MaxReason bounds the rollout's reason and the last error it keeps.
	MaxReason = 1024
	// MaxEntryReason bounds the reason of one history entry.
	MaxEntryReason = 256
	// MaxActor bounds who asked ("operator:NAME", "alert:POLICY", ...).
	MaxActor = 128
	// MaxImage bounds an image reference: a registry host, a repository
	// path of at most 255 characters and a digest fit well within it.
	MaxImage = 512
)

// Clip returns s fit to keep in the state: invalid UTF-8 and control
// characters (newlines and tabs included) become spaces, and text longer
// than n bytes is cut at a character boundary and ends with a note of how
// much was cut. The result is at most n bytes, and JSON encodes it without
// \u escapes (the state is encoded without HTML escaping), so its encoded
// size is at most 2n bytes plus the quotes.
func Clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	note := func(cut int) string { return "… (" + strconv.Itoa(cut) + " bytes cut)" }
	keep := max(n-len(note(len(s))), 0)
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	out := s[:keep] + note(len(s)-keep)
	for len(out) > n { // n shorter than the note itself: keep what fits
		_, size := utf8.DecodeLastRuneInString(out)
		out = out[:len(out)-size]
	}
	return out
}
