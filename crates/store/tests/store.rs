//! The store over nine local-directory nodes in nine regions: round trips,
//! every loss pattern, corruption, keys, repair, deletion, failed writes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod common;
use common::data;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloudshell_store::ShardStore as _;
use cloudshell_store::{
    FileId, KdfParams, KeyError, KeySource, LocalDirStore, Node, Store, StoreError, StoreSettings,
};

/// Argon2id made cheap for tests; the parameters are stored with the store either way.
fn fast_kdf() -> Option<KdfParams> {
    Some(KdfParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    })
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
}

fn node_dir(root: &Path, i: usize) -> PathBuf {
    root.join(format!("node{i}"))
}

/// How many shards a node's directory holds (one subdirectory level).
fn shards_in(node: &Path) -> usize {
    std::fs::read_dir(node)
        .map(|d| {
            d.map(|e| std::fs::read_dir(e.unwrap().path()).unwrap().count())
                .sum::<usize>()
        })
        .unwrap_or(0)
}

/// A store without encryption over `n` fresh nodes, 4 KiB chunks.
fn unencrypted(root: &Path, n: usize) -> Store {
    Store::open(
        &root.join("index.redb"),
        &KeySource::NoEncryption,
        nodes(root, n, 1 << 40),
        settings(4096),
    )
    .unwrap()
}

fn nodes(root: &Path, n: usize, quota: u64) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let shards = LocalDirStore::open(node_dir(root, i), quota).unwrap();
            Node::new(format!("node{i}"), format!("region{i}"), Arc::new(shards))
        })
        .collect()
}

fn settings(chunk_size: u32) -> StoreSettings {
    StoreSettings {
        chunk_size,
        kdf: fast_kdf(),
        ..StoreSettings::default()
    }
}

fn fixture(key: KeySource, chunk_size: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("index.redb"),
        &key,
        nodes(dir.path(), 9, 1 << 40),
        settings(chunk_size),
    )
    .unwrap();
    Fixture { dir, store }
}

/// The store in `root` (index and nine nodes), opened with a passphrase.
fn open_with_passphrase(root: &Path, passphrase: &str) -> Result<Store, StoreError> {
    Store::open(
        &root.join("index.redb"),
        &KeySource::Passphrase(passphrase.into()),
        nodes(root, 9, 1 << 40),
        settings(4096),
    )
}

async fn get(store: &Store, name: &str) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    store.get(name, &mut out).await?;
    Ok(out)
}

/// Every shard file under the nodes, sorted.
fn shard_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for i in 0..9 {
        let Ok(dirs) = std::fs::read_dir(node_dir(root, i)) else {
            continue;
        };
        for d in dirs {
            for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
                out.push(f.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn sizes_round_trip_encrypted_and_not() {
    let chunk = 64 * 1024;
    for key in [KeySource::Passphrase("pw".into()), KeySource::NoEncryption] {
        let f = fixture(key, chunk);
        for size in [
            0,
            1,
            chunk as usize - 1,
            chunk as usize,
            chunk as usize + 1,
            3 * chunk as usize + 17,
        ] {
            let d = data(size, size as u64);
            let report = f.store.put("f", &d[..]).await.unwrap();
            assert_eq!(report.record.size, size as u64);
            assert_eq!(report.survivable_losses.min(3), 3);
            assert_eq!(get(&f.store, "f").await.unwrap(), d, "size {size}");
        }
    }
}

#[tokio::test]
async fn ranges_read_only_what_they_cover_at_every_chunk_boundary() {
    let chunk = 4096u64;
    let f = fixture(KeySource::Passphrase("pw".into()), chunk as u32);
    let d = data(3 * chunk as usize + 100, 7);
    f.store.put("f", &d[..]).await.unwrap();
    let len = d.len() as u64;
    for (start, end) in [
        (0, 0),
        (0, 1),
        (0, len),
        (1, chunk),
        (chunk - 1, chunk + 1),
        (chunk, 2 * chunk),
        (2 * chunk + 5, len),
        (3 * chunk, len),
        (len - 1, len),
        (len, len),
        (10, len + 1000),
        (len + 5, len + 10),
    ] {
        let mut out = Vec::new();
        let n = f.store.get_range("f", start..end, &mut out).await.unwrap();
        let (s, e) = (start.min(len) as usize, end.min(len) as usize);
        let s = s.min(e);
        assert_eq!(out, &d[s..e], "{start}..{end}");
        assert_eq!(n, (e - s) as u64);
    }
    // Only the chunks a range covers are read: with every shard of chunk
    // 0 gone, a range in chunk 1 still reads and the whole file does not.
    let (record, manifest) = f.store.index().file("f").unwrap().unwrap();
    for (i, loc) in manifest.chunks[0].shards.iter().enumerate() {
        let node = f
            .store
            .nodes()
            .into_iter()
            .find(|n| n.id == loc.node)
            .unwrap();
        let key = cloudshell_store::ShardKey {
            file_id: record.file_id,
            chunk: 0,
            index: i as u8,
        };
        node.shards.delete(key).await.unwrap();
    }
    assert!(get(&f.store, "f").await.is_err());
    let mut out = Vec::new();
    f.store
        .get_range("f", chunk + 10..chunk + 20, &mut out)
        .await
        .unwrap();
    assert_eq!(out, &d[chunk as usize + 10..chunk as usize + 20]);
}

#[tokio::test]
async fn a_100_mib_file_round_trips_with_the_default_chunk() {
    let f = fixture(
        KeySource::Passphrase("pw".into()),
        cloudshell_store::DEFAULT_CHUNK_SIZE,
    );
    let d = data(100 << 20, 7);
    f.store.put("big", &d[..]).await.unwrap();
    assert!(get(&f.store, "big").await.unwrap() == d, "100 MiB differ");
}

#[tokio::test]
async fn every_way_of_losing_three_nodes_reads_and_four_is_unrecoverable() {
    let f = fixture(KeySource::Passphrase("pw".into()), 4096);
    let d = data(4000, 1);
    f.store.put("one-chunk", &d[..]).await.unwrap();
    let nodes = f.store.nodes();
    let mut ways = 0;
    for a in 0..9 {
        for b in a + 1..9 {
            for c in b + 1..9 {
                for n in [a, b, c] {
                    nodes[n].set_online(false);
                }
                assert_eq!(
                    get(&f.store, "one-chunk").await.unwrap(),
                    d,
                    "lost {a} {b} {c}"
                );
                for n in [a, b, c] {
                    nodes[n].set_online(true);
                }
                ways += 1;
            }
        }
    }
    assert_eq!(ways, 84);
    for n in &nodes[..4] {
        n.set_online(false);
    }
    match get(&f.store, "one-chunk").await {
        Err(StoreError::Unrecoverable {
            name,
            chunk,
            have,
            k,
        }) => {
            assert_eq!((name.as_str(), chunk, have, k), ("one-chunk", 0, 5, 6));
        }
        other => panic!("expected unrecoverable, got {other:?}"),
    }
    let msg = get(&f.store, "one-chunk").await.unwrap_err().to_string();
    assert!(
        msg.contains("one-chunk") && msg.contains("chunk 0"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_flipped_bit_in_any_shard_is_detected_and_that_shard_treated_as_lost() {
    let f = fixture(KeySource::Passphrase("pw".into()), 4096);
    let d = data(4000, 2);
    f.store.put("x", &d[..]).await.unwrap();
    let files = shard_files(f.dir.path());
    assert_eq!(files.len(), 9);
    for (i, path) in files.iter().enumerate() {
        let original = std::fs::read(path).unwrap();
        for at in [0, 20, 47, 48, original.len() - 1] {
            let mut bad = original.clone();
            bad[at] ^= 0x10;
            std::fs::write(path, &bad).unwrap();
            assert_eq!(get(&f.store, "x").await.unwrap(), d, "shard {i} byte {at}");
            // Treated as lost: with three more nodes gone, only 5 good shards remain.
            let holder = path
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let others: Vec<Node> = f
                .store
                .nodes()
                .into_iter()
                .filter(|n| n.id != holder)
                .take(3)
                .collect();
            for n in &others {
                n.set_online(false);
            }
            assert!(matches!(
                get(&f.store, "x").await,
                Err(StoreError::Unrecoverable { have: 5, .. })
            ));
            for n in &others {
                n.set_online(true);
            }
        }
        std::fs::write(path, &original).unwrap();
    }
}

#[tokio::test]
async fn a_wrong_passphrase_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index.redb");
    let open = |key: &str| open_with_passphrase(dir.path(), key);
    let store = open("right").unwrap();
    store.put("a", &b"secret"[..]).await.unwrap();
    drop(store);
    let shards_before = shard_files(dir.path());
    match open("wrong") {
        Err(StoreError::Key(KeyError::WrongKey)) => {}
        other => panic!("expected a wrong-key error, got {other:?}"),
    }
    assert!(
        open("wrong")
            .unwrap_err()
            .to_string()
            .contains("wrong passphrase")
    );
    assert!(shard_files(dir.path()) == shards_before, "shards changed");
    // Neither opens it without encryption.
    let e = Store::open(
        &index,
        &KeySource::NoEncryption,
        nodes(dir.path(), 9, 1 << 40),
        settings(4096),
    )
    .unwrap_err();
    assert!(e.to_string().contains("encrypted"), "{e}");
    let store = open("right").unwrap();
    assert_eq!(store.index().files().unwrap().len(), 1);
    assert_eq!(get(&store, "a").await.unwrap(), b"secret");
}

#[tokio::test]
async fn changing_the_passphrase_rewraps_keys_without_touching_shards() {
    let dir = tempfile::tempdir().unwrap();
    let open = |key: &str| open_with_passphrase(dir.path(), key);
    let store = open("old").unwrap();
    let d = data(10_000, 3);
    store.put("a", &d[..]).await.unwrap();
    let shards: Vec<Vec<u8>> = shard_files(dir.path())
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(store.change_passphrase("new", fast_kdf()).unwrap(), 1);
    // The store in use reads with the new key at once.
    assert_eq!(get(&store, "a").await.unwrap(), d);
    drop(store);
    let after: Vec<Vec<u8>> = shard_files(dir.path())
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(shards == after, "shards were rewritten");
    assert!(matches!(
        open("old"),
        Err(StoreError::Key(KeyError::WrongKey))
    ));
    assert_eq!(get(&open("new").unwrap(), "a").await.unwrap(), d);
}

#[tokio::test]
async fn a_key_change_racing_puts_and_reads_leaves_every_file_readable_with_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let open = |key: &str| open_with_passphrase(dir.path(), key);
    let store = Arc::new(open("old").unwrap());
    let mut originals = Vec::new();
    for i in 0..4 {
        let d = data(30_000 + i * 9_000, 60 + i as u64);
        store.put(&format!("before{i}"), &d[..]).await.unwrap();
        originals.push((format!("before{i}"), d));
    }
    // Puts and reads under way while the key changes: each put commits
    // before the change (and is rewrapped) or after it (and wraps with the
    // new key); each read finishes with the key its record was read with.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        let d = data(50_000 + i * 3_000, 90 + i as u64);
        originals.push((format!("during{i}"), d.clone()));
        tasks.push(tokio::spawn(async move {
            store.put(&format!("during{i}"), &d[..]).await.unwrap();
        }));
    }
    for (name, d) in originals.clone().into_iter().take(4) {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            assert_eq!(get(&store, &name).await.unwrap(), d, "{name}");
        }));
    }
    tokio::task::yield_now().await;
    let changer = store.clone();
    let changed = tokio::task::spawn_blocking(move || changer.change_passphrase("new", fast_kdf()));
    for t in tasks {
        t.await.unwrap();
    }
    assert!(changed.await.unwrap().unwrap() >= 4);
    drop(store);
    assert!(matches!(
        open("old"),
        Err(StoreError::Key(KeyError::WrongKey))
    ));
    let store = open("new").unwrap();
    for (name, d) in &originals {
        assert_eq!(&get(&store, name).await.unwrap(), d, "{name}");
    }

    // A key file store moves to a new key file the same way.
    let dir = tempfile::tempdir().unwrap();
    let old_key = dir.path().join("old.key");
    let new_key = dir.path().join("new.key");
    cloudshell_store::MasterKey::generate_key_file(&old_key).unwrap();
    cloudshell_store::MasterKey::generate_key_file(&new_key).unwrap();
    let open_with = |key: &std::path::Path| {
        Store::open(
            &dir.path().join("index.redb"),
            &KeySource::KeyFile(key.to_owned()),
            nodes(dir.path(), 9, 1 << 40),
            settings(4096),
        )
    };
    let store = open_with(&old_key).unwrap();
    let d = data(20_000, 5);
    store.put("k", &d[..]).await.unwrap();
    store
        .change_key(cloudshell_store::NewKey::KeyFile(&new_key))
        .unwrap();
    drop(store);
    assert!(matches!(
        open_with(&old_key),
        Err(StoreError::Key(KeyError::WrongKey))
    ));
    assert_eq!(get(&open_with(&new_key).unwrap(), "k").await.unwrap(), d);
}

