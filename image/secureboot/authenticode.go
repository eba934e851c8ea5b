package secureboot

// Authenticode, the signature UEFI firmware checks on an EFI binary before
// it runs it (Microsoft's "Windows Authenticode Portable Executable
// Signature Format", UEFI 2.10 section 32.2.4): a PKCS#7 SignedData in the
// image's certificate table whose content, SpcIndirectDataContent, holds a
// digest of the image without its checksum field, its certificate-table
// directory entry and the table itself. SignEFI (sbsign) writes it;
// VerifyEFI checks it as the firmware does against db, so the update agent
// refuses a kernel the firmware would refuse before writing anything.

import (
	"bytes"
	"crypto"
	_ "crypto/sha256" // the digests Authenticode names
	_ "crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/pe"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"

	"github.com/smallstep/pkcs7"
)

var (
	oidSpcIndirectData   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 4}
	oidSpcPEImageData    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 15}
	oidAttrContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	authenticodeDigests  = map[string]crypto.Hash{"2.16.840.1.101.3.4.2.1": crypto.SHA256, "2.16.840.1.101.3.4.2.2": crypto.SHA384, "2.16.840.1.101.3.4.2.3": crypto.SHA512}
	errNoAuthenticodeSig = errors.New("no Authenticode signature")
)

// winCertPKCSSignedData is WIN_CERTIFICATE's wCertificateType of an
// Authenticode signature.
const winCertPKCSSignedData = 0x0002

// spcIndirectDataContent is Authenticode's signed content: what is signed
// (a PE image) and its digest.
type spcIndirectDataContent struct {
	Data struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue `asn1:"optional"`
	}
	MessageDigest struct {
		Algorithm pkix.AlgorithmIdentifier
		Digest    []byte
	}
}

// VerifyEFI checks that the PE/COFF image carries an Authenticode
// signature whose digest is the image's and whose signer is the
// certificate db (PEM or DER: db.crt, pith/db.crt on the ESP) or a
// certificate that chains to it: what UEFI Secure Boot with db enrolled
// checks before running the image. An image with several signatures
// passes if one does.
func VerifyEFI(db, image []byte) error {
	cert, err := parseCert(db)
	if err != nil {
		return fmt.Errorf("db certificate: %v", err)
	}
	l, err := parsePE(image)
	if err != nil {
		return err
	}
	sigs, err := l.signatures(image)
	if err != nil {
		return err
	}
	var errs []error
	for _, sig := range sigs {
		err := verifyAuthenticode(sig, image, l, cert)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// verifyAuthenticode checks one PKCS#7 SignedData of the image.
func verifyAuthenticode(sig, image []byte, l *peLayout, db *x509.Certificate) error {
	p7, err := pkcs7.Parse(sig)
	if err != nil {
		return fmt.Errorf("signature: %v", err)
	}
	if len(p7.Signers) != 1 {
		return fmt.Errorf("signature: %d signers, want one", len(p7.Signers))
	}
	if p7.GetOnlySigner() == nil {
		return errors.New("signature: no certificate of its signer")
	}
	// The content type is a signed attribute: the signature covers it,
	// and the messageDigest attribute covers p7.Content.
	var ct asn1.ObjectIdentifier
	if err := p7.UnmarshalSignedAttribute(oidAttrContentType, &ct); err != nil {
		return fmt.Errorf("signature: signed content type: %v", err)
	}
	if !ct.Equal(oidSpcIndirectData) {
		return fmt.Errorf("signature: signed content type %v, want SpcIndirectDataContent", ct)
	}
	// p7.Content is the body of the SpcIndirectDataContent SEQUENCE.
	der, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: p7.Content})
	if err != nil {
		return err
	}
	var ind spcIndirectDataContent
	if rest, err := asn1.Unmarshal(der, &ind); err != nil || len(rest) != 0 {
		return fmt.Errorf("signature: SpcIndirectDataContent: %v", err)
	}
	if !ind.Data.Type.Equal(oidSpcPEImageData) {
		return fmt.Errorf("signature: signs %v, not a PE image", ind.Data.Type)
	}
	h, ok := authenticodeDigests[ind.MessageDigest.Algorithm.Algorithm.String()]
	if !ok {
		return fmt.Errorf("signature: digest algorithm %v, want SHA-256, SHA-384 or SHA-512", ind.MessageDigest.Algorithm.Algorithm)
	}
	if got := l.digest(image, h); !bytes.Equal(got, ind.MessageDigest.Digest) {
		return fmt.Errorf("the image's %v digest %x is not the signed one %x: the image changed after signing", h, got, ind.MessageDigest.Digest)
	}
	if err := chainsTo(p7, db); err != nil {
		return err
	}
	if err := checkSignerInfo(p7); err != nil { // the signature, by the signer chainsTo checked
		return fmt.Errorf("signature: %v", err)
	}
	return nil
}

