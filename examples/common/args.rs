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

    /// The value after `--flag`, parsed, or `default`; a value that does
    /// not parse ends the program with a message.
    pub fn value<T: std::str::FromStr>(&self, flag: &str, default: T) -> T {
        self.opt(flag).unwrap_or(default)
    }

    /// The value after `--flag`, parsed, if given; a value that does not
    /// parse ends the program with a message.
    pub fn opt<T: std::str::FromStr>(&self, flag: &str) -> Option<T> {
        let pos = self.0.iter().position(|a| a == flag)?;
        let v = self.0.get(pos + 1)?;
        Some(v.parse().unwrap_or_else(|_| {
            eprintln!("bad value for {flag}: {v}");
            std::process::exit(2)
        }))
    }
}
