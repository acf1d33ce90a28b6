package scheduleremu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// unixCronOnly explains what the server accepts; it follows the schedule it refuses.
const unixCronOnly = `only unix-cron schedules are served by the local Scheduler ("minute hour day-of-month month day-of-week", e.g. "*/5 * * * *"; no L, W, #, ?, @descriptors or English "every 5 minutes" schedules)`

// Parsers: Google's five fields (minute granularity), and fast mode's optional leading
// seconds field.
var (
	googleParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
	fastParser   = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
)

// fieldNames name the fields of a 5-field schedule; a 6-field (fast) schedule starts with
// "second".
var fieldNames = []string{"minute", "hour", "day-of-month", "month", "day-of-week"}

// monthNames and dowNames are the names unix-cron takes in the month and day-of-week fields.
var (
	monthNames = map[string]bool{"jan": true, "feb": true, "mar": true, "apr": true, "may": true, "jun": true,
		"jul": true, "aug": true, "sep": true, "oct": true, "nov": true, "dec": true}
	dowNumbers = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
)

// parseSchedule parses a unix-cron schedule evaluated in loc. Google's schedules have
// exactly five fields; fast additionally accepts six with a leading seconds field. The
// error says what is wrong without repeating the schedule (the caller names it).
//
// Day-of-week 7 is Sunday, as at Google. Day-of-month and day-of-week are OR-ed when both
// are restricted (robfig/cron does this: a field counts as unrestricted only when it is "*"
// or "*/1", so "*/2" in day-of-month is a restriction).
func parseSchedule(spec string, loc *time.Location, fast bool) (*cron.SpecSchedule, error) {
	fields := strings.Fields(spec)
	if len(fields) == 0 {
		return nil, errors.New("empty schedule")
	}
	if strings.HasPrefix(fields[0], "@") {
		return nil, errors.New(unixCronOnly)
	}
	if strings.Contains(fields[0], "=") {
		return nil, errors.New(`a time zone goes in the job's time_zone, not in the schedule; ` + unixCronOnly)
	}
	names := fieldNames
	switch n := len(fields); {
	case n == 6 && fast:
		names = append([]string{"second"}, fieldNames...)
	case n == 6:
		if err := checkAtoms(fields[1:], fieldNames); err != nil {
			return nil, err
		}
		return nil, errors.New("6 fields: a leading seconds field is served only by the local Scheduler's --fast mode; Google's schedules have 5 fields and minute granularity")
	case n != 5:
		if err := checkAtoms(fields, nil); err != nil {
			return nil, err
		}
		want := "5 fields"
		if fast {
			want = "5 fields, or 6 with leading seconds in fast mode"
		}
		return nil, fmt.Errorf("%d fields, want %s (minute hour day-of-month month day-of-week)", n, want)
	}
	if err := checkAtoms(fields, names); err != nil {
		return nil, err
	}
	last := len(fields) - 1
	fields[last] = sundaySeven(fields[last])
	parser := googleParser
	if fast {
		parser = fastParser
	}
	sched, err := parser.Parse(strings.Join(fields, " "))
	if err != nil {
		// Name the field: parse again with every other field unrestricted.
		for i := range fields {
			probe := make([]string, len(fields))
			for j := range probe {
				probe[j] = "*"
			}
			probe[i] = fields[i]
			if _, perr := parser.Parse(strings.Join(probe, " ")); perr != nil {
				return nil, fmt.Errorf("%s field %q: %v", names[i], fields[i], perr)
			}
		}
		return nil, err
	}
	spec6, ok := sched.(*cron.SpecSchedule)
	if !ok {
		return nil, errors.New(unixCronOnly)
	}
	spec6.Location = loc
	return spec6, nil
}

// checkAtoms refuses what is not unix-cron before robfig/cron sees it (it would read "?" as
// "*"): every list item, range bound and step must be "*", a number, or in the month and
// day-of-week fields a three-letter name. names names the fields (nil: the field count is
// already wrong, only the vocabulary is checked).
func checkAtoms(fields, names []string) error {
	for i, f := range fields {
		for _, atom := range strings.FieldsFunc(f, func(r rune) bool { return r == ',' || r == '-' || r == '/' }) {
			if atom == "*" || isDigits(atom) {
				continue
			}
			lower := strings.ToLower(atom)
			_, isDay := dowNumbers[lower]
			if names != nil && (names[i] == "month" && monthNames[lower] || names[i] == "day-of-week" && isDay) {
				continue
			}
			return errors.New(unixCronOnly)
		}
	}
	return nil
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// sundaySeven rewrites the day-of-week field so that 7 means Sunday, as at Google:
// robfig/cron takes 0-6 only. A list item that names 7 (alone or as a range bound) is
// expanded into its days, 7 becoming 0; the others are left as they are, so robfig/cron
// still reports their errors.
func sundaySeven(field string) string {
	items := strings.Split(field, ",")
	for i, item := range items {
		rng, stepText, hasStep := strings.Cut(item, "/")
		lo, hi, isRange := strings.Cut(rng, "-")
		if !isRange {
			hi = lo
		}
		if lo != "7" && hi != "7" {
			continue
		}
		start, ok1 := dowNumber(lo)
		end, ok2 := dowNumber(hi)
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n <= 0 {
				continue
			}
			step = n
		}
		if !ok1 || !ok2 || start > end {
			continue
		}
		if hasStep && !isRange {
			end = 7
		}
		var days []string
		for d := start; d <= end; d += step {
			days = append(days, strconv.Itoa(d%7))
		}
		items[i] = strings.Join(days, ",")
	}
	return strings.Join(items, ",")
}

// dowNumber reads a day-of-week bound: 0-7 or a three-letter name.
func dowNumber(s string) (int, bool) {
	if n, ok := dowNumbers[strings.ToLower(s)]; ok {
		return n, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 7 {
		return 0, false
	}
	return n, true
}

// loadZone resolves a job's time_zone: empty or any spelling of "utc" is UTC; otherwise a
// tz database name.
func loadZone(name string) (*time.Location, error) {
	if name == "" || strings.EqualFold(name, "utc") {
		return time.UTC, nil
	}
	if name == "Local" {
		return nil, errors.New("not a tz database name")
	}
	return time.LoadLocation(name)
}
