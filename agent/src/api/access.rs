//! Who may do what (design §13): the one authorization rule every handler asks before it
//! reads or writes.
//!
//! [`authorize`] is pure: the caller (from their token), what they want to do, and the app
//! it concerns (if any). Handlers reach it through the helpers in `api/mod.rs`
//! ([`super::with_app`], [`super::app_id`], [`super::allow`]), which resolve the app first;
//! a handler that touches no app asks [`super::allow`] with an app-less action. Later
//! resource families (add-ons, ...) add an [`Action`] if theirs is new, and call the same
//! helpers.
//!
//! The rules, as on Heroku for personal apps:
//! - an app's owner and its collaborators may see and change it; collaborators may not
//!   rename or destroy it (owner or admin only, [`Action::AdministerApp`]);
//! - admins may do everything, on every app;
//! - anyone else is told the app does not exist (404 "Couldn't find that app."), so that
//!   app names leak nothing;
//! - cluster operations (nodes, Raft status, metrics, users) are for admins (403).

use axum::http::StatusCode;
use haven_raft::model;
use uuid::Uuid;

use super::ApiError;

/// Who made a request, from their token (or password, on the login call).
#[derive(Clone, Debug)]
pub struct Caller {
    pub email: String,
    pub user_id: Uuid,
    /// Admins run the cluster and see every app.
    pub admin: bool,
}

/// What a caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Their own account, tokens and build sources: every signed-in user.
    Own,
    /// Create an app (they become its owner): every signed-in user.
    CreateApp,
    /// Read anything of an app: info, config vars, releases, formation, builds, slugs,
    /// dynos, domains, drains, logs, collaborators.
    ViewApp,
    /// Change an app: config vars, formation, builds and pushes, rollbacks, dynos and
    /// one-off runs, domains, drains, buildpacks, maintenance mode, collaborators.
    ChangeApp,
    /// Rename or destroy an app: its owner or an admin (not collaborators).
    AdministerApp,
    /// Nodes, Raft status, metrics and users: admins only.
    Cluster,
}

/// Why a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The caller may not know the app exists: answered like an unknown app.
    NoSuchApp,
    /// The caller sees the app but may not do this to it.
    NotOwner,
    /// Admins only.
    AdminOnly,
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> ApiError {
        match d {
            Denied::NoSuchApp => ApiError::app_not_found(),
            Denied::NotOwner => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only the app's owner or an admin can rename or destroy it",
            ),
            Denied::AdminOnly => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only cluster admins can do this; ask an admin (hctl users lists them)",
            ),
        }
    }
}

/// Whether `caller` may do `action` to the app with id `app` in `state` (false for an app
/// that does not exist): [`authorize`] for filters over resources that name their app.
pub fn allows(state: &model::State, caller: &Caller, action: Action, app: Uuid) -> bool {
    state
        .apps
        .get(&app)
        .is_some_and(|a| authorize(caller, action, Some(a)).is_ok())
}

/// THE authorization rule: may `caller` do `action` (to `app`, for app actions)?
///
/// An app action without an app (it does not exist) is [`Denied::NoSuchApp`], the same
/// answer as an app the caller may not see.
pub fn authorize(caller: &Caller, action: Action, app: Option<&model::App>) -> Result<(), Denied> {
    match action {
        Action::Own | Action::CreateApp => Ok(()),
        Action::Cluster if caller.admin => Ok(()),
        Action::Cluster => Err(Denied::AdminOnly),
        Action::ViewApp | Action::ChangeApp | Action::AdministerApp => {
            let app = app.ok_or(Denied::NoSuchApp)?;
            if caller.admin || app.owner == caller.user_id {
                return Ok(());
            }
            if !app.is_member(caller.user_id) {
                return Err(Denied::NoSuchApp);
            }
            match action {
                Action::AdministerApp => Err(Denied::NotOwner),
                _ => Ok(()),
            }
        }
    }
}