#[tokio::test]
async fn backups_sealed_with_a_replaced_key_go_even_after_a_restart_before_the_next_backup() {
    let dir = tempfile::tempdir().unwrap();
    let old_key = dir.path().join("old.key");
    let new_key = dir.path().join("new.key");
    cloudshell_store::MasterKey::generate_key_file(&old_key).unwrap();
    cloudshell_store::MasterKey::generate_key_file(&new_key).unwrap();
    let open_with = |key: &std::path::Path| {
        Store::open(
            &dir.path().join("index.redb"),
            &KeySource::KeyFile(key.to_owned()),
            nodes(dir.path(), 9, 1 << 40),
            settings(4096),
        )
        .unwrap()
    };
    let store = open_with(&old_key);
    store.put("k", &data(9_000, 3)[..]).await.unwrap();
    for _ in 0..2 {
        store.backup_index().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    store
        .change_key(cloudshell_store::NewKey::KeyFile(&new_key))
        .unwrap();
    // Stopped before a backup with the new key was sealed.
    drop(store);
    let store = open_with(&new_key);
    assert!(store.index().old_key_backups().unwrap());
    let newest = store.backup_index().await.unwrap().generation;
    let gens = cloudshell_store::backup::generations(&store.nodes()[0])
        .await
        .unwrap();
    let held: Vec<u64> = gens.iter().map(|g| g.generation).collect();
    assert_eq!(held, [newest], "the old key's backups are still there");
    assert!(!store.index().old_key_backups().unwrap());
    // And later backups keep the usual number again.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    store.backup_index().await.unwrap();
    let gens = cloudshell_store::backup::generations(&store.nodes()[0])
        .await
        .unwrap();
    assert_eq!(gens.len(), 2);
}

#[tokio::test]
async fn repair_rebuilds_missing_and_corrupt_shards_on_other_nodes() {
    let f = fixture(KeySource::Passphrase("pw".into()), 4096);
    let d = data(30_000, 4);
    f.store.put("r", &d[..]).await.unwrap();
    // Chunk by chunk, lose up to m shards: delete two, corrupt one.
    let files = shard_files(f.dir.path());
    let mut hurt = 0;
    for chunk in 0..8u64 {
        let tag = format!("-{chunk:016x}-");
        let of_chunk: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.to_str().unwrap().contains(&tag))
            .collect();
        assert_eq!(of_chunk.len(), 9);
        std::fs::remove_file(of_chunk[0]).unwrap();
        std::fs::remove_file(of_chunk[4]).unwrap();
        let mut b = std::fs::read(of_chunk[8]).unwrap();
        b[100] ^= 1;
        std::fs::write(of_chunk[8], b).unwrap();
        hurt += 3;
    }
    let report = f.store.repair("r").await.unwrap();
    assert_eq!(report.chunks_repaired, 8);
    assert_eq!(report.shards_rebuilt, hurt);
    assert_eq!(
        f.store.repair("r").await.unwrap().shards_rebuilt,
        0,
        "a second repair has nothing to do"
    );
    assert_eq!(f.store.survivable_losses("r").unwrap(), 3);
    // Redundancy is back: any three nodes may go again.
    for n in &f.store.nodes()[6..] {
        n.set_online(false);
    }
    assert_eq!(get(&f.store, "r").await.unwrap(), d);
}