// checkSignerInfo checks the one signer's signature over its signed
// attributes and their messageDigest over the content. pkcs7's own Verify
// also refuses a signing time outside the signer certificate's validity;
// the firmware has no trusted clock and ignores validity, and sbsign's
// signing time is the build's SOURCE_DATE_EPOCH, which may well come before
// a db certificate made later (CI10: a 2026-01-01 signature by a db made
// that day was refused), so that check would refuse kernels the firmware
// runs.
func checkSignerInfo(p7 *pkcs7.PKCS7) error {
	si := p7.Signers[0]
	h, ok := authenticodeDigests[si.DigestAlgorithm.Algorithm.String()]
	if !ok {
		return fmt.Errorf("signer digest algorithm %v, want SHA-256, SHA-384 or SHA-512", si.DigestAlgorithm.Algorithm)
	}
	var digest []byte
	if err := p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeMessageDigest, &digest); err != nil {
		return fmt.Errorf("signed messageDigest: %v", err)
	}
	d := h.New()
	d.Write(p7.Content)
	if !bytes.Equal(d.Sum(nil), digest) {
		return errors.New("the signed attributes' messageDigest is not the content's")
	}
	// The signature covers the attributes DER-encoded as a SET OF, not
	// with the [0] tag they carry inside SignerInfo.
	attrs := make([]signedAttr, len(si.AuthenticatedAttributes))
	for i, a := range si.AuthenticatedAttributes {
		attrs[i] = signedAttr{Type: a.Type, Value: a.Value}
	}
	set, err := asn1.Marshal(struct {
		A []signedAttr `asn1:"set"`
	}{attrs})
	if err != nil {
		return err
	}
	var outer asn1.RawValue
	if _, err := asn1.Unmarshal(set, &outer); err != nil {
		return err
	}
	alg, ok := rsaSignatureAlgorithms[h]
	if !ok {
		return fmt.Errorf("digest %v", h)
	}
	if !si.DigestEncryptionAlgorithm.Algorithm.Equal(oidRSAEncryption) && !si.DigestEncryptionAlgorithm.Algorithm.Equal(rsaSignatureOIDs[h]) {
		return fmt.Errorf("signature algorithm %v, want RSA (what db keys are)", si.DigestEncryptionAlgorithm.Algorithm)
	}
	return p7.GetOnlySigner().CheckSignature(alg, outer.Bytes, si.EncryptedDigest)
}

// signedAttr is one PKCS#9 attribute of a SignerInfo.
type signedAttr struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue `asn1:"set"`
}

var (
	oidRSAEncryption       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	rsaSignatureAlgorithms = map[crypto.Hash]x509.SignatureAlgorithm{crypto.SHA256: x509.SHA256WithRSA, crypto.SHA384: x509.SHA384WithRSA, crypto.SHA512: x509.SHA512WithRSA}
	rsaSignatureOIDs       = map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA256: {1, 2, 840, 113549, 1, 1, 11}, crypto.SHA384: {1, 2, 840, 113549, 1, 1, 12}, crypto.SHA512: {1, 2, 840, 113549, 1, 1, 13}}
)

// chainsTo checks that the signer's certificate is db or chains to it
// through the signature's certificates. The firmware has no clock it
// trusts and ignores validity periods, and so does this: the chain is
// checked at the latest NotBefore of db and the signature's certificates,
// a time when all of them are valid unless their periods do not overlap.
// (Not at the signing time: sbsign's is the build's SOURCE_DATE_EPOCH,
// which can come before a db certificate made later.)
func chainsTo(p7 *pkcs7.PKCS7, db *x509.Certificate) error {
	signer := p7.GetOnlySigner()
	at := db.NotBefore
	for _, c := range p7.Certificates {
		if c.NotBefore.After(at) {
			at = c.NotBefore
		}
	}
	roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(db)
	for _, c := range p7.Certificates {
		intermediates.AddCert(c)
	}
	_, err := signer.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("signed by %q (certificate SHA-256 %.16s), which is not the db certificate %q (%.16s) nor issued by it", signer.Subject.CommonName, Fingerprint(signer), db.Subject.CommonName, Fingerprint(db))
	case err != nil:
		return fmt.Errorf("signed by %q (certificate SHA-256 %.16s): %v", signer.Subject.CommonName, Fingerprint(signer), err)
	}
	return nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	if p, _ := pem.Decode(b); p != nil {
		if p.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", p.Type)
		}
		b = p.Bytes
	}
	return x509.ParseCertificate(b)
}

// peLayout is where an image's parts are, for its Authenticode digest.
type peLayout struct {
	checksum      int     // offset of the optional header's CheckSum
	certDir       int     // offset of the certificate table's data directory entry
	headers       int     // SizeOfHeaders
	sections      [][]int // offset and size of the sections' raw data, by offset
	certs, nCerts int     // the certificate table: offset and size (0 when unsigned)
}

