package cloudconfig

// The structs below are the coreos-cloudinit dialect of cloud-config plus
// Pith's own `pith:` section. Tags drive the schema walker in schema.go:
//
//	yaml:"key"          key with underscores (dashes are accepted too)
//	valid:"rule"        value check from validators.go (empty values pass)
//	required:"true"     the key must be present in its mapping
//	deprecated:"why"    accepted with a warning; Pith ignores it
//	ignored:"why"       accepted with a warning; Pith has no such component

// Config is a parsed #cloud-config document.
type Config struct {
	Hostname          string   `yaml:"hostname" valid:"hostname"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys" valid:"sshkey"`
	Users             []User   `yaml:"users"`
	WriteFiles        []File   `yaml:"write_files"`
	ManageEtcHosts    string   `yaml:"manage_etc_hosts" valid:"etchosts"`
	CoreOS            CoreOS   `yaml:"coreos"`
	Pith              Pith     `yaml:"pith"`

	// pos maps a key path ("coreos.units[0].name") to where its value is.
	pos map[string]Pos
}

// Pos returns where the value at path was written, or the zero Pos.
func (c *Config) Pos(path string) Pos { return c.pos[path] }

// User is one entry of `users:`.
type User struct {
	Name              string   `yaml:"name" valid:"username" required:"true"`
	GECOS             string   `yaml:"gecos" valid:"gecos"`
	PasswordHash      string   `yaml:"passwd" valid:"passwd"`
	Homedir           string   `yaml:"homedir" valid:"abspath"`
	NoCreateHome      bool     `yaml:"no_create_home"`
	PrimaryGroup      string   `yaml:"primary_group" valid:"groupname"`
	Groups            []string `yaml:"groups" valid:"groupname"`
	LockPasswd        *bool    `yaml:"lock_passwd"`
	Inactive          bool     `yaml:"inactive"`
	System            bool     `yaml:"system"`
	NoUserGroup       bool     `yaml:"no_user_group"`
	NoLogInit         bool     `yaml:"no_log_init"`
	Shell             string   `yaml:"shell" valid:"abspath"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys" valid:"sshkey"`
	Sudo              Sudo     `yaml:"sudo"`

	SSHImportGithubUser  string   `yaml:"coreos_ssh_import_github" deprecated:"fetching keys from GitHub at boot is not supported; list the keys in ssh_authorized_keys"`
	SSHImportGithubUsers []string `yaml:"coreos_ssh_import_github_users" deprecated:"fetching keys from GitHub at boot is not supported; list the keys in ssh_authorized_keys"`
	SSHImportURL         string   `yaml:"coreos_ssh_import_url" deprecated:"fetching keys from a URL at boot is not supported; list the keys in ssh_authorized_keys"`
}

// Sudo is a user's sudo rules: a single rule, a list of rules, or false.
type Sudo struct {
	Rules []string
}

// File is one entry of `write_files:`.
type File struct {
	Path        string `yaml:"path" valid:"writepath" required:"true"`
	Content     string `yaml:"content"`
	Encoding    string `yaml:"encoding" valid:"encoding"`
	Owner       string `yaml:"owner" valid:"owner"`
	Permissions string `yaml:"permissions" valid:"filemode"`
}

// CoreOS is the `coreos:` section.
type CoreOS struct {
	Units     []Unit    `yaml:"units"`
	Etcd2     Etcd2     `yaml:"etcd2"`
	Etcd      Etcd      `yaml:"etcd"`
	Fleet     Fleet     `yaml:"fleet"`
	Flannel   Flannel   `yaml:"flannel" ignored:"Pith has no flannel; use a container network plugin"`
	Update    Update    `yaml:"update"`
	Locksmith Locksmith `yaml:"locksmith"`
	OEM       OEM       `yaml:"oem"`
}

// Unit is one entry of `coreos.units:`.
type Unit struct {
	Name    string   `yaml:"name" valid:"unitname" required:"true"`
	Command string   `yaml:"command" valid:"unitcommand"`
	Enable  bool     `yaml:"enable"`
	Runtime bool     `yaml:"runtime"`
	Mask    bool     `yaml:"mask"`
	Content string   `yaml:"content"`
	DropIns []DropIn `yaml:"drop_ins"`
}

