//! Which faults a call can be failed with: the protocol's defaults and
//! what a source analysis found the callee can return, changed by the
//! user's rules; then what the callee was seen returning (when learning),
//! unless a rule removes it.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Deserializer, de};

use super::{CallSite, Fault, GRPC_DEADLINE_EXCEEDED, Outcome, Protocol, grpc_code};

/// A fault as a user names it, before it meets a call: a connection error
/// becomes a refusal on a new connection and a reset on a reused one (of
/// the stream alone, on HTTP/2); HTTP statuses apply to HTTP calls and
/// gRPC codes to gRPC calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultSpec {
    ConnectionError,
    Timeout,
    Status(u16),
    Grpc(u8),
    /// Milliseconds.
    Delay(u32),
    Truncated,
}

impl FaultSpec {
    const EXPECTED: &'static str = "a fault: \"connection-error\", \"timeout\", \"delay:800ms\" (up to 10 minutes), \"truncated\", an HTTP status from 400 to 599 or a gRPC status code name such as \"UNAVAILABLE\"";

    /// "delay:800ms", "delay:2s".
    fn delay(written: &str) -> Option<Self> {
        let duration = humantime::parse_duration(written.strip_prefix("delay:")?).ok()?;
        let ms = u32::try_from(duration.as_millis()).ok()?;
        (1..=600_000).contains(&ms).then_some(Self::Delay(ms))
    }

    fn status(code: u64) -> Option<Self> {
        (400..600)
            .contains(&code)
            .then_some(Self::Status(code as u16))
    }

    fn grpc(name: &str) -> Option<Self> {
        grpc_code(name).filter(|&c| c != 0).map(Self::Grpc)
    }

    /// The fault this is on a call of `protocol`, if it applies to one.
    fn enact(self, protocol: Protocol, fresh_connection: bool) -> Option<Fault> {
        match self {
            Self::ConnectionError => Some(Fault::connection_error(protocol, fresh_connection)),
            // The caller's deadline ends a held gRPC call: DEADLINE_EXCEEDED.
            Self::Timeout | Self::Grpc(GRPC_DEADLINE_EXCEEDED) => Some(Fault::Timeout),
            Self::Status(code) if matches!(protocol, Protocol::Http | Protocol::Http2) => {
                Some(Fault::HttpStatus(code))
            }
            Self::Grpc(code) if protocol == Protocol::Grpc => Some(Fault::GrpcStatus(code)),
            Self::Status(_) | Self::Grpc(_) => None,
            Self::Delay(ms) => Some(Fault::Delay(ms)),
            // An answer with a body to cut: not a TCP connection's.
            Self::Truncated if protocol != Protocol::Tcp => Some(Fault::Truncated),
            Self::Truncated => None,
        }
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConnectionError => f.write_str("connection-error"),
            Self::Timeout => f.write_str("timeout"),
            Self::Status(code) => write!(f, "{code}"),
            Self::Grpc(code) => f.write_str(super::GRPC_CODES[usize::from(*code)]),
            Self::Delay(ms) => write!(f, "delay:{ms}ms"),
            Self::Truncated => f.write_str("truncated"),
        }
    }
}

