//! Bus messages as a grabber decodes them (`deploy::BusMessage::from_json`):
//! anything published on the channel is an error to log or a message,
//! never a panic; a message decoded and sent on again reads back the same;
//! its target's filter answers for any host.
#![no_main]

use deploy::{BusMessage, Cluster, HostName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(message) = BusMessage::from_json(text) else {
        return;
    };
    let json = serde_json::to_string(&message).expect("a message serializes");
    let back = BusMessage::from_json(&json)
        .unwrap_or_else(|e| panic!("a message sent on does not decode ({e}): {json}"));
    assert_eq!(back, message, "{json}");
    let target = match &message {
        BusMessage::Deploy(m) => &m.target,
        BusMessage::ReleasePhase(m) => &m.target,
        BusMessage::Logs(m) => &m.target,
        BusMessage::Sync | BusMessage::Unknown => return,
    };
    let cluster = Cluster::parse("local").expect("cluster");
    for host in ["web-1", "local-1", "a"] {
        let host = HostName::parse(host).expect("host");
        let _ = target.selects(&cluster, &host);
        let _ = target.selects(&target.cluster, &host);
    }
    if let Some(only) = &target.only {
        for host in only.iter().take(8) {
            let _ = target.selects(&target.cluster, host);
        }
    }
});
