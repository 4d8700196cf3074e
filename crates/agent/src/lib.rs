//! The node agent: registers a Node, keeps its Lease, runs the pods bound to it as Linux
//! processes (see `init` for the process runtime), injects ConfigMaps and Secrets as the kubelet
//! does (`env`, `volumes`), keeps mounted configuration current by watching it, and serves logs
//! and exec to the API server (`server`). It talks to the cluster only through the API.

pub mod env;
pub mod execio;
pub mod expand;
pub mod init;
pub mod logs;
pub mod node;
pub mod pods;
pub mod server;
pub mod spdy;
pub mod volumes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client};

pub struct Config {
    pub client: Client,
    pub node_name: String,
    /// Where pod directories (volume tmpfs mounts, logs) live.
    pub root: PathBuf,
    pub listen: std::net::SocketAddr,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The API server as pods should reach it (KUBERNETES_SERVICE_HOST/PORT).
    pub api_host: String,
    pub api_port: u16,
}

/// Runs the agent until `stop` fires (or its sender is dropped); then stops every container and
/// unmounts the pods' in-memory volumes, so no Secret stays in memory after lockbox exits.
pub async fn run(cfg: Config, mut stop: tokio::sync::oneshot::Receiver<()>) -> anyhow::Result<()> {
    // Before anything else: the volumes a killed agent left mounted hold Secret values.
    let stale = volumes::unmount_all_under(&cfg.root.join("pods"));
    if stale > 0 {
        tracing::info!(mounts = stale, "removed the pod volumes a previous agent left mounted");
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let port = listener.local_addr()?.port();
    let ip = cfg.listen.ip().to_string();
    let agent = Arc::new(pods::Agent {
        client: cfg.client.clone(),
        node: cfg.node_name.clone(),
        root: cfg.root.clone(),
        host_ip: ip.clone(),
        api_host: cfg.api_host.clone(),
        api_port: cfg.api_port,
        exe: std::env::current_exe()?,
        pods: Default::default(),
        terminating: Default::default(),
    });
    let tls = server::tls_config(&cfg.ca_pem, &cfg.cert_pem, &cfg.key_pem)?;
    tokio::spawn(server::serve(agent.clone(), listener, tls));
    node::register(&cfg.client, &cfg.node_name, &ip, port).await?;
    {
        let (client, name, ip) = (cfg.client.clone(), cfg.node_name.clone(), ip.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                if let Err(e) = node::heartbeat(&client, &name, &ip, port).await {
                    tracing::warn!(error = %e, "node heartbeat failed");
                }
            }
        });
    }
    // Any change to this node's pods, or to any ConfigMap or Secret, triggers a pass.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let fields = format!("spec.nodeName={}", cfg.node_name);
    let streams = vec![
        watcher(Api::<Pod>::all(cfg.client.clone()), watcher::Config::default().fields(&fields)).map(|_| ()).boxed(),
        // Metadata only: a change is a trigger; a pass reads the objects its pods use.
        watcher(Api::<PartialObjectMeta<ConfigMap>>::all(cfg.client.clone()), watcher::Config::default()).map(|_| ()).boxed(),
        watcher(Api::<PartialObjectMeta<Secret>>::all(cfg.client.clone()), watcher::Config::default()).map(|_| ()).boxed(),
    ];
    for mut s in streams {
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.next().await.is_some() {
                let _ = tx.try_send(());
            }
        });
    }
    loop {
        tokio::select! {
            _ = rx.recv() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = &mut stop => {
                agent.shutdown().await;
                return Ok(());
            }
        }
        if let Err(e) = agent.reconcile_all().await {
            tracing::debug!(error = %e, "agent pass failed");
        }
    }
}