// DropIn is a unit drop-in file (`<unit>.d/<name>`).
type DropIn struct {
	Name    string `yaml:"name" valid:"dropinname" required:"true"`
	Content string `yaml:"content"`
}

// Etcd2 is `coreos.etcd2:`; Pith maps these to its KV's settings.
type Etcd2 struct {
	AdvertiseClientURLs      string `yaml:"advertise_client_urls" valid:"urllist"`
	CAFile                   string `yaml:"ca_file" valid:"abspath" deprecated:"use trusted_ca_file and client_cert_auth"`
	CertFile                 string `yaml:"cert_file" valid:"abspath"`
	ClientCertAuth           bool   `yaml:"client_cert_auth"`
	CorsOrigins              string `yaml:"cors" ignored:"Pith's KV API sends no CORS headers, so browsers cannot call it from other origins"`
	DataDir                  string `yaml:"data_dir" valid:"abspath"`
	Debug                    bool   `yaml:"debug" ignored:"pithd's log level is not set from user-data"`
	Discovery                string `yaml:"discovery" valid:"url"`
	DiscoveryFallback        string `yaml:"discovery_fallback" valid:"fallback"`
	DiscoverySRV             string `yaml:"discovery_srv" valid:"hostname"`
	DiscoveryProxy           string `yaml:"discovery_proxy" valid:"url" ignored:"pithd reaches the discovery URL directly, or through HTTPS_PROXY/HTTP_PROXY set in a pithd.service drop-in"`
	ElectionTimeout          int    `yaml:"election_timeout" valid:"positive"`
	EnablePprof              bool   `yaml:"enable_pprof"`
	ForceNewCluster          bool   `yaml:"force_new_cluster"`
	HeartbeatInterval        int    `yaml:"heartbeat_interval" valid:"positive"`
	InitialAdvertisePeerURLs string `yaml:"initial_advertise_peer_urls" valid:"urllist"`
	InitialCluster           string `yaml:"initial_cluster" valid:"initialcluster"`
	InitialClusterState      string `yaml:"initial_cluster_state" valid:"clusterstate"`
	InitialClusterToken      string `yaml:"initial_cluster_token"`
	KeyFile                  string `yaml:"key_file" valid:"abspath"`
	ListenClientURLs         string `yaml:"listen_client_urls" valid:"urllist"`
	ListenPeerURLs           string `yaml:"listen_peer_urls" valid:"urllist"`
	LogPackageLevels         string `yaml:"log_package_levels" ignored:"pithd's log level is not set from user-data"`
	MaxSnapshots             int    `yaml:"max_snapshots" valid:"nonnegative" ignored:"pithd's raft keeps its own number of snapshots"`
	MaxWALs                  int    `yaml:"max_wals" valid:"nonnegative" ignored:"pithd's raft log is compacted by snapshot_count, not by file count"`
	Name                     string `yaml:"name"`
	PeerCAFile               string `yaml:"peer_ca_file" valid:"abspath" deprecated:"use peer_trusted_ca_file and peer_client_cert_auth"`
	PeerCertFile             string `yaml:"peer_cert_file" valid:"abspath"`
	PeerKeyFile              string `yaml:"peer_key_file" valid:"abspath"`
	PeerClientCertAuth       bool   `yaml:"peer_client_cert_auth"`
	PeerTrustedCAFile        string `yaml:"peer_trusted_ca_file" valid:"abspath"`
	Proxy                    string `yaml:"proxy" valid:"etcdproxy"`
	ProxyDialTimeout         int    `yaml:"proxy_dial_timeout" valid:"nonnegative" ignored:"Pith has no etcd proxy mode"`
	ProxyFailureWait         int    `yaml:"proxy_failure_wait" valid:"nonnegative" ignored:"Pith has no etcd proxy mode"`
	ProxyReadTimeout         int    `yaml:"proxy_read_timeout" valid:"nonnegative" ignored:"Pith has no etcd proxy mode"`
	ProxyRefreshInterval     int    `yaml:"proxy_refresh_interval" valid:"nonnegative" ignored:"Pith has no etcd proxy mode"`
	ProxyWriteTimeout        int    `yaml:"proxy_write_timeout" valid:"nonnegative" ignored:"Pith has no etcd proxy mode"`
	SnapshotCount            int    `yaml:"snapshot_count" valid:"nonnegative"`
	StrictReconfigCheck      bool   `yaml:"strict_reconfig_check" ignored:"Pith has no such switch"`
	TrustedCAFile            string `yaml:"trusted_ca_file" valid:"abspath"`
	WalDir                   string `yaml:"wal_dir" valid:"abspath" ignored:"the raft log stays under data_dir"`
}

