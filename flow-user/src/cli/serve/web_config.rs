//! `--web-config FILE`: TLS and basic auth for the exporter from the YAML file of the Prometheus
//! exporter toolkit (what node_exporter's `--web.config.file` reads), so one file serves both.
//!
//! Keys are checked as strictly as the toolkit checks them (an unknown key is an error). What this
//! exporter cannot honour is refused at start with one line, never silently ignored; what only
//! concerns Go's server and changes nothing here (`http2`, `prefer_server_cipher_suites`) is
//! accepted. Relative file names are taken from the config file's directory, as the toolkit does.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio_rustls::rustls::{
    crypto::{ring, CryptoProvider},
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    version::{TLS12, TLS13},
    NamedGroup, RootCertStore, ServerConfig, SupportedProtocolVersion,
};

/// The file as written: every section and key the toolkit knows, nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<String>,
    key_file: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    /// Deprecated and ignored by Go itself.
    #[allow(dead_code)]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// This exporter speaks HTTP/1.1 only; clients that offer HTTP/2 fall back to it.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// What the exporter does with the file.
pub struct WebConfig {
    pub tls: Option<Arc<ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
    /// Extra response headers (`http_server_config.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl WebConfig {
    /// No file: plain HTTP, no auth, as without `--web-config`.
    pub fn none() -> WebConfig {
        WebConfig {
            tls: None,
            auth: None,
            headers: Vec::new(),
        }
    }

    /// Reads and checks `path` and the files it names. The error is one line naming the file.
    pub fn load(path: &Path) -> Result<WebConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--web-config {}: cannot read it", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        WebConfig::parse(&text, dir).map_err(|e| anyhow!("--web-config {}: {e:#}", path.display()))
    }

    /// Parses the YAML `text`; file names in it are relative to `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<WebConfig> {
        // An empty file (or only comments) is the toolkit's "no TLS, no auth".
        let file: FileConfig = serde_norway::from_str::<Option<FileConfig>>(text)
            .map_err(|e| anyhow!("{}", one_line(&e.to_string())))?
            .unwrap_or_default();
        if file.rate_limit.is_some() {
            bail!("rate_limit is not supported by flow serve");
        }
        let tls = file
            .tls_server_config
            .map(|tls| tls_config(&tls, dir).context("tls_server_config"))
            .transpose()?;
        let auth = file
            .basic_auth_users
            .filter(|users| !users.is_empty())
            .map(BasicAuth::new)
            .transpose()
            .context("basic_auth_users")?
            .map(Arc::new);
        let headers = file
            .http_server_config
            .and_then(|http| http.headers)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| header(&name, &value))
            .collect::<Result<_>>()
            .context("http_server_config.headers")?;
        Ok(WebConfig { tls, auth, headers })
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue)> {
    let parsed =
        HeaderName::try_from(name).map_err(|_| anyhow!("`{name}` is not a header name"))?;
    // The exporter sets these itself; a second copy would make a broken response.
    const OWN: [&str; 6] = [
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "date",
        "www-authenticate",
    ];
    if OWN.contains(&parsed.as_str()) {
        bail!("{name} is set by the exporter and cannot be configured");
    }
    let value = HeaderValue::try_from(value)
        .map_err(|_| anyhow!("the value of {name} is not a valid header value"))?;
    Ok((parsed, value))
}

