//! Python: Flask and werkzeug, FastAPI and Starlette, Django (and its REST
//! framework), aiohttp, grpcio.

use std::collections::HashMap;

use tree_sitter::Node;

use super::{
    names::{self, Status},
    syntax::{File, found_constant, grpc_named, http_named, numbered_constant, qualified, walk},
};

pub(super) fn language() -> tree_sitter::Language {
    tree_sitter_python::LANGUAGE.into()
}

pub(super) fn read(file: &mut File, root: Node) {
    walk(root, |node| {
        match node.kind() {
            "import_statement" | "import_from_statement" => imports(file, node),
            _ => return true,
        }
        false
    });
    let classes = Classes::of(file, root);
    walk(root, |node| {
        answers(file, &classes, node);
        // What a handler is registered for (`@app.errorhandler(404)`) is
        // not an answer. (What an `except` catches is neither raised nor
        // called, so it is not counted either.)
        node.kind() != "decorator"
    });
}

/// `import a.b as c`, `from a import b as c`, `from .errors import X`.
fn imports<'s>(file: &mut File<'s>, node: Node) {
    let module: Vec<&str> = match node.child_by_field_name("module_name") {
        Some(module) => split(file.text(module)),
        None => Vec::new(),
    };
    let mut cursor = node.walk();
    for name in node.children_by_field_name("name", &mut cursor) {
        let (dotted, alias) = match name.kind() {
            "aliased_import" => (
                file.field(name, "name").unwrap_or_default(),
                file.field(name, "alias"),
            ),
            _ => (file.text(name), None),
        };
        let mut path = module.clone();
        path.extend(split(dotted));
        match alias {
            Some(alias) => file.import(alias, path),
            // `import a.b` binds `a`; `from m import b` binds `b`.
            None if module.is_empty() => file.import(path[0], vec![path[0]]),
            None => file.import(path.last().copied().unwrap_or_default(), path),
        }
    }
    let mut cursor = node.walk();
    if node
        .named_children(&mut cursor)
        .any(|c| c.kind() == "wildcard_import")
    {
        file.wildcard = true;
    }
}

fn split(dotted: &str) -> Vec<&str> {
    dotted.split('.').map(str::trim).collect()
}

/// The file's own exception classes and the status each answers with:
/// `class OutOfStock(HTTPException): code = 409`, or a subclass of one
/// that does (`class Missing(NotFound): ...`).
struct Classes<'s> {
    codes: HashMap<&'s str, u16>,
    /// Every class the file defines, with or without a status.
    defined: Vec<&'s str>,
}

impl<'s> Classes<'s> {
    fn of(file: &mut File<'s>, root: Node) -> Self {
        let mut found = Vec::new();
        walk(root, |node| {
            if node.kind() == "class_definition" {
                found.push(node);
            }
            true
        });
        let mut classes = Self {
            codes: HashMap::new(),
            defined: found
                .iter()
                .filter_map(|c| file.field(*c, "name"))
                .collect(),
        };
        // Bases first where the file defines them first; a second pass
        // covers a subclass written above its base.
        for _ in 0..2 {
            for &class in &found {
                let Some(name) = file.field(class, "name") else {
                    continue;
                };
                if classes.codes.contains_key(name) {
                    continue;
                }
                let own = class
                    .child_by_field_name("body")
                    .and_then(|body| class_code(file, body));
                let inherited = || {
                    let bases = class.child_by_field_name("superclasses")?;
                    let mut cursor = bases.walk();
                    let bases: Vec<_> = bases.named_children(&mut cursor).collect();
                    bases.into_iter().find_map(|b| classes.status(file, b))
                };
                if let Some((code, node)) = own.or_else(|| inherited().map(|c| (c, class))) {
                    classes.codes.insert(name, code);
                    file.found(node, Status::Http(code));
                }
            }
        }
        classes
    }

    /// The status raising or calling `class` answers with.
    fn status(&self, file: &File<'s>, class: Node) -> Option<u16> {
        let path = file.resolved(class)?;
        let name = *path.last()?;
        if path.len() == 1 && !file.is_imported(name) {
            // The file's own class, or a builtin (`raise NotImplemented`).
            return self.codes.get(name).copied().or_else(|| {
                (file.wildcard && !self.defined.contains(&name))
                    .then(|| exception_status(name))
                    .flatten()
            });
        }
        exception_status(name)
    }
}

