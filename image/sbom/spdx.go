package sbom

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The SPDX 2.3 JSON document (https://spdx.github.io/spdx-spec/v2.3/), the
// part of it Pith writes. No SPDX library on the Go module proxy writes 2.3
// documents with the maintenance this needs, so the types are here and
// Validate checks what the specification requires of them.

// SPDX constants.
const (
	Version     = "SPDX-2.3"
	DataLicense = "CC0-1.0"
	DocumentID  = "SPDXRef-DOCUMENT"
	NoAssertion = "NOASSERTION"
	// TimeFormat is SPDX's timestamp: UTC, seconds, a Z.
	TimeFormat = "2006-01-02T15:04:05Z"
)

// Document is an SPDX 2.3 document.
type Document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      CreationInfo   `json:"creationInfo"`
	Comment           string         `json:"comment,omitempty"`
	Packages          []Package      `json:"packages"`
	Relationships     []Relationship `json:"relationships"`
}

// CreationInfo says who made the document and when.
type CreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

// Package is an SPDX package.
type Package struct {
	SPDXID                string        `json:"SPDXID"`
	Name                  string        `json:"name"`
	VersionInfo           string        `json:"versionInfo,omitempty"`
	Supplier              string        `json:"supplier,omitempty"`
	DownloadLocation      string        `json:"downloadLocation"`
	FilesAnalyzed         bool          `json:"filesAnalyzed"`
	Checksums             []Checksum    `json:"checksums,omitempty"`
	SourceInfo            string        `json:"sourceInfo,omitempty"`
	LicenseConcluded      string        `json:"licenseConcluded,omitempty"`
	LicenseDeclared       string        `json:"licenseDeclared,omitempty"`
	CopyrightText         string        `json:"copyrightText,omitempty"`
	Comment               string        `json:"comment,omitempty"`
	ExternalRefs          []ExternalRef `json:"externalRefs,omitempty"`
	PrimaryPackagePurpose string        `json:"primaryPackagePurpose,omitempty"`
}

// Checksum is a package's digest.
type Checksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

// ExternalRef points at a package in another system (a purl).
type ExternalRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

// Relationship links two elements.
type Relationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// Relationship types Pith uses.
const (
	Describes  = "DESCRIBES"
	Contains   = "CONTAINS"
	StaticLink = "STATIC_LINK"
)

var (
	idRE = regexp.MustCompile(`^SPDXRef-[A-Za-z0-9.-]+$`)
	// Checksum algorithms of SPDX 2.3 with their hex lengths (0: any).
	checksumLen = map[string]int{"SHA1": 40, "SHA224": 56, "SHA256": 64, "SHA384": 96, "SHA512": 128, "MD5": 32,
		"SHA3-256": 64, "SHA3-384": 96, "SHA3-512": 128, "BLAKE2b-256": 64, "BLAKE2b-384": 96, "BLAKE2b-512": 128, "BLAKE3": 0,
		"MD2": 32, "MD4": 32, "MD6": 0, "ADLER32": 8}
	hexRE         = regexp.MustCompile(`^[0-9a-f]+$`)
	relationTypes = []string{Describes, "DESCRIBED_BY", Contains, "CONTAINED_BY", "DEPENDS_ON", "DEPENDENCY_OF", StaticLink,
		"DYNAMIC_LINK", "GENERATED_FROM", "GENERATES", "PACKAGE_OF", "VARIANT_OF", "OTHER"}
	purposes   = []string{"APPLICATION", "FRAMEWORK", "LIBRARY", "CONTAINER", "OPERATING-SYSTEM", "DEVICE", "FIRMWARE", "SOURCE", "ARCHIVE", "FILE", "INSTALL", "OTHER"}
	categories = map[string]bool{"SECURITY": true, "PACKAGE-MANAGER": true, "PERSISTENT-ID": true, "OTHER": true}
)

// SPDXIDFor makes a valid SPDX identifier from arbitrary text: characters
// SPDX does not allow become '-'.
func SPDXIDFor(parts ...string) string {
	s := strings.Join(parts, "-")
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			b[i] = '-'
		}
	}
	return "SPDXRef-" + string(b)
}

