package schedule

// The heartbeat's wire format: what an agent reports to the leader, its
// size limits and validation.

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/pith-os/pith/unitfile"
)

// DefaultTTL is how long a machine may go without a heartbeat before the
// leader declares it dead.
const DefaultTTL = 5 * time.Second

// UnitReport is what an agent reports about one unit it runs.
type UnitReport struct {
	Name string `json:"name"`
	Hash string `json:"hash"`
	// Current is the state the agent reached: loaded or launched.
	Current     unitfile.DesiredState `json:"currentState"`
	LoadState   string                `json:"loadState"`
	ActiveState string                `json:"activeState"`
	SubState    string                `json:"subState"`
	// Error is the last error applying the unit, if any.
	Error string `json:"error,omitempty"`
}

// Heartbeat is what an agent sends the leader directly (never through the
// log): its machine record and the state of the units it runs.
type Heartbeat struct {
	Machine Machine      `json:"machine"`
	Units   []UnitReport `json:"units"`
}

// Heartbeat limits. A heartbeat carries names, hashes and states, never
// unit files, so its size follows from these bounds alone (not from
// MaxUnitFileSize). Every string is restricted to characters JSON writes
// as themselves (unit names may hold a backslash, written as two bytes),
// so the encoded size of the largest valid heartbeat is known exactly.
const (
	// MaxMachineIDLen bounds a machine ID (/etc/machine-id has 32).
	MaxMachineIDLen = 128
	// maxIPLen is the longest textual IP address (IPv4-mapped IPv6).
	maxIPLen = 45
	// MaxMetadataEntries and MaxMetadataLen bound a machine's metadata:
	// entries, and bytes of each key and each value.
	MaxMetadataEntries = 64
	MaxMetadataLen     = 256
	// MaxUnitsPerMachine is the most units one machine runs (and reports):
	// the engine places no more there.
	MaxUnitsPerMachine = 4096
	// MaxReportStateLen bounds systemd's load/active/sub state words.
	MaxReportStateLen = 32
	// MaxReportErrorLen bounds the error text of one unit report; agents
	// cut longer errors (the full text is in their log).
	MaxReportErrorLen = 256

	hashLen        = 40 // hex SHA-1 (Hash)
	maxCurrentLen  = len(unitfile.Launched)
	maxReportJSON  = len(`{"name":"","hash":"","currentState":"","loadState":"","activeState":"","subState":"","error":""}`) + 2*unitfile.MaxUnitNameLen + hashLen + maxCurrentLen + 3*MaxReportStateLen + MaxReportErrorLen
	maxMachineJSON = len(`{"id":"","primaryIP":"","metadata":{}}`) + MaxMachineIDLen + maxIPLen + MaxMetadataEntries*(len(`"":"",`)+2*MaxMetadataLen)

	// MaxHeartbeatSize is the encoded size of the largest valid heartbeat:
	// the one limit the leader reads heartbeats with and followers forward
	// them with.
	MaxHeartbeatSize = len(`{"machine":,"units":[]}`) + maxMachineJSON + MaxUnitsPerMachine*(maxReportJSON+len(","))
)

// plainText reports whether s holds only printable ASCII that JSON
// encodes as itself (no quote, backslash or HTML-escaped <, >, &).
func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// clampText makes s plain text of at most n bytes (other bytes become '?').
func clampText(s string, n int) string {
	if len(s) <= n && plainText(s) {
		return s
	}
	b := []byte(s)
	if len(b) > n {
		b = b[:n]
	}
	for i, c := range b {
		if !plainText(string(c)) {
			b[i] = '?'
		}
	}
	return string(b)
}

