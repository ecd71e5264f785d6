//! `GET /cluster/backup` (`hctl cluster:backup FILE`, admins): a consistent copy of the
//! replicated state as a backup file (`crate::backup`), taken after a read barrier, so
//! it holds every write acknowledged before the call. With `?slugs=true` the slugs and
//! Postgres backup dumps the state names come too: this node fetches the ones it lacks
//! from their holders first; any no live holder sent are listed in the manifest's
//! `missing`. The file is assembled on this node's disk before the answer starts, so a
//! failure is an error status, never a truncated file.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use tracing::warn;

use super::{allow, Action, ApiContext, ApiError, Caller};
use crate::backup;

#[derive(Deserialize)]
pub struct BackupQuery {
    #[serde(default)]
    slugs: bool,
}

fn failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        format!("the backup failed: {e}"),
    )
}

pub async fn backup(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<BackupQuery>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    ctx.raft.read_barrier().await?;
    let store = ctx.builder.slugs().clone();
    let mut missing = Vec::new();
    if q.slugs {
        let wanted: Vec<(String, Vec<String>)> = ctx.raft.with_state(|s| {
            let addr = |n: &u64| s.nodes.get(n).map(|n| n.peer_addr.clone());
            let mut out: Vec<(String, Vec<String>)> = s
                .slugs
                .values()
                .map(|sl| {
                    (
                        sl.sha256.clone(),
                        sl.holders.iter().filter_map(addr).collect(),
                    )
                })
                .collect();
            out.extend(s.backups.values().filter_map(|b| {
                Some((
                    b.sha256.clone()?,
                    b.holders.iter().filter_map(addr).collect(),
                ))
            }));
            out
        });
        for (sha, holders) in wanted {
            if store.has(&sha) {
                continue;
            }
            for a in &holders {
                match store.fetch_from(&ctx.peers, a, &sha).await {
                    Ok(()) => break,
                    Err(e) => {
                        warn!(%sha, holder = %a, error = %e, "backup: a holder did not send a blob")
                    }
                }
            }
            if !store.has(&sha) {
                missing.push(sha);
            }
        }
    }
    let raft = ctx.raft.clone();
    let node = ctx.node_name.clone();
    let (file, manifest) = tokio::task::spawn_blocking(move || {
        let mut file = tempfile::tempfile()?;
        let manifest = backup::write(&raft, &node, q.slugs.then_some(&store), missing, &mut file)?;
        use std::io::Seek;
        file.rewind()?;
        anyhow::Ok((file, manifest))
    })
    .await
    .map_err(failed)?
    .map_err(failed)?;
    ctx.events.record(
        "backup",
        format!(
            "{} backed up the cluster state ({} apps, {} releases, {} blobs)",
            caller.email,
            manifest.apps,
            manifest.releases,
            manifest.blobs.len()
        ),
    );
    let name = format!(
        "haven-backup-{}-{}.tar.gz",
        manifest.cluster_name,
        manifest.created_at.format("%Y%m%dT%H%M%SZ")
    );
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
