package monitoringemu

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// The alert policy and notification channel lists take a filter in Google's "sorting and
// filtering" language. This server reads the subset coalmine needs:
//
//	filter = clause { "AND" clause }
//	clause = FIELD "=" string
//
// with the fields each list names (display_name, user_labels.KEY, …). Anything else is
// INVALID_ARGUMENT naming the part it does not read.

// listClause is one FIELD = "VALUE" of a list filter.
type listClause struct {
	field, value string
}

// parseListFilter parses filter; known reports whether a field may be filtered on, and
// fields names them for error messages.
func parseListFilter(filter string, known func(field string) bool, fields string) ([]listClause, error) {
	if strings.TrimSpace(filter) == "" {
		return nil, nil
	}
	bad := func(format string, args ...any) error {
		return invalid("filter %q: %s (this emulator reads %s = \"…\" joined by AND)", filter, fmt.Sprintf(format, args...), fields)
	}
	toks, err := tokenize(filter)
	if err != nil {
		return nil, bad("%v", err)
	}
	var out []listClause
	for i := 0; ; {
		if i+3 > len(toks) {
			return nil, bad("incomplete clause at the end")
		}
		f, op, v := toks[i], toks[i+1], toks[i+2]
		switch {
		case f.kind != "ident" || strings.EqualFold(f.text, "AND") || strings.EqualFold(f.text, "OR") || strings.EqualFold(f.text, "NOT"):
			return nil, bad("unsupported %q at offset %d", f.text, f.pos)
		case !known(f.text):
			return nil, bad("unsupported field %q", f.text)
		case op.kind != "op" || op.text != "=":
			return nil, bad("unsupported operator %q after %s", op.text, f.text)
		case v.kind != "string":
			return nil, bad("value of %s must be a quoted string, got %q", f.text, v.text)
		}
		out = append(out, listClause{field: f.text, value: v.text})
		i += 3
		if i == len(toks) {
			return out, nil
		}
		if t := toks[i]; t.kind != "ident" || t.text != "AND" {
			return nil, bad("unsupported %q at offset %d", t.text, t.pos)
		}
		i++
	}
}

// labelField returns KEY of "PREFIX.KEY" (prefix given without the dot), or false.
func labelField(field string, prefixes ...string) (string, bool) {
	for _, p := range prefixes {
		if k, ok := strings.CutPrefix(field, p+"."); ok && k != "" && !strings.Contains(k, ".") {
			return k, true
		}
	}
	return "", false
}

// matchList reports whether every clause holds, value reading a field of the item (a
// missing label never matches).
func matchList(cs []listClause, value func(field string) (string, bool)) bool {
	for _, c := range cs {
		v, ok := value(c.field)
		if !ok || v != c.value {
			return false
		}
	}
	return true
}

// listFingerprint identifies a list request without its paging fields, so that a page
// token is only accepted for the list that produced it.
func listFingerprint(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// listPage returns the bounds [start, end) of the page of n items that token and size
// select, and the next page's token ("" on the last page). size 0 means maxSize.
func listPage(n int, size int32, token string, fp uint64, maxSize int) (start, end int, next string, err error) {
	if size < 0 {
		return 0, 0, "", invalid("page_size %d is negative", size)
	}
	if token != "" {
		if start, err = parsePageToken(token, fp); err != nil {
			return 0, 0, "", invalid("page_token: %v", err)
		}
	}
	s := int(size)
	if s == 0 || s > maxSize {
		s = maxSize
	}
	start = min(start, n)
	end = min(start+s, n)
	if end < n {
		next = pageToken(end, fp)
	}
	return start, end, next, nil
}
