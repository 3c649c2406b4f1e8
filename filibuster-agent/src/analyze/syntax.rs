//! What every language's reader shares: walking a parsed file, naming a
//! reference by its path (`werkzeug.exceptions.NotFound`, `http.StatusOK`,
//! `StatusCode::NOT_FOUND`), resolving that path's head through the file's
//! imports, and recording what was found on which line.

use std::collections::HashMap;

use tree_sitter::Node;

use super::names::{self, Status};

/// Node kinds that name something by themselves, in any of the grammars.
const NAMES: &[&str] = &[
    "identifier",
    "property_identifier",
    "field_identifier",
    "type_identifier",
    "package_identifier",
    "crate",
    "self",
    "super",
    "this",
];

/// Node kinds that qualify a name by another (`a.b`, `a::b`): a path when
/// every part of them is.
const QUALIFIED: &[&str] = &[
    "attribute",
    "member_expression",
    "selector_expression",
    "qualified_type",
    "field_access",
    "scoped_identifier",
    "scoped_type_identifier",
    "nested_identifier",
    "generic_type",
];

/// Parts of a qualified node that are not part of its path.
const NOT_PATH: &[&str] = &["type_arguments", "optional_chain", "comment"];

/// Integer literals, in every grammar.
const INTEGERS: &[&str] = &[
    "integer",
    "number",
    "int_literal",
    "decimal_integer_literal",
    "integer_literal",
];

/// Literals whose text is data, not code: nothing inside them counts (a
/// status named in a log message or an f-string's interpolation included).
const STRINGS: &[&str] = &[
    "string",
    "template_string",
    "interpreted_string_literal",
    "raw_string_literal",
    "string_literal",
    "char_literal",
];

/// One source file as its reader sees it.
pub(super) struct File<'s> {
    text: &'s str,
    /// What each imported name stands for, as path parts.
    imports: HashMap<&'s str, Vec<&'s str>>,
    /// A wildcard import: names may come from anywhere.
    pub(super) wildcard: bool,
    /// What was found, with the 0-based line of its syntax node.
    pub(super) found: Vec<(Status, usize)>,
}

impl<'s> File<'s> {
    pub(super) fn new(text: &'s str) -> Self {
        Self {
            text,
            imports: HashMap::new(),
            wildcard: false,
            found: Vec::new(),
        }
    }

    pub(super) fn text(&self, node: Node) -> &'s str {
        // The grammars split text at characters; an error node is checked.
        std::str::from_utf8(&self.text.as_bytes()[node.byte_range()]).unwrap_or_default()
    }

    /// The text of `node`'s field `name`.
    pub(super) fn field(&self, node: Node, name: &str) -> Option<&'s str> {
        node.child_by_field_name(name).map(|n| self.text(n))
    }

    /// Records that `name` stands for `path` in this file.
    pub(super) fn import(&mut self, name: &'s str, path: Vec<&'s str>) {
        if !name.is_empty() && !path.is_empty() {
            self.imports.insert(name, path);
        }
    }

    pub(super) fn is_imported(&self, name: &str) -> bool {
        self.imports.contains_key(name)
    }

    /// `node`'s path as written: `ex.Conflict` → [ex, Conflict].
    pub(super) fn path(&self, node: Node) -> Option<Vec<&'s str>> {
        let mut parts = Vec::new();
        self.push_path(node, &mut parts).then_some(parts)
    }

    fn push_path(&self, node: Node, parts: &mut Vec<&'s str>) -> bool {
        if NAMES.contains(&node.kind()) {
            parts.push(self.text(node));
            return true;
        }
        if !QUALIFIED.contains(&node.kind()) {
            return false;
        }
        let mut cursor = node.walk();
        let mut any = false;
        for child in node.named_children(&mut cursor) {
            if NOT_PATH.contains(&child.kind()) {
                continue;
            }
            if !self.push_path(child, parts) {
                return false;
            }
            any = true;
        }
        any
    }

    /// `node`'s path with its head replaced by what the file imported it
    /// as: with `from werkzeug import exceptions as ex`, `ex.Conflict` →
    /// [werkzeug, exceptions, Conflict].
    pub(super) fn resolved(&self, node: Node) -> Option<Vec<&'s str>> {
        let mut path = self.path(node)?;
        if let Some(full) = self.imports.get(path[0]) {
            path.splice(0..1, full.iter().copied());
        }
        Some(path)
    }

    /// The value of an integer literal.
    pub(super) fn number(&self, node: Node) -> Option<u16> {
        if !INTEGERS.contains(&node.kind()) {
            return None;
        }
        let digits: String = self
            .text(node)
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '_')
            .filter(|c| *c != '_')
            .collect();
        digits.parse().ok()
    }

    /// Records an HTTP status or a gRPC code found at `node`; success
    /// statuses and OK are no faults.
    pub(super) fn found(&mut self, node: Node, status: Status) {
        if status.is_error() {
            self.found.push((status, node.start_position().row));
        }
    }

    /// Records every integer argument of a call that is an error status.
    pub(super) fn found_numbers_in(&mut self, arguments: Option<Node>) {
        let Some(arguments) = arguments else { return };
        let mut cursor = arguments.walk();
        let numbers: Vec<_> = arguments
            .named_children(&mut cursor)
            .filter_map(|a| Some((a, self.number(a)?)))
            .collect();
        for (node, number) in numbers {
            self.found(node, Status::Http(number));
        }
    }

    /// Records `value` when it is an integer literal.
    pub(super) fn found_number(&mut self, value: Option<Node>) {
        if let Some((node, number)) = value.and_then(|v| Some((v, self.number(v)?))) {
            self.found(node, Status::Http(number));
        }
    }
}

