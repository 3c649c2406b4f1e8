//! Java: Spring, JAX-RS (javax and jakarta), Servlets, grpc-java.

use tree_sitter::Node;

use super::{
    names::Status,
    syntax::{File, found_constant, grpc_named, http_named, qualified, walk},
};

pub(super) fn language() -> tree_sitter::Language {
    tree_sitter_java::LANGUAGE.into()
}

pub(super) fn read(file: &mut File, root: Node) {
    walk(root, |node| {
        if node.kind() == "import_declaration" {
            import(file, node);
            return false;
        }
        true
    });
    walk(root, |node| {
        answers(file, node);
        node.kind() != "import_declaration"
    });
}

/// `import io.grpc.Status;` binds `Status`; `import static
/// org.springframework.http.HttpStatus.NOT_FOUND;` binds `NOT_FOUND`.
fn import(file: &mut File, node: Node) {
    let mut cursor = node.walk();
    let children: Vec<_> = node.named_children(&mut cursor).collect();
    if children.iter().any(|c| c.kind() == "asterisk") {
        file.wildcard = true;
        return;
    }
    let Some(path) = children.iter().find_map(|c| file.path(*c)) else {
        return;
    };
    if let Some(&name) = path.last() {
        file.import(name, path);
    }
}

/// Builders named for their status: `ResponseEntity.badRequest()`,
/// JAX-RS's `Response.serverError()`.
const NAMED_BUILDERS: &[(&str, u16)] = &[
    ("badRequest", 400),
    ("notFound", 404),
    ("notAcceptable", 406),
    ("unprocessableEntity", 422),
    ("internalServerError", 500),
    ("serverError", 500),
];

fn answers(file: &mut File, node: Node) {
    match node.kind() {
        "method_invocation" => {
            let Some(name) = file.field(node, "name") else {
                return;
            };
            let object = node
                .child_by_field_name("object")
                .and_then(|o| file.path(o))
                .and_then(|p| p.last().copied());
            match name {
                // ResponseEntity.status(404), Response.status(409),
                // response.sendError(503), response.setStatus(429)
                "status" | "sendError" | "setStatus" => {
                    file.found_number(
                        node.child_by_field_name("arguments")
                            .and_then(|a| a.named_child(0)),
                    );
                }
                _ if matches!(object, Some("ResponseEntity" | "Response")) => {
                    if let Some(&(_, code)) = NAMED_BUILDERS.iter().find(|(n, _)| *n == name) {
                        file.found(node, Status::Http(code));
                    }
                }
                _ => {}
            }
        }
        "object_creation_expression" => {
            let Some(class) = node
                .child_by_field_name("type")
                .and_then(|t| file.path(t))
                .and_then(|p| p.last().copied())
            else {
                return;
            };
            match class {
                // new WebApplicationException("gone", 410),
                // new ResponseStatusException(HttpStatus.CONFLICT) (found as a constant)
                "WebApplicationException" | "ResponseStatusException" | "ResponseEntity" => {
                    file.found_numbers_in(node.child_by_field_name("arguments"));
                }
                // JAX-RS: new NotFoundException(), new ServiceUnavailableException()
                _ => {
                    if let Some(status) = class.strip_suffix("Exception").and_then(http_named) {
                        file.found(node, status);
                    }
                }
            }
        }
        // HttpStatus.NOT_FOUND, Response.Status.CONFLICT,
        // HttpServletResponse.SC_BAD_GATEWAY, Status.UNAVAILABLE (grpc)
        "field_access" => {
            let status = file.resolved(node).and_then(|path| constant(&path));
            found_constant(file, node, status);
        }
        // NOT_FOUND, statically imported
        "identifier" if file.is_imported(file.text(node)) => {
            let status = file
                .resolved(node)
                .filter(|path| path.len() > 1)
                .and_then(|path| constant(&path));
            found_constant(file, node, status);
        }
        _ => {}
    }
}

