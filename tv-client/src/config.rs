//! The TV's persistent identity: its device id (serial) and friendly name.
//!
//! Precedence: command-line flag or environment variable, then the config file, then a
//! fresh random id and a default name, which are written to the config file on first run
//! so the TV keeps the same id (and so its purchases) across restarts.

use std::path::{Path, PathBuf};

use protocol::DeviceId;
use serde::{Deserialize, Serialize};

use crate::state::{Identity, MAX_TV_NAME_CHARS};

/// The name a TV has until someone gives it one.
pub const DEFAULT_TV_NAME: &str = "Living-room TV";
/// Largest config file read, in bytes.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Why the identity could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid TV config: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("a TV name is 1 to {MAX_TV_NAME_CHARS} printable characters")]
    BadName,
}

/// The config file's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileConfig {
    pub device_id: DeviceId,
    pub tv_name: String,
}

/// Where the config file lives by default: `$XDG_CONFIG_HOME/couchpay/tv.json`, else
/// `$HOME/.config/couchpay/tv.json`; `None` when neither variable is set.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("couchpay").join("tv.json"))
}

/// Checks a TV name: trimmed, non-empty, printable, at most [`MAX_TV_NAME_CHARS`].
pub fn check_name(name: &str) -> Result<String, ConfigError> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_TV_NAME_CHARS
        && !name.chars().any(char::is_control);
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ConfigError::BadName)
    }
}

fn read(path: &Path) -> Result<Option<FileConfig>, ConfigError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.into(),
                source,
            });
        }
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { path: path.into() });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let cfg: FileConfig = serde_json::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.into(),
        reason: e.to_string(),
    })?;
    check_name(&cfg.tv_name).map_err(|e| ConfigError::Invalid {
        path: path.into(),
        reason: e.to_string(),
    })?;
    Ok(Some(cfg))
}

fn write(path: &Path, cfg: &FileConfig) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let json = serde_json::to_string_pretty(cfg).map_err(|e| ConfigError::Invalid {
        path: path.into(),
        reason: e.to_string(),
    })?;
    // Write then rename, so a crash never leaves a half-written file (and a new id).
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json + "\n").map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Resolves the identity. `file` is the config file (created with a fresh id when it is
/// missing); `device_id` and `tv_name` are overrides from flags or the environment and
/// are not written back.
pub fn resolve(
    file: Option<&Path>,
    device_id: Option<DeviceId>,
    tv_name: Option<&str>,
) -> Result<Identity, ConfigError> {
    let stored = match file {
        Some(path) => match read(path)? {
            Some(cfg) => Some(cfg),
            None => {
                let cfg = FileConfig {
                    device_id: device_id.clone().unwrap_or_else(DeviceId::random),
                    tv_name: match tv_name {
                        Some(n) => check_name(n)?,
                        None => DEFAULT_TV_NAME.to_owned(),
                    },
                };
                write(path, &cfg)?;
                Some(cfg)
            }
        },
        None => None,
    };
    let device_id = device_id
        .or_else(|| stored.as_ref().map(|c| c.device_id.clone()))
        .unwrap_or_else(DeviceId::random);
    let tv_name = match tv_name {
        Some(n) => check_name(n)?,
        None => stored.map_or_else(|| DEFAULT_TV_NAME.to_owned(), |c| c.tv_name),
    };
    Ok(Identity { device_id, tv_name })
}

/// Country calling codes by ISO 3166 region, for the phone pad's prefilled code.
const CALLING_CODES: [(&str, &str); 40] = [
    ("US", "1"),
    ("CA", "1"),
    ("GB", "44"),
    ("IE", "353"),
    ("FR", "33"),
    ("DE", "49"),
    ("AT", "43"),
    ("CH", "41"),
    ("IT", "39"),
    ("ES", "34"),
    ("PT", "351"),
    ("NL", "31"),
    ("BE", "32"),
    ("LU", "352"),
    ("DK", "45"),
    ("SE", "46"),
    ("NO", "47"),
    ("FI", "358"),
    ("PL", "48"),
    ("CZ", "420"),
    ("HU", "36"),
    ("RO", "40"),
    ("GR", "30"),
    ("RU", "7"),
    ("TR", "90"),
    ("IL", "972"),
    ("AE", "971"),
    ("ZA", "27"),
    ("IN", "91"),
    ("CN", "86"),
    ("HK", "852"),
    ("JP", "81"),
    ("KR", "82"),
    ("SG", "65"),
    ("AU", "61"),
    ("NZ", "64"),
    ("BR", "55"),
    ("MX", "52"),
    ("AR", "54"),
    ("CL", "56"),
];

/// The calling code of an ISO 3166 region (`GB` → `44`), when known.
pub fn calling_code(region: &str) -> Option<&'static str> {
    let region = region.trim().to_ascii_uppercase();
    CALLING_CODES
        .iter()
        .find(|(r, _)| *r == region)
        .map(|(_, code)| *code)
}

