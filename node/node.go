// Package node holds what pithd and the programs around it share without
// importing the agent: the table of pithd's settings (flag, environment
// variable, cloud-config key), read by pithd's flag and environment
// parsing and by the cloud-config writer, and the paths of node state.
// It imports nothing from Pith, so cloudconfig, the CLIs, agent/ and the
// initramfs may all import it.
package node

// StateDir keeps what first boot fetched and did, and what pithd reads of it.
const StateDir = "/var/lib/pith"

// Files under StateDir.
const (
	UserDataFile  = "user-data"        // the raw user-data, as fetched
	MetadataFile  = "metadata.json"    // the datasource's metadata
	ReportFile    = "user-data.report" // the validation report, file:line:col lines
	StateFile     = "user-data.json"   // the first-boot stage's record of its last run
	FirstBootFile = "first-boot.done"  // exists once first boot applied user-data
	SettingsFile  = "settings.json"    // cloudconfig.Settings for pithd's subsystems
)

// The markers of the initramfs's Ignition storage stage (pith-init, before
// ROOT is /), as paths relative to ROOT: files under StateDir. Pending is
// written with ROOT's first-boot skeleton and removed once the stage
// concludes, Started before the first disk is touched, Done (the hex
// sha256 of the decompressed config) after the last mount unit. The init
// reads all three on every boot (Started without Done stops it); pithd's
// first-boot stage compares Done's sum with its user-data to know that
// the initramfs applied this config's storage.
const (
	StoragePendingMarker = "var/lib/pith/ignition-storage.pending"
	StorageStartedMarker = "var/lib/pith/ignition-storage.started"
	StorageDoneMarker    = "var/lib/pith/ignition-storage.done"
)

// IgnitionSourceMarker, on ROOT, is written by pith-init before it
// applies a first boot Ignition config's kernelArguments or storage:
// "<pithd's datasource name> <hex sha256 of the decompressed config>\n".
// pithd's first-boot stage names that source beside its own when it
// takes another config (a cloud's metadata the initramfs cannot reach).
const IgnitionSourceMarker = "var/lib/pith/ignition-initramfs.source"

// Ignition kernelArguments (pith-init, first boot). KargsFile, relative
// to the ESP, is the machine's own kernel arguments: a GRUB environment
// block whose one variable KargsVar grub.cfg loads and appends to both
// slots' kernel lines (image/bootloader; not on Secure Boot images).
// KargsRebootMarker, on ROOT, is written once pith-init changed the file,
// before it reboots: a boot that finds it and the arguments still not
// in effect stops instead of rebooting again.
const (
	KargsFile         = "grub/kargs"
	KargsVar          = "pith_kargs"
	KargsRebootMarker = "var/lib/pith/ignition-kargs.rebooted"
)

// SettingsPath is where pithd run reads the settings first boot saved
// (its --update-settings default).
const SettingsPath = StateDir + "/" + SettingsFile
