//! The object store's behaviour, one test body run against every backend: the local directory
//! (always) and S3 (when `RAGPLANE_TEST_S3_ENDPOINT` names a server; see
//! scripts/services/s3.sh). Then what only S3 has: multipart uploads and its errors.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use ragplane::objects::{LocalStore, ObjectError, ObjectStore, S3Store};
use ragplane::testing::s3_test_config;
use ragplane_config::{Secret, S3_MIN_PART_BYTES};

/// Deterministic bytes that do not compress or repeat at part boundaries.
fn pattern(len: usize) -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn read_stream(s: &dyn ObjectStore, key: &str) -> (Bytes, usize) {
    let mut stream = s.get_stream(key).await.unwrap();
    let mut all = BytesMut::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.try_next().await.unwrap() {
        all.extend_from_slice(&chunk);
        chunks += 1;
    }
    (all.freeze(), chunks)
}

/// Everything the data plane relies on from an object store.
async fn suite(s: &dyn ObjectStore) {
    s.ping().await.unwrap();
    s.put("t1/c1/d1", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(
        s.get("t1/c1/d1").await.unwrap(),
        Bytes::from_static(b"hello")
    );
    s.put("t1/c1/d1", Bytes::from_static(b"again"))
        .await
        .unwrap();
    assert_eq!(
        s.get("t1/c1/d1").await.unwrap(),
        Bytes::from_static(b"again")
    );

    // Missing objects, deleting twice.
    assert!(
        matches!(s.get("t1/c1/nope").await, Err(ObjectError::NotFound(k)) if k == "t1/c1/nope")
    );
    assert!(matches!(
        s.get_stream("t1/c1/nope").await,
        Err(ObjectError::NotFound(_))
    ));
    s.delete("t1/c1/d1").await.unwrap();
    assert!(matches!(
        s.get("t1/c1/d1").await,
        Err(ObjectError::NotFound(_))
    ));
    s.delete("t1/c1/d1").await.unwrap();

    // A prefix removes exactly its objects: not those of a sibling sharing its first letters.
    for k in ["t1/c2/a", "t1/c2/b", "t1/c22/a", "t2/c2/a"] {
        s.put(k, Bytes::from(k.to_string())).await.unwrap();
    }
    s.delete_prefix("t1/c2").await.unwrap();
    assert!(matches!(
        s.get("t1/c2/a").await,
        Err(ObjectError::NotFound(_))
    ));
    assert!(matches!(
        s.get("t1/c2/b").await,
        Err(ObjectError::NotFound(_))
    ));
    assert_eq!(
        s.get("t1/c22/a").await.unwrap(),
        Bytes::from_static(b"t1/c22/a")
    );
    assert_eq!(
        s.get("t2/c2/a").await.unwrap(),
        Bytes::from_static(b"t2/c2/a")
    );
    s.delete_prefix("t9/none").await.unwrap();

    // Streaming a few megabytes gives the same bytes, in more than one chunk.
    let big = pattern(3 * 1024 * 1024 + 17);
    s.put("t1/c3/big", big.clone()).await.unwrap();
    let (streamed, chunks) = read_stream(s, "t1/c3/big").await;
    assert_eq!(streamed.len(), big.len());
    assert!(streamed == big, "streamed bytes differ");
    assert!(chunks > 1, "a large object arrives in chunks, got {chunks}");

    // Keys never escape the store's namespace.
    for bad in ["../x", "/etc/passwd", "a//b", "a/./b", "", "a b"] {
        assert!(
            matches!(
                s.put(bad, Bytes::new()).await,
                Err(ObjectError::InvalidKey(_))
            ),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn local_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::open(dir.path().join("objects")).unwrap();
    suite(&s).await;
}

#[tokio::test]
async fn s3_store() {
    let Some(mut cfg) = s3_test_config("s3_store").await.unwrap() else {
        return;
    };
    suite(&S3Store::connect(&cfg).await.unwrap()).await;
    // The same, under a key prefix in the bucket.
    cfg.prefix = "cluster-a".into();
    suite(&S3Store::connect(&cfg).await.unwrap()).await;
}

#[tokio::test]
async fn s3_large_objects_round_trip_through_multipart_upload() {
    let Some(cfg) = s3_test_config("s3_multipart").await.unwrap() else {
        return;
    };
    let s = S3Store::connect(&cfg).await.unwrap();
    let part = usize::try_from(S3_MIN_PART_BYTES).unwrap();
    let body = pattern(2 * part + part / 3);
    s.put("t/c/large", body.clone()).await.unwrap();

    // A multipart object's ETag is the digest of its parts' digests, suffixed "-<parts>".
    let head = ragplane::objects::s3::client(&cfg)
        .await
        .unwrap()
        .head_object()
        .bucket(&cfg.bucket)
        .key("t/c/large")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(body.len() as i64));
    let etag = head
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    assert!(
        etag.ends_with("-3"),
        "expected a 3-part upload, ETag {etag}"
    );

    assert!(
        s.get("t/c/large").await.unwrap() == body,
        "read back differs"
    );
    let (streamed, chunks) = read_stream(&s, "t/c/large").await;
    assert!(streamed == body, "streamed bytes differ");
    assert!(chunks > 1);

    // An object at the threshold is one plain upload.
    let small = pattern(part);
    s.put("t/c/small", small.clone()).await.unwrap();
    assert!(s.get("t/c/small").await.unwrap() == small);
}

#[tokio::test]
async fn s3_missing_bucket_is_named() {
    let Some(mut cfg) = s3_test_config("s3_missing_bucket").await.unwrap() else {
        return;
    };
    cfg.bucket = format!("missing-{}", cfg.bucket);
    let err = S3Store::connect(&cfg)
        .await
        .err()
        .expect("connect must fail");
    assert!(matches!(err, ObjectError::BucketNotFound { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("{:?}", cfg.bucket)),
        "{err}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");

    // Later operations say the same. (Not a write: s3s-fs creates a missing bucket on PutObject.)
    let s = S3Store::new(&cfg).await.unwrap();
    let err = s.delete_prefix("t/c").await.unwrap_err();
    assert!(matches!(err, ObjectError::BucketNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn s3_bad_credentials_are_named() {
    let Some(mut cfg) = s3_test_config("s3_bad_credentials").await.unwrap() else {
        return;
    };
    let bucket = cfg.bucket.clone();
    for (id, secret) in [
        (None, "wrong-secret-0000"),
        (Some("unknown-access-key"), "wrong-secret-0000"),
    ] {
        if let Some(id) = id {
            cfg.access_key_id = Some(Secret::new(id));
        }
        cfg.secret_access_key = Some(Secret::new(secret));
        let err = S3Store::connect(&cfg)
            .await
            .err()
            .expect("connect must fail");
        assert!(matches!(err, ObjectError::Credentials { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("{bucket:?}")), "{err}");

        let s = S3Store::new(&cfg).await.unwrap();
        let err = s.put("t/c/d", Bytes::from_static(b"x")).await.unwrap_err();
        assert!(matches!(err, ObjectError::Credentials { .. }), "{err:?}");
        eprintln!("{err}");
    }
}

#[tokio::test]
async fn s3_credentials_come_from_the_environment_when_not_configured() {
    let Some(mut cfg) = s3_test_config("s3_env_credentials").await.unwrap() else {
        return;
    };
    let (id, secret) = (
        cfg.access_key_id.take().unwrap(),
        cfg.secret_access_key.take().unwrap(),
    );
    // Only this test in this binary touches these variables.
    std::env::set_var("AWS_ACCESS_KEY_ID", id.expose());
    std::env::set_var("AWS_SECRET_ACCESS_KEY", secret.expose());
    let s = S3Store::connect(&cfg).await.unwrap();
    s.put("t/c/env", Bytes::from_static(b"from env"))
        .await
        .unwrap();
    assert_eq!(
        s.get("t/c/env").await.unwrap(),
        Bytes::from_static(b"from env")
    );
}

/// The test server behind TLS with a private CA: with that CA as `objects.ca_file` the whole
/// suite passes over `https://`; without it the system's roots refuse the certificate, and a
/// CA file that is missing stops the store before anything is sent.
#[tokio::test]
async fn s3_over_tls_trusts_the_configured_ca() {
    let test = "s3_over_tls";
    let Some(mut cfg) = s3_test_config(test).await.unwrap() else {
        return;
    };
    let endpoint = ragplane::testing::service_env("RAGPLANE_TEST_S3_TLS_ENDPOINT", test)
        .expect("recorded with the plain endpoint");
    let ca = ragplane::testing::service_env("RAGPLANE_TEST_S3_TLS_CA", test)
        .expect("recorded with the TLS endpoint");
    cfg.endpoint = Some(endpoint);
    cfg.max_attempts = 1;
    cfg.ca_file = Some(ca.clone().into());
    suite(&S3Store::connect(&cfg).await.unwrap()).await;

    cfg.ca_file = None;
    let err = S3Store::connect(&cfg)
        .await
        .err()
        .expect("the test CA is not among the system's roots");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    cfg.ca_file = Some(std::path::Path::new(&ca).with_file_name("absent.pem"));
    let err = S3Store::new(&cfg)
        .await
        .err()
        .expect("a missing CA file stops the store");
    assert!(matches!(err, ObjectError::CaFile(_)), "{err:?}");
    assert!(err.to_string().contains("objects.ca_file"), "{err}");
}