// Etcd is the legacy etcd 0.4 section `coreos.etcd:`.
type Etcd struct {
	Addr                  string  `yaml:"addr" valid:"hostport"`
	BindAddr              string  `yaml:"bind_addr" valid:"hostport" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	CAFile                string  `yaml:"ca_file" valid:"abspath" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	CertFile              string  `yaml:"cert_file" valid:"abspath" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	ClusterActiveSize     int     `yaml:"cluster_active_size" valid:"nonnegative" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	ClusterRemoveDelay    float64 `yaml:"cluster_remove_delay" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	ClusterSyncInterval   float64 `yaml:"cluster_sync_interval" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	CorsOrigins           string  `yaml:"cors" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	DataDir               string  `yaml:"data_dir" valid:"abspath" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	Discovery             string  `yaml:"discovery" valid:"url"`
	GraphiteHost          string  `yaml:"graphite_host" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	HTTPReadTimeout       float64 `yaml:"http_read_timeout" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	HTTPWriteTimeout      float64 `yaml:"http_write_timeout" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	KeyFile               string  `yaml:"key_file" valid:"abspath" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	MaxResultBuffer       int     `yaml:"max_result_buffer" valid:"nonnegative" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	MaxRetryAttempts      int     `yaml:"max_retry_attempts" valid:"nonnegative" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	Name                  string  `yaml:"name"`
	PeerAddr              string  `yaml:"peer_addr" valid:"hostport"`
	PeerBindAddr          string  `yaml:"peer_bind_addr" valid:"hostport" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	PeerCAFile            string  `yaml:"peer_ca_file" valid:"abspath" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	PeerCertFile          string  `yaml:"peer_cert_file" valid:"abspath" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	PeerElectionTimeout   int     `yaml:"peer_election_timeout" valid:"positive" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	PeerHeartbeatInterval int     `yaml:"peer_heartbeat_interval" valid:"positive" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	PeerKeyFile           string  `yaml:"peer_key_file" valid:"abspath" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	Peers                 string  `yaml:"peers" valid:"hostportlist" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	PeersFile             string  `yaml:"peers_file" valid:"abspath" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	RetryInterval         float64 `yaml:"retry_interval" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	Snapshot              bool    `yaml:"snapshot" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	SnapshotCount         int     `yaml:"snapshot_count" valid:"nonnegative" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	StrTrace              string  `yaml:"trace" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	Verbose               bool    `yaml:"verbose" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	VeryVerbose           bool    `yaml:"very_verbose" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
	VeryVeryVerbose       bool    `yaml:"very_very_verbose" ignored:"etcd 0.4's setting: of coreos.etcd Pith reads addr, peer_addr, name and discovery; use coreos.etcd2 or pith.kv"`
}

