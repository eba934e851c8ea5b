package vm

// OVMF's variable store, written directly: `pith boot --secure-boot` starts
// the machine with the image's PK, KEK and db already enrolled, as a
// machine whose owner enrolled them in its firmware setup. Debian has no
// tool for this (python3-virt-firmware is not in bookworm); the store's
// layout is EDK II's (MdeModulePkg/Include/Guid/VariableFormat.h) and is
// small: a firmware volume header, a variable store header, then
// authenticated variables one after another, each 4-byte aligned.

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"os"
	"unicode/utf16"
)

// GUIDs in EFI's mixed-endian byte order.
var (
	guidAuthVarStore   = efiGUID("aaf32c78-947b-439a-a180-2e144ec37792")
	guidGlobalVariable = efiGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	guidImageSecurity  = efiGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
	guidSecureBootEn   = efiGUID("f0a30bc7-af08-4556-99c4-001009c93a44")
	guidCertX509       = efiGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	// guidPithOwner owns the enrolled signatures (EFI_SIGNATURE_DATA's
	// SignatureOwner); any fixed value does.
	guidPithOwner = efiGUID("5d1b6ac5-2c1f-4b8e-9a43-7069746862f1")
)

// efiGUID parses a GUID's text form into EFI's byte order (the first three
// fields little-endian).
func efiGUID(s string) [16]byte {
	var g [16]byte
	var a uint32
	var b, c uint16
	var d [8]byte
	if _, err := fmt.Sscanf(s, "%8x-%4x-%4x-%2x%2x-%2x%2x%2x%2x%2x%2x", &a, &b, &c, &d[0], &d[1], &d[2], &d[3], &d[4], &d[5], &d[6], &d[7]); err != nil {
		panic("bad GUID " + s)
	}
	binary.LittleEndian.PutUint32(g[0:], a)
	binary.LittleEndian.PutUint16(g[4:], b)
	binary.LittleEndian.PutUint16(g[6:], c)
	copy(g[8:], d[:])
	return g
}

// Variable attributes (UEFI spec 8.2).
const (
	attrNV        = 0x1
	attrBS        = 0x2
	attrRT        = 0x4
	attrTimeAuth  = 0x20
	attrSecureVar = attrNV | attrBS | attrRT | attrTimeAuth
)

const (
	varStartID    = 0x55aa
	varAdded      = 0x3f
	varHeaderSize = 60 // AUTHENTICATED_VARIABLE_HEADER
)

// EFIVar is one variable of the store.
type EFIVar struct {
	Name   string
	GUID   [16]byte
	Attrs  uint32
	Data   []byte
	Active bool // State is VAR_ADDED (not deleted or half-written)
}

// varStore locates the variable area in an OVMF_VARS image: it returns the
// offset of the first variable and the end of the store.
func varStore(img []byte) (start, end int, err error) {
	if len(img) < 0x48 || string(img[0x28:0x2c]) != "_FVH" {
		return 0, 0, fmt.Errorf("not an OVMF variable store (no firmware volume header)")
	}
	hdrLen := int(binary.LittleEndian.Uint16(img[0x30:]))
	if hdrLen+28 > len(img) || !bytes.Equal(img[hdrLen:hdrLen+16], guidAuthVarStore[:]) {
		return 0, 0, fmt.Errorf("OVMF variable store is not an authenticated-variable store")
	}
	size := int(binary.LittleEndian.Uint32(img[hdrLen+16:]))
	if hdrLen+size > len(img) {
		return 0, 0, fmt.Errorf("OVMF variable store size %d exceeds the file", size)
	}
	return hdrLen + 28, hdrLen + size, nil
}

