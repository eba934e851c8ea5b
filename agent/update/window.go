package update

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a recurring reboot window, as locksmith's `window-start` and
// `window-length`: weekly when the start names a day (`Thu 04:00`), daily
// otherwise (`04:00`). Times are in the node's local time zone.
type Window struct {
	weekly bool
	day    time.Weekday
	hour   int
	minute int
	length time.Duration
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// ParseWindow parses a window start (`Thu 04:00`, `04:00`) and length
// (`1h`, `90m`). Both empty means no window: reboots may happen any time
// (nil, nil). One without the other is an error, as in locksmith.
func ParseWindow(start, length string) (*Window, error) {
	start, length = strings.TrimSpace(start), strings.TrimSpace(length)
	if start == "" && length == "" {
		return nil, nil
	}
	if start == "" || length == "" {
		return nil, fmt.Errorf("reboot window needs both window-start (e.g. \"Thu 04:00\") and window-length (e.g. \"1h\")")
	}
	w := &Window{}
	fields := strings.Fields(start)
	clock := fields[0]
	switch len(fields) {
	case 1:
	case 2:
		d, ok := weekdays[strings.ToLower(fields[0])]
		if !ok {
			return nil, fmt.Errorf("window-start %q: %q is not a day; use Mon, Tue, Wed, Thu, Fri, Sat or Sun", start, fields[0])
		}
		w.weekly, w.day, clock = true, d, fields[1]
	default:
		return nil, fmt.Errorf("window-start %q: want \"[DAY] HH:MM\", e.g. \"Thu 04:00\"", start)
	}
	hh, mm, ok := strings.Cut(clock, ":")
	h, herr := strconv.Atoi(hh)
	m, merr := strconv.Atoi(mm)
	if !ok || herr != nil || merr != nil || h < 0 || h > 23 || m < 0 || m > 59 || len(mm) != 2 {
		return nil, fmt.Errorf("window-start %q: time %q is not HH:MM (00:00 to 23:59)", start, clock)
	}
	w.hour, w.minute = h, m
	d, err := time.ParseDuration(length)
	if err != nil {
		return nil, fmt.Errorf("window-length %q: %v; use e.g. \"1h\" or \"30m\"", length, err)
	}
	if d <= 0 || d > w.period() {
		return nil, fmt.Errorf("window-length %q: must be more than 0 and at most %s", length, w.period())
	}
	w.length = d
	return w, nil
}

func (w *Window) period() time.Duration {
	if w.weekly {
		return 7 * 24 * time.Hour
	}
	return 24 * time.Hour
}

// String formats the window as it was given.
func (w *Window) String() string {
	if w == nil {
		return "any time"
	}
	s := fmt.Sprintf("%02d:%02d", w.hour, w.minute)
	if w.weekly {
		s = w.day.String()[:3] + " " + s
	}
	return s + " for " + w.length.String()
}

// startOn returns the window start on t's calendar day, in t's zone. Using
// time.Date (not adding 24h) keeps the wall-clock start across DST changes.
func (w *Window) startOn(t time.Time) time.Time {
	y, mo, d := t.Date()
	return time.Date(y, mo, d, w.hour, w.minute, 0, 0, t.Location())
}

// Next returns the window that contains t, or else the next one to open:
// its start and end. A nil window is always open.
func (w *Window) Next(t time.Time) (start, end time.Time) {
	if w == nil {
		return t, t
	}
	// Candidate starts: from one period before t's day (a window opened
	// then may still be open) onward, day by day.
	days := 1
	if w.weekly {
		days = 7
	}
	for i := -days; i <= days+1; i++ {
		day := t.AddDate(0, 0, i)
		if w.weekly && day.Weekday() != w.day {
			continue
		}
		s := w.startOn(day)
		e := s.Add(w.length)
		// Starts ascend and windows never overlap (length <= period), so
		// the first window not yet over is the current or the next one.
		if t.Before(e) {
			return s, e
		}
	}
	panic("update: window search found no start") // unreachable: one period always has a start
}

// Contains reports whether t falls inside an open window.
func (w *Window) Contains(t time.Time) bool {
	if w == nil {
		return true
	}
	s, e := w.Next(t)
	return !t.Before(s) && t.Before(e)
}

// Until returns how long until the window opens: 0 when it is open.
func (w *Window) Until(t time.Time) time.Duration {
	if w == nil {
		return 0
	}
	s, _ := w.Next(t)
	if !t.Before(s) {
		return 0
	}
	return s.Sub(t)
}
