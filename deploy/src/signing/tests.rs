//! Tests of artifact, index and domain-separated message signatures.

use super::*;

fn app() -> AppName {
    AppName::parse("hello").unwrap()
}
fn version() -> Version {
    Version::parse("3-abc1234").unwrap()
}
fn sha(c: char) -> Sha256 {
    Sha256::parse(c.to_string().repeat(64)).unwrap()
}
fn key(n: u8) -> SigningKey {
    SigningKey::from_seed([n; 32])
}

#[test]
fn a_signature_verifies_with_its_key_among_others() {
    let k = key(1);
    let sig = k.sign(&app(), &version(), &sha('a')).to_string();
    assert_eq!(sig.len(), SIGNATURE_CHARS);
    let keys = [key(2).public_key(), k.public_key()];
    verify(&keys, &app(), &version(), &sha('a'), &sig).unwrap();
    // The text form survives a round trip, whitespace around it too.
    let again = Signature::parse(&format!(" {sig}\n")).unwrap();
    assert_eq!(again.to_string(), sig);
}

#[test]
fn an_index_signature_is_not_an_artifact_signature() {
    let k = key(1);
    let keys = [k.public_key()];
    let index = k.sign_index(&app(), &version(), &sha('a')).to_string();
    verify_index(&keys, &app(), &version(), &sha('a'), &index).unwrap();
    let artifact = k.sign(&app(), &version(), &sha('a')).to_string();
    // Same key, app, version and digest: the prefixes keep them apart.
    assert!(matches!(
        verify(&keys, &app(), &version(), &sha('a'), &index),
        Err(SignatureError::Mismatch { .. })
    ));
    assert!(matches!(
        verify_index(&keys, &app(), &version(), &sha('a'), &artifact),
        Err(SignatureError::Mismatch { .. })
    ));
    assert!(
        message_in(INDEX_DOMAIN, &app(), &version(), &sha('a'))
            .starts_with(b"slipway-index-v1\nhello\n")
    );
}

#[test]
fn the_signed_message_is_stable() {
    // Packers and grabbers of different releases must agree on the
    // bytes: a change here breaks every deployed grabber.
    assert_eq!(
        message(&app(), &version(), &sha('a')),
        format!(
            "slipway-artifact-v1\nhello\n3-abc1234\n{}\n",
            "a".repeat(64)
        )
        .into_bytes()
    );
    // ed25519 is deterministic: the same key and message, the same
    // signature (checked against another implementation, Python's
    // `cryptography`, signing the message above with seed [1; 32]).
    let sig = key(1).sign(&app(), &version(), &sha('a')).to_string();
    assert_eq!(
        sig,
        "qo3gLT6JxGra5CJ/j+nRzHD97yzJyU3WzPvFb6P4x/n+N6kXjcS6fMMHpRPxumqckLJbYy3dcwiYAMebzJ2kBA=="
    );
}

#[test]
fn a_wrong_key_or_tampered_field_is_refused() {
    let sig = key(1).sign(&app(), &version(), &sha('a')).to_string();
    let two = [key(2).public_key(), key(3).public_key()];
    let e = verify(&two, &app(), &version(), &sha('a'), &sig).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the signature of hello 3-abc1234 does not verify with any of the 2 trusted keys"
    );
    let one = [key(1).public_key()];
    let e = verify(&one, &app(), &version(), &sha('b'), &sig).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the signature of hello 3-abc1234 does not verify with the trusted key"
    );
    let other_version = Version::parse("4-abc1234").unwrap();
    assert!(verify(&one, &app(), &other_version, &sha('a'), &sig).is_err());
    let other_app = AppName::parse("hellp").unwrap();
    assert!(verify(&one, &other_app, &version(), &sha('a'), &sig).is_err());
    // A flipped bit in the signature itself.
    let mut bytes = B64.decode(&sig).unwrap();
    bytes[10] ^= 1;
    let flipped = B64.encode(&bytes);
    assert!(matches!(
        verify(&one, &app(), &version(), &sha('a'), &flipped),
        Err(SignatureError::Mismatch { .. })
    ));
}

#[test]
fn missing_and_malformed_signatures_are_named() {
    let keys = [key(1).public_key()];
    let v = |s: &str| verify(&keys, &app(), &version(), &sha('a'), s);
    assert_eq!(v(""), Err(SignatureError::Unsigned));
    assert_eq!(v("  \n"), Err(SignatureError::Unsigned));
    assert_eq!(v("").unwrap_err().to_string(), "the artifact is not signed");
    for bad in [
        "x",
        "not base64 at all but exactly eighty-eight characters long, which is quite long.....",
        &"=".repeat(88),
        &"A".repeat(87),
        &"é".repeat(44),
        &"A".repeat(10_000),
    ] {
        let e = v(bad).unwrap_err();
        assert!(
            matches!(e, SignatureError::Malformed(_)),
            "{bad:?} gave {e:?}"
        );
        assert!(e.to_string().starts_with("malformed signature: "), "{e}");
    }
    assert_eq!(
        verify(&[], &app(), &version(), &sha('a'), "x"),
        Err(SignatureError::NoTrustedKeys)
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic fuzz: every parser and verify on many inputs.
    let keys = [key(1).public_key()];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let len = (next() % 120) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let text = String::from_utf8_lossy(&bytes);
        let _ = Signature::parse(&text);
        let _ = PublicKey::parse(&text);
        let _ = PublicKey::parse(&format!("ed25519:{text}"));
        let _ = verify(&keys, &app(), &version(), &sha('a'), &text);
        // Well-formed base64 of random bytes: the right length, wrong content.
        let b64 = B64.encode((0..64).map(|_| next() as u8).collect::<Vec<_>>());
        assert!(verify(&keys, &app(), &version(), &sha('a'), &b64).is_err());
        let pk = B64.encode((0..32).map(|_| next() as u8).collect::<Vec<_>>());
        let _ = PublicKey::parse(&format!("ed25519:{pk}"));
    }
}

