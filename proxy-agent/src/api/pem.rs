//! Certificates and keys in API bodies are PEM text, as in Cloudflare's
//! certificate API, never paths: a path would let an API client aim the
//! root agent at any file on the host (a device, a FIFO, another
//! service's key). `tls_cert`, `tls_key`, `origin_ca` and each
//! `tls_sni_certs[i].cert`/`.key` of an app body must start with
//! `-----BEGIN`; the text is checked (certificates, a private key), stored
//! under `<edge.state_dir>/tls/` (0700) as `<sha256>.pem` (0600), and the
//! body handed to the edit names the stored file. Only the config file may
//! name other paths. Errors name the field and never quote the text.
use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde_json::Value;

use super::error::{ApiError, CODE_APPLY, CODE_INVALID};
use crate::{files, proxy::tls::pem_problem};

/// The subdirectory of `edge.state_dir` the PEM goes to.
const TLS_DIR: &str = "tls";

#[derive(Clone, Copy)]
enum Kind {
    Certificates,
    PrivateKey,
}

/// One PEM field of a body: where it is, what it must hold, its text.
struct Field {
    name: String,
    kind: Kind,
    pointer: String,
    text: String,
}

/// Checks and stores the PEM fields of an app `body` (any other shape is
/// left for the edit to refuse) and returns it naming the stored files.
pub async fn store_app_pem(state_dir: &Path, body: Value) -> Result<Value, ApiError> {
    let fields = pem_fields(&body)?;
    if fields.is_empty() {
        return Ok(body);
    }
    let dir = state_dir.join(TLS_DIR);
    let stored = tokio::task::spawn_blocking(move || store(&dir, fields))
        .await
        .map_err(|err| apply_error(&format!("storing the PEM failed: {err}")))??;
    let mut body = body;
    for (pointer, path) in stored {
        if let Some(slot) = body.pointer_mut(&pointer) {
            *slot = Value::String(path.display().to_string());
        }
    }
    Ok(body)
}

/// The PEM fields of `body`, each checked; the first bad one refuses it.
fn pem_fields(body: &Value) -> Result<Vec<Field>, ApiError> {
    let mut found = Vec::new();
    let mut take = |name: String, pointer: String, kind: Kind, value: Option<&Value>| {
        if let Some(Value::String(text)) = value {
            found.push(Field {
                name,
                kind,
                pointer,
                text: text.clone(),
            });
        }
    };
    for (name, kind) in [
        ("tls_cert", Kind::Certificates),
        ("tls_key", Kind::PrivateKey),
        ("origin_ca", Kind::Certificates),
    ] {
        take(name.into(), format!("/{name}"), kind, body.get(name));
    }
    if let Some(Value::Array(pairs)) = body.get("tls_sni_certs") {
        for (i, pair) in pairs.iter().enumerate() {
            for (name, kind) in [("cert", Kind::Certificates), ("key", Kind::PrivateKey)] {
                take(
                    format!("tls_sni_certs[{i}].{name}"),
                    format!("/tls_sni_certs/{i}/{name}"),
                    kind,
                    pair.get(name),
                );
            }
        }
    }
    for field in &found {
        check(field)?;
    }
    Ok(found)
}

/// Refuses a path, and PEM that does not hold what the field needs.
fn check(field: &Field) -> Result<(), ApiError> {
    let refuse = |why: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            CODE_INVALID,
            format!("{}: {why}", field.name),
        )
    };
    if !field.text.trim_start().starts_with("-----BEGIN ") {
        return Err(refuse(
            "the API takes PEM text (\"-----BEGIN ...\"), not a file path; \
             paths may only be written in the config file",
        ));
    }
    let bytes = field.text.as_bytes();
    match field.kind {
        Kind::Certificates => {
            let certs = CertificateDer::pem_slice_iter(bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| refuse(pem_problem(&err)))?;
            if certs.is_empty() {
                return Err(refuse("no PEM certificate in it"));
            }
        }
        Kind::PrivateKey => {
            PrivateKeyDer::from_pem_slice(bytes).map_err(|err| match err {
                rustls::pki_types::pem::Error::NoItemsFound => refuse("no PEM private key in it"),
                err => refuse(pem_problem(&err)),
            })?;
        }
    }
    Ok(())
}

