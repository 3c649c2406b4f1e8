//! JavaScript and TypeScript: Express, Fastify, Koa, Nest, `http-errors`,
//! Node's `http`, @grpc/grpc-js.

use tree_sitter::Node;

use super::{
    names::Status,
    syntax::{File, found_constant, grpc_named, http_named, qualified, walk},
};

pub(super) fn javascript() -> tree_sitter::Language {
    tree_sitter_javascript::LANGUAGE.into()
}

pub(super) fn typescript() -> tree_sitter::Language {
    tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into()
}

pub(super) fn tsx() -> tree_sitter::Language {
    tree_sitter_typescript::LANGUAGE_TSX.into()
}

pub(super) fn read(file: &mut File, root: Node) {
    walk(root, |node| {
        match node.kind() {
            "import_statement" => imports(file, node),
            "variable_declarator" => required(file, node),
            _ => {}
        }
        true
    });
    walk(root, |node| {
        answers(file, node);
        true
    });
}

fn module<'s>(file: &File<'s>, string: Node) -> &'s str {
    file.text(string).trim_matches(['"', '\'', '`'])
}

/// `import x from 'm'`, `import { a as b } from 'm'`, `import * as m from 'm'`.
fn imports(file: &mut File, node: Node) {
    let Some(source) = node.child_by_field_name("source") else {
        return;
    };
    let from = module(file, source);
    let mut cursor = node.walk();
    let Some(clause) = node
        .named_children(&mut cursor)
        .find(|c| c.kind() == "import_clause")
    else {
        return;
    };
    let mut cursor = clause.walk();
    for part in clause.named_children(&mut cursor) {
        match part.kind() {
            "identifier" => file.import(file.text(part), vec![from]),
            "namespace_import" => {
                if let Some(name) = part.named_child(0) {
                    file.import(file.text(name), vec![from]);
                }
            }
            "named_imports" => {
                let mut cursor = part.walk();
                for specifier in part.named_children(&mut cursor) {
                    let Some(name) = file.field(specifier, "name") else {
                        continue;
                    };
                    let alias = file.field(specifier, "alias").unwrap_or(name);
                    file.import(alias, vec![from, name]);
                }
            }
            _ => {}
        }
    }
}

/// `const x = require('m')`, `const { a, b: c } = require('m')`,
/// `const s = require('m').status`.
fn required(file: &mut File, declarator: Node) {
    let (Some(name), Some(value)) = (
        declarator.child_by_field_name("name"),
        declarator.child_by_field_name("value"),
    ) else {
        return;
    };
    let (call, member) = match value.kind() {
        "member_expression" => (
            value.child_by_field_name("object"),
            file.field(value, "property"),
        ),
        _ => (Some(value), None),
    };
    let Some(call) = call.filter(|c| c.kind() == "call_expression") else {
        return;
    };
    if file.field(call, "function") != Some("require") {
        return;
    }
    let Some(from) = call
        .child_by_field_name("arguments")
        .and_then(|a| a.named_child(0))
        .filter(|a| a.kind() == "string")
    else {
        return;
    };
    let from = module(file, from);
    let base: Vec<&str> = std::iter::once(from).chain(member).collect();
    match name.kind() {
        "identifier" => file.import(file.text(name), base),
        "object_pattern" => {
            let mut cursor = name.walk();
            for part in name.named_children(&mut cursor) {
                let (key, alias) = match part.kind() {
                    "shorthand_property_identifier_pattern" => (file.text(part), file.text(part)),
                    "pair_pattern" => match (file.field(part, "key"), file.field(part, "value")) {
                        (Some(key), Some(alias)) => (key, alias),
                        _ => continue,
                    },
                    _ => continue,
                };
                let mut path = base.clone();
                path.push(key);
                file.import(alias, path);
            }
        }
        _ => {}
    }
}