// parsePE finds the parts of a PE/COFF image that its Authenticode digest
// skips or orders, checking that each lies inside the image.
func parsePE(image []byte) (*peLayout, error) {
	if len(image) < 0x40 || image[0] != 'M' || image[1] != 'Z' {
		return nil, errors.New("not a PE/COFF image (no MZ header)")
	}
	f, err := pe.NewFile(bytes.NewReader(image))
	if err != nil {
		return nil, fmt.Errorf("not a PE/COFF image: %v", err)
	}
	opt := int(binary.LittleEndian.Uint32(image[0x3c:])) + 4 + 20 // after "PE\0\0" and the COFF header
	var (
		headers, nDirs uint32
		dirs           int // offset of DataDirectory in the optional header
		certDir        pe.DataDirectory
	)
	switch oh := f.OptionalHeader.(type) {
	case *pe.OptionalHeader32:
		headers, nDirs, dirs = oh.SizeOfHeaders, oh.NumberOfRvaAndSizes, 96
		certDir = oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
	case *pe.OptionalHeader64:
		headers, nDirs, dirs = oh.SizeOfHeaders, oh.NumberOfRvaAndSizes, 112
		certDir = oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
	default:
		return nil, errors.New("not a PE/COFF image: no optional header")
	}
	l := &peLayout{checksum: opt + 64, certDir: opt + dirs + 8*pe.IMAGE_DIRECTORY_ENTRY_SECURITY, headers: int(headers)}
	if nDirs <= pe.IMAGE_DIRECTORY_ENTRY_SECURITY || int(f.SizeOfOptionalHeader) < dirs+8*(pe.IMAGE_DIRECTORY_ENTRY_SECURITY+1) {
		return nil, errNoAuthenticodeSig // no certificate table entry
	}
	if l.certDir+8 > l.headers || l.headers > len(image) {
		return nil, fmt.Errorf("PE image: SizeOfHeaders %d outside the image (%d bytes) or before the data directories", l.headers, len(image))
	}
	for _, s := range f.Sections {
		if s.Size == 0 {
			continue
		}
		if uint64(s.Offset)+uint64(s.Size) > uint64(len(image)) {
			return nil, fmt.Errorf("PE image: section %q (%d bytes at %d) ends past the image (%d bytes)", s.Name, s.Size, s.Offset, len(image))
		}
		l.sections = append(l.sections, []int{int(s.Offset), int(s.Size)})
	}
	sort.SliceStable(l.sections, func(i, j int) bool { return l.sections[i][0] < l.sections[j][0] })
	l.certs, l.nCerts = int(certDir.VirtualAddress), int(certDir.Size)
	if uint64(certDir.VirtualAddress)+uint64(certDir.Size) > uint64(len(image)) {
		return nil, fmt.Errorf("PE image: certificate table (%d bytes at %d) ends past the image (%d bytes)", certDir.Size, certDir.VirtualAddress, len(image))
	}
	if l.hashed() > len(image)-l.nCerts {
		return nil, fmt.Errorf("PE image: headers and sections (%d bytes) overlap the certificate table", l.hashed())
	}
	return l, nil
}

// hashed is the number of bytes the headers and sections add to the digest.
func (l *peLayout) hashed() int {
	n := l.headers
	for _, s := range l.sections {
		n += s[1]
	}
	return n
}

// digest is the image's Authenticode digest: the headers without the
// checksum and the certificate table's directory entry, the sections by
// file offset, then what follows them up to the certificate table (EDK II's
// DxeImageVerificationLib does the same).
func (l *peLayout) digest(image []byte, h crypto.Hash) []byte {
	w := h.New()
	w.Write(image[:l.checksum])
	w.Write(image[l.checksum+4 : l.certDir])
	w.Write(image[l.certDir+8 : l.headers])
	for _, s := range l.sections {
		w.Write(image[s[0] : s[0]+s[1]])
	}
	if n := l.hashed(); n < len(image)-l.nCerts {
		w.Write(image[n : len(image)-l.nCerts])
	}
	return w.Sum(nil)
}

// signatures are the PKCS#7 SignedData entries of the certificate table
// (WIN_CERTIFICATE: length, revision, type, then the data; each entry
// 8-byte aligned).
func (l *peLayout) signatures(image []byte) ([][]byte, error) {
	if l.nCerts == 0 {
		return nil, errNoAuthenticodeSig
	}
	var sigs [][]byte
	table := image[l.certs : l.certs+l.nCerts]
	for len(table) >= 8 {
		n := int(binary.LittleEndian.Uint32(table))
		if n < 8 || n > len(table) {
			return nil, fmt.Errorf("PE image: certificate table entry of %d bytes in %d", n, len(table))
		}
		if binary.LittleEndian.Uint16(table[6:]) == winCertPKCSSignedData {
			sigs = append(sigs, table[8:n])
		}
		table = table[min((n+7)&^7, len(table)):]
	}
	if len(sigs) == 0 {
		return nil, errNoAuthenticodeSig
	}
	return sigs, nil
}