#[tokio::test]
async fn a_file_put_while_a_node_was_away_is_spread_out_once_it_is_back() {
    let f = fixture(KeySource::Passphrase("pw".into()), 4096);
    let d = data(30_000, 9);
    let away = &f.store.nodes()[3];
    away.set_online(false);
    let report = f.store.put("p", &d[..]).await.unwrap();
    // Nine shards on eight nodes: one of them holds two of every chunk.
    assert_eq!(report.survivable_losses, 2);
    let nothing = f.store.repair("p").await.unwrap();
    assert_eq!(
        nothing.shards_spread, 0,
        "no node holds none of a chunk yet"
    );
    away.set_online(true);
    let report = f.store.repair("p").await.unwrap();
    assert_eq!(report.shards_rebuilt, 0);
    assert_eq!(
        report.shards_spread, 8,
        "one shard of each of the 8 chunks moves"
    );
    assert_eq!(f.store.survivable_losses("p").unwrap(), 3);
    // Moved, not copied: nine shard files per chunk, and any three nodes may go.
    assert_eq!(shard_files(f.dir.path()).len(), 9 * 8);
    for n in &f.store.nodes()[..3] {
        n.set_online(false);
    }
    assert_eq!(get(&f.store, "p").await.unwrap(), d);
}

#[tokio::test]
async fn deleting_a_file_deletes_its_shards() {
    let f = fixture(KeySource::NoEncryption, 4096);
    f.store.put("a", &data(20_000, 5)[..]).await.unwrap();
    f.store.put("b", &data(5_000, 6)[..]).await.unwrap();
    let all = shard_files(f.dir.path()).len();
    assert_eq!(all, 9 * 5 + 9 * 2);
    f.store.delete("a").await.unwrap();
    assert_eq!(shard_files(f.dir.path()).len(), 9 * 2);
    assert!(matches!(
        get(&f.store, "a").await,
        Err(StoreError::NotFound(_))
    ));
    // Replacing a file deletes the old version's shards after the switch.
    f.store.put("b", &data(100, 7)[..]).await.unwrap();
    assert_eq!(shard_files(f.dir.path()).len(), 9);
}

#[tokio::test]
async fn a_failed_write_leaves_nothing_visible_and_no_shards() {
    let dir = tempfile::tempdir().unwrap();
    // Every node has room for a few shards when the put starts; the put
    // needs more than all of them hold.
    let ns = nodes(dir.path(), 9, 100_000);
    let store = Store::open(
        &dir.path().join("index.redb"),
        &KeySource::NoEncryption,
        ns,
        settings(64 * 1024),
    )
    .unwrap();
    let e = store.put("big", &data(2 << 20, 8)[..]).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::ShardWrite { source, .. } if source.is_full()),
        "{e:?}"
    );
    assert!(matches!(
        get(&store, "big").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.index().files().unwrap().is_empty());
    assert_eq!(
        shard_files(dir.path()),
        Vec::<PathBuf>::new(),
        "orphan shards left"
    );
}

#[tokio::test]
async fn fewer_nodes_than_shards_say_how_many_losses_they_survive() {
    let dir = tempfile::tempdir().unwrap();
    let store = unencrypted(dir.path(), 3);
    let report = store.put("a", &data(10_000, 9)[..]).await.unwrap();
    assert_eq!(report.survivable_losses, 1);
    store.nodes()[0].set_online(false);
    assert_eq!(get(&store, "a").await.unwrap(), data(10_000, 9));
}

#[tokio::test]
async fn the_index_is_recovered_from_its_export_and_the_key_alone() {
    let f = fixture(KeySource::Passphrase("pw".into()), 4096);
    let a = data(20_000, 10);
    let b = data(7, 11);
    f.store.put("dir/a", &a[..]).await.unwrap();
    f.store.put("b", &b[..]).await.unwrap();
    let export = f.store.export_index().unwrap();
    // Sealed: no file name shows through.
    assert!(!export.windows(5).any(|w| w == b"dir/a"));

    let fresh = f.dir.path().join("recovered.redb");
    let nodes_again = || nodes(f.dir.path(), 9, 1 << 40);
    match Store::recover(
        &fresh,
        &export,
        &KeySource::Passphrase("nope".into()),
        nodes_again(),
        settings(4096),
    ) {
        Err(StoreError::Key(KeyError::WrongKey)) => {}
        other => panic!("expected a wrong-key error, got {other:?}"),
    }
    let mut tampered = export.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(
        Store::recover(
            &fresh,
            &tampered,
            &KeySource::Passphrase("pw".into()),
            nodes_again(),
            settings(4096)
        )
        .is_err()
    );
    assert!(
        Store::recover(
            &fresh,
            &export[..20],
            &KeySource::Passphrase("pw".into()),
            nodes_again(),
            settings(4096)
        )
        .is_err()
    );

    let recovered = Store::recover(
        &fresh,
        &export,
        &KeySource::Passphrase("pw".into()),
        nodes_again(),
        settings(4096),
    )
    .unwrap();
    assert_eq!(get(&recovered, "dir/a").await.unwrap(), a);
    assert_eq!(get(&recovered, "b").await.unwrap(), b);
}

