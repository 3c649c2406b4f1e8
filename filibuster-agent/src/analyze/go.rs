//! Go: net/http, gin, echo, fiber, grpc-go.

use tree_sitter::Node;

use super::{
    names::Status,
    syntax::{File, found_constant, grpc_named, http_named, qualified, walk},
};

pub(super) fn language() -> tree_sitter::Language {
    tree_sitter_go::LANGUAGE.into()
}

pub(super) fn read(file: &mut File, root: Node) {
    walk(root, |node| {
        if node.kind() == "import_spec" {
            import(file, node);
        }
        true
    });
    walk(root, |node| {
        answers(file, node);
        true
    });
}

/// `"net/http"` binds `http`; `nethttp "net/http"` binds `nethttp`;
/// `"github.com/gofiber/fiber/v2"` binds `fiber`. A path's major-version
/// part is dropped, so every import resolves to the package it names.
fn import<'s>(file: &mut File<'s>, spec: Node) {
    let Some(path) = file.field(spec, "path") else {
        return;
    };
    let mut parts: Vec<&'s str> = path.trim_matches(['"', '`']).split('/').collect();
    if parts.len() > 1
        && parts.last().is_some_and(|p| {
            p.strip_prefix('v')
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
    {
        parts.pop();
    }
    let name = match file.field(spec, "name") {
        Some("_" | ".") => return,
        Some(name) => name,
        None => parts.last().copied().unwrap_or_default(),
    };
    file.import(name, parts);
}

/// Methods whose integer arguments are the status answered:
/// `w.WriteHeader(503)`, `http.Error(w, msg, 503)`, gin's
/// `c.JSON(404, ...)`, `c.AbortWithStatus(401)`, echo's `c.NoContent(409)`,
/// `echo.NewHTTPError(404, ...)`, fiber's `c.SendStatus(410)`,
/// `fiber.NewError(503, ...)`.
const ANSWERING: &[&str] = &[
    "WriteHeader",
    "Error",
    "JSON",
    "IndentedJSON",
    "PureJSON",
    "XML",
    "YAML",
    "String",
    "HTML",
    "Data",
    "Blob",
    "Status",
    "SendStatus",
    "NoContent",
    "AbortWithStatus",
    "AbortWithStatusJSON",
    "AbortWithError",
    "NewHTTPError",
    "NewError",
];

fn answers(file: &mut File, node: Node) {
    match node.kind() {
        "call_expression" => {
            let method = node
                .child_by_field_name("function")
                .and_then(|f| file.path(f))
                .and_then(|p| p.last().copied());
            if method.is_some_and(|m| ANSWERING.contains(&m)) {
                file.found_numbers_in(node.child_by_field_name("arguments"));
            }
        }
        // http.StatusServiceUnavailable, fiber.StatusNotFound, codes.NotFound
        "selector_expression" | "qualified_type" => {
            let status = file.resolved(node).and_then(|path| constant(&path));
            found_constant(file, node, status);
        }
        _ => {}
    }
}

fn constant(path: &[&str]) -> Option<Status> {
    let (package, name) = qualified(path)?;
    match package {
        "http" | "fiber" => http_named(name.strip_prefix("Status")?),
        "codes" => grpc_named(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Language::Go;
    use super::super::tests::{grpc, statuses};

    #[test]
    fn net_http_gin_echo_fiber() {
        let source = r#"
package main

import (
	nethttp "net/http"
	"github.com/gin-gonic/gin"
	"github.com/labstack/echo/v4"
	"github.com/gofiber/fiber/v2"
)

func handle(w nethttp.ResponseWriter, r *nethttp.Request) {
	if r.URL.Path == "" {
		nethttp.Error(w, "missing",
			nethttp.StatusNotFound)
		return
	}
	w.WriteHeader(502)
}

func ginHandler(c *gin.Context) {
	c.JSON(409, gin.H{"error": "taken"})
	c.AbortWithStatus(nethttp.StatusUnauthorized)
}

func echoHandler(c echo.Context) error {
	return echo.NewHTTPError(422, "invalid")
}

func fiberHandler(c *fiber.Ctx) error {
	return c.Status(fiber.StatusTooManyRequests).SendString("slow down")
}
"#;
        assert_eq!(statuses(Go, source), vec![401, 404, 409, 422, 429, 502]);
    }

    #[test]
    fn grpc_go_statuses() {
        let source = r#"
package main

import (
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

func (s *server) Get(ctx context.Context, in *pb.Req) (*pb.Reply, error) {
	if in.Id == "" {
		return nil, grpcstatus.Error(codes.InvalidArgument, "no id")
	}
	return nil, grpcstatus.Errorf(codes.NotFound, "no %s", in.Id)
}
"#;
        assert_eq!(grpc(Go, source), vec!["INVALID_ARGUMENT", "NOT_FOUND"]);
    }

    #[test]
    fn comparisons_cases_comments_and_strings_do_not_count() {
        let source = r#"
package main

import "net/http"

// w.WriteHeader(503)
func call(resp *http.Response) {
	log.Printf("got http.StatusBadGateway")
	if resp.StatusCode == http.StatusServiceUnavailable {
		retry()
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		retry()
	}
	w.WriteHeader(http.StatusOK)
}
"#;
        assert_eq!(statuses(Go, source), Vec::<u16>::new());
    }
}
