//! Postgres backups: `GET/POST /apps/{app}/pg-backups`, `GET/DELETE
//! /apps/{app}/pg-backups/{b001-or-id}`, `GET .../{backup}/blob` (the dump) and `POST
//! .../{backup}/actions/restore`. A capture or restore answers when it is done.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use haven_api as w;
use haven_raft::command::{Command, CommandError, CommandOutput};
use haven_raft::model::{self, Backup, BackupStatus};

use super::apps::time;
use super::body::{JsonBody, OptionalJsonBody};
use super::{app_id, with_app, write, Action, ApiContext, ApiError, Caller};
use crate::addons::backups::BackupError;

fn to_wire(s: &model::State, b: &Backup) -> w::PgBackup {
    let app_name = s
        .apps
        .get(&b.app)
        .map(|a| a.name.clone())
        .unwrap_or_default();
    w::PgBackup {
        id: b.id.to_string(),
        name: b.label(),
        num: b.number,
        app: w::AppRef {
            id: b.app.to_string(),
            name: app_name,
        },
        addon: w::NamedRef {
            id: b.addon.to_string(),
            name: b.addon_name.clone(),
        },
        status: b.status.as_str().into(),
        succeeded: b.status == BackupStatus::Completed,
        error: match &b.status {
            BackupStatus::Failed(why) => Some(why.clone()),
            _ => None,
        },
        created_at: time(b.started_at),
        finished_at: b.finished_at.map(time),
        size: b.size,
        checksum: b.sha256.as_ref().map(|s| format!("SHA256:{s}")),
        copies: b.holders.len(),
        scheduled: b.scheduled,
    }
}

fn schedule_wire(s: &model::State, sch: &model::BackupSchedule) -> w::PgBackupSchedule {
    w::PgBackupSchedule {
        addon: w::NamedRef {
            id: sch.addon.to_string(),
            name: s
                .addons
                .get(&sch.addon)
                .map(|a| a.name.clone())
                .unwrap_or_default(),
        },
        app: w::AppRef {
            id: sch.app.to_string(),
            name: s
                .apps
                .get(&sch.app)
                .map(|a| a.name.clone())
                .unwrap_or_default(),
        },
        at: sch.at_text(),
        retain: model::SCHEDULED_RETAINED,
        created_at: time(sch.created_at),
    }
}

/// `GET /apps/{app}/pg-backup-schedules`.
pub async fn schedules(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let list = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        s.backup_schedules
            .values()
            .filter(|sch| sch.app == a.id && s.addons.contains_key(&sch.addon))
            .map(|sch| schedule_wire(s, sch))
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `POST /apps/{app}/pg-backup-schedules {"database": "DATABASE", "at": "02:00 UTC"}` →
/// 201; a second schedule of the same database moves it.
pub async fn schedule(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<w::PgBackupScheduleCreate>,
) -> Result<Response, ApiError> {
    app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let (hour, minute) = model::parse_schedule_time(&body.at).map_err(ApiError::invalid)?;
    let (app, addon) = target(&ctx, &caller, &key, body.database.as_deref()).await?;
    let sch = model::BackupSchedule {
        addon: addon.id,
        app,
        hour,
        minute,
        created_at: chrono::Utc::now(),
    };
    write(
        &ctx,
        Command::ScheduleBackups {
            schedule: sch.clone(),
        },
    )
    .await?;
    let wire = ctx.raft.with_state(|s| schedule_wire(s, &sch));
    Ok((StatusCode::CREATED, Json(wire)).into_response())
}

/// `DELETE /apps/{app}/pg-backup-schedules/{database}`.
pub async fn unschedule(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, database)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (app, addon) = target(&ctx, &caller, &key, Some(&database)).await?;
    let wire = ctx
        .raft
        .with_state(|s| {
            s.backup_schedules
                .get(&addon.id)
                .map(|sch| schedule_wire(s, sch))
        })
        .ok_or_else(|| ApiError::not_found(format!("{} has no backup schedule.", addon.name)))?;
    write(
        &ctx,
        Command::UnscheduleBackups {
            app,
            addon: addon.id,
        },
    )
    .await?;
    Ok(Json(wire).into_response())
}

/// The backup `key` (`b001`, `1` or an id) of app `app`.
fn find<'a>(s: &'a model::State, app: uuid::Uuid, key: &str) -> Option<&'a Backup> {
    let number = key.strip_prefix('b').unwrap_or(key).parse::<u32>().ok();
    s.app_backups(app)
        .into_iter()
        .find(|b| Some(b.number) == number || b.id.to_string() == key)
}

fn not_found(key: &str) -> ApiError {
    ApiError::not_found(format!("Couldn't find backup {key}."))
}

