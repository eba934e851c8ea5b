package update

import (
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin for the DST case, whatever the host has
)

func TestParseWindowErrors(t *testing.T) {
	for _, tc := range []struct{ start, length string }{
		{"Thx 04:00", "1h"},
		{"25:00", "1h"},
		{"04:7", "1h"},
		{"4", "1h"},
		{"Thu 04:00 extra", "1h"},
		{"04:00", ""},
		{"", "1h"},
		{"04:00", "0s"},
		{"04:00", "-1h"},
		{"04:00", "25h"},
		{"Thu 04:00", "169h"},
		{"04:00", "1 hour"},
	} {
		if w, err := ParseWindow(tc.start, tc.length); err == nil {
			t.Errorf("ParseWindow(%q, %q) = %v, want an error", tc.start, tc.length, w)
		}
	}
	if w, err := ParseWindow("", ""); w != nil || err != nil {
		t.Errorf("empty window: %v %v", w, err)
	}
}

func TestWindow(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time {
		tm, err := time.Parse("2006-01-02 15:04:05", s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	in := func(loc *time.Location, s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	// 2026-11-25 is a Wednesday.
	tests := []struct {
		name          string
		start, length string
		at            time.Time
		open          bool
		until         time.Duration
		end           time.Time // end of the current or next window
	}{
		{"weekly, day before", "Thu 04:00", "1h", utc("2026-11-25 21:00:00"), false, 7 * time.Hour, utc("2026-11-26 05:00:00")},
		{"weekly, at the start", "Thu 04:00", "1h", utc("2026-11-26 04:00:00"), true, 0, utc("2026-11-26 05:00:00")},
		{"weekly, last second", "thursday 04:00", "1h", utc("2026-11-26 04:59:59"), true, 0, utc("2026-11-26 05:00:00")},
		{"weekly, just closed", "Thu 04:00", "1h", utc("2026-11-26 05:00:00"), false, 7*24*time.Hour - time.Hour, utc("2026-12-03 05:00:00")},
		{"weekly, across the week end", "Sat 23:00", "26h", utc("2026-11-30 00:30:00"), true, 0, utc("2026-11-30 01:00:00")},
		{"weekly, same day earlier", "Wed 22:00", "30m", utc("2026-11-25 21:00:00"), false, time.Hour, utc("2026-11-25 22:30:00")},
		{"daily, across midnight", "23:30", "1h", utc("2026-11-25 00:15:00"), true, 0, utc("2026-11-25 00:30:00")},
		{"daily, after it", "23:30", "1h", utc("2026-11-25 00:30:00"), false, 23 * time.Hour, utc("2026-11-26 00:30:00")},
		{"daily, whole day", "00:00", "24h", utc("2026-11-25 13:00:00"), true, 0, utc("2026-11-26 00:00:00")},
		// Spring forward in Berlin on 2026-03-29: 03:00 local comes 23h
		// after the previous day's 03:00, and the window keeps wall time.
		{"daily across DST", "03:00", "1h", in(berlin, "2026-03-28 03:30:00"), true, 0, in(berlin, "2026-03-28 04:00:00")},
		{"daily across DST, next", "03:00", "1h", in(berlin, "2026-03-28 04:30:00"), false, 21*time.Hour + 30*time.Minute, in(berlin, "2026-03-29 04:00:00")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := ParseWindow(tc.start, tc.length)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.Contains(tc.at); got != tc.open {
				t.Errorf("Contains = %v, want %v", got, tc.open)
			}
			if got := w.Until(tc.at); got != tc.until {
				t.Errorf("Until = %v, want %v", got, tc.until)
			}
			if _, end := w.Next(tc.at); !end.Equal(tc.end) {
				t.Errorf("Next end = %v, want %v", end, tc.end)
			}
		})
	}
	var none *Window
	if !none.Contains(utc("2026-11-25 21:00:00")) || none.Until(time.Now()) != 0 {
		t.Error("no window must always be open")
	}
}

func TestStrategy(t *testing.T) {
	tests := []struct {
		in        string
		inCluster bool
		want      Action
	}{
		{"", true, ActionLockReboot},
		{"", false, ActionReboot},
		{"best-effort", true, ActionLockReboot},
		{"best-effort", false, ActionReboot},
		{"etcd-lock", false, ActionLockReboot},
		{"reboot", true, ActionReboot},
		{"OFF", true, ActionNone},
	}
	for _, tc := range tests {
		s, err := ParseStrategy(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Decide(tc.inCluster); got != tc.want {
			t.Errorf("%q in cluster %v: %v, want %v", tc.in, tc.inCluster, got, tc.want)
		}
	}
	if _, err := ParseStrategy("sometimes"); err == nil {
		t.Error("unknown strategy accepted")
	}
}
