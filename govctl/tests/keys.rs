//! The key store: NIP-19 and NIP-49 vectors, keygen, passphrases, file
//! modes, no overwriting, import and export.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{chmod, stderr, stdout, Env};
use nostr::nips::nip19::{FromBech32, ToBech32};
use nostr::nips::nip49::{EncryptedSecretKey, KeySecurity};

fn vectors(name: &str) -> serde_json::Value {
    let path = format!("{}/../testdata/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn nip19_vectors_decode_and_encode() {
    let v = vectors("nip19.json");
    for case in v["npub"].as_array().unwrap() {
        let (bech, hex) = (
            case["bech32"].as_str().unwrap(),
            case["hex"].as_str().unwrap(),
        );
        let pk = nostr::key::PublicKey::from_bech32(bech).unwrap();
        assert_eq!(pk.to_hex(), hex);
        assert_eq!(pk.to_bech32().unwrap(), bech);
        // The agent's decoder agrees with rust-nostr.
        assert_eq!(
            hex::encode(qube_agent::core::nip19::decode_npub(bech).unwrap()),
            hex
        );
    }
    for case in v["nsec"].as_array().unwrap() {
        let (bech, hex) = (
            case["bech32"].as_str().unwrap(),
            case["hex"].as_str().unwrap(),
        );
        let sk = nostr::key::SecretKey::from_bech32(bech).unwrap();
        assert_eq!(sk.to_secret_hex(), hex);
        assert_eq!(sk.to_bech32().unwrap(), bech);
    }
}

#[test]
fn nsec_vector_imports_as_hex_and_exports_as_the_same_nsec() {
    let v = vectors("nip19.json");
    let case = &v["nsec"][0];
    let (bech, hex) = (
        case["bech32"].as_str().unwrap(),
        case["hex"].as_str().unwrap(),
    );
    let env = Env::new();
    let out = env.run_with_stdin(&["key", "import", "--name", "v", "--plaintext"], hex);
    common::assert_ok(&out, &["key", "import"]);
    assert!(stderr(&out).contains("unencrypted"), "{}", stderr(&out));
    let exported = env.ok(&["key", "export", "--name", "v", "--plaintext"]);
    assert_eq!(exported.trim(), bech);
    assert_eq!(
        std::fs::read_to_string(env.home().join("v.key")).unwrap(),
        format!("{bech}\n")
    );
}

/// The NIP-49 vector decrypts to its secret through govctl, and encrypting
/// that secret again with the vector's salt and nonce gives the vector.
#[test]
fn nip49_vector_decrypts_and_encrypts() {
    let v = vectors("nip49.json");
    let ncryptsec = v["ncryptsec"].as_str().unwrap();
    let secret_hex = v["secret_key_hex"].as_str().unwrap();
    let password = v["password"].as_str().unwrap();
    assert_eq!(v["log_n"].as_u64(), Some(16));

    let env = Env::new();
    std::fs::write(env.path("nip49-pass"), format!("{password}\n")).unwrap();
    chmod(&env.path("nip49-pass"), 0o600);
    let out = env.run_with_stdin(
        &[
            "key",
            "import",
            "--name",
            "v",
            "--plaintext",
            "--passphrase-file",
            "nip49-pass",
        ],
        ncryptsec,
    );
    common::assert_ok(&out, &["key", "import"]);
    let nsec = env.ok(&["key", "export", "--name", "v", "--plaintext"]);
    let secret = nostr::key::SecretKey::from_bech32(nsec.trim()).unwrap();
    assert_eq!(secret.to_secret_hex(), secret_hex);

    let parsed = EncryptedSecretKey::from_bech32(ncryptsec).unwrap();
    let bytes = parsed.as_vec();
    let salt: [u8; 16] = bytes[2..18].try_into().unwrap();
    let nonce: [u8; 24] = bytes[18..42].try_into().unwrap();
    let security = KeySecurity::try_from(bytes[42]).unwrap();
    let again = EncryptedSecretKey::new_with_salt_and_nonce(
        &secret,
        password,
        parsed.log_n(),
        security,
        salt,
        nonce,
    )
    .unwrap();
    assert_eq!(again.to_bech32().unwrap(), ncryptsec);
}

#[test]
fn keygen_key_loads_only_with_the_right_passphrase() {
    let env = Env::new();
    let npub = env.keygen("gov");
    assert!(npub.starts_with("npub1"), "{npub}");
    let file = env.home().join("gov.key");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("ncryptsec1") && text.ends_with('\n') && text.lines().count() == 1);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(env.home()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // The file is a standard NIP-49 ncryptsec at the requested cost.
    let encrypted = EncryptedSecretKey::from_bech32(text.trim()).unwrap();
    assert_eq!(encrypted.log_n(), 4);
    let secret = encrypted.decrypt("correct horse").unwrap();
    assert!(encrypted.decrypt("wrong horse").is_err());

    let shown = env.ok(&["key", "show", "--name", "gov", "--passphrase-file", "pass"]);
    assert!(shown.contains(&format!("npub:      {npub}")), "{shown}");
    assert!(
        shown.contains("encrypted: yes (NIP-49 ncryptsec, log_n 4)"),
        "{shown}"
    );
    assert!(!shown.contains("nsec") && !shown.contains(&secret.to_secret_hex()));

    let wrong = env.run(&["key", "show", "--name", "gov", "--passphrase-file", "wrong"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("gov.key: wrong passphrase"),
        "{}",
        stderr(&wrong)
    );
    assert!(stdout(&wrong).is_empty());

    // Export prints the stored ncryptsec; --plaintext needs the passphrase.
    assert_eq!(env.ok(&["key", "export", "--name", "gov"]), text);
    let nsec = env.ok(&[
        "key",
        "export",
        "--name",
        "gov",
        "--plaintext",
        "--passphrase-file",
        "pass",
    ]);
    assert_eq!(nsec.trim(), secret.to_bech32().unwrap());
}

#[test]
fn group_or_world_accessible_key_is_refused_with_chmod_advice() {
    let env = Env::new();
    env.plain_key("k.key");
    for mode in [0o644, 0o640, 0o604, 0o620] {
        chmod(&env.path("k.key"), mode);
        let out = env.run(&["key", "show", "--key", "k.key"]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "permissions {mode:04o} for key file k.key are too open"
            )),
            "{err}"
        );
        assert!(err.contains("hint: chmod 600 k.key"), "{err}");
        assert!(stdout(&out).is_empty());
    }
    chmod(&env.path("k.key"), 0o600);
    env.ok(&["key", "show", "--key", "k.key"]);
}

