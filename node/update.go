package node

import "time"

// UpdatePhase is what the update agent is doing.
type UpdatePhase string

// Phases, shown by `pithctl update status`.
const (
	PhaseIdle          UpdatePhase = "idle"
	PhaseChecking      UpdatePhase = "checking"
	PhaseDownloading   UpdatePhase = "downloading"
	PhaseWriting       UpdatePhase = "writing"
	PhaseReady         UpdatePhase = "update ready, reboot needed"
	PhaseWaitingWindow UpdatePhase = "waiting for reboot window"
	PhaseWaitingLock   UpdatePhase = "waiting for reboot lock"
	PhaseRebooting     UpdatePhase = "rebooting"
	PhaseVerifying     UpdatePhase = "verifying new release"
	PhaseError         UpdatePhase = "error"
)

// UpdateEvent is one line of the update history.
type UpdateEvent struct {
	Time    time.Time `json:"time"`
	Version string    `json:"version"`
	Kind    string    `json:"kind"` // applied, updated, unhealthy, rollback
	Detail  string    `json:"detail,omitempty"`
}

// UpdatePending is an applied release waiting for (or just back from) its reboot.
type UpdatePending struct {
	Version string    `json:"version"`
	Slot    string    `json:"slot"`
	From    string    `json:"from"`
	Applied time.Time `json:"applied"`
	// Stage is how far the update got when it was last saved; after a
	// power cut it tells AfterBoot a trial that failed from one that
	// never started. "" (records of earlier releases) is StageArmed.
	Stage UpdateStage `json:"stage,omitempty"`
	// Boot is the boot the stage was saved in.
	Boot string `json:"boot,omitempty"`
	// Reason says why a trial is being rolled back (StageUnhealthy).
	Reason string `json:"reason,omitempty"`
	// TrialStart is when pithd first came up on the trial slot: the
	// verify timeout counts from it, so pithd restarting on the trial
	// (crashing, say) cannot put off the way back forever.
	TrialStart time.Time `json:"trial_start,omitzero"`
}

// UpdateStage is a step of an update that state.json records before taking it.
type UpdateStage string

// Stages, in order. Each is saved before the disk changes that follow it,
// so a cut anywhere leaves a record AfterBoot can finish from.
const (
	// StageWritten: slot, kernel and initrd written and verified; the
	// trial boot is being armed.
	StageWritten UpdateStage = "written"
	// StageArmed: the trial boot is armed; the next boot tries the slot.
	StageArmed UpdateStage = "armed"
	// StageHealthy: the slot came up healthy and is being marked good.
	StageHealthy UpdateStage = "healthy"
	// StageUnhealthy: the slot did not become healthy in time; the node
	// is going back to the previous slot.
	StageUnhealthy UpdateStage = "unhealthy"
)

// UpdateStatus is the update agent's state for `pithctl update status`.
type UpdateStatus struct {
	Phase     UpdatePhase    `json:"phase"`
	Running   string         `json:"running"`
	Channel   string         `json:"channel"`
	Available string         `json:"available,omitempty"`
	Pending   *UpdatePending `json:"pending,omitempty"`
	Progress  *Progress      `json:"progress,omitempty"`
	LastCheck time.Time      `json:"last_check"`
	LastError string         `json:"last_error,omitempty"`
	// HeldBack says why the channel's rollout keeps this machine from the
	// available release (not admitted yet, paused, pinned, halted).
	HeldBack string        `json:"held_back,omitempty"`
	History  []UpdateEvent `json:"history,omitempty"`
	// Timing of the last applied update, seconds.
	Timing map[string]float64 `json:"timing,omitempty"`
	// TrustedKeys are the ids of the release keys manifests are checked
	// against (the image's, the OEM partition's, user-data's).
	TrustedKeys []string `json:"trusted_keys"`

	// SecurityUpgrades are what the available release upgrades from
	// Debian's security archive, as its signed manifest says.
	SecurityUpgrades []string `json:"security_upgrades,omitempty"`
}

// Progress is a download's state.
type Progress struct {
	Payload     string
	Done, Total int64
	// BytesPerSec is the average rate of this run of Download (resumed
	// bytes already on disk do not count).
	BytesPerSec float64
	// Resumed is how many bytes were already on disk when Download began.
	Resumed int64
	Final   bool
}
