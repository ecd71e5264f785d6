//! Upgraded connections (WebSocket or any other `Upgrade`) pass through: once the dyno
//! answers 101, bytes are copied both ways until either side closes.

use http::{header, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::table::InFlight;
use super::RBody;
use crate::metrics::ActiveGuard;

/// The client's side of the upgrade, if the request asks for one.
pub fn client_upgrade<B>(req: &mut Request<B>) -> Option<OnUpgrade> {
    req.headers()
        .contains_key(header::UPGRADE)
        .then(|| hyper::upgrade::on(req))
}

/// Answers the client with the dyno's 101 and joins both connections once upgraded; the
/// guards last as long as the joined connection.
pub fn pass_through(
    client: OnUpgrade,
    mut resp: Response<Incoming>,
    guards: (InFlight, ActiveGuard),
) -> Response<RBody> {
    let backend = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let _guards = guards;
        if let (Ok(c), Ok(b)) = (client.await, backend.await) {
            let mut c = TokioIo::new(c);
            let mut b = TokioIo::new(b);
            let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
        }
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(
        parts,
        http_body_util::Empty::new().map_err(|e| match e {}).boxed(),
    )
}
