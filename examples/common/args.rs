//! The examples' command-line flags: `--flag` and `--flag value`.
#![allow(dead_code)]

/// A simple `--flag value` reader over the program's arguments.
pub struct Args(Vec<String>);

impl Args {
    pub fn from_env() -> Self {
        Args(std::env::args().skip(1).collect())
    }

    /// Whether `--flag` is present.
    pub fn flag(&self, flag: &str) -> bool {
        self.0.iter().any(|a| a == flag)
    }

    /// The value after `--flag`, parsed, or `default`.
    pub fn value<T: std::str::FromStr>(&self, flag: &str, default: T) -> T {
        let pos = self.0.iter().position(|a| a == flag);
        match pos.and_then(|i| self.0.get(i + 1)) {
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("bad value for {flag}: {v}");
                std::process::exit(2)
            }),
            None => default,
        }
    }

    /// The value after `--flag`, if given.
    pub fn opt<T: std::str::FromStr>(&self, flag: &str) -> Option<T> {
        let pos = self.0.iter().position(|a| a == flag)?;
        self.0.get(pos + 1)?.parse().ok()
    }
}
