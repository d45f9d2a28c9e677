//! Rekor (v1) transparency log entries of a bundle: the signed entry timestamp (SET), the Merkle
//! inclusion proof (RFC 6962 / RFC 9162 hashing), the signed checkpoint (C2SP signed note), and
//! that the logged entry body is the bundle's own signature, certificate and content.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::trust_root::{LogKey, TrustedRoot};
use super::KeylessError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Audit paths longer than this cannot belong to a tree of fewer than 2^64 leaves.
const MAX_PROOF_HASHES: usize = 64;
/// Most signature lines read from one checkpoint.
const MAX_NOTE_SIGNATURES: usize = 16;

/// A protobuf int64 in JSON: a string (canonical) or a number.
#[derive(Deserialize, Clone, Copy, Debug)]
#[serde(try_from = "serde_json::Value")]
pub(super) struct Int(pub i64);

impl TryFrom<serde_json::Value> for Int {
    type Error = String;
    fn try_from(v: serde_json::Value) -> Result<Self, Self::Error> {
        match v {
            serde_json::Value::String(s) => s
                .parse()
                .map(Int)
                .map_err(|_| format!("{s:?} is not an integer")),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(Int)
                .ok_or_else(|| format!("{n} is not an integer")),
            other => Err(format!("{other} is not an integer")),
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct TlogEntry {
    pub log_index: Int,
    pub log_id: LogId,
    pub kind_version: KindVersion,
    pub integrated_time: Int,
    #[serde(default)]
    pub inclusion_promise: Option<InclusionPromise>,
    #[serde(default)]
    pub inclusion_proof: Option<InclusionProof>,
    pub canonicalized_body: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct LogId {
    pub key_id: String,
}

#[derive(Deserialize, Debug)]
pub(super) struct KindVersion {
    pub kind: String,
    pub version: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct InclusionPromise {
    pub signed_entry_timestamp: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct InclusionProof {
    pub log_index: Int,
    pub root_hash: String,
    pub tree_size: Int,
    #[serde(default)]
    pub hashes: Vec<String>,
    #[serde(default)]
    pub checkpoint: Option<Checkpoint>,
}

#[derive(Deserialize, Debug)]
pub(super) struct Checkpoint {
    pub envelope: String,
}

/// What the log entry must record: the bundle's signed content, signature and certificate.
pub(super) enum Logged<'a> {
    /// A message signature: the artifact's SHA-256 and the signature over it.
    Message {
        digest: &'a [u8],
        signature: &'a [u8],
    },
    /// A DSSE envelope: its payload and signatures (base64 as in the envelope).
    Dsse {
        payload_b64: &'a str,
        payload: &'a [u8],
        signatures: &'a [String],
    },
}

/// A verified log entry.
#[derive(Debug, Clone)]
pub struct VerifiedEntry {
    pub log_index: i64,
    pub integrated_time: DateTime<Utc>,
    pub log_url: String,
    /// Whether a Merkle inclusion proof and signed checkpoint were verified (else the SET only,
    /// which bundle v0.1 allows).
    pub inclusion_proof: bool,
}

fn tlog_err(m: impl Into<String>) -> KeylessError {
    KeylessError::TransparencyLog(m.into())
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, String> {
    B64.decode(s.trim())
        .map_err(|_| format!("{what} is not base64"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Verifies one entry: the log is in the trusted root, the SET signs this body, index and
/// integrated time, the log key was valid then, the body records `logged` and `leaf`, and the
/// inclusion proof (required from bundle v0.2 on) leads to a root signed in a checkpoint.
pub(super) fn verify_entry(
    e: &TlogEntry,
    root: &TrustedRoot,
    logged: &Logged<'_>,
    leaf: &CertificateDer<'_>,
    proof_required: bool,
) -> Result<VerifiedEntry, KeylessError> {
    let key_id = b64(&e.log_id.key_id, "logId.keyId").map_err(tlog_err)?;
    if let Some((_, why)) = root.unsupported_tlogs.iter().find(|(id, _)| *id == key_id) {
        return Err(KeylessError::Unsupported(format!(
            "the entry's transparency log is {why}, which is not supported"
        )));
    }
    let log = root.tlog(&key_id).ok_or_else(|| {
        KeylessError::UnknownLog(format!(
            "Rekor log {} is not a transparency log of the trusted root {}",
            e.log_id.key_id, root.source
        ))
    })?;
    let (Int(index), Int(time)) = (e.log_index, e.integrated_time);
    if index < 0 || time < 0 {
        return Err(tlog_err(format!(
            "negative log index {index} or integrated time {time}"
        )));
    }
    let body = b64(&e.canonicalized_body, "canonicalizedBody").map_err(tlog_err)?;

    // The SET is the log's signature over the entry body, its index and its integrated time:
    // the only proof of *when* the entry was logged (Rekor v1 checkpoints carry no time).
    let promise = e.inclusion_promise.as_ref().ok_or_else(|| {
        KeylessError::SignedEntryTimestamp(
            "the log entry has no signed entry timestamp (inclusionPromise): its integrated time is not proven".into(),
        )
    })?;
    let set = b64(&promise.signed_entry_timestamp, "signedEntryTimestamp")
        .map_err(KeylessError::SignedEntryTimestamp)?;
    // RFC 8785 canonical JSON of the SET payload: keys in order, no spaces; base64 and hex
    // need no escaping.
    let payload = format!(
        r#"{{"body":"{}","integratedTime":{time},"logID":"{}","logIndex":{index}}}"#,
        B64.encode(&body),
        hex(&key_id)
    );
    if !log.verify(payload.as_bytes(), &set) {
        return Err(KeylessError::SignedEntryTimestamp(format!(
            "the signed entry timestamp of log index {index} does not verify with the key of log {}",
            e.log_id.key_id
        )));
    }
    let integrated_time = DateTime::<Utc>::from_timestamp(time, 0)
        .ok_or_else(|| tlog_err(format!("integrated time {time} out of range")))?;
    if !log.valid_for.contains(integrated_time) {
        return Err(KeylessError::UnknownLog(format!(
            "the key of log {} is trusted {}, not at the entry's integrated time {}",
            e.log_id.key_id,
            log.valid_for,
            integrated_time.to_rfc3339()
        )));
    }

    check_body(&e.kind_version, &body, logged, leaf)?;

    let inclusion_proof = match &e.inclusion_proof {
        Some(p) => {
            verify_inclusion(p, &body, log, &e.log_id.key_id)?;
            true
        }
        None if proof_required => {
            return Err(KeylessError::InclusionProof(
                "the log entry has no inclusion proof (required from bundle v0.2 on)".into(),
            ))
        }
        None => false,
    };
    Ok(VerifiedEntry {
        log_index: index,
        integrated_time,
        log_url: log.base_url.clone(),
        inclusion_proof,
    })
}

fn verify_inclusion(
    p: &InclusionProof,
    body: &[u8],
    log: &LogKey,
    log_name: &str,
) -> Result<(), KeylessError> {
    let bad = |m: String| KeylessError::InclusionProof(m);
    let (Int(index), Int(size)) = (p.log_index, p.tree_size);
    let (Ok(index), Ok(size)) = (u64::try_from(index), u64::try_from(size)) else {
        return Err(bad(format!("negative index {index} or tree size {size}")));
    };
    if p.hashes.len() > MAX_PROOF_HASHES {
        return Err(bad(format!(
            "{} audit path hashes, more than {MAX_PROOF_HASHES}",
            p.hashes.len()
        )));
    }
    let root: [u8; 32] = b64(&p.root_hash, "rootHash")
        .map_err(bad)?
        .try_into()
        .map_err(|_| bad("rootHash is not 32 bytes".into()))?;
    let path = p
        .hashes
        .iter()
        .map(|h| {
            b64(h, "audit path hash")?
                .try_into()
                .map_err(|_| "audit path hash is not 32 bytes".to_string())
        })
        .collect::<Result<Vec<[u8; 32]>, _>>()
        .map_err(bad)?;
    let computed = merkle_root(index, size, &leaf_hash(body), &path).map_err(bad)?;
    if computed != root {
        return Err(bad(format!(
            "the audit path of index {index} in a tree of {size} leads to root {}, not to the proof's root hash {}",
            B64.encode(computed),
            p.root_hash
        )));
    }
    let cp = p.checkpoint.as_ref().ok_or_else(|| {
        KeylessError::Checkpoint("the inclusion proof has no signed checkpoint".into())
    })?;
    let note = verify_checkpoint(&cp.envelope, log, log_name)?;
    if note.size != size || note.root != root {
        return Err(KeylessError::Checkpoint(format!(
            "the checkpoint signs tree size {} with root {}, the inclusion proof is for size {size} with root {}",
            note.size,
            B64.encode(note.root),
            p.root_hash
        )));
    }
    Ok(())
}

/// RFC 6962 leaf hash: SHA-256(0x00 || leaf).
pub(super) fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

fn node_hash(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// The root an audit path leads to (RFC 9162 section 2.1.3.2).
pub(super) fn merkle_root(
    index: u64,
    size: u64,
    leaf: &[u8; 32],
    path: &[[u8; 32]],
) -> Result<[u8; 32], String> {
    if index >= size {
        return Err(format!("index {index} is not below the tree size {size}"));
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return Err("the audit path is longer than the tree is deep".into());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err("the audit path is shorter than the tree is deep".into());
    }
    Ok(r)
}

struct Note {
    size: u64,
    root: [u8; 32],
}

/// Verifies a checkpoint (signed note: origin, tree size, root hash, optional extra lines, a
/// blank line, then `— <name> <base64(4-byte key hint || signature)>` lines) with the log key.
fn verify_checkpoint(envelope: &str, log: &LogKey, log_name: &str) -> Result<Note, KeylessError> {
    let bad = |m: String| KeylessError::Checkpoint(m);
    let (text, sigs) = envelope
        .split_once("\n\n")
        .ok_or_else(|| bad("not a signed note (no blank line before the signatures)".into()))?;
    let signed = format!("{text}\n");
    let mut lines = text.split('\n');
    let origin = lines.next().unwrap_or_default();
    if origin.is_empty() {
        return Err(bad("the checkpoint has no origin line".into()));
    }
    let size: u64 = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| bad("the checkpoint's second line is not a tree size".into()))?;
    let root: [u8; 32] = lines
        .next()
        .and_then(|l| B64.decode(l).ok())
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            bad("the checkpoint's third line is not a base64 SHA-256 root hash".into())
        })?;
    let hint = log.note_hint();
    let mut matched = 0;
    for line in sigs
        .lines()
        .filter(|l| !l.is_empty())
        .take(MAX_NOTE_SIGNATURES)
    {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return Err(bad(format!("malformed signature line {line:?}")));
        };
        let Some((_name, sig_b64)) = rest.rsplit_once(' ') else {
            return Err(bad(format!("malformed signature line {line:?}")));
        };
        let Ok(raw) = B64.decode(sig_b64) else {
            return Err(bad("a signature line is not base64".into()));
        };
        if raw.len() < 5 || raw[..4] != hint {
            continue;
        }
        matched += 1;
        if log.verify(signed.as_bytes(), &raw[4..]) {
            return Ok(Note { size, root });
        }
    }
    Err(bad(if matched == 0 {
        format!("no checkpoint signature by the key of log {log_name} (origin {origin:?})")
    } else {
        format!("the checkpoint signature does not verify with the key of log {log_name} (origin {origin:?})")
    }))
}

// -------------------------------------------------------------------------------------------------
// Entry bodies

#[derive(Deserialize)]
struct Body {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    spec: serde_json::Value,
}

fn mismatch(m: impl Into<String>) -> KeylessError {
    KeylessError::LogEntryMismatch(m.into())
}

fn str_at<'a>(v: &'a serde_json::Value, ptr: &str) -> Result<&'a str, KeylessError> {
    v.pointer(ptr)
        .and_then(|s| s.as_str())
        .ok_or_else(|| mismatch(format!("the log entry body has no {ptr}")))
}

/// The certificate a body records (base64 of a PEM certificate) must be the bundle's leaf.
fn same_cert(b64_pem: &str, leaf: &CertificateDer<'_>) -> Result<(), KeylessError> {
    use rustls_pki_types::pem::PemObject as _;
    let pem = B64
        .decode(b64_pem.trim())
        .map_err(|_| mismatch("the log entry's certificate is not base64"))?;
    let der = CertificateDer::from_pem_slice(&pem)
        .map_err(|_| mismatch("the log entry's verifier is not a PEM certificate"))?;
    if der.as_ref() != leaf.as_ref() {
        return Err(mismatch(
            "the log entry records another signing certificate than the bundle's",
        ));
    }
    Ok(())
}

fn check_body(
    kv: &KindVersion,
    body: &[u8],
    logged: &Logged<'_>,
    leaf: &CertificateDer<'_>,
) -> Result<(), KeylessError> {
    let b: Body = serde_json::from_slice(body)
        .map_err(|e| mismatch(format!("the log entry body is not a Rekor entry: {e}")))?;
    if b.kind != kv.kind || b.api_version != kv.version {
        return Err(mismatch(format!(
            "the body is {} {}, the bundle says {} {}",
            b.kind, b.api_version, kv.kind, kv.version
        )));
    }
    let s = &b.spec;
    match (b.kind.as_str(), b.api_version.as_str(), logged) {
        ("hashedrekord", "0.0.1", Logged::Message { digest, signature }) => {
            if str_at(s, "/data/hash/algorithm")? != "sha256"
                || str_at(s, "/data/hash/value")? != hex(digest)
            {
                return Err(mismatch("the log entry records another artifact digest"));
            }
            let sig = B64
                .decode(str_at(s, "/signature/content")?)
                .map_err(|_| mismatch("the log entry's signature is not base64"))?;
            if sig != *signature {
                return Err(mismatch("the log entry records another signature"));
            }
            same_cert(str_at(s, "/signature/publicKey/content")?, leaf)
        }
        (
            "dsse",
            "0.0.1",
            Logged::Dsse {
                payload,
                signatures,
                ..
            },
        ) => {
            if str_at(s, "/payloadHash/algorithm")? != "sha256"
                || str_at(s, "/payloadHash/value")? != hex(&Sha256::digest(payload))
            {
                return Err(mismatch("the log entry records another DSSE payload"));
            }
            let logged_sigs = s
                .pointer("/signatures")
                .and_then(|v| v.as_array())
                .ok_or_else(|| mismatch("the log entry body has no /signatures"))?;
            if logged_sigs.len() != signatures.len() {
                return Err(mismatch("the log entry records other DSSE signatures"));
            }
            for (l, mine) in logged_sigs.iter().zip(signatures.iter()) {
                if str_at(l, "/signature")?.trim() != mine.trim() {
                    return Err(mismatch("the log entry records another DSSE signature"));
                }
                same_cert(str_at(l, "/verifier")?, leaf)?;
            }
            Ok(())
        }
        (
            "intoto",
            "0.0.2",
            Logged::Dsse {
                payload_b64,
                payload,
                signatures,
            },
        ) => {
            // intoto 0.0.2 stores the envelope with its payload and signatures base64-encoded
            // once more.
            if str_at(s, "/content/payloadHash/algorithm")? != "sha256"
                || str_at(s, "/content/payloadHash/value")? != hex(&Sha256::digest(payload))
            {
                return Err(mismatch("the log entry records another in-toto payload"));
            }
            let p = B64
                .decode(str_at(s, "/content/envelope/payload")?)
                .map_err(|_| mismatch("the log entry's payload is not base64"))?;
            if p != payload_b64.trim().as_bytes() {
                return Err(mismatch("the log entry records another in-toto payload"));
            }
            let logged_sigs = s
                .pointer("/content/envelope/signatures")
                .and_then(|v| v.as_array())
                .ok_or_else(|| mismatch("the log entry body has no envelope signatures"))?;
            if logged_sigs.len() != signatures.len() {
                return Err(mismatch("the log entry records other DSSE signatures"));
            }
            for (l, mine) in logged_sigs.iter().zip(signatures.iter()) {
                let sig = B64
                    .decode(str_at(l, "/sig")?)
                    .map_err(|_| mismatch("the log entry's signature is not base64"))?;
                if sig != mine.trim().as_bytes() {
                    return Err(mismatch("the log entry records another DSSE signature"));
                }
                same_cert(str_at(l, "/publicKey")?, leaf)?;
            }
            Ok(())
        }
        (kind, version, _) => Err(KeylessError::Unsupported(format!(
            "Rekor entry kind {kind} {version} for this bundle content (supported: hashedrekord 0.0.1 for message signatures, dsse 0.0.1 and intoto 0.0.2 for DSSE envelopes)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u8) -> [u8; 32] {
        leaf_hash(&[i])
    }

    /// The RFC 6962 tree hash of leaves `lo..hi`, computed directly.
    fn mth(lo: u8, hi: u8) -> [u8; 32] {
        let n = hi - lo;
        if n == 1 {
            return h(lo);
        }
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        node_hash(&mth(lo, lo + k), &mth(lo + k, hi))
    }

    #[test]
    fn audit_paths_of_a_seven_leaf_tree() {
        // RFC 9162 figure: tree of 7 leaves, inclusion of leaf 3 (d) is [c, ab, efg].
        let path = [h(2), mth(0, 2), mth(4, 7)];
        assert_eq!(merkle_root(3, 7, &h(3), &path), Ok(mth(0, 7)));
        // Leaf 6 (g): [ef, abcd].
        assert_eq!(
            merkle_root(6, 7, &h(6), &[mth(4, 6), mth(0, 4)]),
            Ok(mth(0, 7))
        );
        assert_ne!(merkle_root(3, 7, &h(4), &path), Ok(mth(0, 7)));
        assert!(merkle_root(7, 7, &h(3), &path).is_err());
        assert!(merkle_root(3, 7, &h(3), &path[..2]).is_err());
        assert_eq!(merkle_root(0, 1, &h(0), &[]), Ok(h(0)));
    }
}
