//! `charte-proxy reload` and `charte-proxy rotate`: the running proxy found by its
//! pidfile or its data folder's lock file, and sent SIGHUP or SIGUSR1.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{DataArgs, EXIT_RUNTIME};
use crate::server::instance;

#[derive(clap::Args, Debug)]
pub struct SignalArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The running proxy's pidfile [default: the server file's pidfile, else the data
    /// folder's lock file].
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
}

/// What to ask of the running proxy.
#[derive(Debug, Clone, Copy)]
pub enum Order {
    Reload,
    Rotate,
}

pub fn signal(a: &SignalArgs, order: Order) -> anyhow::Result<ExitCode> {
    let cfg = match a.data.settings_with(crate::config::server::Flags {
        pidfile: a.pidfile.clone(),
        ..Default::default()
    }) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let pid = match instance::running_pid(&cfg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(EXIT_RUNTIME));
        }
    };
    let (sig, name, what) = match order {
        Order::Reload => (libc::SIGHUP, "SIGHUP", "reload its policy and users file"),
        Order::Rotate => (libc::SIGUSR1, "SIGUSR1", "reopen its trace file"),
    };
    if let Err(e) = instance::send_signal(pid, sig) {
        eprintln!("error: cannot send {name} to charte-proxy (pid {pid}): {e}");
        return Ok(ExitCode::from(EXIT_RUNTIME));
    }
    println!("sent {name} to charte-proxy (pid {pid}): it will {what}");
    Ok(ExitCode::SUCCESS)
}
