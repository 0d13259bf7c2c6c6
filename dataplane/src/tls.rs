//! Private certificate authorities of the backends' TLS connections: one reader of the PEM
//! files named by `redis.ca_file`, `metadata.ca_file`, `vectors.ca_file` and `objects.ca_file`,
//! and the PostgreSQL options they set.
//!
//! Each backend reads its file when the process starts, so a file that is missing, empty or
//! malformed stops start-up with the setting named, not the first connection later.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Why a CA file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file cannot be read.
    #[error("cannot read {setting} ({path}): {source}")]
    Read {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// What reading it said.
        source: std::io::Error,
    },
    /// The file holds no certificate, or one that does not parse.
    #[error("{setting} ({path}) {problem}")]
    Unusable {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// The PEM contents of the CA file at `path` (the value of `setting`), checked to hold at
/// least one certificate and nothing malformed.
pub fn read_ca_file(path: &Path, setting: &'static str) -> Result<Vec<u8>, CaFileError> {
    let pem = std::fs::read(path).map_err(|source| CaFileError::Read {
        setting,
        path: path.display().to_string(),
        source,
    })?;
    let unusable = |problem: String| CaFileError::Unusable {
        setting,
        path: path.display().to_string(),
        problem,
    };
    let mut count = 0_usize;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|e| unusable(format!("holds a malformed PEM certificate: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(unusable("holds no PEM certificate".into()));
    }
    Ok(pem)
}

/// `options` trusting the CA certificates `pem` (as [`read_ca_file`] returns them), when
/// there are any: TLS with the server's certificate and host name verified (`verify-full`), or
/// the certificate alone where the URL asked for `verify-ca`. Configuration validation has
/// already refused the modes that verify nothing.
pub fn postgres_ca(options: PgConnectOptions, pem: Option<&[u8]>) -> PgConnectOptions {
    let Some(pem) = pem else {
        return options;
    };
    let options = options.ssl_root_cert_from_pem(pem.to_vec());
    if matches!(options.get_ssl_mode(), PgSslMode::VerifyCa) {
        options
    } else {
        options.ssl_mode(PgSslMode::VerifyFull)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing file, an empty one and a malformed certificate are each refused, naming the
    /// setting and the file; the verify mode follows the URL where it asks for `verify-ca`.
    #[test]
    fn a_ca_file_must_hold_well_formed_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let refusal = |path: &Path, setting| read_ca_file(path, setting).unwrap_err().to_string();
        let missing = refusal(&dir.path().join("absent.pem"), "metadata.ca_file");
        assert!(
            missing.starts_with("cannot read metadata.ca_file (") && missing.contains("absent.pem"),
            "{missing}"
        );
        let message = refusal(
            &file("empty.pem", "no certificate here\n"),
            "objects.ca_file",
        );
        assert!(message.ends_with("holds no PEM certificate"), "{message}");
        let malformed = file(
            "malformed.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        );
        let message = refusal(&malformed, "objects.ca_file");
        assert!(message.contains("malformed PEM certificate"), "{message}");

        // Any DER body parses as a certificate here; its contents are the TLS stack's to judge.
        let good = file(
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        );
        let pem = read_ca_file(&good, "metadata.ca_file").unwrap();
        let mode = |url: &str, pem: Option<&[u8]>| {
            let options: PgConnectOptions = url.parse().unwrap();
            postgres_ca(options, pem).get_ssl_mode()
        };
        assert!(matches!(
            mode("postgres://db/rag", Some(&pem)),
            PgSslMode::VerifyFull
        ));
        assert!(matches!(
            mode("postgres://db/rag?sslmode=verify-ca", Some(&pem)),
            PgSslMode::VerifyCa
        ));
        assert!(matches!(mode("postgres://db/rag", None), PgSslMode::Prefer));
    }

    /// Against the real TLS-only PostgreSQL: the metadata store and the vector index connect
    /// with the private CA as their `ca_file` (the server refuses any connection without TLS),
    /// and the same URL asking for `verify-full` without it is refused for the unknown issuer.
    #[tokio::test]
    async fn postgres_over_tls_is_verified_against_the_configured_ca() {
        use crate::metadata::MetadataStore;
        use sqlx::Connection;
        let test = "postgres over TLS";
        let Some(url) =
            crate::testing::fresh_postgres_database_at("RAGPLANE_TEST_POSTGRES_TLS_URL", test)
                .await
                .unwrap()
        else {
            return;
        };
        let ca: std::path::PathBuf =
            crate::testing::service_env("RAGPLANE_TEST_POSTGRES_TLS_CA", test)
                .expect("recorded with the TLS URL")
                .into();

        let mut metadata = ragplane_config::PostgresConfig::new(url.clone());
        metadata.ca_file = Some(ca.clone());
        let store = crate::metadata::PostgresStore::connect(&metadata).unwrap();
        store.migrate().await.unwrap();
        let (ssl,): (bool,) =
            sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(store.primary())
                .await
                .unwrap();
        assert!(ssl, "the metadata store's connection is not TLS");

        let mut vectors = ragplane_config::PostgresIndexConfig::new(url.clone());
        vectors.ca_file = Some(ca.clone());
        let index = crate::vectors::postgres::PostgresIndex::open(vectors)
            .await
            .unwrap();
        sqlx::query("SELECT 1").execute(index.pool()).await.unwrap();

        let unverified = sqlx::PgConnection::connect(&format!("{url}?sslmode=verify-full"))
            .await
            .expect_err("the test CA is not among the system's roots")
            .to_string();
        assert!(unverified.contains("UnknownIssuer"), "{unverified}");

        let mut missing = metadata.clone();
        missing.ca_file = Some(ca.with_file_name("absent.pem"));
        let err = crate::metadata::PostgresStore::connect(&missing)
            .err()
            .expect("a missing CA file stops the store")
            .to_string();
        assert!(
            err.contains("metadata.ca_file") && err.contains("absent.pem"),
            "{err}"
        );
    }
}
