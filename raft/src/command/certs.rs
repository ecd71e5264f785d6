//! Apps' certificates (SNI endpoints): add, replace, remove. The proposer has parsed and
//! checked the PEM; here only names, apps and ownership are checked.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::apps::app_mut;
use super::{CommandError, CommandOutput, CommandResult};
use crate::model::{CertInfo, SniEndpoint, State};

/// Adds an endpoint; its name must be free in the cluster.
pub(super) fn add(state: &mut State, endpoint: &SniEndpoint) -> CommandResult {
    app_mut(state, &endpoint.app)?;
    if state
        .sni_endpoints
        .values()
        .any(|e| e.name == endpoint.name)
    {
        return Err(CommandError::Conflict(format!(
            "an SNI endpoint named {} already exists",
            endpoint.name
        )));
    }
    if state.sni_endpoints.contains_key(&endpoint.id) {
        return Err(CommandError::Conflict("SNI endpoint id in use".into()));
    }
    state.sni_endpoints.insert(endpoint.id, endpoint.clone());
    Ok(CommandOutput::SniEndpoint(Box::new(endpoint.clone())))
}

/// The endpoint of `app` named by name or id.
fn find<'a>(state: &'a State, app: Uuid, key: &str) -> Result<&'a SniEndpoint, CommandError> {
    state
        .sni_endpoints
        .values()
        .find(|e| e.app == app && (e.name == key || e.id.to_string() == key))
        .ok_or_else(|| CommandError::NotFound(format!("SNI endpoint {key} not found")))
}

/// Replaces an endpoint's certificate and key.
pub(super) fn update(
    state: &mut State,
    app: Uuid,
    key: &str,
    certificate_chain: &str,
    private_key: &str,
    cert: &CertInfo,
    at: DateTime<Utc>,
) -> CommandResult {
    app_mut(state, &app)?;
    let id = find(state, app, key)?.id;
    let e = state
        .sni_endpoints
        .get_mut(&id)
        .ok_or_else(|| CommandError::NotFound(format!("SNI endpoint {key} not found")))?;
    e.certificate_chain = certificate_chain.to_string();
    e.private_key = private_key.to_string();
    e.cert = cert.clone();
    e.updated_at = at;
    Ok(CommandOutput::SniEndpoint(Box::new(e.clone())))
}

/// Removes an endpoint.
pub(super) fn remove(state: &mut State, app: Uuid, key: &str) -> CommandResult {
    app_mut(state, &app)?;
    let id = find(state, app, key)?.id;
    let e = state
        .sni_endpoints
        .remove(&id)
        .ok_or_else(|| CommandError::NotFound(format!("SNI endpoint {key} not found")))?;
    Ok(CommandOutput::SniEndpoint(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::command::fixtures::{actor, create};
    use crate::command::{Command, CommandError, CommandOutput};
    use crate::model::{CertInfo, SniEndpoint, State};

    fn endpoint(app: Uuid, name: &str) -> SniEndpoint {
        SniEndpoint {
            id: Uuid::new_v4(),
            app,
            name: name.into(),
            certificate_chain: "CERT".into(),
            private_key: "KEY".into(),
            cert: CertInfo {
                domains: vec!["www.example.com".into()],
                ..CertInfo::default()
            },
            created_at: actor(0).at,
            updated_at: actor(0).at,
        }
    }

    #[test]
    fn endpoints_are_added_replaced_and_removed_by_name_or_id() {
        let mut s = State::default();
        let app = create(&mut s, "shop");
        let e = endpoint(app, "curved-00001");
        Command::AddSniEndpoint {
            endpoint: e.clone(),
        }
        .apply(&mut s)
        .unwrap();
        // Names are unique in the cluster.
        let other = create(&mut s, "blog");
        let err = Command::AddSniEndpoint {
            endpoint: endpoint(other, "curved-00001"),
        }
        .apply(&mut s)
        .unwrap_err();
        assert!(matches!(err, CommandError::Conflict(_)), "{err:?}");

        let out = Command::UpdateSniEndpoint {
            app,
            key: "curved-00001".into(),
            certificate_chain: "CERT2".into(),
            private_key: "KEY2".into(),
            cert: CertInfo::default(),
            at: actor(5).at,
        }
        .apply(&mut s)
        .unwrap();
        let CommandOutput::SniEndpoint(updated) = out else {
            panic!("{out:?}")
        };
        assert_eq!(updated.certificate_chain, "CERT2");
        assert_eq!(updated.updated_at, actor(5).at);

        // Another app cannot reach it.
        let err = Command::RemoveSniEndpoint {
            app: other,
            key: e.id.to_string(),
        }
        .apply(&mut s)
        .unwrap_err();
        assert!(matches!(err, CommandError::NotFound(_)), "{err:?}");
        Command::RemoveSniEndpoint {
            app,
            key: e.id.to_string(),
        }
        .apply(&mut s)
        .unwrap();
        assert!(s.sni_endpoints.is_empty());
    }

    #[test]
    fn deleting_an_app_removes_its_endpoints() {
        let mut s = State::default();
        let app = create(&mut s, "shop");
        Command::AddSniEndpoint {
            endpoint: endpoint(app, "curved-00001"),
        }
        .apply(&mut s)
        .unwrap();
        Command::DeleteApp { app }.apply(&mut s).unwrap();
        assert!(s.sni_endpoints.is_empty());
    }
}