#[test]
fn public_keys_print_and_parse() {
    let pk = key(7).public_key();
    let text = pk.to_string();
    assert!(text.starts_with("ed25519:") && text.len() == 8 + KEY_CHARS);
    assert_eq!(PublicKey::parse(&text).unwrap(), pk);
    assert_eq!(format!("{pk:?}"), text);
    for bad in [
        "",
        "ed25519:",
        "rsa:AAAA",
        &text[8..],
        &format!("ed25519:{}", "A".repeat(43)),
        &format!("ed25519:{}", "!".repeat(44)),
    ] {
        let e = PublicKey::parse(bad).unwrap_err();
        assert!(
            e.to_string().starts_with("invalid public key"),
            "{bad:?}: {e}"
        );
    }
    // The identity point is a valid encoding but a weak key.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = format!("ed25519:{}", B64.encode(identity));
    assert!(
        PublicKey::parse(&weak)
            .unwrap_err()
            .to_string()
            .contains("weak")
    );
}

#[test]
fn key_files_are_private_complete_and_never_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/signing.key");
    let k = SigningKey::generate_to_file(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let loaded = SigningKey::load(&path).unwrap();
    assert_eq!(loaded.public_key(), k.public_key());
    // Nothing left aside.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["signing.key"]);
    assert!(matches!(
        SigningKey::generate_to_file(&path),
        Err(KeyError::Exists(_))
    ));
    let (again, generated) = SigningKey::load_or_generate(&path).unwrap();
    assert!(!generated);
    assert_eq!(again.public_key(), k.public_key());
    let fresh = dir.path().join("other.key");
    let (_, generated) = SigningKey::load_or_generate(&fresh).unwrap();
    assert!(generated);

    // Debug shows the public key, never the seed.
    let seed = std::fs::read_to_string(&path).unwrap();
    let debug = format!("{k:?}");
    assert!(debug.contains(&k.public_key().to_string()), "{debug}");
    assert!(!debug.contains(seed.trim()), "{debug}");

    // Malformed files are named, their content is not.
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "c2VjcmV0LXRoYXQtaXMtdG9vLXNob3J0\n").unwrap();
    let e = SigningKey::load(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.key") && e.contains("malformed"), "{e}");
    assert!(!e.contains("c2VjcmV0"), "{e}");
    std::fs::write(&bad, format!("{}\n", "*".repeat(44))).unwrap();
    assert!(
        SigningKey::load(&bad)
            .unwrap_err()
            .to_string()
            .contains("not base64")
    );
    let e = SigningKey::load(&dir.path().join("absent.key")).unwrap_err();
    assert!(e.to_string().contains("cannot read the signing key"), "{e}");
}

#[test]
fn trusted_keys_files_skip_comments_and_name_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trusted");
    let (a, b) = (key(1).public_key(), key(2).public_key());
    std::fs::write(&path, format!("# packers\n{a}\n\n  {b}  \n")).unwrap();
    assert_eq!(read_public_keys(&path).unwrap(), vec![a, b]);
    std::fs::write(&path, format!("{a}\nnope\n")).unwrap();
    let e = read_public_keys(&path).unwrap_err();
    assert!(
        e.contains("line 2") && e.contains("invalid public key"),
        "{e}"
    );
}

#[test]
fn messages_are_signed_under_their_domain() {
    let key = SigningKey::generate().unwrap();
    let keys = [key.public_key()];
    let sig = key.sign_message("slipway-test-v1\n", b"hello");
    assert!(verify_message(&keys, "slipway-test-v1\n", b"hello", &sig));
    assert!(!verify_message(&keys, "slipway-test-v2\n", b"hello", &sig));
    assert!(!verify_message(&keys, "slipway-test-v1\n", b"hellO", &sig));
    let other = SigningKey::generate().unwrap();
    assert!(!verify_message(
        &[other.public_key()],
        "slipway-test-v1\n",
        b"hello",
        &sig
    ));
    // An artifact's signature is a message under the artifact domain:
    // the general form signs the same bytes the same way.
    let text = format!("{}\n{}\n{}\n", app(), version(), sha('a'));
    let general = key.sign_message("slipway-artifact-v1\n", text.as_bytes());
    assert_eq!(general, key.sign(&app(), &version(), &sha('a')));
    assert_eq!(Signature::from_bytes(&general.to_bytes()), Ok(general));
    assert!(Signature::from_bytes(&[0u8; 12]).is_err());
}
