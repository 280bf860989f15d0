//! Pipeline description files (`pipelines/*.pipeline`).
//!
//! A file holds one `gst-launch-1.0` description. Lines starting with `#` are comments;
//! a comment line of the form `# default NAME=value` declares a placeholder, which the
//! description uses as `${NAME}`. Everything else is joined with spaces.
//!
//! Users run a file with `scripts/gst-launch-file.sh pipelines/NAME.pipeline [NAME=value …]`;
//! tests load it with [`load`], override placeholders (input files, output folders, live test
//! sources instead of devices) and hand the text to `gst::parse::launch`.

use std::collections::BTreeMap;
use std::path::Path;

/// A pipeline file read into its description and its declared placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineFile {
    /// The description with `${NAME}` placeholders still in place.
    pub template: String,
    /// Declared placeholders with their default values.
    pub defaults: BTreeMap<String, String>,
}

impl PipelineFile {
    /// Parses the text of a pipeline file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut defaults = BTreeMap::new();
        let mut parts = Vec::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if let Some(comment) = trimmed.strip_prefix('#') {
                if let Some(declaration) = comment.trim().strip_prefix("default ") {
                    let (name, value) = declaration
                        .split_once('=')
                        .ok_or_else(|| format!("bad placeholder declaration: {line}"))?;
                    defaults.insert(name.trim().to_owned(), value.trim().to_owned());
                }
            } else if !trimmed.is_empty() {
                parts.push(trimmed.trim_end_matches('\\').trim_end());
            }
        }
        if parts.is_empty() {
            return Err("the file holds no pipeline description".into());
        }
        Ok(Self {
            template: parts.join(" "),
            defaults,
        })
    }

    /// The description with every placeholder replaced: `overrides` first, then defaults.
    /// An undeclared or unset placeholder is an error that names it.
    pub fn render(&self, overrides: &[(&str, &str)]) -> Result<String, String> {
        let mut out = String::with_capacity(self.template.len());
        let mut rest = self.template.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| "unterminated ${ in pipeline description".to_owned())?;
            let name = &after[..end];
            let value = overrides
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
                .or_else(|| self.defaults.get(name).cloned())
                .ok_or_else(|| format!("placeholder ${{{name}}} has no value and no default"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Reads and renders a pipeline file in one step.
pub fn load(path: impl AsRef<Path>, overrides: &[(&str, &str)]) -> Result<String, String> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    PipelineFile::parse(&text)?.render(overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# A test pipeline.\n# default OUT=/tmp/out.wav\n# default N=10\n\
        audiotestsrc num-buffers=${N} \\\n  ! wavenc ! filesink location=${OUT}\n";

    #[test]
    fn defaults_and_overrides() {
        let file = PipelineFile::parse(FILE).unwrap();
        assert_eq!(
            file.render(&[]).unwrap(),
            "audiotestsrc num-buffers=10 ! wavenc ! filesink location=/tmp/out.wav"
        );
        assert_eq!(
            file.render(&[("N", "3")]).unwrap(),
            "audiotestsrc num-buffers=3 ! wavenc ! filesink location=/tmp/out.wav"
        );
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let file = PipelineFile::parse("fakesrc ! ${SINK}").unwrap();
        assert!(file.render(&[]).unwrap_err().contains("${SINK}"));
        assert!(PipelineFile::parse("# only a comment").is_err());
    }
}
