package monitoringemu

import (
	"fmt"
	"strings"
	"unicode"
)

// The monitoring filter language (https://cloud.google.com/monitoring/api/v3/filters)
// has no Go implementation, so this is a small hand-written parser for the subset the
// product uses:
//
//	filter  = clause { ["AND"] clause }      (adjacent clauses are ANDed, as at Google)
//	clause  = field ( "=" | "!=" ) string
//	        | field "=" "one_of" "(" string { "," string } ")"
//	        | "metric.type" "=" "starts_with" "(" string ")"   (metric descriptors only)
//	field   = "metric.type" | "resource.type" | "project"
//	        | ("resource.labels." | "resource.label.") KEY
//	        | ("metric.labels." | "metric.label.") KEY
//
// Everything else (OR, NOT, parentheses, other functions, unquoted
// values, ":" and comparison operators, unknown fields) is refused with an error that
// names the offending part, never silently ignored.

// fieldKind is what a clause tests.
type fieldKind int

const (
	fieldMetricType fieldKind = iota
	fieldResourceType
	fieldResourceLabel
	fieldMetricLabel
	fieldProject
)

// clause is one comparison of a filter.
type clause struct {
	kind       fieldKind
	key        string   // label key for label fields
	negate     bool     // "!="
	values     []string // one value, or several for one_of
	startsWith bool     // metric.type = starts_with("…")
}

func (c clause) matches(v string) bool {
	if c.startsWith {
		return strings.HasPrefix(v, c.values[0])
	}
	in := false
	for _, w := range c.values {
		if v == w {
			in = true
			break
		}
	}
	return in != c.negate
}

type token struct {
	kind string // "ident", "string", "op", "(", ")", ","
	text string
	pos  int
}

func tokenize(s string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'':
			q := c
			j := i + 1
			var b strings.Builder
			for {
				if j >= len(s) {
					return nil, fmt.Errorf("unterminated string at offset %d", i)
				}
				if s[j] == '\\' && j+1 < len(s) {
					b.WriteByte(s[j+1])
					j += 2
					continue
				}
				if s[j] == q {
					break
				}
				b.WriteByte(s[j])
				j++
			}
			toks = append(toks, token{"string", b.String(), i})
			i = j + 1
		case c == '=':
			toks = append(toks, token{"op", "=", i})
			i++
		case c == '!' && i+1 < len(s) && s[i+1] == '=':
			toks = append(toks, token{"op", "!=", i})
			i += 2
		case c == '(' || c == ')' || c == ',':
			toks = append(toks, token{string(c), string(c), i})
			i++
		case c == '_' || c == '.' || c == '/' || c == '-' || unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c)):
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '.' || s[j] == '/' || s[j] == '-' || unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j]))) {
				j++
			}
			toks = append(toks, token{"ident", s[i:j], i})
			i = j
		default:
			// '<', '>', ':', '!', '*', '~'… : operators the emulator does not support.
			j := i + 1
			for j < len(s) && strings.ContainsRune("<>=:!~", rune(s[j])) {
				j++
			}
			return nil, fmt.Errorf("unsupported operator %q at offset %d (supported: =, !=, one_of)", s[i:j], i)
		}
	}
	return toks, nil
}

// parseFilter parses a filter. For timeSeries (ListTimeSeries) exactly one
// metric.type = "…" is required; otherwise (descriptor lists) metric.type is optional and
// may be metric.type = starts_with("…").
func parseFilter(s string, timeSeries bool) (metricType string, clauses []clause, err error) {
	toks, err := tokenize(s)
	if err != nil {
		return "", nil, err
	}
	if len(toks) == 0 {
		return "", nil, fmt.Errorf("empty filter: it must specify exactly one metric.type = \"…\"")
	}
	p := &filterParser{toks: toks}
	for {
		c, err := p.clause(!timeSeries)
		if err != nil {
			return "", nil, err
		}
		if c.kind == fieldMetricType {
			if metricType != "" || (!timeSeries && hasMetricType(clauses)) {
				return "", nil, fmt.Errorf("more than one metric.type in filter")
			}
			if !c.startsWith {
				metricType = c.values[0]
			}
		}
		clauses = append(clauses, c)
		if p.done() {
			break
		}
		if t := p.toks[p.i]; t.kind == "ident" && t.text == "AND" {
			p.i++
			continue
		}
		// Anything but AND must start the next clause (implicit AND); OR, NOT,
		// parentheses and other tokens are refused by clause.
	}
	if timeSeries && metricType == "" {
		return "", nil, fmt.Errorf("filter must specify exactly one metric.type = \"…\"")
	}
	return metricType, clauses, nil
}

func hasMetricType(cs []clause) bool {
	for _, c := range cs {
		if c.kind == fieldMetricType {
			return true
		}
	}
	return false
}

type filterParser struct {
	toks []token
	i    int
}

