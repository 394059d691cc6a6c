//! Where tests keep their files, and the checks that skip a test when the machine lacks something.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The workspace root (the folder above this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Absolute path of a SIPp scenario in `tests/scenarios/`.
pub fn scenario_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(file)
}

/// Prints a SKIP line that shows even when the test harness captures output.
///
/// Under CI (`CI=true`, where the run is root and scripts/install-test-deps.sh has installed every
/// peer) a missing peer is a failure, never a silent skip: only what no install provides may skip
/// there ("needs root", "needs ::1" on a machine with IPv6 disabled).
pub fn skip(test: &str, reason: &str) {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let machine_setting = ["needs root", "needs ::1"]
        .iter()
        .any(|prefix| reason.starts_with(prefix));
    if in_ci && !machine_setting {
        panic!("{test}: {reason} — CI installs every test peer, so this is a failure, not a skip");
    }
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
}

/// Whether this process runs as root; if not, prints a SKIP line for `test`.
pub fn need_root(test: &str) -> bool {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned());
    if uid.as_deref() == Some("0") {
        return true;
    }
    skip(
        test,
        "needs root (run scripts/install-test-deps.sh and the tests as root)",
    );
    false
}

/// Whether `tool` is on PATH; if not, prints a SKIP line for `test`.
pub fn need_tool(test: &str, tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        skip(
            test,
            &format!("`{tool}` not installed (scripts/install-test-deps.sh installs it)"),
        );
    }
    found
}

/// A test's own folder under `target/tandem-tests/`. It is removed when dropped only if the test
/// called [`TestDir::passed`]; a failing test keeps its logs there.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
    passed: bool,
}

impl TestDir {
    /// Creates `target/tandem-tests/<name>-<pid>-<n>`.
    pub fn new(name: &str) -> Result<TestDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = workspace_root()
            .join("target")
            .join("tandem-tests")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TestDir {
            path,
            passed: false,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the folder.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Marks the test as passed: the folder is deleted on drop (unless TANDEM_TEST_KEEP is set).
    pub fn passed(&mut self) {
        self.passed = true;
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if self.passed
            && !std::thread::panicking()
            && std::env::var_os("TANDEM_TEST_KEEP").is_none()
        {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
