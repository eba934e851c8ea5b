package channels

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Update events a node reports to its channel server.
const (
	EventChecked     = "checked"     // looked at the channel (Reason: why it holds back, if it does)
	EventDownloading = "downloading" // started fetching Version
	EventWritten     = "written"     // Version is on the other slot: installed
	EventRebooting   = "rebooting"   // rebooting into Version
	EventRunning     = "running"     // booted Version, verifying health
	EventGood        = "good"        // Version healthy, slot marked good
	EventRolledBack  = "rolled-back" // Version did not come up; back on Running
	EventUnhealthy   = "unhealthy"   // Version booted but failed its health check
	EventHookFailed  = "hook-failed" // a reboot hook failed; the reboot waits
	EventError       = "error"       // the update failed before the reboot
)

var knownEvents = map[string]bool{
	EventChecked: true, EventDownloading: true, EventWritten: true, EventRebooting: true, EventRunning: true,
	EventGood: true, EventRolledBack: true, EventUnhealthy: true, EventHookFailed: true, EventError: true,
}

// Report is one update event of one machine.
type Report struct {
	Machine string `json:"machine"`
	Group   string `json:"group"`
	Channel string `json:"channel"`
	Arch    string `json:"arch"`
	// Running is the version the machine runs; Version the one the event is
	// about (the offered, installed or rolled-back release).
	Running string    `json:"running"`
	Version string    `json:"version,omitempty"`
	Event   string    `json:"event"`
	Reason  string    `json:"reason,omitempty"`
	Time    time.Time `json:"time"`
	// Seq grows with every report of a machine; the server refuses one not
	// above the last it accepted, so a captured report cannot be replayed.
	Seq uint64 `json:"seq"`
	// Key is the machine's report key (Ed25519, base64). The server binds
	// it to the machine ID on first sight (trust on first use).
	Key string `json:"key"`
}

// SignedReport is the body a node POSTs to /v1/report.
type SignedReport struct {
	Report json.RawMessage `json:"report"`
	Sig    string          `json:"sig"` // Ed25519 over reportDomain + Report
}

const reportDomain = "pith-report-v1\x00"

// Limits on what the server stores per report.
const (
	MaxReportBytes = 8 << 10
	maxReasonLen   = 1024
)

var machineIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// SignReport encodes and signs r with the machine's key (its public half is
// put in r.Key).
func SignReport(r Report, key ed25519.PrivateKey) ([]byte, error) {
	r.Key = base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(key, append([]byte(reportDomain), body...))
	return json.Marshal(SignedReport{Report: body, Sig: base64.StdEncoding.EncodeToString(sig)})
}

// ErrReportSignature: the report is not signed by the key it carries.
var ErrReportSignature = errors.New("report: bad signature")

// OpenReport checks a signed report against the key it carries and the
// report's own fields; the caller checks that key is the machine's.
func OpenReport(data []byte) (*Report, ed25519.PublicKey, error) {
	if len(data) > MaxReportBytes {
		return nil, nil, fmt.Errorf("report: %d bytes, limit %d", len(data), MaxReportBytes)
	}
	var sr SignedReport
	if err := json.Unmarshal(data, &sr); err != nil {
		return nil, nil, fmt.Errorf("report: %v", err)
	}
	var r Report
	if err := json.Unmarshal(sr.Report, &r); err != nil {
		return nil, nil, fmt.Errorf("report: %v", err)
	}
	pub, err := base64.StdEncoding.DecodeString(r.Key)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, nil, errors.New("report: key is not a base64 Ed25519 public key")
	}
	sig, err := base64.StdEncoding.DecodeString(sr.Sig)
	if err != nil || !ed25519.Verify(pub, append([]byte(reportDomain), sr.Report...), sig) {
		return nil, nil, ErrReportSignature
	}
	if err := r.validate(); err != nil {
		return nil, nil, err
	}
	return &r, ed25519.PublicKey(pub), nil
}

func (r *Report) validate() error {
	if !machineIDRe.MatchString(r.Machine) {
		return fmt.Errorf("report: machine id %q: want 1-128 of letters, digits, '.', '_', ':', '-'", r.Machine)
	}
	if r.Group != "" && !ValidChannelName(r.Group) {
		return fmt.Errorf("report: group %q: use lowercase letters, digits, '.', '_' or '-'", r.Group)
	}
	if !ValidChannelName(r.Channel) {
		return fmt.Errorf("report: channel %q: use lowercase letters, digits, '.', '_' or '-'", r.Channel)
	}
	if !knownEvents[r.Event] {
		return fmt.Errorf("report: unknown event %q", r.Event)
	}
	if _, err := ParseVersion(r.Running); err != nil {
		return fmt.Errorf("report: running: %w", err)
	}
	if r.Version != "" {
		if _, err := ParseVersion(r.Version); err != nil {
			return fmt.Errorf("report: version: %w", err)
		}
	}
	if len(r.Arch) > 64 {
		return errors.New("report: arch longer than 64 bytes")
	}
	if len(r.Reason) > maxReasonLen {
		r.Reason = r.Reason[:maxReasonLen]
	}
	if r.Group == "" {
		r.Group = "default"
	}
	return nil
}
