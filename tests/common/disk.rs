//! A small real filesystem that a test can fill: a tmpfs mounted on a temporary directory,
//! unmounted when the [`SmallDisk`] is dropped (also when the test panics).
//!
//! Mounting needs root (CI runs as root). Elsewhere the test fails loudly, unless
//! `TEST_SKIP_FULL_DISK=1` says to skip it (with a loud message).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// Set to 1 to skip (not fail) the full-disk tests when this process cannot mount a tmpfs.
pub const SKIP_VAR: &str = "TEST_SKIP_FULL_DISK";

/// A mounted tmpfs of a fixed size.
pub struct SmallDisk {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size_mib` MiB; `None` (after a loud message) when not root and
    /// `TEST_SKIP_FULL_DISK=1`. Panics when not root otherwise, or when the mount fails.
    pub fn mount(size_mib: u32) -> Option<SmallDisk> {
        let skip = std::env::var(SKIP_VAR).is_ok_and(|v| v == "1");
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .expect("run id -u");
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            if skip {
                let bar = "!".repeat(78);
                let _ = writeln!(
                    std::io::stderr(),
                    "\n{bar}\n!!! SKIPPED: a full-disk test (mounting a tmpfs needs root; {SKIP_VAR}=1).\n{bar}\n"
                );
                return None;
            }
            panic!(
                "the full-disk tests mount a tmpfs and need root; run as root or set {SKIP_VAR}=1 \
                 to skip them"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs on {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(SmallDisk {
            dir: Some(dir),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }

    /// Writes a filler file until the filesystem refuses a single byte more.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.filler()).expect("create filler");
        let block = vec![0x5a_u8; 64 * 1024];
        let mut step = block.as_slice();
        loop {
            match f.write(step) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => {
                    // ENOSPC: go on with smaller writes until not one byte fits.
                    if step.len() == 1 {
                        break;
                    }
                    step = &block[..step.len() / 2];
                }
                Err(e) => panic!("filling {}: {e}", self.path.display()),
            }
        }
    }

    /// Removes the filler: the space is back.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a server still shutting down may hold files open on it.
        let out = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "umount {}: {}",
                self.path.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("umount {}: {e}", self.path.display()),
        }
        drop(self.dir.take());
    }
}
