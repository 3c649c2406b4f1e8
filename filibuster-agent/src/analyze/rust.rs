//! Rust: http's `StatusCode` (axum, hyper, warp), actix-web, tonic.

use tree_sitter::Node;

use super::{
    names::Status,
    syntax::{File, found_constant, grpc_named, http_named, qualified, walk},
};

pub(super) fn language() -> tree_sitter::Language {
    tree_sitter_rust::LANGUAGE.into()
}

pub(super) fn read(file: &mut File, root: Node) {
    walk(root, |node| {
        if node.kind() == "use_declaration" {
            if let Some(argument) = node.child_by_field_name("argument") {
                uses(file, &[], argument);
            }
            return false;
        }
        true
    });
    walk(root, |node| {
        if is_test(file, node) {
            return false;
        }
        answers(file, node);
        node.kind() != "use_declaration"
    });
}

/// `use axum::http::StatusCode;`, `use tonic::{Code, Status as S};`.
fn uses<'s>(file: &mut File<'s>, prefix: &[&'s str], tree: Node) {
    let joined = |path: Option<Vec<&'s str>>| {
        let mut full = prefix.to_vec();
        full.extend(path.unwrap_or_default());
        full
    };
    match tree.kind() {
        "use_as_clause" => {
            let path = joined(tree.child_by_field_name("path").and_then(|p| file.path(p)));
            if let Some(alias) = file.field(tree, "alias") {
                file.import(alias, path);
            }
        }
        "scoped_use_list" => {
            let path = joined(tree.child_by_field_name("path").and_then(|p| file.path(p)));
            if let Some(list) = tree.child_by_field_name("list") {
                uses(file, &path, list);
            }
        }
        "use_list" => {
            let mut cursor = tree.walk();
            let items: Vec<_> = tree.named_children(&mut cursor).collect();
            for item in items {
                uses(file, prefix, item);
            }
        }
        "use_wildcard" => file.wildcard = true,
        _ => {
            let path = joined(file.path(tree));
            if let Some(&name) = path.last() {
                file.import(name, path);
            }
        }
    }
}

/// A `#[cfg(test)]` module or a `#[test]` function: the service's own
/// tests, not its behaviour.
fn is_test(file: &File, node: Node) -> bool {
    if !matches!(node.kind(), "mod_item" | "function_item") {
        return false;
    }
    std::iter::successors(node.prev_named_sibling(), |n| n.prev_named_sibling())
        .take_while(|n| n.kind() == "attribute_item")
        .any(|attribute| {
            let text = file.text(attribute);
            text.contains("cfg(test)") || text.ends_with("test]")
        })
}

fn answers(file: &mut File, node: Node) {
    match node.kind() {
        // StatusCode::NOT_FOUND, HttpResponse::NotFound(),
        // Status::not_found("..."), Code::Unavailable
        "scoped_identifier" => {
            let status = file.resolved(node).and_then(|path| constant(&path));
            found_constant(file, node, status);
        }
        // StatusCode::from_u16(429)
        "call_expression" => {
            let is_from_number = node
                .child_by_field_name("function")
                .and_then(|f| file.path(f))
                .is_some_and(|p| p.ends_with(&["StatusCode", "from_u16"]));
            if is_from_number {
                file.found_number(
                    node.child_by_field_name("arguments")
                        .and_then(|a| a.named_child(0)),
                );
            }
        }
        _ => {}
    }
}

fn constant(path: &[&str]) -> Option<Status> {
    let (qualifier, name) = qualified(path)?;
    match qualifier {
        "StatusCode" | "HttpResponse" => http_named(name),
        "Code" | "Status" => grpc_named(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Language::Rust;
    use super::super::tests::{grpc, statuses};

    #[test]
    fn axum_actix_and_hyper() {
        let source = r#"
use axum::{http::StatusCode as Code2, response::IntoResponse, Json};
use actix_web::HttpResponse;

async fn get(Path(id): Path<u32>) -> impl IntoResponse {
    if id == 0 {
        return (Code2::BAD_REQUEST, Json(json!({"error": "zero"})));
    }
    (http::StatusCode::SERVICE_UNAVAILABLE, Json(json!({})))
}

async fn actix(id: web::Path<u32>) -> HttpResponse {
    if *id == 1 {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::build(StatusCode::from_u16(429).unwrap()).finish()
}

#[cfg(test)]
mod tests {
    fn f() { StatusCode::FORBIDDEN; }
}
"#;
        assert_eq!(statuses(Rust, source), vec![400, 404, 429, 503]);
    }

    #[test]
    fn tonic() {
        let source = r#"
use tonic::{Code, Request, Response, Status};

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn get(&self, request: Request<Req>) -> Result<Response<Reply>, Status> {
        if request.get_ref().id.is_empty() {
            return Err(Status::invalid_argument("no id"));
        }
        Err(Status::new(Code::NotFound, "missing"))
    }
}
"#;
        assert_eq!(grpc(Rust, source), vec!["INVALID_ARGUMENT", "NOT_FOUND"]);
    }

    #[test]
    fn comparisons_and_match_arms_do_not_count() {
        let source = r#"
// StatusCode::BAD_GATEWAY
async fn call(r: reqwest::Response) {
    if r.status() == StatusCode::SERVICE_UNAVAILABLE { retry() }
    match r.status() {
        StatusCode::TOO_MANY_REQUESTS => retry(),
        _ => {}
    }
    let msg = "StatusCode::GONE";
}
"#;
        assert_eq!(statuses(Rust, source), Vec::<u16>::new());
    }
}
