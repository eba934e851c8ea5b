// Package linelog is a slog.Handler that turns each record into one
// readable line ("warning: " or "error: " first at those levels, the
// message, then each attribute as key=value, quoted when not one word,
// groups in the key as slog's TextHandler writes them) and hands it to a
// function: the console lines of pith-init and pithd firstboot. Debug
// records are dropped. It imports nothing of Pith's, so the initramfs and
// the agent share it.
package linelog

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"unicode"
)

// Handler writes records through its write function.
type Handler struct {
	write func(level slog.Level, line string)
	// attrs are WithAttrs' attributes, already rendered.
	attrs string
	// group is WithGroup's prefix for later keys ("g." and so on).
	group string
}

// New returns a Handler that passes each record's line and level to write.
func New(write func(level slog.Level, line string)) *Handler {
	return &Handler{write: write}
}

// Enabled implements slog.Handler: Info and above.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

// Handle implements slog.Handler.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	}
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	h.write(r.Level, b.String())
	return nil
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range as {
		appendAttr(&b, h.group, a)
	}
	c := *h
	c.attrs += b.String()
	return &c
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group += name + "."
	return &c
}

// appendAttr writes " key=value", with group's prefix on the key; a
// group's attributes follow with its name in their keys.
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
