package secureboot

// The OpenPGP subset GRUB 2.06's pgp module reads (RFC 4880): a v4 RSA
// public key packet, and v4 binary-document signatures over SHA-256 or
// SHA-512 whose issuer key ID is an unhashed subpacket. GRUB 2.06 parses
// old-format packet headers only and looks for the issuer in the unhashed
// area, so current OpenPGP libraries' output (new-format headers, issuer
// hashed) is refused with "public key 00000000 not found"; these few
// packets are written here with crypto/rsa instead.

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"time"
)

const (
	tagSignature = 2
	tagPublicKey = 6
	algoRSA      = 1
	hashSHA256   = 8
	hashSHA512   = 10
	sigBinary    = 0x00
	subCreated   = 2
	subIssuer    = 16
)

// oldPacket frames body as an old-format packet with a 4-byte length.
func oldPacket(tag byte, body []byte) []byte {
	b := []byte{0x80 | tag<<2 | 2, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)))
	return append(b, body...)
}

func mpi(n *big.Int) []byte {
	b := n.Bytes()
	return append([]byte{byte(n.BitLen() >> 8), byte(n.BitLen())}, b...)
}

// pgpKey is an RSA key as OpenPGP sees it: the creation time is part of
// the key's fingerprint and so of its ID.
type pgpKey struct {
	pub     *rsa.PublicKey
	created time.Time
}

func (k pgpKey) body() []byte {
	b := []byte{4, 0, 0, 0, 0, algoRSA}
	binary.BigEndian.PutUint32(b[1:], uint32(k.created.Unix()))
	b = append(b, mpi(k.pub.N)...)
	return append(b, mpi(big.NewInt(int64(k.pub.E)))...)
}

// packet is the public key packet (GrubPubFile's content).
func (k pgpKey) packet() []byte { return oldPacket(tagPublicKey, k.body()) }

// keyID is the low 64 bits of the v4 fingerprint (SHA-1 over 0x99, a
// two-byte length and the body).
func (k pgpKey) keyID() []byte {
	body := k.body()
	h := sha1.New()
	h.Write([]byte{0x99, byte(len(body) >> 8), byte(len(body))})
	h.Write(body)
	return h.Sum(nil)[12:20]
}

// parsePublicKey reads a public key packet written by packet.
func parsePublicKey(b []byte) (pgpKey, error) {
	body, err := readOldPacket(b, tagPublicKey)
	if err != nil {
		return pgpKey{}, err
	}
	if len(body) < 6 || body[0] != 4 || body[5] != algoRSA {
		return pgpKey{}, errors.New("not a v4 RSA OpenPGP public key")
	}
	k := pgpKey{created: time.Unix(int64(binary.BigEndian.Uint32(body[1:])), 0)}
	rest := body[6:]
	n, rest, err := readMPI(rest)
	if err != nil {
		return pgpKey{}, err
	}
	e, _, err := readMPI(rest)
	if err != nil || !e.IsInt64() {
		return pgpKey{}, errors.New("bad RSA exponent in OpenPGP key")
	}
	k.pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
	return k, nil
}

func readOldPacket(b []byte, tag byte) ([]byte, error) {
	if len(b) < 5 || b[0] != 0x80|tag<<2|2 {
		return nil, fmt.Errorf("not an OpenPGP packet of type %d as written by pith", tag)
	}
	n := binary.BigEndian.Uint32(b[1:])
	if uint64(n) > uint64(len(b)-5) {
		return nil, errors.New("truncated OpenPGP packet")
	}
	return b[5 : 5+n], nil
}

func readMPI(b []byte) (*big.Int, []byte, error) {
	if len(b) < 2 {
		return nil, nil, errors.New("truncated OpenPGP MPI")
	}
	n := (int(b[0])<<8 | int(b[1]) + 7) / 8
	if len(b) < 2+n {
		return nil, nil, errors.New("truncated OpenPGP MPI")
	}
	return new(big.Int).SetBytes(b[2 : 2+n]), b[2+n:], nil
}

