//! What the replay and report tests share: a scratch directory and a small replay config (a
//! detector of 50 trees on 64-row subsamples over a level and its deviation from the last hour,
//! at 5-minute steps), with the first row's time.

use std::path::PathBuf;

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("canopy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The replay config the tests run: alerts at a likelihood of 0.99.
pub const CONFIG: &str = r#"
[limits]
retention = "3h"
[evaluation]
step = "5m"
lateness = "0s"
history = "1d"
[features]
level = 'value'
dev = 'value - avg_over_time(value[1h])'
[models.det]
kind = "isolation_forest"
features = ["level", "dev"]
step = "5m"
max_samples = 64
n_estimators = 50
retrain_interval = "2h"
contamination = 0.02
likelihood_window = 1
threshold = 0.99
"#;

/// A multiple of 5 minutes, so each row's time is a step.
pub const T0_MS: i64 = 1_699_999_800_000;
