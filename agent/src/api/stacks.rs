//! Stacks (issue 15): `GET /stacks` and `GET /stacks/{id-or-name}` as in the Platform
//! API (every signed-in user), each with the images Haven has for it; and
//! `PUT /stacks/{stack}/images/{run|build}` (`hctl stacks:import`, admins): the body is a
//! stack image (`havend stack:build`), streamed to this node's disk while hashed, then
//! unpacked here (which checks it is a whole, safe archive) and stored in the slug store
//! by its sha256; only then is it recorded, and every other node fetches and unpacks it.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use futures::StreamExt;
use haven_api as w;
use haven_raft::catalog::{DEFAULT_STACK, STACKS};
use haven_raft::command::Command;
use haven_raft::model::{stack_image_key, StackImage, StackImageKind, State as Model};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::info;

use super::apps::name_id;
use super::{allow, write, Action, ApiContext, ApiError, Caller};
use crate::stacks::roots::{os_release, short};

use crate::slugs::MAX_IMAGE_BYTES;

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn image_wire(s: &Model, i: &StackImage) -> w::StackImage {
    w::StackImage {
        kind: i.kind.as_str().to_string(),
        sha256: i.sha256.clone(),
        bytes: i.bytes,
        unpacked_bytes: i.unpacked_bytes,
        os: i.os.clone(),
        nodes: i
            .holders
            .iter()
            .map(|h| s.nodes.get(h).map_or(h.to_string(), |n| n.name.clone()))
            .collect(),
        created_at: i.created_at.to_rfc3339(),
    }
}

/// Model → wire for one of the catalog's stacks.
fn stack_wire(s: &Model, name: &str, created: &str) -> w::Stack {
    let images: Vec<w::StackImage> = StackImageKind::ALL
        .iter()
        .filter_map(|k| s.stack_images.get(&stack_image_key(name, *k)))
        .map(|i| image_wire(s, i))
        .collect();
    let updated = images
        .iter()
        .map(|i| i.created_at.clone())
        .max()
        .unwrap_or_else(|| created.to_string());
    w::Stack {
        id: name_id("stack", name),
        name: name.to_string(),
        state: "supported".into(),
        default: name == DEFAULT_STACK,
        created_at: created.to_string(),
        updated_at: updated,
        images,
    }
}

fn created_at(s: &Model) -> String {
    s.cluster
        .as_ref()
        .map(|c| c.created_at.to_rfc3339())
        .unwrap_or_default()
}

/// The catalog's stack named by `key` (a name or its id).
fn find_stack(key: &str) -> Result<&'static str, ApiError> {
    STACKS
        .iter()
        .copied()
        .find(|n| *n == key || name_id("stack", n) == key)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Couldn't find that stack. Haven's stacks are {}.",
                STACKS.join(", ")
            ))
        })
}

/// `GET /stacks`.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Own)?;
    let out: Vec<w::Stack> = ctx.raft.with_state(|s| {
        let created = created_at(s);
        STACKS.iter().map(|n| stack_wire(s, n, &created)).collect()
    });
    Ok(Json(out).into_response())
}

/// `GET /stacks/{id-or-name}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Own)?;
    let name = find_stack(&key)?;
    let out = ctx.raft.with_state(|s| stack_wire(s, name, &created_at(s)));
    Ok(Json(out).into_response())
}

/// `PUT /stacks/{stack}/images/{run|build}`: the image file as the body.
pub async fn import(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, kind)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Cluster)?;
    let name = find_stack(&key)?;
    let kind = StackImageKind::parse(&kind).ok_or_else(|| {
        ApiError::not_found(format!(
            "no such image kind {kind:?}: a stack has a run and a build image"
        ))
    })?;
    let store = ctx.builder.slugs().clone();
    let tmp = store.temp_path();
    let received = receive(body, &tmp).await;
    let (sha, bytes) = match received {
        Ok(v) => v,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    let stacks = ctx.builder.stacks().clone();
    let dest = stacks.dir_of(&sha);
    let unpacked = if dest.is_dir() {
        crate::slugcache::dir_size(&dest)
    } else {
        let (file, into) = (tmp.clone(), dest.clone());
        let started = std::time::Instant::now();
        let r = tokio::task::spawn_blocking(move || crate::stacks::unpack::unpack(&file, &into))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        match r {
            Ok(info) => {
                info!(stack = name, kind = kind.as_str(), sha = %short(&sha), files = info.files,
                    bytes = info.bytes, ms = started.elapsed().as_millis() as u64,
                    "unpacked an imported stack image");
                info.bytes
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(ApiError::invalid(format!(
                    "this is not a stack image Haven can use: {e}"
                )));
            }
        }
    };
    let Some(os) = os_release(&dest) else {
        let _ = tokio::fs::remove_file(&tmp).await;
        let _ = tokio::fs::remove_dir_all(&dest).await;
        return Err(ApiError::invalid(
            "this is not a stack image: it has no /etc/os-release",
        ));
    };
    if !dest.join("bin/bash").exists() && !dest.join("usr/bin/bash").exists() {
        let _ = tokio::fs::remove_file(&tmp).await;
        let _ = tokio::fs::remove_dir_all(&dest).await;
        return Err(ApiError::invalid(
            "this stack image has no bash: builds and dynos run their commands with it",
        ));
    }
    store
        .add_file(&sha, &tmp)
        .map_err(|e| ApiError::internal(format!("store the stack image: {e}")))?;
    let _ = tokio::fs::remove_file(&tmp).await;
    write(
        &ctx,
        Command::SetStackImage {
            stack: name.to_string(),
            kind,
            sha256: sha.clone(),
            bytes,
            unpacked_bytes: unpacked,
            os,
            node: ctx.node_id,
            at: Utc::now(),
        },
    )
    .await?;
    info!(stack = name, kind = kind.as_str(), sha = %short(&sha), bytes, "imported a stack image");
    // This node (a follower, maybe) answers with the image it has just recorded.
    ctx.raft.read_barrier().await?;
    let out = ctx.raft.with_state(|s| stack_wire(s, name, &created_at(s)));
    Ok((StatusCode::OK, Json(out)).into_response())
}

/// Streams `body` into `tmp` while hashing it: its sha256 and length.
async fn receive(body: Body, tmp: &std::path::Path) -> Result<(String, u64), ApiError> {
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| ApiError::internal(format!("store the stack image: {e}")))?;
    let mut stream = body.into_data_stream();
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    let mut head: Vec<u8> = Vec::with_capacity(4);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        total += chunk.len() as u64;
        if total > MAX_IMAGE_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("a stack image may have at most {MAX_IMAGE_BYTES} bytes"),
            ));
        }
        if head.len() < 4 {
            head.extend(chunk.iter().take(4 - head.len()));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("store the stack image: {e}")))?;
    }
    if head != ZSTD_MAGIC {
        return Err(ApiError::invalid(
            "this is not a stack image: a zstd-compressed tar (havend stack:build) is expected",
        ));
    }
    file.sync_all()
        .await
        .map_err(|e| ApiError::internal(format!("store the stack image: {e}")))?;
    Ok((hex::encode(hasher.finalize()), total))
}
