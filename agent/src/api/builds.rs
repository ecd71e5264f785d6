//! Builds and their inputs: `POST /sources` and `PUT/GET /sources/{id}` (source tarballs
//! kept on this node), `POST/GET /apps/{app}/builds[/{id}]`, the build's output stream
//! (`GET /apps/{app}/builds/{id}/output`), slugs (`GET /apps/{app}/slugs/{id}`) and the
//! app's buildpacks (`GET/PUT /apps/{app}/buildpack-installations`).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use haven_api as w;
use haven_raft::command::Command;
use haven_raft::model::{self, validate_buildpack, State as Model};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::apps::{time, user_ref};
use super::body::JsonBody;
use super::paging::{page, range_header, KeyKind, RangeField, SortKey};
use super::{allow, app_id, output_app, with_app, write, Action, ApiContext, ApiError, Caller};
use crate::builder::{BuildError, BuildSource, Requester};

impl From<BuildError> for ApiError {
    fn from(e: BuildError) -> ApiError {
        match e {
            BuildError::SourceUnreadable(_) => ApiError::bad_request(e.to_string()),
            BuildError::ChecksumUnsupported(_) | BuildError::ChecksumMismatch { .. } => {
                ApiError::invalid(e.to_string())
            }
            BuildError::Refused(e) => e.into(),
            BuildError::Cluster(e) => e.into(),
            BuildError::Internal(m) => ApiError::internal(m),
        }
    }
}

/// Model → wire for a build.
pub fn to_wire(state: &Model, b: &model::Build) -> w::Build {
    w::Build {
        id: b.id.to_string(),
        app: w::IdRef {
            id: b.app.to_string(),
        },
        buildpacks: Some(
            b.buildpacks
                .iter()
                .map(|u| w::BuildpackRef {
                    url: u.clone(),
                    name: buildpack_name(u),
                })
                .collect(),
        ),
        output_stream_url: super::scheme::public_url(&b.output_stream_url),
        source_blob: w::SourceBlob {
            url: b.source_url.clone(),
            checksum: b.source_checksum.clone(),
            version: b.source_version.clone(),
            version_description: None,
        },
        release: b.release.map(|id| w::IdRef { id: id.to_string() }),
        slug: b.slug.map(|id| w::IdRef { id: id.to_string() }),
        stack: b.stack.clone(),
        status: b.status.as_str().into(),
        user: user_ref(state, &b.user_email),
        created_at: time(b.created_at),
        updated_at: time(b.updated_at),
    }
}

/// The registry-style name of a buildpack (`heroku/python` for a built-in).
fn buildpack_name(url: &str) -> String {
    if url.contains("://") || url.starts_with('/') {
        url.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(url)
            .trim_end_matches(".git")
            .to_string()
    } else if url.contains('/') {
        url.to_string()
    } else {
        format!("heroku/{url}")
    }
}

fn source_path(ctx: &ApiContext, id: Uuid) -> std::path::PathBuf {
    ctx.builder.data().sources_dir().join(id.to_string())
}

/// `POST /sources` → 201 `{source_blob: {get_url, put_url}}` on this node. Sources
/// belong to no app (ids are random uuids); every signed-in user may make them.
pub async fn create_source(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Own)?;
    let id = Uuid::new_v4();
    let url = super::scheme::public_url(&format!("{}/sources/{id}", ctx.builder.api_url()));
    let body = w::Source {
        source_blob: w::SourceUrls {
            get_url: url.clone(),
            put_url: url,
        },
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `PUT /sources/{id}`: the raw tarball, streamed to disk (up to the slug size limit).
pub async fn put_source(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Own)?;
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::not_found("no such source; create one with POST /sources"))?;
    let path = source_path(&ctx, id);
    let tmp = path.with_extension("part");
    let max = ctx.builder.max_bytes();
    let result = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| ApiError::internal(format!("store source: {e}")))?;
        let mut stream = body.into_data_stream();
        let mut total: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
            total += chunk.len() as u64;
            if total > max {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the source is over this cluster's limit of {max} bytes"),
                ));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal(format!("store source: {e}")))?;
        }
        file.sync_all()
            .await
            .map_err(|e| ApiError::internal(format!("store source: {e}")))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| ApiError::internal(format!("store source: {e}")))?;
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /sources/{id}`: the tarball.
pub async fn get_source(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    allow(&caller, Action::Own)?;
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::not_found("no such source"))?;
    let file = tokio::fs::File::open(source_path(&ctx, id))
        .await
        .map_err(|_| ApiError::not_found("no such source on this node"))?;
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Puts the source a build asks for into a local file: a source uploaded to this node is
/// used in place; another `http://` URL is downloaded (with the caller's token when it
/// points at a node of this cluster).
async fn fetch_source(
    ctx: &ApiContext,
    url: &str,
    headers: &HeaderMap,
) -> Result<std::path::PathBuf, ApiError> {
    let local_prefix = format!("{}/sources/", ctx.builder.api_url());
    let local = super::scheme::same_place(url, &local_prefix)
        .then(|| url.rsplit_once("/sources/").map(|(_, id)| id))
        .flatten();
    if let Some(id) = local {
        let id: Uuid = id
            .parse()
            .map_err(|_| ApiError::invalid(format!("source_blob.url {url:?} names no source")))?;
        let path = source_path(ctx, id);
        if !path.is_file() {
            return Err(ApiError::invalid(format!(
                "source_blob.url {url:?} has not been uploaded; PUT the tarball to it first"
            )));
        }
        return Ok(path);
    }
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(ApiError::invalid(format!(
            "source_blob.url {url:?} is not supported: upload with POST /sources and PUT, or give an http:// or https:// URL"
        )));
    }
    let cluster_api = ctx.raft.with_state(|s| {
        s.nodes
            .values()
            .any(|n| super::scheme::same_place(url, &format!("{}/", n.api_url)))
    });
    let mut req = ctx.http.get(url);
    if cluster_api {
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
    }
    let resp = req
        .send()
        .await
        .map_err(|e| ApiError::invalid(format!("cannot download the source from {url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(ApiError::invalid(format!(
            "cannot download the source from {url}: HTTP {}",
            resp.status()
        )));
    }
    let path = source_path(ctx, Uuid::new_v4());
    let max = ctx.builder.max_bytes();
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| ApiError::internal(format!("store source: {e}")))?;
    let mut stream = resp.bytes_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(ApiError::invalid(format!(
                    "source download interrupted: {e}"
                )));
            }
        };
        total += chunk.len() as u64;
        if total > max || file.write_all(&chunk).await.is_err() {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(ApiError::invalid(format!(
                "the source at {url} is over the limit of {max} bytes or could not be stored"
            )));
        }
    }
    Ok(path)
}