/// The region of a POSIX locale such as `en_GB.UTF-8` or `de_AT@euro`: `GB`, `AT`.
pub fn locale_region(locale: &str) -> Option<&str> {
    let (_, rest) = locale.split_once('_')?;
    let region = rest.split(['.', '@']).next()?;
    (region.len() == 2 && region.bytes().all(|b| b.is_ascii_alphabetic())).then_some(region)
}

/// The country code to prefill on the phone pad: an explicit code, else the code of an
/// explicit region (`--country`), else of the locale's region (`LC_ALL`, `LC_TELEPHONE`,
/// `LANG`, the first one set), else `1`.
pub fn phone_country_code(
    explicit: Option<&str>,
    country: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> String {
    if let Some(code) = explicit {
        return code.trim().trim_start_matches('+').to_owned();
    }
    let from_locale = ["LC_ALL", "LC_TELEPHONE", "LANG"]
        .into_iter()
        .filter_map(|var| env(var).filter(|v| !v.is_empty()))
        .next()
        .and_then(|l| locale_region(&l).and_then(calling_code));
    country
        .and_then(calling_code)
        .or(from_locale)
        .unwrap_or(crate::state::DEFAULT_COUNTRY_CODE)
        .to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_phone_pads_country_code_comes_from_flags_then_locale() {
        use super::phone_country_code as cc;
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(v, _)| *v == k)
                    .map(|(_, x)| (*x).to_owned())
            }
        };
        assert_eq!(cc(None, None, env(&[])), "1");
        assert_eq!(cc(None, None, env(&[("LANG", "C.UTF-8")])), "1");
        assert_eq!(cc(None, None, env(&[("LANG", "en_GB.UTF-8")])), "44");
        assert_eq!(
            cc(
                None,
                None,
                env(&[("LC_ALL", "de_AT@euro"), ("LANG", "en_US")])
            ),
            "43"
        );
        assert_eq!(cc(None, Some("ie"), env(&[("LANG", "en_GB.UTF-8")])), "353");
        assert_eq!(cc(Some("+49"), Some("FR"), env(&[])), "49");
        assert_eq!(cc(None, Some("XX"), env(&[])), "1");
    }

    use super::*;

    #[test]
    fn first_run_creates_a_stable_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("couchpay/tv.json");
        let first = resolve(Some(&path), None, None).unwrap();
        assert!(path.exists());
        assert_eq!(first.tv_name, DEFAULT_TV_NAME);
        let again = resolve(Some(&path), None, None).unwrap();
        assert_eq!(again, first, "the id must survive a restart");
    }

    #[test]
    fn flags_override_the_file_without_rewriting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tv.json");
        let stored = resolve(Some(&path), None, Some("Bedroom")).unwrap();
        let id = DeviceId::parse("SN-OVERRIDE").unwrap();
        let got = resolve(Some(&path), Some(id.clone()), Some("  Kitchen ")).unwrap();
        assert_eq!((got.device_id, got.tv_name.as_str()), (id, "Kitchen"));
        assert_eq!(resolve(Some(&path), None, None).unwrap(), stored);
    }

    #[test]
    fn bad_names_and_files_are_refused() {
        assert!(check_name("").is_err());
        assert!(check_name("a\u{7}b").is_err());
        assert!(check_name(&"x".repeat(MAX_TV_NAME_CHARS + 1)).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tv.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            resolve(Some(&path), None, None),
            Err(ConfigError::Invalid { .. })
        ));
    }
}
