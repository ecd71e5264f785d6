//! The Debian package: `scripts/package-deb` builds one from the debug binaries; it
//! holds havend, hctl and the systemd unit; and the unit's own `ExecStart`, run from the
//! unpacked package (this machine has no systemd to start it), runs a node made with the
//! packaged `havend init`, whose API answers.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use haven_tests::{eventually, repo_path};
use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_debian_package_installs_a_node_its_unit_starts() {
    let out_dir = tempfile::tempdir().unwrap();
    let built = Command::new(repo_path("scripts/package-deb"))
        .args(["--profile", "debug", "--out"])
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = String::from_utf8_lossy(&built.stdout).trim().to_string();
    let field = |f: &str| {
        let o = Command::new("dpkg-deb")
            .args(["-f", &deb, f])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(field("Package"), "haven");
    assert!(
        field("Depends").contains("nftables"),
        "{}",
        field("Depends")
    );
    let list = Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for f in [
        "./usr/bin/havend",
        "./usr/bin/hctl",
        "./lib/systemd/system/havend.service",
    ] {
        assert!(list.contains(f), "{f} missing from the package:\n{list}");
    }

    // Unpacked, as dpkg would install it, under a scratch root.
    let root = tempfile::tempdir().unwrap();
    let st = Command::new("dpkg-deb")
        .args(["-x", &deb])
        .arg(root.path())
        .status()
        .unwrap();
    assert!(st.success());
    let unit =
        std::fs::read_to_string(root.path().join("lib/systemd/system/havend.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    assert!(unit.contains("Restart=on-failure"));
    assert!(unit.contains("KillMode=process"));
    let havend = root.path().join("usr/bin/havend");
    let data = root.path().join("var/lib/haven");
    let (api, peer, router) = (free_port(), free_port(), free_port());
    let init = Command::new(&havend)
        .arg("init")
        .arg("--json")
        .arg("--data-dir")
        .arg(&data)
        .args(["--name", "packaged"])
        .args(["--api-listen", &format!("127.0.0.1:{api}")])
        .args(["--peer-listen", &format!("127.0.0.1:{peer}")])
        .args(["--router-listen", &format!("127.0.0.1:{router}")])
        .args(["--advertise-host", "127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let line = String::from_utf8_lossy(&init.stdout)
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap()
        .to_string();
    let token = serde_json::from_str::<Value>(&line).unwrap()["admin_token"]
        .as_str()
        .unwrap()
        .to_string();
    // The unit's command line, with the packaged paths under the scratch root.
    let args: Vec<String> = exec
        .split_whitespace()
        .map(|a| match a {
            "/usr/bin/havend" => havend.to_string_lossy().into_owned(),
            "/var/lib/haven" => data.to_string_lossy().into_owned(),
            other => other.to_string(),
        })
        .collect();
    let log = std::fs::File::create(root.path().join("havend.log")).unwrap();
    let _node = Kill(
        Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let status = eventually("the packaged node's API", Duration::from_secs(60), || {
        let r = reqwest::blocking::Client::new()
            .get(format!("http://127.0.0.1:{api}/cluster/status"))
            .header("Accept", "application/vnd.heroku+json; version=3")
            .bearer_auth(&token)
            .send()
            .ok()?;
        r.status()
            .is_success()
            .then(|| r.json::<Value>().ok())
            .flatten()
    });
    assert_eq!(status["node_name"], "packaged");
    assert!(status["leader"].is_string(), "{status}");
}
