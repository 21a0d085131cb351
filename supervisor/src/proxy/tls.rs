//! TLS for inspected endpoints: a per-sandbox CA (ECDSA P-256, made at start, never written
//! outside the sandbox's own files) that mints a leaf certificate per host, and the client
//! configuration used to verify upstream servers normally.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make the sandbox CA: {0}")]
    Ca(rcgen::Error),
    #[error("cannot make a certificate for {host}: {source}")]
    Leaf { host: String, source: rcgen::Error },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot read the upstream CA file {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the upstream CA file {path} holds no usable certificate")]
    CaFileEmpty { path: String },
}

/// The sandbox's certificate authority.
pub struct SandboxCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    /// One leaf key for every host: minting then costs one signature, not a key generation.
    leaf_key: Arc<KeyPair>,
    leaf_key_der: Vec<u8>,
    cache: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
}

/// Leaf certificates minted per host are kept; a sandbox talks to few hosts.
const CACHE_LIMIT: usize = 1024;

impl SandboxCa {
    /// A fresh CA named after the sandbox.
    pub fn generate(sandbox: &str) -> Result<SandboxCa, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(TlsError::Ca)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(TlsError::Ca)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("OpenShell sandbox CA ({sandbox})"),
        );
        dn.push(DnType::OrganizationName, "OpenShell");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(30);
        let cert = params.self_signed(&key).map_err(TlsError::Ca)?;
        let cert_pem = cert.pem();
        let issuer = Issuer::new(params, key);
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(TlsError::Ca)?;
        let leaf_key_der = leaf_key.serialize_der();
        Ok(SandboxCa {
            issuer,
            cert_pem,
            leaf_key: Arc::new(leaf_key),
            leaf_key_der,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate, PEM, for the sandbox's trust bundle.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server configuration presenting a certificate for `host` (HTTP/1.1 only: every
    /// request must be seen and decided).
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        if let Ok(cache) = self.cache.lock()
            && let Some(c) = cache.get(host)
        {
            return Ok(c.clone());
        }
        let leaf = self.mint(host)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf], key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(host.to_string(), config.clone());
        }
        Ok(config)
    }

    fn mint(&self, host: &str) -> Result<CertificateDer<'static>, TlsError> {
        let leaf_err = |source| TlsError::Leaf {
            host: host.to_string(),
            source,
        };
        let mut params = CertificateParams::new(vec![host.to_string()]).map_err(leaf_err)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, host);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(7);
        let cert = params
            .signed_by(&*self.leaf_key, &self.issuer)
            .map_err(leaf_err)?;
        Ok(cert.der().clone())
    }
}

/// The one crypto provider of the whole build.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Roots for verifying upstream servers: the bundled Mozilla roots, the host's bundle when
/// present, and `extra` files (`--upstream-ca`, e.g. a corporate CA).
pub fn upstream_client_config(extra: &[PathBuf]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for p in extra {
        let added = add_pem_file(&mut roots, p)?;
        if added == 0 {
            return Err(TlsError::CaFileEmpty {
                path: p.display().to_string(),
            });
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn add_pem_file(roots: &mut rustls::RootCertStore, path: &Path) -> Result<usize, TlsError> {
    let text = std::fs::read(path).map_err(|source| TlsError::CaFile {
        path: path.display().to_string(),
        source,
    })?;
    let mut added = 0;
    for der in pem_certificates(&text) {
        if roots.add(der).is_ok() {
            added += 1;
        }
    }
    Ok(added)
}

/// The DER certificates in a PEM text.
pub fn pem_certificates(text: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(text)
        .filter_map(Result::ok)
        .collect()
}

/// The host bundles we know of, first found wins.
const HOST_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The sandbox's trust bundle: the host's roots (tunnelled TLS is verified by the client
/// against real certificates), the upstream CAs the operator added, and the sandbox CA.
pub fn sandbox_bundle(ca_pem: &str, extra: &[PathBuf]) -> String {
    let mut out = String::new();
    if let Some(text) = HOST_BUNDLES
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
    {
        out.push_str(&text);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    for p in extra {
        if let Ok(text) = std::fs::read_to_string(p) {
            out.push_str(&text);
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out.push_str(ca_pem);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_certificates_chain_to_the_ca() {
        let ca = SandboxCa::generate("t").expect("ca");
        let mut roots = rustls::RootCertStore::empty();
        for der in pem_certificates(ca.cert_pem().as_bytes()) {
            roots.add(der).expect("ca parses");
        }
        let leaf = ca.mint("api.github.com").expect("leaf");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .expect("verifier");
        let name = rustls::pki_types::ServerName::try_from("api.github.com").expect("name");
        let now = rustls::pki_types::UnixTime::now();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], now)
            .expect("leaf verifies against the sandbox CA");
        let other = rustls::pki_types::ServerName::try_from("evil.example").expect("name");
        assert!(
            verifier
                .verify_server_cert(&leaf, &[], &other, &[], now)
                .is_err()
        );
        // The cache hands out the same config twice.
        let a = ca.server_config("api.github.com").expect("config");
        let b = ca.server_config("api.github.com").expect("config");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
