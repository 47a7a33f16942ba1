//! A throwaway PKI for TLS tests, made with the `openssl` command: a CA, leaf
//! certificates it signs (with a DNS subjectAltName, as rustls requires),
//! and a self-signed one. ECDSA P-256 keys, valid for a day.
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::netns::run_checked;

/// A certificate and its key, PEM files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Pki {
    pub dir: PathBuf,
    pub ca: Pair,
}

fn openssl(args: &[&str]) -> anyhow::Result<String> {
    run_checked(std::process::Command::new("openssl").args(args))
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A new P-256 key and a certificate for `subject` it signs itself, with
/// `extra` arguments to `openssl req`.
fn make_self_signed(pair: &Pair, subject: &str, extra: &[&str]) -> anyhow::Result<String> {
    let (key, cert) = (path(&pair.key), path(&pair.cert));
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        subject,
        "-keyout",
        &key,
        "-out",
        &cert,
    ];
    args.extend_from_slice(extra);
    openssl(&args)
}

impl Pki {
    /// A new CA in `dir` (created).
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca = Pair {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
        };
        make_self_signed(&ca, "/CN=spx test CA", &[])?;
        Ok(Self {
            dir: dir.to_owned(),
            ca,
        })
    }

    /// A leaf for `name`, signed by the CA.
    pub fn leaf(&self, name: &str) -> anyhow::Result<Pair> {
        let pair = self.pair(name);
        let csr = self.dir.join(format!("{name}.csr"));
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(&ext, format!("subjectAltName=DNS:{name}\n"))?;
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &path(&pair.key),
            "-out",
            &path(&csr),
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &path(&csr),
            "-CA",
            &path(&self.ca.cert),
            "-CAkey",
            &path(&self.ca.key),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &path(&ext),
            "-out",
            &path(&pair.cert),
        ])?;
        Ok(pair)
    }

    /// A self-signed leaf for `name` (no CA vouches for it).
    pub fn self_signed(&self, name: &str) -> anyhow::Result<Pair> {
        let pair = self.pair(&format!("self-{name}"));
        let san = format!("subjectAltName=DNS:{name}");
        make_self_signed(&pair, &format!("/CN={name}"), &["-addext", &san])?;
        Ok(pair)
    }

    fn pair(&self, stem: &str) -> Pair {
        Pair {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        }
    }
}
