package pithinit

import (
	"log/slog"

	"github.com/pith-os/pith/linelog"
)

// consoleLogger prints slog records (initramfs/storage's steps) as the
// init's own console lines: prefix, then linelog's line ("warning: " or
// "error: " at those levels, the message, key=value attributes).
func consoleLogger(printf func(format string, args ...any), prefix string) *slog.Logger {
	return slog.New(linelog.New(func(_ slog.Level, line string) { printf("%s%s", prefix, line) }))
}