impl<'de> Deserialize<'de> for FaultSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = FaultSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(FaultSpec::EXPECTED)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FaultSpec, E> {
                u64::try_from(v)
                    .ok()
                    .and_then(FaultSpec::status)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FaultSpec, E> {
                FaultSpec::status(v)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FaultSpec, E> {
                match v {
                    "connection-error" => Ok(FaultSpec::ConnectionError),
                    "timeout" => Ok(FaultSpec::Timeout),
                    "truncated" => Ok(FaultSpec::Truncated),
                    _ => v
                        .parse()
                        .ok()
                        .and_then(FaultSpec::status)
                        .or_else(|| FaultSpec::grpc(v))
                        .or_else(|| FaultSpec::delay(v))
                        .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The faults tried on an HTTP call when nothing else is said: a
/// connection error, a timeout, and the 5xx answers a service most often
/// gives when its own dependencies fail.
pub const DEFAULT_HTTP_FAULTS: [FaultSpec; 5] = [
    FaultSpec::ConnectionError,
    FaultSpec::Timeout,
    FaultSpec::Status(500),
    FaultSpec::Status(502),
    FaultSpec::Status(503),
];

/// The faults tried on an HTTP call to a service a source analysis read,
/// before the statuses it found: as in the original tool, a connection
/// error, a timeout and 500 (what any framework answers for an uncaught
/// exception). The generic 502 and 503 are defaults only where no analysis
/// speaks for the callee.
pub const ANALYSED_HTTP_FAULTS: [FaultSpec; 3] = [
    FaultSpec::ConnectionError,
    FaultSpec::Timeout,
    FaultSpec::Status(500),
];

/// The faults tried on a gRPC call when nothing else is said: the codes a
/// client library itself reports when the callee is down, overloaded or
/// too slow, and INTERNAL, what a stream reset becomes. Not a connection
/// error: a gRPC channel whose connect was refused backs off for seconds,
/// which would leak into the next executions; a `[[faults]]` rule can add
/// it.
pub const DEFAULT_GRPC_FAULTS: [FaultSpec; 3] = [
    FaultSpec::Grpc(GRPC_DEADLINE_EXCEEDED),
    FaultSpec::Grpc(14), // UNAVAILABLE
    FaultSpec::Grpc(13), // INTERNAL
];

/// Other protocols can only be failed as connections.
pub const DEFAULT_TCP_FAULTS: [FaultSpec; 1] = [FaultSpec::ConnectionError];

/// Which calls a rule is about.
#[derive(Clone, Debug)]
pub struct CallPattern {
    callee: GlobMatcher,
    method: Option<String>,
    /// Matched against the path without its query; `*` stays within one
    /// segment, `**` crosses them.
    path: Option<GlobMatcher>,
}

impl CallPattern {
    /// Fails with a message naming the bad glob.
    pub fn new(callee: &str, method: Option<&str>, path: Option<&str>) -> Result<Self, String> {
        let glob = |text: &str, separator: bool| {
            globset::GlobBuilder::new(text)
                .literal_separator(separator)
                .build()
                .map(|g: Glob| g.compile_matcher())
                .map_err(|e| format!("bad pattern `{text}`: {}", e.kind()))
        };
        Ok(Self {
            callee: glob(callee, false)?,
            method: method.map(str::to_ascii_uppercase),
            path: path.map(|p| glob(p, true)).transpose()?,
        })
    }

    fn matches(&self, site: &CallSite) -> bool {
        let path = site.target.split('?').next().unwrap_or_default();
        self.callee.is_match(&site.callee)
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&site.method))
            && self.path.as_ref().is_none_or(|p| p.is_match(path))
    }
}

/// One `[[faults]]` rule of the config.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub calls: CallPattern,
    /// Replaces the faults so far (before `remove` and `add`).
    pub replace: Option<Vec<FaultSpec>>,
    pub remove: Vec<FaultSpec>,
    pub add: Vec<FaultSpec>,
}

/// Everything that decides the faults of a call.
#[derive(Clone, Debug, Default)]
pub struct FaultSpace {
    rules: Vec<FaultRule>,
    /// Statuses a source analysis found each service can answer; a
    /// service it read replaces the HTTP defaults with what it found.
    analysed: BTreeMap<String, BTreeSet<FaultSpec>>,
    /// Statuses each service was seen answering; `None`: not learning.
    learned: Option<BTreeMap<String, BTreeSet<FaultSpec>>>,
    /// Whether calls services make outside every request of the test are
    /// failed too.
    outside_requests: bool,
    /// The test's requests under test (`[test] scope`); empty: every one.
    scope: Vec<CallPattern>,
}

impl FaultSpace {
    pub fn new(rules: Vec<FaultRule>) -> Self {
        Self {
            rules,
            ..Self::default()
        }
    }

