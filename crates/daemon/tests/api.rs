//! The daemon's JSON API over its library, in process: the daemon started
//! with [`Daemon::start`] against the real emulator (also in process) with
//! real agents, driven through the typed client of `cloudshell-store-api`.
//! No binary of ours is spawned but the agents, which the daemon uploads
//! and starts in the emulated environments as it would in CloudShell.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use cloudshell::{ClientSource, Region};
use cloudshell_daemon::{Daemon, DaemonConfig};
use cloudshell_store_api::{self as wire, ChunkPage, Client, JobResult, Redundancy, ShardState};
use futures_util::StreamExt as _;

/// `cargo test --workspace` builds every package's binaries into one
/// directory: the agent sits beside this test's directory.
fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("cloudshell-agent");
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        p.display()
    );
    p
}

/// Kills every process whose working directory is under `root`: the agents
/// run detached in their environments' homes and outlive the daemon, as
/// they do in CloudShell.
struct KillAgentsUnder(PathBuf);

impl Drop for KillAgentsUnder {
    fn drop(&mut self) {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
                continue;
            };
            if cwd.starts_with(&self.0)
                && let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
            {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
    }
}

fn config(dir: &Path, regions: &[&str], agent: PathBuf) -> DaemonConfig {
    DaemonConfig {
        data_dir: dir.join("store"),
        listen: "127.0.0.1:0".parse().unwrap(),
        s3_listen: None,
        quic_listen: "127.0.0.1:0".parse().unwrap(),
        regions: regions.iter().map(|r| Region::new(*r).unwrap()).collect(),
        agent_binary: Some(agent),
        ..DaemonConfig::default()
    }
}