// pgpHashes are the digests a signature may use: OpenPGP's ID -> Go's.
var pgpHashes = map[byte]crypto.Hash{hashSHA256: crypto.SHA256, hashSHA512: crypto.SHA512}

// pgpHashID is h's OpenPGP ID.
func pgpHashID(h crypto.Hash) (byte, error) {
	for id, g := range pgpHashes {
		if g == h {
			return id, nil
		}
	}
	return 0, fmt.Errorf("OpenPGP signatures here are SHA-256 or SHA-512, not %v", h)
}

// sigHashed is the hashed part of a signature: version to hashed subpackets.
func sigHashed(created time.Time, hashID byte) []byte {
	sub := []byte{5, subCreated, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(sub[2:], uint32(created.Unix()))
	b := []byte{4, sigBinary, algoRSA, hashID, 0, byte(len(sub))}
	return append(b, sub...)
}

// sigDigest hashes data and the signature's hashed part (whose fourth
// byte names the hash) with its trailer.
func sigDigest(data []byte, hashed []byte) []byte {
	h := sha256.New()
	if hashed[3] == hashSHA512 {
		h = sha512.New()
	}
	h.Write(data)
	h.Write(hashed)
	trailer := []byte{4, 0xff, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(trailer[2:], uint32(len(hashed)))
	h.Write(trailer)
	return h.Sum(nil)
}

// signDetached returns a detached signature packet over data, hashed
// with h (SHA-256 or SHA-512).
func signDetached(priv *rsa.PrivateKey, key pgpKey, data []byte, now time.Time, h crypto.Hash) ([]byte, error) {
	id, err := pgpHashID(h)
	if err != nil {
		return nil, err
	}
	hashed := sigHashed(now, id)
	digest := sigDigest(data, hashed)
	s, err := rsa.SignPKCS1v15(rand.Reader, priv, h, digest)
	if err != nil {
		return nil, err
	}
	body := append([]byte(nil), hashed...)
	unhashed := append([]byte{9, subIssuer}, key.keyID()...)
	body = append(body, 0, byte(len(unhashed)))
	body = append(body, unhashed...)
	body = append(body, digest[0], digest[1])
	body = append(body, mpi(new(big.Int).SetBytes(s))...)
	return oldPacket(tagSignature, body), nil
}

// verifyDetached checks a signature made by signDetached.
func verifyDetached(key pgpKey, data, sig []byte) error {
	body, err := readOldPacket(sig, tagSignature)
	if err != nil {
		return err
	}
	if len(body) < 6 || body[0] != 4 || body[1] != sigBinary || body[2] != algoRSA || pgpHashes[body[3]] == 0 {
		return errors.New("not a v4 RSA/SHA-256 or RSA/SHA-512 OpenPGP signature")
	}
	hlen := int(binary.BigEndian.Uint16(body[4:]))
	if len(body) < 6+hlen+2 {
		return errors.New("truncated OpenPGP signature")
	}
	hashed := body[:6+hlen]
	rest := body[6+hlen:]
	ulen := int(binary.BigEndian.Uint16(rest))
	if len(rest) < 2+ulen+2 {
		return errors.New("truncated OpenPGP signature")
	}
	if !bytes.Contains(rest[2:2+ulen], append([]byte{9, subIssuer}, key.keyID()...)) {
		return errors.New("signed by another key")
	}
	s, _, err := readMPI(rest[2+ulen+2:])
	if err != nil {
		return err
	}
	if s.BitLen() > key.pub.N.BitLen() {
		return errors.New("OpenPGP signature larger than the key")
	}
	digest := sigDigest(data, hashed)
	sb := s.FillBytes(make([]byte, key.pub.Size()))
	return rsa.VerifyPKCS1v15(key.pub, pgpHashes[body[3]], digest, sb)
}
