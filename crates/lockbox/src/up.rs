//! `lockbox up`: the API server, the controllers and a node agent in one process. The
//! controllers and the agent are API clients with certificates of their own, exactly as they
//! would be against any Kubernetes.

use std::net::SocketAddr;

use anyhow::{Context, Result};

async fn client(started: &apiserver::Started, user: &str, groups: &[&str]) -> Result<kube::Client> {
    let text = started.client_kubeconfig(user, groups)?;
    let kc = kube::config::Kubeconfig::from_yaml(&text).context("in-process kubeconfig")?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(cfg)?)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "lockbox-node".into())
}

pub async fn run(cfg: apiserver::Config) -> Result<()> {
    let data_dir = cfg.data_dir.clone();
    let started = apiserver::start(cfg).await?;
    // Neither is system:masters: each has a bootstrap ClusterRole of its own (auth::bootstrap).
    let controllers_client = client(&started, "system:kube-controller-manager", &[]).await?;
    apiserver::supervise("controllers", move || controllers::run(controllers_client.clone()));

    let node = hostname();
    let agent_client = client(&started, &format!("system:node:{node}"), &["system:nodes"]).await?;
    let sans = vec![rcgen::SanType::IpAddress("127.0.0.1".parse()?), rcgen::SanType::DnsName("localhost".try_into()?)];
    let (cert_pem, key_pem) = started.pki.issue("lockbox-agent", &[], sans, rcgen::ExtendedKeyUsagePurpose::ServerAuth)?;
    let api_host = match started.listen.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        ip => ip.to_string(),
    };
    let agent_cfg = agent::Config {
        client: agent_client,
        node_name: node,
        root: data_dir.join("agent"),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ca_pem: started.pki.ca_cert_pem.clone(),
        cert_pem,
        key_pem,
        api_host,
        api_port: started.listen.port(),
    };
    let (stop_agent, stop) = tokio::sync::oneshot::channel();
    let agent = tokio::spawn(async move {
        if let Err(e) = agent::run(agent_cfg, stop).await {
            tracing::error!(error = %e, "the node agent stopped");
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        served = started.serving => return served?,
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // SIGTERM or Ctrl-C: the agent stops the pods and unmounts their Secret volumes first.
    tracing::info!("shutting down");
    let _ = stop_agent.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), agent).await;
    Ok(())
}
