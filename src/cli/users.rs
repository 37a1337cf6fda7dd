//! `charte-proxy users add|remove|list` and `charte-proxy admins add|remove|list`: manage
//! the proxy's users file and the administrators' file (same format, see
//! [`crate::identity::auth`]). Messages go to stderr, the list to stdout.
//!
//! Exit codes: 0 success, 2 usage problem (bad user name, empty or mismatched password,
//! unknown user, unreadable users file), 1 runtime failure (cannot write the file).
//!
//! Passwords are read from standard input, one line. At a terminal the line is asked
//! for twice and not echoed (the terminal's echo is turned off with termios while it
//! is typed, and put back after, also on error).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use super::EXIT_CONFIG;
use crate::identity::auth::{AuthError, UsersFile, validate_user};

#[derive(clap::Args, Debug)]
pub struct UsersArgs {
    /// The users file (`user:$argon2id$…` lines) [default: the server file's
    /// auth.users_file, else `users` in the data folder].
    #[arg(long, env = "CHARTE_USERS", value_name = "FILE", global = true)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub data: super::DataArgs,
    #[command(subcommand)]
    pub cmd: UsersCmd,
}

#[derive(clap::Args, Debug)]
pub struct AdminsArgs {
    /// The administrators' file (`name:$argon2id$…` lines), read by the admin pages
    /// at each login [default: `admins` in the data folder of the running proxy].
    #[arg(long, env = "CHARTE_ADMINS", value_name = "FILE", global = true)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub data: super::DataArgs,
    #[command(subcommand)]
    pub cmd: UsersCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum UsersCmd {
    /// Add a user or change their password.
    ///
    /// The password is one line read from standard input. At a terminal it is asked for
    /// twice and not echoed (nothing appears as it is typed); otherwise (or with
    /// --password-stdin) the first line is taken without a prompt, e.g. `printf '%s\n'
    /// "$PW" | charte-proxy users add c.martin --password-stdin`.
    Add {
        /// User name: no ':', no white space, no control character.
        user: String,
        /// Read the password from standard input without prompting nor confirming.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user.
    Remove { user: String },
    /// List the users, one a line.
    List,
}

/// Runs a `users` subcommand and returns the process exit code.
pub fn run(args: UsersArgs) -> anyhow::Result<ExitCode> {
    let file = match args.file {
        Some(f) => f,
        None => match args.data.settings() {
            Ok(cfg) => cfg.auth.users_file,
            Err(code) => return Ok(code),
        },
    };
    run_on(&file, args.cmd, "user")
}

/// Runs an `admins` subcommand and returns the process exit code.
pub fn run_admins(args: AdminsArgs) -> anyhow::Result<ExitCode> {
    let file = match args.file {
        Some(f) => f,
        None => match args.data.settings() {
            Ok(cfg) => cfg.data_dir.join("admins"),
            Err(code) => return Ok(code),
        },
    };
    run_on(&file, args.cmd, "administrator")
}

fn run_on(path: &std::path::Path, cmd: UsersCmd, noun: &str) -> anyhow::Result<ExitCode> {
    let usage = |msg: &dyn std::fmt::Display| {
        eprintln!("error: {msg}");
        Ok(ExitCode::from(EXIT_CONFIG))
    };
    // Check the name before asking for a password.
    if let UsersCmd::Add { user, .. } | UsersCmd::Remove { user } = &cmd {
        if let Err(e) = validate_user(user) {
            return usage(&e);
        }
    }
    let mut users = match UsersFile::load(path) {
        Ok(u) => u,
        Err(e) => return usage(&e),
    };
    match cmd {
        UsersCmd::Add {
            user,
            password_stdin,
        } => {
            let prompt = !password_stdin && std::io::stdin().is_terminal();
            let password = match read_password(&user, prompt)? {
                Ok(p) => p,
                Err(msg) => return usage(&msg),
            };
            let existed = users.contains(&user);
            match users.add(&user, &password) {
                Ok(()) => {}
                Err(e @ (AuthError::EmptyPassword | AuthError::BadUser { .. })) => {
                    return usage(&e);
                }
                Err(e) => return Err(e.into()),
            }
            users.save()?;
            if existed {
                eprintln!("changed the password of {user} in {}", path.display());
            } else {
                eprintln!("added {noun} {user} to {}", path.display());
            }
        }
        UsersCmd::Remove { user } => {
            if !users.remove(&user) {
                return usage(&format_args!("no {noun} {user:?} in {}", path.display()));
            }
            users.save()?;
            eprintln!("removed {noun} {user} from {}", path.display());
        }
        UsersCmd::List => {
            let mut out = std::io::stdout().lock();
            for u in users.users() {
                writeln!(out, "{u}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the password: one line, or at a terminal two matching lines after prompts.
/// The inner `Err` is a usage problem to report.
fn read_password(user: &str, prompt: bool) -> anyhow::Result<Result<String, String>> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = |label: &str| -> anyhow::Result<String> {
        let mut s = String::new();
        if prompt {
            eprint!("{label}");
            std::io::stderr().flush()?;
            let _hidden = NoEcho::on_stdin();
            input.read_line(&mut s)?;
            // The Enter typed was not echoed either.
            eprintln!();
        } else {
            input.read_line(&mut s)?;
        }
        let s = s.strip_suffix('\n').unwrap_or(&s);
        Ok(s.strip_suffix('\r').unwrap_or(s).to_owned())
    };
    let password = line(&format!("Password for {user} (not shown): "))?;
    if password.is_empty() {
        return Ok(Err("the password is empty".into()));
    }
    if prompt && line("Same password again: ")? != password {
        return Ok(Err("the two passwords differ".into()));
    }
    Ok(Ok(password))
}

/// The terminal on standard input with its echo off, until dropped.
struct NoEcho(Option<libc::termios>);

impl NoEcho {
    /// Turns the echo off; does nothing (and restores nothing) when stdin is no terminal.
    fn on_stdin() -> NoEcho {
        // SAFETY: `termios` is plain data; tcgetattr fills it or fails, and then it is
        // not used.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid pointer to a termios.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
            return NoEcho(None);
        }
        let mut quiet = t;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHONL);
        quiet.c_lflag |= libc::ICANON;
        // SAFETY: fd 0 and a termios read from it, changed in its flags only.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) } != 0 {
            return NoEcho(None);
        }
        NoEcho(Some(t))
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: fd 0 and the termios it had before.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t) };
        }
    }
}