fn database_not_found(db: &str) -> ApiError {
    ApiError::not_found(format!(
        "Couldn't find a Postgres database {db} on this app; hctl addons lists them."
    ))
}

fn backup_error(e: BackupError) -> ApiError {
    match e {
        BackupError::Rejected(CommandError::Invalid(m)) => ApiError::invalid(m),
        BackupError::Rejected(CommandError::NotFound(m)) => ApiError::not_found(m),
        BackupError::Rejected(e) => ApiError::invalid(e.to_string()),
        BackupError::Cluster(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
        BackupError::Failed(m) => ApiError::invalid(m),
    }
}

/// The add-on a request's `database` names (default `DATABASE`) among the app's.
async fn target(
    ctx: &ApiContext,
    caller: &Caller,
    key: &str,
    database: Option<&str>,
) -> Result<(uuid::Uuid, model::Addon), ApiError> {
    let db = database.unwrap_or("DATABASE").trim().to_string();
    with_app(ctx, caller, Action::ChangeApp, key, |s, a| {
        s.app_addon(a.id, &db).cloned().map(|addon| (a.id, addon))
    })
    .await?
    .ok_or_else(|| database_not_found(&db))
}

/// `GET /apps/{app}/pg-backups`: oldest first.
pub async fn list(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let list = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        s.app_backups(a.id)
            .into_iter()
            .map(|b| to_wire(s, b))
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Json(list).into_response())
}

/// `GET /apps/{app}/pg-backups/{backup}`.
pub async fn info(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, backup)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let b = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        find(s, a.id, &backup).map(|b| to_wire(s, b))
    })
    .await?
    .ok_or_else(|| not_found(&backup))?;
    Ok(Json(b).into_response())
}

/// `POST /apps/{app}/pg-backups {"database": "DATABASE"}` → 201 with the finished backup
/// (422 with the reason when the dump failed).
pub async fn capture(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<w::PgBackupTarget>,
) -> Result<Response, ApiError> {
    let (app, addon) = target(&ctx, &caller, &key, body.database.as_deref()).await?;
    let b = ctx
        .backups
        .capture(app, &addon, false)
        .await
        .map_err(backup_error)?;
    if let BackupStatus::Failed(why) = &b.status {
        return Err(ApiError::invalid(format!(
            "Backup {} failed: {why}",
            b.label()
        )));
    }
    let wire = ctx.raft.with_state(|s| to_wire(s, &b));
    Ok((StatusCode::CREATED, Json(wire)).into_response())
}

/// `GET /apps/{app}/pg-backups/{backup}/blob`: the dump (`pg_restore` reads it).
pub async fn download(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, backup)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let b = with_app(&ctx, &caller, Action::ViewApp, &key, |s, a| {
        find(s, a.id, &backup).cloned()
    })
    .await?
    .ok_or_else(|| not_found(&backup))?;
    let path = ctx.backups.dump_file(&b).await.map_err(ApiError::invalid)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal(format!("open the dump: {e}")))?;
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.dump\"", b.label()),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `POST /apps/{app}/pg-backups/{backup}/actions/restore {"database": "DATABASE"}`:
/// replaces what the dump holds in the database, in one transaction.
pub async fn restore(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, backup)): Path<(String, String)>,
    OptionalJsonBody(body): OptionalJsonBody<w::PgBackupTarget>,
) -> Result<Response, ApiError> {
    let (app, addon) = target(&ctx, &caller, &key, body.database.as_deref()).await?;
    let b = ctx
        .raft
        .with_state(|s| find(s, app, &backup).cloned())
        .ok_or_else(|| not_found(&backup))?;
    ctx.backups
        .restore(&b, &addon)
        .await
        .map_err(|e| ApiError::invalid(format!("Restore of {} failed: {e}", b.label())))?;
    let wire = ctx.raft.with_state(|s| to_wire(s, &b));
    Ok(Json(wire).into_response())
}

/// `DELETE /apps/{app}/pg-backups/{backup}`.
pub async fn delete(
    State(ctx): State<ApiContext>,
    Extension(caller): Extension<Caller>,
    Path((key, backup)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let app = app_id(&ctx, &caller, Action::ChangeApp, &key).await?;
    let id = ctx
        .raft
        .with_state(|s| find(s, app, &backup).map(|b| b.id))
        .ok_or_else(|| not_found(&backup))?;
    let out = write(&ctx, Command::DeleteBackup { app, id }).await?;
    let CommandOutput::Backup(b) = out else {
        return Err(ApiError::internal("the command returned no backup"));
    };
    let wire = ctx.raft.with_state(|s| to_wire(s, &b));
    Ok(Json(wire).into_response())
}