/// `POST /apps/{app}/builds {source_blob: {url, checksum, version}, buildpacks}` → 201.
/// The build runs on this node; follow it at `output_stream_url`.
pub async fn create(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<w::BuildCreate>,
) -> Result<Response, ApiError> {
    if body.source_blob.url.trim().is_empty() {
        return Err(ApiError::invalid(
            "source_blob.url is required: upload a tarball with POST /sources, then pass its get_url",
        ));
    }
    let buildpacks: Vec<String> = body
        .buildpacks
        .unwrap_or_default()
        .into_iter()
        .map(|b| if b.url.is_empty() { b.name } else { b.url })
        .collect();
    for bp in &buildpacks {
        validate_buildpack(bp).map_err(ApiError::invalid)?;
    }
    let app = with_app(&ctx, &caller, Action::ChangeApp, &key, |_, a| a.summary()).await?;
    let file = fetch_source(&ctx, &body.source_blob.url, &headers).await?;
    let build = ctx
        .builder
        .start(
            &app,
            BuildSource {
                file,
                url: body.source_blob.url.clone(),
                checksum: body.source_blob.checksum.clone(),
                version: body.source_blob.version.clone(),
            },
            buildpacks,
            Requester {
                email: caller.email.clone(),
                user_id: caller.user_id,
            },
        )
        .await?;
    let wire = ctx.raft.with_state(|s| to_wire(s, &build));
    Ok((StatusCode::CREATED, Json(wire)).into_response())
}

fn range_fields<'a>() -> [RangeField<&'a model::Build>; 2] {
    [
        RangeField {
            name: "created_at",
            kind: KeyKind::Text,
            key: |b| SortKey::Text(time(b.created_at)),
        },
        RangeField {
            name: "id",
            kind: KeyKind::Text,
            key: |b| SortKey::Text(b.id.to_string()),
        },
    ]
}

/// `GET /apps/{app}/builds`: oldest first unless `order=desc`.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let range = range_header(&headers)?;
    let page = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        page(s.app_builds(a.id), range, &range_fields()).map(|p| p.map(|b| to_wire(s, b)))
    })
    .await??;
    Ok(page.into_response())
}

fn find_build<'a>(s: &'a Model, app: Uuid, id: &str) -> Option<&'a model::Build> {
    let id: Uuid = id.parse().ok()?;
    s.builds.get(&id).filter(|b| b.app == app)
}

/// `GET /apps/{app}/builds/{id}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let b = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        find_build(s, a.id, &id).map(|b| to_wire(s, b))
    })
    .await?
    .ok_or_else(|| ApiError::not_found("Couldn't find that build."))?;
    Ok(Json(b).into_response())
}

