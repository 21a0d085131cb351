//! Remote access over TCP with mutual TLS. On first use the gateway makes its own CA and a
//! client certificate under `<state>/tls/`; a server certificate (for the listen host,
//! `localhost` and 127.0.0.1) is made again at every start, so a new listen address is always
//! covered. Only clients holding a certificate from this CA get in: copy `ca.pem`,
//! `client.pem` and `client.key` to the machine that runs `openshell`.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the {what} certificate: {source}")]
    Cert {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("{} is not a usable private key ({source}); remove the tls directory to start over", path.display())]
    Key { path: PathBuf, source: rcgen::Error },
}

/// What the TLS listener needs, PEM.
pub struct ServerMaterials {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub const CA: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
pub const CLIENT: &str = "client.pem";
pub const CLIENT_KEY: &str = "client.key";

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TlsError {
    let path = path.to_path_buf();
    move |source| TlsError::Io { what, path, source }
}

/// Writes `contents` to `path` with `mode`, through a temporary file so a crash never leaves a
/// half-written key.
fn write(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("write", &tmp))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("write", path))
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(io("read", path))
}

/// The CA's parameters. Always the same: an issuer is rebuilt from them and the stored key.
fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|source| TlsError::Cert { what: "CA", source })?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "OpenShell gateway CA");
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
    params.not_after = now + time::Duration::days(3650);
    Ok(params)
}

fn leaf(
    what: &'static str,
    common_name: &str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
    days: i64,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), TlsError> {
    let err = |source| TlsError::Cert { what, source };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
    let cert = params.signed_by(&key, issuer).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The server certificate's names: the listen host, `localhost`, 127.0.0.1 and ::1.
fn server_names(host: &str) -> Result<Vec<SanType>, TlsError> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // A wildcard address is not a name a client can use: the machine's name is.
    if host == "0.0.0.0" || host == "::" {
        if let Ok(h) = nix::unistd::gethostname()
            && let Some(h) = h.to_str()
        {
            names.push(h.to_string());
        }
    } else {
        names.push(host.to_string());
    }
    names.dedup();
    let mut sans = Vec::new();
    for n in names {
        let san = match n.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.clone().try_into().map_err(|source| TlsError::Cert {
                what: "server",
                source,
            })?),
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// Makes what is missing in `dir` (the CA and the client certificate on first use; the
/// server certificate for `host` every time) and returns the server's part.
pub fn ensure(dir: &Path, host: &str) -> Result<ServerMaterials, TlsError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create", dir))?;
    let (ca_path, ca_key_path) = (dir.join(CA), dir.join(CA_KEY));
    let fresh_ca = !(ca_path.exists() && ca_key_path.exists());
    let (ca_pem, ca_key) = if fresh_ca {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|source| TlsError::Cert { what: "CA", source })?;
        let cert = ca_params()?
            .self_signed(&key)
            .map_err(|source| TlsError::Cert { what: "CA", source })?;
        write(&ca_key_path, &key.serialize_pem(), 0o600)?;
        write(&ca_path, &cert.pem(), 0o644)?;
        (cert.pem(), key)
    } else {
        let key = KeyPair::from_pem(&read(&ca_key_path)?).map_err(|source| TlsError::Key {
            path: ca_key_path.clone(),
            source,
        })?;
        (read(&ca_path)?, key)
    };
    let issuer = Issuer::new(ca_params()?, ca_key);

    let (client, client_key) = (dir.join(CLIENT), dir.join(CLIENT_KEY));
    // A client certificate lives as long as the CA: copies of it keep working across restarts.
    if fresh_ca || !client.exists() || !client_key.exists() {
        let (pem, key) = leaf(
            "client",
            "openshell client",
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            3650,
            &issuer,
        )?;
        write(&client_key, &key, 0o600)?;
        write(&client, &pem, 0o644)?;
    }

    let (cert_pem, key_pem) = leaf(
        "server",
        "openshell-gateway",
        server_names(host)?,
        ExtendedKeyUsagePurpose::ServerAuth,
        365,
        &issuer,
    )?;
    write(&dir.join(SERVER_KEY), &key_pem, 0o600)?;
    write(&dir.join(SERVER), &cert_pem, 0o644)?;
    Ok(ServerMaterials {
        ca_pem,
        cert_pem,
        key_pem,
    })
}
