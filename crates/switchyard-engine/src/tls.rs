//! TLS termination on `bind ... ssl crt FILE [crt FILE...] [alpn LIST]` with rustls, and
//! PostgreSQL's in-protocol TLS (`postgres-ssl`, our extension): the client first asks
//! with an SSLRequest and gets `S` before the handshake, as from a real server, so
//! `sslmode=require` clients work through a TCP frontend.
//!
//! Certificates: each `crt` is a PEM file (or a directory of them) holding a chain and its
//! key. The first is the default; a client's SNI name picks the first certificate valid for
//! it (wildcards included), as HAProxy does.
//!
//! The decrypted stream reaches the session through a loopback TCP pair, so every session
//! feature (timeouts, logs, kills, retries) works unchanged on TLS connections; the cost is
//! one extra socket pair and a copy per TLS session, next to the encryption itself.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use switchyard_config as config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// PostgreSQL's request codes (first message of a connection, 8 bytes: length, code).
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// What a TLS listener needs per connection.
#[derive(Clone)]
pub struct TlsListener {
    acceptor: TlsAcceptor,
    postgres: bool,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("postgres", &self.postgres)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    pub fn from_bind(bind: &config::Bind) -> anyhow::Result<Option<TlsListener>> {
        if !bind.ssl {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut keys = Vec::new();
        for path in &bind.certificates {
            for file in pem_files(path)? {
                keys.push(
                    load_key(&file, &provider)
                        .with_context(|| format!("{}: crt {}", bind.span, file.display()))?,
                );
            }
        }
        if keys.is_empty() {
            bail!("{}: no certificate found in the 'crt' files", bind.span);
        }
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow!("{}: TLS setup: {e}", bind.span))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver { keys }));
        server.alpn_protocols = bind.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Ok(Some(TlsListener {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            postgres: bind.postgres_ssl,
        }))
    }

    /// Terminates TLS on `client` (after PostgreSQL's SSLRequest with `postgres-ssl`) and
    /// returns the plaintext side of a loopback pair the session proxies as usual.
    pub async fn accept(&self, mut client: TcpStream, timeout: Duration) -> io::Result<TcpStream> {
        let handshake = async {
            if self.postgres {
                match postgres_prelude(&mut client).await? {
                    Prelude::Tls => {}
                    // A cancel request carries no data worth protecting and older clients
                    // send it in clear: it goes through as is.
                    Prelude::Cancel => return Ok(None),
                }
            }
            self.acceptor.accept(client).await.map(Some)
        };
        let tls = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(Some(tls))) => tls,
            Ok(Ok(None)) => return Err(io::Error::other("plain cancel request")),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake not finished in time",
                ))
            }
        };
        bridge(tls).await
    }
}

enum Prelude {
    Tls,
    Cancel,
}

/// Answers PostgreSQL's GSSENCRequest with `N` and its SSLRequest with `S`; anything else
/// gets a FATAL error, as a server that requires SSL would send.
async fn postgres_prelude(client: &mut TcpStream) -> io::Result<Prelude> {
    loop {
        let mut first = [0u8; 8];
        peek_exact(client, &mut first).await?;
        let length = u32::from_be_bytes([first[0], first[1], first[2], first[3]]);
        let code = u32::from_be_bytes([first[4], first[5], first[6], first[7]]);
        match (length, code) {
            (8, GSSENC_REQUEST) => {
                consume(client, 8).await?;
                client.write_all(b"N").await?;
            }
            (8, SSL_REQUEST) => {
                consume(client, 8).await?;
                client.write_all(b"S").await?;
                return Ok(Prelude::Tls);
            }
            (16, CANCEL_REQUEST) => return Ok(Prelude::Cancel),
            _ => {
                client
                    .write_all(&postgres_error("28000", "SSL is required by this listener"))
                    .await?;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "PostgreSQL client did not ask for SSL",
                ));
            }
        }
    }
}

/// A PostgreSQL ErrorResponse (severity FATAL).
fn postgres_error(code: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&(u32::try_from(fields.len() + 4).unwrap_or(u32::MAX)).to_be_bytes());
    out.extend_from_slice(&fields);
    out
}

