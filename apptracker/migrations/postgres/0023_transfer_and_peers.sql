-- Issue 21: hosts reuse the files of earlier releases and fetch only what
-- changed, from the origin or from other hosts of the cluster (peers).
-- `deploy_hosts`: how the host got the release, as its grabber reported
-- with the `extracting` event (`HostEvent.transfer`); NULL until then and
-- for older grabbers. `hosts`: the host's peer listener as its last
-- heartbeat advertised it (`https://addr:port` and the sha256 of its
-- certificate), NULL when it serves no peers. Keep migrations/sqlite and
-- migrations/postgres in step.

ALTER TABLE deploy_hosts ADD COLUMN bytes_downloaded BIGINT;
ALTER TABLE deploy_hosts ADD COLUMN bytes_from_peers BIGINT;
ALTER TABLE deploy_hosts ADD COLUMN bytes_reused BIGINT;
ALTER TABLE hosts ADD COLUMN peer_url TEXT;
ALTER TABLE hosts ADD COLUMN peer_fingerprint TEXT;
