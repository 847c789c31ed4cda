//! cosign's encrypted private key (sigstore/sigstore `pkg/encrypted`, written by
//! `cosign generate-key-pair`): a PEM block `ENCRYPTED SIGSTORE PRIVATE KEY` (or the older
//! `ENCRYPTED COSIGN PRIVATE KEY`) holding JSON
//! `{"kdf":{"name":"scrypt","params":{"N":…,"r":…,"p":…},"salt":B64},
//!   "cipher":{"name":"nacl/secretbox","nonce":B64},"ciphertext":B64}`:
//! the key is scrypt(password, salt, N, r, p) to 32 bytes, the ciphertext a NaCl secretbox
//! (XSalsa20-Poly1305) of the PKCS#8 DER private key.

use base64::Engine;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use serde::Deserialize;

pub const COSIGN_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
pub const SIGSTORE_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";

/// scrypt's N above this would take gigabytes of memory: refuse before allocating.
const MAX_LOG_N: u8 = 20;

#[derive(Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn b64(field: &str, s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("{field} is not base64: {e}"))
}

/// The private key's DER, from the PEM block's bytes (the JSON envelope) and the password.
pub fn decrypt(envelope: &[u8], password: &[u8]) -> Result<Vec<u8>, String> {
    let e: Envelope = serde_json::from_slice(envelope)
        .map_err(|e| format!("not a cosign encrypted key envelope: {e}"))?;
    if e.kdf.name != "scrypt" {
        return Err(format!(
            "unsupported key derivation {:?} (scrypt expected)",
            e.kdf.name
        ));
    }
    if e.cipher.name != "nacl/secretbox" {
        return Err(format!(
            "unsupported cipher {:?} (nacl/secretbox expected)",
            e.cipher.name
        ));
    }
    let KdfParams { n, r, p } = e.kdf.params;
    if !n.is_power_of_two() || n < 2 {
        return Err(format!("scrypt N = {n} is not a power of two"));
    }
    let log_n = n.trailing_zeros() as u8;
    if log_n > MAX_LOG_N {
        return Err(format!("scrypt N = {n} is larger than 2^{MAX_LOG_N}"));
    }
    let params = scrypt::Params::new(log_n, r, p, 32)
        .map_err(|e| format!("invalid scrypt parameters: {e}"))?;
    let salt = b64("salt", &e.kdf.salt)?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, &salt, &params, &mut key).map_err(|e| format!("scrypt: {e}"))?;
    let nonce = b64("nonce", &e.cipher.nonce)?;
    if nonce.len() != 24 {
        return Err(format!("the nonce is {} bytes, 24 expected", nonce.len()));
    }
    let ciphertext = b64("ciphertext", &e.ciphertext)?;
    XSalsa20Poly1305::new(&key.into())
        .decrypt(nonce.as_slice().into(), ciphertext.as_slice())
        .map_err(|_| "wrong password (or a damaged key): the secretbox does not open".to_string())
}