/// Whether `caller` may see `app` (for lists: `GET /apps` shows only these).
pub fn can_view(caller: &Caller, app: &model::App) -> bool {
    authorize(caller, Action::ViewApp, Some(app)).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::DateTime;

    use super::*;

    const OWNER: Uuid = Uuid::from_u128(1);
    const COLLAB: Uuid = Uuid::from_u128(2);
    const STRANGER: Uuid = Uuid::from_u128(3);
    const ADMIN: Uuid = Uuid::from_u128(4);

    fn caller(id: Uuid) -> Caller {
        Caller {
            email: format!("{id}@x.org"),
            user_id: id,
            admin: id == ADMIN,
        }
    }

    fn app() -> model::App {
        let at = DateTime::from_timestamp(0, 0).unwrap();
        model::App {
            id: Uuid::from_u128(100),
            name: "shared".into(),
            stack: "heroku-24".into(),
            buildpacks: Vec::new(),
            maintenance: false,
            domains: Vec::new(),
            drains: Vec::new(),
            created_at: at,
            updated_at: at,
            released_at: None,
            config: Default::default(),
            releases: Vec::new(),
            formation: BTreeMap::new(),
            owner: OWNER,
            collaborators: vec![model::Collaborator {
                id: Uuid::from_u128(200),
                user: COLLAB,
                created_at: at,
            }],
        }
    }

    #[test]
    fn the_rules_table() {
        use Action::*;
        use Denied::*;
        let a = app();
        let ok = Ok(());
        // (who, action, app given, expected)
        let cases: Vec<(Uuid, Action, bool, Result<(), Denied>)> = vec![
            (OWNER, ViewApp, true, ok),
            (OWNER, ChangeApp, true, ok),
            (OWNER, AdministerApp, true, ok),
            (COLLAB, ViewApp, true, ok),
            (COLLAB, ChangeApp, true, ok),
            (COLLAB, AdministerApp, true, Err(NotOwner)),
            (STRANGER, ViewApp, true, Err(NoSuchApp)),
            (STRANGER, ChangeApp, true, Err(NoSuchApp)),
            (STRANGER, AdministerApp, true, Err(NoSuchApp)),
            (ADMIN, ViewApp, true, ok),
            (ADMIN, ChangeApp, true, ok),
            (ADMIN, AdministerApp, true, ok),
            // An app that does not exist looks the same to everyone.
            (OWNER, ViewApp, false, Err(NoSuchApp)),
            (ADMIN, ChangeApp, false, Err(NoSuchApp)),
            (STRANGER, AdministerApp, false, Err(NoSuchApp)),
            (STRANGER, Own, false, ok),
            (STRANGER, CreateApp, false, ok),
            (COLLAB, Cluster, false, Err(AdminOnly)),
            (OWNER, Cluster, true, Err(AdminOnly)),
            (ADMIN, Cluster, false, ok),
        ];
        for (who, action, with_app, want) in cases {
            let got = authorize(&caller(who), action, with_app.then_some(&a));
            assert_eq!(got, want, "{who} {action:?} app={with_app}");
        }
    }

    #[test]
    fn lists_show_only_the_callers_apps() {
        let a = app();
        assert!(can_view(&caller(OWNER), &a));
        assert!(can_view(&caller(COLLAB), &a));
        assert!(can_view(&caller(ADMIN), &a));
        assert!(!can_view(&caller(STRANGER), &a));
    }

    #[test]
    fn refusals_are_herokus_errors() {
        let e: ApiError = Denied::NoSuchApp.into();
        assert_eq!(
            (e.status.as_u16(), e.id, e.message.as_str()),
            (404, "not_found", "Couldn't find that app.")
        );
        for d in [Denied::NotOwner, Denied::AdminOnly] {
            let e: ApiError = d.into();
            assert_eq!((e.status.as_u16(), e.id), (403, "forbidden"));
        }
    }
}
