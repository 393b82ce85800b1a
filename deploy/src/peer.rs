//! Peer tickets: AppTracker's signed word that a host may read one app's
//! release files from the other hosts of its cluster for a while. A
//! fetching grabber sends one (`Authorization: Slipway-Peer <ticket>`); the
//! serving grabber checks it with the key AppTracker's heartbeat answer
//! names (`Host.peer_ticket_key`).
//!
//! Text form: `<base64url of the ticket's JSON>.<base64url of the ed25519
//! signature>` (no padding), the signature covering the JSON's bytes behind
//! the domain prefix `slipway-peer-ticket-v1\n`, so no other signature of
//! the same key (an artifact's, an index's) can stand for a ticket.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};

use crate::signing::{PublicKey, Signature, SigningKey, verify_message};
use crate::{AppName, Cluster, HostName, Timestamp};

/// What a ticket's signature starts with.
pub const TICKET_DOMAIN: &str = "slipway-peer-ticket-v1\n";
/// The longest ticket text read: a ticket is a few hundred bytes.
const MAX_TICKET_CHARS: usize = 4096;

/// Who may read what, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerTicket {
    pub cluster: Cluster,
    /// The host allowed to fetch (its peer checks it is of `cluster`).
    pub host: HostName,
    /// The app whose release files it may read.
    pub app: AppName,
    /// Refused from then on.
    pub expires_at: Timestamp,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("malformed peer ticket: {0}")]
    Malformed(String),
    #[error("the peer ticket expired at {0}")]
    Expired(Timestamp),
    #[error("the peer ticket is not signed by a trusted key")]
    BadSignature,
    #[error("no peer ticket key is known: no ticket can be checked")]
    NoKeys,
}

/// The ticket's text form, signed with `key`.
pub fn mint(key: &SigningKey, ticket: &PeerTicket) -> String {
    // A struct of newtypes and an integer always serialises.
    let json = serde_json::to_vec(ticket).unwrap_or_default();
    let signature = key.sign_message(TICKET_DOMAIN, &json);
    format!(
        "{}.{}",
        B64URL.encode(&json),
        B64URL.encode(signature.to_bytes())
    )
}

/// The ticket in `text`, if one of `keys` signed it and it has not expired
/// at `now`. The signature is checked before the JSON is read.
pub fn verify(keys: &[PublicKey], text: &str, now: Timestamp) -> Result<PeerTicket, TicketError> {
    if keys.is_empty() {
        return Err(TicketError::NoKeys);
    }
    let malformed = |why: &str| TicketError::Malformed(why.to_string());
    let text = text.trim();
    if text.len() > MAX_TICKET_CHARS {
        return Err(malformed("too long"));
    }
    let (body, signature) = text
        .split_once('.')
        .ok_or_else(|| malformed("expected `<ticket>.<signature>`"))?;
    let json = B64URL
        .decode(body)
        .map_err(|e| TicketError::Malformed(format!("ticket not base64url: {e}")))?;
    let signature = B64URL
        .decode(signature)
        .map_err(|e| TicketError::Malformed(format!("signature not base64url: {e}")))?;
    let signature =
        Signature::from_bytes(&signature).map_err(|e| TicketError::Malformed(e.to_string()))?;
    if !verify_message(keys, TICKET_DOMAIN, &json, &signature) {
        return Err(TicketError::BadSignature);
    }
    let ticket: PeerTicket = serde_json::from_slice(&json)
        .map_err(|e| TicketError::Malformed(format!("ticket not JSON: {e}")))?;
    if ticket.expires_at <= now {
        return Err(TicketError::Expired(ticket.expires_at));
    }
    Ok(ticket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(expires_at: i64) -> PeerTicket {
        PeerTicket {
            cluster: Cluster::parse("prod").unwrap(),
            host: HostName::parse("web-2").unwrap(),
            app: AppName::parse("hello").unwrap(),
            expires_at: Timestamp(expires_at),
        }
    }

    #[test]
    fn a_ticket_verifies_with_its_key_until_it_expires() {
        let key = SigningKey::generate().unwrap();
        let text = mint(&key, &ticket(2_000));
        assert!(!text.contains('='), "no padding: {text}");
        let keys = [key.public_key()];
        assert_eq!(verify(&keys, &text, Timestamp(1_999)), Ok(ticket(2_000)));
        assert_eq!(
            verify(&keys, &text, Timestamp(2_000)),
            Err(TicketError::Expired(Timestamp(2_000)))
        );
        assert_eq!(verify(&[], &text, Timestamp(0)), Err(TicketError::NoKeys));
    }

    #[test]
    fn tampered_and_foreign_tickets_are_refused() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let text = mint(&key, &ticket(2_000));
        let now = Timestamp(1_000);
        // Another key's ticket, or ours checked against another key.
        assert_eq!(
            verify(&[key.public_key()], &mint(&other, &ticket(2_000)), now),
            Err(TicketError::BadSignature)
        );
        assert_eq!(
            verify(&[other.public_key()], &text, now),
            Err(TicketError::BadSignature)
        );
        // Either key of a list will do.
        assert!(verify(&[other.public_key(), key.public_key()], &text, now).is_ok());
        // A body changed (a later expiry, another app) under the same signature.
        let (_, signature) = text.split_once('.').unwrap();
        let longer = serde_json::to_vec(&ticket(9_000)).unwrap();
        let forged = format!("{}.{signature}", B64URL.encode(longer));
        assert_eq!(
            verify(&[key.public_key()], &forged, now),
            Err(TicketError::BadSignature)
        );
        // The same bytes signed as something else (no domain) do not pass.
        let json = serde_json::to_vec(&ticket(2_000)).unwrap();
        let undomained = key.sign_message("", &json);
        let forged = format!(
            "{}.{}",
            B64URL.encode(&json),
            B64URL.encode(undomained.to_bytes())
        );
        assert_eq!(
            verify(&[key.public_key()], &forged, now),
            Err(TicketError::BadSignature)
        );
        for bad in ["", "abc", "abc.def", "!!.!!", &"a".repeat(5000)] {
            assert!(
                matches!(
                    verify(&[key.public_key()], bad, now),
                    Err(TicketError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }
}
