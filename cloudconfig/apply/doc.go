// Package apply applies valid user-data to a node: files, users, SSH keys,
// hostname, /etc/hosts and systemd units. Everything that changes the
// system outside the root directory goes through three small interfaces
// (Accounts, Units, Host), so the whole stage runs in tests against a temp
// root; the real implementations use shadow's tools (useradd, usermod,
// chpasswd, groupadd, userdel), systemd's D-Bus API and sethostname(2).
package apply
