//! JSON request bodies. axum's `Json` extractor answers its own plain-text errors (415 for
//! a missing content type, 422 for a type mismatch); these extractors answer Heroku's
//! `{"id","message"}` instead, with messages that say what to send.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A required JSON body.
pub struct JsonBody<T>(pub T);

/// A JSON body that may be absent (an empty body counts as `{}`), as in `POST /apps`.
pub struct OptionalJsonBody<T>(pub T);

/// Whether a `Content-Type` names JSON: `application/json`, Heroku's
/// `application/vnd.heroku+json`, or any `+json` type, with any parameters.
pub fn is_json_content_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Parses a request body. A missing `Content-Type` is taken as JSON (clients such as
/// `curl -X POST` send none); any other type is a 400. An empty body is `{}` when
/// `empty_ok`, else a 400.
pub fn parse_json<T: DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
    empty_ok: bool,
) -> Result<T, ApiError> {
    let blank = body.iter().all(u8::is_ascii_whitespace);
    if let Some(ct) = content_type {
        // An empty body with a form content type is what `curl -X POST -d ''` sends; let
        // the empty-body rule decide.
        if !is_json_content_type(ct) && !blank {
            return Err(ApiError::bad_request(format!(
                "the request body has content type {ct:?}; send JSON with Content-Type: application/json"
            )));
        }
    }
    let text: &[u8] = if blank {
        if !empty_ok {
            return Err(ApiError::bad_request(
                "the request body is empty; send a JSON object",
            ));
        }
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text).map_err(|e| {
        // serde's messages are lowercase already; "at line 1 column 9" helps find the fault.
        ApiError::bad_request(format!("the request body is not valid JSON here: {e}"))
    })
}

async fn read_body<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<(Option<String>, Bytes), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)").to_string());
    let bytes = Bytes::from_request(req, state).await.map_err(|e| {
        ApiError::from_status(
            e.status(),
            &format!("cannot read the request body: {}", e.body_text()),
        )
    })?;
    Ok((content_type, bytes))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (ct, bytes) = read_body(req, state).await?;
        parse_json(ct.as_deref(), &bytes, false).map(JsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (ct, bytes) = read_body(req, state).await?;
        parse_json(ct.as_deref(), &bytes, true).map(OptionalJsonBody)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use haven_api::AppCreate;

    #[test]
    fn content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.heroku+json; version=3",
        ] {
            assert!(is_json_content_type(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "",
            "json",
        ] {
            assert!(!is_json_content_type(bad), "{bad}");
        }
    }

    #[test]
    fn bodies() {
        let json = Some("application/json");
        let form = Some("application/x-www-form-urlencoded");
        let ok: AppCreate = parse_json(json, br#"{"name":"abc"}"#, false).unwrap();
        assert_eq!(ok.name.as_deref(), Some("abc"));
        let ok: AppCreate = parse_json(None, br#"{"name":"abc"}"#, false).unwrap();
        assert_eq!(ok.name.as_deref(), Some("abc"));
        let empty: AppCreate = parse_json(None, b"", true).unwrap();
        assert_eq!(empty.name, None);
        let empty: AppCreate = parse_json(form, b"  ", true).unwrap();
        assert_eq!(empty.name, None);
        let cases: &[(Option<&str>, &[u8], bool)] = &[
            (json, b"", false),
            (None, b"\n", false),
            (json, b"{\"name\": ", false),
            (json, b"{\"name\": 5}", false),
            (json, b"[1]", true),
            (form, b"name=abc", true),
            (Some("text/plain"), b"{\"name\":\"abc\"}", true),
        ];
        for (ct, body, empty_ok) in cases {
            let err = parse_json::<AppCreate>(*ct, body, *empty_ok).err().unwrap();
            assert_eq!(
                (err.status.as_u16(), err.id),
                (400, "bad_request"),
                "{ct:?} {body:?}"
            );
        }
    }
}