// Validate checks the document against SPDX 2.3's requirements: the
// mandatory document and package fields and their formats, unique
// identifiers, and relationships between elements that exist, with the
// document describing at least one package.
func (d *Document) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if d.SPDXVersion != Version {
		bad("spdxVersion is %q, want %q", d.SPDXVersion, Version)
	}
	if d.DataLicense != DataLicense {
		bad("dataLicense is %q, want %q", d.DataLicense, DataLicense)
	}
	if d.SPDXID != DocumentID {
		bad("the document's SPDXID is %q, want %q", d.SPDXID, DocumentID)
	}
	if d.Name == "" {
		bad("the document has no name")
	}
	if u, err := url.Parse(d.DocumentNamespace); err != nil || u.Scheme == "" || strings.Contains(d.DocumentNamespace, "#") {
		bad("documentNamespace %q is not a URI without '#'", d.DocumentNamespace)
	}
	if _, err := time.Parse(TimeFormat, d.CreationInfo.Created); err != nil {
		bad("creationInfo.created %q is not YYYY-MM-DDThh:mm:ssZ", d.CreationInfo.Created)
	}
	if len(d.CreationInfo.Creators) == 0 {
		bad("creationInfo has no creators")
	}
	for _, c := range d.CreationInfo.Creators {
		if !strings.HasPrefix(c, "Tool: ") && !strings.HasPrefix(c, "Organization: ") && !strings.HasPrefix(c, "Person: ") {
			bad("creator %q does not start with Tool:, Organization: or Person:", c)
		}
	}
	ids := map[string]bool{DocumentID: true}
	for i, p := range d.Packages {
		where := fmt.Sprintf("package %d (%s)", i, p.Name)
		if !idRE.MatchString(p.SPDXID) {
			bad("%s: SPDXID %q is not SPDXRef-[A-Za-z0-9.-]+", where, p.SPDXID)
		}
		if ids[p.SPDXID] {
			bad("%s: SPDXID %s is used twice", where, p.SPDXID)
		}
		ids[p.SPDXID] = true
		if p.Name == "" {
			bad("%s: no name", where)
		}
		if p.DownloadLocation == "" {
			bad("%s: no downloadLocation (use %s)", where, NoAssertion)
		}
		if p.FilesAnalyzed {
			bad("%s: filesAnalyzed without files and a verification code", where)
		}
		for _, c := range p.Checksums {
			n, ok := checksumLen[c.Algorithm]
			if !ok {
				bad("%s: checksum algorithm %q is not SPDX's", where, c.Algorithm)
			} else if !hexRE.MatchString(c.Value) || n > 0 && len(c.Value) != n {
				bad("%s: %s checksum %q is not %d lower-case hex digits", where, c.Algorithm, c.Value, n)
			}
		}
		for _, r := range p.ExternalRefs {
			if !categories[r.Category] || r.Type == "" || r.Locator == "" || strings.ContainsAny(r.Locator, " \t\n") {
				bad("%s: external reference %+v is incomplete or has spaces", where, r)
			}
		}
		if p.PrimaryPackagePurpose != "" && !slices.Contains(purposes, p.PrimaryPackagePurpose) {
			bad("%s: primaryPackagePurpose %q is not SPDX's", where, p.PrimaryPackagePurpose)
		}
		for _, s := range []string{p.Supplier} {
			if s != "" && s != NoAssertion && !strings.HasPrefix(s, "Organization: ") && !strings.HasPrefix(s, "Person: ") {
				bad("%s: supplier %q does not start with Organization: or Person:", where, s)
			}
		}
	}
	describes := 0
	for _, r := range d.Relationships {
		if !slices.Contains(relationTypes, r.Type) {
			bad("relationship %s %s %s: unknown type", r.Element, r.Type, r.Related)
		}
		for _, id := range []string{r.Element, r.Related} {
			if !ids[id] {
				bad("relationship %s %s %s: no element %s", r.Element, r.Type, r.Related, id)
			}
		}
		if r.Element == DocumentID && r.Type == Describes {
			describes++
		}
	}
	if describes == 0 {
		bad("the document DESCRIBES no package")
	}
	return errors.Join(errs...)
}

// Marshal validates the document and renders it as indented JSON with a
// final newline.
func (d *Document) Marshal() ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("invalid SPDX document: %w", err)
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Unmarshal parses and validates an SPDX 2.3 JSON document.
func Unmarshal(b []byte) (*Document, error) {
	var d Document
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("not SPDX JSON: %w", err)
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("invalid SPDX document: %w", err)
	}
	return &d, nil
}