/// Writes each field's text under `dir`: (JSON pointer, stored path).
fn store(dir: &Path, fields: Vec<Field>) -> Result<Vec<(String, PathBuf)>, ApiError> {
    fields
        .into_iter()
        .map(|field| {
            let path = files::store_private(dir, field.text.as_bytes()).map_err(|err| {
                tracing::warn!("storing PEM from the API under {}: {err}", dir.display());
                apply_error(&format!(
                    "{}: cannot store it under {}: {err}",
                    field.name,
                    dir.display()
                ))
            })?;
            Ok((field.pointer, path))
        })
        .collect()
}

fn apply_error(message: &str) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, CODE_APPLY, message)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["app.example.test".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("api-pem-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn refusal(result: Result<Value, ApiError>) -> String {
        format!("{:?}", result.expect_err("refused"))
    }

    #[tokio::test]
    async fn paths_are_refused_naming_the_field_and_nothing_is_read_or_stored() {
        let dir = temp_dir("paths");
        let (cert, _) = pair();
        for (field, path) in [
            ("tls_cert", "/dev/zero"),
            ("tls_key", "/dev/urandom"),
            ("tls_key", "/etc/shadow"),
            ("origin_ca", "/tmp/some.fifo"),
            ("tls_key", "./key-link.pem"),
        ] {
            let mut body = serde_json::json!({ "tls": "full", "tls_cert": cert.clone() });
            body[field] = path.into();
            let text = refusal(store_app_pem(&dir, body).await);
            assert!(
                text.contains(&format!("{field}: the API takes PEM text")),
                "{text}"
            );
            assert!(text.contains("not a file path"), "{text}");
        }
        let body = serde_json::json!({ "tls_sni_certs": [{ "cert": cert, "key": "/etc/ssl/private/k.pem" }] });
        let text = refusal(store_app_pem(&dir, body).await);
        assert!(
            text.contains("tls_sni_certs[0].key: the API takes PEM text"),
            "{text}"
        );
        assert!(!dir.exists(), "nothing stored for a refused body");
    }

    #[tokio::test]
    async fn bad_pem_is_refused_without_quoting_it() {
        let dir = temp_dir("bad");
        let (cert, key) = pair();
        for (field, text) in [
            (
                "tls_cert",
                "-----BEGIN CERTIFICATE-----\nSECRET!!\n-----END CERTIFICATE-----\n".to_string(),
            ),
            ("tls_cert", key.clone()),
            ("tls_key", cert.clone()),
            (
                "tls_key",
                "-----BEGIN PRIVATE KEY SECRET\nAAAA\n".to_string(),
            ),
        ] {
            let body = serde_json::json!({ field: text });
            let answer = refusal(store_app_pem(&dir, body).await);
            assert!(answer.contains(field), "{answer}");
            assert!(
                !answer.contains("SECRET") && !answer.contains("MII"),
                "{answer}"
            );
        }
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn pem_is_stored_private_and_the_body_names_the_file() {
        let dir = temp_dir("stored");
        let (cert, key) = pair();
        let body = serde_json::json!({
            "tls": "full", "tls_cert": cert, "tls_key": key,
            "tls_sni_certs": [{ "cert": cert, "key": key }],
        });
        let stored = store_app_pem(&dir, body).await.unwrap();
        let path = PathBuf::from(stored["tls_key"].as_str().unwrap());
        assert!(path.starts_with(dir.join("tls")), "{}", path.display());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), key);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.join("tls")), 0o700);
        assert_eq!(stored["tls_sni_certs"][0]["key"], stored["tls_key"]);
        assert_eq!(stored["tls"], "full");
        let cert_path = PathBuf::from(stored["tls_cert"].as_str().unwrap());
        assert_eq!(std::fs::read_to_string(cert_path).unwrap(), cert);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
