package live

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/secureboot"
)

// SBOMName is the live artifacts' SBOM (written by the caller: the
// image's SBOM with the live boot loaders).
const SBOMName = "pith-live.spdx.json"

// Formats are the build formats this package makes.
var Formats = []string{"iso", "pxe"}

// Build makes the live artifacts named in formats ("iso", "pxe") from the
// built image img (described by m) into outDir, through work (a scratch
// directory on the same filesystem), and returns final name -> temporary
// path for the caller to publish. b says how they boot.
func Build(ctx context.Context, img string, m *manifest.Manifest, b Boot, formats []string, work string, epoch int64) (map[string]string, error) {
	dir := filepath.Join(work, "live")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p, err := Extract(ctx, img, m, dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range formats {
		switch f {
		case "iso":
			iso := filepath.Join(work, ISOName)
			if err := ISO(ctx, p, iso, dir, epoch, b); err != nil {
				return nil, err
			}
			out[ISOName] = iso
		case "pxe":
			pxe := filepath.Join(dir, "pxe")
			if err := os.MkdirAll(pxe, 0o755); err != nil {
				return nil, err
			}
			if err := PXE(p, pxe, epoch, b.Keys); err != nil {
				return nil, err
			}
			if err := PXEEFI(ctx, p, b.EFIGrub, pxe, dir, epoch, b.Keys); err != nil {
				return nil, err
			}
			names := []string{PXEKernelName, PXEInitrdName, PXEScriptName, PXEEFIName}
			if b.Keys != nil {
				names = append(names, PXEKernelName+secureboot.SigSuffix, PXEInitrdName+secureboot.SigSuffix)
			}
			for _, n := range names {
				out[n] = filepath.Join(pxe, n)
			}
		default:
			return nil, fmt.Errorf("live format %q: want iso or pxe", f)
		}
	}
	return out, nil
}