#[tokio::test]
async fn an_export_written_before_extras_existed_still_recovers() {
    // Version 1, unsealed, by hand: magic, version, flags, keyring, then
    // the contents record without its extras.
    #[derive(serde::Serialize)]
    struct ContentsV1 {
        files: Vec<FileV1>,
        manifests: Vec<cloudshell_store::index::Manifest>,
    }
    /// A file record as version 1 wrote it: no attributes, no parts.
    #[derive(serde::Serialize)]
    struct FileV1 {
        name: String,
        file_id: FileId,
        size: u64,
        chunk_size: u32,
        k: u8,
        m: u8,
        wrapped_key: Option<Vec<u8>>,
        created: i64,
        blake3: [u8; 32],
    }
    let f = fixture(KeySource::NoEncryption, 4096);
    let d = data(9_000, 4);
    f.store.put("old", &d[..]).await.unwrap();
    let contents = f.store.index().contents().unwrap();
    let keyring = cloudshell_store::index::encode(&f.store.index().keyring().unwrap().unwrap());
    let mut export = b"CSIX".to_vec();
    export.extend_from_slice(&[1, 0]);
    export.extend_from_slice(&(keyring.len() as u32).to_le_bytes());
    export.extend_from_slice(&keyring);
    export.extend(cloudshell_store::index::encode(&ContentsV1 {
        files: contents
            .files
            .into_iter()
            .map(|r| FileV1 {
                name: r.name,
                file_id: r.file_id,
                size: r.size,
                chunk_size: r.chunk_size,
                k: r.k,
                m: r.m,
                wrapped_key: r.wrapped_key,
                created: r.created,
                blake3: r.blake3,
            })
            .collect(),
        manifests: contents.manifests,
    }));
    let fresh = f.dir.path().join("v1.redb");
    let store = Store::recover(
        &fresh,
        &export,
        &KeySource::NoEncryption,
        nodes_again(f.dir.path()),
        settings(4096),
    )
    .unwrap();
    assert_eq!(get(&store, "old").await.unwrap(), d);
    assert_eq!(store.index().extra("s3").unwrap(), None);
    // A version from the future is named as such.
    let mut future = export.clone();
    future[4] = 9;
    let err = Store::recover(
        &f.dir.path().join("v9.redb"),
        &future,
        &KeySource::NoEncryption,
        nodes_again(f.dir.path()),
        settings(4096),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test]
async fn renaming_moves_no_data_and_replaces_the_target() {
    let f = fixture(KeySource::Passphrase("pw".into()), 4096);
    let (a, b) = (data(20_000, 1), data(5_000, 2));
    f.store.put("staging/1", &a[..]).await.unwrap();
    f.store.put("final", &b[..]).await.unwrap();
    let before = shard_files(f.dir.path()).len();
    f.store.rename("staging/1", "final", None).await.unwrap();
    assert_eq!(get(&f.store, "final").await.unwrap(), a);
    assert!(matches!(
        get(&f.store, "staging/1").await,
        Err(StoreError::NotFound(_))
    ));
    // The replaced file's shards are gone, the renamed file's stay.
    let after = shard_files(f.dir.path()).len();
    assert_eq!(before - after, 18, "two 4 KiB chunks of 9 shards deleted");
    match f.store.rename("staging/1", "x", None).await {
        Err(StoreError::NotFound(name)) => assert_eq!(name, "staging/1"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Renaming onto itself changes nothing.
    f.store.rename("final", "final", None).await.unwrap();
    assert_eq!(get(&f.store, "final").await.unwrap(), a);
}

#[tokio::test]
async fn redistribution_moves_shards_onto_new_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let store = unencrypted(dir.path(), 9);
    let d = data(100_000, 12);
    store.put("a", &d[..]).await.unwrap();
    let before = shard_files(dir.path()).len();
    for i in 9..12 {
        let shards = LocalDirStore::open(dir.path().join(format!("new{i}")), 1 << 40).unwrap();
        store
            .add_node(Node::new(
                format!("new{i}"),
                format!("region{i}"),
                Arc::new(shards),
            ))
            .unwrap();
    }
    assert_eq!(
        store.index().nodes().unwrap().len(),
        12,
        "nodes are recorded"
    );
    let report = store.redistribute().await.unwrap();
    assert!(report.shards_moved > 0, "{report:?}");
    let count = |name: &str| shards_in(&dir.path().join(name));
    let per_node: Vec<usize> = (0..9)
        .map(|i| count(&format!("node{i}")))
        .chain((9..12).map(|i| count(&format!("new{i}"))))
        .collect();
    assert_eq!(
        per_node.iter().sum::<usize>(),
        before,
        "shards were lost or duplicated: {per_node:?}"
    );
    let (lo, hi) = (
        per_node.iter().min().unwrap(),
        per_node.iter().max().unwrap(),
    );
    assert!(hi - lo <= 2, "uneven after redistribution: {per_node:?}");
    assert_eq!(store.survivable_losses("a").unwrap(), 3);
    assert_eq!(get(&store, "a").await.unwrap(), d);
    assert_eq!(
        store.redistribute().await.unwrap().shards_moved,
        0,
        "already even"
    );
}

/// Nine nodes holding two shards each (two chunks, one shard of each per
/// node) and a new empty one: a ceiling share (ceil(18 / 10) = 2) left them
/// as they were; every node ends within one shard of the others.
#[tokio::test]
async fn redistribution_evens_out_nodes_already_at_their_ceiling_share() {
    let dir = tempfile::tempdir().unwrap();
    let store = unencrypted(dir.path(), 9);
    let d = data(2 * 4096, 5);
    store.put("a", &d[..]).await.unwrap();
    let shards = LocalDirStore::open(dir.path().join("new9"), 1 << 40).unwrap();
    store
        .add_node(Node::new("new9", "region9", Arc::new(shards)))
        .unwrap();
    let report = store.redistribute().await.unwrap();
    let count = |name: &str| shards_in(&dir.path().join(name));
    let per_node: Vec<usize> = (0..9)
        .map(|i| count(&format!("node{i}")))
        .chain([count("new9")])
        .collect();
    assert!(report.shards_moved > 0, "{report:?} {per_node:?}");
    let (lo, hi) = (
        per_node.iter().min().unwrap(),
        per_node.iter().max().unwrap(),
    );
    assert!(hi - lo <= 1, "uneven after redistribution: {per_node:?}");
    assert_eq!(get(&store, "a").await.unwrap(), d);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Any size, any chunking, any m nodes lost (offline or shards deleted):
    /// the file reads back exactly, and repair restores full redundancy.
    #[test]
    fn random_sizes_and_losses(size in 0usize..200_000, chunk_kib in 1u32..64, lost in proptest::sample::subsequence((0..9usize).collect::<Vec<_>>(), 0..=3), delete in proptest::bool::ANY) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let f = fixture(KeySource::Passphrase("pw".into()), chunk_kib * 1024);
            let d = data(size, size as u64 + 1);
            f.store.put("p", &d[..]).await.unwrap();
            for &n in &lost {
                if delete {
                    let _ = std::fs::remove_dir_all(node_dir(f.dir.path(), n));
                    std::fs::create_dir_all(node_dir(f.dir.path(), n)).unwrap();
                } else {
                    f.store.nodes()[n].set_online(false);
                }
            }
            proptest::prop_assert!(get(&f.store, "p").await.unwrap() == d);
            if delete {
                f.store.repair("p").await.unwrap();
                for n in f.store.nodes().iter().skip(6) {
                    n.set_online(false);
                }
                proptest::prop_assert!(get(&f.store, "p").await.unwrap() == d);
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn the_index_backed_up_on_the_nodes_rebuilds_the_store_from_the_key_alone() {
    let f = fixture(KeySource::Passphrase("pw".into()), 4096);
    let mut files = Vec::new();
    for i in 0..5 {
        let d = data(10_000 + i * 3000, i as u64);
        f.store.put(&format!("dir/f{i}"), &d[..]).await.unwrap();
        files.push(d);
    }
    // Three backups: only the newest two stay.
    for _ in 0..3 {
        f.store.backup_index().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let gens = cloudshell_store::backup::generations(&f.store.nodes()[0])
        .await
        .unwrap();
    assert_eq!(gens.len(), cloudshell_store::backup::KEEP, "{gens:?}");
    // Extras (the daemon's S3 metadata) travel with the index.
    f.store
        .index()
        .set_extra("s3", b"buckets and objects")
        .unwrap();
    let newest = f.store.backup_index().await.unwrap();
    // A file stored after the last backup is not in it.
    f.store.put("late", &b"late"[..]).await.unwrap();

    // Only the key and the nodes, three of them gone.
    let empty = tempfile::tempdir().unwrap();
    let remaining = nodes_again(f.dir.path());
    for n in &remaining[..3] {
        n.set_online(false);
    }
    let (store, generation, _) = Store::recover_from_nodes(
        &empty.path().join("index.redb"),
        &KeySource::Passphrase("pw".into()),
        remaining,
        settings(4096),
    )
    .await
    .unwrap();
    assert_eq!(generation, newest.generation);
    assert_eq!(
        store.index().extra("s3").unwrap().as_deref(),
        Some(&b"buckets and objects"[..])
    );
    assert_eq!(store.index().extra("other").unwrap(), None);
    for (i, d) in files.iter().enumerate() {
        assert_eq!(&get(&store, &format!("dir/f{i}")).await.unwrap(), d);
    }
    assert!(matches!(
        get(&store, "late").await,
        Err(StoreError::NotFound(_))
    ));

    // The wrong key recovers nothing and writes nothing.
    let other = tempfile::tempdir().unwrap();
    let wrong = Store::recover_from_nodes(
        &other.path().join("index.redb"),
        &KeySource::Passphrase("not it".into()),
        nodes_again(f.dir.path()),
        settings(4096),
    )
    .await;
    assert!(wrong.is_err());

    // Nodes that never held a backup say so.
    let blank = tempfile::tempdir().unwrap();
    let none = Store::recover_from_nodes(
        &blank.path().join("index.redb"),
        &KeySource::Passphrase("pw".into()),
        nodes(blank.path(), 9, 1 << 40),
        settings(4096),
    )
    .await;
    match none {
        Err(e) => assert!(e.to_string().contains("no node holds one"), "{e}"),
        Ok(_) => panic!("recovered from empty nodes"),
    }
}

fn nodes_again(root: &Path) -> Vec<Node> {
    nodes(root, 9, 1 << 40)
}

#[tokio::test]
async fn checking_finds_missing_and_corrupt_shards_without_reading_them() {
    let f = fixture(KeySource::NoEncryption, 4096);
    let d = data(3 * 4096, 9);
    f.store.put("f", &d[..]).await.unwrap();
    let fast = std::time::Duration::ZERO;
    assert_eq!(
        f.store.check_file("f", fast).await.unwrap(),
        cloudshell_store::maintenance::CheckReport {
            checked: 27,
            ..Default::default()
        }
    );
    let (record, _) = f.store.index().file("f").unwrap().unwrap();
    let files = shard_files(f.dir.path());
    std::fs::remove_file(&files[0]).unwrap();
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&files[1], bytes).unwrap();
    let report = f.store.check_file("f", fast).await.unwrap();
    assert_eq!((report.missing, report.corrupt), (1, 1), "{report:?}");
    // The bad ones are named: their file names are their keys.
    let named: Vec<String> = report
        .bad
        .iter()
        .map(|b| {
            cloudshell_store::ShardKey {
                file_id: record.file_id,
                chunk: b.chunk,
                index: b.index,
            }
            .name()
        })
        .collect();
    for f in &files[..2] {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(named.contains(&name), "{name} not in {named:?}");
    }
    assert!(report.needs_repair());
    f.store.repair("f").await.unwrap();
    assert!(!f.store.check_file("f", fast).await.unwrap().needs_repair());
    assert_eq!(get(&f.store, "f").await.unwrap(), d);
}

#[tokio::test]
async fn orphans_are_collected_and_nothing_else() {
    let f = fixture(KeySource::NoEncryption, 4096);
    let d = data(2 * 4096, 3);
    f.store.put("kept", &d[..]).await.unwrap();
    f.store.backup_index().await.unwrap();
    // A put whose input breaks off half way leaves nothing behind.
    struct Broken(usize);
    impl tokio::io::AsyncRead for Broken {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(Err(std::io::Error::other("client went away")));
            }
            let n = self.0.min(buf.remaining()).min(1000);
            buf.put_slice(&vec![7u8; n]);
            self.0 -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }
    let before = shard_files(f.dir.path()).len();
    assert!(f.store.put("broken", Broken(3 * 4096 + 10)).await.is_err());
    assert_eq!(
        shard_files(f.dir.path()).len(),
        before,
        "a failed put leaves no shard"
    );
    // What a daemon that died mid-put leaves: shards of a file the index
    // does not know; and a stale copy of a known shard on another node.
    let (record, manifest) = f.store.index().file("kept").unwrap().unwrap();
    let nodes = f.store.nodes();
    let stray_key = cloudshell_store::ShardKey {
        file_id: FileId([0x55; 16]),
        chunk: 0,
        index: 0,
    };
    let len = cloudshell_store::format::shard_len(100, 6);
    let mut stray_blob = cloudshell_store::ShardHeader {
        flags: 0,
        k: 6,
        m: 3,
        key: stray_key,
        payload_len: 100,
        shard_len: len as u32,
    }
    .encode()
    .to_vec();
    stray_blob.resize(cloudshell_store::format::HEADER_LEN + len, 0);
    nodes[0]
        .shards
        .put(stray_key, bytes::Bytes::from(stray_blob))
        .await
        .unwrap();
    let key0 = cloudshell_store::ShardKey {
        file_id: record.file_id,
        chunk: 0,
        index: 0,
    };
    let holder = &manifest.chunks[0].shards[0].node;
    let elsewhere = nodes.iter().find(|n| &n.id != holder).unwrap();
    let blob = nodes
        .iter()
        .find(|n| &n.id == holder)
        .unwrap()
        .shards
        .get(key0)
        .await
        .unwrap();
    elsewhere.shards.put(key0, blob).await.unwrap();

    let report = f.store.collect_orphans().await.unwrap();
    assert_eq!(report.deleted, 2, "{report:?}");
    assert_eq!(f.store.collect_orphans().await.unwrap().deleted, 0);
    assert_eq!(get(&f.store, "kept").await.unwrap(), d);
    assert!(
        !f.store
            .check_file("kept", std::time::Duration::ZERO)
            .await
            .unwrap()
            .needs_repair()
    );
    assert_eq!(
        cloudshell_store::backup::generations(&nodes[0])
            .await
            .unwrap()
            .len(),
        1,
        "index backups are not orphans"
    );
}

/// A node whose reads hang while `silent` is set (a process that died
/// without closing its connection), counting the reads it was asked for.
struct Silent {
    inner: LocalDirStore,
    silent: std::sync::atomic::AtomicBool,
    reads: std::sync::atomic::AtomicUsize,
}

impl cloudshell_store::ShardStore for Silent {
    fn put(
        &self,
        key: cloudshell_store::ShardKey,
        blob: bytes::Bytes,
    ) -> futures_util::future::BoxFuture<'_, Result<(), cloudshell_store::ShardError>> {
        self.inner.put(key, blob)
    }
    fn get(
        &self,
        key: cloudshell_store::ShardKey,
    ) -> futures_util::future::BoxFuture<'_, Result<bytes::Bytes, cloudshell_store::ShardError>>
    {
        use std::sync::atomic::Ordering::SeqCst;
        self.reads.fetch_add(1, SeqCst);
        if self.silent.load(SeqCst) {
            Box::pin(std::future::pending())
        } else {
            self.inner.get(key)
        }
    }
    fn delete(
        &self,
        key: cloudshell_store::ShardKey,
    ) -> futures_util::future::BoxFuture<'_, Result<(), cloudshell_store::ShardError>> {
        self.inner.delete(key)
    }
    fn list(
        &self,
        after: Option<cloudshell_store::ShardKey>,
        limit: usize,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<Vec<cloudshell_store::ShardKey>, cloudshell_store::ShardError>,
    > {
        self.inner.list(after, limit)
    }
    fn verify(
        &self,
        key: cloudshell_store::ShardKey,
    ) -> futures_util::future::BoxFuture<'_, Result<[u8; 32], cloudshell_store::ShardError>> {
        self.inner.verify(key)
    }
    fn stats(
        &self,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<cloudshell_store::StoreStats, cloudshell_store::ShardError>,
    > {
        self.inner.stats()
    }
}

#[tokio::test]
async fn nodes_gone_silent_are_asked_last_once_a_read_hedges() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let mut all = nodes(dir.path(), 6, 1 << 40);
    let silent: Vec<Arc<Silent>> = (6..9)
        .map(|i| {
            Arc::new(Silent {
                inner: LocalDirStore::open(node_dir(dir.path(), i), 1 << 40).unwrap(),
                silent: false.into(),
                reads: 0.into(),
            })
        })
        .collect();
    for (i, s) in silent.iter().enumerate() {
        all.push(Node::new(
            format!("node{}", i + 6),
            format!("region{}", i + 6),
            s.clone(),
        ));
    }
    let store = Store::open(
        &dir.path().join("index.redb"),
        &KeySource::NoEncryption,
        all,
        settings(4096),
    )
    .unwrap();
    let d = data(40 * 4096, 3);
    store.put("f", &d[..]).await.unwrap();
    for s in &silent {
        s.silent.store(true, SeqCst);
    }
    // Three agents died without closing their connections. The chunks read
    // ahead before the first hedge fires ask them, wait it out, ask every
    // node and mark them: 3 requests each at most. Later chunks ask the six
    // others first and one silent node as the seventh (k + 1): 1 each.
    // Without suspicion every chunk would wait the hedge and ask all three.
    assert_eq!(get(&store, "f").await.unwrap(), d);
    let asked: usize = silent.iter().map(|s| s.reads.load(SeqCst)).sum();
    let first = cloudshell_store::CHUNKS_IN_FLIGHT.min(40);
    let bound = first * 3 + (40 - first);
    assert!(bound < 40 * 3);
    assert!(
        asked <= bound,
        "the silent nodes were asked {asked} times (at most {bound} expected)"
    );
    let suspects = store.nodes().iter().filter(|n| n.is_suspect()).count();
    assert_eq!(suspects, 3);
    // Answering again, they are trusted again.
    for s in &silent {
        s.silent.store(false, SeqCst);
    }
    tokio::time::sleep(cloudshell_store::SUSPECT_FOR).await;
    assert!(store.nodes().iter().all(|n| !n.is_suspect()));
    assert_eq!(get(&store, "f").await.unwrap(), d);
}

/// More puts and gets at once than the store's shard budget has room for
/// (each put could fill its window, each get read CHUNKS_IN_FLIGHT chunks
/// ahead): they share it, none waits forever on room another holds, and
/// every byte comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_transfers_at_once_share_the_shard_budget_without_deadlock() {
    let f = fixture(KeySource::NoEncryption, 4096);
    let store = Arc::new(f.store);
    let files: usize =
        2 * cloudshell_store::STORE_SHARD_BUDGET / cloudshell_store::PUT_SHARD_WINDOW + 2;
    // Each file has more shards than a put's window.
    let size = 4096 * 2 * cloudshell_store::PUT_SHARD_WINDOW / 9;
    let mut tasks = Vec::new();
    for i in 0..files {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let bytes = data(size, i as u64 + 1);
            store.put(&format!("f{i}"), &bytes[..]).await.unwrap();
            assert_eq!(get(&store, &format!("f{i}")).await.unwrap(), bytes);
        }));
    }
    let all = futures_util::future::join_all(tasks);
    let results = tokio::time::timeout(std::time::Duration::from_secs(120), all)
        .await
        .expect("transfers finish: none is stuck waiting for the chunk budget");
    for r in results {
        r.unwrap();
    }
}

