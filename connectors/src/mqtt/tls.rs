//! rustls client configuration from PEM files.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::config::TlsConfig;

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading certificates from {}", path.display()))?;
    let certs =
        rustls_pemfile::certs(&mut pem.as_slice()).collect::<Result<Vec<_>, _>>().with_context(|| format!("parsing PEM certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// Build a client configuration: the CA file (or the webpki roots of the system) and an
/// optional client certificate.
pub fn client_config(tls: Option<&TlsConfig>, base: &Path) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match tls.and_then(|t| t.ca.as_ref()) {
        Some(ca) => {
            for cert in read_certs(&base.join(ca))? {
                roots.add(cert).context("adding a CA certificate")?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                bail!("no system root certificates found; set tls.ca to the broker's CA file");
            }
        }
    }
    let builder =
        ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().context("TLS protocol versions")?.with_root_certificates(roots);
    let config = match tls.map(|t| (&t.client_cert, &t.client_key)) {
        Some((Some(cert), Some(key))) => {
            let chain = read_certs(&base.join(cert))?;
            let key_pem = key.reveal(base).context("reading the client key")?;
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
                .context("parsing the client key")?
                .context("the client key file holds no PEM private key")?;
            builder.with_client_auth_cert(chain, key).context("the client certificate and key do not fit together")?
        }
        Some((None, None)) | None => builder.with_no_client_auth(),
        Some(_) => bail!("tls.client_cert and tls.client_key go together: set both or neither"),
    };
    Ok(Arc::new(config))
}
