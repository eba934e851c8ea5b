package cloudconfig

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// A validator checks one scalar. It returns "" when the value is fine, else
// a message that names the problem and the fix, and its severity.
type validator func(string) (string, Severity)

func ok() (string, Severity) { return "", "" }

func bad(format string, args ...any) (string, Severity) {
	return fmt.Sprintf(format, args...), SeverityError
}

func warn(format string, args ...any) (string, Severity) {
	return fmt.Sprintf(format, args...), SeverityWarning
}

func oneOf(values ...string) validator {
	return func(s string) (string, Severity) {
		for _, v := range values {
			if s == v {
				return ok()
			}
		}
		return bad("invalid value %q: want one of %s", short(s), strings.Join(values, ", "))
	}
}

var (
	reLabel      = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	reUserName   = regexp.MustCompile(`^[a-z_][a-z0-9_.-]*\$?$`)
	reFileMode   = regexp.MustCompile(`^0?[0-7]{3,4}$`)
	reOwnerPart  = regexp.MustCompile(`^([a-z_][a-z0-9_.-]*\$?|[0-9]+)$`)
	reUnitPrefix = regexp.MustCompile(`^[A-Za-z0-9:_.\\-]+$`)
	reInstance   = regexp.MustCompile(`^[A-Za-z0-9:_.\\-]*$`)
	reWindow     = regexp.MustCompile(`^(?i:(sun|mon|tue|wed|thu|fri|sat|sunday|monday|tuesday|wednesday|thursday|friday|saturday) +)?([01]?[0-9]|2[0-3]):([0-5][0-9])$`)
	reChannel    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	reMetaKey    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	reCrypt      = regexp.MustCompile(`^(\$[0-9a-z]{1,2}\$[^:\s]+|[./0-9A-Za-z]{13}|[*!].*)$`)
	reOEMID      = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
)

// unitTypes are the unit suffixes systemd knows (systemd.unit(5)).
var unitTypes = []string{"service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice", "scope"}

// networkTypes are systemd-networkd's files, which coreos.units also
// takes (coreos-cloudinit wrote them to /etc/systemd/network and
// restarted networkd).
var networkTypes = []string{"network", "netdev", "link"}

// IsNetworkUnit reports whether a coreos.units name is a networkd file.
func IsNetworkUnit(name string) bool {
	dot := strings.LastIndexByte(name, '.')
	return dot >= 0 && slices.Contains(networkTypes, name[dot+1:])
}

var validators map[string]validator

func init() {
	validators = map[string]validator{
		"hostname":       checkHostname,
		"username":       checkUserName,
		"groupname":      checkGroupName,
		"gecos":          checkGECOS,
		"passwd":         checkPasswd,
		"sshkey":         checkSSHKey,
		"abspath":        checkAbsPath,
		"writepath":      checkWritePath,
		"filemode":       checkFileMode,
		"encoding":       oneOf("b64", "base64", "gz", "gzip", "gz+b64", "gz+base64", "gzip+b64", "gzip+base64"),
		"owner":          checkOwner,
		"etchosts":       checkEtcHosts,
		"unitname":       checkUnitName,
		"unitcommand":    oneOf("start", "stop", "restart", "reload", "try-restart", "reload-or-restart", "reload-or-try-restart"),
		"dropinname":     checkDropInName,
		"rebootstrategy": oneOf("reboot", "etcd-lock", "best-effort", "off"),
		"windowstart":    checkWindowStart,
		"windowlength":   checkWindowLength,
		"duration":       checkDuration,
		"url":            checkURL,
		"urllist":        checkURLList,
		"initialcluster": checkInitialCluster,
		"peer":           checkPeer,
		"clusterstate":   oneOf("new", "existing"),
		"etcdproxy":      oneOf("on", "off", "readonly"),
		"fallback":       oneOf("exit", "proxy"),
		"ip":             checkIP,
		"hostport":       checkHostPort,
		"hostportlist":   checkHostPortList,
		"fleetmetadata":  checkFleetMetadata,
		"channel":        checkChannel,
		"clustername":    checkChannel,
		"metadatakey":    checkMetaKey,
		"oemid":          checkOEMID,
		"positive":       checkPositive,
		"nonnegative":    checkNonNegative,
		"port":           checkPort,
		"voters":         checkVoters,
		"sudorule":       checkSudoRule,
		"ed25519key":     checkEd25519Key,
		"hookcommand":    checkHookCommand,
		"installafter":   oneOf("poweroff", "reboot", "none"),
	}
}

