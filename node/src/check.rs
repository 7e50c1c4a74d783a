//! The one error of configuration, and the checks every section's
//! validation shares. A leaf: each section (its owner's `config` module)
//! validates itself with these; [`crate::config`] composes the sections.

use crate::fsutil::excerpt;
use maxwell_types::{MicroWatts, MilliCelsius};
use std::path::PathBuf;

/// Errors from loading or validating configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped fields.
    #[error("config file {path}, line {line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What the parser said, on one line.
        message: String,
    },
    /// A `--set KEY=VALUE` flag is malformed or names no field.
    #[error("flag --set {set}: {message}")]
    Set {
        /// The flag's argument.
        set: String,
        /// What is wrong.
        message: String,
    },
    /// A field holds a value outside what it may be.
    #[error("config field `{field}`: {problem}")]
    Invalid {
        /// The dotted field name, as in the file.
        field: &'static str,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

pub fn invalid(field: &'static str, problem: String) -> ConfigError {
    ConfigError::Invalid { field, problem }
}

pub fn celsius(field: &'static str, c: f64, lo: f64, hi: f64) -> Result<MilliCelsius, ConfigError> {
    if c.is_finite() && (lo..=hi).contains(&c) {
        Ok(MilliCelsius::from_celsius(c))
    } else {
        Err(invalid(field, format!("{c} °C is outside {lo} to {hi}")))
    }
}

pub fn watts(field: &'static str, w: f64, lo: f64, hi: f64) -> Result<MicroWatts, ConfigError> {
    if w.is_finite() && (lo..=hi).contains(&w) {
        Ok(MicroWatts::from_watts(w))
    } else {
        Err(invalid(field, format!("{w} W is outside {lo} to {hi}")))
    }
}

pub fn opt_watts(
    field: &'static str,
    w: Option<f64>,
    default: MicroWatts,
    lo: f64,
    hi: f64,
) -> Result<MicroWatts, ConfigError> {
    w.map_or(Ok(default), |w| watts(field, w, lo, hi))
}

/// Names and racks go into reports, tables and metric labels: keep them short and printable.
pub fn check_name(field: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{} must be 1 to 64 characters of letters, digits, '-', '_' or '.'",
                excerpt(value, 64)
            ),
        ))
    }
}
