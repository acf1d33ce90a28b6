package policy

import (
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// defaultWindows returns the windows a parsed service gets in the given zone.
func defaultWindows(t *testing.T, tz string) Windows {
	t.Helper()
	return mustParse(t, minimalService+"    windows: {timezone: "+tz+"}\n").Services[0].Windows
}

func TestDefaultWindowsOverAWeek(t *testing.T) {
	taipei := mustLoc(t, "Asia/Taipei")
	w := defaultWindows(t, "Asia/Taipei")
	monday := time.Date(2026, 3, 2, 0, 0, 0, 0, taipei) // a Monday
	for m := 0; m < 7*24*60; m++ {
		local := monday.Add(time.Duration(m) * time.Minute)
		minute := local.Hour()*60 + local.Minute()
		want := !((local.Weekday() == time.Monday && minute < 12*60) || (local.Weekday() == time.Friday && minute >= 12*60))
		if got := w.Allows(local.UTC()); got != want {
			t.Fatalf("Allows(%s): got %v, want %v", local.Format("Mon 15:04 MST"), got, want)
		}
	}
}

func TestNextAllowedDefault(t *testing.T) {
	taipei := mustLoc(t, "Asia/Taipei")
	w := defaultWindows(t, "Asia/Taipei")
	at := func(day, h, m, s int) time.Time { return time.Date(2026, 3, day, h, m, s, 0, taipei) }
	tests := []struct {
		name string
		in   time.Time
		want time.Time
	}{
		{"monday morning waits for noon", at(2, 9, 0, 0), at(2, 12, 0, 0)},
		{"monday midnight", at(2, 0, 0, 0), at(2, 12, 0, 0)},
		{"seconds round up to the next minute", at(2, 11, 59, 30), at(2, 12, 0, 0)},
		{"monday noon is allowed", at(2, 12, 0, 0), at(2, 12, 0, 0)},
		{"allowed time is returned as is", at(4, 15, 7, 42), at(4, 15, 7, 42)},
		{"friday 11:59 is allowed", at(6, 11, 59, 59), at(6, 11, 59, 59)},
		{"friday afternoon waits for saturday", at(6, 12, 0, 0), at(7, 0, 0, 0)},
		{"friday evening", at(6, 23, 59, 0), at(7, 0, 0, 0)},
		{"sunday night", at(8, 23, 59, 0), at(8, 23, 59, 0)},
		{"utc input", time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC), time.Date(2026, 3, 2, 4, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		got := w.NextAllowed(tt.in)
		if !got.Equal(tt.want) {
			t.Errorf("%s: NextAllowed(%v): got %v, want %v", tt.name, tt.in, got.In(taipei), tt.want)
		}
	}
}

func TestWindowsDST(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	utc := func(month time.Month, day, h, m int) time.Time {
		return time.Date(2026, month, day, h, m, 0, 0, time.UTC)
	}
	earlyDeny := Windows{Timezone: "Europe/Berlin", Deny: []TimeRange{{From: "00:00", To: "03:00"}}}
	officeHours := Windows{Timezone: "Europe/Berlin", Deny: DefaultDeny(),
		Allow: []TimeRange{{Days: []string{"Tue", "Wed", "Thu"}, From: "09:00", To: "17:00"}}}
	missingHour := Windows{Timezone: "Europe/Berlin", Deny: []TimeRange{},
		Allow: []TimeRange{{Days: []string{"Sunday"}, From: "02:00", To: "03:00"}}}
	tests := []struct {
		name string
		w    Windows
		in   time.Time
		want time.Time
	}{
		// 2026-03-29 02:00 CET jumps to 03:00 CEST: 00:30 local to 03:00 local is 1h30m.
		{"spring forward", earlyDeny, utc(3, 28, 23, 30), utc(3, 29, 1, 0)},
		// 2026-10-25 03:00 CEST falls back to 02:00 CET: 00:30 local to 03:00 local is 3h30m.
		{"fall back", earlyDeny, utc(10, 24, 22, 30), utc(10, 25, 2, 0)},
		// Both 02:30s of the repeated hour are in the deny range.
		{"repeated hour, first", earlyDeny, utc(10, 25, 0, 30), utc(10, 25, 2, 0)},
		{"repeated hour, second", earlyDeny, utc(10, 25, 1, 30), utc(10, 25, 2, 0)},
		// Friday evening CET to Tuesday 09:00 CEST.
		{"office hours across the change", officeHours, time.Date(2026, 3, 27, 18, 0, 0, 0, berlin), utc(3, 31, 7, 0)},
		{"office hours inside", officeHours, time.Date(2026, 4, 1, 16, 59, 0, 0, berlin), time.Date(2026, 4, 1, 16, 59, 0, 0, berlin)},
		{"office hours end is exclusive", officeHours, time.Date(2026, 4, 1, 17, 0, 0, 0, berlin), time.Date(2026, 4, 2, 9, 0, 0, 0, berlin)},
		// 02:00-03:00 does not exist on 2026-03-29; the next Sunday's does (CEST, UTC+2).
		{"range in the missing hour", missingHour, utc(3, 28, 12, 0), utc(4, 5, 0, 0)},
	}
	for _, tt := range tests {
		got := tt.w.NextAllowed(tt.in)
		if !got.Equal(tt.want) {
			t.Errorf("%s: NextAllowed(%v): got %v, want %v", tt.name, tt.in.In(berlin), got.In(berlin), tt.want.In(berlin))
		}
	}
}

func TestWindowsAllowsTable(t *testing.T) {
	monday10 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		w    Windows
		in   time.Time
		want bool
	}{
		{"no ranges", Windows{}, monday10, true},
		{"empty zone is UTC", Windows{Deny: []TimeRange{{Days: []string{"mon"}, From: "10:00", To: "10:01"}}}, monday10, false},
		{"deny beats allow", Windows{Deny: []TimeRange{{Days: []string{"Mon"}}}, Allow: []TimeRange{{}}}, monday10, false},
		{"outside every allow", Windows{Allow: []TimeRange{{Days: []string{"Tue"}}, {From: "11:00", To: "12:00"}}}, monday10, false},
		{"inside second allow", Windows{Allow: []TimeRange{{Days: []string{"Tue"}}, {From: "09:00", To: "12:00"}}}, monday10, true},
		{"bad zone allows nothing", Windows{Timezone: "Mars/Olympus"}, monday10, false},
		{"Local allows nothing", Windows{Timezone: "Local"}, monday10, false},
		{"bad range allows nothing", Windows{Deny: []TimeRange{{Days: []string{"Someday"}}}}, monday10, false},
		{"inverted range allows nothing", Windows{Allow: []TimeRange{{From: "12:00", To: "09:00"}}}, monday10, false},
	}
	for _, tt := range tests {
		if got := tt.w.Allows(tt.in); got != tt.want {
			t.Errorf("%s: Allows: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNextAllowedNever(t *testing.T) {
	start := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		w    Windows
	}{
		{"deny all week", Windows{Deny: []TimeRange{{}}}},
		{"allow only inside deny", Windows{Deny: []TimeRange{{Days: []string{"Mon"}}}, Allow: []TimeRange{{Days: []string{"Mon"}, From: "10:00", To: "11:00"}}}},
		{"bad zone", Windows{Timezone: "Nowhere"}},
	}
	for _, tt := range tests {
		if got := tt.w.NextAllowed(start); !got.IsZero() {
			t.Errorf("%s: got %v, want zero time", tt.name, got)
		}
	}
	// Ranges repeat weekly, so a window almost a week ahead is found.
	w := Windows{Allow: []TimeRange{{Days: []string{"Mon"}, From: "09:00", To: "09:30"}}}
	if got, want := w.NextAllowed(start), time.Date(2026, 3, 9, 9, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("next Monday: got %v, want %v", got, want)
	}
}

func TestParseDay(t *testing.T) {
	tests := []struct {
		in   string
		want time.Weekday
		ok   bool
	}{
		{"Mon", time.Monday, true},
		{"monday", time.Monday, true},
		{"TUE", time.Tuesday, true},
		{"Wednesday", time.Wednesday, true},
		{"thu", time.Thursday, true},
		{"Fri", time.Friday, true},
		{"saturday", time.Saturday, true},
		{"Sun", time.Sunday, true},
		{"Tues", 0, false},
		{"Mo", 0, false},
		{"", 0, false},
		{"1", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseDay(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseDay(%q): got %v, %v, want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLocationResolvedByParse(t *testing.T) {
	w := defaultWindows(t, "Asia/Taipei")
	if w.loc == nil || w.loc.String() != "Asia/Taipei" {
		t.Fatalf("loc: got %v, want Asia/Taipei", w.loc)
	}
	loc, err := (Windows{Timezone: "Europe/Berlin"}).Location()
	if err != nil || loc.String() != "Europe/Berlin" {
		t.Errorf("Location(): got %v, %v", loc, err)
	}
}
