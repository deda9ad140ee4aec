// ocspcheck asks an OCSP responder about one certificate with golang.org/x/crypto/ocsp, by
// POST and by GET, with SHA-1 and SHA-256 CertIDs, and verifies each answer: signature (by the
// issuer or a delegated signer it issued), CertID, nextUpdate. One line per query:
//
//	sha1 POST good
//	sha256 GET revoked keyCompromise
//
// Usage: ocspcheck LEAF.pem ISSUER.pem URL. Exit status 0 when every answer verified, 1 otherwise.
package main

import (
	"bytes"
	"crypto"
	_ "crypto/sha1"
	_ "crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"
)

var reasons = map[int]string{
	ocsp.Unspecified: "unspecified", ocsp.KeyCompromise: "keyCompromise", ocsp.CACompromise: "cACompromise",
	ocsp.AffiliationChanged: "affiliationChanged", ocsp.Superseded: "superseded",
	ocsp.CessationOfOperation: "cessationOfOperation", ocsp.CertificateHold: "certificateHold",
	ocsp.RemoveFromCRL: "removeFromCRL", ocsp.PrivilegeWithdrawn: "privilegeWithdrawn",
	ocsp.AACompromise: "aACompromise",
}

func readCert(path string) *x509.Certificate {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		fail("%s: no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		fail("%s: %v", path, err)
	}
	return cert
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ocspcheck: "+format+"\n", args...)
	os.Exit(1)
}

func fetch(client *http.Client, method, responder string, der []byte) ([]byte, error) {
	var resp *http.Response
	var err error
	if method == "POST" {
		resp, err = client.Post(responder, "application/ocsp-request", bytes.NewReader(der))
	} else {
		// RFC 6960 A.1: the URL-encoded base64 of the DER after the responder's URL.
		resp, err = client.Get(strings.TrimSuffix(responder, "/") + "/" + url.QueryEscape(base64.StdEncoding.EncodeToString(der)))
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/ocsp-response" {
		return nil, fmt.Errorf("Content-Type %q", ct)
	}
	return body, nil
}

func check(client *http.Client, leaf, issuer *x509.Certificate, responder string, hash crypto.Hash, method string) (string, error) {
	der, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: hash})
	if err != nil {
		return "", err
	}
	body, err := fetch(client, method, responder, der)
	if err != nil {
		return "", err
	}
	// Checks the signature (by the issuer, or by an embedded responder certificate that the
	// issuer signed and that has the OCSPSigning EKU) and the serial number.
	resp, err := ocsp.ParseResponseForCert(body, leaf, issuer)
	if err != nil {
		return "", err
	}
	if resp.IssuerHash != hash {
		return "", fmt.Errorf("CertID hash %v, asked %v", resp.IssuerHash, hash)
	}
	now := time.Now()
	if resp.NextUpdate.IsZero() || !resp.NextUpdate.After(now) || resp.ThisUpdate.After(now.Add(5*time.Minute)) {
		return "", fmt.Errorf("not current: thisUpdate %v nextUpdate %v", resp.ThisUpdate, resp.NextUpdate)
	}
	switch resp.Status {
	case ocsp.Good:
		return "good", nil
	case ocsp.Revoked:
		return "revoked " + reasons[resp.RevocationReason], nil
	default:
		return "unknown", nil
	}
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: ocspcheck LEAF.pem ISSUER.pem URL")
	}
	leaf, issuer := readCert(os.Args[1]), readCert(os.Args[2])
	client := &http.Client{Timeout: 10 * time.Second}
	ok := true
	for _, hash := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		for _, method := range []string{"POST", "GET"} {
			name := strings.ToLower(strings.ReplaceAll(hash.String(), "-", ""))
			verdict, err := check(client, leaf, issuer, os.Args[3], hash, method)
			if err != nil {
				fmt.Printf("%s %s error: %v\n", name, method, err)
				ok = false
				continue
			}
			fmt.Printf("%s %s %s\n", name, method, verdict)
		}
	}
	if !ok {
		os.Exit(1)
	}
}
