//! What the harnesses of test servers run from a binary named by an environment variable (s3rver,
//! Dovecot) share: find the binary or skip loudly, fail instead when CI requires the server, and
//! start it with a few retries.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Whether `require_var` is set to 1 (CI): a missing server then fails the test.
pub fn required(require_var: &str) -> bool {
    std::env::var(require_var).is_ok_and(|v| v == "1")
}

/// The binary `bin_var` names, or `None` after a loud message (once per variable and process, on
/// the real stderr — the harness captures `eprintln!` of passing tests) saying which `what` cases
/// were skipped and `how` to run them. Panics when `require_var` is 1 and the variable is unset.
pub fn bin(bin_var: &str, require_var: &str, what: &str, how: &str) -> Option<PathBuf> {
    match std::env::var(bin_var) {
        Ok(b) if !b.is_empty() => return Some(PathBuf::from(b)),
        _ => {}
    }
    if required(require_var) {
        panic!("{require_var}=1 but {bin_var} is not set");
    }
    static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if !warned.iter().any(|w| w == bin_var) {
        warned.push(bin_var.to_owned());
        let bar = "!".repeat(78);
        let _ = writeln!(
            std::io::stderr(),
            "\n{bar}\n!!! SKIPPED: the {what} test cases. {how}\n{bar}\n"
        );
    }
    None
}

/// Runs `try_start` up to three times (a port taken meanwhile, a server dying while it starts);
/// panics with the last error when every try failed.
pub fn start_with_retries<T>(
    bin_var: &str,
    bin: &Path,
    what: &str,
    try_start: impl Fn(&Path) -> Result<T, String>,
) -> T {
    let mut last_err = String::new();
    for _ in 0..3 {
        match try_start(bin) {
            Ok(s) => return s,
            Err(e) => last_err = e,
        }
    }
    panic!(
        "{bin_var}={} is set but {what} does not start: {last_err}",
        bin.display()
    );
}
