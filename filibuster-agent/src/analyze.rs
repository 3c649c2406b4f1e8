//! `filibuster analyze`: which error statuses each service's source can
//! answer with, found by reading it. The statuses become faults on calls to
//! that service (`filibuster test --analysis-file`), so callers are tested
//! against the errors their dependencies really produce.
//!
//! It reads source text with patterns, per language, not a parser: the
//! idioms are few and stable, and a parser per language would be five
//! toolchains for a list of numbers. What that costs (README, "Source
//! analysis"): it over-approximates (a status in dead code, or sent on
//! another route than the one called, still counts) and under-approximates
//! (a status computed at run time, or produced by the framework itself, as
//! a 404 for an unknown route, is not seen).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
    sync::LazyLock,
};

use anyhow::{Context, Result};
use hyper::StatusCode;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::{
    explore::{FaultSpec, GRPC_CODES, grpc_code},
    json_file,
};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    pub services: BTreeMap<String, ServiceAnalysis>,
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
    pub fn read(path: &Path) -> Result<Self> {
        json_file::read(
            path,
            "analysis file",
            "the JSON `filibuster analyze --output-file` writes",
        )
    }

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
            let service = analysis.services.entry(name).or_default();
            let files = walkdir::WalkDir::new(&path)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|entry| entry.depth() == 0 || !is_not_service_code(entry.path()));
            for file in files {
                let file = file?;
                let Some(language) = Language::of(file.path()) else {
                    continue;
                };
                // Unreadable or non-UTF-8 files hold no idioms we know.
                let Ok(text) = fs::read_to_string(file.path()) else {
                    continue;
                };
                let shown = file.path().strip_prefix(dir).unwrap_or(file.path());
                service.scan(&text, language, &shown.display().to_string());
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
        Some(Language::JavaScript) => stem.ends_with(".test") || stem.ends_with(".spec"),
        // x_test.go
        Some(Language::Go) => stem.ends_with("_test"),
        // XTest.java, XTests.kt, XIT.java
        Some(Language::Java) => {
            stem.ends_with("Test") || stem.ends_with("Tests") || stem.ends_with("IT")
        }
        // Integration tests live in tests/ (skipped above); unit tests in
        // a `#[cfg(test)]` module, which `ServiceAnalysis::scan` stops at.
        Some(Language::Rust) | None => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Language {
    Python,
    JavaScript,
    Go,
    Java,
    Rust,
}

impl Language {
    fn of(path: &Path) -> Option<Self> {
        Some(match path.extension()?.to_str()? {
            "py" => Self::Python,
            "js" | "mjs" | "cjs" | "ts" => Self::JavaScript,
            "go" => Self::Go,
            "java" | "kt" => Self::Java,
            "rs" => Self::Rust,
            _ => return None,
        })
    }

    fn comment(self) -> &'static str {
        match self {
            Self::Python => "#",
            _ => "//",
        }
    }
}

/// What a pattern's first capture is.
#[derive(Clone, Copy)]
enum Capture {
    /// A number: 503.
    Number,
    /// A status by name: NOT_FOUND, NotFound.
    StatusName,
    /// A gRPC code by name: UNAVAILABLE, Unavailable, unavailable.
    GrpcName,
}

struct Idiom {
    languages: &'static [Language],
    pattern: Regex,
    capture: Capture,
}

static IDIOMS: LazyLock<Vec<Idiom>> = LazyLock::new(|| {
    use Capture::*;
    use Language::*;
    let idiom = |languages, pattern: &str, capture| Idiom {
        languages,
        pattern: Regex::new(pattern).expect("a valid pattern"),
        capture,
    };
    vec![
        // Flask/werkzeug: abort(503), raise ServiceUnavailable(), return body, 503
        idiom(&[Python], r"\babort\(\s*(\d{3})\b", Number),
        idiom(
            &[Python],
            r"\braise\s+(?:\w+\.)*([A-Z][A-Za-z]+)\s*\(",
            StatusName,
        ),
        idiom(&[Python], r"\breturn\b.*,\s*(\d{3})\s*\)?\s*$", Number),
        idiom(&[Python], r"\bHTTPStatus\.([A-Z_]+)", StatusName),
        idiom(
            &[Python, JavaScript, Java],
            r"\bstatus(?:_code)?\s*=\s*(\d{3})\b",
            Number,
        ),
        idiom(&[Python], r"\bgrpc\.StatusCode\.([A-Z_]+)", GrpcName),
        // Express and friends: res.status(503), res.sendStatus(404)
        idiom(
            &[JavaScript, Java],
            r"\.(?:status|sendStatus)\(\s*(\d{3})\s*\)",
            Number,
        ),
        idiom(
            &[JavaScript],
            r"\b(?:statusCode\s*=|writeHead\()\s*(\d{3})\b",
            Number,
        ),
        idiom(&[JavaScript], r"\bstatus\.([A-Z][A-Z_]+)\b", GrpcName),
        // Go: http.Error(w, msg, http.StatusServiceUnavailable), w.WriteHeader(503)
        idiom(&[Go], r"\bhttp\.Status([A-Z][A-Za-z]+)\b", StatusName),
        idiom(&[Go], r"\bWriteHeader\(\s*(\d{3})\s*\)", Number),
        idiom(&[Go], r"\bhttp\.Error\(.*,\s*(\d{3})\s*\)", Number),
        idiom(&[Go], r"\bcodes\.([A-Z][A-Za-z]+)\b", GrpcName),
        // Java (Spring, Servlets, grpc-java)
        idiom(&[Java], r"\bHttpStatus\.([A-Z_]+)\b", StatusName),
        idiom(&[Java], r"\bSC_([A-Z_]+)\b", StatusName),
        idiom(&[Java], r"\bStatus\.([A-Z][A-Z_]+)\b", GrpcName),
        // Rust (http/hyper/axum, tonic)
        idiom(&[Rust], r"\bStatusCode::([A-Z_]+)\b", StatusName),
        idiom(&[Rust], r"\bStatusCode::from_u16\(\s*(\d{3})\s*\)", Number),
        idiom(&[Rust], r"\bStatus::([a-z_]+)\(", GrpcName),
        idiom(&[Rust], r"\bCode::([A-Z][A-Za-z]+)\b", GrpcName),
    ]
});