// ValidHostname reports whether h is a hostname Pith accepts.
func ValidHostname(h string) bool {
	msg, _ := checkHostname(h)
	return msg == ""
}

// HOST_NAME_MAX on Linux is 64; each label follows RFC 1123.
func checkHostname(s string) (string, Severity) {
	if len(s) > 64 {
		return bad("hostname %q is %d characters; Linux allows at most 64", short(s), len(s))
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !reLabel.MatchString(l) {
			return bad("invalid hostname %q: each dot-separated label must be 1-63 letters, digits or dashes, not starting or ending with a dash", short(s))
		}
	}
	return ok()
}

// useradd's default rule (shadow-utils), at most 32 characters.
func checkUserName(s string) (string, Severity) {
	if len(s) > 32 || !reUserName.MatchString(s) {
		return bad("invalid user name %q: use at most 32 lowercase letters, digits, '_', '-' or '.', starting with a letter or '_'", short(s))
	}
	return ok()
}

func checkGroupName(s string) (string, Severity) {
	if len(s) > 32 || !reUserName.MatchString(s) {
		return bad("invalid group name %q: use at most 32 lowercase letters, digits, '_', '-' or '.', starting with a letter or '_'", short(s))
	}
	return ok()
}

func checkGECOS(s string) (string, Severity) {
	if strings.ContainsAny(s, ":\n") {
		return bad("gecos must not contain ':' or a newline (they break /etc/passwd)")
	}
	return ok()
}

func checkPasswd(s string) (string, Severity) {
	if !reCrypt.MatchString(s) {
		return warn("passwd does not look like a crypt(3) hash; it must be a hash (e.g. from `openssl passwd -6`), never a plain-text password")
	}
	return ok()
}

func checkSSHKey(s string) (string, Severity) {
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s)); err != nil {
		return bad("not a valid SSH public key (want one authorized_keys line such as \"ssh-ed25519 AAAA... comment\"): %v", err)
	}
	return ok()
}

func checkAbsPath(s string) (string, Severity) {
	if !strings.HasPrefix(s, "/") {
		return bad("path %q must be absolute (start with /)", short(s))
	}
	if strings.ContainsRune(s, 0) {
		return bad("path must not contain a NUL byte")
	}
	return ok()
}

// /usr is Pith's read-only, verity-checked image: files there cannot be written.
func checkWritePath(s string) (string, Severity) {
	if m, sev := checkAbsPath(s); m != "" {
		return m, sev
	}
	if strings.HasSuffix(s, "/") {
		return bad("path %q names a directory; write_files needs a file path", short(s))
	}
	if s == "/usr" || strings.HasPrefix(s, "/usr/") {
		return bad("%s is on the read-only /usr image; write under /etc, /opt or /var instead", short(s))
	}
	return ok()
}

func checkFileMode(s string) (string, Severity) {
	if !reFileMode.MatchString(s) {
		return bad("invalid permissions %q: want an octal mode such as '0644' (quote it)", short(s))
	}
	return ok()
}

func checkOwner(s string) (string, Severity) {
	parts := strings.Split(s, ":")
	if len(parts) > 2 || !reOwnerPart.MatchString(parts[0]) || (len(parts) == 2 && !reOwnerPart.MatchString(parts[1])) {
		return bad("invalid owner %q: want \"user\" or \"user:group\" (names or numeric ids)", short(s))
	}
	return ok()
}

func checkEtcHosts(s string) (string, Severity) {
	if s != "localhost" {
		return bad("invalid value %q: the only supported value is \"localhost\"", short(s))
	}
	return ok()
}