#[test]
fn keygen_never_overwrites() {
    let env = Env::new();
    let first = env.keygen("gov");
    let before = std::fs::read(env.home().join("gov.key")).unwrap();
    let out = env.run(&[
        "keygen",
        "--name",
        "gov",
        "--log-n",
        "4",
        "--passphrase-file",
        "pass",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("gov.key already exists; refusing to overwrite it"));
    assert_eq!(std::fs::read(env.home().join("gov.key")).unwrap(), before);
    // Also with --key, and also for import.
    std::fs::write(env.path("taken.key"), "precious\n").unwrap();
    let out = env.run(&["keygen", "--key", "taken.key", "--plaintext"]);
    assert_eq!(out.status.code(), Some(1));
    let out = env.run_with_stdin(
        &["key", "import", "--key", "taken.key", "--plaintext"],
        "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(env.path("taken.key")).unwrap(),
        "precious\n"
    );
    assert!(first.starts_with("npub1"));
}

#[test]
fn plaintext_keygen_warns_and_import_encrypts_by_default() {
    let env = Env::new();
    let out = env.run(&["keygen", "--name", "p", "--plaintext"]);
    common::assert_ok(&out, &["keygen"]);
    assert!(stderr(&out).contains("warning:"), "{}", stderr(&out));
    let nsec = env.ok(&["key", "export", "--name", "p", "--plaintext"]);
    assert!(nsec.starts_with("nsec1"));

    // Re-import that nsec: stored encrypted, same public key.
    let out = env.run_with_stdin(
        &[
            "key",
            "import",
            "--name",
            "q",
            "--log-n",
            "4",
            "--passphrase-file",
            "pass",
        ],
        &nsec,
    );
    common::assert_ok(&out, &["key", "import"]);
    let stored = std::fs::read_to_string(env.home().join("q.key")).unwrap();
    assert!(stored.starts_with("ncryptsec1"), "{stored}");
    let p = env.ok(&["key", "show", "--name", "p"]);
    let q = env.ok(&["key", "show", "--name", "q", "--passphrase-file", "pass"]);
    assert_eq!(p.lines().next(), q.lines().next());

    // A public key is not a secret key.
    let out = env.run_with_stdin(
        &["key", "import", "--name", "r", "--plaintext"],
        p.lines().next().unwrap().split_whitespace().nth(1).unwrap(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("public key, not a secret key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn log_n_above_the_cap_is_refused() {
    let env = Env::new();
    let out = env.run(&[
        "keygen",
        "--name",
        "x",
        "--log-n",
        "21",
        "--passphrase-file",
        "pass",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!env.home().join("x.key").exists());

    // A hostile ncryptsec claiming log_n 30 is refused before scrypt runs
    // (that would need 128 GiB).
    let secret = nostr::key::SecretKey::generate();
    let encrypted =
        EncryptedSecretKey::new(&secret, "correct horse", 1, KeySecurity::Medium).unwrap();
    let mut bytes = encrypted.as_vec();
    bytes[1] = 30;
    let hostile = EncryptedSecretKey::from_slice(&bytes)
        .unwrap()
        .to_bech32()
        .unwrap();
    let out = env.run_with_stdin(
        &["key", "import", "--name", "h", "--passphrase-file", "pass"],
        &hostile,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("log_n 30 is above govctl's limit of 20"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn passphrase_file_readable_by_group_or_others_is_refused_with_chmod_advice() {
    let env = Env::new();
    for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
        chmod(&env.path("pass"), mode);
        let out = env.run(&[
            "keygen",
            "--name",
            "gov",
            "--log-n",
            "4",
            "--passphrase-file",
            "pass",
        ]);
        assert_eq!(out.status.code(), Some(1), "{mode:o}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "error: permissions {mode:04o} for passphrase file pass are too open"
            )),
            "{err}"
        );
        assert!(err.contains("hint: chmod 600 pass"), "{err}");
        assert!(!env.home().join("gov.key").exists());
    }
    // 0400 and 0600 are fine; the key then unlocks only with a private file.
    chmod(&env.path("pass"), 0o400);
    env.keygen("gov");
    chmod(&env.path("pass"), 0o644);
    let out = env.run(&["key", "show", "--name", "gov", "--passphrase-file", "pass"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("hint: chmod 600 pass"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
    chmod(&env.path("pass"), 0o600);
    env.ok(&["key", "show", "--name", "gov", "--passphrase-file", "pass"]);
}

/// The store directory's mode is checked whenever a key in it is used, not
/// only when govctl creates it.
#[test]
fn store_directory_writable_by_others_is_refused_at_every_use() {
    let env = Env::new();
    env.keygen("gov");
    let home = env.home();
    let home_text = home.display().to_string();
    for mode in [0o777, 0o770, 0o702] {
        chmod(&home, mode);
        for args in [
            vec!["key", "show", "--name", "gov", "--passphrase-file", "pass"],
            vec!["key", "export", "--name", "gov"],
            vec![
                "keygen",
                "--name",
                "other",
                "--log-n",
                "4",
                "--passphrase-file",
                "pass",
            ],
            vec![
                "propose",
                "upgrade",
                "--version",
                "1.0.0",
                "--network",
                "hqz",
                "--hash",
                common::HASH,
                "--name",
                "gov",
                "--passphrase-file",
                "pass",
                "--out",
                "x.json",
            ],
        ] {
            let out = env.run(&args);
            assert_eq!(out.status.code(), Some(1), "{args:?} at {mode:o}");
            let err = stderr(&out);
            assert!(
                err.contains(&format!(
                    "error: key store {home_text} is writable by group or others (mode {mode:03o})"
                )),
                "{args:?}: {err}"
            );
            assert!(
                err.contains(&format!("hint: chmod 700 {home_text}")),
                "{err}"
            );
            assert!(stdout(&out).is_empty(), "{args:?}");
        }
        assert!(!home.join("other.key").exists());
        assert!(!env.path("x.json").exists());
    }
    // Readable but not writable by others is not a way to swap keys.
    chmod(&home, 0o755);
    env.ok(&["key", "show", "--name", "gov", "--passphrase-file", "pass"]);
    chmod(&home, 0o700);
    env.ok(&["key", "show", "--name", "gov", "--passphrase-file", "pass"]);
}
