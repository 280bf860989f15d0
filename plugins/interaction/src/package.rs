//! Model packages: a directory with a `manifest.toml` that names the kind of model, its files
//! (with sha256 checksums), the front-end parameters, the action labels and the licences.
//!
//! ```toml
//! format = 1
//! name = "cascade-default"
//! kind = "cascade"                      # or "native"
//!
//! [files.vad]                           # one table per role; the roles a kind needs are below
//! path = "silero-vad/silero_vad.onnx"
//! root = "models"                       # "package" (default), "models" or "derived"
//! sha256 = "1a153a22…"
//!
//! [frontend]                            # the kernels' parameters (see FrontEnd)
//! sample_rate = 16000
//!
//! [actions]
//! labels = ["listen", "speak", "backchannel", "yield"]
//!
//! [[licenses]]
//! component = "Silero VAD v6"
//! license = "MIT"
//! file = "silero-vad/LICENSE"
//! root = "models"
//! ```
//!
//! `root` says where `path` is relative to: `package` is the manifest's directory, `models` is
//! the model cache (`$GST_INTERACTION_CACHE/models`, what `scripts/fetch-models.py` fills) and
//! `derived` is `$GST_INTERACTION_CACHE/derived` (what the `models/*/derive.sh` scripts write).
//!
//! Roles a kind needs: `cascade` needs `vad`, `turn`, `asr-encoder`, `asr-decoder`,
//! `asr-vocabulary` and `asr-config` (the four ASR files in one directory), and may name
//! `vision` and `vision-labels` (both or neither: EfficientNet-Lite0 and its class names, for
//! the visual observations); `native` needs `model`. Every manifest needs `kind`, `frontend.sample_rate`, `actions.labels` (with at least
//! `listen`, `speak`, `backchannel` and `yield`) and one `licenses` entry or more. Loading
//! checks all of this, that every file exists and that its sha256 matches; every refusal names
//! what is missing or wrong.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The manifest file name inside a package directory.
pub const MANIFEST_FILE: &str = "manifest.toml";
/// The default package's directory name.
pub const DEFAULT_PACKAGE: &str = "cascade-default";
/// The action labels the element acts on; a package must name all of them.
pub const REQUIRED_ACTIONS: [&str; 4] = ["listen", "speak", "backchannel", "yield"];

/// Roles of the cascade kind's files.
pub const CASCADE_ROLES: [(&str, &str); 6] = [
    ("vad", "the Silero VAD model"),
    ("turn", "the Smart Turn model"),
    ("asr-encoder", "the Whisper encoder"),
    ("asr-decoder", "the Whisper decoder"),
    ("asr-vocabulary", "the Whisper vocabulary"),
    ("asr-config", "the Whisper config"),
];
/// Optional roles of the cascade kind: the visual observations (EfficientNet-Lite0 and its
/// class names). A package that names one of them must name both.
pub const VISION_ROLES: [(&str, &str); 2] = [
    ("vision", "the EfficientNet-Lite0 image classifier"),
    ("vision-labels", "the image classifier's class names"),
];
/// Roles of the native kind's files.
pub const NATIVE_ROLES: [(&str, &str); 1] = [("model", "the native interaction model")];