/// `GET /apps/{app}/builds/{id}/output`: the build's output as `text/plain`, following a
/// running build until it ends. Asked on another node than the builder's, it is relayed.
pub async fn output(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (build_id, node, url) = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        find_build(s, a.id, &id).map(|b| {
            let url = s
                .nodes
                .get(&b.node)
                .map(|n| format!("{}/apps/{}/builds/{}/output", n.api_url, a.id, b.id));
            (b.id, b.node, url)
        })
    })
    .await?
    .ok_or_else(|| ApiError::not_found("Couldn't find that build."))?;
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if node == ctx.node_id {
        let stream = ctx
            .builder
            .output(build_id)
            .await
            .ok_or_else(|| ApiError::not_found("this build's output is gone from its node"))?;
        return Ok((text, Body::from_stream(stream)).into_response());
    }
    let url = url.ok_or_else(|| ApiError::not_found("the node that ran this build is gone"))?;
    let mut req = ctx.http.get(&url);
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        req = req.header(header::AUTHORIZATION, auth.clone());
    }
    let resp = req.send().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the node that ran this build does not answer: {e}"),
        )
    })?;
    if !resp.status().is_success() {
        return Err(ApiError::not_found(format!(
            "the node that ran this build answered HTTP {}",
            resp.status()
        )));
    }
    Ok((text, Body::from_stream(resp.bytes_stream())).into_response())
}

/// `GET /apps/{app}/slugs/{id}`.
pub async fn slug_info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let api_url = ctx.builder.api_url().to_string();
    let slug = with_app(&ctx, &caller, Action::ViewApp, &key, |_s, a| {
        let id: Uuid = id.parse().ok()?;
        let s = _s.slugs.get(&id).filter(|sl| sl.app == a.id)?;
        Some(w::Slug {
            id: s.id.to_string(),
            blob: w::SlugBlob {
                method: "get".into(),
                url: super::scheme::public_url(&format!(
                    "{api_url}/apps/{}/slugs/{}/blob",
                    a.id, s.id
                )),
            },
            buildpack_provided_description: s.buildpack_provided_description.clone(),
            checksum: Some(format!("SHA256:{}", s.sha256)),
            commit: s.commit.clone(),
            commit_description: None,
            process_types: s.process_types.clone(),
            size: Some(s.size),
            stack: w::NamedRef {
                id: s.stack.clone(),
                name: s.stack.clone(),
            },
            created_at: time(s.created_at),
            updated_at: time(s.created_at),
            holders: s.holders.iter().map(|h| h.to_string()).collect(),
        })
    })
    .await?
    .ok_or_else(|| ApiError::not_found("Couldn't find that slug."))?;
    Ok(Json(slug).into_response())
}

/// `GET /apps/{app}/slugs/{id}/blob`: the compressed slug, from this node's store.
pub async fn slug_blob(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let sha = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        let id: Uuid = id.parse().ok()?;
        s.slugs
            .get(&id)
            .filter(|sl| sl.app == a.id)
            .map(|sl| sl.sha256.clone())
    })
    .await?
    .ok_or_else(|| ApiError::not_found("Couldn't find that slug."))?;
    let path = ctx
        .builder
        .slugs()
        .path(&sha)
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            ApiError::not_found("this node does not hold that slug; ask one of its holders")
        })?;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ApiError::internal(format!("open slug: {e}")))?;
    Ok((
        [(header::CONTENT_TYPE, "application/zstd")],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

pub(super) fn installations(app: &model::App) -> Vec<w::BuildpackInstallation> {
    app.buildpacks
        .iter()
        .enumerate()
        .map(|(i, url)| w::BuildpackInstallation {
            ordinal: i as u32,
            buildpack: w::BuildpackRef {
                url: url.clone(),
                name: buildpack_name(url),
            },
        })
        .collect()
}

/// `GET /apps/{app}/buildpack-installations`.
pub async fn list_buildpacks(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let list = with_app(&ctx, &caller, Action::ViewApp, &key, |_, a| {
        installations(a)
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `PUT /apps/{app}/buildpack-installations {updates: [{buildpack}]}`: replaces the list
/// (empty: detect again).
pub async fn set_buildpacks(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<w::BuildpackInstallationsUpdate>,
) -> Result<Response, ApiError> {
    let buildpacks: Vec<String> = body
        .updates
        .into_iter()
        .map(|u| u.buildpack.trim().to_string())
        .collect();
    for bp in &buildpacks {
        validate_buildpack(bp).map_err(ApiError::invalid)?;
    }
    let app = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let out = write(
        &ctx,
        Command::SetBuildpacks {
            app,
            buildpacks,
            actor: caller.actor(),
        },
    )
    .await?;
    let app = output_app(out)?;
    Ok(Json(installations(&app)).into_response())
}

/// `GET /buildpacks/{name}` (no token): the Heroku CLI's buildpack registry lookup
/// (`HEROKU_BUILDPACK_REGISTRY_URL` pointed at a node), so that `buildpacks:set
/// heroku/python` stores the name itself, which the builder knows.
pub async fn registry_lookup(Path(name): Path<String>) -> Result<Response, ApiError> {
    let name = name.trim();
    validate_buildpack(name)
        .map_err(|_| ApiError::not_found(format!("Couldn't find the buildpack {name:?}.")))?;
    Ok(Json(serde_json::json!({ "blob_url": name, "name": name })).into_response())
}
