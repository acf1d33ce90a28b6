package policy

import (
	"fmt"
	"strings"
	"time"

	// Time zones must load in minimal containers that have no zoneinfo files.
	_ "time/tzdata"
)

// Windows say when a release may start; a rollout already running is not stopped by them.
// A start is allowed when it falls in no deny range and, if Allow is not empty, in at least
// one allow range. Ranges are read in Timezone with minute precision.
type Windows struct {
	// Timezone is the IANA time zone name the ranges are read in (default UTC).
	Timezone string `yaml:"timezone"`
	// Deny are ranges in which a release may not start (default Monday 00:00-12:00 and
	// Friday 12:00-24:00; an explicit [] denies nothing).
	Deny []TimeRange `yaml:"deny"`
	// Allow, when not empty, are the only ranges in which a release may start.
	Allow []TimeRange `yaml:"allow,omitempty"`

	loc *time.Location // resolved by Parse; nil means load Timezone when needed
}

// TimeRange is a daily range of wall-clock time on some days of the week.
type TimeRange struct {
	// Days are the days the range applies to: Mon..Sun or Monday..Sunday, any case; empty
	// means every day.
	Days []string `yaml:"days,omitempty"`
	// From is the start, "HH:MM" (inclusive; default "00:00").
	From string `yaml:"from"`
	// To is the end, "HH:MM" (exclusive; "24:00" is the end of the day; default "24:00").
	To string `yaml:"to"`
}

// Allows reports whether a release may start at t. Windows that do not validate allow
// nothing.
func (w Windows) Allows(t time.Time) bool {
	c, err := w.compile()
	if err != nil {
		return false
	}
	return c.allows(t)
}

// NextAllowed returns the first time at or after t at which a release may start: t itself
// when Allows(t), otherwise the first whole minute after t that is allowed, searching at most
// 8 days ahead. It returns the zero time when no such minute exists (or the windows do not
// validate).
func (w Windows) NextAllowed(t time.Time) time.Time {
	c, err := w.compile()
	if err != nil {
		return time.Time{}
	}
	if c.allows(t) {
		return t
	}
	start := t.Truncate(time.Minute)
	for i := 1; i <= 8*24*60; i++ {
		if cand := start.Add(time.Duration(i) * time.Minute); c.allows(cand) {
			return cand
		}
	}
	return time.Time{}
}

// Location returns the windows' time zone.
func (w Windows) Location() (*time.Location, error) {
	if w.loc != nil {
		return w.loc, nil
	}
	return loadLocation(w.Timezone)
}

func (w *Windows) resolveLocation() {
	if loc, err := loadLocation(w.Timezone); err == nil {
		w.loc = loc
	}
}

func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if name == "Local" {
		return nil, fmt.Errorf("time zone Local is not allowed")
	}
	return time.LoadLocation(name)
}

type compiledRange struct {
	days     [7]bool
	from, to int // minutes since midnight, from < to <= 1440
}

func (r compiledRange) contains(day time.Weekday, minute int) bool {
	return r.days[day] && minute >= r.from && minute < r.to
}

type compiledWindows struct {
	loc         *time.Location
	deny, allow []compiledRange
}

func (c compiledWindows) allows(t time.Time) bool {
	lt := t.In(c.loc)
	day, minute := lt.Weekday(), lt.Hour()*60+lt.Minute()
	for _, r := range c.deny {
		if r.contains(day, minute) {
			return false
		}
	}
	if len(c.allow) == 0 {
		return true
	}
	for _, r := range c.allow {
		if r.contains(day, minute) {
			return true
		}
	}
	return false
}

func (w Windows) compile() (compiledWindows, error) {
	loc, err := w.Location()
	if err != nil {
		return compiledWindows{}, err
	}
	c := compiledWindows{loc: loc}
	for _, r := range w.Deny {
		cr, err := r.compile()
		if err != nil {
			return compiledWindows{}, err
		}
		c.deny = append(c.deny, cr)
	}
	for _, r := range w.Allow {
		cr, err := r.compile()
		if err != nil {
			return compiledWindows{}, err
		}
		c.allow = append(c.allow, cr)
	}
	return c, nil
}

func (r TimeRange) compile() (compiledRange, error) {
	var c compiledRange
	if len(r.Days) == 0 {
		c.days = [7]bool{true, true, true, true, true, true, true}
	}
	for _, d := range r.Days {
		wd, ok := ParseDay(d)
		if !ok {
			return c, fmt.Errorf("invalid day %q", d)
		}
		c.days[wd] = true
	}
	from, to := r.From, r.To
	if from == "" {
		from = "00:00"
	}
	if to == "" {
		to = "24:00"
	}
	var ok bool
	if c.from, ok = parseClock(from); !ok || c.from == 24*60 {
		return c, fmt.Errorf("invalid from %q", from)
	}
	if c.to, ok = parseClock(to); !ok {
		return c, fmt.Errorf("invalid to %q", to)
	}
	if c.from >= c.to {
		return c, fmt.Errorf("from %s is not before to %s", from, to)
	}
	return c, nil
}

// ParseDay parses a day of the week: a three-letter abbreviation or a full English name, in
// any case ("Mon", "monday", "FRI").
func ParseDay(s string) (time.Weekday, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for d := time.Sunday; d <= time.Saturday; d++ {
		full := strings.ToLower(d.String())
		if s == full || s == full[:3] {
			return d, true
		}
	}
	return 0, false
}

// parseClock parses "HH:MM" (00:00..24:00) into minutes since midnight.
func parseClock(s string) (int, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if m > 59 || h > 24 || (h == 24 && m != 0) {
		return 0, false
	}
	return h*60 + m, true
}