// ParseVars lists the variables of an OVMF_VARS image.
func ParseVars(img []byte) (vars []EFIVar, free int, err error) {
	off, end, err := varStore(img)
	if err != nil {
		return nil, 0, err
	}
	for off+varHeaderSize <= end && binary.LittleEndian.Uint16(img[off:]) == varStartID {
		h := img[off:]
		nameSize := int(binary.LittleEndian.Uint32(h[36:]))
		dataSize := int(binary.LittleEndian.Uint32(h[40:]))
		if off+varHeaderSize+nameSize+dataSize > end || nameSize%2 != 0 {
			return nil, 0, fmt.Errorf("OVMF variable at %#x runs past the store", off)
		}
		v := EFIVar{Attrs: binary.LittleEndian.Uint32(h[4:]), Active: h[2] == varAdded}
		copy(v.GUID[:], h[44:60])
		name := make([]uint16, nameSize/2)
		for i := range name {
			name[i] = binary.LittleEndian.Uint16(h[varHeaderSize+2*i:])
		}
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		v.Name = string(utf16.Decode(name))
		v.Data = append([]byte(nil), h[varHeaderSize+nameSize:varHeaderSize+nameSize+dataSize]...)
		vars = append(vars, v)
		off = align4(off + varHeaderSize + nameSize + dataSize)
	}
	return vars, off, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

// appendVar writes v at off and returns the offset after it.
func appendVar(img []byte, off, end int, v EFIVar) (int, error) {
	name := utf16.Encode([]rune(v.Name + "\x00"))
	n := varHeaderSize + 2*len(name) + len(v.Data)
	if off+n > end {
		return 0, fmt.Errorf("OVMF variable store full: %s (%d bytes) does not fit", v.Name, n)
	}
	h := img[off : off+n]
	binary.LittleEndian.PutUint16(h[0:], varStartID)
	h[2], h[3] = varAdded, 0
	binary.LittleEndian.PutUint32(h[4:], v.Attrs)
	// MonotonicCount, TimeStamp and PubKeyIndex stay zero: the variables
	// were never written through SetVariable, so no earlier time exists.
	clear(h[8:36])
	binary.LittleEndian.PutUint32(h[36:], uint32(2*len(name)))
	binary.LittleEndian.PutUint32(h[40:], uint32(len(v.Data)))
	copy(h[44:60], v.GUID[:])
	for i, c := range name {
		binary.LittleEndian.PutUint16(h[varHeaderSize+2*i:], c)
	}
	copy(h[varHeaderSize+2*len(name):], v.Data)
	return align4(off + n), nil
}

// SignatureList is an EFI_SIGNATURE_LIST holding one X.509 certificate.
func SignatureList(der []byte) []byte {
	b := make([]byte, 28+16+len(der))
	copy(b[0:], guidCertX509[:])
	binary.LittleEndian.PutUint32(b[16:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[20:], 0)
	binary.LittleEndian.PutUint32(b[24:], uint32(16+len(der)))
	copy(b[28:], guidPithOwner[:])
	copy(b[44:], der)
	return b
}

// SecureBootCerts are the DER certificates enrolled as PK, KEK and db.
type SecureBootCerts struct{ PK, KEK, DB []byte }

// EnrollVars returns a copy of the empty variable store tmpl with PK, KEK
// and db enrolled and Secure Boot switched on (SecureBootEnable), so the
// firmware starts in user mode and enforces signatures from the first boot.
func EnrollVars(tmpl []byte, c SecureBootCerts) ([]byte, error) {
	for name, der := range map[string][]byte{"PK": c.PK, "KEK": c.KEK, "db": c.DB} {
		if _, err := x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("secure boot %s certificate: %v", name, err)
		}
	}
	img := append([]byte(nil), tmpl...)
	vars, off, err := ParseVars(img)
	if err != nil {
		return nil, err
	}
	for _, v := range vars {
		if v.Active && (v.Name == "PK" || v.Name == "KEK" || v.Name == "db" || v.Name == "SecureBootEnable") {
			return nil, fmt.Errorf("OVMF variable store already holds %s: start from an empty one (OVMF_VARS_4M.fd)", v.Name)
		}
	}
	_, end, _ := varStore(img)
	for _, v := range []EFIVar{
		{Name: "KEK", GUID: guidGlobalVariable, Attrs: attrSecureVar, Data: SignatureList(c.KEK)},
		{Name: "db", GUID: guidImageSecurity, Attrs: attrSecureVar, Data: SignatureList(c.DB)},
		{Name: "SecureBootEnable", GUID: guidSecureBootEn, Attrs: attrNV | attrBS, Data: []byte{1}},
		// PK last: its presence is what ends setup mode.
		{Name: "PK", GUID: guidGlobalVariable, Attrs: attrSecureVar, Data: SignatureList(c.PK)},
	} {
		if off, err = appendVar(img, off, end, v); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// WriteEnrolledVars writes OVMF vars with the certificates enrolled to out,
// from Debian's empty 4 MiB store.
func WriteEnrolledVars(out string, c SecureBootCerts) error {
	tmpl, err := os.ReadFile(OVMFVarsSecure)
	if err != nil {
		return fmt.Errorf("empty OVMF variable store: %v (install Debian's ovmf package)", err)
	}
	img, err := EnrollVars(tmpl, c)
	if err != nil {
		return err
	}
	return os.WriteFile(out, img, 0o644)
}
