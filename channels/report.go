package channels

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
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
	Key string `json:"key,omitempty"`
	// Cert, instead of Key, is the node's cluster member certificate
	// (base64 DER, from `pith cluster issue`); the report is then signed
	// with its key, and the server checks it against the cluster CA and
	// binds the machine ID to the certificate's name.
	Cert string `json:"cert,omitempty"`
}

// ReportSigner is who signs a node's reports: its own Ed25519 key, or its
// cluster member certificate's key.
type ReportSigner struct {
	Key ed25519.PrivateKey
	// Cert (DER) and CertKey: the member certificate and its key.
	Cert    []byte
	CertKey crypto.Signer
}

// Identity is who signed a report, as OpenReport checked it.
type Identity struct {
	Key  ed25519.PublicKey // set for key-signed reports
	Cert *x509.Certificate // set for certificate-signed reports (chain not yet checked)
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
	return ReportSigner{Key: key}.Sign(r)
}

// Sign encodes and signs r: with the member certificate when there is one,
// else with the Ed25519 key.
func (s ReportSigner) Sign(r Report) ([]byte, error) {
	r.Key, r.Cert = "", ""
	if s.Cert != nil {
		r.Cert = base64.StdEncoding.EncodeToString(s.Cert)
	} else if s.Key != nil {
		r.Key = base64.StdEncoding.EncodeToString(s.Key.Public().(ed25519.PublicKey))
	} else {
		return nil, errors.New("report: no key to sign with")
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	msg := append([]byte(reportDomain), body...)
	var sig []byte
	if s.Cert != nil {
		h := sha256.Sum256(msg)
		if sig, err = s.CertKey.Sign(rand.Reader, h[:], crypto.SHA256); err != nil {
			return nil, err
		}
	} else {
		sig = ed25519.Sign(s.Key, msg)
	}
	return json.Marshal(SignedReport{Report: body, Sig: base64.StdEncoding.EncodeToString(sig)})
}

// ErrReportSignature: the report is not signed by the key it carries.
var ErrReportSignature = errors.New("report: bad signature")

// OpenReport checks a signed report against the key or certificate it
// carries and the report's own fields; the caller checks that the signer
// is the machine's (and a certificate's chain).
func OpenReport(data []byte) (*Report, Identity, error) {
	if len(data) > MaxReportBytes {
		return nil, Identity{}, fmt.Errorf("report: %d bytes, limit %d", len(data), MaxReportBytes)
	}
	var sr SignedReport
	if err := json.Unmarshal(data, &sr); err != nil {
		return nil, Identity{}, fmt.Errorf("report: %v", err)
	}
	var r Report
	if err := json.Unmarshal(sr.Report, &r); err != nil {
		return nil, Identity{}, fmt.Errorf("report: %v", err)
	}
	sig, err := base64.StdEncoding.DecodeString(sr.Sig)
	if err != nil {
		return nil, Identity{}, ErrReportSignature
	}
	msg := append([]byte(reportDomain), sr.Report...)
	var id Identity
	switch {
	case r.Cert != "" && r.Key != "":
		return nil, Identity{}, errors.New("report: both a key and a certificate")
	case r.Cert != "":
		der, err := base64.StdEncoding.DecodeString(r.Cert)
		if err != nil {
			return nil, Identity{}, errors.New("report: certificate is not base64 DER")
		}
		if id.Cert, err = x509.ParseCertificate(der); err != nil {
			return nil, Identity{}, fmt.Errorf("report: certificate: %v", err)
		}
		pub, ok := id.Cert.PublicKey.(*ecdsa.PublicKey)
		h := sha256.Sum256(msg)
		if !ok || !ecdsa.VerifyASN1(pub, h[:], sig) {
			return nil, Identity{}, ErrReportSignature
		}
	default:
		pub, err := base64.StdEncoding.DecodeString(r.Key)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, Identity{}, errors.New("report: key is not a base64 Ed25519 public key")
		}
		if !ed25519.Verify(pub, msg, sig) {
			return nil, Identity{}, ErrReportSignature
		}
		id.Key = ed25519.PublicKey(pub)
	}
	if err := r.validate(); err != nil {
		return nil, Identity{}, err
	}
	return &r, id, nil
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
