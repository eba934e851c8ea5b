// Package apply applies valid user-data to a node: files, users, SSH keys,
// hostname, /etc/hosts and systemd units. Everything that changes the
// system outside the root directory goes through three small interfaces
// (Accounts, Units, Host), so the whole stage runs in tests against a temp
// root; the real implementations are shadow's tools (Shadow: useradd,
// usermod, chpasswd, groupadd, userdel), sethostname(2) (KernelHost) and
// agent/units' Systemd over D-Bus. Stage records each run under
// node.StateDir; agent/firstboot runs it at boot with the datasources. This
// package imports nothing from agent/.
package apply