/// Why a package is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PackageError {
    #[error("model package {dir}: no {MANIFEST_FILE} there ({detail})")]
    NoManifest { dir: PathBuf, detail: String },
    #[error(
        "model package {dir}: {MANIFEST_FILE} is not valid TOML or has a wrong field: {detail}"
    )]
    Syntax { dir: PathBuf, detail: String },
    #[error("model package {dir}: the manifest lacks {what}")]
    Missing { dir: PathBuf, what: String },
    #[error("model package {dir}: {detail}")]
    Invalid { dir: PathBuf, detail: String },
    #[error(
        "model package {dir}: file {path} ({role}) is missing; run `make test` or \
         `scripts/setup.sh` to fetch and derive the models"
    )]
    MissingFile {
        dir: PathBuf,
        role: String,
        path: PathBuf,
    },
    #[error(
        "model package {dir}: file {path} ({role}) is corrupt: sha256 {actual}, the manifest says {expected}"
    )]
    Checksum {
        dir: PathBuf,
        role: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// The kinds of interaction model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Silero VAD + Smart Turn + Whisper, with the turn-taking policy in the element.
    Cascade,
    /// One stateful ONNX graph per micro-turn (see `models/interaction-native/CONTRACT.md`).
    Native,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cascade => "cascade",
            Kind::Native => "native",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    format: Option<u32>,
    name: Option<String>,
    kind: Option<String>,
    description: Option<String>,
    #[serde(default)]
    files: BTreeMap<String, RawFile>,
    frontend: Option<RawFrontEnd>,
    actions: Option<RawActions>,
    #[serde(default)]
    licenses: Vec<RawLicense>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: Option<String>,
    root: Option<String>,
    sha256: Option<String>,
    license: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrontEnd {
    sample_rate: Option<u32>,
    vad_frame: Option<usize>,
    vad_context: Option<usize>,
    turn_window_seconds: Option<f64>,
    asr_window_seconds: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActions {
    labels: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLicense {
    component: Option<String>,
    license: Option<String>,
    file: Option<String>,
    root: Option<String>,
}

/// Front-end parameters from the manifest. The native kind reads the rest of its front end
/// (dMel, patches) from the ONNX model's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontEnd {
    /// Audio rate the models take (16 000).
    pub sample_rate: u32,
    /// Silero VAD: new samples per frame (512 at 16 kHz).
    pub vad_frame: usize,
    /// Silero VAD: context samples in front of each frame (64 at 16 kHz).
    pub vad_context: usize,
    /// Smart Turn: seconds of audio it sees (8).
    pub turn_window_seconds: f64,
    /// Whisper: longest audio per transcription, seconds (30).
    pub asr_window_seconds: f64,
}

/// One licence entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct License {
    pub component: String,
    pub license: String,
    /// The licence text, if the manifest names a file.
    pub file: Option<PathBuf>,
}

/// A verified model package.
#[derive(Debug, Clone)]
pub struct Package {
    pub dir: PathBuf,
    pub name: String,
    pub kind: Kind,
    pub description: String,
    /// Role → absolute path, every file verified.
    pub files: HashMap<String, PathBuf>,
    pub frontend: FrontEnd,
    pub action_labels: Vec<String>,
    pub licenses: Vec<License>,
}

impl Package {
    /// The file for `role`; loading guarantees the kind's roles are present.
    pub fn file(&self, role: &str) -> Result<&Path, PackageError> {
        self.files
            .get(role)
            .map(PathBuf::as_path)
            .ok_or_else(|| PackageError::Missing {
                dir: self.dir.clone(),
                what: format!("files.{role}"),
            })
    }

    /// Index of `label` in the action labels.
    pub fn action_index(&self, label: &str) -> Option<usize> {
        self.action_labels.iter().position(|l| l == label)
    }
}

/// Where the default package is looked for, in order: the installed copy in the cache
/// (`$GST_INTERACTION_CACHE/packages/cascade-default`, which `scripts/setup.sh` installs), then
/// the source tree this plugin was built from.
pub fn default_package_candidates() -> Vec<PathBuf> {
    vec![
        interaction_runtime::cache_root()
            .join("packages")
            .join(DEFAULT_PACKAGE),
        source_packages_dir().join(DEFAULT_PACKAGE),
    ]
}

/// `models/packages` of the source tree this crate was built from.
pub fn source_packages_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/packages")
}

