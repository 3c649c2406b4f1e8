//! Source analysis: `filibuster analyze` on a generated services tree of
//! over 100,000 lines in the five languages it parses, timed beside the
//! time to read the same files and nothing else (the floor any reader
//! pays). Target: under 2 s.

use std::{fmt::Write as _, fs, path::Path, process::Command, time::Instant};

use anyhow::{Context, Result, bail};

use super::{Bench, median};

/// Services per language, and handlers per service file.
const SERVICES: usize = 20;
const HANDLERS: usize = 90;
const ROUNDS: usize = 3;

/// One handler per language, written as such code usually is; `{n}`
/// makes each one its own.
const HANDLER: [(&str, &str); 5] = [
    (
        "py",
        "@app.get(\"/items{n}/<item>\")\ndef item{n}(item):\n    \"\"\"Answers an item, or 404 when it is unknown.\"\"\"\n    if item not in ITEMS:\n        raise NotFound\n    try:\n        stock = requests.get(f\"{STOCK}/stock/{item}\", timeout=2)\n    except requests.RequestException:\n        abort(503)\n    if stock.status_code == HTTPStatus.CONFLICT:\n        return jsonify(error=\"reserved\"), 409\n    return jsonify(ITEMS[item])\n\n",
    ),
    (
        "js",
        "app.get('/items{n}/:id', async (req, res) => {\n  // Unknown ids answer 404.\n  const item = items.get(req.params.id);\n  if (!item) {\n    return res.status(404).json({ error: 'unknown' });\n  }\n  if (item.locked) return res\n    .status(423)\n    .send();\n  res.json(item);\n});\n\n",
    ),
    (
        "go",
        "func item{n}(w http.ResponseWriter, r *http.Request) {\n\tid := r.URL.Query().Get(\"id\")\n\titem, ok := items[id]\n\tif !ok {\n\t\thttp.Error(w, \"unknown\", http.StatusNotFound)\n\t\treturn\n\t}\n\tif item.Locked {\n\t\tw.WriteHeader(423)\n\t\treturn\n\t}\n\tjson.NewEncoder(w).Encode(item)\n}\n\n",
    ),
    (
        "java",
        "    @GetMapping(\"/items{n}/{id}\")\n    ResponseEntity<Item> item{n}(@PathVariable String id) {\n        Item item = items.get(id);\n        if (item == null) {\n            return ResponseEntity.notFound().build();\n        }\n        if (item.locked()) {\n            throw new ResponseStatusException(HttpStatus.LOCKED, \"locked\");\n        }\n        return ResponseEntity.ok(item);\n    }\n\n",
    ),
    (
        "rs",
        "async fn item{n}(Path(id): Path<String>) -> Result<Json<Item>, StatusCode> {\n    let item = ITEMS.get(&id).ok_or(StatusCode::NOT_FOUND)?;\n    if item.locked {\n        return Err(StatusCode::LOCKED);\n    }\n    Ok(Json(item.clone()))\n}\n\n",
    ),
];

fn header(language: &str) -> &'static str {
    match language {
        "py" => {
            "import requests\nfrom http import HTTPStatus\nfrom flask import Flask, abort, jsonify\nfrom werkzeug.exceptions import NotFound\n\napp = Flask(__name__)\n\n"
        }
        "js" => "const express = require('express');\nconst app = express();\n\n",
        "go" => "package main\n\nimport (\n\t\"encoding/json\"\n\t\"net/http\"\n)\n\n",
        "java" => {
            "import org.springframework.http.HttpStatus;\nimport org.springframework.http.ResponseEntity;\n\n@RestController\nclass Api {\n"
        }
        _ => "use axum::{extract::Path, http::StatusCode, Json};\n\n",
    }
}

impl Bench {
    pub(super) fn analysis(&self, table: &mut String) -> Result<()> {
        let tree = self.work.join("analysis-tree");
        let _ = fs::remove_dir_all(&tree);
        let (files, lines) = generate(&tree)?;
        let mut analyze = Vec::new();
        let mut read = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let output = Command::new(self.bin.join("filibuster"))
                .args(["analyze", "--services-directory"])
                .arg(&tree)
                .arg("--output-file")
                .arg(self.work.join("analysis.json"))
                .output()
                .context("cannot run filibuster analyze")?;
            analyze.push(started.elapsed().as_secs_f64());
            if !output.status.success() {
                bail!(
                    "filibuster analyze failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let started = Instant::now();
            let mut bytes = 0;
            for service in fs::read_dir(&tree)? {
                for file in fs::read_dir(service?.path())? {
                    bytes += fs::read(file?.path())?.len();
                }
            }
            std::hint::black_box(bytes);
            read.push(started.elapsed().as_secs_f64());
        }
        let (analyze, read) = (median(analyze.into_iter()), median(read.into_iter()));
        writeln!(
            table,
            "## Source analysis (a generated tree in Python, JavaScript, Go, Java and Rust; median of {ROUNDS})\n\n\
             | files | lines | analyze s | read only s | analyze ÷ read | lines/s | target < 2 s |\n\
             |---|---|---|---|---|---|---|\n\
             | {files} | {lines} | {analyze:.2} | {read:.3} | {:.0}× | {:.0} | {} |\n",
            analyze / read,
            lines as f64 / analyze,
            if analyze < 2.0 { "met" } else { "missed" },
        )?;
        Ok(())
    }
}

/// Writes the tree: per language, `SERVICES` services of one file each.
/// Returns (files, lines).
fn generate(tree: &Path) -> Result<(usize, usize)> {
    let (mut files, mut lines) = (0, 0);
    for (language, handler) in HANDLER {
        for service in 0..SERVICES {
            let dir = tree.join(format!("{language}{service}"));
            fs::create_dir_all(&dir)?;
            let mut text = header(language).to_string();
            for n in 0..HANDLERS {
                text.push_str(&handler.replace("{n}", &n.to_string()));
            }
            if language == "java" {
                text.push_str("}\n");
            }
            lines += text.lines().count();
            files += 1;
            fs::write(dir.join(format!("app.{language}")), text)?;
        }
    }
    Ok((files, lines))
}