/// NOT_FOUND, NotFound, not_found → NOTFOUND: one key for every spelling.
fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Error statuses by squashed reason phrase ("SERVICEUNAVAILABLE" → 503).
static STATUS_NAMES: LazyLock<BTreeMap<String, u16>> = LazyLock::new(|| {
    (400..600)
        .filter_map(|code| {
            let reason = StatusCode::from_u16(code).ok()?.canonical_reason()?;
            Some((squash(reason), code))
        })
        .collect()
});

impl ServiceAnalysis {
    fn scan(&mut self, text: &str, language: Language, file: &str) {
        for (number, line) in text.lines().enumerate() {
            let line_start = line.trim_start();
            // Rust keeps unit tests in a module at the end of the file.
            if language == Language::Rust && line_start.starts_with("#[cfg(test)]") {
                break;
            }
            if line_start.starts_with(language.comment()) {
                continue;
            }
            for idiom in IDIOMS.iter().filter(|i| i.languages.contains(&language)) {
                for found in idiom.pattern.captures_iter(line) {
                    let name = &found[1];
                    let new = match idiom.capture {
                        Capture::Number => name
                            .parse()
                            .ok()
                            .filter(|c| (400..600).contains(c))
                            .is_some_and(|c| self.http_statuses.insert(c)),
                        Capture::StatusName => STATUS_NAMES
                            .get(&squash(name))
                            .is_some_and(|&c| self.http_statuses.insert(c)),
                        Capture::GrpcName => {
                            let squashed = squash(name).replace("CANCELED", "CANCELLED");
                            GRPC_CODES[1..]
                                .iter()
                                .find(|code| squash(code) == squashed)
                                .is_some_and(|code| self.grpc_codes.insert(code.to_string()))
                        }
                    };
                    if new {
                        self.evidence
                            .push(format!("{file}:{}: {}", number + 1, line.trim()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(language: Language, text: &str) -> ServiceAnalysis {
        let mut service = ServiceAnalysis::default();
        service.scan(text, language, "x");
        service
    }

    fn statuses(language: Language, text: &str) -> Vec<u16> {
        scan(language, text).http_statuses.into_iter().collect()
    }

    fn grpc(language: Language, text: &str) -> Vec<String> {
        scan(language, text).grpc_codes.into_iter().collect()
    }

    #[test]
    fn python_flask_idioms() {
        let source = r#"
from werkzeug.exceptions import ServiceUnavailable, NotFound
    # abort(418) in a comment does not count
    abort(404)
    raise ServiceUnavailable("bar is down")
    return jsonify({"error": "x"}), 409
    return "ok", 200
    context.abort(grpc.StatusCode.UNAVAILABLE, "down")
"#;
        assert_eq!(statuses(Language::Python, source), vec![404, 409, 503]);
        assert_eq!(grpc(Language::Python, source), vec!["UNAVAILABLE"]);
    }

    #[test]
    fn javascript_go_java_rust_idioms() {
        assert_eq!(
            statuses(
                Language::JavaScript,
                "res.status(503).send(); res.sendStatus(404)"
            ),
            vec![404, 503]
        );
        assert_eq!(
            grpc(
                Language::JavaScript,
                "callback({code: grpc.status.NOT_FOUND})"
            ),
            vec!["NOT_FOUND"]
        );
        let go = "http.Error(w, \"down\", http.StatusServiceUnavailable)\nw.WriteHeader(502)\nreturn status.Error(codes.DeadlineExceeded, \"slow\")";
        assert_eq!(statuses(Language::Go, go), vec![502, 503]);
        assert_eq!(grpc(Language::Go, go), vec!["DEADLINE_EXCEEDED"]);
        let java = "return new ResponseEntity<>(HttpStatus.GATEWAY_TIMEOUT);\nresponseObserver.onError(Status.UNAVAILABLE.asException());";
        assert_eq!(statuses(Language::Java, java), vec![504]);
        assert_eq!(grpc(Language::Java, java), vec!["UNAVAILABLE"]);
        let rust = "(StatusCode::BAD_GATEWAY, body)\nErr(Status::resource_exhausted(\"full\"))";
        assert_eq!(statuses(Language::Rust, rust), vec![502]);
        assert_eq!(grpc(Language::Rust, rust), vec!["RESOURCE_EXHAUSTED"]);
    }

    #[test]
    fn evidence_names_the_line() {
        let service = scan(Language::Python, "\n\n    abort(404)\n");
        assert_eq!(service.evidence, vec!["x:3: abort(404)"]);
    }

    #[test]
    fn tests_fixtures_and_vendored_code_are_not_the_services_behaviour() {
        let dir = std::env::temp_dir().join(format!("filibuster-layout-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let files: &[(&str, &str)] = &[
            // The services' own code: what counts.
            ("py/app.py", "abort(503)"),
            ("js/server.js", "res.status(502)"),
            ("go/main.go", "w.WriteHeader(504)"),
            ("java/src/main/java/Api.java", "HttpStatus.CONFLICT"),
            (
                "rs/src/main.rs",
                "StatusCode::GONE\n#[cfg(test)]\nmod tests { StatusCode::FORBIDDEN }",
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
