//! TLS configuration for the agent's TCP path: the edge side (the agent as
//! a server to clients) and the origin side (the agent as a client to
//! origins). This module only builds rustls configs, all on ring's provider
//! (no process default); the proxy loop hands them to `tokio-rustls`.
//! What each `tls` mode checks, SNI, suites and the known gaps: `docs/tls.md`.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, anyhow, bail};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite,
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        verify_server_name,
    },
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    server::{ClientHello, ParsedCertificate, ResolvesServerCert},
    sign::CertifiedKey,
    version::{TLS12, TLS13},
};
use tracing::warn;

use crate::files;

/// The PEM files of one edge certificate chain (leaf first) and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKeyPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How the agent validates an origin's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginVerify {
    /// `tls: full`: no validation of the certificate or its name.
    None,
    /// `tls: strict` against the system trust store.
    SystemRoots,
    /// `tls: strict` against the CA certificates of a PEM bundle.
    CaBundle(PathBuf),
}

/// The edge side of one app: TLS 1.2 and 1.3, serving `certs` (SNI picks
/// among several; the first is the default). Refuses any pair that cannot be
/// read or whose key does not match its certificate.
pub fn edge_server_config(certs: &[CertKeyPaths]) -> anyhow::Result<Arc<ServerConfig>> {
    if certs.is_empty() {
        bail!("edge TLS needs at least one certificate/key pair");
    }
    let provider = Arc::new(ring::default_provider());
    let pairs = certs
        .iter()
        .map(|paths| load_certified_key(paths, &provider).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])
        .context("edge TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(EdgeCertificates { pairs }));
    Ok(Arc::new(config))
}

/// The origin side: TLS 1.2 and 1.3, suites in [`origin_cipher_suites`]
/// order, certificates validated as `verify` says.
pub fn origin_client_config(verify: OriginVerify) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: origin_cipher_suites(),
        ..ring::default_provider()
    });
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])
        .context("origin TLS versions")?;
    let config = match verify {
        OriginVerify::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { algorithms })),
        OriginVerify::SystemRoots => builder.with_root_certificates(system_roots()?),
        OriginVerify::CaBundle(path) => builder.with_root_certificates(ca_bundle_roots(&path)?),
    }
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Ring's default suites, Spectrum's preferred ones first: TLS 1.3
/// AES-128-GCM, AES-256-GCM, CHACHA20-POLY1305; TLS 1.2
/// ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256; then the rest
/// in ring's order. rustls offers them in this order in its ClientHello.
pub fn origin_cipher_suites() -> Vec<SupportedCipherSuite> {
    use ring::cipher_suite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    let preferred = [
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    let defaults = ring::default_provider().cipher_suites;
    let mut suites: Vec<_> = preferred
        .into_iter()
        .filter(|suite| defaults.contains(suite))
        .collect();
    suites.extend(
        defaults
            .into_iter()
            .filter(|suite| !preferred.contains(suite)),
    );
    suites
}

/// The name the agent validates the origin against (and sends as SNI when
/// it is a DNS name): the app's `origin_sni` or `origin_dns` name, or an IP
/// literal (no SNI is sent; strict mode then needs an IP SAN).
pub fn origin_server_name(name: &str) -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned())
        .map_err(|_| anyhow!("origin server name {name:?} is neither a DNS name nor an IP address"))
}

