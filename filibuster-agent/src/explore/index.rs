use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// How a call travels, which decides how its faults are enacted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// An HTTP/1.1 request.
    Http,
    /// A stream of HTTP/2 that is not gRPC.
    Http2,
    /// A gRPC call (an HTTP/2 stream of `application/grpc`).
    Grpc,
    /// A connection of a protocol the proxy does not speak, passed through.
    Tcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Http2 => "http2",
            Self::Grpc => "grpc",
            Self::Tcp => "tcp",
        }
    }
}

/// What identifies a call apart from its position: who called whom, how.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CallSite {
    pub caller: String,
    pub callee: String,
    pub protocol: Protocol,
    pub method: String,
    pub target: String,
}

impl CallSite {
    /// A hash that is the same in every run and on every machine (the
    /// standard library's hasher is seeded per process).
    pub fn hash(&self) -> u64 {
        let mut digest = Sha256::new();
        for part in [
            self.caller.as_str(),
            &self.callee,
            self.protocol.as_str(),
            &self.method,
            &self.target,
        ] {
            digest.update(part.as_bytes());
            digest.update([0]);
        }
        let bytes = digest.finalize();
        u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
    }
}

impl fmt::Display for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.caller, self.callee)?;
        match self.protocol {
            Protocol::Tcp => f.write_str(" (tcp)"),
            _ => write!(f, " {} {}", self.method, self.target),
        }
    }
}

/// A call's stable identity: its parent's index followed by (hash of its
/// call site, how many calls of that site its parent had made so far).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecutionIndex(Vec<(u64, u32)>);

impl ExecutionIndex {
    pub fn child(&self, site_hash: u64, n: u32) -> Self {
        let mut entries = Vec::with_capacity(self.0.len() + 1);
        entries.extend_from_slice(&self.0);
        entries.push((site_hash, n));
        Self(entries)
    }

    /// Whether this is `ancestor`'s index or that of a call made, at any
    /// depth, for it.
    pub fn within(&self, ancestor: &Self) -> bool {
        self.0.starts_with(&ancestor.0)
    }

    /// Which call of its site, under its parent, this is (1: the first):
    /// beyond 1, a retry or a poll.
    pub fn attempt(&self) -> u32 {
        self.0.last().map_or(0, |&(_, n)| n)
    }

    /// The index of attempt `n` of this call's site under its parent.
    pub fn attempt_of(&self, n: u32) -> Self {
        let mut entries = self.0.clone();
        if let Some(last) = entries.last_mut() {
            last.1 = n;
        }
        Self(entries)
    }

    /// How many calls deep this one was made (1: the test's own).
    pub fn depth(&self) -> usize {
        self.0.len()
    }

    /// The index of the call this one was made for (`None`: made by the test).
    pub fn parent(&self) -> Option<Self> {
        (self.0.len() > 1).then(|| Self(self.0[..self.0.len() - 1].to_vec()))
    }
}

impl fmt::Display for ExecutionIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (hash, n)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "[\"{hash:016x}\", {n}]")?;
        }
        f.write_str("]")
    }
}

// Serialised as Filibuster prints it: [["<hex hash>", n], ...].
impl Serialize for ExecutionIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entries: Vec<(String, u32)> = self
            .0
            .iter()
            .map(|(hash, n)| (format!("{hash:016x}"), *n))
            .collect();
        entries.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ExecutionIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries: Vec<(String, u32)> = Vec::deserialize(deserializer)?;
        entries
            .into_iter()
            .map(|(hash, n)| {
                u64::from_str_radix(&hash, 16)
                    .map(|hash| (hash, n))
                    .map_err(|_| {
                        serde::de::Error::custom(format!("`{hash}` is not a hex call-site hash"))
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}