/// `code = 409` (werkzeug) or `status_code = 409` (FastAPI, Django REST
/// framework) in a class body.
fn class_code<'t>(file: &File, body: Node<'t>) -> Option<(u16, Node<'t>)> {
    let mut cursor = body.walk();
    let statements: Vec<_> = body.named_children(&mut cursor).collect();
    statements.into_iter().find_map(|statement| {
        let assignment = statement.named_child(0)?;
        let named = matches!(file.field(assignment, "left")?, "code" | "status_code");
        let value = assignment.child_by_field_name("right")?;
        (assignment.kind() == "assignment" && named)
            .then(|| file.number(value))
            .flatten()
            .map(|code| (code, value))
    })
}

/// The status of an exception or response class by its name: werkzeug's
/// `NotFound`, aiohttp's `HTTPNotFound`, Django's `Http404` and
/// `HttpResponseNotFound`.
fn exception_status(name: &str) -> Option<u16> {
    if name == "Http404" {
        return Some(404);
    }
    let named = names::http_status;
    named(name).or_else(|| {
        let rest = name
            .strip_prefix("HttpResponse")
            .or_else(|| name.strip_prefix("HTTP"))?;
        named(rest)
    })
}

/// Calls whose positional integer arguments are statuses.
fn is_response_call(name: &str) -> bool {
    name == "make_response"
        || name == "json_response"
        || name.ends_with("Response")
        || name.ends_with("HTTPException")
}

fn answers(file: &mut File, classes: &Classes, node: Node) {
    match node.kind() {
        // raise NotFound / raise ex.Conflict("taken") / raise Missing
        "raise_statement" => {
            let Some(raised) = node.named_child(0) else {
                return;
            };
            let class = match raised.kind() {
                "call" => raised.child_by_field_name("function"),
                _ => Some(raised),
            };
            if let Some(code) = class.and_then(|c| classes.status(file, c)) {
                file.found(raised, Status::Http(code));
            }
        }
        "call" => {
            let Some(function) = node.child_by_field_name("function") else {
                return;
            };
            let arguments = node.child_by_field_name("arguments");
            // NotFound() returned, HttpResponseNotFound(...), web.HTTPConflict()
            if node.parent().map(|p| p.kind()) != Some("raise_statement")
                && let Some(code) = classes.status(file, function)
            {
                file.found(node, Status::Http(code));
            }
            let name = file
                .path(function)
                .and_then(|p| p.last().copied())
                .unwrap_or_default();
            match name {
                // abort(404); a status constant there is found as one
                "abort" => file.found_number(arguments.and_then(|a| a.named_child(0))),
                // make_response(body, 429), Response("gone", 410),
                // HTTPException(404, "missing")
                name if is_response_call(name) => file.found_numbers_in(arguments),
                _ => {}
            }
            // Response(status=503), JSONResponse(status_code=409)
            let Some(arguments) = arguments else { return };
            let mut cursor = arguments.walk();
            let keywords: Vec<_> = arguments
                .named_children(&mut cursor)
                .filter(|a| a.kind() == "keyword_argument")
                .filter(|a| matches!(file.field(*a, "name"), Some("status" | "status_code")))
                .collect();
            for keyword in keywords {
                file.found_number(keyword.child_by_field_name("value"));
            }
        }
        // return body, 422 / return body, 201, headers
        "return_statement" => {
            let Some(value) = node.named_child(0) else {
                return;
            };
            if matches!(value.kind(), "expression_list" | "tuple") {
                file.found_number(value.named_child(1));
            }
        }
        // response.status_code = 404
        "assignment" => {
            let is_status = node
                .child_by_field_name("left")
                .and_then(|l| file.path(l))
                .is_some_and(|p| {
                    p.len() > 1 && matches!(p.last(), Some(&("status_code" | "status")))
                });
            if is_status {
                file.found_number(node.child_by_field_name("right"));
            }
        }
        // HTTPStatus.NOT_FOUND, status.HTTP_409_CONFLICT, grpc.StatusCode.UNAVAILABLE
        "attribute" => {
            let status = file.resolved(node).and_then(|path| constant(&path));
            found_constant(file, node, status);
        }
        // HTTP_404_NOT_FOUND imported from starlette.status
        "identifier" if file.is_imported(file.text(node)) && !in_import(node) => {
            let status = file.resolved(node).and_then(|path| constant(&path));
            found_constant(file, node, status);
        }
        _ => {}
    }
}

fn in_import(node: Node) -> bool {
    std::iter::successors(node.parent(), |n| n.parent())
        .any(|n| matches!(n.kind(), "import_statement" | "import_from_statement"))
}