/// One edge certificate/key pair, refused unless the key is the certificate's.
fn load_certified_key(
    paths: &CertKeyPaths,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = read_certificates(&paths.cert, "edge certificate")?;
    ParsedCertificate::try_from(&chain[0]).map_err(|err| {
        anyhow!(
            "edge certificate file {}: the first certificate is not usable: {err}",
            paths.cert.display()
        )
    })?;
    let key = read_private_key(&paths.key)?;
    let signing_key = provider.key_provider.load_private_key(key).map_err(|err| {
        anyhow!(
            "edge private key file {}: unsupported key: {err}",
            paths.key.display()
        )
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    // `CertifiedKey::from_der` lets a key whose public half is unknown
    // through; a pair is only accepted when the match is proven.
    certified.keys_match().map_err(|err| {
        anyhow!(
            "edge private key file {} does not match the certificate in {}: {err}",
            paths.key.display(),
            paths.cert.display()
        )
    })?;
    Ok(certified)
}

/// The bytes of a PEM file the config names, through the agent's one safe
/// reader ([`files::read_off_loop`]: regular files only, no symlink, at
/// most [`files::PEM_LIMIT`], off the control loop).
fn read_pem_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    files::read_off_loop(path, files::PEM_LIMIT).map_err(|problem| file_error(what, path, &problem))
}

fn file_error(what: &str, path: &Path, problem: &dyn fmt::Display) -> anyhow::Error {
    anyhow!(
        "{}",
        files::NamedFileError {
            what,
            path,
            problem
        }
    )
}

/// What is wrong with a file's PEM, in words that never quote the file
/// (rustls's own messages carry the offending line).
pub(crate) fn pem_problem(err: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error;
    match err {
        Error::MissingSectionEnd { .. } => "not valid PEM: a section has no END line",
        Error::IllegalSectionStart { .. } => "not valid PEM: a malformed BEGIN line",
        Error::Base64Decode(_) => "not valid PEM: a section is not valid base64",
        Error::SectionTooLarge => "not valid PEM: a section is too large",
        _ => "not valid PEM",
    }
}

/// Every certificate of a PEM file, in file order; an error names the file
/// and what is wrong (unreadable, malformed, no certificate in it).
fn read_certificates(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = read_pem_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| file_error(what, path, &pem_problem(&err)))?;
    if certs.is_empty() {
        return Err(file_error(what, path, &"no PEM certificate in it"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
fn read_private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    use rustls::pki_types::pem::Error;
    const WHAT: &str = "edge private key";
    let mut bytes = read_pem_file(path, WHAT)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| {
        let problem = match err {
            Error::NoItemsFound => "no PEM private key in it",
            err => pem_problem(&err),
        };
        file_error(WHAT, path, &problem)
    });
    // The key's text is not left in freed memory.
    bytes.iter_mut().for_each(|byte| *byte = 0);
    std::hint::black_box(&bytes);
    key
}

/// The trust anchors of a configured CA bundle; every certificate in it
/// must be usable, so a typo in the bundle fails the config, not the origin.
fn ca_bundle_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in read_certificates(path, "origin CA bundle")?
        .into_iter()
        .enumerate()
    {
        roots.add(cert).map_err(|err| {
            anyhow!(
                "origin CA bundle file {}: certificate #{} is not a usable trust anchor: {err}",
                path.display(),
                index + 1
            )
        })?;
    }
    Ok(roots)
}

/// The system trust store; an empty result is an error, since strict mode
/// would then refuse every origin.
fn system_roots() -> anyhow::Result<RootCertStore> {
    let loaded = rustls_native_certs::load_native_certs();
    for err in &loaded.errors {
        warn!("system trust store: {err}");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    if ignored > 0 {
        warn!("system trust store: ignored {ignored} unparsable certificates");
    }
    if added == 0 {
        let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        bail!(
            "system trust store: no usable CA certificate found{}",
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join("; "))
            }
        );
    }
    Ok(roots)
}

/// The edge pairs of one app; the first is served when SNI does not choose.
#[derive(Debug)]
struct EdgeCertificates {
    pairs: Vec<Arc<CertifiedKey>>,
}

impl EdgeCertificates {
    /// `None` only for no pairs, which [`edge_server_config`] refuses.
    fn pick(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let first = self.pairs.first()?;
        if self.pairs.len() == 1 {
            return Some(first);
        }
        let Some(name) = server_name.and_then(|name| ServerName::try_from(name).ok()) else {
            return Some(first);
        };
        let covering = self
            .pairs
            .iter()
            .find(|pair| certificate_covers(pair, &name));
        Some(covering.unwrap_or(first))
    }
}

impl ResolvesServerCert for EdgeCertificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(client_hello.server_name()).map(Arc::clone)
    }
}

/// True when the pair's leaf is valid for `name` (SANs only, wildcards as
/// webpki matches them). Parsing the leaf only slices DER; it was checked
/// at load time.
fn certificate_covers(pair: &CertifiedKey, name: &ServerName<'_>) -> bool {
    pair.end_entity_cert()
        .ok()
        .and_then(|leaf| ParsedCertificate::try_from(leaf).ok())
        .is_some_and(|leaf| verify_server_name(&leaf, name).is_ok())
}

