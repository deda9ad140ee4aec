// Validates a certificate chain with the JDK's PKIX CertPathValidator and PKIXRevocationChecker,
// OCSP only (no CRL fallback), for the end-entity certificate: the JDK asks the responder named
// in the certificate's AIA extension and verifies the answer (signature by the issuer or a
// delegated signer, CertID, thisUpdate/nextUpdate).
//
// Usage: java OcspCheck.java ROOT.pem CHAIN.pem   (CHAIN: leaf first, then the issuing CA)
// Prints "good" (exit 0), "revoked REASON" (exit 1), or "error: ..." (exit 2).
// -Djdk.security.certpath.ocspNonce=true makes the JDK send (and check) a nonce.

import java.io.FileInputStream;
import java.security.cert.CertPath;
import java.security.cert.CertPathValidator;
import java.security.cert.CertPathValidatorException;
import java.security.cert.CertificateFactory;
import java.security.cert.CertificateRevokedException;
import java.security.cert.PKIXParameters;
import java.security.cert.PKIXRevocationChecker;
import java.security.cert.TrustAnchor;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

public class OcspCheck {
    public static void main(String[] args) throws Exception {
        CertificateFactory factory = CertificateFactory.getInstance("X.509");
        X509Certificate root;
        try (FileInputStream in = new FileInputStream(args[0])) {
            root = (X509Certificate) factory.generateCertificate(in);
        }
        List<X509Certificate> chain = new ArrayList<>();
        try (FileInputStream in = new FileInputStream(args[1])) {
            for (var cert : factory.generateCertificates(in)) {
                chain.add((X509Certificate) cert);
            }
        }
        CertPath path = factory.generateCertPath(chain);
        CertPathValidator validator = CertPathValidator.getInstance("PKIX");
        PKIXRevocationChecker checker = (PKIXRevocationChecker) validator.getRevocationChecker();
        checker.setOptions(EnumSet.of(PKIXRevocationChecker.Option.ONLY_END_ENTITY,
                                      PKIXRevocationChecker.Option.NO_FALLBACK));
        PKIXParameters params = new PKIXParameters(Set.of(new TrustAnchor(root, null)));
        params.setRevocationEnabled(false); // the checker below does it, OCSP only
        params.addCertPathChecker(checker);
        try {
            validator.validate(path, params);
            System.out.println("good");
        } catch (CertPathValidatorException e) {
            if (e.getReason() == CertPathValidatorException.BasicReason.REVOKED
                    && e.getCause() instanceof CertificateRevokedException revoked) {
                System.out.println("revoked " + revoked.getRevocationReason());
                System.exit(1);
            }
            System.out.println("error: " + e.getReason() + ": " + e.getMessage());
            System.exit(2);
        }
    }
}