fn answers(file: &mut File, node: Node) {
    match node.kind() {
        "call_expression" | "new_expression" => {
            let callee = node
                .child_by_field_name("function")
                .or_else(|| node.child_by_field_name("constructor"));
            let Some(path) = callee.and_then(|c| file.resolved(c)) else {
                return;
            };
            let arguments = node.child_by_field_name("arguments");
            let last = path.last().copied().unwrap_or_default();
            match path.as_slice() {
                // createError(404), createError(404, "missing")
                ["http-errors"] => file.found_numbers_in(arguments),
                // new createError.NotFound(), createError.Conflict()
                ["http-errors", name] => {
                    if let Some(status) = http_named(name) {
                        file.found(node, status);
                    }
                }
                // res.status(503), res.sendStatus(404), res.writeHead(500),
                // reply.code(409), ctx.throw(404, "missing")
                [
                    _,
                    ..,
                    "status" | "sendStatus" | "writeHead" | "code" | "throw",
                ] => {
                    file.found_number(arguments.and_then(|a| a.named_child(0)));
                }
                // new HttpException("forbidden", 403)
                _ if last == "HttpException" || last == "HttpError" => {
                    file.found_numbers_in(arguments);
                }
                // Nest: new NotFoundException(), new ConflictException("taken")
                _ if node.kind() == "new_expression" => {
                    if let Some(status) = last.strip_suffix("Exception").and_then(http_named) {
                        file.found(node, status);
                    }
                }
                _ => {}
            }
        }
        // res.statusCode = 404, ctx.status = 409
        "assignment_expression" => {
            let is_status = node
                .child_by_field_name("left")
                .and_then(|l| file.path(l))
                .is_some_and(|p| {
                    p.len() > 1 && matches!(p.last(), Some(&("statusCode" | "status")))
                });
            if is_status {
                file.found_number(node.child_by_field_name("right"));
            }
        }
        // HttpStatus.FORBIDDEN (Nest), StatusCodes.NOT_FOUND
        // (http-status-codes), status.NOT_FOUND (@grpc/grpc-js)
        "member_expression" => {
            let status = file.resolved(node).and_then(|path| constant(&path));
            found_constant(file, node, status);
        }
        _ => {}
    }
}

fn constant(path: &[&str]) -> Option<Status> {
    let (qualifier, name) = qualified(path)?;
    match qualifier {
        "HttpStatus" | "StatusCodes" => http_named(name),
        "status" if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') => grpc_named(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Language::{JavaScript, TypeScript};
    use super::super::tests::{grpc, statuses};

    #[test]
    fn express_node_fastify_and_koa() {
        let source = r#"
const express = require('express');
const createError = require('http-errors');
app.get('/a', (req, res) => {
  if (!req.user) return res.status(401).json({ error: 'login' });
  if (req.busy) return res
    .status(503)
    .send('busy');
  res.sendStatus(404);
});
server.on('request', (req, res) => {
  res.writeHead(502, { 'content-type': 'text/plain' });
  res.statusCode = 500;
});
fastify.get('/b', async (request, reply) => reply.code(409).send());
router.get('/c', async (ctx) => {
  ctx.status = 410;
  ctx.throw(403, 'nope');
});
app.use((req, res, next) => next(createError(429)));
app.use((req, res, next) => next(new createError.RequestTimeout()));
res.status(200).send('ok');
"#;
        assert_eq!(
            statuses(JavaScript, source),
            vec![401, 403, 404, 408, 409, 410, 429, 500, 502, 503]
        );
    }

    #[test]
    fn nest_in_typescript() {
        let source = r#"
import { Controller, Get, HttpException, HttpStatus as S, NotFoundException } from '@nestjs/common';

@Controller('cats')
export class CatsController {
  @Get(':id')
  find(@Param('id') id: string): Cat {
    if (!id) throw new HttpException('forbidden', S.FORBIDDEN);
    if (id === 'x') throw new HttpException('teapot', 418);
    throw new NotFoundException(`no cat ${id}`);
  }
}
"#;
        assert_eq!(statuses(TypeScript, source), vec![403, 404, 418]);
    }

    #[test]
    fn grpc_js_callbacks() {
        let source = r#"
const grpc = require('@grpc/grpc-js');
const { status } = require('@grpc/grpc-js');
function getFeature(call, callback) {
  if (!call.request.id) {
    return callback({ code: status.INVALID_ARGUMENT, details: 'no id' });
  }
  callback({
    code: grpc.status.NOT_FOUND,
  });
}
"#;
        assert_eq!(
            grpc(JavaScript, source),
            vec!["INVALID_ARGUMENT", "NOT_FOUND"]
        );
    }

    #[test]
    fn comments_strings_and_comparisons_do_not_count() {
        let source = r#"
// res.status(503)
/* res.sendStatus(404) */
console.log('answered res.status(500)');
logger.warn(`status ${HttpStatus.GONE}`);
if (response.status === 503) retry();
if (err.code === grpc.status.UNAVAILABLE) retry();
switch (r.status) { case 502: retry(); }
const code_404 = 1;
"#;
        assert_eq!(statuses(JavaScript, source), Vec::<u16>::new());
        assert_eq!(grpc(JavaScript, source), Vec::<String>::new());
    }
}