// Fleet is `coreos.fleet:`; Pith's scheduler speaks fleet's model.
type Fleet struct {
	AgentTTL                string  `yaml:"agent_ttl" valid:"duration"`
	DisableEngine           bool    `yaml:"disable_engine"`
	DisableWatches          bool    `yaml:"disable_watches" ignored:"Pith's scheduler has no etcd watches to turn off"`
	EnableGRPC              bool    `yaml:"enable_grpc" ignored:"Pith's scheduler has no gRPC registry"`
	EngineReconcileInterval float64 `yaml:"engine_reconcile_interval" valid:"positive"`
	EtcdCAFile              string  `yaml:"etcd_cafile" valid:"abspath" ignored:"Pith's scheduler keeps its state on the cluster's own raft log, not in an etcd it connects to"`
	EtcdCertFile            string  `yaml:"etcd_certfile" valid:"abspath" ignored:"Pith's scheduler keeps its state on the cluster's own raft log, not in an etcd it connects to"`
	EtcdKeyFile             string  `yaml:"etcd_keyfile" valid:"abspath" ignored:"Pith's scheduler keeps its state on the cluster's own raft log, not in an etcd it connects to"`
	EtcdKeyPrefix           string  `yaml:"etcd_key_prefix" valid:"abspath" ignored:"Pith's scheduler keeps its state on the cluster's own raft log, not in an etcd it connects to"`
	EtcdRequestTimeout      float64 `yaml:"etcd_request_timeout" valid:"positive" ignored:"Pith's scheduler keeps its state on the cluster's own raft log, not in an etcd it connects to"`
	EtcdServers             string  `yaml:"etcd_servers" valid:"urllist" ignored:"Pith's scheduler keeps its state on the cluster's own raft log, not in an etcd it connects to"`
	EtcdUsername            string  `yaml:"etcd_username" ignored:"Pith's scheduler keeps its state on the cluster's own raft log, not in an etcd it connects to"`
	EtcdPassword            string  `yaml:"etcd_password" ignored:"Pith's scheduler keeps its state on the cluster's own raft log, not in an etcd it connects to"`
	Metadata                string  `yaml:"metadata" valid:"fleetmetadata"`
	PublicIP                string  `yaml:"public_ip" valid:"ip"`
	TokenLimit              int     `yaml:"token_limit" valid:"positive" ignored:"Pith's fleet API has no page tokens to limit"`
	Verbosity               int     `yaml:"verbosity" valid:"nonnegative" ignored:"pithd's log level is not set from user-data"`
}

// Flannel is accepted so CoreOS configs validate; Pith ignores it.
type Flannel struct {
	EtcdEndpoints string `yaml:"etcd_endpoints" valid:"urllist"`
	EtcdCAFile    string `yaml:"etcd_cafile" valid:"abspath"`
	EtcdCertFile  string `yaml:"etcd_certfile" valid:"abspath"`
	EtcdKeyFile   string `yaml:"etcd_keyfile" valid:"abspath"`
	EtcdPrefix    string `yaml:"etcd_prefix"`
	EtcdUsername  string `yaml:"etcd_username"`
	EtcdPassword  string `yaml:"etcd_password"`
	IPMasq        string `yaml:"ip_masq"`
	SubnetFile    string `yaml:"subnet_file" valid:"abspath"`
	Iface         string `yaml:"interface"`
	PublicIP      string `yaml:"public_ip" valid:"ip"`
	KubeSubnetMgr bool   `yaml:"kube_subnet_mgr"`
}

// Update is `coreos.update:`; group is Pith's release channel.
type Update struct {
	RebootStrategy string `yaml:"reboot_strategy" valid:"rebootstrategy"`
	Group          string `yaml:"group" valid:"channel"`
	Server         string `yaml:"server" valid:"url"`
}

// Locksmith is `coreos.locksmith:`: reboot coordination through the KV.
type Locksmith struct {
	Endpoint     string `yaml:"endpoint" valid:"urllist" ignored:"the reboot lock lives in this cluster's own KV, which pithd reaches itself"`
	EtcdCAFile   string `yaml:"etcd_cafile" valid:"abspath" ignored:"the reboot lock lives in this cluster's own KV, which pithd reaches itself"`
	EtcdCertFile string `yaml:"etcd_certfile" valid:"abspath" ignored:"the reboot lock lives in this cluster's own KV, which pithd reaches itself"`
	EtcdKeyFile  string `yaml:"etcd_keyfile" valid:"abspath" ignored:"the reboot lock lives in this cluster's own KV, which pithd reaches itself"`
	EtcdUsername string `yaml:"etcd_username" ignored:"the reboot lock lives in this cluster's own KV, which pithd reaches itself"`
	EtcdPassword string `yaml:"etcd_password" ignored:"the reboot lock lives in this cluster's own KV, which pithd reaches itself"`
	Group        string `yaml:"group" valid:"channel"`
	Strategy     string `yaml:"strategy" valid:"rebootstrategy"`
	WindowStart  string `yaml:"window_start" valid:"windowstart"`
	WindowLength string `yaml:"window_length" valid:"windowlength"`
}

