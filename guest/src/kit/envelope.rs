//! The envelope (ABI.md, "Request and response"): the request's header line in, the response's
//! header line out. The only place either is read or written.

use std::collections::BTreeMap;

use serde_derive::{Deserialize, Serialize};

/// The ABI this guest speaks; the host refuses any other (ABI.md, "Versioning").
pub const ABI_VERSION: u32 = 4;

/// The request's header line: exactly these keys, each of its type; anything else is refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestHead {
    pub op: String,
    pub query: BTreeMap<String, String>,
    pub path: BTreeMap<String, String>,
    pub content_type: String,
    pub allow_reset: bool,
}

/// What the host tells the guest about one request: its header line and the raw body.
pub struct Request<'a> {
    pub head: RequestHead,
    pub body: &'a [u8],
}

/// Why a request's envelope was refused: the host wrote it wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEnvelope(pub String);

impl<'a> Request<'a> {
    /// Splits the wire form: a JSON header line, a `\n`, then the raw body.
    pub fn decode(input: &'a [u8]) -> Result<Self, BadEnvelope> {
        let split = input
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| BadEnvelope("the request has no header line ending in a newline".into()))?;
        let line = &input[..split];
        // A derived struct also reads a JSON array, field by field: only an object is a header.
        if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(BadEnvelope("the request's header line is not a JSON object".into()));
        }
        let head = serde_json::from_slice(line).map_err(|e| BadEnvelope(e.to_string()))?;
        Ok(Request { head, body: &input[split + 1..] })
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.head.query.get(name).map(String::as_str)
    }

    pub fn path(&self, name: &str) -> Option<&str> {
        self.head.path.get(name).map(String::as_str)
    }
}

/// The response's header line: always these three keys, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResponseHead<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub headers: &'a [(String, String)],
}

impl ResponseHead<'_> {
    /// The header line, `\n` included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("a header line always serialises");
        out.push(b'\n');
        out
    }
}

pub struct Response {
    pub status: u16,
    /// Empty for a response without a body.
    pub content_type: String,
    /// Extra HTTP headers, lower-case names: `location` and `retry-after` only (ABI.md).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Spare bytes a large body keeps for the header line that `Response::encode` puts in front of it.
pub const HEADER_ROOM: usize = 256;

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Response { status, content_type: content_type.into(), headers: Vec::new(), body }
    }

    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response::new(status, "application/json", body)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn head(&self) -> ResponseHead<'_> {
        ResponseHead { status: self.status, content_type: &self.content_type, headers: &self.headers }
    }

    /// The wire form: the header line, then the body bytes. The header is moved in front of the
    /// body in the body's own buffer when it has room (`HEADER_ROOM`), so that a large body
    /// (GET /orders) is never held twice.
    pub fn encode(self) -> Vec<u8> {
        let head = self.head().encode();
        let mut body = self.body;
        if body.capacity() - body.len() < head.len() {
            let mut out = Vec::with_capacity(head.len() + body.len());
            out.extend_from_slice(&head);
            out.extend_from_slice(&body);
            return out;
        }
        let len = body.len();
        body.resize(len + head.len(), 0);
        body.copy_within(..len, head.len());
        body[..head.len()].copy_from_slice(&head);
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const GOLDEN: &str = include_str!("../../abi/golden.json");

    fn golden(section: &str) -> Vec<Value> {
        let all: Value = serde_json::from_str(GOLDEN).unwrap();
        all[section].as_array().unwrap().clone()
    }

    fn text(value: &Value) -> &[u8] {
        value.as_str().unwrap().as_bytes()
    }

    #[test]
    fn every_golden_request_decodes_to_its_fields() {
        let cases = golden("requests");
        assert!(!cases.is_empty());
        for case in cases {
            let wanted: RequestHead = serde_json::from_value(case["fields"].clone()).unwrap();
            let mut wire = text(&case["bytes"]).to_vec();
            wire.extend_from_slice(b"body\n{");
            let request = Request::decode(&wire).unwrap();
            assert_eq!(request.head, wanted);
            assert_eq!(request.body, b"body\n{");
        }
    }

    #[test]
    fn every_golden_response_encodes_to_its_bytes() {
        let cases = golden("responses");
        assert!(!cases.is_empty());
        for case in cases {
            let fields = &case["fields"];
            let mut response = Response::new(
                fields["status"].as_u64().unwrap() as u16,
                fields["content_type"].as_str().unwrap(),
                b"{}".to_vec(),
            );
            response.headers = serde_json::from_value(fields["headers"].clone()).unwrap();
            assert_eq!(response.head().encode(), text(&case["bytes"]), "{}", fields);
            assert_eq!(response.encode(), [text(&case["bytes"]), b"{}"].concat());
        }
    }

    #[test]
    fn every_golden_bad_request_is_refused() {
        let cases = golden("bad_requests");
        assert!(cases.len() >= 5);
        for case in cases {
            assert!(Request::decode(text(&case["bytes"])).is_err(), "{}", case["why"]);
        }
    }
}
