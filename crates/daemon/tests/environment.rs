//! The CloudShell side of a node against the real emulator, in process:
//! an environment made RUNNING, commands in its shell, and the agent's
//! upload by the presigned form and through the shell.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::time::Duration;

use cloudshell_daemon::nodes::environment;

async fn emulator(dir: &std::path::Path) -> (cloudshell_emulator::Emulator, cloudshell::Client) {
    let mut config = cloudshell_emulator::EmulatorConfig::new(dir);
    config.regions = vec!["eu-west-1".into()];
    config.timings.create = Duration::from_millis(300);
    config.timings.start = Duration::from_millis(300);
    config.timings.stop = Duration::from_millis(300);
    let emu = cloudshell_emulator::Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let cred = emu.config().credentials[0].clone();
    let client = cloudshell::Client::new(
        cloudshell::Config::builder()
            .region(cloudshell::Region::new("eu-west-1").unwrap())
            .endpoint_url(emu.endpoint())
            .credentials(cloudshell::Credentials::new(
                cred.access_key_id,
                cred.secret_access_key,
                None,
                None,
                "test",
            ))
            .build()
            .unwrap(),
    );
    (emu, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_is_made_running_and_takes_the_agent_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (_emu, client) = emulator(dir.path()).await;
    // None exists: the default one is created and waited for.
    let id = environment::ensure_running(&client).await.unwrap();
    // Found again, not created twice.
    assert_eq!(environment::ensure_running(&client).await.unwrap(), id);
    environment::heartbeat(&client, &id).await.unwrap();
    let (code, out) = environment::run(&client, &id, "echo hello; (exit 3)")
        .await
        .unwrap();
    assert_eq!((code, out.trim()), (3, "hello"));

    let home = dir.path().join("homes").join(id.as_str());
    let payload = bytes::Bytes::from((0..300_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    std::fs::create_dir_all(home.join(".cloudshell-agent/bin")).unwrap();
    environment::upload(
        &client,
        &id,
        ".cloudshell-agent/bin/by-form",
        payload.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(home.join(".cloudshell-agent/bin/by-form")).unwrap(),
        payload
    );
    environment::upload_through_shell(
        &client,
        &id,
        ".cloudshell-agent/bin/by-shell",
        payload.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(home.join(".cloudshell-agent/bin/by-shell")).unwrap(),
        payload
    );
    // No temporary file is left by either route.
    let left: Vec<_> = std::fs::read_dir(home.join(".cloudshell-agent/bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");

    // Suspended: started again.
    client
        .stop_environment(
            &cloudshell::operation::stop_environment::StopEnvironmentInput::new(id.clone()),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(environment::ensure_running(&client).await.unwrap(), id);
    assert_eq!(
        environment::status(&client, &id).await.unwrap(),
        cloudshell::EnvironmentStatus::Running
    );
}
