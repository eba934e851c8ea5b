package main

// pith cluster init / issue: the cluster's CA on the workstation (see the
// README's "Security" section for who holds which key).

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/pki"
)

func init() {
	cmd := &cobra.Command{Use: "cluster", Short: "The cluster's certificate authority: init, issue member certificates"}
	var dir, name string
	cmd.PersistentFlags().StringVar(&dir, "dir", "", "the cluster directory (CA key, admin and reader certificates); keep it on the workstation")
	_ = cmd.MarkPersistentFlagRequired("dir")

	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a cluster CA with admin and reader client certificates",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if _, err := pki.Init(dir, name); err != nil {
				return err
			}
			out := c.OutOrStdout()
			fmt.Fprintf(out, "cluster CA in %s: ca.crt, ca.key (never copy it to a node)\n", dir)
			fmt.Fprintf(out, "clients: admin.crt/admin.key (everything), reader.crt/reader.key (read only)\n\n")
			fmt.Fprintf(out, "each node needs its own member certificate in its user-data:\n")
			fmt.Fprintf(out, "  pith cluster issue --dir %s --name NODE --ip NODE_IP --out NODE-tls.yaml    (0600: it holds the key)\n", dir)
			fmt.Fprintf(out, "whose cloud-config lines are (merge them into the node's user-data):\n")
			fmt.Fprintf(out, "  write_files: %s (0644), %s (0644), %s (0600)\n", pki.NodeCA, pki.NodeCert, pki.NodeCertKey)
			fmt.Fprintf(out, "  pith: {kv: {tls: {cert_file: %s, key_file: %s, trusted_ca_file: %s, client_cert_auth: true}}}\n\n", pki.NodeCert, pki.NodeCertKey, pki.NodeCA)
			fmt.Fprintf(out, "then, from here:\n")
			abs, _ := filepath.Abs(dir)
			fmt.Fprintf(out, "  export PITHCTL_CACERT=%[1]s/ca.crt PITHCTL_CERT=%[1]s/admin.crt PITHCTL_KEY=%[1]s/admin.key PITHCTL_ENDPOINTS=https://NODE_IP:2379\n", abs)
			fmt.Fprintf(out, "  fleetctl --endpoint https://NODE_IP:2379 --ca-file %[1]s/ca.crt --cert-file %[1]s/admin.crt --key-file %[1]s/admin.key list-machines\n", abs)
			return nil
		},
	}
	initCmd.Flags().StringVar(&name, "name", "pith", "cluster name, in the CA's name")

	var ips []net.IP
	var dnsNames []string
	var outFile, role string
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Issue (or renew) a member certificate DIR/NAME.crt, DIR/NAME.key and print the node's cloud-config",
		Long: `Issue a member certificate for a node (or a pithd run outside the image)
with the addresses peers and clients dial it by, and print the cloud-config
that installs it. Running it again renews the certificate: copy the new
files over the node's and pithd picks them up on its next connections (or
at once on SIGHUP), without a restart.

--role admin or --role reader issues (or renews) a client certificate
instead, DIR/NAME.crt and DIR/NAME.key: --name admin renews the admin's.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return err
			}
			switch pki.Role(role) {
			case pki.Admin, pki.Reader:
				if len(ips) > 0 || len(dnsNames) > 0 || outFile != "" {
					return fmt.Errorf("--role %s: a client certificate has no --ip, --dns or --out", role)
				}
				if err := ca.IssueFiles(dir, name, pki.Request{Name: name, Role: pki.Role(role)}); err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "wrote %s.crt and %s.key (0600), role %s\n", filepath.Join(dir, name), filepath.Join(dir, name), role)
				return nil
			case pki.Member:
			default:
				return fmt.Errorf("--role %q: want member, admin or reader", role)
			}
			if len(ips) == 0 {
				return fmt.Errorf("--ip: give the address(es) peers and clients dial %s by", name)
			}
			if err := ca.IssueMember(dir, name, ips, dnsNames...); err != nil {
				return err
			}
			cc, err := pki.NodeCloudConfig(dir, name)
			if err != nil {
				return err
			}
			if outFile != "" {
				if err := pki.WriteFile(outFile, []byte(cc), 0o600); err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "wrote %s (0600: it holds %s's member key)\n", outFile, name)
				return nil
			}
			return printSecret(c.OutOrStdout(), cc)
		},
	}
	issue.Flags().StringVar(&name, "name", "", "the member's name (its hostname or ETCD_NAME)")
	issue.Flags().IPSliceVar(&ips, "ip", nil, "an address of the member (repeat or comma-separate)")
	issue.Flags().StringSliceVar(&dnsNames, "dns", nil, "a DNS name of the member")
	issue.Flags().StringVar(&outFile, "out", "", "write the node's cloud-config to this file (mode 0600) instead of stdout")
	issue.Flags().StringVar(&role, "role", string(pki.Member), "member (a node), or admin/reader for a client certificate")
	_ = issue.MarkFlagRequired("name")
	cmd.AddCommand(initCmd, issue)
	rootCmd.AddCommand(cmd)
}

// printSecret writes text holding a private key to out. Redirected to a
// file (`> node1.yaml`), the shell created it with the umask's mode,
// 0644 by default: the file is made 0600 before the key is written, and
// nothing is written if that fails. A terminal or a pipe gets it as is.
func printSecret(out io.Writer, text string) error {
	if f, ok := out.(*os.File); ok {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
			if err := f.Chmod(0o600); err != nil {
				return fmt.Errorf("stdout is the file %s, mode %v, and cannot be made 0600 for a private key: %w (use --out FILE)", f.Name(), fi.Mode().Perm(), err)
			}
		}
	}
	_, err := io.WriteString(out, text)
	return err
}
