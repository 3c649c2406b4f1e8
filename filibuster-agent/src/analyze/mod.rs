//! `filibuster analyze`: which error statuses each service's source can
//! answer with, found by parsing it. The statuses become faults on calls to
//! that service (`filibuster test --analysis-file` or `[analysis]`), so
//! callers are tested against the errors their dependencies really produce.
//!
//! Each language is read with its tree-sitter grammar, one module each:
//! a status counts where the syntax answers with it (a raise, a call, a
//! return, an assignment, an annotation, a constant resolved through the
//! file's imports), never where it is compared against (a caller handling
//! its callee's answer), and never in a comment or a string. What that
//! still costs (README, "Source analysis"): it over-approximates (a status
//! in dead code, or sent on another route than the one called, still
//! counts) and under-approximates (a status computed at run time, or
//! produced by the framework itself, as a 404 for an unknown route, is not
//! seen).

mod go;
mod java;
mod javascript;
mod names;
mod python;
mod rust;
mod syntax;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::{
    explore::{FaultSpec, grpc_code},
    json_file,
};
use names::Status;

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// What source analysis found: per service, the errors its code handles and raises.
pub struct Analysis {
    /// Per service (as the configuration names it), what its code says.
    pub services: BTreeMap<String, ServiceAnalysis>,
    /// Files that could not be read in full, each with why: shown, never
    /// a reason to stop.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAnalysis {
    pub http_statuses: BTreeSet<u16>,
    /// gRPC status codes by name ("UNAVAILABLE"): faults of gRPC calls.
    #[serde(default)]
    pub grpc_codes: BTreeSet<String>,
    /// Where each finding comes from: "path:line: text".
    #[serde(default)]
    pub evidence: Vec<String>,
}

impl Analysis {
    /// Reads an analysis file written by `filibuster analyze`.
    pub fn read(path: &Path) -> Result<Self> {
        json_file::read(
            path,
            "analysis file",
            "the JSON `filibuster analyze --output-file` writes",
        )
    }

    /// Writes the analysis as JSON, replacing `path` whole.
    pub fn write(&self, path: &Path) -> Result<()> {
        json_file::write(path, "analysis file", self)
    }

    /// The HTTP statuses per service, as the fault space takes them.
    pub fn faults(&self) -> BTreeMap<String, BTreeSet<FaultSpec>> {
        self.services
            .iter()
            .map(|(name, service)| {
                let statuses = service.http_statuses.iter().map(|&c| FaultSpec::Status(c));
                let codes = service
                    .grpc_codes
                    .iter()
                    .filter_map(|name| grpc_code(name).map(FaultSpec::Grpc));
                (name.clone(), statuses.chain(codes).collect())
            })
            .collect()
    }

    /// What was found, a line per service, after a line per warning.
    pub fn describe(&self) -> Vec<String> {
        let services = self.services.iter().map(|(name, service)| {
            let statuses: Vec<String> = service.http_statuses.iter().map(u16::to_string).collect();
            let codes: Vec<&str> = service.grpc_codes.iter().map(String::as_str).collect();
            format!(
                "{name}: HTTP [{}] gRPC [{}]",
                statuses.join(", "),
                codes.join(", ")
            )
        });
        self.warnings
            .iter()
            .map(|w| format!("warning: {w}"))
            .chain(services)
            .collect()
    }

    /// Analyses every service under `dir`: each subdirectory is a service
    /// named after it; a source file directly in `dir` is one named after
    /// its stem.
    pub fn of_directory(dir: &Path) -> Result<Self> {
        let entries = fs::read_dir(dir)
            .with_context(|| format!("cannot read services directory {}", dir.display()))?;
        let mut analysis = Self::default();
        for entry in entries {
            let path = entry?.path();
            if is_not_service_code(&path) {
                continue;
            }
            let name = if path.is_dir() {
                path.file_name()
            } else if Language::of(&path).is_some() {
                path.file_stem()
            } else {
                None
            };
            let Some(name) = name.map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            analysis.services.entry(name.clone()).or_default();
            let files = walkdir::WalkDir::new(&path)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|entry| entry.depth() == 0 || !is_not_service_code(entry.path()));
            for file in files {
                let file = match file {
                    Ok(file) => file,
                    // A symlink loop, an unreadable directory.
                    Err(err) => {
                        analysis.warnings.push(format!("skipped: {err}"));
                        continue;
                    }
                };
                let Some(language) = Language::of(file.path()) else {
                    continue;
                };
                let shown = file.path().strip_prefix(dir).unwrap_or(file.path());
                let shown = shown.display().to_string();
                let service = analysis.services.entry(name.clone()).or_default();
                if let Err(why) = service.read(file.path(), language, &shown) {
                    analysis.warnings.push(format!("{shown}: {why}"));
                }
            }
        }
        Ok(analysis)
    }
}