// checkUnitName follows systemd's unit_name_is_valid: prefix[@instance].type,
// at most 255 characters, from a restricted alphabet.
func checkUnitName(s string) (string, Severity) {
	if len(s) > 255 {
		return bad("unit name is %d characters; systemd allows at most 255", len(s))
	}
	dot := strings.LastIndexByte(s, '.')
	if dot < 0 {
		return bad("invalid unit name %q: it needs a type suffix such as .service (one of %s)", short(s), strings.Join(allUnitTypes(), ", "))
	}
	typ := s[dot+1:]
	if !slices.Contains(unitTypes, typ) && !slices.Contains(networkTypes, typ) {
		return bad("invalid unit name %q: unknown unit type %q (want one of %s)", short(s), typ, strings.Join(allUnitTypes(), ", "))
	}
	name := s[:dot]
	prefix, instance, templated := strings.Cut(name, "@")
	if prefix == "" || !reUnitPrefix.MatchString(prefix) || (templated && !reInstance.MatchString(instance)) {
		return bad("invalid unit name %q: use letters, digits and \":_.\\-\", with at most one '@' (templates: name@.service, instances: name@x.service)", short(s))
	}
	return ok()
}

func allUnitTypes() []string { return append(slices.Clone(unitTypes), networkTypes...) }

func checkDropInName(s string) (string, Severity) {
	if strings.Contains(s, "/") || !strings.HasSuffix(s, ".conf") || s == ".conf" {
		return bad("invalid drop-in name %q: want a file name ending in .conf, e.g. 50-custom.conf", short(s))
	}
	return ok()
}

// Locksmith's window start: an optional weekday and a 24h time, "Thu 04:00".
func checkWindowStart(s string) (string, Severity) {
	if !reWindow.MatchString(s) {
		return bad("invalid reboot window start %q: want [weekday] HH:MM, e.g. \"Thu 04:00\" or \"22:30\"", short(s))
	}
	return ok()
}

func checkWindowLength(s string) (string, Severity) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return bad("invalid reboot window length %q: want a positive duration such as \"1h\" or \"90m\"", short(s))
	}
	if d > 7*24*time.Hour {
		return bad("reboot window length %q is longer than a week", short(s))
	}
	return ok()
}

func checkDuration(s string) (string, Severity) {
	if d, err := time.ParseDuration(s); err != nil || d <= 0 {
		return bad("invalid duration %q: want a positive duration such as \"30s\" or \"2m\"", short(s))
	}
	return ok()
}

// expandPlaceholders stands sample addresses in for the substitution
// variables and systemd specifiers, so a value like
// "http://$private_ipv4:2379" or "http://%H:2380" can be checked before
// the machine's real addresses are known.
var placeholderReplacer = strings.NewReplacer(
	"$private_ipv4", "192.0.2.1", "$public_ipv4", "192.0.2.2",
	"$private_ipv6", "2001:db8::1", "$public_ipv6", "2001:db8::2",
	"%H", "host", "%m", "machineid", "%b", "bootid", "%l", "host", "%%", "pct",
)

func checkURL(s string) (string, Severity) {
	u, err := url.Parse(placeholderReplacer.Replace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("invalid URL %q: want http:// or https:// with a host", short(s))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad("invalid URL %q: port %q is not 1-65535", short(s), p)
		}
	}
	return ok()
}

func checkURLList(s string) (string, Severity) {
	for _, u := range strings.Split(s, ",") {
		if m, sev := checkURL(strings.TrimSpace(u)); m != "" {
			return m + " (the value is a comma-separated list of URLs)", sev
		}
	}
	return ok()
}

func checkInitialCluster(s string) (string, Severity) {
	for _, m := range strings.Split(s, ",") {
		name, u, found := strings.Cut(strings.TrimSpace(m), "=")
		if !found || name == "" {
			return bad("invalid initial_cluster member %q: want name=http://host:2380, comma-separated", short(m))
		}
		if msg, sev := checkURL(u); msg != "" {
			return msg, sev
		}
	}
	return ok()
}

