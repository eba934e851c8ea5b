package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/secureboot"
)

// keygenCmd is pith keygen: a release signing key pair, or with
// --secure-boot the firmware's keys and GRUB's.
func keygenCmd() *cobra.Command {
	var out, name string
	var secureBoot bool
	cmd := &cobra.Command{
		Use:   "keygen --out DIR",
		Short: "Make an ed25519 release signing key pair, or UEFI Secure Boot keys",
		Long: `Writes DIR/pith-release.key (private, mode 0600: keep it offline) and
DIR/pith-release.pub (bake it into images with pith build, or put it on the
OEM partition). Refuses to overwrite an existing key.

With --secure-boot, writes the firmware's keys instead: PK, KEK and db
(DIR/<name>.key RSA-2048, 0600; DIR/<name>.crt self-signed certificates) and
GRUB's signing key (DIR/grub.key RSA-3072, 0600; DIR/grub.pub its OpenPGP
public key, embedded in the signed GRUB). pith build
--secure-boot-keys DIR signs with db and grub.key; pith boot --secure-boot
enrolls the certificates. PK and KEK are only enrolled, never used to sign:
keep their keys offline.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out DIR is required")
			}
			if cmd.Flags().Changed("name") && !secureBoot {
				return errors.New("--name names Secure Boot certificates: it needs --secure-boot")
			}
			if secureBoot {
				if err := secureboot.Generate(out, name, time.Now()); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Secure Boot keys in %s: PK, KEK, db (.key, .crt), grub.key, grub.pub\n", out)
				return nil
			}
			pub, priv, err := channels.GenerateKey()
			if err != nil {
				return err
			}
			privPath, pubPath, err := channels.WriteKeyPair(out, pub, priv)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "private key: %s\npublic key:  %s\nkey id:      %s\n", privPath, pubPath, channels.KeyID(pub))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory for the key files")
	cmd.Flags().BoolVar(&secureBoot, "secure-boot", false, "make UEFI Secure Boot keys (PK, KEK, db, GRUB's signing key) instead of a release key")
	cmd.Flags().StringVar(&name, "name", "Pith", "with --secure-boot: the certificates' common names are NAME PK, NAME KEK and NAME db, which firmware setup screens show")
	return cmd
}