fn constant(path: &[&str]) -> Option<Status> {
    let (qualifier, name) = qualified(path)?;
    if let Some(servlet) = name.strip_prefix("SC_") {
        return http_named(servlet);
    }
    let from_grpc = path.contains(&"grpc");
    match qualifier {
        "HttpStatus" => http_named(name),
        // io.grpc.Status.UNAVAILABLE, Status.Code.NOT_FOUND
        "Status" | "Code" if from_grpc => grpc_named(name),
        // JAX-RS: Response.Status.NOT_FOUND
        "Status" if path.contains(&"Response") || path.contains(&"ws") => http_named(name),
        // Status imported from somewhere unseen: grpc-java's, where the
        // name is a gRPC code
        "Status" => grpc_named(name).or_else(|| http_named(name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Language::Java;
    use super::super::tests::{grpc, statuses};

    #[test]
    fn spring() {
        let source = r#"
import org.springframework.http.HttpStatus;
import org.springframework.http.ResponseEntity;
import org.springframework.web.server.ResponseStatusException;
import static org.springframework.http.HttpStatus.GONE;

@ResponseStatus(HttpStatus.CONFLICT)
class TakenException extends RuntimeException {}

@RestController
class Api {
    @GetMapping("/a")
    ResponseEntity<String> a(@RequestParam String id) {
        if (id.isEmpty()) {
            return ResponseEntity.badRequest().body("no id");
        }
        if (id.equals("x")) {
            throw new ResponseStatusException(
                HttpStatus.NOT_FOUND, "no such id");
        }
        if (id.equals("y")) return ResponseEntity.unprocessableEntity().build();
        if (id.equals("z")) return ResponseEntity.status(429).build();
        if (id.equals("g")) return new ResponseEntity<>("gone", GONE);
        return ResponseEntity.ok("fine");
    }

    @ExceptionHandler(Busy.class)
    @ResponseStatus(code = HttpStatus.SERVICE_UNAVAILABLE)
    void busy() {}
}
"#;
        assert_eq!(
            statuses(Java, source),
            vec![400, 404, 409, 410, 422, 429, 503]
        );
    }

    #[test]
    fn jax_rs_and_servlets() {
        let source = r#"
import javax.ws.rs.core.Response;
import javax.ws.rs.NotFoundException;
import javax.ws.rs.WebApplicationException;
import javax.servlet.http.HttpServletResponse;

class Resource {
    Response get(String id) {
        if (id == null) return Response.status(Response.Status.BAD_REQUEST).build();
        if (id.isEmpty()) throw new NotFoundException();
        if (id.equals("x")) throw new WebApplicationException("gone", 410);
        return Response.serverError().build();
    }
    void doGet(HttpServletRequest req, HttpServletResponse resp) {
        resp.sendError(HttpServletResponse.SC_BAD_GATEWAY);
        resp.setStatus(409);
    }
}
"#;
        assert_eq!(statuses(Java, source), vec![400, 404, 409, 410, 500, 502]);
    }

    #[test]
    fn grpc_java() {
        let source = r#"
import io.grpc.Status;
import io.grpc.stub.StreamObserver;

class Service extends GreeterGrpc.GreeterImplBase {
    public void get(Req req, StreamObserver<Reply> out) {
        if (req.getId().isEmpty()) {
            out.onError(Status.INVALID_ARGUMENT
                .withDescription("no id")
                .asRuntimeException());
            return;
        }
        out.onError(Status.NOT_FOUND.asRuntimeException());
    }
}
"#;
        assert_eq!(grpc(Java, source), vec!["INVALID_ARGUMENT", "NOT_FOUND"]);
        assert_eq!(statuses(Java, source), Vec::<u16>::new());
    }

    #[test]
    fn comparisons_and_comments_do_not_count() {
        let source = r#"
import org.springframework.http.HttpStatus;
class Client {
    // return ResponseEntity.status(503)
    void call(ResponseEntity<String> r) {
        log.info("HttpStatus.BAD_GATEWAY seen");
        if (r.getStatusCode() == HttpStatus.SERVICE_UNAVAILABLE) retry();
        if (HttpStatus.TOO_MANY_REQUESTS.equals(r.getStatusCode())) retry();
        switch (r.getStatusCodeValue()) { case 502: retry(); }
    }
}
"#;
        assert_eq!(statuses(Java, source), Vec::<u16>::new());
    }
}