// ValidateMachine checks a machine record against the heartbeat limits,
// with the fix in the message (pithd checks its own at start-up).
func ValidateMachine(m Machine) error {
	switch {
	case m.ID == "":
		return errors.New("machine ID is empty: give --machine-id or fill /etc/machine-id")
	case len(m.ID) > MaxMachineIDLen:
		return fmt.Errorf("machine ID is %d bytes, over the limit of %d", len(m.ID), MaxMachineIDLen)
	case len(m.PublicIP) > maxIPLen || m.PublicIP != "" && net.ParseIP(m.PublicIP) == nil:
		return fmt.Errorf("public IP %q is not an IP address: give --public-ip an address such as 10.0.0.5", m.PublicIP)
	case len(m.Metadata) > MaxMetadataEntries:
		return fmt.Errorf("machine has %d metadata entries, over the limit of %d", len(m.Metadata), MaxMetadataEntries)
	}
	for _, c := range m.ID {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._:-", c)) {
			return fmt.Errorf("machine ID %q contains %q: use letters, digits and ._:- only", m.ID, c)
		}
	}
	for k, v := range m.Metadata {
		switch {
		case k == "" || len(k) > MaxMetadataLen || len(v) > MaxMetadataLen:
			return fmt.Errorf("metadata %q=%q: keys must be 1 to %d bytes and values at most %d", k, v, MaxMetadataLen, MaxMetadataLen)
		case !plainText(k) || !plainText(v) || strings.ContainsAny(k, "=,") || strings.Contains(v, ","):
			return fmt.Errorf("metadata %q=%q: use printable ASCII without quotes, backslashes, <, >, & (and no = or , in keys, no , in values)", k, v)
		}
	}
	return nil
}

// Clamp fits a heartbeat into the limits an agent cannot be refused for:
// error texts and state words are cut and made plain, and reports beyond
// MaxUnitsPerMachine dropped (returned as dropped), so an odd systemd
// message or too many global units never silences a machine.
func (hb *Heartbeat) Clamp() (dropped int) {
	if len(hb.Units) > MaxUnitsPerMachine {
		dropped = len(hb.Units) - MaxUnitsPerMachine
		hb.Units = hb.Units[:MaxUnitsPerMachine:MaxUnitsPerMachine]
	}
	for i := range hb.Units {
		u := &hb.Units[i]
		u.LoadState = clampText(u.LoadState, MaxReportStateLen)
		u.ActiveState = clampText(u.ActiveState, MaxReportStateLen)
		u.SubState = clampText(u.SubState, MaxReportStateLen)
		u.Error = clampText(u.Error, MaxReportErrorLen)
	}
	return dropped
}

// Validate checks a received heartbeat against the limits (the leader
// refuses one that fails, naming the problem).
func (hb *Heartbeat) Validate() error {
	if err := ValidateMachine(hb.Machine); err != nil {
		return err
	}
	if len(hb.Units) > MaxUnitsPerMachine {
		return fmt.Errorf("heartbeat reports %d units, over the limit of %d per machine", len(hb.Units), MaxUnitsPerMachine)
	}
	for _, u := range hb.Units {
		if err := unitfile.ValidateName(u.Name); err != nil {
			return fmt.Errorf("unit report: %v", err)
		}
		if u.Hash != "" {
			if _, err := hex.DecodeString(u.Hash); err != nil || len(u.Hash) != hashLen {
				return fmt.Errorf("unit report %s: hash %q is not %d hex digits", u.Name, u.Hash, hashLen)
			}
		}
		switch u.Current {
		case "", unitfile.Inactive, unitfile.Loaded, unitfile.Launched:
		default:
			return fmt.Errorf("unit report %s: current state %q is not inactive, loaded or launched", u.Name, u.Current)
		}
		for _, st := range []string{u.LoadState, u.ActiveState, u.SubState} {
			if len(st) > MaxReportStateLen || !plainText(st) {
				return fmt.Errorf("unit report %s: state %q is not a systemd state word", u.Name, st)
			}
		}
		if len(u.Error) > MaxReportErrorLen || !plainText(u.Error) {
			return fmt.Errorf("unit report %s: error text over %d bytes or not plain text", u.Name, MaxReportErrorLen)
		}
	}
	return nil
}
