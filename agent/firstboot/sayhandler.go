package firstboot

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"unicode"
)

// sayHandler hands slog records (cloudconfig/apply's steps) to a Say
// function, so they reach the console and the journal as the stage's own
// messages do: one line of the message and each attribute as key=value
// ("warning: " or "error: " before it at those levels), at the Level that
// matches the record's (the journal's priority).
type sayHandler struct {
	say func(l Level, format string, args ...any)
	// attrs are WithAttrs' attributes, already rendered.
	attrs string
	// group is WithGroup's prefix for later keys ("g." and so on).
	group string
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

func (h *sayHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *sayHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	l := levelOfRecord(r.Level)
	switch l {
	case LevelError:
		b.WriteString("error: ")
	case LevelWarning:
		b.WriteString("warning: ")
	}
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	h.say(l, "%s", b.String())
	return nil
}

func (h *sayHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range as {
		appendAttr(&b, h.group, a)
	}
	return &sayHandler{say: h.say, attrs: h.attrs + b.String(), group: h.group}
}

func (h *sayHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &sayHandler{say: h.say, attrs: h.attrs, group: h.group + name + "."}
}

// appendAttr writes " key=value", with group's prefix on the key and the
// value quoted when it would not read as one word; a group's attributes
// follow with its name in their keys, as slog's TextHandler writes them.
func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" {
			group += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			appendAttr(b, group, ga)
		}
		return
	}
	b.WriteString(" " + group + a.Key + "=")
	v := a.Value.String()
	if needsQuote(v) {
		v = strconv.Quote(v)
	}
	b.WriteString(v)
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if unicode.IsSpace(r) || r == '"' || r == '=' || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}