async fn peek_exact(client: &TcpStream, buf: &mut [u8]) -> io::Result<()> {
    loop {
        let n = client.peek(buf).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        if n == buf.len() {
            return Ok(());
        }
        // `peek` returns at once while data is queued: wait a little for the rest.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn consume(client: &mut TcpStream, length: usize) -> io::Result<()> {
    let mut buf = vec![0u8; length];
    client.read_exact(&mut buf).await.map(|_| ())
}

/// Connects the decrypted stream to one end of a loopback pair and returns the other.
async fn bridge<S>(mut tls: S) -> io::Result<TcpStream>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    let (inner, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
    let (mut outer, _) = accepted?;
    let inner = inner?;
    let _ = outer.set_nodelay(true);
    tokio::spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut tls, &mut outer).await;
        let _ = tls.shutdown().await;
    });
    Ok(inner)
}

/// TLS towards a server (`server ... ssl [verify none|required] [ca-file FILE]
/// [sni str(NAME)]`).
#[derive(Clone)]
pub struct TlsClient {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// `ip`: the server's address, the name checked when neither `sni` nor a host name is
    /// given.
    pub fn from_server(
        server: &config::Server,
        ip: std::net::IpAddr,
    ) -> anyhow::Result<Option<TlsClient>> {
        if !server.ssl {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow!("TLS setup: {e}"))?;
        let client = if server.verify_none {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        } else {
            // HAProxy's default is `verify required`, which cannot work without CAs.
            let file = server.ca_file.as_ref().ok_or_else(|| {
                anyhow!(
                    "'ssl' verifies the server by default: give 'ca-file FILE' (or 'verify none')"
                )
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(file)
                .map_err(|e| anyhow!("ca-file {}: {e}", file.display()))?
            {
                let cert = cert.map_err(|e| anyhow!("ca-file {}: {e}", file.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| anyhow!("ca-file {}: {e}", file.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let name = match (&server.sni, &server.host) {
            (Some(sni), _) => ServerName::try_from(sni.clone()),
            (None, config::Host::Name(host)) => ServerName::try_from(host.clone()),
            (None, config::Host::Ip(_)) => Ok(ServerName::IpAddress(ip.into())),
        }
        .map_err(|e| anyhow!("invalid TLS server name: {e}"))?;
        Ok(Some(TlsClient {
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            name,
        }))
    }

    /// The handshake on a fresh server connection (after a PROXY header, if any, which
    /// HAProxy also sends in clear); returns the plaintext side of a loopback pair.
    pub async fn connect(&self, server: TcpStream, timeout: Duration) -> io::Result<TcpStream> {
        let handshake = self.connector.connect(self.name.clone(), server);
        let tls = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake with the server timed out",
                )
            })??;
        bridge(tls).await
    }
}

/// `verify none`: any certificate is accepted (signatures are still checked, so the
/// handshake itself is sound) — what HAProxy does with the same words.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A `crt` argument: a PEM file, or a directory whose `*.pem` files are read in name order.
fn pem_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "pem"))
            .collect();
        files.sort();
        Ok(files)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

fn load_key(
    file: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> anyhow::Result<Arc<rustls::sign::CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
        .map_err(|e| anyhow!("{e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("bad certificate: {e}"))?;
    if chain.is_empty() {
        bail!("no certificate in the file");
    }
    let key = PrivateKeyDer::from_pem_file(file).map_err(|e| anyhow!("no private key: {e}"))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow!("unusable private key: {e}"))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, signing)))
}

/// Picks the certificate by SNI: the first valid for the name, else the first one.
#[derive(Debug)]
struct SniResolver {
    keys: Vec<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let wanted = hello
            .server_name()
            .and_then(|name| ServerName::try_from(name.to_string()).ok());
        if let Some(name) = wanted {
            for key in &self.keys {
                let Some(leaf) = key.cert.first() else {
                    continue;
                };
                let valid = webpki::EndEntityCert::try_from(leaf)
                    .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok());
                if valid {
                    return Some(Arc::clone(key));
                }
            }
        }
        self.keys.first().cloned()
    }
}