/// Waits until the spawned deletion of released garbage has run.
async fn settled(root: &Path, shards: usize) {
    for _ in 0..200 {
        if shard_files(root).len() == shards {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(shard_files(root).len(), shards, "garbage not reclaimed");
}

#[tokio::test]
async fn a_reader_keeps_the_version_it_opened_while_the_name_is_replaced_or_deleted() {
    let f = fixture(KeySource::NoEncryption, 4096);
    let a = data(10_000, 1);
    let b = data(30_000, 2);
    f.store.put("f", &a[..]).await.unwrap();
    let held = f.store.version("f").unwrap();
    assert_eq!(held.size(), 10_000);
    f.store.put("f", &b[..]).await.unwrap();
    // The name means the new version at once...
    assert_eq!(get(&f.store, "f").await.unwrap(), b);
    // ...and the reader that opened the old one reads it whole, twice.
    for _ in 0..2 {
        let mut out = Vec::new();
        f.store.read(&held, 0..u64::MAX, &mut out).await.unwrap();
        assert_eq!(out, a);
    }
    // Its shards stay until it is let go, even through orphan collection.
    assert_eq!(shard_files(f.dir.path()).len(), 9 * 3 + 9 * 8);
    let collected = f.store.collect_orphans().await.unwrap();
    assert_eq!(collected.deleted, 0);
    drop(held);
    settled(f.dir.path(), 9 * 8).await;

    let held = f.store.version("f").unwrap();
    f.store.delete("f").await.unwrap();
    assert!(matches!(f.store.version("f"), Err(StoreError::NotFound(_))));
    let mut out = Vec::new();
    f.store.read(&held, 5..20_005, &mut out).await.unwrap();
    assert_eq!(out, b[5..20_005]);
    drop(held);
    settled(f.dir.path(), 0).await;
}

#[tokio::test]
async fn attributes_switch_with_the_data_in_one_step() {
    let f = fixture(KeySource::NoEncryption, 4096);
    f.store.put("staged/1", &data(5000, 3)[..]).await.unwrap();
    f.store
        .rename("staged/1", "final", Some(b"etag-1"))
        .await
        .unwrap();
    let v = f.store.version("final").unwrap();
    assert_eq!((v.attrs(), v.size()), (&b"etag-1"[..], 5000));
    f.store.put("staged/2", &data(7000, 4)[..]).await.unwrap();
    f.store
        .rename("staged/2", "final", Some(b"etag-2"))
        .await
        .unwrap();
    let now = f.store.version("final").unwrap();
    assert_eq!((now.attrs(), now.size()), (&b"etag-2"[..], 7000));
    // The held version keeps its own attributes and bytes.
    assert_eq!(v.attrs(), b"etag-1");
    let mut out = Vec::new();
    f.store.read(&v, 0..u64::MAX, &mut out).await.unwrap();
    assert_eq!(out, data(5000, 3));
}

#[tokio::test]
async fn a_replaced_file_can_be_kept_under_another_name_in_the_same_step() {
    let f = fixture(KeySource::NoEncryption, 4096);
    let (v1, v2, v3) = (data(5000, 7), data(3000, 8), data(4200, 9));
    f.store.put("staged/1", &v1[..]).await.unwrap();
    f.store
        .rename("staged/1", "obj", Some(b"v1"))
        .await
        .unwrap();
    f.store.put("staged/2", &v2[..]).await.unwrap();
    f.store
        .rename_keeping("staged/2", "obj", Some(b"v2"), Some("versions/1"))
        .await
        .unwrap();
    assert_eq!(get(&f.store, "obj").await.unwrap(), v2);
    assert_eq!(get(&f.store, "versions/1").await.unwrap(), v1);
    assert_eq!(f.store.version("versions/1").unwrap().attrs(), b"v1");
    // A multipart replacement keeps the earlier one too, and a kept
    // composed file keeps its parts.
    f.store.put("parts/a", &v3[..2000]).await.unwrap();
    f.store.put("parts/b", &v3[2000..]).await.unwrap();
    let parts = ["parts/a".to_owned(), "parts/b".to_owned()];
    f.store
        .compose_keeping("obj", &parts, b"v3", Some("versions/2"))
        .await
        .unwrap();
    assert_eq!(get(&f.store, "versions/2").await.unwrap(), v2);
    f.store.put("staged/4", &v1[..10]).await.unwrap();
    f.store
        .rename_keeping("staged/4", "obj", None, Some("versions/3"))
        .await
        .unwrap();
    assert_eq!(get(&f.store, "versions/3").await.unwrap(), v3);
    let e = f.store.delete("parts/a").await.unwrap_err().to_string();
    assert!(e.contains("is a part of versions/3"), "{e}");
    // A name that is taken is refused, and nothing changes.
    f.store.put("staged/5", &v2[..10]).await.unwrap();
    assert!(
        f.store
            .rename_keeping("staged/5", "obj", None, Some("versions/1"))
            .await
            .is_err()
    );
    assert_eq!(get(&f.store, "obj").await.unwrap(), v1[..10]);
    // Deleting the kept file reclaims it, parts and all.
    f.store.delete("versions/3").await.unwrap();
    assert!(f.store.version("parts/a").is_err());
}

#[tokio::test]
async fn a_composed_file_reads_its_parts_in_order_and_takes_them_with_it() {
    let f = fixture(KeySource::Passphrase("pw".into()), 4096);
    let (p1, p2) = (data(9000, 5), data(4100, 6));
    f.store.put("parts/1", &p1[..]).await.unwrap();
    f.store.put("parts/2", &p2[..]).await.unwrap();
    let parts = ["parts/1".to_owned(), "parts/2".to_owned()];
    let record = f.store.compose("obj", &parts, b"meta").await.unwrap();
    assert_eq!(record.size, 13_100);
    let whole = [p1.clone(), p2.clone()].concat();
    assert_eq!(get(&f.store, "obj").await.unwrap(), whole);
    // A range across the seam.
    let mut out = Vec::new();
    f.store
        .get_range("obj", 8990..9010, &mut out)
        .await
        .unwrap();
    assert_eq!(out, whole[8990..9010]);
    // A part goes only with the file made of it.
    for refused in [
        f.store.delete("parts/1").await,
        f.store.put("parts/2", &b"x"[..]).await.map(|_| ()),
        f.store.rename("parts/1", "elsewhere", None).await,
        f.store
            .compose("other", &["parts/1".to_owned()], b"")
            .await
            .map(|_| ()),
    ] {
        let e = refused.unwrap_err().to_string();
        assert!(
            e.contains("parts/") && e.contains("is a part of obj"),
            "{e}"
        );
    }
    assert_eq!(get(&f.store, "obj").await.unwrap(), whole);
    // A missing part is refused and changes nothing.
    let bad = ["parts/1".to_owned(), "parts/9".to_owned()];
    assert!(matches!(
        f.store.compose("obj", &bad, b"x").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(f.store.version("obj").unwrap().attrs(), b"meta");
    // Deleting it while read takes its parts with it, after the reader.
    let held = f.store.version("obj").unwrap();
    f.store.delete("obj").await.unwrap();
    let names: Vec<String> = f
        .store
        .index()
        .files()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(names.is_empty(), "{names:?}");
    let mut out = Vec::new();
    f.store.read(&held, 0..u64::MAX, &mut out).await.unwrap();
    assert_eq!(out, whole);
    drop(held);
    settled(f.dir.path(), 0).await;
}

/// How a test damages a file on a node's disk.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Delete,
    Truncate,
    FlipBit,
}

fn damage(path: &Path, how: Damage) {
    match how {
        Damage::Delete => std::fs::remove_file(path).unwrap(),
        Damage::Truncate => {
            let b = std::fs::read(path).unwrap();
            std::fs::write(path, &b[..b.len() / 2]).unwrap();
        }
        Damage::FlipBit => {
            let mut b = std::fs::read(path).unwrap();
            let at = b.len() - 7;
            b[at] ^= 0x10;
            std::fs::write(path, b).unwrap();
        }
    }
}

/// The files of index backup `generation` on the nine nodes: per node, its
/// export shard and its manifest shard.
fn backup_files(root: &Path, generation: u64) -> Vec<(PathBuf, PathBuf)> {
    use cloudshell_store::backup::{INDEX_FILE_ID, MANIFEST_BIT};
    (0..9)
        .map(|i| {
            let node = LocalDirStore::open(node_dir(root, i), 1 << 40).unwrap();
            let key = cloudshell_store::ShardKey {
                file_id: INDEX_FILE_ID,
                chunk: generation,
                index: i as u8,
            };
            let manifest = cloudshell_store::ShardKey {
                chunk: generation | MANIFEST_BIT,
                ..key
            };
            (node.path_of(&key), node.path_of(&manifest))
        })
        .collect()
}

async fn recover_into(
    root: &Path,
) -> Result<(Store, u64, Vec<cloudshell_store::backup::SkippedBackup>), StoreError> {
    Store::recover_from_nodes(
        &root.join("recovered.redb"),
        &KeySource::Passphrase("pw".into()),
        nodes_again(root),
        settings(4096),
    )
    .await
}

#[tokio::test]
async fn an_index_backup_survives_any_three_damaged_shards_and_falls_back_a_generation() {
    let f = fixture(KeySource::Passphrase("pw".into()), 4096);
    let d = data(20_000, 11);
    f.store.put("kept", &d[..]).await.unwrap();
    let older = f.store.backup_index().await.unwrap().generation;
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    f.store
        .put("newer", &b"only in the newest"[..])
        .await
        .unwrap();
    let newest = f.store.backup_index().await.unwrap().generation;
    let root = f.dir.path();
    let files = backup_files(root, newest);
    let original: Vec<(Vec<u8>, Vec<u8>)> = files
        .iter()
        .map(|(e, m)| (std::fs::read(e).unwrap(), std::fs::read(m).unwrap()))
        .collect();
    let restore = || {
        for ((e, m), (eb, mb)) in files.iter().zip(&original) {
            std::fs::write(e, eb).unwrap();
            std::fs::write(m, mb).unwrap();
        }
    };

    // Any three nodes' shards of the newest backup, every kind of damage,
    // the export shard alone or with the node's copy of the manifest: the
    // newest backup still decodes, with nothing passed over.
    let mut cases = 0;
    for a in 0..9 {
        for b in a + 1..9 {
            for c in b + 1..9 {
                for how in [Damage::Delete, Damage::Truncate, Damage::FlipBit] {
                    for with_manifest in [false, true] {
                        for &n in &[a, b, c] {
                            damage(&files[n].0, how);
                            if with_manifest {
                                damage(&files[n].1, how);
                            }
                        }
                        let _ = std::fs::remove_file(root.join("recovered.redb"));
                        let (store, generation, skipped) = recover_into(root)
                            .await
                            .unwrap_or_else(|e| panic!("{a} {b} {c} {how:?} {with_manifest}: {e}"));
                        assert_eq!(generation, newest, "{a} {b} {c} {how:?}");
                        assert!(skipped.is_empty(), "{skipped:?}");
                        assert_eq!(store.index().files().unwrap().len(), 2);
                        drop(store);
                        restore();
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, 84 * 3 * 2);

    // Every copy of the manifest gone and two export shards flipped: the
    // export is found by trying sets of six (as for backups written before
    // manifests existed).
    for (n, (e, m)) in files.iter().enumerate() {
        std::fs::remove_file(m).unwrap();
        if n < 2 {
            damage(e, Damage::FlipBit);
        }
    }
    let _ = std::fs::remove_file(root.join("recovered.redb"));
    let (store, generation, _) = recover_into(root).await.unwrap();
    assert_eq!(generation, newest);
    drop(store);
    restore();

    // Four damaged in the newest: the one before is used, and the report
    // says which was passed over and why.
    for (e, _) in &files[..4] {
        damage(e, Damage::FlipBit);
    }
    let _ = std::fs::remove_file(root.join("recovered.redb"));
    let (store, generation, skipped) = recover_into(root).await.unwrap();
    assert_eq!(generation, older);
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].generation, newest);
    assert!(
        skipped[0]
            .why
            .contains("5 of its 9 shards check out (need 6)")
            && skipped[0].why.contains("corrupt"),
        "{}",
        skipped[0]
    );
    assert_eq!(get(&store, "kept").await.unwrap(), d);
    assert!(matches!(
        get(&store, "newer").await,
        Err(StoreError::NotFound(_))
    ));
    drop(store);

    // Every generation damaged past repair: a clear error, nothing written.
    for (e, _) in &backup_files(root, older)[4..8] {
        damage(e, Damage::Delete);
    }
    let _ = std::fs::remove_file(root.join("recovered.redb"));
    let err = recover_into(root).await.err().unwrap().to_string();
    assert!(
        err.contains(&format!("backup {newest}")) && err.contains(&format!("backup {older}")),
        "{err}"
    );
    assert!(err.contains("too few good shards"), "{err}");
    assert!(!root.join("recovered.redb").exists());
}

/// An unencrypted store with 64 KiB chunks on eight roomy nodes and
/// `ninth` as node8.
fn with_ninth(root: &Path, ninth: Arc<dyn cloudshell_store::ShardStore>) -> Store {
    let mut ns = nodes(root, 8, 1 << 40);
    ns.push(Node::new("node8", "region8", ninth));
    Store::open(
        &root.join("index.redb"),
        &KeySource::NoEncryption,
        ns,
        settings(64 * 1024),
    )
    .unwrap()
}

#[tokio::test]
async fn a_full_node_takes_no_new_shards_and_a_full_store_says_which_nodes_are_full() {
    let dir = tempfile::tempdir().unwrap();
    // The ninth node's agent quota leaves no room for a shard.
    let small = LocalDirStore::open(node_dir(dir.path(), 8), 1000).unwrap();
    let store = with_ninth(dir.path(), Arc::new(small));
    let d = data(300_000, 12);
    let report = store.put("f", &d[..]).await.unwrap();
    // Nine shards on the eight nodes with room: one holds two of a chunk.
    assert_eq!(report.survivable_losses, 2);
    assert!(
        std::fs::read_dir(node_dir(dir.path(), 8))
            .unwrap()
            .all(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count() == 0),
        "the full node got shards"
    );
    assert_eq!(get(&store, "f").await.unwrap(), d);
    // The store's own cap does the same on a node whose agent has room.
    // When the nodes with room cannot take a chunk's nine shards between
    // them (here: seven capped, one with room for two), the put is refused
    // before anything is written, naming the full nodes.
    let nodes = store.nodes();
    for n in &nodes[..7] {
        n.set_quota(500);
    }
    let used = nodes[7].shards.stats().await.unwrap().used;
    nodes[7].set_quota(used + 25_000);
    let before = shard_files(dir.path()).len();
    match store.put("g", &d[..]).await {
        Err(e @ StoreError::StoreFull { .. }) => {
            let StoreError::StoreFull { room, need, full } = &e else {
                unreachable!()
            };
            assert_eq!((*room, *need), (2, 9));
            assert_eq!(
                full,
                &[
                    "node0", "node1", "node2", "node3", "node4", "node5", "node6", "node8"
                ]
            );
            assert!(e.to_string().contains("room for 2 of the 9 shards"), "{e}");
        }
        other => panic!("expected StoreFull, got {other:?}"),
    }
    assert_eq!(shard_files(dir.path()).len(), before, "a refused put wrote");
    assert!(matches!(
        get(&store, "g").await,
        Err(StoreError::NotFound(_))
    ));
    // Lifting the cap makes room again.
    for n in &nodes[..8] {
        n.set_quota(cloudshell_store::NO_QUOTA);
    }
    store.put("g", &d[..]).await.unwrap();
}

/// A filesystem of `bytes` at `dir` (tmpfs), when this runs as root; the
/// test that wants it skips otherwise.
fn small_filesystem(dir: &Path, bytes: u64) -> bool {
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: mounting a small filesystem needs root (CI runs as root)");
    }
    ok
}

#[tokio::test]
async fn a_full_disk_is_reported_as_full_with_its_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    if !small_filesystem(&disk, 1 << 20) {
        return;
    }
    let result = async {
        // An agent quota far above what the disk holds.
        let shards = LocalDirStore::open(&disk, 1 << 40).unwrap();
        let stats = shards.stats().await.unwrap();
        assert!(stats.disk_free <= 1 << 20, "{stats:?}");
        assert_eq!(stats.room(), stats.disk_free);
        let mut i = 0u64;
        loop {
            let key = cloudshell_store::ShardKey {
                file_id: FileId([5; 16]),
                chunk: i,
                index: 0,
            };
            let len = 200_000usize;
            let header = cloudshell_store::ShardHeader {
                flags: 0,
                k: 1,
                m: 0,
                key,
                payload_len: len as u32,
                shard_len: cloudshell_store::format::shard_len(len, 1) as u32,
            };
            let mut blob = header.encode().to_vec();
            blob.resize(cloudshell_store::format::HEADER_LEN + len, 7);
            match shards.put(key, bytes::Bytes::from(blob)).await {
                Ok(()) => i += 1,
                Err(e) => {
                    assert!(e.is_full(), "{e:?}");
                    assert!(
                        matches!(e, cloudshell_store::ShardError::DiskFull { .. }),
                        "{e:?}"
                    );
                    assert!(e.to_string().contains("full"), "{e}");
                    break;
                }
            }
            assert!(i < 10, "a 1 MiB disk took {i} shards of 200 kB");
        }
        // What was stored is whole, and nothing half-written is left.
        assert_eq!(shards.stats().await.unwrap().shards, i);
        assert!(shards.stats().await.unwrap().room() < 200_000);
    }
    .await;
    let _ = std::process::Command::new("umount").arg(&disk).status();
    result
}

/// A node whose stats say it has room but whose disk refuses every write
/// (filled by something else since it was asked).
struct FilledMeanwhile(LocalDirStore);

impl cloudshell_store::ShardStore for FilledMeanwhile {
    fn put(
        &self,
        _key: cloudshell_store::ShardKey,
        _blob: bytes::Bytes,
    ) -> futures_util::future::BoxFuture<'_, Result<(), cloudshell_store::ShardError>> {
        Box::pin(async { Err(cloudshell_store::ShardError::DiskFull { free: 0 }) })
    }
    fn get(
        &self,
        key: cloudshell_store::ShardKey,
    ) -> futures_util::future::BoxFuture<'_, Result<bytes::Bytes, cloudshell_store::ShardError>>
    {
        self.0.get(key)
    }
    fn delete(
        &self,
        key: cloudshell_store::ShardKey,
    ) -> futures_util::future::BoxFuture<'_, Result<(), cloudshell_store::ShardError>> {
        self.0.delete(key)
    }
    fn list(
        &self,
        after: Option<cloudshell_store::ShardKey>,
        limit: usize,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<Vec<cloudshell_store::ShardKey>, cloudshell_store::ShardError>,
    > {
        self.0.list(after, limit)
    }
    fn verify(
        &self,
        key: cloudshell_store::ShardKey,
    ) -> futures_util::future::BoxFuture<'_, Result<[u8; 32], cloudshell_store::ShardError>> {
        self.0.verify(key)
    }
    fn stats(
        &self,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<cloudshell_store::StoreStats, cloudshell_store::ShardError>,
    > {
        self.0.stats()
    }
}

#[tokio::test]
async fn a_node_that_fills_up_during_a_put_loses_its_shards_to_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let filled = LocalDirStore::open(node_dir(dir.path(), 8), 1 << 40).unwrap();
    let store = with_ninth(dir.path(), Arc::new(FilledMeanwhile(filled)));
    let d = data(500_000, 13);
    store.put("f", &d[..]).await.unwrap();
    let (_, manifest) = store.index().file("f").unwrap().unwrap();
    assert!(
        manifest
            .chunks
            .iter()
            .all(|c| c.shards.iter().all(|s| s.node != "node8")),
        "a shard is placed on the full node"
    );
    assert_eq!(get(&store, "f").await.unwrap(), d);
}

/// Puts go by the nodes' last answers about their room (asked again in
/// the background); a put that those answers say cannot fit asks again
/// before refusing, so room freed by a delete is used at once.
#[tokio::test]
async fn room_freed_by_a_delete_takes_the_next_put_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("index.redb"),
        &KeySource::NoEncryption,
        nodes(dir.path(), 9, 200_000),
        settings(64 * 1024),
    )
    .unwrap();
    let d = data(300_000, 21);
    let mut stored = 0;
    let refused = loop {
        match store.put(&format!("f{stored}"), &d[..]).await {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 50, "nine 200 kB nodes took 50 files of 300 kB");
    };
    assert!(
        matches!(&refused, StoreError::StoreFull { .. })
            || matches!(&refused, StoreError::ShardWrite { source, .. } if source.is_full()),
        "{refused:?}"
    );
    assert!(stored > 0);
    store.delete("f0").await.unwrap();
    store.put("again", &d[..]).await.unwrap();
    assert_eq!(get(&store, "again").await.unwrap(), d);
}

