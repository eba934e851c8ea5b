package firstboot

import (
	"log/slog"

	"github.com/pith-os/pith/linelog"
)

// sayLogger hands slog records (cloudconfig/apply's steps) to say, so they
// reach the console and the journal as the stage's own messages do, at
// the Level that matches the record's (the journal's priority).
func sayLogger(say func(l Level, format string, args ...any)) *slog.Logger {
	return slog.New(linelog.New(func(l slog.Level, line string) { say(levelOfRecord(l), "%s", line) }))
}

// levelOfRecord maps slog's levels to Boot's.
func levelOfRecord(l slog.Level) Level {
	switch {
	case l >= slog.LevelError:
		return LevelError
	case l >= slog.LevelWarn:
		return LevelWarning
	}
	return LevelInfo
}
