//! `cloudshell store`: the daemon (`serve`) and its clients (`put`, `get`,
//! `ls`, `rm`, `status`, `nodes`, `repair`), which talk to its JSON API.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cloudshell_daemon::config::{DEFAULT_PRINCIPAL, NodePlace, PrincipalConfig};
use cloudshell_daemon::nodes::sources::Sources;
use cloudshell_daemon::{Daemon, DaemonConfig};
use cloudshell_store_api::{self as wire, Client, ClientError, JobResult};
use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::io::AsyncWriteExt as _;

use crate::args::GlobalArgs;
use crate::copy::progress::Progress;
use crate::store_args::{
    KeyFileAction, KeysAction, PassphraseAction, PrincipalAction, ServeArgs, StoreArgs,
    StoreCommand,
};

/// Prints a line on stdout; a reader that went away (`| head`) ends the
/// output quietly instead of a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// Takes the hard limit on open files as the soft one: the usual soft
/// limit (1,024) is too few for a server holding many client connections
/// (S3 clients keep pools of them) besides its index and sockets.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!("could not raise the open files limit: {e}");
        }
    }
}

/// Runs a store command.
pub async fn run(global: &GlobalArgs, args: &StoreArgs) -> anyhow::Result<()> {
    let tls = match &args.pin {
        Some(pin) => {
            let fingerprint = cloudshell_net::tls::Fingerprint::parse(pin).with_context(|| {
                format!(
                    "--pin {pin:?} is not a SHA-256: give the 64 hex digits `store serve --tls` \
                     printed (colons allowed)"
                )
            })?;
            Some(cloudshell_net::tls::pinned_https_client_config(
                fingerprint,
            )?)
        }
        None => None,
    };
    let api = Client::with_tls(&args.url, args.token.clone(), tls).map_err(explain)?;
    let json = args.json;
    match &args.command {
        StoreCommand::Serve(s) => serve(global, s).await,
        StoreCommand::Keys { action } => keys(&api, action, json).await,
        StoreCommand::Scrub => scrub(&api, json).await,
        StoreCommand::Recover(s) => recover(global, s, json).await,
        StoreCommand::Put { local, name } => put(&api, json, local, name.as_deref()).await,
        StoreCommand::Get { name, local } => get(&api, json, name, local.as_deref()).await,
        StoreCommand::Ls => ls(&api, json).await,
        StoreCommand::Rm { name } => {
            api.delete(name).await.map_err(explain)?;
            print(json, &Deleted { deleted: name }, &format!("deleted {name}"));
            Ok(())
        }
        StoreCommand::Status { name } => status(&api, json, name.as_deref()).await,
        StoreCommand::Nodes { quota } => nodes(&api, quota, json).await,
        StoreCommand::Repair => {
            let job = api.repair().await.map_err(explain)?;
            let done = follow(&api, job, json).await?;
            let Some(JobResult::Repair(r)) = &done else {
                bail!("the daemon's repair job finished without a repair's result");
            };
            print(
                json,
                r,
                &format!(
                    "repaired {} chunks of {} files ({} shards rebuilt, {} moved off crowded nodes){}",
                    r.chunks_repaired,
                    r.files,
                    r.shards_rebuilt,
                    r.shards_spread,
                    if r.failed.is_empty() {
                        String::new()
                    } else {
                        format!("; {} files could not be repaired", r.failed.len())
                    }
                ),
            );
            Ok(())
        }
        StoreCommand::Redistribute => {
            let job = api.redistribute().await.map_err(explain)?;
            let done = follow(&api, job, json).await?;
            let Some(JobResult::Redistribute(r)) = &done else {
                bail!("the daemon's redistribution finished without its result");
            };
            let failed = if r.shards_failed > 0 {
                format!(
                    "; {} could not be moved (a node did not answer): run it again",
                    r.shards_failed
                )
            } else {
                String::new()
            };
            print(json, r, &format!("moved {} shards{failed}", r.shards_moved));
            Ok(())
        }
        StoreCommand::RemoveRegion {
            node,
            delete_environment,
        } => {
            let job = api
                .remove_node(node, *delete_environment)
                .await
                .map_err(explain)?;
            let done = follow(&api, job, json).await?;
            let Some(JobResult::Remove(r)) = &done else {
                bail!("the daemon's removal finished without its result");
            };
            print(json, r, &removed_text(r));
            Ok(())
        }
        StoreCommand::Passphrase(PassphraseAction::Change { old_env, new_env }) => {
            let old = crate::secret::secret_from(old_env.as_deref(), "old passphrase: ")?;
            let new = crate::secret::secret_from(new_env.as_deref(), "new passphrase: ")?;
            if new_env.is_none() && std::io::stdin().is_terminal() {
                let again = crate::secret::read_secret("new passphrase again: ")?;
                if again != new {
                    bail!("the two new passphrases differ; nothing was changed");
                }
            }
            let change = wire::KeyChange {
                old_passphrase: Some(old),
                new_passphrase: Some(new),
                new_key_file: false,
            };
            let v = api.change_key(&change).await.map_err(explain)?;
            print(
                json,
                &v,
                &format!(
                    "passphrase changed: {} data keys rewrapped, no shard rewritten; the old \
                     passphrase no longer opens the store: restart the daemon with the new one",
                    v.rewrapped
                ),
            );
            Ok(())
        }
        StoreCommand::KeyFile(KeyFileAction::Rotate) => {
            let change = wire::KeyChange {
                new_key_file: true,
                ..Default::default()
            };
            let v = api.change_key(&change).await.map_err(explain)?;
            print(
                json,
                &v,
                &format!(
                    "new key written to {}: {} data keys rewrapped, no shard rewritten; copy the \
                     file somewhere safe (the old key no longer opens the store)",
                    v.key_file.as_deref().unwrap_or("the key file"),
                    v.rewrapped
                ),
            );
            Ok(())
        }
        StoreCommand::Principal(PrincipalAction::Add { principal }) => {
            let p = PrincipalConfig::parse(principal)?;
            let regions: Vec<String> = p.regions.iter().map(ToString::to_string).collect();
            let v = api
                .add_principal(&p.name, &regions)
                .await
                .map_err(explain)?;
            print(
                json,
                &v,
                &format!(
                    "added principal {} with {} nodes ({}); `cloudshell store nodes` shows them \
                     coming up, and `cloudshell store redistribute` moves older shards onto them",
                    p.name,
                    v.nodes.len(),
                    v.nodes
                        .iter()
                        .map(|n| n.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            Ok(())
        }
        StoreCommand::Principal(PrincipalAction::Remove {
            name,
            delete_environments,
        }) => {
            let job = api
                .remove_principal(name, *delete_environments)
                .await
                .map_err(explain)?;
            let done = follow(&api, job, json).await?;
            let Some(JobResult::Remove(r)) = &done else {
                bail!("the daemon's removal finished without its result");
            };
            print(json, r, &removed_text(r));
            Ok(())
        }
        StoreCommand::Mount {
            dir,
            read_only,
            staging,
        } => mount(api.clone(), dir, *read_only, staging.clone()).await,
        StoreCommand::AddRegion { region, principal } => {
            let v = api
                .add_region(region, principal.as_deref())
                .await
                .map_err(explain)?;
            print(
                json,
                &v,
                &format!(
                    "added {}; `cloudshell store nodes` shows it coming up",
                    v.node.id
                ),
            );
            Ok(())
        }
    }
}

/// `{"deleted": NAME}`, what `rm` and `keys delete` print with --json.
#[derive(Serialize)]
struct Deleted<'a> {
    deleted: &'a str,
}

/// The client's error as this command says it: what happened, and what to
/// do when nothing answers.
/// `store mount`: serves the mount until it is unmounted.
async fn mount(
    api: Client,
    dir: &Path,
    read_only: bool,
    staging: Option<PathBuf>,
) -> anyhow::Result<()> {
    let request = cloudshell_mount::MountRequest {
        dir: dir.to_owned(),
        settings: cloudshell_mount::Settings {
            staging: staging.unwrap_or_else(std::env::temp_dir),
            read_only,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
        },
    };
    let url = api.base().to_owned();
    let shown = dir.display().to_string();
    cloudshell_mount::run(api, request, || {
        eprintln!(
            "The store at {url} is mounted on {shown}{}. Files written there are stored \
             when closed. Unmount with Ctrl-C here, or `umount {shown}` (`fusermount3 -u \
             {shown}` without root).",
            if read_only { ", read-only" } else { "" }
        );
    })
    .await
    .map_err(|e| match e {
        cloudshell_mount::MountError::Daemon(c) => explain(c),
        e => anyhow::Error::new(e),
    })
}

fn explain(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Unreachable { url, .. } => anyhow::anyhow!(
            "no store daemon answers at {url}: start one with `cloudshell store serve` \
             (`--emulated` to try it locally), or point --url / CLOUDSHELL_STORE_URL at it"
        ),
        e => anyhow::Error::new(e),
    }
}

/// Follows a job to its end, with a progress bar on a terminal. Returns
/// its result.
async fn follow(api: &Client, job: wire::Job, json: bool) -> anyhow::Result<Option<JobResult>> {
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr())
            .with_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            )
            .with_message(job.kind.as_str())
    });
    loop {
        let j = api.job(job.id).await.map_err(explain)?;
        if let Some(b) = &bar {
            b.set_length(j.total);
            b.set_position(j.done);
        }
        if !j.running {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            if let Some(e) = &j.error {
                bail!("{} failed: {e}", j.kind.as_str());
            }
            return Ok(j.result);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints `value` as JSON with --json, else `text`.
fn print(json: bool, value: &impl Serialize, text: &str) {
    if json {
        match serde_json::to_string(value) {
            Ok(v) => say!("{v}"),
            Err(e) => say!("{{\"error\": \"cannot print the answer as JSON: {e}\"}}"),
        }
    } else {
        say!("{text}");
    }
}

async fn put(
    api: &Client,
    json: bool,
    local: &std::path::Path,
    name: Option<&str>,
) -> anyhow::Result<()> {
    let stdin = local.as_os_str() == "-";
    let name = match (name, stdin) {
        (Some(n), _) => n.to_owned(),
        (None, true) => {
            bail!("give a name to store standard input under: `cloudshell store put - NAME`")
        }
        (None, false) => local
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .with_context(|| format!("{} has no file name; give one", local.display()))?,
    };
    let started = Instant::now();
    let (reader, size): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>) = if stdin {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let file = tokio::fs::File::open(local)
            .await
            .with_context(|| format!("cannot read {}", local.display()))?;
        let meta = file.metadata().await?;
        if meta.is_dir() {
            bail!("{} is a directory; store files one by one", local.display());
        }
        (Box::new(file), Some(meta.len()))
    };
    let progress = Progress::start(&format!("{name} ->"), 0, size, json);
    let counter = progress.counter();
    let body = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024).map(move |c| {
        if let Ok(b) = &c {
            counter.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        c
    });
    let v = api.put(&name, size, body).await.map_err(explain)?;
    drop(progress);
    print(
        json,
        &v,
        &format!(
            "stored {name}: {} in {:.1} s, survives the loss of {}",
            human(v.file.size),
            started.elapsed().as_secs_f64(),
            losses(v.survives_regions, v.survives_principals)
        ),
    );
    Ok(())
}

async fn get(
    api: &Client,
    json: bool,
    name: &str,
    local: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let to_stdout = local.is_some_and(|l| l.as_os_str() == "-");
    // The local file takes the name's last segment, never a path that
    // climbs out of the directory (an S3 key may well end in "..").
    let base = || match name.rsplit('/').next() {
        Some(b) if !b.is_empty() && b != "." && b != ".." => Ok(b),
        _ => Err(anyhow::anyhow!(
            "cannot name a local file after {name:?}; say where to write it: \
             cloudshell store get {name:?} LOCAL_PATH"
        )),
    };
    let path = match local {
        Some(l) if !to_stdout => {
            if l.is_dir() {
                l.join(base()?)
            } else {
                l.to_path_buf()
            }
        }
        _ if to_stdout => PathBuf::from("-"),
        _ => PathBuf::from(base()?),
    };
    let download = api.get(name, None).await.map_err(explain)?;
    let size = download.len;
    let progress = Progress::start(
        &format!("{name} <-"),
        0,
        size,
        json || to_stdout && !std::io::stderr().is_terminal(),
    );
    let counter = progress.counter();
    // Written under a temporary name and renamed: an interrupted get never
    // leaves a partial file under the real name.
    let temp = path.with_file_name(format!(
        ".{}.cloudshell-store-part",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin> = if to_stdout {
        Box::new(tokio::io::stdout())
    } else {
        Box::new(
            tokio::fs::File::create(&temp)
                .await
                .with_context(|| format!("cannot write {}", temp.display()))?,
        )
    };
    let mut body = download.body;
    let mut got = 0u64;
    let result: anyhow::Result<()> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.context("the download broke off")?;
            out.write_all(&chunk).await?;
            got += chunk.len() as u64;
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        out.flush().await?;
        if let Some(s) = size
            && got != s
        {
            bail!("the download broke off after {got} of {s} bytes (the daemon's log says why)");
        }
        Ok(())
    }
    .await;
    drop(progress);
    if let Err(e) = result {
        if !to_stdout {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        return Err(e.context(format!("get {name} failed; nothing was written")));
    }
    if !to_stdout {
        drop(out);
        tokio::fs::rename(&temp, &path)
            .await
            .with_context(|| format!("cannot move the download into {}", path.display()))?;
        #[derive(Serialize)]
        struct Fetched<'a> {
            name: &'a str,
            path: &'a std::path::Path,
            bytes: u64,
        }
        let v = Fetched {
            name,
            path: &path,
            bytes: got,
        };
        print(
            json,
            &v,
            &format!(
                "fetched {name} -> {}: {} in {:.1} s",
                path.display(),
                human(got),
                started.elapsed().as_secs_f64()
            ),
        );
    }
    Ok(())
}

async fn ls(api: &Client, json: bool) -> anyhow::Result<()> {
    let v = api.files().await.map_err(explain)?;
    if json {
        print(json, &v, "");
        return Ok(());
    }
    for f in &v.files {
        say!("{:>10}  {}", human(f.file.size), f.file.name);
    }
    Ok(())
}

async fn status(api: &Client, json: bool, name: Option<&str>) -> anyhow::Result<()> {
    let Some(name) = name else {
        let v = api.health().await.map_err(explain)?;
        let c = &v.capacity;
        let mut text = format!(
            "{} of {} nodes connected, {} files{}\ncapacity: {} free of {} usable ({} of {} raw \
             used, over {} nodes)",
            v.connected,
            v.nodes,
            v.files,
            if v.ready {
                ""
            } else {
                " (not ready: see `cloudshell store nodes`)"
            },
            human(c.total.usable_free),
            human(c.total.usable),
            human(c.total.used),
            human(c.total.raw),
            c.total.nodes
        );
        if c.principals.len() > 1 {
            for p in &c.principals {
                text.push_str(&format!(
                    "\n  {:<12} {} free of {} usable ({} of {} raw used, {} nodes)",
                    p.principal,
                    human(p.capacity.usable_free),
                    human(p.capacity.usable),
                    human(p.capacity.used),
                    human(p.capacity.raw),
                    p.capacity.nodes
                ));
            }
        }
        if !json && let Some(line) = survival_line(api, c.principals.len()).await? {
            text.push('\n');
            text.push_str(&line);
        }
        print(json, &v, &text);
        return Ok(());
    };
    let v = api
        .stat(name, wire::ChunkPage::default())
        .await
        .map_err(explain)?;
    if json {
        print(json, &v, "");
        return Ok(());
    }
    say!(
        "{name}: {} in {} chunks of {}+{} shards, survives the loss of {}",
        human(v.file.size),
        v.file.chunks,
        v.file.k,
        v.file.m,
        losses(v.survives_regions, v.survives_principals)
    );
    for c in &v.chunks {
        let nodes: Vec<&str> = c.shards.iter().map(|s| s.node.as_str()).collect();
        say!("  chunk {}: {}", c.index, nodes.join(" "));
    }
    Ok(())
}

async fn nodes(api: &Client, quotas: &[String], json: bool) -> anyhow::Result<()> {
    for q in quotas {
        let Some((region, size)) = q.split_once('=') else {
            anyhow::bail!("--quota {q:?}: give NODE=SIZE, like us-east-1=200M (or =none)");
        };
        let quota = Some(size.trim()).filter(|s| *s != "none");
        api.set_quota(region.trim(), quota)
            .await
            .map_err(explain)
            .with_context(|| format!("setting the quota of {region}"))?;
    }
    let v = api.nodes().await.map_err(explain)?;
    if json {
        print(json, &v, "");
        return Ok(());
    }
    say!(
        "{:<22} {:<14} {:>8} {:>10} {:>10} {:>10}  {}",
        "NODE",
        "STATE",
        "SHARDS",
        "USED",
        "QUOTA",
        "ROOM",
        "NOTE"
    );
    for n in &v.nodes {
        let connected = n.state == wire::NodeState::Connected;
        // The store's cap, when set, is the quota that counts.
        let quota = n
            .store_quota
            .map_or_else(|| human(n.quota), |q| format!("{}*", human(q)));
        let note = match (n.full, &n.last_error, &n.draining) {
            (_, Some(e), _) if !connected => e.clone(),
            (_, _, Some(why)) => why.clone(),
            (true, _, _) => "full: new chunks go to the other nodes".to_owned(),
            _ => String::new(),
        };
        say!(
            "{:<22} {:<14} {:>8} {:>10} {:>10} {:>10}  {}",
            n.id,
            if n.draining.is_some() && connected {
                "draining"
            } else if n.full && connected {
                "full"
            } else {
                n.state.as_str()
            },
            n.shards,
            human(n.used),
            quota,
            human(n.room),
            note
        );
    }
    let regions: std::collections::BTreeSet<&str> =
        v.nodes.iter().map(|n| n.region.as_str()).collect();
    let principals: std::collections::BTreeSet<&str> =
        v.nodes.iter().map(|n| n.principal.as_str()).collect();
    say!(
        "{} nodes in {} regions of {} principal{}",
        v.nodes.len(),
        regions.len(),
        principals.len(),
        if principals.len() == 1 { "" } else { "s" }
    );
    if let Some(line) = survival_line(api, principals.len()).await? {
        say!("{line}");
    }
    Ok(())
}

/// What every file survives (the least any file does), in words; `None`
/// with no file of any size.
async fn survival_line(api: &Client, principals: usize) -> anyhow::Result<Option<String>> {
    let files = api.files().await.map_err(explain)?;
    let least = files
        .files
        .iter()
        .filter(|f| f.file.size > 0)
        .filter_map(|f| f.health)
        .map(|h| (h.survives_regions, h.survives_principals))
        .reduce(|a, b| (a.0.min(b.0), a.1.min(b.1)));
    Ok(least.map(|(regions, lost_principals)| {
        let mut line = format!(
            "every file survives the loss of {}",
            losses(regions, lost_principals)
        );
        if principals > 1 && lost_principals == 0 {
            line.push_str(
                ", not of a whole principal (each holds too many of a chunk's shards: \
                 a third principal spreads them thinner)",
            );
        }
        line
    }))
}

/// What a removal did, in words.
fn removed_text(r: &wire::RemoveResult) -> String {
    format!(
        "removed {}: {} shards moved to the other nodes, {} rebuilt; environment {}",
        r.nodes.join(", "),
        r.shards_moved,
        r.shards_rebuilt,
        r.environments.join("; ")
    )
}

/// "3 regions", or "3 regions or 1 principal" when the store has several
/// principals (with one, losing it loses everything: 0).
fn losses(regions: usize, principals: usize) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    if principals == 0 {
        plural(regions, "region")
    } else {
        format!(
            "{} or {}",
            plural(regions, "region"),
            plural(principals, "principal")
        )
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Builds the daemon's configuration from the file and the flags.
fn serve_config(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<DaemonConfig> {
    let mut c = match &args.config {
        Some(path) => DaemonConfig::from_file(path)?,
        None => DaemonConfig::default(),
    };
    if args.config.is_none() || args.data_dir.is_some() {
        c.data_dir = match &args.data_dir {
            Some(d) => d.clone(),
            None => default_data_dir()?,
        };
    }
    c.emulated |= global.emulated;
    if let Some(d) = &global.emulator_data_dir {
        c.emulator_data_dir = Some(d.clone());
    }
    if let Some(url) = &global.endpoint_url {
        c.endpoint_url = Some(url.clone());
    }
    match args.regions.as_deref() {
        Some("all") => c.regions = cloudshell::Region::cloudshell(),
        Some(list) => {
            c.regions = list
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(cloudshell::Region::new)
                .collect::<Result<_, _>>()
                .context("--regions: give `all` or region names, like us-east-1,eu-west-1")?;
        }
        None => {}
    }
    if let Some(l) = args.listen {
        c.listen = l;
    }
    if args.key_file.is_some() {
        c.key_file = args.key_file.clone();
    }
    if args.passphrase_env.is_some() {
        c.passphrase_env = args.passphrase_env.clone();
    }
    c.no_encryption |= args.no_encryption;
    if args.agent_binary.is_some() {
        c.agent_binary = args.agent_binary.clone();
    }
    if args.token.is_some() {
        c.token = args.token.clone();
    }
    c.tls |= args.tls;
    if args.tls_cert.is_some() {
        c.tls_cert = args.tls_cert.clone();
        c.tls_key = args.tls_key.clone();
    }
    if !args.stun.is_empty() {
        c.stun = args.stun.clone();
    }
    if args.s3_listen.is_some() {
        c.s3_listen = args.s3_listen;
    }
    if let Some(s) = args.repair_after {
        c.repair_after_secs = s;
    }
    if !args.principals.is_empty() {
        c.principals = args
            .principals
            .iter()
            .map(|p| PrincipalConfig::parse(p))
            .collect::<Result<_, _>>()?;
    }
    if let Some(n) = args.emulate_principals {
        // Emulated principals are the emulator's: asking for them asks
        // for it.
        c.emulated = true;
        if n == 0 {
            anyhow::bail!("--emulate-principals 0: a store needs at least one principal");
        }
        c.principals = (1..=n)
            .map(|i| PrincipalConfig {
                name: emulated_principal(i),
                regions: Vec::new(),
            })
            .collect();
    }
    Ok(c)
}

/// The name of the `i`th emulated principal (from 1): `default`, `p2`, ...
fn emulated_principal(i: usize) -> String {
    if i <= 1 {
        DEFAULT_PRINCIPAL.to_owned()
    } else {
        format!("p{i}")
    }
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    Ok(dirs::data_dir()
        .context("no user data directory; pass --data-dir")?
        .join("cloudshell")
        .join("store"))
}

async fn serve(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<()> {
    let mut config = serve_config(global, args)?;
    raise_open_files_limit();
    if !config.emulated && config.endpoint_url.is_none() && !has_aws_credentials().await {
        eprintln!(
            "cloudshell store: no AWS credentials found; running on the embedded emulator \
             (--emulated) with local regions"
        );
        config.emulated = true;
    }
    let started = Instant::now();
    let emulated = config.emulated;
    let places = config.node_places()?;
    let (sources, emulator) = client_source(global, &config).await?;
    let daemon = Daemon::start(config, sources.clone())
        .await
        .context("the store daemon could not start")?;
    let nodes = daemon.state().nodes().len();
    eprintln!(
        "cloudshell store: API at {}/api ({}{}); bringing nodes up...",
        daemon.url(),
        describe_places(&places),
        if emulated { ", emulated" } else { "" }
    );
    if let Some(tls) = daemon.tls() {
        eprintln!(
            "cloudshell store: HTTPS with the certificate {} (SHA-256 {}); clients that do not \
             trust its signer pin it: cloudshell store --pin {} ..., curl --cacert {}",
            tls.cert_path.display(),
            tls.fingerprint,
            tls.fingerprint,
            tls.cert_path.display()
        );
    }
    if let Some(s3) = daemon.s3_url() {
        eprintln!(
            "cloudshell store: S3 endpoint at {s3} (make a key with `cloudshell store keys create`)"
        );
    }
    if let Some(emulator) = &emulator
        && let Some(cred) = emulator.config().credentials.first()
    {
        eprintln!(
            "cloudshell store: its emulator answers at {}; to look at the environments:\n  \
             AWS_ENDPOINT_URL_CLOUDSHELL={} AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} \
             cloudshell --region us-east-1 list",
            emulator.endpoint(),
            emulator.endpoint(),
            cred.access_key_id,
            cred.secret_access_key
        );
    }
    // SIGTERM (systemd, docker, kill) stops it as cleanly as Ctrl-C: the
    // index is closed, not left for the next start to tidy. Listened for
    // before "ready" is said: a stop that follows it at once must not find
    // the default action (death by the signal) still in place.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot wait for SIGTERM")?;
    match daemon.wait_ready(Duration::from_secs(600)).await {
        Ok(()) => eprintln!(
            "cloudshell store: ready: {nodes} of {nodes} nodes connected in {:.1} s; open {}",
            started.elapsed().as_secs_f64(),
            daemon.url()
        ),
        Err(e) => eprintln!("cloudshell store: warning: {e} (still trying)"),
    }
    let state = daemon.state().clone();
    let stopped: anyhow::Result<()> = tokio::select! {
        () = daemon.wait() => Ok(()),
        r = tokio::signal::ctrl_c() => {
            r.context("cannot wait for Ctrl-C")?;
            eprintln!("cloudshell store: stopping");
            Ok(())
        }
        _ = terminate.recv() => {
            eprintln!("cloudshell store: stopping (SIGTERM)");
            Ok(())
        }
    };
    // The emulator lives and dies with this process: its environments stop
    // with it, and every process in them (the agents) ends, as when AWS
    // suspends an environment. Against AWS the environments are left alone.
    if emulator.is_some() {
        // The nodes it runs now: those added while it ran too.
        let running: Vec<NodePlace> = state
            .nodes()
            .iter()
            .filter_map(|n| {
                let s = n.status();
                Some(NodePlace {
                    region: cloudshell::Region::new(&s.region).ok()?,
                    principal: s.principal,
                    id: s.id,
                })
            })
            .collect();
        stop_environments(&sources, &running).await;
    }
    drop(emulator);
    stopped
}

/// "9 regions" or "27 nodes: 3 principals in 9 regions".
fn describe_places(places: &[NodePlace]) -> String {
    let mut regions: Vec<&str> = places.iter().map(|p| p.region.as_str()).collect();
    regions.sort_unstable();
    regions.dedup();
    let mut principals: Vec<&str> = places.iter().map(|p| p.principal.as_str()).collect();
    principals.sort_unstable();
    principals.dedup();
    if principals.len() == 1 {
        format!("{} regions", regions.len())
    } else {
        format!(
            "{} nodes: {} principals in {} regions",
            places.len(),
            principals.len(),
            regions.len()
        )
    }
}

/// Stops the environment of every node in `places`, through the control
/// API. The node managers are stopped first, so nothing starts them again.
async fn stop_environments(sources: &Sources, places: &[NodePlace]) {
    use cloudshell::operation::stop_environment::StopEnvironmentInput;
    for place in places {
        let Ok(source) = sources.get(&place.principal) else {
            continue;
        };
        let region = &place.region;
        let Ok(client) = source.client(region).await else {
            continue;
        };
        let Ok(listed) = client.describe_environments().await else {
            continue;
        };
        for env in listed.environments {
            // Not running (already stopped) is an error too, and fine.
            if let Err(e) = client
                .stop_environment(&StopEnvironmentInput::new(env.environment_id.clone()))
                .await
            {
                tracing::debug!(%region, environment = %env.environment_id, "not stopped: {e}");
            }
        }
    }
}

async fn keys(api: &Client, action: &KeysAction, json: bool) -> anyhow::Result<()> {
    match action {
        KeysAction::Create { user } => {
            let v = api.create_key(user.as_deref()).await.map_err(explain)?;
            let listed = api.keys().await.map_err(explain)?;
            let endpoint = listed.endpoint.as_deref().unwrap_or("(no S3 endpoint)");
            let (id, secret) = (&v.key.access_key_id, &v.key.secret_access_key);
            print(
                json,
                &v,
                &format!(
                    "access key id:     {id}\nsecret access key: {secret}\nuser:              {}\n(the secret is shown only now)\n\n  \
                     export AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY={secret}\n  aws --endpoint-url {endpoint} s3 ls",
                    v.key.user,
                ),
            );
        }
        KeysAction::List => {
            let v = api.keys().await.map_err(explain)?;
            if json {
                print(json, &v, "");
            } else {
                for k in &v.keys {
                    say!("{}  {}", k.access_key_id, k.user);
                }
            }
        }
        KeysAction::Delete { access_key_id } => {
            api.delete_key(access_key_id).await.map_err(explain)?;
            print(
                json,
                &Deleted {
                    deleted: access_key_id,
                },
                &format!("deleted {access_key_id}"),
            );
        }
    }
    Ok(())
}

async fn scrub(api: &Client, json: bool) -> anyhow::Result<()> {
    let before = api.scrub_status().await.map_err(explain)?;
    api.scrub_start().await.map_err(explain)?;
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr())
            .with_style(
                indicatif::ProgressStyle::with_template("scrub [{bar:30}] {pos}/{len} files")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            )
    });
    let done = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = api.scrub_status().await.map_err(explain)?;
        if let Some(b) = &bar {
            b.set_length(s.files as u64);
            b.set_position(s.files_done as u64);
        }
        if !s.running && s.last_finished != before.last_finished {
            break s;
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    print(
        json,
        &done,
        &format!(
            "scrubbed {} files: {} shards verified in place, {} missing, {} corrupt, {} chunks \
             read whole ({} failed), {} shards rebuilt, {} orphans removed",
            done.files,
            done.shards_checked,
            done.missing,
            done.corrupt,
            done.chunks_read,
            done.read_failures,
            done.shards_rebuilt,
            done.orphans_deleted
        ),
    );
    Ok(())
}

async fn recover(global: &GlobalArgs, args: &ServeArgs, json: bool) -> anyhow::Result<()> {
    let config = serve_config(global, args)?;
    let started = Instant::now();
    eprintln!(
        "cloudshell store: bringing the nodes {} up to look for index backups...",
        config
            .node_places()?
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let data_dir = config.data_dir.clone();
    let (sources, _emulator) = client_source(global, &config).await?;
    let report = Daemon::recover(config, sources, Duration::from_secs(300))
        .await
        .context("recovery failed; the data directory was left as it was")?;
    for why in &report.skipped {
        eprintln!("cloudshell store: warning: passed over a newer index {why}");
    }
    #[derive(Serialize)]
    struct Recovered<'a> {
        files: usize,
        generation: u64,
        skipped: &'a [String],
        nodes_connected: usize,
        s3_buckets: usize,
        s3_objects: usize,
        data_dir: &'a std::path::Path,
    }
    let v = Recovered {
        files: report.files,
        generation: report.generation,
        skipped: &report.skipped,
        nodes_connected: report.nodes_connected,
        s3_buckets: report.s3_buckets,
        s3_objects: report.s3_objects,
        data_dir: &data_dir,
    };
    print(
        json,
        &v,
        &format!(
            "recovered the index of {} files and {} S3 objects in {} buckets (backup of {} ms \
             since the epoch, {} nodes answered) into {} in {:.1} s; now run `cloudshell store \
             serve` with the same flags (S3 access keys are not in backups: create new ones \
             with `cloudshell store keys create`)",
            report.files,
            report.s3_objects,
            report.s3_buckets,
            report.generation,
            report.nodes_connected,
            data_dir.display(),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Where each principal's CloudShell clients come from: AWS (or the
/// configured endpoint) through the standard chain for `default` and
/// through its profile for any other, or with `emulated` an emulator
/// started here, serving every CloudShell region and the configured ones,
/// with credentials for every principal and its state in
/// `emulator_data_dir` (DATA_DIR/emulator by default). Keep the emulator
/// as long as the daemon runs.
async fn client_source(
    global: &GlobalArgs,
    config: &DaemonConfig,
) -> anyhow::Result<(Sources, Option<cloudshell_emulator::Emulator>)> {
    let names: Vec<String> = config.principals().into_iter().map(|p| p.name).collect();
    if !config.emulated {
        let mut sources = Sources::none();
        for name in names {
            let profile = if name == DEFAULT_PRINCIPAL {
                global.profile.clone()
            } else {
                Some(name.clone())
            };
            sources = sources.with(
                name,
                cloudshell::ClientSource::aws(profile, config.endpoint_url.clone()),
            );
        }
        // A principal added while running is an AWS profile too.
        let endpoint_url = config.endpoint_url.clone();
        let sources = sources.making(std::sync::Arc::new(move |name: &str| {
            Ok(cloudshell::ClientSource::aws(
                Some(name.to_owned()),
                endpoint_url.clone(),
            ))
        }));
        return Ok((sources, None));
    }
    let data_dir = config
        .emulator_data_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("emulator"));
    let mut regions: Vec<cloudshell::Region> = config
        .node_places()?
        .into_iter()
        .map(|p| p.region)
        .collect();
    regions.dedup();
    let (emulator, sources) = crate::emulated::start(data_dir, &regions, &names).await?;
    Ok((sources, Some(emulator)))
}

/// Whether the standard chain finds credentials (without reaching for
/// instance metadata when AWS_EC2_METADATA_DISABLED is set).
async fn has_aws_credentials() -> bool {
    let Ok(config) = cloudshell::Config::load()
        .region(Some(match cloudshell::Region::new("us-east-1") {
            Ok(r) => r,
            Err(_) => return false,
        }))
        .load()
        .await
    else {
        return false;
    };
    cloudshell::Client::new(config)
        .resolved_credentials()
        .await
        .is_ok()
}