/// A read into a chunk channel (what the HTTP and S3 bodies are made of)
/// gives the bytes asked for, each chunk whole; a read that fails ends the
/// stream with an error, so a body built on it breaks off instead of
/// ending as if complete.
#[tokio::test]
async fn a_chunk_stream_carries_the_range_and_ends_in_an_error_when_the_read_fails() {
    use futures_util::StreamExt as _;
    let f = fixture(KeySource::NoEncryption, 4096);
    let d = data(10 * 4096 + 123, 9);
    f.store.put("f", &d[..]).await.unwrap();
    let version = f.store.version("f").unwrap();
    let (tx, mut body) = cloudshell_store::chunk_channel();
    let (sent, got) = tokio::join!(f.store.read_chunks(&version, 5000..30_000, tx), async {
        let mut got = Vec::new();
        while let Some(item) = body.next().await {
            got.extend_from_slice(&item.unwrap());
        }
        got
    });
    assert_eq!(sent.unwrap(), 25_000);
    assert_eq!(got, &d[5000..30_000]);
    // Four nodes gone: no chunk can be read.
    for n in &f.store.nodes()[..4] {
        n.set_online(false);
    }
    let (tx, body) = cloudshell_store::chunk_channel();
    let (sent, items) = tokio::join!(
        f.store.read_chunks(&version, 0..d.len() as u64, tx),
        body.collect::<Vec<_>>()
    );
    assert!(
        matches!(sent, Err(StoreError::Unrecoverable { .. })),
        "{sent:?}"
    );
    let last = items.last().expect("the stream says why it ended");
    assert!(last.is_err(), "the stream ended as if complete");
}