fn constant(path: &[&str]) -> Option<Status> {
    let (qualifier, name) = qualified(path)?;
    match qualifier {
        "HTTPStatus" => http_named(name),
        "StatusCode" => grpc_named(name),
        _ => numbered_constant(name),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Language::Python;
    use super::super::tests::{grpc, statuses};

    #[test]
    fn werkzeug_exceptions_raised_bare_called_and_through_every_import() {
        let source = r#"
from flask import Flask
from werkzeug.exceptions import NotFound, BadRequest as Invalid
from werkzeug import exceptions as ex
import werkzeug.exceptions

def get(item):
    if item is None:
        raise NotFound
    if item == "":
        raise Invalid("empty")
    if item == "taken":
        raise ex.Conflict
    if item == "gone":
        raise werkzeug.exceptions.Gone(
            description="removed",
        )
"#;
        assert_eq!(statuses(Python, source), vec![400, 404, 409, 410]);
    }

    #[test]
    fn flask_abort_returns_and_responses() {
        let source = r#"
import flask
from flask import abort, make_response, Response, jsonify
from http import HTTPStatus
import http

def view(x):
    if x == 1:
        flask.abort(403)
    if x == 2:
        abort(HTTPStatus.TOO_MANY_REQUESTS)
    if x == 3:
        return jsonify(error="x"), 422
    if x == 4:
        return make_response(
            jsonify(error="slow down"),
            429,
        )
    if x == 5:
        return Response("down", status=503)
    if x == 6:
        return "bad", http.HTTPStatus.BAD_GATEWAY
    resp = jsonify(ok=True)
    resp.status_code = 409
    return "ok", 200
"#;
        assert_eq!(statuses(Python, source), vec![403, 409, 422, 429, 502, 503]);
    }

    #[test]
    fn fastapi_starlette_and_their_status_module() {
        let source = r#"
from fastapi import FastAPI, HTTPException, status as st
from fastapi.responses import JSONResponse
from starlette.status import HTTP_423_LOCKED

async def view(x):
    if x:
        raise HTTPException(status_code=st.HTTP_409_CONFLICT, detail="taken")
    if not x:
        raise HTTPException(404, "missing")
    if x is None:
        return JSONResponse({"error": "x"}, status_code=400)
    raise HTTPException(status_code=HTTP_423_LOCKED)
"#;
        assert_eq!(statuses(Python, source), vec![400, 404, 409, 423]);
    }

    #[test]
    fn django_aiohttp_and_own_exception_classes() {
        let source = r#"
from django.http import Http404, HttpResponseNotFound, HttpResponse
from aiohttp import web
from werkzeug.exceptions import HTTPException, NotFound

class OutOfStock(HTTPException):
    code = 409
    description = "out of stock"

class NoSuchUser(NotFound):
    pass

class Plain(Exception):
    pass

def a():
    raise Http404("no")
def b():
    return HttpResponseNotFound("no")
def c():
    return HttpResponse("x", status=410)
async def d():
    raise web.HTTPServiceUnavailable()
def e():
    raise Plain
def f():
    raise NotImplemented
"#;
        assert_eq!(statuses(Python, source), vec![404, 409, 410, 503]);
    }

    #[test]
    fn grpc_abort_and_set_code() {
        let source = r#"
import grpc
from grpc import StatusCode as Code

def Get(self, request, context):
    if not request.id:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no id")
    context.set_code(Code.NOT_FOUND)
    return Reply()
"#;
        assert_eq!(grpc(Python, source), vec!["INVALID_ARGUMENT", "NOT_FOUND"]);
    }

    #[test]
    fn comments_strings_logs_comparisons_and_handlers_do_not_count() {
        let source = r#"
"""Answers 404 when missing: abort(404), raise NotFound."""
import logging
from http import HTTPStatus
from flask import abort
from werkzeug.exceptions import NotFound
import grpc

# abort(418)
log = logging.getLogger(__name__)

@app.errorhandler(NotFound)
def missing(e):
    log.warning("answered %d", 404)
    log.warning(f"answered {HTTPStatus.GONE}")
    return render("missing.html")

def call(r):
    if r.status_code == HTTPStatus.SERVICE_UNAVAILABLE:
        retry()
    if r.status_code in (HTTPStatus.BAD_GATEWAY, 504):
        retry()
    try:
        stub.Get(req)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAVAILABLE:
            retry()
    except NotFound:
        pass
    timeout_503s = 3
    match r.status_code:
        case HTTPStatus.CONFLICT:
            pass
"#;
        assert_eq!(statuses(Python, source), Vec::<u16>::new());
        assert_eq!(grpc(Python, source), Vec::<String>::new());
    }
}
