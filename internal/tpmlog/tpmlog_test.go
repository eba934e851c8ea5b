package tpmlog

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
)

type ev struct {
	pcr, typ uint32
	data     string
}

// logBytes writes a crypto-agile log with SHA-1 and SHA-256 banks, as
// OVMF does, each event's digests being the hashes of its data.
func logBytes(events []ev) []byte {
	le := binary.LittleEndian
	var b bytes.Buffer
	spec := []byte("Spec ID Event03\x00")
	spec = le.AppendUint32(spec, 0) // platform class
	spec = append(spec, 0, 2, 0, 2) // version 2.0, errata, uintn size
	spec = le.AppendUint32(spec, 2) // two banks
	spec = le.AppendUint16(spec, AlgSHA1)
	spec = le.AppendUint16(spec, 20)
	spec = le.AppendUint16(spec, AlgSHA256)
	spec = le.AppendUint16(spec, 32)
	spec = append(spec, 0) // vendor info size
	binary.Write(&b, le, []uint32{0, EvNoAction})
	b.Write(make([]byte, 20))
	binary.Write(&b, le, uint32(len(spec)))
	b.Write(spec)
	for _, e := range events {
		binary.Write(&b, le, []uint32{e.pcr, e.typ, 2})
		s1, s256 := sha1.Sum([]byte(e.data)), sha256.Sum256([]byte(e.data))
		binary.Write(&b, le, uint16(AlgSHA1))
		b.Write(s1[:])
		binary.Write(&b, le, uint16(AlgSHA256))
		b.Write(s256[:])
		binary.Write(&b, le, uint32(len(e.data)))
		b.WriteString(e.data)
	}
	return b.Bytes()
}

func extend(start []byte, data ...string) string {
	cur := start
	for _, d := range data {
		s := sha256.Sum256([]byte(d))
		x := sha256.Sum256(append(append([]byte{}, cur...), s[:]...))
		cur = x[:]
	}
	return hex.EncodeToString(cur)
}

func TestReplay(t *testing.T) {
	zero := make([]byte, 32)
	loc3 := append(make([]byte, 31), 3)
	for _, tc := range []struct {
		name   string
		events []ev
		want   map[uint32]string
	}{
		{"extends in order, skips EV_NO_ACTION", []ev{
			{0, 8, "firmware"}, {7, 0x800000e0, "db"}, {3, EvNoAction, "not extended"}, {7, EvSeparator, "\x00\x00\x00\x00"}, {9, 13, "grub.cfg"},
		}, map[uint32]string{0: extend(zero, "firmware"), 7: extend(zero, "db", "\x00\x00\x00\x00"), 9: extend(zero, "grub.cfg")}},
		{"startup locality 3 seeds PCR 0", []ev{
			{0, EvNoAction, "StartupLocality\x00\x03"}, {0, 8, "firmware"},
		}, map[uint32]string{0: extend(loc3, "firmware")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Parse(logBytes(tc.events))
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Events) != len(tc.events) || l.Algs[AlgSHA256] != 32 {
				t.Fatalf("parsed %d events, banks %v", len(l.Events), l.Algs)
			}
			pcrs, err := l.Replay(AlgSHA256)
			if err != nil {
				t.Fatal(err)
			}
			if len(pcrs) != len(tc.want) {
				t.Fatalf("replay gives PCRs %v, want %v", pcrs, tc.want)
			}
			for pcr, want := range tc.want {
				if got := hex.EncodeToString(pcrs[pcr]); got != want {
					t.Errorf("PCR %d = %s, want %s", pcr, got, want)
				}
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	good := logBytes([]ev{{0, 8, "firmware"}})
	notAgile := append([]byte{}, good...)
	copy(notAgile[32:], "Spec ID Event02\x00")
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "header"},
		{"SHA-1 only log", notAgile, "not a crypto-agile"},
		{"truncated event", good[:len(good)-3], "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse: %v, want %q", err, tc.want)
			}
		})
	}
	l, _ := Parse(good)
	if _, err := l.Replay(AlgSHA384); err == nil {
		t.Error("replay of a bank the log lacks succeeded")
	}
}
