//! The pure rules the Heroku CLI's requests meet: which calls need no token, what a
//! `/dynos/{dyno}` path names, and a log session's dyno filter.

use axum::http::Method;
use haven_raft::command::DynoTarget;

use super::dynos::dyno_target;
use super::log_sessions::dyno_filter;
use super::public_call;

#[test]
fn only_the_registry_and_tokenless_log_streams_are_public() {
    let cases = [
        (Method::GET, "/buildpacks/heroku%2Fpython", false, true),
        (Method::GET, "/buildpacks/heroku%2Fpython", true, true),
        (Method::GET, "/log-sessions/0b5c", false, true),
        // With a token, a log session is opened as its maker.
        (Method::GET, "/log-sessions/0b5c", true, false),
        (Method::POST, "/log-sessions/0b5c", false, false),
        (Method::GET, "/log-sessions/", false, false),
        (Method::GET, "/log-sessions/a/b", false, false),
        (Method::GET, "/buildpacks", false, false),
        (Method::GET, "/apps", false, false),
        (Method::GET, "/account", false, false),
    ];
    for (method, path, auth, want) in cases {
        assert_eq!(
            public_call(&method, path, auth),
            want,
            "{method} {path} {auth}"
        );
    }
}

#[test]
fn a_bare_process_type_names_its_dynos() {
    assert_eq!(dyno_target("web"), DynoTarget::Type("web".into()));
    assert_eq!(dyno_target("web.1"), DynoTarget::Dyno("web.1".into()));
    let id = uuid::Uuid::new_v4().to_string();
    assert_eq!(dyno_target(&id), DynoTarget::Dyno(id.clone()));
}

#[test]
fn a_dyno_filter_without_an_index_is_a_type() {
    let s = |v: &str| Some(v.to_string());
    assert_eq!(dyno_filter(s("web"), None), (None, s("web")));
    assert_eq!(dyno_filter(s("web.1"), None), (s("web.1"), None));
    assert_eq!(dyno_filter(s(""), s("")), (None, None));
    assert_eq!(dyno_filter(s("web"), s("worker")), (s("web"), s("worker")));
}
