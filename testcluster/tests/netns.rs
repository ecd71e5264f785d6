//! The namespace primitives on a real bridge: reachability, partition, heal, teardown.
//! Needs root and iproute2; skipped with a note otherwise. No havend involved: a Python
//! HTTP server stands in for a node.

#![allow(clippy::unwrap_used)] // tests may panic

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use haven_testcluster::netns;

const PORT: u16 = 8000;

/// Kills the server and removes the bridge and namespaces even when an assert fails.
struct Cleanup {
    k: u8,
    n: usize,
    server: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        netns::destroy(self.k, self.n);
    }
}

/// An HTTP GET from the host; true when a 200 comes back.
fn host_reaches(addr: &str) -> bool {
    let Ok(sa) = format!("{addr}:{PORT}").parse::<SocketAddr>() else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&sa, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

/// A TCP connect from inside namespace `ns`; true when it connects.
fn ns_reaches(ns: &str, addr: &str) -> bool {
    let script = format!("import socket; socket.create_connection(('{addr}', {PORT}), 1).close()");
    netns::exec_in(ns, "python3")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    assert!(
        haven_testcluster::wait_until(timeout, &mut cond),
        "timed out after {timeout:?} waiting for {what}"
    );
}

#[test]
fn namespaces_partition_and_heal_and_leave_nothing_behind() {
    if !netns::available() {
        println!("skipped: network namespaces need root and iproute2");
        return;
    }
    if Command::new("python3")
        .arg("-V")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        println!("skipped: needs python3 for the test server");
        return;
    }
    let k = netns::create_bridge().expect("create bridge");
    let mut guard = Cleanup {
        k,
        n: 2,
        server: None,
    };
    let ns0 = netns::create_host(k, 0).expect("create ns 0");
    let ns1 = netns::create_host(k, 1).expect("create ns 1");
    let a0 = netns::node_addr(k, 0);

    let server = netns::exec_in(&ns0, "python3")
        .args(["-m", "http.server", "--bind", "0.0.0.0", &PORT.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    guard.server = Some(server);

    eventually(
        "the host to reach the server",
        Duration::from_secs(15),
        || host_reaches(&a0),
    );
    assert!(
        ns_reaches(&ns1, &a0),
        "the other namespace must reach the server"
    );

    netns::partition(k, 0, 2).expect("partition");
    // Idempotent: a second partition is no error.
    netns::partition(k, 0, 2).expect("partition twice");
    assert!(
        !ns_reaches(&ns1, &a0),
        "a partitioned node must be unreachable from the others"
    );
    assert!(
        host_reaches(&a0),
        "the host must still reach a partitioned node"
    );
    // And it cannot reach the others either (route lookup fails inside its namespace).
    let out = netns::exec_in(&ns0, "ip")
        .args(["route", "get", &netns::node_addr(k, 1)])
        .output()
        .expect("ip route get");
    assert!(
        !out.status.success(),
        "node 0 still routes to node 1: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    netns::heal(k, 0, 2).expect("heal");
    netns::heal(k, 0, 2).expect("heal twice");
    eventually(
        "the other namespace to reach the server after heal",
        Duration::from_secs(10),
        || ns_reaches(&ns1, &a0),
    );

    drop(guard);
    let started = Instant::now();
    let leftovers = || -> Vec<String> {
        let mut l: Vec<String> = netns::list_namespaces()
            .expect("list namespaces")
            .into_iter()
            .filter(|n| *n == ns0 || *n == ns1)
            .collect();
        l.extend(
            netns::list_links()
                .expect("list links")
                .into_iter()
                .filter(|n| *n == netns::bridge_name(k) || n.starts_with(&format!("hv{k}-"))),
        );
        l
    };
    let gone = haven_testcluster::wait_until(Duration::from_secs(5), || leftovers().is_empty());
    assert!(
        gone,
        "left behind after {:?}: {:?}",
        started.elapsed(),
        leftovers()
    );
}
