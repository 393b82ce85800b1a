//! The local store's signed URLs, puts and keys.

use super::*;

#[test]
fn staging_keys_are_unique_and_beside_their_key() {
    let (a, b) = (
        staging_key("a/a-1.tar.gz").unwrap(),
        staging_key("a/a-1.tar.gz").unwrap(),
    );
    assert_ne!(a, b);
    assert!(
        a.starts_with("a/a-1.tar.gz.") && a.ends_with(".part"),
        "{a}"
    );
    assert_eq!(copy_source("b", "p x/a+1"), "b/p%20x/a%2B1");
}

fn store() -> LocalStore {
    LocalStore::new(
        PathBuf::from("/nonexistent"),
        "http://x".into(),
        b"k".to_vec(),
        Duration::from_secs(60),
    )
}

#[test]
fn signed_urls_verify_and_tampering_fails() {
    let s = store();
    let expires = Timestamp::now().0 / 1000 + 60;
    let q = s.sign("a/a-1.tar.gz", expires);
    let sig = q.split("sig=").nth(1).unwrap();
    assert_eq!(s.verify("a/a-1.tar.gz", expires, sig), Ok(()));
    assert_eq!(
        s.verify("a/a-2.tar.gz", expires, sig),
        Err(UrlError::BadSignature)
    );
    assert_eq!(
        s.verify("a/a-1.tar.gz", expires + 1, sig),
        Err(UrlError::BadSignature)
    );
    assert_eq!(
        s.verify("a/a-1.tar.gz", expires, "zz"),
        Err(UrlError::BadSignature)
    );
}

#[test]
fn expired_urls_fail() {
    let s = store();
    let past = Timestamp::now().0 / 1000 - 1;
    let q = s.sign("k", past);
    let sig = q.split("sig=").nth(1).unwrap();
    assert_eq!(s.verify("k", past, sig), Err(UrlError::Expired));
}

#[tokio::test]
async fn a_local_object_exists_once_put() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::new(
        dir.path().join("store"),
        "http://x".into(),
        b"k".to_vec(),
        Duration::from_secs(60),
    );
    let key = "a/blobs/abc";
    assert!(!s.exists(key).await.unwrap());
    let file = dir.path().join("f");
    std::fs::write(&file, "x").unwrap();
    s.put(key, &file).await.unwrap();
    assert!(s.exists(key).await.unwrap());
}

#[tokio::test]
async fn download_urls_carry_a_signature() {
    let url = store().download_url("a/a-1.tar.gz").await.unwrap();
    assert!(
        url.starts_with("http://x/artifacts/a/a-1.tar.gz?expires="),
        "{url}"
    );
    assert!(url.contains("&sig="));
}