/// A rustls server configuration from the toolkit's `tls_server_config`.
fn tls_config(file: &TlsFile, dir: &Path) -> Result<Arc<ServerConfig>> {
    let certs = pem_source(&file.cert_file, &file.cert, "cert_file", "cert", dir)?;
    let key = pem_source(&file.key_file, &file.key, "key_file", "key", dir)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&certs.bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{}: no certificate in it ({e})", certs.name))?;
    if certs.is_empty() {
        bail!("no PEM certificate found in the file given as cert_file");
    }
    let key = PrivateKeyDer::from_pem_slice(&key.bytes)
        .map_err(|e| anyhow!("{}: no private key in it ({e})", key.name))?;

    let mut provider = ring::default_provider();
    if let Some(names) = &file.cipher_suites {
        provider.cipher_suites = cipher_suites(&provider, names)?;
    }
    if let Some(names) = &file.curve_preferences {
        provider.kx_groups = curves(&provider, names)?;
    }
    let provider = Arc::new(provider);
    let versions = versions(file.min_version.as_deref(), file.max_version.as_deref())?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| anyhow!("{e}"))?;
    let builder = match client_verifier(file, dir, &provider)? {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| anyhow!("the certificate and key do not make a TLS identity ({e})"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

struct Pem {
    name: String,
    bytes: Vec<u8>,
}

/// `cert_file` or the inline `cert` (or `key_file` / `key`): exactly one of them.
fn pem_source(
    file: &Option<String>,
    inline: &Option<String>,
    file_key: &str,
    inline_key: &str,
    dir: &Path,
) -> Result<Pem> {
    match (file.as_deref().filter(|f| !f.is_empty()), inline.as_deref()) {
        (Some(_), Some(_)) => bail!("give {file_key} or {inline_key}, not both"),
        (None, Some(text)) => Ok(Pem {
            name: inline_key.to_string(),
            bytes: text.as_bytes().to_vec(),
        }),
        (Some(name), None) => {
            let path = relative(dir, name);
            let bytes = std::fs::read(&path)
                .with_context(|| format!("{file_key}: cannot read {}", path.display()))?;
            Ok(Pem {
                name: format!("{file_key} {}", path.display()),
                bytes,
            })
        }
        (None, None) => bail!("{file_key} is missing"),
    }
}

fn relative(dir: &Path, name: &str) -> PathBuf {
    let path = Path::new(name);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// rustls speaks TLS 1.2 and 1.3; the toolkit's default minimum is TLS 1.2 as well.
fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>> {
    let rank = |name: &str, key: &str| match name {
        "TLS12" => Ok(2),
        "TLS13" => Ok(3),
        "TLS10" | "TLS11" => {
            bail!("{key} {name}: flow serve speaks TLS 1.2 and 1.3 only (TLS12, TLS13)")
        }
        other => bail!("{key} `{other}` is not one of TLS12, TLS13"),
    };
    let low = min
        .map(|m| rank(m, "min_version"))
        .transpose()?
        .unwrap_or(2);
    let high = max
        .map(|m| rank(m, "max_version"))
        .transpose()?
        .unwrap_or(3);
    if low > high {
        bail!("min_version is above max_version");
    }
    Ok([(2, &TLS12), (3, &TLS13)]
        .into_iter()
        .filter(|(rank, _)| (low..=high).contains(rank))
        .map(|(_, version)| version)
        .collect())
}

/// Go names TLS 1.2 suites only (TLS 1.3's are not configurable there); the listed order is kept.
fn cipher_suites(
    provider: &CryptoProvider,
    names: &[String],
) -> Result<Vec<tokio_rustls::rustls::SupportedCipherSuite>> {
    let mut chosen: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &TLS13)
        .copied()
        .collect();
    for name in names {
        let found = provider.cipher_suites.iter().find(|s| {
            let own = s.suite().as_str().unwrap_or_default();
            s.version() == &TLS12 && (own == name || own.strip_suffix("_SHA256") == Some(name))
        });
        match found {
            Some(suite) => chosen.push(*suite),
            None => {
                let offered: Vec<_> = provider
                    .cipher_suites
                    .iter()
                    .filter(|s| s.version() == &TLS12)
                    .filter_map(|s| s.suite().as_str())
                    .collect();
                bail!(
                    "cipher_suites: {name} is not offered (these are: {})",
                    offered.join(", ")
                )
            }
        }
    }
    Ok(chosen)
}

fn curves(
    provider: &CryptoProvider,
    names: &[String],
) -> Result<Vec<&'static dyn tokio_rustls::rustls::crypto::SupportedKxGroup>> {
    names
        .iter()
        .map(|name| {
            let group = match name.as_str() {
                "X25519" => NamedGroup::X25519,
                "CurveP256" => NamedGroup::secp256r1,
                "CurveP384" => NamedGroup::secp384r1,
                _ => bail!(
                    "curve_preferences: {name} is not offered (X25519, CurveP256, CurveP384 are)"
                ),
            };
            provider
                .kx_groups
                .iter()
                .find(|g| g.name() == group)
                .copied()
                .ok_or_else(|| anyhow!("curve_preferences: {name} is not offered"))
        })
        .collect()
}

/// The toolkit's `client_auth_type`; the two that verify against `client_ca_file` are honoured.
fn client_verifier(
    file: &TlsFile,
    dir: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn tokio_rustls::rustls::server::danger::ClientCertVerifier>>> {
    if file
        .client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        bail!("client_allowed_sans is not supported by flow serve");
    }
    let optional = match file.client_auth_type.as_deref().unwrap_or("") {
        "" | "NoClientCert" => {
            if file
                .client_ca_file
                .as_deref()
                .is_some_and(|f| !f.is_empty())
            {
                bail!("client_ca_file is given but client_auth_type does not verify client certificates");
            }
            return Ok(None);
        }
        "RequireAndVerifyClientCert" => false,
        "VerifyClientCertIfGiven" => true,
        other @ ("RequestClientCert" | "RequireAnyClientCert") => {
            bail!("client_auth_type {other} (unverified client certificates) is not supported; use RequireAndVerifyClientCert or VerifyClientCertIfGiven")
        }
        other => bail!("client_auth_type `{other}` is not one the toolkit knows"),
    };
    let ca = file
        .client_ca_file
        .as_deref()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| {
            anyhow!("client_auth_type verifies client certificates but client_ca_file is missing")
        })?;
    let path = relative(dir, ca);
    let bytes = std::fs::read(&path)
        .with_context(|| format!("client_ca_file: cannot read {}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| anyhow!("client_ca_file {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| anyhow!("client_ca_file {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        bail!("client_ca_file {}: no certificate in it", path.display());
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map(Some)
        .map_err(|e| anyhow!("client_ca_file {}: {e}", path.display()))
}

/// A bcrypt hash of a password nobody has: checked against when the user is unknown, so that an
/// unknown user takes as long to refuse as a wrong password.
const DECOY: &str = "$2y$10$lxsbMrV47DfYZVZssqCxBubzxVUgxLJGe25R2Y1kBsfwW10lsFYiG";

/// HTTP basic auth against bcrypt hashes. A bcrypt check costs tens of milliseconds (cost 10), so
/// a password that verified is kept in memory per user (its hash never changes while serving) and
/// later requests are compared against it in constant time, as the exporter toolkit does; checks
/// run one at a time off the HTTP thread, so wrong passwords cannot take more than one core nor
/// delay a scraper whose password was already verified.
pub struct BasicAuth {
    users: HashMap<String, String>,
    verified: Mutex<HashMap<String, Vec<u8>>>,
    checking: Semaphore,
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Result<BasicAuth> {
        for (user, hash) in &users {
            if user.contains(':') {
                bail!("user `{user}`: a user name cannot contain `:`");
            }
            hash.parse::<bcrypt::HashParts>()
                .map_err(|e| anyhow!("user `{user}`: not a bcrypt hash ({e})"))?;
        }
        Ok(BasicAuth {
            users: users.into_iter().collect(),
            verified: Mutex::new(HashMap::new()),
            checking: Semaphore::new(1),
        })
    }

    /// Whether the `Authorization` header carries a known user and the right password.
    pub async fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        let hash = self.users.get(&user);
        if hash.is_some() && self.cached(&user, &password) {
            return true;
        }
        let Ok(_permit) = self.checking.acquire().await else {
            return false;
        };
        // Another request may have verified the same password while this one waited.
        if hash.is_some() && self.cached(&user, &password) {
            return true;
        }
        let against = hash.cloned().unwrap_or_else(|| DECOY.to_string());
        let checked = password.clone();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(&checked, &against))
            .await
            .is_ok_and(|r| r.unwrap_or(false))
            && hash.is_some();
        if ok {
            if let Ok(mut verified) = self.verified.lock() {
                verified.insert(user, password);
            }
        }
        ok
    }

    fn cached(&self, user: &str, password: &[u8]) -> bool {
        let Ok(verified) = self.verified.lock() else {
            return false;
        };
        verified
            .get(user)
            .is_some_and(|known| bool::from(known.as_slice().ct_eq(password)))
    }
}

/// `Basic base64(user:password)`.
fn credentials(header: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let text = header.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
#[path = "web_config_tests.rs"]
mod tests;
