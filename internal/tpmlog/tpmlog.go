// Package tpmlog reads a TPM 2.0 event log in the TCG's crypto-agile
// format (TCG PC Client Platform Firmware Profile, section 10), as Linux
// exposes the firmware's log in
// /sys/kernel/security/tpm0/binary_bios_measurements, and replays it: the
// PCR values the log claims, to compare with the TPM's own
// (/sys/class/tpm/tpm0/pcr-sha256/N). A log that replays to the TPM's PCRs
// is the whole record of what was measured into them.
package tpmlog

import (
	"bytes"
	"crypto"
	_ "crypto/sha1" // registers the hashes a log may carry
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
)

// TPM algorithm IDs (TCG Algorithm Registry).
const (
	AlgSHA1   = 0x0004
	AlgSHA256 = 0x000b
	AlgSHA384 = 0x000c
	AlgSHA512 = 0x000d
)

var hashes = map[uint16]crypto.Hash{AlgSHA1: crypto.SHA1, AlgSHA256: crypto.SHA256, AlgSHA384: crypto.SHA384, AlgSHA512: crypto.SHA512}

// Event types that matter here.
const (
	EvNoAction   = 0x00000003 // not extended into any PCR
	EvSeparator  = 0x00000004
	EvEFIAction  = 0x80000007
	evSpecIDSize = 16
)

// Event is one measurement.
type Event struct {
	PCR     uint32
	Type    uint32
	Digests map[uint16][]byte // algorithm -> digest
	Data    []byte
}

// Log is a parsed event log.
type Log struct {
	Algs   map[uint16]int // algorithm -> digest size, from the Spec ID event
	Events []Event        // after the Spec ID event
	// Locality is the startup locality from a StartupLocality event: PCR 0
	// starts with it in its last byte instead of zero.
	Locality byte
}

// Parse reads a crypto-agile event log.
func Parse(b []byte) (*Log, error) {
	r := bytes.NewReader(b)
	// The first event is in the SHA-1 format: PCR, type, 20-byte digest,
	// size, data; its data is the Spec ID Event03 naming the banks.
	var hdr struct {
		PCR, Type uint32
		Digest    [20]byte
		Size      uint32
	}
	if err := binary.Read(r, binary.LittleEndian, &hdr); err != nil {
		return nil, fmt.Errorf("event log header: %v", err)
	}
	spec, err := take(r, hdr.Size)
	if err != nil {
		return nil, err
	}
	if hdr.Type != EvNoAction || len(spec) < 28 || string(spec[:evSpecIDSize]) != "Spec ID Event03\x00" {
		return nil, errors.New("not a crypto-agile TPM 2.0 event log (no Spec ID Event03)")
	}
	l := &Log{Algs: map[uint16]int{}}
	n := binary.LittleEndian.Uint32(spec[24:])
	if 28+int(n)*4 > len(spec) {
		return nil, errors.New("event log Spec ID event is truncated")
	}
	for i := 0; i < int(n); i++ {
		a := spec[28+4*i:]
		l.Algs[binary.LittleEndian.Uint16(a)] = int(binary.LittleEndian.Uint16(a[2:]))
	}
	for r.Len() > 0 {
		var h struct{ PCR, Type, Count uint32 }
		if err := binary.Read(r, binary.LittleEndian, &h); err != nil {
			return nil, fmt.Errorf("event %d: %v", len(l.Events), err)
		}
		e := Event{PCR: h.PCR, Type: h.Type, Digests: map[uint16][]byte{}}
		for i := uint32(0); i < h.Count; i++ {
			var alg uint16
			if err := binary.Read(r, binary.LittleEndian, &alg); err != nil {
				return nil, fmt.Errorf("event %d: %v", len(l.Events), err)
			}
			size, ok := l.Algs[alg]
			if !ok {
				return nil, fmt.Errorf("event %d: digest of algorithm %#x not in the Spec ID event", len(l.Events), alg)
			}
			if e.Digests[alg], err = take(r, uint32(size)); err != nil {
				return nil, err
			}
		}
		var size uint32
		if err := binary.Read(r, binary.LittleEndian, &size); err != nil {
			return nil, fmt.Errorf("event %d: %v", len(l.Events), err)
		}
		if e.Data, err = take(r, size); err != nil {
			return nil, err
		}
		if e.Type == EvNoAction && e.PCR == 0 && len(e.Data) >= 17 && string(e.Data[:16]) == "StartupLocality\x00" {
			l.Locality = e.Data[16]
		}
		l.Events = append(l.Events, e)
	}
	return l, nil
}

func take(r *bytes.Reader, n uint32) ([]byte, error) {
	if int64(n) > int64(r.Len()) {
		return nil, fmt.Errorf("event log truncated: %d bytes wanted, %d left", n, r.Len())
	}
	b := make([]byte, n)
	r.Read(b)
	return b, nil
}

// Replay returns the PCR values the log's events give in the bank alg:
// each PCR starts at zero (PCR 0 at the startup locality) and is extended
// with every event's digest except EV_NO_ACTION's.
func (l *Log) Replay(alg uint16) (map[uint32][]byte, error) {
	h, ok := hashes[alg]
	if !ok || l.Algs[alg] != h.Size() {
		return nil, fmt.Errorf("the event log has no bank of algorithm %#x", alg)
	}
	pcrs := map[uint32][]byte{}
	for _, e := range l.Events {
		if e.Type == EvNoAction {
			continue
		}
		d, ok := e.Digests[alg]
		if !ok {
			return nil, fmt.Errorf("an event for PCR %d has no %#x digest", e.PCR, alg)
		}
		cur, ok := pcrs[e.PCR]
		if !ok {
			cur = make([]byte, h.Size())
			if e.PCR == 0 {
				cur[len(cur)-1] = l.Locality
			}
		}
		x := h.New()
		x.Write(cur)
		x.Write(d)
		pcrs[e.PCR] = x.Sum(nil)
	}
	return pcrs, nil
}