    pub fn with_analysis(mut self, analysed: BTreeMap<String, BTreeSet<FaultSpec>>) -> Self {
        self.analysed = analysed;
        self
    }

    pub fn learning(mut self) -> Self {
        self.learned = Some(BTreeMap::new());
        self
    }

    pub fn outside_requests(mut self) -> Self {
        self.outside_requests = true;
        self
    }

    /// Whether a call a service makes outside every request of the test
    /// is failed.
    /// Only calls made while serving the test's requests that `scope`
    /// matches (at any depth below them) are failed.
    pub fn with_scope(mut self, scope: Vec<CallPattern>) -> Self {
        self.scope = scope;
        self
    }

    /// Whether what is done while serving the test's request `request` is
    /// under test, not setup.
    pub fn under_test(&self, request: &CallSite) -> bool {
        self.scope.is_empty() || self.scope.iter().any(|p| p.matches(request))
    }

    pub fn fails_outside_requests(&self) -> bool {
        self.outside_requests
    }

    /// `callee` answered `status` on its own: when learning, an error
    /// status becomes a candidate fault on later calls to it.
    pub fn observe(&mut self, callee: &str, outcome: &Outcome) {
        let learned_fault = match *outcome {
            Outcome::Status(status) => FaultSpec::status(status.into()),
            Outcome::Grpc(code) if code != 0 => Some(FaultSpec::Grpc(code)),
            _ => None,
        };
        if let (Some(learned), Some(fault)) = (self.learned.as_mut(), learned_fault) {
            learned.entry(callee.to_string()).or_default().insert(fault);
        }
    }