/// The default package directory: the first candidate that holds a manifest.
pub fn default_package_dir() -> Result<PathBuf, PackageError> {
    let candidates = default_package_candidates();
    candidates
        .iter()
        .find(|dir| dir.join(MANIFEST_FILE).is_file())
        .cloned()
        .ok_or_else(|| PackageError::NoManifest {
            dir: candidates[0].clone(),
            detail: format!(
                "the default package was looked for in {}; run `scripts/setup.sh` to install it \
                 or set the `model` property",
                candidates
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        })
}

/// Loads and verifies the package in `dir`: manifest fields, file presence and checksums.
pub fn load(dir: &Path) -> Result<Package, PackageError> {
    let dir = dir.to_path_buf();
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| PackageError::NoManifest {
        dir: dir.clone(),
        detail: e.to_string(),
    })?;
    let raw: RawManifest = toml::from_str(&text).map_err(|e| PackageError::Syntax {
        dir: dir.clone(),
        detail: e.to_string().trim().to_owned(),
    })?;
    let missing = |what: &str| PackageError::Missing {
        dir: dir.clone(),
        what: what.to_owned(),
    };
    let invalid = |detail: String| PackageError::Invalid {
        dir: dir.clone(),
        detail,
    };

    match raw.format {
        None => return Err(missing("`format` (the manifest format version, 1)")),
        Some(1) => {}
        Some(other) => {
            return Err(invalid(format!(
                "manifest format {other} is not supported (this build reads format 1)"
            )));
        }
    }
    let kind = match raw.kind.as_deref() {
        None => return Err(missing("`kind` (\"cascade\" or \"native\")")),
        Some("cascade") => Kind::Cascade,
        Some("native") => Kind::Native,
        Some(other) => {
            return Err(invalid(format!(
                "kind \"{other}\" is unknown (expected \"cascade\" or \"native\")"
            )));
        }
    };
    let roles: &[(&str, &str)] = match kind {
        Kind::Cascade => &CASCADE_ROLES,
        Kind::Native => &NATIVE_ROLES,
    };
    for (role, what) in roles {
        if !raw.files.contains_key(*role) {
            return Err(missing(&format!("files.{role} ({what})")));
        }
    }
    if VISION_ROLES
        .iter()
        .any(|(role, _)| raw.files.contains_key(*role))
    {
        for (role, what) in VISION_ROLES {
            if !raw.files.contains_key(role) {
                return Err(missing(&format!(
                    "files.{role} ({what}; a package with vision needs both {} and {})",
                    VISION_ROLES[0].0, VISION_ROLES[1].0
                )));
            }
        }
    }

    let raw_frontend = raw
        .frontend
        .ok_or_else(|| missing("the [frontend] table"))?;
    let sample_rate = raw_frontend
        .sample_rate
        .ok_or_else(|| missing("frontend.sample_rate"))?;
    if sample_rate != 16_000 {
        return Err(invalid(format!(
            "frontend.sample_rate {sample_rate} is not supported (the models take 16000)"
        )));
    }
    let frontend = FrontEnd {
        sample_rate,
        vad_frame: raw_frontend.vad_frame.unwrap_or(512),
        vad_context: raw_frontend.vad_context.unwrap_or(64),
        turn_window_seconds: raw_frontend.turn_window_seconds.unwrap_or(8.0),
        asr_window_seconds: raw_frontend.asr_window_seconds.unwrap_or(30.0),
    };
    if kind == Kind::Cascade {
        if raw_frontend.vad_frame.is_none() {
            return Err(missing("frontend.vad_frame (Silero VAD samples per frame)"));
        }
        if raw_frontend.vad_context.is_none() {
            return Err(missing("frontend.vad_context (Silero VAD context samples)"));
        }
        if raw_frontend.turn_window_seconds.is_none() {
            return Err(missing(
                "frontend.turn_window_seconds (seconds of audio Smart Turn sees)",
            ));
        }
        if (frontend.vad_frame, frontend.vad_context) != (512, 64) {
            return Err(invalid(format!(
                "frontend.vad_frame/vad_context {}/{} are not supported at 16 kHz (512/64)",
                frontend.vad_frame, frontend.vad_context
            )));
        }
        if !(0.5..=8.0).contains(&frontend.turn_window_seconds) {
            return Err(invalid(format!(
                "frontend.turn_window_seconds {} is out of range 0.5..=8",
                frontend.turn_window_seconds
            )));
        }
    }
    if !(1.0..=30.0).contains(&frontend.asr_window_seconds) {
        return Err(invalid(format!(
            "frontend.asr_window_seconds {} is out of range 1..=30",
            frontend.asr_window_seconds
        )));
    }

    let action_labels = raw
        .actions
        .and_then(|a| a.labels)
        .ok_or_else(|| missing("actions.labels"))?;
    for label in REQUIRED_ACTIONS {
        if !action_labels.iter().any(|l| l == label) {
            return Err(missing(&format!(
                "the action label \"{label}\" in actions.labels"
            )));
        }
    }

    if raw.licenses.is_empty() {
        return Err(missing("[[licenses]] entries (the licence of every model)"));
    }
    let mut licenses = Vec::with_capacity(raw.licenses.len());
    for (index, entry) in raw.licenses.into_iter().enumerate() {
        let component = entry
            .component
            .ok_or_else(|| missing(&format!("licenses[{index}].component")))?;
        let license = entry
            .license
            .ok_or_else(|| missing(&format!("licenses[{index}].license")))?;
        let file = match entry.file {
            Some(file) => {
                let path = resolve(&dir, entry.root.as_deref(), &file).map_err(invalid)?;
                if !path.is_file() {
                    return Err(PackageError::MissingFile {
                        dir: dir.clone(),
                        role: format!("licence of {component}"),
                        path,
                    });
                }
                Some(path)
            }
            None => None,
        };
        licenses.push(License {
            component,
            license,
            file,
        });
    }

    let mut files = HashMap::new();
    for (role, file) in &raw.files {
        let path = file
            .path
            .as_deref()
            .ok_or_else(|| missing(&format!("files.{role}.path")))?;
        let expected = file
            .sha256
            .as_deref()
            .ok_or_else(|| missing(&format!("files.{role}.sha256")))?
            .to_ascii_lowercase();
        if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!(
                "files.{role}.sha256 is not 64 hexadecimal digits"
            )));
        }
        let _ = &file.license;
        let path = resolve(&dir, file.root.as_deref(), path).map_err(invalid)?;
        if !path.is_file() {
            return Err(PackageError::MissingFile {
                dir: dir.clone(),
                role: role.clone(),
                path,
            });
        }
        let actual = sha256_cached(&path).map_err(|e| PackageError::MissingFile {
            dir: dir.clone(),
            role: format!("{role}: {e}"),
            path: path.clone(),
        })?;
        if actual != expected {
            return Err(PackageError::Checksum {
                dir: dir.clone(),
                role: role.clone(),
                path,
                expected,
                actual,
            });
        }
        files.insert(role.clone(), path);
    }
    if kind == Kind::Cascade {
        let asr_dir = files["asr-encoder"].parent().map(Path::to_path_buf);
        for role in ["asr-decoder", "asr-vocabulary", "asr-config"] {
            if files[role].parent().map(Path::to_path_buf) != asr_dir {
                return Err(invalid(format!(
                    "files.{role} must be in the same directory as files.asr-encoder"
                )));
            }
        }
    }

    Ok(Package {
        name: raw.name.unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        description: raw.description.unwrap_or_default(),
        dir,
        kind,
        files,
        frontend,
        action_labels,
        licenses,
    })
}

fn resolve(dir: &Path, root: Option<&str>, path: &str) -> Result<PathBuf, String> {
    let relative = Path::new(path);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "file path {path} must be relative and must not contain `..`"
        ));
    }
    let base = match root.unwrap_or("package") {
        "package" => dir.to_path_buf(),
        "models" => interaction_runtime::models_dir(),
        "derived" => interaction_runtime::cache_root().join("derived"),
        other => {
            return Err(format!(
                "root \"{other}\" is unknown (expected \"package\", \"models\" or \"derived\")"
            ));
        }
    };
    Ok(base.join(relative))
}

/// sha256 of a file, remembered per process by (path, size, modification time): a model is
/// hashed once per process, not at every start.
pub fn sha256_cached(path: &Path) -> std::io::Result<String> {
    type Key = (PathBuf, u64, Option<SystemTime>);
    static CACHE: OnceLock<Mutex<HashMap<Key, String>>> = OnceLock::new();
    let meta = std::fs::metadata(path)?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(hit);
    }
    let digest = sha256_file(path)?;
    if let Ok(mut c) = cache.lock() {
        c.insert(key, digest.clone());
    }
    Ok(digest)
}

/// sha256 of a file as lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