/// Directories that hold no code of the service itself: its tests and
/// their fixtures, and what was vendored, installed or generated.
const NOT_SERVICE_DIRECTORIES: &[&str] = &[
    "test",
    "tests",
    "__tests__",
    "spec",
    "specs",
    "testdata",
    "fixtures",
    "mocks",
    "__mocks__",
    "node_modules",
    "venv",
    "site-packages",
    "__pycache__",
    "vendor",
    "target",
    "build",
    "dist",
];

/// Whether `path` is test code, a fixture, or vendored, installed or
/// generated code (hidden directories such as `.venv` and `.git`
/// included), by the conventions of each language: a mock's status in a
/// service's unit test is not something the service answers.
fn is_not_service_code(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if path.is_dir() {
        return name.starts_with('.') || NOT_SERVICE_DIRECTORIES.contains(&name);
    }
    let Some((stem, _)) = name.rsplit_once('.') else {
        return false;
    };
    match Language::of(path) {
        // test_x.py, x_test.py, conftest.py
        Some(Language::Python) => {
            stem.starts_with("test_") || stem.ends_with("_test") || stem == "conftest"
        }
        // x.test.js, x.spec.ts
        Some(Language::JavaScript | Language::TypeScript | Language::Tsx) => {
            stem.ends_with(".test") || stem.ends_with(".spec")
        }
        // x_test.go
        Some(Language::Go) => stem.ends_with("_test"),
        // XTest.java, XTests.java, XIT.java
        Some(Language::Java) => {
            stem.ends_with("Test") || stem.ends_with("Tests") || stem.ends_with("IT")
        }
        // Integration tests live in tests/ (skipped above); unit tests in
        // a `#[cfg(test)]` module, which the Rust reader skips.
        Some(Language::Rust) | None => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Language {
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    Java,
    Rust,
}

impl Language {
    fn of(path: &Path) -> Option<Self> {
        Some(match path.extension()?.to_str()? {
            "py" => Self::Python,
            "js" | "mjs" | "cjs" | "jsx" => Self::JavaScript,
            "ts" | "mts" | "cts" => Self::TypeScript,
            "tsx" => Self::Tsx,
            "go" => Self::Go,
            "java" => Self::Java,
            "rs" => Self::Rust,
            _ => return None,
        })
    }

    fn grammar(self) -> tree_sitter::Language {
        match self {
            Self::Python => python::language(),
            Self::JavaScript => javascript::javascript(),
            Self::TypeScript => javascript::typescript(),
            Self::Tsx => javascript::tsx(),
            Self::Go => go::language(),
            Self::Java => java::language(),
            Self::Rust => rust::language(),
        }
    }

    fn read(self, file: &mut syntax::File, root: tree_sitter::Node) {
        match self {
            Self::Python => python::read(file, root),
            Self::JavaScript | Self::TypeScript | Self::Tsx => javascript::read(file, root),
            Self::Go => go::read(file, root),
            Self::Java => java::read(file, root),
            Self::Rust => rust::read(file, root),
        }
    }
}

/// Reads `text` in the language `selector` picks (fuzzing: every grammar
/// and reader on arbitrary text).
pub(crate) fn read_source(text: &str, selector: u8) -> ServiceAnalysis {
    use Language::*;
    let languages = [Python, JavaScript, TypeScript, Tsx, Go, Java, Rust];
    let language = languages[usize::from(selector) % languages.len()];
    let mut service = ServiceAnalysis::default();
    let _ = service.scan(text, language, "fuzzed");
    service
}

/// Larger files are generated (bundles, protobuf stubs), not written:
/// what they answer is not the service's own code.
const LARGEST_SOURCE: u64 = 2 << 20;

impl ServiceAnalysis {
    /// Reads one source file; an error says why it was skipped.
    fn read(&mut self, path: &Path, language: Language, shown: &str) -> Result<(), String> {
        let size = fs::metadata(path).map_err(|e| e.to_string())?.len();
        if size > LARGEST_SOURCE {
            return Err(format!(
                "skipped: {} MB, larger than a written source file ({} MB)",
                size >> 20,
                LARGEST_SOURCE >> 20
            ));
        }
        let bytes = fs::read(path).map_err(|e| format!("skipped: {e}"))?;
        let text = String::from_utf8(bytes).map_err(|_| "skipped: not UTF-8 text".to_string())?;
        self.scan(&text, language, shown)
    }

    /// Reads `text` as `language`; what parsed is read even where some
    /// did not (an error says where).
    fn scan(&mut self, text: &str, language: Language, shown: &str) -> Result<(), String> {
        let mut parser = tree_sitter::Parser::new();
        parser
            .set_language(&language.grammar())
            .map_err(|e| format!("skipped: {e}"))?;
        let tree = parser
            .parse(text, None)
            .ok_or_else(|| "skipped: the parser gave up".to_string())?;
        let root = tree.root_node();
        let mut file = syntax::File::new(text);
        language.read(&mut file, root);
        let lines: Vec<&str> = text.lines().collect();
        let mut found = file.found;
        found.sort_by_key(|&(_, line)| line);
        for (status, line) in found {
            let new = match status {
                Status::Http(code) => self.http_statuses.insert(code),
                Status::Grpc(name) => self.grpc_codes.insert(name.to_string()),
            };
            if new {
                let shown_line = lines.get(line).map_or("", |l| l.trim());
                self.evidence
                    .push(format!("{shown}:{}: {shown_line}", line + 1));
            }
        }
        match first_error(root) {
            Some(line) => Err(format!(
                "does not parse as {language:?} from line {} on; what did parse was read",
                line + 1
            )),
            None => Ok(()),
        }
    }
}

/// The line of the first syntax error in a tree, if any.
fn first_error(root: tree_sitter::Node) -> Option<usize> {
    if !root.has_error() {
        return None;
    }
    let mut line = None;
    syntax::walk(root, |node| {
        if line.is_some() {
            return false;
        }
        if node.is_error() || node.is_missing() {
            line = Some(node.start_position().row);
            return false;
        }
        node.has_error()
    });
    line.or(Some(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(language: Language, text: &str) -> ServiceAnalysis {
        let mut service = ServiceAnalysis::default();
        let parsed = service.scan(text, language, "x");
        assert_eq!(parsed, Ok(()), "the test's source parses");
        service
    }

    pub(super) fn statuses(language: Language, text: &str) -> Vec<u16> {
        scan(language, text).http_statuses.into_iter().collect()
    }

    pub(super) fn grpc(language: Language, text: &str) -> Vec<String> {
        scan(language, text).grpc_codes.into_iter().collect()
    }

    #[test]
    fn evidence_names_the_line_of_the_syntax() {
        let service = scan(Language::Python, "\n\nabort(\n    404,\n)\n");
        assert_eq!(service.evidence, vec!["x:4: 404,"]);
    }

    #[test]
    fn bad_input_is_a_warning_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("filibuster-bad-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let svc = dir.join("svc");
        fs::create_dir_all(&svc).unwrap();
        fs::write(svc.join("app.py"), "abort(503)\n").unwrap();
        fs::write(
            svc.join("broken.py"),
            "def (:\n    raise NotFound\nabort(409)\n",
        )
        .unwrap();
        fs::write(svc.join("blob.js"), [0xff, 0xfe, 0x00, 0x01]).unwrap();
        let generated = "res.status(418);\n".repeat((LARGEST_SOURCE as usize / 16) + 1);
        fs::write(svc.join("bundle.js"), generated).unwrap();
        std::os::unix::fs::symlink(&svc, svc.join("loop")).unwrap();
        let analysis = Analysis::of_directory(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let warnings = analysis.warnings.join("\n");
        assert!(
            warnings.contains("svc/blob.js: skipped: not UTF-8"),
            "{warnings}"
        );
        assert!(
            warnings.contains("svc/bundle.js: skipped: 2 MB"),
            "{warnings}"
        );
        assert!(
            warnings.contains("svc/broken.py: does not parse"),
            "{warnings}"
        );
        assert!(warnings.contains("loop"), "{warnings}");
        let found: Vec<_> = analysis.services["svc"]
            .http_statuses
            .iter()
            .copied()
            .collect();
        assert_eq!(
            found,
            vec![409, 503],
            "the rest of the tree, and of a broken file, is read"
        );
    }

    #[test]
    fn tests_fixtures_and_vendored_code_are_not_the_services_behaviour() {
        let dir = std::env::temp_dir().join(format!("filibuster-layout-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let files: &[(&str, &str)] = &[
            // The services' own code: what counts.
            ("py/app.py", "abort(503)"),
            ("js/server.js", "res.status(502)"),
            (
                "go/main.go",
                "package main\nfunc h(w W) { w.WriteHeader(504) }",
            ),
            (
                "java/src/main/java/Api.java",
                "class Api { Object a = HttpStatus.CONFLICT; }",
            ),
            (
                "rs/src/main.rs",
                "fn f() { StatusCode::GONE; }\n#[cfg(test)]\nmod tests { fn t() { StatusCode::FORBIDDEN; } }",
            ),
            // Their tests, mocks and fixtures, one per convention.
            ("py/tests/test_app.py", "abort(403)"),
            ("py/test_app.py", "abort(403)"),
            ("py/app_test.py", "abort(403)"),
            ("py/conftest.py", "abort(403)"),
            ("py/.venv/lib/flask.py", "abort(403)"),
            ("py/venv/lib/flask.py", "abort(403)"),
            ("py/fixtures/upstream.py", "abort(403)"),
            ("js/server.test.js", "res.status(403)"),
            ("js/server.spec.ts", "res.status(403)"),
            ("js/__tests__/server.js", "res.status(403)"),
            ("js/__mocks__/db.js", "res.status(403)"),
            ("js/node_modules/express/index.js", "res.status(403)"),
            ("js/dist/server.js", "res.status(403)"),
            ("go/main_test.go", "w.WriteHeader(403)"),
            ("go/vendor/lib/lib.go", "w.WriteHeader(403)"),
            ("go/testdata/h.go", "w.WriteHeader(403)"),
            ("java/src/test/java/ApiTest.java", "HttpStatus.FORBIDDEN"),
            ("java/src/main/java/ApiIT.java", "HttpStatus.FORBIDDEN"),
            ("java/build/Gen.java", "HttpStatus.FORBIDDEN"),
            ("rs/tests/api.rs", "StatusCode::FORBIDDEN"),
            ("rs/target/debug/build/out.rs", "StatusCode::FORBIDDEN"),
        ];
        for (file, text) in files {
            let path = dir.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        // A directory of tests beside the services is not a service.
        fs::create_dir_all(dir.join("tests")).unwrap();
        fs::write(dir.join("tests/test_all.py"), "abort(403)").unwrap();
        let analysis = Analysis::of_directory(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();

        let found = |service: &str| {
            let service = &analysis.services[service];
            assert!(
                service
                    .evidence
                    .iter()
                    .all(|e| !e.contains("403") && !e.contains("FORBIDDEN")),
                "{:?}",
                service.evidence
            );
            service.http_statuses.iter().copied().collect::<Vec<_>>()
        };
        assert_eq!(found("py"), vec![503]);
        assert_eq!(found("js"), vec![502]);
        assert_eq!(found("go"), vec![504]);
        assert_eq!(found("java"), vec![409]);
        assert_eq!(found("rs"), vec![410]);
        assert_eq!(analysis.services.len(), 5, "{:?}", analysis.services.keys());
    }

    #[test]
    fn a_mistyped_analysis_file_names_its_line() {
        let dir = std::env::temp_dir().join(format!("filibuster-analysis-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("analysis.json");
        fs::write(
            &path,
            "{\n  \"services\": {\n    \"bar\": {\"http_status\": [503]}\n  }\n}\n",
        )
        .unwrap();
        let err = Analysis::read(&path).unwrap_err().to_string();
        fs::remove_dir_all(&dir).unwrap();
        assert!(
            err.contains("analysis.json: line 3: unknown field `http_status`"),
            "{err}"
        );
        assert!(err.contains("filibuster analyze"), "{err}");
    }
}
