//! The client side of Heroku's add-on provider API, spoken to registered third-party
//! providers: provision (`POST {url}/heroku/resources`), plan change (`PUT
//! {url}/heroku/resources/{id}`) and deprovision (`DELETE {url}/heroku/resources/{id}`),
//! each with HTTP Basic auth `NAME:PASSWORD`.
//!
//! The API handlers call it as proposers, before the command that records the result.
//! A call that times out, fails to connect, gets a 5xx or a body that is not the API's
//! JSON is retried with back-off ([`ATTEMPTS`] in all), in the handler's own task, so
//! nothing else waits; a 4xx is the provider's refusal and is not retried. Errors name the
//! provider and what went wrong, never its password or the config it returned.

use std::collections::BTreeMap;
use std::time::Duration;

use haven_raft::model::AddonProvider;
use serde::Deserialize;
use serde_json::{json, Value};

/// Attempts per call.
pub const ATTEMPTS: u32 = 3;
/// How long one attempt may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// The pause before the second attempt; doubled before each further one.
pub const BACKOFF: Duration = Duration::from_millis(300);

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// The provider answered 4xx: it refused (the API answers 422).
    Refused(String),
    /// Every attempt failed (timeouts, 5xx, garbage): the API answers 503.
    Unavailable(String),
}

/// What Haven asks a provider to provision.
#[derive(Debug, Clone)]
pub struct Provision {
    pub heroku_id: String,
    pub plan: String,
    pub region: String,
    pub callback_url: String,
    pub options: serde_json::Map<String, Value>,
    /// The add-on's id.
    pub uuid: String,
    /// The add-on's name.
    pub name: String,
}

/// A provider's answer to a provision or plan change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provisioned {
    /// The provider's resource id (empty for a plan change's answer).
    pub id: String,
    /// The config it returned, if any.
    pub config: Option<BTreeMap<String, String>>,
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    config: Option<BTreeMap<String, String>>,
    #[serde(default)]
    message: Option<String>,
}

/// Reads a provider's JSON answer; `need_id`: a provision's, which must name the
/// resource.
pub fn parse_answer(body: &[u8], need_id: bool) -> Result<Provisioned, String> {
    let a: Answer = serde_json::from_slice(body)
        .map_err(|_| "its answer is not the provider API's JSON".to_string())?;
    let id = match a.id {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        _ if !need_id => String::new(),
        _ => return Err("its answer names no resource id".into()),
    };
    Ok(Provisioned {
        id,
        config: a.config,
        message: a.message,
    })
}

/// A refusal's message: the provider's `message` (or `error`), cut to 200 characters.
fn refusal(p: &AddonProvider, status: reqwest::StatusCode, body: &[u8]) -> String {
    let said = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("message")
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
            .map(|s| s.chars().take(200).collect::<String>())
    });
    match said {
        Some(m) => format!("The add-on provider {} refused: {m}", p.name),
        None => format!("The add-on provider {} refused ({status}).", p.name),
    }
}

fn resources_url(p: &AddonProvider) -> String {
    format!("{}/heroku/resources", p.url.trim_end_matches('/'))
}

/// One call with retries. `ok_status`: a non-2xx status that counts as success (a
/// deprovision of a resource the provider no longer has).
async fn call(
    p: &AddonProvider,
    what: &str,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
    need_id: bool,
    gone_ok: bool,
) -> Result<Provisioned, ProviderError> {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|_| ProviderError::Unavailable("no HTTP client".into()))?;
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
        }
        let mut req = client
            .request(method.clone(), &url)
            .basic_auth(&p.name, Some(&p.password))
            .header("Accept", "application/vnd.heroku-addons+json; version=3");
        if let Some(b) = &body {
            req = req.json(b);
        }
        let outcome = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(bytes) if status.is_success() => {
                        if !need_id && bytes.iter().all(u8::is_ascii_whitespace) {
                            return Ok(Provisioned::default());
                        }
                        match parse_answer(&bytes, need_id) {
                            Ok(a) => return Ok(a),
                            Err(e) => e,
                        }
                    }
                    Ok(_) if gone_ok && (status == 404 || status == 410) => {
                        return Ok(Provisioned::default())
                    }
                    Ok(bytes) if status.is_client_error() => {
                        return Err(ProviderError::Refused(refusal(p, status, &bytes)))
                    }
                    Ok(_) => format!("it answered {status}"),
                    Err(e) if e.is_timeout() => {
                        format!("it did not answer within {}s", REQUEST_TIMEOUT.as_secs())
                    }
                    Err(_) => "its answer broke off".into(),
                }
            }
            Err(e) if e.is_timeout() => {
                format!("it did not answer within {}s", REQUEST_TIMEOUT.as_secs())
            }
            Err(_) => "it could not be reached".into(),
        };
        tracing::warn!(
            provider = %p.name,
            attempt = attempt + 1,
            "add-on provider {what} failed: {outcome}"
        );
        last = outcome;
    }
    Err(ProviderError::Unavailable(format!(
        "The add-on provider {} is unavailable: {last} ({ATTEMPTS} attempts).",
        p.name
    )))
}

/// `POST {url}/heroku/resources`.
pub async fn provision(p: &AddonProvider, r: &Provision) -> Result<Provisioned, ProviderError> {
    let body = json!({
        "heroku_id": r.heroku_id,
        "plan": r.plan,
        "region": r.region,
        "callback_url": r.callback_url,
        "options": r.options,
        "uuid": r.uuid,
        "name": r.name,
    });
    call(
        p,
        "provision",
        reqwest::Method::POST,
        resources_url(p),
        Some(body),
        true,
        false,
    )
    .await
}

/// `PUT {url}/heroku/resources/{id} {"plan", "heroku_id"}`.
pub async fn change_plan(
    p: &AddonProvider,
    resource: &str,
    plan: &str,
    heroku_id: &str,
) -> Result<Provisioned, ProviderError> {
    call(
        p,
        "plan change",
        reqwest::Method::PUT,
        format!("{}/{resource}", resources_url(p)),
        Some(json!({"plan": plan, "heroku_id": heroku_id})),
        false,
        false,
    )
    .await
}

/// `DELETE {url}/heroku/resources/{id}`; a resource the provider no longer has (404,
/// 410) counts as deprovisioned.
pub async fn deprovision(p: &AddonProvider, resource: &str) -> Result<(), ProviderError> {
    call(
        p,
        "deprovision",
        reqwest::Method::DELETE,
        format!("{}/{resource}", resources_url(p)),
        None,
        false,
        true,
    )
    .await
    .map(|_| ())
}

/// The `heroku_id` an app is known by to providers.
pub fn heroku_id(app: uuid::Uuid) -> String {
    format!("app{}@haven", app.simple())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_the_provider_api_specifies() {
        let a = parse_answer(br#"{"id":"r1","config":{"URL":"u"},"message":"hi"}"#, true).unwrap();
        assert_eq!(a.id, "r1");
        assert_eq!(a.config.unwrap()["URL"], "u");
        assert_eq!(parse_answer(br#"{"id":42}"#, true).unwrap().id, "42");
        assert!(parse_answer(b"<html>", true).is_err());
        assert!(parse_answer(br#"{"config":{}}"#, true).is_err());
        assert!(parse_answer(br#"{"id":"r","config":{"URL":3}}"#, true).is_err());
        assert_eq!(
            parse_answer(br#"{"config":{"A":"b"}}"#, false).unwrap().id,
            ""
        );
    }
}