async fn emulator(dir: &Path) -> (cloudshell_emulator::Emulator, ClientSource) {
    let mut config = cloudshell_emulator::EmulatorConfig::new(dir.join("emulator"));
    config.timings.create = Duration::from_millis(100);
    config.timings.start = Duration::from_millis(100);
    config.timings.stop = Duration::from_millis(100);
    let emu = cloudshell_emulator::Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let cred = emu.config().credentials[0].clone();
    let source =
        ClientSource::endpoint(emu.endpoint(), &cred.access_key_id, &cred.secret_access_key);
    (emu, source)
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn put(api: &Client, name: &str, data: &[u8]) -> wire::Stored {
    let body = futures_util::stream::iter(
        data.chunks(100_000)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    api.put(name, Some(data.len() as u64), body).await.unwrap()
}

async fn get(api: &Client, name: &str, range: Option<&str>) -> (Vec<u8>, wire::Download) {
    let mut d = api.get(name, range).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = d.body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    (out, d)
}

async fn finish(api: &Client, job: wire::Job) -> wire::Job {
    for _ in 0..600 {
        let j = api.job(job.id).await.unwrap();
        if !j.running {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {} did not finish", job.id);
}

/// Requests `method path` and returns the status and body.
async fn raw(http: &reqwest::Client, base: &str, method: &str, path: &str) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = http
        .request(method, format!("{base}{path}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    // The event stream never ends: its headers are enough.
    let body = if path == "/api/events" {
        String::new()
    } else {
        r.text().await.unwrap_or_default()
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_openapi_document_matches_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    // The nodes stay down; the API answers anyway.
    let daemon = daemon_without_nodes(dir.path()).await;
    let api = Client::new(&daemon.url(), None).unwrap();

    let served: BTreeSet<String> = cloudshell_daemon::http::api::paths().into_iter().collect();
    let doc: serde_json::Value = serde_json::from_str(&api.openapi().await.unwrap()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(served, documented, "routes and the OpenAPI document differ");

    // Every documented operation reaches a handler (its own answer, not the
    // router's 404 or 405); every other method on a path is refused 405.
    let operations = cloudshell_store_api::openapi::operations();
    let http = reqwest::Client::new();
    let sample = |p: &str| {
        // A principal is one path segment; a file name may be several.
        p.replace("/api/principals/{name}", "/api/principals/p2")
            .replace("{name}", "some/file.bin")
            .replace("{file}", "some-file")
            .replace("{node}", "us-east-1")
            .replace("{id}", "us-east-1")
            .replace("{chunk}", "0")
            .replace("{index}", "0")
            .replace("/api/jobs/us-east-1", "/api/jobs/7")
            .replace("/api/s3/keys/us-east-1", "/api/s3/keys/AKIDNOSUCHKEY")
    };
    for path in &documented {
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            let (status, body) = raw(&http, &daemon.url(), method, &sample(path)).await;
            let listed = operations.contains(&(method.to_owned(), path.clone()));
            if listed {
                assert_ne!(status, 405, "{method} {path} is documented, not served");
                if status == 404 {
                    let e: wire::ErrorBody = serde_json::from_str(&body)
                        .unwrap_or_else(|_| panic!("{method} {path}: 404 without an error body"));
                    assert!(!e.error.code.is_empty());
                }
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is served, not documented: {body}"
                );
            }
        }
    }
}

/// A daemon whose nodes never come up (nothing answers at its endpoint):
/// enough for what the HTTP side decides on its own.
async fn daemon_without_nodes(dir: &Path) -> Daemon {
    let source = ClientSource::endpoint("http://127.0.0.1:9", "AKIDEXAMPLE", "secret");
    // Never uploaded (the nodes never come up): any file will do.
    let config = config(dir, &["us-east-1"], std::env::current_exe().unwrap());
    Daemon::start(config, source).await.unwrap()
}

/// A refusal of a request that carries a body closes the connection (the
/// body may be unread, and the client may or may not still send it); one
/// of a request without a body, or a success, keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_with_a_body_closes_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_without_nodes(dir.path()).await;
    let http = reqwest::Client::new();
    let closes = |r: &reqwest::Response| {
        r.headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
    };
    // Refused before its body is read: a cross-site upload.
    let r = http
        .put(format!("{}/api/files/a.bin", daemon.url()))
        .header("Sec-Fetch-Site", "cross-site")
        .body(vec![7u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(closes(&r), "{:?}", r.headers());
    // A refusal without a body, and a success with one, keep it.
    let r = http
        .get(format!("{}/api/files/missing.bin", daemon.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(!closes(&r), "{:?}", r.headers());
    let r = http
        .post(format!("{}/api/repair", daemon.url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert!(!closes(&r), "{:?}", r.headers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_web_pages_cannot_act_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_without_nodes(dir.path()).await;
    let http = reqwest::Client::new();
    let repair = format!("{}/api/repair", daemon.url());
    let own_origin = daemon.url();
    let port = own_origin.rsplit(':').next().unwrap().to_owned();
    let post = |headers: &[(&str, &str)]| {
        let mut r = http.post(&repair).body("{}");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // A form on another site posting to the daemon (a "simple" request,
    // which CORS does not stop), a fetch marked cross-site, and a
    // DNS-rebinding page (same origin as far as the browser knows, but not
    // a loopback Host).
    for (what, headers) in [
        ("form POST", vec![("Origin", "https://evil.example")]),
        ("cross-site", vec![("Sec-Fetch-Site", "cross-site")]),
        (
            "rebinding",
            vec![
                ("Host", "rebind.example:8080"),
                ("Origin", "http://rebind.example:8080"),
            ],
        ),
    ] {
        let (status, body) = post(&headers).await;
        assert_eq!(status, 403, "{what}: {body}");
        let e: wire::ErrorBody = serde_json::from_str(&body).unwrap();
        assert_eq!(e.error.code, "CrossOriginRefused", "{what}: {body}");
        if what == "rebinding" {
            // Refused for its Host, the rebinding tell, not its Origin.
            assert!(e.error.message.contains("not a loopback name"), "{body}");
        }
    }
    // The UI's own requests, and local programs, are served.
    let (status, body) = post(&[
        ("Origin", own_origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ])
    .await;
    assert_eq!(status, 202, "{body}");
    let job: wire::Job = serde_json::from_str(&body).unwrap();
    assert_eq!(job.id, 1, "the refused requests started no job: {job:?}");
    let (status, _) = post(&[("Host", &format!("localhost:{port}"))]).await;
    assert_eq!(status, 202);
    // The UI page itself opens from a link on any site.
    let r = http
        .get(format!("{}/", daemon.url()))
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_nodes_jobs_and_keys_through_the_typed_client() {
    let dir = tempfile::tempdir().unwrap();
    let _kill = KillAgentsUnder(dir.path().to_owned());
    let (_emulator, source) = emulator(dir.path()).await;
    let regions = cloudshell_daemon::config::EMULATED_REGIONS;
    let daemon = Daemon::start(config(dir.path(), regions, agent_binary()), source)
        .await
        .unwrap();
    daemon.wait_ready(Duration::from_secs(300)).await.unwrap();
    let api = Client::new(&daemon.url(), None).unwrap();

    let health = api.health().await.unwrap();
    assert!(health.ready);
    assert_eq!((health.nodes, health.connected, health.files), (9, 9, 0));

    // Files: stored in pieces, listed, read whole and in part.
    let data = pattern(3_000_000, 7);
    let stored = put(&api, "docs/a file.bin", &data).await;
    assert_eq!(stored.file.size, 3_000_000);
    assert_eq!((stored.file.k, stored.file.m), (6, 3));
    assert_eq!(stored.survivable_losses, 3);
    let listed = api.files().await.unwrap();
    assert_eq!(listed.files.len(), 1);
    assert_eq!(listed.files[0].file, stored.file);
    assert_eq!(listed.files[0].health.unwrap().state, Redundancy::Healthy);
    let names = api.file_names().await.unwrap();
    assert_eq!(names.files[0].file, stored.file);
    assert_eq!(names.files[0].health, None);
    let (whole, d) = get(&api, "docs/a file.bin", None).await;
    assert_eq!(whole, data);
    assert_eq!(d.etag, Some(format!("\"{}\"", stored.file.blake3)));
    let (part, d) = get(&api, "docs/a file.bin", Some("bytes=1000-1999")).await;
    assert_eq!((part.as_slice(), d.len), (&data[1000..2000], Some(1000)));
    assert_eq!(d.total, Some(3_000_000));
    // If-Match: the version named, or a refusal, never another's bytes.
    let etag = d.etag.clone().unwrap();
    assert!(
        api.get_version("docs/a file.bin", Some("bytes=0-9"), Some(&etag))
            .await
            .is_ok()
    );
    let e = api
        .get_version("docs/a file.bin", None, Some("\"0123\""))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(412), Some("PreconditionFailed"))
    );
    assert!(e.to_string().contains("read it again"), "{e}");

    // Renamed with no data moved; modification times kept and set.
    let b = bytes::Bytes::from_static(b"when");
    let s = api
        .put_modified(
            "t/when.txt",
            Some(4),
            futures_util::stream::iter([Ok::<_, std::io::Error>(b)]),
            Some(1_600_000_000),
        )
        .await
        .unwrap();
    assert_eq!(s.file.modified, Some(1_600_000_000));
    let moved = api.rename("t/when.txt", "t/then.txt").await.unwrap();
    assert_eq!((moved.id, moved.modified), (s.file.id, Some(1_600_000_000)));
    assert_eq!(
        api.get("t/when.txt", None).await.unwrap_err().code(),
        Some("NoSuchFile")
    );
    let touched = api.set_modified("t/then.txt", 1_700_000_000).await.unwrap();
    assert_eq!(touched.modified, Some(1_700_000_000));
    for (result, code) in [
        (api.rename("t/none", "t/x").await.map(drop), "NoSuchFile"),
        (
            api.rename("t/then.txt", "s3/b/k").await.map(drop),
            "ReservedName",
        ),
        (api.set_modified("t/none", 1).await.map(drop), "NoSuchFile"),
    ] {
        assert_eq!(result.unwrap_err().code(), Some(code));
    }
    api.delete("t/then.txt").await.unwrap();
    let e = api
        .get("docs/a file.bin", Some("bytes=5000000-"))
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(416), Some("InvalidRange")));

    // Refusals carry a code and say why.
    let e = api.get("no/such/file", None).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(404), Some("NoSuchFile")));
    let e = api
        .put("a/b\\..\\c", None, futures_util::stream::empty())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidName"));
    assert!(e.to_string().contains("backslash"), "{e}");
    // A name with a .. segment never leaves the client: a URL would lose it.
    let e = api
        .put("a/../b", None, futures_util::stream::empty())
        .await
        .unwrap_err();
    assert!(
        matches!(e, cloudshell_store_api::ClientError::InvalidName { .. }),
        "{e}"
    );
    assert!(
        api.files().await.unwrap().files.len() == 1,
        "nothing stored as b"
    );
    let e = api
        .put("s3/bucket/key", None, futures_util::stream::empty())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ReservedName"));

    // Damage shows in the shard map and the health; a repair job mends it.
    let stat = api
        .stat("docs/a file.bin", ChunkPage::default())
        .await
        .unwrap();
    assert_eq!(stat.total_chunks, stat.chunks.len());
    let victim = stat.chunks[0].shards[2].node.clone();
    api.delete_shard(&victim, "docs/a file.bin", 0, 2)
        .await
        .unwrap();
    let stat = api
        .stat("docs/a file.bin", ChunkPage::default())
        .await
        .unwrap();
    assert_eq!(stat.chunks[0].shards[2].state, ShardState::Missing);
    assert_eq!(stat.health.state, Redundancy::Degraded);
    assert_eq!(stat.health.bad_shards, 1);
    let job = api.repair().await.unwrap();
    assert_eq!(job.kind, wire::JobKind::Repair);
    let done = finish(&api, job).await;
    let Some(JobResult::Repair(r)) = done.result else {
        panic!("a repair job without a repair's result: {done:?}");
    };
    assert_eq!((r.files, r.shards_rebuilt, r.failed.len()), (1, 1, 0));
    let stat = api
        .stat("docs/a file.bin", ChunkPage::default())
        .await
        .unwrap();
    assert_eq!(stat.health.state, Redundancy::Healthy);
    assert_eq!(stat.chunks[0].shards[2].state, ShardState::Ok);

    // A node taken offline: its shards unavailable, the file degraded;
    // back online, healthy again.
    let node = api.set_online(&victim, false).await.unwrap().node;
    assert_eq!(node.state, wire::NodeState::Offline);
    let stat = api
        .stat("docs/a file.bin", ChunkPage::default())
        .await
        .unwrap();
    assert_eq!(stat.health.state, Redundancy::Degraded);
    assert_eq!(stat.health.survives, 2);
    let node = api.set_online(&victim, true).await.unwrap().node;
    assert_eq!(node.state, wire::NodeState::Connected);
    let listed = api.files().await.unwrap();
    assert_eq!(listed.files[0].health.unwrap().state, Redundancy::Healthy);

    // Quotas: set, shown, lifted; nonsense refused; unknown nodes named.
    let node = api.set_quota("us-east-1", Some("200M")).await.unwrap().node;
    assert_eq!(node.store_quota, Some(200 << 20));
    let node = api.set_quota("us-east-1", None).await.unwrap().node;
    assert_eq!(node.store_quota, None);
    let e = api.set_quota("us-east-1", Some("lots")).await.unwrap_err();
    assert_eq!(e.code(), Some("InvalidQuota"));
    let e = api.set_quota("mars-north-1", Some("1G")).await.unwrap_err();
    assert_eq!(e.code(), Some("NoSuchNode"));
    let e = api.add_region("US East", None).await.unwrap_err();
    assert_eq!(e.code(), Some("InvalidRegion"));
    let e = api.add_region("us-east-1", None).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(409), Some("RegionExists")));
    // A principal the daemon was not given has no credentials to use.
    let e = api
        .add_region("sa-east-1", Some("nobody"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(400), Some("InvalidPrincipal"))
    );
    assert!(e.to_string().contains("--principal"), "{e}");
    assert_eq!(api.nodes().await.unwrap().nodes.len(), 9);

    // A scrub pass finds everything in place.
    let before = api.scrub_status().await.unwrap();
    api.scrub_start().await.unwrap();
    let mut scrub = before.clone();
    for _ in 0..600 {
        scrub = api.scrub_status().await.unwrap();
        if !scrub.running && scrub.last_finished != before.last_finished {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(
        scrub.last_finished, before.last_finished,
        "no scrub pass ended"
    );
    assert_eq!((scrub.files, scrub.missing, scrub.corrupt), (1, 0, 0));
    assert_eq!(scrub.shards_checked, 9 * stat.total_chunks);

    // S3 keys: the secret once, the list without it.
    let key = api.create_key(None).await.unwrap().key;
    let keys = api.keys().await.unwrap();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].access_key_id, key.access_key_id);
    assert_eq!(keys.endpoint, None);
    api.delete_key(&key.access_key_id).await.unwrap();
    let e = api.delete_key(&key.access_key_id).await.unwrap_err();
    assert_eq!(e.code(), Some("NoSuchKey"));

    // The store's key file is replaced by a new key; the file reads on.
    let key_file = dir.path().join("store").join("store.key");
    let before = std::fs::read(&key_file).unwrap();
    let e = api
        .change_key(&wire::KeyChange {
            old_passphrase: Some("x".into()),
            new_passphrase: Some("y".into()),
            new_key_file: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(400), Some("InvalidKeyChange"))
    );
    assert!(e.to_string().contains("change its key file instead"), "{e}");
    let changed = api
        .change_key(&wire::KeyChange {
            new_key_file: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(changed.rewrapped, 1);
    assert_ne!(std::fs::read(&key_file).unwrap(), before);
    assert!(!key_file.with_extension("key.new").exists());
    assert_eq!(
        get(&api, "docs/a file.bin", None).await.0.len(),
        stat.file.size as usize
    );

    // Deleted: gone from the list, the index backup caught up.
    api.delete("docs/a file.bin").await.unwrap();
    assert!(api.files().await.unwrap().files.is_empty());
    let e = api.delete("docs/a file.bin").await.unwrap_err();
    assert_eq!(e.code(), Some("NoSuchFile"));
    for _ in 0..100 {
        let b = api.health().await.unwrap().index_backup;
        if !b.pending && b.generation.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the index was not backed up after the changes");
}