/// Calls `visit` on every named node below `root` (`root` included), in
/// order; a node for which it returns false is not descended into, nor is
/// a string literal.
pub(super) fn walk<'t>(root: Node<'t>, mut visit: impl FnMut(Node<'t>) -> bool) {
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        let descend = !node.is_named() || !STRINGS.contains(&node.kind()) && visit(node);
        if descend && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.node() == root {
                return;
            }
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

/// Whether `node` is something a service tests rather than answers: part
/// of an equality test (`resp.status_code == HTTPStatus.NOT_FOUND`), a
/// case label, or a call of `equals`; it is a caller handling what its
/// callee answered.
pub(super) fn is_compared(file: &File, node: Node) -> bool {
    let mut child = node;
    while let Some(parent) = child.parent() {
        let is_field = |name| parent.child_by_field_name(name) == Some(child);
        match parent.kind() {
            "comparison_operator" | "case_pattern" | "match_pattern" | "switch_label" => {
                return true;
            }
            "binary_expression"
                if matches!(
                    file.field(parent, "operator"),
                    Some("==" | "!=" | "===" | "!==")
                ) =>
            {
                return true;
            }
            "switch_case" | "expression_case" if is_field("value") => return true,
            "method_invocation" if file.field(parent, "name") == Some("equals") => return true,
            _ => {}
        }
        child = parent;
    }
    false
}

/// Records a status constant (`HTTPStatus.NOT_FOUND`) or an enum member
/// the reader recognised by its resolved path, unless it is compared.
pub(super) fn found_constant(file: &mut File, node: Node, status: Option<Status>) {
    if let Some(status) = status
        && !is_compared(file, node)
    {
        file.found(node, status);
    }
}

/// The status of a name shaped `HTTP_404_NOT_FOUND` (FastAPI's,
/// Starlette's and Django REST framework's `status` module).
pub(super) fn numbered_constant(name: &str) -> Option<Status> {
    let rest = name.strip_prefix("HTTP_")?;
    let (digits, _) = rest.split_once('_')?;
    (digits.len() == 3)
        .then(|| digits.parse().ok())
        .flatten()
        .map(Status::Http)
}

/// The last two parts of a path, when it has them.
pub(super) fn qualified<'p>(path: &'p [&'p str]) -> Option<(&'p str, &'p str)> {
    match path {
        [.., qualifier, name] => Some((qualifier, name)),
        _ => None,
    }
}

/// An HTTP status named by an enum member or class (`NOT_FOUND`,
/// `NotFound`).
pub(super) fn http_named(name: &str) -> Option<Status> {
    names::http_status(name).map(Status::Http)
}

/// A gRPC code named by an enum member (`NOT_FOUND`, `NotFound`,
/// `not_found`).
pub(super) fn grpc_named(name: &str) -> Option<Status> {
    names::grpc_code(name).map(Status::Grpc)
}
