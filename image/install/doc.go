// Package install writes a built Pith disk image to a machine's disk: the
// engine of `pith install`, on the live ISO/PXE system or any Linux as root.
//
// The order makes a bad input leave the disk untouched: the target is
// checked (not mounted, no partition table or filesystem unless forced), the image
// manifest's signature is checked, the image is hashed against the
// manifest (a URL or a compressed image is first staged, sparse, in a
// temporary file), the user-data is validated, and only then is the disk
// written. After the copy the GPT is moved to the disk's end with ROOT
// grown to fill it, and the user-data goes into the OEM partition's
// cloud-config.yml, which first boot applies before any datasource's.
package install
