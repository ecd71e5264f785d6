//! `haven-init --spec FILE | --standby [--bridge NAME] | --probe DIR | --probe-net`: the init of a container dyno,
//! started by the agent's runtime (see the crate docs). Arguments are parsed by hand: the
//! binary stays small and starts fast.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = match args.as_slice() {
        [flag, file] if flag == "--spec" => haven_init::run(Path::new(file)),
        [flag, dir] if flag == "--probe" => haven_init::probe(Path::new(dir)),
        [flag] if flag == "--probe-net" => haven_init::probe_net(),
        [flag] if flag == "--standby" => haven_init::standby(None),
        [flag, b, bridge] if flag == "--standby" && b == "--bridge" => {
            haven_init::standby(bridge.to_str())
        }
        _ => {
            eprintln!("usage: haven-init --spec FILE | --standby [--bridge NAME] | --probe DIR | --probe-net");
            2
        }
    };
    ExitCode::from((code & 0xff) as u8)
}
