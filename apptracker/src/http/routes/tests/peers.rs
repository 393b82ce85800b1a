//! Peers: a heartbeat's peer listener is checked and stored, its answer
//! names the ticket key, and `Tracker::peers_for` hands out the deploy's
//! other hosts that hold the release, spread, with a ticket that verifies.

use deploy::{DeployAction, DeployStatus, Heartbeat, HostEvent, HostPhase, PeerEndpoint};

use super::transfer::agent;
use super::{Api, PROD, app, host, refused};
use crate::tracker::Error;

fn endpoint(n: u8) -> PeerEndpoint {
    PeerEndpoint {
        url: format!("https://10.0.0.{n}:7443"),
        fingerprint: format!("{n:02x}").repeat(32),
    }
}

fn heartbeat(name: &str, peer: Option<PeerEndpoint>) -> Heartbeat {
    Heartbeat {
        cluster: PROD.clone(),
        host: host(name),
        root: "/srv".into(),
        apps: vec![],
        peer,
    }
}

async fn peers_are_advertised_checked_and_spread(api: &Api) {
    let agent = agent(api).await;
    // Malformed endpoints are refused, with the reason.
    for (url, fingerprint, says) in [
        ("http://10.0.0.1:7443", "ab", "https"),
        ("https://10.0.0.1", &"ab".repeat(32), "port"),
        ("https://10.0.0.1:7443/files", &"ab".repeat(32), "only"),
        ("not a url", &"ab".repeat(32), "not a URL"),
        (
            "https://10.0.0.1:7443",
            &"AB".repeat(32),
            "64 lowercase hex",
        ),
        (
            "https://10.0.0.1:7443",
            &"ab".repeat(31),
            "64 lowercase hex",
        ),
    ] {
        let peer = PeerEndpoint {
            url: url.into(),
            fingerprint: fingerprint.into(),
        };
        let (status, code, message) =
            refused(agent.heartbeat(&heartbeat("web-1", Some(peer))).await);
        assert_eq!((status, code.as_str()), (400, "invalid_input"), "{url}");
        assert!(message.contains(says), "{url}: {message}");
    }
    assert_eq!(
        api.count("hosts", "name", "web-1").await,
        0,
        "nothing stored"
    );

    // A host name works as well as an address; the answer names the key.
    let named = PeerEndpoint {
        url: "https://web-9.example:7443".into(),
        fingerprint: "0a".repeat(32),
    };
    agent
        .heartbeat(&heartbeat("web-9", Some(named)))
        .await
        .unwrap();
    let mut key = None;
    for (name, n) in [
        ("web-1", 1),
        ("web-2", 2),
        ("web-3", 3),
        ("web-4", 4),
        ("web-7", 7),
    ] {
        let answer = agent
            .heartbeat(&heartbeat(name, Some(endpoint(n))))
            .await
            .unwrap();
        key = answer.peer_ticket_key;
    }
    let key = deploy::signing::PublicKey::parse(&key.expect("a ticket key")).unwrap();
    for name in ["web-5", "web-6"] {
        agent.heartbeat(&heartbeat(name, None)).await.unwrap();
    }

    let hello = app("hello");
    api.register("hello").await;
    let names = [
        "web-1", "web-2", "web-3", "web-4", "web-5", "web-6", "web-7", "web-8",
    ];
    let hosts: Vec<_> = names.iter().map(|n| host(n)).collect();
    let id = api
        .deploy(&hello, &hosts, DeployStatus::Running, DeployAction::Deploy)
        .await;
    // Nobody holds the release yet: no peers, no ticket.
    assert_eq!(
        api.tracker.peers_for(id, &host("web-6")).await.unwrap(),
        (vec![], None)
    );
    // web-4 is still extracting, web-5 serves no peers, web-8 never
    // heartbeated: none of them is a peer.
    for (name, phases) in [
        (
            "web-1",
            &[HostPhase::Extracting, HostPhase::Switching, HostPhase::Done][..],
        ),
        ("web-2", &[HostPhase::Checking]),
        ("web-3", &[HostPhase::Switching]),
        ("web-4", &[HostPhase::Extracting]),
        ("web-5", &[HostPhase::Done]),
        ("web-7", &[HostPhase::Starting]),
        ("web-8", &[HostPhase::Done]),
    ] {
        for &phase in phases {
            let ev = HostEvent::progress(PROD.clone(), phase, phase.as_str());
            api.tracker.host_event(id, &host(name), &ev).await.unwrap();
        }
    }
    let ask = |name: &'static str| {
        let tracker = api.tracker.clone();
        async move {
            let (peers, ticket) = tracker.peers_for(id, &host(name)).await.unwrap();
            let names: Vec<String> = peers.iter().map(|p| p.host.to_string()).collect();
            (names, peers, ticket)
        }
    };
    // Least handed out first, then by name; three at most.
    let (first, peers, ticket) = ask("web-6").await;
    assert_eq!(first, ["web-1", "web-2", "web-3"]);
    assert_eq!(
        (peers[0].url.as_str(), peers[0].fingerprint.as_str()),
        ("https://10.0.0.1:7443", "01".repeat(32).as_str())
    );
    let ticket = ticket.expect("a ticket");
    let now = deploy::Timestamp::now();
    let t = deploy::peer::verify(&[key], &ticket, now).unwrap();
    assert_eq!(
        (t.cluster, t.host, t.app),
        (PROD.clone(), host("web-6"), hello.clone())
    );
    let ttl = t.expires_at.0 - now.0;
    assert!((9 * 60_000..=10 * 60_000).contains(&ttl), "{ttl}");
    assert_eq!(ask("web-6").await.0, ["web-7", "web-1", "web-2"]);
    assert_eq!(ask("web-4").await.0, ["web-3", "web-7", "web-1"]);
    // A host is never its own peer.
    assert!(!ask("web-2").await.0.contains(&"web-2".to_string()));

    // A host that stops advertising is no longer handed out.
    agent.heartbeat(&heartbeat("web-1", None)).await.unwrap();
    let (now_peers, _, _) = ask("web-6").await;
    assert!(!now_peers.contains(&"web-1".to_string()), "{now_peers:?}");

    // Strangers to the deploy, and unknown deploys, are not found.
    for (deploy, name) in [(id, "web-9"), (deploy::DeployId(id.0 + 100), "web-6")] {
        assert!(
            matches!(
                api.tracker.peers_for(deploy, &host(name)).await,
                Err(Error::NotFound(_))
            ),
            "{deploy} {name}"
        );
    }
}

on_both!(
    peers_on_sqlite,
    peers_on_postgres,
    peers_are_advertised_checked_and_spread
);