func (p *filterParser) done() bool { return p.i >= len(p.toks) }

func (p *filterParser) next() token {
	if p.done() {
		return token{kind: "end", text: "end of filter", pos: -1}
	}
	t := p.toks[p.i]
	p.i++
	return t
}

func (p *filterParser) clause(allowStartsWith bool) (clause, error) {
	t := p.next()
	switch {
	case t.kind == "end":
		return clause{}, fmt.Errorf("empty clause at end of filter")
	case t.kind == "(":
		return clause{}, fmt.Errorf("unsupported parentheses at offset %d", t.pos)
	case t.kind == "ident" && (strings.EqualFold(t.text, "NOT") || strings.EqualFold(t.text, "OR") || strings.EqualFold(t.text, "AND")):
		return clause{}, fmt.Errorf("unsupported operator %q at offset %d (only AND joins clauses)", t.text, t.pos)
	case t.kind != "ident":
		return clause{}, fmt.Errorf("expected a field at offset %d, got %q", t.pos, t.text)
	}
	var c clause
	switch f := t.text; {
	case f == "metric.type":
		c.kind = fieldMetricType
	case f == "resource.type":
		c.kind = fieldResourceType
	case f == "project":
		c.kind = fieldProject
	case strings.HasPrefix(f, "resource.labels.") || strings.HasPrefix(f, "resource.label."):
		c.kind, c.key = fieldResourceLabel, f[strings.Index(f[len("resource."):], ".")+len("resource.")+1:]
	case strings.HasPrefix(f, "metric.labels.") || strings.HasPrefix(f, "metric.label."):
		c.kind, c.key = fieldMetricLabel, f[strings.Index(f[len("metric."):], ".")+len("metric.")+1:]
	default:
		return clause{}, fmt.Errorf("unsupported field %q at offset %d (supported: metric.type, resource.type, project, resource.labels.KEY, metric.labels.KEY)", f, t.pos)
	}
	if (c.kind == fieldResourceLabel || c.kind == fieldMetricLabel) && (c.key == "" || strings.ContainsAny(c.key, "./")) {
		return clause{}, fmt.Errorf("bad label field %q at offset %d", t.text, t.pos)
	}
	op := p.next()
	if op.kind != "op" {
		return clause{}, fmt.Errorf("expected = or != after %s, got %q", t.text, op.text)
	}
	c.negate = op.text == "!="
	v := p.next()
	switch {
	case v.kind == "string":
		c.values = []string{v.text}
	case v.kind == "ident" && (v.text == "one_of" || v.text == "starts_with"):
		fn := v.text
		if c.negate {
			return clause{}, fmt.Errorf("%s with != at offset %d is not supported", fn, v.pos)
		}
		if fn == "starts_with" && (!allowStartsWith || c.kind != fieldMetricType) {
			return clause{}, fmt.Errorf("unsupported function starts_with at offset %d", v.pos)
		}
		if fn == "one_of" && c.kind == fieldMetricType {
			return clause{}, fmt.Errorf("one_of on metric.type is not supported (exactly one metric type)")
		}
		if t := p.next(); t.kind != "(" {
			return clause{}, fmt.Errorf("expected ( after %s", fn)
		}
		for {
			s := p.next()
			if s.kind != "string" {
				return clause{}, fmt.Errorf("%s takes quoted strings, got %q", fn, s.text)
			}
			c.values = append(c.values, s.text)
			t := p.next()
			if t.kind == ")" {
				break
			}
			if t.kind != "," {
				return clause{}, fmt.Errorf("expected , or ) in %s, got %q", fn, t.text)
			}
		}
		if fn == "starts_with" {
			if len(c.values) != 1 {
				return clause{}, fmt.Errorf("starts_with takes one string")
			}
			c.startsWith = true
		}
	case v.kind == "ident" && p.i < len(p.toks) && p.toks[p.i].kind == "(":
		return clause{}, fmt.Errorf("unsupported function %s at offset %d (supported: one_of)", v.text, v.pos)
	default:
		return clause{}, fmt.Errorf("value of %s must be a quoted string, got %q", t.text, v.text)
	}
	if c.kind == fieldMetricType && c.negate {
		return clause{}, fmt.Errorf("metric.type != is not supported (exactly one metric type)")
	}
	return c, nil
}

// matchSeries reports whether every resource/metric clause holds for rs (a missing
// label counts as "").
func matchSeries(cs []clause, rs *rawSeries) bool {
	for _, c := range cs {
		var v string
		switch c.kind {
		case fieldMetricType:
			v = rs.metricType
		case fieldResourceType:
			v = rs.resourceType
		case fieldResourceLabel:
			v = rs.resLabels[c.key]
		case fieldMetricLabel:
			v = rs.metricLabels[c.key]
		case fieldProject:
			v = rs.project
		}
		if !c.matches(v) {
			return false
		}
	}
	return true
}
