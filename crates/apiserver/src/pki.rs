//! The cluster's certificates: a CA, the API server's serving certificate and the admin client
//! certificate, made on first start and reused afterwards, plus the admin kubeconfig.
//!
//! Keys are written 0600 inside a 0700 directory. The serving certificate is re-issued on every
//! start (it is cheap) so that its SANs always cover the address being listened on.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert_pem: String,
    ca_key_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
}

/// Creates `dir` (mode 0700) if needed.
pub fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Writes a file readable only by its owner, atomically (write to a temporary name, then rename).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    dn
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

impl Pki {
    /// Loads the CA from `dir`, creating it on first start, and issues a fresh serving certificate.
    pub fn ensure(dir: &Path, extra_ips: &[IpAddr]) -> Result<Pki> {
        private_dir(dir)?;
        let ca_cert_path = dir.join("ca.crt");
        let ca_key_path = dir.join("ca.key");
        let (ca_cert_pem, ca_key_pem) = if ca_cert_path.exists() && ca_key_path.exists() {
            (fs::read_to_string(&ca_cert_path)?, fs::read_to_string(&ca_key_path)?)
        } else {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            params.distinguished_name = dn("lockbox-ca", &[]);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
            validity(&mut params, 3650);
            let cert = params.self_signed(&key)?;
            write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
            write_private(&ca_cert_path, cert.pem().as_bytes())?;
            (cert.pem(), key.serialize_pem())
        };
        let mut pki = Pki { dir: dir.to_path_buf(), ca_cert_pem, ca_key_pem, serving_cert_pem: String::new(), serving_key_pem: String::new() };
        let mut sans: Vec<SanType> = vec![
            SanType::IpAddress("127.0.0.1".parse()?),
            SanType::IpAddress("::1".parse()?),
            SanType::DnsName("localhost".try_into()?),
            SanType::DnsName("kubernetes".try_into()?),
            SanType::DnsName("kubernetes.default".try_into()?),
            SanType::DnsName("kubernetes.default.svc".try_into()?),
        ];
        if let Ok(h) = fs::read_to_string("/proc/sys/kernel/hostname") {
            if let Ok(name) = h.trim().to_string().try_into() {
                sans.push(SanType::DnsName(name));
            }
        }
        for ip in extra_ips {
            if !ip.is_loopback() && !ip.is_unspecified() {
                sans.push(SanType::IpAddress(*ip));
            }
        }
        let (cert, key) = pki.issue("lockbox-apiserver", &[], sans, ExtendedKeyUsagePurpose::ServerAuth)?;
        write_private(&dir.join("apiserver.crt"), cert.as_bytes())?;
        write_private(&dir.join("apiserver.key"), key.as_bytes())?;
        pki.serving_cert_pem = cert;
        pki.serving_key_pem = key;
        Ok(pki)
    }

    /// Issues a certificate signed by the CA: (certificate PEM, key PEM).
    pub fn issue(&self, cn: &str, orgs: &[&str], sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> Result<(String, String)> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn, orgs);
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![usage];
        validity(&mut params, 365);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The admin client certificate (CN=admin, O=system:masters), made once.
    pub fn admin_credentials(&self) -> Result<(String, String)> {
        let cert_path = self.dir.join("admin.crt");
        let key_path = self.dir.join("admin.key");
        if cert_path.exists() && key_path.exists() {
            return Ok((fs::read_to_string(cert_path)?, fs::read_to_string(key_path)?));
        }
        let (cert, key) = self.issue("admin", &["system:masters"], vec![], ExtendedKeyUsagePurpose::ClientAuth)?;
        write_private(&key_path, key.as_bytes())?;
        write_private(&cert_path, cert.as_bytes())?;
        Ok((cert, key))
    }
}

/// A kubeconfig for `user` with embedded credentials, as kubeadm writes admin.conf.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: lockbox
contexts:
- context:
    cluster: lockbox
    user: {user}
  name: {user}@lockbox
current-context: {user}@lockbox
preferences: {{}}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}