    /// The faults to try on a call of `site`, in the order they are tried.
    pub fn faults_for(&self, site: &CallSite, fresh_connection: bool) -> Vec<Fault> {
        let found = |map: Option<&BTreeMap<String, BTreeSet<FaultSpec>>>| {
            map.and_then(|m| m.get(&site.callee))
                .into_iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
        };
        let analysed = self.analysed.contains_key(&site.callee);
        let mut specs = match site.protocol {
            Protocol::Http | Protocol::Http2 if analysed => ANALYSED_HTTP_FAULTS.to_vec(),
            Protocol::Http | Protocol::Http2 => DEFAULT_HTTP_FAULTS.to_vec(),
            Protocol::Grpc => DEFAULT_GRPC_FAULTS.to_vec(),
            Protocol::Tcp => DEFAULT_TCP_FAULTS.to_vec(),
        };
        specs.extend(found(Some(&self.analysed)));
        let rules: Vec<&FaultRule> = self
            .rules
            .iter()
            .filter(|r| r.calls.matches(site))
            .collect();
        for rule in &rules {
            if let Some(replace) = &rule.replace {
                specs = replace.clone();
            }
            specs.retain(|s| !rule.remove.contains(s));
            specs.extend(&rule.add);
        }
        // Learned statuses come on top of a replaced list too; only an
        // explicit `remove` keeps one out.
        specs.extend(
            found(self.learned.as_ref())
                .into_iter()
                .filter(|s| !rules.iter().any(|r| r.remove.contains(s))),
        );
        let mut seen = BTreeSet::new();
        specs
            .into_iter()
            .filter_map(|s| s.enact(site.protocol, fresh_connection))
            .filter(|f| seen.insert(f.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(callee: &str, method: &str, target: &str) -> CallSite {
        CallSite {
            caller: "users".into(),
            callee: callee.into(),
            protocol: Protocol::Http,
            method: method.into(),
            target: target.into(),
        }
    }

    fn rule(callee: &str, path: Option<&str>) -> FaultRule {
        FaultRule {
            calls: CallPattern::new(callee, None, path).unwrap(),
            replace: None,
            remove: Vec::new(),
            add: Vec::new(),
        }
    }

    #[test]
    fn defaults_follow_the_connection() {
        let space = FaultSpace::default();
        let fresh = space.faults_for(&site("bookings", "GET", "/"), true);
        let reused = space.faults_for(&site("bookings", "GET", "/"), false);
        assert_eq!(fresh.len(), 5);
        assert_eq!(fresh[0], Fault::ConnectionRefused);
        assert_eq!(reused[0], Fault::ConnectionReset);
    }

    #[test]
    fn rules_add_remove_and_replace_per_pattern() {
        let mut only_bookings = rule("bookings", Some("/bookings/*"));
        only_bookings.add = vec![FaultSpec::Status(404)];
        let mut movies = rule("movies", None);
        movies.remove = vec![FaultSpec::Status(502)];
        let mut third_party = rule("*.example.com:*", None);
        third_party.replace = Some(vec![FaultSpec::ConnectionError]);
        let space = FaultSpace::new(vec![only_bookings, movies, third_party]);

        let faults = space.faults_for(&site("bookings", "GET", "/bookings/chris?x=1"), true);
        assert_eq!(faults.last(), Some(&Fault::HttpStatus(404)));
        // `*` stays within a path segment.
        let nested = space.faults_for(&site("bookings", "GET", "/bookings/chris/x"), true);
        assert_eq!(nested.len(), 5);
        assert!(
            !space
                .faults_for(&site("movies", "GET", "/"), true)
                .contains(&Fault::HttpStatus(502))
        );
        assert_eq!(
            space.faults_for(&site("api.example.com:80", "GET", "/"), true),
            vec![Fault::ConnectionRefused]
        );
    }

    #[test]
    fn analysis_and_learning_add_statuses_rules_still_decide() {
        let mut no_418 = rule("bookings", None);
        no_418.remove = vec![FaultSpec::Status(418)];
        let mut space = FaultSpace::new(vec![no_418])
            .with_analysis(BTreeMap::from([(
                "bookings".into(),
                BTreeSet::from([FaultSpec::Status(404)]),
            )]))
            .learning();
        for status in [409, 418, 200, 503] {
            // 503 is already a default: tried once.
            space.observe("bookings", &Outcome::Status(status));
        }
        let faults = space.faults_for(&site("bookings", "GET", "/"), true);
        assert_eq!(
            faults,
            vec![
                Fault::ConnectionRefused,
                Fault::Timeout,
                Fault::HttpStatus(500),
                Fault::HttpStatus(404),
                Fault::HttpStatus(409),
                Fault::HttpStatus(503),
            ]
        );
    }

    #[test]
    fn an_analysis_replaces_the_http_defaults_of_the_services_it_read() {
        let space = FaultSpace::default().with_analysis(BTreeMap::from([
            ("bookings".into(), BTreeSet::from([FaultSpec::Status(403)])),
            ("movies".into(), BTreeSet::new()),
        ]));
        let http = |callee| space.faults_for(&site(callee, "GET", "/"), true);
        assert_eq!(
            http("bookings"),
            vec![
                Fault::ConnectionRefused,
                Fault::Timeout,
                Fault::HttpStatus(500),
                Fault::HttpStatus(403),
            ]
        );
        // Read, nothing found: what any service can do.
        assert_eq!(http("movies").len(), 3);
        // Not read (an outside host): the defaults.
        assert_eq!(
            http("api.example.com:443"),
            space.faults_for(&site("x", "GET", "/"), true)
        );
        assert_eq!(http("api.example.com:443").len(), 5);
    }

    #[test]
    fn each_protocol_has_its_own_faults() {
        let space = FaultSpace::new(Vec::new()).with_analysis(BTreeMap::from([(
            "accounts".into(),
            BTreeSet::from([FaultSpec::Status(404), FaultSpec::Grpc(5)]),
        )]));
        let mut grpc = site("accounts", "POST", "/shop.Accounts/GetUser");
        grpc.protocol = Protocol::Grpc;
        assert_eq!(
            space.faults_for(&grpc, false),
            vec![
                Fault::Timeout,
                Fault::GrpcStatus(14),
                Fault::GrpcStatus(13),
                Fault::GrpcStatus(5), // NOT_FOUND, from the analysis
            ]
        );
        let http = space.faults_for(&site("accounts", "GET", "/"), true);
        assert!(http.contains(&Fault::HttpStatus(404)));
        assert!(!http.iter().any(|f| matches!(f, Fault::GrpcStatus(_))));

        let mut connection_errors = rule("accounts", None);
        connection_errors.replace = Some(vec![FaultSpec::ConnectionError]);
        let space = FaultSpace::new(vec![connection_errors]);
        let mut http2 = site("accounts", "GET", "/");
        http2.protocol = Protocol::Http2;
        // A reused HTTP/2 connection carries other streams: reset only this one.
        assert_eq!(space.faults_for(&http2, false), vec![Fault::StreamReset]);
        assert_eq!(
            space.faults_for(&http2, true),
            vec![Fault::ConnectionRefused]
        );
        let mut tcp = site("redis", "", "");
        tcp.protocol = Protocol::Tcp;
        assert_eq!(
            FaultSpace::default().faults_for(&tcp, true),
            vec![Fault::ConnectionRefused]
        );
    }

    #[test]
    fn faults_are_read_from_config_values() {
        #[derive(Deserialize)]
        struct Holder {
            faults: Vec<FaultSpec>,
        }
        let holder: Holder = toml::from_str(
            r#"faults = ["timeout", 404, "503", "connection-error", "UNAVAILABLE", "delay:800ms", "delay:2s", "truncated"]"#,
        )
        .unwrap();
        assert_eq!(
            holder.faults,
            vec![
                FaultSpec::Timeout,
                FaultSpec::Status(404),
                FaultSpec::Status(503),
                FaultSpec::ConnectionError,
                FaultSpec::Grpc(14),
                FaultSpec::Delay(800),
                FaultSpec::Delay(2000),
                FaultSpec::Truncated,
            ]
        );
        let err = toml::from_str::<Holder>("faults = [200]").err().unwrap();
        assert!(err.message().contains("HTTP status from 400"), "{err}");
        for bad in ["delay:", "delay:soon", "delay:0ms", "delay:11m"] {
            let err = toml::from_str::<Holder>(&format!("faults = [\"{bad}\"]"))
                .err()
                .unwrap();
            assert!(
                err.message().contains("\"delay:800ms\" (up to 10 minutes)"),
                "{bad}: {err}"
            );
        }
        // A delay applies to every protocol: a TCP connection's bytes start late.
        for protocol in [
            Protocol::Http,
            Protocol::Http2,
            Protocol::Grpc,
            Protocol::Tcp,
        ] {
            assert_eq!(
                FaultSpec::Delay(5).enact(protocol, true),
                Some(Fault::Delay(5))
            );
        }
        assert_eq!(
            FaultSpec::Truncated.enact(Protocol::Grpc, false),
            Some(Fault::Truncated)
        );
        assert_eq!(FaultSpec::Truncated.enact(Protocol::Tcp, false), None);
    }

    #[test]
    fn a_scope_says_which_of_the_tests_requests_are_under_test() {
        let everything = FaultSpace::default();
        assert!(everything.under_test(&site("cart", "POST", "/carts")));
        let checkout = CallPattern::new("*", Some("POST"), Some("/checkout/*")).unwrap();
        let scoped = FaultSpace::default().with_scope(vec![checkout]);
        assert!(scoped.under_test(&site("cart", "POST", "/checkout/c1?coupon=x")));
        assert!(!scoped.under_test(&site("cart", "POST", "/carts")));
        assert!(!scoped.under_test(&site("cart", "GET", "/checkout/c1")));
        assert!(!scoped.under_test(&site("cart", "POST", "/checkout/c1/items")));
    }
}
