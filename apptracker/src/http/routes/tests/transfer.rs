//! How a host got a release (`HostEvent.transfer`) lands on its row of the
//! deploy and shows in `GET /api/v1/deploys/{id}`.

use deploy::{Client, DeployAction, DeployStatus, HostEvent, HostName, HostPhase, Transfer};

use super::{Api, PROD, app, host, refused};

/// A client holding an agent token of `prod`.
pub(super) async fn agent(api: &Api) -> Client {
    let token = api
        .tracker
        .create_token("test-agent", "agent", Some(&PROD))
        .await
        .expect("agent token");
    Client::new(api.viewer.base_url().to_string()).with_token(token)
}

async fn transfer_is_recorded_on_the_host_row(api: &Api) {
    let hello = app("hello");
    api.register("hello").await;
    let (web1, web2) = (host("web-1"), host("web-2"));
    let id = api
        .deploy(
            &hello,
            &[web1.clone(), web2.clone()],
            DeployStatus::Running,
            DeployAction::Deploy,
        )
        .await;
    let agent = agent(api).await;
    let transfer = Transfer {
        bytes_downloaded: 12_300,
        bytes_from_peers: 4_000,
        bytes_reused: 21_900_000,
    };
    let extracting = HostEvent {
        transfer: Some(transfer),
        ..HostEvent::progress(PROD.clone(), HostPhase::Extracting, "extracting")
    };
    let mut live = api.tracker.bus().events();
    let row = agent.host_event(id, &web1, &extracting).await.unwrap();
    assert_eq!(row.transfer, Some(transfer));
    // The stream's host event carries it too (flattened, as on the wire).
    let event = loop {
        match live.recv().await.expect("an event") {
            crate::bus::Live::Event(e @ deploy::DeployEvent::Host { .. }) => break e,
            _ => continue,
        }
    };
    let wire = serde_json::to_value(&event).unwrap();
    assert_eq!(wire["kind"], "host");
    assert_eq!(wire["transfer"]["bytes_from_peers"], 4_000);

    let hosts = api.viewer.deploy(id).await.unwrap().hosts;
    let of = |h: &HostName| hosts.iter().find(|r| &r.host == h).map(|r| r.transfer);
    assert_eq!((of(&web1), of(&web2)), (Some(Some(transfer)), Some(None)));
    let json: serde_json::Value = api
        .viewer
        .http()
        .get(format!("{}/api/v1/deploys/{id}", api.viewer.base_url()))
        .bearer_auth(super::token_of(api, "viewer").await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hosts = json["hosts"].as_array().expect("hosts");
    assert_eq!(hosts[0]["transfer"]["bytes_reused"], 21_900_000);
    assert!(hosts[1].get("transfer").is_none(), "absent, not null");

    // Later events without a transfer keep it.
    for phase in [HostPhase::Switching, HostPhase::Done] {
        let ev = HostEvent::progress(PROD.clone(), phase, phase.as_str());
        let row = agent.host_event(id, &web1, &ev).await.unwrap();
        assert_eq!((row.phase, row.transfer), (phase, Some(transfer)));
    }
    // A terminal host's row changes no more, transfer or not.
    let late = HostEvent {
        transfer: Some(Transfer::default()),
        ..HostEvent::progress(PROD.clone(), HostPhase::Extracting, "again")
    };
    let row = agent.host_event(id, &web1, &late).await.unwrap();
    assert_eq!((row.phase, row.transfer), (HostPhase::Done, Some(transfer)));

    // Numbers that disagree are refused and change nothing.
    let bad = HostEvent {
        transfer: Some(Transfer {
            bytes_downloaded: 1,
            bytes_from_peers: 2,
            bytes_reused: 0,
        }),
        ..HostEvent::progress(PROD.clone(), HostPhase::Extracting, "extracting")
    };
    let (status, code, message) = refused(agent.host_event(id, &web2, &bad).await);
    assert_eq!((status, code.as_str()), (400, "invalid_input"), "{message}");
    assert!(message.contains("bytes_from_peers"), "{message}");
    let web2_row = api.viewer.deploy(id).await.unwrap().hosts[1].clone();
    assert_eq!(
        (web2_row.phase, web2_row.transfer),
        (HostPhase::Pending, None)
    );
}

on_both!(
    transfer_on_sqlite,
    transfer_on_postgres,
    transfer_is_recorded_on_the_host_row
);