// A pith.cluster.peers entry: name=peer URL, one member.
func checkPeer(s string) (string, Severity) {
	name, u, found := strings.Cut(s, "=")
	if !found || name == "" || strings.Contains(u, ",") {
		return bad("invalid peer %q: want name=http://host:2380 (one member per list item)", short(s))
	}
	return checkURL(u)
}

func checkIP(s string) (string, Severity) {
	if net.ParseIP(placeholderReplacer.Replace(s)) == nil {
		return bad("invalid IP address %q (or use $private_ipv4 / $public_ipv4)", short(s))
	}
	return ok()
}

func checkHostPort(s string) (string, Severity) {
	host, port, err := net.SplitHostPort(placeholderReplacer.Replace(s))
	if err != nil || host == "" {
		return bad("invalid address %q: want host:port", short(s))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad("invalid address %q: port must be 1-65535", short(s))
	}
	return ok()
}

func checkHostPortList(s string) (string, Severity) {
	for _, p := range strings.Split(s, ",") {
		if m, sev := checkHostPort(strings.TrimSpace(p)); m != "" {
			return m, sev
		}
	}
	return ok()
}

// fleet's metadata: key=value pairs separated by commas.
func checkFleetMetadata(s string) (string, Severity) {
	for _, kv := range strings.Split(s, ",") {
		k, v, found := strings.Cut(strings.TrimSpace(kv), "=")
		if !found || k == "" || v == "" {
			return bad("invalid metadata %q: want key=value pairs separated by commas, e.g. \"region=eu,role=web\"", short(kv))
		}
	}
	return ok()
}

func checkChannel(s string) (string, Severity) {
	if !reChannel.MatchString(s) {
		return bad("invalid name %q: use up to 63 letters, digits, '.', '_' or '-'", short(s))
	}
	return ok()
}

func checkMetaKey(s string) (string, Severity) {
	if !reMetaKey.MatchString(s) {
		return bad("invalid metadata key %q: use up to 63 letters, digits, '.', '_' or '-'", short(s))
	}
	return ok()
}

func checkOEMID(s string) (string, Severity) {
	if !reOEMID.MatchString(s) {
		return bad("invalid OEM id %q: use lowercase letters, digits, '.', '_' or '-'", short(s))
	}
	return ok()
}

func checkPositive(s string) (string, Severity) {
	if f, err := strconv.ParseFloat(s, 64); err != nil || f <= 0 {
		return bad("must be greater than zero, got %s", short(s))
	}
	return ok()
}

func checkNonNegative(s string) (string, Severity) {
	if f, err := strconv.ParseFloat(s, 64); err != nil || f < 0 {
		return bad("must not be negative, got %s", short(s))
	}
	return ok()
}

func checkPort(s string) (string, Severity) {
	if n, err := strconv.Atoi(s); err != nil || n < 1 || n > 65535 {
		return bad("invalid port %s: want 1-65535", short(s))
	}
	return ok()
}

// The KV keeps at most this many raft voters (odd, so quorum is clear).
func checkVoters(s string) (string, Severity) {
	if n, err := strconv.Atoi(s); err != nil || n < 1 || n > 9 || n%2 == 0 {
		return bad("invalid max_voters %s: want an odd number from 1 to 9", short(s))
	}
	return ok()
}

func checkSudoRule(s string) (string, Severity) {
	if strings.ContainsAny(s, "\n\x00") {
		return bad("a sudo rule must be one line")
	}
	return ok()
}

func checkEd25519Key(s string) (string, Severity) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return bad("invalid public key: want 32 bytes of ed25519 public key in standard base64")
	}
	return ok()
}

// maxHookCommand bounds a reboot hook (pith.update.pre-reboot/post-reboot).
const maxHookCommand = 4096

func checkHookCommand(s string) (string, Severity) {
	switch {
	case strings.TrimSpace(s) == "":
		return bad("empty reboot hook command")
	case strings.ContainsRune(s, 0):
		return bad("a reboot hook command must not contain NUL")
	case len(s) > maxHookCommand:
		return bad("reboot hook command of %d bytes; the limit is %d (put a longer script in write_files and run that)", len(s), maxHookCommand)
	}
	return ok()
}