/// `tls: full`: any certificate is accepted, but the handshake signature
/// must still verify against the presented certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs,
        sync::{
            Mutex,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    use rustls::{
        CertificateError, CipherSuite, ClientConnection, ProtocolVersion, ServerConnection,
        SupportedProtocolVersion,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "proxy-agent-tls-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, contents).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A test CA and leaves, as PEM files: `alpha` (a.example.test) and
    /// `wildcard` (*.b.example.test) signed by the CA, and `self_signed`
    /// (a.example.test, its own issuer).
    struct TestPki {
        dir: TempDir,
        ca_bundle: PathBuf,
        alpha: Leaf,
        wildcard: Leaf,
        self_signed: Leaf,
    }

    struct Leaf {
        paths: CertKeyPaths,
        der: CertificateDer<'static>,
    }

    const ALPHA: &str = "a.example.test";
    const WILDCARD: &str = "*.b.example.test";

    impl TestPki {
        fn new() -> Self {
            let dir = TempDir::new();
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(DnType::CommonName, "proxy-agent test CA");
            ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
            let ca_bundle = dir.write("ca.pem", &ca.pem());

            let leaf = |file: &str, name: &str, issuer: Option<&CertifiedIssuer<'_, KeyPair>>| {
                let key = KeyPair::generate().unwrap();
                let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                let cert = match issuer {
                    Some(issuer) => params.signed_by(&key, &**issuer).unwrap(),
                    None => params.self_signed(&key).unwrap(),
                };
                Leaf {
                    paths: CertKeyPaths {
                        cert: dir.write(&format!("{file}.crt"), &cert.pem()),
                        key: dir.write(&format!("{file}.key"), &key.serialize_pem()),
                    },
                    der: cert.der().clone(),
                }
            };
            let alpha = leaf("alpha", ALPHA, Some(&ca));
            let wildcard = leaf("wildcard", WILDCARD, Some(&ca));
            let self_signed = leaf("self-signed", ALPHA, None);
            Self {
                dir,
                ca_bundle,
                alpha,
                wildcard,
                self_signed,
            }
        }

        fn strict_client(&self) -> Arc<ClientConfig> {
            origin_client_config(OriginVerify::CaBundle(self.ca_bundle.clone())).unwrap()
        }
    }

    fn full_client() -> Arc<ClientConfig> {
        origin_client_config(OriginVerify::None).unwrap()
    }

    fn name(name: &str) -> ServerName<'static> {
        origin_server_name(name).unwrap()
    }

    /// Runs a handshake over in-memory buffers; returns the client side once
    /// both sides are done, or the client's error. Every refusal tested here
    /// is the client's, so a server-side error panics.
    fn handshake(
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
        server_name: ServerName<'static>,
    ) -> Result<ClientConnection, rustls::Error> {
        let mut client = ClientConnection::new(client, server_name).unwrap();
        let mut server = ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(client);
            }
            while client.wants_write() {
                let mut bytes = Vec::new();
                client.write_tls(&mut bytes).unwrap();
                server.read_tls(&mut bytes.as_slice()).unwrap();
                if let Err(err) = server.process_new_packets() {
                    panic!("server side failed: {err}");
                }
            }
            while server.wants_write() {
                let mut bytes = Vec::new();
                server.write_tls(&mut bytes).unwrap();
                client.read_tls(&mut bytes.as_slice()).unwrap();
                client.process_new_packets()?;
            }
        }
        panic!("handshake did not finish");
    }

    fn served_leaf(client: &ClientConnection) -> CertificateDer<'static> {
        client
            .peer_certificates()
            .expect("server sent certificates")[0]
            .clone()
    }

    fn error_text<T: fmt::Debug>(result: anyhow::Result<T>) -> String {
        format!("{:#}", result.expect_err("must be refused"))
    }

    #[test]
    fn edge_loads_one_pair_and_serves_it_whatever_the_sni() {
        let pki = TestPki::new();
        let server = edge_server_config(std::slice::from_ref(&pki.alpha.paths)).unwrap();
        for sni in [ALPHA, "other.example.test"] {
            let client = handshake(full_client(), Arc::clone(&server), name(sni)).unwrap();
            assert_eq!(served_leaf(&client), pki.alpha.der, "SNI {sni}");
        }
    }

    #[test]
    fn edge_sni_picks_the_certificate_naming_it() {
        let pki = TestPki::new();
        let server =
            edge_server_config(&[pki.alpha.paths.clone(), pki.wildcard.paths.clone()]).unwrap();
        // Strict clients: the certificate must also be valid for the name.
        for (sni, expected) in [
            (ALPHA, &pki.alpha.der),
            ("x.b.example.test", &pki.wildcard.der),
            ("y.b.example.test", &pki.wildcard.der),
        ] {
            let client = handshake(pki.strict_client(), Arc::clone(&server), name(sni)).unwrap();
            assert_eq!(&served_leaf(&client), expected, "SNI {sni}");
        }
    }

    #[test]
    fn edge_serves_the_first_pair_without_sni_or_match() {
        let pki = TestPki::new();
        for (pairs, first) in [
            ([&pki.alpha, &pki.wildcard], &pki.alpha.der),
            ([&pki.wildcard, &pki.alpha], &pki.wildcard.der),
        ] {
            let pairs: Vec<_> = pairs.iter().map(|leaf| leaf.paths.clone()).collect();
            let server = edge_server_config(&pairs).unwrap();
            // The wildcard covers one label only: b.example.test and
            // z.x.b.example.test match no certificate.
            for sni in [
                "unknown.example.test",
                "b.example.test",
                "z.x.b.example.test",
            ] {
                let client = handshake(full_client(), Arc::clone(&server), name(sni)).unwrap();
                assert_eq!(&served_leaf(&client), first, "SNI {sni}");
            }
            let mut no_sni = (*full_client()).clone();
            no_sni.enable_sni = false;
            let client = handshake(Arc::new(no_sni), Arc::clone(&server), name(ALPHA)).unwrap();
            assert_eq!(&served_leaf(&client), first, "no SNI");
            // An IP literal sends no SNI either.
            let client = handshake(full_client(), server, name("192.0.2.1")).unwrap();
            assert_eq!(&served_leaf(&client), first, "IP server name");
        }
    }

    #[test]
    fn edge_completes_with_tls12_only_and_tls13_only_clients() {
        let pki = TestPki::new();
        let server = edge_server_config(std::slice::from_ref(&pki.alpha.paths)).unwrap();
        let only = |version: &'static SupportedProtocolVersion| {
            let provider = Arc::new(ring::default_provider());
            let algorithms = provider.signature_verification_algorithms;
            ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[version])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { algorithms }))
                .with_no_client_auth()
        };
        for (version, expected) in [
            (&TLS12, ProtocolVersion::TLSv1_2),
            (&TLS13, ProtocolVersion::TLSv1_3),
        ] {
            let client = handshake(Arc::new(only(version)), Arc::clone(&server), name(ALPHA))
                .unwrap_or_else(|err| panic!("{expected:?}: {err}"));
            assert_eq!(client.protocol_version(), Some(expected));
        }
    }

    #[test]
    fn edge_refuses_a_missing_file_naming_it() {
        let pki = TestPki::new();
        let missing = pki.dir.0.join("missing.crt");
        let text = error_text(edge_server_config(&[CertKeyPaths {
            cert: missing.clone(),
            key: pki.alpha.paths.key.clone(),
        }]));
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("not found"), "{text}");

        let missing = pki.dir.0.join("missing.key");
        let text = error_text(edge_server_config(&[CertKeyPaths {
            cert: pki.alpha.paths.cert.clone(),
            key: missing.clone(),
        }]));
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("not found"), "{text}");
    }

    #[test]
    fn edge_refuses_a_file_without_certificate_or_key() {
        let pki = TestPki::new();
        // The key file given as the certificate, and the other way round.
        let text = error_text(edge_server_config(&[CertKeyPaths {
            cert: pki.alpha.paths.key.clone(),
            key: pki.alpha.paths.key.clone(),
        }]));
        let key_file = pki.alpha.paths.key.display().to_string();
        assert!(text.contains(&key_file), "{text}");
        assert!(text.contains("no PEM certificate"), "{text}");

        let text = error_text(edge_server_config(&[CertKeyPaths {
            cert: pki.alpha.paths.cert.clone(),
            key: pki.alpha.paths.cert.clone(),
        }]));
        let cert_file = pki.alpha.paths.cert.display().to_string();
        assert!(text.contains(&cert_file), "{text}");
        assert!(text.contains("no PEM private key"), "{text}");

        let empty = pki.dir.write("empty.pem", "");
        let text = error_text(edge_server_config(&[CertKeyPaths {
            cert: empty.clone(),
            key: pki.alpha.paths.key.clone(),
        }]));
        assert!(text.contains(&empty.display().to_string()), "{text}");
    }

    #[test]
    fn edge_refuses_symlinks_devices_and_bad_pem_without_echoing_them() {
        let pki = TestPki::new();
        let link = pki.dir.0.join("link.key");
        std::os::unix::fs::symlink(&pki.alpha.paths.key, &link).unwrap();
        let secret = "SECRETLINE";
        let bad = pki.dir.write(
            "bad.key",
            &format!("-----BEGIN PRIVATE KEY {secret}\nAAAA\n-----END PRIVATE KEY-----\n"),
        );
        let bad_b64 = pki.dir.write(
            "bad64.crt",
            &format!("-----BEGIN CERTIFICATE-----\n{secret}!!\n-----END CERTIFICATE-----\n"),
        );
        let cert = pki.alpha.paths.cert.clone();
        for (pair, want) in [
            ((cert.clone(), link.clone()), "symlink"),
            (
                (cert.clone(), PathBuf::from("/dev/zero")),
                "not a regular file",
            ),
            (
                (cert.clone(), PathBuf::from("/dev/urandom")),
                "not a regular file",
            ),
            ((cert.clone(), bad), "not valid PEM"),
            ((bad_b64, pki.alpha.paths.key.clone()), "not valid PEM"),
        ] {
            let (cert, key) = pair;
            let text = error_text(edge_server_config(&[CertKeyPaths { cert, key }]));
            assert!(text.contains(want), "{text}");
            assert!(!text.contains(secret), "{text}");
        }
        let text = error_text(origin_client_config(OriginVerify::CaBundle(link)));
        assert!(text.contains("symlink"), "{text}");
    }

    #[test]
    fn edge_refuses_a_key_that_does_not_match_its_certificate() {
        let pki = TestPki::new();
        let mismatched = CertKeyPaths {
            cert: pki.alpha.paths.cert.clone(),
            key: pki.wildcard.paths.key.clone(),
        };
        // A good first pair does not hide a bad second one.
        let text = error_text(edge_server_config(&[pki.alpha.paths.clone(), mismatched]));
        assert!(text.contains("does not match"), "{text}");
        assert!(
            text.contains(&pki.wildcard.paths.key.display().to_string()),
            "{text}"
        );
        assert!(
            text.contains(&pki.alpha.paths.cert.display().to_string()),
            "{text}"
        );
        assert!(error_text(edge_server_config(&[])).contains("at least one"));
    }

    #[test]
    fn strict_accepts_the_ca_signed_leaf_for_its_name() {
        let pki = TestPki::new();
        let server = edge_server_config(std::slice::from_ref(&pki.alpha.paths)).unwrap();
        let client = handshake(pki.strict_client(), server, name(ALPHA)).unwrap();
        assert_eq!(served_leaf(&client), pki.alpha.der);
    }

    #[test]
    fn strict_refuses_a_wrong_name_and_an_unknown_issuer() {
        let pki = TestPki::new();
        let alpha = edge_server_config(std::slice::from_ref(&pki.alpha.paths)).unwrap();
        match handshake(pki.strict_client(), alpha, name("wrong.example.test")) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {}
            other => panic!("wrong name must fail on the client: {other:?}"),
        }
        let self_signed = edge_server_config(std::slice::from_ref(&pki.self_signed.paths)).unwrap();
        match handshake(pki.strict_client(), self_signed, name(ALPHA)) {
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {}
            other => panic!("self-signed must fail on the client: {other:?}"),
        }
    }

    #[test]
    fn strict_refuses_a_bundle_without_certificates() {
        let pki = TestPki::new();
        let empty = pki.dir.write("empty-bundle.pem", "");
        let text = error_text(origin_client_config(OriginVerify::CaBundle(empty.clone())));
        assert!(text.contains(&empty.display().to_string()), "{text}");
        assert!(text.contains("no PEM certificate"), "{text}");
        let missing = pki.dir.0.join("missing-bundle.pem");
        let text = error_text(origin_client_config(OriginVerify::CaBundle(
            missing.clone(),
        )));
        assert!(text.contains(&missing.display().to_string()), "{text}");
    }

    #[test]
    fn full_accepts_a_self_signed_leaf_and_a_wrong_name() {
        let pki = TestPki::new();
        let server = edge_server_config(std::slice::from_ref(&pki.self_signed.paths)).unwrap();
        for sni in [ALPHA, "wrong.example.test"] {
            let client = handshake(full_client(), Arc::clone(&server), name(sni)).unwrap();
            assert_eq!(served_leaf(&client), pki.self_signed.der, "{sni}");
        }
    }

    #[test]
    fn full_still_verifies_the_handshake_signature() {
        let pki = TestPki::new();
        // A server presenting alpha's certificate while signing with another
        // key: built by hand, since edge_server_config refuses the pair.
        let provider = Arc::new(ring::default_provider());
        let key = read_private_key(&pki.wildcard.paths.key).unwrap();
        let impostor = Arc::new(CertifiedKey::new(
            vec![pki.alpha.der.clone()],
            provider.key_provider.load_private_key(key).unwrap(),
        ));
        // TLS 1.2 and 1.3 sign different messages through different hooks.
        for version in [&TLS12, &TLS13] {
            let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_protocol_versions(&[version])
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(EdgeCertificates {
                    pairs: vec![Arc::clone(&impostor)],
                }));
            match handshake(full_client(), Arc::new(server), name(ALPHA)) {
                Err(rustls::Error::InvalidCertificate(CertificateError::BadSignature)) => {}
                other => panic!("{version:?}: a forged signature must fail: {other:?}"),
            }
        }
    }

    #[test]
    fn origin_suites_put_spectrums_order_first_and_keep_every_default() {
        let suites: Vec<CipherSuite> = origin_cipher_suites().iter().map(|s| s.suite()).collect();
        assert_eq!(
            suites[..5],
            [
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ]
        );
        let defaults = ring::default_provider().cipher_suites;
        assert_eq!(suites.len(), defaults.len());
        for default in &defaults {
            let count = suites.iter().filter(|s| **s == default.suite()).count();
            assert_eq!(count, 1, "{:?}", default.suite());
        }
    }

    /// Serves alpha and records the suites each ClientHello offers.
    #[derive(Debug)]
    struct RecordSuites {
        inner: EdgeCertificates,
        offered: Mutex<Vec<Vec<CipherSuite>>>,
    }

    impl ResolvesServerCert for RecordSuites {
        fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            let suites = client_hello.cipher_suites().to_vec();
            self.offered.lock().unwrap().push(suites);
            self.inner.resolve(client_hello)
        }
    }

    #[test]
    fn origin_client_hello_offers_the_suites_in_that_order() {
        let pki = TestPki::new();
        let provider = Arc::new(ring::default_provider());
        let alpha = load_certified_key(&pki.alpha.paths, &provider).unwrap();
        let recorder = Arc::new(RecordSuites {
            inner: EdgeCertificates {
                pairs: vec![Arc::new(alpha)],
            },
            offered: Mutex::new(Vec::new()),
        });
        let server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&TLS13, &TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&recorder) as Arc<dyn ResolvesServerCert>);
        let client = handshake(pki.strict_client(), Arc::new(server), name(ALPHA)).unwrap();
        // The server prefers AES-256 for TLS 1.3; the client's order is an
        // offer, not a choice.
        assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_3));

        let mut expected: Vec<CipherSuite> =
            origin_cipher_suites().iter().map(|s| s.suite()).collect();
        // rustls signals that it never renegotiates.
        expected.push(CipherSuite::TLS_EMPTY_RENEGOTIATION_INFO_SCSV);
        assert_eq!(*recorder.offered.lock().unwrap(), vec![expected]);
    }

    #[test]
    fn origin_server_name_takes_dns_names_and_ip_literals() {
        assert!(matches!(
            name("origin.example.com"),
            ServerName::DnsName(dns) if dns.as_ref() == "origin.example.com"
        ));
        assert!(matches!(name("192.0.2.7"), ServerName::IpAddress(_)));
        assert!(matches!(name("2001:db8::7"), ServerName::IpAddress(_)));
        for bad in ["", "not a name", "origin..example.com", "[2001:db8::7]"] {
            let text = error_text(origin_server_name(bad));
            assert!(text.contains(&format!("{bad:?}")), "{text}");
        }
    }

    /// The configs as the proxy loop will use them: tokio-rustls over a
    /// duplex pipe, bytes both ways.
    #[tokio::test]
    async fn tokio_rustls_carries_bytes_with_these_configs() {
        let pki = TestPki::new();
        let server =
            edge_server_config(&[pki.wildcard.paths.clone(), pki.alpha.paths.clone()]).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(pki.strict_client());
        let (client_io, server_io) = tokio::io::duplex(16 * 1024);

        let serve = async move {
            let mut tls = acceptor.accept(server_io).await.unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(&buf).await.unwrap();
            tls.shutdown().await.unwrap();
        };
        let call = async move {
            let mut tls = connector.connect(name(ALPHA), client_io).await.unwrap();
            tls.write_all(b"ping").await.unwrap();
            let mut echoed = Vec::new();
            tls.read_to_end(&mut echoed).await.unwrap();
            echoed
        };
        let ((), echoed) = tokio::join!(serve, call);
        assert_eq!(echoed, b"ping");
    }
}
