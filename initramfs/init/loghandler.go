package pithinit

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"unicode"
)

// consoleHandler prints slog records (initramfs/storage's steps) as the
// init's own console lines: prefix, "warning: " or "error: " at those
// levels, the message, then each attribute as key=value. It is the init's
// counterpart of pithd firstboot's sayHandler (the init imports nothing of
// agent/).
type consoleHandler struct {
	printf func(format string, args ...any)
	prefix string
	// attrs are WithAttrs' attributes, already rendered.
	attrs string
	// group is WithGroup's prefix for later keys ("g." and so on).
	group string
}

func (h *consoleHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *consoleHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(h.prefix)
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
	h.printf("%s", b.String())
	return nil
}

func (h *consoleHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range as {
		appendAttr(&b, h.group, a)
	}
	c := *h
	c.attrs += b.String()
	return &c
}

func (h *consoleHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group += name + "."
	return &c
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