// OEM is `coreos.oem:`, written to /etc/oem-release.
type OEM struct {
	ID           string `yaml:"id" valid:"oemid"`
	Name         string `yaml:"name"`
	VersionID    string `yaml:"version_id"`
	HomeURL      string `yaml:"home_url" valid:"url"`
	BugReportURL string `yaml:"bug_report_url" valid:"url"`
}

// Pith is the `pith:` section: Pith's own settings. Where a key overlaps a
// coreos.* key, the pith: value wins (see README.md).
type Pith struct {
	Cluster  PithCluster  `yaml:"cluster"`
	KV       PithKV       `yaml:"kv"`
	Schedule PithSchedule `yaml:"schedule"`
	Update   PithUpdate   `yaml:"update"`
	Install  PithInstall  `yaml:"install"`
}

// PithCluster says how this node finds and joins its cluster.
type PithCluster struct {
	Name        string            `yaml:"name" valid:"clustername"`
	NodeName    string            `yaml:"node_name" valid:"hostname"`
	Discovery   string            `yaml:"discovery" valid:"url"`
	Peers       []string          `yaml:"peers" valid:"peer"`
	AdvertiseIP string            `yaml:"advertise_ip" valid:"ip"`
	Metadata    map[string]string `yaml:"metadata" valid:"metadatakey"`
}

// PithKV configures the etcd-v2-compatible store.
type PithKV struct {
	DataDir           string  `yaml:"data_dir" valid:"abspath"`
	ClientPort        int     `yaml:"client_port" valid:"port"`
	PeerPort          int     `yaml:"peer_port" valid:"port"`
	SnapshotCount     int     `yaml:"snapshot_count" valid:"positive"`
	HeartbeatInterval string  `yaml:"heartbeat_interval" valid:"duration"`
	ElectionTimeout   string  `yaml:"election_timeout" valid:"duration"`
	MaxVoters         int     `yaml:"max_voters" valid:"voters"`
	TLS               PithTLS `yaml:"tls"`
}

// PithTLS names certificate files for the KV's client and peer ports.
type PithTLS struct {
	CertFile       string `yaml:"cert_file" valid:"abspath"`
	KeyFile        string `yaml:"key_file" valid:"abspath"`
	TrustedCAFile  string `yaml:"trusted_ca_file" valid:"abspath"`
	ClientCertAuth bool   `yaml:"client_cert_auth"`
}

// PithSchedule configures the fleet-compatible scheduler.
type PithSchedule struct {
	Enabled           *bool  `yaml:"enabled"`
	AgentTTL          string `yaml:"agent_ttl" valid:"duration"`
	ReconcileInterval string `yaml:"reconcile_interval" valid:"duration"`
}

// PithUpdate configures the A/B updater and reboot coordination.
type PithUpdate struct {
	Channel        string   `yaml:"channel" valid:"channel"`
	Server         string   `yaml:"server" valid:"url"`
	RebootStrategy string   `yaml:"reboot_strategy" valid:"rebootstrategy"`
	WindowStart    string   `yaml:"window_start" valid:"windowstart"`
	WindowLength   string   `yaml:"window_length" valid:"windowlength"`
	MaxHolders     int      `yaml:"max_holders" valid:"positive"`
	CheckInterval  string   `yaml:"check_interval" valid:"duration"`
	PublicKeys     []string `yaml:"public_keys" valid:"ed25519key"`
	// VerifyTimeout bounds how long a node booted on a new release may
	// take to become healthy before it goes back to the previous slot.
	VerifyTimeout string `yaml:"verify_timeout" valid:"duration"`
	// UnitSettle is how long each unit scheduled on the node must have
	// run without a restart for it to count as healthy (default 20s).
	UnitSettle string `yaml:"unit_settle" valid:"duration"`
	// PreReboot and PostReboot are shell commands pithd runs before an
	// update's reboot (a failure postpones it) and once the node is
	// healthy again, e.g. to drain a Kubernetes node and uncordon it.
	PreReboot  []string `yaml:"pre_reboot" valid:"hookcommand"`
	PostReboot []string `yaml:"post_reboot" valid:"hookcommand"`
}
